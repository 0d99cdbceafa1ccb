/* test_fused.c - the LOMO rule fused with a linear weight's gradient (backend op
   linear_update), on the CPU (installed in the CPU table with BLAS, where fp32
   weights are updated by the dW GEMM itself; the tests use copies of the table
   with and without it; the CUDA one is compared with its own hook path in test_cuda):
   - the op against matmul_bwd_w + update on the same inputs, fp32 / bf16 / f16,
     round-to-nearest and stochastic, gradient blocks of 5 rows (37 rows: 7 x 5 + 2)
     and of the whole tensor: the plain-loops build is bitwise equal (the same
     sums in the same order, the same rounding hash); with BLAS fp32 to 1e-6
     relative, 16-bit at most 1 ulp apart on at most 2% of the elements;
   - whole steps on the table with the op against a table without it: weights
     and losses bitwise (loops) or 1e-5 relative (BLAS), where the driver may fuse
     (built-in LOMO, no clip_value: unclipped, global norm after pass one, bf16 SR,
     loss scaling) and where it must not (a hook, clip_value, per-tensor clip at
     a token count where the Gram norm is not cheap, micro-batches, AdaLomo): the
     op's call count says which path ran. */
#define LOMO_IMPLEMENTATION
#include "../lomo.h"
#include "test_util.h"

static uint16_t to16(lomo_dtype dt, float x) { return dt == LOMO_BF16 ? lomo_f32_to_bf16(x) : lomo_f32_to_f16(x); }

static void op_case(lomo_dtype dt, int sr, int block_rows) {
    const int N = 13, K = 24, O = 37;
    size_t n = (size_t)O * K, es = dt == LOMO_F32 ? 4 : 2;
    float *w32 = (float *)malloc(4 * n), *dy = (float *)malloc(4 * (size_t)N * O), *x = (float *)malloc(4 * (size_t)N * K);
    float *g = (float *)malloc(4 * n), *gbuf = (float *)malloc(4 * ((size_t)block_rows * K + 3));
    void *wa = malloc(es * n), *wb = malloc(es * n);
    tu_fill(w32, n, 0.5); tu_fill(dy, (size_t)N * O, 1.0); tu_fill(x, (size_t)N * K, 1.0);
    for (size_t i = 0; i < n; i++) {
        if (dt == LOMO_F32) ((float *)wa)[i] = w32[i];
        else ((uint16_t *)wa)[i] = to16(dt, w32[i]);
    }
    memcpy(wb, wa, es * n);
    lomo_tensor ta, tb;
    memset(&ta, 0, sizeof ta);
    snprintf(ta.name, sizeof ta.name, "w");
    ta.dtype = dt; ta.ndim = 2; ta.shape[0] = O; ta.shape[1] = K; ta.numel = ta.shard_len = (int64_t)n; ta.data = wa;
    tb = ta; tb.data = wb;
    lomo_update_args a;
    memset(&a, 0, sizeof a);
    a.rule = LOMO_OPT_LOMO; a.lr = 0.03f; a.weight_decay = 0.1f; a.inv_loss_scale = 0.25f; a.clip_coef = 0.7f;
    a.stochastic = sr; a.seed = 99; a.stream = 12345; a.shard_off = 0; a.param_sumsq = -1;
    const lomo_backend *be = lomo_cpu_backend();
    be->matmul_bwd_w(be->ctx, g, dy, x, N, K, O, 0);   /* the hook path: the whole gradient, then the rule */
    be->update(be->ctx, &tb, g, NULL, NULL, &a);
    lomo__cpu_linear_update(be->ctx, &ta, dy, x, N, K, O, gbuf, (size_t)block_rows * K + 3, &a);
    int differ = 0, far = 0;
    double err = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double va = lomo__elem(&ta, i), vb = lomo__elem(&tb, i);
        if (memcmp((char *)wa + i * es, (char *)wb + i * es, es)) differ++;
        err = fmax(err, fabs(va - vb)); den = fmax(den, fabs(vb));
        if (dt != LOMO_F32) {   /* neighbours in the 16-bit grid: at most one step apart */
            uint16_t ua = ((uint16_t *)wa)[i], ub = ((uint16_t *)wb)[i];
            if (abs((int)ua - (int)ub) > 1) far++;
        }
    }
    double moved = 0;
    for (size_t i = 0; i < n; i++) moved = fmax(moved, fabs(lomo__elem(&tb, i) - w32[i]));
    printf("  linear_update %s%s, blocks of %d rows: %d of %zu elements differ from the hook path, max rel %.1e\n",
           dt == LOMO_F32 ? "f32" : dt == LOMO_BF16 ? "bf16" : "f16", sr ? " SR" : "", block_rows, differ, n,
           den > 0 ? err / den : err);
    CHECK(moved > 1e-3, "the update moved nothing");
#ifndef LOMO_CBLAS
    CHECK(differ == 0, "loops build: %d elements differ (expected bitwise equal)", differ);
#else
    if (dt == LOMO_F32) CHECK(err <= 1e-6 * den, "f32: rel %g", err / den);
    else CHECK(far == 0 && differ <= (int)(0.02 * n) + 1, "16-bit: %d differ, %d by more than one step", differ, far);
#endif
    CHECK(lomo_cpu_backend()->check(lomo_cpu_backend()->ctx) == 0, "backend error: %s", lomo_error());
    free(w32); free(dy); free(x); free(g); free(gbuf); free(wa); free(wb);
}

/* a copy of the CPU table with the op installed, counting its calls; and one
   without it (the driver forms dW and calls the rule: the hook path) */
static lomo_backend fused_be, plain_be;
static int fused_calls;
static void counted_linear_update(void *ctx, lomo_tensor *w, const float *dy, const float *x, int N, int K, int O,
                                  float *gbuf, size_t gbuf_floats, const lomo_update_args *a) {
    fused_calls++;
    lomo__cpu_linear_update(ctx, w, dy, x, N, K, O, gbuf, gbuf_floats, a);
}

static int sgd_hook(lomo_tensor *p, const float *grad, const lomo_update_ctx *ctx, void *user) {
    (void)user;
    for (int64_t j = 0; j < p->numel; j++) ((float *)p->data)[j] -= ctx->lr * ctx->grad_scale * grad[j];
    return 0;
}

static lomo_model *make(const lomo_backend *be, lomo_dtype dt, int tied) {
    lomo_config c;
    lomo_load_opts lo = {LOMO_F32, NULL, NULL};
    lo.dtype = dt; lo.backend = be;
    lomo_config_default(&c, 16, 40, 2, 4, 2, 53);
    c.tie_embeddings = tied; c.qkv_bias = 1;
    lomo_model *m = lomo_model_new(&c, &lo);
    lomo_model_init_random(m, 31, 0.4f);
    return m;
}

static void step_case(const char *name, lomo_dtype dt, int tied, lomo_train_opts o, int expect_fused) {
    lomo_model *ma = make(&fused_be, dt, tied), *mb = make(&plain_be, dt, tied);
    int n = o.batch * o.seq_len * (o.micro_batches > 1 ? o.micro_batches : 1);
    int32_t *tok = (int32_t *)malloc(4 * n);
    lomo_trainer *ta = lomo_trainer_new(ma, &o), *tb = lomo_trainer_new(mb, &o);
    CHECK(ta && tb, "%s: trainers: %s", name, lomo_error());
    if (!ta || !tb) return;
    fused_calls = 0;
    double lerr = 0;
    for (int s = 0; s < 3; s++) {
        lomo_step_info ia, ib;
        for (int i = 0; i < n; i++) tok[i] = tu_randint(53);
        CHECK(lomo_step(ta, tok, NULL, 0.05f, &ia) == 0 && lomo_step(tb, tok, NULL, 0.05f, &ib) == 0, "%s: step: %s", name,
              lomo_error());
        lerr = fmax(lerr, fabs(ia.loss - ib.loss) / fabs(ib.loss));
    }
    double worst = 0;
    int same = 1;
    for (int i = 0; i < ma->n_tensors; i++) {
        size_t k = (size_t)ma->tensors[i].numel, bytes = lomo__tensor_bytes(&ma->tensors[i]);
        double e = 0, d = 0;
        if (memcmp(ma->tensors[i].data, mb->tensors[i].data, bytes)) same = 0;
        for (size_t j = 0; j < k; j++) {
            e = fmax(e, fabs(lomo__elem(&ma->tensors[i], j) - lomo__elem(&mb->tensors[i], j)));
            d = fmax(d, fabs(lomo__elem(&mb->tensors[i], j)));
        }
        worst = fmax(worst, d > 0 ? e / d : e);
    }
    printf("  %-44s fused calls %3d, weights %s (max rel %.1e), losses rel %.1e\n", name, fused_calls,
           same ? "bitwise equal" : "differ", worst, lerr);
    CHECK(expect_fused ? fused_calls > 0 : fused_calls == 0, "%s: fused path %s (%d calls)", name,
          expect_fused ? "not taken" : "taken where it must not be", fused_calls);
#ifndef LOMO_CBLAS
    CHECK(same && lerr == 0, "%s: loops build must be bitwise equal (rel %g, loss %g)", name, worst, lerr);
#else
    CHECK(worst <= (dt == LOMO_F32 ? 1e-5 : 1e-2) && lerr <= 1e-6, "%s: weights rel %g, loss %g", name, worst, lerr);
#endif
    lomo_trainer_free(ta); lomo_trainer_free(tb);
    lomo_model_free(ma); lomo_model_free(mb);
    free(tok);
}

int main(void) {
    printf("linear_update against matmul_bwd_w + update:\n");
    op_case(LOMO_F32, 0, 5);
    op_case(LOMO_F32, 0, 37);
    op_case(LOMO_BF16, 0, 5);
    op_case(LOMO_BF16, 1, 5);
    op_case(LOMO_BF16, 1, 37);
    op_case(LOMO_F16, 1, 5);
    fused_be = *lomo_cpu_backend();
    fused_be.linear_update = counted_linear_update;
    plain_be = *lomo_cpu_backend();
    plain_be.linear_update = NULL;
    printf("whole steps, fused table vs the table without the op:\n");
    lomo_train_opts o;
    memset(&o, 0, sizeof o);
    o.batch = 3; o.seq_len = 7; o.weight_decay = 0.01f;
    step_case("unclipped, untied", LOMO_F32, 0, o, 1);
    step_case("unclipped, tied, checkpointing", LOMO_F32, 1, (o.checkpointing = 1, o), 1);
    o.clip_norm = 0.5f;
    step_case("global norm clip (fused in pass two)", LOMO_F32, 0, o, 1);
    o.stochastic_rounding = 1; o.seed = 3;
    step_case("bf16 SR, global norm clip", LOMO_BF16, 0, o, 1);
    o.stochastic_rounding = 0;
    o.loss_scaling = 1;   /* 0.7: off by default on the CPU */
    step_case("f16, loss scaling", LOMO_F16, 1, o, 1);
    o.loss_scaling = 0;
    o.clip_mode = LOMO_CLIP_GLOBAL_GRAM;
    step_case("Gram norm clip", LOMO_F32, 0, o, 1);
    o.clip_mode = LOMO_CLIP_TENSOR;
    step_case("per-tensor clip, 5N(O+K) > OK: not fused", LOMO_F32, 0, o, 0);   /* fused below that: test_passcache */
    o.clip_mode = LOMO_CLIP_GLOBAL; o.clip_value = 0.01f;
    step_case("clip_value: not fused", LOMO_F32, 0, o, 0);
    o.clip_value = 0; o.micro_batches = 2;
    step_case("micro-batches: not fused", LOMO_F32, 0, o, 0);
    o.micro_batches = 0; o.optimizer = LOMO_OPT_ADALOMO;
    step_case("AdaLomo: not fused", LOMO_F32, 0, o, 0);
    o.optimizer = LOMO_OPT_LOMO; o.update = sgd_hook;
    step_case("a user hook: not fused", LOMO_F32, 0, o, 0);
    return tu_done("test_fused");
}
