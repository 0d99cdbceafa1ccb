#!/bin/sh
# tests/fuzz/run.sh SECONDS HARNESS... : run each libFuzzer harness (built in
# build/fuzz/) for SECONDS on a scratch copy of its seed corpus; fail on any
# crash, leak, timeout or sanitizer report. Prints executions per harness.
secs=$1; shift
fail=0; total=0
out=build/fuzz/stats.txt
: > "$out"
for h in "$@"; do
    work=build/fuzz/work/$h
    mkdir -p "$work" build/fuzz/artifacts
    log=build/fuzz/$h.log
    # -close_fd_mask=3: the harnesses' own stdout/stderr go away, sanitizer reports still come out
    if build/fuzz/$h -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -close_fd_mask=3 \
           -print_final_stats=1 -artifact_prefix=build/fuzz/artifacts/$h- "$work" tests/fuzz/corpus/$h >"$log" 2>&1; then
        st=ok
    else
        st=FAILED; fail=1
        tail -n 40 "$log"
    fi
    n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    n=${n:-0}
    total=$((total + n))
    printf '%-18s %6ss %12s executions  %s\n' "$h" "$secs" "$n" "$st" | tee -a "$out"
done
printf '%-18s %7s %12s executions  %s\n' total "" "$total" "$([ $fail = 0 ] && echo '0 crashes' || echo 'CRASHES: see build/fuzz/artifacts')" | tee -a "$out"
exit $fail
