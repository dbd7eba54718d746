# ZeRO-2/3 beyond dp_equivalence.sh: a stage-3 run resumes bitwise on the same world size and
# stage; a checkpoint saved at 4 ranks stage 3 continues at 2 ranks stage 0, and one saved at
# 2 ranks stage 0 continues at 4 ranks stage 3 (losses within 1e-5 of the uninterrupted run);
# Llama (tied and untied head) at 2 ranks stage 3 and stage 2 equals 1 rank stage 0; validation
# with a batch count the world size does not divide works at stage 3; bad input is refused
# before any step.
source "$(dirname "$0")/lib.sh"
cd "$SRC"
ARGS=(configs/tiny.ini model.n_layer=2 model.n_embd=64 model.n_head=2 model.seq_len=32 train.micro_batch=2
      train.total_batch_tokens=256 train.max_steps=16 train.warmup_steps=2 train.eval_every=0 data.val=
      checkpoint.keep=5 checkpoint.every=8)
losses_close() { # REF RUN FIRST_STEP: losses of RUN within 1e-5 of REF from FIRST_STEP to 16
    python3 -c '
import json, sys
def losses(p):
    return {r["step"]: r["loss"] for r in map(json.loads, open(p)) if "loss" in r}
a, b, s0 = losses(sys.argv[1]), losses(sys.argv[2]), int(sys.argv[3])
assert all(s in a and s in b for s in range(s0, 17)), (sorted(a), sorted(b))
worst = max(abs(a[s] - b[s]) / abs(a[s]) for s in range(s0, 17))
print("  max relative loss difference, steps %d-16: %.2e" % (s0, worst))
sys.exit(worst >= 1e-5)
' "$1/metrics.jsonl" "$2/metrics.jsonl" "$3"
}
train() { # NP NAME OVERRIDES...: a run into $TMP/NAME (log $TMP/NAME.log); returns its exit code
    local np=$1 name=$2
    shift 2
    "${MPIRUN[@]}" -np "$np" "$TG" train "${ARGS[@]}" run.out_dir="$TMP/$name" "$@" >>"$TMP/$name.log" 2>&1
}
cut() { # NP NAME OVERRIDES...: the run, stopped by an injected fault at step 9 (checkpoint 8 saved)
    local np=$1 name=$2
    shift 2
    TRUTHGPT_FAULT_STEP=9 TRUTHGPT_FAULT_STEP_RANK=0 train "$np" "$name" "$@" && return 1
    test -f "$TMP/$name/checkpoints/step_00000008.h5"
}
check "reference: 1 rank stage 0" train 1 ref train.zero_stage=0

# Same world and stage: 2 ranks stage 3, whole and cut + resumed, bitwise.
check "2 ranks stage 3 trains" train 2 z3 train.zero_stage=3
check "2 ranks stage 3 cut at step 9" cut 2 z3cut train.zero_stage=3
check "2 ranks stage 3 resumes" train 2 z3cut train.zero_stage=3
check "stage 3 resume says where it resumed" grep -q "resumed from .*step_00000008.h5 at step 8" "$TMP/z3cut.log"
check "stage 3 resume: final parameters bitwise identical" "$TG" ckpt diff \
    "$TMP/z3/checkpoints/step_00000016.h5" "$TMP/z3cut/checkpoints/step_00000016.h5" --tol 0
check "stage 3 resume: losses bitwise identical" python3 -c '
import json, sys
def losses(p):
    return {r["step"]: r["loss"] for r in map(json.loads, open(p)) if "loss" in r}
a, b = losses(sys.argv[1]), losses(sys.argv[2])
sys.exit(sorted(a) != list(range(1, 17)) or a != b)
' "$TMP/z3/metrics.jsonl" "$TMP/z3cut/metrics.jsonl"
check "2 ranks stage 3 equals 1 rank stage 0" losses_close "$TMP/ref" "$TMP/z3" 1

# Across world size and stage: 4 ranks stage 3 -> 2 ranks stage 0, and 2 ranks stage 0 -> 4 ranks stage 3.
check "4 ranks stage 3 cut at step 9" cut 4 a train.zero_stage=3
check "resumed at 2 ranks stage 0" train 2 a train.zero_stage=0
check "the resume names the world size change" grep -q "saved with 4 ranks, now 2" "$TMP/a.log"
check "4/stage 3 -> 2/stage 0 continues the run (rel < 1e-5)" losses_close "$TMP/ref" "$TMP/a" 9
check "2 ranks stage 0 cut at step 9" cut 2 b train.zero_stage=0
check "resumed at 4 ranks stage 3" train 4 b train.zero_stage=3
check "2/stage 0 -> 4/stage 3 continues the run (rel < 1e-5)" losses_close "$TMP/ref" "$TMP/b" 9
check "final parameters after both resumes match the reference (rel < 1e-5)" \
    "$TG" ckpt diff "$TMP/ref/checkpoints/step_00000016.h5" "$TMP/b/checkpoints/step_00000016.h5" --tol 1e-5 \
    --skip attn.c_attn.bias

# Validation at stage 3: 3 batches over 2 ranks (the rank without a third one still runs the forward).
check "validation at 2 ranks stage 3 with eval_batches=3" train 2 val train.zero_stage=3 data.val=synthetic \
    train.eval_every=8 train.eval_batches=3 train.max_steps=8
check "1 rank stage 0 validation" train 1 val1 data.val=synthetic train.eval_every=8 train.eval_batches=3 train.max_steps=8
check "val_loss at stage 3 equals 1 rank stage 0 (rel < 1e-5)" python3 -c '
import json, sys
def val(p):
    return [r["val_loss"] for r in map(json.loads, open(p)) if r.get("val_loss") is not None]
a, b = val(sys.argv[1]), val(sys.argv[2])
print("  val_loss", a, b)
sys.exit(not a or len(a) != len(b) or any(abs(x - y) > 1e-5 * abs(x) for x, y in zip(a, b)))
' "$TMP/val1/metrics.jsonl" "$TMP/val/metrics.jsonl"

# A NaN loss skipped (step 3) and a spike rolled back (step 7, to the checkpoint of step 4) at
# 2 ranks stage 3 end where the same events end 1 rank stage 0.
SARGS=(train.lr=1e-3 train.spike_sigma=1000 train.spike_window=3 train.spike_action=rollback train.spike_patience=1
       train.nan_patience=2 checkpoint.every=4 train.max_steps=12 train.resume=none)
events() { TRUTHGPT_NAN_STEP=3 TRUTHGPT_SPIKE_STEP=7 train "$@" "${SARGS[@]}"; }
check "1 rank stage 0 with a NaN and a spike" events 1 ev0 train.zero_stage=0
check "2 ranks stage 3 with a NaN and a spike" events 2 ev3 train.zero_stage=3
check "stage 3 skipped the NaN step and rolled back the spike" bash -c \
    "grep -q 'rolled back to step 4' '$TMP/ev3.log' && grep -q 'done: 12 steps' '$TMP/ev3.log' && grep -q 'step 3: non-finite loss .*update skipped' '$TMP/ev3.log'"
check "... ending with the parameters of 1 rank stage 0 (rel < 1e-5)" "$TG" ckpt diff \
    "$TMP/ev0/checkpoints/step_00000012.h5" "$TMP/ev3/checkpoints/step_00000012.h5" --tol 1e-5 --skip attn.c_attn.bias

# Llama: pre-norm blocks, GQA, tied or untied head (the head in the embeddings' or the last segment).
LARGS=(configs/llama-tiny.ini model.n_layer=2 model.n_embd=32 model.n_head=4 model.n_kv_head=2 model.ffn_dim=64
       model.seq_len=16 train.micro_batch=2 train.total_batch_tokens=64 train.max_steps=6 train.warmup_steps=2
       train.eval_every=0 data.val= checkpoint.every=0 train.resume=none)
for tie in 1 0; do
    "$TG" train "${LARGS[@]}" model.tie_embeddings=$tie run.out_dir="$TMP/l$tie" >"$TMP/l$tie.log" 2>&1 \
        || { cat "$TMP/l$tie.log"; bad "llama tie=$tie reference"; }
    for z in 2 3; do
        "${MPIRUN[@]}" -np 2 "$TG" train "${LARGS[@]}" model.tie_embeddings=$tie train.zero_stage=$z \
            run.out_dir="$TMP/l${tie}z$z" >"$TMP/l${tie}z$z.log" 2>&1 || { cat "$TMP/l${tie}z$z.log"; bad "llama tie=$tie stage $z"; }
        check "llama tie_embeddings=$tie: 2 ranks stage $z equal 1 rank (final parameters, rel < 1e-5)" \
            "$TG" ckpt diff "$TMP/l$tie/checkpoints/step_00000006.h5" "$TMP/l${tie}z$z/checkpoints/step_00000006.h5" --tol 1e-5
    done
done

# Bad input: refused before any step, naming the reason.
refused() { # refused PATTERN OVERRIDES...
    local pat=$1
    shift
    ! "$TG" train "${ARGS[@]}" run.out_dir="$TMP/bad" train.resume=none "$@" >"$TMP/bad.log" 2>&1 \
        && grep -q "$pat" "$TMP/bad.log" && ! grep -q "step *1 " "$TMP/bad.log"
}
check "an unknown stage is refused" refused "train.zero_stage.*\[0, 3\]" train.zero_stage=4
check "stage 3 with samples is refused" refused "train.zero_stage=3 shards the parameters" train.zero_stage=3 train.sample_every=4
check "stage 2 on CUDA is refused" refused "runs on the CPU backend only" train.zero_stage=2 train.device=cuda
finish
