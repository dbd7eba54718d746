#!/usr/bin/env bash
# docs/scaling.md's tables are what scripts/scaling-model.py prints, and the script's parameter
# counts (the bytes every collective moves) are truthgpt's own, for a GPT-2 and a Llama shape.
# Usage: test_scaling_model.sh TRUTHGPT SRC_DIR
set -euo pipefail
TG=$1 SRC=$2
py=python3
"$py" "$SRC/scripts/scaling-model.py" --check "$SRC/docs/scaling.md"
for pair in gpt2-124m:configs/gpt2-124m.ini smollm-135m:configs/smollm-135m.ini; do
    name=${pair%%:*} cfg=${pair#*:}
    want=$("$py" "$SRC/scripts/scaling-model.py" --params --seq-len 16 --model "$name" | awk '{print $2}')
    bytes=$(OMP_NUM_THREADS=1 "$TG" bench --config "$SRC/$cfg" --batch 1 --seq-len 16 --steps 1 --warmup 0 \
            --world 2 train.device=cpu train.precision=fp32 | sed -n 's/^memory (bytes): params \([0-9]*\),.*/\1/p')
    [ -n "$bytes" ] || { echo "FAIL $name: no memory line from truthgpt bench"; exit 1; }
    if [ $((bytes / 4)) -ne "$want" ]; then
        echo "FAIL $name: truthgpt has $((bytes / 4)) parameters, scripts/scaling-model.py $want"; exit 1
    fi
    echo "ok $name: $want parameters in both"
done
echo "PASS test_scaling_model"
