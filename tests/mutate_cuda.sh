#!/bin/sh
# mutate_cuda.sh - does test_cuda catch wrong kernels? Applies deliberate one-line
# faults to a COPY of lomo_cuda.cuh (build/mutants/NAME/; the source is never
# touched: its checksum is compared before and after), builds test_cuda against
# each copy, and with a GPU runs it (--quick: no 2^31 tensor, no child process):
# every mutant must fail, and the unmutated copy (the control) must pass.
# Without a GPU it checks what it can: each fault applies to exactly one line, each
# mutant compiles, the source is unchanged; the runs are reported as SKIPPED.
#   sh tests/mutate_cuda.sh [--run | --no-run]   (default: run when nvidia-smi sees a GPU)
# Env: NVCC, MUT_ARCH (default: the GPU's sm_XY, else sm_80), MUT_JOBS, MUT_TIMEOUT (s per run).
set -u
cd "$(dirname "$0")/.."
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
RUN=auto
for a in "$@"; do case $a in --run) RUN=1 ;; --no-run) RUN=0 ;; *) echo "mutate_cuda: unknown flag $a"; exit 2 ;; esac; done
if [ "$RUN" = auto ]; then
    if nvidia-smi -L 2>/dev/null | grep -q GPU; then RUN=1; else RUN=0; fi
fi
if [ ! -x "$NVCC" ]; then echo "mutate_cuda: no nvcc: SKIPPED"; exit 0; fi
cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' .')
ARCH=${MUT_ARCH:-sm_${cap:-80}}
JOBS=${MUT_JOBS:-$(nproc 2>/dev/null || echo 2)}
TMO=${MUT_TIMEOUT:-90}
D=build/mutants
rm -rf "$D"; mkdir -p "$D"
sum0=$(cksum < lomo_cuda.cuh)

# name | occurrence | exact text | replacement      (occurrence: which match of the text, 1 = first)
cat > "$D/list" <<'EOF'
rms_bwd_sign|1|- k * x[o + i];|+ k * x[o + i];
skip_wide_update|1|if (a->rule == LOMO_OPT_LOMO) {|if (a->rule == LOMO_OPT_LOMO && p->shape[0] >= p->shape[1]) {
dq_causal_off_by_one|2|for (int j = j0; j <= t; j++) {|for (int j = j0; j < t; j++) {
dkv_causal_off_by_one|1|for (int t = j; t < t1; t++) {|for (int t = j + 1; t < t1; t++) {
gqa_head_map|1|g = h / (nh / nkv);|g = h % nkv;
sr_hash_index|1|lomo__cu_uniform(seed, stream, hash_i) * 65536.0f|lomo__cu_uniform(seed, stream, hash_i + 1) * 65536.0f
embed_bwd_race|1|atomicAdd(dw + (size_t)tok[i / C] * C + i % C, dx[i]);|dw[(size_t)tok[i / C] * C + i % C] += dx[i];
flash_c2a_mapping|1|a[1] = lomo__cu_pack_bf16(c0[2], c0[3]);|a[1] = lomo__cu_pack_bf16(c1[0], c1[1]);
flash_no_rescale|1|o[n][2 * r] *= corr;|o[n][2 * r] *= 1.0f;
EOF

# make one tree: $1 name, then (occurrence, text, replacement) or nothing for the control
mktree() {
    t=$D/$1
    mkdir -p "$t/tests"
    cp lomo.h "$t/"; cp tests/test_cuda.cu tests/test_util.h tests/step_compare.h tests/flash_model.h "$t/tests/"
    if [ $# -eq 1 ]; then cp lomo_cuda.cuh "$t/"; return 0; fi
    awk -v occ="$2" -v from="$3" -v to="$4" '
        { line = $0; out = "";
          while ((p = index(line, from)) > 0) {
              n++;
              if (n == occ) { out = out substr(line, 1, p - 1) to; line = substr(line, p + length(from)); done = 1 }
              else { out = out substr(line, 1, p - 1 + length(from)); line = substr(line, p + length(from)) }
          }
          print out line }
        END { if (!done) exit 3 }' lomo_cuda.cuh > "$t/lomo_cuda.cuh" || return 3
    [ "$(diff lomo_cuda.cuh "$t/lomo_cuda.cuh" | grep -c '^>')" -eq 1 ] || return 4
}

status=0
names="control"
mktree control
while IFS='|' read -r name occ from to; do
    if mktree "$name" "$occ" "$from" "$to"; then names="$names $name"
    else echo "mutant $name: the fault did not apply to exactly one line (lomo_cuda.cuh changed?)"; status=1; fi
done < "$D/list"

# with a GPU: whole programs; without: device code only (--cubin; the host code is still
# parsed and type-checked by nvcc's front end), a few seconds each
if [ "$RUN" = 1 ]; then
    echo "building $(echo $names | wc -w) trees for $ARCH ($JOBS at a time)"
    for n in $names; do echo "$n"; done | xargs -P "$JOBS" -I{} sh -c \
        "'$NVCC' -O3 -std=c++17 -arch=$ARCH -Xcompiler -fopenmp $D/{}/tests/test_cuda.cu -o $D/{}/test_cuda -lcublas -lgomp > $D/{}/build.log 2>&1"
else
    echo "compiling $(echo $names | wc -w) trees for $ARCH (device code, --cubin)"
    for n in $names; do
        "$NVCC" -std=c++17 -arch="$ARCH" --cubin "$D/$n/tests/test_cuda.cu" -o "$D/$n/test_cuda.cubin" > "$D/$n/build.log" 2>&1
    done
fi

printf '| mutant | fault | compiles | test_cuda |\n|---|---|---|---|\n' > "$D/results.md"
for n in $names; do
    fault=$(grep "^$n|" "$D/list" | cut -d'|' -f4)
    [ -n "$fault" ] || fault="(none: the control)"
    if [ -x "$D/$n/test_cuda" ] || [ -s "$D/$n/test_cuda.cubin" ]; then comp=yes; else comp=NO; status=1; fi
    res=SKIPPED
    if [ "$RUN" = 1 ] && [ $comp = yes ]; then
        timeout "$TMO" "$D/$n/test_cuda" --quick > "$D/$n/run.log" 2>&1
        rc=$?
        last=$(grep -E '^test_cuda: [0-9]+ passed, [0-9]+ failed' "$D/$n/run.log" | tail -n 1)
        if [ $n = control ]; then
            if [ $rc -eq 0 ]; then res="passes (as it must)"; else res="FAILS rc=$rc: the mutants prove nothing"; status=1; fi
        elif [ $rc -eq 124 ]; then res="timed out (${TMO} s): not counted as caught"; status=1
        elif [ $rc -ne 0 ]; then res="caught: rc=$rc ${last:-crashed}"
        else res="SURVIVED: test_cuda passed"; status=1; fi
    fi
    echo "| $n | \`$(echo "$fault" | cut -c1-70)\` | $comp | $res |" >> "$D/results.md"
done
cat "$D/results.md"
if [ "$(cksum < lomo_cuda.cuh)" != "$sum0" ]; then echo "lomo_cuda.cuh CHANGED during the mutation check"; status=1
else echo "lomo_cuda.cuh unchanged (checksum $(echo $sum0 | cut -d' ' -f1))"; fi
[ "$RUN" = 1 ] || echo "mutation runs SKIPPED: no GPU (mutants applied and compiled only)"
exit $status
