# Data parallel on the CPU backend: for the same seed and global batch, world sizes 1, 2 and 4 with
# ZeRO stage 0 and 1 give the same loss at every step (relative difference < 1e-5) and the same final
# parameters; ZeRO-1's per-rank optimizer memory is 1/N of stage 0's.
source "$(dirname "$0")/lib.sh"
cd "$SRC"
ARGS=(configs/tiny.ini model.n_layer=2 model.n_embd=64 model.n_head=2 model.seq_len=32 train.micro_batch=2
      train.total_batch_tokens=512 train.max_steps=20 train.warmup_steps=2 train.eval_every=0 data.val=
      checkpoint.every=0 train.resume=none)
run() { # world zero
    local out="$TMP/w$1z$2"
    "${MPIRUN[@]}" -np "$1" "$TG" train "${ARGS[@]}" train.zero_stage="$2" run.out_dir="$out" >"$out.log" 2>&1 \
        || { cat "$out.log"; return 1; }
}
for w in 1 2 4; do
    for z in 0 1; do
        check "world $w zero_stage $z trains" run $w $z
    done
done
REF="$TMP/w1z0"
for w in 1 2 4; do
    for z in 0 1; do
        [ "$w$z" = 10 ] && continue
        o="$TMP/w${w}z$z"
        check "losses of world $w zero $z match world 1 at every step (rel < 1e-5)" python3 -c '
import json, sys
def losses(p):
    return {r["step"]: r["loss"] for r in map(json.loads, open(p)) if "loss" in r}
a, b = losses(sys.argv[1]), losses(sys.argv[2])
assert sorted(a) == list(range(1, 21)) and sorted(a) == sorted(b), (sorted(a), sorted(b))
worst = max(abs(a[s] - b[s]) / abs(a[s]) for s in a)
print("  max relative loss difference %.2e" % worst)
sys.exit(worst >= 1e-5)
' "$REF/metrics.jsonl" "$o/metrics.jsonl"
        # c_attn.bias holds the key bias, whose gradient is exactly zero in exact arithmetic (softmax
        # ignores a per-row constant): Adam normalises its rounding noise into lr-sized steps, so it
        # is compared apart, loosely. Every other tensor must agree to 1e-5.
        check "final parameters of world $w zero $z match world 1 (rel < 1e-5)" \
            "$TG" ckpt diff "$REF/checkpoints/step_00000020.h5" "$o/checkpoints/step_00000020.h5" --tol 1e-5 \
            --skip attn.c_attn.bias
        check "attention biases of world $w zero $z match world 1 (rel < 2e-3)" \
            "$TG" ckpt diff "$REF/checkpoints/step_00000020.h5" "$o/checkpoints/step_00000020.h5" --tol 2e-3
    done
done
# Optimizer memory per rank: "memory rank R: ... optimizer state X MB (zero_stage=Z)"
opt_mb() { grep -o "memory rank 0: .*optimizer state [0-9.]* MB" "$1" | grep -o "state [0-9.]*" | cut -d' ' -f2; }
for w in 2 4; do
    z0=$(opt_mb "$TMP/w${w}z0.log")
    z1=$(opt_mb "$TMP/w${w}z1.log")
    echo "world $w: optimizer state per rank: stage 0 $z0 MB, stage 1 $z1 MB"
    check "ZeRO-1 optimizer memory is 1/$w of stage 0's at world $w" \
        python3 -c "import sys; sys.exit(abs($z1 * $w - $z0) > 0.01 * $z0)"
done
check "every rank reports its memory" bash -c "[ \$(grep -c 'memory rank' '$TMP/w4z1.log') -eq 4 ]"
check "only rank 0 prints step lines" bash -c "! grep -q 'rank [123]\] step' '$TMP/w4z1.log'"
finish
