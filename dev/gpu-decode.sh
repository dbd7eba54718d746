#!/usr/bin/env bash
# dev/gpu-decode.sh TRUTHGPT SRC DIR — generation speed of GPT-2 124M at batch 1 with the KV cache
# (the aim on a GPU: >= 1,000 tokens/s), on DEVICE (default cuda; cpu works too).
#
# Makes docs/performance.md's "Generation" checkpoint in DIR unless it is there: a 300-token BPE
# learnt from SRC's README and docs, and GPT-2 124M after one fp32 step on synthetic data (on the
# CPU, as the docs do; ~10 s with 16 cores). Then, greedy, prompt "Hello" (5 tokens):
#   KV cache    --tokens $N (default 1000: a 1,005-token window) and --tokens $NCMP (default 100)
#   --no-cache  --tokens $NCMP (each token a forward over the whole window: for the ratio)
# Each run's "sample: N tokens in S s (R tok/s)" line is printed (R counts the prompt's forward
# and the first token's CUDA graph capture too). The first NCMP generated tokens of the cached and
# the full-recompute run are compared (cmp): in fp32 they should agree; a difference is a near-tie
# (two logits within rounding) or a bug, to be looked at with tests/cuda/test_cuda_decode.
set -u -o pipefail
TG=$1 SRC=$2 DIR=$3
DEVICE=${DEVICE:-cuda} N=${N:-1000} NCMP=${NCMP:-100}
mkdir -p "$DIR"
CK="$DIR/g124/checkpoints/step_00000001.h5"
if [ ! -f "$CK" ]; then
    "$TG" tokenizer train --vocab-size 300 --out "$DIR/tok.tiktoken" "$SRC/README.md" "$SRC"/docs/*.md >/dev/null ||
        exit 1
    "$TG" train "$SRC/configs/gpt2-124m.ini" data.train=synthetic data.val=synthetic data.tokenizer="$DIR/tok.tiktoken" \
        train.device=cpu train.precision=fp32 train.micro_batch=1 train.total_batch_tokens=1024 \
        train.max_steps=1 train.eval_every=0 train.warmup_steps=0 run.out_dir="$DIR/g124" >"$DIR/train.log" 2>&1 ||
        { tail -20 "$DIR/train.log"; exit 1; }
fi
rc=0
gen() { # gen NAME ARGS...: text into DIR/NAME.txt, the sample: lines on stdout
    "$TG" sample "$CK" --prompt Hello --temperature 0 --device "$DEVICE" "${@:2}" >"$DIR/$1.txt" 2>"$DIR/$1.err"
    local r=$?
    grep "sample:" "$DIR/$1.err" | sed "s/^/$1: /"
    [ $r -eq 0 ] || { echo "$1: exit $r"; cat "$DIR/$1.err"; rc=1; }
}
gen "cache$N" --tokens "$N"
gen "cache$NCMP" --tokens "$NCMP"
gen "nocache$NCMP" --tokens "$NCMP" --no-cache
if cmp -s "$DIR/cache$NCMP.txt" "$DIR/nocache$NCMP.txt"; then
    echo "greedy text: the KV cache and the full recompute agree on $NCMP tokens"
else
    echo "greedy text: the KV cache and the full recompute DIFFER within $NCMP tokens:"
    cmp "$DIR/cache$NCMP.txt" "$DIR/nocache$NCMP.txt" | head -1
fi
exit $rc
