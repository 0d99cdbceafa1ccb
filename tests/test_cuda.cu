// test_cuda.cu - the CUDA backend against the CPU backend (needs a GPU: `make test-cuda`).
//  - every kernel on random data at odd sizes (GQA, head_dim 80 not a multiple
//    of 32, vocab 1001), tolerances per dtype: fp32 1e-4 (different
//    summation order, fast exp), bf16/f16 matmuls 2e-2 (activations are cast
//    to 16 bits for the GEMM: 8 / 11 bits of mantissa);
//  - whole steps (fp32 and bf16 storage, clipping by norm and value, weight
//    decay, tied embeddings) against the CPU driver over 3 steps: fp32 1e-4,
//    bf16 3e-2; checkpointing on and off agree to 1e-6;
//  - the k-step trajectories of tests/test_rules.c (lomo-optim, torch AdamW)
//    on the device, 1e-4; the stories260K loss against transformers.
// Run from the repository root.
#define LOMO_IMPLEMENTATION
#include "../lomo.h"
#include "../lomo_cuda.cuh"
#include "test_util.h"

static const lomo_backend *cpu, *gpu;

static float *dev(const float *h, size_t n) {
    float *d = (float *)gpu->alloc(gpu->ctx, n * 4 + 4);
    if (h) gpu->upload(gpu->ctx, d, h, n * 4);
    else gpu->zero(gpu->ctx, d, n * 4);
    return d;
}
static float *host(const float *d, size_t n) {
    float *h = (float *)malloc(n * 4 + 4);
    gpu->download(gpu->ctx, h, d, n * 4);
    return h;
}
static float *randv(size_t n, double std) { float *x = (float *)malloc(n * 4 + 4); tu_fill(x, n, std); return x; }
static int32_t *idev(const int32_t *h, size_t n) {
    int32_t *d = (int32_t *)gpu->alloc(gpu->ctx, n * 4 + 4);
    gpu->upload(gpu->ctx, d, h, n * 4);
    return d;
}
static lomo_tensor wrap(void *p, lomo_dtype dt, int64_t d0, int64_t d1) {
    lomo_tensor t;
    memset(&t, 0, sizeof t);
    t.data = p; t.dtype = dt; t.ndim = d1 ? 2 : 1; t.shape[0] = d0; t.shape[1] = d1; t.numel = d1 ? d0 * d1 : d0;
    return t;
}
/* compare a device result with the CPU one */
static void same(const char *what, const float *d, const float *ref, size_t n, double tol) {
    float *h = host(d, n);
    double e = tu_rel_err(h, ref, n);
    CHECK(e <= tol, "%s: rel err %.3g > %.1g", what, e, tol);
    printf("  %-28s rel err %.2e\n", what, e);
    free(h);
}

static void test_kernels(void) {
    const int B = 2, T = 67, nh = 6, nkv = 2, N = B * T, C = 70, V = 1001, O = 53;
    void *X = cpu->ctx, *G = gpu->ctx;
    printf("kernels vs CPU:\n");
    /* matmuls, fp32 and bf16 weights */
    for (int dt = LOMO_F32; dt <= LOMO_BF16; dt++) {
        float *x = randv((size_t)N * C, 1), *w = randv((size_t)O * C, 0.3), *b = randv(O, 1), *dy = randv((size_t)N * O, 1);
        uint16_t *w16 = (uint16_t *)malloc((size_t)O * C * 2);
        for (int i = 0; i < O * C; i++) { w16[i] = lomo_f32_to_bf16(w[i]); if (dt) w[i] = lomo_bf16_to_f32(w16[i]); }
        lomo_tensor Wc = wrap(w, LOMO_F32, O, C), Bc = wrap(b, LOMO_F32, O, 0);
        void *wd = gpu->alloc(G, (size_t)O * C * 4);
        gpu->upload(G, wd, dt ? (void *)w16 : (void *)w, (size_t)O * C * (dt ? 2 : 4));
        lomo_tensor Wg = wrap(wd, (lomo_dtype)dt, O, C), Bg = wrap(dev(b, O), LOMO_F32, O, 0);
        size_t sb = 4 * (size_t)N * (C + O + V);
        void *scratch = gpu->alloc(G, sb);
        gpu->set_scratch(G, scratch, sb);
        lomo_model fake;
        memset(&fake, 0, sizeof fake);
        fake.cfg.dtype = (lomo_dtype)dt; fake.cfg.dim = C; fake.cfg.hidden_dim = O; fake.cfg.n_heads = 1;
        fake.cfg.head_dim = 1; fake.cfg.vocab_size = 1;
        gpu->scratch_bytes(G, &fake, N, 0);                   /* sets the activation GEMM dtype */
        double tol = dt ? 2e-2 : 1e-4;
        float *y = randv((size_t)N * O, 1), *dx = randv((size_t)N * C, 1), *dw = randv((size_t)O * C, 1);
        float *yd = dev(NULL, (size_t)N * O), *xd = dev(x, (size_t)N * C), *dyd = dev(dy, (size_t)N * O);
        float *dxd = dev(NULL, (size_t)N * C), *dwd = dev(NULL, (size_t)O * C);
        cpu->matmul_fwd(X, y, x, &Wc, &Bc, N, C, O, 0);
        gpu->matmul_fwd(G, yd, xd, &Wg, &Bg, N, C, O, 0);
        same(dt ? "matmul fwd (bf16 weights)" : "matmul fwd", yd, y, (size_t)N * O, tol);
        cpu->matmul_bwd_x(X, dx, dy, &Wc, N, C, O, 0);
        gpu->matmul_bwd_x(G, dxd, dyd, &Wg, N, C, O, 0);
        same(dt ? "matmul dx (bf16)" : "matmul dx", dxd, dx, (size_t)N * C, tol);
        cpu->matmul_bwd_w(X, dw, dy, x, N, C, O, 0);
        gpu->matmul_bwd_w(G, dwd, dyd, xd, N, C, O, 0);
        same(dt ? "matmul dw (bf16)" : "matmul dw", dwd, dw, (size_t)O * C, tol);
        cpu->bias_bwd(X, b, dy, N, O);
        gpu->bias_bwd(G, (float *)Bg.data, dyd, N, O);
        same("bias grad", (float *)Bg.data, b, O, 1e-4);
        gpu->free(G, scratch);
    }
    /* rmsnorm, rope, attention, swiglu, cross-entropy, embedding, sumsq */
    {
        float *x = randv((size_t)N * C, 1), *w = randv(C, 1), *dy = randv((size_t)N * C, 1), *y = randv((size_t)N * C, 1);
        float *r = randv(N, 1), *dx = randv((size_t)N * C, 1), *dw = randv(C, 1);
        lomo_tensor Wc = wrap(w, LOMO_F32, C, 0), Wg = wrap(dev(w, C), LOMO_F32, C, 0);
        float *xd = dev(x, (size_t)N * C), *yd = dev(NULL, (size_t)N * C), *rd = dev(NULL, N), *dyd = dev(dy, (size_t)N * C);
        float *dxd = dev(dx, (size_t)N * C), *dwd = dev(NULL, C);
        cpu->rmsnorm_fwd(X, y, r, x, &Wc, N, C, 1e-5f);
        gpu->rmsnorm_fwd(G, yd, rd, xd, &Wg, N, C, 1e-5f);
        same("rmsnorm fwd", yd, y, (size_t)N * C, 1e-5);
        cpu->rmsnorm_bwd(X, dx, dw, dy, x, &Wc, r, N, C);
        gpu->rmsnorm_bwd(G, dxd, dwd, dyd, xd, &Wg, rd, N, C);
        same("rmsnorm dx", dxd, dx, (size_t)N * C, 1e-4);
        same("rmsnorm dw", dwd, dw, C, 1e-4);
    }
    for (int hd = 64; hd <= 80; hd += 16) {
        size_t nq = (size_t)N * nh * hd, nk = (size_t)N * nkv * hd;
        float *q = randv(nq, 1), *k = randv(nk, 1), *v = randv(nk, 1), *dout = randv(nq, 1);
        float *o = randv(nq, 1), *lse = randv((size_t)N * nh, 1), *dq = randv(nq, 1), *dk = randv(nk, 1), *dv = randv(nk, 1);
        float inv[64];
        lomo_config c;
        lomo_config_default(&c, nh * hd, 8, 1, nh, nkv, 8);
        c.head_dim = hd; c.rope_theta = 10000.0f;
        lomo__rope_inv_freq(&c, inv);
        float *invd = dev(inv, (size_t)hd / 2), *qd = dev(q, nq), *kd = dev(k, nk), *vd = dev(v, nk), *dod = dev(dout, nq);
        float *od = dev(NULL, nq), *lsed = dev(NULL, (size_t)N * nh), *dqd = dev(NULL, nq), *dkd = dev(NULL, nk), *dvd = dev(NULL, nk);
        cpu->rope(X, q, inv, B, T, nh, hd, 0);
        gpu->rope(G, qd, invd, B, T, nh, hd, 0);
        same(hd == 64 ? "rope (hd 64)" : "rope (hd 80)", qd, q, nq, 1e-5);
        cpu->attn_fwd(X, o, lse, q, k, v, B, T, nh, nkv, hd);
        gpu->attn_fwd(G, od, lsed, qd, kd, vd, B, T, nh, nkv, hd);
        same(hd == 64 ? "attention fwd (GQA, hd 64)" : "attention fwd (GQA, hd 80)", od, o, nq, 1e-4);
        same("attention lse", lsed, lse, (size_t)N * nh, 1e-5);
        cpu->attn_bwd(X, dq, dk, dv, dout, q, k, v, o, lse, B, T, nh, nkv, hd);
        gpu->attn_bwd(G, dqd, dkd, dvd, dod, qd, kd, vd, od, lsed, B, T, nh, nkv, hd);
        same("attention dq", dqd, dq, nq, 1e-4);
        same("attention dk", dkd, dk, nk, 1e-4);
        same("attention dv", dvd, dv, nk, 1e-4);
    }
    {
        size_t n = (size_t)N * 97;
        float *g = randv(n, 2), *u = randv(n, 1), *h = randv(n, 1), *dg = randv(n, 1), *du = randv(n, 1);
        float *gd = dev(g, n), *ud = dev(u, n), *hd = dev(NULL, n), *dgd = dev(NULL, n), *dud = dev(NULL, n);
        cpu->swiglu_fwd(X, h, g, u, n);
        gpu->swiglu_fwd(G, hd, gd, ud, n);
        same("swiglu fwd", hd, h, n, 1e-5);
        gpu->copy(G, dgd, hd, n * 4);
        memcpy(dg, h, n * 4);
        cpu->swiglu_bwd(X, dg, du, dg, g, u, n);
        gpu->swiglu_bwd(G, dgd, dud, dgd, gd, ud, n);
        same("swiglu dg", dgd, dg, n, 1e-5);
        same("swiglu du", dud, du, n, 1e-5);
    }
    {
        float *lg = randv((size_t)N * V, 3), *losses = randv(N, 1);
        int32_t *tg = (int32_t *)malloc(N * 4);
        for (int i = 0; i < N; i++) tg[i] = i % 7 == 3 ? -100 : tu_randint(V);
        float *lgd = dev(lg, (size_t)N * V), *lossd = dev(NULL, N);
        int32_t *tgd = idev(tg, N);
        cpu->cross_entropy(X, losses, lg, lg, tg, N, V, 0.01f);
        gpu->cross_entropy(G, lossd, lgd, lgd, tgd, N, V, 0.01f);
        same("cross-entropy losses", lossd, losses, N, 1e-5);
        same("cross-entropy dlogits", lgd, lg, (size_t)N * V, 1e-4);
        double sc = cpu->sumsq(X, lg, (size_t)N * V), sg = gpu->sumsq(G, lgd, (size_t)N * V);
        CHECK(fabs(sc - sg) <= 1e-9 * sc, "sumsq %.12g vs %.12g", sg, sc);
        int32_t *tok = (int32_t *)malloc(N * 4);
        for (int i = 0; i < N; i++) tok[i] = tu_randint(V / 50);   /* repeats */
        float *dx = randv((size_t)N * C, 1), *dwe = randv((size_t)V * C, 0);
        memset(dwe, 0, (size_t)V * C * 4);
        float *dxd = dev(dx, (size_t)N * C), *dwed = dev(NULL, (size_t)V * C);
        int32_t *tokd = idev(tok, N);
        cpu->embed_bwd(X, dwe, dx, tok, N, C);
        gpu->embed_bwd(G, dwed, dxd, tokd, N, C);
        same("embedding bwd", dwed, dwe, (size_t)V * C, 1e-5);
    }
    /* the rules on one matrix, fp32 and bf16 with stochastic rounding */
    for (int rule = LOMO_OPT_LOMO; rule <= LOMO_OPT_ADAMW; rule++) {
        const int R = 37, K = 29;
        float *p = randv((size_t)R * K, 0.5), *g = randv((size_t)R * K, 0.1), *s1 = randv((size_t)R * K, 0), *s2 = randv((size_t)R * K, 0);
        memset(s1, 0, (size_t)R * K * 4); memset(s2, 0, (size_t)R * K * 4);
        float *pd = dev(p, (size_t)R * K), *gd = dev(g, (size_t)R * K), *s1d = dev(NULL, (size_t)R * K), *s2d = dev(NULL, (size_t)R * K);
        lomo_tensor Pc = wrap(p, LOMO_F32, R, K), Pg = wrap(pd, LOMO_F32, R, K);
        lomo_update_args a;
        memset(&a, 0, sizeof a);
        a.rule = rule; a.lr = 0.01f; a.inv_loss_scale = 1; a.clip_value = 0.15f; a.clip_coef = 0.8f; a.weight_decay = 0.1f;
        a.step = 3; a.eps1 = 1e-30f; a.eps2 = 1e-3f; a.clip_threshold = 1; a.decay_rate = -0.8f;
        a.beta1 = 0.9f; a.beta2 = 0.999f; a.eps = 1e-8f;
        cpu->update(X, &Pc, g, s1, s2, &a);
        gpu->update(G, &Pg, gd, s1d, s2d, &a);
        static const char *nm[] = {"update lomo", "update adalomo", "update adamw"};
        same(nm[rule], pd, p, (size_t)R * K, 1e-5);
    }
    CHECK(gpu->check(G) == 0, "cuda errors: %s", lomo_error());
}

/* a model on each backend with the same weights */
static void twin(lomo_dtype dt, int tied, lomo_model **mc, lomo_model **mg) {
    lomo_config c;
    lomo_config_default(&c, 96, 160, 2, 6, 2, 211);
    c.tie_embeddings = tied; c.qkv_bias = 1;
    lomo_load_opts oc = {dt, NULL, NULL}, og = {dt, gpu, NULL};
    *mc = lomo_model_new(&c, &oc);
    *mg = lomo_model_new(&c, &og);
    lomo_model_init_random(*mc, 11, 0.2f);
    for (int i = 0; i < (*mc)->n_tensors; i++)
        gpu->upload(gpu->ctx, (*mg)->tensors[i].data, (*mc)->tensors[i].data, lomo__tensor_bytes(&(*mc)->tensors[i]));
}
static double model_diff(lomo_model *mc, lomo_model *mg) {
    double worst = 0;
    for (int i = 0; i < mc->n_tensors; i++) {
        size_t n = (size_t)mc->tensors[i].numel, bytes = lomo__tensor_bytes(&mc->tensors[i]);
        void *h = malloc(bytes);
        gpu->download(gpu->ctx, h, mg->tensors[i].data, bytes);
        lomo_tensor t = mc->tensors[i];
        t.data = h;
        double num = 0, den = 0;
        for (size_t j = 0; j < n; j++) {
            double a = lomo__elem(&t, j), b = lomo__elem(&mc->tensors[i], j);
            num = fmax(num, fabs(a - b)); den = fmax(den, fabs(b));
        }
        worst = fmax(worst, num / den);
        free(h);
    }
    return worst;
}

static void test_steps(void) {
    int32_t tok[4 * 33];
    for (int i = 0; i < 4 * 33; i++) tok[i] = tu_randint(211);
    for (int dt = LOMO_F32; dt <= LOMO_BF16; dt++)
        for (int ckpt = 0; ckpt <= 1; ckpt++) {
            lomo_model *mc, *mg;
            twin((lomo_dtype)dt, 1, &mc, &mg);
            lomo_train_opts o;
            memset(&o, 0, sizeof o);
            o.batch = 4; o.seq_len = 33; o.checkpointing = ckpt; o.clip_norm = 1.0f; o.clip_value = 0.1f; o.weight_decay = 0.01f;
            lomo_trainer *tc = lomo_trainer_new(mc, &o), *tg = lomo_trainer_new(mg, &o);
            double lw = 0;
            for (int s = 0; s < 3; s++) {
                lomo_step_info ic, ig;
                CHECK(lomo_step(tc, tok, NULL, 0.05f, &ic) == 0 && lomo_step(tg, tok, NULL, 0.05f, &ig) == 0, "step: %s", lomo_error());
                lw = fmax(lw, fabs(ic.loss - ig.loss) / ic.loss);
            }
            double e = model_diff(mc, mg), tol = dt ? 3e-2 : 1e-4;
            printf("3 steps %s, checkpointing %d: losses %.2e, weights %.2e (bound %.0e)\n", dt ? "bf16" : "fp32", ckpt, lw, e, tol);
            CHECK(lw <= tol && e <= tol, "%s ckpt=%d: GPU vs CPU %g / %g", dt ? "bf16" : "fp32", ckpt, lw, e);
            lomo_trainer_free(tc); lomo_trainer_free(tg);
            lomo_model_free(mc); lomo_model_free(mg);
        }
}

static void test_trajectories(void) {
    const char *rules[] = {"lomo", "adalomo", "adamw"}, *models[] = {"llama_gqa", "llama_tied"};
    lomo_load_opts og = {LOMO_F32, gpu, NULL};
    for (int r = 0; r < 3; r++)
        for (int k = 0; k < 2; k++) {
            char path[256], dir[256], name[160];
            snprintf(path, sizeof path, "tests/ref/traj_%s_%s.safetensors", rules[r], models[k]);
            snprintf(dir, sizeof dir, "tests/ref/%s", models[k]);
            lomo__st_file f;
            lomo_model *m = lomo_load(dir, &og);
            if (!m || lomo__st_open(&f, path)) { CHECK(0, "%s: %s", path, lomo_error()); continue; }
            const lomo__st_tensor *ids = lomo__st_find(&f, "input_ids"), *labs = lomo__st_find(&f, "labels");
            int K = (int)ids->shape[0], B = (int)ids->shape[1], T = (int)ids->shape[2];
            lomo_train_opts o;
            memset(&o, 0, sizeof o);
            o.batch = B; o.seq_len = T; o.weight_decay = 0.01f; o.clip_norm = 1.0f; o.optimizer = r;
            if (r == 0) o.clip_value = 0.05f;
            lomo_trainer *t = lomo_trainer_new(m, &o);
            for (int s = 0; s < K; s++)
                lomo_step(t, (const int32_t *)ids->data + (size_t)s * B * T, (const int32_t *)labs->data + (size_t)s * B * T,
                          r == 0 ? 0.05f : 0.01f, NULL);
            double worst = 0;
            for (int i = 0; i < m->n_tensors; i++) {
                snprintf(name, sizeof name, "final.%s", m->tensors[i].name);
                const lomo__st_tensor *ref = lomo__st_find(&f, name);
                float *h = host((float *)m->tensors[i].data, (size_t)m->tensors[i].numel);
                worst = fmax(worst, tu_rel_err(h, (const float *)ref->data, (size_t)m->tensors[i].numel));
                free(h);
            }
            printf("trajectory %-8s %-11s on the GPU: %.2e\n", rules[r], models[k], worst);
            CHECK(worst <= 1e-4, "%s %s on the GPU: %g", rules[r], models[k], worst);
            lomo_trainer_free(t);
            lomo__st_close(&f);
            lomo_model_free(m);
        }
}

/* generation: the KV-cache ops against the CPU's, then whole greedy
   generations and cached logits of fixture models (Mistral with a sliding
   window of 6 included) against the CPU backend */
static void test_generate(void) {
    void *X = cpu->ctx, *G = gpu->ctx;
    const int nh = 6, nkv = 2, hd = 80, pos0 = 37, N = 5, T = pos0 + N;
    float *q = randv((size_t)N * nh * hd, 1), *kc = randv((size_t)T * nkv * hd, 1), *vc = randv((size_t)T * nkv * hd, 1);
    float *o = (float *)malloc(sizeof(float) * (size_t)N * nh * hd), inv[40];
    float *qd = dev(q, (size_t)N * nh * hd), *kd = dev(kc, (size_t)T * nkv * hd), *vd = dev(vc, (size_t)T * nkv * hd);
    float *od = dev(NULL, (size_t)N * nh * hd), *invd;
    lomo_config c;
    memset(&c, 0, sizeof c);
    c.head_dim = hd; c.rope_theta = 10000.0f;
    lomo__rope_inv_freq(&c, inv);
    invd = dev(inv, 40);
    printf("generation ops vs CPU:\n");
    cpu->rope_at(X, q, inv, N, nh, hd, pos0);
    gpu->rope_at(G, qd, invd, N, nh, hd, pos0);
    same("rope_at (pos0 37)", qd, q, (size_t)N * nh * hd, 1e-5);
    for (int w = 0; w <= 7; w += 7) {
        cpu->attn_kv(X, o, q, kc, vc, N, pos0, nh, nkv, hd, w);
        gpu->attn_kv(G, od, qd, kd, vd, N, pos0, nh, nkv, hd, w);
        same(w ? "attn_kv (window 7)" : "attn_kv", od, o, (size_t)N * nh * hd, 1e-4);
    }
    free(q); free(kc); free(vc); free(o);
    gpu->free(G, qd); gpu->free(G, kd); gpu->free(G, vd); gpu->free(G, od); gpu->free(G, invd);
    const char *models[] = {"llama_gqa", "llama_bias", "llama3_scaled", "mistral_swa"};
    lomo_load_opts oc = {LOMO_F32, NULL, NULL}, og = {LOMO_F32, gpu, NULL};
    for (int k = 0; k < 4; k++) {
        char dir[256];
        snprintf(dir, sizeof dir, "tests/ref/%s", models[k]);
        lomo_model *mc = lomo_load(dir, &oc), *mg = lomo_load(dir, &og);
        if (!mc || !mg) { CHECK(0, "%s: %s", dir, lomo_error()); continue; }
        int32_t prompt[7] = {5, 3, 9, 1, 4, 2, 8}, a[72], b[72];
        lomo_gen_opts g;
        memset(&g, 0, sizeof g);
        g.max_new_tokens = 72;
        int na = lomo_generate(mc, prompt, 7, &g, a, NULL), nb = lomo_generate(mg, prompt, 7, &g, b, NULL);
        CHECK(na == 72 && nb == 72 && !memcmp(a, b, sizeof a), "%s: greedy ids GPU vs CPU (%d, %d): %s", models[k], na, nb,
              lomo_error());
        /* cached logits at every position, token by token */
        int V = mc->cfg.vocab_size, L = 7 + 71;
        int32_t seq[78];
        memcpy(seq, prompt, sizeof prompt); memcpy(seq + 7, a, 71 * 4);
        lomo_kv *kvc = lomo_kv_new(mc, L, 1), *kvg = lomo_kv_new(mg, L, 1);
        float *lc = (float *)malloc(sizeof(float) * (size_t)L * V), *lg = (float *)malloc(sizeof(float) * (size_t)L * V);
        for (int i = 0; kvc && kvg && i < L; i++) {
            lomo_kv_eval(kvc, seq + i, 1, lc + (size_t)i * V, 1);
            lomo_kv_eval(kvg, seq + i, 1, lg + (size_t)i * V, 1);
        }
        double e = tu_rel_err(lg, lc, (size_t)L * V);
        printf("  %-14s 72 greedy tokens equal the CPU's, cached logits rel err %.2e\n", models[k], e);
        CHECK(e <= 1e-4, "%s: cached logits GPU vs CPU %g", models[k], e);
        lomo_kv_free(kvc); lomo_kv_free(kvg); free(lc); free(lg);
        CHECK(mg->mem.current[LOMO_MEM_KV] == 0, "%s: kv cache left on the device", models[k]);
        lomo_model_free(mc); lomo_model_free(mg);
    }
    CHECK(gpu->check(G) == 0, "cuda errors: %s", lomo_error());
}

int main(void) {
    cpu = lomo_cpu_backend();
    gpu = lomo_cuda_backend(0);
    if (!gpu) { printf("no CUDA device: %s\ntest_cuda: 0 passed, 1 failed\n", lomo_error()); return 1; }
    test_kernels();
    test_steps();
    test_trajectories();
    test_generate();
    return tu_done("test_cuda");
}
