# Exact resume: 2N steps in one run == N steps, stop, resume, N more (bitwise losses on the CPU backend,
# same world size); a resume on another world size (2 -> 4 ranks, ZeRO-1) continues with the same
# global batch and data order.
source "$(dirname "$0")/lib.sh"
cd "$SRC"
ARGS=(configs/tiny.ini model.n_layer=2 model.n_embd=64 model.n_head=2 model.seq_len=32 train.micro_batch=2
      train.total_batch_tokens=256 train.max_steps=16 train.warmup_steps=2 train.eval_every=0 data.val=
      checkpoint.keep=5)
"$TG" train "${ARGS[@]}" run.out_dir="$TMP/full" >"$TMP/full.log" 2>&1 || { cat "$TMP/full.log"; exit 1; }
# The same 16 steps cut after step 8 and resumed (lib.sh).
cut_and_resume cut "${ARGS[@]}"
check "losses after resume are bitwise identical to the uninterrupted run" python3 -c '
import json, sys
def losses(p):
    return {r["step"]: r["loss"] for r in map(json.loads, open(p)) if "loss" in r}
a, b = losses(sys.argv[1]), losses(sys.argv[2])
assert sorted(a) == list(range(1, 17)) and sorted(b) == list(range(1, 17)), (sorted(a), sorted(b))
bad = [s for s in a if a[s] != b[s]]
print("  steps 1-16, differing: %s" % bad)
sys.exit(len(bad) > 0)
' "$TMP/full/metrics.jsonl" "$TMP/cut/metrics.jsonl"
check "the CPU backend times nothing, so no tuning files" test ! -e "$TMP/full/tuning"
# A tuning file the backend refuses (here: any, on the CPU) is read, named and skipped; the run goes on.
cp -r "$TMP/full" "$TMP/tune" && mkdir -p "$TMP/tune/tuning" && printf 'not a tuning blob' >"$TMP/tune/tuning/rank-00000.bin"
"$TG" train "${ARGS[@]}" run.out_dir="$TMP/tune" train.resume=auto >"$TMP/tune.log" 2>&1 \
    || { cat "$TMP/tune.log"; bad "resume with a foreign tuning file exits 0"; }
check "a refused tuning file is a warning naming it" grep -q "resume: ignoring .*tuning/rank-00000.bin: .*CUDA backend" "$TMP/tune.log"
check "final parameters are bitwise identical" "$TG" ckpt diff "$TMP/full/checkpoints/step_00000016.h5" \
    "$TMP/cut/checkpoints/step_00000016.h5" --tol 0

# World-size change with ZeRO-1: 2 ranks to step 8, then 4 ranks to 16; compare with 2 ranks all the way.
Z=(train.zero_stage=1 checkpoint.every=8)
"${MPIRUN[@]}" -np 2 "$TG" train "${ARGS[@]}" "${Z[@]}" run.out_dir="$TMP/w2" >"$TMP/w2.log" 2>&1 || { cat "$TMP/w2.log"; exit 1; }
set +e
TRUTHGPT_FAULT_STEP=9 TRUTHGPT_FAULT_STEP_RANK=1 "${MPIRUN[@]}" -np 2 "$TG" train "${ARGS[@]}" "${Z[@]}" \
    run.out_dir="$TMP/w24" >"$TMP/w24a.log" 2>&1
set -e
"${MPIRUN[@]}" -np 4 "$TG" train "${ARGS[@]}" "${Z[@]}" run.out_dir="$TMP/w24" >"$TMP/w24b.log" 2>&1 \
    || { cat "$TMP/w24b.log"; bad "4-rank resume exits 0"; }
check "4-rank run resumed the 2-rank checkpoint" grep -q "saved with 2 ranks, now 4" "$TMP/w24b.log"
check "2->4 resume keeps the losses (rel < 1e-5)" python3 -c '
import json, sys
def losses(p):
    return {r["step"]: r["loss"] for r in map(json.loads, open(p)) if "loss" in r}
a, b = losses(sys.argv[1]), losses(sys.argv[2])
worst = max(abs(a[s] - b[s]) / abs(a[s]) for s in range(9, 17))
print("  max relative loss difference after the 2->4 resume: %.2e" % worst)
sys.exit(worst >= 1e-5)
' "$TMP/w2/metrics.jsonl" "$TMP/w24/metrics.jsonl"
finish
