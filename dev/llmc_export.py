"""Writes an llm.c (train_gpt2.c) checkpoint and token file for the paired CPU benchmark.

usage: llmc_export.py OUTDIR L NH C V MAXT NTOKENS
Checkpoint: 256 int32 header (magic 20240326, version 3, maxT, V, L, NH, C, Vp), then fp32 params
in llm.c's order (GPT-2 init: N(0, 0.02), projections scaled by 1/sqrt(2L), LayerNorm 1/0).
Tokens: 256 int32 header (magic 20240520, version 1, count), then uint16 tokens (seeded, < V)."""
import sys, os
import numpy as np

out, L, NH, C, V, maxT, ntok = sys.argv[1], *map(int, sys.argv[2:8])
Vp = (V + 63) // 64 * 64  # truthgpt's default padding; llm.c reads Vp from the header
rng = np.random.default_rng(1337)
hdr = np.zeros(256, np.int32)
hdr[:8] = [20240326, 3, maxT, V, L, NH, C, Vp]
n = lambda *s, std=0.02: (rng.standard_normal(s, dtype=np.float32) * std).ravel()
proj = 0.02 / np.sqrt(2 * L)
wte = n(Vp, C).reshape(Vp, C)
wte[V:] = 0.0
parts = [wte.ravel(), n(maxT, C), np.ones(L * C, np.float32), np.zeros(L * C, np.float32),
         n(L, 3 * C, C), np.zeros(L * 3 * C, np.float32), n(L, C, C, std=proj),
         np.zeros(L * C, np.float32), np.ones(L * C, np.float32), np.zeros(L * C, np.float32),
         n(L, 4 * C, C), np.zeros(L * 4 * C, np.float32), n(L, C, 4 * C, std=proj),
         np.zeros(L * C, np.float32), np.ones(C, np.float32), np.zeros(C, np.float32)]
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "model.bin"), "wb") as f:
    hdr.tofile(f)
    for p in parts:
        p.astype(np.float32).tofile(f)
th = np.zeros(256, np.int32)
th[:3] = [20240520, 1, ntok]
with open(os.path.join(out, "tokens.bin"), "wb") as f:
    th.tofile(f)
    rng.integers(0, V, ntok, dtype=np.uint16).tofile(f)
