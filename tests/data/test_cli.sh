#!/bin/bash
# tests/data/test_cli.sh BIN TMPDIR — the data subcommands end to end:
# tokenizer train -> prepare (fortune mode) -> h5dump shows zstd + attributes -> byte-identical
# rerun -> bench data, and the CLI's error paths (exit codes and messages).
# BIN is `truthgpt` or the test driver tg_data_cli; exits 77 (skipped) if BIN lacks the commands.
set -u
BIN=$1
T=$2
rm -rf "$T" && mkdir -p "$T" || exit 1
fails=0 passes=0
ok() { passes=$((passes + 1)); }
bad() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
check() { if eval "$1"; then ok; else bad "$1"; fi; }

if ! "$BIN" prepare --help 2>&1 | grep -q "usage: truthgpt prepare"; then
    echo "skipped: $BIN does not dispatch 'prepare' yet"
    exit 77
fi

# Corpus: two of Debian's fortune files when installed, else a generated one.
F=/usr/share/games/fortunes
if [ -f $F/fortunes ] && [ -f $F/goedel ]; then
    INPUTS="$F/fortunes $F/goedel"
else
    for i in $(seq 1 300); do printf 'Fortune number %d says: the %d-th day is %s.\n%%\n' $i $((i * 7)) \
        "$( [ $((i % 3)) = 0 ] && echo sunny || echo rainy)"; done > "$T/fortunes"
    INPUTS="$T/fortunes"
fi

"$BIN" tokenizer train --vocab-size 512 --split-on-percent --out "$T/tok.tiktoken" $INPUTS > "$T/tok.out" 2>&1
check '[ $? = 0 ] && grep -q "vocab_size 512, eot_id 511" "$T/tok.out"'
check '[ $(wc -l < "$T/tok.tiktoken") = 511 ]'
check 'head -1 "$T/tok.tiktoken" | grep -qx "AA== 0"'
printf 'h\xc3\xa9llo w\xc3\xb6rld \xff\xfe 42' > "$T/rt.txt"
"$BIN" tokenizer encode "$T/tok.tiktoken" "$T/rt.txt" | "$BIN" tokenizer decode "$T/tok.tiktoken" > "$T/rt.out"
check 'cmp -s "$T/rt.txt" "$T/rt.out"'
check '"$BIN" tokenizer info "$T/tok.tiktoken" | grep -qx "sha256 $(sha256sum < "$T/tok.tiktoken" | cut -d" " -f1)"'

"$BIN" prepare --tokenizer "$T/tok.tiktoken" --out "$T/out" --split-on-percent --val-fraction 0.1 \
    --shard-tokens 20000 $INPUTS > "$T/prep.out" 2> "$T/prep.err"
check '[ $? = 0 ]'
check '[ -f "$T/out/train_000000.h5" ] && [ -f "$T/out/val_000000.h5" ]'
check 'grep -q "unigram entropy of the train split: [0-9.]* nats/token" "$T/prep.out"'
check 'grep -q "tokens/s" "$T/prep.out"'
check '! grep -q $'"'"'\r'"'"' "$T/prep.err"'   # not a terminal: no carriage-return progress bar
h5dump -H -p "$T/out/train_000000.h5" > "$T/dump.txt" 2>&1
check 'grep -q "FILTER_ID 32015" "$T/dump.txt"'
for a in format_version vocab_size eot_id tokenizer_name tokenizer_hash n_tokens n_docs; do
    check 'grep -q "ATTRIBUTE \"'$a'\"" "$T/dump.txt"'
done
check 'h5dump -a vocab_size "$T/out/train_000000.h5" | grep -q "(0): 512"'

# h5py + hdf5plugin (where installed) read the shards: same tokens, filter 32015.
PY=""
for py in ${TG_PYTHON:-} python3 /usr/bin/python3; do
    if $py -c "import h5py, hdf5plugin" > /dev/null 2>&1; then PY=$py; break; fi
done
if [ -n "$PY" ]; then
    $PY - "$T/out/train_000000.h5" > "$T/py.out" 2>&1 <<'PYEOF'
import sys, h5py, hdf5plugin
f = h5py.File(sys.argv[1], "r")
t = f["tokens"]
assert "32015" in t._filters, t._filters
x = t[:]
assert len(x) == f.attrs["n_tokens"], (len(x), f.attrs["n_tokens"])
assert x[0] == f.attrs["eot_id"] and x.max() < f.attrs["vocab_size"]
assert all(x[f["doc_offsets"][:]] == f.attrs["eot_id"])
print("h5py ok", len(x))
PYEOF
    check 'grep -q "h5py ok" "$T/py.out"'
elif [ -n "${TG_PYTHON:-}" ]; then
    bad "TG_PYTHON=$TG_PYTHON has no h5py + hdf5plugin"
else
    echo "note: h5py + hdf5plugin not installed; skipping the h5py check"
fi

# Same inputs -> byte-identical shards.
"$BIN" prepare -q --tokenizer "$T/tok.tiktoken" --out "$T/out2" --split-on-percent --val-fraction 0.1 \
    --shard-tokens 20000 $INPUTS > /dev/null 2>&1
same=1
for f in "$T"/out/*.h5; do cmp -s "$f" "$T/out2/$(basename "$f")" || same=0; done
check '[ $same = 1 ]'

"$BIN" bench data --data "$T/out/train_*.h5" --batch 4 --seq-len 64 --seconds 0.3 > "$T/bench.out" 2>&1
check '[ $? = 0 ] && grep -q "M tokens/s served with prefetch" "$T/bench.out"'

# Error paths: clear messages naming the file, exit 1; usage errors exit 2.
"$BIN" prepare --tokenizer "$T/tok.tiktoken" --out "$T/o3" "$T/nope.txt" > "$T/e1" 2>&1
check '[ $? = 1 ] && grep -q "error: .*nope.txt: cannot open" "$T/e1"'
printf '{"text": "fine"}\n{"text": "unterminated}\n' > "$T/bad.jsonl"
"$BIN" prepare --tokenizer "$T/tok.tiktoken" --out "$T/o4" "$T/bad.jsonl" > "$T/e2" 2>&1
check '[ $? = 1 ] && grep -q "bad.jsonl:2: malformed JSON line" "$T/e2"'
echo "not hdf5" > "$T/fake.h5"
"$BIN" bench data --data "$T/fake.h5" --batch 2 --seq-len 8 --seconds 0.1 > "$T/e3" 2>&1
check '[ $? = 1 ] && grep -q "fake.h5: not an HDF5 file" "$T/e3"'
"$BIN" prepare --tokenizer "$T/tok.tiktoken" > "$T/e4" 2>&1
check '[ $? = 2 ] && grep -q "usage:" "$T/e4"'
"$BIN" tokenizer train --vocab-size 100 --out "$T/t2" $INPUTS > "$T/e5" 2>&1
check '[ $? = 1 ] && grep -q "vocab size 100 is too small" "$T/e5"'

echo "$passes passed, $fails failed"
[ $fails = 0 ]
