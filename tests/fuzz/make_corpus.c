/* make_corpus.c - writes the seed corpora under tests/fuzz/corpus/ (committed;
   rerun after a format change):  cc -std=c11 -I. tests/fuzz/make_corpus.c -o /tmp/mc -lm && /tmp/mc
   Seeds are small valid inputs (and a few near-misses) for each harness. */
#include "fuzz_util.h"
#include <errno.h>

static const char *out = "tests/fuzz/corpus";

static void seed(const char *harness, const char *name, const void *p, size_t n) {
    char path[700];
    snprintf(path, sizeof path, "%s/%s", out, harness);
    mkdir(out, 0755); mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s/%s", out, harness, name);
    fz_write(path, p, n);
}
static void seed_s(const char *harness, const char *name, const char *s) { seed(harness, name, s, strlen(s)); }

static void seed_file(const char *harness, const char *name, const char *from, int prefix) {
    char *buf, *b2;
    size_t n;
    if (lomo__read_file(from, &buf, &n)) { fprintf(stderr, "%s\n", lomo_error()); exit(1); }
    if (prefix < 0) { seed(harness, name, buf, n); LOMO_FREE(buf); return; }
    b2 = (char *)malloc(n + 1);
    b2[0] = (char)prefix;
    memcpy(b2 + 1, buf, n);
    seed(harness, name, b2, n + 1);
    free(b2); LOMO_FREE(buf);
}

int main(void) {
    lomo_model *m;
    lomo_save_opts so;
    static const char *cfgs[] = {
        "{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":172,\"num_hidden_layers\":2,"
        "\"num_attention_heads\":8,\"vocab_size\":100,\"bos_token_id\":5,\"eos_token_id\":[2,7],\"custom\":{\"a\":[1,null]}}",
        "{\"model_type\":\"qwen2\",\"hidden_size\":64,\"intermediate_size\":172,\"num_hidden_layers\":2,\"num_attention_heads\":8,"
        "\"num_key_value_heads\":2,\"vocab_size\":100,\"use_sliding_window\":false,\"tie_word_embeddings\":true,\"torch_dtype\":\"bfloat16\"}",
        "{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":172,\"num_hidden_layers\":2,\"num_attention_heads\":8,"
        "\"vocab_size\":100,\"rope_parameters\":{\"rope_theta\":500000.0,\"rope_type\":\"llama3\",\"factor\":32.0,\"low_freq_factor\":1.0,"
        "\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8192},\"dtype\":\"float16\",\"layer_types\":[\"full_attention\",\"full_attention\"]}",
        "{\"model_type\":\"mistral\",\"hidden_size\":64,\"intermediate_size\":172,\"num_hidden_layers\":2,\"num_attention_heads\":8,"
        "\"vocab_size\":100,\"sliding_window\":4096,\"rms_norm_eps\":1e-5,\"rope_theta\":1e6,\"head_dim\":16,\"attention_bias\":true}",
    };
    int i;
    char nm[32];
    /* json */
    seed_s("fuzz_json", "obj", "{\"a\":[1,-2.5e3,true,false,null],\"b\\u00e9\":{\"c\":\"\\ud83d\\ude00\\n\"},\"x\\u0000\":0}");
    seed_s("fuzz_json", "arr", "[[[]],{},\"\",0,-0,1E+2]");
    seed_s("fuzz_json", "dup", "{\"a\":1,\"\\u0061\":2}");
    for (i = 0; i < 4; i++) { snprintf(nm, sizeof nm, "cfg%d", i); seed_s("fuzz_json", nm, cfgs[i]); seed_s("fuzz_config", nm, cfgs[i]); }
    seed_file("fuzz_config", "stories260K", "../shared/models/stories260K/config.json", -1);
    /* safetensors: a tiny model in each dtype; the header harness gets 2 bytes of data size + the header */
    for (i = 0; i < 3; i++) {
        FILE *f;
        unsigned char len8[8], hdr[4096];
        uint64_t hl = 0, dsize;
        long fsz;
        int k;
        m = fz_tiny_model(0, LOMO_F32);
        memset(&so, 0, sizeof so);
        so.dtype = LOMO_SAVE_F32 + i;
        if (lomo_save_ex(m, fz_path("t"), &so)) { fprintf(stderr, "%s\n", lomo_error()); return 1; }
        lomo_model_free(m);
        snprintf(nm, sizeof nm, "tiny_%d", i);
        seed_file("fuzz_safetensors", nm, fz_path("t/model.safetensors"), -1);
        f = fopen(fz_path("t/model.safetensors"), "rb");
        if (!f || fread(len8, 1, 8, f) != 8) return 1;
        for (k = 7; k >= 0; k--) hl = hl << 8 | len8[k];
        if (hl > sizeof hdr - 2 || fread(hdr + 2, 1, (size_t)hl, f) != hl) return 1;
        fseek(f, 0, SEEK_END); fsz = ftell(f); fclose(f);
        dsize = (uint64_t)fsz - 8 - hl;
        hdr[0] = (unsigned char)dsize; hdr[1] = (unsigned char)(dsize >> 8);
        seed("fuzz_st_header", nm, hdr, (size_t)hl + 2);
    }
    seed_s("fuzz_st_header", "meta", "\x08\x00{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}");
    /* index: as fuzz_index makes it */
    m = fz_tiny_model(1, LOMO_F32);
    memset(&so, 0, sizeof so);
    so.max_shard_bytes = 600;
    if (lomo_save_ex(m, fz_path("s"), &so)) { fprintf(stderr, "%s\n", lomo_error()); return 1; }
    seed_file("fuzz_index", "index", fz_path("s/model.safetensors.index.json"), -1);
    lomo_model_free(m);
    /* data */
    seed_s("fuzz_jsonl", "ids", "{\"input_ids\":[1,2,3,4],\"labels\":[-100,2,3,4]}\n\n{\"input_ids\":[5,6]}\n");
    seed_s("fuzz_jsonl", "text", "{\"input_ids\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20]}\n");
    seed_s("fuzz_mc", "mc", "{\"prompt\":[1,2,3],\"candidates\":[[4],[5,6]],\"answer\":1}\n{\"prompt\":[9],\"candidates\":[[1],[2],[3]],\"answer\":0,\"id\":\"x\"}\n");
    {
        uint32_t toks[40];
        for (i = 0; i < 40; i++) toks[i] = (uint32_t)(i * 7 % 200);
        seed("fuzz_packed", "toks", toks, sizeof toks);
    }
    /* trainer: a real trainer.safetensors per optimizer (prefix byte 2k), a trainer_state.json (prefix 1) */
    for (i = 0; i < 3; i++) {
        lomo_train_opts o;
        lomo_trainer *t;
        m = fz_tiny_model(0, LOMO_BF16);
        memset(&o, 0, sizeof o);
        o.batch = 1; o.seq_len = 4; o.optimizer = i;
        t = lomo_trainer_new(m, &o);
        memset(&so, 0, sizeof so);
        so.trainer = t;
        if (!t || lomo_save_ex(m, fz_path("tr"), &so)) { fprintf(stderr, "%s\n", lomo_error()); return 1; }
        snprintf(nm, sizeof nm, "opt_%d", i);
        seed_file("fuzz_trainer", nm, fz_path("tr/trainer.safetensors"), 2 * i);
        lomo_trainer_free(t);
        lomo_model_free(m);
    }
    seed_s("fuzz_trainer", "state", "\x01{\"step\": 12, \"data_epoch\": 1, \"data_index\": 3, \"file_dtype\": 1, \"seed\": 42}\n");
    printf("corpora written under %s (scratch files in %s)\n", out, fz_dir);
    return 0;
}
