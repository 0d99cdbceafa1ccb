#!/bin/sh
# Generation speed: lomo_generate vs transformers generate() on this CPU, the
# same random Llama checkpoint (bench/gen_model.py, ~58M parameters), batch 1,
# greedy, PROMPT prompt tokens and NEW new tokens, same thread count, weights
# in DTYPE (f32, or bf16: both load the fp32 checkpoint as bf16).
# Interleaved pairs (lomo, peer, lomo, peer, ...) after a warm-up inside each
# process; the ratio of each pair, then median / min / max over PAIRS pairs.
# Each lomo run also measures this machine's read bandwidth (a STREAM-like sum
# with the same threads) and the GB/s its decode steps achieved.
# Writes bench/out/gen.jsonl (every run) and bench/out/gen.md (the table; also
# copied to bench/out/gen_<DTYPE>_t<THREADS>.md).
#   PYTHON=/root/lomo-venv/bin/python PAIRS=5 NEW=64 THREADS=1 sh bench/run_gen.sh
set -e
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/root/lomo-venv/bin/python}
PAIRS=${PAIRS:-5}; PROMPT=${PROMPT:-128}; NEW=${NEW:-128}; THREADS=${THREADS:-$(nproc)}; DTYPE=${DTYPE:-f32}
MODEL=${MODEL:-build/bench_gen_model}
mkdir -p bench/out build
make -s build/bench_gen
"$PYTHON" bench/gen_model.py "$MODEL"
: > bench/out/gen.jsonl
for i in $(seq "$PAIRS"); do
    OMP_NUM_THREADS=$THREADS build/bench_gen --model "$MODEL" --prompt "$PROMPT" --new "$NEW" --dtype "$DTYPE" \
        --ids-out build/gen_ids_lomo.json >> bench/out/gen.jsonl
    OMP_NUM_THREADS=$THREADS "$PYTHON" bench/bench_gen_torch.py --model "$MODEL" --prompt "$PROMPT" --new "$NEW" \
        --dtype "$DTYPE" --threads "$THREADS" --ids-out build/gen_ids_torch.json >> bench/out/gen.jsonl
    echo "pair $i/$PAIRS done"
done
"$PYTHON" - "$THREADS" "$DTYPE" <<'PY'
import json, os, statistics, sys
rows = [json.loads(l) for l in open("bench/out/gen.jsonl")]
lomo = [r for r in rows if r["impl"] == "lomo"]; peer = [r for r in rows if r["impl"] == "transformers"]
same = json.load(open("build/gen_ids_lomo.json")) == json.load(open("build/gen_ids_torch.json"))
cpu = ""
try:
    cpu = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")][0]
except Exception:
    pass
try:
    load = open("/proc/loadavg").read().split()[0]
except Exception:
    load = "?"
dt = sys.argv[2]
def stat(xs): return statistics.median(xs), min(xs), max(xs)
lines = [f"CPU: {cpu}, {os.cpu_count()} cores, {sys.argv[1]} threads each (OMP_NUM_THREADS / torch.set_num_threads); "
         f"load average {load} at the end; runs interleaved in {len(lomo)} pairs.",
         f"Model: random Llama, {lomo[0]['params_mib'] * 1048576 / (4e6 if dt == 'f32' else 2e6):.1f}M parameters {dt} "
         f"({lomo[0]['params_mib']:.0f} MiB), batch 1, "
         f"prompt {lomo[0]['prompt']} tokens, {lomo[0]['new']} new tokens, greedy; "
         f"torch {peer[0]['torch']}. Greedy ids identical: {'yes' if same else 'NO'}.", "",
         "| | lomo median (min-max) | transformers median (min-max) | ratio lomo/transformers median (min-max) |",
         "|---|---:|---:|---:|"]
for key, name in (("decode_tok_s", "decode tokens/s"), ("prefill_tok_s", "prefill tokens/s")):
    lm, pm = [r[key] for r in lomo], [r[key] for r in peer]
    ratios = [a / b for a, b in zip(lm, pm)]
    l, p, q = stat(lm), stat(pm), stat(ratios)
    lines.append(f"| {name} | {l[0]:.1f} ({l[1]:.1f}-{l[2]:.1f}) | {p[0]:.1f} ({p[1]:.1f}-{p[2]:.1f}) | "
                 f"**{q[0]:.2f}x** ({q[1]:.2f}-{q[2]:.2f}) |")
mb = lomo[0]["step_mb"]
lg, pg = stat([r["decode_tok_s"] * mb / 1e3 for r in lomo]), stat([r["decode_tok_s"] * mb / 1e3 for r in peer])
bw = stat([r["mem_read_gb_s"] for r in lomo])
lines.append(f"| decode GB/s ({mb:.0f} MB read per step) | {lg[0]:.1f} ({lg[1]:.1f}-{lg[2]:.1f}) | "
             f"{pg[0]:.1f} ({pg[1]:.1f}-{pg[2]:.1f}) | |")
lines.append(f"| machine read GB/s (STREAM-like sum, {sys.argv[1]} threads) | {bw[0]:.1f} ({bw[1]:.1f}-{bw[2]:.1f}) | | |")
lr, pr = stat([r["peak_rss_mib"] for r in lomo]), stat([r["peak_rss_mib"] for r in peer])
lines.append(f"| peak RSS MiB | {lr[0]:.0f} | {pr[0]:.0f} (import alone {peer[0]['import_rss_mib']:.0f}) | {lr[0] / pr[0]:.2f}x |")
lines.append("")
lines.append(f"A decode step reads every weight but the embedding once, one embedding row and the KV cache "
             f"({mb:.0f} MB on average here): lomo's median decode reaches {100 * lg[0] / bw[0]:.0f}% of the "
             f"machine's read bandwidth (median of the runs' own measurements), transformers' {100 * pg[0] / bw[0]:.0f}%.")
lines.append(f"lomo's KV cache + decode buffers (LOMO_MEM_KV, seen in lomo_memory_report while generating): "
             f"{lomo[0]['kv_seen_mib']:.2f} MiB for {lomo[0]['prompt'] + lomo[0]['new']} positions.")
out = "\n".join(lines)
print(out)
open("bench/out/gen.md", "w").write(out + "\n")
open(f"bench/out/gen_{dt}_t{sys.argv[1]}.md", "w").write(out + "\n")
PY
