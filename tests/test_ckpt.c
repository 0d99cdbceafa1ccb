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

int main(void) {
    mkdir("build", 0755);
    lomo__rmtree(TMP "/sharded"); lomo__rmtree(TMP "/atomic");
    mkdir(TMP, 0755);
    test_sharded_and_dtypes();
    test_failed_save();
    test_carried_files();
    test_bad_checkpoints();
    test_sliding_window();
    return tu_done("test_ckpt");
}
