# GPU check (issues: CUDA backend, data parallel, checkpoints): `train.device=cuda` trains through the
# shared trainer with NCCL on one rank — without a launcher, under `mpirun -np 1` and with ZeRO-1
# (added after the 2026-11-26 GPU runs: not yet run on a GPU) — and a bf16 run
# stopped at step 8 and resumed from its checkpoint continues bitwise like the uninterrupted run (no
# kernel uses atomics, the checkpoint holds the exact fp32 masters and AdamW state), also with the
# cuBLASLt algorithms picked by timing (session 5, not yet run on a GPU). Skips (77) without a GPU.
source "$(dirname "$0")/../train/lib.sh"
if ! nvidia-smi -L >/dev/null 2>&1; then echo "SKIP: no CUDA device"; exit 77; fi
cd "$SRC"
ARGS=(configs/tiny.ini train.device=cuda train.precision=bf16 train.max_steps=16 train.warmup_steps=2
      train.eval_every=8 checkpoint.keep=5 train.log_every=1)
"$TG" train "${ARGS[@]}" run.out_dir="$TMP/full" >"$TMP/full.log" 2>&1 || { cat "$TMP/full.log"; bad "cuda run exits 0"; }
check "the cuda run uses NCCL" grep -qi "nccl" "$TMP/full.log"
"${MPIRUN[@]}" -np 1 "$TG" train "${ARGS[@]}" run.out_dir="$TMP/mpi" >"$TMP/mpi.log" 2>&1 \
    || { cat "$TMP/mpi.log"; bad "cuda run under mpirun -np 1 exits 0"; }
# ZeRO-1 on NCCL (reduce-scatter, sharded AdamW, all-gather): with one rank the shard is everything,
# so the losses must equal stage 0's bit for bit.
"$TG" train "${ARGS[@]}" train.zero_stage=1 run.out_dir="$TMP/zero1" >"$TMP/zero1.log" 2>&1 \
    || { cat "$TMP/zero1.log"; bad "cuda run with zero_stage=1 exits 0"; }
# Cut after step 8 and resumed (lib.sh): must continue bitwise like the uninterrupted run.
cut_and_resume cut "${ARGS[@]}"
# With cuBLASLt algorithms picked by timing (cuda.cublaslt_tune=1), which can differ from process to
# process: the run writes them to <out_dir>/tuning/, and a resume from its step-8 checkpoint takes
# them back, so steps 9-16 repeat the run bit for bit. Once in a copy of its out_dir, once into a
# new out_dir (the file is then found next to the checkpoint's run folder, and copied over).
"$TG" train "${ARGS[@]}" cuda.cublaslt_tune=1 checkpoint.every=8 run.out_dir="$TMP/tuned" >"$TMP/tuned.log" 2>&1 \
    || { cat "$TMP/tuned.log"; bad "tuned cuda run exits 0"; }
check "the tuned run timed algorithms and wrote them" test -s "$TMP/tuned/tuning/rank-00000.bin"
cp -r "$TMP/tuned" "$TMP/tuned-resumed"
for d in tuned-resumed tuned-elsewhere; do
    ck="$TMP/tuned-resumed/checkpoints/step_00000008.h5"
    [ $d = tuned-elsewhere ] && ck="$TMP/tuned/checkpoints/step_00000008.h5"
    "$TG" train "${ARGS[@]}" cuda.cublaslt_tune=1 checkpoint.every=8 run.out_dir="$TMP/$d" train.resume="$ck" \
        >"$TMP/$d.log" 2>&1 || { cat "$TMP/$d.log"; bad "tuned resume into $d exits 0"; }
    check "$d: the resume took the saved algorithms" grep -q "matmul algorithms from .*rank-00000.bin" "$TMP/$d.log"
done
check "tuned-elsewhere: they came from the checkpoint's run folder" \
    grep -q "matmul algorithms from $TMP/tuned/tuning/rank-00000.bin" "$TMP/tuned-elsewhere.log"
check "tuned-elsewhere: and its own out_dir now has them" test -s "$TMP/tuned-elsewhere/tuning/rank-00000.bin"
check "losses: launcher-less == mpirun -np 1 == zero_stage=1, and resumed == uninterrupted (bitwise)" python3 -c '
import json, sys
def losses(p):
    return {r["step"]: r["loss"] for r in map(json.loads, open(p)) if r.get("loss") is not None}
a, b, c, z = (losses(p) for p in sys.argv[1:5])
assert sorted(a) == list(range(1, 17)), sorted(a)
print("  step 1 %.5f, step 16 %.5f" % (a[1], a[16]))
d1 = [s for s in a if a[s] != b.get(s)]
d2 = [s for s in a if a[s] != c.get(s)]
d3 = [s for s in a if a[s] != z.get(s)]
print("  differing steps: mpirun %s, resumed %s, zero_stage=1 %s" % (d1, d2, d3))
sys.exit(bool(d1 or d2 or d3) or not a[16] < a[1])
' "$TMP/full/metrics.jsonl" "$TMP/mpi/metrics.jsonl" "$TMP/cut/metrics.jsonl" "$TMP/zero1/metrics.jsonl"
check "tuned: resumed == uninterrupted (bitwise), in the copied and in a new out_dir" python3 -c '
import json, sys
def losses(p):
    return {r["step"]: r["loss"] for r in map(json.loads, open(p)) if r.get("loss") is not None}
a, b, c = losses(sys.argv[1]), losses(sys.argv[2]), losses(sys.argv[3])
assert sorted(a) == list(range(1, 17)) and sorted(b) == list(range(1, 17)), (sorted(a), sorted(b))
assert sorted(c) == list(range(9, 17)), sorted(c)  # a new out_dir logs only the resumed steps
d = [s for s in a if a[s] != b[s]] + [s for s in c if a[s] != c[s]]
print("  tuned, differing steps: %s" % d)
sys.exit(bool(d))
' "$TMP/tuned/metrics.jsonl" "$TMP/tuned-resumed/metrics.jsonl" "$TMP/tuned-elsewhere/metrics.jsonl"
finish
