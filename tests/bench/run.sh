#!/bin/sh
# run.sh BUILD -- `make bench`: codec micro-benchmarks, then the peer
# scenarios against a local fanoutd with `fanout bench` (see
# docs/BENCHMARKS.md). Run it on an otherwise idle machine.
set -eu
build=${1:-build}
echo "== codec"
"$build/tests/bench/bench_codec"
echo "== idle connections"
"$build/tests/bench/bench_idle" 10000
if [ ! -x "$build/fanout" ] || ! "$build/fanout" bench --help >/dev/null 2>&1; then
    echo "== fanout bench not built: skipping the broker scenarios"
    exit 0
fi
port=${FO_BENCH_PORT:-17400}
http=$((port + 1))
"$build/fanoutd" --listen 127.0.0.1:$port --http 127.0.0.1:$http --log-level warn &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT INT TERM
i=0
until "$build/fanout" stats --http 127.0.0.1:$http --raw >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -lt 100 ] || { echo "fanoutd did not start" >&2; exit 1; }
    sleep 0.1
done
s=127.0.0.1:$port
echo "== flood-1x1  (1 pub -> 1 sub, 1,000,000 x 128 B)"
"$build/fanout" bench -s $s --pubs 1 --subs 1 --msgs 1000000 --size 128
echo "== flood-1x8  (1 pub -> 8 subs, 200,000 x 128 B)"
"$build/fanout" bench -s $s --pubs 1 --subs 8 --msgs 200000 --size 128
echo "== flood-4k   (1 pub -> 1 sub, 100,000 x 4096 B)"
"$build/fanout" bench -s $s --pubs 1 --subs 1 --msgs 100000 --size 4096
echo "== rate-20k   (1 pub -> 1 sub, 100,000 x 128 B at 20,000/s)"
"$build/fanout" bench -s $s --pubs 1 --subs 1 --msgs 100000 --size 128 --rate 20000
