# Multi-node on one machine, through SLURM: two nodes as network namespaces joined by a veth pair
# (tests/netns/lib.sh), one slurmd in each and the controller on the first
# (scripts/slurm/local-cluster.sh with TG_SLURM_NODES); scripts/slurm/train.sbatch submitted as its
# multi-node line does (sbatch -N 2, one task per node, srun --mpi=pmix), `scontrol requeue`d once
# after its first checkpoint so that both nodes restart from it. The run must equal the one-node
# 2-rank mpirun run bitwise: the same loss and gradient norm at every step and the same final
# checkpoint (parameters and AdamW state, dataset by dataset).
# Exits 77 (ctest SKIP) without slurmctld/munged or root. About half a minute, mostly SLURM's
# requeue delay (cred_expire).
source "$(dirname "$0")/../train/lib.sh"
cd "$SRC"
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    echo "SKIP: slurmctld/munged not installed (scripts/install-deps.sh --slurm)"
    exit 77
fi
if [ "$(id -u)" != 0 ]; then
    echo "SKIP: needs root (ip netns, unshare --uts, slurmd)"
    exit 77
fi
source "$SRC/tests/netns/lib.sh"
source "$SRC/tests/slurm/ranks.sh"
TMP=$(readlink -f "$TMP")
TG=$(readlink -f "$TG")
# slurmstepd's Unix sockets live in the spool directory and their paths must stay under 108 bytes:
# the state goes to a short directory of its own, copied to $TMP (logs) and removed at the end.
STATE=/tmp/$NETNS_PREFIX-$$
export SLURM_CONF=$STATE/slurm.conf TG_SLURM_NODES TG_SLURM_ON=$SRC/tests/netns/on-node
cluster() { "$SRC/scripts/slurm/local-cluster.sh" "$1" "$STATE"; }
cleanup() {
    [ -f "$SLURM_CONF" ] && cluster stop >/dev/null 2>&1
    netns_down
    if [ -d "$STATE" ]; then
        cp -r "$STATE" "$TMP/slurm-state" 2>/dev/null
        rm -rf "$STATE"
    fi
}
trap cleanup EXIT
fail() {
    bad "$*"
    local f
    for f in "$TMP"/job-*.out "$STATE"/slurmctld.log "$STATE"/slurmd.*.log; do
        [ -f "$f" ] && { echo "---- tail $f"; tail -n 30 "$f"; }
    done
    finish
    exit 1
}
netns_up
TG_SLURM_NODES="$NODE_A=$ADDR_A $NODE_B=$ADDR_B"
echo "nodes: $NODE_A ($ADDR_A) and $NODE_B ($ADDR_B) on $NET"

# SLURM resumes the frozen ranks (SIGCONT) before the batch script's relayed TERM reaches them:
# they run on for a moment (30+ steps under load), so the run is long enough to still be mid-way.
STEPS=200
EVERY=10
KEYS=(model.n_layer=2 model.n_embd=64 model.n_head=2 model.seq_len=32 train.micro_batch=2
      train.total_batch_tokens=512 train.max_steps=$STEPS train.warmup_steps=2 train.eval_every=0 data.val=
      checkpoint.every=$EVERY checkpoint.keep=2)
final=step_$(printf %08d $STEPS).h5
export OMP_NUM_THREADS=1 # what train.sbatch gives each task (SLURM_CPUS_PER_TASK unset)

"${MPIRUN[@]}" -np 2 "$TG" train configs/tiny.ini "${KEYS[@]}" run.out_dir="$TMP/one" train.resume=none \
    >"$TMP/one.log" 2>&1 || { cat "$TMP/one.log"; fail "one node, 2 ranks (mpirun) trains"; }
ok "one node, 2 ranks (mpirun) trains"

cluster start || fail "a SLURM cluster with one slurmd per namespace starts"
ok "a SLURM cluster with one slurmd per namespace starts"
check "SLURM sees both nodes idle" netns_in "$NODE_A" bash -c \
    "[ \"\$(sinfo -h -N -o '%N %T' | sort | tr '\n' ' ')\" = '$NODE_A idle $NODE_B idle ' ]"

tx0=$(netns_bytes "$NODE_A" tx)
# The ranks' byte transfer layer on the veth's /24 only (srun passes the environment on).
export OMPI_MCA_btl_tcp_if_include=$NET OMPI_MCA_btl=tcp,self
job=$(netns_in "$NODE_A" sbatch --parsable -N 2 --ntasks-per-node=1 -o "$TMP/job-%j.out" \
      --export="ALL,TRUTHGPT=$TG" scripts/slurm/train.sbatch configs/tiny.ini "${KEYS[@]}" \
      run.out_dir="$TMP/two") || fail "sbatch -N 2 accepts the job"
job=${job%%;*}
out=$TMP/job-$job.out
echo "job $job"
field() { # field NAME: a field of `scontrol show job -o` for the job
    netns_in "$NODE_A" scontrol show job -o "$job" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$1=//p" | head -n 1
}
ended() { [[ $(field JobState) =~ ^(COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY)$ ]]; }

# Bounded waits on events: the first checkpoint, then the restart's own checkpoint, then the end.
deadline=$((SECONDS + 300))
next=0 # asking SLURM takes a while: once a second, the file test in between
until compgen -G "$TMP/two/checkpoints/step_*.h5" >/dev/null; do
    ((SECONDS < deadline)) || fail "no checkpoint within 300 s (state $(field JobState))"
    if ((SECONDS >= next)); then
        ended && fail "job ended before its first checkpoint (state $(field JobState))"
        [ "$(field Restarts)" = 0 ] || fail "job restarted by itself before its first checkpoint"
        next=$((SECONDS + 1))
    fi
    sleep 0.05
done
# Freeze the ranks until SLURM's TERM reaches them, so that the requeue meets them mid-run.
pids=$(ranks_pids "$TG" "$TMP/two")
[ -n "$pids" ] || fail "no ranks of the job found (pgrep)"
ranks_stop $pids || fail "the ranks did not stop (SIGSTOP)"
[ "$(field JobState)" = RUNNING ] || fail "job not running at requeue time: $(field JobState)"
echo "first checkpoint $(ls "$TMP/two/checkpoints" | grep '^step_' | head -n 1); ranks $(echo $pids) stopped; scontrol requeue $job"
netns_in "$NODE_A" scontrol requeue "$job" || fail "scontrol requeue"
ranks_cont_on 15 $pids || fail "SIGTERM did not reach the stopped ranks within 300 s"
deadline=$((SECONDS + 300))
until [ -f "$out" ] && sed -n '/restart 1:/,$p' "$out" | grep -q "checkpoint: wrote"; do
    ((SECONDS < deadline)) || fail "the restart did not save within 300 s (state $(field JobState))"
    sleep 0.5
done
check "the restart resumed from a checkpoint" bash -c "sed -n '/restart 1:/,\$p' '$out' | grep -q 'resumed from'"
deadline=$((SECONDS + 300))
until ended; do
    ((SECONDS < deadline)) || fail "job did not end within 300 s (state $(field JobState))"
    sleep 0.5
done
tx=$(($(netns_bytes "$NODE_A" tx) - tx0))
check "job completed (state $(field JobState), restarts $(field Restarts))" [ "$(field JobState)" = COMPLETED ]
check "the job ran on both nodes with 2 ranks" grep -q "2 node(s) .*, 2 rank(s), srun" "$out"
nodes=$(netns_in "$NODE_A" scontrol show hostnames "$(field NodeList)" | tr '\n' ' ')
check "its nodes were the two namespaces ($nodes)" [ "$nodes" = "$NODE_A $NODE_B " ]
params=$("$TG" ckpt info "$TMP/one/checkpoints/$final" --no-config | sed -n 's/.*(\([0-9]*\) parameters).*/\1/p')
min=$((STEPS * params * 2))
echo "veth of $NODE_A sent $tx B (the gradients alone need >= $min B)"
check "the gradients crossed the veth (sent >= $min B)" [ "$tx" -ge "$min" ]

# Steps redone after the restart append their records again: the last record of each step counts.
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
check "same final parameters (bitwise)" "$TG" ckpt diff "$TMP/one/checkpoints/$final" "$TMP/two/checkpoints/$final"
crcs() { "$TG" ckpt info "$1" --no-config | sed -n 's|^  \(/[a-z_]*/[^ ]*\) .*crc32c \([0-9a-f]*\).*|\1 \2|p' |
         grep -v '^/config_ini'; }
crcs "$TMP/one/checkpoints/$final" >"$TMP/one.crc"
crcs "$TMP/two/checkpoints/$final" >"$TMP/two.crc"
check "same checkpoint datasets (params, AdamW m and v, loader states: crc32c)" \
    bash -c "[ -s '$TMP/one.crc' ] && diff '$TMP/one.crc' '$TMP/two.crc'"
finish
