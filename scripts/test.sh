#!/usr/bin/env bash
# The test command (README): installs what it needs, builds the CPU variant, the CUDA variant (when
# nvcc exists: a compile error there is a failure; GPU tests skip without a GPU) and an ASan+UBSan
# variant, and runs the tests. Set TG_TEST_SLURM=0 to skip the SLURM cluster test.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${TG_TEST_SLURM:-1}" = 1 ]; then scripts/install-deps.sh --slurm; else scripts/install-deps.sh; fi
# Python peers (transformers, tensorboard, h5py, tiktoken) in a cached venv; tests read $TG_PYTHON.
TG_PYTHON=$(scripts/test-venv.sh)
export TG_PYTHON
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Tests oversubscribe (up to 4 ranks on 2 cores): idle ranks must yield, not busy-poll.
export OMPI_MCA_mpi_yield_when_idle=1
t0=$(date +%s)
PASSED=0 SKIPPED=0 RUN=0
# count_ctest LOG: adds the counts of a ctest output to the totals.
count_ctest() {
    local n s
    n=$(grep -o "tests failed out of [0-9]*" "$1" | grep -o "[0-9]*$" || echo 0)
    s=$(grep -c "\*\*\*Skipped" "$1" || true)
    RUN=$((RUN + n)); SKIPPED=$((SKIPPED + s)); PASSED=$((PASSED + n - s))
}
# run_ctest ARGS...: ctest with its output shown, and its counts added to the totals.
run_ctest() {
    local log
    log=$(mktemp)
    ctest "$@" 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    count_ctest "$log"
    rm -f "$log"
    return "$rc"
}

echo "== CPU build + tests"
scripts/build.sh build/cpu -DTRUTHGPT_CUDA=OFF -DCMAKE_BUILD_TYPE=Release
run_ctest --test-dir build/cpu --output-on-failure -j2 -LE "slurm"

if command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ]; then
    echo "== CUDA build (sm_80, sm_90) + its tests (GPU tests skip without a GPU)"
    scripts/build.sh build/cuda -DTRUTHGPT_CUDA=ON -DCMAKE_BUILD_TYPE=Release
    run_ctest --test-dir build/cuda --output-on-failure -L cuda
    build/cuda/truthgpt --version
else
    echo "== no nvcc: CUDA variant not built"
fi

echo "== ASan + UBSan build + all tests but SLURM and the learning-quality runs"
scripts/build.sh build/asan -DTRUTHGPT_CUDA=OFF -DTRUTHGPT_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
# Leaks are failures; tests/lsan.supp lists the runtimes (MPI, PMIx, OpenMP, HDF5 internals) that
# keep allocations until exit by design. Those need whole stacks to match: the slow unwinder (the
# libraries lack frame pointers) and MPI's plugins kept loaded (else their frames are unknown).
ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0 OMPI_MCA_mca_base_component_disable_dlclose=1 \
    LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp:print_suppressions=0 \
    UBSAN_OPTIONS=print_stacktrace=1 \
    run_ctest --test-dir build/asan --output-on-failure -j2 -LE "slurm|cuda|quality"

# The SLURM tests mostly wait (on SLURM's scheduler, requeue and KillWait): they run in the
# background while the fuzzers (fixed-time, one at a time) run in the foreground. Their output
# is shown after the fuzzers. Both are load-independent (they pass beside two CPU hogs).
slurm_pid=
if [ "${TG_TEST_SLURM:-1}" = 1 ]; then
    echo "== SLURM: a real one-node cluster on localhost (sbatch, requeue, resume), in the background"
    slurm_log=$(mktemp)
    run_ctest --test-dir build/cpu --output-on-failure -L slurm >"$slurm_log" 2>&1 &
    slurm_pid=$!
    # If a fuzzer fails, this script still waits for the SLURM run (its tests stop their cluster
    # themselves) and shows its output before it exits.
    trap '[ -z "$slurm_pid" ] || { wait "$slurm_pid"; cat "$slurm_log"; rm -f "$slurm_log"; }' EXIT
fi

echo "== libFuzzer: each file reader for ${TG_FUZZ_SECONDS:-20} s (scripts/fuzz.sh; ASan+UBSan, leaks on)"
scripts/fuzz.sh "${TG_FUZZ_SECONDS:-20}"

if [ -n "$slurm_pid" ]; then
    echo "== SLURM results"
    rc=0
    wait "$slurm_pid" || rc=$?
    slurm_pid=
    cat "$slurm_log"
    count_ctest "$slurm_log" # the background run's run_ctest counted in its own subshell
    rm -f "$slurm_log"
    [ "$rc" = 0 ] || exit "$rc"
fi
echo "== all tests passed in $(( $(date +%s) - t0 )) s (CPU, CUDA-compiled, ASan/UBSan and SLURM runs together)"
echo "total: $PASSED passed, 0 failed, $SKIPPED skipped"
