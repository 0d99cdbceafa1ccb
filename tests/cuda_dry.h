/* cuda_dry.h - the CPU backend posing as the CUDA one, so that test_cuda.cu's own
   logic (buffer sizes, bounds that must discriminate, the step cases, the fixtures)
   runs without a GPU: `make build/test_cuda_dry` (g++), run by `make gpu-check`.
   CPU against CPU agrees exactly, so this proves the test runs, not the kernels.
   Device memory is "not host memory" here, so every download path is taken. */
#define LOMO_CU__MAX_HD 256
typedef int cudaError_t;
enum { cudaSuccess = 0 };
struct cudaPointerAttributes { int device; };
static int cudaGetDeviceCount(int *n) { *n = 1; return 0; }
static int cudaSetDevice(int) { return 0; }
static int cudaPointerGetAttributes(cudaPointerAttributes *a, const void *) { a->device = 0; return 0; }
static lomo_backend lomo__dry_be;
static const lomo_backend *lomo_cuda_backend(int) {
    lomo__dry_be = *lomo_cpu_backend();
    lomo__dry_be.host_memory = 0;
    lomo__dry_be.grads16 = 1;   /* 0.7: f16 loss scaling on by default, as on CUDA */
    lomo__dry_be.linear_update = lomo__cpu_linear_update;   /* 0.6: the fused-update path, as CUDA takes it */
    return &lomo__dry_be;
}
static int lomo_cuda_mem_info(const lomo_backend *, size_t *f, size_t *t) { *f = 0; *t = 0; return -1; }   /* no 2^31 tensor */
static int lomo_cuda_release(const lomo_backend *, int) { return 0; }
