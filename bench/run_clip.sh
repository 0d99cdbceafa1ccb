#!/bin/sh
# The cost of clipping by norm, per method, next to an unclipped step, on this
# CPU: global norm (a second backward pass), the same norm from Gram matrices
# (the first pass skips forming weight gradients where N (O + K) < O K), and
# per-tensor clipping (one pass; the rule inside the dW GEMM where the Gram
# norm is cheap). The two-pass modes run with the pass cache (0.8, the default
# without checkpointing: the update pass restores the residual gradients the
# norm pass found) and without it; per-tensor also with the dW formed and
# measured (--no-fused-update: 0.7's path). ROUNDS interleaved rounds of every
# mode; the table gives median tokens/s and each mode's step time against the
# unclipped step of the same round, median (min-max).
# Then bench_cpu --gram-cost (per weight: per-tensor clipping fused or formed) and the cost of
# the non-finite weight check. Writes bench/out/clip.{md,json}, gram_cost.{md,jsonl},
# finite_check.{md,json}.
set -e
cd "$(dirname "$0")/.."
STEPS=${STEPS:-5}
PAIRS=${PAIRS:-5}
ROUNDS=${ROUNDS:-3}
SHAPE=${SHAPE:-"--dim 1024 --layers 4 --heads 16 --kv-heads 16 --hidden 2816 --vocab 8192 --batch 1 --seq 128"}
mkdir -p bench/out
make -s build/bench_cpu
MODES=${MODES-none global global_nocache gram gram_nocache tensor tensor_formed}   # MODES= skips the table
[ -z "$MODES" ] || for r in $(seq 1 $ROUNDS); do
    for mode in $MODES; do
        case $mode in
            none) clip="--clip-norm 0" ;;
            global|gram|tensor) clip="--clip-norm 1.0 --clip-mode $mode" ;;
            global_nocache|gram_nocache) clip="--clip-norm 1.0 --clip-mode ${mode%_nocache} --pass-cache off" ;;
            tensor_formed) clip="--clip-norm 1.0 --clip-mode tensor --no-fused-update" ;;
        esac
        build/bench_cpu $SHAPE --steps $STEPS --warmup 1 $clip --out bench/out/clip_${mode}_$r.json > /dev/null
        echo "round $r $mode: $(python3 -c "import json; print(json.load(open('bench/out/clip_${mode}_$r.json'))['tokens_per_s'])") tokens/s"
    done
done
[ -z "$MODES" ] || ROUNDS=$ROUNDS MODES="$MODES" python3 - <<'PY'
import json, os, platform, statistics
n, modes = int(os.environ["ROUNDS"]), os.environ["MODES"].split()
runs = {m: [json.load(open(f"bench/out/clip_{m}_{r}.json")) for r in range(1, n + 1)] for m in modes}
c = runs[modes[0]][0]["config"]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
names = {"none": "no clipping", "global": "global norm, 2 passes", "global_nocache": "global norm, 2 passes, pass cache off",
         "gram": "global norm, Gram norm pass", "gram_nocache": "global norm, Gram norm pass, pass cache off",
         "tensor": "per-tensor norm, 1 pass", "tensor_formed": "per-tensor norm, 1 pass, dW formed (--no-fused-update)"}
out = [f"Llama {runs[modes[0]][0]['params']/1e6:.1f}M (dim {c['dim']}, {c['layers']} layers, hidden {c['hidden']}, vocab {c['vocab']}), "
       f"batch {c['batch']} x seq {c['seq']}, fp32, {c['steps']} steps per run, {n} interleaved rounds, {cpu}, "
       f"{os.cpu_count()} CPUs, {runs[modes[0]][0]['blas']}", "",
       "| clipping | s/step (median) | tokens/s (median) | step time vs unclipped: median | min | max |",
       "|---|---:|---:|---:|---:|---:|"]
summary = {}
for m in modes:
    tps = [r["tokens_per_s"] for r in runs[m]]
    ratio = [b["tokens_per_s"] / a["tokens_per_s"] for a, b in zip(runs[m], runs["none"])] if "none" in runs else [1.0]
    summary[m] = {"tokens_per_s": tps, "step_vs_unclipped": ratio}
    med = statistics.median(tps)
    out.append(f"| {names.get(m, m)} | {c['batch'] * c['seq'] / med:.3f} | {med:.1f} | {statistics.median(ratio):.2f}x | "
               f"{min(ratio):.2f}x | {max(ratio):.2f}x |")
print("\n".join(out))
open("bench/out/clip.md", "w").write("\n".join(out) + "\n")
json.dump({"summary": summary, "runs": runs}, open("bench/out/clip.json", "w"), indent=1)
PY

# per-tensor clipping per weight: the Gram norm + the rule in the GEMM against the formed gradient
# (where lomo__gram_fuse_cheaper's rule sits on this CPU)
build/bench_cpu --gram-cost --out bench/out/gram_cost.jsonl | tee bench/out/gram_cost.md

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
