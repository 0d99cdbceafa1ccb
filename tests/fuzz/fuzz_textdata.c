/* fuzz_textdata.c - libFuzzer harness for the text dataset formats of
   lomo_data_open ({"text"}, {"prompt", "completion"}, alpaca, {"messages"}
   with each chat template, *.txt) and for lomo_chat_template_detect.

   Build and run from the repository root (clang with libclang-rt for libFuzzer):
     clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
         tests/fuzz/fuzz_textdata.c -o build/fuzz_textdata -lm
     mkdir -p build/fuzz_textdata_corpus
     cp tests/ref/chat/data_*.jsonl tests/ref/chat/conversations.jsonl build/fuzz_textdata_corpus/
     build/fuzz_textdata -max_total_time=60 build/fuzz_textdata_corpus
   Without libFuzzer (replays files given as arguments, e.g. a crash-* file):
     cc -g -O1 -fsanitize=address,undefined -DFUZZ_STANDALONE tests/fuzz/fuzz_textdata.c -o build/fuzz_textdata_replay -lm

   The input's first byte picks the chat template and the file kind, the rest
   is the file. Every call must return a data set or NULL with a message,
   never crash, leak or read out of bounds; a data set must be consistent
   (every id below the vocabulary, labels -100 or equal to the id). */
#define LOMO_IMPLEMENTATION
#include "../../lomo.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static lomo_tokenizer *fz_tok;
static char fz_dir[256];

static void fz_write(const char *path, const uint8_t *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (n && fwrite(p, 1, n, f) != n) abort();
    fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *const tpl[] = {"llama3", "chatml", "qwen2", "mistral", NULL};
    char path[300];
    lomo_data_opts o;
    lomo_data *d;
    int sel;
    if (!fz_tok) {
        fz_tok = lomo_tokenizer_load("tests/ref/chat/tok_llama3.json");
        if (!fz_tok) { fprintf(stderr, "run from the repository root: %s\n", lomo_error()); abort(); }
        snprintf(fz_dir, sizeof fz_dir, "/tmp/fuzz_textdata.%d", (int)getpid());
        mkdir(fz_dir, 0755);
    }
    if (size < 1) return 0;
    sel = data[0];
    data++; size--;
    memset(&o, 0, sizeof o);
    o.seq_len = 1 + (sel >> 4);                        /* 1..16: truncation is exercised */
    o.vocab_size = lomo_tokenizer_vocab_size(fz_tok);
    o.tokenizer = fz_tok;
    o.chat_template = tpl[sel % 5];
    o.shuffle = sel & 8;
    if ((sel & 7) == 7) {   /* the bytes as tokenizer_config.json */
        const char *name;
        snprintf(path, sizeof path, "%s/tokenizer_config.json", fz_dir);
        fz_write(path, data, size);
        name = lomo_chat_template_detect(fz_dir);
        if (!name && !lomo_error()[0]) abort();
        return 0;
    }
    snprintf(path, sizeof path, "%s/in.%s", fz_dir, (sel & 7) == 6 ? "txt" : "jsonl");
    fz_write(path, data, size);
    d = lomo_data_open(path, &o);
    if (!d) {
        if (!lomo_error()[0]) abort();   /* a refusal always says why */
        return 0;
    }
    {
        int64_t i, k;
        for (i = 0; i < lomo_data_count(d); i++) {
            const int32_t *t, *l;
            int64_t n = lomo_data_example(d, i, &t, &l);
            if (n < 1 || n > o.seq_len) abort();
            for (k = 0; k < n; k++)
                if (t[k] < 0 || t[k] >= o.vocab_size || (l[k] != -100 && l[k] != t[k])) abort();
        }
        if (lomo_data_truncated(d) < 0 || lomo_data_truncated(d) > lomo_data_count(d)) abort();
    }
    lomo_data_free(d);
    return 0;
}

#ifdef FUZZ_STANDALONE
int main(int argc, char **argv) {
    int i;
    for (i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        uint8_t *buf;
        long n;
        if (!f) { perror(argv[i]); return 1; }
        fseek(f, 0, SEEK_END); n = ftell(f); fseek(f, 0, SEEK_SET);
        buf = (uint8_t *)malloc((size_t)n + 1);
        if (n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n) { fclose(f); free(buf); return 1; }
        fclose(f);
        LLVMFuzzerTestOneInput(buf, (size_t)n);
        free(buf);
        printf("%s: ok\n", argv[i]);
    }
    lomo_tokenizer_free(fz_tok);
    return 0;
}
#endif
