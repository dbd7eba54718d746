# No hangs and preemption: a failing rank ends a 2-rank job naming the rank; SIGUSR1 / SIGTERM save
# and exit 75; a second SIGINT exits at once, repeated TERM/USR1 do not; NaN losses skip the
# update. Every wait is on an event (a log line, a pid), never on a time that assumes a speed.
source "$(dirname "$0")/lib.sh"
cd "$SRC"
ARGS=(configs/tiny.ini model.n_layer=2 model.n_embd=64 model.n_head=2 model.seq_len=32 train.micro_batch=2
      train.eval_every=0 data.val= train.resume=none train.warmup_steps=1)
# wait_for PID LOG PATTERN: polls until LOG has PATTERN (0) or PID has ended (1, unless the line came
# with the end). No time bound: the ctest timeout is the backstop.
wait_for() {
    while ! grep -q "$3" "$2"; do kill -0 "$1" 2>/dev/null || { grep -q "$3" "$2"; return; }; sleep 0.1; done
}
# signal_run LOG SIGNALS CMD...: starts the training command CMD in the background, its output in
# LOG; once it has logged a step sends it the first of SIGNALS, and each further one once the stop
# request has reached the trainer (its checkpoint is queued); returns its exit status.
signal_run() {
    local log=$1 sigs=$2 pid s first=1
    shift 2
    "$@" >"$log" 2>&1 &
    pid=$!
    wait_for $pid "$log" "step .*/.* | loss"
    for s in $sigs; do
        [ $first -eq 1 ] || wait_for $pid "$log" "checkpoint step .* queued"
        first=0
        kill -"$s" $pid
    done
    wait $pid
}
set +e
start=$(date +%s)
# The timeout only tells a hang (124) from an end; a healthy abort takes seconds.
TRUTHGPT_FAULT_STEP=3 TRUTHGPT_FAULT_STEP_RANK=1 timeout 600 "${MPIRUN[@]}" -np 2 "$TG" train "${ARGS[@]}" \
    train.max_steps=100000 run.out_dir="$TMP/fault" >"$TMP/fault.log" 2>&1
rc=$?
took=$(( $(date +%s) - start ))
check "failing rank ends the 2-rank job non-zero, no hang (took $took s)" bash -c "[ $rc -ne 0 ] && [ $rc -ne 124 ]"
check "the output names the failed rank and why" grep -q "rank 1 failed: .*injected fault" "$TMP/fault.log"

# SIGUSR1 to a single process: finish the step, save, exit 75.
signal_run "$TMP/sig.log" USR1 "$TG" train "${ARGS[@]}" train.max_steps=100000 run.out_dir="$TMP/sig"
rc=$?
check "SIGUSR1 exits 75" [ $rc -eq 75 ]
check "SIGUSR1 saved a checkpoint" bash -c "ls '$TMP/sig/checkpoints/'step_*.h5 >/dev/null 2>&1"
check "the log says it stopped on request" grep -q "stop requested: saved step" "$TMP/sig.log"
step=$(ls "$TMP/sig/checkpoints/" | grep -o 'step_[0-9]*' | tail -1 | sed 's/step_0*//')
"$TG" train "${ARGS[@]}" train.max_steps=$((step + 2)) run.out_dir="$TMP/sig" train.resume=auto >"$TMP/sig2.log" 2>&1
check "resume after SIGUSR1 continues from step $step" grep -q "at step $step " "$TMP/sig2.log"

# A run that dies after logging steps past its last checkpoint: the resumed metrics read as one run.
TRUTHGPT_FAULT_STEP=7 "$TG" train "${ARGS[@]}" train.max_steps=10 checkpoint.every=4 run.out_dir="$TMP/dup" >/dev/null 2>&1
"$TG" train "${ARGS[@]}" train.max_steps=10 checkpoint.every=4 run.out_dir="$TMP/dup" train.resume=auto >"$TMP/dup.log" 2>&1
check "metrics.jsonl has each step once after a resume from an older checkpoint" python3 -c '
import json, sys
steps = [r["step"] for r in map(json.loads, open(sys.argv[1])) if "loss" in r]
print("  steps:", steps)
sys.exit(steps != list(range(1, 11)))
' "$TMP/dup/metrics.jsonl"

# SIGTERM through mpirun with 2 ranks: both save the same step and the job exits 75.
signal_run "$TMP/sigmpi.log" USR1 "${MPIRUN[@]}" -np 2 "$TG" train "${ARGS[@]}" train.max_steps=100000 \
    run.out_dir="$TMP/sigmpi"
rc=$?
check "SIGUSR1 to mpirun: 2-rank job exits 75" [ $rc -eq 75 ]
check "2-rank job saved a checkpoint" bash -c "ls '$TMP/sigmpi/checkpoints/'step_*.h5 >/dev/null 2>&1"

# Second signal exits at once (no save): sent once the first one's save is queued, which the slow
# writer keeps busy for minutes (checkpoint.every=0: no periodic save is mistaken for it).
signal_run "$TMP/sig3.log" "INT INT" env TRUTHGPT_CKPT_SLOW_MS=3000 "$TG" train "${ARGS[@]}" \
    train.max_steps=100000 checkpoint.every=0 run.out_dir="$TMP/sig3"
rc=$?
check "second signal exits at once with 128+SIGINT" [ $rc -eq 130 ]

# Repeated TERM/USR1 (a batch system delivers one stop by several paths: SLURM to every process,
# then the batch script and mpirun again) arrive while the slowed writer is still busy and do not
# abandon the save: the run still writes a complete checkpoint and exits 75.
signal_run "$TMP/sig4.log" "TERM TERM USR1" env TRUTHGPT_CKPT_SLOW_MS=100 "$TG" train "${ARGS[@]}" \
    train.max_steps=100000 checkpoint.every=0 run.out_dir="$TMP/sig4"
rc=$?
check "repeated TERM/USR1 during the save: still exits 75" [ $rc -eq 75 ]
check "... with a complete checkpoint" bash -c "'$TG' ckpt latest '$TMP/sig4/checkpoints'"

# NaN: one poisoned step is skipped and logged; training goes on.
TRUTHGPT_NAN_STEP=3 "$TG" train "${ARGS[@]}" train.max_steps=6 run.out_dir="$TMP/nan" >"$TMP/nan.log" 2>&1
rc=$?
check "one NaN step: run still succeeds" [ $rc -eq 0 ]
check "NaN step logged as skipped" grep -q "step 3: non-finite loss .* update skipped" "$TMP/nan.log"
check "NaN step marked in metrics" grep -q '"step":3,"skipped":true' "$TMP/nan/metrics.jsonl"
TRUTHGPT_NAN_STEP=3 "$TG" train "${ARGS[@]}" train.max_steps=6 train.nan_patience=1 run.out_dir="$TMP/nan2" >"$TMP/nan2.log" 2>&1
rc=$?
check "nan_patience=1 stops the run" bash -c "[ $rc -ne 0 ] && grep -q 'non-finite losses in a row' '$TMP/nan2.log'"
set -e
finish
