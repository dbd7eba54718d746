# Preemption through a bare mpirun (issue 25 item 2): USR1 sent to mpirun's own pid while a 2-rank job
# trains with a slow (>= 5 s) checkpoint write ends the job with 75, a complete checksum-valid
# checkpoint (no .tmp left), "saved" logged only once the file is there, and the run resumes from it.
# TERM to a bare mpirun is no stop request (Open MPI 4.1 kills the ranks 1 s after relaying it and
# exits 1): docs/slurm.md says to send USR1, and train.sbatch turns TERM into USR1 for mpirun.
source "$(dirname "$0")/lib.sh"
cd "$SRC"
ARGS=(configs/tiny.ini model.n_layer=2 model.n_embd=64 model.n_head=2 model.seq_len=32 train.micro_batch=2
      train.eval_every=0 data.val= train.resume=none train.warmup_steps=1 train.max_steps=100000)
# wait_for PID LOG PATTERN: polls until LOG has PATTERN (0) or PID has ended (1); no time bound, the
# ctest timeout is the backstop.
wait_for() {
    while ! grep -q "$3" "$2"; do kill -0 "$1" 2>/dev/null || { grep -q "$3" "$2"; return; }; sleep 0.1; done
}
set +e
# The writer sleeps 200 ms per 64 KiB: this model's checkpoint (~1.7 MB) takes >= 5 s to write.
TRUTHGPT_CKPT_SLOW_MS=200 "${MPIRUN[@]}" -np 2 "$TG" train "${ARGS[@]}" run.out_dir="$TMP/usr1" \
    >"$TMP/usr1.log" 2>&1 &
pid=$!
wait_for $pid "$TMP/usr1.log" "step .*/.* | loss"
check "the 2-rank job started training" grep -q "step .*/.* | loss" "$TMP/usr1.log"
t0=$(date +%s.%N)
kill -USR1 $pid
# The moment "saved" shows up in the log, the final checkpoint file must already be complete.
saved_ok=1
if wait_for $pid "$TMP/usr1.log" "stop requested: saved step"; then
    s=$(grep -o "saved step [0-9]*" "$TMP/usr1.log" | head -1 | grep -o "[0-9]*$")
    f=$(printf "%s/usr1/checkpoints/step_%08d.h5" "$TMP" "$s")
    [ -f "$f" ] || saved_ok=0
fi
wait $pid
rc=$?
t1=$(date +%s.%N)
check "USR1 to mpirun: the job exits 75 (got $rc)" [ $rc -eq 75 ]
check "the log says saved step ${s:-?}" [ -n "${s:-}" ]
check "the checkpoint file existed when \"saved\" was logged" [ $saved_ok -eq 1 ]
check "the save took >= 5 s (signal to exit $(python3 -c "print(round($t1 - $t0, 1))") s)" \
    python3 -c "import sys; sys.exit(not $t1 - $t0 >= 5)"
check "no .tmp checkpoint is left" bash -c "! ls '$TMP/usr1/checkpoints/'*.tmp >/dev/null 2>&1"
check "the checkpoint is complete and its checksums verify" "$TG" ckpt info --no-config "${f:-/nonexistent}"
"$TG" train "${ARGS[@]}" train.max_steps=$((${s:-0} + 2)) run.out_dir="$TMP/usr1" train.resume=auto \
    >"$TMP/usr1-resume.log" 2>&1
check "it resumes from step ${s:-?}" grep -q "resumed from .*at step ${s:-x} " "$TMP/usr1-resume.log"
set -e
finish
