/* bench_tok.c - lomo_tokenize throughput on a text file, for bench/bench_tok.py
   (which runs it interleaved with the `tokenizers` library on the same text).

     build/bench_tok TOKENIZER.json TEXT.txt [DOC_BYTES]

   The text is cut into documents of about DOC_BYTES (default 2000) at line
   ends, as a dataset would be; one untimed pass warms the word cache (the peer
   gets the same), then one timed pass. Prints "seconds tokens bytes checksum"
   on one line (checksum: sum of id * position mod 2^32, compared with the peer). */
#define LOMO_IMPLEMENTATION
#include "../lomo.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) { struct timespec t; timespec_get(&t, TIME_UTC); return t.tv_sec + t.tv_nsec * 1e-9; }

int main(int argc, char **argv) {
    char *text;
    size_t len, ndocs = 0, cap = 0, i, doc = argc > 3 ? (size_t)atol(argv[3]) : 2000;
    size_t *start = NULL;
    lomo_tokenizer *tk;
    double t0 = 0, t1 = 0;
    long long ntok = 0;
    uint32_t sum = 0;
    if (argc < 3) { fprintf(stderr, "usage: bench_tok TOKENIZER.json TEXT.txt [DOC_BYTES]\n"); return 2; }
    if (!(tk = lomo_tokenizer_load(argv[1]))) { fprintf(stderr, "%s\n", lomo_error()); return 1; }
    if (lomo__read_file(argv[2], &text, &len)) { fprintf(stderr, "%s\n", lomo_error()); return 1; }
    for (i = 0; i < len;) {  /* document boundaries: the first newline after DOC_BYTES */
        size_t e = i + doc < len ? i + doc : len;
        while (e < len && text[e - 1] != '\n') e++;
        if (ndocs + 2 > cap) start = (size_t *)realloc(start, (cap = cap ? 2 * cap : 1024) * sizeof *start);
        start[ndocs++] = i;
        i = e;
    }
    start[ndocs] = len;
    for (int pass = 0; pass < 2; pass++) {
        if (pass) t0 = now();
        for (i = 0; i < ndocs; i++) {
            int32_t *ids;
            int64_t n = lomo_tokenize(tk, text + start[i], start[i + 1] - start[i], 0, &ids, NULL);
            if (n < 0) { fprintf(stderr, "%s\n", lomo_error()); return 1; }
            if (pass) { ntok += n; for (int64_t k = 0; k < n; k++) sum += (uint32_t)ids[k] * (uint32_t)(k + 1); }
            LOMO_FREE(ids);
        }
        if (pass) t1 = now();
    }
    printf("%.6f %lld %zu %u\n", t1 - t0, ntok, len, sum);
    free(start); LOMO_FREE(text); lomo_tokenizer_free(tk);
    return 0;
}
