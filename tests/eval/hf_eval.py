"""tests/eval/hf_eval.py TRUTHGPT SRC TMP — `truthgpt eval` against transformers, offline.

A random GPT-2 (non-trivial biases) -> `truthgpt import` -> `truthgpt export --tokenizer` ->
AutoModelForCausalLM + AutoTokenizer. On tests/data/hellaswag_mini.jsonl every ending's summed
log-likelihood from transformers (ctx tokens, then " " + ending, log_softmax at the ending's
positions) equals truthgpt's --per-item score (rel <= 1e-5), with the same token counts,
predictions and printed acc / acc_norm. Also: a malformed tasks file is an error naming its line."""
import json
import os
import shutil
import subprocess
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

TG, SRC, TMP = sys.argv[1:4]
shutil.rmtree(TMP, ignore_errors=True)
os.makedirs(TMP)
TASKS = f"{SRC}/tests/data/hellaswag_mini.jsonl"
failed = 0


def check(name, cond, detail=""):
    global failed
    print(("ok   " if cond else "FAIL ") + name + (f"  ({detail})" if detail else ""), flush=True)
    failed += 0 if cond else 1


def run(*args):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stdout, r.stderr)
    return r


items = [json.loads(l) for l in open(TASKS) if l.strip()]
with open(f"{TMP}/corpus.txt", "w") as f:  # a tokenizer with merges that these texts use
    for _ in range(20):
        for it in items:
            f.write(it["ctx"] + " " + " ".join(it["endings"]) + "\n")
check("tokenizer train", run(TG, "tokenizer", "train", "--vocab-size", "400", "--out", f"{TMP}/tok.tiktoken",
                             f"{TMP}/corpus.txt").returncode == 0)
torch.manual_seed(0)
cfg = GPT2Config(vocab_size=400, n_positions=128, n_embd=32, n_layer=2, n_head=4, bos_token_id=399, eos_token_id=399)
hf = GPT2LMHeadModel(cfg).eval()
with torch.no_grad():
    for n, p in hf.named_parameters():
        if p.dim() == 1:
            p.add_(0.1 * torch.randn_like(p))
        else:
            p.mul_(4.0)  # sharper distributions: endings score far apart
hf.save_pretrained(f"{TMP}/hf")
ck = f"{TMP}/model.h5"
check("import", run(TG, "import", f"{TMP}/hf", "--out", ck).returncode == 0)
check("export", run(TG, "export", ck, "--out", f"{TMP}/ex", "--tokenizer", f"{TMP}/tok.tiktoken").returncode == 0)
m = AutoModelForCausalLM.from_pretrained(f"{TMP}/ex").eval()
tok = AutoTokenizer.from_pretrained(f"{TMP}/ex")

r = run(TG, "eval", ck, "--tasks", TASKS, "--tokenizer", f"{TMP}/tok.tiktoken", "--per-item", f"{TMP}/per.jsonl")
check("truthgpt eval runs", r.returncode == 0)
print(r.stdout.strip())
mine = [json.loads(l) for l in open(f"{TMP}/per.jsonl")] if r.returncode == 0 else []
check("one line per item", len(mine) == len(items))

worst, counts_ok, preds_ok, acc, acc_norm = 0.0, True, True, 0, 0
for it, me in zip(items, mine):
    ctx = tok.encode(it["ctx"])
    sums, ns = [], []
    for e in it["endings"]:
        end = tok.encode(" " + e)
        ids = torch.tensor([ctx + end])
        with torch.no_grad():
            lp = torch.log_softmax(m(ids).logits[0].double(), dim=-1)
        sums.append(sum(float(lp[len(ctx) - 1 + j, t]) for j, t in enumerate(end)))
        ns.append(len(end))
    counts_ok &= ns == me["n_tokens"]
    for a, b in zip(me["logprob_sum"], sums):
        worst = max(worst, abs(a - b) / abs(b))
    pred = max(range(len(sums)), key=lambda k: sums[k])
    pred_norm = max(range(len(sums)), key=lambda k: sums[k] / ns[k])
    preds_ok &= pred == me["pred"] and pred_norm == me["pred_norm"]
    acc += pred == it["label"]
    acc_norm += pred_norm == it["label"]
check("ending token counts equal transformers' tokenizer's", counts_ok)
check("per-ending log-likelihoods equal transformers' (rel <= 1e-5)", mine and worst <= 1e-5, f"worst rel {worst:.2e}")
check("predictions equal", mine and preds_ok)
n = len(items)
want = f"items {n} | acc {acc / n:.4f} ({acc}) | acc_norm {acc_norm / n:.4f} ({acc_norm},"
check("printed acc and acc_norm equal transformers'", want in r.stdout, want)

with open(f"{TMP}/bad.jsonl", "w") as f:
    f.write(json.dumps(items[0]) + "\n\n" + json.dumps({**items[1], "label": 4}) + "\n")
r = run(TG, "eval", ck, "--tasks", f"{TMP}/bad.jsonl", "--tokenizer", f"{TMP}/tok.tiktoken")
check("a label outside the endings is an error naming the line", r.returncode == 1 and "bad.jsonl:3" in r.stderr,
      r.stderr.strip())
with open(f"{TMP}/bad2.jsonl", "w") as f:
    f.write('{"ctx": "x", "endings": ["a", "b"], "label": 0\n')
r = run(TG, "eval", ck, "--tasks", f"{TMP}/bad2.jsonl", "--tokenizer", f"{TMP}/tok.tiktoken")
check("a line that is not JSON is an error naming the line", r.returncode == 1 and "bad2.jsonl:1: not JSON" in r.stderr,
      r.stderr.strip())
# ---- train.eval_tasks: logged to metrics.jsonl and TensorBoard; the last value equals `truthgpt eval` ----
check("prepare", run(TG, "prepare", "--tokenizer", f"{TMP}/tok.tiktoken", "--out", f"{TMP}/shards",
                     f"{TMP}/corpus.txt").returncode == 0)
out = f"{TMP}/run"
r = run(TG, "train", f"{SRC}/configs/tiny.ini", f"run.out_dir={out}", f"data.train={TMP}/shards/train_*.h5",
        "data.val=", f"data.tokenizer={TMP}/tok.tiktoken", f"train.eval_tasks={TASKS}", "model.seq_len=128",
        "train.max_steps=8", "train.eval_every=4", "train.device=cpu", "checkpoint.every=8")
check("training with train.eval_tasks", r.returncode == 0)
recs = [json.loads(l) for l in open(f"{out}/metrics.jsonl") if "eval_acc" in l] if r.returncode == 0 else []
check("metrics.jsonl has eval_acc at steps 4 and 8", [x["step"] for x in recs] == [4, 8] and
      all(x["eval_items"] == n for x in recs), str(recs))
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
ea = EventAccumulator(f"{out}/tb")
ea.Reload()
tags = ea.Tags()["scalars"]
tb = {t: [(e.step, e.value) for e in ea.Scalars(t)] for t in ("eval/acc", "eval/acc_norm") if t in tags}
check("TensorBoard has eval/acc and eval/acc_norm equal to metrics.jsonl",
      recs and all(len(tb.get(t, [])) == len(recs) and
                   all(s == x["step"] and abs(v - x[k]) <= 1e-6 for (s, v), x in zip(tb[t], recs))
                   for t, k in (("eval/acc", "eval_acc"), ("eval/acc_norm", "eval_acc_norm"))), str(tb))
r = run(TG, "eval", f"{out}/checkpoints/step_00000008.h5", "--tasks", TASKS)  # the tokenizer recorded in it
last = recs[-1] if recs else {"eval_acc": -1, "eval_acc_norm": -1}
want = f"acc {last['eval_acc']:.4f} ({round(last['eval_acc'] * n)}) | acc_norm {last['eval_acc_norm']:.4f}"
check("the last training eval equals truthgpt eval on the checkpoint", r.returncode == 0 and want in r.stdout,
      f"{want} vs {r.stdout.strip()}")
print("FAILED" if failed else "PASSED", failed)
sys.exit(1 if failed else 0)
