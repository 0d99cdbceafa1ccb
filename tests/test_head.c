/* test_head.c - the LM head and cross-entropy in chunks of tokens
   (lomo_train_opts.head_chunk), on the CPU backend:
   - every tensor's gradient, as the hook sees it (scaled by grad_scale), and
     the weights after 3 steps equal those of the whole-logits head, for
     untied and tied embeddings, 1 and 2 micro-batches, no clipping / global
     norm (two passes) / Gram / per-tensor clipping, checkpointing on and off,
     soft-capped final logits, chunks that divide N and chunks that do not
     (a last chunk of one row). Tolerances: fp32 storage, relative per tensor
     1e-5 (the chunks' lm_head / tied gradients are summed in another order
     under BLAS; the loops backend sums them in the same order); the loss and
     loss_sum to 1e-6 relative; bf16 storage with stochastic rounding (same
     hash, same inputs), 1e-2 relative (one bf16 rounding step, 2^-8);
   - the hook sees each tensor exactly once per update pass, and the tied
     embedding's gradient once, summed;
   - memory: the tracked activation peak shrinks by exactly 4 (N - R) V bytes
     and lomo_memory_formula by the same; total peak within 10% of it;
   - the default chunk: whole N while 4 N V <= LOMO_HEAD_CHUNK_BYTES, else
     the most rows under it, rounded to 64 (worked: V 32000, 8 x 512 -> 1024);
   - lomo_logits is NULL with an error naming head_chunk while chunked, and
     the logits with head_chunk = -1. */
#define LOMO_IMPLEMENTATION
#include "../lomo.h"
#include "test_util.h"

#define B 3
#define T 7
#define V 53

static lomo_model *make_model(int tied, float softcap, lomo_dtype dt) {
    lomo_config c;
    lomo_load_opts lo = {LOMO_F32, NULL, NULL};
    lo.dtype = dt;
    lomo_config_default(&c, 16, 40, 2, 4, 2, V);
    c.tie_embeddings = tied;
    c.final_softcap = softcap;
    lomo_model *m = lomo_model_new(&c, &lo);
    lomo_model_init_random(m, 77, 0.4f);
    return m;
}

typedef struct { float **g; int *calls; } store;

/* stores g * grad_scale, then applies SGD (so the steps move the weights) */
static int store_sgd(lomo_tensor *p, const float *grad, const lomo_update_ctx *ctx, void *user) {
    store *s = (store *)user;
    float *w = (float *)p->data;
    for (int64_t j = 0; j < p->numel; j++) {
        s->g[p->index][j] = grad[j] * ctx->grad_scale;
        w[j] -= ctx->lr * s->g[p->index][j];
    }
    s->calls[p->index]++;
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

static void random_batch(int32_t *tok, int32_t *lab, int n) {
    for (int i = 0; i < n; i++) { tok[i] = tu_randint(V); lab[i] = (i % 5 == 2) ? -100 : tu_randint(V); }
}

static double weights_rel(const lomo_model *a, const lomo_model *b, const char **where) {
    double worst = 0;
    float *x = NULL, *y = NULL;
    for (int i = 0; i < a->n_tensors; i++) {
        size_t n = (size_t)a->tensors[i].numel;
        x = (float *)realloc(x, 4 * n); y = (float *)realloc(y, 4 * n);
        for (size_t j = 0; j < n; j++) { x[j] = lomo__elem(&a->tensors[i], j); y[j] = lomo__elem(&b->tensors[i], j); }
        double e = tu_rel_err(x, y, n);
        if (e > worst || e != e) { worst = e; *where = a->tensors[i].name; }
    }
    free(x); free(y);
    return worst;
}

/* chunked (head_chunk = hc) vs whole (-1): hook gradients, losses, weights */
static void compare(int tied, int M, float clip, int mode, int ckpt, float softcap, int hc, int use_hook,
                    lomo_dtype dt) {
    lomo_model *mw = make_model(tied, softcap, dt), *mc = make_model(tied, softcap, dt);
    lomo_train_opts o;
    memset(&o, 0, sizeof o);
    o.batch = B; o.seq_len = T; o.micro_batches = M; o.clip_norm = clip; o.clip_mode = mode;
    o.checkpointing = ckpt; o.stochastic_rounding = dt != LOMO_F32; o.seed = 5; o.weight_decay = 0.01f;
    store *sw = store_new(mw), *sc = store_new(mc);
    lomo_train_opts ow = o, oc = o;
    if (use_hook) { ow.update = store_sgd; ow.update_user = sw; oc.update = store_sgd; oc.update_user = sc; }
    ow.head_chunk = -1; oc.head_chunk = hc;
    lomo_trainer *tw = lomo_trainer_new(mw, &ow), *tc = lomo_trainer_new(mc, &oc);
    char what[160];
    snprintf(what, sizeof what, "tied %d M %d clip %g mode %d ckpt %d cap %g chunk %d hook %d %s", tied, M, clip, mode,
             ckpt, softcap, hc, use_hook, dt == LOMO_F32 ? "f32" : "bf16");
    CHECK(tw && tc, "%s: trainers: %s", what, lomo_error());
    if (!tw || !tc) return;
    CHECK(tc->hc == hc && tw->hc == B * T, "%s: rows %d / %d", what, tc->hc, tw->hc);
    int n = B * T * (M > 1 ? M : 1);
    int32_t *tok = (int32_t *)malloc(4 * n), *lab = (int32_t *)malloc(4 * n);
    double gworst = 0, lworst = 0;
    const char *gwhere = "";
    int calls_ok = 1;
    for (int step = 0; step < 3; step++) {
        lomo_step_info iw, ic;
        random_batch(tok, lab, n);
        for (int i = 0; i < mw->n_tensors; i++) sw->calls[i] = sc->calls[i] = 0;
        CHECK(lomo_step(tw, tok, lab, 0.05f, &iw) == 0, "%s: whole step: %s", what, lomo_error());
        CHECK(lomo_step(tc, tok, lab, 0.05f, &ic) == 0, "%s: chunked step: %s", what, lomo_error());
        double le = fabs(iw.loss - ic.loss) / fabs(iw.loss), se = fabs(iw.loss_sum - ic.loss_sum) / fabs(iw.loss_sum);
        if (le > lworst) lworst = le;
        if (se > lworst) lworst = se;
        if (clip > 0 && mode != LOMO_CLIP_TENSOR)
            CHECK(fabs(iw.grad_norm - ic.grad_norm) <= 1e-5 * iw.grad_norm, "%s: grad norm %g vs %g", what,
                  iw.grad_norm, ic.grad_norm);
        if (use_hook)
            for (int i = 0; i < mw->n_tensors; i++) {
                double e = tu_rel_err(sc->g[i], sw->g[i], (size_t)mw->tensors[i].numel);
                if (e > gworst || e != e) { gworst = e; gwhere = mw->tensors[i].name; }
                if (sc->calls[i] != 1 || sw->calls[i] != 1) calls_ok = 0;
            }
    }
    const char *where = "";
    double we = weights_rel(mc, mw, &where), tol = dt == LOMO_F32 ? 1e-5 : 1e-2;
    printf("  %s: loss rel %.1e, grads rel %.1e (%s), weights rel %.1e (%s)\n", what, lworst, gworst, gwhere, we, where);
    CHECK(lworst <= 1e-6, "%s: loss differs by %g", what, lworst);
    CHECK(gworst <= 1e-5, "%s: gradients differ by %g at %s", what, gworst, gwhere);
    CHECK(we <= tol, "%s: weights differ by %g at %s", what, we, where);
    CHECK(!use_hook || calls_ok, "%s: a tensor's hook was not called exactly once per update pass", what);
    lomo_model *init = make_model(tied, softcap, dt);
    CHECK(weights_rel(mc, init, &where) > 1e-3, "%s: weights did not move", what);
    lomo_model_free(init);
    lomo_trainer_free(tw); lomo_trainer_free(tc);
    store_free(sw, mw); store_free(sc, mc);
    lomo_model_free(mw); lomo_model_free(mc);
    free(tok); free(lab);
}

static void test_memory(int tied, int M) {
    lomo_model *m = NULL;
    lomo_train_opts o;
    memset(&o, 0, sizeof o);
    o.batch = B; o.seq_len = T; o.checkpointing = 1; o.clip_norm = 1.0f; o.micro_batches = M;
    int n = B * T * M, hc = 4;
    int32_t *tok = (int32_t *)malloc(4 * n), *lab = (int32_t *)malloc(4 * n);
    size_t act[2], total[2], formula[2][LOMO_MEM_NTAGS], peak[2];
    for (int k = 0; k < 2; k++) {
        o.head_chunk = k ? hc : -1;
        m = make_model(tied, 0, LOMO_F32);   /* its own peaks */
        lomo_trainer *t = lomo_trainer_new(m, &o);
        random_batch(tok, lab, n);
        CHECK(t && lomo_step(t, tok, lab, 0.01f, NULL) == 0, "memory step: %s", lomo_error());
        lomo_memory r = lomo_memory_report(m);
        act[k] = r.peak[LOMO_MEM_ACTIVATIONS];
        peak[k] = r.total_peak;
        total[k] = lomo_memory_formula(&m->cfg, &o, formula[k]);
        CHECK(fabs((double)r.total_peak - (double)total[k]) <= 0.10 * (double)total[k],
              "tied %d M %d chunk %d: total peak %zu vs formula %zu", tied, M, o.head_chunk, r.total_peak, total[k]);
        lomo_trainer_free(t);
        lomo_model_free(m);
    }
    size_t saved = 4 * (size_t)(B * T - hc) * V;
    printf("  memory tied %d M %d: activations %zu -> %zu B (chunk %d of %d tokens, V %d: %zu B less), total peak "
           "%zu -> %zu B, formula %zu -> %zu B\n", tied, M, act[0], act[1], hc, B * T, V, saved, peak[0], peak[1],
           total[0], total[1]);
    CHECK(act[0] - act[1] == saved, "activation peak shrinks by %zu, expected %zu", act[0] - act[1], saved);
    CHECK(formula[0][LOMO_MEM_ACTIVATIONS] - formula[1][LOMO_MEM_ACTIVATIONS] == saved,
          "formula shrinks by %zu, expected %zu", formula[0][LOMO_MEM_ACTIVATIONS] - formula[1][LOMO_MEM_ACTIVATIONS], saved);
    free(tok); free(lab);
}

static void test_default_rows(void) {
    lomo_config c;
    lomo_train_opts o;
    size_t f0[LOMO_MEM_NTAGS], f1[LOMO_MEM_NTAGS];
    lomo_config_default(&c, 4096, 11008, 32, 32, 32, 32000);
    memset(&o, 0, sizeof o);
    o.batch = 8; o.seq_len = 512; o.checkpointing = 1;
    CHECK(lomo__head_rows(&c, &o) == 1024, "7B shape, 8 x 512: %lld rows, expected 1024 (128 MiB / 128000 B = 1048)",
          (long long)lomo__head_rows(&c, &o));
    lomo_memory_formula(&c, &o, f0);
    o.head_chunk = -1;
    CHECK(lomo__head_rows(&c, &o) == 4096, "head_chunk -1: %lld", (long long)lomo__head_rows(&c, &o));
    lomo_memory_formula(&c, &o, f1);
    CHECK(f1[LOMO_MEM_ACTIVATIONS] - f0[LOMO_MEM_ACTIVATIONS] == (size_t)4 * (4096 - 1024) * 32000,
          "7B formula: whole logits cost %zu B more, expected %zu", f1[LOMO_MEM_ACTIVATIONS] - f0[LOMO_MEM_ACTIVATIONS],
          (size_t)4 * (4096 - 1024) * 32000);
    printf("  7B shape, 8 x 512, V 32000: head rows 1024, activations %.2f GiB -> %.2f GiB\n",
           f1[LOMO_MEM_ACTIVATIONS] / 1073741824.0, f0[LOMO_MEM_ACTIVATIONS] / 1073741824.0);
    o.head_chunk = 0; o.batch = 1; o.seq_len = 1024;   /* 4 * 1024 * 32000 = 125 MiB: whole */
    CHECK(lomo__head_rows(&c, &o) == 1024, "1 x 1024 fits: %lld", (long long)lomo__head_rows(&c, &o));
    c.vocab_size = 128256; o.batch = 8; o.seq_len = 1024;  /* Llama 3: 128 MiB / 513024 B = 261 -> 256 */
    CHECK(lomo__head_rows(&c, &o) == 256, "Llama 3 vocab: %lld", (long long)lomo__head_rows(&c, &o));
    c.vocab_size = 1 << 30; o.batch = 1; o.seq_len = 4;    /* rows below 64 are kept as they are: here 0 -> 1 */
    CHECK(lomo__head_rows(&c, &o) == 1, "huge vocab: %lld", (long long)lomo__head_rows(&c, &o));
    o.head_chunk = 1000;
    CHECK(lomo__head_rows(&c, &o) == 4, "head_chunk above N: %lld", (long long)lomo__head_rows(&c, &o));
}

static void test_logits(void) {
    lomo_model *m = make_model(0, 0, LOMO_F32);
    lomo_train_opts o;
    memset(&o, 0, sizeof o);
    o.batch = B; o.seq_len = T; o.head_chunk = 5;
    int32_t tok[B * T], lab[B * T];
    lomo_step_info ic, iw;
    random_batch(tok, lab, B * T);
    lomo_trainer *t = lomo_trainer_new(m, &o);
    CHECK(t && lomo_forward(t, tok, lab, &ic) == 0, "chunked forward: %s", lomo_error());
    CHECK(lomo_logits(t) == NULL && strstr(lomo_error(), "head_chunk"), "lomo_logits while chunked: %s", lomo_error());
    lomo_trainer_free(t);
    o.head_chunk = -1;
    t = lomo_trainer_new(m, &o);
    CHECK(t && lomo_forward(t, tok, lab, &iw) == 0, "whole forward: %s", lomo_error());
    CHECK(lomo_logits(t) != NULL, "lomo_logits with head_chunk -1");
    CHECK(fabs(iw.loss_sum - ic.loss_sum) <= 1e-6 * fabs(iw.loss_sum) && iw.n_tokens == ic.n_tokens,
          "forward loss sums %.9g vs %.9g", iw.loss_sum, ic.loss_sum);
    lomo_trainer_free(t);
    lomo_model_free(m);
}

int main(void) {
    printf("chunked vs whole LM head (B %d x T %d = %d tokens, V %d):\n", B, T, B * T, V);
    for (int tied = 0; tied < 2; tied++) {
        compare(tied, 1, 0, 0, 1, 0, 5, 1, LOMO_F32);
        compare(tied, 1, 0, 0, 0, 0, 7, 1, LOMO_F32);
        compare(tied, 1, 0.5f, LOMO_CLIP_GLOBAL, 1, 0, 4, 1, LOMO_F32);
        compare(tied, 1, 0.5f, LOMO_CLIP_GLOBAL_GRAM, 1, 0, 5, 1, LOMO_F32);
        compare(tied, 1, 0.5f, LOMO_CLIP_TENSOR, 0, 0, 6, 1, LOMO_F32);
        compare(tied, 2, 0, 0, 1, 0, 5, 1, LOMO_F32);
        compare(tied, 2, 0.5f, LOMO_CLIP_GLOBAL, 1, 0, 8, 1, LOMO_F32);
        compare(tied, 1, 0, 0, 1, 30.0f, 5, 1, LOMO_F32);
        compare(tied, 2, 0.5f, LOMO_CLIP_GLOBAL, 1, 30.0f, 1, 1, LOMO_F32);
        compare(tied, 1, 0.5f, LOMO_CLIP_GLOBAL, 1, 0, 5, 0, LOMO_F32);   /* built-in rule */
        compare(tied, 1, 0.5f, LOMO_CLIP_GLOBAL, 1, 0, 5, 0, LOMO_BF16);
    }
    test_memory(0, 1);
    test_memory(1, 1);
    test_memory(1, 2);
    test_default_rows();
    test_logits();
    return tu_done("test_head");
}
