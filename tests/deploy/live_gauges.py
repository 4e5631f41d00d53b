#!/usr/bin/python3
"""usage: live_gauges.py ORCHESTRATORD POOL_MANAGERD

The alert rules assume two of orchestratord's gauges follow heartbeats, not only registrations:
  - orchd_node_last_heartbeat_timestamp_seconds{node_id}: NodeHeartbeatStalled fires when it is
    2 minutes old, so it must advance with every accepted heartbeat;
  - orchd_pools_available{node_id,pool_id}: NoPoolsAvailable sums it, so a pool that a heartbeat
    reports ready must count as available, as /v2/nodes already shows.
Starts orchestratord and one pool-managerd on loopback (heartbeat every 200 ms) and checks both
against the daemons' own answers. Standard library only.
"""
import json
import os
import secrets
import shutil
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from live_alerts import daemon, http, parse_exposition, wait_until  # noqa: E402

INTERVAL_MS = 200


def gauge(text, name, **labels):
    want = tuple(sorted(labels.items()))
    return parse_exposition(text).get((name, want))


def main(argv):
    if len(argv) != 3:
        print(__doc__)
        return 2
    orch_bin, node_bin = argv[1:]
    work = tempfile.mkdtemp(prefix="llorch-live-gauges-")
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
                       "heartbeat": {"interval_ms": INTERVAL_MS, "timeout_ms": 5 * INTERVAL_MS}}, f)
        orch = daemon("orchestratord", [orch_bin, "--config", path],
                      os.path.join(work, "orchestratord.log"), env)
        started.append(orch)
        orch.wait_listening()
        path = os.path.join(work, "gpu-node-1.json")
        with open(path, "w") as f:
            json.dump({"node_id": "gpu-node-1", "http": {"listen": "127.0.0.1:0"},
                       "orchestrator": dict(cluster=orch.cluster, **timing),
                       "heartbeat": {"interval_ms": INTERVAL_MS},
                       "handoff_dir": os.path.join(work, "engines"),
                       "pools": [{"id": "pool-0", "devices": [], "slots": 1}]}, f)
        started.append(daemon("gpu-node-1", [node_bin, "--config", path],
                              os.path.join(work, "gpu-node-1.log"), env).wait_listening())
        base = "http://" + orch.http

        def metrics():
            status, text = http("GET", base + "/metrics")
            assert status == 200, text
            return text

        if not wait_until(lambda: gauge(metrics(), "orchd_nodes_online", node_id="gpu-node-1") == 1, 5):
            raise RuntimeError("gpu-node-1 did not come online")
        # 10 heartbeat intervals after registering, the timestamp must be about one interval old.
        time.sleep(10 * INTERVAL_MS / 1000)
        now = time.time()
        ts = gauge(metrics(), "orchd_node_last_heartbeat_timestamp_seconds", node_id="gpu-node-1")
        status, body = http("GET", base + "/v2/nodes/gpu-node-1")
        listed_s = json.loads(body)["last_heartbeat_ms"] / 1000
        age = now - (ts or 0)
        print("heartbeat timestamp age %.3f s (/v2/nodes says %.3f s)" % (age, now - listed_s))
        if ts is None or age > 3 * INTERVAL_MS / 1000:
            problems.append("orchd_node_last_heartbeat_timestamp_seconds is %.1f s old after 10 "
                            "heartbeats (/v2/nodes last_heartbeat_ms is %.1f s old): it does not "
                            "follow heartbeats, so NodeHeartbeatStalled would fire on a healthy "
                            "node" % (age, now - listed_s))

        # A node registered over HTTP with a not-ready pool, then a heartbeat saying it is ready.
        status, body = http("POST", base + "/v2/nodes/register", token=token,
                            body='{"node_id":"curl-node","pools":[{"pool_id":"p","ready":false}]}')
        assert status == 200, body
        before = gauge(metrics(), "orchd_pools_available", node_id="curl-node", pool_id="p")
        status, body = http("POST", base + "/v2/nodes/curl-node/heartbeat", token=token,
                            body='{"pools":[{"pool_id":"p","ready":true}]}')
        assert status == 200, body
        ready = [p["ready"] for p in json.loads(http("GET", base + "/v2/nodes/curl-node")[1])["pools"]]
        after = gauge(metrics(), "orchd_pools_available", node_id="curl-node", pool_id="p")
        print("pool p: available %s -> %s after a ready heartbeat (/v2/nodes ready=%s)"
              % (before, after, ready))
        if before != 0:
            problems.append("a pool registered not ready has orchd_pools_available %s, expected 0" % before)
        if ready == [True] and after != 1:
            problems.append("a heartbeat made pool p ready (/v2/nodes ready=true) but "
                            "orchd_pools_available stays %s, so NoPoolsAvailable would fire while "
                            "a pool can take tasks" % after)
    finally:
        for d in started:
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
