#!/usr/bin/env bash
# scripts/gpu-check.sh — the one prepared check for a session that has a GPU (the CUDA backend
# was written on a machine without one; see docs/cuda.md "What to check first").
#
#   1. configure + build (CUDA ON; sm_80 + sm_90) in build-gpu — skipped when build-gpu was built
#      on the dev machine and carried (the GPU machine has no libinih and maybe no -dev headers):
#        here:  scripts/build.sh build-gpu -DTRUTHGPT_CUDA=ON
#               mkdir -p gpu-data bench && cp runs/demo/data/*.h5 gpu-data/ && cp ../shared/bench/torch_gpt2_bench.py bench/
#        run:   command "scripts/gpu-check.sh", carry ["build-gpu", "gpu-data", "bench"]
#   2. the CUDA ctest(s): CUDA vs CPU reference (fp32 / bf16 / recompute / no-fusion)
#   4. truthgpt bench on GPT-2 124M (B=64, T=1024, 30 steps), if truthgpt was built
#   5. the PyTorch reference benchmark, if bench/torch_gpt2_bench.py exists
#   6. the CUDA test under compute-sanitizer memcheck (out-of-bounds, misaligned accesses)
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

if [ -x "$BUILD/train/truthgpt" ] && [ -x "$BUILD/tests/cuda/test_cuda_model" ]; then
    echo "using the carried build in $BUILD"
    PREBUILT=1
else
    PREBUILT=0
    step "configure"
    run 300 cmake -S "$ROOT" -B "$BUILD" -DTRUTHGPT_CUDA=ON -DCMAKE_BUILD_TYPE=Release || { echo "configure failed"; exit 1; }
    step "build the CUDA test"
    run 600 cmake --build "$BUILD" -j"$JOBS" --target test_cuda_model
fi

if [ -x "$BUILD/tests/cuda/test_cuda_model" ]; then
    step "test_cuda_model verbose"
    run 300 "$BUILD/tests/cuda/test_cuda_model"
fi

if [ $PREBUILT = 0 ]; then
    step "build truthgpt"
    run 600 cmake --build "$BUILD" -j"$JOBS" --target truthgpt
fi
if [ -x "$BUILD/train/truthgpt" ]; then
    step "300-step loss curve, GPU vs CPU (tests/cuda/curve.sh)"
    TG_CURVE_DATA=${TG_CURVE_DATA:-$ROOT/gpu-data} run 600 bash "$ROOT/tests/cuda/curve.sh" \
        "$BUILD/train/truthgpt" "$ROOT" /tmp/tg-curve
    step "bench GPT-2 124M, B=64, T=1024"
    run 600 "$BUILD/train/truthgpt" bench --config "$ROOT/configs/gpt2-124m.ini" --batch 64 \
        --seq-len 1024 --steps 30
else
    echo "truthgpt not built: bench skipped"
fi

if [ -f "$ROOT/bench/torch_gpt2_bench.py" ]; then
    step "PyTorch reference benchmark"
    run 400 python3 "$ROOT/bench/torch_gpt2_bench.py" --compile 1 --B 64
else
    echo "bench/torch_gpt2_bench.py not present: skipped"
fi

if [ -x "$BUILD/tests/cuda/test_cuda_model" ] && { command -v compute-sanitizer >/dev/null || [ -x /usr/local/cuda/bin/compute-sanitizer ]; }; then
    CS=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
    step "compute-sanitizer memcheck (last: slow)"
    run 240 "$CS" --tool memcheck --error-exitcode 9 "$BUILD/tests/cuda/test_cuda_model"
fi

step "done: $fails failed step(s); log in $LOG"
exit $((fails > 0))
