# `truthgpt bench ckpt` on a tiny shape: it prints write and read MB/s, its file loads and
# verifies, and h5py (dev/ckpt_h5py_bench.py, hdf5plugin's zstd) reads it and writes the same datasets,
# which truthgpt then verifies: every CRC-32C matches, so h5py read the streamed chunks exactly.
source "$(dirname "$0")/../train/lib.sh"
cd "$SRC"
shape="model.n_layer=2 model.n_head=2 model.n_embd=128 model.vocab_size=5000 model.seq_len=64" # wte: 3 chunks
"$TG" bench ckpt --repeat 2 --out "$TMP/b.h5" $shape >"$TMP/b.txt" 2>&1 || { cat "$TMP/b.txt"; exit 1; }
check "bench ckpt prints the write speed" grep -qE "^write [0-9.]+ s +[0-9.]+ MB/s" "$TMP/b.txt"
check "... and the read speed" grep -qE "^read +[0-9.]+ s +[0-9.]+ MB/s" "$TMP/b.txt"
check "its file verifies" bash -c "'$TG' ckpt info '$TMP/b.h5' >'$TMP/info.txt'"
check "bench ckpt rejects an unknown option" bash -c "! '$TG' bench ckpt --bogus >/dev/null 2>&1"
PY=${TG_PYTHON:-$(scripts/test-venv.sh)}
check "h5py writes the same datasets from it" bash -c \
    "'$PY' dev/ckpt_h5py_bench.py '$TMP/b.h5' --out '$TMP/p.h5' --repeat 1 | grep -qE '^write .* MB/s'"
check "h5py's copy verifies in truthgpt (h5py read every chunk exactly)" bash -c \
    "'$TG' ckpt info '$TMP/p.h5' | grep -q 'checksums: all 86 datasets ok'"
finish
