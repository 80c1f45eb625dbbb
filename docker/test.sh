#!/bin/sh
# test.sh -- `make docker-test`: the compose deployment, tested for real.
#
# 1. docker: installs docker.io and docker-compose (Debian, as root) when
#    missing, starts dockerd when none runs (and stops it again at the end,
#    restoring the iptables FORWARD policy it found);
# 2. the base image: docker/mkbase.sh (pull, or debootstrap + import);
# 3. builds the image from docker/Dockerfile;
# 4. brings docker/compose.yml up under its own project name, with the
#    host ports picked free by docker (FANOUT_PORT=0; the defaults are
#    17400/17401);
# 5. checks: the broker turns healthy, it made its certificates and users
#    at the first start (docker/init-certs.sh) and refuses a client without
#    a password, /healthz answers through the published port, the
#    producer sent FANOUT_DEMO_COUNT messages over TLS and the TCP
#    consumer (in order) and the multicast consumer (every one) printed
#    exactly those, the broker counted them, a short bench runs (TLS);
# 6. tears everything down even when a step fails (trap), printing the
#    containers' logs first when something failed.
#
# The last line is "N passed, N failed, N skipped"; the exit code is
# non-zero on any failure. The multicast checks are skipped (not passed)
# while the image's `fanout sub` has no --multicast. Env: FO_DOCKER_COUNT (messages, default 2000), FO_BENCH_MSGS
# (default 20000), FO_KEEP=1 (leave the stack up), FO_DOCKER_LOG (dockerd's
# log when this script starts it).
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
export DEBIAN_FRONTEND=noninteractive

COUNT=${FO_DOCKER_COUNT:-2000}
BENCH_MSGS=${FO_BENCH_MSGS:-20000}
PROJ="fotest$$"
TAG="test"
FILE=docker/compose.yml
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fo-dtest.XXXXXX")
pass=0; fail=0; skip=0
services=(broker producer consumer mcast-consumer); subs=2; mcast=1
started_dockerd=""; forward_policy=""
T0=$SECONDS

say()  { printf '[docker-test %3ss] %s\n' "$((SECONDS - T0))" "$*"; }
ok()   { pass=$((pass + 1)); printf 'ok    %s\n' "$1"; }
skip() { skip=$((skip + 1)); printf 'SKIP  %s\n' "$1"; }
bad()  { fail=$((fail + 1)); printf 'FAIL  %s\n' "$1"; [ -z "${2:-}" ] || sed 's/^/    | /' "$2" | tail -40; }
die()  { bad "$1" "${2:-}"; exit 1; }   # the EXIT trap cleans up and counts

# shellcheck source=docker/lib.sh
. docker/lib.sh                          # wait_for

apt_install() {
    local _
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        if apt-get -o DPkg::Lock::Timeout=120 update -qq &&
           apt-get -o DPkg::Lock::Timeout=120 install -y -qq --no-install-recommends "$@"; then
            return 0
        fi
        sleep 6   # another apt held the lists lock: try again
    done
    return 1
}

# ------------------------------------------------------------ teardown
cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    # A signal's trap runs inside the redirections of the command it
    # interrupted (compose up >up.log): write to the script's own output.
    exec 1>&"$OUT" 2>&"$ERR"
    [ "$rc" -eq 0 ] || [ "$fail" -gt 0 ] || { fail=1; echo "FAIL  interrupted (exit $rc)"; }
    if [ -n "${COMPOSE:-}" ] && docker info >/dev/null 2>&1; then
        if [ "$fail" -gt 0 ]; then
            say "logs of the stack:"
            compose logs --no-color --tail 20 2>&1 | sed 's/^/    | /'
        fi
        if [ "${FO_KEEP:-0}" = 1 ]; then
            say "FO_KEEP=1: stack left up as project $PROJ"
        else
            compose down --volumes --remove-orphans --timeout 5 >"$WORK/down.log" 2>&1 ||
                bad "compose down" "$WORK/down.log"
        fi
    fi
    if [ -n "$started_dockerd" ] && [ "${FO_KEEP:-0}" != 1 ]; then
        say "stopping the dockerd this test started"
        kill "$started_dockerd" 2>/dev/null
        local _; for _ in $(seq 60); do kill -0 "$started_dockerd" 2>/dev/null || break; sleep 0.5; done
        if [ -n "$forward_policy" ] && command -v iptables >/dev/null; then
            iptables -P FORWARD "$forward_policy" 2>/dev/null || true
        fi
    fi
    rm -rf "$WORK"
    echo "$pass passed, $fail failed, $skip skipped"
    [ "$fail" -eq 0 ] && exit 0 || exit 1
}
exec {OUT}>&1 {ERR}>&2
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# ------------------------------------------------------------ 1. docker
if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker-compose >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing docker.io docker-compose"
        apt_install docker.io docker-compose >"$WORK/apt.log" 2>&1 ||
            die "install docker.io docker-compose" "$WORK/apt.log"
    elif ! command -v docker >/dev/null 2>&1; then
        die "docker is not installed (as root: apt-get install docker.io docker-compose)"
    fi
fi

if ! docker info >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || die "docker does not answer and only root may start dockerd here"
    command -v iptables >/dev/null && forward_policy=$(iptables -S FORWARD 2>/dev/null | awk '$1 == "-P" { print $3; exit }')
    log=${FO_DOCKER_LOG:-/var/log/fanout-dockerd.log}
    say "starting dockerd (log: $log)"
    setsid dockerd </dev/null >"$log" 2>&1 {OUT}>&- {ERR}>&- &
    started_dockerd=$!
    wait_for 60 docker info || { cp "$log" "$WORK/dockerd.log"; die "dockerd starts" "$WORK/dockerd.log"; }
fi
ok "docker daemon answers ($(docker info --format '{{.ServerVersion}}' 2>/dev/null))"

if docker compose version >/dev/null 2>&1; then
    COMPOSE="docker compose"
elif command -v docker-compose >/dev/null 2>&1; then
    COMPOSE="docker-compose"
else
    die "neither 'docker compose' nor docker-compose is installed"
fi
# The compose command line, in COMPOSE_CMD: our project, file, and settings.
compose_cmd() {
    # shellcheck disable=SC2206
    COMPOSE_CMD=(env FANOUT_TAG="$TAG" FANOUT_PORT=0 FANOUT_HTTP_PORT=0
                 FANOUT_DEMO_COUNT="$COUNT" FANOUT_BENCH_MSGS="$BENCH_MSGS"
                 FANOUT_DEMO_SUBS="$subs"
                 $COMPOSE -p "$PROJ" -f "$FILE" --profile bench)
}
compose() { compose_cmd; "${COMPOSE_CMD[@]}" "$@"; }
say "compose: $COMPOSE ($($COMPOSE version --short 2>/dev/null || $COMPOSE version 2>/dev/null | head -1))"

# ------------------------------------------------------------ 2-3. images
sh docker/mkbase.sh >"$WORK/base.log" 2>&1 || die "base image debian:bookworm-slim" "$WORK/base.log"
ok "base image debian:bookworm-slim"

say "building fanout:$TAG"
if docker build --build-arg MAKE_JOBS=2 -f docker/Dockerfile -t "fanout:$TAG" . >"$WORK/build.log" 2>&1; then
    ok "image fanout:$TAG builds"
else
    die "image fanout:$TAG builds" "$WORK/build.log"
fi

uid=$(docker run --rm "fanout:$TAG" id -u 2>&1)
if [ -n "$uid" ] && [ "$uid" != 0 ]; then ok "image runs as a non-root user (uid $uid)"; else bad "image runs as a non-root user (got '$uid')"; fi
if docker run --rm "fanout:$TAG" sh -c 'fanoutd --help && fanout --help && fanout sub --help' >"$WORK/help.log" 2>&1; then
    ok "fanoutd and fanout run in the image"
else
    bad "fanoutd and fanout run in the image" "$WORK/help.log"
fi
# The multicast consumer needs `fanout sub --multicast`.
if ! grep -q -- '--multicast' "$WORK/help.log"; then
    services=(broker producer consumer); subs=1; mcast=0
    say "fanout sub has no --multicast: the multicast consumer is not run"
fi

# ------------------------------------------------------------ 4. stack up
say "compose up (project $PROJ, $COUNT messages)"
compose config -q >"$WORK/config.log" 2>&1 || die "compose file is valid" "$WORK/config.log"
if compose up -d --no-build "${services[@]}" >"$WORK/up.log" 2>&1; then
    ok "compose up"
else
    die "compose up" "$WORK/up.log"
fi
cid() { compose ps -q "$1" 2>/dev/null | head -n 1; }
broker=$(cid broker)
[ -n "$broker" ] || die "broker container exists"

# ------------------------------------------------------------ 5. checks
health() { [ "$(docker inspect -f '{{.State.Health.Status}}' "$broker" 2>/dev/null)" = healthy ]; }
if wait_for 60 health; then ok "broker is healthy (HEALTHCHECK /healthz)"; else bad "broker is healthy (HEALTHCHECK /healthz)"; fi

# The first start made the secrets (and said so), and a login is needed.
docker logs "$broker" >"$WORK/broker.log" 2>&1
if grep -q "init-certs: made a CA, a certificate for 'broker'" "$WORK/broker.log" &&
   grep -q "users.*/var/lib/fanout/secrets/users\|3 users" "$WORK/broker.log"; then
    ok "the broker made its certificates and users at the first start"
else
    bad "the broker made its certificates and users at the first start" "$WORK/broker.log"
fi
docker exec "$broker" fanout pub -s tls://broker:7443 --tls-ca /var/lib/fanout/client/ca.pem \
    demo.nobody x >"$WORK/anon.out" 2>&1
anon_rc=$?
if [ "$anon_rc" = 1 ] && grep -q "refused the login" "$WORK/anon.out"; then
    ok "a client without a password is refused"
else
    bad "a client without a password is refused (exit $anon_rc)" "$WORK/anon.out"
fi

# GET path through a published port, from the host.
http_get() {  # http_get HOSTPORT PATH
    local host=${1%:*} port=${1##*:}
    exec 3<>"/dev/tcp/$host/$port" || return 1
    printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$2" "$host" >&3
    cat <&3
    exec 3<&-
}
hp=$(docker port "$broker" 7401/tcp 2>/dev/null | grep -m1 '^127\.0\.0\.1:')
if [ -n "$hp" ] && http_get "$hp" /healthz >"$WORK/healthz" 2>&1 && head -n 1 "$WORK/healthz" | grep -q ' 200'; then
    ok "/healthz answers 200 on the published port ($hp)"
else
    bad "/healthz answers 200 on the published port (${hp:-not published})" "$WORK/healthz"
fi

# Each client container exits by itself: the producer after sending (it
# waits for both subscriptions first), the consumers after COUNT messages.
exited() { [ "$(docker inspect -f '{{.State.Status}}' "$1" 2>/dev/null)" = exited ]; }
for svc in "${services[@]:1}"; do
    c=$(cid "$svc")
    if [ -z "$c" ]; then bad "$svc ran"; continue; fi
    # 90 s for the producer (start, wait for subscribers, send); then 30 s
    # more for each consumer to print what is still on its way.
    [ "$svc" = producer ] && secs=90 || secs=30
    wait_for "$secs" exited "$c"
    docker logs "$c" >"$WORK/$svc.out" 2>"$WORK/$svc.err"
    code=$(docker inspect -f '{{.State.ExitCode}}' "$c" 2>/dev/null)
    if exited "$c" && [ "$code" = 0 ]; then
        ok "$svc exited 0"
    else
        cat "$WORK/$svc.err" "$WORK/$svc.out" >"$WORK/$svc.both" 2>/dev/null
        bad "$svc exited 0 (status $(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$c" 2>/dev/null))" "$WORK/$svc.both"
    fi
done

seq -f 'tick %.0f' 1 "$COUNT" >"$WORK/expected"
sort "$WORK/expected" >"$WORK/expected.sorted"
# Which expected lines a consumer's output lacks, and which it has extra.
report() {  # report OUT
    local got=$1
    echo "got $(grep -c . "$got") lines"
    sort "$got" >"$got.sorted"
    echo "missing $(comm -23 "$WORK/expected.sorted" "$got.sorted" | wc -l):" \
         "$(comm -23 "$WORK/expected.sorted" "$got.sorted" | sort -V | head -10 | tr '\n' ' ')"
    echo "unexpected $(comm -13 "$WORK/expected.sorted" "$got.sorted" | wc -l):" \
         "$(comm -13 "$WORK/expected.sorted" "$got.sorted" | head -5 | tr '\n' ' ')"
}
if cmp -s "$WORK/expected" "$WORK/consumer.out"; then
    ok "TCP consumer got all $COUNT messages, in order"
else
    report "$WORK/consumer.out" >"$WORK/consumer.diff" 2>&1
    bad "TCP consumer got all $COUNT messages, in order" "$WORK/consumer.diff"
fi
# Multicast is unordered across broker workers: compare as sets.
if [ "$mcast" = 0 ]; then
    skip "multicast consumer got all $COUNT messages (fanout sub has no --multicast yet)"
elif sort "$WORK/mcast-consumer.out" | cmp -s - "$WORK/expected.sorted"; then
    ok "multicast consumer got all $COUNT messages"
else
    report "$WORK/mcast-consumer.out" >"$WORK/mcast.diff" 2>&1
    bad "multicast consumer got all $COUNT messages" "$WORK/mcast.diff"
fi

metric() { awk -v m="$1" '$1 == m { print $2; exit }' "$WORK/metrics"; }
if [ -n "$hp" ] && http_get "$hp" /metrics >"$WORK/metrics" 2>&1; then
    n_in=$(metric fanout_messages_in_total); n_mc=$(metric fanout_mcast_messages_total)
    if [ "${n_in:-x}" = "$COUNT" ]; then ok "broker counted $COUNT messages in"; else bad "broker counted $COUNT messages in (fanout_messages_in_total=${n_in:-missing})"; fi
    if [ "${n_mc:-x}" = "$COUNT" ]; then ok "broker multicast $COUNT messages"; else bad "broker multicast $COUNT messages (fanout_mcast_messages_total=${n_mc:-missing})"; fi
else
    bad "GET /metrics on the published port" "$WORK/metrics"
fi

say "bench ($BENCH_MSGS messages)"
# Compose v1's `run` can stay up after the container has exited (it waits
# on stdin, which make keeps open, and on the container's removal): stdin
# is /dev/null, and the run is over once the bench has printed its JSON
# line and the container has exited, whatever compose still does -- then
# it gets 10 s to return before it is stopped. 180 s bound the whole.
compose_cmd
bench_done() {  # the JSON report is there and no bench container runs
    grep -q '^[[:space:]]*{.*}[[:space:]]*$' "$WORK/bench.out" 2>/dev/null &&
        [ -z "$(docker ps -q --filter "label=com.docker.compose.project=$PROJ" \
                  --filter "label=com.docker.compose.service=bench" 2>/dev/null)" ]
}
"${COMPOSE_CMD[@]}" run --rm -T bench </dev/null >"$WORK/bench.out" 2>"$WORK/bench.err" &
bench_pid=$!
bench_rc=
for _ in $(seq 360); do
    if ! kill -0 "$bench_pid" 2>/dev/null; then wait "$bench_pid"; bench_rc=$?; break; fi
    if bench_done; then
        for _ in $(seq 20); do kill -0 "$bench_pid" 2>/dev/null || break; sleep 0.5; done
        if kill -0 "$bench_pid" 2>/dev/null; then
            say "compose run is still up after the bench finished: stopping it"
            kill "$bench_pid" 2>/dev/null; wait "$bench_pid" 2>/dev/null
            bench_rc=0
        else
            wait "$bench_pid"; bench_rc=$?
        fi
        break
    fi
    sleep 0.5
done
if [ -z "$bench_rc" ]; then
    say "bench did not finish within 180 s"
    kill "$bench_pid" 2>/dev/null; wait "$bench_pid" 2>/dev/null
    bench_rc=124
fi
if [ "$bench_rc" -eq 0 ] && grep -q '^[[:space:]]*{' "$WORK/bench.out"; then
    ok "bench runs against the broker: $(grep -o '"deliveries_per_s":[0-9.]*' "$WORK/bench.out")"
    if grep -q "\"delivered\":$BENCH_MSGS,.*\"lost\":0," "$WORK/bench.out"; then
        ok "bench: all $BENCH_MSGS messages delivered, none lost"
    else
        bad "bench: all $BENCH_MSGS messages delivered, none lost" "$WORK/bench.out"
    fi
else
    cat "$WORK/bench.err" "$WORK/bench.out" >"$WORK/bench.both" 2>/dev/null
    bad "bench runs against the broker" "$WORK/bench.both"
fi

if health; then ok "broker still healthy after the run"; else bad "broker still healthy after the run"; fi
say "done"
