# tests/netns/lib.sh — two "nodes" on one machine, for the multi-node tests (sourced; needs root).
#
# netns_up: two Linux network namespaces joined by a veth pair, each its own node:
#   namespace (and hostname) $NODE_A / $NODE_B, address $ADDR_A / $ADDR_B on $NET (a /24 that
#   exists only inside these two namespaces, so no address outside them is touched, and a parallel
#   run's identical /24 lives in its own namespaces). Names carry this shell's pid, so parallel runs
#   never collide; leftovers of earlier runs (same prefix, pid no longer alive) are removed first.
# netns_in NODE CMD...: runs CMD on NODE (tests/netns/on-node: its network namespace, hostname NODE).
# netns_down: ends every process left inside the namespaces (by pid), deletes namespaces and links.
#   Called from an EXIT trap, so it also runs when a check fails.
NETNS_PREFIX=tgnet
NET=10.231.0.0/24
ADDR_A=10.231.0.1
ADDR_B=10.231.0.2
NODE_A=$NETNS_PREFIX-$$-a
NODE_B=$NETNS_PREFIX-$$-b
# Interface names are limited to 15 characters: tgnet + pid (<= 7 digits) + a/b.
VETH_A=$NETNS_PREFIX$$a
VETH_B=$NETNS_PREFIX$$b

netns_reap_leftovers() {
    local ns pid link d
    for ns in $(ip netns list | awk '{print $1}' | grep -E "^$NETNS_PREFIX-[0-9]+-[ab]$" || true); do
        pid=${ns#"$NETNS_PREFIX"-}
        pid=${pid%-*}
        kill -0 "$pid" 2>/dev/null && continue
        echo "removing leftover namespace $ns"
        netns_kill_inside "$ns"
        ip netns del "$ns" 2>/dev/null || true
    done
    # tests/netns/slurm.sh's state directory
    for d in /tmp/"$NETNS_PREFIX"-[0-9]*; do
        pid=${d#/tmp/"$NETNS_PREFIX"-}
        [[ -d $d && $pid =~ ^[0-9]+$ ]] || continue
        kill -0 "$pid" 2>/dev/null && continue
        echo "removing leftover directory $d"
        rm -rf "$d"
    done
    for link in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 |
                  grep -E "^$NETNS_PREFIX[0-9]+[ab]$" || true); do
        pid=${link#"$NETNS_PREFIX"}
        pid=${pid%[ab]}
        kill -0 "$pid" 2>/dev/null && continue
        echo "removing leftover link $link"
        ip link del "$link" 2>/dev/null || true
    done
}

# netns_kill_inside NS: KILL every process in namespace NS (all were started by this test).
netns_kill_inside() {
    local p
    for p in $(ip netns pids "$1" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
}

netns_up() {
    netns_reap_leftovers
    ip netns add "$NODE_A"
    ip netns add "$NODE_B"
    ip link add "$VETH_A" type veth peer name "$VETH_B"
    ip link set "$VETH_A" netns "$NODE_A"
    ip link set "$VETH_B" netns "$NODE_B"
    ip -n "$NODE_A" addr add "$ADDR_A/24" dev "$VETH_A"
    ip -n "$NODE_B" addr add "$ADDR_B/24" dev "$VETH_B"
    local n
    for n in "$NODE_A:$VETH_A" "$NODE_B:$VETH_B"; do
        ip -n "${n%%:*}" link set lo up
        ip -n "${n%%:*}" link set "${n#*:}" up
    done
}

netns_down() {
    local ns
    for ns in "$NODE_A" "$NODE_B"; do
        netns_kill_inside "$ns"
        ip netns del "$ns" 2>/dev/null || true
    done
    # Deleting a namespace destroys the veth end inside it (and so its peer); a link that never
    # made it into a namespace is still here.
    ip link del "$VETH_A" 2>/dev/null || true
    ip link del "$VETH_B" 2>/dev/null || true
}

NETNS_DIR=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
netns_in() { "$NETNS_DIR/on-node" "$@"; }

# netns_bytes NODE DIR: bytes the node's veth has sent (DIR=tx) or received (DIR=rx).
netns_bytes() {
    local dev=$VETH_A
    [ "$1" = "$NODE_B" ] && dev=$VETH_B
    ip netns exec "$1" cat "/sys/class/net/$dev/statistics/${2}_bytes"
}
