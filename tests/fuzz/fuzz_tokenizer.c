/* fuzz_tokenizer.c - libFuzzer harness for lomo's tokenizer.json reader.
   Self-contained (the lead wires it into `make fuzz`). Build and run:

     clang -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
         tests/fuzz/fuzz_tokenizer.c -o build/fuzz_tokenizer -lm
     mkdir -p build/fuzz_tok_corpus && cp tests/ref/tok/var_added.json tests/ref/tok/llama3.json build/fuzz_tok_corpus/   # any tokenizer.json seeds
     build/fuzz_tokenizer -max_len=200000 -max_total_time=60 build/fuzz_tok_corpus

   Each input is written to a scratch file and loaded as a tokenizer.json; a
   file that loads is then used: fixed texts (ASCII, multilingual, special-token
   strings) and the input's own bytes as text (when valid UTF-8) are encoded
   with and without special tokens, and the ids (plus out-of-range ones) are
   decoded. Anything but a clean refusal or a clean result is a bug. */
#define _POSIX_C_SOURCE 200809L
#define LOMO_IMPLEMENTATION
#include "../../lomo.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void exercise(const lomo_tokenizer *tk, const char *text, size_t len) {
    for (int add = 0; add < 2; add++) {
        int32_t *ids = NULL;
        int64_t *sp = NULL;
        int64_t n = lomo_tokenize(tk, text, len, add, &ids, add ? &sp : NULL);
        if (n < 0) continue;
        for (int64_t i = 0; i < n; i++) {
            if (ids[i] < 0 || ids[i] >= lomo_tokenizer_vocab_size(tk)) abort();
            if (sp && (sp[2 * i] < 0 || sp[2 * i] > sp[2 * i + 1] || sp[2 * i + 1] > (int64_t)len)) abort();
            (void)lomo_token_str(tk, ids[i]);
            (void)lomo_token_is_special(tk, ids[i]);
        }
        for (int skip = 0; skip < 2; skip++) {
            char *d = lomo_detokenize(tk, ids, n, skip);
            LOMO_FREE(d);
        }
        LOMO_FREE(ids);
        LOMO_FREE(sp);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[64];
    static const char *texts[] = { "", "Hello world  it's 12345 ok\n\n", " \t\r\n", "<s>a</s><|eot_id|><|im_start|>",
                                   "caf\xc3\xa9 e\xcc\x81 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd \xd9\x85\xd8\xb1\xd8\xad\xd8\xa8\xd8\xa7" };
    FILE *f;
    lomo_tokenizer *tk;
    if (!path[0]) snprintf(path, sizeof path, "/tmp/fuzz_tokenizer_%d.json", (int)getpid());
    if (!(f = fopen(path, "wb"))) return 0;
    if (size && fwrite(data, 1, size, f) != size) { fclose(f); return 0; }
    fclose(f);
    tk = lomo_tokenizer_load(path);
    if (!tk) { if (!lomo_error()[0]) abort(); return 0; }   /* a refusal must say why */
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) exercise(tk, texts[i], strlen(texts[i]));
    exercise(tk, (const char *)data, size < 4096 ? size : 4096);
    {
        int32_t ids[8] = { 0, 1, 2, -5, 3, 1 << 30, 255, 256 };
        char *d = lomo_detokenize(tk, ids, 8, 0);
        LOMO_FREE(d);
    }
    lomo_tokenizer_free(tk);
    return 0;
}
