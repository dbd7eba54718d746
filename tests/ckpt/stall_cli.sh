#!/usr/bin/env bash
# tests/ckpt/stall_cli.sh TRUTHGPT SRC_DIR TMP_DIR — a checkpoint write that outlasts the steps
# between saves does not stall training: with checkpoint.every=1 and the write of step 1 held
# half way (TRUTHGPT_CKPT_HOLD_STEP, test builds), training still runs to step 6, each save
# queued (the newer replacing the one waiting), and metrics.jsonl records each save's stall.
# Events, not timing: the script waits for the log line of the last save, never for a duration.
set -euo pipefail

tg=$(readlink -f "$1")
src=$(readlink -f "$2")
tmp=$3
rm -rf "$tmp"
mkdir -p "$tmp"
export OMP_NUM_THREADS=1

fail() { echo "FAIL: $*" >&2; exit 1; }
run=$tmp/run
log=$tmp/run.log
TRUTHGPT_CKPT_HOLD_STEP=1 "$tg" train "$src/configs/tiny.ini" train.eval_every=0 train.log_every=1 \
  run.out_dir="$run" train.max_steps=6 checkpoint.every=1 checkpoint.keep=10 train.resume=none >"$log" 2>&1 &
pid=$!
# The trainer ends only by the kill below: its final wait is for the held write.
# A broken writer makes the save of step 2 wait for ever: SECONDS bounds that case only.
until grep -q "checkpoint step 6 queued" "$log"; do
  kill -0 $pid 2>/dev/null || break
  ((SECONDS < 300)) || break
  sleep 0.05 # polling the log, not assuming a speed
done
ok=0
grep -q "checkpoint step 6 queued" "$log" && ok=1
kill -9 $pid 2>/dev/null || true
wait $pid 2>/dev/null || true
[[ $ok == 1 ]] || fail "training did not reach the save of step 6 while step 1 was being written: $(tail -3 "$log")"
[[ -e $run/checkpoints/step_00000001.h5.tmp ]] || fail "the write of step 1 was not in progress"
[[ ! -e $run/checkpoints/step_00000001.h5 ]] || fail "step 1 was completed (the hold did not hold)"
for s in 2 3 4 5 6; do grep -q "checkpoint step $s queued" "$log" || fail "no save of step $s"; done
grep -q "step 2 is dropped unwritten, replaced by step 3" "$log" || fail "no warning about the replaced step 2"
python3 - "$run/metrics.jsonl" <<'PY' || fail "ckpt_stall_ms records"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
stalls = {r["step"]: r["ckpt_stall_ms"] for r in recs if "ckpt_stall_ms" in r}
print("  ckpt_stall_ms:", stalls)
assert sorted(stalls) == [1, 2, 3, 4, 5, 6], sorted(stalls)
assert all(v >= 0 for v in stalls.values())
PY
echo "PASS"
