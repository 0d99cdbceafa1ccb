/* test_tok.c - lomo's tokenizer.json against the real `tokenizers` library.
   Fixtures (tests/ref/tok/, made by make_tok_fixtures.py): real tokenizer.json
   files with reduced vocabularies (Llama 3, Qwen2 and GPT-2 style byte-level
   BPE; Llama 2 / Mistral SentencePiece BPE in the legacy and the Metaspace
   form), a hard multilingual corpus, and for every line what tokenizers
   returns: encode ids without and with special tokens, offsets (as byte
   ranges, compared as character indices), decode with and without skip_special_tokens; plus decodes of
   random id runs. Exact equality on every line. The full-size files are
   checked too when present (build/tok_full/, or $LOMO_TOK_FULL); one of
   them (spm_legacy, 1.5 MB) is committed. Then refusals and malformed files. */
#define _POSIX_C_SOURCE 200809L   /* popen, for the llama_ft checks */
#define LOMO_IMPLEMENTATION
#include "../lomo.h"
#include "test_util.h"
#include <string.h>

static char *sdup(const char *p) { size_t n = strlen(p) + 1; char *q = (char *)malloc(n); memcpy(q, p, n); return q; }

static int read_lines(const char *path, char ***lines, int *n) {
    char *buf, *p;
    size_t len;
    int cap = 0;
    *lines = NULL; *n = 0;
    if (lomo__read_file(path, &buf, &len)) return -1;
    for (p = buf; *p;) {
        char *e = strchr(p, '\n');
        if (e) *e = 0;
        if (*n == cap) { cap = cap ? cap * 2 : 256; *lines = (char **)realloc(*lines, (size_t)cap * sizeof **lines); }
        (*lines)[(*n)++] = sdup(p);
        if (!e) break;
        p = e + 1;
    }
    free(buf);
    return 0;
}
static void free_lines(char **l, int n) { for (int i = 0; i < n; i++) free(l[i]); free(l); }

/* ints of a JSON array node into a (returns count, -1 on a type error) */
static int64_t jints(const lomo__json *j, int node, int64_t **a) {
    int64_t k = 0, v;
    *a = (int64_t *)malloc(((size_t)(node >= 0 ? j->nodes[node].count : 0) + 1) * 2 * sizeof **a);
    if (!lomo__json_is(j, node, LOMO__J_ARR)) return -1;
    for (int c = j->nodes[node].first; c >= 0; c = j->nodes[c].next) {
        if (lomo__json_is(j, c, LOMO__J_ARR)) {  /* [s, e] pairs flattened */
            for (int d = j->nodes[c].first; d >= 0; d = j->nodes[d].next) { if (lomo__json_int(j, d, &v)) return -1; (*a)[k++] = v; }
        } else { if (lomo__json_int(j, c, &v)) return -1; (*a)[k++] = v; }
    }
    return k;
}
static char *jstrdup(const lomo__json *j, int node) {
    size_t cap = node >= 0 ? j->nodes[node].len + 1 : 1;
    char *s = (char *)malloc(cap);
    if (lomo__json_str(j, node, s, cap) < 0) s[0] = 0;
    return s;
}
static void show_ids(const char *what, const int32_t *a, int64_t n) {
    printf("    %s:", what);
    for (int64_t i = 0; i < n && i < 40; i++) printf(" %d", (int)a[i]);
    printf("%s\n", n > 40 ? " ..." : "");
}

/* every corpus line and decode case of one fixture; returns 0 if the file is absent */
static int check_fixture(const char *name, const char *tok_path, const char *exp_path, const char *corpus_path) {
    char **corp, **exp;
    int nc, ne, bad = 0, lines = 0;
    lomo_tokenizer *tk;
    FILE *f = fopen(tok_path, "rb");
    if (!f) return 0;
    fclose(f);
    tk = lomo_tokenizer_load(tok_path);
    CHECK(tk != NULL, "%s: load: %s", name, lomo_error());
    if (!tk) return 1;
    if (read_lines(corpus_path, &corp, &nc) || read_lines(exp_path, &exp, &ne)) { CHECK(0, "%s: %s", name, lomo_error()); lomo_tokenizer_free(tk); return 1; }
    for (int i = 0; i < ne; i++) {
        lomo__json je, jc;
        int64_t *want = NULL, *wsp = NULL, nw, nsp;
        char *text = NULL, *dec, *wdec, *wskip;
        size_t tlen = 0;
        int32_t *ids = NULL;
        int64_t *sp = NULL;
        int ok = 1;
        int64_t ndec = 0;
        if (lomo__json_parse(&je, exp[i], strlen(exp[i]), exp_path)) { CHECK(0, "%s", lomo_error()); continue; }
        if (i < nc) {
            int t;
            if (lomo__json_parse(&jc, corp[i], strlen(corp[i]), corpus_path)) { CHECK(0, "%s", lomo_error()); lomo__json_free(&je); continue; }
            t = lomo__json_get(&jc, 0, "text");
            text = jstrdup(&jc, t);
            tlen = strlen(text);
            lomo__json_free(&jc);
            for (int mode = 0; mode < 2; mode++) {
                int64_t n = lomo_tokenize(tk, text, tlen, mode, &ids, mode ? &sp : NULL);
                ndec = n;
                nw = jints(&je, lomo__json_get(&je, 0, mode ? "special" : "plain"), &want);
                int same = n == nw;
                for (int64_t k = 0; same && k < n; k++) same = ids[k] == want[k];
                if (!same) {
                    ok = 0;
                    if (bad < 6) {
                        printf("  %s line %d (%s) differs: text \"%.60s\"\n", name, i + 1, mode ? "add_special" : "plain", text);
                        show_ids("lomo", ids, n);
                        int32_t *w32 = (int32_t *)malloc((size_t)(nw > 0 ? nw : 1) * 4);
                        for (int64_t k = 0; k < nw; k++) w32[k] = (int32_t)want[k];
                        show_ids("tokenizers", w32, nw); free(w32);
                        if (n < 0) printf("    error: %s\n", lomo_error());
                    }
                }
                if (mode && same) {
                    nsp = jints(&je, lomo__json_get(&je, 0, "spans"), &wsp);
                    /* byte ranges -> character indices as the Python binding converts them */
                    int64_t *ci = (int64_t *)malloc((tlen + 1) * sizeof *ci), nch = 0;
                    for (size_t b = 0; b < tlen; b++) { if (((unsigned char)text[b] & 0xc0) != 0x80 && b) nch++; ci[b] = nch; }
                    ci[tlen] = tlen ? nch + 1 : 0;
                    for (int64_t k = 0; k < 2 * n; k++) sp[k] = (sp[k] >= 0 && sp[k] <= (int64_t)tlen) ? ci[sp[k]] : -1;
                    free(ci);
                    int spok = nsp == 2 * n;
                    for (int64_t k = 0; spok && k < 2 * n; k++) spok = sp[k] == wsp[k];
                    if (!spok && bad < 6) {
                        printf("  %s line %d: spans differ\n", name, i + 1);
                        for (int64_t k = 0; k < n && k < 20; k++) printf("    [%lld,%lld) want [%lld,%lld)\n", (long long)sp[2*k], (long long)sp[2*k+1], (long long)wsp[2*k], (long long)wsp[2*k+1]);
                    }
                    ok &= spok;
                    free(wsp);
                }
                if (mode == 0) { free(want); LOMO_FREE(ids); ids = NULL; }
            }
        } else {
            nw = jints(&je, lomo__json_get(&je, 0, "ids"), &want);
            ids = (int32_t *)malloc((size_t)(nw > 0 ? nw : 1) * 4);
            for (int64_t k = 0; k < nw; k++) ids[k] = (int32_t)want[k];
            ndec = nw;
        }
        wdec = jstrdup(&je, lomo__json_get(&je, 0, "decode"));
        wskip = jstrdup(&je, lomo__json_get(&je, 0, "decode_skip"));
        for (int skip = 0; skip < 2; skip++) {
            if (lomo__json_is(&je, lomo__json_get(&je, 0, skip ? "decode_skip" : "decode"), LOMO__J_NULL)) continue; /* tokenizers panicked */
            dec = lomo_detokenize(tk, ids, ndec < 0 ? 0 : ndec, skip);
            if (!dec || strcmp(dec, skip ? wskip : wdec)) {
                ok = 0;
                if (bad < 6) printf("  %s line %d: decode(skip=%d) \"%s\", tokenizers \"%s\"\n", name, i + 1, skip, dec ? dec : lomo_error(), skip ? wskip : wdec);
            }
            LOMO_FREE(dec);
        }
        if (!ok) bad++;
        lines++;
        free(wdec); free(wskip); free(want); free(text);
        if (i < nc) LOMO_FREE(ids); else free(ids);
        LOMO_FREE(sp); sp = NULL;
        lomo__json_free(&je);
    }
    CHECK(bad == 0, "%s: %d of %d lines differ from tokenizers", name, bad, lines);
    printf("  %s: %d lines (encode, encode+special with spans, decode x2) %s\n", name, lines, bad ? "DIFFER" : "equal");
    free_lines(corp, nc); free_lines(exp, ne);
    lomo_tokenizer_free(tk);
    return 1;
}

static const char *NAMES[] = { "llama3", "qwen2", "gpt2", "spm_legacy", "spm_meta" };

static void test_fixtures(void) {
    char t[512], e[512];
    for (int i = 0; i < 5; i++) {
        snprintf(t, sizeof t, "tests/ref/tok/%s.json", NAMES[i]);
        snprintf(e, sizeof e, "tests/ref/tok/%s.expected.jsonl", NAMES[i]);
        CHECK(check_fixture(NAMES[i], t, e, "tests/ref/tok/corpus.jsonl"), "fixture %s missing", t);
    }
}

/* options the five real files do not use (make_tok_fixtures.py: variants) */
static const char *VARIANTS[] = { "var_split1", "var_split2", "var_split3", "var_meta1", "var_meta2", "var_added" };
static void test_variants(void) {
    char t[512], e[512];
    for (int i = 0; i < 6; i++) {
        snprintf(t, sizeof t, "tests/ref/tok/%s.json", VARIANTS[i]);
        snprintf(e, sizeof e, "tests/ref/tok/%s.expected.jsonl", VARIANTS[i]);
        CHECK(check_fixture(VARIANTS[i], t, e, "tests/ref/tok/corpus.jsonl"), "fixture %s missing", t);
    }
}

static void test_full(void) {
    const char *dir = getenv("LOMO_TOK_FULL") ? getenv("LOMO_TOK_FULL") : "build/tok_full";
    char t[512], e[512], nm[64];
    for (int i = 0; i < 5; i++) {
        snprintf(t, sizeof t, "%s/%s.json", dir, NAMES[i]);
        snprintf(e, sizeof e, "%s/%s.expected.jsonl", dir, NAMES[i]);
        snprintf(nm, sizeof nm, "%s (full)", NAMES[i]);
        if (!check_fixture(nm, t, e, "tests/ref/tok/corpus.jsonl")) {
            snprintf(t, sizeof t, "tests/ref/tok/full/%s.json", NAMES[i]);
            snprintf(e, sizeof e, "tests/ref/tok/full/%s.expected.jsonl", NAMES[i]);
            if (!check_fixture(nm, t, e, "tests/ref/tok/corpus.jsonl"))
                printf("SKIP full-size %s: %s/%s.json absent (make it with tests/ref/tok/make_tok_fixtures.py)\n", NAMES[i], dir, NAMES[i]);
        }
    }
}

/* ---- refusals ---- */
static const char *MINI =
    "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":[{\"id\":5,\"content\":\"<s>\",\"special\":true,"
    "\"normalized\":false,\"lstrip\":false,\"rstrip\":false,\"single_word\":false}],\"normalizer\":NORM,\"pre_tokenizer\":PRE,"
    "\"post_processor\":POST,\"decoder\":DEC,\"model\":{\"type\":\"MODEL\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"c\":3,\" \":4},"
    "\"merges\":MERGES}}";

static char *mini(const char *norm, const char *pre, const char *post, const char *dec, const char *model, const char *merges) {
    const char *keys[6] = { "NORM", "PRE", "POST", "DEC", "MODEL", "MERGES" }, *vals[6] = { norm, pre, post, dec, model, merges };
    char *out = (char *)malloc(8192);
    const char *p = MINI;
    size_t o = 0;
    while (*p) {
        int k;
        for (k = 0; k < 6; k++) if (!strncmp(p, keys[k], strlen(keys[k]))) break;
        if (k < 6) { memcpy(out + o, vals[k], strlen(vals[k])); o += strlen(vals[k]); p += strlen(keys[k]); }
        else out[o++] = *p++;
    }
    out[o] = 0;
    return out;
}

static void expect_refused(const char *what, const char *json, const char *needle) {
    const char *path = tu_path("tokenizer.json");
    tu_write(path, json, strlen(json));
    lomo_tokenizer *tk = lomo_tokenizer_load(path);
    CHECK(tk == NULL && strstr(lomo_error(), needle) != NULL, "%s: expected refusal naming '%s', got %s", what, needle, tk ? "a tokenizer" : lomo_error());
    lomo_tokenizer_free(tk);
}

static void test_refusals(void) {
    char *s;
    const char *ok_merges = "[\"a b\"]";
    s = mini("null", "null", "null", "null", "BPE", ok_merges);
    {
        const char *path = tu_path("tokenizer.json");
        tu_write(path, s, strlen(s));
        lomo_tokenizer *tk = lomo_tokenizer_load(tu_dir);  /* a directory works too */
        CHECK(tk != NULL, "minimal tokenizer: %s", lomo_error());
        if (tk) {
            int32_t *ids; int64_t *sp;
            int64_t n = lomo_tokenize(tk, "ab<s>ca", 7, 1, &ids, &sp);
            CHECK(n == 4 && ids[0] == 2 && ids[1] == 5 && ids[2] == 3 && ids[3] == 0, "minimal encode: n=%lld", (long long)n);
            CHECK(n == 4 && sp[0] == 0 && sp[1] == 2 && sp[2] == 2 && sp[3] == 5 && sp[6] == 6 && sp[7] == 7, "minimal spans");
            LOMO_FREE(ids); LOMO_FREE(sp);
            CHECK(lomo_tokenize(tk, "a\xff", 2, 0, &ids, NULL) < 0 && strstr(lomo_error(), "UTF-8"), "invalid UTF-8 refused: %s", lomo_error());
            CHECK(lomo_tokenizer_vocab_size(tk) == 6, "vocab size %d", lomo_tokenizer_vocab_size(tk));
            CHECK(lomo_token_id(tk, "ab") == 2 && lomo_token_id(tk, "<s>") == 5 && lomo_token_id(tk, "zz") == -1, "token_id");
            CHECK(lomo_token_str(tk, 2) && !strcmp(lomo_token_str(tk, 2), "ab") && lomo_token_str(tk, 99) == NULL && lomo_token_str(tk, -1) == NULL, "token_str");
            CHECK(lomo_token_is_special(tk, 5) && !lomo_token_is_special(tk, 2) && !lomo_token_is_special(tk, 77), "is_special");
            n = lomo_tokenize(tk, "", 0, 1, &ids, NULL);
            CHECK(n == 0, "empty text: %lld", (long long)n);
            LOMO_FREE(ids);
            int32_t dids[4] = { 2, 5, 1000, 3 };
            char *d = lomo_detokenize(tk, dids, 4, 0);
            CHECK(d && !strcmp(d, "ab <s> c"), "no decoder joins with spaces: \"%s\"", d ? d : lomo_error());
            LOMO_FREE(d);
            d = lomo_detokenize(tk, dids, 4, 1);
            CHECK(d && !strcmp(d, "ab c"), "skip_special: \"%s\"", d ? d : lomo_error());
            LOMO_FREE(d);
        }
        lomo_tokenizer_free(tk);
    }
    free(s);
    struct { const char *what, *norm, *pre, *post, *dec, *model, *merges, *needle; } cases[] = {
        { "model type", "null", "null", "null", "null", "WordPiece", ok_merges, "WordPiece" },
        { "normalizer", "{\"type\":\"NFKC\"}", "null", "null", "null", "BPE", ok_merges, "NFKC" },
        { "nested normalizer", "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFC\"},{\"type\":\"Lowercase\"}]}", "null", "null", "null", "BPE", ok_merges, "Lowercase" },
        { "pre_tokenizer", "null", "{\"type\":\"Whitespace\"}", "null", "null", "BPE", ok_merges, "Whitespace" },
        { "regex", "null", "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\w+\"},\"behavior\":\"Isolated\",\"invert\":false}", "null", "null", "BPE", ok_merges, "\\w+" },
        { "behavior", "null", "{\"type\":\"Split\",\"pattern\":{\"String\":\" \"},\"behavior\":\"Sideways\",\"invert\":false}", "null", "null", "BPE", ok_merges, "Sideways" },
        { "post_processor", "null", "null", "{\"type\":\"RobertaProcessing\"}", "null", "BPE", ok_merges, "RobertaProcessing" },
        { "decoder", "null", "null", "null", "{\"type\":\"WordPiece\"}", "BPE", ok_merges, "WordPiece" },
        { "replace regex", "{\"type\":\"Replace\",\"pattern\":{\"Regex\":\" +\"},\"content\":\" \"}", "null", "null", "null", "BPE", ok_merges, "pattern" },
        { "merge token", "null", "null", "null", "null", "BPE", "[\"a x\"]", "not in the vocabulary" },
        { "merged token", "null", "null", "null", "null", "BPE", "[\"b a\"]", "merged token" },
        { "merge form", "null", "null", "null", "null", "BPE", "[\"a b c\"]", "merges[0]" },
        { "merge type", "null", "null", "null", "null", "BPE", "[7]", "merges[0]" },
        { "template", "null", "null", "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<x>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"special_tokens\":{}}", "null", "BPE", ok_merges, "<x>" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        s = mini(cases[i].norm, cases[i].pre, cases[i].post, cases[i].dec, cases[i].model, cases[i].merges);
        expect_refused(cases[i].what, s, cases[i].needle);
        free(s);
    }
    expect_refused("truncation", "{\"truncation\":{\"max_length\":5},\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]}}", "truncation");
    expect_refused("id range", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":99999999},\"merges\":[]}}", "2^24");
    expect_refused("duplicate id", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1,\"b\":1},\"merges\":[]}}", "twice");
    expect_refused("no model", "{\"added_tokens\":[]}", "model");
    expect_refused("invalid JSON", "{\"model\":{\"type\":\"BPE\",", "invalid JSON");
    expect_refused("added id", "{\"added_tokens\":[{\"id\":-1,\"content\":\"x\"}],\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]}}", "added_tokens[0].id");
    CHECK(lomo_tokenizer_load("/nonexistent/dir/tokenizer.json") == NULL && strstr(lomo_error(), "cannot open"), "missing file: %s", lomo_error());
}

/* build/llama_ft --tokenize / --detokenize: the CLI contract, line by line */
static int run_lines(const char *cmd, char ***out, int *n) {
    FILE *p = popen(cmd, "r");
    char *buf = NULL;
    size_t cap = 0, len = 0, r;
    int cap2 = 0;
    *out = NULL; *n = 0;
    if (!p) return -1;
    for (;;) {
        if (len + 4097 > cap) buf = (char *)realloc(buf, cap = (len + 4097) * 2);
        if (!(r = fread(buf + len, 1, 4096, p))) break;
        len += r;
    }
    buf[len] = 0;
    int rc = pclose(p);
    for (char *q = buf; *q;) {
        char *e = strchr(q, '\n');
        if (e) *e = 0;
        if (*n == cap2) { cap2 = cap2 ? 2 * cap2 : 256; *out = (char **)realloc(*out, (size_t)cap2 * sizeof **out); }
        (*out)[(*n)++] = sdup(q);
        if (!e) break;
        q = e + 1;
    }
    free(buf);
    return rc;
}

static void test_cli(void) {
    FILE *f = fopen("build/llama_ft", "rb");
    if (!f) { printf("SKIP llama_ft --tokenize/--detokenize: build/llama_ft not built\n"); return; }
    fclose(f);
    for (int t = 0; t < 3; t++) {
        const char *name = t == 0 ? "llama3" : t == 1 ? "spm_legacy" : "var_added";
        char cmd[1024], exp_path[256], ids_path[512];
        char **out, **exp;
        int nout, ne, bad = 0, nc = 0;
        snprintf(exp_path, sizeof exp_path, "tests/ref/tok/%s.expected.jsonl", name);
        if (read_lines(exp_path, &exp, &ne)) { CHECK(0, "%s", lomo_error()); continue; }
        for (int i = 0; i < ne; i++) if (strstr(exp[i], "\"plain\"")) nc = i + 1;
        for (int mode = 0; mode < 2; mode++) {
            snprintf(cmd, sizeof cmd, "build/llama_ft --model tests/ref/tok/%s.json --tokenize tests/ref/tok/corpus.jsonl%s", name, mode ? " --add-special" : "");
            int rc = run_lines(cmd, &out, &nout);
            CHECK(rc == 0 && nout == nc, "%s: exit %d, %d lines for %d", cmd, rc, nout, nc);
            for (int i = 0; i < nout && i < nc; i++) {
                lomo__json a, b;
                int64_t *x, *y, nx, ny;
                if (lomo__json_parse(&a, out[i], strlen(out[i]), "llama_ft output")) { bad++; continue; }
                lomo__json_parse(&b, exp[i], strlen(exp[i]), exp_path);
                nx = jints(&a, 0, &x); ny = jints(&b, lomo__json_get(&b, 0, mode ? "special" : "plain"), &y);
                int same = nx == ny && nx >= 0;
                for (int64_t k = 0; same && k < nx; k++) same = x[k] == y[k];
                bad += !same;
                free(x); free(y); lomo__json_free(&a); lomo__json_free(&b);
            }
            CHECK(bad == 0, "%s: %d lines differ", cmd, bad);
            free_lines(out, nout);
        }
        /* detokenize: every expected id list (corpus encodes and random runs) */
        snprintf(ids_path, sizeof ids_path, "%s", tu_path("ids.jsonl"));
        FILE *w = fopen(ids_path, "w");
        for (int i = 0; i < ne; i++) {
            lomo__json b;
            int64_t *y, ny;
            lomo__json_parse(&b, exp[i], strlen(exp[i]), exp_path);
            ny = jints(&b, lomo__json_get(&b, 0, i < nc ? "special" : "ids"), &y);
            fputc('[', w);
            for (int64_t k = 0; k < ny; k++) fprintf(w, k ? ", %lld" : "%lld", (long long)y[k]);
            fputs("]\n", w);
            free(y); lomo__json_free(&b);
        }
        fclose(w);
        snprintf(cmd, sizeof cmd, "build/llama_ft --model tests/ref/tok/%s.json --detokenize %s", name, ids_path);
        int rc = run_lines(cmd, &out, &nout);
        CHECK(rc == 0 && nout == ne, "%s: exit %d, %d lines for %d", cmd, rc, nout, ne);
        bad = 0;
        for (int i = 0; i < nout && i < ne; i++) {
            lomo__json a, b;
            char *x, *y;
            if (lomo__json_parse(&a, out[i], strlen(out[i]), "llama_ft output")) { bad++; continue; }
            lomo__json_parse(&b, exp[i], strlen(exp[i]), exp_path);
            if (lomo__json_is(&b, lomo__json_get(&b, 0, "decode"), LOMO__J_NULL)) { lomo__json_free(&a); lomo__json_free(&b); continue; }
            x = jstrdup(&a, lomo__json_get(&a, 0, "text")); y = jstrdup(&b, lomo__json_get(&b, 0, "decode"));
            if (strcmp(x, y)) { if (bad < 3) printf("  detokenize line %d: \"%s\" vs \"%s\"\n", i + 1, x, y); bad++; }
            free(x); free(y); lomo__json_free(&a); lomo__json_free(&b);
        }
        CHECK(bad == 0, "%s: %d lines differ", cmd, bad);
        printf("  llama_ft --tokenize (both modes) and --detokenize on %s: %s\n", name, bad ? "DIFFER" : "equal");
        free_lines(out, nout);
        free_lines(exp, ne);
    }
    /* errors name the file and line */
    const char *bad_in = tu_path("bad.jsonl");
    { const char *bj = "{\"text\": \"ok\"}\n{\"txt\": 1}\n"; tu_write(bad_in, bj, strlen(bj)); }
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "build/llama_ft --model tests/ref/tok/llama3.json --tokenize %s 2>&1", bad_in);
    char **out; int nout;
    int rc = run_lines(cmd, &out, &nout);
    int found = 0;
    for (int i = 0; i < nout; i++) found |= strstr(out[i], "bad.jsonl:2") && strstr(out[i], "text");
    CHECK(rc != 0 && found, "bad line not reported as bad.jsonl:2 (exit %d)", rc);
    free_lines(out, nout);
}

/* inputs the fuzzer (tests/fuzz/fuzz_tokenizer.c) found crashing once: they must load or be
   refused cleanly, and encode / decode without a sanitizer report (the _asan build) */
static void test_regressions(void) {
    static const char *files[] = { "tests/fuzz/regressions/tok_eow_suffix_no_prefix.json" };
    static const char *text = "Hello world 12 ab c <s> \xc3\xa9\xe6\x97\xa5";
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        lomo_tokenizer *tk = lomo_tokenizer_load(files[i]);
        if (!tk) { CHECK(lomo_error()[0] != 0, "%s: refused without a reason", files[i]); continue; }
        for (int add = 0; add < 2; add++) {
            int32_t *ids = NULL;
            int64_t *sp = NULL;
            int64_t n = lomo_tokenize(tk, text, strlen(text), add, &ids, &sp);
            CHECK(n >= 0 || lomo_error()[0], "%s: encode failed without a reason", files[i]);
            char *d = n >= 0 ? lomo_detokenize(tk, ids, n, add) : NULL;
            CHECK(n < 0 || d != NULL, "%s: decode: %s", files[i], lomo_error());
            LOMO_FREE(d); LOMO_FREE(ids); LOMO_FREE(sp);
        }
        lomo_tokenizer_free(tk);
    }
}

int main(void) {
    if (tu_scratch("build/test_tok_tmp")) return 2;
    test_fixtures();
    test_variants();
    test_full();
    test_refusals();
    test_regressions();
    test_cli();
    return tu_done("test_tok");
}
