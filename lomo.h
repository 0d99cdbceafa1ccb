/* lomo.h - fine-tune every parameter of a Llama-family model in about the
   memory of inference, with LOMO (LOw-Memory Optimization, arXiv 2306.09782).
   stb-style single header; licence at the end of the file.

   The backward pass walks the model from the top, one parameter tensor at a
   time; the moment a tensor's gradient is complete, a per-tensor update hook
   applies the update rule to it, and the one gradient buffer is reused for the
   next tensor. No optimizer state, no full set of gradients: memory is
   parameters + activations + the largest single gradient.

CONTENTS

   Each section starts with a banner that repeats its line here (search for
   "6. driver" to jump). Section 1 is the header; 2-14 are the implementation
   (LOMO_IMPLEMENTATION), spine first: 3-7 are what a training step runs,
   8-9 build, load and save the model it trains.

    1. public API: types, training, data, tokenizer, generation, backends
    2. implementation: includes, errors, allocation, internal declarations
    3. dtype conversion: bf16 / fp16 <-> fp32, round to nearest even
    4. memory accounting: tagged allocations, lomo_memory_formula
    5. CPU backend: the backend table's kernels, OpenMP, CBLAS optional
    6. driver: trainer, forward, layer-streaming backward, update hook calls
    7. update rules: the built-in rules behind the hook (kernels in 5)
    8. model: construction, tensors, random initialisation
    9. checkpoints and I/O: JSON, files, safetensors, config.json, load/save
   10. data: packed / JSONL / text / chat datasets (LOMO_NO_DATA)
   11. multiple choice: JSONL items (LOMO_NO_MC)
   12. tokenizer: tokenizer.json, encode / decode (LOMO_NO_TOKENIZER)
   13. generation: KV cache, sampling (LOMO_NO_GENERATE)
   14. sharding: the MPI communicator (only with LOMO_MPI)

   What the LOMO_NO_* defines leave out (declarations and implementation):
     LOMO_NO_DATA       section 10: lomo_data_*, the chat templates (lomo_chat_*)
     LOMO_NO_MC         section 11: lomo_mc_*
     LOMO_NO_TOKENIZER  section 12, and the text formats of section 10 (token
                        ids in JSONL and packed files still load); lomo_chat_encode
     LOMO_NO_GENERATE   section 13: lomo_generate, lomo_kv_*, lomo_sample, lomo_eos_ids
   Section 14 is compiled only with LOMO_MPI. Sections 2-9 are the core.

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
   two updates; both reuse the stored activations or checkpoints). With the
   pass cache (lomo_train_opts.pass_cache; by default when checkpointing is
   off) pass one keeps the residual stream's gradient at each norm and pass
   two restores it, skipping the LM head's dX and each layer's gate/up and
   q/k/v dX. Cheaper: LOMO_CLIP_GLOBAL_GRAM (pass one takes a linear layer's
   ||dY^T X||^2 from the N x N Gram matrices of dY and X where that costs
   less than forming dW) and LOMO_CLIP_TENSOR (each tensor clipped by its own
   norm, one pass; where 5 N (O + K) <= O K the norm comes from the Gram
   matrices and the rule runs inside the dW GEMM).
   Other built-in rules (lomo_train_opts.optimizer): AdaLomo as lomo-optim
   computes it, and AdamW (torch's) with m and v kept but no gradients.

   After each tensor's update lomo_step reads it back once (its sum of
   squares): a NaN or Inf weight fails the step with an error naming the step
   and the tensor, so a diverging run stops before anything non-finite can be
   saved (lomo_train_opts.no_finite_check = 1 turns the read off; its cost is
   in bench/run_clip.sh). lomo_trainer_new refuses a batch x seq_len whose
   token or attention-row count does not fit an int, or (CPU backend) whose
   activations and workspace exceed physical memory, naming sizes and bytes.

   Micro-batches (lomo_train_opts.micro_batches = M): forward runs on all M
   keeping each layer's input, then the backward walks the layers from the
   top, running every micro-batch through the current layer and summing its
   gradients before the layer's tensors are updated: one step over M
   micro-batches equals one step over their concatenation.

   Order: loss -> lm_head -> final norm -> layers L-1..0 (down, up, gate,
   post-attention norm, o, v, k, q, input norm) -> embedding. (Gemma: post-MLP
   norm first, post-attention norm before o; q/k norms after o; Phi-3:
   down, gate_up, norm, o, qkv, norm.) Every dX is
   computed with the old weights, before its tensor is handed to the hook.
   Tied embeddings: the hook sees the sum of both contributions, once, at the
   end. This costs no memory: the lm_head's dlogits stay in the logits buffer
   (an activation the forward allocates anyway) until the embedding's turn.
   When the head runs in chunks of tokens (the logits of large vocabularies,
   lomo_train_opts.head_chunk) each chunk's logits are recomputed in the
   backward instead (one more head GEMM per backward pass, two when tied),
   and the chunks' lm_head gradients are summed before the hook sees them.

MEMORY (every allocation is tagged and counted, see lomo_memory_report;
   lomo_memory_formula computes this formula from a config, whose dtype is
   the storage dtype w; lomo_memory_formula_model from a loaded model)

   N = batch * seq_len tokens per micro-batch, M micro-batches per step,
   C = hidden_size, H = intermediate_size, L = layers, V = vocab,
   q = heads * head_dim, k = kv_heads * head_dim, P = parameters,
   w = bytes per stored weight (4 fp32, 2 bf16/f16), S = 1 with checkpointing
   or M > 1, L otherwise.

     parameters       w P
     activations      4 N [ M (L+1) C  +  S (3C + 2q + 2k + 3H)  +  C ]  +  4 R V
                      (+ S (q + k) with q/k norms, + S 2C for Gemma's post-norms)
                      (each layer's input per micro-batch; S layer working
                      sets; final norm output; logits, which also hold dlogits,
                      for R of the N tokens at a time: R = N when 4 N V fits
                      LOMO_HEAD_CHUNK_BYTES (128 MiB), else the most rows
                      that do (a multiple of 64), or lomo_train_opts.head_chunk)
     gradient buffer  4 max(tensor numel)           (M = 1; = 4 V C in most models)
                      4 max(one layer's tensors, V C) (M > 1: a layer's
                      gradients are summed over the micro-batches before its
                      tensors are updated; + 4 C when tied)
     workspace        4 N (M C + C + 2q + 2k + 2H)  (backward scratch; one
                      residual gradient per micro-batch)
                      + 4 max(tensor numel) with 16-bit storage on the CPU
                      (a weight widened for BLAS)
                      + 4 M (2L + 1) (N + 1) C with the pass cache (steps with
                      a norm pass: global-norm clipping or loss scaling; by
                      default only without checkpointing)
     optimizer state  0 (LOMO); 4 sum(rows + cols) for matrices + 4 numel
                      for vectors (AdaLomo); 8 P (AdamW)
     kv cache         4 (2 L T k + c (6C + 2q + 2k + 3H + V)) with T = prompt + new
                      tokens, c = min(prompt, 256), + 4 max(tensor numel) with
                      16-bit storage on the CPU: only while lomo_generate (or a
                      lomo_kv) exists; not in lomo_memory_formula

   plus a few floats per token (norm statistics, softmax log-sum-exp, token
   ids) that the formula leaves out: the measured total is within 2% of it.

MIXED PRECISION

   Weights may be stored in bf16 or f16 (lomo_load_opts.dtype); there are no
   fp32 master weights. Activations, norms, RoPE, softmax, the loss and the
   gradient buffer are fp32; each update widens one tensor to fp32, applies
   the rule and rounds back, to nearest-even or stochastically
   (lomo_train_opts.stochastic_rounding: unbiased, from a hash of seed, step,
   tensor and element, so reproducible for any thread count). Dynamic loss
   scaling (lomo_train_opts.loss_scaling): the norm pass also detects
   overflow, an overflowing step is skipped (weights bit-identical) and the
   scale backs off; it grows again after loss_scale_window clean steps. It is
   on by default for f16 storage where gradients pass through f16 operands
   (CUDA's dW GEMMs: small gradients would underflow) or when a loss_scale_*
   option is set, otherwise off: the CPU's gradients are fp32 throughout,
   so there the scale guards nothing and its overflow check costs a
   backward pass. Either way a non-finite loss skips
   the step before any update, and a non-finite weight fails it.

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

   Data: every rank reads the whole step and trains on its own rows of it
   (lomo_data_next_rank, or lomo_batch_slice on a step read otherwise).

   bench/sharding_memory.py prints worked figures (README).

TOKENIZER (lomo_tokenizer_load, lomo_tokenize, lomo_detokenize; LOMO_NO_TOKENIZER leaves it out)

   Reads a model's Hugging Face tokenizer.json and encodes / decodes exactly
   as the `tokenizers` library does (checked id for id, offsets and decodes,
   against tokenizers 0.23 on real Llama 3 / Qwen2 / GPT-2 byte-level and
   Llama 2 / Mistral SentencePiece files: tests/test_tok.c). Implemented:
     model          BPE (merges "a b" or ["a", "b"], by rank through a heap,
                    byte_fallback, unk_token + fuse_unk, ignore_merges,
                    continuing_subword_prefix, end_of_word_suffix), a word cache
     added_tokens   split out first, leftmost-longest (normalized ones in the
                    normalized text), special / normalized / lstrip / rstrip /
                    single_word, ids assigned as tokenizers does on load
     normalizer     Sequence, NFC, NFD, Prepend, Replace (String pattern)
     pre_tokenizer  Sequence, Split (String, or the exact GPT-2 / Llama 3 /
                    Qwen2 regex; every behavior, invert), ByteLevel
                    (add_prefix_space, use_regex), Metaspace (prepend_scheme
                    always / first / never, split), Digits
     post_processor Sequence, TemplateProcessing (single), ByteLevel (offsets)
     decoder        Sequence, ByteLevel, Metaspace, Replace (String),
                    ByteFallback, Fuse, Strip
   Anything else (another model type, NFKC, Lowercase, another regex,
   RobertaProcessing, WordPiece decoder, truncation or padding set, BPE
   dropout) is refused at load with its name. \p{L} / \p{N} are Unicode 16
   general categories and \s is White_Space (Oniguruma's \s, the engine of the
   tokenizers wheels); the tables and the NFC data are generated by
   tools/gen_unicode_tables.py from unicodedata2 16.0.0 (Unicode 16.0, the
   version of the Oniguruma in the tokenizers 0.23 wheels); the NFC / NFD data
   is restricted to what tokenizers' own normalizers know (their crate is
   Unicode 9.0: newer scripts' marks are not reordered or composed).
   single_word looks at \w as Rust's regex crate defines it (Alphabetic, M,
   Nd, Pc, Join_Control; Alphabetic from L, Nl and the Other_Alphabetic
   symbols). Text must be valid
   UTF-8. Spans are byte ranges of the input (tokenizers' offsets before its
   Python binding turns them into character indices).

OPTIONS (define before including)

   LOMO_IMPLEMENTATION   compile the implementation in this file
   LOMO_STATIC           make every public function static
   LOMO_MPI              parameter sharding over MPI ranks (lomo_mpi_comm; build with mpicc)
   LOMO_NCCL             (lomo_cuda.cuh) sharding over GPUs with NCCL (lomo_nccl_comm)
   LOMO_CUDA             lomo_backend_open("cuda:N") opens lomo_cuda.cuh's backend (define it in
                         the program and in the .cu file nvcc compiles with the implementation,
                         e.g. examples/cuda_impl.cu); without it CUDA specs are refused
   LOMO_CBLAS            CPU matmuls through CBLAS (OpenBLAS: link -lopenblas);
                         otherwise plain OpenMP loops. With OpenBLAS, lomo
                         sets OpenBLAS to one thread and splits each matmul
                         over its own OpenMP threads (one thread pool), in
                         blocks fixed by the shape and omp_get_max_threads()
                         (two per thread while blocks stay 128 wide).
   LOMO_NO_TOKENIZER     leave out the tokenizer.json reader (lomo_tokenizer_*, lomo_tokenize, lomo_detokenize)
   LOMO_NO_DATA          leave out datasets and chat templates (lomo_data_*, lomo_chat_*; section 10)
   LOMO_NO_MC            leave out multiple choice (lomo_mc_*; section 11)
   LOMO_CPU_FIXED_THREADS  every CPU parallel region uses omp_get_max_threads()
                         threads; by default (Linux) a region uses only the cores
                         that other runnable threads leave free (/proc/loadavg,
                         sampled every 50 ms, when the process may use every
                         CPU), and on a busy machine a region longer than a
                         time slice runs twice omp_get_max_threads() threads,
                         so a busy machine slows a step in proportion instead
                         of 20x (spinning OpenMP barriers). Results are
                         bitwise the same for any such team size.
   LOMO_CPU_MIN_WORK     element operations below which a CPU loop runs on one
                         thread (default 32768)
   LOMO_CPU_OVERSUB_WORK element operations from which a CPU region on a busy
                         machine runs twice omp_get_max_threads() threads
                         (default 4e6, about one scheduler time slice)
   LOMO_NO_F16C          no F16C conversions (x86, GCC/clang: chosen at run
                         time, no -march needed) for f16 storage's widening and
                         the LOMO rule's rounding; the scalar code, same bits
   LOMO_NO_GENERATE      leave out generation (lomo_generate, lomo_kv, lomo_sample)
   LOMO_MALLOC(n), LOMO_REALLOC(p, n), LOMO_FREE(p)
                         the host allocator (default malloc, realloc, free):
                         define all three or none (anything else is an #error).
                         Every host allocation of lomo.h and lomo_cuda.cuh goes
                         through them, the CPU backend's tensors and activations
                         included (device memory goes through lomo_backend.alloc);
                         LOMO_REALLOC(NULL, n) must act as LOMO_MALLOC(n). What
                         lomo returns to free (lomo_tokenize's ids, ...) is freed
                         with LOMO_FREE. tests/test_alloc.c counts them, fails
                         each one in turn, and refuses a raw malloc in lomo.h.
   LOMO_ASSERT(x)        checks of the driver's own invariants (weight shapes
                         against the config, a gradient inside its buffer, the
                         activation carve, the gathered stage's size); default
                         assert(x), so -DNDEBUG or `#define LOMO_ASSERT(x)` turns
                         them off. Never used for what comes from outside (files,
                         options, tokens): that is always an error return.
   LOMO_HEAD_CHUNK_BYTES the most bytes of fp32 logits the LM head holds at once
                         by default (128 MiB; lomo_train_opts.head_chunk)

GENERATION (see "generation: KV cache, sampling" below)

       int32_t out[64];
       lomo_gen_opts g = {0};
       g.max_new_tokens = 64;                  // greedy; g.temperature > 0 samples
       int32_t eos[8]; g.n_eos = lomo_eos_ids("path/to/hf_model", eos, 8); g.eos_ids = eos;
       int n = lomo_generate(m, prompt, n_prompt, &g, out, NULL);   // new ids only

   Prefill, then one token at a time with a KV cache, through the training
   forward's own layer code. Any time between lomo_step calls: the trainer
   is not touched, and the cache (LOMO_MEM_KV in lomo_memory_report) exists
   only during the call. Sampling applies transformers' processors in its
   order (repetition penalty, temperature, top-k, top-p) and draws from a
   splitmix64 stream on the host: one seed, the same tokens on any thread
   count. Greedy ids equal transformers' generate(do_sample=False), for every
   family lomo trains: Llama (rope scaling), Mistral (sliding window), Qwen2,
   Qwen3, Gemma 2 and Gemma 3 (embedding scale, (1 + w) norms, attention scale
   and soft-capping, local-layer windows and rope bases, final soft-cap),
   Phi-3 (window, partial rotary, longrope: a call whose positions pass
   original_max_position_embeddings uses the long factors, and the first such
   call recomputes the cached positions with them, as transformers' Phi-3
   generate drops its cache there).

   A CPU decode step (one token) is bound by memory bandwidth: it reads every
   weight once. Its matmuls are GEMVs that stream the stored rows (fp32, or
   bf16 at 2 bytes a weight) four at a time with wide SIMD (eight, in 256-bit
   registers, where the compiler targets AVX2 and FMA: the same sums), without
   packing or BLAS, from one block of weights on transparent huge pages where
   Linux has them (MADV_HUGEPAGE); Q/K/V and gate/up run as one pass each
   (matmul_fwd_n), the LM head as one GEMV over the vocabulary's rows;
   attention at one query works in tiles of keys on the stack; a decode step
   allocates nothing. Results do not depend on the thread count.
   bench/run_gen.sh prints the GB/s reached next to the machine's own read
   bandwidth.

BACKENDS

   The driver calls a table of operations (struct lomo_backend): memory,
   matmul forward/backward, RMSNorm, RoPE, attention, SwiGLU, embedding,
   cross-entropy, sum of squares and the built-in update kernel; for Qwen3,
   Gemma and Phi-3 also RMSNorm with a weight offset, scale, GeGLU,
   attention with scale / soft-capping / window, soft-capped cross-entropy
   and partial RoPE (NULL in a backend: those models are refused); for
   generation RoPE at a position offset, partial and scaled as rope_ex
   (rope_at), and attention of new queries over a KV cache with attn_ex's
   scale, soft-cap and sliding window (attn_kv), and matmuls of weights that
   share their input (matmul_fwd_n: Q/K/V, gate/up; optional). The CPU
   table is in this file (lomo_cpu_backend); activations are fp32 row-major.
   Before each forward or step the driver hands the backend that trainer's
   scratch and activation dtype (set_scratch), so backends keep no state of
   one trainer that another could pick up. check() reports earlier errors;
   the CUDA one synchronises first, so a faulting kernel fails its step.
   0.6: scratch_bytes_rows sizes the scratch for a head in chunks; linear_update
   fuses the built-in LOMO rule (no clip_value, M = 1, unsharded; per-tensor
   clipping only where wgrad_sqnorm gives the tensor's norm first, 0.8) with a
   linear weight's dW (the CPU table installs it with BLAS, 0.7).

ERRORS (one rule)

   Every function that can fail, public or internal, returns -1 (or NULL)
   and leaves a readable reason in lomo_error() (thread-local), naming the
   file, tensor or field and what was expected and found; 0 (or a value) on
   success. Nothing else carries an error, with two deferred exceptions that
   the driver turns into this rule at one place (lomo__phase_check) at the
   end of each phase (forward, each layer's backward, the backward) and
   before any tensor is handed to an update rule:
     - backend ops return void; a failing op leaves a sticky error that the
       backend's check() returns (-1 with lomo_error() set, then cleared);
     - a sharded weight is gathered inside kernel arguments (lomo__need),
       where no return value fits: a failed gather sets lomo_trainer.failed
       (cleared when a step starts).
   A step that fails in its update pass has updated some tensors already:
   the model is then part-way through the step (lomo_error() says where).

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
   0.5  Hardened readers (libFuzzer harnesses for each, tests/fuzz/, make fuzz):
        JSON keys compare by decoded bytes (\u0000 included) and duplicate keys
        are refused in every JSON file, a tensor in two shards is refused,
        FIFOs and other special files are refused without blocking, config
        floats are checked as float32, trainer state metadata is validated
        field by field (optimizer by name), checkpoints with NaN/Inf weights
        are refused naming the tensor. lomo_save keeps the input config.json
        byte for byte except the values lomo changed (lomo_model.config_json)
        and copies carried files (reflink or copy, never a hard link).
        Trainer hardening: NaN/Inf weights fail the step naming step and tensor
        (no_finite_check), 64-bit batch x seq_len checks before allocating,
        lomo_step_info.loss_sum (batch-independent eval sums),
        lomo_memory_formula_model (the storage dtype of the loaded model).
        CUDA backend: set_scratch carries the activation GEMM dtype and is
        called on every forward/step (two trainers of different dtypes share
        a device); check() synchronises, names the ops and clears the error
        (LOMO_CUDA_SYNC=1 syncs after every op), lomo_cuda_release after a
        lost context, cudaSetDevice per op, lomo_cuda_init_random; a test kit
        that fails on wrong kernels (test_cuda, mutate_cuda.sh, test_cuda_tol)
        and `make gpu-check`. Not yet run on a GPU.
        Qwen3 (q/k norms), Gemma 2 and Gemma 3 text (offset norms, embedding
        scale, GeGLU, post-norms, soft-capping, local sliding-window layers,
        per-layer rope bases), Phi-3 (fused qkv_proj / gate_up_proj, partial
        rotary, sliding window, longrope), linear rope scaling, pad_token_id's row
        without lookup gradient; new backend ops at the end of the table
        (rmsnorm_ex, scale, geglu, attn_ex, cross_entropy_softcap, rope_ex).
        tokenizer.json in C (lomo_tokenizer_load, lomo_tokenize with byte
        spans, lomo_detokenize): byte-level and SentencePiece-style BPE,
        added tokens, normalizers, split patterns, post-processors and
        decoders as the tokenizers library runs them; Unicode tables
        generated by tools/gen_unicode_tables.py.
        CPU: attention in 64-query tiles on the BLAS kernel, a vectorised exp,
        fused single-exp cross-entropy; each parallel region sized by the free
        cores (none for small work), results independent of that size.
        Text in: dataset formats {"text"}, {"prompt", "completion"}, alpaca,
        {"messages"} and *.txt in lomo_data_open (tokenized once, truncation
        counted); chat templates llama3, chatml, qwen2, mistral, mistral-v1
        built in
        (lomo_chat_render, lomo_chat_encode, lomo_chat_template_detect).
        Text out: lomo_generate (KV-cache prefill + decode on the CPU and
        CUDA backends, Mistral's sliding window, greedy / temperature /
        top-k / top-p / repetition penalty, seeded, EOS ids from config.json
        or generation_config.json, stop strings, a per-token callback),
        lomo_kv for stepwise use, the LOMO_MEM_KV memory tag.
        Generation for Qwen3, Gemma 2, Gemma 3 and Phi-3 (partial rotary,
        longrope) too: rope_at takes the rotary dims and an attention factor,
        attn_kv the scale and soft-cap (backend op signatures changed).
   0.6  One table of a layer's tensors (LOMO__LAYER_TENSORS, beside lomo_layer)
        for construction, names, backward order, gathers and views;
        lomo_trainer_new and lomo_step as named steps; one "apply the rule"
        path for sharded and unsharded tensors; one error rule (ERRORS).
        Host memory only through LOMO_MALLOC / LOMO_REALLOC / LOMO_FREE (all or
        none), every allocation checked (tests/test_alloc.c counts them over
        the library's paths and fails each in turn: no leak, an error, no
        crash); lomo_model_init_random returns 0 / -1; the CPU backend's
        check() clears the error it reports (one failed op no longer fails
        every later one); LOMO_ASSERT on the driver's invariants.
        lomo_batch_slice and lomo_data_next_rank: a rank's rows of a
        data-parallel step come from the data API (llama_ft.c no longer
        slices batches by hand). The JSON reader is public (lomo_json_parse
        and lomo_json_* accessors): llama_ft.c's own JSON readers now use it.
        lomo_backend_open("cpu" | "cuda" | "cuda:N"): the backend by name, one
        call for every program (without LOMO_CUDA, CUDA specs are refused
        naming the define); llama_ft.c's main in one screen.
        The LM head and cross-entropy in chunks of tokens (lomo_train_opts.head_chunk,
        LOMO_HEAD_CHUNK_BYTES): the (N, V) fp32 logits are never held whole past
        128 MiB; the backward recomputes each chunk; lomo_logits is NULL then.
        Backend ops at the end of the table: scratch_bytes_rows (the scratch for a
        head in chunks) and linear_update (the built-in LOMO rule, no clip_value,
        fused with a linear weight's dW GEMM; CUDA sets it, the CPU keeps the hook
        path and has the reference implementation). Not yet run on a GPU.
        CPU speed: one attention implementation for every family (attn and
        attn_ex: scale, soft-cap and window on the same BLAS tiles), lomo__expf
        inlined and branch-free so that its loops vectorise (same bits), 16-bit
        weights widened by vectorised loops (same bits).
        CUDA: flash attention on tensor cores (mma.sync bf16, sm_80+, head_dim
        64/80/96/128, for 16-bit models; the fp32 kernels with
        LOMO_CUDA_ATTN=ref), tiled column reductions, the Gram norm pass on
        tensor cores; a CPU model of the tiling (tests/flash_model.h). Not yet
        run on a GPU.
        CPU decode at memory bandwidth: one-token matmuls as GEMVs that stream
        fp32 / bf16 rows four at a time (no BLAS, no packing, no widening of
        bf16), Q/K/V and gate/up in one pass (new backend op matmul_fwd_n, at
        the end of the table; CUDA: one cuBLAS call per weight), parallel
        regions of the decode ops sized by the free cores, attention over the
        cache in stack tiles with a running softmax (no allocation per
        token); bench/run_gen.sh measures the machine's read bandwidth and
        the GB/s a decode step reaches, in fp32 or bf16 (DTYPE=bf16).
        lomo.h reorganised: CONTENTS and numbered section banners, the spine
        (backend, driver, rules) first, one internal declarations block,
        LOMO_NO_DATA and LOMO_NO_MC; LOMO_NO_GENERATE also hides the
        declarations. CONTRIBUTING.md.
   0.7  CPU step: with checkpointing the backward's first layer reuses the
        working set the forward just left (one layer's recompute less per
        step, same bits); with BLAS the built-in LOMO rule on fp32 weights is
        applied by the dW GEMM itself (the CPU table installs linear_update:
        no gradient buffer pass, no update pass; fp32 weights move in the
        last bits, 16-bit weights keep the hook path's bits); the fp32 LOMO
        update loop vectorises; the BLAS attention's softmax max and sum in
        eight fixed lanes (lomo__max8, lomo__sum8); every CPU parallel region
        sized by lomo__nt (all_finite and the Qwen3/Gemma kernels were not).
        f16 storage on the CPU: widening and the LOMO rule's nearest-even
        rounding through F16C where the CPU has it (run-time choice, same bits
        as the scalar code: every half, every float); widening f16 was 4-6x
        slower than bf16, now the same. What remains between f16 and bf16 is
        dynamic loss scaling's overflow check, one more backward pass: it is
        now off by default on the CPU, whose gradients are fp32 (the backend
        table's grads16 says where gradients pass through 16-bit operands:
        CUDA, where f16 keeps it on). lomo_cpu_blas() names the BLAS and its
        kernels (OpenBLAS: OPENBLAS_CORETYPE picks them). Sums of squares
        (sumsq, param_sumsq, the Gram pass) in eight double lanes
        (lomo__dot8d): they vectorise; results move in the last bits.
        Decode: with AVX2+FMA the GEMV takes eight rows at a time in 256-bit
        registers and widens bf16 256 bits wide (bit for bit the portable
        loop's sums); the weights of a host-memory backend are one allocation
        (lomo_model.param_block), advised to transparent huge pages on Linux.
   0.8  Two-pass steps without the second pass's repeats: the pass cache
        (lomo_train_opts.pass_cache; by default on without checkpointing)
        keeps the residual stream's gradient after each of the 2L + 1 norms
        of the norm pass, and the update pass restores it instead of running
        the LM head's dX and each layer's gate/up and q/k/v dX (bitwise the
        same steps; 4 M (2L + 1) (N + 1) C bytes of workspace). Per-tensor
        clipping runs the rule inside the dW GEMM (linear_update) where the
        Gram matrices give the tensor's norm for at most a fifth of the
        GEMM's FLOPs (5 N (O + K) <= O K); elsewhere the gradient is formed
        and measured as before. The Gram norm takes the upper triangles
        only (ssyrk + sgemm per row block): half the products. A Gram
        scratch is allocated only where some layer shape takes it.
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
/* 1. public API: types, training, data, tokenizer, generation, backends    */
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
    char model_type[32];/* "llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3_text" */
    /* 0.5: Qwen3 and Gemma 2/3 (0 everywhere keeps the Llama block) */
    int qk_norm;        /* qwen3, gemma3: RMSNorm over each head of q and k before RoPE (q_norm, k_norm) */
    int gemma;          /* 2 or 3: RMSNorm scales by (1 + weight), embeddings * sqrt(hidden_size),
                           GeGLU with the tanh GELU, norms before and after attention and MLP */
    float query_pre_attn_scalar; /* attention scores scaled by its -1/2 power; 0: head_dim */
    float attn_softcap;          /* attn_logit_softcapping: scores -> cap tanh(scores / cap); 0: none
                                    (as in transformers, applied by Gemma 2 only: Gemma 3 ignores it) */
    float final_softcap;         /* final_logit_softcapping, the same on the logits; 0: none */
    int local_window;   /* sliding_window of the local layers (gemma); 0: none */
    int local_pattern;  /* layer l is local iff local_pattern > 0 and (l + 1) % local_pattern != 0 */
    float rope_local_theta;      /* gemma3: rope_local_base_freq of the local layers (0: rope_theta) */
    int has_pad, pad_token_id;   /* pad_token_id (has_pad 0: null): as transformers' nn.Embedding(padding_idx),
                                    the embedding lookup adds no gradient to that row */
    int fused_proj;     /* phi3: q/k/v in one self_attn.qkv_proj, gate/up in one mlp.gate_up_proj */
    int rotary_dim;     /* RoPE on the first rotary_dim dims of a head (partial_rotary_factor); 0: head_dim */
    /* rope_type 3 ("longrope", Phi-3 128k / Phi-3.5 / Phi-4-mini): inverse frequencies divided by
       short_factor (seq_len <= rope_original_max_pos) or long_factor, rotated dims scaled by
       attention_factor (given, or sqrt(1 + ln(factor) / ln(original)), factor given or
       max_position_embeddings / original) */
    int rope_n_factors; /* rotary_dim / 2, at most 128 */
    float rope_long_factor[128], rope_short_factor[128];
    float rope_attn_factor;
    int rope_explicit;  /* bit 0: factor was given, bit 1: attention_factor was given (saved back as read) */
} lomo_config;

/* ---- tensors and models ---- */

/* What a tensor is, in the order Hugging Face lists a layer's parameters. */
typedef enum lomo_tensor_kind {
    LOMO_EMBED = 0, LOMO_WQ, LOMO_BQ, LOMO_WK, LOMO_BK, LOMO_WV, LOMO_BV,
    LOMO_WO, LOMO_BO, LOMO_W_GATE, LOMO_W_UP, LOMO_W_DOWN, LOMO_ATTN_NORM,
    LOMO_MLP_NORM, LOMO_FINAL_NORM, LOMO_LM_HEAD,
    LOMO_Q_NORM, LOMO_K_NORM,               /* self_attn.q_norm / k_norm (qwen3, gemma3) */
    LOMO_POST_ATTN_NORM, LOMO_POST_MLP_NORM, /* gemma: post_attention_layernorm (on the attention's output),
                                               post_feedforward_layernorm; LOMO_MLP_NORM is pre_feedforward_layernorm */
    LOMO_W_QKV, LOMO_W_GATE_UP,             /* phi3: self_attn.qkv_proj (q rows, k rows, v rows),
                                               mlp.gate_up_proj (gate rows, then up rows) */
    LOMO_NKINDS
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
    lomo_tensor *q_norm, *k_norm, *post_attn_norm, *post_mlp_norm;   /* NULL when the family has none */
    lomo_tensor *w_qkv, *w_gate_up;   /* phi3: the fused tensors (wq, wk, wv, w_gate, w_up are then views:
                                         row blocks of them, not in lomo_model.tensors) */
} lomo_layer;

/* (private) The one table of a layer's tensors: every list of them in lomo.h (construction and
   names, the backward / update order, sharded gathers and views, Phi-3's row-block views) is
   read from it. It has two orders, because two orders are fixed from outside:
   - row order = Hugging Face's named_parameters() order. lomo_model_new creates the tensors in
     it, so it is the order of lomo_model.tensors, of the saved model.safetensors and of a
     sharded stage's gather buffer.
   - bwd = the position at which a layer's backward completes the tensor's gradient: the chain
     rule walks the layer from its output down (post-MLP norm, down, up, gate, MLP norm, ...),
     so this is the order the update hook sees them in, and the layout of one stage's gradients
     with micro-batches.
   Two rows may fill one field (mlp_norm is post_attention_layernorm, but Gemma's
   pre_feedforward_layernorm): `when` keeps them apart. Sizes (rows, cols, view offset) are
   codes: C hidden, H intermediate, QD q heads x head_dim, KVD kv heads x head_dim, HD head_dim,
   QKV = QD + 2 KVD, QDKVD = QD + KVD, H2 = 2 H. `when`: ALL, SPLIT (not fused), FUSED (Phi-3),
   QKVB / OB (q/k/v and o biases), QKN (q/k norms), GEMMA, PLAIN (not Gemma); a fused model has
   none of QKVB, OB, QKN, GEMMA. A row with a view (view_of, at row view_at) is, in a fused
   model, a row block of that fused tensor instead of a tensor of its own.
      field           kind                 name after "model.layers.<l>."    rows cols when  bwd view_of        view_at */
#define LOMO__LAYER_TENSORS(X) \
    X(wq,             LOMO_WQ,             "self_attn.q_proj.weight",            QD,   C,   SPLIT, 17, w_qkv,          0) \
    X(bq,             LOMO_BQ,             "self_attn.q_proj.bias",              QD,   0,   QKVB,  18, bq,             NONE) \
    X(wk,             LOMO_WK,             "self_attn.k_proj.weight",            KVD,  C,   SPLIT, 15, w_qkv,          QD) \
    X(bk,             LOMO_BK,             "self_attn.k_proj.bias",              KVD,  0,   QKVB,  16, bk,             NONE) \
    X(wv,             LOMO_WV,             "self_attn.v_proj.weight",            KVD,  C,   SPLIT, 13, w_qkv,          QDKVD) \
    X(bv,             LOMO_BV,             "self_attn.v_proj.bias",              KVD,  0,   QKVB,  14, bv,             NONE) \
    X(wo,             LOMO_WO,             "self_attn.o_proj.weight",            C,    QD,  ALL,    8, wo,             NONE) \
    X(bo,             LOMO_BO,             "self_attn.o_proj.bias",              C,    0,   OB,     9, bo,             NONE) \
    X(w_qkv,          LOMO_W_QKV,          "self_attn.qkv_proj.weight",          QKV,  C,   FUSED, 12, w_qkv,          NONE) \
    X(q_norm,         LOMO_Q_NORM,         "self_attn.q_norm.weight",            HD,   0,   QKN,   11, q_norm,         NONE) \
    X(k_norm,         LOMO_K_NORM,         "self_attn.k_norm.weight",            HD,   0,   QKN,   10, k_norm,         NONE) \
    X(w_gate,         LOMO_W_GATE,         "mlp.gate_proj.weight",               H,    C,   SPLIT,  3, w_gate_up,      0) \
    X(w_up,           LOMO_W_UP,           "mlp.up_proj.weight",                 H,    C,   SPLIT,  2, w_gate_up,      H) \
    X(w_gate_up,      LOMO_W_GATE_UP,      "mlp.gate_up_proj.weight",            H2,   C,   FUSED,  4, w_gate_up,      NONE) \
    X(w_down,         LOMO_W_DOWN,         "mlp.down_proj.weight",               C,    H,   ALL,    1, w_down,         NONE) \
    X(attn_norm,      LOMO_ATTN_NORM,      "input_layernorm.weight",             C,    0,   ALL,   19, attn_norm,      NONE) \
    X(mlp_norm,       LOMO_MLP_NORM,       "post_attention_layernorm.weight",    C,    0,   PLAIN,  5, mlp_norm,       NONE) \
    X(post_attn_norm, LOMO_POST_ATTN_NORM, "post_attention_layernorm.weight",    C,    0,   GEMMA,  7, post_attn_norm, NONE) \
    X(mlp_norm,       LOMO_MLP_NORM,       "pre_feedforward_layernorm.weight",   C,    0,   GEMMA,  6, mlp_norm,       NONE) \
    X(post_mlp_norm,  LOMO_POST_MLP_NORM,  "post_feedforward_layernorm.weight",  C,    0,   GEMMA,  0, post_mlp_norm,  NONE)
enum { LOMO__DIM_NONE = -1, LOMO__DIM_0, LOMO__DIM_C, LOMO__DIM_H, LOMO__DIM_QD, LOMO__DIM_KVD, LOMO__DIM_HD,
       LOMO__DIM_QKV, LOMO__DIM_QDKVD, LOMO__DIM_H2 };
enum { LOMO__HAS_ALL, LOMO__HAS_SPLIT, LOMO__HAS_FUSED, LOMO__HAS_QKVB, LOMO__HAS_OB, LOMO__HAS_QKN,
       LOMO__HAS_GEMMA, LOMO__HAS_PLAIN };
typedef struct lomo__layer_row {   /* one row of LOMO__LAYER_TENSORS */
    size_t field, view_of;         /* offsetof(lomo_layer, ...) */
    int kind;                      /* lomo_tensor_kind */
    const char *suffix;
    int rows, cols, when, bwd, view_at;
} lomo__layer_row;
#define LOMO__LAYER_ROWS 20        /* rows of LOMO__LAYER_TENSORS; bwd runs over 0 .. LOMO__LAYER_ROWS - 1 */

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
    char *config_json;           /* lomo_load: the config.json text (LOMO_MALLOC); lomo_save keeps every key of it,
                                    changing only the values lomo changed. NULL: lomo writes its own config */
    size_t config_json_len;
    lomo_tensor *views;          /* phi3: per layer wq, wk, wv, w_gate, w_up as row blocks of the fused tensors */
    void *param_block;           /* host-memory backends: one allocation holding every tensor's data, else NULL */
} lomo_model;

typedef struct lomo_load_opts {
    lomo_dtype dtype;            /* storage dtype: LOMO_F32, LOMO_BF16 or LOMO_F16 */
    const lomo_backend *backend; /* NULL: the CPU backend */
    const lomo_comm *comm;       /* non-NULL: shard every tensor over comm's ranks (each reads only its
                                    shard; lomo_save, lomo_trainer_new, lomo_step become collective) */
} lomo_load_opts;

LOMODEF lomo_model  *lomo_load(const char *hf_dir, const lomo_load_opts *opts);
LOMODEF lomo_model  *lomo_model_new(const lomo_config *cfg, const lomo_load_opts *opts); /* weights uninitialised */
/* N(0,std) matrices, norm gains 1, biases 0; 0, or -1 when out of host memory (from the tensor named on,
   the weights are not initialised) */
LOMODEF int          lomo_model_init_random(lomo_model *m, uint64_t seed, float std);
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
   in dir that are not weights (tokenizer, ...) are kept; copy_from's are
   copied (a reflink where the file system has them), never hard-linked.
   config.json: a model from lomo_load writes the config.json it was loaded
   from with only the values lomo changed rewritten (torch_dtype / dtype when
   saving in another dtype, a size the program changed), so bos/eos/pad ids,
   layer_types and custom keys survive byte for byte; a model from
   lomo_model_new gets lomo's own complete config. */
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
    int loss_scaling;       /* dynamic loss scaling: 1 = on, -1 = off, 0 = on for f16 storage on a
                               backend whose gradients pass through 16-bit operands (grads16: CUDA),
                               or when a loss_scale_* field below is set; else off (the CPU: fp32
                               gradients, nothing underflows) */
    float loss_scale_init;  /* 0 = 65536 */
    float loss_scale_growth, loss_scale_backoff, loss_scale_min;  /* 0 = 2, 0.5, 1 */
    int loss_scale_window;  /* grow after this many clean steps; 0 = 1000 */
    lomo_update_fn update;  /* NULL: the built-in rule named by optimizer */
    void *update_user;
    int no_finite_check;    /* 1: skip reading each tensor back after its update to catch NaN/Inf weights
                               (on by default: lomo_step then fails naming the step and the tensor) */
    int head_chunk;         /* 0.6: tokens per LM-head chunk: the (N, V) fp32 logits are held head_chunk
                               rows at a time (memory 4 head_chunk V). 0: the whole N when its logits fit
                               in LOMO_HEAD_CHUNK_BYTES, else the most rows that do; < 0: always the whole
                               N (lomo_logits needs that: it is NULL while the head runs in chunks) */
    int pass_cache;         /* 0.8: steps with a norm pass (global-norm clipping, loss scaling): the norm
                               pass keeps the residual stream's gradient after each of the 2L + 1 norms
                               it passes (4 M (2L + 1) (N + 1) C bytes, "workspace"), and the update
                               pass restores it instead of computing the matmuls that only feed it
                               (the LM head's dX, each layer's gate/up and q/k/v dX), with bitwise the
                               same gradients. 0: on when checkpointing is off (the cache is then about
                               2 C against the ~15 C per token of each layer's kept activations);
                               1: also with checkpointing; -1: never */
} lomo_train_opts;

typedef struct lomo_step_info {
    float loss;             /* mean over counted positions */
    float grad_norm;        /* -1 when not computed */
    float clip_coef;
    int64_t n_tokens;       /* counted (label != -100) positions */
    int skipped;            /* 1: non-finite loss or gradient (overflow), or nothing counted; no weight was touched */
    float loss_scale;       /* the scale this step used (1 without loss scaling) */
    double loss_sum;        /* sum of the counted positions' losses, each rounded to a multiple of
                               2^-24 and added exactly: a sum of these over batches (an eval) does
                               not depend on how the tokens were grouped; NaN if any is not finite */
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
LOMODEF const float  *lomo_logits(const lomo_trainer *t);  /* (B,T,V) after lomo_forward, backend memory;
                                                              NULL when the head runs in chunks (head_chunk) */
LOMODEF int64_t       lomo_trainer_step(const lomo_trainer *t);   /* steps taken (skipped ones excluded) */
LOMODEF float         lomo_trainer_loss_scale(const lomo_trainer *t);
/* The trainer's state for resuming: optimizer state (AdaLomo's factored
   moments, AdamW's m and v), step, loss scale and its clean-step count, the
   stochastic-rounding seed. lomo_save_opts.trainer writes it into a
   checkpoint as trainer.safetensors; lomo_trainer_resume reads it back. */
LOMODEF int           lomo_trainer_resume(lomo_trainer *t, const char *checkpoint_dir);

#ifndef LOMO_NO_DATA   /* section 10 */

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
   - a path ending in ".json" may also hold one JSON array of those objects
     (errors then name the line where the element starts).
   - a path ending in ".txt": plain text (with lomo_data_opts.tokenizer; see
     "text datasets and chat templates" below), and JSON Lines files may also
     hold the text formats described there.
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
    /* text formats (see "text datasets and chat templates" below); ignored by the others */
    const struct lomo_tokenizer *tokenizer;   /* NULL: text is refused by name */
    const char *chat_template;  /* {"messages"} lines: a built-in template's name; NULL: refused */
} lomo_data_opts;

struct lomo_tokenizer;
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

/* Data parallelism: `world` ranks (rank in [0, world)), each training `batch`
   rows per micro-batch and `micro_batches` (M) micro-batches per step. All
   ranks together train one step of M x world x batch rows, as a single
   process with that many would. The step as lomo_data_next reads it (B = M x
   world x batch) is laid out micro-batch by micro-batch and, inside one, rank
   by rank: row (j world + r) batch + b is row b of rank r's micro-batch j.
   lomo_batch_slice moves rank r's rows to the front of tokens (and labels,
   unless NULL), in place and in order: then rows [j batch, (j + 1) batch)
   are rank r's micro-batch j, the M x batch rows it passes to lomo_step; the
   rows after them are left unspecified. So the slices of ranks 0..world-1,
   taken micro-batch by micro-batch, concatenate to the unsliced step, and
   with world = 1 the call changes nothing. Every rank reads the whole step,
   so all ranks keep the same data position (lomo_data_tell). At the end of
   an epoch the step's last rows are padding (labels -100, see above): a
   rank's slice may then be padding only; lomo_step's loss is the mean over
   the counted tokens of every rank, so that is still the step one process
   would take. Returns 0, or -1 (rank outside [0, world), batch, M or world
   below 1, M x world x batch rows above INT_MAX, seq_len below 1).
   lomo_data_next_rank reads the step into tokens / labels (each M x world x
   batch x seq_len int32, seq_len the data's) and slices it: it returns the
   number of real rows of the whole step, as lomo_data_next, or -1 (the
   arguments are checked before anything is read). */
LOMODEF int           lomo_batch_slice(int32_t *tokens, int32_t *labels, int seq_len, int batch, int micro_batches,
                                       int rank, int world);
LOMODEF int           lomo_data_next_rank(lomo_data *d, int batch, int micro_batches, int rank, int world,
                                          int32_t *tokens, int32_t *labels);

/* ---- text datasets and chat templates ----

   With lomo_data_opts.tokenizer set, lomo_data_open also reads text. A
   JSON Lines file's format is that of its first line; every other line must
   have the same one (else "<file>:<line>: ... one format per file"):
     {"input_ids": [...], "labels": [...]}  as above (other keys ignored)
     {"text": "..."}                  causal LM: encode(text, add_special=1),
                                      every token counts
     {"prompt": "...", "completion": "..."}
                                      encode(prompt + completion, add_special=1);
                                      a token counts when one of its bytes is
                                      in the completion (special tokens the
                                      post-processor appends after it count
                                      too); no EOS is added: write it into the
                                      completion if wanted
     {"instruction": "...", "input": "...", "output": "..."}  (alpaca; input
                                      optional) as prompt + completion, with the
                                      Stanford Alpaca prompt (LOMO_ALPACA_PROMPT
                                      and LOMO_ALPACA_PROMPT_NO_INPUT below)
     {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}
                                      rendered with the chat template named by
                                      lomo_data_opts.chat_template, then
                                      encode(rendered, add_special=0); labels
                                      as lomo_chat_encode
   A path ending in ".txt" is one plain-text document: encode(file,
   add_special=1), cut into examples of seq_len tokens like a packed file.
   Each example is tokenized once, when the file is opened; one longer than
   seq_len keeps its first seq_len tokens (lomo_data_truncated counts them).
   Every id must be below vocab_size (the model's). */
#define LOMO_ALPACA_PROMPT "Below is an instruction that describes a task, paired with an input that provides " \
    "further context. Write a response that appropriately completes the request.\n\n### Instruction:\n%s\n\n" \
    "### Input:\n%s\n\n### Response:\n"
#define LOMO_ALPACA_PROMPT_NO_INPUT "Below is an instruction that describes a task. Write a response that " \
    "appropriately completes the request.\n\n### Instruction:\n%s\n\n### Response:\n"

LOMODEF int64_t lomo_data_truncated(const lomo_data *d);   /* examples cut to seq_len */
/* Example i in file order without padding or copying: its length; *tokens and
   (unless labels is NULL) *labels point into d. -1 if i is out of range. */
LOMODEF int64_t lomo_data_example(const lomo_data *d, int64_t i, const int32_t **tokens, const int32_t **labels);

/* Chat templates, built in by name. Each renders a conversation exactly as
   transformers' apply_chat_template(messages, tokenize=False) does with the
   family's official Jinja template (no Jinja interpreter here):
     llama3   Llama-3-Instruct: <|begin_of_text|>, then per message
              <|start_header_id|>ROLE<|end_header_id|>\n\n CONTENT <|eot_id|>
              with CONTENT stripped of white space (Jinja's trim)
     chatml   Qwen2.5-Instruct: per message <|im_start|>ROLE\nCONTENT<|im_end|>\n,
              after a default system message "You are Qwen, created by Alibaba
              Cloud. You are a helpful assistant." when the first is not system
     qwen2    Qwen2-Instruct: chatml with the default "You are a helpful assistant."
     mistral  Mistral-7B-Instruct v0.1 / v0.2: <s>[INST] USER [/INST]ASSISTANT</s>...;
              an optional first system message is joined to the first user
              message as SYSTEM\n\nUSER; then roles alternate user, assistant
     mistral-v1  the same with the spacing of mistral-common's v1 tokenizer (the
              revised Mistral-7B-Instruct-v0.1 template):
              <s> [INST] USER [/INST] ASSISTANT</s> [INST] ...
   Roles are system, user and assistant. Labels (lomo_chat_encode, the
   {"messages"} data format) follow transformers' assistant-token mask: a
   token counts when one of its bytes comes from an assistant message's
   content, and so does the end-of-turn token right after that content
   (<|eot_id|>, <|im_end|>, </s>); every other label is -100. */
typedef struct lomo_chat_msg { const char *role, *content; } lomo_chat_msg;

/* *text gets the rendered conversation (NUL-terminated, LOMO_MALLOC'd; its
   length in *len unless len is NULL); *spans (unless NULL; LOMO_MALLOC'd)
   gets 2 int64 per assistant message: the byte range [start, end) of its
   content and the end-of-turn token after it. Returns the number of
   assistant messages, or -1 + lomo_error(). */
LOMODEF int         lomo_chat_render(const char *name, const lomo_chat_msg *msgs, int n, char **text, size_t *len,
                                     int64_t **spans);
/* Which built-in template a model's chat_template is: path is a model
   directory (its chat_template.jinja, else tokenizer_config.json's
   "chat_template", a string or a list of {"name", "template"} where "default"
   is taken) or one of those files. Returns a name, or NULL + lomo_error()
   when the template is absent or not recognisably one of the built-in ones. */
LOMODEF const char *lomo_chat_template_detect(const char *path);
LOMODEF const char *lomo_chat_template_names(void);   /* "llama3, chatml, qwen2, mistral, mistral-v1" */
#ifndef LOMO_NO_TOKENIZER
/* Renders and tokenizes a conversation as training consumes it: *ids =
   encode(rendered, add_special=0), *labels = the id where the token counts,
   else -100 (both LOMO_MALLOC'd). The template's special tokens must be in
   the tokenizer. Returns the number of tokens, or -1 + lomo_error(). */
LOMODEF int64_t     lomo_chat_encode(const struct lomo_tokenizer *tk, const char *name, const lomo_chat_msg *msgs,
                                     int n, int32_t **ids, int32_t **labels);
#endif

#endif /* LOMO_NO_DATA: section 10 */

#ifndef LOMO_NO_MC   /* section 11 */

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

#endif /* LOMO_NO_MC: section 11 */

#ifndef LOMO_NO_TOKENIZER
/* ---- tokenizer (LOMO_NO_TOKENIZER) ---- */

/* A Hugging Face tokenizer.json, encoded and decoded exactly as the
   `tokenizers` library does (BPE: byte-level with the GPT-2 / Llama 3 / Qwen2
   split patterns, or SentencePiece-style with byte fallback; added tokens;
   TemplateProcessing; the usual decoders). Whatever the file uses that lomo
   does not implement is refused by name at load. A tokenizer may be used
   from several threads at once. */
typedef struct lomo_tokenizer lomo_tokenizer;
/* path: a model directory holding tokenizer.json, or a tokenizer.json file */
LOMODEF lomo_tokenizer *lomo_tokenizer_load(const char *path);
LOMODEF void            lomo_tokenizer_free(lomo_tokenizer *tk);
/* Encode len bytes of UTF-8 as tokenizers' Tokenizer.encode(text, add_special_tokens=add_special).
   *ids gets the ids (LOMO_MALLOC'd; free with LOMO_FREE). If spans != NULL, *spans gets 2 int64 per
   id: the byte range [start, end) of text the token came from, as the library's offsets (special
   tokens added by the post-processor get an empty range). Returns the count, or -1 + lomo_error(). */
LOMODEF int64_t         lomo_tokenize(const lomo_tokenizer *tk, const char *text, size_t len,
                                      int add_special, int32_t **ids, int64_t **spans);
/* decode(ids, skip_special_tokens=skip_special): a NUL-terminated UTF-8 string (LOMO_MALLOC'd), or NULL */
LOMODEF char           *lomo_detokenize(const lomo_tokenizer *tk, const int32_t *ids, int64_t n,
                                        int skip_special);
/* the same, with the length in *len (the text may hold NUL bytes, e.g. from a <0x00> token) */
LOMODEF char           *lomo_detokenize_len(const lomo_tokenizer *tk, const int32_t *ids, int64_t n,
                                            int skip_special, size_t *len);
LOMODEF int32_t         lomo_token_id(const lomo_tokenizer *tk, const char *token);  /* vocab or added token; -1 if none */
LOMODEF const char     *lomo_token_str(const lomo_tokenizer *tk, int32_t id);        /* its string in the vocab/added tokens, or NULL */
LOMODEF int32_t         lomo_tokenizer_vocab_size(const lomo_tokenizer *tk);        /* 1 + the largest id */
LOMODEF int             lomo_token_is_special(const lomo_tokenizer *tk, int32_t id);
#endif

/* splitmix64: a reproducible stream of 64-bit values from *state (any seed) */
LOMODEF uint64_t lomo_rand_u64(uint64_t *state);

#ifndef LOMO_NO_GENERATE   /* section 13 */

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

#else   /* LOMO_NO_GENERATE: section 13 */
typedef struct lomo_kv lomo_kv;   /* still named by the driver's forward context */
#endif /* LOMO_NO_GENERATE: section 13 */

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
/* the formula for a model as loaded: its storage dtype (m->cfg.dtype) and shape */
LOMODEF size_t      lomo_memory_formula_model(const lomo_model *m, const lomo_train_opts *o,
                                              size_t per_tag[LOMO_MEM_NTAGS]);
LOMODEF size_t      lomo_memory_formula(const lomo_config *c, const lomo_train_opts *o,
                                        size_t per_tag[LOMO_MEM_NTAGS]);
LOMODEF const char *lomo_mem_tag_name(int tag);

/* ---- JSON reader: the one lomo's own readers use, for a program's own JSON ----

   Strict RFC 8259: UTF-8 only, \u escapes with paired surrogates, at most 64
   nested containers, no object naming a key twice (keys compare by their
   decoded bytes). lomo_json_parse parses s[0, len): with end NULL only
   whitespace may follow the value; with end given, parsing stops after the
   value and *end is the byte after it (after a syntax error: the byte where
   it was found), so the caller decides what may follow. NULL on error, with
   "<what>: invalid JSON at byte N: reason" in lomo_error(). The tree
   keeps pointers into s: s must outlive it.
   Nodes are ints; the root is node 0. An array's elements and an object's
   member values are chained in document order: lomo_json_first, then
   lomo_json_next until -1; lomo_json_key gives a member value's key (a
   string node). Calls on a node that is not there (-1, or another type)
   return -1 / NULL / 0 and do not crash. */
enum { LOMO_JSON_OBJECT, LOMO_JSON_ARRAY, LOMO_JSON_STRING, LOMO_JSON_NUMBER, LOMO_JSON_TRUE, LOMO_JSON_FALSE,
       LOMO_JSON_NULL };
typedef struct lomo_json lomo_json;
LOMODEF lomo_json *lomo_json_parse(const char *s, size_t len, size_t *end, const char *what);
LOMODEF void       lomo_json_free(lomo_json *j);
LOMODEF int        lomo_json_type(const lomo_json *j, int node);    /* LOMO_JSON_*, or -1 */
LOMODEF int        lomo_json_count(const lomo_json *j, int node);   /* elements / members; 0 for scalars; -1 */
LOMODEF int        lomo_json_first(const lomo_json *j, int node);   /* first element / member value, or -1 */
LOMODEF int        lomo_json_next(const lomo_json *j, int node);    /* the next one in the same container, or -1 */
LOMODEF int        lomo_json_key(const lomo_json *j, int node);     /* a member value's key node, or -1 */
LOMODEF int        lomo_json_get(const lomo_json *j, int obj, const char *key);   /* member value, or -1 */
/* an integer literal (no fraction, no exponent): 0 and *v; -1 not a number or
   not an integer literal; -2 an integer literal beyond +-2^53 */
LOMODEF int        lomo_json_int(const lomo_json *j, int node, int64_t *v);
LOMODEF int        lomo_json_number(const lomo_json *j, int node, double *v);   /* any number: 0 and *v, or -1 */
/* A string node decoded: LOMO_MALLOC'd, NUL-terminated, *len bytes (len may
   be NULL; a \u0000 decodes to a NUL byte inside); free with LOMO_FREE. NULL
   (lomo_error() set) when node is not a string or memory ran out. */
LOMODEF char      *lomo_json_string(const lomo_json *j, int node, size_t *len);

/* ---- errors ---- */

LOMODEF const char *lomo_error(void);   /* why the last call failed (this thread) */

/* ---- backend interface (for backend authors: the CPU table is section 5,
   CUDA is in lomo_cuda.cuh). Activations are fp32, (rows, cols) row-major;
   N = B*T. Weights are lomo_tensor so a backend can dispatch on the storage
   dtype. ---- */

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
    int grads16;        /* 0.7: 1 if, with 16-bit storage, gradients pass through 16-bit operands (CUDA:
                           the dW GEMMs take x and dy in the storage dtype), so f16 storage turns loss
                           scaling on by default; 0 (the CPU): gradients are fp32 throughout */
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
       set_scratch before every forward/step, with the dtype of the model's
       activation GEMM operands (its storage dtype); p is NULL when it needs
       none, so no other trainer's scratch or dtype stays in use. */
    size_t (*scratch_bytes)(void *ctx, const lomo_model *m, int N, int gram);
    void (*set_scratch)(void *ctx, void *p, size_t bytes, int act_dtype);
    /* 1 if every stored element of p (p->numel, any dtype) is finite, else 0: the trainer's
       check after each update. NULL: the trainer tests param_sumsq for finiteness instead.
       The CPU's built-in update reads back what it stores (in cache) and answers for the
       tensor it just wrote without another pass. */
    int (*all_finite)(void *ctx, const lomo_tensor *p);

    /* ---- 0.5: ops of Qwen3 and Gemma 2/3 (a backend may leave them NULL:
       models that need them are then refused by lomo_trainer_new) ---- */
    /* y (N,C) = x * rstd * (w_offset + w); rstd (N) saved (Gemma: w_offset 1) */
    void (*rmsnorm_ex_fwd)(void *ctx, float *y, float *rstd, const float *x, const lomo_tensor *w,
                           int N, int C, float eps, float w_offset);
    /* dx (N,C) += d/dx; dw (C) = d/dw (overwritten) */
    void (*rmsnorm_ex_bwd)(void *ctx, float *dx, float *dw, const float *dy, const float *x,
                           const lomo_tensor *w, const float *rstd, int N, int C, float w_offset);
    /* x (n) *= s */
    void (*scale)(void *ctx, float *x, float s, size_t n);
    /* h = gelu_tanh(g) * u (GeGLU); backward as swiglu_bwd (dg may alias dh) */
    void (*geglu_fwd)(void *ctx, float *h, const float *g, const float *u, size_t n);
    void (*geglu_bwd)(void *ctx, float *dg, float *du, const float *dh, const float *g,
                      const float *u, size_t n);
    /* attn_fwd / attn_bwd with scores s = scale q.k, soft-capped to cap tanh(s / cap)
       when cap > 0, and query t seeing keys t - window < j <= t when window > 0 */
    void (*attn_ex_fwd)(void *ctx, float *out, float *lse, const float *q, const float *k,
                        const float *v, int B, int T, int nh, int nkv, int hd,
                        float scale, float cap, int window);
    void (*attn_ex_bwd)(void *ctx, float *dq, float *dk, float *dv, const float *dout,
                        const float *q, const float *k, const float *v, const float *out,
                        const float *lse, int B, int T, int nh, int nkv, int hd,
                        float scale, float cap, int window);
    /* cross_entropy of the soft-capped logits c = cap tanh(logits / cap): losses (N);
       with dlogits (may alias logits) the gradient with respect to the raw logits,
       (softmax(c) - onehot) (1 - (c / cap)^2) dscale; without, logits are
       replaced by c (what transformers returns as logits) */
    void (*cross_entropy_softcap)(void *ctx, float *losses, float *dlogits, float *logits,
                                  const int32_t *targets, int N, int V, float dscale, float cap);
    /* rope on the first rot dims of each head of x (B,T,nh,hd) (partial rotary: pairs
       (i, i + rot/2), i < rot/2, inv_freq rot/2 floats), the rotated dims times mscale
       (longrope's attention factor); the other dims pass through. inverse=1: the adjoint
       (inverse rotation, times mscale), for the backward */
    void (*rope_ex)(void *ctx, float *x, const float *inv_freq, int B, int T, int nh, int hd, int rot, float mscale,
                    int inverse);
    /* generation (KV cache). x (N,nh,hd) rotated in place like rope_ex (the first
       rot dims of each head, inv_freq rot/2 floats, rotated dims times mscale; rot = hd
       and mscale = 1 is plain rope), row i at absolute position pos0 + i (forward only) */
    void (*rope_at)(void *ctx, float *x, const float *inv_freq, int N, int nh, int hd, int rot, float mscale,
                    int pos0);
    /* causal GQA attention of N new queries q (N,nh,hd) at positions pos0..pos0+N-1
       over the cached keys/values kc, vc (pos0+N, nkv, hd): scores s = scale q.k,
       soft-capped to cap tanh(s / cap) when cap > 0 (attn_ex_fwd's arithmetic); query at
       position p sees keys j <= p, and with window > 0 only j > p - window (Mistral's,
       Phi-3's and Gemma's local layers' sliding window, as transformers masks it) -> out (N,nh,hd) */
    void (*attn_kv)(void *ctx, float *out, const float *q, const float *kc, const float *vc,
                    int N, int pos0, int nh, int nkv, int hd, float scale, float cap, int window);
    /* 0.6: scratch_bytes when the LM head runs head_rows (<= N) tokens at a time
       (lomo_train_opts.head_chunk); NULL: scratch_bytes (it does not depend on them) */
    size_t (*scratch_bytes_rows)(void *ctx, const lomo_model *m, int N, int head_rows, int gram);
    /* 0.6: the built-in LOMO rule fused with a linear weight's gradient, for a step
       where the rule needs nothing of the gradient but itself (LOMO, no clip_value,
       the clip coefficient known): w (O,K) = w (1 - lr weight_decay) -
       lr clip_coef inv_loss_scale dy^T x, dy (N,O), x (N,K), in blocks of the rows
       whose gradient fits gbuf (gbuf_floats >= K; none needed for fp32 w on CUDA,
       where the GEMM writes into w), 16-bit w rounded as update rounds it (the
       same hash of shard_off + element). NULL: the driver forms dW and calls the rule. */
    void (*linear_update)(void *ctx, lomo_tensor *w, const float *dy, const float *x, int N, int K, int O,
                          float *gbuf, size_t gbuf_floats, const lomo_update_args *a);
    /* 0.6, generation: y_j (N,O_j) = x (N,K) W_j^T + b_j (b_j may be NULL) for j < n, the
       weights that share x (Q/K/V, gate/up), as n matmul_fwd calls would compute them; the
       CPU streams the rows of all n in one pass when N = 1. NULL: the driver makes the calls */
    void (*matmul_fwd_n)(void *ctx, int n, float *const *y, const float *x, const lomo_tensor *const *w,
                         const lomo_tensor *const *b, int N, int K, const int *O);
};

LOMODEF const lomo_backend *lomo_cpu_backend(void);
/* What the CPU backend's matmuls run on, for logs and benchmarks: "OpenBLAS 0.3.21, Haswell
   kernels (OPENBLAS_CORETYPE=Haswell)", "CBLAS" (another CBLAS), or "OpenMP loops (no CBLAS)". */
LOMODEF const char *lomo_cpu_blas(void);
/* The backend named by spec: "cpu" (lomo_cpu_backend), "cuda" (device 0) or "cuda:N"
   (device N; needs LOMO_CUDA defined, in this file and in the object that holds
   lomo_cuda.cuh's implementation, e.g. examples/cuda_impl.cu built by nvcc).
   NULL with lomo_error() for a spec of another form, a build without LOMO_CUDA
   (naming the define), or a device CUDA cannot start. The table is the library's:
   pass it to lomo_load_opts.backend, copy it to change an op, never free it. */
LOMODEF const lomo_backend *lomo_backend_open(const char *spec);
#ifdef LOMO_CUDA
const lomo_backend *lomo_cuda_backend(int device);   /* lomo_cuda.cuh */
#endif

#ifdef __cplusplus
}
#endif
#endif /* LOMO_H */

/* ======================================================================== */
/* 2. implementation: includes, errors, allocation, internal declarations   */
/* ======================================================================== */

#ifdef LOMO_IMPLEMENTATION
#ifndef LOMO__IMPLEMENTED
#define LOMO__IMPLEMENTED

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <errno.h>
#include <limits.h>
#include <sys/stat.h>

/* Host memory: every host allocation of lomo.h goes through these three (the
   backends' device memory through lomo_backend.alloc). Define all or none. */
#if defined(LOMO_MALLOC) && defined(LOMO_REALLOC) && defined(LOMO_FREE)
/* the user's */
#elif !defined(LOMO_MALLOC) && !defined(LOMO_REALLOC) && !defined(LOMO_FREE)
#define LOMO_MALLOC(sz) malloc(sz)
#define LOMO_REALLOC(p, sz) realloc(p, sz)
#define LOMO_FREE(p) free(p)
#else
#error "lomo.h: define all of LOMO_MALLOC, LOMO_REALLOC and LOMO_FREE, or none of them"
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

/* Host allocations through LOMO_MALLOC that leave "out of host memory" in
   lomo_error() when they fail (a caller may then name what it was for).
   lomo__calloc: n * size zeroed bytes, refused if the product overflows.
   Never 0 bytes (an allocator may answer NULL to that). Free with LOMO_FREE. */
static void *lomo__malloc(size_t bytes) {
    void *p = LOMO_MALLOC(bytes ? bytes : 1);
    if (!p) lomo__fail("out of host memory (%zu bytes)", bytes);
    return p;
}
static void *lomo__calloc(size_t n, size_t size) {
    void *p;
    if (size && n > (size_t)-1 / size) { lomo__fail("out of host memory (%zu x %zu bytes)", n, size); return NULL; }
    if ((p = lomo__malloc(n * size))) memset(p, 0, n * size);
    return p;
}


#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* ---- internal declarations: the static functions used before their definition ---- */
typedef struct lomo__layer_row lomo__layer_row;
static int64_t lomo__head_rows(const lomo_config *c, const lomo_train_opts *o);
static void lomo__builtin_args(lomo_update_args *a, const lomo_update_ctx *ctx, int rule);
static int lomo__builtin_update(lomo_trainer *t, lomo_tensor *p, const float *g, double param_sumsq);
static int64_t lomo__shard_cap(const lomo_model *m, const lomo_tensor *t);
static size_t lomo__stored_bytes(const lomo_model *m, const lomo_tensor *t);
static const lomo__layer_row *lomo__layer_rows(void);
static int lomo__layer_has(const lomo_config *c, int when);
static lomo_tensor **lomo__layer_field(lomo_layer *L, size_t field);
static lomo_tensor *lomo__layer_get(const lomo_layer *L, size_t field);
static int lomo__layer_local(const lomo_config *c, int l);
/* ---- end of internal declarations ---- */

/* ======================================================================== */
/* 3. dtype conversion: bf16 / fp16 <-> fp32, round to nearest even         */
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
/* 4. memory accounting: tagged allocations, lomo_memory_formula            */
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

/* dynamic loss scaling for these options: on when asked (loss_scaling 1), or by default for f16
   storage where gradients pass through 16-bit operands (grads16) or a loss_scale_* knob is set */
static int lomo__scaling_on(lomo_dtype dt, const lomo_train_opts *o, int grads16) {
    return o->loss_scaling > 0 ||
           (o->loss_scaling == 0 && dt == LOMO_F16 &&
            (grads16 || o->loss_scale_init != 0 || o->loss_scale_growth != 0 || o->loss_scale_backoff != 0 ||
             o->loss_scale_min != 0 || o->loss_scale_window != 0));
}
/* steps run a norm pass (global-norm clipping or loss scaling) and it keeps the pass cache
   (lomo_train_opts.pass_cache: 0 = when checkpointing is off, which M > 1 turns on) */
static int lomo__pass_cache_on(const lomo_config *c, const lomo_train_opts *o, int grads16) {
    int norm_pass = (o->clip_norm > 0.0f && o->clip_mode != LOMO_CLIP_TENSOR) || lomo__scaling_on(c->dtype, o, grads16);
    int ckpt = o->checkpointing || o->micro_batches > 1;
    return norm_pass && (o->pass_cache > 0 || (o->pass_cache == 0 && !ckpt));
}
static size_t lomo__formula(const lomo_config *c, const lomo_train_opts *o, int grads16, size_t per_tag[LOMO_MEM_NTAGS]);

LOMODEF size_t lomo_memory_formula_model(const lomo_model *m, const lomo_train_opts *o, size_t per_tag[LOMO_MEM_NTAGS]) {
    return lomo__formula(&m->cfg, o, m->be->grads16, per_tag);   /* m->cfg.dtype is the storage dtype */
}

/* The doc block's formula: see "Memory" at the top of this file. A config alone
   names no backend: its loss-scaling default is the CPU's (grads16 = 0). */
LOMODEF size_t lomo_memory_formula(const lomo_config *c, const lomo_train_opts *o, size_t per_tag[LOMO_MEM_NTAGS]) {
    return lomo__formula(c, o, 0, per_tag);
}
static size_t lomo__formula(const lomo_config *c, const lomo_train_opts *o, int grads16, size_t per_tag[LOMO_MEM_NTAGS]) {
    size_t N = (size_t)o->batch * o->seq_len, C = c->dim, H = c->hidden_dim, L = c->n_layers,
           V = c->vocab_size, qd = (size_t)c->n_heads * c->head_dim,
           kvd = (size_t)c->n_kv_heads * c->head_dim, M = o->micro_batches > 1 ? (size_t)o->micro_batches : 1;
    size_t hd = c->head_dim, extra_v = (c->qk_norm ? 2 * hd : 0) + (c->gemma ? 2 * C : 0);   /* 0.5's vectors */
    size_t layer_p = 2 * C + C * (2 * qd + 2 * kvd) + 3 * C * H + extra_v;
    size_t P = V * C * (c->tie_embeddings ? 1 : 2) + C + L * layer_p;
    size_t layer = 3 * C + 2 * qd + 2 * kvd + 3 * H       /* one layer's working set per token */
                 + (c->qk_norm ? qd + kvd : 0) + (c->gemma ? 2 * C : 0);
    size_t biggest = V * C > H * C ? V * C : H * C;       /* the largest single tensor */
    size_t S = (o->checkpointing || M > 1) ? 1 : L, bytes = c->dtype == LOMO_F32 ? 4 : 2;
    size_t t[LOMO_MEM_NTAGS] = {0}, total = 0;
    int i;
    if (qd * C > biggest) biggest = qd * C;
    if (c->fused_proj && (qd + 2 * kvd) * C > biggest) biggest = (qd + 2 * kvd) * C;   /* qkv_proj */
    if (c->fused_proj && 2 * H * C > biggest) biggest = 2 * H * C;                    /* gate_up_proj */
    if (M > 1 && layer_p > biggest) biggest = layer_p;   /* one layer's gradients at once */
    t[LOMO_MEM_PARAMS] = bytes * P;
    t[LOMO_MEM_ACTIVATIONS] = 4 * (N * (M * (L + 1) * C + S * layer + C) + (size_t)lomo__head_rows(c, o) * V);
    t[LOMO_MEM_GRADIENTS] = 4 * biggest;
    t[LOMO_MEM_WORKSPACE] = 4 * N * (M * C + C + 2 * qd + 2 * kvd + 2 * H);
    if (bytes == 2) t[LOMO_MEM_WORKSPACE] += 4 * biggest;   /* CPU: 16-bit weights widened for BLAS */
    if (lomo__pass_cache_on(c, o, grads16)) t[LOMO_MEM_WORKSPACE] += 4 * M * (2 * L + 1) * (N + 1) * C;
    if (!o->update && o->optimizer == LOMO_OPT_ADAMW) t[LOMO_MEM_OPTIMIZER] = 8 * P;
    if (!o->update && o->optimizer == LOMO_OPT_ADALOMO)   /* rows + cols per matrix, numel per vector */
        t[LOMO_MEM_OPTIMIZER] = 4 * ((V + C) * (c->tie_embeddings ? 1 : 2) + C +
                                     L * (2 * C + (qd + C) * 2 + (kvd + C) * 2 + 3 * (H + C) +
                                          (c->qkv_bias ? qd + 2 * kvd : 0) + (c->o_bias ? C : 0) + extra_v
                                          /* fused: one rows + cols for qkv and for gate_up */
                                          - (c->fused_proj ? 2 * C + C : 0)));
    for (i = 0; i < LOMO_MEM_NTAGS; i++) { if (per_tag) per_tag[i] = t[i]; total += t[i]; }
    return total;
}

/* ======================================================================== */
/* 5. CPU backend: the backend table's kernels, OpenMP, CBLAS optional      */
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

/* what the CPU matmuls run on; OpenBLAS's kernels follow the CPU unless OPENBLAS_CORETYPE
   names others (measured on a 2-core AVX-512 machine: sgemm at n = 2048 243 GFLOP/s with
   OPENBLAS_CORETYPE=Haswell, 439 with OpenBLAS's own choice, Cooperlake), so it is shown */
LOMODEF const char *lomo_cpu_blas(void) {
#if defined(LOMO_CBLAS) && defined(OPENBLAS_VERSION)
    static char buf[192];
    char ver[48];
    const char *core = openblas_get_corename(), *env = getenv("OPENBLAS_CORETYPE");
    size_t n;
    snprintf(ver, sizeof ver, "%s", &OPENBLAS_VERSION[OPENBLAS_VERSION[0] == ' ']);
    n = strlen(ver);
    while (n > 0 && ver[n - 1] == ' ') ver[--n] = 0;   /* " OpenBLAS 0.3.21 " */
    if (env) snprintf(buf, sizeof buf, "%s, %s kernels (OPENBLAS_CORETYPE=%.40s)", ver, core ? core : "?", env);
    else snprintf(buf, sizeof buf, "%s, %s kernels", ver, core ? core : "?");
    return buf;
#elif defined(LOMO_CBLAS)
    return "CBLAS";
#else
    return "OpenMP loops (no CBLAS)";
#endif
}

#define LOMO__MAX_HEAD_DIM 1024

typedef struct lomo__cpu {
    int err; char msg[256]; float *scratch; size_t scratch_bytes;
    const void *fin_data; long long fin_n; int fin_ok;   /* the last update: its tensor, and whether all it stored is finite */
} lomo__cpu;

/* ---- threads: the cores that are free, none for small work, more for big work under load ----
   OpenMP threads that spin at barriers (GOMP's default wait policy, read from
   the environment before any code of ours runs) fight other processes for
   the cores at every parallel region: on a busy machine a step became 20x
   slower. So every region here asks lomo__nt(work) for its team size: 1 when
   the work is too small to split (LOMO_CPU_MIN_WORK element operations);
   omp_get_max_threads() when the machine has that many cores free (Linux:
   /proc/loadavg minus this process's own running threads, sampled every
   50 ms, averaged over the last 4 samples; only when the process may use
   every online CPU, as loadavg cannot tell which CPUs the others run on);
   on a busy machine, the free cores (at least 1) for a region shorter than
   about a scheduler time slice, and twice omp_get_max_threads() for a longer
   one (LOMO_CPU_OVERSUB_WORK element operations: the big matmuls and
   attention). Measured on 2 cores with a busy loop on each (README): one
   thread keeps 0.37x of the idle speed; a team of as many threads as cores
   loses its time at barriers whenever the scheduler runs one member and not
   the other; twice as many threads, each with its own block of the matmul
   (lomo__sgemm_split_ab cuts up to 2 x omp_get_max_threads() blocks), keep
   0.5x, as with more threads than CPUs libgomp waits at barriers in the
   kernel instead of spinning. (With the busy loops in another session, which
   Linux's autogroup gives half the machine whatever its threads, they keep
   about 0.93x of what one thread keeps.) Short regions stay at the free
   cores: waking more threads than that costs more than the region. Every
   CPU kernel's result is independent of its team size (fixed split points,
   fixed-chunk sums), so this changes no result, and bitwise resume holds
   under any load.
   LOMO_CPU_FIXED_THREADS turns the load probe off. */
#ifndef LOMO_CPU_MIN_WORK
#define LOMO_CPU_MIN_WORK 32768
#endif
#ifndef LOMO_CPU_OVERSUB_WORK
#define LOMO_CPU_OVERSUB_WORK 4e6
#endif
#ifdef _OPENMP
#if defined(__linux__) && !defined(LOMO_CPU_FIXED_THREADS)
#include <dirent.h>
/* runnable threads of other processes right now, or -1 if unknown */
static int lomo__other_running(void) {
    char buf[256], path[300];
    int fd = open("/proc/loadavg", O_RDONLY), total = -1, ours = 0, sp = 0;
    ssize_t n, i;
    DIR *d;
    struct dirent *e;
    if (fd < 0) return -1;
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    for (i = 0; i < n && sp < 3; i++) sp += buf[i] == ' ';   /* "0.10 0.20 0.30 R/T pid" */
    if (sp == 3 && buf[i] >= '0' && buf[i] <= '9') total = atoi(buf + i);
    if (total < 0 || !(d = opendir("/proc/self/task"))) return -1;
    while ((e = readdir(d)) != NULL) {
        char *rp;
        if (e->d_name[0] < '0' || e->d_name[0] > '9' || strlen(e->d_name) > 20) continue;
        snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
        if ((fd = open(path, O_RDONLY)) < 0) continue;
        n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0) continue;
        buf[n] = 0;
        rp = strrchr(buf, ')');             /* "tid (comm) S ...": comm may hold anything */
        if (rp && rp[1] == ' ' && rp[2] == 'R') ours++;
    }
    closedir(d);
    return total > ours ? total - ours : 0;
}
static int lomo__all_cpus(void) {
#ifdef _SC_NPROCESSORS_ONLN
    return (long)omp_get_num_procs() >= sysconf(_SC_NPROCESSORS_ONLN);
#else
    return 0;
#endif
}
#endif
static int lomo__nt_now = 0;          /* cores that others leave free (the probe's last answer) */
static double lomo__nt_when = -1.0;
static int lomo__nt_hist[4], lomo__nt_nhist = 0;
static int lomo__nt_force = 0;        /* tests: > 0, every region that splits gets this team */

/* the team size for a region doing about `work` element operations */
static int lomo__nt(double work) {
    int maxt = omp_get_max_threads(), nt;
    if (work < LOMO_CPU_MIN_WORK || maxt <= 1 || omp_in_parallel()) return 1;
    if (lomo__nt_force > 0) return lomo__nt_force < 2 * maxt ? lomo__nt_force : 2 * maxt;
#if defined(__linux__) && !defined(LOMO_CPU_FIXED_THREADS)
    LOMO__OMP(critical(lomo__nt))
    {
        double now = omp_get_wtime();
        if (lomo__nt_when < 0.0 || now - lomo__nt_when > 0.05) {
            /* loadavg counts the whole machine: only meaningful when this
               process may run on all of it (not in a cpuset / taskset) */
            int o = lomo__all_cpus() ? lomo__other_running() : -1, k, sum = 0;
            lomo__nt_when = now;
            if (o >= 0) {
                lomo__nt_hist[lomo__nt_nhist++ % 4] = o;
                for (k = 0; k < (lomo__nt_nhist < 4 ? lomo__nt_nhist : 4); k++) sum += lomo__nt_hist[k];
                o = (2 * sum + k) / (2 * k);   /* rounded mean */
                lomo__nt_now = omp_get_num_procs() - o;
            } else lomo__nt_now = maxt;
        }
        nt = lomo__nt_now >= maxt ? maxt : work >= LOMO_CPU_OVERSUB_WORK ? 2 * maxt : lomo__nt_now;
    }
#else
    nt = maxt;
#endif
    return nt < 1 ? 1 : nt > 2 * maxt ? 2 * maxt : nt;
}
#endif
/* a parallel loop sized by lomo__nt */
#define LOMO__PFOR(work) LOMO__OMP(parallel for num_threads(lomo__nt((double)(work))))
#define LOMO__PAR(work) LOMO__OMP(parallel num_threads(lomo__nt((double)(work))))
/* with an OR of v over the iterations (order-free: still the same for any team size) */
#define LOMO__PFOR_OR(work, v) LOMO__OMP(parallel for num_threads(lomo__nt((double)(work))) reduction(|:v))

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

/* lomo_f16_to_f32 without branches, so that a loop over it vectorises: the
   15 low bits moved into place and the exponent rebiased (15 -> 127); inf and
   NaN (exponent 31) get exponent 255, payload kept; subnormals and zero
   (exponent 0) as m 2^-24, exactly, by subtracting 2^-14 from 2^-14 (1 + m/1024).
   test_precision checks it against lomo_f16_to_f32 on all 65536 values. */
static float lomo__f16_widen(uint16_t h) {
    uint32_t o = (uint32_t)(h & 0x7fffu) << 13, e = o & 0x0f800000u;
    o += 112u << 23;
    if (e == 0x0f800000u) o += 112u << 23;
    if (e == 0) o = lomo__f32_bits(lomo__bits_f32(o + (1u << 23)) - lomo__bits_f32(113u << 23));
    return lomo__bits_f32(o | (uint32_t)(h & 0x8000u) << 16);
}

/* F16C (x86 with GCC or clang; LOMO_NO_F16C turns it off): vcvtph2ps /
   vcvtps2ph convert 8 values an instruction, where the scalar code above
   takes a dozen integer operations a value (f16 storage widened 4x slower
   than bf16). Compiled for any x86 target through the target attribute and
   chosen at run time (lomo__f16c), so -march is not needed. Bitwise the same
   as lomo_f16_to_f32 / lomo_f32_to_f16: widening is exact, except that the
   hardware quiets a signalling NaN, so a block of 8 holding a NaN is redone
   by lomo__f16_widen; rounding to nearest even equals lomo_f32_to_f16 on all
   2^32 floats (checked once; test_precision checks every half and a sample
   of floats through both paths). */
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__)) && !defined(LOMO_NO_F16C)
#define LOMO__F16C 1
#include <immintrin.h>
#include <cpuid.h>
/* AVX usable (the builtin also asks the OS) and CPUID.1:ECX bit 29, F16C
   (clang 14 knows no "f16c" for __builtin_cpu_supports) */
static int lomo__f16c(void) {
    unsigned a, b, c = 0, d;
    return __builtin_cpu_supports("avx") && __get_cpuid(1, &a, &b, &c, &d) && (c >> 29 & 1u);
}
/* the 8 halves at s: any NaN among them (exponent 31, mantissa not 0) */
__attribute__((target("avx,f16c"))) static inline int lomo__f16c_nan8(__m128i h) {
    return _mm_movemask_epi8(_mm_cmpgt_epi16(_mm_and_si128(h, _mm_set1_epi16(0x7fff)), _mm_set1_epi16(0x7c00)));
}
/* d[i] = lomo__f16_widen(s[i]) for lo <= i < hi */
__attribute__((target("avx,f16c"))) static void lomo__f16c_widen(float *d, const uint16_t *s, long long lo, long long hi) {
    long long i = lo, j;
    for (; i + 8 <= hi; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(s + i));
        _mm256_storeu_ps(d + i, _mm256_cvtph_ps(h));
        if (lomo__f16c_nan8(h)) for (j = i; j < i + 8; j++) d[j] = lomo__f16_widen(s[j]);
    }
    for (; i < hi; i++) d[i] = lomo__f16_widen(s[i]);
}
#endif

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
    {   /* one loop per dtype, so that it vectorises (lomo__elem's switch per element did not) */
        const uint16_t *s = (const uint16_t *)w->data;
        float *d = c->scratch;
        if (w->dtype == LOMO_BF16) {
            LOMO__PFOR(n)
            for (i = 0; i < n; i++) d[i] = lomo__bits_f32((uint32_t)s[i] << 16);
        } else {
#ifdef LOMO__F16C
            if (lomo__f16c()) {   /* 64 fixed chunks: each element's value does not depend on the split */
                LOMO__PFOR(n)
                for (i = 0; i < 64; i++) lomo__f16c_widen(d, s, n * i / 64, n * (i + 1) / 64);
                return c->scratch;
            }
#endif
            LOMO__PFOR(n)
            for (i = 0; i < n; i++) d[i] = lomo__f16_widen(s[i]);
        }
    }
    return c->scratch;
}

static void *lomo__cpu_alloc(void *ctx, size_t n) { (void)ctx; return LOMO_MALLOC(n); }
static void lomo__cpu_free(void *ctx, void *p) { (void)ctx; LOMO_FREE(p); }
static void lomo__cpu_copy(void *ctx, void *d, const void *s, size_t n) { (void)ctx; memmove(d, s, n); }
static void lomo__cpu_zero(void *ctx, void *p, size_t n) { (void)ctx; memset(p, 0, n); }
static void lomo__axpy(float *y, float a, const float *x, int n);
static void lomo__cpu_add(void *ctx, float *y, const float *x, size_t n) {
    long long c, nn = (long long)n;
    (void)ctx;
    LOMO__PFOR(n)
    for (c = 0; c < 64; c++) {   /* y += 1 * x is exactly y += x */
        long long lo = nn * c / 64, hi = nn * (c + 1) / 64;
        for (; lo < hi; lo += 1 << 30) lomo__axpy(y + lo, 1.0f, x + lo, (int)(hi - lo < (1 << 30) ? hi - lo : 1 << 30));
    }
}
static int lomo__cpu_check(void *ctx) {   /* reports an earlier op's error once, then clears it */
    lomo__cpu *c = (lomo__cpu *)ctx;
    if (c && c->err) { c->err = 0; return lomo__fail("cpu backend: %s", c->msg); }
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

#ifdef LOMO_CBLAS   /* (the BLAS attention's softmax) */
/* max and sum of x[0..n-1] in eight fixed lanes (lane l takes i = l mod 8, in
   order; the lanes combine in a fixed tree), so that the loops vectorise and
   the result is the same in every build and on any thread count */
static float lomo__max8(const float *x, int n) {
    float m[8], r;
    int i, l;
    for (l = 0; l < 8; l++) m[l] = -INFINITY;
    for (i = 0; i + 8 <= n; i += 8)
        for (l = 0; l < 8; l++) m[l] = x[i + l] > m[l] ? x[i + l] : m[l];
    for (l = 0; i + l < n; l++) m[l] = x[i + l] > m[l] ? x[i + l] : m[l];
    r = m[0];
    for (l = 1; l < 8; l++) r = m[l] > r ? m[l] : r;
    return r;
}
static float lomo__sum8(const float *x, int n) {
    float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int i, l;
    for (i = 0; i + 8 <= n; i += 8)
        for (l = 0; l < 8; l++) s[l] += x[i + l];
    for (l = 0; i + l < n; l++) s[l] += x[i + l];
    return ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
}
#endif

static void lomo__axpy(float *y, float a, const float *x, int n) {
    int i;
    LOMO__OMP(simd)
    for (i = 0; i < n; i++) y[i] += a * x[i];
}

/* exp(x) without a library call, so that loops over it vectorise (omp simd):
   x = n ln2 + r, |r| <= ln2/2, n by the round-to-nearest of adding 1.5*2^23;
   e^r = 1 + r + r^2 P(r) with Cephes' degree-5 minimax P, times 2^n
   through the exponent bits. Max error 2 ulp against expf on [-87.3, 88.7]
   (test_ops measures it); below -87.33 it returns 0 (expf: subnormals or 0),
   above 88.72 inf, NaN stays NaN. Always inlined and branch-free: as a call
   (GCC's choice with this many callers), and with branches, no loop over it
   vectorised, and it took 16% of a long-sequence step. The same IEEE
   operations as the 0.5 version (-std=c11 contracts no FMAs): the same bits. */
#if defined(__GNUC__)
#define LOMO__ALWAYS_INLINE __attribute__((always_inline)) inline
#else
#define LOMO__ALWAYS_INLINE inline
#endif
static LOMO__ALWAYS_INLINE float lomo__expf(float x) {
    const float lo = -87.33654f, hi = 88.72283f, magic = 12582912.0f;
    float xc, t, nf, r, p, sc, two;
    uint32_t bits, mbits, xb, lb, hb, mlo, mhi;
    /* no branches and no product inside ?: (GCC keeps a loop scalar when one
       "could trap"): the clamps and the results for x < lo (0) and x > hi
       (inf) as bit masks, every product unconditional */
    memcpy(&xb, &x, 4); memcpy(&lb, &lo, 4); memcpy(&hb, &hi, 4);
    mlo = 0u - (uint32_t)(x < lo); mhi = 0u - (uint32_t)(x > hi);
    xb = (xb & ~(mlo | mhi)) | (lb & mlo) | (hb & mhi);
    memcpy(&xc, &xb, 4);
    t = xc * 1.44269504f + magic;
    nf = t - magic;
    r = xc - nf * 0.693359375f;          /* ln2 = 0.693359375 (exact times n) */
    r = r + nf * 2.12194440e-4f;         /*       - 2.12194440e-4 (Cephes' split) */
    p = 1.0f + r + r * r * (0.500000012f + r * (0.166666655f + r * (0.0416657959f + r * (0.00833345191f
          + r * (0.00139819995f + r * 0.000198756915f)))));
    memcpy(&bits, &t, 4);
    memcpy(&mbits, &magic, 4);
    bits = bits - mbits + 127u;          /* n + 127, n in [-126, 128] */
    two = bits > 254u ? 2.0f : 1.0f;     /* n = 128: 2^127 * 2 (both scalings exact, one rounding) */
    bits = (bits > 254u ? 254u : bits) << 23;
    memcpy(&sc, &bits, 4);
    p = p * sc * two;
    memcpy(&bits, &p, 4);
    bits = (bits & ~(mlo | mhi)) | (0x7f800000u & mhi);
    memcpy(&p, &bits, 4);
    return p;
}

/* x (N,C) = wte[tok[n]] */
static void lomo__cpu_embed_fwd(void *ctx, float *x, const int32_t *tok, const lomo_tensor *wte, int N, int C) {
    int n;
    (void)ctx;
    LOMO__PFOR((double)N * C)
    for (n = 0; n < N; n++) {
        int c;
        for (c = 0; c < C; c++) x[(size_t)n * C + c] = lomo__elem(wte, (size_t)tok[n] * C + c);
    }
}

/* dwte (V,C) += dx (N,C) scattered by token; parallel over columns, so no races */
static void lomo__cpu_embed_bwd(void *ctx, float *dwte, const float *dx, const int32_t *tok, int N, int C) {
    int c;
    (void)ctx;
    LOMO__PFOR((double)N * C)
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
    LOMO__PFOR(3.0 * N * C)
    for (n = 0; n < N; n++) {
        const float *xn = x + (size_t)n * C;
        float *yn = y + (size_t)n * C;
        float r = 1.0f / sqrtf(lomo__dot(xn, xn, C) / C + eps);
        int i;
        rstd[n] = r;
        LOMO__OMP(simd)
        for (i = 0; i < C; i++) yn[i] = w[i] * (xn[i] * r);
    }
}

/* dx (N,C) += r*w*dy - x * r^3/C * sum(w*dy*x);  dw (C) = sum_n dy*x*r.
   dw in blocks of 64 columns, each summed over n in order (any thread count). */
static void lomo__cpu_rmsnorm_bwd(void *ctx, float *dx, float *dw, const float *dy, const float *x,
                                  const lomo_tensor *wt, const float *rstd, int N, int C) {
    const float *w = lomo__f32(ctx, wt);
    int n, cb;
    if (!w) return;
    LOMO__PFOR(5.0 * N * C)
    for (n = 0; n < N; n++) {
        const float *xn = x + (size_t)n * C, *dyn = dy + (size_t)n * C;
        float *dxn = dx + (size_t)n * C;
        float r = rstd[n], dot = 0.0f, k;
        int i;
        LOMO__OMP(simd reduction(+:dot))
        for (i = 0; i < C; i++) dot += w[i] * dyn[i] * xn[i];
        k = dot * r * r * r / C;
        LOMO__OMP(simd)
        for (i = 0; i < C; i++) dxn[i] += r * w[i] * dyn[i] - k * xn[i];
    }
    LOMO__PFOR(3.0 * N * C)
    for (cb = 0; cb < (C + 63) / 64; cb++) {
        int lo = cb * 64, len = C - lo < 64 ? C - lo : 64, i, m;
        float acc[64];
        for (i = 0; i < len; i++) acc[i] = 0.0f;
        for (m = 0; m < N; m++) {
            const float *dym = dy + (size_t)m * C + lo, *xm = x + (size_t)m * C + lo;
            float r = rstd[m];
            LOMO__OMP(simd)
            for (i = 0; i < len; i++) acc[i] += dym[i] * xm[i] * r;
        }
        for (i = 0; i < len; i++) dw[lo + i] = acc[i];
    }
}

#ifdef LOMO_CBLAS
/* C (M,N) (+)= op(A) (M,K) op(B) (K,N), row-major. OpenMP splits C into
   blocks of rows (or of columns, when that dimension is larger) and each
   thread calls a single-threaded sgemm on its block, so the backend has one
   thread pool: OpenBLAS's own threads would fight OpenMP's for the cores
   (measured: 25x slower on 2 cores). lomo_cpu_backend() therefore sets
   OpenBLAS to one thread. OpenBLAS's result for an element depends on the
   block it is computed in, so the blocks are fixed by the shape and
   omp_get_max_threads() alone (two per thread while a block stays at least
   128 wide, else one, split at multiples of 64),
   not by the team lomo__nt picks for this region: a thread slowed by other
   load leaves its blocks to another thread, and the result is the same.
   Two per thread: on a busy machine lomo__nt gives the big matmuls twice
   omp_get_max_threads() threads, one block each; on an idle one each thread
   takes two (each block packs the shared operand again: measured about 1%
   of an idle step). */
/* C = alpha op(A) op(B) + beta C, split the same way */
static void lomo__sgemm_split_ab(enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha,
                                 const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);
static void lomo__sgemm_split(enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int M, int N, int K,
                              const float *A, int lda, const float *B, int ldb, int accumulate,
                              float *C, int ldc) {
    lomo__sgemm_split_ab(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, accumulate ? 1.0f : 0.0f, C, ldc);
}
static void lomo__sgemm_split_ab(enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha,
                                 const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    int D = M >= N ? M : N, P = 1, blk;
#ifdef _OPENMP
    P = omp_get_max_threads();
    /* two blocks per thread while a block stays at least 128 wide, else as many 128-wide
       blocks as fit, never fewer than one per thread (each block packs the shared operand
       again: on many cores, doubling thin blocks would cost more than it gives) */
    {
        int wide = (D + 127) / 128;
        if (2 * P <= wide) P *= 2;
        else if (P < wide) P = wide;
    }
#endif
    if (P > (D + 63) / 64) P = (D + 63) / 64;
    if (P < 1) P = 1;
    LOMO__OMP(parallel for schedule(dynamic, 1) num_threads(lomo__nt(2.0 * M * N * K / 64)))
    for (blk = 0; blk < P; blk++) {
        int lo = blk == 0 ? 0 : (int)((long long)D * blk / P) & ~63;
        int hi = blk == P - 1 ? D : (int)((long long)D * (blk + 1) / P) & ~63;
        if (M >= N) {   /* rows of C: rows of op(A) */
            const float *a = ta == CblasNoTrans ? A + (size_t)lo * lda : A + lo;
            if (hi > lo) cblas_sgemm(CblasRowMajor, ta, tb, hi - lo, N, K, alpha, a, lda, B, ldb, beta,
                                     C + (size_t)lo * ldc, ldc);
        } else {        /* columns of C: columns of op(B) */
            const float *b = tb == CblasNoTrans ? B + lo : B + (size_t)lo * ldb;
            if (hi > lo) cblas_sgemm(CblasRowMajor, ta, tb, M, hi - lo, K, alpha, A, lda, b, ldb, beta,
                                     C + lo, ldc);
        }
    }
}
#endif

/* ---- one-token matmuls (generation's decode step) ----
   At batch 1 a matmul is a GEMV bound by memory bandwidth: each weight is
   read once per token. Rows go four at a time (x read once for four rows,
   four independent accumulator chains of eight lanes; eight at a time with
   AVX2, see lomo__gemv8), straight
   from the stored rows: fp32, or bf16 widened in registers (2 bytes read per
   weight); no packing, no scratch, no BLAS call (OpenBLAS's M = 1 sgemm packs
   and is 2x slower). A row's value depends only on the row (a short last
   group repeats its last row, whose extra results are dropped), so the split
   over threads changes no result. lomo__cpu_gemv_n runs the rows of up to 4
   weights that share x (Q/K/V, gate/up) in one parallel region: one
   contiguous range of row groups per thread, one fork and join. */
static float lomo__bf16f(uint16_t h) { uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f; }
/* s + a b, fused where the target has FMA (-std=c11 turns off contraction; without FMA
   hardware fmaf would be a library call, so a multiply and an add) */
#ifdef __FMA__
#define LOMO__MADD(s, a, b) fmaf(a, b, s)
#else
#define LOMO__MADD(s, a, b) ((s) + (a) * (b))
#endif

/* s[i] = row r0 + min(i, nr - 1) of w (fp32 or bf16) . x, i < 4. Eight explicit lanes per
   row (one 256-bit register each with AVX, two with SSE: the same sums either way), the
   lanes then added in a fixed tree, the last K % 8 products on their own */
#define LOMO__GEMV4_BODY(LD)                                                                   \
    for (l = 0; l < 8; l++) a0[l] = a1[l] = a2[l] = a3[l] = 0.0f;                             \
    for (k = 0; k + 8 <= K; k += 8)                                                            \
        for (l = 0; l < 8; l++) {                                                              \
            float xk = x[k + l];                                                               \
            a0[l] = LOMO__MADD(a0[l], LD(w0[k + l]), xk); a1[l] = LOMO__MADD(a1[l], LD(w1[k + l]), xk); \
            a2[l] = LOMO__MADD(a2[l], LD(w2[k + l]), xk); a3[l] = LOMO__MADD(a3[l], LD(w3[k + l]), xk); \
        }                                                                                      \
    for (; k < K; k++) {                                                                       \
        float xk = x[k];                                                                       \
        t0 = LOMO__MADD(t0, LD(w0[k]), xk); t1 = LOMO__MADD(t1, LD(w1[k]), xk);                \
        t2 = LOMO__MADD(t2, LD(w2[k]), xk); t3 = LOMO__MADD(t3, LD(w3[k]), xk);                \
    }
#define LOMO__ID(v) (v)
#if defined(__AVX2__) && defined(__FMA__)
#define LOMO__GEMV_AVX2 1
#else
static void lomo__gemv4(float *s, const float *x, const lomo_tensor *w, int r0, int nr, int K) {
    size_t k0 = (size_t)r0 * K, k1 = k0 + (size_t)(nr > 1) * K, k2 = k0 + (size_t)(nr > 2 ? 2 : nr - 1) * K,
           k3 = k0 + (size_t)(nr - 1) * K;
    float a0[8], a1[8], a2[8], a3[8], t0 = 0.0f, t1 = 0.0f, t2 = 0.0f, t3 = 0.0f;
    int k, l;
    if (w->dtype == LOMO_BF16) {
        const uint16_t *b = (const uint16_t *)w->data, *w0 = b + k0, *w1 = b + k1, *w2 = b + k2, *w3 = b + k3;
        LOMO__GEMV4_BODY(lomo__bf16f)
    } else {
        const float *f = (const float *)w->data, *w0 = f + k0, *w1 = f + k1, *w2 = f + k2, *w3 = f + k3;
        LOMO__GEMV4_BODY(LOMO__ID)
    }
    for (l = 0; l < 4; l++) { a0[l] += a0[l + 4]; a1[l] += a1[l + 4]; a2[l] += a2[l + 4]; a3[l] += a3[l + 4]; }
    s[0] = ((a0[0] + a0[2]) + (a0[1] + a0[3])) + t0; s[1] = ((a1[0] + a1[2]) + (a1[1] + a1[3])) + t1;
    s[2] = ((a2[0] + a2[2]) + (a2[1] + a2[3])) + t2; s[3] = ((a3[0] + a3[2]) + (a3[1] + a3[3])) + t3;
}
#endif
#undef LOMO__GEMV4_BODY
#undef LOMO__ID

#ifdef LOMO__GEMV_AVX2
/* The same sums as lomo__gemv4, eight rows at a time, with the eight lanes of a row in one
   256-bit register (lane l: the fused multiply-adds of k = l mod 8, in order; then
   a[l] + a[l + 4], the same tree, the K % 8 tail): bit for bit what the portable loop gives
   each row. Eight rows: eight independent chains. bf16 rows are widened in 256-bit
   registers (zero-extend the 16-bit lanes to 32 bits, shift left by 16; the portable loop
   was vectorised 128 bits wide there, and the widening, not memory, bounded it). */
#include <immintrin.h>
#define LOMO__GEMV_ROWS 8
#define lomo__gemv_group lomo__gemv8
static float lomo__hsum8(__m256 a) {
    __m128 v = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));   /* a[l] + a[l + 4] */
    v = _mm_add_ps(v, _mm_movehl_ps(v, v));                                           /* v0 + v2, v1 + v3 */
    return _mm_cvtss_f32(_mm_add_ss(v, _mm_movehdup_ps(v)));                          /* (v0 + v2) + (v1 + v3) */
}
static void lomo__gemv8(float *s, const float *x, const lomo_tensor *w, int r0, int nr, int K) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    float t[8];
    size_t off[8];
    int k, r;
    for (r = 0; r < 8; r++) { off[r] = (size_t)(r0 + (r < nr ? r : nr - 1)) * K; t[r] = 0.0f; }
    if (w->dtype == LOMO_BF16) {
        const uint16_t *b = (const uint16_t *)w->data;
#define LOMO__W8(i) _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(                     \
            _mm_loadu_si128((const __m128i *)(const void *)(b + off[i] + k))), 16))
        for (k = 0; k + 8 <= K; k += 8) {
            __m256 xk = _mm256_loadu_ps(x + k);
            a0 = _mm256_fmadd_ps(LOMO__W8(0), xk, a0); a1 = _mm256_fmadd_ps(LOMO__W8(1), xk, a1);
            a2 = _mm256_fmadd_ps(LOMO__W8(2), xk, a2); a3 = _mm256_fmadd_ps(LOMO__W8(3), xk, a3);
            a4 = _mm256_fmadd_ps(LOMO__W8(4), xk, a4); a5 = _mm256_fmadd_ps(LOMO__W8(5), xk, a5);
            a6 = _mm256_fmadd_ps(LOMO__W8(6), xk, a6); a7 = _mm256_fmadd_ps(LOMO__W8(7), xk, a7);
        }
#undef LOMO__W8
        for (; k < K; k++)
            for (r = 0; r < 8; r++) t[r] = LOMO__MADD(t[r], lomo__bf16f(b[off[r] + k]), x[k]);
    } else {
        const float *f = (const float *)w->data;
#define LOMO__W8(i) _mm256_loadu_ps(f + off[i] + k)
        for (k = 0; k + 8 <= K; k += 8) {
            __m256 xk = _mm256_loadu_ps(x + k);
            a0 = _mm256_fmadd_ps(LOMO__W8(0), xk, a0); a1 = _mm256_fmadd_ps(LOMO__W8(1), xk, a1);
            a2 = _mm256_fmadd_ps(LOMO__W8(2), xk, a2); a3 = _mm256_fmadd_ps(LOMO__W8(3), xk, a3);
            a4 = _mm256_fmadd_ps(LOMO__W8(4), xk, a4); a5 = _mm256_fmadd_ps(LOMO__W8(5), xk, a5);
            a6 = _mm256_fmadd_ps(LOMO__W8(6), xk, a6); a7 = _mm256_fmadd_ps(LOMO__W8(7), xk, a7);
        }
#undef LOMO__W8
        for (; k < K; k++)
            for (r = 0; r < 8; r++) t[r] = LOMO__MADD(t[r], f[off[r] + k], x[k]);
    }
    s[0] = lomo__hsum8(a0) + t[0]; s[1] = lomo__hsum8(a1) + t[1]; s[2] = lomo__hsum8(a2) + t[2];
    s[3] = lomo__hsum8(a3) + t[3]; s[4] = lomo__hsum8(a4) + t[4]; s[5] = lomo__hsum8(a5) + t[5];
    s[6] = lomo__hsum8(a6) + t[6]; s[7] = lomo__hsum8(a7) + t[7];
}
#else
#define LOMO__GEMV_ROWS 4
#define lomo__gemv_group lomo__gemv4
#endif

/* y_j (O_j) (+)= W_j (O_j,K) x + b_j for j < n <= 4; W_j fp32 or bf16 */
static void lomo__cpu_gemv_n(int n, float *const *y, const float *x, const lomo_tensor *const *w,
                             const lomo_tensor *const *b, const int *O, int K, int accumulate) {
    long long start[5], u;
    double work = 0.0;
    int j;
    start[0] = 0;
    for (j = 0; j < n; j++) {
        start[j + 1] = start[j] + (O[j] + LOMO__GEMV_ROWS - 1) / LOMO__GEMV_ROWS;
        work += 2.0 * O[j] * K;
    }
    (void)work;   /* read only by the OpenMP team size */
    LOMO__PFOR(work)
    for (u = 0; u < start[n]; u++) {
        int g = 0, r0, nr, o;
        float s[LOMO__GEMV_ROWS];
        while (u >= start[g + 1]) g++;
        r0 = (int)(u - start[g]) * LOMO__GEMV_ROWS;
        nr = O[g] - r0 < LOMO__GEMV_ROWS ? O[g] - r0 : LOMO__GEMV_ROWS;
        lomo__gemv_group(s, x, w[g], r0, nr, K);
        for (o = 0; o < nr; o++) {
            float v = s[o] + (b[g] ? lomo__elem(b[g], (size_t)(r0 + o)) : 0.0f);
            y[g][r0 + o] = accumulate ? y[g][r0 + o] + v : v;
        }
    }
}

/* y (N,O) (+)= x (N,K) W^T + b */
static void lomo__cpu_matmul_fwd(void *ctx, float *y, const float *x, const lomo_tensor *wt,
                                 const lomo_tensor *bt, int N, int K, int O, int accumulate) {
    const float *w;
    int n;
    if (N == 1 && wt->dtype != LOMO_F16) {
        lomo__cpu_gemv_n(1, &y, x, &wt, &bt, &O, K, accumulate);
        return;
    }
    if (!(w = lomo__f32(ctx, wt))) return;
    if (N == 1) {   /* f16: widened into the scratch, then the fp32 rows */
        lomo_tensor wf = *wt;
        const lomo_tensor *wp = &wf;
        wf.dtype = LOMO_F32; wf.data = (void *)w;
        lomo__cpu_gemv_n(1, &y, x, &wp, &bt, &O, K, accumulate);
        return;
    }
#ifdef LOMO_CBLAS
    lomo__sgemm_split(CblasNoTrans, CblasTrans, N, O, K, x, K, w, K, accumulate, y, O);
    if (bt) {
        LOMO__PFOR((double)N * O)
        for (n = 0; n < N; n++) { int o; for (o = 0; o < O; o++) y[(size_t)n * O + o] += lomo__elem(bt, (size_t)o); }
    }
#else
    LOMO__PFOR(2.0 * N * O * K)
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

/* y_j (N,O_j) = x (N,K) W_j^T + b_j for j < n: one token's rows of all n weights in one
   pass (fp32 / bf16 storage, n <= 4), else one matmul_fwd each */
static void lomo__cpu_matmul_fwd_n(void *ctx, int n, float *const *y, const float *x, const lomo_tensor *const *w,
                                   const lomo_tensor *const *b, int N, int K, const int *O) {
    int j, one = N == 1 && n <= 4;
    for (j = 0; j < n; j++) one = one && w[j]->dtype != LOMO_F16;
    if (one) { lomo__cpu_gemv_n(n, y, x, w, b, O, K, 0); return; }
    for (j = 0; j < n; j++) lomo__cpu_matmul_fwd(ctx, y[j], x, w[j], b[j], N, K, O[j], 0);
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
    LOMO__PFOR(2.0 * N * O * K)
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
    LOMO__PFOR(2.0 * N * O * K)
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
    LOMO__PFOR((double)N * O)
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
    LOMO__PFOR((double)B * T * nh * hd)
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

/* first key query t sees: 0, or t - window + 1 with a sliding window */
static int lomo__attn_first(int t, int window) { return window > 0 && t - window + 1 > 0 ? t - window + 1 : 0; }

/* One causal attention for every family: scores s = scale q.k, soft-capped to
   cap tanh(s / cap) when cap > 0, query t seeing keys lomo__attn_first(t,
   window) .. t; query head h reads kv head h / (nh/nkv). lse (log-sum-exp of
   the final scores) is kept for the backward. attn_fwd / attn_bwd are this
   with scale 1/sqrt(hd), no cap, no window (the same arithmetic, bit for bit,
   as the plain kernels these replaced). */
#ifdef LOMO_CBLAS
/* In tiles of LOMO__TQ queries on the BLAS kernel: for a tile of query rows
   t0..t1-1 of one head, S = scale Q K^T against the keys the tile may see,
   k0 = lomo__attn_first(t0) .. t1-1 (one sgemm), an exact softmax per row
   over its own keys, O = P V (one sgemm). The only buffer is the tile's
   LOMO__TQ x T scores per thread. Each tile is computed the same way
   whichever thread takes it. */
#define LOMO__TQ 64
static void lomo__cpu_attn_ex_fwd(void *ctx, float *out, float *lse, const float *q, const float *k,
                                  const float *v, int B, int T, int nh, int nkv, int hd,
                                  float scale, float cap, int window) {
    int rep = nh / nkv, ntile = (T + LOMO__TQ - 1) / LOMO__TQ;
    (void)ctx;
    LOMO__PAR(2.0 * B * nh * T * T * hd)
    {
        float *S = (float *)LOMO_MALLOC(sizeof(float) * (size_t)LOMO__TQ * T);
        int task;
        LOMO__OMP(for schedule(dynamic, 1))
        for (task = 0; task < B * nh * ntile; task++) {
            /* the biggest tiles (the last query rows) first */
            int tile = ntile - 1 - task / (B * nh), bh = task % (B * nh), b = bh / nh, h = bh % nh, i, j;
            int t0 = tile * LOMO__TQ, t1 = t0 + LOMO__TQ < T ? t0 + LOMO__TQ : T, nq = t1 - t0;
            int k0 = lomo__attn_first(t0, window), nk = t1 - k0;   /* the tile's keys k0..t1-1 */
            size_t qs = (size_t)nh * hd, ks = (size_t)nkv * hd;
            const float *qt = q + ((size_t)b * T + t0) * qs + (size_t)h * hd;
            const float *kb = k + ((size_t)b * T + k0) * ks + (size_t)(h / rep) * hd;
            const float *vb = v + ((size_t)b * T + k0) * ks + (size_t)(h / rep) * hd;
            if (!S) continue;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hd, scale, qt, (int)qs, kb, (int)ks,
                        0.0f, S, nk);
            for (i = 0; i < nq; i++) {
                float *sr = S + (size_t)i * nk, mx, sum, inv;
                int j0 = lomo__attn_first(t0 + i, window) - k0, n = t0 + i + 1 - k0;   /* keys this row may see */
                if (cap > 0)
                    for (j = j0; j < n; j++) sr[j] = cap * tanhf(sr[j] / cap);
                mx = lomo__max8(sr + j0, n - j0);
                LOMO__OMP(simd)
                for (j = j0; j < n; j++) sr[j] = lomo__expf(sr[j] - mx);
                sum = lomo__sum8(sr + j0, n - j0);
                inv = 1.0f / sum;
                LOMO__OMP(simd)
                for (j = j0; j < n; j++) sr[j] *= inv;
                for (j = 0; j < j0; j++) sr[j] = 0.0f;
                for (j = n; j < nk; j++) sr[j] = 0.0f;
                lse[((size_t)b * T + t0 + i) * nh + h] = mx + logf(sum);
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hd, nk, 1.0f, S, nk, vb, (int)ks,
                        0.0f, out + ((size_t)b * T + t0) * qs + (size_t)h * hd, (int)qs);
        }
        if (!S) {
            lomo__cpu *c = (lomo__cpu *)ctx;
            LOMO__OMP(critical(lomo__cpu_err))
            if (c) { c->err = 1; snprintf(c->msg, sizeof c->msg, "attention: out of memory for a %d x %d tile", LOMO__TQ, T); }
        }
        LOMO_FREE(S);
    }
}

/* The same tiles backward, P = exp(S - lse) recomputed: dV += P^T dO,
   dP = dO V^T, dS = P * (dP - rowsum(dO * O)) * scale (times 1 - (c/cap)^2
   with capping, c the capped score), dQ = dS K, dK += dS^T Q, each a sgemm.
   Parallel over (batch, kv head): each task owns its dK and dV rows and walks
   its query heads and tiles in a fixed order. */
static void lomo__cpu_attn_ex_bwd(void *ctx, float *dq, float *dk, float *dv, const float *dout,
                                  const float *q, const float *k, const float *v, const float *out,
                                  const float *lse, int B, int T, int nh, int nkv, int hd,
                                  float scale, float cap, int window) {
    int rep = nh / nkv, ntile = (T + LOMO__TQ - 1) / LOMO__TQ;
    LOMO__PAR(4.0 * B * nh * T * T * hd)
    {
        float *P = (float *)LOMO_MALLOC(sizeof(float) * (size_t)LOMO__TQ * T * 2), *dS = P ? P + (size_t)LOMO__TQ * T : NULL;
        int bg;
        LOMO__OMP(for schedule(dynamic, 1))
        for (bg = 0; bg < B * nkv; bg++) {
            int b = bg / nkv, g = bg % nkv, h, tile, i, j, t;
            size_t qs = (size_t)nh * hd, ks = (size_t)nkv * hd, kbase = (size_t)b * T * ks + (size_t)g * hd;
            if (!P) continue;
            for (t = 0; t < T; t++) {
                memset(dk + kbase + t * ks, 0, sizeof(float) * hd);
                memset(dv + kbase + t * ks, 0, sizeof(float) * hd);
            }
            for (h = g * rep; h < (g + 1) * rep; h++)
                for (tile = 0; tile < ntile; tile++) {
                    int t0 = tile * LOMO__TQ, t1 = t0 + LOMO__TQ < T ? t0 + LOMO__TQ : T, nq = t1 - t0;
                    int k0 = lomo__attn_first(t0, window), nk = t1 - k0;
                    size_t r0 = ((size_t)b * T + t0) * qs + (size_t)h * hd, kb = kbase + (size_t)k0 * ks;
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hd, scale, q + r0, (int)qs,
                                k + kb, (int)ks, 0.0f, P, nk);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hd, 1.0f, dout + r0, (int)qs,
                                v + kb, (int)ks, 0.0f, dS, nk);
                    for (i = 0; i < nq; i++) {
                        size_t row = ((size_t)b * T + t0 + i) * nh + h;
                        float *pr = P + (size_t)i * nk, *dr = dS + (size_t)i * nk;
                        float L = lse[row], D = lomo__dot(dout + row * hd, out + row * hd, hd);
                        int j0 = lomo__attn_first(t0 + i, window) - k0, n = t0 + i + 1 - k0;
                        if (cap > 0)
                            for (j = j0; j < n; j++) {
                                float c = cap * tanhf(pr[j] / cap), p = lomo__expf(c - L);
                                pr[j] = p;
                                dr[j] = p * (dr[j] - D) * scale * (1.0f - (c / cap) * (c / cap));
                            }
                        else {
                            LOMO__OMP(simd)
                            for (j = j0; j < n; j++) {
                                float p = lomo__expf(pr[j] - L);
                                pr[j] = p;
                                dr[j] = p * (dr[j] - D) * scale;
                            }
                        }
                        for (j = 0; j < j0; j++) pr[j] = dr[j] = 0.0f;
                        for (j = n; j < nk; j++) pr[j] = dr[j] = 0.0f;
                    }
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hd, nq, 1.0f, P, nk, dout + r0, (int)qs,
                                1.0f, dv + kb, (int)ks);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hd, nk, 1.0f, dS, nk, k + kb, (int)ks,
                                0.0f, dq + r0, (int)qs);
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hd, nq, 1.0f, dS, nk, q + r0, (int)qs,
                                1.0f, dk + kb, (int)ks);
                }
        }
        if (!P) {
            lomo__cpu *c = (lomo__cpu *)ctx;
            LOMO__OMP(critical(lomo__cpu_err))
            if (c) { c->err = 1; snprintf(c->msg, sizeof c->msg, "attention backward: out of memory for 2 %d x %d tiles", LOMO__TQ, T); }
        }
        LOMO_FREE(P);
    }
}
#else
/* One query row at a time: scores into a per-thread row of T floats, exact
   softmax, weighted sum of v. Nothing of size T x T is stored. */
static void lomo__cpu_attn_ex_fwd(void *ctx, float *out, float *lse, const float *q, const float *k,
                                  const float *v, int B, int T, int nh, int nkv, int hd,
                                  float scale, float cap, int window) {
    int rep = nh / nkv;
    LOMO__PAR(2.0 * B * nh * T * T * hd)
    {
        float *p = (float *)LOMO_MALLOC(sizeof(float) * (size_t)T);
        int idx;
        LOMO__OMP(for)
        for (idx = 0; idx < B * T * nh; idx++) {
            int h = idx % nh, t = (idx / nh) % T, b = idx / (nh * T), j, j0 = lomo__attn_first(t, window);
            size_t row = (size_t)(b * T + t) * nh + h;
            const float *qt = q + row * hd;
            const float *kb = k + ((size_t)b * T * nkv + h / rep) * hd;
            const float *vb = v + ((size_t)b * T * nkv + h / rep) * hd;
            float *ot = out + row * hd, mx = -INFINITY, sum = 0.0f;
            if (!p) continue;
            for (j = j0; j <= t; j++) {
                float s = lomo__dot(qt, kb + (size_t)j * nkv * hd, hd) * scale;
                p[j] = cap > 0 ? cap * tanhf(s / cap) : s;
                mx = p[j] > mx ? p[j] : mx;
            }
            for (j = j0; j <= t; j++) { p[j] = lomo__expf(p[j] - mx); sum += p[j]; }
            memset(ot, 0, sizeof(float) * hd);
            for (j = j0; j <= t; j++) lomo__axpy(ot, p[j] / sum, vb + (size_t)j * nkv * hd, hd);
            lse[row] = mx + logf(sum);
        }
        if (!p) {
            lomo__cpu *c = (lomo__cpu *)ctx;
            LOMO__OMP(critical(lomo__cpu_err))
            if (c) { c->err = 1; snprintf(c->msg, sizeof c->msg, "attention: out of host memory for a row of %d scores", T); }
        }
        LOMO_FREE(p);
    }
}

/* With P = softmax(S) recomputed from lse: dV = P^T dO, dP = dO V^T,
   dS = P * (dP - rowsum(dO * O)) (times 1 - (c/cap)^2 with capping),
   dQ = scale dS K, dK = scale dS^T Q. Parallel over (batch, kv head): each
   thread owns its dk/dv rows. */
static void lomo__cpu_attn_ex_bwd(void *ctx, float *dq, float *dk, float *dv, const float *dout,
                                  const float *q, const float *k, const float *v, const float *out,
                                  const float *lse, int B, int T, int nh, int nkv, int hd,
                                  float scale, float cap, int window) {
    int rep = nh / nkv, bg;
    (void)ctx;
    LOMO__PFOR(2.0 * B * nh * T * T * hd)
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
                for (j = lomo__attn_first(t, window); j <= t; j++) {
                    size_t kr = kbase + j * kstride;
                    float s = lomo__dot(qt, k + kr, hd) * scale, c = cap > 0 ? cap * tanhf(s / cap) : s;
                    float p = lomo__expf(c - L);
                    float ds = p * (lomo__dot(dot, v + kr, hd) - D) * scale;
                    if (cap > 0) ds *= 1.0f - (c / cap) * (c / cap);
                    lomo__axpy(dqt, ds, k + kr, hd);
                    lomo__axpy(dk + kr, ds, qt, hd);
                    lomo__axpy(dv + kr, p, dot, hd);
                }
            }
        }
    }
}
#endif

/* plain causal attention: scale 1/sqrt(hd), no cap, no window */
static void lomo__cpu_attn_fwd(void *ctx, float *out, float *lse, const float *q, const float *k,
                               const float *v, int B, int T, int nh, int nkv, int hd) {
    lomo__cpu_attn_ex_fwd(ctx, out, lse, q, k, v, B, T, nh, nkv, hd, 1.0f / sqrtf((float)hd), 0.0f, 0);
}
static void lomo__cpu_attn_bwd(void *ctx, float *dq, float *dk, float *dv, const float *dout,
                               const float *q, const float *k, const float *v, const float *out,
                               const float *lse, int B, int T, int nh, int nkv, int hd) {
    lomo__cpu_attn_ex_bwd(ctx, dq, dk, dv, dout, q, k, v, out, lse, B, T, nh, nkv, hd, 1.0f / sqrtf((float)hd), 0.0f, 0);
}

static float lomo__sigmoid(float x) { return 1.0f / (1.0f + lomo__expf(-x)); }

/* h = silu(g) * u */
static void lomo__cpu_swiglu_fwd(void *ctx, float *h, const float *g, const float *u, size_t n) {
    long long i;
    (void)ctx;
    LOMO__PFOR(10.0 * n)
    for (i = 0; i < (long long)n; i++) h[i] = g[i] * lomo__sigmoid(g[i]) * u[i];
}

/* dg = dh * u * sig(g) * (1 + g (1 - sig(g))), du = dh * silu(g); dg may alias dh */
static void lomo__cpu_swiglu_bwd(void *ctx, float *dg, float *du, const float *dh, const float *g,
                                 const float *u, size_t n) {
    long long i;
    (void)ctx;
    LOMO__PFOR(12.0 * n)
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
    LOMO__PFOR(8.0 * N * V)
    for (n = 0; n < N; n++) {
        const float *ln = logits + (size_t)n * V;
        float *dn = dlogits ? dlogits + (size_t)n * V : NULL;
        int tgt = targets[n], i;
        float mx = -INFINITY, lt;
        double sum = 0.0;
        if (tgt < 0) {
            losses[n] = 0.0f;
            if (dn) memset(dn, 0, sizeof(float) * V);
            continue;
        }
        for (i = 0; i < V; i++) mx = ln[i] > mx ? ln[i] : mx;
        lt = ln[tgt];   /* dlogits may overwrite the logits in place */
        if (dn) {   /* one exp per logit, kept in dn; summed in double */
            float inv;
            LOMO__OMP(simd)
            for (i = 0; i < V; i++) dn[i] = lomo__expf(ln[i] - mx);
            for (i = 0; i < V; i++) sum += dn[i];   /* in order, as 0.5 summed it */
            inv = (float)(1.0 / sum) * dscale;
            LOMO__OMP(simd)
            for (i = 0; i < V; i++) dn[i] *= inv;
            dn[tgt] -= dscale;
        } else {
            for (i = 0; i < V; i++) sum += lomo__expf(ln[i] - mx);   /* in order, as 0.5 summed it */
        }
        losses[n] = (float)(log(sum) + mx - lt);
    }
}

/* ---- 0.5: Qwen3 / Gemma ops ---- */

/* y (N,C) = x * rstd * (off + w), rstd (N) = 1/sqrt(mean(x^2) + eps) */
static void lomo__cpu_rmsnorm_ex_fwd(void *ctx, float *y, float *rstd, const float *x, const lomo_tensor *wt,
                                     int N, int C, float eps, float off) {
    const float *w = lomo__f32(ctx, wt);
    int n;
    if (!w) return;
    LOMO__PFOR(3.0 * N * C)
    for (n = 0; n < N; n++) {
        const float *xn = x + (size_t)n * C;
        float *yn = y + (size_t)n * C;
        float ss = 0.0f, r;
        int i;
        for (i = 0; i < C; i++) ss += xn[i] * xn[i];
        r = 1.0f / sqrtf(ss / C + eps);
        rstd[n] = r;
        for (i = 0; i < C; i++) yn[i] = (xn[i] * r) * (off + w[i]);
    }
}

/* dx (N,C) += r*w'*dy - x * r^3/C * sum(w'*dy*x) with w' = off + w;  dw (C) = sum_n dy*x*r */
static void lomo__cpu_rmsnorm_ex_bwd(void *ctx, float *dx, float *dw, const float *dy, const float *x,
                                     const lomo_tensor *wt, const float *rstd, int N, int C, float off) {
    const float *w = lomo__f32(ctx, wt);
    int n, i;
    if (!w) return;
    LOMO__PFOR(6.0 * N * C)
    for (n = 0; n < N; n++) {
        const float *xn = x + (size_t)n * C, *dyn = dy + (size_t)n * C;
        float *dxn = dx + (size_t)n * C;
        float r = rstd[n], dot = 0.0f, k;
        int j;
        for (j = 0; j < C; j++) dot += (off + w[j]) * dyn[j] * xn[j];
        k = dot * r * r * r / C;
        for (j = 0; j < C; j++) dxn[j] += r * (off + w[j]) * dyn[j] - k * xn[j];
    }
    LOMO__PFOR(3.0 * N * C)
    for (i = 0; i < C; i++) {
        float s = 0.0f;
        for (n = 0; n < N; n++) s += dy[(size_t)n * C + i] * x[(size_t)n * C + i] * rstd[n];
        dw[i] = s;
    }
}

static void lomo__cpu_scale(void *ctx, float *x, float s, size_t n) {
    long long i;
    (void)ctx;
    LOMO__PFOR((double)n)
    for (i = 0; i < (long long)n; i++) x[i] *= s;
}

/* gelu_tanh(x) = x/2 (1 + tanh(a (x + b x^3))), a = sqrt(2/pi), b = 0.044715 (PyTorch's approximate="tanh") */
static float lomo__gelu_tanh(float x) { return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x))); }
static float lomo__gelu_tanh_grad(float x) {
    float th = tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x));
    return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * 0.7978845608028654f * (1.0f + 3.0f * 0.044715f * x * x);
}

/* h = gelu_tanh(g) * u */
static void lomo__cpu_geglu_fwd(void *ctx, float *h, const float *g, const float *u, size_t n) {
    long long i;
    (void)ctx;
    LOMO__PFOR(10.0 * n)
    for (i = 0; i < (long long)n; i++) h[i] = lomo__gelu_tanh(g[i]) * u[i];
}

/* dg = dh * u * gelu'(g), du = dh * gelu(g); dg may alias dh */
static void lomo__cpu_geglu_bwd(void *ctx, float *dg, float *du, const float *dh, const float *g,
                                const float *u, size_t n) {
    long long i;
    (void)ctx;
    LOMO__PFOR(20.0 * n)
    for (i = 0; i < (long long)n; i++) {
        float d = dh[i];
        du[i] = d * lomo__gelu_tanh(g[i]);
        dg[i] = d * u[i] * lomo__gelu_tanh_grad(g[i]);
    }
}

static void lomo__cpu_cross_entropy_softcap(void *ctx, float *losses, float *dlogits, float *logits,
                                            const int32_t *targets, int N, int V, float dscale, float cap) {
    int n;
    (void)ctx;
    LOMO__PFOR(10.0 * N * V)
    for (n = 0; n < N; n++) {
        float *ln = logits + (size_t)n * V;
        float *dn = dlogits ? dlogits + (size_t)n * V : NULL;
        int tgt = targets[n], i;
        float mx = -INFINITY, ct = 0.0f;
        double sum = 0.0;
        for (i = 0; i < V; i++) {
            float c = cap * tanhf(ln[i] / cap);
            if (!dn) ln[i] = c;
            mx = c > mx ? c : mx;
        }
        if (tgt < 0) {
            losses[n] = 0.0f;
            if (dn) memset(dn, 0, sizeof(float) * V);
            continue;
        }
        for (i = 0; i < V; i++) sum += exp((double)((dn ? cap * tanhf(ln[i] / cap) : ln[i]) - mx));
        ct = dn ? cap * tanhf(ln[tgt] / cap) : ln[tgt];
        losses[n] = (float)(log(sum) + mx - ct);
        if (dn) {
            float inv = (float)(1.0 / sum);
            for (i = 0; i < V; i++) {
                float c = cap * tanhf(ln[i] / cap), d = (1.0f - (c / cap) * (c / cap)) * dscale;
                dn[i] = (expf(c - mx) * inv - (i == tgt ? 1.0f : 0.0f)) * d;
            }
        }
    }
}

/* partial rotary: lomo__cpu_rope on the first rot of hd dims */
static void lomo__cpu_rope_ex(void *ctx, float *x, const float *inv_freq, int B, int T, int nh, int hd, int rot,
                              float mscale, int inverse) {
    int half = rot / 2, bt;
    (void)ctx;
    LOMO__PFOR((double)B * T * nh * hd)
    for (bt = 0; bt < B * T; bt++) {
        int t = bt % T, h, i;
        for (i = 0; i < half; i++) {
            float ang = (float)t * inv_freq[i];
            float c = cosf(ang) * mscale, s = (inverse ? -sinf(ang) : sinf(ang)) * mscale;
            for (h = 0; h < nh; h++) {
                float *xh = x + ((size_t)bt * nh + h) * hd;
                float a = xh[i], b = xh[i + half];
                xh[i] = a * c - b * s;
                xh[i + half] = b * c + a * s;
            }
        }
    }
}

/* Deterministic whatever the thread count: fixed chunks, summed in order. */
#define LOMO__NCHUNK 64
/* sum over i < n of a[i] b[i] in double (a product of two floats is exact in double), in eight
   lanes (lane k takes i = k mod 8) added in a fixed tree: the same sum for any caller, and a loop
   that vectorises. One chain of double adds ran at one element per add latency: the global
   norm pass's sum of squares took 5% of a clipped step (0.7). */
static double lomo__lanes8(const double *l) { return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7])); }
static double lomo__dot8d(const float *a, const float *b, size_t n) {
    double l[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    int k;
    for (; i + 8 <= n; i += 8)
        for (k = 0; k < 8; k++) l[k] += (double)a[i + k] * b[i + k];
    for (k = 0; i < n; i++, k++) l[k] += (double)a[i] * b[i];
    return lomo__lanes8(l);
}

static double lomo__cpu_sumsq(void *ctx, const float *x, size_t n) {
    enum { CHUNKS = 64 };
    double part[CHUNKS], s = 0.0;
    size_t per = (n + CHUNKS - 1) / CHUNKS;
    int c;
    (void)ctx;
    LOMO__PFOR(2.0 * n)
    for (c = 0; c < CHUNKS; c++) {
        size_t lo = (size_t)c * per, hi = lo + per < n ? lo + per : n;
        part[c] = hi > lo ? lomo__dot8d(x + lo, x + lo, hi - lo) : 0.0;
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

#ifdef LOMO__F16C
/* The LOMO rule on f16 storage rounded to nearest even, elements lo..hi-1,
   8 at a time: the scalar loop's operations in its order (no FMA: w decay -
   lr g', g' = clamp(g / loss scale, +-clip_value) clip_coef, the clamp
   keeping a NaN as the scalar compare does), F16C for both conversions; a
   block whose old weights hold a NaN goes through the scalar code. Returns
   whether a stored weight is NaN/Inf. */
__attribute__((target("avx,f16c"))) static int lomo__f16c_lomo(lomo_tensor *p, const float *g, long long lo, long long hi,
                                                              float decay, const lomo_update_args *a) {
    uint16_t *w = (uint16_t *)p->data;
    const __m256 dec = _mm256_set1_ps(decay), lr = _mm256_set1_ps(a->lr), inv = _mm256_set1_ps(a->inv_loss_scale);
    const __m256 cv = _mm256_set1_ps(a->clip_value), ncv = _mm256_set1_ps(-a->clip_value), cc = _mm256_set1_ps(a->clip_coef);
    const __m128i expo = _mm_set1_epi16(0x7c00);
    __m128i badv = _mm_setzero_si128();
    long long i = lo, j;
    int bad = 0, clamp = a->clip_value > 0.0f;
    for (; i + 8 <= hi; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(w + i)), r;
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(g + i), inv);
        if (lomo__f16c_nan8(h)) {
            for (j = i; j < i + 8; j++) {
                lomo__store(p, (size_t)j, lomo__elem(p, (size_t)j) * decay - a->lr * lomo__clipped(g, (size_t)j, a), a);
                bad |= !isfinite(lomo__elem(p, (size_t)j));
            }
            continue;
        }
        if (clamp) {
            v = _mm256_blendv_ps(v, ncv, _mm256_cmp_ps(v, ncv, _CMP_LT_OQ));
            v = _mm256_blendv_ps(v, cv, _mm256_cmp_ps(v, cv, _CMP_GT_OQ));
        }
        v = _mm256_mul_ps(v, cc);
        v = _mm256_sub_ps(_mm256_mul_ps(_mm256_cvtph_ps(h), dec), _mm256_mul_ps(lr, v));
        r = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm_storeu_si128((__m128i *)(w + i), r);
        badv = _mm_or_si128(badv, _mm_cmpeq_epi16(_mm_and_si128(r, expo), expo));
    }
    for (; i < hi; i++) {
        lomo__store(p, (size_t)i, lomo__elem(p, (size_t)i) * decay - a->lr * lomo__clipped(g, (size_t)i, a), a);
        bad |= !isfinite(lomo__elem(p, (size_t)i));
    }
    return bad | (_mm_movemask_epi8(badv) != 0);
}
#endif

static void lomo__cpu_update(void *ctx, lomo_tensor *p, const float *g, float *s1, float *s2, const lomo_update_args *a) {
    long long i, n = (long long)p->numel;
    int bad = 0;   /* a stored weight is NaN/Inf: read back while in cache, for all_finite */
#define LOMO__STORED_BAD(i) (!isfinite(lomo__elem(p, (size_t)(i))))
#ifdef LOMO__F16C
    if (a->rule == LOMO_OPT_LOMO && p->dtype == LOMO_F16 && !a->stochastic && lomo__f16c()) {
        float decay = 1.0f - a->lr * a->weight_decay;
        LOMO__PFOR_OR(3.0 * n, bad)
        for (i = 0; i < 64; i++) bad |= lomo__f16c_lomo(p, g, n * i / 64, n * (i + 1) / 64, decay, a);
    } else
#endif
    if (a->rule == LOMO_OPT_LOMO && p->dtype == LOMO_F32 && !(a->clip_value > 0.0f)) {
        /* the common case as a plain loop the compiler vectorises: the same
           operations in the same order as the general loop below (bitwise) */
        float decay = 1.0f - a->lr * a->weight_decay, is = a->inv_loss_scale, cc = a->clip_coef, lr = a->lr;
        float *w = (float *)p->data;
        LOMO__PFOR_OR(3.0 * n, bad)
        for (i = 0; i < n; i++) {
            float v = w[i] * decay - lr * ((g[i] * is) * cc);
            uint32_t u;
            memcpy(&u, &v, 4);
            w[i] = v;
            bad |= (u & 0x7f800000u) == 0x7f800000u;
        }
    } else if (a->rule == LOMO_OPT_LOMO && p->dtype == LOMO_BF16 && !a->stochastic && !(a->clip_value > 0.0f)) {
        /* bf16, round to nearest even: lomo_f32_to_bf16 without its branch (NaN
           selected), so that the loop vectorises; the same bits as the loop below */
        float decay = 1.0f - a->lr * a->weight_decay, is = a->inv_loss_scale, cc = a->clip_coef, lr = a->lr;
        uint16_t *w = (uint16_t *)p->data;
        LOMO__PFOR_OR(3.0 * n, bad)
        for (i = 0; i < n; i++) {
            uint32_t u = (uint32_t)w[i] << 16, r;
            float x, v;
            uint16_t h;
            memcpy(&x, &u, 4);
            v = x * decay - lr * ((g[i] * is) * cc);
            memcpy(&u, &v, 4);
            r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
            h = (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? (u >> 16) | 0x0040u : r);
            w[i] = h;
            bad |= (h & 0x7f80u) == 0x7f80u;
        }
    } else if (a->rule == LOMO_OPT_LOMO) {
        float decay = 1.0f - a->lr * a->weight_decay;
        LOMO__PFOR_OR(3.0 * n, bad)
        for (i = 0; i < n; i++) {
            lomo__store(p, (size_t)i, lomo__elem(p, (size_t)i) * decay - a->lr * lomo__clipped(g, (size_t)i, a), a);
            bad |= LOMO__STORED_BAD(i);
        }
    } else if (a->rule == LOMO_OPT_ADAMW) {
        /* torch.optim.AdamW: decoupled decay, bias-corrected moments */
        float decay = 1.0f - a->lr * a->weight_decay;
        float bc1 = (float)(1.0 - pow(a->beta1, (double)a->step)), bc2s = (float)sqrt(1.0 - pow(a->beta2, (double)a->step));
        float step_size = a->lr / bc1;
        LOMO__PFOR_OR(8.0 * n, bad)
        for (i = 0; i < n; i++) {
            float gi = lomo__clipped(g, (size_t)i, a), w = lomo__elem(p, (size_t)i) * decay;
            s1[i] += (gi - s1[i]) * (1.0f - a->beta1);
            s2[i] = s2[i] * a->beta2 + (1.0f - a->beta2) * gi * gi;
            lomo__store(p, (size_t)i, w - step_size * s1[i] / (sqrtf(s2[i]) / bc2s + a->eps), a);
            bad |= LOMO__STORED_BAD(i);
        }
    } else {
        /* AdaLomo (lomo-optim): factored second moments for matrices, a full
           vector for 1-D tensors; update normalised by its RMS; relative step */
        int rows = p->ndim == 2 ? (int)p->shape[0] : 1;
        int cols = p->ndim == 2 ? (int)p->shape[1] : (int)p->numel;
        double beta = 1.0 - pow((double)a->step, (double)a->decay_rate);
        double usq = 0.0, psq = 0.0, rmean = 0.0, part[LOMO__NCHUNK];
        float denom, lr_t, decay;
        int r, c, ch;
        long long off = a->shard_off, len = p->shard_len;   /* the elements p->data holds (all, unsharded) */
        if (p->ndim == 2) {
            double *colsum = (double *)lomo__calloc((size_t)cols, sizeof(double));
            if (!colsum) {   /* nothing stored yet: the step fails at check() with the weights as they were */
                lomo__cpu *cpu = (lomo__cpu *)ctx;
                if (cpu) { cpu->err = 1; snprintf(cpu->msg, sizeof cpu->msg, "AdaLomo: out of host memory (%d column sums of %s)", cols, p->name); }
                return;
            }
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
            LOMO_FREE(colsum);
            for (r = 0; r < rows; r++) rmean += s1[r];
            rmean /= rows;
            LOMO__PFOR(8.0 * n)
            for (ch = 0; ch < LOMO__NCHUNK; ch++) {
                long long j, lo = n * ch / LOMO__NCHUNK, hi = n * (ch + 1) / LOMO__NCHUNK;
                double acc = 0.0;
                for (j = lo; j < hi; j++) {
                    float u = lomo__clipped(g, (size_t)j, a) / sqrtf(s1[j / cols] / (float)rmean) / sqrtf(s2[j % cols]);
                    acc += (double)u * u;
                }
                part[ch] = acc;
            }
            for (ch = 0; ch < LOMO__NCHUNK; ch++) usq += part[ch];
        } else {
            LOMO__PFOR(8.0 * n)
            for (ch = 0; ch < LOMO__NCHUNK; ch++) {
                long long j, lo = n * ch / LOMO__NCHUNK, hi = n * (ch + 1) / LOMO__NCHUNK;
                double acc = 0.0;
                for (j = lo; j < hi; j++) {
                    float gi = lomo__clipped(g, (size_t)j, a), u;
                    s1[j] = (float)(beta * s1[j] + (1.0 - beta) * (gi * gi + a->eps1));
                    u = gi / sqrtf(s1[j]);
                    acc += (double)u * u;
                }
                part[ch] = acc;
            }
            for (ch = 0; ch < LOMO__NCHUNK; ch++) usq += part[ch];
        }
        if (a->param_sumsq >= 0.0) psq = a->param_sumsq;   /* sharded: the whole tensor's, from the driver */
        else {
            LOMO__PFOR(3.0 * len)
            for (ch = 0; ch < LOMO__NCHUNK; ch++) {
                long long j, lo = len * ch / LOMO__NCHUNK, hi = len * (ch + 1) / LOMO__NCHUNK;
                double acc = 0.0;
                for (j = lo; j < hi; j++) { float w = lomo__elem(p, (size_t)j); acc += (double)w * w; }
                part[ch] = acc;
            }
            for (ch = 0; ch < LOMO__NCHUNK; ch++) psq += part[ch];
        }
        denom = (float)(sqrt(usq / n) / a->clip_threshold);
        if (!(denom > 1.0f)) denom = 1.0f;
        lr_t = a->lr * (float)fmax(a->eps2, sqrt(psq / n));
        decay = a->weight_decay > 0.0f ? 1.0f - lr_t * a->weight_decay : 1.0f;
        LOMO__PFOR_OR(8.0 * len, bad)
        for (i = 0; i < len; i++) {
            long long k = off + i;   /* index in the whole tensor */
            float gi = lomo__clipped(g, (size_t)k, a);
            float u = p->ndim == 2 ? gi / sqrtf(s1[k / cols] / (float)rmean) / sqrtf(s2[k % cols]) : gi / sqrtf(s1[k]);
            lomo__store(p, (size_t)i, lomo__elem(p, (size_t)i) * decay - lr_t * (u / denom), a);
            bad |= LOMO__STORED_BAD(i);
        }
        n = len;
    }
#undef LOMO__STORED_BAD
    if (ctx) {
        lomo__cpu *c = (lomo__cpu *)ctx;
        c->fin_data = p->data; c->fin_n = n; c->fin_ok = !bad;
    }
}

static double lomo__cpu_param_sumsq(void *ctx, const lomo_tensor *p) {
    double s = 0.0, part[LOMO__NCHUNK];
    long long n = (long long)p->numel;
    int ch;
    (void)ctx;
    LOMO__PFOR(3.0 * n)
    for (ch = 0; ch < LOMO__NCHUNK; ch++) {
        long long j, lo = n * ch / LOMO__NCHUNK, hi = n * (ch + 1) / LOMO__NCHUNK;
        if (p->dtype == LOMO_F32) part[ch] = lomo__dot8d((const float *)p->data + lo, (const float *)p->data + lo,
                                                          (size_t)(hi - lo));
        else {   /* 16-bit: the same eight lanes and tree as lomo__dot8d */
            double l[8] = {0, 0, 0, 0, 0, 0, 0, 0}, w;
            int k;
            for (j = lo; j + 8 <= hi; j += 8)
                for (k = 0; k < 8; k++) { w = lomo__elem(p, (size_t)(j + k)); l[k] += w * w; }
            for (k = 0; j < hi; j++, k++) { w = lomo__elem(p, (size_t)j); l[k] += w * w; }
            part[ch] = lomo__lanes8(l);
        }
    }
    for (ch = 0; ch < LOMO__NCHUNK; ch++) s += part[ch];
    return s;
}

/* 0.6: the LOMO rule fused with a linear weight's gradient (the backend op
   linear_update): rows r0..r0+R-1 of dW = dy^T x into gbuf (R = the rows that
   fit), then update's LOMO kernel on those rows of w, with shard_off moved by
   r0 K so that each element's rounding hash is the one of the whole-tensor
   update. With BLAS, fp32 w is updated by the dW GEMM itself (alpha = -lr
   coef, beta = the decay; no gradient buffer, no separate pass, last bits
   rounded once instead of twice), and the CPU table installs this op; the
   plain-loops build leaves linear_update NULL (the hook path), and tests
   install this, bitwise equal to the hook path there, in a copy of the table. */
static void lomo__cpu_linear_update(void *ctx, lomo_tensor *w, const float *dy, const float *x, int N, int K, int O,
                                    float *gbuf, size_t gbuf_floats, const lomo_update_args *a) {
    lomo__cpu *c = (lomo__cpu *)ctx;
    size_t es = w->dtype == LOMO_F32 ? 4 : 2;
    int R = gbuf_floats / (size_t)K < (size_t)O ? (int)(gbuf_floats / (size_t)K) : O, r0, ok = 1;
#ifdef LOMO_CBLAS
    if (w->dtype == LOMO_F32) {   /* fp32: the GEMM itself applies the rule, w = decay w - lr coef dy^T x */
        float alpha = -(a->lr * (a->inv_loss_scale * a->clip_coef)), decay = 1.0f - a->lr * a->weight_decay;
        (void)gbuf; (void)gbuf_floats; (void)R; (void)ok; (void)r0; (void)es;
        lomo__sgemm_split_ab(CblasTrans, CblasNoTrans, O, K, N, alpha, dy, O, x, K, decay, (float *)w->data, K);
        if (c) c->fin_data = NULL;   /* all_finite reads the tensor back */
        return;
    }
#endif
    if (R < 1) {
        if (c) { c->err = 1; snprintf(c->msg, sizeof c->msg, "linear_update: %zu floats of gradient buffer hold no row of %s (%d)",
                                      gbuf_floats, w->name, K); }
        return;
    }
    for (r0 = 0; r0 < O; r0 += R) {
        int nr = O - r0 < R ? O - r0 : R;
        lomo_tensor v = *w;
        lomo_update_args b = *a;
#ifdef LOMO_CBLAS
        lomo__sgemm_split(CblasTrans, CblasNoTrans, nr, K, N, dy + r0, O, x, K, 0, gbuf, K);
#else
        int o;
        LOMO__PFOR(2.0 * N * nr * K)
        for (o = 0; o < nr; o++) {   /* the order of matmul_bwd_w's loops: the same sums */
            float *dwo = gbuf + (size_t)o * K;
            int n;
            memset(dwo, 0, sizeof(float) * K);
            for (n = 0; n < N; n++) lomo__axpy(dwo, dy[(size_t)n * O + r0 + o], x + (size_t)n * K, K);
        }
#endif
        v.data = (char *)w->data + (size_t)r0 * K * es;
        v.ndim = 2; v.shape[0] = nr; v.shape[1] = K; v.numel = v.shard_len = (int64_t)nr * K;
        b.shard_off = a->shard_off + (int64_t)r0 * K;
        lomo__cpu_update(ctx, &v, gbuf, NULL, NULL, &b);
        if (c) ok &= c->fin_ok;
    }
    if (c) { c->fin_data = w->data; c->fin_n = (long long)w->numel; c->fin_ok = ok; }   /* what all_finite asks next */
}

/* a weight is NaN/Inf iff its exponent bits are all ones: one pass over the raw bits */
static int lomo__cpu_all_finite(void *ctx, const lomo_tensor *p) {
    long long i, n = (long long)p->numel;
    int bad = 0;
    lomo__cpu *c = (lomo__cpu *)ctx;
    if (c && c->fin_data == p->data && c->fin_n == n) {   /* the built-in update just checked what it stored */
        c->fin_data = NULL;
        return c->fin_ok;
    }
    if (p->dtype == LOMO_F32) {
        const uint32_t *w = (const uint32_t *)p->data;
        LOMO__PFOR_OR((double)n, bad)
        for (i = 0; i < n; i++) bad |= (w[i] & 0x7f800000u) == 0x7f800000u;
    } else {
        const uint16_t *w = (const uint16_t *)p->data;
        uint16_t e = p->dtype == LOMO_BF16 ? 0x7f80u : 0x7c00u;
        LOMO__PFOR_OR((double)n, bad)
        for (i = 0; i < n; i++) bad |= (w[i] & e) == e;
    }
    return !bad;
}

/* the upper triangle (j >= i) of g = a a^T (N x N, row-major; a is N x K): half the products of
   a full GEMM. With BLAS, P row blocks of about equal area (P from N and omp_get_max_threads()
   alone, so every element comes from the same call for any team: the same bits), each one
   ssyrk on its diagonal block and one sgemm right of it, single-threaded (the one-pool rule of
   lomo__sgemm_split). Timed by hand against the full GEMMs it replaced (0.8, 2 cores, OpenBLAS's
   Haswell and Cooperlake kernels): 1.2-1.3x faster at N = 128, K = 1024, 1.5-1.8x at N = 256-512;
   `bench_cpu --gram-cost` prints its time at the clip bench's shapes */
static void lomo__cpu_gram_upper(float *g, const float *a, int N, int K) {
#ifdef LOMO_CBLAS
    int P = 1, p;
#ifdef _OPENMP
    P = omp_get_max_threads();
#endif
    if (P > N / 32) P = N / 32;
    if (P < 1) P = 1;
    LOMO__OMP(parallel for schedule(dynamic, 1) num_threads(lomo__nt((double)N * N * K / 2)))
    for (p = 0; p < P; p++) {   /* rows r0..r1-1: the rows above r hold r N - r^2 / 2 of the triangle */
        double n = N, s0 = n * n * p / P, s1 = n * n * (p + 1) / P;
        int r0 = p == 0 ? 0 : (int)(n - sqrt(n * n - s0) + 0.5), r1 = p == P - 1 ? N : (int)(n - sqrt(n * n - s1) + 0.5);
        if (r1 <= r0) continue;
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, r1 - r0, K, 1.0f, a + (size_t)r0 * K, K, 0.0f,
                    g + (size_t)r0 * N + r0, N);
        if (r1 < N)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, N - r1, K, 1.0f, a + (size_t)r0 * K, K,
                        a + (size_t)r1 * K, K, 0.0f, g + (size_t)r0 * N + r1, N);
    }
#else
    int i;
    LOMO__OMP(parallel for schedule(dynamic, 8) num_threads(lomo__nt((double)N * N * K / 2)))
    for (i = 0; i < N; i++) {
        int j;
        for (j = i; j < N; j++) g[(size_t)i * N + j] = lomo__dot(a + (size_t)i * K, a + (size_t)j * K, K);
    }
#endif
}

/* ||dy^T x||_F^2 = <dy dy^T, x x^T>_F: two N x N Gram matrices instead of the O x K gradient,
   each an upper triangle (both are symmetric: the diagonal once, the rest twice) */
static double lomo__cpu_wgrad_sqnorm(void *ctx, const float *dy, const float *x, int N, int K, int O) {
    lomo__cpu *c = (lomo__cpu *)ctx;
    float *gy, *gx;
    double s = 0.0, part[LOMO__NCHUNK];
    int ch;
    if (!c || (size_t)N * N * 2 * sizeof(float) > c->scratch_bytes) {
        if (c) { c->err = 1; snprintf(c->msg, sizeof c->msg, "no scratch for the Gram norm"); }
        return NAN;
    }
    gy = c->scratch; gx = c->scratch + (size_t)N * N;
    lomo__cpu_gram_upper(gy, dy, N, O);
    lomo__cpu_gram_upper(gx, x, N, K);
    LOMO__PFOR((double)N * N)
    for (ch = 0; ch < LOMO__NCHUNK; ch++) {   /* fixed row chunks: the same sum for any team */
        int i, lo = (int)((long long)N * ch / LOMO__NCHUNK), hi = (int)((long long)N * (ch + 1) / LOMO__NCHUNK);
        double v = 0.0;
        for (i = lo; i < hi; i++) {
            const float *a = gy + (size_t)i * N, *b = gx + (size_t)i * N;
            v += (double)a[i] * b[i] + 2.0 * lomo__dot8d(a + i + 1, b + i + 1, (size_t)(N - i - 1));
        }
        part[ch] = v;
    }
    for (ch = 0; ch < LOMO__NCHUNK; ch++) s += part[ch];
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

static void lomo__cpu_set_scratch(void *ctx, void *p, size_t bytes, int act_dtype) {
    lomo__cpu *c = (lomo__cpu *)ctx;
    (void)act_dtype;
    c->scratch = (float *)p;
    c->scratch_bytes = bytes;
}

/* ---- generation ops (KV cache) ---- */

/* RoPE as lomo__cpu_rope_ex (the first rot dims, times mscale), row i of x (N,nh,hd) at position pos0 + i */
static void lomo__cpu_rope_at(void *ctx, float *x, const float *inv_freq, int N, int nh, int hd, int rot, float mscale,
                              int pos0) {
    int half = rot / 2, n;
    (void)ctx;
    LOMO__PFOR(8.0 * N * nh * half)
    for (n = 0; n < N; n++) {
        int h, i;
        for (i = 0; i < half; i++) {
            float ang = (float)(pos0 + n) * inv_freq[i];
            float c = cosf(ang) * mscale, s = sinf(ang) * mscale;
            for (h = 0; h < nh; h++) {
                float *xh = x + ((size_t)n * nh + h) * hd;
                float a = xh[i], b = xh[i + half];
                xh[i] = a * c - b * s;
                xh[i + half] = b * c + a * s;
            }
        }
    }
}

/* Attention of N new queries over the cache: scores as lomo__cpu_attn_fwd /
   lomo__cpu_attn_ex_fwd compute them (scale, soft-cap), an exact softmax, the
   weighted sum of v, so that a cached pass equals the full forward to fp32
   rounding. Keys j in [lo, p] for the query at absolute position p, lo = 0,
   or p - window + 1 with a sliding window. Keys go in tiles of LOMO__KV_TILE
   scores on the stack (no allocation): the running maximum, sum and output
   are rescaled when a tile raises the maximum (one tile up to LOMO__KV_TILE
   keys: the plain two-pass softmax). One (query, head) per iteration, its
   dot products and updates vectorised over head_dim. */
#define LOMO__KV_TILE 512
static void lomo__cpu_attn_kv(void *ctx, float *out, const float *q, const float *kc, const float *vc,
                              int N, int pos0, int nh, int nkv, int hd, float scale, float cap, int window) {
    int rep = nh / nkv, idx;
    size_t ld = (size_t)nkv * hd;
    (void)ctx;
    LOMO__PFOR(4.0 * N * nh * (double)(pos0 + N) * hd)
    for (idx = 0; idx < N * nh; idx++) {
        int h = idx % nh, t = pos0 + idx / nh, j0, i, lo = window > 0 && t - window + 1 > 0 ? t - window + 1 : 0;
        const float *qt = q + (size_t)idx * hd;
        const float *kb = kc + (size_t)(h / rep) * hd, *vb = vc + (size_t)(h / rep) * hd;
        float *ot = out + (size_t)idx * hd, mx = -INFINITY, sum = 0.0f;
        float p[LOMO__KV_TILE];
        memset(ot, 0, sizeof(float) * (size_t)hd);
        for (j0 = lo; j0 <= t; j0 += LOMO__KV_TILE) {
            int nj = t + 1 - j0 < LOMO__KV_TILE ? t + 1 - j0 : LOMO__KV_TILE, j;
            float tmx = -INFINITY;
            for (j = 0; j < nj; j++) {
                float sc = lomo__dot(qt, kb + (size_t)(j0 + j) * ld, hd) * scale;
                p[j] = cap > 0 ? cap * tanhf(sc / cap) : sc;
                tmx = p[j] > tmx ? p[j] : tmx;
            }
            if (tmx > mx) {   /* rescale what the earlier tiles summed */
                float r = expf(mx - tmx);
                if (sum > 0.0f) {
                    sum *= r;
                    LOMO__OMP(simd)
                    for (i = 0; i < hd; i++) ot[i] *= r;
                }
                mx = tmx;
            }
            for (j = 0; j < nj; j++) {
                float e = expf(p[j] - mx);
                sum += e;
                lomo__axpy(ot, e, vb + (size_t)(j0 + j) * ld, hd);
            }
        }
        LOMO__OMP(simd)
        for (i = 0; i < hd; i++) ot[i] /= sum;
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
        be.all_finite = lomo__cpu_all_finite;
        be.scratch_bytes = lomo__cpu_scratch_bytes; be.set_scratch = lomo__cpu_set_scratch;
        be.rmsnorm_ex_fwd = lomo__cpu_rmsnorm_ex_fwd; be.rmsnorm_ex_bwd = lomo__cpu_rmsnorm_ex_bwd;
        be.scale = lomo__cpu_scale; be.geglu_fwd = lomo__cpu_geglu_fwd; be.geglu_bwd = lomo__cpu_geglu_bwd;
        be.attn_ex_fwd = lomo__cpu_attn_ex_fwd; be.attn_ex_bwd = lomo__cpu_attn_ex_bwd;
        be.cross_entropy_softcap = lomo__cpu_cross_entropy_softcap; be.rope_ex = lomo__cpu_rope_ex;
        be.rope_at = lomo__cpu_rope_at; be.attn_kv = lomo__cpu_attn_kv;
#ifdef LOMO_CBLAS
        be.linear_update = lomo__cpu_linear_update;   /* fp32: fused into the dW GEMM; 16-bit: as the hook path */
#else
        (void)lomo__cpu_linear_update;   /* the plain-loops build: the hook path */
#endif
        be.matmul_fwd_n = lomo__cpu_matmul_fwd_n;
#ifdef LOMO_CBLAS
        be.name = "cpu+cblas";
#else
        be.name = "cpu";
#endif
    }
    return &be;
}

LOMODEF const lomo_backend *lomo_backend_open(const char *spec) {
    long device = 0;
    const char *p;
    if (spec && !strcmp(spec, "cpu")) return lomo_cpu_backend();
    if (!spec || strncmp(spec, "cuda", 4) || (spec[4] && (spec[4] != ':' || !spec[5]))) goto bad;
    for (p = spec[4] ? spec + 5 : spec + 4; *p; p++) {   /* "cuda:N": N decimal digits, at most INT_MAX */
        if (*p < '0' || *p > '9') goto bad;
        device = device * 10 + (*p - '0');
        if (device > INT_MAX) goto bad;
    }
#ifdef LOMO_CUDA
    return lomo_cuda_backend((int)device);
#else
    lomo__fail("backend \"%.64s\": the CUDA backend is not compiled in: define LOMO_CUDA (e.g. -DLOMO_CUDA) "
               "and link lomo_cuda.cuh's implementation, an object nvcc compiles from a .cu file that defines "
               "LOMO_IMPLEMENTATION and LOMO_CUDA and includes lomo.h and lomo_cuda.cuh (examples/cuda_impl.cu; "
               "make cuda)", spec);
    return NULL;
#endif
bad:
    lomo__fail("backend \"%.64s\": expected \"cpu\", \"cuda\" or \"cuda:N\" (N a device number, 0 to %d)",
               spec ? spec : "(null)", INT_MAX);
    return NULL;
}

/* ======================================================================== */
/* 6. driver: trainer, forward, layer-streaming backward, update hook calls */
/* ======================================================================== */

/* RoPE inverse frequencies (hd/2 floats), in fp32 as transformers computes
   them: theta^(-2i/hd), and for rope type llama3 the Llama 3 rescaling
   (low frequencies divided by factor, high ones kept, a smooth blend between). */
static void lomo__rope_inv_freq_len(const lomo_config *c, float *out, int seq_len) {
    int i, rd = c->rotary_dim > 0 ? c->rotary_dim : c->head_dim, half = rd / 2;
    for (i = 0; i < half; i++) {
        float f = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)rd);
        if (c->rope_type == 3 && i < c->rope_n_factors)   /* longrope: as transformers, 1 / (ext * theta^(2i/rd)) */
            f = 1.0f / ((seq_len > c->rope_original_max_pos ? c->rope_long_factor[i] : c->rope_short_factor[i]) *
                        powf(c->rope_theta, (float)(2 * i) / (float)rd));
        if (c->rope_type == 2) f /= c->rope_factor;   /* linear: positions / factor */
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
/* at seq_len <= original_max_position_embeddings (longrope: the short factors) */
static void lomo__rope_inv_freq(const lomo_config *c, float *out) { lomo__rope_inv_freq_len(c, out, 0); }

/* One layer's working set: what its backward reads. With checkpointing one
   set is shared by all layers (recomputed from the layer's input); without,
   every layer has its own. */
typedef struct lomo__acts {
    float *ln1, *rstd1, *q, *k, *v, *att, *lse, *xmid, *ln2, *rstd2, *g, *u, *h;
    float *qpre, *kpre, *rstdq, *rstdk;   /* qk_norm: q, k before their per-head norm; NULL otherwise */
    float *ao, *rstdao, *mo, *rstdmo;     /* gemma: attention / MLP outputs before their post-norms */
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
    float *inv_freq;            /* RoPE inverse frequencies, head_dim/2; then head_dim/2 more for Gemma 3's local layers */
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
    int failed;                 /* a gather failed inside this step's pass (lomo__need); lomo__phase_check reports it */
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
    int64_t loss_q;             /* sum of per-token losses in units of 2^-24 (exact, order-free) */
    int loss_bad;               /* a per-token loss was not finite (or absurdly large) */
    int bad_tensor;             /* first tensor whose update left a NaN/Inf weight this step, or -1 */
    lomo_update_ctx uctx;
    int32_t *tok_host;          /* this step's tokens (M * N), for pad_token_id */
    lomo_kv *kv;                /* generation only (a lomo_kv's own forward context): attention through the KV cache */
    int hc;                     /* rows of the logits buffer (lomo__head_rows): N, or a chunk of the head */
    int acts_top;               /* checkpointing, M == 1: the shared working set still holds layer acts_top - 1's
                                   forward (the forward's last layer), so the backward's first layer skips its
                                   recompute; 0: it holds nothing a backward may reuse */
    float *pc; size_t pc_bytes; /* the pass cache (lomo_train_opts.pass_cache): M x (2L + 1) entries of N C + C
                                   floats, or NULL */
    int pc_ready;               /* the norm pass of this step filled pc: the update pass restores from it */
};

static size_t lomo__acts_floats(const lomo_config *c, int N) {
    size_t C = c->dim, H = c->hidden_dim, qd = (size_t)c->n_heads * c->head_dim,
           kvd = (size_t)c->n_kv_heads * c->head_dim;
    return (size_t)N * (3 * C + 2 + 2 * qd + 2 * kvd + c->n_heads + 3 * H
                        + (c->qk_norm ? qd + kvd + c->n_heads + c->n_kv_heads : 0) + (c->gemma ? 2 * C + 2 : 0));
}

static void lomo__acts_carve(lomo__acts *a, float *p, const lomo_config *c, int N) {
    size_t C = c->dim, H = c->hidden_dim, qd = (size_t)c->n_heads * c->head_dim,
           kvd = (size_t)c->n_kv_heads * c->head_dim;
#define LOMO__CARVE(f, n) (a->f = p, p += (size_t)N * (n))
    LOMO__CARVE(ln1, C); LOMO__CARVE(rstd1, 1); LOMO__CARVE(q, qd); LOMO__CARVE(k, kvd);
    LOMO__CARVE(v, kvd); LOMO__CARVE(att, qd); LOMO__CARVE(lse, c->n_heads); LOMO__CARVE(xmid, C);
    LOMO__CARVE(ln2, C); LOMO__CARVE(rstd2, 1); LOMO__CARVE(g, H); LOMO__CARVE(u, H); LOMO__CARVE(h, H);
    if (c->qk_norm) {
        LOMO__CARVE(qpre, qd); LOMO__CARVE(kpre, kvd); LOMO__CARVE(rstdq, c->n_heads); LOMO__CARVE(rstdk, c->n_kv_heads);
    }
    if (c->gemma) { LOMO__CARVE(ao, C); LOMO__CARVE(rstdao, 1); LOMO__CARVE(mo, C); LOMO__CARVE(rstdmo, 1); }
    LOMO_ASSERT(p == a->ln1 + lomo__acts_floats(c, N));   /* the carve and the size agree */
#undef LOMO__CARVE
}

/* Rows of the LM head's logits buffer (see lomo_train_opts.head_chunk): the head and the
   cross-entropy run over the N tokens in chunks of this many; 64-bit, from the request. */
#ifndef LOMO_HEAD_CHUNK_BYTES
#define LOMO_HEAD_CHUNK_BYTES ((uint64_t)128 << 20)
#endif
static int64_t lomo__head_rows(const lomo_config *c, const lomo_train_opts *o) {
    int64_t N = (int64_t)o->batch * o->seq_len, r;
    uint64_t V = c->vocab_size > 0 ? (uint64_t)c->vocab_size : 1;
    if (o->head_chunk < 0 || N <= 0) return N;
    if (o->head_chunk > 0) return o->head_chunk < N ? o->head_chunk : N;
    if ((uint64_t)N * V * 4 <= LOMO_HEAD_CHUNK_BYTES) return N;
    r = (int64_t)(LOMO_HEAD_CHUNK_BYTES / (4 * V));
    if (r >= 64) r -= r % 64;   /* whole GEMM tiles */
    return r > 0 ? r : 1;
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
        const lomo__layer_row *r = lomo__layer_rows();
        const lomo_layer *L = &m->layers[stage];
        int b, k;
        for (b = 0; b < LOMO__LAYER_ROWS; b++)   /* the table's bwd order, the rows this model has */
            for (k = 0; k < LOMO__LAYER_ROWS; k++)
                if (r[k].bwd == b && lomo__layer_has(&m->cfg, r[k].when)) out[n++] = lomo__layer_get(L, r[k].field);
    }
    return n;
}

/* the tensors a gather stage brings in: a layer, the head (final norm +
   lm_head, which is the embedding when tied), or the embedding */
static int lomo__gather_stage(const lomo_model *m, int stage, lomo_tensor **out) {
    int n = 0;
    if (stage >= 0) {
        const lomo__layer_row *r = lomo__layer_rows();
        const lomo_layer *L = &m->layers[stage];
        int k;
        for (k = 0; k < LOMO__LAYER_ROWS; k++)   /* the table's row order */
            if (lomo__layer_has(&m->cfg, r[k].when)) out[n++] = lomo__layer_get(L, r[k].field);
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
    lomo_tensor *st[24];
    size_t off = 0;
    int n, k;
    if (!t->comm || t->gstage == stage) return 0;
    n = lomo__gather_stage(m, stage, st);
    for (k = 0; k < n; k++) {
        size_t part = lomo__stored_bytes(m, st[k]);
        lomo_tensor *v = &t->view[st[k]->index];
        LOMO_ASSERT(off + part * (size_t)t->comm->size <= t->gbuf_bytes);   /* gbuf holds the largest stage */
        *v = *st[k];
        v->data = (char *)t->gbuf + off;
        v->shard_off = 0; v->shard_len = v->numel;
        if (t->comm->all_gather(t->comm->ctx, v->data, st[k]->data, part)) { t->failed = 1; t->gstage = LOMO__NONE; return -1; }
        off += part * (size_t)t->comm->size;
    }
    t->gstage = stage;
    return 0;
}

/* a weight as the kernels must see it: whole (gathered when sharded). It is
   called inside kernel argument lists, so a failed gather cannot return -1:
   it sets t->failed, and the phase's lomo__phase_check reports it. */
static const lomo_tensor *lomo__need(lomo_trainer *t, int stage, const lomo_tensor *p) {
    if (!t->comm) return p;
    lomo__gather(t, stage);
    return &t->view[p->index];
}

/* The one place where a phase's deferred errors join the rule (see ERRORS at
   the top): the backend's sticky error (its ops return void; check() names
   the op) and a gather that failed inside a kernel's arguments (t->failed).
   Called at the end of the forward, of each layer's backward and of the
   backward, and before any tensor is handed to a rule. */
static int lomo__phase_check(lomo_trainer *t, const char *phase) {
    const lomo_backend *be = t->m->be;
    char why[sizeof lomo__errbuf];
    if (be->check(be->ctx)) return -1;
    if (!t->failed) return 0;
    snprintf(why, sizeof why, "%s", lomo_error());   /* (lomo__fail writes the buffer it would read) */
    return lomo__fail("%s: a collective failed: %s", phase, why);
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
    all = (int *)lomo__malloc(sizeof mine * (size_t)t->comm->size);
    if (!all) return lomo__fail("out of host memory");
    if (t->comm->all_gather(t->comm->ctx, all, mine, sizeof mine)) { LOMO_FREE(all); return -1; }
    for (r = 0; r < t->comm->size && !rc; r++)
        for (f = 0; f < NF; f++)
            if (all[r * NF + f] != mine[f]) {
                rc = lomo__fail("sharded trainer: rank %d has %s = %d but rank %d has %d: every rank must "
                                "run the same model, batch and options", r, names[f], all[r * NF + f],
                                t->comm->rank, mine[f]);
                break;
            }
    LOMO_FREE(all);
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
    lomo__free(m, LOMO_MEM_ACTIVATIONS, t->logits, sizeof(float) * ((size_t)t->hc * m->cfg.vocab_size + N));
    lomo__free(m, LOMO_MEM_ACTIVATIONS, t->tok, sizeof(int32_t) * N * 2 * (size_t)t->M);
    lomo__free(m, LOMO_MEM_WORKSPACE, t->ws, t->ws_bytes);
    lomo__free(m, LOMO_MEM_WORKSPACE, t->pc, t->pc_bytes);
    lomo__free(m, LOMO_MEM_WORKSPACE, t->scratch, t->scratch_bytes);
    lomo__free(m, LOMO_MEM_WORKSPACE, t->inv_freq, sizeof(float) * (size_t)(m->cfg.head_dim / 2) * 2);
    lomo__free(m, LOMO_MEM_GRADIENTS, t->grad, sizeof(float) * t->grad_numel);
    lomo__free(m, LOMO_MEM_OPTIMIZER, t->opt_mem, sizeof(float) * t->opt_floats);
    lomo__free(m, LOMO_MEM_COMM, t->gbuf, t->gbuf_bytes);
    lomo__free(m, LOMO_MEM_GRADIENTS, t->gshard, sizeof(float) * t->gshard_len);
    LOMO_FREE(t->acts); LOMO_FREE(t->tgt_host); LOMO_FREE(t->tok_host); LOMO_FREE(t->loss_host); LOMO_FREE(t->slot);
    LOMO_FREE(t->s1); LOMO_FREE(t->s2);
    LOMO_FREE(t->view); LOMO_FREE(t->lview);
    LOMO_FREE(t);
}

/* lomo_trainer_new in steps: check the request, fill the defaults, plan and allocate the buffers and
   the gradient buffer, the optimizer state, the RoPE table, the shard views. Each step returns 0, or
   -1 with lomo_error() set, at its first failure; lomo_trainer_new then frees the partly built
   trainer (lomo_trainer_free takes one) in its one cleanup. */

/* batch x seq_len in 64 bits, checked before anything is allocated: kernels index tokens (N M) and
   attention rows (N heads) with int, and on the CPU the activations must fit in host memory */
static int lomo__trainer_check_size(const lomo_model *m, const lomo_train_opts *opts) {
    const lomo_config *c = &m->cfg;
    int64_t Bq = opts->batch, Tq = opts->seq_len, Mq = opts->micro_batches > 1 ? opts->micro_batches : 1;
    int64_t Nq = Bq * Tq, heads = c->n_heads > c->n_kv_heads ? c->n_heads : c->n_kv_heads;
    size_t tags[LOMO_MEM_NTAGS], need = lomo_memory_formula_model(m, opts, tags) - tags[LOMO_MEM_PARAMS];
    if (Nq > INT_MAX / Mq || Nq > INT_MAX / (heads > 0 ? heads : 1))
        return lomo__fail("trainer: batch x seq_len = %d x %d = %lld tokens per micro-batch (x %lld micro-batches, "
                          "x %lld heads) is more than the %d positions lomo can index, and would need %.0f bytes "
                          "(%.1f GiB) of activations, gradients and workspace; use a smaller batch or seq_len",
                          opts->batch, opts->seq_len, (long long)Nq, (long long)Mq, (long long)heads, INT_MAX,
                          (double)need, need / 1073741824.0);
    if (!strncmp(m->be->name, "cpu", 3)) {   /* "cpu" or "cpu+cblas": host memory */
        long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
        double phys = pages > 0 && psize > 0 ? (double)pages * (double)psize : 0.0;
        if (phys > 0 && (double)need > phys)
            return lomo__fail("trainer: batch x seq_len = %d x %d (x %lld micro-batches) would need %.0f bytes "
                              "(%.1f GiB) of activations, gradients and workspace (%.1f GiB of logits for vocab %d), "
                              "more than this machine's %.1f GiB of memory", opts->batch, opts->seq_len,
                              (long long)Mq, (double)need, need / 1073741824.0,
                              4.0 * (double)lomo__head_rows(c, opts) * c->vocab_size / 1073741824.0, c->vocab_size, phys / 1073741824.0);
    }
    return 0;
}

/* the request: values in range, a batch that fits, a backend with the ops this model family needs */
static int lomo__trainer_check(const lomo_model *m, const lomo_train_opts *opts) {
    const lomo_config *c = &m->cfg;
    const lomo_backend *be = m->be;
    if (!opts || opts->batch <= 0 || opts->seq_len <= 0 || opts->micro_batches < 0)
        return lomo__fail("trainer: batch and seq_len must be positive, micro_batches >= 0");
    if (opts->clip_norm < 0 || opts->clip_value < 0 || opts->weight_decay < 0)
        return lomo__fail("trainer: clip_norm, clip_value and weight_decay must be >= 0");
    if (opts->optimizer < LOMO_OPT_LOMO || opts->optimizer > LOMO_OPT_ADAMW || opts->clip_mode < 0 ||
        opts->clip_mode > LOMO_CLIP_TENSOR)
        return lomo__fail("trainer: optimizer %d / clip_mode %d unknown", opts->optimizer, opts->clip_mode);
    if (c->sliding_window > 0 && opts->seq_len > c->sliding_window)
        return lomo__fail("config: field 'sliding_window': %d is shorter than seq_len=%d, and sliding-window "
                          "attention is not implemented (use seq_len <= %d)", c->sliding_window, opts->seq_len,
                          c->sliding_window);
    if (lomo__trainer_check_size(m, opts)) return -1;
    if ((c->gemma && (!be->rmsnorm_ex_fwd || !be->rmsnorm_ex_bwd || !be->scale || !be->geglu_fwd ||
                      !be->geglu_bwd || !be->attn_ex_fwd || !be->attn_ex_bwd)) ||
        (c->final_softcap > 0 && !be->cross_entropy_softcap) || ((c->rotary_dim > 0 || c->rope_type == 3) && !be->rope_ex) ||
        (c->local_window > 0 && (!be->attn_ex_fwd || !be->attn_ex_bwd)))
        return lomo__fail("trainer: backend %s lacks the ops a %s model needs (Gemma norms, GeGLU, soft-capped or "
                          "windowed attention, partial rotary)", be->name, c->model_type);
    return 0;
}

/* the options with every 0 that means "default" filled in (lomo-optim's and torch's defaults), the
   batch shape, the loss scaler's start */
static void lomo__trainer_defaults(lomo_trainer *t, lomo_model *m, const lomo_train_opts *opts) {
    lomo_train_opts *o = &t->o;
    t->m = m; *o = *opts;
    t->M = opts->micro_batches > 1 ? opts->micro_batches : 1;
    if (t->M > 1) o->checkpointing = 1;   /* layer-major micro-batching recomputes each layer */
    if (o->adalomo_eps1 == 0) o->adalomo_eps1 = 1e-30f;
    if (o->adalomo_eps2 == 0) o->adalomo_eps2 = 1e-3f;
    if (o->adalomo_clip_threshold == 0) o->adalomo_clip_threshold = 1.0f;
    if (o->adalomo_decay_rate == 0) o->adalomo_decay_rate = -0.8f;
    if (o->adamw_beta1 == 0) o->adamw_beta1 = 0.9f;
    if (o->adamw_beta2 == 0) o->adamw_beta2 = 0.999f;
    if (o->adamw_eps == 0) o->adamw_eps = 1e-8f;
    if (o->loss_scale_init == 0) o->loss_scale_init = 65536.0f;
    if (o->loss_scale_growth == 0) o->loss_scale_growth = 2.0f;
    if (o->loss_scale_backoff == 0) o->loss_scale_backoff = 0.5f;
    if (o->loss_scale_min == 0) o->loss_scale_min = 1.0f;
    if (o->loss_scale_window == 0) o->loss_scale_window = 1000;
    t->scaling = lomo__scaling_on(m->cfg.dtype, opts, m->be->grads16);
    t->scale = t->scaling ? o->loss_scale_init : 1.0f;
    t->B = opts->batch; t->T = opts->seq_len; t->N = t->B * t->T;
    t->comm = m->comm;
    t->gstage = LOMO__NONE;
}

/* n zeroed elements of host memory for the trainer's own bookkeeping (not counted: a few bytes per
   tensor or token), or NULL with lomo_error() set */
static void *lomo__trainer_host(size_t n, size_t size) {
    void *p = n && size <= SIZE_MAX / n ? LOMO_MALLOC(n * size) : NULL;
    if (!p) { lomo__fail("trainer: out of host memory (%zu x %zu bytes)", n, size); return NULL; }
    memset(p, 0, n * size);
    return p;
}

/* a linear layer's ||dW||^2 from the N x N Gram matrices of dy and x costs less than forming
   its O x K dW: N (O + K) < O K (few tokens per step) */
static int lomo__gram_cheaper(int N, int K, int O) { return (double)N * (O + K) < (double)O * K; }
/* per-tensor clipping fused with the dW GEMM: the Gram products come on top of the GEMM and
   replace only the passes over the formed dW (its norm, then the update: about 16 O K bytes,
   much of it from the last-level cache), so they must cost a small fraction of it: at most a
   fifth of the GEMM's FLOPs, 5 N (O + K) <= O K. `bench_cpu --gram-cost` (README, 0.8) on 2
   cores, each path from cold caches: fused / formed 0.75-0.97x where this rule takes it,
   0.99-1.38x where it does not, at K x O = 1024 x 1024, 1024 x 2816, 2816 x 1024 and N = 64-384. */
static int lomo__gram_fuse_cheaper(int N, int K, int O) { return 5.0 * N * (O + K) <= (double)O * K; }

/* the built-in LOMO rule may run inside a linear weight's dW GEMM (backend op linear_update)
   in this trainer's update passes: no hook, no clip_value, M = 1, unsharded (per-tensor
   clipping also needs the tensor's norm first: lomo__fuse_update) */
static int lomo__fusable(const lomo_trainer *t) {
    return t->m->be->linear_update && !t->o.update && t->o.optimizer == LOMO_OPT_LOMO && t->o.clip_value == 0.0f &&
           t->M == 1 && !t->comm;
}

/* the backend's scratch must hold two N x N Gram matrices: the Gram norm pass, or per-tensor
   clipping fused with the dW GEMM (lomo__fuse_update), at M = 1, unsharded, for a layer shape
   that takes it */
static int lomo__gram_scratch(const lomo_trainer *t) {
    const lomo_config *c = &t->m->cfg;
    int N = t->N, C = c->dim, H = c->hidden_dim, qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    int (*rule)(int, int, int) = t->o.clip_mode == LOMO_CLIP_GLOBAL_GRAM ? lomo__gram_cheaper
                               : t->o.clip_mode == LOMO_CLIP_TENSOR && t->o.clip_norm > 0.0f && lomo__fusable(t)
                               ? lomo__gram_fuse_cheaper : NULL;
    return rule && t->M == 1 && !t->comm &&
           (rule(N, C, qd) || rule(N, C, kvd) || rule(N, qd, C) || rule(N, C, H) || rule(N, H, C) || rule(N, C, c->vocab_size));
}

/* activations, logits, token ids, backward workspace, the backend's scratch, carved as the doc
   block's MEMORY formula counts them */
static int lomo__trainer_buffers(lomo_trainer *t) {
    lomo_model *m = t->m;
    const lomo_config *c = &m->cfg;
    size_t N = (size_t)t->N, C = (size_t)c->dim, H = (size_t)c->hidden_dim, M = (size_t)t->M;
    size_t qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    size_t per = lomo__acts_floats(c, t->N);
    int n_sets = t->o.checkpointing ? 1 : c->n_layers, l;
    if (!(t->xs = (float *)lomo__alloc(m, LOMO_MEM_ACTIVATIONS, sizeof(float) * M * (c->n_layers + 1) * N * C))) return -1;
    t->acts_bytes = sizeof(float) * per * n_sets;
    if (!(t->acts_mem = (float *)lomo__alloc(m, LOMO_MEM_ACTIVATIONS, t->acts_bytes))) return -1;
    if (!(t->acts = (lomo__acts *)lomo__trainer_host((size_t)n_sets, sizeof(lomo__acts)))) return -1;
    for (l = 0; l < n_sets; l++) lomo__acts_carve(&t->acts[l], t->acts_mem + per * l, c, t->N);
    if (!(t->lnf = (float *)lomo__alloc(m, LOMO_MEM_ACTIVATIONS, sizeof(float) * N * (C + 1)))) return -1;
    t->rstdf = t->lnf + N * C;
    t->hc = (int)lomo__head_rows(c, &t->o);   /* <= N, which fits an int (checked above) */
    if (!(t->logits = (float *)lomo__alloc(m, LOMO_MEM_ACTIVATIONS, sizeof(float) * ((size_t)t->hc * c->vocab_size + N))))
        return -1;
    t->losses = t->logits + (size_t)t->hc * c->vocab_size;
    if (!(t->tok = (int32_t *)lomo__alloc(m, LOMO_MEM_ACTIVATIONS, sizeof(int32_t) * N * 2 * M))) return -1;
    t->tgt = t->tok + N * M;
    t->ws_bytes = sizeof(float) * lomo__ws_floats(c, t->N, t->M);
    if (!(t->ws = (float *)lomo__alloc(m, LOMO_MEM_WORKSPACE, t->ws_bytes))) return -1;
    t->dx = t->ws; t->dln = t->dx + M * N * C; t->dq = t->dln + N * C; t->datt = t->dq + N * qd;
    t->dk = t->datt + N * qd; t->dv = t->dk + N * kvd; t->dg = t->dv + N * kvd; t->du = t->dg + N * H;
    t->vtmp = M > 1 ? t->du + N * H : NULL;
    t->pc_bytes = lomo__pass_cache_on(c, &t->o, m->be->grads16) ? sizeof(float) * M * (2 * (size_t)c->n_layers + 1) * (N + 1) * C : 0;
    if (t->pc_bytes && !(t->pc = (float *)lomo__alloc(m, LOMO_MEM_WORKSPACE, t->pc_bytes))) return -1;
    t->scratch_bytes = m->be->scratch_bytes_rows ? m->be->scratch_bytes_rows(m->be->ctx, m, t->N, t->hc, lomo__gram_scratch(t))
                     : m->be->scratch_bytes ? m->be->scratch_bytes(m->be->ctx, m, t->N, lomo__gram_scratch(t)) : 0;
    if (t->scratch_bytes && !(t->scratch = lomo__alloc(m, LOMO_MEM_WORKSPACE, t->scratch_bytes))) return -1;
    return 0;
}

/* the gradient buffer: the largest tensor (M == 1), or the largest stage's tensors side by side, each
   at its slot (M > 1); sharded, a gradient is reduce-scattered from ranks x shard capacity floats */
static size_t lomo__grad_len(const lomo_model *m, const lomo_tensor *p) {
    return m->comm ? (size_t)lomo__shard_cap(m, p) * (size_t)m->comm->size : (size_t)p->numel;
}
static int lomo__trainer_grads(lomo_trainer *t) {
    lomo_model *m = t->m;
    lomo_tensor *st[24];
    size_t i, off;
    int l;
    if (!(t->slot = (size_t *)lomo__trainer_host((size_t)m->n_tensors, sizeof(size_t)))) return -1;
    for (i = 0; i < (size_t)m->n_tensors; i++)
        if (lomo__grad_len(m, &m->tensors[i]) > t->grad_numel) t->grad_numel = lomo__grad_len(m, &m->tensors[i]);
    if (t->M > 1) {
        for (l = -1; l < m->cfg.n_layers; l++) {
            int n = lomo__stage_tensors(m, l, st), k;
            for (off = 0, k = 0; k < n; k++) { t->slot[st[k]->index] = off; off += lomo__grad_len(m, st[k]); }
            if (off > t->grad_numel) t->grad_numel = off;
        }
        if (m->cfg.tie_embeddings) {   /* the final norm's gradient waits above every stage (see lomo__backward) */
            t->slot[m->final_norm->index] = t->grad_numel;
            t->grad_numel += lomo__grad_len(m, m->final_norm);
        }
    }
    t->grad = (float *)lomo__alloc(m, LOMO_MEM_GRADIENTS, sizeof(float) * t->grad_numel);
    return t->grad ? 0 : -1;
}

/* the built-in rules' state, zeroed, one block: AdamW m and v for this rank's elements; AdaLomo a
   row and a column statistic per matrix (whole, also sharded), one per element for vectors */
static int lomo__trainer_opt_state(lomo_trainer *t) {
    lomo_model *m = t->m;
    int adamw = t->o.optimizer == LOMO_OPT_ADAMW;
    size_t i, off;
    if (!(t->s1 = (float **)lomo__trainer_host((size_t)m->n_tensors, sizeof(float *)))) return -1;
    if (!(t->s2 = (float **)lomo__trainer_host((size_t)m->n_tensors, sizeof(float *)))) return -1;
    if (t->o.update || t->o.optimizer == LOMO_OPT_LOMO) return 0;
    for (i = 0; i < (size_t)m->n_tensors; i++) {
        const lomo_tensor *p = &m->tensors[i];
        t->opt_floats += adamw ? 2 * (size_t)lomo__shard_cap(m, p)
                       : p->ndim == 2 ? (size_t)(p->shape[0] + p->shape[1]) : (size_t)p->numel;
    }
    if (!(t->opt_mem = (float *)lomo__alloc(m, LOMO_MEM_OPTIMIZER, sizeof(float) * t->opt_floats))) return -1;
    m->be->zero(m->be->ctx, t->opt_mem, sizeof(float) * t->opt_floats);
    for (off = 0, i = 0; i < (size_t)m->n_tensors; i++) {
        const lomo_tensor *p = &m->tensors[i];
        size_t cap = (size_t)lomo__shard_cap(m, p);
        size_t a = adamw ? cap : p->ndim == 2 ? (size_t)p->shape[0] : (size_t)p->numel;
        size_t b = adamw ? cap : p->ndim == 2 ? (size_t)p->shape[1] : 0;
        t->s1[i] = t->opt_mem + off; off += a;
        t->s2[i] = b ? t->opt_mem + off : NULL; off += b;
    }
    return 0;
}

/* RoPE inverse frequencies on the backend: the model's, then Gemma 3's local layers' (plain RoPE
   with rope_local_base_freq) */
static int lomo__trainer_rope(lomo_trainer *t) {
    lomo_model *m = t->m;
    const lomo_config *c = &m->cfg;
    size_t half = (size_t)(c->head_dim / 2);
    lomo_config loc = *c;
    float *f;
    if (!(t->inv_freq = (float *)lomo__alloc(m, LOMO_MEM_WORKSPACE, sizeof(float) * half * 2))) return -1;
    if (!(f = (float *)lomo__trainer_host(half * 2, sizeof(float)))) return -1;
    loc.rope_type = 0;
    if (c->rope_local_theta > 0) loc.rope_theta = c->rope_local_theta;
    lomo__rope_inv_freq_len(c, f, t->T);   /* longrope picks its factors by the sequence length */
    lomo__rope_inv_freq(&loc, f + half);
    m->be->upload(m->be->ctx, t->inv_freq, f, sizeof(float) * half * 2);
    LOMO_FREE(f);
    return 0;
}

/* sharded: the ranks agree; a gather buffer for the largest stage (whole tensors, storage dtype);
   this rank's part of a summed gradient; views of the gathered tensors, per tensor and per layer */
static int lomo__trainer_shard(lomo_trainer *t) {
    lomo_model *m = t->m;
    const lomo__layer_row *r = lomo__layer_rows();
    lomo_tensor *st[24];
    size_t most = 0, cap = 0, i;
    int l, k;
    if (!t->comm) return 0;
    if (lomo__ranks_agree(t)) return -1;
    if (!(t->view = (lomo_tensor *)lomo__trainer_host((size_t)m->n_tensors, sizeof(lomo_tensor)))) return -1;
    if (!(t->lview = (lomo_layer *)lomo__trainer_host((size_t)m->cfg.n_layers, sizeof(lomo_layer)))) return -1;
    for (l = LOMO__EMBED; l < m->cfg.n_layers; l++) {
        int n = lomo__gather_stage(m, l, st);
        size_t sum = 0;
        for (k = 0; k < n; k++) sum += lomo__stored_bytes(m, st[k]) * (size_t)t->comm->size;
        if (sum > most) most = sum;
    }
    t->gbuf_bytes = most;
    if (!(t->gbuf = lomo__alloc(m, LOMO_MEM_COMM, most))) return -1;
    for (i = 0; i < (size_t)m->n_tensors; i++)
        if ((size_t)lomo__shard_cap(m, &m->tensors[i]) > cap) cap = (size_t)lomo__shard_cap(m, &m->tensors[i]);
    t->gshard_len = cap;
    if (!(t->gshard = (float *)lomo__alloc(m, LOMO_MEM_GRADIENTS, sizeof(float) * cap))) return -1;
    for (l = 0; l < m->cfg.n_layers; l++)
        for (k = 0; k < LOMO__LAYER_ROWS; k++) {   /* every field of the table, pointing into view */
            const lomo_tensor *p = lomo__layer_get(&m->layers[l], r[k].field);
            *lomo__layer_field(&t->lview[l], r[k].field) = p ? &t->view[p->index] : NULL;
        }
    return 0;
}

LOMODEF lomo_trainer *lomo_trainer_new(lomo_model *m, const lomo_train_opts *opts) {
    lomo_trainer *t;
    size_t NM;
    if (lomo__trainer_check(m, opts)) return NULL;
    if (!(t = (lomo_trainer *)lomo__trainer_host(1, sizeof *t))) return NULL;
    lomo__trainer_defaults(t, m, opts);
    NM = (size_t)t->N * (size_t)t->M;
    if (lomo__trainer_buffers(t) || lomo__trainer_grads(t) || lomo__trainer_opt_state(t) || lomo__trainer_rope(t) ||
        lomo__trainer_shard(t) ||
        !(t->tgt_host = (int32_t *)lomo__trainer_host(NM, sizeof(int32_t))) ||
        !(t->tok_host = (int32_t *)lomo__trainer_host(NM, sizeof(int32_t))) ||
        !(t->loss_host = (float *)lomo__trainer_host((size_t)t->N, sizeof(float)))) {
        lomo_trainer_free(t);
        return NULL;
    }
    return t;
}

LOMODEF const float *lomo_logits(const lomo_trainer *t) {
    if (t->hc < t->N) {
        lomo__fail("lomo_logits: the LM head runs in chunks of %d of the %d tokens (lomo_train_opts.head_chunk %d): "
                   "no whole logits are held; set head_chunk = -1 for them", t->hc, t->N, t->o.head_chunk);
        return NULL;
    }
    return t->logits;
}
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

/* RMSNorm of the model's family: Gemma scales by (1 + w) */
static void lomo__norm_fwd(lomo_trainer *t, float *y, float *rstd, const float *x, const lomo_tensor *w, int N, int C) {
    const lomo_backend *be = t->m->be;
    const lomo_config *c = &t->m->cfg;
    if (c->gemma) be->rmsnorm_ex_fwd(be->ctx, y, rstd, x, w, N, C, c->norm_eps, 1.0f);
    else be->rmsnorm_fwd(be->ctx, y, rstd, x, w, N, C, c->norm_eps);
}
static void lomo__norm_bwd(lomo_trainer *t, float *dx, float *dw, const float *dy, const float *x,
                           const lomo_tensor *w, const float *rstd, int N, int C) {
    const lomo_backend *be = t->m->be;
    if (t->m->cfg.gemma) be->rmsnorm_ex_bwd(be->ctx, dx, dw, dy, x, w, rstd, N, C, 1.0f);
    else be->rmsnorm_bwd(be->ctx, dx, dw, dy, x, w, rstd, N, C);
}
/* layer l's RoPE frequencies (Gemma 3's local layers have their own base) */
static const float *lomo__layer_inv_freq(lomo_trainer *t, int l) {
    const lomo_config *c = &t->m->cfg;
    return t->inv_freq + (c->gemma == 3 && lomo__layer_local(c, l) ? c->head_dim / 2 : 0);
}
/* attention soft-capping as transformers applies it: Gemma 2 only (Gemma3Attention
   reads attn_logit_softcapping but never passes it on; it is kept for saving) */
static float lomo__attn_cap(const lomo_config *c) { return c->gemma == 2 ? c->attn_softcap : 0.0f; }
/* RoPE over a whole head, or its first rotary_dim dims */
static void lomo__rope(lomo_trainer *t, float *x, const float *ifr, int nh, int inverse) {
    const lomo_backend *be = t->m->be;
    const lomo_config *c = &t->m->cfg;
    if ((c->rotary_dim > 0 && c->rotary_dim < c->head_dim) || c->rope_type == 3)
        be->rope_ex(be->ctx, x, ifr, t->B, t->T, nh, c->head_dim, c->rotary_dim > 0 ? c->rotary_dim : c->head_dim,
                    c->rope_type == 3 ? c->rope_attn_factor : 1.0f, inverse);
    else be->rope(be->ctx, x, ifr, t->B, t->T, nh, c->head_dim, inverse);
}
static float lomo__attn_scale(const lomo_config *c) {
    return (float)(1.0 / sqrt(c->query_pre_attn_scalar > 0 ? (double)c->query_pre_attn_scalar : (double)c->head_dim));
}

/* y_j = x W_j^T + b_j for n weights that share x (Q/K/V, gate/up): in generation one
   matmul_fwd_n (the CPU reads a decode step's rows of all of them in one pass), in
   training (and where the backend has none) one matmul_fwd each, as before */
static void lomo__proj_n(lomo_trainer *t, int n, float *const *y, const float *x, const lomo_tensor *const *w,
                         const lomo_tensor *const *b, int K, const int *O) {
    const lomo_backend *be = t->m->be;
    int j;
    if (t->kv && be->matmul_fwd_n) { be->matmul_fwd_n(be->ctx, n, y, x, w, b, t->N, K, O); return; }
    for (j = 0; j < n; j++) be->matmul_fwd(be->ctx, y[j], x, w[j], b[j], t->N, K, O[j], 0);
}

/* One decoder layer forward: x_in (N,C) -> x_out (N,C), filling a.
   x_out may be NULL (recompute inside backward needs everything but the output).
   Llama:  xmid = x_in + attn(norm(x_in)),        x_out = xmid + mlp(norm(xmid))
   Gemma:  xmid = x_in + norm(attn(norm(x_in))),  x_out = xmid + norm(mlp(norm(xmid)))
   qk_norm (Qwen3, Gemma 3): q and k normalised per head before RoPE.
   Generation runs this same function with t->kv set (one sequence of N new tokens). */
static void lomo__layer_fwd(lomo_trainer *t, int l, const float *x_in, lomo__acts *a, float *x_out) {
    const lomo_config *c = &t->m->cfg;
    const lomo_backend *be = t->m->be;
    const lomo_layer *w = lomo__layer_weights(t, l);
    const float *ifr = lomo__layer_inv_freq(t, l);
    void *X = be->ctx;
    int N = t->N, C = c->dim, H = c->hidden_dim, hd = c->head_dim;
    int qd = c->n_heads * hd, kvd = c->n_kv_heads * hd;
    /* the weights have the shapes the kernels are told (the model was built from c; views included) */
    LOMO_ASSERT(w->wq->shape[0] == qd && w->wq->shape[1] == C && w->wk->shape[0] == kvd && w->wv->shape[0] == kvd &&
                w->wo->shape[0] == C && w->wo->shape[1] == qd && w->w_gate->shape[0] == H && w->w_up->shape[0] == H &&
                w->w_up->shape[1] == C && w->w_down->shape[0] == C && w->w_down->shape[1] == H && w->attn_norm->numel == C);
    lomo__norm_fwd(t, a->ln1, a->rstd1, x_in, w->attn_norm, N, C);
    {
        float *y[3];
        const lomo_tensor *ws[3], *bs[3];
        int O[3];
        y[0] = c->qk_norm ? a->qpre : a->q; ws[0] = w->wq; bs[0] = w->bq; O[0] = qd;
        y[1] = c->qk_norm ? a->kpre : a->k; ws[1] = w->wk; bs[1] = w->bk; O[1] = kvd;
        y[2] = a->v; ws[2] = w->wv; bs[2] = w->bv; O[2] = kvd;
        lomo__proj_n(t, 3, y, a->ln1, ws, bs, C, O);
    }
    if (c->qk_norm) {
        lomo__norm_fwd(t, a->q, a->rstdq, a->qpre, w->q_norm, N * c->n_heads, hd);
        lomo__norm_fwd(t, a->k, a->rstdk, a->kpre, w->k_norm, N * c->n_kv_heads, hd);
    }
    if (t->kv) lomo__kv_attn(t, l, a);
    else {
        lomo__rope(t, a->q, ifr, c->n_heads, 0);
        lomo__rope(t, a->k, ifr, c->n_kv_heads, 0);
        if (c->gemma || c->local_window > 0)
            be->attn_ex_fwd(X, a->att, a->lse, a->q, a->k, a->v, t->B, t->T, c->n_heads, c->n_kv_heads, hd,
                            lomo__attn_scale(c), lomo__attn_cap(c), lomo__layer_local(c, l) ? c->local_window : 0);
        else be->attn_fwd(X, a->att, a->lse, a->q, a->k, a->v, t->B, t->T, c->n_heads, c->n_kv_heads, hd);
    }
    if (c->gemma) {
        be->matmul_fwd(X, a->ao, a->att, w->wo, w->bo, N, qd, C, 0);
        lomo__norm_fwd(t, a->xmid, a->rstdao, a->ao, w->post_attn_norm, N, C);
        be->add(X, a->xmid, x_in, (size_t)N * C);
    } else {
        be->copy(X, a->xmid, x_in, sizeof(float) * (size_t)N * C);
        be->matmul_fwd(X, a->xmid, a->att, w->wo, w->bo, N, qd, C, 1);
    }
    lomo__norm_fwd(t, a->ln2, a->rstd2, a->xmid, w->mlp_norm, N, C);
    {
        float *y[2];
        const lomo_tensor *ws[2], *bs[2];
        int O[2];
        y[0] = a->g; ws[0] = w->w_gate; y[1] = a->u; ws[1] = w->w_up;
        bs[0] = bs[1] = NULL; O[0] = O[1] = H;
        lomo__proj_n(t, 2, y, a->ln2, ws, bs, C, O);
    }
    if (c->gemma) be->geglu_fwd(X, a->h, a->g, a->u, (size_t)N * H);
    else be->swiglu_fwd(X, a->h, a->g, a->u, (size_t)N * H);
    if (c->gemma) {   /* the backward needs mo and its norm statistics, so they are recomputed too */
        be->matmul_fwd(X, a->mo, a->h, w->w_down, NULL, N, H, C, 0);
        lomo__norm_fwd(t, x_out ? x_out : t->dln, a->rstdmo, a->mo, w->post_mlp_norm, N, C);
        if (x_out) be->add(X, x_out, a->xmid, (size_t)N * C);
    } else if (x_out) {
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
    memcpy(t->tok_host, tokens, sizeof(int32_t) * (size_t)n);
    be->upload(be->ctx, t->tgt, t->tgt_host, sizeof(int32_t) * (size_t)n);
    if (be->set_scratch) be->set_scratch(be->ctx, t->scratch, t->scratch_bytes, (int)t->m->cfg.dtype);   /* always: this trainer's */
    return count;
}

static float *lomo__xs(lomo_trainer *t, int m, int l) {
    return t->xs + ((size_t)m * (t->m->cfg.n_layers + 1) + l) * t->N * t->m->cfg.dim;
}

/* logits and cross-entropy of the rows r0..r0+nr-1 (nr <= t->hc) of micro-batch m's
   final norm output: logits (dlogits in place with with_grad) in the logits buffer,
   their losses in losses[r0..] */
static void lomo__head_chunk(lomo_trainer *t, int m, int r0, int nr, float dscale, int with_grad) {
    lomo_model *md = t->m;
    const lomo_config *c = &md->cfg;
    const lomo_backend *be = md->be;
    const int32_t *tgt = t->tgt + (size_t)m * t->N + r0;
    be->matmul_fwd(be->ctx, t->logits, t->lnf + (size_t)r0 * c->dim, lomo__need(t, LOMO__HEAD, md->lm_head), NULL, nr,
                   c->dim, c->vocab_size, 0);
    if (c->final_softcap > 0)
        be->cross_entropy_softcap(be->ctx, t->losses + r0, with_grad ? t->logits : NULL, t->logits, tgt, nr,
                                  c->vocab_size, dscale, c->final_softcap);
    else be->cross_entropy(be->ctx, t->losses + r0, with_grad ? t->logits : NULL, t->logits, tgt, nr, c->vocab_size,
                           dscale);
}

/* final norm, logits, cross-entropy of micro-batch m, in chunks of t->hc tokens
   (dlogits into the logits buffer with with_grad: the whole micro-batch's when
   t->hc == N, else only the last chunk's); returns the sum of its token losses */
static double lomo__head_fwd(lomo_trainer *t, int m, float dscale, int with_grad) {
    lomo_model *md = t->m;
    const lomo_config *c = &md->cfg;
    const lomo_backend *be = md->be;
    double sum = 0.0;
    int i;
    lomo__norm_fwd(t, t->lnf, t->rstdf, lomo__xs(t, m, c->n_layers), lomo__need(t, LOMO__HEAD, md->final_norm),
                   t->N, c->dim);
    for (i = 0; i < t->N; i += t->hc) lomo__head_chunk(t, m, i, t->N - i < t->hc ? t->N - i : t->hc, dscale, with_grad);
    be->download(be->ctx, t->loss_host, t->losses, sizeof(float) * t->N);
    for (i = 0; i < t->N; i++) {
        double l = t->loss_host[i];
        sum += l;
        if (l == l && fabs(l) < 1073741824.0) t->loss_q += (int64_t)llrint(l * 16777216.0);
        else t->loss_bad = 1;
    }
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
    t->loss_q = 0; t->loss_bad = 0;
    for (m = 0; m < M; m++) {
        be->embed_fwd(be->ctx, lomo__xs(t, m, 0), t->tok + (size_t)m * t->N, lomo__need(t, LOMO__EMBED, md->embed),
                      t->N, c->dim);
        if (c->gemma) be->scale(be->ctx, lomo__xs(t, m, 0), (float)sqrt((double)c->dim), (size_t)t->N * c->dim);
        for (l = 0; l < c->n_layers; l++)
            lomo__layer_fwd(t, l, lomo__xs(t, m, l), &t->acts[t->o.checkpointing ? 0 : l], lomo__xs(t, m, l + 1));
        sum += lomo__head_fwd(t, m, dscale, with_grad && M == 1);
    }
    /* the top layer's working set is the one its backward would recompute (the
       same kernels on the same inputs): kept for the first backward pass */
    t->acts_top = t->o.checkpointing && with_grad && M == 1 ? c->n_layers : 0;
    if (lomo__phase_check(t, "sharded forward")) return -1;
    if (t->comm) {   /* every rank's tokens; the 2^-24 units sum exactly in double below 2^53 */
        double q[3];
        q[0] = sum; q[1] = (double)t->loss_q; q[2] = t->loss_bad;
        if (t->comm->all_reduce_sum(t->comm->ctx, q, 3, 1)) return -1;
        sum = q[0]; t->loss_q = (int64_t)q[1]; t->loss_bad = q[2] != 0;
    }
    *loss = count ? (float)(sum / (double)count) : 0.0f;
    return 0;
}

/* After a tensor's update: did it leave a NaN or Inf weight? One read of the
   tensor (the backend's all_finite, else its sum of squares: finite weights
   cannot overflow it in double). */
static void lomo__fin_reset(const lomo_backend *be) {   /* only this tensor's update may vouch for it */
    if (be == lomo_cpu_backend()) ((lomo__cpu *)be->ctx)->fin_data = NULL;
}

static void lomo__check_finite(lomo_trainer *t, const lomo_tensor *p, int index) {
    const lomo_backend *be = t->m->be;
    if (t->o.no_finite_check || t->bad_tensor >= 0) return;
    if (be->all_finite ? !be->all_finite(be->ctx, p) : !isfinite(be->param_sumsq(be->ctx, p))) t->bad_tensor = index;
}

/* A tensor's gradient g is complete: measure it (norm pass) or hand it to
   the update rule (update pass). g is the trainer's buffer: sharded, it is
   padded and summed over the ranks in place. */
static int lomo__grad_ready_sharded(lomo_trainer *t, lomo_tensor *view, float *g);

/* the rule clips each tensor by its own norm (LOMO_CLIP_TENSOR) */
static int lomo__clip_each(const lomo_trainer *t) { return t->o.clip_norm > 0.0f && t->o.clip_mode == LOMO_CLIP_TENSOR; }

/* per-tensor clipping: this tensor's coefficient from its ||g||^2 (loss-scaled) */
static void lomo__clip_each_coef(lomo_trainer *t, double grad_sq) {
    float norm = (float)sqrt(grad_sq) * t->uctx.inv_loss_scale;
    float coef = t->o.clip_norm / (norm + 1e-6f);
    t->uctx.clip_coef = coef < 1.0f ? coef : 1.0f;
    t->uctx.grad_scale = t->uctx.clip_coef * t->uctx.inv_loss_scale;
}

/* Applies the rule to one tensor, sharded or not: p with its gradient g;
   grad_sq = the whole tensor's ||g||^2 (read only by lomo__clip_each);
   param_sq = the whole tensor's ||p||^2 for a sharded AdaLomo, else -1 (the
   rule measures p itself); fin = what to read back for NaN/Inf afterwards. */
static int lomo__apply_rule(lomo_trainer *t, lomo_tensor *p, const float *g, double grad_sq, double param_sq,
                            const lomo_tensor *fin) {
    int rc;
    t->uctx.tensor_index = p->index;
    if (lomo__clip_each(t)) lomo__clip_each_coef(t, grad_sq);
    lomo__fin_reset(t->m->be);
    rc = t->o.update ? t->o.update(p, g, &t->uctx, t->o.update_user) : lomo__builtin_update(t, p, g, param_sq);
    if (rc) {
        if (!lomo_error()[0]) lomo__fail("update hook failed on %s", p->name);
        return -1;
    }
    lomo__check_finite(t, fin, p->index);
    return 0;
}

static int lomo__grad_ready(lomo_trainer *t, lomo_tensor *p, float *g) {
    const lomo_backend *be = t->m->be;
    if (t->comm) return lomo__grad_ready_sharded(t, p, g);
    if (t->pass == LOMO__PASS_NORM) {
        t->sumsq += be->sumsq(be->ctx, g, (size_t)p->numel);
        return 0;
    }
    if (lomo__phase_check(t, "update")) return -1;   /* nothing reaches a rule after a failed kernel */
    return lomo__apply_rule(t, p, g, lomo__clip_each(t) ? be->sumsq(be->ctx, g, (size_t)p->numel) : 0.0, -1.0, p);
}

/* Sharded: g holds this rank's whole-tensor gradient (its own micro-batches).
   It is summed over the ranks and the rule runs on this rank's shard only:
   reduce-scatter for elementwise rules, all-reduce for AdaLomo, whose row,
   column and RMS statistics cover the whole tensor (as lomo-optim's ZeRO-3
   path computes them). The norm pass sums the squares of the shards; the
   caller all-reduces the total. */
static int lomo__grad_ready_sharded(lomo_trainer *t, lomo_tensor *view, float *g) {
    const lomo_comm *c = t->comm;
    const lomo_backend *be = t->m->be;
    lomo_tensor *p = &t->m->tensors[view->index];   /* the rank's shard, not the gathered view the kernels used */
    lomo_tensor flat = *p;                            /* the shard as a flat tensor */
    size_t cap = (size_t)lomo__shard_cap(t->m, p), n = (size_t)p->numel;
    int ada = t->pass == LOMO__PASS_UPDATE && !t->o.update && t->o.optimizer == LOMO_OPT_ADALOMO;
    double sq = 0.0, psq;
    flat.numel = flat.shard_len; flat.ndim = 1; flat.shape[0] = flat.numel; flat.shape[1] = 0;
    if (cap * (size_t)c->size > n) be->zero(be->ctx, g + n, sizeof(float) * (cap * (size_t)c->size - n));
    if (ada ? c->all_reduce_sum(c->ctx, g, n, 0) : c->reduce_scatter_sum(c->ctx, t->gshard, g, cap)) return -1;
    if (t->pass == LOMO__PASS_NORM) {
        t->sumsq += be->sumsq(be->ctx, t->gshard, (size_t)p->shard_len);
        return 0;
    }
    if (lomo__phase_check(t, "sharded backward")) return -1;
    if (lomo__clip_each(t)) {   /* this tensor's whole norm */
        sq = be->sumsq(be->ctx, ada ? g : t->gshard, ada ? n : (size_t)p->shard_len);
        if (!ada && c->all_reduce_sum(c->ctx, &sq, 1, 1)) return -1;
    }
    if (!ada) return lomo__apply_rule(t, &flat, t->gshard, sq, -1.0, &flat);   /* elementwise rules, hooks: the flat shard */
    psq = be->param_sumsq(be->ctx, &flat);   /* AdaLomo: the shard of a whole-shaped tensor, whole gradient and state */
    if (c->all_reduce_sum(c->ctx, &psq, 1, 1)) return -1;
    return lomo__apply_rule(t, p, g, sq, psq, &flat);
}

/* Micro-batch gradient routing. With M == 1 a gradient is formed in the one
   buffer and handed on at once; with M > 1 it is summed over the micro-batches
   in its slot of the stage's buffer and handed on when the stage is done. */
/* where p's gradient is formed: the one buffer (M == 1), or p's slot (M > 1) */
static float *lomo__grad_dst(lomo_trainer *t, const lomo_tensor *p) {
    return t->M == 1 ? t->grad : t->grad + t->slot[p->index];
}
/* where a vector's (bias, norm weight) gradient of micro-batch m goes: its kernels overwrite, so
   micro-batches after the first write into vtmp and lomo__vec_grad_done adds it to the slot */
static float *lomo__vec_grad_dst(lomo_trainer *t, const lomo_tensor *p, int m) {
    return t->M > 1 && m > 0 ? t->vtmp : lomo__grad_dst(t, p);
}
static int lomo__vec_grad_done(lomo_trainer *t, lomo_tensor *p, int m) {
    if (t->M == 1) return lomo__grad_ready(t, p, t->grad);
    if (m > 0) t->m->be->add(t->m->be->ctx, lomo__grad_dst(t, p), t->vtmp, (size_t)p->numel);
    return 0;
}

/* 0.8: the pass cache (lomo_train_opts.pass_cache). The residual stream's
   gradient passes 2L + 1 norms in a backward pass: the final norm, then each
   layer's MLP and attention norms. The norm pass keeps dx after each of them,
   with the norm weight's gradient (entry e of micro-batch m: 2L the final norm,
   2l + 1 layer l's MLP norm, 2l its attention norm). The update pass computes
   the same numbers (every dX uses the old weights), so it puts them back
   instead, and skips the matmuls whose only use was that norm's input: the LM
   head's dX and each layer's gate/up and q/k/v dX. */
static int lomo__pc_restore(const lomo_trainer *t) { return t->pc_ready && t->pass == LOMO__PASS_UPDATE; }

/* a residual norm's backward, dx += its part, for entry e (above); kw: the weight p as the kernels see it */
static int lomo__resid_norm_bwd(lomo_trainer *t, int e, int m, float *dx, const float *dy, const float *x,
                                const lomo_tensor *kw, lomo_tensor *p, const float *rstd) {
    const lomo_backend *be = t->m->be;
    size_t C = (size_t)t->m->cfg.dim, NC = (size_t)t->N * C;
    float *dw = lomo__vec_grad_dst(t, p, m);
    float *slot = t->pc ? t->pc + ((size_t)m * (2 * (size_t)t->m->cfg.n_layers + 1) + (size_t)e) * (NC + C) : NULL;
    if (lomo__pc_restore(t)) {
        be->copy(be->ctx, dx, slot, sizeof(float) * NC);
        be->copy(be->ctx, dw, slot + NC, sizeof(float) * C);
    } else {
        lomo__norm_bwd(t, dx, dw, dy, x, kw, rstd, t->N, (int)C);
        if (slot && t->pass == LOMO__PASS_NORM) {
            be->copy(be->ctx, slot, dx, sizeof(float) * NC);
            be->copy(be->ctx, slot + NC, dw, sizeof(float) * C);
        }
    }
    return lomo__vec_grad_done(t, p, m);
}

/* this linear layer's built-in LOMO update runs inside its dW GEMM: the update pass of a
   trainer that may fuse (lomo__fusable); per-tensor clipping only where the Gram matrices
   give the tensor's norm first */
static int lomo__fuse_update(const lomo_trainer *t, int K, int O) {
    return t->pass == LOMO__PASS_UPDATE && lomo__fusable(t) &&
           (!lomo__clip_each(t) || (t->m->be->wgrad_sqnorm && lomo__gram_fuse_cheaper(t->N, K, O)));
}

/* dW of a linear layer (and its bias), for micro-batch m. In the norm pass
   with LOMO_CLIP_GLOBAL_GRAM, ||dW||^2 comes from Gram matrices where that
   is cheaper than forming dW; in the update pass the built-in LOMO rule runs
   inside the dW GEMM where it can (lomo__fuse_update; 0.8: also per-tensor
   clipping, its coefficient from the Gram norm). */
static int lomo__linear_grads(lomo_trainer *t, lomo_tensor *w, lomo_tensor *b, const float *dy,
                              const float *x, int K, int O, int m) {
    const lomo_backend *be = t->m->be;
    int N = t->N;
    if (t->pass == LOMO__PASS_NORM && t->o.clip_mode == LOMO_CLIP_GLOBAL_GRAM && t->M == 1 && !t->comm && be->wgrad_sqnorm &&
        lomo__gram_cheaper(N, K, O)) {
        t->sumsq += be->wgrad_sqnorm(be->ctx, dy, x, N, K, O);
    } else if (lomo__fuse_update(t, K, O)) {
        /* 0.6: the built-in LOMO rule needs only dW itself: fused (the coefficient is known in this pass) */
        lomo_update_args a;
        if (lomo__clip_each(t)) lomo__clip_each_coef(t, be->wgrad_sqnorm(be->ctx, dy, x, N, K, O));
        if (be->check(be->ctx)) return -1;
        t->uctx.tensor_index = w->index;
        lomo__builtin_args(&a, &t->uctx, LOMO_OPT_LOMO);
        a.shard_off = w->shard_off;
        lomo__fin_reset(be);
        be->linear_update(be->ctx, w, dy, x, N, K, O, t->grad, t->grad_numel, &a);
        lomo__check_finite(t, w, w->index);
    } else {
        be->matmul_bwd_w(be->ctx, lomo__grad_dst(t, w), dy, x, N, K, O, t->M > 1 && m > 0);
        if (t->M == 1 && lomo__grad_ready(t, w, t->grad)) return -1;
    }
    if (b) {
        be->bias_bwd(be->ctx, lomo__vec_grad_dst(t, b, m), dy, N, O);
        if (lomo__vec_grad_done(t, b, m)) return -1;
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
    const float *ifr = lomo__layer_inv_freq(t, l), *dmo = dx, *dao = dx;
    int dln = !lomo__pc_restore(t);   /* the norms' input gradients are computed, not restored */
    if (t->o.checkpointing && t->acts_top != l + 1) lomo__layer_fwd(t, l, lomo__xs(t, m, l), a, NULL);
    t->acts_top = 0;   /* the next layer, or a second pass, recomputes */
    if (c->gemma) {   /* x_out = xmid + norm(mo): dmo into dln */
        be->zero(X, t->dln, sizeof(float) * (size_t)N * C);
        lomo__norm_bwd(t, t->dln, lomo__vec_grad_dst(t, w->post_mlp_norm, m), dx, a->mo, w->post_mlp_norm, a->rstdmo, N, C);
        if (lomo__vec_grad_done(t, w->post_mlp_norm, m)) return -1;
        dmo = t->dln;
    }
    /* MLP: mo = (act(ln2 Wg^T) * ln2 Wu^T) Wd^T, act = silu (Llama) or gelu_tanh (Gemma) */
    be->matmul_bwd_x(X, t->dg, dmo, w->w_down, N, H, C, 0);                /* dh, in dg */
    if (lomo__linear_grads(t, w->w_down, NULL, dmo, a->h, H, C, m)) return -1;
    if (c->gemma) be->geglu_bwd(X, t->dg, t->du, t->dg, a->g, a->u, (size_t)N * H);
    else be->swiglu_bwd(X, t->dg, t->du, t->dg, a->g, a->u, (size_t)N * H);
    if (dln) be->matmul_bwd_x(X, t->dln, t->du, w->w_up, N, C, H, 0);
    if (w->w_gate_up) {   /* fused (Phi-3): both dX first, then dW into the row blocks, one hook call */
        float *g = lomo__grad_dst(t, w->w_gate_up);
        if (dln) be->matmul_bwd_x(X, t->dln, t->dg, w->w_gate, N, C, H, 1);
        be->matmul_bwd_w(X, g, t->dg, a->ln2, N, C, H, t->M > 1 && m > 0);
        be->matmul_bwd_w(X, g + (size_t)H * C, t->du, a->ln2, N, C, H, t->M > 1 && m > 0);
        if (t->M == 1 && lomo__grad_ready(t, w->w_gate_up, t->grad)) return -1;
    } else {
        if (lomo__linear_grads(t, w->w_up, NULL, t->du, a->ln2, C, H, m)) return -1;
        if (dln) be->matmul_bwd_x(X, t->dln, t->dg, w->w_gate, N, C, H, 1);
        if (lomo__linear_grads(t, w->w_gate, NULL, t->dg, a->ln2, C, H, m)) return -1;
    }
    if (lomo__resid_norm_bwd(t, 2 * l + 1, m, dx, t->dln, a->xmid, w->mlp_norm, w->mlp_norm, a->rstd2)) return -1;
    if (c->gemma) {   /* xmid = x_in + norm(ao): dao into dln */
        be->zero(X, t->dln, sizeof(float) * (size_t)N * C);
        lomo__norm_bwd(t, t->dln, lomo__vec_grad_dst(t, w->post_attn_norm, m), dx, a->ao, w->post_attn_norm, a->rstdao,
                       N, C);
        if (lomo__vec_grad_done(t, w->post_attn_norm, m)) return -1;
        dao = t->dln;
    }
    /* attention: ao = attn(rope(ln1 Wq^T), rope(ln1 Wk^T), ln1 Wv^T) Wo^T */
    be->matmul_bwd_x(X, t->datt, dao, w->wo, N, qd, C, 0);
    if (lomo__linear_grads(t, w->wo, w->bo, dao, a->att, qd, C, m)) return -1;
    if (c->gemma || c->local_window > 0)
        be->attn_ex_bwd(X, t->dq, t->dk, t->dv, t->datt, a->q, a->k, a->v, a->att, a->lse, t->B, t->T, c->n_heads,
                        c->n_kv_heads, hd, lomo__attn_scale(c), lomo__attn_cap(c), lomo__layer_local(c, l) ? c->local_window : 0);
    else be->attn_bwd(X, t->dq, t->dk, t->dv, t->datt, a->q, a->k, a->v, a->att, a->lse,
                      t->B, t->T, c->n_heads, c->n_kv_heads, hd);
    lomo__rope(t, t->dq, ifr, c->n_heads, 1);
    lomo__rope(t, t->dk, ifr, c->n_kv_heads, 1);
    if (c->qk_norm) {   /* through the per-head norms, datt (free now) as the scratch */
        be->zero(X, t->datt, sizeof(float) * (size_t)N * kvd);
        lomo__norm_bwd(t, t->datt, lomo__vec_grad_dst(t, w->k_norm, m), t->dk, a->kpre, w->k_norm, a->rstdk,
                       N * c->n_kv_heads, hd);
        be->copy(X, t->dk, t->datt, sizeof(float) * (size_t)N * kvd);
        if (lomo__vec_grad_done(t, w->k_norm, m)) return -1;
        be->zero(X, t->datt, sizeof(float) * (size_t)N * qd);
        lomo__norm_bwd(t, t->datt, lomo__vec_grad_dst(t, w->q_norm, m), t->dq, a->qpre, w->q_norm, a->rstdq,
                       N * c->n_heads, hd);
        be->copy(X, t->dq, t->datt, sizeof(float) * (size_t)N * qd);
        if (lomo__vec_grad_done(t, w->q_norm, m)) return -1;
    }
    if (dln) be->matmul_bwd_x(X, t->dln, t->dv, w->wv, N, C, kvd, 0);
    if (w->w_qkv) {   /* fused (Phi-3): every dX first, then dW into the q, k, v row blocks, one hook call */
        float *g = lomo__grad_dst(t, w->w_qkv);
        int acc = t->M > 1 && m > 0;
        if (dln) be->matmul_bwd_x(X, t->dln, t->dk, w->wk, N, C, kvd, 1);
        if (dln) be->matmul_bwd_x(X, t->dln, t->dq, w->wq, N, C, qd, 1);
        be->matmul_bwd_w(X, g, t->dq, a->ln1, N, C, qd, acc);
        be->matmul_bwd_w(X, g + (size_t)qd * C, t->dk, a->ln1, N, C, kvd, acc);
        be->matmul_bwd_w(X, g + (size_t)(qd + kvd) * C, t->dv, a->ln1, N, C, kvd, acc);
        if (t->M == 1 && lomo__grad_ready(t, w->w_qkv, t->grad)) return -1;
    } else {
    if (lomo__linear_grads(t, w->wv, w->bv, t->dv, a->ln1, C, kvd, m)) return -1;
    if (dln) be->matmul_bwd_x(X, t->dln, t->dk, w->wk, N, C, kvd, 1);
    if (lomo__linear_grads(t, w->wk, w->bk, t->dk, a->ln1, C, kvd, m)) return -1;
    if (dln) be->matmul_bwd_x(X, t->dln, t->dq, w->wq, N, C, qd, 1);
    if (lomo__linear_grads(t, w->wq, w->bq, t->dq, a->ln1, C, qd, m)) return -1;
    }
    if (lomo__resid_norm_bwd(t, 2 * l, m, dx, t->dln, lomo__xs(t, m, l), w->attn_norm, w->attn_norm, a->rstd1)) return -1;
    return lomo__phase_check(t, "sharded backward");
}

/* after all micro-batches of a stage: each tensor's summed gradient to the rule */
static int lomo__stage_ready(lomo_trainer *t, int stage) {
    lomo_tensor *st[24];
    int n = lomo__stage_tensors(t->m, stage, st), k;
    for (k = 0; k < n; k++)
        if (lomo__grad_ready(t, st[k], lomo__grad_dst(t, st[k]))) return -1;
    return 0;
}

/* The head's backward for micro-batch m when it runs in chunks (t->hc < N):
   each chunk's logits and dlogits are recomputed from the final norm output
   (recomputed too when M > 1: with M == 1 the forward's is kept, and the
   final norm's weights may be new by the embedding's turn), then dln's rows
   (emb 0) and the lm_head gradient (summed over the chunks, then handed on).
   Tied, it runs twice: for dln (emb 0), and at the embedding's turn (emb 1)
   for the head's part of its gradient, added to t->grad (the embedding's
   weights are still the old ones then). The Gram norm pass would need the
   whole dlogits: here dW is formed instead. */
static int lomo__head_bwd_chunks(lomo_trainer *t, int m, float dscale, int emb) {
    lomo_model *md = t->m;
    const lomo_config *c = &md->cfg;
    const lomo_backend *be = md->be;
    int N = t->N, C = c->dim, V = c->vocab_size, r0, dln = !lomo__pc_restore(t);
    if (!emb && !dln && c->tie_embeddings) return 0;   /* dln restored, and the head's dW waits for the embedding */
    if (t->M > 1)
        lomo__norm_fwd(t, t->lnf, t->rstdf, lomo__xs(t, m, c->n_layers), lomo__need(t, LOMO__HEAD, md->final_norm), N, C);
    for (r0 = 0; r0 < N; r0 += t->hc) {
        int nr = N - r0 < t->hc ? N - r0 : t->hc;
        lomo__head_chunk(t, m, r0, nr, dscale, 1);
        if (emb)
            be->matmul_bwd_w(be->ctx, t->grad, t->logits, t->lnf + (size_t)r0 * C, nr, C, V, 1);
        else {
            if (dln)
                be->matmul_bwd_x(be->ctx, t->dln + (size_t)r0 * C, t->logits, lomo__need(t, LOMO__HEAD, md->lm_head), nr, C,
                                 V, 0);
            if (!c->tie_embeddings)
                be->matmul_bwd_w(be->ctx, lomo__grad_dst(t, md->lm_head), t->logits, t->lnf + (size_t)r0 * C, nr, C, V,
                                 r0 > 0 || (t->M > 1 && m > 0));
        }
    }
    if (!emb && !c->tie_embeddings && t->M == 1 && lomo__grad_ready(t, md->lm_head, t->grad)) return -1;
    return 0;
}

/* One backward pass from the loss down: lm_head, final norm, layers L-1..0,
   embedding; with M > 1 each stage runs every micro-batch before its tensors
   are handed on. With M == 1 dlogits stay in the logits buffer for the whole
   pass, so a tied embedding's gradient is formed once, at the end, as the
   sum of both uses; with M > 1, or a head in chunks (lomo__head_bwd_chunks),
   the head is recomputed there instead. */
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
        int dln = !lomo__pc_restore(t);   /* else the final norm's dx is restored from the pass cache */
        if (t->hc < N) { if (lomo__head_bwd_chunks(t, m, dscale, 0)) return -1; }
        else if (dln || !c->tie_embeddings) {
            if (M > 1) lomo__head_fwd(t, m, dscale, 1);
            if (dln) be->matmul_bwd_x(X, t->dln, t->logits, lomo__need(t, LOMO__HEAD, md->lm_head), N, C, V, 0);
            if (!c->tie_embeddings && lomo__linear_grads(t, md->lm_head, NULL, t->logits, t->lnf, C, V, m)) return -1;
        }
        be->zero(X, dx, sizeof(float) * (size_t)N * C);
        if (lomo__resid_norm_bwd(t, 2 * c->n_layers, m, dx, t->dln, lomo__xs(t, m, c->n_layers),
                                 lomo__need(t, LOMO__HEAD, md->final_norm), md->final_norm, t->rstdf))
            return -1;
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
        if (c->tie_embeddings && t->hc < N) { if (lomo__head_bwd_chunks(t, m, dscale, 1)) return -1; }
        else if (c->tie_embeddings) {
            if (M > 1) lomo__head_fwd(t, m, dscale, 1);
            be->matmul_bwd_w(X, t->grad, t->logits, t->lnf, N, C, V, 1);
        }
        if (c->gemma) be->scale(X, t->dx + (size_t)m * N * C, (float)sqrt((double)C), (size_t)N * C);
        if (c->has_pad) {   /* nn.Embedding(padding_idx): no gradient from the lookup of the pad row */
            int n;
            for (n = 0; n < N; n++)
                if (t->tok_host[(size_t)m * N + n] == c->pad_token_id)
                    be->zero(X, t->dx + ((size_t)m * N + n) * C, sizeof(float) * (size_t)C);
        }
        be->embed_bwd(X, t->grad, t->dx + (size_t)m * N * C, t->tok + (size_t)m * N, N, C);
    }
    if (lomo__grad_ready(t, md->embed, t->grad)) return -1;
    if (M > 1 && c->tie_embeddings && lomo__grad_ready(t, md->final_norm, lomo__grad_dst(t, md->final_norm))) return -1;
    return lomo__phase_check(t, "sharded backward");
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
        info->loss_sum = t->loss_bad ? (double)NAN : (double)t->loss_q / 16777216.0;
    }
    return 0;
}

/* the update context every rule call of this step sees; the norm pass adds the norm and coefficient */
static void lomo__update_ctx(lomo_trainer *t, float lr) {
    lomo_update_ctx *u = &t->uctx;
    memset(u, 0, sizeof *u);
    u->step = t->step + 1;
    u->lr = lr;
    u->inv_loss_scale = 1.0f / t->scale;
    u->clip_value = t->o.clip_value;
    u->weight_decay = t->o.weight_decay;
    u->n_tensors = t->m->n_tensors;
    u->backend = t->m->be;
    u->stream = t->m->be->stream;
    u->grad_norm = -1.0f;
    u->clip_coef = 1.0f;
    u->stochastic_rounding = t->o.stochastic_rounding;
    u->seed = t->o.seed;
}

/* pass one: the gradients measured (global norm, overflow), nothing updated */
static int lomo__norm_pass(lomo_trainer *t, lomo_step_info *si) {
    t->pass = LOMO__PASS_NORM;
    t->sumsq = 0.0;
    if (lomo__backward(t)) return -1;
    t->pc_ready = t->pc != NULL;   /* the update pass restores from the pass cache */
    if (t->comm && t->comm->all_reduce_sum(t->comm->ctx, &t->sumsq, 1, 1)) return -1;
    si->grad_norm = (float)(sqrt(t->sumsq) / t->scale);
    if (!isfinite(si->grad_norm)) si->skipped = 1;
    else if (t->o.clip_norm > 0.0f && t->o.clip_mode != LOMO_CLIP_TENSOR) {
        float coef = t->o.clip_norm / (si->grad_norm + 1e-6f);
        si->clip_coef = coef < 1.0f ? coef : 1.0f;
    }
    t->uctx.grad_norm = si->grad_norm;
    t->uctx.clip_coef = si->clip_coef;
    return 0;
}

/* pass two: each tensor updated as its gradient completes; a NaN/Inf weight
   left by an update fails the step on every rank, naming what it found */
static int lomo__update_pass(lomo_trainer *t, float lr) {
    t->uctx.grad_scale = t->uctx.clip_coef * t->uctx.inv_loss_scale;
    t->pass = LOMO__PASS_UPDATE;
    t->bad_tensor = -1;
    if (lomo__backward(t)) return -1;
    t->pc_ready = 0;
    if (!t->o.no_finite_check) {
        double bad = t->bad_tensor >= 0;
        if (t->comm && t->comm->all_reduce_sum(t->comm->ctx, &bad, 1, 1)) return -1;
        if (bad > 0)
            return lomo__fail("step %lld: the update (lr %g) left NaN/Inf values in %s: the weights are no "
                              "longer usable (lower the learning rate, clip by norm); nothing may be saved from "
                              "them", (long long)t->step + 1, (double)lr,
                              t->bad_tensor >= 0 ? t->m->tensors[t->bad_tensor].name : "a tensor on another rank");
    }
    t->step++;
    return 0;
}

/* dynamic loss scale: back off on overflow, grow after a window of clean steps */
static void lomo__loss_scaler(lomo_trainer *t, const lomo_step_info *si, int64_t count) {
    if (si->skipped && count > 0) {
        t->scale = t->scale * t->o.loss_scale_backoff;
        if (t->scale < t->o.loss_scale_min) t->scale = t->o.loss_scale_min;
        t->clean_steps = 0;
    } else if (!si->skipped && ++t->clean_steps >= t->o.loss_scale_window) {
        t->scale *= t->o.loss_scale_growth;
        t->clean_steps = 0;
    }
}

/* prepare -> forward -> norm pass (global clipping or loss scaling) -> update pass -> loss scaler */
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
    t->pc_ready = 0;
    if (count < 0 || lomo__forward(t, count, 1, &si.loss, t->M)) return -1;
    si.n_tokens = count;
    si.loss_sum = t->loss_bad ? (double)NAN : (double)t->loss_q / 16777216.0;
    lomo__update_ctx(t, lr);
    if (!isfinite(si.loss) || count == 0) si.skipped = 1;   /* nothing to learn from, or overflow */
    if (!si.skipped && (global || t->scaling) && lomo__norm_pass(t, &si)) return -1;
    if (!si.skipped && lomo__update_pass(t, lr)) return -1;
    if (t->scaling) lomo__loss_scaler(t, &si, count);
    if (info) *info = si;
    return 0;
}

/* ======================================================================== */
/* 7. update rules: the built-in rules behind the hook (kernels in 5)       */
/* ======================================================================== */

/* the built-in rules through the backend's update op */
static void lomo__builtin_args(lomo_update_args *a, const lomo_update_ctx *ctx, int rule) {
    memset(a, 0, sizeof *a);
    a->rule = rule; a->lr = ctx->lr; a->inv_loss_scale = ctx->inv_loss_scale; a->clip_value = ctx->clip_value;
    a->clip_coef = ctx->clip_coef; a->weight_decay = ctx->weight_decay; a->step = ctx->step;
    a->stochastic = ctx->stochastic_rounding; a->seed = ctx->seed;
    a->stream = (uint64_t)ctx->step * 0x100000001B3ull + (uint64_t)ctx->tensor_index;
    a->param_sumsq = -1.0;
}

/* g, n floats, lies inside the buffer b of cap floats (for LOMO_ASSERT) */
static inline int lomo__inside(const float *g, size_t n, const float *b, size_t cap) {
    uintptr_t x = (uintptr_t)g, lo = (uintptr_t)b;
    return b && x >= lo && (x - lo) / sizeof(float) + n <= cap;
}

static int lomo__builtin_update(lomo_trainer *t, lomo_tensor *p, const float *g, double param_sumsq) {
    lomo_update_args a;
    /* g is the trainer's: in the one gradient buffer (a tensor's slot of it with micro-batches) or
       this rank's reduce-scattered shard; the rule's state exists */
    LOMO_ASSERT(p->index >= 0 && p->index < t->m->n_tensors);
    LOMO_ASSERT(lomo__inside(g, (size_t)p->numel, t->grad, t->grad_numel) ||
                (g == t->gshard && (size_t)p->numel <= t->gshard_len));
    LOMO_ASSERT(t->o.optimizer == LOMO_OPT_LOMO || t->s1[p->index]);
    lomo__builtin_args(&a, &t->uctx, t->o.optimizer);
    a.param_sumsq = param_sumsq;   /* -1: the rule measures p (a sharded AdaLomo: the whole tensor's, summed) */
    a.eps1 = t->o.adalomo_eps1; a.eps2 = t->o.adalomo_eps2; a.clip_threshold = t->o.adalomo_clip_threshold;
    a.decay_rate = t->o.adalomo_decay_rate;
    a.beta1 = t->o.adamw_beta1; a.beta2 = t->o.adamw_beta2; a.eps = t->o.adamw_eps;
    a.shard_off = p->shard_off;
    t->m->be->update(t->m->be->ctx, p, g, t->s1[p->index], t->s2[p->index], &a);
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

/* ======================================================================== */
/* 8. model: construction, tensors, random initialisation                   */
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
    /* 0.5 fields */
    if (c->gemma != 0 && c->gemma != 2 && c->gemma != 3)
        return lomo__fail("config: gemma=%d must be 0, 2 or 3", c->gemma);
    if (c->rotary_dim < 0 || c->rotary_dim % 2 || c->rotary_dim > c->head_dim)
        return lomo__fail("config: rotary_dim=%d must be even and in [0, head_dim=%d]", c->rotary_dim, c->head_dim);
    if (c->local_window < 0 || c->local_pattern < 0 || !(c->attn_softcap >= 0) || !(c->final_softcap >= 0) ||
        !(c->query_pre_attn_scalar >= 0) || !(c->rope_local_theta >= 0))
        return lomo__fail("config: local_window=%d, local_pattern=%d, soft-caps %g / %g, query_pre_attn_scalar %g and "
                          "rope_local_theta %g must be >= 0", c->local_window, c->local_pattern, c->attn_softcap,
                          c->final_softcap, c->query_pre_attn_scalar, c->rope_local_theta);
    if (c->rope_type == 3) {
        int rd = c->rotary_dim ? c->rotary_dim : c->head_dim, i;
        if (c->rope_n_factors != rd / 2 || c->rope_n_factors > 128 || c->rope_original_max_pos <= 0 ||
            !(c->rope_attn_factor > 0))
            return lomo__fail("config: longrope needs rotary dims / 2 = %d factors (found %d, at most 128), "
                              "original_max_position_embeddings > 0 (found %d) and attention_factor > 0 (found %g)",
                              rd / 2, c->rope_n_factors, c->rope_original_max_pos, c->rope_attn_factor);
        for (i = 0; i < c->rope_n_factors; i++)
            if (!(c->rope_long_factor[i] > 0) || !(c->rope_short_factor[i] > 0))
                return lomo__fail("config: longrope factor %d is not positive (long %g, short %g)", i,
                                  c->rope_long_factor[i], c->rope_short_factor[i]);
    }
    if (c->rope_type == 2 && !(c->rope_factor > 0))
        return lomo__fail("config: linear rope factor %g must be > 0", c->rope_factor);
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

/* Every tensor's data. On a host-memory backend one block holds them all, each at a 64-byte
   boundary, and on Linux the block's whole 2 MiB pages are advised to transparent huge pages
   (MADV_HUGEPAGE; the block starts on one when it spans more than two): a decode step streams
   every weight once, and on 4 KiB pages each page of it cost a TLB miss, measured as a slower
   GEMV. Accounted per tensor as separate allocations would be. Elsewhere (GPU memory; ASan
   builds, so that an overrun past one tensor is still caught) one allocation per tensor. */
#if defined(__linux__) && !defined(MADV_HUGEPAGE)
int madvise(void *addr, size_t len, int advice);   /* hidden by -std=c11; Linux's value */
#define MADV_HUGEPAGE 14
#endif
static int lomo__alloc_params(lomo_model *m) {
    size_t total = 0, off = 0, page = (size_t)2 << 20, slack = 0;
    char *base;
    int i, block = m->be->host_memory;
#ifdef __SANITIZE_ADDRESS__
    block = 0;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    block = 0;
#endif
#endif
    for (i = 0; block && i < m->n_tensors; i++) {
        size_t b = lomo__stored_bytes(m, &m->tensors[i]);
        if (b > SIZE_MAX / 2 - total) { lomo__fail("out of %s memory: the parameters take over %zu bytes", m->be->name, total); return -1; }
        total += (b + 63) & ~(size_t)63;
    }
    if (!block || total == 0) {
        for (i = 0; i < m->n_tensors; i++)
            if (!(m->tensors[i].data = lomo__alloc(m, LOMO_MEM_PARAMS, lomo__stored_bytes(m, &m->tensors[i])))) return -1;
        return 0;
    }
    slack = total > 2 * page ? page : 64;
    if (!(m->param_block = m->be->alloc(m->be->ctx, total + slack))) {
        lomo__fail("out of %s memory: could not allocate %zu bytes for %s", m->be->name, total + slack,
                   lomo_mem_tag_name(LOMO_MEM_PARAMS));
        return -1;
    }
    base = (char *)m->param_block;
    base += (slack - (size_t)((uintptr_t)base % slack)) % slack;
#if defined(__linux__)
    if (slack == page) (void)madvise(base, total / page * page, MADV_HUGEPAGE);   /* advice: failure changes nothing */
#endif
    for (i = 0; i < m->n_tensors; i++) {
        size_t b = lomo__stored_bytes(m, &m->tensors[i]), a = b + (b == 0);
        m->tensors[i].data = base + off;
        off += (b + 63) & ~(size_t)63;
        m->mem.current[LOMO_MEM_PARAMS] += a;
        m->mem.total_current += a;
        if (m->mem.current[LOMO_MEM_PARAMS] > m->mem.peak[LOMO_MEM_PARAMS]) m->mem.peak[LOMO_MEM_PARAMS] = m->mem.current[LOMO_MEM_PARAMS];
        if (m->mem.total_current > m->mem.total_peak) m->mem.total_peak = m->mem.total_current;
    }
    return 0;
}

/* LOMO__LAYER_TENSORS (beside lomo_layer) as an array, in row order */
static const lomo__layer_row *lomo__layer_rows(void) {
#define LOMO__ROW(f, kind, suffix, rows, cols, when, bwd, vof, vat) \
    { offsetof(lomo_layer, f), offsetof(lomo_layer, vof), kind, suffix, LOMO__DIM_##rows, LOMO__DIM_##cols, \
      LOMO__HAS_##when, bwd, LOMO__DIM_##vat },
    static const lomo__layer_row rows[] = { LOMO__LAYER_TENSORS(LOMO__ROW) };
#define LOMO__VIEW(f, kind, suffix, rows, cols, when, bwd, vof, vat) + (LOMO__DIM_##vat != LOMO__DIM_NONE)
    (void)sizeof(char[sizeof rows / sizeof rows[0] == LOMO__LAYER_ROWS ? 1 : -1]);   /* the counts are right: */
    (void)sizeof(char[(0 LOMO__LAYER_TENSORS(LOMO__VIEW)) == 5 ? 1 : -1]);             /* lomo_model.views */
#undef LOMO__VIEW
#undef LOMO__ROW
    return rows;
}
/* a size code of the table for config c */
static int64_t lomo__layer_dim(const lomo_config *c, int code) {
    int64_t C = c->dim, H = c->hidden_dim, qd = (int64_t)c->n_heads * c->head_dim,
            kvd = (int64_t)c->n_kv_heads * c->head_dim;
    switch (code) {
    case LOMO__DIM_C: return C;
    case LOMO__DIM_H: return H;
    case LOMO__DIM_QD: return qd;
    case LOMO__DIM_KVD: return kvd;
    case LOMO__DIM_HD: return c->head_dim;
    case LOMO__DIM_QKV: return qd + 2 * kvd;
    case LOMO__DIM_QDKVD: return qd + kvd;
    case LOMO__DIM_H2: return 2 * H;
    default: return 0;
    }
}
/* does a layer of config c have the rows marked `when`? (a fused model has no biases, q/k norms or Gemma norms) */
static int lomo__layer_has(const lomo_config *c, int when) {
    int split = !c->fused_proj;
    switch (when) {
    case LOMO__HAS_SPLIT: return split;
    case LOMO__HAS_FUSED: return !split;
    case LOMO__HAS_QKVB: return split && c->qkv_bias;
    case LOMO__HAS_OB: return split && c->o_bias;
    case LOMO__HAS_QKN: return split && c->qk_norm;
    case LOMO__HAS_GEMMA: return split && c->gemma;
    case LOMO__HAS_PLAIN: return !(split && c->gemma);
    default: return 1;
    }
}
/* a row's field of L (field: lomo__layer_row.field or .view_of) */
static lomo_tensor **lomo__layer_field(lomo_layer *L, size_t field) { return (lomo_tensor **)(void *)((char *)L + field); }
static lomo_tensor *lomo__layer_get(const lomo_layer *L, size_t field) {
    return *(lomo_tensor *const *)(const void *)((const char *)L + field);
}

LOMODEF lomo_model *lomo_model_new(const lomo_config *cfg, const lomo_load_opts *opts) {
    lomo_model *m;
    int l, C;
    char nm[96];
    if (lomo__config_check(cfg)) return NULL;
    if (opts && (opts->dtype < LOMO_F32 || opts->dtype > LOMO_F16)) {
        lomo__fail("storage dtype %d is not LOMO_F32, LOMO_BF16 or LOMO_F16", (int)opts->dtype);
        return NULL;
    }
    m = (lomo_model *)lomo__calloc(1, sizeof *m);
    if (!m) { lomo__fail("out of host memory"); return NULL; }
    m->cfg = *cfg;
    m->cfg.dtype = opts ? opts->dtype : LOMO_F32;   /* storage dtype; every tensor has it */
    m->file_dtype = m->cfg.dtype;
    m->be = (opts && opts->backend) ? opts->backend : lomo_cpu_backend();
    C = cfg->dim;
    m->tensors = (lomo_tensor *)lomo__calloc((size_t)cfg->n_layers * 17 + 3, sizeof(lomo_tensor));
    if (cfg->fused_proj && opts && opts->comm) {
        lomo__fail("%s: sharding a model with fused projections (phi3) is not supported", cfg->model_type);
        LOMO_FREE(m->tensors); LOMO_FREE(m); return NULL;
    }
    m->layers = (lomo_layer *)lomo__calloc((size_t)cfg->n_layers, sizeof(lomo_layer));
    if (!m->tensors || !m->layers) { lomo__fail("out of host memory"); lomo_model_free(m); return NULL; }
    m->embed = lomo__add_tensor(m, "model.embed_tokens.weight", LOMO_EMBED, -1, cfg->vocab_size, C);
    if (cfg->fused_proj && !(m->views = (lomo_tensor *)lomo__calloc((size_t)cfg->n_layers * 5, sizeof(lomo_tensor)))) {
        lomo__fail("out of host memory"); lomo_model_free(m); return NULL;
    }
    for (l = 0; l < cfg->n_layers; l++) {   /* the table's rows this family has, in its (named_parameters()) order */
        const lomo__layer_row *r = lomo__layer_rows();
        int k;
        for (k = 0; k < LOMO__LAYER_ROWS; k++)
            if (lomo__layer_has(cfg, r[k].when)) {
                snprintf(nm, sizeof nm, "model.layers.%d.%s", l, r[k].suffix);
                *lomo__layer_field(&m->layers[l], r[k].field) = lomo__add_tensor(m, nm, r[k].kind, l,
                    lomo__layer_dim(cfg, r[k].rows), lomo__layer_dim(cfg, r[k].cols));
            }
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
    }
    if (lomo__alloc_params(m) < 0) { lomo_model_free(m); return NULL; }
    for (l = 0; l < m->n_tensors; l++)   /* the padding stays 0 */
        m->be->zero(m->be->ctx, m->tensors[l].data, lomo__stored_bytes(m, &m->tensors[l]));
    for (l = 0; cfg->fused_proj && l < cfg->n_layers; l++) {   /* the table's rows with a view: fused row blocks */
        const lomo__layer_row *r = lomo__layer_rows();
        lomo_layer *L = &m->layers[l];
        lomo_tensor *v = &m->views[(size_t)l * 5];   /* five rows have one (lomo__layer_rows checks) */
        int k;
        for (k = 0; k < LOMO__LAYER_ROWS; k++) {
            const lomo_tensor *f = lomo__layer_get(L, r[k].view_of);
            int64_t rows = lomo__layer_dim(cfg, r[k].rows), off = lomo__layer_dim(cfg, r[k].view_at);
            if (r[k].view_at == LOMO__DIM_NONE) continue;
            *v = *f;
            v->kind = r[k].kind;
            v->shape[0] = rows; v->numel = rows * C;
            v->data = (char *)f->data + (size_t)(off * C) * lomo__dtype_size(f->dtype);
            v->shard_off = 0; v->shard_len = v->numel;
            *lomo__layer_field(L, r[k].field) = v++;
        }
    }
    return m;
}

LOMODEF void lomo_model_free(lomo_model *m) {
    int i;
    if (!m) return;
    for (i = 0; m->tensors && i < m->n_tensors; i++) {
        size_t b = lomo__stored_bytes(m, &m->tensors[i]);
        if (!m->param_block) { lomo__free(m, LOMO_MEM_PARAMS, m->tensors[i].data, b); continue; }
        b += b == 0;
        m->mem.current[LOMO_MEM_PARAMS] -= b;
        m->mem.total_current -= b;
    }
    if (m->param_block) m->be->free(m->be->ctx, m->param_block);
    LOMO_FREE(m->tensors);
    LOMO_FREE(m->layers);
    LOMO_FREE(m->config_json);
    LOMO_FREE(m->views);
    LOMO_FREE(m);
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

LOMODEF int lomo_model_init_random(lomo_model *m, uint64_t seed, float std) {
    int i;
    for (i = 0; i < m->n_tensors; i++) {
        lomo_tensor *t = &m->tensors[i];
        float *h = (float *)lomo__malloc(sizeof(float) * (size_t)t->numel);
        int64_t j;
        uint64_t s = seed * 0x100000001B3ull + (uint64_t)i;
        if (!h) return lomo__fail("lomo_model_init_random: out of host memory (%zu bytes for tensor %s)",
                                  sizeof(float) * (size_t)t->numel, t->name);
        for (j = 0; j < t->numel; j++)
            h[j] = t->ndim == 2 ? (float)(std * lomo__rng_normal(&s))
                 : (t->kind == LOMO_ATTN_NORM || t->kind == LOMO_MLP_NORM || t->kind == LOMO_FINAL_NORM ||
                    t->kind >= LOMO_Q_NORM) && !m->cfg.gemma ? 1.0f : 0.0f;   /* Gemma's gain is 1 + w */
        if (t->shard_off) memmove(h, h + t->shard_off, sizeof(float) * (size_t)t->shard_len);   /* this rank's part */
        lomo__upload_f32(m, t, h);
        LOMO_FREE(h);
    }
    return 0;
}

/* ======================================================================== */
/* 9. checkpoints and I/O: JSON, files, safetensors, config.json, load/save */
/* ======================================================================== */

typedef struct lomo__sb { char *p; size_t n, cap; int oom; } lomo__sb;

static void lomo__sb_add(lomo__sb *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char *p;
        while (b->n + n + 1 > cap) cap *= 2;
        if (!(p = (char *)LOMO_REALLOC(b->p, cap))) { b->oom = 1; return; }   /* b->p stays the caller's to free */
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
   only whitespace after the root value, no object naming a key twice (keys
   compare by their decoded bytes: "a" == "\u0061", "a\u0000" != "a"). */

enum { LOMO__J_OBJ, LOMO__J_ARR, LOMO__J_STR, LOMO__J_NUM, LOMO__J_TRUE, LOMO__J_FALSE, LOMO__J_NULL };
#define LOMO__JSON_MAX_DEPTH 64

typedef struct lomo__jnode {
    int type, parent, first, next, count;
    const char *s; size_t len;
    double num;
    int key;
} lomo__jnode;

typedef struct lomo__json { lomo__jnode *nodes; int n, cap, oom; } lomo__json;   /* oom: a parse failed for memory */

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
        lomo__jnode *a = (j->cap < (1 << 28)) ? (lomo__jnode *)LOMO_REALLOC(j->nodes, (size_t)cap * sizeof *a) : NULL;
        if (!a) { j->oom = 1; return lomo__fail("%s: out of memory parsing JSON", p->what ? p->what : "JSON"); }
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
    if (!buf) { p->j->oom = 1; return lomo__fail("%s: out of memory parsing JSON", p->what ? p->what : "JSON"); }
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
        for (m = 0; m < k; m++, o++) if (!lit[o] || lit[o] != c[m]) return 0; /* a decoded NUL never matches */
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

/* Byte-wise comparison of two validated STR spans by their decoded bytes
   (a \u0000 is a byte like any other): <0, 0, >0. */
static int lomo__json_keycmp(const lomo__json *j, int a, int b) {
    size_t ia = 0, ib = 0;
    char ca[4], cb[4];
    int na = 0, nb = 0, ka = 0, kb = 0;
    for (;;) {
        if (ka == na) { if (ia >= j->nodes[a].len) { na = 0; } else { na = lomo__jdec(j->nodes[a].s, &ia, ca); } ka = 0; }
        if (kb == nb) { if (ib >= j->nodes[b].len) { nb = 0; } else { nb = lomo__jdec(j->nodes[b].s, &ib, cb); } kb = 0; }
        if (!na || !nb) return na ? 1 : nb ? -1 : 0;
        if (ca[ka] != cb[kb]) return (unsigned char)ca[ka] < (unsigned char)cb[kb] ? -1 : 1;
        ka++; kb++;
    }
}

/* The key node of the first duplicate key in any object (the second of the
   pair, in document order), or -1. Python keeps the last, serde the first:
   lomo refuses. Sorts each object's keys (merge sort, n log n). */
static int lomo__json_dup_key(const lomo__json *j) {
    int o, *keys = NULL, *tmp = NULL, cap = 0, found = -1;
    for (o = 0; o < j->n && found < 0; o++) {
        int n = 0, c, w, i, lo;
        if (j->nodes[o].type != LOMO__J_OBJ || j->nodes[o].count < 2) continue;
        if (j->nodes[o].count > cap) {
            LOMO_FREE(keys); LOMO_FREE(tmp);
            cap = j->nodes[o].count;
            keys = (int *)LOMO_MALLOC((size_t)cap * sizeof *keys);
            tmp = (int *)LOMO_MALLOC((size_t)cap * sizeof *tmp);
            if (!keys || !tmp) { LOMO_FREE(keys); LOMO_FREE(tmp); return -2; }
        }
        for (c = j->nodes[o].first; c >= 0; c = j->nodes[c].next) keys[n++] = j->nodes[c].key;
        for (w = 1; w < n; w *= 2) {   /* bottom-up merge sort, stable: ties keep document order */
            for (lo = 0; lo < n; lo += 2 * w) {
                int mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n, x = lo, y = mid, k = lo;
                while (x < mid && y < hi) tmp[k++] = lomo__json_keycmp(j, keys[y], keys[x]) < 0 ? keys[y++] : keys[x++];
                while (x < mid) tmp[k++] = keys[x++];
                while (y < hi) tmp[k++] = keys[y++];
            }
            memcpy(keys, tmp, (size_t)n * sizeof *keys);
        }
        for (i = 1; i < n; i++)
            if (!lomo__json_keycmp(j, keys[i - 1], keys[i]) && (found < 0 || keys[i] < found)) found = keys[i];
    }
    LOMO_FREE(keys); LOMO_FREE(tmp);
    return found;
}

/* check_dups: refuse an object that names a key twice (every reader but the
   safetensors header, which reports a duplicate tensor name itself first). */
static int lomo__json_parse_ex(lomo__json *j, const char *s, size_t len, const char *what, int check_dups) {
    lomo__jp p;
    int d;
    j->nodes = NULL; j->n = j->cap = j->oom = 0;
    p.j = j; p.s = (const unsigned char *)s; p.n = len; p.i = 0; p.what = what;
    if (lomo__jp_value(&p, -1, 0) < 0) { lomo__json_free(j); return -1; }
    lomo__jp_ws(&p);
    if (p.i != p.n) { lomo__json_free(j); return lomo__jp_err(&p, "unexpected trailing characters after the JSON value"); }
    if (check_dups && (d = lomo__json_dup_key(j)) != -1) {
        char show[64];
        if (d == -2) { lomo__json_free(j); j->oom = 1; return lomo__fail("%s: out of memory checking keys", what ? what : "JSON"); }
        size_t k = strlen(lomo__json_show(j, d, show, sizeof show));
        p.i = (size_t)((const unsigned char *)j->nodes[d].s - p.s) - 1;
        lomo__json_free(j);
        return lomo__fail("%s: duplicate field '%.*s' at byte %zu (JSON readers disagree on which one counts)",
                          what ? what : "JSON", (int)(k >= 2 ? k - 2 : 0), show + 1, p.i);
    }
    return 0;
}
static int lomo__json_parse(lomo__json *j, const char *s, size_t len, const char *what) {
    return lomo__json_parse_ex(j, s, len, what, 1);
}

/* ---- the public face of the reader (lomo_json_*, declared with the API) ---- */
struct lomo_json { lomo__json j; };

LOMODEF lomo_json *lomo_json_parse(const char *s, size_t len, size_t *end, const char *what) {
    lomo_json *r;
    if (end) *end = 0;
    if (!s && len) { lomo__fail("%s: no text to parse", what ? what : "JSON"); return NULL; }
    if (!(r = (lomo_json *)LOMO_MALLOC(sizeof *r))) { lomo__fail("%s: out of memory", what ? what : "JSON"); return NULL; }
    if (end) {   /* one value from the start; then the whole check (keys) on exactly that span */
        lomo__jp p;
        r->j.nodes = NULL; r->j.n = r->j.cap = 0;
        p.j = &r->j; p.s = (const unsigned char *)s; p.n = len; p.i = 0; p.what = what;
        len = lomo__jp_value(&p, -1, 0) < 0 ? 0 : p.i;
        *end = p.i;
        lomo__json_free(&r->j);
        if (!len) { LOMO_FREE(r); return NULL; }
    }
    if (lomo__json_parse(&r->j, s ? s : "", len, what)) { LOMO_FREE(r); return NULL; }
    return r;
}

LOMODEF void lomo_json_free(lomo_json *j) {
    if (!j) return;
    lomo__json_free(&j->j);
    LOMO_FREE(j);
}

static const lomo__jnode *lomo__json_node(const lomo_json *j, int node) {
    return j && node >= 0 && node < j->j.n ? &j->j.nodes[node] : NULL;
}

LOMODEF int lomo_json_type(const lomo_json *j, int node) {
    static const int pub[] = {LOMO_JSON_OBJECT, LOMO_JSON_ARRAY, LOMO_JSON_STRING, LOMO_JSON_NUMBER,
                              LOMO_JSON_TRUE, LOMO_JSON_FALSE, LOMO_JSON_NULL};
    const lomo__jnode *nd = lomo__json_node(j, node);
    return nd ? pub[nd->type] : -1;
}

LOMODEF int lomo_json_count(const lomo_json *j, int node) {
    const lomo__jnode *nd = lomo__json_node(j, node);
    return nd ? nd->count : -1;
}

LOMODEF int lomo_json_first(const lomo_json *j, int node) {
    const lomo__jnode *nd = lomo__json_node(j, node);
    return nd && (nd->type == LOMO__J_OBJ || nd->type == LOMO__J_ARR) ? nd->first : -1;
}

LOMODEF int lomo_json_next(const lomo_json *j, int node) {
    const lomo__jnode *nd = lomo__json_node(j, node);
    return nd ? nd->next : -1;
}

LOMODEF int lomo_json_key(const lomo_json *j, int node) {
    const lomo__jnode *nd = lomo__json_node(j, node);
    return nd ? nd->key : -1;
}

LOMODEF int lomo_json_get(const lomo_json *j, int obj, const char *key) {
    return j && key ? lomo__json_get(&j->j, obj, key) : -1;
}

LOMODEF int lomo_json_int(const lomo_json *j, int node, int64_t *v) {
    const lomo__jnode *nd = lomo__json_node(j, node);
    if (!nd || nd->type != LOMO__J_NUM || memchr(nd->s, '.', nd->len) || memchr(nd->s, 'e', nd->len) ||
        memchr(nd->s, 'E', nd->len)) return -1;
    return lomo__json_int(&j->j, node, v) ? -2 : 0;
}

LOMODEF int lomo_json_number(const lomo_json *j, int node, double *v) {
    const lomo__jnode *nd = lomo__json_node(j, node);
    if (!nd || nd->type != LOMO__J_NUM) return -1;
    *v = nd->num;
    return 0;
}

LOMODEF char *lomo_json_string(const lomo_json *j, int node, size_t *len) {
    const lomo__jnode *nd = lomo__json_node(j, node);
    size_t i = 0, o = 0;
    char *out;
    if (len) *len = 0;
    if (!nd || nd->type != LOMO__J_STR) { lomo__fail("lomo_json_string: node %d is not a string", node); return NULL; }
    if (!(out = (char *)LOMO_MALLOC(nd->len + 1))) {   /* decoding never lengthens a string */
        lomo__fail("lomo_json_string: out of memory for %zu bytes", nd->len + 1);
        return NULL;
    }
    while (i < nd->len) o += (size_t)lomo__jdec(nd->s, &i, out + o);
    out[o] = 0;
    if (len) *len = o;
    return out;
}

/* Test hook: when >= 0, atomic writers fail with ENOSPC once this many bytes of
   the file have been written (the hook stays armed until set back to -1). */
static int lomo__io_fail_after = -1;
/* Test hook: when >= 0, the process ends abruptly (_Exit, no clean-up, as if
   killed) once this many bytes have been written by all saves together. */
static long long lomo__io_crash_after = -1;
static long long lomo__io_total_written = 0;
/* Test hook: when >= 0, disk full (ENOSPC) once all saves together wrote this many bytes. */
static long long lomo__io_fail_total_after = -1;

/* Opens path for reading without blocking on a FIFO or device (O_NONBLOCK),
   then refuses anything that is not a regular file. */
static int lomo__open_regular(const char *path, struct stat *st) {
    int flags = O_RDONLY, fd;
#ifdef O_NONBLOCK
    flags |= O_NONBLOCK;
#endif
#ifdef O_NOCTTY
    flags |= O_NOCTTY;
#endif
#ifdef O_CLOEXEC
    flags |= O_CLOEXEC;
#endif
    if ((fd = open(path, flags)) < 0) return lomo__fail("%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, st)) { int e = errno; close(fd); return lomo__fail("%s: cannot stat: %s", path, strerror(e)); }
    if (!S_ISREG(st->st_mode)) {
        close(fd);
        return lomo__fail("%s: not a regular file (%s)", path, S_ISDIR(st->st_mode) ? "a directory" :
                          S_ISFIFO(st->st_mode) ? "a FIFO" : S_ISCHR(st->st_mode) ? "a character device" :
                          S_ISBLK(st->st_mode) ? "a block device" : "a socket or other special file");
    }
#ifdef O_NONBLOCK
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
#endif
    return fd;
}

static int lomo__read_file(const char *path, char **buf, size_t *len) {
    struct stat st;
    size_t n = 0;
    char *p;
    int fd = lomo__open_regular(path, &st);
    *buf = NULL; *len = 0;
    if (fd < 0) return -1;
    if ((uint64_t)st.st_size >= (uint64_t)SIZE_MAX / 2 || !(p = (char *)LOMO_MALLOC((size_t)st.st_size + 1))) {
        close(fd);
        return lomo__fail("%s: out of host memory reading the file (%lld bytes)", path, (long long)st.st_size);
    }
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
    if (bytes % (uint64_t)k || bytes / (uint64_t)k != (uint64_t)t->numel) {
        char need[48];
        if ((uint64_t)t->numel > UINT64_MAX / (uint64_t)k) snprintf(need, sizeof need, "2^64 bytes or more");
        else snprintf(need, sizeof need, "%llu bytes", (unsigned long long)t->numel * (unsigned long long)k);
        return lomo__fail("%s: tensor '%s': data_offsets span %llu bytes, which does not match the shape "
                          "(%lld elements of %s = %s)", f->path, t->name, (unsigned long long)bytes,
                          (long long)t->numel, lomo__st_dtype_name[t->dtype], need);
    }
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
    if (!f->t) return lomo__fail("%s: out of host memory (%zu bytes for the index of %d tensors)", f->path,
                                 ((size_t)j->nodes[0].count + 1) * sizeof *f->t, j->nodes[0].count);
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

/* The header rules on f->map / f->size (>= 8 bytes, mapped; f->path set). */
static int lomo__st_parse_map(lomo__st_file *f) {
    const unsigned char *m = (const unsigned char *)f->map;
    const char *path = f->path;
    uint64_t hlen = 0;
    lomo__json j;
    char what[1100];
    int i, rc;
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
    if (lomo__json_parse_ex(&j, (const char *)m + 8, (size_t)hlen, what, 0)) { lomo__st_close(f); return -1; }
    rc = lomo__st_index(f, &j, m + 8 + hlen, f->size - 8 - hlen);
    if (!rc && (i = lomo__json_dup_key(&j)) != -1) {   /* a key twice inside an entry or __metadata__ */
        char show[64];
        rc = i == -2 ? lomo__fail("%s: out of memory checking keys", what)
                     : lomo__fail("%s: duplicate field %s", what, lomo__json_show(&j, i, show, sizeof show));
    }
    lomo__json_free(&j);
    if (rc) lomo__st_close(f);
    return rc;
}

static int lomo__st_open(lomo__st_file *f, const char *path) {
    struct stat st;
    int fd;
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s", path);
    if ((fd = lomo__open_regular(path, &st)) < 0) return -1;
    if (st.st_size < 8) { close(fd); return lomo__fail("%s: file too small (%lld bytes) for the 8-byte header length", path, (long long)st.st_size); }
    if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX) { close(fd); return lomo__fail("%s: file too large to map (%lld bytes)", path, (long long)st.st_size); }
    f->size = (size_t)st.st_size;
    f->map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (f->map == MAP_FAILED) { f->map = NULL; return lomo__fail("%s: mmap failed (%zu bytes): %s", path, f->size, strerror(errno)); }
    return lomo__st_parse_map(f);
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

/* Index of the first NaN/Inf element of a float tensor (int range), -1 if all
   are finite, -2 for an F64 value that is finite but overflows float32. */
static int64_t lomo__st_nonfinite_at(const lomo__st_tensor *t) {
    const unsigned char *p = (const unsigned char *)t->data;
    int64_t i;
    for (i = 0; i < t->numel; i++) {
        switch (t->dtype) {
        case LOMO__ST_F32: { uint32_t u; memcpy(&u, p + 4 * i, 4); if ((u & 0x7f800000u) == 0x7f800000u) return i; break; }
        case LOMO__ST_BF16: if ((p[2 * i + 1] & 0x7f) == 0x7f && (p[2 * i] & 0x80)) return i; break;
        case LOMO__ST_F16: if ((p[2 * i + 1] & 0x7c) == 0x7c) return i; break;
        case LOMO__ST_F64: { double d; memcpy(&d, p + 8 * i, 8); if (!(d == d) || d - d != 0) return i; if (fabs(d) > 3.4028234663852886e38) return -2; break; }
        default: return -1;
        }
    }
    return -1;
}
static int lomo__st_nonfinite(const lomo__st_tensor *t) {
    int64_t i = lomo__st_nonfinite_at(t);
    return i > 0x7fffffff ? 0x7fffffff : (int)i;
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

/* HF config of a llama / mistral / qwen2 / qwen3 / gemma2 / gemma3_text / phi3 model. Anything the kernels do not
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
    /* the value as the kernels see it: 1e-50 becomes 0.0f, 1e39 inf; below
       FLT_MIN (subnormal) precision is lost: refuse those too */
    if (!(*out >= 1.17549435e-38f) || !(*out <= 3.40282347e38f))
        return lomo__cfg_bad(c, key, "a positive number representable as a normal float32 (1.2e-38 .. 3.4e38)", node);
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
static int lomo__cfg_rope_obj(const lomo__cfgp *c, const char *key, int node, lomo_config *cfg) {
    int ty;
    char buf[64];
    lomo__cfgp r = *c;
    if (node < 0 || c->j->nodes[node].type == LOMO__J_NULL) return 0;
    if (c->j->nodes[node].type != LOMO__J_OBJ) return lomo__cfg_bad(c, key, "null or an object", node);
    if ((ty = lomo__json_get(c->j, node, "rope_type")) < 0) ty = lomo__json_get(c->j, node, "type");
    if (ty < 0 && !strncmp(key, "rope_parameters", 15)) return 0; /* just rope_theta */
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
    if (lomo__json_streq(c->j, ty, "longrope") || lomo__json_streq(c->j, ty, "su")) {
        int lists[2], k;
        r.obj = node;
        cfg->rope_type = 3;
        lists[0] = lomo__json_get(c->j, node, "long_factor"); lists[1] = lomo__json_get(c->j, node, "short_factor");
        for (k = 0; k < 2; k++) {
            int e, n = 0;
            float *dst = k ? cfg->rope_short_factor : cfg->rope_long_factor;
            if (lists[k] < 0 || c->j->nodes[lists[k]].type != LOMO__J_ARR)
                return lomo__cfg_bad(c, k ? "short_factor" : "long_factor", "an array of positive numbers", lists[k]);
            for (e = c->j->nodes[lists[k]].first; e >= 0; e = c->j->nodes[e].next, n++) {
                if (n >= 128) return lomo__cfg_bad(c, k ? "short_factor" : "long_factor", "at most 128 factors", lists[k]);
                if (!lomo__json_is(c->j, e, LOMO__J_NUM) || !(c->j->nodes[e].num > 0) || c->j->nodes[e].num > 3.4e38)
                    return lomo__cfg_bad(c, k ? "short_factor" : "long_factor", "positive numbers", e);
                dst[n] = (float)c->j->nodes[e].num;
            }
            if (k && n != cfg->rope_n_factors)
                return lomo__fail("%s: field '%s': short_factor has %d entries, long_factor %d", c->path, key, n,
                                  cfg->rope_n_factors);
            cfg->rope_n_factors = n;
        }
        if (lomo__json_get(c->j, node, "factor") >= 0) {
            if (lomo__cfg_float(&r, "factor", -1, &cfg->rope_factor)) return -1;
            cfg->rope_explicit |= 1;
        }
        if (lomo__json_get(c->j, node, "attention_factor") >= 0) {
            if (lomo__cfg_float(&r, "attention_factor", -1, &cfg->rope_attn_factor)) return -1;
            cfg->rope_explicit |= 2;
        }
        if (lomo__json_get(c->j, node, "original_max_position_embeddings") >= 0 &&
            lomo__cfg_int(&r, "original_max_position_embeddings", -1, &cfg->rope_original_max_pos)) return -1;
        return 0;
    }
    if (lomo__json_streq(c->j, ty, "linear")) {   /* positions divided by factor */
        r.obj = node;
        cfg->rope_type = 2;
        return lomo__cfg_float(&r, "factor", -1, &cfg->rope_factor);
    }
    if (lomo__json_str(c->j, ty, buf, sizeof buf) < 0) lomo__json_show(c->j, ty >= 0 ? ty : node, buf, sizeof buf);
    return lomo__fail("%s: field '%s': rope type %s is not supported (supported: default, linear, llama3, longrope)", c->path, key, buf);
}

static int lomo__cfg_rope(const lomo__cfgp *c, const char *key, lomo_config *cfg) {
    return lomo__cfg_rope_obj(c, key, lomo__json_get(c->j, 0, key), cfg);
}

/* a soft-capping field: absent gives def, null none (0), else a positive number */
static int lomo__cfg_cap(const lomo__cfgp *c, const char *key, float def, float *out) {
    int node = lomo__json_get(c->j, c->obj, key);
    *out = def;
    if (node < 0) return 0;   /* absent: the family's default (0 = no capping) */
    if (c->j->nodes[node].type == LOMO__J_NULL) { *out = 0; return 0; }
    return lomo__cfg_float(c, key, def, out);
}

/* Gemma 2 / Gemma 3 text: scaling, soft-capping, local layers, rope bases.
   Defaults are those of transformers' Gemma2Config / Gemma3TextConfig. */
static int lomo__config_gemma(const lomo__cfgp *c, lomo_config *cfg) {
    const lomo__json *j = c->j;
    int g3 = cfg->gemma == 3, node, bidir = 0, pattern = g3 ? 6 : 2, l;
    if (lomo__cfg_float(c, "query_pre_attn_scalar", 256.0, &cfg->query_pre_attn_scalar) ||
        lomo__cfg_cap(c, "attn_logit_softcapping", g3 ? 0.0f : 50.0f, &cfg->attn_softcap) ||
        lomo__cfg_cap(c, "final_logit_softcapping", g3 ? 0.0f : 30.0f, &cfg->final_softcap) ||
        lomo__cfg_int(c, "sliding_window", 4096, &cfg->local_window) ||
        lomo__cfg_bool(c, "use_bidirectional_attention", 0, &bidir))
        return -1;
    if (bidir) return lomo__cfg_bad(c, "use_bidirectional_attention", "false (only causal attention is supported)",
                                    lomo__json_get(j, 0, "use_bidirectional_attention"));
    if (g3) {
        if (lomo__cfg_int(c, "sliding_window_pattern", pattern, &pattern) ||
            lomo__cfg_int(c, "_sliding_window_pattern", pattern, &pattern) ||
            lomo__cfg_float(c, "rope_local_base_freq", 10000.0, &cfg->rope_local_theta))
            return -1;
        /* transformers >= 5: rope_parameters {"full_attention": {...}, "sliding_attention": {...}} */
        node = lomo__json_get(j, 0, "rope_parameters");
        if (lomo__json_get(j, node, "full_attention") >= 0 || lomo__json_get(j, node, "sliding_attention") >= 0) {
            lomo__cfgp r = *c;
            lomo_config loc = *cfg;
            int full = lomo__json_get(j, node, "full_attention"), sl = lomo__json_get(j, node, "sliding_attention");
            if (full < 0 || sl < 0 || j->nodes[full].type != LOMO__J_OBJ || j->nodes[sl].type != LOMO__J_OBJ)
                return lomo__cfg_bad(c, "rope_parameters", "objects for both full_attention and sliding_attention", node);
            r.obj = full;
            if (lomo__cfg_rope_obj(&r, "rope_parameters.full_attention", full, cfg) ||
                lomo__cfg_float(&r, "rope_theta", 1000000.0, &cfg->rope_theta)) return -1;
            r.obj = sl;
            loc.rope_type = 0;
            if (lomo__cfg_rope_obj(&r, "rope_parameters.sliding_attention", sl, &loc) ||
                lomo__cfg_float(&r, "rope_theta", 10000.0, &cfg->rope_local_theta)) return -1;
            if (loc.rope_type) return lomo__cfg_bad(c, "rope_parameters.sliding_attention", "rope type default", sl);
        }
    }
    /* which layers are local: layer_types, else the pattern */
    cfg->local_pattern = pattern;
    node = lomo__json_get(j, 0, "layer_types");
    if (node >= 0 && j->nodes[node].type != LOMO__J_NULL) {
        int e, n = 0, first_full = -1;
        if (j->nodes[node].type != LOMO__J_ARR) return lomo__cfg_bad(c, "layer_types", "an array", node);
        for (e = j->nodes[node].first; e >= 0; e = j->nodes[e].next, n++) {
            if (!lomo__json_streq(j, e, "full_attention") && !lomo__json_streq(j, e, "sliding_attention"))
                return lomo__cfg_bad(c, "layer_types", "\"full_attention\" or \"sliding_attention\" entries", e);
            if (first_full < 0 && lomo__json_streq(j, e, "full_attention")) first_full = n;
        }
        if (n != cfg->n_layers) {
            char want[64];
            snprintf(want, sizeof want, "an array of num_hidden_layers=%d entries", cfg->n_layers);
            return lomo__cfg_bad(c, "layer_types", want, node);
        }
        cfg->local_pattern = first_full < 0 ? cfg->n_layers + 1 : first_full + 1;
        for (l = 0, e = j->nodes[node].first; e >= 0; e = j->nodes[e].next, l++)
            if (lomo__json_streq(j, e, "sliding_attention") != ((l + 1) % cfg->local_pattern != 0))
                return lomo__cfg_bad(c, "layer_types", "local and global layers in a repeating pattern "
                                     "(k-1 sliding_attention, then one full_attention)", node);
    }
    return 0;
}

/* Phi-3 / Phi-3.5 / Phi-4-mini (model_type phi3): fused projections, partial
   rotary, one sliding window on every layer. longrope is refused (by the rope
   parser, by name). */
static int lomo__config_phi3(const lomo__cfgp *c, lomo_config *cfg) {
    const lomo__json *j = c->j;
    int node = lomo__json_get(j, 0, "rope_parameters");
    float f = 1.0f;
    lomo__cfgp r = *c;
    cfg->fused_proj = 1;
    if (lomo__json_get(j, node, "partial_rotary_factor") >= 0) r.obj = node;
    if (lomo__cfg_float(&r, "partial_rotary_factor", 1.0, &f)) return -1;
    cfg->rotary_dim = (int)(cfg->head_dim * (double)f);
    if (f > 1.0f || cfg->rotary_dim < 2 || cfg->rotary_dim % 2)
        return lomo__fail("%s: field 'partial_rotary_factor': %g gives %d rotary dims of head_dim=%d "
                          "(expected a factor in (0, 1] giving an even number >= 2)", c->path, f, cfg->rotary_dim,
                          cfg->head_dim);
    if (cfg->rotary_dim == cfg->head_dim) cfg->rotary_dim = 0;
    node = lomo__json_get(j, 0, "sliding_window");
    if (node >= 0 && j->nodes[node].type != LOMO__J_NULL) {
        if (lomo__cfg_int(c, "sliding_window", 0, &cfg->local_window)) return -1;
        cfg->local_pattern = cfg->n_layers + 1;   /* every layer */
    }
    return 0;
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
    if (lomo__json_streq(j, node, "gemma3"))
        return lomo__fail("%s: field 'model_type': \"gemma3\" is Gemma 3's multimodal model (Gemma3ForConditionalGeneration), "
                          "which is not supported; the text-only \"gemma3_text\" (Gemma3ForCausalLM) is", c->path);
    if (lomo__json_streq(j, node, "qwen3_moe") || lomo__json_streq(j, node, "qwen2_moe") || lomo__json_streq(j, node, "mixtral"))
        return lomo__cfg_bad(c, "model_type", "a dense model (mixture-of-experts models are not supported)", node);
    if (!lomo__json_streq(j, node, "llama") && !lomo__json_streq(j, node, "mistral") && !lomo__json_streq(j, node, "qwen2") &&
        !lomo__json_streq(j, node, "qwen3") && !lomo__json_streq(j, node, "gemma2") && !lomo__json_streq(j, node, "gemma3_text") &&
        !lomo__json_streq(j, node, "phi3"))
        return lomo__cfg_bad(c, "model_type", "\"llama\", \"mistral\", \"qwen2\", \"qwen3\", \"gemma2\", \"gemma3_text\" "
                             "or \"phi3\"", node);
    lomo__json_str(j, node, cfg->model_type, sizeof cfg->model_type);
    qwen = !strcmp(cfg->model_type, "qwen2");
    cfg->gemma = !strcmp(cfg->model_type, "gemma2") ? 2 : !strcmp(cfg->model_type, "gemma3_text") ? 3 : 0;
    cfg->qk_norm = !strcmp(cfg->model_type, "qwen3") || cfg->gemma == 3;
    if (lomo__cfg_int(c, "hidden_size", -1, &cfg->dim) || lomo__cfg_int(c, "intermediate_size", -1, &cfg->hidden_dim) ||
        lomo__cfg_int(c, "num_hidden_layers", -1, &cfg->n_layers) || lomo__cfg_int(c, "num_attention_heads", -1, &cfg->n_heads) ||
        lomo__cfg_int(c, "num_key_value_heads", cfg->n_heads, &cfg->n_kv_heads) ||
        lomo__cfg_int(c, "vocab_size", -1, &cfg->vocab_size) ||
        lomo__cfg_int(c, "max_position_embeddings", 2048, &cfg->max_seq_len) ||
        lomo__cfg_float(c, "rms_norm_eps", 1e-6, &cfg->norm_eps) || lomo__cfg_float(c, "rope_theta", 10000.0, &cfg->rope_theta) ||
        lomo__cfg_bool(c, "tie_word_embeddings", cfg->gemma ? 1 : 0, &cfg->tie_embeddings) ||
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
    {   /* tensor sizes the kernels index with int: every dimension and product must fit */
        int64_t qd = (int64_t)cfg->n_heads * cfg->head_dim, big = 0x7fffffff;
        if (qd > big)
            return lomo__fail("%s: num_attention_heads=%d x head_dim=%d = %lld does not fit in 32 bits (limit %lld)",
                              c->path, cfg->n_heads, cfg->head_dim, (long long)qd, (long long)big);
        if ((int64_t)cfg->vocab_size * cfg->dim > ((int64_t)1 << 50) || qd * cfg->dim > ((int64_t)1 << 50) ||
            (int64_t)cfg->hidden_dim * cfg->dim > ((int64_t)1 << 50))
            return lomo__fail("%s: a weight matrix has more than 2^50 elements (hidden_size=%d, intermediate_size=%d, "
                              "vocab_size=%d, num_attention_heads x head_dim=%lld)", c->path, cfg->dim, cfg->hidden_dim,
                              cfg->vocab_size, (long long)qd);
    }
    /* dtype: "torch_dtype" (newer transformers write "dtype") */
    if ((node = lomo__json_get(j, 0, "torch_dtype")) < 0) node = lomo__json_get(j, 0, "dtype");
    if (node < 0 || j->nodes[node].type == LOMO__J_NULL || lomo__json_streq(j, node, "float32")) cfg->dtype = LOMO_F32;
    else if (lomo__json_streq(j, node, "bfloat16")) cfg->dtype = LOMO_BF16;
    else if (lomo__json_streq(j, node, "float16")) cfg->dtype = LOMO_F16;
    else return lomo__cfg_bad(c, "torch_dtype", "\"float32\", \"bfloat16\" or \"float16\"", node);
    /* unsupported features */
    if (cfg->gemma) {   /* Gemma reads hidden_activation (older configs also carry hidden_act) */
        const char *key = lomo__json_get(j, 0, "hidden_activation") >= 0 ? "hidden_activation" : "hidden_act";
        node = lomo__json_get(j, 0, key);
        if (node >= 0 && j->nodes[node].type != LOMO__J_NULL && !lomo__json_streq(j, node, "gelu_pytorch_tanh"))
            return lomo__cfg_bad(c, key, "\"gelu_pytorch_tanh\"", node);
    } else {
        node = lomo__json_get(j, 0, "hidden_act");
        if (node >= 0 && !lomo__json_streq(j, node, "silu")) return lomo__cfg_bad(c, "hidden_act", "\"silu\"", node);
    }
    /* RoPE: transformers < 5 writes rope_theta + rope_scaling, >= 5 rope_parameters {rope_type, rope_theta} */
    if (lomo__cfg_rope(c, "rope_scaling", cfg) || lomo__cfg_rope(c, "rope_parameters", cfg)) return -1;
    node = lomo__json_get(j, 0, "rope_parameters");
    if (lomo__json_get(j, node, "rope_theta") >= 0) {
        lomo__cfgp r = *c;
        r.obj = node;
        if (lomo__cfg_float(&r, "rope_theta", 10000.0, &cfg->rope_theta)) return -1;
    }
    if (cfg->gemma && lomo__config_gemma(c, cfg)) return -1;
    if (!strcmp(cfg->model_type, "phi3") && lomo__config_phi3(c, cfg)) return -1;
    node = lomo__json_get(j, 0, "pad_token_id");
    if (node >= 0 && j->nodes[node].type != LOMO__J_NULL) {
        int64_t v;
        if (lomo__json_int(j, node, &v) || v < 0 || v >= cfg->vocab_size) {
            snprintf(buf, sizeof buf, "null or a token id in [0, vocab_size=%d)", cfg->vocab_size);
            return lomo__cfg_bad(c, "pad_token_id", buf, node);
        }
        cfg->has_pad = 1; cfg->pad_token_id = (int)v;
    }
    /* sliding-window attention: qwen2's use_sliding_window, or per-layer layer_types */
    node = lomo__json_get(j, 0, "layer_types");
    if (!cfg->gemma && node >= 0 && j->nodes[node].type != LOMO__J_NULL) {
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
    if ((qwen || !strcmp(cfg->model_type, "qwen3")) && swa)
        return lomo__cfg_bad(c, "use_sliding_window", "false (sliding-window attention is not supported)",
                             lomo__json_get(j, 0, "use_sliding_window"));
    if (cfg->fused_proj) bias = 0;   /* Phi3Attention's projections have no bias, whatever attention_bias says */
    if (cfg->rope_type == 3) {   /* longrope: the sizes it needs are known now */
        int rd = cfg->rotary_dim ? cfg->rotary_dim : cfg->head_dim;
        double factor;
        if (!cfg->rope_original_max_pos && lomo__cfg_int(c, "original_max_position_embeddings",
                                                         cfg->fused_proj ? 4096 : -1, &cfg->rope_original_max_pos))
            return -1;   /* Phi3Config's default is 4096 */
        if (cfg->rope_n_factors != rd / 2)
            return lomo__fail("%s: field 'rope_scaling': longrope has %d factors, the %d rotary dims need %d", c->path,
                              cfg->rope_n_factors, rd, rd / 2);
        factor = cfg->rope_explicit & 1 ? cfg->rope_factor : (double)cfg->max_seq_len / cfg->rope_original_max_pos;
        if (!(cfg->rope_explicit & 1)) cfg->rope_factor = (float)factor;
        if (!(cfg->rope_explicit & 2))
            cfg->rope_attn_factor = factor <= 1.0 ? 1.0f
                                  : (float)sqrt(1.0 + log(factor) / log((double)cfg->rope_original_max_pos));
    }
    cfg->qkv_bias = qwen ? 1 : bias;
    cfg->o_bias = qwen ? 0 : bias;
    return 0;
}

/* keep: non-NULL receives the file's text (the caller frees it with LOMO_FREE) */
static int lomo__config_load_keep(const char *path, lomo_config *cfg, char **keep, size_t *keep_len) {
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
    if (!rc && keep) { *keep = txt; *keep_len = n; }
    else LOMO_FREE(txt);
    return rc;
}
#define lomo__config_load(path, cfg) lomo__config_load_keep((path), (cfg), NULL, NULL)

/* a float that reads back as a JSON float ("2.0", not "2": transformers' typed configs insist) */
static void lomo__fmt_floatf(char *buf, size_t cap, float v) {
    lomo__fmt_float(buf, cap, v);
    if (!strpbrk(buf, ".eEn") && strlen(buf) + 3 <= cap) strcat(buf, ".0");
}

/* 1: layer l attends within cfg->local_window (a Gemma local layer) */
static int lomo__layer_local(const lomo_config *c, int l) {
    return c->local_window > 0 && c->local_pattern > 0 && (l + 1) % c->local_pattern != 0;
}

static int lomo__config_text(const char *path, const lomo_config *cfg, lomo__sb *out) {
    lomo__sb b = { NULL, 0, 0, 0 };
    const char *arch, *dt = cfg->dtype == LOMO_BF16 ? "bfloat16" : cfg->dtype == LOMO_F16 ? "float16" : "float32";
    int qwen = !strcmp(cfg->model_type, "qwen2"), rc;
    char eps[32], theta[32];
    if (!strcmp(cfg->model_type, "llama")) arch = "LlamaForCausalLM";
    else if (!strcmp(cfg->model_type, "mistral")) arch = "MistralForCausalLM";
    else if (qwen) arch = "Qwen2ForCausalLM";
    else if (!strcmp(cfg->model_type, "qwen3")) arch = "Qwen3ForCausalLM";
    else if (!strcmp(cfg->model_type, "gemma2")) arch = "Gemma2ForCausalLM";
    else if (!strcmp(cfg->model_type, "gemma3_text")) arch = "Gemma3ForCausalLM";
    else if (!strcmp(cfg->model_type, "phi3")) arch = "Phi3ForCausalLM";
    else return lomo__fail("%s: model_type '%s' is not one of llama, mistral, qwen2, qwen3, gemma2, gemma3_text",
                           path, cfg->model_type);
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
    } else if (cfg->rope_type == 3) {
        char f[32];
        int k, i;
        lomo__sb_printf(&b, "  \"rope_scaling\": {\"rope_type\": \"longrope\"");
        for (k = 0; k < 2; k++) {
            lomo__sb_printf(&b, ", \"%s\": [", k ? "short_factor" : "long_factor");
            for (i = 0; i < cfg->rope_n_factors; i++) {
                lomo__fmt_floatf(f, sizeof f, k ? cfg->rope_short_factor[i] : cfg->rope_long_factor[i]);
                lomo__sb_printf(&b, "%s%s", i ? ", " : "", f);
            }
            lomo__sb_printf(&b, "]");
        }
        if (cfg->rope_explicit & 1) { lomo__fmt_floatf(f, sizeof f, cfg->rope_factor); lomo__sb_printf(&b, ", \"factor\": %s", f); }
        if (cfg->rope_explicit & 2) {
            lomo__fmt_floatf(f, sizeof f, cfg->rope_attn_factor);
            lomo__sb_printf(&b, ", \"attention_factor\": %s", f);
        }
        lomo__sb_printf(&b, "},\n  \"original_max_position_embeddings\": %d,\n", cfg->rope_original_max_pos);
    } else if (cfg->rope_type == 2) {
        char f[32];
        lomo__fmt_floatf(f, sizeof f, cfg->rope_factor);
        lomo__sb_printf(&b, "  \"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": %s},\n", f);
    } else lomo__sb_printf(&b, "  \"rope_scaling\": null,\n");
    if (cfg->gemma) {
        char qs[32], ac[32], fc[32], lt[32];
        int l;
        lomo__fmt_float(qs, sizeof qs, cfg->query_pre_attn_scalar);
        if (cfg->attn_softcap > 0) lomo__fmt_floatf(ac, sizeof ac, cfg->attn_softcap); else strcpy(ac, "null");
        if (cfg->final_softcap > 0) lomo__fmt_floatf(fc, sizeof fc, cfg->final_softcap); else strcpy(fc, "null");
        lomo__sb_printf(&b, "  \"query_pre_attn_scalar\": %s,\n  \"attn_logit_softcapping\": %s,\n"
                        "  \"final_logit_softcapping\": %s,\n  \"sliding_window\": %d,\n  \"layer_types\": [",
                        qs, ac, fc, cfg->local_window);
        for (l = 0; l < cfg->n_layers; l++)
            lomo__sb_printf(&b, "%s\"%s\"", l ? ", " : "", lomo__layer_local(cfg, l) ? "sliding_attention" : "full_attention");
        lomo__sb_printf(&b, "],\n");
        if (cfg->gemma == 3) {
            lomo__fmt_floatf(lt, sizeof lt, cfg->rope_local_theta > 0 ? cfg->rope_local_theta : cfg->rope_theta);
            lomo__sb_printf(&b, "  \"rope_local_base_freq\": %s,\n  \"sliding_window_pattern\": %d,\n", lt,
                            cfg->local_pattern);
        }
    }
    if (cfg->fused_proj) {
        char pf[32];
        lomo__fmt_floatf(pf, sizeof pf, cfg->rotary_dim ? (float)cfg->rotary_dim / (float)cfg->head_dim : 1.0f);
        lomo__sb_printf(&b, "  \"partial_rotary_factor\": %s,\n", pf);
        if (cfg->local_window > 0) lomo__sb_printf(&b, "  \"sliding_window\": %d,\n", cfg->local_window);
        else lomo__sb_printf(&b, "  \"sliding_window\": null,\n");
    }
    if (!strcmp(cfg->model_type, "mistral")) {
        if (cfg->sliding_window > 0) lomo__sb_printf(&b, "  \"sliding_window\": %d,\n", cfg->sliding_window);
        else lomo__sb_printf(&b, "  \"sliding_window\": null,\n");
    }
    lomo__sb_printf(&b, "  \"tie_word_embeddings\": %s,\n", cfg->tie_embeddings ? "true" : "false");
    if (cfg->has_pad) lomo__sb_printf(&b, "  \"pad_token_id\": %d,\n", cfg->pad_token_id);
    else lomo__sb_printf(&b, "  \"pad_token_id\": null,\n");   /* not the class default (Gemma 0, Phi-3 32000) */
    if (qwen || !strcmp(cfg->model_type, "qwen3")) lomo__sb_printf(&b, "  \"use_sliding_window\": false,\n");
    if (!qwen && !cfg->fused_proj)
        lomo__sb_printf(&b, "  \"attention_bias\": %s,\n  \"mlp_bias\": false,\n", cfg->qkv_bias ? "true" : "false");
    if (cfg->gemma) lomo__sb_printf(&b, "  \"hidden_activation\": \"gelu_pytorch_tanh\",\n  \"torch_dtype\": \"%s\"\n}\n", dt);
    else lomo__sb_printf(&b, "  \"hidden_act\": \"silu\",\n  \"torch_dtype\": \"%s\"\n}\n", dt);
    if (b.oom) { LOMO_FREE(b.p); return lomo__fail("%s: out of host memory writing config.json", path); }
    *out = b;
    (void)rc;
    return 0;
}

static int lomo__config_save(const char *path, const lomo_config *cfg) {
    lomo__sb b = { NULL, 0, 0, 0 };
    int rc;
    if (lomo__config_text(path, cfg, &b)) return -1;
    rc = lomo__write_file_atomic(path, b.p, b.n);
    LOMO_FREE(b.p);
    return rc;
}

static int lomo__config_same(const lomo_config *a, const lomo_config *b) {
    return a->dim == b->dim && a->hidden_dim == b->hidden_dim && a->n_layers == b->n_layers && a->n_heads == b->n_heads &&
           a->n_kv_heads == b->n_kv_heads && a->head_dim == b->head_dim && a->vocab_size == b->vocab_size &&
           a->max_seq_len == b->max_seq_len && a->norm_eps == b->norm_eps && a->rope_theta == b->rope_theta &&
           !a->tie_embeddings == !b->tie_embeddings && a->qkv_bias == b->qkv_bias && a->o_bias == b->o_bias &&
           a->rope_type == b->rope_type && (a->rope_type != 1 || (a->rope_factor == b->rope_factor &&
           a->rope_low_freq_factor == b->rope_low_freq_factor && a->rope_high_freq_factor == b->rope_high_freq_factor &&
           a->rope_original_max_pos == b->rope_original_max_pos)) && a->sliding_window == b->sliding_window &&
           a->dtype == b->dtype && !strcmp(a->model_type, b->model_type);
}

/* Raw extent of a value node (a string's span excludes its quotes). */
static void lomo__json_extent(const lomo__json *j, int v, size_t *beg, size_t *end, const char *base) {
    size_t b = (size_t)(j->nodes[v].s - base), q = j->nodes[v].type == LOMO__J_STR;
    *beg = b - q; *end = b + j->nodes[v].len + q;
}

typedef struct lomo__cedit { size_t at, end; char text[96]; } lomo__cedit;

/* Sets key of object obj to the JSON text val: replaces the value where the
   key is present, else inserts "key": val after the object's last member. */
static void lomo__cedit_set(lomo__cedit *e, int *n, const lomo__json *j, const char *base, int obj, const char *key,
                            const char *val) {
    int v = lomo__json_get(j, obj, key), c, last = -1;
    size_t b, en;
    if (v >= 0) {
        lomo__json_extent(j, v, &b, &en, base);
        e[*n].at = b; e[*n].end = en;
        snprintf(e[*n].text, sizeof e[*n].text, "%s", val);
    } else {
        for (c = j->nodes[obj].first; c >= 0; c = j->nodes[c].next) last = c;
        if (last >= 0) lomo__json_extent(j, last, &b, &en, base);
        else en = (size_t)(j->nodes[obj].s - base) + 1;   /* just after '{' */
        e[*n].at = e[*n].end = en;
        snprintf(e[*n].text, sizeof e[*n].text, "%s\"%s\": %s", last >= 0 ? (obj == 0 ? ",\n  " : ", ") : "", key, val);
    }
    (*n)++;
}

/* config.json for cfg, keeping the text of the config the model was loaded
   from (orig) byte for byte except for the values lomo changed: every key
   lomo does not use (bos/eos/pad ids, layer_types, custom fields) survives.
   When a change cannot be written as a value edit (model type, biases, rope
   scaling), lomo's own config is written with the original's other top-level
   members appended. The result is re-read and must give cfg back. */
static int lomo__config_save_keep(const char *path, const lomo_config *cfg, const char *orig, size_t olen) {
    lomo__json j, g;
    lomo__cfgp cp;
    lomo_config c0, back;
    lomo__sb b = { NULL, 0, 0, 0 };
    lomo__cedit e[16];
    int n = 0, i, rc, node;
    lomo_dtype odt;
    char v[64];
    const char *dt = cfg->dtype == LOMO_BF16 ? "\"bfloat16\"" : cfg->dtype == LOMO_F16 ? "\"float16\"" : "\"float32\"";
    if (!orig) return lomo__config_save(path, cfg);
    if (lomo__json_parse(&j, orig, olen, path)) return j.oom ? -1 : lomo__config_save(path, cfg);   /* not for memory */
    cp.j = &j; cp.path = path; cp.obj = 0;
    if (lomo__config_parse(&cp, &c0)) { lomo__json_free(&j); return lomo__config_save(path, cfg); }
    odt = c0.dtype;
    c0.dtype = cfg->dtype;   /* edited separately, below */
    if (c0.rope_type != cfg->rope_type || strcmp(c0.model_type, cfg->model_type) || c0.qkv_bias != cfg->qkv_bias ||
        c0.o_bias != cfg->o_bias || c0.sliding_window != cfg->sliding_window ||
        (cfg->rope_type == 1 && (c0.rope_factor != cfg->rope_factor || c0.rope_low_freq_factor != cfg->rope_low_freq_factor ||
                                 c0.rope_high_freq_factor != cfg->rope_high_freq_factor ||
                                 c0.rope_original_max_pos != cfg->rope_original_max_pos)))
        goto regenerate;
#define LOMO__CINT(field, key) if (c0.field != cfg->field) { snprintf(v, sizeof v, "%d", cfg->field); lomo__cedit_set(e, &n, &j, orig, 0, key, v); }
    LOMO__CINT(dim, "hidden_size") LOMO__CINT(hidden_dim, "intermediate_size") LOMO__CINT(n_layers, "num_hidden_layers")
    LOMO__CINT(n_heads, "num_attention_heads") LOMO__CINT(n_kv_heads, "num_key_value_heads") LOMO__CINT(head_dim, "head_dim")
    LOMO__CINT(vocab_size, "vocab_size") LOMO__CINT(max_seq_len, "max_position_embeddings")
#undef LOMO__CINT
    if (c0.norm_eps != cfg->norm_eps) { lomo__fmt_float(v, sizeof v, cfg->norm_eps); lomo__cedit_set(e, &n, &j, orig, 0, "rms_norm_eps", v); }
    if (c0.rope_theta != cfg->rope_theta) {   /* where it was read from: rope_parameters wins over the top level */
        node = lomo__json_get(&j, 0, "rope_parameters");
        lomo__fmt_float(v, sizeof v, cfg->rope_theta);
        lomo__cedit_set(e, &n, &j, orig, lomo__json_get(&j, node, "rope_theta") >= 0 ? node : 0, "rope_theta", v);
    }
    if (!c0.tie_embeddings != !cfg->tie_embeddings)
        lomo__cedit_set(e, &n, &j, orig, 0, "tie_word_embeddings", cfg->tie_embeddings ? "true" : "false");
    {   /* the dtype: torch_dtype and/or dtype (transformers >= 5), whichever the file has */
        int td = lomo__json_get(&j, 0, "torch_dtype"), nd = lomo__json_get(&j, 0, "dtype");
        char dn[16];
        snprintf(dn, sizeof dn, "%.*s", (int)strlen(dt) - 2, dt + 1);
        if (odt != cfg->dtype && (td >= 0 || nd < 0)) lomo__cedit_set(e, &n, &j, orig, 0, "torch_dtype", dt);
        if (nd >= 0 && !lomo__json_streq(&j, nd, dn)) lomo__cedit_set(e, &n, &j, orig, 0, "dtype", dt);
    }
    for (i = 1; i < n; i++) {   /* apply in file order */
        lomo__cedit x = e[i];
        int k = i;
        while (k > 0 && e[k - 1].at > x.at) { e[k] = e[k - 1]; k--; }
        e[k] = x;
    }
    {
        size_t pos = 0;
        for (i = 0; i < n; i++) {
            if (e[i].at < pos) break;   /* overlapping edits cannot happen; be safe */
            lomo__sb_add(&b, orig + pos, e[i].at - pos);
            lomo__sb_add(&b, e[i].text, strlen(e[i].text));
            pos = e[i].end;
        }
        if (i < n) { LOMO_FREE(b.p); goto regenerate; }
        lomo__sb_add(&b, orig + pos, olen - pos);
    }
    goto check;
regenerate:
    if (lomo__config_text(path, cfg, &b)) { lomo__json_free(&j); return -1; }
    if (lomo__json_parse(&g, b.p, b.n, path)) { lomo__json_free(&j); LOMO_FREE(b.p); return -1; }
    {   /* lomo's config, then the original's members it does not have, as they were */
        lomo__sb m = { NULL, 0, 0, 0 };
        size_t close_at = b.n;
        while (close_at > 0 && b.p[close_at - 1] != '}') close_at--;
        lomo__sb_add(&m, b.p, close_at ? close_at - 1 : 0);
        while (m.n > 0 && (m.p[m.n - 1] == '\n' || m.p[m.n - 1] == ' ')) m.n--;
        for (node = j.nodes[0].first; node >= 0; node = j.nodes[node].next) {
            size_t kb, ke, vb, ve;
            int key = j.nodes[node].key, o;
            for (o = g.nodes[0].first; o >= 0; o = g.nodes[o].next) {
                char kbuf[128];
                if (lomo__json_str(&g, g.nodes[o].key, kbuf, sizeof kbuf) >= 0 && lomo__json_streq(&j, key, kbuf)) break;
            }
            if (o >= 0) continue;
            if (lomo__json_streq(&j, key, "rope_scaling") || lomo__json_streq(&j, key, "rope_parameters") ||
                lomo__json_streq(&j, key, "dtype")) continue;   /* lomo wrote its own */
            lomo__json_extent(&j, key, &kb, &ke, orig);
            lomo__json_extent(&j, node, &vb, &ve, orig);
            lomo__sb_add(&m, ",\n  ", 4);
            lomo__sb_add(&m, orig + kb, ke - kb);
            lomo__sb_add(&m, ": ", 2);
            lomo__sb_add(&m, orig + vb, ve - vb);
        }
        lomo__sb_add(&m, "\n}\n", 3);
        lomo__json_free(&g);
        LOMO_FREE(b.p);
        b = m;
    }
check:
    lomo__json_free(&j);
    if (b.oom) { LOMO_FREE(b.p); return lomo__fail("%s: out of host memory writing config.json", path); }
    if (lomo__json_parse(&g, b.p, b.n, path)) { LOMO_FREE(b.p); return -1; }
    cp.j = &g; cp.obj = 0;
    rc = lomo__config_parse(&cp, &back);
    lomo__json_free(&g);
    if (rc || !lomo__config_same(&back, cfg)) {   /* the input's other keys contradict lomo's: lomo's own config */
        LOMO_FREE(b.p);
        return lomo__config_save(path, cfg);
    }
    rc = lomo__write_file_atomic(path, b.p, b.n);
    LOMO_FREE(b.p);
    return rc;
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
    LOMO_FREE(c->f);
    if (c->idx_txt) { lomo__json_free(&c->idx); LOMO_FREE(c->idx_txt); }
    memset(c, 0, sizeof *c);
}

static int lomo__ckpt_open(lomo__ckpt *c, const char *dir) {
    char path[1024], name[256];
    size_t len;
    int node, k;
    memset(c, 0, sizeof *c);
    if (lomo__path_join(path, sizeof path, dir, "model.safetensors")) return -1;
    if (lomo__exists(path) || errno != ENOENT) {   /* a symlink loop, EACCES...: st_open says which */
        c->f = (lomo__st_file *)lomo__calloc(1, sizeof *c->f);
        if (!c->f) return lomo__fail("%s: out of host memory (%zu bytes for the file table)", path, sizeof *c->f);
        if (lomo__st_open(&c->f[0], path)) { LOMO_FREE(c->f); c->f = NULL; return -1; }
        c->n = 1;
        return 0;
    }
    if (lomo__path_join(c->idx_path, sizeof c->idx_path, dir, "model.safetensors.index.json")) return -1;
    if (!lomo__exists(c->idx_path) && errno == ENOENT)
        return lomo__fail("%s: no model.safetensors and no model.safetensors.index.json", dir);
    if (lomo__read_file(c->idx_path, &c->idx_txt, &len)) return -1;
    if (lomo__json_parse(&c->idx, c->idx_txt, len, c->idx_path)) { LOMO_FREE(c->idx_txt); c->idx_txt = NULL; return -1; }
    c->weight_map = lomo__json_get(&c->idx, 0, "weight_map");
    if (c->weight_map < 0 || !lomo__json_is(&c->idx, c->weight_map, LOMO__J_OBJ)) {
        lomo__fail("%s: field 'weight_map': expected an object of tensor name -> file", c->idx_path);
        goto fail;
    }
    c->f = (lomo__st_file *)lomo__calloc((size_t)c->idx.nodes[c->weight_map].count + 1, sizeof *c->f);
    if (!c->f) {
        lomo__fail("%s: out of host memory (%zu bytes for a table of %d shard files)", c->idx_path,
                   ((size_t)c->idx.nodes[c->weight_map].count + 1) * sizeof *c->f, c->idx.nodes[c->weight_map].count);
        goto fail;
    }
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
    /* every tensor of every shard: in exactly one shard, the one weight_map names for it */
    for (k = 0; k < c->n; k++) {
        int i;
        const char *base = strrchr(c->f[k].path, '/');
        base = base ? base + 1 : c->f[k].path;
        for (i = 0; i < c->f[k].n; i++) {
            const char *tn = c->f[k].t[i].name;
            int v = lomo__json_get(&c->idx, c->weight_map, tn), o;
            if (v >= 0 && lomo__json_streq(&c->idx, v, base)) continue;
            for (o = 0; o < c->n; o++)
                if (o != k && lomo__st_find(&c->f[o], tn)) {
                    lomo__fail("%s: tensor '%s' appears in two shards, %s and %s", c->idx_path, tn, c->f[o].path, c->f[k].path);
                    goto fail;
                }
            if (v < 0) lomo__fail("%s: tensor '%s' of %s is not in weight_map", c->idx_path, tn, c->f[k].path);
            else {
                char show[96];
                lomo__fail("%s: weight_map puts tensor '%s' in %s, but it is in %s", c->idx_path, tn,
                           lomo__json_show(&c->idx, v, show, sizeof show), c->f[k].path);
            }
            goto fail;
        }
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
    char *cfg_txt = NULL;
    size_t cfg_len = 0;
    if (lomo__path_join(path, sizeof path, dir, "config.json") || lomo__config_load_keep(path, &cfg, &cfg_txt, &cfg_len)) return NULL;
    if (lomo__ckpt_open(&ck, dir)) { LOMO_FREE(cfg_txt); return NULL; }
    if (!(m = lomo_model_new(&cfg, opts))) { lomo__ckpt_close(&ck); LOMO_FREE(cfg_txt); return NULL; }
    m->config_json = cfg_txt; m->config_json_len = cfg_len;
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
        if (s->dtype != LOMO__ST_F32 && s->dtype != LOMO__ST_F16 && s->dtype != LOMO__ST_BF16 && s->dtype != LOMO__ST_F64) {
            lomo__fail("%s: tensor '%s': dtype %s cannot be read as float (expected F32, BF16, F16 or F64)", file, t->name,
                       lomo__st_dtype_name[s->dtype]);
            goto fail;
        }
        if ((k = lomo__st_nonfinite(s)) >= 0 || k == -2) {
            if (k == -2) lomo__fail("%s: tensor '%s': a value is outside the float32 range (F64 above 3.4e38)", file, t->name);
            else lomo__fail("%s: tensor '%s': element %d is %s: refusing a checkpoint with non-finite weights",
                            file, t->name, k, "NaN or Inf");
            goto fail;
        }
        if (i == 0) m->file_dtype = s->dtype == LOMO__ST_BF16 ? LOMO_BF16 : s->dtype == LOMO__ST_F16 ? LOMO_F16 : LOMO_F32;
        if (m->be->host_memory && t->dtype == LOMO_F32 && !m->comm) {
            if (lomo__st_read_f32(s, (float *)t->data)) goto fail;
        } else if (m->be->host_memory && lomo__st_of_dtype[t->dtype] == s->dtype && !m->comm) {
            memcpy(t->data, s->data, lomo__tensor_bytes(t));   /* bf16 -> bf16, f16 -> f16 */
        } else {   /* this rank's part, one tensor at a time through a host buffer: never a second full copy */
            stage = (float *)lomo__malloc(sizeof(float) * (size_t)lomo__shard_cap(m, t) + 4);
            if (!stage) {
                lomo__fail("%s: out of host memory (%zu bytes staging tensor '%s')", file,
                           sizeof(float) * (size_t)lomo__shard_cap(m, t) + 4, t->name);
                goto fail;
            }
            if (lomo__st_read_f32_range(s, stage, t->shard_off, t->shard_len)) goto fail;
            lomo__upload_f32(m, t, stage);
            LOMO_FREE(stage); stage = NULL;
        }
    }
    lomo__ckpt_close(&ck);
    if (m->be->check(m->be->ctx)) { lomo_model_free(m); return NULL; }
    return m;
fail:
    LOMO_FREE(stage);
    lomo__ckpt_close(&ck);
    lomo_model_free(m);
    return NULL;
}

/* ---- saving: a whole directory, swapped in atomically ---- */

#include <dirent.h>
#ifdef __linux__
#include <sys/ioctl.h>
#endif
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

/* Copies regular file from to a new file to (mode kept), durably: a reflink
   (FICLONE) where the file system offers one, else read/write. Never a hard
   link: editing the output must not edit the base model. */
static int lomo__copy_file(const char *from, const char *to) {
    struct stat st;
    char *buf = NULL;
    int in = lomo__open_regular(from, &st), out, rc = 0;
    if (in < 0) return -1;
    if ((out = open(to, O_WRONLY | O_CREAT | O_EXCL, (mode_t)(st.st_mode & 0777))) < 0) {
        int e = errno;
        close(in);
        return lomo__fail("%s: cannot create (copying %s): %s", to, from, strerror(e));
    }
#ifdef __linux__
    if (ioctl(out, 0x40049409ul /* FICLONE = _IOW(0x94, 9, int) */, in) == 0) goto synced;
#endif
    if (!(buf = (char *)LOMO_MALLOC((size_t)1 << 20))) { rc = lomo__fail("%s: out of host memory (1 MiB copy buffer)", to); goto end; }
    for (;;) {
        ssize_t r = read(in, buf, (size_t)1 << 20), w = 0;
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) { rc = lomo__fail("%s: read failed: %s", from, strerror(errno)); goto end; }
        if (r == 0) break;
        while (w < r) {
            ssize_t k = write(out, buf + w, (size_t)(r - w));
            if (k < 0 && errno == EINTR) continue;
            if (k <= 0) { rc = lomo__fail("%s: write failed (copying %s): %s", to, from, strerror(k < 0 ? errno : EIO)); goto end; }
            w += k;
        }
    }
#ifdef __linux__
synced:
#endif
    if (fsync(out)) rc = lomo__fail("%s: fsync failed: %s", to, strerror(errno));
end:
    LOMO_FREE(buf);
    close(in);
    if (close(out) && !rc) rc = lomo__fail("%s: close failed: %s", to, strerror(errno));
    if (rc) unlink(to);
    return rc;
}

/* Files of src that are not weights or config (tokenizer, generation config,
   README...) are copied into dst unless dst has them already. */
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
        if (lomo__copy_file(from, to)) { closedir(d); return -1; }
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
        if (m->comm->all_gather(m->comm->ctx, full, t->data, part) || !(raw = lomo__malloc(all))) {
            lomo__free(mm, LOMO_MEM_COMM, full, all);
            return NULL;
        }
        m->be->download(m->be->ctx, raw, full, lomo__tensor_bytes(t));
        lomo__free(mm, LOMO_MEM_COMM, full, all);
        *owned = 1;
    } else if (!m->be->host_memory) {
        if (!(raw = lomo__malloc(lomo__tensor_bytes(t)))) return NULL;
        m->be->download(m->be->ctx, raw, t->data, lomo__tensor_bytes(t));
        *owned = 1;
    }
    if (dt == t->dtype) return raw;
    out = lomo__malloc(n * lomo__dtype_size(dt) + 1);
    if (out) {
        lomo_tensor v = *t;
        v.data = raw;
        for (i = 0; i < n; i++) {
            float x = lomo__elem(&v, i);
            if (dt == LOMO_F32) ((float *)out)[i] = x;
            else ((uint16_t *)out)[i] = dt == LOMO_BF16 ? lomo_f32_to_bf16(x) : lomo_f32_to_f16(x);
        }
    }
    if (*owned) LOMO_FREE(raw);
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
    if ((int)dt < LOMO_F32 || (int)dt > LOMO_F16)   /* m->file_dtype is a public field: never index with it unchecked */
        return lomo__fail("%s: model file_dtype %d is not LOMO_F32, LOMO_BF16 or LOMO_F16", dir, (int)dt);
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
    shard_of = (int *)lomo__calloc((size_t)m->n_tensors, sizeof(int));
    outs = (lomo__st_out *)lomo__calloc((size_t)m->n_tensors, sizeof *outs);
    bufs = (void **)lomo__calloc((size_t)m->n_tensors, sizeof(void *));
    owned = (int *)lomo__calloc((size_t)m->n_tensors, sizeof(int));
    rc = -1;
    if (!shard_of || !outs || !bufs || !owned) {
        lomo__fail("%s: out of host memory (%zu bytes for the table of %d tensors)", dir,
                   (size_t)m->n_tensors * (2 * sizeof(int) + sizeof *outs + sizeof(void *)), m->n_tensors);
        goto done;
    }
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
            if (!(so->data = bufs[i] = lomo__host_copy(m, t, dt, &owned[i]))) {
                lomo__fail("%s: out of host memory (%zu bytes for a host copy of tensor '%s')", dir,
                           (size_t)t->numel * (lomo__dtype_size(dt) + lomo__dtype_size(t->dtype)), t->name);
                goto done;
            }
        }
        if (n_shards == 1) snprintf(shard, sizeof shard, "model.safetensors");
        else snprintf(shard, sizeof shard, "model-%05d-of-%05d.safetensors", k + 1, n_shards);
        snprintf(path, sizeof path, "%s/%s", tmp, shard);
        if (writer && lomo__st_save(path, outs, n, meta)) goto done;
        for (i = 0; i < m->n_tensors; i++) { if (owned[i]) LOMO_FREE(bufs[i]); bufs[i] = NULL; owned[i] = 0; }
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
        if (b.oom) { LOMO_FREE(b.p); lomo__fail("%s: out of host memory building model.safetensors.index.json", dir); goto done; }
        k = lomo__write_file_atomic(path, b.p, b.n);
        LOMO_FREE(b.p);
        if (k) goto done;
    }
    {
        lomo_config c = m->cfg;
        c.dtype = dt;
        snprintf(path, sizeof path, "%s/config.json", tmp);
        if (lomo__config_save_keep(path, &c, m->config_json, m->config_json_len)) goto done;
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
    for (i = 0; bufs && owned && i < m->n_tensors; i++) if (owned[i]) LOMO_FREE(bufs[i]);
    LOMO_FREE(bufs); LOMO_FREE(owned); LOMO_FREE(outs); LOMO_FREE(shard_of);
    return lomo__agree(m, &rc) ? -1 : rc;
}

LOMODEF int lomo_save(const lomo_model *m, const char *dir) { return lomo_save_ex(m, dir, NULL); }

static const char *lomo__opt_name(int o) {
    return o == LOMO_OPT_LOMO ? "lomo" : o == LOMO_OPT_ADALOMO ? "adalomo" : o == LOMO_OPT_ADAMW ? "adamw" : "?";
}

/* trainer.safetensors: the rule's state per tensor + the scalars in metadata.
   Sharded, AdamW's per-element state is gathered (every rank takes part, the
   writer writes), so a checkpoint does not depend on the number of ranks. */
static int lomo__trainer_write(const lomo_trainer *t, const char *path, int writer) {
    const lomo_model *m = t->m;
    int n = 0, i, k, rc = 0, sharded = t->comm && t->o.optimizer == LOMO_OPT_ADAMW;
    lomo__st_out *outs = (lomo__st_out *)lomo__calloc((size_t)m->n_tensors * 2 + 1, sizeof *outs);
    char (*names)[112] = (char (*)[112])lomo__calloc((size_t)m->n_tensors * 2 + 1, 112);
    float **host = (float **)lomo__calloc((size_t)m->n_tensors * 2 + 1, sizeof(float *));
    char step[32], scale[32], clean[32], opt[16], seed[32];
    const char *meta[] = {"format", "lomo-trainer", "step", step, "loss_scale", scale, "clean_steps", clean,
                          "optimizer", opt, "seed", seed, NULL};
    if (!outs || !names || !host) {
        rc = lomo__fail("%s: out of host memory (%zu bytes for the table of %d tensors)", path,
                        ((size_t)m->n_tensors * 2 + 1) * (sizeof *outs + 112 + sizeof(float *)), m->n_tensors);
        goto done;
    }
    for (i = 0; i < m->n_tensors && !rc; i++) {
        const lomo_tensor *p = &m->tensors[i];
        for (k = 0; k < 2; k++) {
            float *s = k ? t->s2[i] : t->s1[i];
            int64_t len;
            size_t cap;
            if (!s) continue;
            len = t->o.optimizer == LOMO_OPT_ADAMW ? p->numel : p->ndim == 2 ? p->shape[k] : p->numel;
            cap = sharded ? (size_t)lomo__shard_cap(m, p) : (size_t)len;
            if (!(host[n] = (float *)lomo__malloc(sizeof(float) * cap * (sharded ? (size_t)t->comm->size : 1) + 4))) {
                rc = lomo__fail("%s: out of host memory (%zu bytes for the optimizer state of '%s')", path,
                                sizeof(float) * cap * (sharded ? (size_t)t->comm->size : 1) + 4, p->name);
                break;
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
    snprintf(opt, sizeof opt, "%s", lomo__opt_name(t->o.optimizer));
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)t->o.seed);
    if (!rc && writer) rc = lomo__st_save(path, outs, n, meta);
done:
    for (i = 0; host && i < n; i++) LOMO_FREE(host[i]);
    LOMO_FREE(host); LOMO_FREE(outs); LOMO_FREE(names);
    return rc;
}

LOMODEF int lomo_trainer_resume(lomo_trainer *t, const char *dir) {
    char path[1100], buf[64];
    lomo__st_file f;
    lomo__json j;
    int i, k, meta;
    lomo_model *m = t->m;
    float *host = NULL;
    long long step = 0, clean = 0;
    double scale = 1.0;
    if (lomo__path_join(path, sizeof path, dir, "trainer.safetensors") || lomo__st_open(&f, path)) return -1;
    /* the scalars live in the header's __metadata__ */
    {
        uint64_t hl;
        memcpy(&hl, f.map, 8);
        if (lomo__json_parse(&j, (const char *)f.map + 8, (size_t)hl, path)) { lomo__st_close(&f); return -1; }
    }
    meta = lomo__json_get(&j, 0, "__metadata__");
    {   /* every scalar validated before any is taken: a bad file changes nothing */
        int opt = -1;
        char *end;
        static const char *const legacy[3] = { "0", "1", "2" };   /* before 0.5 the optimizer was written as a number */
#define LOMO__META(key) (lomo__json_str(&j, lomo__json_get(&j, meta, key), buf, sizeof buf) >= 0)
        if (!LOMO__META("format") || strcmp(buf, "lomo-trainer")) {
            lomo__fail("%s: __metadata__ field 'format': expected \"lomo-trainer\", found %s", path,
                       LOMO__META("format") ? buf : "nothing (not a trainer state written by lomo)");
            goto fail;
        }
        if (LOMO__META("optimizer"))
            for (k = 0; k < 3; k++) if (!strcmp(buf, lomo__opt_name(k)) || !strcmp(buf, legacy[k])) opt = k;
        if (opt < 0) {
            lomo__fail("%s: __metadata__ field 'optimizer': unknown optimizer '%s' (expected lomo, adalomo or adamw)", path,
                       LOMO__META("optimizer") ? buf : "(missing)");
            goto fail;
        }
        if (opt != t->o.optimizer) {
            lomo__fail("%s: trainer state is for optimizer %s, this trainer runs %s", path, lomo__opt_name(opt),
                       lomo__opt_name(t->o.optimizer));
            goto fail;
        }
        errno = 0;
        if (!LOMO__META("step") || !buf[0] || buf[0] == '-' || buf[0] == '+' || buf[0] == ' ' ||
            (step = strtoll(buf, &end, 10), *end) || errno || step < 0 || step > ((long long)1 << 53)) {
            lomo__fail("%s: __metadata__ field 'step': expected an integer in [0, 2^53], found %s", path,
                       LOMO__META("step") ? buf : "nothing");
            goto fail;
        }
        errno = 0;
        if (!LOMO__META("loss_scale") || !buf[0] || buf[0] == ' ' ||
            (scale = strtod(buf, &end), *end) || !(scale > 0) || !((float)scale > 0) || !isfinite((float)scale)) {
            lomo__fail("%s: __metadata__ field 'loss_scale': expected a finite number > 0, found %s", path,
                       LOMO__META("loss_scale") ? buf : "nothing");
            goto fail;
        }
        errno = 0;
        if (!LOMO__META("clean_steps") || !buf[0] || buf[0] == '-' || buf[0] == '+' || buf[0] == ' ' ||
            (clean = strtoll(buf, &end, 10), *end) || errno || clean < 0 || clean > 0x7fffffff) {
            lomo__fail("%s: __metadata__ field 'clean_steps': expected an integer in [0, 2^31), found %s", path,
                       LOMO__META("clean_steps") ? buf : "nothing");
            goto fail;
        }
#undef LOMO__META
    }
    if (t->opt_floats) {
        if (!(host = (float *)lomo__malloc(sizeof(float) * t->opt_floats))) {
            lomo__fail("%s: out of host memory (%zu bytes staging the optimizer state)", path, sizeof(float) * t->opt_floats);
            goto fail;
        }
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
                {   /* finite, and the second-moment statistics (all of AdaLomo's, AdamW's v) >= 0 */
                    int64_t e;
                    int nonneg = t->o.optimizer == LOMO_OPT_ADALOMO || k == 1;
                    for (e = 0; e < len; e++) {
                        float x;
                        memcpy(&x, (const unsigned char *)st->data + 4 * e, 4);
                        if (!isfinite(x) || (nonneg && x < 0)) {
                            lomo__fail("%s: optimizer state '%s': element %lld is %g (expected a finite number%s)", path,
                                       name, (long long)e, (double)x, nonneg ? " >= 0" : "");
                            goto fail;
                        }
                    }
                }
                if (t->comm && t->o.optimizer == LOMO_OPT_ADAMW)   /* this rank's elements, zero padding */
                    for (int64_t e = 0; e < lomo__shard_cap(m, p); e++)
                        if (e < p->shard_len) memcpy(&host[(s - t->opt_mem) + e], (const unsigned char *)st->data + 4 * (p->shard_off + e), 4);
                        else host[(s - t->opt_mem) + e] = 0.0f;   /* (the data may sit at any byte offset) */
                else memcpy(host + (s - t->opt_mem), st->data, sizeof(float) * (size_t)len);
            }
        m->be->upload(m->be->ctx, t->opt_mem, host, sizeof(float) * t->opt_floats);
    }
    t->step = step; t->scale = (float)scale; t->clean_steps = (int)clean;
    LOMO_FREE(host);
    lomo__json_free(&j);
    lomo__st_close(&f);
    return 0;
fail:
    LOMO_FREE(host);
    lomo__json_free(&j);
    lomo__st_close(&f);
    return -1;
}

/* ======================================================================== */
/* 10. data: packed / JSONL / text / chat datasets (LOMO_NO_DATA)           */
/* ======================================================================== */

#if !defined(LOMO_NO_DATA) || !defined(LOMO_NO_MC)   /* section 10: shared with multiple choice */

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
        if (!(q = (char *)LOMO_REALLOC(b->p, cap))) return NULL;   /* b->p stays valid */
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

#endif /* !LOMO_NO_DATA || !LOMO_NO_MC: section 10 */

#ifndef LOMO_NO_DATA   /* section 10 */

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
    int64_t n_cut;        /* examples truncated to seq_len */
};

static int lomo__data_suffix(const char *s, const char *suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !memcmp(s + n - k, suf, k);
}

/* The renderers write the text the official Jinja templates produce and the
   byte spans whose tokens count; tokenization is lomo_tokenize's. */

/* Python's str.isspace() (Jinja's trim is str.strip()) */
static int lomo__py_space(unsigned cp) {
    return (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x20) || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f ||
           cp == 0x3000;
}

/* The code point of the (valid) UTF-8 character at s of k bytes. */
static unsigned lomo__utf8_cp(const unsigned char *s, int k) {
    unsigned cp = k == 1 ? s[0] : k == 2 ? s[0] & 0x1fu : k == 3 ? s[0] & 0x0fu : s[0] & 0x07u;
    int i;
    for (i = 1; i < k; i++) cp = cp << 6 | (s[i] & 0x3fu);
    return cp;
}

/* [*a, *b) of s without leading and trailing white space (s is valid UTF-8). */
static void lomo__py_strip(const char *s, size_t n, size_t *a, size_t *b) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, e = n;
    while (i < n) {
        int k = lomo__utf8_len(u + i, n - i);
        if (k < 1 || !lomo__py_space(lomo__utf8_cp(u + i, k))) break;
        i += (size_t)k;
    }
    while (e > i) {
        size_t c = e - 1;
        int k;
        while (c > i && (u[c] & 0xc0) == 0x80) c--;
        k = lomo__utf8_len(u + c, e - c);
        if (k < 1 || c + (size_t)k != e || !lomo__py_space(lomo__utf8_cp(u + c, k))) break;
        e = c;
    }
    *a = i; *b = e;
}

enum { LOMO__TPL_LLAMA3, LOMO__TPL_CHATML, LOMO__TPL_QWEN2, LOMO__TPL_MISTRAL, LOMO__TPL_MISTRAL_V1, LOMO__TPL_N };
static const char *const lomo__tpl_names[LOMO__TPL_N] = {"llama3", "chatml", "qwen2", "mistral", "mistral-v1"};
/* the special tokens each template writes (they must be single tokens of the tokenizer) */
static const char *const lomo__tpl_specials[LOMO__TPL_N][4] = {
    {"<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"},
    {"<|im_start|>", "<|im_end|>", NULL, NULL},
    {"<|im_start|>", "<|im_end|>", NULL, NULL},
    {"<s>", "</s>", NULL, NULL},
    {"<s>", "</s>", NULL, NULL}};

LOMODEF const char *lomo_chat_template_names(void) { return "llama3, chatml, qwen2, mistral, mistral-v1"; }

static int lomo__tpl_find(const char *name) {
    int i;
    for (i = 0; name && i < LOMO__TPL_N; i++) if (!strcmp(name, lomo__tpl_names[i])) return i;
    return -1;
}

static int lomo__sadd(lomo__dbuf *b, const char *s, size_t n) { return lomo__dbuf_add(b, s, n); }
static int lomo__sputs(lomo__dbuf *b, const char *s) { return lomo__dbuf_add(b, s, strlen(s)); }

/* Renders msgs with template tpl into text (NUL-terminated) and spans (int64
   pairs); errors start with `where`. Returns the number of spans, or -1. */
static int lomo__chat_render(int tpl, const lomo_chat_msg *msgs, int n, const char *where, lomo__dbuf *text,
                             lomo__dbuf *spans) {
    int i, first = 0, nsp = 0, oom = 0;
    const char *name = lomo__tpl_names[tpl];
    for (i = 0; i < n; i++) {
        const char *r = msgs[i].role;
        if (!r || !msgs[i].content)
            return lomo__fail("%s: messages[%d] needs a role and a content", where, i);
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant"))
            return lomo__fail("%s: messages[%d].role = \"%.40s\": expected \"system\", \"user\" or \"assistant\"", where,
                              i, r);
        if (!lomo__utf8_valid(msgs[i].content))
            return lomo__fail("%s: messages[%d].content is not valid UTF-8", where, i);
    }
    if (n < 1) return lomo__fail("%s: messages is empty", where);
    if (tpl == LOMO__TPL_MISTRAL || tpl == LOMO__TPL_MISTRAL_V1) {
        first = !strcmp(msgs[0].role, "system");
        for (i = first; i < n; i++)
            if (strcmp(msgs[i].role, (i - first) % 2 ? "assistant" : "user"))
                return lomo__fail("%s: messages[%d] has role %s where chat template %s expects %s (an optional "
                                  "first system message, then user and assistant alternating, user first)", where,
                                  i, msgs[i].role, name, (i - first) % 2 ? "assistant" : "user");
        oom |= lomo__sputs(text, "<s>");
    } else if (tpl == LOMO__TPL_LLAMA3) {
        oom |= lomo__sputs(text, "<|begin_of_text|>");
    } else if (strcmp(msgs[0].role, "system")) {
        oom |= lomo__sputs(text, tpl == LOMO__TPL_CHATML
                                     ? "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
                                       "assistant.<|im_end|>\n"
                                     : "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n");
    }
    for (i = first; i < n && !oom; i++) {
        const char *c = msgs[i].content, *eot;
        size_t a = 0, b = strlen(c);
        int asst = !strcmp(msgs[i].role, "assistant");
        int64_t sp[2];
        if (tpl == LOMO__TPL_LLAMA3) {
            oom |= lomo__sputs(text, "<|start_header_id|>") | lomo__sputs(text, msgs[i].role) |
                   lomo__sputs(text, "<|end_header_id|>\n\n");
            lomo__py_strip(c, b, &a, &b);
            eot = "<|eot_id|>";
        } else if (tpl == LOMO__TPL_MISTRAL || tpl == LOMO__TPL_MISTRAL_V1) {
            if (tpl == LOMO__TPL_MISTRAL_V1) oom |= lomo__sputs(text, " ");   /* ' [INST] ', ' ' + content */
            if (!asst) {
                oom |= lomo__sputs(text, "[INST] ");
                if (first && i == 1) oom |= lomo__sputs(text, msgs[0].content) | lomo__sputs(text, "\n\n");
            }
            eot = asst ? "</s>" : " [/INST]";
        } else {
            oom |= lomo__sputs(text, "<|im_start|>") | lomo__sputs(text, msgs[i].role) | lomo__sputs(text, "\n");
            eot = "<|im_end|>";
        }
        sp[0] = (int64_t)text->n;
        oom |= lomo__sadd(text, c + a, b - a) | lomo__sputs(text, eot);
        sp[1] = (int64_t)text->n;
        if (tpl == LOMO__TPL_CHATML || tpl == LOMO__TPL_QWEN2) oom |= lomo__sputs(text, "\n");
        if (asst) { oom |= lomo__dbuf_add(spans, sp, sizeof sp); nsp++; }
    }
    if (oom || lomo__dbuf_add(text, "", 1)) return lomo__fail("%s: out of memory rendering chat template %s", where, name);
    text->n--;   /* the NUL is there, not counted */
    return nsp;
}

LOMODEF int lomo_chat_render(const char *name, const lomo_chat_msg *msgs, int n, char **text, size_t *len,
                             int64_t **spans) {
    lomo__dbuf t = {NULL, 0, 0}, sp = {NULL, 0, 0};
    int tpl = lomo__tpl_find(name), k;
    if (!text) return lomo__fail("lomo_chat_render: text is required");
    *text = NULL;
    if (spans) *spans = NULL;
    if (tpl < 0)
        return lomo__fail("lomo_chat_render: unknown chat template \"%.64s\" (built in: %s)", name ? name : "(null)",
                          lomo_chat_template_names());
    if (n < 0 || (n > 0 && !msgs)) return lomo__fail("lomo_chat_render: %d messages at %p", n, (const void *)msgs);
    if ((k = lomo__chat_render(tpl, msgs, n, "lomo_chat_render", &t, &sp)) < 0) {
        lomo__dbuf_free(&t); lomo__dbuf_free(&sp);
        return -1;
    }
    *text = t.p;
    if (len) *len = t.n;
    if (spans) *spans = (int64_t *)sp.p; else lomo__dbuf_free(&sp);
    return k;
}

/* Which built-in template tpl (an official Jinja template) is, or -1 + error. */
static int lomo__chat_recognise(const char *tpl, const char *where) {
    if (strstr(tpl, "<|start_header_id|>") && strstr(tpl, "<|eot_id|>")) {
        if (strstr(tpl, "Cutting Knowledge Date") || strstr(tpl, "tools") || strstr(tpl, "ipython"))
            return lomo__fail("%s: chat_template is Llama 3.1's or later (tools, dates in the system message), which "
                              "lomo does not render; --chat-template llama3 gives Llama 3's", where);
        if (!strstr(tpl, "trim") || !strstr(tpl, "bos_token"))
            return lomo__fail("%s: chat_template looks like Llama 3's but does not trim the content or write "
                              "bos_token as Llama-3-Instruct's does; choose a template by name (built in: %s)", where,
                              lomo_chat_template_names());
        return LOMO__TPL_LLAMA3;
    }
    if (strstr(tpl, "<|im_start|>") && strstr(tpl, "<|im_end|>")) {
        if (strstr(tpl, "<think>"))
            return lomo__fail("%s: chat_template has <think> blocks (Qwen3 style), which lomo does not render; choose "
                              "a template by name (built in: %s)", where, lomo_chat_template_names());
        if (strstr(tpl, "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.")) return LOMO__TPL_CHATML;
        if (strstr(tpl, "You are a helpful assistant.")) return LOMO__TPL_QWEN2;
        return lomo__fail("%s: chat_template is ChatML without Qwen2's or Qwen2.5's default system message; choose a "
                          "template by name (built in: %s)", where, lomo_chat_template_names());
    }
    if (strstr(tpl, "[INST]") && strstr(tpl, "[/INST]")) {
        if (strstr(tpl, "' [/INST]'") && !strstr(tpl, "[AVAILABLE_TOOLS]") && !strstr(tpl, "<<SYS>>") &&
            !strstr(tpl, "eos_token + ' '")) {
            if (strstr(tpl, "'[INST] '") && !strstr(tpl, "' [INST] '") && !strstr(tpl, "' ' + message")) return LOMO__TPL_MISTRAL;
            if (strstr(tpl, "' [INST] '") && strstr(tpl, "' ' + message['content'] + eos_token")) return LOMO__TPL_MISTRAL_V1;
        }
        return lomo__fail("%s: chat_template uses [INST] but is not Mistral-7B-Instruct v0.1/v0.2's "
                          "(\"<s>[INST] user [/INST]assistant</s>\"; v0.3's and Llama 2's spacing differ); choose a "
                          "template by name (built in: %s)", where, lomo_chat_template_names());
    }
    return lomo__fail("%s: chat_template is none of the built-in ones (%s); choose one with --chat-template NAME",
                      where, lomo_chat_template_names());
}

/* node's decoded string, LOMO_MALLOC'd (*len its length), or NULL + error naming where and field */
static char *lomo__json_strdup(const lomo__json *j, int node, const char *where, const char *field, size_t *len) {
    char show[64], *out;
    size_t i = 0, o = 0;
    if (node < 0) { lomo__fail("%s: missing \"%s\"", where, field); return NULL; }
    if (!lomo__json_is(j, node, LOMO__J_STR)) {
        lomo__fail("%s: %s must be a string, found %s", where, field, lomo__json_show(j, node, show, sizeof show));
        return NULL;
    }
    if (!(out = (char *)LOMO_MALLOC(j->nodes[node].len + 1))) { lomo__fail("%s: out of memory", where); return NULL; }
    while (i < j->nodes[node].len) {
        char c[4];
        int k = lomo__jdec(j->nodes[node].s, &i, c), m;
        if (k == 1 && c[0] == 0) {
            LOMO_FREE(out);
            lomo__fail("%s: %s contains \\u0000", where, field);
            return NULL;
        }
        for (m = 0; m < k; m++) out[o++] = c[m];
    }
    out[o] = 0;
    if (len) *len = o;
    return out;
}

LOMODEF const char *lomo_chat_template_detect(const char *path) {
    char *buf = NULL, *tpl = NULL, file[4096];
    size_t len, n;
    int rc = -1, node, isdir;
    struct stat st;
    lomo__json j;
    if (!path) { lomo__fail("lomo_chat_template_detect: no path"); return NULL; }
    isdir = !stat(path, &st) && S_ISDIR(st.st_mode);
    n = strlen(path);
    if (isdir) snprintf(file, sizeof file, "%s/chat_template.jinja", path);
    else snprintf(file, sizeof file, "%s", path);
    if (isdir ? !stat(file, &st) : lomo__data_suffix(path, ".jinja")) {   /* the template itself */
        if (lomo__read_file(file, &buf, &len)) return NULL;
        rc = lomo__utf8_valid(buf) && strlen(buf) == len ? lomo__chat_recognise(buf, file)
                                                          : lomo__fail("%s: not UTF-8 text", file);
        LOMO_FREE(buf);
        return rc < 0 ? NULL : lomo__tpl_names[rc];
    }
    if (isdir) snprintf(file, sizeof file, "%s%s", path, n && path[n - 1] == '/' ? "tokenizer_config.json"
                                                                                 : "/tokenizer_config.json");
    if (lomo__read_file(file, &buf, &len)) return NULL;
    if (lomo__json_parse(&j, buf, len, file)) { LOMO_FREE(buf); return NULL; }
    node = lomo__json_get(&j, 0, "chat_template");
    if (lomo__json_is(&j, node, LOMO__J_ARR)) {   /* [{"name": ..., "template": ...}]: the default one */
        int c, found = -1;
        for (c = j.nodes[node].first; c >= 0; c = j.nodes[c].next)
            if (lomo__json_streq(&j, lomo__json_get(&j, c, "name"), "default")) found = lomo__json_get(&j, c, "template");
        if (found < 0) lomo__fail("%s: chat_template is a list without a \"default\" entry", file);
        node = found;
        if (found < 0) goto done;
    }
    if (node < 0) { lomo__fail("%s: no chat_template; choose one with --chat-template NAME (built in: %s)", file,
                               lomo_chat_template_names()); goto done; }
    if (!(tpl = lomo__json_strdup(&j, node, file, "chat_template", NULL))) goto done;
    rc = lomo__chat_recognise(tpl, file);
done:
    LOMO_FREE(tpl);
    lomo__json_free(&j);
    LOMO_FREE(buf);
    return rc < 0 ? NULL : lomo__tpl_names[rc];
}

LOMODEF int64_t lomo_data_truncated(const lomo_data *d) { return d ? d->n_cut : 0; }

LOMODEF int64_t lomo_data_example(const lomo_data *d, int64_t i, const int32_t **tokens, const int32_t **labels) {
    int64_t a, b, T;
    if (!d || !tokens) return lomo__fail("lomo_data_example: data and tokens are required");
    if (i < 0 || i >= d->n)
        return lomo__fail("lomo_data_example: example %lld is outside [0, %lld)", (long long)i, (long long)d->n);
    T = d->o.seq_len;
    a = d->off ? d->off[i] : i * T;
    b = d->off ? d->off[i + 1] : (a + T < d->n_tok ? a + T : d->n_tok);
    *tokens = d->tok + a;
    if (labels) *labels = (d->lab ? d->lab : d->tok) + a;
    return b - a;
}

#ifndef LOMO_NO_TOKENIZER
/* labels for ids whose byte ranges are tsp: the id where the token has a
   byte in one of the m spans, else -100 (transformers' assistant mask). A
   token with an empty range counts when it sits strictly inside a span, or
   (trail: special tokens the post-processor appends) when it comes after
   the last token with text and that one counts. */
static void lomo__span_labels(const int32_t *ids, const int64_t *tsp, int64_t n, const int64_t *spans, int64_t m,
                              int trail, int32_t *labels) {
    int64_t i, k, last = -1;
    for (i = 0; i < n; i++) if (tsp[2 * i + 1] > tsp[2 * i]) last = i;
    for (i = 0; i < n; i++) {
        int64_t s = tsp[2 * i], e = tsp[2 * i + 1];
        int c = 0;
        for (k = 0; k < m && !c; k++)
            c = e > s ? spans[2 * k] < e && spans[2 * k + 1] > s : spans[2 * k] < s && spans[2 * k + 1] > s;
        if (!c && e == s && trail && i > last && last >= 0) c = labels[last] != -100;
        labels[i] = c ? ids[i] : -100;
    }
}

/* the template's special tokens must be tokens of tk, or the rendering would be split into pieces */
static int lomo__tpl_check(const lomo_tokenizer *tk, int tpl, const char *where) {
    int i;
    for (i = 0; i < 4 && lomo__tpl_specials[tpl][i]; i++)
        if (lomo_token_id(tk, lomo__tpl_specials[tpl][i]) < 0)
            return lomo__fail("%s: chat template %s needs the token %s, which the tokenizer does not have (is it "
                              "the model's tokenizer.json?)", where, lomo__tpl_names[tpl], lomo__tpl_specials[tpl][i]);
    return 0;
}

/* tokenizes text and labels it by spans (m < 0: every token counts) */
static int64_t lomo__encode_spans(const lomo_tokenizer *tk, const char *text, size_t len, int add_special,
                                  const int64_t *spans, int64_t m, int32_t **ids, int32_t **labels) {
    int64_t *tsp = NULL, n;
    *ids = NULL; *labels = NULL;
    if ((n = lomo_tokenize(tk, text, len, add_special, ids, m >= 0 ? &tsp : NULL)) < 0) return -1;
    if (!(*labels = (int32_t *)LOMO_MALLOC((size_t)(n ? n : 1) * sizeof(int32_t)))) {
        LOMO_FREE(*ids); LOMO_FREE(tsp); *ids = NULL;
        return lomo__fail("out of memory for %lld labels", (long long)n);
    }
    if (m >= 0) lomo__span_labels(*ids, tsp, n, spans, m, add_special, *labels);
    else if (n) memcpy(*labels, *ids, (size_t)n * sizeof(int32_t));
    LOMO_FREE(tsp);
    return n;
}

static int64_t lomo__chat_encode(const lomo_tokenizer *tk, int tpl, const lomo_chat_msg *msgs, int n,
                                 const char *where, int32_t **ids, int32_t **labels) {
    lomo__dbuf t = {NULL, 0, 0}, sp = {NULL, 0, 0};
    int k;
    int64_t r = -1;
    *ids = NULL; *labels = NULL;
    if (lomo__tpl_check(tk, tpl, where)) return -1;
    if ((k = lomo__chat_render(tpl, msgs, n, where, &t, &sp)) >= 0)
        r = lomo__encode_spans(tk, t.p, t.n, 0, (const int64_t *)sp.p, k, ids, labels);
    lomo__dbuf_free(&t); lomo__dbuf_free(&sp);
    return r;
}

LOMODEF int64_t lomo_chat_encode(const struct lomo_tokenizer *tk, const char *name, const lomo_chat_msg *msgs,
                                 int n, int32_t **ids, int32_t **labels) {
    int tpl = lomo__tpl_find(name);
    if (!ids || !labels) return lomo__fail("lomo_chat_encode: ids and labels are required");
    *ids = NULL; *labels = NULL;
    if (!tk) return lomo__fail("lomo_chat_encode: no tokenizer");
    if (tpl < 0)
        return lomo__fail("lomo_chat_encode: unknown chat template \"%.64s\" (built in: %s)", name ? name : "(null)",
                          lomo_chat_template_names());
    if (n < 0 || (n > 0 && !msgs)) return lomo__fail("lomo_chat_encode: %d messages at %p", n, (const void *)msgs);
    return lomo__chat_encode(tk, tpl, msgs, n, "lomo_chat_encode", ids, labels);
}

/* The messages of a {"messages": [...]} line, decoded (free with lomo__msgs_free). */
static int lomo__data_msgs(const lomo__json *j, int arr, const char *where, lomo_chat_msg **out, int *count) {
    char show[64], field[64];
    int c, k = 0;
    lomo_chat_msg *m;
    *out = NULL; *count = 0;
    if (!lomo__json_is(j, arr, LOMO__J_ARR))
        return lomo__fail("%s: messages must be an array of {\"role\", \"content\"} objects, found %s", where,
                          lomo__json_show(j, arr, show, sizeof show));
    if (!(m = (lomo_chat_msg *)LOMO_MALLOC(((size_t)j->nodes[arr].count + 1) * sizeof *m)))
        return lomo__fail("%s: out of memory", where);
    for (c = j->nodes[arr].first; c >= 0; c = j->nodes[c].next, k++) {
        m[k].role = m[k].content = NULL;
        *count = k + 1;
        if (!lomo__json_is(j, c, LOMO__J_OBJ)) {
            lomo__fail("%s: messages[%d] must be an object {\"role\", \"content\"}, found %s", where, k,
                       lomo__json_show(j, c, show, sizeof show));
            break;
        }
        if (lomo__json_get(j, c, "tool_calls") >= 0) {
            lomo__fail("%s: messages[%d] has tool_calls, which lomo's chat templates do not render", where, k);
            break;
        }
        snprintf(field, sizeof field, "messages[%d].role", k);
        if (!(m[k].role = lomo__json_strdup(j, lomo__json_get(j, c, "role"), where, field, NULL))) break;
        snprintf(field, sizeof field, "messages[%d].content", k);
        if (!(m[k].content = lomo__json_strdup(j, lomo__json_get(j, c, "content"), where, field, NULL))) break;
    }
    *out = m;
    return c >= 0 ? -1 : 0;
}

static void lomo__msgs_free(lomo_chat_msg *m, int n) {
    int i;
    for (i = 0; m && i < n; i++) { LOMO_FREE((void *)m[i].role); LOMO_FREE((void *)m[i].content); }
    LOMO_FREE(m);
}
#endif /* LOMO_NO_TOKENIZER */

/* JSON Lines formats: the keys that name each */
enum { LOMO__FMT_IDS = 1, LOMO__FMT_TEXT, LOMO__FMT_PC, LOMO__FMT_ALPACA, LOMO__FMT_CHAT };
static const char *const lomo__fmt_names[] = {"", "{\"input_ids\"}", "{\"text\"}", "{\"prompt\", \"completion\"}",
                                              "alpaca {\"instruction\", \"input\", \"output\"}", "{\"messages\"}"};

/* The format of the object at node 0, or -1 + error. input_ids wins over the
   other keys (which it always ignored); two text formats on one line are refused. */
static int lomo__data_format(const lomo__json *j, const char *where) {
    int has[6] = {0, 0, 0, 0, 0, 0}, f, found = 0, k = 0;
    has[LOMO__FMT_IDS] = lomo__json_get(j, 0, "input_ids") >= 0;
    has[LOMO__FMT_TEXT] = lomo__json_get(j, 0, "text") >= 0;
    has[LOMO__FMT_PC] = lomo__json_get(j, 0, "prompt") >= 0 && lomo__json_get(j, 0, "completion") >= 0;
    has[LOMO__FMT_ALPACA] = lomo__json_get(j, 0, "instruction") >= 0 && lomo__json_get(j, 0, "output") >= 0;
    has[LOMO__FMT_CHAT] = lomo__json_get(j, 0, "messages") >= 0;
    if (has[LOMO__FMT_IDS]) return LOMO__FMT_IDS;
    for (f = LOMO__FMT_TEXT; f <= LOMO__FMT_CHAT; f++)
        if (has[f]) { if (!found) found = f; else k = f; }
    if (k) return lomo__fail("%s: the line has the keys of two formats, %s and %s", where, lomo__fmt_names[found],
                             lomo__fmt_names[k]);
    if (found) return found;
    if (lomo__json_get(j, 0, "prompt") >= 0) return lomo__fail("%s: \"prompt\" without \"completion\"", where);
    if (lomo__json_get(j, 0, "instruction") >= 0) return lomo__fail("%s: \"instruction\" without \"output\"", where);
    return lomo__fail("%s: missing \"input_ids\" (or \"text\", \"prompt\" + \"completion\", \"messages\", "
                      "\"instruction\" + \"output\": the formats lomo_data_open reads)", where);
}

#ifndef LOMO_NO_TOKENIZER
/* Appends one example (ids, labels of n tokens) to the buffers: checked against
   the vocabulary, truncated to seq_len. */
static int lomo__data_add(lomo_data *d, const int32_t *ids, const int32_t *lab, int64_t n, const char *where,
                          lomo__dbuf *tok, lomo__dbuf *labs, lomo__dbuf *off) {
    int64_t i, keep = n < d->o.seq_len ? n : d->o.seq_len, end;
    for (i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= d->o.vocab_size) {
            const char *s = lomo_token_str((const lomo_tokenizer *)d->o.tokenizer, ids[i]);
            return lomo__fail("%s: token %lld is id %ld (\"%.40s\"), outside the vocabulary [0, %d): the tokenizer "
                              "does not fit the model", where, (long long)i, (long)ids[i], s ? s : "?",
                              d->o.vocab_size);
        }
    if (n == 0) return lomo__fail("%s: the text gives no tokens", where);
    if (n > keep) d->n_cut++;
    if (lomo__dbuf_add(tok, ids, (size_t)keep * sizeof(int32_t)) ||
        lomo__dbuf_add(labs, lab, (size_t)keep * sizeof(int32_t)))
        return lomo__fail("%s: out of memory", where);
    end = (int64_t)(tok->n / sizeof(int32_t));
    if (lomo__dbuf_add(off, &end, sizeof end)) return lomo__fail("%s: out of memory", where);
    return 0;
}

/* One line of a text format (LOMO__FMT_TEXT and on) into the example buffers. */
static int lomo__data_text_line(lomo_data *d, const lomo__json *j, int fmt, const char *where, lomo__dbuf *tok,
                                lomo__dbuf *lab, lomo__dbuf *off) {
    const lomo_tokenizer *tk = (const lomo_tokenizer *)d->o.tokenizer;
    char *a = NULL, *b = NULL, *c = NULL, *text = NULL;
    size_t na = 0, nb = 0, nc = 0, len = 0;
    int32_t *ids = NULL, *labels = NULL;
    int64_t n = -1, span[2];
    int rc = -1;
    if (fmt == LOMO__FMT_CHAT) {
        lomo_chat_msg *m;
        int k, tpl = lomo__tpl_find(d->o.chat_template);
        if (tpl < 0)
            return lomo__fail("%s: {\"messages\"} lines need a chat template: name one (built in: %s; llama_ft "
                              "--chat-template NAME)", where, lomo_chat_template_names());
        if (lomo__data_msgs(j, lomo__json_get(j, 0, "messages"), where, &m, &k) == 0)
            n = lomo__chat_encode(tk, tpl, m, k, where, &ids, &labels);
        lomo__msgs_free(m, k);
    } else if (fmt == LOMO__FMT_TEXT) {
        if ((a = lomo__json_strdup(j, lomo__json_get(j, 0, "text"), where, "text", &na)))
            n = lomo__encode_spans(tk, a, na, 1, NULL, -1, &ids, &labels);
    } else {   /* prompt + completion: the completion's tokens count */
        if (fmt == LOMO__FMT_PC) {
            if ((a = lomo__json_strdup(j, lomo__json_get(j, 0, "prompt"), where, "prompt", &na)) &&
                (c = lomo__json_strdup(j, lomo__json_get(j, 0, "completion"), where, "completion", &nc))) rc = 0;
        } else {
            int in = lomo__json_get(j, 0, "input");
            if ((a = lomo__json_strdup(j, lomo__json_get(j, 0, "instruction"), where, "instruction", &na)) &&
                (in < 0 || lomo__json_is(j, in, LOMO__J_NULL) ||
                 (b = lomo__json_strdup(j, in, where, "input", &nb))) &&
                (c = lomo__json_strdup(j, lomo__json_get(j, 0, "output"), where, "output", &nc))) rc = 0;
            if (!rc) {   /* the prompt, by the Stanford Alpaca template */
                char *p = (char *)LOMO_MALLOC(na + nb + 512);
                if (!p) rc = lomo__fail("%s: out of memory", where);
                else {
                    if (nb) snprintf(p, na + nb + 512, LOMO_ALPACA_PROMPT, a, b);
                    else snprintf(p, na + nb + 512, LOMO_ALPACA_PROMPT_NO_INPUT, a);
                    LOMO_FREE(a); a = p; na = strlen(p);
                }
            }
        }
        if (!rc && !(text = (char *)LOMO_MALLOC(na + nc + 1))) rc = lomo__fail("%s: out of memory", where);
        if (!rc) {
            memcpy(text, a, na); memcpy(text + na, c, nc); text[na + nc] = 0;
            len = na + nc;
            span[0] = (int64_t)na; span[1] = (int64_t)len;
            n = lomo__encode_spans(tk, text, len, 1, span, 1, &ids, &labels);
        }
        rc = -1;
    }
    if (n >= 0) rc = lomo__data_add(d, ids, labels, n, where, tok, lab, off);
    else if (!strstr(lomo_error(), where)) {   /* name the line in the tokenizer's message */
        char msg[sizeof lomo__errbuf];
        snprintf(msg, sizeof msg, "%s", lomo_error());
        lomo__fail("%s: %s", where, msg);
    }
    LOMO_FREE(a); LOMO_FREE(b); LOMO_FREE(c); LOMO_FREE(text); LOMO_FREE(ids); LOMO_FREE(labels);
    return rc;
}

/* A plain-text file: one document, cut into examples of seq_len tokens like a packed file. */
static int lomo__data_load_text(lomo_data *d, const char *path, const char *buf, size_t len) {
    int32_t *ids = NULL;
    int64_t n, i;
    if (!d->o.tokenizer)
        return lomo__fail("%s: plain text (*.txt) needs a tokenizer (lomo_data_opts.tokenizer; llama_ft: a --model "
                          "directory with tokenizer.json)", path);
    if (strlen(buf) != len || !lomo__utf8_valid(buf)) return lomo__fail("%s: not UTF-8 text", path);
    if ((n = lomo_tokenize((const lomo_tokenizer *)d->o.tokenizer, buf, len, 1, &ids, NULL)) < 0) {
        char msg[sizeof lomo__errbuf];
        snprintf(msg, sizeof msg, "%s", lomo_error());
        return lomo__fail("%s: %s", path, msg);
    }
    for (i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= d->o.vocab_size) {
            lomo__fail("%s: token %lld is id %ld, outside the vocabulary [0, %d): the tokenizer does not fit the "
                       "model", path, (long long)i, (long)ids[i], d->o.vocab_size);
            LOMO_FREE(ids);
            return -1;
        }
    if (n == 0) { LOMO_FREE(ids); return lomo__fail("%s: no examples (the text gives no tokens)", path); }
    d->tok = ids;
    d->n_tok = n;
    d->n = (n + d->o.seq_len - 1) / d->o.seq_len;
    return 0;
}
#endif /* LOMO_NO_TOKENIZER */

/* Parses one JSONL line (at `where`) into the example buffers. */
static int lomo__data_jsonl_line(lomo_data *d, const char *s, size_t n, const char *where,
                                 lomo__dbuf *tok, lomo__dbuf *lab, lomo__dbuf *off, int *any_labels,
                                 int *fmt, int64_t *fmt_line, int64_t line) {
    lomo__json j;
    char show[64];
    int ids, labs, rc = -1, f;
    int64_t len, keep, nl, end;
    int32_t *dt, *dl;
    if (lomo__json_parse(&j, s, n, where)) return -1;   /* "<file>:<line>: invalid JSON at byte N: ..." */
    if (!lomo__json_is(&j, 0, LOMO__J_OBJ)) {
        lomo__fail("%s: expected a JSON object {\"input_ids\": [...], \"labels\": [...]} (one per line), found %s",
                   where, lomo__json_show(&j, 0, show, sizeof show));
        goto done;
    }
    if ((f = lomo__data_format(&j, where)) < 0) goto done;
    if (*fmt && f != *fmt) {
        lomo__fail("%s: this line is %s but line %lld is %s: one format per file", where, lomo__fmt_names[f],
                   (long long)*fmt_line, lomo__fmt_names[*fmt]);
        goto done;
    }
    if (!*fmt) { *fmt = f; *fmt_line = line; }
    if (f != LOMO__FMT_IDS) {
#ifndef LOMO_NO_TOKENIZER
        if (!d->o.tokenizer)
            lomo__fail("%s: %s data needs a tokenizer (lomo_data_opts.tokenizer; llama_ft: a --model directory "
                       "with tokenizer.json)", where, lomo__fmt_names[f]);
        else if (!lomo__data_text_line(d, &j, f, where, tok, lab, off)) { *any_labels = 1; rc = 0; }
#else
        lomo__fail("%s: %s data needs the tokenizer, which this build leaves out (LOMO_NO_TOKENIZER)", where,
                   lomo__fmt_names[f]);
#endif
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
    if (len > keep) d->n_cut++;
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
    int any_labels = 0, fmt = 0;
    int64_t fmt_line = 0;
    char where[1100];
    int array = 0;
    if (lomo__dbuf_add(&off, &zero, sizeof zero)) { lomo__fail("%s: out of memory", path); goto fail; }
    while (pos < len && (buf[pos] == ' ' || buf[pos] == '\t' || buf[pos] == '\r' || buf[pos] == '\n')) pos++;
    if (pos < len && buf[pos] == '[' && lomo__data_suffix(path, ".json")) {
        /* one JSON array of the same objects (e.g. alpaca_data.json): each element as a line, named by
           the line it starts on */
        lomo__json arr;
        const char *lp = buf;
        int c;
        array = 1;
        if (lomo__json_parse(&arr, buf, len, path)) goto fail;
        line = 1;
        for (c = arr.nodes[0].first; c >= 0; c = arr.nodes[c].next) {
            const char *es = arr.nodes[c].s;
            size_t el = arr.nodes[c].len;
            if (arr.nodes[c].type == LOMO__J_STR) { es--; el += 2; }   /* with its quotes */
            for (; lp < es; lp++) line += *lp == '\n';
            snprintf(where, sizeof where, "%s:%lld", path, (long long)line);
            if (lomo__data_jsonl_line(d, es, el, where, &tok, &lab, &off, &any_labels, &fmt, &fmt_line, line)) {
                lomo__json_free(&arr);
                goto fail;
            }
        }
        lomo__json_free(&arr);
    }
    pos = array ? len : 0;
    while (lomo__data_line(buf, len, &pos, &s, &n)) {
        line++;
        if (lomo__data_blank(s, n)) continue;
        snprintf(where, sizeof where, "%s:%lld", path, (long long)line);
        if (lomo__data_jsonl_line(d, s, n, where, &tok, &lab, &off, &any_labels, &fmt, &fmt_line, line)) goto fail;
    }
    d->n = (int64_t)(off.n / sizeof(int64_t)) - 1;
    if (d->n == 0) {
        lomo__fail("%s: no examples (%s)", path, array ? "an empty JSON array" : len ? "only blank lines" : "empty file");
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
                          "name JSON Lines files *.jsonl or *.json, plain text *.txt)", path, len);
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
    if (o->chat_template && lomo__tpl_find(o->chat_template) < 0) {
        lomo__fail("lomo_data_open: unknown chat template \"%.64s\" (built in: %s)", o->chat_template,
                   lomo_chat_template_names());
        LOMO_FREE(d);
        return NULL;
    }
    if (lomo__read_file(path, &buf, &len)) { LOMO_FREE(d); return NULL; }   /* "<path>: cannot open: <strerror>" */
    if (lomo__data_suffix(path, ".jsonl") || lomo__data_suffix(path, ".json")) {
        rc = lomo__data_load_jsonl(d, path, buf, len);
        LOMO_FREE(buf);
    } else if (lomo__data_suffix(path, ".txt")) {
#ifndef LOMO_NO_TOKENIZER
        rc = lomo__data_load_text(d, path, buf, len);
#else
        rc = lomo__fail("%s: plain text (*.txt) needs the tokenizer, which this build leaves out (LOMO_NO_TOKENIZER)",
                        path);
#endif
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

/* Data parallelism: rank r's rows of a step of M x world x batch rows (see the declaration). */
static int lomo__slice_check(const char *fn, int seq_len, int batch, int micro_batches, int rank, int world) {
    if (world < 1 || rank < 0 || rank >= world)
        return lomo__fail("%s: rank %d of world %d: expected world >= 1 and rank in [0, world)", fn, rank, world);
    if (batch < 1 || micro_batches < 1 || seq_len < 1)
        return lomo__fail("%s: batch %d, micro_batches %d, seq_len %d: each must be >= 1", fn, batch, micro_batches,
                          seq_len);
    if ((int64_t)micro_batches * world * batch > 0x7fffffff)
        return lomo__fail("%s: %d micro-batches x %d ranks x %d rows = %lld rows per step: more than an int holds", fn,
                          micro_batches, world, batch, (long long)micro_batches * world * batch);
    return 0;
}

LOMODEF int lomo_batch_slice(int32_t *tokens, int32_t *labels, int seq_len, int batch, int micro_batches, int rank,
                             int world) {
    size_t row = (size_t)seq_len, n;
    int j;
    if (lomo__slice_check("lomo_batch_slice", seq_len, batch, micro_batches, rank, world)) return -1;
    if (!tokens) return lomo__fail("lomo_batch_slice: tokens are required");
    n = (size_t)batch * row;   /* one rank's micro-batch, in ints (the whole step fits memory the caller has) */
    for (j = 0; j < micro_batches; j++) {   /* destination rows j B never pass the source rows (j world + r) B */
        size_t src = ((size_t)j * (size_t)world + (size_t)rank) * n, dst = (size_t)j * n;
        if (src == dst) continue;
        memmove(tokens + dst, tokens + src, n * sizeof(int32_t));
        if (labels) memmove(labels + dst, labels + src, n * sizeof(int32_t));
    }
    return 0;
}

LOMODEF int lomo_data_next_rank(lomo_data *d, int batch, int micro_batches, int rank, int world, int32_t *tokens,
                                int32_t *labels) {
    int rows;
    if (!d || !tokens) return lomo__fail("lomo_data_next_rank: data and tokens are required");
    if (lomo__slice_check("lomo_data_next_rank", d->o.seq_len, batch, micro_batches, rank, world)) return -1;
    if ((rows = lomo_data_next(d, micro_batches * world * batch, tokens, labels)) < 0) return -1;
    return lomo_batch_slice(tokens, labels, d->o.seq_len, batch, micro_batches, rank, world) ? -1 : rows;
}

#endif /* LOMO_NO_DATA: section 10 */

/* ======================================================================== */
/* 11. multiple choice: JSONL items (LOMO_NO_MC)                            */
/* ======================================================================== */

#ifndef LOMO_NO_MC   /* section 11 */

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

#endif /* LOMO_NO_MC: section 11 */

/* ======================================================================== */
/* 12. tokenizer: tokenizer.json, encode / decode (LOMO_NO_TOKENIZER)       */
/* ======================================================================== */

/* Hugging Face `tokenizers` semantics, re-implemented: added tokens split out
   (leftmost-longest, non-normalized ones on the raw text, normalized ones on
   the normalized text), normalizers, pre-tokenizers, the BPE model (merges by
   rank through a binary heap, as tokenizers' Word::merge_all, plus a word ->
   ids cache), the post-processor and the decoders. Text carries, per byte, the
   byte range of the input it came from (tokenizers' alignments), which gives
   the spans. The split regexes are matched by hand-written matchers for the
   exact pattern strings of GPT-2, Llama 3 and Qwen2; any other pattern, and
   any component not listed in the doc block, is refused by name. */
#ifndef LOMO_NO_TOKENIZER

/* BEGIN generated Unicode tables */
/* Unicode 16.0.0 (unicodedata2) categories; normalization data as tokenizers' NFC/NFD know it
   (Unicode 9.0); made by tools/gen_unicode_tables.py */
static const uint32_t lomo__u_L[] = {
    0x41,0x5a,0x61,0x7a,0xaa,0xaa,0xb5,0xb5,0xba,0xba,
    0xc0,0xd6,0xd8,0xf6,0xf8,0x2c1,0x2c6,0x2d1,0x2e0,0x2e4,
    0x2ec,0x2ec,0x2ee,0x2ee,0x370,0x374,0x376,0x377,0x37a,0x37d,
    0x37f,0x37f,0x386,0x386,0x388,0x38a,0x38c,0x38c,0x38e,0x3a1,
    0x3a3,0x3f5,0x3f7,0x481,0x48a,0x52f,0x531,0x556,0x559,0x559,
    0x560,0x588,0x5d0,0x5ea,0x5ef,0x5f2,0x620,0x64a,0x66e,0x66f,
    0x671,0x6d3,0x6d5,0x6d5,0x6e5,0x6e6,0x6ee,0x6ef,0x6fa,0x6fc,
    0x6ff,0x6ff,0x710,0x710,0x712,0x72f,0x74d,0x7a5,0x7b1,0x7b1,
    0x7ca,0x7ea,0x7f4,0x7f5,0x7fa,0x7fa,0x800,0x815,0x81a,0x81a,
    0x824,0x824,0x828,0x828,0x840,0x858,0x860,0x86a,0x870,0x887,
    0x889,0x88e,0x8a0,0x8c9,0x904,0x939,0x93d,0x93d,0x950,0x950,
    0x958,0x961,0x971,0x980,0x985,0x98c,0x98f,0x990,0x993,0x9a8,
    0x9aa,0x9b0,0x9b2,0x9b2,0x9b6,0x9b9,0x9bd,0x9bd,0x9ce,0x9ce,
    0x9dc,0x9dd,0x9df,0x9e1,0x9f0,0x9f1,0x9fc,0x9fc,0xa05,0xa0a,
    0xa0f,0xa10,0xa13,0xa28,0xa2a,0xa30,0xa32,0xa33,0xa35,0xa36,
    0xa38,0xa39,0xa59,0xa5c,0xa5e,0xa5e,0xa72,0xa74,0xa85,0xa8d,
    0xa8f,0xa91,0xa93,0xaa8,0xaaa,0xab0,0xab2,0xab3,0xab5,0xab9,
    0xabd,0xabd,0xad0,0xad0,0xae0,0xae1,0xaf9,0xaf9,0xb05,0xb0c,
    0xb0f,0xb10,0xb13,0xb28,0xb2a,0xb30,0xb32,0xb33,0xb35,0xb39,
    0xb3d,0xb3d,0xb5c,0xb5d,0xb5f,0xb61,0xb71,0xb71,0xb83,0xb83,
    0xb85,0xb8a,0xb8e,0xb90,0xb92,0xb95,0xb99,0xb9a,0xb9c,0xb9c,
    0xb9e,0xb9f,0xba3,0xba4,0xba8,0xbaa,0xbae,0xbb9,0xbd0,0xbd0,
    0xc05,0xc0c,0xc0e,0xc10,0xc12,0xc28,0xc2a,0xc39,0xc3d,0xc3d,
    0xc58,0xc5a,0xc5d,0xc5d,0xc60,0xc61,0xc80,0xc80,0xc85,0xc8c,
    0xc8e,0xc90,0xc92,0xca8,0xcaa,0xcb3,0xcb5,0xcb9,0xcbd,0xcbd,
    0xcdd,0xcde,0xce0,0xce1,0xcf1,0xcf2,0xd04,0xd0c,0xd0e,0xd10,
    0xd12,0xd3a,0xd3d,0xd3d,0xd4e,0xd4e,0xd54,0xd56,0xd5f,0xd61,
    0xd7a,0xd7f,0xd85,0xd96,0xd9a,0xdb1,0xdb3,0xdbb,0xdbd,0xdbd,
    0xdc0,0xdc6,0xe01,0xe30,0xe32,0xe33,0xe40,0xe46,0xe81,0xe82,
    0xe84,0xe84,0xe86,0xe8a,0xe8c,0xea3,0xea5,0xea5,0xea7,0xeb0,
    0xeb2,0xeb3,0xebd,0xebd,0xec0,0xec4,0xec6,0xec6,0xedc,0xedf,
    0xf00,0xf00,0xf40,0xf47,0xf49,0xf6c,0xf88,0xf8c,0x1000,0x102a,
    0x103f,0x103f,0x1050,0x1055,0x105a,0x105d,0x1061,0x1061,0x1065,0x1066,
    0x106e,0x1070,0x1075,0x1081,0x108e,0x108e,0x10a0,0x10c5,0x10c7,0x10c7,
    0x10cd,0x10cd,0x10d0,0x10fa,0x10fc,0x1248,0x124a,0x124d,0x1250,0x1256,
    0x1258,0x1258,0x125a,0x125d,0x1260,0x1288,0x128a,0x128d,0x1290,0x12b0,
    0x12b2,0x12b5,0x12b8,0x12be,0x12c0,0x12c0,0x12c2,0x12c5,0x12c8,0x12d6,
    0x12d8,0x1310,0x1312,0x1315,0x1318,0x135a,0x1380,0x138f,0x13a0,0x13f5,
    0x13f8,0x13fd,0x1401,0x166c,0x166f,0x167f,0x1681,0x169a,0x16a0,0x16ea,
    0x16f1,0x16f8,0x1700,0x1711,0x171f,0x1731,0x1740,0x1751,0x1760,0x176c,
    0x176e,0x1770,0x1780,0x17b3,0x17d7,0x17d7,0x17dc,0x17dc,0x1820,0x1878,
    0x1880,0x1884,0x1887,0x18a8,0x18aa,0x18aa,0x18b0,0x18f5,0x1900,0x191e,
    0x1950,0x196d,0x1970,0x1974,0x1980,0x19ab,0x19b0,0x19c9,0x1a00,0x1a16,
    0x1a20,0x1a54,0x1aa7,0x1aa7,0x1b05,0x1b33,0x1b45,0x1b4c,0x1b83,0x1ba0,
    0x1bae,0x1baf,0x1bba,0x1be5,0x1c00,0x1c23,0x1c4d,0x1c4f,0x1c5a,0x1c7d,
    0x1c80,0x1c8a,0x1c90,0x1cba,0x1cbd,0x1cbf,0x1ce9,0x1cec,0x1cee,0x1cf3,
    0x1cf5,0x1cf6,0x1cfa,0x1cfa,0x1d00,0x1dbf,0x1e00,0x1f15,0x1f18,0x1f1d,
    0x1f20,0x1f45,0x1f48,0x1f4d,0x1f50,0x1f57,0x1f59,0x1f59,0x1f5b,0x1f5b,
    0x1f5d,0x1f5d,0x1f5f,0x1f7d,0x1f80,0x1fb4,0x1fb6,0x1fbc,0x1fbe,0x1fbe,
    0x1fc2,0x1fc4,0x1fc6,0x1fcc,0x1fd0,0x1fd3,0x1fd6,0x1fdb,0x1fe0,0x1fec,
    0x1ff2,0x1ff4,0x1ff6,0x1ffc,0x2071,0x2071,0x207f,0x207f,0x2090,0x209c,
    0x2102,0x2102,0x2107,0x2107,0x210a,0x2113,0x2115,0x2115,0x2119,0x211d,
    0x2124,0x2124,0x2126,0x2126,0x2128,0x2128,0x212a,0x212d,0x212f,0x2139,
    0x213c,0x213f,0x2145,0x2149,0x214e,0x214e,0x2183,0x2184,0x2c00,0x2ce4,
    0x2ceb,0x2cee,0x2cf2,0x2cf3,0x2d00,0x2d25,0x2d27,0x2d27,0x2d2d,0x2d2d,
    0x2d30,0x2d67,0x2d6f,0x2d6f,0x2d80,0x2d96,0x2da0,0x2da6,0x2da8,0x2dae,
    0x2db0,0x2db6,0x2db8,0x2dbe,0x2dc0,0x2dc6,0x2dc8,0x2dce,0x2dd0,0x2dd6,
    0x2dd8,0x2dde,0x2e2f,0x2e2f,0x3005,0x3006,0x3031,0x3035,0x303b,0x303c,
    0x3041,0x3096,0x309d,0x309f,0x30a1,0x30fa,0x30fc,0x30ff,0x3105,0x312f,
    0x3131,0x318e,0x31a0,0x31bf,0x31f0,0x31ff,0x3400,0x4dbf,0x4e00,0xa48c,
    0xa4d0,0xa4fd,0xa500,0xa60c,0xa610,0xa61f,0xa62a,0xa62b,0xa640,0xa66e,
    0xa67f,0xa69d,0xa6a0,0xa6e5,0xa717,0xa71f,0xa722,0xa788,0xa78b,0xa7cd,
    0xa7d0,0xa7d1,0xa7d3,0xa7d3,0xa7d5,0xa7dc,0xa7f2,0xa801,0xa803,0xa805,
    0xa807,0xa80a,0xa80c,0xa822,0xa840,0xa873,0xa882,0xa8b3,0xa8f2,0xa8f7,
    0xa8fb,0xa8fb,0xa8fd,0xa8fe,0xa90a,0xa925,0xa930,0xa946,0xa960,0xa97c,
    0xa984,0xa9b2,0xa9cf,0xa9cf,0xa9e0,0xa9e4,0xa9e6,0xa9ef,0xa9fa,0xa9fe,
    0xaa00,0xaa28,0xaa40,0xaa42,0xaa44,0xaa4b,0xaa60,0xaa76,0xaa7a,0xaa7a,
    0xaa7e,0xaaaf,0xaab1,0xaab1,0xaab5,0xaab6,0xaab9,0xaabd,0xaac0,0xaac0,
    0xaac2,0xaac2,0xaadb,0xaadd,0xaae0,0xaaea,0xaaf2,0xaaf4,0xab01,0xab06,
    0xab09,0xab0e,0xab11,0xab16,0xab20,0xab26,0xab28,0xab2e,0xab30,0xab5a,
    0xab5c,0xab69,0xab70,0xabe2,0xac00,0xd7a3,0xd7b0,0xd7c6,0xd7cb,0xd7fb,
    0xf900,0xfa6d,0xfa70,0xfad9,0xfb00,0xfb06,0xfb13,0xfb17,0xfb1d,0xfb1d,
    0xfb1f,0xfb28,0xfb2a,0xfb36,0xfb38,0xfb3c,0xfb3e,0xfb3e,0xfb40,0xfb41,
    0xfb43,0xfb44,0xfb46,0xfbb1,0xfbd3,0xfd3d,0xfd50,0xfd8f,0xfd92,0xfdc7,
    0xfdf0,0xfdfb,0xfe70,0xfe74,0xfe76,0xfefc,0xff21,0xff3a,0xff41,0xff5a,
    0xff66,0xffbe,0xffc2,0xffc7,0xffca,0xffcf,0xffd2,0xffd7,0xffda,0xffdc,
    0x10000,0x1000b,0x1000d,0x10026,0x10028,0x1003a,0x1003c,0x1003d,0x1003f,0x1004d,
    0x10050,0x1005d,0x10080,0x100fa,0x10280,0x1029c,0x102a0,0x102d0,0x10300,0x1031f,
    0x1032d,0x10340,0x10342,0x10349,0x10350,0x10375,0x10380,0x1039d,0x103a0,0x103c3,
    0x103c8,0x103cf,0x10400,0x1049d,0x104b0,0x104d3,0x104d8,0x104fb,0x10500,0x10527,
    0x10530,0x10563,0x10570,0x1057a,0x1057c,0x1058a,0x1058c,0x10592,0x10594,0x10595,
    0x10597,0x105a1,0x105a3,0x105b1,0x105b3,0x105b9,0x105bb,0x105bc,0x105c0,0x105f3,
    0x10600,0x10736,0x10740,0x10755,0x10760,0x10767,0x10780,0x10785,0x10787,0x107b0,
    0x107b2,0x107ba,0x10800,0x10805,0x10808,0x10808,0x1080a,0x10835,0x10837,0x10838,
    0x1083c,0x1083c,0x1083f,0x10855,0x10860,0x10876,0x10880,0x1089e,0x108e0,0x108f2,
    0x108f4,0x108f5,0x10900,0x10915,0x10920,0x10939,0x10980,0x109b7,0x109be,0x109bf,
    0x10a00,0x10a00,0x10a10,0x10a13,0x10a15,0x10a17,0x10a19,0x10a35,0x10a60,0x10a7c,
    0x10a80,0x10a9c,0x10ac0,0x10ac7,0x10ac9,0x10ae4,0x10b00,0x10b35,0x10b40,0x10b55,
    0x10b60,0x10b72,0x10b80,0x10b91,0x10c00,0x10c48,0x10c80,0x10cb2,0x10cc0,0x10cf2,
    0x10d00,0x10d23,0x10d4a,0x10d65,0x10d6f,0x10d85,0x10e80,0x10ea9,0x10eb0,0x10eb1,
    0x10ec2,0x10ec4,0x10f00,0x10f1c,0x10f27,0x10f27,0x10f30,0x10f45,0x10f70,0x10f81,
    0x10fb0,0x10fc4,0x10fe0,0x10ff6,0x11003,0x11037,0x11071,0x11072,0x11075,0x11075,
    0x11083,0x110af,0x110d0,0x110e8,0x11103,0x11126,0x11144,0x11144,0x11147,0x11147,
    0x11150,0x11172,0x11176,0x11176,0x11183,0x111b2,0x111c1,0x111c4,0x111da,0x111da,
    0x111dc,0x111dc,0x11200,0x11211,0x11213,0x1122b,0x1123f,0x11240,0x11280,0x11286,
    0x11288,0x11288,0x1128a,0x1128d,0x1128f,0x1129d,0x1129f,0x112a8,0x112b0,0x112de,
    0x11305,0x1130c,0x1130f,0x11310,0x11313,0x11328,0x1132a,0x11330,0x11332,0x11333,
    0x11335,0x11339,0x1133d,0x1133d,0x11350,0x11350,0x1135d,0x11361,0x11380,0x11389,
    0x1138b,0x1138b,0x1138e,0x1138e,0x11390,0x113b5,0x113b7,0x113b7,0x113d1,0x113d1,
    0x113d3,0x113d3,0x11400,0x11434,0x11447,0x1144a,0x1145f,0x11461,0x11480,0x114af,
    0x114c4,0x114c5,0x114c7,0x114c7,0x11580,0x115ae,0x115d8,0x115db,0x11600,0x1162f,
    0x11644,0x11644,0x11680,0x116aa,0x116b8,0x116b8,0x11700,0x1171a,0x11740,0x11746,
    0x11800,0x1182b,0x118a0,0x118df,0x118ff,0x11906,0x11909,0x11909,0x1190c,0x11913,
    0x11915,0x11916,0x11918,0x1192f,0x1193f,0x1193f,0x11941,0x11941,0x119a0,0x119a7,
    0x119aa,0x119d0,0x119e1,0x119e1,0x119e3,0x119e3,0x11a00,0x11a00,0x11a0b,0x11a32,
    0x11a3a,0x11a3a,0x11a50,0x11a50,0x11a5c,0x11a89,0x11a9d,0x11a9d,0x11ab0,0x11af8,
    0x11bc0,0x11be0,0x11c00,0x11c08,0x11c0a,0x11c2e,0x11c40,0x11c40,0x11c72,0x11c8f,
    0x11d00,0x11d06,0x11d08,0x11d09,0x11d0b,0x11d30,0x11d46,0x11d46,0x11d60,0x11d65,
    0x11d67,0x11d68,0x11d6a,0x11d89,0x11d98,0x11d98,0x11ee0,0x11ef2,0x11f02,0x11f02,
    0x11f04,0x11f10,0x11f12,0x11f33,0x11fb0,0x11fb0,0x12000,0x12399,0x12480,0x12543,
    0x12f90,0x12ff0,0x13000,0x1342f,0x13441,0x13446,0x13460,0x143fa,0x14400,0x14646,
    0x16100,0x1611d,0x16800,0x16a38,0x16a40,0x16a5e,0x16a70,0x16abe,0x16ad0,0x16aed,
    0x16b00,0x16b2f,0x16b40,0x16b43,0x16b63,0x16b77,0x16b7d,0x16b8f,0x16d40,0x16d6c,
    0x16e40,0x16e7f,0x16f00,0x16f4a,0x16f50,0x16f50,0x16f93,0x16f9f,0x16fe0,0x16fe1,
    0x16fe3,0x16fe3,0x17000,0x187f7,0x18800,0x18cd5,0x18cff,0x18d08,0x1aff0,0x1aff3,
    0x1aff5,0x1affb,0x1affd,0x1affe,0x1b000,0x1b122,0x1b132,0x1b132,0x1b150,0x1b152,
    0x1b155,0x1b155,0x1b164,0x1b167,0x1b170,0x1b2fb,0x1bc00,0x1bc6a,0x1bc70,0x1bc7c,
    0x1bc80,0x1bc88,0x1bc90,0x1bc99,0x1d400,0x1d454,0x1d456,0x1d49c,0x1d49e,0x1d49f,
    0x1d4a2,0x1d4a2,0x1d4a5,0x1d4a6,0x1d4a9,0x1d4ac,0x1d4ae,0x1d4b9,0x1d4bb,0x1d4bb,
    0x1d4bd,0x1d4c3,0x1d4c5,0x1d505,0x1d507,0x1d50a,0x1d50d,0x1d514,0x1d516,0x1d51c,
    0x1d51e,0x1d539,0x1d53b,0x1d53e,0x1d540,0x1d544,0x1d546,0x1d546,0x1d54a,0x1d550,
    0x1d552,0x1d6a5,0x1d6a8,0x1d6c0,0x1d6c2,0x1d6da,0x1d6dc,0x1d6fa,0x1d6fc,0x1d714,
    0x1d716,0x1d734,0x1d736,0x1d74e,0x1d750,0x1d76e,0x1d770,0x1d788,0x1d78a,0x1d7a8,
    0x1d7aa,0x1d7c2,0x1d7c4,0x1d7cb,0x1df00,0x1df1e,0x1df25,0x1df2a,0x1e030,0x1e06d,
    0x1e100,0x1e12c,0x1e137,0x1e13d,0x1e14e,0x1e14e,0x1e290,0x1e2ad,0x1e2c0,0x1e2eb,
    0x1e4d0,0x1e4eb,0x1e5d0,0x1e5ed,0x1e5f0,0x1e5f0,0x1e7e0,0x1e7e6,0x1e7e8,0x1e7eb,
    0x1e7ed,0x1e7ee,0x1e7f0,0x1e7fe,0x1e800,0x1e8c4,0x1e900,0x1e943,0x1e94b,0x1e94b,
    0x1ee00,0x1ee03,0x1ee05,0x1ee1f,0x1ee21,0x1ee22,0x1ee24,0x1ee24,0x1ee27,0x1ee27,
    0x1ee29,0x1ee32,0x1ee34,0x1ee37,0x1ee39,0x1ee39,0x1ee3b,0x1ee3b,0x1ee42,0x1ee42,
    0x1ee47,0x1ee47,0x1ee49,0x1ee49,0x1ee4b,0x1ee4b,0x1ee4d,0x1ee4f,0x1ee51,0x1ee52,
    0x1ee54,0x1ee54,0x1ee57,0x1ee57,0x1ee59,0x1ee59,0x1ee5b,0x1ee5b,0x1ee5d,0x1ee5d,
    0x1ee5f,0x1ee5f,0x1ee61,0x1ee62,0x1ee64,0x1ee64,0x1ee67,0x1ee6a,0x1ee6c,0x1ee72,
    0x1ee74,0x1ee77,0x1ee79,0x1ee7c,0x1ee7e,0x1ee7e,0x1ee80,0x1ee89,0x1ee8b,0x1ee9b,
    0x1eea1,0x1eea3,0x1eea5,0x1eea9,0x1eeab,0x1eebb,0x20000,0x2a6df,0x2a700,0x2b739,
    0x2b740,0x2b81d,0x2b820,0x2cea1,0x2ceb0,0x2ebe0,0x2ebf0,0x2ee5d,0x2f800,0x2fa1d,
    0x30000,0x3134a,0x31350,0x323af,
};
static const uint32_t lomo__u_N[] = {
    0x30,0x39,0xb2,0xb3,0xb9,0xb9,0xbc,0xbe,0x660,0x669,
    0x6f0,0x6f9,0x7c0,0x7c9,0x966,0x96f,0x9e6,0x9ef,0x9f4,0x9f9,
    0xa66,0xa6f,0xae6,0xaef,0xb66,0xb6f,0xb72,0xb77,0xbe6,0xbf2,
    0xc66,0xc6f,0xc78,0xc7e,0xce6,0xcef,0xd58,0xd5e,0xd66,0xd78,
    0xde6,0xdef,0xe50,0xe59,0xed0,0xed9,0xf20,0xf33,0x1040,0x1049,
    0x1090,0x1099,0x1369,0x137c,0x16ee,0x16f0,0x17e0,0x17e9,0x17f0,0x17f9,
    0x1810,0x1819,0x1946,0x194f,0x19d0,0x19da,0x1a80,0x1a89,0x1a90,0x1a99,
    0x1b50,0x1b59,0x1bb0,0x1bb9,0x1c40,0x1c49,0x1c50,0x1c59,0x2070,0x2070,
    0x2074,0x2079,0x2080,0x2089,0x2150,0x2182,0x2185,0x2189,0x2460,0x249b,
    0x24ea,0x24ff,0x2776,0x2793,0x2cfd,0x2cfd,0x3007,0x3007,0x3021,0x3029,
    0x3038,0x303a,0x3192,0x3195,0x3220,0x3229,0x3248,0x324f,0x3251,0x325f,
    0x3280,0x3289,0x32b1,0x32bf,0xa620,0xa629,0xa6e6,0xa6ef,0xa830,0xa835,
    0xa8d0,0xa8d9,0xa900,0xa909,0xa9d0,0xa9d9,0xa9f0,0xa9f9,0xaa50,0xaa59,
    0xabf0,0xabf9,0xff10,0xff19,0x10107,0x10133,0x10140,0x10178,0x1018a,0x1018b,
    0x102e1,0x102fb,0x10320,0x10323,0x10341,0x10341,0x1034a,0x1034a,0x103d1,0x103d5,
    0x104a0,0x104a9,0x10858,0x1085f,0x10879,0x1087f,0x108a7,0x108af,0x108fb,0x108ff,
    0x10916,0x1091b,0x109bc,0x109bd,0x109c0,0x109cf,0x109d2,0x109ff,0x10a40,0x10a48,
    0x10a7d,0x10a7e,0x10a9d,0x10a9f,0x10aeb,0x10aef,0x10b58,0x10b5f,0x10b78,0x10b7f,
    0x10ba9,0x10baf,0x10cfa,0x10cff,0x10d30,0x10d39,0x10d40,0x10d49,0x10e60,0x10e7e,
    0x10f1d,0x10f26,0x10f51,0x10f54,0x10fc5,0x10fcb,0x11052,0x1106f,0x110f0,0x110f9,
    0x11136,0x1113f,0x111d0,0x111d9,0x111e1,0x111f4,0x112f0,0x112f9,0x11450,0x11459,
    0x114d0,0x114d9,0x11650,0x11659,0x116c0,0x116c9,0x116d0,0x116e3,0x11730,0x1173b,
    0x118e0,0x118f2,0x11950,0x11959,0x11bf0,0x11bf9,0x11c50,0x11c6c,0x11d50,0x11d59,
    0x11da0,0x11da9,0x11f50,0x11f59,0x11fc0,0x11fd4,0x12400,0x1246e,0x16130,0x16139,
    0x16a60,0x16a69,0x16ac0,0x16ac9,0x16b50,0x16b59,0x16b5b,0x16b61,0x16d70,0x16d79,
    0x16e80,0x16e96,0x1ccf0,0x1ccf9,0x1d2c0,0x1d2d3,0x1d2e0,0x1d2f3,0x1d360,0x1d378,
    0x1d7ce,0x1d7ff,0x1e140,0x1e149,0x1e2f0,0x1e2f9,0x1e4f0,0x1e4f9,0x1e5f1,0x1e5fa,
    0x1e8c7,0x1e8cf,0x1e950,0x1e959,0x1ec71,0x1ecab,0x1ecad,0x1ecaf,0x1ecb1,0x1ecb4,
    0x1ed01,0x1ed2d,0x1ed2f,0x1ed3d,0x1f100,0x1f10c,0x1fbf0,0x1fbf9,
};
static const uint32_t lomo__u_W[] = {
    0x30,0x39,0x41,0x5a,0x5f,0x5f,0x61,0x7a,0xaa,0xaa,
    0xb5,0xb5,0xba,0xba,0xc0,0xd6,0xd8,0xf6,0xf8,0x2c1,
    0x2c6,0x2d1,0x2e0,0x2e4,0x2ec,0x2ec,0x2ee,0x2ee,0x300,0x374,
    0x376,0x377,0x37a,0x37d,0x37f,0x37f,0x386,0x386,0x388,0x38a,
    0x38c,0x38c,0x38e,0x3a1,0x3a3,0x3f5,0x3f7,0x481,0x483,0x52f,
    0x531,0x556,0x559,0x559,0x560,0x588,0x591,0x5bd,0x5bf,0x5bf,
    0x5c1,0x5c2,0x5c4,0x5c5,0x5c7,0x5c7,0x5d0,0x5ea,0x5ef,0x5f2,
    0x610,0x61a,0x620,0x669,0x66e,0x6d3,0x6d5,0x6dc,0x6df,0x6e8,
    0x6ea,0x6fc,0x6ff,0x6ff,0x710,0x74a,0x74d,0x7b1,0x7c0,0x7f5,
    0x7fa,0x7fa,0x7fd,0x7fd,0x800,0x82d,0x840,0x85b,0x860,0x86a,
    0x870,0x887,0x889,0x88e,0x897,0x8e1,0x8e3,0x963,0x966,0x96f,
    0x971,0x983,0x985,0x98c,0x98f,0x990,0x993,0x9a8,0x9aa,0x9b0,
    0x9b2,0x9b2,0x9b6,0x9b9,0x9bc,0x9c4,0x9c7,0x9c8,0x9cb,0x9ce,
    0x9d7,0x9d7,0x9dc,0x9dd,0x9df,0x9e3,0x9e6,0x9f1,0x9fc,0x9fc,
    0x9fe,0x9fe,0xa01,0xa03,0xa05,0xa0a,0xa0f,0xa10,0xa13,0xa28,
    0xa2a,0xa30,0xa32,0xa33,0xa35,0xa36,0xa38,0xa39,0xa3c,0xa3c,
    0xa3e,0xa42,0xa47,0xa48,0xa4b,0xa4d,0xa51,0xa51,0xa59,0xa5c,
    0xa5e,0xa5e,0xa66,0xa75,0xa81,0xa83,0xa85,0xa8d,0xa8f,0xa91,
    0xa93,0xaa8,0xaaa,0xab0,0xab2,0xab3,0xab5,0xab9,0xabc,0xac5,
    0xac7,0xac9,0xacb,0xacd,0xad0,0xad0,0xae0,0xae3,0xae6,0xaef,
    0xaf9,0xaff,0xb01,0xb03,0xb05,0xb0c,0xb0f,0xb10,0xb13,0xb28,
    0xb2a,0xb30,0xb32,0xb33,0xb35,0xb39,0xb3c,0xb44,0xb47,0xb48,
    0xb4b,0xb4d,0xb55,0xb57,0xb5c,0xb5d,0xb5f,0xb63,0xb66,0xb6f,
    0xb71,0xb71,0xb82,0xb83,0xb85,0xb8a,0xb8e,0xb90,0xb92,0xb95,
    0xb99,0xb9a,0xb9c,0xb9c,0xb9e,0xb9f,0xba3,0xba4,0xba8,0xbaa,
    0xbae,0xbb9,0xbbe,0xbc2,0xbc6,0xbc8,0xbca,0xbcd,0xbd0,0xbd0,
    0xbd7,0xbd7,0xbe6,0xbef,0xc00,0xc0c,0xc0e,0xc10,0xc12,0xc28,
    0xc2a,0xc39,0xc3c,0xc44,0xc46,0xc48,0xc4a,0xc4d,0xc55,0xc56,
    0xc58,0xc5a,0xc5d,0xc5d,0xc60,0xc63,0xc66,0xc6f,0xc80,0xc83,
    0xc85,0xc8c,0xc8e,0xc90,0xc92,0xca8,0xcaa,0xcb3,0xcb5,0xcb9,
    0xcbc,0xcc4,0xcc6,0xcc8,0xcca,0xccd,0xcd5,0xcd6,0xcdd,0xcde,
    0xce0,0xce3,0xce6,0xcef,0xcf1,0xcf3,0xd00,0xd0c,0xd0e,0xd10,
    0xd12,0xd44,0xd46,0xd48,0xd4a,0xd4e,0xd54,0xd57,0xd5f,0xd63,
    0xd66,0xd6f,0xd7a,0xd7f,0xd81,0xd83,0xd85,0xd96,0xd9a,0xdb1,
    0xdb3,0xdbb,0xdbd,0xdbd,0xdc0,0xdc6,0xdca,0xdca,0xdcf,0xdd4,
    0xdd6,0xdd6,0xdd8,0xddf,0xde6,0xdef,0xdf2,0xdf3,0xe01,0xe3a,
    0xe40,0xe4e,0xe50,0xe59,0xe81,0xe82,0xe84,0xe84,0xe86,0xe8a,
    0xe8c,0xea3,0xea5,0xea5,0xea7,0xebd,0xec0,0xec4,0xec6,0xec6,
    0xec8,0xece,0xed0,0xed9,0xedc,0xedf,0xf00,0xf00,0xf18,0xf19,
    0xf20,0xf29,0xf35,0xf35,0xf37,0xf37,0xf39,0xf39,0xf3e,0xf47,
    0xf49,0xf6c,0xf71,0xf84,0xf86,0xf97,0xf99,0xfbc,0xfc6,0xfc6,
    0x1000,0x1049,0x1050,0x109d,0x10a0,0x10c5,0x10c7,0x10c7,0x10cd,0x10cd,
    0x10d0,0x10fa,0x10fc,0x1248,0x124a,0x124d,0x1250,0x1256,0x1258,0x1258,
    0x125a,0x125d,0x1260,0x1288,0x128a,0x128d,0x1290,0x12b0,0x12b2,0x12b5,
    0x12b8,0x12be,0x12c0,0x12c0,0x12c2,0x12c5,0x12c8,0x12d6,0x12d8,0x1310,
    0x1312,0x1315,0x1318,0x135a,0x135d,0x135f,0x1380,0x138f,0x13a0,0x13f5,
    0x13f8,0x13fd,0x1401,0x166c,0x166f,0x167f,0x1681,0x169a,0x16a0,0x16ea,
    0x16ee,0x16f8,0x1700,0x1715,0x171f,0x1734,0x1740,0x1753,0x1760,0x176c,
    0x176e,0x1770,0x1772,0x1773,0x1780,0x17d3,0x17d7,0x17d7,0x17dc,0x17dd,
    0x17e0,0x17e9,0x180b,0x180d,0x180f,0x1819,0x1820,0x1878,0x1880,0x18aa,
    0x18b0,0x18f5,0x1900,0x191e,0x1920,0x192b,0x1930,0x193b,0x1946,0x196d,
    0x1970,0x1974,0x1980,0x19ab,0x19b0,0x19c9,0x19d0,0x19d9,0x1a00,0x1a1b,
    0x1a20,0x1a5e,0x1a60,0x1a7c,0x1a7f,0x1a89,0x1a90,0x1a99,0x1aa7,0x1aa7,
    0x1ab0,0x1ace,0x1b00,0x1b4c,0x1b50,0x1b59,0x1b6b,0x1b73,0x1b80,0x1bf3,
    0x1c00,0x1c37,0x1c40,0x1c49,0x1c4d,0x1c7d,0x1c80,0x1c8a,0x1c90,0x1cba,
    0x1cbd,0x1cbf,0x1cd0,0x1cd2,0x1cd4,0x1cfa,0x1d00,0x1f15,0x1f18,0x1f1d,
    0x1f20,0x1f45,0x1f48,0x1f4d,0x1f50,0x1f57,0x1f59,0x1f59,0x1f5b,0x1f5b,
    0x1f5d,0x1f5d,0x1f5f,0x1f7d,0x1f80,0x1fb4,0x1fb6,0x1fbc,0x1fbe,0x1fbe,
    0x1fc2,0x1fc4,0x1fc6,0x1fcc,0x1fd0,0x1fd3,0x1fd6,0x1fdb,0x1fe0,0x1fec,
    0x1ff2,0x1ff4,0x1ff6,0x1ffc,0x200c,0x200d,0x203f,0x2040,0x2054,0x2054,
    0x2071,0x2071,0x207f,0x207f,0x2090,0x209c,0x20d0,0x20f0,0x2102,0x2102,
    0x2107,0x2107,0x210a,0x2113,0x2115,0x2115,0x2119,0x211d,0x2124,0x2124,
    0x2126,0x2126,0x2128,0x2128,0x212a,0x212d,0x212f,0x2139,0x213c,0x213f,
    0x2145,0x2149,0x214e,0x214e,0x2160,0x2188,0x24b6,0x24e9,0x2c00,0x2ce4,
    0x2ceb,0x2cf3,0x2d00,0x2d25,0x2d27,0x2d27,0x2d2d,0x2d2d,0x2d30,0x2d67,
    0x2d6f,0x2d6f,0x2d7f,0x2d96,0x2da0,0x2da6,0x2da8,0x2dae,0x2db0,0x2db6,
    0x2db8,0x2dbe,0x2dc0,0x2dc6,0x2dc8,0x2dce,0x2dd0,0x2dd6,0x2dd8,0x2dde,
    0x2de0,0x2dff,0x2e2f,0x2e2f,0x3005,0x3007,0x3021,0x302f,0x3031,0x3035,
    0x3038,0x303c,0x3041,0x3096,0x3099,0x309a,0x309d,0x309f,0x30a1,0x30fa,
    0x30fc,0x30ff,0x3105,0x312f,0x3131,0x318e,0x31a0,0x31bf,0x31f0,0x31ff,
    0x3400,0x4dbf,0x4e00,0xa48c,0xa4d0,0xa4fd,0xa500,0xa60c,0xa610,0xa62b,
    0xa640,0xa672,0xa674,0xa67d,0xa67f,0xa6f1,0xa717,0xa71f,0xa722,0xa788,
    0xa78b,0xa7cd,0xa7d0,0xa7d1,0xa7d3,0xa7d3,0xa7d5,0xa7dc,0xa7f2,0xa827,
    0xa82c,0xa82c,0xa840,0xa873,0xa880,0xa8c5,0xa8d0,0xa8d9,0xa8e0,0xa8f7,
    0xa8fb,0xa8fb,0xa8fd,0xa92d,0xa930,0xa953,0xa960,0xa97c,0xa980,0xa9c0,
    0xa9cf,0xa9d9,0xa9e0,0xa9fe,0xaa00,0xaa36,0xaa40,0xaa4d,0xaa50,0xaa59,
    0xaa60,0xaa76,0xaa7a,0xaac2,0xaadb,0xaadd,0xaae0,0xaaef,0xaaf2,0xaaf6,
    0xab01,0xab06,0xab09,0xab0e,0xab11,0xab16,0xab20,0xab26,0xab28,0xab2e,
    0xab30,0xab5a,0xab5c,0xab69,0xab70,0xabea,0xabec,0xabed,0xabf0,0xabf9,
    0xac00,0xd7a3,0xd7b0,0xd7c6,0xd7cb,0xd7fb,0xf900,0xfa6d,0xfa70,0xfad9,
    0xfb00,0xfb06,0xfb13,0xfb17,0xfb1d,0xfb28,0xfb2a,0xfb36,0xfb38,0xfb3c,
    0xfb3e,0xfb3e,0xfb40,0xfb41,0xfb43,0xfb44,0xfb46,0xfbb1,0xfbd3,0xfd3d,
    0xfd50,0xfd8f,0xfd92,0xfdc7,0xfdf0,0xfdfb,0xfe00,0xfe0f,0xfe20,0xfe2f,
    0xfe33,0xfe34,0xfe4d,0xfe4f,0xfe70,0xfe74,0xfe76,0xfefc,0xff10,0xff19,
    0xff21,0xff3a,0xff3f,0xff3f,0xff41,0xff5a,0xff66,0xffbe,0xffc2,0xffc7,
    0xffca,0xffcf,0xffd2,0xffd7,0xffda,0xffdc,0x10000,0x1000b,0x1000d,0x10026,
    0x10028,0x1003a,0x1003c,0x1003d,0x1003f,0x1004d,0x10050,0x1005d,0x10080,0x100fa,
    0x10140,0x10174,0x101fd,0x101fd,0x10280,0x1029c,0x102a0,0x102d0,0x102e0,0x102e0,
    0x10300,0x1031f,0x1032d,0x1034a,0x10350,0x1037a,0x10380,0x1039d,0x103a0,0x103c3,
    0x103c8,0x103cf,0x103d1,0x103d5,0x10400,0x1049d,0x104a0,0x104a9,0x104b0,0x104d3,
    0x104d8,0x104fb,0x10500,0x10527,0x10530,0x10563,0x10570,0x1057a,0x1057c,0x1058a,
    0x1058c,0x10592,0x10594,0x10595,0x10597,0x105a1,0x105a3,0x105b1,0x105b3,0x105b9,
    0x105bb,0x105bc,0x105c0,0x105f3,0x10600,0x10736,0x10740,0x10755,0x10760,0x10767,
    0x10780,0x10785,0x10787,0x107b0,0x107b2,0x107ba,0x10800,0x10805,0x10808,0x10808,
    0x1080a,0x10835,0x10837,0x10838,0x1083c,0x1083c,0x1083f,0x10855,0x10860,0x10876,
    0x10880,0x1089e,0x108e0,0x108f2,0x108f4,0x108f5,0x10900,0x10915,0x10920,0x10939,
    0x10980,0x109b7,0x109be,0x109bf,0x10a00,0x10a03,0x10a05,0x10a06,0x10a0c,0x10a13,
    0x10a15,0x10a17,0x10a19,0x10a35,0x10a38,0x10a3a,0x10a3f,0x10a3f,0x10a60,0x10a7c,
    0x10a80,0x10a9c,0x10ac0,0x10ac7,0x10ac9,0x10ae6,0x10b00,0x10b35,0x10b40,0x10b55,
    0x10b60,0x10b72,0x10b80,0x10b91,0x10c00,0x10c48,0x10c80,0x10cb2,0x10cc0,0x10cf2,
    0x10d00,0x10d27,0x10d30,0x10d39,0x10d40,0x10d65,0x10d69,0x10d6d,0x10d6f,0x10d85,
    0x10e80,0x10ea9,0x10eab,0x10eac,0x10eb0,0x10eb1,0x10ec2,0x10ec4,0x10efc,0x10f1c,
    0x10f27,0x10f27,0x10f30,0x10f50,0x10f70,0x10f85,0x10fb0,0x10fc4,0x10fe0,0x10ff6,
    0x11000,0x11046,0x11066,0x11075,0x1107f,0x110ba,0x110c2,0x110c2,0x110d0,0x110e8,
    0x110f0,0x110f9,0x11100,0x11134,0x11136,0x1113f,0x11144,0x11147,0x11150,0x11173,
    0x11176,0x11176,0x11180,0x111c4,0x111c9,0x111cc,0x111ce,0x111da,0x111dc,0x111dc,
    0x11200,0x11211,0x11213,0x11237,0x1123e,0x11241,0x11280,0x11286,0x11288,0x11288,
    0x1128a,0x1128d,0x1128f,0x1129d,0x1129f,0x112a8,0x112b0,0x112ea,0x112f0,0x112f9,
    0x11300,0x11303,0x11305,0x1130c,0x1130f,0x11310,0x11313,0x11328,0x1132a,0x11330,
    0x11332,0x11333,0x11335,0x11339,0x1133b,0x11344,0x11347,0x11348,0x1134b,0x1134d,
    0x11350,0x11350,0x11357,0x11357,0x1135d,0x11363,0x11366,0x1136c,0x11370,0x11374,
    0x11380,0x11389,0x1138b,0x1138b,0x1138e,0x1138e,0x11390,0x113b5,0x113b7,0x113c0,
    0x113c2,0x113c2,0x113c5,0x113c5,0x113c7,0x113ca,0x113cc,0x113d3,0x113e1,0x113e2,
    0x11400,0x1144a,0x11450,0x11459,0x1145e,0x11461,0x11480,0x114c5,0x114c7,0x114c7,
    0x114d0,0x114d9,0x11580,0x115b5,0x115b8,0x115c0,0x115d8,0x115dd,0x11600,0x11640,
    0x11644,0x11644,0x11650,0x11659,0x11680,0x116b8,0x116c0,0x116c9,0x116d0,0x116e3,
    0x11700,0x1171a,0x1171d,0x1172b,0x11730,0x11739,0x11740,0x11746,0x11800,0x1183a,
    0x118a0,0x118e9,0x118ff,0x11906,0x11909,0x11909,0x1190c,0x11913,0x11915,0x11916,
    0x11918,0x11935,0x11937,0x11938,0x1193b,0x11943,0x11950,0x11959,0x119a0,0x119a7,
    0x119aa,0x119d7,0x119da,0x119e1,0x119e3,0x119e4,0x11a00,0x11a3e,0x11a47,0x11a47,
    0x11a50,0x11a99,0x11a9d,0x11a9d,0x11ab0,0x11af8,0x11bc0,0x11be0,0x11bf0,0x11bf9,
    0x11c00,0x11c08,0x11c0a,0x11c36,0x11c38,0x11c40,0x11c50,0x11c59,0x11c72,0x11c8f,
    0x11c92,0x11ca7,0x11ca9,0x11cb6,0x11d00,0x11d06,0x11d08,0x11d09,0x11d0b,0x11d36,
    0x11d3a,0x11d3a,0x11d3c,0x11d3d,0x11d3f,0x11d47,0x11d50,0x11d59,0x11d60,0x11d65,
    0x11d67,0x11d68,0x11d6a,0x11d8e,0x11d90,0x11d91,0x11d93,0x11d98,0x11da0,0x11da9,
    0x11ee0,0x11ef6,0x11f00,0x11f10,0x11f12,0x11f3a,0x11f3e,0x11f42,0x11f50,0x11f5a,
    0x11fb0,0x11fb0,0x12000,0x12399,0x12400,0x1246e,0x12480,0x12543,0x12f90,0x12ff0,
    0x13000,0x1342f,0x13440,0x13455,0x13460,0x143fa,0x14400,0x14646,0x16100,0x16139,
    0x16800,0x16a38,0x16a40,0x16a5e,0x16a60,0x16a69,0x16a70,0x16abe,0x16ac0,0x16ac9,
    0x16ad0,0x16aed,0x16af0,0x16af4,0x16b00,0x16b36,0x16b40,0x16b43,0x16b50,0x16b59,
    0x16b63,0x16b77,0x16b7d,0x16b8f,0x16d40,0x16d6c,0x16d70,0x16d79,0x16e40,0x16e7f,
    0x16f00,0x16f4a,0x16f4f,0x16f87,0x16f8f,0x16f9f,0x16fe0,0x16fe1,0x16fe3,0x16fe4,
    0x16ff0,0x16ff1,0x17000,0x187f7,0x18800,0x18cd5,0x18cff,0x18d08,0x1aff0,0x1aff3,
    0x1aff5,0x1affb,0x1affd,0x1affe,0x1b000,0x1b122,0x1b132,0x1b132,0x1b150,0x1b152,
    0x1b155,0x1b155,0x1b164,0x1b167,0x1b170,0x1b2fb,0x1bc00,0x1bc6a,0x1bc70,0x1bc7c,
    0x1bc80,0x1bc88,0x1bc90,0x1bc99,0x1bc9d,0x1bc9e,0x1ccf0,0x1ccf9,0x1cf00,0x1cf2d,
    0x1cf30,0x1cf46,0x1d165,0x1d169,0x1d16d,0x1d172,0x1d17b,0x1d182,0x1d185,0x1d18b,
    0x1d1aa,0x1d1ad,0x1d242,0x1d244,0x1d400,0x1d454,0x1d456,0x1d49c,0x1d49e,0x1d49f,
    0x1d4a2,0x1d4a2,0x1d4a5,0x1d4a6,0x1d4a9,0x1d4ac,0x1d4ae,0x1d4b9,0x1d4bb,0x1d4bb,
    0x1d4bd,0x1d4c3,0x1d4c5,0x1d505,0x1d507,0x1d50a,0x1d50d,0x1d514,0x1d516,0x1d51c,
    0x1d51e,0x1d539,0x1d53b,0x1d53e,0x1d540,0x1d544,0x1d546,0x1d546,0x1d54a,0x1d550,
    0x1d552,0x1d6a5,0x1d6a8,0x1d6c0,0x1d6c2,0x1d6da,0x1d6dc,0x1d6fa,0x1d6fc,0x1d714,
    0x1d716,0x1d734,0x1d736,0x1d74e,0x1d750,0x1d76e,0x1d770,0x1d788,0x1d78a,0x1d7a8,
    0x1d7aa,0x1d7c2,0x1d7c4,0x1d7cb,0x1d7ce,0x1d7ff,0x1da00,0x1da36,0x1da3b,0x1da6c,
    0x1da75,0x1da75,0x1da84,0x1da84,0x1da9b,0x1da9f,0x1daa1,0x1daaf,0x1df00,0x1df1e,
    0x1df25,0x1df2a,0x1e000,0x1e006,0x1e008,0x1e018,0x1e01b,0x1e021,0x1e023,0x1e024,
    0x1e026,0x1e02a,0x1e030,0x1e06d,0x1e08f,0x1e08f,0x1e100,0x1e12c,0x1e130,0x1e13d,
    0x1e140,0x1e149,0x1e14e,0x1e14e,0x1e290,0x1e2ae,0x1e2c0,0x1e2f9,0x1e4d0,0x1e4f9,
    0x1e5d0,0x1e5fa,0x1e7e0,0x1e7e6,0x1e7e8,0x1e7eb,0x1e7ed,0x1e7ee,0x1e7f0,0x1e7fe,
    0x1e800,0x1e8c4,0x1e8d0,0x1e8d6,0x1e900,0x1e94b,0x1e950,0x1e959,0x1ee00,0x1ee03,
    0x1ee05,0x1ee1f,0x1ee21,0x1ee22,0x1ee24,0x1ee24,0x1ee27,0x1ee27,0x1ee29,0x1ee32,
    0x1ee34,0x1ee37,0x1ee39,0x1ee39,0x1ee3b,0x1ee3b,0x1ee42,0x1ee42,0x1ee47,0x1ee47,
    0x1ee49,0x1ee49,0x1ee4b,0x1ee4b,0x1ee4d,0x1ee4f,0x1ee51,0x1ee52,0x1ee54,0x1ee54,
    0x1ee57,0x1ee57,0x1ee59,0x1ee59,0x1ee5b,0x1ee5b,0x1ee5d,0x1ee5d,0x1ee5f,0x1ee5f,
    0x1ee61,0x1ee62,0x1ee64,0x1ee64,0x1ee67,0x1ee6a,0x1ee6c,0x1ee72,0x1ee74,0x1ee77,
    0x1ee79,0x1ee7c,0x1ee7e,0x1ee7e,0x1ee80,0x1ee89,0x1ee8b,0x1ee9b,0x1eea1,0x1eea3,
    0x1eea5,0x1eea9,0x1eeab,0x1eebb,0x1f130,0x1f149,0x1f150,0x1f169,0x1f170,0x1f189,
    0x1fbf0,0x1fbf9,0x20000,0x2a6df,0x2a700,0x2b739,0x2b740,0x2b81d,0x2b820,0x2cea1,
    0x2ceb0,0x2ebe0,0x2ebf0,0x2ee5d,0x2f800,0x2fa1d,0x30000,0x3134a,0x31350,0x323af,
    0xe0100,0xe01ef,
};
static const uint32_t lomo__u_cccs[] = {
    0x300,0x314,0xe6,0x315,0x315,0xe8,0x316,0x319,0xdc,0x31a,0x31a,0xe8,
    0x31b,0x31b,0xd8,0x31c,0x320,0xdc,0x321,0x322,0xca,0x323,0x326,0xdc,
    0x327,0x328,0xca,0x329,0x333,0xdc,0x334,0x338,0x1,0x339,0x33c,0xdc,
    0x33d,0x33f,0xe6,0x342,0x342,0xe6,0x345,0x345,0xf0,0x346,0x346,0xe6,
    0x347,0x349,0xdc,0x34a,0x34c,0xe6,0x34d,0x34e,0xdc,0x350,0x352,0xe6,
    0x353,0x356,0xdc,0x357,0x357,0xe6,0x358,0x358,0xe8,0x359,0x35a,0xdc,
    0x35b,0x35b,0xe6,0x35c,0x35c,0xe9,0x35d,0x35e,0xea,0x35f,0x35f,0xe9,
    0x360,0x361,0xea,0x362,0x362,0xe9,0x363,0x36f,0xe6,0x483,0x487,0xe6,
    0x591,0x591,0xdc,0x592,0x595,0xe6,0x596,0x596,0xdc,0x597,0x599,0xe6,
    0x59a,0x59a,0xde,0x59b,0x59b,0xdc,0x59c,0x5a1,0xe6,0x5a2,0x5a7,0xdc,
    0x5a8,0x5a9,0xe6,0x5aa,0x5aa,0xdc,0x5ab,0x5ac,0xe6,0x5ad,0x5ad,0xde,
    0x5ae,0x5ae,0xe4,0x5af,0x5af,0xe6,0x5b0,0x5b0,0xa,0x5b1,0x5b1,0xb,
    0x5b2,0x5b2,0xc,0x5b3,0x5b3,0xd,0x5b4,0x5b4,0xe,0x5b5,0x5b5,0xf,
    0x5b6,0x5b6,0x10,0x5b7,0x5b7,0x11,0x5b8,0x5b8,0x12,0x5b9,0x5ba,0x13,
    0x5bb,0x5bb,0x14,0x5bc,0x5bc,0x15,0x5bd,0x5bd,0x16,0x5bf,0x5bf,0x17,
    0x5c1,0x5c1,0x18,0x5c2,0x5c2,0x19,0x5c4,0x5c4,0xe6,0x5c5,0x5c5,0xdc,
    0x5c7,0x5c7,0x12,0x610,0x617,0xe6,0x618,0x618,0x1e,0x619,0x619,0x1f,
    0x61a,0x61a,0x20,0x64b,0x64b,0x1b,0x64c,0x64c,0x1c,0x64d,0x64d,0x1d,
    0x64e,0x64e,0x1e,0x64f,0x64f,0x1f,0x650,0x650,0x20,0x651,0x651,0x21,
    0x652,0x652,0x22,0x653,0x654,0xe6,0x655,0x656,0xdc,0x657,0x65b,0xe6,
    0x65c,0x65c,0xdc,0x65d,0x65e,0xe6,0x65f,0x65f,0xdc,0x670,0x670,0x23,
    0x6d6,0x6dc,0xe6,0x6df,0x6e2,0xe6,0x6e3,0x6e3,0xdc,0x6e4,0x6e4,0xe6,
    0x6e7,0x6e8,0xe6,0x6ea,0x6ea,0xdc,0x6eb,0x6ec,0xe6,0x6ed,0x6ed,0xdc,
    0x711,0x711,0x24,0x730,0x730,0xe6,0x731,0x731,0xdc,0x732,0x733,0xe6,
    0x734,0x734,0xdc,0x735,0x736,0xe6,0x737,0x739,0xdc,0x73a,0x73a,0xe6,
    0x73b,0x73c,0xdc,0x73d,0x73d,0xe6,0x73e,0x73e,0xdc,0x73f,0x741,0xe6,
    0x742,0x742,0xdc,0x743,0x743,0xe6,0x744,0x744,0xdc,0x745,0x745,0xe6,
    0x746,0x746,0xdc,0x747,0x747,0xe6,0x748,0x748,0xdc,0x749,0x74a,0xe6,
    0x7eb,0x7f1,0xe6,0x7f2,0x7f2,0xdc,0x7f3,0x7f3,0xe6,0x816,0x819,0xe6,
    0x81b,0x823,0xe6,0x825,0x827,0xe6,0x829,0x82d,0xe6,0x859,0x85b,0xdc,
    0x8d4,0x8e1,0xe6,0x8e3,0x8e3,0xdc,0x8e4,0x8e5,0xe6,0x8e6,0x8e6,0xdc,
    0x8e7,0x8e8,0xe6,0x8e9,0x8e9,0xdc,0x8ea,0x8ec,0xe6,0x8ed,0x8ef,0xdc,
    0x8f0,0x8f0,0x1b,0x8f1,0x8f1,0x1c,0x8f2,0x8f2,0x1d,0x8f3,0x8f5,0xe6,
    0x8f6,0x8f6,0xdc,0x8f7,0x8f8,0xe6,0x8f9,0x8fa,0xdc,0x8fb,0x8ff,0xe6,
    0x93c,0x93c,0x7,0x94d,0x94d,0x9,0x951,0x951,0xe6,0x952,0x952,0xdc,
    0x953,0x954,0xe6,0x9bc,0x9bc,0x7,0x9cd,0x9cd,0x9,0xa3c,0xa3c,0x7,
    0xa4d,0xa4d,0x9,0xabc,0xabc,0x7,0xacd,0xacd,0x9,0xb3c,0xb3c,0x7,
    0xb4d,0xb4d,0x9,0xbcd,0xbcd,0x9,0xc4d,0xc4d,0x9,0xc55,0xc55,0x54,
    0xc56,0xc56,0x5b,0xcbc,0xcbc,0x7,0xccd,0xccd,0x9,0xd4d,0xd4d,0x9,
    0xdca,0xdca,0x9,0xe38,0xe39,0x67,0xe3a,0xe3a,0x9,0xe48,0xe4b,0x6b,
    0xeb8,0xeb9,0x76,0xec8,0xecb,0x7a,0xf18,0xf19,0xdc,0xf35,0xf35,0xdc,
    0xf37,0xf37,0xdc,0xf39,0xf39,0xd8,0xf71,0xf71,0x81,0xf72,0xf72,0x82,
    0xf74,0xf74,0x84,0xf7a,0xf7d,0x82,0xf80,0xf80,0x82,0xf82,0xf83,0xe6,
    0xf84,0xf84,0x9,0xf86,0xf87,0xe6,0xfc6,0xfc6,0xdc,0x1037,0x1037,0x7,
    0x1039,0x103a,0x9,0x108d,0x108d,0xdc,0x135d,0x135f,0xe6,0x1714,0x1714,0x9,
    0x1734,0x1734,0x9,0x17d2,0x17d2,0x9,0x17dd,0x17dd,0xe6,0x18a9,0x18a9,0xe4,
    0x1939,0x1939,0xde,0x193a,0x193a,0xe6,0x193b,0x193b,0xdc,0x1a17,0x1a17,0xe6,
    0x1a18,0x1a18,0xdc,0x1a60,0x1a60,0x9,0x1a75,0x1a7c,0xe6,0x1a7f,0x1a7f,0xdc,
    0x1ab0,0x1ab4,0xe6,0x1ab5,0x1aba,0xdc,0x1abb,0x1abc,0xe6,0x1abd,0x1abd,0xdc,
    0x1b34,0x1b34,0x7,0x1b44,0x1b44,0x9,0x1b6b,0x1b6b,0xe6,0x1b6c,0x1b6c,0xdc,
    0x1b6d,0x1b73,0xe6,0x1baa,0x1bab,0x9,0x1be6,0x1be6,0x7,0x1bf2,0x1bf3,0x9,
    0x1c37,0x1c37,0x7,0x1cd0,0x1cd2,0xe6,0x1cd4,0x1cd4,0x1,0x1cd5,0x1cd9,0xdc,
    0x1cda,0x1cdb,0xe6,0x1cdc,0x1cdf,0xdc,0x1ce0,0x1ce0,0xe6,0x1ce2,0x1ce8,0x1,
    0x1ced,0x1ced,0xdc,0x1cf4,0x1cf4,0xe6,0x1cf8,0x1cf9,0xe6,0x1dc0,0x1dc1,0xe6,
    0x1dc2,0x1dc2,0xdc,0x1dc3,0x1dc9,0xe6,0x1dca,0x1dca,0xdc,0x1dcb,0x1dcc,0xe6,
    0x1dcd,0x1dcd,0xea,0x1dce,0x1dce,0xd6,0x1dcf,0x1dcf,0xdc,0x1dd0,0x1dd0,0xca,
    0x1dd1,0x1df5,0xe6,0x1dfb,0x1dfb,0xe6,0x1dfc,0x1dfc,0xe9,0x1dfd,0x1dfd,0xdc,
    0x1dfe,0x1dfe,0xe6,0x1dff,0x1dff,0xdc,0x20d0,0x20d1,0xe6,0x20d2,0x20d3,0x1,
    0x20d4,0x20d7,0xe6,0x20d8,0x20da,0x1,0x20db,0x20dc,0xe6,0x20e1,0x20e1,0xe6,
    0x20e5,0x20e6,0x1,0x20e7,0x20e7,0xe6,0x20e8,0x20e8,0xdc,0x20e9,0x20e9,0xe6,
    0x20ea,0x20eb,0x1,0x20ec,0x20ef,0xdc,0x20f0,0x20f0,0xe6,0x2cef,0x2cf1,0xe6,
    0x2d7f,0x2d7f,0x9,0x2de0,0x2dff,0xe6,0x302a,0x302a,0xda,0x302b,0x302b,0xe4,
    0x302c,0x302c,0xe8,0x302d,0x302d,0xde,0x302e,0x302f,0xe0,0x3099,0x309a,0x8,
    0xa66f,0xa66f,0xe6,0xa674,0xa67d,0xe6,0xa69e,0xa69f,0xe6,0xa6f0,0xa6f1,0xe6,
    0xa806,0xa806,0x9,0xa8c4,0xa8c4,0x9,0xa8e0,0xa8f1,0xe6,0xa92b,0xa92d,0xdc,
    0xa953,0xa953,0x9,0xa9b3,0xa9b3,0x7,0xa9c0,0xa9c0,0x9,0xaab0,0xaab0,0xe6,
    0xaab2,0xaab3,0xe6,0xaab4,0xaab4,0xdc,0xaab7,0xaab8,0xe6,0xaabe,0xaabf,0xe6,
    0xaac1,0xaac1,0xe6,0xaaf6,0xaaf6,0x9,0xabed,0xabed,0x9,0xfb1e,0xfb1e,0x1a,
    0xfe20,0xfe26,0xe6,0xfe27,0xfe2d,0xdc,0xfe2e,0xfe2f,0xe6,0x101fd,0x101fd,0xdc,
    0x102e0,0x102e0,0xdc,0x10376,0x1037a,0xe6,0x10a0d,0x10a0d,0xdc,0x10a0f,0x10a0f,0xe6,
    0x10a38,0x10a38,0xe6,0x10a39,0x10a39,0x1,0x10a3a,0x10a3a,0xdc,0x10a3f,0x10a3f,0x9,
    0x10ae5,0x10ae5,0xe6,0x10ae6,0x10ae6,0xdc,0x11046,0x11046,0x9,0x1107f,0x1107f,0x9,
    0x110b9,0x110b9,0x9,0x110ba,0x110ba,0x7,0x11100,0x11102,0xe6,0x11133,0x11134,0x9,
    0x11173,0x11173,0x7,0x111c0,0x111c0,0x9,0x111ca,0x111ca,0x7,0x11235,0x11235,0x9,
    0x11236,0x11236,0x7,0x112e9,0x112e9,0x7,0x112ea,0x112ea,0x9,0x1133c,0x1133c,0x7,
    0x1134d,0x1134d,0x9,0x11366,0x1136c,0xe6,0x11370,0x11374,0xe6,0x11442,0x11442,0x9,
    0x11446,0x11446,0x7,0x114c2,0x114c2,0x9,0x114c3,0x114c3,0x7,0x115bf,0x115bf,0x9,
    0x115c0,0x115c0,0x7,0x1163f,0x1163f,0x9,0x116b6,0x116b6,0x9,0x116b7,0x116b7,0x7,
    0x1172b,0x1172b,0x9,0x11c3f,0x11c3f,0x9,0x16af0,0x16af4,0x1,0x16b30,0x16b36,0xe6,
    0x1bc9e,0x1bc9e,0x1,0x1d165,0x1d166,0xd8,0x1d167,0x1d169,0x1,0x1d16d,0x1d16d,0xe2,
    0x1d16e,0x1d172,0xd8,0x1d17b,0x1d182,0xdc,0x1d185,0x1d189,0xe6,0x1d18a,0x1d18b,0xdc,
    0x1d1aa,0x1d1ad,0xe6,0x1d242,0x1d244,0xe6,0x1e000,0x1e006,0xe6,0x1e008,0x1e018,0xe6,
    0x1e01b,0x1e021,0xe6,0x1e023,0x1e024,0xe6,0x1e026,0x1e02a,0xe6,0x1e8d0,0x1e8d6,0xdc,
    0x1e944,0x1e949,0xe6,0x1e94a,0x1e94a,0x7,
};
static const uint32_t lomo__u_dec[] = {
    0x800000c0,0x41,0x300,0x800000c1,0x41,0x301,0x800000c2,0x41,0x302,0x800000c3,0x41,0x303,
    0x800000c4,0x41,0x308,0x800000c5,0x41,0x30a,0x800000c7,0x43,0x327,0x800000c8,0x45,0x300,
    0x800000c9,0x45,0x301,0x800000ca,0x45,0x302,0x800000cb,0x45,0x308,0x800000cc,0x49,0x300,
    0x800000cd,0x49,0x301,0x800000ce,0x49,0x302,0x800000cf,0x49,0x308,0x800000d1,0x4e,0x303,
    0x800000d2,0x4f,0x300,0x800000d3,0x4f,0x301,0x800000d4,0x4f,0x302,0x800000d5,0x4f,0x303,
    0x800000d6,0x4f,0x308,0x800000d9,0x55,0x300,0x800000da,0x55,0x301,0x800000db,0x55,0x302,
    0x800000dc,0x55,0x308,0x800000dd,0x59,0x301,0x800000e0,0x61,0x300,0x800000e1,0x61,0x301,
    0x800000e2,0x61,0x302,0x800000e3,0x61,0x303,0x800000e4,0x61,0x308,0x800000e5,0x61,0x30a,
    0x800000e7,0x63,0x327,0x800000e8,0x65,0x300,0x800000e9,0x65,0x301,0x800000ea,0x65,0x302,
    0x800000eb,0x65,0x308,0x800000ec,0x69,0x300,0x800000ed,0x69,0x301,0x800000ee,0x69,0x302,
    0x800000ef,0x69,0x308,0x800000f1,0x6e,0x303,0x800000f2,0x6f,0x300,0x800000f3,0x6f,0x301,
    0x800000f4,0x6f,0x302,0x800000f5,0x6f,0x303,0x800000f6,0x6f,0x308,0x800000f9,0x75,0x300,
    0x800000fa,0x75,0x301,0x800000fb,0x75,0x302,0x800000fc,0x75,0x308,0x800000fd,0x79,0x301,
    0x800000ff,0x79,0x308,0x80000100,0x41,0x304,0x80000101,0x61,0x304,0x80000102,0x41,0x306,
    0x80000103,0x61,0x306,0x80000104,0x41,0x328,0x80000105,0x61,0x328,0x80000106,0x43,0x301,
    0x80000107,0x63,0x301,0x80000108,0x43,0x302,0x80000109,0x63,0x302,0x8000010a,0x43,0x307,
    0x8000010b,0x63,0x307,0x8000010c,0x43,0x30c,0x8000010d,0x63,0x30c,0x8000010e,0x44,0x30c,
    0x8000010f,0x64,0x30c,0x80000112,0x45,0x304,0x80000113,0x65,0x304,0x80000114,0x45,0x306,
    0x80000115,0x65,0x306,0x80000116,0x45,0x307,0x80000117,0x65,0x307,0x80000118,0x45,0x328,
    0x80000119,0x65,0x328,0x8000011a,0x45,0x30c,0x8000011b,0x65,0x30c,0x8000011c,0x47,0x302,
    0x8000011d,0x67,0x302,0x8000011e,0x47,0x306,0x8000011f,0x67,0x306,0x80000120,0x47,0x307,
    0x80000121,0x67,0x307,0x80000122,0x47,0x327,0x80000123,0x67,0x327,0x80000124,0x48,0x302,
    0x80000125,0x68,0x302,0x80000128,0x49,0x303,0x80000129,0x69,0x303,0x8000012a,0x49,0x304,
    0x8000012b,0x69,0x304,0x8000012c,0x49,0x306,0x8000012d,0x69,0x306,0x8000012e,0x49,0x328,
    0x8000012f,0x69,0x328,0x80000130,0x49,0x307,0x80000134,0x4a,0x302,0x80000135,0x6a,0x302,
    0x80000136,0x4b,0x327,0x80000137,0x6b,0x327,0x80000139,0x4c,0x301,0x8000013a,0x6c,0x301,
    0x8000013b,0x4c,0x327,0x8000013c,0x6c,0x327,0x8000013d,0x4c,0x30c,0x8000013e,0x6c,0x30c,
    0x80000143,0x4e,0x301,0x80000144,0x6e,0x301,0x80000145,0x4e,0x327,0x80000146,0x6e,0x327,
    0x80000147,0x4e,0x30c,0x80000148,0x6e,0x30c,0x8000014c,0x4f,0x304,0x8000014d,0x6f,0x304,
    0x8000014e,0x4f,0x306,0x8000014f,0x6f,0x306,0x80000150,0x4f,0x30b,0x80000151,0x6f,0x30b,
    0x80000154,0x52,0x301,0x80000155,0x72,0x301,0x80000156,0x52,0x327,0x80000157,0x72,0x327,
    0x80000158,0x52,0x30c,0x80000159,0x72,0x30c,0x8000015a,0x53,0x301,0x8000015b,0x73,0x301,
    0x8000015c,0x53,0x302,0x8000015d,0x73,0x302,0x8000015e,0x53,0x327,0x8000015f,0x73,0x327,
    0x80000160,0x53,0x30c,0x80000161,0x73,0x30c,0x80000162,0x54,0x327,0x80000163,0x74,0x327,
    0x80000164,0x54,0x30c,0x80000165,0x74,0x30c,0x80000168,0x55,0x303,0x80000169,0x75,0x303,
    0x8000016a,0x55,0x304,0x8000016b,0x75,0x304,0x8000016c,0x55,0x306,0x8000016d,0x75,0x306,
    0x8000016e,0x55,0x30a,0x8000016f,0x75,0x30a,0x80000170,0x55,0x30b,0x80000171,0x75,0x30b,
    0x80000172,0x55,0x328,0x80000173,0x75,0x328,0x80000174,0x57,0x302,0x80000175,0x77,0x302,
    0x80000176,0x59,0x302,0x80000177,0x79,0x302,0x80000178,0x59,0x308,0x80000179,0x5a,0x301,
    0x8000017a,0x7a,0x301,0x8000017b,0x5a,0x307,0x8000017c,0x7a,0x307,0x8000017d,0x5a,0x30c,
    0x8000017e,0x7a,0x30c,0x800001a0,0x4f,0x31b,0x800001a1,0x6f,0x31b,0x800001af,0x55,0x31b,
    0x800001b0,0x75,0x31b,0x800001cd,0x41,0x30c,0x800001ce,0x61,0x30c,0x800001cf,0x49,0x30c,
    0x800001d0,0x69,0x30c,0x800001d1,0x4f,0x30c,0x800001d2,0x6f,0x30c,0x800001d3,0x55,0x30c,
    0x800001d4,0x75,0x30c,0x800001d5,0xdc,0x304,0x800001d6,0xfc,0x304,0x800001d7,0xdc,0x301,
    0x800001d8,0xfc,0x301,0x800001d9,0xdc,0x30c,0x800001da,0xfc,0x30c,0x800001db,0xdc,0x300,
    0x800001dc,0xfc,0x300,0x800001de,0xc4,0x304,0x800001df,0xe4,0x304,0x800001e0,0x226,0x304,
    0x800001e1,0x227,0x304,0x800001e2,0xc6,0x304,0x800001e3,0xe6,0x304,0x800001e6,0x47,0x30c,
    0x800001e7,0x67,0x30c,0x800001e8,0x4b,0x30c,0x800001e9,0x6b,0x30c,0x800001ea,0x4f,0x328,
    0x800001eb,0x6f,0x328,0x800001ec,0x1ea,0x304,0x800001ed,0x1eb,0x304,0x800001ee,0x1b7,0x30c,
    0x800001ef,0x292,0x30c,0x800001f0,0x6a,0x30c,0x800001f4,0x47,0x301,0x800001f5,0x67,0x301,
    0x800001f8,0x4e,0x300,0x800001f9,0x6e,0x300,0x800001fa,0xc5,0x301,0x800001fb,0xe5,0x301,
    0x800001fc,0xc6,0x301,0x800001fd,0xe6,0x301,0x800001fe,0xd8,0x301,0x800001ff,0xf8,0x301,
    0x80000200,0x41,0x30f,0x80000201,0x61,0x30f,0x80000202,0x41,0x311,0x80000203,0x61,0x311,
    0x80000204,0x45,0x30f,0x80000205,0x65,0x30f,0x80000206,0x45,0x311,0x80000207,0x65,0x311,
    0x80000208,0x49,0x30f,0x80000209,0x69,0x30f,0x8000020a,0x49,0x311,0x8000020b,0x69,0x311,
    0x8000020c,0x4f,0x30f,0x8000020d,0x6f,0x30f,0x8000020e,0x4f,0x311,0x8000020f,0x6f,0x311,
    0x80000210,0x52,0x30f,0x80000211,0x72,0x30f,0x80000212,0x52,0x311,0x80000213,0x72,0x311,
    0x80000214,0x55,0x30f,0x80000215,0x75,0x30f,0x80000216,0x55,0x311,0x80000217,0x75,0x311,
    0x80000218,0x53,0x326,0x80000219,0x73,0x326,0x8000021a,0x54,0x326,0x8000021b,0x74,0x326,
    0x8000021e,0x48,0x30c,0x8000021f,0x68,0x30c,0x80000226,0x41,0x307,0x80000227,0x61,0x307,
    0x80000228,0x45,0x327,0x80000229,0x65,0x327,0x8000022a,0xd6,0x304,0x8000022b,0xf6,0x304,
    0x8000022c,0xd5,0x304,0x8000022d,0xf5,0x304,0x8000022e,0x4f,0x307,0x8000022f,0x6f,0x307,
    0x80000230,0x22e,0x304,0x80000231,0x22f,0x304,0x80000232,0x59,0x304,0x80000233,0x79,0x304,
    0x340,0x300,0x0,0x341,0x301,0x0,0x343,0x313,0x0,0x344,0x308,0x301,
    0x374,0x2b9,0x0,0x37e,0x3b,0x0,0x80000385,0xa8,0x301,0x80000386,0x391,0x301,
    0x387,0xb7,0x0,0x80000388,0x395,0x301,0x80000389,0x397,0x301,0x8000038a,0x399,0x301,
    0x8000038c,0x39f,0x301,0x8000038e,0x3a5,0x301,0x8000038f,0x3a9,0x301,0x80000390,0x3ca,0x301,
    0x800003aa,0x399,0x308,0x800003ab,0x3a5,0x308,0x800003ac,0x3b1,0x301,0x800003ad,0x3b5,0x301,
    0x800003ae,0x3b7,0x301,0x800003af,0x3b9,0x301,0x800003b0,0x3cb,0x301,0x800003ca,0x3b9,0x308,
    0x800003cb,0x3c5,0x308,0x800003cc,0x3bf,0x301,0x800003cd,0x3c5,0x301,0x800003ce,0x3c9,0x301,
    0x800003d3,0x3d2,0x301,0x800003d4,0x3d2,0x308,0x80000400,0x415,0x300,0x80000401,0x415,0x308,
    0x80000403,0x413,0x301,0x80000407,0x406,0x308,0x8000040c,0x41a,0x301,0x8000040d,0x418,0x300,
    0x8000040e,0x423,0x306,0x80000419,0x418,0x306,0x80000439,0x438,0x306,0x80000450,0x435,0x300,
    0x80000451,0x435,0x308,0x80000453,0x433,0x301,0x80000457,0x456,0x308,0x8000045c,0x43a,0x301,
    0x8000045d,0x438,0x300,0x8000045e,0x443,0x306,0x80000476,0x474,0x30f,0x80000477,0x475,0x30f,
    0x800004c1,0x416,0x306,0x800004c2,0x436,0x306,0x800004d0,0x410,0x306,0x800004d1,0x430,0x306,
    0x800004d2,0x410,0x308,0x800004d3,0x430,0x308,0x800004d6,0x415,0x306,0x800004d7,0x435,0x306,
    0x800004da,0x4d8,0x308,0x800004db,0x4d9,0x308,0x800004dc,0x416,0x308,0x800004dd,0x436,0x308,
    0x800004de,0x417,0x308,0x800004df,0x437,0x308,0x800004e2,0x418,0x304,0x800004e3,0x438,0x304,
    0x800004e4,0x418,0x308,0x800004e5,0x438,0x308,0x800004e6,0x41e,0x308,0x800004e7,0x43e,0x308,
    0x800004ea,0x4e8,0x308,0x800004eb,0x4e9,0x308,0x800004ec,0x42d,0x308,0x800004ed,0x44d,0x308,
    0x800004ee,0x423,0x304,0x800004ef,0x443,0x304,0x800004f0,0x423,0x308,0x800004f1,0x443,0x308,
    0x800004f2,0x423,0x30b,0x800004f3,0x443,0x30b,0x800004f4,0x427,0x308,0x800004f5,0x447,0x308,
    0x800004f8,0x42b,0x308,0x800004f9,0x44b,0x308,0x80000622,0x627,0x653,0x80000623,0x627,0x654,
    0x80000624,0x648,0x654,0x80000625,0x627,0x655,0x80000626,0x64a,0x654,0x800006c0,0x6d5,0x654,
    0x800006c2,0x6c1,0x654,0x800006d3,0x6d2,0x654,0x80000929,0x928,0x93c,0x80000931,0x930,0x93c,
    0x80000934,0x933,0x93c,0x958,0x915,0x93c,0x959,0x916,0x93c,0x95a,0x917,0x93c,
    0x95b,0x91c,0x93c,0x95c,0x921,0x93c,0x95d,0x922,0x93c,0x95e,0x92b,0x93c,
    0x95f,0x92f,0x93c,0x800009cb,0x9c7,0x9be,0x800009cc,0x9c7,0x9d7,0x9dc,0x9a1,0x9bc,
    0x9dd,0x9a2,0x9bc,0x9df,0x9af,0x9bc,0xa33,0xa32,0xa3c,0xa36,0xa38,0xa3c,
    0xa59,0xa16,0xa3c,0xa5a,0xa17,0xa3c,0xa5b,0xa1c,0xa3c,0xa5e,0xa2b,0xa3c,
    0x80000b48,0xb47,0xb56,0x80000b4b,0xb47,0xb3e,0x80000b4c,0xb47,0xb57,0xb5c,0xb21,0xb3c,
    0xb5d,0xb22,0xb3c,0x80000b94,0xb92,0xbd7,0x80000bca,0xbc6,0xbbe,0x80000bcb,0xbc7,0xbbe,
    0x80000bcc,0xbc6,0xbd7,0x80000c48,0xc46,0xc56,0x80000cc0,0xcbf,0xcd5,0x80000cc7,0xcc6,0xcd5,
    0x80000cc8,0xcc6,0xcd6,0x80000cca,0xcc6,0xcc2,0x80000ccb,0xcca,0xcd5,0x80000d4a,0xd46,0xd3e,
    0x80000d4b,0xd47,0xd3e,0x80000d4c,0xd46,0xd57,0x80000dda,0xdd9,0xdca,0x80000ddc,0xdd9,0xdcf,
    0x80000ddd,0xddc,0xdca,0x80000dde,0xdd9,0xddf,0xf43,0xf42,0xfb7,0xf4d,0xf4c,0xfb7,
    0xf52,0xf51,0xfb7,0xf57,0xf56,0xfb7,0xf5c,0xf5b,0xfb7,0xf69,0xf40,0xfb5,
    0xf73,0xf71,0xf72,0xf75,0xf71,0xf74,0xf76,0xfb2,0xf80,0xf78,0xfb3,0xf80,
    0xf81,0xf71,0xf80,0xf93,0xf92,0xfb7,0xf9d,0xf9c,0xfb7,0xfa2,0xfa1,0xfb7,
    0xfa7,0xfa6,0xfb7,0xfac,0xfab,0xfb7,0xfb9,0xf90,0xfb5,0x80001026,0x1025,0x102e,
    0x80001b06,0x1b05,0x1b35,0x80001b08,0x1b07,0x1b35,0x80001b0a,0x1b09,0x1b35,0x80001b0c,0x1b0b,0x1b35,
    0x80001b0e,0x1b0d,0x1b35,0x80001b12,0x1b11,0x1b35,0x80001b3b,0x1b3a,0x1b35,0x80001b3d,0x1b3c,0x1b35,
    0x80001b40,0x1b3e,0x1b35,0x80001b41,0x1b3f,0x1b35,0x80001b43,0x1b42,0x1b35,0x80001e00,0x41,0x325,
    0x80001e01,0x61,0x325,0x80001e02,0x42,0x307,0x80001e03,0x62,0x307,0x80001e04,0x42,0x323,
    0x80001e05,0x62,0x323,0x80001e06,0x42,0x331,0x80001e07,0x62,0x331,0x80001e08,0xc7,0x301,
    0x80001e09,0xe7,0x301,0x80001e0a,0x44,0x307,0x80001e0b,0x64,0x307,0x80001e0c,0x44,0x323,
    0x80001e0d,0x64,0x323,0x80001e0e,0x44,0x331,0x80001e0f,0x64,0x331,0x80001e10,0x44,0x327,
    0x80001e11,0x64,0x327,0x80001e12,0x44,0x32d,0x80001e13,0x64,0x32d,0x80001e14,0x112,0x300,
    0x80001e15,0x113,0x300,0x80001e16,0x112,0x301,0x80001e17,0x113,0x301,0x80001e18,0x45,0x32d,
    0x80001e19,0x65,0x32d,0x80001e1a,0x45,0x330,0x80001e1b,0x65,0x330,0x80001e1c,0x228,0x306,
    0x80001e1d,0x229,0x306,0x80001e1e,0x46,0x307,0x80001e1f,0x66,0x307,0x80001e20,0x47,0x304,
    0x80001e21,0x67,0x304,0x80001e22,0x48,0x307,0x80001e23,0x68,0x307,0x80001e24,0x48,0x323,
    0x80001e25,0x68,0x323,0x80001e26,0x48,0x308,0x80001e27,0x68,0x308,0x80001e28,0x48,0x327,
    0x80001e29,0x68,0x327,0x80001e2a,0x48,0x32e,0x80001e2b,0x68,0x32e,0x80001e2c,0x49,0x330,
    0x80001e2d,0x69,0x330,0x80001e2e,0xcf,0x301,0x80001e2f,0xef,0x301,0x80001e30,0x4b,0x301,
    0x80001e31,0x6b,0x301,0x80001e32,0x4b,0x323,0x80001e33,0x6b,0x323,0x80001e34,0x4b,0x331,
    0x80001e35,0x6b,0x331,0x80001e36,0x4c,0x323,0x80001e37,0x6c,0x323,0x80001e38,0x1e36,0x304,
    0x80001e39,0x1e37,0x304,0x80001e3a,0x4c,0x331,0x80001e3b,0x6c,0x331,0x80001e3c,0x4c,0x32d,
    0x80001e3d,0x6c,0x32d,0x80001e3e,0x4d,0x301,0x80001e3f,0x6d,0x301,0x80001e40,0x4d,0x307,
    0x80001e41,0x6d,0x307,0x80001e42,0x4d,0x323,0x80001e43,0x6d,0x323,0x80001e44,0x4e,0x307,
    0x80001e45,0x6e,0x307,0x80001e46,0x4e,0x323,0x80001e47,0x6e,0x323,0x80001e48,0x4e,0x331,
    0x80001e49,0x6e,0x331,0x80001e4a,0x4e,0x32d,0x80001e4b,0x6e,0x32d,0x80001e4c,0xd5,0x301,
    0x80001e4d,0xf5,0x301,0x80001e4e,0xd5,0x308,0x80001e4f,0xf5,0x308,0x80001e50,0x14c,0x300,
    0x80001e51,0x14d,0x300,0x80001e52,0x14c,0x301,0x80001e53,0x14d,0x301,0x80001e54,0x50,0x301,
    0x80001e55,0x70,0x301,0x80001e56,0x50,0x307,0x80001e57,0x70,0x307,0x80001e58,0x52,0x307,
    0x80001e59,0x72,0x307,0x80001e5a,0x52,0x323,0x80001e5b,0x72,0x323,0x80001e5c,0x1e5a,0x304,
    0x80001e5d,0x1e5b,0x304,0x80001e5e,0x52,0x331,0x80001e5f,0x72,0x331,0x80001e60,0x53,0x307,
    0x80001e61,0x73,0x307,0x80001e62,0x53,0x323,0x80001e63,0x73,0x323,0x80001e64,0x15a,0x307,
    0x80001e65,0x15b,0x307,0x80001e66,0x160,0x307,0x80001e67,0x161,0x307,0x80001e68,0x1e62,0x307,
    0x80001e69,0x1e63,0x307,0x80001e6a,0x54,0x307,0x80001e6b,0x74,0x307,0x80001e6c,0x54,0x323,
    0x80001e6d,0x74,0x323,0x80001e6e,0x54,0x331,0x80001e6f,0x74,0x331,0x80001e70,0x54,0x32d,
    0x80001e71,0x74,0x32d,0x80001e72,0x55,0x324,0x80001e73,0x75,0x324,0x80001e74,0x55,0x330,
    0x80001e75,0x75,0x330,0x80001e76,0x55,0x32d,0x80001e77,0x75,0x32d,0x80001e78,0x168,0x301,
    0x80001e79,0x169,0x301,0x80001e7a,0x16a,0x308,0x80001e7b,0x16b,0x308,0x80001e7c,0x56,0x303,
    0x80001e7d,0x76,0x303,0x80001e7e,0x56,0x323,0x80001e7f,0x76,0x323,0x80001e80,0x57,0x300,
    0x80001e81,0x77,0x300,0x80001e82,0x57,0x301,0x80001e83,0x77,0x301,0x80001e84,0x57,0x308,
    0x80001e85,0x77,0x308,0x80001e86,0x57,0x307,0x80001e87,0x77,0x307,0x80001e88,0x57,0x323,
    0x80001e89,0x77,0x323,0x80001e8a,0x58,0x307,0x80001e8b,0x78,0x307,0x80001e8c,0x58,0x308,
    0x80001e8d,0x78,0x308,0x80001e8e,0x59,0x307,0x80001e8f,0x79,0x307,0x80001e90,0x5a,0x302,
    0x80001e91,0x7a,0x302,0x80001e92,0x5a,0x323,0x80001e93,0x7a,0x323,0x80001e94,0x5a,0x331,
    0x80001e95,0x7a,0x331,0x80001e96,0x68,0x331,0x80001e97,0x74,0x308,0x80001e98,0x77,0x30a,
    0x80001e99,0x79,0x30a,0x80001e9b,0x17f,0x307,0x80001ea0,0x41,0x323,0x80001ea1,0x61,0x323,
    0x80001ea2,0x41,0x309,0x80001ea3,0x61,0x309,0x80001ea4,0xc2,0x301,0x80001ea5,0xe2,0x301,
    0x80001ea6,0xc2,0x300,0x80001ea7,0xe2,0x300,0x80001ea8,0xc2,0x309,0x80001ea9,0xe2,0x309,
    0x80001eaa,0xc2,0x303,0x80001eab,0xe2,0x303,0x80001eac,0x1ea0,0x302,0x80001ead,0x1ea1,0x302,
    0x80001eae,0x102,0x301,0x80001eaf,0x103,0x301,0x80001eb0,0x102,0x300,0x80001eb1,0x103,0x300,
    0x80001eb2,0x102,0x309,0x80001eb3,0x103,0x309,0x80001eb4,0x102,0x303,0x80001eb5,0x103,0x303,
    0x80001eb6,0x1ea0,0x306,0x80001eb7,0x1ea1,0x306,0x80001eb8,0x45,0x323,0x80001eb9,0x65,0x323,
    0x80001eba,0x45,0x309,0x80001ebb,0x65,0x309,0x80001ebc,0x45,0x303,0x80001ebd,0x65,0x303,
    0x80001ebe,0xca,0x301,0x80001ebf,0xea,0x301,0x80001ec0,0xca,0x300,0x80001ec1,0xea,0x300,
    0x80001ec2,0xca,0x309,0x80001ec3,0xea,0x309,0x80001ec4,0xca,0x303,0x80001ec5,0xea,0x303,
    0x80001ec6,0x1eb8,0x302,0x80001ec7,0x1eb9,0x302,0x80001ec8,0x49,0x309,0x80001ec9,0x69,0x309,
    0x80001eca,0x49,0x323,0x80001ecb,0x69,0x323,0x80001ecc,0x4f,0x323,0x80001ecd,0x6f,0x323,
    0x80001ece,0x4f,0x309,0x80001ecf,0x6f,0x309,0x80001ed0,0xd4,0x301,0x80001ed1,0xf4,0x301,
    0x80001ed2,0xd4,0x300,0x80001ed3,0xf4,0x300,0x80001ed4,0xd4,0x309,0x80001ed5,0xf4,0x309,
    0x80001ed6,0xd4,0x303,0x80001ed7,0xf4,0x303,0x80001ed8,0x1ecc,0x302,0x80001ed9,0x1ecd,0x302,
    0x80001eda,0x1a0,0x301,0x80001edb,0x1a1,0x301,0x80001edc,0x1a0,0x300,0x80001edd,0x1a1,0x300,
    0x80001ede,0x1a0,0x309,0x80001edf,0x1a1,0x309,0x80001ee0,0x1a0,0x303,0x80001ee1,0x1a1,0x303,
    0x80001ee2,0x1a0,0x323,0x80001ee3,0x1a1,0x323,0x80001ee4,0x55,0x323,0x80001ee5,0x75,0x323,
    0x80001ee6,0x55,0x309,0x80001ee7,0x75,0x309,0x80001ee8,0x1af,0x301,0x80001ee9,0x1b0,0x301,
    0x80001eea,0x1af,0x300,0x80001eeb,0x1b0,0x300,0x80001eec,0x1af,0x309,0x80001eed,0x1b0,0x309,
    0x80001eee,0x1af,0x303,0x80001eef,0x1b0,0x303,0x80001ef0,0x1af,0x323,0x80001ef1,0x1b0,0x323,
    0x80001ef2,0x59,0x300,0x80001ef3,0x79,0x300,0x80001ef4,0x59,0x323,0x80001ef5,0x79,0x323,
    0x80001ef6,0x59,0x309,0x80001ef7,0x79,0x309,0x80001ef8,0x59,0x303,0x80001ef9,0x79,0x303,
    0x80001f00,0x3b1,0x313,0x80001f01,0x3b1,0x314,0x80001f02,0x1f00,0x300,0x80001f03,0x1f01,0x300,
    0x80001f04,0x1f00,0x301,0x80001f05,0x1f01,0x301,0x80001f06,0x1f00,0x342,0x80001f07,0x1f01,0x342,
    0x80001f08,0x391,0x313,0x80001f09,0x391,0x314,0x80001f0a,0x1f08,0x300,0x80001f0b,0x1f09,0x300,
    0x80001f0c,0x1f08,0x301,0x80001f0d,0x1f09,0x301,0x80001f0e,0x1f08,0x342,0x80001f0f,0x1f09,0x342,
    0x80001f10,0x3b5,0x313,0x80001f11,0x3b5,0x314,0x80001f12,0x1f10,0x300,0x80001f13,0x1f11,0x300,
    0x80001f14,0x1f10,0x301,0x80001f15,0x1f11,0x301,0x80001f18,0x395,0x313,0x80001f19,0x395,0x314,
    0x80001f1a,0x1f18,0x300,0x80001f1b,0x1f19,0x300,0x80001f1c,0x1f18,0x301,0x80001f1d,0x1f19,0x301,
    0x80001f20,0x3b7,0x313,0x80001f21,0x3b7,0x314,0x80001f22,0x1f20,0x300,0x80001f23,0x1f21,0x300,
    0x80001f24,0x1f20,0x301,0x80001f25,0x1f21,0x301,0x80001f26,0x1f20,0x342,0x80001f27,0x1f21,0x342,
    0x80001f28,0x397,0x313,0x80001f29,0x397,0x314,0x80001f2a,0x1f28,0x300,0x80001f2b,0x1f29,0x300,
    0x80001f2c,0x1f28,0x301,0x80001f2d,0x1f29,0x301,0x80001f2e,0x1f28,0x342,0x80001f2f,0x1f29,0x342,
    0x80001f30,0x3b9,0x313,0x80001f31,0x3b9,0x314,0x80001f32,0x1f30,0x300,0x80001f33,0x1f31,0x300,
    0x80001f34,0x1f30,0x301,0x80001f35,0x1f31,0x301,0x80001f36,0x1f30,0x342,0x80001f37,0x1f31,0x342,
    0x80001f38,0x399,0x313,0x80001f39,0x399,0x314,0x80001f3a,0x1f38,0x300,0x80001f3b,0x1f39,0x300,
    0x80001f3c,0x1f38,0x301,0x80001f3d,0x1f39,0x301,0x80001f3e,0x1f38,0x342,0x80001f3f,0x1f39,0x342,
    0x80001f40,0x3bf,0x313,0x80001f41,0x3bf,0x314,0x80001f42,0x1f40,0x300,0x80001f43,0x1f41,0x300,
    0x80001f44,0x1f40,0x301,0x80001f45,0x1f41,0x301,0x80001f48,0x39f,0x313,0x80001f49,0x39f,0x314,
    0x80001f4a,0x1f48,0x300,0x80001f4b,0x1f49,0x300,0x80001f4c,0x1f48,0x301,0x80001f4d,0x1f49,0x301,
    0x80001f50,0x3c5,0x313,0x80001f51,0x3c5,0x314,0x80001f52,0x1f50,0x300,0x80001f53,0x1f51,0x300,
    0x80001f54,0x1f50,0x301,0x80001f55,0x1f51,0x301,0x80001f56,0x1f50,0x342,0x80001f57,0x1f51,0x342,
    0x80001f59,0x3a5,0x314,0x80001f5b,0x1f59,0x300,0x80001f5d,0x1f59,0x301,0x80001f5f,0x1f59,0x342,
    0x80001f60,0x3c9,0x313,0x80001f61,0x3c9,0x314,0x80001f62,0x1f60,0x300,0x80001f63,0x1f61,0x300,
    0x80001f64,0x1f60,0x301,0x80001f65,0x1f61,0x301,0x80001f66,0x1f60,0x342,0x80001f67,0x1f61,0x342,
    0x80001f68,0x3a9,0x313,0x80001f69,0x3a9,0x314,0x80001f6a,0x1f68,0x300,0x80001f6b,0x1f69,0x300,
    0x80001f6c,0x1f68,0x301,0x80001f6d,0x1f69,0x301,0x80001f6e,0x1f68,0x342,0x80001f6f,0x1f69,0x342,
    0x80001f70,0x3b1,0x300,0x1f71,0x3ac,0x0,0x80001f72,0x3b5,0x300,0x1f73,0x3ad,0x0,
    0x80001f74,0x3b7,0x300,0x1f75,0x3ae,0x0,0x80001f76,0x3b9,0x300,0x1f77,0x3af,0x0,
    0x80001f78,0x3bf,0x300,0x1f79,0x3cc,0x0,0x80001f7a,0x3c5,0x300,0x1f7b,0x3cd,0x0,
    0x80001f7c,0x3c9,0x300,0x1f7d,0x3ce,0x0,0x80001f80,0x1f00,0x345,0x80001f81,0x1f01,0x345,
    0x80001f82,0x1f02,0x345,0x80001f83,0x1f03,0x345,0x80001f84,0x1f04,0x345,0x80001f85,0x1f05,0x345,
    0x80001f86,0x1f06,0x345,0x80001f87,0x1f07,0x345,0x80001f88,0x1f08,0x345,0x80001f89,0x1f09,0x345,
    0x80001f8a,0x1f0a,0x345,0x80001f8b,0x1f0b,0x345,0x80001f8c,0x1f0c,0x345,0x80001f8d,0x1f0d,0x345,
    0x80001f8e,0x1f0e,0x345,0x80001f8f,0x1f0f,0x345,0x80001f90,0x1f20,0x345,0x80001f91,0x1f21,0x345,
    0x80001f92,0x1f22,0x345,0x80001f93,0x1f23,0x345,0x80001f94,0x1f24,0x345,0x80001f95,0x1f25,0x345,
    0x80001f96,0x1f26,0x345,0x80001f97,0x1f27,0x345,0x80001f98,0x1f28,0x345,0x80001f99,0x1f29,0x345,
    0x80001f9a,0x1f2a,0x345,0x80001f9b,0x1f2b,0x345,0x80001f9c,0x1f2c,0x345,0x80001f9d,0x1f2d,0x345,
    0x80001f9e,0x1f2e,0x345,0x80001f9f,0x1f2f,0x345,0x80001fa0,0x1f60,0x345,0x80001fa1,0x1f61,0x345,
    0x80001fa2,0x1f62,0x345,0x80001fa3,0x1f63,0x345,0x80001fa4,0x1f64,0x345,0x80001fa5,0x1f65,0x345,
    0x80001fa6,0x1f66,0x345,0x80001fa7,0x1f67,0x345,0x80001fa8,0x1f68,0x345,0x80001fa9,0x1f69,0x345,
    0x80001faa,0x1f6a,0x345,0x80001fab,0x1f6b,0x345,0x80001fac,0x1f6c,0x345,0x80001fad,0x1f6d,0x345,
    0x80001fae,0x1f6e,0x345,0x80001faf,0x1f6f,0x345,0x80001fb0,0x3b1,0x306,0x80001fb1,0x3b1,0x304,
    0x80001fb2,0x1f70,0x345,0x80001fb3,0x3b1,0x345,0x80001fb4,0x3ac,0x345,0x80001fb6,0x3b1,0x342,
    0x80001fb7,0x1fb6,0x345,0x80001fb8,0x391,0x306,0x80001fb9,0x391,0x304,0x80001fba,0x391,0x300,
    0x1fbb,0x386,0x0,0x80001fbc,0x391,0x345,0x1fbe,0x3b9,0x0,0x80001fc1,0xa8,0x342,
    0x80001fc2,0x1f74,0x345,0x80001fc3,0x3b7,0x345,0x80001fc4,0x3ae,0x345,0x80001fc6,0x3b7,0x342,
    0x80001fc7,0x1fc6,0x345,0x80001fc8,0x395,0x300,0x1fc9,0x388,0x0,0x80001fca,0x397,0x300,
    0x1fcb,0x389,0x0,0x80001fcc,0x397,0x345,0x80001fcd,0x1fbf,0x300,0x80001fce,0x1fbf,0x301,
    0x80001fcf,0x1fbf,0x342,0x80001fd0,0x3b9,0x306,0x80001fd1,0x3b9,0x304,0x80001fd2,0x3ca,0x300,
    0x1fd3,0x390,0x0,0x80001fd6,0x3b9,0x342,0x80001fd7,0x3ca,0x342,0x80001fd8,0x399,0x306,
    0x80001fd9,0x399,0x304,0x80001fda,0x399,0x300,0x1fdb,0x38a,0x0,0x80001fdd,0x1ffe,0x300,
    0x80001fde,0x1ffe,0x301,0x80001fdf,0x1ffe,0x342,0x80001fe0,0x3c5,0x306,0x80001fe1,0x3c5,0x304,
    0x80001fe2,0x3cb,0x300,0x1fe3,0x3b0,0x0,0x80001fe4,0x3c1,0x313,0x80001fe5,0x3c1,0x314,
    0x80001fe6,0x3c5,0x342,0x80001fe7,0x3cb,0x342,0x80001fe8,0x3a5,0x306,0x80001fe9,0x3a5,0x304,
    0x80001fea,0x3a5,0x300,0x1feb,0x38e,0x0,0x80001fec,0x3a1,0x314,0x80001fed,0xa8,0x300,
    0x1fee,0x385,0x0,0x1fef,0x60,0x0,0x80001ff2,0x1f7c,0x345,0x80001ff3,0x3c9,0x345,
    0x80001ff4,0x3ce,0x345,0x80001ff6,0x3c9,0x342,0x80001ff7,0x1ff6,0x345,0x80001ff8,0x39f,0x300,
    0x1ff9,0x38c,0x0,0x80001ffa,0x3a9,0x300,0x1ffb,0x38f,0x0,0x80001ffc,0x3a9,0x345,
    0x1ffd,0xb4,0x0,0x2000,0x2002,0x0,0x2001,0x2003,0x0,0x2126,0x3a9,0x0,
    0x212a,0x4b,0x0,0x212b,0xc5,0x0,0x8000219a,0x2190,0x338,0x8000219b,0x2192,0x338,
    0x800021ae,0x2194,0x338,0x800021cd,0x21d0,0x338,0x800021ce,0x21d4,0x338,0x800021cf,0x21d2,0x338,
    0x80002204,0x2203,0x338,0x80002209,0x2208,0x338,0x8000220c,0x220b,0x338,0x80002224,0x2223,0x338,
    0x80002226,0x2225,0x338,0x80002241,0x223c,0x338,0x80002244,0x2243,0x338,0x80002247,0x2245,0x338,
    0x80002249,0x2248,0x338,0x80002260,0x3d,0x338,0x80002262,0x2261,0x338,0x8000226d,0x224d,0x338,
    0x8000226e,0x3c,0x338,0x8000226f,0x3e,0x338,0x80002270,0x2264,0x338,0x80002271,0x2265,0x338,
    0x80002274,0x2272,0x338,0x80002275,0x2273,0x338,0x80002278,0x2276,0x338,0x80002279,0x2277,0x338,
    0x80002280,0x227a,0x338,0x80002281,0x227b,0x338,0x80002284,0x2282,0x338,0x80002285,0x2283,0x338,
    0x80002288,0x2286,0x338,0x80002289,0x2287,0x338,0x800022ac,0x22a2,0x338,0x800022ad,0x22a8,0x338,
    0x800022ae,0x22a9,0x338,0x800022af,0x22ab,0x338,0x800022e0,0x227c,0x338,0x800022e1,0x227d,0x338,
    0x800022e2,0x2291,0x338,0x800022e3,0x2292,0x338,0x800022ea,0x22b2,0x338,0x800022eb,0x22b3,0x338,
    0x800022ec,0x22b4,0x338,0x800022ed,0x22b5,0x338,0x2329,0x3008,0x0,0x232a,0x3009,0x0,
    0x2adc,0x2add,0x338,0x8000304c,0x304b,0x3099,0x8000304e,0x304d,0x3099,0x80003050,0x304f,0x3099,
    0x80003052,0x3051,0x3099,0x80003054,0x3053,0x3099,0x80003056,0x3055,0x3099,0x80003058,0x3057,0x3099,
    0x8000305a,0x3059,0x3099,0x8000305c,0x305b,0x3099,0x8000305e,0x305d,0x3099,0x80003060,0x305f,0x3099,
    0x80003062,0x3061,0x3099,0x80003065,0x3064,0x3099,0x80003067,0x3066,0x3099,0x80003069,0x3068,0x3099,
    0x80003070,0x306f,0x3099,0x80003071,0x306f,0x309a,0x80003073,0x3072,0x3099,0x80003074,0x3072,0x309a,
    0x80003076,0x3075,0x3099,0x80003077,0x3075,0x309a,0x80003079,0x3078,0x3099,0x8000307a,0x3078,0x309a,
    0x8000307c,0x307b,0x3099,0x8000307d,0x307b,0x309a,0x80003094,0x3046,0x3099,0x8000309e,0x309d,0x3099,
    0x800030ac,0x30ab,0x3099,0x800030ae,0x30ad,0x3099,0x800030b0,0x30af,0x3099,0x800030b2,0x30b1,0x3099,
    0x800030b4,0x30b3,0x3099,0x800030b6,0x30b5,0x3099,0x800030b8,0x30b7,0x3099,0x800030ba,0x30b9,0x3099,
    0x800030bc,0x30bb,0x3099,0x800030be,0x30bd,0x3099,0x800030c0,0x30bf,0x3099,0x800030c2,0x30c1,0x3099,
    0x800030c5,0x30c4,0x3099,0x800030c7,0x30c6,0x3099,0x800030c9,0x30c8,0x3099,0x800030d0,0x30cf,0x3099,
    0x800030d1,0x30cf,0x309a,0x800030d3,0x30d2,0x3099,0x800030d4,0x30d2,0x309a,0x800030d6,0x30d5,0x3099,
    0x800030d7,0x30d5,0x309a,0x800030d9,0x30d8,0x3099,0x800030da,0x30d8,0x309a,0x800030dc,0x30db,0x3099,
    0x800030dd,0x30db,0x309a,0x800030f4,0x30a6,0x3099,0x800030f7,0x30ef,0x3099,0x800030f8,0x30f0,0x3099,
    0x800030f9,0x30f1,0x3099,0x800030fa,0x30f2,0x3099,0x800030fe,0x30fd,0x3099,0xf900,0x8c48,0x0,
    0xf901,0x66f4,0x0,0xf902,0x8eca,0x0,0xf903,0x8cc8,0x0,0xf904,0x6ed1,0x0,
    0xf905,0x4e32,0x0,0xf906,0x53e5,0x0,0xf907,0x9f9c,0x0,0xf908,0x9f9c,0x0,
    0xf909,0x5951,0x0,0xf90a,0x91d1,0x0,0xf90b,0x5587,0x0,0xf90c,0x5948,0x0,
    0xf90d,0x61f6,0x0,0xf90e,0x7669,0x0,0xf90f,0x7f85,0x0,0xf910,0x863f,0x0,
    0xf911,0x87ba,0x0,0xf912,0x88f8,0x0,0xf913,0x908f,0x0,0xf914,0x6a02,0x0,
    0xf915,0x6d1b,0x0,0xf916,0x70d9,0x0,0xf917,0x73de,0x0,0xf918,0x843d,0x0,
    0xf919,0x916a,0x0,0xf91a,0x99f1,0x0,0xf91b,0x4e82,0x0,0xf91c,0x5375,0x0,
    0xf91d,0x6b04,0x0,0xf91e,0x721b,0x0,0xf91f,0x862d,0x0,0xf920,0x9e1e,0x0,
    0xf921,0x5d50,0x0,0xf922,0x6feb,0x0,0xf923,0x85cd,0x0,0xf924,0x8964,0x0,
    0xf925,0x62c9,0x0,0xf926,0x81d8,0x0,0xf927,0x881f,0x0,0xf928,0x5eca,0x0,
    0xf929,0x6717,0x0,0xf92a,0x6d6a,0x0,0xf92b,0x72fc,0x0,0xf92c,0x90ce,0x0,
    0xf92d,0x4f86,0x0,0xf92e,0x51b7,0x0,0xf92f,0x52de,0x0,0xf930,0x64c4,0x0,
    0xf931,0x6ad3,0x0,0xf932,0x7210,0x0,0xf933,0x76e7,0x0,0xf934,0x8001,0x0,
    0xf935,0x8606,0x0,0xf936,0x865c,0x0,0xf937,0x8def,0x0,0xf938,0x9732,0x0,
    0xf939,0x9b6f,0x0,0xf93a,0x9dfa,0x0,0xf93b,0x788c,0x0,0xf93c,0x797f,0x0,
    0xf93d,0x7da0,0x0,0xf93e,0x83c9,0x0,0xf93f,0x9304,0x0,0xf940,0x9e7f,0x0,
    0xf941,0x8ad6,0x0,0xf942,0x58df,0x0,0xf943,0x5f04,0x0,0xf944,0x7c60,0x0,
    0xf945,0x807e,0x0,0xf946,0x7262,0x0,0xf947,0x78ca,0x0,0xf948,0x8cc2,0x0,
    0xf949,0x96f7,0x0,0xf94a,0x58d8,0x0,0xf94b,0x5c62,0x0,0xf94c,0x6a13,0x0,
    0xf94d,0x6dda,0x0,0xf94e,0x6f0f,0x0,0xf94f,0x7d2f,0x0,0xf950,0x7e37,0x0,
    0xf951,0x964b,0x0,0xf952,0x52d2,0x0,0xf953,0x808b,0x0,0xf954,0x51dc,0x0,
    0xf955,0x51cc,0x0,0xf956,0x7a1c,0x0,0xf957,0x7dbe,0x0,0xf958,0x83f1,0x0,
    0xf959,0x9675,0x0,0xf95a,0x8b80,0x0,0xf95b,0x62cf,0x0,0xf95c,0x6a02,0x0,
    0xf95d,0x8afe,0x0,0xf95e,0x4e39,0x0,0xf95f,0x5be7,0x0,0xf960,0x6012,0x0,
    0xf961,0x7387,0x0,0xf962,0x7570,0x0,0xf963,0x5317,0x0,0xf964,0x78fb,0x0,
    0xf965,0x4fbf,0x0,0xf966,0x5fa9,0x0,0xf967,0x4e0d,0x0,0xf968,0x6ccc,0x0,
    0xf969,0x6578,0x0,0xf96a,0x7d22,0x0,0xf96b,0x53c3,0x0,0xf96c,0x585e,0x0,
    0xf96d,0x7701,0x0,0xf96e,0x8449,0x0,0xf96f,0x8aaa,0x0,0xf970,0x6bba,0x0,
    0xf971,0x8fb0,0x0,0xf972,0x6c88,0x0,0xf973,0x62fe,0x0,0xf974,0x82e5,0x0,
    0xf975,0x63a0,0x0,0xf976,0x7565,0x0,0xf977,0x4eae,0x0,0xf978,0x5169,0x0,
    0xf979,0x51c9,0x0,0xf97a,0x6881,0x0,0xf97b,0x7ce7,0x0,0xf97c,0x826f,0x0,
    0xf97d,0x8ad2,0x0,0xf97e,0x91cf,0x0,0xf97f,0x52f5,0x0,0xf980,0x5442,0x0,
    0xf981,0x5973,0x0,0xf982,0x5eec,0x0,0xf983,0x65c5,0x0,0xf984,0x6ffe,0x0,
    0xf985,0x792a,0x0,0xf986,0x95ad,0x0,0xf987,0x9a6a,0x0,0xf988,0x9e97,0x0,
    0xf989,0x9ece,0x0,0xf98a,0x529b,0x0,0xf98b,0x66c6,0x0,0xf98c,0x6b77,0x0,
    0xf98d,0x8f62,0x0,0xf98e,0x5e74,0x0,0xf98f,0x6190,0x0,0xf990,0x6200,0x0,
    0xf991,0x649a,0x0,0xf992,0x6f23,0x0,0xf993,0x7149,0x0,0xf994,0x7489,0x0,
    0xf995,0x79ca,0x0,0xf996,0x7df4,0x0,0xf997,0x806f,0x0,0xf998,0x8f26,0x0,
    0xf999,0x84ee,0x0,0xf99a,0x9023,0x0,0xf99b,0x934a,0x0,0xf99c,0x5217,0x0,
    0xf99d,0x52a3,0x0,0xf99e,0x54bd,0x0,0xf99f,0x70c8,0x0,0xf9a0,0x88c2,0x0,
    0xf9a1,0x8aaa,0x0,0xf9a2,0x5ec9,0x0,0xf9a3,0x5ff5,0x0,0xf9a4,0x637b,0x0,
    0xf9a5,0x6bae,0x0,0xf9a6,0x7c3e,0x0,0xf9a7,0x7375,0x0,0xf9a8,0x4ee4,0x0,
    0xf9a9,0x56f9,0x0,0xf9aa,0x5be7,0x0,0xf9ab,0x5dba,0x0,0xf9ac,0x601c,0x0,
    0xf9ad,0x73b2,0x0,0xf9ae,0x7469,0x0,0xf9af,0x7f9a,0x0,0xf9b0,0x8046,0x0,
    0xf9b1,0x9234,0x0,0xf9b2,0x96f6,0x0,0xf9b3,0x9748,0x0,0xf9b4,0x9818,0x0,
    0xf9b5,0x4f8b,0x0,0xf9b6,0x79ae,0x0,0xf9b7,0x91b4,0x0,0xf9b8,0x96b8,0x0,
    0xf9b9,0x60e1,0x0,0xf9ba,0x4e86,0x0,0xf9bb,0x50da,0x0,0xf9bc,0x5bee,0x0,
    0xf9bd,0x5c3f,0x0,0xf9be,0x6599,0x0,0xf9bf,0x6a02,0x0,0xf9c0,0x71ce,0x0,
    0xf9c1,0x7642,0x0,0xf9c2,0x84fc,0x0,0xf9c3,0x907c,0x0,0xf9c4,0x9f8d,0x0,
    0xf9c5,0x6688,0x0,0xf9c6,0x962e,0x0,0xf9c7,0x5289,0x0,0xf9c8,0x677b,0x0,
    0xf9c9,0x67f3,0x0,0xf9ca,0x6d41,0x0,0xf9cb,0x6e9c,0x0,0xf9cc,0x7409,0x0,
    0xf9cd,0x7559,0x0,0xf9ce,0x786b,0x0,0xf9cf,0x7d10,0x0,0xf9d0,0x985e,0x0,
    0xf9d1,0x516d,0x0,0xf9d2,0x622e,0x0,0xf9d3,0x9678,0x0,0xf9d4,0x502b,0x0,
    0xf9d5,0x5d19,0x0,0xf9d6,0x6dea,0x0,0xf9d7,0x8f2a,0x0,0xf9d8,0x5f8b,0x0,
    0xf9d9,0x6144,0x0,0xf9da,0x6817,0x0,0xf9db,0x7387,0x0,0xf9dc,0x9686,0x0,
    0xf9dd,0x5229,0x0,0xf9de,0x540f,0x0,0xf9df,0x5c65,0x0,0xf9e0,0x6613,0x0,
    0xf9e1,0x674e,0x0,0xf9e2,0x68a8,0x0,0xf9e3,0x6ce5,0x0,0xf9e4,0x7406,0x0,
    0xf9e5,0x75e2,0x0,0xf9e6,0x7f79,0x0,0xf9e7,0x88cf,0x0,0xf9e8,0x88e1,0x0,
    0xf9e9,0x91cc,0x0,0xf9ea,0x96e2,0x0,0xf9eb,0x533f,0x0,0xf9ec,0x6eba,0x0,
    0xf9ed,0x541d,0x0,0xf9ee,0x71d0,0x0,0xf9ef,0x7498,0x0,0xf9f0,0x85fa,0x0,
    0xf9f1,0x96a3,0x0,0xf9f2,0x9c57,0x0,0xf9f3,0x9e9f,0x0,0xf9f4,0x6797,0x0,
    0xf9f5,0x6dcb,0x0,0xf9f6,0x81e8,0x0,0xf9f7,0x7acb,0x0,0xf9f8,0x7b20,0x0,
    0xf9f9,0x7c92,0x0,0xf9fa,0x72c0,0x0,0xf9fb,0x7099,0x0,0xf9fc,0x8b58,0x0,
    0xf9fd,0x4ec0,0x0,0xf9fe,0x8336,0x0,0xf9ff,0x523a,0x0,0xfa00,0x5207,0x0,
    0xfa01,0x5ea6,0x0,0xfa02,0x62d3,0x0,0xfa03,0x7cd6,0x0,0xfa04,0x5b85,0x0,
    0xfa05,0x6d1e,0x0,0xfa06,0x66b4,0x0,0xfa07,0x8f3b,0x0,0xfa08,0x884c,0x0,
    0xfa09,0x964d,0x0,0xfa0a,0x898b,0x0,0xfa0b,0x5ed3,0x0,0xfa0c,0x5140,0x0,
    0xfa0d,0x55c0,0x0,0xfa10,0x585a,0x0,0xfa12,0x6674,0x0,0xfa15,0x51de,0x0,
    0xfa16,0x732a,0x0,0xfa17,0x76ca,0x0,0xfa18,0x793c,0x0,0xfa19,0x795e,0x0,
    0xfa1a,0x7965,0x0,0xfa1b,0x798f,0x0,0xfa1c,0x9756,0x0,0xfa1d,0x7cbe,0x0,
    0xfa1e,0x7fbd,0x0,0xfa20,0x8612,0x0,0xfa22,0x8af8,0x0,0xfa25,0x9038,0x0,
    0xfa26,0x90fd,0x0,0xfa2a,0x98ef,0x0,0xfa2b,0x98fc,0x0,0xfa2c,0x9928,0x0,
    0xfa2d,0x9db4,0x0,0xfa2e,0x90de,0x0,0xfa2f,0x96b7,0x0,0xfa30,0x4fae,0x0,
    0xfa31,0x50e7,0x0,0xfa32,0x514d,0x0,0xfa33,0x52c9,0x0,0xfa34,0x52e4,0x0,
    0xfa35,0x5351,0x0,0xfa36,0x559d,0x0,0xfa37,0x5606,0x0,0xfa38,0x5668,0x0,
    0xfa39,0x5840,0x0,0xfa3a,0x58a8,0x0,0xfa3b,0x5c64,0x0,0xfa3c,0x5c6e,0x0,
    0xfa3d,0x6094,0x0,0xfa3e,0x6168,0x0,0xfa3f,0x618e,0x0,0xfa40,0x61f2,0x0,
    0xfa41,0x654f,0x0,0xfa42,0x65e2,0x0,0xfa43,0x6691,0x0,0xfa44,0x6885,0x0,
    0xfa45,0x6d77,0x0,0xfa46,0x6e1a,0x0,0xfa47,0x6f22,0x0,0xfa48,0x716e,0x0,
    0xfa49,0x722b,0x0,0xfa4a,0x7422,0x0,0xfa4b,0x7891,0x0,0xfa4c,0x793e,0x0,
    0xfa4d,0x7949,0x0,0xfa4e,0x7948,0x0,0xfa4f,0x7950,0x0,0xfa50,0x7956,0x0,
    0xfa51,0x795d,0x0,0xfa52,0x798d,0x0,0xfa53,0x798e,0x0,0xfa54,0x7a40,0x0,
    0xfa55,0x7a81,0x0,0xfa56,0x7bc0,0x0,0xfa57,0x7df4,0x0,0xfa58,0x7e09,0x0,
    0xfa59,0x7e41,0x0,0xfa5a,0x7f72,0x0,0xfa5b,0x8005,0x0,0xfa5c,0x81ed,0x0,
    0xfa5d,0x8279,0x0,0xfa5e,0x8279,0x0,0xfa5f,0x8457,0x0,0xfa60,0x8910,0x0,
    0xfa61,0x8996,0x0,0xfa62,0x8b01,0x0,0xfa63,0x8b39,0x0,0xfa64,0x8cd3,0x0,
    0xfa65,0x8d08,0x0,0xfa66,0x8fb6,0x0,0xfa67,0x9038,0x0,0xfa68,0x96e3,0x0,
    0xfa69,0x97ff,0x0,0xfa6a,0x983b,0x0,0xfa6b,0x6075,0x0,0xfa6c,0x242ee,0x0,
    0xfa6d,0x8218,0x0,0xfa70,0x4e26,0x0,0xfa71,0x51b5,0x0,0xfa72,0x5168,0x0,
    0xfa73,0x4f80,0x0,0xfa74,0x5145,0x0,0xfa75,0x5180,0x0,0xfa76,0x52c7,0x0,
    0xfa77,0x52fa,0x0,0xfa78,0x559d,0x0,0xfa79,0x5555,0x0,0xfa7a,0x5599,0x0,
    0xfa7b,0x55e2,0x0,0xfa7c,0x585a,0x0,0xfa7d,0x58b3,0x0,0xfa7e,0x5944,0x0,
    0xfa7f,0x5954,0x0,0xfa80,0x5a62,0x0,0xfa81,0x5b28,0x0,0xfa82,0x5ed2,0x0,
    0xfa83,0x5ed9,0x0,0xfa84,0x5f69,0x0,0xfa85,0x5fad,0x0,0xfa86,0x60d8,0x0,
    0xfa87,0x614e,0x0,0xfa88,0x6108,0x0,0xfa89,0x618e,0x0,0xfa8a,0x6160,0x0,
    0xfa8b,0x61f2,0x0,0xfa8c,0x6234,0x0,0xfa8d,0x63c4,0x0,0xfa8e,0x641c,0x0,
    0xfa8f,0x6452,0x0,0xfa90,0x6556,0x0,0xfa91,0x6674,0x0,0xfa92,0x6717,0x0,
    0xfa93,0x671b,0x0,0xfa94,0x6756,0x0,0xfa95,0x6b79,0x0,0xfa96,0x6bba,0x0,
    0xfa97,0x6d41,0x0,0xfa98,0x6edb,0x0,0xfa99,0x6ecb,0x0,0xfa9a,0x6f22,0x0,
    0xfa9b,0x701e,0x0,0xfa9c,0x716e,0x0,0xfa9d,0x77a7,0x0,0xfa9e,0x7235,0x0,
    0xfa9f,0x72af,0x0,0xfaa0,0x732a,0x0,0xfaa1,0x7471,0x0,0xfaa2,0x7506,0x0,
    0xfaa3,0x753b,0x0,0xfaa4,0x761d,0x0,0xfaa5,0x761f,0x0,0xfaa6,0x76ca,0x0,
    0xfaa7,0x76db,0x0,0xfaa8,0x76f4,0x0,0xfaa9,0x774a,0x0,0xfaaa,0x7740,0x0,
    0xfaab,0x78cc,0x0,0xfaac,0x7ab1,0x0,0xfaad,0x7bc0,0x0,0xfaae,0x7c7b,0x0,
    0xfaaf,0x7d5b,0x0,0xfab0,0x7df4,0x0,0xfab1,0x7f3e,0x0,0xfab2,0x8005,0x0,
    0xfab3,0x8352,0x0,0xfab4,0x83ef,0x0,0xfab5,0x8779,0x0,0xfab6,0x8941,0x0,
    0xfab7,0x8986,0x0,0xfab8,0x8996,0x0,0xfab9,0x8abf,0x0,0xfaba,0x8af8,0x0,
    0xfabb,0x8acb,0x0,0xfabc,0x8b01,0x0,0xfabd,0x8afe,0x0,0xfabe,0x8aed,0x0,
    0xfabf,0x8b39,0x0,0xfac0,0x8b8a,0x0,0xfac1,0x8d08,0x0,0xfac2,0x8f38,0x0,
    0xfac3,0x9072,0x0,0xfac4,0x9199,0x0,0xfac5,0x9276,0x0,0xfac6,0x967c,0x0,
    0xfac7,0x96e3,0x0,0xfac8,0x9756,0x0,0xfac9,0x97db,0x0,0xfaca,0x97ff,0x0,
    0xfacb,0x980b,0x0,0xfacc,0x983b,0x0,0xfacd,0x9b12,0x0,0xface,0x9f9c,0x0,
    0xfacf,0x2284a,0x0,0xfad0,0x22844,0x0,0xfad1,0x233d5,0x0,0xfad2,0x3b9d,0x0,
    0xfad3,0x4018,0x0,0xfad4,0x4039,0x0,0xfad5,0x25249,0x0,0xfad6,0x25cd0,0x0,
    0xfad7,0x27ed3,0x0,0xfad8,0x9f43,0x0,0xfad9,0x9f8e,0x0,0xfb1d,0x5d9,0x5b4,
    0xfb1f,0x5f2,0x5b7,0xfb2a,0x5e9,0x5c1,0xfb2b,0x5e9,0x5c2,0xfb2c,0xfb49,0x5c1,
    0xfb2d,0xfb49,0x5c2,0xfb2e,0x5d0,0x5b7,0xfb2f,0x5d0,0x5b8,0xfb30,0x5d0,0x5bc,
    0xfb31,0x5d1,0x5bc,0xfb32,0x5d2,0x5bc,0xfb33,0x5d3,0x5bc,0xfb34,0x5d4,0x5bc,
    0xfb35,0x5d5,0x5bc,0xfb36,0x5d6,0x5bc,0xfb38,0x5d8,0x5bc,0xfb39,0x5d9,0x5bc,
    0xfb3a,0x5da,0x5bc,0xfb3b,0x5db,0x5bc,0xfb3c,0x5dc,0x5bc,0xfb3e,0x5de,0x5bc,
    0xfb40,0x5e0,0x5bc,0xfb41,0x5e1,0x5bc,0xfb43,0x5e3,0x5bc,0xfb44,0x5e4,0x5bc,
    0xfb46,0x5e6,0x5bc,0xfb47,0x5e7,0x5bc,0xfb48,0x5e8,0x5bc,0xfb49,0x5e9,0x5bc,
    0xfb4a,0x5ea,0x5bc,0xfb4b,0x5d5,0x5b9,0xfb4c,0x5d1,0x5bf,0xfb4d,0x5db,0x5bf,
    0xfb4e,0x5e4,0x5bf,0x8001109a,0x11099,0x110ba,0x8001109c,0x1109b,0x110ba,0x800110ab,0x110a5,0x110ba,
    0x8001112e,0x11131,0x11127,0x8001112f,0x11132,0x11127,0x8001134b,0x11347,0x1133e,0x8001134c,0x11347,0x11357,
    0x800114bb,0x114b9,0x114ba,0x800114bc,0x114b9,0x114b0,0x800114be,0x114b9,0x114bd,0x800115ba,0x115b8,0x115af,
    0x800115bb,0x115b9,0x115af,0x1d15e,0x1d157,0x1d165,0x1d15f,0x1d158,0x1d165,0x1d160,0x1d15f,0x1d16e,
    0x1d161,0x1d15f,0x1d16f,0x1d162,0x1d15f,0x1d170,0x1d163,0x1d15f,0x1d171,0x1d164,0x1d15f,0x1d172,
    0x1d1bb,0x1d1b9,0x1d165,0x1d1bc,0x1d1ba,0x1d165,0x1d1bd,0x1d1bb,0x1d16e,0x1d1be,0x1d1bc,0x1d16e,
    0x1d1bf,0x1d1bb,0x1d16f,0x1d1c0,0x1d1bc,0x1d16f,0x2f800,0x4e3d,0x0,0x2f801,0x4e38,0x0,
    0x2f802,0x4e41,0x0,0x2f803,0x20122,0x0,0x2f804,0x4f60,0x0,0x2f805,0x4fae,0x0,
    0x2f806,0x4fbb,0x0,0x2f807,0x5002,0x0,0x2f808,0x507a,0x0,0x2f809,0x5099,0x0,
    0x2f80a,0x50e7,0x0,0x2f80b,0x50cf,0x0,0x2f80c,0x349e,0x0,0x2f80d,0x2063a,0x0,
    0x2f80e,0x514d,0x0,0x2f80f,0x5154,0x0,0x2f810,0x5164,0x0,0x2f811,0x5177,0x0,
    0x2f812,0x2051c,0x0,0x2f813,0x34b9,0x0,0x2f814,0x5167,0x0,0x2f815,0x518d,0x0,
    0x2f816,0x2054b,0x0,0x2f817,0x5197,0x0,0x2f818,0x51a4,0x0,0x2f819,0x4ecc,0x0,
    0x2f81a,0x51ac,0x0,0x2f81b,0x51b5,0x0,0x2f81c,0x291df,0x0,0x2f81d,0x51f5,0x0,
    0x2f81e,0x5203,0x0,0x2f81f,0x34df,0x0,0x2f820,0x523b,0x0,0x2f821,0x5246,0x0,
    0x2f822,0x5272,0x0,0x2f823,0x5277,0x0,0x2f824,0x3515,0x0,0x2f825,0x52c7,0x0,
    0x2f826,0x52c9,0x0,0x2f827,0x52e4,0x0,0x2f828,0x52fa,0x0,0x2f829,0x5305,0x0,
    0x2f82a,0x5306,0x0,0x2f82b,0x5317,0x0,0x2f82c,0x5349,0x0,0x2f82d,0x5351,0x0,
    0x2f82e,0x535a,0x0,0x2f82f,0x5373,0x0,0x2f830,0x537d,0x0,0x2f831,0x537f,0x0,
    0x2f832,0x537f,0x0,0x2f833,0x537f,0x0,0x2f834,0x20a2c,0x0,0x2f835,0x7070,0x0,
    0x2f836,0x53ca,0x0,0x2f837,0x53df,0x0,0x2f838,0x20b63,0x0,0x2f839,0x53eb,0x0,
    0x2f83a,0x53f1,0x0,0x2f83b,0x5406,0x0,0x2f83c,0x549e,0x0,0x2f83d,0x5438,0x0,
    0x2f83e,0x5448,0x0,0x2f83f,0x5468,0x0,0x2f840,0x54a2,0x0,0x2f841,0x54f6,0x0,
    0x2f842,0x5510,0x0,0x2f843,0x5553,0x0,0x2f844,0x5563,0x0,0x2f845,0x5584,0x0,
    0x2f846,0x5584,0x0,0x2f847,0x5599,0x0,0x2f848,0x55ab,0x0,0x2f849,0x55b3,0x0,
    0x2f84a,0x55c2,0x0,0x2f84b,0x5716,0x0,0x2f84c,0x5606,0x0,0x2f84d,0x5717,0x0,
    0x2f84e,0x5651,0x0,0x2f84f,0x5674,0x0,0x2f850,0x5207,0x0,0x2f851,0x58ee,0x0,
    0x2f852,0x57ce,0x0,0x2f853,0x57f4,0x0,0x2f854,0x580d,0x0,0x2f855,0x578b,0x0,
    0x2f856,0x5832,0x0,0x2f857,0x5831,0x0,0x2f858,0x58ac,0x0,0x2f859,0x214e4,0x0,
    0x2f85a,0x58f2,0x0,0x2f85b,0x58f7,0x0,0x2f85c,0x5906,0x0,0x2f85d,0x591a,0x0,
    0x2f85e,0x5922,0x0,0x2f85f,0x5962,0x0,0x2f860,0x216a8,0x0,0x2f861,0x216ea,0x0,
    0x2f862,0x59ec,0x0,0x2f863,0x5a1b,0x0,0x2f864,0x5a27,0x0,0x2f865,0x59d8,0x0,
    0x2f866,0x5a66,0x0,0x2f867,0x36ee,0x0,0x2f868,0x36fc,0x0,0x2f869,0x5b08,0x0,
    0x2f86a,0x5b3e,0x0,0x2f86b,0x5b3e,0x0,0x2f86c,0x219c8,0x0,0x2f86d,0x5bc3,0x0,
    0x2f86e,0x5bd8,0x0,0x2f86f,0x5be7,0x0,0x2f870,0x5bf3,0x0,0x2f871,0x21b18,0x0,
    0x2f872,0x5bff,0x0,0x2f873,0x5c06,0x0,0x2f874,0x5f53,0x0,0x2f875,0x5c22,0x0,
    0x2f876,0x3781,0x0,0x2f877,0x5c60,0x0,0x2f878,0x5c6e,0x0,0x2f879,0x5cc0,0x0,
    0x2f87a,0x5c8d,0x0,0x2f87b,0x21de4,0x0,0x2f87c,0x5d43,0x0,0x2f87d,0x21de6,0x0,
    0x2f87e,0x5d6e,0x0,0x2f87f,0x5d6b,0x0,0x2f880,0x5d7c,0x0,0x2f881,0x5de1,0x0,
    0x2f882,0x5de2,0x0,0x2f883,0x382f,0x0,0x2f884,0x5dfd,0x0,0x2f885,0x5e28,0x0,
    0x2f886,0x5e3d,0x0,0x2f887,0x5e69,0x0,0x2f888,0x3862,0x0,0x2f889,0x22183,0x0,
    0x2f88a,0x387c,0x0,0x2f88b,0x5eb0,0x0,0x2f88c,0x5eb3,0x0,0x2f88d,0x5eb6,0x0,
    0x2f88e,0x5eca,0x0,0x2f88f,0x2a392,0x0,0x2f890,0x5efe,0x0,0x2f891,0x22331,0x0,
    0x2f892,0x22331,0x0,0x2f893,0x8201,0x0,0x2f894,0x5f22,0x0,0x2f895,0x5f22,0x0,
    0x2f896,0x38c7,0x0,0x2f897,0x232b8,0x0,0x2f898,0x261da,0x0,0x2f899,0x5f62,0x0,
    0x2f89a,0x5f6b,0x0,0x2f89b,0x38e3,0x0,0x2f89c,0x5f9a,0x0,0x2f89d,0x5fcd,0x0,
    0x2f89e,0x5fd7,0x0,0x2f89f,0x5ff9,0x0,0x2f8a0,0x6081,0x0,0x2f8a1,0x393a,0x0,
    0x2f8a2,0x391c,0x0,0x2f8a3,0x6094,0x0,0x2f8a4,0x226d4,0x0,0x2f8a5,0x60c7,0x0,
    0x2f8a6,0x6148,0x0,0x2f8a7,0x614c,0x0,0x2f8a8,0x614e,0x0,0x2f8a9,0x614c,0x0,
    0x2f8aa,0x617a,0x0,0x2f8ab,0x618e,0x0,0x2f8ac,0x61b2,0x0,0x2f8ad,0x61a4,0x0,
    0x2f8ae,0x61af,0x0,0x2f8af,0x61de,0x0,0x2f8b0,0x61f2,0x0,0x2f8b1,0x61f6,0x0,
    0x2f8b2,0x6210,0x0,0x2f8b3,0x621b,0x0,0x2f8b4,0x625d,0x0,0x2f8b5,0x62b1,0x0,
    0x2f8b6,0x62d4,0x0,0x2f8b7,0x6350,0x0,0x2f8b8,0x22b0c,0x0,0x2f8b9,0x633d,0x0,
    0x2f8ba,0x62fc,0x0,0x2f8bb,0x6368,0x0,0x2f8bc,0x6383,0x0,0x2f8bd,0x63e4,0x0,
    0x2f8be,0x22bf1,0x0,0x2f8bf,0x6422,0x0,0x2f8c0,0x63c5,0x0,0x2f8c1,0x63a9,0x0,
    0x2f8c2,0x3a2e,0x0,0x2f8c3,0x6469,0x0,0x2f8c4,0x647e,0x0,0x2f8c5,0x649d,0x0,
    0x2f8c6,0x6477,0x0,0x2f8c7,0x3a6c,0x0,0x2f8c8,0x654f,0x0,0x2f8c9,0x656c,0x0,
    0x2f8ca,0x2300a,0x0,0x2f8cb,0x65e3,0x0,0x2f8cc,0x66f8,0x0,0x2f8cd,0x6649,0x0,
    0x2f8ce,0x3b19,0x0,0x2f8cf,0x6691,0x0,0x2f8d0,0x3b08,0x0,0x2f8d1,0x3ae4,0x0,
    0x2f8d2,0x5192,0x0,0x2f8d3,0x5195,0x0,0x2f8d4,0x6700,0x0,0x2f8d5,0x669c,0x0,
    0x2f8d6,0x80ad,0x0,0x2f8d7,0x43d9,0x0,0x2f8d8,0x6717,0x0,0x2f8d9,0x671b,0x0,
    0x2f8da,0x6721,0x0,0x2f8db,0x675e,0x0,0x2f8dc,0x6753,0x0,0x2f8dd,0x233c3,0x0,
    0x2f8de,0x3b49,0x0,0x2f8df,0x67fa,0x0,0x2f8e0,0x6785,0x0,0x2f8e1,0x6852,0x0,
    0x2f8e2,0x6885,0x0,0x2f8e3,0x2346d,0x0,0x2f8e4,0x688e,0x0,0x2f8e5,0x681f,0x0,
    0x2f8e6,0x6914,0x0,0x2f8e7,0x3b9d,0x0,0x2f8e8,0x6942,0x0,0x2f8e9,0x69a3,0x0,
    0x2f8ea,0x69ea,0x0,0x2f8eb,0x6aa8,0x0,0x2f8ec,0x236a3,0x0,0x2f8ed,0x6adb,0x0,
    0x2f8ee,0x3c18,0x0,0x2f8ef,0x6b21,0x0,0x2f8f0,0x238a7,0x0,0x2f8f1,0x6b54,0x0,
    0x2f8f2,0x3c4e,0x0,0x2f8f3,0x6b72,0x0,0x2f8f4,0x6b9f,0x0,0x2f8f5,0x6bba,0x0,
    0x2f8f6,0x6bbb,0x0,0x2f8f7,0x23a8d,0x0,0x2f8f8,0x21d0b,0x0,0x2f8f9,0x23afa,0x0,
    0x2f8fa,0x6c4e,0x0,0x2f8fb,0x23cbc,0x0,0x2f8fc,0x6cbf,0x0,0x2f8fd,0x6ccd,0x0,
    0x2f8fe,0x6c67,0x0,0x2f8ff,0x6d16,0x0,0x2f900,0x6d3e,0x0,0x2f901,0x6d77,0x0,
    0x2f902,0x6d41,0x0,0x2f903,0x6d69,0x0,0x2f904,0x6d78,0x0,0x2f905,0x6d85,0x0,
    0x2f906,0x23d1e,0x0,0x2f907,0x6d34,0x0,0x2f908,0x6e2f,0x0,0x2f909,0x6e6e,0x0,
    0x2f90a,0x3d33,0x0,0x2f90b,0x6ecb,0x0,0x2f90c,0x6ec7,0x0,0x2f90d,0x23ed1,0x0,
    0x2f90e,0x6df9,0x0,0x2f90f,0x6f6e,0x0,0x2f910,0x23f5e,0x0,0x2f911,0x23f8e,0x0,
    0x2f912,0x6fc6,0x0,0x2f913,0x7039,0x0,0x2f914,0x701e,0x0,0x2f915,0x701b,0x0,
    0x2f916,0x3d96,0x0,0x2f917,0x704a,0x0,0x2f918,0x707d,0x0,0x2f919,0x7077,0x0,
    0x2f91a,0x70ad,0x0,0x2f91b,0x20525,0x0,0x2f91c,0x7145,0x0,0x2f91d,0x24263,0x0,
    0x2f91e,0x719c,0x0,0x2f91f,0x243ab,0x0,0x2f920,0x7228,0x0,0x2f921,0x7235,0x0,
    0x2f922,0x7250,0x0,0x2f923,0x24608,0x0,0x2f924,0x7280,0x0,0x2f925,0x7295,0x0,
    0x2f926,0x24735,0x0,0x2f927,0x24814,0x0,0x2f928,0x737a,0x0,0x2f929,0x738b,0x0,
    0x2f92a,0x3eac,0x0,0x2f92b,0x73a5,0x0,0x2f92c,0x3eb8,0x0,0x2f92d,0x3eb8,0x0,
    0x2f92e,0x7447,0x0,0x2f92f,0x745c,0x0,0x2f930,0x7471,0x0,0x2f931,0x7485,0x0,
    0x2f932,0x74ca,0x0,0x2f933,0x3f1b,0x0,0x2f934,0x7524,0x0,0x2f935,0x24c36,0x0,
    0x2f936,0x753e,0x0,0x2f937,0x24c92,0x0,0x2f938,0x7570,0x0,0x2f939,0x2219f,0x0,
    0x2f93a,0x7610,0x0,0x2f93b,0x24fa1,0x0,0x2f93c,0x24fb8,0x0,0x2f93d,0x25044,0x0,
    0x2f93e,0x3ffc,0x0,0x2f93f,0x4008,0x0,0x2f940,0x76f4,0x0,0x2f941,0x250f3,0x0,
    0x2f942,0x250f2,0x0,0x2f943,0x25119,0x0,0x2f944,0x25133,0x0,0x2f945,0x771e,0x0,
    0x2f946,0x771f,0x0,0x2f947,0x771f,0x0,0x2f948,0x774a,0x0,0x2f949,0x4039,0x0,
    0x2f94a,0x778b,0x0,0x2f94b,0x4046,0x0,0x2f94c,0x4096,0x0,0x2f94d,0x2541d,0x0,
    0x2f94e,0x784e,0x0,0x2f94f,0x788c,0x0,0x2f950,0x78cc,0x0,0x2f951,0x40e3,0x0,
    0x2f952,0x25626,0x0,0x2f953,0x7956,0x0,0x2f954,0x2569a,0x0,0x2f955,0x256c5,0x0,
    0x2f956,0x798f,0x0,0x2f957,0x79eb,0x0,0x2f958,0x412f,0x0,0x2f959,0x7a40,0x0,
    0x2f95a,0x7a4a,0x0,0x2f95b,0x7a4f,0x0,0x2f95c,0x2597c,0x0,0x2f95d,0x25aa7,0x0,
    0x2f95e,0x25aa7,0x0,0x2f95f,0x7aee,0x0,0x2f960,0x4202,0x0,0x2f961,0x25bab,0x0,
    0x2f962,0x7bc6,0x0,0x2f963,0x7bc9,0x0,0x2f964,0x4227,0x0,0x2f965,0x25c80,0x0,
    0x2f966,0x7cd2,0x0,0x2f967,0x42a0,0x0,0x2f968,0x7ce8,0x0,0x2f969,0x7ce3,0x0,
    0x2f96a,0x7d00,0x0,0x2f96b,0x25f86,0x0,0x2f96c,0x7d63,0x0,0x2f96d,0x4301,0x0,
    0x2f96e,0x7dc7,0x0,0x2f96f,0x7e02,0x0,0x2f970,0x7e45,0x0,0x2f971,0x4334,0x0,
    0x2f972,0x26228,0x0,0x2f973,0x26247,0x0,0x2f974,0x4359,0x0,0x2f975,0x262d9,0x0,
    0x2f976,0x7f7a,0x0,0x2f977,0x2633e,0x0,0x2f978,0x7f95,0x0,0x2f979,0x7ffa,0x0,
    0x2f97a,0x8005,0x0,0x2f97b,0x264da,0x0,0x2f97c,0x26523,0x0,0x2f97d,0x8060,0x0,
    0x2f97e,0x265a8,0x0,0x2f97f,0x8070,0x0,0x2f980,0x2335f,0x0,0x2f981,0x43d5,0x0,
    0x2f982,0x80b2,0x0,0x2f983,0x8103,0x0,0x2f984,0x440b,0x0,0x2f985,0x813e,0x0,
    0x2f986,0x5ab5,0x0,0x2f987,0x267a7,0x0,0x2f988,0x267b5,0x0,0x2f989,0x23393,0x0,
    0x2f98a,0x2339c,0x0,0x2f98b,0x8201,0x0,0x2f98c,0x8204,0x0,0x2f98d,0x8f9e,0x0,
    0x2f98e,0x446b,0x0,0x2f98f,0x8291,0x0,0x2f990,0x828b,0x0,0x2f991,0x829d,0x0,
    0x2f992,0x52b3,0x0,0x2f993,0x82b1,0x0,0x2f994,0x82b3,0x0,0x2f995,0x82bd,0x0,
    0x2f996,0x82e6,0x0,0x2f997,0x26b3c,0x0,0x2f998,0x82e5,0x0,0x2f999,0x831d,0x0,
    0x2f99a,0x8363,0x0,0x2f99b,0x83ad,0x0,0x2f99c,0x8323,0x0,0x2f99d,0x83bd,0x0,
    0x2f99e,0x83e7,0x0,0x2f99f,0x8457,0x0,0x2f9a0,0x8353,0x0,0x2f9a1,0x83ca,0x0,
    0x2f9a2,0x83cc,0x0,0x2f9a3,0x83dc,0x0,0x2f9a4,0x26c36,0x0,0x2f9a5,0x26d6b,0x0,
    0x2f9a6,0x26cd5,0x0,0x2f9a7,0x452b,0x0,0x2f9a8,0x84f1,0x0,0x2f9a9,0x84f3,0x0,
    0x2f9aa,0x8516,0x0,0x2f9ab,0x273ca,0x0,0x2f9ac,0x8564,0x0,0x2f9ad,0x26f2c,0x0,
    0x2f9ae,0x455d,0x0,0x2f9af,0x4561,0x0,0x2f9b0,0x26fb1,0x0,0x2f9b1,0x270d2,0x0,
    0x2f9b2,0x456b,0x0,0x2f9b3,0x8650,0x0,0x2f9b4,0x865c,0x0,0x2f9b5,0x8667,0x0,
    0x2f9b6,0x8669,0x0,0x2f9b7,0x86a9,0x0,0x2f9b8,0x8688,0x0,0x2f9b9,0x870e,0x0,
    0x2f9ba,0x86e2,0x0,0x2f9bb,0x8779,0x0,0x2f9bc,0x8728,0x0,0x2f9bd,0x876b,0x0,
    0x2f9be,0x8786,0x0,0x2f9bf,0x45d7,0x0,0x2f9c0,0x87e1,0x0,0x2f9c1,0x8801,0x0,
    0x2f9c2,0x45f9,0x0,0x2f9c3,0x8860,0x0,0x2f9c4,0x8863,0x0,0x2f9c5,0x27667,0x0,
    0x2f9c6,0x88d7,0x0,0x2f9c7,0x88de,0x0,0x2f9c8,0x4635,0x0,0x2f9c9,0x88fa,0x0,
    0x2f9ca,0x34bb,0x0,0x2f9cb,0x278ae,0x0,0x2f9cc,0x27966,0x0,0x2f9cd,0x46be,0x0,
    0x2f9ce,0x46c7,0x0,0x2f9cf,0x8aa0,0x0,0x2f9d0,0x8aed,0x0,0x2f9d1,0x8b8a,0x0,
    0x2f9d2,0x8c55,0x0,0x2f9d3,0x27ca8,0x0,0x2f9d4,0x8cab,0x0,0x2f9d5,0x8cc1,0x0,
    0x2f9d6,0x8d1b,0x0,0x2f9d7,0x8d77,0x0,0x2f9d8,0x27f2f,0x0,0x2f9d9,0x20804,0x0,
    0x2f9da,0x8dcb,0x0,0x2f9db,0x8dbc,0x0,0x2f9dc,0x8df0,0x0,0x2f9dd,0x208de,0x0,
    0x2f9de,0x8ed4,0x0,0x2f9df,0x8f38,0x0,0x2f9e0,0x285d2,0x0,0x2f9e1,0x285ed,0x0,
    0x2f9e2,0x9094,0x0,0x2f9e3,0x90f1,0x0,0x2f9e4,0x9111,0x0,0x2f9e5,0x2872e,0x0,
    0x2f9e6,0x911b,0x0,0x2f9e7,0x9238,0x0,0x2f9e8,0x92d7,0x0,0x2f9e9,0x92d8,0x0,
    0x2f9ea,0x927c,0x0,0x2f9eb,0x93f9,0x0,0x2f9ec,0x9415,0x0,0x2f9ed,0x28bfa,0x0,
    0x2f9ee,0x958b,0x0,0x2f9ef,0x4995,0x0,0x2f9f0,0x95b7,0x0,0x2f9f1,0x28d77,0x0,
    0x2f9f2,0x49e6,0x0,0x2f9f3,0x96c3,0x0,0x2f9f4,0x5db2,0x0,0x2f9f5,0x9723,0x0,
    0x2f9f6,0x29145,0x0,0x2f9f7,0x2921a,0x0,0x2f9f8,0x4a6e,0x0,0x2f9f9,0x4a76,0x0,
    0x2f9fa,0x97e0,0x0,0x2f9fb,0x2940a,0x0,0x2f9fc,0x4ab2,0x0,0x2f9fd,0x29496,0x0,
    0x2f9fe,0x980b,0x0,0x2f9ff,0x980b,0x0,0x2fa00,0x9829,0x0,0x2fa01,0x295b6,0x0,
    0x2fa02,0x98e2,0x0,0x2fa03,0x4b33,0x0,0x2fa04,0x9929,0x0,0x2fa05,0x99a7,0x0,
    0x2fa06,0x99c2,0x0,0x2fa07,0x99fe,0x0,0x2fa08,0x4bce,0x0,0x2fa09,0x29b30,0x0,
    0x2fa0a,0x9b12,0x0,0x2fa0b,0x9c40,0x0,0x2fa0c,0x9cfd,0x0,0x2fa0d,0x4cce,0x0,
    0x2fa0e,0x4ced,0x0,0x2fa0f,0x9d67,0x0,0x2fa10,0x2a0ce,0x0,0x2fa11,0x4cf8,0x0,
    0x2fa12,0x2a105,0x0,0x2fa13,0x2a20e,0x0,0x2fa14,0x2a291,0x0,0x2fa15,0x9ebb,0x0,
    0x2fa16,0x4d56,0x0,0x2fa17,0x9ef9,0x0,0x2fa18,0x9efe,0x0,0x2fa19,0x9f05,0x0,
    0x2fa1a,0x9f0f,0x0,0x2fa1b,0x9f16,0x0,0x2fa1c,0x9f3b,0x0,0x2fa1d,0x2a600,0x0,
};
/* END generated Unicode tables */

static int lomo__u_inr(const uint32_t *t, size_t n, uint32_t c, int stride) { /* range table lookup: index or -1 */
    size_t lo = 0, hi = n / (size_t)stride;
    while (lo < hi) {
        size_t m = (lo + hi) / 2;
        if (c < t[m * stride]) hi = m;
        else if (c > t[m * stride + 1]) lo = m + 1;
        else return (int)m;
    }
    return -1;
}
#define LOMO__NEL(a) (sizeof(a) / sizeof((a)[0]))
enum { LOMO__C_L = 1, LOMO__C_N = 2, LOMO__C_WS = 4 };
static int lomo__u_ws(uint32_t c) { /* Unicode White_Space (what Oniguruma's \s matches) */
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) ||
           c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}
static int lomo__u_class(uint32_t c) {
    if (c < 128) {
        if ((c | 32) >= 'a' && (c | 32) <= 'z') return LOMO__C_L;
        if (c >= '0' && c <= '9') return LOMO__C_N;
        return lomo__u_ws(c) ? LOMO__C_WS : 0;
    }
    if (lomo__u_inr(lomo__u_L, LOMO__NEL(lomo__u_L), c, 2) >= 0) return LOMO__C_L;
    if (lomo__u_inr(lomo__u_N, LOMO__NEL(lomo__u_N), c, 2) >= 0) return LOMO__C_N;
    return lomo__u_ws(c) ? LOMO__C_WS : 0;
}
static int lomo__u_word(uint32_t c) { return lomo__u_inr(lomo__u_W, LOMO__NEL(lomo__u_W), c, 2) >= 0; } /* Rust regex \w */
static int lomo__u_ccc(uint32_t c) {
    int k;
    if (c < 0x300) return 0;
    k = lomo__u_inr(lomo__u_cccs, LOMO__NEL(lomo__u_cccs), c, 3);
    return k < 0 ? 0 : (int)lomo__u_cccs[k * 3 + 2];
}
/* decodes one character of valid UTF-8 */
static int lomo__u8(const unsigned char *s, uint32_t *cp) {
    if (s[0] < 0x80) { *cp = s[0]; return 1; }
    if (s[0] < 0xe0) { *cp = ((uint32_t)(s[0] & 0x1f) << 6) | (s[1] & 0x3f); return 2; }
    if (s[0] < 0xf0) { *cp = ((uint32_t)(s[0] & 0x0f) << 12) | ((uint32_t)(s[1] & 0x3f) << 6) | (s[2] & 0x3f); return 3; }
    *cp = ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3f) << 12) | ((uint32_t)(s[2] & 0x3f) << 6) | (s[3] & 0x3f);
    return 4;
}
static int lomo__u8enc(uint32_t cp, char *o) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xc0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
    if (cp < 0x10000) { o[0] = (char)(0xe0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[2] = (char)(0x80 | (cp & 0x3f)); return 3; }
    o[0] = (char)(0xf0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* ---- growable arrays ---- */
static int lomo__grow(void **p, size_t *cap, size_t need, size_t el) {
    size_t c = *cap ? *cap : 16;
    void *q;
    if (need <= *cap) return 0;
    while (c < need) { if (c > ((size_t)1 << 40) / el) return lomo__fail("tokenizer: out of memory"); c *= 2; }
    if (!(q = LOMO_MALLOC(c * el))) return lomo__fail("tokenizer: out of memory");
    if (*cap) memcpy(q, *p, *cap * el);
    LOMO_FREE(*p);
    *p = q; *cap = c;
    return 0;
}

/* Text with the input byte range [a, b) that every byte came from. */
typedef struct lomo__ns { char *p; int64_t *a, *b; size_t n, cap; } lomo__ns;
static int lomo__ns_reserve(lomo__ns *s, size_t need) {
    size_t c = s->cap, c2 = s->cap, c3 = s->cap;
    if (need <= s->cap) return 0;
    if (lomo__grow((void **)&s->p, &c, need + 1, 1) || lomo__grow((void **)&s->a, &c2, need + 1, 8) ||
        lomo__grow((void **)&s->b, &c3, need + 1, 8)) return -1;
    s->cap = c < c2 ? (c < c3 ? c : c3) : (c2 < c3 ? c2 : c3);
    return 0;
}
static int lomo__ns_push(lomo__ns *s, const char *p, size_t n, int64_t a, int64_t b) {
    size_t i;
    if (lomo__ns_reserve(s, s->n + n)) return -1;
    for (i = 0; i < n; i++) { s->p[s->n + i] = p[i]; s->a[s->n + i] = a; s->b[s->n + i] = b; }
    s->n += n;
    return 0;
}
static void lomo__ns_free(lomo__ns *s) { LOMO_FREE(s->p); LOMO_FREE(s->a); LOMO_FREE(s->b); memset(s, 0, sizeof *s); }

/* ---- hash map: byte strings -> int32 (open addressing) ---- */
static uint64_t lomo__hash(const char *s, size_t n) {
    uint64_t h = 0x9e3779b97f4a7c15ull ^ (n * 0xff51afd7ed558ccdull);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) { uint64_t w; memcpy(&w, s + i, 8); h = (h ^ w) * 0xbf58476d1ce4e5b9ull; h ^= h >> 29; }
    if (i < n) { uint64_t w = 0; memcpy(&w, s + i, n - i); h = (h ^ w) * 0x94d049bb133111ebull; h ^= h >> 31; }
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 32);
}
typedef struct lomo__smap { int32_t *slot; size_t mask; } lomo__smap; /* slots hold ids; strings from the tokenizer */

/* ---- tokenizer ---- */
enum { LOMO__N_NFC = 1, LOMO__N_NFD, LOMO__N_PREPEND, LOMO__N_REPLACE };
enum { LOMO__P_SPLIT = 1, LOMO__P_BYTELEVEL, LOMO__P_METASPACE, LOMO__P_DIGITS };
enum { LOMO__RX_NONE = 0, LOMO__RX_GPT2, LOMO__RX_LLAMA3, LOMO__RX_QWEN2 };
enum { LOMO__B_REMOVED, LOMO__B_ISOLATED, LOMO__B_PREV, LOMO__B_NEXT, LOMO__B_CONTIG };
enum { LOMO__D_BYTELEVEL = 1, LOMO__D_METASPACE, LOMO__D_REPLACE, LOMO__D_BYTEFALLBACK, LOMO__D_FUSE, LOMO__D_STRIP };
enum { LOMO__PS_ALWAYS, LOMO__PS_FIRST, LOMO__PS_NEVER };

typedef struct lomo__tkop {
    int type;
    char *s1, *s2; size_t n1, n2;   /* normalizer Prepend/Replace, Split string, Metaspace replacement, decoder Replace/Strip */
    int rx, behavior, invert;       /* Split */
    int prefix_space, use_regex;    /* ByteLevel */
    int scheme, split;              /* Metaspace */
    int individual;                 /* Digits */
    int start, stop;                /* Strip */
} lomo__tkop;

typedef struct lomo__added { int32_t id; char *s; size_t n; char *pat; size_t npat; int special, normalized, lstrip, rstrip, single_word; } lomo__added;

typedef struct lomo__cache_e { uint64_t h; uint32_t koff, klen, voff, vn; } lomo__cache_e;

struct lomo_tokenizer {
    char *path;
    int32_t nvocab;                 /* 1 + largest id */
    char *arena; size_t arena_n;    /* every token string, NUL-terminated */
    int64_t *voff; int32_t *vlen;   /* model vocab string of id (voff -1: none) */
    int32_t *added_of;              /* index into added[] of id, or -1 */
    lomo__smap vmap;                /* model vocab string -> id */
    lomo__added *added; int nadded;
    int32_t *aidx[2]; int32_t abkt[2][257]; /* added tokens by first byte (longest first): [0] raw, [1] normalized */
    /* merges: (a, b) -> rank, new id */
    uint64_t *mkey; int32_t *mrank, *mnew; size_t mmask;
    int byte_fallback, fuse_unk, ignore_merges; int32_t unk_id; int has_unk;
    char *cprefix, *eowsuffix; size_t ncprefix, neowsuffix;
    int32_t byte_id[256];
    lomo__tkop *norm; int nnorm;
    lomo__tkop *pre; int npre;
    lomo__tkop *dec; int ndec; int has_decoder;
    int32_t *tmpl; int ntmpl; int has_tmpl;     /* single template: ids, INT32_MIN for $A */
    int trim_offsets, trim_prefix_space;        /* ByteLevel post-processor */
    uint32_t *comp; int ncomp;                  /* NFC composition pairs (a, b, c), sorted */
    char bl_chr[256][2]; unsigned char bl_len[256]; int16_t bl_byte[324]; /* GPT-2 byte <-> char */
    /* word cache (guarded by a try-lock: concurrent callers skip it) */
    lomo__cache_e *cache; size_t cache_mask, cache_used; char *ckey; size_t ckey_n, ckey_cap;
    int32_t *cval; size_t cval_n, cval_cap; char cache_lock;
};

static const char *lomo__tk_str(const lomo_tokenizer *tk, int32_t id, size_t *n) {
    if (id < 0 || id >= tk->nvocab) return NULL;
    if (tk->added_of[id] >= 0) {  /* a normalized added token is known by its normalized content, as in tokenizers */
        const lomo__added *a = &tk->added[tk->added_of[id]];
        *n = a->normalized ? a->npat : a->n;
        return a->normalized ? a->pat : a->s;
    }
    if (tk->voff[id] < 0) return NULL;
    *n = (size_t)tk->vlen[id];
    return tk->arena + tk->voff[id];
}
static int32_t lomo__vfind(const lomo_tokenizer *tk, const char *s, size_t n) {
    size_t i;
    if (!tk->vmap.slot) return -1;
    for (i = (size_t)lomo__hash(s, n) & tk->vmap.mask;; i = (i + 1) & tk->vmap.mask) {
        int32_t id = tk->vmap.slot[i];
        if (id < 0) return -1;
        if ((size_t)tk->vlen[id] == n && !memcmp(tk->arena + tk->voff[id], s, n)) return id;
    }
}
static uint64_t lomo__mix64(uint64_t x) { x ^= x >> 33; x *= 0xff51afd7ed558ccdull; x ^= x >> 33; return x; }
static int lomo__mfind(const lomo_tokenizer *tk, int32_t a, int32_t b, int32_t *rank, int32_t *nid) {
    uint64_t k = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i;
    if (!tk->mkey) return 0;
    for (i = (size_t)lomo__mix64(k) & tk->mmask;; i = (i + 1) & tk->mmask) {
        if (tk->mkey[i] == ~0ull) return 0;
        if (tk->mkey[i] == k) { *rank = tk->mrank[i]; *nid = tk->mnew[i]; return 1; }
    }
}

/* ---- normalizers ---- */
static int lomo__dec_find(uint32_t c) {
    size_t lo = 0, hi = LOMO__NEL(lomo__u_dec) / 3;
    while (lo < hi) {
        size_t m = (lo + hi) / 2;
        uint32_t v = lomo__u_dec[m * 3] & 0x7fffffffu;
        if (c < v) hi = m; else if (c > v) lo = m + 1; else return (int)m;
    }
    return -1;
}
/* A code point of the decomposed text; w: how many input characters it stands
   for (1 for the first of a decomposition, 0 for the rest, summed by composition).
   Input ranges are then given out by position, as tokenizers' transform() does
   with the changes of unicode-normalization-alignments. */
typedef struct lomo__cps { uint32_t c; int32_t w; } lomo__cps;
static int lomo__decompose(uint32_t c, int32_t w, lomo__cps **v, size_t *n, size_t *cap) {
    int k;
    if (c >= 0xac00 && c < 0xac00 + 11172) {  /* Hangul syllable */
        uint32_t s = c - 0xac00, t = s % 28;
        if (lomo__decompose(0x1100 + s / 588, w, v, n, cap) || lomo__decompose(0x1161 + (s % 588) / 28, 0, v, n, cap)) return -1;
        return t ? lomo__decompose(0x11a7 + t, 0, v, n, cap) : 0;
    }
    if (c >= 0xc0 && (k = lomo__dec_find(c)) >= 0) {
        if (lomo__decompose(lomo__u_dec[k * 3 + 1], w, v, n, cap)) return -1;
        return lomo__u_dec[k * 3 + 2] ? lomo__decompose(lomo__u_dec[k * 3 + 2], 0, v, n, cap) : 0;
    }
    if (lomo__grow((void **)v, cap, *n + 1, sizeof **v)) return -1;
    (*v)[*n].c = c; (*v)[*n].w = w; (*n)++;
    return 0;
}
static uint32_t lomo__compose(const lomo_tokenizer *tk, uint32_t a, uint32_t b) {
    int lo = 0, hi = tk->ncomp;
    if (a >= 0x1100 && a < 0x1113 && b >= 0x1161 && b < 0x1176) return 0xac00 + ((a - 0x1100) * 21 + (b - 0x1161)) * 28;
    if (a >= 0xac00 && a < 0xac00 + 11172 && (a - 0xac00) % 28 == 0 && b > 0x11a7 && b < 0x11c3) return a + (b - 0x11a7);
    while (lo < hi) {
        int m = (lo + hi) / 2;
        const uint32_t *e = tk->comp + 3 * m;
        if (a < e[0] || (a == e[0] && b < e[1])) hi = m;
        else if (a > e[0] || b > e[1]) lo = m + 1;
        else return e[2];
    }
    return 0;
}
static int lomo__cmp_comp(const void *x, const void *y) {
    const uint32_t *a = (const uint32_t *)x, *b = (const uint32_t *)y;
    if (a[0] != b[0]) return a[0] < b[0] ? -1 : 1;
    return a[1] < b[1] ? -1 : a[1] > b[1];
}
static int lomo__nfx(const lomo_tokenizer *tk, lomo__ns *s, int compose) {
    lomo__cps *v = NULL;
    int64_t *ia = NULL;
    size_t n = 0, cap = 0, i, o, nin = 0, off;
    lomo__ns out;
    int rc = -1;
    memset(&out, 0, sizeof out);
    for (i = 0; i < s->n; i++) if ((unsigned char)s->p[i] >= 0xcc) break; /* below U+0300 nothing changes */
    if (i == s->n) return 0;
    if (!(ia = (int64_t *)LOMO_MALLOC(2 * (s->n + 1) * sizeof *ia))) return lomo__fail("tokenizer: out of memory");
    for (i = 0; i < s->n;) {
        uint32_t c;
        int k = lomo__u8((const unsigned char *)s->p + i, &c);
        ia[2 * nin] = s->a[i]; ia[2 * nin + 1] = s->b[i]; nin++;
        if (lomo__decompose(c, 1, &v, &n, &cap)) goto done;
        i += (size_t)k;
    }
    for (i = 1; i < n; i++) {  /* canonical ordering: stable sort of each run of non-starters */
        size_t j = i;
        int cj = lomo__u_ccc(v[j].c);
        while (j > 0 && cj && lomo__u_ccc(v[j - 1].c) > cj) { lomo__cps t = v[j]; v[j] = v[j - 1]; v[j - 1] = t; j--; }
    }
    o = n;
    if (compose && n) {
        size_t sp = 0;
        int last = lomo__u_ccc(v[0].c) ? 256 : 0;
        o = 1;
        for (i = 1; i < n; i++) {
            int cc = lomo__u_ccc(v[i].c);
            uint32_t comp = (last < cc || last == 0) ? lomo__compose(tk, v[sp].c, v[i].c) : 0;
            if (comp) { v[sp].c = comp; v[sp].w += v[i].w; continue; }
            if (!cc) sp = o;
            last = cc;
            v[o++] = v[i];
        }
    }
    for (i = 0, off = 0; i < o; i++) {
        char e[4];
        int k = lomo__u8enc(v[i].c, e);
        size_t at = v[i].w > 0 ? off : (off ? off - 1 : 0);
        if (at >= nin) at = nin - 1;
        if (lomo__ns_push(&out, e, (size_t)k, ia[2 * at], ia[2 * at + 1])) goto done;
        off += (size_t)v[i].w;
    }
    lomo__ns_free(s);
    *s = out; out.p = NULL; out.a = out.b = NULL;
    rc = 0;
done:
    LOMO_FREE(v);
    LOMO_FREE(ia);
    lomo__ns_free(&out);
    return rc;
}
/* replaces every occurrence of pat by rep */
static int lomo__ns_replace(lomo__ns *s, const char *pat, size_t np, const char *rep, size_t nr) {
    lomo__ns out;
    memset(&out, 0, sizeof out);
    size_t i = 0;
    if (s->n < np || !memchr(s->p, pat[0], s->n)) return 0;
    while (i < s->n) {
        if (i + np <= s->n && !memcmp(s->p + i, pat, np)) {
            /* the new text is "inserted after" the removed match: the range of its last byte, as in tokenizers */
            if (lomo__ns_push(&out, rep, nr, s->a[i + np - 1], s->b[i + np - 1])) { lomo__ns_free(&out); return -1; }
            i += np;
        } else {
            if (lomo__ns_push(&out, s->p + i, 1, s->a[i], s->b[i])) { lomo__ns_free(&out); return -1; }
            i++;
        }
    }
    lomo__ns_free(s);
    *s = out;
    return 0;
}
static int lomo__ns_prepend(lomo__ns *s, const char *p, size_t n) {
    size_t i;
    int64_t a, b;
    if (!s->n) return 0;
    a = s->a[0]; b = s->b[0];
    if (lomo__ns_reserve(s, s->n + n)) return -1;
    memmove(s->p + n, s->p, s->n); memmove(s->a + n, s->a, s->n * 8); memmove(s->b + n, s->b, s->n * 8);
    for (i = 0; i < n; i++) { s->p[i] = p[i]; s->a[i] = a; s->b[i] = b; }
    s->n += n;
    return 0;
}
static int lomo__normalize(const lomo_tokenizer *tk, lomo__ns *s) {
    int i;
    for (i = 0; i < tk->nnorm; i++) {
        const lomo__tkop *op = &tk->norm[i];
        int rc = 0;
        if (op->type == LOMO__N_NFC || op->type == LOMO__N_NFD) rc = lomo__nfx(tk, s, op->type == LOMO__N_NFC);
        else if (op->type == LOMO__N_PREPEND) rc = lomo__ns_prepend(s, op->s1, op->n1);
        else if (op->type == LOMO__N_REPLACE) rc = lomo__ns_replace(s, op->s1, op->n1, op->s2, op->n2);
        if (rc) return -1;
    }
    return 0;
}

/* ---- pre-tokenization: the text is cut into segments [sb[k], sb[k+1]); sid[k] >= 0: an added token ---- */
typedef struct lomo__segs { size_t *sb; int32_t *sid; size_t n, cap, cap2; } lomo__segs;
static int lomo__seg_add(lomo__segs *g, size_t start, size_t end, int32_t id) {
    if (end <= start) return 0;
    if (lomo__grow((void **)&g->sb, &g->cap, 2 * (g->n + 1), sizeof *g->sb) ||
        lomo__grow((void **)&g->sid, &g->cap2, g->n + 1, sizeof *g->sid)) return -1;
    g->sb[2 * g->n] = start; g->sb[2 * g->n + 1] = end; g->sid[g->n] = id;
    g->n++;
    return 0;
}
static void lomo__segs_free(lomo__segs *g) { LOMO_FREE(g->sb); LOMO_FREE(g->sid); memset(g, 0, sizeof *g); }

/* One match of the split regex at p (end offset), or 0 if none starts there. */
static size_t lomo__rx_at(int rx, const unsigned char *s, size_t p, size_t e) {
    uint32_t c0, c1 = 0;
    int k0 = lomo__u8(s + p, &c0), k1 = 0, cl0 = lomo__u_class(c0), cl1 = -1;
    size_t q, j;
#define LOMO__CL_AT(pos, cpv, kk) ((kk) = lomo__u8(s + (pos), &(cpv)), lomo__u_class(cpv))
    if (p + (size_t)k0 < e) { cl1 = LOMO__CL_AT(p + (size_t)k0, c1, k1); }
    if (c0 == '\'' && p + 1 < e) {  /* contractions: 's 't 're 've 'm 'll 'd (case-insensitive but GPT-2) */
        int ci = rx != LOMO__RX_GPT2;
        uint32_t x = c1, y = 0;
        if (ci && x == 0x17f) x = 's';           /* U+017F LONG S folds to s */
        if (ci && x < 128) x |= 32;
        if (x == 's' || x == 't' || x == 'm' || x == 'd') return p + 1 + (size_t)k1;
        if ((x == 'r' || x == 'v' || x == 'l') && p + 1 + (size_t)k1 < e) {
            y = s[p + 1 + k1];
            if (ci && y < 128) y |= 32;
            if ((x == 'l' && y == 'l') || (x != 'l' && y == 'e')) return p + 1 + (size_t)k1 + 1;
        }
    }
    if (rx == LOMO__RX_GPT2) {
        int kk = 0;
        uint32_t cc;
        int want;
        q = p; 
        if (c0 == ' ' && cl1 >= 0 && cl1 != LOMO__C_WS) q = p + 1;
        if (q < e) {
            int cq = LOMO__CL_AT(q, cc, kk);
            want = cq;
            if (cq != LOMO__C_WS) {  /* ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+' */
                j = q;
                while (j < e && LOMO__CL_AT(j, cc, kk) == want) j += (size_t)kk;
                return j;
            }
        }
    } else {
        if (cl0 == LOMO__C_L || (cl1 == LOMO__C_L && c0 != '\r' && c0 != '\n' && cl0 != LOMO__C_N)) {  /* [^\r\n\p{L}\p{N}]?\p{L}+ */
            uint32_t cc; int kk;
            j = cl0 == LOMO__C_L ? p : p + (size_t)k0;
            while (j < e && LOMO__CL_AT(j, cc, kk) == LOMO__C_L) j += (size_t)kk;
            return j;
        }
        if (cl0 == LOMO__C_N) {  /* \p{N}{1,3} or \p{N} */
            uint32_t cc; int kk, m = 1, lim = rx == LOMO__RX_LLAMA3 ? 3 : 1;
            j = p + (size_t)k0;
            while (m < lim && j < e && LOMO__CL_AT(j, cc, kk) == LOMO__C_N) { j += (size_t)kk; m++; }
            return j;
        }
        q = (c0 == ' ' && cl1 == 0) ? p + 1 : p;  /* ' ?[^\s\p{L}\p{N}]+[\r\n]*' */
        if (q < e) {
            uint32_t cc; int kk;
            if (LOMO__CL_AT(q, cc, kk) == 0) {
                j = q;
                while (j < e && LOMO__CL_AT(j, cc, kk) == 0) j += (size_t)kk;
                while (j < e && (s[j] == '\r' || s[j] == '\n')) j++;
                return j;
            }
        }
        if (cl0 == LOMO__C_WS) {  /* \s*[\r\n]+ : up to the last CR/LF of the whitespace run */
            uint32_t cc; int kk;
            size_t last = 0;
            int found = 0;
            j = p;
            while (j < e && LOMO__CL_AT(j, cc, kk) == LOMO__C_WS) { if (cc == '\r' || cc == '\n') { last = j; found = 1; } j += (size_t)kk; }
            if (found) return last + 1;
        }
    }
    if (cl0 == LOMO__C_WS) {  /* \s+(?!\S) then \s+ */
        uint32_t cc; int kk;
        size_t prev = p;
        j = p;
        while (j < e && LOMO__CL_AT(j, cc, kk) == LOMO__C_WS) { prev = j; j += (size_t)kk; }
        if (j == e || prev == p) return j;
        return prev;
    }
#undef LOMO__CL_AT
    return 0;
}

/* Splits every non-token segment with op: the segment as a list of pieces
   (gap or match), then the behaviour folded over it as NormalizedString::split does. */
static int lomo__pre_split(const lomo__tkop *op, const lomo__ns *s, lomo__segs *g) {
    lomo__segs out;
    memset(&out, 0, sizeof out);
    size_t k, *pc = NULL, npc = 0, pcap = 0, i;
    for (k = 0; k < g->n; k++) {
        size_t st = g->sb[2 * k], en = g->sb[2 * k + 1], p = st, last = st, base = out.n;
        if (g->sid[k] >= 0) { if (lomo__seg_add(&out, st, en, g->sid[k])) goto fail; continue; }
        npc = 0;
        while (p < en) {
            size_t me = 0;
            if (op->type == LOMO__P_SPLIT && op->rx) me = lomo__rx_at(op->rx, (const unsigned char *)s->p, p, en);
            else if (op->type == LOMO__P_DIGITS) {
                uint32_t c;   /* char::is_numeric: \p{N} */
                int k0 = lomo__u8((const unsigned char *)s->p + p, &c);
                if (lomo__u_class(c) == LOMO__C_N) {
                    me = p + (size_t)k0;
                    while (!op->individual && me < en && (k0 = lomo__u8((const unsigned char *)s->p + me, &c), lomo__u_class(c) == LOMO__C_N)) me += (size_t)k0;
                }
            } else me = (p + op->n1 <= en && !memcmp(s->p + p, op->s1, op->n1)) ? p + op->n1 : 0;  /* String / Metaspace */
            if (me > p) {
                if (lomo__grow((void **)&pc, &pcap, 3 * (npc + 2), sizeof *pc)) goto fail;
                if (p > last) { pc[3 * npc] = last; pc[3 * npc + 1] = p; pc[3 * npc + 2] = 0; npc++; }
                pc[3 * npc] = p; pc[3 * npc + 1] = me; pc[3 * npc + 2] = 1; npc++;
                last = p = me;
            } else {
                uint32_t c;
                p += (size_t)lomo__u8((const unsigned char *)s->p + p, &c);
            }
        }
        if (lomo__grow((void **)&pc, &pcap, 3 * (npc + 2), sizeof *pc)) goto fail;
        if (en > last) { pc[3 * npc] = last; pc[3 * npc + 1] = en; pc[3 * npc + 2] = 0; npc++; }
        if (op->invert) for (i = 0; i < npc; i++) pc[3 * i + 2] ^= 1;
        switch (op->behavior) {
        case LOMO__B_REMOVED:
            for (i = 0; i < npc; i++) if (!pc[3 * i + 2] && lomo__seg_add(&out, pc[3 * i], pc[3 * i + 1], -1)) goto fail;
            break;
        case LOMO__B_ISOLATED:
            for (i = 0; i < npc; i++) if (lomo__seg_add(&out, pc[3 * i], pc[3 * i + 1], -1)) goto fail;
            break;
        case LOMO__B_CONTIG: case LOMO__B_PREV: {
            size_t prev = 0;
            for (i = 0; i < npc; i++) {
                size_t m = pc[3 * i + 2];
                int merge = op->behavior == LOMO__B_CONTIG ? (m == prev) : (m && !prev);
                if (merge && out.n > base) out.sb[2 * (out.n - 1) + 1] = pc[3 * i + 1];
                else if (lomo__seg_add(&out, pc[3 * i], pc[3 * i + 1], -1)) goto fail;
                prev = m;
            }
            break;
        }
        default: {  /* MergedWithNext: the same fold from the right */
            size_t prev = 0, nb = out.n, q;
            for (i = npc; i-- > 0;) {
                size_t m = pc[3 * i + 2];
                if (m && !prev && out.n > nb) out.sb[2 * (out.n - 1)] = pc[3 * i];
                else if (lomo__seg_add(&out, pc[3 * i], pc[3 * i + 1], -1)) goto fail;
                prev = m;
            }
            for (q = 0; q < (out.n - nb) / 2; q++) {  /* back to text order */
                size_t x = nb + q, y = out.n - 1 - q, t0 = out.sb[2 * x], t1 = out.sb[2 * x + 1];
                out.sb[2 * x] = out.sb[2 * y]; out.sb[2 * x + 1] = out.sb[2 * y + 1];
                out.sb[2 * y] = t0; out.sb[2 * y + 1] = t1;
            }
            break;
        }
        }
    }
    LOMO_FREE(pc);
    lomo__segs_free(g);
    *g = out;
    return 0;
fail:
    LOMO_FREE(pc);
    lomo__segs_free(&out);
    return -1;
}

/* Rebuilds the text segment by segment: ByteLevel (prefix space, byte -> char) or Metaspace (space -> replacement, prepend). */
static int lomo__pre_map(const lomo_tokenizer *tk, const lomo__tkop *op, lomo__ns *s, lomo__segs *g) {
    lomo__ns out;
    memset(&out, 0, sizeof out);
    size_t k, i;
    if (lomo__ns_reserve(&out, s->n * 2 + g->n * 4 + 1)) { lomo__ns_free(&out); return -1; }
    for (k = 0; k < g->n; k++) {
        size_t st = g->sb[2 * k], en = g->sb[2 * k + 1], nst = out.n;
        if (g->sid[k] < 0) {
            if (op->type == LOMO__P_BYTELEVEL) {
                if (op->prefix_space && s->p[st] != ' ' &&
                    lomo__ns_push(&out, tk->bl_chr[(unsigned char)' '], tk->bl_len[(unsigned char)' '], s->a[st], s->b[st])) goto fail;
                if (lomo__ns_reserve(&out, out.n + 2 * (en - st))) goto fail;
                for (i = st; i < en; i++) {
                    unsigned char c = (unsigned char)s->p[i];
                    out.p[out.n] = tk->bl_chr[c][0]; out.a[out.n] = s->a[i]; out.b[out.n] = s->b[i]; out.n++;
                    if (tk->bl_len[c] == 2) { out.p[out.n] = tk->bl_chr[c][1]; out.a[out.n] = s->a[i]; out.b[out.n] = s->b[i]; out.n++; }
                }
            } else {
                int pre = 0;
                if (!(en - st >= op->n1 && !memcmp(s->p + st, op->s1, op->n1)) && s->p[st] != ' ')
                    pre = op->scheme == LOMO__PS_ALWAYS || (op->scheme == LOMO__PS_FIRST && s->a[st] == 0);
                if (pre && lomo__ns_push(&out, op->s1, op->n1, s->a[st], s->b[st])) goto fail;
                for (i = st; i < en; i++) {
                    if (s->p[i] == ' ') { if (lomo__ns_push(&out, op->s1, op->n1, s->a[i], s->b[i])) goto fail; }
                    else if (lomo__ns_push(&out, s->p + i, 1, s->a[i], s->b[i])) goto fail;
                }
            }
        } else if (lomo__ns_push(&out, s->p + st, en - st, 0, 0)) goto fail;
        if (g->sid[k] >= 0) for (i = 0; i < en - st; i++) { out.a[nst + i] = s->a[st + i]; out.b[nst + i] = s->b[st + i]; }
        g->sb[2 * k] = nst; g->sb[2 * k + 1] = out.n;
    }
    lomo__ns_free(s);
    *s = out;
    return 0;
fail:
    lomo__ns_free(&out);
    return -1;
}

static int lomo__pretokenize(const lomo_tokenizer *tk, lomo__ns *s, lomo__segs *g) {
    int i;
    for (i = 0; i < tk->npre; i++) {
        const lomo__tkop *op = &tk->pre[i];
        if (op->type == LOMO__P_SPLIT || op->type == LOMO__P_DIGITS) { if (lomo__pre_split(op, s, g)) return -1; }
        else if (op->type == LOMO__P_BYTELEVEL) {
            if (op->use_regex) {
                lomo__tkop rx = *op;
                rx.type = LOMO__P_SPLIT; rx.rx = LOMO__RX_GPT2; rx.behavior = LOMO__B_ISOLATED; rx.invert = 0;
                if (op->prefix_space) {
                    size_t k;
                    lomo__ns t;
                    memset(&t, 0, sizeof t);
                    lomo__segs g2;
                    memset(&g2, 0, sizeof g2);
                    for (k = 0; k < g->n; k++) {
                        size_t st = g->sb[2 * k], en = g->sb[2 * k + 1], nst = t.n;
                        if (g->sid[k] < 0 && s->p[st] != ' ' && lomo__ns_push(&t, " ", 1, s->a[st], s->b[st])) { lomo__ns_free(&t); lomo__segs_free(&g2); return -1; }
                        if (lomo__ns_reserve(&t, t.n + en - st)) { lomo__ns_free(&t); lomo__segs_free(&g2); return -1; }
                        memcpy(t.p + t.n, s->p + st, en - st); memcpy(t.a + t.n, s->a + st, (en - st) * 8); memcpy(t.b + t.n, s->b + st, (en - st) * 8);
                        t.n += en - st;
                        if (lomo__seg_add(&g2, nst, t.n, g->sid[k])) { lomo__ns_free(&t); lomo__segs_free(&g2); return -1; }
                    }
                    lomo__ns_free(s); *s = t; lomo__segs_free(g); *g = g2;
                }
                if (lomo__pre_split(&rx, s, g)) return -1;
                rx = *op; rx.prefix_space = 0;
                if (lomo__pre_map(tk, &rx, s, g)) return -1;
            } else if (lomo__pre_map(tk, op, s, g)) return -1;
        } else if (op->type == LOMO__P_METASPACE) {
            if (lomo__pre_map(tk, op, s, g)) return -1;
            if (op->split) {
                lomo__tkop sp = *op;
                sp.behavior = LOMO__B_NEXT; sp.invert = 0;
                if (lomo__pre_split(&sp, s, g)) return -1;
            }
        }
    }
    return 0;
}

/* ---- BPE ---- */
typedef struct lomo__sym { int32_t id; int32_t prev, next; uint32_t start, len; } lomo__sym;
typedef struct lomo__mq { int32_t rank, pos, nid; } lomo__mq;
static int lomo__mq_less(const lomo__mq *x, const lomo__mq *y) { return x->rank != y->rank ? x->rank < y->rank : x->pos < y->pos; }
static void lomo__mq_push(lomo__mq *h, size_t *n, lomo__mq v) {
    size_t i = (*n)++;
    while (i > 0 && lomo__mq_less(&v, &h[(i - 1) / 2])) { h[i] = h[(i - 1) / 2]; i = (i - 1) / 2; }
    h[i] = v;
}
static lomo__mq lomo__mq_pop(lomo__mq *h, size_t *n) {
    lomo__mq top = h[0], v = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && lomo__mq_less(&h[c + 1], &h[c])) c++;
        if (!lomo__mq_less(&h[c], &v)) break;
        h[i] = h[c]; i = c;
    }
    if (*n) h[i] = v;
    return top;
}

typedef struct lomo__tkout { int32_t *ids; int64_t *sp; size_t n, cap, cap2; } lomo__tkout;
static int lomo__out_add(lomo__tkout *o, int32_t id, int64_t a, int64_t b) {
    if (lomo__grow((void **)&o->ids, &o->cap, o->n + 1, 4) || lomo__grow((void **)&o->sp, &o->cap2, 2 * (o->n + 1), 8)) return -1;
    o->ids[o->n] = id; o->sp[2 * o->n] = a; o->sp[2 * o->n + 1] = b;
    o->n++;
    return 0;
}

typedef struct lomo__bpe_ws { lomo__sym *sy; size_t cap; lomo__mq *q; size_t qcap; char *tmp; size_t tcap; } lomo__bpe_ws;

/* BPE of word w (n bytes): (id, start, len) triples into *res (count returned), or -1. */
static int64_t lomo__bpe_word(const lomo_tokenizer *tk, lomo__bpe_ws *ws, const char *w, size_t n) {
    size_t i = 0, ns = 0, nq = 0, k;
    int32_t unk_len = 0, unk_start = 0, have_unk = 0, r, nid;
    if (lomo__grow((void **)&ws->sy, &ws->cap, n + 1, sizeof *ws->sy) || lomo__grow((void **)&ws->q, &ws->qcap, 2 * n + 2, sizeof *ws->q) ||
        lomo__grow((void **)&ws->tmp, &ws->tcap, n + tk->ncprefix + tk->neowsuffix + 1, 1)) return -1;
    while (i < n) {
        uint32_t c;
        size_t cl = (size_t)lomo__u8((const unsigned char *)w + i, &c), tl = 0;
        int32_t id;
        const char *ts = w + i;
        if ((i > 0 && tk->ncprefix) || (i + cl == n && tk->neowsuffix)) {
            if (i > 0 && tk->ncprefix) { memcpy(ws->tmp, tk->cprefix, tk->ncprefix); tl = tk->ncprefix; }
            memcpy(ws->tmp + tl, w + i, cl); tl += cl;
            if (i + cl == n && tk->neowsuffix) { memcpy(ws->tmp + tl, tk->eowsuffix, tk->neowsuffix); tl += tk->neowsuffix; }
            ts = ws->tmp;
        } else tl = cl;
        id = lomo__vfind(tk, ts, tl);
        if (id < 0 && tk->byte_fallback) {
            for (k = 0; k < cl; k++) if (tk->byte_id[(unsigned char)w[i + k]] < 0) break;
            if (k == cl) {
                if (have_unk) { ws->sy[ns].id = tk->unk_id; ws->sy[ns].start = (uint32_t)unk_start; ws->sy[ns].len = (uint32_t)unk_len; ns++; have_unk = 0; }
                for (k = 0; k < cl; k++) { ws->sy[ns].id = tk->byte_id[(unsigned char)w[i + k]]; ws->sy[ns].start = (uint32_t)(i + k); ws->sy[ns].len = 1; ns++; }
                i += cl;
                continue;
            }
        }
        if (id >= 0) {
            if (have_unk) { ws->sy[ns].id = tk->unk_id; ws->sy[ns].start = (uint32_t)unk_start; ws->sy[ns].len = (uint32_t)unk_len; ns++; have_unk = 0; }
            ws->sy[ns].id = id; ws->sy[ns].start = (uint32_t)i; ws->sy[ns].len = (uint32_t)cl; ns++;
        } else if (tk->has_unk) {
            if (tk->unk_id < 0) return lomo__fail("%s: unk_token is not in the vocabulary (needed for a character of the text)", tk->path);
            if (have_unk && tk->fuse_unk) unk_len += (int32_t)cl;
            else {
                if (have_unk) { ws->sy[ns].id = tk->unk_id; ws->sy[ns].start = (uint32_t)unk_start; ws->sy[ns].len = (uint32_t)unk_len; ns++; }
                have_unk = 1; unk_start = (int32_t)i; unk_len = (int32_t)cl;
            }
        }
        i += cl;
    }
    if (have_unk) { ws->sy[ns].id = tk->unk_id; ws->sy[ns].start = (uint32_t)unk_start; ws->sy[ns].len = (uint32_t)unk_len; ns++; }
    for (k = 0; k < ns; k++) { ws->sy[k].prev = (int32_t)k - 1; ws->sy[k].next = k + 1 < ns ? (int32_t)k + 1 : -1; }
    for (k = 0; k + 1 < ns; k++)
        if (lomo__mfind(tk, ws->sy[k].id, ws->sy[k + 1].id, &r, &nid)) { lomo__mq m; m.rank = r; m.pos = (int32_t)k; m.nid = nid; lomo__mq_push(ws->q, &nq, m); }
    while (nq) {
        lomo__mq top = lomo__mq_pop(ws->q, &nq);
        lomo__sym *cur = &ws->sy[top.pos], *right;
        int32_t nx;
        if (!cur->len || cur->next < 0) continue;
        right = &ws->sy[cur->next];
        if (!lomo__mfind(tk, cur->id, right->id, &r, &nid) || nid != top.nid) continue;
        cur->id = top.nid; cur->len += right->len; right->len = 0;
        nx = right->next;
        cur->next = nx;
        if (nx >= 0) ws->sy[nx].prev = top.pos;
        if (cur->prev >= 0 && lomo__mfind(tk, ws->sy[cur->prev].id, cur->id, &r, &nid)) {
            lomo__mq m; m.rank = r; m.pos = cur->prev; m.nid = nid;
            if (nq + 1 > ws->qcap && lomo__grow((void **)&ws->q, &ws->qcap, nq + 1, sizeof *ws->q)) return -1;
            lomo__mq_push(ws->q, &nq, m);
        }
        if (nx >= 0 && lomo__mfind(tk, cur->id, ws->sy[nx].id, &r, &nid)) {
            lomo__mq m; m.rank = r; m.pos = top.pos; m.nid = nid;
            if (nq + 1 > ws->qcap && lomo__grow((void **)&ws->q, &ws->qcap, nq + 1, sizeof *ws->q)) return -1;
            lomo__mq_push(ws->q, &nq, m);
        }
    }
    for (i = 0, k = 0; k < ns; k++) if (ws->sy[k].len) ws->sy[i++] = ws->sy[k];
    return (int64_t)i;
}

/* Tokens of one pre-tokenized word, through the cache. */
static int lomo__model(const lomo_tokenizer *tk, lomo__bpe_ws *ws, const lomo__ns *s, size_t st, size_t en, lomo__tkout *o) {
    const char *w = s->p + st;
    size_t n = en - st, i, j;
    int64_t m;
    uint64_t h = 0;
    lomo_tokenizer *mt = (lomo_tokenizer *)tk;  /* the cache is the only mutable state */
    int locked = 0;
#define LOMO__SPAN(lo, len_) do { size_t q_; a_ = s->a[st + (lo)]; b_ = s->b[st + (lo)]; \
        for (q_ = st + (lo); q_ < st + (lo) + (len_); q_++) { if (s->a[q_] < a_) a_ = s->a[q_]; if (s->b[q_] > b_) b_ = s->b[q_]; } } while (0)
    if (tk->ignore_merges) {
        int32_t id = lomo__vfind(tk, w, n);
        if (id >= 0) { int64_t a_, b_; LOMO__SPAN(0, n); return lomo__out_add(o, id, a_, b_); }
    }
    if (n <= 64) {
        h = lomo__hash(w, n) | 1;
        if (!__atomic_test_and_set(&mt->cache_lock, __ATOMIC_ACQUIRE)) {
            locked = 1;
            if (!mt->cache) {  /* allocated on first use (6.5 MB) */
                mt->cache = (lomo__cache_e *)LOMO_MALLOC((mt->cache_mask + 1) * sizeof *mt->cache);
                mt->ckey = (char *)LOMO_MALLOC(mt->ckey_cap); mt->cval = (int32_t *)LOMO_MALLOC(mt->cval_cap * 4);
                if (!mt->cache || !mt->ckey || !mt->cval) {  /* no cache then */
                    LOMO_FREE(mt->cache); LOMO_FREE(mt->ckey); LOMO_FREE(mt->cval);
                    mt->cache = NULL; mt->ckey = NULL; mt->cval = NULL;   /* (its size stays: tried again later) */
                }
                else memset(mt->cache, 0, (mt->cache_mask + 1) * sizeof *mt->cache);
            }
            if (!mt->cache) { __atomic_clear(&mt->cache_lock, __ATOMIC_RELEASE); locked = 0; }
        }
    }
    if (locked) {
        {
            for (i = (size_t)h & tk->cache_mask;; i = (i + 1) & tk->cache_mask) {
                const lomo__cache_e *e = &tk->cache[i];
                if (!e->h) break;
                if (e->h == h && e->klen == n && !memcmp(tk->ckey + e->koff, w, n)) {
                    for (j = 0; j < e->vn; j++) {
                        const int32_t *v = tk->cval + e->voff + 3 * j;
                        int64_t a_, b_;
                        LOMO__SPAN((size_t)v[1], (size_t)v[2]);
                        if (lomo__out_add(o, v[0], a_, b_)) { __atomic_clear(&mt->cache_lock, __ATOMIC_RELEASE); return -1; }
                    }
                    __atomic_clear(&mt->cache_lock, __ATOMIC_RELEASE);
                    return 0;
                }
            }
        }
    }
    m = lomo__bpe_word(tk, ws, w, n);
    if (m < 0) { if (locked) __atomic_clear(&mt->cache_lock, __ATOMIC_RELEASE); return -1; }
    for (j = 0; j < (size_t)m; j++) {
        int64_t a_, b_;
        LOMO__SPAN(ws->sy[j].start, ws->sy[j].len);
        if (lomo__out_add(o, ws->sy[j].id, a_, b_)) { if (locked) __atomic_clear(&mt->cache_lock, __ATOMIC_RELEASE); return -1; }
    }
    if (locked) {
        if (mt->cache_used * 2 > mt->cache_mask || mt->ckey_n + n > mt->ckey_cap || mt->cval_n + 3 * (size_t)m > mt->cval_cap) {
            memset(mt->cache, 0, (mt->cache_mask + 1) * sizeof *mt->cache);   /* full: start again */
            mt->cache_used = mt->ckey_n = mt->cval_n = 0;
        }
        if (mt->ckey_n + n <= mt->ckey_cap && mt->cval_n + 3 * (size_t)m <= mt->cval_cap) {
            for (i = (size_t)h & mt->cache_mask; mt->cache[i].h; i = (i + 1) & mt->cache_mask) {}
            mt->cache[i].h = h; mt->cache[i].koff = (uint32_t)mt->ckey_n; mt->cache[i].klen = (uint32_t)n;
            mt->cache[i].voff = (uint32_t)mt->cval_n; mt->cache[i].vn = (uint32_t)m;
            memcpy(mt->ckey + mt->ckey_n, w, n); mt->ckey_n += n;
            for (j = 0; j < (size_t)m; j++) {
                mt->cval[mt->cval_n++] = ws->sy[j].id; mt->cval[mt->cval_n++] = (int32_t)ws->sy[j].start; mt->cval[mt->cval_n++] = (int32_t)ws->sy[j].len;
            }
            mt->cache_used++;
        }
        __atomic_clear(&mt->cache_lock, __ATOMIC_RELEASE);
    }
#undef LOMO__SPAN
    return 0;
}

/* Leftmost-longest added-token matching on s[st, en) (list 0: raw, 1: normalized), into segments. */
static int lomo__is_ws_at(const char *s, size_t i, uint32_t *c) { lomo__u8((const unsigned char *)s + i, c); return lomo__u_ws(*c); }
static int lomo__split_added(const lomo_tokenizer *tk, int list, const char *s, size_t st, size_t en, lomo__segs *g) {
    size_t p = st, last = st;
    const int32_t *bk = tk->abkt[list];
    while (p < en) {
        int b = (unsigned char)s[p], t, hit = -1;
        for (t = bk[b]; t < bk[b + 1]; t++) {
            const lomo__added *ad = &tk->added[tk->aidx[list][t]];
            const char *pat = list ? ad->pat : ad->s;
            size_t np = list ? ad->npat : ad->n;
            if (np && p + np <= en && !memcmp(s + p, pat, np)) { hit = tk->aidx[list][t]; break; }
        }
        if (hit < 0) { p++; continue; }
        {
            const lomo__added *ad = &tk->added[hit];
            size_t ms = p, me = p + (list ? ad->npat : ad->n);
            uint32_t c;
            p = me;
            if (ad->single_word) {
                int okl = 1, okr = 1;
                if (ms > st) { size_t q = ms - 1; while (q > st && ((unsigned char)s[q] & 0xc0) == 0x80) q--; lomo__u8((const unsigned char *)s + q, &c); okl = !lomo__u_word(c); }
                if (me < en) { lomo__u8((const unsigned char *)s + me, &c); okr = !lomo__u_word(c); }
                if (!okl || !okr) continue;
            }
            if (ad->lstrip) {
                size_t q = ms;
                while (q > last) {
                    size_t r = q - 1;
                    while (r > last && ((unsigned char)s[r] & 0xc0) == 0x80) r--;
                    if (!lomo__is_ws_at(s, r, &c)) break;
                    q = r;
                }
                ms = q;
            }
            if (ad->rstrip) { while (me < en && lomo__is_ws_at(s, me, &c)) me += (size_t)lomo__u8((const unsigned char *)s + me, &c); }
            if (lomo__seg_add(g, last, ms, -1) || lomo__seg_add(g, ms, me, ad->id)) return -1;
            last = p = me;
        }
    }
    return lomo__seg_add(g, last, en, -1);
}

/* Normalize, split out normalized added tokens, pre-tokenize and run the model on input [st, en). */
static int lomo__encode_piece(const lomo_tokenizer *tk, lomo__bpe_ws *ws, const char *text, size_t st, size_t en, lomo__tkout *o) {
    lomo__ns s;
    memset(&s, 0, sizeof s);
    lomo__segs g;
    memset(&g, 0, sizeof g);
    size_t i, k;
    int rc = -1;
    if (lomo__ns_reserve(&s, en - st)) goto done;   /* s may hold a part of its arrays */
    for (i = st; i < en;) {
        uint32_t c;
        int kk = lomo__u8((const unsigned char *)text + i, &c), m;
        for (m = 0; m < kk; m++) { s.p[s.n] = text[i + m]; s.a[s.n] = (int64_t)i; s.b[s.n] = (int64_t)(i + kk); s.n++; }
        i += (size_t)kk;
    }
    if (lomo__normalize(tk, &s)) goto done;
    if (tk->abkt[1][256]) { if (lomo__split_added(tk, 1, s.p, 0, s.n, &g)) goto done; }
    else if (lomo__seg_add(&g, 0, s.n, -1)) goto done;
    if (lomo__pretokenize(tk, &s, &g)) goto done;
    for (k = 0; k < g.n; k++) {
        size_t a = g.sb[2 * k], b = g.sb[2 * k + 1];
        if (g.sid[k] >= 0) {
            int64_t lo = s.a[a], hi = s.b[a];
            for (i = a; i < b; i++) { if (s.a[i] < lo) lo = s.a[i]; if (s.b[i] > hi) hi = s.b[i]; }
            if (lomo__out_add(o, g.sid[k], lo, hi)) goto done;
        } else if (lomo__model(tk, ws, &s, a, b, o)) goto done;
    }
    rc = 0;
done:
    lomo__ns_free(&s);
    lomo__segs_free(&g);
    return rc;
}

LOMODEF int64_t lomo_tokenize(const lomo_tokenizer *tk, const char *text, size_t len, int add_special, int32_t **ids, int64_t **spans) {
    lomo__segs g;
    memset(&g, 0, sizeof g);
    lomo__tkout o;
    memset(&o, 0, sizeof o);
    lomo__bpe_ws ws;
    size_t i, k;
    memset(&ws, 0, sizeof ws);
    if (ids) *ids = NULL;
    if (spans) *spans = NULL;
    if (!tk || !ids || (!text && len)) return lomo__fail("lomo_tokenize: NULL argument");
    for (i = 0; i < len;) {
        int kk = lomo__utf8_len((const unsigned char *)text + i, len - i);
        if (!kk) return lomo__fail("lomo_tokenize: text is not valid UTF-8 at byte %zu", i);
        i += (size_t)kk;
    }
    if (len && lomo__split_added(tk, 0, text, 0, len, &g)) goto fail;
    for (k = 0; k < g.n; k++) {
        if (g.sid[k] >= 0) { if (lomo__out_add(&o, g.sid[k], (int64_t)g.sb[2 * k], (int64_t)g.sb[2 * k + 1])) goto fail; }
        else if (lomo__encode_piece(tk, &ws, text, g.sb[2 * k], g.sb[2 * k + 1], &o)) goto fail;
    }
    if (tk->trim_offsets) {  /* ByteLevel post-processor: offsets without the leading/trailing spaces */
        for (k = 0; k < o.n; k++) {
            size_t n, lead = 0, trail = 0, q;
            const char *t = lomo__tk_str(tk, o.ids[k], &n);
            if (!t) continue;
            for (q = 0; q < n;) { uint32_t c; int kk = lomo__u8((const unsigned char *)t + q, &c); if (c != 0x120 && !lomo__u_ws(c)) break; lead++; q += (size_t)kk; }
            {
                size_t e = n;
                while (e > 0) { size_t r = e - 1; uint32_t c; while (r > 0 && ((unsigned char)t[r] & 0xc0) == 0x80) r--; lomo__u8((const unsigned char *)t + r, &c); if (c != 0x120 && !lomo__u_ws(c)) break; trail++; e = r; }
            }
            if (lead) {
                if ((k == 0 || o.sp[2 * k] == 0) && tk->trim_prefix_space && lead == 1) lead = 0;
                o.sp[2 * k] = o.sp[2 * k] + (int64_t)lead < o.sp[2 * k + 1] ? o.sp[2 * k] + (int64_t)lead : o.sp[2 * k + 1];
            }
            if (trail && o.sp[2 * k + 1] >= (int64_t)trail)
                o.sp[2 * k + 1] = o.sp[2 * k + 1] - (int64_t)trail > o.sp[2 * k] ? o.sp[2 * k + 1] - (int64_t)trail : o.sp[2 * k];
        }
    }
    if (add_special && tk->has_tmpl) {
        lomo__tkout f;
        memset(&f, 0, sizeof f);
        int t;
        for (t = 0; t < tk->ntmpl; t++) {
            if (tk->tmpl[t] == INT32_MIN) { for (k = 0; k < o.n; k++) if (lomo__out_add(&f, o.ids[k], o.sp[2 * k], o.sp[2 * k + 1])) { LOMO_FREE(f.ids); LOMO_FREE(f.sp); goto fail; } }
            else if (lomo__out_add(&f, tk->tmpl[t], 0, 0)) { LOMO_FREE(f.ids); LOMO_FREE(f.sp); goto fail; }
        }
        LOMO_FREE(o.ids); LOMO_FREE(o.sp);
        o = f;
    }
    lomo__segs_free(&g);
    LOMO_FREE(ws.sy); LOMO_FREE(ws.q); LOMO_FREE(ws.tmp);
    if (!o.ids && !(o.ids = (int32_t *)LOMO_MALLOC(4))) goto fail;
    *ids = o.ids;
    if (spans) { if (!o.sp && !(o.sp = (int64_t *)LOMO_MALLOC(16))) { LOMO_FREE(o.ids); *ids = NULL; return lomo__fail("lomo_tokenize: out of memory"); } *spans = o.sp; }
    else LOMO_FREE(o.sp);
    return (int64_t)o.n;
fail:
    lomo__segs_free(&g);
    LOMO_FREE(ws.sy); LOMO_FREE(ws.q); LOMO_FREE(ws.tmp);
    LOMO_FREE(o.ids); LOMO_FREE(o.sp);
    return -1;
}

/* ---- decode ---- */
typedef struct lomo__strs { lomo__sb *v; size_t n, cap; } lomo__strs;
static void lomo__strs_free(lomo__strs *l) { size_t i; for (i = 0; i < l->n; i++) LOMO_FREE(l->v[i].p); LOMO_FREE(l->v); memset(l, 0, sizeof *l); }
static int lomo__strs_add(lomo__strs *l, const char *p, size_t n) {
    if (lomo__grow((void **)&l->v, &l->cap, l->n + 1, sizeof *l->v)) return -1;
    memset(&l->v[l->n], 0, sizeof l->v[l->n]);
    lomo__sb_add(&l->v[l->n], "", 0);
    lomo__sb_add(&l->v[l->n], p, n);
    l->n++;
    return l->v[l->n - 1].oom ? lomo__fail("lomo_detokenize: out of memory") : 0;
}
/* String::from_utf8_lossy: each maximal invalid prefix becomes U+FFFD */
static void lomo__sb_lossy(lomo__sb *b, const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        int k = lomo__utf8_len(s + i, n - i);
        if (k) { lomo__sb_add(b, (const char *)s + i, (size_t)k); i += (size_t)k; continue; }
        {   /* length of the invalid sequence: the longest prefix of a possible valid one */
            unsigned c = s[i], lo = 0x80, hi = 0xbf;
            size_t need = 0, m = 1;
            if (c >= 0xc2 && c <= 0xdf) need = 2;
            else if (c >= 0xe0 && c <= 0xef) { need = 3; if (c == 0xe0) lo = 0xa0; if (c == 0xed) hi = 0x9f; }
            else if (c >= 0xf0 && c <= 0xf4) { need = 4; if (c == 0xf0) lo = 0x90; if (c == 0xf4) hi = 0x8f; }
            if (need && i + 1 < n && s[i + 1] >= lo && s[i + 1] <= hi) {
                m = 2;
                while (m < need && i + m < n && s[i + m] >= 0x80 && s[i + m] <= 0xbf) m++;
            }
            lomo__sb_add(b, "\xef\xbf\xbd", 3);
            i += m;
        }
    }
}
static int lomo__dec_apply(const lomo_tokenizer *tk, const lomo__tkop *op, lomo__strs *l) {
    lomo__strs out;
    memset(&out, 0, sizeof out);
    size_t i, j;
    if (op->type == LOMO__D_BYTELEVEL || op->type == LOMO__D_FUSE) {
        lomo__sb raw, b;
        memset(&raw, 0, sizeof raw);
        memset(&b, 0, sizeof b);
        for (i = 0; i < l->n; i++) {
            const char *t = l->v[i].p ? l->v[i].p : "";
            size_t n = l->v[i].n, st = raw.n;
            if (op->type == LOMO__D_FUSE) { lomo__sb_add(&raw, t, n); continue; }
            for (j = 0; j < n;) {
                uint32_t c;
                int k = lomo__u8((const unsigned char *)t + j, &c);
                if (c >= 324 || tk->bl_byte[c] < 0) break;
                { char ch = (char)tk->bl_byte[c]; lomo__sb_add(&raw, &ch, 1); }
                j += (size_t)k;
            }
            if (j < n) { raw.n = st; lomo__sb_add(&raw, t, n); }  /* a char outside the byte map: the token's own bytes */
        }
        lomo__sb_add(&raw, "", 0);
        if (op->type == LOMO__D_FUSE) b = raw;
        else { lomo__sb_add(&b, "", 0); lomo__sb_lossy(&b, (const unsigned char *)raw.p, raw.n); LOMO_FREE(raw.p); }
        if (b.oom || raw.oom) { LOMO_FREE(b.p); return lomo__fail("lomo_detokenize: out of memory"); }
        lomo__strs_free(l);
        if (lomo__grow((void **)&l->v, &l->cap, 1, sizeof *l->v)) { LOMO_FREE(b.p); return -1; }
        l->v[0] = b; l->n = 1;
        return 0;
    }
    if (op->type == LOMO__D_BYTEFALLBACK) {
        lomo__sb bytes;
        memset(&bytes, 0, sizeof bytes);
        size_t nb = 0;
        for (i = 0; i <= l->n; i++) {
            const char *t = i < l->n ? l->v[i].p : NULL;
            size_t n = i < l->n ? l->v[i].n : 0;
            int isb = 0; unsigned v = 0;
            if (t && n == 6 && !memcmp(t, "<0x", 3) && t[5] == '>') {
                size_t q;
                isb = 1;
                for (q = 3; q < 5; q++) {
                    int c = t[q], d = c >= '0' && c <= '9' ? c - '0' : (c | 32) >= 'a' && (c | 32) <= 'f' ? (c | 32) - 'a' + 10 : -1;
                    if (d < 0) { isb = 0; break; }
                    v = v * 16 + (unsigned)d;
                }
            }
            if (isb) { char ch = (char)v; lomo__sb_add(&bytes, &ch, 1); nb++; continue; }
            if (nb) {
                size_t q = 0;
                int ok = 1;
                if (bytes.oom) { lomo__fail("lomo_detokenize: out of memory"); goto fail; }
                while (q < bytes.n) { int k = lomo__utf8_len((const unsigned char *)bytes.p + q, bytes.n - q); if (!k) { ok = 0; break; } q += (size_t)k; }
                if (ok) { if (lomo__strs_add(&out, bytes.p, bytes.n)) goto fail; }
                else for (q = 0; q < nb; q++) if (lomo__strs_add(&out, "\xef\xbf\xbd", 3)) goto fail;
                bytes.n = 0; nb = 0;
            }
            if (t && lomo__strs_add(&out, t, n)) goto fail;
        }
        LOMO_FREE(bytes.p);
        lomo__strs_free(l);
        *l = out;
        return 0;
fail:
        LOMO_FREE(bytes.p);
        lomo__strs_free(&out);
        return -1;
    }
    for (i = 0; i < l->n; i++) {
        const char *t = l->v[i].p ? l->v[i].p : "";
        size_t n = l->v[i].n;
        lomo__sb b;
        memset(&b, 0, sizeof b);
        lomo__sb_add(&b, "", 0);
        if (op->type == LOMO__D_REPLACE || op->type == LOMO__D_METASPACE) {
            for (j = 0; j < n;) {
                if (j + op->n1 <= n && !memcmp(t + j, op->s1, op->n1)) {
                    if (op->type == LOMO__D_REPLACE) lomo__sb_add(&b, op->s2, op->n2);
                    else if (!(i == 0 && op->scheme != LOMO__PS_NEVER)) lomo__sb_add(&b, " ", 1);
                    j += op->n1;
                } else { lomo__sb_add(&b, t + j, 1); j++; }
            }
        } else if (op->type == LOMO__D_STRIP) {
            size_t st = 0, en = n;
            int c;
            for (c = 0; c < op->start && st + op->n1 <= en && !memcmp(t + st, op->s1, op->n1); c++) st += op->n1;
            for (c = 0; c < op->stop && en >= st + op->n1 && !memcmp(t + en - op->n1, op->s1, op->n1); c++) en -= op->n1;
            lomo__sb_add(&b, t + st, en - st);
        }
        if (b.oom) { LOMO_FREE(b.p); lomo__strs_free(&out); return lomo__fail("lomo_detokenize: out of memory"); }
        if (lomo__grow((void **)&out.v, &out.cap, out.n + 1, sizeof *out.v)) { LOMO_FREE(b.p); lomo__strs_free(&out); return -1; }
        out.v[out.n++] = b;
    }
    lomo__strs_free(l);
    *l = out;
    return 0;
}

LOMODEF char *lomo_detokenize(const lomo_tokenizer *tk, const int32_t *ids, int64_t n, int skip_special) {
    return lomo_detokenize_len(tk, ids, n, skip_special, NULL);
}

LOMODEF char *lomo_detokenize_len(const lomo_tokenizer *tk, const int32_t *ids, int64_t n, int skip_special, size_t *len) {
    lomo__strs l;
    memset(&l, 0, sizeof l);
    lomo__sb r;
    memset(&r, 0, sizeof r);
    int64_t i;
    int d;
    if (!tk || (n && !ids) || n < 0) { lomo__fail("lomo_detokenize: bad argument"); return NULL; }
    for (i = 0; i < n; i++) {
        size_t len;
        const char *t = lomo__tk_str(tk, ids[i], &len);
        if (!t) continue;   /* unknown ids are skipped, as tokenizers does */
        if (skip_special && tk->added_of[ids[i]] >= 0 && tk->added[tk->added_of[ids[i]]].special) continue;
        if (lomo__strs_add(&l, t, len)) { lomo__strs_free(&l); return NULL; }
    }
    if (tk->has_decoder) {
        for (d = 0; d < tk->ndec; d++) if (lomo__dec_apply(tk, &tk->dec[d], &l)) { lomo__strs_free(&l); return NULL; }
        lomo__sb_add(&r, "", 0);
        for (i = 0; i < (int64_t)l.n; i++) lomo__sb_add(&r, l.v[i].p ? l.v[i].p : "", l.v[i].n);
    } else {
        lomo__sb_add(&r, "", 0);
        for (i = 0; i < (int64_t)l.n; i++) { if (i) lomo__sb_add(&r, " ", 1); lomo__sb_add(&r, l.v[i].p ? l.v[i].p : "", l.v[i].n); }
    }
    lomo__strs_free(&l);
    if (r.oom) { LOMO_FREE(r.p); lomo__fail("lomo_detokenize: out of memory"); return NULL; }
    if (len) *len = r.n;
    return r.p;
}

/* ---- small queries ---- */
LOMODEF int32_t lomo_token_id(const lomo_tokenizer *tk, const char *token) {
    int i;
    size_t n;
    if (!tk || !token) return -1;
    n = strlen(token);
    for (i = 0; i < tk->nadded; i++) if (tk->added[i].n == n && !memcmp(tk->added[i].s, token, n)) return tk->added[i].id;
    return lomo__vfind(tk, token, n);
}
LOMODEF const char *lomo_token_str(const lomo_tokenizer *tk, int32_t id) { size_t n; return tk ? lomo__tk_str(tk, id, &n) : NULL; }
LOMODEF int32_t lomo_tokenizer_vocab_size(const lomo_tokenizer *tk) { return tk ? tk->nvocab : 0; }
LOMODEF int lomo_token_is_special(const lomo_tokenizer *tk, int32_t id) {
    return tk && id >= 0 && id < tk->nvocab && tk->added_of[id] >= 0 && tk->added[tk->added_of[id]].special;
}

/* ---- loading ---- */
LOMODEF void lomo_tokenizer_free(lomo_tokenizer *tk) {
    int i;
    if (!tk) return;
    for (i = 0; i < tk->nadded; i++) { LOMO_FREE(tk->added[i].s); LOMO_FREE(tk->added[i].pat); }
    for (i = 0; i < tk->nnorm; i++) { LOMO_FREE(tk->norm[i].s1); LOMO_FREE(tk->norm[i].s2); }
    for (i = 0; i < tk->npre; i++) { LOMO_FREE(tk->pre[i].s1); LOMO_FREE(tk->pre[i].s2); }
    for (i = 0; i < tk->ndec; i++) { LOMO_FREE(tk->dec[i].s1); LOMO_FREE(tk->dec[i].s2); }
    LOMO_FREE(tk->path); LOMO_FREE(tk->arena); LOMO_FREE(tk->voff); LOMO_FREE(tk->vlen); LOMO_FREE(tk->added_of);
    LOMO_FREE(tk->vmap.slot); LOMO_FREE(tk->added); LOMO_FREE(tk->aidx[0]); LOMO_FREE(tk->aidx[1]);
    LOMO_FREE(tk->mkey); LOMO_FREE(tk->mrank); LOMO_FREE(tk->mnew); LOMO_FREE(tk->cprefix); LOMO_FREE(tk->eowsuffix);
    LOMO_FREE(tk->norm); LOMO_FREE(tk->pre); LOMO_FREE(tk->dec); LOMO_FREE(tk->tmpl); LOMO_FREE(tk->comp);
    LOMO_FREE(tk->cache); LOMO_FREE(tk->ckey); LOMO_FREE(tk->cval);
    LOMO_FREE(tk);
}

typedef struct lomo__tkl { lomo_tokenizer *tk; const lomo__json *j; const char *path; } lomo__tkl;

/* a JSON string as a fresh NUL-terminated copy (may contain no NUL) */
static char *lomo__jdup(const lomo__tkl *L, int node, const char *what, size_t *n) {
    size_t cap;
    char *p;
    int k;
    char show[64];
    if (!lomo__json_is(L->j, node, LOMO__J_STR)) {
        lomo__fail("%s: %s: expected a string, found %s", L->path, what, lomo__json_show(L->j, node, show, sizeof show));
        return NULL;
    }
    cap = L->j->nodes[node].len + 1;
    if (!(p = (char *)LOMO_MALLOC(cap))) { lomo__fail("%s: out of memory", L->path); return NULL; }
    if ((k = lomo__json_str(L->j, node, p, cap)) < 0) { LOMO_FREE(p); lomo__fail("%s: %s: string with \\u0000 is not supported", L->path, what); return NULL; }
    if (n) *n = (size_t)k;
    return p;
}
static int lomo__jbool(const lomo__tkl *L, int obj, const char *key, int dflt, int *out, const char *what) {
    int v = lomo__json_get(L->j, obj, key);
    char show[64];
    if (v < 0 || lomo__json_is(L->j, v, LOMO__J_NULL)) { *out = dflt; return 0; }
    if (lomo__json_is(L->j, v, LOMO__J_TRUE)) { *out = 1; return 0; }
    if (lomo__json_is(L->j, v, LOMO__J_FALSE)) { *out = 0; return 0; }
    return lomo__fail("%s: %s.%s: expected true or false, found %s", L->path, what, key, lomo__json_show(L->j, v, show, sizeof show));
}
static int lomo__jtype(const lomo__tkl *L, int obj, const char *what, char *buf, size_t cap) {
    int t = lomo__json_get(L->j, obj, "type");
    char show[64];
    if (!lomo__json_is(L->j, obj, LOMO__J_OBJ)) return lomo__fail("%s: %s: expected an object, found %s", L->path, what, lomo__json_show(L->j, obj, show, sizeof show));
    if (lomo__json_str(L->j, t, buf, cap) < 0) return lomo__fail("%s: %s: \"type\" missing or not a short string (found %s)", L->path, what, lomo__json_show(L->j, t, show, sizeof show));
    return 0;
}
static int lomo__add_op(lomo__tkop **v, int *n, const lomo__tkop *op) {
    size_t cap = (size_t)*n;
    /* small arrays: grow by one */
    lomo__tkop *q = (lomo__tkop *)LOMO_MALLOC((cap + 1) * sizeof *q);
    if (!q) return lomo__fail("tokenizer: out of memory");
    if (cap) memcpy(q, *v, cap * sizeof *q);
    q[cap] = *op;
    LOMO_FREE(*v);
    *v = q; (*n)++;
    return 0;
}
static int lomo__jpattern(const lomo__tkl *L, int obj, const char *what, lomo__tkop *op, int allow_regex) {
    int p = lomo__json_get(L->j, obj, "pattern"), s, r;
    char show[64];
    if (!lomo__json_is(L->j, p, LOMO__J_OBJ)) return lomo__fail("%s: %s.pattern: expected {\"String\": ...} or {\"Regex\": ...}, found %s", L->path, what, lomo__json_show(L->j, p, show, sizeof show));
    s = lomo__json_get(L->j, p, "String"); r = lomo__json_get(L->j, p, "Regex");
    if (s >= 0) {
        if (!(op->s1 = lomo__jdup(L, s, what, &op->n1))) return -1;
        if (!op->n1) return lomo__fail("%s: %s.pattern: empty string pattern is not supported", L->path, what);
        return 0;
    }
    if (r >= 0 && allow_regex) {
        static const char *const pats[3] = {
            "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
            "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
            "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" };
        int k;
        for (k = 0; k < 3; k++) if (lomo__json_streq(L->j, r, pats[k])) { op->rx = k + 1; return 0; }
        return lomo__fail("%s: %s.pattern: regex %s is not supported (lomo matches the GPT-2, Llama 3 and Qwen2 split patterns only)",
                          L->path, what, lomo__json_show(L->j, r, show, sizeof show));
    }
    return lomo__fail("%s: %s.pattern: %s is not supported (a String%s pattern is)", L->path, what, lomo__json_show(L->j, p, show, sizeof show), allow_regex ? " or a known Regex" : "");
}

static int lomo__load_norm(lomo__tkl *L, int node, int depth) {
    char ty[32], what[64] = "normalizer";
    lomo__tkop op;
    memset(&op, 0, sizeof op);
    if (node < 0 || lomo__json_is(L->j, node, LOMO__J_NULL)) return 0;
    if (depth > 4) return lomo__fail("%s: normalizer nested too deep", L->path);
    if (lomo__jtype(L, node, what, ty, sizeof ty)) return -1;
    if (!strcmp(ty, "Sequence")) {
        int a = lomo__json_get(L->j, node, "normalizers"), c;
        if (!lomo__json_is(L->j, a, LOMO__J_ARR)) return lomo__fail("%s: normalizer Sequence: \"normalizers\" is not an array", L->path);
        for (c = L->j->nodes[a].first; c >= 0; c = L->j->nodes[c].next) if (lomo__load_norm(L, c, depth + 1)) return -1;
        return 0;
    }
    if (!strcmp(ty, "NFC")) op.type = LOMO__N_NFC;
    else if (!strcmp(ty, "NFD")) op.type = LOMO__N_NFD;
    else if (!strcmp(ty, "Prepend")) {
        op.type = LOMO__N_PREPEND;
        if (!(op.s1 = lomo__jdup(L, lomo__json_get(L->j, node, "prepend"), "normalizer Prepend.prepend", &op.n1))) return -1;
    } else if (!strcmp(ty, "Replace")) {
        op.type = LOMO__N_REPLACE;
        if (lomo__jpattern(L, node, "normalizer Replace", &op, 0) ||
            !(op.s2 = lomo__jdup(L, lomo__json_get(L->j, node, "content"), "normalizer Replace.content", &op.n2))) { LOMO_FREE(op.s1); return -1; }
    } else return lomo__fail("%s: normalizer \"%s\" is not supported (lomo implements Sequence, NFC, NFD, Prepend, Replace with a String pattern)", L->path, ty);
    if (lomo__add_op(&L->tk->norm, &L->tk->nnorm, &op)) { LOMO_FREE(op.s1); LOMO_FREE(op.s2); return -1; }
    return 0;
}

static int lomo__scheme(const lomo__tkl *L, int node, const char *what, lomo__tkop *op) {
    int v = lomo__json_get(L->j, node, "prepend_scheme"), b;
    char show[64];
    op->scheme = LOMO__PS_ALWAYS;
    if (v < 0) {   /* older files: add_prefix_space */
        if (lomo__jbool(L, node, "add_prefix_space", 1, &b, what)) return -1;
        op->scheme = b ? LOMO__PS_ALWAYS : LOMO__PS_NEVER;
        return 0;
    }
    if (lomo__json_streq(L->j, v, "always")) op->scheme = LOMO__PS_ALWAYS;
    else if (lomo__json_streq(L->j, v, "first")) op->scheme = LOMO__PS_FIRST;
    else if (lomo__json_streq(L->j, v, "never")) op->scheme = LOMO__PS_NEVER;
    else return lomo__fail("%s: %s.prepend_scheme: expected \"always\", \"first\" or \"never\", found %s", L->path, what, lomo__json_show(L->j, v, show, sizeof show));
    return 0;
}
static int lomo__replacement(const lomo__tkl *L, int node, const char *what, lomo__tkop *op) {
    int v = lomo__json_get(L->j, node, "replacement");
    uint32_t c;
    if (v < 0) { if (!(op->s1 = (char *)LOMO_MALLOC(4))) return lomo__fail("out of memory"); memcpy(op->s1, "\xe2\x96\x81", 4); op->n1 = 3; return 0; }
    if (!(op->s1 = lomo__jdup(L, v, what, &op->n1))) return -1;
    if (!op->n1 || (size_t)lomo__u8((const unsigned char *)op->s1, &c) != op->n1)
        return lomo__fail("%s: %s.replacement: expected one character, found \"%s\"", L->path, what, op->s1);
    return 0;
}

static int lomo__load_pre(lomo__tkl *L, int node, int depth) {
    char ty[32], show[64];
    lomo__tkop op;
    memset(&op, 0, sizeof op);
    if (node < 0 || lomo__json_is(L->j, node, LOMO__J_NULL)) return 0;
    if (depth > 4) return lomo__fail("%s: pre_tokenizer nested too deep", L->path);
    if (lomo__jtype(L, node, "pre_tokenizer", ty, sizeof ty)) return -1;
    if (!strcmp(ty, "Sequence")) {
        int a = lomo__json_get(L->j, node, "pretokenizers"), c;
        if (!lomo__json_is(L->j, a, LOMO__J_ARR)) return lomo__fail("%s: pre_tokenizer Sequence: \"pretokenizers\" is not an array", L->path);
        for (c = L->j->nodes[a].first; c >= 0; c = L->j->nodes[c].next) if (lomo__load_pre(L, c, depth + 1)) return -1;
        return 0;
    }
    if (!strcmp(ty, "Split")) {
        int b = lomo__json_get(L->j, node, "behavior");
        static const char *const names[5] = { "Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous" };
        int k;
        op.type = LOMO__P_SPLIT;
        if (lomo__jpattern(L, node, "pre_tokenizer Split", &op, 1)) { LOMO_FREE(op.s1); return -1; }
        for (k = 0; k < 5; k++) if (lomo__json_streq(L->j, b, names[k])) break;
        if (k == 5) { LOMO_FREE(op.s1); return lomo__fail("%s: pre_tokenizer Split.behavior: expected Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous, found %s", L->path, lomo__json_show(L->j, b, show, sizeof show)); }
        op.behavior = k;
        if (lomo__jbool(L, node, "invert", 0, &op.invert, "pre_tokenizer Split")) { LOMO_FREE(op.s1); return -1; }
    } else if (!strcmp(ty, "ByteLevel")) {
        op.type = LOMO__P_BYTELEVEL;
        if (lomo__jbool(L, node, "add_prefix_space", 1, &op.prefix_space, "pre_tokenizer ByteLevel") ||
            lomo__jbool(L, node, "use_regex", 1, &op.use_regex, "pre_tokenizer ByteLevel")) return -1;
    } else if (!strcmp(ty, "Metaspace")) {
        op.type = LOMO__P_METASPACE;
        if (lomo__replacement(L, node, "pre_tokenizer Metaspace", &op) || lomo__scheme(L, node, "pre_tokenizer Metaspace", &op) ||
            lomo__jbool(L, node, "split", 1, &op.split, "pre_tokenizer Metaspace")) { LOMO_FREE(op.s1); return -1; }
    } else if (!strcmp(ty, "Digits")) {
        op.type = LOMO__P_DIGITS;
        if (lomo__jbool(L, node, "individual_digits", 0, &op.individual, "pre_tokenizer Digits")) return -1;
        op.behavior = op.individual ? LOMO__B_ISOLATED : LOMO__B_CONTIG;
    } else return lomo__fail("%s: pre_tokenizer \"%s\" is not supported (lomo implements Sequence, Split, ByteLevel, Metaspace, Digits)", L->path, ty);
    if (lomo__add_op(&L->tk->pre, &L->tk->npre, &op)) { LOMO_FREE(op.s1); return -1; }
    return 0;
}

static int lomo__load_dec(lomo__tkl *L, int node, int depth) {
    char ty[32], show[64];
    lomo__tkop op;
    memset(&op, 0, sizeof op);
    if (node < 0 || lomo__json_is(L->j, node, LOMO__J_NULL)) return 0;
    if (depth > 4) return lomo__fail("%s: decoder nested too deep", L->path);
    if (lomo__jtype(L, node, "decoder", ty, sizeof ty)) return -1;
    L->tk->has_decoder = 1;
    if (!strcmp(ty, "Sequence")) {
        int a = lomo__json_get(L->j, node, "decoders"), c;
        if (!lomo__json_is(L->j, a, LOMO__J_ARR)) return lomo__fail("%s: decoder Sequence: \"decoders\" is not an array", L->path);
        for (c = L->j->nodes[a].first; c >= 0; c = L->j->nodes[c].next) if (lomo__load_dec(L, c, depth + 1)) return -1;
        return 0;
    }
    if (!strcmp(ty, "ByteLevel")) op.type = LOMO__D_BYTELEVEL;
    else if (!strcmp(ty, "ByteFallback")) op.type = LOMO__D_BYTEFALLBACK;
    else if (!strcmp(ty, "Fuse")) op.type = LOMO__D_FUSE;
    else if (!strcmp(ty, "Metaspace")) {
        op.type = LOMO__D_METASPACE;
        if (lomo__replacement(L, node, "decoder Metaspace", &op) || lomo__scheme(L, node, "decoder Metaspace", &op)) { LOMO_FREE(op.s1); return -1; }
    } else if (!strcmp(ty, "Replace")) {
        op.type = LOMO__D_REPLACE;
        if (lomo__jpattern(L, node, "decoder Replace", &op, 0) ||
            !(op.s2 = lomo__jdup(L, lomo__json_get(L->j, node, "content"), "decoder Replace.content", &op.n2))) { LOMO_FREE(op.s1); return -1; }
    } else if (!strcmp(ty, "Strip")) {
        int64_t a, b;
        uint32_t c;
        op.type = LOMO__D_STRIP;
        if (!(op.s1 = lomo__jdup(L, lomo__json_get(L->j, node, "content"), "decoder Strip.content", &op.n1))) return -1;
        if (!op.n1 || (size_t)lomo__u8((const unsigned char *)op.s1, &c) != op.n1) { LOMO_FREE(op.s1); return lomo__fail("%s: decoder Strip.content: expected one character", L->path); }
        if (lomo__json_int(L->j, lomo__json_get(L->j, node, "start"), &a) || lomo__json_int(L->j, lomo__json_get(L->j, node, "stop"), &b) ||
            a < 0 || b < 0 || a > 1000000 || b > 1000000) { LOMO_FREE(op.s1); return lomo__fail("%s: decoder Strip: start and stop must be integers in [0, 1e6]", L->path); }
        op.start = (int)a; op.stop = (int)b;
    } else return lomo__fail("%s: decoder \"%s\" is not supported (lomo implements Sequence, ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip)", L->path, ty);
    (void)show;
    if (lomo__add_op(&L->tk->dec, &L->tk->ndec, &op)) { LOMO_FREE(op.s1); LOMO_FREE(op.s2); return -1; }
    return 0;
}

static int lomo__load_post(lomo__tkl *L, int node, int depth) {
    char ty[32], show[64];
    lomo_tokenizer *tk = L->tk;
    if (node < 0 || lomo__json_is(L->j, node, LOMO__J_NULL)) return 0;
    if (depth > 4) return lomo__fail("%s: post_processor nested too deep", L->path);
    if (lomo__jtype(L, node, "post_processor", ty, sizeof ty)) return -1;
    if (!strcmp(ty, "Sequence")) {
        int a = lomo__json_get(L->j, node, "processors"), c;
        if (!lomo__json_is(L->j, a, LOMO__J_ARR)) return lomo__fail("%s: post_processor Sequence: \"processors\" is not an array", L->path);
        for (c = L->j->nodes[a].first; c >= 0; c = L->j->nodes[c].next) if (lomo__load_post(L, c, depth + 1)) return -1;
        return 0;
    }
    if (!strcmp(ty, "ByteLevel")) {
        if (lomo__jbool(L, node, "trim_offsets", 1, &tk->trim_offsets, "post_processor ByteLevel") ||
            lomo__jbool(L, node, "add_prefix_space", 1, &tk->trim_prefix_space, "post_processor ByteLevel")) return -1;
        return 0;
    }
    if (!strcmp(ty, "TemplateProcessing")) {
        int single = lomo__json_get(L->j, node, "single"), sp = lomo__json_get(L->j, node, "special_tokens"), c, nA = 0;
        if (tk->has_tmpl) return lomo__fail("%s: post_processor: two TemplateProcessing are not supported", L->path);
        if (!lomo__json_is(L->j, single, LOMO__J_ARR)) return lomo__fail("%s: post_processor TemplateProcessing.single: expected an array", L->path);
        for (c = L->j->nodes[single].first; c >= 0; c = L->j->nodes[c].next) {
            int s = lomo__json_get(L->j, c, "SpecialToken"), q = lomo__json_get(L->j, c, "Sequence");
            if (q >= 0) {
                if (!lomo__json_streq(L->j, lomo__json_get(L->j, q, "id"), "A")) return lomo__fail("%s: post_processor TemplateProcessing.single: sequence %s (expected \"A\")", L->path, lomo__json_show(L->j, lomo__json_get(L->j, q, "id"), show, sizeof show));
                nA++;
                { size_t cap = (size_t)tk->ntmpl; if (lomo__grow((void **)&tk->tmpl, &cap, (size_t)tk->ntmpl + 1, 4)) return -1; }
                tk->tmpl[tk->ntmpl++] = INT32_MIN;
            } else if (s >= 0) {
                int nm = lomo__json_get(L->j, s, "id"), e = -1, ids, t;
                for (t = lomo__json_is(L->j, sp, LOMO__J_OBJ) ? L->j->nodes[sp].first : -1; t >= 0; t = L->j->nodes[t].next) {
                    char k1[256], k2[256];
                    if (lomo__json_str(L->j, L->j->nodes[t].key, k1, sizeof k1) >= 0 && lomo__json_str(L->j, nm, k2, sizeof k2) >= 0 && !strcmp(k1, k2)) { e = t; break; }
                }
                ids = lomo__json_get(L->j, e, "ids");
                if (e < 0 || !lomo__json_is(L->j, ids, LOMO__J_ARR)) return lomo__fail("%s: post_processor TemplateProcessing: special token %s is not in special_tokens (or has no ids)", L->path, lomo__json_show(L->j, nm, show, sizeof show));
                for (t = L->j->nodes[ids].first; t >= 0; t = L->j->nodes[t].next) {
                    int64_t v;
                    if (lomo__json_int(L->j, t, &v) || v < 0 || v >= tk->nvocab) return lomo__fail("%s: post_processor TemplateProcessing: special token %s: id %s is not in [0, %d)", L->path, lomo__json_show(L->j, nm, show, sizeof show), lomo__json_show(L->j, t, show, sizeof show), (int)tk->nvocab);
                    { size_t cap = (size_t)tk->ntmpl; if (lomo__grow((void **)&tk->tmpl, &cap, (size_t)tk->ntmpl + 1, 4)) return -1; }
                    tk->tmpl[tk->ntmpl++] = (int32_t)v;
                }
            } else return lomo__fail("%s: post_processor TemplateProcessing.single: item %s is neither SpecialToken nor Sequence", L->path, lomo__json_show(L->j, c, show, sizeof show));
        }
        if (nA != 1) return lomo__fail("%s: post_processor TemplateProcessing.single: expected one $A, found %d", L->path, nA);
        tk->has_tmpl = 1;
        return 0;
    }
    return lomo__fail("%s: post_processor \"%s\" is not supported (lomo implements Sequence, TemplateProcessing, ByteLevel)", L->path, ty);
}

/* added tokens of list (0 raw, 1 normalized) sorted by first byte, longest first (insertion sort: few tokens) */
static int lomo__index_added(lomo_tokenizer *tk, int list) {
    int i, n = 0, b;
    int32_t *ix = (int32_t *)LOMO_MALLOC(((size_t)tk->nadded + 1) * sizeof *ix);
    if (!ix) return lomo__fail("%s: out of memory", tk->path);
    for (i = 0; i < tk->nadded; i++) {
        const lomo__added *a = &tk->added[i];
        size_t na = list ? a->npat : a->n;
        int j;
        if (a->normalized != list || !na) continue;
        j = n++;
        while (j > 0) {
            const lomo__added *p = &tk->added[ix[j - 1]];
            const char *ps = list ? p->pat : p->s, *as = list ? a->pat : a->s;
            size_t np = list ? p->npat : p->n;
            if ((unsigned char)ps[0] < (unsigned char)as[0] || ((unsigned char)ps[0] == (unsigned char)as[0] && np >= na)) break;
            ix[j] = ix[j - 1]; j--;
            (void)ps;
        }
        ix[j] = i;
    }
    tk->aidx[list] = ix;
    for (b = 0, i = 0; b <= 256; b++) {
        while (i < n) {
            const lomo__added *a = &tk->added[ix[i]];
            if ((unsigned char)(list ? a->pat : a->s)[0] >= b) break;
            i++;
        }
        tk->abkt[list][b] = i;
    }
    tk->abkt[list][256] = n;
    return 0;
}

static int lomo__load_model(lomo__tkl *L, int model) {
    lomo_tokenizer *tk = L->tk;
    const lomo__json *j = L->j;
    int vocab = lomo__json_get(j, model, "vocab"), merges = lomo__json_get(j, model, "merges"), c, v, b;
    char ty[32], show[64], show2[64];
    size_t total = 0, nm = 0, i, cap;
    int64_t maxid = -1;
    if (lomo__jtype(L, model, "model", ty, sizeof ty)) return -1;
    if (strcmp(ty, "BPE")) return lomo__fail("%s: model type \"%s\" is not supported (lomo implements BPE)", L->path, ty);
    v = lomo__json_get(j, model, "dropout");
    if (v >= 0 && !lomo__json_is(j, v, LOMO__J_NULL) && !(lomo__json_is(j, v, LOMO__J_NUM) && j->nodes[v].num == 0.0))
        return lomo__fail("%s: model.dropout %s: BPE dropout is not supported", L->path, lomo__json_show(j, v, show, sizeof show));
    if (!lomo__json_is(j, vocab, LOMO__J_OBJ)) return lomo__fail("%s: model.vocab: expected an object, found %s", L->path, lomo__json_show(j, vocab, show, sizeof show));
    for (c = j->nodes[vocab].first; c >= 0; c = j->nodes[c].next) {
        int64_t id;
        if (lomo__json_int(j, c, &id) || id < 0 || id >= (1 << 24))
            return lomo__fail("%s: model.vocab[%s]: id %s is not an integer in [0, 2^24)", L->path, lomo__json_show(j, j->nodes[c].key, show, sizeof show), lomo__json_show(j, c, show2, sizeof show2));
        if (id > maxid) maxid = id;
        total += j->nodes[j->nodes[c].key].len + 1;
    }
    tk->nvocab = (int32_t)(maxid + 1);
    cap = (size_t)tk->nvocab + (size_t)tk->nadded;   /* room for the ids given to added tokens (lomo__added_ids) */
    tk->voff = (int64_t *)LOMO_MALLOC((cap + 1) * 8); tk->vlen = (int32_t *)LOMO_MALLOC((cap + 1) * 4);
    tk->added_of = (int32_t *)LOMO_MALLOC((cap + 1) * 4); tk->arena = (char *)LOMO_MALLOC(total + 1);
    for (tk->vmap.mask = 15; tk->vmap.mask < 2 * (size_t)j->nodes[vocab].count; tk->vmap.mask = tk->vmap.mask * 2 + 1) {}
    tk->vmap.slot = (int32_t *)LOMO_MALLOC((tk->vmap.mask + 1) * 4);
    if (!tk->voff || !tk->vlen || !tk->added_of || !tk->arena || !tk->vmap.slot) return lomo__fail("%s: out of memory", L->path);
    for (i = 0; i < cap; i++) { tk->voff[i] = -1; tk->vlen[i] = 0; tk->added_of[i] = -1; }
    for (i = 0; i <= tk->vmap.mask; i++) tk->vmap.slot[i] = -1;
    for (c = j->nodes[vocab].first; c >= 0; c = j->nodes[c].next) {
        int64_t id;
        int k = lomo__json_str(j, j->nodes[c].key, tk->arena + tk->arena_n, total + 1 - tk->arena_n);
        size_t h;
        lomo__json_int(j, c, &id);
        if (k < 0) return lomo__fail("%s: model.vocab: key %s has \\u0000", L->path, lomo__json_show(j, j->nodes[c].key, show, sizeof show));
        if (tk->voff[id] >= 0) return lomo__fail("%s: model.vocab: id %d is used twice (%s)", L->path, (int)id, lomo__json_show(j, j->nodes[c].key, show, sizeof show));
        if (lomo__vfind(tk, tk->arena + tk->arena_n, (size_t)k) >= 0) return lomo__fail("%s: model.vocab: token %s appears twice", L->path, lomo__json_show(j, j->nodes[c].key, show, sizeof show));
        tk->voff[id] = (int64_t)tk->arena_n; tk->vlen[id] = k;
        for (h = (size_t)lomo__hash(tk->arena + tk->arena_n, (size_t)k) & tk->vmap.mask; tk->vmap.slot[h] >= 0; h = (h + 1) & tk->vmap.mask) {}
        tk->vmap.slot[h] = (int32_t)id;
        tk->arena_n += (size_t)k + 1;
    }
    /* options */
    if (lomo__jbool(L, model, "byte_fallback", 0, &tk->byte_fallback, "model") || lomo__jbool(L, model, "fuse_unk", 0, &tk->fuse_unk, "model") ||
        lomo__jbool(L, model, "ignore_merges", 0, &tk->ignore_merges, "model")) return -1;
    tk->unk_id = -1;
    v = lomo__json_get(j, model, "unk_token");
    if (v >= 0 && !lomo__json_is(j, v, LOMO__J_NULL)) {
        size_t n;
        char *u = lomo__jdup(L, v, "model.unk_token", &n);
        if (!u) return -1;
        tk->has_unk = 1; tk->unk_id = lomo__vfind(tk, u, n);
        LOMO_FREE(u);
    }
    v = lomo__json_get(j, model, "continuing_subword_prefix");
    if (v >= 0 && !lomo__json_is(j, v, LOMO__J_NULL) && !(tk->cprefix = lomo__jdup(L, v, "model.continuing_subword_prefix", &tk->ncprefix))) return -1;
    v = lomo__json_get(j, model, "end_of_word_suffix");
    if (v >= 0 && !lomo__json_is(j, v, LOMO__J_NULL) && !(tk->eowsuffix = lomo__jdup(L, v, "model.end_of_word_suffix", &tk->neowsuffix))) return -1;
    for (b = 0; b < 256; b++) { char t[8]; snprintf(t, sizeof t, "<0x%02X>", b); tk->byte_id[b] = lomo__vfind(tk, t, 6); }
    /* merges */
    if (merges >= 0 && !lomo__json_is(j, merges, LOMO__J_ARR)) return lomo__fail("%s: model.merges: expected an array, found %s", L->path, lomo__json_show(j, merges, show, sizeof show));
    nm = merges >= 0 ? (size_t)j->nodes[merges].count : 0;
    for (tk->mmask = 15; tk->mmask < 2 * nm; tk->mmask = tk->mmask * 2 + 1) {}
    tk->mkey = (uint64_t *)LOMO_MALLOC((tk->mmask + 1) * 8); tk->mrank = (int32_t *)LOMO_MALLOC((tk->mmask + 1) * 4);
    tk->mnew = (int32_t *)LOMO_MALLOC((tk->mmask + 1) * 4);
    if (!tk->mkey || !tk->mrank || !tk->mnew) return lomo__fail("%s: out of memory", L->path);
    for (i = 0; i <= tk->mmask; i++) tk->mkey[i] = ~0ull;
    if (nm) {
        size_t bufcap = 1024, rank = 0;
        char *buf = (char *)LOMO_MALLOC(bufcap);
        if (!buf) return lomo__fail("%s: out of memory", L->path);
        for (c = j->nodes[merges].first; c >= 0; c = j->nodes[c].next, rank++) {
            size_t la, lb, need;
            char *a, *bb;
            int32_t ia, ib, in;
            uint64_t key;
            size_t h;
            if (lomo__json_is(j, c, LOMO__J_STR)) {
                char *sp;
                need = j->nodes[c].len * 2 + 8;
                if (need > bufcap) { LOMO_FREE(buf); bufcap = need; if (!(buf = (char *)LOMO_MALLOC(bufcap))) return lomo__fail("%s: out of memory", L->path); }
                if (lomo__json_str(j, c, buf, bufcap / 2) < 0 || !(sp = strchr(buf, ' ')) || strchr(sp + 1, ' ')) { LOMO_FREE(buf); return lomo__fail("%s: model.merges[%zu]: %s is not \"a b\" (two tokens and one space)", L->path, rank, lomo__json_show(j, c, show, sizeof show)); }
                a = buf; la = (size_t)(sp - buf); bb = sp + 1; lb = strlen(bb);
            } else if (lomo__json_is(j, c, LOMO__J_ARR) && j->nodes[c].count == 2) {
                int x = j->nodes[c].first, y = j->nodes[x].next, kx, ky;
                need = j->nodes[x].len + j->nodes[y].len + 8;
                if (need > bufcap) { LOMO_FREE(buf); bufcap = need; if (!(buf = (char *)LOMO_MALLOC(bufcap))) return lomo__fail("%s: out of memory", L->path); }
                kx = lomo__json_str(j, x, buf, j->nodes[x].len + 1);
                ky = kx < 0 ? -1 : lomo__json_str(j, y, buf + kx + 1, j->nodes[y].len + 1);
                if (kx < 0 || ky < 0) { LOMO_FREE(buf); return lomo__fail("%s: model.merges[%zu]: %s is not a pair of strings", L->path, rank, lomo__json_show(j, c, show, sizeof show)); }
                a = buf; la = (size_t)kx; bb = buf + kx + 1; lb = (size_t)ky;
            } else { LOMO_FREE(buf); return lomo__fail("%s: model.merges[%zu]: expected \"a b\" or [\"a\", \"b\"], found %s", L->path, rank, lomo__json_show(j, c, show, sizeof show)); }
            ia = lomo__vfind(tk, a, la); ib = lomo__vfind(tk, bb, lb);
            if (ia < 0 || ib < 0) { LOMO_FREE(buf); return lomo__fail("%s: model.merges[%zu]: %s: token %s is not in the vocabulary", L->path, rank, lomo__json_show(j, c, show, sizeof show), ia < 0 ? "a" : "b"); }
            /* a + b without the continuing-subword prefix of b */
            {
                size_t skip = (tk->ncprefix && lb >= tk->ncprefix && !memcmp(bb, tk->cprefix, tk->ncprefix)) ? tk->ncprefix : 0;
                char *m = (char *)LOMO_MALLOC(la + lb + 1);
                if (!m) { LOMO_FREE(buf); return lomo__fail("%s: out of memory", L->path); }
                memcpy(m, a, la); memcpy(m + la, bb + skip, lb - skip);
                in = lomo__vfind(tk, m, la + lb - skip);
                LOMO_FREE(m);
            }
            if (in < 0) { LOMO_FREE(buf); return lomo__fail("%s: model.merges[%zu]: %s: the merged token is not in the vocabulary", L->path, rank, lomo__json_show(j, c, show, sizeof show)); }
            if (rank >= 0x7fffffff) { LOMO_FREE(buf); return lomo__fail("%s: model.merges: too many", L->path); }
            key = ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib;
            for (h = (size_t)lomo__mix64(key) & tk->mmask; tk->mkey[h] != ~0ull && tk->mkey[h] != key; h = (h + 1) & tk->mmask) {}
            tk->mkey[h] = key; tk->mrank[h] = (int32_t)rank; tk->mnew[h] = in;  /* a repeated pair keeps the later rank, as a HashMap collect does */
        }
        LOMO_FREE(buf);
    }
    return 0;
}

/* Ids of the added tokens as tokenizers gives them when it loads a file (the
   "id" fields are only checked there, with a warning): in file order, a content
   already in the vocabulary or added before keeps that id (a repeat replaces
   the earlier flags), else the next id: the model's vocabulary count for the
   first, then one past the largest added id, or the count if that is larger. */
static void lomo__added_ids(lomo_tokenizer *tk) {
    int k, m, out = 0;
    int64_t nmodel = 0, maxa = -1;
    int32_t i;
    for (i = 0; i < tk->nvocab; i++) nmodel += tk->voff[i] >= 0;
    for (k = 0; k < tk->nadded; k++) {
        lomo__added t = tk->added[k];
        int32_t id = -1;
        for (m = 0; m < out; m++) if (tk->added[m].n == t.n && !memcmp(tk->added[m].s, t.s, t.n)) break;
        if (m < out) {  /* repeated content: the later token's flags win */
            LOMO_FREE(tk->added[m].s); LOMO_FREE(tk->added[m].pat);
            t.id = tk->added[m].id;
            tk->added[m] = t;
            continue;
        }
        id = lomo__vfind(tk, t.s, t.n);
        if (id < 0) id = (int32_t)(maxa < 0 ? nmodel : (maxa >= nmodel || nmodel == 0) ? maxa + 1 : nmodel);
        if (id > maxa) maxa = id;
        t.id = id;
        tk->added[out++] = t;
    }
    tk->nadded = out;
    if (maxa + 1 > tk->nvocab) tk->nvocab = (int32_t)(maxa + 1);
    for (i = 0; i < tk->nvocab; i++) tk->added_of[i] = -1;
    for (k = 0; k < tk->nadded; k++) tk->added_of[tk->added[k].id] = k;
}

LOMODEF lomo_tokenizer *lomo_tokenizer_load(const char *path) {
    char *txt = NULL, *full = NULL, show[64];
    size_t n, i;
    struct stat st;
    lomo__json j;
    memset(&j, 0, sizeof j);
    lomo__tkl L;
    lomo_tokenizer *tk;
    int root, a, c, k;
    if (!path) { lomo__fail("lomo_tokenizer_load: NULL path"); return NULL; }
    n = strlen(path);
    if (!(full = (char *)LOMO_MALLOC(n + 20))) { lomo__fail("out of memory"); return NULL; }
    memcpy(full, path, n + 1);
    if (!stat(path, &st) && S_ISDIR(st.st_mode)) snprintf(full + n, 20, "%stokenizer.json", n && path[n - 1] == '/' ? "" : "/");
    if (!(tk = (lomo_tokenizer *)LOMO_MALLOC(sizeof *tk))) { LOMO_FREE(full); lomo__fail("out of memory"); return NULL; }
    memset(tk, 0, sizeof *tk);
    tk->path = full;
    L.tk = tk; L.j = &j; L.path = full;
    if (lomo__read_file(full, &txt, &n) || lomo__json_parse(&j, txt, n, full)) goto fail;
    root = 0;
    if (!lomo__json_is(&j, root, LOMO__J_OBJ)) { lomo__fail("%s: expected a JSON object at the top", full); goto fail; }
    for (k = 0; k < 2; k++) {
        const char *key = k ? "padding" : "truncation";
        int v = lomo__json_get(&j, root, key);
        if (v >= 0 && !lomo__json_is(&j, v, LOMO__J_NULL)) { lomo__fail("%s: \"%s\" is set (%s): lomo does not apply truncation or padding inside the tokenizer; set it to null", full, key, lomo__json_show(&j, v, show, sizeof show)); goto fail; }
    }
    /* added tokens (before the model: their ids count in the vocabulary size) */
    a = lomo__json_get(&j, root, "added_tokens");
    if (a >= 0 && !lomo__json_is(&j, a, LOMO__J_ARR)) { lomo__fail("%s: added_tokens: expected an array, found %s", full, lomo__json_show(&j, a, show, sizeof show)); goto fail; }
    if (a >= 0 && j.nodes[a].count) {
        if (!(tk->added = (lomo__added *)LOMO_MALLOC((size_t)j.nodes[a].count * sizeof *tk->added))) { lomo__fail("%s: out of memory", full); goto fail; }
        for (c = j.nodes[a].first; c >= 0; c = j.nodes[c].next) {
            lomo__added *t = &tk->added[tk->nadded];
            int64_t id;
            memset(t, 0, sizeof *t);
            if (lomo__json_int(&j, lomo__json_get(&j, c, "id"), &id) || id < 0 || id >= (1 << 24)) { lomo__fail("%s: added_tokens[%d].id: expected an integer in [0, 2^24), found %s", full, tk->nadded, lomo__json_show(&j, lomo__json_get(&j, c, "id"), show, sizeof show)); goto fail; }
            t->id = (int32_t)id;
            if (!(t->s = lomo__jdup(&L, lomo__json_get(&j, c, "content"), "added_tokens[].content", &t->n))) goto fail;
            tk->nadded++;
            if (!t->n) { lomo__fail("%s: added_tokens[%d].content is empty", full, tk->nadded - 1); goto fail; }
            if (lomo__jbool(&L, c, "special", 0, &t->special, "added_tokens[]") || lomo__jbool(&L, c, "normalized", !t->special, &t->normalized, "added_tokens[]") ||
                lomo__jbool(&L, c, "lstrip", 0, &t->lstrip, "added_tokens[]") || lomo__jbool(&L, c, "rstrip", 0, &t->rstrip, "added_tokens[]") ||
                lomo__jbool(&L, c, "single_word", 0, &t->single_word, "added_tokens[]")) goto fail;
        }
    }
    if (lomo__load_model(&L, lomo__json_get(&j, root, "model"))) goto fail;
    lomo__added_ids(tk);
    if (lomo__load_norm(&L, lomo__json_get(&j, root, "normalizer"), 0) || lomo__load_pre(&L, lomo__json_get(&j, root, "pre_tokenizer"), 0) ||
        lomo__load_dec(&L, lomo__json_get(&j, root, "decoder"), 0) || lomo__load_post(&L, lomo__json_get(&j, root, "post_processor"), 0)) goto fail;
    /* NFC composition pairs */
    for (i = 0; i < (size_t)tk->nnorm; i++) if (tk->norm[i].type == LOMO__N_NFC) break;
    if (i < (size_t)tk->nnorm) {
        size_t e, m = 0;
        if (!(tk->comp = (uint32_t *)LOMO_MALLOC(LOMO__NEL(lomo__u_dec) * sizeof(uint32_t)))) { lomo__fail("%s: out of memory", full); goto fail; }
        for (e = 0; e < LOMO__NEL(lomo__u_dec); e += 3)
            if (lomo__u_dec[e] >> 31) { tk->comp[m] = lomo__u_dec[e + 1]; tk->comp[m + 1] = lomo__u_dec[e + 2]; tk->comp[m + 2] = lomo__u_dec[e] & 0x7fffffffu; m += 3; }
        tk->ncomp = (int)(m / 3);
        qsort(tk->comp, (size_t)tk->ncomp, 3 * sizeof(uint32_t), lomo__cmp_comp);
    }
    /* normalized added tokens are matched in normalized text: their pattern is their normalized content */
    for (k = 0; k < tk->nadded; k++) {
        lomo__added *t = &tk->added[k];
        if (t->normalized) {
            lomo__ns s;
            memset(&s, 0, sizeof s);
            for (i = 0; i < t->n; i++) if (lomo__ns_push(&s, t->s + i, 1, 0, 0)) { lomo__ns_free(&s); goto fail; }
            if (lomo__normalize(tk, &s)) { lomo__ns_free(&s); goto fail; }
            t->pat = s.p; t->npat = s.n; s.p = NULL;
            if (!t->pat && !(t->pat = (char *)LOMO_MALLOC(1))) { lomo__ns_free(&s); goto fail; }
            lomo__ns_free(&s);
        }
    }
    if (lomo__index_added(tk, 0) || lomo__index_added(tk, 1)) goto fail;
    /* GPT-2 bytes_to_unicode */
    for (k = 0; k < 324; k++) tk->bl_byte[k] = -1;
    {
        int nn = 0;
        for (k = 0; k < 256; k++) {
            uint32_t cp = ((k >= '!' && k <= '~') || (k >= 0xa1 && k <= 0xac) || (k >= 0xae && k <= 0xff)) ? (uint32_t)k : (uint32_t)(256 + nn++);
            char e[4];
            int len = lomo__u8enc(cp, e);
            tk->bl_len[k] = (unsigned char)len; tk->bl_chr[k][0] = e[0]; tk->bl_chr[k][1] = len > 1 ? e[1] : 0;
            tk->bl_byte[cp] = (int16_t)k;
        }
    }
    /* word cache */
    tk->cache_mask = (1u << 16) - 1; tk->ckey_cap = (size_t)1 << 21; tk->cval_cap = (size_t)3 << 18;
    lomo__json_free(&j);
    LOMO_FREE(txt);
    return tk;
fail:
    lomo__json_free(&j);
    LOMO_FREE(txt);
    lomo_tokenizer_free(tk);
    return NULL;
}

#endif /* LOMO_NO_TOKENIZER */

/* ======================================================================== */
/* 13. generation: KV cache, sampling (LOMO_NO_GENERATE)                    */
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
    float *inv_freq;            /* 3 x head_dim / 2: the model's (longrope: short factors), Gemma 3's
                                   local layers', longrope's long factors */
    int long_rope;              /* longrope: the cached keys are rotated with the long factors */
    int32_t *hist;              /* (cap) host: the ids of the cached positions (longrope recomputes them) */
    int32_t *tok;               /* chunk ids, backend memory */
    void *scratch; size_t scratch_bytes;
};

static void lomo__kv_attn(lomo_trainer *t, int l, lomo__acts *a) {
    lomo_kv *kv = t->kv;
    const lomo_config *c = &t->m->cfg;
    const lomo_backend *be = t->m->be;
    int n = t->N, pos0 = kv->n, hd = c->head_dim, rot = c->rotary_dim > 0 ? c->rotary_dim : hd;
    int window = lomo__layer_local(c, l) ? c->local_window : c->sliding_window;
    float *kc = kv->k + (size_t)l * kv->cap * kv->kvd, *vc = kv->v + (size_t)l * kv->cap * kv->kvd;
    float mscale = c->rope_type == 3 ? c->rope_attn_factor : 1.0f;
    /* the training forward's scale (attn_fwd's 1/sqrtf(hd) for the plain families) */
    float scale = c->gemma || c->local_window > 0 ? lomo__attn_scale(c) : 1.0f / sqrtf((float)hd);
    /* the layer's frequencies as lomo__layer_inv_freq; longrope as transformers' generate picks them:
       the long factors for every position of a forward call that reaches past the original length */
    const float *ifr = kv->long_rope ? kv->inv_freq + hd : lomo__layer_inv_freq(t, l);
    be->rope_at(be->ctx, a->q, ifr, n, c->n_heads, hd, rot, mscale, pos0);
    be->rope_at(be->ctx, a->k, ifr, n, c->n_kv_heads, hd, rot, mscale, pos0);
    be->copy(be->ctx, kc + (size_t)pos0 * kv->kvd, a->k, sizeof(float) * (size_t)n * kv->kvd);
    be->copy(be->ctx, vc + (size_t)pos0 * kv->kvd, a->v, sizeof(float) * (size_t)n * kv->kvd);
    be->attn_kv(be->ctx, a->att, a->q, kc, vc, n, pos0, c->n_heads, c->n_kv_heads, hd, scale, lomo__attn_cap(c), window);
}

LOMODEF void lomo_kv_free(lomo_kv *kv) {
    if (!kv) return;
    if (kv->m->be->set_scratch) kv->m->be->set_scratch(kv->m->be->ctx, NULL, 0, (int)kv->m->cfg.dtype);   /* nobody keeps this scratch */
    LOMO_FREE(kv->hist);
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
    if (c->gemma && !m->be->rmsnorm_ex_fwd) {
        lomo__fail("generate: backend '%s' has no rmsnorm_ex_fwd, which Gemma's (1 + w) norms need", m->be->name); return NULL;
    }
    if (max_tokens <= 0 || max_chunk <= 0) {
        lomo__fail("generate: max_tokens (%d) and max_chunk (%d) must be positive", max_tokens, max_chunk); return NULL;
    }
    if (max_chunk > max_tokens) max_chunk = max_tokens;
    C = (uint64_t)c->dim; V = (uint64_t)c->vocab_size; L = (uint64_t)c->n_layers;
    kvd = (uint64_t)c->n_kv_heads * (uint64_t)c->head_dim; cap = (uint64_t)max_tokens; ch = (uint64_t)max_chunk;
    acts = (uint64_t)lomo__acts_floats(c, max_chunk);
    floats = 2 * L * cap * kvd + 2 * ch * C + acts + ch * (C + 1) + ch * V + 3 * (uint64_t)(c->head_dim / 2);
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
    kv->inv_freq = p; p += 3 * (c->head_dim / 2);
    kv->tok = (int32_t *)p;
    kv->scratch_bytes = m->be->scratch_bytes ? m->be->scratch_bytes(m->be->ctx, m, max_chunk, 0) : 0;
    if (kv->scratch_bytes && !(kv->scratch = lomo__alloc(m, LOMO_MEM_KV, kv->scratch_bytes))) {
        kv->scratch_bytes = 0; lomo_kv_free(kv); return NULL;
    }
    if (!(kv->hist = (int32_t *)LOMO_MALLOC(sizeof(int32_t) * (size_t)max_tokens))) {
        lomo__fail("generate: out of host memory"); lomo_kv_free(kv); return NULL;
    }
    if (!(f = (float *)LOMO_MALLOC(sizeof(float) * (size_t)(3 * (c->head_dim / 2) + 1)))) {
        lomo__fail("generate: out of host memory"); lomo_kv_free(kv); return NULL;
    }
    memset(f, 0, sizeof(float) * (size_t)(3 * (c->head_dim / 2)));
    {   /* the sets lomo__trainer_new makes (Gemma 3's local layers: plain RoPE with their own base) */
        lomo_config loc = *c;
        loc.rope_type = 0;
        if (c->rope_local_theta > 0) loc.rope_theta = c->rope_local_theta;
        lomo__rope_inv_freq(c, f);
        lomo__rope_inv_freq(&loc, f + c->head_dim / 2);
        if (c->rope_type == 3) lomo__rope_inv_freq_len(c, f + c->head_dim, c->rope_original_max_pos + 1);
    }
    m->be->upload(m->be->ctx, kv->inv_freq, f, sizeof(float) * (size_t)(3 * (c->head_dim / 2)));
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

static int lomo__kv_run(lomo_kv *kv, const int32_t *tokens, int n, float *logits, int all_logits);
LOMODEF int lomo_kv_eval(lomo_kv *kv, const int32_t *tokens, int n, float *logits, int all_logits) {
    lomo_model *m;
    const lomo_config *c;
    int i;
    if (!kv || !tokens || n <= 0 || !logits) return lomo__fail("kv cache: eval needs tokens (n = %d > 0) and a logits buffer", n);
    m = kv->m; c = &m->cfg;
    if (n > kv->cap - kv->n)
        return lomo__fail("kv cache: %d new tokens after %d would pass its capacity of %d positions", n, kv->n, kv->cap);
    for (i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return lomo__fail("generate: token %d = %d is outside the vocabulary [0, %d)", i, tokens[i], c->vocab_size);
    if (c->rope_type == 3) {
        /* longrope as transformers generates (Phi3ForCausalLM.prepare_inputs_for_generation and
           the rotary embedding's longrope update): a forward call whose positions reach past
           original_max_position_embeddings rotates with the long factors, and the call that first
           crosses it drops the cache and recomputes every position; so all cached keys share one
           set of factors, and the cache is recomputed when this call needs the other set */
        int want = kv->n + n > c->rope_original_max_pos;
        if (kv->n > 0 && want != kv->long_rope) {
            int old = kv->n;
            kv->n = 0; kv->long_rope = want;
            if (lomo__kv_run(kv, kv->hist, old, logits, 0)) { kv->n = 0; return -1; }
        }
        kv->long_rope = want;
    }
    memcpy(kv->hist + kv->n, tokens, sizeof(int32_t) * (size_t)n);
    return lomo__kv_run(kv, tokens, n, logits, all_logits);
}

/* lomo_kv_eval's forward of n checked tokens after the kv->n cached ones */
static int lomo__kv_run(lomo_kv *kv, const int32_t *tokens, int n, float *logits, int all_logits) {
    lomo_model *m = kv->m;
    const lomo_config *c = &m->cfg;
    const lomo_backend *be = m->be;
    int done = 0;
    while (done < n) {
        int nn = n - done < kv->chunk ? n - done : kv->chunk, l, last = done + nn == n;
        lomo__acts a;
        float *x = kv->x, *x2 = kv->x2, *tmp;
        if (be->set_scratch) be->set_scratch(be->ctx, kv->scratch, kv->scratch_bytes, (int)c->dtype);   /* always: this call's */
        be->upload(be->ctx, kv->tok, tokens + done, sizeof(int32_t) * (size_t)nn);
        be->embed_fwd(be->ctx, x, kv->tok, m->embed, nn, c->dim);
        if (c->gemma) be->scale(be->ctx, x, (float)sqrt((double)c->dim), (size_t)nn * c->dim);   /* as lomo__forward */
        kv->t.T = kv->t.N = nn;
        lomo__acts_carve(&a, kv->acts, c, nn);
        for (l = 0; l < c->n_layers; l++) {
            lomo__layer_fwd(&kv->t, l, x, &a, x2);
            tmp = x; x = x2; x2 = tmp;
        }
        if (all_logits || last) {   /* the head: every row, or only the last one */
            int r0 = all_logits ? 0 : nn - 1, rows = nn - r0;
            float *dst = all_logits ? logits + (size_t)done * c->vocab_size : logits;
            lomo__norm_fwd(&kv->t, kv->lnf, kv->rstdf, x + (size_t)r0 * c->dim, m->final_norm, rows, c->dim);
            be->matmul_fwd(be->ctx, kv->logits, kv->lnf, m->lm_head, NULL, rows, c->dim, c->vocab_size, 0);
            if (be->check(be->ctx)) return -1;
            be->download(be->ctx, dst, kv->logits, sizeof(float) * (size_t)rows * c->vocab_size);
            if (c->final_softcap > 0) {   /* Gemma 2's final soft-cap, as the backends' cross_entropy_softcap */
                size_t i2, nl = (size_t)rows * c->vocab_size;
                for (i2 = 0; i2 < nl; i2++) dst[i2] = c->final_softcap * tanhf(dst[i2] / c->final_softcap);
            }
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

/* ======================================================================== */
/* 14. sharding: the MPI communicator (only with LOMO_MPI)                  */
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
    lomo_comm *c = (lomo_comm *)lomo__calloc(1, sizeof *c);
    lomo__mpi *x = (lomo__mpi *)lomo__calloc(1, sizeof *x);
    const char *env = getenv("LOMO_COMM_TIMEOUT");
    if (!c || !x) { LOMO_FREE(c); LOMO_FREE(x); lomo__fail("out of host memory"); return NULL; }
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
    LOMO_FREE(c->ctx);
    LOMO_FREE(c);
}
#endif /* LOMO_MPI */

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
