#!/bin/bash
# netns_partition.sh -- a cluster of three brokers is split by iptables and
# heals (docs/CLUSTER.md, Failures: partitions).
#
# Builds its own little network, unique to this run (names carry the PID):
#
#   ns fopBr-PID: bridge br0
#        |-- veth --> ns fop1-PID: eth0 198.18.1.1   broker p1
#        |-- veth --> ns fop2-PID: eth0 198.18.1.2   broker p2
#        `-- veth --> ns fop3-PID: eth0 198.18.1.3   broker p3, its subscriber
#
# Each broker listens on its own address (client 7400, cluster 7402,
# /metrics on its 127.0.0.1:7401) with the three cluster addresses as its
# peers and a cluster secret. A subscriber on p3 gets what a publisher on
# p1 sends; then p3's namespace drops everything from and to the other two
# (iptables, INPUT and OUTPUT: no RST, the links go silent): within the
# links' silence timeout each side drops the other from its members and
# places the topics over what it has; publishing on p1 goes on (what is
# sent across the split is lost for p3's subscriber: at most once, as
# core NATS). Then the rules go: the links come back by themselves, the
# members are whole again, and what p1 publishes reaches p3's subscriber
# again -- every message of the healed run, in order.
#
# Everything lives inside the four namespaces (the bridge and the veth ends
# included), so the host's interfaces, routes and iptables are never
# touched; the rules are in p3's namespace and go with it. Fixed ports are
# safe here: no one else is in these namespaces. Cleanup runs on any exit.
#
# Needs root, ip(8) and iptables; otherwise exits 77 (skip) saying why.
# Prints "N passed, N failed" last; exits non-zero on failure.
set -u
BUILD=${FO_BUILD:-build}

skip() { echo "SKIP: $*"; echo "0 passed, 0 failed, 1 skipped"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root to create network namespaces"
command -v ip >/dev/null || skip "ip(8) not installed (iproute2)"
command -v iptables >/dev/null || skip "iptables not installed (apt-get install iptables)"
[ -x "$BUILD/fanoutd" ] && [ -x "$BUILD/fanout" ] || skip "no $BUILD/fanoutd or $BUILD/fanout"

P=$$
NBR=fopBr-$P; N1=fop1-$P; N2=fop2-$P; N3=fop3-$P
TMP=$(mktemp -d /tmp/fanout-part.XXXXXX)
PEERS=198.18.1.1:7402,198.18.1.2:7402,198.18.1.3:7402
pids=""
NSES="$N3 $N2 $N1 $NBR"
# shellcheck source=tests/integration/netns_lib.sh
. "$(cd "$(dirname "$0")" && pwd)/netns_lib.sh"   # netns_cleanup, ok, bad, finish
trap netns_cleanup EXIT
trap 'exit 1' INT TERM

die() { bad "$*"; for f in "$TMP"/*.log; do [ -s "$f" ] && sed "s|^|  $(basename "$f"): |" "$f" | tail -15; done; finish; }

# nsenter, not ip netns exec: nothing here needs /sys remounted
nx() { local ns=$1; shift; nsenter --net="/run/netns/$ns" "$@"; }

setup_net() {
    ip netns add "$NBR" && ip netns add "$N1" && ip netns add "$N2" && ip netns add "$N3" || return 1
    nx "$NBR" ip link add br0 type bridge || return 1
    nx "$NBR" ip link set br0 up || return 1
    local i=1
    for ns in "$N1" "$N2" "$N3"; do
        ip -n "$NBR" link add "v$i" type veth peer name eth0 netns "$ns" || return 1
        ip -n "$NBR" link set "v$i" master br0 up || return 1
        ip -n "$ns" link set lo up || return 1
        ip -n "$ns" addr add "198.18.1.$i/24" dev eth0 || return 1
        ip -n "$ns" link set eth0 up || return 1
        i=$((i + 1))
    done
    # bridged frames may pass iptables (br_netfilter): accept our bridge
    nx "$NBR" iptables -I FORWARD -i br0 -o br0 -j ACCEPT || return 1
}

# metric NS NAME: the value on that broker's /metrics (bash /dev/tcp).
metric() {
    nx "$1" bash -c 'exec 3<>/dev/tcp/127.0.0.1/7401 && printf "GET /metrics HTTP/1.0\r\n\r\n" >&3 && cat <&3' \
        2>/dev/null | awk -v m="$2" '$1 == m { print $2; exit }'
}
# wait_for SECONDS CMD...: poll CMD every 100 ms until it succeeds.
wait_for() {
    local end=$(( $(date +%s) + $1 )); shift
    until "$@"; do
        [ "$(date +%s)" -lt "$end" ] || return 1
        sleep 0.1
    done
}
members_are() {  # members_are N NS...
    local want=$1; shift
    for ns in "$@"; do [ "$(metric "$ns" fanout_cluster_members)" = "$want" ] || return 1; done
}
lines_are() { [ "$(wc -l <"$1" 2>/dev/null)" -ge "$2" ]; }

start_broker() {  # start_broker NS N
    nx "$1" "$BUILD/fanoutd" --listen "198.18.1.$2:7400" --http 127.0.0.1:7401 --allow-anonymous \
        --cluster-listen "198.18.1.$2:7402" --cluster-peers "$PEERS" --cluster-secret partition-test \
        --node-id "p$2" >"$TMP/p$2.log" 2>&1 &
    pids="$pids $!"
}

split() {  # split -A|-D: p3's namespace drops (or no longer drops) the other two
    for peer in 198.18.1.1 198.18.1.2; do
        nx "$N3" iptables "$1" INPUT -s "$peer" -j DROP || return 1
        nx "$N3" iptables "$1" OUTPUT -d "$peer" -j DROP || return 1
    done
}

setup_net || die "network namespaces, bridge and veths"
for i in 1 2 3; do start_broker "fop$i-$P" "$i"; done
wait_for 20 members_are 3 "$N1" "$N2" "$N3" || die "three brokers link (members 3 everywhere)"
ok "three brokers in three namespaces are one cluster"

# a topic homed on p3, the broker that will be cut off: the first of
# part.t0, part.t1, ... that p3 counts among the topics homed there
homed() { metric "$N3" fanout_cluster_topics_homed; }
TOPIC=""
for t in $(seq 0 40); do
    h0=$(homed)
    nx "$N1" "$BUILD/fanout" pub -s 198.18.1.1:7400 "part.t$t" probe --confirm >/dev/null 2>&1 || continue
    if [ "$(homed)" != "$h0" ]; then TOPIC=part.t$t; break; fi
done
[ -n "$TOPIC" ] || die "a topic homed on p3"

# subscribers on p3 and on p1 (JSON: the sequence numbers), a publisher on p1
nx "$N3" "$BUILD/fanout" sub -s 198.18.1.3:7400 "$TOPIC" >"$TMP/sub.out" 2>"$TMP/sub.log" &
pids="$pids $!"
nx "$N1" "$BUILD/fanout" sub -s 198.18.1.1:7400 "$TOPIC" --json >"$TMP/sub1.json" 2>"$TMP/sub1.log" &
pids="$pids $!"
interest() { [ "$(metric "$N1" 'fanout_cluster_peer_interest_entries{node="p3"}')" = 1 ] &&
             [ "$(metric "$N3" 'fanout_cluster_peer_interest_entries{node="p1"}')" = 1 ]; }
wait_for 10 interest || die "the subscribers' interest reaches the others"
seq -f 'before %g' 1 20 | nx "$N1" "$BUILD/fanout" pub -s 198.18.1.1:7400 "$TOPIC" --confirm >/dev/null 2>"$TMP/pub1.log" ||
    die "publish before the split"
if wait_for 10 lines_are "$TMP/sub.out" 20; then ok "before the split: p3's subscriber gets p1's 20"; else bad "before the split (got $(wc -l <"$TMP/sub.out"))"; fi

split -A || die "iptables rules in p3's namespace"
t0=$(date +%s)
if wait_for 30 members_are 1 "$N3" && wait_for 30 members_are 2 "$N1" "$N2"; then
    ok "split: p3 alone, p1 and p2 together (after $(( $(date +%s) - t0 )) s of silence)"
else
    bad "split: members p1 $(metric "$N1" fanout_cluster_members), p3 $(metric "$N3" fanout_cluster_members)"
fi
# the p1 side keeps publishing (and sequencing: every topic has a home on each side)
if seq -f 'during %g' 1 10 | nx "$N1" "$BUILD/fanout" pub -s 198.18.1.1:7400 "$TOPIC" --confirm >/dev/null 2>"$TMP/pub2.log"; then
    ok "during the split p1 still takes publishes (ACKed)"
else
    bad "during the split p1 still takes publishes" 
fi

split -D || die "removing the iptables rules"
t0=$(date +%s)
if wait_for 30 members_are 3 "$N1" "$N2" "$N3"; then
    ok "healed: members 3 everywhere again (after $(( $(date +%s) - t0 )) s)"
else
    bad "healed: members p1 $(metric "$N1" fanout_cluster_members), p3 $(metric "$N3" fanout_cluster_members)"
fi
wait_for 10 interest || bad "p3's interest is back at p1"
# one at a time: the first may still be numbered in p3's old epoch, which
# p1 (it saw p1's epoch meanwhile) drops and reports, so p3 numbers above
for k in $(seq 1 20); do
    nx "$N1" "$BUILD/fanout" pub -s 198.18.1.1:7400 "$TOPIC" "after $k" --confirm >/dev/null 2>>"$TMP/pub3.log" ||
        bad "publish after the heal ($k)"
done
after() { [ "$(grep -c '^after ' "$TMP/sub.out")" = 20 ]; }
if wait_for 10 after && [ "$(grep '^after ' "$TMP/sub.out")" = "$(seq -f 'after %g' 1 20)" ]; then
    ok "after the heal p3's subscriber gets all 20 of p1's, in order"
else
    bad "after the heal p3's subscriber gets all 20 (got $(grep -c '^after ' "$TMP/sub.out"))"
fi
# p1's subscriber saw the numbers of both homes: they only grow
last_after() { grep -q '"payload":"after 20"' "$TMP/sub1.json"; }
wait_for 10 last_after || bad "p1's subscriber gets the last message after the heal"
# (sort compares the digits: awk's doubles would not tell 2^60 from 2^60 + 1)
if grep -o '"seq":[0-9]*' "$TMP/sub1.json" | cut -d: -f2 | sort -C -n -u; then
    ok "p1's subscriber sees sequence numbers only grow across the split and the heal ($(grep -c '"seq"' "$TMP/sub1.json") messages)"
else
    bad "p1's subscriber saw a sequence number go back" 
    grep -o '"seq":[0-9]*\|"payload":"[^"]*"' "$TMP/sub1.json" | paste - - | tail -30
fi
finish
