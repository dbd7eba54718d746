# Loss spikes (issue 25 item 6): with lr=10 the loss explodes; train.spike_sigma logs each spike,
# marks it "spike":true in metrics.jsonl, and with spike_action=skip leaves the parameters unchanged.
# spike_action=rollback reloads the latest checkpoint after spike_patience spikes and goes on, and
# stops with a clear error after spike_rollbacks rollbacks. A run stopped by train.nan_patience saves
# a checkpoint first.
source "$(dirname "$0")/lib.sh"
cd "$SRC"
ARGS=(configs/tiny.ini model.n_layer=1 model.n_embd=32 model.n_head=2 model.seq_len=16 train.micro_batch=2
      train.total_batch_tokens=32 train.warmup_steps=10 train.max_steps=12 train.eval_every=0 data.val=
      train.resume=none)
set +e
"$TG" train "${ARGS[@]}" train.lr=10 train.spike_sigma=2 train.spike_window=2 run.out_dir="$TMP/warn" \
    >"$TMP/warn.log" 2>&1; rc=$?
check "lr=10 with spike_sigma trains to the end" [ $rc -eq 0 ]
check "a loss spike is logged" grep -q "warning: step [0-9]*: loss spike" "$TMP/warn.log"
first=$(grep -o "step [0-9]*: loss spike" "$TMP/warn.log" | head -n 1 | grep -o "[0-9]*")
check "metrics.jsonl marks step ${first:-?} as a spike" grep -q "\"step\":${first:-x},.*\"spike\":true" "$TMP/warn/metrics.jsonl"
"$TG" train "${ARGS[@]}" train.lr=10 run.out_dir="$TMP/off" >"$TMP/off.log" 2>&1
check "spike_sigma=0 (default) logs and marks nothing" bash -c "! grep -q 'loss spike' '$TMP/off.log' && ! grep -q spike '$TMP/off/metrics.jsonl'"
"$TG" train "${ARGS[@]}" train.lr=10 train.spike_sigma=2 train.spike_window=2 train.spike_action=skip \
    run.out_dir="$TMP/skip" >"$TMP/skip.log" 2>&1; rc=$?
check "spike_action=skip trains to the end" [ $rc -eq 0 ]
check "spike_action=skip skips the update" grep -q "loss spike .*: update skipped" "$TMP/skip.log"
# One injected spike (step 7, only the first time it runs): rolled back to step 4, then trains to the end.
TRUTHGPT_SPIKE_STEP=7 "$TG" train "${ARGS[@]}" train.lr=1e-3 train.spike_sigma=1000 train.spike_window=3 \
    train.spike_action=rollback train.spike_patience=1 checkpoint.every=4 run.out_dir="$TMP/rb" \
    >"$TMP/rb.log" 2>&1; rc=$?
check "spike_action=rollback: one spike, then trains to the end" [ $rc -eq 0 ]
check "... logs the rollback to step 4" grep -q "step 7: 1 loss spikes: rolled back to step 4 from .*step_00000004.h5 (rollback 1 of" "$TMP/rb.log"
check "... and steps 5-12 ran after it" bash -c "[ \$(grep -c '\"step\":12,\"loss\"' '$TMP/rb/metrics.jsonl') -eq 1 ] && grep -q 'done: 12 steps' '$TMP/rb.log'"
# lr=10 spikes on and on: after spike_rollbacks=2 rollbacks the run stops with an error.
"$TG" train "${ARGS[@]}" train.max_steps=40 train.lr=10 train.spike_sigma=2 train.spike_window=2 \
    train.spike_action=rollback train.spike_patience=2 train.spike_rollbacks=2 checkpoint.every=4 \
    run.out_dir="$TMP/rb2" >"$TMP/rb2.log" 2>&1; rc=$?
check "endless spikes: the run stops non-zero" bash -c "[ $rc -ne 0 ] && [ $rc -lt 128 ]"
check "... after 2 rollbacks, saying so" bash -c "[ \$(grep -c 'rolled back to step' '$TMP/rb2.log') -eq 2 ] && grep -q 'loss spikes again after 2 rollbacks (train.spike_rollbacks=2): stopping' '$TMP/rb2.log'"
# No checkpoint to roll back to: a clear error.
TRUTHGPT_SPIKE_STEP=7 "$TG" train "${ARGS[@]}" train.lr=1e-3 train.spike_sigma=1000 train.spike_window=3 \
    train.spike_action=rollback train.spike_patience=1 run.out_dir="$TMP/rb3" >"$TMP/rb3.log" 2>&1; rc=$?
check "rollback without a checkpoint: a clear error" bash -c "[ $rc -ne 0 ] && grep -q 'no checkpoint in .* to roll back to' '$TMP/rb3.log'"
TRUTHGPT_NAN_STEP=3 "$TG" train "${ARGS[@]}" train.lr=1e-3 train.nan_patience=1 run.out_dir="$TMP/nan" \
    >"$TMP/nan.log" 2>&1; rc=$?
check "nan_patience stops the run" bash -c "[ $rc -ne 0 ] && grep -q 'train.nan_patience=1' '$TMP/nan.log'"
check "... after saving a checkpoint" "$TG" ckpt info --no-config "$TMP/nan/checkpoints/step_00000003.h5"
set -e
finish
