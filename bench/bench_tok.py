"""lomo_tokenize vs the `tokenizers` library (single-threaded), side by side.

  python3 bench/bench_tok.py [--rounds 7] [--mb 2] [TOKENIZER.json ...]

Default tokenizers: build/tok_full/llama3.json (make it with
tests/ref/tok/make_tok_fixtures.py) and tests/ref/tok/full/spm_legacy.json.
The same text (a multilingual mix: English prose, code, CJK, Arabic,
Devanagari, emoji, digits; seeded, written to build/bench_tok_text.txt) is cut
into ~2 KB documents at line ends; each round runs build/bench_tok (one warm-up
pass, one timed pass) and then the peer on the same documents in this process
(one warm-up pass, one timed encode_batch pass, RAYON_NUM_THREADS=1 and
TOKENIZERS_PARALLELISM=false so it uses one thread). Rounds are interleaved
pairs; the table gives MB/s per side (median, min, max) and the ratio
lomo/peer of each pair (median, min, max). Token counts and an id checksum
must agree, or the run stops. Numbers go to bench/out/bench_tok.json."""
import json, os, platform, random, statistics, subprocess, sys, time
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

def make_text(mb, seed=5):
    r = random.Random(seed)
    words = ("the of and to in is that for it as with was on be by this are from at or an have not which "
             "model training gradient memory layer tensor update optimizer token language fine-tune").split()
    pieces = []
    corpus = [json.loads(l)["text"] for l in open(os.path.join(ROOT, "tests/ref/tok/corpus.jsonl"))]
    n = 0
    while n < mb * 1e6:
        k = r.random()
        if k < 0.55:
            s = " ".join(r.choice(words) for _ in range(r.randint(5, 30)))
            s = s[0].upper() + s[1:] + r.choice([".", ",", "!", "?"]) + (" I'M SURE it's %d." % r.randint(0, 10**6) if r.random() < .2 else "")
        elif k < 0.65:
            s = "    def f%d(x):\n\tif x  >  %d:\n\t\treturn x**2   # note\n" % (r.randint(0, 99), r.randint(0, 999))
        else:
            s = r.choice(corpus)
        pieces.append(s + "\n")
        n += len(s.encode()) + 1
    return "".join(pieces)

def docs_of(text, size=2000):
    b = text.encode()
    out, i = [], 0
    while i < len(b):
        e = min(i + size, len(b))
        while e < len(b) and b[e - 1] != 0x0a:
            e += 1
        out.append(b[i:e].decode())
        i = e
    return out

def peer(tk, docs):
    tk.encode_batch(docs, add_special_tokens=False)  # warm-up
    t0 = time.perf_counter()
    enc = tk.encode_batch(docs, add_special_tokens=False)
    t = time.perf_counter() - t0
    ntok, s = 0, 0
    for e in enc:
        ids = e.ids
        ntok += len(ids)
        s = (s + sum(i * (k + 1) for k, i in enumerate(ids))) % 2**32
    return t, ntok, s

def main():
    args = sys.argv[1:]
    rounds, mb = 7, 2.0
    if "--rounds" in args: i = args.index("--rounds"); rounds = int(args[i + 1]); del args[i:i + 2]
    if "--mb" in args: i = args.index("--mb"); mb = float(args[i + 1]); del args[i:i + 2]
    toks = args or [p for p in (os.path.join(ROOT, "build/tok_full/llama3.json"), os.path.join(ROOT, "tests/ref/tok/full/spm_legacy.json")) if os.path.exists(p)]
    text = make_text(mb)
    path = os.path.join(ROOT, "build/bench_tok_text.txt")
    with open(path, "w") as f:
        f.write(text)
    docs = docs_of(text)
    nbytes = len(text.encode())
    cpu = platform.processor() or "?"
    try:
        cpu = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")][0]
    except Exception:
        pass
    results = {"machine": cpu, "cores": os.cpu_count(), "bytes": nbytes, "docs": len(docs), "rounds": rounds, "tokenizers": {}}
    print(f"machine: {cpu}, {os.cpu_count()} cores (shared); text {nbytes / 1e6:.2f} MB in {len(docs)} documents; {rounds} interleaved rounds")
    print(f"{'tokenizer':<14}{'tokens':>10}{'lomo MB/s':>24}{'tokenizers MB/s':>24}{'ratio lomo/peer':>24}")
    for tp in toks:
        tk = Tokenizer.from_file(tp)
        lo, pe, ratio = [], [], []
        for r in range(rounds):
            out = subprocess.run([os.path.join(ROOT, "build/bench_tok"), tp, path], capture_output=True, text=True, check=True).stdout.split()
            tl, nl, _, sl = float(out[0]), int(out[1]), int(out[2]), int(out[3])
            tp_, np_, sp_ = peer(tk, docs)
            if (nl, sl) != (np_, sp_):
                sys.exit(f"{tp}: lomo and tokenizers disagree (tokens {nl} vs {np_}, checksum {sl} vs {sp_})")
            lo.append(nbytes / tl / 1e6); pe.append(nbytes / tp_ / 1e6); ratio.append(lo[-1] / pe[-1])
        name = os.path.basename(tp)
        fmt = lambda v: f"{statistics.median(v):.2f} [{min(v):.2f}, {max(v):.2f}]"
        print(f"{name:<14}{nl:>10}{fmt(lo):>24}{fmt(pe):>24}{fmt(ratio):>24}")
        results["tokenizers"][name] = {"tokens": nl, "lomo_mb_s": lo, "peer_mb_s": pe, "ratio": ratio,
                                       "ratio_median": statistics.median(ratio)}
    os.makedirs(os.path.join(ROOT, "bench/out"), exist_ok=True)
    with open(os.path.join(ROOT, "bench/out/bench_tok.json"), "w") as f:
        json.dump(results, f, indent=1)
    print("numbers in bench/out/bench_tok.json")

if __name__ == "__main__":
    main()
