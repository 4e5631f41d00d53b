"""A real llama-orch cluster on loopback for integration tests: real binaries, real sockets, real
signals. Every process is killed when the test ends."""
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request

BIN = os.environ.get("LLORCH_BIN", os.path.join(os.path.dirname(__file__), "../../build/bin"))
LISTEN_RE = re.compile(r"\blistening\b.*?\bhttp=(\S+)(?:.*?\bcluster=(\S+))?")


def http(method, url, body=None, token=None, headers=None, timeout=5):
    """One HTTP request; returns (status, headers, parsed JSON or text)."""
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url, data=data, method=method)
    if token is not None:
        req.add_header("Authorization", "Bearer " + token)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, hdrs, raw = resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        status, hdrs, raw = e.code, dict(e.headers), e.read()
    text = raw.decode("utf-8")
    try:
        return status, hdrs, json.loads(text) if text else None
    except json.JSONDecodeError:
        return status, hdrs, text


def wait_until(predicate, timeout, interval=0.01):
    """Polls predicate until it is truthy; returns seconds waited, or None on timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(interval)
    return None


class Daemon:
    def __init__(self, name, argv, log_path, env):
        self.name = name
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.http = None
        self.cluster = None

    def wait_listening(self, timeout=10):
        def found():
            m = LISTEN_RE.search(self.read_log())
            if m:
                self.http, self.cluster = m.group(1), m.group(2)
            return m is not None or self.proc.poll() is not None
        wait_until(found, timeout)
        if self.http is None:
            raise RuntimeError(f"{self.name} did not start (rc={self.proc.poll()}):\n{self.read_log()}")
        return self

    def read_log(self):
        with open(self.log_path, "r", errors="replace") as f:
            return f.read()

    @property
    def url(self):
        return "http://" + self.http

    def send(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=5):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


class Cluster:
    """Writes configs into tmp_path and starts orchestratord and pool-managerd processes."""

    def __init__(self, tmp_path, token="test-token", interval_ms=200, timeout_ms=1000,
                 keepalive_ms=100, dead_after_ms=1000):
        self.dir = tmp_path
        self.token = token
        self.interval_ms = interval_ms
        self.timeout_ms = timeout_ms
        self.keepalive_ms = keepalive_ms
        self.dead_after_ms = dead_after_ms
        self.daemons = []
        self.orch = None
        self.cluster_port = 0

    def env(self, token):
        env = {k: v for k, v in os.environ.items() if k not in ("LLORCH_API_TOKEN",)}
        if token is not None:
            env["LLORCH_API_TOKEN"] = token
        return env

    def write(self, name, obj):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            json.dump(obj, f, indent=2)
        return path

    def start_orchestratord(self, extra=None, env_extra=None, http_port=0):
        cfg = {
            "http": {"listen": f"127.0.0.1:{http_port}"},
            "cluster": {"listen": f"127.0.0.1:{self.cluster_port}",
                        "keepalive_ms": self.keepalive_ms, "dead_after_ms": self.dead_after_ms},
            "heartbeat": {"interval_ms": self.interval_ms, "timeout_ms": self.timeout_ms},
            "log": {"level": "debug"},
        }
        for k, v in (extra or {}).items():
            cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
        path = self.write("orchestratord.json", cfg)
        env = self.env(self.token)
        env.update(env_extra or {})
        d = Daemon("orchestratord", [os.path.join(BIN, "orchestratord"), "--config", path],
                   os.path.join(self.dir, f"orchestratord-{len(self.daemons)}.log"), env)
        self.daemons.append(d)
        d.wait_listening()
        self.orch = d
        self.cluster_port = int(d.cluster.rsplit(":", 1)[1])
        return d

    def start_node(self, node_id, token="inherit", pools=None, orchestrator_extra=None,
                   models=None, restart=None):
        cfg = {
            "node_id": node_id,
            "http": {"listen": "127.0.0.1:0"},
            "orchestrator": {"cluster": f"127.0.0.1:{self.cluster_port}",
                             "keepalive_ms": self.keepalive_ms,
                             "dead_after_ms": self.dead_after_ms,
                             **(orchestrator_extra or {})},
            "heartbeat": {"interval_ms": self.interval_ms},
            "handoff_dir": os.path.join(self.dir, node_id, "engines"),
            "pools": pools if pools is not None else [{"id": "pool-0", "devices": [0], "slots": 4}],
            "log": {"level": "debug"},
        }
        if models is not None:
            cfg["models"] = models
        if restart is not None:
            cfg["restart"] = restart
        path = self.write(f"{node_id}.json", cfg)
        d = Daemon(node_id, [os.path.join(BIN, "pool-managerd"), "--config", path],
                   os.path.join(self.dir, f"{node_id}-{len(self.daemons)}.log"),
                   self.env(self.token if token == "inherit" else token))
        self.daemons.append(d)
        return d.wait_listening()

    def nodes(self):
        status, _, body = http("GET", self.orch.url + "/v2/nodes")
        assert status == 200, body
        return body

    def node(self, node_id):
        for n in self.nodes()["nodes"]:
            if n["node_id"] == node_id:
                return n
        return None

    def online(self, node_id):
        n = self.node(node_id)
        return n is not None and n["online"]

    def pool(self, node_id, pool_id):
        node = self.node(node_id)
        for p in (node or {}).get("pools", []):
            if p["pool_id"] == pool_id:
                return p
        return None

    def metrics(self, url=None):
        with urllib.request.urlopen((url or self.orch.url) + "/metrics", timeout=5) as r:
            return r.read().decode()

    def close(self):
        for d in self.daemons:
            if d.proc.poll() is None:
                # A stopped process cannot act on SIGTERM: continue it first.
                d.proc.send_signal(signal.SIGCONT)
                d.proc.kill()
                d.proc.wait()
            d.log.close()


def metric_value(text, name, labels):
    """The value of one sample in a Prometheus exposition, or None."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} ") or (not labels and line.startswith(name + " ")):
            return float(line.rsplit(" ", 1)[1])
    return None
