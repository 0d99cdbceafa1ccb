#!/bin/sh
# lomo (C/CUDA) next to PyTorch transformers LlamaForCausalLM + lomo-optim,
# in one run on the same GPU: bf16, gradient checkpointing on both, random
# Llama shapes (TinyLlama-1.1B and LLaMA-7B), seq 1024 x batch 1 and the
# paper's 8 x 512, with and without norm clipping. Prints a table (tokens/s,
# peak device memory, MFU, ratios) and writes bench/out/cuda.md and .json.
# Needs: a GPU, `make cuda`, and python with torch + transformers + lomo-optim
# (PYTHON=...; lomo-optim is pure Python: see bench/README.md for the wheel).
set -e
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
STEPS=${STEPS:-3}
SHAPES=${SHAPES:-"1b 7b"}
mkdir -p bench/out
[ -x build/bench_cuda ] || make -s cuda
shape_args() {
    case $1 in
        1b) echo "--dim 2048 --layers 22 --heads 32 --kv-heads 4 --hidden 5632 --vocab 32000" ;;
        7b) echo "--dim 4096 --layers 32 --heads 32 --kv-heads 32 --hidden 11008 --vocab 32000" ;;
    esac
}
for shape in $SHAPES; do
    for bt in "1 1024" "8 512"; do
        set -- $bt
        for clip in 0 1.0; do
            tag="${shape}_b$1_t$2_clip$clip"
            args="$(shape_args $shape) --batch $1 --seq $2 --steps $STEPS --warmup 1 --checkpointing --clip-norm $clip"
            echo "== $tag"
            build/bench_cuda $args --device cuda --dtype bf16 --out bench/out/lomo_$tag.json || echo "lomo failed on $tag"
            "$PYTHON" bench/bench_torch.py $args --device cuda --dtype bf16 --out bench/out/torch_$tag.json \
                || echo "pytorch failed on $tag"
        done
    done
done
"$PYTHON" - <<'PY'
import glob, json, os
rows = []
for f in sorted(glob.glob("bench/out/lomo_*_clip*.json")):
    tag = os.path.basename(f)[5:-5]
    lomo = json.load(open(f))
    tf = f"bench/out/torch_{tag}.json"
    torch = json.load(open(tf)) if os.path.exists(tf) else None
    rows.append((tag, lomo, torch))
gpu = rows[0][1].get("gpu", "?") if rows else "?"
out = [f"GPU: {gpu}. bf16, activation checkpointing on both; lomo peak = its tracked device allocations, "
       "PyTorch peak = torch.cuda.max_memory_allocated; floor = lomo_memory_formula (parameters + checkpoints + "
       "one layer's working set + gradient buffer).", "",
       "| shape | batch x seq | clip | lomo tok/s | PyTorch tok/s | speedup | lomo peak GiB | floor GiB | PyTorch peak GiB | lomo MFU |",
       "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
for tag, l, t in rows:
    c = l["config"]
    tt = t["tokens_per_s"] if t else float("nan")
    tp = t["peak_device_mib"] / 1024 if t and t.get("peak_device_mib") else float("nan")
    out.append(f"| {tag.split('_')[0]} | {c['batch']} x {c['seq']} | {c['clip_norm']:g} | {l['tokens_per_s']:.0f} | {tt:.0f} | "
               f"{l['tokens_per_s'] / tt:.2f}x | {l['tracked_peak_mib'] / 1024:.2f} | {l['formula_mib'] / 1024:.2f} | {tp:.2f} | "
               f"{100 * l['mfu']:.1f}% |")
print("\n".join(out))
open("bench/out/cuda.md", "w").write("\n".join(out) + "\n")
json.dump([{"tag": t, "lomo": l, "pytorch": p} for t, l, p in rows], open("bench/out/cuda.json", "w"), indent=1)
PY
