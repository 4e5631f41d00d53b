#!/usr/bin/env bash
# Engine decode benchmark (issue 3). Generates the s15m and s110m test models (F32 and Q8_0,
# GGUF) once, then measures decode tok/s with 1 and 2 threads, Q8_0 with 2 threads and 4
# concurrent streams, each next to the limit the memory system allows in the same run:
# (weights + KV bytes read per step) / (measured read bandwidth of the model file).
# Usage: scenarios/bench_engine.sh [TOKENS=128] [ROUNDS=5]
#   each figure is the best of ROUNDS rounds, each round one decode run then one bandwidth probe
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

printf '%-6s %-5s %7s %7s %9s %9s %10s %10s %6s\n' model quant threads streams "tok/s" "GB/s" "MB/step" "limit" share
declare -A result
run() { # shape quant threads streams
  local out
  out=$("$bin" bench --model "$(model "$1" "$2")" --threads "$3" --streams "$4" --tokens "$tokens" --rounds "$rounds" | tail -1)
  local tps gbs bytes limit share
  tps=$(field "$out" tok_per_s); gbs=$(field "$out" read_gb_per_s); bytes=$(field "$out" bytes_per_step)
  limit=$(field "$out" limit_tok_per_s); share=$(field "$out" share)
  result["$1-$2-$3-$4"]=$tps
  awk -v m="$1" -v q="$2" -v t="$3" -v s="$4" -v tps="$tps" -v gbs="$gbs" -v b="$bytes" \
      -v l="$limit" -v sh="$share" \
      'BEGIN { printf "%-6s %-5s %7s %7s %9s %9s %10.1f %10s %5.0f%%\n", m, q, t, s, tps, gbs, b / 1e6, l, sh * 100 }' 
}

for shape in s15m s110m; do
  run $shape f32 1 1
  run $shape f32 2 1
  run $shape q8_0 2 1
  run $shape f32 2 4
done
echo
for shape in s15m s110m; do
  f=${result[$shape-f32-2-1]}; q=${result[$shape-q8_0-2-1]}; s4=${result[$shape-f32-2-4]}
  awk -v m="$shape" -v f="$f" -v q="$q" -v s4="$s4" \
    'BEGIN { printf "%-6s Q8_0/F32 (2 threads) = %.2fx   4 streams/1 stream (F32, 2 threads) = %.2fx\n", m, q / f, s4 / f }' 
done
