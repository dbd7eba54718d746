# GPU check (issue: CUDA backend): a 300-step run of configs/tiny.ini on real data on the GPU stays
# within 2% of the CPU reference's loss curve, in fp32 and in bf16. Per-step losses of two runs whose
# arithmetic differs drift apart step by step (different rounding, then different updates), so the
# curves are compared as 10-step means.
#
# The reference for each precision is the CPU run in that precision: fp32 against the fp32 CPU
# backend; bf16 against the CPU backend emulating bf16 storage (train.cpu_emulate_bf16=1: fp32
# arithmetic, values rounded to bf16 where the CUDA backend stores bf16, fp32 master weights).
# A third bf16 run takes the opt-in speed switches (cuda.cublaslt_tune, cuda.cudnn_tune:
# algorithms and attention plans picked by timing) and is held to the same 2%.
# bf16 storage by itself moves this curve: on the 2026-11-26 H200 run every bf16 variant trained up
# to 2.9% faster than fp32 around steps 61-90, and the CPU emulation reproduces it (docs/cuda.md,
# "Known differences"); GPU bf16 against fp32 CPU is printed, not checked.
# Skips (77) without a GPU or without data.
# Data: $TG_CURVE_DATA (a folder with train_*.h5 / val_*.h5), else prepared here from Debian's fortunes.
source "$(dirname "$0")/../train/lib.sh"
source "$(dirname "$0")/curve_data.sh"
ARGS=("$SRC/configs/tiny.ini" data.train="$DATA/train_*.h5" data.val="$DATA/val_*.h5" train.max_steps=300
      checkpoint.every=0 train.resume=none)
for v in "cpu cpu fp32 0" "cpu-bf16 cpu bf16 1" "bf16 cuda bf16 0" "fp32 cuda fp32 0"; do
    set -- $v
    "$TG" train "${ARGS[@]}" train.device=$2 train.precision=$3 train.cpu_emulate_bf16=$4 run.out_dir="$TMP/$1" \
        >"$TMP/$1.log" 2>&1 || { tail -20 "$TMP/$1.log"; bad "$1 run exits 0"; }
done
check "the bf16 reference emulates bf16 storage" grep -q "emulating bf16" "$TMP/cpu-bf16.log"
# The opt-in speed switches, all at once, in bf16 (checked below like the default): the evidence a
# switch needs before it becomes the default, gathered in the same device call as its A/B timing.
# (192-row LM-head chunks: tiny's 512 rows in three chunks, the last one partial)
"$TG" train "${ARGS[@]}" train.device=cuda train.precision=bf16 cuda.lmhead_rows=192 cuda.cublaslt_tune=1 \
    cuda.cudnn_tune=1 run.out_dir="$TMP/bf16-optin" \
    >"$TMP/bf16-optin.log" 2>&1 || { tail -20 "$TMP/bf16-optin.log"; bad "bf16 run with the opt-in switches exits 0"; }
# Diagnostics (not checked): more bf16 runs with other attention implementations (TG_CURVE_EXTRA,
# e.g. "flash naive"), and where along the curve the differences sit.
for a in ${TG_CURVE_EXTRA:-}; do
    "$TG" train "${ARGS[@]}" train.device=cuda train.precision=bf16 cuda.attention=$a run.out_dir="$TMP/bf16-$a" \
        >"$TMP/bf16-$a.log" 2>&1 || tail -5 "$TMP/bf16-$a.log"
done
python3 - "$TMP" ${TG_CURVE_EXTRA:-} <<'PY' || true
import json, os, sys
tmp, extra = sys.argv[1], sys.argv[2:]
def losses(name):
    p = os.path.join(tmp, name, "metrics.jsonl")
    return [r["loss"] for r in map(json.loads, open(p)) if r.get("loss") is not None] if os.path.exists(p) else None
def row(n, l):
    return "  %-24s" % n + " ".join("%6.3f" % (sum(l[i:i+10]) / 10) for i in range(0, 300, 30))
def diff(l, ref):
    d = [(sum(l[i:i+10]) - sum(ref[i:i+10])) / sum(ref[i:i+10]) for i in range(0, 300, 10)]
    w = max(range(30), key=lambda k: abs(d[k]))
    return "worst %+.4f at steps %d-%d, last 100 steps %+.4f" % (d[w], 10 * w + 1, 10 * w + 10, sum(d[20:]) / 10)
cpu, emu = losses("cpu"), losses("cpu-bf16")
print("  10-step mean loss at steps:    " + " ".join("%6d" % (i + 10) for i in range(0, 300, 30)))
for n in ["cpu", "cpu-bf16", "fp32", "bf16", "bf16-optin"] + ["bf16-" + a for a in extra]:
    l = losses(n)
    if not l or len(l) != 300: continue
    ref = emu if n.startswith("bf16") else cpu
    extra_txt = ""
    if n.startswith("bf16") or n == "cpu-bf16":
        extra_txt = "   vs fp32 CPU: " + diff(l, cpu)
    print(row(n, l) + ("" if n.startswith("cpu") else "   vs %s: %s" % ("cpu-bf16" if ref is emu else "cpu", diff(l, ref))) + extra_txt)
PY
for v in "bf16 cpu-bf16" "fp32 cpu" "bf16-optin cpu-bf16"; do
    set -- $v
    check "$1 GPU loss curve within 2% of the $2 reference's (10-step means)" python3 -c '
import json, sys
def losses(p):
    return [r["loss"] for r in map(json.loads, open(p)) if r.get("loss") is not None]
a, b = losses(sys.argv[1]), losses(sys.argv[2])
assert len(a) == len(b) == 300, (len(a), len(b))
worst = max(abs(sum(b[i:i+10]) - sum(a[i:i+10])) / sum(a[i:i+10]) for i in range(0, 300, 10))
print("  %s: worst 10-step-mean relative difference %.4f; step 1 %.4f vs %.4f; step 300 %.4f vs %.4f"
      % (sys.argv[3], worst, a[0], b[0], a[-1], b[-1]))
sys.exit(worst > 0.02)
' "$TMP/$2/metrics.jsonl" "$TMP/$1/metrics.jsonl" "$1 vs $2"
done
finish
