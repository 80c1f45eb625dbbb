#!/bin/bash
# netns_mcast.sh -- authenticated multicast across network namespaces,
# with loss and an attacker on the segment.
#
# Builds its own little network, unique to this run (names carry the PID):
#
#   ns fomcB-PID: fanoutd on br0 198.18.0.1 (bridge, multicast snooping off),
#        |        plain TCP :7400 and TLS :7443
#        |-- veth --> ns fomc1-PID: eth0 198.18.0.2   subscriber 1 (clean)
#        |                                            subscriber 3 (plain TCP)
#        |-- veth --> ns fomc2-PID: eth0 198.18.0.3   subscriber 2 (lossy)
#        `-- veth --> ns fomcX-PID: eth0 198.18.0.4   the attacker
#
# A group key is given only over TLS or loopback. Subscribers 1 and 2
# connect to the TLS listener (tls://, verifying the test certificate,
# which names the broker's address): they get the key and receive by
# multicast. Subscriber 2's namespace drops every 5th
# datagram of the group with iptables (-m statistic --mode nth; this kernel
# has no netem): it must detect the gaps and repair them over TCP.
# Subscriber 3 connects over plain TCP from its host: no key, so it joins
# no group and the broker sends it everything by TCP.
#
# The attacker (netns_inject.py) captures real datagrams of the first half
# of the burst, then replays them, cuts them short, changes one, makes up
# datagrams of the broker's epoch with the next sequence numbers, and one of
# a newer epoch (which used to silence a receiver until it reconnected).
# All three subscribers must still print all N messages exactly once, in
# order, and nothing else; subscriber 1's counters must name each forgery.
# The broker retains enough (--retention-msgs) that the burst is still
# there when repairs arrive on a busy machine.
#
# Everything lives inside the three namespaces (the bridge and both veth
# ends included), so the host's interfaces, routes and iptables (dockerd's
# FORWARD DROP policy) are never touched; the bridge's own ACCEPT rule is
# in the broker namespace and goes with it. Fixed ports are safe here: no
# one else is in these namespaces. Cleanup runs on any exit (trap).
#
# Needs root, ip(8), iptables, openssl and python3; otherwise exits 77
# (skip) saying why.
# Prints "N passed, N failed" last; exits non-zero on failure.
set -u
BUILD=${FO_BUILD:-build}
N=${FO_NETNS_N:-2000}
TMO=${FO_NETNS_TIMEOUT:-30}

skip() { echo "SKIP: $*"; echo "0 passed, 0 failed, 1 skipped"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root to create network namespaces"
command -v ip >/dev/null || skip "ip(8) not installed (iproute2)"
command -v iptables >/dev/null || skip "iptables not installed (apt-get install iptables)"
command -v openssl >/dev/null || skip "openssl not installed"
PY=/usr/bin/python3
[ -x "$PY" ] || skip "no $PY"
[ -x "$BUILD/fanoutd" ] && [ -x "$BUILD/fanout" ] || skip "no $BUILD/fanoutd or $BUILD/fanout"
HERE=$(cd "$(dirname "$0")" && pwd)

P=$$
NB=fomcB-$P; N1=fomc1-$P; N2=fomc2-$P; NX=fomcX-$P
GROUP=239.$((P % 200 + 20)).$(( (P / 200) % 250 + 1)).$(( (P / 50000) % 250 + 1))
GPORT=5500
BADDR=198.18.0.1
TMP=$(mktemp -d /tmp/fanout-netns.XXXXXX)
pids=""
NSES="$NX $N2 $N1 $NB"
# shellcheck source=tests/integration/netns_lib.sh
. "$HERE/netns_lib.sh"                 # netns_cleanup, ok, bad, finish
trap netns_cleanup EXIT
trap 'exit 1' INT TERM

check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
die() { bad "$*"; for f in "$TMP"/*.err; do [ -s "$f" ] && sed "s|^|  $(basename "$f"): |" "$f" | tail -20; done; finish; }

nx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# ---------------------------------------------------------------- network
setup_net() {
    ip netns add "$NB" && ip netns add "$N1" && ip netns add "$N2" && ip netns add "$NX" || return 1
    nx "$NB" ip link set lo up || return 1
    nx "$NB" ip link add br0 type bridge mcast_snooping 0 || return 1
    nx "$NB" ip addr add "$BADDR/24" dev br0 || return 1
    nx "$NB" ip link set br0 up || return 1
    local i=1
    for ns in "$N1" "$N2" "$NX"; do
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
subscribed() { [ "$(metric fanout_subscriptions)" = 3 ]; }
alive() { kill -0 "$1" 2>/dev/null; }
lines() { [ "$(wc -l <"$1")" -ge "$2" ]; }
all_printed() { lines "$TMP/sub1.out" "$1" && lines "$TMP/sub2.out" "$1" && lines "$TMP/sub3.out" "$1"; }

# ---------------------------------------------------------------- run
setup_net || die "network setup (bridge, veths, iptables in namespaces)"
ok "network: 4 namespaces, bridge, 3 veths, loss rule"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj /CN=fanout-netns -addext "subjectAltName=IP:$BADDR" -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>"$TMP/openssl.err" \
    || die "test certificate (openssl req)"

# (ip netns exec execs: $! is the process itself, so kill/wait reach it)
ip netns exec "$NB" "$BUILD/fanoutd" --listen "$BADDR:7400" --allow-anonymous --http 127.0.0.1:7401 --threads 2 \
    --tls-listen "$BADDR:7443" --tls-cert "$TMP/cert.pem" --tls-key "$TMP/key.pem" \
    --mcast-group "t.>=$GROUP:$GPORT" --mcast-if "$BADDR" --mcast-ttl 1 \
    --retention-msgs 100000 --log-level warn \
    >"$TMP/broker.out" 2>"$TMP/broker.err" &
bpid=$!; pids="$pids $bpid"
wait_for 10 healthy || die "broker did not become healthy"
ok "broker up in $NB (plain and TLS)"

# the attacker listens first: it keeps the first datagrams of the burst
mkdir -p "$TMP/cap"
nx "$NX" "$PY" "$HERE/netns_inject.py" capture "$GROUP" "$GPORT" 198.18.0.4 "$TMP/cap" 3 \
    2>"$TMP/capture.err" &
pids="$pids $!"
# (joined before anything is published: python may take a while to start)
wait_for 10 test -e "$TMP/cap/ready" || die "the attacker did not join the group"

# subscribers 1 and 2 over TLS: keyed
i=1
for ns in "$N1" "$N2"; do
    ip netns exec "$ns" "$BUILD/fanout" sub -s "tls://$BADDR:7443" --tls-ca "$TMP/cert.pem" \
        --multicast --iface "198.18.0.$((i + 1))" \
        --stats -n "$N" 't.>' >"$TMP/sub$i.out" 2>"$TMP/sub$i.err" &
    eval "spid$i=$!"; pids="$pids $!"
    i=$((i + 1))
done
# subscriber 3: plain TCP from another host -- no key
ip netns exec "$N1" "$BUILD/fanout" sub -s "$BADDR:7400" --multicast --iface 198.18.0.2 \
    --stats -n "$N" 't.>' >"$TMP/sub3.out" 2>"$TMP/sub3.err" &
spid3=$!; pids="$pids $!"
wait_for 10 subscribed || die "subscribers did not subscribe"
ok "three multicast subscribers (two over TLS)"

# The first half in one burst; the attack; the second half. Should the
# burst's last datagram be the one dropped, no later message shows it: the
# receiver's tail probe does.
H=$((N / 2))
seq 1 "$H" | nx "$NB" "$BUILD/fanout" pub -s "$BADDR:7400" t.x 2>"$TMP/pub.err" \
    || die "publish failed"
wait_for "$TMO" all_printed "$H" || die "the first $H messages did not arrive"
wait_for 10 test -e "$TMP/cap/done" || die "the attacker captured no datagrams"
attack=$(nx "$NX" "$PY" "$HERE/netns_inject.py" send "$GROUP" "$GPORT" 198.18.0.4 "$TMP/cap" t.x $((H + 1)) \
    2>"$TMP/inject.err") || die "the attacker could not send"
echo "  attacker sent: $attack"
seq $((H + 1)) "$N" | nx "$NB" "$BUILD/fanout" pub -s "$BADDR:7400" t.x 2>>"$TMP/pub.err" \
    || die "publish failed"
any_alive() { alive "$spid1" || alive "$spid2" || alive "$spid3"; }
none_alive() { ! any_alive; }
wait_for "$TMO" none_alive || echo "  subscribers still running after ${TMO}s"
for i in 1 2 3; do
    check "subscriber $i finished" eval "wait \$spid$i"
done

expect=$(seq 1 "$N")
for i in 1 2 3; do
    check "subscriber $i: $N messages, once each, in order, none forged" \
        [ "$(cat "$TMP/sub$i.out")" = "$expect" ]
done
# --stats: "received R gaps G repaired P lost L [datagrams D dropped X
# forged F replayed R foreign E]"
sstat() { awk -v k="$2" '/received/ { for (i = 1; i < NF; i++) if ($i == k) v = $(i + 1) } END { print v }' "$TMP/sub$1.err"; }
astat() { echo "$attack" | awk -v k="$1" '{ for (i = 1; i < NF; i++) if ($i == k) print $(i + 1) }'; }
for i in 1 2 3; do echo "  sub$i: $(grep -h received "$TMP/sub$i.err" | tail -1)"; done
check "subscriber 1 reports stats" [ -n "$(sstat 1 received)" ]
check "subscriber 1 refused every replay ($(astat replays))" [ "$(sstat 1 replayed)" = "$(astat replays)" ]
check "subscriber 1 refused every tampered or made-up datagram ($(astat tampered))" \
    [ "$(( $(sstat 1 dropped) - $(sstat 1 replayed) - $(sstat 1 foreign) ))" = "$(astat tampered)" ]
check "subscriber 1 refused the newer epoch" [ "$(sstat 1 foreign)" = 1 ]
check "subscriber 2 refused forgeries too" [ "$(sstat 2 forged)" -gt 0 ] 2>/dev/null
check "subscriber 3 (plain TCP, remote) got no key" grep -q "without a key" "$TMP/sub3.err"
check "subscriber 3 joined no group, got all by TCP" \
    [ "x$(sstat 3 datagrams)" = x -a "$(sstat 3 received)" = "$N" ]
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
