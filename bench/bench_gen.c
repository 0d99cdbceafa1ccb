/* bench_gen.c - lomo_generate on the CPU: prefill tokens/s, decode tokens/s,
   memory. Greedy, batch 1, no EOS, a fixed number of new tokens; the prompt
   is the same deterministic sequence bench_gen_torch.py uses. Prefill time =
   from the call to the first token's callback (the prompt's forward + the
   first pick); decode tokens/s = (new - 1) / the rest. One JSON line out.
     build/bench_gen --model DIR [--prompt 128 --new 128 --ids-out FILE] */
#define LOMO_IMPLEMENTATION
#include "../lomo.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

int main(int argc, char **argv) {
    const char *dir = NULL, *ids_out = NULL;
    int P = 128, N = 128, i;
    for (i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) dir = argv[i + 1];
        else if (!strcmp(argv[i], "--prompt")) P = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--new")) N = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--ids-out")) ids_out = argv[i + 1];
    }
    if (!dir || P <= 0 || N <= 1) { fprintf(stderr, "usage: bench_gen --model DIR [--prompt P --new N]\n"); return 2; }
    lomo_model *m = gm = lomo_load(dir, NULL);
    if (!m) { fprintf(stderr, "bench_gen: %s\n", lomo_error()); return 1; }
    int32_t *prompt = (int32_t *)malloc(sizeof(int32_t) * (size_t)P), *out = (int32_t *)malloc(sizeof(int32_t) * (size_t)N);
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
    printf("{\"impl\": \"lomo\", \"backend\": \"%s\", \"prompt\": %d, \"new\": %d, \"prefill_s\": %.6f, \"prefill_tok_s\": %.2f, "
           "\"decode_tok_s\": %.3f, \"peak_rss_mib\": %.1f, \"params_mib\": %.1f, \"kv_cache_mib\": %.2f, \"kv_seen_mib\": %.2f}\n",
           m->be->name, P, n, t_first - t0, P / (t_first - t0), (n - 1) / (t1 - t_first), peak_rss_mib(),
           r.current[LOMO_MEM_PARAMS] / 1048576.0, info.kv_bytes / 1048576.0, kv_seen / 1048576.0);
    free(prompt); free(out);
    lomo_model_free(m);
    return 0;
}
