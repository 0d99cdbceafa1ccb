/* test_data.c - training data (JSON Lines, packed tokens), batches, shuffle,
   resume, multiple-choice items and every refusal message.
   Run from the repository root:
     gcc -std=c11 -Wall -Wextra -pedantic -O1 -g -fsanitize=address,undefined \
         -fno-sanitize-recover=all -I. tests/test_data.c -o /tmp/test_data -lm && /tmp/test_data [-v]
   -v prints every refusal message. Test files go to build/tmp_data/. */
#define LOMO_IMPLEMENTATION
#include "../lomo.h"

#include "test_util.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#define tpath tu_path
static const char *write_bytes(const char *name, const void *p, size_t n) {
    const char *path = tpath(name);
    tu_write(path, p, n);
    return path;
}
static const char *write_text(const char *name, const char *s) { return write_bytes(name, s, strlen(s)); }
static const char *write_u32(const char *name, const uint32_t *v, size_t n) {
    unsigned char *b = (unsigned char *)malloc(4 * n + 1);
    const char *p;
    size_t i;
    for (i = 0; i < n; i++) {
        b[4 * i] = (unsigned char)v[i]; b[4 * i + 1] = (unsigned char)(v[i] >> 8);
        b[4 * i + 2] = (unsigned char)(v[i] >> 16); b[4 * i + 3] = (unsigned char)(v[i] >> 24);
    }
    p = write_bytes(name, b, 4 * n);
    free(b);
    return p;
}

static lomo_data_opts opts(int T, int V, int shuffle, uint64_t seed, int32_t pad) {
    lomo_data_opts o;
    memset(&o, 0, sizeof o);
    o.seq_len = T; o.vocab_size = V; o.shuffle = shuffle; o.seed = seed; o.pad_id = pad;
    return o;
}

/* Opening `content` as file `name` must fail with both words in the message. */
static void data_err(const char *name, const char *content, int V, const char *w1, const char *w2, int line) {
    lomo_data_opts o = opts(4, V, 0, 0, 0);
    lomo_data *d = lomo_data_open(write_text(name, content), &o);
    tu_expect_err(d == NULL, w1, w2, __FILE__, line);
    lomo_data_free(d);
}
#define DATA_ERR(name, content, V, w1, w2) data_err((name), (content), (V), (w1), (w2), __LINE__)

static void mc_err(const char *content, const char *w1, const char *w2, int line) {
    lomo_mc *m = lomo_mc_open(write_text("mc_bad.jsonl", content), 32000);
    tu_expect_err(m == NULL, w1, w2, __FILE__, line);
    lomo_mc_free(m);
}
#define MC_ERR(content, w1, w2) mc_err((content), (w1), (w2), __LINE__)

static int row_eq(const int32_t *a, const int32_t *b, int n) { return !memcmp(a, b, sizeof(int32_t) * (size_t)n); }

/* ------------------------------------------------------------------------ */

static void test_jsonl(void) {
    const char *text =
        "{\"input_ids\": [1, 2, 3], \"labels\": [-100, 2, 3]}\n"
        "\n"
        "   \t \r\n"
        "{\"input_ids\": [4,5,6,7,8,9], \"extra\": \"x\"}\r\n"
        "{\"labels\": [5, -100], \"input_ids\": [7, 8], \"meta\": {\"a\": [1.5, null]}}";   /* no final newline */
    lomo_data_opts o = opts(4, 10, 0, 0, 9);
    lomo_data *d = lomo_data_open(write_text("a.jsonl", text), &o);
    int32_t tok[4], lab[4];
    const int32_t t0[4] = {1, 2, 3, 9}, l0[4] = {-100, 2, 3, -100};
    const int32_t t1[4] = {4, 5, 6, 7};
    const int32_t t2[4] = {7, 8, 9, 9}, l2[4] = {5, -100, -100, -100};
    CHECK(d != NULL, "open a.jsonl: %s", lomo_error());
    if (!d) return;
    CHECK(lomo_data_count(d) == 3, "count %lld", (long long)lomo_data_count(d));
    CHECK(lomo_data_get(d, 0, tok, lab) == 3 && row_eq(tok, t0, 4) && row_eq(lab, l0, 4), "example 0 (labels, -100, padding)");
    CHECK(lomo_data_get(d, 1, tok, lab) == 4 && row_eq(tok, t1, 4) && row_eq(lab, t1, 4), "example 1 (truncated, labels = ids)");
    CHECK(lomo_data_get(d, 2, tok, lab) == 2 && row_eq(tok, t2, 4) && row_eq(lab, l2, 4), "example 2 (key order, padding)");
    CHECK(lomo_data_get(d, 2, tok, NULL) == 2 && row_eq(tok, t2, 4), "labels NULL");
    EXPECT_ERR(lomo_data_get(d, 3, tok, lab) == -1, "example 3", "[0, 3)");
    EXPECT_ERR(lomo_data_get(d, -1, tok, lab) == -1, "example -1", NULL);
    lomo_data_free(d);

    /* no labels anywhere (labels share the ids), ".json" suffix, seq_len 1 */
    o = opts(1, 10, 0, 0, 0);
    d = lomo_data_open(write_text("b.json", "{\"input_ids\":[3,4]}\n{\"input_ids\":[5]}\n\n"), &o);
    CHECK(d != NULL, "open b.json: %s", lomo_error());
    if (!d) return;
    CHECK(lomo_data_count(d) == 2, "count");
    CHECK(lomo_data_get(d, 0, tok, lab) == 1 && tok[0] == 3 && lab[0] == 3, "b.json example 0");
    CHECK(lomo_data_get(d, 1, tok, lab) == 1 && tok[0] == 5 && lab[0] == 5, "b.json example 1");
    lomo_data_free(d);

    /* labels on some lines only */
    o = opts(3, 10, 0, 0, 0);
    d = lomo_data_open(write_text("c.jsonl", "{\"input_ids\":[1,2]}\n{\"input_ids\":[3,4],\"labels\":[-100,-100]}\n"), &o);
    CHECK(d != NULL, "open c.jsonl: %s", lomo_error());
    if (!d) return;
    {
        const int32_t e0[3] = {1, 2, 0}, m0[3] = {1, 2, -100}, e1[3] = {3, 4, 0}, m1[3] = {-100, -100, -100};
        CHECK(lomo_data_get(d, 0, tok, lab) == 2 && row_eq(tok, e0, 3) && row_eq(lab, m0, 3), "c.jsonl example 0");
        CHECK(lomo_data_get(d, 1, tok, lab) == 2 && row_eq(tok, e1, 3) && row_eq(lab, m1, 3), "c.jsonl example 1");
    }
    lomo_data_free(d);
}

/* n examples; example k = [k+1, k+1, ...] of length k % 3 + 1, labels = ids except
   every example's first label is -100 when `labels`. */
static const char *make_numbered(const char *name, int n, int labels) {
    size_t cap = (size_t)n * 80 + 1, at = 0;
    char *s = (char *)malloc(cap);
    const char *p;
    int k, i;
    s[0] = 0;
    for (k = 0; k < n; k++) {
        int len = k % 3 + 1;
        at += (size_t)snprintf(s + at, cap - at, "{\"input_ids\": [");
        for (i = 0; i < len; i++) at += (size_t)snprintf(s + at, cap - at, "%s%d", i ? "," : "", k + 1);
        at += (size_t)snprintf(s + at, cap - at, "]");
        if (labels) {
            at += (size_t)snprintf(s + at, cap - at, ", \"labels\": [-100");
            for (i = 1; i < len; i++) at += (size_t)snprintf(s + at, cap - at, ",%d", k + 1);
            at += (size_t)snprintf(s + at, cap - at, "]");
        }
        at += (size_t)snprintf(s + at, cap - at, "}\n");
    }
    p = write_text(name, s);
    free(s);
    return p;
}

static void test_batches(void) {
    const int T = 4, B = 3, N = 7;
    lomo_data_opts o = opts(T, 100, 0, 0, 0);
    lomo_data *d = lomo_data_open(make_numbered("seq.jsonl", N, 1), &o);
    int32_t tok[3 * 4], lab[3 * 4], et[4], el[4];
    int r, k, pass, ok;
    lomo_data_pos p;
    CHECK(d != NULL, "open seq.jsonl: %s", lomo_error());
    if (!d) return;
    CHECK(lomo_data_count(d) == N, "count");
    for (pass = 0; pass < 2; pass++) {   /* two epochs: batches {0,1,2} {3,4,5} {6,pad,pad} */
        int start;
        for (start = 0; start < N; start += B) {
            int want = N - start < B ? N - start : B;
            p = lomo_data_tell(d);
            CHECK(p.epoch == pass && p.index == start, "tell before batch: (%lld, %lld), expected (%d, %d)",
                  (long long)p.epoch, (long long)p.index, pass, start);
            r = lomo_data_next(d, B, tok, lab);
            CHECK(r == want, "epoch %d batch at %d: %d real rows, expected %d", pass, start, r, want);
            ok = 1;
            for (k = 0; k < B; k++) {
                if (k < want) {
                    lomo_data_get(d, start + k, et, el);
                    ok &= row_eq(tok + k * T, et, T) && row_eq(lab + k * T, el, T) && tok[k * T] == start + k + 1;
                } else {
                    int i;
                    for (i = 0; i < T; i++) ok &= tok[k * T + i] == 0 && lab[k * T + i] == -100;
                }
            }
            CHECK(ok, "epoch %d batch at %d: rows are the consecutive examples, then padding", pass, start);
        }
        p = lomo_data_tell(d);
        CHECK(p.epoch == pass + 1 && p.index == 0, "after the epoch: (%lld, %lld)", (long long)p.epoch, (long long)p.index);
    }
    /* B larger than the whole data set; labels NULL */
    r = lomo_data_next(d, 1, tok, NULL);
    CHECK(r == 1 && tok[0] == 1, "B=1, labels NULL");
    {
        int32_t *bt = (int32_t *)malloc(sizeof(int32_t) * 10 * T), *bl = (int32_t *)malloc(sizeof(int32_t) * 10 * T);
        r = lomo_data_next(d, 10, bt, bl);
        CHECK(r == N - 1 && bt[0] == 2 && bt[(N - 2) * T] == N && bl[(N - 1) * T] == -100 && bt[9 * T + 3] == 0,
              "B=10 from index 1: %d rows", r);
        r = lomo_data_next(d, 10, bt, bl);
        CHECK(r == N && bt[0] == 1 && lomo_data_tell(d).epoch == 4 && lomo_data_tell(d).index == 0, "B=10 whole epoch");
        free(bt); free(bl);
    }
    EXPECT_ERR(lomo_data_next(d, 0, tok, lab) == -1, "B must be >= 1", NULL);
    lomo_data_free(d);
}

/* The order of `epochs` epochs, read with batches of B (example = first token - 1). */
static void read_order(const char *path, int N, int shuffle, uint64_t seed, int B, int epochs, int *order) {
    lomo_data_opts o = opts(4, 1000, shuffle, seed, 0);
    lomo_data *d = lomo_data_open(path, &o);
    int32_t *tok = (int32_t *)malloc(sizeof(int32_t) * (size_t)B * 4);
    int got = 0, r, k;
    if (!d) { printf("open %s: %s\n", path, lomo_error()); exit(2); }
    while (got < N * epochs) {
        r = lomo_data_next(d, B, tok, NULL);
        if (r < 1) { printf("next: %d\n", r); exit(2); }
        for (k = 0; k < r; k++) order[got++] = tok[k * 4] - 1;
    }
    free(tok);
    lomo_data_free(d);
}

static int is_perm(const int *a, int n) {
    char seen[64] = {0};
    int i;
    for (i = 0; i < n; i++) {
        if (a[i] < 0 || a[i] >= n || seen[a[i]]) return 0;
        seen[a[i]] = 1;
    }
    return 1;
}

static void test_shuffle(void) {
    enum { N = 50, E = 3 };
    const char *path = make_numbered("shuf.jsonl", N, 0);
    int a[N * E], b[N * E], c[N * E], plain[N * E], e, i, same_pos = 0;
    read_order(path, N, 1, 7, 7, E, a);
    read_order(path, N, 1, 7, 13, E, b);    /* other batch size: same order */
    read_order(path, N, 1, 8, 7, E, c);     /* other seed */
    read_order(path, N, 0, 7, 7, E, plain);
    for (e = 0; e < E; e++) CHECK(is_perm(a + e * N, N), "epoch %d is a permutation", e);
    CHECK(is_perm(c, N), "seed 8: permutation");
    CHECK(memcmp(a, a + N, sizeof(int) * N) && memcmp(a + N, a + 2 * N, sizeof(int) * N), "epochs differ");
    CHECK(!memcmp(a, b, sizeof a), "reproducible, independent of the batch size");
    CHECK(memcmp(a, c, sizeof(int) * N), "seeds differ");
    for (i = 0; i < N; i++) same_pos += a[i] == i;
    CHECK(same_pos < N / 2, "shuffled: %d of %d examples in place", same_pos, N);
    for (i = 0; i < N * E; i++) if (plain[i] != i % N) break;
    CHECK(i == N * E, "no shuffle: file order every epoch");
    {   /* one example: shuffle is the identity */
        lomo_data_opts o = opts(2, 10, 1, 3, 0);
        lomo_data *d = lomo_data_open(write_text("one.jsonl", "{\"input_ids\":[5]}"), &o);
        int32_t t[2];
        CHECK(d && lomo_data_next(d, 1, t, NULL) == 1 && t[0] == 5 && lomo_data_next(d, 1, t, NULL) == 1 &&
              lomo_data_tell(d).epoch == 2, "single example, shuffled");
        lomo_data_free(d);
    }
}

/* Resuming at any recorded position reproduces the uninterrupted stream. */
static void test_resume(void) {
    enum { N = 23, B = 4, T = 4, STEPS = 40 };
    const char *path = make_numbered("resume.jsonl", N, 1);
    int32_t ref_t[STEPS][B * T], ref_l[STEPS][B * T], t[B * T], l[B * T];
    int ref_r[STEPS], s, k, shuffle, crossed = 0;
    lomo_data_pos pos[STEPS];
    for (shuffle = 0; shuffle < 2; shuffle++) {
        lomo_data_opts o = opts(T, 100, shuffle, 42, 0);
        lomo_data *d = lomo_data_open(path, &o), *e;
        int ok = 1;
        if (!d) { CHECK(0, "open: %s", lomo_error()); return; }
        for (s = 0; s < STEPS; s++) {
            pos[s] = lomo_data_tell(d);
            ref_r[s] = lomo_data_next(d, B, ref_t[s], ref_l[s]);
        }
        lomo_data_free(d);
        for (s = 0; s < STEPS; s++) {
            if (s && pos[s].epoch != pos[s - 1].epoch) crossed++;
            e = lomo_data_open(path, &o);
            if (!e || lomo_data_seek(e, pos[s])) { ok = 0; lomo_data_free(e); break; }
            for (k = s; k < STEPS; k++) {
                int r = lomo_data_next(e, B, t, l);
                if (r != ref_r[k] || !row_eq(t, ref_t[k], B * T) || !row_eq(l, ref_l[k], B * T)) { ok = 0; break; }
            }
            lomo_data_free(e);
        }
        CHECK(ok, "shuffle=%d: seek(tell) at each of %d steps reproduces the stream", shuffle, STEPS);
        /* seek on an object that already ran elsewhere (other epoch cached) */
        e = lomo_data_open(path, &o);
        for (k = 0; k < 13; k++) lomo_data_next(e, 3, t, l);
        CHECK(lomo_data_seek(e, pos[9]) == 0 && lomo_data_next(e, B, t, l) == ref_r[9] && row_eq(t, ref_t[9], B * T) &&
              row_eq(l, ref_l[9], B * T), "shuffle=%d: seek back from a later epoch", shuffle);
        {
            lomo_data_pos bad;
            bad.epoch = 0; bad.index = N;
            EXPECT_ERR(lomo_data_seek(e, bad) == -1, "index 23", "[0, 23)");
            bad.index = -1;
            EXPECT_ERR(lomo_data_seek(e, bad) == -1, "out of range", NULL);
            bad.epoch = -1; bad.index = 0;
            EXPECT_ERR(lomo_data_seek(e, bad) == -1, "epoch -1", NULL);
        }
        lomo_data_free(e);
    }
    CHECK(crossed >= 4, "the recorded positions cross epoch boundaries (%d)", crossed);
    {   /* the end of an epoch: tell gives (epoch+1, 0), and a partial batch before it */
        int partial = 0;
        for (s = 0; s < STEPS; s++) partial += ref_r[s] < B;
        CHECK(partial >= 4, "partial batches at the epoch ends (%d)", partial);
    }
}

static void test_packed(void) {
    uint32_t v[11];
    int32_t tok[3 * 4], lab[3 * 4], i;
    lomo_data_opts o = opts(4, 32000, 0, 0, 7);
    lomo_data *d;
    for (i = 0; i < 11; i++) v[i] = (uint32_t)(i * 1000 + 1);
    d = lomo_data_open(write_u32("tok.bin", v, 11), &o);
    CHECK(d != NULL, "open tok.bin: %s", lomo_error());
    if (!d) return;
    CHECK(lomo_data_count(d) == 3, "11 tokens, T=4: 3 examples");
    CHECK(lomo_data_get(d, 1, tok, lab) == 4 && tok[0] == 4001 && tok[3] == 7001 && lab[0] == 4001 && lab[3] == 7001, "chunk 1");
    CHECK(lomo_data_get(d, 2, tok, lab) == 3 && tok[0] == 8001 && tok[2] == 10001 && tok[3] == 7 && lab[2] == 10001 &&
          lab[3] == -100, "partial last chunk, padded");
    CHECK(lomo_data_next(d, 3, tok, lab) == 3 && tok[0] == 1 && tok[4] == 4001 && tok[8] == 8001 && tok[11] == 7 &&
          lab[11] == -100, "one batch of all three chunks");
    CHECK(lomo_data_tell(d).epoch == 1, "epoch over");
    lomo_data_free(d);

    d = lomo_data_open(write_u32("tok8", v, 8), &o);   /* exact multiple, no suffix */
    CHECK(d && lomo_data_count(d) == 2 && lomo_data_get(d, 1, tok, lab) == 4 && tok[3] == 7001, "8 tokens: 2 examples");
    lomo_data_free(d);

    /* errors */
    d = lomo_data_open(write_bytes("odd.bin", v, 10), &o);
    EXPECT_ERR(d == NULL, "odd.bin: size 10 bytes is not a multiple of 4", NULL);
    d = lomo_data_open(write_bytes("empty.bin", v, 0), &o);
    EXPECT_ERR(d == NULL, "empty.bin: no examples (empty file)", NULL);
    v[5] = 70000;
    d = lomo_data_open(write_u32("big.bin", v, 11), &o);
    EXPECT_ERR(d == NULL, "big.bin: token 5 (byte offset 20) = 70000 is outside the vocabulary [0, 32000)", NULL);
    v[5] = 0xffffffffu;
    d = lomo_data_open(write_u32("neg.bin", v, 11), &o);
    EXPECT_ERR(d == NULL, "neg.bin: token 5", "= 4294967295 is outside");
    v[5] = 32000;
    d = lomo_data_open(write_u32("edge.bin", v, 6), &o);
    EXPECT_ERR(d == NULL, "= 32000 is outside", NULL);
    v[5] = 31999;
    d = lomo_data_open(write_u32("edge.bin", v, 6), &o);
    CHECK(d && lomo_data_count(d) == 2, "id vocab-1 accepted");
    lomo_data_free(d);
}

static void test_data_errors(void) {
    const char *ok16 =
        "{\"input_ids\": [1]}\n{\"input_ids\": [1]}\n{\"input_ids\": [1]}\n{\"input_ids\": [1]}\n"
        "{\"input_ids\": [1]}\n{\"input_ids\": [1]}\n{\"input_ids\": [1]}\n{\"input_ids\": [1]}\n"
        "{\"input_ids\": [1]}\n{\"input_ids\": [1]}\n{\"input_ids\": [1]}\n{\"input_ids\": [1]}\n"
        "{\"input_ids\": [1]}\n\n{\"input_ids\": [1]}\n{\"input_ids\": [1]}\n";
    char text[2048];
    lomo_data_opts o;
    lomo_data *d;

    snprintf(text, sizeof text, "%s%s", ok16, "{\"input_ids\": [1, 2, 3, 4, 5, 70000, 6]}\n");
    o = opts(4, 32000, 0, 0, 0);
    d = lomo_data_open(write_text("data.jsonl", text), &o);
    CHECK(d == NULL && !strcmp(lomo_error(), "build/tmp_data/data.jsonl:17: input_ids[5] = 70000 is outside the vocabulary [0, 32000)"),
          "exact message (beyond the truncation), got: %s", lomo_error());

    DATA_ERR("m1.jsonl", "{\"input_ids\": [1]}\n\n{\"input_ids\": [1, 2,}\n", 32000, "m1.jsonl:3: invalid JSON at byte 20", "unexpected character");
    DATA_ERR("m2.jsonl", "{\"input_ids\": [1]}\n{\"input_ids\": [1]} x\n", 32000, "m2.jsonl:2: invalid JSON", "trailing");
    DATA_ERR("m3.jsonl", "[{\"input_ids\": [1]},\n{\"input_ids\": [2]}]\n", 32000, "m3.jsonl:1: invalid JSON", NULL);
    DATA_ERR("o1.jsonl", "\n[1, 2, 3]\n", 32000, "o1.jsonl:2: expected a JSON object", "found [1, 2, 3]");
    DATA_ERR("o2.jsonl", "42\n", 32000, "o2.jsonl:1: expected a JSON object", "found 42");
    DATA_ERR("i1.jsonl", "{\"labels\": [1]}\n", 32000, "i1.jsonl:1: missing \"input_ids\"", NULL);
    DATA_ERR("i2.jsonl", "{\"input_ids\": \"abc\"}\n", 32000, "i2.jsonl:1: input_ids must be an array of integers", "found \"abc\"");
    DATA_ERR("i3.jsonl", "{\"input_ids\": {\"a\": 1}}\n", 32000, "i3.jsonl:1: input_ids must be an array", "found {\"a\": 1}");
    DATA_ERR("n1.jsonl", "{\"input_ids\": [1, 2.5]}\n", 32000, "n1.jsonl:1: input_ids[1] = 2.5 is not an integer", NULL);
    DATA_ERR("n2.jsonl", "{\"input_ids\": [1, 2, \"3\"]}\n", 32000, "n2.jsonl:1: input_ids[2] = \"3\" is not an integer", NULL);
    DATA_ERR("n3.jsonl", "{\"input_ids\": [true]}\n", 32000, "input_ids[0] = true is not an integer", NULL);
    DATA_ERR("n4.jsonl", "{\"input_ids\": [1e3]}\n", 32000, "input_ids[0] = 1e3 is not an integer", NULL);
    DATA_ERR("n5.jsonl", "{\"input_ids\": [[1]]}\n", 32000, "input_ids[0] = [1] is not an integer", NULL);
    DATA_ERR("n6.jsonl", "{\"input_ids\": [1], \"labels\": [null]}\n", 32000, "labels[0] = null is not an integer", NULL);
    DATA_ERR("v1.jsonl", "{\"input_ids\": [0, -1]}\n", 32000, "v1.jsonl:1: input_ids[1] = -1 is outside the vocabulary [0, 32000)", NULL);
    DATA_ERR("v2.jsonl", "{\"input_ids\": [-100]}\n", 32000, "input_ids[0] = -100 is outside", "-100 is allowed in labels only");
    DATA_ERR("v3.jsonl", "{\"input_ids\": [99999999999999999999]}\n", 32000, "input_ids[0] = 99999999999999999999 is outside", NULL);
    DATA_ERR("v4.jsonl", "{\"input_ids\": [10]}\n", 10, "input_ids[0] = 10 is outside the vocabulary [0, 10)", NULL);
    DATA_ERR("l1.jsonl", "{\"input_ids\": [1, 2], \"labels\": [1, -5]}\n", 32000,
             "l1.jsonl:1: labels[1] = -5 is neither -100 nor in the vocabulary [0, 32000)", NULL);
    DATA_ERR("l2.jsonl", "{\"input_ids\": [1, 2], \"labels\": [32000, 1]}\n", 32000, "labels[0] = 32000 is neither -100", NULL);
    DATA_ERR("l3.jsonl", "{\"input_ids\": [1, 2]}\n{\"input_ids\": [1, 2], \"labels\": [1]}\n", 32000,
             "l3.jsonl:2: labels has length 1 but input_ids has length 2", NULL);
    DATA_ERR("l4.jsonl", "{\"input_ids\": [1, 2], \"labels\": null}\n", 32000, "l4.jsonl:1: labels must be an array of integers", "found null");
    DATA_ERR("l5.jsonl", "{\"input_ids\": [1, 2, 3, 4, 5, 6], \"labels\": [1, 2, 3, 4, 5]}\n", 32000,
             "labels has length 5 but input_ids has length 6", NULL);
    DATA_ERR("e1.jsonl", "{\"input_ids\": [1]}\n{\"input_ids\": []}\n", 32000, "e1.jsonl:2: input_ids is empty", NULL);
    DATA_ERR("e2.jsonl", "{\"input_ids\": [], \"labels\": []}\n", 32000, "e2.jsonl:1: input_ids is empty", NULL);
    DATA_ERR("data.jsonl", "", 32000, "build/tmp_data/data.jsonl: no examples (empty file)", NULL);
    DATA_ERR("blank.jsonl", "\n  \n\t\r\n", 32000, "blank.jsonl: no examples (only blank lines)", NULL);

    o = opts(4, 32000, 0, 0, 0);
    d = lomo_data_open(tpath("missing.jsonl"), &o);
    EXPECT_ERR(d == NULL, "missing.jsonl: cannot open", strerror(ENOENT));
    d = lomo_data_open(tpath("missing.bin"), &o);
    EXPECT_ERR(d == NULL, "missing.bin: cannot open", strerror(ENOENT));

    /* options */
    o = opts(0, 32000, 0, 0, 0);
    EXPECT_ERR(lomo_data_open(tpath("data.jsonl"), &o) == NULL, "seq_len must be >= 1", NULL);
    o = opts(4, 0, 0, 0, 0);
    EXPECT_ERR(lomo_data_open(tpath("data.jsonl"), &o) == NULL, "vocab_size must be >= 1", NULL);
    o = opts(4, 100, 0, 0, 100);
    EXPECT_ERR(lomo_data_open(tpath("data.jsonl"), &o) == NULL, "pad_id = 100 is outside the vocabulary [0, 100)", NULL);
    o = opts(4, 100, 0, 0, -1);
    EXPECT_ERR(lomo_data_open(tpath("data.jsonl"), &o) == NULL, "pad_id = -1", NULL);
    EXPECT_ERR(lomo_data_open(tpath("data.jsonl"), NULL) == NULL, "required", NULL);
}

static void test_mc(void) {
    const char *text =
        "{\"prompt\": [1, 2, 3], \"candidates\": [[4], [5, 6]], \"answer\": 1}\n"
        "\n"
        "{\"candidates\": [[7, 8, 9], [1], [2, 2]], \"answer\": 0, \"prompt\": [31999], \"idx\": 5}\r\n";
    lomo_mc *m = lomo_mc_open(write_text("mc.jsonl", text), 32000);
    const lomo_mc_item *it;
    CHECK(m != NULL, "open mc.jsonl: %s", lomo_error());
    if (!m) return;
    CHECK(lomo_mc_count(m) == 2, "count");
    it = lomo_mc_get(m, 0);
    CHECK(it && it->prompt_len == 3 && it->prompt[0] == 1 && it->prompt[2] == 3 && it->n_cand == 2 && it->answer == 1 &&
          it->cand_len[0] == 1 && it->cand[0][0] == 4 && it->cand_len[1] == 2 && it->cand[1][0] == 5 && it->cand[1][1] == 6,
          "item 0");
    it = lomo_mc_get(m, 1);
    CHECK(it && it->prompt_len == 1 && it->prompt[0] == 31999 && it->n_cand == 3 && it->answer == 0 && it->cand_len[0] == 3 &&
          it->cand[0][2] == 9 && it->cand_len[1] == 1 && it->cand[1][0] == 1 && it->cand_len[2] == 2 && it->cand[2][1] == 2,
          "item 1");
    EXPECT_ERR(lomo_mc_get(m, 2) == NULL, "item 2", "[0, 2)");
    EXPECT_ERR(lomo_mc_get(m, -1) == NULL, "item -1", NULL);
    lomo_mc_free(m);

    {   /* many items: pointers stay valid after the buffers grew */
        char *s = (char *)malloc(200 * 64);
        int k, ok = 1;
        size_t at = 0;
        for (k = 0; k < 200; k++)
            at += (size_t)snprintf(s + at, 200 * 64 - at, "{\"prompt\":[%d,%d],\"candidates\":[[%d],[%d,%d]],\"answer\":%d}\n",
                                   k, k + 1, k + 2, k + 3, k + 4, k % 2);
        m = lomo_mc_open(write_text("mc_many.jsonl", s), 32000);
        free(s);
        CHECK(m && lomo_mc_count(m) == 200, "200 items");
        for (k = 0; m && k < 200; k++) {
            it = lomo_mc_get(m, k);
            ok &= it->prompt[1] == k + 1 && it->cand[0][0] == k + 2 && it->cand[1][1] == k + 4 && it->answer == k % 2;
        }
        CHECK(ok, "200 items read back");
        lomo_mc_free(m);
    }

    MC_ERR("{\"prompt\": [1], \"candidates\": [[1], [2]], \"answer\": 0}\n{\"prompt\": [1}\n", "mc_bad.jsonl:2: invalid JSON at byte", NULL);
    MC_ERR("[1]\n", "mc_bad.jsonl:1: expected a JSON object", "found [1]");
    MC_ERR("{\"candidates\": [[1], [2]], \"answer\": 0}\n", "mc_bad.jsonl:1: missing \"prompt\"", NULL);
    MC_ERR("{\"prompt\": 5, \"candidates\": [[1], [2]], \"answer\": 0}\n", "prompt must be an array of integers", "found 5");
    MC_ERR("{\"prompt\": [], \"candidates\": [[1], [2]], \"answer\": 0}\n", "mc_bad.jsonl:1: prompt is empty", NULL);
    MC_ERR("{\"prompt\": [1, 32000], \"candidates\": [[1], [2]], \"answer\": 0}\n",
           "mc_bad.jsonl:1: prompt[1] = 32000 is outside the vocabulary [0, 32000)", NULL);
    MC_ERR("{\"prompt\": [1], \"answer\": 0}\n", "mc_bad.jsonl:1: missing \"candidates\"", NULL);
    MC_ERR("{\"prompt\": [1], \"candidates\": [1, 2], \"answer\": 0}\n", "candidates[0] must be an array of integers", "found 1");
    MC_ERR("{\"prompt\": [1], \"candidates\": \"ab\", \"answer\": 0}\n", "candidates must be an array of arrays", "found \"ab\"");
    MC_ERR("{\"prompt\": [1], \"candidates\": [[1]], \"answer\": 0}\n", "candidates has 1 element; at least 2", NULL);
    MC_ERR("{\"prompt\": [1], \"candidates\": [], \"answer\": 0}\n", "candidates has 0 elements", NULL);
    MC_ERR("{\"prompt\": [1], \"candidates\": [[1], []], \"answer\": 0}\n", "mc_bad.jsonl:1: candidates[1] is empty", NULL);
    MC_ERR("\n\n{\"prompt\": [1], \"candidates\": [[1], [2, 70000]], \"answer\": 0}\n",
           "mc_bad.jsonl:3: candidates[1][1] = 70000 is outside the vocabulary [0, 32000)", NULL);
    MC_ERR("{\"prompt\": [1], \"candidates\": [[1], [1.5]], \"answer\": 0}\n", "candidates[1][0] = 1.5 is not an integer", NULL);
    MC_ERR("{\"prompt\": [1], \"candidates\": [[1], [2]]}\n", "mc_bad.jsonl:1: missing \"answer\"", NULL);
    MC_ERR("{\"prompt\": [1], \"candidates\": [[1], [2]], \"answer\": 2}\n", "mc_bad.jsonl:1: answer = 2 does not index a candidate", "0..1");
    MC_ERR("{\"prompt\": [1], \"candidates\": [[1], [2]], \"answer\": -1}\n", "answer = -1 does not index", NULL);
    MC_ERR("{\"prompt\": [1], \"candidates\": [[1], [2]], \"answer\": 0.5}\n", "answer = 0.5 is not an integer", NULL);
    MC_ERR("{\"prompt\": [1], \"candidates\": [[1], [2]], \"answer\": \"1\"}\n", "answer = \"1\" is not an integer", NULL);
    MC_ERR("", "mc_bad.jsonl: no items (empty file)", NULL);
    MC_ERR(" \n\n", "mc_bad.jsonl: no items (only blank lines)", NULL);
    EXPECT_ERR(lomo_mc_open(tpath("mc_missing.jsonl"), 32000) == NULL, "mc_missing.jsonl: cannot open", strerror(ENOENT));
    EXPECT_ERR(lomo_mc_open(tpath("mc.jsonl"), 0) == NULL, "vocab_size must be >= 1", NULL);
}

/* Data parallelism: the slices every rank keeps (lomo_data_next_rank) concatenate, micro-batch by micro-batch and
   rank by rank, to the step one process reads (lomo_data_next of M x world x batch rows), for random examples of
   random lengths with labels partly masked, shuffled, over epoch ends (padding rows); bad arguments are refused
   before any data is consumed. */
static void test_rank_slices(void) {
    static const int cases[][3] = {{1, 1, 3}, {2, 1, 2}, {3, 2, 2}, {4, 3, 1}, {2, 2, 3}, {5, 1, 1}};   /* world, M, B */
    const int T = 6, V = 50, N = 23;
    char *text = (char *)malloc(64 * 24 * 2 * 6), *w = text;
    lomo_data_opts o = opts(T, V, 1, 77, 3);
    int i, c;
    for (i = 0; i < N; i++) {   /* 1..8 ids (some rows cut to T, some padded), the first label masked now and then */
        int n = 1 + tu_randint(8), k;
        w += sprintf(w, "{\"input_ids\": [");
        for (k = 0; k < n; k++) w += sprintf(w, "%s%d", k ? ", " : "", tu_randint(V));
        w += sprintf(w, "], \"labels\": [");
        for (k = 0; k < n; k++) w += sprintf(w, "%s%d", k ? ", " : "", k == 0 && i % 3 == 0 ? -100 : tu_randint(V));
        w += sprintf(w, "]}\n");
    }
    write_text("ranks.jsonl", text);
    free(text);
    for (c = 0; c < (int)(sizeof cases / sizeof cases[0]); c++) {
        int W = cases[c][0], M = cases[c][1], B = cases[c][2], rows = W * M * B, step, r, ok = 1, real_ok = 1, short_seen = 0;
        size_t cells = (size_t)rows * T;
        int32_t *rt = (int32_t *)malloc(cells * 4), *rl = (int32_t *)malloc(cells * 4);
        int32_t *ct = (int32_t *)malloc(cells * 4), *cl = (int32_t *)malloc(cells * 4);
        int32_t *st = (int32_t *)malloc(cells * 4), *sl = (int32_t *)malloc(cells * 4);
        lomo_data *ref = lomo_data_open(tu_path("ranks.jsonl"), &o), *d[5];
        for (r = 0; r < W; r++) d[r] = lomo_data_open(tu_path("ranks.jsonl"), &o);
        for (step = 0; step < 2 * N / rows + 3 && ref; step++) {   /* past two epoch ends */
            int want = lomo_data_next(ref, rows, rt, rl);
            short_seen |= want < rows;   /* an epoch's last step: padding rows, some rank's slice may be all padding */
            memset(ct, 0x55, cells * 4); memset(cl, 0x55, cells * 4);
            for (r = 0; r < W; r++) {
                int j, got;
                memset(st, 0x7f, cells * 4); memset(sl, 0x7f, cells * 4);
                got = lomo_data_next_rank(d[r], B, M, r, W, st, sl);
                real_ok &= got == want && lomo_data_tell(d[r]).index == lomo_data_tell(ref).index &&
                           lomo_data_tell(d[r]).epoch == lomo_data_tell(ref).epoch;
                for (j = 0; j < M; j++) {   /* rank r's micro-batch j goes to rows (j W + r) B of the step */
                    memcpy(ct + ((size_t)j * W + r) * B * T, st + (size_t)j * B * T, sizeof(int32_t) * B * T);
                    memcpy(cl + ((size_t)j * W + r) * B * T, sl + (size_t)j * B * T, sizeof(int32_t) * B * T);
                }
            }
            ok &= !memcmp(ct, rt, cells * 4) && !memcmp(cl, rl, cells * 4);
        }
        CHECK(ref && ok && short_seen, "world %d, %d micro-batches of %d: the ranks' slices do not concatenate to the step"
              " (or no epoch end was read)", W, M, B);
        CHECK(ref && real_ok, "world %d, %d micro-batches of %d: real rows or data position differ from the step's", W,
              M, B);
        if (W == 1) {   /* one rank: the step as read, untouched */
            memcpy(st, rt, cells * 4);
            CHECK(lomo_batch_slice(st, NULL, T, B, M, 0, 1) == 0 && !memcmp(st, rt, cells * 4), "world 1 changed rows");
        }
        lomo_data_free(ref);
        for (r = 0; r < W; r++) lomo_data_free(d[r]);
        free(rt); free(rl); free(ct); free(cl); free(st); free(sl);
    }
    {   /* refusals, before anything is read */
        lomo_data *d = lomo_data_open(tu_path("ranks.jsonl"), &o);
        int32_t tok[6 * 8], lab[6 * 8];
        lomo_data_pos p0 = lomo_data_tell(d);
        EXPECT_ERR(lomo_data_next_rank(d, 2, 1, 3, 3, tok, lab) == -1, "rank 3 of world 3", "rank in [0, world)");
        EXPECT_ERR(lomo_data_next_rank(d, 2, 1, -1, 3, tok, lab) == -1, "rank -1 of world 3", NULL);
        EXPECT_ERR(lomo_data_next_rank(d, 2, 1, 0, 0, tok, lab) == -1, "world >= 1", NULL);
        EXPECT_ERR(lomo_data_next_rank(d, 0, 1, 0, 2, tok, lab) == -1, "batch 0, micro_batches 1", ">= 1");
        EXPECT_ERR(lomo_data_next_rank(d, 2, 0, 0, 2, tok, lab) == -1, "micro_batches 0", ">= 1");
        EXPECT_ERR(lomo_data_next_rank(d, 65536, 2, 1, 16384, tok, lab) == -1, "2147483648 rows per step",
                   "more than an int");
        EXPECT_ERR(lomo_data_next_rank(d, 2, 1, 0, 1, NULL, lab) == -1, "data and tokens are required", NULL);
        EXPECT_ERR(lomo_batch_slice(tok, lab, 0, 2, 1, 0, 2) == -1, "seq_len 0", NULL);
        CHECK(d && lomo_data_tell(d).epoch == p0.epoch && lomo_data_tell(d).index == p0.index,
              "a refused call moved the data position");
        lomo_data_free(d);
    }
}

int main(int argc, char **argv) {
    tu_verbose = argc > 1 && !strcmp(argv[1], "-v");
    if (tu_scratch("build/tmp_data")) return 2;
    test_jsonl();
    test_batches();
    test_shuffle();
    test_resume();
    test_packed();
    test_data_errors();
    test_mc();
    test_rank_slices();
    return tu_done("test_data");
}
