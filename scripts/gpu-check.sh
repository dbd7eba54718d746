#!/usr/bin/env bash
# scripts/gpu-check.sh — the one prepared check for a session that has a GPU (the CUDA backend
# was written on a machine without one; see docs/cuda.md "What to check first").
#
#   1. configure + build (CUDA ON; sm_80 + sm_90 as the top CMakeLists sets) in build-gpu
#   2. the CUDA ctest(s): CUDA vs CPU reference (fp32 / bf16 / recompute / no-fusion)
#   3. the same test under compute-sanitizer memcheck (out-of-bounds, misaligned accesses)
#   4. truthgpt bench on GPT-2 124M (B=64, T=1024, 30 steps), if truthgpt was built
#   5. the PyTorch reference benchmark, if bench/torch_gpt2_bench.py exists
# Everything is tee'd into $OUT/gpu-check.log (OUT defaults to ./gpu-out). Each step has a
# timeout so that one hang does not eat the device time; the script goes on after a failure
# and exits non-zero if any step failed.
set -u -o pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-./gpu-out}
mkdir -p "$OUT"
LOG="$OUT/gpu-check.log"
: > "$LOG"
exec > >(tee -a "$LOG") 2>&1
BUILD="$ROOT/build-gpu"
JOBS=$(nproc 2>/dev/null || echo 4)
fails=0

step() { echo; echo "=== $* [$(date -u +%H:%M:%S)]"; }
run() { # run TIMEOUT_S CMD...: runs, reports the exit code, counts failures (77 = skipped)
    local t=$1; shift
    echo "+ $*"
    timeout "$t" "$@"
    local rc=$?
    echo "--> exit $rc"
    if [ $rc -ne 0 ] && [ $rc -ne 77 ]; then fails=$((fails + 1)); fi
    return $rc
}

step "device"
nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv || true
nvcc --version | tail -2 || true

step "configure"
run 300 cmake -S "$ROOT" -B "$BUILD" -DTRUTHGPT_CUDA=ON -DCMAKE_BUILD_TYPE=Release || { echo "configure failed"; exit 1; }

step "build the CUDA test"
run 600 cmake --build "$BUILD" -j"$JOBS" --target test_cuda_model

step "CUDA tests (ctest -L cuda)"
run 300 ctest --test-dir "$BUILD" -L cuda --output-on-failure

if [ -x "$BUILD/tests/cuda/test_cuda_model" ]; then
    step "test_cuda_model verbose"
    run 300 "$BUILD/tests/cuda/test_cuda_model"
    if command -v compute-sanitizer >/dev/null || [ -x /usr/local/cuda/bin/compute-sanitizer ]; then
        CS=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
        step "compute-sanitizer memcheck"
        run 600 "$CS" --tool memcheck --error-exitcode 9 "$BUILD/tests/cuda/test_cuda_model"
    fi
fi

step "build truthgpt"
run 600 cmake --build "$BUILD" -j"$JOBS" --target truthgpt
if [ -x "$BUILD/train/truthgpt" ]; then
    step "bench GPT-2 124M, B=64, T=1024"
    run 600 "$BUILD/train/truthgpt" bench --config "$ROOT/configs/gpt2-124m.ini" --batch 64 \
        --seq-len 1024 --steps 30
else
    echo "truthgpt not built: bench skipped"
fi

if [ -f "$ROOT/bench/torch_gpt2_bench.py" ]; then
    step "PyTorch reference benchmark"
    run 900 python3 "$ROOT/bench/torch_gpt2_bench.py" --compile 1 --B 64
else
    echo "bench/torch_gpt2_bench.py not present: skipped"
fi

step "done: $fails failed step(s); log in $LOG"
exit $((fails > 0))
