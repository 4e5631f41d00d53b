"""orchestratord + two pool-managerd on loopback: registration, failure detection, recovery."""
import signal
import subprocess
import time

from cluster import http, metric_value, wait_until


def start_two_nodes(cluster):
    cluster.start_orchestratord()
    t0 = time.monotonic()
    cluster.start_node("gpu-node-1")
    cluster.start_node("gpu-node-2")
    waited = wait_until(lambda: cluster.nodes()["count"] == 2, 5)
    return waited, time.monotonic() - t0


def test_both_nodes_online_within_one_second(cluster):
    waited, since_start = start_two_nodes(cluster)
    assert waited is not None, cluster.nodes()
    print(f"both nodes online {since_start * 1000:.0f} ms after the first node started")
    assert since_start < 1.0
    body = cluster.nodes()
    assert body["count"] == 2
    for n in body["nodes"]:
        assert n["online"] is True and n["status"] == "online"
        assert n["pools"][0]["pool_id"] == "pool-0"
        assert n["pools"][0]["ready"] is False  # no engine yet
        assert n["capabilities"]["cpu_cores"] > 0
        assert n["address"].startswith("http://127.0.0.1:")
    text = cluster.metrics()
    assert metric_value(text, "orchd_nodes_online", {"node_id": "gpu-node-1"}) == 1
    assert metric_value(text, "orchd_node_registrations_total", {"outcome": "success"}) >= 2


def test_kill_9_marks_node_offline_in_under_a_second(cluster):
    start_two_nodes(cluster)
    victim = cluster.daemons[1]
    victim.send(signal.SIGKILL)
    waited = wait_until(lambda: not cluster.online("gpu-node-1"), 5)
    assert waited is not None
    print(f"kill -9 detected in {waited * 1000:.0f} ms")
    assert waited < 1.0
    body = cluster.nodes()
    assert body["count"] == 1
    assert cluster.node("gpu-node-1")["status"] == "offline"
    assert metric_value(cluster.metrics(), "orchd_nodes_online", {"node_id": "gpu-node-1"}) == 0
    assert "node_offline" in cluster.orch.read_log()


def test_sigstop_detected_then_sigcont_recovers_without_restart(cluster):
    start_two_nodes(cluster)
    victim = cluster.daemons[2]
    time.sleep(0.3)
    victim.send(signal.SIGSTOP)
    waited = wait_until(lambda: not cluster.online("gpu-node-2"), 10)
    assert waited is not None
    bound = (cluster.timeout_ms + cluster.interval_ms) / 1000
    print(f"SIGSTOP detected in {waited * 1000:.0f} ms (bound {bound * 1000:.0f} ms)")
    assert waited <= bound + 0.25  # polling and scheduling slack
    assert cluster.online("gpu-node-1")
    pid = victim.proc.pid
    victim.send(signal.SIGCONT)
    back = wait_until(lambda: cluster.online("gpu-node-2"), 10)
    assert back is not None
    print(f"SIGCONT: online again after {back * 1000:.0f} ms")
    assert victim.proc.pid == pid and victim.proc.poll() is None  # same process, no restart


def test_orchestratord_restart_nodes_reregister_within_two_seconds(cluster):
    start_two_nodes(cluster)
    http_port = int(cluster.orch.http.rsplit(":", 1)[1])
    cluster.orch.stop()
    t0 = time.monotonic()
    cluster.start_orchestratord(http_port=http_port)
    waited = wait_until(lambda: cluster.nodes()["count"] == 2, 10)
    assert waited is not None
    total = time.monotonic() - t0
    print(f"both nodes registered again {total * 1000:.0f} ms after the restart began")
    assert total < 2.0


def test_wrong_token_is_refused_logged_and_counted(cluster):
    cluster.start_orchestratord()
    cluster.start_node("gpu-node-1")
    intruder = cluster.start_node("intruder", token="not-the-token")
    assert wait_until(lambda: "auth_failed" in cluster.orch.read_log(), 5) is not None
    time.sleep(0.3)
    assert cluster.node("intruder") is None
    log = cluster.orch.read_log()
    assert "not-the-token" not in log  # only a fingerprint is logged
    assert "fingerprint=" in log
    text = cluster.metrics()
    assert metric_value(text, "orchd_node_registrations_total", {"outcome": "auth_failed"}) >= 1
    assert "registration_refused" in intruder.read_log()


def test_runbook_curls(cluster):
    start_two_nodes(cluster)
    base = cluster.orch.url
    token = cluster.token

    def curl(*args):
        out = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", *args],
                             capture_output=True, text=True, timeout=10).stdout
        body, code = out.rsplit("\n", 1)
        return int(code), body

    # No Nodes Online: verification.
    code, body = curl(f"{base}/v2/nodes")
    assert code == 200
    jq = subprocess.run(["jq", ".count"], input=body, capture_output=True, text=True).stdout
    assert jq.strip() == "2"
    code, body = curl(f"{base}/metrics")
    assert code == 200 and 'orchd_nodes_online{node_id="gpu-node-1"} 1' in body
    code, body = curl(f"{base}/health")
    assert code == 200 and '"status":"ok"' in body
    # Low Node Availability: nobody offline yet, so the jq filter prints nothing.
    jq = subprocess.run(["jq", ".nodes[] | select(.online == false)"], input=curl(f"{base}/v2/nodes")[1],
                        capture_output=True, text=True)
    assert jq.returncode == 0 and jq.stdout.strip() == ""
    # No Pools Available: every pool is not ready (no engine yet).
    jq = subprocess.run(["jq", "-c", ".nodes[].pools[] | select(.ready == false) | .pool_id"],
                        input=curl(f"{base}/v2/nodes")[1], capture_output=True, text=True)
    assert jq.stdout.split() == ['"pool-0"', '"pool-0"']
    # Node side: pool status.
    node_url = cluster.daemons[1].url
    code, body = curl(f"{node_url}/pools/pool-0/status")
    assert code == 200 and '"state":"unloaded"' in body
    code, body = curl(f"{node_url}/health")
    assert code == 200 and '"registered":true' in body
    # Heartbeat Failures: the runbook's heartbeat check returns 200 (form-encoded body).
    code, body = curl("-H", f"Authorization: Bearer {token}", f"{base}/v2/nodes/gpu-node-1/heartbeat",
                      "-X", "POST", "-d", '{"timestamp":"2025-10-01T00:00:00Z","pools":[]}')
    assert code == 200, body
    # Registration Failures: the runbook's registration check returns 200.
    code, body = curl("-H", f"Authorization: Bearer {token}", f"{base}/v2/nodes/register", "-X", "POST",
                      "-d", '{"node_id":"test","machine_id":"test","address":"http://test:9200",'
                            '"pools":[],"capabilities":{},"version":"0.1.0"}')
    assert code == 200, body
    assert cluster.node("test")["online"] is True
    # Manual operations: forced deregistration.
    code, body = curl("-X", "DELETE", f"{base}/v2/nodes/test", "-H", f"Authorization: Bearer {token}")
    assert code == 204
    assert cluster.node("test") is None
    code, body = curl("-X", "DELETE", f"{base}/v2/nodes/test", "-H", f"Authorization: Bearer {token}")
    assert code == 404 and '"code":"NODE_NOT_FOUND"' in body
    log = cluster.orch.read_log()
    for event in ("node_registered", "node_deregistered"):
        assert event in log


def test_http_registered_node_goes_offline_by_sweep_and_comes_back(cluster):
    cluster.start_orchestratord()
    base, token = cluster.orch.url, cluster.token
    status, _, body = http("POST", base + "/v2/nodes/register", token=token,
                           body='{"node_id":"curl-node","pools":[{"pool_id":"p","ready":true}]}')
    assert status == 200 and body["success"] is True and body["next_heartbeat_ms"] == 200
    assert cluster.online("curl-node")
    gone = wait_until(lambda: not cluster.online("curl-node"), 5)
    assert gone is not None and gone <= (cluster.timeout_ms + cluster.interval_ms) / 1000 + 0.25
    assert "heartbeat_missed" in cluster.orch.read_log()
    assert metric_value(cluster.metrics(), "orchd_node_heartbeats_total",
                        {"node_id": "curl-node", "outcome": "missed"}) >= 1
    status, _, body = http("POST", base + "/v2/nodes/curl-node/heartbeat", token=token, body="{}")
    assert status == 200
    assert cluster.online("curl-node")
    assert metric_value(cluster.metrics(), "orchd_pools_available",
                        {"node_id": "curl-node", "pool_id": "p"}) == 1


def test_drain_stops_placement_for_node_and_pool(cluster):
    start_two_nodes(cluster)
    base, token = cluster.orch.url, cluster.token
    http("POST", base + "/v2/nodes/register", token=token,
         body='{"node_id":"curl-node","pools":[{"pool_id":"p","ready":true},{"pool_id":"q","ready":true}]}')
    status, _, _ = http("POST", base + "/v2/pools/p/drain", token=token, body='{"deadline_ms":1000}')
    assert status == 202
    node = cluster.node("curl-node")
    assert [p["draining"] for p in node["pools"]] == [True, False]
    assert metric_value(cluster.metrics(), "orchd_pools_available",
                        {"node_id": "curl-node", "pool_id": "p"}) == 0
    status, _, _ = http("POST", base + "/v2/nodes/curl-node/drain", token=token, body="")
    assert status == 202
    assert cluster.node("curl-node")["status"] == "draining"
    assert http("POST", base + "/v2/nodes/nope/drain", token=token)[0] == 404
    assert http("POST", base + "/v2/pools/nope/drain", token=token)[0] == 404


def test_cloud_profile_disabled_refuses_nodes_with_a_hint(cluster):
    cluster.start_orchestratord(env_extra={"ORCHESTRATORD_CLOUD_PROFILE": "false"})
    node = cluster.start_node("gpu-node-1")
    status, _, body = http("POST", cluster.orch.url + "/v2/nodes/register", token=cluster.token,
                           body='{"node_id":"x"}')
    assert status == 503 and body["code"] == "CLOUD_PROFILE_DISABLED"
    assert "ORCHESTRATORD_CLOUD_PROFILE=true" in body["message"]
    assert wait_until(lambda: "CLOUD_PROFILE_DISABLED" in node.read_log(), 5) is not None
    assert "ORCHESTRATORD_CLOUD_PROFILE=true" in cluster.orch.read_log()
    assert cluster.nodes()["count"] == 0


def test_metrics_pass_promtool_on_both_daemons(cluster):
    start_two_nodes(cluster)
    for url in (cluster.orch.url, cluster.daemons[1].url):
        text = cluster.metrics(url)
        check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                               text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    node_text = cluster.metrics(cluster.daemons[1].url)
    assert metric_value(node_text, "pool_ready", {"pool_id": "pool-0"}) == 0
    assert metric_value(node_text, "pool_slots_capacity", {"pool_id": "pool-0"}) == 4
