#!/bin/sh
# lomo (C/CUDA) next to PyTorch transformers LlamaForCausalLM + lomo-optim,
# in one run on the same GPU: bf16, gradient checkpointing on both, random
# Llama shapes initialised on the device (TinyLlama-1.1B, LLaMA-7B), the
# paper's 8 x 512 and 1 x 1024, with and without norm clipping. Runs are
# interleaved in pairs (lomo, PyTorch, lomo, PyTorch, ...; REPEATS pairs per
# configuration); the table gives median tokens/s with min and max, the ratio
# of the medians, peak device memory of each and the memory floor computed
# from the shapes alone (bench/cuda_floor.py), and is written to
# $BENCH_OUT/cuda.md and cuda.json.
# Needs: a GPU, `make cuda`, and python with torch + transformers + lomo-optim
# (PYTHON=...; lomo-optim travels as a wheel: see bench/README.md).
# Env: SHAPES ("1b 7b"), BTS ("1x1024 8x512"), CLIPS ("0 1.0"), STEPS (3),
#      REPEATS (1), RUN_TIMEOUT (s per process, 600), BENCH_OUT (bench/out).
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
STEPS=${STEPS:-3}
SHAPES=${SHAPES:-"1b 7b"}
BTS=${BTS:-"1x1024 8x512"}
CLIPS=${CLIPS:-"0 1.0"}
REPEATS=${REPEATS:-1}
RUN_TIMEOUT=${RUN_TIMEOUT:-600}
OUTD=${BENCH_OUT:-bench/out}
mkdir -p "$OUTD"
[ -x build/bench_cuda ] || make -s cuda || exit 1
shape_args() {
    case $1 in
        1b) echo "--dim 2048 --layers 22 --heads 32 --kv-heads 4 --hidden 5632 --vocab 32000" ;;
        7b) echo "--dim 4096 --layers 32 --heads 32 --kv-heads 32 --hidden 11008 --vocab 32000" ;;
    esac
}
for shape in $SHAPES; do
    for bt in $BTS; do
        b=${bt%x*}; t=${bt#*x}
        for clip in $CLIPS; do
            tag="${shape}_b${b}_t${t}_clip$clip"
            args="$(shape_args $shape) --batch $b --seq $t --steps $STEPS --warmup 1 --checkpointing --clip-norm $clip"
            r=1
            while [ $r -le $REPEATS ]; do
                echo "== $tag, pair $r of $REPEATS"
                timeout "$RUN_TIMEOUT" build/bench_cuda $args --device cuda --dtype bf16 --out "$OUTD/lomo_${tag}_r$r.json" \
                    || echo "lomo failed or timed out on $tag"
                timeout "$RUN_TIMEOUT" "$PYTHON" bench/bench_torch.py $args --device cuda --dtype bf16 --out "$OUTD/torch_${tag}_r$r.json" \
                    || echo "pytorch failed or timed out on $tag"
                r=$((r + 1))
            done
        done
    done
done
OUTD="$OUTD" "$PYTHON" - <<'PY'
import glob, json, os, re, statistics, sys
sys.path.insert(0, "bench")
from cuda_floor import floor
outd = os.environ["OUTD"]
runs = {}
for f in sorted(glob.glob(f"{outd}/*_r*.json")):
    m = re.match(r"(lomo|torch)_(.+)_r\d+\.json$", os.path.basename(f))
    if m:
        runs.setdefault(m.group(2), {}).setdefault(m.group(1), []).append(json.load(open(f)))
def stat(xs):
    return (statistics.median(xs), min(xs), max(xs)) if xs else (float("nan"),) * 3
gpu = next((r["lomo"][0].get("gpu", "?") for r in runs.values() if r.get("lomo")), "?")
out = [f"GPU: {gpu}. bf16 weights, activation checkpointing on both, random weights made on the device. "
       "tok/s: median (min-max) over the interleaved pairs; ratio = lomo median / PyTorch median. lomo peak = its "
       "tracked device allocations; lomo used = cudaMemGetInfo at the end (context included); PyTorch peak = "
       "max_memory_allocated (reserved in brackets; context not included); floor = bench/cuda_floor.py from the "
       "shapes (bf16 params + bf16 checkpoints + one layer + fp32 logits + one bf16 gradient + measured context "
       "+ cuBLAS workspace), independent of lomo's plan.", "",
       "| shape | batch x seq | clip | pairs | lomo tok/s | PyTorch tok/s | ratio | lomo peak GiB | lomo used GiB | PyTorch peak GiB | floor GiB | lomo MFU |",
       "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
rows = []
for tag, r in sorted(runs.items()):
    L, T = r.get("lomo", []), r.get("torch", [])
    if not L:
        continue
    c = L[0]["config"]
    ctx = L[0].get("context_mib", 0.0)
    fl = floor(c["dim"], c["layers"], c["heads"], c["kv_heads"], c["hidden"], c["vocab"], c["batch"], c["seq"], ctx)
    lm, lmin, lmax = stat([x["tokens_per_s"] for x in L])
    tm, tmin, tmax = stat([x["tokens_per_s"] for x in T])
    tp = max((x.get("peak_device_mib") or 0) for x in T) / 1024 if T else float("nan")
    tr = max((x.get("peak_reserved_mib") or 0) for x in T) / 1024 if T else float("nan")
    out.append(f"| {tag.split('_')[0]} | {c['batch']} x {c['seq']} | {c['clip_norm']:g} | {len(L)}/{len(T)} | "
               f"{lm:.0f} ({lmin:.0f}-{lmax:.0f}) | {tm:.0f} ({tmin:.0f}-{tmax:.0f}) | {lm / tm:.2f}x | "
               f"{max(x['tracked_peak_mib'] for x in L) / 1024:.2f} | {max(x['device_used_mib'] for x in L) / 1024:.2f} | "
               f"{tp:.2f} ({tr:.2f}) | {fl['total'] / 2**30:.2f} | {100 * statistics.median(x['mfu'] for x in L):.1f}% |")
    rows.append({"tag": tag, "lomo": L, "pytorch": T, "floor": fl})
print("\n".join(out))
open(f"{outd}/cuda.md", "w").write("\n".join(out) + "\n")
json.dump(rows, open(f"{outd}/cuda.json", "w"), indent=1)
PY
