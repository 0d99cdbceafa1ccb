/* The safetensors header rules, in memory (no file: fast): input = 2 bytes of
   data-buffer size (LE) + the header JSON; the mapping is len8 + header +
   that many bytes. Every accepted tensor is then read as float. */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lomo__st_file f;
    size_t dsize, h, i;
    unsigned char *b;
    float *tmp;
    if (size < 2) return 0;
    dsize = (size_t)data[0] | (size_t)data[1] << 8;
    h = size - 2;
    memset(&f, 0, sizeof f);
    snprintf(f.path, sizeof f.path, "fuzz.safetensors");
    f.size = 8 + h + dsize;
    f.map = mmap(NULL, f.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (f.map == MAP_FAILED) abort();
    b = (unsigned char *)f.map;
    for (i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(b + 8, data + 2, h);
    for (i = 0; i < dsize; i++) b[8 + h + i] = (unsigned char)(i * 37 + 11);
    if (lomo__st_parse_map(&f)) return 0;   /* closed (unmapped) on failure */
    for (i = 0; i < (size_t)f.n; i++) {   /* every float tensor reads; numel is bounded by the mapping */
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
