#!/usr/bin/env python3
"""Weak-scaling cost model for truthgpt's data parallelism (docs/scaling.md).

Predicts the step time and weak-scaling efficiency of GPT-2 124M and 1.5B, SmolLM-135M and Llama-1B
at ZeRO stages 0-3 on 8 GPUs joined by NVLink and on 64 GPUs (8 nodes of 8) joined by InfiniBand,
from (a) the compute time of one GPU's step, measured with `truthgpt bench` on a GPU or estimated
from FLOPs at a measured throughput, split over the layers by their FLOPs, (b) the exact bytes of
every collective, from the parameter layout truthgpt uses, and (c) alpha-beta costs of ring and
tree collectives (NCCL picks the cheaper; 64 GPUs go hierarchically: NVLink inside a node, one NIC
per GPU between nodes).

Usage:
  scripts/scaling-model.py                      # print the tables of docs/scaling.md
  scripts/scaling-model.py --check docs/scaling.md   # fail if the doc's tables differ
  scripts/scaling-model.py --model gpt2-124m --compute-ms 111.05 --gpus 16 --nvlink-gbs 360
  scripts/scaling-model.py --params             # parameter counts (tests compare them with truthgpt's)
Only the Python standard library is needed.
"""
import argparse
import math
import sys

# One H200 (SXM), bf16, as measured by `truthgpt bench` (docs/performance.md): GPT-2 124M at B=64,
# T=1024 takes 111.05 ms; GPT-2 350M at B=32 reaches 529.0 TFLOP/s (6N + 12LCT per token), the
# throughput assumed for the larger models, which have not been benchmarked on a GPU.
MEASURED_MS = {"gpt2-124m": 111.05}
EST_TFLOPS = 529.0
# Share of a step that is forward, backward and the optimizer/host (GPT-2 124M profile,
# docs/performance.md: 35.42 / 74.35 / 2.54 ms).
FWD, BWD, OTHER = 35.42 / 112.31, 74.35 / 112.31, 2.54 / 112.31

MODELS = {
    # name: arch, layers, n_embd, heads, kv heads, ffn, padded vocab, T, per-GPU micro-batch
    "gpt2-124m": dict(arch="gpt2", L=12, C=768, H=12, KV=12, F=3072, V=50304, T=1024, B=64),
    "gpt2-1558m": dict(arch="gpt2", L=48, C=1600, H=25, KV=25, F=6400, V=50304, T=1024, B=8),
    "smollm-135m": dict(arch="llama", L=30, C=576, H=9, KV=3, F=1536, V=49152, T=2048, B=16),
    "llama-1b": dict(arch="llama", L=16, C=2048, H=32, KV=8, F=8192, V=128256, T=2048, B=4),
}

# Links (bytes/s per GPU and direction, as NCCL achieves them) and per-step latencies (s).
NVLINK_GBS, NVLINK_ALPHA = 360.0, 3e-6      # NVLink 4 (450 GB/s per direction), ~80% in NCCL rings
IB_GBS, IB_ALPHA = 45.0, 8e-6               # one 400 Gb/s NDR NIC per GPU, ~90% achieved
GPUS_PER_NODE = 8
GRAD_BYTES, PARAM_BYTES = 4, 2              # fp32 gradients are reduced; bf16 parameters gathered
# Stages as designed (collectives overlapped as described in docs/scaling.md), and 2/3 as the CPU
# backends run them today (each per-segment collective blocks the computation).
STAGES = [0, 1, 2, "2b", 3, "3b"]
STAGE_NAMES = {"2b": "2, blocking", "3b": "3, blocking"}


def segments(m):
    """Parameter counts of the segments forward and backward use one at a time, in forward order
    (embeddings, layers, final norm), plus the FLOPs per token of each (6 per parameter use plus
    attention) -- the layout of model/gpt2.c and model/llama.c."""
    L, C, H, KV, F, V, T = m["L"], m["C"], m["H"], m["KV"], m["F"], m["V"], m["T"]
    if m["arch"] == "gpt2":
        emb = V * C + T * C
        layer = 12 * C * C + 13 * C
        final = 2 * C
    else:
        kv = C * KV // H
        emb = V * C                           # tied: the head is wte
        layer = C * (C + 2 * kv) + C * C + 3 * C * F + 2 * C
        final = C
    attn = 12 * C * T                         # per token per layer, forward + backward (6N convention)
    flops = [0.0] + [6.0 * layer + attn] * L + [6.0 * V * C]   # head's FLOPs with the final segment
    return [emb] + [layer] * L + [final], flops


def ring(kind, S, n, gbs, alpha):
    """Seconds for one collective over n ranks in a ring; S = bytes of the whole buffer."""
    if n == 1 or S == 0:
        return 0.0
    bw = gbs * 1e9
    steps = (n - 1) * (2 if kind == "ar" else 1)
    return steps / n * S / bw + steps * alpha


def tree(kind, S, n, gbs, alpha):
    """Double binary tree (NCCL): all-reduce only; bandwidth term as a ring's, latency log2(n)."""
    if n == 1 or S == 0:
        return 0.0
    if kind != "ar":
        return math.inf
    return 2.0 * S / (gbs * 1e9) + 2.0 * math.ceil(math.log2(n)) * alpha


def coll(kind, S, n, net):
    """A collective over n GPUs: one node (NVLink) or n/8 nodes, hierarchically: reduce-scatter in
    the node, the inter-node collective on 1/8 of the bytes over each GPU's own NIC, all-gather in
    the node (only the phases the collective needs)."""
    one = lambda k, s, r, g, a: min(ring(k, s, r, g, a), tree(k, s, r, g, a))
    if n <= GPUS_PER_NODE:
        return one(kind, S, n, net["nvl"], net["nvl_a"])
    nodes, g = n // GPUS_PER_NODE, GPUS_PER_NODE
    t = one(kind, S / g, nodes, net["ib"], net["ib_a"])
    if kind in ("ar", "rs"):
        t += one("rs", S, g, net["nvl"], net["nvl_a"])
    if kind in ("ar", "ag"):
        t += one("ag", S, g, net["nvl"], net["nvl_a"])
    return t


def step_time(m, stage, n, compute_s, net):
    """(seconds per step, exposed communication) for one micro-step per optimizer step. One
    communication stream runs the collectives in the order they are issued; what overlaps with
    what follows each stage's design (docs/scaling.md)."""
    seg, fl = segments(m)
    tot = sum(fl)
    fwd = [compute_s * FWD * f / tot for f in fl]
    bwd = [compute_s * BWD * f / tot for f in fl]
    other = compute_s * OTHER
    psi = sum(seg)
    back = list(range(len(seg) - 1, -1, -1))  # the head (with the final segment) first
    if n == 1:
        return compute_s, 0.0
    if stage in ("2b", "3b"):  # the CPU backends today: every per-segment collective blocks
        t = compute_s + coll("ag", PARAM_BYTES * psi, n, net) if stage == "2b" else compute_s
        for i in range(len(seg)):
            t += coll("rs", GRAD_BYTES * seg[i], n, net)
            if stage == "3b":
                t += 2 * coll("ag", PARAM_BYTES * seg[i], n, net)
        return t, t - compute_s
    if stage == 1:  # reduce-scatter after backward, all-gather after the update: nothing overlaps
        t = compute_s + coll("rs", GRAD_BYTES * psi, n, net) + coll("ag", PARAM_BYTES * psi, n, net)
        return t, t - compute_s
    if stage in (0, 2):
        # 0: all-reduce, 2: reduce-scatter of each segment's gradients as backward finishes it
        # (GPT-2's tied wte is flushed with the embeddings, last)
        kind = "ar" if stage == 0 else "rs"
        t = comm = sum(fwd)
        for i in back:
            t += bwd[i]
            comm = max(comm, t) + coll(kind, GRAD_BYTES * seg[i], n, net)
        end = max(t, comm) + other
        if stage == 2:
            end += coll("ag", PARAM_BYTES * psi, n, net)
        return end, end - compute_s
    # stage 3: each segment's parameters all-gathered before its forward and again before its
    # backward, the next segment's gather issued when the current one starts computing (two
    # buffers); gradients reduce-scattered per segment as backward finishes it
    comm = coll("ag", PARAM_BYTES * seg[0], n, net)
    ready, t, cs = comm, 0.0, 0.0
    for i in range(len(seg)):
        cs = max(t, ready)
        if i + 1 < len(seg):
            comm = max(comm, cs) + coll("ag", PARAM_BYTES * seg[i + 1], n, net)
            ready = comm
        t = cs + fwd[i]
    comm = max(comm, cs) + coll("ag", PARAM_BYTES * seg[back[0]], n, net)
    ready = comm
    for k, i in enumerate(back):
        cs = max(t, ready)
        if k + 1 < len(back):
            comm = max(comm, cs) + coll("ag", PARAM_BYTES * seg[back[k + 1]], n, net)
            ready = comm
        t = cs + bwd[i]
        comm = max(comm, t) + coll("rs", GRAD_BYTES * seg[i], n, net)
    end = max(t, comm) + other
    return end, end - compute_s


def compute_ms(name, m, override=None):
    if override:
        return override, "given"
    if name in MEASURED_MS:
        return MEASURED_MS[name], "measured (H200)"
    seg, _ = segments(m)
    psi = sum(seg)
    flops = (6.0 * psi + 12.0 * m["L"] * m["C"] * m["T"]) * m["B"] * m["T"]
    return flops / (EST_TFLOPS * 1e12) * 1e3, f"estimated ({EST_TFLOPS:.0f} TFLOP/s)"


def tables(names, gpus, net, override=None):
    out = []
    for name in names:
        m = MODELS[name]
        seg, _ = segments(m)
        psi = sum(seg)
        ms, how = compute_ms(name, m, override)
        out.append(f"#### {name}: {psi / 1e6:.1f}M parameters, B={m['B']} T={m['T']} per GPU, "
                   f"compute {ms:.2f} ms/step ({how})\n")
        out.append("| GPUs | network | stage | step ms | exposed comm ms | efficiency | tokens/s (all GPUs) |")
        out.append("| --- | --- | --- | --- | --- | --- | --- |")
        for n, label in gpus:
            for stage in STAGES:
                t, exp = step_time(m, stage, n, ms / 1e3, net)
                stage = STAGE_NAMES.get(stage, stage)
                tok = n * m["B"] * m["T"] / t
                out.append(f"| {n} | {label} | {stage} | {t * 1e3:.2f} | {exp * 1e3:.2f} | "
                           f"{100 * ms / 1e3 / t:.1f}% | {tok / 1e6:.2f}M |")
        out.append("")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", choices=sorted(MODELS), help="default: all three")
    ap.add_argument("--compute-ms", type=float, help="one GPU's measured ms/step (truthgpt bench)")
    ap.add_argument("--gpus", type=int, action="append", help="GPU counts (multiples of 8 above 8)")
    ap.add_argument("--nvlink-gbs", type=float, default=NVLINK_GBS)
    ap.add_argument("--ib-gbs", type=float, default=IB_GBS)
    ap.add_argument("--check", metavar="DOC", help="exit 1 unless DOC contains these tables verbatim")
    ap.add_argument("--params", action="store_true", help="print each model's parameter count only")
    ap.add_argument("--seq-len", type=int, help="override every model's sequence length T")
    a = ap.parse_args()
    if a.compute_ms is not None and (not a.model or len(a.model) != 1):
        ap.error("--compute-ms needs exactly one --model")
    if a.seq_len:
        for m in MODELS.values():
            m["T"] = a.seq_len
    if a.params:
        for name in a.model or list(MODELS):
            print(name, sum(segments(MODELS[name])[0]))
        return 0
    net = dict(nvl=a.nvlink_gbs, nvl_a=NVLINK_ALPHA, ib=a.ib_gbs, ib_a=IB_ALPHA)
    gpus = [(8, "NVLink"), (64, "8 nodes, InfiniBand")]
    if a.gpus:
        for n in a.gpus:
            if n < 1 or (n > GPUS_PER_NODE and n % GPUS_PER_NODE):
                ap.error(f"--gpus {n}: 1-{GPUS_PER_NODE}, or a multiple of {GPUS_PER_NODE}")
        gpus = [(n, "NVLink" if n <= GPUS_PER_NODE else f"{n // GPUS_PER_NODE} nodes, InfiniBand")
                for n in a.gpus]
    text = tables(a.model or list(MODELS), gpus, net, a.compute_ms)
    if a.check:
        doc = open(a.check, encoding="utf-8").read()
        if text not in doc:
            print(f"{a.check}: its tables differ from scripts/scaling-model.py's output:\n\n{text}",
                  file=sys.stderr)
            return 1
        print(f"{a.check}: tables match the model")
        return 0
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
