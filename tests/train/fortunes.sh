# A real corpus that is not in the repo (Debian's fortunes): learn a tokenizer, prepare shards, train
# the tiny model, and check its validation loss ends well below the corpus's unigram entropy (the loss
# of the best model that ignores context).
source "$(dirname "$0")/lib.sh"
FORTUNES=/usr/share/games/fortunes
mapfile -t inputs < <(find "$FORTUNES" -maxdepth 1 -type f ! -name '*.*' 2>/dev/null | sort)
if [ ${#inputs[@]} -eq 0 ]; then echo "SKIP: $FORTUNES not installed (apt-get install fortunes)"; exit 77; fi
cd "$TMP"
"$TG" tokenizer train --vocab-size 1024 --split-on-percent --out tok.tiktoken "${inputs[@]}" >tok.log 2>&1 \
    || { cat tok.log; exit 1; }
"$TG" prepare --tokenizer tok.tiktoken --out data --split-on-percent --val-fraction 0.05 "${inputs[@]}" \
    >prep.log 2>&1 || { cat prep.log; exit 1; }
unigram=$(grep -o "unigram entropy of the train split: [0-9.]*" prep.log | grep -o "[0-9.]*$")
check "prepare reports the unigram entropy" test -n "$unigram"
"$TG" train "$SRC/configs/tiny.ini" data.train='data/train_*.h5' data.val='data/val_*.h5' train.max_steps=150 \
    train.eval_every=50 checkpoint.every=0 run.out_dir=run >train.log 2>&1 || { cat train.log; exit 1; }
val=$(json_field run/metrics.jsonl 150 val_loss)
echo "fortunes: unigram entropy $unigram nats/token, val loss after 150 steps $val"
check "val loss is well below the unigram baseline (by > 0.5 nats)" python3 -c "import sys; sys.exit(not $val < $unigram - 0.5)"
# The config's tokenizer must be the one the shards were made with.
"$TG" tokenizer train --vocab-size 512 --split-on-percent --out tok512.tiktoken "${inputs[@]}" >/dev/null 2>&1
set +e
"$TG" train "$SRC/configs/tiny.ini" data.train='data/train_*.h5' data.val= data.tokenizer=tok512.tiktoken train.max_steps=1 \
    run.out_dir=run2 >mismatch.log 2>&1
rc=$?
set -e
check "a tokenizer that did not make the shards is refused" \
    bash -c "[ $rc -ne 0 ] && grep -q 'is not the tokenizer the shards of data.train were made with' mismatch.log"
# Resuming a run on shards from another tokenizer of the same size is refused too.
"$TG" tokenizer train --vocab-size 1024 --split-on-percent --out tok1024b.tiktoken "${inputs[0]}" >/dev/null 2>&1
"$TG" prepare --tokenizer tok1024b.tiktoken --out data_b --split-on-percent "${inputs[@]}" >/dev/null 2>&1
set +e
"$TG" train "$SRC/configs/tiny.ini" data.train='data_b/train_*.h5' data.val= train.max_steps=151 \
    run.out_dir=run >resume-mismatch.log 2>&1
rc=$?
set -e
check "resuming on shards from another tokenizer is refused" \
    bash -c "[ $rc -ne 0 ] && grep -q 'the checkpoint was trained on data from tokenizer' resume-mismatch.log"
finish
