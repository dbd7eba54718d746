# dev/tests/gpu_check_dry.sh — dev/gpu-check.sh's plumbing without a GPU, on stand-in
# programs: every step's log reaches $OUT/steps.tgz (the device tool brings back at most 8 files),
# the verdict is printed, a failed step makes the exit non-zero, and GPU_BUDGET_S holds: a step
# that would pass it is cut to the time left and the steps after it are skipped, so the summary
# still comes out before the device call's own limit.
source "$(dirname "$0")/../../tests/train/lib.sh"
FB="$TMP/fake-build"
mkdir -p "$FB/tests/cuda"
fake() { printf '#!/bin/sh\n%s\n' "$2" > "$FB/$1"; chmod +x "$FB/$1"; }
fake tests/cuda/test_cuda_model 'echo "all passed"; exit 0'
fake tests/cuda/test_cuda_kernels 'echo "FAIL: a kernel"; exit 1'
fake tests/cuda/test_cuda_attention 'exit 0'
fake truthgpt 'sleep "${FAKE_SLEEP:-0}"
echo "ms/step    tokens/s     TFLOP/s    MFU      alloc GB   device GB"
case "$*" in *cuda.profile=1*) echo "114.00     574.6K       494.2      49.9%    24.91      25.49" ;;
*) echo "115.00     565.0K       486.0      49.1%    24.91      25.49" ;; esac'

rc=0
GPU_BUILD="$FB" GPU_STEPS="test kernels bench" OUT="$TMP/a" GPU_STEPS_DIR="$TMP/a-steps" \
    bash "$SRC/dev/gpu-check.sh" > /dev/null 2>&1 || rc=$?
check "a failed step makes the exit non-zero" [ $rc -ne 0 ]
check "what comes back is the log and one archive" [ "$(cd "$TMP/a" && ls | tr '\n' ' ')" = "gpu-check.log steps.tgz " ]
mkdir -p "$TMP/a-x" && tar -C "$TMP/a-x" -xzf "$TMP/a/steps.tgz"
check "every step's log is in the archive" [ "$(cd "$TMP/a-x" && ls *.log | tr '\n' ' ')" = "bench-prof.log bench.log kernels.log test.log " ]
check "each log ends in its exit code" grep -qx -- "--> exit 1" "$TMP/a-x/kernels.log"
check "the verdict is in the call's log" grep -q "decision rule: test passed, kernels FAILED (exit 1)" "$TMP/a/gpu-check.log"
check "the timing table has the bench row" grep -Eq "^  bench +115.00 +565.0K" "$TMP/a/gpu-check.log"
check "a step's switches reach its program (run ... cuda.profile=1)" grep -Eq "^  bench-prof +114.00" "$TMP/a/gpu-check.log"
check "the fetched archive gives the verdict too" bash -c \
    "python3 '$SRC/dev/gpu-decide.py' '$TMP/a/steps.tgz' | grep -q 'kernels FAILED (exit 1)'"

# The clock sampler around a timed step, with a stand-in nvidia-smi that prints samples until
# killed, idle samples first: its samples travel in the archive and the mean over the loaded ones
# (not the idle 1980 MHz) reaches the table.
mkdir -p "$TMP/smi"
cat > "$TMP/smi/nvidia-smi" <<'SMI'
#!/bin/sh
case "$*" in
*-lms*) echo "timestamp, clocks.current.sm [MHz], clocks.current.memory [MHz], power.draw [W], temperature.gpu, clocks_event_reasons.active"
        for i in 1 2 3 4 5 6; do echo "2026/11/26 10:00:00.000, 1980 MHz, 3201 MHz, 100.00 W, 40, 0x0000000000000000"; done
        i=0; while :; do i=$((i + 1)); echo "2026/11/26 10:00:00.000, $((1600 + i % 3)) MHz, 3201 MHz, 6$((i % 10))0.00 W, 60, 0x0000000000000004"; sleep 0.05; done ;;
*) echo "stand-in" ;;
esac
SMI
chmod +x "$TMP/smi/nvidia-smi"
PATH="$TMP/smi:$PATH" GPU_BUILD="$FB" GPU_STEPS="bench" FAKE_SLEEP=1 OUT="$TMP/c" GPU_STEPS_DIR="$TMP/c-steps" \
    bash "$SRC/dev/gpu-check.sh" > /dev/null 2>&1 || true
mkdir -p "$TMP/c-x" && tar -C "$TMP/c-x" -xzf "$TMP/c/steps.tgz"
check "the clock samples are in the archive" grep -q "MHz" "$TMP/c-x/bench.clocks.txt"
check "the bench's clock and power reach the timing table" \
    grep -Eq "^ +bench clocks: [0-9]+ samples, [0-9]+ under load \(>= 80% of the peak power\): SM 160[0-2] MHz, 6[0-9]{2} W \(mean\); reasons at the peak 0x0+4$" "$TMP/c/gpu-check.log"

# 25 s of budget: test passes, bench (sleeping 60 s) gets the ~25 s left and is cut off, bench-prof
# is skipped, and the script ends on its own well before bench's 60 s step timeout.
t0=$(date +%s)
rc=0
GPU_BUILD="$FB" GPU_STEPS="test bench" GPU_BUDGET_S=25 FAKE_SLEEP=60 OUT="$TMP/b" GPU_STEPS_DIR="$TMP/b-steps" \
    bash "$SRC/dev/gpu-check.sh" > /dev/null 2>&1 || rc=$?
took=$(( $(date +%s) - t0 ))
echo "  budget run took ${took}s, exit $rc"
check "the budget ends the script (under 40 s)" [ $took -lt 40 ]
check "the step past the budget was cut off" grep -Eq "^bench +exit 124" "$TMP/b/gpu-check.log"
check "the steps after it are skipped" grep -Eq "^bench-prof +skipped \(time budget\)" "$TMP/b/gpu-check.log"
check "the summary still comes out" grep -q "decision rule: test passed" "$TMP/b/gpu-check.log"
finish
