/* test_cuda_tol.c - the bf16 whole-step check of tests/test_cuda.cu, run on the
   CPU, so that its tolerance is shown (in CI, without a GPU) to let the GPU's
   numerics through and to stop wrong kernels.
   - "gpu-like": the CPU backend with the GPU's one numerical difference in a
     16-bit model: every GEMM's activation operand (x in the forward, dy in
     dX, both x and dy in dW) is rounded to the storage dtype first, as
     lomo_cuda.cuh casts them for cublasGemmEx. Its steps must pass
     sc_compare against the plain CPU backend (and do differ from it).
     At head_dim 64/80/96/128 gpu-like also computes attention as the GPU's
     flash kernels do (tests/flash_model.h: bf16 operands, P and dS), shown
     by one more case (sc_flash_case) at head_dim 64.
   - mutants: gpu-like with the updates of one kind of tensor skipped
     (w_down, w_up, wo, mlp_norm: the four that the old 3e-2 weight check let
     through). Each must fail sc_compare. The old measure is printed beside. */
#define LOMO_IMPLEMENTATION
#include "../lomo.h"
#include "test_util.h"
#include "step_compare.h"
#include "flash_model.h"

static lomo_backend like;          /* the CPU table with rounding GEMM operands */
static const char *skip_name;      /* mutant: tensors whose name contains this are never updated */
static lomo_dtype like_dt;

static const float *rounded(const float *x, size_t n, float **buf) {
    size_t i;
    *buf = (float *)malloc(sizeof(float) * n + 4);
    for (i = 0; i < n; i++)
        (*buf)[i] = like_dt == LOMO_BF16 ? lomo_bf16_to_f32(lomo_f32_to_bf16(x[i])) : lomo_f16_to_f32(lomo_f32_to_f16(x[i]));
    return *buf;
}
static void like_fwd(void *ctx, float *y, const float *x, const lomo_tensor *w, const lomo_tensor *b, int N, int K, int O,
                     int acc) {
    float *bx;
    lomo_cpu_backend()->matmul_fwd(ctx, y, rounded(x, (size_t)N * K, &bx), w, b, N, K, O, acc);
    free(bx);
}
static void like_bwd_x(void *ctx, float *dx, const float *dy, const lomo_tensor *w, int N, int K, int O, int acc) {
    float *bd;
    lomo_cpu_backend()->matmul_bwd_x(ctx, dx, rounded(dy, (size_t)N * O, &bd), w, N, K, O, acc);
    free(bd);
}
static void like_bwd_w(void *ctx, float *dw, const float *dy, const float *x, int N, int K, int O, int acc) {
    float *bd, *bx;
    const float *rd = rounded(dy, (size_t)N * O, &bd), *rx = rounded(x, (size_t)N * K, &bx);
    lomo_cpu_backend()->matmul_bwd_w(ctx, dw, rd, rx, N, K, O, acc);
    free(bd); free(bx);
}
/* attention as the GPU's flash kernels compute it (tests/flash_model.h, bf16 operands), at the
   head_dims flash serves; the CPU's exact attention elsewhere, as on the GPU */
static int fm_served(int hd) { return hd == 64 || hd == 80 || hd == 96 || hd == 128; }
static void like_attn_ex_fwd(void *ctx, float *out, float *lse, const float *q, const float *k, const float *v, int B,
                             int T, int nh, int nkv, int hd, float scale, float cap, int window) {
    if (fm_served(hd)) fm_fwd(out, lse, q, k, v, B, T, nh, nkv, hd, scale, cap, window);
    else lomo_cpu_backend()->attn_ex_fwd(ctx, out, lse, q, k, v, B, T, nh, nkv, hd, scale, cap, window);
}
static void like_attn_ex_bwd(void *ctx, float *dq, float *dk, float *dv, const float *dout, const float *q,
                             const float *k, const float *v, const float *out, const float *lse, int B, int T, int nh,
                             int nkv, int hd, float scale, float cap, int window) {
    if (fm_served(hd)) fm_bwd(dq, dk, dv, dout, q, k, v, out, lse, B, T, nh, nkv, hd, scale, cap, window);
    else lomo_cpu_backend()->attn_ex_bwd(ctx, dq, dk, dv, dout, q, k, v, out, lse, B, T, nh, nkv, hd, scale, cap, window);
}
static void like_attn_fwd(void *ctx, float *out, float *lse, const float *q, const float *k, const float *v, int B,
                          int T, int nh, int nkv, int hd) {
    if (fm_served(hd)) fm_fwd(out, lse, q, k, v, B, T, nh, nkv, hd, 1.0f / sqrtf((float)hd), 0.0f, 0);
    else lomo_cpu_backend()->attn_fwd(ctx, out, lse, q, k, v, B, T, nh, nkv, hd);
}
static void like_attn_bwd(void *ctx, float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                          const float *v, const float *out, const float *lse, int B, int T, int nh, int nkv, int hd) {
    if (fm_served(hd)) fm_bwd(dq, dk, dv, dout, q, k, v, out, lse, B, T, nh, nkv, hd, 1.0f / sqrtf((float)hd), 0.0f, 0);
    else lomo_cpu_backend()->attn_bwd(ctx, dq, dk, dv, dout, q, k, v, out, lse, B, T, nh, nkv, hd);
}
static void like_update(void *ctx, lomo_tensor *p, const float *g, float *s1, float *s2, const lomo_update_args *a) {
    if (skip_name && strstr(p->name, skip_name)) return;
    lomo_cpu_backend()->update(ctx, p, g, s1, s2, a);
}

static void run_case(const sc_case *k, int with_mutants) {
    const int S = 3;
    static const char *mutants[] = {NULL, "mlp.down_proj", "mlp.up_proj", "self_attn.o_proj", "post_attention_layernorm"};
    float lref[3], lc[3];
    int sref[3], sk[3], i;
    lomo_model *m0 = sc_model(k, NULL, NULL), *ref = sc_model(k, NULL, m0);
    void **w0 = sc_snapshot(m0);
    like_dt = k->dt;
    CHECK(m0 && ref && sc_train(ref, k, S, lref, sref) == 0, "%s: reference: %s", k->name, lomo_error());
    printf("%s (%d steps, lr %g): loss %.4f -> %.4f\n", k->name, S, k->lr, lref[0], lref[S - 1]);
    for (i = 0; i < (with_mutants ? (int)(sizeof mutants / sizeof *mutants) : 1); i++) {
        lomo_model *mc = sc_model(k, &like, m0);
        sc_result r;
        skip_name = mutants[i];
        CHECK(mc && sc_train(mc, k, S, lc, sk) == 0, "%s: gpu-like run: %s", k->name, lomo_error());
        skip_name = NULL;
        r = sc_compare(w0, mc, ref, i == 0 ? 2 : 0);
        printf("  %-34s worst change err %.3g (bound %.3g, %s), %d of %d tensors over; old weight measure %.2e (%s 3e-2)\n",
               i == 0 ? "gpu-like numerics" : mutants[i], r.worst, r.worst_tol, r.worst_name ? r.worst_name : "-",
               r.n_bad, r.n_checked, r.weight_err, r.weight_err <= 3e-2 ? "passes" : "fails");
        CHECK(r.n_weak == 0, "%s: %d tensors with a bound that cannot detect a skipped update", k->name, r.n_weak);
        if (i == 0) {
            CHECK(r.n_bad == 0, "%s: the GPU's rounding of GEMM operands must pass (%d tensors over)", k->name, r.n_bad);
            CHECK(r.weight_err > 0, "%s: gpu-like must differ from the CPU at all (else this shows nothing)", k->name);
        } else {
            CHECK(r.n_bad > 0, "%s: skipping %s must fail the check", k->name, mutants[i]);
        }
        lomo_model_free(mc);
    }
    sc_snapshot_free(w0, m0->n_tensors);
    lomo_model_free(ref);
    lomo_model_free(m0);
}

int main(void) {
    like = *lomo_cpu_backend();
    like.name = "cpu-gpu-like";
    like.matmul_fwd = like_fwd; like.matmul_bwd_x = like_bwd_x; like.matmul_bwd_w = like_bwd_w;
    like.update = like_update;
    like.attn_fwd = like_attn_fwd; like.attn_bwd = like_attn_bwd;
    like.attn_ex_fwd = like_attn_ex_fwd; like.attn_ex_bwd = like_attn_ex_bwd;
    {
        int n, i, first = 1;
        const sc_case *k = sc_cases(&n);
        for (i = 0; i < n; i++)
            if (k[i].dt != LOMO_F32) { run_case(&k[i], first); first = 0; }   /* mutants on the first (bf16) case */
    }
    run_case(sc_flash_case(), 0);   /* a head_dim flash serves: its bf16 attention inside the bound too */
    return tu_done("test_cuda_tol");
}
