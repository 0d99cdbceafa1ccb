/* Multiple-choice JSON Lines: open and walk every item. */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lomo_mc *m;
    int64_t i, n;
    long long sum = 0;
    fz_write(fz_path("mc.jsonl"), data, size);
    if (!(m = lomo_mc_open(fz_path("mc.jsonl"), 100))) return 0;
    n = lomo_mc_count(m);
    for (i = 0; i < n; i++) {
        const lomo_mc_item *it = lomo_mc_get(m, i);
        int c, k;
        if (!it || it->n_cand < 2 || it->answer < 0 || it->answer >= it->n_cand || it->prompt_len < 1) abort();
        for (k = 0; k < it->prompt_len; k++) sum += it->prompt[k];
        for (c = 0; c < it->n_cand; c++) for (k = 0; k < it->cand_len[c]; k++) sum += it->cand[c][k];
    }
    if (lomo_mc_get(m, n) != NULL) abort();
    lomo_mc_free(m);
    return (int)(sum & 0);
}
