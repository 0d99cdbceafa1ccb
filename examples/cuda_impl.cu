// The implementation of lomo.h + lomo_cuda.cuh in one .cu file: compile it
// with nvcc and link C programs built with -DLOMO_CUDA against it (see the
// top of lomo_cuda.cuh and the README; `make cuda` does it for the example,
// the tests and the benchmark). LOMO_CUDA: lomo_backend_open("cuda:N") opens
// lomo_cuda_backend(N) (without it, it refuses CUDA specs naming the define).
#define LOMO_CUDA
#define LOMO_IMPLEMENTATION
#include "../lomo.h"
#include "../lomo_cuda.cuh"
