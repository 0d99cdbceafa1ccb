/* test_decode.c - the CPU decode path (one token at a time) against double
   references on random data:
   - the one-token matmul (GEMV, fp32 and bf16 rows read directly; f16 widened)
     with odd shapes, bias, accumulate, against a double dot product of the
     stored values: |err| <= 1e-5 x sum |w x| (+ |b|), fp32 accumulation of at
     most ~1000 terms (the bound is ~K eps = 6e-5 K/1000 worst case, 1e-5 holds
     for random signs with margin; a wrong row, lane or tail is off by O(1));
   - matmul_fwd_n (Q/K/V, gate/up in one pass) bitwise equal to separate
     matmul_fwd calls, for N = 1 and N > 1, fp32 / bf16 / f16;
   - results bitwise the same for teams of 1, 2 and 3 threads;
   - attention of new queries over a KV cache (attn_kv) against a double
     softmax, past one tile of keys (online rescaling), GQA, sliding
     windows, soft-capping: |err| <= 2e-5 (outputs are averages of N(0,1) v);
   - rope_at against double rotation at large positions: 2e-5 relative to the
     position's float angle (both compute the angle t * inv_freq in float);
   - a decode step allocates nothing (counting LOMO_MALLOC), and its logits
     with matmul_fwd_n are bitwise those without it (the driver's fallback). */
#include <stddef.h>
static long long n_mallocs;
static void *count_malloc(size_t n);
#define LOMO_MALLOC(sz) count_malloc(sz)
#define LOMO_REALLOC(p, n) (n_mallocs++, realloc((p), (n)))   /* a realloc counts as an allocation too */
#define LOMO_FREE(p) free(p)
#define LOMO_IMPLEMENTATION
#include "../lomo.h"
#include "test_util.h"
#include <string.h>
static void *count_malloc(size_t n) { n_mallocs++; return malloc(n); }

static void set_team(int nt) {
#ifdef _OPENMP
    omp_set_num_threads(nt > 0 ? nt : 1);
    lomo__nt_now = nt;            /* no load probe: teams of exactly nt threads */
    lomo__nt_when = 1e300;
#else
    (void)nt;
#endif
}

static uint16_t to16(float f, lomo_dtype dt) { return dt == LOMO_BF16 ? lomo_f32_to_bf16(f) : lomo_f32_to_f16(f); }
static double stored(const lomo_tensor *t, size_t i) { return (double)lomo__elem(t, i); }

/* a random (O,K) weight in dtype dt, and its storage */
static lomo_tensor weight(int O, int K, lomo_dtype dt, void **mem) {
    lomo_tensor t;
    size_t n = (size_t)O * K, i;
    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "w%dx%d", O, K);
    t.dtype = dt; t.ndim = 2; t.shape[0] = O; t.shape[1] = K; t.numel = (int64_t)n;
    if (dt == LOMO_F32) {
        float *f = (float *)malloc(sizeof(float) * n);
        tu_fill(f, n, 1.0);
        *mem = f;
    } else {
        uint16_t *h = (uint16_t *)malloc(sizeof(uint16_t) * n);
        for (i = 0; i < n; i++) h[i] = to16((float)tu_normal(), dt);
        *mem = h;
    }
    t.data = *mem;
    return t;
}

static void test_gemv(void) {
    static const int Ks[] = {1, 7, 8, 33, 64, 513, 1000}, Os[] = {1, 3, 4, 5, 9, 257};
    static const lomo_dtype dts[] = {LOMO_F32, LOMO_BF16, LOMO_F16};
    const lomo_backend *be = lomo_cpu_backend();
    float *scratch = (float *)malloc(sizeof(float) * 1000 * 257);
    int bad = 0, cases = 0;
    be->set_scratch(be->ctx, scratch, sizeof(float) * 1000 * 257, 0);
    for (int d = 0; d < 3; d++)
        for (int ki = 0; ki < 7; ki++)
            for (int oi = 0; oi < 6; oi++)
                for (int var = 0; var < 3; var++) {   /* plain, bias, accumulate + bias */
                    int K = Ks[ki], O = Os[oi];
                    void *wm, *bm;
                    lomo_tensor w = weight(O, K, dts[d], &wm), b = weight(1, O, LOMO_F32, &bm);
                    float *x = (float *)malloc(sizeof(float) * K), *y = (float *)malloc(sizeof(float) * O);
                    float *y0 = (float *)malloc(sizeof(float) * O);
                    double worst = 0.0;
                    b.ndim = 1; b.shape[0] = O;
                    tu_fill(x, (size_t)K, 1.0);
                    tu_fill(y0, (size_t)O, 1.0);
                    memcpy(y, y0, sizeof(float) * O);
                    be->matmul_fwd(be->ctx, y, x, &w, var ? &b : NULL, 1, K, O, var == 2);
                    for (int o = 0; o < O; o++) {
                        double r = 0.0, mag = 0.0, e;
                        for (int k = 0; k < K; k++) {
                            double p = stored(&w, (size_t)o * K + k) * x[k];
                            r += p; mag += fabs(p);
                        }
                        if (var) { r += ((float *)bm)[o]; mag += fabs(((float *)bm)[o]); }
                        if (var == 2) { r += y0[o]; mag += fabs(y0[o]); }
                        e = fabs(y[o] - r) / (mag + 1e-30);
                        if (!(e <= worst)) worst = e;
                    }
                    cases++;
                    if (!(worst <= 1e-5)) {
                        bad++;
                        printf("  gemv %s O=%d K=%d var %d: relative error %.3g\n",
                               dts[d] == LOMO_F32 ? "f32" : dts[d] == LOMO_BF16 ? "bf16" : "f16", O, K, var, worst);
                    }
                    free(wm); free(bm); free(x); free(y); free(y0);
                }
    CHECK(bad == 0, "one-token matmul: %d of %d cases off the double reference by more than 1e-5 of sum |w x|", bad, cases);
    be->set_scratch(be->ctx, NULL, 0, 0);
    free(scratch);
}

/* matmul_fwd_n equals separate matmul_fwd calls bit for bit, on every team size */
static void test_fwd_n(void) {
    static const lomo_dtype dts[] = {LOMO_F32, LOMO_BF16, LOMO_F16};
    const lomo_backend *be = lomo_cpu_backend();
    enum { K = 301, NN = 3 };
    static const int O[3] = {260, 131, 129};
    size_t sb = sizeof(float) * 260 * K;
    float *scratch = (float *)malloc(sb);
    be->set_scratch(be->ctx, scratch, sb, 0);
    CHECK(be->matmul_fwd_n != NULL, "the CPU backend has matmul_fwd_n");
    for (int d = 0; d < 3; d++)
        for (int N = 1; N <= NN; N += 2) {
            void *wm[3], *bm[3];
            lomo_tensor w[3], bias[3];
            const lomo_tensor *wp[3], *bp[3];
            float *x = (float *)malloc(sizeof(float) * N * K), *ref[3], *y[3];
            unsigned char *first[3];
            tu_fill(x, (size_t)N * K, 1.0);
            for (int j = 0; j < 3; j++) {
                w[j] = weight(O[j], K, dts[d], &wm[j]); wp[j] = &w[j];
                bias[j] = weight(1, O[j], LOMO_F32, &bm[j]); bias[j].ndim = 1; bias[j].shape[0] = O[j];
                bp[j] = j == 1 ? NULL : &bias[j];
                ref[j] = (float *)malloc(sizeof(float) * N * O[j]);
                y[j] = (float *)malloc(sizeof(float) * N * O[j]);
                first[j] = (unsigned char *)malloc(sizeof(float) * N * O[j]);
            }
            for (int nt = 1; nt <= 3; nt++) {
                int same = 1, same_team = 1;
                set_team(nt);
                for (int j = 0; j < 3; j++) be->matmul_fwd(be->ctx, ref[j], x, wp[j], bp[j], N, K, O[j], 0);
                for (int j = 0; j < 3; j++) memset(y[j], 0xff, sizeof(float) * N * O[j]);
                be->matmul_fwd_n(be->ctx, 3, y, x, wp, bp, N, K, O);
                for (int j = 0; j < 3; j++) {
                    same = same && !memcmp(y[j], ref[j], sizeof(float) * N * O[j]);
                    if (nt == 1) memcpy(first[j], y[j], sizeof(float) * N * O[j]);
                    else same_team = same_team && !memcmp(first[j], y[j], sizeof(float) * N * O[j]);
                }
                CHECK(same, "matmul_fwd_n (%s, N = %d, %d threads) equals three matmul_fwd calls bit for bit",
                      d == 0 ? "f32" : d == 1 ? "bf16" : "f16", N, nt);
                if (nt > 1)
                    CHECK(same_team, "matmul_fwd_n (%s, N = %d): %d threads give the 1-thread result bit for bit",
                          d == 0 ? "f32" : d == 1 ? "bf16" : "f16", N, nt);
            }
            set_team(2);
            for (int j = 0; j < 3; j++) { free(wm[j]); free(bm[j]); free(ref[j]); free(y[j]); free(first[j]); }
            free(x);
        }
    be->set_scratch(be->ctx, NULL, 0, 0);
    free(scratch);
}

/* attn_kv against a double softmax over the keys each query may see */
static void test_attn_kv(void) {
    const lomo_backend *be = lomo_cpu_backend();
    static const struct { int N, pos0, nh, nkv, hd, window; float cap; } cs[] = {
        {1, 0, 4, 2, 64, 0, 0.0f}, {1, 37, 4, 2, 64, 0, 0.0f}, {3, 37, 6, 3, 80, 0, 0.0f},
        {1, 1300, 4, 1, 64, 0, 0.0f}, {2, 1300, 4, 2, 64, 700, 0.0f}, {1, 1300, 2, 2, 32, 5, 0.0f},
        {1, 600, 4, 4, 64, 0, 30.0f}, {4, 1021, 2, 1, 16, 0, 0.0f}, {1, 511, 2, 1, 64, 0, 0.0f}, {1, 512, 2, 1, 64, 0, 0.0f}};
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        int N = cs[c].N, P = cs[c].pos0 + N, nh = cs[c].nh, nkv = cs[c].nkv, hd = cs[c].hd, win = cs[c].window;
        float cap = cs[c].cap, scale = c % 2 ? 0.125f : 1.0f / sqrtf((float)hd) * 1.7f;
        float *q = (float *)malloc(sizeof(float) * N * nh * hd), *out = (float *)malloc(sizeof(float) * N * nh * hd);
        float *kc = (float *)malloc(sizeof(float) * P * nkv * hd), *vc = (float *)malloc(sizeof(float) * P * nkv * hd);
        double *s = (double *)malloc(sizeof(double) * P), worst = 0.0;
        long long m0;
        tu_fill(q, (size_t)N * nh * hd, 1.0); tu_fill(kc, (size_t)P * nkv * hd, 1.0); tu_fill(vc, (size_t)P * nkv * hd, 1.0);
        m0 = n_mallocs;
        be->attn_kv(be->ctx, out, q, kc, vc, N, cs[c].pos0, nh, nkv, hd, scale, cap, win);
        CHECK(n_mallocs == m0, "attn_kv allocates nothing (%lld allocations)", n_mallocs - m0);
        for (int i = 0; i < N; i++)
            for (int h = 0; h < nh; h++) {
                int t = cs[c].pos0 + i, lo = win > 0 && t - win + 1 > 0 ? t - win + 1 : 0, g = h / (nh / nkv);
                double mx = -1e300, z = 0.0;
                for (int j = lo; j <= t; j++) {
                    double d = 0.0;
                    for (int e = 0; e < hd; e++) d += (double)q[((size_t)i * nh + h) * hd + e] * kc[((size_t)j * nkv + g) * hd + e];
                    d *= scale;
                    if (cap > 0) d = cap * tanh(d / cap);
                    s[j] = d; if (d > mx) mx = d;
                }
                for (int j = lo; j <= t; j++) { s[j] = exp(s[j] - mx); z += s[j]; }
                for (int e = 0; e < hd; e++) {
                    double r = 0.0, err;
                    for (int j = lo; j <= t; j++) r += s[j] / z * vc[((size_t)j * nkv + g) * hd + e];
                    err = fabs(out[((size_t)i * nh + h) * hd + e] - r);
                    if (!(err <= worst)) worst = err;
                }
            }
        CHECK(worst <= 2e-5, "attn_kv case %zu (N %d, pos0 %d, %d/%d heads, hd %d, window %d, cap %g): max error %.3g",
              c, N, cs[c].pos0, nh, nkv, hd, win, (double)cap, worst);
        free(q); free(out); free(kc); free(vc); free(s);
    }
}

static void test_rope_at(void) {
    const lomo_backend *be = lomo_cpu_backend();
    enum { N = 3, NH = 5, HD = 48 };
    float x[N * NH * HD], x0[N * NH * HD], inv[HD / 2];
    int pos0 = 3000;
    for (int rot = 16; rot <= HD; rot += HD - 16) {
        double worst = 0.0;
        float ms = rot == HD ? 1.0f : 1.19f;
        for (int i = 0; i < rot / 2; i++) inv[i] = (float)pow(10000.0, -2.0 * i / rot);
        tu_fill(x0, sizeof x0 / sizeof x0[0], 1.0);
        memcpy(x, x0, sizeof x);
        be->rope_at(be->ctx, x, inv, N, NH, HD, rot, ms, pos0);
        for (int n = 0; n < N; n++)
            for (int h = 0; h < NH; h++)
                for (int i = 0; i < HD; i++) {
                    const float *r = x0 + ((size_t)n * NH + h) * HD;
                    double want;
                    if (i < rot) {
                        int p = i % (rot / 2);
                        double ang = (double)((float)(pos0 + n) * inv[p]), a = r[p], b = r[p + rot / 2];
                        want = i < rot / 2 ? (a * cos(ang) - b * sin(ang)) * ms : (b * cos(ang) + a * sin(ang)) * ms;
                    } else want = r[i];
                    double e = fabs(x[((size_t)n * NH + h) * HD + i] - want);
                    if (!(e <= worst)) worst = e;
                }
        CHECK(worst <= 2e-5, "rope_at (rot %d of %d, mscale %g, positions %d..): max error %.3g", rot, HD, (double)ms, pos0, worst);
    }
}

/* a random model's decode logits: with matmul_fwd_n bitwise those without it; no allocation per step */
static void test_decode_steps(lomo_dtype dt) {
    static lomo_backend plain;
    lomo_config c;
    lomo_load_opts lo;
    enum { V = 211, P = 9, STEPS = 6 };
    int32_t tok[P + STEPS];
    float *la = (float *)malloc(sizeof(float) * V * STEPS), *lb = (float *)malloc(sizeof(float) * V * STEPS);
    uint64_t s = 3;
    memset(&lo, 0, sizeof lo);
    lo.dtype = dt;
    lomo_config_default(&c, 96, 200, 2, 6, 2, V);
    c.qkv_bias = 1;
    for (int i = 0; i < P + STEPS; i++) tok[i] = (int32_t)(lomo_rand_u64(&s) % V);
    for (int pass = 0; pass < 2; pass++) {
        lomo_model *m;
        lomo_kv *kv;
        long long m0;
        if (pass == 1) { plain = *lomo_cpu_backend(); plain.matmul_fwd_n = NULL; lo.backend = &plain; }
        m = lomo_model_new(&c, &lo);
        lomo_model_init_random(m, 5, 0.2f);
        kv = lomo_kv_new(m, P + STEPS, P);
        if (!kv || lomo_kv_eval(kv, tok, P, pass ? lb : la, 0)) { CHECK(0, "kv: %s", lomo_error()); lomo_model_free(m); break; }
        m0 = n_mallocs;
        for (int i = 0; i < STEPS; i++)
            if (lomo_kv_eval(kv, tok + P + i, 1, (pass ? lb : la) + (size_t)i * V, 0)) CHECK(0, "kv step: %s", lomo_error());
        CHECK(n_mallocs == m0, "%s decode steps allocate nothing (%lld allocations in %d steps)",
              dt == LOMO_F32 ? "f32" : "bf16", n_mallocs - m0, STEPS);
        lomo_kv_free(kv);
        lomo_model_free(m);
    }
    CHECK(!memcmp(la, lb, sizeof(float) * V * STEPS), "%s decode logits with matmul_fwd_n are those of separate matmul_fwd calls",
          dt == LOMO_F32 ? "f32" : "bf16");
    free(la); free(lb);
}

/* a host backend's weights: one block (not under ASan), every tensor inside it at a 64-byte
   boundary, in order, not overlapping; accounted per tensor; written and read back whole */
static void test_param_block(void) {
    int sizes[2][2] = {{48, 97}, {256, 9000}};   /* 0.1 MB, and 10 MB: past two 2 MiB pages */
    for (int d = 0; d < 2; d++)
        for (int z = 0; z < 2; z++) {
            lomo_config c;
            lomo_load_opts lo;
            lomo_model *m;
            size_t acct = 0;
            int ok = 1, filled = 1;
            memset(&lo, 0, sizeof lo);
            lo.dtype = d ? LOMO_BF16 : LOMO_F32;
            lomo_config_default(&c, sizes[z][0], 3 * sizes[z][0], 2, 4, 2, sizes[z][1]);
            if (!(m = lomo_model_new(&c, &lo))) { CHECK(0, "model: %s", lomo_error()); continue; }
#if defined(__SANITIZE_ADDRESS__)
            CHECK(m->param_block == NULL, "ASan build: one allocation per tensor");
#else
            CHECK(m->param_block != NULL, "dim %d %s: the weights are one block", sizes[z][0], d ? "bf16" : "f32");
#endif
            for (int i = 0; i < m->n_tensors; i++) {
                const lomo_tensor *t = &m->tensors[i];
                size_t b = lomo__stored_bytes(m, t);
                acct += b ? b : 1;
                if (!m->param_block) continue;
                if ((uintptr_t)t->data % 64) ok = 0;
                if (i && (const char *)t->data < (const char *)m->tensors[i - 1].data + lomo__stored_bytes(m, &m->tensors[i - 1])) ok = 0;
                if ((const char *)t->data < (const char *)m->param_block) ok = 0;
            }
            CHECK(ok, "dim %d: tensors 64-byte aligned, in order, not overlapping", sizes[z][0]);
            CHECK(m->mem.current[LOMO_MEM_PARAMS] == acct, "parameter bytes accounted per tensor: %zu, expected %zu",
                  m->mem.current[LOMO_MEM_PARAMS], acct);
            lomo_model_init_random(m, 11, 0.3f);
            for (int i = 0; i < m->n_tensors; i++) {   /* every tensor holds its own values (no overlap) */
                const lomo_tensor *t = &m->tensors[i];
                double first = stored(t, 0), last = stored(t, (size_t)t->numel - 1);
                if (t->kind == LOMO_ATTN_NORM || t->kind == LOMO_MLP_NORM || t->kind == LOMO_FINAL_NORM)
                    filled &= first == 1.0 && last == 1.0;
                else filled &= first != 0.0 && last != 0.0 && first == first && last == last;
            }
            CHECK(filled, "dim %d %s: every tensor's first and last weight as initialised", sizes[z][0], d ? "bf16" : "f32");
            lomo_model_free(m);
        }
}

int main(void) {
    set_team(2);
    test_param_block();
    test_gemv();
    test_fwd_n();
    test_attn_kv();
    test_rope_at();
    test_decode_steps(LOMO_F32);
    test_decode_steps(LOMO_BF16);
    return tu_done("test_decode");
}
