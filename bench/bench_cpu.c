/* bench_cpu.c - lomo training throughput and memory on the CPU, on a random
   Llama (default ~25M parameters). Prints tokens/s, the memory report and
   peak RSS; --out FILE writes the numbers as JSON. bench/run_cpu.sh runs it
   beside PyTorch + lomo-optim on the same shapes.

   build/bench_cpu --dim 512 --layers 6 --heads 8 --kv-heads 8 --hidden 1376 \
                   --vocab 6144 --batch 4 --seq 256 --steps 5 --checkpointing */
#define LOMO_IMPLEMENTATION
#include "../lomo.h"
#include <sys/resource.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static double now(void) {
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);   /* C11 */
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    int dim = 512, layers = 6, heads = 8, kv = 8, hidden = 1376, vocab = 6144;
    int batch = 4, seq = 256, steps = 5, warmup = 1, ckpt = 0, tied = 0;
    float lr = 1e-3f, clip = 0.0f;
    const char *out = NULL, *clip_mode = "global", *dtype = "f32", *optimizer = "lomo";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "0";
        if (!strcmp(a, "--checkpointing")) { ckpt = 1; continue; }
        if (!strcmp(a, "--tied")) { tied = 1; continue; }
        i++;
        if (!strcmp(a, "--dim")) dim = atoi(v);
        else if (!strcmp(a, "--layers")) layers = atoi(v);
        else if (!strcmp(a, "--heads")) heads = atoi(v);
        else if (!strcmp(a, "--kv-heads")) kv = atoi(v);
        else if (!strcmp(a, "--hidden")) hidden = atoi(v);
        else if (!strcmp(a, "--vocab")) vocab = atoi(v);
        else if (!strcmp(a, "--batch")) batch = atoi(v);
        else if (!strcmp(a, "--seq")) seq = atoi(v);
        else if (!strcmp(a, "--steps")) steps = atoi(v);
        else if (!strcmp(a, "--warmup")) warmup = atoi(v);
        else if (!strcmp(a, "--lr")) lr = (float)atof(v);
        else if (!strcmp(a, "--clip-norm")) clip = (float)atof(v);
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--clip-mode")) clip_mode = v;
        else if (!strcmp(a, "--dtype")) dtype = v;
        else if (!strcmp(a, "--optimizer")) optimizer = v;
        else { fprintf(stderr, "bench_cpu: unknown flag %s\n", a); return 2; }
    }
    lomo_config c;
    lomo_config_default(&c, dim, hidden, layers, heads, kv, vocab);
    c.tie_embeddings = tied;
    c.max_seq_len = seq;
    lomo_load_opts lo = {!strcmp(dtype, "bf16") ? LOMO_BF16 : !strcmp(dtype, "f16") ? LOMO_F16 : LOMO_F32, NULL};
    lomo_model *m = lomo_model_new(&c, &lo);
    if (!m) { fprintf(stderr, "bench_cpu: %s\n", lomo_error()); return 1; }
    lomo_model_init_random(m, 1, 0.02f);
    lomo_train_opts o;
    memset(&o, 0, sizeof o);
    o.batch = batch; o.seq_len = seq; o.checkpointing = ckpt; o.clip_norm = clip;
    o.clip_mode = !strcmp(clip_mode, "gram") ? LOMO_CLIP_GLOBAL_GRAM : !strcmp(clip_mode, "tensor") ? LOMO_CLIP_TENSOR : LOMO_CLIP_GLOBAL;
    o.optimizer = !strcmp(optimizer, "adalomo") ? LOMO_OPT_ADALOMO : !strcmp(optimizer, "adamw") ? LOMO_OPT_ADAMW : LOMO_OPT_LOMO;
    lomo_trainer *t = lomo_trainer_new(m, &o);
    if (!t) { fprintf(stderr, "bench_cpu: %s\n", lomo_error()); return 1; }
    int32_t *tok = (int32_t *)malloc(sizeof(int32_t) * batch * seq);
    uint64_t s = 42;
    for (int i = 0; i < batch * seq; i++) tok[i] = (int32_t)(lomo__rng_next(&s) % (uint64_t)vocab);
    lomo_step_info info, first;
    memset(&first, 0, sizeof first);
    for (int i = 0; i < warmup; i++) lomo_step(t, tok, NULL, lr, &first);
    double t0 = now();
    for (int i = 0; i < steps; i++) {
        if (lomo_step(t, tok, NULL, lr, &info)) { fprintf(stderr, "bench_cpu: %s\n", lomo_error()); return 1; }
        if (i == 0 && !warmup) first = info;
    }
    double dt = now() - t0, tps = (double)batch * seq * steps / dt;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss = ru.ru_maxrss / 1024.0;
    lomo_memory r = lomo_memory_report(m);
    size_t formula[LOMO_MEM_NTAGS];
    size_t total = lomo_memory_formula(&c, &o, formula);
    printf("lomo (%s), %.1fM params, %s, %s, B=%d T=%d, checkpointing %s, clip-norm %g (%s), %d threads\n",
           lomo_cpu_backend()->name, lomo_n_params(m) / 1e6, dtype, optimizer, batch, seq, ckpt ? "on" : "off", clip, clip_mode,
#ifdef _OPENMP
           omp_get_max_threads()
#else
           1
#endif
    );
    printf("tokens/s %.1f   step %.3f s   loss %.4f -> %.4f   peak RSS %.1f MiB   tracked peak %.1f MiB (formula %.1f MiB)\n",
           tps, dt / steps, first.loss, info.loss, rss, r.total_peak / 1048576.0, total / 1048576.0);
    lomo_memory_print(stdout, &r);
    if (out) {
        FILE *f = fopen(out, "w");
        if (!f) { fprintf(stderr, "bench_cpu: cannot write %s\n", out); return 1; }
        fprintf(f, "{\"impl\": \"lomo\", \"backend\": \"%s\", \"tokens_per_s\": %.2f, \"peak_rss_mib\": %.1f, "
                   "\"tracked_peak_mib\": %.2f, \"formula_mib\": %.2f, \"params\": %lld, \"loss_first\": %.5f, "
                   "\"loss_last\": %.5f, \"config\": {\"dim\": %d, \"layers\": %d, \"heads\": %d, \"kv_heads\": %d, "
                   "\"hidden\": %d, \"vocab\": %d, \"batch\": %d, \"seq\": %d, \"steps\": %d, \"checkpointing\": %d, "
                   "\"clip_norm\": %g, \"clip_mode\": \"%s\", \"dtype\": \"%s\", \"optimizer\": \"%s\"}}\n",
                lomo_cpu_backend()->name, tps, rss, r.total_peak / 1048576.0, total / 1048576.0,
                (long long)lomo_n_params(m), first.loss, info.loss, dim, layers, heads, kv, hidden, vocab,
                batch, seq, steps, ckpt, clip, clip_mode, dtype, optimizer);
        fclose(f);
    }
    free(tok);
    lomo_trainer_free(t);
    lomo_model_free(m);
    return 0;
}
