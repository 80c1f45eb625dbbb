# lib.sh -- what docker/test.sh and docker/swarm-test.sh share (bash,
# sourced).

# Run "$@" until it succeeds or `secs` pass.
wait_for() {
    local secs=$1; shift
    local end=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$end" ] || return 1
        sleep 0.5
    done
}
