#!/bin/sh
# deps.sh -- make sure this machine can build and test fanout.
#
# Checks for the build tools and libraries; when something is missing and we
# are root on Debian/Ubuntu, installs it with apt; otherwise prints the exact
# command to run and fails. Used by `make` (once per build dir) and .ci/run.
# Extra Debian packages a target needs may follow (make valgrind: valgrind).
set -eu
PKGS="gcc libc6-dev make pkg-config protobuf-c-compiler libprotobuf-c-dev libcmocka-dev libsodium-dev $*"
# TLS: OpenSSL 3 for fanoutd, and the openssl command the tests make
# certificates and run s_client with
PKGS="$PKGS libssl-dev openssl"
# the multicast namespace test (tests/integration/netns_mcast.sh)
PKGS="$PKGS iproute2 iptables"
# the protocol conformance suite (tests/conformance/): protoc for fanout_pb2,
# Google's Python runtime, promtool for /metrics
PKGS="$PKGS python3-protobuf protobuf-compiler prometheus"
missing=""
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
if command -v dpkg-query >/dev/null 2>&1; then
    for p in $PKGS; do have_pkg "$p" || missing="$missing $p"; done
else
    # Not Debian: check the tools and headers directly.
    command -v protoc-c >/dev/null 2>&1 || missing="$missing protobuf-c-compiler"
    [ -e /usr/include/protobuf-c/protobuf-c.h ] || missing="$missing libprotobuf-c-dev"
    [ -e /usr/include/cmocka.h ] || missing="$missing libcmocka-dev"
    [ -e /usr/include/sodium.h ] || missing="$missing libsodium-dev"
    command -v protoc >/dev/null 2>&1 || missing="$missing protobuf-compiler"
    command -v promtool >/dev/null 2>&1 || missing="$missing prometheus"
    python3 -c 'import google.protobuf' 2>/dev/null || missing="$missing python3-protobuf"
    [ -e /usr/include/openssl/ssl.h ] || missing="$missing libssl-dev"
    command -v openssl >/dev/null 2>&1 || missing="$missing openssl"
fi
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "fanout: missing build dependencies:$missing" >&2
    echo "fanout: install them with: sudo apt-get install -y$missing" >&2
    exit 1
fi
echo "fanout: installing build dependencies:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >&2
