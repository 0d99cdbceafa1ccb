/* test_grad.c - the whole model's gradient, every element of every tensor,
   against central finite differences of the independent double-precision
   model in ref_double.h. Covers GQA, MQA, tied and untied embeddings, q/k/v
   and o_proj biases, head_dim != hidden/heads, checkpointing on and off.
   Tolerance (fp32 driver vs double truth): max|err| / max|grad| <= 1e-4 per
   tensor; loss within 1e-5 relative. */
#define LOMO_IMPLEMENTATION
#include "../lomo.h"
#include "ref_double.h"
#include "test_util.h"

typedef struct capture {
    float **g;       /* per tensor index */
    int *calls;
} capture;

/* An update hook that only records the gradient: "compute all gradients". */
static int capture_hook(lomo_tensor *p, const float *grad, const lomo_update_ctx *ctx, void *user) {
    capture *c = (capture *)user;
    (void)ctx;
    memcpy(c->g[p->index], grad, sizeof(float) * (size_t)p->numel);
    c->calls[p->index]++;
    return 0;
}

static void fill_model(lomo_model *m, double std) {
    for (int i = 0; i < m->n_tensors; i++) {
        lomo_tensor *t = &m->tensors[i];
        float *p = (float *)t->data;
        int is_norm = t->kind == LOMO_ATTN_NORM || t->kind == LOMO_MLP_NORM || t->kind == LOMO_FINAL_NORM ||
                      t->kind == LOMO_Q_NORM || t->kind == LOMO_K_NORM || t->kind == LOMO_POST_ATTN_NORM ||
                      t->kind == LOMO_POST_MLP_NORM;
        double gain = m->cfg.gemma ? 0.0 : 1.0;   /* Gemma stores gain - 1 */
        for (int64_t j = 0; j < t->numel; j++)
            p[j] = (float)(is_norm ? gain + 0.2 * tu_normal() : (t->ndim == 2 ? std : 0.3) * tu_normal());
    }
}

/* double copies of every tensor, wired into a ref_model */
static double **ref_from(const lomo_model *m, ref_model *r) {
    double **d = (double **)calloc(m->n_tensors, sizeof(double *));
    const lomo_config *c = &m->cfg;
    memset(r, 0, sizeof *r);
    r->c.C = c->dim; r->c.H = c->hidden_dim; r->c.L = c->n_layers; r->c.nh = c->n_heads;
    r->c.nkv = c->n_kv_heads; r->c.hd = c->head_dim; r->c.V = c->vocab_size; r->c.tied = c->tie_embeddings;
    r->c.eps = c->norm_eps; r->c.theta = c->rope_theta;
    r->c.qk_norm = c->qk_norm; r->c.gemma = c->gemma; r->c.qpas = c->query_pre_attn_scalar;
    r->c.attn_cap = c->gemma == 2 ? c->attn_softcap : 0; r->c.final_cap = c->final_softcap;
    r->c.window = c->local_window; r->c.pattern = c->local_pattern; r->c.theta_local = c->rope_local_theta;
    r->c.rope_factor = c->rope_type == 2 ? c->rope_factor : 0; r->c.rot = c->rotary_dim;
    if (c->rope_type == 3) {   /* longrope at T = 6 > original_max_position_embeddings: the long factors */
        static double ext[128];
        for (int i = 0; i < c->rope_n_factors; i++) ext[i] = c->rope_long_factor[i];
        r->c.ext = ext; r->c.mscale = c->rope_attn_factor;
    }
    r->layers = (ref_layer *)calloc(c->n_layers, sizeof(ref_layer));
    for (int i = 0; i < m->n_tensors; i++) {
        const lomo_tensor *t = &m->tensors[i];
        d[i] = (double *)malloc(sizeof(double) * t->numel);
        for (int64_t j = 0; j < t->numel; j++) d[i][j] = ((const float *)t->data)[j];
        ref_layer *L = t->layer >= 0 ? &r->layers[t->layer] : NULL;
        switch (t->kind) {
        case LOMO_EMBED: r->embed = d[i]; if (c->tie_embeddings) r->lm_head = d[i]; break;
        case LOMO_FINAL_NORM: r->norm = d[i]; break;
        case LOMO_LM_HEAD: r->lm_head = d[i]; break;
        case LOMO_WQ: L->wq = d[i]; break;   case LOMO_BQ: L->bq = d[i]; break;
        case LOMO_WK: L->wk = d[i]; break;   case LOMO_BK: L->bk = d[i]; break;
        case LOMO_WV: L->wv = d[i]; break;   case LOMO_BV: L->bv = d[i]; break;
        case LOMO_WO: L->wo = d[i]; break;   case LOMO_BO: L->bo = d[i]; break;
        case LOMO_W_GATE: L->wg = d[i]; break; case LOMO_W_UP: L->wu = d[i]; break;
        case LOMO_W_DOWN: L->wd = d[i]; break;
        case LOMO_ATTN_NORM: L->attn_norm = d[i]; break; case LOMO_MLP_NORM: L->mlp_norm = d[i]; break;
        case LOMO_Q_NORM: L->q_norm = d[i]; break; case LOMO_K_NORM: L->k_norm = d[i]; break;
        case LOMO_POST_ATTN_NORM: L->post_attn_norm = d[i]; break;
        case LOMO_POST_MLP_NORM: L->post_mlp_norm = d[i]; break;
        case LOMO_W_QKV:   /* row blocks: q, k, v */
            L->wq = d[i]; L->wk = d[i] + (size_t)c->n_heads * c->head_dim * c->dim;
            L->wv = L->wk + (size_t)c->n_kv_heads * c->head_dim * c->dim; break;
        case LOMO_W_GATE_UP: L->wg = d[i]; L->wu = d[i] + (size_t)c->hidden_dim * c->dim; break;
        }
    }
    return d;
}

/* family: 0 Llama, 5 Phi-3, 3 Qwen3 (q/k norms), 2 Gemma 2 (every Gemma feature on: soft-capping that
   bites, a window of 3 < T on layers 0 and 2), 4 Gemma 3 (q/k norms, local rope base, linear
   scaling on the global layers, pattern 2) */
static int family = 0;
static void run_case(const char *name, int dim, int hidden, int layers, int nh, int nkv, int hd,
                     int vocab, int tied, int qkv_bias, int o_bias) {
    lomo_config cfg;
    lomo_config_default(&cfg, dim, hidden, layers, nh, nkv, vocab);
    cfg.head_dim = hd; cfg.tie_embeddings = tied; cfg.qkv_bias = qkv_bias; cfg.o_bias = o_bias;
    cfg.rope_theta = 300.0f;   /* small theta: every rotation angle matters at T=6 */
    if (family == 3) { strcpy(cfg.model_type, "qwen3"); cfg.qk_norm = 1; }
    if (family == 2 || family == 4) {
        strcpy(cfg.model_type, family == 2 ? "gemma2" : "gemma3_text");
        cfg.gemma = family == 2 ? 2 : 3; cfg.qk_norm = family == 4;
        cfg.query_pre_attn_scalar = 10.0f; cfg.local_window = 3; cfg.local_pattern = 2;
        cfg.attn_softcap = 1.5f; cfg.final_softcap = family == 2 ? 1.0f : 0.0f;
        if (family == 4) { cfg.rope_local_theta = 50.0f; cfg.rope_type = 2; cfg.rope_factor = 3.0f; }
    }
    if (family == 5) {   /* Phi-3: fused projections, partial rotary 4 of 6, window 3 on every layer */
        strcpy(cfg.model_type, "phi3"); cfg.fused_proj = 1; cfg.rotary_dim = hd - 2;
        cfg.local_window = 3; cfg.local_pattern = layers + 1;
        if (tied) {   /* + longrope (long factors: T = 6 > 4), attention factor 1.25 */
            cfg.rope_type = 3; cfg.rope_n_factors = cfg.rotary_dim / 2; cfg.rope_original_max_pos = 4;
            cfg.rope_attn_factor = 1.25f;
            for (int i = 0; i < cfg.rope_n_factors; i++) { cfg.rope_long_factor[i] = 1.0f + 1.5f * i; cfg.rope_short_factor[i] = 1.0f; }
        }
    }
    lomo_model *m = lomo_model_new(&cfg, NULL);
    CHECK(m != NULL, "%s: model_new: %s", name, lomo_error());
    if (!m) return;
    fill_model(m, 0.5);
    int B = 2, T = 6, N = B * T;
    int32_t tok[12], lab[12];
    for (int i = 0; i < N; i++) { tok[i] = tu_randint(vocab); lab[i] = tu_randint(vocab); }
    lab[3] = -100; lab[8] = -100;
    ref_model r;
    double **d = ref_from(m, &r);
    double ref_loss = ref_model_loss(&r, tok, lab, B, T);
    /* mode 0: stored activations, 1: checkpointing, 2: two micro-batches of one sequence
       (families of 0.5 only: the layer-major path must sum the same gradients) */
    for (int mode = 0; mode <= (family ? 2 : 1); mode++) {
        int ckpt = mode == 1;
        capture cap;
        cap.g = (float **)calloc(m->n_tensors, sizeof(float *));
        cap.calls = (int *)calloc(m->n_tensors, sizeof(int));
        for (int i = 0; i < m->n_tensors; i++) cap.g[i] = (float *)calloc(m->tensors[i].numel, sizeof(float));
        lomo_train_opts o;
        memset(&o, 0, sizeof o);
        o.batch = B; o.seq_len = T; o.checkpointing = ckpt; o.update = capture_hook; o.update_user = &cap;
        if (mode == 2) { o.batch = 1; o.micro_batches = 2; }
        lomo_trainer *t = lomo_trainer_new(m, &o);
        lomo_step_info info;
        CHECK(t && lomo_step(t, tok, lab, 0.1f, &info) == 0, "%s: step: %s", name, lomo_error());
        CHECK(fabs(info.loss - ref_loss) <= 1e-5 * fabs(ref_loss), "%s ckpt=%d: loss %.8f vs ref %.8f",
              name, ckpt, info.loss, ref_loss);
        double worst = 0;
        const char *worst_name = "";
        for (int i = 0; i < m->n_tensors; i++) {
            lomo_tensor *tt = &m->tensors[i];
            double *fd = (double *)malloc(sizeof(double) * tt->numel);
            CHECK(cap.calls[i] == 1, "%s: hook called %d times for %s", name, cap.calls[i], tt->name);
            for (int64_t j = 0; j < tt->numel; j++) {
                double x0 = d[i][j], h = 1e-6;
                d[i][j] = x0 + h; double lp = ref_model_loss(&r, tok, lab, B, T);
                d[i][j] = x0 - h; double lm = ref_model_loss(&r, tok, lab, B, T);
                d[i][j] = x0;
                fd[j] = (lp - lm) / (2 * h);
            }
            double e = tu_rel_err_fd(cap.g[i], fd, tt->numel);
            CHECK(e <= 1e-4, "%s ckpt=%d: gradient of %s: rel err %g", name, ckpt, tt->name, e);
            if (e > worst) { worst = e; worst_name = tt->name; }
            free(fd);
        }
        printf("%-22s %s: %d tensors, loss %.6f, worst gradient rel err %.2e (%s)\n",
               name, mode == 2 ? "2 micro-batches " : ckpt ? "checkpointing=1 " : "checkpointing=0 ", m->n_tensors,
               info.loss, worst, worst_name);
        lomo_trainer_free(t);
        for (int i = 0; i < m->n_tensors; i++) free(cap.g[i]);
        free(cap.g); free(cap.calls);
    }
    for (int i = 0; i < m->n_tensors; i++) free(d[i]);
    free(d); free(r.layers);
    lomo_model_free(m);
}

int main(void) {
    /* name, dim, hidden, layers, heads, kv heads, head_dim, vocab, tied, qkv bias, o bias */
    run_case("gqa untied", 8, 12, 2, 4, 2, 4, 11, 0, 0, 0);
    run_case("mqa tied", 8, 10, 2, 2, 1, 6, 13, 1, 0, 0);
    run_case("mha qkv+o bias", 6, 14, 2, 2, 2, 4, 9, 0, 1, 1);
    run_case("gqa qkv bias tied", 8, 12, 1, 4, 2, 2, 7, 1, 1, 0);
    family = 3;
    run_case("qwen3 gqa tied", 8, 12, 2, 4, 2, 6, 11, 1, 0, 0);
    run_case("qwen3 mqa bias", 6, 10, 2, 2, 1, 4, 9, 0, 1, 1);
    family = 2;
    run_case("gemma2 gqa tied", 8, 12, 3, 4, 2, 4, 11, 1, 0, 0);
    family = 4;
    run_case("gemma3 untied", 8, 10, 3, 2, 1, 6, 9, 0, 0, 0);
    family = 5;
    run_case("phi3 fused gqa", 8, 10, 2, 4, 2, 6, 11, 0, 0, 0);
    run_case("phi3 longrope tied", 6, 8, 2, 2, 2, 6, 9, 1, 0, 0);
    return tu_done("test_grad");
}
