/* test_backend.c - lomo_backend_open, the one place a program picks its backend:
   "cpu" is lomo_cpu_backend()'s table (and a model opened on it uses it); in this
   build (no LOMO_CUDA) every well-formed CUDA spec is refused naming the define and
   what to link; every other spec is refused naming the forms accepted. */
#define LOMO_IMPLEMENTATION
#include "../lomo.h"
#include "test_util.h"

int main(int argc, char **argv) {
    static const char *cuda_ok[] = {"cuda", "cuda:0", "cuda:1", "cuda:7", "cuda:2147483647"};
    static const char *bad[] = {"gpu", "cuda:x", "cuda:-1", "", "cuda:", "cuda:+1", "cuda:0x1", "cuda:1 ", " cpu", "cpu ",
                                "CPU", "cpu:0", "cudax", "cuda0", "cuda:2147483648", "cuda:99999999999999999999", "cuda::0"};
    const lomo_backend *be;
    lomo_config c;
    lomo_load_opts lo;
    lomo_model *m;
    size_t i;
    tu_verbose = argc > 1 && !strcmp(argv[1], "-v");

    be = lomo_backend_open("cpu");
    CHECK(be && be == lomo_cpu_backend(), "\"cpu\" is not lomo_cpu_backend(): %s", be ? be->name : lomo_error());
    CHECK(be && be->name && !strncmp(be->name, "cpu", 3), "\"cpu\" opened %s", be && be->name ? be->name : "(no name)");
    lomo_config_default(&c, 16 + tu_randint(8) * 2, 40, 2, 4, 2, 31);
    memset(&lo, 0, sizeof lo);
    lo.dtype = LOMO_F32;
    lo.backend = be;
    m = lomo_model_new(&c, &lo);
    CHECK(m && m->be == lomo_cpu_backend(), "a model on the opened \"cpu\" backend: %s", m ? m->be->name : lomo_error());
    lomo_model_free(m);

    for (i = 0; i < sizeof cuda_ok / sizeof *cuda_ok; i++) {
        be = lomo_backend_open(cuda_ok[i]);
        EXPECT_ERR(be == NULL, "LOMO_CUDA", "cuda_impl.cu");
        EXPECT_ERR(be == NULL, cuda_ok[i], "not compiled in");
    }
    for (i = 0; i < sizeof bad / sizeof *bad; i++) {
        char quoted[64];
        be = lomo_backend_open(bad[i]);
        snprintf(quoted, sizeof quoted, "\"%s\"", bad[i]);
        EXPECT_ERR(be == NULL, quoted, "expected \"cpu\", \"cuda\" or \"cuda:N\"");
        CHECK(!strstr(lomo_error(), "LOMO_CUDA"), "bad spec \"%s\" blamed on the build: %s", bad[i], lomo_error());
    }
    be = lomo_backend_open(NULL);
    EXPECT_ERR(be == NULL, "(null)", "\"cuda:N\"");
    /* a long spec is cut in the message, not overflowing it */
    {
        char lng[3000];
        memset(lng, 'g', sizeof lng - 1);
        lng[sizeof lng - 1] = 0;
        be = lomo_backend_open(lng);
        EXPECT_ERR(be == NULL, "ggggggg", "\"cuda:N\"");
    }
    /* after a refusal the CPU backend still opens */
    be = lomo_backend_open("cpu");
    CHECK(be == lomo_cpu_backend(), "\"cpu\" after refusals: %s", lomo_error());
    return tu_done("test_backend");
}
