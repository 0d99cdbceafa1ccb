/* test_state.c - llama_ft's trainer_state.json reader (read_state, compiled in
   from examples/llama_ft.c) validates every field before --resume uses it:
   file_dtype outside the lomo_dtype enum once indexed a table in lomo_save and
   copied heap bytes into model.safetensors (issue 10, point 3). */
#define main llama_ft_main
#include "../examples/llama_ft.c"
#undef main
#include "test_util.h"
#include <signal.h>
#include <unistd.h>

static char dirp[256];

static int try_state(const char *text, int64_t *step, lomo_data_pos *pos, int *fdt) {
    char path[400];
    snprintf(path, sizeof path, "%s/trainer_state.json", dirp);
    FILE *f = fopen(path, "wb");
    fputs(text, f);
    fclose(f);
    return read_state(dirp, step, pos, fdt);
}

static void on_alarm(int sig) {
    (void)sig;
    tu_fail++;
    printf("FAIL: read_state blocked on a FIFO (20 s alarm)\n");
    tu_done("test_state");
    fflush(stdout);
    _exit(1);
}

int main(void) {
    int64_t step = -7;
    lomo_data_pos pos = {-7, -7};
    int fdt = -7;
    char path[400];
    snprintf(dirp, sizeof dirp, "/tmp/lomo_test_state.%ld", (long)getpid());
    mkdir(dirp, 0700);
    CHECK(try_state("{\"step\": 12, \"data_epoch\": 1, \"data_index\": 3, \"file_dtype\": 2, \"seed\": 42}\n", &step, &pos, &fdt) == 0 &&
          step == 12 && pos.epoch == 1 && pos.index == 3 && fdt == LOMO_F16, "a state llama_ft writes is read");
    static const char *bad[] = {
        "{\"step\": 12, \"data_epoch\": 1, \"data_index\": 3, \"file_dtype\": 3, \"seed\": 42}",
        "{\"step\": 12, \"data_epoch\": 1, \"data_index\": 3, \"file_dtype\": 99, \"seed\": 42}",
        "{\"step\": 12, \"data_epoch\": 1, \"data_index\": 3, \"file_dtype\": -1, \"seed\": 42}",
        "{\"step\": -1, \"data_epoch\": 1, \"data_index\": 3, \"file_dtype\": 0, \"seed\": 42}",
        "{\"step\": 9223372036854775807, \"data_epoch\": 1, \"data_index\": 3, \"file_dtype\": 0, \"seed\": 42}",
        "{\"step\": 99999999999999999999999, \"data_epoch\": 1, \"data_index\": 3, \"file_dtype\": 0, \"seed\": 42}",
        "{\"step\": 1, \"data_epoch\": -2, \"data_index\": 3, \"file_dtype\": 0, \"seed\": 42}",
        "{\"step\": 1, \"data_epoch\": 0, \"data_index\": -3, \"file_dtype\": 0, \"seed\": 42}",
        "{\"step\": 1}",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        step = 5; fdt = 1;
        int rc = try_state(bad[i], &step, &pos, &fdt);
        CHECK(rc == -1 && step == 5 && fdt == 1, "refused and nothing taken: %s (rc %d, step %lld, file_dtype %d)", bad[i], rc,
              (long long)step, fdt);
    }
    snprintf(path, sizeof path, "%s/trainer_state.json", dirp);
    unlink(path);
    CHECK(mkfifo(path, 0600) == 0, "mkfifo");
    signal(SIGALRM, on_alarm);
    alarm(20);
    CHECK(read_state(dirp, &step, &pos, &fdt) == -1, "a FIFO is refused, not waited on");
    alarm(0);
    unlink(path);
    rmdir(dirp);
    return tu_done("test_state");
}
