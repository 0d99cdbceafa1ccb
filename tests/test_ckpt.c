/* test_ckpt.c - Hugging Face checkpoints as lomo writes and reads them:
   - sharded saves (model-0000K-of-0000N + index) reload bit-identically, and
     so do bf16/f16 saves of bf16/f16-representable weights;
   - a save that fails midway (disk full injected) or whose process dies
     between writes leaves the previous checkpoint loadable and unchanged,
     even when the checkpoint is several files; the dead save's temporary
     directory is cleaned up by the next save;
   - tokenizer and other non-weight files come along (copy_from) and survive
     re-saves; extra files (trainer state) are written inside the same swap;
   - bad checkpoints are refused with messages naming file, tensor and the
     expected vs found value: shape disagreeing with config.json, missing
     tensor, unexpected tensor, index naming a missing shard, truncated file;
   - a Mistral sliding_window shorter than seq_len is refused, naming it. */
#define LOMO_IMPLEMENTATION
#include "../lomo.h"
#include "test_util.h"
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>
extern int symlink(const char *target, const char *linkpath);   /* POSIX; hidden under strict -std=c11 */

#define TMP "build/tmp_ckpt"

static int same_weights(const lomo_model *a, const lomo_model *b) {
    if (a->n_tensors != b->n_tensors) return 0;
    for (int i = 0; i < a->n_tensors; i++)
        if (strcmp(a->tensors[i].name, b->tensors[i].name) ||
            memcmp(a->tensors[i].data, b->tensors[i].data, 4 * (size_t)a->tensors[i].numel)) return 0;
    return 1;
}

static lomo_model *random_model(uint64_t seed) {
    lomo_config c;
    lomo_config_default(&c, 16, 24, 2, 4, 2, 37);
    lomo_model *m = lomo_model_new(&c, NULL);
    lomo_model_init_random(m, seed, 0.3f);
    return m;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static int count_files(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (!d) return -1;
    while ((e = readdir(d))) n += !strncmp(e->d_name, prefix, strlen(prefix));
    closedir(d);
    return n;
}

static void test_sharded_and_dtypes(void) {
    lomo_model *m = lomo_load("tests/ref/llama_gqa", NULL);
    lomo_save_opts o;
    memset(&o, 0, sizeof o);
    o.dtype = LOMO_SAVE_AS_LOADED; o.max_shard_bytes = 20000;
    CHECK(m && lomo_save_ex(m, TMP "/sharded", &o) == 0, "sharded save: %s", lomo_error());
    int shards = count_files(TMP "/sharded", "model-0000");
    CHECK(shards >= 3, "expected several shards, found %d", shards);
    lomo_model *r = lomo_load(TMP "/sharded", NULL);
    CHECK(r && same_weights(m, r), "sharded save -> load not bit-identical: %s", lomo_error());
    printf("sharded save: %d shards + index, reload bit-identical\n", shards);
    lomo_model_free(r);
    /* re-saving unsharded over it removes the shards */
    CHECK(lomo_save(m, TMP "/sharded") == 0 && count_files(TMP "/sharded", "model-0000") == 0 &&
          count_files(TMP "/sharded", "model.safetensors") == 1, "re-save must replace the shards");
    lomo_model_free(m);
    /* bf16 checkpoint: saved back as bf16 by default, bit-identical */
    m = lomo_load("tests/ref/sharded_bf16", NULL);
    CHECK(m && m->file_dtype == LOMO_BF16, "bf16 fixture");
    CHECK(lomo_save(m, TMP "/bf16") == 0, "bf16 save: %s", lomo_error());
    lomo__st_file f;
    CHECK(lomo__st_open(&f, TMP "/bf16/model.safetensors") == 0 && f.t[0].dtype == LOMO__ST_BF16, "saved as bf16");
    lomo__st_close(&f);
    r = lomo_load(TMP "/bf16", NULL);
    CHECK(r && same_weights(m, r), "bf16 save -> load");
    lomo_model_free(r);
    /* and as f16 when asked: values round-trip where representable */
    o.dtype = LOMO_SAVE_F16; o.max_shard_bytes = 0;
    CHECK(lomo_save_ex(m, TMP "/f16", &o) == 0, "f16 save");
    r = lomo_load(TMP "/f16", NULL);
    CHECK(r && r->file_dtype == LOMO_F16, "f16 reload");
    double e = 0;
    for (int i = 0; r && i < m->n_tensors; i++)
        e = fmax(e, tu_rel_err((float *)r->tensors[i].data, (float *)m->tensors[i].data, m->tensors[i].numel));
    CHECK(e < 1e-3, "bf16 -> f16 -> f32 within f16 precision: %g", e);
    lomo_model_free(r);
    lomo_model_free(m);
}

static void test_failed_save(void) {
    lomo_model *a = random_model(1), *b = random_model(2);
    lomo_save_opts o;
    memset(&o, 0, sizeof o);
    o.dtype = LOMO_SAVE_AS_LOADED; o.max_shard_bytes = 4000;            /* several files */
    CHECK(lomo_save_ex(a, TMP "/atomic", &o) == 0, "first save");
    for (int after = 100; after <= 20100; after += 4000) {
        lomo__io_total_written = 0;
        lomo__io_fail_total_after = after;              /* disk full after that many bytes of the save */
        int rc = lomo_save_ex(b, TMP "/atomic", &o);
        lomo__io_fail_total_after = -1;
        CHECK(rc == -1 && strstr(lomo_error(), "No space left"), "injected ENOSPC must fail the save: %s", lomo_error());
        lomo_model *r = lomo_load(TMP "/atomic", NULL);
        CHECK(r && same_weights(a, r), "after a failed save the previous checkpoint must be intact (%d)", after);
        lomo_model_free(r);
    }
    CHECK(count_files(TMP, "atomic.lomo-tmp") == 0, "a failed save leaves no temporary directory");
    /* killed between writes: a child process dies in the middle of a multi-file save */
    for (long long after = 3000; after <= 15000; after += 6000) {
        pid_t pid = fork();
        if (pid == 0) {
            lomo__io_total_written = 0;
            lomo__io_crash_after = after;
            lomo_save_ex(b, TMP "/atomic", &o);
            _Exit(0);                                   /* not reached when the crash fires */
        }
        int st = 0;
        waitpid(pid, &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 137, "the child must die mid-save (status %d)", st);
        lomo_model *r = lomo_load(TMP "/atomic", NULL);
        CHECK(r && same_weights(a, r), "after a killed save the previous checkpoint must be intact (%lld bytes)", after);
        lomo_model_free(r);
    }
    CHECK(count_files(TMP, "atomic.lomo-tmp") >= 1, "the killed saves left their temporary directories");
    CHECK(lomo_save_ex(b, TMP "/atomic", &o) == 0, "save after the crashes");
    CHECK(count_files(TMP, "atomic.lomo-tmp") == 0, "the next save removes dead saves' temporary directories");
    lomo_model *r = lomo_load(TMP "/atomic", NULL);
    CHECK(r && same_weights(b, r), "the new checkpoint is in place");
    lomo_model_free(r);
    lomo_model_free(a); lomo_model_free(b);
}

static void test_carried_files(void) {
    lomo_model *m = random_model(3);
    mkdir(TMP "/src", 0755);
    write_text(TMP "/src/tokenizer.json", "{\"version\": \"1.0\"}");
    write_text(TMP "/src/tokenizer_config.json", "{}");
    write_text(TMP "/src/pytorch_model.bin", "not carried: weights");
    lomo_file state = {"trainer_state.json", "{\"step\": 7}", 11};
    lomo_save_opts o;
    memset(&o, 0, sizeof o);
    o.dtype = LOMO_SAVE_AS_LOADED; o.copy_from = TMP "/src"; o.extra = &state; o.n_extra = 1;
    CHECK(lomo_save_ex(m, TMP "/carry", &o) == 0, "save with copy_from: %s", lomo_error());
    CHECK(count_files(TMP "/carry", "tokenizer") == 2 && count_files(TMP "/carry", "pytorch_model.bin") == 0 &&
          count_files(TMP "/carry", "trainer_state.json") == 1, "tokenizer files and the extra file come along, weights do not");
    CHECK(lomo_save(m, TMP "/carry") == 0 && count_files(TMP "/carry", "tokenizer") == 2,
          "files already in the directory survive a re-save");
    lomo_model_free(m);
}

static void expect_load_error(const char *dir, const char *what, const char *needle1, const char *needle2) {
    lomo_model *m = lomo_load(dir, NULL);
    CHECK(!m && strstr(lomo_error(), needle1) && (!needle2 || strstr(lomo_error(), needle2)),
          "%s: expected an error with '%s'%s%s, got: %s", what, needle1, needle2 ? " and " : "", needle2 ? needle2 : "",
          m ? "(loaded)" : lomo_error());
    if (!m) printf("  %-22s -> %s\n", what, lomo_error());
    lomo_model_free(m);
}

static void test_bad_checkpoints(void) {
    lomo_model *m = random_model(4);
    char *txt; size_t len;
    printf("bad checkpoints:\n");
    /* shape disagreeing with config.json */
    lomo_save(m, TMP "/bad_shape");
    lomo__read_file(TMP "/bad_shape/config.json", &txt, &len);
    char *p = strstr(txt, "\"intermediate_size\": 24");
    memcpy(p, "\"intermediate_size\": 28", 23);
    write_text(TMP "/bad_shape/config.json", txt);
    free(txt);
    expect_load_error(TMP "/bad_shape", "shape vs config.json", "model.layers.0.mlp.gate_proj.weight", "[24, 16] in the file, config.json implies [28, 16]");
    /* missing tensor: config says biases, the file has none */
    lomo_save(m, TMP "/bad_missing");
    lomo__read_file(TMP "/bad_missing/config.json", &txt, &len);
    p = strstr(txt, "\"attention_bias\": false,");
    memcpy(p, "\"attention_bias\": true ,", 24);
    write_text(TMP "/bad_missing/config.json", txt);
    free(txt);
    expect_load_error(TMP "/bad_missing", "missing tensor", "missing tensor 'model.layers.0.self_attn.q_proj.bias'", "model.safetensors");
    /* unexpected tensor: a bias model read with a no-bias config */
    lomo_load_opts lo = {LOMO_F32, NULL, NULL};
    lomo_config c = m->cfg;
    c.qkv_bias = c.o_bias = 1;
    lomo_model *mb = lomo_model_new(&c, &lo);
    lomo_model_init_random(mb, 5, 0.1f);
    lomo_save(mb, TMP "/bad_extra");
    lomo_model_free(mb);
    lomo__read_file(TMP "/bad_extra/config.json", &txt, &len);
    p = strstr(txt, "\"attention_bias\": true,");
    memcpy(p, "\"attention_bias\":false,", 23);
    write_text(TMP "/bad_extra/config.json", txt);
    free(txt);
    expect_load_error(TMP "/bad_extra", "unexpected tensor", "unexpected tensor 'model.layers.0.self_attn.q_proj.bias'", NULL);
    /* index naming a shard that is not there */
    lomo_save_opts o;
    memset(&o, 0, sizeof o);
    o.dtype = LOMO_SAVE_AS_LOADED; o.max_shard_bytes = 4000;
    lomo_save_ex(m, TMP "/bad_shard", &o);
    char shard[128];
    snprintf(shard, sizeof shard, "model-00002-of-%05d.safetensors", count_files(TMP "/bad_shard", "model-0"));
    char shard_path[300];
    snprintf(shard_path, sizeof shard_path, TMP "/bad_shard/%s", shard);
    CHECK(unlink(shard_path) == 0, "remove %s", shard_path);
    expect_load_error(TMP "/bad_shard", "missing shard", shard, "cannot open");
    /* truncated single file */
    lomo_save(m, TMP "/bad_trunc");
    lomo__read_file(TMP "/bad_trunc/model.safetensors", &txt, &len);
    FILE *f = fopen(TMP "/bad_trunc/model.safetensors", "wb");
    fwrite(txt, 1, len - 100, f);
    fclose(f);
    free(txt);
    expect_load_error(TMP "/bad_trunc", "truncated safetensors", "model.safetensors", NULL);
    expect_load_error(TMP "/nowhere", "no directory", "config.json", NULL);
    lomo_model_free(m);
}

static void test_sliding_window(void) {
    lomo_model *m = lomo_load("tests/ref/mistral", NULL);
    CHECK(m && m->cfg.sliding_window == 4096, "mistral sliding_window read");
    m->cfg.sliding_window = 8;
    lomo_train_opts o;
    memset(&o, 0, sizeof o);
    o.batch = 1; o.seq_len = 9;
    lomo_trainer *t = lomo_trainer_new(m, &o);
    CHECK(!t && strstr(lomo_error(), "field 'sliding_window': 8 is shorter than seq_len=9"), "sliding window: %s", lomo_error());
    o.seq_len = 8;
    t = lomo_trainer_new(m, &o);
    CHECK(t != NULL, "seq_len == sliding_window is fine");
    lomo_trainer_free(t);
    lomo_model_free(m);
}


/* ---- issue 10: what the checkpoint readers refuse, what saves keep ---- */

static char *slurp(const char *path, size_t *len) {
    char *t = NULL;
    size_t n = 0;
    if (lomo__read_file(path, &t, &n)) return NULL;
    if (len) *len = n;
    return t;
}

/* the bytes of tensor `name` in dir/model.safetensors are overwritten with `val` (f32) at element k */
static void poke_f32(const char *file, const char *name, int64_t k, float val) {
    lomo__st_file f;
    long off = -1;
    if (!lomo__st_open(&f, file)) {
        const lomo__st_tensor *t = lomo__st_find(&f, name);
        if (t) off = (long)((const unsigned char *)t->data - (const unsigned char *)f.map) + 4 * (long)k;
        lomo__st_close(&f);
    }
    CHECK(off > 0, "poke %s in %s", name, file);
    FILE *fp = fopen(file, "r+b");
    fseek(fp, off, SEEK_SET);
    fwrite(&val, 4, 1, fp);
    fclose(fp);
}

/* rewrites dir/trainer.safetensors with its tensors and the given metadata */
static void rewrite_trainer_meta(const char *src, const char *dst, const char *const *meta) {
    lomo__st_file f;
    CHECK(lomo__st_open(&f, src) == 0, "open %s: %s", src, lomo_error());
    lomo__st_out *o = (lomo__st_out *)calloc((size_t)f.n + 1, sizeof *o);
    for (int k = 0; k < f.n; k++) {
        o[k].name = f.t[k].name; o[k].dtype = f.t[k].dtype; o[k].ndim = f.t[k].ndim; o[k].data = f.t[k].data;
        memcpy(o[k].shape, f.t[k].shape, sizeof o[k].shape);
    }
    CHECK(lomo__st_save(dst, o, f.n, meta) == 0, "rewrite %s: %s", dst, lomo_error());
    free(o);
    lomo__st_close(&f);
}

static void on_alarm(int sig) {   /* a reader blocked on a FIFO */
    (void)sig;
    tu_fail++;
    printf("FAIL: a reader blocked on a FIFO (20 s alarm)\n");
    tu_done("test_ckpt");
    fflush(stdout);
    _exit(1);
}

static void test_hardening(void) {
    lomo_model *m = random_model(11), *r;
    lomo_save_opts o;
    char *txt, *p;
    size_t len;
    printf("issue 10:\n");
    /* 6: a tensor in two shards is refused (Python would take either) */
    memset(&o, 0, sizeof o);
    o.max_shard_bytes = 4000;
    CHECK(lomo_save_ex(m, TMP "/two_shards", &o) == 0, "sharded save: %s", lomo_error());
    {   /* shard 2 gets a copy of shard 1's first tensor (the embedding) */
        lomo__st_file a, b;
        char s1[300], s2[300], s2new[310];
        int ns = count_files(TMP "/two_shards", "model-0");
        snprintf(s1, sizeof s1, TMP "/two_shards/model-00001-of-%05d.safetensors", ns);
        snprintf(s2, sizeof s2, TMP "/two_shards/model-00002-of-%05d.safetensors", ns);
        snprintf(s2new, sizeof s2new, "%s.new", s2);
        CHECK(ns >= 2 && lomo__st_open(&a, s1) == 0 && lomo__st_open(&b, s2) == 0, "open shards (%d): %s", ns, lomo_error());
        if (ns < 2) return;
        lomo__st_out *out = (lomo__st_out *)calloc((size_t)b.n + 1, sizeof *out);
        for (int k = 0; k <= b.n; k++) {
            const lomo__st_tensor *t = k < b.n ? &b.t[k] : &a.t[0];
            out[k].name = t->name; out[k].dtype = t->dtype; out[k].ndim = t->ndim; out[k].data = t->data;
            memcpy(out[k].shape, t->shape, sizeof out[k].shape);
        }
        CHECK(lomo__st_save(s2new, out, b.n + 1, NULL) == 0, "%s", lomo_error());
        free(out);
        lomo__st_close(&a); lomo__st_close(&b);
        rename(s2new, s2);
        expect_load_error(TMP "/two_shards", "tensor in two shards", "appears in two shards", "model.embed_tokens.weight");
    }
    /* 6: duplicate key in index.json */
    lomo_save_ex(m, TMP "/dup_index", &o);
    txt = slurp(TMP "/dup_index/model.safetensors.index.json", &len);
    p = strstr(txt, "\"weight_map\": {");
    CHECK(p != NULL, "index has weight_map");
    if (p) {
        FILE *fp = fopen(TMP "/dup_index/model.safetensors.index.json", "wb");
        fwrite(txt, 1, (size_t)(p - txt) + 15, fp);
        fprintf(fp, "\n    \"model.norm.weight\": \"model-00001-of-%05d.safetensors\",", count_files(TMP "/dup_index", "model-0"));
        fputs(p + 15, fp);
        fclose(fp);
        expect_load_error(TMP "/dup_index", "duplicate index key", "duplicate field 'model.norm.weight'", "index.json");
    }
    free(txt);
    /* 1: an index key with \u0000 is not the tensor name */
    lomo_save_ex(m, TMP "/nul_index", &o);
    txt = slurp(TMP "/nul_index/model.safetensors.index.json", &len);
    p = strstr(txt, "\"model.norm.weight\"");
    if (p) {
        FILE *fp = fopen(TMP "/nul_index/model.safetensors.index.json", "wb");
        fwrite(txt, 1, (size_t)(p - txt) + 18, fp);
        fputs("\\u0000", fp);
        fputs(p + 18, fp);
        fclose(fp);
        expect_load_error(TMP "/nul_index", "index key with \\u0000", "model.norm.weight", "weight_map");
    }
    free(txt);
    /* 14: an I32 tensor names the file; a symlink loop is not "no model.safetensors" */
    lomo_save(m, TMP "/i32");
    {
        lomo__st_file f;
        CHECK(lomo__st_open(&f, TMP "/i32/model.safetensors") == 0, "%s", lomo_error());
        lomo__st_out *out = (lomo__st_out *)calloc((size_t)f.n, sizeof *out);
        for (int k = 0; k < f.n; k++) {
            out[k].name = f.t[k].name; out[k].dtype = f.t[k].dtype; out[k].ndim = f.t[k].ndim; out[k].data = f.t[k].data;
            memcpy(out[k].shape, f.t[k].shape, sizeof out[k].shape);
            if (!strcmp(f.t[k].name, "model.norm.weight")) out[k].dtype = LOMO__ST_I32;
        }
        CHECK(lomo__st_save(TMP "/i32/model.new", out, f.n, NULL) == 0, "%s", lomo_error());
        free(out);
        lomo__st_close(&f);
        rename(TMP "/i32/model.new", TMP "/i32/model.safetensors");
    }
    expect_load_error(TMP "/i32", "I32 tensor", TMP "/i32/model.safetensors: tensor 'model.norm.weight': dtype I32 cannot be read as float", NULL);
    lomo_save(m, TMP "/loop");
    unlink(TMP "/loop/model.safetensors");
    CHECK(symlink("model.safetensors", TMP "/loop/model.safetensors") == 0, "symlink");
    expect_load_error(TMP "/loop", "symlink loop", "model.safetensors: cannot open: Too many levels of symbolic links", NULL);
    /* 8: non-finite weights are refused, naming the tensor (f32, and the bf16 file path) */
    lomo_save(m, TMP "/nan");
    poke_f32(TMP "/nan/model.safetensors", "model.layers.1.mlp.up_proj.weight", 5, NAN);
    expect_load_error(TMP "/nan", "NaN weight", "tensor 'model.layers.1.mlp.up_proj.weight': element 5 is NaN or Inf", NULL);
    lomo_save(m, TMP "/inf");
    poke_f32(TMP "/inf/model.safetensors", "model.norm.weight", 0, -INFINITY);
    expect_load_error(TMP "/inf", "Inf weight", "'model.norm.weight': element 0", "non-finite");
    {
        lomo_load_opts lb = {LOMO_BF16, NULL, NULL};
        memset(&o, 0, sizeof o);
        o.dtype = LOMO_SAVE_BF16;
        lomo_model *b = lomo_load(TMP "/inf", &lb);
        CHECK(!b && strstr(lomo_error(), "model.norm.weight"), "bf16 storage refuses too: %s", lomo_error());
        lomo_model_free(b);
        CHECK(lomo_save_ex(m, TMP "/bf", &o) == 0, "%s", lomo_error());
        lomo__st_file f;
        if (!lomo__st_open(&f, TMP "/bf/model.safetensors")) {   /* a bf16 NaN (0x7fc0) */
            long off = (long)((const unsigned char *)lomo__st_find(&f, "model.layers.0.self_attn.k_proj.weight")->data -
                              (const unsigned char *)f.map) + 2 * 3;
            lomo__st_close(&f);
            FILE *fp = fopen(TMP "/bf/model.safetensors", "r+b");
            unsigned char nanb[2] = {0xc0, 0x7f};
            fseek(fp, off, SEEK_SET); fwrite(nanb, 1, 2, fp); fclose(fp);
        }
        b = lomo_load(TMP "/bf", &lb);
        CHECK(!b && strstr(lomo_error(), "'model.layers.0.self_attn.k_proj.weight': element 3"), "bf16 NaN: %s", lomo_error());
        lomo_model_free(b);
    }
    /* 7: a FIFO as model.safetensors or index.json: refused, not waited on */
    lomo_save(m, TMP "/fifo");
    unlink(TMP "/fifo/model.safetensors");
    CHECK(mkfifo(TMP "/fifo/model.safetensors", 0600) == 0, "mkfifo");
    signal(SIGALRM, on_alarm);
    alarm(20);
    expect_load_error(TMP "/fifo", "FIFO model.safetensors", "not a regular file (a FIFO)", NULL);
    unlink(TMP "/fifo/model.safetensors");
    CHECK(mkfifo(TMP "/fifo/model.safetensors.index.json", 0600) == 0, "mkfifo");
    expect_load_error(TMP "/fifo", "FIFO index.json", "index.json: not a regular file (a FIFO)", NULL);
    alarm(0);
    /* 3: file_dtype out of range never indexes a table */
    m->file_dtype = (lomo_dtype)3;
    CHECK(lomo_save(m, TMP "/fdt") == -1 && strstr(lomo_error(), "file_dtype 3"), "file_dtype 3: %s", lomo_error());
    m->file_dtype = (lomo_dtype)-1;
    CHECK(lomo_save(m, TMP "/fdt") == -1 && strstr(lomo_error(), "file_dtype -1"), "file_dtype -1: %s", lomo_error());
    m->file_dtype = LOMO_F32;
    /* 3: trainer.safetensors metadata validated field by field */
    {
        lomo_train_opts to;
        memset(&to, 0, sizeof to);
        to.batch = 1; to.seq_len = 4; to.optimizer = LOMO_OPT_ADAMW;
        lomo_trainer *t = lomo_trainer_new(m, &to);
        memset(&o, 0, sizeof o);
        o.trainer = t;
        CHECK(t && lomo_save_ex(m, TMP "/tr", &o) == 0, "save with trainer: %s", lomo_error());
        lomo__st_file f;
        CHECK(lomo__st_open(&f, TMP "/tr/trainer.safetensors") == 0, "%s", lomo_error());
        char hdr[2048];
        uint64_t hl;
        memcpy(&hl, f.map, 8);
        snprintf(hdr, sizeof hdr, "%.*s", (int)(hl < 2000 ? hl : 2000), (const char *)f.map + 8);
        lomo__st_close(&f);
        CHECK(strstr(hdr, "\"optimizer\":\"adamw\"") != NULL, "optimizer written by name: %.200s", hdr);
        CHECK(lomo_trainer_resume(t, TMP "/tr") == 0, "resume own state: %s", lomo_error());
        static const char *bad[][3] = {
            {"optimizer", "7", "unknown optimizer '7' (expected lomo, adalomo or adamw)"}, {"optimizer", "lomo", "for optimizer lomo, this trainer runs adamw"},
            {"optimizer", "2x", "unknown optimizer '2x'"}, {"step", "-1", "'step'"}, {"step", "9223372036854775807", "'step'"},
            {"step", "12abc", "'step'"}, {"step", "", "'step'"}, {"loss_scale", "nan", "'loss_scale'"},
            {"loss_scale", "0", "'loss_scale'"}, {"loss_scale", "inf", "'loss_scale'"}, {"loss_scale", "1e39", "'loss_scale'"},
            {"loss_scale", "-2", "'loss_scale'"}, {"clean_steps", "x", "'clean_steps'"}, {"clean_steps", "-3", "'clean_steps'"},
            {"format", "pt", "'format'"},
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            const char *meta[] = {"format", "lomo-trainer", "step", "5", "loss_scale", "1", "clean_steps", "0",
                                  "optimizer", "adamw", "seed", "0", NULL};
            for (int k = 0; meta[k]; k += 2) if (!strcmp(meta[k], bad[i][0])) meta[k + 1] = bad[i][1];
            rewrite_trainer_meta(TMP "/tr/trainer.safetensors", TMP "/tr/trainer.new", meta);
            mkdir(TMP "/trbad", 0755);
            rename(TMP "/tr/trainer.new", TMP "/trbad/trainer.safetensors");
            int64_t before = lomo_trainer_step(t);
            int rc = lomo_trainer_resume(t, TMP "/trbad");
            CHECK(rc == -1 && strstr(lomo_error(), bad[i][2]) && lomo_trainer_step(t) == before,
                  "trainer meta %s=\"%s\": rc=%d %s", bad[i][0], bad[i][1], rc, lomo_error());
            if (rc) printf("  %-22s -> %s\n", bad[i][0], lomo_error());
        }
        {   /* the legacy numeric optimizer, and a valid state, are taken */
            const char *meta[] = {"format", "lomo-trainer", "step", "42", "loss_scale", "2", "clean_steps", "3",
                                  "optimizer", "2", "seed", "0", NULL};
            rewrite_trainer_meta(TMP "/tr/trainer.safetensors", TMP "/trbad/trainer.safetensors", meta);
            CHECK(lomo_trainer_resume(t, TMP "/trbad") == 0 && lomo_trainer_step(t) == 42, "legacy optimizer 2: %s", lomo_error());
        }
        lomo_trainer_free(t);
    }
    /* 17: carried files are copies, never links to the base model's */
    {
        struct stat a, b;
        memset(&o, 0, sizeof o);
        o.copy_from = TMP "/src";   /* from test_carried_files */
        CHECK(lomo_save_ex(m, TMP "/carry2", &o) == 0, "%s", lomo_error());
        CHECK(stat(TMP "/src/tokenizer.json", &a) == 0 && stat(TMP "/carry2/tokenizer.json", &b) == 0 &&
              (a.st_ino != b.st_ino || a.st_dev != b.st_dev) && a.st_nlink == 1, "tokenizer.json is a copy (nlink %d)", (int)a.st_nlink);
        write_text(TMP "/carry2/tokenizer.json", "{\"edited\": true}");
        txt = slurp(TMP "/src/tokenizer.json", NULL);
        CHECK(txt && !strcmp(txt, "{\"version\": \"1.0\"}"), "editing the output leaves the base model's file alone: %s", txt);
        free(txt);
    }
    lomo_model_free(m);
    (void)r;
}

/* 16: config.json keeps every key of the input, byte for byte where lomo changed nothing */
static void test_config_kept(void) {
    static const char *base =
        "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n  \"bos_token_id\": 5,\n"
        "  \"eos_token_id\": [2, 7],\n  \"pad_token_id\": 3,\n  \"hidden_size\": 16,\n  \"intermediate_size\": 24,\n"
        "  \"num_hidden_layers\": 2,\n  \"num_attention_heads\": 4,\n  \"num_key_value_heads\": 2,\n  \"vocab_size\": 37,\n"
        "  \"max_position_embeddings\": 2048,\n  \"rms_norm_eps\": 1e-05,\n"
        "  \"rope_parameters\": {\"rope_theta\": 10000.0, \"rope_type\": \"default\"},\n"
        "  \"layer_types\": [\"full_attention\", \"full_attention\"],\n  \"max_window_layers\": 28,\n"
        "  \"my_custom\": {\"nested\": [1, {\"deep\": \"\\u00e9\"}], \"x\": null},\n  \"torch_dtype\": \"float32\",\n"
        "  \"transformers_version\": \"4.57.1\"\n}\n";
    lomo_model *m = random_model(12);
    lomo_save_opts o;
    size_t len;
    char *txt;
    /* a model from scratch writes a complete config that loads back */
    CHECK(lomo_save(m, TMP "/kept") == 0, "%s", lomo_error());
    lomo_model *r = lomo_load(TMP "/kept", NULL);
    CHECK(r && lomo__config_same(&r->cfg, &m->cfg) && same_weights(r, m), "from scratch: complete config.json");
    lomo_model_free(r);
    txt = slurp(TMP "/kept/config.json", NULL);
    CHECK(txt && strstr(txt, "\"hidden_act\": \"silu\"") && strstr(txt, "\"architectures\""), "generated config: %s", txt);
    free(txt);
    write_text(TMP "/kept/config.json", base);
    r = lomo_load(TMP "/kept", NULL);
    CHECK(r != NULL, "load with the rich config: %s", lomo_error());
    if (!r) { lomo_model_free(m); return; }
    /* same dtype: byte for byte */
    CHECK(lomo_save(r, TMP "/kept_out") == 0, "%s", lomo_error());
    txt = slurp(TMP "/kept_out/config.json", &len);
    CHECK(txt && len == strlen(base) && !memcmp(txt, base, len), "config.json unchanged byte for byte:\n%s", txt);
    free(txt);
    /* another dtype: only torch_dtype's value changes */
    memset(&o, 0, sizeof o);
    o.dtype = LOMO_SAVE_BF16;
    CHECK(lomo_save_ex(r, TMP "/kept_bf16", &o) == 0, "%s", lomo_error());
    {
        char want[2048];
        const char *at = strstr(base, "\"float32\"");
        snprintf(want, sizeof want, "%.*s\"bfloat16\"%s", (int)(at - base), base, at + 9);
        txt = slurp(TMP "/kept_bf16/config.json", &len);
        CHECK(txt && !strcmp(txt, want), "bf16 save changes torch_dtype only:\n%s", txt);
        free(txt);
    }
    lomo_model *b = lomo_load(TMP "/kept_bf16", NULL);
    CHECK(b && b->file_dtype == LOMO_BF16 && b->config_json, "bf16 checkpoint loads: %s", lomo_error());
    /* re-saving what was loaded keeps the keys again (bos 5, eos [2, 7] survive two generations) */
    if (b) {
        o.dtype = LOMO_SAVE_F16;
        CHECK(lomo_save_ex(b, TMP "/kept_f16", &o) == 0, "%s", lomo_error());
        txt = slurp(TMP "/kept_f16/config.json", NULL);
        CHECK(txt && strstr(txt, "\"bos_token_id\": 5,") && strstr(txt, "\"eos_token_id\": [2, 7],") &&
              strstr(txt, "\"pad_token_id\": 3") && strstr(txt, "\"max_window_layers\": 28") &&
              strstr(txt, "\"my_custom\": {\"nested\": [1, {\"deep\": \"\\u00e9\"}], \"x\": null}") &&
              strstr(txt, "\"torch_dtype\": \"float16\"") && strstr(txt, "\"rope_parameters\": {\"rope_theta\": 10000.0"),
              "f16 generation keeps the keys:\n%s", txt);
        free(txt);
    }
    lomo_model_free(b);
    /* transformers >= 5 writes "dtype" only: that key changes, no torch_dtype appears */
    {
        char v5[2048];
        const char *at = strstr(base, "\"torch_dtype\": \"float32\"");
        snprintf(v5, sizeof v5, "%.*s\"dtype\": \"float32\"%s", (int)(at - base), base, at + 24);
        write_text(TMP "/kept/config.json", v5);
        lomo_model *c = lomo_load(TMP "/kept", NULL);
        CHECK(c && lomo_save_ex(c, TMP "/kept_v5", &o) == 0, "%s", lomo_error());
        txt = slurp(TMP "/kept_v5/config.json", NULL);
        CHECK(txt && strstr(txt, "\"dtype\": \"float16\"") && !strstr(txt, "torch_dtype") && strstr(txt, "\"bos_token_id\": 5"),
              "v5 dtype key:\n%s", txt);
        free(txt);
        lomo_model_free(c);
    }
    /* a config without any dtype key gets torch_dtype added when the dtype changes */
    {
        char nod[2048];
        const char *cut = ",\n  \"torch_dtype\": \"float32\"", *at = strstr(base, cut);
        snprintf(nod, sizeof nod, "%.*s%s", (int)(at - base), base, at + strlen(cut));
        write_text(TMP "/kept/config.json", nod);
        lomo_model *c = lomo_load(TMP "/kept", NULL);
        o.dtype = LOMO_SAVE_BF16;
        CHECK(c && lomo_save_ex(c, TMP "/kept_nod", &o) == 0, "%s", lomo_error());
        lomo_model *d = lomo_load(TMP "/kept_nod", NULL);
        CHECK(d && d->file_dtype == LOMO_BF16 && strstr(d->config_json, "\"torch_dtype\": \"bfloat16\"") &&
              strstr(d->config_json, "\"transformers_version\": \"4.57.1\""), "dtype added: %s", d ? d->config_json : lomo_error());
        lomo_model_free(c); lomo_model_free(d);
    }
    /* a value the program changed (max_position_embeddings) is rewritten, the rest kept */
    r->cfg.max_seq_len = 4096;
    CHECK(lomo_save(r, TMP "/kept_ctx") == 0, "%s", lomo_error());
    txt = slurp(TMP "/kept_ctx/config.json", NULL);
    CHECK(txt && strstr(txt, "\"max_position_embeddings\": 4096,") && strstr(txt, "\"eos_token_id\": [2, 7]"), "changed value:\n%s", txt);
    free(txt);
    /* a change lomo cannot write as a value edit (model type): lomo's config plus the input's other keys */
    strcpy(r->cfg.model_type, "mistral");
    CHECK(lomo_save(r, TMP "/kept_mistral") == 0, "%s", lomo_error());
    lomo_model *q = lomo_load(TMP "/kept_mistral", NULL);
    CHECK(q && !strcmp(q->cfg.model_type, "mistral") && strstr(q->config_json, "\"eos_token_id\": [2, 7]") &&
          strstr(q->config_json, "\"MistralForCausalLM\"") && strstr(q->config_json, "\"my_custom\""),
          "regenerated + kept:\n%s", q ? q->config_json : lomo_error());
    lomo_model_free(q);
    lomo_model_free(r);
    lomo_model_free(m);
}

int main(void) {
    mkdir("build", 0755);
    lomo__rmtree(TMP "/sharded"); lomo__rmtree(TMP "/atomic");
    mkdir(TMP, 0755);
    test_sharded_and_dtypes();
    test_failed_save();
    test_carried_files();
    test_bad_checkpoints();
    test_sliding_window();
    test_hardening();
    test_config_kept();
    return tu_done("test_ckpt");
}
