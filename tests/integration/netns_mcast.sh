#!/bin/bash
# netns_mcast.sh -- multicast fan-out across network namespaces, with loss.
#
# Builds its own little network, unique to this run (names carry the PID):
#
#   ns fomcB-PID: fanoutd on br0 198.18.0.1 (bridge, multicast snooping off)
#        |-- veth --> ns fomc1-PID: eth0 198.18.0.2   subscriber 1 (clean)
#        `-- veth --> ns fomc2-PID: eth0 198.18.0.3   subscriber 2 (lossy)
#
# Both subscribers run `fanout sub --multicast --stats`; subscriber 2's
# namespace drops every 5th datagram of the group with iptables
# (-m statistic --mode nth; this kernel has no netem). Both must print all
# N messages exactly once and in order: subscriber 2 by detecting the gaps
# and repairing them over its TCP connection. The broker retains enough
# (--retention-msgs) that the burst is still there when repairs arrive on
# a busy machine.
#
# Everything lives inside the three namespaces (the bridge and both veth
# ends included), so the host's interfaces, routes and iptables (dockerd's
# FORWARD DROP policy) are never touched; the bridge's own ACCEPT rule is
# in the broker namespace and goes with it. Fixed ports are safe here: no
# one else is in these namespaces. Cleanup runs on any exit (trap).
#
# Needs root, ip(8) and iptables; otherwise exits 77 (skip) saying why.
# Prints "N passed, N failed" last; exits non-zero on failure.
set -u
BUILD=${FO_BUILD:-build}
N=${FO_NETNS_N:-2000}
TMO=${FO_NETNS_TIMEOUT:-30}

skip() { echo "SKIP: $*"; echo "0 passed, 0 failed, 1 skipped"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root to create network namespaces"
command -v ip >/dev/null || skip "ip(8) not installed (iproute2)"
command -v iptables >/dev/null || skip "iptables not installed (apt-get install iptables)"
[ -x "$BUILD/fanoutd" ] && [ -x "$BUILD/fanout" ] || skip "no $BUILD/fanoutd or $BUILD/fanout"

P=$$
NB=fomcB-$P; N1=fomc1-$P; N2=fomc2-$P
GROUP=239.$((P % 200 + 20)).$(( (P / 200) % 250 + 1)).$(( (P / 50000) % 250 + 1))
GPORT=5500
BADDR=198.18.0.1
TMP=$(mktemp -d /tmp/fanout-netns.XXXXXX)
pass=0; fail=0
pids=""

cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null; done
    for p in $pids; do wait "$p" 2>/dev/null; done
    for ns in "$N2" "$N1" "$NB"; do      # anything left inside is ours
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null
    done
    [ -n "${FO_NETNS_KEEP:-}" ] || rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

ok()   { echo "ok   $*"; pass=$((pass + 1)); }
bad()  { echo "FAIL $*"; fail=$((fail + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
finish() {
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit $?
}
die() { bad "$*"; for f in "$TMP"/*.err; do [ -s "$f" ] && sed "s|^|  $(basename "$f"): |" "$f" | tail -20; done; finish; }

nx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# ---------------------------------------------------------------- network
setup_net() {
    ip netns add "$NB" && ip netns add "$N1" && ip netns add "$N2" || return 1
    nx "$NB" ip link set lo up || return 1
    nx "$NB" ip link add br0 type bridge mcast_snooping 0 || return 1
    nx "$NB" ip addr add "$BADDR/24" dev br0 || return 1
    nx "$NB" ip link set br0 up || return 1
    local i=1
    for ns in "$N1" "$N2"; do
        nx "$NB" ip link add "v$i" type veth peer name eth0 netns "$ns" || return 1
        nx "$NB" ip link set "v$i" master br0 up || return 1
        nx "$ns" ip link set lo up || return 1
        nx "$ns" ip addr add "198.18.0.$((i + 1))/24" dev eth0 || return 1
        nx "$ns" ip link set eth0 up || return 1
        i=$((i + 1))
    done
    # bridged frames may pass iptables (br_netfilter): accept our bridge
    nx "$NB" iptables -I FORWARD -i br0 -o br0 -j ACCEPT || return 1
    # loss: subscriber 2 drops every 5th datagram of the group, from the
    # 5th on (a loss before the first datagram seen is not detectable)
    nx "$N2" iptables -A INPUT -p udp -d "$GROUP" -m statistic --mode nth \
        --every 5 --packet 4 -j DROP || return 1
}

# GET http://127.0.0.1:7401$1 inside the broker namespace (bash /dev/tcp).
http_get() {
    nx "$NB" bash -c "exec 3<>/dev/tcp/127.0.0.1/7401 && printf 'GET $1 HTTP/1.0\r\n\r\n' >&3 && cat <&3" 2>/dev/null
}
metric() { http_get /metrics | awk -v m="$1" '$1 == m { print $2; exit }'; }

# wait_for SECONDS CMD...: poll CMD every 50 ms until it succeeds.
wait_for() {
    local end=$(( $(date +%s) + $1 )); shift
    until "$@"; do
        [ "$(date +%s)" -lt "$end" ] || return 1
        sleep 0.05
    done
}
healthy() { http_get /healthz | grep -q '^HTTP/1.[01] 200'; }
subscribed() { [ "$(metric fanout_subscriptions)" = 2 ]; }
alive() { kill -0 "$1" 2>/dev/null; }

# ---------------------------------------------------------------- run
setup_net || die "network setup (bridge, veths, iptables in namespaces)"
ok "network: 3 namespaces, bridge, 2 veths, loss rule"

# (ip netns exec execs: $! is the process itself, so kill/wait reach it)
ip netns exec "$NB" "$BUILD/fanoutd" --listen "$BADDR:7400" --allow-anonymous --http 127.0.0.1:7401 --threads 2 \
    --mcast-group "t.>=$GROUP:$GPORT" --mcast-if "$BADDR" --mcast-ttl 1 \
    --retention-msgs 100000 --log-level warn \
    >"$TMP/broker.out" 2>"$TMP/broker.err" &
bpid=$!; pids="$pids $bpid"
wait_for 10 healthy || die "broker did not become healthy"
ok "broker up in $NB"

i=1
for ns in "$N1" "$N2"; do
    ip netns exec "$ns" "$BUILD/fanout" sub -s "$BADDR:7400" --multicast --iface "198.18.0.$((i + 1))" \
        --stats -n "$N" 't.>' >"$TMP/sub$i.out" 2>"$TMP/sub$i.err" &
    eval "spid$i=$!"; pids="$pids $!"
    i=$((i + 1))
done
wait_for 10 subscribed || die "subscribers did not subscribe"
ok "two multicast subscribers"

# N messages in one burst. Should the burst's last datagram be the one
# dropped, no later message shows it: the receiver's tail probe does.
seq 1 "$N" | nx "$NB" "$BUILD/fanout" pub -s "$BADDR:7400" t.x 2>"$TMP/pub.err" \
    || die "publish failed"
either_alive() { alive "$spid1" || alive "$spid2"; }
none_alive() { ! either_alive; }
wait_for "$TMO" none_alive || echo "  subscribers still running after ${TMO}s"
check "subscriber 1 finished" wait "$spid1"
check "subscriber 2 finished" wait "$spid2"

expect=$(seq 1 "$N")
for i in 1 2; do
    check "subscriber $i: $N messages, once each, in order" \
        [ "$(cat "$TMP/sub$i.out")" = "$expect" ]
done
# --stats: "received R gaps G repaired P lost L"
sstat() { awk -v k="$2" '/received/ { for (i = 1; i < NF; i++) if ($i == k) v = $(i + 1) } END { print v }' "$TMP/sub$1.err"; }
for i in 1 2; do echo "  sub$i: $(grep -h received "$TMP/sub$i.err" | tail -1)"; done
check "subscriber 1 reports stats" [ -n "$(sstat 1 received)" ]
check "subscriber 2 saw gaps" [ "$(sstat 2 gaps)" -gt 0 ] 2>/dev/null
check "subscriber 2 repaired every gap" [ "$(sstat 2 repaired)" = "$(sstat 2 gaps)" ]
check "subscriber 2 lost nothing" [ "$(sstat 2 lost)" = 0 ]
check "subscriber 1 lost nothing" [ "$(sstat 1 lost)" = 0 ]
dropped=$(nx "$N2" iptables -L INPUT -v -n -x | awk '/DROP/ { print $1; exit }')
check "iptables dropped datagrams ($dropped)" [ "${dropped:-0}" -gt 0 ]
served=$(metric fanout_repairs_served_total)
check "broker served repairs (${served:-none})" [ "${served%.*}" -gt 0 ] 2>/dev/null
check "broker sent datagrams" [ "$(metric fanout_mcast_datagrams_total | cut -d. -f1)" -gt 0 ] 2>/dev/null
kill -TERM "$bpid" 2>/dev/null
wait "$bpid"; brc=$?
check "broker stops cleanly (exit $brc)" [ "$brc" = 0 ]
pids=""
[ "$fail" -eq 0 ] || for f in "$TMP"/*.err; do sed "s|^|  $(basename "$f"): |" "$f" | tail -20; done
finish
