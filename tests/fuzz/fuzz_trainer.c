/* Resume: input byte 0 picks the target. Even: trainer.safetensors for
   lomo_trainer_resume of a trainer running optimizer (byte0 / 2) % 3; odd:
   llama_ft's trainer_state.json (read_state, compiled in from the example). */
#define main llama_ft_main
#include "../../examples/llama_ft.c"
#undef main
#define FUZZ_NO_IMPL
#include "fuzz_util.h"

static lomo_model *fm;
static lomo_trainer *ft[3];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    if (!fm) {
        int k;
        fm = fz_tiny_model(0, LOMO_BF16);
        for (k = 0; k < 3; k++) {
            lomo_train_opts o;
            memset(&o, 0, sizeof o);
            o.batch = 1; o.seq_len = 4; o.optimizer = k;
            if (!(ft[k] = lomo_trainer_new(fm, &o))) { fprintf(stderr, "%s\n", lomo_error()); abort(); }
        }
        mkdir(fz_path("r"), 0700);
    }
    if (data[0] % 2 == 0) {
        fz_write(fz_path("r/trainer.safetensors"), data + 1, size - 1);
        lomo_trainer_resume(ft[(data[0] / 2) % 3], fz_path("r"));
    } else {
        int64_t step;
        lomo_data_pos pos;
        int fdt;
        fz_write(fz_path("r/trainer_state.json"), data + 1, size - 1);
        if (!read_state(fz_path("r"), &step, &pos, &fdt) &&
            (step < 0 || pos.epoch < 0 || pos.index < 0 || fdt < LOMO_F32 || fdt > LOMO_F16)) abort();
    }
    return 0;
}
