"""Regenerates the Unicode tables of lomo.h's tokenizer section (between the
BEGIN/END generated markers).

  pip install unicodedata2==16.0.0; python3 tools/gen_unicode_tables.py lomo.h

Unicode 16.0 for the categories: the version of the Oniguruma inside the
`tokenizers` wheels (0.23: letters and digits new in 16.0 match \\p{L} /
\\p{N} there, those of 17.0 do not). unicodedata2 16.0.0 carries that
version's data; Python's own unicodedata is used only if it is 16.0 itself.

The normalization data (ccc, decompositions, compositions) is what the
library's NFC/NFD know, which is older: its unicode-normalization-alignments
crate is Unicode 9.0 (Adlam's nukta reorders, Masaram Gondi's of 10.0 does
not). Normalization data never changes for an assigned character, so the 16.0
data is restricted to the code points that `tokenizers`' own NFD/NFC treat as
such, found by probing them one by one (so `tokenizers` is needed here).

Tables (all sorted, searched by bisection):
  lomo__u_L, lomo__u_N   general categories L* and N* as inclusive ranges lo,hi
                         (\\p{L} and \\p{N} of the split patterns)
  lomo__u_W              \\w of Rust's regex crate (single_word added tokens)
  lomo__u_cccs           canonical combining class != 0: lo,hi,class
  lomo__u_dec            canonical decompositions, one level: cp,a,b (b = 0 for
                         a singleton); bit 31 of cp is set when cp is a primary
                         composite (the pair a,b composes back to cp in NFC)
\\s is Unicode White_Space, which is what Oniguruma (the regex engine of the
`tokenizers` Python wheels) matches for \\s with UTF-8 text; it is a fixed list
in lomo.h. The Unicode version is printed into the table comment.
"""
import sys
try:
    import unicodedata2 as unicodedata
except ImportError:
    import unicodedata
if unicodedata.unidata_version != "16.0.0":
    sys.exit("need Unicode 16.0.0 data (pip install unicodedata2==16.0.0), found %s" % unicodedata.unidata_version)

def ranges(pred):
    out, lo = [], None
    for cp in range(0x110000):
        if pred(cp):
            if lo is None: lo = cp
        elif lo is not None:
            out.append((lo, cp - 1)); lo = None
    if lo is not None: out.append((lo, 0x10ffff))
    return out

def cat(cp): return unicodedata.category(chr(cp))

from tokenizers import normalizers as _tn
_NFD, _NFC = _tn.NFD(), _tn.NFC()

def lib_knows_ccc(cp, k):
    """Does tokenizers' NFD reorder this mark by its class k?"""
    c = chr(cp)
    if k < 230: s, want = "a\u0301" + c, "a" + c + "\u0301"
    elif k > 230: s, want = "a" + c + "\u0301", "a\u0301" + c
    else: s, want = "a" + c + "\u0316", "a\u0316" + c
    return _NFD.normalize_str(s) == want

def lib_decomposes(cp):
    return _NFD.normalize_str(chr(cp)) != chr(cp)

def fmt(name, nums, per=10):
    lines = []
    for i in range(0, len(nums), per):
        lines.append("    " + ",".join("0x%x" % n for n in nums[i:i + per]) + ",")
    return "static const uint32_t %s[] = {\n%s\n};\n" % (name, "\n".join(lines))

def main(path):
    L = ranges(lambda c: cat(c)[0] == "L")
    N = ranges(lambda c: cat(c)[0] == "N")
    # \\w of Rust's regex crate (added tokens' single_word): Alphabetic + M + Nd + Pc + Join_Control;
    # Alphabetic = L + Nl + Other_Alphabetic, whose members outside M are the circled / squared
    # / negative squared Latin letters (So) listed here
    extra = [(0x200c, 0x200d), (0x24b6, 0x24e9), (0x1f130, 0x1f149), (0x1f150, 0x1f169), (0x1f170, 0x1f189)]
    W = ranges(lambda c: cat(c)[0] in "LM" or cat(c) in ("Nd", "Nl", "Pc") or any(a <= c <= b for a, b in extra))
    ccc = []
    for cp in range(0x110000):
        k = unicodedata.combining(chr(cp))
        if k and lib_knows_ccc(cp, k):
            if ccc and ccc[-1][1] == cp - 1 and ccc[-1][2] == k: ccc[-1][1] = cp
            else: ccc.append([cp, cp, k])
    dec = []
    for cp in range(0x110000):
        d = unicodedata.decomposition(chr(cp))
        if not d or d.startswith("<") or not lib_decomposes(cp): continue
        parts = [int(x, 16) for x in d.split()]
        a, b = parts[0], (parts[1] if len(parts) > 1 else 0)
        assert len(parts) <= 2
        prim = len(parts) == 2 and _NFC.normalize_str(chr(a) + chr(b)) == chr(cp) and unicodedata.combining(chr(a)) == 0
        dec.append(((cp | (1 << 31)) if prim else cp, a, b))
    body = ["/* Unicode %s (%s) categories; normalization data as tokenizers' NFC/NFD know it\n"
            "   (Unicode 9.0); made by tools/gen_unicode_tables.py */\n" % (unicodedata.unidata_version, unicodedata.__name__)]
    body.append(fmt("lomo__u_L", [x for r in L for x in r]))
    body.append(fmt("lomo__u_N", [x for r in N for x in r]))
    body.append(fmt("lomo__u_W", [x for r in W for x in r]))
    body.append(fmt("lomo__u_cccs", [x for r in ccc for x in r], 12))
    body.append(fmt("lomo__u_dec", [x for r in dec for x in r], 12))
    text = open(path).read()
    b, e = "/* BEGIN generated Unicode tables */\n", "/* END generated Unicode tables */\n"
    i, j = text.index(b) + len(b), text.index(e)
    open(path, "w").write(text[:i] + "".join(body) + text[j:])
    print("L %d ranges, N %d, W %d, ccc %d, decompositions %d" % (len(L), len(N), len(W), len(ccc), len(dec)))

main(sys.argv[1] if len(sys.argv) > 1 else "lomo.h")
