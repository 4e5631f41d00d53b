"""The OpenAI-compatible facade, driven by the official openai npm client."""
import json
import os
import subprocess

from cluster import BIN, http, wait_until

CLIENT = os.path.join(os.path.dirname(__file__), "openai_client", "client.mjs")


def test_official_openai_client(cluster, tmp_path):
    model = str(tmp_path / "tiny.gguf")
    subprocess.run([os.path.join(BIN, "llorch-engine"), "make-test-model", "--shape", "tiny",
                    "--format", "gguf", "--out", model], check=True, capture_output=True)
    cluster.start_orchestratord()
    cluster.start_node("gpu-node-1", pools=[{"id": "pool-1", "devices": [], "slots": 2, "model": "tiny"}],
                       models=[{"id": "tiny", "path": model}])
    assert wait_until(lambda: (cluster.pool("gpu-node-1", "pool-1") or {}).get("ready"), 10)
    run = subprocess.run(["node", CLIENT, cluster.orch.url + "/v1", cluster.token, "tiny"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    expected = subprocess.run([os.path.join(BIN, "llorch-engine"), "generate", "--model", model,
                               "--prompt", "Once upon a time", "--max-tokens", "12", "--seed", "5",
                               "--temperature", "0"], capture_output=True, text=True).stdout.rstrip("\n")
    assert out["models"] == ["tiny"]
    assert out["completion"]["object"] == "text_completion"
    assert out["completion"]["text"].lstrip(" ") == expected.lstrip(" ")
    assert out["completion"]["finish"] == "length"
    assert out["completion"]["usage"]["completion_tokens"] == 12
    assert out["stream"]["text"] == out["completion"]["text"]
    assert out["stream"]["chunks"] >= 12 and out["stream"]["finish"] == "length"
    assert out["chat"]["object"] == "chat.completion" and out["chat"]["role"] == "assistant"
    assert out["chat"]["content"] and out["chat"]["finish"] == "length"
    assert out["chat_stream"] == {"content": out["chat"]["content"], "role": "assistant"}
    assert out["unknown_model"] == 404


def test_openai_requests_are_validated(cluster):
    cluster.start_orchestratord()
    base, token = cluster.orch.url, cluster.token
    for path, body in [("/v1/completions", '{"model":"m"}'),
                       ("/v1/completions", '{"model":"m","prompt":"x","stop":["\\n"]}'),
                       ("/v1/chat/completions", '{"model":"m","messages":[]}'),
                       ("/v1/chat/completions", '{"model":"m","messages":[{"role":"robot","content":"x"}]}'),
                       ("/v1/completions", '{"model":"m","prompt":"x","temperature":9}')]:
        status, _, resp = http("POST", base + path, body=body, token=token)
        assert status == 400 and resp["code"] == "INVALID_PARAMS", (path, body, resp)
    assert http("GET", base + "/v1/models")[0] == 401
    status, _, resp = http("GET", base + "/v1/models", token=token)
    assert status == 200 and resp == {"object": "list", "data": []}
