/* test_passcache.c - two-pass steps without recomputing what pass one found
   (0.8), and per-tensor clipping fused with the dW GEMM.
   1. The pass cache (lomo_train_opts.pass_cache): the norm pass keeps the
      residual stream's gradient after each norm, and the update pass restores
      it instead of running the LM head's dX and each layer's gate/up and
      q/k/v dX. Three steps with the cache equal three steps without it,
      weights and losses bit for bit (both passes run the same kernels on the
      same inputs, so the restored numbers are the ones the update pass would
      compute), over every family (the transformers fixtures: Llama GQA,
      tied, biases; Qwen3's q/k norms; Gemma 2 and 3's post-norms and
      soft-caps; Phi-3's fused projections), global and Gram clipping, loss
      scaling alone (f16), bf16 with stochastic rounding, the head in chunks
      (tied and untied), checkpointing and M = 2 micro-batches.
   2. The skipped matmuls, counted through a copy of the CPU table:
      matmul_bwd_x runs 2 (7L + h) times a step without the cache (h: the
      head's dX calls, 1, or one per chunk) and (7L + h) + 2L with it (only
      w_down's and o_proj's dX remain in the update pass).
   3. Memory: the cache is M (2L + 1) (N + 1) C floats of workspace, exactly,
      in the tracked report and in lomo_memory_formula_model; the default
      (0) keeps it only for steps with a norm pass and without checkpointing;
      1 keeps it with checkpointing, -1 never.
   4. Per-tensor clipping (LOMO_CLIP_TENSOR) with linear_update: where the Gram
      products cost at most a fifth of the dW GEMM (5 N (O + K) <= O K) the
      tensor's norm comes from them and the rule runs in the GEMM (counted),
      elsewhere the gradient is formed as before (not counted); the weights
      equal the table without linear_update to fp32 1e-6 relative (the norm's
      last bits differ; 1e-5 with BLAS, whose GEMM rounds the update once),
      bf16 / f16 to one step of their grid on at most 2% of the elements; the
      weights moved (clipped, not untouched). */
#define LOMO_IMPLEMENTATION
#include "../lomo.h"
#include "test_util.h"

static lomo_backend count_be, fused_be, plain_be;
static long n_bwd_x, n_fused;
static void counted_bwd_x(void *ctx, float *dx, const float *dy, const lomo_tensor *w, int N, int K, int O, int acc) {
    n_bwd_x++;
    lomo_cpu_backend()->matmul_bwd_x(ctx, dx, dy, w, N, K, O, acc);
}
static void counted_linear_update(void *ctx, lomo_tensor *w, const float *dy, const float *x, int N, int K, int O,
                                  float *gbuf, size_t gbuf_floats, const lomo_update_args *a) {
    n_fused++;
    lomo__cpu_linear_update(ctx, w, dy, x, N, K, O, gbuf, gbuf_floats, a);
}

/* norms and biases as trained models have them, not 1 and 0 */
static void perturb_vectors(lomo_model *m, uint64_t seed) {
    for (int i = 0; i < m->n_tensors; i++) {
        lomo_tensor *p = &m->tensors[i];
        if (p->ndim != 1) continue;
        for (int64_t j = 0; j < p->numel; j++) {
            double v = lomo__elem(p, (size_t)j) + 0.2 * lomo__rng_normal(&seed);
            if (p->dtype == LOMO_F32) ((float *)p->data)[j] = (float)v;
            else if (p->dtype == LOMO_BF16) ((uint16_t *)p->data)[j] = lomo_f32_to_bf16((float)v);
            else ((uint16_t *)p->data)[j] = lomo_f32_to_f16((float)v);
        }
    }
}

static lomo_model *load(const char *fixture, lomo_dtype dt) {
    char dir[128];
    lomo_load_opts lo;
    memset(&lo, 0, sizeof lo);
    lo.dtype = dt; lo.backend = &count_be;
    snprintf(dir, sizeof dir, "tests/ref/%s", fixture);
    lomo_model *m = lomo_load(dir, &lo);
    CHECK(m != NULL, "%s: %s", dir, lomo_error());
    if (m) perturb_vectors(m, 7);
    return m;
}

/* the head's matmul_bwd_x calls in one backward pass without the cache */
static int head_dx_calls(const lomo_trainer *t) { return (t->N + t->hc - 1) / t->hc; }

/* 1 and 2: the same steps with and without the cache */
static void same_steps(const char *fixture, lomo_dtype dt, lomo_train_opts o, const char *what) {
    lomo_model *a = load(fixture, dt), *b = load(fixture, dt);
    if (!a || !b) { lomo_model_free(a); lomo_model_free(b); return; }
    int M = o.micro_batches > 1 ? o.micro_batches : 1, n = o.batch * o.seq_len * M, V = a->cfg.vocab_size;
    int L = a->cfg.n_layers;
    int32_t *tok = (int32_t *)malloc(sizeof(int32_t) * n), *lab = (int32_t *)malloc(sizeof(int32_t) * n);
    o.pass_cache = 1;
    lomo_trainer *ta = lomo_trainer_new(a, &o);
    o.pass_cache = -1;
    lomo_trainer *tb = lomo_trainer_new(b, &o);
    CHECK(ta && tb, "%s %s: trainers: %s", fixture, what, lomo_error());
    if (!ta || !tb) goto done;
    CHECK(ta->pc != NULL && tb->pc == NULL, "%s %s: pass_cache 1 / -1 did not decide the cache", fixture, what);
    long calls_a = 0, calls_b = 0;
    int same_loss = 1, steps = 0;
    for (int s = 0; s < 3; s++) {
        lomo_step_info ia, ib;
        for (int i = 0; i < n; i++) { tok[i] = tu_randint(V); lab[i] = i % 7 == 3 ? -100 : tok[i]; }
        n_bwd_x = 0;
        int ra = lomo_step(ta, tok, lab, 0.02f, &ia);
        calls_a += n_bwd_x; n_bwd_x = 0;
        int rb = lomo_step(tb, tok, lab, 0.02f, &ib);
        calls_b += n_bwd_x;
        CHECK(ra == 0 && rb == 0, "%s %s: step %d: %s", fixture, what, s, lomo_error());
        same_loss &= !memcmp(&ia, &ib, sizeof ia);   /* loss, norm, coefficient, scale, skipped: all of it */
        steps += !ib.skipped;
    }
    int same = 1;
    for (int i = 0; i < a->n_tensors; i++)
        if (memcmp(a->tensors[i].data, b->tensors[i].data, lomo__tensor_bytes(&a->tensors[i]))) {
            if (same) printf("  first difference in %s\n", a->tensors[i].name);
            same = 0;
        }
    /* per backward pass: 7 dX a layer (both fused projections too) and the head's; the update pass keeps 2 a layer */
    long pass = (long)M * (7 * L + head_dx_calls(tb)), want_b = 3 * 2 * pass, want_a = 3 * (pass + (long)M * 2 * L);
    printf("  %-9s %-44s weights %s, step info %s; dX matmuls %ld with the cache, %ld without\n", fixture, what,
           same ? "bitwise equal" : "DIFFER", same_loss ? "equal" : "DIFFERS", calls_a, calls_b);
    CHECK(same && same_loss, "%s %s: the cache changed the steps", fixture, what);
    CHECK(steps == 3, "%s %s: %d of 3 steps updated (the comparison needs updates)", fixture, what, steps);
    CHECK(calls_b == want_b && calls_a == want_a, "%s %s: dX matmuls %ld / %ld, expected %ld / %ld", fixture, what,
          calls_a, calls_b, want_a, want_b);
done:
    lomo_trainer_free(ta); lomo_trainer_free(tb);
    lomo_model_free(a); lomo_model_free(b);
    free(tok); free(lab);
}

/* 3: the memory the cache takes, and when the default takes it */
static void memory_case(lomo_model *m, lomo_train_opts o, int want, const char *what) {
    lomo_train_opts off = o;
    size_t f_on[LOMO_MEM_NTAGS], f_off[LOMO_MEM_NTAGS];
    off.pass_cache = -1;
    lomo_memory base = lomo_memory_report(m);
    lomo_trainer *t = lomo_trainer_new(m, &o);
    CHECK(t != NULL, "%s: %s", what, lomo_error());
    if (!t) return;
    lomo_memory with = lomo_memory_report(m);
    lomo_trainer_free(t);
    t = lomo_trainer_new(m, &off);
    lomo_memory without = lomo_memory_report(m);
    lomo_trainer_free(t);
    int M = o.micro_batches > 1 ? o.micro_batches : 1;
    size_t C = (size_t)m->cfg.dim, N = (size_t)o.batch * o.seq_len, L = (size_t)m->cfg.n_layers;
    size_t bytes = want ? 4 * (size_t)M * (2 * L + 1) * (N + 1) * C : 0;
    size_t got = (with.current[LOMO_MEM_WORKSPACE] - base.current[LOMO_MEM_WORKSPACE]) -
                 (without.current[LOMO_MEM_WORKSPACE] - base.current[LOMO_MEM_WORKSPACE]);
    lomo_memory_formula_model(m, &o, f_on);
    lomo_memory_formula_model(m, &off, f_off);
    printf("  %-56s cache %s: %zu bytes tracked, %zu in the formula\n", what, want ? "on " : "off", got,
           f_on[LOMO_MEM_WORKSPACE] - f_off[LOMO_MEM_WORKSPACE]);
    CHECK(got == bytes && f_on[LOMO_MEM_WORKSPACE] - f_off[LOMO_MEM_WORKSPACE] == bytes,
          "%s: cache %zu bytes tracked, %zu in the formula, expected %zu", what, got,
          f_on[LOMO_MEM_WORKSPACE] - f_off[LOMO_MEM_WORKSPACE], bytes);
    for (int k = 0; k < LOMO_MEM_NTAGS; k++)
        CHECK(k == LOMO_MEM_WORKSPACE || f_on[k] == f_off[k], "%s: the cache changed the formula's %s", what,
              lomo_mem_tag_name(k));
}

static void memory_cases(void) {
    lomo_config c;
    lomo_config_default(&c, 24, 56, 3, 4, 2, 37);
    lomo_model *m = lomo_model_new(&c, NULL);
    lomo_train_opts o;
    memset(&o, 0, sizeof o);
    o.batch = 2; o.seq_len = 5;
    printf("memory:\n");
    memory_case(m, o, 0, "unclipped");
    o.clip_norm = 1.0f;
    memory_case(m, o, 1, "global norm (default: on without checkpointing)");
    o.clip_mode = LOMO_CLIP_GLOBAL_GRAM;
    memory_case(m, o, 1, "Gram norm pass");
    o.clip_mode = LOMO_CLIP_TENSOR;
    memory_case(m, o, 0, "per-tensor clipping (no norm pass)");
    o.clip_mode = LOMO_CLIP_GLOBAL; o.checkpointing = 1;
    memory_case(m, o, 0, "global norm, checkpointing (default: off)");
    o.pass_cache = 1;
    memory_case(m, o, 1, "global norm, checkpointing, pass_cache 1");
    o.micro_batches = 3;
    memory_case(m, o, 1, "global norm, 3 micro-batches, pass_cache 1");
    o.micro_batches = 0; o.checkpointing = 0; o.pass_cache = -1;
    memory_case(m, o, 0, "global norm, pass_cache -1");
    o.pass_cache = 0; o.clip_norm = 0; o.loss_scaling = 1;
    memory_case(m, o, 1, "loss scaling alone (a norm pass)");
    lomo_model_free(m);
}

/* 4: per-tensor clipping in the dW GEMM where the Gram products are cheap */
static lomo_model *make(const lomo_backend *be, lomo_dtype dt) {
    lomo_config c;
    lomo_load_opts lo;
    memset(&lo, 0, sizeof lo);
    lo.dtype = dt; lo.backend = be;
    lomo_config_default(&c, 64, 176, 2, 4, 2, 97);   /* head_dim 16: q 64 wide, k/v 32 */
    c.qkv_bias = 1;
    lomo_model *m = lomo_model_new(&c, &lo);
    lomo_model_init_random(m, 5, 0.3f);
    perturb_vectors(m, 11);
    return m;
}

static void tensor_clip_case(lomo_dtype dt, int batch, int seq, int loss_scaling, int expect_fused) {
    lomo_model *a = make(&fused_be, dt), *b = make(&plain_be, dt), *w0 = make(&plain_be, dt);
    lomo_train_opts o;
    memset(&o, 0, sizeof o);
    o.batch = batch; o.seq_len = seq; o.clip_norm = 0.05f; o.clip_mode = LOMO_CLIP_TENSOR; o.weight_decay = 0.01f;
    o.loss_scaling = loss_scaling;
    int n = batch * seq;
    int32_t *tok = (int32_t *)malloc(sizeof(int32_t) * n);
    lomo_trainer *ta = lomo_trainer_new(a, &o), *tb = lomo_trainer_new(b, &o);
    CHECK(ta && tb, "per-tensor: trainers: %s", lomo_error());
    n_fused = 0;
    for (int s = 0; s < 3 && ta && tb; s++) {
        lomo_step_info ia, ib;
        for (int i = 0; i < n; i++) tok[i] = tu_randint(97);
        CHECK(lomo_step(ta, tok, NULL, 0.05f, &ia) == 0 && lomo_step(tb, tok, NULL, 0.05f, &ib) == 0, "step: %s",
              lomo_error());
        CHECK(!ia.skipped && !ib.skipped, "per-tensor: a step was skipped");
    }
    double worst = 0, moved = 0;
    int differ = 0, far = 0;
    size_t total = 0;
    const char *where = "";
    for (int i = 0; i < a->n_tensors; i++) {
        const lomo_tensor *p = &a->tensors[i], *q = &b->tensors[i], *r = &w0->tensors[i];
        double e = 0, d = 0, mv = 0;
        for (size_t j = 0; j < (size_t)p->numel; j++) {
            double va = lomo__elem(p, j), vb = lomo__elem(q, j);
            e = fmax(e, fabs(va - vb)); d = fmax(d, fabs(vb)); mv = fmax(mv, fabs(vb - lomo__elem(r, j)));
            if (dt != LOMO_F32) {
                int ua = ((uint16_t *)p->data)[j], ub = ((uint16_t *)q->data)[j];
                differ += ua != ub; far += abs(ua - ub) > 1;
            }
        }
        total += (size_t)p->numel;
        if (d > 0 && e / d > worst) { worst = e / d; where = p->name; }
        moved = fmax(moved, d > 0 ? mv / d : mv);
    }
    printf("  %s N = %3d%s: linear_update calls %3ld; against the formed gradients: max rel %.1e (%s)%s, moved %.1e\n",
           dt == LOMO_F32 ? "f32 " : dt == LOMO_BF16 ? "bf16" : "f16 ", n, loss_scaling > 0 ? ", loss scaling" : "",
           n_fused, worst, where, dt == LOMO_F32 ? "" : differ ? ", some elements one step apart" : ", bitwise", moved);
    CHECK(expect_fused ? n_fused == 3 * 7 * 2 + 3 : n_fused == 0,   /* 7 matrices a layer and lm_head, 3 steps */
          "per-tensor N = %d: linear_update ran %ld times", n, n_fused);
#ifdef LOMO_CBLAS
    double tol = 1e-5;   /* the fp32 rule inside the GEMM rounds once, the hook path twice (as in test_fused) */
#else
    double tol = 1e-6;   /* the same sums: only the coefficient's last bits differ */
#endif
    if (dt == LOMO_F32) CHECK(worst <= tol, "per-tensor f32 N = %d: rel %g in %s", n, worst, where);
    else CHECK(far == 0 && differ <= (int)(0.02 * (double)total) + 1, "per-tensor 16-bit: %d of %zu differ, %d by more than a step",
               differ, total, far);
    CHECK(moved > 1e-4, "per-tensor N = %d: the weights did not move", n);
    lomo_trainer_free(ta); lomo_trainer_free(tb);
    lomo_model_free(a); lomo_model_free(b); lomo_model_free(w0);
    free(tok);
}

int main(void) {
    count_be = *lomo_cpu_backend();
    count_be.matmul_bwd_x = counted_bwd_x;
    lomo_train_opts o;
    memset(&o, 0, sizeof o);
    o.batch = 2; o.seq_len = 6; o.clip_norm = 0.3f; o.weight_decay = 0.01f; o.head_chunk = -1;
    printf("the same steps with and without the pass cache:\n");
    same_steps("llama_gqa", LOMO_F32, o, "global norm");
    same_steps("llama_bias", LOMO_F32, o, "global norm");
    same_steps("llama_tied", LOMO_F32, o, "global norm, tied");
    same_steps("qwen3_bias", LOMO_F32, o, "global norm, q/k norms");
    same_steps("gemma2", LOMO_F32, o, "global norm");
    same_steps("gemma3", LOMO_F32, o, "global norm");
    same_steps("phi3", LOMO_F32, o, "global norm, fused projections");
    o.clip_mode = LOMO_CLIP_GLOBAL_GRAM;
    same_steps("llama_gqa", LOMO_F32, o, "Gram norm pass");
    same_steps("phi3_partial", LOMO_F32, o, "Gram norm pass");
    o.clip_mode = LOMO_CLIP_GLOBAL; o.head_chunk = 5;
    same_steps("llama_gqa", LOMO_F32, o, "head in chunks of 5, untied");
    same_steps("llama_tied", LOMO_F32, o, "head in chunks of 5, tied");
    o.head_chunk = -1; o.checkpointing = 1;
    same_steps("qwen3_tied", LOMO_F32, o, "checkpointing");
    o.micro_batches = 2;
    same_steps("llama_tied", LOMO_F32, o, "2 micro-batches, tied");
    same_steps("gemma3", LOMO_F32, o, "2 micro-batches");
    o.micro_batches = 0; o.checkpointing = 0; o.stochastic_rounding = 1; o.seed = 9;
    same_steps("llama_gqa", LOMO_BF16, o, "bf16, stochastic rounding");
    o.stochastic_rounding = 0; o.clip_norm = 0; o.loss_scaling = 1;
    same_steps("mistral", LOMO_F16, o, "f16, loss scaling, unclipped");
    memory_cases();
    fused_be = *lomo_cpu_backend();
    fused_be.linear_update = counted_linear_update;
    plain_be = *lomo_cpu_backend();
    plain_be.linear_update = NULL;
    printf("per-tensor clipping, the norm from the Gram matrices and the rule in the dW GEMM:\n");
    tensor_clip_case(LOMO_F32, 1, 4, 0, 1);     /* N = 4: 5 N (O + K) <= O K for every matrix */
    tensor_clip_case(LOMO_F32, 4, 16, 0, 0);    /* N = 64: for none, the gradient is formed */
    tensor_clip_case(LOMO_BF16, 1, 4, 0, 1);
    tensor_clip_case(LOMO_F16, 1, 4, 1, 1);
    return tu_done("test_passcache");
}
