#!/bin/sh
# run.sh BUILD TEST... -- run test binaries, one line each, and a total.
#
# Each binary is a cmocka suite (or prints cmocka-style totals itself, as
# tests/conformance/run does); its full output goes to
# BUILD/test-logs/NAME.log and is shown when it fails.
# A binary that crashes or times out counts as one failed test.
build=$1; shift
logs="$build/test-logs"; mkdir -p "$logs"
tmo=${FO_TEST_TIMEOUT:-600}
pass=0; fail=0; skip=0; bad=""
for t in "$@"; do
    name=$(basename "$t")
    # a suite run by a script named run (tests/conformance/run) is named by its folder
    [ "$name" = run ] && name=$(basename "$(dirname "$t")")
    log="$logs/$name.log"
    start=$(date +%s)
    FO_BUILD="$build" timeout -k 5 "$tmo" "$t" >"$log" 2>&1
    rc=$?
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
    s=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
    p=${p:-0}; f=${f:-0}; s=${s:-0}
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
    secs=$(( $(date +%s) - start ))
    if [ "$f" -ne 0 ]; then
        printf 'FAIL  %-28s %3s passed %3s failed %3s skipped  %3ss (exit %s)\n' "$name" "$p" "$f" "$s" "$secs" "$rc"
        bad="$bad $name"
        sed 's/^/    | /' "$log" | tail -60
    else
        printf 'ok    %-28s %3s passed %3s failed %3s skipped  %3ss\n' "$name" "$p" "$f" "$s" "$secs"
    fi
    grep -h '^\[  SKIPPED \] [a-z]' "$log" 2>/dev/null | sort -u | sed 's/^/      /'
done
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ] || { echo "failed:$bad (logs in $logs)"; exit 1; }
