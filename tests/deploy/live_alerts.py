#!/usr/bin/python3
"""usage: live_alerts.py REPO_ROOT ORCHESTRATORD POOL_MANAGERD

The alert rules against what the daemons really expose. Starts orchestratord and two
pool-managerd on loopback, scrapes every /metrics at three moments:
  1. both nodes online (their pools not ready: no engine was started),
  2. after three registrations with a wrong token and `kill -9` of gpu-node-2,
  3. after `kill -9` of gpu-node-1,
then replays those expositions, each held for 10 minutes, as `promtool test rules` input series
(with the job/instance labels a scrape adds, and up=0 for a target that did not answer) and
checks which alerts fire. This catches rules that watch a metric name or label the daemons do not
expose. Annotations are stripped from the rule copy used here: the unit tests in
deploy/prometheus check them.
Standard library only.
"""
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

PHASE_STEPS = 40  # 40 x 15 s = 10 minutes per phase
LISTEN_RE = re.compile(r"\blistening\b.*?\bhttp=(\S+)(?:.*?\bcluster=(\S+))?")
SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$")
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def http(method, url, token=None, body=None, timeout=2):
    req = urllib.request.Request(url, method=method, data=body.encode() if body else None)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class daemon:
    def __init__(self, name, argv, log_path, env):
        self.name, self.log_path = name, log_path
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.http = self.cluster = None

    def wait_listening(self, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with open(self.log_path) as f:
                m = LISTEN_RE.search(f.read())
            if m:
                self.http, self.cluster = m.group(1), m.group(2)
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        with open(self.log_path) as f:
            raise RuntimeError("%s did not start listening:\n%s" % (self.name, f.read()))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


def parse_exposition(text):
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        if not m:
            raise ValueError("unparsable exposition line: " + line)
        labels = tuple(sorted(LABEL_RE.findall(m.group(2) or "")))
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples


def series_name(name, labels):
    inner = ",".join('%s="%s"' % (k, v) for k, v in labels)
    return "%s{%s}" % (name, inner)


def scrape(targets):
    """targets: [(job, instance)] -> {(name, labels): value} including up."""
    out = {}
    for job, instance in targets:
        try:
            status, text = http("GET", "http://%s/metrics" % instance)
        except OSError:
            status, text = 0, ""
        extra = (("instance", instance), ("job", job))
        out[("up", extra)] = 1.0 if status == 200 else 0.0
        if status == 200:
            for (name, labels), v in parse_exposition(text).items():
                out[(name, tuple(sorted(labels + extra)))] = v
    return out


def wait_until(pred, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def strip_annotations(rules_text):
    out, skipping = [], None
    for line in rules_text.splitlines():
        indent = len(line) - len(line.lstrip())
        if skipping is not None:
            if not line.strip() or indent > skipping:
                continue
            skipping = None
        if line.strip() == "annotations:":
            skipping = indent
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def main(argv):
    if len(argv) != 4:
        print(__doc__)
        return 2
    root, orch_bin, node_bin = argv[1:]
    work = tempfile.mkdtemp(prefix="llorch-live-alerts-")
    token = secrets.token_hex(16)
    env = dict(os.environ, LLORCH_API_TOKEN=token)
    env.pop("ORCHESTRATORD_CLOUD_PROFILE", None)
    timing = {"keepalive_ms": 100, "dead_after_ms": 1000}
    started = []
    try:
        cfg = {"http": {"listen": "127.0.0.1:0"},
               "cluster": dict(listen="127.0.0.1:0", **timing),
               "heartbeat": {"interval_ms": 200, "timeout_ms": 1000}}
        path = os.path.join(work, "orchestratord.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        orch = daemon("orchestratord", [orch_bin, "--config", path],
                      os.path.join(work, "orchestratord.log"), env)
        started.append(orch)
        orch.wait_listening()
        nodes = {}
        for node_id, pool_id in (("gpu-node-1", "pool-a"), ("gpu-node-2", "pool-b")):
            cfg = {"node_id": node_id, "http": {"listen": "127.0.0.1:0"},
                   "orchestrator": dict(cluster=orch.cluster, **timing),
                   "heartbeat": {"interval_ms": 200},
                   "handoff_dir": os.path.join(work, node_id, "engines"),
                   "pools": [{"id": pool_id, "devices": [], "slots": 1}]}
            path = os.path.join(work, node_id + ".json")
            with open(path, "w") as f:
                json.dump(cfg, f)
            d = daemon(node_id, [node_bin, "--config", path], os.path.join(work, node_id + ".log"), env)
            started.append(d)
            nodes[node_id] = d.wait_listening()

        base = "http://" + orch.http

        def online(node_id):
            status, body = http("GET", base + "/v2/nodes")
            return status == 200 and any(n["node_id"] == node_id and n["online"]
                                         for n in json.loads(body)["nodes"])

        if not wait_until(lambda: online("gpu-node-1") and online("gpu-node-2"), 5):
            raise RuntimeError("the two nodes did not come online")
        targets = [("orchestratord", orch.http)] + [("pool-managerd", n.http) for n in nodes.values()]
        phases = [scrape(targets)]

        for _ in range(3):
            status, _ = http("POST", base + "/v2/nodes/register", token="wrong-" + token,
                             body='{"node_id":"intruder"}')
            if status != 401:
                raise RuntimeError("a wrong token got %d, expected 401" % status)
        nodes["gpu-node-2"].kill()
        if not wait_until(lambda: not online("gpu-node-2"), 3):
            raise RuntimeError("gpu-node-2 was not marked offline after kill -9")
        phases.append(scrape(targets))

        nodes["gpu-node-1"].kill()
        if not wait_until(lambda: not online("gpu-node-1"), 3):
            raise RuntimeError("gpu-node-1 was not marked offline after kill -9")
        phases.append(scrape(targets))
    finally:
        for d in started:
            d.kill()

    # Every series seen in any scrape, held for PHASE_STEPS per phase; `_` where it was absent.
    keys = sorted(set().union(*phases))
    input_series = []
    for key in keys:
        values = []
        for p in phases:
            values += [repr(p[key]) if key in p else "_"] * PHASE_STEPS
        input_series.append({"series": series_name(*key), "values": " ".join(values)})

    node1, node2 = nodes["gpu-node-1"].http, nodes["gpu-node-2"].http

    def stalled(instance, pool_id):
        return {"exp_labels": {"severity": "warning", "job": "pool-managerd",
                               "instance": instance, "pool_id": pool_id}}

    crit, warn = [{"exp_labels": {"severity": "critical"}}], [{"exp_labels": {"severity": "warning"}}]
    checks = [
        # phase 1: two nodes online, no pool ready
        ("9m", "NoNodesOnline", []),
        ("9m", "LowNodeAvailability", []),
        ("9m", "NoPoolsAvailable", crit),
        ("9m", "HandoffProcessingStalled", [stalled(node1, "pool-a"), stalled(node2, "pool-b")]),
        ("9m", "HighRegistrationFailureRate", []),
        # phase 2: wrong-token registrations, gpu-node-2 killed
        ("19m", "NoNodesOnline", []),
        ("19m", "LowNodeAvailability", warn),
        ("19m", "HighRegistrationFailureRate", warn),
        ("19m", "HandoffProcessingStalled", [stalled(node1, "pool-a")]),
        # phase 3: both killed, still listed
        ("29m", "NoNodesOnline", crit),
        ("29m", "NoPoolsAvailable", crit),
    ]
    test = {"rule_files": ["rules.yml"], "evaluation_interval": "15s",
            "tests": [{"interval": "15s", "input_series": input_series,
                       "alert_rule_test": [{"eval_time": t, "alertname": a, "exp_alerts": e}
                                           for t, a, e in checks]}]}
    with open(os.path.join(root, "deploy", "prometheus", "llama-orch-alerts.yml")) as f:
        rules = strip_annotations(f.read())
    with open(os.path.join(work, "rules.yml"), "w") as f:
        f.write(rules)
    with open(os.path.join(work, "live.test.yml"), "w") as f:
        json.dump(test, f, indent=1)  # JSON is valid YAML
    r = subprocess.run(["promtool", "test", "rules", "live.test.yml"], cwd=work,
                       capture_output=True, text=True)
    print("%d series from %d scrapes; %d alert checks" % (len(keys), len(phases) * 3, len(checks)))
    if r.returncode != 0:
        print(r.stdout + r.stderr)
        print("inputs kept in " + work)
        return 1
    shutil.rmtree(work)
    print("all alert checks passed on live metrics")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
