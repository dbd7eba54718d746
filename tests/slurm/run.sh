#!/usr/bin/env bash
# tests/slurm/run.sh TRUTHGPT SRC_DIR TMP_DIR — end-to-end: a real one-node SLURM cluster on
# localhost (scripts/slurm/local-cluster.sh), the tiny config trained with 2 ranks by
# scripts/slurm/train.sbatch, `scontrol requeue`d while it runs, then sent USR1 (the time-limit
# signal) after it restarted; it must resume by itself each time and finish with final
# parameters bitwise equal to an uninterrupted run (plain mpirun -np 2). About a minute, half of
# it SLURM's requeue delay.
# TG_LAUNCHER=mpirun runs the job's ranks through mpirun instead of srun, with a checkpoint write
# slowed to >= 5 s (test-only TRUTHGPT_CKPT_SLOW_MS): the requeue's TERM must still end in a complete
# checkpoint of the step the ranks stopped at and exit 75 (train.sbatch sends mpirun USR1), and the
# restart must resume from exactly that step.
# Exits 77 (ctest SKIP) without slurmctld or root. Env: TG_SLURM_STEPS, TG_SLURM_EVERY, TG_LAUNCHER.
set -euo pipefail

truthgpt=$(readlink -f "$1")
src=$(readlink -f "$2")
tmp=$3
steps=${TG_SLURM_STEPS:-160}
every=${TG_SLURM_EVERY:-10}
launcher=${TG_LAUNCHER:-srun}
slow=()
model=()
if [[ $launcher == mpirun ]]; then
  # A small model whose checkpoint (~90 datasets) takes >= 5 s to write at 60 ms per dataset.
  slow=(TRUTHGPT_CKPT_SLOW_MS=60)
  model=(model.n_layer=2 model.n_embd=64 model.n_head=2 model.seq_len=32 train.micro_batch=2)
  steps=${TG_SLURM_STEPS:-60}
  every=${TG_SLURM_EVERY:-20}
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  echo "SKIP: slurmctld/munged not installed (apt-get install slurm-wlm munge)"
  exit 77
fi
if [[ $(id -u) != 0 ]]; then
  echo "SKIP: needs root to run slurmd"
  exit 77
fi

rm -rf "$tmp"
mkdir -p "$tmp"
tmp=$(readlink -f "$tmp")
state=$tmp/slurm-state
export SLURM_CONF=$state/slurm.conf
export TG_SLURM_PORT=${TG_SLURM_PORT:-6817}

source "$src/tests/slurm/ranks.sh"

cleanup() {
  "$src/scripts/slurm/local-cluster.sh" stop "$state" >/dev/null 2>&1 || true
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  for f in "$tmp"/job-*.out "$state"/slurmctld.log; do
    [[ -f $f ]] && { echo "---- tail $f" >&2; tail -n 40 "$f" >&2; }
  done
  exit 1
}

# The same run, twice: keys shared by the reference and the SLURM job.
keys=(run.out_dir=PLACEHOLDER train.max_steps="$steps" checkpoint.every="$every" checkpoint.keep=2
      train.log_every=10 "${model[@]}")

echo "== reference: mpirun -np 2, uninterrupted ($steps steps)"
ref=$tmp/ref
keys[0]=run.out_dir=$ref
t0=$SECONDS
OMP_NUM_THREADS=1 mpirun --allow-run-as-root --oversubscribe -np 2 --bind-to none \
  "$truthgpt" train "$src/configs/tiny.ini" "${keys[@]}" train.resume=none >"$tmp/ref.log" 2>&1 ||
  { tail -n 30 "$tmp/ref.log" >&2; fail "reference run failed"; }
ref_s=$((SECONDS - t0))
final=$(printf 'step_%08d.h5' "$steps")
[[ -f $ref/checkpoints/$final ]] || fail "reference run left no $final"
echo "   done in ${ref_s}s"

echo "== start the local SLURM cluster"
"$src/scripts/slurm/local-cluster.sh" start "$state"

echo "== sbatch -n 2 scripts/slurm/train.sbatch ($launcher), requeue while it runs"
run=$tmp/run
keys[0]=run.out_dir=$run
exports="ALL,TRUTHGPT=$truthgpt,TG_LAUNCHER=$launcher"
for kv in "${slow[@]}"; do exports+=",$kv"; done
job=$(cd "$src" && sbatch --parsable -n 2 -o "$tmp/job-%j.out" --export="$exports" \
  scripts/slurm/train.sbatch "$src/configs/tiny.ini" "${keys[@]}")
job=${job%%;*}
echo "   job $job"

field() { # field NAME: a field of `scontrol show job -o` for the job
  scontrol show job -o "$job" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$1=//p" | head -n 1
}

out=$tmp/job-$job.out
# wait_until WHAT TEST...: wait (bounded) until TEST succeeds; fail naming WHAT after 300 s or when
# the job ends first. Asking SLURM takes a while: once a second, TEST every 50 ms in between.
wait_until() {
  local what=$1 deadline=$((SECONDS + 300)) next=0
  shift
  until "$@"; do
    ((SECONDS < deadline)) || fail "no $what within 300 s (state $(field JobState))"
    if ((SECONDS >= next)); then
      [[ $(field JobState) =~ ^(COMPLETED|FAILED|CANCELLED|TIMEOUT)$ ]] && fail "job ended before $what"
      next=$((SECONDS + 1))
    fi
    sleep 0.05
  done
}
# logged N PATTERN: start N of the job (from the "restart N:" line of train.sbatch) logged PATTERN.
logged() { [[ -f $out ]] && sed -n "/restart $1:/,\$p" "$out" | grep -q "$2"; }
# ckpt_queued_after STEP: metrics.jsonl has a checkpoint (ckpt_stall_ms record) of a step after STEP.
ckpt_queued_after() {
  [[ -f $run/metrics.jsonl ]] &&
    sed -n 's/.*"step":\([0-9]*\),"ckpt_stall_ms".*/\1/p' "$run/metrics.jsonl" |
      awk -v after="$1" '$1 > after { found = 1 } END { exit !found }'
}
# wait_log N PATTERN: wait until start N has logged PATTERN (a requeued job waits ~11 s before it
# runs again: cred_expire).
wait_log() { wait_until "'$2' logged by start $1" logged "$1" "$2"; }
# freeze AFTER: once a periodic checkpoint of a step after AFTER is queued (its ckpt_stall_ms record
# in metrics.jsonl, which rank 0 writes and flushes itself: the log reaches the job's file through
# the launcher, sometimes later than the run's end), stop the ranks (ranks.sh), so that the signal
# sent next meets them mid-run however fast they train; sets $pids.
freeze() {
  wait_until "checkpoint after step $1 queued" ckpt_queued_after "$1"
  pids=$(ranks_pids "$truthgpt" "$run")
  [[ -n $pids ]] || fail "no ranks found (pgrep)"
  ranks_stop $pids || fail "the ranks did not stop (SIGSTOP)"
  [[ $(field JobState) == RUNNING ]] || fail "job not running at signal time: $(field JobState)"
}
# check_resumed N: start N resumed from exactly the step that the stop before it saved (the N-th
# stop_saved record of metrics.jsonl: under mpirun the ranks' own log lines after a TERM are lost
# with mpirun), not from an earlier periodic checkpoint.
check_resumed() {
  wait_log "$1" "resumed from"
  local resumed
  saved=$(sed -n 's/.*"step":\([0-9]*\),"stop_saved":true.*/\1/p' "$run/metrics.jsonl" | sed -n "$1p")
  [[ -n $saved ]] || fail "stop $1 left no stop_saved record in metrics.jsonl"
  resumed=$(sed -n "/restart $1:/,\$p" "$out" | sed -n 's/.*resumed from .*step_0*\([0-9][0-9]*\)\.h5.*/\1/p' | head -n 1)
  [[ $resumed == "$saved" ]] || fail "start $1 resumed from step ${resumed:-?}, not from the saved step $saved"
  echo "   the stop saved step $saved; start $1 resumed from it"
}

freeze 0
echo "   first checkpoint queued, ranks $(echo $pids) stopped; scontrol requeue $job"
scontrol requeue "$job"
ranks_cont_on 15 $pids || fail "SIGTERM did not reach the stopped ranks within 300 s"
check_resumed 1
# The time-limit path: SLURM's --signal=B:USR1 goes to the batch script, which forwards it; the
# ranks save and exit 75; the script requeues the job itself.
freeze "$saved" # the first periodic checkpoint of restart 1
echo "   restart 1 running, ranks $(echo $pids) stopped; USR1 to the batch script (as before a time limit)"
scancel --batch --signal=USR1 "$job"
ranks_cont_on 10 $pids || fail "the batch script's USR1 did not reach the stopped ranks within 300 s"
check_resumed 2
grep -q "got SIGUSR1" "$out" || fail "the batch script did not see USR1"
grep -q "requeueing job" "$out" || fail "the batch script did not requeue on exit 75"

# Wait (bounded) for the job to finish.
deadline=$((SECONDS + 300))
while :; do
  st=$(field JobState)
  [[ $st =~ ^(COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY)$ ]] && break
  ((SECONDS < deadline)) || fail "job did not finish within 300 s (state $st)"
  sleep 1
done
echo "   job ended: $st, restarts $(field Restarts), exit $(field ExitCode)"
[[ $st == COMPLETED ]] || fail "job state $st"
[[ -f $run/checkpoints/$final ]] || fail "the SLURM run left no $final"

echo "== compare final parameters and optimizer state"
"$truthgpt" ckpt diff "$ref/checkpoints/$final" "$run/checkpoints/$final" ||
  fail "final parameters differ from the uninterrupted run"
# Every tensor dataset (params, AdamW m and v) bitwise equal: same crc32c per dataset.
crcs() { "$truthgpt" ckpt info "$1" --no-config | sed -n 's|^  \(/[a-z_]*/[^ ]*\) .*crc32c \([0-9a-f]*\).*|\1 \2|p' | grep -v '^/config_ini'; }
crcs "$ref/checkpoints/$final" >"$tmp/ref.crc"
crcs "$run/checkpoints/$final" >"$tmp/run.crc"
[[ -s $tmp/ref.crc ]] || fail "no datasets listed by ckpt info"
diff "$tmp/ref.crc" "$tmp/run.crc" >/dev/null || fail "dataset checksums differ: $(diff "$tmp/ref.crc" "$tmp/run.crc" | head)"
echo "PASS: twice interrupted SLURM run equals the uninterrupted run ($(wc -l <"$tmp/ref.crc") datasets)"
