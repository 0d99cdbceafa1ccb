/* The safetensors header rules: input = 2 bytes of data-buffer size (LE) +
   the header JSON; the file is len8 + header + that many bytes. */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lomo__st_file f;
    size_t dsize, h, i;
    unsigned char *b;
    float *tmp;
    if (size < 2) return 0;
    dsize = (size_t)data[0] | (size_t)data[1] << 8;
    h = size - 2;
    if (!(b = (unsigned char *)malloc(8 + h + dsize + 1))) return 0;
    for (i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(b + 8, data + 2, h);
    for (i = 0; i < dsize; i++) b[8 + h + i] = (unsigned char)(i * 37 + 11);
    fz_write(fz_path("h.safetensors"), b, 8 + h + dsize);
    free(b);
    if (lomo__st_open(&f, fz_path("h.safetensors"))) return 0;
    for (i = 0; i < (size_t)f.n; i++) {   /* every float tensor reads; numel is bounded by the file */
        const lomo__st_tensor *t = &f.t[i];
        if (t->end - t->begin != (uint64_t)t->numel * (uint64_t)lomo__st_dtype_size[t->dtype]) abort();
        if ((tmp = (float *)malloc(sizeof(float) * (size_t)t->numel + 4))) {
            lomo__st_read_f32(t, tmp);
            lomo__st_nonfinite(t);
            if (t->numel >= 2) lomo__st_read_f32_range(t, tmp, 1, t->numel - 1);
            free(tmp);
        }
        if (lomo__st_find(&f, t->name) != t) abort();
    }
    lomo__st_close(&f);
    return 0;
}
