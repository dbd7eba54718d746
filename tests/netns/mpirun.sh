# Multi-node on one machine, through mpirun: two nodes as network namespaces joined by a veth pair
# (tests/netns/lib.sh), a hostfile naming both, one rank per node, all MPI traffic (Open MPI's
# out-of-band channel and the TCP byte transfer layer) restricted to the veth's /24. The two-node
# run must equal the one-node 2-rank run bitwise: the same loss and gradient norm at every step and
# the same final checkpoint (parameters and AdamW state, dataset by dataset).
# Open MPI starts its daemon on the other node with a "remote shell" agent: here tests/netns/rsh-agent,
# which enters that node's namespaces instead of logging in with ssh (plm_rsh_agent): no sshd needed.
# Needs root (ip netns, unshare, nsenter): exits 77 (ctest SKIP) otherwise.
source "$(dirname "$0")/../train/lib.sh"
cd "$SRC"
if [ "$(id -u)" != 0 ]; then
    echo "SKIP: needs root (ip netns, unshare --uts)"
    exit 77
fi
for tool in ip unshare nsenter; do
    command -v $tool >/dev/null || { echo "FAIL: $tool not installed (scripts/install-deps.sh)"; exit 1; }
done
source "$SRC/tests/netns/lib.sh"
trap netns_down EXIT
TMP=$(readlink -f "$TMP")
TG=$(readlink -f "$TG")
netns_up
echo "nodes: $NODE_A ($ADDR_A, $VETH_A) and $NODE_B ($ADDR_B, $VETH_B) on $NET"

STEPS=20
ARGS=(configs/tiny.ini model.n_layer=2 model.n_embd=64 model.n_head=2 model.seq_len=32 train.micro_batch=2
      train.total_batch_tokens=512 train.max_steps=$STEPS train.warmup_steps=2 train.eval_every=0 data.val=
      checkpoint.every=0 train.resume=none)
export OMP_NUM_THREADS=1

printf '%s slots=1\n%s slots=1\n' "$NODE_A" "$NODE_B" >"$TMP/hostfile"

one_node() {
    "${MPIRUN[@]}" -np 2 "$TG" train "${ARGS[@]}" run.out_dir="$TMP/one" >"$TMP/one.log" 2>&1 ||
        { cat "$TMP/one.log"; return 1; }
}
two_nodes() {
    # mpirun itself runs on node A; -x passes the thread count to the rank on node B.
    TG_RSH_LOG=$TMP/rsh-agent.log netns_in "$NODE_A" timeout -k 10 600 mpirun --allow-run-as-root --bind-to none -np 2 \
        --hostfile "$TMP/hostfile" --display-map -x OMP_NUM_THREADS \
        --mca plm_rsh_agent "$SRC/tests/netns/rsh-agent" \
        --mca oob_tcp_if_include "$NET" --mca btl_tcp_if_include "$NET" --mca btl tcp,self \
        "$TG" train "${ARGS[@]}" run.out_dir="$TMP/two" >"$TMP/two.log" 2>&1 ||
        { cat "$TMP/two.log"; return 1; }
}
check "one node, 2 ranks (shared memory) trains" one_node
tx0=$(netns_bytes "$NODE_A" tx)
rx0=$(netns_bytes "$NODE_A" rx)
check "two nodes, 1 rank each (TCP over the veth) trains" two_nodes
tx=$(($(netns_bytes "$NODE_A" tx) - tx0))
rx=$(($(netns_bytes "$NODE_A" rx) - rx0))

check "mpirun started the daemon of $NODE_B through the agent" grep -q "^$NODE_B: .*orted" "$TMP/rsh-agent.log"
map_rank_node() { # map_rank_node RANK: the node --display-map placed RANK on
    awk -v r="$1" '/Data for node:/ {n=$4} $0 ~ "Process rank: " r " " {print n; exit}' "$TMP/two.log"
}
check "rank 0 ran on $NODE_A" [ "$(map_rank_node 0)" = "$NODE_A" ]
check "rank 1 ran on $NODE_B" [ "$(map_rank_node 1)" = "$NODE_B" ]
# Data parallelism all-reduces every gradient each step: with 2 ranks each must send at least half
# of it (4-byte floats) to the other, so the veth carried at least steps * params * 2 bytes each way.
params=$("$TG" ckpt info "$TMP/one/checkpoints/step_$(printf %08d $STEPS).h5" --no-config |
         sed -n 's/.*(\([0-9]*\) parameters).*/\1/p')
min=$((STEPS * params * 2))
echo "veth of $NODE_A: sent $tx B, received $rx B (gradients alone need >= $min B each way)"
check "the gradients crossed the veth (sent >= $min B)" [ "$tx" -ge "$min" ]
check "the gradients crossed the veth (received >= $min B)" [ "$rx" -ge "$min" ]

check "same loss and gradient norm at every step (bitwise)" python3 -c '
import json, sys
def rows(p):
    return {r["step"]: (r["loss"], r["grad_norm"]) for r in map(json.loads, open(p)) if "loss" in r}
a, b = rows(sys.argv[1]), rows(sys.argv[2])
assert sorted(a) == list(range(1, int(sys.argv[3]) + 1)), sorted(a)
bad = [s for s in a if a[s] != b.get(s)]
print("  steps compared: %d, differing: %s" % (len(a), bad))
sys.exit(bool(bad))
' "$TMP/one/metrics.jsonl" "$TMP/two/metrics.jsonl" $STEPS
final=step_$(printf %08d $STEPS).h5
check "same final parameters (bitwise)" "$TG" ckpt diff "$TMP/one/checkpoints/$final" "$TMP/two/checkpoints/$final"
crcs() { "$TG" ckpt info "$1" --no-config | sed -n 's|^  \(/[a-z_]*/[^ ]*\) .*crc32c \([0-9a-f]*\).*|\1 \2|p' |
         grep -v '^/config_ini'; }
crcs "$TMP/one/checkpoints/$final" >"$TMP/one.crc"
crcs "$TMP/two/checkpoints/$final" >"$TMP/two.crc"
check "same checkpoint datasets (params, AdamW m and v, loader states: crc32c)" \
    bash -c "[ -s '$TMP/one.crc' ] && diff '$TMP/one.crc' '$TMP/two.crc'"
finish
