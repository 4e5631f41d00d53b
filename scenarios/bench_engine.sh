#!/usr/bin/env bash
# Engine decode benchmark (issue 3). Generates the s15m and s110m test models (F32 and Q8_0,
# GGUF) once, then measures decode tok/s with 1 and 2 threads, Q8_0 with 2 threads and 4
# concurrent streams, each next to the limit the memory system allows in the same run:
# (weights + KV bytes read per step) / (measured read bandwidth of the model file).
# Usage: scenarios/bench_engine.sh [TOKENS=128] [ROUNDS=5]
#   each figure is the best of ROUNDS rounds, each round one decode run then one bandwidth probe.
#   The rounds go round-robin over the figures: a burst of load from other jobs on the host
#   (tens of seconds) then costs each figure a round, not all the rounds of one figure.
#   LLORCH_ENGINE=path/to/llorch-engine (default build/bin/llorch-engine)
#   LLORCH_BENCH_MODELS=dir for the generated models (default build/bench-models)
set -euo pipefail
cd "$(dirname "$0")/.."
tokens=${1:-128}
rounds=${2:-5}
bin=${LLORCH_ENGINE:-build/bin/llorch-engine}
models=${LLORCH_BENCH_MODELS:-build/bench-models}
[ -x "$bin" ] || { echo "no $bin: build first (scripts/build.sh)" >&2; exit 1; }
mkdir -p "$models"

model() { # shape quant -> path (generated on first use)
  local path="$models/$1-$2.gguf"
  [ -f "$path" ] || "$bin" make-test-model --shape "$1" --format gguf --quant "$2" --out "$path"
  echo "$path"
}

field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
max() { awk -v a="$1" -v b="$2" 'BEGIN { print (b > a) ? b : a }'; }

configs=()
for shape in s15m s110m; do
  configs+=("$shape f32 1 1" "$shape f32 2 1" "$shape q8_0 2 1" "$shape f32 2 4")
done
declare -A tps gbs bytes
for ((r = 1; r <= rounds; r++)); do
  for c in "${configs[@]}"; do
    read -r shape quant threads streams <<<"$c"
    out=$("$bin" bench --model "$(model "$shape" "$quant")" --threads "$threads" --streams "$streams" \
      --tokens "$tokens" --rounds 1 | tail -1)
    key="$shape-$quant-$threads-$streams"
    tps[$key]=$(max "${tps[$key]:-0}" "$(field "$out" tok_per_s)")
    gbs[$key]=$(max "${gbs[$key]:-0}" "$(field "$out" read_gb_per_s)")
    bytes[$key]=$(field "$out" bytes_per_step)
  done
done

printf '%-6s %-5s %7s %7s %9s %9s %10s %10s %6s\n' model quant threads streams "tok/s" "GB/s" "MB/step" "limit" share
for c in "${configs[@]}"; do
  read -r shape quant threads streams <<<"$c"
  key="$shape-$quant-$threads-$streams"
  awk -v m="$shape" -v q="$quant" -v t="$threads" -v s="$streams" -v tps="${tps[$key]}" \
      -v gbs="${gbs[$key]}" -v b="${bytes[$key]}" \
      'BEGIN { limit = s * gbs * 1e9 / b
               printf "%-6s %-5s %7s %7s %9.1f %9.2f %10.1f %10.1f %5.0f%%\n", m, q, t, s, tps, gbs, b / 1e6, limit, 100 * tps / limit }'
done
echo
for shape in s15m s110m; do
  f=${tps[$shape-f32-2-1]}; q=${tps[$shape-q8_0-2-1]}; s4=${tps[$shape-f32-2-4]}
  awk -v m="$shape" -v f="$f" -v q="$q" -v s4="$s4" \
    'BEGIN { printf "%-6s Q8_0/F32 (2 threads) = %.2fx   4 streams/1 stream (F32, 2 threads) = %.2fx\n", m, q / f, s4 / f }'
done
