/* bench_gen.c - lomo_generate on the CPU: prefill tokens/s, decode tokens/s,
   memory, and the bandwidth a decode step achieves next to what this machine
   reads. Greedy, batch 1, no EOS, a fixed number of new tokens; the prompt
   is the same deterministic sequence bench_gen_torch.py uses. Prefill time =
   from the call to the first token's callback (the prompt's forward + the
   first pick); decode tokens/s = (new - 1) / the rest. A decode step reads
   every weight but the embedding once (and one embedding row) plus the KV
   cache so far: decode_gb_s = those bytes (averaged over the decode steps) x
   tokens/s. mem_read_gb_s: a STREAM-like read (a sum over 512 MiB, far past
   the last-level cache, best of 5) with the same OpenMP threads. One JSON line out.
     build/bench_gen --model DIR [--prompt 128 --new 128 --dtype f32|bf16 --ids-out FILE] */
#define LOMO_IMPLEMENTATION
#include "../lomo.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static double now(void) { struct timespec ts; timespec_get(&ts, TIME_UTC); return ts.tv_sec + ts.tv_nsec * 1e-9; }
static double t_first;
static size_t kv_seen;
static lomo_model *gm;
static int on_token(void *user, int32_t tok, int i) {
    (void)user; (void)tok;
    if (i == 0) { t_first = now(); kv_seen = lomo_memory_report(gm).current[LOMO_MEM_KV]; }
    return 0;
}
static double peak_rss_mib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = 0;
    while (f && fgets(line, sizeof line, f)) if (!strncmp(line, "VmHWM:", 6)) kb = atof(line + 6);
    if (f) fclose(f);
    return kb / 1024.0;
}

/* GB/s of a read-only pass (sum) over n floats, best of reps; the buffer is written first */
static double read_gb_s(size_t n, int reps, double *sink) {
    float *a = (float *)malloc(sizeof(float) * n);
    double best = 0.0;
    long long i, nn = (long long)n;
    int r;
    if (!a) return 0.0;
#pragma omp parallel for
    for (i = 0; i < nn; i++) a[i] = (float)(i & 1023) * 1e-3f;
    for (r = 0; r < reps; r++) {
        double t0 = now(), s = 0.0, dt;
#pragma omp parallel for reduction(+:s)
        for (i = 0; i < nn; i += 8192) {
            float acc[32];   /* 32 independent lanes: wide vector adds without reassociation */
            long long k, hi = i + 8192 < nn ? i + 8192 : nn;
            int l;
            for (l = 0; l < 32; l++) acc[l] = 0.0f;
            for (k = i; k + 32 <= hi; k += 32)
                for (l = 0; l < 32; l++) acc[l] += a[k + l];
            for (; k < hi; k++) acc[0] += a[k];
            for (l = 0; l < 32; l++) s += acc[l];
        }
        dt = now() - t0;
        *sink += s;
        if (4.0 * nn / dt / 1e9 > best) best = 4.0 * nn / dt / 1e9;
    }
    free(a);
    return best;
}

int main(int argc, char **argv) {
    const char *dir = NULL, *ids_out = NULL, *dtype = "f32";
    int P = 128, N = 128, i, threads = 1;
    double sink = 0.0, wbytes = 0.0, kvbytes, bw;
    lomo_load_opts lo;
    for (i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) dir = argv[i + 1];
        else if (!strcmp(argv[i], "--prompt")) P = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--new")) N = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--dtype")) dtype = argv[i + 1];
        else if (!strcmp(argv[i], "--ids-out")) ids_out = argv[i + 1];
    }
    if (!dir || P <= 0 || N <= 1 || (strcmp(dtype, "f32") && strcmp(dtype, "bf16"))) {
        fprintf(stderr, "usage: bench_gen --model DIR [--prompt P --new N --dtype f32|bf16]\n"); return 2;
    }
    memset(&lo, 0, sizeof lo);
    lo.dtype = strcmp(dtype, "bf16") ? LOMO_F32 : LOMO_BF16;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    lomo_model *m = gm = lomo_load(dir, &lo);
    if (!m) { fprintf(stderr, "bench_gen: %s\n", lomo_error()); return 1; }
    for (i = 0; i < m->n_tensors; i++) {   /* what one decode step reads of the weights */
        const lomo_tensor *t = &m->tensors[i];
        double b = (double)t->numel * (t->dtype == LOMO_F32 ? 4 : 2);
        if (t == m->embed && !m->cfg.tie_embeddings) b = (double)m->cfg.dim * (t->dtype == LOMO_F32 ? 4 : 2);
        wbytes += b;
    }
    /* the fp32 cache: K and V of every layer, for the positions before each decode step (mean) */
    kvbytes = 2.0 * 4 * m->cfg.n_layers * m->cfg.n_kv_heads * m->cfg.head_dim * (P + N / 2.0);
    int32_t *prompt = (int32_t *)malloc(sizeof(int32_t) * (size_t)P), *out = (int32_t *)malloc(sizeof(int32_t) * (size_t)(N > 8 ? N : 8));   /* the warm-up makes 8 */
    for (i = 0; i < P; i++) prompt[i] = (int32_t)(((int64_t)i * 7919 + 13) % m->cfg.vocab_size);
    lomo_gen_opts g;
    memset(&g, 0, sizeof g);
    g.on_token = on_token;
    g.max_new_tokens = 8;
    if (lomo_generate(m, prompt, P, &g, out, NULL) < 0) { fprintf(stderr, "bench_gen: %s\n", lomo_error()); return 1; } /* warm-up */
    g.max_new_tokens = N;
    lomo_gen_info info;
    double t0 = now();
    int n = lomo_generate(m, prompt, P, &g, out, &info);
    double t1 = now();
    if (n != N) { fprintf(stderr, "bench_gen: %d tokens: %s\n", n, lomo_error()); return 1; }
    if (ids_out) {
        FILE *f = fopen(ids_out, "w");
        for (i = 0; f && i < n; i++) fprintf(f, "%s%d", i ? ", " : "[", out[i]);
        if (f) { fprintf(f, "]"); fclose(f); }
    }
    lomo_memory r = lomo_memory_report(m);
    double dec = (n - 1) / (t1 - t_first), rss = peak_rss_mib();
    bw = read_gb_s((size_t)128 << 20, 5, &sink);   /* after the peak RSS is read: its buffer is not lomo's */
    printf("{\"impl\": \"lomo\", \"backend\": \"%s\", \"dtype\": \"%s\", \"threads\": %d, \"prompt\": %d, \"new\": %d, "
           "\"prefill_s\": %.6f, \"prefill_tok_s\": %.2f, "
           "\"decode_tok_s\": %.3f, \"peak_rss_mib\": %.1f, \"params_mib\": %.1f, \"kv_cache_mib\": %.2f, \"kv_seen_mib\": %.2f, "
           "\"step_mb\": %.2f, \"decode_gb_s\": %.2f, \"mem_read_gb_s\": %.2f, \"sink\": %g}\n",
           m->be->name, dtype, threads, P, n, t_first - t0, P / (t_first - t0), dec, rss,
           r.current[LOMO_MEM_PARAMS] / 1048576.0, info.kv_bytes / 1048576.0, kv_seen / 1048576.0,
           (wbytes + kvbytes) / 1e6, (wbytes + kvbytes) * dec / 1e9, bw, sink > 0 ? 1.0 : 0.0);
    free(prompt); free(out);
    lomo_model_free(m);
    return 0;
}
