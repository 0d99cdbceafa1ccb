#!/bin/sh
# gpu_check.sh (`make gpu-check`) - everything a session with a lent GPU needs, in one
# call of at most GPU_CHECK_BUDGET seconds (default 470: inside 8 minutes), with no
# network. Parts, each under `timeout` with its own budget (cut to what is left):
#   preflight   driver, nvcc, compute-sanitizer, torch, transformers, import lomo_optim
#   build       make cuda (a carried, up-to-date build/ is reused) + test_cuda_nccl if NCCL
#   cpu         test_cuda_tol: the bf16 step bound vs the GPU's numerics and 4 mutants (CPU)
#   cpu_dry     test_cuda.cu's own logic with the CPU backend posing as the GPU (tests/cuda_dry.h)
#   test_cuda   every kernel and whole steps against the CPU backend, etc. (tests/test_cuda.cu)
#   memcheck    compute-sanitizer memcheck on a small bf16 training run (llama_ft_cuda)
#   racecheck   compute-sanitizer racecheck on one step
#   nccl        NCCL at world size 1 against the unsharded GPU run (test_cuda_nccl --nccl)
#   mutation    tests/mutate_cuda.sh: 9 one-line faults must each fail test_cuda
#   bench       7B, bf16, 8 x 512 and 1 x 1024, lomo vs PyTorch + lomo-optim (bench/run_cuda.sh)
# Without a GPU (CI) it runs preflight, build, cpu, cpu_dry and the compile-only mutation check,
# and marks every GPU part SKIPPED. Results: results.md (a table) and one log per part
# under $OUT if set (then the logs are also packed into logs.tar.gz, since only a few
# files come back from the device machine), else build/gpu-check.
# lomo-optim: a wheel in .gpu/whl/ or .whl/ (tests/gpu_prep.sh puts it there) is installed
# with pip --no-index --target and put on PYTHONPATH. stories260K: .gpu/stories260K.
# Exit status: 0 when nothing that ran failed.
set -u
cd "$(dirname "$0")/.."
T0=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET:-470}
if [ -n "${OUT:-}" ]; then R=$OUT; LOGS=$OUT/logs; else R=build/gpu-check; LOGS=$R; fi
mkdir -p "$R" "$LOGS"
RES=$R/results.md
NVCC=${NVCC:-$(command -v nvcc || { [ -x /usr/local/cuda/bin/nvcc ] && echo /usr/local/cuda/bin/nvcc; } || echo)}
CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "${NVCC:-/usr/local/cuda/bin/nvcc}")")}
SAN=$CUDA_HOME/bin/compute-sanitizer
command -v compute-sanitizer >/dev/null 2>&1 && SAN=$(command -v compute-sanitizer)
PY=${PYTHON:-python3}
GPU=0
nvidia-smi -L 2>/dev/null | grep -q GPU && GPU=1
FAILED=0

printf '# make gpu-check, %s\n\n| part | result | seconds | budget | log |\n|---|---|---:|---:|---|\n' "$(date -u '+%Y-%m-%d %H:%M UTC')" > "$RES"
row() { echo "| $1 | $2 | $3 | $4 | $5 |" >> "$RES"; echo "[gpu-check] $1: $2 (${3}s)"; }
skip() { row "$1" "SKIPPED: $2" 0 "$3" -; }
# part NAME BUDGET CMD...: runs CMD with the smaller of BUDGET and what is left
part() {
    name=$1; want=$2; shift 2
    left=$((BUDGET - ($(date +%s) - T0)))
    b=$want; [ "$left" -lt "$b" ] && b=$left
    if [ "$b" -lt 10 ]; then
        skip "$name" "no time left in the ${BUDGET} s budget" "$want"
        [ "${OPTIONAL:-0}" = 1 ] || FAILED=1   # OPTIONAL: the CPU parts on a GPU machine (CI runs them)
        return 1
    fi
    log=$LOGS/$name.log
    s=$(date +%s)
    timeout -k 5 "$b" sh -c "$*" > "$log" 2>&1
    rc=$?
    el=$(($(date +%s) - s))
    if [ $rc -eq 0 ]; then row "$name" pass "$el" "$b" "$name.log"
    elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then row "$name" "TIMEOUT after ${b} s" "$el" "$b" "$name.log"; FAILED=1
    else row "$name" "FAIL (rc $rc): $(grep -E 'passed, [0-9]+ failed|FAIL|rror' "$log" | tail -n 1 | cut -c1-120 | tr '|' '/')" "$el" "$b" "$name.log"; FAILED=1; fi
    return $rc
}

# ---- preflight ----
{
    echo "date: $(date -u)"; echo "host: $(uname -srm), $(nproc) cores"
    echo "GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>/dev/null || echo none)"
    echo "nvcc: $([ -n "$NVCC" ] && "$NVCC" --version | tail -n 2 | tr '\n' ' ' || echo none)"
    echo "compute-sanitizer: $([ -x "$SAN" ] && "$SAN" --version 2>/dev/null | tail -n 1 || echo none)"
    echo "nccl.h: $(ls "$CUDA_HOME"/include/nccl.h /usr/include/nccl.h 2>/dev/null | head -n 1 || echo none)"
    whl=$(ls .gpu/whl/*.whl .whl/*.whl 2>/dev/null)
    if [ -n "$whl" ]; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/lomo-site $whl \
            && echo "wheels installed into /tmp/lomo-site: $(echo $whl | xargs -n1 basename | tr '\n' ' ')"
    fi
    echo "python: $("$PY" --version 2>&1)"
    PYTHONPATH=/tmp/lomo-site${PYTHONPATH:+:$PYTHONPATH} "$PY" - <<'PY' 2>&1
for name in ("torch", "transformers", "lomo_optim"):
    try:
        m = __import__(name)
        extra = ""
        if name == "torch":
            extra = f" (cuda {m.version.cuda}, device: {m.cuda.get_device_name() if m.cuda.is_available() else 'none'})"
        print(f"{name}: {getattr(m, '__version__', 'imported')}{extra}")
    except Exception as e:
        print(f"{name}: NOT importable: {e}")
PY
} > "$LOGS/preflight.log" 2>&1
cat "$LOGS/preflight.log"
[ -d /tmp/lomo-site ] && export PYTHONPATH=/tmp/lomo-site${PYTHONPATH:+:$PYTHONPATH}
row preflight "$(grep -c 'NOT importable' "$LOGS/preflight.log") of 3 Python modules missing; GPU $([ $GPU = 1 ] && echo found || echo none)" 0 - preflight.log
[ -d .gpu/stories260K ] && [ -z "${LOMO_STORIES260K:-}" ] && export LOMO_STORIES260K=.gpu/stories260K

# ---- build ----
J=$(nproc 2>/dev/null || echo 2)
HAVE_NCCL=0
{ [ -e "$CUDA_HOME/include/nccl.h" ] || [ -e /usr/include/nccl.h ]; } && HAVE_NCCL=1
if [ -z "$NVCC" ]; then
    skip build "no nvcc" 150
else
    part build 150 "make -j$J build/test_cuda build/llama_ft_cuda build/bench_cuda $([ $HAVE_NCCL = 1 ] && echo build/test_cuda_nccl)"
fi

# ---- the GPU parts ----
if [ $GPU = 1 ] && [ -x build/test_cuda ]; then
    part test_cuda 75 "build/test_cuda"
    if [ -x "$SAN" ]; then
        SMALL="--device cuda --dtype bf16 --checkpointing --clip-norm 1.0 --batch 2 --seq-len 32 --log-every 1"
        part memcheck 35 "$SAN --tool memcheck --error-exitcode 1 --leak-check no build/llama_ft_cuda $SMALL --steps 2 --out /tmp/lomo_san_out"
        part racecheck 35 "$SAN --tool racecheck --error-exitcode 1 build/llama_ft_cuda $SMALL --steps 1 --out /tmp/lomo_san_out"
    else
        skip memcheck "no compute-sanitizer" 35; skip racecheck "no compute-sanitizer" 35
    fi
    if [ -x build/test_cuda_nccl ]; then part nccl 20 "build/test_cuda_nccl --nccl"; else skip nccl "no NCCL headers/library (build/test_cuda_nccl not built)" 20; fi
    part mutation 100 "MUT_TIMEOUT=40 sh tests/mutate_cuda.sh --run"
    if grep -q "lomo_optim: NOT" "$LOGS/preflight.log"; then
        skip bench "lomo_optim not importable (put its wheel in .gpu/whl: tests/gpu_prep.sh)" 120
    else
        part bench 120 "SHAPES=7b BTS='8x512 1x1024' CLIPS=0 STEPS=3 REPEATS=1 RUN_TIMEOUT=55 BENCH_OUT=$R/bench sh bench/run_cuda.sh"
    fi
else
    why="no GPU (nvidia-smi lists none)"; [ $GPU = 1 ] && why="build/test_cuda missing"
    for p in test_cuda memcheck racecheck nccl; do skip $p "$why" -; done
    part mutation 180 "sh tests/mutate_cuda.sh --no-run"
    skip bench "$why" 120
fi

# ---- the CPU parts (after the GPU ones: with a GPU, CI has run them already) ----
make -s build/test_cuda_tol_loops build/test_cuda_dry > "$LOGS/cpu_build.log" 2>&1
OPTIONAL=$GPU part cpu 90 "build/test_cuda_tol_loops"
OPTIONAL=$GPU part cpu_dry 150 "build/test_cuda_dry"

[ -f "$R/bench/cuda.md" ] && { echo; cat "$R/bench/cuda.md"; } >> "$RES"
[ -f build/mutants/results.md ] && { echo; echo "Mutation check:"; echo; cat build/mutants/results.md; } >> "$RES"
echo "" >> "$RES"; echo "total: $(($(date +%s) - T0)) s of a ${BUDGET} s budget; GPU $([ $GPU = 1 ] && echo present || echo absent: GPU parts SKIPPED)" >> "$RES"
if [ -n "${OUT:-}" ]; then   # few files come back: the logs as one archive
    tar -czf "$OUT/logs.tar.gz" -C "$OUT" logs $([ -d "$OUT/bench" ] && echo bench)
    [ -d build/mutants ] && tar -czf "$OUT/mutants.tar.gz" build/mutants/results.md $(ls build/mutants/*/run.log build/mutants/*/build.log 2>/dev/null)
    [ -f "$R/bench/cuda.md" ] && cp "$R/bench/cuda.md" "$R/bench/cuda.json" "$OUT/" 2>/dev/null
    rm -rf "$OUT/logs" "$OUT/bench"
fi
echo; cat "$RES"
exit $FAILED
