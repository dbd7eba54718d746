#!/usr/bin/env bash
# tests/comm/test_comm_fault.sh MPIEXEC TEST_COMM_FAULT
# 1) without a fault the 2-rank job succeeds; 2) with TRUTHGPT_FAULT_RANK=1 (after 5 collectives)
# rank 1 fails while rank 0 waits in an all-reduce: the job must end non-zero within 30 s and
# say "rank 1 failed: ... injected fault".
set -u
MPIEXEC=$1
PROG=$2
MPI=("$MPIEXEC" --allow-run-as-root --oversubscribe -np 2)
export OMPI_MCA_rmaps_base_oversubscribe=1

out=$(timeout 30 "${MPI[@]}" "$PROG" 20 2>&1)
rc=$?
if [ $rc -ne 0 ] || ! grep -q "20 all-reduces done" <<<"$out"; then
    echo "FAIL: the job without a fault ended with $rc:"; echo "$out"; exit 1
fi

start=$(date +%s)
out=$(TRUTHGPT_FAULT_RANK=1 TRUTHGPT_FAULT_AT=5 timeout 30 "${MPI[@]}" -x TRUTHGPT_FAULT_RANK \
      -x TRUTHGPT_FAULT_AT "$PROG" 1000000 2>&1)
rc=$?
elapsed=$(( $(date +%s) - start ))
echo "$out"
echo "exit code $rc after ${elapsed} s"
if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then echo "FAIL: the job hung (killed by timeout)"; exit 1; fi
if [ $rc -eq 0 ]; then echo "FAIL: the job succeeded despite the injected fault"; exit 1; fi
if ! grep -q "truthgpt: rank 1 failed: .*injected fault" <<<"$out"; then
    echo "FAIL: the output does not name rank 1 and the injected fault"; exit 1
fi
if grep -q "rank 0 failed" <<<"$out"; then echo "FAIL: rank 0 reported a failure too"; exit 1; fi
echo "PASS"
