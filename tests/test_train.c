/* test_train.c - the driver as a training loop:
   - fused equals unfused: k LOMO steps with the streaming driver (updates in
     the backward, clip by norm and value, weight decay) give the weights of k
     steps of "compute all gradients, then apply the rule" (the rule written
     here independently, in double), <= 1e-6 relative per tensor;
   - checkpointing on and off give bitwise the same weights, with one pass and
     with the two-pass clip; the backward recomputes every layer but the top one
     (its working set is the forward's), and all of them in a second pass;
   - the hook sees every tensor exactly once per step, top down, also with the
     two-pass norm clipping (pass one updates nothing);
   - the gradient buffer's peak is the largest tensor in fp32; the total peak
     with checkpointing is within 10% of the doc block's formula;
   - a step with a non-finite loss, or with bad tokens, leaves weights untouched;
   - the loss goes down on a learnable task;
   - an update that leaves NaN/Inf weights fails the step naming the step and
     the tensor (built-in rule on f16, and a hook that writes a NaN);
   - bf16 and f16 storage: the tracked peak is within 10% of the formula for
     the model as loaded (lomo_memory_formula_model), parameters at 2 bytes;
   - batch x seq_len beyond what the kernels index is refused before any
     allocation, naming the sizes and the bytes. */
#define LOMO_IMPLEMENTATION
#include "../lomo.h"
#include "test_util.h"

static lomo_model *make_model_v(int tied, uint64_t seed, int vocab) {
    lomo_config c;
    lomo_config_default(&c, 16, 40, 3, 4, 2, vocab);
    c.tie_embeddings = tied;
    c.qkv_bias = 1;
    lomo_model *m = lomo_model_new(&c, NULL);
    lomo_model_init_random(m, seed, 0.3f);
    /* non-trivial norms and biases */
    uint64_t s = seed;
    for (int i = 0; i < m->n_tensors; i++) {
        lomo_tensor *t = &m->tensors[i];
        if (t->ndim == 1)
            for (int64_t j = 0; j < t->numel; j++)
                ((float *)t->data)[j] += (float)(0.1 * lomo__rng_normal(&s));
    }
    return m;
}
static lomo_model *make_model(int tied, uint64_t seed) { return make_model_v(tied, seed, 29); }

static void copy_weights(lomo_model *dst, const lomo_model *src) {
    for (int i = 0; i < src->n_tensors; i++)
        memcpy(dst->tensors[i].data, src->tensors[i].data, sizeof(float) * src->tensors[i].numel);
}

static double max_rel_diff(const lomo_model *a, const lomo_model *b, const char **where) {
    double worst = 0;
    for (int i = 0; i < a->n_tensors; i++) {
        double e = tu_rel_err((const float *)a->tensors[i].data, (const float *)b->tensors[i].data,
                              a->tensors[i].numel);
        if (e > worst) { worst = e; if (where) *where = a->tensors[i].name; }
    }
    return worst;
}

static int bitwise_equal(const lomo_model *a, const lomo_model *b) {
    for (int i = 0; i < a->n_tensors; i++)
        if (memcmp(a->tensors[i].data, b->tensors[i].data, sizeof(float) * a->tensors[i].numel)) return 0;
    return 1;
}

typedef struct store { float **g; int *calls; int order[256]; int n_order; } store;

static int store_hook(lomo_tensor *p, const float *grad, const lomo_update_ctx *ctx, void *user) {
    store *s = (store *)user;
    (void)ctx;
    memcpy(s->g[p->index], grad, sizeof(float) * p->numel);
    s->calls[p->index]++;
    if (s->n_order < 256) s->order[s->n_order++] = p->index;
    return 0;
}

static store *store_new(const lomo_model *m) {
    store *s = (store *)calloc(1, sizeof *s);
    s->g = (float **)calloc(m->n_tensors, sizeof(float *));
    s->calls = (int *)calloc(m->n_tensors, sizeof(int));
    for (int i = 0; i < m->n_tensors; i++) s->g[i] = (float *)calloc(m->tensors[i].numel, sizeof(float));
    return s;
}
static void store_free(store *s, const lomo_model *m) {
    for (int i = 0; i < m->n_tensors; i++) free(s->g[i]);
    free(s->g); free(s->calls); free(s);
}

static void random_batch(int32_t *tok, int32_t *lab, int n, int V) {
    for (int i = 0; i < n; i++) { tok[i] = tu_randint(V); lab[i] = (i % 5 == 2) ? -100 : tok[i]; }
}

#define B 3
#define T 7

static void test_fused_equals_unfused(int tied, int ckpt) {
    const float lr = 0.05f, clip_norm = 0.5f, clip_value = 0.02f, wd = 0.1f;
    lomo_model *fused = make_model(tied, 7), *ref = make_model(tied, 7);
    lomo_train_opts of, ou;
    memset(&of, 0, sizeof of);
    of.batch = B; of.seq_len = T; of.checkpointing = ckpt;
    of.clip_norm = clip_norm; of.clip_value = clip_value; of.weight_decay = wd;
    ou = of;
    ou.clip_norm = 0; ou.clip_value = 0; ou.weight_decay = 0;
    store *s = store_new(ref);
    ou.update = store_hook; ou.update_user = s;
    lomo_trainer *tf = lomo_trainer_new(fused, &of), *tu = lomo_trainer_new(ref, &ou);
    int32_t tok[B * T], lab[B * T];
    int clipped = 0, value_clipped = 0;
    for (int step = 0; step < 4; step++) {
        lomo_step_info fi, ui;
        random_batch(tok, lab, B * T, 29);
        CHECK(lomo_step(tf, tok, lab, lr, &fi) == 0, "fused step: %s", lomo_error());
        CHECK(lomo_step(tu, tok, lab, lr, &ui) == 0, "unfused step: %s", lomo_error());
        /* the rule, applied after all gradients exist (double precision) */
        double sq = 0;
        for (int i = 0; i < ref->n_tensors; i++)
            for (int64_t j = 0; j < ref->tensors[i].numel; j++) sq += (double)s->g[i][j] * s->g[i][j];
        double norm = sqrt(sq), coef = clip_norm / (norm + 1e-6);
        if (coef > 1) coef = 1; else clipped++;
        CHECK(fabs(fi.grad_norm - norm) <= 1e-5 * norm, "grad norm %g vs %g", fi.grad_norm, norm);
        for (int i = 0; i < ref->n_tensors; i++) {
            float *p = (float *)ref->tensors[i].data;
            for (int64_t j = 0; j < ref->tensors[i].numel; j++) {
                double g = s->g[i][j];
                if (fabs(g) > clip_value) { g = g > 0 ? clip_value : -clip_value; value_clipped++; }
                p[j] = (float)(p[j] * (1.0 - (double)lr * wd) - (double)lr * g * coef);
            }
        }
    }
    const char *where = "";
    double e = max_rel_diff(fused, ref, &where);
    printf("fused vs unfused (tied=%d ckpt=%d): 4 steps, norm clip active %d/4, %d values clamped, max rel diff %.2e (%s)\n",
           tied, ckpt, clipped, value_clipped, e, where);
    CHECK(clipped > 0 && value_clipped > 0, "the test must exercise both clips");
    CHECK(e <= 1e-6, "fused != unfused: %g at %s", e, where);
    /* and the weights did move */
    lomo_model *init = make_model(tied, 7);
    CHECK(max_rel_diff(fused, init, NULL) > 1e-3, "weights did not move");
    lomo_model_free(init);
    lomo_trainer_free(tf); lomo_trainer_free(tu);
    store_free(s, ref);
    lomo_model_free(fused); lomo_model_free(ref);
}

/* matmul_fwd calls counted through a copy of the CPU table: with checkpointing
   the backward recomputes every layer's forward but the top one, whose working
   set the forward has just left (a second pass, for clipping, recomputes all) */
static int n_fwd;
static lomo_backend counting_be;
static void counting_fwd(void *ctx, float *y, const float *x, const lomo_tensor *w, const lomo_tensor *b, int N, int K,
                         int O, int accumulate) {
    n_fwd++;
    lomo_cpu_backend()->matmul_fwd(ctx, y, x, w, b, N, K, O, accumulate);
}
static int fwd_calls_per_step(int ckpt, float clip) {
    lomo_load_opts lo;
    memset(&lo, 0, sizeof lo);
    counting_be = *lomo_cpu_backend();
    counting_be.matmul_fwd = counting_fwd;
    counting_be.matmul_fwd_n = NULL;   /* Q/K/V, gate/up as single calls: counted */
    lo.backend = &counting_be;
    lomo_config c;
    lomo_config_default(&c, 16, 40, 3, 4, 2, 29);
    lomo_model *m = lomo_model_new(&c, &lo);
    lomo_model_init_random(m, 5, 0.3f);
    lomo_train_opts o;
    memset(&o, 0, sizeof o);
    o.batch = B; o.seq_len = T; o.checkpointing = ckpt; o.clip_norm = clip;
    lomo_trainer *t = lomo_trainer_new(m, &o);
    int32_t tok[B * T], lab[B * T];
    random_batch(tok, lab, B * T, 29);
    n_fwd = 0;
    CHECK(t && lomo_step(t, tok, lab, 0.01f, NULL) == 0, "counted step: %s", lomo_error());
    int n = n_fwd;
    lomo_trainer_free(t);
    lomo_model_free(m);
    return n;
}
static void test_checkpointing_recompute(void) {
    const int L = 3;
    int plain = fwd_calls_per_step(0, 0), ck = fwd_calls_per_step(1, 0), ck2 = fwd_calls_per_step(1, 1.0f);
    int k = (ck2 - ck) / L;   /* one layer's recompute (Q, K, V, O, gate, up; not down): the second pass does all L */
    printf("matmul_fwd calls per step: %d without checkpointing, %d with, %d with the two-pass clip (%d per layer)\n",
           plain, ck, ck2, k);
    CHECK(k >= 6 && ck2 - ck == L * k, "a second pass should recompute all %d layers: %d vs %d calls", L, ck2, ck);
    CHECK(ck - plain == (L - 1) * k, "checkpointing should recompute %d layers (%d calls), recomputed %d calls", L - 1,
          (L - 1) * k, ck - plain);
}

static void test_checkpointing_bitwise(float clip) {   /* clip 0: one pass; > 0: two (the norm pass first) */
    lomo_model *a = make_model(1, 3), *b = make_model(1, 3);
    lomo_train_opts o;
    memset(&o, 0, sizeof o);
    o.batch = B; o.seq_len = T; o.clip_norm = clip; o.weight_decay = 0.01f;
    lomo_trainer *ta = lomo_trainer_new(a, &o);
    o.checkpointing = 1;
    lomo_trainer *tb = lomo_trainer_new(b, &o);
    int32_t tok[B * T], lab[B * T];
    for (int step = 0; step < 3; step++) {
        random_batch(tok, lab, B * T, 29);
        lomo_step(ta, tok, lab, 0.1f, NULL);
        lomo_step(tb, tok, lab, 0.1f, NULL);
    }
    CHECK(bitwise_equal(a, b), "checkpointing on/off differ (clip %g): %g", clip, max_rel_diff(a, b, NULL));
    lomo_trainer_free(ta); lomo_trainer_free(tb);
    lomo_model_free(a); lomo_model_free(b);
}

/* every tensor once per step, top down, with the two-pass clipping too */
static void test_hook_order(int tied) {
    lomo_model *m = make_model(tied, 5);
    store *s = store_new(m);
    lomo_train_opts o;
    memset(&o, 0, sizeof o);
    o.batch = B; o.seq_len = T; o.clip_norm = 1e-3f; o.update = store_hook; o.update_user = s;
    lomo_trainer *t = lomo_trainer_new(m, &o);
    int32_t tok[B * T], lab[B * T];
    lomo_step_info info;
    random_batch(tok, lab, B * T, 29);
    lomo_step(t, tok, lab, 0.1f, &info);
    int once = 1, ordered = 1, last_layer = m->cfg.n_layers;
    for (int i = 0; i < m->n_tensors; i++) once &= s->calls[i] == 1;
    CHECK(once && s->n_order == m->n_tensors, "tied=%d: %d hook calls for %d tensors", tied, s->n_order, m->n_tensors);
    for (int i = 0; i < s->n_order; i++) {
        int l = m->tensors[s->order[i]].layer;
        if (l >= 0) { ordered &= l <= last_layer; last_layer = l; }
    }
    CHECK(ordered, "layers must be visited from the last to the first");
    CHECK(s->order[0] == m->lm_head->index || (tied && s->order[0] == m->final_norm->index),
          "first tensor: %s", m->tensors[s->order[0]].name);
    CHECK(s->order[s->n_order - 1] == m->embed->index, "last tensor must be the embedding");
    CHECK(info.grad_norm > 0 && info.clip_coef < 1, "norm pass ran: norm %g coef %g", info.grad_norm, info.clip_coef);
    lomo_trainer_free(t);
    store_free(s, m);
    lomo_model_free(m);
}

/* vocab 97: the embedding (97 x 16) is the largest tensor, as in real models */
static void test_memory(int tied) {
    lomo_model *m = make_model_v(tied, 9, 97);
    lomo_train_opts o;
    memset(&o, 0, sizeof o);
    o.batch = 4; o.seq_len = 16; o.checkpointing = 1; o.clip_norm = 1.0f;
    lomo_trainer *t = lomo_trainer_new(m, &o);
    int32_t tok[64], lab[64];
    random_batch(tok, lab, 64, 29);
    lomo_step(t, tok, lab, 0.01f, NULL);
    lomo_memory r = lomo_memory_report(m);
    size_t biggest = 0, formula[LOMO_MEM_NTAGS];
    for (int i = 0; i < m->n_tensors; i++)
        if ((size_t)m->tensors[i].numel > biggest) biggest = (size_t)m->tensors[i].numel;
    size_t total = lomo_memory_formula(&m->cfg, &o, formula);
    printf("memory (tied=%d, B=4, T=16, checkpointing): gradient peak %zu B, largest tensor %zu floats = %zu B\n",
           tied, r.peak[LOMO_MEM_GRADIENTS], biggest, 4 * biggest);
    printf("  total peak %zu B, formula %zu B (%+.2f%%)\n", r.total_peak, total,
           100.0 * ((double)r.total_peak - (double)total) / (double)total);
    lomo_memory_print(stdout, &r);
    CHECK(r.peak[LOMO_MEM_GRADIENTS] == 4 * biggest, "gradient peak %zu != 4 * %zu", r.peak[LOMO_MEM_GRADIENTS], biggest);
    CHECK(fabs((double)r.total_peak - (double)total) <= 0.10 * (double)total, "total peak %zu vs formula %zu",
          r.total_peak, total);
    CHECK(r.peak[LOMO_MEM_PARAMS] == 4 * (size_t)lomo_n_params(m), "parameter bytes");
    CHECK(r.peak[LOMO_MEM_OPTIMIZER] == 0, "LOMO keeps no optimizer state");
    lomo_trainer_free(t);
    r = lomo_memory_report(m);
    CHECK(r.current[LOMO_MEM_ACTIVATIONS] == 0 && r.current[LOMO_MEM_GRADIENTS] == 0 &&
          r.current[LOMO_MEM_WORKSPACE] == 0, "trainer_free returns everything");
    lomo_model_free(m);
}

static void test_skips(void) {
    lomo_model *m = make_model(0, 11), *snap = make_model(0, 11);
    lomo_train_opts o;
    memset(&o, 0, sizeof o);
    o.batch = B; o.seq_len = T;
    lomo_trainer *t = lomo_trainer_new(m, &o);
    int32_t tok[B * T], lab[B * T];
    lomo_step_info info;
    random_batch(tok, lab, B * T, 29);
    ((float *)m->lm_head->data)[5] = NAN;
    copy_weights(snap, m);
    CHECK(lomo_step(t, tok, lab, 0.1f, &info) == 0 && info.skipped, "non-finite loss must skip the step");
    CHECK(bitwise_equal(m, snap), "a skipped step must leave every weight untouched");
    tok[4] = 29;
    CHECK(lomo_step(t, tok, lab, 0.1f, &info) == -1 && strstr(lomo_error(), "tokens[4] = 29"),
          "bad token refused: %s", lomo_error());
    tok[4] = 1; lab[6] = -5;
    CHECK(lomo_step(t, tok, lab, 0.1f, &info) == -1 && strstr(lomo_error(), "labels[6] = -5"),
          "bad label refused: %s", lomo_error());
    lomo_trainer_free(t);
    lomo_model_free(m); lomo_model_free(snap);
}

/* storage in bf16/f16: formula (from the model, so its storage dtype) vs tracked peak */
static void test_memory_dtype(lomo_dtype dt) {
    lomo_config c;
    lomo_load_opts lo = {LOMO_F32, NULL, NULL};
    lomo_train_opts o;
    int32_t tok[64], lab[64];
    size_t formula[LOMO_MEM_NTAGS], total;
    lomo_model *m;
    lomo_trainer *t;
    lomo_memory r;
    lo.dtype = dt;
    lomo_config_default(&c, 16, 40, 3, 4, 2, 97);
    m = lomo_model_new(&c, &lo);
    lomo_model_init_random(m, 5, 0.3f);
    memset(&o, 0, sizeof o);
    o.batch = 4; o.seq_len = 16; o.checkpointing = 1; o.clip_norm = 1.0f;
    t = lomo_trainer_new(m, &o);
    random_batch(tok, lab, 64, 29);
    CHECK(t && lomo_step(t, tok, lab, 0.01f, NULL) == 0, "dtype %d step: %s", (int)dt, lomo_error());
    r = lomo_memory_report(m);
    total = lomo_memory_formula_model(m, &o, formula);
    printf("memory (%s storage, B=4, T=16, checkpointing): total peak %zu B, formula %zu B (%+.2f%%)\n",
           dt == LOMO_BF16 ? "bf16" : "f16", r.total_peak, total,
           100.0 * ((double)r.total_peak - (double)total) / (double)total);
    CHECK(fabs((double)r.total_peak - (double)total) <= 0.10 * (double)total, "dtype %d: total peak %zu vs formula %zu",
          (int)dt, r.total_peak, total);
    CHECK(formula[LOMO_MEM_PARAMS] == 2 * (size_t)lomo_n_params(m) && r.peak[LOMO_MEM_PARAMS] == formula[LOMO_MEM_PARAMS],
          "dtype %d: parameter bytes: formula %zu, tracked %zu, 2 P = %zu", (int)dt, formula[LOMO_MEM_PARAMS],
          r.peak[LOMO_MEM_PARAMS], 2 * (size_t)lomo_n_params(m));
    lomo_trainer_free(t);
    lomo_model_free(m);
}

/* a hook that applies plain SGD and writes a NaN into the n-th tensor it sees */
typedef struct { int calls, poison_at; char name[96]; } poison_state;
static int poison_hook(lomo_tensor *p, const float *g, const lomo_update_ctx *ctx, void *user) {
    poison_state *ps = (poison_state *)user;
    float *w = (float *)p->data;
    for (int64_t i = 0; i < p->numel; i++) w[i] -= ctx->lr * g[i];
    if (ps->calls++ == ps->poison_at) { w[p->numel / 2] = NAN; snprintf(ps->name, sizeof ps->name, "%s", p->name); }
    return 0;
}

static void test_nonfinite_weights(void) {
    lomo_config c;
    lomo_load_opts lo = {LOMO_F16, NULL, NULL};
    lomo_train_opts o;
    int32_t tok[B * T], lab[B * T];
    lomo_step_info info;
    poison_state ps;
    lomo_model *m;
    lomo_trainer *t;
    int found_inf = 0;
    random_batch(tok, lab, B * T, 29);
    /* f16 storage, lr 1e30: any nonzero gradient element rounds the weight to Inf */
    lomo_config_default(&c, 16, 40, 2, 4, 2, 29);
    m = lomo_model_new(&c, &lo);
    lomo_model_init_random(m, 3, 0.3f);
    memset(&o, 0, sizeof o);
    o.batch = B; o.seq_len = T;
    t = lomo_trainer_new(m, &o);
    CHECK(lomo_step(t, tok, lab, 0.01f, &info) == 0 && !info.skipped, "a sane f16 step: %s", lomo_error());
    CHECK(lomo_step(t, tok, lab, 1e30f, &info) == -1 && strstr(lomo_error(), "step 2:") &&
          strstr(lomo_error(), "lm_head.weight") && strstr(lomo_error(), "NaN/Inf"),
          "f16 update to Inf must fail naming step 2 and lm_head.weight: %s", lomo_error());
    lomo_trainer_free(t);
    o.no_finite_check = 1;   /* the same without the check: the step "succeeds" with Inf weights */
    t = lomo_trainer_new(m, &o);
    CHECK(lomo_step(t, tok, lab, 1e30f, &info) == 0, "no_finite_check: %s", lomo_error());
    for (int64_t i = 0; i < m->lm_head->numel; i++)
        found_inf |= !isfinite(lomo_f16_to_f32(((const uint16_t *)m->lm_head->data)[i]));
    CHECK(found_inf, "lr 1e30 on f16 must have produced Inf weights (else this test proves nothing)");
    lomo_trainer_free(t);
    lomo_model_free(m);
    /* a user hook that writes a NaN into the 5th tensor of the step */
    m = make_model(0, 11);
    memset(&o, 0, sizeof o);
    memset(&ps, 0, sizeof ps);
    ps.poison_at = 4;
    o.batch = B; o.seq_len = T; o.update = poison_hook; o.update_user = &ps;
    t = lomo_trainer_new(m, &o);
    CHECK(lomo_step(t, tok, lab, 0.01f, &info) == -1 && strstr(lomo_error(), "step 1:") && ps.name[0] &&
          strstr(lomo_error(), ps.name), "hook wrote a NaN into %s: %s", ps.name, lomo_error());
    CHECK(lomo_trainer_step(t) == 0, "a failed step is not counted");
    lomo_trainer_free(t);
    lomo_model_free(m);
}

/* the CPU backend's all_finite on raw bits, each dtype: Inf and NaN anywhere, and finite extremes */
static void test_all_finite(void) {
    const lomo_backend *be = lomo_cpu_backend();
    float f[1001];
    uint16_t h[1001];
    lomo_tensor p;
    memset(&p, 0, sizeof p);
    p.ndim = 1; p.numel = 1001; p.shape[0] = 1001;
    for (int d = 0; d < 3; d++) {
        p.dtype = (lomo_dtype)d;
        p.data = d == LOMO_F32 ? (void *)f : (void *)h;
        for (int bad = 0; bad < 3; bad++) {   /* none, +-Inf, NaN */
            uint64_t s = 77 + (uint64_t)bad;
            int at = (int)(lomo_rand_u64(&s) % 1001);
            for (int i = 0; i < 1001; i++) {
                float v = i == 0 ? (d == LOMO_F16 ? 65504.0f : 3.0e38f) : (float)(lomo__rng_normal(&s) * 100.0);
                if (d == LOMO_BF16 && i == 0) v = lomo_bf16_to_f32(0x7f7f);   /* the largest finite bf16 */
                if (i == at && bad == 1) v = (i & 1) ? INFINITY : -INFINITY;
                if (i == at && bad == 2) v = NAN;
                f[i] = v;
                h[i] = d == LOMO_BF16 ? lomo_f32_to_bf16(v) : lomo_f32_to_f16(v);
            }
            CHECK(be->all_finite(be->ctx, &p) == (bad == 0), "all_finite dtype %d, %s at %d: got %d", d,
                  bad == 0 ? "nothing" : bad == 1 ? "Inf" : "NaN", at, be->all_finite(be->ctx, &p));
        }
    }
}

/* B x T x heads beyond int indexing: refused before allocating, naming the sizes and the bytes */
static void test_size_limits(void) {
    lomo_model *m = make_model(0, 11);
    lomo_train_opts o;
    lomo_trainer *t;
    lomo_memory r0 = lomo_memory_report(m), r1;
    memset(&o, 0, sizeof o);
    o.batch = 65536; o.seq_len = 65536;
    t = lomo_trainer_new(m, &o);
    CHECK(!t && strstr(lomo_error(), "65536 x 65536 = 4294967296 tokens") && strstr(lomo_error(), "bytes"),
          "B*T = 2^32: %s", lomo_error());
    o.batch = 65537;
    t = lomo_trainer_new(m, &o);
    CHECK(!t && strstr(lomo_error(), "65537 x 65536"), "B*T > 2^32: %s", lomo_error());
    o.batch = 16384; o.seq_len = 65536;   /* 2^30 tokens, x 4 heads overflows the attention index */
    t = lomo_trainer_new(m, &o);
    CHECK(!t && strstr(lomo_error(), "x 4 heads"), "B*T*heads > INT_MAX: %s", lomo_error());
    o.batch = 512; o.seq_len = 1; o.micro_batches = 1 << 23;   /* 2^32 tokens per step */
    t = lomo_trainer_new(m, &o);
    CHECK(!t && strstr(lomo_error(), "micro-batches"), "B*T*M > INT_MAX: %s", lomo_error());
    r1 = lomo_memory_report(m);
    CHECK(r1.total_peak == r0.total_peak, "nothing was allocated for a refused request (%zu -> %zu)", r0.total_peak,
          r1.total_peak);
    lomo_trainer_free(t);
    lomo_model_free(m);
}

/* a learnable task: predict the next token of a fixed cyclic sequence */
static void test_learns(void) {
    lomo_model *m = make_model(1, 13);
    lomo_train_opts o;
    memset(&o, 0, sizeof o);
    o.batch = 4; o.seq_len = 12; o.clip_norm = 1.0f;
    lomo_trainer *t = lomo_trainer_new(m, &o);
    int32_t tok[48];
    lomo_step_info first, info;
    memset(&first, 0, sizeof first);
    for (int step = 0; step < 150; step++) {
        for (int b = 0; b < 4; b++) {
            int start = tu_randint(29);
            for (int i = 0; i < 12; i++) tok[b * 12 + i] = (start + 3 * i) % 29;
        }
        lomo_step(t, tok, NULL, 0.3f, &info);
        if (step == 0) first = info;
    }
    printf("learning: loss %.3f -> %.3f after 150 steps\n", first.loss, info.loss);
    CHECK(info.loss < 0.5f * first.loss, "loss did not go down: %g -> %g", first.loss, info.loss);
    lomo_trainer_free(t);
    lomo_model_free(m);
}

int main(void) {
    printf("backend: %s\n", lomo_cpu_backend()->name);
    test_fused_equals_unfused(0, 0);
    test_fused_equals_unfused(1, 0);
    test_fused_equals_unfused(1, 1);
    test_checkpointing_bitwise(0.0f);
    test_checkpointing_bitwise(1.0f);
    test_checkpointing_recompute();
    test_hook_order(0);
    test_hook_order(1);
    test_memory(0);
    test_memory(1);
    test_skips();
    test_learns();
    test_memory_dtype(LOMO_BF16);
    test_memory_dtype(LOMO_F16);
    test_nonfinite_weights();
    test_all_finite();
    test_size_limits();
    return tu_done("test_train");
}
