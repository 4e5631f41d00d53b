#!/usr/bin/env bash
# Heartbeat benchmark (issue 2): one orchestratord, NODES simulated nodes (real node_agents, 4 pools
# each) in PROCS processes, heartbeating every second. Prints nodes held online, heartbeats/s
# handled, heartbeat round-trip p50/p99 (as the nodes measured it) and orchestratord's CPU use.
# Usage: scenarios/bench_heartbeats.sh [NODES=1000] [PROCS=4] [SECONDS=20]
set -euo pipefail
cd "$(dirname "$0")/.."
nodes=${1:-1000}
procs=${2:-4}
seconds=${3:-20}
bin=${LLORCH_BIN:-build/bin}
[ -x $bin/orchestratord ] && [ -x $bin/llorch-sim-nodes ] || bash scripts/build.sh
work=$(mktemp -d)
pids=()
cleanup() { kill -9 "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

cat >"$work/orch.json" <<JSON
{ "http": { "listen": "127.0.0.1:0" }, "cluster": { "listen": "127.0.0.1:0" },
  "heartbeat": { "interval_ms": 1000, "timeout_ms": 3000 }, "log": { "level": "info" } }
JSON
LLORCH_API_TOKEN=bench-token $bin/orchestratord --config "$work/orch.json" 2>"$work/orch.log" &
orch=$!
pids+=($orch)
for _ in $(seq 100); do grep -q ' listening ' "$work/orch.log" && break; sleep 0.05; done
http=$(grep -o 'http=[^ ]*' "$work/orch.log" | head -1 | cut -d= -f2)
cport=$(grep -o 'cluster=[^ ]*' "$work/orch.log" | head -1 | sed 's/.*://')

per=$((nodes / procs))
for p in $(seq 0 $((procs - 1))); do
  $bin/llorch-sim-nodes 127.0.0.1 "$cport" "sim$p" "$per" 1000 bench-token >"$work/sim$p.out" 2>&1 &
  pids+=($!)
done
total=$((per * procs))
t0=$(date +%s.%N)
for _ in $(seq 600); do
  online=$(curl -s "http://$http/v2/nodes" | jq .count)
  [ "$online" = "$total" ] && break
  sleep 0.1
done
t_online=$(echo "$(date +%s.%N) - $t0" | bc)

beats() { curl -s "http://$http/metrics" | awk '/^orchd_node_heartbeats_total\{.*outcome="success"/ {s+=$2} END {print s+0}'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$orch/stat"; }
hz=$(getconf CLK_TCK)
b0=$(beats); c0=$(cpu_ticks); w0=$(date +%s.%N)
sleep "$seconds"
b1=$(beats); c1=$(cpu_ticks); w1=$(date +%s.%N)
online=$(curl -s "http://$http/v2/nodes" | jq .count)
offline_events=$(grep -c ' node_offline ' "$work/orch.log" || true)

for p in $(seq 1 $procs); do kill -TERM "${pids[$p]}"; done
for p in $(seq 1 $procs); do wait "${pids[$p]}" || true; done
# Merge the per-process percentiles by taking the worst of each (conservative).
p50=$(cat "$work"/sim*.out | grep -o 'p50_ms=[0-9.]*' | cut -d= -f2 | sort -g | tail -1)
p99=$(cat "$work"/sim*.out | grep -o 'p99_ms=[0-9.]*' | cut -d= -f2 | sort -g | tail -1)

elapsed=$(echo "$w1 - $w0" | bc)
rate=$(echo "scale=1; ($b1 - $b0) / $elapsed" | bc)
cpu=$(echo "scale=1; 100 * ($c1 - $c0) / $hz / $elapsed" | bc)
printf '\n%-40s %12s %12s\n' "heartbeat benchmark ($(nproc) cores)" "measured" "goal"
printf '%-40s %12s %12s\n' "nodes held online (of $total, 4 pools)" "$online" "$total"
printf '%-40s %12s %12s\n' "time until all online (s)" "$t_online" "-"
printf '%-40s %12s %12s\n' "heartbeats/s handled" "$rate" "$total"
printf '%-40s %12s %12s\n' "heartbeat round trip p50 (ms)" "$p50" "-"
printf '%-40s %12s %12s\n' "heartbeat round trip p99 (ms, worst proc)" "$p99" "< 10"
printf '%-40s %12s %12s\n' "orchestratord CPU (% of one core)" "$cpu" "< 50"
printf '%-40s %12s %12s\n' "node_offline events during the run" "$offline_events" "0"
