#!/usr/bin/env bash
# dev/ttl.sh — time to a validation loss: trains a fixed small model (configs/tiny.ini, or --config)
# on a fixed prepared corpus (Debian's fortunes with a 1024-token BPE, prepared once into
# --data as scripts/demo.sh does) until its validation loss reaches --target
# (train.target_val_loss), and prints the wall time and tokens of each recipe. A recipe is one
# argument of space-separated overrides; recipes run in turn, --repeat times (alternating, so
# that a changing machine load hits every recipe alike).
#
#   dev/ttl.sh 'train.optimizer=adamw' 'train.optimizer=muon'
#   dev/ttl.sh --target 5.0 --steps 300 --repeat 3 'train.optimizer=adamw' 'train.optimizer=muon train.muon_lr=0.03'
#
# Wall time is the whole process (startup, steps, validations every --eval-every steps, one final
# checkpoint); "train s" is the trainer's own clock from its first step to the target. The run's
# schedule is over --steps steps: a recipe that has not reached the target by then reports "-".
set -euo pipefail
cd "$(dirname "$0")/.."
TG=build/cpu/truthgpt CONFIG=configs/tiny.ini DATA=${TTL_DATA:-runs/ttl-data} OUTDIR=runs/ttl
TARGET=5.2 STEPS=150 EVAL=10 REPEAT=1
recipes=()
while [ $# -gt 0 ]; do
    case $1 in
    --tg) TG=$2; shift 2 ;;
    --config) CONFIG=$2; shift 2 ;;
    --data) DATA=$2; shift 2 ;;
    --out) OUTDIR=$2; shift 2 ;;
    --target) TARGET=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --eval-every) EVAL=$2; shift 2 ;;
    --repeat) REPEAT=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) recipes+=("$1"); shift ;;
    esac
done
[ ${#recipes[@]} -gt 0 ] || recipes=("train.optimizer=adamw" "train.optimizer=muon")
[ -x "$TG" ] || { echo "ttl: $TG not built (scripts/build.sh build/cpu)" >&2; exit 1; }
if [ ! -f "$DATA/val_000000.h5" ]; then
    mapfile -t inputs < <(find /usr/share/games/fortunes -maxdepth 1 -type f ! -name '*.*' 2>/dev/null | sort)
    [ ${#inputs[@]} -gt 0 ] || { echo "ttl: /usr/share/games/fortunes missing (apt-get install fortunes)" >&2; exit 1; }
    mkdir -p "$DATA"
    "$TG" tokenizer train --vocab-size 1024 --split-on-percent --out "$DATA/tokenizer.tiktoken" "${inputs[@]}" >/dev/null
    "$TG" prepare --tokenizer "$DATA/tokenizer.tiktoken" --out "$DATA" --split-on-percent --val-fraction 0.05 \
        "${inputs[@]}" >/dev/null
fi
echo "ttl: $CONFIG on $DATA to val loss <= $TARGET (schedule $STEPS steps, validation every $EVAL)"
printf '%-48s %6s %9s %9s %9s %10s\n' recipe steps val wall_s train_s tokens
for ((r = 0; r < REPEAT; r++)); do
    for i in "${!recipes[@]}"; do
        out="$OUTDIR/r$r-$i"
        rm -rf "$out"
        mkdir -p "$out"
        t0=$(date +%s.%N)
        # shellcheck disable=SC2086 # a recipe is a list of overrides
        "$TG" train "$CONFIG" data.train="$DATA/train_*.h5" data.val="$DATA/val_*.h5" train.max_steps="$STEPS" \
            train.eval_every="$EVAL" train.target_val_loss="$TARGET" checkpoint.every=0 train.resume=none \
            run.out_dir="$out" ${recipes[$i]} >"$out.log" 2>&1 || { tail -5 "$out.log" >&2; exit 1; }
        t1=$(date +%s.%N)
        line=$(grep -o "reached at step .*" "$out.log" || true)
        if [ -n "$line" ]; then
            read -r step val ts tok < <(echo "$line" |
                sed -E 's/reached at step ([0-9]+): val loss ([0-9.]+) after ([0-9.]+) s and ([0-9]+) tokens/\1 \2 \3 \4/')
        else
            step=- val=$(grep -o "val loss [0-9.]*" "$out.log" | tail -1 | grep -o "[0-9.]*$" || echo -) ts=- tok=-
        fi
        printf '%-48s %6s %9s %9.1f %9s %10s\n' "${recipes[$i]}" "$step" "$val" "$(awk "BEGIN { print $t1 - $t0 }")" "$ts" "$tok"
    done
done
