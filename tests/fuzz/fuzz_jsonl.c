/* JSON Lines training data: open (all formats lomo_data_open takes from a
   .jsonl), then read examples and a few batches. */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lomo_data_opts o;
    lomo_data *d;
    int32_t tok[4 * 16], lab[4 * 16];
    int64_t i, n;
    memset(&o, 0, sizeof o);
    o.seq_len = 16; o.vocab_size = 64; o.shuffle = (int)(size & 1); o.seed = 7; o.pad_id = 0;
    fz_write(fz_path("d.jsonl"), data, size);
    if (!(d = lomo_data_open(fz_path("d.jsonl"), &o))) return 0;
    n = lomo_data_count(d);
    for (i = 0; i < n && i < 64; i++) if (lomo_data_get(d, i, tok, lab) < 0) abort();
    for (i = 0; i < 3; i++) if (lomo_data_next(d, 4, tok, lab) < 1) abort();
    lomo_data_free(d);
    return 0;
}
