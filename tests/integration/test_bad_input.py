"""Hostile and malformed input: a clear 4xx with the error envelope, no crash, no state change."""
import json
import os
import socket
import subprocess

from cluster import BIN, http


def envelope_ok(status, body, code=None):
    assert isinstance(body, dict), body
    assert set(body) >= {"code", "message", "retriable"}, body
    if code:
        assert body["code"] == code, body
    return status


def test_bad_requests_get_clear_errors_and_change_nothing(cluster):
    cluster.start_orchestratord()
    cluster.start_node("gpu-node-1")
    base, token = cluster.orch.url, cluster.token
    before = None

    def snapshot():
        nodes = cluster.nodes()
        return [(n["node_id"], n["online"], len(n["pools"])) for n in nodes["nodes"]]

    import time
    time.sleep(0.3)
    before = snapshot()
    cases = [
        ("POST", "/v2/nodes/register", "{not json", 400, "INVALID_PARAMS"),
        ("POST", "/v2/nodes/register", "[]", 400, "INVALID_PARAMS"),
        ("POST", "/v2/nodes/register", '{"node_id": 42}', 400, "INVALID_PARAMS"),
        ("POST", "/v2/nodes/register", '{"node_id": "a b"}', 400, "INVALID_PARAMS"),
        ("POST", "/v2/nodes/register", '{"node_id": "x", "pools": {}}', 400, "INVALID_PARAMS"),
        ("POST", "/v2/nodes/register", '{"node_id": "x", "pools": [{"pool_id": "p", "slots_total": -1}]}', 400, "INVALID_PARAMS"),
        ("POST", "/v2/nodes/register", '{"node_id": "x", "capabilities": {"cpu_cores": "many"}}', 400, "INVALID_PARAMS"),
        ("POST", "/v2/nodes/register", "[" * 100000, 400, "INVALID_PARAMS"),
        ("POST", "/v2/nodes/gpu-node-1/heartbeat", '{"pools": [{"ready": true}]}', 400, "INVALID_PARAMS"),
        ("POST", "/v2/nodes/gpu-node-1/heartbeat", '{"timestamp": []}', 400, "INVALID_PARAMS"),
        ("POST", "/v2/nodes/gpu-node-1/heartbeat", '\x00\xff', 400, "INVALID_PARAMS"),
        ("POST", "/v2/nodes/gpu-node-1/drain", '{"deadline_ms": -5}', 400, "INVALID_PARAMS"),
        ("GET", "/v2/nope", None, 404, None),
        ("GET", "/v2/nodes/unknown-node", None, 404, "NODE_NOT_FOUND"),
        ("PUT", "/v2/nodes", None, 405, None),
        ("POST", "/v2/nodes/register", "x" * (2 << 20), 413, None),
    ]
    for method, path, body, want, code in cases:
        status, hdrs, resp = http(method, base + path, body=body, token=token)
        assert status == want, (method, path, status, resp)
        envelope_ok(status, resp, code)
        assert "X-Correlation-Id" in hdrs or "x-correlation-id" in {k.lower() for k in hdrs}
    assert cluster.orch.proc.poll() is None
    assert snapshot() == before


def test_bad_bearer_headers(cluster):
    cluster.start_orchestratord()
    base = cluster.orch.url
    reg = '{"node_id":"x"}'
    status, _, body = http("POST", base + "/v2/nodes/register", body=reg)
    assert status == 401 and body["code"] == "MISSING_TOKEN"
    for value in ["Bearer wrong", "Basic dGVzdA==", "Bearer", "Bearer  a b", "bearer test-tokenX"]:
        status, _, body = http("POST", base + "/v2/nodes/register", body=reg,
                               headers={"Authorization": value})
        assert status == 401 and body["code"] == "BAD_TOKEN", (value, body)
    # A wrong token is refused on open routes too.
    status, _, body = http("GET", base + "/v2/nodes", token="wrong")
    assert status == 401 and body["code"] == "BAD_TOKEN"
    assert http("GET", base + "/v2/nodes")[0] == 200
    assert cluster.nodes()["nodes"] == []


def test_garbage_on_the_sockets_does_not_crash(cluster):
    cluster.start_orchestratord()
    host, port = cluster.orch.http.rsplit(":", 1)
    for payload in [b"\x00" * 1000, b"GET / HTTP/9.9\r\n\r\n", b"GARBAGE\r\n\r\n",
                    b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
                    b"GET /health HTTP/1.1\r\n" + b"X: " + b"a" * 100000 + b"\r\n\r\n"]:
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(payload)
            try:
                s.recv(4096)
            except OSError:
                pass
    # The cluster port: random bytes instead of BASP.
    with socket.create_connection(("127.0.0.1", cluster.cluster_port), timeout=5) as s:
        s.sendall(os.urandom(4096))
    assert cluster.orch.proc.poll() is None
    assert http("GET", cluster.orch.url + "/health")[0] == 200


def test_invalid_config_files_stop_the_daemon_with_one_line_per_problem(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{ "http": { "listen": "nowhere" }, "heartbeat": { "interval_ms": "often" }, }')
    r = subprocess.run([os.path.join(BIN, "orchestratord"), "--config", str(bad)],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2, r.stderr
    assert all(line.startswith(str(bad) + ": $.") for line in lines)
    assert any("$.http.listen" in line for line in lines)
    assert any("$.heartbeat.interval_ms" in line for line in lines)

    missing = subprocess.run([os.path.join(BIN, "pool-managerd"), "--config", str(tmp_path / "none.json")],
                             capture_output=True, text=True, timeout=10)
    assert missing.returncode == 2 and "none.json" in missing.stderr

    tls = tmp_path / "tls.json"
    tls.write_text(json.dumps({"cluster": {"listen": "127.0.0.1:0", "tls": {"certificate": "/etc/hostname"}}}))
    r = subprocess.run([os.path.join(BIN, "orchestratord"), "--config", str(tls), "--check-config"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "$.cluster.tls" in r.stderr


def test_cli_contract(tmp_path):
    for binary in ("orchestratord", "pool-managerd"):
        path = os.path.join(BIN, binary)
        assert subprocess.run([path, "--version"], capture_output=True, text=True).stdout.startswith(binary)
        assert subprocess.run([path, "--help"], capture_output=True, text=True).returncode == 0
        r = subprocess.run([path, "--bogus"], capture_output=True, text=True)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    good = tmp_path / "orch.json"
    good.write_text('// comment\n{ "http": { "listen": "127.0.0.1:0" }, "cluster": { "listen": "127.0.0.1:0" }, }')
    r = subprocess.run([os.path.join(BIN, "orchestratord"), "--config", str(good), "--check-config"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # Non-loopback without a token: exit 2 with one clear line.
    public = tmp_path / "public.json"
    public.write_text('{ "http": { "listen": "0.0.0.0:0" }, "cluster": { "listen": "127.0.0.1:0" } }')
    env = {k: v for k, v in os.environ.items() if k != "LLORCH_API_TOKEN"}
    r = subprocess.run([os.path.join(BIN, "orchestratord"), "--config", str(public)],
                       capture_output=True, text=True, env=env, timeout=10)
    assert r.returncode == 2 and "token" in r.stderr and len(r.stderr.strip().splitlines()) == 1
