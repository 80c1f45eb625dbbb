#!/bin/sh
# swarm-test.sh -- `make swarm-test`: docker/stack.yml on a real two-node
# Docker Swarm, made on this machine (docs/CLUSTER.md).
#
# 1. two network namespaces (fo-swa, fo-swb) joined by a veth pair
#    (10.251.77.1 and .2: this script's own hosts, nothing else is reached);
# 2. one dockerd in each, started with `nsenter --net=` (not `ip netns
#    exec`, whose remount of /sys fails on the devices cgroup), each with
#    its own data root, exec root, pid file and socket;
# 3. a Swarm: the first initialises it, the second joins over the veth;
# 4. the image: fanoutd and fanout from $FO_BUILD with the libraries they
#    load, imported into the first daemon, moved to the second with
#    `docker save | docker load` (no registry can be reached);
# 5. `docker stack deploy --resolve-image never` of docker/stack.yml with
#    two replicas, one per node (endpoint_mode dnsrr: this kernel may have
#    no IPVS for Swarm's virtual IPs);
# 6. checks: both tasks run, one on each node; each broker links to the
#    other over the overlay network (found through tasks.broker); a
#    subscriber on node B's broker gets every one of FO_SWARM_COUNT
#    messages published on node A's broker, in order;
# 7. tears everything down even when a step fails (trap): the stack, both
#    daemons (and their mounts), the namespaces (the veth goes with them),
#    the work directory.
#
# Skips (exit 0, a SKIP line) when it cannot run here: not root, no
# dockerd/docker/nsenter/ip, no vxlan. The last line is "N passed, N
# failed, N skipped". Env: FO_BUILD (default build), FO_SWARM_COUNT
# (default 500), FO_KEEP=1 (leave everything up to look at).
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

BUILD=${FO_BUILD:-build}
COUNT=${FO_SWARM_COUNT:-500}
NSA=fo-swa NSB=fo-swb
IPA=10.251.77.1 IPB=10.251.77.2
W=$(mktemp -d /tmp/fosw.XXXXXX)
IMAGE=fanout:swarmtest
STACK=fosw
pass=0; fail=0; skip=0
T0=$SECONDS
made_ns=""

say()  { printf '[swarm-test %3ss] %s\n' "$((SECONDS - T0))" "$*"; }
ok()   { pass=$((pass + 1)); printf 'ok    %s\n' "$1"; }
skip() { skip=$((skip + 1)); printf 'SKIP  %s\n' "$1"; }
bad()  { fail=$((fail + 1)); printf 'FAIL  %s\n' "$1"; [ -z "${2:-}" ] || sed 's/^/    | /' "$2" | tail -40; }
die()  { bad "$1" "${2:-}"; exit 1; }

# shellcheck source=docker/lib.sh
. docker/lib.sh                          # wait_for

dk() { local n=$1; shift; docker -H "unix://$W/$n/sock" "$@"; }     # dk a|b ARGS
in_ns() { local ns=$1; shift; nsenter --net="/run/netns/$ns" "$@"; }

# ------------------------------------------------------------ teardown
stop_dockerd() {  # stop_dockerd a|b
    local pidf="$W/$1/pid" pid
    [ -f "$pidf" ] || return 0
    pid=$(cat "$pidf" 2>/dev/null) || return 0
    kill "$pid" 2>/dev/null || return 0
    local _; for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
    # what the daemon mounted under its roots (overlay layers, netns files)
    grep -o " $W/$1/[^ ]*" /proc/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    [ "$rc" -eq 0 ] || [ "$fail" -gt 0 ] || [ "$skip" -gt 0 ] || { fail=1; echo "FAIL  interrupted (exit $rc)"; }
    if [ "${FO_KEEP:-0}" = 1 ]; then
        say "FO_KEEP=1: left up in $W (namespaces $NSA $NSB)"
    else
        if [ -S "$W/a/sock" ]; then
            if [ "$fail" -gt 0 ]; then
                say "the services and their logs:"
                dk a service ps --no-trunc "${STACK}_broker" 2>&1 | sed 's/^/    | /'
                dk a service logs --tail 30 "${STACK}_broker" 2>&1 | sed 's/^/    | /'
            fi
            dk a stack rm "$STACK" >/dev/null 2>&1
            dk b swarm leave --force >/dev/null 2>&1
            dk a swarm leave --force >/dev/null 2>&1
        fi
        stop_dockerd b
        stop_dockerd a
        for ns in $made_ns; do ip netns del "$ns" 2>/dev/null; done
        rm -rf "$W"
    fi
    printf '[swarm-test %3ss] done\n' "$((SECONDS - T0))"
    echo "$pass passed, $fail failed, $skip skipped"
    [ "$fail" -eq 0 ] && exit 0 || exit 1
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# ------------------------------------------------------------ can it run?
cannot() { skip "$1"; exit 0; }
[ "$(id -u)" = 0 ] || cannot "swarm test: needs root (namespaces, dockerd)"
for c in dockerd docker nsenter ip containerd runc; do
    command -v "$c" >/dev/null 2>&1 || cannot "swarm test: no $c here (apt-get install docker.io)"
done
[ -x "$BUILD/fanoutd" ] && [ -x "$BUILD/fanout" ] || die "$BUILD/fanoutd and $BUILD/fanout are built (make)"
ip netns add fo-swprobe 2>/dev/null || cannot "swarm test: cannot make a network namespace"
ip -n fo-swprobe link add v type vxlan id 7 dstport 4789 dev lo 2>/dev/null
have_vxlan=$?
ip netns del fo-swprobe
[ "$have_vxlan" -eq 0 ] || cannot "swarm test: the kernel has no vxlan (Swarm's overlay network)"
for ns in $NSA $NSB; do
    ! ip netns list | grep -qw "$ns" || die "namespace $ns exists already (a test left running?)"
done

# ------------------------------------------------------------ 1. hosts
ip netns add $NSA && made_ns="$NSA" && ip netns add $NSB && made_ns="$NSA $NSB" ||
    die "network namespaces $NSA $NSB"
ip link add fo-swva type veth peer name fo-swvb &&
    ip link set fo-swva netns $NSA && ip link set fo-swvb netns $NSB &&
    ip -n $NSA addr add $IPA/24 dev fo-swva && ip -n $NSB addr add $IPB/24 dev fo-swvb &&
    ip -n $NSA link set fo-swva up && ip -n $NSB link set fo-swvb up &&
    ip -n $NSA link set lo up && ip -n $NSB link set lo up || die "veth pair $IPA <-> $IPB"
# dockerd wants a default route to pick its addresses
ip -n $NSA route add default via $IPB && ip -n $NSB route add default via $IPA || die "routes"
# a listener on B, a connect from A (ping may not be installed)
reach() { in_ns $NSA bash -c 'exec 3<>"/dev/tcp/$0/9" && exec 3<&-' $IPB 2>/dev/null || in_ns $NSA ip neigh show $IPB | grep -q lladdr; }
wait_for 10 reach || die "$IPA reaches $IPB"
ok "two hosts ($NSA $IPA, $NSB $IPB) joined by a veth pair"

# ------------------------------------------------------------ 2. daemons
start_dockerd() {  # start_dockerd a|b NS
    mkdir -p "$W/$1/data" "$W/$1/exec"
    # setsid: out of the test's process group; closed fds: nothing of ours held open
    in_ns "$2" setsid dockerd --data-root "$W/$1/data" --exec-root "$W/$1/exec" \
        --pidfile "$W/$1/pid" -H "unix://$W/$1/sock" --containerd-namespace "fosw$1" \
        --containerd-plugins-namespace "fosw$1p" --bridge none --ip-forward=false \
        --log-level warn </dev/null >"$W/$1/dockerd.log" 2>&1 &
}
start_dockerd a $NSA
start_dockerd b $NSB
wait_for 60 dk a info || die "dockerd in $NSA answers" "$W/a/dockerd.log"
wait_for 60 dk b info || die "dockerd in $NSB answers" "$W/b/dockerd.log"
ok "a dockerd in each namespace ($(dk a info --format '{{.ServerVersion}}' 2>/dev/null))"

# ------------------------------------------------------------ 3. swarm
dk a swarm init --advertise-addr $IPA --listen-addr $IPA:2377 >"$W/init.log" 2>&1 ||
    die "swarm init on $NSA" "$W/init.log"
token=$(dk a swarm join-token -q worker)
dk b swarm join --token "$token" --advertise-addr $IPB --listen-addr $IPB:2377 $IPA:2377 >"$W/join.log" 2>&1 ||
    die "swarm join from $NSB" "$W/join.log"
nodes_ready() { [ "$(dk a node ls --format '{{.Status}}' 2>/dev/null | grep -c Ready)" = 2 ]; }
wait_for 60 nodes_ready || die "both nodes Ready" "$W/join.log"
ok "a two-node Swarm"

# ------------------------------------------------------------ 4. image
root="$W/rootfs"
mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp" "$root/run/secrets"
cp "$BUILD/fanoutd" "$BUILD/fanout" "$root/usr/local/bin/"
for lib in $(ldd "$BUILD/fanoutd" "$BUILD/fanout" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u); do
    mkdir -p "$root$(dirname "$lib")" && cp -L "$lib" "$root$lib"
done
echo 'hosts: files dns' >"$root/etc/nsswitch.conf"
tar -C "$root" -c . | dk a import --change 'CMD ["fanoutd"]' --change 'ENV PATH=/usr/local/bin' - "$IMAGE" \
    >"$W/import.log" 2>&1 || die "image $IMAGE from $BUILD" "$W/import.log"
dk a save "$IMAGE" | dk b load >"$W/load.log" 2>&1 || die "docker save | docker load" "$W/load.log"
ok "image $IMAGE on both nodes (docker save | docker load)"

# ------------------------------------------------------------ 5. deploy
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$W/cluster.secret"
FANOUT_IMAGE=$IMAGE REPLICAS=2 FANOUT_SECRET_SOURCE="$W/cluster.secret" \
    dk a stack deploy --resolve-image never -c docker/stack.yml "$STACK" >"$W/deploy.log" 2>&1 ||
    die "docker stack deploy docker/stack.yml" "$W/deploy.log"
ok "docker stack deploy docker/stack.yml"
running_on_both() {
    local nodes
    nodes=$(dk a service ps --filter desired-state=running --format '{{.Node}} {{.CurrentState}}' "${STACK}_broker" 2>/dev/null |
            grep -c Running)
    [ "$nodes" = 2 ] && [ "$(dk a ps -q | wc -l)" = 1 ] && [ "$(dk b ps -q | wc -l)" = 1 ]
}
wait_for 90 running_on_both || die "two tasks running, one on each node"
ok "two brokers running, one on each node"

# ------------------------------------------------------------ 6. checks
metric() {  # metric NS IP NAME: the value, from /metrics on the published port
    in_ns "$1" bash -c 'exec 3<>"/dev/tcp/$0/7401" && printf "GET /metrics HTTP/1.0\r\n\r\n" >&3 && cat <&3' "$2" 2>/dev/null |
        awk -v n="$3" '$1 == n { print $2; exit }'
}
linked() { [ "$(metric $NSA $IPA fanout_cluster_links_up)" = 1 ] && [ "$(metric $NSB $IPB fanout_cluster_links_up)" = 1 ]; }
if wait_for 60 linked; then
    ok "the brokers link over the overlay network (found through tasks.broker)"
else
    bad "the brokers link over the overlay network (links up: $(metric $NSA $IPA fanout_cluster_links_up), $(metric $NSB $IPB fanout_cluster_links_up))"
fi
members() { [ "$(metric $NSA $IPA fanout_cluster_members)" = 2 ] && [ "$(metric $NSB $IPB fanout_cluster_members)" = 2 ]; }
if wait_for 10 members; then ok "each broker sees two members"; else bad "each broker sees two members"; fi

in_ns $NSB "$BUILD/fanout" sub -s $IPB:7400 'swarm.>' -n "$COUNT" --timeout 60 >"$W/sub.out" 2>"$W/sub.err" &
subpid=$!
interest() { [ "$(metric $NSA $IPA fanout_cluster_interest_entries)" != "" ] &&
             metric $NSA $IPA 'fanout_cluster_peer_interest_entries{node="broker-1"}' | grep -q '^1$' ||
             metric $NSA $IPA 'fanout_cluster_peer_interest_entries{node="broker-2"}' | grep -q '^1$'; }
wait_for 30 interest || bad "the subscriber's interest reaches the broker on $NSA"
seq 1 "$COUNT" >"$W/want"
if in_ns $NSA "$BUILD/fanout" pub -s $IPA:7400 swarm.orders --confirm <"$W/want" >"$W/pub.out" 2>"$W/pub.err" &&
   [ "$(wc -l <"$W/pub.out")" = "$COUNT" ]; then
    ok "$COUNT messages published on $NSA's broker, each ACKed"
else
    bad "$COUNT messages published on $NSA's broker" "$W/pub.err"
fi
if wait "$subpid"; then
    got=$(wc -l <"$W/sub.out")
    if cmp -s "$W/sub.out" "$W/want"; then
        ok "the subscriber on $NSB's broker got all $COUNT, once each, in order"
    else
        bad "the subscriber on $NSB's broker got all $COUNT (got $got)" "$W/sub.err"
    fi
else
    bad "the subscriber on $NSB's broker got all $COUNT (got $(wc -l <"$W/sub.out"))" "$W/sub.err"
fi
