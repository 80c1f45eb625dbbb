# netns_lib.sh -- what the network-namespace test scripts share (bash,
# sourced after they set NSES, the namespaces they make, TMP and pids).
#
#   netns_cleanup   kill what they started and anything left in their
#                   namespaces, delete the namespaces, remove TMP (unless
#                   FO_NETNS_KEEP is set); the scripts trap it on EXIT
#   ok / bad        count and print a result line
#   finish          print "N passed, N failed" and exit (non-zero on failure)
pass=0; fail=0

netns_cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null; done
    for p in $pids; do wait "$p" 2>/dev/null; done
    for ns in $NSES; do                          # anything left inside is ours
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null
    done
    [ -n "${FO_NETNS_KEEP:-}" ] || rm -rf "$TMP"
}

ok()   { echo "ok   $*"; pass=$((pass + 1)); }
bad()  { echo "FAIL $*"; fail=$((fail + 1)); }
finish() {
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit $?
}
