/* test_ops.c - every CPU kernel of lomo.h against the independent double
   reference (tests/ref_double.h): forward values, and backward against
   central finite differences of the double reference.

   Tolerances (fp32 kernels vs double truth), as max|err| / max|ref| per tensor:
   forward 1e-5, backward 1e-4. Sizes are odd on purpose. */
#define LOMO_IMPLEMENTATION
#include "../lomo.h"
#include "ref_double.h"
#include "test_util.h"

#define FWD_TOL 1e-5
#define BWD_TOL 1e-4
#define FD_EPS 1e-6

static const lomo_backend *be;

static double *to_d(const float *x, size_t n) {
    double *d = (double *)malloc(sizeof(double) * n);
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}
static float *randf(size_t n, double std) { float *x = (float *)malloc(sizeof(float) * n); tu_fill(x, n, std); return x; }
static lomo_tensor wrap(float *p, int64_t d0, int64_t d1) {
    lomo_tensor t;
    memset(&t, 0, sizeof t);
    t.data = p; t.dtype = LOMO_F32; t.ndim = d1 ? 2 : 1; t.shape[0] = d0; t.shape[1] = d1;
    t.numel = d1 ? d0 * d1 : d0;
    return t;
}

/* A scalar function of one double input array, for finite differences:
   L(x) = sum(dy * f(x)). */
typedef double (*obj_fn)(void *st);

/* Central differences of obj w.r.t. every element of x (double, in place). */
static void fd_grad(double *g, double *x, size_t n, obj_fn obj, void *st) {
    for (size_t i = 0; i < n; i++) {
        double x0 = x[i];
        x[i] = x0 + FD_EPS; double lp = obj(st);
        x[i] = x0 - FD_EPS; double lm = obj(st);
        x[i] = x0;
        g[i] = (lp - lm) / (2 * FD_EPS);
    }
}

/* ---- matmul ---- */
typedef struct { int N, K, O; double *x, *w, *b, *dy, *y; } mm_st;
static double mm_obj(void *p) {
    mm_st *s = (mm_st *)p; double L = 0;
    ref_linear(s->y, s->x, s->w, s->b, s->N, s->K, s->O);
    for (int i = 0; i < s->N * s->O; i++) L += s->dy[i] * s->y[i];
    return L;
}
static void test_matmul(int N, int K, int O) {
    float *x = randf(N * K, 1), *w = randf(O * K, 0.5), *b = randf(O, 1), *dy = randf(N * O, 1);
    float *y = randf(N * O, 1), *y0 = (float *)malloc(sizeof(float) * N * O);
    float *dx = randf(N * K, 1), *dx0 = (float *)malloc(sizeof(float) * N * K), *dw = randf(O * K, 1), *db = randf(O, 1);
    lomo_tensor W = wrap(w, O, K), Bt = wrap(b, O, 0);
    mm_st s = {N, K, O, to_d(x, N * K), to_d(w, O * K), to_d(b, O), to_d(dy, N * O), (double *)malloc(sizeof(double) * N * O)};
    double *g = (double *)malloc(sizeof(double) * (N * K + O * K));
    memcpy(y0, y, sizeof(float) * N * O);
    be->matmul_fwd(be->ctx, y, x, &W, &Bt, N, K, O, 0);
    ref_linear(s.y, s.x, s.w, s.b, N, K, O);
    CHECK(tu_rel_err_fd(y, s.y, N * O) < FWD_TOL, "matmul fwd %dx%dx%d: %g", N, K, O, tu_rel_err_fd(y, s.y, N * O));
    /* accumulate = 1 adds onto what was there */
    memcpy(y, y0, sizeof(float) * N * O);
    be->matmul_fwd(be->ctx, y, x, &W, NULL, N, K, O, 1);
    ref_linear(s.y, s.x, s.w, NULL, N, K, O);
    for (int i = 0; i < N * O; i++) s.y[i] += y0[i];
    CHECK(tu_rel_err_fd(y, s.y, N * O) < FWD_TOL, "matmul fwd accumulate: %g", tu_rel_err_fd(y, s.y, N * O));
    memcpy(dx0, dx, sizeof(float) * N * K);
    be->matmul_bwd_x(be->ctx, dx, dy, &W, N, K, O, 0);
    fd_grad(g, s.x, N * K, mm_obj, &s);
    CHECK(tu_rel_err_fd(dx, g, N * K) < BWD_TOL, "matmul dx: %g", tu_rel_err_fd(dx, g, N * K));
    memcpy(dx, dx0, sizeof(float) * N * K);
    be->matmul_bwd_x(be->ctx, dx, dy, &W, N, K, O, 1);
    for (int i = 0; i < N * K; i++) g[i] += dx0[i];
    CHECK(tu_rel_err_fd(dx, g, N * K) < BWD_TOL, "matmul dx accumulate: %g", tu_rel_err_fd(dx, g, N * K));
    be->matmul_bwd_w(be->ctx, dw, dy, x, N, K, O, 0);
    fd_grad(g, s.w, O * K, mm_obj, &s);
    CHECK(tu_rel_err_fd(dw, g, O * K) < BWD_TOL, "matmul dw: %g", tu_rel_err_fd(dw, g, O * K));
    be->bias_bwd(be->ctx, db, dy, N, O);
    fd_grad(g, s.b, O, mm_obj, &s);
    CHECK(tu_rel_err_fd(db, g, O) < BWD_TOL, "matmul db: %g", tu_rel_err_fd(db, g, O));
    free(x); free(w); free(b); free(dy); free(y); free(y0); free(dx); free(dx0); free(dw); free(db); free(g);
    free(s.x); free(s.w); free(s.b); free(s.dy); free(s.y);
}

/* ---- rmsnorm ---- */
typedef struct { int N, C; double *x, *w, *dy, *y, eps; } rn_st;
static double rn_obj(void *p) {
    rn_st *s = (rn_st *)p; double L = 0;
    ref_rmsnorm(s->y, s->x, s->w, s->N, s->C, s->eps);
    for (int i = 0; i < s->N * s->C; i++) L += s->dy[i] * s->y[i];
    return L;
}
static void test_rmsnorm(int N, int C) {
    float *x = randf(N * C, 1), *w = randf(C, 1), *dy = randf(N * C, 1), *y = randf(N * C, 1), *rstd = randf(N, 1);
    float *dx = randf(N * C, 1), *dx0 = (float *)malloc(sizeof(float) * N * C), *dw = randf(C, 1);
    lomo_tensor W = wrap(w, C, 0);
    rn_st s = {N, C, to_d(x, N * C), to_d(w, C), to_d(dy, N * C), (double *)malloc(sizeof(double) * N * C), 1e-5};
    double *g = (double *)malloc(sizeof(double) * N * C);
    be->rmsnorm_fwd(be->ctx, y, rstd, x, &W, N, C, 1e-5f);
    ref_rmsnorm(s.y, s.x, s.w, N, C, 1e-5);
    CHECK(tu_rel_err_fd(y, s.y, N * C) < FWD_TOL, "rmsnorm fwd: %g", tu_rel_err_fd(y, s.y, N * C));
    memcpy(dx0, dx, sizeof(float) * N * C);
    be->rmsnorm_bwd(be->ctx, dx, dw, dy, x, &W, rstd, N, C);
    fd_grad(g, s.x, N * C, rn_obj, &s);
    for (int i = 0; i < N * C; i++) g[i] += dx0[i];   /* dx accumulates */
    CHECK(tu_rel_err_fd(dx, g, N * C) < BWD_TOL, "rmsnorm dx: %g", tu_rel_err_fd(dx, g, N * C));
    fd_grad(g, s.w, C, rn_obj, &s);
    CHECK(tu_rel_err_fd(dw, g, C) < BWD_TOL, "rmsnorm dw: %g", tu_rel_err_fd(dw, g, C));
    free(x); free(w); free(dy); free(y); free(rstd); free(dx); free(dx0); free(dw); free(g);
    free(s.x); free(s.w); free(s.dy); free(s.y);
}

/* ---- rope ---- */
typedef struct { int B, T, nh, hd; double *x, *tmp, *dy, theta; } rp_st;
static double rp_obj(void *p) {
    rp_st *s = (rp_st *)p; double L = 0; int n = s->B * s->T * s->nh * s->hd;
    memcpy(s->tmp, s->x, sizeof(double) * n);
    ref_rope(s->tmp, s->B, s->T, s->nh, s->hd, s->theta);
    for (int i = 0; i < n; i++) L += s->dy[i] * s->tmp[i];
    return L;
}
static void test_rope(int B, int T, int nh, int hd, float theta) {
    int n = B * T * nh * hd;
    float *x = randf(n, 1), *dy = randf(n, 1);
    rp_st s = {B, T, nh, hd, to_d(x, n), (double *)malloc(sizeof(double) * n), to_d(dy, n), theta};
    double *g = (double *)malloc(sizeof(double) * n);
    lomo_config c;
    float inv_freq[64];
    lomo_config_default(&c, nh * hd, 8, 1, nh, nh, 8);
    c.head_dim = hd; c.rope_theta = theta;
    lomo__rope_inv_freq(&c, inv_freq);
    be->rope(be->ctx, x, inv_freq, B, T, nh, hd, 0);
    memcpy(s.tmp, s.x, sizeof(double) * n);
    ref_rope(s.tmp, B, T, nh, hd, theta);
    CHECK(tu_rel_err_fd(x, s.tmp, n) < FWD_TOL, "rope fwd theta=%g: %g", theta, tu_rel_err_fd(x, s.tmp, n));
    be->rope(be->ctx, dy, inv_freq, B, T, nh, hd, 1);
    fd_grad(g, s.x, n, rp_obj, &s);
    CHECK(tu_rel_err_fd(dy, g, n) < BWD_TOL, "rope bwd: %g", tu_rel_err_fd(dy, g, n));
    free(x); free(dy); free(g); free(s.x); free(s.tmp); free(s.dy);
}

/* ---- partial rotary (Phi-3 family) and linear scaling ---- */
typedef struct { int B, T, nh, hd, rot; double *x, *tmp, *dy, theta, factor, mscale; } rpx_st;
static double rpx_obj(void *p) {
    rpx_st *s = (rpx_st *)p; double L = 0; int n = s->B * s->T * s->nh * s->hd;
    memcpy(s->tmp, s->x, sizeof(double) * n);
    ref_rope_partial(s->tmp, s->B, s->T, s->nh, s->hd, s->rot, s->theta, s->factor);
    for (int i = 0; i < n; i++) if (i % s->hd < s->rot) s->tmp[i] *= s->mscale;   /* rotated dims only */
    for (int i = 0; i < n; i++) L += s->dy[i] * s->tmp[i];
    return L;
}
static void test_rope_ex(int B, int T, int nh, int hd, int rot, float theta, float factor, float mscale) {
    int n = B * T * nh * hd;
    float *x = randf(n, 1), *dy = randf(n, 1);
    rpx_st s = {B, T, nh, hd, rot, to_d(x, n), (double *)malloc(sizeof(double) * n), to_d(dy, n), theta, factor, mscale};
    double *g = (double *)malloc(sizeof(double) * n);
    lomo_config c;
    float inv_freq[64];
    lomo_config_default(&c, nh * hd, 8, 1, nh, nh, 8);
    c.head_dim = hd; c.rope_theta = theta; c.rotary_dim = rot;
    if (factor != 1.0f) { c.rope_type = 2; c.rope_factor = factor; }
    lomo__rope_inv_freq(&c, inv_freq);
    be->rope_ex(be->ctx, x, inv_freq, B, T, nh, hd, rot, mscale, 0);
    memcpy(s.tmp, s.x, sizeof(double) * n);
    ref_rope_partial(s.tmp, B, T, nh, hd, rot, theta, factor);
    for (int i = 0; i < n; i++) if (i % hd < rot) s.tmp[i] *= mscale;
    CHECK(tu_rel_err_fd(x, s.tmp, n) < FWD_TOL, "rope_ex fwd rot %d/%d factor %g: %g", rot, hd, factor, tu_rel_err_fd(x, s.tmp, n));
    be->rope_ex(be->ctx, dy, inv_freq, B, T, nh, hd, rot, mscale, 1);
    fd_grad(g, s.x, n, rpx_obj, &s);
    CHECK(tu_rel_err_fd(dy, g, n) < BWD_TOL, "rope_ex bwd: %g", tu_rel_err_fd(dy, g, n));
    free(x); free(dy); free(g); free(s.x); free(s.tmp); free(s.dy);
}

/* ---- attention ---- */
typedef struct { int B, T, nh, nkv, hd; double *q, *k, *v, *dy, *o; } at_st;
static double at_obj(void *p) {
    at_st *s = (at_st *)p; double L = 0; int n = s->B * s->T * s->nh * s->hd;
    ref_attention(s->o, s->q, s->k, s->v, s->B, s->T, s->nh, s->nkv, s->hd);
    for (int i = 0; i < n; i++) L += s->dy[i] * s->o[i];
    return L;
}
static void test_attention(int B, int T, int nh, int nkv, int hd) {
    int nq = B * T * nh * hd, nk = B * T * nkv * hd;
    float *q = randf(nq, 1), *k = randf(nk, 1), *v = randf(nk, 1), *dy = randf(nq, 1);
    float *o = randf(nq, 1), *lse = randf(B * T * nh, 1), *dq = randf(nq, 1), *dk = randf(nk, 1), *dv = randf(nk, 1);
    at_st s = {B, T, nh, nkv, hd, to_d(q, nq), to_d(k, nk), to_d(v, nk), to_d(dy, nq), (double *)malloc(sizeof(double) * nq)};
    double *g = (double *)malloc(sizeof(double) * nq);
    be->attn_fwd(be->ctx, o, lse, q, k, v, B, T, nh, nkv, hd);
    ref_attention(s.o, s.q, s.k, s.v, B, T, nh, nkv, hd);
    CHECK(tu_rel_err_fd(o, s.o, nq) < FWD_TOL, "attn fwd B%d T%d nh%d nkv%d hd%d: %g", B, T, nh, nkv, hd, tu_rel_err_fd(o, s.o, nq));
    be->attn_bwd(be->ctx, dq, dk, dv, dy, q, k, v, o, lse, B, T, nh, nkv, hd);
    fd_grad(g, s.q, nq, at_obj, &s);
    CHECK(tu_rel_err_fd(dq, g, nq) < BWD_TOL, "attn dq: %g", tu_rel_err_fd(dq, g, nq));
    fd_grad(g, s.k, nk, at_obj, &s);
    CHECK(tu_rel_err_fd(dk, g, nk) < BWD_TOL, "attn dk: %g", tu_rel_err_fd(dk, g, nk));
    fd_grad(g, s.v, nk, at_obj, &s);
    CHECK(tu_rel_err_fd(dv, g, nk) < BWD_TOL, "attn dv: %g", tu_rel_err_fd(dv, g, nk));
    free(q); free(k); free(v); free(dy); free(o); free(lse); free(dq); free(dk); free(dv); free(g);
    free(s.q); free(s.k); free(s.v); free(s.dy); free(s.o);
}

/* the analytic gradient of causal attention, in double (the same formulas as
   the forward's chain rule; test_attention checks them by finite differences) */
static void ref_attention_bwd(double *dq, double *dk, double *dv, const double *dy, const double *q,
                              const double *k, const double *v, int B, int T, int nh, int nkv, int hd) {
    int rep = nh / nkv;
    double *p = (double *)malloc(sizeof(double) * T), *dp = (double *)malloc(sizeof(double) * T), sc = 1.0 / sqrt((double)hd);
    memset(dk, 0, sizeof(double) * B * T * nkv * hd);
    memset(dv, 0, sizeof(double) * B * T * nkv * hd);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < nh; h++)
            for (int t = 0; t < T; t++) {
                size_t qr = ((size_t)(b * T + t) * nh + h) * hd;
                double mx = -1e300, sum = 0.0, D = 0.0;
                for (int j = 0; j <= t; j++) {
                    const double *kj = k + ((size_t)(b * T + j) * nkv + h / rep) * hd;
                    double s = 0.0;
                    for (int d = 0; d < hd; d++) s += q[qr + d] * kj[d];
                    p[j] = s * sc;
                    if (p[j] > mx) mx = p[j];
                }
                for (int j = 0; j <= t; j++) { p[j] = exp(p[j] - mx); sum += p[j]; }
                for (int j = 0; j <= t; j++) {
                    const double *vj = v + ((size_t)(b * T + j) * nkv + h / rep) * hd;
                    double *dvj = dv + ((size_t)(b * T + j) * nkv + h / rep) * hd;
                    p[j] /= sum;
                    dp[j] = 0.0;
                    for (int d = 0; d < hd; d++) { dp[j] += dy[qr + d] * vj[d]; dvj[d] += p[j] * dy[qr + d]; }
                    D += p[j] * dp[j];
                }
                for (int d = 0; d < hd; d++) dq[qr + d] = 0.0;
                for (int j = 0; j <= t; j++) {
                    size_t kr = ((size_t)(b * T + j) * nkv + h / rep) * hd;
                    double ds = p[j] * (dp[j] - D) * sc;
                    for (int d = 0; d < hd; d++) { dq[qr + d] += ds * k[kr + d]; dk[kr + d] += ds * q[qr + d]; }
                }
            }
    free(p); free(dp);
}

/* Tiled attention at sizes that cross tiles (T not a multiple of the 64-query
   tile, a full tile plus a ragged one, GQA): forward against the double
   reference; backward against the reference's analytic gradient
   (ref_attention_bwd), as finite differences of T x T scores are slow. */
static void test_attention_long(int B, int T, int nh, int nkv, int hd) {
    int nq = B * T * nh * hd, nk = B * T * nkv * hd;
    float *q = randf(nq, 1), *k = randf(nk, 1), *v = randf(nk, 1), *dy = randf(nq, 1);
    float *o = randf(nq, 1), *lse = randf(B * T * nh, 1), *dq = randf(nq, 1), *dk = randf(nk, 1), *dv = randf(nk, 1);
    double *dq_, *dk_, *dv_, *o_ = (double *)malloc(sizeof(double) * nq);
    double *qd = to_d(q, nq), *kd = to_d(k, nk), *vd = to_d(v, nk), *dyd = to_d(dy, nq);
    dq_ = (double *)malloc(sizeof(double) * nq); dk_ = (double *)malloc(sizeof(double) * nk); dv_ = (double *)malloc(sizeof(double) * nk);
    be->attn_fwd(be->ctx, o, lse, q, k, v, B, T, nh, nkv, hd);
    ref_attention(o_, qd, kd, vd, B, T, nh, nkv, hd);
    CHECK(tu_rel_err_fd(o, o_, nq) < FWD_TOL, "attn fwd B%d T%d nh%d nkv%d hd%d: %g", B, T, nh, nkv, hd, tu_rel_err_fd(o, o_, nq));
    be->attn_bwd(be->ctx, dq, dk, dv, dy, q, k, v, o, lse, B, T, nh, nkv, hd);
    ref_attention_bwd(dq_, dk_, dv_, dyd, qd, kd, vd, B, T, nh, nkv, hd);
    CHECK(tu_rel_err_fd(dq, dq_, nq) < BWD_TOL, "attn dq T%d: %g", T, tu_rel_err_fd(dq, dq_, nq));
    CHECK(tu_rel_err_fd(dk, dk_, nk) < BWD_TOL, "attn dk T%d: %g", T, tu_rel_err_fd(dk, dk_, nk));
    CHECK(tu_rel_err_fd(dv, dv_, nk) < BWD_TOL, "attn dv T%d: %g", T, tu_rel_err_fd(dv, dv_, nk));
    free(q); free(k); free(v); free(dy); free(o); free(lse); free(dq); free(dk); free(dv);
    free(dq_); free(dk_); free(dv_); free(o_); free(qd); free(kd); free(vd); free(dyd);
}

/* lomo__expf (the vectorised exp of attention, SwiGLU and cross-entropy)
   against expf: at most 2 ulp on [-87.3, 88.7] (1 measured over every float
   there), 0 below -87.34, inf above 88.73, NaN for NaN. */
static int ulp_dist(float a, float b) {
    int32_t x, y;
    memcpy(&x, &a, 4); memcpy(&y, &b, 4);
    return x > y ? x - y : y - x;
}
static void test_expf(void) {
    int worst = 0, i;
    float at = 0;
    for (i = 0; i < 2000000; i++) {
        float x = i < 1000000 ? (float)(-87.3 + 176.0 * tu_uniform()) : (float)(20.0 * (tu_uniform() - 0.5));
        int u = ulp_dist(lomo__expf(x), expf(x));
        if (u > worst) { worst = u; at = x; }
    }
    for (i = -1000; i <= 1000; i++) {   /* around the range ends and zero */
        float xs[3] = {-87.3f + i * 1e-5f, 88.7f + i * 1e-5f, i * 1e-9f};
        for (int j = 0; j < 3; j++) {
            int u = ulp_dist(lomo__expf(xs[j]), expf(xs[j]));
            if (u > worst) { worst = u; at = xs[j]; }
        }
    }
    CHECK(worst <= 2, "lomo__expf: %d ulp from expf at %.9g", worst, at);
    CHECK(lomo__expf(-88.0f) == 0.0f && lomo__expf(-INFINITY) == 0.0f, "underflow to 0");
    CHECK(isinf(lomo__expf(89.0f)) && isinf(lomo__expf(INFINITY)), "overflow to inf");
    CHECK(isnan(lomo__expf(NAN)), "NaN stays NaN");
}

/* ---- swiglu ---- */
typedef struct { int n; double *g, *u, *dy; } sw_st;
static double sw_obj(void *p) {
    sw_st *s = (sw_st *)p; double L = 0;
    for (int i = 0; i < s->n; i++) L += s->dy[i] * ref_silu(s->g[i]) * s->u[i];
    return L;
}
static void test_swiglu(int n) {
    float *g = randf(n, 2), *u = randf(n, 1), *dy = randf(n, 1), *h = randf(n, 1), *dg = randf(n, 1), *du = randf(n, 1);
    sw_st s = {n, to_d(g, n), to_d(u, n), to_d(dy, n)};
    double *ref = (double *)malloc(sizeof(double) * n);
    be->swiglu_fwd(be->ctx, h, g, u, n);
    for (int i = 0; i < n; i++) ref[i] = ref_silu(s.g[i]) * s.u[i];
    CHECK(tu_rel_err_fd(h, ref, n) < FWD_TOL, "swiglu fwd: %g", tu_rel_err_fd(h, ref, n));
    memcpy(dg, dy, sizeof(float) * n);          /* dg aliases dh, as the driver uses it */
    be->swiglu_bwd(be->ctx, dg, du, dg, g, u, n);
    fd_grad(ref, s.g, n, sw_obj, &s);
    CHECK(tu_rel_err_fd(dg, ref, n) < BWD_TOL, "swiglu dg: %g", tu_rel_err_fd(dg, ref, n));
    fd_grad(ref, s.u, n, sw_obj, &s);
    CHECK(tu_rel_err_fd(du, ref, n) < BWD_TOL, "swiglu du: %g", tu_rel_err_fd(du, ref, n));
    free(g); free(u); free(dy); free(h); free(dg); free(du); free(ref); free(s.g); free(s.u); free(s.dy);
}

/* ---- cross-entropy ---- */
typedef struct { int N, V; double *logits; int *tg; } ce_st;
static double ce_obj(void *p) { ce_st *s = (ce_st *)p; return ref_cross_entropy(s->logits, s->tg, s->N, s->V); }
static void test_cross_entropy(int N, int V) {
    float *lg = randf(N * V, 3), *losses = randf(N, 1), *dl = randf(N * V, 1);
    int32_t *tg = (int32_t *)malloc(sizeof(int32_t) * N);
    ce_st s = {N, V, to_d(lg, N * V), (int *)malloc(sizeof(int) * N)};
    double *g = (double *)malloc(sizeof(double) * N * V), sum = 0;
    int count = 0;
    for (int n = 0; n < N; n++) { tg[n] = (n % 4 == 1) ? -100 : tu_randint(V); s.tg[n] = tg[n]; count += tg[n] >= 0; }
    be->cross_entropy(be->ctx, losses, dl, lg, tg, N, V, 1.0f / count);
    for (int n = 0; n < N; n++) sum += losses[n];
    double ref = ref_cross_entropy(s.logits, s.tg, N, V);
    CHECK(fabs(sum / count - ref) <= FWD_TOL * fabs(ref), "xent loss %g vs %g", sum / count, ref);
    fd_grad(g, s.logits, N * V, ce_obj, &s);
    CHECK(tu_rel_err_fd(dl, g, N * V) < BWD_TOL, "xent dlogits: %g", tu_rel_err_fd(dl, g, N * V));
    /* in place, as the driver calls it */
    memcpy(dl, lg, sizeof(float) * N * V);
    be->cross_entropy(be->ctx, losses, dl, dl, tg, N, V, 1.0f / count);
    CHECK(tu_rel_err_fd(dl, g, N * V) < BWD_TOL, "xent dlogits in place: %g", tu_rel_err_fd(dl, g, N * V));
    sum = 0;
    for (int n = 0; n < N; n++) sum += losses[n];
    CHECK(fabs(sum / count - ref) <= FWD_TOL * fabs(ref), "xent loss in place %g vs %g", sum / count, ref);
    free(lg); free(losses); free(dl); free(tg); free(g); free(s.logits); free(s.tg);
}

/* ---- 0.5: rmsnorm with a weight offset (Gemma's 1 + w) ---- */
typedef struct { int N, C; double *x, *w, *dy, *y, eps, off; } rno_st;
static double rno_obj(void *p) {
    rno_st *s = (rno_st *)p; double L = 0;
    ref_rmsnorm_off(s->y, s->x, s->w, s->N, s->C, s->eps, s->off);
    for (int i = 0; i < s->N * s->C; i++) L += s->dy[i] * s->y[i];
    return L;
}
static void test_rmsnorm_ex(int N, int C, float off) {
    float *x = randf(N * C, 1), *w = randf(C, 0.3), *dy = randf(N * C, 1), *y = randf(N * C, 1), *rstd = randf(N, 1);
    float *dx = randf(N * C, 1), *dx0 = (float *)malloc(sizeof(float) * N * C), *dw = randf(C, 1);
    lomo_tensor W = wrap(w, C, 0);
    rno_st s = {N, C, to_d(x, N * C), to_d(w, C), to_d(dy, N * C), (double *)malloc(sizeof(double) * N * C), 1e-6, off};
    double *g = (double *)malloc(sizeof(double) * N * C);
    be->rmsnorm_ex_fwd(be->ctx, y, rstd, x, &W, N, C, 1e-6f, off);
    ref_rmsnorm_off(s.y, s.x, s.w, N, C, 1e-6, off);
    CHECK(tu_rel_err_fd(y, s.y, N * C) < FWD_TOL, "rmsnorm_ex fwd off %g: %g", off, tu_rel_err_fd(y, s.y, N * C));
    memcpy(dx0, dx, sizeof(float) * N * C);
    be->rmsnorm_ex_bwd(be->ctx, dx, dw, dy, x, &W, rstd, N, C, off);
    fd_grad(g, s.x, N * C, rno_obj, &s);
    for (int i = 0; i < N * C; i++) g[i] += dx0[i];   /* dx accumulates */
    CHECK(tu_rel_err_fd(dx, g, N * C) < BWD_TOL, "rmsnorm_ex dx: %g", tu_rel_err_fd(dx, g, N * C));
    fd_grad(g, s.w, C, rno_obj, &s);
    CHECK(tu_rel_err_fd(dw, g, C) < BWD_TOL, "rmsnorm_ex dw: %g", tu_rel_err_fd(dw, g, C));
    free(x); free(w); free(dy); free(y); free(rstd); free(dx); free(dx0); free(dw); free(g);
    free(s.x); free(s.w); free(s.dy); free(s.y);
}

/* ---- GeGLU (tanh GELU) and scale ---- */
typedef struct { int n; double *g, *u, *dy; } gg_st;
static double gg_obj(void *p) {
    gg_st *s = (gg_st *)p; double L = 0;
    for (int i = 0; i < s->n; i++) L += s->dy[i] * ref_gelu_tanh(s->g[i]) * s->u[i];
    return L;
}
static void test_geglu(int n) {
    float *g = randf(n, 2), *u = randf(n, 1), *dy = randf(n, 1), *h = randf(n, 1), *dg = randf(n, 1), *du = randf(n, 1);
    gg_st s = {n, to_d(g, n), to_d(u, n), to_d(dy, n)};
    double *ref = (double *)malloc(sizeof(double) * n);
    be->geglu_fwd(be->ctx, h, g, u, n);
    for (int i = 0; i < n; i++) ref[i] = ref_gelu_tanh(s.g[i]) * s.u[i];
    CHECK(tu_rel_err_fd(h, ref, n) < FWD_TOL, "geglu fwd: %g", tu_rel_err_fd(h, ref, n));
    memcpy(dg, dy, sizeof(float) * n);          /* dg aliases dh, as the driver uses it */
    be->geglu_bwd(be->ctx, dg, du, dg, g, u, n);
    fd_grad(ref, s.g, n, gg_obj, &s);
    CHECK(tu_rel_err_fd(dg, ref, n) < BWD_TOL, "geglu dg: %g", tu_rel_err_fd(dg, ref, n));
    fd_grad(ref, s.u, n, gg_obj, &s);
    CHECK(tu_rel_err_fd(du, ref, n) < BWD_TOL, "geglu du: %g", tu_rel_err_fd(du, ref, n));
    /* scale */
    memcpy(h, u, sizeof(float) * n);
    be->scale(be->ctx, h, 5.656854f, n);
    for (int i = 0; i < n; i++) ref[i] = s.u[i] * 5.656854;
    CHECK(tu_rel_err_fd(h, ref, n) < FWD_TOL, "scale: %g", tu_rel_err_fd(h, ref, n));
    free(g); free(u); free(dy); free(h); free(dg); free(du); free(ref); free(s.g); free(s.u); free(s.dy);
}

/* ---- attention with scale, soft-capping and a sliding window ---- */
typedef struct { int B, T, nh, nkv, hd, window; double *q, *k, *v, *dy, *o, scale, cap; } ate_st;
static double ate_obj(void *p) {
    ate_st *s = (ate_st *)p; double L = 0; int n = s->B * s->T * s->nh * s->hd;
    ref_attention_ex(s->o, s->q, s->k, s->v, s->B, s->T, s->nh, s->nkv, s->hd, s->scale, s->cap, s->window);
    for (int i = 0; i < n; i++) L += s->dy[i] * s->o[i];
    return L;
}
static void test_attention_ex(int B, int T, int nh, int nkv, int hd, float scale, float cap, int window) {
    int nq = B * T * nh * hd, nk = B * T * nkv * hd;
    float *q = randf(nq, 1.5), *k = randf(nk, 1.5), *v = randf(nk, 1), *dy = randf(nq, 1);
    float *o = randf(nq, 1), *lse = randf(B * T * nh, 1), *dq = randf(nq, 1), *dk = randf(nk, 1), *dv = randf(nk, 1);
    ate_st s = {B, T, nh, nkv, hd, window, to_d(q, nq), to_d(k, nk), to_d(v, nk), to_d(dy, nq),
                (double *)malloc(sizeof(double) * nq), scale, cap};
    double *g = (double *)malloc(sizeof(double) * nq), *nocap = (double *)malloc(sizeof(double) * nq);
    be->attn_ex_fwd(be->ctx, o, lse, q, k, v, B, T, nh, nkv, hd, scale, cap, window);
    ref_attention_ex(s.o, s.q, s.k, s.v, B, T, nh, nkv, hd, scale, cap, window);
    CHECK(tu_rel_err_fd(o, s.o, nq) < FWD_TOL, "attn_ex fwd B%d T%d nh%d nkv%d hd%d cap %g window %d: %g",
          B, T, nh, nkv, hd, cap, window, tu_rel_err_fd(o, s.o, nq));
    /* the capping and the window must change the result, or this tests nothing new */
    ref_attention_ex(nocap, s.q, s.k, s.v, B, T, nh, nkv, hd, scale, 0, 0);
    CHECK(tu_rel_err_fd(o, nocap, nq) > 1e-3, "attn_ex: cap %g / window %d change nothing (%g)", cap, window,
          tu_rel_err_fd(o, nocap, nq));
    be->attn_ex_bwd(be->ctx, dq, dk, dv, dy, q, k, v, o, lse, B, T, nh, nkv, hd, scale, cap, window);
    fd_grad(g, s.q, nq, ate_obj, &s);
    CHECK(tu_rel_err_fd(dq, g, nq) < BWD_TOL, "attn_ex dq: %g", tu_rel_err_fd(dq, g, nq));
    fd_grad(g, s.k, nk, ate_obj, &s);
    CHECK(tu_rel_err_fd(dk, g, nk) < BWD_TOL, "attn_ex dk: %g", tu_rel_err_fd(dk, g, nk));
    fd_grad(g, s.v, nk, ate_obj, &s);
    CHECK(tu_rel_err_fd(dv, g, nk) < BWD_TOL, "attn_ex dv: %g", tu_rel_err_fd(dv, g, nk));
    free(q); free(k); free(v); free(dy); free(o); free(lse); free(dq); free(dk); free(dv); free(g); free(nocap);
    free(s.q); free(s.k); free(s.v); free(s.dy); free(s.o);
}

/* ---- soft-capped cross-entropy ---- */
typedef struct { int N, V; double *logits, *tmp, cap; int *tg; } cec_st;
static double cec_obj(void *p) {
    cec_st *s = (cec_st *)p;
    for (int i = 0; i < s->N * s->V; i++) s->tmp[i] = s->cap * tanh(s->logits[i] / s->cap);
    return ref_cross_entropy(s->tmp, s->tg, s->N, s->V);
}
static void test_cross_entropy_softcap(int N, int V, float cap) {
    float *lg = randf(N * V, 3), *losses = randf(N, 1), *dl = randf(N * V, 1), *capped = randf(N * V, 1);
    int32_t *tg = (int32_t *)malloc(sizeof(int32_t) * N);
    cec_st s = {N, V, to_d(lg, N * V), (double *)malloc(sizeof(double) * N * V), cap, (int *)malloc(sizeof(int) * N)};
    double *g = (double *)malloc(sizeof(double) * N * V), sum = 0;
    int count = 0;
    for (int n = 0; n < N; n++) { tg[n] = (n % 4 == 1) ? -100 : tu_randint(V); s.tg[n] = tg[n]; count += tg[n] >= 0; }
    memcpy(capped, lg, sizeof(float) * N * V);
    be->cross_entropy_softcap(be->ctx, losses, NULL, capped, tg, N, V, 0.0f, cap);   /* logits -> capped */
    for (int n = 0; n < N; n++) sum += losses[n];
    double ref = cec_obj(&s);
    CHECK(fabs(sum / count - ref) <= FWD_TOL * fabs(ref), "xent softcap loss %g vs %g", sum / count, ref);
    CHECK(tu_rel_err_fd(capped, s.tmp, N * V) < FWD_TOL, "xent softcap: capped logits %g", tu_rel_err_fd(capped, s.tmp, N * V));
    fd_grad(g, s.logits, N * V, cec_obj, &s);
    memcpy(dl, lg, sizeof(float) * N * V);   /* in place, as the driver calls it */
    be->cross_entropy_softcap(be->ctx, losses, dl, dl, tg, N, V, 1.0f / count, cap);
    CHECK(tu_rel_err_fd(dl, g, N * V) < BWD_TOL, "xent softcap dlogits: %g", tu_rel_err_fd(dl, g, N * V));
    free(lg); free(losses); free(dl); free(capped); free(tg); free(g); free(s.logits); free(s.tmp); free(s.tg);
}

/* ---- embedding: forward gathers rows, backward scatters with repeats ---- */
static void test_embedding(int V, int C, int N) {
    float *w = randf(V * C, 1), *x = randf(N * C, 1), *dx = randf(N * C, 1), *dw = randf(V * C, 1);
    double *ref = (double *)malloc(sizeof(double) * V * C);
    int32_t *tok = (int32_t *)malloc(sizeof(int32_t) * N);
    lomo_tensor W = wrap(w, V, C);
    int ok = 1;
    for (int n = 0; n < N; n++) tok[n] = tu_randint(V / 2);   /* repeats on purpose */
    be->embed_fwd(be->ctx, x, tok, &W, N, C);
    for (int n = 0; n < N; n++) for (int c = 0; c < C; c++) ok &= x[n * C + c] == w[tok[n] * C + c];
    CHECK(ok, "embedding forward gathers rows");
    for (int i = 0; i < V * C; i++) ref[i] = dw[i];
    for (int n = 0; n < N; n++) for (int c = 0; c < C; c++) ref[tok[n] * C + c] += dx[n * C + c];
    be->embed_bwd(be->ctx, dw, dx, tok, N, C);
    CHECK(tu_rel_err_fd(dw, ref, V * C) < FWD_TOL, "embedding bwd: %g", tu_rel_err_fd(dw, ref, V * C));
    free(w); free(x); free(dx); free(dw); free(ref); free(tok);
}

/* ---- sum of squares and the update rule ---- */
static void test_sumsq_update(void) {
    int n = 1001;
    float *x = randf(n, 1), *p = randf(n, 1), *p0 = (float *)malloc(sizeof(float) * n);
    double ref = 0;
    lomo_tensor P = wrap(p, n, 0);
    for (int i = 0; i < n; i++) ref += (double)x[i] * x[i];
    CHECK(fabs(be->sumsq(be->ctx, x, n) - ref) < 1e-12 * ref, "sumsq");
    x[7] = NAN;
    CHECK(isnan(be->sumsq(be->ctx, x, n)), "sumsq propagates NaN");
    x[7] = 0.5f;
    {   /* 0.7: eight lanes per chunk: every tail length, and the 16-bit param_sumsq, against a plain double sum */
        static const int ns[] = {1, 7, 8, 9, 15, 64 * 8 + 3, 100003};
        for (size_t q = 0; q < sizeof ns / sizeof ns[0]; q++) {
            int m = ns[q];
            float *y = randf((size_t)m, 1.0 + q);
            uint16_t *h = (uint16_t *)malloc(2 * (size_t)m);
            double r = 0, rb = 0, rh = 0;
            for (int i = 0; i < m; i++) r += (double)y[i] * y[i];
            CHECK(fabs(be->sumsq(be->ctx, y, (size_t)m) - r) <= 1e-13 * r, "sumsq, n = %d", m);
            lomo_tensor Y = wrap(y, m, 0);
            CHECK(fabs(be->param_sumsq(be->ctx, &Y) - r) <= 1e-13 * r, "param_sumsq fp32, n = %d", m);
            for (int d = 0; d < 2; d++) {
                lomo_tensor H = Y;
                double *rr = d ? &rh : &rb;
                H.dtype = d ? LOMO_F16 : LOMO_BF16; H.data = h;
                for (int i = 0; i < m; i++) {
                    h[i] = d ? lomo_f32_to_f16(y[i]) : lomo_f32_to_bf16(y[i]);
                    float w = d ? lomo_f16_to_f32(h[i]) : lomo_bf16_to_f32(h[i]);
                    *rr += (double)w * w;
                }
                CHECK(fabs(be->param_sumsq(be->ctx, &H) - *rr) <= 1e-13 * *rr, "param_sumsq %s, n = %d", d ? "f16" : "bf16", m);
            }
            free(h); free(y);
        }
    }
    memcpy(p0, p, sizeof(float) * n);
    lomo_update_args a;
    memset(&a, 0, sizeof a);
    a.rule = LOMO_OPT_LOMO; a.lr = 0.1f; a.inv_loss_scale = 0.5f; a.clip_value = 0.3f; a.clip_coef = 0.7f;
    a.weight_decay = 0.01f; a.step = 1;
    be->update(be->ctx, &P, x, NULL, NULL, &a);
    double err = 0;
    for (int i = 0; i < n; i++) {
        double g = x[i] * 0.5; g = g > 0.3 ? 0.3 : (g < -0.3 ? -0.3 : g);
        double want = p0[i] * (1 - 0.1 * 0.01) - 0.1 * g * 0.7;
        err = fmax(err, fabs(p[i] - want));
    }
    CHECK(err < 1e-6, "the LOMO update matches the lomo-optim formula: %g", err);
    free(x); free(p); free(p0);
}

/* 0.8: ||dy^T x||^2 from the upper triangles of the two Gram matrices, against the double
   gradient's sum of squares; N from one row block to several (with BLAS, omp_get_max_threads()
   blocks of about equal area once N >= 64), odd sizes; fp32 Gram entries: 1e-5 relative */
static void test_wgrad_sqnorm(int N, int K, int O) {
    float *dy = randf((size_t)N * O, 1.0), *x = randf((size_t)N * K, 1.0);
    float *scratch = (float *)malloc(sizeof(float) * 2 * (size_t)N * N);
    double ref = 0.0;
    for (int o = 0; o < O; o++)
        for (int k = 0; k < K; k++) {
            double g = 0.0;
            for (int n = 0; n < N; n++) g += (double)dy[(size_t)n * O + o] * x[(size_t)n * K + k];
            ref += g * g;
        }
    be->set_scratch(be->ctx, scratch, sizeof(float) * 2 * (size_t)N * N, LOMO_F32);
    double got = be->wgrad_sqnorm(be->ctx, dy, x, N, K, O);
    CHECK(fabs(got - ref) <= 1e-5 * ref, "wgrad_sqnorm N %d K %d O %d: %.9g vs %.9g", N, K, O, got, ref);
    be->set_scratch(be->ctx, scratch, sizeof(float) * (2 * (size_t)N * N - 1), LOMO_F32);
    CHECK(isnan(be->wgrad_sqnorm(be->ctx, dy, x, N, K, O)) && be->check(be->ctx) != 0,
          "wgrad_sqnorm with too small a scratch must fail");
    be->set_scratch(be->ctx, NULL, 0, LOMO_F32);
    free(dy); free(x); free(scratch);
}

int main(void) {
    be = lomo_cpu_backend();
    test_wgrad_sqnorm(1, 9, 5);
    test_wgrad_sqnorm(7, 13, 11);
    test_wgrad_sqnorm(67, 40, 29);
    test_wgrad_sqnorm(130, 33, 70);
    printf("backend: %s\n", be->name);
    test_matmul(7, 5, 3);
    test_matmul(13, 17, 11);
    test_rmsnorm(5, 9);
    test_rope(2, 7, 3, 6, 10000.0f);
    test_rope(1, 9, 2, 8, 500000.0f);
    test_attention(2, 7, 4, 2, 6);   /* GQA */
    test_attention(1, 9, 3, 3, 4);   /* MHA */
    test_attention(2, 5, 4, 1, 8);   /* MQA */
    test_attention(1, 67, 2, 1, 4);  /* a full 64-query tile and a ragged one, with finite differences */
    test_attention_long(2, 131, 4, 2, 16);   /* three tiles, the last ragged, GQA */
    test_attention_long(1, 64, 3, 3, 10);    /* exactly one tile */
    test_expf();
    test_swiglu(37);
    test_cross_entropy(9, 13);
    test_embedding(11, 6, 17);
    test_sumsq_update();
    /* 0.5: Qwen3 / Gemma ops */
    test_rmsnorm_ex(5, 9, 1.0f);     /* Gemma (1 + w) */
    test_rmsnorm_ex(7, 6, 0.0f);     /* plain, per head (Qwen3's q/k norm shape) */
    test_geglu(37);
    test_attention_ex(2, 7, 4, 2, 6, 0.3f, 1.5f, 0);   /* soft-capped, GQA */
    test_attention_ex(1, 9, 2, 1, 4, 0.5f, 0.0f, 3);   /* window 3 < T, MQA */
    test_attention_ex(2, 8, 3, 3, 8, 0.25f, 2.0f, 4);  /* both */
    test_attention_ex(1, 100, 2, 1, 4, 0.5f, 0.0f, 30);   /* window across the 64-query tiles (BLAS: tile keys from the window start) */
    test_attention_ex(1, 90, 2, 2, 4, 0.3f, 1.5f, 70);    /* cap and a window wider than a tile */
    test_cross_entropy_softcap(9, 13, 2.0f);
    test_rope_ex(2, 7, 3, 8, 6, 10000.0f, 1.0f, 1.0f);   /* Phi-4-mini style 0.75 */
    test_rope_ex(1, 9, 2, 10, 4, 300.0f, 1.0f, 1.19f);   /* with a longrope attention factor */
    test_rope_ex(1, 8, 2, 6, 6, 500.0f, 2.5f, 1.0f);     /* whole head, linear scaling */
    return tu_done("test_ops");
}
