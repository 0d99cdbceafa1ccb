/* test_precision.c - 16-bit storage, rounding and loss scaling.
   Tolerances (stated per dtype; max|a-b|/max|b| per tensor after 3 LOMO steps
   from the same 16-bit-representable start, against the fp32 driver):
     bf16 <= 2^-7 (a few bf16 ulps: each update is rounded to 8 bits of mantissa)
     f16  <= 2^-9
   and the losses of those steps within 3e-2 (bf16: 8-bit mantissa) and 2e-3 (f16) relative.
   Also: stochastic rounding is unbiased (the mean of many roundings of a value
   is the value, to 1% of an ulp, where nearest-even is off by up to half an
   ulp); at a small learning rate bf16 with stochastic rounding keeps lowering
   the loss where round-to-nearest stalls; fp16 dynamic loss scaling skips an
   overflowing step with weights bit-identical, halves the scale, and grows it
   back after the configured clean steps; a power-of-two loss scale changes
   nothing in fp32; the trainer state (loss scale) survives save + resume. */
#define LOMO_IMPLEMENTATION
#include "../lomo.h"
#include "test_util.h"

static lomo_model *make(lomo_dtype dt, uint64_t seed) {
    lomo_config c;
    lomo_config_default(&c, 32, 64, 2, 4, 2, 53);
    c.tie_embeddings = 1;
    lomo_load_opts lo = {dt, NULL, NULL};
    lomo_model *m = lomo_model_new(&c, &lo);
    lomo_model_init_random(m, seed, 0.2f);
    return m;
}

static float weight(const lomo_tensor *t, int64_t i) { return lomo__elem(t, (size_t)i); }

/* an fp32 model holding exactly the values of a 16-bit one */
static lomo_model *widen(const lomo_model *h) {
    lomo_model *m = make(LOMO_F32, 0);
    for (int i = 0; i < h->n_tensors; i++)
        for (int64_t j = 0; j < h->tensors[i].numel; j++) ((float *)m->tensors[i].data)[j] = weight(&h->tensors[i], j);
    return m;
}

static double max_rel(const lomo_model *a16, const lomo_model *b32) {
    double worst = 0;
    for (int i = 0; i < a16->n_tensors; i++) {
        double num = 0, den = 0;
        for (int64_t j = 0; j < a16->tensors[i].numel; j++) {
            double x = weight(&a16->tensors[i], j), y = ((float *)b32->tensors[i].data)[j];
            num = fmax(num, fabs(x - y)); den = fmax(den, fabs(y));
        }
        worst = fmax(worst, num / den);
    }
    return worst;
}

static int32_t tok[2 * 12];

static void test_vs_fp32(lomo_dtype dt, double wtol, double ltol) {
    const char *name = dt == LOMO_BF16 ? "bf16" : "f16";
    lomo_model *h = make(dt, 3), *f = widen(h);
    lomo_train_opts o;
    memset(&o, 0, sizeof o);
    o.batch = 2; o.seq_len = 12; o.clip_norm = 1.0f; o.weight_decay = 0.01f; o.loss_scaling = -1;
    lomo_trainer *th = lomo_trainer_new(h, &o), *tf = lomo_trainer_new(f, &o);
    double lworst = 0;
    for (int k = 0; k < 3; k++) {
        lomo_step_info ih, iff;
        CHECK(lomo_step(th, tok, NULL, 0.05f, &ih) == 0 && lomo_step(tf, tok, NULL, 0.05f, &iff) == 0, "%s step: %s", name, lomo_error());
        if (k == 0) CHECK(ih.loss == iff.loss, "%s: identical weights must give the identical loss (%g vs %g)", name, ih.loss, iff.loss);
        lworst = fmax(lworst, fabs(ih.loss - iff.loss) / iff.loss);
    }
    double e = max_rel(h, f);
    printf("%s storage vs fp32, 3 steps: weights max rel diff %.2e (bound %.2e), losses %.2e (bound %.0e)\n",
           name, e, wtol, lworst, ltol);
    CHECK(e <= wtol && e > 0, "%s weights: %g", name, e);
    CHECK(lworst <= ltol, "%s losses: %g", name, lworst);
    lomo_memory r = lomo_memory_report(h);
    CHECK(r.peak[LOMO_MEM_PARAMS] == 2 * (size_t)lomo_n_params(h), "%s parameters take 2 bytes each", name);
    lomo_trainer_free(th); lomo_trainer_free(tf);
    lomo_model_free(h); lomo_model_free(f);
}

static void test_unbiased(lomo_dtype dt) {
    const char *name = dt == LOMO_BF16 ? "bf16" : "f16";
    double worst_sr = 0, worst_rne = 0;
    for (int k = 0; k < 20; k++) {
        float x = (float)((tu_uniform() - 0.5) * (k < 10 ? 3.0 : 0.01));
        uint16_t near = lomo__round16(x, dt, 0, 0.0f);
        float vn = dt == LOMO_BF16 ? lomo_bf16_to_f32(near) : lomo_f16_to_f32(near);
        /* one ulp around x */
        uint16_t other = (uint16_t)(vn < x ? near + (near & 0x8000 ? -1 : 1) : near + (near & 0x8000 ? 1 : -1));
        float vo = dt == LOMO_BF16 ? lomo_bf16_to_f32(other) : lomo_f16_to_f32(other);
        double ulp = fabs((double)vo - vn), sum = 0;
        int n = 200000;
        for (int i = 0; i < n; i++) {
            uint16_t r = lomo__round16(x, dt, 1, lomo__hash_uniform(77, (uint64_t)k, (uint64_t)i));
            sum += dt == LOMO_BF16 ? lomo_bf16_to_f32(r) : lomo_f16_to_f32(r);
        }
        worst_sr = fmax(worst_sr, fabs(sum / n - x) / ulp);
        worst_rne = fmax(worst_rne, fabs((double)vn - x) / ulp);
    }
    printf("%s rounding of 20 values x 200000 draws: stochastic mean off by <= %.4f ulp, nearest-even by <= %.3f ulp\n",
           name, worst_sr, worst_rne);
    CHECK(worst_sr < 0.01, "%s stochastic rounding biased: %g ulp", name, worst_sr);
    CHECK(worst_rne > 0.1, "the test values must not be (nearly) representable");
}

/* lr so small that most updates are below half a bf16 ulp */
static void test_sr_keeps_learning(void) {
    float loss[3][3];   /* [f32, bf16 nearest, bf16 stochastic][start, middle, end] */
    for (int v = 0; v < 3; v++) {
        lomo_model *m = make(v ? LOMO_BF16 : LOMO_F32, 2);
        lomo_train_opts o;
        memset(&o, 0, sizeof o);
        o.batch = 2; o.seq_len = 12; o.stochastic_rounding = v == 2; o.seed = 9;
        lomo_trainer *t = lomo_trainer_new(m, &o);
        lomo_step_info in;
        for (int k = 0; k <= 400; k++) {
            lomo_step(t, tok, NULL, 2.5e-4f, &in);
            if (k == 0) loss[v][0] = in.loss;
            if (k == 200) loss[v][1] = in.loss;
            if (k == 400) loss[v][2] = in.loss;
        }
        lomo_trainer_free(t);
        lomo_model_free(m);
    }
    printf("lr 2.5e-4, 400 steps on one batch: fp32 %.4f -> %.4f -> %.4f; bf16 nearest %.4f -> %.4f -> %.4f; "
           "bf16 stochastic %.4f -> %.4f -> %.4f\n", loss[0][0], loss[0][1], loss[0][2], loss[1][0], loss[1][1],
           loss[1][2], loss[2][0], loss[2][1], loss[2][2]);
    CHECK(loss[1][1] - loss[1][2] < 0.2 * (loss[2][1] - loss[2][2]), "round-to-nearest should have stalled");
    CHECK(loss[2][2] < loss[2][1] && loss[2][1] < loss[2][0], "stochastic rounding keeps lowering the loss");
    CHECK(fabs(loss[2][2] - loss[0][2]) < 0.05 * loss[0][2], "stochastic rounding follows fp32 (%g vs %g)", loss[2][2], loss[0][2]);
}

static void test_loss_scaling(void) {
    lomo_model *m = make(LOMO_F16, 1), *snap = make(LOMO_F16, 1);
    lomo_train_opts o;
    memset(&o, 0, sizeof o);
    o.batch = 2; o.seq_len = 12; o.loss_scale_init = 1.7e38f; o.loss_scale_window = 3; o.loss_scaling = 1;
    lomo_trainer *t = lomo_trainer_new(m, &o);
    int skips = 0, growths = 0, clean = 0, ok_identical = 1, ok_halve = 1, ok_grow = 1;
    for (int k = 0; k < 12; k++) {
        lomo_step_info in;
        for (int i = 0; i < m->n_tensors; i++) memcpy(snap->tensors[i].data, m->tensors[i].data, 2 * m->tensors[i].numel);
        float before = lomo_trainer_loss_scale(t);
        CHECK(lomo_step(t, tok, NULL, 0.01f, &in) == 0, "step: %s", lomo_error());
        float after = lomo_trainer_loss_scale(t);
        if (in.skipped) {
            skips++; clean = 0;
            for (int i = 0; i < m->n_tensors; i++)
                ok_identical &= !memcmp(snap->tensors[i].data, m->tensors[i].data, 2 * m->tensors[i].numel);
            ok_halve &= after == before * 0.5f;
        } else if (++clean == 3) {
            growths++; clean = 0;
            ok_grow &= after == before * 2.0f;
        } else ok_grow &= after == before;
    }
    printf("fp16 loss scaling from 1.7e38, window 3: %d overflowing steps skipped, %d growths, final scale %g\n",
           skips, growths, lomo_trainer_loss_scale(t));
    CHECK(skips >= 2 && growths >= 1, "the test must overflow and grow back");
    CHECK(ok_identical, "a skipped step must leave every weight bit-identical");
    CHECK(ok_halve, "each overflow halves the scale");
    CHECK(ok_grow, "the scale grows x2 exactly after the window of clean steps, else stays");
    {   /* a loss_scale_* knob alone asks for loss scaling on f16, CPU included (loss_scaling 0) */
        lomo_train_opts o2 = o;
        lomo_step_info in;
        memset(&in, 0, sizeof in);
        o2.loss_scaling = 0; o2.loss_scale_init = 4096.0f; o2.loss_scale_window = 0;
        lomo_trainer *t3 = lomo_trainer_new(m, &o2);
        CHECK(t3 && lomo_step(t3, tok, NULL, 0.01f, &in) == 0 && in.loss_scale == 4096.0f,
              "loss_scale_init set, loss_scaling 0: scaling on (scale %g)", (double)in.loss_scale);
        lomo_trainer_free(t3);
    }
    /* the scale survives a save + resume */
    lomo_save_opts so;
    memset(&so, 0, sizeof so);
    so.trainer = t;
    CHECK(lomo_save_ex(m, "build/tmp_precision_ckpt", &so) == 0, "save: %s", lomo_error());
    lomo_trainer *t2 = lomo_trainer_new(m, &o);
    CHECK(lomo_trainer_resume(t2, "build/tmp_precision_ckpt") == 0 && lomo_trainer_loss_scale(t2) == lomo_trainer_loss_scale(t) &&
          lomo_trainer_step(t2) == lomo_trainer_step(t), "resume restores scale and step: %s", lomo_error());
    lomo_trainer_free(t2);
    lomo_trainer_free(t);
    lomo_model_free(m); lomo_model_free(snap);
}

/* the default (loss_scaling = 0): on for f16 only where the backend's gradients pass through
   16-bit operands (grads16: CUDA), off on the CPU (fp32 gradients), and never for bf16 */
static void test_scaling_default(void) {
    static lomo_backend be16;
    lomo_config c;
    lomo_train_opts o;
    lomo_step_info in;
    be16 = *lomo_cpu_backend();
    be16.grads16 = 1;   /* the CPU's kernels, declared as a backend with 16-bit gradient operands */
    lomo_config_default(&c, 32, 64, 2, 4, 2, 53);
    for (int k = 0; k < 4; k++) {
        lomo_dtype dt = k < 2 ? LOMO_F16 : LOMO_BF16;
        lomo_load_opts lo = {dt, NULL, NULL};
        lomo_model *m;
        lomo_trainer *t;
        int want = dt == LOMO_F16 && (k & 1);
        lo.backend = k & 1 ? &be16 : NULL;
        m = lomo_model_new(&c, &lo);
        lomo_model_init_random(m, 9, 0.2f);
        memset(&o, 0, sizeof o);
        o.batch = 2; o.seq_len = 12;
        t = lomo_trainer_new(m, &o);
        CHECK(t && lomo_step(t, tok, NULL, 0.01f, &in) == 0, "step: %s", lomo_error());
        CHECK(t && (in.loss_scale == 65536.0f) == want && (lomo_trainer_loss_scale(t) > 1.0f) == want,
              "%s storage, grads16 %d: loss scaling must be %s by default (scale %g)", dt == LOMO_F16 ? "f16" : "bf16",
              k & 1, want ? "on" : "off", (double)in.loss_scale);
        lomo_trainer_free(t);
        lomo_model_free(m);
    }
}

/* in fp32 a power-of-two loss scale is exact: same weights as no scaling */
static void test_scale_exact(void) {
    lomo_model *a = make(LOMO_F32, 4), *b = make(LOMO_F32, 4);
    lomo_train_opts o;
    memset(&o, 0, sizeof o);
    o.batch = 2; o.seq_len = 12; o.clip_norm = 0.5f;
    lomo_trainer *ta = lomo_trainer_new(a, &o);
    o.loss_scaling = 1; o.loss_scale_init = 1024.0f;
    lomo_trainer *tb = lomo_trainer_new(b, &o);
    for (int k = 0; k < 3; k++) { lomo_step(ta, tok, NULL, 0.05f, NULL); lomo_step(tb, tok, NULL, 0.05f, NULL); }
    double e = 0;
    for (int i = 0; i < a->n_tensors; i++)
        e = fmax(e, tu_rel_err((float *)b->tensors[i].data, (float *)a->tensors[i].data, a->tensors[i].numel));
    CHECK(e <= 1e-6, "loss scale 1024 changed fp32 results: %g", e);
    lomo_trainer_free(ta); lomo_trainer_free(tb);
    lomo_model_free(a); lomo_model_free(b);
}

/* the CPU backend widens a 16-bit weight for BLAS with its own vectorisable
   loops: they must give lomo_bf16_to_f32 / lomo_f16_to_f32 bit for bit, on
   every one of the 65536 bit patterns (zeros, subnormals, inf, NaN payloads) */
static void test_widen_exact(void) {
    for (int d = 0; d < 2; d++) {
        lomo_dtype dt = d ? LOMO_F16 : LOMO_BF16;
        static uint16_t raw[65536];
        static float buf[65536];
        lomo__cpu cpu;
        lomo_tensor w;
        const float *f;
        int bad = 0, first = -1;
        memset(&cpu, 0, sizeof cpu);
        cpu.scratch = buf; cpu.scratch_bytes = sizeof buf;
        memset(&w, 0, sizeof w);
        for (int i = 0; i < 65536; i++) raw[i] = (uint16_t)i;
        w.data = raw; w.dtype = dt; w.ndim = 1; w.shape[0] = w.numel = 65536;
        f = lomo__f32(&cpu, &w);
        for (int i = 0; f && i < 65536; i++) {
            float r = dt == LOMO_BF16 ? lomo_bf16_to_f32((uint16_t)i) : lomo_f16_to_f32((uint16_t)i);
            if (memcmp(&r, f + i, 4)) { bad++; if (first < 0) first = i; }
        }
        CHECK(f && bad == 0, "%s widening: %d of 65536 bit patterns differ from the scalar conversion (first 0x%04x)",
              d ? "f16" : "bf16", bad, first);
    }
}

/* the built-in LOMO rule on f16 storage (rounded to nearest even): the CPU
   backend's update, vectorised with F16C where the CPU has it, must store
   exactly what the scalar formula lomo_f32_to_f16(w decay - lr g') stores,
   g' = clamp(g / loss scale, +-clip_value) clip_coef, and report a stored
   NaN/Inf as the scalar read-back does. Old weights: every one of the 65536
   halves (NaN blocks too); gradients: random bit patterns, and values that
   overflow f16; sizes not a multiple of 8. Then the rounding alone (w = 0,
   lr = -1): 2^22 random floats and every float near f16's rounding edges. */
static int update_matches_dt(lomo_dtype dt, const uint16_t *w0, const float *g, int64_t n, float lr, float wd,
                             float inv, float clip_value, float coef, int *first) {
    uint16_t *w = (uint16_t *)malloc(2 * (size_t)n);
    lomo__cpu cpu;
    lomo_tensor p;
    lomo_update_args a;
    int bad = 0, want_ok = 1;
    memcpy(w, w0, 2 * (size_t)n);
    memset(&cpu, 0, sizeof cpu);
    memset(&p, 0, sizeof p);
    p.data = w; p.dtype = dt; p.ndim = 1; p.shape[0] = p.numel = n;
    memset(&a, 0, sizeof a);
    a.rule = LOMO_OPT_LOMO; a.lr = lr; a.weight_decay = wd; a.inv_loss_scale = inv; a.clip_value = clip_value;
    a.clip_coef = coef; a.step = 1; a.param_sumsq = -1.0;
    lomo__cpu_update(&cpu, &p, g, NULL, NULL, &a);
    for (int64_t i = 0; i < n; i++) {
        float v = g[i] * inv, decay = 1.0f - lr * wd;
        uint16_t r;
        if (clip_value > 0.0f) v = v < -clip_value ? -clip_value : (v > clip_value ? clip_value : v);
        v = v * coef;
        if (dt == LOMO_BF16) {
            r = lomo_f32_to_bf16(lomo_bf16_to_f32(w0[i]) * decay - lr * v);
            want_ok &= (r & 0x7f80) != 0x7f80;
        } else {
            r = lomo_f32_to_f16(lomo_f16_to_f32(w0[i]) * decay - lr * v);
            want_ok &= (r & 0x7c00) != 0x7c00;
        }
        if (r != w[i]) { if (!bad++) *first = (int)i; }
    }
    if (cpu.fin_ok != want_ok) { bad++; if (*first < 0) *first = -2; }
    free(w);
    return bad;
}

static int update_matches(const uint16_t *w0, const float *g, int64_t n, float lr, float wd, float inv,
                          float clip_value, float coef, int *first) {
    return update_matches_dt(LOMO_F16, w0, g, n, lr, wd, inv, clip_value, coef, first);
}

/* bf16 round-to-nearest LOMO update (its own vectorisable loop without a clamp,
   the general loop with one) against the scalar formula: every bf16 weight with
   any-float and ordinary gradients, and the rounding alone on 2^22 floats */
static void test_update_bf16_exact(void) {
    const int64_t n = 65536 + 5, m = 1 << 22;
    uint16_t *w0 = (uint16_t *)malloc(2 * (size_t)n), *z = (uint16_t *)calloc((size_t)m, 2);
    float *g = (float *)malloc(4 * (size_t)m);
    uint64_t s = 78;
    int first = -1, bad;
    for (int64_t i = 0; i < m; i++) {
        uint32_t u = (uint32_t)(lomo__rng_next(&s) >> 32);
        if (i < n) w0[i] = (uint16_t)(i * 40503u);
        if (i % 3 == 0 || i >= n) { memcpy(&g[i], &u, 4); }
        else g[i] = ((float)(u >> 8) / 16777216.0f - 0.5f) * (i % 7 == 0 ? 3e38f : 2.0f);
    }
    bad = update_matches_dt(LOMO_BF16, w0, g, n, 0.01f, 0.1f, 0.5f, 0.0f, 0.7f, &first);
    CHECK(bad == 0, "bf16 LOMO update, no clamp: %d of %lld stored weights differ (first %d)", bad, (long long)n, first);
    first = -1;
    bad = update_matches_dt(LOMO_BF16, w0, g, n - 3, 3e-3f, 0.1f, 1.0f / 1024, 0.25f, 0.7f, &first);
    CHECK(bad == 0, "bf16 LOMO update with a clamp: %d of %lld differ (first %d)", bad, (long long)n - 3, first);
    first = -1;
    bad = update_matches_dt(LOMO_BF16, z, g, m, -1.0f, 0.0f, 1.0f, 0.0f, 1.0f, &first);   /* w = 0: stores round(g) */
    CHECK(bad == 0, "bf16 rounding in the update: %d of %lld floats round differently from lomo_f32_to_bf16 (first %d)",
          bad, (long long)m, first);
    printf("bf16 LOMO update checked against the scalar formula on every bf16 value and 2^22 floats\n");
    free(w0); free(z); free(g);
}

static void test_update_f16_exact(void) {
    const int64_t n = 65536 + 5;
    uint16_t *w0 = (uint16_t *)malloc(2 * (size_t)n);
    float *g = (float *)malloc(4 * (size_t)(1 << 22));
    uint64_t s = 77;
    int first = -1, bad;
    for (int64_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)(lomo__rng_next(&s) >> 32);
        w0[i] = (uint16_t)(i * 40503u);                     /* every half once, in a scrambled order */
        if (i % 3 == 0) { memcpy(&g[i], &u, 4); }           /* any float: NaN, inf, subnormal, huge */
        else g[i] = ((float)(u >> 8) / 16777216.0f - 0.5f) * (i % 7 == 0 ? 3e5f : 2.0f);
    }
    bad = update_matches(w0, g, n, 0.01f, 0.0f, 1.0f, 0.0f, 1.0f, &first);
    CHECK(bad == 0, "f16 LOMO update, no clamp: %d of %lld stored weights differ from the scalar formula (first %d)",
          bad, (long long)n, first);
    first = -1;
    bad = update_matches(w0, g, n - 3, 3e-3f, 0.1f, 1.0f / 1024, 0.25f, 0.7f, &first);
    CHECK(bad == 0, "f16 LOMO update, loss scale, decay, clamp and coefficient: %d of %lld differ (first %d)",
          bad, (long long)n - 3, first);
    {   /* the rounding alone: w = 0, w decay - lr g = g */
        int64_t m = 1 << 22, k = 0;
        uint16_t *z = (uint16_t *)calloc((size_t)m, 2);
        static const uint32_t edge[] = {0x33000000u, 0x33800000u, 0x38800000u, 0x477fe000u, 0x477ff000u, 0x47800000u};
        for (int e = 0; e < 6; e++)
            for (int32_t d = -4096; d < 4096; d++) { uint32_t u = edge[e] + (uint32_t)d; memcpy(&g[k++], &u, 4); u |= 0x80000000u; memcpy(&g[k++], &u, 4); }
        for (; k < m; k++) { uint32_t u = (uint32_t)(lomo__rng_next(&s) >> 32); memcpy(&g[k], &u, 4); }
        first = -1;
        bad = update_matches(z, g, m, -1.0f, 0.0f, 1.0f, 0.0f, 1.0f, &first);
        CHECK(bad == 0, "f16 rounding in the update: %d of %lld floats round differently from lomo_f32_to_f16 (first %d)",
              bad, (long long)m, first);
        free(z);
    }
    printf("f16 LOMO update (%s) checked against the scalar formula on every half and 2^22 floats\n",
#ifdef LOMO__F16C
           lomo__f16c() ? "F16C" : "scalar"
#else
           "scalar"
#endif
    );
    free(w0); free(g);
}

int main(void) {
    uint64_t s = 5;
    test_widen_exact();
    test_update_f16_exact();
    test_update_bf16_exact();
    for (int i = 0; i < 24; i++) tok[i] = (int32_t)(lomo__rng_next(&s) % 53);
    test_vs_fp32(LOMO_BF16, 1.0 / 128, 3e-2);
    test_vs_fp32(LOMO_F16, 1.0 / 512, 2e-3);
    test_unbiased(LOMO_BF16);
    test_unbiased(LOMO_F16);
    test_sr_keeps_learning();
    test_loss_scaling();
    test_scaling_default();
    test_scale_exact();
    return tu_done("test_precision");
}
