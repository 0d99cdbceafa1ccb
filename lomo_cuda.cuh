/* lomo_cuda.cuh - the CUDA backend of lomo.h: every operation of the backend
   table on an NVIDIA GPU (CUDA runtime + cuBLAS), so the same driver trains
   on the device. Same licence as lomo.h.

   USE
     In exactly one .cu file (compiled with nvcc):
         #define LOMO_IMPLEMENTATION
         #include "lomo.h"
         #include "lomo_cuda.cuh"
     Everywhere else (C or C++) include both headers without the define, and
     ask for the backend:
         lomo_load_opts o = {LOMO_BF16, lomo_cuda_backend(0)};
         lomo_model *m = lomo_load("hf_dir", &o);      // streamed tensor by tensor
     Build, e.g. with the implementation in impl.cu and the program in prog.c:
         nvcc -O3 -std=c++17 -gencode arch=compute_80,code=sm_80 \
              -gencode arch=compute_90,code=sm_90 -c impl.cu -o impl.o
         cc -O2 -std=c11 -DLOMO_CUDA prog.c impl.o -o prog -L/usr/local/cuda/lib64 \
              -lcudart -lcublas -lstdc++ -lm
     Weights, activations, gradients and optimizer state live in device memory;
     update hooks receive device pointers and ctx->stream (a cudaStream_t).

   NUMERICS
     Activations are fp32. Matmuls: with fp32 weights, cuBLAS in pure fp32
     (no TF32); with bf16/f16 weights the activation operands are cast to the
     weight dtype and multiplied with fp32 accumulation (cublasGemmEx), and
     weight gradients are written in fp32 straight into the gradient buffer.
     RMSNorm statistics, RoPE, softmax, the loss and the updates are fp32;
     reductions that feed decisions (norms, sums) are deterministic two-stage
     sums in double; column sums (bias, RMSNorm weight, AdaLomo) are tiled
     fixed-order block sums. Attention never stores a T x T matrix. With
     bf16/f16 weights on sm_80+ and head_dim 64/80/96/128 it is flash
     attention on tensor cores (bf16 operands, fp32 softmax and accumulators,
     lse saved, D = rowsum(dO O) once, dK/dV and dQ in separate kernels with
     no atomics: see "flash attention on tensor cores"); otherwise, or with
     LOMO_CUDA_ATTN=ref in the environment, the fp32 reference kernels: a warp
     per query row with an online softmax forward, and a backward in two
     kernels (dq per query row, dk/dv per key row) with no atomics
     (LOMO_CUDA_ATTN=flash uses flash for fp32 models too). The embedding
     backward uses atomicAdd (its summation order may vary between runs).

   ERRORS: every op records failures with file:line and its name; check()
     (after each tensor's update and each layer, and at the end of a step)
     synchronises the stream, so a kernel that faults fails that lomo_step
     with the names of the ops enqueued since the previous check
     (LOMO_CUDA_SYNC=1 in the environment synchronises after every op and
     names the failing one), then clears the error. A fault that corrupts
     the context (illegal address) is reported as such and stays reported:
     free the models and trainers, lomo_cuda_release(be, 1) resets the
     device, and lomo_cuda_backend(device) starts again. Each backend sets
     its own device before every op, so backends on two devices can share
     a process and a thread.

   TESTED BY tests/test_cuda.cu (kernels and steps against the CPU),
     tests/mutate_cuda.sh (planted faults must fail it), tests/test_cuda_tol.c
     (the 16-bit step bound, on the CPU) and `make gpu-check`; see README.

   SHARDING: with LOMO_NCCL, lomo_nccl_comm / lomo_nccl_comm_from_mpi give a
   communicator for lomo_load_opts.comm (collectives on the backend stream).

   NOT YET RUN ON A GPU: the flash attention kernels and the tiled reductions
   are compiled (sm_80, sm_90) and their algorithm is checked on the CPU by
   tests/test_flash_model.c; test_cuda checks them on a device.
   NOT YET (planned): wgmma (sm_90) and ldmatrix / cp.async pipelining for
   flash attention, fused bf16 activations, overlapping the layer gathers with compute on a
   second stream (the collectives now run in order on the compute stream). */
#ifndef LOMO_CUDA_CUH
#define LOMO_CUDA_CUH

#include "lomo.h"

#ifdef __cplusplus
extern "C" {
#endif
/* The CUDA backend on a device (cudaSetDevice(device)); NULL, with
   lomo_error(), if there is no such device or CUDA/cuBLAS fail to start. */
const lomo_backend *lomo_cuda_backend(int device);
/* Bytes in use / total on the backend's device, as the driver reports them. */
int lomo_cuda_mem_info(const lomo_backend *be, size_t *free_bytes, size_t *total_bytes);
/* Tears the backend down (stream, cuBLAS, its buffers; with reset_device,
   cudaDeviceReset) so that lomo_cuda_backend(device) starts a fresh one: the
   way out after check() reports a lost context. Free every model and trainer
   on it first (after a reset their device pointers are gone). 0 or -1. */
int lomo_cuda_release(const lomo_backend *be, int reset_device);
/* Random weights made on the device (no host copy): matrices uniform with
   standard deviation std, norms 1, biases 0; a function of (seed, tensor
   index, element). For benchmarks of large shapes. 0 or -1. */
int lomo_cuda_init_random(lomo_model *m, uint64_t seed, float std);
#ifdef __cplusplus
}
#endif

#ifdef LOMO_NCCL
/* NCCL communicator for sharding over GPUs (lomo_load_opts.comm): the
   collectives run on the backend's stream; small host values (counts,
   norms, checks) are staged through device memory. Waits poll
   ncclCommGetAsyncError against LOMO_COMM_TIMEOUT seconds (default 600) and
   abort the communicator with a message instead of hanging. */
#include <nccl.h>
#ifdef __cplusplus
extern "C" {
#endif
lomo_comm *lomo_nccl_comm(ncclComm_t comm, const lomo_backend *cuda);   /* the caller's communicator */
#ifdef LOMO_MPI
/* one rank per process: rank and size from MPI, the NCCL unique id broadcast over it */
lomo_comm *lomo_nccl_comm_from_mpi(MPI_Comm mpi, const lomo_backend *cuda);
#endif
void lomo_nccl_comm_free(lomo_comm *c);
#ifdef __cplusplus
}
#endif
#endif

#ifdef LOMO_IMPLEMENTATION
#ifndef LOMO_CUDA__IMPLEMENTED
#define LOMO_CUDA__IMPLEMENTED

#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cublas_v2.h>

#define LOMO_CU__MAX_HD 256      /* head_dim the attention kernels handle (registers per lane: 8) */
#define LOMO_CU__PARTS 1024      /* blocks of the first stage of a reduction */

typedef struct lomo__cu {
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    int err;                     /* an error since the last check(): reported there, then cleared */
    int lost;                    /* a sticky (context-corrupting) error: only lomo_cuda_release helps */
    int sync_each;               /* LOMO_CUDA_SYNC=1: synchronise after every op, naming the one that fails */
    char msg[512];
    const char *ops[8];          /* the last ops enqueued since the last check (ring), for error messages */
    int n_ops;
    void *scratch;               /* trainer-owned: 16-bit casts of activations, Gram matrices */
    int act_dtype;               /* GEMM operand dtype for activation x activation (dW): set with the scratch */
    size_t scratch_bytes;
    double *part;                /* LOMO_CU__PARTS partial sums */
    double *host;                /* pinned: the final sum */
    float *scal;                 /* device scalars for AdaLomo (rmean, denom, lr_t) */
    int attn_mode;               /* LOMO_CUDA_ATTN: 0 unset (flash for 16-bit models), 1 ref (fp32 kernels), 2 flash */
    int cc_major;                /* compute capability: flash attention needs 8 (mma.sync bf16) */
} lomo__cu;

/* ---- errors ----
   Every failure is recorded with file:line and the op (the first one kept);
   check() synchronises the stream, so faults of kernels still in flight are
   caught too, reports through lomo_error() and clears the record, so one
   error does not poison the process. A sticky error (an illegal address, a
   trap) corrupts the CUDA context: check() says so, every later check fails,
   and lomo_cuda_release(be, 1) resets the device so lomo_cuda_backend can
   start afresh (free the models and trainers on it first). */

static void lomo__cu_fail(lomo__cu *c, const char *what, const char *detail, const char *file, int line) {
    if (c->err) return;   /* keep the first */
    c->err = 1;
    snprintf(c->msg, sizeof c->msg, "%s:%d: %s failed: %s", file, line, what, detail);
}
/* the context of an op, on the backend's device (two backends on two devices in one process) */
static lomo__cu *lomo__cu_on(void *ctx) {
    lomo__cu *c = (lomo__cu *)ctx;
    cudaError_t e = cudaSetDevice(c->device);
    if (e != cudaSuccess) lomo__cu_fail(c, "cudaSetDevice", cudaGetErrorString(e), __FILE__, __LINE__);
    return c;
}
static void lomo__cu_note(lomo__cu *c, const char *op) { c->ops[c->n_ops++ & 7] = op; }
static void lomo__cu_launched(lomo__cu *c, const char *op, const char *file, int line) {
    cudaError_t e = cudaGetLastError();
    lomo__cu_note(c, op);
    if (e == cudaSuccess && c->sync_each) e = cudaStreamSynchronize(c->stream);
    if (e != cudaSuccess) lomo__cu_fail(c, op, cudaGetErrorString(e), file, line);
}
#define LOMO__CU(c, call) do { cudaError_t e_ = (call); \
    if (e_ != cudaSuccess) lomo__cu_fail((c), #call, cudaGetErrorString(e_), __FILE__, __LINE__); } while (0)
#define LOMO__CUBLAS(c, call) do { cublasStatus_t s_ = (call); lomo__cu_note((c), #call); \
    if (s_ != CUBLAS_STATUS_SUCCESS) lomo__cu_fail((c), #call, cublasGetStatusString(s_), __FILE__, __LINE__); } while (0)
/* after each kernel launch: launch errors now, and with LOMO_CUDA_SYNC=1 execution errors, named by the op */
#define LOMO__LAUNCHED(c) lomo__cu_launched((c), __func__, __FILE__, __LINE__)

static int lomo__cu_blocks(size_t n, int threads) {
    size_t b = (n + threads - 1) / threads;
    return (int)(b > 65535 * 16 ? 65535 * 16 : (b ? b : 1));
}

/* ---- elements in the storage dtype ---- */

__device__ __forceinline__ float lomo__cu_ld(const void *p, int dt, size_t i) {
    if (dt == LOMO_BF16) return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    if (dt == LOMO_F16) return __half2float(((const __half *)p)[i]);
    return ((const float *)p)[i];
}

/* the same counter-based uniform as the CPU backend's lomo__hash_uniform */
__device__ __forceinline__ float lomo__cu_uniform(uint64_t seed, uint64_t stream, uint64_t i) {
    uint64_t z = seed ^ (stream * 0x9E3779B97F4A7C15ull) ^ (i * 0xD1B54A32D192ED03ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)(z >> 40) * (1.0f / 16777216.0f);
}

__device__ __forceinline__ uint16_t lomo__cu_f16_step(uint16_t h, int up) {
    int neg = h >> 15;
    if ((h & 0x7FFF) == 0) return up ? 0x0001 : 0x8001;
    return (uint16_t)(neg == !up ? h + 1 : h - 1);
}

/* x rounded into the storage dtype: nearest-even, or stochastically (unbiased) */
/* element i of p's data; the rounding hash uses hash_i, its index in the whole tensor */
__device__ __forceinline__ void lomo__cu_st_at(void *p, int dt, size_t i, size_t hash_i, float x, int stochastic,
                                               uint64_t seed, uint64_t stream) {
    if (dt == LOMO_F32) { ((float *)p)[i] = x; return; }
    if (dt == LOMO_BF16) {
        if (!stochastic || x != x) { ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(x); return; }
        uint32_t b = __float_as_uint(x);
        if ((b & 0x7F800000u) != 0x7F800000u) b += (uint32_t)(lomo__cu_uniform(seed, stream, hash_i) * 65536.0f);
        ((uint16_t *)p)[i] = (uint16_t)(b >> 16);
        return;
    }
    __half r = __float2half_rn(x);
    uint16_t rb = __half_as_ushort(r), lo, hi;
    float vr = __half2float(r);
    if (stochastic && vr != x && x == x && (rb & 0x7C00) != 0x7C00) {
        if (vr < x) { lo = rb; hi = lomo__cu_f16_step(rb, 1); } else { hi = rb; lo = lomo__cu_f16_step(rb, 0); }
        float vlo = __half2float(__ushort_as_half(lo)), vhi = __half2float(__ushort_as_half(hi));
        rb = lomo__cu_uniform(seed, stream, hash_i) < (x - vlo) / (vhi - vlo) ? hi : lo;
    }
    ((uint16_t *)p)[i] = rb;
}
#define lomo__cu_st(p, dt, i, x, a) lomo__cu_st_at((p), (dt), (i), (size_t)(a).shard_off + (i), (x), (a).stochastic, (a).seed, (a).stream)

/* ---- reductions ---- */

/* warp and block reductions: one skeleton for sums (float, double) and max */
struct lomo__cu_add_op { template <typename T> __device__ T operator()(T a, T b) const { return a + b; } };
struct lomo__cu_max_op { __device__ float operator()(float a, float b) const { return fmaxf(a, b); } };

template <typename T, typename Op> __device__ __forceinline__ T lomo__cu_warp_reduce(T v, Op op) {
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float lomo__cu_warp_sum(float v) { return lomo__cu_warp_reduce(v, lomo__cu_add_op()); }

/* block of up to 1024 threads (sh: 32 slots); every thread gets the result */
template <typename T, typename Op> __device__ T lomo__cu_block_reduce(T v, T *sh, Op op, T identity) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = lomo__cu_warp_reduce(v, op);
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    v = threadIdx.x < nw ? sh[threadIdx.x] : identity;
    if (w == 0) v = lomo__cu_warp_reduce(v, op);
    if (threadIdx.x == 0) sh[0] = v;
    __syncthreads();
    return sh[0];
}
__device__ float lomo__cu_block_sum(float v, float *sh) { return lomo__cu_block_reduce(v, sh, lomo__cu_add_op(), 0.0f); }
__device__ float lomo__cu_block_max(float v, float *sh) { return lomo__cu_block_reduce(v, sh, lomo__cu_max_op(), -INFINITY); }
__device__ double lomo__cu_block_sum_d(double v, double *sh) { return lomo__cu_block_reduce(v, sh, lomo__cu_add_op(), 0.0); }

/* stage one: fixed blocks, each a grid-stride sum of products in double (a
   sum of squares is a dot with itself); stage two sums the partials in order:
   the same result every run */
__global__ void lomo__cu_k_dot(double *part, const float *a, const float *b, size_t n) {
    __shared__ double sh[32];
    double s = 0.0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        s += (double)a[i] * b[i];
    s = lomo__cu_block_sum_d(s, sh);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}
__global__ void lomo__cu_k_finish(double *out, const double *part, int n) {
    __shared__ double sh[32];
    double s = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += part[i];   /* fixed order per thread */
    s = lomo__cu_block_sum_d(s, sh);
    if (threadIdx.x == 0) *out = s;
}

static double lomo__cu_reduce_to_host(lomo__cu *c) {
    lomo__cu_k_finish<<<1, 1024, 0, c->stream>>>(c->part + LOMO_CU__PARTS, c->part, LOMO_CU__PARTS);
    LOMO__LAUNCHED(c);
    LOMO__CU(c, cudaMemcpyAsync(c->host, c->part + LOMO_CU__PARTS, sizeof(double), cudaMemcpyDeviceToHost, c->stream));
    LOMO__CU(c, cudaStreamSynchronize(c->stream));
    return c->err ? NAN : *c->host;
}

/* ---- memory ---- */

static void *lomo__cu_alloc(void *ctx, size_t n) {
    void *p = NULL;
    lomo__cu_on(ctx);                  /* on this backend's device, whichever is current */
    if (cudaMalloc(&p, n) != cudaSuccess) { (void)cudaGetLastError(); return NULL; }   /* the driver reports it */
    return p;
}
static void lomo__cu_free(void *ctx, void *p) {
    lomo__cu *c = lomo__cu_on(ctx);
    LOMO__CU(c, cudaStreamSynchronize(c->stream));
    LOMO__CU(c, cudaFree(p));
}
static void lomo__cu_upload(void *ctx, void *d, const void *s, size_t n) {
    lomo__cu *c = lomo__cu_on(ctx);   /* synchronous: the host buffer may be reused at once */
    LOMO__CU(c, cudaMemcpyAsync(d, s, n, cudaMemcpyHostToDevice, c->stream));
    LOMO__CU(c, cudaStreamSynchronize(c->stream));
}
static void lomo__cu_download(void *ctx, void *d, const void *s, size_t n) {
    lomo__cu *c = lomo__cu_on(ctx);
    LOMO__CU(c, cudaMemcpyAsync(d, s, n, cudaMemcpyDeviceToHost, c->stream));
    LOMO__CU(c, cudaStreamSynchronize(c->stream));
}
static void lomo__cu_copy(void *ctx, void *d, const void *s, size_t n) {
    lomo__cu *c = lomo__cu_on(ctx);
    LOMO__CU(c, cudaMemcpyAsync(d, s, n, cudaMemcpyDeviceToDevice, c->stream));
}
static void lomo__cu_zero(void *ctx, void *p, size_t n) {
    lomo__cu *c = lomo__cu_on(ctx);
    LOMO__CU(c, cudaMemsetAsync(p, 0, n, c->stream));
}
static int lomo__cu_check(void *ctx) {
    lomo__cu *c = lomo__cu_on(ctx);
    cudaError_t e;
    char ops[256] = "";
    int i, n = c->n_ops < 8 ? c->n_ops : 8;
    if (c->lost) return lomo__fail("cuda backend (device %d): the CUDA context was lost earlier (%s); free the models and "
                                   "trainers on it and call lomo_cuda_release(backend, 1)", c->device, c->msg);
    for (i = 0; i < n; i++) {   /* oldest first */
        const char *op = c->ops[(c->n_ops - n + i) & 7];
        size_t len = strlen(ops);
        snprintf(ops + len, sizeof ops - len, "%s%s", i ? ", " : "", op);
    }
    e = cudaStreamSynchronize(c->stream);   /* faults of kernels still in flight surface here */
    if (e == cudaSuccess) e = cudaGetLastError();
    if (e != cudaSuccess) {
        char what[320];
        (void)cudaGetLastError();
        snprintf(what, sizeof what, "an op since the last check (the last %d enqueued: %s; LOMO_CUDA_SYNC=1 names the "
                 "failing one)", n, n ? ops : "none");
        lomo__cu_fail(c, what, cudaGetErrorString(e), __FILE__, __LINE__);
        if (cudaStreamSynchronize(c->stream) != cudaSuccess || cudaGetLastError() != cudaSuccess) c->lost = 1;
    }
    c->n_ops = 0;
    if (!c->err) return 0;
    c->err = 0;   /* reported: the next op starts clean (unless the context is lost) */
    if (c->lost) return lomo__fail("cuda backend (device %d): %s; the CUDA context is lost: free the models and trainers "
                                   "on it and call lomo_cuda_release(backend, 1)", c->device, c->msg);
    return lomo__fail("cuda backend (device %d): %s", c->device, c->msg);
}

__global__ void lomo__cu_k_add(float *y, const float *x, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) y[i] += x[i];
}
static void lomo__cu_add(void *ctx, float *y, const float *x, size_t n) {
    lomo__cu *c = lomo__cu_on(ctx);
    lomo__cu_k_add<<<lomo__cu_blocks(n, 256), 256, 0, c->stream>>>(y, x, n);
    LOMO__LAUNCHED(c);
}

/* ---- embedding ---- */

__global__ void lomo__cu_k_embed_fwd(float *x, const int32_t *tok, const void *w, int dt, int N, int C) {
    size_t n = (size_t)N * C;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        x[i] = lomo__cu_ld(w, dt, (size_t)tok[i / C] * C + i % C);
}
__global__ void lomo__cu_k_embed_bwd(float *dw, const float *dx, const int32_t *tok, int N, int C) {
    size_t n = (size_t)N * C;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        atomicAdd(dw + (size_t)tok[i / C] * C + i % C, dx[i]);
}
static void lomo__cu_embed_fwd(void *ctx, float *x, const int32_t *tok, const lomo_tensor *w, int N, int C) {
    lomo__cu *c = lomo__cu_on(ctx);
    lomo__cu_k_embed_fwd<<<lomo__cu_blocks((size_t)N * C, 256), 256, 0, c->stream>>>(x, tok, w->data, w->dtype, N, C);
    LOMO__LAUNCHED(c);
}
static void lomo__cu_embed_bwd(void *ctx, float *dw, const float *dx, const int32_t *tok, int N, int C) {
    lomo__cu *c = lomo__cu_on(ctx);
    lomo__cu_k_embed_bwd<<<lomo__cu_blocks((size_t)N * C, 256), 256, 0, c->stream>>>(dw, dx, tok, N, C);
    LOMO__LAUNCHED(c);
}

/* ---- tiled column reductions (bias grads, the RMSNorm weight grad, AdaLomo's column
   sums): out[c] = sum_r f(r, c) over rows r of a (rows, cols) row-major array. A block per
   32 columns (a warp reads 32 consecutive floats of a row: coalesced) with 16 row lanes:
   lane y sums rows y, y + 16, ... in order, the 16 lane sums go to shared memory and lane
   0 adds them in lane order. Each column is one fixed-order sum (no atomics: the same bits
   every run), and 16x the threads of a thread per column over all rows. ---- */
#define LOMO_CU__CT_X 32
#define LOMO_CU__CT_Y 16
template <typename Acc, typename F> __device__ __forceinline__ int lomo__cu_colsum_tile(Acc *sh, F f, int rows, int cols,
                                                                                       Acc *out) {
    int x = threadIdx.x, y = threadIdx.y, col = blockIdx.x * LOMO_CU__CT_X + x;
    Acc s = 0;
    if (col < cols)
        for (int r = y; r < rows; r += LOMO_CU__CT_Y) s += f(r, col);
    sh[y * (LOMO_CU__CT_X + 1) + x] = s;
    __syncthreads();
    if (y != 0 || col >= cols) return 0;
    for (int i = 1; i < LOMO_CU__CT_Y; i++) s += sh[i * (LOMO_CU__CT_X + 1) + x];
    *out = s;
    return 1;
}
static dim3 lomo__cu_colsum_grid(int cols) { return dim3((unsigned)((cols + LOMO_CU__CT_X - 1) / LOMO_CU__CT_X)); }
static dim3 lomo__cu_colsum_block(void) { return dim3(LOMO_CU__CT_X, LOMO_CU__CT_Y); }

/* ---- RMSNorm: a block per row ---- */

__global__ void lomo__cu_k_rms_fwd(float *y, float *rstd, const float *x, const void *w, int dt, int C, float eps) {
    __shared__ float sh[32];
    const float *xr = x + (size_t)blockIdx.x * C;
    float *yr = y + (size_t)blockIdx.x * C, ss = 0.0f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) ss += xr[i] * xr[i];
    ss = lomo__cu_block_sum(ss, sh);
    float r = rsqrtf(ss / C + eps);
    if (threadIdx.x == 0) rstd[blockIdx.x] = r;
    for (int i = threadIdx.x; i < C; i += blockDim.x) yr[i] = lomo__cu_ld(w, dt, i) * (xr[i] * r);
}
__global__ void lomo__cu_k_rms_bwd_x(float *dx, const float *dy, const float *x, const void *w, int dt,
                                     const float *rstd, int C) {
    __shared__ float sh[32];
    size_t o = (size_t)blockIdx.x * C;
    float r = rstd[blockIdx.x], dot = 0.0f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) dot += lomo__cu_ld(w, dt, i) * dy[o + i] * x[o + i];
    dot = lomo__cu_block_sum(dot, sh);
    float k = dot * r * r * r / C;
    for (int i = threadIdx.x; i < C; i += blockDim.x) dx[o + i] += r * lomo__cu_ld(w, dt, i) * dy[o + i] - k * x[o + i];
}
/* dw = column sums of dy x rstd: tiled (lomo__cu_colsum_tile) */
__global__ void lomo__cu_k_rms_bwd_w(float *dw, const float *dy, const float *x, const float *rstd, int N, int C) {
    __shared__ float sh[LOMO_CU__CT_Y * (LOMO_CU__CT_X + 1)];
    float s;
    auto f = [=](int n, int i) { return dy[(size_t)n * C + i] * x[(size_t)n * C + i] * rstd[n]; };
    if (lomo__cu_colsum_tile(sh, f, N, C, &s)) dw[blockIdx.x * LOMO_CU__CT_X + threadIdx.x] = s;
}
static void lomo__cu_rmsnorm_fwd(void *ctx, float *y, float *rstd, const float *x, const lomo_tensor *w, int N, int C,
                                 float eps) {
    lomo__cu *c = lomo__cu_on(ctx);
    lomo__cu_k_rms_fwd<<<N, 256, 0, c->stream>>>(y, rstd, x, w->data, w->dtype, C, eps);
    LOMO__LAUNCHED(c);
}
static void lomo__cu_rmsnorm_bwd(void *ctx, float *dx, float *dw, const float *dy, const float *x, const lomo_tensor *w,
                                 const float *rstd, int N, int C) {
    lomo__cu *c = lomo__cu_on(ctx);
    lomo__cu_k_rms_bwd_x<<<N, 256, 0, c->stream>>>(dx, dy, x, w->data, w->dtype, rstd, C);
    LOMO__LAUNCHED(c);
    lomo__cu_k_rms_bwd_w<<<lomo__cu_colsum_grid(C), lomo__cu_colsum_block(), 0, c->stream>>>(dw, dy, x, rstd, N, C);
    LOMO__LAUNCHED(c);
}

/* ---- matmuls through cuBLAS (row-major operands, column-major cuBLAS) ---- */

__global__ void lomo__cu_k_cast(void *out, int dt, const float *x, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        if (dt == LOMO_BF16) ((__nv_bfloat16 *)out)[i] = __float2bfloat16_rn(x[i]);
        else ((__half *)out)[i] = __float2half_rn(x[i]);
    }
}
/* an fp32 activation as an operand of a dt GEMM: itself, or cast into scratch */
static const void *lomo__cu_operand(lomo__cu *c, const float *x, size_t n, int dt, size_t *used) {
    void *dst;
    if (dt == LOMO_F32) return x;
    if (*used + 2 * n > c->scratch_bytes) {
        lomo__cu_fail(c, "16-bit operand", "scratch too small (trainer not set up for this size)", __FILE__, __LINE__);
        return NULL;
    }
    dst = (char *)c->scratch + *used;
    *used += 2 * n;
    lomo__cu_k_cast<<<lomo__cu_blocks(n, 256), 256, 0, c->stream>>>(dst, dt, x, n);
    LOMO__LAUNCHED(c);
    return dst;
}
static cudaDataType lomo__cu_type(int dt) { return dt == LOMO_BF16 ? CUDA_R_16BF : dt == LOMO_F16 ? CUDA_R_16F : CUDA_R_32F; }

static void lomo__cu_gemm(lomo__cu *c, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                          const void *A, int lda, const void *B, int ldb, int dt, float *C, int ldc, int accumulate) {
    float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    if (!A || !B) return;
    LOMO__CUBLAS(c, cublasGemmEx(c->blas, ta, tb, m, n, k, &one, A, lomo__cu_type(dt), lda, B, lomo__cu_type(dt), ldb,
                                 &beta, C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

__global__ void lomo__cu_k_bias(float *y, const void *b, int dt, int N, int O) {
    size_t n = (size_t)N * O;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        y[i] += lomo__cu_ld(b, dt, i % O);
}
/* y (N,O) (+)= x (N,K) W^T + b: column-major y^T = W x^T */
static void lomo__cu_matmul_fwd(void *ctx, float *y, const float *x, const lomo_tensor *w, const lomo_tensor *b, int N,
                                int K, int O, int accumulate) {
    lomo__cu *c = lomo__cu_on(ctx);
    size_t used = 0;
    const void *xo = lomo__cu_operand(c, x, (size_t)N * K, w->dtype, &used);
    lomo__cu_gemm(c, CUBLAS_OP_T, CUBLAS_OP_N, O, N, K, w->data, K, xo, K, w->dtype, y, O, accumulate);
    if (b) {
        lomo__cu_k_bias<<<lomo__cu_blocks((size_t)N * O, 256), 256, 0, c->stream>>>(y, b->data, b->dtype, N, O);
        LOMO__LAUNCHED(c);
    }
}
/* dx (N,K) (+)= dy (N,O) W: column-major dx^T = W^T dy^T */
static void lomo__cu_matmul_bwd_x(void *ctx, float *dx, const float *dy, const lomo_tensor *w, int N, int K, int O,
                                  int accumulate) {
    lomo__cu *c = lomo__cu_on(ctx);
    size_t used = 0;
    const void *d = lomo__cu_operand(c, dy, (size_t)N * O, w->dtype, &used);
    lomo__cu_gemm(c, CUBLAS_OP_N, CUBLAS_OP_N, K, N, O, w->data, K, d, O, w->dtype, dx, K, accumulate);
}
/* dw (O,K) (+)= dy^T x, fp32 into the gradient buffer: column-major dw^T = x^T dy.
   Both operands are activations; for a 16-bit model they are cast to its
   storage dtype (tensor cores) and accumulated in fp32. */
static void lomo__cu_matmul_bwd_w(void *ctx, float *dw, const float *dy, const float *x, int N, int K, int O,
                                  int accumulate) {
    lomo__cu *c = lomo__cu_on(ctx);
    size_t used = 0;
    const void *xo = lomo__cu_operand(c, x, (size_t)N * K, c->act_dtype, &used);
    const void *dyo = lomo__cu_operand(c, dy, (size_t)N * O, c->act_dtype, &used);
    lomo__cu_gemm(c, CUBLAS_OP_N, CUBLAS_OP_T, K, O, N, xo, K, dyo, O, c->act_dtype, dw, K, accumulate);
}
/* db (O) = column sums of dy (N,O) */
__global__ void lomo__cu_k_colsum(float *db, const float *dy, int N, int O) {   /* tiled: lomo__cu_colsum_tile */
    __shared__ float sh[LOMO_CU__CT_Y * (LOMO_CU__CT_X + 1)];
    float s;
    auto f = [=](int n, int o) { return dy[(size_t)n * O + o]; };
    if (lomo__cu_colsum_tile(sh, f, N, O, &s)) db[blockIdx.x * LOMO_CU__CT_X + threadIdx.x] = s;
}
static void lomo__cu_bias_bwd(void *ctx, float *db, const float *dy, int N, int O) {
    lomo__cu *c = lomo__cu_on(ctx);
    lomo__cu_k_colsum<<<lomo__cu_colsum_grid(O), lomo__cu_colsum_block(), 0, c->stream>>>(db, dy, N, O);
    LOMO__LAUNCHED(c);
}

/* ---- RoPE: a thread per rotated pair ---- */

__global__ void lomo__cu_k_rope(float *x, const float *inv_freq, int B, int T, int nh, int hd, int inverse) {
    int half = hd / 2;
    size_t n = (size_t)B * T * nh * half;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        int d = (int)(i % half);
        size_t row = i / half;                       /* (b, t, h) */
        int t = (int)((row / nh) % T);
        float s, c, ang = (float)t * inv_freq[d];
        sincosf(ang, &s, &c);
        if (inverse) s = -s;
        float *v = x + row * hd;
        float a = v[d], b2 = v[d + half];
        v[d] = a * c - b2 * s;
        v[d + half] = b2 * c + a * s;
    }
}
static void lomo__cu_rope(void *ctx, float *x, const float *inv_freq, int B, int T, int nh, int hd, int inverse) {
    lomo__cu *c = lomo__cu_on(ctx);
    lomo__cu_k_rope<<<lomo__cu_blocks((size_t)B * T * nh * (hd / 2), 256), 256, 0, c->stream>>>(x, inv_freq, B, T, nh, hd,
                                                                                                inverse);
    LOMO__LAUNCHED(c);
}

/* ---- attention: a warp per row, online softmax, nothing T x T in memory ---- */

#define LOMO_CU__PER_LANE (LOMO_CU__MAX_HD / 32)

__device__ __forceinline__ float lomo__cu_wdot(const float *a, const float *b, int hd, int lane) {
    float s = 0.0f;
    for (int d = lane; d < hd; d += 32) s += a[d] * b[d];
    return lomo__cu_warp_sum(s);
}

/* the plain op (scale 1/sqrt(hd), no cap, no window) is the "ex" one: lomo__cu_attn_fwd/bwd
   after lomo__cu_attn_ex_fwd/bwd below, over the same kernels (fp32 reference or flash) */

/* ---- SwiGLU ---- */

__global__ void lomo__cu_k_swiglu_fwd(float *h, const float *g, const float *u, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        h[i] = g[i] / (1.0f + __expf(-g[i])) * u[i];
}
__global__ void lomo__cu_k_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float s = 1.0f / (1.0f + __expf(-g[i])), d = dh[i];
        du[i] = d * g[i] * s;
        dg[i] = d * u[i] * s * (1.0f + g[i] * (1.0f - s));
    }
}
static void lomo__cu_swiglu_fwd(void *ctx, float *h, const float *g, const float *u, size_t n) {
    lomo__cu *c = lomo__cu_on(ctx);
    lomo__cu_k_swiglu_fwd<<<lomo__cu_blocks(n, 256), 256, 0, c->stream>>>(h, g, u, n);
    LOMO__LAUNCHED(c);
}
static void lomo__cu_swiglu_bwd(void *ctx, float *dg, float *du, const float *dh, const float *g, const float *u,
                                size_t n) {
    lomo__cu *c = lomo__cu_on(ctx);
    lomo__cu_k_swiglu_bwd<<<lomo__cu_blocks(n, 256), 256, 0, c->stream>>>(dg, du, dh, g, u, n);
    LOMO__LAUNCHED(c);
}

/* ---- cross-entropy fused with its backward: a block per row, in place ---- */

__global__ void lomo__cu_k_xent(float *losses, float *dlogits, const float *logits, const int32_t *targets, int V,
                                float dscale) {
    __shared__ float sh[32];
    size_t o = (size_t)blockIdx.x * V;
    int tgt = targets[blockIdx.x];
    if (tgt < 0) {
        if (threadIdx.x == 0) losses[blockIdx.x] = 0.0f;
        if (dlogits) for (int i = threadIdx.x; i < V; i += blockDim.x) dlogits[o + i] = 0.0f;
        return;
    }
    float mx = -INFINITY, sum = 0.0f;
    for (int i = threadIdx.x; i < V; i += blockDim.x) mx = fmaxf(mx, logits[o + i]);
    mx = lomo__cu_block_max(mx, sh);
    for (int i = threadIdx.x; i < V; i += blockDim.x) sum += __expf(logits[o + i] - mx);
    sum = lomo__cu_block_sum(sum, sh);
    float lt = logits[o + tgt];
    __syncthreads();                               /* every read of logits before any in-place write */
    if (threadIdx.x == 0) losses[blockIdx.x] = __logf(sum) + mx - lt;
    if (dlogits) {
        float inv = 1.0f / sum;
        for (int i = threadIdx.x; i < V; i += blockDim.x)
            dlogits[o + i] = __expf(logits[o + i] - mx) * inv * dscale - (i == tgt ? dscale : 0.0f);
    }
}
static void lomo__cu_cross_entropy(void *ctx, float *losses, float *dlogits, const float *logits,
                                   const int32_t *targets, int N, int V, float dscale) {
    lomo__cu *c = lomo__cu_on(ctx);
    lomo__cu_k_xent<<<N, 512, 0, c->stream>>>(losses, dlogits, logits, targets, V, dscale);
    LOMO__LAUNCHED(c);
}

/* ---- 0.5: Qwen3 / Gemma ops ---- */

/* RMSNorm with the gain (off + w): Gemma's norms have off = 1 */
__global__ void lomo__cu_k_rmsx_fwd(float *y, float *rstd, const float *x, const void *w, int dt, int C, float eps,
                                    float off) {
    __shared__ float sh[32];
    const float *xr = x + (size_t)blockIdx.x * C;
    float *yr = y + (size_t)blockIdx.x * C, ss = 0.0f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) ss += xr[i] * xr[i];
    ss = lomo__cu_block_sum(ss, sh);
    float r = rsqrtf(ss / C + eps);
    if (threadIdx.x == 0) rstd[blockIdx.x] = r;
    for (int i = threadIdx.x; i < C; i += blockDim.x) yr[i] = (xr[i] * r) * (off + lomo__cu_ld(w, dt, i));
}
__global__ void lomo__cu_k_rmsx_bwd_x(float *dx, const float *dy, const float *x, const void *w, int dt,
                                      const float *rstd, int C, float off) {
    __shared__ float sh[32];
    size_t o = (size_t)blockIdx.x * C;
    float r = rstd[blockIdx.x], dot = 0.0f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) dot += (off + lomo__cu_ld(w, dt, i)) * dy[o + i] * x[o + i];
    dot = lomo__cu_block_sum(dot, sh);
    float k = dot * r * r * r / C;
    for (int i = threadIdx.x; i < C; i += blockDim.x)
        dx[o + i] += r * (off + lomo__cu_ld(w, dt, i)) * dy[o + i] - k * x[o + i];
}
static void lomo__cu_rmsnorm_ex_fwd(void *ctx, float *y, float *rstd, const float *x, const lomo_tensor *w, int N,
                                    int C, float eps, float off) {
    lomo__cu *c = lomo__cu_on(ctx);
    lomo__cu_k_rmsx_fwd<<<N, 256, 0, c->stream>>>(y, rstd, x, w->data, w->dtype, C, eps, off);
    LOMO__LAUNCHED(c);
}
static void lomo__cu_rmsnorm_ex_bwd(void *ctx, float *dx, float *dw, const float *dy, const float *x,
                                    const lomo_tensor *w, const float *rstd, int N, int C, float off) {
    lomo__cu *c = lomo__cu_on(ctx);
    lomo__cu_k_rmsx_bwd_x<<<N, 256, 0, c->stream>>>(dx, dy, x, w->data, w->dtype, rstd, C, off);
    LOMO__LAUNCHED(c);
    lomo__cu_k_rms_bwd_w<<<lomo__cu_colsum_grid(C), lomo__cu_colsum_block(), 0, c->stream>>>(dw, dy, x, rstd, N, C);   /* same as without offset */
    LOMO__LAUNCHED(c);
}

__global__ void lomo__cu_k_scale(float *x, float s, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) x[i] *= s;
}
static void lomo__cu_scale(void *ctx, float *x, float s, size_t n) {
    lomo__cu *c = lomo__cu_on(ctx);
    lomo__cu_k_scale<<<lomo__cu_blocks(n, 256), 256, 0, c->stream>>>(x, s, n);
    LOMO__LAUNCHED(c);
}

/* GeGLU: gelu_tanh(g) * u (tanhf, not a fast approximation: it must agree with PyTorch) */
__device__ __forceinline__ float lomo__cu_gelu(float x) {
    return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}
__device__ __forceinline__ float lomo__cu_gelu_grad(float x) {
    float th = tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x));
    return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * 0.7978845608028654f * (1.0f + 3.0f * 0.044715f * x * x);
}
__global__ void lomo__cu_k_geglu_fwd(float *h, const float *g, const float *u, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        h[i] = lomo__cu_gelu(g[i]) * u[i];
}
__global__ void lomo__cu_k_geglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float d = dh[i], x = g[i];
        du[i] = d * lomo__cu_gelu(x);
        dg[i] = d * u[i] * lomo__cu_gelu_grad(x);
    }
}
static void lomo__cu_geglu_fwd(void *ctx, float *h, const float *g, const float *u, size_t n) {
    lomo__cu *c = lomo__cu_on(ctx);
    lomo__cu_k_geglu_fwd<<<lomo__cu_blocks(n, 256), 256, 0, c->stream>>>(h, g, u, n);
    LOMO__LAUNCHED(c);
}
static void lomo__cu_geglu_bwd(void *ctx, float *dg, float *du, const float *dh, const float *g, const float *u,
                               size_t n) {
    lomo__cu *c = lomo__cu_on(ctx);
    lomo__cu_k_geglu_bwd<<<lomo__cu_blocks(n, 256), 256, 0, c->stream>>>(dg, du, dh, g, u, n);
    LOMO__LAUNCHED(c);
}

/* attention with a score scale, soft-capping (cap > 0) and a sliding window
   (window > 0: query t sees keys t - window < j <= t); same layout as above */
__device__ __forceinline__ float lomo__cu_cap(float s, float cap) { return cap > 0.0f ? cap * tanhf(s / cap) : s; }
__global__ void lomo__cu_k_attnx_fwd(float *out, float *lse, const float *q, const float *k, const float *v, int B,
                                     int T, int nh, int nkv, int hd, float scale, float cap, int window) {
    int warp = (int)((blockIdx.x * (size_t)blockDim.x + threadIdx.x) >> 5), lane = threadIdx.x & 31;
    if (warp >= B * T * nh) return;
    int h = warp % nh, t = (warp / nh) % T, b = warp / (nh * T), g = h / (nh / nkv);
    int j0 = window > 0 && t - window + 1 > 0 ? t - window + 1 : 0;
    size_t row = (size_t)(b * T + t) * nh + h;
    const float *qt = q + row * hd;
    float acc[LOMO_CU__PER_LANE], mx = -INFINITY, l = 0.0f;
    for (int i = 0; i < LOMO_CU__PER_LANE; i++) acc[i] = 0.0f;
    for (int j = j0; j <= t; j++) {
        size_t kr = ((size_t)(b * T + j) * nkv + g) * hd;
        float s = lomo__cu_cap(lomo__cu_wdot(qt, k + kr, hd, lane) * scale, cap);
        float m2 = fmaxf(mx, s), corr = __expf(mx - m2), p = __expf(s - m2);
        l = l * corr + p;
        for (int i = 0; i < LOMO_CU__PER_LANE; i++) {
            int d = lane + 32 * i;
            if (d < hd) acc[i] = acc[i] * corr + p * v[kr + d];
        }
        mx = m2;
    }
    for (int i = 0; i < LOMO_CU__PER_LANE; i++) {
        int d = lane + 32 * i;
        if (d < hd) out[row * hd + d] = acc[i] / l;
    }
    if (lane == 0) lse[row] = mx + __logf(l);
}
__global__ void lomo__cu_k_attnx_dq(float *dq, const float *dout, const float *q, const float *k, const float *v,
                                    const float *out, const float *lse, int B, int T, int nh, int nkv, int hd,
                                    float scale, float cap, int window) {
    int warp = (int)((blockIdx.x * (size_t)blockDim.x + threadIdx.x) >> 5), lane = threadIdx.x & 31;
    if (warp >= B * T * nh) return;
    int h = warp % nh, t = (warp / nh) % T, b = warp / (nh * T), g = h / (nh / nkv);
    int j0 = window > 0 && t - window + 1 > 0 ? t - window + 1 : 0;
    size_t row = (size_t)(b * T + t) * nh + h;
    const float *qt = q + row * hd, *dot = dout + row * hd;
    float D = lomo__cu_wdot(dot, out + row * hd, hd, lane), L = lse[row], acc[LOMO_CU__PER_LANE];
    for (int i = 0; i < LOMO_CU__PER_LANE; i++) acc[i] = 0.0f;
    for (int j = j0; j <= t; j++) {
        size_t kr = ((size_t)(b * T + j) * nkv + g) * hd;
        float c = lomo__cu_cap(lomo__cu_wdot(qt, k + kr, hd, lane) * scale, cap), p = __expf(c - L);
        float ds = p * (lomo__cu_wdot(dot, v + kr, hd, lane) - D) * scale;
        if (cap > 0.0f) ds *= 1.0f - (c / cap) * (c / cap);
        for (int i = 0; i < LOMO_CU__PER_LANE; i++) {
            int d = lane + 32 * i;
            if (d < hd) acc[i] += ds * k[kr + d];
        }
    }
    for (int i = 0; i < LOMO_CU__PER_LANE; i++) {
        int d = lane + 32 * i;
        if (d < hd) dq[row * hd + d] = acc[i];
    }
}
__global__ void lomo__cu_k_attnx_dkv(float *dk, float *dv, const float *dout, const float *q, const float *k,
                                     const float *v, const float *out, const float *lse, int B, int T, int nh, int nkv,
                                     int hd, float scale, float cap, int window) {
    int warp = (int)((blockIdx.x * (size_t)blockDim.x + threadIdx.x) >> 5), lane = threadIdx.x & 31;
    if (warp >= B * T * nkv) return;
    int g = warp % nkv, j = (warp / nkv) % T, b = warp / (nkv * T), rep = nh / nkv;
    int t1 = window > 0 && j + window < T ? j + window : T;   /* queries j <= t < t1 see key j */
    size_t kr = ((size_t)(b * T + j) * nkv + g) * hd;
    float ak[LOMO_CU__PER_LANE], av[LOMO_CU__PER_LANE];
    for (int i = 0; i < LOMO_CU__PER_LANE; i++) ak[i] = av[i] = 0.0f;
    for (int h = g * rep; h < (g + 1) * rep; h++)
        for (int t = j; t < t1; t++) {
            size_t row = (size_t)(b * T + t) * nh + h;
            const float *qt = q + row * hd, *dot = dout + row * hd;
            float D = lomo__cu_wdot(dot, out + row * hd, hd, lane);
            float c = lomo__cu_cap(lomo__cu_wdot(qt, k + kr, hd, lane) * scale, cap), p = __expf(c - lse[row]);
            float ds = p * (lomo__cu_wdot(dot, v + kr, hd, lane) - D) * scale;
            if (cap > 0.0f) ds *= 1.0f - (c / cap) * (c / cap);
            for (int i = 0; i < LOMO_CU__PER_LANE; i++) {
                int d = lane + 32 * i;
                if (d < hd) { ak[i] += ds * qt[d]; av[i] += p * dot[d]; }
            }
        }
    for (int i = 0; i < LOMO_CU__PER_LANE; i++) {
        int d = lane + 32 * i;
        if (d < hd) { dk[kr + d] = ak[i]; dv[kr + d] = av[i]; }
    }
}
/* ---- flash attention on tensor cores (sm_80+: mma.sync m16n8k16, bf16 operands, fp32 accumulate) ----
   Serves attn_fwd/attn_bwd and attn_ex_fwd/attn_ex_bwd (the plain op is the ex one with scale
   1/sqrt(hd), no cap, no window) at head_dim 64, 80, 96 and 128; other head_dims, devices
   before sm_80 and LOMO_CUDA_ATTN=ref use the fp32 kernels above (the reference). Layout as
   there: q, out (B, T, nh, hd), k, v (B, T, nkv, hd), GQA by head mapping g = h / (nh / nkv),
   nothing copied. Operands are rounded to bf16 once, when a tile is staged into shared
   memory (q, k, v, dout) and when P or dS become an mma operand; scores, softmax, lse, D and
   every accumulator are fp32.
     forward   a block per (64 queries, b, h), a warp per 16 of them; key tiles of 32 in
               order, online softmax (running max m, sum l, O rescaled by exp(m_old - m_new));
               writes O / l and lse = m + log l.
     D         D = rowsum(dout * out), once per query row, its own kernel (lomo__cu_k_fa_d).
     dK, dV    a block per (64 keys, b, kv group), a warp per 16 keys; loops over the group's
               heads in order, and for each over the query tiles of 16 that can see the keys,
               in order: S^T = K Q^T, P^T = exp(S^T - lse), dP^T = V dO^T,
               dS^T = P^T (dP^T - D) scale (1 - tanh^2 with a cap), dV += P^T dO, dK += dS^T Q.
     dQ        a block per (64 queries, b, h), a warp per 16; key tiles of 16 in order:
               dQ += dS K with S, P, dS recomputed the same way.
   Deterministic: every output element is written by one warp of one block, summed in a
   fixed order (no atomics), so two runs give identical bits. The CPU model of exactly
   this tiling, loop by loop, is tests/flash_model.h (tested by tests/test_flash_model.c
   against the CPU backend); the fragment mapping is tested by test_cuda's one-tile mma. */

#define LOMO_CU__FA_FWD_BR 64   /* queries per forward / dQ block (4 warps x 16) */
#define LOMO_CU__FA_FWD_BC 32   /* keys per forward tile */
#define LOMO_CU__FA_DKV_BC 64   /* keys per dK/dV block (4 warps x 16) */
#define LOMO_CU__FA_DKV_BR 16   /* queries per dK/dV tile */
#define LOMO_CU__FA_DQ_BC 16    /* keys per dQ tile */
#define LOMO_CU__FA_PAD 8       /* bf16 of padding per shared row (bank spread; keeps rows 16-byte aligned) */

/* Fragments of mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32, from the PTX ISA,
   "Warp Level Matrix Multiply-Accumulate Instructions" > "Matrix Fragments for mma.m16n8k16
   with floating point type" (section 9.7.14.5.8 in PTX ISA 8.x). With groupID = lane >> 2
   and tig = lane % 4, and two bf16 per .b32 register, the lower-indexed element in the
   lower 16 bits:
     A (16 x 16, row-major): reg 0 (groupID,   2tig..2tig+1)   reg 1 (groupID+8, 2tig..)
                             reg 2 (groupID,   2tig+8..+9)     reg 3 (groupID+8, 2tig+8..)
     B (16 x 8, "col": element (k, n)): reg 0 (k = 2tig..2tig+1, n = groupID)
                                        reg 1 (k = 2tig+8..+9,  n = groupID)
     C, D (16 x 8 fp32): c0, c1 (groupID, 2tig..2tig+1), c2, c3 (groupID+8, 2tig..2tig+1).
   So the accumulators of two adjacent 16 x 8 tiles (columns 0-7 and 8-15) hold exactly the
   elements of one 16 x 16 A fragment (lomo__cu_frag_c2a), the step that feeds P and dS to
   the next product without shared memory. Shared tiles are bf16, row-major, ld elements a row
   (ld even, so a pair at an even column is one aligned 32-bit word). */
__device__ __forceinline__ uint32_t lomo__cu_pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);   /* .x (lo) in the low half */
    uint32_t r;
    memcpy(&r, &v, 4);
    return r;
}
__device__ __forceinline__ uint32_t lomo__cu_pair2(const __nv_bfloat16 *p) {   /* p[0] low, p[1] high; p 4-byte aligned */
    return *reinterpret_cast<const uint32_t *>(p);
}
__device__ __forceinline__ uint32_t lomo__cu_pack2(__nv_bfloat16 lo, __nv_bfloat16 hi) {
    return (uint32_t)__bfloat16_as_ushort(lo) | ((uint32_t)__bfloat16_as_ushort(hi) << 16);
}
/* A = s[r0 .. r0+15][c0 .. c0+15] */
__device__ __forceinline__ void lomo__cu_frag_a(uint32_t a[4], const __nv_bfloat16 *s, int ld, int r0, int c0) {
    int gq = (threadIdx.x & 31) >> 2, tq = threadIdx.x & 3;
    const __nv_bfloat16 *p = s + (size_t)(r0 + gq) * ld + c0 + 2 * tq;
    a[0] = lomo__cu_pair2(p);
    a[1] = lomo__cu_pair2(p + 8 * ld);
    a[2] = lomo__cu_pair2(p + 8);
    a[3] = lomo__cu_pair2(p + 8 * ld + 8);
}
/* B (k, n) = s[n0 + n][k0 + k]: shared holds B transposed (K[key][d] for S = Q K^T) */
__device__ __forceinline__ void lomo__cu_frag_bt(uint32_t b[2], const __nv_bfloat16 *s, int ld, int n0, int k0) {
    int gq = (threadIdx.x & 31) >> 2, tq = threadIdx.x & 3;
    const __nv_bfloat16 *p = s + (size_t)(n0 + gq) * ld + k0 + 2 * tq;
    b[0] = lomo__cu_pair2(p);
    b[1] = lomo__cu_pair2(p + 8);
}
/* B (k, n) = s[k0 + k][n0 + n]: shared holds B as is (V[key][d] for O = P V) */
__device__ __forceinline__ void lomo__cu_frag_b(uint32_t b[2], const __nv_bfloat16 *s, int ld, int k0, int n0) {
    int gq = (threadIdx.x & 31) >> 2, tq = threadIdx.x & 3;
    const __nv_bfloat16 *p = s + (size_t)(k0 + 2 * tq) * ld + n0 + gq;
    b[0] = lomo__cu_pack2(p[0], p[ld]);
    b[1] = lomo__cu_pack2(p[8 * ld], p[9 * ld]);
}
/* the A fragment (16 x 16, bf16) of two accumulator tiles: c0 columns 0-7, c1 columns 8-15 */
__device__ __forceinline__ void lomo__cu_frag_c2a(uint32_t a[4], const float c0[4], const float c1[4]) {
    a[0] = lomo__cu_pack_bf16(c0[0], c0[1]);
    a[1] = lomo__cu_pack_bf16(c0[2], c0[3]);
    a[2] = lomo__cu_pack_bf16(c1[0], c1[1]);
    a[3] = lomo__cu_pack_bf16(c1[2], c1[3]);
}
/* d += a b (16 x 8 x 16) */
__device__ __forceinline__ void lomo__cu_mma(float d[4], const uint32_t a[4], const uint32_t b[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
    (void)d; (void)a; (void)b;
    __trap();   /* never launched there: lomo__cu_flash_ok asks for compute capability 8.0 */
#endif
}

/* rows t0 .. t0+R-1 of head h of x (B, T, nheads, HD), fp32, into s (R x ld, bf16); zeros past T */
template <int HD, int R> __device__ __forceinline__ void lomo__cu_fa_stage(__nv_bfloat16 *s, const float *x, int b,
                                                                          int t0, int T, int nheads, int h) {
    for (int i = threadIdx.x; i < R * HD; i += blockDim.x) {
        int r = i / HD, d = i - r * HD, t = t0 + r;
        float v = t < T ? x[((size_t)((size_t)b * T + t) * nheads + h) * HD + d] : 0.0f;
        s[r * (HD + LOMO_CU__FA_PAD) + d] = __float2bfloat16_rn(v);
    }
}
/* the score of query t and key j from the raw product: scaled, capped, -inf when masked
   (causal, past T, outside the window t - window < j <= t) */
__device__ __forceinline__ float lomo__cu_fa_score(float qk, int t, int j, int T, float scale, float cap, int window) {
    if (j > t || j >= T || t >= T || (window > 0 && j <= t - window)) return -INFINITY;
    float x = qk * scale;
    return cap > 0.0f ? cap * tanhf(x / cap) : x;
}
/* the dS factor of a score c (capped) once P is known: p (dp - D) scale (1 - (c / cap)^2) */
__device__ __forceinline__ float lomo__cu_fa_ds(float p, float dp, float D, float c, float scale, float cap) {
    float ds = p * (dp - D) * scale;
    if (cap > 0.0f) ds *= 1.0f - (c / cap) * (c / cap);
    return ds;
}

/* forward: grid (ceil(T / 64), B * nh), 128 threads. Model: lomo_fm_fwd in tests/flash_model.h */
template <int HD> __global__ void __launch_bounds__(128)
lomo__cu_k_fa_fwd(float *out, float *lse, const float *q, const float *k, const float *v, int T, int nh, int nkv,
                  float scale, float cap, int window) {
    const int LD = HD + LOMO_CU__FA_PAD, BR = LOMO_CU__FA_FWD_BR, BC = LOMO_CU__FA_FWD_BC;
    __shared__ __align__(16) __nv_bfloat16 sq[BR * LD], sk[BC * LD], sv[BC * LD];
    int b = blockIdx.y / nh, h = blockIdx.y % nh, g = h / (nh / nkv), t0 = blockIdx.x * BR;
    int w = threadIdx.x >> 5, gq = (threadIdx.x & 31) >> 2, tq = threadIdx.x & 3;
    lomo__cu_fa_stage<HD, BR>(sq, q, b, t0, T, nh, h);
    float o[HD / 8][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    #pragma unroll
    for (int n = 0; n < HD / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    int jbeg = window > 0 && t0 - window + 1 > 0 ? t0 - window + 1 : 0, jend = t0 + BR < T ? t0 + BR : T;
    for (int j0 = jbeg; j0 < jend; j0 += BC) {
        __syncthreads();                                  /* the previous tile is consumed */
        lomo__cu_fa_stage<HD, BC>(sk, k, b, j0, T, nkv, g);
        lomo__cu_fa_stage<HD, BC>(sv, v, b, j0, T, nkv, g);
        __syncthreads();
        float s[BC / 8][4];                               /* S = Q K^T: 16 queries x 32 keys a warp */
        #pragma unroll
        for (int n = 0; n < BC / 8; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
        #pragma unroll
        for (int kk = 0; kk < HD / 16; kk++) {
            uint32_t a[4], bb[2];
            lomo__cu_frag_a(a, sq, LD, 16 * w, 16 * kk);
            #pragma unroll
            for (int n = 0; n < BC / 8; n++) { lomo__cu_frag_bt(bb, sk, LD, 8 * n, 16 * kk); lomo__cu_mma(s[n], a, bb); }
        }
        #pragma unroll
        for (int r = 0; r < 2; r++) {                     /* the thread's rows: gq and gq + 8 */
            int t = t0 + 16 * w + gq + 8 * r;
            float mx = -INFINITY;
            #pragma unroll
            for (int n = 0; n < BC / 8; n++)
                #pragma unroll
                for (int e = 0; e < 2; e++) {
                    float x = lomo__cu_fa_score(s[n][2 * r + e], t, j0 + 8 * n + 2 * tq + e, T, scale, cap, window);
                    s[n][2 * r + e] = x;
                    mx = fmaxf(mx, x);
                }
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));   /* the 4 lanes of a row */
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            float mn = fmaxf(m[r], mx), corr = mn == -INFINITY ? 1.0f : __expf(m[r] - mn), sum = 0.0f;
            #pragma unroll
            for (int n = 0; n < BC / 8; n++)
                #pragma unroll
                for (int e = 0; e < 2; e++) {
                    float p = mn == -INFINITY ? 0.0f : __expf(s[n][2 * r + e] - mn);
                    s[n][2 * r + e] = p;
                    sum += p;
                }
            sum += __shfl_xor_sync(0xffffffffu, sum, 1);
            sum += __shfl_xor_sync(0xffffffffu, sum, 2);
            l[r] = l[r] * corr + sum;
            m[r] = mn;
            #pragma unroll
            for (int n = 0; n < HD / 8; n++) { o[n][2 * r] *= corr; o[n][2 * r + 1] *= corr; }
        }
        #pragma unroll
        for (int ks = 0; ks < BC / 16; ks++) {            /* O += P V, P rounded to bf16 */
            uint32_t a[4], bb[2];
            lomo__cu_frag_c2a(a, s[2 * ks], s[2 * ks + 1]);
            #pragma unroll
            for (int n = 0; n < HD / 8; n++) { lomo__cu_frag_b(bb, sv, LD, 16 * ks, 8 * n); lomo__cu_mma(o[n], a, bb); }
        }
    }
    #pragma unroll
    for (int r = 0; r < 2; r++) {
        int t = t0 + 16 * w + gq + 8 * r;
        if (t >= T) continue;
        size_t row = (size_t)((size_t)b * T + t) * nh + h;
        float inv = 1.0f / l[r];
        #pragma unroll
        for (int n = 0; n < HD / 8; n++) {
            out[row * HD + 8 * n + 2 * tq] = o[n][2 * r] * inv;
            out[row * HD + 8 * n + 2 * tq + 1] = o[n][2 * r + 1] * inv;
        }
        if (tq == 0) lse[row] = m[r] + __logf(l[r]);
    }
}

/* D = rowsum(dout * out): a warp per (b, t, h) row, fp32. Model: lomo_fm_d */
__global__ void lomo__cu_k_fa_d(float *D, const float *dout, const float *out, size_t rows, int hd) {
    size_t r = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (r >= rows) return;
    float s = lomo__cu_wdot(dout + r * hd, out + r * hd, hd, lane);
    if (lane == 0) D[r] = s;
}

/* dK, dV: grid (ceil(T / 64), B * nkv), 128 threads. Model: lomo_fm_dkv */
template <int HD> __global__ void __launch_bounds__(128)
lomo__cu_k_fa_dkv(float *dk, float *dv, const float *dout, const float *q, const float *k, const float *v,
                  const float *lse, const float *D, int T, int nh, int nkv, float scale, float cap, int window) {
    const int LD = HD + LOMO_CU__FA_PAD, BC = LOMO_CU__FA_DKV_BC, BR = LOMO_CU__FA_DKV_BR;
    __shared__ __align__(16) __nv_bfloat16 sk[BC * LD], sv[BC * LD], sq[BR * LD], sdo[BR * LD];
    __shared__ float sl[BR], sd[BR];
    int b = blockIdx.y / nkv, g = blockIdx.y % nkv, rep = nh / nkv, j0 = blockIdx.x * BC;
    int w = threadIdx.x >> 5, gq = (threadIdx.x & 31) >> 2, tq = threadIdx.x & 3;
    lomo__cu_fa_stage<HD, BC>(sk, k, b, j0, T, nkv, g);
    lomo__cu_fa_stage<HD, BC>(sv, v, b, j0, T, nkv, g);
    float ak[HD / 8][4], av[HD / 8][4];
    #pragma unroll
    for (int n = 0; n < HD / 8; n++)
        #pragma unroll
        for (int e = 0; e < 4; e++) ak[n][e] = av[n][e] = 0.0f;
    /* queries that see a key of the block: j0 <= t < j0 + BC - 1 + window (T without a window) */
    int tend = window > 0 && j0 + BC - 1 + window < T ? j0 + BC - 1 + window : T;
    for (int h = g * rep; h < (g + 1) * rep; h++)
        for (int t0 = j0; t0 < tend; t0 += BR) {
            __syncthreads();
            lomo__cu_fa_stage<HD, BR>(sq, q, b, t0, T, nh, h);
            lomo__cu_fa_stage<HD, BR>(sdo, dout, b, t0, T, nh, h);
            if (threadIdx.x < BR) {
                int t = t0 + threadIdx.x;
                size_t row = (size_t)((size_t)b * T + (t < T ? t : 0)) * nh + h;
                sl[threadIdx.x] = t < T ? lse[row] : 0.0f;
                sd[threadIdx.x] = t < T ? D[row] : 0.0f;
            }
            __syncthreads();
            float st[BR / 8][4], dpt[BR / 8][4];          /* S^T = K Q^T, dP^T = V dO^T: 16 keys x 16 queries */
            #pragma unroll
            for (int n = 0; n < BR / 8; n++)
                #pragma unroll
                for (int e = 0; e < 4; e++) st[n][e] = dpt[n][e] = 0.0f;
            #pragma unroll
            for (int kk = 0; kk < HD / 16; kk++) {
                uint32_t a[4], a2[4], bb[2];
                lomo__cu_frag_a(a, sk, LD, 16 * w, 16 * kk);
                lomo__cu_frag_a(a2, sv, LD, 16 * w, 16 * kk);
                #pragma unroll
                for (int n = 0; n < BR / 8; n++) {
                    lomo__cu_frag_bt(bb, sq, LD, 8 * n, 16 * kk); lomo__cu_mma(st[n], a, bb);
                    lomo__cu_frag_bt(bb, sdo, LD, 8 * n, 16 * kk); lomo__cu_mma(dpt[n], a2, bb);
                }
            }
            #pragma unroll
            for (int n = 0; n < BR / 8; n++)
                #pragma unroll
                for (int e = 0; e < 4; e++) {
                    int j = j0 + 16 * w + gq + 8 * (e >> 1), qi = 8 * n + 2 * tq + (e & 1), t = t0 + qi;
                    float c = lomo__cu_fa_score(st[n][e], t, j, T, scale, cap, window);
                    float p = c == -INFINITY ? 0.0f : __expf(c - sl[qi]);
                    st[n][e] = p;
                    dpt[n][e] = p == 0.0f ? 0.0f : lomo__cu_fa_ds(p, dpt[n][e], sd[qi], c, scale, cap);
                }
            uint32_t ap[4], ads[4], bb[2];                /* dV += P^T dO, dK += dS^T Q (bf16 P, dS) */
            lomo__cu_frag_c2a(ap, st[0], st[1]);
            lomo__cu_frag_c2a(ads, dpt[0], dpt[1]);
            #pragma unroll
            for (int n = 0; n < HD / 8; n++) {
                lomo__cu_frag_b(bb, sdo, LD, 0, 8 * n); lomo__cu_mma(av[n], ap, bb);
                lomo__cu_frag_b(bb, sq, LD, 0, 8 * n); lomo__cu_mma(ak[n], ads, bb);
            }
        }
    #pragma unroll
    for (int r = 0; r < 2; r++) {
        int j = j0 + 16 * w + gq + 8 * r;
        if (j >= T) continue;
        size_t kr = ((size_t)((size_t)b * T + j) * nkv + g) * HD;
        #pragma unroll
        for (int n = 0; n < HD / 8; n++)
            #pragma unroll
            for (int e = 0; e < 2; e++) {
                dk[kr + 8 * n + 2 * tq + e] = ak[n][2 * r + e];
                dv[kr + 8 * n + 2 * tq + e] = av[n][2 * r + e];
            }
    }
}

/* dQ: grid (ceil(T / 64), B * nh), 128 threads. Model: lomo_fm_dq */
template <int HD> __global__ void __launch_bounds__(128)
lomo__cu_k_fa_dq(float *dq, const float *dout, const float *q, const float *k, const float *v, const float *lse,
                 const float *D, int T, int nh, int nkv, float scale, float cap, int window) {
    const int LD = HD + LOMO_CU__FA_PAD, BR = LOMO_CU__FA_FWD_BR, BC = LOMO_CU__FA_DQ_BC;
    __shared__ __align__(16) __nv_bfloat16 sq[BR * LD], sdo[BR * LD], sk[BC * LD], sv[BC * LD];
    int b = blockIdx.y / nh, h = blockIdx.y % nh, g = h / (nh / nkv), t0 = blockIdx.x * BR;
    int w = threadIdx.x >> 5, gq = (threadIdx.x & 31) >> 2, tq = threadIdx.x & 3;
    lomo__cu_fa_stage<HD, BR>(sq, q, b, t0, T, nh, h);
    lomo__cu_fa_stage<HD, BR>(sdo, dout, b, t0, T, nh, h);
    float L[2], Dr[2], acc[HD / 8][4];
    #pragma unroll
    for (int r = 0; r < 2; r++) {
        int t = t0 + 16 * w + gq + 8 * r;
        size_t row = (size_t)((size_t)b * T + (t < T ? t : 0)) * nh + h;
        L[r] = t < T ? lse[row] : 0.0f;
        Dr[r] = t < T ? D[row] : 0.0f;
    }
    #pragma unroll
    for (int n = 0; n < HD / 8; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
    int jbeg = window > 0 && t0 - window + 1 > 0 ? t0 - window + 1 : 0, jend = t0 + BR < T ? t0 + BR : T;
    for (int j0 = jbeg; j0 < jend; j0 += BC) {
        __syncthreads();
        lomo__cu_fa_stage<HD, BC>(sk, k, b, j0, T, nkv, g);
        lomo__cu_fa_stage<HD, BC>(sv, v, b, j0, T, nkv, g);
        __syncthreads();
        float s[BC / 8][4], dp[BC / 8][4];                /* S = Q K^T, dP = dO V^T: 16 queries x 16 keys */
        #pragma unroll
        for (int n = 0; n < BC / 8; n++)
            #pragma unroll
            for (int e = 0; e < 4; e++) s[n][e] = dp[n][e] = 0.0f;
        #pragma unroll
        for (int kk = 0; kk < HD / 16; kk++) {
            uint32_t a[4], a2[4], bb[2];
            lomo__cu_frag_a(a, sq, LD, 16 * w, 16 * kk);
            lomo__cu_frag_a(a2, sdo, LD, 16 * w, 16 * kk);
            #pragma unroll
            for (int n = 0; n < BC / 8; n++) {
                lomo__cu_frag_bt(bb, sk, LD, 8 * n, 16 * kk); lomo__cu_mma(s[n], a, bb);
                lomo__cu_frag_bt(bb, sv, LD, 8 * n, 16 * kk); lomo__cu_mma(dp[n], a2, bb);
            }
        }
        #pragma unroll
        for (int n = 0; n < BC / 8; n++)
            #pragma unroll
            for (int e = 0; e < 4; e++) {
                int r = e >> 1, t = t0 + 16 * w + gq + 8 * r, j = j0 + 8 * n + 2 * tq + (e & 1);
                float c = lomo__cu_fa_score(s[n][e], t, j, T, scale, cap, window);
                float p = c == -INFINITY ? 0.0f : __expf(c - L[r]);
                s[n][e] = p == 0.0f ? 0.0f : lomo__cu_fa_ds(p, dp[n][e], Dr[r], c, scale, cap);
            }
        uint32_t a[4], bb[2];                             /* dQ += dS K (bf16 dS) */
        lomo__cu_frag_c2a(a, s[0], s[1]);
        #pragma unroll
        for (int n = 0; n < HD / 8; n++) { lomo__cu_frag_b(bb, sk, LD, 0, 8 * n); lomo__cu_mma(acc[n], a, bb); }
    }
    #pragma unroll
    for (int r = 0; r < 2; r++) {
        int t = t0 + 16 * w + gq + 8 * r;
        if (t >= T) continue;
        size_t row = (size_t)((size_t)b * T + t) * nh + h;
        #pragma unroll
        for (int n = 0; n < HD / 8; n++)
            #pragma unroll
            for (int e = 0; e < 2; e++) dq[row * HD + 8 * n + 2 * tq + e] = acc[n][2 * r + e];
    }
}

/* flash or the fp32 reference: LOMO_CUDA_ATTN=ref (c->attn_mode 1) always the reference,
   =flash (2) flash wherever it can run, unset (0) flash where the GEMM operands are 16-bit
   already (bf16/f16 weights: the trainer set act_dtype), so fp32 models keep fp32 attention */
static int lomo__cu_flash_ok(lomo__cu *c, int hd) {
    if (c->attn_mode == 1 || c->cc_major < 8) return 0;
    if (hd != 64 && hd != 80 && hd != 96 && hd != 128) return 0;
    return c->attn_mode == 2 || c->act_dtype != LOMO_F32;
}
#define LOMO_CU__FA_HD(hd, launch) do { switch (hd) { \
    case 64: launch(64); break; case 80: launch(80); break; \
    case 96: launch(96); break; default: launch(128); break; } } while (0)

static void lomo__cu_fa_fwd(lomo__cu *c, float *out, float *lse, const float *q, const float *k, const float *v,
                            int B, int T, int nh, int nkv, int hd, float scale, float cap, int window) {
    dim3 grid((unsigned)((T + LOMO_CU__FA_FWD_BR - 1) / LOMO_CU__FA_FWD_BR), (unsigned)(B * nh));
#define LOMO_CU__FA_L(H) lomo__cu_k_fa_fwd<H><<<grid, 128, 0, c->stream>>>(out, lse, q, k, v, T, nh, nkv, scale, cap, window)
    LOMO_CU__FA_HD(hd, LOMO_CU__FA_L);
#undef LOMO_CU__FA_L
    LOMO__LAUNCHED(c);
}
static void lomo__cu_fa_bwd(lomo__cu *c, float *dq, float *dk, float *dv, const float *dout, const float *q,
                            const float *k, const float *v, const float *out, const float *lse, int B, int T, int nh,
                            int nkv, int hd, float scale, float cap, int window) {
    size_t rows = (size_t)B * T * nh;
    float *D = NULL;
    cudaError_t e = cudaMallocAsync((void **)&D, rows * sizeof(float), c->stream);   /* B T nh floats, stream-ordered */
    if (e != cudaSuccess) { lomo__cu_fail(c, "attention backward (D)", cudaGetErrorString(e), __FILE__, __LINE__); return; }
    lomo__cu_k_fa_d<<<(unsigned)((rows * 32 + 255) / 256), 256, 0, c->stream>>>(D, dout, out, rows, hd);
    LOMO__LAUNCHED(c);
    dim3 gk((unsigned)((T + LOMO_CU__FA_DKV_BC - 1) / LOMO_CU__FA_DKV_BC), (unsigned)(B * nkv));
    dim3 gq((unsigned)((T + LOMO_CU__FA_FWD_BR - 1) / LOMO_CU__FA_FWD_BR), (unsigned)(B * nh));
#define LOMO_CU__FA_L(H) lomo__cu_k_fa_dkv<H><<<gk, 128, 0, c->stream>>>(dk, dv, dout, q, k, v, lse, D, T, nh, nkv, scale, cap, window)
    LOMO_CU__FA_HD(hd, LOMO_CU__FA_L);
#undef LOMO_CU__FA_L
    LOMO__LAUNCHED(c);
#define LOMO_CU__FA_L(H) lomo__cu_k_fa_dq<H><<<gq, 128, 0, c->stream>>>(dq, dout, q, k, v, lse, D, T, nh, nkv, scale, cap, window)
    LOMO_CU__FA_HD(hd, LOMO_CU__FA_L);
#undef LOMO_CU__FA_L
    LOMO__LAUNCHED(c);
    LOMO__CU(c, cudaFreeAsync(D, c->stream));
}

static void lomo__cu_attn_ex_fwd(void *ctx, float *out, float *lse, const float *q, const float *k, const float *v,
                                 int B, int T, int nh, int nkv, int hd, float scale, float cap, int window) {
    lomo__cu *c = lomo__cu_on(ctx);
    size_t threads = (size_t)B * T * nh * 32;
    if (lomo__cu_flash_ok(c, hd)) { lomo__cu_fa_fwd(c, out, lse, q, k, v, B, T, nh, nkv, hd, scale, cap, window); return; }
    if (hd > LOMO_CU__MAX_HD) { lomo__cu_fail(c, "attention", "head_dim > 256", __FILE__, __LINE__); return; }
    lomo__cu_k_attnx_fwd<<<(unsigned)((threads + 255) / 256), 256, 0, c->stream>>>(out, lse, q, k, v, B, T, nh, nkv,
                                                                                   hd, scale, cap, window);
    LOMO__LAUNCHED(c);
}
static void lomo__cu_attn_ex_bwd(void *ctx, float *dq, float *dk, float *dv, const float *dout, const float *q,
                                 const float *k, const float *v, const float *out, const float *lse, int B, int T,
                                 int nh, int nkv, int hd, float scale, float cap, int window) {
    lomo__cu *c = lomo__cu_on(ctx);
    size_t tq = (size_t)B * T * nh * 32, tk = (size_t)B * T * nkv * 32;
    if (lomo__cu_flash_ok(c, hd)) {
        lomo__cu_fa_bwd(c, dq, dk, dv, dout, q, k, v, out, lse, B, T, nh, nkv, hd, scale, cap, window);
        return;
    }
    if (hd > LOMO_CU__MAX_HD) { lomo__cu_fail(c, "attention", "head_dim > 256", __FILE__, __LINE__); return; }
    lomo__cu_k_attnx_dq<<<(unsigned)((tq + 255) / 256), 256, 0, c->stream>>>(dq, dout, q, k, v, out, lse, B, T, nh,
                                                                             nkv, hd, scale, cap, window);
    LOMO__LAUNCHED(c);
    lomo__cu_k_attnx_dkv<<<(unsigned)((tk + 255) / 256), 256, 0, c->stream>>>(dk, dv, dout, q, k, v, out, lse, B, T,
                                                                              nh, nkv, hd, scale, cap, window);
    LOMO__LAUNCHED(c);
}
static void lomo__cu_attn_fwd(void *ctx, float *out, float *lse, const float *q, const float *k, const float *v, int B,
                              int T, int nh, int nkv, int hd) {
    lomo__cu_attn_ex_fwd(ctx, out, lse, q, k, v, B, T, nh, nkv, hd, 1.0f / sqrtf((float)hd), 0.0f, 0);
}
static void lomo__cu_attn_bwd(void *ctx, float *dq, float *dk, float *dv, const float *dout, const float *q,
                              const float *k, const float *v, const float *out, const float *lse, int B, int T, int nh,
                              int nkv, int hd) {
    lomo__cu_attn_ex_bwd(ctx, dq, dk, dv, dout, q, k, v, out, lse, B, T, nh, nkv, hd, 1.0f / sqrtf((float)hd), 0.0f, 0);
}

/* cross-entropy of soft-capped logits: a block per row, in place; without
   dlogits the row is replaced by its capped logits */
__global__ void lomo__cu_k_xent_cap(float *losses, float *dlogits, float *logits, const int32_t *targets, int V,
                                    float dscale, float cap) {
    __shared__ float sh[32];
    size_t o = (size_t)blockIdx.x * V;
    int tgt = targets[blockIdx.x];
    float mx = -INFINITY, sum = 0.0f;
    for (int i = threadIdx.x; i < V; i += blockDim.x) mx = fmaxf(mx, cap * tanhf(logits[o + i] / cap));
    mx = lomo__cu_block_max(mx, sh);
    for (int i = threadIdx.x; i < V; i += blockDim.x) sum += __expf(cap * tanhf(logits[o + i] / cap) - mx);
    sum = lomo__cu_block_sum(sum, sh);
    float ct = tgt >= 0 ? cap * tanhf(logits[o + tgt] / cap) : 0.0f;
    __syncthreads();                               /* every read of logits before any in-place write */
    if (threadIdx.x == 0) losses[blockIdx.x] = tgt >= 0 ? __logf(sum) + mx - ct : 0.0f;
    if (!dlogits) {
        for (int i = threadIdx.x; i < V; i += blockDim.x) logits[o + i] = cap * tanhf(logits[o + i] / cap);
        return;
    }
    float inv = 1.0f / sum;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        float c = cap * tanhf(logits[o + i] / cap);
        dlogits[o + i] = tgt < 0 ? 0.0f
                       : (__expf(c - mx) * inv - (i == tgt ? 1.0f : 0.0f)) * (1.0f - (c / cap) * (c / cap)) * dscale;
    }
}
static void lomo__cu_cross_entropy_softcap(void *ctx, float *losses, float *dlogits, float *logits,
                                           const int32_t *targets, int N, int V, float dscale, float cap) {
    lomo__cu *c = lomo__cu_on(ctx);
    lomo__cu_k_xent_cap<<<N, 512, 0, c->stream>>>(losses, dlogits, logits, targets, V, dscale, cap);
    LOMO__LAUNCHED(c);
}

/* partial rotary: pairs (d, d + rot/2) of the first rot dims; the rest pass through */
__global__ void lomo__cu_k_rope_ex(float *x, const float *inv_freq, int B, int T, int nh, int hd, int rot, float mscale,
                                   int inverse) {
    int half = rot / 2;
    size_t n = (size_t)B * T * nh * half;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        int d = (int)(i % half);
        size_t row = i / half;                       /* (b, t, h) */
        int t = (int)((row / nh) % T);
        float s, c, ang = (float)t * inv_freq[d];
        sincosf(ang, &s, &c);
        if (inverse) s = -s;
        s *= mscale; c *= mscale;
        float *v = x + row * hd;
        float a = v[d], b2 = v[d + half];
        v[d] = a * c - b2 * s;
        v[d + half] = b2 * c + a * s;
    }
}
static void lomo__cu_rope_ex(void *ctx, float *x, const float *inv_freq, int B, int T, int nh, int hd, int rot,
                             float mscale, int inverse) {
    lomo__cu *c = lomo__cu_on(ctx);
    lomo__cu_k_rope_ex<<<lomo__cu_blocks((size_t)B * T * nh * (rot / 2), 256), 256, 0, c->stream>>>(x, inv_freq, B, T,
                                                                                                    nh, hd, rot, mscale,
                                                                                                    inverse);
    LOMO__LAUNCHED(c);
}

static double lomo__cu_sumsq(void *ctx, const float *x, size_t n) {
    lomo__cu *c = lomo__cu_on(ctx);
    lomo__cu_k_dot<<<LOMO_CU__PARTS, 256, 0, c->stream>>>(c->part, x, x, n);
    LOMO__LAUNCHED(c);
    return lomo__cu_reduce_to_host(c);
}

/* ---- the built-in rules (formulas in lomo.h) ---- */

__device__ __forceinline__ float lomo__cu_clipped(const float *g, size_t i, lomo_update_args a) {
    float v = g[i] * a.inv_loss_scale;
    if (a.clip_value > 0.0f) v = fminf(fmaxf(v, -a.clip_value), a.clip_value);
    return v * a.clip_coef;
}
__global__ void lomo__cu_k_lomo(void *p, int dt, const float *g, size_t n, lomo_update_args a) {
    float decay = 1.0f - a.lr * a.weight_decay;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        lomo__cu_st(p, dt, i, lomo__cu_ld(p, dt, i) * decay - a.lr * lomo__cu_clipped(g, i, a), a);
}
__global__ void lomo__cu_k_adamw(void *p, int dt, const float *g, float *m1, float *m2, size_t n, lomo_update_args a,
                                 float step_size, float bc2s) {
    float decay = 1.0f - a.lr * a.weight_decay;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float gi = lomo__cu_clipped(g, i, a), w = lomo__cu_ld(p, dt, i) * decay;
        m1[i] += (gi - m1[i]) * (1.0f - a.beta1);
        m2[i] = m2[i] * a.beta2 + (1.0f - a.beta2) * gi * gi;
        lomo__cu_st(p, dt, i, w - step_size * m1[i] / (sqrtf(m2[i]) / bc2s + a.eps), a);
    }
}
/* AdaLomo, matrices: row means (a block per row) and column means (a thread per column) */
__global__ void lomo__cu_k_ada_rows(float *row, const float *g, int cols, lomo_update_args a, float beta) {
    __shared__ double sh[32];
    const float *gr = g + (size_t)blockIdx.x * cols;
    double s = 0.0;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) { float gi = lomo__cu_clipped(gr, c, a); s += gi * gi + a.eps1; }
    s = lomo__cu_block_sum_d(s, sh);
    if (threadIdx.x == 0) row[blockIdx.x] = (float)(beta * row[blockIdx.x] + (1.0 - beta) * (float)(s / cols));
}
/* column means of g^2 + eps1, tiled (lomo__cu_colsum_tile), in double */
__global__ void lomo__cu_k_ada_cols(float *col, const float *g, int rows, int cols, lomo_update_args a, float beta) {
    __shared__ double sh[LOMO_CU__CT_Y * (LOMO_CU__CT_X + 1)];
    double s;
    auto f = [=](int r, int c) { float gi = lomo__cu_clipped(g, (size_t)r * cols + c, a); return (double)(gi * gi + a.eps1); };
    int c = blockIdx.x * LOMO_CU__CT_X + threadIdx.x;
    if (lomo__cu_colsum_tile(sh, f, rows, cols, &s)) col[c] = (float)(beta * col[c] + (1.0 - beta) * (float)(s / rows));
}
__global__ void lomo__cu_k_ada_vec(float *vec, const float *g, size_t n, lomo_update_args a, float beta) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float gi = lomo__cu_clipped(g, i, a);
        vec[i] = (float)(beta * vec[i] + (1.0 - beta) * (gi * gi + a.eps1));
    }
}
__device__ __forceinline__ float lomo__cu_ada_u(const float *g, size_t i, const float *s1, const float *s2, int cols,
                                                float rmean, lomo_update_args a) {
    float gi = lomo__cu_clipped(g, i, a);
    return s2 ? gi / sqrtf(s1[i / cols] / rmean) / sqrtf(s2[i % cols]) : gi / sqrtf(s1[i]);
}
/* partial sums of u^2 (part) and p^2 (part + PARTS) */
/* u^2 over the whole tensor (g is whole), p^2 over the len elements p holds */
__global__ void lomo__cu_k_ada_sums(double *part, const void *p, int dt, const float *g, const float *s1,
                                    const float *s2, int cols, const float *scal, size_t n, size_t len,
                                    lomo_update_args a) {
    __shared__ double sh[32];
    double su = 0.0, sp = 0.0;
    float rmean = s2 ? scal[0] : 1.0f;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float u = lomo__cu_ada_u(g, i, s1, s2, cols, rmean, a);
        su += (double)u * u;
        if (i < len) { float w = lomo__cu_ld(p, dt, i); sp += (double)w * w; }
    }
    su = lomo__cu_block_sum_d(su, sh);
    sp = lomo__cu_block_sum_d(sp, sh);
    if (threadIdx.x == 0) { part[blockIdx.x] = su; part[LOMO_CU__PARTS + blockIdx.x] = sp; }
}
/* scal[0] = mean(row); after the sums: scal[1] = denom, scal[2] = lr_t */
__global__ void lomo__cu_k_ada_rmean(float *scal, const float *row, int rows) {
    __shared__ double sh[32];
    double s = 0.0;
    for (int i = threadIdx.x; i < rows; i += blockDim.x) s += row[i];
    s = lomo__cu_block_sum_d(s, sh);
    if (threadIdx.x == 0) scal[0] = (float)(s / rows);
}
__global__ void lomo__cu_k_ada_scal(float *scal, const double *part, size_t n, lomo_update_args a) {
    __shared__ double sh[32];
    double su = 0.0, sp = 0.0;
    for (int i = threadIdx.x; i < LOMO_CU__PARTS; i += blockDim.x) { su += part[i]; sp += part[LOMO_CU__PARTS + i]; }
    su = lomo__cu_block_sum_d(su, sh);
    sp = lomo__cu_block_sum_d(sp, sh);
    if (a.param_sumsq >= 0.0) sp = a.param_sumsq;   /* sharded: the whole tensor's, from the driver */
    if (threadIdx.x == 0) {
        float denom = (float)(sqrt(su / n) / a.clip_threshold);
        scal[1] = denom > 1.0f ? denom : 1.0f;
        double rms = sqrt(sp / n);
        scal[2] = a.lr * (float)(rms > a.eps2 ? rms : (double)a.eps2);
    }
}
/* the len elements p holds, from index a.shard_off of the whole tensor */
__global__ void lomo__cu_k_ada_apply(void *p, int dt, const float *g, const float *s1, const float *s2, int cols,
                                     const float *scal, size_t len, lomo_update_args a) {
    float rmean = s2 ? scal[0] : 1.0f, denom = scal[1], lr_t = scal[2];
    float decay = a.weight_decay > 0.0f ? 1.0f - lr_t * a.weight_decay : 1.0f;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < len; i += (size_t)gridDim.x * blockDim.x) {
        float u = lomo__cu_ada_u(g, (size_t)a.shard_off + i, s1, s2, cols, rmean, a);
        lomo__cu_st(p, dt, i, lomo__cu_ld(p, dt, i) * decay - lr_t * (u / denom), a);
    }
}

/* 0.6: LOMO fused with a linear weight's gradient (see linear_update in lomo.h).
   fp32 w: one GEMM straight into w, beta = 1 - lr wd, alpha = -lr coef inv_scale
   (no gradient buffer). 16-bit w: dy and x cast once; per block of R rows of w
   (R = what fits gbuf), dW rows into gbuf by a GEMM on the block's columns of dy
   (ld O), then the LOMO kernel on those rows with shard_off moved by r0 K: the
   rounding hash of each element is the whole-tensor update's. */
static void lomo__cu_linear_update(void *ctx, lomo_tensor *w, const float *dy, const float *x, int N, int K, int O,
                                   float *gbuf, size_t gbuf_floats, const lomo_update_args *a) {
    lomo__cu *c = lomo__cu_on(ctx);
    if (w->dtype == LOMO_F32) {   /* column-major w^T (K,O) = beta w^T + alpha x^T dy */
        float alpha = -a->lr * a->clip_coef * a->inv_loss_scale, beta = 1.0f - a->lr * a->weight_decay;
        LOMO__CUBLAS(c, cublasGemmEx(c->blas, CUBLAS_OP_N, CUBLAS_OP_T, K, O, N, &alpha, x, CUDA_R_32F, K, dy, CUDA_R_32F, O,
                                     &beta, w->data, CUDA_R_32F, K, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        return;
    }
    size_t used = 0, es = c->act_dtype == LOMO_F32 ? 4 : 2;
    const void *xo = lomo__cu_operand(c, x, (size_t)N * K, c->act_dtype, &used);
    const void *dyo = lomo__cu_operand(c, dy, (size_t)N * O, c->act_dtype, &used);
    int R = gbuf_floats / (size_t)K < (size_t)O ? (int)(gbuf_floats / (size_t)K) : O;
    if (!xo || !dyo) return;
    if (R < 1) { lomo__cu_fail(c, "linear_update", "gradient buffer holds no row", __FILE__, __LINE__); return; }
    for (int r0 = 0; r0 < O; r0 += R) {
        int nr = O - r0 < R ? O - r0 : R;
        lomo_update_args b = *a;
        b.shard_off = a->shard_off + (int64_t)r0 * K;
        lomo__cu_gemm(c, CUBLAS_OP_N, CUBLAS_OP_T, K, nr, N, xo, K, (const char *)dyo + (size_t)r0 * es, O, c->act_dtype,
                      gbuf, K, 0);
        size_t n = (size_t)nr * K;
        lomo__cu_k_lomo<<<lomo__cu_blocks(n, 256), 256, 0, c->stream>>>((char *)w->data + (size_t)r0 * K * 2, w->dtype,
                                                                         gbuf, n, b);
        LOMO__LAUNCHED(c);
    }
}

static void lomo__cu_update(void *ctx, lomo_tensor *p, const float *g, float *s1, float *s2, const lomo_update_args *a) {
    lomo__cu *c = lomo__cu_on(ctx);
    size_t n = (size_t)p->numel;
    int blocks = lomo__cu_blocks(n, 256);
    if (a->rule == LOMO_OPT_LOMO) {
        lomo__cu_k_lomo<<<blocks, 256, 0, c->stream>>>(p->data, p->dtype, g, n, *a);
    } else if (a->rule == LOMO_OPT_ADAMW) {
        float bc1 = (float)(1.0 - pow(a->beta1, (double)a->step)), bc2s = (float)sqrt(1.0 - pow(a->beta2, (double)a->step));
        lomo__cu_k_adamw<<<blocks, 256, 0, c->stream>>>(p->data, p->dtype, g, s1, s2, n, *a, a->lr / bc1, bc2s);
    } else {
        float beta = (float)(1.0 - pow((double)a->step, (double)a->decay_rate));
        int rows = p->ndim == 2 ? (int)p->shape[0] : 1, cols = p->ndim == 2 ? (int)p->shape[1] : (int)n;
        if (p->ndim == 2) {
            lomo__cu_k_ada_rows<<<rows, 256, 0, c->stream>>>(s1, g, cols, *a, beta);
            lomo__cu_k_ada_cols<<<lomo__cu_colsum_grid(cols), lomo__cu_colsum_block(), 0, c->stream>>>(s2, g, rows, cols, *a, beta);
            lomo__cu_k_ada_rmean<<<1, 1024, 0, c->stream>>>(c->scal, s1, rows);
        } else {
            lomo__cu_k_ada_vec<<<blocks, 256, 0, c->stream>>>(s1, g, n, *a, beta);
            s2 = NULL;
        }
        size_t len = (size_t)p->shard_len;   /* the elements p->data holds (all of them, unsharded) */
        lomo__cu_k_ada_sums<<<LOMO_CU__PARTS, 256, 0, c->stream>>>(c->part, p->data, p->dtype, g, s1, s2, cols, c->scal,
                                                                    n, len, *a);
        lomo__cu_k_ada_scal<<<1, 1024, 0, c->stream>>>(c->scal, c->part, n, *a);
        lomo__cu_k_ada_apply<<<lomo__cu_blocks(len, 256), 256, 0, c->stream>>>(p->data, p->dtype, g, s1, s2, cols,
                                                                               c->scal, len, *a);
    }
    LOMO__LAUNCHED(c);
}

__global__ void lomo__cu_k_psumsq(double *part, const void *p, int dt, size_t n) {
    __shared__ double sh[32];
    double s = 0.0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        double w = lomo__cu_ld(p, dt, i);
        s += w * w;
    }
    s = lomo__cu_block_sum_d(s, sh);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}
static double lomo__cu_param_sumsq(void *ctx, const lomo_tensor *p) {
    lomo__cu *c = lomo__cu_on(ctx);
    lomo__cu_k_psumsq<<<LOMO_CU__PARTS, 256, 0, c->stream>>>(c->part, p->data, p->dtype, (size_t)p->numel);
    LOMO__LAUNCHED(c);
    return lomo__cu_reduce_to_host(c);
}

/* ||dy^T x||_F^2 = <dy dy^T, x x^T>_F from two N x N Gram matrices (cuBLAS).
   On tensor cores where the model is 16-bit: the fp32 operands are rounded to the dW
   GEMM's operand dtype inside cuBLAS (CUBLAS_COMPUTE_32F_FAST_16BF / _16F: no cast buffer,
   fp32 accumulate), so the norm is that of the dW the bf16 GEMM would have formed, at the
   same precision; fp32 models stay pure fp32 (no TF32) on both paths.
   Crossover, on the GPU: the Gram pass costs 2 N^2 (O + K) FLOPs and moves about
   4 N (O + K) bytes of operands + 16 N^2 of Gram matrices (written, read by the dot); the
   dW it replaces costs 2 N O K FLOPs and moves 4 N (O + K) + 8 O K bytes (dW written, then
   read by the norm). With both on the same tensor cores both are compute-bound at the
   shapes where the choice matters (arithmetic intensity about N / 2 FLOP/byte for the
   Gram, at most N / 4 for dW, against ~ 300 for an H100's bf16 peak / HBM: memory only
   dominates below N of a few hundred, where the Gram pass moves fewer bytes too), so
   the rule is the FLOP ratio: Gram when N (O + K) < O K, which is the driver's rule
   (lomo__linear_grads) unchanged; at LLaMA-7B 1 x 1024 it takes 0.5x (attention/MLP
   input widths 4096) and 0.34x (11008) the dW FLOPs, at 8 x 512 (N = 4096) it is off.
   Before, the Gram GEMMs ran fp32 on CUDA cores against bf16 dW on tensor cores: ~6x
   slower per FLOP, so the FLOP rule chose it where it lost. */
static double lomo__cu_wgrad_sqnorm(void *ctx, const float *dy, const float *x, int N, int K, int O) {
    lomo__cu *c = lomo__cu_on(ctx);
    size_t nn = (size_t)N * N;
    float *gy = (float *)c->scratch, *gx = gy + nn, one = 1.0f, zero = 0.0f;
    cublasComputeType_t ct = c->act_dtype == LOMO_BF16 ? CUBLAS_COMPUTE_32F_FAST_16BF
                             : c->act_dtype == LOMO_F16 ? CUBLAS_COMPUTE_32F_FAST_16F : CUBLAS_COMPUTE_32F;
    if (2 * nn * sizeof(float) > c->scratch_bytes) {
        lomo__cu_fail(c, "Gram norm", "scratch too small", __FILE__, __LINE__);
        return NAN;
    }
    LOMO__CUBLAS(c, cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, N, N, O, &one, dy, CUDA_R_32F, O, dy, CUDA_R_32F, O,
                                 &zero, gy, CUDA_R_32F, N, ct, CUBLAS_GEMM_DEFAULT));
    LOMO__CUBLAS(c, cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, N, N, K, &one, x, CUDA_R_32F, K, x, CUDA_R_32F, K,
                                 &zero, gx, CUDA_R_32F, N, ct, CUBLAS_GEMM_DEFAULT));
    lomo__cu_k_dot<<<LOMO_CU__PARTS, 256, 0, c->stream>>>(c->part, gy, gx, nn);
    LOMO__LAUNCHED(c);
    return lomo__cu_reduce_to_host(c);
}

/* scratch: the 16-bit casts of a matmul's activation operands (N rows of the
   widest layer input or output; the LM head's head_rows rows of the vocab-wide
   (d)logits and of its input), or the two Gram matrices */
static size_t lomo__cu_scratch_bytes_rows(void *ctx, const lomo_model *m, int N, int head_rows, int gram) {
    const lomo_config *c = &m->cfg;
    size_t w = (size_t)c->dim, wh = (size_t)c->dim, cast, g;
    if ((size_t)c->hidden_dim > w) w = (size_t)c->hidden_dim;
    if ((size_t)c->n_heads * c->head_dim > w) w = (size_t)c->n_heads * c->head_dim;
    if ((size_t)c->vocab_size > wh) wh = (size_t)c->vocab_size;
    (void)ctx;
    if (head_rows > N) head_rows = N;
    w = (size_t)N * w > (size_t)head_rows * wh ? (size_t)N * w : (size_t)head_rows * wh;
    cast = c->dtype == LOMO_F32 ? 0 : 2 * 2 * w;   /* two operands of 2 bytes */
    g = gram ? 2 * (size_t)N * N * sizeof(float) : 0;
    return cast > g ? cast : g;
}
static size_t lomo__cu_scratch_bytes(void *ctx, const lomo_model *m, int N, int gram) {
    return lomo__cu_scratch_bytes_rows(ctx, m, N, N, gram);
}
/* the trainer about to run: its scratch (NULL, 0 when it needs none) and the
   dtype its dW GEMMs take their activation operands in, both replaced on
   every call, so trainers of different dtypes can share the device */
static void lomo__cu_set_scratch(void *ctx, void *p, size_t bytes, int act_dtype) {
    lomo__cu *c = lomo__cu_on(ctx);
    c->scratch = p;
    c->scratch_bytes = p ? bytes : 0;
    c->act_dtype = act_dtype;
}

/* ---- generation (KV cache): RoPE at a position offset, attention over the cache ---- */

/* the first rot dims of each head (pairs (i, i + rot/2)), times mscale; the others pass through */
__global__ void lomo__cu_k_rope_at(float *x, const float *inv_freq, int N, int nh, int hd, int rot, float mscale, int pos0) {
    int half = rot / 2;
    size_t n = (size_t)N * nh * half;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        int d = (int)(i % half);
        size_t row = i / half;                       /* (n, h) */
        float s, c, ang = (float)(pos0 + (int)(row / nh)) * inv_freq[d];
        sincosf(ang, &s, &c);
        c *= mscale; s *= mscale;
        float *v = x + row * hd;
        float a = v[d], b2 = v[d + half];
        v[d] = a * c - b2 * s;
        v[d + half] = b2 * c + a * s;
    }
}
static void lomo__cu_rope_at(void *ctx, float *x, const float *inv_freq, int N, int nh, int hd, int rot, float mscale,
                             int pos0) {
    lomo__cu *c = (lomo__cu *)ctx;
    if (rot <= 0) return;
    lomo__cu_k_rope_at<<<lomo__cu_blocks((size_t)N * nh * (rot / 2), 256), 256, 0, c->stream>>>(x, inv_freq, N, nh, hd, rot,
                                                                                                mscale, pos0);
    LOMO__LAUNCHED(c);
}

/* a warp per (new query, head), online softmax over the cached keys in its window */
__global__ void lomo__cu_k_attn_kv(float *out, const float *q, const float *kc, const float *vc, int N, int pos0, int nh,
                                   int nkv, int hd, int window, float scale, float cap) {
    int warp = (int)((blockIdx.x * (size_t)blockDim.x + threadIdx.x) >> 5), lane = threadIdx.x & 31;
    if (warp >= N * nh) return;
    int h = warp % nh, t = pos0 + warp / nh, g = h / (nh / nkv);
    int lo = window > 0 && t - window + 1 > 0 ? t - window + 1 : 0;
    const float *qt = q + (size_t)warp * hd;
    float acc[LOMO_CU__PER_LANE], mx = -INFINITY, l = 0.0f;
    for (int i = 0; i < LOMO_CU__PER_LANE; i++) acc[i] = 0.0f;
    for (int j = lo; j <= t; j++) {
        size_t kr = ((size_t)j * nkv + g) * hd;
        float s = lomo__cu_cap(lomo__cu_wdot(qt, kc + kr, hd, lane) * scale, cap);
        float m2 = fmaxf(mx, s), corr = __expf(mx - m2), p = __expf(s - m2);
        l = l * corr + p;
        for (int i = 0; i < LOMO_CU__PER_LANE; i++) {
            int d = lane + 32 * i;
            if (d < hd) acc[i] = acc[i] * corr + p * vc[kr + d];
        }
        mx = m2;
    }
    for (int i = 0; i < LOMO_CU__PER_LANE; i++) {
        int d = lane + 32 * i;
        if (d < hd) out[(size_t)warp * hd + d] = acc[i] / l;
    }
}
static void lomo__cu_attn_kv(void *ctx, float *out, const float *q, const float *kc, const float *vc, int N, int pos0,
                             int nh, int nkv, int hd, float scale, float cap, int window) {
    lomo__cu *c = (lomo__cu *)ctx;
    size_t threads = (size_t)N * nh * 32;
    if (hd > LOMO_CU__MAX_HD) { lomo__cu_fail(c, "attention", "head_dim > 256", __FILE__, __LINE__); return; }
    lomo__cu_k_attn_kv<<<(unsigned)((threads + 255) / 256), 256, 0, c->stream>>>(out, q, kc, vc, N, pos0, nh, nkv, hd,
                                                                                 window, scale, cap);
    LOMO__LAUNCHED(c);
}

/* y_j = x W_j^T + b_j for j < n weights that share x: one cuBLAS matmul each (a GEMV for N = 1) */
static void lomo__cu_matmul_fwd_n(void *ctx, int n, float *const *y, const float *x, const lomo_tensor *const *w,
                                  const lomo_tensor *const *b, int N, int K, const int *O) {
    for (int j = 0; j < n; j++) lomo__cu_matmul_fwd(ctx, y[j], x, w[j], b[j], N, K, O[j], 0);
}

extern "C" const lomo_backend *lomo_cuda_backend(int device) {
    static lomo_backend be[16];
    static lomo__cu ctx[16];
    lomo__cu *c;
    cudaError_t e;
    if (device < 0 || device >= 16) { lomo__fail("cuda: device %d out of range", device); return NULL; }
    if (be[device].name) return &be[device];
    c = &ctx[device];
    memset(c, 0, sizeof *c);
    c->device = device;
    c->sync_each = getenv("LOMO_CUDA_SYNC") && atoi(getenv("LOMO_CUDA_SYNC")) > 0;
    {
        const char *am = getenv("LOMO_CUDA_ATTN");
        c->attn_mode = am && !strcmp(am, "ref") ? 1 : am && !strcmp(am, "flash") ? 2 : 0;
    }
    if ((e = cudaSetDevice(device)) != cudaSuccess) { lomo__fail("cuda: cudaSetDevice(%d): %s", device, cudaGetErrorString(e)); return NULL; }
    if ((e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess ||
        (e = cudaMalloc(&c->part, sizeof(double) * (2 * LOMO_CU__PARTS + 1))) != cudaSuccess ||
        (e = cudaMalloc(&c->scal, sizeof(float) * 4)) != cudaSuccess ||
        (e = cudaMallocHost(&c->host, sizeof(double))) != cudaSuccess) {
        lomo__fail("cuda: device %d: %s", device, cudaGetErrorString(e));
        return NULL;
    }
    if ((e = cudaDeviceGetAttribute(&c->cc_major, cudaDevAttrComputeCapabilityMajor, device)) != cudaSuccess) {
        lomo__fail("cuda: device %d: %s", device, cudaGetErrorString(e));
        return NULL;
    }
    if (cublasCreate(&c->blas) != CUBLAS_STATUS_SUCCESS || cublasSetStream(c->blas, c->stream) != CUBLAS_STATUS_SUCCESS ||
        cublasSetMathMode(c->blas, CUBLAS_DEFAULT_MATH) != CUBLAS_STATUS_SUCCESS) {   /* no TF32 for fp32 */
        lomo__fail("cuda: cuBLAS failed to start on device %d", device);
        return NULL;
    }
    lomo_backend *b = &be[device];
    b->ctx = c; b->stream = c->stream; b->host_memory = 0; b->grads16 = 1;
    b->alloc = lomo__cu_alloc; b->free = lomo__cu_free; b->upload = lomo__cu_upload; b->download = lomo__cu_download;
    b->copy = lomo__cu_copy; b->zero = lomo__cu_zero; b->check = lomo__cu_check; b->add = lomo__cu_add;
    b->embed_fwd = lomo__cu_embed_fwd; b->embed_bwd = lomo__cu_embed_bwd;
    b->rmsnorm_fwd = lomo__cu_rmsnorm_fwd; b->rmsnorm_bwd = lomo__cu_rmsnorm_bwd;
    b->matmul_fwd = lomo__cu_matmul_fwd; b->matmul_bwd_x = lomo__cu_matmul_bwd_x; b->matmul_bwd_w = lomo__cu_matmul_bwd_w;
    b->bias_bwd = lomo__cu_bias_bwd; b->rope = lomo__cu_rope;
    b->attn_fwd = lomo__cu_attn_fwd; b->attn_bwd = lomo__cu_attn_bwd;
    b->swiglu_fwd = lomo__cu_swiglu_fwd; b->swiglu_bwd = lomo__cu_swiglu_bwd;
    b->cross_entropy = lomo__cu_cross_entropy; b->sumsq = lomo__cu_sumsq;
    b->update = lomo__cu_update; b->wgrad_sqnorm = lomo__cu_wgrad_sqnorm; b->param_sumsq = lomo__cu_param_sumsq;
    b->scratch_bytes = lomo__cu_scratch_bytes; b->set_scratch = lomo__cu_set_scratch;
    b->scratch_bytes_rows = lomo__cu_scratch_bytes_rows; b->linear_update = lomo__cu_linear_update;
    b->rmsnorm_ex_fwd = lomo__cu_rmsnorm_ex_fwd; b->rmsnorm_ex_bwd = lomo__cu_rmsnorm_ex_bwd; b->scale = lomo__cu_scale;
    b->geglu_fwd = lomo__cu_geglu_fwd; b->geglu_bwd = lomo__cu_geglu_bwd;
    b->attn_ex_fwd = lomo__cu_attn_ex_fwd; b->attn_ex_bwd = lomo__cu_attn_ex_bwd;
    b->cross_entropy_softcap = lomo__cu_cross_entropy_softcap; b->rope_ex = lomo__cu_rope_ex;
    b->rope_at = lomo__cu_rope_at; b->attn_kv = lomo__cu_attn_kv;
    b->matmul_fwd_n = lomo__cu_matmul_fwd_n;
    b->name = "cuda";
    return b;
}

extern "C" int lomo_cuda_mem_info(const lomo_backend *be, size_t *free_bytes, size_t *total_bytes) {
    lomo__cu *c = (lomo__cu *)be->ctx;
    cudaError_t e = cudaSetDevice(c->device);
    if (e == cudaSuccess) e = cudaMemGetInfo(free_bytes, total_bytes);
    if (e != cudaSuccess) return lomo__fail("cuda: cudaMemGetInfo: %s", cudaGetErrorString(e));
    return 0;
}

extern "C" int lomo_cuda_release(const lomo_backend *be, int reset_device) {
    lomo__cu *c;
    int rc = 0;
    if (!be || !be->ctx || !be->name || strcmp(be->name, "cuda")) return lomo__fail("lomo_cuda_release: not a CUDA backend");
    c = (lomo__cu *)be->ctx;
    cudaSetDevice(c->device);
    if (!c->lost) {   /* a lost context cannot free anything: the reset does */
        cudaStreamSynchronize(c->stream);
        cublasDestroy(c->blas);
        cudaFree(c->part); cudaFree(c->scal); cudaFreeHost(c->host);
        cudaStreamDestroy(c->stream);
    }
    if (reset_device && cudaDeviceReset() != cudaSuccess) rc = lomo__fail("lomo_cuda_release: cudaDeviceReset on device %d failed", c->device);
    (void)cudaGetLastError();
    memset((void *)be, 0, sizeof *be);   /* the table is ours (static): lomo_cuda_backend(device) starts a new one */
    return rc;
}

/* matrices uniform in [-std sqrt 3, std sqrt 3] (variance std^2), norms 1, biases 0,
   from the counter hash of (seed, tensor, element): made on the device */
__global__ void lomo__cu_k_init(void *p, int dt, size_t n, int kind, uint64_t seed, uint64_t tensor, float a) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float x = kind == 2 ? a * (2.0f * lomo__cu_uniform(seed, tensor, i) - 1.0f) : kind == 1 ? 1.0f : 0.0f;
        lomo__cu_st_at(p, dt, i, i, x, 0, 0, 0);
    }
}
extern "C" int lomo_cuda_init_random(lomo_model *m, uint64_t seed, float std) {
    lomo__cu *c;
    int i;
    if (!m || !m->be || !m->be->name || strcmp(m->be->name, "cuda")) return lomo__fail("lomo_cuda_init_random: not a model on the CUDA backend");
    c = lomo__cu_on(m->be->ctx);
    for (i = 0; i < m->n_tensors; i++) {
        lomo_tensor *t = &m->tensors[i];
        int norm = t->kind == LOMO_ATTN_NORM || t->kind == LOMO_MLP_NORM || t->kind == LOMO_FINAL_NORM;
        size_t n = t->shard_len ? (size_t)t->shard_len : (size_t)t->numel;
        lomo__cu_k_init<<<lomo__cu_blocks(n, 256), 256, 0, c->stream>>>(t->data, t->dtype, n, t->ndim == 2 ? 2 : norm,
                                                                         seed, (uint64_t)i, std * 1.7320508f);
        LOMO__LAUNCHED(c);
    }
    return lomo__cu_check(c);
}

/* ---- NCCL communicator (LOMO_NCCL) ---- */
#ifdef LOMO_NCCL
#include <time.h>

typedef struct lomo__nccl {
    ncclComm_t comm;
    cudaStream_t stream;
    int own;                  /* created here: destroyed by lomo_nccl_comm_free */
    int aborted;              /* ncclCommAbort ran (error or timeout): never destroyed or used again */
    int device;               /* the CUDA backend's device, current for every collective */
    void *stage; size_t stage_bytes;
    double timeout;
} lomo__nccl;

static double lomo__nccl_now(void) {
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int lomo__nccl_check(ncclResult_t r, const char *what, const char *file, int line) {
    if (r == ncclSuccess) return 0;
    return lomo__fail("%s:%d: NCCL %s: %s", file, line, what, ncclGetErrorString(r));
}
#define LOMO__NCCL(call, what) lomo__nccl_check((call), (what), __FILE__, __LINE__)

/* waits for the stream, watching the communicator; gives up after the timeout */
static int lomo__nccl_wait(lomo__nccl *c, const char *what) {
    double t0 = lomo__nccl_now();
    for (;;) {
        cudaError_t e = cudaStreamQuery(c->stream);
        ncclResult_t async = ncclSuccess;
        if (e == cudaSuccess) return 0;
        if (e != cudaErrorNotReady) return lomo__fail("NCCL %s: %s", what, cudaGetErrorString(e));
        if (ncclCommGetAsyncError(c->comm, &async) != ncclSuccess || async != ncclSuccess) {
            ncclCommAbort(c->comm);
            c->aborted = 1;
            return lomo__fail("NCCL %s: %s (communicator aborted)", what, ncclGetErrorString(async));
        }
        if (lomo__nccl_now() - t0 > c->timeout) {
            ncclCommAbort(c->comm);
            c->aborted = 1;
            return lomo__fail("NCCL %s: no answer from the other ranks after %.0f s: a rank died, hangs, or runs "
                              "different work; communicator aborted (LOMO_COMM_TIMEOUT sets the limit)", what, c->timeout);
        }
    }
}

static int lomo__nccl_is_host(const void *p) {
    cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) { (void)cudaGetLastError(); return 1; }
    return a.type == cudaMemoryTypeHost || a.type == cudaMemoryTypeUnregistered;
}

static void *lomo__nccl_stage(lomo__nccl *c, size_t bytes) {
    if (bytes > c->stage_bytes) {
        if (c->stage) cudaFree(c->stage);
        c->stage = NULL; c->stage_bytes = 0;
        if (cudaMalloc(&c->stage, bytes) != cudaSuccess) { lomo__fail("NCCL: no device memory to stage %zu bytes", bytes); return NULL; }
        c->stage_bytes = bytes;
    }
    return c->stage;
}

static int lomo__nccl_all_reduce(void *ctx, void *buf, size_t n, int is_double) {
    lomo__nccl *c = (lomo__nccl *)ctx;
    cudaSetDevice(c->device);
    if (c->aborted) return lomo__fail("NCCL all_reduce: the communicator was aborted by an earlier error or timeout");
    size_t bytes = n * (is_double ? 8 : 4);
    int host = lomo__nccl_is_host(buf);
    void *d = host ? lomo__nccl_stage(c, bytes) : buf;
    if (!d) return -1;
    if (host && cudaMemcpyAsync(d, buf, bytes, cudaMemcpyHostToDevice, c->stream) != cudaSuccess) return lomo__fail("NCCL staging");
    if (LOMO__NCCL(ncclAllReduce(d, d, n, is_double ? ncclDouble : ncclFloat, ncclSum, c->comm, c->stream), "all_reduce")) return -1;
    if (host && cudaMemcpyAsync(buf, d, bytes, cudaMemcpyDeviceToHost, c->stream) != cudaSuccess) return lomo__fail("NCCL staging");
    return lomo__nccl_wait(c, "all_reduce");
}

static int lomo__nccl_all_gather(void *ctx, void *dst, const void *src, size_t bytes) {
    lomo__nccl *c = (lomo__nccl *)ctx;
    cudaSetDevice(c->device);
    if (c->aborted) return lomo__fail("NCCL all_gather: the communicator was aborted by an earlier error or timeout");
    int nranks = 0, host = lomo__nccl_is_host(dst) || lomo__nccl_is_host(src);
    char *d;
    ncclCommCount(c->comm, &nranks);
    if (!host) {
        if (LOMO__NCCL(ncclAllGather(src, dst, bytes, ncclUint8, c->comm, c->stream), "all_gather")) return -1;
        return lomo__nccl_wait(c, "all_gather");
    }
    if (!(d = (char *)lomo__nccl_stage(c, bytes * ((size_t)nranks + 1)))) return -1;
    if (cudaMemcpyAsync(d, src, bytes, lomo__nccl_is_host(src) ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToDevice,
                        c->stream) != cudaSuccess) return lomo__fail("NCCL staging");
    if (LOMO__NCCL(ncclAllGather(d, d + bytes, bytes, ncclUint8, c->comm, c->stream), "all_gather")) return -1;
    if (cudaMemcpyAsync(dst, d + bytes, bytes * (size_t)nranks,
                        lomo__nccl_is_host(dst) ? cudaMemcpyDeviceToHost : cudaMemcpyDeviceToDevice, c->stream) != cudaSuccess)
        return lomo__fail("NCCL staging");
    return lomo__nccl_wait(c, "all_gather");
}

static int lomo__nccl_reduce_scatter(void *ctx, float *dst, const float *src, size_t n) {
    lomo__nccl *c = (lomo__nccl *)ctx;
    cudaSetDevice(c->device);
    if (c->aborted) return lomo__fail("NCCL reduce_scatter: the communicator was aborted by an earlier error or timeout");
    if (LOMO__NCCL(ncclReduceScatter(src, dst, n, ncclFloat, ncclSum, c->comm, c->stream), "reduce_scatter")) return -1;
    return lomo__nccl_wait(c, "reduce_scatter");
}

static int lomo__nccl_broadcast(void *ctx, void *buf, size_t bytes, int root) {
    lomo__nccl *c = (lomo__nccl *)ctx;
    cudaSetDevice(c->device);
    if (c->aborted) return lomo__fail("NCCL broadcast: the communicator was aborted by an earlier error or timeout");
    int host = lomo__nccl_is_host(buf);
    void *d = host ? lomo__nccl_stage(c, bytes) : buf;
    if (!d) return -1;
    if (host && cudaMemcpyAsync(d, buf, bytes, cudaMemcpyHostToDevice, c->stream) != cudaSuccess) return lomo__fail("NCCL staging");
    if (LOMO__NCCL(ncclBroadcast(d, d, bytes, ncclUint8, root, c->comm, c->stream), "broadcast")) return -1;
    if (host && cudaMemcpyAsync(buf, d, bytes, cudaMemcpyDeviceToHost, c->stream) != cudaSuccess) return lomo__fail("NCCL staging");
    return lomo__nccl_wait(c, "broadcast");
}

static lomo_comm *lomo__nccl_make(ncclComm_t comm, const lomo_backend *cuda, int own) {
    lomo_comm *lc = (lomo_comm *)lomo__calloc(1, sizeof *lc);
    lomo__nccl *c = (lomo__nccl *)lomo__calloc(1, sizeof *c);
    const char *env = getenv("LOMO_COMM_TIMEOUT");
    if (!lc || !c || !cuda || !cuda->stream) { if (lc && c) lomo__fail("NCCL: needs the CUDA backend"); LOMO_FREE(lc); LOMO_FREE(c); return NULL; }
    c->comm = comm; c->stream = (cudaStream_t)cuda->stream; c->own = own; c->device = ((lomo__cu *)cuda->ctx)->device;
    c->timeout = env && atof(env) > 0 ? atof(env) : 600.0;
    ncclCommUserRank(comm, &lc->rank);
    ncclCommCount(comm, &lc->size);
    lc->name = "nccl"; lc->ctx = c;
    lc->all_reduce_sum = lomo__nccl_all_reduce; lc->all_gather = lomo__nccl_all_gather;
    lc->reduce_scatter_sum = lomo__nccl_reduce_scatter; lc->broadcast = lomo__nccl_broadcast;
    return lc;
}

extern "C" lomo_comm *lomo_nccl_comm(ncclComm_t comm, const lomo_backend *cuda) { return lomo__nccl_make(comm, cuda, 0); }

#ifdef LOMO_MPI
extern "C" lomo_comm *lomo_nccl_comm_from_mpi(MPI_Comm mpi, const lomo_backend *cuda) {
    ncclUniqueId id;
    ncclComm_t comm;
    int rank, size;
    MPI_Comm_rank(mpi, &rank);
    MPI_Comm_size(mpi, &size);
    if (rank == 0 && LOMO__NCCL(ncclGetUniqueId(&id), "get unique id")) return NULL;
    if (MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, mpi) != MPI_SUCCESS) { lomo__fail("MPI broadcast of the NCCL id failed"); return NULL; }
    if (LOMO__NCCL(ncclCommInitRank(&comm, size, id, rank), "init rank")) return NULL;
    return lomo__nccl_make(comm, cuda, 1);
}
#endif

extern "C" void lomo_nccl_comm_free(lomo_comm *lc) {
    lomo__nccl *c;
    if (!lc) return;
    c = (lomo__nccl *)lc->ctx;
    cudaSetDevice(c->device);
    if (c->stage) cudaFree(c->stage);
    if (c->own && !c->aborted) ncclCommDestroy(c->comm);   /* an aborted one is already gone */
    LOMO_FREE(c);
    LOMO_FREE(lc);
}
#endif /* LOMO_NCCL */

#endif /* LOMO_CUDA__IMPLEMENTED */
#endif /* LOMO_IMPLEMENTATION */
#endif /* LOMO_CUDA_CUH */
