"""Reference throughput of a GPT-2 training step in PyTorch, to compare with `truthgpt bench`
at the same shape on the same GPU (docs/performance.md).

A plain nanoGPT-style GPT-2 (pre-LayerNorm, GELU-tanh MLP, tied embeddings),
bf16 autocast, SDPA flash attention, fused AdamW, optionally torch.compile.
Random tokens: this measures speed only.

usage: python3 dev/torch_gpt2_bench.py [--compile 0|1] [--B 32] [--T 1024]
       [--layers 12] [--heads 12] [--dim 768] [--steps 40] [--vocab 50257]
Prints one JSON line with tokens/s, ms/step, peak memory and model FLOPs/token.
"""
import argparse, json, math, time
import torch
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--compile", type=int, default=1)
p.add_argument("--B", type=int, default=32)
p.add_argument("--T", type=int, default=1024)
p.add_argument("--layers", type=int, default=12)
p.add_argument("--heads", type=int, default=12)
p.add_argument("--dim", type=int, default=768)
p.add_argument("--vocab", type=int, default=50257)
p.add_argument("--pad_vocab", type=int, default=50304)
p.add_argument("--steps", type=int, default=40)
p.add_argument("--warmup", type=int, default=10)
a = p.parse_args()


class Block(nn.Module):
    def __init__(s, C, H):
        super().__init__()
        s.H = H
        s.ln1, s.ln2 = nn.LayerNorm(C), nn.LayerNorm(C)
        s.qkv, s.proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        s.fc, s.fc_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

    def forward(s, x):
        B, T, C = x.shape
        q, k, v = s.qkv(s.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, s.H, C // s.H).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + s.proj(y.transpose(1, 2).contiguous().view(B, T, C))
        return x + s.fc_proj(F.gelu(s.fc(s.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(s, V, T, L, H, C):
        super().__init__()
        s.wte, s.wpe = nn.Embedding(V, C), nn.Embedding(T, C)
        s.blocks = nn.ModuleList(Block(C, H) for _ in range(L))
        s.lnf = nn.LayerNorm(C)
        s.head = nn.Linear(C, V, bias=False)
        s.head.weight = s.wte.weight

    def forward(s, idx, tgt):
        x = s.wte(idx) + s.wpe(torch.arange(idx.shape[1], device=idx.device))
        for b in s.blocks:
            x = b(x)
        logits = s.head(s.lnf(x)).float()
        return F.cross_entropy(logits.view(-1, logits.size(-1)), tgt.view(-1))


torch.backends.cuda.matmul.allow_tf32 = True
torch.backends.cudnn.allow_tf32 = True
dev = "cuda"
V = a.pad_vocab or a.vocab
model = GPT(V, a.T, a.layers, a.heads, a.dim).to(dev)
nparams = sum(p.numel() for p in model.parameters())
opt = torch.optim.AdamW(model.parameters(), lr=6e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
step_model = torch.compile(model) if a.compile else model
g = torch.Generator(device=dev).manual_seed(0)
x = torch.randint(0, a.vocab, (a.B, a.T + 1), device=dev, generator=g)
inp, tgt = x[:, :-1].contiguous(), x[:, 1:].contiguous()

t_compile = time.time()
times = []
for i in range(a.warmup + a.steps):
    torch.cuda.synchronize()
    t0 = time.time()
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
        loss = step_model(inp, tgt)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    if i == 0:
        t_compile = time.time() - t_compile
    if i >= a.warmup:
        times.append(time.time() - t0)

dt = sorted(times)[len(times) // 2]
tok = a.B * a.T
L, H, C, T = a.layers, a.heads, a.dim, a.T
# FLOPs per token: 6 * params (embeddings counted once, tied) + causal-free attention 12*L*C*T (PaLM convention)
flops_tok = 6 * nparams + 12 * L * C * T
print(json.dumps({
    "impl": "pytorch-" + ("compile" if a.compile else "eager"),
    "torch": torch.__version__, "gpu": torch.cuda.get_device_name(),
    "B": a.B, "T": a.T, "params": nparams, "first_step_s": round(t_compile, 1),
    "ms_per_step_median": round(dt * 1e3, 2), "tokens_per_s": round(tok / dt),
    "tflops": round(flops_tok * tok / dt / 1e12, 1),
    "peak_mem_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2),
    "loss": round(loss.item(), 4),
}))
