/* test_threads.c - CPU results do not depend on the machine's load.
   The CPU backend sizes each parallel region by the cores that are free at
   the moment (lomo__nt), so on a busy machine the team size changes from
   one region to the next. Every kernel must therefore give bitwise the same
   result for any team size up to twice omp_get_max_threads() (OMP_NUM_THREADS;
   a busy machine gives the big regions twice as many threads as cores):
   this trains the same model with teams of 1, 2, 3 and 6 threads out of 3,
   and as lomo__nt sizes them with one core free (6 threads for the big
   regions, 1 for the others), for each optimizer, clipping modes, bf16 with
   stochastic rounding, and compares every weight bit for bit. Sizes are odd
   and large enough that the regions really split. With the plain loops every
   kernel is also independent of OMP_NUM_THREADS itself, which is checked too.
   Also: small work runs on one thread, the load probe reads sane values, and
   a busy machine gives short regions the free cores and long ones twice as
   many threads as omp_get_max_threads(). */
#define LOMO_IMPLEMENTATION
#include "../lomo.h"
#include "test_util.h"
#include <string.h>

enum { B = 2, T = 70, V = 301 };

static lomo_model *make(lomo_dtype dt) {
    lomo_config c;
    lomo_load_opts lo;
    memset(&lo, 0, sizeof lo);
    lo.dtype = dt;
    lomo_config_default(&c, 136, 345, 2, 4, 2, V);
    c.max_seq_len = T;
    lomo_model *m = lomo_model_new(&c, &lo);
    lomo_model_init_random(m, 7, 0.05f);
    return m;
}

/* train 3 steps with teams of nt threads (nt 0: as lomo__nt picks them with one core
   free); returns the weights, concatenated */
static unsigned char *train(int maxt, int nt, int optimizer, int clip_mode, lomo_dtype dt, size_t *bytes) {
#ifdef _OPENMP
    omp_set_num_threads(maxt);
    lomo__nt_force = nt;          /* teams of exactly nt threads */
    lomo__nt_now = 1;             /* or: no load probe, one core free */
    lomo__nt_when = 1e300;
#else
    (void)nt; (void)maxt;
#endif
    lomo_model *m = make(dt);
    lomo_train_opts o;
    memset(&o, 0, sizeof o);
    o.batch = B; o.seq_len = T; o.optimizer = optimizer; o.weight_decay = 0.01f;
    o.clip_norm = clip_mode >= 0 ? 0.5f : 0.0f;
    o.clip_mode = clip_mode >= 0 ? clip_mode : 0;
    o.stochastic_rounding = dt != LOMO_F32;
    o.seed = 11;
    lomo_trainer *t = lomo_trainer_new(m, &o);
    int32_t tok[B * T], lab[B * T];
    uint64_t s = 5;
    for (int step = 0; step < 3; step++) {
        for (int i = 0; i < B * T; i++) { tok[i] = (int32_t)(lomo_rand_u64(&s) % V); lab[i] = (int32_t)(lomo_rand_u64(&s) % V); }
        if (lomo_step(t, tok, lab, optimizer == LOMO_OPT_LOMO ? 0.05f : 1e-3f, NULL)) printf("step: %s\n", lomo_error());
    }
    size_t n = 0;
    for (int i = 0; i < m->n_tensors; i++) n += lomo__tensor_bytes(&m->tensors[i]);
    unsigned char *w = (unsigned char *)malloc(n), *p = w;
    for (int i = 0; i < m->n_tensors; i++) {
        memcpy(p, m->tensors[i].data, lomo__tensor_bytes(&m->tensors[i]));
        p += lomo__tensor_bytes(&m->tensors[i]);
    }
    *bytes = n;
    lomo_trainer_free(t);
    lomo_model_free(m);
    return w;
}

static void same_for_any_threads(const char *what, int optimizer, int clip_mode, lomo_dtype dt) {
    size_t n1, n;
    unsigned char *w1 = train(3, 1, optimizer, clip_mode, dt, &n1);
    static const int teams[] = {2, 3, 6, 0, 4};
    for (int k = 0; k < 5; k++) {
        /* teams of 2, 3 and 6 of at most 3 threads, and the busy machine's mix; then (loops
           only) 4 threads of 4 */
        int nt = teams[k];
        unsigned char *w = k < 4 ? train(3, nt, optimizer, clip_mode, dt, &n) : train(4, 4, optimizer, clip_mode, dt, &n);
        size_t diff = 0;
        if (k == 4 && strstr(lomo_cpu_backend()->name, "cblas")) { free(w); continue; }
        for (size_t i = 0; i < n && n == n1; i++) diff += w[i] != w1[i];
        CHECK(n == n1 && diff == 0, "%s: team of %d (0: busy machine's mix) differs from 1 thread in %zu of %zu bytes",
              what, nt, diff, n);
        free(w);
    }
    free(w1);
}

int main(void) {
    printf("backend: %s\n", lomo_cpu_backend()->name);
    same_for_any_threads("lomo, global clip", LOMO_OPT_LOMO, LOMO_CLIP_GLOBAL, LOMO_F32);
    same_for_any_threads("lomo, gram clip", LOMO_OPT_LOMO, LOMO_CLIP_GLOBAL_GRAM, LOMO_F32);
    same_for_any_threads("adalomo, tensor clip", LOMO_OPT_ADALOMO, LOMO_CLIP_TENSOR, LOMO_F32);
    same_for_any_threads("adamw", LOMO_OPT_ADAMW, -1, LOMO_F32);
    same_for_any_threads("adalomo, bf16 stochastic", LOMO_OPT_ADALOMO, -1, LOMO_BF16);
#ifdef _OPENMP
    {
        int o;
        omp_set_num_threads(4);
        lomo__nt_force = 4;
        CHECK(lomo__nt(100.0) == 1, "small work must run on one thread");
        CHECK(lomo__nt(1e9) == 4, "forced big work: %d threads, want 4", lomo__nt(1e9));
        lomo__nt_force = 0;
#if defined(__linux__) && !defined(LOMO_CPU_FIXED_THREADS)
        lomo__nt_now = 4;   /* the probe's last answer: 4 cores free, 1 free, none free */
        CHECK(lomo__nt(1e9) == 4 && lomo__nt(1e5) == 4, "idle machine: %d, %d threads, want 4", lomo__nt(1e9), lomo__nt(1e5));
        lomo__nt_now = 1;
        CHECK(lomo__nt(1e5) == 1, "busy machine, short region: %d threads, want 1", lomo__nt(1e5));
        CHECK(lomo__nt(LOMO_CPU_OVERSUB_WORK) == 8, "busy machine, long region: %d threads, want 8",
              lomo__nt(LOMO_CPU_OVERSUB_WORK));
        lomo__nt_now = -3;
        CHECK(lomo__nt(1e5) == 1 && lomo__nt(1e9) == 8, "no core free: %d, %d threads, want 1, 8", lomo__nt(1e5),
              lomo__nt(1e9));
        o = lomo__other_running();
        CHECK(o >= 0 && o < 100000, "load probe: %d other running threads", o);
        lomo__nt_when = -1.0;     /* the probe's own answer is within [1, 2 max] */
        o = lomo__nt(1e9);
        CHECK(o >= 1 && o <= 8, "probed thread count %d", o);
#else
        (void)o;
#endif
    }
#endif
    return tu_done("test_threads");
}
