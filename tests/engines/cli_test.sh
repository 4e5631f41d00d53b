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
# bench runs and prints its figures
"$bin" bench --model "$dir/tiny/model.bin" --threads 2 --streams 2 --tokens 16 --rounds 1 > "$dir/bench.txt"
grep -q '^tok_per_s=[0-9.]* read_gb_per_s=[0-9.]* bytes_per_step=[0-9]* limit_tok_per_s=[0-9.]* share=[0-9.]*$' "$dir/bench.txt"
# failures: non-zero exit, exactly one line on stderr
for args in "generate --model $dir/none.bin --prompt x --max-tokens 1" "generate --model $dir/tiny/model.bin" \
            "make-test-model --shape huge --format gguf --out $dir/x.gguf" "bench --model" "frobnicate" \
            "serve --model $dir/tiny/model.bin --handoff-dir $dir --pool-id p --orchestrator nohost" \
            "serve --model $dir/tiny/model.bin --handoff-dir $dir --pool-id p --orchestrator h:0" \
            "serve --model $dir/tiny/model.bin --handoff-dir $dir --pool-id p --orchestrator h:70000" \
            "serve --model $dir/tiny/model.bin --handoff-dir $dir --pool-id p --orchestrator ::1:7070" \
            "serve --model $dir/tiny/model.bin --handoff-dir $dir --pool-id p --orchestrator :7070" \
            "serve --model $dir/tiny/model.bin --handoff-dir $dir --pool-id p --orchestrator h:1 --tls-certificate $dir/tiny/model.bin" \
            "serve --model $dir/tiny/model.bin --handoff-dir $dir --pool-id p --tls-certificate $dir/x --tls-key $dir/x --tls-ca $dir/x" \
            "serve --model $dir/tiny/model.bin --handoff-dir $dir --pool-id p --orchestrator h:1 --tls-certificate $dir/none.pem --tls-key $dir/none.pem --tls-ca $dir/none.pem"; do
  if "$bin" $args >/dev/null 2>"$dir/err"; then echo "expected failure: $args"; exit 1; fi
  [ "$(wc -l < "$dir/err")" -eq 1 ] || { echo "expected one error line for: $args"; cat "$dir/err"; exit 1; }
done
# serve: handoff file when ready, removed on SIGTERM with exit 0; an orchestratord it cannot
# link to (nothing listens on port 1) is said once and does not stop it
hand="$dir/handoff"; rm -rf "$hand"; mkdir -p "$hand"
"$bin" serve --model "$dir/tiny/model.bin" --handoff-dir "$hand" --pool-id pool-t --replica-id 2 --slots 2 \
  --threads 1 --orchestrator 127.0.0.1:1 2>"$dir/serve.log" &
pid=$!
i=0
while [ ! -f "$hand/pool-t-2.json" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
[ -f "$hand/pool-t-2.json" ] || { echo "no handoff file"; cat "$dir/serve.log"; kill $pid; exit 1; }
grep -q '"endpoint":"127.0.0.1:' "$hand/pool-t-2.json"
grep -q "\"pid\":$pid" "$hand/pool-t-2.json"
i=0
while ! grep -q 'no link to orchestratord at 127.0.0.1:1' "$dir/serve.log" && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
grep -q 'no link to orchestratord at 127.0.0.1:1' "$dir/serve.log" || { echo "no link failure line"; cat "$dir/serve.log"; exit 1; }
kill -TERM $pid
rc=0; wait $pid || rc=$?
[ $rc -eq 0 ] || { echo "serve exited $rc on SIGTERM"; exit 1; }
[ ! -e "$hand/pool-t-2.json" ] || { echo "handoff file left behind"; exit 1; }
[ -z "$(ls "$hand")" ] || { echo "temp files left in $hand"; exit 1; }
# a replica whose parent dies stops by itself and removes its handoff file
sh -c "\"$bin\" serve --model \"$dir/tiny/model.bin\" --handoff-dir \"$hand\" --pool-id orphan --slots 1 --threads 1 2>/dev/null & echo \$! > \"$dir/orphan.pid\"; exec sleep 30" &
parent=$!
i=0
while [ ! -f "$hand/orphan-0.json" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
[ -f "$hand/orphan-0.json" ] || { echo "no handoff file for the orphan test"; kill $parent; exit 1; }
kill -KILL $parent
i=0
while [ -e "$hand/orphan-0.json" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
[ ! -e "$hand/orphan-0.json" ] || { echo "orphaned replica kept running"; kill "$(cat "$dir/orphan.pid")"; exit 1; }
if "$bin" serve --model "$dir/none.bin" --handoff-dir "$hand" --pool-id p 2>"$dir/err"; then echo "serve without model"; exit 1; fi
[ "$(wc -l < "$dir/err")" -eq 1 ]
echo "cli ok: $n golden prompts, serve"
