#!/usr/bin/env bash
# The main job, on an embedded default: installs what it needs, builds truthgpt, learns a BPE
# tokenizer on Debian's fortunes corpus, prepares HDF5 shards, trains configs/tiny.ini on them
# (GPU if there is one, else CPU) and prints a sample. Everything lands in runs/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
if command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ]; then variant=build/cuda; else variant=build/cpu; fi
scripts/build.sh "$variant" -DCMAKE_BUILD_TYPE=Release
TG=$variant/truthgpt
OUT=runs/demo
mkdir -p "$OUT"
# Fortune files without extension are the text (the .dat/.u8 files are indexes and links).
mapfile -t inputs < <(find /usr/share/games/fortunes -maxdepth 1 -type f ! -name '*.*' | sort)
echo "== tokenizer: byte-level BPE, 1024 tokens, learned on ${#inputs[@]} fortune files"
"$TG" tokenizer train --vocab-size 1024 --split-on-percent --out "$OUT/tokenizer.tiktoken" "${inputs[@]}"
echo "== prepare: HDF5 shards (zstd), one document per fortune"
"$TG" prepare --tokenizer "$OUT/tokenizer.tiktoken" --out "$OUT/data" \
    --val-fraction 0.05 --split-on-percent "${inputs[@]}" 2>&1 | tee "$OUT/prepare.log"
echo "== train configs/tiny.ini on it"
"$TG" train configs/tiny.ini data.train="$OUT/data/train_*.h5" data.val="$OUT/data/val_*.h5" \
    data.tokenizer="$OUT/tokenizer.tiktoken" train.max_steps=300 train.sample_every=100 run.out_dir="$OUT/run" \
    train.resume=none
echo "== sample"
"$TG" sample "$OUT/run/checkpoints/step_00000300.h5" --tokenizer "$OUT/tokenizer.tiktoken" \
    --prompt "The " --tokens 60 --temperature 0.8 --top-k 40 --seed 1
unigram=$(grep -o "unigram entropy of the train split: [0-9.]*" "$OUT/prepare.log" | grep -o "[0-9.]*$")
val=$(grep -o '"step":300,"val_loss":[0-9.]*' "$OUT/run/metrics.jsonl" | grep -o "[0-9.]*$")
echo "== validation loss $val nats/token vs the corpus's unigram entropy $unigram (a model that ignores context)"
