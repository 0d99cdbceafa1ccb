/* ref_double.h - an independent, naive double-precision Llama forward used as
   the finite-difference reference in the tests. Written plainly, from the
   formulas, sharing no code with lomo.h: if both agree, both are right or
   both made the same mistake from different code. */
#ifndef REF_DOUBLE_H
#define REF_DOUBLE_H
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- ops: out = f(in), all row-major ---- */

/* y (N,O) = x (N,K) W^T + b */
static inline void ref_linear(double *y, const double *x, const double *W, const double *b, int N, int K, int O) {
    for (int n = 0; n < N; n++)
        for (int o = 0; o < O; o++) {
            double s = b ? b[o] : 0.0;
            for (int i = 0; i < K; i++) s += x[n * K + i] * W[o * K + i];
            y[n * O + o] = s;
        }
}

static inline void ref_rmsnorm(double *y, const double *x, const double *w, int N, int C, double eps) {
    for (int n = 0; n < N; n++) {
        double ss = 0.0;
        for (int i = 0; i < C; i++) ss += x[n * C + i] * x[n * C + i];
        double r = 1.0 / sqrt(ss / C + eps);
        for (int i = 0; i < C; i++) y[n * C + i] = x[n * C + i] * r * w[i];
    }
}

/* x (B*T, nh, hd) in place; angle = t * theta^(-2i/hd) (in double) */
static inline void ref_rope(double *x, int B, int T, int nh, int hd, double theta) {
    int half = hd / 2;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < nh; h++) {
                double *v = x + ((b * T + t) * nh + h) * hd;
                for (int i = 0; i < half; i++) {
                    double ang = t * pow(theta, -2.0 * i / hd);
                    double a = v[i], c = v[i + half];
                    v[i] = a * cos(ang) - c * sin(ang);
                    v[i + half] = c * cos(ang) + a * sin(ang);
                }
            }
}

/* causal softmax attention with the full score matrix, GQA by head // rep */
static inline void ref_attention(double *out, const double *q, const double *k, const double *v,
                          int B, int T, int nh, int nkv, int hd) {
    int rep = nh / nkv;
    double *p = (double *)malloc(sizeof(double) * T);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < nh; h++)
            for (int t = 0; t < T; t++) {
                const double *qt = q + ((b * T + t) * nh + h) * hd;
                double mx = -1e300, sum = 0.0;
                for (int j = 0; j <= t; j++) {
                    const double *kj = k + ((b * T + j) * nkv + h / rep) * hd;
                    double s = 0.0;
                    for (int d = 0; d < hd; d++) s += qt[d] * kj[d];
                    p[j] = s / sqrt((double)hd);
                    if (p[j] > mx) mx = p[j];
                }
                for (int j = 0; j <= t; j++) { p[j] = exp(p[j] - mx); sum += p[j]; }
                double *ot = out + ((b * T + t) * nh + h) * hd;
                for (int d = 0; d < hd; d++) {
                    double s = 0.0;
                    for (int j = 0; j <= t; j++) s += p[j] / sum * v[((b * T + j) * nkv + h / rep) * hd + d];
                    ot[d] = s;
                }
            }
    free(p);
}

static inline double ref_silu(double x) { return x / (1.0 + exp(-x)); }

/* ---- 0.5 (Qwen3, Gemma) ---- */

/* y = x / rms(x) * (off + w): Gemma's norm has off = 1 */
static inline void ref_rmsnorm_off(double *y, const double *x, const double *w, int N, int C, double eps, double off) {
    for (int n = 0; n < N; n++) {
        double ss = 0.0;
        for (int i = 0; i < C; i++) ss += x[n * C + i] * x[n * C + i];
        double r = 1.0 / sqrt(ss / C + eps);
        for (int i = 0; i < C; i++) y[n * C + i] = x[n * C + i] * r * (off + w[i]);
    }
}

/* GELU, tanh approximation (PyTorch approximate="tanh") */
static inline double ref_gelu_tanh(double x) {
    const double pi = 3.14159265358979323846;
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / pi) * (x + 0.044715 * x * x * x)));
}

/* x (B*T, nh, hd) in place, on the first rot dims of each head (the rest pass
   through); angle = t * theta^(-2i/rot) / factor */
static inline void ref_rope_partial(double *x, int B, int T, int nh, int hd, int rot, double theta, double factor) {
    int half = rot / 2;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < nh; h++) {
                double *v = x + ((b * T + t) * nh + h) * hd;
                for (int i = 0; i < half; i++) {
                    double ang = t * pow(theta, -2.0 * i / rot) / factor;
                    double a = v[i], c = v[i + half];
                    v[i] = a * cos(ang) - c * sin(ang);
                    v[i + half] = c * cos(ang) + a * sin(ang);
                }
            }
}

/* longrope: angle = t * theta^(-2i/rot) / ext[i], rotated dims times mscale */
static inline void ref_rope_longrope(double *x, int B, int T, int nh, int hd, int rot, double theta,
                                     const double *ext, double mscale) {
    int half = rot / 2;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < nh; h++) {
                double *v = x + ((b * T + t) * nh + h) * hd;
                for (int i = 0; i < half; i++) {
                    double ang = t * pow(theta, -2.0 * i / rot) / ext[i];
                    double a = v[i], c = v[i + half];
                    v[i] = (a * cos(ang) - c * sin(ang)) * mscale;
                    v[i + half] = (c * cos(ang) + a * sin(ang)) * mscale;
                }
            }
}

/* causal attention over the full score matrix with score = scale q.k,
   soft-capped to cap tanh(score / cap) when cap > 0, and masked to
   t - j < window when window > 0 */
static inline void ref_attention_ex(double *out, const double *q, const double *k, const double *v,
                             int B, int T, int nh, int nkv, int hd, double scale, double cap, int window) {
    int rep = nh / nkv;
    double *p = (double *)malloc(sizeof(double) * T);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < nh; h++)
            for (int t = 0; t < T; t++) {
                const double *qt = q + ((b * T + t) * nh + h) * hd;
                double mx = -1e300, sum = 0.0;
                for (int j = 0; j <= t; j++) {
                    const double *kj = k + ((b * T + j) * nkv + h / rep) * hd;
                    double s = 0.0;
                    for (int d = 0; d < hd; d++) s += qt[d] * kj[d];
                    s *= scale;
                    if (cap > 0) s = cap * tanh(s / cap);
                    p[j] = (window > 0 && t - j >= window) ? -1e300 : s;
                    if (p[j] > mx) mx = p[j];
                }
                for (int j = 0; j <= t; j++) { p[j] = p[j] <= -1e299 ? 0.0 : exp(p[j] - mx); sum += p[j]; }
                double *ot = out + ((b * T + t) * nh + h) * hd;
                for (int d = 0; d < hd; d++) {
                    double s = 0.0;
                    for (int j = 0; j <= t; j++) s += p[j] / sum * v[((b * T + j) * nkv + h / rep) * hd + d];
                    ot[d] = s;
                }
            }
    free(p);
}

/* mean over targets >= 0 of -log softmax(logits)[target] */
static inline double ref_cross_entropy(const double *logits, const int *targets, int N, int V) {
    double total = 0.0;
    int count = 0;
    for (int n = 0; n < N; n++) {
        if (targets[n] < 0) continue;
        double mx = -1e300, s = 0.0;
        for (int i = 0; i < V; i++) if (logits[n * V + i] > mx) mx = logits[n * V + i];
        for (int i = 0; i < V; i++) s += exp(logits[n * V + i] - mx);
        total += log(s) + mx - logits[n * V + targets[n]];
        count++;
    }
    return count ? total / count : 0.0;
}

/* ---- the model ---- */

typedef struct ref_config {
    int C, H, L, nh, nkv, hd, V, tied, qkv_bias, o_bias;
    double eps, theta;
    /* 0.5: all 0 gives the Llama block */
    int qk_norm;        /* per-head norm of q and k before RoPE */
    int gemma;          /* (1 + w) norms, embedding * sqrt(C), GeGLU, post-norms */
    double qpas;        /* scores * qpas^-1/2 (0: hd) */
    double attn_cap, final_cap;   /* 0: none */
    int window, pattern;          /* layer l local iff pattern && (l+1) % pattern; window 0: none */
    double theta_local, rope_factor;  /* local layers' base (0: theta); global layers' linear factor (0: 1) */
    int rot;            /* rotary dims of a head (0: hd) */
    const double *ext;  /* longrope's per-frequency divisors (NULL: none), with mscale on the rotated dims */
    double mscale;
} ref_config;

typedef struct ref_layer {
    double *attn_norm, *wq, *bq, *wk, *bk, *wv, *bv, *wo, *bo, *mlp_norm, *wg, *wu, *wd;
    double *q_norm, *k_norm, *post_attn_norm, *post_mlp_norm;
} ref_layer;

typedef struct ref_model {
    ref_config c;
    double *embed, *norm, *lm_head;   /* lm_head == embed when tied */
    ref_layer *layers;
} ref_model;

/* mean loss of the whole model; labels in the transformers convention */
static inline double ref_model_loss(const ref_model *m, const int *tokens, const int *labels, int B, int T) {
    const ref_config *c = &m->c;
    int N = B * T, C = c->C, H = c->H, qd = c->nh * c->hd, kvd = c->nkv * c->hd;
    double *x = (double *)malloc(sizeof(double) * N * C), *xn = (double *)malloc(sizeof(double) * N * C);
    double *q = (double *)malloc(sizeof(double) * N * qd), *k = (double *)malloc(sizeof(double) * N * kvd);
    double *v = (double *)malloc(sizeof(double) * N * kvd), *att = (double *)malloc(sizeof(double) * N * qd);
    double *o = (double *)malloc(sizeof(double) * N * C), *g = (double *)malloc(sizeof(double) * N * H);
    double *u = (double *)malloc(sizeof(double) * N * H);
    double *logits = (double *)malloc(sizeof(double) * N * c->V);
    int *tg = (int *)malloc(sizeof(int) * N);
    double off = c->gemma ? 1.0 : 0.0, *tmp = (double *)malloc(sizeof(double) * N * (qd > C ? qd : C));
    for (int n = 0; n < N; n++) memcpy(x + n * C, m->embed + tokens[n] * C, sizeof(double) * C);
    if (c->gemma) for (int i = 0; i < N * C; i++) x[i] *= sqrt((double)C);
    for (int l = 0; l < c->L; l++) {
        const ref_layer *w = &m->layers[l];
        int local = c->window > 0 && c->pattern > 0 && (l + 1) % c->pattern != 0;
        double th = local && c->theta_local > 0 ? c->theta_local : c->theta;
        double fac = !local && c->rope_factor > 0 ? c->rope_factor : 1.0;
        ref_rmsnorm_off(xn, x, w->attn_norm, N, C, c->eps, off);
        ref_linear(q, xn, w->wq, w->bq, N, C, qd);
        ref_linear(k, xn, w->wk, w->bk, N, C, kvd);
        ref_linear(v, xn, w->wv, w->bv, N, C, kvd);
        if (c->qk_norm) {
            memcpy(tmp, q, sizeof(double) * N * qd); ref_rmsnorm_off(q, tmp, w->q_norm, N * c->nh, c->hd, c->eps, off);
            memcpy(tmp, k, sizeof(double) * N * kvd); ref_rmsnorm_off(k, tmp, w->k_norm, N * c->nkv, c->hd, c->eps, off);
        }
        if (c->ext) {
            ref_rope_longrope(q, B, T, c->nh, c->hd, c->rot ? c->rot : c->hd, th, c->ext, c->mscale);
            ref_rope_longrope(k, B, T, c->nkv, c->hd, c->rot ? c->rot : c->hd, th, c->ext, c->mscale);
        } else {
            ref_rope_partial(q, B, T, c->nh, c->hd, c->rot ? c->rot : c->hd, th, fac);
            ref_rope_partial(k, B, T, c->nkv, c->hd, c->rot ? c->rot : c->hd, th, fac);
        }
        ref_attention_ex(att, q, k, v, B, T, c->nh, c->nkv, c->hd, 1.0 / sqrt(c->qpas > 0 ? c->qpas : (double)c->hd),
                         c->attn_cap, local ? c->window : 0);
        ref_linear(o, att, w->wo, w->bo, N, qd, C);
        if (c->gemma) { memcpy(tmp, o, sizeof(double) * N * C); ref_rmsnorm_off(o, tmp, w->post_attn_norm, N, C, c->eps, off); }
        for (int i = 0; i < N * C; i++) x[i] += o[i];
        ref_rmsnorm_off(xn, x, w->mlp_norm, N, C, c->eps, off);
        ref_linear(g, xn, w->wg, NULL, N, C, H);
        ref_linear(u, xn, w->wu, NULL, N, C, H);
        for (int i = 0; i < N * H; i++) g[i] = (c->gemma ? ref_gelu_tanh(g[i]) : ref_silu(g[i])) * u[i];
        ref_linear(o, g, w->wd, NULL, N, H, C);
        if (c->gemma) { memcpy(tmp, o, sizeof(double) * N * C); ref_rmsnorm_off(o, tmp, w->post_mlp_norm, N, C, c->eps, off); }
        for (int i = 0; i < N * C; i++) x[i] += o[i];
    }
    ref_rmsnorm_off(xn, x, m->norm, N, C, c->eps, off);
    ref_linear(logits, xn, m->lm_head, NULL, N, C, c->V);
    if (c->final_cap > 0) for (int i = 0; i < N * c->V; i++) logits[i] = c->final_cap * tanh(logits[i] / c->final_cap);
    free(tmp);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) tg[b * T + t] = t + 1 < T ? labels[b * T + t + 1] : -100;
    double loss = ref_cross_entropy(logits, tg, N, c->V);
    free(x); free(xn); free(q); free(k); free(v); free(att); free(o); free(g); free(u); free(logits); free(tg);
    return loss;
}

#endif
