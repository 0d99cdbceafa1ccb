#!/bin/sh
# lomo (C, this repo) next to PyTorch transformers + lomo-optim (the authors'
# package), same Llama shape, batch, sequence, checkpointing, in one run on
# this CPU. Prints a table and writes bench/out/cpu.json and bench/out/cpu.md.
#   PYTHON=/path/to/venv/bin/python sh bench/run_cpu.sh
# The venv needs torch, transformers and lomo-optim==0.1.1 (bench/README.md).
set -e
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/root/lomo-venv/bin/python}
STEPS=${STEPS:-3}
SHAPE="--dim 512 --layers 6 --heads 8 --kv-heads 8 --hidden 1376 --vocab 6144 --batch 4 --seq 256"
mkdir -p bench/out
make -s build/bench_cpu
echo "== lomo"
build/bench_cpu $SHAPE --steps $STEPS --warmup 1 --checkpointing --out bench/out/lomo_cpu.json
if "$PYTHON" -c "import torch, transformers, lomo_optim" 2>/dev/null; then
    echo "== PyTorch + lomo-optim"
    "$PYTHON" bench/bench_torch.py $SHAPE --steps $STEPS --warmup 1 --checkpointing \
        --threads "$(nproc)" --out bench/out/torch_cpu.json
else
    echo "PyTorch + transformers + lomo-optim not found for $PYTHON: peer not measured"
fi
python3 - <<'PY'
import json, os, platform, subprocess
rows = []
for f in ("bench/out/lomo_cpu.json", "bench/out/torch_cpu.json"):
    if os.path.exists(f):
        rows.append(json.load(open(f)))
cpu = ""
try:
    cpu = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")][0]
except Exception:
    pass
c = rows[0]["config"]
head = (f"CPU: {cpu}, {os.cpu_count()} cores. Llama {rows[0]['params']/1e6:.1f}M params "
        f"(dim {c['dim']}, {c['layers']} layers, hidden {c['hidden']}, vocab {c['vocab']}), "
        f"batch {c['batch']} x seq {c['seq']}, fp32, activation checkpointing on, no clipping")
lines = [head, "", "| implementation | tokens/s | peak RSS MiB | vs PyTorch tokens/s | vs PyTorch RSS |",
         "|---|---:|---:|---:|---:|"]
ref = rows[1] if len(rows) > 1 else None
for r in rows:
    name = r["impl"] + (f" ({r['backend']})" if "backend" in r else "")
    tps, rss = r["tokens_per_s"], r["peak_rss_mib"]
    ratio = f"{tps / ref['tokens_per_s']:.2f}x" if ref else "-"
    mem = f"{rss / ref['peak_rss_mib']:.2f}x" if ref else "-"
    lines.append(f"| {name} | {tps:.1f} | {rss:.0f} | {ratio} | {mem} |")
if ref and "baseline_rss_mib" in ref:
    lines.append("")
    lines.append(f"PyTorch's RSS includes {ref['baseline_rss_mib']:.0f} MiB taken by importing torch + transformers before the model exists.")
out = "\n".join(lines)
print(out)
open("bench/out/cpu.md", "w").write(out + "\n")
json.dump(rows, open("bench/out/cpu.json", "w"), indent=1)
PY
