/* A whole model.safetensors file: lomo__st_open, then lomo_load of a
   directory with a fixed tiny config.json and this file (shape checks,
   dtypes, non-finite refusal, conversion to the storage dtype). */
#include "fuzz_util.h"

static int ready;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lomo__st_file f;
    lomo_load_opts lo;
    lomo_model *m;
    char d[600];
    if (!ready) {   /* config.json of the tiny model, in its own directory */
        lomo_model *t = fz_tiny_model(0, LOMO_F32);
        if (lomo_save(t, fz_path("m"))) { fprintf(stderr, "%s\n", lomo_error()); abort(); }
        lomo_model_free(t);
        ready = 1;
    }
    snprintf(d, sizeof d, "%s", fz_path("m"));
    fz_write(fz_path("m/model.safetensors"), data, size);
    if (!lomo__st_open(&f, fz_path("m/model.safetensors"))) lomo__st_close(&f);
    memset(&lo, 0, sizeof lo);
    lo.dtype = (lomo_dtype)(size % 3);
    if ((m = lomo_load(d, &lo))) lomo_model_free(m);
    return 0;
}
