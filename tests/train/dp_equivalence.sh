# Data parallel on the CPU backend: for the same seed and global batch, world sizes 1, 2 and 4 with
# ZeRO stages 0 to 3 give the same loss at every step (relative difference < 1e-5) and the same final
# parameters; each stage divides what it shards by the world size (memory lines of the log).
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
    for z in 0 1 2 3; do
        check "world $w zero_stage $z trains" run $w $z
    done
done
REF="$TMP/w1z0"
for w in 1 2 4; do
    for z in 0 1 2 3; do
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
# Memory per rank, from "memory rank R (zero_stage=Z, world W): params P B, grads G B, optimizer
# state O B, activations A B, segment window X B": stage 1 divides O by W; stage 2 also G, plus one
# segment window (the largest segment, where backward writes); stage 3 also P, plus one window.
mem() { # LOG FIELD -> rank 0's bytes
    grep -o "memory rank 0 (.*" "$1" | grep -o "$2 [0-9]* B" | grep -o "[0-9][0-9]*"
}
for w in 1 2 4; do
    L="$TMP/w${w}z"
    P0=$(mem ${L}0.log params) G0=$(mem ${L}0.log grads) O0=$(mem ${L}0.log "optimizer state") A0=$(mem ${L}0.log activations)
    for z in 1 2 3; do
        P=$(mem $L$z.log params) G=$(mem $L$z.log grads) O=$(mem $L$z.log "optimizer state")
        A=$(mem $L$z.log activations) X=$(mem $L$z.log "segment window")
        echo "world $w stage $z per rank: params $P B, grads $G B, optimizer $O B, activations $A B, window $X B" \
             "(stage 0: $P0, $G0, $O0, $A0)"
        eP=$P0 eG=$G0
        [ $z -ge 2 ] && eG=$((G0 / w + X))
        [ $z -ge 3 ] && eP=$((P0 / w + X))
        check "world $w stage $z: optimizer state = stage 0's / $w" [ "$O" -eq $((O0 / w)) ]
        check "world $w stage $z: grads = $([ $z -ge 2 ] && echo "stage 0's / $w + one window" || echo "stage 0's")" [ "$G" -eq "$eG" ]
        check "world $w stage $z: params = $([ $z -ge 3 ] && echo "stage 0's / $w + one window" || echo "stage 0's")" [ "$P" -eq "$eP" ]
        check "world $w stage $z: activations unchanged" [ "$A" -eq "$A0" ]
    done
done
# `truthgpt bench` projects the same per-rank bytes (its table for --world 4 = the 4-rank logs).
"$TG" bench --config configs/tiny.ini model.n_layer=2 model.n_embd=64 model.n_head=2 model.vocab_size=512 \
    --seq-len 32 --batch 2 --steps 1 --warmup 0 --world 4 >"$TMP/bench.txt" 2>&1 || cat "$TMP/bench.txt"
for z in 0 1 2 3; do
    L="$TMP/w4z$z.log"
    want="$z $(mem $L params) $(mem $L grads) $(mem $L 'optimizer state') $(mem $L activations) $(mem $L 'segment window')"
    got=$(awk -v z=$z '/^per rank at world 4/ {t = 1; next} t && $1 == z {print $1, $2, $3, $4, $5, $6}' "$TMP/bench.txt")
    check "bench's world-4 stage $z row matches the 4-rank run's memory line ($want)" [ "$got" = "$want" ]
done
check "the window is smaller than the full gradients" [ "$(mem $TMP/w4z3.log 'segment window')" -lt "$(mem $TMP/w4z0.log grads)" ]
check "every rank reports its memory" bash -c "[ \$(grep -c 'memory rank' '$TMP/w4z1.log') -eq 4 ]"
check "only rank 0 prints step lines" bash -c "! grep -q 'rank [123]\] step' '$TMP/w4z1.log'"
finish
