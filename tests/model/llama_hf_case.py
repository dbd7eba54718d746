"""Writes one parity case for test_llama_hf: a random Hugging Face LlamaForCausalLM (built from a
LlamaConfig, nothing downloaded), its parameters in truthgpt's layout, tokens, and HF's fp32
logits and loss. Usage: llama_hf_case.py OUT NKV TIED SEED [llama3]

File (little endian): int32 magic 0x4c4c4d41, V, C, F, L, NH, NKV, T, B, tied; float64 rope_theta,
norm_eps; int32 inputs (B*T), targets (B*T); float32 parameters in truthgpt's order (model/llama.h,
vocab rows padded with zeros to a multiple of 128); float32 logits (B*T*V); float64 loss.
With llama3 (Llama 3's RoPE scaling, over T = 64 positions so that the scaled frequencies turn
far enough to matter) the magic is 0x4c4c4d42 and float64 factor, low_freq_factor,
high_freq_factor, int32 original_max_position_embeddings follow norm_eps."""
import struct
import sys

import torch
from transformers import LlamaConfig, LlamaForCausalLM

import transformers

out, nkv, tied, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
llama3 = len(sys.argv) > 5 and sys.argv[5] == "llama3"
V, C, F, L, NH, T, B = 200, 48, 72, 2, 6, 64 if llama3 else 9, 3
theta, eps = 500000.0, 1e-6
# head size 8: wavelengths 6.3 (kept), 167 (interpolated), 4443 and 1.2e5 (divided by the factor)
scaling = dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
               original_max_position_embeddings=256)
rope_kw = {}
if llama3:  # transformers 5 reads rope_parameters, 4 rope_scaling
    if int(transformers.__version__.split(".")[0]) >= 5:
        rope_kw = dict(rope_parameters=dict(scaling, rope_theta=theta))
    else:
        rope_kw = dict(rope_scaling=scaling)
Vp = (V + 127) // 128 * 128
torch.manual_seed(seed)
cfg = LlamaConfig(vocab_size=V, hidden_size=C, intermediate_size=F, num_hidden_layers=L,
                  num_attention_heads=NH, num_key_value_heads=nkv, max_position_embeddings=512 if llama3 else T,
                  rope_theta=theta, rms_norm_eps=eps, tie_word_embeddings=bool(tied),
                  attention_bias=False, mlp_bias=False, initializer_range=0.2,
                  attn_implementation="eager", **rope_kw)
model = LlamaForCausalLM(cfg).float().eval()
with torch.no_grad():  # non-trivial norm gains, so their use is checked too
    for name, p in model.named_parameters():
        if p.ndim == 1:
            p.add_(0.1 * torch.randn_like(p))
sd = model.state_dict()
names = ["model.embed_tokens.weight"]
for l in range(L):
    pre = f"model.layers.{l}."
    names += [pre + s for s in ("input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
                                "self_attn.v_proj.weight", "self_attn.o_proj.weight",
                                "post_attention_layernorm.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight",
                                "mlp.down_proj.weight")]
names.append("model.norm.weight")
if not tied:
    names.append("lm_head.weight")
inputs = torch.randint(0, V, (B, T))
targets = torch.randint(0, V, (B, T))
targets[1, 4] = -1
with torch.no_grad():
    logits = model(input_ids=inputs).logits.float()
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=-1)
with open(out, "wb") as f:
    f.write(struct.pack("<10i", 0x4C4C4D42 if llama3 else 0x4C4C4D41, V, C, F, L, NH, nkv, T, B, tied))
    f.write(struct.pack("<2d", theta, eps))
    if llama3:
        f.write(struct.pack("<3di", scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"],
                            scaling["original_max_position_embeddings"]))
    f.write(inputs.to(torch.int32).numpy().tobytes())
    f.write(targets.to(torch.int32).numpy().tobytes())
    for n in names:
        t = sd[n].float()
        if t.shape[0] == V and n in ("model.embed_tokens.weight", "lm_head.weight"):
            t = torch.cat([t, torch.zeros(Vp - V, C)])
        f.write(t.contiguous().numpy().tobytes())
    f.write(logits.contiguous().numpy().tobytes())
    f.write(struct.pack("<d", loss.item()))
print(f"{out}: n_kv_head={nkv} tied={tied}{' llama3 rope' if llama3 else ''} loss {loss.item():.6f}")
