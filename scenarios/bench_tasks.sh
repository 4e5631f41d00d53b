#!/usr/bin/env bash
# Task path benchmark (issue 4): one orchestratord and one pool-managerd with two pools of the
# `tiny` test model: pool-1 with a slot per client, pool-8 with 8 slots (as model `tiny-8slots`).
# Measures, on pool-1:
# - time to first token and tokens/s straight to the engine process and through orchestratord
#   (the same request each way in turn), one stream at a time, and 8 streams at once (one way,
#   then the other). A stream's tokens/s is the rate of its tokens: each time a MAX_TOKENS and a
#   MAX_TOKENS/4 request go each way, and the difference of their times is what the tokens between
#   them took, without the fixed time to the first token (its own figure) and to the end. Each
#   such group gives orchestratord's rate as a share of the engine's, and the median share is
#   printed, with the same for the whole MAX_TOKENS request (first token included);
# - sustained tasks/s (max_tokens 1) with CLIENTS concurrent clients, each task a POST /v2/tasks
#   and a GET of its events, with each process's CPU time per task (the client's own, the
#   daemons' from /proc) and what that cost allows on this machine's cores; the engine alone,
#   sent max_tokens 1 over CLIENTS streams, is the baseline of what the machine does with no
#   control plane;
# - the same load with each task one POST /v1/completions;
# and the /v2 load on pool-8, where all but 8 clients wait in admission (baseline: the engine
# alone over 8 streams).
# The defaults, 400 requests of 96 tokens (tiny's context is 128, the prompt takes 17), keep the
# stream's rate within a few percent from run to run; 200 of 64 varied 85 - 103 %.
# Usage: scenarios/bench_tasks.sh [REQUESTS=400] [MAX_TOKENS=96] [LOAD_SECONDS=10] [CLIENTS=64]
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-400}
max_tokens=${2:-96}
seconds=${3:-10}
clients=${4:-64}
bin=${LLORCH_BIN:-build/bin}
[ -x $bin/orchestratord ] && [ -x $bin/llorch-bench-tasks ] || bash scripts/build.sh
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
token=bench-token
$bin/llorch-engine make-test-model --shape tiny --format gguf --out "$work/tiny.gguf" >/dev/null

cat >"$work/orch.json" <<JSON
{ "http": { "listen": "127.0.0.1:0" }, "cluster": { "listen": "127.0.0.1:0" },
  "admission": { "capacity": 1000 }, "log": { "level": "info" } }
JSON
wait_listening() { for _ in $(seq 200); do grep -q ' listening ' "$1" && return; sleep 0.05; done; exit 1; }
LLORCH_API_TOKEN=$token $bin/orchestratord --config "$work/orch.json" 2>"$work/orch.log" &
pids+=($!)
wait_listening "$work/orch.log"
http=$(grep -o 'http=[^ ]*' "$work/orch.log" | head -1 | cut -d= -f2)
cport=$(grep -o 'cluster=[^ ]*' "$work/orch.log" | head -1 | sed 's/.*://')
cat >"$work/node.json" <<JSON
{ "node_id": "bench-node", "http": { "listen": "127.0.0.1:0" },
  "orchestrator": { "cluster": "127.0.0.1:$cport" }, "handoff_dir": "$work/engines",
  "models": [ { "id": "tiny", "path": "$work/tiny.gguf" }, { "id": "tiny-8slots", "path": "$work/tiny.gguf" } ],
  "pools": [ { "id": "pool-1", "devices": [], "slots": $clients, "threads": 1, "model": "tiny" },
             { "id": "pool-8", "devices": [], "slots": 8, "threads": 1, "model": "tiny-8slots" } ],
  "log": { "level": "info" } }
JSON
LLORCH_API_TOKEN=$token $bin/pool-managerd --config "$work/node.json" 2>"$work/node.log" &
pids+=($!)
wait_listening "$work/node.log"
node_http=$(grep -o 'http=[^ ]*' "$work/node.log" | head -1 | cut -d= -f2)
for _ in $(seq 200); do
  [ "$(curl -s "http://$http/v2/nodes" | jq '[.nodes[].pools[] | select(.ready)] | length')" = 2 ] && break
  sleep 0.05
done
endpoint=$(curl -s "http://$node_http/pools/pool-1/status" | jq -r .endpoint)
endpoint8=$(curl -s "http://$node_http/pools/pool-8/status" | jq -r .endpoint)

paired=$($bin/llorch-bench-tasks paired "${endpoint%:*}" "${endpoint##*:}" "$requests" "$max_tokens" \
  $token tiny "${http%:*}" "${http##*:}")
direct8=$($bin/llorch-bench-tasks direct-streams "${endpoint%:*}" "${endpoint##*:}" "$requests" "$max_tokens" 8)
orch8=$($bin/llorch-bench-tasks orch-streams "${http%:*}" "${http##*:}" "$requests" "$max_tokens" $token tiny 8)
# CPU time of each daemon during the load, from /proc (utime + stime, in clock ticks)
engine_pid=$(grep -o 'engine_started pool_id=pool-1 pid=[0-9]*' "$work/node.log" | head -1 | cut -d= -f3)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
declare -A cpu0
for p in "${pids[0]}" "${pids[1]}" "$engine_pid"; do cpu0[$p]=$(cpu_ticks "$p"); done
load=$($bin/llorch-bench-tasks load "${http%:*}" "${http##*:}" "$seconds" "$clients" $token tiny)
tasks=$(echo "$load" | grep -oE 'tasks=[0-9]+' | cut -d= -f2)
us_per_task() { echo "scale=0; ($(cpu_ticks "$1") - ${cpu0[$1]}) * 1000000 / $(getconf CLK_TCK) / $tasks" | bc; }
orch_us=$(us_per_task "${pids[0]}"); node_us=$(us_per_task "${pids[1]}"); engine_us=$(us_per_task "$engine_pid")
# The engine alone, max_tokens 1 over as many streams as clients with no control plane: what it
# does per second with the machine to itself (tokens/s is tasks/s here).
engine_alone=$($bin/llorch-bench-tasks direct-streams "${endpoint%:*}" "${endpoint##*:}" $((seconds * 1000)) 1 "$clients")
# The same load on a pool of 8 slots: all but 8 clients wait in admission, and a task is placed
# only when one ends; the engine alone on 8 streams as its baseline.
load8=$($bin/llorch-bench-tasks load "${http%:*}" "${http##*:}" "$seconds" "$clients" $token tiny-8slots)
engine_alone8=$($bin/llorch-bench-tasks direct-streams "${endpoint8%:*}" "${endpoint8##*:}" $((seconds * 1000)) 1 8)
completions=$($bin/llorch-bench-tasks load-completions "${http%:*}" "${http##*:}" "$seconds" "$clients" $token tiny)
get() { echo "$1" | grep -oE "(^| )$2=[^ ]*" | cut -d= -f2; }
share() { echo "scale=1; 100 * $1 / $2" | bc; }
row() { printf '%-48s %12s %12s %10s\n' "$@"; }
d50=$(get "$paired" direct_ttft_p50_ms); d99=$(get "$paired" direct_ttft_p99_ms)
o50=$(get "$paired" orch_ttft_p50_ms); o99=$(get "$paired" orch_ttft_p99_ms)
dtok=$(get "$paired" direct_tok_s); otok=$(get "$paired" orch_tok_s)
printf '\ntask path benchmark, tiny model, %s requests x %s tokens (%s cores)\n' "$requests" "$max_tokens" "$(nproc)"
row "" "engine" "via orchd" "goal"
row "time to first token p50 (ms)" "$d50" "$o50" "+< 1"
row "time to first token p99 (ms)" "$d99" "$o99" "+< 3"
row "added time to first token p50 / p99 (ms)" "" "$(echo "$o50 - $d50" | bc) / $(echo "$o99 - $d99" | bc)"
row "  the same, of each request pair's difference" "" "$(get "$paired" added_p50_ms) / $(get "$paired" added_p99_ms)"
row "tokens/s per stream, whole request (p50)" "$dtok" "$otok"
row "  share of the engine's, per pair (p50)" "" "$(get "$paired" whole_share_p50) %"
row "  the same, tokens $(get "$paired" short_tokens) to $max_tokens (the stream's rate)" "" "$(get "$paired" stream_share_p50) %" ">= 95 %"
d8=$(get "$direct8" tok_s); o8=$(get "$orch8" tok_s)
row "tokens/s of 8 concurrent streams" "$d8" "$o8"
row "  share of the engine's" "" "$(share "$o8" "$d8") %"
row "tasks/s, max_tokens 1, $clients clients, $clients slots" "$(get "$engine_alone" tok_s)" "$(get "$load" tasks_s)" ">= 5000"
row "  failed tasks" "" "$(get "$load" failed)"
client_us=$(get "$load" client_cpu_us_per_task); client_us=${client_us%.*}
sum_us=$((client_us + orch_us + node_us + engine_us))
row "  CPU per task (us): client, orchd" "" "$client_us, $orch_us"
row "  CPU per task (us): pool-managerd, engine" "" "$node_us, $engine_us"
row "  at that cost, $(nproc) cores allow (tasks/s)" "" "$((1000000 * $(nproc) / sum_us))"
row "  each task one POST /v1/completions" "" "$(get "$completions" tasks_s)"
row "    failed tasks" "" "$(get "$completions" failed)"
row "tasks/s, max_tokens 1, $clients clients, 8 slots" "$(get "$engine_alone8" tok_s)" "$(get "$load8" tasks_s)"
row "  failed tasks" "" "$(get "$load8" failed)"
