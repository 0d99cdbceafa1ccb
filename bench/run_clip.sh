#!/bin/sh
# The cost of clipping by norm, per method, next to an unclipped step, in one
# run on this CPU: global norm (a second backward pass that forms every
# gradient), the same norm from Gram matrices (the second pass skips forming
# weight gradients where N (O + K) < O K), and per-tensor clipping (one pass).
# Writes bench/out/clip.md and bench/out/clip.json.
set -e
cd "$(dirname "$0")/.."
STEPS=${STEPS:-3}
PAIRS=${PAIRS:-5}
SHAPE=${SHAPE:-"--dim 1024 --layers 4 --heads 16 --kv-heads 16 --hidden 2816 --vocab 8192 --batch 1 --seq 128"}
mkdir -p bench/out
make -s build/bench_cpu
MODES=${MODES-none global gram tensor}   # MODES= skips the clipping table (only the check's cost)
[ -z "$MODES" ] || for mode in $MODES; do
    if [ $mode = none ]; then clip="--clip-norm 0"; else clip="--clip-norm 1.0 --clip-mode $mode"; fi
    build/bench_cpu $SHAPE --steps $STEPS --warmup 1 $clip --out bench/out/clip_$mode.json | head -n 2
done
[ -z "$MODES" ] || python3 - <<'PY'
import json
rows = [(m, json.load(open(f"bench/out/clip_{m}.json"))) for m in ("none", "global", "gram", "tensor")]
base = rows[0][1]["tokens_per_s"]
c = rows[0][1]["config"]
names = {"none": "no clipping", "global": "global norm, 2 passes", "gram": "global norm, Gram norm pass", "tensor": "per-tensor norm, 1 pass"}
out = [f"Llama {rows[0][1]['params']/1e6:.1f}M (dim {c['dim']}, {c['layers']} layers, hidden {c['hidden']}, vocab {c['vocab']}), "
       f"batch {c['batch']} x seq {c['seq']}, fp32, CPU", "",
       "| clipping | s/step | tokens/s | step time vs unclipped |", "|---|---:|---:|---:|"]
for m, r in rows:
    tps = r["tokens_per_s"]
    out.append(f"| {names[m]} | {c['batch'] * c['seq'] / tps:.3f} | {tps:.1f} | {base / tps:.2f}x |")
print("\n".join(out))
open("bench/out/clip.md", "w").write("\n".join(out) + "\n")
json.dump({m: r for m, r in rows}, open("bench/out/clip.json", "w"), indent=1)
PY

# the non-finite weight check: interleaved pairs, check on / off
for i in $(seq 1 $PAIRS); do
    build/bench_cpu $SHAPE --steps $STEPS --warmup 1 --clip-norm 0 --out bench/out/finite_on_$i.json > /dev/null
    build/bench_cpu $SHAPE --steps $STEPS --warmup 1 --clip-norm 0 --no-finite-check --out bench/out/finite_off_$i.json > /dev/null
done
PAIRS=$PAIRS python3 - <<'PY'
import json, os, platform, statistics
n = int(os.environ["PAIRS"])
on = [json.load(open(f"bench/out/finite_on_{i}.json")) for i in range(1, n + 1)]
off = [json.load(open(f"bench/out/finite_off_{i}.json")) for i in range(1, n + 1)]
ratio = [b["tokens_per_s"] / a["tokens_per_s"] for a, b in zip(on, off)]   # step time with check / without
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
c = on[0]["config"]
out = [f"Non-finite weight check after each update: Llama {on[0]['params']/1e6:.1f}M (dim {c['dim']}, {c['layers']} layers, "
       f"vocab {c['vocab']}), batch {c['batch']} x seq {c['seq']}, fp32, unclipped, {c['steps']} steps per run, "
       f"{n} interleaved pairs, {cpu}, {os.cpu_count()} CPUs", "",
       "| | s/step (median) | step time, check on / off: median | min | max |", "|---|---:|---:|---:|---:|",
       f"| check on | {statistics.median(c['batch'] * c['seq'] / r['tokens_per_s'] for r in on):.3f} | "
       f"{statistics.median(ratio):.3f}x | {min(ratio):.3f}x | {max(ratio):.3f}x |",
       f"| check off | {statistics.median(c['batch'] * c['seq'] / r['tokens_per_s'] for r in off):.3f} | 1 | | |"]
print("\n".join(out))
open("bench/out/finite_check.md", "w").write("\n".join(out) + "\n")
json.dump({"ratio_on_over_off": ratio, "on": on, "off": off}, open("bench/out/finite_check.json", "w"), indent=1)
PY
