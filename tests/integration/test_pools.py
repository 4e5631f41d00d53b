"""Pools on a GPU node: a real llorch-engine replica per pool, made ready by its handoff file,
restarted when it dies, replaced by preload; bad handoff files are quarantined."""
import os
import signal
import subprocess
import time

import pytest

from cluster import BIN, http, metric_value, wait_until


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "tiny.gguf"
    subprocess.run([os.path.join(BIN, "llorch-engine"), "make-test-model", "--shape", "tiny",
                    "--format", "gguf", "--out", str(path)], check=True, capture_output=True)
    return str(path)


FAST_RESTART = {"max_restarts": 2, "within_s": 60, "backoff_initial_ms": 50, "backoff_max_ms": 200}


def start_pool_node(cluster, model_path, node_id="gpu-node-1", preload=True):
    pool = {"id": "pool-0", "devices": [], "slots": 2}
    if preload:
        pool["model"] = "tiny"
    return cluster.start_node(node_id, pools=[pool], restart=FAST_RESTART,
                              models=[{"id": "tiny", "path": model_path}])


def status(node):
    return http("GET", node.url + "/pools/pool-0/status")[2]


def test_preloaded_pool_becomes_ready_through_its_handoff_file(cluster, tiny_model):
    cluster.start_orchestratord()
    t0 = time.monotonic()
    node = start_pool_node(cluster, tiny_model)
    waited = wait_until(lambda: (cluster.pool("gpu-node-1", "pool-0") or {}).get("ready"), 10)
    assert waited is not None, node.read_log()
    print(f"pool ready at orchestratord {(time.monotonic() - t0) * 1000:.0f} ms after node start")
    assert time.monotonic() - t0 < 2.0
    s = status(node)
    assert s["state"] == "ready" and s["live"] is True and s["pid"] > 0
    assert s["handoff_path"].endswith("/pool-0-r0.json") and os.path.exists(s["handoff_path"])
    assert s["slots_total"] == 2 and s["slots_free"] == 2 and s["model_id"] == "tiny"
    assert metric_value(cluster.metrics(), "orchd_pools_available",
                        {"node_id": "gpu-node-1", "pool_id": "pool-0"}) == 1
    node_metrics = cluster.metrics(node.url)
    assert metric_value(node_metrics, "pool_ready", {"pool_id": "pool-0"}) == 1
    assert metric_value(node_metrics, "pool_handoff_files_processed_total",
                        {"pool_id": "pool-0", "outcome": "valid"}) >= 1
    for event in ("engine_started", "handoff_processed"):
        assert event in node.read_log()


def open_files(pid, first_fd=0):
    """The sockets and pipes a process holds from fd `first_fd` on, as 'socket:[inode]'."""
    links = (os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")
             if int(fd) >= first_fd)
    return {link for link in links if link.startswith(("socket:", "pipe:"))}


def test_engine_holds_none_of_the_nodes_sockets(cluster, tiny_model):
    # Inherited descriptors would keep the node's HTTP port bound by its engines after the node
    # died, and its connections open.
    cluster.start_orchestratord()
    node = start_pool_node(cluster, tiny_model)
    assert wait_until(lambda: status(node).get("ready"), 10) is not None
    http("GET", node.url + "/pools/pool-0/status")  # an HTTP connection of the node's is open
    shared = open_files(status(node)["pid"], first_fd=3) & open_files(node.proc.pid)
    assert not shared


def test_idle_engine_keeps_its_link_past_the_dead_after_timeout(cluster, tiny_model):
    # the engine heartbeats at the node's keepalive: an idle one is not taken for dead
    cluster.start_orchestratord()
    node = start_pool_node(cluster, tiny_model)
    assert wait_until(lambda: status(node).get("ready"), 10) is not None
    pid = status(node)["pid"]
    time.sleep(3 * cluster.dead_after_ms / 1000)
    s = status(node)
    assert s["ready"] and s["pid"] == pid and s["restarts"] == 0, node.read_log()
    assert "engine_lost" not in node.read_log()


def test_killed_engine_is_restarted_and_ready_again(cluster, tiny_model):
    cluster.start_orchestratord()
    node = start_pool_node(cluster, tiny_model)
    assert wait_until(lambda: status(node).get("ready"), 10) is not None
    old_pid = status(node)["pid"]
    os.kill(old_pid, signal.SIGKILL)
    assert wait_until(lambda: not (cluster.pool("gpu-node-1", "pool-0") or {}).get("ready"), 5) is not None
    back = wait_until(lambda: status(node).get("ready") and status(node)["pid"] != old_pid, 10)
    assert back is not None, node.read_log()
    print(f"engine back {back * 1000:.0f} ms after kill -9")
    s = status(node)
    assert s["restarts"] == 1
    assert metric_value(cluster.metrics(node.url), "pool_engine_restarts_total", {"pool_id": "pool-0"}) == 1
    assert "engine_exited" in node.read_log() and "engine_restarted" in node.read_log()
    assert wait_until(lambda: (cluster.pool("gpu-node-1", "pool-0") or {}).get("ready"), 5) is not None


def test_engine_that_keeps_failing_makes_the_pool_failed_until_preload(cluster, tiny_model, tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x00" * 64)
    cluster.start_orchestratord()
    node = cluster.start_node("gpu-node-1", restart=FAST_RESTART,
                              pools=[{"id": "pool-0", "devices": [], "slots": 2, "model": "broken"}],
                              models=[{"id": "broken", "path": str(broken)},
                                      {"id": "tiny", "path": tiny_model}])
    assert wait_until(lambda: status(node).get("state") == "failed", 10) is not None, node.read_log()
    s = status(node)
    assert "POST /pools/pool-0/preload" in s["last_error"] and s["live"] is False
    pool = None
    assert wait_until(lambda: (cluster.pool("gpu-node-1", "pool-0") or {}).get("state") == "failed", 5)
    pool = cluster.pool("gpu-node-1", "pool-0")
    assert pool["ready"] is False and pool["last_error"]
    code, _, body = http("POST", node.url + "/pools/pool-0/preload", token=cluster.token,
                         body='{"model_id":"tiny","engine":"llorch"}')
    assert code == 202 and body == {"pool_id": "pool-0", "state": "loading"}
    assert wait_until(lambda: status(node).get("ready"), 10) is not None, node.read_log()


def test_runbook_preload_curl(cluster, tiny_model):
    cluster.start_orchestratord()
    node = start_pool_node(cluster, tiny_model, preload=False)
    s = status(node)
    assert s.get("state") == "unloaded", s

    def curl(body):
        out = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", "-X", "POST",
                              f"{node.url}/pools/pool-0/preload",
                              "-H", f"Authorization: Bearer {cluster.token}",
                              "-H", "Content-Type: application/json", "-d", body],
                             capture_output=True, text=True, timeout=10).stdout
        text, code = out.rsplit("\n", 1)
        return int(code), text

    # The runbook's command verbatim: an engine this node does not have is a clear 400.
    code, text = curl('{"model_id": "llama-3.1-8b-instruct", "engine": "llamacpp"}')
    assert code == 400 and '"ENGINE_NOT_AVAILABLE"' in text and "llorch" in text
    code, text = curl('{"model_id": "llama-3.1-8b-instruct", "engine": "llorch"}')
    assert code == 404 and '"MODEL_NOT_FOUND"' in text
    code, text = curl('{"engine": "llorch"}')
    assert code == 400
    code, _ = curl('{"model_id": "tiny", "engine": "llorch"}')
    assert code == 202
    assert wait_until(lambda: status(node).get("ready"), 10) is not None
    assert http("POST", node.url + "/pools/nope/preload", token=cluster.token,
                body='{"model_id":"tiny"}')[0] == 404
    assert http("POST", node.url + "/pools/pool-0/preload", body='{"model_id":"tiny"}')[0] == 401


def test_malformed_handoff_file_is_quarantined_and_the_pool_is_unaffected(cluster, tiny_model):
    cluster.start_orchestratord()
    node = start_pool_node(cluster, tiny_model)
    assert wait_until(lambda: status(node).get("ready"), 10) is not None
    handoff_dir = os.path.join(cluster.dir, "gpu-node-1", "engines")
    bad = os.path.join(handoff_dir, "pool-0-r9.json")
    with open(bad, "w") as f:
        f.write("{not json")
    rejected = os.path.join(handoff_dir, "rejected")
    assert wait_until(lambda: not os.path.exists(bad) and os.listdir(rejected), 5) is not None
    assert "handoff_rejected" in node.read_log()
    assert metric_value(cluster.metrics(node.url), "pool_handoff_files_processed_total",
                        {"pool_id": "pool-0", "outcome": "invalid"}) == 1
    assert status(node)["ready"] is True


def test_sigterm_stops_engines_and_removes_handoff_files(cluster, tiny_model):
    cluster.start_orchestratord()
    node = start_pool_node(cluster, tiny_model)
    assert wait_until(lambda: status(node).get("ready"), 10) is not None
    s = status(node)
    assert node.stop(signal.SIGTERM, timeout=10) == 0
    assert not os.path.exists(s["handoff_path"])
    assert wait_until(lambda: not os.path.exists(f"/proc/{s['pid']}"), 5) is not None
