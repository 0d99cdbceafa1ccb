// test_cuda.cu - the CUDA backend against the CPU backend (needs a GPU: `make test-cuda`
// or `make gpu-check`). Run from the repository root. What it checks, and the bounds:
//  - every kernel on random data at odd sizes (vocab 1001, N = 134 rows), each group
//    followed by check() (which synchronises): matmuls fwd / dx / dW, with and without
//    accumulate, fp32 (1e-4: pure fp32, no TF32), bf16 (2e-2) and f16 (5e-3) weights (the
//    activations are cast to 8 / 11 significant bits for the GEMM), bias grads, the Gram
//    weight-gradient norm, RMSNorm, RoPE forward and inverse, attention fwd/bwd at
//    head_dim 64, 80, 128, 256 with GQA (6/2) and plain multi-head (4/4) on the fp32 kernels
//    (LOMO_CUDA_ATTN=ref), SwiGLU,
//    cross-entropy with ignored labels (with and without dlogits), embedding fwd (fp32 and
//    bf16 tables) and bwd, sumsq and param_sumsq (fp32, bf16, f16);
//  - tensor-core flash attention: one m16n8k16 tile through each fragment helper against a
//    host product (1e-5; the P-fragment chain 2e-3), then flash at head_dim 64/80/96/128, T 77,
//    131, 99, 5, GQA 6/2 and 4/1, MHA, windows 40 and 33, soft-cap 2: against the CPU backend
//    and against tests/flash_model.h (out 2e-2, lse 5e-3, dq/dk/dv 3e-2), the fp32 kernels on
//    the same data against the CPU (1e-4) and against flash (the bf16 bounds), two backwards
//    bit-identical; the Gram norm for bf16/f16 models on tensor cores (the matmul bounds);
//  - the three rules (LOMO, AdaLomo 2-D and 1-D, AdamW) on one tensor in fp32, bf16 and
//    f16, round-to-nearest and stochastic rounding, shard_len set (the elements the update
//    writes), against the CPU on identical inputs: weights (16-bit: at most 1 ulp apart
//    and at most 2% of elements differing, since both use the same rounding hash) and the
//    rule's state (AdaLomo's factored moments, AdamW's m and v) to 1e-5;
//  - the fused LOMO update (linear_update) against the GPU's and the CPU's hook path on
//    identical inputs (fp32 1e-5 of the change; 16-bit as the rules, bitwise in one block);
//    the scratch of a head in chunks (scratch_bytes_rows);
//  - one tensor above 2^31 elements (4.3 GB bf16 + 8.6 GB fp32 gradient): embedding fwd and
//    bwd at the last rows, sumsq, param_sumsq and a LOMO update of the tail, exact or 1e-6;
//  - whole steps (tests/step_compare.h's cases: fp32, bf16, f16, tied and untied, q/k/v and
//    o_proj biases, checkpointing, micro-batches, clipping by global norm, Gram norm and per
//    tensor, loss scaling, stochastic rounding, AdaLomo, AdamW, head_dim 128 multi-head and
//    256 GQA, the unclipped single pass, the LM head in chunks of 13 and 16 tokens) against
//    the CPU driver over 3 steps, compared by
//    what the steps changed, with the bound derived there (fp32 2e-3; a skipped update
//    gives 1), losses to 1e-4 (fp32) and 2e-2 (16-bit); checkpointing on and off on the GPU
//    agree to 1e-6;
//  - the k-step trajectories of tests/test_rules.c (lomo-optim, torch AdamW) on the device,
//    1e-4; the stories260K loss and logits against transformers (tests/ref, 2e-4 / 1e-3);
//  - errors: a refused op is reported by check() and cleared; a kernel that faults
//    (illegal address) is reported, named, marks the context lost, and lomo_cuda_release +
//    lomo_cuda_backend start afresh (in a child process: test_cuda --fault); two devices,
//    when there are two; with -DLOMO_NCCL (build/test_cuda_nccl --nccl) NCCL at world size
//    1 against the unsharded GPU run, 1e-6.
// Flags: --quick (no 2^31 tensor, no child process, stop at the first failing group: the
// mutation check), --fault, --nccl.
#define LOMO_IMPLEMENTATION
#include "../lomo.h"
#ifdef LOMO_CUDA_DRY
#include "cuda_dry.h"        /* the CPU posing as the GPU: the test's own logic, without one */
#else
#include "../lomo_cuda.cuh"
#endif
#include "test_util.h"
#include "step_compare.h"
#include "flash_model.h"

static const lomo_backend *cpu, *gpu;
static const char *self = "build/test_cuda";

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
    t.shard_len = t.numel;   /* the elements data holds: all (the update writes shard_len of them) */
    return t;
}
/* compare a device result with the CPU one */
static void same(const char *what, const float *d, const float *ref, size_t n, double tol) {
    float *h = host(d, n);
    double e = tu_rel_err(h, ref, n);
    CHECK(e <= tol, "%s: rel err %.3g > %.1g", what, e, tol);
    printf("  %-36s rel err %.2e\n", what, e);
    free(h);
}
/* after every group: nothing failed, synchronously or in flight; with --quick (the
   mutation check) the first failing group ends the run: a mutant is caught */
static int stop_early;
static void group_done(const char *g) {
    CHECK(gpu->check(gpu->ctx) == 0, "%s: cuda error: %s", g, lomo_error());
    if (stop_early && tu_fail) { printf("(--quick: stopping after the first failing group, %s)\n", g); exit(tu_done("test_cuda")); }
}

static uint16_t to16(lomo_dtype dt, float x) { return dt == LOMO_BF16 ? lomo_f32_to_bf16(x) : lomo_f32_to_f16(x); }
static float from16(lomo_dtype dt, uint16_t h) { return dt == LOMO_BF16 ? lomo_bf16_to_f32(h) : lomo_f16_to_f32(h); }

static void test_matmuls(void) {
    const int N = 134, C = 70, O = 53, V = 1001;
    void *X = cpu->ctx, *G = gpu->ctx;
    static const char *dn[] = {"fp32", "bf16", "f16"};
    printf("matmuls vs CPU:\n");
    for (int dt = LOMO_F32; dt <= LOMO_F16; dt++) {
        char nm[96];
        float *x = randv((size_t)N * C, 1), *w = randv((size_t)O * C, 0.3), *b = randv(O, 1), *dy = randv((size_t)N * O, 1);
        uint16_t *w16 = (uint16_t *)malloc((size_t)O * C * 2);
        for (int i = 0; i < O * C; i++) if (dt) { w16[i] = to16((lomo_dtype)dt, w[i]); w[i] = from16((lomo_dtype)dt, w16[i]); }
        lomo_tensor Wc = wrap(w, LOMO_F32, O, C), Bc = wrap(b, LOMO_F32, O, 0);
        void *wd = gpu->alloc(G, (size_t)O * C * 4);
        gpu->upload(G, wd, dt ? (void *)w16 : (void *)w, (size_t)O * C * (dt ? 2 : 4));
        lomo_tensor Wg = wrap(wd, (lomo_dtype)dt, O, C), Bg = wrap(dev(b, O), LOMO_F32, O, 0);
        size_t sb = 4 * (size_t)N * (C + O + V);
        void *scratch = gpu->alloc(G, sb);
        gpu->set_scratch(G, scratch, sb, dt);                 /* the activation GEMM dtype, explicitly */
        double tol = dt == LOMO_BF16 ? 2e-2 : dt == LOMO_F16 ? 5e-3 : 1e-4;
        float *y = randv((size_t)N * O, 1), *dx = randv((size_t)N * C, 1), *dw = randv((size_t)O * C, 1);
        float *yd = dev(y, (size_t)N * O), *xd = dev(x, (size_t)N * C), *dyd = dev(dy, (size_t)N * O);
        float *dxd = dev(dx, (size_t)N * C), *dwd = dev(dw, (size_t)O * C);
        for (int acc = 0; acc <= 1; acc++) {   /* acc: onto the random values already there */
            const char *an = acc ? ", accumulate" : "";
            cpu->matmul_fwd(X, y, x, &Wc, &Bc, N, C, O, acc);
            gpu->matmul_fwd(G, yd, xd, &Wg, &Bg, N, C, O, acc);
            snprintf(nm, sizeof nm, "matmul fwd + bias (%s%s)", dn[dt], an);
            same(nm, yd, y, (size_t)N * O, tol);
            cpu->matmul_bwd_x(X, dx, dy, &Wc, N, C, O, acc);
            gpu->matmul_bwd_x(G, dxd, dyd, &Wg, N, C, O, acc);
            snprintf(nm, sizeof nm, "matmul dx (%s%s)", dn[dt], an);
            same(nm, dxd, dx, (size_t)N * C, tol);
            cpu->matmul_bwd_w(X, dw, dy, x, N, C, O, acc);
            gpu->matmul_bwd_w(G, dwd, dyd, xd, N, C, O, acc);
            snprintf(nm, sizeof nm, "matmul dW (%s%s)", dn[dt], an);
            same(nm, dwd, dw, (size_t)O * C, tol);
        }
        cpu->bias_bwd(X, b, dy, N, O);
        gpu->bias_bwd(G, (float *)Bg.data, dyd, N, O);
        same("bias grad", (float *)Bg.data, b, O, 1e-4);
        {   /* ||dy^T x||^2 from the Gram matrices: fp32 on both (1e-5); 16-bit models: the GPU's Gram
               GEMMs on tensor cores with the dW GEMM's operand rounding (the matmul bounds) */
            float *cs = (float *)malloc(sizeof(float) * 2 * (size_t)N * N);
            double gt = dt == LOMO_F32 ? 1e-5 : tol;
            cpu->set_scratch(X, cs, sizeof(float) * 2 * (size_t)N * N, LOMO_F32);
            double gc = cpu->wgrad_sqnorm(X, dy, x, N, C, O), gg = gpu->wgrad_sqnorm(G, dyd, xd, N, C, O);
            CHECK(fabs(gg - gc) <= gt * gc, "wgrad_sqnorm (%s) %.10g vs CPU %.10g", dn[dt], gg, gc);
            snprintf(nm, sizeof nm, "Gram weight-gradient norm (%s)", dn[dt]);
            printf("  %-36s rel err %.2e\n", nm, fabs(gg - gc) / gc);
            cpu->set_scratch(X, NULL, 0, LOMO_F32);
            free(cs);
        }
        gpu->set_scratch(G, NULL, 0, LOMO_F32);
        gpu->free(G, scratch); gpu->free(G, wd); gpu->free(G, Bg.data);
        gpu->free(G, yd); gpu->free(G, xd); gpu->free(G, dyd); gpu->free(G, dxd); gpu->free(G, dwd);
        free(x); free(w); free(b); free(dy); free(w16); free(y); free(dx); free(dw);
        snprintf(nm, sizeof nm, "matmuls %s", dn[dt]);
        group_done(nm);
    }
}

static void test_pointwise(void) {
    const int B = 2, T = 67, N = B * T, C = 70, V = 1001;
    void *X = cpu->ctx, *G = gpu->ctx;
    printf("norms, embedding, SwiGLU, cross-entropy, sums vs CPU:\n");
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
        same("rmsnorm dx (accumulated)", dxd, dx, (size_t)N * C, 1e-4);
        same("rmsnorm dw", dwd, dw, C, 1e-4);
        group_done("rmsnorm");
    }
    for (int dt = LOMO_F32; dt <= LOMO_BF16; dt++) {   /* embedding forward from an fp32 / bf16 table */
        float *wte = randv((size_t)V * C, 1), *x = (float *)malloc(sizeof(float) * N * C);
        uint16_t *w16 = (uint16_t *)malloc((size_t)V * C * 2);
        int32_t tok[134];
        for (int i = 0; i < N; i++) tok[i] = i == 0 ? V - 1 : tu_randint(V);
        for (size_t i = 0; i < (size_t)V * C; i++) if (dt) { w16[i] = lomo_f32_to_bf16(wte[i]); wte[i] = lomo_bf16_to_f32(w16[i]); }
        void *wd = gpu->alloc(G, (size_t)V * C * 4);
        gpu->upload(G, wd, dt ? (void *)w16 : (void *)wte, (size_t)V * C * (dt ? 2 : 4));
        lomo_tensor Wc = wrap(wte, LOMO_F32, V, C), Wg = wrap(wd, (lomo_dtype)dt, V, C);
        float *xd = dev(NULL, (size_t)N * C);
        int32_t *tokd = idev(tok, N);
        cpu->embed_fwd(X, x, tok, &Wc, N, C);
        gpu->embed_fwd(G, xd, tokd, &Wg, N, C);
        same(dt ? "embedding fwd (bf16 table)" : "embedding fwd", xd, x, (size_t)N * C, 0);
        gpu->free(G, wd); gpu->free(G, xd); gpu->free(G, tokd);
        free(wte); free(x); free(w16);
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
        same("swiglu dg (in place)", dgd, dg, n, 1e-5);
        same("swiglu du", dud, du, n, 1e-5);
        group_done("swiglu");
    }
    {
        float *lg = randv((size_t)N * V, 3), *losses = randv(N, 1), *l2 = randv(N, 1);
        int32_t *tg = (int32_t *)malloc(N * 4);
        for (int i = 0; i < N; i++) tg[i] = i % 7 == 3 ? -100 : tu_randint(V);
        float *lgd = dev(lg, (size_t)N * V), *lossd = dev(NULL, N);
        int32_t *tgd = idev(tg, N);
        cpu->cross_entropy(X, l2, NULL, lg, tg, N, V, 0.01f);
        gpu->cross_entropy(G, lossd, NULL, lgd, tgd, N, V, 0.01f);
        same("cross-entropy losses (no grad)", lossd, l2, N, 1e-5);
        cpu->cross_entropy(X, losses, lg, lg, tg, N, V, 0.01f);
        gpu->cross_entropy(G, lossd, lgd, lgd, tgd, N, V, 0.01f);
        same("cross-entropy losses", lossd, losses, N, 1e-5);
        same("cross-entropy dlogits (in place)", lgd, lg, (size_t)N * V, 1e-4);
        double sc = cpu->sumsq(X, lg, (size_t)N * V), sg = gpu->sumsq(G, lgd, (size_t)N * V);
        CHECK(fabs(sc - sg) <= 1e-9 * sc, "sumsq %.12g vs %.12g", sg, sc);
        int32_t *tok = (int32_t *)malloc(N * 4);
        for (int i = 0; i < N; i++) tok[i] = tu_randint(V / 50);   /* repeats */
        float *dx = randv((size_t)N * C, 1), *dwe = randv((size_t)V * C, 1);
        float *dxd = dev(dx, (size_t)N * C), *dwed = dev(dwe, (size_t)V * C);   /* += onto random values */
        int32_t *tokd = idev(tok, N);
        cpu->embed_bwd(X, dwe, dx, tok, N, C);
        gpu->embed_bwd(G, dwed, dxd, tokd, N, C);
        same("embedding bwd (scatter-add)", dwed, dwe, (size_t)V * C, 1e-5);
        group_done("cross-entropy, embedding bwd");
    }
    for (int dt = LOMO_F32; dt <= LOMO_F16; dt++) {   /* sum of squares of stored weights */
        const size_t n = 100003;
        float *w = randv(n, 0.7);
        uint16_t *w16 = (uint16_t *)malloc(n * 2);
        for (size_t i = 0; i < n; i++) if (dt) { w16[i] = to16((lomo_dtype)dt, w[i]); w[i] = from16((lomo_dtype)dt, w16[i]); }
        void *wd = gpu->alloc(G, n * 4);
        gpu->upload(G, wd, dt ? (void *)w16 : (void *)w, n * (dt ? 2 : 4));
        lomo_tensor Wc = wrap(w, LOMO_F32, (int64_t)n, 0), Wg = wrap(wd, (lomo_dtype)dt, (int64_t)n, 0);
        double pc = cpu->param_sumsq(X, &Wc), pg = gpu->param_sumsq(G, &Wg);
        CHECK(fabs(pc - pg) <= 1e-9 * pc, "param_sumsq (dtype %d) %.12g vs %.12g", dt, pg, pc);
        gpu->free(G, wd); free(w); free(w16);
    }
    group_done("sums");
}

static int attn_mode(int m);
static void test_attention(void) {
    const int B = 2, T = 67, N = B * T;
    void *X = cpu->ctx, *G = gpu->ctx;
    static const int heads[][2] = {{6, 2}, {4, 4}}, hds[] = {64, 80, 128, 256};
    int am = attn_mode(1);   /* the fp32 kernels: flash has its own test (test_flash) */
    printf("RoPE and attention vs CPU:\n");
    for (int hi = 0; hi < 4; hi++)
        for (int gi = 0; gi < 2; gi++) {
            int hd = hds[hi], nh = heads[gi][0], nkv = heads[gi][1];
            char nm[96], tag[48];
            snprintf(tag, sizeof tag, "hd %d, %s %d/%d", hd, nh == nkv ? "MHA" : "GQA", nh, nkv);
            size_t nq = (size_t)N * nh * hd, nk = (size_t)N * nkv * hd;
            float *q = randv(nq, 1), *k = randv(nk, 1), *v = randv(nk, 1), *dout = randv(nq, 1), *q0 = (float *)malloc(nq * 4);
            float *o = randv(nq, 1), *lse = randv((size_t)N * nh, 1), *dq = randv(nq, 1), *dk = randv(nk, 1), *dv = randv(nk, 1);
            float inv[LOMO_CU__MAX_HD / 2];
            lomo_config c;
            lomo_config_default(&c, nh * hd, 8, 1, nh, nkv, 8);
            c.head_dim = hd; c.rope_theta = 10000.0f;
            lomo__rope_inv_freq(&c, inv);
            memcpy(q0, q, nq * 4);
            float *invd = dev(inv, (size_t)hd / 2), *qd = dev(q, nq), *kd = dev(k, nk), *vd = dev(v, nk), *dod = dev(dout, nq);
            float *od = dev(NULL, nq), *lsed = dev(NULL, (size_t)N * nh), *dqd = dev(NULL, nq), *dkd = dev(NULL, nk), *dvd = dev(NULL, nk);
            cpu->rope(X, q, inv, B, T, nh, hd, 0);
            gpu->rope(G, qd, invd, B, T, nh, hd, 0);
            snprintf(nm, sizeof nm, "rope (%s)", tag); same(nm, qd, q, nq, 1e-5);
            cpu->attn_fwd(X, o, lse, q, k, v, B, T, nh, nkv, hd);
            gpu->attn_fwd(G, od, lsed, qd, kd, vd, B, T, nh, nkv, hd);
            snprintf(nm, sizeof nm, "attention fwd (%s)", tag); same(nm, od, o, nq, 1e-4);
            same("attention lse", lsed, lse, (size_t)N * nh, 1e-5);
            cpu->attn_bwd(X, dq, dk, dv, dout, q, k, v, o, lse, B, T, nh, nkv, hd);
            gpu->attn_bwd(G, dqd, dkd, dvd, dod, qd, kd, vd, od, lsed, B, T, nh, nkv, hd);
            same("attention dq", dqd, dq, nq, 1e-4);
            same("attention dk", dkd, dk, nk, 1e-4);
            same("attention dv", dvd, dv, nk, 1e-4);
            cpu->rope(X, q, inv, B, T, nh, hd, 1);   /* the inverse rotation (backward), and it undoes the forward */
            gpu->rope(G, qd, invd, B, T, nh, hd, 1);
            same("rope inverse", qd, q, nq, 1e-5);
            same("rope inverse restores q", qd, q0, nq, 1e-5);
            float *bufs[] = {invd, qd, kd, vd, dod, od, lsed, dqd, dkd, dvd};
            for (int i = 0; i < 10; i++) gpu->free(G, bufs[i]);
            free(q); free(k); free(v); free(dout); free(q0); free(o); free(lse); free(dq); free(dk); free(dv);
            group_done(tag);
        }
    attn_mode(am);
}

/* ---- tensor-core flash attention (lomo_cuda.cuh) ----
   attn_mode: the backend's attention path (what LOMO_CUDA_ATTN sets): 1 the fp32 reference
   kernels, 2 flash wherever it can run; returns the previous one. The 1e-4 attention tests
   above and in test_family_ops hold the reference kernels (a bf16 test trainer may have left
   act_dtype 16-bit, which would pick flash). */
static int attn_mode(int m) {
#ifdef LOMO_CUDA_DRY
    (void)m;
    return 0;
#else
    lomo__cu *c = (lomo__cu *)gpu->ctx;
    int old = c->attn_mode;
    c->attn_mode = m;
    return old;
#endif
}

#ifndef LOMO_CUDA_DRY
/* one m16n8k16 tile through the fragment helpers, so a layout mistake shows in one line:
   kind 0: C = A B with A from lomo__cu_frag_a, B from lomo__cu_frag_bt (shared holds B^T);
   kind 1: the same with B from lomo__cu_frag_b (shared holds B);
   kind 2: S = A B^T over two n-tiles (16 x 16), then E = S' V with S' taken from the
           accumulators by lomo__cu_frag_c2a (16 x 8): the P V step of the forward.
   a (16 x 16), b (16 x 16, the first 8 rows or columns used as B), c (16 x 8), all fp32;
   every element of c written from the C-fragment mapping. */
__global__ void test_k_mma_tile(float *c, const float *a, const float *b, int kind) {
    __shared__ __align__(16) __nv_bfloat16 sa[16 * 24], sb[16 * 24];
    int lane = threadIdx.x, gq = lane >> 2, tq = lane & 3;
    for (int i = lane; i < 256; i += 32) {
        sa[(i / 16) * 24 + i % 16] = __float2bfloat16_rn(a[i]);
        sb[(i / 16) * 24 + i % 16] = __float2bfloat16_rn(b[i]);
    }
    __syncwarp();
    float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    uint32_t fa[4], fb[2];
    lomo__cu_frag_a(fa, sa, 24, 0, 0);
    if (kind == 0) { lomo__cu_frag_bt(fb, sb, 24, 0, 0); lomo__cu_mma(d, fa, fb); }
    else if (kind == 1) { lomo__cu_frag_b(fb, sb, 24, 0, 0); lomo__cu_mma(d, fa, fb); }
    else {
        float s0[4] = {0.0f, 0.0f, 0.0f, 0.0f}, s1[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        lomo__cu_frag_bt(fb, sb, 24, 0, 0); lomo__cu_mma(s0, fa, fb);   /* S columns 0-7: rows 0-7 of b */
        lomo__cu_frag_bt(fb, sb, 24, 8, 0); lomo__cu_mma(s1, fa, fb);   /* S columns 8-15: rows 8-15 */
        uint32_t fs[4];
        lomo__cu_frag_c2a(fs, s0, s1);
        lomo__cu_frag_b(fb, sb, 24, 0, 0);                              /* V = b (16 x first 8 columns) */
        lomo__cu_mma(d, fs, fb);
    }
    c[gq * 8 + 2 * tq] = d[0];
    c[gq * 8 + 2 * tq + 1] = d[1];
    c[(gq + 8) * 8 + 2 * tq] = d[2];
    c[(gq + 8) * 8 + 2 * tq + 1] = d[3];
}
static double bf(float x) { return (double)lomo_bf16_to_f32(lomo_f32_to_bf16(x)); }
static void test_mma_tile(void) {
    static const char *what[] = {"mma tile: frag_a x frag_bt (B^T in shared)", "mma tile: frag_a x frag_b (B in shared)",
                                 "mma tile: frag_c2a chain (S = A B^T, then S V)"};
    float a[256], b[256];
    printf("tensor-core fragments (one m16n8k16 tile vs a host product):\n");
    for (int kind = 0; kind < 3; kind++) {
        double ref[128], mx = 0.0, err = 0.0;
        tu_fill(a, 256, 1.0);
        tu_fill(b, 256, 1.0);
        for (int i = 0; i < 16; i++)
            for (int j = 0; j < 8; j++) {
                double s = 0.0;
                if (kind == 2) {
                    for (int n = 0; n < 16; n++) {
                        double sv = 0.0;
                        for (int k = 0; k < 16; k++) sv += bf(a[i * 16 + k]) * bf(b[n * 16 + k]);
                        s += bf((float)sv) * bf(b[n * 16 + j]);
                    }
                } else
                    for (int k = 0; k < 16; k++) s += bf(a[i * 16 + k]) * (kind == 0 ? bf(b[j * 16 + k]) : bf(b[k * 16 + j]));
                ref[i * 8 + j] = s;
                if (fabs(s) > mx) mx = fabs(s);
            }
        float *ad = dev(a, 256), *bd = dev(b, 256), *cd = dev(NULL, 128);
        test_k_mma_tile<<<1, 32, 0, (cudaStream_t)gpu->stream>>>(cd, ad, bd, kind);
        float *h = host(cd, 128);
        int worst = 0;
        for (int i = 0; i < 128; i++)
            if (fabs(h[i] - ref[i]) > err || h[i] != h[i]) { err = fabs(h[i] - ref[i]); worst = i; }
        err /= mx;
        /* products of bf16 are exact in fp32; 16-term fp32 sums: 1e-5 (kind 2 also rounds S to bf16 on both sides,
           and a tie of rounding can flip one S element by an ulp: 2e-3) */
        double tol = kind == 2 ? 2e-3 : 1e-5;
        CHECK(err <= tol, "%s: rel err %.3g at row %d col %d (got %g, want %g): the fragment mapping is wrong", what[kind],
              err, worst / 8, worst % 8, h[worst], ref[worst]);
        printf("  %-48s rel err %.2e\n", what[kind], err);
        free(h);
        gpu->free(gpu->ctx, ad); gpu->free(gpu->ctx, bd); gpu->free(gpu->ctx, cd);
    }
    group_done("mma tile");
}
#endif

/* flash vs the CPU backend (exact attention) and vs the fp32 reference kernels, at each
   head_dim flash serves, with GQA, windows, soft-cap and T off the tiles; bounds as the
   CPU model's bf16 bounds (tests/test_flash_model.c): out 2e-2, lse 5e-3, dq/dk/dv 3e-2;
   flash vs tests/flash_model.h (the same tiling and rounding on the CPU) to the same
   bounds, printed so the distance shows; the reference kernels vs the CPU 1e-4; two
   flash backwards bit-identical (no atomics). */
static void test_flash(void) {
    static const struct { int B, T, nh, nkv; double smul; float cap; int window; } cs[] = {
        {2, 77, 6, 2, 1.0, 0.0f, 0}, {1, 131, 4, 4, 1.0, 0.0f, 40}, {1, 99, 4, 1, 0.8, 2.0f, 33}, {3, 5, 2, 1, 1.0, 0.0f, 0},
    };
    static const int hds[] = {64, 80, 96, 128};
    void *X = cpu->ctx, *G = gpu->ctx;
    int am = attn_mode(2);
#ifndef LOMO_CUDA_DRY
    if (((lomo__cu *)G)->cc_major < 8) {
        printf("flash attention: compute capability %d < 8: not served here (the reference kernels run)\n",
               ((lomo__cu *)G)->cc_major);
        attn_mode(am);
        return;
    }
#endif
    printf("flash attention (bf16 tensor cores) vs CPU, vs the fp32 kernels, vs the CPU model:\n");
    for (int hi = 0; hi < 4; hi++)
        for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
            int hd = hds[hi], B = cs[ci].B, T = cs[ci].T, nh = cs[ci].nh, nkv = cs[ci].nkv, window = cs[ci].window;
            float scale = (float)(cs[ci].smul / sqrt((double)hd)), cap = cs[ci].cap;
            int plain = cap == 0.0f && window == 0;
            size_t nq = (size_t)B * T * nh * hd, nk = (size_t)B * T * nkv * hd, nr = (size_t)B * T * nh;
            char tag[96], nm[160];
            snprintf(tag, sizeof tag, "hd %d T %d %d/%d%s cap %.0f win %d", hd, T, nh, nkv, plain ? " plain" : "", (double)cap, window);
            float *q = randv(nq, 1.5), *k = randv(nk, 1.5), *v = randv(nk, 1), *dout = randv(nq, 1);
            float *o = randv(nq, 1), *lse = randv(nr, 1), *dq = randv(nq, 1), *dk = randv(nk, 1), *dv = randv(nk, 1);
            float *mo = randv(nq, 1), *ml = randv(nr, 1), *mdq = randv(nq, 1), *mdk = randv(nk, 1), *mdv = randv(nk, 1);
            float *qd = dev(q, nq), *kd = dev(k, nk), *vd = dev(v, nk), *dod = dev(dout, nq);
            float *od = dev(NULL, nq), *ld = dev(NULL, nr), *dqd = dev(NULL, nq), *dkd = dev(NULL, nk), *dvd = dev(NULL, nk);
            float *od2 = dev(NULL, nq), *ld2 = dev(NULL, nr), *dqd2 = dev(NULL, nq), *dkd2 = dev(NULL, nk), *dvd2 = dev(NULL, nk);
            cpu->attn_ex_fwd(X, o, lse, q, k, v, B, T, nh, nkv, hd, scale, cap, window);
            cpu->attn_ex_bwd(X, dq, dk, dv, dout, q, k, v, o, lse, B, T, nh, nkv, hd, scale, cap, window);
            fm_round = 1;
            fm_fwd(mo, ml, q, k, v, B, T, nh, nkv, hd, scale, cap, window);
            fm_bwd(mdq, mdk, mdv, dout, q, k, v, mo, ml, B, T, nh, nkv, hd, scale, cap, window);
            attn_mode(2);
            if (plain) {
                gpu->attn_fwd(G, od, ld, qd, kd, vd, B, T, nh, nkv, hd);
                gpu->attn_bwd(G, dqd, dkd, dvd, dod, qd, kd, vd, od, ld, B, T, nh, nkv, hd);
            } else {
                gpu->attn_ex_fwd(G, od, ld, qd, kd, vd, B, T, nh, nkv, hd, scale, cap, window);
                gpu->attn_ex_bwd(G, dqd, dkd, dvd, dod, qd, kd, vd, od, ld, B, T, nh, nkv, hd, scale, cap, window);
            }
            const float *fl[5] = {od, ld, dqd, dkd, dvd}, *cref[5] = {o, lse, dq, dk, dv}, *mref[5] = {mo, ml, mdq, mdk, mdv};
            static const char *nmv[5] = {"out", "lse", "dq", "dk", "dv"};
            size_t cnt[5] = {nq, nr, nq, nk, nk};
            double tol[5] = {2e-2, 5e-3, 3e-2, 3e-2, 3e-2};
            for (int i = 0; i < 5; i++) {
                snprintf(nm, sizeof nm, "flash %s (%s)", nmv[i], tag); same(nm, fl[i], cref[i], cnt[i], tol[i]);
                snprintf(nm, sizeof nm, "flash %s vs CPU model", nmv[i]); same(nm, fl[i], mref[i], cnt[i], tol[i]);
            }
            /* deterministic: the same backward again, bit for bit */
            if (plain) gpu->attn_bwd(G, dqd2, dkd2, dvd2, dod, qd, kd, vd, od, ld, B, T, nh, nkv, hd);
            else gpu->attn_ex_bwd(G, dqd2, dkd2, dvd2, dod, qd, kd, vd, od, ld, B, T, nh, nkv, hd, scale, cap, window);
            {
                float *a1 = host(dqd, nq), *a2 = host(dqd2, nq), *b1 = host(dkd, nk), *b2 = host(dkd2, nk), *c1 = host(dvd, nk), *c2 = host(dvd2, nk);
                CHECK(!memcmp(a1, a2, nq * 4) && !memcmp(b1, b2, nk * 4) && !memcmp(c1, c2, nk * 4),
                      "flash backward (%s) not bit-identical between two runs", tag);
                free(a1); free(a2); free(b1); free(b2); free(c1); free(c2);
            }
            /* the reference kernels on the same data (LOMO_CUDA_ATTN=ref) */
            attn_mode(1);
            gpu->attn_ex_fwd(G, od2, ld2, qd, kd, vd, B, T, nh, nkv, hd, scale, cap, window);
            gpu->attn_ex_bwd(G, dqd2, dkd2, dvd2, dod, qd, kd, vd, od2, ld2, B, T, nh, nkv, hd, scale, cap, window);
            const float *rf[5] = {od2, ld2, dqd2, dkd2, dvd2};
            for (int i = 0; i < 5; i++) {
                snprintf(nm, sizeof nm, "fp32 kernels %s", nmv[i]); same(nm, rf[i], cref[i], cnt[i], 1e-4);
                float *fh = host(fl[i], cnt[i]), *rh = host(rf[i], cnt[i]);
                double e = tu_rel_err(fh, rh, cnt[i]);
                CHECK(e <= tol[i], "flash vs fp32 kernels %s (%s): rel err %.3g > %.1g", nmv[i], tag, e, tol[i]);
                free(fh); free(rh);
            }
            float *bufs[] = {qd, kd, vd, dod, od, ld, dqd, dkd, dvd, od2, ld2, dqd2, dkd2, dvd2};
            for (int i = 0; i < 14; i++) gpu->free(G, bufs[i]);
            float *hb[] = {q, k, v, dout, o, lse, dq, dk, dv, mo, ml, mdq, mdk, mdv};
            for (int i = 0; i < 14; i++) free(hb[i]);
            group_done(tag);
        }
    attn_mode(am);
}

/* one rule on one tensor, CPU vs GPU on identical inputs */
static void rule_case(int rule, lomo_dtype dt, int sr, int R, int K) {
    static const char *rn[] = {"lomo", "adalomo", "adamw"}, *dn[] = {"fp32", "bf16", "f16"};
    void *X = cpu->ctx, *G = gpu->ctx;
    size_t n = (size_t)R * (K ? K : 1), es = dt == LOMO_F32 ? 4 : 2;
    float *pf = randv(n, 0.5), *g = randv(n, 0.3);
    void *pc = malloc(n * 4), *p0 = malloc(n * 4), *ph = malloc(n * 4);
    float *s1 = (float *)calloc(n, 4), *s2 = (float *)calloc(n, 4);
    char nm[96];
    for (size_t i = 0; i < n; i++) {
        if (dt == LOMO_F32) ((float *)pc)[i] = pf[i];
        else ((uint16_t *)pc)[i] = to16(dt, pf[i]);
    }
    memcpy(p0, pc, n * es);
    void *pd = gpu->alloc(G, n * es);
    gpu->upload(G, pd, pc, n * es);
    float *gd = dev(g, n), *s1d = dev(NULL, n), *s2d = dev(NULL, n);
    lomo_tensor Pc = wrap(pc, dt, R, K), Pg = wrap(pd, dt, R, K);
    lomo_update_args a;
    memset(&a, 0, sizeof a);
    a.rule = rule; a.lr = rule == LOMO_OPT_ADAMW ? 0.02f : 0.2f; a.inv_loss_scale = 0.5f; a.clip_value = 0.15f;
    a.clip_coef = 0.8f; a.weight_decay = 0.1f; a.step = 3; a.eps1 = 1e-30f; a.eps2 = 1e-3f; a.clip_threshold = 1;
    a.decay_rate = -0.8f; a.beta1 = 0.9f; a.beta2 = 0.999f; a.eps = 1e-8f;
    a.stochastic = sr; a.seed = 0x5EEDull; a.stream = 12345; a.shard_off = 0; a.param_sumsq = -1.0;   /* < 0: from p */
    cpu->update(X, &Pc, g, s1, s2, &a);
    gpu->update(G, &Pg, gd, s1d, s2d, &a);
    gpu->download(G, ph, pd, n * es);
    snprintf(nm, sizeof nm, "update %s %s%s%s", rn[rule], dn[dt], sr ? " SR" : "", K ? "" : " (1-D)");
    {
        lomo_tensor like = wrap(pc, dt, R, K);
        double num = 0, den = 0, worst_ulps = 0;
        size_t differ = 0, moved = 0;
        for (size_t i = 0; i < n; i++) {
            double x0 = sc_at(&like, p0, i), xc = sc_at(&like, pc, i), xg = sc_at(&like, ph, i);
            num += (xg - xc) * (xg - xc); den += (xc - x0) * (xc - x0);
            moved += xc != x0; differ += xg != xc;
            if (dt != LOMO_F32 && xg != xc) worst_ulps = fmax(worst_ulps, fabs(xg - xc) / sc_ulp(dt, fmax(fabs(xg), fabs(xc)) * 0.999));
        }
        double err = den > 0 ? sqrt(num / den) : 1.0;
        CHECK(moved >= n / 2, "%s: the update moved only %zu of %zu weights (the test could not see a skipped one)", nm, moved, n);
        if (dt == LOMO_F32) CHECK(err <= 1e-5, "%s: change rel err %.3g", nm, err);
        else CHECK(worst_ulps <= 1.0 && differ <= n / 50, "%s: %zu of %zu weights differ, worst by %.1f ulp", nm, differ, n, worst_ulps);
        printf("  %-36s change err %.2e, %zu/%zu weights differ", nm, err, differ, n);
    }
    if (rule != LOMO_OPT_LOMO) {   /* the rule's state */
        float *h1 = host(s1d, n), *h2 = host(s2d, n);
        double e1 = tu_rel_err(h1, s1, n), e2 = tu_rel_err(h2, s2, n);
        CHECK(e1 <= 1e-5 && e2 <= 1e-5, "%s: state rel err %.3g / %.3g", nm, e1, e2);
        printf(", state %.1e / %.1e", e1, e2);
        free(h1); free(h2);
    }
    printf("\n");
    gpu->free(G, pd); gpu->free(G, gd); gpu->free(G, s1d); gpu->free(G, s2d);
    free(pf); free(g); free(pc); free(p0); free(ph); free(s1); free(s2);
}
static void test_rules_kernels(void) {
    printf("update rules vs CPU (identical inputs):\n");
    for (int dt = LOMO_F32; dt <= LOMO_F16; dt++)
        for (int sr = 0; sr <= (dt != LOMO_F32); sr++)
            for (int rule = LOMO_OPT_LOMO; rule <= LOMO_OPT_ADAMW; rule++) {
                rule_case(rule, (lomo_dtype)dt, sr, 37, 29);
                if (rule == LOMO_OPT_ADALOMO) rule_case(rule, (lomo_dtype)dt, sr, 53, 0);
            }
    group_done("update rules");
}

/* 0.6: linear_update (the LOMO rule fused with dW) on the GPU against the GPU's own hook
   path (matmul_bwd_w into a whole gradient, then update) on identical inputs, and
   against the CPU's hook path. fp32: the GEMM writes into w (beta = 1 - lr wd, alpha =
   -lr coef / scale): only fp32 rounding apart, 1e-5 of the change. 16-bit: the same dW
   GEMM and the same rounding hash per element: in one block bitwise equal to the GPU
   hook path; in blocks of 5 rows (37 = 7 x 5 + 2, cuBLAS may sum a narrower GEMM in
   another order) at most 2% of the weights differ; against the CPU as the update rules (at most 1
   ulp, at most 2% of the weights, from the GEMM's 16-bit operands: bounds of
   test_matmuls and rule_case). */
static void fused_case(lomo_dtype dt, int sr, int rows) {
    static const char *dn[] = {"fp32", "bf16", "f16"};
    const int N = 29, K = 24, O = 37;
    void *X = cpu->ctx, *G = gpu->ctx;
    size_t n = (size_t)O * K, es = dt == LOMO_F32 ? 4 : 2;
    float *pf = randv(n, 0.5), *dy = randv((size_t)N * O, 1), *x = randv((size_t)N * K, 1), *g = (float *)malloc(4 * n);
    void *pc = malloc(n * 4), *p0 = malloc(n * 4), *pa = malloc(n * 4), *pb = malloc(n * 4);
    for (size_t i = 0; i < n; i++) {
        if (dt == LOMO_F32) ((float *)pc)[i] = pf[i];
        else ((uint16_t *)pc)[i] = to16(dt, pf[i]);
    }
    memcpy(p0, pc, n * es);
    void *wa = gpu->alloc(G, n * es), *wb = gpu->alloc(G, n * es);
    gpu->upload(G, wa, pc, n * es); gpu->upload(G, wb, pc, n * es);
    float *dyd = dev(dy, (size_t)N * O), *xd = dev(x, (size_t)N * K), *gd = dev(NULL, n);
    size_t sb = 4 * (size_t)N * (K + O);
    void *scratch = gpu->alloc(G, sb);
    gpu->set_scratch(G, scratch, sb, dt);
    float *cs = (float *)malloc(sb);
    cpu->set_scratch(X, cs, sb, dt);
    lomo_tensor Ta = wrap(wa, dt, O, K), Tb = wrap(wb, dt, O, K), Tc = wrap(pc, dt, O, K);
    lomo_update_args a;
    memset(&a, 0, sizeof a);
    a.rule = LOMO_OPT_LOMO; a.lr = 0.05f; a.inv_loss_scale = 0.5f; a.clip_coef = 0.8f; a.weight_decay = 0.1f; a.step = 2;
    a.stochastic = sr; a.seed = 0x5EEDull; a.stream = 777; a.param_sumsq = -1.0;
    char nm[96];
    snprintf(nm, sizeof nm, "linear_update %s%s, %d-row blocks", dn[dt], sr ? " SR" : "", rows);
    if (!gpu->linear_update) { printf("  %s: the backend has no linear_update\n", nm); }
    else {
        gpu->linear_update(G, &Ta, dyd, xd, N, K, O, gd, (size_t)rows * K + 3, &a);   /* fused */
        gpu->matmul_bwd_w(G, gd, dyd, xd, N, K, O, 0);                              /* hook path */
        gpu->update(G, &Tb, gd, NULL, NULL, &a);
        cpu->matmul_bwd_w(X, g, dy, x, N, K, O, 0);
        cpu->update(X, &Tc, g, NULL, NULL, &a);
        gpu->download(G, pa, wa, n * es); gpu->download(G, pb, wb, n * es);
        lomo_tensor like = wrap(pc, dt, O, K);
        double num = 0, den = 0, cnum = 0, worst_ulps = 0;
        size_t bitdiff = 0, cdiff = 0, moved = 0;
        for (size_t i = 0; i < n; i++) {
            double x0 = sc_at(&like, p0, i), xa = sc_at(&like, pa, i), xb = sc_at(&like, pb, i), xc = sc_at(&like, pc, i);
            num += (xa - xb) * (xa - xb); den += (xb - x0) * (xb - x0); cnum += (xa - xc) * (xa - xc);
            bitdiff += memcmp((char *)pa + i * es, (char *)pb + i * es, es) != 0;
            cdiff += xa != xc; moved += xb != x0;
            if (dt != LOMO_F32 && xa != xc) worst_ulps = fmax(worst_ulps, fabs(xa - xc) / sc_ulp(dt, fmax(fabs(xa), fabs(xc)) * 0.999));
        }
        double err = den > 0 ? sqrt(num / den) : 1.0, cerr = den > 0 ? sqrt(cnum / den) : 1.0;
        CHECK(gpu->check(G) == 0, "%s: %s", nm, lomo_error());
        CHECK(moved >= n / 2, "%s: the update moved only %zu of %zu weights", nm, moved, n);
        if (dt == LOMO_F32) CHECK(err <= 1e-5 && cerr <= 1e-5, "%s: change err vs GPU hook %.3g, vs CPU %.3g", nm, err, cerr);
        else CHECK((rows < O ? bitdiff <= n / 50 : bitdiff == 0) && worst_ulps <= 1.0 && cdiff <= n / 50,
                   "%s: %zu differ from the GPU hook path; vs CPU %zu differ, worst %.1f ulp", nm, bitdiff, cdiff, worst_ulps);
        printf("  %-36s vs GPU hook path: change err %.2e, %zu bits differ; vs CPU %.2e\n", nm, err, bitdiff, cerr);
    }
    gpu->set_scratch(G, NULL, 0, LOMO_F32); cpu->set_scratch(X, NULL, 0, LOMO_F32);
    gpu->free(G, scratch); gpu->free(G, wa); gpu->free(G, wb); gpu->free(G, dyd); gpu->free(G, xd); gpu->free(G, gd);
    free(pf); free(dy); free(x); free(g); free(pc); free(p0); free(pa); free(pb); free(cs);
}
static void test_fused_update(void) {
    printf("fused LOMO update (linear_update) vs the hook path:\n");
    fused_case(LOMO_F32, 0, 37);
    fused_case(LOMO_BF16, 0, 5);
    fused_case(LOMO_BF16, 1, 5);
    fused_case(LOMO_BF16, 1, 37);
    fused_case(LOMO_F16, 1, 5);
    group_done("fused update");
}

/* one tensor above 2^31 elements: 64-bit indexing in the elementwise kernels and sums */
static void test_big(void) {
    const int64_t V = 1048577, C = 2049, n = V * C;   /* 2,148,534,273 > 2^31 */
    const size_t tail = 3 * (size_t)C;
    void *G = gpu->ctx;
    size_t fr = 0, tot = 0;
    printf("one tensor of %lld elements (> 2^31):\n", (long long)n);
    if (lomo_cuda_mem_info(gpu, &fr, &tot) || fr < ((size_t)24 << 30)) {
        printf("  skipped: %.1f GB free, 24 needed\n", fr / 1e9);
        return;
    }
    uint16_t *w = (uint16_t *)gpu->alloc(G, (size_t)n * 2);
    float *gr = (float *)gpu->alloc(G, (size_t)n * 4);
    CHECK(w && gr, "big: no memory");
    if (!w || !gr) return;
    gpu->zero(G, w, (size_t)n * 2);
    gpu->zero(G, gr, (size_t)n * 4);
    uint16_t *wt = (uint16_t *)malloc(tail * 2), *back = (uint16_t *)malloc(tail * 2);
    float *gt = randv(tail, 1), *wf = randv(tail, 1);
    double ss_w = 0, ss_g = 0;
    for (size_t i = 0; i < tail; i++) {
        wt[i] = lomo_f32_to_bf16(wf[i]); wf[i] = lomo_bf16_to_f32(wt[i]);
        ss_w += (double)wf[i] * wf[i]; ss_g += (double)gt[i] * gt[i];
    }
    gpu->upload(G, w + (n - (int64_t)tail), wt, tail * 2);      /* the last 3 rows */
    gpu->upload(G, gr + (n - (int64_t)tail), gt, tail * 4);
    lomo_tensor W = wrap(w, LOMO_BF16, V, C);
    double pg = gpu->param_sumsq(G, &W), sg = gpu->sumsq(G, gr, (size_t)n);
    CHECK(fabs(pg - ss_w) <= 1e-9 * ss_w && fabs(sg - ss_g) <= 1e-9 * ss_g, "big sums: %.10g vs %.10g, %.10g vs %.10g", pg, ss_w, sg, ss_g);
    /* embedding forward of the last two rows and the first */
    int32_t tok[3] = {(int32_t)(V - 1), 0, (int32_t)(V - 2)};
    int32_t *tokd = idev(tok, 3);
    float *xd = dev(NULL, 3 * (size_t)C);
    gpu->embed_fwd(G, xd, tokd, &W, 3, (int)C);
    float *x = host(xd, 3 * (size_t)C);
    int ok = 1;
    for (int64_t c = 0; c < C; c++)
        ok &= x[c] == wf[2 * C + c] && x[C + c] == 0.0f && x[2 * C + c] == wf[C + c];
    CHECK(ok, "big: embedding fwd of rows V-1, 0, V-2");
    /* LOMO update: the tail moves by lr * g, rounded to nearest as on the CPU */
    lomo_update_args a;
    memset(&a, 0, sizeof a);
    a.rule = LOMO_OPT_LOMO; a.lr = 0.5f; a.inv_loss_scale = 1; a.clip_coef = 1; a.param_sumsq = -1.0;
    gpu->update(G, &W, gr, NULL, NULL, &a);
    gpu->download(G, back, w + (n - (int64_t)tail), tail * 2);
    ok = 1;
    for (size_t i = 0; i < tail; i++) ok &= back[i] == lomo_f32_to_bf16(wf[i] * 1.0f - 0.5f * gt[i]);
    CHECK(ok, "big: LOMO update of the last elements");
    /* embedding backward into the last row of an fp32 table of n elements */
    float *dx = randv(3 * (size_t)C, 1);
    float *dxd = dev(dx, 3 * (size_t)C);
    int32_t tb[3] = {(int32_t)(V - 1), (int32_t)(V - 1), 0};
    int32_t *tbd = idev(tb, 3);
    gpu->zero(G, gr, (size_t)n * 4);
    gpu->embed_bwd(G, gr, dxd, tbd, 3, (int)C);
    float *last = host(gr + (n - C), (size_t)C);
    double e = 0;
    for (int64_t c = 0; c < C; c++) e = fmax(e, fabs(last[c] - (dx[c] + dx[C + c])));
    CHECK(e <= 1e-6, "big: embedding bwd into the last row: %g", e);
    printf("  sums, embedding fwd/bwd at the last rows, LOMO update of the tail: %s\n", ok && e <= 1e-6 ? "ok" : "WRONG");
    gpu->free(G, w); gpu->free(G, gr); gpu->free(G, tokd); gpu->free(G, xd); gpu->free(G, dxd); gpu->free(G, tbd);
    free(wt); free(back); free(gt); free(wf); free(x); free(dx); free(last);
    group_done("big tensor");
}

/* a refused op is reported once and cleared; a fault is tested in a child process */
static void test_errors(int quick) {
    void *G = gpu->ctx;
    printf("errors:\n");
    float *q = dev(NULL, 1024);
    gpu->attn_fwd(G, q, q, q, q, q, 1, 1, 1, 1, LOMO_CU__MAX_HD + 8);   /* refused: head_dim too large */
    CHECK(gpu->check(G) == -1 && strstr(lomo_error(), "head_dim"), "a refused op must fail check(): %s", lomo_error());
    printf("  refused op: %s\n", lomo_error());
    CHECK(gpu->check(G) == 0, "the error must be cleared once reported: %s", lomo_error());
    float ones[4] = {1, 2, 3, 4};
    gpu->upload(G, q, ones, sizeof ones);
    CHECK(gpu->sumsq(G, q, 4) == 30.0, "the backend works after a reported error");
    gpu->free(G, q);
    if (!quick) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "%s --fault", self);
        int rc = system(cmd);
        CHECK(rc == 0, "the fault test (%s) failed: %d", cmd, rc);
    }
    int count = 0;
    cudaGetDeviceCount(&count);
    if (count < 2) { printf("  two devices in one process: skipped (%d device)\n", count); return; }
    const lomo_backend *g1 = lomo_cuda_backend(1);
    CHECK(g1 != NULL, "second device: %s", lomo_error());
    if (!g1) return;
    cudaSetDevice(0);   /* the current device is the other one: the backend must not care */
    void *p = g1->alloc(g1->ctx, 4096);
    cudaPointerAttributes at;
    CHECK(p && cudaPointerGetAttributes(&at, p) == cudaSuccess && at.device == 1, "an allocation of backend 1 must be on device 1");
    g1->upload(g1->ctx, p, ones, sizeof ones);
    cudaSetDevice(0);
    CHECK(g1->sumsq(g1->ctx, (const float *)p, 4) == 30.0 && g1->check(g1->ctx) == 0, "ops of backend 1 with device 0 current: %s", lomo_error());
    g1->free(g1->ctx, p);
    printf("  two devices: allocations and ops stay on their backend's device\n");
}
static int fault_main(void) {
    void *G = gpu->ctx;
    float *x = dev(NULL, 64), *w = dev(NULL, 16 * 64);
    int32_t bad = 1 << 30, *tokd = idev(&bad, 1);
    lomo_tensor W = wrap(w, LOMO_F32, 16, 64);
    gpu->embed_fwd(G, x, tokd, &W, 1, 64);   /* reads 2^36 floats past the table: an illegal address */
    int rc = gpu->check(G);
    printf("fault reported: %s\n", lomo_error());
    CHECK(rc == -1, "a faulting kernel must fail the next check()");
    CHECK(strstr(lomo_error(), "lomo__cu_embed_fwd") != NULL, "the message must name the op: %s", lomo_error());
    if (strstr(lomo_error(), "lost")) {
        CHECK(gpu->check(G) == -1, "a lost context stays reported");
        CHECK(lomo_cuda_release(gpu, 1) == 0, "release: %s", lomo_error());
        gpu = lomo_cuda_backend(0);
        CHECK(gpu != NULL, "a fresh backend after the reset: %s", lomo_error());
        if (!gpu) return tu_done("test_cuda_fault");
    } else {
        printf("fault was not sticky on this platform: continuing on the same context\n");
    }
    float v[3] = {1, 2, 2}, *vd = dev(v, 3);
    CHECK(gpu->sumsq(gpu->ctx, vd, 3) == 9.0 && gpu->check(gpu->ctx) == 0, "the backend works again: %s", lomo_error());
    return tu_done("test_cuda_fault");
}


/* 0.5: the Qwen3 / Gemma ops against the CPU backend (fp32 1e-4) */
static void test_family_ops(void) {
    const int B = 2, T = 37, nh = 4, nkv = 2, hd = 80, N = B * T, C = 70, V = 1001;
    void *X = cpu->ctx, *G = gpu->ctx;
    printf("Qwen3 / Gemma ops vs CPU:\n");
    {   /* RMSNorm with the (1 + w) gain */
        float *x = randv((size_t)N * C, 1), *w = randv(C, 0.3), *dy = randv((size_t)N * C, 1);
        float *y = randv((size_t)N * C, 1), *r = randv(N, 1), *dx = randv((size_t)N * C, 1), *dw = randv(C, 1);
        float *dx0 = (float *)malloc((size_t)N * C * 4);
        memcpy(dx0, dx, (size_t)N * C * 4);
        float *dX = dev(x, (size_t)N * C), *dW = dev(w, C), *dDY = dev(dy, (size_t)N * C), *dY = dev(NULL, (size_t)N * C);
        float *dR = dev(NULL, N), *dDX = dev(dx0, (size_t)N * C), *dDW = dev(NULL, C);
        lomo_tensor Wc = wrap(w, LOMO_F32, C, 0), Wg = wrap(dW, LOMO_F32, C, 0);
        cpu->rmsnorm_ex_fwd(X, y, r, x, &Wc, N, C, 1e-6f, 1.0f);
        gpu->rmsnorm_ex_fwd(G, dY, dR, dX, &Wg, N, C, 1e-6f, 1.0f);
        same("rmsnorm_ex fwd", dY, y, (size_t)N * C, 1e-4);
        cpu->rmsnorm_ex_bwd(X, dx, dw, dy, x, &Wc, r, N, C, 1.0f);
        gpu->rmsnorm_ex_bwd(G, dDX, dDW, dDY, dX, &Wg, dR, N, C, 1.0f);
        same("rmsnorm_ex dx", dDX, dx, (size_t)N * C, 1e-4);
        same("rmsnorm_ex dw", dDW, dw, C, 1e-4);
        gpu->scale(G, dX, 8.3666f, (size_t)N * C);
        for (int i = 0; i < N * C; i++) x[i] *= 8.3666f;
        same("scale", dX, x, (size_t)N * C, 1e-6);
        free(x); free(w); free(dy); free(y); free(r); free(dx); free(dw); free(dx0);
        gpu->free(G, dX); gpu->free(G, dW); gpu->free(G, dDY); gpu->free(G, dY); gpu->free(G, dR); gpu->free(G, dDX); gpu->free(G, dDW);
    }
    {   /* GeGLU */
        size_t n = (size_t)N * 3 * C;
        float *g = randv(n, 2), *u = randv(n, 1), *dh = randv(n, 1), *h = randv(n, 1), *du = randv(n, 1);
        float *dG = dev(g, n), *dU = dev(u, n), *dH = dev(NULL, n), *dDG = dev(dh, n), *dDU = dev(NULL, n);
        cpu->geglu_fwd(X, h, g, u, n);
        gpu->geglu_fwd(G, dH, dG, dU, n);
        same("geglu fwd", dH, h, n, 1e-4);
        cpu->geglu_bwd(X, dh, du, dh, g, u, n);
        gpu->geglu_bwd(G, dDG, dDU, dDG, dG, dU, n);
        same("geglu dg", dDG, dh, n, 1e-4);
        same("geglu du", dDU, du, n, 1e-4);
        free(g); free(u); free(dh); free(h); free(du);
        gpu->free(G, dG); gpu->free(G, dU); gpu->free(G, dH); gpu->free(G, dDG); gpu->free(G, dDU);
    }
    int am = attn_mode(1);   /* the fp32 kernels at 1e-4 (flash: test_flash) */
    for (int variant = 0; variant < 2; variant++) {   /* attention: soft-capped; capped + window 9 < T */
        size_t nq = (size_t)N * nh * hd, nk = (size_t)N * nkv * hd;
        float scale = 0.07f, cap = variant ? 3.0f : 1.5f;
        int window = variant ? 9 : 0;
        float *q = randv(nq, 1), *k = randv(nk, 1), *v = randv(nk, 1), *dout = randv(nq, 1);
        float *o = randv(nq, 1), *lse = randv((size_t)N * nh, 1), *dq = randv(nq, 1), *dk = randv(nk, 1), *dv = randv(nk, 1);
        float *dQ = dev(q, nq), *dK = dev(k, nk), *dV = dev(v, nk), *dDO = dev(dout, nq), *dO = dev(NULL, nq);
        float *dL = dev(NULL, (size_t)N * nh), *dDQ = dev(NULL, nq), *dDK = dev(NULL, nk), *dDV = dev(NULL, nk);
        cpu->attn_ex_fwd(X, o, lse, q, k, v, B, T, nh, nkv, hd, scale, cap, window);
        gpu->attn_ex_fwd(G, dO, dL, dQ, dK, dV, B, T, nh, nkv, hd, scale, cap, window);
        same(variant ? "attn_ex fwd (cap, window)" : "attn_ex fwd (cap)", dO, o, nq, 1e-4);
        same("attn_ex lse", dL, lse, (size_t)N * nh, 1e-4);
        cpu->attn_ex_bwd(X, dq, dk, dv, dout, q, k, v, o, lse, B, T, nh, nkv, hd, scale, cap, window);
        gpu->attn_ex_bwd(G, dDQ, dDK, dDV, dDO, dQ, dK, dV, dO, dL, B, T, nh, nkv, hd, scale, cap, window);
        same("attn_ex dq", dDQ, dq, nq, 1e-4);
        same("attn_ex dk", dDK, dk, nk, 1e-4);
        same("attn_ex dv", dDV, dv, nk, 1e-4);
        free(q); free(k); free(v); free(dout); free(o); free(lse); free(dq); free(dk); free(dv);
        gpu->free(G, dQ); gpu->free(G, dK); gpu->free(G, dV); gpu->free(G, dDO); gpu->free(G, dO); gpu->free(G, dL);
        gpu->free(G, dDQ); gpu->free(G, dDK); gpu->free(G, dDV);
    }
    {   /* partial rotary (60 of 80 dims) with a longrope attention factor, forward and adjoint */
        size_t n = (size_t)N * nh * hd;
        float ifr[40];
        for (int i = 0; i < 40; i++) ifr[i] = powf(10000.0f, -(float)(2 * i) / 60.0f);
        float *x = randv(n, 1), *dX = dev(x, n), *dF = dev(ifr, 40);
        for (int inv = 0; inv <= 1; inv++) {
            cpu->rope_ex(X, x, ifr, B, T, nh, hd, 60, 1.19f, inv);
            gpu->rope_ex(G, dX, dF, B, T, nh, hd, 60, 1.19f, inv);
            same(inv ? "rope_ex inverse" : "rope_ex", dX, x, n, 1e-5);
        }
        free(x); gpu->free(G, dX); gpu->free(G, dF);
    }
    {   /* soft-capped cross-entropy: capped logits without grad, dlogits in place with */
        float *lg = randv((size_t)N * V, 3), *cl = (float *)malloc((size_t)N * V * 4), *loss = randv(N, 1);
        int32_t *tg = (int32_t *)malloc(N * 4);
        for (int n = 0; n < N; n++) tg[n] = n % 5 == 2 ? -100 : tu_randint(V);
        memcpy(cl, lg, (size_t)N * V * 4);
        float *dLG = dev(lg, (size_t)N * V), *dLS = dev(NULL, N);
        int32_t *dT = idev(tg, N);
        cpu->cross_entropy_softcap(X, loss, NULL, cl, tg, N, V, 0.0f, 2.5f);
        gpu->cross_entropy_softcap(G, dLS, NULL, dLG, dT, N, V, 0.0f, 2.5f);
        same("xent softcap capped logits", dLG, cl, (size_t)N * V, 1e-5);
        same("xent softcap losses", dLS, loss, N, 1e-4);
        gpu->upload(G, dLG, lg, (size_t)N * V * 4);
        cpu->cross_entropy_softcap(X, loss, lg, lg, tg, N, V, 0.01f, 2.5f);
        gpu->cross_entropy_softcap(G, dLS, dLG, dLG, dT, N, V, 0.01f, 2.5f);
        same("xent softcap dlogits", dLG, lg, (size_t)N * V, 1e-4);
        free(lg); free(cl); free(loss); free(tg);
        gpu->free(G, dLG); gpu->free(G, dLS); gpu->free(G, dT);
    }
    attn_mode(am);
}

static void test_steps(void) {
    int nk;
    const sc_case *list = sc_cases(&nk);
    sc_case cases[64];
    memcpy(cases, list, sizeof *list * (size_t)nk);
    cases[nk++] = *sc_flash_case();   /* head_dim 64 bf16: the steps run flash attention on the GPU */
    lomo_model *ckpt_pair[2] = {NULL, NULL};
    printf("whole steps, GPU vs CPU driver (3 steps, compared by the weight changes):\n");
    for (int i = 0; i < nk; i++) {
        const sc_case *k = &cases[i];
        float lc[3], lg[3];
        int kc[3], kg[3];
        lomo_model *m0 = sc_model(k, NULL, NULL), *mc = sc_model(k, NULL, m0), *mg = sc_model(k, gpu, m0);
        CHECK(m0 && mc && mg, "%s: models: %s", k->name, lomo_error());
        if (!m0 || !mc || !mg) continue;
        void **w0 = sc_snapshot(m0);
        CHECK(sc_train(mc, k, 3, lc, kc) == 0, "%s: CPU: %s", k->name, lomo_error());
        CHECK(sc_train(mg, k, 3, lg, kg) == 0, "%s: GPU: %s", k->name, lomo_error());
        sc_result r = sc_compare(w0, mg, mc, 1);
        double lw = 0, ltol = k->dt == LOMO_F32 ? 1e-4 : 2e-2;
        for (int s = 0; s < 3; s++) { lw = fmax(lw, fabs(lc[s] - lg[s]) / fabs(lc[s])); CHECK(kc[s] == kg[s], "%s: skipped differs", k->name); }
        printf("  %-42s losses %.1e, worst change err %.2e (its bound %.1e, %s); weights %.1e\n", k->name, lw, r.worst,
               r.worst_tol, r.worst_name ? r.worst_name : "-", r.weight_err);
        CHECK(lw <= ltol, "%s: losses GPU vs CPU %.3g > %.0e", k->name, lw, ltol);
        CHECK(r.n_bad == 0 && r.n_weak == 0 && r.n_checked > 0, "%s: %d tensors over their bound, %d undiscriminating", k->name, r.n_bad, r.n_weak);
        sc_snapshot_free(w0, m0->n_tensors);
        lomo_model_free(m0); lomo_model_free(mc);
        if (i < 2) ckpt_pair[i] = mg;   /* cases 0 and 1: the same fp32 run, checkpointing off and on */
        else lomo_model_free(mg);
        group_done(k->name);
    }
    if (ckpt_pair[0] && ckpt_pair[1]) {
        void **w = sc_snapshot(ckpt_pair[0]);
        sc_result r = sc_compare(w, ckpt_pair[1], ckpt_pair[0], 0);
        printf("  checkpointing on vs off on the GPU: weights %.2e (bound 1e-6)\n", r.weight_err);
        CHECK(r.weight_err <= 1e-6, "checkpointing on vs off: %g", r.weight_err);
        sc_snapshot_free(w, ckpt_pair[0]->n_tensors);
    }
    lomo_model_free(ckpt_pair[0]); lomo_model_free(ckpt_pair[1]);
}

/* 0.6: the scratch for a head in chunks holds the vocab-wide casts of head_rows rows
   only (the step cases above run such heads: a scratch too small fails them) */
static void test_head_scratch(void) {
    int nk;
    const sc_case *k = &sc_cases(&nk)[2];   /* bf16: the casts need scratch */
    lomo_model *m = sc_model(k, gpu, NULL);
    CHECK(m != NULL, "head scratch: model: %s", lomo_error());
    if (!m) return;
    if (gpu->scratch_bytes_rows) {
        size_t whole = gpu->scratch_bytes(gpu->ctx, m, 66, 0), same_rows = gpu->scratch_bytes_rows(gpu->ctx, m, 66, 66, 0);
        size_t part = gpu->scratch_bytes_rows(gpu->ctx, m, 66, 16, 0), V = (size_t)m->cfg.vocab_size;
        printf("head scratch (bf16, 66 tokens, V %zu): whole %zu B, 16 rows %zu B\n", V, whole, part);
        CHECK(whole == same_rows, "scratch_bytes_rows(N, N) %zu != scratch_bytes(N) %zu", same_rows, whole);
        CHECK(part < whole && part >= 2 * 2 * 16 * V, "16 rows: %zu B (whole %zu, the head's casts %zu)", part, whole, 2 * 2 * 16 * V);
    } else printf("head scratch: the backend's scratch does not depend on the head's rows\n");
    lomo_model_free(m);
    group_done("head scratch");
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
            if (!m || lomo__st_open(&f, path)) { CHECK(0, "%s: %s", path, lomo_error()); if (m) lomo_model_free(m); continue; }
            const lomo__st_tensor *ids = lomo__st_find(&f, "input_ids"), *labs = lomo__st_find(&f, "labels");
            int K = (int)ids->shape[0], B = (int)ids->shape[1], T = (int)ids->shape[2];
            int32_t *hi = (int32_t *)malloc(sizeof(int32_t) * (size_t)ids->numel), *hl = (int32_t *)malloc(sizeof(int32_t) * (size_t)labs->numel);
            memcpy(hi, ids->data, sizeof(int32_t) * (size_t)ids->numel);   /* the mapping is not necessarily aligned */
            memcpy(hl, labs->data, sizeof(int32_t) * (size_t)labs->numel);
            lomo_train_opts o;
            memset(&o, 0, sizeof o);
            o.batch = B; o.seq_len = T; o.weight_decay = 0.01f; o.clip_norm = 1.0f; o.optimizer = r;
            if (r == 0) o.clip_value = 0.05f;
            lomo_trainer *t = lomo_trainer_new(m, &o);
            for (int s = 0; s < K; s++)
                CHECK(lomo_step(t, hi + (size_t)s * B * T, hl + (size_t)s * B * T, r == 0 ? 0.05f : 0.01f, NULL) == 0,
                      "%s step %d: %s", path, s, lomo_error());
            double worst = 0;
            for (int i = 0; i < m->n_tensors; i++) {
                snprintf(name, sizeof name, "final.%s", m->tensors[i].name);
                const lomo__st_tensor *ref = lomo__st_find(&f, name);
                float *h = host((float *)m->tensors[i].data, (size_t)m->tensors[i].numel), *rf = (float *)malloc(sizeof(float) * (size_t)m->tensors[i].numel);
                CHECK(ref && lomo__st_read_f32(ref, rf) == 0, "%s: %s", path, name);
                worst = fmax(worst, tu_rel_err(h, rf, (size_t)m->tensors[i].numel));
                free(h); free(rf);
            }
            printf("trajectory %-8s %-11s on the GPU: %.2e\n", rules[r], models[k], worst);
            CHECK(worst <= 1e-4, "%s %s on the GPU: %g", rules[r], models[k], worst);
            lomo_trainer_free(t);
            lomo__st_close(&f);
            lomo_model_free(m);
            free(hi); free(hl);
        }
    group_done("trajectories");
}

/* the real pretrained stories260K on the GPU against transformers' loss and logits */
static void test_stories(void) {
    const char *dirs[] = {getenv("LOMO_STORIES260K"), "../shared/models/stories260K", ".gpu/stories260K", "shared/models/stories260K"};
    const char *dir = NULL;
    for (int i = 0; i < 4 && !dir; i++) {
        char cfg[600];
        if (!dirs[i]) continue;
        snprintf(cfg, sizeof cfg, "%s/config.json", dirs[i]);
        FILE *f = fopen(cfg, "r");
        if (f) { fclose(f); dir = dirs[i]; }
    }
    if (!dir) { printf("stories260K: SKIPPED (not found; set LOMO_STORIES260K or run tests/gpu_prep.sh)\n"); return; }
    lomo_load_opts og = {LOMO_F32, gpu, NULL};
    lomo_model *m = lomo_load(dir, &og);
    lomo__st_file f;
    CHECK(m != NULL, "stories260K: load: %s", lomo_error());
    if (!m) return;
    if (lomo__st_open(&f, "tests/ref/stories260K_ref.safetensors")) { CHECK(0, "%s", lomo_error()); lomo_model_free(m); return; }
    const lomo__st_tensor *ids = lomo__st_find(&f, "input_ids"), *labs = lomo__st_find(&f, "labels");
    const lomo__st_tensor *rl = lomo__st_find(&f, "loss"), *rg = lomo__st_find(&f, "logits");
    CHECK(ids && labs && rl && rg && ids->dtype == LOMO__ST_I32 && ids->ndim == 2, "stories260K fixture incomplete");
    if (!(ids && labs && rl && rg && ids->dtype == LOMO__ST_I32 && ids->ndim == 2)) { lomo__st_close(&f); lomo_model_free(m); return; }
    int B = (int)ids->shape[0], T = (int)ids->shape[1];
    int32_t *hi = (int32_t *)malloc(4 * (size_t)ids->numel), *hl = (int32_t *)malloc(4 * (size_t)labs->numel);
    float loss_ref, *lg_ref = (float *)malloc(4 * (size_t)rg->numel);
    memcpy(hi, ids->data, 4 * (size_t)ids->numel);
    memcpy(hl, labs->data, 4 * (size_t)labs->numel);
    lomo__st_read_f32(rl, &loss_ref);
    lomo__st_read_f32(rg, lg_ref);
    lomo_train_opts o;
    memset(&o, 0, sizeof o);
    o.batch = B; o.seq_len = T;
    lomo_trainer *t = lomo_trainer_new(m, &o);
    lomo_step_info info;
    CHECK(t && lomo_forward(t, hi, hl, &info) == 0, "stories260K forward on the GPU: %s", lomo_error());
    float *lg = host(lomo_logits(t), (size_t)rg->numel);
    double le = fabs(info.loss - loss_ref) / fabs(loss_ref), ge = tu_rel_err(lg, lg_ref, (size_t)rg->numel);
    printf("stories260K on the GPU: loss %.6f (transformers %.6f, rel %.1e), logits rel err %.1e\n", info.loss, loss_ref, le, ge);
    CHECK(le <= 2e-4 && ge <= 1e-3, "stories260K on the GPU: loss rel %g, logits %g", le, ge);
    free(lg); free(hi); free(hl); free(lg_ref);
    lomo_trainer_free(t);
    lomo__st_close(&f);
    lomo_model_free(m);
    group_done("stories260K");
}

/* two trainers of different dtypes, alternating on one device (the activation dtype travels with each) */
static void test_two_trainers(void) {
    int nk;
    const sc_case *k = sc_cases(&nk);
    const sc_case *kf = &k[0], *kb = &k[2];   /* fp32 and bf16 */
    lomo_model *f0 = sc_model(kf, NULL, NULL), *b0 = sc_model(kb, NULL, NULL);
    lomo_model *fa = sc_model(kf, gpu, f0), *ba = sc_model(kb, gpu, b0), *fb = sc_model(kf, gpu, f0);
    lomo_train_opts of = sc_opts(kf), ob = sc_opts(kb);
    lomo_trainer *tf = lomo_trainer_new(fa, &of), *tb = lomo_trainer_new(ba, &ob);
    int32_t tok[2 * 33];
    for (int i = 0; i < 2 * 33; i++) tok[i] = tu_randint(211);
    for (int s = 0; s < 2; s++) {   /* interleaved: bf16, fp32, bf16, fp32 */
        CHECK(lomo_step(tb, tok, NULL, kb->lr, NULL) == 0 && lomo_step(tf, tok, NULL, kf->lr, NULL) == 0, "two trainers: %s", lomo_error());
    }
    lomo_trainer_free(tb);   /* the bf16 trainer's scratch is gone: the fp32 one must not touch it */
    CHECK(lomo_step(tf, tok, NULL, kf->lr, NULL) == 0, "fp32 after the bf16 trainer was freed: %s", lomo_error());
    lomo_trainer *t2 = lomo_trainer_new(fb, &of);
    for (int s = 0; s < 3; s++) CHECK(lomo_step(t2, tok, NULL, kf->lr, NULL) == 0, "fp32 alone: %s", lomo_error());
    void **w = sc_snapshot(fb);
    sc_result r = sc_compare(w, fa, fb, 0);
    printf("fp32 trainer interleaved with a bf16 one vs alone: weights %.2e (bound 1e-6)\n", r.weight_err);
    CHECK(r.weight_err <= 1e-6, "fp32 trainer beside a bf16 one: %g", r.weight_err);
    sc_snapshot_free(w, fb->n_tensors);
    lomo_trainer_free(tf); lomo_trainer_free(t2);
    lomo_model_free(f0); lomo_model_free(b0); lomo_model_free(fa); lomo_model_free(ba); lomo_model_free(fb);
    group_done("two trainers");
}

#ifdef LOMO_NCCL
/* world size 1 through NCCL (sharded code path) against the unsharded GPU run */
static int nccl_main(void) {
    int nk, devs[1] = {0};
    const sc_case *k = &sc_cases(&nk)[0];
    ncclComm_t nc;
    CHECK(ncclCommInitAll(&nc, 1, devs) == ncclSuccess, "ncclCommInitAll");
    lomo_comm *comm = lomo_nccl_comm(nc, gpu);
    lomo_config c = sc_config(k);
    lomo_load_opts o = {k->dt, gpu, comm};
    lomo_model *m0 = sc_model(k, NULL, NULL), *plain = sc_model(k, gpu, m0), *sh = lomo_model_new(&c, &o);
    CHECK(comm && sh, "sharded model: %s", lomo_error());
    if (!comm || !sh) return tu_done("test_cuda_nccl");
    for (int i = 0; i < sh->n_tensors; i++) {
        void *h = sc_host(m0, i);
        gpu->upload(gpu->ctx, sh->tensors[i].data, h, lomo__tensor_bytes(&sh->tensors[i]));
        free(h);
    }
    float l1[3], l2[3];
    int s1[3], s2[3];
    CHECK(sc_train(plain, k, 3, l1, s1) == 0 && sc_train(sh, k, 3, l2, s2) == 0, "nccl steps: %s", lomo_error());
    void **w = sc_snapshot(plain);
    sc_result r = sc_compare(w, sh, plain, 0);
    printf("NCCL world size 1 vs unsharded GPU: losses %.6f / %.6f, weights %.2e (bound 1e-6)\n", l2[2], l1[2], r.weight_err);
    CHECK(r.weight_err <= 1e-6 && fabs(l1[2] - l2[2]) <= 1e-6 * fabs(l1[2]), "NCCL world 1: %g", r.weight_err);
    sc_snapshot_free(w, plain->n_tensors);
    lomo_model_free(sh); lomo_model_free(plain); lomo_model_free(m0);
    lomo_nccl_comm_free(comm);
    ncclCommDestroy(nc);
    return tu_done("test_cuda_nccl");
}
#endif

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
    cpu->rope_at(X, q, inv, N, nh, hd, hd, 1.0f, pos0);
    gpu->rope_at(G, qd, invd, N, nh, hd, hd, 1.0f, pos0);
    same("rope_at (pos0 37)", qd, q, (size_t)N * nh * hd, 1e-5);
    cpu->rope_at(X, q, inv, N, nh, hd, 48, 1.19f, pos0);   /* partial rotary, longrope's attention factor */
    gpu->rope_at(G, qd, invd, N, nh, hd, 48, 1.19f, pos0);
    same("rope_at (rot 48 of 80, mscale 1.19)", qd, q, (size_t)N * nh * hd, 1e-5);
    for (int w = 0; w <= 7; w += 7)
        for (int cp = 0; cp < 2; cp++) {
            float sc = cp ? 0.21f : 1.0f / sqrtf((float)hd), cap = cp ? 1.5f : 0.0f;
            char nm[64];
            cpu->attn_kv(X, o, q, kc, vc, N, pos0, nh, nkv, hd, sc, cap, w);
            gpu->attn_kv(G, od, qd, kd, vd, N, pos0, nh, nkv, hd, sc, cap, w);
            snprintf(nm, sizeof nm, "attn_kv (window %d, scale %.2f, cap %.1f)", w, sc, cap);
            same(nm, od, o, (size_t)N * nh * hd, 1e-4);
        }
    free(q); free(kc); free(vc); free(o);
    gpu->free(G, qd); gpu->free(G, kd); gpu->free(G, vd); gpu->free(G, od); gpu->free(G, invd);
    for (int dt = LOMO_F32; dt <= LOMO_BF16; dt++)   /* Q/K/V in one call (N = 1: the CPU's one-pass GEMV) */
        for (int nn = 1; nn <= 3; nn += 2) {
            const int K = 96, O[3] = {130, 64, 63};
            float *x = randv((size_t)nn * K, 1), *yc[3], *ydv[3];
            void *wh[3], *wdv[3];
            lomo_tensor Wc[3], Wg[3], Bc = wrap(randv(130, 1), LOMO_F32, 130, 0), Bg = wrap(dev((float *)Bc.data, 130), LOMO_F32, 130, 0);
            const lomo_tensor *wc[3], *wg[3], *bc[3] = {&Bc, NULL, NULL}, *bg[3] = {&Bg, NULL, NULL};
            float *xd = dev(x, (size_t)nn * K);
            char nm[64];
            for (int j = 0; j < 3; j++) {
                float *w = randv((size_t)O[j] * K, 0.3);
                uint16_t *w16 = (uint16_t *)malloc((size_t)O[j] * K * 2);
                for (int i = 0; i < O[j] * K; i++) w16[i] = to16(LOMO_BF16, w[i]);
                wh[j] = dt ? (void *)w16 : (void *)w;
                if (dt) free(w); else free(w16);
                wdv[j] = gpu->alloc(G, (size_t)O[j] * K * 4);
                gpu->upload(G, wdv[j], wh[j], (size_t)O[j] * K * (dt ? 2 : 4));
                Wc[j] = wrap(wh[j], (lomo_dtype)dt, O[j], K); Wg[j] = wrap(wdv[j], (lomo_dtype)dt, O[j], K);
                wc[j] = &Wc[j]; wg[j] = &Wg[j];
                yc[j] = (float *)malloc(sizeof(float) * nn * O[j]); ydv[j] = dev(NULL, (size_t)nn * O[j]);
            }
            size_t sb = 4 * (size_t)130 * K * 2;
            void *cs = malloc(sb), *gs = gpu->alloc(G, sb);
            cpu->set_scratch(X, cs, sb, dt); gpu->set_scratch(G, gs, sb, dt);
            cpu->matmul_fwd_n(X, 3, yc, x, wc, bc, nn, K, O);
            gpu->matmul_fwd_n(G, 3, ydv, xd, wg, bg, nn, K, O);
            for (int j = 0; j < 3; j++) {
                snprintf(nm, sizeof nm, "matmul_fwd_n (%s, N %d, weight %d)", dt ? "bf16" : "fp32", nn, j);
                same(nm, ydv[j], yc[j], (size_t)nn * O[j], dt ? 2e-2 : 1e-4);
                free(yc[j]); free(wh[j]); gpu->free(G, ydv[j]); gpu->free(G, wdv[j]);
            }
            cpu->set_scratch(X, NULL, 0, 0); gpu->set_scratch(G, NULL, 0, 0);
            free(cs); gpu->free(G, gs); free(x); gpu->free(G, xd); free(Bc.data); gpu->free(G, Bg.data);
        }
    const char *models[] = {"llama_gqa", "llama_bias", "llama3_scaled", "mistral_swa", "qwen3_tied", "gemma2", "gemma3",
                            "phi3", "phi3_partial", "phi3_longrope"};
    lomo_load_opts oc = {LOMO_F32, NULL, NULL}, og = {LOMO_F32, gpu, NULL};
    for (int k = 0; k < (int)(sizeof models / sizeof *models); k++) {
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

int main(int argc, char **argv) {
    int quick = 0, fault = 0, nccl = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--fault")) fault = 1;
        else if (!strcmp(argv[i], "--nccl")) nccl = 1;
        else { fprintf(stderr, "test_cuda: unknown flag %s (--quick, --fault, --nccl)\n", argv[i]); return 2; }
    }
    self = argv[0];
    cpu = lomo_cpu_backend();
    gpu = lomo_cuda_backend(0);
    if (!gpu) { printf("no CUDA device: %s\ntest_cuda: 0 passed, 1 failed\n", lomo_error()); return 1; }
    stop_early = quick;
    if (fault) return fault_main();
    if (nccl) {
#ifdef LOMO_NCCL
        return nccl_main();
#else
        printf("built without LOMO_NCCL\ntest_cuda_nccl: 0 passed, 1 failed\n");
        return 1;
#endif
    }
    test_matmuls();
    test_pointwise();
    test_attention();
#ifndef LOMO_CUDA_DRY
    test_mma_tile();         /* the fragment mapping, one tile: first, so a layout mistake shows alone */
#endif
    test_flash();
    test_rules_kernels();
    test_fused_update();
    test_family_ops();
    group_done("Qwen3 / Gemma / Phi-3 ops");
    if (!quick) test_big();
#ifndef LOMO_CUDA_DRY
    test_errors(quick);      /* CUDA's error paths: nothing to pose as */
#endif
    test_steps();
    test_head_scratch();
    test_two_trainers();
    test_trajectories();
    test_stories();
    test_generate();
    return tu_done("test_cuda");
}
