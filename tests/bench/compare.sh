#!/bin/sh
# compare.sh PEERS_SH -- the peers' figures and fanout's, same machine,
# same hour, as the table in docs/BENCHMARKS.md.
#
#   make bench-compare PEERS=/path/to/peers.sh > /tmp/compare.md
#
# PEERS_SH is the peer benchmark script of the shared peer tools (not part
# of this repository); without it this script stops with exit 2.
# 1. runs PEERS_SH (nats-server, redis, mosquitto with one load generator);
# 2. runs the same four scenarios against a local fanoutd with
#    `fanout bench --json`, RUNS times each (default 5), and takes the
#    median run by deliveries/s;
# 3. prints both, raw, and a markdown table with the ratios.
# Run it on an otherwise idle machine: it measures, it does not test.
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
peers=${1:-}
if [ -z "$peers" ] || [ ! -f "$peers" ]; then
    echo "compare.sh: ${peers:+$peers: }give the peer benchmark script (not part of this repository): make bench-compare PEERS=/path/to/peers.sh" >&2
    exit 2
fi
build=${BUILD:-$here/build}
runs=${RUNS:-5}
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT INT TERM
pid=

echo "## machine"
echo
echo '```'
echo "$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'
date -u '+%Y-%m-%d %H:%M UTC'
echo '```'

echo
echo "## peers ($(basename "$peers"))"
echo
echo '```'
bash "$peers" 2>&1 | tee "$work/peers.txt"
echo '```'

port=$((20000 + $$ % 20000))
"$build/fanoutd" --listen 127.0.0.1:$port --http 127.0.0.1:$((port + 1)) --log-level warn &
pid=$!
i=0
until "$build/fanout" stats --http 127.0.0.1:$((port + 1)) --raw >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -lt 100 ] || { echo "fanoutd did not start" >&2; exit 1; }
    sleep 0.1
done

field() { sed -E "s/.*\"$1\":([0-9.]+).*/\1/" "$2"; }
lat() { sed -E "s/.*\"latency_us\":\{[^}]*\"$1\":([0-9.]+).*/\1/" "$2"; }

# scenario name, bench args
run_scenario() {
    name=$1; shift
    for r in $(seq "$runs"); do
        "$build/fanout" bench -s 127.0.0.1:$port "$@" --json > "$work/$name.$r.json"
        echo "$(field deliveries_per_s "$work/$name.$r.json") $r"
    done | sort -n | awk -v m=$(( (runs + 1) / 2 )) 'NR == m { print $2 }' > "$work/$name.median"
    r=$(cat "$work/$name.median")
    cp "$work/$name.$r.json" "$work/$name.json"
}

echo
echo "## fanout bench (median of $runs runs)"
echo
echo '```'
run_scenario flood-1x1 --pubs 1 --subs 1 --msgs 1000000 --size 128
run_scenario flood-1x8 --pubs 1 --subs 8 --msgs 200000 --size 128
run_scenario flood-4k  --pubs 1 --subs 1 --msgs 100000 --size 4096
run_scenario rate-20k  --pubs 1 --subs 1 --msgs 100000 --size 128 --rate 20000
for s in flood-1x1 flood-1x8 flood-4k rate-20k; do
    printf '%-10s %s\n' "$s" "$(cat "$work/$s.json")"
done
echo '```'

peer() { # scenario proto -> deliveries_per_s
    awk -v s="$1" -v p="$2" '$1 == s && $2 == p { for (i = 3; i <= NF; i++) if ($i ~ /^deliveries_per_s=/) { sub(/.*=/, "", $i); print $i } }' "$work/peers.txt"
}
peerlat() { # scenario proto key
    awk -v s="$1" -v p="$2" -v k="$3" '$1 == s && $2 == p { for (i = 3; i <= NF; i++) if ($i ~ "^" k "=") { sub(/.*=/, "", $i); print $i } }' "$work/peers.txt"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'; }
m() { awk -v v="$1" 'BEGIN { if (v == "") print "-"; else printf "%.2f M", v / 1e6 }'; }

echo
echo "## table"
echo
echo "| scenario (128 B unless said) | nats-server | redis | mosquitto | **fanout** | fanout / nats | fanout / best peer |"
echo "|---|---|---|---|---|---|---|"
for s in flood-1x1 flood-1x8 flood-4k; do
    f=$(field deliveries_per_s "$work/$s.json")
    n=$(peer $s nats); r=$(peer $s redis); q=$(peer $s mqtt)
    best=$(printf '%s\n%s\n%s\n' "${n:-0}" "${r:-0}" "${q:-0}" | sort -g | tail -1)
    echo "| $s, deliveries/s | $(m "$n") | $(m "$r") | $(m "$q") | **$(m "$f")** | $(ratio "$f" "${n:-0}") | $(ratio "$f" "$best") |"
done
s=rate-20k
row="| rate-20k p50 / p99 / p99.9 µs |"
for p in nats redis mqtt; do
    row="$row $(peerlat $s $p p50_us) / $(peerlat $s $p p99_us) / $(peerlat $s $p p999_us) |"
done
row="$row **$(lat p50 "$work/$s.json") / $(lat p99 "$work/$s.json") / $(lat p999 "$work/$s.json")** | | |"
echo "$row"
