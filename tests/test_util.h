/* test_util.h - counters, random data and error measures shared by the tests.
   Every test program ends with the line "NAME: P passed, F failed" and exits
   nonzero when F > 0. */
#ifndef TEST_UTIL_H
#define TEST_UTIL_H
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int tu_pass, tu_fail;

#define CHECK(cond, ...) do { \
    if (cond) tu_pass++; \
    else { tu_fail++; printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } \
} while (0)

static inline int tu_done(const char *name) {
    printf("%s: %d passed, %d failed\n", name, tu_pass, tu_fail);
    return tu_fail ? 1 : 0;
}

static uint64_t tu_rng = 0x1234567887654321ull;
static double tu_uniform(void) { /* xorshift64*, in (0,1) */
    tu_rng ^= tu_rng >> 12; tu_rng ^= tu_rng << 25; tu_rng ^= tu_rng >> 27;
    return ((tu_rng * 2685821657736338717ull) >> 11) * (1.0 / 9007199254740992.0) + 1e-300;
}
static double tu_normal(void) { return sqrt(-2.0 * log(tu_uniform())) * cos(6.283185307179586 * tu_uniform()); }
static inline void tu_fill(float *x, size_t n, double std) { for (size_t i = 0; i < n; i++) x[i] = (float)(std * tu_normal()); }
static inline int tu_randint(int n) { return (int)(tu_uniform() * n) % n; }

/* Tests of lomo.h's refusals: `failed` says the call returned its failure value, and each
   word (w2 may be NULL) must be in lomo_error(). EXPECT_ERR names the caller's line; with
   tu_verbose (a test's -v) every message that passed is printed. */
#ifdef LOMO_H
static int tu_verbose;
static inline void tu_expect_err(int failed, const char *w1, const char *w2, const char *file, int line) {
    const char *e = lomo_error();
    if (failed && strstr(e, w1) && (!w2 || strstr(e, w2))) {
        tu_pass++;
        if (tu_verbose) printf("  ok  %s\n", e);
        return;
    }
    tu_fail++;
    printf("FAIL %s:%d: expected an error with '%s'%s%s%s, got %s: %s\n", file, line, w1, w2 ? " and '" : "",
           w2 ? w2 : "", w2 ? "'" : "", failed ? "failure" : "success", e);
}
#define EXPECT_ERR(failed, w1, w2) tu_expect_err((failed), (w1), (w2), __FILE__, __LINE__)
#endif

/* files under a test's scratch directory: tu_path("x") -> "<tu_dir>/x" (4 live results) */
static char tu_dir[256];
static inline const char *tu_path(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tu_dir, name);
    return buf[k];
}
/* tu_dir = path, made if missing, with build/ above it (run from the repository root): 0, or -1 after saying why */
static inline int tu_scratch(const char *path) {
    snprintf(tu_dir, sizeof tu_dir, "%s", path);
    if ((mkdir("build", 0755) && errno != EEXIST) || (mkdir(tu_dir, 0755) && errno != EEXIST)) {
        printf("cannot create %s (run from the repository root)\n", tu_dir);
        return -1;
    }
    return 0;
}
static inline void tu_write(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n)) { printf("cannot write %s\n", path); exit(2); }
    fclose(f);
}

/* max_i |a_i - b_i| / max_i |b_i|: the relative error of a whole tensor */
static inline double tu_rel_err_fd(const float *a, const double *b, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > num || d != d) num = d;
        if (fabs(b[i]) > den) den = fabs(b[i]);
    }
    return den > 0 ? num / den : num;
}
static inline double tu_rel_err(const float *a, const float *b, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > num || d != d) num = d;
        if (fabs((double)b[i]) > den) den = fabs((double)b[i]);
    }
    return den > 0 ? num / den : num;
}
#endif
