#!/bin/bash
# tests/data/test_h5plugin.sh TRUTHGPT TMPDIR VENV_PYTHON — with
# HDF5_PLUGIN_PATH=$(truthgpt --hdf5-plugin-dir), Debian's h5dump and Debian's python3-h5py read
# truthgpt's zstd data: a shard's tokens equal `truthgpt data dump`, and a checkpoint dataset
# equals what PyPI's hdf5plugin (an independent zstd reader, in the test venv) reads.
set -u
BIN=$1 T=$2 VPY=$3
rm -rf "$T" && mkdir -p "$T" || exit 1
fails=0
bad() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
src=$(cd "$(dirname "$0")/../.." && pwd)
PLUG=$("$BIN" --hdf5-plugin-dir) || { echo "--hdf5-plugin-dir failed"; exit 1; }
[ -f "$PLUG/libh5zstd.so" ] || { echo "no $PLUG/libh5zstd.so"; exit 1; }
for i in $(seq 1 300); do printf 'Document %d: the %d-th sheep jumps over fence %d.\n%%\n' $i $((i * 7)) $((i % 13)); done > "$T/corpus"
"$BIN" tokenizer train --vocab-size 300 --split-on-percent --out "$T/tok.tiktoken" "$T/corpus" > /dev/null 2>&1 || exit 1
"$BIN" prepare --tokenizer "$T/tok.tiktoken" --out "$T/out" --split-on-percent --val-fraction 0 \
    --chunk-tokens 1000 "$T/corpus" > /dev/null 2>&1 || exit 1
S="$T/out/train_000000.h5"
"$BIN" data dump "$S" > "$T/tg.txt" || bad "data dump failed"
[ "$(wc -l < "$T/tg.txt")" -gt 1000 ] || bad "data dump printed $(wc -l < "$T/tg.txt") ids"
h5tok() { h5dump -d tokens -y -w 1 "$S" 2>&1 | tr -d ' ,' | grep -E '^[0-9]+$'; }
# Without the plugin the stock tools cannot decode (the reason for the plugin) ...
env -u HDF5_PLUGIN_PATH bash -c "$(declare -f h5tok); S='$S'; h5tok" > "$T/h5dump0.txt"
[ -s "$T/h5dump0.txt" ] && bad "h5dump decoded zstd without the plugin?"
export HDF5_PLUGIN_PATH=$PLUG
h5tok > "$T/h5dump.txt"
cmp -s "$T/tg.txt" "$T/h5dump.txt" || bad "h5dump tokens differ from truthgpt data dump"
/usr/bin/python3 -c 'import sys, h5py; print("\n".join(map(str, h5py.File(sys.argv[1], "r")["tokens"][:])))' "$S" > "$T/deb.txt" 2> "$T/deb.err"
cmp -s "$T/tg.txt" "$T/deb.txt" || bad "Debian h5py tokens differ: $(tail -2 "$T/deb.err")"
# A checkpoint: a 2-step tiny run.
OMP_NUM_THREADS=1 "$BIN" train "$src/configs/tiny.ini" train.eval_every=0 run.out_dir="$T/run" train.max_steps=2 \
    checkpoint.every=2 > "$T/train.log" 2>&1 || { cat "$T/train.log"; exit 1; }
C=$(ls "$T"/run/checkpoints/step_*.h5 | head -1)
D=/params/transformer.wpe.weight
rd='import sys, h5py
try:
    import hdf5plugin
except ImportError:
    pass
x = h5py.File(sys.argv[1], "r")[sys.argv[2]][:]
print("\n".join("%.9g" % v for v in x.ravel()))'
env -u HDF5_PLUGIN_PATH "$VPY" -c "$rd" "$C" "$D" > "$T/ck_ref.txt" || bad "venv h5py+hdf5plugin cannot read $D"
/usr/bin/python3 -c "$rd" "$C" "$D" > "$T/ck_deb.txt" 2> "$T/ck_deb.err" || bad "Debian h5py: $(tail -2 "$T/ck_deb.err")"
cmp -s "$T/ck_ref.txt" "$T/ck_deb.txt" || bad "checkpoint $D differs between Debian h5py+plugin and hdf5plugin"
h5dump -d "$D" -y -w 1 -m %.9g "$C" | sed "/ATTRIBUTE/,$ d" | tr -d ' ,' | grep -E '^-?[0-9]' > "$T/ck_h5dump.txt"
cmp -s "$T/ck_ref.txt" "$T/ck_h5dump.txt" || bad "checkpoint $D differs between h5dump+plugin and hdf5plugin"
[ "$(wc -l < "$T/ck_ref.txt")" = 8192 ] || bad "expected 8192 values of $D, got $(wc -l < "$T/ck_ref.txt")"
echo "$(wc -l < "$T/tg.txt") tokens and $(wc -l < "$T/ck_ref.txt") checkpoint values compared; $fails failures"
[ $fails = 0 ]
