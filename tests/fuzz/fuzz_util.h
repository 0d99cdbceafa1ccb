/* fuzz_util.h - shared by the libFuzzer harnesses (make fuzz): a scratch
   directory per process, writing the input to a file, a tiny model.
   Each harness defines LLVMFuzzerTestOneInput; readers that take a path get
   the input through a file in the scratch directory. A harness must never
   abort on any input: every failure is an error return of lomo, and ASan /
   UBSan turn memory errors and undefined behaviour into crashes. */
#ifndef FUZZ_UTIL_H
#define FUZZ_UTIL_H
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE   /* MAP_ANONYMOUS, mkdir under -std=c11 */
#endif
#ifndef FUZZ_NO_IMPL
#define LOMO_IMPLEMENTATION
#include "../../lomo.h"
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char fz_dir[256];

static void fz_cleanup(void) {
    char cmd[300];
    if (!fz_dir[0] || strchr(fz_dir, '\'')) return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fz_dir);
    if (system(cmd)) { /* nothing to do */ }
}

static const char *fz_path(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    if (!fz_dir[0]) {
        /* TMPDIR, else /dev/shm (tmpfs: file round trips are ~50x faster than on disk), else /tmp */
        const char *t = getenv("TMPDIR");
        struct stat st;
        if (!t || !t[0]) t = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(fz_dir, sizeof fz_dir, "%s/lomo_fuzz.%ld", t, (long)getpid());
        mkdir(fz_dir, 0700);
        atexit(fz_cleanup);
    }
    snprintf(buf[k], sizeof buf[k], "%s/%s", fz_dir, name);
    return buf[k];
}

static void fz_write(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) { fprintf(stderr, "fuzz: cannot write %s\n", path); abort(); }
    if (n && fwrite(p, 1, n, f) != n) { fprintf(stderr, "fuzz: short write %s\n", path); abort(); }
    fclose(f);
}

/* A tiny llama (GQA, untied, biases when bias=1) saved to fz_path(name). */
static lomo_model *fz_tiny_model(int bias, lomo_dtype dt) {
    lomo_config c;
    lomo_load_opts lo;
    lomo_model *m;
    lomo_config_default(&c, 8, 16, 1, 2, 1, 16);
    c.qkv_bias = c.o_bias = bias;
    c.max_seq_len = 32;
    memset(&lo, 0, sizeof lo);
    lo.dtype = dt;
    if (!(m = lomo_model_new(&c, &lo))) { fprintf(stderr, "fuzz: %s\n", lomo_error()); abort(); }
    lomo_model_init_random(m, 1, 0.1f);
    return m;
}
#endif
