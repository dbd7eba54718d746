#!/usr/bin/env bash
# tests/comm/test_comm_env.sh TEST_COMM_FAULT — launch detection and env switches, without mpirun
# (test_comm_fault runs N all-reduces; on any error it calls tg_comm_abort and exits non-zero).
set -u
PROG=$1
fails=0
# expect NAME WANT_RC PATTERN -- ENV... : runs PROG 3 under env, checks exit code and output
expect() {
    local name=$1 want=$2 pat=$3; shift 4
    local out rc
    out=$(env -u OMPI_COMM_WORLD_SIZE -u PMIX_RANK -u PMI_RANK -u PMI_SIZE -u SLURM_STEP_NUM_TASKS \
          "$@" timeout 30 "$PROG" 3 2>&1)
    rc=$?
    if [ "$rc" -ne "$want" ] || ! grep -qE -- "$pat" <<<"$out"; then
        echo "FAIL $name: exit $rc (want $want), output:"; echo "$out"; fails=$((fails + 1))
    else
        echo "ok   $name"
    fi
}
expect plain            0 "3 all-reduces done" --
expect forced-mpi       0 "3 all-reduces done" -- TRUTHGPT_MPI=1
expect srun-without-pmi 1 "rank 0 failed: .*srun --mpi=pmix" -- SLURM_STEP_NUM_TASKS=2
expect srun-one-task    0 "3 all-reduces done" -- SLURM_STEP_NUM_TASKS=1
expect bad-switch       1 "TRUTHGPT_MPI=yes: expected 0 or 1" -- TRUTHGPT_MPI=yes
expect bad-timeout      1 "TRUTHGPT_COMM_TIMEOUT" -- TRUTHGPT_COMM_TIMEOUT=soon
expect fault-world1     3 "rank 0 failed: injected fault in all_reduce \(collective #2" -- \
       TRUTHGPT_FAULT_RANK=0 TRUTHGPT_FAULT_AT=2
expect fault-other-rank 0 "3 all-reduces done" -- TRUTHGPT_FAULT_RANK=1
[ $fails -eq 0 ] && echo PASS || { echo "$fails failed"; exit 1; }
