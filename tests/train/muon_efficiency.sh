# Muon's step efficiency on the demo corpus (Debian's fortunes, as scripts/demo.sh prepares it):
# configs/tiny.ini trained with train.optimizer=muon for 0.75x the steps of an AdamW run (each
# with its full schedule) must end at or below the AdamW run's final validation loss. The two
# runs go side by side, one thread each. MUON_EFF_STEPS (default 60) sets the AdamW run's steps.
source "$(dirname "$0")/lib.sh"
FORTUNES=/usr/share/games/fortunes
mapfile -t inputs < <(find "$FORTUNES" -maxdepth 1 -type f ! -name '*.*' 2>/dev/null | sort)
if [ ${#inputs[@]} -eq 0 ]; then echo "SKIP: $FORTUNES not installed (apt-get install fortunes)"; exit 77; fi
cd "$TMP"
"$TG" tokenizer train --vocab-size 1024 --split-on-percent --out tok.tiktoken "${inputs[@]}" >tok.log 2>&1 \
    || { cat tok.log; exit 1; }
"$TG" prepare --tokenizer tok.tiktoken --out data --split-on-percent --val-fraction 0.05 "${inputs[@]}" \
    >prep.log 2>&1 || { cat prep.log; exit 1; }
N=${MUON_EFF_STEPS:-60}
M=$((N * 3 / 4))
run() { # NAME STEPS OVERRIDES...
    local name=$1 steps=$2
    shift 2
    "$TG" train "$SRC/configs/tiny.ini" train.device=cpu data.train='data/train_*.h5' data.val='data/val_*.h5' \
        train.max_steps="$steps" train.eval_every="$steps" checkpoint.every=0 train.resume=none train.threads=1 \
        run.out_dir="$name" "$@" >"$name.log" 2>&1 || { cat "$name.log"; return 1; }
}
run adamw "$N" train.optimizer=adamw &
pid=$!
check "Muon trains $M steps" run muon "$M" train.optimizer=muon
check "AdamW trains $N steps" wait $pid
a=$(json_field adamw/metrics.jsonl "$N" val_loss)
m=$(json_field muon/metrics.jsonl "$M" val_loss)
echo "final val loss: AdamW $a after $N steps, Muon $m after $M steps"
check "Muon reaches AdamW's final val loss in 0.75x its steps" python3 -c "import sys; sys.exit(not $m <= $a)"
finish
