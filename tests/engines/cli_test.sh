#!/bin/sh
# llorch-engine generate --print-ids must print the golden ids of llama2.c's run.c; bad
# arguments and bad files must exit non-zero with one line on stderr.
set -eu
bin=$1; dir=$2; golden=$3
mkdir -p "$dir/tiny"
"$bin" make-test-model --shape tiny --format llama2c --out "$dir/tiny/model.bin"
"$bin" --version >/dev/null
"$bin" --help >/dev/null
n=0
while IFS= read -r line; do
  case "$line" in
    "prompt "*) prompt=${line#prompt } ;;
    "ids "*)
      want=${line#ids }
      count=$(echo "$want" | wc -w)
      plen=$("$bin" generate --model "$dir/tiny/model.bin" --prompt "$prompt" --max-tokens 0 --print-ids | wc -w)
      got=$("$bin" generate --model "$dir/tiny/model.bin" --prompt "$prompt" --max-tokens $((count - plen)) --ignore-eos --print-ids --threads 2)
      if [ "$got" != "$want" ]; then echo "mismatch for prompt '$prompt'"; echo " got: $got"; echo "want: $want"; exit 1; fi
      n=$((n + 1)) ;;
  esac
done < "$golden/tiny_llama2c_seed1.txt"
[ "$n" -gt 0 ]
# failures: non-zero exit, exactly one line on stderr
for args in "generate --model $dir/none.bin --prompt x --max-tokens 1" "generate --model $dir/tiny/model.bin" \
            "make-test-model --shape huge --format gguf --out $dir/x.gguf" "bench --model" "frobnicate"; do
  if "$bin" $args >/dev/null 2>"$dir/err"; then echo "expected failure: $args"; exit 1; fi
  [ "$(wc -l < "$dir/err")" -eq 1 ] || { echo "expected one error line for: $args"; cat "$dir/err"; exit 1; }
done
echo "cli ok: $n golden prompts"
