/* test_hf.c - lomo against PyTorch/transformers on Hugging Face checkpoints.
   Fixtures (tests/ref/, made by tests/ref/make_fixtures.py with transformers'
   save_pretrained): small random Llama/Qwen2 models with their loss, logits
   and every parameter's gradient for one batch. Here lomo loads each
   checkpoint, and its loss, logits and gradients must agree within
   max|err| / max|ref| <= 1e-4 (fp32). Also: save -> load is bit-identical,
   and the real pretrained stories260K (../shared/models) gives transformers'
   loss and its greedy continuation. Run from the repository root. */
#define LOMO_IMPLEMENTATION
#include "../lomo.h"
#include "test_util.h"

#define TOL 1e-4

typedef struct capture { float **g; } capture;
static int capture_hook(lomo_tensor *p, const float *grad, const lomo_update_ctx *ctx, void *user) {
    (void)ctx;
    memcpy(((capture *)user)->g[p->index], grad, sizeof(float) * (size_t)p->numel);
    return 0;
}

/* reads an int32 [B,T] tensor of a fixture */
static int32_t *read_ids(const lomo__st_file *f, const char *name, int *B, int *T) {
    const lomo__st_tensor *t = lomo__st_find(f, name);
    if (!t || t->dtype != LOMO__ST_I32 || t->ndim != 2) return NULL;
    *B = (int)t->shape[0]; *T = (int)t->shape[1];
    int32_t *p = (int32_t *)malloc(sizeof(int32_t) * (size_t)t->numel);
    memcpy(p, t->data, sizeof(int32_t) * (size_t)t->numel);
    return p;
}

static float *read_f32(const lomo__st_file *f, const char *name, int64_t *numel) {
    const lomo__st_tensor *t = lomo__st_find(f, name);
    if (!t) return NULL;
    float *p = (float *)malloc(sizeof(float) * (size_t)t->numel);
    if (lomo__st_read_f32(t, p)) { free(p); return NULL; }
    if (numel) *numel = t->numel;
    return p;
}

static void check_save_roundtrip(lomo_model *m, const char *name) {
    char dir[256];
    snprintf(dir, sizeof dir, "build/tmp_save_%s", name);
    CHECK(lomo_save(m, dir) == 0, "%s: save: %s", name, lomo_error());
    lomo_model *r = lomo_load(dir, NULL);
    CHECK(r != NULL, "%s: reload: %s", name, lomo_error());
    if (!r) return;
    int same = r->n_tensors == m->n_tensors &&
               !memcmp(&r->cfg, &m->cfg, offsetof(lomo_config, dtype)) &&
               !memcmp(&r->cfg.qk_norm, &m->cfg.qk_norm, sizeof(lomo_config) - offsetof(lomo_config, qk_norm));
    for (int i = 0; same && i < m->n_tensors; i++)
        same = !strcmp(r->tensors[i].name, m->tensors[i].name) &&
               !memcmp(r->tensors[i].data, m->tensors[i].data, 4 * (size_t)m->tensors[i].numel);
    CHECK(same, "%s: save -> load is not bit-identical", name);
    lomo_model_free(r);
}

static void run_case(const char *name, int with_grads) {
    char dir[256], path[300];
    snprintf(dir, sizeof dir, "tests/ref/%s", name);
    snprintf(path, sizeof path, "%s/ref.safetensors", dir);
    lomo_model *m = lomo_load(dir, NULL);
    CHECK(m != NULL, "%s: load: %s", name, lomo_error());
    lomo__st_file f;
    if (!m) return;
    if (lomo__st_open(&f, path)) { CHECK(0, "%s: %s", name, lomo_error()); lomo_model_free(m); return; }
    int B, T, B2, T2;
    int32_t *ids = read_ids(&f, "input_ids", &B, &T), *labels = read_ids(&f, "labels", &B2, &T2);
    float *ref_loss = read_f32(&f, "loss", NULL), *ref_logits = read_f32(&f, "logits", NULL);
    CHECK(ids && labels && ref_loss && ref_logits, "%s: fixture incomplete", name);
    lomo_train_opts o;
    memset(&o, 0, sizeof o);
    o.batch = B; o.seq_len = T;
    capture cap;
    cap.g = (float **)calloc((size_t)m->n_tensors, sizeof(float *));
    for (int i = 0; i < m->n_tensors; i++) cap.g[i] = (float *)calloc((size_t)m->tensors[i].numel, sizeof(float));
    o.update = capture_hook; o.update_user = &cap;
    lomo_trainer *t = lomo_trainer_new(m, &o);
    lomo_step_info info;
    CHECK(lomo_forward(t, ids, labels, &info) == 0, "%s: forward: %s", name, lomo_error());
    double le = fabs(info.loss - ref_loss[0]) / fabs(ref_loss[0]);
    double ge = tu_rel_err(lomo_logits(t), ref_logits, (size_t)B * T * m->cfg.vocab_size);
    CHECK(le <= TOL, "%s: loss %.7f vs transformers %.7f", name, info.loss, ref_loss[0]);
    CHECK(ge <= TOL, "%s: logits rel err %g", name, ge);
    CHECK(lomo_step(t, ids, labels, 0.0f, &info) == 0, "%s: step: %s", name, lomo_error());
    double worst = 0;
    for (int i = 0; with_grads && i < m->n_tensors; i++) {
        char gname[160];
        int64_t n = 0;
        snprintf(gname, sizeof gname, "grad.%s", m->tensors[i].name);
        float *g = read_f32(&f, gname, &n);
        CHECK(g && n == m->tensors[i].numel, "%s: fixture lacks %s", name, gname);
        if (!g) continue;
        double e = tu_rel_err(cap.g[i], g, (size_t)n);
        CHECK(e <= TOL, "%s: gradient of %s: rel err %g", name, m->tensors[i].name, e);
        if (e > worst) worst = e;
        free(g);
    }
    printf("%-20s %2d tensors, stored as %s: loss %.6f (transformers %.6f), logits rel err %.1e", name, m->n_tensors,
           m->file_dtype == LOMO_BF16 ? "bf16" : m->file_dtype == LOMO_F16 ? "f16" : "f32", info.loss, ref_loss[0], ge);
    if (with_grads) printf(", worst gradient rel err %.1e", worst);
    printf("\n");
    check_save_roundtrip(m, name);
    lomo_trainer_free(t);
    for (int i = 0; i < m->n_tensors; i++) free(cap.g[i]);
    free(cap.g); free(ids); free(labels); free(ref_loss); free(ref_logits);
    lomo__st_close(&f);
    lomo_model_free(m);
}

/* bf16 storage of the new families (views into fused bf16 tensors, widened
   norms): the loss within 2e-2 of transformers' fp32 loss, and a LOMO step
   that lowers it */
static void run_bf16(const char *name) {
    char dir[256], path[300];
    snprintf(dir, sizeof dir, "tests/ref/%s", name);
    snprintf(path, sizeof path, "%s/ref.safetensors", dir);
    lomo_load_opts lo;
    memset(&lo, 0, sizeof lo);
    lo.dtype = LOMO_BF16;
    lomo_model *m = lomo_load(dir, &lo);
    CHECK(m != NULL, "%s bf16: load: %s", name, lomo_error());
    lomo__st_file f;
    if (!m) return;
    if (lomo__st_open(&f, path)) { CHECK(0, "%s", lomo_error()); lomo_model_free(m); return; }
    int B, T, B2, T2;
    int32_t *ids = read_ids(&f, "input_ids", &B, &T), *labels = read_ids(&f, "labels", &B2, &T2);
    float *ref_loss = read_f32(&f, "loss", NULL);
    lomo_train_opts o;
    memset(&o, 0, sizeof o);
    o.batch = B; o.seq_len = T; o.clip_norm = 1.0f;
    lomo_trainer *t = lomo_trainer_new(m, &o);
    lomo_step_info info;
    CHECK(t && lomo_forward(t, ids, labels, &info) == 0, "%s bf16 forward: %s", name, lomo_error());
    float before = info.loss;
    CHECK(fabs(before - ref_loss[0]) <= 2e-2 * ref_loss[0], "%s bf16: loss %g vs transformers (fp32) %g", name, before, ref_loss[0]);
    for (int k = 0; k < 3; k++) CHECK(lomo_step(t, ids, labels, 0.05f, &info) == 0, "%s bf16 step: %s", name, lomo_error());
    lomo_forward(t, ids, labels, &info);
    CHECK(info.loss < before, "%s bf16: 3 steps on the batch must lower its loss: %g -> %g", name, before, info.loss);
    printf("%-20s bf16 storage: loss %.5f (transformers fp32 %.5f), after 3 LOMO steps %.5f\n", name, before, ref_loss[0], info.loss);
    lomo_trainer_free(t);
    free(ids); free(labels); free(ref_loss);
    lomo__st_close(&f);
    lomo_model_free(m);
}

/* config.json of the new families: what is read, and what is refused by name */
static int cfg_try(const char *json, lomo_config *c) {
    const char *path = "build/tmp_cfg_families.json";
    FILE *f = fopen(path, "w");
    if (!f) return -2;
    fputs(json, f);
    fclose(f);
    return lomo__config_load(path, c);
}
#define BASE "\"hidden_size\":32,\"intermediate_size\":48,\"num_hidden_layers\":3,\"num_attention_heads\":4,\"vocab_size\":50"
static void expect_refused(const char *json, const char *want, const char *what) {
    lomo_config c;
    int rc = cfg_try(json, &c);
    CHECK(rc == -1 && strstr(lomo_error(), want), "%s: rc %d, expected an error with '%s', got: %s", what, rc, want, lomo_error());
}
static void test_family_configs(void) {
    lomo_config c;
    /* defaults of transformers' config classes where config.json is silent */
    CHECK(cfg_try("{\"model_type\":\"gemma2\"," BASE "}", &c) == 0 && c.gemma == 2 && c.tie_embeddings &&
          c.attn_softcap == 50.0f && c.final_softcap == 30.0f && c.query_pre_attn_scalar == 256.0f &&
          c.local_window == 4096 && c.local_pattern == 2, "gemma2 defaults: %s", lomo_error());
    CHECK(cfg_try("{\"model_type\":\"gemma3_text\"," BASE ",\"final_logit_softcapping\":null,\"rope_theta\":1000000,"
                  "\"rope_local_base_freq\":10000,\"sliding_window_pattern\":6,\"rope_scaling\":{\"rope_type\":\"linear\","
                  "\"factor\":8.0}}", &c) == 0 && c.gemma == 3 && c.qk_norm && c.final_softcap == 0 && c.attn_softcap == 0 &&
          c.local_pattern == 6 && c.rope_local_theta == 10000.0f && c.rope_theta == 1e6f && c.rope_type == 2 &&
          c.rope_factor == 8.0f, "gemma3 hub layout: %s", lomo_error());
    CHECK(cfg_try("{\"model_type\":\"qwen3\"," BASE ",\"head_dim\":16,\"attention_bias\":true}", &c) == 0 && c.qk_norm &&
          c.qkv_bias && c.o_bias && c.head_dim == 16 && !c.gemma, "qwen3: %s", lomo_error());
    CHECK(cfg_try("{\"model_type\":\"phi3\"," BASE ",\"partial_rotary_factor\":0.5,\"sliding_window\":2047,"
                  "\"pad_token_id\":7}", &c) == 0 && c.fused_proj && c.rotary_dim == 4 && c.local_window == 2047 &&
          c.local_pattern == 4 && c.has_pad && c.pad_token_id == 7, "phi3: %s", lomo_error());
    /* refused by name */
    expect_refused("{\"model_type\":\"gemma3\",\"text_config\":{}}", "Gemma3ForConditionalGeneration", "gemma3 multimodal");
    expect_refused("{\"model_type\":\"qwen3_moe\"," BASE "}", "mixture-of-experts", "qwen3 moe");
    CHECK(cfg_try("{\"model_type\":\"phi3\"," BASE ",\"max_position_embeddings\":131072,\"original_max_position_embeddings\":4096,"
                  "\"rope_scaling\":{\"type\":\"longrope\",\"long_factor\":[1,2,3,4],\"short_factor\":[1,1,1,1.5]}}", &c) == 0 &&
          c.rope_type == 3 && c.rope_n_factors == 4 && c.rope_long_factor[3] == 4.0f && c.rope_short_factor[3] == 1.5f &&
          fabs(c.rope_attn_factor - sqrt(1 + log(32.0) / log(4096.0))) < 1e-6 && c.rope_original_max_pos == 4096,
          "phi3 longrope (Phi-3.5-mini layout): %s", lomo_error());
    expect_refused("{\"model_type\":\"phi3\"," BASE ",\"rope_scaling\":{\"type\":\"longrope\",\"long_factor\":[1],"
                   "\"short_factor\":[1]}}", "longrope has 1 factors, the 8 rotary dims need 4", "longrope factor count");
    expect_refused("{\"model_type\":\"phi3\"," BASE ",\"rope_scaling\":{\"type\":\"longrope\",\"long_factor\":[1,1,1,1],"
                   "\"short_factor\":[1,1,0,1]}}", "field 'short_factor'", "longrope factor 0");
    expect_refused("{\"model_type\":\"phi3\"," BASE ",\"rope_scaling\":{\"type\":\"yarn\",\"factor\":4}}",
                   "rope type yarn is not supported", "yarn");
    expect_refused("{\"model_type\":\"qwen3\"," BASE ",\"use_sliding_window\":true}", "field 'use_sliding_window'", "qwen3 swa");
    expect_refused("{\"model_type\":\"gemma2\"," BASE ",\"layer_types\":[\"full_attention\",\"sliding_attention\","
                   "\"sliding_attention\"]}", "repeating pattern", "gemma layer_types without a pattern");
    expect_refused("{\"model_type\":\"gemma2\"," BASE ",\"layer_types\":[\"sliding_attention\",\"full_attention\"]}",
                   "num_hidden_layers=3", "gemma layer_types length");
    expect_refused("{\"model_type\":\"gemma2\"," BASE ",\"hidden_activation\":\"gelu\"}", "field 'hidden_activation'", "gemma gelu");
    expect_refused("{\"model_type\":\"gemma2\"," BASE ",\"attn_logit_softcapping\":-1}", "field 'attn_logit_softcapping'", "cap < 0");
    expect_refused("{\"model_type\":\"gemma3_text\"," BASE ",\"use_bidirectional_attention\":true}",
                   "field 'use_bidirectional_attention'", "bidirectional");
    expect_refused("{\"model_type\":\"phi3\"," BASE ",\"partial_rotary_factor\":0.1}", "field 'partial_rotary_factor'",
                   "rotary dims < 2");
    expect_refused("{\"model_type\":\"llama\"," BASE ",\"pad_token_id\":50}", "field 'pad_token_id'", "pad out of vocab");
    /* programmatic configs are checked too */
    lomo_config_default(&c, 32, 48, 2, 4, 2, 50);
    c.rotary_dim = 3;
    CHECK(lomo_model_new(&c, NULL) == NULL && strstr(lomo_error(), "rotary_dim=3"), "rotary_dim 3 accepted: %s", lomo_error());
    c.rotary_dim = 4; c.rope_type = 3; c.rope_n_factors = 1; c.rope_original_max_pos = 8; c.rope_attn_factor = 1;
    CHECK(lomo_model_new(&c, NULL) == NULL && strstr(lomo_error(), "longrope needs"), "longrope 1 factor accepted: %s", lomo_error());
    c.rope_type = 0; c.gemma = 1;
    CHECK(lomo_model_new(&c, NULL) == NULL && strstr(lomo_error(), "gemma=1"), "gemma=1 accepted: %s", lomo_error());
}

/* the real pretrained tiny Llama: loss and greedy continuation */
static void run_stories(void) {
    const char *dir = getenv("LOMO_STORIES260K") ? getenv("LOMO_STORIES260K") : "../shared/models/stories260K";
    char cfg[512];
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    FILE *probe = fopen(cfg, "r");
    if (!probe) { printf("stories260K not found at %s: skipped\n", dir); return; }
    fclose(probe);
    lomo_model *m = lomo_load(dir, NULL);
    CHECK(m != NULL, "stories260K: load: %s", lomo_error());
    lomo__st_file f;
    if (!m) return;
    if (lomo__st_open(&f, "tests/ref/stories260K_ref.safetensors")) { CHECK(0, "%s", lomo_error()); lomo_model_free(m); return; }
    int B, T, B2, T2;
    int32_t *ids = read_ids(&f, "input_ids", &B, &T), *labels = read_ids(&f, "labels", &B2, &T2);
    float *ref_loss = read_f32(&f, "loss", NULL), *ref_logits = read_f32(&f, "logits", NULL);
    lomo_train_opts o;
    memset(&o, 0, sizeof o);
    o.batch = B; o.seq_len = T;
    lomo_trainer *t = lomo_trainer_new(m, &o);
    lomo_step_info info;
    CHECK(lomo_forward(t, ids, labels, &info) == 0, "stories260K forward: %s", lomo_error());
    const float *lg = lomo_logits(t);
    int V = m->cfg.vocab_size, greedy = 1;
    for (int i = 0; i + 1 < T; i++) {
        int best = 0;
        for (int v = 1; v < V; v++) if (lg[(size_t)i * V + v] > lg[(size_t)i * V + best]) best = v;
        greedy &= best == ids[i + 1];
    }
    double ge = tu_rel_err(lg, ref_logits, (size_t)T * V);
    printf("stories260K  %d tokens: loss %.6f (transformers %.6f), logits rel err %.1e, greedy continuation %s\n",
           T, info.loss, ref_loss[0], ge, greedy ? "reproduced" : "DIFFERS");
    CHECK(fabs(info.loss - ref_loss[0]) <= TOL * fabs(ref_loss[0]), "stories260K loss %g vs %g", info.loss, ref_loss[0]);
    CHECK(ge <= TOL, "stories260K logits rel err %g", ge);
    CHECK(greedy, "stories260K: argmax of the logits must reproduce the greedy sequence");
    CHECK(m->cfg.tie_embeddings && m->cfg.n_kv_heads == 4 && m->cfg.n_heads == 8, "stories260K config");
    /* one LOMO step on real weights lowers the loss on that sequence (its
       gradient norm is ~44, so the step is kept small: lr 1e-4) */
    float before = info.loss;
    lomo_step(t, ids, labels, 1e-4f, &info);
    lomo_forward(t, ids, labels, &info);
    CHECK(info.loss < before, "a step on the sequence must lower its loss: %g -> %g", before, info.loss);
    lomo_trainer_free(t);
    free(ids); free(labels); free(ref_loss); free(ref_logits);
    lomo__st_close(&f);
    lomo_model_free(m);
}

int main(void) {
    /* loss, logits and every gradient */
    run_case("llama_gqa", 1);
    run_case("llama_tied", 1);         /* tied, head_dim 12 != 32/4, one kv head */
    run_case("llama_bias", 1);         /* q/k/v/o biases, older config layout */
    run_case("qwen2_bias", 1);
    run_case("qwen3_tied", 1);         /* q_norm / k_norm, head_dim 12 */
    run_case("qwen3_bias", 1);         /* untied, attention_bias, MQA */
    run_case("gemma2", 1);             /* (1+w) norms, GeGLU, post-norms, soft-capping, local layers, tied */
    run_case("gemma3", 1);             /* + q/k norms, per-layer rope bases, linear scaling, untied */
    run_case("phi3", 1);               /* fused qkv_proj / gate_up_proj, window 5 on every layer */
    run_case("phi3_partial", 1);       /* partial rotary 0.75, GQA, tied */
    run_case("phi3_longrope", 1);      /* longrope, T > original_max_position_embeddings: long factors */
    /* loss and logits: the other config families and storage formats */
    run_case("llama3_scaled", 0);      /* rope_parameters llama3 (transformers 5 layout) */
    run_case("llama3_scaled_oldcfg", 0); /* rope_scaling llama3 (older layout) */
    run_case("mistral", 0);
    run_case("phi3_longrope_short", 0); /* longrope, T <= original: short factors */
    run_case("sharded_bf16", 0);       /* 4 shards + index, bf16, a layer split across shards */
    run_case("f16", 0);
    run_stories();
    test_family_configs();
    const char *bf[] = {"qwen3_tied", "gemma2", "gemma3", "phi3", "phi3_longrope"};
    for (int i = 0; i < 5; i++) run_bf16(bf[i]);
    return tu_done("test_hf");
}
