# TensorBoard events: a run writes <out_dir>/tb/ events that tensorboard's own reader (EventAccumulator,
# CRC-checked) reads back equal to metrics.jsonl (train loss, lr, grad norm, tokens/s, TFLOP/s, val loss,
# samples); after a resume from an earlier checkpoint every step appears once, in order.
source "$(dirname "$0")/lib.sh"
cd "$SRC"
PY=${TG_PYTHON:-$(scripts/test-venv.sh)}
printf 'the cat sat on the mat. the dog sat on the log.\n' >"$TMP/corpus.txt"
"$TG" tokenizer train --vocab-size 300 --out "$TMP/tok.tiktoken" "$TMP/corpus.txt" >/dev/null 2>&1
ARGS=(configs/tiny.ini model.n_layer=1 model.n_embd=32 model.n_head=2 model.seq_len=16 train.micro_batch=2
      train.total_batch_tokens=32 train.max_steps=12 train.warmup_steps=2 train.eval_every=4 train.eval_batches=1
      data.tokenizer="$TMP/tok.tiktoken" train.sample_every=6 train.sample_tokens=4 checkpoint.every=4
      checkpoint.keep=5 run.out_dir="$TMP/run")
"$TG" train "${ARGS[@]}" >"$TMP/a.log" 2>&1 || { cat "$TMP/a.log"; exit 1; }
READ='
import json, sys, glob
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
run, first = sys.argv[1], int(sys.argv[2])
files = glob.glob(run + "/tb/*tfevents*")
assert len(files) == 1, files
ea = EventAccumulator(run + "/tb", size_guidance={"scalars": 0, "tensors": 0})
ea.Reload()
recs = [json.loads(l) for l in open(run + "/metrics.jsonl")]
train = {r["step"]: r for r in recs if r.get("loss") is not None}
val = {r["step"]: r["val_loss"] for r in recs if "val_loss" in r}
def series(tag):
    ev = ea.Scalars(tag)
    steps = [e.step for e in ev]
    assert steps == sorted(set(steps)), (tag, steps)  # each step once, in order
    return {e.step: e.value for e in ev}
# float32 in the events; metrics.jsonl rounds lr to 6 digits, grad_norm to 1e-6, tokens/s to 0.1, TFLOP/s to 1e-4
def near(a, b, absol=0.0): return abs(a - b) <= 1e-6 * max(1.0, abs(b)) + absol
for tag, key, absol in [("train/loss", "loss", 0), ("train/lr", "lr", 0), ("train/grad_norm", "grad_norm", 5e-7),
                        ("perf/tokens_per_s", "tokens_per_s", 0.05), ("perf/tflops", "tflops", 5e-5)]:
    s = series(tag)
    assert sorted(s) == sorted(train) == list(range(1, 13)), (tag, sorted(s))
    bad = [(k, s[k], train[k][key]) for k in s if not near(s[k], train[k][key], absol)]
    assert not bad, (tag, bad)
v = series("val/loss")
assert sorted(v) == sorted(val) == [4, 8, 12] and all(near(v[k], val[k]) for k in v), (v, val)
texts = ea.Tensors("samples/text")
assert [t.step for t in texts] == [6, 12], [t.step for t in texts]
assert all(t.tensor_proto.string_val[0] for t in texts)
print("  %d scalar tags, steps 1-12 once each; samples at %s (run from step %d)"
      % (len(ea.Tags()["scalars"]), [t.step for t in texts], first))
'
check "events read back by tensorboard equal metrics.jsonl" "$PY" -c "$READ" "$TMP/run" 1
# Resume from step 4 (steps 5-12 were already logged): the old events past step 4 are dropped.
"$TG" train "${ARGS[@]}" train.resume="$TMP/run/checkpoints/step_00000004.h5" >"$TMP/b.log" 2>&1 \
    || { cat "$TMP/b.log"; exit 1; }
check "after a resume from step 4: no duplicate or backward steps, still equal" "$PY" -c "$READ" "$TMP/run" 4
finish
