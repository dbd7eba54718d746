# tests/cuda/curve_data.sh — sourced by the GPU curve tests after tests/train/lib.sh: skips (77)
# without a GPU, and sets DATA to a folder with train_*.h5 / val_*.h5: $TG_CURVE_DATA, else
# prepared in $TMP from Debian's fortunes (skips without them).
if ! nvidia-smi -L >/dev/null 2>&1; then echo "SKIP: no CUDA device"; exit 77; fi
DATA=${TG_CURVE_DATA:-}
if [ -z "$DATA" ]; then
    mapfile -t inputs < <(find /usr/share/games/fortunes -maxdepth 1 -type f ! -name '*.*' 2>/dev/null | sort)
    if [ ${#inputs[@]} -eq 0 ]; then echo "SKIP: no TG_CURVE_DATA and no fortunes corpus"; exit 77; fi
    "$TG" tokenizer train --vocab-size 1024 --split-on-percent --out "$TMP/tok.tiktoken" "${inputs[@]}" >/dev/null 2>&1
    "$TG" prepare --tokenizer "$TMP/tok.tiktoken" --out "$TMP/data" --split-on-percent "${inputs[@]}" >/dev/null 2>&1
    DATA="$TMP/data"
fi
