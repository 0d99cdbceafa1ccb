#!/bin/sh
# Runs each test program given, passes its output through, and ends with one
# line "N passed, M failed" summed over all of them (exit 1 if any failed or
# any program did not finish with its own summary line).
pass=0; fail=0; broken=0
for t in "$@"; do
    echo "== $t"
    out=$("$t" 2>&1); rc=$?
    echo "$out"
    line=$(echo "$out" | grep -E '^[a-z_]+: [0-9]+ passed, [0-9]+ failed$' | tail -n 1)
    if [ -z "$line" ]; then
        echo "!! $t ended without its summary line (exit $rc)"; broken=$((broken + 1)); continue
    fi
    p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed.*/\1/')
    f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed$/\1/')
    pass=$((pass + p)); fail=$((fail + f))
    [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && { echo "!! $t exited $rc"; broken=$((broken + 1)); }
done
fail=$((fail + broken))
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
