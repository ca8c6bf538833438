#!/bin/sh
# Tier 2 of the distribution benchmark: PEERS peers and an origin, each in a network namespace
# of its own, joined by a bridge in one more namespace, every link limited by tc (RATE both
# ways), fetch a SIZE_MIB artifact. Prints the time until the last verified copy against the
# fluid lower bound max(S/B_origin, S/d, N*S/(B_origin + sum u)) and the origin's egress over S.
# Creates namespaces named vgp-* on this machine only, and removes them at the end; nothing
# is routed to or from the machine's own interfaces.
#
# The machine plays 33 hosts, so the rig is set up to measure the distribution rather than the
# machine's own limits, and says so: frames of MTU bytes (9000 by default, as data-centre
# fabrics use; at 1500 the kernel's per-packet work for 33 hosts fills two cores), a tbf burst
# of BURST (256 KiB by default: a loaded machine serves the qdisc's timer late, and a bucket
# smaller than the tokens due by then loses them, running the link below its rate), each peer
# process on one runtime thread, every peer starting at one instant, and each peer's data file
# written once before the clock starts (PRETOUCH, below). Each can be set back to compare.
#
#   sudo crates/vigil-p2p/examples/netns_bench.sh            # PEERS=32 SIZE_MIB=256 RATE_MBIT=100 RUNS=3
#   MTU=1500 BURST=64kb PRETOUCH=0 gives the rig without those settings.
#   LOGS=DIR keeps each run's origin log (its egress second by second) and the peers' lines
#   (pieces held and MiB uploaded second by second).
set -eu
PEERS=${PEERS:-32}
SIZE_MIB=${SIZE_MIB:-256}
RATE_MBIT=${RATE_MBIT:-100}
RUNS=${RUNS:-3}
MTU=${MTU:-9000}
PRETOUCH=${PRETOUCH:-1}
BURST=${BURST:-256kb}
if [ "$(id -u)" != 0 ]; then
    echo "SKIPPED: tier 2 needs root (ip netns, tc); run it as root" >&2
    exit 0
fi
if ! command -v ip >/dev/null || ! command -v tc >/dev/null; then
    echo "SKIPPED: tier 2 needs ip and tc" >&2
    exit 0
fi
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
cargo build --release -q -p vigil-p2p --example netns_peer --manifest-path "$ROOT/Cargo.toml"
BIN="$ROOT/target/release/examples/netns_peer"
WORK=$(mktemp -d /tmp/vigil-p2p-netns.XXXXXX)
SWITCH=vgp-switch

cleanup() {
    for pid in $(cat "$WORK"/pids 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
    for ns in $(ip netns list | awk '{print $1}' | grep '^vgp-'); do ip netns delete "$ns" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

setup() {
    ip netns add $SWITCH
    ip -n $SWITCH link add br0 type bridge
    ip -n $SWITCH link set br0 up
    for index in $(seq 0 "$PEERS"); do
        ns=vgp-$index
        ip netns add "$ns"
        ip link add "vgp$index" type veth peer name "vgs$index"
        ip link set "vgp$index" netns "$ns"
        ip link set "vgs$index" netns $SWITCH
        ip -n "$ns" link set "vgp$index" name eth0
        ip -n "$ns" addr add "10.77.$((index / 200)).$((index % 200 + 1))/16" dev eth0
        ip -n "$ns" link set eth0 mtu "$MTU"
        ip -n $SWITCH link set "vgs$index" mtu "$MTU"
        ip -n "$ns" link set eth0 up
        ip -n "$ns" link set lo up
        ip -n $SWITCH link set "vgs$index" master br0
        ip -n $SWITCH link set "vgs$index" up
        # Upload (the host's egress) and download (the switch's egress towards it).
        ip netns exec "$ns" tc qdisc add dev eth0 root tbf rate "${RATE_MBIT}mbit" burst "$BURST" latency 100ms
        ip netns exec $SWITCH tc qdisc add dev "vgs$index" root tbf rate "${RATE_MBIT}mbit" burst "$BURST" latency 100ms
    done
}

address() { echo "10.77.$(($1 / 200)).$(($1 % 200 + 1))"; }

setup
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom > "$WORK/artifact.bin"
SIZE=$((SIZE_MIB * 1024 * 1024))
BYTES_PER_SECOND=$((RATE_MBIT * 1000000 / 8))
BOUND=$(awk -v s=$SIZE -v b=$BYTES_PER_SECOND -v n=$PEERS 'BEGIN { a = s / b; c = n * s / (b + n * b); printf "%.2f", (a > c ? a : c) }')
echo "tier 2: $PEERS peers and an origin in network namespaces, every link ${RATE_MBIT} Mbit/s both ways (tc tbf), a ${SIZE_MIB} MiB artifact"
echo "fluid lower bound max(S/B_origin, S/d, N*S/(B_origin + sum u)) = $BOUND s"
: > "$WORK/results"
for run in $(seq 1 "$RUNS"); do
    : > "$WORK/pids"
    rm -rf "$WORK"/peer-* "$WORK"/out-*
    ORIGIN="$(address 0):7700"
    ip netns exec vgp-0 "$BIN" origin "$ORIGIN" "$WORK/artifact.bin" "$WORK/manifest.json" > "$WORK/origin.log" 2>&1 &
    echo $! >> "$WORK/pids"
    while [ ! -s "$WORK/manifest.json" ] || ! grep -q listening "$WORK/origin.log"; do sleep 0.2; done
    if [ "$PRETOUCH" = 1 ]; then
        # On a virtual machine that hands free memory back to its host, the first write to each
        # page costs a fault in the host, many times the copy itself; with 33 hosts on one
        # machine that tax, not the distribution, sets the pace. A real host's page cache is
        # backed already, so each peer's data file is written once (zeros, nothing a peer may
        # trust: it holds no piece until it has fetched and checked it) before the clock starts.
        ARTIFACT=$(sed -n 's/.*"sha256":"\([0-9a-f]*\)".*/\1/p' "$WORK/manifest.json")
        for index in $(seq 1 "$PEERS"); do
            mkdir -p "$WORK/peer-$index"
            head -c "$SIZE" /dev/zero > "$WORK/peer-$index/$ARTIFACT.part"
        done
    fi
    # Every peer waits for START, so that the time it takes to launch them is not counted.
    START=$(awk -v now="$(date +%s.%N)" -v peers="$PEERS" 'BEGIN { printf "%.3f", now + 1 + peers / 10 }')
    for index in $(seq 1 "$PEERS"); do
        ip netns exec "vgp-$index" "$BIN" peer "$ORIGIN" "$(address "$index"):7701" "host-$index" \
            "$WORK/manifest.json" "$WORK/peer-$index" "$START" > "$WORK/out-$index" 2>&1 &
        echo $! >> "$WORK/pids"
    done
    DEADLINE=$(( $(date +%s) + 600 ))
    while [ "$(cat "$WORK"/out-* | grep -c verified)" -lt "$PEERS" ]; do
        if [ "$(date +%s)" -gt "$DEADLINE" ]; then echo "run $run: not every peer finished in 600 s" >&2; cat "$WORK"/out-* >&2; exit 1; fi
        if grep -q "netns_peer:" "$WORK"/out-*; then echo "run $run: a peer failed" >&2; grep "netns_peer:" "$WORK"/out-* >&2; exit 1; fi
        sleep 0.2
    done
    LAST=$(cat "$WORK"/out-* | sed -n 's/.*, at \([0-9.]*\)$/\1/p' | sort -n | tail -1)
    FIRST=$(cat "$WORK"/out-* | sed -n 's/.*, at \([0-9.]*\)$/\1/p' | sort -n | head -1)
    EGRESS=$(ip netns exec vgp-0 "$BIN" egress "$ORIGIN")
    for pid in $(cat "$WORK/pids"); do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ -n "${LOGS:-}" ]; then
        mkdir -p "$LOGS/run-$run" && cp "$WORK"/origin.log "$WORK"/out-* "$LOGS/run-$run/"
    fi
    awk -v start=$START -v first=$FIRST -v last=$LAST -v bound=$BOUND -v egress=$EGRESS -v s=$SIZE -v run=$run 'BEGIN {
        printf "run %d: first verified copy %.2f s, last verified copy %.2f s, ratio %.2f (goal <= 1.3), origin egress %.2f x S\n",
            run, first - start, last - start, (last - start) / bound, egress / s }' | tee -a "$WORK/results"
    sleep 1
done
sort -t" " -k11 -n "$WORK/results" | awk -v runs="$RUNS" 'NR == int(runs / 2) + 1 { sub(/^run [0-9]+:/, "median:"); print }'
