/* bench_lomo.c - lomo training throughput and memory on a random Llama
   (default ~25M parameters). Prints tokens/s, the memory report, peak RSS,
   and on a GPU peak device memory and MFU; --out FILE writes JSON.
   bench/run_cpu.sh and bench/run_cuda.sh run it beside PyTorch + lomo-optim
   on the same shapes. Built alone it runs on the CPU (build/bench_cpu); with
   -DLOMO_CUDA and the nvcc-built implementation object, --device cuda runs
   it on the GPU (build/bench_cuda).

   build/bench_cpu --dim 512 --layers 6 --heads 8 --kv-heads 8 --hidden 1376 \
                   --vocab 6144 --batch 4 --seq 256 --steps 5 --checkpointing

   The step's model FLOPs (printed as GFLOP/s, and against --peak-gflops when
   given): every linear layer 2 N x its weights forward and 4 N backward, once
   more forward for the recomputed layers with checkpointing; causal attention
   2 B T^2 (heads x head_dim) per layer forward, twice that backward, once
   more with checkpointing. N = B T tokens; embedding lookups are not counted.

   build/bench_cpu --sgemm-peak 2048 measures the machine's own matmul peak
   through the backend's matmul (the same BLAS, split over the same threads):
   best of 5 (2048 x 2048) x (2048 x 2048) products, in GFLOP/s.

   --loss-scaling on|off (default: on for f16 storage only, as lomo_train_opts);
   with 16-bit storage it also times widening every weight to fp32 once
   (widen_ms in the JSON), the cost that 16-bit storage adds per widening,
   and the update of every linear weight from an fp32 gradient (narrow_ms),
   the pass that fp32 storage folds into the dW GEMM. */
#ifndef LOMO_CUDA
#define LOMO_IMPLEMENTATION
#endif
#include "../lomo.h"
#ifdef LOMO_CUDA
#include "../lomo_cuda.cuh"
#include <cuda_runtime_api.h>
#endif
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif


/* Benchmarks need plausible weights, not good ones: uniform with the same
   std as N(0, std), norms 1, biases 0, from a fast xorshift (a 7B model's
   Box-Muller init would take minutes). Converted to the storage dtype here. */
static void bench_init(lomo_model *m, float std) {
    uint64_t x = 0x9E3779B97F4A7C15ull;
    float a = std * 1.7320508f;
    for (int i = 0; i < m->n_tensors; i++) {
        lomo_tensor *t = &m->tensors[i];
        size_t n = (size_t)t->numel, j;
        float *h = (float *)malloc(n * sizeof(float));
        for (j = 0; j < n; j++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            h[j] = t->ndim == 2 ? a * ((float)(x >> 40) * (2.0f / 16777216.0f) - 1.0f)
                 : (t->kind == LOMO_ATTN_NORM || t->kind == LOMO_MLP_NORM || t->kind == LOMO_FINAL_NORM) ? 1.0f : 0.0f;
        }
        if (t->dtype != LOMO_F32)
            for (j = 0; j < n; j++)
                ((uint16_t *)h)[j] = t->dtype == LOMO_BF16 ? lomo_f32_to_bf16(h[j]) : lomo_f32_to_f16(h[j]);
        m->be->upload(m->be->ctx, t->data, h, n * (t->dtype == LOMO_F32 ? 4 : 2));
        free(h);
    }
}

static double now(void) {
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);   /* C11 */
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* y (n,n) = x (n,n) W^T through the CPU backend's matmul, best of 5 */
static int sgemm_peak(int n, const char *out) {
    const lomo_backend *be = lomo_cpu_backend();
    size_t nn = (size_t)n * n, i;
    float *x = (float *)malloc(nn * 4), *w = (float *)malloc(nn * 4), *y = (float *)malloc(nn * 4);
    lomo_tensor wt;
    double best = 1e30;
    uint64_t s = 1;
    if (!x || !w || !y) { fprintf(stderr, "bench_cpu: out of memory\n"); return 1; }
    for (i = 0; i < nn; i++) { x[i] = (float)(lomo_rand_u64(&s) >> 40) * 1e-7f - 0.8f; w[i] = (float)(lomo_rand_u64(&s) >> 40) * 1e-7f - 0.8f; }
    memset(&wt, 0, sizeof wt);
    wt.data = w; wt.dtype = LOMO_F32; wt.ndim = 2; wt.shape[0] = wt.shape[1] = n; wt.numel = (int64_t)nn;
    snprintf(wt.name, sizeof wt.name, "w");
    for (int r = 0; r < 6; r++) {
        double t0 = now();
        be->matmul_fwd(be->ctx, y, x, &wt, NULL, n, n, n, 0);
        if (r > 0 && now() - t0 < best) best = now() - t0;
    }
    double gf = 2.0 * n * n * (double)n / best / 1e9;
    printf("sgemm peak (%s, n=%d, %d threads): %.1f GFLOP/s\n", be->name, n,
#ifdef _OPENMP
           omp_get_max_threads(),
#else
           1,
#endif
           gf);
    printf("matmuls: %s\n", lomo_cpu_blas());
    if (out) {
        FILE *f = fopen(out, "w");
        if (!f) { fprintf(stderr, "bench_cpu: cannot write %s\n", out); return 1; }
        fprintf(f, "{\"sgemm_n\": %d, \"gflops\": %.2f, \"backend\": \"%s\", \"blas\": \"%s\"}\n", n, gf, be->name, lomo_cpu_blas());
        fclose(f);
    }
    free(x); free(w); free(y);
    return 0;
}

/* writes n floats: what was in the caches before is gone */
static void evict(float *p, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) p[i] = (float)i;
}

/* --gram-cost: what per-tensor clipping pays per weight on this CPU (fp32, the CPU table), at
   the clip bench's layer shapes and a range of token counts N: the tensor's norm from the Gram
   matrices (wgrad_sqnorm) + the rule inside the dW GEMM (linear_update), against the formed
   path (dW GEMM, its sum of squares, the update pass); best of 7 each, each path starting with
   the weight and the gradient buffer out of the caches, as in a step that streams the model.
   The driver fuses where 5 N (O + K) <= O K (lomo__gram_fuse_cheaper); the table shows where
   that rule sits. */
static int gram_cost(const char *out) {
    const lomo_backend *be = lomo_cpu_backend();
    static const int shapes[][2] = {{1024, 1024}, {1024, 2816}, {2816, 1024}}, Ns[] = {64, 128, 192, 256, 384};
    FILE *f = out ? fopen(out, "w") : NULL;
    if (out && !f) { fprintf(stderr, "bench_cpu: cannot write %s\n", out); return 1; }
    if (!be->linear_update) { fprintf(stderr, "bench_cpu: --gram-cost needs the CBLAS build (linear_update)\n"); return 1; }
    printf("per-tensor clipping per weight, fp32, %s, %d threads: ms, best of 7\n", lomo_cpu_blas(),
#ifdef _OPENMP
           omp_get_max_threads()
#else
           1
#endif
    );
    printf("| K x O | N | 5N(O+K)/(OK) | Gram norm (hot) | Gram norm + rule in the GEMM | dW + norm + update | fused / formed |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|\n");
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (size_t ni = 0; ni < sizeof Ns / sizeof Ns[0]; ni++) {
            int K = shapes[si][0], O = shapes[si][1], N = Ns[ni];
            size_t nw = (size_t)O * K;
            float *dy = (float *)malloc(4 * (size_t)N * O), *x = (float *)malloc(4 * (size_t)N * K);
            float *w = (float *)malloc(4 * nw), *g = (float *)malloc(4 * nw), *sc = (float *)malloc(8 * (size_t)N * N);
            uint64_t st = 3;
            double best[3] = {1e30, 1e30, 1e30}, sink = 0;
            size_t flush_n = (size_t)64 << 20;   /* 256 MiB, beyond any last-level cache */
            float *flush = (float *)malloc(4 * flush_n);
            lomo_tensor wt;
            lomo_update_args a;
            if (!dy || !x || !w || !g || !sc || !flush) { fprintf(stderr, "bench_cpu: out of memory\n"); return 1; }
            for (size_t i = 0; i < (size_t)N * O; i++) dy[i] = (float)(lomo_rand_u64(&st) >> 40) * 1e-7f - 0.8f;
            for (size_t i = 0; i < (size_t)N * K; i++) x[i] = (float)(lomo_rand_u64(&st) >> 40) * 1e-7f - 0.8f;
            for (size_t i = 0; i < nw; i++) w[i] = (float)(lomo_rand_u64(&st) >> 40) * 1e-8f - 0.08f;
            memset(&wt, 0, sizeof wt);
            wt.data = w; wt.dtype = LOMO_F32; wt.ndim = 2; wt.shape[0] = O; wt.shape[1] = K; wt.numel = wt.shard_len = (int64_t)nw;
            snprintf(wt.name, sizeof wt.name, "w");
            memset(&a, 0, sizeof a);
            a.rule = LOMO_OPT_LOMO; a.lr = 1e-9f; a.inv_loss_scale = 1.0f; a.clip_coef = 0.5f; a.step = 1; a.param_sumsq = -1;
            be->set_scratch(be->ctx, sc, 8 * (size_t)N * N, LOMO_F32);
            for (int r = 0; r < 8; r++) {   /* each path starts with w and the gradient buffer out of the caches */
                double t0, t1;
                evict(flush, flush_n);
                t0 = now();
                sink += be->wgrad_sqnorm(be->ctx, dy, x, N, K, O);
                be->linear_update(be->ctx, &wt, dy, x, N, K, O, g, nw, &a);
                t1 = now();
                if (r > 0 && t1 - t0 < best[1]) best[1] = t1 - t0;
                t0 = now();
                sink += be->wgrad_sqnorm(be->ctx, dy, x, N, K, O);   /* dy, x in cache again: the Gram norm alone */
                t1 = now();
                if (r > 0 && t1 - t0 < best[0]) best[0] = t1 - t0;
                evict(flush, flush_n);
                t0 = now();
                be->matmul_bwd_w(be->ctx, g, dy, x, N, K, O, 0);
                sink += be->sumsq(be->ctx, g, nw);
                be->update(be->ctx, &wt, g, NULL, NULL, &a);
                t1 = now();
                if (r > 0 && t1 - t0 < best[2]) best[2] = t1 - t0;
            }
            be->set_scratch(be->ctx, NULL, 0, LOMO_F32);
            if (be->check(be->ctx) || sink != sink) { fprintf(stderr, "bench_cpu: --gram-cost: %s\n", lomo_error()); return 1; }
            double rule = 5.0 * N * (O + K) / ((double)O * K), ratio = best[1] / best[2];
            printf("| %d x %d | %d | %.2f%s | %.3f | %.3f | %.3f | %.2fx |\n", K, O, N, rule, rule <= 1.0 ? " (fused)" : "",
                   1e3 * best[0], 1e3 * best[1], 1e3 * best[2], ratio);
            if (f) fprintf(f, "{\"K\": %d, \"O\": %d, \"N\": %d, \"rule\": %.4f, \"gram_ms\": %.4f, \"gram_fused_ms\": %.4f, "
                              "\"formed_ms\": %.4f, \"ratio\": %.4f, \"blas\": \"%s\"}\n", K, O, N, rule, 1e3 * best[0],
                           1e3 * best[1], 1e3 * best[2], ratio, lomo_cpu_blas());
            free(dy); free(x); free(w); free(g); free(sc); free(flush);
        }
    if (f) fclose(f);
    return 0;
}

int main(int argc, char **argv) {
    int dim = 512, layers = 6, heads = 8, kv = 8, hidden = 1376, vocab = 6144;
    int batch = 4, seq = 256, steps = 5, warmup = 1, ckpt = 0, tied = 0, no_finite_check = 0, loss_scaling = 0, pass_cache = 0;
    float lr = 1e-3f, clip = 0.0f;
    const char *out = NULL, *clip_mode = "global", *dtype = "f32", *optimizer = "lomo", *device = "cpu";
    double peak_tflops = 0, peak_gflops = 0;
    int sgemm_n = 0, no_fused = 0, gram = 0;
    static lomo_backend cpu_plain;   /* --no-fused-update: the CPU table without linear_update (0.7's per-tensor path) */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "0";
        if (!strcmp(a, "--checkpointing")) { ckpt = 1; continue; }
        if (!strcmp(a, "--tied")) { tied = 1; continue; }
        if (!strcmp(a, "--no-finite-check")) { no_finite_check = 1; continue; }
        if (!strcmp(a, "--no-fused-update")) { no_fused = 1; continue; }
        if (!strcmp(a, "--gram-cost")) { gram = 1; continue; }
        i++;
        if (!strcmp(a, "--dim")) dim = atoi(v);
        else if (!strcmp(a, "--layers")) layers = atoi(v);
        else if (!strcmp(a, "--heads")) heads = atoi(v);
        else if (!strcmp(a, "--kv-heads")) kv = atoi(v);
        else if (!strcmp(a, "--hidden")) hidden = atoi(v);
        else if (!strcmp(a, "--vocab")) vocab = atoi(v);
        else if (!strcmp(a, "--batch")) batch = atoi(v);
        else if (!strcmp(a, "--seq")) seq = atoi(v);
        else if (!strcmp(a, "--steps")) steps = atoi(v);
        else if (!strcmp(a, "--warmup")) warmup = atoi(v);
        else if (!strcmp(a, "--lr")) lr = (float)atof(v);
        else if (!strcmp(a, "--clip-norm")) clip = (float)atof(v);
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--clip-mode")) clip_mode = v;
        else if (!strcmp(a, "--dtype")) dtype = v;
        else if (!strcmp(a, "--optimizer")) optimizer = v;
        else if (!strcmp(a, "--pass-cache")) pass_cache = !strcmp(v, "on") ? 1 : !strcmp(v, "off") ? -1 : 0;
        else if (!strcmp(a, "--loss-scaling")) loss_scaling = !strcmp(v, "on") ? 1 : !strcmp(v, "off") ? -1 : 0;
        else if (!strcmp(a, "--device")) device = v;
        else if (!strcmp(a, "--peak-tflops")) peak_tflops = atof(v);
        else if (!strcmp(a, "--peak-gflops")) peak_gflops = atof(v);
        else if (!strcmp(a, "--sgemm-peak")) sgemm_n = atoi(v);
        else { fprintf(stderr, "bench_cpu: unknown flag %s\n", a); return 2; }
    }
    if (sgemm_n > 0) return sgemm_peak(sgemm_n, out);
    if (gram) return gram_cost(out);
    lomo_config c;
    lomo_config_default(&c, dim, hidden, layers, heads, kv, vocab);
    c.tie_embeddings = tied;
    c.max_seq_len = seq;
    lomo_load_opts lo = {!strcmp(dtype, "bf16") ? LOMO_BF16 : !strcmp(dtype, "f16") ? LOMO_F16 : LOMO_F32, NULL, NULL};
    char gpu_name[256] = "";
    double ctx_mib = 0.0;
#ifdef LOMO_CUDA
    size_t ctx_free = 0, ctx_total = 0;
#endif
    if (!strcmp(device, "cuda")) {
#ifdef LOMO_CUDA
        struct cudaDeviceProp prop;
        if (!(lo.backend = lomo_cuda_backend(0))) { fprintf(stderr, "bench: %s\n", lomo_error()); return 1; }
        if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) snprintf(gpu_name, sizeof gpu_name, "%s", prop.name);
        /* the device memory in use before any model: CUDA context + the backend's stream and cuBLAS handle */
        if (!lomo_cuda_mem_info(lo.backend, &ctx_free, &ctx_total)) ctx_mib = (double)(ctx_total - ctx_free) / 1048576.0;
        /* dense bf16 tensor-core peaks (no sparsity): H100/H200 SXM 989 TFLOP/s, A100 312 */
        if (!peak_tflops) peak_tflops = strstr(gpu_name, "H100") || strstr(gpu_name, "H200") ? 989.4
                                      : strstr(gpu_name, "A100") ? 312.0 : 0.0;
#else
        fprintf(stderr, "bench: --device cuda needs the -DLOMO_CUDA build (make cuda)\n");
        return 2;
#endif
    }
    if (no_fused && !lo.backend) {
        cpu_plain = *lomo_cpu_backend();
        cpu_plain.linear_update = NULL;
        lo.backend = &cpu_plain;
    }
    lomo_model *m = lomo_model_new(&c, &lo);
    if (!m) { fprintf(stderr, "bench_cpu: %s\n", lomo_error()); return 1; }
#ifdef LOMO_CUDA
    if (!m->be->host_memory) {   /* made on the device: a 7B model's host-side init would take minutes */
        if (lomo_cuda_init_random(m, 1, 0.02f)) { fprintf(stderr, "bench: %s\n", lomo_error()); return 1; }
    } else
#endif
    bench_init(m, 0.02f);
    lomo_train_opts o;
    memset(&o, 0, sizeof o);
    o.batch = batch; o.seq_len = seq; o.checkpointing = ckpt; o.clip_norm = clip; o.no_finite_check = no_finite_check;
    o.loss_scaling = loss_scaling; o.pass_cache = pass_cache;
    o.clip_mode = !strcmp(clip_mode, "gram") ? LOMO_CLIP_GLOBAL_GRAM : !strcmp(clip_mode, "tensor") ? LOMO_CLIP_TENSOR : LOMO_CLIP_GLOBAL;
    o.optimizer = !strcmp(optimizer, "adalomo") ? LOMO_OPT_ADALOMO : !strcmp(optimizer, "adamw") ? LOMO_OPT_ADAMW : LOMO_OPT_LOMO;
    lomo_trainer *t = lomo_trainer_new(m, &o);
    if (!t) { fprintf(stderr, "bench_cpu: %s\n", lomo_error()); return 1; }
    int32_t *tok = (int32_t *)malloc(sizeof(int32_t) * batch * seq);
    uint64_t s = 42;
    for (int i = 0; i < batch * seq; i++) tok[i] = (int32_t)(lomo_rand_u64(&s) % (uint64_t)vocab);
    lomo_step_info info, first;
    memset(&first, 0, sizeof first);
    for (int i = 0; i < warmup; i++) lomo_step(t, tok, NULL, lr, &first);
    double t0 = now();
    for (int i = 0; i < steps; i++) {
        if (lomo_step(t, tok, NULL, lr, &info)) { fprintf(stderr, "bench_cpu: %s\n", lomo_error()); return 1; }
        if (i == 0 && !warmup) first = info;
    }
    double dt = now() - t0, tps = (double)batch * seq * steps / dt;
    /* model FLOPs per token: 6 x parameters (embedding lookups excluded) + attention 12 L C T */
    double n_mat = (double)lomo_n_params(m) - (double)vocab * dim, flops_tok = 6.0 * n_mat + 12.0 * layers * dim * seq;
    double mfu = peak_tflops > 0 ? tps * flops_tok / (peak_tflops * 1e12) : 0.0;
    /* the step's model FLOPs, as in the comment at the top */
    double n_tok = (double)batch * seq, n_head = (double)vocab * dim, n_layers = (double)lomo_n_params(m) - n_head * (tied ? 1 : 2);
    double step_flops = n_tok * ((6.0 + 2.0 * ckpt) * n_layers + 6.0 * n_head)
                      + (3.0 + ckpt) * 2.0 * batch * (double)seq * seq * (double)heads * (dim / heads) * layers;
    double gflops = step_flops * steps / dt / 1e9;
    /* the cost of widening: every weight widened to fp32 once, through the
       backend's own widening (the one each matmul on 16-bit storage runs),
       best of 5; 0 for fp32 storage and on the GPU */
    double widen_ms = 0.0, narrow_ms = 0.0;
    int scaling = loss_scaling > 0 || (loss_scaling == 0 && lo.dtype == LOMO_F16);   /* as lomo_trainer_new decides */
#ifndef LOMO_CUDA
    if (m->cfg.dtype != LOMO_F32) {
        widen_ms = 1e30;
        for (int r = 0; r < 5; r++) {
            double w0 = now();
            for (int i = 0; i < m->n_tensors; i++)
                if (!lomo__f32(m->be->ctx, &m->tensors[i])) { fprintf(stderr, "bench_cpu: widening failed\n"); return 1; }
            if ((now() - w0) * 1e3 < widen_ms) widen_ms = (now() - w0) * 1e3;
        }
        /* and the narrowing: the built-in LOMO update of every linear layer's
           weight once from an fp32 gradient (lr 0: the weights keep their bits),
           the pass a 16-bit step makes over each such gradient where fp32
           storage has the dW GEMM update the weight itself (beta = the decay);
           the embedding table is updated by a pass in either dtype. Best of 5 */
#define LINEAR_W(t) ((t)->ndim == 2 && !strstr((t)->name, "embed_tokens"))
        int64_t big = 0;
        for (int i = 0; i < m->n_tensors; i++) if (LINEAR_W(&m->tensors[i]) && m->tensors[i].numel > big) big = m->tensors[i].numel;
        float *g = (float *)malloc(sizeof(float) * (size_t)big);
        for (int64_t k = 0; k < big; k++) g[k] = 1e-3f * (float)((int64_t)(lomo_rand_u64(&s) % 2001) - 1000);
        lomo_update_args ua;
        memset(&ua, 0, sizeof ua);
        ua.rule = LOMO_OPT_LOMO; ua.lr = 0.0f; ua.inv_loss_scale = 1.0f; ua.clip_coef = 1.0f; ua.step = 1;
        narrow_ms = 1e30;
        for (int r = 0; r < 5; r++) {
            double w0 = now();
            for (int i = 0; i < m->n_tensors; i++)
                if (LINEAR_W(&m->tensors[i])) m->be->update(m->be->ctx, &m->tensors[i], g, NULL, NULL, &ua);
            if ((now() - w0) * 1e3 < narrow_ms) narrow_ms = (now() - w0) * 1e3;
        }
        free(g);
    }
#endif
    size_t dev_free = 0, dev_total = 0;
#ifdef LOMO_CUDA
    if (!m->be->host_memory) lomo_cuda_mem_info(lo.backend, &dev_free, &dev_total);
#endif
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss = ru.ru_maxrss / 1024.0;
    lomo_memory r = lomo_memory_report(m);
    size_t formula[LOMO_MEM_NTAGS];
    size_t total = lomo_memory_formula_model(m, &o, formula);   /* m's storage dtype, not c's fp32 */
    lomo_train_opts no_pc = o;   /* whether the trainer keeps the pass cache: the formula counts it */
    size_t formula_no_pc[LOMO_MEM_NTAGS];
    no_pc.pass_cache = -1;
    lomo_memory_formula_model(m, &no_pc, formula_no_pc);
    int pc_on = formula[LOMO_MEM_WORKSPACE] != formula_no_pc[LOMO_MEM_WORKSPACE];
    printf("lomo (%s%s%s), %.1fM params, %s, %s, B=%d T=%d, checkpointing %s, clip-norm %g (%s), pass cache %s, %d threads\n",
           m->be->name, gpu_name[0] ? ", " : "", gpu_name, lomo_n_params(m) / 1e6, dtype, optimizer, batch, seq, ckpt ? "on" : "off", clip, clip_mode,
           pc_on ? "on" : "off",
#ifdef _OPENMP
           omp_get_max_threads()
#else
           1
#endif
    );
    if (m->be->host_memory) printf("matmuls: %s\n", lomo_cpu_blas());
    printf("tokens/s %.1f   step %.3f s   loss %.4f -> %.4f   peak RSS %.1f MiB   tracked peak %.1f MiB (formula %.1f MiB)\n",
           tps, dt / steps, first.loss, info.loss, rss, r.total_peak / 1048576.0, total / 1048576.0);
    lomo_memory_print(stdout, &r);
    if (peak_tflops > 0) printf("MFU %.1f%% (%.3g FLOP/token, peak %.1f TFLOP/s)\n", 100 * mfu, flops_tok, peak_tflops);
    printf("achieved %.1f GFLOP/s (%.4g FLOP/step)", gflops, step_flops);
    if (peak_gflops > 0) printf(", %.0f%% of the sgemm peak %.1f GFLOP/s", 100 * gflops / peak_gflops, peak_gflops);
    printf("\n");
    if (widen_ms > 0) printf("widening every weight once (%s -> fp32): %.2f ms, %.1f%% of a step; updating every linear weight "
                             "from an fp32 gradient once: %.2f ms, %.1f%%; loss scaling %s\n", dtype, widen_ms,
                             100 * widen_ms / (1e3 * dt / steps), narrow_ms, 100 * narrow_ms / (1e3 * dt / steps),
                             scaling ? "on (one more backward pass)" : "off");
    if (out) {
        FILE *f = fopen(out, "w");
        if (!f) { fprintf(stderr, "bench_cpu: cannot write %s\n", out); return 1; }
        fprintf(f, "{\"impl\": \"lomo\", \"backend\": \"%s\", \"blas\": \"%s\", \"gpu\": \"%s\", \"mfu\": %.4f, \"device_used_mib\": %.1f, \"context_mib\": %.1f, "
                   "\"tokens_per_s\": %.2f, \"step_ms\": %.3f, \"widen_ms\": %.3f, \"narrow_ms\": %.3f, \"loss_scaling\": %d, \"peak_rss_mib\": %.1f, \"step_flops\": %.6g, \"gflops\": %.3f, "
                   "\"tracked_peak_mib\": %.2f, \"formula_mib\": %.2f, \"params\": %lld, \"loss_first\": %.5f, "
                   "\"loss_last\": %.5f, \"config\": {\"dim\": %d, \"layers\": %d, \"heads\": %d, \"kv_heads\": %d, "
                   "\"hidden\": %d, \"vocab\": %d, \"batch\": %d, \"seq\": %d, \"steps\": %d, \"checkpointing\": %d, "
                   "\"clip_norm\": %g, \"clip_mode\": \"%s\", \"dtype\": \"%s\", \"optimizer\": \"%s\", \"finite_check\": %d, \"pass_cache\": %d, \"fused_update\": %d}}\n",
                m->be->name, m->be->host_memory ? lomo_cpu_blas() : "cuBLAS", gpu_name, mfu, (double)(dev_total - dev_free) / 1048576.0, ctx_mib, tps, 1e3 * dt / steps, widen_ms, narrow_ms, scaling, rss, step_flops, gflops, r.total_peak / 1048576.0, total / 1048576.0,
                (long long)lomo_n_params(m), first.loss, info.loss, dim, layers, heads, kv, hidden, vocab,
                batch, seq, steps, ckpt, clip, clip_mode, dtype, optimizer, !no_finite_check, pc_on, m->be->linear_update != NULL);
        fclose(f);
    }
    free(tok);
    lomo_trainer_free(t);
    lomo_model_free(m);
    return 0;
}
