#!/usr/bin/env bash
# compare.sh PEERS_SH -- fanout beside nats-server, redis and mosquitto,
# one load generator for all four, same machine, same hour: the table of
# docs/BENCHMARKS.md.
#
#   make bench-compare PEERS=/path/to/peers.sh > /tmp/compare.md
#   RUNS=5 PEERS_TLS=1 make bench-compare PEERS=...        (every broker over TLS)
#
# PEERS_SH is the shared peer benchmark script (not part of this
# repository); its directory holds the generator this script builds and
# uses for every broker (peerbench.c) and the relay bound (relaybound.c).
# Without it the script stops with exit 2.
#
# For each broker it starts (the flags peers.sh uses: loopback, defaults)
# it runs each scenario RUNS times (default 5) with the same generator and
# reports the median, the min-max, and the broker's CPU (utime + stime of
# its process over the runs, per million messages published). Then
# fanout's own `fanout bench` for the same scenarios, and a markdown table
# with the ratios. Scenarios (128 B payloads unless said):
#   flood-1x1   1 publisher -> 1 subscriber, 1,000,000 messages
#   flood-1x8   1 -> 8, 200,000 messages
#   flood-4k    1 -> 1, 100,000 messages of 4096 B
#   flood-4x4   4 publishers -> 4 subscribers on 4 topics (-P 4 -T 4), 1,000,000 (nats, fanout)
#   rate-20k    1 -> 1, 100,000 messages at 20,000/s (latency percentiles)
# Run it on an otherwise idle machine: it measures, it does not test.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
peers=${1:-}
if [ -z "$peers" ] || [ ! -f "$peers" ]; then
    echo "compare.sh: ${peers:+$peers: }give the peer benchmark script (not part of this repository): make bench-compare PEERS=/path/to/peers.sh" >&2
    exit 2
fi
tools=$(cd "$(dirname "$peers")" && pwd)
for f in peerbench.c relaybound.c; do
    [ -f "$tools/$f" ] || { echo "compare.sh: $tools/$f is missing (it comes with $peers)" >&2; exit 2; }
done
build=${BUILD:-$here/build}
runs=${RUNS:-5}
tls=${PEERS_TLS:-0}; [ "$tls" = 0 ] && tls=
work=$(mktemp -d)
bpid=
trap '[ -n "$bpid" ] && kill "$bpid" 2>/dev/null; rm -rf "$work"' EXIT INT TERM

need=()
command -v nats-server >/dev/null || need+=(nats-server)
command -v redis-server >/dev/null || need+=(redis-server)
command -v mosquitto >/dev/null || need+=(mosquitto)
[ -f /usr/include/openssl/ssl.h ] || need+=(libssl-dev)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
cc -O2 -o "$work/peerbench" "$tools/peerbench.c" -lpthread -lm -lssl -lcrypto
cc -O2 -o "$work/relaybound" "$tools/relaybound.c" -lpthread

pb=()
if [ -n "$tls" ]; then      # a CA and a server certificate for IP:127.0.0.1, as peers.sh makes them
    ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
    {
        openssl req -x509 "${ec[@]}" -keyout "$work/ca.key" -out "$work/ca.pem" -days 2 -subj "/CN=compare CA" \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign &&
        openssl req -new "${ec[@]}" -keyout "$work/server.key" -out "$work/server.csr" -subj "/CN=127.0.0.1" &&
        printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' >"$work/ext.cnf" &&
        openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
            -out "$work/server.pem" -days 2 -extfile "$work/ext.cnf"
    } >"$work/openssl.log" 2>&1 || { cat "$work/openssl.log" >&2; exit 1; }
    pb=(-S "$work/ca.pem")
fi
crt=$work/server.pem key=$work/server.key

start() { # proto -> bpid, port
    case $1 in
    nats)   port=24222
            if [ -n "$tls" ]; then nats-server -a 127.0.0.1 -p $port --tls --tlscert "$crt" --tlskey "$key" >"$work/nats.log" 2>&1 &
            else nats-server -a 127.0.0.1 -p $port >"$work/nats.log" 2>&1 & fi ;;
    redis)  port=26379
            if [ -n "$tls" ]; then redis-server --port 0 --tls-port $port --tls-cert-file "$crt" --tls-key-file "$key" \
                --tls-ca-cert-file "$work/ca.pem" --tls-auth-clients no --bind 127.0.0.1 --save '' --appendonly no >"$work/redis.log" 2>&1 &
            else redis-server --port $port --bind 127.0.0.1 --save '' --appendonly no >"$work/redis.log" 2>&1 & fi ;;
    mqtt)   port=21883
            printf 'listener %s 127.0.0.1\nallow_anonymous true\n' $port >"$work/m.conf"
            [ -n "$tls" ] && printf 'cafile %s\ncertfile %s\nkeyfile %s\nuser %s\n' "$work/ca.pem" "$crt" "$key" "$(id -un)" >>"$work/m.conf"
            mosquitto -c "$work/m.conf" >"$work/mqtt.log" 2>&1 & ;;
    fanout) port=27400
            if [ -n "$tls" ]; then "$build/fanoutd" --listen 127.0.0.1:27402 --tls-listen 127.0.0.1:$port --tls-cert "$crt" \
                --tls-key "$key" --http 127.0.0.1:27401 >"$work/fanout.log" 2>&1 &
            else "$build/fanoutd" --listen 127.0.0.1:$port --http 127.0.0.1:27401 >"$work/fanout.log" 2>&1 & fi ;;
    esac
    bpid=$!
    sleep 1
    if ! kill -0 "$bpid" 2>/dev/null; then
        echo "compare.sh: $1 did not start (port $port taken?):" >&2
        tail -5 "$work/$1.log" >&2
        exit 1
    fi
}
cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }     # clock ticks
hz=$(getconf CLK_TCK)

# scenario proto msgs args... : RUNS runs; one line
# "scenario proto median min max p50 p99 p999 cpu_s_per_M"
measure() {
    local s=$1 p=$2 msgs=$3; shift 3
    local c0 c1 out
    c0=$(cpu "$bpid")
    : >"$work/runs"
    for r in $(seq "$runs"); do
        out=$(timeout 180 "$work/peerbench" ${pb[@]+"${pb[@]}"} "$@" 2>&1 | tail -1) || out=
        echo "$out" >>"$work/$s.$p.raw"
        echo "$out" | sed -nE 's/.*deliveries_per_s=([0-9]+).*p50_us=([0-9.]+) p99_us=([0-9.]+) p999_us=([0-9.]+).*/\1 \2 \3 \4/p' >>"$work/runs"
    done
    c1=$(cpu "$bpid")
    # each column's own median (the runs' p99s sorted by themselves, not
    # the p99 of the run with the median rate)
    awk -v s="$s" -v p="$p" -v n="$runs" -v cpu=$((c1 - c0)) -v hz="$hz" -v msgs="$msgs" '
        function sort(x, k,   i, j, t) { for (i = 2; i <= k; i++) for (j = i; j > 1 && x[j - 1] > x[j]; j--) { t = x[j]; x[j] = x[j - 1]; x[j - 1] = t } }
        { r[NR] = $1 + 0; a[NR] = $2 + 0; b[NR] = $3 + 0; c[NR] = $4 + 0 }
        END { if (!NR) { print s, p, "-", "-", "-", "-", "-", "-", "-"; exit }
              sort(r, NR); sort(a, NR); sort(b, NR); sort(c, NR)
              m = int((NR + 1) / 2)
              printf "%s %s %d %d %d %s %s %s %.3f\n", s, p, r[m], r[1], r[NR], a[m], b[m], c[m],
                     (cpu / hz) / (n * msgs / 1e6) }' "$work/runs" >>"$work/results"
}

echo "## machine"
echo
echo '```'
echo "$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'
date -u '+%Y-%m-%d %H:%M UTC'
echo "runs per scenario: $runs${tls:+; every connection TLS (peerbench -S)}"
echo "relay bound (140-byte messages/s, no parsing): $("$work/relaybound" 2000000000 2>&1 | tail -1)"
echo '```'

: >"$work/results"
for p in nats redis mqtt fanout; do
    start $p
    n1=1000000; n8=200000; [ $p = mqtt ] && { n1=200000; n8=50000; }
    measure flood-1x1 $p $n1 $p $port 1 $n1 128
    measure flood-1x8 $p $n8 $p $port 8 $n8 128
    measure flood-4k  $p 100000 $p $port 1 100000 4096
    if [ $p = nats ] || [ $p = fanout ]; then
        measure flood-4x4 $p 1000000 -P 4 -T 4 $p $port 4 1000000 128
    fi
    measure rate-20k  $p 100000 $p $port 1 100000 128 20000
    kill "$bpid" 2>/dev/null || true; wait "$bpid" 2>/dev/null || true; bpid=
done

echo
echo "## raw (peerbench, every run)"
echo
echo '```'
for f in "$work"/*.raw; do sed "s/^/$(basename "$f" .raw) /" "$f"; done
echo '```'

# fanout's own client, for the record (not in the ratios)
if [ -z "$tls" ]; then
    start fanout
    echo
    echo "## fanout bench (libfanout), one run each"
    echo
    echo '```'
    for a in "--pubs 1 --subs 1 --msgs 1000000" "--pubs 1 --subs 8 --msgs 200000" \
             "--pubs 1 --subs 1 --msgs 100000 --size 4096" "--pubs 4 --subs 4 --topics 4 --msgs 1000000" \
             "--pubs 1 --subs 1 --msgs 100000 --rate 20000"; do
        # shellcheck disable=SC2086
        echo "fanout bench $a: $("$build/fanout" bench -s 127.0.0.1:$port $a --csv 2>&1 | tail -1)"
    done
    echo '```'
    kill "$bpid" 2>/dev/null || true; wait "$bpid" 2>/dev/null || true; bpid=
fi

get() { awk -v s="$1" -v p="$2" -v k="$3" '$1 == s && $2 == p { print $k }' "$work/results"; }
mps() { awk -v v="$1" 'BEGIN { if (v == "" || v == "-") print "-"; else printf "%.2f M", v / 1e6 }'; }
rng() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || a == "-") print ""; else printf " (%.2f-%.2f)", a / 1e6, b / 1e6 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || a == "-" || b == "" || b == "-" || b == 0) print "-"; else printf "%.2fx", a / b }'; }

echo
echo "## table (median of $runs; min-max in parentheses; CPU = broker CPU-seconds per million messages published)"
echo
echo "| scenario | nats-server | redis | mosquitto | **fanout** | fanout / nats | fanout / best peer |"
echo "|---|---|---|---|---|---|---|"
for s in flood-1x1 flood-1x8 flood-4k flood-4x4; do
    row="| $s, deliveries/s |"
    best=0
    for p in nats redis mqtt fanout; do
        v=$(get $s $p 3)
        star=; [ $p = fanout ] && star='**'
        row="$row $star$(mps "$v")$(rng "$(get $s $p 4)" "$(get $s $p 5)")$star |"
        if [ $p != fanout ] && [ -n "$v" ] && [ "$v" != - ] && [ "$v" -gt "$best" ]; then best=$v; fi
    done
    f=$(get $s fanout 3)
    echo "$row $(ratio "$f" "$(get $s nats 3)") | $(ratio "$f" "$best") |"
done
row="| flood-1x1, CPU-s per M |"
for p in nats redis mqtt fanout; do row="$row $(get flood-1x1 $p 9) |"; done
echo "$row $(ratio "$(get flood-1x1 fanout 9)" "$(get flood-1x1 nats 9)") | |"
row="| rate-20k p50 / p99 / p99.9 µs |"
for p in nats redis mqtt fanout; do row="$row $(get rate-20k $p 6) / $(get rate-20k $p 7) / $(get rate-20k $p 8) |"; done
echo "$row | |"
