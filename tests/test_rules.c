/* test_rules.c - the built-in update rules against their references, over
   5-step trajectories on transformers-made Llamas (untied GQA, and tied),
   and (LOMO, AdaLomo) on the Qwen3, Gemma 2, Gemma 3 and Phi-3 checkpoints of test_hf:
   LOMO and AdaLomo against the authors' lomo-optim 0.1.1 (clip by norm and by
   value, weight decay), AdamW against torch.optim.AdamW (+ clip_grad_norm_).
   Fixtures: tests/ref/make_trajectories.py. Bound: max|err| / max|ref| per
   tensor <= 1e-5 after step 1 and after step 5, losses <= 1e-5 relative. */
#define LOMO_IMPLEMENTATION
#include "../lomo.h"
#include "test_util.h"

static void run(const char *rule, const char *model) {
    char path[256], dir[256], name[160];
    snprintf(path, sizeof path, "tests/ref/traj_%s_%s.safetensors", rule, model);
    snprintf(dir, sizeof dir, "tests/ref/%s", model);
    lomo__st_file f;
    lomo_model *m = lomo_load(dir, NULL);
    CHECK(m && lomo__st_open(&f, path) == 0, "%s: %s", path, lomo_error());
    if (!m) return;
    const lomo__st_tensor *ids = lomo__st_find(&f, "input_ids"), *labs = lomo__st_find(&f, "labels"), *ls = lomo__st_find(&f, "losses");
    int K = (int)ids->shape[0], B = (int)ids->shape[1], T = (int)ids->shape[2];
    lomo_train_opts o;
    memset(&o, 0, sizeof o);
    o.batch = B; o.seq_len = T; o.weight_decay = 0.01f; o.clip_norm = 1.0f;
    float lr;
    if (!strcmp(rule, "lomo")) { o.optimizer = LOMO_OPT_LOMO; o.clip_value = 0.05f; lr = 0.05f; }
    else if (!strcmp(rule, "adalomo")) { o.optimizer = LOMO_OPT_ADALOMO; lr = 0.01f; }
    else { o.optimizer = LOMO_OPT_ADAMW; lr = 0.01f; }
    lomo_trainer *t = lomo_trainer_new(m, &o);
    double lworst = 0, w1 = 0, w5 = 0;
    for (int k = 0; k < K; k++) {
        lomo_step_info info;
        CHECK(lomo_step(t, (const int32_t *)ids->data + (size_t)k * B * T, (const int32_t *)labs->data + (size_t)k * B * T,
                        lr, &info) == 0, "step: %s", lomo_error());
        float ref = ((const float *)ls->data)[k];
        lworst = fmax(lworst, fabs(info.loss - ref) / ref);
        if (k == 0 || k == K - 1) {
            for (int i = 0; i < m->n_tensors; i++) {
                snprintf(name, sizeof name, "%s.%s", k ? "final" : "step1", m->tensors[i].name);
                const lomo__st_tensor *r = lomo__st_find(&f, name);
                CHECK(r != NULL, "%s lacks %s", path, name);
                if (!r) continue;
                double e = tu_rel_err((float *)m->tensors[i].data, (const float *)r->data, m->tensors[i].numel);
                if (e > 1e-5) printf("  %s %s: %s rel err %.2e\n", rule, model, name, e);
                if (k) w5 = fmax(w5, e); else w1 = fmax(w1, e);
            }
        }
    }
    printf("%-8s %-11s %d steps: losses rel err %.1e, weights after step 1 %.1e, after step %d %.1e\n", rule, model, K,
           lworst, w1, K, w5);
    CHECK(lworst <= 1e-5 && w1 <= 1e-5 && w5 <= 1e-5, "%s on %s beyond 1e-5", rule, model);
    lomo_memory r = lomo_memory_report(m);
    size_t want = !strcmp(rule, "adamw") ? 8 * (size_t)lomo_n_params(m) : 0;
    if (!strcmp(rule, "adalomo"))
        for (int i = 0; i < m->n_tensors; i++)
            want += 4 * (size_t)(m->tensors[i].ndim == 2 ? m->tensors[i].shape[0] + m->tensors[i].shape[1] : m->tensors[i].numel);
    CHECK(r.peak[LOMO_MEM_OPTIMIZER] == want, "%s optimizer state %zu B, expected %zu", rule, r.peak[LOMO_MEM_OPTIMIZER], want);
    lomo_trainer_free(t);
    lomo__st_close(&f);
    lomo_model_free(m);
}

int main(void) {
    const char *rules[] = {"lomo", "adalomo", "adamw"}, *models[] = {"llama_gqa", "llama_tied"};
    for (int r = 0; r < 3; r++)
        for (int k = 0; k < 2; k++) run(rules[r], models[k]);
    /* 0.5: Qwen3 (q/k norms, tied), Gemma 2 (soft-capping, local layers, tied), Gemma 3 (untied) */
    const char *families[] = {"qwen3_tied", "gemma2", "gemma3", "phi3"};   /* phi3: the hook sees fused tensors */
    for (int r = 0; r < 2; r++)
        for (int k = 0; k < 4; k++) run(rules[r], families[k]);
    return tu_done("test_rules");
}
