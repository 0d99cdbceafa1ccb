/* test_mpi.c - ZeRO-3 style parameter sharding over MPI ranks on the CPU.
   Run as `mpirun -np N build/test_mpi` (tests/test_mpi.sh runs N = 2 and 3).
   Every rank trains a sharded model on its slice of a global batch; every
   rank also trains an unsharded reference on the whole batch (concatenated
   slices), and the two must agree:
   - LOMO with clipping by norm and value and weight decay, tied and untied;
     AdaLomo (statistics over whole tensors); AdamW; micro-batches (M = 2);
     per-tensor clipping; the LM head in chunks of 3 tokens (0.6): <= 1e-6
     relative per tensor after 3 steps (fp32
     sums over ranks in another order), losses too (see compare() for the
     one tensor adaptive rules cannot be compared on);
   - each rank holds ~1/N of the parameter bytes;
   - a sharded model saves exactly the checkpoint a single process saves
     (bytes compared), and loads back to the same shards; a sharded AdamW
     run saved with its state and resumed continues bitwise;
   - ranks that disagree on the batch are refused with a message naming
     the rank and the field. */
#define LOMO_IMPLEMENTATION
#include "../lomo.h"
#include "test_util.h"

static lomo_comm *comm;
static int rank, nranks;
static int family;   /* 0.5: 1 Gemma 3 (q/k norms, post-norms, local layers, softcapped head), 2 Qwen3 */
static int head_chunk;   /* 0.6: lomo_train_opts.head_chunk of both runs (the head in chunks of tokens) */

static lomo_model *make(const lomo_comm *c, lomo_dtype dt, int tied, uint64_t seed) {
    lomo_config cfg;
    lomo_config_default(&cfg, 16, 40, 2, 4, 2, 37);
    cfg.tie_embeddings = tied; cfg.qkv_bias = 1; cfg.o_bias = 1;   /* llama attention_bias */
    if (family == 1) {
        strcpy(cfg.model_type, "gemma3_text"); cfg.gemma = 3; cfg.qk_norm = 1; cfg.local_window = 3; cfg.local_pattern = 2;
        cfg.query_pre_attn_scalar = 6.0f; cfg.final_softcap = 3.0f; cfg.rope_local_theta = 100.0f;
    }
    if (family == 2) { strcpy(cfg.model_type, "qwen3"); cfg.qk_norm = 1; }
    lomo_load_opts lo = {dt, NULL, c};
    lomo_model *m = lomo_model_new(&cfg, &lo);
    lomo_model_init_random(m, seed, 0.3f);
    /* norms and biases as trained models have them, not 1 and 0 (set on the
       whole tensor, then this rank's part kept) */
    uint64_t s = seed;
    for (int i = 0; i < m->n_tensors; i++) {
        lomo_tensor *t = &m->tensors[i];
        if (t->ndim != 1) continue;
        float *h = (float *)malloc(sizeof(float) * (size_t)lomo__shard_cap(m, t) * (c ? c->size : 1) + 4);
        for (int64_t j = 0; j < t->numel; j++)
            h[j] = (t->kind == LOMO_ATTN_NORM || t->kind == LOMO_MLP_NORM || t->kind == LOMO_FINAL_NORM ? 1.0f : 0.0f) +
                   (float)(0.2 * lomo__rng_normal(&s));
        memmove(h, h + t->shard_off, sizeof(float) * (size_t)t->shard_len);
        lomo__upload_f32(m, t, h);
        free(h);
    }
    return m;
}

/* a sharded tensor, gathered whole on every rank, as floats */
static float *gather(const lomo_model *m, const lomo_tensor *t) {
    size_t cap = (size_t)lomo__shard_cap(m, t), es = lomo__dtype_size(t->dtype);
    void *all = malloc(cap * es * (size_t)nranks);
    float *f = (float *)malloc(sizeof(float) * (size_t)t->numel);
    comm->all_gather(comm->ctx, all, t->data, cap * es);
    lomo_tensor v = *t;
    v.data = all;
    for (int64_t i = 0; i < t->numel; i++) f[i] = lomo__elem(&v, (size_t)i);
    free(all);
    return f;
}

/* k_proj.bias has an exactly zero true gradient (adding a constant to every
   key leaves each softmax unchanged): its computed gradient is fp32 rounding
   noise, which adaptive rules (AdaLomo's vector state, AdamW) turn into
   +-lr steps whose sign depends on the summation order. It is skipped for
   them (adaptive = 1); every other tensor must agree. */
static double compare(const lomo_model *sh, const lomo_model *ref, int *bitwise, int adaptive) {
    double worst = 0;
    *bitwise = 1;
    for (int i = 0; i < ref->n_tensors; i++) {
        if (adaptive && strstr(ref->tensors[i].name, "k_proj.bias")) continue;
        float *g = gather(sh, &sh->tensors[i]);
        float *r = (float *)malloc(sizeof(float) * (size_t)ref->tensors[i].numel);
        for (int64_t j = 0; j < ref->tensors[i].numel; j++) r[j] = lomo__elem(&ref->tensors[i], (size_t)j);
        double e = tu_rel_err(g, r, (size_t)ref->tensors[i].numel);
        if (e > 1e-6 && rank == 0 && getenv("LOMO_TEST_VERBOSE")) printf("    %s: %.2e\n", ref->tensors[i].name, e);
        worst = fmax(worst, e);
        *bitwise &= !memcmp(g, r, sizeof(float) * (size_t)ref->tensors[i].numel);
        free(g); free(r);
    }
    return worst;
}

static void run(const char *name, lomo_dtype dt, int tied, int optimizer, int micro, int clip_mode, int sr,
                int want_bitwise) {
    const int B = 2, T = 7;
    lomo_model *sh = make(comm, dt, tied, 3), *ref = make(NULL, dt, tied, 3);
    lomo_train_opts o;
    memset(&o, 0, sizeof o);
    o.batch = B; o.seq_len = T; o.micro_batches = micro; o.optimizer = optimizer; o.clip_mode = clip_mode;
    o.clip_norm = 0.5f; o.clip_value = optimizer == LOMO_OPT_LOMO ? 0.05f : 0.0f; o.weight_decay = 0.01f;
    o.stochastic_rounding = sr; o.seed = 5; o.loss_scaling = -1; o.head_chunk = head_chunk;
    lomo_trainer *ts = lomo_trainer_new(sh, &o);
    o.batch = B * nranks;                      /* the reference sees the whole global batch */
    lomo_trainer *tr = lomo_trainer_new(ref, &o);
    int M = micro > 1 ? micro : 1, G = B * M * nranks;
    int32_t *tok = (int32_t *)malloc(sizeof(int32_t) * G * T), *lab = (int32_t *)malloc(sizeof(int32_t) * G * T);
    int32_t *mine = (int32_t *)malloc(sizeof(int32_t) * B * M * T), *mlab = (int32_t *)malloc(sizeof(int32_t) * B * M * T);
    float lr = optimizer == LOMO_OPT_LOMO ? 0.05f : 0.01f;
    double lworst = 0;
    CHECK(ts && tr, "%s: trainer: %s", name, lomo_error());
    if (!ts || !tr) return;
    uint64_t s = 99;
    for (int step = 0; step < 3; step++) {
        for (int i = 0; i < G * T; i++) { tok[i] = (int32_t)(lomo__rng_next(&s) % 37); lab[i] = i % 11 == 5 ? -100 : tok[i]; }
        /* rank r takes micro-batch rows so that the ranks' batches, concatenated in
           micro-batch order, are the reference's micro-batches: reference micro-batch
           j = rows [j*B*N, (j+1)*B*N), of which rank r owns rows j*B*N + r*B .. + B */
        for (int j = 0; j < M; j++)
            for (int b = 0; b < B; b++) {
                size_t src = ((size_t)j * B * nranks + (size_t)rank * B + b) * T, dst = ((size_t)j * B + b) * T;
                memcpy(mine + dst, tok + src, sizeof(int32_t) * T);
                memcpy(mlab + dst, lab + src, sizeof(int32_t) * T);
            }
        lomo_step_info is, ir;
        CHECK(lomo_step(ts, mine, mlab, lr, &is) == 0, "%s sharded step: %s", name, lomo_error());
        CHECK(lomo_step(tr, tok, lab, lr, &ir) == 0, "%s reference step: %s", name, lomo_error());
        lworst = fmax(lworst, fabs(is.loss - ir.loss) / ir.loss);
    }
    int bitwise;
    double e = compare(sh, ref, &bitwise, optimizer != LOMO_OPT_LOMO);
    if (rank == 0)
        printf("%-28s np=%d: loss %.2e, weights max rel diff %.2e%s\n", name, nranks, lworst, e, bitwise ? " (bitwise)" : "");
    CHECK(lworst <= 1e-6 && e <= 1e-6, "%s: sharded != single process on the whole batch: loss %g weights %g", name, lworst, e);
    if (want_bitwise) CHECK(bitwise, "%s: expected bitwise equality", name);
    lomo_memory r = lomo_memory_report(sh), rr = lomo_memory_report(ref);
    double share = (double)r.peak[LOMO_MEM_PARAMS] / (double)rr.peak[LOMO_MEM_PARAMS];
    CHECK(share <= 1.0 / nranks + 0.05, "%s: rank %d holds %.3f of the parameter bytes", name, rank, share);
    if (rank == 0 && !strcmp(name, "lomo untied"))
        printf("  parameter bytes on rank 0: %zu of %zu (%.3f; 1/N = %.3f)\n", r.peak[LOMO_MEM_PARAMS],
               rr.peak[LOMO_MEM_PARAMS], share, 1.0 / nranks);
    lomo_trainer_free(ts); lomo_trainer_free(tr);
    lomo_model_free(sh); lomo_model_free(ref);
    free(tok); free(lab); free(mine); free(mlab);
}

static int same_file(const char *a, const char *b) {
    char *x, *y;
    size_t nx, ny;
    if (lomo__read_file(a, &x, &nx) || lomo__read_file(b, &y, &ny)) return 0;
    int same = nx == ny && !memcmp(x, y, nx);
    free(x); free(y);
    return same;
}

static void test_save_load(void) {
    lomo_load_opts lo = {LOMO_F32, NULL, comm};
    lomo_model *sh = lomo_load("tests/ref/llama_tied", &lo), *one = lomo_load("tests/ref/llama_tied", NULL);
    char dir[128];
    CHECK(sh && one, "load: %s", lomo_error());
    if (!sh || !one) return;
    CHECK(sh->tensors[1].shard_len < sh->tensors[1].numel, "each rank holds a part");
    snprintf(dir, sizeof dir, "build/tmp_mpi%d_sharded", nranks);
    CHECK(lomo_save(sh, dir) == 0, "sharded save: %s", lomo_error());
    if (rank == 0) {
        char one_dir[128], a[200], b[200];
        snprintf(one_dir, sizeof one_dir, "build/tmp_mpi%d_single", nranks);
        CHECK(lomo_save(one, one_dir) == 0, "single save");
        snprintf(a, sizeof a, "%s/model.safetensors", dir);
        snprintf(b, sizeof b, "%s/model.safetensors", one_dir);
        CHECK(same_file(a, b), "the sharded save must equal the single-process save byte for byte");
        snprintf(a, sizeof a, "%s/config.json", dir);
        snprintf(b, sizeof b, "%s/config.json", one_dir);
        CHECK(same_file(a, b), "config.json");
    }
    MPI_Barrier(MPI_COMM_WORLD);
    lomo_model *back = lomo_load(dir, &lo);
    int same = back != NULL;
    for (int i = 0; same && i < sh->n_tensors; i++)
        same = !memcmp(back->tensors[i].data, sh->tensors[i].data, lomo__stored_bytes(sh, &sh->tensors[i]));
    CHECK(same, "sharded load of the saved checkpoint gives the same shards");
    if (rank == 0) printf("sharded save == single-process save (bytes), reload gives the same shards\n");
    lomo_model_free(back); lomo_model_free(sh); lomo_model_free(one);
}

/* sharded AdamW: 2 steps, save with the trainer state, load + resume, 1 more
   step == 3 uninterrupted sharded steps, bitwise (the state is gathered into
   the checkpoint and sliced back per rank) */
static void test_resume(void) {
    lomo_model *a = make(comm, LOMO_F32, 1, 8), *b = make(comm, LOMO_F32, 1, 8);
    lomo_train_opts o;
    memset(&o, 0, sizeof o);
    o.batch = 2; o.seq_len = 7; o.optimizer = LOMO_OPT_ADAMW; o.clip_norm = 0.5f;
    lomo_trainer *ta = lomo_trainer_new(a, &o), *tb = lomo_trainer_new(b, &o);
    int32_t tok[3][14];
    uint64_t s = 17;
    for (int k = 0; k < 3; k++) for (int i = 0; i < 14; i++) tok[k][i] = (int32_t)(lomo__rng_next(&s) % 37);
    for (int k = 0; k < 3; k++) lomo_step(ta, tok[k], NULL, 0.01f, NULL);
    for (int k = 0; k < 2; k++) lomo_step(tb, tok[k], NULL, 0.01f, NULL);
    char dir[128];
    snprintf(dir, sizeof dir, "build/tmp_mpi%d_resume", nranks);
    lomo_save_opts so;
    memset(&so, 0, sizeof so);
    so.trainer = tb;
    CHECK(lomo_save_ex(b, dir, &so) == 0, "sharded save with trainer: %s", lomo_error());
    lomo_trainer_free(tb); lomo_model_free(b);
    lomo_load_opts lo = {LOMO_F32, NULL, comm};
    lomo_model *c = lomo_load(dir, &lo);
    lomo_trainer *tc = c ? lomo_trainer_new(c, &o) : NULL;
    CHECK(tc && lomo_trainer_resume(tc, dir) == 0 && lomo_trainer_step(tc) == 2, "sharded resume: %s", lomo_error());
    if (tc) lomo_step(tc, tok[2], NULL, 0.01f, NULL);
    int same = c != NULL;
    for (int i = 0; same && i < a->n_tensors; i++)
        same = !memcmp(a->tensors[i].data, c->tensors[i].data, lomo__stored_bytes(a, &a->tensors[i]));
    CHECK(same, "sharded AdamW: save + resume must continue bitwise");
    if (rank == 0) printf("sharded AdamW save + resume == uninterrupted run (bitwise): %s\n", same ? "yes" : "NO");
    lomo_trainer_free(ta); lomo_trainer_free(tc);
    lomo_model_free(a); lomo_model_free(c);
}

static void test_mismatch(void) {
    lomo_model *m = make(comm, LOMO_F32, 0, 1);
    lomo_train_opts o;
    memset(&o, 0, sizeof o);
    o.batch = rank == nranks - 1 ? 3 : 2; o.seq_len = 7;
    lomo_trainer *t = lomo_trainer_new(m, &o);
    CHECK(!t && strstr(lomo_error(), "has batch = "), "disagreeing ranks must be refused: %s", t ? "(accepted)" : lomo_error());
    if (rank == 0 && !t) printf("mismatch refused: %s\n", lomo_error());
    lomo_trainer_free(t);
    lomo_model_free(m);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    comm = lomo_mpi_comm(MPI_COMM_WORLD);
    rank = comm->rank; nranks = comm->size;
    if (getenv("LOMO_TEST_DIE") || getenv("LOMO_TEST_HANG")) {
        /* failure drills (tests/test_mpi.sh): the last rank dies, or stops
           answering, before the others' first collective */
        if (rank == nranks - 1) {
            if (getenv("LOMO_TEST_DIE")) _Exit(7);
            sleep(60);
            _Exit(0);
        }
        lomo_model *m = make(comm, LOMO_F32, 0, 1);
        lomo_train_opts o;
        memset(&o, 0, sizeof o);
        o.batch = 2; o.seq_len = 7;
        lomo_trainer *t = lomo_trainer_new(m, &o);   /* a collective: never completes */
        printf("rank %d: trainer_new returned %p: %s\n", rank, (void *)t, lomo_error());
        return 1;
    }
    /* name, storage, tied, optimizer, micro-batches, clip mode, stochastic rounding, bitwise */
    run("lomo untied", LOMO_F32, 0, LOMO_OPT_LOMO, 1, LOMO_CLIP_GLOBAL, 0, 0);
    run("lomo tied", LOMO_F32, 1, LOMO_OPT_LOMO, 1, LOMO_CLIP_GLOBAL, 0, 0);
    run("adalomo", LOMO_F32, 0, LOMO_OPT_ADALOMO, 1, LOMO_CLIP_GLOBAL, 0, 0);
    run("adamw", LOMO_F32, 0, LOMO_OPT_ADAMW, 1, LOMO_CLIP_GLOBAL, 0, 0);
    run("lomo micro-batches 2, tied", LOMO_F32, 1, LOMO_OPT_LOMO, 2, LOMO_CLIP_GLOBAL, 0, 0);
    run("adalomo micro-batches 2", LOMO_F32, 0, LOMO_OPT_ADALOMO, 2, LOMO_CLIP_GLOBAL, 0, 0);
    run("lomo per-tensor clip", LOMO_F32, 0, LOMO_OPT_LOMO, 1, LOMO_CLIP_TENSOR, 0, 0);
    head_chunk = 3;
    run("lomo untied, head chunks 3", LOMO_F32, 0, LOMO_OPT_LOMO, 1, LOMO_CLIP_GLOBAL, 0, 0);
    run("lomo tied, head chunks 3", LOMO_F32, 1, LOMO_OPT_LOMO, 1, LOMO_CLIP_GLOBAL, 0, 0);
    run("lomo micro 2 tied, chunks 3", LOMO_F32, 1, LOMO_OPT_LOMO, 2, LOMO_CLIP_GLOBAL, 0, 0);
    head_chunk = 0;
    family = 1;
    run("gemma3 lomo tied", LOMO_F32, 1, LOMO_OPT_LOMO, 1, LOMO_CLIP_GLOBAL, 0, 0);
    run("gemma3 adalomo micro 2", LOMO_F32, 0, LOMO_OPT_ADALOMO, 2, LOMO_CLIP_GLOBAL, 0, 0);
    family = 2;
    run("qwen3 lomo untied", LOMO_F32, 0, LOMO_OPT_LOMO, 1, LOMO_CLIP_GLOBAL, 0, 0);
    family = 0;
    test_save_load();
    test_resume();
    test_mismatch();
    /* every rank's verdict, summed */
    int mine[2] = {tu_pass, tu_fail}, all[2];
    MPI_Allreduce(mine, all, 2, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0) printf("test_mpi_np%d: %d passed, %d failed\n", nranks, all[0], all[1]);
    lomo_mpi_comm_free(comm);
    MPI_Finalize();
    return all[1] ? 1 : 0;
}
