/* test_gen.c - generation with a KV cache (lomo_generate, lomo_kv, lomo_sample).
   - greedy ids equal transformers' generate(do_sample=False) for 72 new
     tokens (fixtures tests/ref/gen/, made by tests/ref/make_gen_fixtures.py):
     GQA, tied, biases (Llama, Qwen2), Llama 3 rope scaling, Mistral, Mistral
     with a sliding window of 6 (shorter than the 81-token sequence), the
     real stories260K, and the other families: Qwen3 (qk-norm, tied / biases),
     Gemma 2 (scaled, soft-capped attention, local layers with window 4, final
     soft-cap), Gemma 3 (local layers with window 3 and their own RoPE base),
     Phi-3 (window 5 on every layer; partial rotary; longrope whose original
     length 8 the generation passes, so transformers switches to the long
     factors mid-way); each step's logits within max|err| / max|ref| <= 1e-4;
   - the cached forward equals lomo's full forward (the training path, no
     cache) at every position, token by token and in prefill chunks, fp32
     weights and f16 storage: rel err <= 2e-5 (longrope: the rows within
     its original length against a full forward of that length, the others
     against the whole one, as transformers drops and recomputes the cache
     when a call first passes the original length);
   - between training steps: weights, the next step and the memory report of
     the trainer are untouched; the KV cache shows in the report while it
     exists and is freed after;
   - sampling: the same seed gives the same tokens (also on 1 vs 2 threads);
     frequencies match softmax(logits / T) (and the top-k / top-p renormalised
     distribution, computed here independently) by a chi-square test at a
     fixed seed, threshold the 0.999 quantile;
   - stopping at EOS ids (lomo_eos_ids: int, list, generation_config.json
     first), stop strings, the callback; bad input refused.
   Run from the repository root. */
#define LOMO_IMPLEMENTATION
#include "../lomo.h"
#include "test_util.h"
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define TOL_HF 1e-4    /* lomo vs transformers, fp32 */
#define TOL_KV 2e-5    /* cached vs full forward, both lomo, fp32 */

typedef struct fixture { int P, N, V; int32_t *prompt, *gen; float *logits; } fixture;

static int read_fixture(const char *path, fixture *fx) {
    lomo__st_file f;
    const lomo__st_tensor *p, *g, *l;
    memset(fx, 0, sizeof *fx);
    if (lomo__st_open(&f, path)) return -1;
    p = lomo__st_find(&f, "prompt"); g = lomo__st_find(&f, "gen"); l = lomo__st_find(&f, "logits");
    if (!p || !g || !l || p->dtype != LOMO__ST_I32 || g->dtype != LOMO__ST_I32 || l->ndim != 2) { lomo__st_close(&f); return -1; }
    fx->P = (int)p->numel; fx->N = (int)g->numel; fx->V = (int)l->shape[1];
    fx->prompt = (int32_t *)malloc(4 * (size_t)fx->P); fx->gen = (int32_t *)malloc(4 * (size_t)fx->N);
    fx->logits = (float *)malloc(4 * (size_t)l->numel);
    memcpy(fx->prompt, p->data, 4 * (size_t)fx->P); memcpy(fx->gen, g->data, 4 * (size_t)fx->N);
    lomo__st_read_f32(l, fx->logits);
    lomo__st_close(&f);
    return 0;
}
static void free_fixture(fixture *fx) { free(fx->prompt); free(fx->gen); free(fx->logits); }

/* lomo's own full forward (training path, no cache) over one sequence: (T, V) logits */
static float *full_logits(lomo_model *m, const int32_t *seq, int T) {
    lomo_train_opts o;
    lomo_step_info info;
    lomo_trainer *t;
    float *out;
    memset(&o, 0, sizeof o);
    o.batch = 1; o.seq_len = T;
    if (!(t = lomo_trainer_new(m, &o))) return NULL;
    if (lomo_forward(t, seq, NULL, &info)) { lomo_trainer_free(t); return NULL; }
    out = (float *)malloc(sizeof(float) * (size_t)T * m->cfg.vocab_size);
    memcpy(out, lomo_logits(t), sizeof(float) * (size_t)T * m->cfg.vocab_size);
    lomo_trainer_free(t);
    return out;
}

/* the cached forward, chunk tokens at a time (1 = pure decode), all logits */
static float *kv_logits(lomo_model *m, const int32_t *seq, int T, int chunk) {
    lomo_kv *kv = lomo_kv_new(m, T, chunk);
    float *out;
    int done = 0;
    if (!kv) return NULL;
    out = (float *)malloc(sizeof(float) * (size_t)T * m->cfg.vocab_size);
    while (done < T) {
        int n = T - done < chunk ? T - done : chunk;
        if (lomo_kv_eval(kv, seq + done, n, out + (size_t)done * m->cfg.vocab_size, 1)) { free(out); lomo_kv_free(kv); return NULL; }
        done += n;
    }
    CHECK(lomo_kv_len(kv) == T, "kv length %d after %d tokens", lomo_kv_len(kv), T);
    lomo_kv_free(kv);
    return out;
}

static void run_case(const char *name, const char *dir) {
    char path[300];
    fixture fx;
    lomo_model *m;
    lomo_gen_opts g;
    lomo_gen_info info;
    int32_t *out, *seq;
    int n, T, i, same = 1, first_diff = -1;
    double e_step, worst_kv = 0;
    snprintf(path, sizeof path, "tests/ref/gen/%s.safetensors", name);
    if (read_fixture(path, &fx)) { CHECK(0, "%s: fixture %s: %s", name, path, lomo_error()); return; }
    if (!(m = lomo_load(dir, NULL))) {
        if (!strcmp(name, "stories260K")) printf("stories260K not found at %s: skipped\n", dir);
        else CHECK(0, "%s: load: %s", name, lomo_error());
        free_fixture(&fx);
        return;
    }
    CHECK(fx.V == m->cfg.vocab_size, "%s: vocab %d vs fixture %d", name, m->cfg.vocab_size, fx.V);
    memset(&g, 0, sizeof g);
    g.max_new_tokens = fx.N;
    out = (int32_t *)calloc((size_t)fx.N, sizeof(int32_t));
    n = lomo_generate(m, fx.prompt, fx.P, &g, out, &info);
    CHECK(n == fx.N && info.stop == LOMO_GEN_LENGTH, "%s: generated %d of %d (%s)", name, n, fx.N, n < 0 ? lomo_error() : "");
    for (i = 0; i < fx.N && i < n; i++) if (out[i] != fx.gen[i]) { same = 0; if (first_diff < 0) first_diff = i; }
    CHECK(same && n == fx.N, "%s: greedy ids differ from transformers' generate at new token %d", name, first_diff);
    /* each step's logits: prefill the prompt, then one generated token at a time */
    T = fx.P + fx.N - 1;
    seq = (int32_t *)malloc(sizeof(int32_t) * (size_t)T);
    memcpy(seq, fx.prompt, 4 * (size_t)fx.P);
    memcpy(seq + fx.P, fx.gen, 4 * (size_t)(fx.N - 1));
    {
        lomo_kv *kv = lomo_kv_new(m, T, fx.P);
        float *lg = (float *)malloc(sizeof(float) * (size_t)fx.V);
        e_step = 0;
        CHECK(kv != NULL, "%s: kv: %s", name, lomo_error());
        for (i = 0; kv && i < fx.N; i++) {
            int rc = i == 0 ? lomo_kv_eval(kv, seq, fx.P, lg, 0) : lomo_kv_eval(kv, seq + fx.P + i - 1, 1, lg, 0);
            double e;
            CHECK(rc == 0, "%s: kv eval: %s", name, lomo_error());
            e = tu_rel_err(lg, fx.logits + (size_t)i * fx.V, (size_t)fx.V);
            if (e > e_step) e_step = e;
        }
        CHECK(e_step <= TOL_HF, "%s: step logits rel err %g vs transformers", name, e_step);
        lomo_kv_free(kv);
        free(lg);
    }
    /* cached vs full forward at every position (the training forward refuses
       sequences longer than a sliding window: there transformers is the reference) */
    if (!m->cfg.sliding_window || m->cfg.sliding_window >= T) {
        float *full = full_logits(m, seq, T);
        int chunks[3] = {1, 5, T}, k, r0 = 0;
        CHECK(full != NULL, "%s: full forward: %s", name, lomo_error());
        if (m->cfg.rope_type == 3 && T > m->cfg.rope_original_max_pos) {
            int To = m->cfg.rope_original_max_pos;
            float *fo = full_logits(m, seq, To), *ko = kv_logits(m, seq, To, 1);
            double e = fo && ko ? tu_rel_err(ko, fo, (size_t)To * fx.V) : 1.0;
            CHECK(e <= TOL_KV, "%s: cached (token by token) vs full forward within the original length %d: %g", name, To, e);
            if (e > worst_kv) worst_kv = e;
            {   /* back within the original length after passing it: the cache is recomputed with the short factors */
                lomo_kv *kv = lomo_kv_new(m, T, 4);
                float *lg = (float *)malloc(sizeof(float) * (size_t)T * fx.V);
                int ok = kv && lg && lomo_kv_eval(kv, seq, To + 3, lg, 1) == 0 && lomo_kv_truncate(kv, To - 3) == 0 &&
                         lomo_kv_eval(kv, seq + To - 3, 2, lg, 1) == 0 && lomo_kv_eval(kv, seq + To - 1, 1, lg + 2 * (size_t)fx.V, 1) == 0;
                double e2 = ok && fo ? tu_rel_err(lg, fo + (size_t)(To - 3) * fx.V, 3 * (size_t)fx.V) : 1.0;
                CHECK(ok && e2 <= TOL_KV, "%s: truncated back into the original length: rel err %g %s", name, e2, ok ? "" : lomo_error());
                if (e2 > worst_kv) worst_kv = e2;
                lomo_kv_free(kv); free(lg);
            }
            free(fo); free(ko);
            /* past it every cached position is long (the crossing call recomputes the cache), as
               the full forward; the rows of calls within the original length are short */
            r0 = To;
        }
        for (k = 0; full && k < 3; k++) {
            float *kl = kv_logits(m, seq, T, chunks[k]);
            int rr = chunks[k] == T ? 0 : r0;
            double e = kl ? tu_rel_err(kl + (size_t)rr * fx.V, full + (size_t)rr * fx.V, (size_t)(T - rr) * fx.V) : 1.0;
            CHECK(kl && e <= TOL_KV, "%s: cached (chunk %d) vs full forward: rel err %g %s", name, chunks[k], e,
                  kl ? "" : lomo_error());
            if (e > worst_kv) worst_kv = e;
            free(kl);
        }
        free(full);
        printf("%-14s %d + %d tokens: ids equal transformers, step logits rel err %.1e, cached vs full %.1e\n",
               name, fx.P, n, e_step, worst_kv);
    } else
        printf("%-14s %d + %d tokens, sliding window %d: ids equal transformers, step logits rel err %.1e\n",
               name, fx.P, n, m->cfg.sliding_window, e_step);
    CHECK(m->mem.current[LOMO_MEM_KV] == 0, "%s: %zu bytes of kv cache left allocated", name, m->mem.current[LOMO_MEM_KV]);
    free(seq); free(out);
    free_fixture(&fx);
    lomo_model_free(m);
}

/* 16-bit storage: the cached forward widens f16 weights through its own
   scratch; a bf16 decode step reads the 16-bit rows directly */
static void run_f16(void) {
    for (int dt = LOMO_BF16; dt <= LOMO_F16; dt++) {
        lomo_load_opts lo = {(lomo_dtype)dt, NULL, NULL};
        lomo_model *m = lomo_load("tests/ref/f16", &lo);
        int32_t seq[23];
        int i;
        CHECK(m != NULL, "f16: load: %s", lomo_error());
        if (!m) return;
        for (i = 0; i < 23; i++) seq[i] = tu_randint(m->cfg.vocab_size);
        {
            float *full = full_logits(m, seq, 23), *kl = kv_logits(m, seq, 23, 4), *k1 = kv_logits(m, seq, 23, 1);
            double e = full && kl ? tu_rel_err(kl, full, (size_t)23 * m->cfg.vocab_size) : 1.0;
            double e1 = full && k1 ? tu_rel_err(k1, full, (size_t)23 * m->cfg.vocab_size) : 1.0;
            CHECK(e <= TOL_KV && e1 <= TOL_KV, "%s storage: cached vs full rel err %g (chunks of 4), %g (decode)",
                  dt == LOMO_BF16 ? "bf16" : "f16", e, e1);
            printf("%s storage   23 tokens: cached vs full %.1e (chunks of 4), %.1e (token by token)\n",
                   dt == LOMO_BF16 ? "bf16" : "f16 ", e, e1);
            free(full); free(kl); free(k1);
        }
        lomo_model_free(m);
    }
}

/* ---- between training steps ---- */
typedef struct probe { lomo_model *m; size_t kv_seen, act_seen; } probe;
static int probe_cb(void *user, int32_t tok, int i) {
    probe *p = (probe *)user;
    (void)tok; (void)i;
    lomo_memory r = lomo_memory_report(p->m);
    p->kv_seen = r.current[LOMO_MEM_KV];
    p->act_seen = r.current[LOMO_MEM_ACTIVATIONS];
    return 0;
}

static uint64_t weights_hash(const lomo_model *m) {
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < m->n_tensors; i++) {
        const unsigned char *b = (const unsigned char *)m->tensors[i].data;
        for (size_t k = 0; k < 4 * (size_t)m->tensors[i].numel; k++) h = (h ^ b[k]) * 1099511628211ull;
    }
    return h;
}

static void run_training(void) {
    lomo_model *a = lomo_load("tests/ref/llama_gqa", NULL), *b = lomo_load("tests/ref/llama_gqa", NULL);
    lomo_train_opts o;
    lomo_step_info si;
    lomo_trainer *ta, *tb;
    lomo_memory before, after;
    int32_t tok[2 * 16], prompt[6] = {3, 1, 4, 1, 5, 9}, out[20];
    lomo_gen_opts g;
    lomo_gen_info info;
    probe pr;
    uint64_t h0;
    int i, n;
    CHECK(a && b, "load: %s", lomo_error());
    if (!a || !b) return;
    for (i = 0; i < 32; i++) tok[i] = tu_randint(a->cfg.vocab_size);
    memset(&o, 0, sizeof o);
    o.batch = 2; o.seq_len = 16; o.clip_norm = 1.0f; o.optimizer = LOMO_OPT_ADAMW;
    ta = lomo_trainer_new(a, &o); tb = lomo_trainer_new(b, &o);
    CHECK(ta && tb, "trainer: %s", lomo_error());
    if (!ta || !tb) return;
    CHECK(lomo_step(ta, tok, NULL, 1e-2f, &si) == 0 && lomo_step(tb, tok, NULL, 1e-2f, &si) == 0, "step: %s", lomo_error());
    before = lomo_memory_report(a);
    h0 = weights_hash(a);
    memset(&g, 0, sizeof g);
    g.max_new_tokens = 20; g.on_token = probe_cb; g.user = &pr;
    pr.m = a; pr.kv_seen = pr.act_seen = 0;
    n = lomo_generate(a, prompt, 6, &g, out, &info);
    CHECK(n == 20, "generate between steps: %d (%s)", n, lomo_error());
    CHECK(pr.kv_seen > 0 && pr.kv_seen == info.kv_bytes, "kv cache in the report while generating: %zu (info %zu)",
          pr.kv_seen, info.kv_bytes);
    CHECK(pr.act_seen == before.current[LOMO_MEM_ACTIVATIONS], "activations changed while generating");
    after = lomo_memory_report(a);
    CHECK(weights_hash(a) == h0, "generate changed the weights");
    CHECK(after.current[LOMO_MEM_KV] == 0 && after.peak[LOMO_MEM_KV] == info.kv_bytes,
          "kv cache after generate: current %zu, peak %zu (expected 0, %zu)", after.current[LOMO_MEM_KV],
          after.peak[LOMO_MEM_KV], info.kv_bytes);
    for (i = 0; i < LOMO_MEM_NTAGS; i++)
        if (i != LOMO_MEM_KV)
            CHECK(after.current[i] == before.current[i] && after.peak[i] == before.peak[i],
                  "tag %s changed by generate", lomo_mem_tag_name(i));
    CHECK(lomo_step(ta, tok, NULL, 1e-2f, &si) == 0 && lomo_step(tb, tok, NULL, 1e-2f, &si) == 0, "step 2: %s", lomo_error());
    CHECK(weights_hash(a) == weights_hash(b), "a step after generate differs from one without");
    printf("between steps: %d tokens, kv cache %.1f KiB while generating, freed after; next step bitwise unchanged\n",
           n, info.kv_bytes / 1024.0);
    lomo_trainer_free(ta); lomo_trainer_free(tb);
    lomo_model_free(a); lomo_model_free(b);
}

/* ---- sampling ---- */
static void run_sampling_repro(void) {
    lomo_model *m = lomo_load("tests/ref/llama_tied", NULL);
    int32_t prompt[3] = {7, 8, 9}, a[64], b[64], c[64];
    lomo_gen_opts g;
    int na, nb, nc, diff = 0, i;
    if (!m) { CHECK(0, "load: %s", lomo_error()); return; }
    memset(&g, 0, sizeof g);
    g.max_new_tokens = 64; g.temperature = 1.3f; g.top_k = 20; g.top_p = 0.9f; g.seed = 42;
    na = lomo_generate(m, prompt, 3, &g, a, NULL);
#ifdef _OPENMP
    { int nt = omp_get_max_threads(); omp_set_num_threads(nt > 1 ? 1 : 2); nb = lomo_generate(m, prompt, 3, &g, b, NULL); omp_set_num_threads(nt); }
#else
    nb = lomo_generate(m, prompt, 3, &g, b, NULL);
#endif
    g.seed = 43;
    nc = lomo_generate(m, prompt, 3, &g, c, NULL);
    CHECK(na == 64 && nb == 64 && nc == 64, "sampled %d %d %d", na, nb, nc);
    CHECK(!memcmp(a, b, sizeof a), "same seed, other thread count: different tokens");
    for (i = 0; i < 64; i++) diff += a[i] != c[i];
    CHECK(diff > 0, "seeds 42 and 43 gave the same 64 tokens");
    printf("sampling: seed 42 reproducible across thread counts; seed 43 differs at %d of 64 tokens\n", diff);
    lomo_model_free(m);
}

/* independent reference of the processors, in double: softmax(l / T) after
   transformers' top-k (>= k-th largest) and top-p (ascending cumulative <= 1 - p removed) */
static void ref_probs(const float *l, int V, double T, int k, double p, double *out) {
    int idx[16], i, j;
    double mx = -1e300, z = 0;
    for (i = 0; i < V; i++) idx[i] = i;
    for (i = 0; i < V; i++) for (j = i + 1; j < V; j++) if (l[idx[j]] < l[idx[i]]) { int t = idx[i]; idx[i] = idx[j]; idx[j] = t; }
    /* idx ascending */
    for (i = 0; i < V; i++) out[i] = l[i] / T;
    if (k > 0) for (i = 0; i < V; i++) if (l[i] < l[idx[V - k]]) out[i] = -1e300;
    for (i = 0; i < V; i++) if (out[i] > mx) mx = out[i];
    for (i = 0; i < V; i++) z += out[i] > -1e299 ? exp(out[i] - mx) : 0;
    for (i = 0; i < V; i++) out[i] = out[i] > -1e299 ? exp(out[i] - mx) / z : 0;
    if (p > 0 && p < 1) {
        double cum = 0;
        for (i = 0; i < V - 1; i++) { cum += out[idx[i]]; if (cum <= 1 - p) out[idx[i]] = 0; }
        z = 0;
        for (i = 0; i < V; i++) z += out[i];
        for (i = 0; i < V; i++) out[i] /= z;
    }
}

static void chi_square(const char *what, const float *l, int V, float T, int k, float p, double crit_by_df[8]) {
    enum { DRAWS = 60000 };
    double ref[16], chi = 0;
    int count[16] = {0}, i, df = -1, zero_ok = 1;
    uint64_t rng = 20261201;
    lomo_gen_opts g;
    float s[16];
    memset(&g, 0, sizeof g);
    g.temperature = T; g.top_k = k; g.top_p = p;
    ref_probs(l, V, T, k, p, ref);
    for (int d = 0; d < DRAWS; d++) {
        memcpy(s, l, sizeof(float) * (size_t)V);
        int32_t t = lomo_sample(s, V, NULL, 0, &g, &rng);
        if (t >= 0 && t < V) count[t]++;
    }
    for (i = 0; i < V; i++) {
        if (ref[i] > 0) { double e = DRAWS * ref[i]; chi += (count[i] - e) * (count[i] - e) / e; df++; }
        else if (count[i]) zero_ok = 0;
    }
    CHECK(zero_ok, "%s: a filtered-out token was sampled", what);
    CHECK(df >= 1 && chi <= crit_by_df[df], "%s: chi-square %.2f > %.2f (df %d, p = 0.001)", what, chi, crit_by_df[df], df);
    printf("%-28s %d draws: chi-square %6.2f, df %d, threshold %.2f (p = 0.001)\n", what, DRAWS, chi, df, crit_by_df[df]);
}

static void run_sampling_stats(void) {
    /* 0.999 quantiles of chi-square with df = 0..7 */
    double crit[8] = {0, 10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32};
    float l[8] = {1.2f, -0.3f, 0.5f, 2.0f, 0.1f, -1.5f, 1.9f, 0.0f};
    float s[8];
    lomo_gen_opts g;
    uint64_t rng = 1;
    int32_t hist[3] = {3, 3, 0};
    chi_square("softmax, T = 1", l, 8, 1.0f, 0, 0.0f, crit);
    chi_square("softmax, T = 0.7", l, 8, 0.7f, 0, 0.0f, crit);
    chi_square("T = 1.5, top-k 3", l, 8, 1.5f, 3, 0.0f, crit);
    chi_square("T = 1, top-p 0.8", l, 8, 1.0f, 0, 0.8f, crit);
    chi_square("T = 0.9, top-k 5, top-p 0.7", l, 8, 0.9f, 5, 0.7f, crit);
    /* greedy, and transformers' repetition penalty (divides positive logits, multiplies negative) */
    memset(&g, 0, sizeof g);
    memcpy(s, l, sizeof s);
    CHECK(lomo_sample(s, 8, NULL, 0, &g, &rng) == 3, "greedy picks the largest logit");
    g.repetition_penalty = 1.1f;
    memcpy(s, l, sizeof s);
    CHECK(lomo_sample(s, 8, hist, 3, &g, &rng) == 6 && s[3] == 2.0f / 1.1f && s[0] == 1.2f / 1.1f && s[6] == 1.9f,
          "repetition penalty 1.1 on {3, 0}: greedy moves to id 6; %g %g", (double)s[3], (double)s[6]);
    g.repetition_penalty = 1.2f;
    memcpy(s, l, sizeof s);
    hist[0] = 5; hist[1] = 3; hist[2] = 5;
    lomo_sample(s, 8, hist, 3, &g, &rng);
    CHECK(s[5] == -1.5f * 1.2f && s[3] == 2.0f / 1.2f, "penalty once per id, negative multiplied: %g", (double)s[5]);
}

/* ---- stopping ---- */
static const char *letters(void *user, const int32_t *ids, int n) {
    static char buf[512];
    int i;
    (void)user;
    for (i = 0; i < n && i < 511; i++) buf[i] = (char)('a' + ids[i] % 26);
    buf[i] = 0;
    return buf;
}
static int stop_at_5(void *user, int32_t tok, int i) { (void)user; (void)tok; return i == 4; }

static void write_text(const char *path, const char *s) { tu_write(path, s, strlen(s)); }

static void run_stopping(void) {
    fixture fx;
    lomo_model *m = lomo_load("tests/ref/llama_gqa", NULL);
    int32_t out[72], eos[4];
    lomo_gen_opts g;
    lomo_gen_info info;
    char txt[8];
    const char *stops[2];
    int n, i, first;
    if (!m || read_fixture("tests/ref/gen/llama_gqa.safetensors", &fx)) { CHECK(0, "stopping setup: %s", lomo_error()); return; }
    memset(&g, 0, sizeof g);
    g.max_new_tokens = fx.N;
    /* EOS: the first occurrence of gen[12] ends it, and is emitted */
    eos[0] = 999; eos[1] = fx.gen[12];
    for (first = 0; fx.gen[first] != eos[1]; first++) {}
    g.eos_ids = eos; g.n_eos = 2;
    n = lomo_generate(m, fx.prompt, fx.P, &g, out, &info);
    CHECK(n == first + 1 && info.stop == LOMO_GEN_EOS && !memcmp(out, fx.gen, 4 * (size_t)n),
          "eos %d: %d tokens (expected %d), stop %d", eos[1], n, first + 1, info.stop);
    /* stop string: the text of gen[20..22] under a toy decode */
    g.n_eos = 0;
    for (i = 0; i < 3; i++) txt[i] = (char)('a' + fx.gen[20 + i] % 26);
    txt[3] = 0;
    stops[0] = "\x01never"; stops[1] = txt;
    g.stop_strings = stops; g.n_stop = 2; g.decode = letters;
    n = lomo_generate(m, fx.prompt, fx.P, &g, out, &info);
    {
        int expect = -1;
        for (i = 3; i <= fx.N && expect < 0; i++) if (strstr(letters(NULL, fx.gen, i), txt)) expect = i;
        CHECK(n == expect && info.stop == LOMO_GEN_STOP_STRING, "stop string \"%s\": %d tokens, expected %d", txt, n, expect);
    }
    g.n_stop = 0; g.on_token = stop_at_5;
    n = lomo_generate(m, fx.prompt, fx.P, &g, out, &info);
    CHECK(n == 5 && info.stop == LOMO_GEN_CALLBACK, "callback stop: %d", n);
    /* eos ids from the model directory */
    mkdir("build/tmp_gen_eos", 0755);
    write_text("build/tmp_gen_eos/config.json", "{\"eos_token_id\": 2}");
    remove("build/tmp_gen_eos/generation_config.json");
    CHECK(lomo_eos_ids("build/tmp_gen_eos", eos, 4) == 1 && eos[0] == 2, "eos from config.json int");
    write_text("build/tmp_gen_eos/config.json", "{\"eos_token_id\": [128001, 128008, 128009]}");
    CHECK(lomo_eos_ids("build/tmp_gen_eos", eos, 4) == 3 && eos[2] == 128009, "eos from config.json list");
    write_text("build/tmp_gen_eos/generation_config.json", "{\"eos_token_id\": [7, 9]}");
    CHECK(lomo_eos_ids("build/tmp_gen_eos", eos, 4) == 2 && eos[0] == 7 && eos[1] == 9, "generation_config.json wins");
    write_text("build/tmp_gen_eos/generation_config.json", "{\"do_sample\": true}");
    CHECK(lomo_eos_ids("build/tmp_gen_eos", eos, 4) == 3, "generation_config.json without eos: config.json's");
    write_text("build/tmp_gen_eos/generation_config.json", "{\"eos_token_id\": [7, \"x\"]}");
    CHECK(lomo_eos_ids("build/tmp_gen_eos", eos, 4) == -1 && strstr(lomo_error(), "eos_token_id"), "bad eos: %s", lomo_error());
    write_text("build/tmp_gen_eos/generation_config.json", "{\"eos_token_id\": -3}");
    CHECK(lomo_eos_ids("build/tmp_gen_eos", eos, 4) == -1, "negative eos refused");
    write_text("build/tmp_gen_eos/generation_config.json", "{\"eos_token_id\": [1,2");
    CHECK(lomo_eos_ids("build/tmp_gen_eos", eos, 4) == -1 && strstr(lomo_error(), "generation_config.json"), "bad json: %s", lomo_error());
    remove("build/tmp_gen_eos/generation_config.json");
    write_text("build/tmp_gen_eos/config.json", "{\"eos_token_id\": null}");
    CHECK(lomo_eos_ids("build/tmp_gen_eos", eos, 4) == 0, "null eos: none");
    /* bad input */
    memset(&g, 0, sizeof g);
    g.max_new_tokens = 4;
    eos[0] = m->cfg.vocab_size;
    CHECK(lomo_generate(m, eos, 1, &g, out, NULL) == -1 && strstr(lomo_error(), "vocabulary"), "prompt id out of range: %s", lomo_error());
    CHECK(lomo_generate(m, fx.prompt, 0, &g, out, NULL) == -1, "empty prompt refused");
    g.top_p = 1.5f;
    CHECK(lomo_generate(m, fx.prompt, fx.P, &g, out, NULL) == -1 && strstr(lomo_error(), "top_p"), "top_p 1.5: %s", lomo_error());
    CHECK(lomo_kv_new(m, 0, 1) == NULL, "kv of 0 tokens refused");
    {
        lomo_kv *kv = lomo_kv_new(m, 4, 4);
        float lg[4 * 64];
        CHECK(kv && lomo_kv_eval(kv, fx.prompt, 5, lg, 1) == -1 && strstr(lomo_error(), "capacity"), "kv overflow: %s", lomo_error());
        CHECK(kv && lomo_kv_eval(kv, fx.prompt, 3, lg, 1) == 0 && lomo_kv_truncate(kv, 1) == 0 && lomo_kv_len(kv) == 1 &&
              lomo_kv_truncate(kv, 2) == -1, "kv truncate");
        lomo_kv_free(kv);
    }
    CHECK(m->mem.current[LOMO_MEM_KV] == 0, "kv memory leaked in the accounting");
    printf("stopping: eos (first of id %d at %d), stop string, callback; eos ids from config files; bad input refused\n",
           fx.gen[12], first);
    free_fixture(&fx);
    lomo_model_free(m);
}

/* ---- the CLI contract: build/llama_ft --model DIR --prompt-ids FILE --max-new-tokens N ---- */
static char *run_argv(char *const argv[]);
static char *slurp_cmd(const char *cmd) {   /* stdout of sh -c cmd */
    char *argv[] = {(char *)"/bin/sh", (char *)"-c", (char *)cmd, NULL};
    return run_argv(argv);
}
static char *slurp_file(const char *path) {
    FILE *f = fopen(path, "rb");
    char *buf = (char *)calloc(1, 1 << 20);
    if (f) { (void)!fread(buf, 1, (1 << 20) - 1, f); fclose(f); }
    return buf;
}

/* stdout of argv run without a shell (the prompts hold quotes, tabs, newlines) */
static char *run_argv(char *const argv[]) {
    int fd[2];
    char *buf = (char *)calloc(1, 1 << 16);
    size_t n = 0;
    ssize_t r;
    pid_t pid;
    if (pipe(fd)) return buf;
    if ((pid = fork()) == 0) { dup2(fd[1], 1); close(fd[0]); close(fd[1]); execv(argv[0], argv); _exit(127); }
    close(fd[1]);
    while ((r = read(fd[0], buf + n, (1 << 16) - 1 - n)) > 0) n += (size_t)r;
    close(fd[0]);
    waitpid(pid, NULL, 0);
    return buf;
}

/* llama_ft --generate TEXT streams what tokenizers' decode gives for transformers' greedy ids */
static void run_cli_text(void) {
    char *txt = slurp_file("tests/ref/gen/cli_gen_text.jsonl"), *line = txt, *nl;
    int rows = 0;
    while (line && *line) {
        lomo__json j;
        char text[1024], want[8192], tpl[32];
        if ((nl = strchr(line, '\n'))) *nl = 0;
        if (lomo__json_parse(&j, line, strlen(line), "cli_gen_text.jsonl") == 0 &&
            lomo__json_str(&j, lomo__json_get(&j, 0, "text"), text, sizeof text) >= 0 &&
            lomo__json_str(&j, lomo__json_get(&j, 0, "output"), want, sizeof want) >= 0) {
            char *argv[] = {(char *)"build/llama_ft", (char *)"--model", (char *)"tests/ref/gen_text", (char *)"--generate",
                            text, (char *)"--max-new-tokens", (char *)"40", NULL, NULL, NULL};
            if (lomo__json_str(&j, lomo__json_get(&j, 0, "chat_template"), tpl, sizeof tpl) > 0) {
                argv[7] = (char *)"--chat-template"; argv[8] = tpl;
            }
            char *got = run_argv(argv);
            CHECK(!strcmp(got, want), "--generate \"%s\": streamed\n%s\nexpected\n%s", text, got, want);
            free(got);
            rows++;
        } else CHECK(0, "cli_gen_text.jsonl: bad line");
        lomo__json_free(&j);
        line = nl ? nl + 1 : NULL;
    }
    CHECK(rows == 6, "cli_gen_text.jsonl: %d rows", rows);
    printf("llama_ft --generate: %d prompts (2 through --chat-template llama3) stream the text transformers + tokenizers "
           "give (partial UTF-8 held back)\n", rows);
    free(txt);
}

static void run_cli(void) {
    static const char *cases[] = {"llama_gqa", "mistral_swa", "llama_tied", "llama_tied_eos"};
    char cmd[600], path[300];
    struct stat st;
    if (stat("build/llama_ft", &st)) { printf("build/llama_ft not built: CLI checks skipped\n"); return; }
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(cmd, sizeof cmd, "build/llama_ft --model tests/ref/%s --prompt-ids tests/ref/gen/cli_%s.prompts.jsonl "
                 "--max-new-tokens 40 2>&1", cases[i], cases[i]);
        snprintf(path, sizeof path, "tests/ref/gen/cli_%s.expected.jsonl", cases[i]);
        char *got = slurp_cmd(cmd), *want = slurp_file(path);
        CHECK(want[0] && !strcmp(got, want), "llama_ft --prompt-ids on %s differs from transformers:\n%s\nexpected\n%s",
              cases[i], got, want);
        free(got); free(want);
    }
    /* sampling from the CLI: the same seed gives the same lines on 1 and 2 threads */
    {
        const char *fmt = "OMP_NUM_THREADS=%d build/llama_ft --model tests/ref/llama_tied --prompt-ids "
                          "tests/ref/gen/cli_llama_tied.prompts.jsonl --max-new-tokens 30 --temperature 0.9 --top-p 0.95 --seed %d";
        char c1[400], c2[400], c3[400];
        snprintf(c1, sizeof c1, fmt, 1, 7); snprintf(c2, sizeof c2, fmt, 2, 7); snprintf(c3, sizeof c3, fmt, 2, 8);
        char *a = slurp_cmd(c1), *b = slurp_cmd(c2), *c = slurp_cmd(c3);
        CHECK(a[0] == '[' && !strcmp(a, b), "CLI sampling: seed 7 on 1 and 2 threads differs");
        CHECK(strcmp(a, c) != 0, "CLI sampling: seeds 7 and 8 give the same output");
        free(a); free(b); free(c);
    }
    {   /* bad input: exit status and a message naming the file and line */
        char *o;
        tu_write("build/tmp_gen_bad.jsonl", "[1, 2]\n[3, 4.5]\n", 15);
        o = slurp_cmd("build/llama_ft --model tests/ref/llama_gqa --prompt-ids build/tmp_gen_bad.jsonl --max-new-tokens 2 2>&1; echo rc=$?");
        CHECK(strstr(o, "tmp_gen_bad.jsonl:2") && strstr(o, "rc=1"), "bad prompt line: %s", o);
        free(o);
    }
    run_cli_text();
    printf("llama_ft --prompt-ids: 4 models x 8 prompts equal transformers' generate (EOS from config.json, and a "
           "generation_config.json list); sampling reproducible across thread counts\n");
}

int main(void) {
    const char *stories = getenv("LOMO_STORIES260K") ? getenv("LOMO_STORIES260K") : "../shared/models/stories260K";
    static const char *cases[] = {"llama_gqa", "llama_tied", "llama_bias", "qwen2_bias", "llama3_scaled", "mistral",
                                  "mistral_swa", "qwen3_tied", "qwen3_bias", "gemma2", "gemma3", "phi3", "phi3_partial",
                                  "phi3_longrope"};
    char dir[256];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(dir, sizeof dir, "tests/ref/%s", cases[i]);
        run_case(cases[i], dir);
    }
    run_case("stories260K", stories);
    run_f16();
    run_training();
    run_sampling_repro();
    run_sampling_stats();
    run_stopping();
    run_cli();
    return tu_done("test_gen");
}
