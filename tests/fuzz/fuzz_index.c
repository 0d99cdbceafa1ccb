/* model.safetensors.index.json beside two real shards of a tiny model:
   lomo_load with the fuzzed index (file names, weight_map, duplicates). */
#include "fuzz_util.h"

static int ready;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lomo_model *m;
    if (!ready) {
        lomo_model *t = fz_tiny_model(1, LOMO_F32);
        lomo_save_opts so;
        memset(&so, 0, sizeof so);
        so.max_shard_bytes = 600;   /* several shards */
        if (lomo_save_ex(t, fz_path("s"), &so)) { fprintf(stderr, "%s\n", lomo_error()); abort(); }
        lomo_model_free(t);
        ready = 1;
    }
    fz_write(fz_path("s/model.safetensors.index.json"), data, size);
    if ((m = lomo_load(fz_path("s"), NULL))) lomo_model_free(m);
    return 0;
}
