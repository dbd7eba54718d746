"""tests/interop/hf_e2e.py TRUTHGPT LOGITS_DRIVER SRC TMP — truthgpt <-> transformers, offline.

(b) a random GPT2LMHeadModel (vocab 300: padded to 384 in truthgpt) saved whole and sharded ->
    `truthgpt import` -> truthgpt's loss and logits equal HF's (rel <= 1e-5); HF's
    labels=input_ids loss counts one target fewer per row, as the driver does.
(c) import -> export -> import is bitwise; the exported tensors equal HF's own; bf16 export loads.
(a) a trained tiny run -> `truthgpt export` -> AutoModelForCausalLM: logits equal (rel <= 1e-5)
    and 20 greedy tokens identical."""
import json
import os
import shutil
import subprocess
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
import numpy as np
import torch
from safetensors.numpy import load_file
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

TG, DRV, SRC, TMP = sys.argv[1:5]
shutil.rmtree(TMP, ignore_errors=True)  # runs resume from what they find: start clean
os.makedirs(TMP)
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


def tg_logits(ckpt, toks):
    path = os.path.join(TMP, "tokens.txt")
    with open(path, "w") as f:
        f.write(f"{toks.shape[0]} {toks.shape[1]}\n" + " ".join(map(str, toks.flatten())) + "\n")
    out = os.path.join(TMP, "logits.bin")
    assert run(DRV, ckpt, path, out).returncode == 0
    a = np.fromfile(out, dtype=np.float32)
    return float(a[0]), a[1:].reshape(toks.shape[0], toks.shape[1], -1)


def rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def hf_logits(model, toks):
    with torch.no_grad():
        out = model(torch.tensor(toks, dtype=torch.long), labels=torch.tensor(toks, dtype=torch.long))
    return float(out.loss), out.logits.numpy()


# ---- (b) random HF model -> import ----
torch.manual_seed(0)
cfg = GPT2Config(vocab_size=300, n_positions=64, n_embd=32, n_layer=2, n_head=4, bos_token_id=299,
                 eos_token_id=299)
hf = GPT2LMHeadModel(cfg).eval()
with torch.no_grad():  # non-trivial LayerNorms and biases, so a transposed or swapped tensor shows
    for n, p in hf.named_parameters():
        if p.dim() == 1:
            p.add_(0.1 * torch.randn_like(p))
hf.save_pretrained(f"{TMP}/hf_whole")
hf.save_pretrained(f"{TMP}/hf_sharded", max_shard_size="20KB")
check("sharded save has an index", os.path.exists(f"{TMP}/hf_sharded/model.safetensors.index.json"))
rng = np.random.default_rng(1)
toks = rng.integers(0, 300, size=(3, 40))
hl, hlog = hf_logits(hf, toks)
for kind in ["whole", "sharded"]:
    ck = f"{TMP}/imp_{kind}.h5"
    check(f"import {kind}", run(TG, "import", f"{TMP}/hf_{kind}", "--out", ck).returncode == 0)
    tl, tlog = tg_logits(ck, toks)
    check(f"{kind}: logits equal HF's (rel <= 1e-5)", rel(tlog, hlog) <= 1e-5, f"rel {rel(tlog, hlog):.2e}")
    check(f"{kind}: loss equals HF's (rel <= 1e-5)", abs(tl - hl) <= 1e-5 * abs(hl), f"{tl} vs {hl}")
check("whole and sharded imports are bitwise equal",
      open(f"{TMP}/imp_whole.h5", "rb").read() == open(f"{TMP}/imp_sharded.h5", "rb").read())

# ---- (c) round trip ----
ck = f"{TMP}/imp_whole.h5"
check("export", run(TG, "export", ck, "--out", f"{TMP}/ex").returncode == 0)
check("re-import", run(TG, "import", f"{TMP}/ex", "--out", f"{TMP}/rt.h5").returncode == 0)
check("export -> import round trip bitwise", open(ck, "rb").read() == open(f"{TMP}/rt.h5", "rb").read())
mine = load_file(f"{TMP}/ex/model.safetensors")
theirs = {k: v.numpy() for k, v in hf.state_dict().items() if k in mine}
check("exported tensors equal HF's bitwise",
      len(theirs) == len(mine) and all(np.array_equal(mine[k], theirs[k]) for k in mine), f"{len(mine)} tensors")
check("no lm_head.weight stored (tied)", "lm_head.weight" not in mine)
check("wte cut to the real vocabulary", mine["transformer.wte.weight"].shape == (300, 32))
check("bf16 export", run(TG, "export", ck, "--out", f"{TMP}/ex16", "--dtype", "bf16").returncode == 0)
m16 = AutoModelForCausalLM.from_pretrained(f"{TMP}/ex16", torch_dtype=torch.float32).eval()
_, l16 = hf_logits(m16, toks)
check("bf16 export loads, logits close", rel(l16, hlog) < 0.05, f"rel {rel(l16, hlog):.2e}")
r = run(TG, "import", f"{TMP}/ex16", "--out", f"{TMP}/imp16.h5")
check("bf16 import", r.returncode == 0)

# ---- (a) trained tiny run -> export -> transformers ----
out = f"{TMP}/run"
r = run(TG, "train", f"{SRC}/configs/tiny.ini", f"run.out_dir={out}", "train.max_steps=60", "train.eval_every=0",
        "checkpoint.every=60", "train.device=cpu")
check("tiny training", r.returncode == 0)
ck = f"{out}/checkpoints/step_00000060.h5"
check("export trained", run(TG, "export", ck, "--out", f"{TMP}/ex_tiny").returncode == 0)
m = AutoModelForCausalLM.from_pretrained(f"{TMP}/ex_tiny").eval()
check("transformers loads the export as GPT2LMHeadModel", type(m).__name__ == "GPT2LMHeadModel")
V = m.config.vocab_size
toks = rng.integers(0, V, size=(2, 64))
hl, hlog = hf_logits(m, toks)
tl, tlog = tg_logits(ck, toks)
check("trained: logits equal (rel <= 1e-5)", rel(tlog, hlog) <= 1e-5, f"rel {rel(tlog, hlog):.2e}")
check("trained: loss equal (rel <= 1e-5)", abs(tl - hl) <= 1e-5 * abs(hl), f"{tl} vs {hl}")
prompt = [int(x) for x in toks[0, :8]]
with torch.no_grad():
    g = m.generate(torch.tensor([prompt]), max_new_tokens=20, do_sample=False, pad_token_id=V - 1,
                   eos_token_id=None)[0, 8:].tolist()
r = run(DRV, ck, "--greedy", 20, *prompt)
mine = [int(x) for x in r.stdout.split()]
check("greedy 20 tokens identical", mine == g, f"{len(set(g))} distinct: {g}")
check("greedy tokens are diverse (>= 3 distinct)", len(set(g)) >= 3)

# ---- (a) tokenizer: tokenizer.json from a trained rank file, ids equal on mixed-script text ----
import base64
import tiktoken
from transformers import AutoTokenizer
mixed = "Hello wörld, привет мир! 你好世界 — the quick brown fox's 123 jumps;\n\n  naïve café 🙂 ŝ\t done. "
with open(f"{TMP}/mixed.txt", "w") as f:
    f.write(mixed * 300)
check("tokenizer train", run(TG, "tokenizer", "train", "--vocab-size", "500", "--out", f"{TMP}/tok500.tiktoken",
                             f"{TMP}/mixed.txt").returncode == 0)
check("export with tokenizer", run(TG, "export", ck, "--out", f"{TMP}/ex_tiny", "--tokenizer",
                                   f"{TMP}/tok500.tiktoken").returncode == 0)
ranks = {}
for line in open(f"{TMP}/tok500.tiktoken", "rb"):
    b, r = line.split()
    ranks[base64.b64decode(b)] = int(r)
# truthgpt's tokenizer equals tiktoken on the same rank file (tests/data/compare_tiktoken.py)
enc = tiktoken.Encoding("t", pat_str=r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
                        mergeable_ranks=ranks, special_tokens={"<|endoftext|>": len(ranks)})
hft = AutoTokenizer.from_pretrained(f"{TMP}/ex_tiny")
texts = [mixed, "Привет, wörld! 世界 fox jumps 1234567 ; naïve", "  x  \n\n y'll 🙂🙂 abc déjà vu"]
def tg_encode(text):
    r = subprocess.run([TG, "tokenizer", "encode", f"{TMP}/tok500.tiktoken"], input=text.encode(), capture_output=True)
    return [int(x) for x in r.stdout.split()]


ids_ok = all(tg_encode(t) == hft.encode(t) == enc.encode(t) for t in texts)
check("tokenizer.json ids equal truthgpt's (and tiktoken's) on mixed-script text", ids_ok,
      f"{len(enc.encode(mixed))} ids for {len(mixed.encode())} bytes")
check("merges are exercised (ids < bytes)", len(enc.encode(mixed)) < len(mixed.encode()) // 2)
check("decode round trip", hft.decode(hft.encode(texts[1])) == texts[1])
check("eos is <|endoftext|> = N", hft.eos_token == "<|endoftext|>" and hft.eos_token_id == len(ranks)
      and AutoModelForCausalLM.from_pretrained(f"{TMP}/ex_tiny").config.eos_token_id == len(ranks))

# tokenizer import: tokenizer.json, and GPT-2's vocab.json + merges.txt layout, back to the same ranks
r = run(TG, "tokenizer", "import", "--tokenizer-json", f"{TMP}/ex_tiny/tokenizer.json", "--out", f"{TMP}/back.tiktoken")
check("tokenizer import (tokenizer.json) gives the rank file back byte for byte", r.returncode == 0 and
      open(f"{TMP}/back.tiktoken", "rb").read() == open(f"{TMP}/tok500.tiktoken", "rb").read())
tj = json.load(open(f"{TMP}/ex_tiny/tokenizer.json"))
vocab = dict(tj["model"]["vocab"])
vocab["<|endoftext|>"] = len(vocab)  # as GPT-2's vocab.json has it
json.dump(vocab, open(f"{TMP}/vocab.json", "w"))
with open(f"{TMP}/merges.txt", "w") as f:
    f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in tj["model"]["merges"]))
r = run(TG, "tokenizer", "import", "--vocab", f"{TMP}/vocab.json", "--merges", f"{TMP}/merges.txt", "--out",
        f"{TMP}/back2.tiktoken")
check("tokenizer import (vocab.json + merges.txt) gives the same ranks", r.returncode == 0 and
      open(f"{TMP}/back2.tiktoken", "rb").read() == open(f"{TMP}/tok500.tiktoken", "rb").read())
with open(f"{TMP}/merges_bad.txt", "w") as f:
    f.write("#version: 0.2\nzz qq\n")
r = run(TG, "tokenizer", "import", "--vocab", f"{TMP}/vocab.json", "--merges", f"{TMP}/merges_bad.txt", "--out",
        f"{TMP}/bad.tiktoken")
check("a merge of unknown tokens is refused with its line", r.returncode == 1 and "merges_bad.txt:2" in r.stderr,
      r.stderr.strip())

# ---- init_from: a new run from the HF directory ----
base = [TG, "train", f"{SRC}/configs/tiny.ini", "model.n_layer=2", "model.n_head=4", "model.n_embd=32",
        "model.seq_len=64", "model.vocab_size=300", "train.device=cpu", "train.eval_every=0", "train.log_every=1"]
r = run(*base, f"run.out_dir={TMP}/init0", f"train.init_from={TMP}/hf_sharded", "train.max_steps=1", "train.lr=0",
        "train.min_lr=0", "checkpoint.every=1")
check("init_from (HF dir, lr 0) runs", r.returncode == 0)
check("init_from logged", "init_from" in r.stdout + r.stderr)
run(TG, "export", f"{TMP}/init0/checkpoints/step_00000001.h5", "--out", f"{TMP}/ex_init0")
got = load_file(f"{TMP}/ex_init0/model.safetensors")
check("init_from loads HF's weights exactly (lr 0 step)",
      all(np.array_equal(got[k], hf.state_dict()[k].numpy()) for k in got))
r = run(*base, f"run.out_dir={TMP}/init1", f"train.init_from={TMP}/imp_whole.h5", "train.max_steps=30",
        "train.lr=3e-3", "train.warmup_steps=2", "checkpoint.every=30")
check("init_from (checkpoint) fine-tunes", r.returncode == 0)
losses = [json.loads(l)["loss"] for l in open(f"{TMP}/init1/metrics.jsonl") if '"loss"' in l]
check("fine-tune loss falls", len(losses) == 30 and losses[-1] < losses[0] - 0.2, f"{losses[0]:.3f} -> {losses[-1]:.3f}")
check("fine-tune starts at step 1", json.loads(open(f"{TMP}/init1/metrics.jsonl").readline())["step"] == 1)
r = run(*base, f"run.out_dir={TMP}/init1", f"train.init_from={TMP}/imp_whole.h5", "train.max_steps=31")
check("resume wins over init_from, said in the log", r.returncode == 0 and "resume wins" in r.stdout + r.stderr)
r = subprocess.run([TG, *base[1:], "model.n_embd=64", f"run.out_dir={TMP}/init2", f"train.init_from={TMP}/hf_whole"],
                   capture_output=True, text=True)
check("shape mismatch refused by name", r.returncode != 0 and "model.n_embd 32 (config: 64)" in r.stderr, r.stderr.strip()[-200:])

# ---- data.tokenizer with train.sample_every=0 (was a division by zero) ----
with open(f"{TMP}/corpus.txt", "w") as f:
    f.write("the quick brown fox jumps over the lazy dog. " * 200)
run(TG, "tokenizer", "train", "--vocab-size", "280", "--out", f"{TMP}/tok.tiktoken", f"{TMP}/corpus.txt")
r = run(*base, f"run.out_dir={TMP}/tok0", f"data.tokenizer={TMP}/tok.tiktoken", "train.sample_every=0",
        "train.max_steps=2", "checkpoint.every=0")
check("data.tokenizer with sample_every=0 trains", r.returncode == 0, f"rc {r.returncode}")

print(f"{'FAILED' if failed else 'passed'}: {failed} failures")
sys.exit(1 if failed else 0)
