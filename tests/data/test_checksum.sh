#!/bin/bash
# tests/data/test_checksum.sh TRUTHGPT TMPDIR PYTHON — shard token data is checksummed:
# bytes flipped inside the stored `tokens` chunks (found with h5py's get_chunk_info, several
# deterministic positions) make `data verify` say FAIL (exit 1) and the loader (bench data)
# fail with an HDF5 checksum error, never serve altered tokens. A clean shard verifies OK.
set -u
BIN=$1 T=$2 PY=$3
rm -rf "$T" && mkdir -p "$T" || exit 1
fails=0
bad() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
for i in $(seq 1 400); do printf 'Document %d: the %d-th sheep jumps over fence %d.\n%%\n' $i $((i * 7)) $((i % 13)); done > "$T/corpus"
"$BIN" tokenizer train --vocab-size 300 --split-on-percent --out "$T/tok.tiktoken" "$T/corpus" > /dev/null 2>&1 || { echo "tokenizer train failed"; exit 1; }
"$BIN" prepare --tokenizer "$T/tok.tiktoken" --out "$T/out" --split-on-percent --val-fraction 0 \
    --chunk-tokens 4096 "$T/corpus" > "$T/prep.out" 2>&1 || { cat "$T/prep.out"; exit 1; }
S="$T/out/train_000000.h5"
"$BIN" data verify "$T/out/*.h5" > "$T/v0" 2>&1
grep -q "^OK $S" "$T/v0" || bad "clean shard not OK: $(cat "$T/v0")"
# Byte positions inside the stored chunks of `tokens`: first, middle and last byte of each chunk.
"$PY" - "$S" > "$T/pos" <<'PYEOF' || { echo "h5py chunk query failed"; exit 1; }
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    d = f["tokens"]
    assert d.fletcher32, "tokens dataset has no fletcher32 filter"
    for i in range(d.id.get_num_chunks()):
        c = d.id.get_chunk_info(i)
        for p in (c.byte_offset, c.byte_offset + c.size // 2, c.byte_offset + c.size - 5):
            print(p)
PYEOF
n=0
for p in $(cat "$T/pos"); do
    n=$((n + 1))
    cp "$S" "$T/m.h5"
    # xor the byte with 0x5a (always a change)
    b=$(od -An -tu1 -j "$p" -N1 "$T/m.h5" | tr -d ' ')
    printf "$(printf '\\%03o' $((b ^ 0x5a)))" | dd of="$T/m.h5" bs=1 seek="$p" conv=notrunc status=none
    cmp -s "$S" "$T/m.h5" && { bad "byte $p not changed"; continue; }
    "$BIN" data verify "$T/m.h5" > "$T/v" 2>&1
    rc=$?
    [ $rc = 1 ] && grep -q "^FAIL $T/m.h5" "$T/v" || bad "data verify missed a flip at byte $p (rc $rc): $(cat "$T/v")"
    grep -qi "checksum\|filter\|fletcher" "$T/v" || bad "verify message at byte $p does not name the checksum: $(cat "$T/v")"
    "$BIN" bench data --data "$T/m.h5" --batch 2 --seq-len 16 --seconds 0.05 > "$T/b" 2>&1
    rc=$?
    [ $rc != 0 ] && grep -q "m.h5" "$T/b" || bad "loader served a shard with a flip at byte $p (rc $rc): $(tail -3 "$T/b")"
done
[ $n -ge 3 ] || bad "only $n positions"
# A format_version 1 shard (no checksums) is refused with a clear message.
"$PY" - "$S" "$T/v1.h5" <<'PYEOF'
import sys, shutil, h5py
shutil.copy(sys.argv[1], sys.argv[2])
with h5py.File(sys.argv[2], "r+") as f:
    f.attrs["format_version"] = 1
PYEOF
"$BIN" data verify "$T/v1.h5" > "$T/v" 2>&1
[ $? = 1 ] && grep -q "format_version 1 shards have no checksums" "$T/v" || bad "v1 shard: $(cat "$T/v")"
echo "$n flipped positions checked, $fails failures"
[ $fails = 0 ]
