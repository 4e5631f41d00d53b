#!/usr/bin/env bash
# Sets up, builds and runs a local cluster from config/: one orchestratord and two pool-managerd
# on loopback, then shows what an operator would look at. Ctrl-C stops everything.
# --once: show the cluster, then stop (for scripts).
set -euo pipefail
cd "$(dirname "$0")/.."
once=false
[ "${1:-}" = "--once" ] && once=true
bash scripts/setup.sh
bash scripts/build.sh
export LLORCH_API_TOKEN="${LLORCH_API_TOKEN:-local-demo-token}"
logs=/tmp/llama-orch
mkdir -p "$logs" models
# The demo pools serve a generated test model (deterministic random weights: the text is noise,
# but every token is really computed by the engine). Nothing is downloaded.
[ -f models/tiny.gguf ] || build/bin/llorch-engine make-test-model --shape tiny --format gguf \
  --out models/tiny.gguf
pids=()
stop() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap stop EXIT INT TERM

start() { # name, command...
  local name=$1; shift
  "$@" 2>"$logs/$name.log" &
  pids+=($!)
  for _ in $(seq 100); do grep -q ' listening ' "$logs/$name.log" && return 0; sleep 0.05; done
  echo "$name did not start; its log:" >&2; cat "$logs/$name.log" >&2; exit 1
}
start orchestratord build/bin/orchestratord --config config/orchestratord.json
start gpu-node-1 build/bin/pool-managerd --config config/pool-managerd-1.json
start gpu-node-2 build/bin/pool-managerd --config config/pool-managerd-2.json
for _ in $(seq 100); do
  ready=$(curl -s http://127.0.0.1:8080/v2/nodes | jq '[.nodes[].pools[] | select(.ready)] | length')
  [ "$ready" = 2 ] && break
  sleep 0.1
done

echo "== curl http://127.0.0.1:8080/v2/nodes"
curl -s http://127.0.0.1:8080/v2/nodes | jq .
echo "== curl http://127.0.0.1:8080/health"
curl -s http://127.0.0.1:8080/health | jq -c .
echo "== curl http://127.0.0.1:8080/metrics | grep orchd_nodes_online"
curl -s http://127.0.0.1:8080/metrics | grep '^orchd_nodes_online'
echo "== a task, streamed (POST /v2/tasks, then GET .../events)"
auth=(-H "Authorization: Bearer $LLORCH_API_TOKEN")
task=$(curl -s "${auth[@]}" http://127.0.0.1:8080/v2/tasks \
  -d '{"model":"tiny","prompt":"Once upon a time","max_tokens":16,"seed":1}' | jq -r .task_id)
curl -s -N "${auth[@]}" "http://127.0.0.1:8080/v2/tasks/$task/events"
echo "logs: $logs/*.log   token: LLORCH_API_TOKEN=$LLORCH_API_TOKEN"
$once && exit 0
echo "running; Ctrl-C stops the cluster"
wait
