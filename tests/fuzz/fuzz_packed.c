/* Packed uint32 token files: open, examples, batches, seek. */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lomo_data_opts o;
    lomo_data *d;
    lomo_data_pos p;
    int32_t tok[2 * 8], lab[2 * 8];
    int64_t i, n;
    memset(&o, 0, sizeof o);
    o.seq_len = 8; o.vocab_size = 1 + (size > 0 ? data[0] : 0); o.shuffle = 1; o.seed = 3;
    fz_write(fz_path("d.bin"), data, size);
    if (!(d = lomo_data_open(fz_path("d.bin"), &o))) return 0;
    n = lomo_data_count(d);
    for (i = 0; i < n && i < 64; i++) if (lomo_data_get(d, i, tok, lab) < 0) abort();
    for (i = 0; i < 3; i++) if (lomo_data_next(d, 2, tok, lab) < 1) abort();
    p.epoch = 2; p.index = n - 1;
    if (lomo_data_seek(d, p) || lomo_data_next(d, 2, tok, lab) < 1) abort();
    lomo_data_free(d);
    return 0;
}
