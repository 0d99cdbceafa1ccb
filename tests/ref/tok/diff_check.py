"""Differential check (not part of `make test`: needs the venv and build/llama_ft):
random texts through lomo (build/llama_ft --tokenize) and through `tokenizers`
on the same tokenizer.json files, with and without special tokens.

  python3 tests/ref/tok/diff_check.py [N] [TOKENIZER.json ...]

Texts mix the corpus pools with random code points from every plane (no
surrogates), so every category table entry is likely to be crossed."""
import json, os, random, subprocess, sys, tempfile
from tokenizers import Tokenizer
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_tok_fixtures import POOLS

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")

def rand_text(r):
    out = []
    for _ in range(r.randint(0, 60)):
        k = r.random()
        if k < 0.6:
            out.append(r.choice(r.choice(POOLS)))
        elif k < 0.8:
            cp = r.randrange(0x20, 0x3000)
            out.append(chr(cp))
        else:
            cp = r.randrange(0x3000, 0x110000)
            if 0xd800 <= cp < 0xe000: cp = 0x41
            out.append(chr(cp))
    return "".join(out)

def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    toks = sys.argv[2:] or [os.path.join(ROOT, "build/tok_full", f + ".json") for f in ("llama3", "qwen2", "gpt2", "spm_legacy", "spm_meta")]
    r = random.Random(99)
    texts = [rand_text(r) for _ in range(n)]
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for t in texts:
            f.write(json.dumps({"text": t}) + "\n")
        path = f.name
    bad_total = 0
    for tp in toks:
        tk = Tokenizer.from_file(tp)
        for special in (False, True):
            cmd = [os.path.join(ROOT, "build/llama_ft"), "--model", tp, "--tokenize", path] + (["--add-special"] if special else [])
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split("\n")[:-1]
            bad = 0
            for t, line in zip(texts, out):
                want = tk.encode(t, add_special_tokens=special).ids
                if json.loads(line) != want:
                    bad += 1
                    if bad <= 3: print("  differs:", repr(t)[:100])
            bad += abs(len(out) - len(texts))
            print(f"{os.path.basename(tp)} add_special={special}: {len(texts)} texts, {bad} differ")
            bad_total += bad
        # decode of random id runs (any id, so broken UTF-8 and specials too)
        nv = tk.get_vocab_size(with_added_tokens=True)
        runs = [[r.randrange(nv) for _ in range(r.randint(0, 20))] for _ in range(len(texts))]
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
            for ids in runs:
                f.write(json.dumps(ids) + "\n")
            ipath = f.name
        out = subprocess.run([os.path.join(ROOT, "build/llama_ft"), "--model", tp, "--detokenize", ipath],
                             capture_output=True, text=True, check=True).stdout.split("\n")[:-1]
        bad = 0
        for ids, line in zip(runs, out):
            if json.loads(line)["text"] != tk.decode(ids, skip_special_tokens=False):
                bad += 1
                if bad <= 3: print("  decode differs:", ids, repr(json.loads(line)["text"]), repr(tk.decode(ids)))
        bad += abs(len(out) - len(runs))
        print(f"{os.path.basename(tp)} decode: {len(runs)} id runs, {bad} differ")
        bad_total += bad
        os.unlink(ipath)
    os.unlink(path)
    sys.exit(1 if bad_total else 0)

if __name__ == "__main__":
    main()
