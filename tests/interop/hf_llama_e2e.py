"""tests/interop/hf_llama_e2e.py TRUTHGPT LOGITS_DRIVER SRC TMP — Llama: truthgpt <-> transformers, offline.

For random LlamaForCausalLMs built from a LlamaConfig (nothing downloaded): grouped-query attention
untied (saved whole and sharded), grouped-query tied, multi-query tied, and grouped-query tied with
Llama 3's RoPE scaling (rope_type llama3):
  - `truthgpt import` -> truthgpt's logits and loss equal HF's (fp32, rel <= 1e-5);
  - `truthgpt export` -> transformers loads a LlamaForCausalLM whose loss and logits equal the
    original's, the tensors equal HF's bitwise, and export -> import is a bitwise round trip.
Then: config keys truthgpt does not implement are refused by name, train.init_from takes a HF
Llama directory exactly, and a trained llama run exported gives HF's greedy tokens."""
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
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

TG, DRV, SRC, TMP = sys.argv[1:5]
shutil.rmtree(TMP, ignore_errors=True)
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
        t = torch.tensor(toks, dtype=torch.long)
        out = model(t, labels=t)
    return float(out.loss), out.logits.float().numpy()


def same_file(a, b):
    return open(a, "rb").read() == open(b, "rb").read()


V, C, F, L, NH, MAXPOS = 300, 48, 72, 2, 6, 64
rng = np.random.default_rng(1)
toks = rng.integers(0, V, size=(3, 40))


# head size 8, original context 16: wavelengths 6.3 (interpolated), 167, 4443, 1.2e5 (divided by the factor)
LLAMA3 = dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
              original_max_position_embeddings=16)


def make(nkv, tied, seed, llama3=False):
    torch.manual_seed(seed)
    rope = dict(rope_parameters=dict(LLAMA3, rope_theta=500000.0)) if llama3 else {}
    cfg = LlamaConfig(vocab_size=V, hidden_size=C, intermediate_size=F, num_hidden_layers=L, num_attention_heads=NH,
                      num_key_value_heads=nkv, max_position_embeddings=MAXPOS, rope_theta=500000.0, rms_norm_eps=1e-6,
                      tie_word_embeddings=tied, initializer_range=0.2, bos_token_id=V - 1, eos_token_id=V - 1,
                      attn_implementation="eager", **rope)
    m = LlamaForCausalLM(cfg).float().eval()
    with torch.no_grad():  # non-trivial norm gains, so a swapped or misplaced norm shows
        for n, p in m.named_parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    return m


cases = [("gqa_untied", 2, False, False), ("gqa_tied", 3, True, False), ("mqa_tied", 1, True, False),
         ("gqa_tied_llama3", 2, True, True)]
for name, nkv, tied, llama3 in cases:
    hf = make(nkv, tied, seed=len(name) + nkv, llama3=llama3)
    d = f"{TMP}/{name}"
    hf.save_pretrained(d)
    hl, hlog = hf_logits(hf, toks)
    ck = f"{TMP}/{name}.h5"
    r = run(TG, "import", d, "--out", ck)
    check(f"{name}: import", r.returncode == 0 and "llama" in r.stdout, r.stdout.strip())
    tl, tlog = tg_logits(ck, toks)
    check(f"{name}: logits equal HF's (rel <= 1e-5)", rel(tlog, hlog) <= 1e-5, f"rel {rel(tlog, hlog):.2e}")
    check(f"{name}: loss equals HF's (rel <= 1e-5)", abs(tl - hl) <= 1e-5 * abs(hl), f"{tl} vs {hl}")
    ex = f"{TMP}/{name}_ex"
    check(f"{name}: export", run(TG, "export", ck, "--out", ex).returncode == 0)
    check(f"{name}: re-import", run(TG, "import", ex, "--out", f"{TMP}/{name}_rt.h5").returncode == 0)
    check(f"{name}: export -> import round trip bitwise", same_file(ck, f"{TMP}/{name}_rt.h5"))
    mine = load_file(f"{ex}/model.safetensors")
    sd = hf.state_dict()
    theirs = {k: v.numpy() for k, v in sd.items() if k in mine}
    check(f"{name}: exported tensors equal HF's bitwise",
          len(theirs) == len(mine) and all(np.array_equal(mine[k], theirs[k]) for k in mine), f"{len(mine)} tensors")
    check(f"{name}: lm_head.weight stored only when untied", ("lm_head.weight" in mine) == (not tied))
    check(f"{name}: k_proj has n_kv_head heads", mine["model.layers.0.self_attn.k_proj.weight"].shape == (nkv * C // NH, C))
    m2 = AutoModelForCausalLM.from_pretrained(ex, attn_implementation="eager").eval()
    check(f"{name}: transformers loads the export as LlamaForCausalLM", type(m2).__name__ == "LlamaForCausalLM"
          and m2.config.num_key_value_heads == nkv and m2.config.tie_word_embeddings == tied)
    if llama3:  # transformers 4.x's layout (rope_scaling + rope_theta) imports the same
        c4 = json.load(open(f"{ex}/config.json"))
        check(f"{name}: the export also writes rope_scaling (transformers 4.x)",
              c4.get("rope_scaling", {}).get("rope_type") == "llama3" and c4.get("rope_theta") == 500000.0)
        shutil.copytree(ex, f"{ex}_v4")
        del c4["rope_parameters"]
        json.dump(c4, open(f"{ex}_v4/config.json", "w"))
        check(f"{name}: rope_scaling alone imports the same, bitwise",
              run(TG, "import", f"{ex}_v4", "--out", f"{ex}_v4.h5").returncode == 0 and same_file(ck, f"{ex}_v4.h5"))
        prompt = [int(x) for x in toks[0, :8]]  # greedy through the KV cache, scaled RoPE, GQA
        with torch.no_grad():
            g = hf.generate(torch.tensor([prompt]), max_new_tokens=24, do_sample=False, pad_token_id=V - 1,
                            eos_token_id=None)[0, 8:].tolist()
        mine = [int(x) for x in run(DRV, ck, "--greedy-cache", 24, *prompt).stdout.split()]
        check(f"{name}: 24 greedy tokens with the KV cache identical to transformers' generate",
              mine == g and len(set(g)) >= 3, f"{len(set(g))} distinct: {g}")
        rp = m2.config.rope_parameters
        check(f"{name}: the export says rope_type llama3 with its parameters", rp.get("rope_type") == "llama3" and
              all(rp.get(k) == v for k, v in LLAMA3.items()), str(rp))
    l2, log2 = hf_logits(m2, toks)
    check(f"{name}: the export's loss equals the original's (rel <= 1e-5)", abs(l2 - hl) <= 1e-5 * abs(hl),
          f"{l2} vs {hl}")
    check(f"{name}: the export's logits equal the original's", rel(log2, hlog) <= 1e-5, f"rel {rel(log2, hlog):.2e}")
    if name == "gqa_untied":
        hf.save_pretrained(f"{TMP}/sharded", max_shard_size="40KB")
        check("sharded save has an index", os.path.exists(f"{TMP}/sharded/model.safetensors.index.json"))
        check("import sharded", run(TG, "import", f"{TMP}/sharded", "--out", f"{TMP}/sharded.h5").returncode == 0)
        check("whole and sharded imports are bitwise equal", same_file(ck, f"{TMP}/sharded.h5"))
        check("bf16 export", run(TG, "export", ck, "--out", f"{TMP}/ex16", "--dtype", "bf16").returncode == 0)
        m16 = AutoModelForCausalLM.from_pretrained(f"{TMP}/ex16", torch_dtype=torch.float32,
                                                   attn_implementation="eager").eval()
        _, l16 = hf_logits(m16, toks)
        check("bf16 export loads, logits close", rel(l16, hlog) < 0.05, f"rel {rel(l16, hlog):.2e}")
        base_dir = d

# ---- what truthgpt does not implement is refused by key ----
def refused(label, edit, expect):
    d = f"{TMP}/bad_{label}"
    shutil.copytree(base_dir, d)
    cfg = json.load(open(f"{d}/config.json"))
    edit(cfg)
    json.dump(cfg, open(f"{d}/config.json", "w"))
    r = subprocess.run([TG, "import", d, "--out", f"{d}.h5"], capture_output=True, text=True)
    check(f"refused: {label}", r.returncode == 1 and expect in r.stderr and not os.path.exists(f"{d}.h5"),
          r.stderr.strip())


refused("rope_parameters yarn (transformers 5)", lambda c: c.update(rope_parameters={"rope_type": "yarn",
        "factor": 4.0, "rope_theta": 5e5}), "rope_parameters type 'yarn' is not supported")
refused("rope_scaling linear (transformers 4)", lambda c: (c.pop("rope_parameters", None),
        c.update(rope_scaling={"type": "linear", "factor": 2.0})), "rope_scaling type 'linear' is not supported")
refused("llama3 without its factor", lambda c: c.update(rope_parameters={"rope_type": "llama3", "rope_theta": 5e5,
        "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 16}),
        "rope_parameters (llama3) needs a number \"factor\"")
refused("hidden_act", lambda c: c.update(hidden_act="gelu"), "hidden_act must be silu")
refused("attention_bias", lambda c: c.update(attention_bias=True), "attention_bias must be false")
refused("head_dim", lambda c: c.update(head_dim=16), "head_dim must be hidden_size / num_attention_heads")
refused("n_head % n_kv_head", lambda c: c.update(num_key_value_heads=4), "n_kv_head")
refused("mistral", lambda c: c.update(model_type="mistral"), "model_type 'mistral' (supported: gpt2, llama)")


refused("tied with a different lm_head", lambda c: c.update(tie_word_embeddings=True),
        "lm_head.weight differs from model.embed_tokens.weight")  # the untied file's own lm_head

# ---- train.init_from a HF Llama directory ----
base = [TG, "train", f"{SRC}/configs/llama-tiny.ini", f"model.n_layer={L}", f"model.n_head={NH}", "model.n_kv_head=2",
        f"model.n_embd={C}", f"model.ffn_dim={F}", "model.tie_embeddings=0", "model.rope_theta=500000",
        "model.norm_eps=1e-6", f"model.seq_len={MAXPOS}", f"model.vocab_size={V}", "train.eval_every=0",
        "train.log_every=1", "train.micro_batch=2", "train.total_batch_tokens=128"]
r = run(*base, f"run.out_dir={TMP}/init0", f"train.init_from={base_dir}", "train.max_steps=1", "train.lr=0",
        "train.min_lr=0", "train.weight_decay=0", "checkpoint.every=1")
check("init_from (HF Llama dir, lr 0) runs", r.returncode == 0)
run(TG, "export", f"{TMP}/init0/checkpoints/step_00000001.h5", "--out", f"{TMP}/ex_init0")
got = load_file(f"{TMP}/ex_init0/model.safetensors")
ref = load_file(f"{base_dir}/model.safetensors")
check("init_from loads HF's weights exactly (lr 0 step)",
      set(got) == set(ref) and all(np.array_equal(got[k], ref[k]) for k in got), f"{len(got)} tensors")
r = run(*base, "model.seq_len=32", "train.total_batch_tokens=64", f"run.out_dir={TMP}/init_t32",
        f"train.init_from={base_dir}", "train.max_steps=1", "train.lr=0", "train.min_lr=0", "train.weight_decay=0",
        "checkpoint.every=1")
run(TG, "export", f"{TMP}/init_t32/checkpoints/step_00000001.h5", "--out", f"{TMP}/ex_init_t32")
got = load_file(f"{TMP}/ex_init_t32/model.safetensors") if r.returncode == 0 else {}
check("init_from at another seq_len (RoPE has no position table) takes the same weights",
      set(got) == set(ref) and all(np.array_equal(got[k], ref[k]) for k in got))
r = subprocess.run([*base, "model.n_kv_head=3", f"run.out_dir={TMP}/init1", f"train.init_from={base_dir}"],
                   capture_output=True, text=True)
check("init_from with another n_kv_head is refused by name", r.returncode != 0 and "model.n_kv_head 2 (config: 3)"
      in r.stderr, r.stderr.strip()[-200:])

# ---- a trained llama run -> export -> transformers: logits and greedy tokens ----
out = f"{TMP}/run"
r = run(TG, "train", f"{SRC}/configs/llama-tiny.ini", f"run.out_dir={out}", "train.max_steps=30", "train.eval_every=0",
        "checkpoint.every=30")
check("llama-tiny training", r.returncode == 0)
ck = f"{out}/checkpoints/step_00000030.h5"
check("export trained", run(TG, "export", ck, "--out", f"{TMP}/ex_tiny").returncode == 0)
m = AutoModelForCausalLM.from_pretrained(f"{TMP}/ex_tiny", attn_implementation="eager").eval()
Vt = m.config.vocab_size
t2 = rng.integers(0, Vt, size=(2, 64))
hl, hlog = hf_logits(m, t2)
tl, tlog = tg_logits(ck, t2)
check("trained: logits equal (rel <= 1e-5)", rel(tlog, hlog) <= 1e-5, f"rel {rel(tlog, hlog):.2e}")
check("trained: loss equal (rel <= 1e-5)", abs(tl - hl) <= 1e-5 * abs(hl), f"{tl} vs {hl}")
prompt = [int(x) for x in t2[0, :8]]
with torch.no_grad():
    g = m.generate(torch.tensor([prompt]), max_new_tokens=20, do_sample=False, pad_token_id=Vt - 1,
                   eos_token_id=None)[0, 8:].tolist()
r = run(DRV, ck, "--greedy", 20, *prompt)
mine = [int(x) for x in r.stdout.split()]
check("greedy 20 tokens identical to transformers' generate", mine == g, f"{len(set(g))} distinct: {g}")
check("greedy tokens are diverse (>= 3 distinct)", len(set(g)) >= 3)
r = run(DRV, ck, "--greedy-cache", 20, *prompt)
mine = [int(x) for x in r.stdout.split()]
check("greedy with truthgpt's KV cache identical to transformers' generate", mine == g, str(mine))

print(f"{'FAILED' if failed else 'passed'}: {failed} failures")
sys.exit(1 if failed else 0)
