#!/bin/bash
# tests/comm/test_comm_hang.sh MPIRUN TRUTHGPT SRC TMPDIR — a rank stopped with SIGSTOP must not
# hang the job: `mpirun -np 2 truthgpt train` with comm.timeout=5 ends (non-zero) once rank 0's
# MPI collective times out, and the error names the waiting rank and the stopped peer (rank 1).
# Event-driven: waits for the first step line, finds rank 1 by OMPI_COMM_WORLD_RANK in its
# environment, stops it; the only bound is a generous safety net far above the timeout.
set -u
MPIRUN=$1 BIN=$2 SRC=$3 T=$4
rm -rf "$T" && mkdir -p "$T" || exit 1
stopped=""
cleanup() {
    [ -n "$stopped" ] && kill -KILL "$stopped" 2>/dev/null
    [ -n "${mp:-}" ] && kill -KILL "$mp" 2>/dev/null
}
trap cleanup EXIT
OMP_NUM_THREADS=1 "$MPIRUN" --allow-run-as-root --oversubscribe -np 2 "$BIN" train "$SRC/configs/tiny.ini" \
    run.out_dir="$T/run" train.max_steps=1000000 train.eval_every=0 train.log_every=1 checkpoint.every=0 \
    comm.timeout=5 > "$T/log" 2>&1 &
mp=$!
# Wait (no time assumption) for training to be under way.
until grep -q "step  *[0-9]*/" "$T/log"; do
    kill -0 $mp 2>/dev/null || { echo "FAIL: job ended before its first step"; cat "$T/log"; exit 1; }
    sleep 0.2  # polling a file, not assuming a speed
done
r1=""
for p in $(pgrep -P $mp); do
    if tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1"; then r1=$p; fi
done
[ -n "$r1" ] || { echo "FAIL: rank 1's pid not found among mpirun's children"; exit 1; }
kill -STOP "$r1" && stopped=$r1
t0=$(date +%s)
# Safety net only (the job must end after ~5 s of comm.timeout; 240 s covers any load).
while kill -0 $mp 2>/dev/null && [ $(($(date +%s) - t0)) -lt 240 ]; do sleep 0.5; done
if kill -0 $mp 2>/dev/null; then echo "FAIL: job still running 240 s after rank 1 was stopped"; tail -5 "$T/log"; exit 1; fi
wait $mp
rc=$?
echo "job ended rc=$rc $(($(date +%s) - t0)) s after SIGSTOP of rank 1 (pid $r1)"
fails=0
[ $rc != 0 ] || { echo "FAIL: exit code 0"; fails=1; }
grep -q "did not finish within 5 s (comm.timeout): peer rank 1 is stopped" "$T/log" ||
    { echo "FAIL: no timeout message naming rank 1"; fails=1; }
grep "comm.timeout" "$T/log"
[ $fails = 0 ] || tail -20 "$T/log"
exit $fails
