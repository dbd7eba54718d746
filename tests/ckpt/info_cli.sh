# `truthgpt ckpt info` odds (issue 25 item 12): options before FILE, a data shard named as such,
# error messages with repo-relative source paths (never the build machine's absolute ones).
source "$(dirname "$0")/../train/lib.sh"
cd "$SRC"
"$TG" train configs/tiny.ini train.max_steps=2 train.eval_every=0 data.val= train.resume=none \
    run.out_dir="$TMP/run" >"$TMP/run.log" 2>&1 || { cat "$TMP/run.log"; exit 1; }
ck="$TMP/run/checkpoints/step_00000002.h5"
check "ckpt info --no-config FILE succeeds" bash -c "'$TG' ckpt info --no-config '$ck' >'$TMP/nc.txt'"
check "... and prints the checkpoint" grep -q "^step            2$" "$TMP/nc.txt"
check "... without the config" bash -c "! grep -q '^\[model\]' '$TMP/nc.txt'"
check "ckpt info FILE --no-config still works" bash -c "'$TG' ckpt info '$ck' --no-config >/dev/null"
for _ in $(seq 20); do echo "the quick brown fox jumps over the lazy dog; a computer is a machine."; done >"$TMP/text.txt"
"$TG" tokenizer train --vocab-size 300 --out "$TMP/tok.tiktoken" "$TMP/text.txt" >/dev/null 2>&1
"$TG" prepare --tokenizer "$TMP/tok.tiktoken" --out "$TMP/shards" "$TMP/text.txt" >"$TMP/prep.log" 2>&1 \
    || { cat "$TMP/prep.log"; exit 1; }
shard=$(ls "$TMP"/shards/*.h5 | head -n 1)
set +e
"$TG" ckpt info "$shard" >"$TMP/shard.txt" 2>&1; rc=$?
check "ckpt info on a data shard fails" [ $rc -ne 0 ]
check "... saying it looks like a data shard" grep -q "not a truthgpt checkpoint: looks like a data shard" "$TMP/shard.txt"
head -c 3000 "$ck" >"$TMP/cut.h5"
"$TG" ckpt info "$TMP/cut.h5" >"$TMP/cut.txt" 2>&1; rc=$?
check "ckpt info on a cut file fails" [ $rc -ne 0 ]
check "... naming a source file relative to the repo" grep -q "ckpt/[a-z]*\.c:[0-9]" "$TMP/cut.txt"
check "no message holds the absolute source path" bash -c "! grep -qE '$SRC/[a-z_]+/[a-z_0-9]+\.(c|cu|h):' '$TMP/shard.txt' '$TMP/cut.txt'"
set -e
cat "$TMP/cut.txt" | tail -n 2
finish
