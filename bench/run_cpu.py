#!/usr/bin/env python3
"""lomo (build/bench_cpu) against PyTorch + transformers + lomo-optim
(bench/bench_torch.py), interleaved, on this CPU; run by bench/run_cpu.sh
(`make bench`). Standard library only: the peer runs in $PYTHON's venv.

For each shape: one warm-up pair (not counted), then PAIRS pairs (default 5)
whose order alternates (lomo first, then the peer first); each pair also
measures the machine's sgemm peak through lomo's own matmul (same BLAS, same
threads) right before, so the FLOP/s ratio is taken under the same load.
Reported per shape: median lomo/PyTorch tokens/s ratio with min and max,
both medians, peak RSS, lomo's achieved GFLOP/s and its share of the peak.

Then the loaded machine: the bench starts one busy loop per core, runs
LOADED_PAIRS pairs on the first shape and on the small demo shape (lomo only
there: the shape where spinning OpenMP threads collapsed 20x), and stops the
loops; then LOADED_PAIRS lomo runs of the first shape with the busy loops in
another session (setsid: Linux's autogroup then splits the machine between
sessions, not threads). Reported: tokens/s loaded / unloaded. With one busy loop per core a
fair share is half the machine, so a drop to 0.5x is "in proportion".

Writes bench/out/cpu.json and bench/out/cpu.md.
  env: PYTHON (the venv's python), PAIRS, LOADED_PAIRS, SHAPES (comma list of
  names below), NO_LOADED=1 to skip the loaded runs, NO_DTYPES=1 to skip the
  f32/bf16/f16 storage comparison (lomo only, LOADED_PAIRS rounds of the
  DTYPES below, interleaved; each 16-bit run also times widening every weight
  once, so the table can say what 16-bit storage costs beyond fp32); when the
  environment sets OPENBLAS_CORETYPE (this project's machines set Haswell),
  the first shape runs LOADED_PAIRS more pairs with it unset, OpenBLAS's own
  kernel choice (NO_NATIVE=1 skips them).
"""
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.chdir(ROOT)
PYTHON = os.environ.get("PYTHON", "/root/lomo-venv/bin/python")
PAIRS = int(os.environ.get("PAIRS", "5"))
LOADED_PAIRS = int(os.environ.get("LOADED_PAIRS", "3"))
NCPU = os.cpu_count() or 1

SHAPES = {
    # name: (flags shared by both, timed steps)
    "bench": ("--dim 512 --layers 6 --heads 8 --kv-heads 8 --hidden 1376 --vocab 6144 --batch 4 --seq 256", 3),
    "long": ("--dim 512 --layers 6 --heads 8 --kv-heads 8 --hidden 1376 --vocab 6144 --batch 1 --seq 2048", 2),
    "gqa": ("--dim 768 --layers 10 --heads 12 --kv-heads 3 --hidden 2048 --vocab 32000 --batch 1 --seq 512", 2),
}
DEMO = "--dim 96 --hidden 256 --layers 4 --heads 6 --kv-heads 2 --vocab 64 --tied --batch 8 --seq 32 --clip-norm 1"
OUT = "bench/out"
# storage dtypes compared (lomo only): f16's dynamic loss scaling is off by default on the CPU
# (fp32 gradients); the last row turns it on: its overflow check is one more backward pass
DTYPES = {"f32": "--dtype f32", "bf16": "--dtype bf16", "f16": "--dtype f16",
          "f16, loss scaling on": "--dtype f16 --loss-scaling on"}


def run(cmd, out_json, env=None):
    if os.path.exists(out_json):
        os.remove(out_json)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    if p.returncode != 0 or not os.path.exists(out_json):
        sys.stdout.write(p.stdout)
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return json.load(open(out_json))


def lomo(shape, steps, tag, env=None):
    f = f"{OUT}/lomo_{tag}.json"
    return run(["build/bench_cpu"] + shape.split() + ["--checkpointing", "--steps", str(steps), "--warmup", "1",
                                                      "--out", f], f, env)


def peer(shape, steps, tag):
    f = f"{OUT}/torch_{tag}.json"
    flags = shape.replace("--tied", "").replace("--clip-norm 1", "--clip-norm 1.0").split()
    return run([PYTHON, "bench/bench_torch.py"] + flags + ["--checkpointing", "--steps", str(steps), "--warmup", "1",
                                                         "--threads", str(NCPU), "--out", f], f)


def peak(env=None):
    f = f"{OUT}/sgemm.json"
    return run(["build/bench_cpu", "--sgemm-peak", "2048", "--out", f], f, env)["gflops"]


def pairs(name, shape, steps, n, have_peer, env=None):
    rows = []
    for i in range(n + 1):   # pair 0 is the warm-up
        g = peak(env)
        first_lomo = i % 2 == 0
        a = b = None
        for which in ((0, 1) if first_lomo else (1, 0)):
            if which == 0:
                a = lomo(shape, steps, name, env)
            elif have_peer:
                b = peer(shape, steps, name)
        r = {"lomo": a, "torch": b, "sgemm_gflops": g}
        tag = "warm-up" if i == 0 else f"pair {i}"
        msg = f"  {name} {tag}: lomo {a['tokens_per_s']:.1f} tok/s, {a['gflops']:.1f} GFLOP/s of sgemm {g:.1f}"
        if b:
            msg += f"; pytorch {b['tokens_per_s']:.1f} tok/s; ratio {a['tokens_per_s'] / b['tokens_per_s']:.2f}x"
        print(msg, flush=True)
        if i > 0:
            rows.append(r)
    return rows


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def summary(name, rows):
    lt = [r["lomo"]["tokens_per_s"] for r in rows]
    s = {"shape": name, "params": rows[0]["lomo"]["params"], "config": rows[0]["lomo"]["config"],
         "lomo_tps": med(lt), "lomo_rss": max(r["lomo"]["peak_rss_mib"] for r in rows),
         "frac_peak": [r["lomo"]["gflops"] / r["sgemm_gflops"] for r in rows],
         "gflops": med([r["lomo"]["gflops"] for r in rows]), "sgemm": med([r["sgemm_gflops"] for r in rows]),
         "pairs": rows}
    if rows[0]["torch"]:
        ratios = [r["lomo"]["tokens_per_s"] / r["torch"]["tokens_per_s"] for r in rows]
        s.update(torch_tps=med([r["torch"]["tokens_per_s"] for r in rows]),
                 torch_rss=max(r["torch"]["peak_rss_mib"] for r in rows),
                 torch_base_rss=rows[0]["torch"]["baseline_rss_mib"],
                 ratio=med(ratios), ratio_min=min(ratios), ratio_max=max(ratios),
                 torch_version=rows[0]["torch"]["config"]["torch"],
                 transformers_version=rows[0]["torch"]["config"]["transformers"])
    return s


@contextlib.contextmanager
def busy(n, new_session=False):
    """n busy loops (in a session of their own with new_session) while the block runs"""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=new_session) for _ in range(n)]
    try:
        time.sleep(1.0)
        yield
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def main():
    os.makedirs(OUT, exist_ok=True)
    have_peer = subprocess.run([PYTHON, "-c", "import torch, transformers, lomo_optim"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
    if not have_peer:
        print(f"PyTorch + transformers + lomo-optim not found for {PYTHON}: peer not measured")
    cpu = platform.processor()
    try:
        cpu = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")][0]
    except Exception:
        pass
    load0 = os.getloadavg()[0]
    names = [s for s in os.environ.get("SHAPES", "bench,long,gqa").split(",") if s]
    res = {"cpu": cpu, "cores": NCPU, "loadavg_start": load0, "pairs": PAIRS, "shapes": []}
    for name in names:
        shape, steps = SHAPES[name]
        print(f"== {name}: {shape}, {steps} timed steps, checkpointing", flush=True)
        res["shapes"].append(summary(name, pairs(name, shape, steps, PAIRS, have_peer)))
    res["blas"] = res["shapes"][0]["pairs"][0]["lomo"].get("blas", "?") if res["shapes"] else "?"
    if res["shapes"] and "OPENBLAS_CORETYPE" in os.environ and os.environ.get("NO_NATIVE") != "1":
        # the environment names OpenBLAS's kernels: the first shape once more with OpenBLAS's own choice
        env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
        shape, steps = SHAPES[res["shapes"][0]["shape"]]
        print(f"== {res['shapes'][0]['shape']} with OPENBLAS_CORETYPE unset (OpenBLAS's own kernel choice)", flush=True)
        n = summary(res["shapes"][0]["shape"], pairs("native", shape, steps, LOADED_PAIRS, have_peer, env))
        n["blas"] = n["pairs"][0]["lomo"].get("blas", "?")
        res["native"] = n
    if res["shapes"] and os.environ.get("NO_DTYPES") != "1":
        # 16-bit storage against fp32 storage, lomo only, interleaved
        shape, steps = SHAPES[res["shapes"][0]["shape"]]
        print(f"== storage dtypes: f32, bf16, f16 on the {res['shapes'][0]['shape']} shape", flush=True)
        tps = {d: [] for d in DTYPES}
        widen = {d: [] for d in DTYPES}
        narrow = {d: [] for d in DTYPES}
        step = {d: [] for d in DTYPES}
        for i in range(LOADED_PAIRS):
            for dt, flags in DTYPES.items():
                r = lomo(shape + " " + flags, steps, "dtype")
                tps[dt].append(r["tokens_per_s"]); widen[dt].append(r["widen_ms"]); step[dt].append(r["step_ms"])
                narrow[dt].append(r.get("narrow_ms", 0.0))
            print(f"  dtypes {i + 1}: " + ", ".join(f"{d} {tps[d][-1]:.1f}" for d in tps), flush=True)
        res["dtypes"] = {d: {"tps": v, "median": med(v), "vs_f32": [a / b for a, b in zip(v, tps["f32"])],
                             "widen_ms": med(widen[d]), "step_ms": med(step[d]),
                             "widen_vs_f32_step": [w / s for w, s in zip(widen[d], step["f32"])],
                             "narrow_ms": med(narrow[d]),
                             # the conversions a step makes: each weight widened 3 times (5 with loss
                             # scaling), each linear weight's update from its fp32 gradient once
                             "conversions_vs_f32_step": [((5 if "scaling" in d else 3) * w + n) / s for w, n, s in
                                                         zip(widen[d], narrow[d], step["f32"])],
                             "slowdown": [a / b - 1.0 for a, b in zip(step[d], step["f32"])]}
                         for d, v in tps.items()}
    if os.environ.get("NO_LOADED") != "1":
        base = res["shapes"][0]
        shape, steps = SHAPES[base["shape"]]
        demo_idle = [lomo(DEMO, 100, "demo")["tokens_per_s"] for _ in range(LOADED_PAIRS)]
        print(f"== loaded: {NCPU} busy loops (one per core), {base['shape']} shape and the demo shape", flush=True)
        with busy(NCPU):
            rows = pairs(base["shape"] + "-loaded", shape, steps, LOADED_PAIRS, have_peer)
            demo_loaded = [lomo(DEMO, 100, "demo")["tokens_per_s"] for _ in range(LOADED_PAIRS)]
        # the same load from another session (as another user's or a shell's jobs): Linux's
        # autogroup scheduling then gives each session half the machine, whatever its threads
        print(f"== loaded from another session: {NCPU} busy loops under setsid, {base['shape']} shape, lomo", flush=True)
        with busy(NCPU, new_session=True):
            other = [lomo(shape, steps, "other-session")["tokens_per_s"] for _ in range(LOADED_PAIRS)]
        print("  " + ", ".join(f"{x:.1f}" for x in other) + " tok/s", flush=True)
        l = summary(base["shape"], rows)
        res["loaded"] = {"busy_loops": NCPU, "lomo_tps": l["lomo_tps"], "lomo_vs_idle": l["lomo_tps"] / base["lomo_tps"],
                         "demo_idle_tps": med(demo_idle), "demo_loaded_tps": med(demo_loaded),
                         "demo_vs_idle": med(demo_loaded) / med(demo_idle), "pairs": rows,
                         "other_session_tps": other, "other_session_vs_idle": med(other) / base["lomo_tps"]}
        if "torch_tps" in l and "torch_tps" in base:
            res["loaded"].update(torch_tps=l["torch_tps"], torch_vs_idle=l["torch_tps"] / base["torch_tps"],
                                 ratio=l["ratio"], ratio_min=l["ratio_min"], ratio_max=l["ratio_max"])
    res["loadavg_end"] = os.getloadavg()[0]

    lines = [f"CPU: {cpu}, {NCPU} cores; load average {load0:.1f} at the start, {res['loadavg_end']:.1f} at the end "
             f"(1-minute, other work included). fp32, activation checkpointing on both, no clipping. "
             f"{PAIRS} interleaved pairs after a warm-up pair; medians, ratio min-max.", "",
             f"lomo's matmuls: {res['blas']}." + (f" Last row: the same shape, {LOADED_PAIRS} pairs, with "
             f"OPENBLAS_CORETYPE unset ({res['native']['blas']}); the peer (MKL) is unaffected."
             if "native" in res else ""), ""]
    if res["shapes"] and "torch_version" in res["shapes"][0]:
        s0 = res["shapes"][0]
        lines.append(f"Peer: PyTorch {s0['torch_version']} + transformers {s0['transformers_version']} + lomo-optim 0.1.1, "
                     f"{NCPU} threads. sgemm peak: lomo's matmul at n=2048 (same BLAS, same threads), measured in each pair.")
        lines.append("")
    lines += ["| shape | params | lomo tok/s | PyTorch tok/s | lomo / PyTorch (min-max) | RSS lomo / PyTorch MiB | "
              "lomo GFLOP/s | sgemm peak | of peak |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    rows_md = list(res["shapes"])
    if "native" in res:
        rows_md.append(dict(res["native"], shape=res["native"]["shape"] + ", OpenBLAS's own kernels"))
    for s in rows_md:
        c = s["config"]
        desc = f"{s['shape']}: {c['layers']}L dim {c['dim']} {c['heads']}/{c['kv_heads']} heads, V {c['vocab']}, {c['batch']} x {c['seq']}"
        fp = s["frac_peak"]
        if "ratio" in s:
            lines.append(f"| {desc} | {s['params'] / 1e6:.1f}M | {s['lomo_tps']:.1f} | {s['torch_tps']:.1f} | "
                         f"{s['ratio']:.2f}x ({s['ratio_min']:.2f}-{s['ratio_max']:.2f}) | {s['lomo_rss']:.0f} / {s['torch_rss']:.0f} | "
                         f"{s['gflops']:.1f} | {s['sgemm']:.1f} | {100 * med(fp):.0f}% ({100 * min(fp):.0f}-{100 * max(fp):.0f}) |")
        else:
            lines.append(f"| {desc} | {s['params'] / 1e6:.1f}M | {s['lomo_tps']:.1f} | - | - | {s['lomo_rss']:.0f} / - | "
                         f"{s['gflops']:.1f} | {s['sgemm']:.1f} | {100 * med(fp):.0f}% |")
    if "dtypes" in res:
        D = res["dtypes"]
        lines += ["", f"Storage dtype, lomo, {res['shapes'][0]['shape']} shape ({LOADED_PAIRS} interleaved triples; "
                      "compute is fp32 either way, 16-bit weights are widened for each matmul; widening = every weight "
                      "widened to fp32 once, as a share of the f32 step; a checkpointed step widens each weight 3 times, "
                      "5 with loss scaling, whose overflow pass is one more backward pass; loss scaling is off by default "
                      "on the CPU):", "",
                  "| storage | tok/s | vs f32 (min-max) | step ms | step longer by | widening once, ms | "
                  "update from fp32 grad, ms | conversions / f32 step |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for d in DTYPES:
            r, sl, cv = D[d]["vs_f32"], D[d]["slowdown"], D[d]["conversions_vs_f32_step"]
            lines.append(f"| {d} | {D[d]['median']:.1f} | {med(r):.2f}x ({min(r):.2f}-{max(r):.2f}) | {D[d]['step_ms']:.0f} | "
                         f"{100 * med(sl):.1f}% | {D[d]['widen_ms']:.1f} | {D[d]['narrow_ms']:.1f} | {100 * med(cv):.1f}% |")
        lines += ["", "Conversions: what a 16-bit step converts that an fp32 one does not, timed on their own: each weight "
                      "widened 3 times (5 with loss scaling), and each linear weight updated once from its fp32 gradient "
                      "(fp32 storage has the dW GEMM update the weight). \"Step longer by\" at or below it: 16-bit storage "
                      "costs no more than its conversions."]
    if "loaded" in res:
        L = res["loaded"]
        lines += ["", f"Loaded machine ({L['busy_loops']} busy loops, one per core, started and stopped by the bench; "
                      f"a fair share is 0.5x):", "",
                  "| case | idle tok/s | loaded tok/s | loaded / idle |", "|---|---:|---:|---:|",
                  f"| lomo, {res['shapes'][0]['shape']} shape | {res['shapes'][0]['lomo_tps']:.1f} | {L['lomo_tps']:.1f} | {L['lomo_vs_idle']:.2f}x |"]
        if "torch_tps" in L:
            lines.append(f"| PyTorch, {res['shapes'][0]['shape']} shape | {res['shapes'][0]['torch_tps']:.1f} | {L['torch_tps']:.1f} | "
                         f"{L['torch_vs_idle']:.2f}x |")
        lines.append(f"| lomo, demo shape (100 steps) | {L['demo_idle_tps']:.0f} | {L['demo_loaded_tps']:.0f} | {L['demo_vs_idle']:.2f}x |")
        lines.append(f"| lomo, {res['shapes'][0]['shape']} shape, the busy loops in another session (setsid) | "
                     f"{res['shapes'][0]['lomo_tps']:.1f} | {med(L['other_session_tps']):.1f} | {L['other_session_vs_idle']:.2f}x |")
        if "ratio" in L:
            lines += ["", f"Loaded, lomo / PyTorch: {L['ratio']:.2f}x ({L['ratio_min']:.2f}-{L['ratio_max']:.2f})."]
    out = "\n".join(lines)
    print()
    print(out)
    open(f"{OUT}/cpu.md", "w").write(out + "\n")
    json.dump(res, open(f"{OUT}/cpu.json", "w"), indent=1)


if __name__ == "__main__":
    main()
