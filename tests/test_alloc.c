/* test_alloc.c - every host allocation of lomo.h through LOMO_MALLOC /
   LOMO_REALLOC / LOMO_FREE, counted, and each one failed in turn.

   The three macros are defined to counting functions that put a 16-byte
   header (a magic word) before each block, so a block freed with LOMO_FREE
   that lomo did not get from LOMO_MALLOC / LOMO_REALLOC (or the reverse: a
   raw free of one of ours) is caught, by the magic check here and by ASan in
   the _asan build.

   For each of the library's main paths (load, train with each optimizer,
   micro-batches, checkpointing and clip modes, save, resume, tokenizer,
   text / chat / JSONL / packed data, multiple choice, generation, on small
   models from tests/ref and the real ../shared/models/stories260K):
     1. the path runs once: it must succeed and leave the live count where it
        was (everything it allocated is freed);
     2. then for n = 1, 2, ... up to the number of allocations the path made
        (every one when the path makes at most TA_MAX_RUNS, else a stride
        printed in its line), the path runs again with the n-th allocation
        failing. It must either fail with lomo_error() set, or recover and
        give the same result (a hash of its output) as the clean run; either
        way the live count must be back where it was, and nothing may crash.
   The sweeps run on one OpenMP thread, so the n-th allocation is the same
   one each time (parallel kernels allocate per thread); one clean pass of
   every path runs first on the default threads, for the leak check alone.

   Last, lomo.h and lomo_cuda.cuh are scanned for a raw malloc / calloc /
   realloc / free / strdup call outside comments, strings and the default
   macro definitions: there must be none.

   Run from the repository root (make test does). Scratch files: build/tmp_alloc/. */
#define _POSIX_C_SOURCE 200809L   /* clock_gettime, for the timings */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long long ta_live;       /* blocks handed out and not yet freed */
static long long ta_calls;      /* LOMO_MALLOC / LOMO_REALLOC calls so far */
static long long ta_fail_at;    /* 0, or the value of ta_calls whose call returns NULL */
static long long ta_injected;   /* how many NULLs were handed out on purpose */
static long long ta_bad_free;   /* LOMO_FREE / LOMO_REALLOC of something that is not ours */
#define TA_HDR 16
#define TA_MAGIC 0x6c6f6d6f2d6d656dull
#define TA_DEAD  0x6465616462656566ull

static void *ta_malloc(size_t n) {
    long long k = __atomic_add_fetch(&ta_calls, 1, __ATOMIC_RELAXED);
    unsigned char *p;
    uint64_t m = TA_MAGIC;
    if (k == ta_fail_at) { __atomic_add_fetch(&ta_injected, 1, __ATOMIC_RELAXED); return NULL; }
    if (n > SIZE_MAX - TA_HDR || !(p = (unsigned char *)malloc(n + TA_HDR))) return NULL;
    memcpy(p, &m, sizeof m);
    __atomic_add_fetch(&ta_live, 1, __ATOMIC_RELAXED);
    return p + TA_HDR;
}
static int ta_ours(void *q) {
    uint64_t m;
    memcpy(&m, (unsigned char *)q - TA_HDR, sizeof m);
    if (m == TA_MAGIC) return 1;
    __atomic_add_fetch(&ta_bad_free, 1, __ATOMIC_RELAXED);
    fprintf(stderr, "test_alloc: %p was not allocated by LOMO_MALLOC / LOMO_REALLOC (or is freed twice)\n", q);
    return 0;
}
static void *ta_realloc(void *q, size_t n) {
    long long k;
    unsigned char *p;
    if (!q) return ta_malloc(n);
    k = __atomic_add_fetch(&ta_calls, 1, __ATOMIC_RELAXED);
    if (!ta_ours(q)) abort();
    if (k == ta_fail_at) { __atomic_add_fetch(&ta_injected, 1, __ATOMIC_RELAXED); return NULL; }
    if (n > SIZE_MAX - TA_HDR || !(p = (unsigned char *)realloc((unsigned char *)q - TA_HDR, n + TA_HDR))) return NULL;
    return p + TA_HDR;
}
static void ta_free(void *q) {
    uint64_t dead = TA_DEAD;
    if (!q) return;
    if (!ta_ours(q)) abort();
    memcpy((unsigned char *)q - TA_HDR, &dead, sizeof dead);
    __atomic_sub_fetch(&ta_live, 1, __ATOMIC_RELAXED);
    free((unsigned char *)q - TA_HDR);
}

#define LOMO_MALLOC(n) ta_malloc(n)
#define LOMO_REALLOC(p, n) ta_realloc((p), (n))
#define LOMO_FREE(p) ta_free(p)
#define LOMO_IMPLEMENTATION
#include "../lomo.h"
#include "test_util.h"

#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#ifndef TA_MAX_RUNS
#define TA_MAX_RUNS 2000    /* fault runs per path at most (a stride above it) */
#endif
#define REF "tests/ref/"
static const char *stories;  /* ../shared/models/stories260K, or $LOMO_STORIES260K */
static int have_stories;     /* its config.json opens: else its paths are skipped, as in test_hf and test_gen */
static int verbose;

/* ---- results as a hash, so a recovered run can be compared with the clean one ---- */
static uint64_t ta_hash;
static void hash_bytes(const void *p, size_t n) {
    const unsigned char *b = (const unsigned char *)p;
    size_t i;
    for (i = 0; i < n; i++) ta_hash = (ta_hash ^ b[i]) * 0x100000001B3ull;
}
static void hash_int(int64_t v) { hash_bytes(&v, sizeof v); }
static void hash_model(const lomo_model *m) {
    int i;
    for (i = 0; i < m->n_tensors; i++) hash_bytes(m->tensors[i].data, lomo__stored_bytes(m, &m->tensors[i]));
}
static int hash_file(const char *path) {   /* 0, or -2 (the test's own failure) */
    FILE *f = fopen(path, "rb");
    unsigned char buf[4096];
    size_t n;
    if (!f) return -2;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) hash_bytes(buf, n);
    fclose(f);
    return 0;
}

/* ---- the paths: each returns 0, or -1 when a lomo call failed, and frees everything ---- */

static int load_hash(const char *dir, lomo_dtype dt) {
    lomo_load_opts lo;
    lomo_model *m;
    memset(&lo, 0, sizeof lo);
    lo.dtype = dt;
    if (!(m = lomo_load(dir, &lo))) return -1;
    hash_model(m);
    hash_bytes(m->config_json, m->config_json_len);
    lomo_model_free(m);
    return 0;
}
static int p_load_gqa(void) { return load_hash(REF "llama_gqa", LOMO_F32); }
static int p_load_bf16_sharded(void) { return load_hash(REF "sharded_bf16", LOMO_BF16); }
static int p_load_gemma2(void) { return load_hash(REF "gemma2", LOMO_F32); }
static int p_load_phi3(void) { return load_hash(REF "phi3_longrope", LOMO_F16); }
static int p_load_qwen3(void) { return load_hash(REF "qwen3_tied", LOMO_F32); }
static int p_load_stories(void) { return load_hash(stories, LOMO_F32); }

/* a model from a config, random weights */
static int p_new_random(void) {
    lomo_config c;
    lomo_model *m;
    lomo_config_default(&c, 16, 40, 2, 4, 2, 50);
    if (!(m = lomo_model_new(&c, NULL))) return -1;
    if (lomo_model_init_random(m, 3, 0.2f)) { lomo_model_free(m); return -1; }
    hash_model(m);
    lomo_model_free(m);
    return 0;
}

/* tokens of a few steps: fixed random ids below 50 (made once, outside the counted runs) */
#define MAXTOK 4096
static int32_t tok_buf[MAXTOK], lab_buf[MAXTOK];

typedef struct train_case {
    const char *dir;
    lomo_dtype dtype;
    int B, T, M, steps, checkpointing, optimizer, clip_mode, stochastic;
    float clip_norm, clip_value, wd;
} train_case;
static const train_case *cur_train;

static int p_train(void) {
    const train_case *k = cur_train;
    lomo_load_opts lo;
    lomo_train_opts o;
    lomo_model *m;
    lomo_trainer *t;
    int s, rc = 0, V;
    memset(&lo, 0, sizeof lo);
    lo.dtype = k->dtype;
    if (!(m = lomo_load(k->dir, &lo))) return -1;
    memset(&o, 0, sizeof o);
    o.batch = k->B; o.seq_len = k->T; o.micro_batches = k->M; o.checkpointing = k->checkpointing;
    o.optimizer = k->optimizer; o.clip_mode = k->clip_mode; o.clip_norm = k->clip_norm; o.clip_value = k->clip_value;
    o.weight_decay = k->wd; o.stochastic_rounding = k->stochastic; o.seed = 11;
    o.loss_scaling = k->dtype == LOMO_F16 ? 1 : 0;   /* the f16 case is the scaled one (0.7: off by default on the CPU) */
    if (!(t = lomo_trainer_new(m, &o))) { lomo_model_free(m); return -1; }
    V = m->cfg.vocab_size;
    for (s = 0; s < k->steps && !rc; s++) {
        int32_t tok[256], lab[256];
        int i, n = k->B * k->T * (k->M > 1 ? k->M : 1);
        lomo_step_info info;
        for (i = 0; i < n && i < 256; i++) { tok[i] = tok_buf[i + 37 * s] % V; lab[i] = lab_buf[i + 37 * s] % V; }
        lab[1] = -100;
        if (lomo_step(t, tok, lab, 1e-2f, &info)) rc = -1;
        else { hash_int(info.n_tokens); hash_bytes(&info.loss, sizeof info.loss); hash_int(info.skipped); }
    }
    if (!rc) {
        lomo_step_info info;
        if (lomo_forward(t, tok_buf, NULL, &info)) rc = -1;
        else hash_bytes(&info.loss, sizeof info.loss);
        hash_model(m);
    }
    lomo_trainer_free(t);
    lomo_model_free(m);
    return rc;
}

/* save: model and trainer made once (outside the counted runs), saved each run */
static lomo_model *save_m;
static lomo_trainer *save_t;
static char save_dir[512];
static int save_sharded;
static int p_save(void) {
    lomo_save_opts so;
    lomo_file f;
    char path[600];
    memset(&so, 0, sizeof so);
    f.name = "extra_state.json"; f.data = "{\"k\": 1}\n"; f.len = 9;
    so.extra = &f; so.n_extra = 1;
    so.copy_from = tu_path("mini");   /* its tokenizer.json comes along */
    if (save_sharded) { so.max_shard_bytes = 20000; so.dtype = LOMO_SAVE_BF16; }
    else so.trainer = save_t;
    if (lomo_save_ex(save_m, save_dir, &so)) return -1;
    snprintf(path, sizeof path, "%s/%s", save_dir, save_sharded ? "model.safetensors.index.json" : "model.safetensors");
    if (hash_file(path)) return -2;
    snprintf(path, sizeof path, "%s/config.json", save_dir);
    return hash_file(path);
}

/* resume from the checkpoint p_save wrote (with its trainer state), one step */
static int p_resume(void) {
    lomo_model *m = lomo_load(tu_path("ckpt"), NULL);
    lomo_train_opts o;
    lomo_trainer *t;
    lomo_step_info info;
    int rc = 0;
    if (!m) return -1;
    memset(&o, 0, sizeof o);
    o.batch = 2; o.seq_len = 8; o.optimizer = LOMO_OPT_ADAMW; o.clip_norm = 1.0f;
    if (!(t = lomo_trainer_new(m, &o))) { lomo_model_free(m); return -1; }
    if (lomo_trainer_resume(t, tu_path("ckpt")) || lomo_step(t, tok_buf, lab_buf, 1e-2f, &info)) rc = -1;
    else { hash_int(lomo_trainer_step(t)); hash_model(m); hash_bytes(t->opt_mem, sizeof(float) * t->opt_floats); }
    lomo_trainer_free(t);
    lomo_model_free(m);
    return rc;
}

/* tokenizer: the committed Llama-3-style fixture and a small one written here */
static const char *texts[] = {
    "Hello world! It's a test.", "  leading and trailing  ", "CJK \xe4\xbd\xa0\xe5\xa5\xbd, digits 1234567",
    "special <|eot_id|> inside <|begin_of_text|> text", "", "code:\n\tif (x) {\r\n\t\treturn 1;\r\n\t}"
};
static int tok_run(const char *path) {
    lomo_tokenizer *tk = lomo_tokenizer_load(path);
    size_t i;
    int rc = 0;
    if (!tk) return -1;
    for (i = 0; i < sizeof texts / sizeof *texts && !rc; i++) {
        int32_t *ids = NULL;
        int64_t *sp = NULL;
        int64_t n = lomo_tokenize(tk, texts[i], strlen(texts[i]), 1, &ids, &sp);
        char *d;
        size_t len;
        if (n < 0) { rc = -1; break; }
        hash_bytes(ids, sizeof *ids * (size_t)n); hash_bytes(sp, sizeof *sp * 2 * (size_t)n);
        if (!(d = lomo_detokenize_len(tk, ids, n, (int)(i & 1), &len))) rc = -1;
        else hash_bytes(d, len);
        LOMO_FREE(d); LOMO_FREE(ids); LOMO_FREE(sp);
    }
    if (!rc) {   /* the word cache is in use now: encode the same again */
        int32_t *ids = NULL;
        int64_t n = lomo_tokenize(tk, texts[0], strlen(texts[0]), 0, &ids, NULL);
        if (n < 0) rc = -1;
        else hash_bytes(ids, sizeof *ids * (size_t)n);
        LOMO_FREE(ids);
    }
    lomo_tokenizer_free(tk);
    return rc;
}
static int p_tok_llama3(void) { return tok_run(REF "chat/tok_llama3.json"); }
static int p_tok_mini(void) { return tok_run(tu_path("mini/tokenizer.json")); }
static const char *MINI_TOK =
    "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":[{\"id\":9,\"content\":\"<s>\","
    "\"special\":true,\"normalized\":false,\"lstrip\":false,\"rstrip\":false,\"single_word\":false}],"
    "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\\u2581\"},"
    "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\\u2581\"}]},\"pre_tokenizer\":null,"
    "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"
    "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},"
    "{\"Sequence\":{\"id\":\"B\",\"type_id\":1}}],\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[9],\"tokens\":[\"<s>\"]}}},"
    "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"\\u2581\"},\"content\":\" \"},"
    "{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]},"
    "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":\"<unk>\",\"continuing_subword_prefix\":null,"
    "\"end_of_word_suffix\":null,\"fuse_unk\":true,\"byte_fallback\":true,\"ignore_merges\":false,"
    "\"vocab\":{\"<unk>\":0,\"<0x20>\":1,\"<0x0A>\":2,\"\\u2581\":3,\"e\":4,\"l\":5,\"t\":6,\"\\u2581t\":7,\"es\":8,"
    "\"s\":10,\"\\u2581te\":11,\"\\u2581tes\":12,\"\\u2581test\":13,\"o\":14},"
    "\"merges\":[\"\\u2581 t\",\"e s\",\"\\u2581t e\",\"\\u2581te s\",\"\\u2581tes t\"]}}";

/* data files: token ids (JSONL, JSON array, packed), text formats through the tokenizer, chat */
static const char *data_path, *data_chat;
static int data_tok;   /* 1: open with the llama3 tokenizer (loaded in the run) */
static int p_data(void) {
    lomo_tokenizer *tk = NULL;
    lomo_data_opts o;
    lomo_data *d;
    int32_t tok[4 * 16], lab[4 * 16];
    int i, rc = 0;
    if (data_tok && !(tk = lomo_tokenizer_load(REF "chat/tok_llama3.json"))) return -1;
    memset(&o, 0, sizeof o);
    o.seq_len = 16; o.vocab_size = tk ? lomo_tokenizer_vocab_size(tk) : 61; o.shuffle = 1; o.seed = 5;
    o.tokenizer = tk; o.chat_template = data_chat;
    if (!(d = lomo_data_open(data_path, &o))) { lomo_tokenizer_free(tk); return -1; }
    hash_int(lomo_data_count(d)); hash_int(lomo_data_truncated(d));
    for (i = 0; i < 3 && !rc; i++) {
        int r = lomo_data_next(d, 4, tok, lab);
        if (r < 0) rc = -1;
        else { hash_int(r); hash_bytes(tok, sizeof tok); hash_bytes(lab, sizeof lab); }
    }
    lomo_data_free(d);
    lomo_tokenizer_free(tk);
    return rc;
}

/* chat templates: render, encode, detect */
static int p_chat(void) {
    lomo_chat_msg msgs[4] = {{"system", "Be brief."}, {"user", "Hello there!"}, {"assistant", "Hi. How can I help?"},
                             {"user", "2+2?"}};
    static const char *names[] = {"llama3", "chatml", "qwen2", "mistral", "mistral-v1"};
    lomo_tokenizer *tk;
    char *text = NULL;
    int64_t *sp = NULL;
    int32_t *ids = NULL, *lab = NULL;
    size_t len, i;
    int64_t n;
    const char *det;
    for (i = 0; i < sizeof names / sizeof *names; i++) {
        int na = lomo_chat_render(names[i], i >= 3 ? msgs + 1 : msgs, i >= 3 ? 2 : 3, &text, &len, &sp);
        if (na < 0) return -1;
        hash_bytes(text, len); hash_bytes(sp, sizeof *sp * 2 * (size_t)na);
        LOMO_FREE(text); LOMO_FREE(sp); text = NULL; sp = NULL;
    }
    if (!(det = lomo_chat_template_detect(REF "chat/tokenizer_config_llama3.json"))) return -1;
    hash_bytes(det, strlen(det));
    if (!(tk = lomo_tokenizer_load(REF "chat/tok_llama3.json"))) return -1;
    n = lomo_chat_encode(tk, "llama3", msgs, 3, &ids, &lab);
    if (n >= 0) { hash_bytes(ids, sizeof *ids * (size_t)n); hash_bytes(lab, sizeof *lab * (size_t)n); }
    LOMO_FREE(ids); LOMO_FREE(lab);
    lomo_tokenizer_free(tk);
    return n < 0 ? -1 : 0;
}

/* multiple choice: open the items, score each candidate with lomo_forward */
static int p_mc(void) {
    lomo_mc *mc = lomo_mc_open(tu_path("mc.jsonl"), 61);
    lomo_model *m;
    lomo_trainer *t = NULL;
    lomo_train_opts o;
    int64_t i;
    int rc = 0;
    if (!mc) return -1;
    if (!(m = lomo_load(REF "llama_gqa", NULL))) { lomo_mc_free(mc); return -1; }
    memset(&o, 0, sizeof o);
    o.batch = 1; o.seq_len = 12;
    if (!(t = lomo_trainer_new(m, &o))) rc = -1;
    for (i = 0; !rc && i < lomo_mc_count(mc); i++) {
        const lomo_mc_item *it = lomo_mc_get(mc, i);
        int c;
        for (c = 0; !rc && c < it->n_cand; c++) {
            int32_t tok[12], lab[12];
            int k, n = 0;
            lomo_step_info info;
            for (k = 0; k < 12; k++) { tok[k] = 0; lab[k] = -100; }
            for (k = 0; k < it->prompt_len && n < 12; k++) tok[n++] = it->prompt[k];
            for (k = 0; k < it->cand_len[c] && n < 12; k++) { lab[n] = it->cand[c][k]; tok[n++] = it->cand[c][k]; }
            if (lomo_forward(t, tok, lab, &info)) rc = -1;
            else hash_bytes(&info.loss_sum, sizeof info.loss_sum);
        }
        if (!rc) hash_int(it->answer);
    }
    lomo_trainer_free(t);
    lomo_model_free(m);
    lomo_mc_free(mc);
    return rc;
}

/* generation: greedy and sampled through lomo_generate, and a lomo_kv by hand */
static const char *gen_dir;
static int p_generate(void) {
    lomo_model *m = lomo_load(gen_dir, NULL);
    lomo_gen_opts g;
    lomo_gen_info info;
    int32_t prompt[10], out[12], eos[4];
    int i, n, rc = 0;
    lomo_kv *kv;
    float *logits;
    if (!m) return -1;
    for (i = 0; i < 10; i++) prompt[i] = tok_buf[i] % m->cfg.vocab_size;
    memset(&g, 0, sizeof g);
    g.max_new_tokens = 12; g.prefill_chunk = 4;
    if ((n = lomo_generate(m, prompt, 10, &g, out, &info)) < 0) rc = -1;
    else hash_bytes(out, sizeof *out * (size_t)n);
    g.temperature = 0.8f; g.top_k = 20; g.top_p = 0.9f; g.repetition_penalty = 1.2f; g.seed = 9;
    if (!rc && (n = lomo_generate(m, prompt, 10, &g, out, &info)) < 0) rc = -1;
    else if (!rc) hash_bytes(out, sizeof *out * (size_t)n);
    if (!rc) {
        n = lomo_eos_ids(gen_dir, eos, 4);
        if (n < 0) rc = -1; else hash_bytes(eos, sizeof *eos * (size_t)n);
    }
    if (!rc && !(kv = lomo_kv_new(m, 16, 4))) rc = -1;
    else if (!rc) {
        if (!(logits = (float *)malloc(sizeof(float) * (size_t)m->cfg.vocab_size * 4))) { printf("no memory\n"); exit(2); }
        if (lomo_kv_eval(kv, prompt, 4, logits, 1) || lomo_kv_truncate(kv, 2) || lomo_kv_eval(kv, prompt + 2, 3, logits, 0))
            rc = -1;
        else hash_bytes(logits, sizeof(float) * (size_t)m->cfg.vocab_size);
        free(logits);
        lomo_kv_free(kv);
    }
    lomo_model_free(m);
    return rc;
}

/* ---- the sweep ---- */

static int leftovers(void) {   /* temporary directories a failed save left beside its target */
    DIR *d = opendir(tu_dir);
    struct dirent *e;
    int n = 0;
    if (!d) return 0;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".lomo-tmp.") || strstr(e->d_name, ".tmp.")) {
            if (n++ < 3) printf("  left behind: %s/%s\n", tu_dir, e->d_name);
        }
    closedir(d);
    return n;
}

static void sweep(const char *name, int (*fn)(void)) {
    long long live0 = ta_live, c0, total, n, stride, runs = 0, recovered = 0, failed = 0, bad = 0;
    uint64_t ref;
    int rc;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ta_fail_at = 0; lomo__errbuf[0] = 0; ta_hash = 0x9E3779B97F4A7C15ull;
    c0 = ta_calls;
    rc = fn();
    total = ta_calls - c0; ref = ta_hash;
    CHECK(rc == 0, "%s: the clean run failed: %s", name, lomo_error());
    CHECK(ta_live == live0, "%s: the clean run leaks %lld blocks", name, ta_live - live0);
    CHECK(total > 0, "%s: no allocation counted (LOMO_MALLOC not used?)", name);
    if (rc || ta_live != live0) return;
    stride = total > TA_MAX_RUNS ? (total + TA_MAX_RUNS - 1) / TA_MAX_RUNS : 1;
    for (n = 1; n <= total; n += stride) {
        long long inj = ta_injected;
        live0 = ta_live;
        lomo__errbuf[0] = 0; ta_hash = 0x9E3779B97F4A7C15ull;
        ta_fail_at = ta_calls + n;
        rc = fn();
        ta_fail_at = 0;
        runs++;
        if (ta_injected == inj) continue;   /* this run made fewer allocations: nothing failed */
        if (rc == 0 && ta_hash == ref) recovered++;
        else if (rc == -1 && lomo_error()[0]) failed++;
        if ((rc != 0 || ta_hash != ref) && !(rc == -1 && lomo_error()[0])) {
            if (bad++ < 4) printf("FAIL %s: allocation %lld of %lld failing: %s\n", name, n, total,
                                  rc == 0 ? "succeeded with a different result" : rc == -1 ? "failed with no lomo_error()"
                                                                                          : "the test's own check failed");
        }
        if (ta_live != live0) {
            if (bad++ < 4) printf("FAIL %s: allocation %lld of %lld failing: %lld blocks leak (%s)\n", name, n, total,
                                  ta_live - live0, lomo_error());
            ta_live = live0;   /* count the next run from here */
        }
        if (verbose && rc) printf("    %lld: %s\n", n, lomo_error());
    }
    CHECK(bad == 0, "%s: %lld bad fault runs", name, bad);
    CHECK(failed + recovered > 0, "%s: no fault run failed anything", name);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("  %-26s %6lld allocations, %4lld fault runs (every %lld%s): %lld errors, %lld recovered (%.1f s)\n", name, total,
           runs, stride, stride > 1 ? ", stride" : "", failed, recovered,
           (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
}

/* ---- no raw call in lomo.h: a scan that skips comments, strings and the default macros ---- */
static int raw_calls(const char *src, const char *file, int report) {
    static const char *names[] = {"malloc", "calloc", "realloc", "free", "strdup", "strndup", "aligned_alloc",
                                  "posix_memalign", "valloc", "memalign", "reallocarray"};
    const char *p = src, *line0 = src;
    int line = 1, found = 0;
    char prev = 0;   /* the last character outside white space, comments and literals */
    while (*p) {
        if (p[0] == '/' && p[1] == '*') { const char *e = strstr(p + 2, "*/"); const char *q; if (!e) break;
            for (q = p; q < e; q++) if (*q == '\n') { line++; line0 = q + 1; }
            p = e + 2; continue; }
        if (p[0] == '/' && p[1] == '/') { while (*p && *p != '\n') p++; continue; }
        if (*p == '"' || *p == '\'') {
            char qc = *p++;
            while (*p && *p != qc && *p != '\n') p += (*p == '\\' && p[1]) ? 2 : 1;
            if (*p == qc) p++;
            prev = qc; continue;
        }
        if (*p == '\n') { line++; line0 = ++p; continue; }
        if (*p == '_' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')) {
            const char *s = p, *q;
            size_t k, len;
            while (*p == '_' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')) p++;
            len = (size_t)(p - s);
            for (q = p; *q == ' ' || *q == '\t'; q++) {}
            for (k = 0; k < sizeof names / sizeof *names; k++)
                if (strlen(names[k]) == len && !strncmp(s, names[k], len) && *q == '(' && prev != '.' && prev != '>') {
                    const char *l = line0;
                    while (*l == ' ' || *l == '\t') l++;
                    if (!strncmp(l, "#define LOMO_MALLOC(", 20) || !strncmp(l, "#define LOMO_REALLOC(", 21) ||
                        !strncmp(l, "#define LOMO_FREE(", 18)) continue;   /* the defaults */
                    found++;
                    if (report) printf("FAIL %s:%d: raw %s() (use LOMO_MALLOC / LOMO_REALLOC / LOMO_FREE, lomo__calloc)\n",
                                       file, line, names[k]);
                }
            prev = 'a';
            continue;
        }
        if (*p != ' ' && *p != '\t' && *p != '\r') prev = *p;
        p++;
    }
    return found;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    char *s;
    long n;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END); n = ftell(f); fseek(f, 0, SEEK_SET);
    if (n < 0 || !(s = (char *)malloc((size_t)n + 1))) { fclose(f); return NULL; }
    if (fread(s, 1, (size_t)n, f) != (size_t)n) { fclose(f); free(s); return NULL; }
    s[n] = 0;
    fclose(f);
    return s;
}

static void test_no_raw_calls(void) {
    static const char *files[] = {"lomo.h", "lomo_cuda.cuh"};
    size_t i;
    /* the scan itself: it must find what it is for, and only that */
    CHECK(raw_calls("int *p = (int *)malloc(4);\n free (p);\n q = strdup(s);", "self", 0) == 3, "scan misses raw calls");
    CHECK(raw_calls("/* malloc(4) */ // free(p)\n s = \"calloc(1, 2)\"; be->free(ctx, p); x.free(p); lomo__calloc(1, 2);\n"
                    "#define LOMO_MALLOC(sz) malloc(sz)\n LOMO_FREE(p); my_free(p);", "self", 0) == 0,
          "scan reports what is not a raw call");
    for (i = 0; i < sizeof files / sizeof *files; i++) {
        char *s = slurp(files[i]);
        int n;
        CHECK(s != NULL, "cannot read %s (run from the repository root)", files[i]);
        if (!s) continue;
        n = raw_calls(s, files[i], 1);
        CHECK(n == 0, "%s: %d raw allocation calls", files[i], n);
        CHECK(strstr(s, "LOMO_FREE(") != NULL, "%s does not use LOMO_FREE at all", files[i]);
        free(s);
    }
}

/* ---- fixtures ---- */
static void write_text(const char *path, const char *s) { tu_write(path, s, strlen(s)); }
static void make_fixtures(void) {
    char line[2048];
    FILE *f;
    int i, k;
    for (i = 0; i < MAXTOK; i++) { tok_buf[i] = tu_randint(50); lab_buf[i] = tu_randint(50); }   /* every vocab here is >= 53 */
    mkdir(tu_path("mini"), 0755);
    write_text(tu_path("mini/tokenizer.json"), MINI_TOK);
    /* token ids, JSONL with labels; the same as one JSON array; packed uint32 */
    f = fopen(tu_path("ids.jsonl"), "wb");
    if (!f) { printf("cannot write %s\n", tu_path("ids.jsonl")); exit(2); }
    for (i = 0; i < 9; i++) {
        int n = 3 + tu_randint(20), o = 0;
        o += snprintf(line + o, sizeof line - o, "{\"input_ids\": [");
        for (k = 0; k < n; k++) o += snprintf(line + o, sizeof line - o, "%s%d", k ? ", " : "", tu_randint(61));
        o += snprintf(line + o, sizeof line - o, "], \"labels\": [");
        for (k = 0; k < n; k++) o += snprintf(line + o, sizeof line - o, "%s%d", k ? ", " : "", k % 3 ? tu_randint(61) : -100);
        snprintf(line + o, sizeof line - o, "], \"id\": \"x%d\"}\n%s", i, i == 4 ? "\n" : "");
        fputs(line, f);
    }
    fclose(f);
    f = fopen(tu_path("ids.json"), "wb");
    if (!f) exit(2);
    fputs("[", f);
    for (i = 0; i < 5; i++) fprintf(f, "%s{\"input_ids\": [%d, %d, %d]}", i ? ",\n" : "", tu_randint(61), tu_randint(61), tu_randint(61));
    fputs("]\n", f);
    fclose(f);
    {
        unsigned char b[4 * 100];
        for (i = 0; i < 100; i++) { uint32_t v = (uint32_t)tu_randint(61); b[4 * i] = (unsigned char)v; b[4 * i + 1] = 0; b[4 * i + 2] = 0; b[4 * i + 3] = 0; }
        tu_write(tu_path("packed.bin"), b, sizeof b);
    }
    write_text(tu_path("doc.txt"), "Once upon a time there was a small model.\nIt learned, one tensor at a time.\n"
                                   "CJK \xe4\xbd\xa0\xe5\xa5\xbd and digits 0123456789 and more words to fill a few rows.\n");
    {   /* the first three conversations of the chat fixture (all of it: 4x the fault runs, no new path) */
        FILE *in = fopen(REF "chat/conversations.jsonl", "rb");
        f = fopen(tu_path("chat.jsonl"), "wb");
        if (!in || !f) { printf("cannot copy %schat/conversations.jsonl\n", REF); exit(2); }
        for (i = 0; i < 3 && fgets(line, sizeof line, in); i++) fputs(line, f);
        fclose(in); fclose(f);
    }
    f = fopen(tu_path("mc.jsonl"), "wb");
    if (!f) exit(2);
    for (i = 0; i < 4; i++)
        fprintf(f, "{\"prompt\": [%d, %d, %d], \"candidates\": [[%d, %d], [%d], [%d, %d, %d]], \"answer\": %d}\n",
                tu_randint(61), tu_randint(61), tu_randint(61), tu_randint(61), tu_randint(61), tu_randint(61),
                tu_randint(61), tu_randint(61), tu_randint(61), i % 3);
    fclose(f);
}

static const train_case train_cases[] = {
    /* dir                dtype      B  T  M  steps ckpt optimizer        clip mode              sr  clip  value  wd */
    {REF "llama_gqa",     LOMO_F32,  2, 8, 0, 2,    0,   LOMO_OPT_LOMO,    LOMO_CLIP_GLOBAL,      0, 1.0f, 0.0f, 0.0f},
    {REF "llama_gqa",     LOMO_F32,  2, 8, 2, 2,    1,   LOMO_OPT_ADALOMO, LOMO_CLIP_GLOBAL_GRAM, 0, 0.5f, 0.0f, 0.0f},
    {REF "llama_tied",    LOMO_BF16, 2, 8, 0, 2,    1,   LOMO_OPT_ADAMW,   LOMO_CLIP_TENSOR,      1, 1.0f, 0.5f, 0.01f},
    {REF "qwen2_bias",    LOMO_F16,  1, 8, 3, 2,    1,   LOMO_OPT_LOMO,    LOMO_CLIP_GLOBAL,      0, 1.0f, 0.0f, 0.0f},
    {REF "gemma2",        LOMO_F32,  1, 8, 0, 1,    0,   LOMO_OPT_ADALOMO, LOMO_CLIP_GLOBAL,      0, 0.0f, 0.0f, 0.0f},
    {REF "phi3_longrope", LOMO_F32,  1, 8, 2, 1,    1,   LOMO_OPT_ADAMW,   LOMO_CLIP_GLOBAL,      0, 1.0f, 0.0f, 0.0f},
    {NULL,                LOMO_F32,  1, 16, 0, 2,   1,   LOMO_OPT_LOMO,    LOMO_CLIP_GLOBAL,      0, 1.0f, 0.0f, 0.0f},
};
static const char *train_names[] = {"train lomo global", "train adalomo M=2 gram", "train adamw bf16 tensor",
                                    "train lomo f16 M=3 scaled", "train gemma2 adalomo", "train phi3 adamw M=2",
                                    "train stories260K"};

/* every path once, or swept */
static void all_paths(int do_sweep) {
    size_t i;
    train_case st;
#define RUN(name, fn) do { if (do_sweep) sweep((name), (fn)); else { long long l0 = ta_live; int r_ = (fn)(); \
    CHECK(r_ == 0 && ta_live == l0, "%s (threads): rc %d, %lld blocks leak: %s", (name), r_, ta_live - l0, lomo_error()); } } while (0)
    RUN("load llama_gqa", p_load_gqa);
    RUN("load sharded bf16", p_load_bf16_sharded);
    RUN("load gemma2", p_load_gemma2);
    RUN("load phi3 longrope f16", p_load_phi3);
    RUN("load qwen3 tied", p_load_qwen3);
    if (have_stories) RUN("load stories260K", p_load_stories);
    RUN("model_new + init_random", p_new_random);
    for (i = 0; i < sizeof train_cases / sizeof *train_cases; i++) {
        st = train_cases[i];
        if (!st.dir) {
            if (!have_stories) continue;
            st.dir = stories;
        }
        cur_train = &st;
        RUN(train_names[i], p_train);
    }
    {   /* save (with trainer state) and resume; then a sharded bf16 save */
        lomo_train_opts o;
        lomo_step_info info;
        long long l0 = ta_live;
        save_m = lomo_load(REF "llama_gqa", NULL);
        memset(&o, 0, sizeof o);
        o.batch = 2; o.seq_len = 8; o.optimizer = LOMO_OPT_ADAMW; o.clip_norm = 1.0f;
        save_t = save_m ? lomo_trainer_new(save_m, &o) : NULL;
        CHECK(save_t && !lomo_step(save_t, tok_buf, lab_buf, 1e-2f, &info), "save fixture: %s", lomo_error());
        if (save_t) {
            snprintf(save_dir, sizeof save_dir, "%s", tu_path("ckpt")); save_sharded = 0;
            RUN("save with trainer state", p_save);
            RUN("resume", p_resume);
            snprintf(save_dir, sizeof save_dir, "%s", tu_path("ckpt_sharded")); save_sharded = 1;
            RUN("save sharded bf16", p_save);
            CHECK(leftovers() == 0, "failed saves left temporary files in %s", tu_dir);
        }
        lomo_trainer_free(save_t);
        lomo_model_free(save_m);
        save_t = NULL; save_m = NULL;
        CHECK(ta_live == l0, "save fixture: %lld blocks leak", ta_live - l0);
    }
    RUN("tokenizer llama3 fixture", p_tok_llama3);
    RUN("tokenizer small spm", p_tok_mini);
    {
        static const struct { const char *name, *file, *chat; int tok; } dc[] = {
            {"data jsonl ids", "ids.jsonl", NULL, 0},     {"data json array", "ids.json", NULL, 0},
            {"data packed", "packed.bin", NULL, 0},        {"data text jsonl", REF "chat/data_text.jsonl", NULL, 1},
            {"data prompt/completion", REF "chat/data_pc.jsonl", NULL, 1},
            {"data alpaca", REF "chat/data_alpaca.jsonl", NULL, 1},
            {"data chat messages", "chat.jsonl", "llama3", 1}, {"data txt", "doc.txt", NULL, 1},
        };
        char path[600];
        for (i = 0; i < sizeof dc / sizeof *dc; i++) {
            if (strncmp(dc[i].file, REF, strlen(REF))) snprintf(path, sizeof path, "%s", tu_path(dc[i].file));
            else snprintf(path, sizeof path, "%s", dc[i].file);
            data_path = path; data_chat = dc[i].chat; data_tok = dc[i].tok;
            RUN(dc[i].name, p_data);
        }
    }
    RUN("chat templates", p_chat);
    RUN("multiple choice", p_mc);
    gen_dir = REF "llama_gqa";
    RUN("generate llama_gqa", p_generate);
    gen_dir = REF "gemma2";
    RUN("generate gemma2", p_generate);
    gen_dir = stories;
    if (have_stories) RUN("generate stories260K", p_generate);
#undef RUN
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);   /* a crash keeps what was printed */
    verbose = argc > 1 && !strcmp(argv[1], "-v");
    stories = getenv("LOMO_STORIES260K") ? getenv("LOMO_STORIES260K") : "../shared/models/stories260K";
    {
        char cfg[600];
        FILE *pf;
        snprintf(cfg, sizeof cfg, "%s/config.json", stories);
        if ((pf = fopen(cfg, "rb")) != NULL) { have_stories = 1; fclose(pf); }
        else printf("stories260K not found at %s: its load, train and generate paths skipped\n", stories);
    }
    snprintf(tu_dir, sizeof tu_dir, "build/tmp_alloc");
    if ((mkdir("build", 0755) && errno != EEXIST) || (mkdir(tu_dir, 0755) && errno != EEXIST)) {
        printf("cannot create %s (run from the repository root)\n", tu_dir);
        return 1;
    }
    make_fixtures();
    test_no_raw_calls();
    all_paths(0);   /* the default threads: counting is atomic, the totals must still be 0 */
#ifdef _OPENMP
    omp_set_num_threads(1);
#endif
    all_paths(1);
    CHECK(ta_live == 0, "%lld blocks live at the end", ta_live);
    CHECK(ta_bad_free == 0, "%lld frees of blocks that were not LOMO_MALLOC'd", ta_bad_free);
    return tu_done("test_alloc");
}
