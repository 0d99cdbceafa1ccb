/* lomo.h - fine-tune every parameter of a Llama-family model in about the
   memory of inference, with LOMO (LOw-Memory Optimization, arXiv 2306.09782).
   stb-style single header; licence at the end of the file.

   The backward pass walks the model from the top, one parameter tensor at a
   time; the moment a tensor's gradient is complete, a per-tensor update hook
   applies the update rule to it, and the one gradient buffer is reused for the
   next tensor. No optimizer state, no full set of gradients: memory is
   parameters + activations + the largest single gradient.

QUICK START

   In exactly one C or C++ file:
       #define LOMO_IMPLEMENTATION
       #include "lomo.h"
   everywhere else just #include "lomo.h". Build with -fopenmp (optional),
   and -DLOMO_CBLAS -lopenblas for BLAS matmuls (optional), and -lm.

       lomo_model *m = lomo_load("path/to/hf_model", NULL);   // config.json + model.safetensors
       lomo_train_opts o = {0};
       o.batch = 8; o.seq_len = 512; o.checkpointing = 1; o.clip_norm = 1.0f;
       lomo_trainer *t = lomo_trainer_new(m, &o);
       for (step...) {
           lomo_step_info info;
           if (lomo_step(t, tokens, labels, lr, &info)) fprintf(stderr, "%s\n", lomo_error());
       }
       lomo_save(m, "out_dir");                                 // Hugging Face layout again
       lomo_trainer_free(t); lomo_model_free(m);

   tokens and labels are B*T int32 in the transformers convention: position t
   predicts labels[t+1], and -100 marks positions that do not count; the loss
   is the mean over counted positions of the whole batch.

THE UPDATE HOOK

   lomo_train_opts.update (default lomo_update_lomo) is called once per
   parameter tensor per step, with the tensor, its complete fp32 gradient and
   a lomo_update_ctx (step, lr, clip coefficient, 1/loss scale, ...). The
   built-in rule has the semantics of the authors' lomo-optim package:
       norm = global L2 norm of the unclipped gradients (clip_norm > 0 only)
       coef = min(1, clip_norm / (norm + 1e-6))
       g    = clamp(grad * inv_loss_scale, -clip_value, clip_value) * coef
       p    = p * (1 - lr * weight_decay) - lr * g
   Clipping by the global norm needs the norm before any update: lomo_step
   then runs one forward and two backward passes (pass one measures, pass
   two updates; both reuse the stored activations or checkpoints). Cheaper:
   LOMO_CLIP_GLOBAL_GRAM (pass one takes a linear layer's ||dY^T X||^2 from
   the N x N Gram matrices of dY and X where that costs less than forming dW)
   and LOMO_CLIP_TENSOR (each tensor clipped by its own norm, one pass).
   Other built-in rules (lomo_train_opts.optimizer): AdaLomo as lomo-optim
   computes it, and AdamW (torch's) with m and v kept but no gradients.

   Micro-batches (lomo_train_opts.micro_batches = M): forward runs on all M
   keeping each layer's input, then the backward walks the layers from the
   top, running every micro-batch through the current layer and summing its
   gradients before the layer's tensors are updated: one step over M
   micro-batches equals one step over their concatenation.

   Order: loss -> lm_head -> final norm -> layers L-1..0 (down, up, gate,
   post-attention norm, o, v, k, q, input norm) -> embedding. Every dX is
   computed with the old weights, before its tensor is handed to the hook.
   Tied embeddings: the hook sees the sum of both contributions, once, at the
   end. This costs no memory: the lm_head's dlogits stay in the logits buffer
   (an activation the forward allocates anyway) until the embedding's turn.

MEMORY (every allocation is tagged and counted, see lomo_memory_report;
   lomo_memory_formula computes this formula)

   N = batch * seq_len tokens per micro-batch, M micro-batches per step,
   C = hidden_size, H = intermediate_size, L = layers, V = vocab,
   q = heads * head_dim, k = kv_heads * head_dim, P = parameters,
   w = bytes per stored weight (4 fp32, 2 bf16/f16), S = 1 with checkpointing
   or M > 1, L otherwise.

     parameters       w P
     activations      4 N [ M (L+1) C  +  S (3C + 2q + 2k + 3H)  +  C + V ]
                      (each layer's input per micro-batch; S layer working
                      sets; final norm output; logits, which also hold dlogits)
     gradient buffer  4 max(tensor numel)           (M = 1; = 4 V C in most models)
                      4 max(one layer's tensors, V C) (M > 1: a layer's
                      gradients are summed over the micro-batches before its
                      tensors are updated; + 4 C when tied)
     workspace        4 N (M C + C + 2q + 2k + 2H)  (backward scratch; one
                      residual gradient per micro-batch)
                      + 4 max(tensor numel) with 16-bit storage on the CPU
                      (a weight widened for BLAS)
     optimizer state  0 (LOMO); 4 sum(rows + cols) for matrices + 4 numel
                      for vectors (AdaLomo); 8 P (AdamW)

   plus a few floats per token (norm statistics, softmax log-sum-exp, token
   ids) that the formula leaves out: the measured total is within 2% of it.

MIXED PRECISION

   Weights may be stored in bf16 or f16 (lomo_load_opts.dtype); there are no
   fp32 master weights. Activations, norms, RoPE, softmax, the loss and the
   gradient buffer are fp32; each update widens one tensor to fp32, applies
   the rule and rounds back, to nearest-even or stochastically
   (lomo_train_opts.stochastic_rounding: unbiased, from a hash of seed, step,
   tensor and element, so reproducible for any thread count). f16 storage
   turns on dynamic loss scaling: the norm pass also detects overflow, an
   overflowing step is skipped (weights bit-identical) and the scale backs
   off; it grows again after loss_scale_window clean steps.

SHARDING (ZeRO-3 style; lomo_load_opts.comm, LOMO_MPI / LOMO_NCCL)

   Each of N ranks holds a flat 1/N slice of every tensor (padded to
   ceil(numel / N)), and reads only that slice from the checkpoint. Before a
   layer's forward or recompute its tensors are all-gathered into a buffer
   sized for the largest stage (one layer, or the embedding / head) and
   reused; a tensor's gradient, computed from the rank's own micro-batches,
   is reduce-scattered and the rule updates the rank's slice (AdaLomo
   all-reduces it instead: its row, column and RMS statistics cover the
   whole tensor). The loss is the mean over every rank's counted tokens; the
   clip norm sums the slices' squares over ranks. lomo_save gathers tensor by
   tensor and rank 0 writes the checkpoint a single process would write.
   Per device:

     w P / N  +  w max(one layer, V C)  +  activations and workspace (above,
     for the rank's tokens)  +  4 max(tensor numel) (1 + 1/N)  +  optimizer
     state (AdamW: 8 P / N; AdaLomo: its small row/col state, whole)

   bench/sharding_memory.py prints worked figures (README).

OPTIONS (define before including)

   LOMO_IMPLEMENTATION   compile the implementation in this file
   LOMO_STATIC           make every public function static
   LOMO_MPI              parameter sharding over MPI ranks (lomo_mpi_comm; build with mpicc)
   LOMO_NCCL             (lomo_cuda.cuh) sharding over GPUs with NCCL (lomo_nccl_comm)
   LOMO_CBLAS            CPU matmuls through CBLAS (OpenBLAS: link -lopenblas);
                         otherwise plain OpenMP loops. With OpenBLAS, lomo
                         sets OpenBLAS to one thread and splits each matmul
                         over its own OpenMP threads (one thread pool).
   LOMO_MALLOC/LOMO_FREE host allocator (default malloc/free)
   LOMO_ASSERT           assert macro (default assert)

BACKENDS

   The driver calls a table of operations (struct lomo_backend): memory,
   matmul forward/backward, RMSNorm, RoPE, attention, SwiGLU, embedding,
   cross-entropy, sum of squares and the built-in update kernel. The CPU
   table is in this file (lomo_cpu_backend); activations are fp32 row-major.

VERSION HISTORY

   0.1  fp32 CPU: Llama/Mistral/Qwen2 decoders, layer-streaming LOMO with a
        per-tensor hook, two-pass norm clipping, checkpointing, memory
        accounting, safetensors + config.json I/O.
   0.2  Sharded and F16/BF16 checkpoints in and out, whole-directory atomic
        saves, Llama 3 rope scaling, data loading (JSONL, packed tokens,
        multiple choice).
   0.3  bf16/f16 storage with stochastic rounding, fp16 dynamic loss scaling,
        AdaLomo and AdamW, layer-major micro-batching (gradient accumulation
        for LOMO), per-tensor and Gram-matrix norm clipping, trainer state in
        checkpoints.
   0.4  The CUDA backend (lomo_cuda.cuh; compiled, not yet run on a GPU) and
        ZeRO-3 style parameter sharding over MPI ranks (LOMO_MPI) or GPUs
        (LOMO_NCCL).
*/
#ifndef LOMO_H
#define LOMO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#ifdef LOMO_MPI
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1   /* the deprecated MPI C++ bindings are not used */
#endif
#include <mpi.h>
#endif

#ifdef LOMO_STATIC
#define LOMODEF static
#else
#define LOMODEF extern
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================== */
/* types                                                                    */
/* ======================================================================== */

typedef enum lomo_dtype { LOMO_F32 = 0, LOMO_BF16 = 1, LOMO_F16 = 2 } lomo_dtype;

/* Mirrors config.json. */
typedef struct lomo_config {
    int dim;            /* hidden_size */
    int hidden_dim;     /* intermediate_size */
    int n_layers;       /* num_hidden_layers */
    int n_heads;        /* num_attention_heads */
    int n_kv_heads;     /* num_key_value_heads (default: n_heads) */
    int head_dim;       /* head_dim (default: hidden_size / num_attention_heads) */
    int vocab_size;     /* vocab_size */
    int max_seq_len;    /* max_position_embeddings */
    float norm_eps;     /* rms_norm_eps */
    float rope_theta;   /* rope_theta */
    int tie_embeddings; /* tie_word_embeddings */
    int qkv_bias;       /* q/k/v projections carry a bias (attention_bias; always for qwen2) */
    int o_bias;         /* o_proj carries a bias (llama's attention_bias) */
    int rope_type;      /* 0: plain RoPE; 1: Llama 3 frequency scaling (rope type "llama3") */
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;  /* llama3 only */
    int rope_original_max_pos;   /* llama3: original_max_position_embeddings */
    int sliding_window; /* 0: none; mistral's sliding_window (training with seq_len > it is refused) */
    lomo_dtype dtype;   /* torch_dtype */
    char model_type[32];/* "llama", "mistral", "qwen2" */
} lomo_config;

/* ---- tensors and models ---- */

/* What a tensor is, in the order Hugging Face lists a layer's parameters. */
typedef enum lomo_tensor_kind {
    LOMO_EMBED = 0, LOMO_WQ, LOMO_BQ, LOMO_WK, LOMO_BK, LOMO_WV, LOMO_BV,
    LOMO_WO, LOMO_BO, LOMO_W_GATE, LOMO_W_UP, LOMO_W_DOWN, LOMO_ATTN_NORM,
    LOMO_MLP_NORM, LOMO_FINAL_NORM, LOMO_LM_HEAD, LOMO_NKINDS
} lomo_tensor_kind;

typedef struct lomo_tensor {
    char name[96];      /* Hugging Face name, e.g. model.layers.3.self_attn.q_proj.weight */
    lomo_dtype dtype;   /* storage dtype */
    int ndim;           /* 1 or 2 */
    int64_t shape[2];   /* (out, in) for linear weights, as PyTorch stores them */
    int64_t numel;
    void *data;         /* in the memory of the model's backend (host for the CPU) */
    int layer;          /* 0..n_layers-1, or -1 for embedding, final norm, lm_head */
    int kind;           /* lomo_tensor_kind */
    int index;          /* position in lomo_model.tensors */
    int64_t shard_off, shard_len; /* sharded model: data holds elements [shard_off, shard_off + shard_len)
                                     of the flattened tensor (padded to ceil(numel / ranks)); else 0, numel */
} lomo_tensor;

typedef struct lomo_layer {
    lomo_tensor *attn_norm, *wq, *bq, *wk, *bk, *wv, *bv, *wo, *bo;
    lomo_tensor *mlp_norm, *w_gate, *w_up, *w_down;   /* biases are NULL when absent */
} lomo_layer;

/* ---- memory accounting ---- */

typedef enum lomo_mem_tag {
    LOMO_MEM_PARAMS = 0, LOMO_MEM_ACTIVATIONS, LOMO_MEM_GRADIENTS,
    LOMO_MEM_OPTIMIZER, LOMO_MEM_WORKSPACE, LOMO_MEM_COMM,
    LOMO_MEM_KV,       /* generation: KV cache and decode buffers, held only inside lomo_generate / a lomo_kv */
    LOMO_MEM_NTAGS
} lomo_mem_tag;

typedef struct lomo_memory {
    size_t current[LOMO_MEM_NTAGS];   /* bytes held now, per tag */
    size_t peak[LOMO_MEM_NTAGS];      /* most bytes held at once, per tag */
    size_t total_current, total_peak; /* all tags together (peak of the sum) */
} lomo_memory;

typedef struct lomo_backend lomo_backend;
typedef struct lomo_trainer lomo_trainer;

/* ---- parameter sharding across processes (ZeRO-3 style) ----
   A communicator: every rank calls each collective in the same order. The
   MPI one (LOMO_MPI) is in this file, the NCCL one (LOMO_NCCL) in
   lomo_cuda.cuh. Buffers live where the model's backend keeps its memory.
   Each returns 0, or -1 with lomo_error() set (including on timeout). */
typedef struct lomo_comm {
    int rank, size;
    const char *name;
    void *ctx;
    int (*all_reduce_sum)(void *ctx, void *buf, size_t n, int is_double);  /* in place, f32 or f64 */
    int (*all_gather)(void *ctx, void *dst, const void *src, size_t bytes_per_rank);   /* dst = every rank's src, in rank order */
    int (*reduce_scatter_sum)(void *ctx, float *dst, const float *src, size_t n_per_rank); /* dst = sum of src[rank part] */
    int (*broadcast)(void *ctx, void *buf, size_t bytes, int root);
} lomo_comm;

typedef struct lomo_model {
    lomo_config cfg;
    int n_tensors;
    lomo_tensor *tensors;        /* in Hugging Face named_parameters() order */
    lomo_tensor *embed, *final_norm, *lm_head;   /* lm_head == embed when tied */
    lomo_layer *layers;
    const lomo_backend *be;
    const lomo_comm *comm;       /* NULL, or the ranks this model is sharded over */
    lomo_memory mem;             /* everything allocated on the backend for this model */
    lomo_dtype file_dtype;       /* dtype of the checkpoint it was loaded from (saves default to it) */
} lomo_model;

typedef struct lomo_load_opts {
    lomo_dtype dtype;            /* storage dtype: LOMO_F32, LOMO_BF16 or LOMO_F16 */
    const lomo_backend *backend; /* NULL: the CPU backend */
    const lomo_comm *comm;       /* non-NULL: shard every tensor over comm's ranks (each reads only its
                                    shard; lomo_save, lomo_trainer_new, lomo_step become collective) */
} lomo_load_opts;

LOMODEF lomo_model  *lomo_load(const char *hf_dir, const lomo_load_opts *opts);
LOMODEF lomo_model  *lomo_model_new(const lomo_config *cfg, const lomo_load_opts *opts); /* weights uninitialised */
LOMODEF void         lomo_model_init_random(lomo_model *m, uint64_t seed, float std); /* N(0,std) matrices, norms 1, biases 0 */
LOMODEF int          lomo_save(const lomo_model *m, const char *dir);                  /* lomo_save_ex, defaults */
typedef struct lomo_file { const char *name; const void *data; size_t len; } lomo_file;
enum { LOMO_SAVE_AS_LOADED = 0, LOMO_SAVE_F32, LOMO_SAVE_BF16, LOMO_SAVE_F16 };
typedef struct lomo_save_opts {
    int dtype;                /* LOMO_SAVE_AS_LOADED (0: the checkpoint's dtype, F32 for new models),
                                 LOMO_SAVE_F32, LOMO_SAVE_BF16 or LOMO_SAVE_F16 */
    int64_t max_shard_bytes;  /* 0 = 5 GiB; above it: model-0000K-of-0000N.safetensors + index */
    const char *copy_from;    /* NULL, or a model dir whose tokenizer & other non-weight files come along */
    const lomo_file *extra;   /* more files written into the same checkpoint (e.g. a program's own state) */
    int n_extra;
    const struct lomo_trainer *trainer;  /* non-NULL: also trainer.safetensors (see lomo_trainer_resume) */
} lomo_save_opts;
/* Writes config.json + safetensors (sharded above max_shard_bytes) into a
   temporary directory beside dir, then swaps it in with one atomic rename
   (renameat2 RENAME_EXCHANGE on Linux): a save that fails or is killed
   leaves the previous checkpoint at dir complete and unchanged. Files already
   in dir that are not weights (tokenizer, ...) are kept. */
LOMODEF int          lomo_save_ex(const lomo_model *m, const char *dir, const lomo_save_opts *opts);
LOMODEF void         lomo_model_free(lomo_model *m);
LOMODEF lomo_tensor *lomo_find_tensor(lomo_model *m, const char *name);
LOMODEF int64_t      lomo_n_params(const lomo_model *m);
LOMODEF int          lomo_config_default(lomo_config *cfg, int dim, int hidden_dim, int n_layers,
                                         int n_heads, int n_kv_heads, int vocab_size);

/* ---- training ---- */

/* What the update hook is told about the current step and tensor. */
typedef struct lomo_update_ctx {
    int64_t step;          /* 1 for the first step */
    float lr;
    float grad_scale;      /* multiply the gradient by this: clip_coef * inv_loss_scale */
    float inv_loss_scale;  /* 1 / loss scale (1 in fp32) */
    float clip_coef;       /* min(1, clip_norm / (grad_norm + 1e-6)), 1 when norm clipping is off */
    float clip_value;      /* 0 = off; lomo-optim clamps grad*inv_loss_scale to +-clip_value, then applies clip_coef */
    float weight_decay;
    float grad_norm;       /* global L2 norm of the unclipped gradients, -1 when not computed */
    int tensor_index;      /* param->index, and how many tensors the model has */
    int n_tensors;
    const lomo_backend *backend;   /* where param->data and grad live */
    void *stream;                  /* the backend's stream: a CUDA hook launches its kernels there */
    int stochastic_rounding;       /* 16-bit storage: round updates stochastically (else to nearest even) */
    uint64_t seed;                 /* stochastic rounding stream: hash(seed, step, tensor, element) */
} lomo_update_ctx;

/* The per-tensor update hook. Called once per parameter tensor per step, the
   moment its gradient is complete, from the top of the model down. grad is
   fp32, param->numel long, in the backend's memory, valid only during the
   call (the buffer is reused for the next tensor). Return 0, or nonzero to
   abort the step (tensors already updated stay updated). */
typedef int (*lomo_update_fn)(lomo_tensor *param, const float *grad,
                              const lomo_update_ctx *ctx, void *user);

/* The built-in LOMO rule, with the semantics of the authors' lomo-optim:
   g = clamp(grad * inv_loss_scale, -clip_value, clip_value) * clip_coef;
   p = p * (1 - lr * weight_decay) - lr * g. */
LOMODEF int lomo_update_lomo(lomo_tensor *param, const float *grad,
                             const lomo_update_ctx *ctx, void *user);

/* Built-in update rules (lomo_train_opts.optimizer). */
enum { LOMO_OPT_LOMO = 0, LOMO_OPT_ADALOMO, LOMO_OPT_ADAMW };
/* How clip_norm is applied (lomo_train_opts.clip_mode). */
enum {
    LOMO_CLIP_GLOBAL = 0,  /* global L2 norm, from a first backward pass that forms each gradient */
    LOMO_CLIP_GLOBAL_GRAM, /* the same norm; the first pass gets linear layers' ||dY^T X||^2 from the
                              N x N Gram matrices of dY and X where that is cheaper than forming dW */
    LOMO_CLIP_TENSOR       /* per-tensor ("grouped") norm, one pass: the paper's "controversial solution" */
};

typedef struct lomo_train_opts {
    int batch, seq_len;     /* B sequences of T tokens per micro-batch */
    int micro_batches;      /* M >= 1 (0 = 1): a step takes M*B sequences, walked layer by layer */
    int checkpointing;      /* keep only each layer's input; recompute the layer in backward */
    float clip_norm;        /* > 0: clip by norm (see clip_mode) */
    int clip_mode;          /* LOMO_CLIP_* */
    float clip_value;       /* > 0: clamp each gradient element */
    float weight_decay;
    int optimizer;          /* LOMO_OPT_* (used when update is NULL) */
    float adalomo_eps1, adalomo_eps2, adalomo_clip_threshold, adalomo_decay_rate; /* 0 = 1e-30, 1e-3, 1.0, -0.8 */
    float adamw_beta1, adamw_beta2, adamw_eps;   /* 0 = 0.9, 0.999, 1e-8 */
    int stochastic_rounding;/* 16-bit storage: round updated weights stochastically */
    uint64_t seed;          /* for stochastic rounding */
    int loss_scaling;       /* dynamic loss scaling: 0 = on for f16 storage only, 1 = on, -1 = off */
    float loss_scale_init;  /* 0 = 65536 */
    float loss_scale_growth, loss_scale_backoff, loss_scale_min;  /* 0 = 2, 0.5, 1 */
    int loss_scale_window;  /* grow after this many clean steps; 0 = 1000 */
    lomo_update_fn update;  /* NULL: the built-in rule named by optimizer */
    void *update_user;
} lomo_train_opts;

typedef struct lomo_step_info {
    float loss;             /* mean over counted positions */
    float grad_norm;        /* -1 when not computed */
    float clip_coef;
    int64_t n_tokens;       /* counted (label != -100) positions */
    int skipped;            /* 1: non-finite loss or gradient (overflow), or nothing counted; no weight was touched */
    float loss_scale;       /* the scale this step used (1 without loss scaling) */
} lomo_step_info;

LOMODEF lomo_trainer *lomo_trainer_new(lomo_model *m, const lomo_train_opts *opts);
LOMODEF void          lomo_trainer_free(lomo_trainer *t);
/* tokens, labels: B*T int32 on the host; labels may be NULL (= tokens).
   Label convention of transformers: position t predicts labels[t+1]; -100 is ignored. */
LOMODEF int           lomo_step(lomo_trainer *t, const int32_t *tokens, const int32_t *labels,
                                float lr, lomo_step_info *info);
/* Forward only: loss (info->loss) and logits (lomo_logits); no weight changes. */
LOMODEF int           lomo_forward(lomo_trainer *t, const int32_t *tokens, const int32_t *labels,
                                   lomo_step_info *info);
LOMODEF const float  *lomo_logits(const lomo_trainer *t);  /* (B,T,V) after lomo_forward, backend memory */
LOMODEF int64_t       lomo_trainer_step(const lomo_trainer *t);   /* steps taken (skipped ones excluded) */
LOMODEF float         lomo_trainer_loss_scale(const lomo_trainer *t);
/* The trainer's state for resuming: optimizer state (AdaLomo's factored
   moments, AdamW's m and v), step, loss scale and its clean-step count, the
   stochastic-rounding seed. lomo_save_opts.trainer writes it into a
   checkpoint as trainer.safetensors; lomo_trainer_resume reads it back. */
LOMODEF int           lomo_trainer_resume(lomo_trainer *t, const char *checkpoint_dir);

/* ---- training data ---- */

/* Training examples in the convention of transformers: every row is T token
   ids plus T labels of the same length; position t predicts labels[t+1];
   -100 marks positions that do not count.

   lomo_data_open reads the whole file into memory:
   - a path ending in ".jsonl" or ".json": JSON Lines, one object per line,
         {"input_ids": [ints], "labels": [ints]}
     labels is optional (default: input_ids) and may hold -100; other keys
     are ignored; empty or blank lines are skipped. Every element of a line is
     checked, then the example is truncated to seq_len.
   - any other path: packed raw tokens, little-endian uint32, cut into
     consecutive examples of seq_len tokens (the last, partial one is kept);
     labels = input ids.
   Errors name the file and line (or token index and byte offset), the field
   and the offending value, e.g.
         data.jsonl:17: input_ids[5] = 70000 is outside the vocabulary [0, 32000)

   Batches: lomo_data_next fills B rows with the next B examples of the
   current epoch's order, each padded to seq_len with pad_id (labels -100
   there), and returns how many rows are real: B, or fewer at the end of an
   epoch, where the remaining rows are all padding (labels all -100). A batch
   never spans two epochs and never has zero real rows; the call after the
   last example of an epoch starts the next epoch. With shuffle, epoch e's
   order is a Fisher-Yates permutation drawn from splitmix64 seeded from
   (seed, e): the same for the same (seed, e) whatever happened before, so
   lomo_data_tell / lomo_data_seek resume exactly. Without shuffle: file order.
   Note that a batch can have no counted target at all (e.g. one example of a
   single token, or labels all -100). */
typedef struct lomo_data_opts {
    int seq_len;        /* T: every row is truncated or padded to this */
    int vocab_size;     /* ids must be in [0, vocab_size); labels may also be -100 */
    int shuffle;        /* 1: the order of examples is a seeded permutation, new each epoch */
    uint64_t seed;
    int32_t pad_id;     /* input id written into padding, in [0, vocab_size) (labels there are -100) */
} lomo_data_opts;

typedef struct lomo_data lomo_data;
typedef struct lomo_data_pos { int64_t epoch, index; } lomo_data_pos;   /* for resume */

LOMODEF lomo_data    *lomo_data_open(const char *path, const lomo_data_opts *o);
LOMODEF void          lomo_data_free(lomo_data *d);
LOMODEF int64_t       lomo_data_count(const lomo_data *d);   /* number of examples */
/* tokens (and labels, unless NULL): B*seq_len int32 each. Returns the number
   of real rows (1..B), or -1. */
LOMODEF int           lomo_data_next(lomo_data *d, int B, int32_t *tokens, int32_t *labels);
LOMODEF lomo_data_pos lomo_data_tell(const lomo_data *d);    /* epoch and index of the next example */
/* Resume at p (epoch >= 0, 0 <= index < count); 0 or -1. */
LOMODEF int           lomo_data_seek(lomo_data *d, lomo_data_pos p);
/* Example i in file order as one padded row (labels may be NULL); returns its
   real length (after truncation), or -1. */
LOMODEF int           lomo_data_get(const lomo_data *d, int64_t i, int32_t *tokens, int32_t *labels);

/* ---- multiple-choice items ---- */

/* The paper's SuperGLUE-style protocol: JSON Lines, one item per line,
       {"prompt": [ints], "candidates": [[ints], [ints], ...], "answer": i}
   prompt non-empty, at least 2 candidates, each non-empty, every id in
   [0, vocab_size), answer an index into candidates; other keys ignored,
   blank lines skipped. Pointers stay valid until lomo_mc_free. */
typedef struct lomo_mc_item {
    const int32_t *prompt;
    int prompt_len;
    int n_cand;
    const int32_t *const *cand;  /* n_cand candidates... */
    const int *cand_len;         /* ...and their lengths */
    int answer;                  /* index of the correct candidate */
} lomo_mc_item;

typedef struct lomo_mc lomo_mc;

LOMODEF lomo_mc            *lomo_mc_open(const char *path, int vocab_size);
LOMODEF int64_t             lomo_mc_count(const lomo_mc *m);
LOMODEF const lomo_mc_item *lomo_mc_get(const lomo_mc *m, int64_t i);   /* NULL if i is out of range */
LOMODEF void                lomo_mc_free(lomo_mc *m);

/* splitmix64: a reproducible stream of 64-bit values from *state (any seed) */
LOMODEF uint64_t lomo_rand_u64(uint64_t *state);

/* ---- generation: KV cache, sampling (LOMO_NO_GENERATE) ----
   lomo_generate: prefill the prompt, then decode one token at a time with a
   per-layer KV cache (fp32, sized for prompt + max_new_tokens, tagged
   LOMO_MEM_KV in the model's memory report while it exists). The layers run
   through the training forward's own code (lomo__layer_fwd); only RoPE at
   the cache position, the cache write and the attention over the cache
   differ. It takes the model, not a trainer: between lomo_step calls it
   leaves the trainer's state alone and frees what it allocated before it
   returns. Not for a sharded model (lomo_load_opts.comm). */
typedef struct lomo_gen_opts {
    int max_new_tokens;
    float temperature;        /* <= 0: greedy (argmax, lowest id on ties); > 0: sample */
    int top_k;                /* sampling: keep the ids whose logit >= the k-th largest (0: off) */
    float top_p;              /* sampling: nucleus as transformers' TopPLogitsWarper (0 or 1: off) */
    float repetition_penalty; /* 0 or 1: off; else transformers': every id in prompt + output has its
                                 logit divided by it (> 0) or multiplied by it (< 0), greedy too */
    uint64_t seed;            /* sampling stream: one splitmix64 draw per token (host side, so the
                                 same seed gives the same tokens on any thread count) */
    const int32_t *eos_ids;   /* stop after emitting one of these (see lomo_eos_ids) */
    int n_eos;
    const char *const *stop_strings;  /* stop once the generated text contains one (needs decode) */
    int n_stop;
    /* text of ids (the generated ones): a NUL-terminated string valid until the next call */
    const char *(*decode)(void *decode_user, const int32_t *ids, int n);
    void *decode_user;
    /* after each token (i = 0, 1, ...; out[0..i] filled): nonzero stops */
    int (*on_token)(void *user, int32_t token, int i);
    void *user;
    int prefill_chunk;        /* prompt tokens per forward (activation memory); 0 = 256 */
} lomo_gen_opts;

enum { LOMO_GEN_LENGTH = 0, LOMO_GEN_EOS, LOMO_GEN_STOP_STRING, LOMO_GEN_CALLBACK };
typedef struct lomo_gen_info {
    int n_tokens;             /* generated (= the return value) */
    int stop;                 /* LOMO_GEN_*: why it stopped */
    size_t kv_bytes;          /* KV cache + decode buffers it held (LOMO_MEM_KV) */
} lomo_gen_info;

/* Writes up to max_new_tokens ids to out (the prompt is not repeated) and
   returns how many, or -1 with lomo_error() set. info may be NULL. */
LOMODEF int lomo_generate(lomo_model *m, const int32_t *prompt, int n_prompt, const lomo_gen_opts *o,
                          int32_t *out, lomo_gen_info *info);
/* One token from logits (V floats, host; changed in place by the processors
   of o: repetition penalty over history, temperature, top-k, top-p), greedy
   when o->temperature <= 0; *rng is a splitmix64 state. */
LOMODEF int32_t lomo_sample(float *logits, int V, const int32_t *history, int n_history,
                            const lomo_gen_opts *o, uint64_t *rng);
/* The end-of-sequence ids transformers would stop at: eos_token_id (an int or
   a list) of dir/generation_config.json when it has one, else of
   dir/config.json. Up to cap ids into ids; returns their number (0: none), or -1. */
LOMODEF int lomo_eos_ids(const char *model_dir, int32_t *ids, int cap);

/* The KV cache as an object, for stepwise use: lomo_kv_eval runs n tokens at
   positions len..len+n-1 and writes their logits to the host buffer
   (all_logits: n x V, else the last row's V). */
typedef struct lomo_kv lomo_kv;
LOMODEF lomo_kv *lomo_kv_new(lomo_model *m, int max_tokens, int max_chunk);
LOMODEF int      lomo_kv_eval(lomo_kv *kv, const int32_t *tokens, int n, float *logits, int all_logits);
LOMODEF int      lomo_kv_len(const lomo_kv *kv);
LOMODEF int      lomo_kv_truncate(lomo_kv *kv, int n);   /* forget positions >= n (0 <= n <= len) */
LOMODEF size_t   lomo_kv_bytes(const lomo_kv *kv);
LOMODEF void     lomo_kv_free(lomo_kv *kv);

/* ---- mixed precision ---- */

/* bf16 and IEEE fp16 <-> fp32; to 16 bits with round-to-nearest-even,
   NaN stays NaN, overflow goes to inf (fp16), subnormals kept. */
LOMODEF float    lomo_bf16_to_f32(uint16_t h);
LOMODEF uint16_t lomo_f32_to_bf16(float f);
LOMODEF float    lomo_f16_to_f32(uint16_t h);
LOMODEF uint16_t lomo_f32_to_f16(float f);

#ifdef LOMO_MPI
/* A communicator over an MPI communicator (MPI must be initialised; pass
   MPI_COMM_WORLD for all processes). Collectives are non-blocking MPI calls
   polled against a timeout (LOMO_COMM_TIMEOUT seconds, default 600): a rank
   that died, hangs or runs other work ends the job with a clear message
   instead of a hang. Free with lomo_mpi_comm_free. */
LOMODEF lomo_comm *lomo_mpi_comm(MPI_Comm comm);
LOMODEF void       lomo_mpi_comm_free(lomo_comm *c);
#endif

/* ---- memory report ---- */

LOMODEF lomo_memory lomo_memory_report(const lomo_model *m);
LOMODEF void        lomo_memory_print(FILE *f, const lomo_memory *r);
/* The paper's comparison, from the same accounting: this run (LOMO) next to
   what SGD with stored gradients (+4 bytes/param of gradients instead of the
   one buffer) and AdamW (+ 8 bytes/param of fp32 moments) would hold for the
   same model and batch. */
LOMODEF void        lomo_memory_print_compare(FILE *f, const lomo_memory *r, int64_t n_params);
/* The formula of the doc block, per tag, for a model config and training options. */
LOMODEF size_t      lomo_memory_formula(const lomo_config *c, const lomo_train_opts *o,
                                        size_t per_tag[LOMO_MEM_NTAGS]);
LOMODEF const char *lomo_mem_tag_name(int tag);

/* ---- errors ---- */

LOMODEF const char *lomo_error(void);   /* why the last call failed (this thread) */

/* ======================================================================== */
/* backend interface (for backend authors: the CPU table below, CUDA in    */
/* lomo_cuda.cuh). Activations are fp32, (rows, cols) row-major; N = B*T.  */
/* Weights are lomo_tensor so a backend can dispatch on the storage dtype. */
/* ======================================================================== */
/* Everything a built-in rule needs for one tensor. */
typedef struct lomo_update_args {
    int rule;                 /* LOMO_OPT_* */
    float lr, inv_loss_scale, clip_value, clip_coef, weight_decay;
    int64_t step;             /* 1-based */
    float eps1, eps2, clip_threshold, decay_rate;   /* AdaLomo */
    float beta1, beta2, eps;                         /* AdamW */
    int stochastic;           /* rounding to 16-bit storage */
    uint64_t seed, stream;    /* stream: per (step, tensor) */
    int64_t shard_off;        /* index of p's first element in the whole tensor (rounding hash, AdaLomo) */
    double param_sumsq;       /* AdaLomo on a shard: sum of squares of the whole tensor (< 0: compute from p) */
} lomo_update_args;

struct lomo_backend {
    const char *name;
    void *ctx;
    void *stream;       /* the backend's stream (cudaStream_t for CUDA), handed to hooks; NULL on the CPU */
    int host_memory;    /* 1: data pointers are host pointers (no staging on load/save) */
    void *(*alloc)(void *ctx, size_t bytes);
    void  (*free)(void *ctx, void *p);
    void  (*upload)(void *ctx, void *dst, const void *src, size_t bytes);   /* host -> backend */
    void  (*download)(void *ctx, void *dst, const void *src, size_t bytes); /* backend -> host */
    void  (*copy)(void *ctx, void *dst, const void *src, size_t bytes);
    void  (*zero)(void *ctx, void *p, size_t bytes);
    int   (*check)(void *ctx);  /* sticky error of earlier ops: 0, or -1 with lomo_error() set */
    void  (*add)(void *ctx, float *y, const float *x, size_t n);             /* y += x */

    /* x (N,C) = rows of wte (V,C) */
    void (*embed_fwd)(void *ctx, float *x, const int32_t *tok, const lomo_tensor *wte, int N, int C);
    /* dwte (V,C) += scatter of dx (N,C) by token */
    void (*embed_bwd)(void *ctx, float *dwte, const float *dx, const int32_t *tok, int N, int C);
    /* y (N,C) = x * rstd * w; rstd (N) saved */
    void (*rmsnorm_fwd)(void *ctx, float *y, float *rstd, const float *x, const lomo_tensor *w,
                        int N, int C, float eps);
    /* dx (N,C) += d/dx; dw (C) = d/dw (overwritten) */
    void (*rmsnorm_bwd)(void *ctx, float *dx, float *dw, const float *dy, const float *x,
                        const lomo_tensor *w, const float *rstd, int N, int C);
    /* y (N,O) (+)= x (N,K) W^T (W is (O,K)) + b (O, may be NULL) */
    void (*matmul_fwd)(void *ctx, float *y, const float *x, const lomo_tensor *w,
                       const lomo_tensor *b, int N, int K, int O, int accumulate);
    /* dx (N,K) (+)= dy (N,O) W */
    void (*matmul_bwd_x)(void *ctx, float *dx, const float *dy, const lomo_tensor *w,
                         int N, int K, int O, int accumulate);
    /* dw (O,K) (+)= dy^T x */
    void (*matmul_bwd_w)(void *ctx, float *dw, const float *dy, const float *x,
                         int N, int K, int O, int accumulate);
    /* db (O) = column sums of dy (N,O) */
    void (*bias_bwd)(void *ctx, float *db, const float *dy, int N, int O);
    /* x (B,T,nh,hd) rotated in place, half-rotation convention, angle t * inv_freq[i]
       (inv_freq: hd/2 floats, backend memory); inverse=1 for backward */
    void (*rope)(void *ctx, float *x, const float *inv_freq, int B, int T, int nh, int hd, int inverse);
    /* causal GQA attention: q (N,nh,hd), k,v (N,nkv,hd) -> out (N,nh,hd), lse (N,nh) */
    void (*attn_fwd)(void *ctx, float *out, float *lse, const float *q, const float *k,
                     const float *v, int B, int T, int nh, int nkv, int hd);
    /* dq, dk, dv (overwritten) from dout, using the saved out and lse */
    void (*attn_bwd)(void *ctx, float *dq, float *dk, float *dv, const float *dout,
                     const float *q, const float *k, const float *v, const float *out,
                     const float *lse, int B, int T, int nh, int nkv, int hd);
    /* h = silu(g) * u, n elements */
    void (*swiglu_fwd)(void *ctx, float *h, const float *g, const float *u, size_t n);
    /* dg, du from dh (dg may alias dh) */
    void (*swiglu_bwd)(void *ctx, float *dg, float *du, const float *dh, const float *g,
                       const float *u, size_t n);
    /* losses (N) = -log softmax(logits)[target], 0 where target < 0; with dlogits
       (may alias logits): dlogits = (softmax - onehot) * dscale, 0 rows where ignored */
    void (*cross_entropy)(void *ctx, float *losses, float *dlogits, const float *logits,
                          const int32_t *targets, int N, int V, float dscale);
    double (*sumsq)(void *ctx, const float *x, size_t n);   /* sum of squares, NaN/inf propagate */
    /* sum of squares of a stored tensor's elements (any dtype) */
    double (*param_sumsq)(void *ctx, const lomo_tensor *p);
    /* a built-in rule on one tensor: reads the stored weights, widens them to
       fp32, applies the rule, rounds back to the storage dtype (see lomo_update_args).
       LOMO and AdamW are elementwise: p, g, s1, s2 may be a shard (p->numel elements).
       AdaLomo on a shard: p->shape is the whole tensor's, p->data the shard of
       p->shard_len elements from a->shard_off, g the whole (summed) gradient,
       s1/s2 the whole row/column (or vector) state. */
    void (*update)(void *ctx, lomo_tensor *p, const float *g, float *s1, float *s2, const lomo_update_args *a);
    /* ||dy^T x||_F^2 of a linear layer's weight gradient, without forming it
       (from the N x N Gram matrices; LOMO_CLIP_GLOBAL_GRAM); NULL if unsupported */
    double (*wgrad_sqnorm)(void *ctx, const float *dy, const float *x, int N, int K, int O);
    /* bytes of scratch the backend wants for a model and N tokens per
       micro-batch (gram: the Gram norm pass is on). The CPU widens 16-bit
       weights for BLAS; CUDA casts activations to 16 bits for cuBLAS. The
       trainer allocates it (tagged workspace) and hands it over with
       set_scratch before running. */
    size_t (*scratch_bytes)(void *ctx, const lomo_model *m, int N, int gram);
    void (*set_scratch)(void *ctx, void *p, size_t bytes);
    /* generation (KV cache). x (N,nh,hd) rotated in place like rope, row i at
       absolute position pos0 + i (forward only) */
    void (*rope_at)(void *ctx, float *x, const float *inv_freq, int N, int nh, int hd, int pos0);
    /* causal GQA attention of N new queries q (N,nh,hd) at positions pos0..pos0+N-1
       over the cached keys/values kc, vc (pos0+N, nkv, hd): query at position p
       sees keys j <= p, and with window > 0 only j > p - window (Mistral's
       sliding window, as transformers masks it) -> out (N,nh,hd) */
    void (*attn_kv)(void *ctx, float *out, const float *q, const float *kc, const float *vc,
                    int N, int pos0, int nh, int nkv, int hd, int window);
};

LOMODEF const lomo_backend *lomo_cpu_backend(void);

#ifdef __cplusplus
}
#endif
#endif /* LOMO_H */

/* ======================================================================== */
/* implementation                                                           */
/* ======================================================================== */
#ifdef LOMO_IMPLEMENTATION
#ifndef LOMO__IMPLEMENTED
#define LOMO__IMPLEMENTED

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <errno.h>
#include <sys/stat.h>

#ifndef LOMO_MALLOC
#define LOMO_MALLOC(sz) malloc(sz)
#define LOMO_FREE(p) free(p)
#endif
#ifndef LOMO_ASSERT
#include <assert.h>
#define LOMO_ASSERT(x) assert(x)
#endif

#if defined(__cplusplus)
#define LOMO__TLS thread_local
#else
#define LOMO__TLS _Thread_local
#endif

/* ---- errors: API calls return NULL / -1 and leave a readable reason ---- */
static LOMO__TLS char lomo__errbuf[1024];

LOMODEF const char *lomo_error(void) { return lomo__errbuf; }

/* Sets the error message; always returns -1 so callers can `return lomo__fail(...)`. */
static int lomo__fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(lomo__errbuf, sizeof lomo__errbuf, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- I/O: JSON, safetensors, config.json, dtype conversion ---- */
/* lomo_io.inl - I/O for lomo.h: dtype conversion, a strict JSON reader,
   safetensors read/write, config.json. Included by lomo.h inside its
   implementation section (after lomo__fail); every symbol here is static.
   Needs POSIX (open/mmap/fsync/rename). Assumes a little-endian host, as
   safetensors stores little-endian data and F32/F64 are copied as is. */

#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* ======================================================================== */
/* dtype conversion: bf16 / fp16 <-> fp32, round to nearest even            */
/* ======================================================================== */

static uint32_t lomo__f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float lomo__bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* bf16 is the top half of an fp32: same exponent range, 7 mantissa bits. */
LOMODEF float lomo_bf16_to_f32(uint16_t h) { return lomo__bits_f32((uint32_t)h << 16); }

LOMODEF uint16_t lomo_f32_to_bf16(float f) {
    uint32_t u = lomo__f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u); /* NaN stays (quiet) NaN */
    u += 0x7fffu + ((u >> 16) & 1u); /* RNE; a carry out of the mantissa bumps the exponent (max -> inf) */
    return (uint16_t)(u >> 16);
}

/* IEEE binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. */
LOMODEF float lomo_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, m = h & 0x3ffu;
    int e = (h >> 10) & 0x1f;
    if (e == 31) return lomo__bits_f32(sign | 0x7f800000u | (m << 13)); /* inf, NaN (payload kept) */
    if (e == 0) {
        if (m == 0) return lomo__bits_f32(sign);                          /* +-0 */
        e = 1;                                                            /* subnormal m * 2^-24: normalise */
        while (!(m & 0x400u)) { m <<= 1; e--; }
        m &= 0x3ffu;
    }
    return lomo__bits_f32(sign | ((uint32_t)(e + 112) << 23) | (m << 13));
}

LOMODEF uint16_t lomo_f32_to_f16(float f) {
    uint32_t u = lomo__f32_bits(f), sign = (u >> 16) & 0x8000u, q, r;
    u &= 0x7fffffffu;
    if (u > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((u >> 13) & 0x3ffu));  /* NaN: quiet, top payload bits */
    if (u >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);              /* >= 65520 rounds to inf */
    if (u < 0x38800000u) {                                                /* below 2^-14: subnormal or 0 */
        int shift = 126 - (int)(u >> 23);     /* result = round(mant * 2^(e-126)), mant with hidden bit */
        uint32_t mant = (u & 0x7fffffu) | 0x800000u;
        if (shift > 24) return (uint16_t)sign;                            /* < 2^-25 (ties to even: 0) */
        q = mant >> shift; r = mant & ((1u << shift) - 1u);
        if (r > (1u << (shift - 1)) || (r == (1u << (shift - 1)) && (q & 1u))) q++;
        return (uint16_t)(sign | q);          /* q may carry to 0x400, the smallest normal: still right */
    }
    u -= 0x38000000u;                         /* rebias the exponent 127 -> 15 */
    q = u >> 13; r = u & 0x1fffu;
    if (r > 0x1000u || (r == 0x1000u && (q & 1u))) q++;
    return (uint16_t)(sign | q);
}

/* ======================================================================== */
/* string builder (for JSON output)                                         */
/* ======================================================================== */

typedef struct lomo__sb { char *p; size_t n, cap; int oom; } lomo__sb;

static void lomo__sb_add(lomo__sb *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char *p;
        while (b->n + n + 1 > cap) cap *= 2;
        if (!(p = (char *)LOMO_MALLOC(cap))) { b->oom = 1; return; }
        if (b->n) memcpy(p, b->p, b->n);
        LOMO_FREE(b->p);
        b->p = p; b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void lomo__sb_printf(lomo__sb *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    int k;
    va_start(ap, fmt);
    k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0 || k >= (int)sizeof tmp) { b->oom = 1; return; } /* only used for short items */
    lomo__sb_add(b, tmp, (size_t)k);
}

/* Appends s as a quoted JSON string (UTF-8 passed through). */
static void lomo__sb_jstr(lomo__sb *b, const char *s) {
    lomo__sb_add(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') { char e[2] = { '\\', (char)c }; lomo__sb_add(b, e, 2); }
        else if (c < 0x20) lomo__sb_printf(b, "\\u%04x", c);
        else lomo__sb_add(b, s, 1);
    }
    lomo__sb_add(b, "\"", 1);
}

/* Shortest of %.6g..%.9g that reads back as the same float, always with '.'. */
static void lomo__fmt_float(char *buf, size_t cap, float v) {
    const char *dp = localeconv()->decimal_point;
    char *q;
    int prec;
    for (prec = 6; prec <= 9; prec++) {
        snprintf(buf, cap, "%.*g", prec, (double)v);
        if ((float)strtod(buf, NULL) == v) break;
    }
    if (dp && dp[0] && dp[0] != '.' && (q = strchr(buf, dp[0])) != NULL) *q = '.';
}

/* ======================================================================== */
/* JSON reader                                                              */
/* ======================================================================== */
/* Strict RFC 8259 parser into a flat node array; the root is node 0.
     lomo__json_parse(j, s, len, what)  0, or -1 with "<what>: invalid JSON at
                                        byte N: reason" in lomo_error()
     lomo__json_free(j)
     lomo__json_get(j, obj, key)        value node of member key, -1 if absent
     lomo__json_str(j, node, buf, cap)  decoded UTF-8, NUL-terminated: length,
                                        or -1 (not a STR, too long, has \u0000)
     lomo__json_streq(j, node, lit)     1 if the STR node decodes to lit
     lomo__json_int(j, node, &v)        0 if node is an integer literal, |v| < 2^53
   Children of OBJ/ARR are chained by first/next in document order (count of
   them). For objects the chain links the *value* nodes; each value's `key` is
   the index of its key STR node, which sits outside the chain. s/len is the raw
   span: for STR between the quotes (escapes not decoded), for OBJ/ARR from
   bracket to bracket. Rules: UTF-8 only (no BOM, no overlong forms, no
   surrogates), \u escapes with paired surrogates, at most 64 nested containers,
   only whitespace after the root value. */

enum { LOMO__J_OBJ, LOMO__J_ARR, LOMO__J_STR, LOMO__J_NUM, LOMO__J_TRUE, LOMO__J_FALSE, LOMO__J_NULL };
#define LOMO__JSON_MAX_DEPTH 64

typedef struct lomo__jnode {
    int type, parent, first, next, count;
    const char *s; size_t len;
    double num;
    int key;
} lomo__jnode;

typedef struct lomo__json { lomo__jnode *nodes; int n, cap; } lomo__json;

typedef struct lomo__jp { lomo__json *j; const unsigned char *s; size_t n, i; const char *what; } lomo__jp;

static int lomo__jp_err(const lomo__jp *p, const char *msg) {
    return lomo__fail("%s: invalid JSON at byte %zu: %s", p->what ? p->what : "JSON", p->i, msg);
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid/overlong/surrogate/> U+10FFFF. */
static int lomo__utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0], lo = 0x80, hi = 0xbf;
    int k, i;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) k = 2;
    else if (c >= 0xe0 && c <= 0xef) { k = 3; if (c == 0xe0) lo = 0xa0; if (c == 0xed) hi = 0x9f; }
    else if (c >= 0xf0 && c <= 0xf4) { k = 4; if (c == 0xf0) lo = 0x90; if (c == 0xf4) hi = 0x8f; }
    else return 0;
    if (n < (size_t)k || s[1] < lo || s[1] > hi) return 0;
    for (i = 2; i < k; i++) if (s[i] < 0x80 || s[i] > 0xbf) return 0;
    return k;
}

static int lomo__utf8_valid(const char *s) {
    size_t n = strlen(s), i = 0;
    int k;
    while (i < n && (k = lomo__utf8_len((const unsigned char *)s + i, n - i)) > 0) i += (size_t)k;
    return i == n;
}

static int lomo__hex4(const unsigned char *s, size_t n, unsigned *out) {
    size_t i;
    *out = 0;
    if (n < 4) return -1;
    for (i = 0; i < 4; i++) {
        unsigned c = s[i], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return -1;
        *out = *out * 16 + d;
    }
    return 0;
}

static void lomo__jp_ws(lomo__jp *p) {
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r')) p->i++;
}

static int lomo__jp_node(lomo__jp *p, int type, int parent) {
    lomo__json *j = p->j;
    lomo__jnode *nd;
    if (j->n == j->cap) {
        int cap = j->cap ? j->cap * 2 : 64;
        lomo__jnode *a = (j->cap < (1 << 28)) ? (lomo__jnode *)LOMO_MALLOC((size_t)cap * sizeof *a) : NULL;
        if (!a) return lomo__fail("%s: out of memory parsing JSON", p->what ? p->what : "JSON");
        if (j->n) memcpy(a, j->nodes, (size_t)j->n * sizeof *a);
        LOMO_FREE(j->nodes);
        j->nodes = a; j->cap = cap;
    }
    nd = &j->nodes[j->n];
    memset(nd, 0, sizeof *nd);
    nd->type = type; nd->parent = parent; nd->first = nd->next = nd->key = -1;
    nd->s = (const char *)p->s + p->i;
    return j->n++;
}

/* Parses the string at p->i (an opening quote), validating escapes and UTF-8. */
static int lomo__jp_string(lomo__jp *p, int parent) {
    int id = lomo__jp_node(p, LOMO__J_STR, parent);
    size_t start;
    unsigned u, u2;
    if (id < 0) return -1;
    start = ++p->i;
    for (;;) {
        unsigned c;
        if (p->i >= p->n) return lomo__jp_err(p, "unterminated string");
        c = p->s[p->i];
        if (c == '"') break;
        if (c < 0x20) return lomo__jp_err(p, "control character in string (must be escaped)");
        if (c >= 0x80) {
            int k = lomo__utf8_len(p->s + p->i, p->n - p->i);
            if (!k) return lomo__jp_err(p, "invalid UTF-8 in string");
            p->i += (size_t)k;
            continue;
        }
        p->i++;
        if (c != '\\') continue;
        if (p->i >= p->n) return lomo__jp_err(p, "unterminated string");
        c = p->s[p->i];
        if (c && strchr("\"\\/bfnrt", (int)c)) { p->i++; continue; }
        if (c != 'u') return lomo__jp_err(p, "invalid escape sequence");
        if (lomo__hex4(p->s + p->i + 1, p->n - p->i - 1, &u)) return lomo__jp_err(p, "\\u needs 4 hex digits");
        if (u >= 0xdc00 && u <= 0xdfff) return lomo__jp_err(p, "unpaired low surrogate in \\u escape");
        p->i += 5;
        if (u >= 0xd800 && u <= 0xdbff) {
            if (p->i + 1 >= p->n || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u' ||
                lomo__hex4(p->s + p->i + 2, p->n - p->i - 2, &u2) || u2 < 0xdc00 || u2 > 0xdfff)
                return lomo__jp_err(p, "unpaired high surrogate in \\u escape");
            p->i += 6;
        }
    }
    p->j->nodes[id].s = (const char *)p->s + start;
    p->j->nodes[id].len = p->i - start;
    p->i++;
    return id;
}

static int lomo__jp_number(lomo__jp *p, int parent) {
    int id = lomo__jp_node(p, LOMO__J_NUM, parent);
    size_t start = p->i, len;
    char small[64], *buf, *end;
    const char *dp;
    double v;
    if (id < 0) return -1;
#define LOMO__DIGIT() (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
    if (p->s[p->i] == '-') p->i++;
    if (!LOMO__DIGIT()) return lomo__jp_err(p, "invalid number");
    if (p->s[p->i] == '0') { p->i++; if (LOMO__DIGIT()) return lomo__jp_err(p, "leading zeros are not allowed"); }
    else while (LOMO__DIGIT()) p->i++;
    if (p->i < p->n && p->s[p->i] == '.') {
        p->i++;
        if (!LOMO__DIGIT()) return lomo__jp_err(p, "digit expected after '.'");
        while (LOMO__DIGIT()) p->i++;
    }
    if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
        p->i++;
        if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-')) p->i++;
        if (!LOMO__DIGIT()) return lomo__jp_err(p, "digit expected in exponent");
        while (LOMO__DIGIT()) p->i++;
    }
#undef LOMO__DIGIT
    /* grammar checked: convert a NUL-terminated copy with strtod (correctly rounded) */
    len = p->i - start;
    buf = len < sizeof small ? small : (char *)LOMO_MALLOC(len + 1);
    if (!buf) return lomo__fail("%s: out of memory parsing JSON", p->what ? p->what : "JSON");
    memcpy(buf, p->s + start, len);
    buf[len] = 0;
    v = strtod(buf, &end);
    dp = localeconv()->decimal_point; /* a non-"C" LC_NUMERIC wants its own decimal point */
    if (end != buf + len && dp && dp[0] && (end = strchr(buf, '.')) != NULL) { *end = dp[0]; v = strtod(buf, NULL); }
    if (buf != small) LOMO_FREE(buf);
    p->j->nodes[id].num = v;
    p->j->nodes[id].len = len;
    return id;
}

static int lomo__jp_value(lomo__jp *p, int parent, int depth) {
    int id, last = -1, type;
    unsigned c;
    lomo__jp_ws(p);
    if (p->i >= p->n) return lomo__jp_err(p, "unexpected end of input");
    c = p->s[p->i];
    if (c == '"') return lomo__jp_string(p, parent);
    if (c == '-' || (c >= '0' && c <= '9')) return lomo__jp_number(p, parent);
    if (c == 't' || c == 'f' || c == 'n') {
        const char *lit = c == 't' ? "true" : c == 'f' ? "false" : "null";
        size_t k = strlen(lit);
        if (p->n - p->i < k || memcmp(p->s + p->i, lit, k)) return lomo__jp_err(p, "invalid literal");
        type = c == 't' ? LOMO__J_TRUE : c == 'f' ? LOMO__J_FALSE : LOMO__J_NULL;
        if ((id = lomo__jp_node(p, type, parent)) < 0) return -1;
        p->j->nodes[id].len = k;
        p->i += k;
        return id;
    }
    if (c != '{' && c != '[') {
        char msg[64];
        snprintf(msg, sizeof msg, (c >= 0x20 && c < 0x7f) ? "unexpected character '%c'" : "unexpected byte 0x%02x", c);
        return lomo__jp_err(p, msg);
    }
    if (depth >= LOMO__JSON_MAX_DEPTH) return lomo__jp_err(p, "nesting deeper than 64 levels");
    if ((id = lomo__jp_node(p, c == '{' ? LOMO__J_OBJ : LOMO__J_ARR, parent)) < 0) return -1;
    p->i++;
    lomo__jp_ws(p);
    if (p->i < p->n && p->s[p->i] == (c == '{' ? '}' : ']')) { p->i++; goto done; }
    for (;;) {
        int key = -1, v;
        if (c == '{') {
            lomo__jp_ws(p);
            if (p->i >= p->n || p->s[p->i] != '"') return lomo__jp_err(p, "expected a string key");
            if ((key = lomo__jp_string(p, id)) < 0) return -1;
            lomo__jp_ws(p);
            if (p->i >= p->n || p->s[p->i] != ':') return lomo__jp_err(p, "expected ':' after key");
            p->i++;
        }
        if ((v = lomo__jp_value(p, id, depth + 1)) < 0) return -1;
        p->j->nodes[v].key = key;
        if (last < 0) p->j->nodes[id].first = v; else p->j->nodes[last].next = v;
        last = v;
        p->j->nodes[id].count++;
        lomo__jp_ws(p);
        if (p->i < p->n && p->s[p->i] == ',') { p->i++; continue; }
        if (p->i < p->n && p->s[p->i] == (c == '{' ? '}' : ']')) { p->i++; break; }
        return lomo__jp_err(p, c == '{' ? "expected ',' or '}'" : "expected ',' or ']'");
    }
done:
    p->j->nodes[id].len = (size_t)((const char *)p->s + p->i - p->j->nodes[id].s);
    return id;
}

static void lomo__json_free(lomo__json *j) {
    LOMO_FREE(j->nodes);
    j->nodes = NULL; j->n = j->cap = 0;
}

static int lomo__json_parse(lomo__json *j, const char *s, size_t len, const char *what) {
    lomo__jp p;
    j->nodes = NULL; j->n = j->cap = 0;
    p.j = j; p.s = (const unsigned char *)s; p.n = len; p.i = 0; p.what = what;
    if (lomo__jp_value(&p, -1, 0) < 0) { lomo__json_free(j); return -1; }
    lomo__jp_ws(&p);
    if (p.i != p.n) { lomo__json_free(j); return lomo__jp_err(&p, "unexpected trailing characters after the JSON value"); }
    return 0;
}

/* Decodes the next character of a validated STR span at *i into out; returns its byte count. */
static int lomo__jdec(const char *s, size_t *i, char out[4]) {
    const unsigned char *u = (const unsigned char *)s;
    unsigned cp, lo;
    if (u[*i] != '\\') { out[0] = s[(*i)++]; return 1; }
    switch (u[*i + 1]) {
    case 'b': out[0] = '\b'; break;
    case 'f': out[0] = '\f'; break;
    case 'n': out[0] = '\n'; break;
    case 'r': out[0] = '\r'; break;
    case 't': out[0] = '\t'; break;
    case 'u': break;
    default: out[0] = s[*i + 1]; break; /* " \ / */
    }
    if (u[*i + 1] != 'u') { *i += 2; return 1; }
    lomo__hex4(u + *i + 2, 4, &cp);
    *i += 6;
    if (cp >= 0xd800 && cp <= 0xdbff) { lomo__hex4(u + *i + 2, 4, &lo); *i += 6; cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00); }
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) { out[0] = (char)(0xc0 | (cp >> 6)); out[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12)); out[1] = (char)(0x80 | ((cp >> 6) & 0x3f)); out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18)); out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

static int lomo__json_is(const lomo__json *j, int node, int type) {
    return j && node >= 0 && node < j->n && j->nodes[node].type == type;
}

static int lomo__json_str(const lomo__json *j, int node, char *buf, size_t cap) {
    size_t i = 0, o = 0;
    if (!cap) return -1;
    buf[0] = 0;
    if (!lomo__json_is(j, node, LOMO__J_STR)) return -1;
    while (i < j->nodes[node].len) {
        char c[4];
        int k = lomo__jdec(j->nodes[node].s, &i, c), m;
        if (o + (size_t)k >= cap || (k == 1 && c[0] == 0)) { buf[0] = 0; return -1; }
        for (m = 0; m < k; m++) buf[o++] = c[m];
    }
    buf[o] = 0;
    return o > 0x7fffffff ? -1 : (int)o;
}

static int lomo__json_streq(const lomo__json *j, int node, const char *lit) {
    size_t i = 0, o = 0;
    if (!lomo__json_is(j, node, LOMO__J_STR)) return 0;
    while (i < j->nodes[node].len) {
        char c[4];
        int k = lomo__jdec(j->nodes[node].s, &i, c), m;
        for (m = 0; m < k; m++, o++) if (lit[o] != c[m]) return 0; /* also stops at lit's NUL */
    }
    return lit[o] == 0;
}

static int lomo__json_get(const lomo__json *j, int obj, const char *key) {
    int c;
    if (!lomo__json_is(j, obj, LOMO__J_OBJ)) return -1;
    for (c = j->nodes[obj].first; c >= 0; c = j->nodes[c].next)
        if (lomo__json_streq(j, j->nodes[c].key, key)) return c;
    return -1;
}

static int lomo__json_int(const lomo__json *j, int node, int64_t *v) {
    const lomo__jnode *nd;
    if (!lomo__json_is(j, node, LOMO__J_NUM)) return -1;
    nd = &j->nodes[node];
    if (memchr(nd->s, '.', nd->len) || memchr(nd->s, 'e', nd->len) || memchr(nd->s, 'E', nd->len)) return -1;
    if (nd->num >= 9007199254740992.0 || nd->num <= -9007199254740992.0) return -1;
    *v = (int64_t)nd->num;
    return 0;
}

/* A short printable rendering of a node for error messages ("found ..."). */
static const char *lomo__json_show(const lomo__json *j, int node, char *buf, size_t cap) {
    const lomo__jnode *nd;
    size_t k, i;
    if (node < 0 || node >= j->n) { snprintf(buf, cap, "nothing"); return buf; }
    nd = &j->nodes[node];
    k = nd->len < 40 ? nd->len : 40;
    while (k < nd->len && ((unsigned char)nd->s[k] & 0xc0) == 0x80) k--; /* cut at a character boundary */
    snprintf(buf, cap, nd->type == LOMO__J_STR ? "\"%.*s%s\"" : "%.*s%s", (int)k, nd->s, k < nd->len ? "..." : "");
    for (i = 0; buf[i]; i++) if ((unsigned char)buf[i] < 0x20) buf[i] = ' ';
    return buf;
}

/* ======================================================================== */
/* files: whole-file read, atomic write                                     */
/* ======================================================================== */

/* Test hook: when >= 0, atomic writers fail with ENOSPC once this many bytes of
   the file have been written (the hook stays armed until set back to -1). */
static int lomo__io_fail_after = -1;
/* Test hook: when >= 0, the process ends abruptly (_Exit, no clean-up, as if
   killed) once this many bytes have been written by all saves together. */
static long long lomo__io_crash_after = -1;
static long long lomo__io_total_written = 0;
/* Test hook: when >= 0, disk full (ENOSPC) once all saves together wrote this many bytes. */
static long long lomo__io_fail_total_after = -1;

static int lomo__read_file(const char *path, char **buf, size_t *len) {
    struct stat st;
    size_t n = 0;
    char *p;
    int fd = open(path, O_RDONLY);
    *buf = NULL; *len = 0;
    if (fd < 0) return lomo__fail("%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) { close(fd); return lomo__fail("%s: not a regular file", path); }
    if (!(p = (char *)LOMO_MALLOC((size_t)st.st_size + 1))) { close(fd); return lomo__fail("%s: out of memory", path); }
    while (n < (size_t)st.st_size) {
        ssize_t r = read(fd, p + n, (size_t)st.st_size - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) { int e = errno; close(fd); LOMO_FREE(p); return lomo__fail("%s: read failed: %s", path, strerror(e)); }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    p[n] = 0;
    *buf = p; *len = n;
    return 0;
}

/* Atomic writer: everything goes to "<path>.tmp.<pid>", which is fsynced, closed
   and renamed over path, then the directory is fsynced. Any failure removes the
   temporary file and leaves whatever was at path untouched. */
typedef struct lomo__aw { int fd; uint64_t written; const char *path; char tmp[1100]; } lomo__aw;

static int lomo__aw_abort(lomo__aw *w, int err, const char *what) {
    if (w->fd >= 0) close(w->fd);
    w->fd = -1;
    unlink(w->tmp);
    return lomo__fail("%s: %s failed: %s (nothing was replaced)", w->path, what, strerror(err));
}

static int lomo__aw_open(lomo__aw *w, const char *path) {
    int flags = O_WRONLY | O_CREAT | O_TRUNC;
#ifdef O_CLOEXEC
    flags |= O_CLOEXEC;
#endif
    w->fd = -1; w->written = 0; w->path = path;
    if (strlen(path) > 1000) return lomo__fail("%s: path too long", path);
    snprintf(w->tmp, sizeof w->tmp, "%s.tmp.%ld", path, (long)getpid());
    if ((w->fd = open(w->tmp, flags, 0644)) < 0)
        return lomo__fail("%s: cannot create temporary file %s: %s", path, w->tmp, strerror(errno));
    return 0;
}

static int lomo__aw_write(lomo__aw *w, const void *data, size_t len) {
    const char *p = (const char *)data;
    while (len) {
        size_t chunk = len < ((size_t)1 << 30) ? len : ((size_t)1 << 30);
        ssize_t r;
        if (lomo__io_fail_after >= 0) { /* simulated disk full */
            uint64_t lim = (uint64_t)lomo__io_fail_after;
            if (w->written >= lim) return lomo__aw_abort(w, ENOSPC, "write");
            if (chunk > lim - w->written) chunk = (size_t)(lim - w->written);
        }
        if (lomo__io_fail_total_after >= 0) {
            if (lomo__io_total_written >= lomo__io_fail_total_after) return lomo__aw_abort(w, ENOSPC, "write");
            if ((long long)chunk > lomo__io_fail_total_after - lomo__io_total_written)
                chunk = (size_t)(lomo__io_fail_total_after - lomo__io_total_written);
        }
        if (lomo__io_crash_after >= 0 && lomo__io_total_written + (long long)chunk > lomo__io_crash_after) {
            if (lomo__io_crash_after > lomo__io_total_written)
                chunk = (size_t)(lomo__io_crash_after - lomo__io_total_written);
            else _Exit(137);
        }
        r = write(w->fd, p, chunk);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return lomo__aw_abort(w, r < 0 ? errno : EIO, "write");
        p += r; len -= (size_t)r; w->written += (uint64_t)r; lomo__io_total_written += r;
    }
    return 0;
}

static int lomo__aw_commit(lomo__aw *w) {
    char dir[1100];
    char *slash;
    int dfd, fd = w->fd;
    if (fsync(fd)) return lomo__aw_abort(w, errno, "fsync");
    w->fd = -1;
    if (close(fd)) return lomo__aw_abort(w, errno, "close");
    if (rename(w->tmp, w->path)) return lomo__aw_abort(w, errno, "rename");
    /* make the rename itself durable: fsync the containing directory */
    snprintf(dir, sizeof dir, "%s", w->path);
    slash = strrchr(dir, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == dir) dir[1] = 0;
    else *slash = 0;
    if ((dfd = open(dir, O_RDONLY)) < 0)
        return lomo__fail("%s: saved, but cannot open directory %s to fsync it: %s", w->path, dir, strerror(errno));
    if (fsync(dfd) && errno != EINVAL) { /* EINVAL: the file system cannot fsync directories */
        int e = errno;
        close(dfd);
        return lomo__fail("%s: saved, but fsync of directory %s failed: %s", w->path, dir, strerror(e));
    }
    close(dfd);
    return 0;
}

static int lomo__write_file_atomic(const char *path, const void *data, size_t len) {
    lomo__aw w;
    if (lomo__aw_open(&w, path) || lomo__aw_write(&w, data, len)) return -1;
    return lomo__aw_commit(&w);
}

/* ======================================================================== */
/* safetensors                                                              */
/* ======================================================================== */
/* Layout: u64 little-endian N | N bytes of UTF-8 JSON header | data buffer.
   The header is an object: tensor name -> {"dtype": "F32", "shape": [..],
   "data_offsets": [begin, end]} (offsets relative to the data buffer), plus an
   optional "__metadata__": {string: string}. It may be padded with trailing
   spaces. Rules checked here (as the reference implementation does): N <= 100
   MB and within the file; known dtype; shape of non-negative integers;
   end - begin == numel * dtype size; tensors unique by name and covering the
   data buffer exactly, without overlap or hole. */

enum { LOMO__ST_F64, LOMO__ST_F32, LOMO__ST_F16, LOMO__ST_BF16, LOMO__ST_I64, LOMO__ST_I32,
       LOMO__ST_I16, LOMO__ST_I8, LOMO__ST_U8, LOMO__ST_BOOL, LOMO__ST_NDTYPE };
static const char *const lomo__st_dtype_name[LOMO__ST_NDTYPE] = { "F64", "F32", "F16", "BF16", "I64", "I32",
                                                                  "I16", "I8", "U8", "BOOL" };
static const int lomo__st_dtype_size[LOMO__ST_NDTYPE] = { 8, 4, 2, 2, 8, 4, 2, 1, 1, 1 };
#define LOMO__ST_MAX_HEADER (100u << 20)
#define LOMO__ST_MAX_DIMS 8

typedef struct lomo__st_tensor {
    char name[128];
    int dtype, ndim;
    int64_t shape[LOMO__ST_MAX_DIMS], numel;
    uint64_t begin, end; /* offsets in the data buffer */
    const void *data;    /* into the mapping; not necessarily aligned */
} lomo__st_tensor;

typedef struct lomo__st_file {
    char path[1024];
    void *map; size_t size;
    int n; lomo__st_tensor *t; /* sorted by offset (file order) */
} lomo__st_file;

typedef struct lomo__st_out {
    const char *name;
    int dtype, ndim;
    int64_t shape[LOMO__ST_MAX_DIMS];
    const void *data;
} lomo__st_out;

static void lomo__st_close(lomo__st_file *f) {
    if (f->map) munmap(f->map, f->size);
    LOMO_FREE(f->t);
    f->map = NULL; f->t = NULL; f->n = 0; f->size = 0;
}

static int lomo__st_cmp_name(const void *a, const void *b) {
    return strcmp(((const lomo__st_tensor *)a)->name, ((const lomo__st_tensor *)b)->name);
}
static int lomo__st_cmp_off(const void *a, const void *b) {
    const lomo__st_tensor *x = (const lomo__st_tensor *)a, *y = (const lomo__st_tensor *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Fills one tensor entry from its header value node v. */
static int lomo__st_entry(const lomo__st_file *f, const lomo__json *j, int v, lomo__st_tensor *t,
                          const unsigned char *data, uint64_t dsize) {
    int d = lomo__json_get(j, v, "dtype"), sh = lomo__json_get(j, v, "shape"), off = lomo__json_get(j, v, "data_offsets");
    int c, k;
    int64_t b, e;
    char show[64];
    uint64_t bytes;
    if (!lomo__json_is(j, v, LOMO__J_OBJ)) return lomo__fail("%s: tensor '%s': entry is not a JSON object", f->path, t->name);
    if (d < 0) return lomo__fail("%s: tensor '%s': missing dtype", f->path, t->name);
    for (t->dtype = 0; t->dtype < LOMO__ST_NDTYPE; t->dtype++)
        if (lomo__json_streq(j, d, lomo__st_dtype_name[t->dtype])) break;
    if (t->dtype == LOMO__ST_NDTYPE)
        return lomo__fail("%s: tensor '%s': unknown dtype %s (known: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)",
                          f->path, t->name, lomo__json_show(j, d, show, sizeof show));
    if (!lomo__json_is(j, sh, LOMO__J_ARR) || j->nodes[sh].count > LOMO__ST_MAX_DIMS)
        return lomo__fail("%s: tensor '%s': shape must be an array of at most %d integers, found %s",
                          f->path, t->name, LOMO__ST_MAX_DIMS, lomo__json_show(j, sh, show, sizeof show));
    t->ndim = 0; t->numel = 1;
    for (c = j->nodes[sh].first; c >= 0; c = j->nodes[c].next) {
        if (lomo__json_int(j, c, &b) || b < 0)
            return lomo__fail("%s: tensor '%s': shape entries must be non-negative integers, found %s",
                              f->path, t->name, lomo__json_show(j, c, show, sizeof show));
        if (b && t->numel > INT64_MAX / b) return lomo__fail("%s: tensor '%s': shape overflows", f->path, t->name);
        t->shape[t->ndim++] = b;
        t->numel *= b;
    }
    if (!lomo__json_is(j, off, LOMO__J_ARR) || j->nodes[off].count != 2 ||
        lomo__json_int(j, j->nodes[off].first, &b) || b < 0 ||
        lomo__json_int(j, j->nodes[j->nodes[off].first].next, &e) || e < 0)
        return lomo__fail("%s: tensor '%s': data_offsets must be 2 non-negative integers, found %s",
                          f->path, t->name, lomo__json_show(j, off, show, sizeof show));
    t->begin = (uint64_t)b; t->end = (uint64_t)e;
    if (t->end < t->begin)
        return lomo__fail("%s: tensor '%s': data_offsets end %llu < begin %llu", f->path, t->name,
                          (unsigned long long)t->end, (unsigned long long)t->begin);
    if (t->end > dsize)
        return lomo__fail("%s: tensor '%s': data_offsets end %llu is beyond the end of the file (data buffer: %llu bytes)",
                          f->path, t->name, (unsigned long long)t->end, (unsigned long long)dsize);
    bytes = t->end - t->begin;
    k = lomo__st_dtype_size[t->dtype];
    if (bytes % (uint64_t)k || bytes / (uint64_t)k != (uint64_t)t->numel)
        return lomo__fail("%s: tensor '%s': data_offsets span %llu bytes, which does not match the shape "
                          "(%lld elements of %s = %llu bytes)", f->path, t->name, (unsigned long long)bytes,
                          (long long)t->numel, lomo__st_dtype_name[t->dtype], (unsigned long long)t->numel * (unsigned long long)k);
    t->data = data + t->begin;
    return 0;
}

/* Checks header rules on the parsed JSON and fills f->t. */
static int lomo__st_index(lomo__st_file *f, const lomo__json *j, const unsigned char *data, uint64_t dsize) {
    int c, i, meta = 0;
    uint64_t pos = 0;
    char show[64], show2[64];
    if (!lomo__json_is(j, 0, LOMO__J_OBJ)) return lomo__fail("%s: safetensors header is not a JSON object", f->path);
    f->t = (lomo__st_tensor *)LOMO_MALLOC(((size_t)j->nodes[0].count + 1) * sizeof *f->t);
    if (!f->t) return lomo__fail("%s: out of memory", f->path);
    for (c = j->nodes[0].first; c >= 0; c = j->nodes[c].next) {
        int key = j->nodes[c].key, m;
        lomo__st_tensor *t = &f->t[f->n];
        if (lomo__json_streq(j, key, "__metadata__")) {
            if (meta++) return lomo__fail("%s: duplicate __metadata__ entry", f->path);
            if (!lomo__json_is(j, c, LOMO__J_OBJ)) return lomo__fail("%s: __metadata__ is not a JSON object", f->path);
            for (m = j->nodes[c].first; m >= 0; m = j->nodes[m].next)
                if (!lomo__json_is(j, m, LOMO__J_STR))
                    return lomo__fail("%s: __metadata__ value for key %s is not a string, found %s", f->path,
                                      lomo__json_show(j, j->nodes[m].key, show, sizeof show),
                                      lomo__json_show(j, m, show2, sizeof show2));
            continue;
        }
        memset(t, 0, sizeof *t);
        if (lomo__json_str(j, key, t->name, sizeof t->name) <= 0)
            return lomo__fail("%s: tensor name %s is empty, longer than 127 bytes or contains \\u0000", f->path,
                              lomo__json_show(j, key, show, sizeof show));
        if (lomo__st_entry(f, j, c, t, data, dsize)) return -1;
        f->n++;
    }
    if (f->n > 1) {
        qsort(f->t, (size_t)f->n, sizeof *f->t, lomo__st_cmp_name);
        for (i = 1; i < f->n; i++)
            if (!strcmp(f->t[i - 1].name, f->t[i].name)) return lomo__fail("%s: duplicate tensor name '%s'", f->path, f->t[i].name);
        qsort(f->t, (size_t)f->n, sizeof *f->t, lomo__st_cmp_off);
    }
    for (i = 0; i < f->n; i++) { /* sorted by offset: each must start where the previous ended */
        if (f->t[i].begin < pos)
            return lomo__fail("%s: tensor '%s' overlaps tensor '%s' (data_offsets [%llu, %llu])", f->path, f->t[i].name,
                              f->t[i - 1].name, (unsigned long long)f->t[i].begin, (unsigned long long)f->t[i].end);
        if (f->t[i].begin > pos)
            return lomo__fail("%s: hole in the data buffer: bytes [%llu, %llu) before tensor '%s' belong to no tensor",
                              f->path, (unsigned long long)pos, (unsigned long long)f->t[i].begin, f->t[i].name);
        pos = f->t[i].end;
    }
    if (pos != dsize)
        return lomo__fail("%s: hole in the data buffer: bytes [%llu, %llu) at the end belong to no tensor", f->path,
                          (unsigned long long)pos, (unsigned long long)dsize);
    return 0;
}

static int lomo__st_open(lomo__st_file *f, const char *path) {
    struct stat st;
    const unsigned char *m;
    uint64_t hlen = 0;
    lomo__json j;
    char what[1100];
    int fd, i, rc;
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s", path);
    if ((fd = open(path, O_RDONLY)) < 0) return lomo__fail("%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) { close(fd); return lomo__fail("%s: not a regular file", path); }
    if (st.st_size < 8) { close(fd); return lomo__fail("%s: file too small (%lld bytes) for the 8-byte header length", path, (long long)st.st_size); }
    f->size = (size_t)st.st_size;
    f->map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (f->map == MAP_FAILED) { f->map = NULL; return lomo__fail("%s: mmap failed: %s", path, strerror(errno)); }
    m = (const unsigned char *)f->map;
    for (i = 7; i >= 0; i--) hlen = hlen << 8 | m[i];
    if (hlen > f->size - 8) {
        rc = lomo__fail("%s: header length %llu runs past the end of the file (%zu bytes): truncated or not a safetensors file",
                        path, (unsigned long long)hlen, f->size);
        lomo__st_close(f);
        return rc;
    }
    if (hlen > LOMO__ST_MAX_HEADER) {
        rc = lomo__fail("%s: header length %llu exceeds the 100 MB limit", path, (unsigned long long)hlen);
        lomo__st_close(f);
        return rc;
    }
    snprintf(what, sizeof what, "%s: safetensors header", path);
    if (lomo__json_parse(&j, (const char *)m + 8, (size_t)hlen, what)) { lomo__st_close(f); return -1; }
    rc = lomo__st_index(f, &j, m + 8 + hlen, f->size - 8 - hlen);
    lomo__json_free(&j);
    if (rc) lomo__st_close(f);
    return rc;
}

static const lomo__st_tensor *lomo__st_find(const lomo__st_file *f, const char *name) {
    int i;
    for (i = 0; i < f->n; i++) if (!strcmp(f->t[i].name, name)) return &f->t[i];
    return NULL;
}

/* dst gets numel floats; F32, F16, BF16, F64 are accepted. */
static int lomo__st_read_f32(const lomo__st_tensor *t, float *dst);
/* elements [off, off + n) of t as floats */
static int lomo__st_read_f32_range(const lomo__st_tensor *t, float *dst, int64_t off, int64_t n) {
    lomo__st_tensor v = *t;
    int sz = v.dtype >= 0 && v.dtype < LOMO__ST_NDTYPE ? lomo__st_dtype_size[v.dtype] : 0;
    if (off < 0 || n < 0 || off + n > t->numel) return lomo__fail("tensor '%s': range out of bounds", t->name);
    v.data = (const unsigned char *)t->data + (size_t)off * sz;
    v.numel = n;
    return lomo__st_read_f32(&v, dst);
}

static int lomo__st_read_f32(const lomo__st_tensor *t, float *dst) {
    const unsigned char *p = (const unsigned char *)t->data;
    int64_t i;
    switch (t->dtype) {
    case LOMO__ST_F32: if (t->numel) memcpy(dst, p, (size_t)t->numel * 4); return 0;
    case LOMO__ST_F16: for (i = 0; i < t->numel; i++) dst[i] = lomo_f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8)); return 0;
    case LOMO__ST_BF16: for (i = 0; i < t->numel; i++) dst[i] = lomo_bf16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8)); return 0;
    case LOMO__ST_F64: for (i = 0; i < t->numel; i++) { double d; memcpy(&d, p + 8 * i, 8); dst[i] = (float)d; } return 0;
    default: return lomo__fail("tensor '%s': dtype %s cannot be read as float", t->name,
                               t->dtype >= 0 && t->dtype < LOMO__ST_NDTYPE ? lomo__st_dtype_name[t->dtype] : "?");
    }
}

/* Writes n tensors (in the given order) and optional metadata atomically. */
static int lomo__st_save(const char *path, const lomo__st_out *t, int n, const char *const *meta_kv) {
    lomo__sb h = { NULL, 0, 0, 0 };
    uint64_t off = 0, numel;
    unsigned char len8[8];
    lomo__aw w;
    int i, k;
    for (i = 0; i < n; i++) { /* validate first: never write a file we would refuse to read */
        if (!t[i].name || !t[i].name[0] || strlen(t[i].name) > 127 || !lomo__utf8_valid(t[i].name) || !strcmp(t[i].name, "__metadata__"))
            return lomo__fail("%s: tensor %d: name must be 1..127 bytes of UTF-8 and not __metadata__", path, i);
        if (t[i].dtype < 0 || t[i].dtype >= LOMO__ST_NDTYPE || t[i].ndim < 0 || t[i].ndim > LOMO__ST_MAX_DIMS)
            return lomo__fail("%s: tensor '%s': bad dtype %d or ndim %d", path, t[i].name, t[i].dtype, t[i].ndim);
        for (numel = 1, k = 0; k < t[i].ndim; k++) {
            if (t[i].shape[k] < 0 || (t[i].shape[k] && numel > (uint64_t)INT64_MAX / 8 / (uint64_t)t[i].shape[k]))
                return lomo__fail("%s: tensor '%s': negative or overflowing shape", path, t[i].name);
            numel *= (uint64_t)t[i].shape[k];
        }
        if (numel && !t[i].data) return lomo__fail("%s: tensor '%s': no data", path, t[i].name);
        for (k = 0; k < i; k++)
            if (!strcmp(t[k].name, t[i].name)) return lomo__fail("%s: duplicate tensor name '%s'", path, t[i].name);
    }
    lomo__sb_add(&h, "{", 1);
    if (meta_kv && meta_kv[0]) {
        lomo__sb_add(&h, "\"__metadata__\":{", 16);
        for (i = 0; meta_kv[i]; i += 2) {
            if (!meta_kv[i + 1] || !lomo__utf8_valid(meta_kv[i]) || !lomo__utf8_valid(meta_kv[i + 1])) {
                LOMO_FREE(h.p);
                return lomo__fail("%s: metadata key '%s': value missing or not UTF-8", path, meta_kv[i]);
            }
            if (i) lomo__sb_add(&h, ",", 1);
            lomo__sb_jstr(&h, meta_kv[i]);
            lomo__sb_add(&h, ":", 1);
            lomo__sb_jstr(&h, meta_kv[i + 1]);
        }
        lomo__sb_add(&h, n ? "}," : "}", n ? 2 : 1);
    }
    for (i = 0; i < n; i++) {
        for (numel = 1, k = 0; k < t[i].ndim; k++) numel *= (uint64_t)t[i].shape[k];
        if (i) lomo__sb_add(&h, ",", 1);
        lomo__sb_jstr(&h, t[i].name);
        lomo__sb_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", lomo__st_dtype_name[t[i].dtype]);
        for (k = 0; k < t[i].ndim; k++) lomo__sb_printf(&h, k ? ",%lld" : "%lld", (long long)t[i].shape[k]);
        lomo__sb_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                        (unsigned long long)(off + numel * (uint64_t)lomo__st_dtype_size[t[i].dtype]));
        off += numel * (uint64_t)lomo__st_dtype_size[t[i].dtype];
    }
    lomo__sb_add(&h, "}", 1);
    while (!h.oom && h.n % 8) lomo__sb_add(&h, " ", 1); /* pad: data buffer starts 8-aligned */
    if (h.oom) { LOMO_FREE(h.p); return lomo__fail("%s: out of memory building the header", path); }
    for (i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h.n >> (8 * i));
    if (lomo__aw_open(&w, path) || lomo__aw_write(&w, len8, 8) || lomo__aw_write(&w, h.p, h.n)) { LOMO_FREE(h.p); return -1; }
    LOMO_FREE(h.p);
    for (i = 0; i < n; i++) {
        for (numel = 1, k = 0; k < t[i].ndim; k++) numel *= (uint64_t)t[i].shape[k];
        if (numel && lomo__aw_write(&w, t[i].data, (size_t)(numel * (uint64_t)lomo__st_dtype_size[t[i].dtype]))) return -1;
    }
    return lomo__aw_commit(&w);
}

/* ======================================================================== */
/* config.json                                                              */
/* ======================================================================== */
/* HF config of a llama / mistral / qwen2 model. Anything the kernels do not
   implement (other activations, rope_scaling, MLP bias, Qwen2 sliding window)
   is refused rather than silently ignored. */

typedef struct lomo__cfgp { const lomo__json *j; const char *path; int obj; /* object the fields are read from */ } lomo__cfgp;

static int lomo__cfg_bad(const lomo__cfgp *c, const char *key, const char *expected, int node) {
    char show[64];
    if (node < 0) return lomo__fail("%s: field '%s': missing required field (%s)", c->path, key, expected);
    return lomo__fail("%s: field '%s': expected %s, found %s", c->path, key, expected, lomo__json_show(c->j, node, show, sizeof show));
}

/* Positive integer field; absent or null gives def, or an error when def < 0 (required). */
static int lomo__cfg_int(const lomo__cfgp *c, const char *key, int def, int *out) {
    int node = lomo__json_get(c->j, c->obj, key);
    int64_t v;
    if (node < 0 || c->j->nodes[node].type == LOMO__J_NULL) {
        if (def < 0) return lomo__cfg_bad(c, key, "a positive integer", -1);
        *out = def;
        return 0;
    }
    if (lomo__json_int(c->j, node, &v) || v <= 0 || v > 0x7fffffff) return lomo__cfg_bad(c, key, "a positive integer", node);
    *out = (int)v;
    return 0;
}

static int lomo__cfg_float(const lomo__cfgp *c, const char *key, double def, float *out) {
    int node = lomo__json_get(c->j, c->obj, key);
    double v = def;
    if ((node < 0 || c->j->nodes[node].type == LOMO__J_NULL) && def < 0) /* required */
        return lomo__cfg_bad(c, key, "a positive number", -1);
    if (node >= 0 && c->j->nodes[node].type != LOMO__J_NULL) {
        if (!lomo__json_is(c->j, node, LOMO__J_NUM) || !(c->j->nodes[node].num > 0) || c->j->nodes[node].num > 3.4e38)
            return lomo__cfg_bad(c, key, "a positive number", node);
        v = c->j->nodes[node].num;
    }
    *out = (float)v;
    return 0;
}

static int lomo__cfg_bool(const lomo__cfgp *c, const char *key, int def, int *out) {
    int node = lomo__json_get(c->j, c->obj, key);
    *out = def;
    if (node < 0 || c->j->nodes[node].type == LOMO__J_NULL) return 0;
    if (c->j->nodes[node].type == LOMO__J_TRUE) *out = 1;
    else if (c->j->nodes[node].type == LOMO__J_FALSE) *out = 0;
    else return lomo__cfg_bad(c, key, "true or false", node);
    return 0;
}

/* rope_scaling (transformers < 5) / rope_parameters (>= 5): absent, null,
   type "default" (plain RoPE) or "llama3" (Llama 3.x frequency scaling). */
static int lomo__cfg_rope(const lomo__cfgp *c, const char *key, lomo_config *cfg) {
    int node = lomo__json_get(c->j, 0, key), ty;
    char buf[64];
    lomo__cfgp r = *c;
    if (node < 0 || c->j->nodes[node].type == LOMO__J_NULL) return 0;
    if (c->j->nodes[node].type != LOMO__J_OBJ) return lomo__cfg_bad(c, key, "null or an object", node);
    if ((ty = lomo__json_get(c->j, node, "rope_type")) < 0) ty = lomo__json_get(c->j, node, "type");
    if (ty < 0 && !strcmp(key, "rope_parameters")) return 0; /* just rope_theta */
    if (lomo__json_streq(c->j, ty, "default")) return 0;
    if (lomo__json_streq(c->j, ty, "llama3")) {
        r.obj = node;
        cfg->rope_type = 1;
        if (lomo__cfg_float(&r, "factor", -1, &cfg->rope_factor) ||
            lomo__cfg_float(&r, "low_freq_factor", -1, &cfg->rope_low_freq_factor) ||
            lomo__cfg_float(&r, "high_freq_factor", -1, &cfg->rope_high_freq_factor) ||
            lomo__cfg_int(&r, "original_max_position_embeddings", -1, &cfg->rope_original_max_pos))
            return -1;
        if (!(cfg->rope_factor > 0) || !(cfg->rope_high_freq_factor > cfg->rope_low_freq_factor))
            return lomo__fail("%s: field '%s': llama3 needs factor > 0 and high_freq_factor > low_freq_factor "
                              "(found factor %g, low %g, high %g)", c->path, key, cfg->rope_factor,
                              cfg->rope_low_freq_factor, cfg->rope_high_freq_factor);
        return 0;
    }
    if (lomo__json_str(c->j, ty, buf, sizeof buf) < 0) lomo__json_show(c->j, ty >= 0 ? ty : node, buf, sizeof buf);
    return lomo__fail("%s: field '%s': rope type %s is not supported (supported: default, llama3)", c->path, key, buf);
}

static int lomo__config_parse(const lomo__cfgp *c, lomo_config *cfg) {
    const lomo__json *j = c->j;
    int node, bias = 0, mlp_bias = 0, swa = 0, qwen;
    char buf[64];
    memset(cfg, 0, sizeof *cfg);
    if (!lomo__json_is(j, 0, LOMO__J_OBJ)) return lomo__fail("%s: config is not a JSON object", c->path);
    for (node = j->nodes[0].first; node >= 0; node = j->nodes[node].next) { /* Python keeps the last, we refuse */
        int other;
        for (other = j->nodes[node].next; other >= 0; other = j->nodes[other].next)
            if (lomo__json_str(j, j->nodes[node].key, buf, sizeof buf) >= 0 && lomo__json_streq(j, j->nodes[other].key, buf))
                return lomo__fail("%s: duplicate field '%s'", c->path, buf);
    }
    node = lomo__json_get(j, 0, "model_type");
    if (!lomo__json_streq(j, node, "llama") && !lomo__json_streq(j, node, "mistral") && !lomo__json_streq(j, node, "qwen2"))
        return lomo__cfg_bad(c, "model_type", "\"llama\", \"mistral\" or \"qwen2\"", node);
    lomo__json_str(j, node, cfg->model_type, sizeof cfg->model_type);
    qwen = !strcmp(cfg->model_type, "qwen2");
    if (lomo__cfg_int(c, "hidden_size", -1, &cfg->dim) || lomo__cfg_int(c, "intermediate_size", -1, &cfg->hidden_dim) ||
        lomo__cfg_int(c, "num_hidden_layers", -1, &cfg->n_layers) || lomo__cfg_int(c, "num_attention_heads", -1, &cfg->n_heads) ||
        lomo__cfg_int(c, "num_key_value_heads", cfg->n_heads, &cfg->n_kv_heads) ||
        lomo__cfg_int(c, "vocab_size", -1, &cfg->vocab_size) ||
        lomo__cfg_int(c, "max_position_embeddings", 2048, &cfg->max_seq_len) ||
        lomo__cfg_float(c, "rms_norm_eps", 1e-6, &cfg->norm_eps) || lomo__cfg_float(c, "rope_theta", 10000.0, &cfg->rope_theta) ||
        lomo__cfg_bool(c, "tie_word_embeddings", 0, &cfg->tie_embeddings) ||
        lomo__cfg_bool(c, "attention_bias", 0, &bias) || lomo__cfg_bool(c, "mlp_bias", 0, &mlp_bias) ||
        lomo__cfg_bool(c, "use_sliding_window", 0, &swa))
        return -1;
    if (cfg->n_heads % cfg->n_kv_heads) {
        snprintf(buf, sizeof buf, "a positive integer dividing num_attention_heads=%d", cfg->n_heads);
        return lomo__cfg_bad(c, "num_key_value_heads", buf, lomo__json_get(j, 0, "num_key_value_heads"));
    }
    node = lomo__json_get(j, 0, "head_dim");
    if (cfg->dim % cfg->n_heads && (node < 0 || j->nodes[node].type == LOMO__J_NULL))
        return lomo__fail("%s: field 'head_dim': missing, and hidden_size=%d is not divisible by num_attention_heads=%d",
                          c->path, cfg->dim, cfg->n_heads);
    if (lomo__cfg_int(c, "head_dim", cfg->dim / cfg->n_heads, &cfg->head_dim)) return -1;
    /* dtype: "torch_dtype" (newer transformers write "dtype") */
    if ((node = lomo__json_get(j, 0, "torch_dtype")) < 0) node = lomo__json_get(j, 0, "dtype");
    if (node < 0 || j->nodes[node].type == LOMO__J_NULL || lomo__json_streq(j, node, "float32")) cfg->dtype = LOMO_F32;
    else if (lomo__json_streq(j, node, "bfloat16")) cfg->dtype = LOMO_BF16;
    else if (lomo__json_streq(j, node, "float16")) cfg->dtype = LOMO_F16;
    else return lomo__cfg_bad(c, "torch_dtype", "\"float32\", \"bfloat16\" or \"float16\"", node);
    /* unsupported features */
    node = lomo__json_get(j, 0, "hidden_act");
    if (node >= 0 && !lomo__json_streq(j, node, "silu")) return lomo__cfg_bad(c, "hidden_act", "\"silu\"", node);
    /* RoPE: transformers < 5 writes rope_theta + rope_scaling, >= 5 rope_parameters {rope_type, rope_theta} */
    if (lomo__cfg_rope(c, "rope_scaling", cfg) || lomo__cfg_rope(c, "rope_parameters", cfg)) return -1;
    node = lomo__json_get(j, 0, "rope_parameters");
    if (lomo__json_get(j, node, "rope_theta") >= 0) {
        lomo__cfgp r = *c;
        r.obj = node;
        if (lomo__cfg_float(&r, "rope_theta", 10000.0, &cfg->rope_theta)) return -1;
    }
    /* sliding-window attention: qwen2's use_sliding_window, or per-layer layer_types */
    node = lomo__json_get(j, 0, "layer_types");
    if (node >= 0 && j->nodes[node].type != LOMO__J_NULL) {
        int l;
        if (j->nodes[node].type != LOMO__J_ARR) return lomo__cfg_bad(c, "layer_types", "an array", node);
        for (l = j->nodes[node].first; l >= 0; l = j->nodes[l].next)
            if (!lomo__json_streq(j, l, "full_attention"))
                return lomo__cfg_bad(c, "layer_types", "only \"full_attention\" (sliding-window attention is not supported)", l);
    }
    if (mlp_bias) return lomo__cfg_bad(c, "mlp_bias", "false (MLP biases are not supported)", lomo__json_get(j, 0, "mlp_bias"));
    if (!strcmp(cfg->model_type, "mistral")) {   /* sliding_window: an integer, or null for none */
        node = lomo__json_get(j, 0, "sliding_window");
        if (node >= 0 && j->nodes[node].type != LOMO__J_NULL && lomo__cfg_int(c, "sliding_window", 0, &cfg->sliding_window))
            return -1;
    }
    if (qwen && swa) return lomo__cfg_bad(c, "use_sliding_window", "false (sliding-window attention is not supported)",
                                          lomo__json_get(j, 0, "use_sliding_window"));
    cfg->qkv_bias = qwen ? 1 : bias;
    cfg->o_bias = qwen ? 0 : bias;
    return 0;
}

static int lomo__config_load(const char *path, lomo_config *cfg) {
    char *txt;
    size_t n;
    lomo__json j;
    lomo__cfgp c;
    int rc;
    if (lomo__read_file(path, &txt, &n)) return -1;
    if (lomo__json_parse(&j, txt, n, path)) { LOMO_FREE(txt); return -1; }
    c.j = &j; c.path = path; c.obj = 0;
    rc = lomo__config_parse(&c, cfg);
    lomo__json_free(&j);
    LOMO_FREE(txt);
    return rc;
}

static int lomo__config_save(const char *path, const lomo_config *cfg) {
    lomo__sb b = { NULL, 0, 0, 0 };
    const char *arch, *dt = cfg->dtype == LOMO_BF16 ? "bfloat16" : cfg->dtype == LOMO_F16 ? "float16" : "float32";
    int qwen = !strcmp(cfg->model_type, "qwen2"), rc;
    char eps[32], theta[32];
    if (!strcmp(cfg->model_type, "llama")) arch = "LlamaForCausalLM";
    else if (!strcmp(cfg->model_type, "mistral")) arch = "MistralForCausalLM";
    else if (qwen) arch = "Qwen2ForCausalLM";
    else return lomo__fail("%s: model_type '%s' is not one of llama, mistral, qwen2", path, cfg->model_type);
    if (cfg->dim <= 0 || cfg->hidden_dim <= 0 || cfg->n_layers <= 0 || cfg->n_heads <= 0 || cfg->n_kv_heads <= 0 ||
        cfg->head_dim <= 0 || cfg->vocab_size <= 0 || cfg->max_seq_len <= 0 || cfg->n_heads % cfg->n_kv_heads ||
        !(cfg->norm_eps > 0) || !(cfg->rope_theta > 0))
        return lomo__fail("%s: config has non-positive sizes or n_heads %% n_kv_heads != 0", path);
    if (qwen ? (!cfg->qkv_bias || cfg->o_bias) : (!cfg->qkv_bias != !cfg->o_bias))
        return lomo__fail("%s: qkv_bias=%d o_bias=%d cannot be expressed in a %s config", path, cfg->qkv_bias, cfg->o_bias, cfg->model_type);
    lomo__fmt_float(eps, sizeof eps, cfg->norm_eps);
    lomo__fmt_float(theta, sizeof theta, cfg->rope_theta);
    lomo__sb_printf(&b, "{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"%s\",\n", arch, cfg->model_type);
    lomo__sb_printf(&b, "  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n", cfg->dim, cfg->hidden_dim);
    lomo__sb_printf(&b, "  \"num_hidden_layers\": %d,\n  \"num_attention_heads\": %d,\n", cfg->n_layers, cfg->n_heads);
    lomo__sb_printf(&b, "  \"num_key_value_heads\": %d,\n  \"head_dim\": %d,\n", cfg->n_kv_heads, cfg->head_dim);
    lomo__sb_printf(&b, "  \"vocab_size\": %d,\n  \"max_position_embeddings\": %d,\n", cfg->vocab_size, cfg->max_seq_len);
    lomo__sb_printf(&b, "  \"rms_norm_eps\": %s,\n  \"rope_theta\": %s,\n", eps, theta);
    if (cfg->rope_type == 1) {
        char f[32], lo[32], hi[32];
        lomo__fmt_float(f, sizeof f, cfg->rope_factor);
        lomo__fmt_float(lo, sizeof lo, cfg->rope_low_freq_factor);
        lomo__fmt_float(hi, sizeof hi, cfg->rope_high_freq_factor);
        lomo__sb_printf(&b, "  \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": %s, \"low_freq_factor\": %s, "
                        "\"high_freq_factor\": %s, \"original_max_position_embeddings\": %d},\n",
                        f, lo, hi, cfg->rope_original_max_pos);
    } else lomo__sb_printf(&b, "  \"rope_scaling\": null,\n");
    if (!strcmp(cfg->model_type, "mistral")) {
        if (cfg->sliding_window > 0) lomo__sb_printf(&b, "  \"sliding_window\": %d,\n", cfg->sliding_window);
        else lomo__sb_printf(&b, "  \"sliding_window\": null,\n");
    }
    lomo__sb_printf(&b, "  \"tie_word_embeddings\": %s,\n", cfg->tie_embeddings ? "true" : "false");
    if (qwen) lomo__sb_printf(&b, "  \"use_sliding_window\": false,\n");
    else lomo__sb_printf(&b, "  \"attention_bias\": %s,\n  \"mlp_bias\": false,\n", cfg->qkv_bias ? "true" : "false");
    lomo__sb_printf(&b, "  \"hidden_act\": \"silu\",\n  \"torch_dtype\": \"%s\"\n}\n", dt);
    if (b.oom) { LOMO_FREE(b.p); return lomo__fail("%s: out of memory", path); }
    rc = lomo__write_file_atomic(path, b.p, b.n);
    LOMO_FREE(b.p);
    return rc;
}

/* ======================================================================== */
/* memory accounting: every backend allocation goes through here           */
/* ======================================================================== */

LOMODEF const char *lomo_mem_tag_name(int tag) {
    static const char *names[LOMO_MEM_NTAGS] = {
        "parameters", "activations", "gradient buffer", "optimizer state", "workspace", "communication",
        "kv cache"};
    return (tag >= 0 && tag < LOMO_MEM_NTAGS) ? names[tag] : "?";
}

static void *lomo__alloc(lomo_model *m, int tag, size_t bytes) {
    void *p;
    if (bytes == 0) bytes = 1;
    p = m->be->alloc(m->be->ctx, bytes);
    if (!p) { lomo__fail("out of %s memory: could not allocate %zu bytes for %s",
                         m->be->name, bytes, lomo_mem_tag_name(tag)); return NULL; }
    m->mem.current[tag] += bytes;
    m->mem.total_current += bytes;
    if (m->mem.current[tag] > m->mem.peak[tag]) m->mem.peak[tag] = m->mem.current[tag];
    if (m->mem.total_current > m->mem.total_peak) m->mem.total_peak = m->mem.total_current;
    return p;
}

static void lomo__free(lomo_model *m, int tag, void *p, size_t bytes) {
    if (!p) return;
    if (bytes == 0) bytes = 1;
    m->be->free(m->be->ctx, p);
    m->mem.current[tag] -= bytes;
    m->mem.total_current -= bytes;
}

LOMODEF lomo_memory lomo_memory_report(const lomo_model *m) { return m->mem; }

LOMODEF void lomo_memory_print(FILE *f, const lomo_memory *r) {
    int i;
    fprintf(f, "%-18s %12s %12s\n", "memory", "current MiB", "peak MiB");
    for (i = 0; i < LOMO_MEM_NTAGS; i++)
        fprintf(f, "%-18s %12.3f %12.3f\n", lomo_mem_tag_name(i),
                r->current[i] / 1048576.0, r->peak[i] / 1048576.0);
    fprintf(f, "%-18s %12.3f %12.3f\n", "total", r->total_current / 1048576.0,
            r->total_peak / 1048576.0);
}

LOMODEF void lomo_memory_print_compare(FILE *f, const lomo_memory *r, int64_t n_params) {
    const double MiB = 1048576.0;
    double p = (double)r->peak[LOMO_MEM_PARAMS], a = (double)r->peak[LOMO_MEM_ACTIVATIONS],
           w = (double)r->peak[LOMO_MEM_WORKSPACE] + (double)r->peak[LOMO_MEM_COMM],
           g = (double)r->peak[LOMO_MEM_GRADIENTS], o = (double)r->peak[LOMO_MEM_OPTIMIZER],
           full = 4.0 * (double)n_params;
    fprintf(f, "%-20s %14s %14s %14s\n", "MiB", "LOMO (this run)", "SGD", "AdamW");
    fprintf(f, "%-20s %14.2f %14.2f %14.2f\n", "parameters", p / MiB, p / MiB, p / MiB);
    fprintf(f, "%-20s %14.2f %14.2f %14.2f\n", "gradients", g / MiB, full / MiB, full / MiB);
    fprintf(f, "%-20s %14.2f %14.2f %14.2f\n", "optimizer state", o / MiB, 0.0, 2 * full / MiB);
    fprintf(f, "%-20s %14.2f %14.2f %14.2f\n", "activations", a / MiB, a / MiB, a / MiB);
    fprintf(f, "%-20s %14.2f %14.2f %14.2f\n", "workspace", w / MiB, w / MiB, w / MiB);
    fprintf(f, "%-20s %14.2f %14.2f %14.2f\n", "total", (p + g + o + a + w) / MiB, (p + full + a + w) / MiB,
            (p + 3 * full + a + w) / MiB);
}

/* ======================================================================== */
/* CPU backend: forward/backward kernels in pairs, OpenMP, CBLAS optional  */
/* ======================================================================== */

#define LOMO__PRAGMA(x) _Pragma(#x)
#ifdef _OPENMP
#define LOMO__OMP(x) LOMO__PRAGMA(omp x)
#else
#define LOMO__OMP(x)
#endif
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef LOMO_CBLAS
#include <cblas.h>
#endif

#define LOMO__MAX_HEAD_DIM 1024

typedef struct lomo__cpu { int err; char msg[256]; float *scratch; size_t scratch_bytes; } lomo__cpu;

/* ---- 16-bit storage: widening, and rounding back (nearest-even or stochastic) ---- */

static float lomo__elem(const lomo_tensor *t, size_t i) {
    switch (t->dtype) {
    case LOMO_BF16: return lomo_bf16_to_f32(((const uint16_t *)t->data)[i]);
    case LOMO_F16: return lomo_f16_to_f32(((const uint16_t *)t->data)[i]);
    default: return ((const float *)t->data)[i];
    }
}

/* a uniform in [0,1) that depends only on (seed, stream, i): reproducible for
   any thread count, and its whole state is the seed and the step */
static float lomo__hash_uniform(uint64_t seed, uint64_t stream, uint64_t i) {
    uint64_t z = seed ^ (stream * 0x9E3779B97F4A7C15ull) ^ (i * 0xD1B54A32D192ED03ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)(z >> 40) * (1.0f / 16777216.0f);
}

/* the f16 value next to h, upwards (up=1) or downwards */
static uint16_t lomo__f16_step(uint16_t h, int up) {
    int neg = h >> 15;
    if ((h & 0x7FFF) == 0) return up ? 0x0001 : 0x8001;
    return (uint16_t)(neg == !up ? h + 1 : h - 1);   /* away from zero: +1 on the magnitude */
}

/* x rounded to 16 bits: to nearest even, or stochastically (up with
   probability equal to the distance from the lower neighbour: unbiased) */
static uint16_t lomo__round16(float x, lomo_dtype dt, int stochastic, float u) {
    if (dt == LOMO_BF16) {
        uint32_t b;
        if (!stochastic || x != x) return lomo_f32_to_bf16(x);
        memcpy(&b, &x, 4);
        if ((b & 0x7F800000u) == 0x7F800000u) return (uint16_t)(b >> 16);   /* inf */
        /* adding a uniform 16-bit integer below the kept bits rounds the
           magnitude up with probability (dropped bits) / 2^16 */
        b += (uint32_t)(u * 65536.0f);
        return (uint16_t)(b >> 16);
    } else {
        uint16_t r = lomo_f32_to_f16(x), lo, hi;
        float vr = lomo_f16_to_f32(r), vlo, vhi;
        if (!stochastic || vr == x || x != x || (r & 0x7C00) == 0x7C00) return r;
        if (vr < x) { lo = r; hi = lomo__f16_step(r, 1); } else { hi = r; lo = lomo__f16_step(r, 0); }
        vlo = lomo_f16_to_f32(lo); vhi = lomo_f16_to_f32(hi);
        return u < (x - vlo) / (vhi - vlo) ? hi : lo;
    }
}

/* element i of t's data; the rounding hash uses its index in the whole tensor */
static void lomo__store(lomo_tensor *t, size_t i, float v, const lomo_update_args *a) {
    if (t->dtype == LOMO_F32) { ((float *)t->data)[i] = v; return; }
    ((uint16_t *)t->data)[i] = lomo__round16(v, t->dtype, a && a->stochastic,
        a && a->stochastic ? lomo__hash_uniform(a->seed, a->stream, (uint64_t)a->shard_off + i) : 0.0f);
}

/* A weight as fp32: itself, or widened into the backend's scratch (the CPU
   kernels and BLAS compute in fp32; storage may be 16-bit). */
static const float *lomo__f32(void *ctx, const lomo_tensor *w) {
    lomo__cpu *c = (lomo__cpu *)ctx;
    long long i, n = (long long)w->numel;
    if (w->dtype == LOMO_F32) return (const float *)w->data;
    if (!c || (size_t)n * 4 > c->scratch_bytes) {
        if (c) { c->err = 1; snprintf(c->msg, sizeof c->msg, "no scratch to widen 16-bit tensor %s", w->name); }
        return NULL;
    }
    LOMO__OMP(parallel for)
    for (i = 0; i < n; i++) c->scratch[i] = lomo__elem(w, (size_t)i);
    return c->scratch;
}

static void *lomo__cpu_alloc(void *ctx, size_t n) { (void)ctx; return LOMO_MALLOC(n); }
static void lomo__cpu_free(void *ctx, void *p) { (void)ctx; LOMO_FREE(p); }
static void lomo__cpu_copy(void *ctx, void *d, const void *s, size_t n) { (void)ctx; memmove(d, s, n); }
static void lomo__cpu_zero(void *ctx, void *p, size_t n) { (void)ctx; memset(p, 0, n); }
static void lomo__cpu_add(void *ctx, float *y, const float *x, size_t n) {
    long long i;
    (void)ctx;
    LOMO__OMP(parallel for)
    for (i = 0; i < (long long)n; i++) y[i] += x[i];
}
static int lomo__cpu_check(void *ctx) {
    lomo__cpu *c = (lomo__cpu *)ctx;
    if (c && c->err) return lomo__fail("cpu backend: %s", c->msg);
    return 0;
}

/* vectorisable inner loops (omp simd allows reassociation; fixed order per binary) */
static float lomo__dot(const float *a, const float *b, int n) {
    float s = 0.0f;
    int i;
    LOMO__OMP(simd reduction(+:s))
    for (i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static void lomo__axpy(float *y, float a, const float *x, int n) {
    int i;
    LOMO__OMP(simd)
    for (i = 0; i < n; i++) y[i] += a * x[i];
}

/* x (N,C) = wte[tok[n]] */
static void lomo__cpu_embed_fwd(void *ctx, float *x, const int32_t *tok, const lomo_tensor *wte, int N, int C) {
    int n;
    (void)ctx;
    LOMO__OMP(parallel for)
    for (n = 0; n < N; n++) {
        int c;
        for (c = 0; c < C; c++) x[(size_t)n * C + c] = lomo__elem(wte, (size_t)tok[n] * C + c);
    }
}

/* dwte (V,C) += dx (N,C) scattered by token; parallel over columns, so no races */
static void lomo__cpu_embed_bwd(void *ctx, float *dwte, const float *dx, const int32_t *tok, int N, int C) {
    int c;
    (void)ctx;
    LOMO__OMP(parallel for)
    for (c = 0; c < C; c++) {
        int n;
        for (n = 0; n < N; n++) dwte[(size_t)tok[n] * C + c] += dx[(size_t)n * C + c];
    }
}

/* y (N,C) = x * rstd * w, rstd (N) = 1/sqrt(mean(x^2) + eps) */
static void lomo__cpu_rmsnorm_fwd(void *ctx, float *y, float *rstd, const float *x, const lomo_tensor *wt,
                                  int N, int C, float eps) {
    const float *w = lomo__f32(ctx, wt);
    int n;
    if (!w) return;
    LOMO__OMP(parallel for)
    for (n = 0; n < N; n++) {
        const float *xn = x + (size_t)n * C;
        float *yn = y + (size_t)n * C;
        float ss = 0.0f, r;
        int i;
        for (i = 0; i < C; i++) ss += xn[i] * xn[i];
        r = 1.0f / sqrtf(ss / C + eps);
        rstd[n] = r;
        for (i = 0; i < C; i++) yn[i] = w[i] * (xn[i] * r);
    }
}

/* dx (N,C) += r*w*dy - x * r^3/C * sum(w*dy*x);  dw (C) = sum_n dy*x*r */
static void lomo__cpu_rmsnorm_bwd(void *ctx, float *dx, float *dw, const float *dy, const float *x,
                                  const lomo_tensor *wt, const float *rstd, int N, int C) {
    const float *w = lomo__f32(ctx, wt);
    int n, i;
    if (!w) return;
    LOMO__OMP(parallel for)
    for (n = 0; n < N; n++) {
        const float *xn = x + (size_t)n * C, *dyn = dy + (size_t)n * C;
        float *dxn = dx + (size_t)n * C;
        float r = rstd[n], dot = 0.0f, k;
        for (i = 0; i < C; i++) dot += w[i] * dyn[i] * xn[i];
        k = dot * r * r * r / C;
        for (i = 0; i < C; i++) dxn[i] += r * w[i] * dyn[i] - k * xn[i];
    }
    LOMO__OMP(parallel for)
    for (i = 0; i < C; i++) {
        float s = 0.0f;
        for (n = 0; n < N; n++) s += dy[(size_t)n * C + i] * x[(size_t)n * C + i] * rstd[n];
        dw[i] = s;
    }
}

#ifdef LOMO_CBLAS
/* C (M,N) (+)= op(A) (M,K) op(B) (K,N), row-major. OpenMP splits C into
   blocks of rows (or of columns, when that dimension is larger) and each
   thread calls a single-threaded sgemm on its block, so the backend has one
   thread pool: OpenBLAS's own threads would fight OpenMP's for the cores
   (measured: 25x slower on 2 cores). lomo_cpu_backend() therefore sets
   OpenBLAS to one thread. */
static void lomo__sgemm_split(enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int M, int N, int K,
                              const float *A, int lda, const float *B, int ldb, int accumulate,
                              float *C, int ldc) {
    float beta = accumulate ? 1.0f : 0.0f;
    LOMO__OMP(parallel)
    {
#ifdef _OPENMP
        int nt = omp_get_num_threads(), id = omp_get_thread_num();
#else
        int nt = 1, id = 0;
#endif
        if (M >= N) {   /* rows of C: rows of op(A) */
            int lo = (int)((long long)M * id / nt), hi = (int)((long long)M * (id + 1) / nt);
            const float *a = ta == CblasNoTrans ? A + (size_t)lo * lda : A + lo;
            if (hi > lo) cblas_sgemm(CblasRowMajor, ta, tb, hi - lo, N, K, 1.0f, a, lda, B, ldb, beta,
                                     C + (size_t)lo * ldc, ldc);
        } else {        /* columns of C: columns of op(B) */
            int lo = (int)((long long)N * id / nt), hi = (int)((long long)N * (id + 1) / nt);
            const float *b = tb == CblasNoTrans ? B + lo : B + (size_t)lo * ldb;
            if (hi > lo) cblas_sgemm(CblasRowMajor, ta, tb, M, hi - lo, K, 1.0f, A, lda, b, ldb, beta,
                                     C + lo, ldc);
        }
    }
}
#endif

/* y (O) (+)= W (O,K) x + b: one token (generation's decode step), split over
   fixed blocks of 256 rows of W, so the result does not depend on the thread
   count; with BLAS, sgemv (OpenBLAS's M = 1 sgemm is 2x slower) */
static void lomo__cpu_gemv(float *y, const float *x, const float *w, const lomo_tensor *bt, int K, int O, int accumulate) {
    int blk, nb = (O + 255) / 256;
    LOMO__OMP(parallel for schedule(dynamic, 1))
    for (blk = 0; blk < nb; blk++) {
        int lo = blk * 256, hi = lo + 256 < O ? lo + 256 : O, o;
#ifdef LOMO_CBLAS
        cblas_sgemv(CblasRowMajor, CblasNoTrans, hi - lo, K, 1.0f, w + (size_t)lo * K, K, x, 1,
                    accumulate ? 1.0f : 0.0f, y + lo, 1);
        if (bt) for (o = lo; o < hi; o++) y[o] += lomo__elem(bt, (size_t)o);
#else
        for (o = lo; o < hi; o++) {
            float s = lomo__dot(x, w + (size_t)o * K, K) + (bt ? lomo__elem(bt, (size_t)o) : 0.0f);
            y[o] = accumulate ? y[o] + s : s;
        }
#endif
    }
}

/* y (N,O) (+)= x (N,K) W^T + b */
static void lomo__cpu_matmul_fwd(void *ctx, float *y, const float *x, const lomo_tensor *wt,
                                 const lomo_tensor *bt, int N, int K, int O, int accumulate) {
    const float *w = lomo__f32(ctx, wt);
    int n;
    if (!w) return;
    if (N == 1) { lomo__cpu_gemv(y, x, w, bt, K, O, accumulate); return; }
#ifdef LOMO_CBLAS
    lomo__sgemm_split(CblasNoTrans, CblasTrans, N, O, K, x, K, w, K, accumulate, y, O);
    if (bt) {
        LOMO__OMP(parallel for)
        for (n = 0; n < N; n++) { int o; for (o = 0; o < O; o++) y[(size_t)n * O + o] += lomo__elem(bt, (size_t)o); }
    }
#else
    LOMO__OMP(parallel for)
    for (n = 0; n < N; n++) {
        const float *xn = x + (size_t)n * K;
        float *yn = y + (size_t)n * O;
        int o;
        for (o = 0; o < O; o++) {
            float s = lomo__dot(xn, w + (size_t)o * K, K) + (bt ? lomo__elem(bt, (size_t)o) : 0.0f);
            yn[o] = accumulate ? yn[o] + s : s;
        }
    }
#endif
}

/* dx (N,K) (+)= dy (N,O) W (O,K) */
static void lomo__cpu_matmul_bwd_x(void *ctx, float *dx, const float *dy, const lomo_tensor *wt,
                                   int N, int K, int O, int accumulate) {
    const float *w = lomo__f32(ctx, wt);
    if (!w) return;
    {
#ifdef LOMO_CBLAS
    lomo__sgemm_split(CblasNoTrans, CblasNoTrans, N, K, O, dy, O, w, K, accumulate, dx, K);
#else
    int n;
    LOMO__OMP(parallel for)
    for (n = 0; n < N; n++) {
        float *dxn = dx + (size_t)n * K;
        const float *dyn = dy + (size_t)n * O;
        int o;
        if (!accumulate) memset(dxn, 0, sizeof(float) * K);
        for (o = 0; o < O; o++) lomo__axpy(dxn, dyn[o], w + (size_t)o * K, K);
    }
#endif
    }
}

/* dw (O,K) (+)= dy^T (O,N) x (N,K) */
static void lomo__cpu_matmul_bwd_w(void *ctx, float *dw, const float *dy, const float *x,
                                   int N, int K, int O, int accumulate) {
    (void)ctx;
#ifdef LOMO_CBLAS
    lomo__sgemm_split(CblasTrans, CblasNoTrans, O, K, N, dy, O, x, K, accumulate, dw, K);
#else
    int o;
    LOMO__OMP(parallel for)
    for (o = 0; o < O; o++) {
        float *dwo = dw + (size_t)o * K;
        int n;
        if (!accumulate) memset(dwo, 0, sizeof(float) * K);
        for (n = 0; n < N; n++) lomo__axpy(dwo, dy[(size_t)n * O + o], x + (size_t)n * K, K);
    }
#endif
}

/* db (O) = sum_n dy (N,O) */
static void lomo__cpu_bias_bwd(void *ctx, float *db, const float *dy, int N, int O) {
    int o;
    (void)ctx;
    LOMO__OMP(parallel for)
    for (o = 0; o < O; o++) {
        float s = 0.0f;
        int n;
        for (n = 0; n < N; n++) s += dy[(size_t)n * O + o];
        db[o] = s;
    }
}

/* RoPE, half rotation (Hugging Face Llama): for i < hd/2, with angle = t * inv_freq[i],
   (x[i], x[i+hd/2]) -> (x[i] cos - x[i+hd/2] sin, x[i+hd/2] cos + x[i] sin).
   The backward is the inverse rotation. */
static void lomo__cpu_rope(void *ctx, float *x, const float *inv_freq, int B, int T, int nh, int hd, int inverse) {
    int half = hd / 2, bt;
    (void)ctx;
    LOMO__OMP(parallel for)
    for (bt = 0; bt < B * T; bt++) {
        int t = bt % T, h, i;
        for (i = 0; i < half; i++) {
            float ang = (float)t * inv_freq[i];
            float c = cosf(ang), s = inverse ? -sinf(ang) : sinf(ang);
            for (h = 0; h < nh; h++) {
                float *xh = x + ((size_t)bt * nh + h) * hd;
                float a = xh[i], b = xh[i + half];
                xh[i] = a * c - b * s;
                xh[i + half] = b * c + a * s;
            }
        }
    }
}

/* Causal attention, one query row at a time: scores into a per-thread row of
   T floats, exact softmax, weighted sum of v. Nothing of size T x T is stored;
   lse (log-sum-exp of the scaled scores) is kept for the backward.
   Query head h reads kv head h / (nh/nkv). */
static void lomo__cpu_attn_fwd(void *ctx, float *out, float *lse, const float *q, const float *k,
                               const float *v, int B, int T, int nh, int nkv, int hd) {
    int rep = nh / nkv;
    float scale = 1.0f / sqrtf((float)hd);
    (void)ctx;
    LOMO__OMP(parallel)
    {
        float *p = (float *)LOMO_MALLOC(sizeof(float) * (size_t)T);
        int idx;
        LOMO__OMP(for)
        for (idx = 0; idx < B * T * nh; idx++) {
            int h = idx % nh, t = (idx / nh) % T, b = idx / (nh * T), j;
            size_t row = (size_t)(b * T + t) * nh + h;
            const float *qt = q + row * hd;
            const float *kb = k + ((size_t)b * T * nkv + h / rep) * hd;
            const float *vb = v + ((size_t)b * T * nkv + h / rep) * hd;
            float *ot = out + row * hd, mx = -INFINITY, sum = 0.0f;
            for (j = 0; j <= t; j++) {
                p[j] = lomo__dot(qt, kb + (size_t)j * nkv * hd, hd) * scale;
                mx = p[j] > mx ? p[j] : mx;
            }
            for (j = 0; j <= t; j++) { p[j] = expf(p[j] - mx); sum += p[j]; }
            memset(ot, 0, sizeof(float) * hd);
            for (j = 0; j <= t; j++) lomo__axpy(ot, p[j] / sum, vb + (size_t)j * nkv * hd, hd);
            lse[row] = mx + logf(sum);
        }
        LOMO_FREE(p);
    }
}

/* With P = softmax(S) recomputed from lse: dV = P^T dO, dP = dO V^T,
   dS = P * (dP - rowsum(dO * O)), dQ = scale dS K, dK = scale dS^T Q.
   Parallel over (batch, kv head): each thread owns its dk/dv rows. */
static void lomo__cpu_attn_bwd(void *ctx, float *dq, float *dk, float *dv, const float *dout,
                               const float *q, const float *k, const float *v, const float *out,
                               const float *lse, int B, int T, int nh, int nkv, int hd) {
    int rep = nh / nkv, bg;
    float scale = 1.0f / sqrtf((float)hd);
    (void)ctx;
    LOMO__OMP(parallel for)
    for (bg = 0; bg < B * nkv; bg++) {
        int b = bg / nkv, g = bg % nkv, h, t, j;
        size_t kstride = (size_t)nkv * hd, kbase = ((size_t)b * T * nkv + g) * hd;
        for (t = 0; t < T; t++) {
            memset(dk + kbase + t * kstride, 0, sizeof(float) * hd);
            memset(dv + kbase + t * kstride, 0, sizeof(float) * hd);
        }
        for (h = g * rep; h < (g + 1) * rep; h++) {
            for (t = 0; t < T; t++) {
                size_t row = (size_t)(b * T + t) * nh + h;
                const float *qt = q + row * hd, *dot = dout + row * hd, *ot = out + row * hd;
                float *dqt = dq + row * hd, D = lomo__dot(dot, ot, hd), L = lse[row];
                memset(dqt, 0, sizeof(float) * hd);
                for (j = 0; j <= t; j++) {
                    size_t kr = kbase + j * kstride;
                    float p = expf(lomo__dot(qt, k + kr, hd) * scale - L);
                    float ds = p * (lomo__dot(dot, v + kr, hd) - D) * scale;
                    lomo__axpy(dqt, ds, k + kr, hd);
                    lomo__axpy(dk + kr, ds, qt, hd);
                    lomo__axpy(dv + kr, p, dot, hd);
                }
            }
        }
    }
}

static float lomo__sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

/* h = silu(g) * u */
static void lomo__cpu_swiglu_fwd(void *ctx, float *h, const float *g, const float *u, size_t n) {
    long long i;
    (void)ctx;
    LOMO__OMP(parallel for)
    for (i = 0; i < (long long)n; i++) h[i] = g[i] * lomo__sigmoid(g[i]) * u[i];
}

/* dg = dh * u * sig(g) * (1 + g (1 - sig(g))), du = dh * silu(g); dg may alias dh */
static void lomo__cpu_swiglu_bwd(void *ctx, float *dg, float *du, const float *dh, const float *g,
                                 const float *u, size_t n) {
    long long i;
    (void)ctx;
    LOMO__OMP(parallel for)
    for (i = 0; i < (long long)n; i++) {
        float s = lomo__sigmoid(g[i]), d = dh[i];
        du[i] = d * g[i] * s;
        dg[i] = d * u[i] * s * (1.0f + g[i] * (1.0f - s));
    }
}

static void lomo__cpu_cross_entropy(void *ctx, float *losses, float *dlogits, const float *logits,
                                    const int32_t *targets, int N, int V, float dscale) {
    int n;
    (void)ctx;
    LOMO__OMP(parallel for)
    for (n = 0; n < N; n++) {
        const float *ln = logits + (size_t)n * V;
        float *dn = dlogits ? dlogits + (size_t)n * V : NULL;
        int tgt = targets[n], i;
        float mx = -INFINITY;
        double sum = 0.0;
        if (tgt < 0) {
            losses[n] = 0.0f;
            if (dn) memset(dn, 0, sizeof(float) * V);
            continue;
        }
        for (i = 0; i < V; i++) mx = ln[i] > mx ? ln[i] : mx;
        for (i = 0; i < V; i++) sum += exp((double)(ln[i] - mx));
        losses[n] = (float)(log(sum) + mx - ln[tgt]);
        if (dn) {
            float inv = (float)(1.0 / sum);
            for (i = 0; i < V; i++) dn[i] = expf(ln[i] - mx) * inv * dscale;
            dn[tgt] -= dscale;
        }
    }
}

/* Deterministic whatever the thread count: fixed chunks, summed in order. */
static double lomo__cpu_sumsq(void *ctx, const float *x, size_t n) {
    enum { CHUNKS = 64 };
    double part[CHUNKS], s = 0.0;
    size_t per = (n + CHUNKS - 1) / CHUNKS;
    int c;
    (void)ctx;
    LOMO__OMP(parallel for)
    for (c = 0; c < CHUNKS; c++) {
        size_t i, lo = (size_t)c * per, hi = lo + per < n ? lo + per : n;
        double a = 0.0;
        for (i = lo; i < hi; i++) a += (double)x[i] * x[i];
        part[c] = a;
    }
    for (c = 0; c < CHUNKS; c++) s += part[c];
    return s;
}

/* The built-in rules, element by element in fp32 (formulas in lomo_update_lomo,
   lomo_train_opts and the doc block); g = clamp(grad/loss_scale, +-clip_value) * clip_coef. */
static float lomo__clipped(const float *g, size_t i, const lomo_update_args *a) {
    float v = g[i] * a->inv_loss_scale;
    if (a->clip_value > 0.0f) v = v < -a->clip_value ? -a->clip_value : (v > a->clip_value ? a->clip_value : v);
    return v * a->clip_coef;
}

static void lomo__cpu_update(void *ctx, lomo_tensor *p, const float *g, float *s1, float *s2, const lomo_update_args *a) {
    long long i, n = (long long)p->numel;
    (void)ctx;
    if (a->rule == LOMO_OPT_LOMO) {
        float decay = 1.0f - a->lr * a->weight_decay;
        LOMO__OMP(parallel for)
        for (i = 0; i < n; i++)
            lomo__store(p, (size_t)i, lomo__elem(p, (size_t)i) * decay - a->lr * lomo__clipped(g, (size_t)i, a), a);
    } else if (a->rule == LOMO_OPT_ADAMW) {
        /* torch.optim.AdamW: decoupled decay, bias-corrected moments */
        float decay = 1.0f - a->lr * a->weight_decay;
        float bc1 = (float)(1.0 - pow(a->beta1, (double)a->step)), bc2s = (float)sqrt(1.0 - pow(a->beta2, (double)a->step));
        float step_size = a->lr / bc1;
        LOMO__OMP(parallel for)
        for (i = 0; i < n; i++) {
            float gi = lomo__clipped(g, (size_t)i, a), w = lomo__elem(p, (size_t)i) * decay;
            s1[i] += (gi - s1[i]) * (1.0f - a->beta1);
            s2[i] = s2[i] * a->beta2 + (1.0f - a->beta2) * gi * gi;
            lomo__store(p, (size_t)i, w - step_size * s1[i] / (sqrtf(s2[i]) / bc2s + a->eps), a);
        }
    } else {
        /* AdaLomo (lomo-optim): factored second moments for matrices, a full
           vector for 1-D tensors; update normalised by its RMS; relative step */
        int rows = p->ndim == 2 ? (int)p->shape[0] : 1;
        int cols = p->ndim == 2 ? (int)p->shape[1] : (int)p->numel;
        double beta = 1.0 - pow((double)a->step, (double)a->decay_rate);
        double usq = 0.0, psq = 0.0, rmean = 0.0;
        float denom, lr_t, decay;
        int r, c;
        long long off = a->shard_off, len = p->shard_len;   /* the elements p->data holds (all, unsharded) */
        if (p->ndim == 2) {
            double *colsum = (double *)calloc((size_t)cols, sizeof(double));
            for (r = 0; r < rows; r++) {        /* column means need every row: serial in rows */
                const float *gr = g + (size_t)r * cols;
                double rs = 0.0;
                for (c = 0; c < cols; c++) {
                    float gi = lomo__clipped(gr, (size_t)c, a), q = gi * gi + a->eps1;
                    rs += q; colsum[c] += q;
                }
                s1[r] = (float)(beta * s1[r] + (1.0 - beta) * (float)(rs / cols));
            }
            for (c = 0; c < cols; c++) s2[c] = (float)(beta * s2[c] + (1.0 - beta) * (float)(colsum[c] / rows));
            free(colsum);
            for (r = 0; r < rows; r++) rmean += s1[r];
            rmean /= rows;
            LOMO__OMP(parallel for reduction(+:usq))
            for (i = 0; i < n; i++) {
                float u = lomo__clipped(g, (size_t)i, a) / sqrtf(s1[i / cols] / (float)rmean) / sqrtf(s2[i % cols]);
                usq += (double)u * u;
            }
        } else {
            LOMO__OMP(parallel for reduction(+:usq))
            for (i = 0; i < n; i++) {
                float gi = lomo__clipped(g, (size_t)i, a), u;
                s1[i] = (float)(beta * s1[i] + (1.0 - beta) * (gi * gi + a->eps1));
                u = gi / sqrtf(s1[i]);
                usq += (double)u * u;
            }
        }
        if (a->param_sumsq >= 0.0) psq = a->param_sumsq;   /* sharded: the whole tensor's, from the driver */
        else {
            LOMO__OMP(parallel for reduction(+:psq))
            for (i = 0; i < len; i++) { float w = lomo__elem(p, (size_t)i); psq += (double)w * w; }
        }
        denom = (float)(sqrt(usq / n) / a->clip_threshold);
        if (!(denom > 1.0f)) denom = 1.0f;
        lr_t = a->lr * (float)fmax(a->eps2, sqrt(psq / n));
        decay = a->weight_decay > 0.0f ? 1.0f - lr_t * a->weight_decay : 1.0f;
        LOMO__OMP(parallel for)
        for (i = 0; i < len; i++) {
            long long k = off + i;   /* index in the whole tensor */
            float gi = lomo__clipped(g, (size_t)k, a);
            float u = p->ndim == 2 ? gi / sqrtf(s1[k / cols] / (float)rmean) / sqrtf(s2[k % cols]) : gi / sqrtf(s1[k]);
            lomo__store(p, (size_t)i, lomo__elem(p, (size_t)i) * decay - lr_t * (u / denom), a);
        }
    }
}

static double lomo__cpu_param_sumsq(void *ctx, const lomo_tensor *p) {
    double s = 0.0;
    long long i;
    (void)ctx;
    LOMO__OMP(parallel for reduction(+:s))
    for (i = 0; i < (long long)p->numel; i++) { double w = lomo__elem(p, (size_t)i); s += w * w; }
    return s;
}

/* ||dy^T x||_F^2 = <dy dy^T, x x^T>_F: two N x N Gram matrices instead of the O x K gradient */
static double lomo__cpu_wgrad_sqnorm(void *ctx, const float *dy, const float *x, int N, int K, int O) {
    lomo__cpu *c = (lomo__cpu *)ctx;
    float *gy, *gx;
    double s = 0.0;
    long long i;
    if (!c || (size_t)N * N * 2 * sizeof(float) > c->scratch_bytes) {
        if (c) { c->err = 1; snprintf(c->msg, sizeof c->msg, "no scratch for the Gram norm"); }
        return NAN;
    }
    gy = c->scratch; gx = c->scratch + (size_t)N * N;
#ifdef LOMO_CBLAS
    lomo__sgemm_split(CblasNoTrans, CblasTrans, N, N, O, dy, O, dy, O, 0, gy, N);
    lomo__sgemm_split(CblasNoTrans, CblasTrans, N, N, K, x, K, x, K, 0, gx, N);
#else
    LOMO__OMP(parallel for)
    for (i = 0; i < (long long)N * N; i++) {
        int a = (int)(i / N), b = (int)(i % N);
        gy[i] = lomo__dot(dy + (size_t)a * O, dy + (size_t)b * O, O);
        gx[i] = lomo__dot(x + (size_t)a * K, x + (size_t)b * K, K);
    }
#endif
    LOMO__OMP(parallel for reduction(+:s))
    for (i = 0; i < (long long)N * N; i++) s += (double)gy[i] * gx[i];
    return s;
}

static size_t lomo__cpu_scratch_bytes(void *ctx, const lomo_model *m, int N, int use_gram) {
    size_t big = 0, gram = 0;
    int i;
    (void)ctx;
    if (!use_gram) N = 0;
    for (i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].dtype != LOMO_F32 && (size_t)m->tensors[i].numel > big) big = (size_t)m->tensors[i].numel;
    gram = N > 0 ? 2 * (size_t)N * N : 0;
    return 4 * (big > gram ? big : gram);
}

static void lomo__cpu_set_scratch(void *ctx, void *p, size_t bytes) {
    lomo__cpu *c = (lomo__cpu *)ctx;
    c->scratch = (float *)p;
    c->scratch_bytes = bytes;
}

/* ---- generation ops (KV cache) ---- */

/* RoPE as lomo__cpu_rope, row i of x (N,nh,hd) at position pos0 + i */
static void lomo__cpu_rope_at(void *ctx, float *x, const float *inv_freq, int N, int nh, int hd, int pos0) {
    int half = hd / 2, n;
    (void)ctx;
    LOMO__OMP(parallel for)
    for (n = 0; n < N; n++) {
        int h, i;
        for (i = 0; i < half; i++) {
            float ang = (float)(pos0 + n) * inv_freq[i];
            float c = cosf(ang), s = sinf(ang);
            for (h = 0; h < nh; h++) {
                float *xh = x + ((size_t)n * nh + h) * hd;
                float a = xh[i], b = xh[i + half];
                xh[i] = a * c - b * s;
                xh[i + half] = b * c + a * s;
            }
        }
    }
}

/* Attention of N new queries over the cache, the arithmetic of
   lomo__cpu_attn_fwd (scores, exact softmax, weighted sum of v) so that a
   cached pass equals the full forward. Keys j in [lo, p] for the query at
   absolute position p, lo = 0, or p - window + 1 with a sliding window. */
static void lomo__cpu_attn_kv(void *ctx, float *out, const float *q, const float *kc, const float *vc,
                              int N, int pos0, int nh, int nkv, int hd, int window) {
    int rep = nh / nkv;
    float scale = 1.0f / sqrtf((float)hd);
    (void)ctx;
    LOMO__OMP(parallel)
    {
        float *p = (float *)LOMO_MALLOC(sizeof(float) * (size_t)(pos0 + N));
        int idx;
        LOMO__OMP(for)
        for (idx = 0; idx < N * nh; idx++) {
            int h = idx % nh, t = pos0 + idx / nh, j, lo = window > 0 && t - window + 1 > 0 ? t - window + 1 : 0;
            const float *qt = q + (size_t)idx * hd;
            const float *kb = kc + (size_t)(h / rep) * hd, *vb = vc + (size_t)(h / rep) * hd;
            float *ot = out + (size_t)idx * hd, mx = -INFINITY, sum = 0.0f;
            if (!p) continue;
            for (j = lo; j <= t; j++) {
                p[j] = lomo__dot(qt, kb + (size_t)j * nkv * hd, hd) * scale;
                mx = p[j] > mx ? p[j] : mx;
            }
            for (j = lo; j <= t; j++) { p[j] = expf(p[j] - mx); sum += p[j]; }
            memset(ot, 0, sizeof(float) * hd);
            for (j = lo; j <= t; j++) lomo__axpy(ot, p[j] / sum, vb + (size_t)j * nkv * hd, hd);
        }
        if (!p) { lomo__cpu *c = (lomo__cpu *)ctx; if (c) { c->err = 1; snprintf(c->msg, sizeof c->msg, "attention: out of host memory"); } }
        LOMO_FREE(p);
    }
}

static lomo__cpu lomo__cpu_state;

LOMODEF const lomo_backend *lomo_cpu_backend(void) {
    static lomo_backend be;
    if (!be.name) {
#if defined(LOMO_CBLAS) && defined(OPENBLAS_VERSION)
        openblas_set_num_threads(1);   /* OpenMP parallelises around it, see lomo__sgemm_split */
#endif
        be.ctx = &lomo__cpu_state;
        be.host_memory = 1;
        be.alloc = lomo__cpu_alloc; be.free = lomo__cpu_free;
        be.upload = lomo__cpu_copy; be.download = lomo__cpu_copy; be.copy = lomo__cpu_copy;
        be.zero = lomo__cpu_zero; be.check = lomo__cpu_check; be.add = lomo__cpu_add;
        be.embed_fwd = lomo__cpu_embed_fwd; be.embed_bwd = lomo__cpu_embed_bwd;
        be.rmsnorm_fwd = lomo__cpu_rmsnorm_fwd; be.rmsnorm_bwd = lomo__cpu_rmsnorm_bwd;
        be.matmul_fwd = lomo__cpu_matmul_fwd; be.matmul_bwd_x = lomo__cpu_matmul_bwd_x;
        be.matmul_bwd_w = lomo__cpu_matmul_bwd_w; be.bias_bwd = lomo__cpu_bias_bwd;
        be.rope = lomo__cpu_rope;
        be.attn_fwd = lomo__cpu_attn_fwd; be.attn_bwd = lomo__cpu_attn_bwd;
        be.swiglu_fwd = lomo__cpu_swiglu_fwd; be.swiglu_bwd = lomo__cpu_swiglu_bwd;
        be.cross_entropy = lomo__cpu_cross_entropy; be.sumsq = lomo__cpu_sumsq;
        be.update = lomo__cpu_update; be.wgrad_sqnorm = lomo__cpu_wgrad_sqnorm; be.param_sumsq = lomo__cpu_param_sumsq;
        be.scratch_bytes = lomo__cpu_scratch_bytes; be.set_scratch = lomo__cpu_set_scratch;
        be.rope_at = lomo__cpu_rope_at; be.attn_kv = lomo__cpu_attn_kv;
#ifdef LOMO_CBLAS
        be.name = "cpu+cblas";
#else
        be.name = "cpu";
#endif
    }
    return &be;
}

/* ======================================================================== */
/* model: construction, load, save                                         */
/* ======================================================================== */

LOMODEF int lomo_config_default(lomo_config *c, int dim, int hidden_dim, int n_layers,
                                int n_heads, int n_kv_heads, int vocab_size) {
    memset(c, 0, sizeof *c);
    c->dim = dim; c->hidden_dim = hidden_dim; c->n_layers = n_layers;
    c->n_heads = n_heads; c->n_kv_heads = n_kv_heads;
    c->head_dim = n_heads > 0 ? dim / n_heads : 0;
    c->vocab_size = vocab_size; c->max_seq_len = 2048;
    c->norm_eps = 1e-5f; c->rope_theta = 10000.0f;
    c->dtype = LOMO_F32;
    strcpy(c->model_type, "llama");
    return 0;
}

static int lomo__config_check(const lomo_config *c) {
    if (c->dim <= 0 || c->hidden_dim <= 0 || c->n_layers <= 0 || c->n_heads <= 0 ||
        c->n_kv_heads <= 0 || c->head_dim <= 0 || c->vocab_size <= 0)
        return lomo__fail("config: sizes must be positive (hidden_size=%d intermediate_size=%d "
                          "num_hidden_layers=%d num_attention_heads=%d num_key_value_heads=%d "
                          "head_dim=%d vocab_size=%d)", c->dim, c->hidden_dim, c->n_layers,
                          c->n_heads, c->n_kv_heads, c->head_dim, c->vocab_size);
    if (c->n_heads % c->n_kv_heads)
        return lomo__fail("config: num_key_value_heads=%d does not divide num_attention_heads=%d",
                          c->n_kv_heads, c->n_heads);
    if (c->head_dim % 2 || c->head_dim > LOMO__MAX_HEAD_DIM)
        return lomo__fail("config: head_dim=%d must be even and at most %d", c->head_dim, LOMO__MAX_HEAD_DIM);
    return 0;
}

static lomo_tensor *lomo__add_tensor(lomo_model *m, const char *name, int kind, int layer,
                                     int64_t d0, int64_t d1) {
    lomo_tensor *t = &m->tensors[m->n_tensors];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->kind = kind; t->layer = layer; t->index = m->n_tensors++;
    t->dtype = m->cfg.dtype;
    t->ndim = d1 ? 2 : 1;
    t->shape[0] = d0; t->shape[1] = d1;
    t->numel = d1 ? d0 * d1 : d0;
    return t;
}

static size_t lomo__dtype_size(lomo_dtype d) { return d == LOMO_F32 ? 4 : 2; }
static size_t lomo__tensor_bytes(const lomo_tensor *t) { return (size_t)t->numel * lomo__dtype_size(t->dtype); }
/* elements a rank stores of t: ceil(numel / ranks), the last shard zero-padded */
static int64_t lomo__shard_cap(const lomo_model *m, const lomo_tensor *t) {
    return m->comm ? (t->numel + m->comm->size - 1) / m->comm->size : t->numel;
}
static size_t lomo__stored_bytes(const lomo_model *m, const lomo_tensor *t) {
    return (size_t)lomo__shard_cap(m, t) * lomo__dtype_size(t->dtype);
}

LOMODEF lomo_model *lomo_model_new(const lomo_config *cfg, const lomo_load_opts *opts) {
    lomo_model *m;
    int l, C, H, qd, kvd;
    char nm[96];
    if (lomo__config_check(cfg)) return NULL;
    if (opts && (opts->dtype < LOMO_F32 || opts->dtype > LOMO_F16)) {
        lomo__fail("storage dtype %d is not LOMO_F32, LOMO_BF16 or LOMO_F16", (int)opts->dtype);
        return NULL;
    }
    m = (lomo_model *)calloc(1, sizeof *m);
    if (!m) { lomo__fail("out of host memory"); return NULL; }
    m->cfg = *cfg;
    m->cfg.dtype = opts ? opts->dtype : LOMO_F32;   /* storage dtype; every tensor has it */
    m->file_dtype = m->cfg.dtype;
    m->be = (opts && opts->backend) ? opts->backend : lomo_cpu_backend();
    C = cfg->dim; H = cfg->hidden_dim;
    qd = cfg->n_heads * cfg->head_dim; kvd = cfg->n_kv_heads * cfg->head_dim;
    m->tensors = (lomo_tensor *)calloc((size_t)cfg->n_layers * 13 + 3, sizeof(lomo_tensor));
    m->layers = (lomo_layer *)calloc((size_t)cfg->n_layers, sizeof(lomo_layer));
    if (!m->tensors || !m->layers) { lomo__fail("out of host memory"); lomo_model_free(m); return NULL; }
    m->embed = lomo__add_tensor(m, "model.embed_tokens.weight", LOMO_EMBED, -1, cfg->vocab_size, C);
    for (l = 0; l < cfg->n_layers; l++) {
        lomo_layer *L = &m->layers[l];
#define LOMO__T(field, kind, suffix, d0, d1) \
        (snprintf(nm, sizeof nm, "model.layers.%d.%s", l, suffix), \
         L->field = lomo__add_tensor(m, nm, kind, l, d0, d1))
        LOMO__T(wq, LOMO_WQ, "self_attn.q_proj.weight", qd, C);
        if (cfg->qkv_bias) LOMO__T(bq, LOMO_BQ, "self_attn.q_proj.bias", qd, 0);
        LOMO__T(wk, LOMO_WK, "self_attn.k_proj.weight", kvd, C);
        if (cfg->qkv_bias) LOMO__T(bk, LOMO_BK, "self_attn.k_proj.bias", kvd, 0);
        LOMO__T(wv, LOMO_WV, "self_attn.v_proj.weight", kvd, C);
        if (cfg->qkv_bias) LOMO__T(bv, LOMO_BV, "self_attn.v_proj.bias", kvd, 0);
        LOMO__T(wo, LOMO_WO, "self_attn.o_proj.weight", C, qd);
        if (cfg->o_bias) LOMO__T(bo, LOMO_BO, "self_attn.o_proj.bias", C, 0);
        LOMO__T(w_gate, LOMO_W_GATE, "mlp.gate_proj.weight", H, C);
        LOMO__T(w_up, LOMO_W_UP, "mlp.up_proj.weight", H, C);
        LOMO__T(w_down, LOMO_W_DOWN, "mlp.down_proj.weight", C, H);
        LOMO__T(attn_norm, LOMO_ATTN_NORM, "input_layernorm.weight", C, 0);
        LOMO__T(mlp_norm, LOMO_MLP_NORM, "post_attention_layernorm.weight", C, 0);
#undef LOMO__T
    }
    m->final_norm = lomo__add_tensor(m, "model.norm.weight", LOMO_FINAL_NORM, -1, C, 0);
    m->lm_head = cfg->tie_embeddings ? m->embed
               : lomo__add_tensor(m, "lm_head.weight", LOMO_LM_HEAD, -1, cfg->vocab_size, C);
    m->comm = opts ? opts->comm : NULL;
    for (l = 0; l < m->n_tensors; l++) {
        lomo_tensor *t = &m->tensors[l];
        int64_t cap = lomo__shard_cap(m, t);
        t->shard_off = m->comm ? cap * m->comm->rank : 0;
        t->shard_len = t->shard_off >= t->numel ? 0 : (t->numel - t->shard_off < cap ? t->numel - t->shard_off : cap);
        if (t->shard_off > t->numel) t->shard_off = t->numel;
        t->data = lomo__alloc(m, LOMO_MEM_PARAMS, lomo__stored_bytes(m, t));
        if (!t->data) { lomo_model_free(m); return NULL; }
        m->be->zero(m->be->ctx, t->data, lomo__stored_bytes(m, t));   /* the padding stays 0 */
    }
    return m;
}

LOMODEF void lomo_model_free(lomo_model *m) {
    int i;
    if (!m) return;
    for (i = 0; m->tensors && i < m->n_tensors; i++)
        lomo__free(m, LOMO_MEM_PARAMS, m->tensors[i].data, lomo__stored_bytes(m, &m->tensors[i]));
    free(m->tensors);
    free(m->layers);
    free(m);
}

LOMODEF lomo_tensor *lomo_find_tensor(lomo_model *m, const char *name) {
    int i;
    for (i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, name)) return &m->tensors[i];
    return NULL;
}

LOMODEF int64_t lomo_n_params(const lomo_model *m) {
    int64_t n = 0;
    int i;
    for (i = 0; i < m->n_tensors; i++) n += m->tensors[i].numel;
    return n;
}

/* splitmix64 + Box-Muller: reproducible everywhere */
LOMODEF uint64_t lomo_rand_u64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static uint64_t lomo__rng_next(uint64_t *s) { return lomo_rand_u64(s); }
static double lomo__rng_uniform(uint64_t *s) { return ((lomo__rng_next(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
static double lomo__rng_normal(uint64_t *s) {
    double u1 = lomo__rng_uniform(s), u2 = lomo__rng_uniform(s);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* fp32 host values of this rank's elements (shard_len of them, in a buffer
   of at least the shard capacity) -> the tensor's storage, rounded to
   nearest-even for 16-bit; the padding is zeroed */
static void lomo__upload_f32(lomo_model *m, lomo_tensor *t, float *h) {
    size_t n = (size_t)t->shard_len, cap = (size_t)lomo__shard_cap(m, t), i;
    for (i = n; i < cap; i++) h[i] = 0.0f;
    if (t->dtype != LOMO_F32) {   /* narrow in place: the first 2 cap bytes become the 16-bit values */
        uint16_t *o = (uint16_t *)h;
        for (i = 0; i < cap; i++) o[i] = t->dtype == LOMO_BF16 ? lomo_f32_to_bf16(h[i]) : lomo_f32_to_f16(h[i]);
    }
    m->be->upload(m->be->ctx, t->data, h, lomo__stored_bytes(m, t));
}

LOMODEF void lomo_model_init_random(lomo_model *m, uint64_t seed, float std) {
    int i;
    for (i = 0; i < m->n_tensors; i++) {
        lomo_tensor *t = &m->tensors[i];
        float *h = (float *)malloc(sizeof(float) * (size_t)t->numel);
        int64_t j;
        uint64_t s = seed * 0x100000001B3ull + (uint64_t)i;
        if (!h) continue;
        for (j = 0; j < t->numel; j++)
            h[j] = t->ndim == 2 ? (float)(std * lomo__rng_normal(&s))
                 : (t->kind == LOMO_ATTN_NORM || t->kind == LOMO_MLP_NORM || t->kind == LOMO_FINAL_NORM) ? 1.0f : 0.0f;
        if (t->shard_off) memmove(h, h + t->shard_off, sizeof(float) * (size_t)t->shard_len);   /* this rank's part */
        lomo__upload_f32(m, t, h);
        free(h);
    }
}

/* lomo_data.inl - training data (JSON Lines or packed tokens) and
   multiple-choice items for lomo.h.

   Spliced into lomo.h's implementation section after the JSON reader
   (lomo__json_*), lomo__read_file and the splitmix64 RNG (lomo__rng_next).
   Private symbols are static: lomo__data_*, lomo__mc_*, lomo__dbuf_* (a
   growable byte array) and lomo__rng_below (unbiased bounded splitmix64).

   The block between "BEGIN PUBLIC API" and "END PUBLIC API" below belongs in
   the header's API section (inside its extern "C"); it is real code here only
   so that this fragment compiles on its own right after lomo.h. */


/* ======================================================================== */
/* data: implementation                                                     */
/* ======================================================================== */

struct lomo_data {
    lomo_data_opts o;
    int64_t n;            /* examples */
    int64_t n_tok;        /* token ids stored (after truncation) */
    int32_t *tok;         /* every example's ids, back to back */
    int32_t *lab;         /* labels parallel to tok; NULL: labels = tok */
    int64_t *off;         /* n+1 offsets into tok; NULL for packed files, where
                             example i is [i*T, min((i+1)*T, n_tok)) */
    int64_t *perm;        /* the order of epoch perm_epoch (shuffle only) */
    int64_t perm_epoch;   /* -1: perm not computed yet */
    int64_t epoch, index; /* the next example: index-th of epoch's order */
};

/* A growable byte array; it holds int32/int64/structs, malloc alignment. */
typedef struct lomo__dbuf { char *p; size_t n, cap; } lomo__dbuf;

/* Room for len more bytes: a pointer to them (not yet counted in n), or NULL. */
static void *lomo__dbuf_reserve(lomo__dbuf *b, size_t len) {
    if (!b->p || b->cap - b->n < len) {
        size_t cap = b->cap ? b->cap : 256;
        char *q;
        while (cap - b->n < len) {
            if (cap > ((size_t)-1) / 2) return NULL;
            cap *= 2;
        }
        if (!(q = (char *)LOMO_MALLOC(cap))) return NULL;
        if (b->n) memcpy(q, b->p, b->n);
        LOMO_FREE(b->p);
        b->p = q; b->cap = cap;
    }
    return b->p + b->n;
}

static int lomo__dbuf_add(lomo__dbuf *b, const void *src, size_t len) {
    void *q = lomo__dbuf_reserve(b, len);
    if (!q) return -1;
    memcpy(q, src, len);
    b->n += len;
    return 0;
}

static void lomo__dbuf_free(lomo__dbuf *b) {
    LOMO_FREE(b->p);
    b->p = NULL; b->n = b->cap = 0;
}

static int lomo__data_blank(const char *s, size_t n) {
    size_t i;
    for (i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\f' && s[i] != '\v') return 0;
    return 1;
}

static int lomo__data_suffix(const char *s, const char *suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !memcmp(s + n - k, suf, k);
}

/* The next line of buf[*pos..len): sets *s and *n (without the '\n'), advances *pos. */
static int lomo__data_line(const char *buf, size_t len, size_t *pos, const char **s, size_t *n) {
    const char *nl;
    if (*pos >= len) return 0;
    *s = buf + *pos;
    nl = (const char *)memchr(*s, '\n', len - *pos);
    *n = nl ? (size_t)(nl - *s) : len - *pos;
    *pos += *n + 1;
    return 1;
}

/* Checks that node arr (member `field` of the line at `where`, -1 if absent)
   is an array of integers in [0, vocab) (or -100 when ignore), and copies its
   first `keep` elements to dst. Returns its length, or -1. */
static int64_t lomo__data_ints(const lomo__json *j, int arr, const char *where, const char *field,
                               int vocab, int ignore, int32_t *dst, int64_t keep) {
    char show[64];
    int64_t k = 0, v;
    int c;
    if (arr < 0) return lomo__fail("%s: missing \"%s\"", where, field);
    if (!lomo__json_is(j, arr, LOMO__J_ARR))
        return lomo__fail("%s: %s must be an array of integers, found %s", where, field,
                          lomo__json_show(j, arr, show, sizeof show));
    for (c = j->nodes[arr].first; c >= 0; c = j->nodes[c].next, k++) {
        if (lomo__json_int(j, c, &v)) {
            const lomo__jnode *nd = &j->nodes[c];
            if (!lomo__json_is(j, c, LOMO__J_NUM) || memchr(nd->s, '.', nd->len) ||
                memchr(nd->s, 'e', nd->len) || memchr(nd->s, 'E', nd->len))
                return lomo__fail("%s: %s[%lld] = %s is not an integer", where, field, (long long)k,
                                  lomo__json_show(j, c, show, sizeof show));
            v = nd->num > 0 ? INT64_MAX : INT64_MIN;   /* an integer beyond 2^53: out of range */
        }
        if (v < 0 || v >= vocab) {
            if (ignore && v == -100) v = -100;
            else if (ignore)
                return lomo__fail("%s: %s[%lld] = %s is neither -100 nor in the vocabulary [0, %d)", where, field,
                                  (long long)k, lomo__json_show(j, c, show, sizeof show), vocab);
            else
                return lomo__fail("%s: %s[%lld] = %s is outside the vocabulary [0, %d)%s", where, field, (long long)k,
                                  lomo__json_show(j, c, show, sizeof show), vocab,
                                  v == -100 ? " (-100 is allowed in labels only)" : "");
        }
        if (k < keep) dst[k] = (int32_t)v;
    }
    return k;
}

/* Parses one JSONL line (at `where`) into the example buffers. */
static int lomo__data_jsonl_line(lomo_data *d, const char *s, size_t n, const char *where,
                                 lomo__dbuf *tok, lomo__dbuf *lab, lomo__dbuf *off, int *any_labels) {
    lomo__json j;
    char show[64];
    int ids, labs, rc = -1;
    int64_t len, keep, nl, end;
    int32_t *dt, *dl;
    if (lomo__json_parse(&j, s, n, where)) return -1;   /* "<file>:<line>: invalid JSON at byte N: ..." */
    if (!lomo__json_is(&j, 0, LOMO__J_OBJ)) {
        lomo__fail("%s: expected a JSON object {\"input_ids\": [...], \"labels\": [...]} (one per line), found %s",
                   where, lomo__json_show(&j, 0, show, sizeof show));
        goto done;
    }
    ids = lomo__json_get(&j, 0, "input_ids");
    labs = lomo__json_get(&j, 0, "labels");
    if (lomo__json_is(&j, ids, LOMO__J_ARR)) {   /* the room to copy into; checked below */
        keep = j.nodes[ids].count < d->o.seq_len ? j.nodes[ids].count : d->o.seq_len;
    } else keep = 0;
    dt = (int32_t *)lomo__dbuf_reserve(tok, (size_t)keep * sizeof(int32_t));
    dl = (int32_t *)lomo__dbuf_reserve(lab, (size_t)keep * sizeof(int32_t));
    if (!dt || !dl) { lomo__fail("%s: out of memory", where); goto done; }
    if ((len = lomo__data_ints(&j, ids, where, "input_ids", d->o.vocab_size, 0, dt, keep)) < 0) goto done;
    if (len == 0) { lomo__fail("%s: input_ids is empty", where); goto done; }
    if (labs >= 0) {
        if ((nl = lomo__data_ints(&j, labs, where, "labels", d->o.vocab_size, 1, dl, keep)) < 0) goto done;
        if (nl != len) {
            lomo__fail("%s: labels has length %lld but input_ids has length %lld", where, (long long)nl, (long long)len);
            goto done;
        }
        *any_labels = 1;
    } else memcpy(dl, dt, (size_t)keep * sizeof(int32_t));
    tok->n += (size_t)keep * sizeof(int32_t);
    lab->n += (size_t)keep * sizeof(int32_t);
    end = (int64_t)(tok->n / sizeof(int32_t));
    if (lomo__dbuf_add(off, &end, sizeof end)) { lomo__fail("%s: out of memory", where); goto done; }
    rc = 0;
done:
    lomo__json_free(&j);
    return rc;
}

static int lomo__data_load_jsonl(lomo_data *d, const char *path, const char *buf, size_t len) {
    lomo__dbuf tok = {NULL, 0, 0}, lab = {NULL, 0, 0}, off = {NULL, 0, 0};
    size_t pos = 0, n;
    const char *s;
    int64_t line = 0, zero = 0;
    int any_labels = 0;
    char where[1100];
    if (lomo__dbuf_add(&off, &zero, sizeof zero)) { lomo__fail("%s: out of memory", path); goto fail; }
    while (lomo__data_line(buf, len, &pos, &s, &n)) {
        line++;
        if (lomo__data_blank(s, n)) continue;
        snprintf(where, sizeof where, "%s:%lld", path, (long long)line);
        if (lomo__data_jsonl_line(d, s, n, where, &tok, &lab, &off, &any_labels)) goto fail;
    }
    d->n = (int64_t)(off.n / sizeof(int64_t)) - 1;
    if (d->n == 0) {
        lomo__fail("%s: no examples (%s)", path, len ? "only blank lines" : "empty file");
        goto fail;
    }
    d->n_tok = (int64_t)(tok.n / sizeof(int32_t));
    d->tok = (int32_t *)tok.p;
    d->off = (int64_t *)off.p;
    if (any_labels) d->lab = (int32_t *)lab.p;
    else lomo__dbuf_free(&lab);   /* labels = input_ids everywhere */
    return 0;
fail:
    lomo__dbuf_free(&tok); lomo__dbuf_free(&lab); lomo__dbuf_free(&off);
    return -1;
}

/* Takes buf (from lomo__read_file) over as the token array: decoded in place. */
static int lomo__data_load_packed(lomo_data *d, const char *path, char *buf, size_t len) {
    const unsigned char *u = (const unsigned char *)buf;
    int32_t *t = (int32_t *)(void *)buf;   /* malloc'd: aligned for int32 */
    size_t i, n = len / 4;
    if (len % 4)
        return lomo__fail("%s: size %zu bytes is not a multiple of 4 (packed little-endian uint32 tokens; "
                          "name JSON Lines files *.jsonl or *.json)", path, len);
    if (n == 0) return lomo__fail("%s: no examples (empty file)", path);
    for (i = 0; i < n; i++) {
        uint32_t v = (uint32_t)u[4 * i] | (uint32_t)u[4 * i + 1] << 8 | (uint32_t)u[4 * i + 2] << 16 |
                     (uint32_t)u[4 * i + 3] << 24;
        if (v >= (uint32_t)d->o.vocab_size)
            return lomo__fail("%s: token %zu (byte offset %zu) = %lu is outside the vocabulary [0, %d)", path, i,
                              4 * i, (unsigned long)v, d->o.vocab_size);
        t[i] = (int32_t)v;
    }
    d->tok = t;
    d->n_tok = (int64_t)n;
    d->n = (d->n_tok + d->o.seq_len - 1) / d->o.seq_len;
    return 0;
}

LOMODEF lomo_data *lomo_data_open(const char *path, const lomo_data_opts *o) {
    lomo_data *d;
    char *buf;
    size_t len;
    int rc;
    if (!path || !o) { lomo__fail("lomo_data_open: path and options are required"); return NULL; }
    if (o->seq_len < 1) { lomo__fail("lomo_data_open: seq_len must be >= 1, got %d", o->seq_len); return NULL; }
    if (o->vocab_size < 1) { lomo__fail("lomo_data_open: vocab_size must be >= 1, got %d", o->vocab_size); return NULL; }
    if (o->pad_id < 0 || o->pad_id >= o->vocab_size) {
        lomo__fail("lomo_data_open: pad_id = %ld is outside the vocabulary [0, %d)", (long)o->pad_id, o->vocab_size);
        return NULL;
    }
    if (!(d = (lomo_data *)LOMO_MALLOC(sizeof *d))) { lomo__fail("%s: out of memory", path); return NULL; }
    memset(d, 0, sizeof *d);
    d->o = *o;
    d->perm_epoch = -1;
    if (lomo__read_file(path, &buf, &len)) { LOMO_FREE(d); return NULL; }   /* "<path>: cannot open: <strerror>" */
    if (lomo__data_suffix(path, ".jsonl") || lomo__data_suffix(path, ".json")) {
        rc = lomo__data_load_jsonl(d, path, buf, len);
        LOMO_FREE(buf);
    } else {
        rc = lomo__data_load_packed(d, path, buf, len);
        if (rc) LOMO_FREE(buf);
    }
    if (!rc && o->shuffle && !(d->perm = (int64_t *)LOMO_MALLOC((size_t)d->n * sizeof(int64_t)))) {
        lomo__fail("%s: out of memory", path);
        rc = -1;
    }
    if (rc) { lomo_data_free(d); return NULL; }
    return d;
}

LOMODEF void lomo_data_free(lomo_data *d) {
    if (!d) return;
    LOMO_FREE(d->tok); LOMO_FREE(d->lab); LOMO_FREE(d->off); LOMO_FREE(d->perm);
    LOMO_FREE(d);
}

LOMODEF int64_t lomo_data_count(const lomo_data *d) { return d ? d->n : 0; }

/* Uniform in [0, m), m >= 1: rejection sampling, no modulo bias. */
static uint64_t lomo__rng_below(uint64_t *s, uint64_t m) {
    uint64_t rem = (~(uint64_t)0 % m + 1) % m, r;   /* 2^64 mod m */
    do r = lomo__rng_next(s); while (rem && r >= (uint64_t)0 - rem);
    return r % m;
}

/* Epoch e's order: Fisher-Yates from the identity, the splitmix64 stream
   seeded by splitmix64(splitmix64(seed) ^ e). Depends on (seed, e, n) only. */
static void lomo__data_perm(lomo_data *d, int64_t e) {
    uint64_t a = d->o.seed, s;
    int64_t i;
    a = lomo__rng_next(&a) ^ (uint64_t)e;
    s = lomo__rng_next(&a);
    for (i = 0; i < d->n; i++) d->perm[i] = i;
    for (i = d->n - 1; i > 0; i--) {
        int64_t k = (int64_t)lomo__rng_below(&s, (uint64_t)i + 1), t = d->perm[i];
        d->perm[i] = d->perm[k]; d->perm[k] = t;
    }
    d->perm_epoch = e;
}

/* Example i as one padded row; returns its length. labels may be NULL. */
static int lomo__data_row(const lomo_data *d, int64_t i, int32_t *tokens, int32_t *labels) {
    int T = d->o.seq_len, len, k;
    int64_t a = d->off ? d->off[i] : i * T;
    int64_t b = d->off ? d->off[i + 1] : (a + T < d->n_tok ? a + T : d->n_tok);
    const int32_t *lab = d->lab ? d->lab : d->tok;
    len = (int)(b - a);
    memcpy(tokens, d->tok + a, (size_t)len * sizeof(int32_t));
    for (k = len; k < T; k++) tokens[k] = d->o.pad_id;
    if (labels) {
        memcpy(labels, lab + a, (size_t)len * sizeof(int32_t));
        for (k = len; k < T; k++) labels[k] = -100;
    }
    return len;
}

LOMODEF int lomo_data_next(lomo_data *d, int B, int32_t *tokens, int32_t *labels) {
    int64_t rows, r, T;
    if (!d || !tokens) return lomo__fail("lomo_data_next: data and tokens are required");
    if (B < 1) return lomo__fail("lomo_data_next: B must be >= 1, got %d", B);
    T = d->o.seq_len;
    if (d->index >= d->n) { d->epoch++; d->index = 0; }   /* not reached: kept in range below */
    if (d->o.shuffle && d->perm_epoch != d->epoch) lomo__data_perm(d, d->epoch);
    rows = d->n - d->index < B ? d->n - d->index : B;
    for (r = 0; r < B; r++) {
        int32_t *tr = tokens + (size_t)(r * T), *lr = labels ? labels + (size_t)(r * T) : NULL;
        if (r < rows) {
            int64_t k = d->index + r;
            lomo__data_row(d, d->o.shuffle ? d->perm[k] : k, tr, lr);
        } else {
            int64_t k;
            for (k = 0; k < T; k++) { tr[k] = d->o.pad_id; if (lr) lr[k] = -100; }
        }
    }
    d->index += rows;
    if (d->index == d->n) { d->epoch++; d->index = 0; }
    return (int)rows;
}

LOMODEF lomo_data_pos lomo_data_tell(const lomo_data *d) {
    lomo_data_pos p;
    p.epoch = d ? d->epoch : 0;
    p.index = d ? d->index : 0;
    return p;
}

LOMODEF int lomo_data_seek(lomo_data *d, lomo_data_pos p) {
    if (!d) return lomo__fail("lomo_data_seek: no data");
    if (p.epoch < 0 || p.index < 0 || p.index >= d->n)
        return lomo__fail("lomo_data_seek: position (epoch %lld, index %lld) is out of range: epoch >= 0, "
                          "index in [0, %lld)", (long long)p.epoch, (long long)p.index, (long long)d->n);
    d->epoch = p.epoch;
    d->index = p.index;
    return 0;
}

LOMODEF int lomo_data_get(const lomo_data *d, int64_t i, int32_t *tokens, int32_t *labels) {
    if (!d || !tokens) return lomo__fail("lomo_data_get: data and tokens are required");
    if (i < 0 || i >= d->n)
        return lomo__fail("lomo_data_get: example %lld is outside [0, %lld)", (long long)i, (long long)d->n);
    return lomo__data_row(d, i, tokens, labels);
}

/* ======================================================================== */
/* multiple choice: implementation                                          */
/* ======================================================================== */

struct lomo_mc {
    int64_t n;
    lomo_mc_item *items;
    int32_t *tok;            /* every prompt and candidate, back to back */
    const int32_t **cand;    /* every item's candidate pointers, back to back */
    int *cand_len;
};

/* While loading, pointers into growing buffers would move: items record offsets. */
typedef struct lomo__mc_rec { int64_t prompt, first_cand; int prompt_len, n_cand, answer; } lomo__mc_rec;

/* Appends integer array node arr (named field) to tok; its length or -1. */
static int64_t lomo__mc_ints(const lomo__json *j, int arr, const char *where, const char *field, int vocab,
                             lomo__dbuf *tok) {
    int64_t cnt = lomo__json_is(j, arr, LOMO__J_ARR) ? j->nodes[arr].count : 0, len;
    int32_t *dst = (int32_t *)lomo__dbuf_reserve(tok, (size_t)cnt * sizeof(int32_t));
    if (!dst) return lomo__fail("%s: out of memory", where);
    if ((len = lomo__data_ints(j, arr, where, field, vocab, 0, dst, cnt)) < 0) return -1;
    if (len == 0) return lomo__fail("%s: %s is empty", where, field);
    tok->n += (size_t)len * sizeof(int32_t);
    return len;
}

static int lomo__mc_line(const char *s, size_t n, const char *where, int vocab, lomo__dbuf *tok,
                         lomo__dbuf *recs, lomo__dbuf *coff, lomo__dbuf *clen) {
    lomo__json j;
    lomo__mc_rec r;
    char show[64], field[48];
    int cands, ans, c, k, rc = -1;
    int64_t len, v;
    if (lomo__json_parse(&j, s, n, where)) return -1;
    if (!lomo__json_is(&j, 0, LOMO__J_OBJ)) {
        lomo__fail("%s: expected a JSON object {\"prompt\": [...], \"candidates\": [[...], ...], \"answer\": i} "
                   "(one per line), found %s", where, lomo__json_show(&j, 0, show, sizeof show));
        goto done;
    }
    r.prompt = (int64_t)(tok->n / sizeof(int32_t));
    r.first_cand = (int64_t)(coff->n / sizeof(int64_t));
    if ((len = lomo__mc_ints(&j, lomo__json_get(&j, 0, "prompt"), where, "prompt", vocab, tok)) < 0) goto done;
    r.prompt_len = (int)len;
    cands = lomo__json_get(&j, 0, "candidates");
    if (cands < 0) { lomo__fail("%s: missing \"candidates\"", where); goto done; }
    if (!lomo__json_is(&j, cands, LOMO__J_ARR)) {
        lomo__fail("%s: candidates must be an array of arrays of integers, found %s", where,
                   lomo__json_show(&j, cands, show, sizeof show));
        goto done;
    }
    r.n_cand = j.nodes[cands].count;
    if (r.n_cand < 2) {
        lomo__fail("%s: candidates has %d element%s; at least 2 are needed", where, r.n_cand, r.n_cand == 1 ? "" : "s");
        goto done;
    }
    for (c = j.nodes[cands].first, k = 0; c >= 0; c = j.nodes[c].next, k++) {
        int64_t at = (int64_t)(tok->n / sizeof(int32_t));
        int cl;
        snprintf(field, sizeof field, "candidates[%d]", k);
        if ((len = lomo__mc_ints(&j, c, where, field, vocab, tok)) < 0) goto done;
        cl = (int)len;
        if (lomo__dbuf_add(coff, &at, sizeof at) || lomo__dbuf_add(clen, &cl, sizeof cl)) {
            lomo__fail("%s: out of memory", where);
            goto done;
        }
    }
    ans = lomo__json_get(&j, 0, "answer");
    if (ans < 0) { lomo__fail("%s: missing \"answer\"", where); goto done; }
    if (lomo__json_int(&j, ans, &v)) {
        lomo__fail("%s: answer = %s is not an integer", where, lomo__json_show(&j, ans, show, sizeof show));
        goto done;
    }
    if (v < 0 || v >= r.n_cand) {
        lomo__fail("%s: answer = %lld does not index a candidate: expected 0..%d", where, (long long)v, r.n_cand - 1);
        goto done;
    }
    r.answer = (int)v;
    if (lomo__dbuf_add(recs, &r, sizeof r)) { lomo__fail("%s: out of memory", where); goto done; }
    rc = 0;
done:
    lomo__json_free(&j);
    return rc;
}

LOMODEF lomo_mc *lomo_mc_open(const char *path, int vocab_size) {
    lomo__dbuf tok = {NULL, 0, 0}, recs = {NULL, 0, 0}, coff = {NULL, 0, 0}, clen = {NULL, 0, 0};
    lomo_mc *m = NULL;
    char *buf = NULL, where[1100];
    const char *s;
    size_t len, pos = 0, n;
    int64_t line = 0, i, nc;
    if (!path) { lomo__fail("lomo_mc_open: path is required"); return NULL; }
    if (vocab_size < 1) { lomo__fail("lomo_mc_open: vocab_size must be >= 1, got %d", vocab_size); return NULL; }
    if (lomo__read_file(path, &buf, &len)) return NULL;
    while (lomo__data_line(buf, len, &pos, &s, &n)) {
        line++;
        if (lomo__data_blank(s, n)) continue;
        snprintf(where, sizeof where, "%s:%lld", path, (long long)line);
        if (lomo__mc_line(s, n, where, vocab_size, &tok, &recs, &coff, &clen)) goto fail;
    }
    if (!recs.n) {
        lomo__fail("%s: no items (%s)", path, len ? "only blank lines" : "empty file");
        goto fail;
    }
    if (!(m = (lomo_mc *)LOMO_MALLOC(sizeof *m))) goto oom;
    memset(m, 0, sizeof *m);
    m->n = (int64_t)(recs.n / sizeof(lomo__mc_rec));
    nc = (int64_t)(coff.n / sizeof(int64_t));
    if (!(m->items = (lomo_mc_item *)LOMO_MALLOC((size_t)m->n * sizeof(lomo_mc_item))) ||
        !(m->cand = (const int32_t **)LOMO_MALLOC((size_t)nc * sizeof(const int32_t *))))
        goto oom;
    m->tok = (int32_t *)tok.p; tok.p = NULL;
    m->cand_len = (int *)clen.p; clen.p = NULL;
    for (i = 0; i < nc; i++) m->cand[i] = m->tok + ((const int64_t *)(void *)coff.p)[i];
    for (i = 0; i < m->n; i++) {
        const lomo__mc_rec *r = (const lomo__mc_rec *)(void *)recs.p + i;
        lomo_mc_item *it = &m->items[i];
        it->prompt = m->tok + r->prompt;
        it->prompt_len = r->prompt_len;
        it->n_cand = r->n_cand;
        it->cand = (const int32_t *const *)(m->cand + r->first_cand);
        it->cand_len = m->cand_len + r->first_cand;
        it->answer = r->answer;
    }
    lomo__dbuf_free(&recs); lomo__dbuf_free(&coff);
    LOMO_FREE(buf);
    return m;
oom:
    lomo__fail("%s: out of memory", path);
fail:
    lomo_mc_free(m);
    lomo__dbuf_free(&tok); lomo__dbuf_free(&recs); lomo__dbuf_free(&coff); lomo__dbuf_free(&clen);
    LOMO_FREE(buf);
    return NULL;
}

LOMODEF int64_t lomo_mc_count(const lomo_mc *m) { return m ? m->n : 0; }

LOMODEF const lomo_mc_item *lomo_mc_get(const lomo_mc *m, int64_t i) {
    if (!m || i < 0 || i >= m->n) {
        lomo__fail("lomo_mc_get: item %lld is outside [0, %lld)", (long long)i, (long long)(m ? m->n : 0));
        return NULL;
    }
    return &m->items[i];
}

LOMODEF void lomo_mc_free(lomo_mc *m) {
    if (!m) return;
    LOMO_FREE(m->items);
    LOMO_FREE((void *)m->cand);
    LOMO_FREE(m->tok);
    LOMO_FREE(m->cand_len);
    LOMO_FREE(m);
}

static int lomo__path_join(char *out, size_t cap, const char *dir, const char *file) {
    if ((size_t)snprintf(out, cap, "%s/%s", dir, file) >= cap)
        return lomo__fail("path too long: %s/%s", dir, file);
    return 0;
}

/* ---- loading: config.json + model.safetensors, or shards + index ---- */

static const int lomo__st_of_dtype[3] = { LOMO__ST_F32, LOMO__ST_BF16, LOMO__ST_F16 };

static int lomo__exists(const char *path) { struct stat st; return stat(path, &st) == 0; }

/* The checkpoint's files: one model.safetensors, or the shards that
   model.safetensors.index.json names (its weight_map: tensor -> file). */
typedef struct lomo__ckpt {
    int n;
    lomo__st_file *f;
    lomo__json idx; char *idx_txt; int weight_map;   /* index, when sharded */
    char idx_path[1024];
} lomo__ckpt;

static void lomo__ckpt_close(lomo__ckpt *c) {
    int i;
    for (i = 0; i < c->n; i++) lomo__st_close(&c->f[i]);
    free(c->f);
    if (c->idx_txt) { lomo__json_free(&c->idx); LOMO_FREE(c->idx_txt); }
    memset(c, 0, sizeof *c);
}

static int lomo__ckpt_open(lomo__ckpt *c, const char *dir) {
    char path[1024], name[256];
    size_t len;
    int node, k;
    memset(c, 0, sizeof *c);
    if (lomo__path_join(path, sizeof path, dir, "model.safetensors")) return -1;
    if (lomo__exists(path)) {
        c->f = (lomo__st_file *)calloc(1, sizeof *c->f);
        if (!c->f) return lomo__fail("out of host memory");
        if (lomo__st_open(&c->f[0], path)) { free(c->f); c->f = NULL; return -1; }
        c->n = 1;
        return 0;
    }
    if (lomo__path_join(c->idx_path, sizeof c->idx_path, dir, "model.safetensors.index.json")) return -1;
    if (!lomo__exists(c->idx_path))
        return lomo__fail("%s: no model.safetensors and no model.safetensors.index.json", dir);
    if (lomo__read_file(c->idx_path, &c->idx_txt, &len)) return -1;
    if (lomo__json_parse(&c->idx, c->idx_txt, len, c->idx_path)) { LOMO_FREE(c->idx_txt); c->idx_txt = NULL; return -1; }
    c->weight_map = lomo__json_get(&c->idx, 0, "weight_map");
    if (c->weight_map < 0 || !lomo__json_is(&c->idx, c->weight_map, LOMO__J_OBJ)) {
        lomo__fail("%s: field 'weight_map': expected an object of tensor name -> file", c->idx_path);
        goto fail;
    }
    c->f = (lomo__st_file *)calloc((size_t)c->idx.nodes[c->weight_map].count + 1, sizeof *c->f);
    if (!c->f) { lomo__fail("out of host memory"); goto fail; }
    for (node = c->idx.nodes[c->weight_map].first; node >= 0; node = c->idx.nodes[node].next) {
        int dup = 0;
        if (lomo__json_str(&c->idx, node, name, sizeof name) < 0 || !name[0] || strchr(name, '/') || !strcmp(name, "..")) {
            char show[96];
            lomo__fail("%s: weight_map: file name %s is not a plain file name", c->idx_path,
                       lomo__json_show(&c->idx, node, show, sizeof show));
            goto fail;
        }
        for (k = 0; k < c->n; k++) {
            const char *base = strrchr(c->f[k].path, '/');
            if (!strcmp(base ? base + 1 : c->f[k].path, name)) dup = 1;
        }
        if (dup) continue;
        if (lomo__path_join(path, sizeof path, dir, name) || lomo__st_open(&c->f[c->n], path)) goto fail;
        c->n++;
    }
    return 0;
fail:
    lomo__ckpt_close(c);
    return -1;
}

/* where the index says a tensor is, or in the single file */
static const lomo__st_tensor *lomo__ckpt_find(const lomo__ckpt *c, const char *tensor, const char **file) {
    int k, node;
    char name[256];
    if (!c->idx_txt) { *file = c->f[0].path; return lomo__st_find(&c->f[0], tensor); }
    node = lomo__json_get(&c->idx, c->weight_map, tensor);
    if (node < 0 || lomo__json_str(&c->idx, node, name, sizeof name) < 0) { *file = c->idx_path; return NULL; }
    for (k = 0; k < c->n; k++) {
        const char *base = strrchr(c->f[k].path, '/');
        if (!strcmp(base ? base + 1 : c->f[k].path, name)) { *file = c->f[k].path; return lomo__st_find(&c->f[k], tensor); }
    }
    *file = c->idx_path;
    return NULL;
}

static void lomo__shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
    int i;
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (i = 0; i < ndim && n < cap; i++) n += (size_t)snprintf(buf + n, cap - n, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

LOMODEF lomo_model *lomo_load(const char *dir, const lomo_load_opts *opts) {
    char path[1024];
    lomo_config cfg;
    lomo_model *m;
    lomo__ckpt ck;
    int i, k;
    float *stage = NULL;
    if (lomo__path_join(path, sizeof path, dir, "config.json") || lomo__config_load(path, &cfg)) return NULL;
    if (lomo__ckpt_open(&ck, dir)) return NULL;
    if (!(m = lomo_model_new(&cfg, opts))) { lomo__ckpt_close(&ck); return NULL; }
    /* every tensor of every file must be one the model expects (old checkpoints
       carry rotary_emb.inv_freq buffers, which are derived and skipped) */
    for (k = 0; k < ck.n; k++)
        for (i = 0; i < ck.f[k].n; i++) {
            const char *nm = ck.f[k].t[i].name;
            if (strstr(nm, "rotary_emb.inv_freq")) continue;
            if (m->cfg.tie_embeddings && !strcmp(nm, "lm_head.weight")) continue;
            if (!lomo_find_tensor(m, nm)) {
                lomo__fail("%s: unexpected tensor '%s' (not part of a %s model with this config.json)",
                           ck.f[k].path, nm, m->cfg.model_type);
                goto fail;
            }
        }
    for (i = 0; i < m->n_tensors; i++) {
        lomo_tensor *t = &m->tensors[i];
        const char *file;
        const lomo__st_tensor *s = lomo__ckpt_find(&ck, t->name, &file);
        if (!s) { lomo__fail("%s: missing tensor '%s'", file, t->name); goto fail; }
        if (s->ndim != t->ndim || s->shape[0] != t->shape[0] || (t->ndim == 2 && s->shape[1] != t->shape[1])) {
            char have[64], want[64];
            lomo__shape_str(have, sizeof have, s->ndim, s->shape);
            lomo__shape_str(want, sizeof want, t->ndim, t->shape);
            lomo__fail("%s: tensor '%s' has shape %s in the file, config.json implies %s", file, t->name, have, want);
            goto fail;
        }
        if (i == 0) m->file_dtype = s->dtype == LOMO__ST_BF16 ? LOMO_BF16 : s->dtype == LOMO__ST_F16 ? LOMO_F16 : LOMO_F32;
        if (m->be->host_memory && t->dtype == LOMO_F32 && !m->comm) {
            if (lomo__st_read_f32(s, (float *)t->data)) goto fail;
        } else if (m->be->host_memory && lomo__st_of_dtype[t->dtype] == s->dtype && !m->comm) {
            memcpy(t->data, s->data, lomo__tensor_bytes(t));   /* bf16 -> bf16, f16 -> f16 */
        } else {   /* this rank's part, one tensor at a time through a host buffer: never a second full copy */
            stage = (float *)malloc(sizeof(float) * (size_t)lomo__shard_cap(m, t) + 4);
            if (!stage) { lomo__fail("out of host memory staging %s", t->name); goto fail; }
            if (lomo__st_read_f32_range(s, stage, t->shard_off, t->shard_len)) goto fail;
            lomo__upload_f32(m, t, stage);
            free(stage); stage = NULL;
        }
    }
    lomo__ckpt_close(&ck);
    if (m->be->check(m->be->ctx)) { lomo_model_free(m); return NULL; }
    return m;
fail:
    free(stage);
    lomo__ckpt_close(&ck);
    lomo_model_free(m);
    return NULL;
}

/* ---- saving: a whole directory, swapped in atomically ---- */

#include <dirent.h>
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 28))
#define LOMO__HAVE_RENAMEAT2 1
#ifndef __USE_GNU   /* else <stdio.h> declared it (glibc decided when features.h was read) */
extern int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags);
#endif
#ifndef AT_FDCWD
#define AT_FDCWD -100   /* Linux's value; <fcntl.h> hides it under strict -std=c11 */
#endif
#endif

/* removes a directory of plain files (what lomo writes) */
static void lomo__rmtree(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[1300];
    if (!d) return;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(dir);
}

static int lomo__fsync_path(const char *path) {
    int fd = open(path, O_RDONLY), rc;
    if (fd < 0) return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

static int lomo__is_weight_file(const char *n) {
    size_t l = strlen(n);
    return !strcmp(n, "config.json") || !strcmp(n, "model.safetensors.index.json") ||
           (l > 12 && !strcmp(n + l - 12, ".safetensors")) || (l > 4 && !strcmp(n + l - 4, ".bin")) ||
           (l > 3 && !strcmp(n + l - 3, ".pt")) || (l > 4 && !strcmp(n + l - 4, ".pth"));
}

/* Files of src that are not weights or config (tokenizer, generation config,
   README...) are linked, or copied, into dst unless dst has them already. */
static int lomo__carry_files(const char *src, const char *dst) {
    DIR *d = opendir(src);
    struct dirent *e;
    char from[1300], to[1300];
    if (!d) return 0;
    while ((e = readdir(d))) {
        struct stat st;
        if (e->d_name[0] == '.' || lomo__is_weight_file(e->d_name)) continue;
        snprintf(from, sizeof from, "%s/%s", src, e->d_name);
        snprintf(to, sizeof to, "%s/%s", dst, e->d_name);
        if (stat(from, &st) || !S_ISREG(st.st_mode) || lomo__exists(to)) continue;
        if (link(from, to)) {
            char *buf;
            size_t len;
            int rc = lomo__read_file(from, &buf, &len);
            if (!rc) { rc = lomo__write_file_atomic(to, buf, len); LOMO_FREE(buf); }
            if (rc) { closedir(d); return -1; }
        }
    }
    closedir(d);
    return 0;
}

/* Temporary directories of saves whose process is gone (killed mid-save). */
static void lomo__remove_stale_tmp(const char *dir) {
    char parent[1024], prefix[300], p[1400];
    const char *slash = strrchr(dir, '/');
    DIR *d;
    struct dirent *e;
    if (slash) snprintf(parent, sizeof parent, "%.*s", (int)(slash - dir), dir);
    else snprintf(parent, sizeof parent, ".");
    if (!parent[0]) snprintf(parent, sizeof parent, "/");
    snprintf(prefix, sizeof prefix, "%s.lomo-tmp.", slash ? slash + 1 : dir);
    if (!(d = opendir(parent))) return;
    while ((e = readdir(d))) {
        long pid;
        if (strncmp(e->d_name, prefix, strlen(prefix))) continue;
        pid = strtol(e->d_name + strlen(prefix), NULL, 10);
        snprintf(p, sizeof p, "/proc/%ld", pid);
        if (pid > 0 && pid != (long)getpid() && lomo__exists("/proc/self") && !lomo__exists(p)) {
            snprintf(p, sizeof p, "%s/%s", parent, e->d_name);
            lomo__rmtree(p);
        }
    }
    closedir(d);
}

/* tmp replaces dir: one atomic exchange where the kernel has it */
static int lomo__swap_in(const char *tmp, const char *dir) {
    char old[1100];
    if (!lomo__exists(dir)) {
        if (rename(tmp, dir)) return lomo__fail("%s: rename from %s failed: %s", dir, tmp, strerror(errno));
        return 0;
    }
#ifdef LOMO__HAVE_RENAMEAT2
    if (!renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, 2 /* RENAME_EXCHANGE */)) { lomo__rmtree(tmp); return 0; }
    if (errno != EINVAL && errno != ENOSYS)
        return lomo__fail("%s: exchange with %s failed: %s", dir, tmp, strerror(errno));
#endif
    /* no atomic exchange here: two renames (a crash between them leaves the
       previous checkpoint complete at <dir>.lomo-old.<pid>) */
    snprintf(old, sizeof old, "%s.lomo-old.%ld", dir, (long)getpid());
    if (rename(dir, old)) return lomo__fail("%s: rename to %s failed: %s", dir, old, strerror(errno));
    if (rename(tmp, dir)) { int e = errno; rename(old, dir); return lomo__fail("%s: rename failed: %s", dir, strerror(e)); }
    lomo__rmtree(old);
    return 0;
}


/* the bytes of tensor t in dtype dt on the host; *owned says whether to free */
static void *lomo__host_copy(const lomo_model *m, const lomo_tensor *t, lomo_dtype dt, int *owned) {
    size_t n = (size_t)t->numel, i;
    void *raw = t->data, *out;
    *owned = 0;
    if (m->comm) {   /* every rank: all-gather the shards on the backend, then download the whole tensor */
        size_t part = lomo__stored_bytes(m, t), all = part * (size_t)m->comm->size;
        lomo_model *mm = (lomo_model *)m;   /* accounting only */
        void *full = lomo__alloc(mm, LOMO_MEM_COMM, all);
        if (!full) return NULL;
        if (m->comm->all_gather(m->comm->ctx, full, t->data, part) || !(raw = malloc(all))) {
            lomo__free(mm, LOMO_MEM_COMM, full, all);
            return NULL;
        }
        m->be->download(m->be->ctx, raw, full, lomo__tensor_bytes(t));
        lomo__free(mm, LOMO_MEM_COMM, full, all);
        *owned = 1;
    } else if (!m->be->host_memory) {
        if (!(raw = malloc(lomo__tensor_bytes(t)))) return NULL;
        m->be->download(m->be->ctx, raw, t->data, lomo__tensor_bytes(t));
        *owned = 1;
    }
    if (dt == t->dtype) return raw;
    out = malloc(n * lomo__dtype_size(dt) + 1);
    if (out) {
        lomo_tensor v = *t;
        v.data = raw;
        for (i = 0; i < n; i++) {
            float x = lomo__elem(&v, i);
            if (dt == LOMO_F32) ((float *)out)[i] = x;
            else ((uint16_t *)out)[i] = dt == LOMO_BF16 ? lomo_f32_to_bf16(x) : lomo_f32_to_f16(x);
        }
    }
    if (*owned) free(raw);
    *owned = out != NULL;
    return out;
}

static int lomo__trainer_write(const lomo_trainer *t, const char *path, int writer);

/* Sharded: rank 0's rc (and error message) reaches every rank. */
static int lomo__agree(const lomo_model *m, int *rc) {
    char msg[sizeof lomo__errbuf];
    int v[1];
    if (!m->comm) return 0;
    v[0] = *rc;
    memcpy(msg, lomo__errbuf, sizeof msg);
    if (m->comm->broadcast(m->comm->ctx, v, sizeof v, 0) ||
        m->comm->broadcast(m->comm->ctx, msg, sizeof msg, 0)) return -1;
    if (v[0] && m->comm->rank) { memcpy(lomo__errbuf, msg, sizeof msg); lomo__errbuf[sizeof lomo__errbuf - 1] = 0; }
    *rc = v[0];
    return 0;
}

LOMODEF int lomo_save_ex(const lomo_model *m, const char *dir, const lomo_save_opts *opts) {
    char tmp[1100], path[1300], shard[64];
    lomo_save_opts o;
    lomo__st_out *outs = NULL;
    void **bufs = NULL;
    int *owned = NULL, *shard_of = NULL;
    int i, n_shards = 1, rc = 0, k, writer = !m->comm || m->comm->rank == 0;
    uint64_t total = 0, cur = 0;
    lomo_dtype dt;
    static const char *meta[] = {"format", "pt", NULL};
    memset(&o, 0, sizeof o);
    if (opts) o = *opts;
    if (o.dtype < LOMO_SAVE_AS_LOADED || o.dtype > LOMO_SAVE_F16) return lomo__fail("%s: save dtype %d is not one of LOMO_SAVE_*", dir, o.dtype);
    dt = o.dtype == LOMO_SAVE_AS_LOADED ? m->file_dtype : (lomo_dtype)(o.dtype - 1);
    if (!o.max_shard_bytes) o.max_shard_bytes = (int64_t)5 << 30;
    if (strlen(dir) > 900) return lomo__fail("%s: path too long", dir);
    snprintf(tmp, sizeof tmp, "%s.lomo-tmp.%ld", dir, (long)getpid());
    if (writer) {
        lomo__remove_stale_tmp(dir);
        lomo__rmtree(tmp);
        if (mkdir(tmp, 0755)) rc = lomo__fail("%s: cannot create %s: %s", dir, tmp, strerror(errno));
    }
    if (lomo__agree(m, &rc)) return -1;   /* sharded: every rank learns rank 0's outcome */
    /* tied weights are stored once (m->tensors has no lm_head then); shards in tensor order */
    shard_of = (int *)calloc((size_t)m->n_tensors, sizeof(int));
    outs = (lomo__st_out *)calloc((size_t)m->n_tensors, sizeof *outs);
    bufs = (void **)calloc((size_t)m->n_tensors, sizeof(void *));
    owned = (int *)calloc((size_t)m->n_tensors, sizeof(int));
    rc = -1;
    if (!shard_of || !outs || !bufs || !owned) { lomo__fail("out of host memory"); goto done; }
    for (i = 0; i < m->n_tensors; i++) {
        uint64_t b = (uint64_t)m->tensors[i].numel * lomo__dtype_size(dt);
        if (cur > 0 && cur + b > (uint64_t)o.max_shard_bytes) { n_shards++; cur = 0; }
        shard_of[i] = n_shards - 1;
        cur += b; total += b;
    }
    for (k = 0; k < n_shards; k++) {
        int n = 0;
        for (i = 0; i < m->n_tensors; i++) {
            const lomo_tensor *t = &m->tensors[i];
            lomo__st_out *so = &outs[n++];
            if (shard_of[i] != k) { n--; continue; }
            so->name = t->name; so->dtype = lomo__st_of_dtype[dt]; so->ndim = t->ndim;
            so->shape[0] = t->shape[0]; so->shape[1] = t->shape[1];
            if (!(so->data = bufs[i] = lomo__host_copy(m, t, dt, &owned[i]))) { lomo__fail("out of host memory"); goto done; }
        }
        if (n_shards == 1) snprintf(shard, sizeof shard, "model.safetensors");
        else snprintf(shard, sizeof shard, "model-%05d-of-%05d.safetensors", k + 1, n_shards);
        snprintf(path, sizeof path, "%s/%s", tmp, shard);
        if (writer && lomo__st_save(path, outs, n, meta)) goto done;
        for (i = 0; i < m->n_tensors; i++) { if (owned[i]) free(bufs[i]); bufs[i] = NULL; owned[i] = 0; }
    }
    if (o.trainer) {   /* collective when sharded (the optimizer state is gathered) */
        snprintf(path, sizeof path, "%s/trainer.safetensors", tmp);
        if (lomo__trainer_write(o.trainer, path, writer)) goto done;
    }
    if (!writer) { rc = 0; goto done; }
    if (n_shards > 1) {   /* model.safetensors.index.json */
        lomo__sb b = { NULL, 0, 0, 0 };
        lomo__sb_printf(&b, "{\n  \"metadata\": {\"total_size\": %llu},\n  \"weight_map\": {\n", (unsigned long long)total);
        for (i = 0; i < m->n_tensors; i++)
            lomo__sb_printf(&b, "    \"%s\": \"model-%05d-of-%05d.safetensors\"%s\n", m->tensors[i].name,
                            shard_of[i] + 1, n_shards, i + 1 < m->n_tensors ? "," : "");
        lomo__sb_printf(&b, "  }\n}\n");
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", tmp);
        if (b.oom) { LOMO_FREE(b.p); lomo__fail("out of host memory"); goto done; }
        k = lomo__write_file_atomic(path, b.p, b.n);
        LOMO_FREE(b.p);
        if (k) goto done;
    }
    {
        lomo_config c = m->cfg;
        c.dtype = dt;
        snprintf(path, sizeof path, "%s/config.json", tmp);
        if (lomo__config_save(path, &c)) goto done;
    }
    for (i = 0; i < o.n_extra; i++) {
        if (!o.extra[i].name || strchr(o.extra[i].name, '/')) { lomo__fail("%s: extra file name must be a plain name", dir); goto done; }
        snprintf(path, sizeof path, "%s/%s", tmp, o.extra[i].name);
        if (lomo__write_file_atomic(path, o.extra[i].data, o.extra[i].len)) goto done;
    }
    /* files already in dir, then the source model's tokenizer & co. */
    if (lomo__carry_files(dir, tmp) || (o.copy_from && lomo__carry_files(o.copy_from, tmp))) goto done;
    if (lomo__fsync_path(tmp)) { lomo__fail("%s: fsync of %s failed: %s", dir, tmp, strerror(errno)); goto done; }
    if (lomo__swap_in(tmp, dir)) goto done;
    {
        char parent[1024];
        const char *slash = strrchr(dir, '/');
        if (slash) snprintf(parent, sizeof parent, "%.*s", (int)(slash - dir) > 0 ? (int)(slash - dir) : 1, dir);
        else snprintf(parent, sizeof parent, ".");
        lomo__fsync_path(parent);
    }
    rc = 0;
done:
    if (rc && writer) lomo__rmtree(tmp);
    for (i = 0; bufs && i < m->n_tensors; i++) if (owned[i]) free(bufs[i]);
    free(bufs); free(owned); free(outs); free(shard_of);
    return lomo__agree(m, &rc) ? -1 : rc;
}

LOMODEF int lomo_save(const lomo_model *m, const char *dir) { return lomo_save_ex(m, dir, NULL); }

/* ======================================================================== */
/* MPI communicator (LOMO_MPI)                                              */
/* ======================================================================== */
#ifdef LOMO_MPI
#include <limits.h>
#include <time.h>

typedef struct lomo__mpi { MPI_Comm comm; double timeout; } lomo__mpi;

static double lomo__wall(void) {
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* waits for one non-blocking collective, or gives up after the timeout and
   takes the whole job down with a message (MPI has no way to cancel it) */
static int lomo__mpi_wait(lomo__mpi *c, MPI_Request *req, const char *what) {
    double t0 = lomo__wall();
    int done = 0, rank = 0, size = 0;
    while (!done) {
        if (MPI_Test(req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) return lomo__fail("MPI %s failed", what);
        if (!done && lomo__wall() - t0 > c->timeout) {
            MPI_Comm_rank(c->comm, &rank);
            MPI_Comm_size(c->comm, &size);
            lomo__fail("MPI %s: no answer from the other ranks after %.0f s (rank %d of %d): a rank died, hangs, "
                       "or is running different work; aborting the job (LOMO_COMM_TIMEOUT sets the limit)",
                       what, c->timeout, rank, size);
            fprintf(stderr, "lomo: %s\n", lomo_error());
            fflush(stderr);
            MPI_Abort(c->comm, 3);
            return -1;
        }
    }
    return 0;
}

static int lomo__mpi_all_reduce(void *ctx, void *buf, size_t n, int is_double) {
    lomo__mpi *c = (lomo__mpi *)ctx;
    size_t esz = is_double ? 8 : 4, done = 0;
    while (done < n) {   /* counts are ints */
        size_t k = n - done < (size_t)INT_MAX ? n - done : (size_t)INT_MAX;
        MPI_Request req;
        if (MPI_Iallreduce(MPI_IN_PLACE, (char *)buf + done * esz, (int)k, is_double ? MPI_DOUBLE : MPI_FLOAT, MPI_SUM,
                           c->comm, &req) != MPI_SUCCESS) return lomo__fail("MPI all_reduce failed to start");
        if (lomo__mpi_wait(c, &req, "all_reduce")) return -1;
        done += k;
    }
    return 0;
}

static int lomo__mpi_all_gather(void *ctx, void *dst, const void *src, size_t bytes) {
    lomo__mpi *c = (lomo__mpi *)ctx;
    MPI_Request req;
    if (bytes > (size_t)INT_MAX) return lomo__fail("MPI all_gather: %zu bytes per rank is over the int limit", bytes);
    if (MPI_Iallgather(src, (int)bytes, MPI_BYTE, dst, (int)bytes, MPI_BYTE, c->comm, &req) != MPI_SUCCESS)
        return lomo__fail("MPI all_gather failed to start");
    return lomo__mpi_wait(c, &req, "all_gather");
}

static int lomo__mpi_reduce_scatter(void *ctx, float *dst, const float *src, size_t n) {
    lomo__mpi *c = (lomo__mpi *)ctx;
    MPI_Request req;
    if (n > (size_t)INT_MAX) return lomo__fail("MPI reduce_scatter: %zu elements per rank is over the int limit", n);
    if (MPI_Ireduce_scatter_block(src, dst, (int)n, MPI_FLOAT, MPI_SUM, c->comm, &req) != MPI_SUCCESS)
        return lomo__fail("MPI reduce_scatter failed to start");
    return lomo__mpi_wait(c, &req, "reduce_scatter");
}

static int lomo__mpi_broadcast(void *ctx, void *buf, size_t bytes, int root) {
    lomo__mpi *c = (lomo__mpi *)ctx;
    MPI_Request req;
    if (bytes > (size_t)INT_MAX) return lomo__fail("MPI broadcast: %zu bytes is over the int limit", bytes);
    if (MPI_Ibcast(buf, (int)bytes, MPI_BYTE, root, c->comm, &req) != MPI_SUCCESS) return lomo__fail("MPI broadcast failed to start");
    return lomo__mpi_wait(c, &req, "broadcast");
}

LOMODEF lomo_comm *lomo_mpi_comm(MPI_Comm comm) {
    lomo_comm *c = (lomo_comm *)calloc(1, sizeof *c);
    lomo__mpi *x = (lomo__mpi *)calloc(1, sizeof *x);
    const char *env = getenv("LOMO_COMM_TIMEOUT");
    if (!c || !x) { free(c); free(x); lomo__fail("out of host memory"); return NULL; }
    x->comm = comm;
    x->timeout = env && atof(env) > 0 ? atof(env) : 600.0;
    MPI_Comm_rank(comm, &c->rank);
    MPI_Comm_size(comm, &c->size);
    c->name = "mpi";
    c->ctx = x;
    c->all_reduce_sum = lomo__mpi_all_reduce;
    c->all_gather = lomo__mpi_all_gather;
    c->reduce_scatter_sum = lomo__mpi_reduce_scatter;
    c->broadcast = lomo__mpi_broadcast;
    return c;
}

LOMODEF void lomo_mpi_comm_free(lomo_comm *c) {
    if (!c) return;
    free(c->ctx);
    free(c);
}
#endif /* LOMO_MPI */

/* ======================================================================== */
/* the driver: forward, layer-streaming backward, update hook calls        */
/* ======================================================================== */

/* RoPE inverse frequencies (hd/2 floats), in fp32 as transformers computes
   them: theta^(-2i/hd), and for rope type llama3 the Llama 3 rescaling
   (low frequencies divided by factor, high ones kept, a smooth blend between). */
static void lomo__rope_inv_freq(const lomo_config *c, float *out) {
    int i, half = c->head_dim / 2;
    for (i = 0; i < half; i++) {
        float f = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)c->head_dim);
        if (c->rope_type == 1) {
            float old_ctx = (float)c->rope_original_max_pos;
            float low_wl = old_ctx / c->rope_low_freq_factor, high_wl = old_ctx / c->rope_high_freq_factor;
            float wl = 6.283185307179586f / f;
            float scaled = wl > low_wl ? f / c->rope_factor : f;
            if (!(wl < high_wl) && !(wl > low_wl)) {
                float sm = (old_ctx / wl - c->rope_low_freq_factor) / (c->rope_high_freq_factor - c->rope_low_freq_factor);
                scaled = (1.0f - sm) * scaled / c->rope_factor + sm * scaled;
            }
            f = scaled;
        }
        out[i] = f;
    }
}

/* One layer's working set: what its backward reads. With checkpointing one
   set is shared by all layers (recomputed from the layer's input); without,
   every layer has its own. */
typedef struct lomo__acts {
    float *ln1, *rstd1, *q, *k, *v, *att, *lse, *xmid, *ln2, *rstd2, *g, *u, *h;
} lomo__acts;

enum { LOMO__PASS_NORM = 0, LOMO__PASS_UPDATE = 1 };
enum { LOMO__NONE = -3, LOMO__EMBED = -2, LOMO__HEAD = -1 };   /* gather stages besides the layers */

struct lomo_trainer {
    lomo_model *m;
    lomo_train_opts o;
    int B, T, N, M;             /* micro-batch of B x T = N tokens; M micro-batches per step */
    int64_t step;
    /* activations */
    float *xs;                  /* (M, L+1, N, C): each layer's input per micro-batch; [L] = final hidden */
    lomo__acts *acts;           /* L sets, or 1 with checkpointing (always when M > 1) */
    float *acts_mem; size_t acts_bytes;
    float *lnf, *rstdf, *logits, *losses;
    int32_t *tok, *tgt;         /* backend copies, M * N each */
    float *inv_freq;            /* RoPE inverse frequencies, head_dim/2 */
    /* workspace for the backward */
    float *ws; size_t ws_bytes;
    float *dx, *dln, *dq, *dk, *dv, *datt, *dg, *du, *vtmp;   /* dx: M * N * C */
    void *scratch; size_t scratch_bytes;                      /* the backend's (16-bit widening, Gram) */
    /* gradients: M == 1: one buffer the size of the largest tensor; M > 1: one
       stage's (layer's, or lm_head + final norm's) tensors side by side */
    float *grad; size_t grad_numel;
    size_t *slot;               /* per tensor: offset of its gradient in grad (M > 1) */
    /* optimizer state (AdaLomo: row/col or vector; AdamW: m, v) */
    float *opt_mem; size_t opt_floats;
    float **s1, **s2;           /* per tensor */
    /* sharding: gathered copies of one stage's tensors (a layer, the head, the embedding) */
    const lomo_comm *comm;
    void *gbuf; size_t gbuf_bytes;
    int gstage;                 /* stage in gbuf: l >= 0, LOMO__HEAD, LOMO__EMBED, or LOMO__NONE */
    lomo_tensor *view;          /* per tensor: the gathered whole tensor */
    lomo_layer *lview;          /* per layer, pointing into view */
    float *gshard; size_t gshard_len;   /* this rank's part of a summed gradient */
    int failed;                 /* a collective failed inside a pass */
    /* loss scaling */
    int scaling;
    float scale;
    int clean_steps;
    /* host scratch */
    int32_t *tgt_host; float *loss_host;
    /* this step */
    int pass;
    double sumsq;
    int64_t count;
    lomo_update_ctx uctx;
    lomo_kv *kv;                /* generation only (a lomo_kv's own forward context): attention through the KV cache */
};

static size_t lomo__acts_floats(const lomo_config *c, int N) {
    size_t C = c->dim, H = c->hidden_dim, qd = (size_t)c->n_heads * c->head_dim,
           kvd = (size_t)c->n_kv_heads * c->head_dim;
    return (size_t)N * (3 * C + 2 + 2 * qd + 2 * kvd + c->n_heads + 3 * H);
}

static void lomo__acts_carve(lomo__acts *a, float *p, const lomo_config *c, int N) {
    size_t C = c->dim, H = c->hidden_dim, qd = (size_t)c->n_heads * c->head_dim,
           kvd = (size_t)c->n_kv_heads * c->head_dim;
#define LOMO__CARVE(f, n) (a->f = p, p += (size_t)N * (n))
    LOMO__CARVE(ln1, C); LOMO__CARVE(rstd1, 1); LOMO__CARVE(q, qd); LOMO__CARVE(k, kvd);
    LOMO__CARVE(v, kvd); LOMO__CARVE(att, qd); LOMO__CARVE(lse, c->n_heads); LOMO__CARVE(xmid, C);
    LOMO__CARVE(ln2, C); LOMO__CARVE(rstd2, 1); LOMO__CARVE(g, H); LOMO__CARVE(u, H); LOMO__CARVE(h, H);
#undef LOMO__CARVE
}

/* backward scratch: dx for each micro-batch, then dln, dq, datt, dk, dv, dg, du, vtmp */
static size_t lomo__ws_floats(const lomo_config *c, int N, int M) {
    size_t C = c->dim, H = c->hidden_dim, qd = (size_t)c->n_heads * c->head_dim,
           kvd = (size_t)c->n_kv_heads * c->head_dim, big = C > qd ? C : qd;
    return (size_t)N * ((size_t)M * C + C + 2 * qd + 2 * kvd + 2 * H) + (M > 1 ? big : 0);
}

/* The tensors of one backward stage, in the order their gradients complete:
   stage -1 = lm_head (untied) + final norm, stage l = layer l. */
static int lomo__stage_tensors(const lomo_model *m, int stage, lomo_tensor **out) {
    int n = 0;
    if (stage < 0) {
        if (!m->cfg.tie_embeddings) out[n++] = m->lm_head;
        out[n++] = m->final_norm;
    } else {
        const lomo_layer *L = &m->layers[stage];
        lomo_tensor *order[13];
        int i;
        order[0] = L->w_down; order[1] = L->w_up; order[2] = L->w_gate; order[3] = L->mlp_norm;
        order[4] = L->wo; order[5] = L->bo; order[6] = L->wv; order[7] = L->bv; order[8] = L->wk;
        order[9] = L->bk; order[10] = L->wq; order[11] = L->bq; order[12] = L->attn_norm;
        for (i = 0; i < 13; i++) if (order[i]) out[n++] = order[i];
    }
    return n;
}

/* the tensors a gather stage brings in: a layer, the head (final norm +
   lm_head, which is the embedding when tied), or the embedding */
static int lomo__gather_stage(const lomo_model *m, int stage, lomo_tensor **out) {
    int n = 0;
    if (stage >= 0) {
        const lomo_layer *L = &m->layers[stage];
        lomo_tensor *all[13];
        int i;
        all[0] = L->attn_norm; all[1] = L->wq; all[2] = L->bq; all[3] = L->wk; all[4] = L->bk; all[5] = L->wv;
        all[6] = L->bv; all[7] = L->wo; all[8] = L->bo; all[9] = L->mlp_norm; all[10] = L->w_gate; all[11] = L->w_up;
        all[12] = L->w_down;
        for (i = 0; i < 13; i++) if (all[i]) out[n++] = all[i];
    } else if (stage == LOMO__HEAD) {
        out[n++] = m->final_norm;
        out[n++] = m->lm_head;
    } else out[n++] = m->embed;
    return n;
}

/* all-gathers a stage's tensors into gbuf (whole, in the storage dtype) and
   points their views there; cached until the next pass starts */
static int lomo__gather(lomo_trainer *t, int stage) {
    const lomo_model *m = t->m;
    lomo_tensor *st[16];
    size_t off = 0;
    int n, k;
    if (!t->comm || t->gstage == stage) return 0;
    n = lomo__gather_stage(m, stage, st);
    for (k = 0; k < n; k++) {
        size_t part = lomo__stored_bytes(m, st[k]);
        lomo_tensor *v = &t->view[st[k]->index];
        *v = *st[k];
        v->data = (char *)t->gbuf + off;
        v->shard_off = 0; v->shard_len = v->numel;
        if (t->comm->all_gather(t->comm->ctx, v->data, st[k]->data, part)) { t->failed = 1; t->gstage = LOMO__NONE; return -1; }
        off += part * (size_t)t->comm->size;
    }
    t->gstage = stage;
    return 0;
}

/* a weight as the kernels must see it: whole (gathered when sharded) */
static const lomo_tensor *lomo__need(lomo_trainer *t, int stage, const lomo_tensor *p) {
    if (!t->comm) return p;
    lomo__gather(t, stage);
    return &t->view[p->index];
}

/* every rank must run the same model, batch and rule: compare, or fail clearly */
static int lomo__ranks_agree(lomo_trainer *t) {
    const lomo_config *c = &t->m->cfg;
    static const char *names[] = {"world size", "hidden_size", "intermediate_size", "num_hidden_layers",
        "num_attention_heads", "num_key_value_heads", "vocab_size", "storage dtype", "batch", "seq_len",
        "micro_batches", "optimizer", "clip_mode", "checkpointing"};
    enum { NF = 14 };
    int mine[NF], *all, r, f, rc = 0;
    mine[0] = t->comm->size; mine[1] = c->dim; mine[2] = c->hidden_dim; mine[3] = c->n_layers; mine[4] = c->n_heads;
    mine[5] = c->n_kv_heads; mine[6] = c->vocab_size; mine[7] = (int)c->dtype; mine[8] = t->B; mine[9] = t->T;
    mine[10] = t->M; mine[11] = t->o.optimizer; mine[12] = t->o.clip_mode; mine[13] = t->o.checkpointing;
    all = (int *)malloc(sizeof mine * (size_t)t->comm->size);
    if (!all) return lomo__fail("out of host memory");
    if (t->comm->all_gather(t->comm->ctx, all, mine, sizeof mine)) { free(all); return -1; }
    for (r = 0; r < t->comm->size && !rc; r++)
        for (f = 0; f < NF; f++)
            if (all[r * NF + f] != mine[f]) {
                rc = lomo__fail("sharded trainer: rank %d has %s = %d but rank %d has %d: every rank must "
                                "run the same model, batch and options", r, names[f], all[r * NF + f],
                                t->comm->rank, mine[f]);
                break;
            }
    free(all);
    return rc;
}

LOMODEF void lomo_trainer_free(lomo_trainer *t) {
    lomo_model *m;
    size_t N, C;
    if (!t) return;
    m = t->m; N = (size_t)t->N; C = (size_t)m->cfg.dim;
    lomo__free(m, LOMO_MEM_ACTIVATIONS, t->xs, sizeof(float) * (size_t)t->M * (m->cfg.n_layers + 1) * N * C);
    lomo__free(m, LOMO_MEM_ACTIVATIONS, t->acts_mem, t->acts_bytes);
    lomo__free(m, LOMO_MEM_ACTIVATIONS, t->lnf, sizeof(float) * N * (C + 1));
    lomo__free(m, LOMO_MEM_ACTIVATIONS, t->logits, sizeof(float) * N * ((size_t)m->cfg.vocab_size + 1));
    lomo__free(m, LOMO_MEM_ACTIVATIONS, t->tok, sizeof(int32_t) * N * 2 * (size_t)t->M);
    lomo__free(m, LOMO_MEM_WORKSPACE, t->ws, t->ws_bytes);
    lomo__free(m, LOMO_MEM_WORKSPACE, t->scratch, t->scratch_bytes);
    lomo__free(m, LOMO_MEM_WORKSPACE, t->inv_freq, sizeof(float) * (size_t)(m->cfg.head_dim / 2));
    lomo__free(m, LOMO_MEM_GRADIENTS, t->grad, sizeof(float) * t->grad_numel);
    lomo__free(m, LOMO_MEM_OPTIMIZER, t->opt_mem, sizeof(float) * t->opt_floats);
    lomo__free(m, LOMO_MEM_COMM, t->gbuf, t->gbuf_bytes);
    lomo__free(m, LOMO_MEM_GRADIENTS, t->gshard, sizeof(float) * t->gshard_len);
    free(t->acts); free(t->tgt_host); free(t->loss_host); free(t->slot); free(t->s1); free(t->s2);
    free(t->view); free(t->lview);
    free(t);
}

LOMODEF lomo_trainer *lomo_trainer_new(lomo_model *m, const lomo_train_opts *opts) {
    lomo_trainer *t;
    const lomo_config *c = &m->cfg;
    size_t N, C, qd, kvd, H, per, i, off;
    int n_sets, l, M;
    lomo_tensor *st[16];
    if (!opts || opts->batch <= 0 || opts->seq_len <= 0 || opts->micro_batches < 0) {
        lomo__fail("trainer: batch and seq_len must be positive, micro_batches >= 0"); return NULL;
    }
    if (opts->clip_norm < 0 || opts->clip_value < 0 || opts->weight_decay < 0) {
        lomo__fail("trainer: clip_norm, clip_value and weight_decay must be >= 0"); return NULL;
    }
    if (opts->optimizer < LOMO_OPT_LOMO || opts->optimizer > LOMO_OPT_ADAMW || opts->clip_mode < 0 ||
        opts->clip_mode > LOMO_CLIP_TENSOR) {
        lomo__fail("trainer: optimizer %d / clip_mode %d unknown", opts->optimizer, opts->clip_mode); return NULL;
    }
    if (c->sliding_window > 0 && opts->seq_len > c->sliding_window) {
        lomo__fail("config: field 'sliding_window': %d is shorter than seq_len=%d, and sliding-window "
                   "attention is not implemented (use seq_len <= %d)", c->sliding_window, opts->seq_len,
                   c->sliding_window);
        return NULL;
    }
    t = (lomo_trainer *)calloc(1, sizeof *t);
    if (!t) { lomo__fail("out of host memory"); return NULL; }
    t->m = m; t->o = *opts;
    M = t->M = opts->micro_batches > 1 ? opts->micro_batches : 1;
    if (M > 1) t->o.checkpointing = 1;   /* layer-major micro-batching recomputes each layer */
    /* defaults of the rules and the loss scaler (lomo-optim's and torch's) */
    if (t->o.adalomo_eps1 == 0) t->o.adalomo_eps1 = 1e-30f;
    if (t->o.adalomo_eps2 == 0) t->o.adalomo_eps2 = 1e-3f;
    if (t->o.adalomo_clip_threshold == 0) t->o.adalomo_clip_threshold = 1.0f;
    if (t->o.adalomo_decay_rate == 0) t->o.adalomo_decay_rate = -0.8f;
    if (t->o.adamw_beta1 == 0) t->o.adamw_beta1 = 0.9f;
    if (t->o.adamw_beta2 == 0) t->o.adamw_beta2 = 0.999f;
    if (t->o.adamw_eps == 0) t->o.adamw_eps = 1e-8f;
    if (t->o.loss_scale_init == 0) t->o.loss_scale_init = 65536.0f;
    if (t->o.loss_scale_growth == 0) t->o.loss_scale_growth = 2.0f;
    if (t->o.loss_scale_backoff == 0) t->o.loss_scale_backoff = 0.5f;
    if (t->o.loss_scale_min == 0) t->o.loss_scale_min = 1.0f;
    if (t->o.loss_scale_window == 0) t->o.loss_scale_window = 1000;
    t->scaling = opts->loss_scaling > 0 || (opts->loss_scaling == 0 && c->dtype == LOMO_F16);
    t->scale = t->scaling ? t->o.loss_scale_init : 1.0f;
    t->B = opts->batch; t->T = opts->seq_len; t->N = t->B * t->T;
    N = (size_t)t->N; C = (size_t)c->dim; H = (size_t)c->hidden_dim;
    qd = (size_t)c->n_heads * c->head_dim; kvd = (size_t)c->n_kv_heads * c->head_dim;
#define LOMO__ALLOC(dst, tag, bytes) \
    if (!((dst) = (float *)lomo__alloc(m, tag, bytes))) goto fail
    LOMO__ALLOC(t->xs, LOMO_MEM_ACTIVATIONS, sizeof(float) * (size_t)M * (c->n_layers + 1) * N * C);
    n_sets = t->o.checkpointing ? 1 : c->n_layers;
    per = lomo__acts_floats(c, t->N);
    t->acts_bytes = sizeof(float) * per * n_sets;
    LOMO__ALLOC(t->acts_mem, LOMO_MEM_ACTIVATIONS, t->acts_bytes);
    t->acts = (lomo__acts *)calloc((size_t)n_sets, sizeof(lomo__acts));
    if (!t->acts) goto fail;
    for (l = 0; l < n_sets; l++) lomo__acts_carve(&t->acts[l], t->acts_mem + per * l, c, t->N);
    LOMO__ALLOC(t->lnf, LOMO_MEM_ACTIVATIONS, sizeof(float) * N * (C + 1));
    t->rstdf = t->lnf + N * C;
    LOMO__ALLOC(t->logits, LOMO_MEM_ACTIVATIONS, sizeof(float) * N * ((size_t)c->vocab_size + 1));
    t->losses = t->logits + N * (size_t)c->vocab_size;
    if (!(t->tok = (int32_t *)lomo__alloc(m, LOMO_MEM_ACTIVATIONS, sizeof(int32_t) * N * 2 * (size_t)M))) goto fail;
    t->tgt = t->tok + N * (size_t)M;
    t->ws_bytes = sizeof(float) * lomo__ws_floats(c, t->N, M);
    LOMO__ALLOC(t->ws, LOMO_MEM_WORKSPACE, t->ws_bytes);
    t->dx = t->ws; t->dln = t->dx + (size_t)M * N * C; t->dq = t->dln + N * C; t->datt = t->dq + N * qd;
    t->dk = t->datt + N * qd; t->dv = t->dk + N * kvd; t->dg = t->dv + N * kvd; t->du = t->dg + N * H;
    t->vtmp = M > 1 ? t->du + N * H : NULL;
    t->scratch_bytes = m->be->scratch_bytes ? m->be->scratch_bytes(m->be->ctx, m, t->N,
        t->o.clip_mode == LOMO_CLIP_GLOBAL_GRAM && M == 1) : 0;
    if (t->scratch_bytes && !(t->scratch = lomo__alloc(m, LOMO_MEM_WORKSPACE, t->scratch_bytes))) goto fail;
    /* gradient buffer */
    t->slot = (size_t *)calloc((size_t)m->n_tensors, sizeof(size_t));
    if (!t->slot) goto fail;
    /* sharded, a gradient is reduce-scattered from a buffer padded to ranks x shard capacity */
#define LOMO__GLEN(p) (m->comm ? (size_t)lomo__shard_cap(m, (p)) * (size_t)m->comm->size : (size_t)(p)->numel)
    for (i = 0; i < (size_t)m->n_tensors; i++)
        if (LOMO__GLEN(&m->tensors[i]) > t->grad_numel) t->grad_numel = LOMO__GLEN(&m->tensors[i]);
    if (M > 1) {
        for (l = -1; l < c->n_layers; l++) {
            int n = lomo__stage_tensors(m, l, st), k;
            for (off = 0, k = 0; k < n; k++) { t->slot[st[k]->index] = off; off += LOMO__GLEN(st[k]); }
            if (off > t->grad_numel) t->grad_numel = off;
        }
        if (c->tie_embeddings) {   /* the final norm's gradient waits above every stage (see lomo__backward) */
            t->slot[m->final_norm->index] = t->grad_numel;
            t->grad_numel += LOMO__GLEN(m->final_norm);
        }
    }
#undef LOMO__GLEN
    LOMO__ALLOC(t->grad, LOMO_MEM_GRADIENTS, sizeof(float) * t->grad_numel);
    /* optimizer state, zeroed */
    t->s1 = (float **)calloc((size_t)m->n_tensors, sizeof(float *));
    t->s2 = (float **)calloc((size_t)m->n_tensors, sizeof(float *));
    if (!t->s1 || !t->s2) goto fail;
    if (!t->o.update && t->o.optimizer != LOMO_OPT_LOMO) {
        for (i = 0; i < (size_t)m->n_tensors; i++) {   /* AdamW: this rank's elements; AdaLomo: whole rows/cols */
            const lomo_tensor *p = &m->tensors[i];
            t->opt_floats += t->o.optimizer == LOMO_OPT_ADAMW ? 2 * (size_t)lomo__shard_cap(m, p)
                           : p->ndim == 2 ? (size_t)(p->shape[0] + p->shape[1]) : (size_t)p->numel;
        }
        LOMO__ALLOC(t->opt_mem, LOMO_MEM_OPTIMIZER, sizeof(float) * t->opt_floats);
        m->be->zero(m->be->ctx, t->opt_mem, sizeof(float) * t->opt_floats);
        for (off = 0, i = 0; i < (size_t)m->n_tensors; i++) {
            const lomo_tensor *p = &m->tensors[i];
            size_t cap = (size_t)lomo__shard_cap(m, p);
            size_t a = t->o.optimizer == LOMO_OPT_ADAMW ? cap : p->ndim == 2 ? (size_t)p->shape[0] : (size_t)p->numel;
            size_t b = t->o.optimizer == LOMO_OPT_ADAMW ? cap : p->ndim == 2 ? (size_t)p->shape[1] : 0;
            t->s1[i] = t->opt_mem + off; off += a;
            t->s2[i] = b ? t->opt_mem + off : NULL; off += b;
        }
    }
    LOMO__ALLOC(t->inv_freq, LOMO_MEM_WORKSPACE, sizeof(float) * (size_t)(c->head_dim / 2));
    t->comm = m->comm;
    t->gstage = LOMO__NONE;
    if (t->comm) {
        size_t most = 0, cap = 0;
        int k;
        if (lomo__ranks_agree(t)) goto fail;
        t->view = (lomo_tensor *)calloc((size_t)m->n_tensors, sizeof(lomo_tensor));
        t->lview = (lomo_layer *)calloc((size_t)c->n_layers, sizeof(lomo_layer));
        if (!t->view || !t->lview) { lomo__fail("out of host memory"); goto fail; }
        for (l = LOMO__EMBED; l < c->n_layers; l++) {   /* the largest stage, whole tensors, storage dtype */
            int n = lomo__gather_stage(m, l, st);
            size_t sum = 0;
            for (k = 0; k < n; k++) sum += lomo__stored_bytes(m, st[k]) * (size_t)t->comm->size;
            if (sum > most) most = sum;
        }
        t->gbuf_bytes = most;
        if (!(t->gbuf = lomo__alloc(m, LOMO_MEM_COMM, most))) goto fail;
        for (i = 0; i < (size_t)m->n_tensors; i++)
            if ((size_t)lomo__shard_cap(m, &m->tensors[i]) > cap) cap = (size_t)lomo__shard_cap(m, &m->tensors[i]);
        t->gshard_len = cap;
        LOMO__ALLOC(t->gshard, LOMO_MEM_GRADIENTS, sizeof(float) * cap);
        for (l = 0; l < c->n_layers; l++) {
            const lomo_layer *L = &m->layers[l];
            lomo_layer *V = &t->lview[l];
#define LOMO__V(f) (V->f = L->f ? &t->view[L->f->index] : NULL)
            LOMO__V(attn_norm); LOMO__V(wq); LOMO__V(bq); LOMO__V(wk); LOMO__V(bk); LOMO__V(wv); LOMO__V(bv);
            LOMO__V(wo); LOMO__V(bo); LOMO__V(mlp_norm); LOMO__V(w_gate); LOMO__V(w_up); LOMO__V(w_down);
#undef LOMO__V
        }
    }
#undef LOMO__ALLOC
    {
        float *f = (float *)malloc(sizeof(float) * (size_t)(c->head_dim / 2));
        if (!f) { lomo__fail("out of host memory"); goto fail; }
        lomo__rope_inv_freq(c, f);
        m->be->upload(m->be->ctx, t->inv_freq, f, sizeof(float) * (size_t)(c->head_dim / 2));
        free(f);
    }
    t->tgt_host = (int32_t *)malloc(sizeof(int32_t) * N * (size_t)M);
    t->loss_host = (float *)malloc(sizeof(float) * N);
    if (!t->tgt_host || !t->loss_host) { lomo__fail("out of host memory"); goto fail; }
    return t;
fail:
    lomo_trainer_free(t);
    return NULL;
}

LOMODEF const float *lomo_logits(const lomo_trainer *t) { return t->logits; }
LOMODEF int64_t lomo_trainer_step(const lomo_trainer *t) { return t->step; }
LOMODEF float lomo_trainer_loss_scale(const lomo_trainer *t) { return t->scale; }

/* The seam for parameter sharding: a layer's weights as the kernels see them.
   Unsharded, the model's own tensors; sharded, the gathered copy. */
static const lomo_layer *lomo__layer_weights(lomo_trainer *t, int l) {
    if (!t->comm) return &t->m->layers[l];
    lomo__gather(t, l);
    return &t->lview[l];
}

/* generation: RoPE at the cache position, cache write, attention over the cache */
static void lomo__kv_attn(lomo_trainer *t, int l, lomo__acts *a);

/* One decoder layer forward: x_in (N,C) -> x_out (N,C), filling a.
   x_out may be NULL (recompute inside backward needs everything but the output).
   Generation runs this same function with t->kv set (one sequence of N new tokens). */
static void lomo__layer_fwd(lomo_trainer *t, int l, const float *x_in, lomo__acts *a, float *x_out) {
    const lomo_config *c = &t->m->cfg;
    const lomo_backend *be = t->m->be;
    const lomo_layer *w = lomo__layer_weights(t, l);
    void *X = be->ctx;
    int N = t->N, C = c->dim, H = c->hidden_dim, hd = c->head_dim;
    int qd = c->n_heads * hd, kvd = c->n_kv_heads * hd;
    be->rmsnorm_fwd(X, a->ln1, a->rstd1, x_in, w->attn_norm, N, C, c->norm_eps);
    be->matmul_fwd(X, a->q, a->ln1, w->wq, w->bq, N, C, qd, 0);
    be->matmul_fwd(X, a->k, a->ln1, w->wk, w->bk, N, C, kvd, 0);
    be->matmul_fwd(X, a->v, a->ln1, w->wv, w->bv, N, C, kvd, 0);
    if (t->kv) lomo__kv_attn(t, l, a);
    else {
    be->rope(X, a->q, t->inv_freq, t->B, t->T, c->n_heads, hd, 0);
    be->rope(X, a->k, t->inv_freq, t->B, t->T, c->n_kv_heads, hd, 0);
    be->attn_fwd(X, a->att, a->lse, a->q, a->k, a->v, t->B, t->T, c->n_heads, c->n_kv_heads, hd);
    }
    be->copy(X, a->xmid, x_in, sizeof(float) * (size_t)N * C);
    be->matmul_fwd(X, a->xmid, a->att, w->wo, w->bo, N, qd, C, 1);
    be->rmsnorm_fwd(X, a->ln2, a->rstd2, a->xmid, w->mlp_norm, N, C, c->norm_eps);
    be->matmul_fwd(X, a->g, a->ln2, w->w_gate, NULL, N, C, H, 0);
    be->matmul_fwd(X, a->u, a->ln2, w->w_up, NULL, N, C, H, 0);
    be->swiglu_fwd(X, a->h, a->g, a->u, (size_t)N * H);
    if (x_out) {
        be->copy(X, x_out, a->xmid, sizeof(float) * (size_t)N * C);
        be->matmul_fwd(X, x_out, a->h, w->w_down, NULL, N, H, C, 1);
    }
}

/* Shifts labels (transformers convention) into per-position targets, checks
   ids, uploads; returns the number of counted positions over all M
   micro-batches, or -1. */
static int64_t lomo__prepare(lomo_trainer *t, const int32_t *tokens, const int32_t *labels, int M) {
    const lomo_backend *be = t->m->be;
    int V = t->m->cfg.vocab_size, b, i, n = t->N * M;
    int64_t count = 0;
    if (!labels) labels = tokens;
    for (i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= V)
            return lomo__fail("tokens[%d] = %d is outside the vocabulary [0, %d)", i, tokens[i], V);
        if (labels[i] != -100 && (labels[i] < 0 || labels[i] >= V))
            return lomo__fail("labels[%d] = %d is neither -100 nor inside the vocabulary [0, %d)", i, labels[i], V);
    }
    for (b = 0; b < t->B * M; b++)
        for (i = 0; i < t->T; i++) {
            int32_t y = i + 1 < t->T ? labels[b * t->T + i + 1] : -100;
            t->tgt_host[b * t->T + i] = y;
            count += y >= 0;
        }
    be->upload(be->ctx, t->tok, tokens, sizeof(int32_t) * (size_t)n);
    be->upload(be->ctx, t->tgt, t->tgt_host, sizeof(int32_t) * (size_t)n);
    if (t->scratch && be->set_scratch) be->set_scratch(be->ctx, t->scratch, t->scratch_bytes);
    return count;
}

static float *lomo__xs(lomo_trainer *t, int m, int l) {
    return t->xs + ((size_t)m * (t->m->cfg.n_layers + 1) + l) * t->N * t->m->cfg.dim;
}

/* final norm, logits, cross-entropy of micro-batch m (dlogits into the logits
   buffer when dscale != 0); returns the sum of its token losses */
static double lomo__head_fwd(lomo_trainer *t, int m, float dscale, int with_grad) {
    lomo_model *md = t->m;
    const lomo_config *c = &md->cfg;
    const lomo_backend *be = md->be;
    double sum = 0.0;
    int i;
    be->rmsnorm_fwd(be->ctx, t->lnf, t->rstdf, lomo__xs(t, m, c->n_layers), lomo__need(t, LOMO__HEAD, md->final_norm),
                    t->N, c->dim, c->norm_eps);
    be->matmul_fwd(be->ctx, t->logits, t->lnf, lomo__need(t, LOMO__HEAD, md->lm_head), NULL, t->N, c->dim, c->vocab_size, 0);
    be->cross_entropy(be->ctx, t->losses, with_grad ? t->logits : NULL, t->logits, t->tgt + (size_t)m * t->N, t->N,
                      c->vocab_size, dscale);
    be->download(be->ctx, t->loss_host, t->losses, sizeof(float) * t->N);
    for (i = 0; i < t->N; i++) sum += t->loss_host[i];
    return sum;
}

/* Whole forward over the M micro-batches. With M == 1 and with_grad, dlogits
   stay in the logits buffer for the backward; with M > 1 the head is
   recomputed per micro-batch inside the backward. */
static int lomo__forward(lomo_trainer *t, int64_t count, int with_grad, float *loss, int M) {
    lomo_model *md = t->m;
    const lomo_config *c = &md->cfg;
    const lomo_backend *be = md->be;
    double sum = 0.0;
    int l, m;
    float dscale = count ? t->scale / (float)count : 0.0f;
    t->gstage = LOMO__NONE;   /* weights may have changed since the last gather */
    for (m = 0; m < M; m++) {
        be->embed_fwd(be->ctx, lomo__xs(t, m, 0), t->tok + (size_t)m * t->N, lomo__need(t, LOMO__EMBED, md->embed),
                      t->N, c->dim);
        for (l = 0; l < c->n_layers; l++)
            lomo__layer_fwd(t, l, lomo__xs(t, m, l), &t->acts[t->o.checkpointing ? 0 : l], lomo__xs(t, m, l + 1));
        sum += lomo__head_fwd(t, m, dscale, with_grad && M == 1);
    }
    if (be->check(be->ctx)) return -1;
    if (t->comm && t->comm->all_reduce_sum(t->comm->ctx, &sum, 1, 1)) return -1;   /* every rank's tokens */
    if (t->failed) return lomo__fail("sharded forward: a collective failed: %s", lomo_error());
    *loss = count ? (float)(sum / (double)count) : 0.0f;
    return 0;
}

/* the built-in rules through the backend's update op */
static void lomo__builtin_args(lomo_update_args *a, const lomo_update_ctx *ctx, int rule) {
    memset(a, 0, sizeof *a);
    a->rule = rule; a->lr = ctx->lr; a->inv_loss_scale = ctx->inv_loss_scale; a->clip_value = ctx->clip_value;
    a->clip_coef = ctx->clip_coef; a->weight_decay = ctx->weight_decay; a->step = ctx->step;
    a->stochastic = ctx->stochastic_rounding; a->seed = ctx->seed;
    a->stream = (uint64_t)ctx->step * 0x100000001B3ull + (uint64_t)ctx->tensor_index;
    a->param_sumsq = -1.0;
}

static int lomo__builtin_update(lomo_trainer *t, lomo_tensor *p, const float *g) {
    lomo_update_args a;
    lomo__builtin_args(&a, &t->uctx, t->o.optimizer);
    a.eps1 = t->o.adalomo_eps1; a.eps2 = t->o.adalomo_eps2; a.clip_threshold = t->o.adalomo_clip_threshold;
    a.decay_rate = t->o.adalomo_decay_rate;
    a.beta1 = t->o.adamw_beta1; a.beta2 = t->o.adamw_beta2; a.eps = t->o.adamw_eps;
    a.shard_off = p->shard_off;
    t->m->be->update(t->m->be->ctx, p, g, t->s1[p->index], t->s2[p->index], &a);
    return 0;
}

/* A tensor's gradient g is complete: measure it (norm pass) or hand it to
   the update rule (update pass). */
static int lomo__grad_ready_sharded(lomo_trainer *t, lomo_tensor *p, float *g);

static int lomo__grad_ready(lomo_trainer *t, lomo_tensor *p, const float *g) {
    const lomo_backend *be = t->m->be;
    int rc;
    if (t->comm) return lomo__grad_ready_sharded(t, p, (float *)g);
    if (t->pass == LOMO__PASS_NORM) {
        t->sumsq += be->sumsq(be->ctx, g, (size_t)p->numel);
        return 0;
    }
    if (be->check(be->ctx)) return -1;
    t->uctx.tensor_index = p->index;
    if (t->o.clip_norm > 0.0f && t->o.clip_mode == LOMO_CLIP_TENSOR) {   /* grouped: this tensor's own norm */
        float norm = (float)sqrt(be->sumsq(be->ctx, g, (size_t)p->numel)) * t->uctx.inv_loss_scale;
        float coef = t->o.clip_norm / (norm + 1e-6f);
        t->uctx.clip_coef = coef < 1.0f ? coef : 1.0f;
        t->uctx.grad_scale = t->uctx.clip_coef * t->uctx.inv_loss_scale;
    }
    rc = t->o.update ? t->o.update(p, g, &t->uctx, t->o.update_user) : lomo__builtin_update(t, p, g);
    if (rc) {
        if (!lomo_error()[0]) lomo__fail("update hook failed on %s", p->name);
        return -1;
    }
    return 0;
}

/* Sharded: g holds this rank's whole-tensor gradient (its own micro-batches).
   It is summed over the ranks and the rule runs on this rank's shard only:
   reduce-scatter for elementwise rules, all-reduce for AdaLomo, whose row,
   column and RMS statistics cover the whole tensor (as lomo-optim's ZeRO-3
   path computes them). The norm pass sums the squares of the shards; the
   caller all-reduces the total. */
static int lomo__grad_ready_sharded(lomo_trainer *t, lomo_tensor *p, float *g) {
    const lomo_comm *c = t->comm;
    p = &t->m->tensors[p->index];   /* the rank's shard, not the gathered view the kernels used */
    const lomo_backend *be = t->m->be;
    size_t cap = (size_t)lomo__shard_cap(t->m, p), n = (size_t)p->numel;
    int ada = t->pass == LOMO__PASS_UPDATE && !t->o.update && t->o.optimizer == LOMO_OPT_ADALOMO, rc;
    lomo_tensor v = *p;
    const float *gv;
    if (cap * (size_t)c->size > n) be->zero(be->ctx, g + n, sizeof(float) * (cap * (size_t)c->size - n));
    if (ada) { if (c->all_reduce_sum(c->ctx, g, n, 0)) { t->failed = 1; return -1; } }
    else if (c->reduce_scatter_sum(c->ctx, t->gshard, g, cap)) { t->failed = 1; return -1; }
    if (t->pass == LOMO__PASS_NORM) {
        t->sumsq += be->sumsq(be->ctx, t->gshard, (size_t)p->shard_len);
        return 0;
    }
    if (be->check(be->ctx)) return -1;
    t->uctx.tensor_index = p->index;
    if (t->o.clip_norm > 0.0f && t->o.clip_mode == LOMO_CLIP_TENSOR) {   /* this tensor's whole norm */
        double sq = be->sumsq(be->ctx, ada ? g : t->gshard, ada ? n : (size_t)p->shard_len);
        float norm, coef;
        if (!ada && c->all_reduce_sum(c->ctx, &sq, 1, 1)) { t->failed = 1; return -1; }
        norm = (float)sqrt(sq) * t->uctx.inv_loss_scale;
        coef = t->o.clip_norm / (norm + 1e-6f);
        t->uctx.clip_coef = coef < 1.0f ? coef : 1.0f;
        t->uctx.grad_scale = t->uctx.clip_coef * t->uctx.inv_loss_scale;
    }
    if (ada) {   /* the shard of a whole-shaped tensor, the whole gradient and state */
        lomo_update_args a;
        lomo_tensor flat = *p;
        double psq;
        flat.numel = flat.shard_len; flat.ndim = 1; flat.shape[0] = flat.numel; flat.shape[1] = 0;
        psq = be->param_sumsq(be->ctx, &flat);
        if (c->all_reduce_sum(c->ctx, &psq, 1, 1)) { t->failed = 1; return -1; }
        lomo__builtin_args(&a, &t->uctx, LOMO_OPT_ADALOMO);
        a.eps1 = t->o.adalomo_eps1; a.eps2 = t->o.adalomo_eps2; a.clip_threshold = t->o.adalomo_clip_threshold;
        a.decay_rate = t->o.adalomo_decay_rate; a.shard_off = p->shard_off; a.param_sumsq = psq;
        be->update(be->ctx, p, g, t->s1[p->index], t->s2[p->index], &a);
        return 0;
    }
    /* elementwise rules and user hooks see the shard as a flat tensor */
    v.numel = v.shard_len; v.ndim = 1; v.shape[0] = v.numel; v.shape[1] = 0;
    gv = t->gshard;
    rc = t->o.update ? t->o.update(&v, gv, &t->uctx, t->o.update_user) : lomo__builtin_update(t, &v, gv);
    if (rc) {
        if (!lomo_error()[0]) lomo__fail("update hook failed on %s", p->name);
        return -1;
    }
    return 0;
}

/* Where a tensor's gradient goes: the one buffer (M == 1), or its slot in
   the stage's buffer (M > 1, accumulated over micro-batches). Vector
   gradients of micro-batches after the first go through vtmp, then add. */
static float *lomo__gdst(lomo_trainer *t, const lomo_tensor *p) { return t->M == 1 ? t->grad : t->grad + t->slot[p->index]; }
static float *lomo__vdst(lomo_trainer *t, const lomo_tensor *p, int m) { return t->M > 1 && m > 0 ? t->vtmp : lomo__gdst(t, p); }
static int lomo__vdone(lomo_trainer *t, lomo_tensor *p, int m) {
    if (t->M == 1) return lomo__grad_ready(t, p, t->grad);
    if (m > 0) t->m->be->add(t->m->be->ctx, lomo__gdst(t, p), t->vtmp, (size_t)p->numel);
    return 0;
}

/* dW of a linear layer (and its bias), for micro-batch m. In the norm pass
   with LOMO_CLIP_GLOBAL_GRAM, ||dW||^2 comes from Gram matrices where that
   is cheaper than forming dW (N (O+K) < O K). */
static int lomo__linear_grads(lomo_trainer *t, lomo_tensor *w, lomo_tensor *b, const float *dy,
                              const float *x, int K, int O, int m) {
    const lomo_backend *be = t->m->be;
    int N = t->N;
    if (t->pass == LOMO__PASS_NORM && t->o.clip_mode == LOMO_CLIP_GLOBAL_GRAM && t->M == 1 && !t->comm && be->wgrad_sqnorm &&
        (double)N * (O + K) < (double)O * K) {
        t->sumsq += be->wgrad_sqnorm(be->ctx, dy, x, N, K, O);
    } else {
        be->matmul_bwd_w(be->ctx, lomo__gdst(t, w), dy, x, N, K, O, t->M > 1 && m > 0);
        if (t->M == 1 && lomo__grad_ready(t, w, t->grad)) return -1;
    }
    if (b) {
        be->bias_bwd(be->ctx, lomo__vdst(t, b, m), dy, N, O);
        if (lomo__vdone(t, b, m)) return -1;
    }
    return 0;
}

/* Layer l backward for micro-batch m. On entry dx holds dL/d(x_out); on exit
   dL/d(x_in). Every dX is computed before its weight is handed to the hook,
   so it always uses the old weights. */
static int lomo__layer_bwd(lomo_trainer *t, int l, int m) {
    lomo_model *md = t->m;
    const lomo_config *c = &md->cfg;
    const lomo_backend *be = md->be;
    const lomo_layer *w = lomo__layer_weights(t, l);
    void *X = be->ctx;
    int N = t->N, C = c->dim, H = c->hidden_dim, hd = c->head_dim;
    int qd = c->n_heads * hd, kvd = c->n_kv_heads * hd;
    float *dx = t->dx + (size_t)m * N * C;
    lomo__acts *a = &t->acts[t->o.checkpointing ? 0 : l];
    if (t->o.checkpointing) lomo__layer_fwd(t, l, lomo__xs(t, m, l), a, NULL);
    /* MLP: x_out = xmid + (silu(ln2 Wg^T) * ln2 Wu^T) Wd^T */
    be->matmul_bwd_x(X, t->dg, dx, w->w_down, N, H, C, 0);                 /* dh, in dg */
    if (lomo__linear_grads(t, w->w_down, NULL, dx, a->h, H, C, m)) return -1;
    be->swiglu_bwd(X, t->dg, t->du, t->dg, a->g, a->u, (size_t)N * H);
    be->matmul_bwd_x(X, t->dln, t->du, w->w_up, N, C, H, 0);
    if (lomo__linear_grads(t, w->w_up, NULL, t->du, a->ln2, C, H, m)) return -1;
    be->matmul_bwd_x(X, t->dln, t->dg, w->w_gate, N, C, H, 1);
    if (lomo__linear_grads(t, w->w_gate, NULL, t->dg, a->ln2, C, H, m)) return -1;
    be->rmsnorm_bwd(X, dx, lomo__vdst(t, w->mlp_norm, m), t->dln, a->xmid, w->mlp_norm, a->rstd2, N, C);
    if (lomo__vdone(t, w->mlp_norm, m)) return -1;
    /* attention: xmid = x_in + attn(rope(ln1 Wq^T), rope(ln1 Wk^T), ln1 Wv^T) Wo^T */
    be->matmul_bwd_x(X, t->datt, dx, w->wo, N, qd, C, 0);
    if (lomo__linear_grads(t, w->wo, w->bo, dx, a->att, qd, C, m)) return -1;
    be->attn_bwd(X, t->dq, t->dk, t->dv, t->datt, a->q, a->k, a->v, a->att, a->lse,
                 t->B, t->T, c->n_heads, c->n_kv_heads, hd);
    be->rope(X, t->dq, t->inv_freq, t->B, t->T, c->n_heads, hd, 1);
    be->rope(X, t->dk, t->inv_freq, t->B, t->T, c->n_kv_heads, hd, 1);
    be->matmul_bwd_x(X, t->dln, t->dv, w->wv, N, C, kvd, 0);
    if (lomo__linear_grads(t, w->wv, w->bv, t->dv, a->ln1, C, kvd, m)) return -1;
    be->matmul_bwd_x(X, t->dln, t->dk, w->wk, N, C, kvd, 1);
    if (lomo__linear_grads(t, w->wk, w->bk, t->dk, a->ln1, C, kvd, m)) return -1;
    be->matmul_bwd_x(X, t->dln, t->dq, w->wq, N, C, qd, 1);
    if (lomo__linear_grads(t, w->wq, w->bq, t->dq, a->ln1, C, qd, m)) return -1;
    be->rmsnorm_bwd(X, dx, lomo__vdst(t, w->attn_norm, m), t->dln, lomo__xs(t, m, l), w->attn_norm, a->rstd1, N, C);
    if (lomo__vdone(t, w->attn_norm, m)) return -1;
    return be->check(X);
}

/* after all micro-batches of a stage: each tensor's summed gradient to the rule */
static int lomo__stage_ready(lomo_trainer *t, int stage) {
    lomo_tensor *st[16];
    int n = lomo__stage_tensors(t->m, stage, st), k;
    for (k = 0; k < n; k++)
        if (lomo__grad_ready(t, st[k], lomo__gdst(t, st[k]))) return -1;
    return 0;
}

/* One backward pass from the loss down: lm_head, final norm, layers L-1..0,
   embedding; with M > 1 each stage runs every micro-batch before its tensors
   are handed on. With M == 1 dlogits stay in the logits buffer for the whole
   pass, so a tied embedding's gradient is formed once, at the end, as the
   sum of both uses; with M > 1 the head is recomputed there instead. */
static int lomo__backward(lomo_trainer *t) {
    lomo_model *md = t->m;
    const lomo_config *c = &md->cfg;
    const lomo_backend *be = md->be;
    void *X = be->ctx;
    int l, m, M = t->M, N = t->N, C = c->dim, V = c->vocab_size;
    float dscale = t->count ? t->scale / (float)t->count : 0.0f;
    t->gstage = LOMO__NONE;
    for (m = 0; m < M; m++) {
        float *dx = t->dx + (size_t)m * N * C;
        if (M > 1) lomo__head_fwd(t, m, dscale, 1);
        be->matmul_bwd_x(X, t->dln, t->logits, lomo__need(t, LOMO__HEAD, md->lm_head), N, C, V, 0);
        if (!c->tie_embeddings && lomo__linear_grads(t, md->lm_head, NULL, t->logits, t->lnf, C, V, m)) return -1;
        be->zero(X, dx, sizeof(float) * (size_t)N * C);
        be->rmsnorm_bwd(X, dx, lomo__vdst(t, md->final_norm, m), t->dln, lomo__xs(t, m, c->n_layers),
                        lomo__need(t, LOMO__HEAD, md->final_norm), t->rstdf, N, C);
        if (lomo__vdone(t, md->final_norm, m)) return -1;
    }
    /* Tied with M > 1: the embedding's lm_head part is recomputed at the end
       through the final norm, which must still hold its old weights then, so
       its (complete) gradient waits in its own slot and is applied last. */
    if (M > 1 && !c->tie_embeddings && lomo__stage_ready(t, -1)) return -1;
    for (l = c->n_layers - 1; l >= 0; l--) {
        for (m = 0; m < M; m++)
            if (lomo__layer_bwd(t, l, m)) return -1;
        if (M > 1 && lomo__stage_ready(t, l)) return -1;
    }
    be->zero(X, t->grad, sizeof(float) * (size_t)md->embed->numel);
    for (m = 0; m < M; m++) {
        if (c->tie_embeddings) {
            if (M > 1) lomo__head_fwd(t, m, dscale, 1);
            be->matmul_bwd_w(X, t->grad, t->logits, t->lnf, N, C, V, 1);
        }
        be->embed_bwd(X, t->grad, t->dx + (size_t)m * N * C, t->tok + (size_t)m * N, N, C);
    }
    if (lomo__grad_ready(t, md->embed, t->grad)) return -1;
    if (M > 1 && c->tie_embeddings && lomo__grad_ready(t, md->final_norm, lomo__gdst(t, md->final_norm))) return -1;
    if (t->failed) return lomo__fail("sharded backward: a collective failed: %s", lomo_error());
    return be->check(X);
}

/* sharded: the counted tokens of every rank (the loss is their mean) */
static int lomo__global_count(lomo_trainer *t, int64_t *count) {
    double c = (double)*count;
    if (!t->comm) return 0;
    if (t->comm->all_reduce_sum(t->comm->ctx, &c, 1, 1)) return -1;
    *count = (int64_t)c;
    return 0;
}

LOMODEF int lomo_forward(lomo_trainer *t, const int32_t *tokens, const int32_t *labels, lomo_step_info *info) {
    int64_t count = lomo__prepare(t, tokens, labels, 1);
    float loss = 0.0f, keep = t->scale;
    if (count >= 0 && lomo__global_count(t, &count)) return -1;
    t->failed = 0;
    t->scale = 1.0f;
    if (count < 0 || lomo__forward(t, count, 0, &loss, 1)) { t->scale = keep; return -1; }
    t->scale = keep;
    if (info) {
        memset(info, 0, sizeof *info);
        info->loss = loss; info->n_tokens = count; info->grad_norm = -1.0f; info->clip_coef = 1.0f;
        info->loss_scale = 1.0f;
    }
    return 0;
}

LOMODEF int lomo_step(lomo_trainer *t, const int32_t *tokens, const int32_t *labels, float lr,
                      lomo_step_info *info) {
    lomo_step_info si;
    int64_t count = lomo__prepare(t, tokens, labels, t->M);
    int global = t->o.clip_norm > 0.0f && t->o.clip_mode != LOMO_CLIP_TENSOR;
    memset(&si, 0, sizeof si);
    si.grad_norm = -1.0f; si.clip_coef = 1.0f; si.loss_scale = t->scale;
    if (count >= 0 && lomo__global_count(t, &count)) return -1;
    t->count = count;
    t->failed = 0;
    if (count < 0 || lomo__forward(t, count, 1, &si.loss, t->M)) return -1;
    si.n_tokens = count;
    memset(&t->uctx, 0, sizeof t->uctx);
    t->uctx.step = t->step + 1;
    t->uctx.lr = lr;
    t->uctx.inv_loss_scale = 1.0f / t->scale;
    t->uctx.clip_value = t->o.clip_value;
    t->uctx.weight_decay = t->o.weight_decay;
    t->uctx.n_tensors = t->m->n_tensors;
    t->uctx.backend = t->m->be;
    t->uctx.stream = t->m->be->stream;
    t->uctx.grad_norm = -1.0f;
    t->uctx.clip_coef = 1.0f;
    t->uctx.stochastic_rounding = t->o.stochastic_rounding;
    t->uctx.seed = t->o.seed;
    if (!isfinite(si.loss) || count == 0) si.skipped = 1;   /* nothing to learn from, or overflow */
    if (!si.skipped && (global || t->scaling)) {
        /* pass one: gradients measured (norm, overflow), nothing updated */
        t->pass = LOMO__PASS_NORM;
        t->sumsq = 0.0;
        if (lomo__backward(t)) return -1;
        if (t->comm && t->comm->all_reduce_sum(t->comm->ctx, &t->sumsq, 1, 1)) return -1;
        si.grad_norm = (float)(sqrt(t->sumsq) / t->scale);
        if (!isfinite(si.grad_norm)) si.skipped = 1;
        else if (global) {
            float coef = t->o.clip_norm / (si.grad_norm + 1e-6f);
            si.clip_coef = coef < 1.0f ? coef : 1.0f;
        }
        t->uctx.grad_norm = si.grad_norm;
        t->uctx.clip_coef = si.clip_coef;
    }
    if (!si.skipped) {
        t->uctx.grad_scale = t->uctx.clip_coef * t->uctx.inv_loss_scale;
        t->pass = LOMO__PASS_UPDATE;
        if (lomo__backward(t)) return -1;
        t->step++;
    }
    if (t->scaling) {   /* dynamic loss scale: back off on overflow, grow after a window of clean steps */
        if (si.skipped && count > 0) {
            t->scale = t->scale * t->o.loss_scale_backoff;
            if (t->scale < t->o.loss_scale_min) t->scale = t->o.loss_scale_min;
            t->clean_steps = 0;
        } else if (!si.skipped && ++t->clean_steps >= t->o.loss_scale_window) {
            t->scale *= t->o.loss_scale_growth;
            t->clean_steps = 0;
        }
    }
    if (info) *info = si;
    return 0;
}

LOMODEF int lomo_update_lomo(lomo_tensor *p, const float *grad, const lomo_update_ctx *ctx, void *user) {
    lomo_update_args a;
    (void)user;
    lomo__builtin_args(&a, ctx, LOMO_OPT_LOMO);
    a.shard_off = p->shard_off;
    ctx->backend->update(ctx->backend->ctx, p, grad, NULL, NULL, &a);
    return 0;
}

/* trainer.safetensors: the rule's state per tensor + the scalars in metadata.
   Sharded, AdamW's per-element state is gathered (every rank takes part, the
   writer writes), so a checkpoint does not depend on the number of ranks. */
static int lomo__trainer_write(const lomo_trainer *t, const char *path, int writer) {
    const lomo_model *m = t->m;
    int n = 0, i, k, rc = 0, sharded = t->comm && t->o.optimizer == LOMO_OPT_ADAMW;
    lomo__st_out *outs = (lomo__st_out *)calloc((size_t)m->n_tensors * 2 + 1, sizeof *outs);
    char (*names)[112] = (char (*)[112])calloc((size_t)m->n_tensors * 2 + 1, 112);
    float **host = (float **)calloc((size_t)m->n_tensors * 2 + 1, sizeof(float *));
    char step[32], scale[32], clean[32], opt[8], seed[32];
    const char *meta[] = {"format", "lomo-trainer", "step", step, "loss_scale", scale, "clean_steps", clean,
                          "optimizer", opt, "seed", seed, NULL};
    if (!outs || !names || !host) { rc = lomo__fail("out of host memory"); goto done; }
    for (i = 0; i < m->n_tensors && !rc; i++) {
        const lomo_tensor *p = &m->tensors[i];
        for (k = 0; k < 2; k++) {
            float *s = k ? t->s2[i] : t->s1[i];
            int64_t len;
            size_t cap;
            if (!s) continue;
            len = t->o.optimizer == LOMO_OPT_ADAMW ? p->numel : p->ndim == 2 ? p->shape[k] : p->numel;
            cap = sharded ? (size_t)lomo__shard_cap(m, p) : (size_t)len;
            if (!(host[n] = (float *)malloc(sizeof(float) * cap * (sharded ? (size_t)t->comm->size : 1) + 4))) {
                rc = lomo__fail("out of host memory"); break;
            }
            if (sharded) {   /* the shards, through a backend buffer, in rank order */
                lomo_model *mm = (lomo_model *)m;
                float *full = (float *)lomo__alloc(mm, LOMO_MEM_COMM, sizeof(float) * cap * (size_t)t->comm->size);
                if (!full || t->comm->all_gather(t->comm->ctx, full, s, sizeof(float) * cap)) { rc = -1; break; }
                m->be->download(m->be->ctx, host[n], full, sizeof(float) * (size_t)len);
                lomo__free(mm, LOMO_MEM_COMM, full, sizeof(float) * cap * (size_t)t->comm->size);
            } else m->be->download(m->be->ctx, host[n], s, sizeof(float) * (size_t)len);
            snprintf(names[n], 112, "%s.%s", k ? "s2" : "s1", p->name);
            outs[n].name = names[n]; outs[n].dtype = LOMO__ST_F32; outs[n].ndim = 1; outs[n].shape[0] = len;
            outs[n].data = host[n];
            n++;
        }
    }
    snprintf(step, sizeof step, "%lld", (long long)t->step);
    snprintf(scale, sizeof scale, "%.9g", t->scale);
    snprintf(clean, sizeof clean, "%d", t->clean_steps);
    snprintf(opt, sizeof opt, "%d", t->o.optimizer);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)t->o.seed);
    if (!rc && writer) rc = lomo__st_save(path, outs, n, meta);
done:
    for (i = 0; host && i < n; i++) free(host[i]);
    free(host); free(outs); free(names);
    return rc;
}

LOMODEF int lomo_trainer_resume(lomo_trainer *t, const char *dir) {
    char path[1100], buf[64];
    lomo__st_file f;
    lomo__json j;
    int i, k, meta;
    lomo_model *m = t->m;
    float *host = NULL;
    if (lomo__path_join(path, sizeof path, dir, "trainer.safetensors") || lomo__st_open(&f, path)) return -1;
    /* the scalars live in the header's __metadata__ */
    {
        uint64_t hl;
        memcpy(&hl, f.map, 8);
        if (lomo__json_parse(&j, (const char *)f.map + 8, (size_t)hl, path)) { lomo__st_close(&f); return -1; }
    }
    meta = lomo__json_get(&j, 0, "__metadata__");
#define LOMO__META(key) (lomo__json_str(&j, lomo__json_get(&j, meta, key), buf, sizeof buf) >= 0)
    if (!LOMO__META("optimizer") || atoi(buf) != t->o.optimizer) {
        lomo__fail("%s: trainer state is for optimizer %s, this trainer runs %d", path,
                   LOMO__META("optimizer") ? buf : "?", t->o.optimizer);
        goto fail;
    }
    if (LOMO__META("step")) t->step = strtoll(buf, NULL, 10);
    if (LOMO__META("loss_scale")) t->scale = (float)strtod(buf, NULL);
    if (LOMO__META("clean_steps")) t->clean_steps = atoi(buf);
#undef LOMO__META
    if (t->opt_floats) {
        if (!(host = (float *)malloc(sizeof(float) * t->opt_floats))) { lomo__fail("out of host memory"); goto fail; }
        for (i = 0; i < m->n_tensors; i++)
            for (k = 0; k < 2; k++) {
                char name[112];
                float *s = k ? t->s2[i] : t->s1[i];
                const lomo__st_tensor *st;
                const lomo_tensor *p = &m->tensors[i];
                int64_t len;
                if (!s) continue;
                len = t->o.optimizer == LOMO_OPT_ADAMW ? p->numel : p->ndim == 2 ? p->shape[k] : p->numel;
                snprintf(name, sizeof name, "%s.%s", k ? "s2" : "s1", p->name);
                if (!(st = lomo__st_find(&f, name)) || st->numel != len || st->dtype != LOMO__ST_F32) {
                    lomo__fail("%s: optimizer state '%s' missing or not F32[%lld]", path, name, (long long)len);
                    goto fail;
                }
                if (t->comm && t->o.optimizer == LOMO_OPT_ADAMW)   /* this rank's elements, zero padding */
                    for (int64_t e = 0; e < lomo__shard_cap(m, p); e++)
                        host[(s - t->opt_mem) + e] = e < p->shard_len ? ((const float *)st->data)[p->shard_off + e] : 0.0f;
                else memcpy(host + (s - t->opt_mem), st->data, sizeof(float) * (size_t)len);
            }
        m->be->upload(m->be->ctx, t->opt_mem, host, sizeof(float) * t->opt_floats);
    }
    free(host);
    lomo__json_free(&j);
    lomo__st_close(&f);
    return 0;
fail:
    free(host);
    lomo__json_free(&j);
    lomo__st_close(&f);
    return -1;
}

/* The doc block's formula: see "Memory" at the top of this file. */
LOMODEF size_t lomo_memory_formula(const lomo_config *c, const lomo_train_opts *o, size_t per_tag[LOMO_MEM_NTAGS]) {
    size_t N = (size_t)o->batch * o->seq_len, C = c->dim, H = c->hidden_dim, L = c->n_layers,
           V = c->vocab_size, qd = (size_t)c->n_heads * c->head_dim,
           kvd = (size_t)c->n_kv_heads * c->head_dim, M = o->micro_batches > 1 ? (size_t)o->micro_batches : 1;
    size_t layer_p = 2 * C + C * (2 * qd + 2 * kvd) + 3 * C * H;
    size_t P = V * C * (c->tie_embeddings ? 1 : 2) + C + L * layer_p;
    size_t layer = 3 * C + 2 * qd + 2 * kvd + 3 * H;       /* one layer's working set per token */
    size_t biggest = V * C > H * C ? V * C : H * C;       /* the largest single tensor */
    size_t S = (o->checkpointing || M > 1) ? 1 : L, bytes = c->dtype == LOMO_F32 ? 4 : 2;
    size_t t[LOMO_MEM_NTAGS] = {0}, total = 0;
    int i;
    if (qd * C > biggest) biggest = qd * C;
    if (M > 1 && layer_p > biggest) biggest = layer_p;   /* one layer's gradients at once */
    t[LOMO_MEM_PARAMS] = bytes * P;
    t[LOMO_MEM_ACTIVATIONS] = 4 * N * (M * (L + 1) * C + S * layer + C + V);
    t[LOMO_MEM_GRADIENTS] = 4 * biggest;
    t[LOMO_MEM_WORKSPACE] = 4 * N * (M * C + C + 2 * qd + 2 * kvd + 2 * H);
    if (bytes == 2) t[LOMO_MEM_WORKSPACE] += 4 * biggest;   /* CPU: 16-bit weights widened for BLAS */
    if (!o->update && o->optimizer == LOMO_OPT_ADAMW) t[LOMO_MEM_OPTIMIZER] = 8 * P;
    if (!o->update && o->optimizer == LOMO_OPT_ADALOMO)   /* rows + cols per matrix, numel per vector */
        t[LOMO_MEM_OPTIMIZER] = 4 * ((V + C) * (c->tie_embeddings ? 1 : 2) + C +
                                     L * (2 * C + (qd + C) * 2 + (kvd + C) * 2 + 3 * (H + C) +
                                          (c->qkv_bias ? qd + 2 * kvd : 0) + (c->o_bias ? C : 0)));
    for (i = 0; i < LOMO_MEM_NTAGS; i++) { if (per_tag) per_tag[i] = t[i]; total += t[i]; }
    return total;
}

/* ======================================================================== */
/* generation: KV cache, sampling (LOMO_NO_GENERATE)                        */
/* ======================================================================== */
#ifndef LOMO_NO_GENERATE

/* A KV cache and what one forward of up to `chunk` new tokens needs. t is a
   forward context for lomo__layer_fwd (B = 1, T = N = the tokens of this
   call, t.kv = this cache); it is not a trainer and owns nothing. Every
   buffer is one allocation tagged LOMO_MEM_KV. */
struct lomo_kv {
    lomo_model *m;
    lomo_trainer t;
    int cap, chunk, n;          /* positions the cache holds, tokens per forward, positions filled */
    size_t kvd;                 /* n_kv_heads * head_dim */
    float *mem; size_t bytes;
    float *k, *v;               /* (L, cap, kvd) each */
    float *x, *x2;              /* (chunk, C): a layer's input and output */
    float *acts;                /* one lomo__acts working set for chunk tokens */
    float *lnf, *rstdf;         /* (chunk, C), (chunk) */
    float *logits;              /* (chunk, V) */
    float *inv_freq;            /* head_dim / 2 */
    int32_t *tok;               /* chunk ids, backend memory */
    void *scratch; size_t scratch_bytes;
};

static void lomo__kv_attn(lomo_trainer *t, int l, lomo__acts *a) {
    lomo_kv *kv = t->kv;
    const lomo_config *c = &t->m->cfg;
    const lomo_backend *be = t->m->be;
    int n = t->N, pos0 = kv->n, hd = c->head_dim;
    float *kc = kv->k + (size_t)l * kv->cap * kv->kvd, *vc = kv->v + (size_t)l * kv->cap * kv->kvd;
    be->rope_at(be->ctx, a->q, t->inv_freq, n, c->n_heads, hd, pos0);
    be->rope_at(be->ctx, a->k, t->inv_freq, n, c->n_kv_heads, hd, pos0);
    be->copy(be->ctx, kc + (size_t)pos0 * kv->kvd, a->k, sizeof(float) * (size_t)n * kv->kvd);
    be->copy(be->ctx, vc + (size_t)pos0 * kv->kvd, a->v, sizeof(float) * (size_t)n * kv->kvd);
    be->attn_kv(be->ctx, a->att, a->q, kc, vc, n, pos0, c->n_heads, c->n_kv_heads, hd, c->sliding_window);
}

LOMODEF void lomo_kv_free(lomo_kv *kv) {
    if (!kv) return;
    if (kv->scratch && kv->m->be->set_scratch) kv->m->be->set_scratch(kv->m->be->ctx, NULL, 0);
    lomo__free(kv->m, LOMO_MEM_KV, kv->scratch, kv->scratch_bytes);
    lomo__free(kv->m, LOMO_MEM_KV, kv->mem, kv->bytes);
    LOMO_FREE(kv);
}

LOMODEF lomo_kv *lomo_kv_new(lomo_model *m, int max_tokens, int max_chunk) {
    const lomo_config *c;
    lomo_kv *kv;
    uint64_t C, V, L, kvd, cap, ch, floats, acts, ints;
    float *p, *f;
    if (!m) { lomo__fail("generate: no model"); return NULL; }
    c = &m->cfg;
    if (m->comm) { lomo__fail("generate: the model is sharded over %d ranks; generation needs whole tensors "
                              "(load it without lomo_load_opts.comm)", m->comm->size); return NULL; }
    if (!m->be->rope_at || !m->be->attn_kv) {
        lomo__fail("generate: backend '%s' has no generation ops (rope_at, attn_kv)", m->be->name); return NULL;
    }
    if (max_tokens <= 0 || max_chunk <= 0) {
        lomo__fail("generate: max_tokens (%d) and max_chunk (%d) must be positive", max_tokens, max_chunk); return NULL;
    }
    if (max_chunk > max_tokens) max_chunk = max_tokens;
    C = (uint64_t)c->dim; V = (uint64_t)c->vocab_size; L = (uint64_t)c->n_layers;
    kvd = (uint64_t)c->n_kv_heads * (uint64_t)c->head_dim; cap = (uint64_t)max_tokens; ch = (uint64_t)max_chunk;
    acts = (uint64_t)lomo__acts_floats(c, max_chunk);
    floats = 2 * L * cap * kvd + 2 * ch * C + acts + ch * (C + 1) + ch * V + (uint64_t)(c->head_dim / 2);
    ints = ch;
    /* every factor is < 2^31, so these products fit in 64 bits; refuse what does not fit in memory */
    if (floats > ((uint64_t)SIZE_MAX - 64 - 4 * ints) / 4) {
        lomo__fail("generate: a KV cache for %d tokens (%llu floats) does not fit in memory", max_tokens,
                   (unsigned long long)floats);
        return NULL;
    }
    kv = (lomo_kv *)LOMO_MALLOC(sizeof *kv);
    if (!kv) { lomo__fail("generate: out of host memory"); return NULL; }
    memset(kv, 0, sizeof *kv);
    kv->m = m; kv->cap = max_tokens; kv->chunk = max_chunk; kv->kvd = (size_t)kvd;
    kv->bytes = (size_t)(4 * floats + 4 * ints + 16);
    if (!(kv->mem = (float *)lomo__alloc(m, LOMO_MEM_KV, kv->bytes))) { LOMO_FREE(kv); return NULL; }
    p = kv->mem;
    kv->k = p; p += L * cap * kvd;
    kv->v = p; p += L * cap * kvd;
    kv->x = p; p += ch * C;
    kv->x2 = p; p += ch * C;
    kv->acts = p; p += acts;
    kv->lnf = p; p += ch * C;
    kv->rstdf = p; p += ch;
    kv->logits = p; p += ch * V;
    kv->inv_freq = p; p += c->head_dim / 2;
    kv->tok = (int32_t *)p;
    kv->scratch_bytes = m->be->scratch_bytes ? m->be->scratch_bytes(m->be->ctx, m, max_chunk, 0) : 0;
    if (kv->scratch_bytes && !(kv->scratch = lomo__alloc(m, LOMO_MEM_KV, kv->scratch_bytes))) {
        kv->scratch_bytes = 0; lomo_kv_free(kv); return NULL;
    }
    if (!(f = (float *)LOMO_MALLOC(sizeof(float) * (size_t)(c->head_dim / 2 + 1)))) {
        lomo__fail("generate: out of host memory"); lomo_kv_free(kv); return NULL;
    }
    lomo__rope_inv_freq(c, f);
    m->be->upload(m->be->ctx, kv->inv_freq, f, sizeof(float) * (size_t)(c->head_dim / 2));
    LOMO_FREE(f);
    kv->t.m = m; kv->t.B = 1; kv->t.M = 1; kv->t.inv_freq = kv->inv_freq; kv->t.kv = kv;
    kv->t.gstage = LOMO__NONE;
    return kv;
}

LOMODEF int lomo_kv_len(const lomo_kv *kv) { return kv ? kv->n : 0; }
LOMODEF size_t lomo_kv_bytes(const lomo_kv *kv) { return kv ? kv->bytes + kv->scratch_bytes : 0; }
LOMODEF int lomo_kv_truncate(lomo_kv *kv, int n) {
    if (!kv || n < 0 || n > kv->n) return lomo__fail("kv cache: truncate to %d, but it holds %d positions", n, kv ? kv->n : 0);
    kv->n = n;
    return 0;
}

LOMODEF int lomo_kv_eval(lomo_kv *kv, const int32_t *tokens, int n, float *logits, int all_logits) {
    lomo_model *m;
    const lomo_config *c;
    const lomo_backend *be;
    int i, done = 0;
    if (!kv || !tokens || n <= 0 || !logits) return lomo__fail("kv cache: eval needs tokens (n = %d > 0) and a logits buffer", n);
    m = kv->m; c = &m->cfg; be = m->be;
    if (n > kv->cap - kv->n)
        return lomo__fail("kv cache: %d new tokens after %d would pass its capacity of %d positions", n, kv->n, kv->cap);
    for (i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return lomo__fail("generate: token %d = %d is outside the vocabulary [0, %d)", i, tokens[i], c->vocab_size);
    while (done < n) {
        int nn = n - done < kv->chunk ? n - done : kv->chunk, l, last = done + nn == n;
        lomo__acts a;
        float *x = kv->x, *x2 = kv->x2, *tmp;
        if (kv->scratch && be->set_scratch) be->set_scratch(be->ctx, kv->scratch, kv->scratch_bytes);
        be->upload(be->ctx, kv->tok, tokens + done, sizeof(int32_t) * (size_t)nn);
        be->embed_fwd(be->ctx, x, kv->tok, m->embed, nn, c->dim);
        kv->t.T = kv->t.N = nn;
        lomo__acts_carve(&a, kv->acts, c, nn);
        for (l = 0; l < c->n_layers; l++) {
            lomo__layer_fwd(&kv->t, l, x, &a, x2);
            tmp = x; x = x2; x2 = tmp;
        }
        if (all_logits || last) {   /* the head: every row, or only the last one */
            int r0 = all_logits ? 0 : nn - 1, rows = nn - r0;
            be->rmsnorm_fwd(be->ctx, kv->lnf, kv->rstdf, x + (size_t)r0 * c->dim, m->final_norm, rows, c->dim, c->norm_eps);
            be->matmul_fwd(be->ctx, kv->logits, kv->lnf, m->lm_head, NULL, rows, c->dim, c->vocab_size, 0);
            if (be->check(be->ctx)) return -1;
            be->download(be->ctx, all_logits ? logits + (size_t)done * c->vocab_size : logits, kv->logits,
                         sizeof(float) * (size_t)rows * c->vocab_size);
        }
        kv->n += nn;
        done += nn;
    }
    return be->check(be->ctx);
}

/* splitmix64 -> a double in [0, 1) */
static double lomo__gen_uniform(uint64_t *rng) { return (double)(lomo_rand_u64(rng) >> 11) * (1.0 / 9007199254740992.0); }

typedef struct lomo__gen_cand { float v; int32_t id; } lomo__gen_cand;
static int lomo__gen_cmp(const void *a, const void *b) {   /* descending logit, then ascending id */
    const lomo__gen_cand *x = (const lomo__gen_cand *)a, *y = (const lomo__gen_cand *)b;
    if (x->v > y->v) return -1;
    if (x->v < y->v) return 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

LOMODEF int32_t lomo_sample(float *s, int V, const int32_t *hist, int n_hist, const lomo_gen_opts *o, uint64_t *rng) {
    int i, best = 0;
    double sum, u, acc, mx;
    if (o && o->repetition_penalty > 0 && o->repetition_penalty != 1.0f)   /* transformers' CTRL penalty */
        for (i = 0; i < n_hist; i++) {
            int32_t id = hist[i];
            int k, seen = 0;
            if (id < 0 || id >= V) continue;
            for (k = 0; k < i && !seen; k++) seen = hist[k] == id;
            if (!seen) s[id] = s[id] < 0 ? s[id] * o->repetition_penalty : s[id] / o->repetition_penalty;
        }
    if (!o || !(o->temperature > 0)) {   /* greedy: first maximum, as torch.argmax */
        for (i = 1; i < V; i++) if (s[i] > s[best]) best = i;
        return best;
    }
    if (o->temperature != 1.0f) for (i = 0; i < V; i++) s[i] /= o->temperature;
    if ((o->top_k > 0 && o->top_k < V) || (o->top_p > 0 && o->top_p < 1.0f)) {
        lomo__gen_cand *ord = (lomo__gen_cand *)LOMO_MALLOC(sizeof(lomo__gen_cand) * (size_t)V);
        double *pr = (double *)LOMO_MALLOC(sizeof(double) * (size_t)V);
        int keep = V;
        if (!ord || !pr) { LOMO_FREE(ord); LOMO_FREE(pr); lomo__fail("sample: out of host memory"); return -1; }
        for (i = 0; i < V; i++) { ord[i].v = s[i]; ord[i].id = i; }
        qsort(ord, (size_t)V, sizeof *ord, lomo__gen_cmp);
        if (o->top_k > 0 && o->top_k < V) {   /* TopKLogitsWarper: drop logits < the k-th largest */
            float kth = ord[o->top_k - 1].v;
            keep = o->top_k;
            while (keep < V && !(ord[keep].v < kth)) keep++;   /* ties with the k-th stay */
        }
        if (o->top_p > 0 && o->top_p < 1.0f) {   /* TopPLogitsWarper: ascending cumulative softmax <= 1 - p goes */
            double mx = ord[0].v, z = 0.0, cum = 0.0;
            for (i = 0; i < keep; i++) z += (pr[i] = exp((double)ord[i].v - mx));
            for (i = keep - 1; i > 0; i--) {
                cum += pr[i] / z;
                if (cum <= 1.0 - (double)o->top_p) keep = i; else break;
            }
        }
        for (i = keep; i < V; i++) s[ord[i].id] = -INFINITY;
        LOMO_FREE(ord); LOMO_FREE(pr);
    }
    for (i = 1; i < V; i++) if (s[i] > s[best]) best = i;
    mx = s[best];
    sum = 0.0;
    for (i = 0; i < V; i++) sum += exp((double)s[i] - mx);
    u = lomo__gen_uniform(rng) * sum;   /* inverse CDF in id order */
    acc = 0.0;
    for (i = 0; i < V; i++) {
        double p = exp((double)s[i] - mx);
        if (p <= 0) continue;
        acc += p;
        if (u < acc) return i;
        best = i;   /* the last id with p > 0, should rounding leave u >= acc */
    }
    return best;
}

LOMODEF int lomo_generate(lomo_model *m, const int32_t *prompt, int n_prompt, const lomo_gen_opts *o,
                          int32_t *out, lomo_gen_info *info) {
    lomo_gen_opts d;
    lomo_kv *kv;
    float *logits = NULL;
    int32_t *hist = NULL;
    uint64_t rng;
    int V, n = 0, chunk, stop = LOMO_GEN_LENGTH, i, rc = -1;
    if (info) memset(info, 0, sizeof *info);
    if (!o) { memset(&d, 0, sizeof d); o = &d; }
    if (!m || !prompt || n_prompt <= 0) return lomo__fail("generate: needs a model and a non-empty prompt (n_prompt = %d)", n_prompt);
    if (o->max_new_tokens < 0 || (o->max_new_tokens > 0 && !out))
        return lomo__fail("generate: max_new_tokens = %d must be >= 0, with an output buffer", o->max_new_tokens);
    if (o->max_new_tokens > 0x7fffffff - n_prompt)
        return lomo__fail("generate: prompt %d + max_new_tokens %d overflow", n_prompt, o->max_new_tokens);
    if (!(o->temperature == o->temperature) || o->temperature < 0 || o->top_k < 0 || !(o->top_p >= 0 && o->top_p <= 1) ||
        !(o->repetition_penalty >= 0) || o->n_eos < 0 || o->n_stop < 0 || (o->n_eos && !o->eos_ids) ||
        (o->n_stop && (!o->stop_strings || !o->decode)))
        return lomo__fail("generate: bad options (temperature %g >= 0, top_k %d >= 0, top_p %g in [0,1], repetition_penalty "
                          "%g >= 0, eos ids and stop strings (which need decode) given with their counts)",
                          (double)o->temperature, o->top_k, (double)o->top_p, (double)o->repetition_penalty);
    V = m->cfg.vocab_size;
    for (i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= V)
            return lomo__fail("generate: prompt[%d] = %d is outside the vocabulary [0, %d)", i, prompt[i], V);
    if (o->max_new_tokens == 0) return 0;
    chunk = o->prefill_chunk > 0 ? o->prefill_chunk : 256;
    if (chunk > n_prompt) chunk = n_prompt;
    if (!(kv = lomo_kv_new(m, n_prompt + o->max_new_tokens, chunk))) return -1;
    logits = (float *)LOMO_MALLOC(sizeof(float) * (size_t)V);
    hist = (int32_t *)LOMO_MALLOC(sizeof(int32_t) * ((size_t)n_prompt + (size_t)o->max_new_tokens));
    if (!logits || !hist) { lomo__fail("generate: out of host memory"); goto done; }
    memcpy(hist, prompt, sizeof(int32_t) * (size_t)n_prompt);
    rng = o->seed;
    if (lomo_kv_eval(kv, prompt, n_prompt, logits, 0)) goto done;
    for (;;) {
        int32_t tok = lomo_sample(logits, V, hist, n_prompt + n, o, &rng);
        if (tok < 0) goto done;
        out[n] = hist[n_prompt + n] = tok;
        n++;
        for (i = 0; i < o->n_eos; i++) if (o->eos_ids[i] == tok) { stop = LOMO_GEN_EOS; break; }
        if (stop == LOMO_GEN_LENGTH && o->n_stop) {
            const char *txt = o->decode(o->decode_user, out, n);
            for (i = 0; txt && i < o->n_stop; i++)
                if (o->stop_strings[i] && o->stop_strings[i][0] && strstr(txt, o->stop_strings[i])) { stop = LOMO_GEN_STOP_STRING; break; }
        }
        if (o->on_token && o->on_token(o->user, tok, n - 1) && stop == LOMO_GEN_LENGTH) stop = LOMO_GEN_CALLBACK;
        if (stop != LOMO_GEN_LENGTH || n == o->max_new_tokens) break;
        if (lomo_kv_eval(kv, &tok, 1, logits, 0)) goto done;
    }
    rc = n;
    if (info) { info->n_tokens = n; info->stop = stop; info->kv_bytes = lomo_kv_bytes(kv); }
done:
    LOMO_FREE(logits); LOMO_FREE(hist);
    lomo_kv_free(kv);
    return rc;
}

LOMODEF int lomo_eos_ids(const char *dir, int32_t *ids, int cap) {
    static const char *files[2] = {"generation_config.json", "config.json"};
    int f;
    for (f = 0; f < 2; f++) {
        char path[4200], *txt;
        size_t len;
        lomo__json j;
        int node, n = 0, e, single;
        if (lomo__path_join(path, sizeof path, dir, files[f])) return -1;
        if (!lomo__exists(path)) { if (f == 1) return lomo__fail("%s: not found", path); continue; }
        if (lomo__read_file(path, &txt, &len)) return -1;
        if (lomo__json_parse(&j, txt, len, path)) { LOMO_FREE(txt); return -1; }
        node = lomo__json_get(&j, 0, "eos_token_id");
        if (node < 0 || j.nodes[node].type == LOMO__J_NULL) {   /* none here: config.json decides */
            lomo__json_free(&j); LOMO_FREE(txt);
            if (f == 1) return 0;
            continue;
        }
        single = j.nodes[node].type != LOMO__J_ARR;
        for (e = single ? node : j.nodes[node].first; e >= 0; e = single ? -1 : j.nodes[e].next) {
            int64_t v;
            if (lomo__json_int(&j, e, &v) || v < 0 || v > 0x7fffffff) {
                char buf[64];
                lomo__fail("%s: field 'eos_token_id': expected a non-negative integer or a list of them, found %s",
                           path, lomo__json_show(&j, e, buf, sizeof buf));
                lomo__json_free(&j); LOMO_FREE(txt);
                return -1;
            }
            if (n < cap && ids) ids[n] = (int32_t)v;
            n++;
        }
        lomo__json_free(&j); LOMO_FREE(txt);
        return n < cap ? n : cap;
    }
    return 0;
}

#else   /* LOMO_NO_GENERATE: the forward's generation branch is never taken */
static void lomo__kv_attn(lomo_trainer *t, int l, lomo__acts *a) { (void)t; (void)l; (void)a; }
#endif /* LOMO_NO_GENERATE */

#endif /* LOMO__IMPLEMENTED */
#endif /* LOMO_IMPLEMENTATION */

/*
LICENCE: MIT

Copyright (c) 2026 the lomo authors

Permission is hereby granted, free of charge, to any person obtaining a copy of
this software and associated documentation files (the "Software"), to deal in
the Software without restriction, including without limitation the rights to
use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies
of the Software, and to permit persons to whom the Software is furnished to do
so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
*/
