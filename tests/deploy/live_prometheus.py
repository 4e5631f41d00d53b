#!/usr/bin/python3
"""usage: live_prometheus.py REPO_ROOT ORCHESTRATORD POOL_MANAGERD

deploy/ end to end with a real Prometheus server (Debian package prometheus): starts
orchestratord and two pool-managerd on loopback, runs Prometheus with
deploy/prometheus/prometheus.example.yml (targets pointed at the live daemons, 1 s scrape and
evaluation intervals) and the alert rules, then checks that
  - every target is up,
  - every rule evaluates without error, and the alerts are in the state the cluster calls for
    (two nodes online, no pool ready: NoPoolsAvailable and HandoffProcessingStalled pending or
    firing, NoNodesOnline and LowNodeAvailability inactive),
  - every dashboard query runs, and the panels about nodes, heartbeats, registrations and pools
    return data.
Exit 77 (skipped) when the prometheus binary is absent. Standard library only.
"""
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from live_alerts import daemon, http, wait_until  # noqa: E402

# Panels whose metrics the cluster layer sets: their queries must return data.
MUST_HAVE_DATA = ("orchd_nodes_online", "orchd_pools_available", "orchd_node_heartbeats_total",
                  "orchd_node_registrations_total", "orchd_node_last_heartbeat_timestamp_seconds",
                  "pool_ready", "pool_slots_free", "pool_slots_capacity")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(base, path, **params):
    status, body = http("GET", base + path + ("?" + urllib.parse.urlencode(params) if params else ""),
                        timeout=5)
    return status, json.loads(body) if body.startswith("{") else body


def main(argv):
    if len(argv) != 4:
        print(__doc__)
        return 2
    root, orch_bin, node_bin = argv[1:]
    prom_bin = shutil.which("prometheus")
    if not prom_bin:
        print("skip: the prometheus server is not installed (Debian package prometheus)")
        return 77
    work = tempfile.mkdtemp(prefix="llorch-live-prometheus-")
    token = secrets.token_hex(16)
    env = dict(os.environ, LLORCH_API_TOKEN=token)
    env.pop("ORCHESTRATORD_CLOUD_PROFILE", None)
    timing = {"keepalive_ms": 100, "dead_after_ms": 1000}
    started, problems = [], []
    try:
        path = os.path.join(work, "orchestratord.json")
        with open(path, "w") as f:
            json.dump({"http": {"listen": "127.0.0.1:0"},
                       "cluster": dict(listen="127.0.0.1:0", **timing),
                       "heartbeat": {"interval_ms": 200, "timeout_ms": 1000}}, f)
        orch = daemon("orchestratord", [orch_bin, "--config", path],
                      os.path.join(work, "orchestratord.log"), env)
        started.append(orch)
        orch.wait_listening()
        node_addrs = []
        for node_id in ("gpu-node-1", "gpu-node-2"):
            path = os.path.join(work, node_id + ".json")
            with open(path, "w") as f:
                json.dump({"node_id": node_id, "http": {"listen": "127.0.0.1:0"},
                           "orchestrator": dict(cluster=orch.cluster, **timing),
                           "heartbeat": {"interval_ms": 200},
                           "handoff_dir": os.path.join(work, node_id, "engines"),
                           "pools": [{"id": "pool-" + node_id[-1], "devices": [], "slots": 2}]}, f)
            d = daemon(node_id, [node_bin, "--config", path], os.path.join(work, node_id + ".log"), env)
            started.append(d)
            node_addrs.append(d.wait_listening().http)

        # The shipped example, pointed at the live daemons with 1 s intervals.
        prom_dir = os.path.join(root, "deploy", "prometheus")
        with open(os.path.join(prom_dir, "prometheus.example.yml")) as f:
            cfg = f.read()
        for old, new in (("'orchestratord:8080'", "'%s'" % orch.http),
                         ("'gpu-node-1:9200'", "'%s'" % node_addrs[0]),
                         ("'gpu-node-2:9200'", "'%s'" % node_addrs[1])):
            if old not in cfg:
                raise RuntimeError("prometheus.example.yml has no target " + old)
            cfg = cfg.replace(old, new)
        cfg = re.sub(r"(scrape_interval|evaluation_interval): 15s", r"\1: 1s", cfg)
        with open(os.path.join(work, "prometheus.yml"), "w") as f:
            f.write(cfg)
        shutil.copy(os.path.join(prom_dir, "llama-orch-alerts.yml"), work)
        port = free_port()
        prom = daemon("prometheus", [prom_bin, "--config.file=" + os.path.join(work, "prometheus.yml"),
                                     "--storage.tsdb.path=" + os.path.join(work, "tsdb"),
                                     "--web.listen-address=127.0.0.1:%d" % port],
                      os.path.join(work, "prometheus.log"), env)
        started.append(prom)
        base = "http://127.0.0.1:%d" % port

        def ready():
            try:
                return http("GET", base + "/-/ready")[0] == 200
            except OSError:
                return False

        if not wait_until(ready, 20):
            raise RuntimeError("prometheus did not become ready")

        def all_up():
            _, r = api(base, "/api/v1/query", query="up")
            return len(r["data"]["result"]) == 3 and all(s["value"][1] == "1" for s in r["data"]["result"])

        if not wait_until(all_up, 15):
            problems.append("not every target is up: %s" % api(base, "/api/v1/targets")[1])
        time.sleep(4)  # a few more scrapes and rule evaluations

        _, rules = api(base, "/api/v1/rules")
        states = {}
        for g in rules["data"]["groups"]:
            for r in g["rules"]:
                states[r["name"]] = (r["state"], len(r.get("alerts", [])))
                if r["health"] != "ok" or r.get("lastError"):
                    problems.append("rule %s: health %s %s" % (r["name"], r["health"], r.get("lastError", "")))
        print("alert states: " + ", ".join("%s=%s(%d)" % (k, *v) for k, v in sorted(states.items())))
        expect = {"NoNodesOnline": ("inactive",), "LowNodeAvailability": ("inactive",),
                  "NoPoolsAvailable": ("pending", "firing"),
                  "HandoffProcessingStalled": ("pending", "firing")}
        for name, allowed in expect.items():
            if states.get(name, ("missing",))[0] not in allowed:
                problems.append("%s is %s, expected %s" % (name, states.get(name), "/".join(allowed)))
        if states.get("HandoffProcessingStalled", ("", 0))[1] != 2:
            problems.append("HandoffProcessingStalled should hold one alert per not-ready pool (2)")

        with open(os.path.join(root, "deploy", "grafana", "cloud_profile_overview.json")) as f:
            dash = json.load(f)
        queries = empty = 0
        for p in dash["panels"]:
            for t in p.get("targets", []):
                expr = re.sub(r"\$__rate_interval", "1m", t["expr"])
                status, r = api(base, "/api/v1/query", query=expr)
                queries += 1
                if status != 200 or r.get("status") != "success":
                    problems.append("panel %r: query %r failed: %s" % (p["title"], expr, r))
                    continue
                if not r["data"]["result"]:
                    empty += 1
                    if any(m in expr for m in MUST_HAVE_DATA):
                        problems.append("panel %r: query %r returned no data" % (p["title"], expr))
                    else:
                        print("no data yet (metric not set by this cluster): %s: %s" % (p["title"], expr))
        print("%d dashboard queries ran, %d returned data" % (queries, queries - empty))
    finally:
        for d in reversed(started):
            d.kill()
    for p in problems:
        print("FAIL: " + p)
    if problems:
        print("logs kept in " + work)
        return 1
    shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
