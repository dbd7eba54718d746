# train.optimizer=muon on the CUDA backends through the trainer: GPT-2 fp32 trains (the loss
# falls) with losses within 1% of the CPU backend's over 16 steps (the same data and init; fp32 on
# both, the backends differ in summation orders only); stopped at step 8 and resumed from its
# checkpoint it continues bitwise (losses and the step-16 checkpoint: the momentum is in the m
# slot, every kernel and matmul has a fixed order), in fp32 and in bf16; ZeRO-1 on one rank equals
# stage 0 bitwise; Llama (bf16) trains with it; 2 ranks sharing the GPU (comm.backend=mpi, each
# orthogonalising its own matrices, the owners' ranges broadcast) stay within 1e-5 of one rank at
# stage 0 and 1; zero_stage=2 with Muon is still refused. Skips (77) without a GPU.
source "$(dirname "$0")/../train/lib.sh"
if ! nvidia-smi -L >/dev/null 2>&1; then echo "SKIP: no CUDA device"; exit 77; fi
cd "$SRC"
ARGS=(configs/tiny.ini model.n_layer=2 model.n_embd=64 model.n_head=2 model.seq_len=32 train.micro_batch=2
      train.total_batch_tokens=256 train.max_steps=16 train.warmup_steps=2 train.eval_every=0 data.val=
      checkpoint.keep=5 train.optimizer=muon train.log_every=1)
train() { # NAME OVERRIDES...: a run into $TMP/NAME (log $TMP/NAME.log); returns its exit code
    local name=$1
    shift
    "$TG" train "${ARGS[@]}" checkpoint.every=8 run.out_dir="$TMP/$name" "$@" >"$TMP/$name.log" 2>&1 \
        || { cat "$TMP/$name.log"; return 1; }
}
losses() { # REF RUN FIRST_STEP TOL: losses of RUN within TOL (relative) of REF from FIRST_STEP to 16
    python3 -c '
import json, sys
def losses(p):
    return {r["step"]: r["loss"] for r in map(json.loads, open(p)) if r.get("loss") is not None}
a, b, s0, tol = losses(sys.argv[1]), losses(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
assert all(s in a and s in b for s in range(s0, 17)), (sorted(a), sorted(b))
worst = max(abs(a[s] - b[s]) / abs(a[s]) for s in range(s0, 17))
print("  steps %d-16: max relative loss difference %.2e (step 1 %.5f, step 16 %.5f)" % (s0, worst, b[s0], b[16]))
sys.exit(worst > tol or (s0 == 1 and not b[16] < b[1]))
' "$TMP/$1/metrics.jsonl" "$TMP/$2/metrics.jsonl" "$3" "$4"
}
same_final() { # A B: the step-16 checkpoints hold bitwise the same parameters and optimizer state
    "$TG" ckpt diff "$TMP/$1/checkpoints/step_00000016.h5" "$TMP/$2/checkpoints/step_00000016.h5" --tol 0
}

check "gpt2 fp32 on cuda trains with muon" train fp32 train.device=cuda train.precision=fp32
check "the log names the optimizer" grep -q "optimizer = muon" "$TMP/fp32.log"
check "the same on the cpu" train cpu train.device=cpu
check "cuda fp32 losses within 1% of the cpu's, and falling" losses cpu fp32 1 1e-2
cut_and_resume fp32-cut "${ARGS[@]}" train.device=cuda train.precision=fp32
check "fp32: resumed == uninterrupted (bitwise losses)" losses fp32 fp32-cut 9 0
check "fp32: resumed == uninterrupted (bitwise step-16 checkpoint)" same_final fp32 fp32-cut

check "gpt2 bf16 on cuda trains with muon" train bf16 train.device=cuda train.precision=bf16
cut_and_resume bf16-cut "${ARGS[@]}" train.device=cuda train.precision=bf16
check "bf16: resumed == uninterrupted (bitwise losses)" losses bf16 bf16-cut 9 0
check "bf16: resumed == uninterrupted (bitwise step-16 checkpoint)" same_final bf16 bf16-cut
check "bf16 zero_stage=1 on one rank trains" train bf16-z1 train.device=cuda train.precision=bf16 train.zero_stage=1
check "bf16 zero_stage=1 == stage 0 (bitwise losses)" losses bf16 bf16-z1 1 0

LARGS=(model.arch=llama model.n_kv_head=1 model.ffn_dim=96)
check "llama bf16 on cuda trains with muon" train llama train.device=cuda train.precision=bf16 "${LARGS[@]}"
check "llama: the loss falls" losses llama llama 1 0

# Two ranks on the one GPU, MPI on device buffers (as tests/cuda/mpi_backend.sh), fp32.
mpi() { # NAME NP ZERO
    "${MPIRUN[@]}" -np "$2" "$TG" train "${ARGS[@]}" checkpoint.every=0 train.resume=none train.device=cuda \
        train.precision=fp32 comm.backend=mpi train.zero_stage="$3" run.out_dir="$TMP/$1" >"$TMP/$1.log" 2>&1 \
        || { cat "$TMP/$1.log"; return 1; }
}
check "world 1 comm.backend=mpi trains with muon" mpi w1 1 0
for z in 0 1; do
    check "world 2 zero_stage $z with muon on one GPU trains" mpi "w2z$z" 2 "$z"
    check "world 2 zero_stage $z: losses within 1e-5 of world 1" losses w1 "w2z$z" 1 1e-5
done

check "muon with zero_stage=2 on cuda is still refused" bash -c "! \"$TG\" train ${ARGS[*]} train.device=cuda \
    train.zero_stage=2 run.out_dir=$TMP/z2 >$TMP/z2.log 2>&1 && grep -q 'train.optimizer=muon needs train.zero_stage 0 or 1' $TMP/z2.log"
finish
