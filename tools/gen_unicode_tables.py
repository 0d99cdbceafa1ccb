"""Regenerates the Unicode tables of lomo.h's tokenizer section (between the
BEGIN/END generated markers) from Python's unicodedata.

  python3 tools/gen_unicode_tables.py lomo.h

Tables (all sorted, searched by bisection):
  lomo__u_L, lomo__u_N   general categories L* and N* as inclusive ranges lo,hi
                         (\\p{L} and \\p{N} of the split patterns)
  lomo__u_cccs           canonical combining class != 0: lo,hi,class
  lomo__u_dec            canonical decompositions, one level: cp,a,b (b = 0 for
                         a singleton); bit 31 of cp is set when cp is a primary
                         composite (the pair a,b composes back to cp in NFC)
\\s is Unicode White_Space, which is what Oniguruma (the regex engine of the
`tokenizers` Python wheels) matches for \\s with UTF-8 text; it is a fixed list
in lomo.h. The Unicode version is printed into the table comment.
"""
import sys, unicodedata

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

def fmt(name, nums, per=10):
    lines = []
    for i in range(0, len(nums), per):
        lines.append("    " + ",".join("0x%x" % n for n in nums[i:i + per]) + ",")
    return "static const uint32_t %s[] = {\n%s\n};\n" % (name, "\n".join(lines))

def main(path):
    L = ranges(lambda c: cat(c)[0] == "L")
    N = ranges(lambda c: cat(c)[0] == "N")
    ccc = []
    for cp in range(0x110000):
        k = unicodedata.combining(chr(cp))
        if k:
            if ccc and ccc[-1][1] == cp - 1 and ccc[-1][2] == k: ccc[-1][1] = cp
            else: ccc.append([cp, cp, k])
    dec = []
    for cp in range(0x110000):
        d = unicodedata.decomposition(chr(cp))
        if not d or d.startswith("<"): continue
        parts = [int(x, 16) for x in d.split()]
        a, b = parts[0], (parts[1] if len(parts) > 1 else 0)
        assert len(parts) <= 2
        prim = len(parts) == 2 and unicodedata.normalize("NFC", chr(a) + chr(b)) == chr(cp) and unicodedata.combining(chr(a)) == 0
        dec.append(((cp | (1 << 31)) if prim else cp, a, b))
    body = ["/* Unicode %s (Python %s unicodedata), made by tools/gen_unicode_tables.py */\n" %
            (unicodedata.unidata_version, sys.version.split()[0])]
    body.append(fmt("lomo__u_L", [x for r in L for x in r]))
    body.append(fmt("lomo__u_N", [x for r in N for x in r]))
    body.append(fmt("lomo__u_cccs", [x for r in ccc for x in r], 12))
    body.append(fmt("lomo__u_dec", [x for r in dec for x in r], 12))
    text = open(path).read()
    b, e = "/* BEGIN generated Unicode tables */\n", "/* END generated Unicode tables */\n"
    i, j = text.index(b) + len(b), text.index(e)
    open(path, "w").write(text[:i] + "".join(body) + text[j:])
    print("L %d ranges, N %d, ccc %d, decompositions %d" % (len(L), len(N), len(ccc), len(dec)))

main(sys.argv[1] if len(sys.argv) > 1 else "lomo.h")
