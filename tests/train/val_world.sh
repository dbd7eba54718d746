# Validation loss does not depend on the world size (issue 25 item 5): one fixed global set of
# eval_batches x B windows of the val split, split across ranks. World sizes 1 and 2 report the same
# val_loss (|diff| < 1e-6) at every evaluation, also after a world-1 run is resumed on 2 ranks.
source "$(dirname "$0")/lib.sh"
cd "$SRC"
ARGS=(configs/tiny.ini model.n_layer=2 model.n_embd=64 model.n_head=2 model.seq_len=32 train.micro_batch=2
      train.total_batch_tokens=512 train.max_steps=10 train.warmup_steps=2 data.val=synthetic
      train.eval_every=3 train.eval_batches=5 checkpoint.every=2 checkpoint.keep=10)
run() { # NAME WORLD ARGS...
    local name=$1 w=$2
    shift 2
    "${MPIRUN[@]}" -np "$w" "$TG" train "${ARGS[@]}" run.out_dir="$TMP/$name" "$@" >"$TMP/$name.log" 2>&1 \
        || { cat "$TMP/$name.log"; return 1; }
}
check "world 1 trains" run w1 1 train.resume=none
check "world 2 trains" run w2 2 train.resume=none
check "world 2 resumed from world 1's step 2 trains" run r2 2 train.resume="$TMP/w1/checkpoints/step_00000002.h5"
check "the resumed run says so" grep -q "resumed from .*step_00000002.h5 at step 2" "$TMP/r2.log"
same_val() { # A B STEPS...
    python3 -c '
import json, sys
def vals(p):
    return {r["step"]: r["val_loss"] for r in map(json.loads, open(p)) if "val_loss" in r}
a, b = vals(sys.argv[1]), vals(sys.argv[2])
for s in map(int, sys.argv[3:]):
    print("  step %d: val_loss %.9f vs %.9f" % (s, a[s], b[s]))
    if abs(a[s] - b[s]) >= 1e-6: sys.exit(1)
' "$@"
}
check "val_loss at world 2 equals world 1 (steps 3, 6, 9, 10)" same_val "$TMP/w1/metrics.jsonl" "$TMP/w2/metrics.jsonl" 3 6 9 10
check "val_loss after resuming world 1 on world 2 equals world 1 (steps 3, 6, 9, 10)" \
    same_val "$TMP/w1/metrics.jsonl" "$TMP/r2/metrics.jsonl" 3 6 9 10
finish
