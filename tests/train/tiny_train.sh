# configs/tiny.ini trains to a loss far below its initial value, writes metrics.jsonl and config.ini.
source "$(dirname "$0")/lib.sh"
cd "$SRC"
OUT="$TMP/run"
start=$(date +%s)
"$TG" train configs/tiny.ini run.out_dir="$OUT" >"$TMP/log" 2>&1 || { cat "$TMP/log"; bad "train exits 0"; finish; }
ok "train exits 0 in $(( $(date +%s) - start )) s"
M="$OUT/metrics.jsonl"
check "metrics.jsonl exists" test -s "$M"
first=$(json_field "$M" 1 loss)
last=$(json_field "$M" 150 loss)
echo "loss: step 1 $first, step 150 $last (ln 512 = 6.24)"
check "initial loss near ln(V)" python3 -c "import math,sys; sys.exit(abs($first-math.log(512))>0.3)"
check "final loss far below initial (< 25%)" python3 -c "import sys; sys.exit(not $last < 0.25*$first)"
check "train records have the contract fields" python3 -c '
import json, sys
need = {"step", "loss", "lr", "grad_norm", "tokens", "ms", "tokens_per_s"}
recs = [json.loads(l) for l in open(sys.argv[1])]
train = [r for r in recs if "loss" in r]
assert len(train) == 150, len(train)
assert all(need <= set(r) for r in train)
ev = [r for r in recs if "val_loss" in r]
assert [r["step"] for r in ev] == [50, 100, 150], ev
assert ev[-1]["val_loss"] < ev[0]["val_loss"]
' "$M"
check "config.ini written with the override" grep -q "out_dir = $OUT" "$OUT/config.ini"
check "log has step lines with ETA" grep -q "step   150/150 | loss .* tok/s | ETA" "$TMP/log"
check "final checkpoint written" test -f "$OUT/checkpoints/step_00000150.h5"
finish
