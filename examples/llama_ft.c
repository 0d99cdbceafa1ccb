/* llama_ft.c - fine-tune every parameter of a Llama-family model with LOMO.
   The program users copy and adapt.

   With no --model it runs the built-in demo: it creates a small Llama, trains
   it on a synthetic task generated here (arithmetic progressions mod V: the
   model must infer the step from the first tokens and continue), prints a
   progress line per step, the memory table, and the held-out next-token
   accuracy before and after, then saves a Hugging Face checkpoint.

     llama_ft [--model HF_DIR] [--out DIR] [--steps N] [--lr X] [--batch N]
              [--seq-len N] [--clip-norm X] [--clip-value X] [--weight-decay X]
              [--checkpointing] [--seed N] */
#define LOMO_IMPLEMENTATION
#include "../lomo.h"
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- the synthetic task ---- */

/* a, a+d, a+2d, ... mod V, with d in [1, 8] */
static void make_batch(int32_t *tok, int B, int T, int V, uint64_t *rng) {
    for (int b = 0; b < B; b++) {
        int a = (int)(lomo__rng_next(rng) % (uint64_t)V), d = 1 + (int)(lomo__rng_next(rng) % 8);
        for (int t = 0; t < T; t++) tok[b * T + t] = (a + d * t) % V;
    }
}

/* next-token accuracy on positions 2.. (the step is known from then on), and mean loss */
static double evaluate(lomo_trainer *t, lomo_model *m, int B, int T, uint64_t seed, double *loss) {
    int32_t *tok = (int32_t *)malloc(sizeof(int32_t) * B * T);
    int V = m->cfg.vocab_size, right = 0, total = 0;
    double lsum = 0;
    uint64_t rng = seed;
    float *lg = m->be->host_memory ? NULL : (float *)malloc(sizeof(float) * (size_t)B * T * V);
    for (int round = 0; round < 4; round++) {
        lomo_step_info info;
        memset(&info, 0, sizeof info);
        make_batch(tok, B, T, V, &rng);
        lomo_forward(t, tok, NULL, &info);
        lsum += info.loss;
        const float *l = lomo_logits(t);
        if (lg) { m->be->download(m->be->ctx, lg, l, sizeof(float) * (size_t)B * T * V); l = lg; }
        for (int i = 0; i < B * T; i++) {
            if (i % T < 2 || i % T == T - 1) continue;
            int best = 0;
            for (int v = 1; v < V; v++) if (l[(size_t)i * V + v] > l[(size_t)i * V + best]) best = v;
            right += best == tok[i + 1];
            total++;
        }
    }
    free(tok); free(lg);
    *loss = lsum / 4;
    return (double)right / total;
}

int main(int argc, char **argv) {
    const char *model_dir = NULL, *out = "demo_out";
    int steps = 400, B = 8, T = 32, ckpt = 0;
    float lr = 0.1f, clip_norm = 1.0f, clip_value = 0.0f, wd = 0.0f;
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--checkpointing")) { ckpt = 1; continue; }
        if (!v) { fprintf(stderr, "llama_ft: %s needs a value\n", a); return 2; }
        i++;
        if (!strcmp(a, "--model")) model_dir = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--steps")) steps = atoi(v);
        else if (!strcmp(a, "--batch")) B = atoi(v);
        else if (!strcmp(a, "--seq-len")) T = atoi(v);
        else if (!strcmp(a, "--lr")) lr = (float)atof(v);
        else if (!strcmp(a, "--clip-norm")) clip_norm = (float)atof(v);
        else if (!strcmp(a, "--clip-value")) clip_value = (float)atof(v);
        else if (!strcmp(a, "--weight-decay")) wd = (float)atof(v);
        else if (!strcmp(a, "--seed")) seed = (uint64_t)atoll(v);
        else { fprintf(stderr, "llama_ft: unknown flag %s\n", a); return 2; }
    }

    lomo_model *m;
    if (model_dir) {
        if (!(m = lomo_load(model_dir, NULL))) { fprintf(stderr, "llama_ft: %s\n", lomo_error()); return 1; }
    } else {
        lomo_config c;   /* the demo model: 4 layers, GQA, tied embeddings */
        lomo_config_default(&c, 96, 256, 4, 6, 2, 64);
        c.tie_embeddings = 1;
        c.max_seq_len = T;
        if (!(m = lomo_model_new(&c, NULL))) { fprintf(stderr, "llama_ft: %s\n", lomo_error()); return 1; }
        lomo_model_init_random(m, seed, 0.05f);
    }
    lomo_train_opts o;
    memset(&o, 0, sizeof o);
    o.batch = B; o.seq_len = T; o.checkpointing = ckpt;
    o.clip_norm = clip_norm; o.clip_value = clip_value; o.weight_decay = wd;
    lomo_trainer *t = lomo_trainer_new(m, &o);
    if (!t) { fprintf(stderr, "llama_ft: %s\n", lomo_error()); return 1; }
    printf("model: %.2fM parameters, %d layers, dim %d, %d/%d heads, vocab %d%s; backend %s\n",
           lomo_n_params(m) / 1e6, m->cfg.n_layers, m->cfg.dim, m->cfg.n_heads, m->cfg.n_kv_heads,
           m->cfg.vocab_size, m->cfg.tie_embeddings ? ", tied" : "", m->be->name);

    double loss0, acc0 = evaluate(t, m, B, T, 999, &loss0);
    printf("held-out before training: next-token accuracy %.1f%%, loss %.4f\n", 100 * acc0, loss0);

    int32_t *tok = (int32_t *)malloc(sizeof(int32_t) * B * T);
    uint64_t rng = seed * 7919 + 1;
    double t0 = now();
    for (int s = 1; s <= steps; s++) {
        lomo_step_info info;
        make_batch(tok, B, T, m->cfg.vocab_size, &rng);
        float lr_s = lr * (s <= steps / 10 ? (float)s / (steps / 10 + 1) : 1.0f);   /* short warmup */
        if (lomo_step(t, tok, NULL, lr_s, &info)) { fprintf(stderr, "llama_ft: %s\n", lomo_error()); return 1; }
        double el = now() - t0;
        if (s % 25 == 0 || s == 1 || s == steps)
            printf("step %4d/%d  loss %.4f  lr %.4f  grad norm %.3f  %.0f tok/s  peak %.1f MiB  ETA %.0fs\n",
                   s, steps, info.loss, lr_s, info.grad_norm, (double)s * B * T / el,
                   lomo_memory_report(m).total_peak / 1048576.0, el / s * (steps - s));
    }

    double loss1, acc1 = evaluate(t, m, B, T, 999, &loss1);
    printf("held-out after %d steps: next-token accuracy %.1f%% (was %.1f%%), loss %.4f (was %.4f)\n",
           steps, 100 * acc1, 100 * acc0, loss1, loss0);

    lomo_memory r = lomo_memory_report(m);
    lomo_memory_print(stdout, &r);
    if (lomo_save(m, out)) { fprintf(stderr, "llama_ft: %s\n", lomo_error()); return 1; }
    printf("saved a Hugging Face checkpoint to %s/ (config.json, model.safetensors)\n", out);
    free(tok);
    lomo_trainer_free(t);
    lomo_model_free(m);
    return 0;
}
