/* test_flash_model.c - the CPU model of the CUDA flash-attention tiling (tests/flash_model.h)
   against the CPU backend's attention (attn_fwd/attn_bwd for plain causal attention,
   attn_ex_fwd/attn_ex_bwd with scale, soft-cap and window), forward (out, lse) and backward
   (dq, dk, dv), on random data at head_dim 64, 80, 96, 128, with T not a multiple of any
   tile (5, 77, 99, 131) and exactly one (64), GQA (6/2, 4/1) and multi-head (4/4), sliding
   windows (33, 40) and a soft-cap (2, with a non-default scale: strongly non-linear).
   Two modes:
     fp32 (fm_round = 0): the same tiling without rounding must agree with the exact
       attention to 2e-5 (max abs error / max abs value, each tensor; lse absolute error
       / max |lse|): this is what proves the blocking, masking, online-softmax rescaling and
       the fixed-order reductions right;
     bf16 (fm_round = 1): operands rounded as the kernel rounds them; bounds out 2e-2,
       lse 5e-3, dq, dk, dv 3e-2 (bf16 keeps 8 significant bits: 2^-9 = 2e-3 relative per
       operand, and a gradient is a difference of such products; measured worst over these
       cases: out 7.6e-3, lse 2.1e-3, dq 1.3e-2, dk 1.4e-2, dv 6.0e-3), and the error must also
       exceed 1e-4, so the rounding is really modelled. tests/test_cuda.cu holds the GPU
       kernels to the same bf16 bounds. */
#define LOMO_IMPLEMENTATION
#include "../lomo.h"
#include "test_util.h"
#include "flash_model.h"

#define TOL32 2e-5
#define TOL_OUT 2e-2
#define TOL_LSE 5e-3
#define TOL_GRAD 3e-2

typedef struct { int B, T, nh, nkv; double scale_mul; float cap; int window; } fm_case;

static void run_case(const fm_case *cs, int hd) {
    const lomo_backend *cpu = lomo_cpu_backend();
    int B = cs->B, T = cs->T, nh = cs->nh, nkv = cs->nkv, mode;
    size_t nq = (size_t)B * T * nh * hd, nk = (size_t)B * T * nkv * hd, nr = (size_t)B * T * nh;
    float scale = (float)(cs->scale_mul / sqrt((double)hd)), cap = cs->cap;
    int window = cs->window, plain = cap == 0.0f && window == 0 && cs->scale_mul == 1.0;
    float *q = (float *)malloc(nq * 4), *k = (float *)malloc(nk * 4), *v = (float *)malloc(nk * 4);
    float *dout = (float *)malloc(nq * 4), *o = (float *)malloc(nq * 4), *lse = (float *)malloc(nr * 4);
    float *dq = (float *)malloc(nq * 4), *dk = (float *)malloc(nk * 4), *dv = (float *)malloc(nk * 4);
    float *fo = (float *)malloc(nq * 4), *fl = (float *)malloc(nr * 4);
    float *fdq = (float *)malloc(nq * 4), *fdk = (float *)malloc(nk * 4), *fdv = (float *)malloc(nk * 4);
    tu_fill(q, nq, 1.5);
    tu_fill(k, nk, 1.5);
    tu_fill(v, nk, 1.0);
    tu_fill(dout, nq, 1.0);
    if (plain) {
        cpu->attn_fwd(cpu->ctx, o, lse, q, k, v, B, T, nh, nkv, hd);
        cpu->attn_bwd(cpu->ctx, dq, dk, dv, dout, q, k, v, o, lse, B, T, nh, nkv, hd);
    } else {
        cpu->attn_ex_fwd(cpu->ctx, o, lse, q, k, v, B, T, nh, nkv, hd, scale, cap, window);
        cpu->attn_ex_bwd(cpu->ctx, dq, dk, dv, dout, q, k, v, o, lse, B, T, nh, nkv, hd, scale, cap, window);
    }
    for (mode = 0; mode < 2; mode++) {
        double e[5];
        const char *nm[5] = {"out", "lse", "dq", "dk", "dv"};
        double tol[5] = {TOL_OUT, TOL_LSE, TOL_GRAD, TOL_GRAD, TOL_GRAD};
        int i;
        fm_round = mode;
        /* poison the outputs: every element must be written */
        for (i = 0; i < (int)nq; i++) fo[i] = fdq[i] = NAN;
        for (i = 0; i < (int)nk; i++) fdk[i] = fdv[i] = NAN;
        for (i = 0; i < (int)nr; i++) fl[i] = NAN;
        fm_fwd(fo, fl, q, k, v, B, T, nh, nkv, hd, scale, cap, window);
        /* the backward from the model's own forward, as on the GPU (lse, out from the flash forward) */
        fm_bwd(fdq, fdk, fdv, dout, q, k, v, fo, fl, B, T, nh, nkv, hd, scale, cap, window);
        e[0] = tu_rel_err(fo, o, nq);
        e[1] = tu_rel_err(fl, lse, nr);
        e[2] = tu_rel_err(fdq, dq, nq);
        e[3] = tu_rel_err(fdk, dk, nk);
        e[4] = tu_rel_err(fdv, dv, nk);
        for (i = 0; i < 5; i++) {
            double bound = mode ? tol[i] : TOL32;
            CHECK(e[i] <= bound, "%s model %s hd %d B %d T %d heads %d/%d scale x%.2f cap %.1f window %d: err %.3g > %.3g",
                  mode ? "bf16" : "fp32", nm[i], hd, B, T, nh, nkv, cs->scale_mul, (double)cap, window, e[i], bound);
            if (mode) CHECK(e[i] > 1e-4, "bf16 model %s hd %d T %d: err %.3g: the rounding is not modelled", nm[i], hd, T, e[i]);
        }
        printf("  %s hd %3d B %d T %3d heads %d/%d scale x%.2f cap %.1f window %2d: out %.2e lse %.2e dq %.2e dk %.2e dv %.2e\n",
               mode ? "bf16" : "fp32", hd, B, T, nh, nkv, cs->scale_mul, (double)cap, window, e[0], e[1], e[2], e[3], e[4]);
    }
    fm_round = 1;
    free(q); free(k); free(v); free(dout); free(o); free(lse); free(dq); free(dk); free(dv);
    free(fo); free(fl); free(fdq); free(fdk); free(fdv);
}

int main(void) {
    static const fm_case cases[] = {
        {2, 77, 6, 2, 1.0, 0.0f, 0},     /* GQA, odd T, plain (attn_fwd/bwd) */
        {1, 64, 4, 4, 1.0, 0.0f, 0},     /* exactly one forward tile */
        {3, 5, 2, 1, 1.0, 0.0f, 0},      /* shorter than a warp's 16 rows */
        {1, 131, 4, 4, 1.0, 0.0f, 40},   /* sliding window, several key blocks */
        {1, 99, 4, 1, 0.8, 2.0f, 33},    /* Gemma 2: scale, soft-cap, window, GQA 4/1 */
        {2, 70, 2, 2, 1.3, 2.0f, 0},     /* soft-cap without a window */
    };
    static const int hds[] = {64, 80, 96, 128};
    size_t c;
    int h;
    for (h = 0; h < 4; h++)
        for (c = 0; c < sizeof cases / sizeof cases[0]; c++) run_case(&cases[c], hds[h]);
    return tu_done("test_flash_model");
}
