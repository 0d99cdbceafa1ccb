/* test_io.c - dtype conversion, JSON reader, safetensors and config.json I/O.
   Run from the repository root:
     gcc -std=c11 -Wall -Wextra -pedantic -O1 -g -fsanitize=address,undefined \
         -fno-sanitize-recover=all -I. tests/test_io.c -o /tmp/test_io -lm && /tmp/test_io [-v]
   -v prints every refusal message. */
#define LOMO_IMPLEMENTATION
#include "../lomo.h"
#include "test_util.h"

#include <dirent.h>
#include <signal.h>

static int npass, nfail, verbose;
#undef CHECK /* this file counts with its own macro */
#define CHECK(cond) do { if (cond) npass++; else { nfail++; printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); } } while (0)

/* rc must be -1 and lomo_error() must contain word. */
static void expect_err(int rc, const char *word, const char *what, int line) {
    if (rc == -1 && strstr(lomo_error(), word)) {
        npass++;
        if (verbose) printf("  ok  %-28s %s\n", what, lomo_error());
        return;
    }
    nfail++;
    printf("FAIL line %d (%s): rc=%d, expected error with '%s', got: %s\n", line, what, rc, word, lomo_error());
}
#undef EXPECT_ERR /* and its own refusal check (test_util.h's takes a failure flag and two words) */
#define EXPECT_ERR(rc, word, what) expect_err((rc), (word), (what), __LINE__)

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd32(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return (uint32_t)(rng >> 16); }
static float rnd_unit(void) { return (float)(rnd32() >> 8) / 16777216.0f * 2.0f - 1.0f; }

#define tpath tu_path
#define write_bytes tu_write
#define dir tu_dir

/* ------------------------------------------------------------------------ */
/* dtype conversion against an independent double-precision reference       */
/* ------------------------------------------------------------------------ */

/* Round x to `bits` significant bits with ties to even (rint in the default
   rounding mode), exponent floored at min_exp (subnormals), inf above max. */
static double ref_round(double x, int bits, int min_exp, double max) {
    int e;
    double ulp, r;
    if (x == 0 || isnan(x) || isinf(x)) return x;
    frexp(x, &e);                       /* |x| in [2^(e-1), 2^e) */
    if (e - bits < min_exp) e = min_exp + bits;
    ulp = ldexp(1.0, e - bits);
    r = rint(x / ulp) * ulp;            /* x / ulp is exact in double */
    if (fabs(r) > max) r = x > 0 ? INFINITY : -INFINITY;
    return r;
}
static double ref_bf16(float f) { return ref_round(f, 8, -133, 3.3895313892515355e38); }
static double ref_f16(float f) { return ref_round(f, 11, -24, 65504.0); }

static int same_double(double a, double b) { return (isnan(a) && isnan(b)) || (a == b && signbit(a) == signbit(b)); }

static void test_conversions(void) {
    int i, bad_bf = 0, bad_h = 0, bad_rt = 0, bad_dec = 0;
    uint32_t u;
    for (i = 0; i < 2000000; i++) {
        float f;
        if (i & 1) u = rnd32();   /* any bit pattern */
        else {                    /* concentrate on the fp16 range, subnormals included */
            int e = (int)(rnd32() % 48) - 30;
            f = ldexpf(1.0f + (float)(rnd32() & 0x7fffff) / 8388608.0f, e);
            memcpy(&u, &f, 4);
            u |= rnd32() & 0x80000000u;
        }
        if (i % 7 == 3) u = (u & 0xffff8000u) | (rnd32() & 1 ? 0x8000u : 0x18000u) >> 1; /* ties for bf16 */
        if (i % 11 == 5) u = (u & 0xffffe000u) | 0x1000u;                                     /* ties for fp16 */
        memcpy(&f, &u, 4);
        if (!same_double(lomo_bf16_to_f32(lomo_f32_to_bf16(f)), ref_bf16(f))) bad_bf++;
        if (!same_double(lomo_f16_to_f32(lomo_f32_to_f16(f)), ref_f16(f))) bad_h++;
    }
    CHECK(bad_bf == 0);
    CHECK(bad_h == 0);
    for (u = 0; u < 65536; u++) { /* exhaustive: decode vs ldexp, and decode -> encode is the identity */
        uint16_t h = (uint16_t)u;
        int e = (h >> 10) & 31, m = h & 1023;
        double want = e == 31 ? (m ? NAN : INFINITY) : e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
        if (h & 0x8000) want = -want;
        if (!same_double(lomo_f16_to_f32(h), want)) bad_dec++;
        if (e != 31 || !m) { if (lomo_f32_to_f16(lomo_f16_to_f32(h)) != h) bad_rt++; }
        else if (lomo_f32_to_f16(lomo_f16_to_f32(h)) != (h | 0x200)) bad_rt++; /* NaN comes back quiet */
        if (((h >> 7) & 0xff) != 0xff || !(h & 0x7f)) { if (lomo_f32_to_bf16(lomo_bf16_to_f32(h)) != h) bad_rt++; }
        else if (!isnan(lomo_bf16_to_f32(lomo_f32_to_bf16(lomo_bf16_to_f32(h))))) bad_rt++;
    }
    CHECK(bad_dec == 0);
    CHECK(bad_rt == 0);
    /* hand-picked cases */
    CHECK(lomo_f32_to_bf16(1.0f) == 0x3f80);
    CHECK(lomo_f32_to_bf16(1.0f + 1.0f / 256) == 0x3f80);              /* tie, down to even */
    CHECK(lomo_f32_to_bf16(1.0f + 3.0f / 256) == 0x3f82);              /* tie, up to even */
    CHECK(lomo_f32_to_bf16(INFINITY) == 0x7f80 && lomo_f32_to_bf16(-INFINITY) == 0xff80);
    CHECK(lomo_f32_to_bf16(3.4028235e38f) == 0x7f80);                  /* FLT_MAX rounds to inf */
    CHECK(isnan(lomo_bf16_to_f32(lomo_f32_to_bf16(NAN))));
    u = 0x7f800001u; { float f; memcpy(&f, &u, 4); CHECK(isnan(lomo_bf16_to_f32(lomo_f32_to_bf16(f)))); } /* low-payload NaN */
    CHECK(lomo_f32_to_f16(1.0f) == 0x3c00 && lomo_f32_to_f16(-2.0f) == 0xc000);
    CHECK(lomo_f32_to_f16(65504.0f) == 0x7bff);
    CHECK(lomo_f32_to_f16(65519.996f) == 0x7bff && lomo_f32_to_f16(65520.0f) == 0x7c00);
    CHECK(lomo_f32_to_f16(1.0f + 1.0f / 2048) == 0x3c00);              /* tie, down to even */
    CHECK(lomo_f32_to_f16(1.0f + 3.0f / 2048) == 0x3c02);              /* tie, up to even */
    CHECK(lomo_f32_to_f16(ldexpf(1, -24)) == 0x0001);                  /* smallest subnormal */
    CHECK(lomo_f32_to_f16(ldexpf(1, -25)) == 0x0000);                  /* tie, to even (0) */
    CHECK(lomo_f32_to_f16(ldexpf(1.5f, -25)) == 0x0001);
    CHECK(lomo_f32_to_f16(ldexpf(3, -25)) == 0x0002);                  /* 1.5 ulp: tie, to even */
    CHECK(lomo_f32_to_f16(ldexpf(1023.5f, -24)) == 0x0400);            /* rounds up into the normals */
    CHECK(lomo_f32_to_f16(-0.0f) == 0x8000 && lomo_f32_to_f16(1e-30f) == 0);
    CHECK(lomo_f32_to_f16(INFINITY) == 0x7c00 && lomo_f32_to_f16(-1e10f) == 0xfc00);
    CHECK(isnan(lomo_f16_to_f32(lomo_f32_to_f16(NAN))));
    u = 0x7f800001u; { float f; memcpy(&f, &u, 4); CHECK(isnan(lomo_f16_to_f32(lomo_f32_to_f16(f)))); }
    CHECK(lomo_f16_to_f32(0x0001) == ldexpf(1, -24) && lomo_f16_to_f32(0x03ff) == ldexpf(1023, -24));
}

/* ------------------------------------------------------------------------ */
/* JSON                                                                      */
/* ------------------------------------------------------------------------ */

static int jparse(const char *s) {
    lomo__json j;
    int rc = lomo__json_parse(&j, s, strlen(s), "t.json");
    if (rc == 0) lomo__json_free(&j);
    return rc;
}

static void test_json(void) {
    static const char *good[] = {
        "{}", "[]", "0", "-0", "1e5", "1.5E-3", "-12.5e+2", "\"\"", "true", "false", "null", " \t\r\n[ 1 , 2 ]\n ",
        "{\"a\":[1,{\"b\":null}],\"c\":\"x\"}", "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\u00e9\\uD834\\uDD1E\"",
        "\"\xe2\x82\xac \xf0\x9d\x84\x9e \xc3\xa9 \xef\xbf\xbf \xf4\x8f\xbf\xbf\"", "[1.0000000000000000000000000000000000000000000000000000000000000000000001]",
    };
    static const struct { const char *s, *word; } bad[] = {
        { "", "end of input" }, { "   ", "end of input" }, { "[1,]", "unexpected character" }, { "{\"a\":1,}", "string key" },
        { "{\"a\"}", "':'" }, { "{1:2}", "string key" }, { "[1 2]", "','" }, { "[1] x", "trailing" }, { "{} {}", "trailing" },
        { "'a'", "unexpected character" }, { "01", "leading zeros" }, { "1.", "after '.'" }, { ".5", "unexpected character" },
        { "+1", "unexpected character" }, { "1e", "exponent" }, { "-", "invalid number" }, { "0x10", "trailing" },
        { "NaN", "unexpected character" }, { "Infinity", "unexpected character" }, { "tru", "invalid literal" },
        { "nul", "invalid literal" }, { "[", "end of input" }, { "\"abc", "unterminated" }, { "\"a\tb\"", "control character" },
        { "\"\\x\"", "invalid escape" }, { "\"\\u12\"", "4 hex" }, { "\"\\uD834\"", "unpaired high" },
        { "\"\\uD834\\u0041\"", "unpaired high" }, { "\"\\uDD1E\"", "unpaired low" }, { "\"\xc0\xaf\"", "UTF-8" },
        { "\"\xe0\x80\xaf\"", "UTF-8" }, { "\"\xed\xa0\x80\"", "UTF-8" }, { "\"\xf4\x90\x80\x80\"", "UTF-8" },
        { "\"\xe2\x82\"", "UTF-8" }, { "\"\x80\"", "UTF-8" }, { "\"\xff\"", "UTF-8" }, { "\"\xf8\x88\x80\x80\x80\"", "UTF-8" },
        { "\xef\xbb\xbf{}", "unexpected byte 0xef" }, { "[1]\x01", "trailing" },
    };
    char deep[200], buf[64];
    size_t i;
    lomo__json j;
    int a, b, c, n;
    int64_t v;
    for (i = 0; i < sizeof good / sizeof *good; i++) {
        int rc = jparse(good[i]);
        CHECK(rc == 0);
        if (rc) printf("  rejected valid JSON #%d: %s\n", (int)i, lomo_error());
    }
    for (i = 0; i < sizeof bad / sizeof *bad; i++) EXPECT_ERR(jparse(bad[i].s), bad[i].word, bad[i].s);
    /* byte offset in the message */
    EXPECT_ERR(jparse("[1, 2, @]"), "t.json: invalid JSON at byte 7", "offset");
    /* depth: 64 nested containers are fine, 65 are not */
    for (n = 64; n <= 65; n++) {
        for (i = 0; i < (size_t)n; i++) { deep[i] = '['; deep[2 * n - 1 - i] = ']'; }
        deep[2 * n] = 0;
        if (n == 64) CHECK(jparse(deep) == 0); else EXPECT_ERR(jparse(deep), "deeper than 64", "65 nested arrays");
    }
    { /* 65 nested objects */
        char big[400];
        size_t k = 0;
        for (i = 0; i < 65; i++) { memcpy(big + k, "{\"a\":", 5); k += 5; }
        big[k++] = '1';
        for (i = 0; i < 65; i++) big[k++] = '}';
        big[k] = 0;
        EXPECT_ERR(jparse(big), "deeper than 64", "65 nested objects");
        lomo__json jj;
        CHECK(lomo__json_parse(&jj, big + 5, k - 6, "t") == 0); /* 64 levels */
        lomo__json_free(&jj);
    }
    /* DOM access */
    {
        const char *s = "{\"name\":\"caf\\u00e9\",\"list\":[1,-2.5e1,true,null],\"x\\n\":{},\"esc\":\"a\\\"b\\\\c\\/\\ud83d\\ude00\","
                        "\"nul\":\"a\\u0000b\",\"big\":123456789012}";
        CHECK(lomo__json_parse(&j, s, strlen(s), "t") == 0);
        CHECK(j.nodes[0].type == LOMO__J_OBJ && j.nodes[0].count == 6);
        a = lomo__json_get(&j, 0, "name");
        CHECK(lomo__json_str(&j, a, buf, sizeof buf) == 5 && !strcmp(buf, "caf\xc3\xa9"));
        CHECK(lomo__json_streq(&j, a, "caf\xc3\xa9") && !lomo__json_streq(&j, a, "caf") && !lomo__json_streq(&j, a, "caf\xc3\xa9!"));
        CHECK(lomo__json_str(&j, a, buf, 5) == -1);       /* too long for the buffer */
        CHECK(lomo__json_str(&j, a, buf, 6) == 5);
        b = lomo__json_get(&j, 0, "list");
        CHECK(j.nodes[b].type == LOMO__J_ARR && j.nodes[b].count == 4 && j.nodes[b].parent == 0);
        c = j.nodes[b].first;
        CHECK(j.nodes[c].type == LOMO__J_NUM && j.nodes[c].num == 1 && lomo__json_int(&j, c, &v) == 0 && v == 1);
        c = j.nodes[c].next;
        CHECK(j.nodes[c].num == -25.0 && lomo__json_int(&j, c, &v) == -1);
        c = j.nodes[c].next;
        CHECK(j.nodes[c].type == LOMO__J_TRUE && j.nodes[j.nodes[c].next].type == LOMO__J_NULL && j.nodes[j.nodes[c].next].next == -1);
        CHECK(lomo__json_get(&j, 0, "x\n") >= 0 && j.nodes[lomo__json_get(&j, 0, "x\n")].type == LOMO__J_OBJ);
        CHECK(lomo__json_get(&j, 0, "missing") == -1 && lomo__json_get(&j, b, "name") == -1);
        a = lomo__json_get(&j, 0, "esc");
        CHECK(lomo__json_str(&j, a, buf, sizeof buf) == 10 && !strcmp(buf, "a\"b\\c/\xf0\x9f\x98\x80"));
        CHECK(lomo__json_streq(&j, j.nodes[a].key, "esc"));
        CHECK(lomo__json_str(&j, lomo__json_get(&j, 0, "nul"), buf, sizeof buf) == -1); /* \u0000 can't be a C string */
        CHECK(lomo__json_int(&j, lomo__json_get(&j, 0, "big"), &v) == 0 && v == 123456789012ll);
        CHECK(lomo__json_str(&j, b, buf, sizeof buf) == -1); /* not a string */
        lomo__json_free(&j);
    }
}

/* ------------------------------------------------------------------------ */
/* safetensors                                                               */
/* ------------------------------------------------------------------------ */

static void read_all(const char *path, unsigned char **p, size_t *n) {
    char *b;
    if (lomo__read_file(path, &b, n)) { printf("%s\n", lomo_error()); exit(2); }
    *p = (unsigned char *)b;
}

/* Writes u64 header length + header + ndata bytes (0x11 filled). hlen_override >= 0 replaces the length field. */
static void make_st(const char *path, const char *header, size_t ndata, long long hlen_override) {
    size_t h = strlen(header), i;
    unsigned char *b = (unsigned char *)malloc(8 + h + ndata + 1);
    uint64_t L = hlen_override >= 0 ? (uint64_t)hlen_override : (uint64_t)h;
    for (i = 0; i < 8; i++) b[i] = (unsigned char)(L >> (8 * i));
    memcpy(b + 8, header, h);
    memset(b + 8 + h, 0x11, ndata);
    write_bytes(path, b, 8 + h + ndata);
    free(b);
}

static int st_try(const char *header, size_t ndata) {
    lomo__st_file f;
    int rc;
    make_st(tpath("bad.safetensors"), header, ndata, -1);
    rc = lomo__st_open(&f, tpath("bad.safetensors"));
    if (rc == 0) lomo__st_close(&f);
    return rc;
}

static int tmp_files_left(void) { /* entries in dir whose name contains ".tmp." */
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (!d) return -1;
    while ((e = readdir(d)) != NULL) if (strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

static void test_safetensors(void) {
    enum { N0 = 3 * 5, N1 = 7, N2 = 2 * 3 * 4, N3 = 11 };
    float a[N0], back[N2];
    uint16_t h[N1], bf[N2];
    int32_t ints[N3];
    lomo__st_out out[5];
    lomo__st_file f;
    const lomo__st_tensor *t;
    const char *meta[] = { "format", "pt", "note", "quote \" and \\ and \n", NULL };
    char path[512];
    unsigned char *A, *B, *hdr;
    size_t na, nb, i;
    int ok, k;
    uint64_t hl;

    snprintf(path, sizeof path, "%s", tpath("model.safetensors")); /* tpath's buffers rotate */
    for (i = 0; i < N0; i++) a[i] = rnd_unit() * 100;
    for (i = 0; i < N1; i++) h[i] = lomo_f32_to_f16(rnd_unit());
    for (i = 0; i < N2; i++) bf[i] = lomo_f32_to_bf16(rnd_unit() * 1e3f);
    for (i = 0; i < N3; i++) ints[i] = (int32_t)rnd32();
    memset(out, 0, sizeof out);
    out[0].name = "model.embed_tokens.weight"; out[0].dtype = LOMO__ST_F32; out[0].ndim = 2; out[0].shape[0] = 3; out[0].shape[1] = 5; out[0].data = a;
    out[1].name = "h"; out[1].dtype = LOMO__ST_F16; out[1].ndim = 1; out[1].shape[0] = N1; out[1].data = h;
    out[2].name = "b\xc3\xa9 \"q\""; out[2].dtype = LOMO__ST_BF16; out[2].ndim = 3; out[2].shape[0] = 2; out[2].shape[1] = 3; out[2].shape[2] = 4; out[2].data = bf;
    out[3].name = "ints"; out[3].dtype = LOMO__ST_I32; out[3].ndim = 1; out[3].shape[0] = N3; out[3].data = ints;
    out[4].name = "empty"; out[4].dtype = LOMO__ST_F32; out[4].ndim = 2; out[4].shape[0] = 0; out[4].shape[1] = 4; out[4].data = NULL;
    CHECK(lomo__st_save(path, out, 5, meta) == 0);
    CHECK(tmp_files_left() == 0);
    CHECK(lomo__st_open(&f, path) == 0);
    CHECK(f.n == 5);
    CHECK((((uintptr_t)f.t[0].data - (uintptr_t)f.map) % 8) == 0); /* header padded to 8 */
    t = lomo__st_find(&f, "model.embed_tokens.weight");
    CHECK(t && t->dtype == LOMO__ST_F32 && t->ndim == 2 && t->shape[0] == 3 && t->shape[1] == 5 && t->numel == N0);
    CHECK(t && lomo__st_read_f32(t, back) == 0 && !memcmp(back, a, sizeof a));
    t = lomo__st_find(&f, "h");
    CHECK(t && t->dtype == LOMO__ST_F16 && t->numel == N1 && lomo__st_read_f32(t, back) == 0);
    for (ok = 1, i = 0; i < N1; i++) ok &= back[i] == lomo_f16_to_f32(h[i]);
    CHECK(ok);
    t = lomo__st_find(&f, "b\xc3\xa9 \"q\"");
    CHECK(t && t->dtype == LOMO__ST_BF16 && t->ndim == 3 && t->shape[2] == 4 && lomo__st_read_f32(t, back) == 0);
    for (ok = 1, i = 0; i < N2; i++) ok &= back[i] == lomo_bf16_to_f32(bf[i]);
    CHECK(ok);
    t = lomo__st_find(&f, "ints");
    CHECK(t && t->dtype == LOMO__ST_I32 && t->numel == N3 && !memcmp(t->data, ints, sizeof ints));
    EXPECT_ERR(t ? lomo__st_read_f32(t, back) : 0, "cannot be read as float", "read I32 as float");
    t = lomo__st_find(&f, "empty");
    CHECK(t && t->numel == 0 && t->begin == t->end);
    CHECK(lomo__st_find(&f, "nope") == NULL);
    lomo__st_close(&f);
    /* header text: metadata escaped, padded with spaces to a multiple of 8 */
    read_all(path, &A, &na);
    for (hl = 0, k = 7; k >= 0; k--) hl = hl << 8 | A[k];
    hdr = A + 8;
    CHECK(hl % 8 == 0 && hl < na);
    CHECK(strstr((char *)hdr, "\"__metadata__\":{\"format\":\"pt\",\"note\":\"quote \\\" and \\\\ and \\u000a\"}") != NULL);
    {
        lomo__json j;
        CHECK(lomo__json_parse(&j, (const char *)hdr, (size_t)hl, "hdr") == 0);
        CHECK(lomo__json_streq(&j, lomo__json_get(&j, lomo__json_get(&j, 0, "__metadata__"), "note"), "quote \" and \\ and \n"));
        lomo__json_free(&j);
    }
    /* F64 read */
    {
        double d[3] = { 1.5, -2.25, 1e-3 };
        lomo__st_out o;
        memset(&o, 0, sizeof o);
        o.name = "d"; o.dtype = LOMO__ST_F64; o.ndim = 1; o.shape[0] = 3; o.data = d;
        CHECK(lomo__st_save(tpath("f64.safetensors"), &o, 1, NULL) == 0);
        CHECK(lomo__st_open(&f, tpath("f64.safetensors")) == 0);
        CHECK(f.n == 1 && lomo__st_read_f32(&f.t[0], back) == 0 && back[0] == 1.5f && back[1] == -2.25f && back[2] == 1e-3f);
        lomo__st_close(&f);
    }

    /* atomic save: a failed save leaves the old file bit-identical and no temp file */
    for (k = 0; k < 3; k++) {
        static const int fail_at[3] = { 0, 5, 40 };
        lomo__st_out o2[1];
        float other[4] = { 1, 2, 3, 4 };
        memset(o2, 0, sizeof o2);
        o2[0].name = "x"; o2[0].dtype = LOMO__ST_F32; o2[0].ndim = 1; o2[0].shape[0] = 4; o2[0].data = other;
        lomo__io_fail_after = fail_at[k];
        EXPECT_ERR(lomo__st_save(path, o2, 1, NULL), "No space left", "save B with disk full");
        lomo__io_fail_after = -1;
        read_all(path, &B, &nb);
        CHECK(nb == na && !memcmp(A, B, na));
        free(B);
        CHECK(tmp_files_left() == 0);
    }
    lomo__io_fail_after = 10;
    EXPECT_ERR(lomo__write_file_atomic(tpath("cfg.txt"), "0123456789abcdef", 16), "No space left", "write_file_atomic disk full");
    lomo__io_fail_after = -1;
    CHECK(access(tpath("cfg.txt"), F_OK) != 0 && tmp_files_left() == 0);
    CHECK(lomo__write_file_atomic(tpath("cfg.txt"), "0123456789abcdef", 16) == 0);
    {
        char *s; size_t n;
        CHECK(lomo__read_file(tpath("cfg.txt"), &s, &n) == 0 && n == 16 && !strcmp(s, "0123456789abcdef"));
        free(s);
    }
    EXPECT_ERR(lomo__st_save(tpath("nodir/x.safetensors"), out, 1, NULL), "cannot create", "save into missing dir");
    /* overwriting an existing file replaces it */
    CHECK(lomo__st_save(tpath("dup.safetensors"), out, 1, NULL) == 0 && lomo__st_save(tpath("dup.safetensors"), out + 3, 1, NULL) == 0);
    CHECK(lomo__st_open(&f, tpath("dup.safetensors")) == 0 && f.n == 1 && !strcmp(f.t[0].name, "ints"));
    lomo__st_close(&f);
    {
        lomo__st_out d2[2];
        d2[0] = out[1]; d2[1] = out[1];
        EXPECT_ERR(lomo__st_save(tpath("dup2.safetensors"), d2, 2, NULL), "duplicate", "save duplicate names");
        d2[1].name = "bad\xff";
        EXPECT_ERR(lomo__st_save(tpath("dup2.safetensors"), d2, 2, NULL), "UTF-8", "save non-UTF-8 name");
        d2[1].name = "ok";
        EXPECT_ERR(lomo__st_save(tpath("dup2.safetensors"), d2, 2, meta + 1), "not UTF-8", "save odd-length metadata");
        d2[1].shape[0] = -1;
        EXPECT_ERR(lomo__st_save(tpath("dup2.safetensors"), d2, 2, NULL), "shape", "save negative shape");
        CHECK(tmp_files_left() == 0 && access(tpath("dup2.safetensors"), F_OK) != 0);
    }

    /* malformed files, each built by hand */
    write_bytes(tpath("trunc.safetensors"), A, na - 3);
    EXPECT_ERR(lomo__st_open(&f, tpath("trunc.safetensors")), "beyond the end of the file", "truncated data");
    write_bytes(tpath("trunc.safetensors"), A, 20);
    EXPECT_ERR(lomo__st_open(&f, tpath("trunc.safetensors")), "header length", "truncated header");
    write_bytes(tpath("trunc.safetensors"), A, 5);
    EXPECT_ERR(lomo__st_open(&f, tpath("trunc.safetensors")), "too small", "5-byte file");
    free(A);
    EXPECT_ERR(lomo__st_open(&f, tpath("absent.safetensors")), "cannot open", "missing file");
    make_st(tpath("bad.safetensors"), "{}", 0, 1000);
    EXPECT_ERR(lomo__st_open(&f, tpath("bad.safetensors")), "header length 1000 runs past the end", "header length past EOF");
    { /* 150 MB header length in a (sparse) 150 MB file */
        FILE *fp = fopen(tpath("huge.safetensors"), "wb");
        unsigned char L[8] = { 0, 0, 0x60, 0x09, 0, 0, 0, 0 };
        CHECK(fp != NULL);
        if (fp) { fwrite(L, 1, 8, fp); fseek(fp, 0x09600000L + 8, SEEK_SET); fputc('}', fp); fclose(fp); }
        EXPECT_ERR(lomo__st_open(&f, tpath("huge.safetensors")), "100 MB", "header over 100 MB");
        remove(tpath("huge.safetensors"));
    }
    EXPECT_ERR(st_try("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12), "overlaps", "overlap");
    EXPECT_ERR(st_try("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[4,8]}}", 8), "overlaps", "overlap (same end)");
    EXPECT_ERR(st_try("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4), "beyond the end", "offsets past end");
    EXPECT_ERR(st_try("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8), "does not match the shape", "size mismatch");
    EXPECT_ERR(st_try("{\"a\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,6]}}", 6), "does not match", "size mismatch 2");
    EXPECT_ERR(st_try("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12), "hole", "hole between");
    EXPECT_ERR(st_try("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8), "hole", "hole at start");
    EXPECT_ERR(st_try("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8), "hole", "hole at end");
    EXPECT_ERR(st_try("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8), "duplicate tensor name 'a'", "duplicate name");
    EXPECT_ERR(st_try("{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4), "invalid UTF-8", "non-UTF-8 header");
    EXPECT_ERR(st_try("{\"a\":{\"dtype\":\"F8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1), "unknown dtype \"F8\"", "unknown dtype");
    EXPECT_ERR(st_try("{\"a\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1), "missing dtype", "missing dtype");
    EXPECT_ERR(st_try("[]", 0), "not a JSON object", "header is an array");
    EXPECT_ERR(st_try("{\"a\":[]}", 0), "not a JSON object", "entry is an array");
    EXPECT_ERR(st_try("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4), "shape entries", "negative shape");
    EXPECT_ERR(st_try("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4), "shape entries", "non-integer shape");
    EXPECT_ERR(st_try("{\"a\":{\"dtype\":\"F32\",\"shape\":\"1\",\"data_offsets\":[0,4]}}", 4), "shape must be", "shape is a string");
    EXPECT_ERR(st_try("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4), "at most 8", "9 dims");
    EXPECT_ERR(st_try("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8), "data_offsets must be", "3 offsets");
    EXPECT_ERR(st_try("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4), "data_offsets must be", "negative offset");
    EXPECT_ERR(st_try("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4), "end 0 < begin 4", "end < begin");
    EXPECT_ERR(st_try("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4), "data_offsets must be", "missing offsets");
    EXPECT_ERR(st_try("{\"__metadata__\":{\"k\":1}}", 0), "__metadata__ value for key \"k\" is not a string", "metadata value");
    EXPECT_ERR(st_try("{\"__metadata__\":[]}", 0), "__metadata__ is not", "metadata array");
    EXPECT_ERR(st_try("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} x", 4), "trailing", "garbage after header");
    EXPECT_ERR(st_try("{\"0123456789012345678901234567890123456789012345678901234567890123456789"
                      "012345678901234567890123456789012345678901234567890123456789\":{\"dtype\":\"U8\",\"shape\":[],"
                      "\"data_offsets\":[0,1]}}", 1), "longer than 127", "name too long");
    EXPECT_ERR(st_try("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[0,4]}}", 4), "shape overflows", "numel overflow");
    {
        char nest[400];
        size_t k2 = 0;
        memcpy(nest, "{\"__metadata__\":", 16); k2 = 16;
        for (i = 0; i < 70; i++) nest[k2++] = '[';
        for (i = 0; i < 70; i++) nest[k2++] = ']';
        nest[k2++] = '}'; nest[k2] = 0;
        EXPECT_ERR(st_try(nest, 0), "deeper than 64", "deeply nested header");
    }
    /* valid corner cases: empty header object, padding spaces, zero-size tensors sharing an offset, I/U/BOOL types */
    CHECK(st_try("{}", 0) == 0);
    CHECK(st_try("{\"__metadata__\":{}}    ", 0) == 0);
    CHECK(st_try("{\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},\"y\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]},"
                 "\"x\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[8,10]},\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[10,10]}}", 10) == 0);
    if (st_try("{}", 0) != 0) printf("  %s\n", lomo_error());
    /* a real file, if present: read it, write it back, the data buffer must come out identical */
    if (lomo__st_open(&f, "../shared/models/stories260K/model.safetensors") == 0) {
        lomo__st_out *o = (lomo__st_out *)calloc((size_t)f.n, sizeof *o);
        lomo__st_file g;
        const char *m2[] = { "format", "pt", NULL };
        t = lomo__st_find(&f, "model.embed_tokens.weight");
        CHECK(f.n == 47 && t && t->dtype == LOMO__ST_F32 && t->ndim == 2 && t->shape[0] == 512 && t->shape[1] == 64);
        for (k = 0; k < f.n; k++) {
            o[k].name = f.t[k].name; o[k].dtype = f.t[k].dtype; o[k].ndim = f.t[k].ndim; o[k].data = f.t[k].data;
            memcpy(o[k].shape, f.t[k].shape, sizeof o[k].shape);
        }
        CHECK(lomo__st_save(tpath("resave.safetensors"), o, f.n, m2) == 0);
        CHECK(lomo__st_open(&g, tpath("resave.safetensors")) == 0 && g.n == f.n);
        for (ok = g.n == f.n, k = 0; ok && k < f.n; k++)
            ok = !strcmp(f.t[k].name, g.t[k].name) && f.t[k].begin == g.t[k].begin && f.t[k].end == g.t[k].end &&
                 !memcmp(f.t[k].data, g.t[k].data, (size_t)(f.t[k].end - f.t[k].begin));
        CHECK(ok);
        lomo__st_close(&g);
        lomo__st_close(&f);
        free(o);
        remove(tpath("resave.safetensors"));
    } else printf("  (skipped stories260K model.safetensors: %s)\n", lomo_error());
    remove(tpath("bad.safetensors")); remove(tpath("trunc.safetensors")); remove(tpath("f64.safetensors"));
    remove(tpath("dup.safetensors")); remove(tpath("cfg.txt")); remove(path);
}

/* ------------------------------------------------------------------------ */
/* config.json                                                               */
/* ------------------------------------------------------------------------ */

static int cfg_from(const char *json, lomo_config *c) {
    write_bytes(tpath("config.json"), json, strlen(json));
    return lomo__config_load(tpath("config.json"), c);
}

/* A minimal llama config with `extra` appended inside the object. */
static int cfg_with(const char *extra, lomo_config *c) {
    char buf[1024];
    snprintf(buf, sizeof buf, "{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":172,\"num_hidden_layers\":2,"
                              "\"num_attention_heads\":8,\"vocab_size\":100%s}", extra);
    return cfg_from(buf, c);
}

static void test_config(void) {
    lomo_config c, d;
    char expect[600];
    const char *stories = "../shared/models/stories260K/config.json";
    FILE *fp = fopen(stories, "rb");
    if (fp) {
        fclose(fp);
        CHECK(lomo__config_load(stories, &c) == 0);
        CHECK(c.dim == 64 && c.hidden_dim == 172 && c.n_layers == 5 && c.n_heads == 8 && c.n_kv_heads == 4);
        CHECK(c.vocab_size == 512 && c.tie_embeddings == 1 && c.head_dim == 8 && c.max_seq_len == 512);
        CHECK(c.norm_eps == 1e-5f && c.rope_theta == 10000.0f && c.dtype == LOMO_F32 && !strcmp(c.model_type, "llama"));
        CHECK(c.qkv_bias == 0 && c.o_bias == 0);
    } else printf("  (skipped: %s not found)\n", stories);

    /* defaults */
    CHECK(cfg_with("", &c) == 0);
    CHECK(c.n_kv_heads == 8 && c.head_dim == 8 && c.max_seq_len == 2048 && c.norm_eps == 1e-6f && c.rope_theta == 10000.0f);
    CHECK(c.tie_embeddings == 0 && c.qkv_bias == 0 && c.o_bias == 0 && c.dtype == LOMO_F32);
    CHECK(cfg_with(",\"head_dim\":null,\"num_key_value_heads\":2,\"rope_scaling\":null,\"hidden_act\":\"silu\",\"mlp_bias\":false", &c) == 0);
    CHECK(c.head_dim == 8 && c.n_kv_heads == 2);
    CHECK(cfg_with(",\"head_dim\":32,\"attention_bias\":true,\"torch_dtype\":\"bfloat16\",\"rms_norm_eps\":1e-5,\"rope_theta\":500000.0", &c) == 0);
    CHECK(c.head_dim == 32 && c.qkv_bias == 1 && c.o_bias == 1 && c.dtype == LOMO_BF16 && c.norm_eps == 1e-5f && c.rope_theta == 500000.0f);
    CHECK(cfg_with(",\"dtype\":\"float16\",\"rope_scaling\":{\"rope_type\":\"default\"}", &c) == 0 && c.dtype == LOMO_F16);
    CHECK(cfg_from("{\"model_type\":\"qwen2\",\"hidden_size\":64,\"intermediate_size\":172,\"num_hidden_layers\":2,"
                   "\"num_attention_heads\":8,\"num_key_value_heads\":2,\"vocab_size\":100,\"use_sliding_window\":false,"
                   "\"tie_word_embeddings\":true}", &c) == 0);
    CHECK(c.qkv_bias == 1 && c.o_bias == 0 && c.tie_embeddings == 1 && !strcmp(c.model_type, "qwen2"));
    CHECK(cfg_from("{\"model_type\":\"mistral\",\"hidden_size\":64,\"intermediate_size\":172,\"num_hidden_layers\":2,"
                   "\"num_attention_heads\":8,\"vocab_size\":100,\"sliding_window\":null}", &c) == 0 && !strcmp(c.model_type, "mistral"));

    /* transformers >= 5: rope_parameters, dtype, layer_types */
    CHECK(cfg_with(",\"rope_parameters\":{\"rope_theta\":500000.0,\"rope_type\":\"default\"},\"dtype\":\"bfloat16\","
                   "\"layer_types\":[\"full_attention\",\"full_attention\"]", &c) == 0);
    CHECK(c.rope_theta == 500000.0f && c.dtype == LOMO_BF16);
    CHECK(cfg_with(",\"rope_parameters\":{\"rope_theta\":1e6}", &c) == 0 && c.rope_theta == 1e6f);
    EXPECT_ERR(cfg_with(",\"rope_parameters\":{\"rope_theta\":500000.0,\"rope_type\":\"yarn\"}", &c),
               "field 'rope_parameters': rope type yarn is not supported (supported: default, linear, llama3, longrope)", "rope_parameters yarn");
    EXPECT_ERR(cfg_with(",\"rope_parameters\":{\"rope_theta\":-1}", &c), "field 'rope_theta': expected a positive number, found -1", "rope_parameters theta");
    EXPECT_ERR(cfg_with(",\"layer_types\":[\"full_attention\",\"sliding_attention\"]", &c), "field 'layer_types'", "layer_types sliding");

    /* refusals */
    snprintf(expect, sizeof expect, "%s: field 'num_key_value_heads': expected a positive integer dividing num_attention_heads=8, found 3",
             tpath("config.json"));
    EXPECT_ERR(cfg_with(",\"num_key_value_heads\":3", &c), expect, "kv heads 3");
    CHECK(!strcmp(lomo_error(), expect));
    EXPECT_ERR(cfg_from("{\"model_type\":\"llama\",\"intermediate_size\":172,\"num_hidden_layers\":2,\"num_attention_heads\":8,"
                        "\"vocab_size\":100}", &c), "field 'hidden_size': missing", "missing hidden_size");
    EXPECT_ERR(cfg_from("{\"hidden_size\":64}", &c), "field 'model_type': missing", "missing model_type");
    EXPECT_ERR(cfg_with(",\"model_type\":\"gpt2\"", &c), "duplicate field 'model_type'", "model_type given twice");
    EXPECT_ERR(cfg_from("{\"model_type\":\"gpt2\",\"hidden_size\":64}", &c), "field 'model_type': expected \"llama\", \"mistral\", \"qwen2\", \"qwen3\", \"gemma2\", \"gemma3_text\" or \"phi3\", found \"gpt2\"", "gpt2");
    EXPECT_ERR(cfg_from("{\"model_type\":\"llama\",\"hidden_size\":0}", &c), "field 'hidden_size': expected a positive integer, found 0", "hidden_size 0");
    EXPECT_ERR(cfg_from("{\"model_type\":\"llama\",\"hidden_size\":-64}", &c), "found -64", "hidden_size negative");
    EXPECT_ERR(cfg_from("{\"model_type\":\"llama\",\"hidden_size\":64.5}", &c), "found 64.5", "hidden_size fraction");
    EXPECT_ERR(cfg_from("{\"model_type\":\"llama\",\"hidden_size\":\"64\"}", &c), "found \"64\"", "hidden_size string");
    EXPECT_ERR(cfg_with(",\"vocab_size\":1000", &c), "duplicate field 'vocab_size'", "vocab_size given twice");
    EXPECT_ERR(cfg_with(",\"max_position_embeddings\":3000000000", &c), "max_position_embeddings", "int overflow");
    EXPECT_ERR(cfg_with(",\"rms_norm_eps\":0", &c), "field 'rms_norm_eps': expected a positive number", "eps 0");
    EXPECT_ERR(cfg_with(",\"rope_theta\":\"x\"", &c), "rope_theta", "rope_theta string");
    EXPECT_ERR(cfg_with(",\"tie_word_embeddings\":1", &c), "field 'tie_word_embeddings': expected true or false, found 1", "tie 1");
    EXPECT_ERR(cfg_with(",\"hidden_act\":\"gelu\"", &c), "field 'hidden_act': expected \"silu\", found \"gelu\"", "gelu");
    CHECK(cfg_with(",\"rope_scaling\":{\"type\":\"linear\",\"factor\":2.0}", &c) == 0 && c.rope_type == 2 && c.rope_factor == 2.0f);
    EXPECT_ERR(cfg_with(",\"rope_scaling\":{\"type\":\"dynamic\",\"factor\":2.0}", &c), "field 'rope_scaling': rope type dynamic is not supported", "rope dynamic");
    EXPECT_ERR(cfg_with(",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0}", &c),
               "field 'low_freq_factor': missing required field", "rope llama3 incomplete");
    EXPECT_ERR(cfg_with(",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0,\"low_freq_factor\":4,"
                        "\"high_freq_factor\":1,\"original_max_position_embeddings\":8192}", &c),
               "high_freq_factor > low_freq_factor", "rope llama3 bands reversed");
    /* llama3 scaling, both layouts */
    CHECK(cfg_with(",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0,\"low_freq_factor\":1.0,"
                   "\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8192}", &c) == 0 &&
          c.rope_type == 1 && c.rope_factor == 8.0f && c.rope_low_freq_factor == 1.0f &&
          c.rope_high_freq_factor == 4.0f && c.rope_original_max_pos == 8192);
    CHECK(cfg_with(",\"rope_parameters\":{\"rope_theta\":500000.0,\"rope_type\":\"llama3\",\"factor\":32.0,"
                   "\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8192}", &c) == 0 &&
          c.rope_type == 1 && c.rope_factor == 32.0f && c.rope_theta == 500000.0f);
    EXPECT_ERR(cfg_with(",\"rope_scaling\":{\"factor\":8.0}", &c), "rope type {\"factor\":8.0} is not supported", "rope no type");
    EXPECT_ERR(cfg_with(",\"mlp_bias\":true", &c), "field 'mlp_bias'", "mlp_bias");
    EXPECT_ERR(cfg_with(",\"torch_dtype\":\"int8\"", &c), "field 'torch_dtype'", "torch_dtype int8");
    EXPECT_ERR(cfg_from("{\"model_type\":\"qwen2\",\"hidden_size\":64,\"intermediate_size\":172,\"num_hidden_layers\":2,"
                        "\"num_attention_heads\":8,\"vocab_size\":100,\"use_sliding_window\":true}", &c), "field 'use_sliding_window'", "qwen2 swa");
    EXPECT_ERR(cfg_from("{\"model_type\":\"llama\",\"hidden_size\":60,\"intermediate_size\":172,\"num_hidden_layers\":2,"
                        "\"num_attention_heads\":8,\"vocab_size\":100}", &c), "field 'head_dim'", "dim % heads without head_dim");
    EXPECT_ERR(cfg_from("[1]", &c), "not a JSON object", "config array");
    EXPECT_ERR(cfg_from("{\"model_type\":\"llama\",}", &c), "invalid JSON at byte 22", "config bad JSON");
    EXPECT_ERR(lomo__config_load(tpath("absent.json"), &c), "cannot open", "missing config");

    /* save / load round trip */
    memset(&c, 0, sizeof c);
    c.dim = 96; c.hidden_dim = 256; c.n_layers = 3; c.n_heads = 6; c.n_kv_heads = 2; c.head_dim = 24; c.vocab_size = 1000;
    c.max_seq_len = 4096; c.norm_eps = 1e-5f; c.rope_theta = 1e6f; c.tie_embeddings = 1; c.qkv_bias = c.o_bias = 1;
    c.dtype = LOMO_BF16; strcpy(c.model_type, "llama");
    CHECK(lomo__config_save(tpath("config.json"), &c) == 0);
    CHECK(lomo__config_load(tpath("config.json"), &d) == 0);
    CHECK(!memcmp(&c, &d, sizeof c));
    if (verbose) { char *s; size_t n; if (!lomo__read_file(tpath("config.json"), &s, &n)) { printf("%s", s); free(s); } }
    c.norm_eps = 3.14159274e-7f; c.rope_theta = 12345.678f; c.qkv_bias = 1; c.o_bias = 0; strcpy(c.model_type, "qwen2"); c.dtype = LOMO_F16;
    CHECK(lomo__config_save(tpath("config.json"), &c) == 0);
    CHECK(lomo__config_load(tpath("config.json"), &d) == 0);
    CHECK(!memcmp(&c, &d, sizeof c));
    strcpy(c.model_type, "mistral"); c.qkv_bias = 0; c.dtype = LOMO_F32;
    CHECK(lomo__config_save(tpath("config.json"), &c) == 0 && lomo__config_load(tpath("config.json"), &d) == 0 && !memcmp(&c, &d, sizeof c));
    c.qkv_bias = 1;
    EXPECT_ERR(lomo__config_save(tpath("config.json"), &c), "cannot be expressed", "mistral qkv without o bias");
    strcpy(c.model_type, "gpt2");
    EXPECT_ERR(lomo__config_save(tpath("config.json"), &c), "model_type", "save gpt2");
    CHECK(tmp_files_left() == 0);
    remove(tpath("config.json"));
}


/* ------------------------------------------------------------------------ */
/* issue 10: reader hardening                                                */
/* ------------------------------------------------------------------------ */

static void on_alarm(int sig) {   /* a reader blocked on a FIFO: report what ran, then fail */
    (void)sig;
    printf("FAIL: a reader blocked on a FIFO (20 s alarm)\ntest_io: %d passed, %d failed\n", npass, nfail + 1);
    fflush(stdout);
    _exit(1);
}

static void test_hardening(void) {
    lomo__json j;
    lomo_config c;
    lomo_data_opts o;
    char big[512];
    /* 1: keys compare by length and bytes; \u0000 never matches the end of a C string (ASan: no overread) */
    EXPECT_ERR(cfg_from("{\"model_type\\u0000\":1}", &c), "field 'model_type': missing", "key model_type\\u0000");
    {
        const char *t = "{\"model.norm.weight\\u0000\":1,\"ab\":2}";
        CHECK(lomo__json_parse(&j, t, strlen(t), "t") == 0);
        if (j.n > 2) {
            CHECK(lomo__json_get(&j, 0, "model.norm.weight") == -1);
            CHECK(lomo__json_get(&j, 0, "ab") >= 0 && lomo__json_get(&j, 0, "a") == -1 && lomo__json_get(&j, 0, "abc") == -1);
            CHECK(!lomo__json_streq(&j, j.nodes[j.nodes[0].first].key, "model.norm.weight"));
        }
        lomo__json_free(&j);
    }
    /* 6: duplicate keys refused in every object, whatever the escapes, Python would keep the last */
    EXPECT_ERR(jparse("{\"a\":1,\"\\u0061\":2}"), "duplicate field", "duplicate via escape");
    EXPECT_ERR(jparse("{\"x\":{\"k\":1,\"j\":0,\"k\":2}}"), "duplicate field 'k'", "nested duplicate");
    EXPECT_ERR(jparse("{\"a\\u0000\":1,\"a\\u0000\":2}"), "duplicate field", "duplicate with NUL");
    CHECK(jparse("{\"a\":1,\"a\\u0000\":2,\"A\":3,\"b\":{\"a\":1}}") == 0);   /* different keys */
    {   /* many keys: sorted check, the reported one is the second occurrence */
        char *s = (char *)malloc(200000);
        size_t n = 0;
        int i;
        n += (size_t)sprintf(s + n, "{");
        for (i = 0; i < 10000; i++) n += (size_t)sprintf(s + n, "%s\"k%d\":%d", i ? "," : "", (i * 7919) % 10007, i);
        sprintf(s + n, "}");
        CHECK(jparse(s) == 0);
        sprintf(s + n, ",\"k42\":1}");
        EXPECT_ERR(jparse(s), "duplicate field 'k42'", "duplicate among 10001 keys");
        free(s);
    }
    EXPECT_ERR(cfg_with(",\"rope_parameters\":{\"rope_theta\":1e4,\"rope_theta\":5e5}", &c), "duplicate field 'rope_theta'", "nested config duplicate");
    memset(&o, 0, sizeof o);
    o.seq_len = 8; o.vocab_size = 50;
    {
        const char *t = "{\"input_ids\":[1,2]}\n{\"input_ids\":[1,2],\"input_ids\":[3,4]}\n";
        write_bytes(tpath("dup.jsonl"), t, strlen(t));
        t = "{\"prompt\":[1],\"candidates\":[[2],[3]],\"answer\":0,\"answer\":1}\n";
        write_bytes(tpath("dup_mc.jsonl"), t, strlen(t));
    }
    EXPECT_ERR(lomo_data_open(tpath("dup.jsonl"), &o) ? 0 : -1, "duplicate field 'input_ids'", "JSONL duplicate");
    CHECK(strstr(lomo_error(), "dup.jsonl:2") != NULL);   /* file and line */
    EXPECT_ERR(lomo_mc_open(tpath("dup_mc.jsonl"), 50) ? 0 : -1, "duplicate field 'answer'", "MC duplicate");
    CHECK(strstr(lomo_error(), "dup_mc.jsonl:1") != NULL);
    remove(tpath("dup.jsonl")); remove(tpath("dup_mc.jsonl"));
    /* 4: float values checked as float32 after conversion */
    EXPECT_ERR(cfg_with(",\"rope_theta\":1e-50", &c), "field 'rope_theta'", "rope_theta rounds to 0");
    EXPECT_ERR(cfg_with(",\"rms_norm_eps\":1e-50", &c), "field 'rms_norm_eps'", "eps rounds to 0");
    EXPECT_ERR(cfg_with(",\"rms_norm_eps\":1e-40", &c), "normal float32", "eps subnormal");
    EXPECT_ERR(cfg_with(",\"rope_parameters\":{\"rope_theta\":1e-45}", &c), "field 'rope_theta'", "nested rope_theta to 0");
    EXPECT_ERR(cfg_with(",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":1e-60,\"low_freq_factor\":1,"
                        "\"high_freq_factor\":4,\"original_max_position_embeddings\":8192}", &c), "field 'factor'", "rope factor to 0");
    CHECK(cfg_with(",\"rms_norm_eps\":1.2e-38", &c) == 0 && c.norm_eps > 0);
    /* 5: heads * head_dim in 64 bits */
    snprintf(big, sizeof big, "{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":172,\"num_hidden_layers\":2,"
                              "\"num_attention_heads\":65536,\"num_key_value_heads\":1,\"head_dim\":65536,\"vocab_size\":100}");
    EXPECT_ERR(cfg_from(big, &c), "num_attention_heads=65536 x head_dim=65536 = 4294967296", "heads*head_dim overflow");
    snprintf(big, sizeof big, "{\"model_type\":\"llama\",\"hidden_size\":2000000000,\"intermediate_size\":172,\"num_hidden_layers\":2,"
                              "\"num_attention_heads\":1,\"head_dim\":64,\"vocab_size\":2000000000}");
    EXPECT_ERR(cfg_from(big, &c), "more than 2^50 elements", "vocab x hidden");
    /* 14: a 2^62-element shape: the byte count in the message does not wrap to 0 */
    EXPECT_ERR(st_try("{\"a\":{\"dtype\":\"F32\",\"shape\":[2147483648,2147483648],\"data_offsets\":[0,4]}}", 4),
               "4611686018427387904 elements of F32 = 2^64 bytes or more", "2^62 elements");
    CHECK(strstr(lomo_error(), "= 0 bytes") == NULL);
    remove(tpath("bad.safetensors"));
    /* 7: a FIFO as config.json or safetensors is refused at once, not read forever */
    signal(SIGALRM, on_alarm);
    alarm(20);
    remove(tpath("config.json"));
    CHECK(mkfifo(tpath("config.json"), 0600) == 0);
    EXPECT_ERR(lomo__config_load(tpath("config.json"), &c), "not a regular file (a FIFO)", "FIFO config.json");
    remove(tpath("config.json"));
    {
        lomo__st_file f;
        CHECK(mkfifo(tpath("fifo.safetensors"), 0600) == 0);
        EXPECT_ERR(lomo__st_open(&f, tpath("fifo.safetensors")), "not a regular file (a FIFO)", "FIFO safetensors");
        remove(tpath("fifo.safetensors"));
        EXPECT_ERR(lomo__st_open(&f, dir), "not a regular file (a directory)", "directory as safetensors");
    }
    alarm(0);
}

/* The public face of the JSON reader (lomo_json_*): types, document order, integers vs other numbers, decoded
   strings with their length, stopping after one value (end), and refusals. */
static void test_json_public(void) {
    const char *doc = " {\"a\": [7, -2, 3.5, 1e3, 9007199254740993, \"z\"], \"s\": \"x\\u00e9\\u0000y\\n\", "
                      "\"t\": true, \"n\": null, \"o\": {}} ";
    lomo_json *j = lomo_json_parse(doc, strlen(doc), NULL, "doc");
    int a, e, k, types[8], nt = 0, rc[6];
    int64_t v[6] = {0};
    double x = 0;
    size_t len = 0, end = 99;
    char *str;
    CHECK(j != NULL);
    if (!j) return;
    CHECK(lomo_json_type(j, 0) == LOMO_JSON_OBJECT && lomo_json_count(j, 0) == 5);
    for (e = lomo_json_first(j, 0); e >= 0 && nt < 8; e = lomo_json_next(j, e)) types[nt++] = lomo_json_type(j, e);
    CHECK(nt == 5 && types[0] == LOMO_JSON_ARRAY && types[1] == LOMO_JSON_STRING && types[2] == LOMO_JSON_TRUE &&
          types[3] == LOMO_JSON_NULL && types[4] == LOMO_JSON_OBJECT);
    a = lomo_json_get(j, 0, "a");
    str = lomo_json_string(j, lomo_json_key(j, a), &len);
    CHECK(str && len == 1 && !strcmp(str, "a"));
    LOMO_FREE(str);
    CHECK(lomo_json_count(j, a) == 6 && lomo_json_get(j, 0, "missing") == -1 && lomo_json_get(j, a, "a") == -1);
    for (k = 0, e = lomo_json_first(j, a); e >= 0 && k < 6; e = lomo_json_next(j, e), k++) rc[k] = lomo_json_int(j, e, &v[k]);
    CHECK(k == 6 && rc[0] == 0 && v[0] == 7 && rc[1] == 0 && v[1] == -2 && rc[2] == -1 && rc[3] == -1 && rc[4] == -2 &&
          rc[5] == -1);
    e = lomo_json_next(j, lomo_json_next(j, lomo_json_first(j, a)));
    CHECK(lomo_json_number(j, e, &x) == 0 && x == 3.5 && lomo_json_number(j, a, &x) == -1);
    str = lomo_json_string(j, lomo_json_get(j, 0, "s"), &len);
    CHECK(str && len == 6 && !memcmp(str, "x\xc3\xa9\0y\n", 7));
    LOMO_FREE(str);
    CHECK(lomo_json_string(j, a, &len) == NULL && len == 0 && strstr(lomo_error(), "is not a string"));
    CHECK(lomo_json_type(j, -1) == -1 && lomo_json_type(j, 1000) == -1 && lomo_json_first(j, lomo_json_get(j, 0, "t")) == -1 &&
          lomo_json_count(j, lomo_json_get(j, 0, "o")) == 0 && lomo_json_first(j, lomo_json_get(j, 0, "o")) == -1 &&
          lomo_json_type(NULL, 0) == -1 && lomo_json_get(NULL, 0, "a") == -1);
    lomo_json_free(j);
    lomo_json_free(NULL);
    /* end: one value, then anything; without it only whitespace may follow */
    j = lomo_json_parse("[1, 2] tail", 11, &end, "t.json");
    CHECK(j && end == 6 && lomo_json_count(j, 0) == 2);
    lomo_json_free(j);
    CHECK(lomo_json_parse("[1, 2] tail", 11, NULL, "t.json") == NULL && strstr(lomo_error(), "t.json: invalid JSON at byte 7"));
    CHECK(lomo_json_parse("[1, 2,, 3]", 10, &end, "t.json") == NULL && end == 6 &&
          strstr(lomo_error(), "t.json: invalid JSON at byte 6"));
    CHECK(lomo_json_parse("{\"k\": 1, \"k\": 2} x", 18, &end, "t.json") == NULL && strstr(lomo_error(), "duplicate field 'k'"));
    CHECK(lomo_json_parse("\"\xff\"", 3, NULL, "t.json") == NULL && strstr(lomo_error(), "invalid UTF-8"));
    CHECK(lomo_json_parse("", 0, &end, "t.json") == NULL && strstr(lomo_error(), "unexpected end of input"));
}

int main(int argc, char **argv) {
    verbose = argc > 1 && !strcmp(argv[1], "-v");
    snprintf(dir, sizeof dir, "/tmp/lomo_test_io.%ld", (long)getpid());
    if (mkdir(dir, 0700)) { printf("cannot create %s\n", dir); return 2; }
    test_conversions();
    test_json();
    test_safetensors();
    test_config();
    test_hardening();
    test_json_public();
    if (rmdir(dir)) { printf("FAIL: files left in %s\n", dir); nfail++; }
    printf("test_io: %d passed, %d failed\n", npass, nfail);
    return nfail != 0;
}
