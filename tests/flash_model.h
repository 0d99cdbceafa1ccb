/* flash_model.h - a CPU model, in C, of the CUDA backend's tensor-core flash attention
   (lomo_cuda.cuh, "flash attention on tensor cores": lomo__cu_k_fa_fwd, lomo__cu_k_fa_d,
   lomo__cu_k_fa_dkv, lomo__cu_k_fa_dq). Same block sizes, same loop order over blocks,
   warps, tiles and heads, the same online-softmax rescaling, the operands rounded to bf16
   where the kernel stages them into shared memory (q, k, v, dout) and where P and dS become
   mma operands, fp32 everywhere else. Each function names the kernel it models and each
   loop the kernel's loop; what the model does not reproduce is the register mapping of the
   mma fragments (a warp's 16 x 8 tiles are plain arrays here) and the order of the fp32
   additions inside one mma and across the 4 lanes of a row, neither of which the algorithm
   depends on. With round = 0 nothing is rounded and the model must agree with the CPU
   backend's exact attention to fp32 rounding (tests/test_flash_model.c): that checks the
   tiling, masking, rescaling and the reduction order; with round = 1 it shows the bf16
   error the GPU kernel has to meet. */
#ifndef FLASH_MODEL_H
#define FLASH_MODEL_H
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* the kernel's constants (LOMO_CU__FA_*) */
#define FM_FWD_BR 64   /* queries per forward / dQ block: 4 warps x 16 */
#define FM_FWD_BC 32   /* keys per forward tile */
#define FM_DKV_BC 64   /* keys per dK/dV block: 4 warps x 16 */
#define FM_DKV_BR 16   /* queries per dK/dV tile */
#define FM_DQ_BC 16    /* keys per dQ tile */
#define FM_WARPS 4
#define FM_MAXHD 128

static int fm_round = 1;   /* 1: bf16 operands as on the GPU; 0: the same tiling in fp32 */

/* __float2bfloat16_rn: round to nearest even (NaN kept) */
static float fm_bf16(float x) {
    uint32_t u;
    if (!fm_round || x != x) return x;
    memcpy(&u, &x, 4);
    u += 0x7FFFu + ((u >> 16) & 1u);
    u &= 0xFFFF0000u;
    memcpy(&x, &u, 4);
    return x;
}
/* lomo__cu_fa_stage: rows t0 .. t0+R-1 of head h of x (B, T, nheads, hd) into s (R x hd), zeros past T */
static void fm_stage(float *s, const float *x, int R, int hd, int b, int t0, int T, int nheads, int h) {
    int r, d;
    for (r = 0; r < R; r++)
        for (d = 0; d < hd; d++) {
            int t = t0 + r;
            s[r * hd + d] = t < T ? fm_bf16(x[((size_t)((size_t)b * T + t) * nheads + h) * hd + d]) : 0.0f;
        }
}
/* lomo__cu_fa_score */
static float fm_score(float qk, int t, int j, int T, float scale, float cap, int window) {
    float x;
    if (j > t || j >= T || t >= T || (window > 0 && j <= t - window)) return -INFINITY;
    x = qk * scale;
    return cap > 0.0f ? cap * tanhf(x / cap) : x;
}
/* lomo__cu_fa_ds */
static float fm_ds(float p, float dp, float D, float c, float scale, float cap) {
    float ds = p * (dp - D) * scale;
    if (cap > 0.0f) ds *= 1.0f - (c / cap) * (c / cap);
    return ds;
}
/* one warp's product acc (16 x n) += A (16 x kdim, rows of a at stride lda) B, with B(kk, j) =
   bt ? b[j * ldb + kk] : b[kk * ldb + j]: the k16 steps in order, as the kernel's mma loop */
static void fm_mma(float *acc, int n, const float *a, int lda, const float *b, int ldb, int bt, int kdim) {
    int i, j, k0, kk;
    for (k0 = 0; k0 < kdim; k0 += 16)
        for (i = 0; i < 16; i++)
            for (j = 0; j < n; j++) {
                float s = 0.0f;
                for (kk = k0; kk < k0 + 16; kk++) s += a[i * lda + kk] * (bt ? b[j * ldb + kk] : b[kk * ldb + j]);
                acc[i * n + j] += s;
            }
}

/* lomo__cu_k_fa_fwd: grid (ceil(T / 64), B * nh), a warp per 16 queries */
static void fm_fwd(float *out, float *lse, const float *q, const float *k, const float *v, int B, int T, int nh,
                   int nkv, int hd, float scale, float cap, int window) {
    static float sq[FM_FWD_BR * FM_MAXHD], sk[FM_FWD_BC * FM_MAXHD], sv[FM_FWD_BC * FM_MAXHD];
    static float o[FM_WARPS][16 * FM_MAXHD], m[FM_WARPS][16], l[FM_WARPS][16];
    int bx, by, w, r, n;
    for (by = 0; by < B * nh; by++)
        for (bx = 0; bx * FM_FWD_BR < T; bx++) {
            int b = by / nh, h = by % nh, g = h / (nh / nkv), t0 = bx * FM_FWD_BR, j0;
            int jbeg = window > 0 && t0 - window + 1 > 0 ? t0 - window + 1 : 0, jend = t0 + FM_FWD_BR < T ? t0 + FM_FWD_BR : T;
            fm_stage(sq, q, FM_FWD_BR, hd, b, t0, T, nh, h);
            for (w = 0; w < FM_WARPS; w++) {
                memset(o[w], 0, sizeof o[w]);
                for (r = 0; r < 16; r++) { m[w][r] = -INFINITY; l[w][r] = 0.0f; }
            }
            for (j0 = jbeg; j0 < jend; j0 += FM_FWD_BC) {   /* the kernel's key-tile loop */
                fm_stage(sk, k, FM_FWD_BC, hd, b, j0, T, nkv, g);
                fm_stage(sv, v, FM_FWD_BC, hd, b, j0, T, nkv, g);
                for (w = 0; w < FM_WARPS; w++) {             /* the 4 warps (independent) */
                    float s[16 * FM_FWD_BC], pa[16 * FM_FWD_BC];
                    memset(s, 0, sizeof s);
                    fm_mma(s, FM_FWD_BC, sq + 16 * w * hd, hd, sk, hd, 1, hd);   /* S = Q K^T */
                    for (r = 0; r < 16; r++) {               /* the kernel's r loop (rows gq, gq + 8 of each lane) */
                        int t = t0 + 16 * w + r;
                        float mx = -INFINITY, mn, corr, sum = 0.0f;
                        for (n = 0; n < FM_FWD_BC; n++) {
                            s[r * FM_FWD_BC + n] = fm_score(s[r * FM_FWD_BC + n], t, j0 + n, T, scale, cap, window);
                            mx = fmaxf(mx, s[r * FM_FWD_BC + n]);
                        }
                        mn = fmaxf(m[w][r], mx);
                        corr = mn == -INFINITY ? 1.0f : expf(m[w][r] - mn);
                        for (n = 0; n < FM_FWD_BC; n++) {
                            float p = mn == -INFINITY ? 0.0f : expf(s[r * FM_FWD_BC + n] - mn);
                            s[r * FM_FWD_BC + n] = p;
                            sum += p;
                        }
                        l[w][r] = l[w][r] * corr + sum;
                        m[w][r] = mn;
                        for (n = 0; n < hd; n++) o[w][r * hd + n] *= corr;
                    }
                    for (n = 0; n < 16 * FM_FWD_BC; n++) pa[n] = fm_bf16(s[n]);   /* lomo__cu_frag_c2a */
                    fm_mma(o[w], hd, pa, FM_FWD_BC, sv, hd, 0, FM_FWD_BC);       /* O += P V */
                }
            }
            for (w = 0; w < FM_WARPS; w++)
                for (r = 0; r < 16; r++) {
                    int t = t0 + 16 * w + r;
                    size_t row = (size_t)((size_t)b * T + t) * nh + h;
                    if (t >= T) continue;
                    for (n = 0; n < hd; n++) out[row * hd + n] = o[w][r * hd + n] * (1.0f / l[w][r]);
                    lse[row] = m[w][r] + logf(l[w][r]);
                }
        }
}

/* lomo__cu_k_fa_d: D = rowsum(dout * out), fp32 */
static void fm_d(float *D, const float *dout, const float *out, size_t rows, int hd) {
    size_t r;
    int d;
    for (r = 0; r < rows; r++) {
        float s = 0.0f;
        for (d = 0; d < hd; d++) s += dout[r * hd + d] * out[r * hd + d];
        D[r] = s;
    }
}

/* lomo__cu_k_fa_dkv: grid (ceil(T / 64), B * nkv), a warp per 16 keys; heads of the group in
   order, query tiles of 16 in order, so each dK, dV element is one fixed-order sum */
static void fm_dkv(float *dk, float *dv, const float *dout, const float *q, const float *k, const float *v,
                   const float *lse, const float *D, int B, int T, int nh, int nkv, int hd, float scale, float cap,
                   int window) {
    static float sk[FM_DKV_BC * FM_MAXHD], sv[FM_DKV_BC * FM_MAXHD], sq[FM_DKV_BR * FM_MAXHD], sdo[FM_DKV_BR * FM_MAXHD];
    static float ak[FM_WARPS][16 * FM_MAXHD], av[FM_WARPS][16 * FM_MAXHD];
    float sl[FM_DKV_BR], sd[FM_DKV_BR];
    int bx, by, w, i, n;
    for (by = 0; by < B * nkv; by++)
        for (bx = 0; bx * FM_DKV_BC < T; bx++) {
            int b = by / nkv, g = by % nkv, rep = nh / nkv, j0 = bx * FM_DKV_BC, h, t0;
            int tend = window > 0 && j0 + FM_DKV_BC - 1 + window < T ? j0 + FM_DKV_BC - 1 + window : T;
            fm_stage(sk, k, FM_DKV_BC, hd, b, j0, T, nkv, g);
            fm_stage(sv, v, FM_DKV_BC, hd, b, j0, T, nkv, g);
            memset(ak, 0, sizeof ak);
            memset(av, 0, sizeof av);
            for (h = g * rep; h < (g + 1) * rep; h++)
                for (t0 = j0; t0 < tend; t0 += FM_DKV_BR) {      /* the kernel's query-tile loop */
                    fm_stage(sq, q, FM_DKV_BR, hd, b, t0, T, nh, h);
                    fm_stage(sdo, dout, FM_DKV_BR, hd, b, t0, T, nh, h);
                    for (i = 0; i < FM_DKV_BR; i++) {
                        int t = t0 + i;
                        size_t row = (size_t)((size_t)b * T + (t < T ? t : 0)) * nh + h;
                        sl[i] = t < T ? lse[row] : 0.0f;
                        sd[i] = t < T ? D[row] : 0.0f;
                    }
                    for (w = 0; w < FM_WARPS; w++) {
                        float st[16 * FM_DKV_BR], dpt[16 * FM_DKV_BR];
                        memset(st, 0, sizeof st);
                        memset(dpt, 0, sizeof dpt);
                        fm_mma(st, FM_DKV_BR, sk + 16 * w * hd, hd, sq, hd, 1, hd);     /* S^T = K Q^T */
                        fm_mma(dpt, FM_DKV_BR, sv + 16 * w * hd, hd, sdo, hd, 1, hd);   /* dP^T = V dO^T */
                        for (i = 0; i < 16; i++)
                            for (n = 0; n < FM_DKV_BR; n++) {
                                int j = j0 + 16 * w + i, t = t0 + n;
                                float c = fm_score(st[i * FM_DKV_BR + n], t, j, T, scale, cap, window);
                                float p = c == -INFINITY ? 0.0f : expf(c - sl[n]);
                                st[i * FM_DKV_BR + n] = p;
                                dpt[i * FM_DKV_BR + n] = p == 0.0f ? 0.0f : fm_ds(p, dpt[i * FM_DKV_BR + n], sd[n], c, scale, cap);
                            }
                        for (n = 0; n < 16 * FM_DKV_BR; n++) { st[n] = fm_bf16(st[n]); dpt[n] = fm_bf16(dpt[n]); }
                        fm_mma(av[w], hd, st, FM_DKV_BR, sdo, hd, 0, FM_DKV_BR);    /* dV += P^T dO */
                        fm_mma(ak[w], hd, dpt, FM_DKV_BR, sq, hd, 0, FM_DKV_BR);    /* dK += dS^T Q */
                    }
                }
            for (w = 0; w < FM_WARPS; w++)
                for (i = 0; i < 16; i++) {
                    int j = j0 + 16 * w + i;
                    size_t kr = ((size_t)((size_t)b * T + j) * nkv + g) * hd;
                    if (j >= T) continue;
                    memcpy(dk + kr, ak[w] + i * hd, sizeof(float) * hd);
                    memcpy(dv + kr, av[w] + i * hd, sizeof(float) * hd);
                }
        }
}

/* lomo__cu_k_fa_dq: grid (ceil(T / 64), B * nh), a warp per 16 queries, key tiles of 16 in order */
static void fm_dq(float *dq, const float *dout, const float *q, const float *k, const float *v, const float *lse,
                  const float *D, int B, int T, int nh, int nkv, int hd, float scale, float cap, int window) {
    static float sq[FM_FWD_BR * FM_MAXHD], sdo[FM_FWD_BR * FM_MAXHD], sk[FM_DQ_BC * FM_MAXHD], sv[FM_DQ_BC * FM_MAXHD];
    static float acc[FM_WARPS][16 * FM_MAXHD];
    int bx, by, w, i, n;
    for (by = 0; by < B * nh; by++)
        for (bx = 0; bx * FM_FWD_BR < T; bx++) {
            int b = by / nh, h = by % nh, g = h / (nh / nkv), t0 = bx * FM_FWD_BR, j0;
            int jbeg = window > 0 && t0 - window + 1 > 0 ? t0 - window + 1 : 0, jend = t0 + FM_FWD_BR < T ? t0 + FM_FWD_BR : T;
            fm_stage(sq, q, FM_FWD_BR, hd, b, t0, T, nh, h);
            fm_stage(sdo, dout, FM_FWD_BR, hd, b, t0, T, nh, h);
            memset(acc, 0, sizeof acc);
            for (j0 = jbeg; j0 < jend; j0 += FM_DQ_BC) {          /* the kernel's key-tile loop */
                fm_stage(sk, k, FM_DQ_BC, hd, b, j0, T, nkv, g);
                fm_stage(sv, v, FM_DQ_BC, hd, b, j0, T, nkv, g);
                for (w = 0; w < FM_WARPS; w++) {
                    float s[16 * FM_DQ_BC], dp[16 * FM_DQ_BC];
                    memset(s, 0, sizeof s);
                    memset(dp, 0, sizeof dp);
                    fm_mma(s, FM_DQ_BC, sq + 16 * w * hd, hd, sk, hd, 1, hd);     /* S = Q K^T */
                    fm_mma(dp, FM_DQ_BC, sdo + 16 * w * hd, hd, sv, hd, 1, hd);   /* dP = dO V^T */
                    for (i = 0; i < 16; i++) {
                        int t = t0 + 16 * w + i;
                        size_t row = (size_t)((size_t)b * T + (t < T ? t : 0)) * nh + h;
                        float L = t < T ? lse[row] : 0.0f, Dr = t < T ? D[row] : 0.0f;
                        for (n = 0; n < FM_DQ_BC; n++) {
                            float c = fm_score(s[i * FM_DQ_BC + n], t, j0 + n, T, scale, cap, window);
                            float p = c == -INFINITY ? 0.0f : expf(c - L);
                            s[i * FM_DQ_BC + n] = p == 0.0f ? 0.0f : fm_bf16(fm_ds(p, dp[i * FM_DQ_BC + n], Dr, c, scale, cap));
                        }
                    }
                    fm_mma(acc[w], hd, s, FM_DQ_BC, sk, hd, 0, FM_DQ_BC);          /* dQ += dS K */
                }
            }
            for (w = 0; w < FM_WARPS; w++)
                for (i = 0; i < 16; i++) {
                    int t = t0 + 16 * w + i;
                    if (t >= T) continue;
                    memcpy(dq + ((size_t)((size_t)b * T + t) * nh + h) * hd, acc[w] + i * hd, sizeof(float) * hd);
                }
        }
}

/* lomo__cu_fa_bwd: D once, then the dK/dV pass, then the dQ pass */
static int fm_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k, const float *v,
                  const float *out, const float *lse, int B, int T, int nh, int nkv, int hd, float scale, float cap,
                  int window) {
    size_t rows = (size_t)B * T * nh;
    float *D = (float *)malloc(rows * sizeof(float) + 4);
    if (!D) return -1;
    fm_d(D, dout, out, rows, hd);
    fm_dkv(dk, dv, dout, q, k, v, lse, D, B, T, nh, nkv, hd, scale, cap, window);
    fm_dq(dq, dout, q, k, v, lse, D, B, T, nh, nkv, hd, scale, cap, window);
    free(D);
    return 0;
}
#endif
