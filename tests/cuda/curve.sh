# GPU check (issue: CUDA backend): a 300-step run of configs/tiny.ini on real data on the GPU stays
# within 2% of the CPU run's loss curve, in bf16 and in fp32. Per-step losses of two runs whose
# arithmetic differs drift apart step by step (different rounding, then different updates), so
# the curves are compared as 10-step means. Skips (77) without a GPU or without data.
# Data: $TG_CURVE_DATA (a folder with train_*.h5 / val_*.h5), else prepared here from Debian's fortunes.
source "$(dirname "$0")/../train/lib.sh"
if ! nvidia-smi -L >/dev/null 2>&1; then echo "SKIP: no CUDA device"; exit 77; fi
DATA=${TG_CURVE_DATA:-}
if [ -z "$DATA" ]; then
    mapfile -t inputs < <(find /usr/share/games/fortunes -maxdepth 1 -type f ! -name '*.*' 2>/dev/null | sort)
    if [ ${#inputs[@]} -eq 0 ]; then echo "SKIP: no TG_CURVE_DATA and no fortunes corpus"; exit 77; fi
    "$TG" tokenizer train --vocab-size 1024 --split-on-percent --out "$TMP/tok.tiktoken" "${inputs[@]}" >/dev/null 2>&1
    "$TG" prepare --tokenizer "$TMP/tok.tiktoken" --out "$TMP/data" --split-on-percent "${inputs[@]}" >/dev/null 2>&1
    DATA="$TMP/data"
fi
ARGS=("$SRC/configs/tiny.ini" data.train="$DATA/train_*.h5" data.val="$DATA/val_*.h5" train.max_steps=300
      checkpoint.every=0 train.resume=none)
for v in "cpu cpu fp32" "bf16 cuda bf16" "fp32 cuda fp32"; do
    set -- $v
    "$TG" train "${ARGS[@]}" train.device=$2 train.precision=$3 run.out_dir="$TMP/$1" >"$TMP/$1.log" 2>&1 \
        || { tail -20 "$TMP/$1.log"; bad "$1 run exits 0"; }
done
# Diagnostics (not checked): more bf16 runs with other attention implementations (TG_CURVE_EXTRA,
# e.g. "flash naive"), and where along the curve the differences sit.
for a in ${TG_CURVE_EXTRA:-}; do
    TG_CUDA_ATTN=$a "$TG" train "${ARGS[@]}" train.device=cuda train.precision=bf16 run.out_dir="$TMP/bf16-$a" \
        >"$TMP/bf16-$a.log" 2>&1 || tail -5 "$TMP/bf16-$a.log"
done
python3 - "$TMP" ${TG_CURVE_EXTRA:-} <<'PY' || true
import json, os, sys
tmp, extra = sys.argv[1], sys.argv[2:]
def losses(name):
    p = os.path.join(tmp, name, "metrics.jsonl")
    return [r["loss"] for r in map(json.loads, open(p)) if r.get("loss") is not None] if os.path.exists(p) else None
cpu = losses("cpu")
runs = [(n, losses(n)) for n in ["fp32", "bf16"] + ["bf16-" + a for a in extra]]
print("  10-step mean loss at steps:  " + " ".join("%6d" % (i + 10) for i in range(0, 300, 30)))
print("  %-22s" % "cpu" + " ".join("%6.3f" % (sum(cpu[i:i+10]) / 10) for i in range(0, 300, 30)))
for n, l in runs:
    if not l or len(l) != 300: continue
    d = [(sum(l[i:i+10]) - sum(cpu[i:i+10])) / sum(cpu[i:i+10]) for i in range(0, 300, 10)]
    w = max(range(30), key=lambda k: abs(d[k]))
    print("  %-22s" % n + " ".join("%6.3f" % (sum(l[i:i+10]) / 10) for i in range(0, 300, 30))
          + "   worst %+.4f at steps %d-%d, mean of last 100 steps %+.4f" % (d[w], 10 * w + 1, 10 * w + 10, sum(d[20:]) / 10))
PY
for p in bf16 fp32; do
    check "$p GPU loss curve within 2% of the CPU's (10-step means)" python3 -c '
import json, sys
def losses(p):
    return [r["loss"] for r in map(json.loads, open(p)) if r.get("loss") is not None]
a, b = losses(sys.argv[1]), losses(sys.argv[2])
assert len(a) == len(b) == 300, (len(a), len(b))
worst = max(abs(sum(b[i:i+10]) - sum(a[i:i+10])) / sum(a[i:i+10]) for i in range(0, 300, 10))
print("  %s: worst 10-step-mean relative difference %.4f; step 1 %.4f vs %.4f; step 300 %.4f vs %.4f"
      % (sys.argv[3], worst, a[0], b[0], a[-1], b[-1]))
sys.exit(worst > 0.02)
' "$TMP/cpu/metrics.jsonl" "$TMP/$p/metrics.jsonl" $p
done
finish
