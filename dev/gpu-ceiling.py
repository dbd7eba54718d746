#!/usr/bin/env python3
"""dev/gpu-ceiling.py — how fast could any GPT-2 training step be on this GPU with today's libraries?

Times, with PyTorch on the GPU machine (the gpu-check `ceiling` step), the pieces every GPT-2 step
is made of, each under sustained load so the card sits at the clock a real step runs at:
  gemm   every matrix product of one step at truthgpt's shapes (forward, dX, dW for the four
         block projections in every layer; the LM head in 8192-row chunks), cuBLAS via torch.mm,
         bf16 in and out, random data — the same work any implementation must do
  attn   12 layers of causal attention forward + backward with each of PyTorch's SDPA backends
         (cuDNN, flash, memory-efficient), q/k/v cut from one (B, T, 3, NH, HS) tensor
  copy   device-to-device copy bandwidth, the ceiling of every bandwidth-bound kernel
and the SM clock and board power (nvidia-smi, 100 ms samples) during each. The floor it prints is
gemm + the fastest attention + BYTES / copy bandwidth, where BYTES is the DRAM traffic of the
step's bandwidth-bound kernels (LayerNorm, cross-entropy, bias sums, AdamW, embeddings; 53.3 GB
by Nsight Compute on 2026-11-26). A floor above the goal's ms/step says the goal needs kernels
faster than cuBLAS/cuDNN or fewer FLOPs/bytes, not better plumbing.

usage: python3 dev/gpu-ceiling.py [--B 64] [--T 1024] [--layers 12] [--heads 12] [--dim 768]
       [--vocab 50304] [--rows 8192] [--rounds 4] [--bw-bytes 53.3e9] [--device cuda]
--device cpu with tiny shapes only checks that it runs.
"""
import argparse
import json
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--B", type=int, default=64)
p.add_argument("--T", type=int, default=1024)
p.add_argument("--layers", type=int, default=12)
p.add_argument("--heads", type=int, default=12)
p.add_argument("--dim", type=int, default=768)
p.add_argument("--vocab", type=int, default=50304)
p.add_argument("--rows", type=int, default=8192, help="LM-head chunk rows (truthgpt's default)")
p.add_argument("--rounds", type=int, default=4, help="timed rounds of each piece, after one warm-up")
p.add_argument("--bw-bytes", type=float, default=53.3e9,
               help="DRAM bytes of the step's bandwidth-bound kernels (ncu)")
p.add_argument("--copy-bytes", type=float, default=4e9, help="size of the copy test (read + write)")
p.add_argument("--device", default="cuda")
a = p.parse_args()
dev = torch.device(a.device)
cuda = dev.type == "cuda"
dt = torch.bfloat16
torch.manual_seed(0)
B, T, L, NH, C, V = a.B, a.T, a.layers, a.heads, a.dim, a.vocab
BT, HS = B * T, a.dim // a.heads


class Clocks:
    """nvidia-smi sampling SM clock and power in the background; mean over the samples under load."""

    def __init__(self):
        self.proc = None
        if cuda:
            try:
                self.proc = subprocess.Popen(
                    ["nvidia-smi", "--query-gpu=clocks.sm,power.draw", "--format=csv,noheader,nounits",
                     "-lms", "100"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            except OSError:
                self.proc = None

    def stop(self):
        if not self.proc:
            return ""
        self.proc.terminate()
        out, _ = self.proc.communicate()
        s = []
        for line in out.splitlines():
            try:
                c, w = (float(x) for x in line.split(","))
                s.append((w, c))
            except ValueError:
                pass
        if not s:
            return ""
        peak = max(w for w, _ in s)
        top = [x for x in s if x[0] >= 0.8 * peak]  # under load, as gpu-check.sh's clk_stop
        return "SM %4.0f MHz %4.0f W (%d samples)" % (sum(c for _, c in top) / len(top),
                                                     sum(w for w, _ in top) / len(top), len(s))


def timed(fn, rounds):
    """ms per call of fn: one warm-up call, then `rounds` calls timed together (events on the GPU)."""
    fn()
    if cuda:
        torch.cuda.synchronize()
        t0, t1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        t0.record()
        for _ in range(rounds):
            fn()
        t1.record()
        torch.cuda.synchronize()
        return t0.elapsed_time(t1) / rounds
    t = time.perf_counter()
    for _ in range(rounds):
        fn()
    return (time.perf_counter() - t) * 1e3 / rounds


def rnd(*shape):
    return (torch.randn(*shape, device=dev, dtype=torch.float32) * 0.5).to(dt)


# ---- gemm: the matrix products of one step (what truthgpt's cuBLASLt calls compute) ----------
# forward y = x @ W^T (x: M x K, W: N x K); dX = dy @ W; dW += dy^T @ x (accumulated, as truthgpt
# does for the LM head's chunks and for gradient accumulation).
class Linear:
    def __init__(self, M, N, K):
        self.x, self.w, self.y = rnd(M, K), rnd(N, K), torch.empty(M, N, device=dev, dtype=dt)
        self.dy, self.dx, self.dw = rnd(M, N), torch.empty(M, K, device=dev, dtype=dt), torch.zeros(N, K, device=dev, dtype=dt)
        self.M, self.N, self.K = M, N, K

    def fwd(self):
        torch.mm(self.x, self.w.t(), out=self.y)

    def bwd(self):
        torch.mm(self.dy, self.w, out=self.dx)
        self.dw.addmm_(self.dy.t(), self.x)


block = [Linear(BT, 3 * C, C), Linear(BT, C, C), Linear(BT, 4 * C, C), Linear(BT, C, 4 * C)]
rows = min(a.rows, BT)
head = Linear(rows, V, C)
chunks = BT // rows


def gemm_step():
    for _ in range(L):
        for m in block:
            m.fwd()
    for _ in range(chunks):
        head.fwd()
        head.bwd()
    for _ in range(L):
        for m in reversed(block):
            m.bwd()


gemm_flop = 3 * 2 * (L * sum(m.M * m.N * m.K for m in block) + chunks * head.M * head.N * head.K)
res = {}
clk = Clocks()
ms = timed(gemm_step, a.rounds)
res["gemm"] = ms
print("gemm   %9.2f ms/step  %7.1f TFLOP/s  (%d products a step)  %s"
      % (ms, gemm_flop / ms / 1e9, L * 12 + chunks * 3, clk.stop()), flush=True)
# the same products one kind at a time, to set beside truthgpt's per-phase profile
for name, fn, flop in [("  block fwd", lambda: [m.fwd() for m in block], 2 * sum(m.M * m.N * m.K for m in block)),
                       ("  block bwd", lambda: [m.bwd() for m in block], 4 * sum(m.M * m.N * m.K for m in block)),
                       ("  head f+b ", lambda: (head.fwd(), head.bwd()), 6 * head.M * head.N * head.K)]:
    ms = timed(fn, a.rounds * 3)
    print("%s %9.3f ms/call  %7.1f TFLOP/s" % (name, ms, flop / ms / 1e9), flush=True)
del block, head
if cuda:
    torch.cuda.empty_cache()

# ---- attention: 12 layers of causal SDPA forward + backward per backend ----------------------
# q, k, v are strided views of one (B, T, 3, NH, HS) tensor, as the qkv projection writes them;
# leaves of their own so that the backward's dq, dk, dv are returned, not accumulated or assembled.
qkv = rnd(B, T, 3, NH, HS)
q, k, v = (qkv[:, :, i].transpose(1, 2).detach().requires_grad_(True) for i in range(3))
do = rnd(B, NH, T, HS)
attn_flop = L * 4 * B * NH * T * T * HS / 2 * (1 + 2.5)  # causal: half the square; backward 2.5x


def attn_step():
    for _ in range(L):
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        torch.autograd.grad(o, (q, k, v), do)


backends = [("cudnn", "CUDNN_ATTENTION"), ("flash", "FLASH_ATTENTION"), ("efficient", "EFFICIENT_ATTENTION")]
if not cuda:
    backends = [("math", "MATH")]
best = None
try:
    from torch.nn.attention import SDPBackend, sdpa_kernel
except ImportError:  # older torch: whatever SDPA picks
    SDPBackend = sdpa_kernel = None
for name, enum in backends:
    clk = Clocks()
    try:
        if sdpa_kernel:
            with sdpa_kernel([getattr(SDPBackend, enum)]):
                ms = timed(attn_step, a.rounds)
        else:
            ms = timed(attn_step, a.rounds)
    except Exception as e:  # a backend this build or shape lacks
        clk.stop()
        print("attn %-9s not available: %s" % (name, str(e).splitlines()[0][:100]), flush=True)
        continue
    res["attn_" + name] = ms
    best = ms if best is None else min(best, ms)
    print("attn %-9s %7.2f ms/step  %7.1f TFLOP/s  %s" % (name, ms, attn_flop / ms / 1e9, clk.stop()), flush=True)
del qkv, q, k, v, do
if cuda:
    torch.cuda.empty_cache()

# ---- copy bandwidth --------------------------------------------------------------------------
n = int(a.copy_bytes / 2 / 2)  # bf16 elements per buffer: copy_bytes counts read + write
src, dst = rnd(n), torch.empty(n, device=dev, dtype=dt)
clk = Clocks()
ms = timed(lambda: dst.copy_(src), a.rounds * 5)
bw = 2 * n * 2 / ms / 1e9  # TB/s (bytes / ms / 1e9)
res["copy_tb_s"] = bw
print("copy   %9.3f ms for %.1f GB  %5.2f TB/s  %s" % (ms, 4 * n / 1e9, bw, clk.stop()), flush=True)

bw_ms = a.bw_bytes / bw / 1e9
floor = res["gemm"] + (best or 0.0) + bw_ms
res.update(bw_ms=bw_ms, floor_ms=floor, tokens=BT)
print("floor  %9.2f ms/step = gemm %.2f + attention %.2f (fastest backend) + %.1f GB at %.2f TB/s %.2f"
      % (floor, res["gemm"], best or 0.0, a.bw_bytes / 1e9, bw, bw_ms))
print("floor  %9.0f tokens/s" % (BT / floor * 1e3))
print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in res.items()}))
sys.stdout.flush()
