/* llama_ft.c - fine-tune every parameter of a Llama-family model with LOMO.
   The program to copy and adapt: start at main (the last function, one
   screen), then read the section of the step you want to change.

   MAP (in file order; each section opens with a "---- name" banner)
     options      usage, struct args, parse_args (every flag, checked whole), check_choices
     text data    the model's tokenizer.json and chat template, open_data; --render-chat
     helpers      clock, signals, the --out probe, the CSV log, die
     schedule     lr_at: warmup, then constant / linear / cosine
     evaluation   --eval (mean loss), multiple choice (--mc), the demo task and its accuracy
     state        trainer_state.json (read_state) and save_checkpoint (--save-every, --resume)
     token ids    JSON arrays of ids in; text mode (--tokenize / --detokenize)
     generation   --prompt-ids, --generate, --sample-every
     platform     the backend (lomo_backend_open) and the MPI / NCCL ranks: every
                  CUDA / NCCL / MPI #if after the includes is in this one section
     the run      load_model, prepare, eval_modes, open_train_data, eval_before, train
                  (the loop: lomo_data_next_rank -> lomo_step -> log / eval / save),
                  finish (final eval, memory report, lomo_save_ex), run_free, main
   A user adapting it usually touches: options (a new flag), the run (the
   loop, or what is saved), lr_at (the schedule), and for other data, the
   lomo_data_opts given to open_data.

   BUILD outside this repository: the file includes "../lomo.h" (and, for CUDA,
   "../lomo_cuda.cuh"): keep those one directory up or change the two #includes.
     cc -std=c11 -O3 -fopenmp llama_ft.c -o llama_ft -lm   (+ -DLOMO_CBLAS ... -lopenblas)
     mpicc ... -DLOMO_MPI llama_ft.c -o llama_ft_mpi        (--shard under mpirun)
     CUDA: nvcc -c a copy of examples/cuda_impl.cu (it defines LOMO_CUDA and
     LOMO_IMPLEMENTATION, then includes both headers), then cc -DLOMO_CUDA
     llama_ft.c cuda_impl.o -L$CUDA/lib64 -lcudart -lcublas -lstdc++ -lgomp -lm
     (--device cuda). The Makefile's llama_ft* rules have the exact flags.

   Train:   llama_ft --model HF_DIR --data train.jsonl --out OUT_DIR [options]
   Eval:    llama_ft --model HF_DIR --eval eval.jsonl         (mean loss, no training)
   Choice:  llama_ft --model HF_DIR --mc choices.jsonl        (multiple-choice accuracy)
   Generate: llama_ft --model HF_DIR --prompt-ids FILE --max-new-tokens N
            (FILE: one JSON array of prompt ids per line; prints one JSON array of
            generated ids per line, greedy unless --temperature, stopping early only
            at an EOS id of config.json / generation_config.json)
   Demo:    llama_ft                                           (no --model: built-in task)
   Text:    llama_ft --model DIR --tokenize FILE [--add-special]  (JSONL {"text": ...} -> a JSON array of ids per line)
            llama_ft --model DIR --detokenize FILE               (JSON arrays of ids -> {"text": ...} per line)
            (DIR/tokenizer.json only; as tokenizers' encode / decode(skip_special_tokens=False))

   Data: JSONL lines {"input_ids": [...], "labels": [...]} (labels optional,
   -100 ignored; position t predicts labels[t+1], as in transformers), or a
   packed file of little-endian uint32 tokens. Text, tokenized once per run
   with the model's tokenizer.json: JSONL lines {"text"}, {"prompt",
   "completion"}, alpaca {"instruction", "input", "output"} or chat
   {"messages"} (with --chat-template NAME, or the template detected from
   tokenizer_config.json), or a plain *.txt file; see lomo_data_open.
   Check what training will see:
            llama_ft --model DIR --render-chat chat.jsonl [--chat-template NAME]
   prints {"input_ids": [...], "labels": [...]} per line. Multiple choice: JSONL lines
   {"prompt": [...], "candidates": [[...], ...], "answer": i}, scored by the
   average log-likelihood of each candidate given the prompt (highest wins).

   Outputs: OUT_DIR (a Hugging Face checkpoint in the dtype the model came in,
   tokenizer files carried over), OUT_DIR.log.csv (one line per step), and
   with --save-every N a resumable checkpoint OUT_DIR.checkpoint (weights in
   the storage dtype, trainer.safetensors with the optimizer state and loss
   scale, trainer_state.json with the data position) that --resume continues
   bitwise.

   Sharded over processes (ZeRO-3 style, each rank holds 1/N of every
   tensor): build with -DLOMO_MPI (mpicc; `make` does it as build/llama_ft_mpi)
   and run `mpirun -np N build/llama_ft_mpi --shard ...`. --batch is per rank:
   each step reads N x --batch sequences and rank r trains on its slice; the
   result equals one process with N x --batch. Rank 0 prints and saves. */
/* Built alone (cc llama_ft.c) it carries lomo's implementation and runs on
   the CPU. Built with -DLOMO_CUDA it is linked against the implementation
   object compiled by nvcc (examples/cuda_impl.cu, see lomo_cuda.cuh) and
   --device cuda trains on the GPU. */
#ifndef LOMO_CUDA
#define LOMO_IMPLEMENTATION
#endif
#include "../lomo.h"
#ifdef LOMO_CUDA
#include "../lomo_cuda.cuh"
#endif
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>
#ifndef LOMO_FREE   /* -DLOMO_CUDA: the implementation is in cuda_impl.o, with the default allocator */
#define LOMO_FREE(p) free(p)
#endif


/* ---- options: usage, struct args, parse_args (every flag), check_choices ---- */

#define EVAL_SEQ_CAP 2048   /* --eval / --mc without --seq-len: the model's context, at most this */

static void usage(void) {
    fprintf(stderr,
        "usage: llama_ft [--model DIR] [--data FILE] [--eval-data FILE] [--out DIR]\n"
        "  --seq-len N --batch N --steps N | --epochs N --lr X --schedule constant|linear|cosine\n"
        "  --warmup X (steps, or a fraction of the steps if < 1) --optimizer lomo|adalomo|adamw\n"
        "  --clip-norm X --clip-value X --weight-decay X --dtype f32|bf16|f16 --checkpointing\n"
        "  --no-shuffle --seed N --save-every N --resume DIR --eval-every N\n"
        "  --stop-after N (end this run after N steps with a resumable checkpoint, e.g. for job time limits)\n"
        "  --log-every N (progress line every N steps; default 1, the demo 20; the CSV has every step)\n"
        "  --micro-batches M (gradient accumulation: a step is M x --batch sequences, walked layer by layer)\n"
        "  --clip-mode global|gram|tensor --stochastic-rounding (16-bit storage)\n"
        "  --pass-cache auto|on|off (two-pass steps keep the residual gradients of the norm pass; auto: without\n"
        "    --checkpointing)\n"
        "  --device cpu|cuda (cuda: a build with -DLOMO_CUDA, see lomo_cuda.cuh)\n"
        "  --shard (under mpirun, a build with -DLOMO_MPI: parameters sharded over the ranks; --batch per rank)\n"
        "  --loss-scale X (dynamic loss scaling from X; default: on for f16 on CUDA, from 65536) --loss-scale-window N\n"
        "  --eval FILE (evaluate only) --mc FILE (multiple-choice accuracy); both use --seq-len when given,\n"
        "    else the model's max_position_embeddings up to %d\n"
        "  --max-skipped N (stop after N consecutive skipped steps, loss-scale back-offs aside; default 5, 0 = never)\n"
        "  SIGINT/SIGTERM: the current step finishes, a resumable checkpoint OUT.checkpoint is written, exit 130/143\n"
        "  --tokenize FILE [--add-special] | --detokenize FILE (with --model DIR holding tokenizer.json: ids <-> text, one JSON line each)\n"
        "  --prompt-ids FILE --max-new-tokens N (generate from each line's JSON array of ids; prints the new ids)\n"
        "  --generate TEXT (needs a tokenizer) --temperature T --top-k K (sampling default 50) --top-p P\n"
        "  --repetition-penalty X --seed S --stop STR; --sample-every N --sample-prompt \"[ids]\" or text (greedy sample\n"
        "  while training, also in OUT.samples.jsonl)\n"
        "  --chat-template llama3|chatml|qwen2|mistral|mistral-v1 (for {\"messages\"} data; default: from tokenizer_config.json)\n"
        "    with --generate: the text is one user message (auto = the model's template)\n"
        "  --render-chat FILE (print the input_ids and labels training would take from FILE, then exit)\n"
        "  without --model: the built-in demo (a small Llama on a synthetic task)\n", EVAL_SEQ_CAP);
}

typedef struct args {
    const char *model, *data, *eval_data, *out, *eval_only, *mc, *resume, *schedule, *optimizer, *dtype, *clip_mode, *device;
    const char *pass_cache;
    int seq_len, batch, steps, epochs, checkpointing, shuffle, save_every, eval_every, stop_after, log_every;
    int micro_batches, stochastic_rounding, loss_scale_window, shard, max_skipped, seq_len_given;
    float lr, warmup, clip_norm, clip_value, weight_decay, loss_scale;
    uint64_t seed;
    const char *tokenize, *detokenize;
    int add_special;
    const char *chat_template, *render_chat;   /* text data */
    const char *prompt_ids, *generate, *sample_prompt, *stop;   /* generation (gen_* functions) */
    int max_new_tokens, top_k, sample_every, gen_bad;
    float temperature, top_p, repetition_penalty;
    int seq_len_in_argv;                        /* "--seq-len" anywhere in argv (--render-chat) */
    int optimizer_id, clip_mode_id;             /* check_choices: --optimizer, --clip-mode as LOMO_OPT_*, LOMO_CLIP_* */
    int pass_cache_id;                          /* ... --pass-cache as lomo_train_opts.pass_cache */
    lomo_dtype dtype_id;                        /* ... and --dtype */
} args;

/* strict numbers: the whole value, in range, or an error naming the flag */
static int parse_int(const char *flag, const char *v, long lo, long hi, int *out) {
    char *end;
    long x;
    errno = 0;
    x = strtol(v, &end, 10);
    if (end == v || *end || errno == ERANGE || x < lo || x > hi) {
        fprintf(stderr, "llama_ft: %s %s: expected an integer in [%ld, %ld]\n", flag, v, lo, hi);
        return -1;
    }
    *out = (int)x;
    return 0;
}

static int parse_float(const char *flag, const char *v, double lo, double hi, int lo_open, float *out) {
    char *end;
    double x;
    errno = 0;
    x = strtod(v, &end);
    if (end == v || *end || !isfinite(x) || fabs(x) > 3.4e38 || x < lo || x > hi || (lo_open && x == lo)) {
        fprintf(stderr, "llama_ft: %s %s: expected a finite number %s %g%s\n", flag, v, lo_open ? ">" : ">=", lo,
                hi < 1e38 ? " and <= the upper limit" : "");
        return -1;
    }
    *out = (float)x;
    return 0;
}

static int parse_u64(const char *flag, const char *v, uint64_t *out) {
    char *end;
    unsigned long long x;
    errno = 0;
    x = strtoull(v, &end, 10);
    if (end == v || *end || errno == ERANGE || v[0] == '-') {
        fprintf(stderr, "llama_ft: %s %s: expected an unsigned integer below 2^64\n", flag, v);
        return -1;
    }
    *out = (uint64_t)x;
    return 0;
}

static int gen_flag(args *a, const char *k, const char *v);   /* the generation flags (generation section) */

#define GO_ON (-1)   /* a step of main that did not end the program */

/* Fills a from argv: the defaults, then every flag. GO_ON, or the exit code (0 after --help, 2 for a bad flag). */
static int parse_args(int argc, char **argv, args *a) {
    memset(a, 0, sizeof *a);
    a->out = "llama_ft_out"; a->schedule = "constant"; a->optimizer = "lomo"; a->dtype = "f32"; a->clip_mode = "global";
    a->device = "cpu"; a->pass_cache = "auto";
    a->seq_len = 256; a->batch = 8; a->lr = 1e-3f; a->clip_norm = 1.0f; a->shuffle = 1; a->seed = 42; a->log_every = 1;
    a->max_skipped = 5;
    a->temperature = -1.0f; a->top_k = -1; a->max_new_tokens = -1;   /* -1: not given */
    for (int i = 1; i < argc; i++) a->seq_len_in_argv |= !strcmp(argv[i], "--seq-len");
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "--checkpointing")) { a->checkpointing = 1; continue; }
        if (!strcmp(k, "--no-shuffle")) { a->shuffle = 0; continue; }
        if (!strcmp(k, "--stochastic-rounding")) { a->stochastic_rounding = 1; continue; }
        if (!strcmp(k, "--shard")) { a->shard = 1; continue; }
        if (!strcmp(k, "--add-special")) { a->add_special = 1; continue; }
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) { usage(); return 0; }
        if (!v) { fprintf(stderr, "llama_ft: %s needs a value\n", k); usage(); return 2; }
        i++;
        if (!strcmp(k, "--model")) a->model = v;
        else if (!strcmp(k, "--data")) a->data = v;
        else if (!strcmp(k, "--eval-data")) a->eval_data = v;
        else if (!strcmp(k, "--eval")) a->eval_only = v;
        else if (!strcmp(k, "--mc")) a->mc = v;
        else if (!strcmp(k, "--tokenize")) a->tokenize = v;
        else if (!strcmp(k, "--detokenize")) a->detokenize = v;
        else if (!strcmp(k, "--out")) a->out = v;
        else if (!strcmp(k, "--resume")) a->resume = v;
        else if (!strcmp(k, "--seq-len")) { if (parse_int(k, v, 2, INT_MAX, &a->seq_len)) return 2; a->seq_len_given = 1; }
        else if (!strcmp(k, "--batch")) { if (parse_int(k, v, 1, INT_MAX, &a->batch)) return 2; }
        else if (!strcmp(k, "--steps")) { if (parse_int(k, v, 1, INT_MAX, &a->steps)) return 2; }
        else if (!strcmp(k, "--epochs")) { if (parse_int(k, v, 1, INT_MAX, &a->epochs)) return 2; }
        else if (!strcmp(k, "--lr")) { if (parse_float(k, v, 0, 1e38, 0, &a->lr)) return 2; }
        else if (!strcmp(k, "--schedule")) a->schedule = v;
        else if (!strcmp(k, "--warmup")) { if (parse_float(k, v, 0, 1e38, 0, &a->warmup)) return 2; }
        else if (!strcmp(k, "--optimizer")) a->optimizer = v;
        else if (!strcmp(k, "--clip-norm")) { if (parse_float(k, v, 0, 1e38, 0, &a->clip_norm)) return 2; }
        else if (!strcmp(k, "--clip-value")) { if (parse_float(k, v, 0, 1e38, 0, &a->clip_value)) return 2; }
        else if (!strcmp(k, "--weight-decay")) { if (parse_float(k, v, 0, 1e38, 0, &a->weight_decay)) return 2; }
        else if (!strcmp(k, "--dtype")) a->dtype = v;
        else if (!strcmp(k, "--seed")) { if (parse_u64(k, v, &a->seed)) return 2; }
        else if (!strcmp(k, "--save-every")) { if (parse_int(k, v, 0, INT_MAX, &a->save_every)) return 2; }
        else if (!strcmp(k, "--eval-every")) { if (parse_int(k, v, 0, INT_MAX, &a->eval_every)) return 2; }
        else if (!strcmp(k, "--stop-after")) { if (parse_int(k, v, 1, INT_MAX, &a->stop_after)) return 2; }
        else if (!strcmp(k, "--log-every")) { if (parse_int(k, v, 1, INT_MAX, &a->log_every)) return 2; }
        else if (!strcmp(k, "--micro-batches")) { if (parse_int(k, v, 1, INT_MAX, &a->micro_batches)) return 2; }
        else if (!strcmp(k, "--clip-mode")) a->clip_mode = v;
        else if (!strcmp(k, "--pass-cache")) a->pass_cache = v;
        else if (!strcmp(k, "--device")) a->device = v;
        else if (!strcmp(k, "--loss-scale")) { if (parse_float(k, v, 0, 1e38, 1, &a->loss_scale)) return 2; }
        else if (!strcmp(k, "--loss-scale-window")) { if (parse_int(k, v, 1, INT_MAX, &a->loss_scale_window)) return 2; }
        else if (!strcmp(k, "--max-skipped")) { if (parse_int(k, v, 0, INT_MAX, &a->max_skipped)) return 2; }
        else if (!strcmp(k, "--chat-template")) a->chat_template = v;
        else if (!strcmp(k, "--render-chat")) a->render_chat = v;
        else if (gen_flag(a, k, v)) { if (a->gen_bad) return 2; }
        else { fprintf(stderr, "llama_ft: unknown flag %s\n", k); usage(); return 2; }
    }
    return GO_ON;
}

/* The named choices (--schedule, --optimizer, --clip-mode, --dtype, --pass-cache) as lomo's enums; checked after the
   tokenizer-only modes, which ignore them. GO_ON or 2. */
static int check_choices(args *a) {
    if (strcmp(a->schedule, "constant") && strcmp(a->schedule, "linear") && strcmp(a->schedule, "cosine")) {
        fprintf(stderr, "llama_ft: --schedule %s: expected constant, linear or cosine\n", a->schedule);
        return 2;
    }
    a->optimizer_id = !strcmp(a->optimizer, "lomo") ? LOMO_OPT_LOMO : !strcmp(a->optimizer, "adalomo") ? LOMO_OPT_ADALOMO
                    : !strcmp(a->optimizer, "adamw") ? LOMO_OPT_ADAMW : -1;
    a->clip_mode_id = !strcmp(a->clip_mode, "global") ? LOMO_CLIP_GLOBAL : !strcmp(a->clip_mode, "gram") ? LOMO_CLIP_GLOBAL_GRAM
                    : !strcmp(a->clip_mode, "tensor") ? LOMO_CLIP_TENSOR : -1;
    a->dtype_id = LOMO_F32;
    if (a->optimizer_id < 0) { fprintf(stderr, "llama_ft: --optimizer %s: expected lomo, adalomo or adamw\n", a->optimizer); return 2; }
    if (a->clip_mode_id < 0) { fprintf(stderr, "llama_ft: --clip-mode %s: expected global, gram or tensor\n", a->clip_mode); return 2; }
    if (!strcmp(a->dtype, "bf16")) a->dtype_id = LOMO_BF16;
    else if (!strcmp(a->dtype, "f16")) a->dtype_id = LOMO_F16;
    else if (strcmp(a->dtype, "f32")) { fprintf(stderr, "llama_ft: --dtype %s: expected f32, bf16 or f16\n", a->dtype); return 2; }
    a->pass_cache_id = !strcmp(a->pass_cache, "auto") ? 0 : !strcmp(a->pass_cache, "on") ? 1 : !strcmp(a->pass_cache, "off") ? -1 : 2;
    if (a->pass_cache_id == 2) { fprintf(stderr, "llama_ft: --pass-cache %s: expected auto, on or off\n", a->pass_cache); return 2; }
    return GO_ON;
}

/* ---- text data: the model directory's tokenizer.json and chat template, loaded once ---- */
#ifndef LOMO_NO_TOKENIZER
static lomo_tokenizer *text_tok;
static const char *text_tpl;
static char text_why[1200];   /* why no tokenizer or template, for the data error */
static int text_loaded;

/* Sets o's tokenizer and chat template from --model (or --resume) and --chat-template. A missing or
   unusable tokenizer is not an error here: only data that needs one is refused, with this reason. */
static void text_data(const args *a, lomo_data_opts *o) {
    const char *dir = a->model ? a->model : a->resume;
    if (!text_loaded && dir) {
        char path[1100];
        FILE *f;
        text_loaded = 1;
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        if (!(f = fopen(path, "rb"))) snprintf(text_why, sizeof text_why, "(%s: none)", path);
        else {
            fclose(f);
            if (!(text_tok = lomo_tokenizer_load(dir))) snprintf(text_why, sizeof text_why, "(%s)", lomo_error());
        }
        if (a->chat_template) text_tpl = a->chat_template;
        else if (text_tok && !(text_tpl = lomo_chat_template_detect(dir)) && !text_why[0])
            snprintf(text_why, sizeof text_why, "(%s)", lomo_error());
    } else if (!text_loaded) {
        text_loaded = 1;
        text_tpl = a->chat_template;
        snprintf(text_why, sizeof text_why, "(no --model directory, so no tokenizer.json)");
    }
    o->tokenizer = text_tok;
    o->chat_template = text_tpl;
}

static lomo_data *open_data(const char *path, const args *a, lomo_data_opts *o) {
    lomo_data *d;
    text_data(a, o);
    if (!(d = lomo_data_open(path, o)) && text_why[0] &&
        (strstr(lomo_error(), "tokenizer") || strstr(lomo_error(), "chat template")))
        fprintf(stderr, "llama_ft: %s\n", text_why);
    return d;
}

/* --render-chat FILE: what training takes from FILE (any data format), one JSON line per example, untruncated
   unless --seq-len is given. */
static int render_chat(const args *a, int seq_len_given) {
    lomo_data_opts o;
    lomo_data *d;
    int64_t i, k;
    memset(&o, 0, sizeof o);
    if (!a->model) { fprintf(stderr, "llama_ft: --render-chat needs --model DIR (with tokenizer.json)\n"); return 2; }
    text_data(a, &o);
    if (!text_tok) { fprintf(stderr, "llama_ft: --render-chat: no tokenizer %s\n", text_why); return 1; }
    o.seq_len = seq_len_given ? a->seq_len : 0x7fffffff;
    o.vocab_size = lomo_tokenizer_vocab_size(text_tok);
    if (!(d = open_data(a->render_chat, a, &o))) { fprintf(stderr, "llama_ft: --render-chat: %s\n", lomo_error()); return 1; }
    for (i = 0; i < lomo_data_count(d); i++) {
        const int32_t *t, *l;
        int64_t n = lomo_data_example(d, i, &t, &l);
        printf("{\"input_ids\": [");
        for (k = 0; k < n; k++) printf(k ? ", %d" : "%d", (int)t[k]);
        printf("], \"labels\": [");
        for (k = 0; k < n; k++) printf(k ? ", %d" : "%d", (int)l[k]);
        printf("]}\n");
    }
    if (lomo_data_truncated(d)) fprintf(stderr, "llama_ft: %lld examples cut to --seq-len %d\n",
                                        (long long)lomo_data_truncated(d), a->seq_len);
    lomo_data_free(d);
    return 0;
}
#define text_free() lomo_tokenizer_free(text_tok)
#else   /* no tokenizer in this build: lomo_data_open refuses text by name */
static lomo_data *open_data(const char *path, const args *a, lomo_data_opts *o) {
    o->chat_template = a->chat_template;
    return lomo_data_open(path, o);
}
static int render_chat(const args *a, int seq_len_given) {
    (void)a; (void)seq_len_given;
    fprintf(stderr, "llama_ft: --render-chat needs a build without LOMO_NO_TOKENIZER\n");
    return 2;
}
#define text_free() ((void)0)
#endif

/* ---- helpers: clock, signals, the --out probe, the CSV log, die ---- */
static double now(void) {
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);   /* C11 */
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* SIGINT / SIGTERM: finish the step, save a resumable checkpoint, exit 128 + signal */
static volatile sig_atomic_t stop_signal = 0;
static void on_signal(int sig) { stop_signal = sig; signal(sig, on_signal); }

/* --out must be writable before hours are spent training: make and remove a
   probe file beside it (where OUT, OUT.checkpoint and OUT.log.csv go) */
static int check_writable(const char *out) {
    char probe[1200];
    FILE *f;
    struct stat st;
    if (!stat(out, &st) && !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "llama_ft: --out %s exists and is not a directory; nothing was trained\n", out);
        return -1;
    }
    snprintf(probe, sizeof probe, "%s.probe-%ld", out, (long)getpid());
    if (!(f = fopen(probe, "w"))) {
        fprintf(stderr, "llama_ft: --out %s: cannot write beside it (%s: %s); nothing was trained\n", out, probe,
                strerror(errno));
        return -1;
    }
    fclose(f);
    remove(probe);
    return 0;
}

/* after --resume the log keeps the rows up to the resumed step only, so the
   steps run again are not listed twice */
static FILE *open_log(const char *path, int resume, int64_t start_step) {
    FILE *in, *out;
    char tmp[1200], line[4096];
    int header = 0;
    if (!resume || !(in = fopen(path, "r"))) {
        if (!(out = fopen(path, "w"))) return NULL;
        fprintf(out, "step,loss,lr,grad_norm,tokens,skipped,tokens_per_s,peak_mib\n");
        return out;
    }
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (!(out = fopen(tmp, "w"))) { fclose(in); return NULL; }
    while (fgets(line, sizeof line, in)) {
        char *end;
        long long st = strtoll(line, &end, 10);
        if (!header && !strncmp(line, "step,", 5)) { fputs(line, out); header = 1; continue; }
        if (end != line && *end == ',' && st <= start_step) fputs(line, out);
    }
    fclose(in);
    if (!header) { fclose(out); remove(tmp); return open_log(path, 0, 0); }
    if (fclose(out) || rename(tmp, path)) { remove(tmp); return NULL; }
    return fopen(path, "a");
}

static int die(const char *what) {
    fprintf(stderr, "llama_ft: %s%s%s\n", what, lomo_error()[0] ? ": " : "", lomo_error());
    return 1;
}

/* ---- learning-rate schedule: warmup, then constant / linear / cosine to 0 ---- */
static float lr_at(const args *a, int step, int total) {
    float w = a->warmup < 1.0f ? a->warmup * total : a->warmup, p;
    if (w > 0 && step <= w) return a->lr * step / w;
    p = total > w ? (step - w) / (total - w) : 1.0f;
    if (!strcmp(a->schedule, "linear")) return a->lr * (1.0f - p);
    if (!strcmp(a->schedule, "cosine")) return a->lr * 0.5f * (1.0f + cosf(3.14159265f * p));
    return a->lr;
}

/* ---- evaluation: mean loss over every counted token of a file ---- */
static lomo_data *eval_cache;   /* the eval set, opened (tokenized) once per run */
static const char *eval_cache_path;

static int evaluate(lomo_trainer *t, const char *path, const args *a, int vocab, double *loss, int64_t *tokens) {
    lomo_data_opts o = {a->seq_len, vocab, 0, 0, 0, NULL, NULL};
    lomo_data_pos p0 = {0, 0};
    lomo_data *d;
    if (eval_cache && eval_cache_path != path) { lomo_data_free(eval_cache); eval_cache = NULL; }
    d = eval_cache ? eval_cache : open_data(path, a, &o);
    int32_t *tok = (int32_t *)calloc((size_t)a->batch * a->seq_len, sizeof(int32_t));
    int32_t *lab = (int32_t *)calloc((size_t)a->batch * a->seq_len, sizeof(int32_t));
    double sum = 0;   /* of per-token losses in 2^-24 units: exact, so the batch size does not matter */
    int64_t n = 0, seen = 0;
    if (d) { eval_cache = d; eval_cache_path = path; }   /* freed at exit */
    if (!d || !tok || !lab) {
        if (d) fprintf(stderr, "llama_ft: %s: no host memory for %d x %d tokens\n", path, a->batch, a->seq_len);
        else die(path);
        free(tok); free(lab);
        return -1;
    }
    lomo_data_seek(d, p0);
    while (seen < lomo_data_count(d)) {
        lomo_step_info info;
        seen += lomo_data_next(d, a->batch, tok, lab);
        if (lomo_forward(t, tok, lab, &info)) { die(path); free(tok); free(lab); return -1; }
        sum += info.loss_sum;
        n += info.n_tokens;
    }
    free(tok); free(lab);
    if (!n) {
        fprintf(stderr, "llama_ft: %s: no position counts at --seq-len %d (every label is -100, or no example has "
                "2 tokens): there is no loss to report\n", path, a->seq_len);
        return -1;
    }
    *loss = sum / n;
    *tokens = n;
    return 0;
}

/* ---- multiple choice: average log-likelihood of each candidate given the prompt ---- */
static int multiple_choice(lomo_trainer *t, lomo_model *m, const char *path, const args *a) {
    int B = a->batch, T = a->seq_len, V = m->cfg.vocab_size, rc = -1;
    int64_t right = 0, i, cells = (int64_t)B * T;
    uint64_t logit_bytes = (uint64_t)cells * (uint64_t)V * sizeof(float);
    lomo_mc *mc = NULL;
    int32_t *tok = NULL, *lab = NULL;
    float *host = NULL;
    if (logit_bytes > (uint64_t)PTRDIFF_MAX / 2) {
        fprintf(stderr, "llama_ft: --mc: %d x %d x vocab %d logits would need %llu bytes of host memory\n", B, T, V,
                (unsigned long long)logit_bytes);
        return -1;
    }
    if (!(mc = lomo_mc_open(path, V))) return die("--mc");
    tok = (int32_t *)calloc((size_t)cells, sizeof(int32_t));
    lab = (int32_t *)calloc((size_t)cells, sizeof(int32_t));
    host = (float *)malloc((size_t)logit_bytes);
    if (!tok || !lab || !host) {
        fprintf(stderr, "llama_ft: --mc: out of host memory for %d x %d x vocab %d logits (%llu bytes)\n", B, T, V,
                (unsigned long long)logit_bytes);
        goto done;
    }
    for (i = 0; i < lomo_mc_count(mc); i++) {   /* every item must fit: cutting it would score something else */
        const lomo_mc_item *it = lomo_mc_get(mc, i);
        int c;
        for (c = 0; c < it->n_cand; c++)
            if ((int64_t)it->prompt_len + it->cand_len[c] > T) {
                fprintf(stderr, "llama_ft: %s: item %lld (counting from 0): prompt (%d tokens) + candidate %d (%d tokens) = %lld tokens "
                        "is longer than --seq-len %d\n", path, (long long)i, it->prompt_len, c, it->cand_len[c],
                        (long long)it->prompt_len + it->cand_len[c], T);
                goto done;
            }
    }
    for (i = 0; i < lomo_mc_count(mc); i++) {
        const lomo_mc_item *it = lomo_mc_get(mc, i);
        double best = -1e300;
        int best_c = -1, c0;
        for (c0 = 0; c0 < it->n_cand; c0 += B) {      /* one candidate per row */
            int r, j;
            lomo_step_info info;
            for (r = 0; r < B * T; r++) { tok[r] = 0; lab[r] = -100; }
            for (r = 0; r < B && c0 + r < it->n_cand; r++) {
                int len = 0;
                for (j = 0; j < it->prompt_len; j++) tok[(size_t)r * T + len++] = it->prompt[j];
                for (j = 0; j < it->cand_len[c0 + r]; j++) {
                    tok[(size_t)r * T + len] = lab[(size_t)r * T + len] = it->cand[c0 + r][j];
                    len++;
                }
            }
            if (lomo_forward(t, tok, lab, &info)) { die("--mc"); goto done; }
            m->be->download(m->be->ctx, host, lomo_logits(t), (size_t)logit_bytes);
            for (r = 0; r < B && c0 + r < it->n_cand; r++) {
                double ll = 0;
                int n = 0, p;
                for (p = 0; p + 1 < T; p++) {           /* position p predicts label p+1 */
                    const float *l = host + ((size_t)r * T + p) * V;
                    int y = lab[(size_t)r * T + p + 1], v;
                    double mx = l[0], s = 0;
                    if (y < 0) continue;
                    for (v = 1; v < V; v++) mx = l[v] > mx ? l[v] : mx;
                    for (v = 0; v < V; v++) s += exp(l[v] - mx);
                    ll += l[y] - mx - log(s);
                    n++;
                }
                if (n && ll / n > best) { best = ll / n; best_c = c0 + r; }
            }
        }
        right += best_c == it->answer;
    }
    printf("multiple choice: %lld/%lld correct, accuracy %.4f\n", (long long)right, (long long)lomo_mc_count(mc),
           lomo_mc_count(mc) ? (double)right / lomo_mc_count(mc) : 0.0);
    rc = 0;
done:
    lomo_mc_free(mc); free(tok); free(lab); free(host);
    return rc;
}

/* ---- the built-in demo task: arithmetic progressions mod V ---- */

/* a, a+d, a+2d, ... mod V with d in 1..8: the model must infer d and continue.
   Written as JSONL so the demo goes through the same data path as real data. */
static int write_demo_data(const char *path, int lines, int T, int V, uint64_t seed) {
    FILE *f = fopen(path, "w");
    int i, t;
    if (!f) { fprintf(stderr, "llama_ft: cannot write %s\n", path); return -1; }
    for (i = 0; i < lines; i++) {
        int s = (int)(lomo_rand_u64(&seed) % (uint64_t)V), d = 1 + (int)(lomo_rand_u64(&seed) % 8);
        fprintf(f, "{\"input_ids\": [");
        for (t = 0; t < T; t++) fprintf(f, "%s%d", t ? ", " : "", (s + d * t) % V);
        fprintf(f, "]}\n");
    }
    return fclose(f);
}

/* next-token accuracy from position 2 on (where the step is determined) */
static double demo_accuracy(lomo_trainer *t, lomo_model *m, const char *path, const args *a) {
    lomo_data_opts o = {a->seq_len, m->cfg.vocab_size, 0, 0, 0, NULL, NULL};
    lomo_data *d = lomo_data_open(path, &o);
    int B = a->batch, T = a->seq_len, V = m->cfg.vocab_size;
    int32_t *tok = (int32_t *)calloc((size_t)B * T, sizeof(int32_t)), *lab = (int32_t *)calloc((size_t)B * T, sizeof(int32_t));
    float *host = (float *)malloc(sizeof(float) * (size_t)B * T * V);
    int64_t right = 0, total = 0, seen = 0;
    while (d && tok && lab && host && seen < lomo_data_count(d)) {
        int rows = lomo_data_next(d, B, tok, lab), i;
        lomo_step_info info;
        seen += rows;
        lomo_forward(t, tok, lab, &info);
        m->be->download(m->be->ctx, host, lomo_logits(t), sizeof(float) * (size_t)B * T * V);
        for (i = 0; i < rows * T; i++) {
            int best = 0, v;
            if (i % T < 2 || i % T == T - 1) continue;
            for (v = 1; v < V; v++) if (host[(size_t)i * V + v] > host[(size_t)i * V + best]) best = v;
            right += best == lab[i + 1];
            total++;
        }
    }
    lomo_data_free(d); free(tok); free(lab); free(host);
    return total ? (double)right / total : 0.0;
}

/* ---- resumable state, saved beside the weights ---- */
static int read_state(const char *dir, int64_t *step, lomo_data_pos *pos, int *file_dtype) {
    char path[1100], buf[512];
    FILE *f;
    long long s = 0, e = 0, i = 0;
    int dt = 0;
    struct stat st;
    snprintf(path, sizeof path, "%s/trainer_state.json", dir);
    if (stat(path, &st) || !S_ISREG(st.st_mode)) { fprintf(stderr, "llama_ft: %s: cannot open, or not a regular file\n", path); return -1; }
    if (!(f = fopen(path, "r"))) { fprintf(stderr, "llama_ft: %s: cannot open\n", path); return -1; }
    buf[fread(buf, 1, sizeof buf - 1, f)] = 0;
    fclose(f);
    if (sscanf(buf, "{\"step\": %lld, \"data_epoch\": %lld, \"data_index\": %lld, \"file_dtype\": %d", &s, &e, &i, &dt) != 4) {
        fprintf(stderr, "llama_ft: %s: not a trainer state written by llama_ft\n", path);
        return -1;
    }
    if (s < 0 || s > (1ll << 53) || e < 0 || e > (1ll << 53) || i < 0 || i > (1ll << 53) || dt < LOMO_F32 || dt > LOMO_F16) {
        fprintf(stderr, "llama_ft: %s: step %lld, data_epoch %lld, data_index %lld must be in [0, 2^53] and file_dtype %d "
                "one of 0 (float32), 1 (bfloat16), 2 (float16)\n", path, s, e, i, dt);
        return -1;
    }
    *step = s; pos->epoch = e; pos->index = i; *file_dtype = dt;
    return 0;
}

/* weights in the storage dtype (so resuming is bitwise) + where the run stands */
static int save_checkpoint(const lomo_model *m, const lomo_trainer *t, const char *dir, int64_t step, lomo_data_pos p,
                           const args *a) {
    char state[256];
    int n = snprintf(state, sizeof state, "{\"step\": %lld, \"data_epoch\": %lld, \"data_index\": %lld, "
                     "\"file_dtype\": %d, \"seed\": %llu}\n", (long long)step, (long long)p.epoch,
                     (long long)p.index, (int)m->file_dtype, (unsigned long long)a->seed);
    lomo_file f = {"trainer_state.json", state, (size_t)n};
    lomo_save_opts so;
    memset(&so, 0, sizeof so);
    so.dtype = LOMO_SAVE_F32 + m->cfg.dtype;   /* the storage dtype: resuming is bitwise */
    so.extra = &f; so.n_extra = 1; so.copy_from = a->model;
    so.trainer = t;                                       /* optimizer state, loss scale */
    return lomo_save_ex(m, dir, &so);
}

/* ---- JSON arrays of token ids in (--detokenize, --prompt-ids, --sample-prompt), through lomo.h's JSON reader ---- */

static const char *skip_ws(const char *p) { while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++; return p; }

/* what parse_ids found wrong, for each caller's own message */
enum { IDS_OK, IDS_NOT_ARRAY, IDS_SYNTAX, IDS_NOT_NUMBER, IDS_FRACTION, IDS_RANGE, IDS_TRAILING, IDS_NO_MEMORY };

/* The JSON array of ids at s, then only whitespace: IDS_OK with *ids (malloc'd; NULL when empty) and *n, or
   what is wrong; after IDS_SYNTAX *at is the byte of s where the JSON reader stopped. */
static int parse_ids(const char *s, int vocab, int32_t **ids, int64_t *n, size_t *at) {
    lomo_json *j;
    int e, count, kind = IDS_OK;
    int64_t k = 0;
    *ids = NULL; *n = 0; *at = 0;
    if (*skip_ws(s) != '[') return IDS_NOT_ARRAY;
    if (!(j = lomo_json_parse(s, strlen(s), at, "ids"))) return IDS_SYNTAX;
    if ((count = lomo_json_count(j, 0)) > 0 && !(*ids = (int32_t *)malloc(sizeof(int32_t) * (size_t)count)))
        kind = IDS_NO_MEMORY;
    for (e = lomo_json_first(j, 0); e >= 0 && kind == IDS_OK; e = lomo_json_next(j, e)) {
        int64_t v = -1;
        int r = lomo_json_int(j, e, &v);
        if (lomo_json_type(j, e) != LOMO_JSON_NUMBER) kind = IDS_NOT_NUMBER;
        else if (r == -1) kind = IDS_FRACTION;
        else if (r || v < 0 || v >= vocab) kind = IDS_RANGE;
        else (*ids)[k++] = (int32_t)v;
    }
    lomo_json_free(j);
    if (kind == IDS_OK && *skip_ws(s + *at)) kind = IDS_TRAILING;
    if (kind != IDS_OK) { free(*ids); *ids = NULL; return kind; }
    *n = k;
    return IDS_OK;
}

/* ---- text mode: --tokenize / --detokenize through the model's tokenizer.json ---- */

#ifndef LOMO_NO_TOKENIZER
#ifndef LOMO_FREE
#define LOMO_FREE(p) free(p)   /* lomo's default allocator (the CUDA build has the implementation elsewhere) */
#endif
/* Whole file, NUL-terminated (NULL on error). */
static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0, n = 0, r;
    if (!f) return NULL;
    do {
        if (n + 65536 + 1 > cap) {
            char *nb = (char *)realloc(buf, cap = (n + 65536 + 1) * 2);
            if (!nb) { free(buf); fclose(f); return NULL; }
            buf = nb;
        }
        r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
    } while (r > 0);
    if (ferror(f)) { free(buf); fclose(f); return NULL; }
    fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

/* The "text" member of a one-line JSON object (lomo.h's JSON reader): 0 and *text (LOMO_MALLOC'd, *n bytes),
   or -1 with *why set. */
static int line_text(const char *p, char **text, size_t *n, const char **why) {
    lomo_json *j;
    int v;
    *text = NULL;
    if (*skip_ws(p) != '{') { *why = "expected a JSON object {\"text\": ...}"; return -1; }
    if (!(j = lomo_json_parse(p, strlen(p), NULL, "line"))) { *why = "invalid JSON"; return -1; }
    if ((v = lomo_json_get(j, 0, "text")) < 0) *why = "missing \"text\"";
    else if (lomo_json_type(j, v) != LOMO_JSON_STRING) *why = "\"text\" is not a string";
    else if (!(*text = lomo_json_string(j, v, n))) *why = "out of memory";
    lomo_json_free(j);
    return *text ? 0 : -1;
}

/* JSON string of n bytes; NUL, controls and the characters some line readers
   take for line ends (U+0085, U+2028, U+2029) are escaped */
static void print_json_string(const char *s, size_t n) {
    const char *e = s + n;
    putchar('"');
    for (; s < e; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == 0xc2 && s + 1 < e && (unsigned char)s[1] == 0x85) { fputs("\\u0085", stdout); s++; }
        else if (c == 0xe2 && s + 2 < e && (unsigned char)s[1] == 0x80 && ((unsigned char)s[2] == 0xa8 || (unsigned char)s[2] == 0xa9)) {
            printf("\\u%04x", (unsigned char)s[2] == 0xa8 ? 0x2028 : 0x2029); s += 2;
        }
        else if (c == '"' || c == '\\') { putchar('\\'); putchar(c); }
        else if (c == '\n') fputs("\\n", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c < 0x20 || c == 0x7f) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

static int text_mode(const args *a) {
    const char *path = a->tokenize ? a->tokenize : a->detokenize, *why = NULL;
    size_t len, lineno = 0;
    char *buf, *line, *next;
    lomo_tokenizer *tk;
    int rc = 0;
    if (!a->model) { fprintf(stderr, "llama_ft: --tokenize / --detokenize need --model DIR (holding tokenizer.json)\n"); return 2; }
    if (a->tokenize && a->detokenize) { fprintf(stderr, "llama_ft: give one of --tokenize and --detokenize\n"); return 2; }
    if (!(tk = lomo_tokenizer_load(a->model))) return die("tokenizer");
    if (!(buf = slurp(path, &len))) { fprintf(stderr, "llama_ft: %s: cannot read\n", path); lomo_tokenizer_free(tk); return 1; }
    if (strlen(buf) != len) { fprintf(stderr, "llama_ft: %s: contains a NUL byte\n", path); free(buf); lomo_tokenizer_free(tk); return 1; }
    for (line = buf; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        lineno++;
        if (!*skip_ws(line)) continue;                       /* blank lines are skipped */
        if (a->tokenize) {
            char *text;
            size_t n;
            int32_t *ids;
            int64_t k, cnt;
            if (line_text(line, &text, &n, &why)) { rc = 1; break; }
            cnt = lomo_tokenize(tk, text, n, a->add_special, &ids, NULL);
            LOMO_FREE(text);
            if (cnt < 0) { why = lomo_error(); rc = 1; break; }
            putchar('[');
            for (k = 0; k < cnt; k++) printf(k ? ", %d" : "%d", (int)ids[k]);
            fputs("]\n", stdout);
            LOMO_FREE(ids);
        } else {
            int32_t *ids = NULL;
            int64_t cnt = 0;
            size_t tlen = 0, at;
            char *txt;
            switch (parse_ids(line, lomo_tokenizer_vocab_size(tk), &ids, &cnt, &at)) {
            case IDS_OK: break;
            case IDS_NOT_ARRAY: why = "expected a JSON array of token ids"; rc = 1; break;
            case IDS_SYNTAX:   /* the reader's reason (lomo_error()) in this mode's words */
                why = strstr(lomo_error(), "expected ',' or ']'") ? "expected ',' or ']'"
                    : strstr(lomo_error(), "end of input") ? "expected one JSON array per line"
                    : strstr(lomo_error(), "unexpected character ']'") ? "trailing comma"
                    : "expected integer ids in [0, vocab size)";
                rc = 1;
                break;
            case IDS_TRAILING: why = "expected one JSON array per line"; rc = 1; break;
            case IDS_NO_MEMORY: why = "out of memory"; rc = 1; break;
            default: why = "expected integer ids in [0, vocab size)"; rc = 1; break;
            }
            if (rc) break;
            txt = lomo_detokenize_len(tk, ids, cnt, 0, &tlen);
            free(ids);
            if (!txt) { why = lomo_error(); rc = 1; break; }
            fputs("{\"text\": ", stdout);
            print_json_string(txt, tlen);
            fputs("}\n", stdout);
            LOMO_FREE(txt);
        }
    }
    if (rc) fprintf(stderr, "llama_ft: %s:%zu: %s\n", path, lineno, why);
    free(buf);
    lomo_tokenizer_free(tk);
    return rc;
}
#else
static int text_mode(const args *a) {
    (void)a;
    fprintf(stderr, "llama_ft: --tokenize / --detokenize need a build without LOMO_NO_TOKENIZER\n");
    return 2;
}
#endif
/* ---- generation: --prompt-ids, --generate, --sample-every (functions of their own) ---- */

/* the generation flags; 0 if k is not one of them */
static int gen_flag(args *a, const char *k, const char *v) {
    char *end = NULL;
    double x = 0;
    long n = 0;
    int is_int = !strcmp(k, "--max-new-tokens") || !strcmp(k, "--top-k") || !strcmp(k, "--sample-every");
    int is_float = !strcmp(k, "--temperature") || !strcmp(k, "--top-p") || !strcmp(k, "--repetition-penalty");
    if (!strcmp(k, "--prompt-ids")) { a->prompt_ids = v; return 1; }
    if (!strcmp(k, "--generate")) { a->generate = v; return 1; }
    if (!strcmp(k, "--sample-prompt")) { a->sample_prompt = v; return 1; }
    if (!strcmp(k, "--stop")) { a->stop = v; return 1; }
    if (!is_int && !is_float) return 0;
    if (is_int) n = strtol(v, &end, 10); else x = strtod(v, &end);
    if (!*v || *end || (is_int && (n < 0 || n > 1000000000)) || (is_float && !(x >= 0 && x < 1e30)) ||
        (!strcmp(k, "--top-p") && x > 1)) {
        fprintf(stderr, "llama_ft: %s %s: expected a %s\n", k, v,
                is_int ? "non-negative integer" : !strcmp(k, "--top-p") ? "number in [0, 1]" : "non-negative number");
        a->gen_bad = 1;
        return 1;
    }
    if (!strcmp(k, "--max-new-tokens")) a->max_new_tokens = (int)n;
    else if (!strcmp(k, "--top-k")) a->top_k = (int)n;
    else if (!strcmp(k, "--sample-every")) a->sample_every = (int)n;
    else if (!strcmp(k, "--temperature")) a->temperature = (float)x;
    else if (!strcmp(k, "--top-p")) a->top_p = (float)x;
    else a->repetition_penalty = (float)x;
    return 1;
}

/* one JSON array of ids, e.g. "[1, 22, 333]": 0 and *n ids (malloc'd), or -1 with *err set */
static int gen_parse_ids(const char *s, int vocab, int32_t **ids, int *n, const char **err) {
    int64_t k = 0;
    size_t at;
    int kind = parse_ids(s, vocab, ids, &k, &at);
    *n = 0;
    *err = kind == IDS_FRACTION ? "ids must be integers" : kind == IDS_RANGE ? "an id is outside the vocabulary"
         : kind == IDS_TRAILING ? "text after the array" : kind == IDS_NO_MEMORY ? "out of memory"
         : kind != IDS_OK ? "expected a JSON array of integers"
         : !k ? "the prompt is empty" : NULL;
    if (*err) { free(*ids); *ids = NULL; return -1; }
    *n = (int)k;
    return 0;
}

static void gen_print_ids(FILE *f, const int32_t *ids, int n) {
    fputc('[', f);
    for (int i = 0; i < n; i++) fprintf(f, "%s%d", i ? ", " : "", ids[i]);
    fputc(']', f);
}

/* the sampling options of the flags: greedy unless --temperature T > 0
   (then transformers' defaults top_k 50, top_p 1 unless given) */
static void gen_options(const args *a, lomo_gen_opts *g, const int32_t *eos, int n_eos) {
    memset(g, 0, sizeof *g);
    g->max_new_tokens = a->max_new_tokens;
    g->temperature = a->temperature > 0 ? a->temperature : 0.0f;
    g->top_k = a->top_k >= 0 ? a->top_k : 50;
    g->top_p = a->top_p;
    g->repetition_penalty = a->repetition_penalty;
    g->seed = a->seed;
    g->eos_ids = eos; g->n_eos = n_eos;
}

#ifndef LOMO_NO_TOKENIZER
/* --generate TEXT: stream the text as it comes. Each step decodes the whole
   generated sequence and prints what is new, holding back an incomplete
   UTF-8 sequence (or the U+FFFD a partial byte-fallback token decodes to)
   until the next token completes it. */
typedef struct gen_stream { const lomo_tokenizer *tk; int32_t *ids; size_t printed; char *last; } gen_stream;

static size_t gen_complete_prefix(const char *s, size_t n) {   /* length without a trailing partial character */
    size_t i = n, k = 0;
    while (i > 0 && k < 4 && ((unsigned char)s[i - 1] & 0xc0) == 0x80) { i--; k++; }
    if (i > 0) {
        unsigned char c = (unsigned char)s[i - 1];
        size_t need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
        if (need > k + 1) n = i - 1;                 /* lead byte without all its continuation bytes */
    }
    if (n >= 3 && !memcmp(s + n - 3, "\xef\xbf\xbd", 3)) n -= 3;   /* U+FFFD: bytes still to come */
    return n;
}

static const char *gen_decode(void *user, const int32_t *ids, int n) {
    gen_stream *st = (gen_stream *)user;
    LOMO_FREE(st->last);
    st->last = lomo_detokenize(st->tk, ids, n, 1);
    return st->last;
}

static int gen_stream_token(void *user, int32_t tok, int i) {
    gen_stream *st = (gen_stream *)user;
    char *txt;
    size_t n;
    st->ids[i] = tok;
    if (!(txt = lomo_detokenize(st->tk, st->ids, i + 1, 1))) return 1;
    n = gen_complete_prefix(txt, strlen(txt));
    if (n > st->printed) { fwrite(txt + st->printed, 1, n - st->printed, stdout); fflush(stdout); st->printed = n; }
    LOMO_FREE(txt);
    return 0;
}

static int gen_text(lomo_model *m, const args *a, const char *dir, const int32_t *eos, int n_eos) {
    lomo_tokenizer *tk = lomo_tokenizer_load(dir);
    int32_t *prompt = NULL, *out = NULL;
    int64_t n_prompt;
    lomo_gen_opts g;
    gen_stream st;
    const char *stops[1];
    char *txt;
    int n, i;
    if (!tk) return die("--generate: tokenizer");
    if (a->chat_template) {   /* one user message + the assistant header, as apply_chat_template(add_generation_prompt=True) */
        const char *name = strcmp(a->chat_template, "auto") ? a->chat_template : lomo_chat_template_detect(dir);
        lomo_chat_msg msg = {"user", a->generate};
        char *text = NULL, *full;
        size_t len = 0;
        const char *gp = !name ? "" : !strcmp(name, "llama3") ? "<|start_header_id|>assistant<|end_header_id|>\n\n"
                       : !strcmp(name, "chatml") || !strcmp(name, "qwen2") ? "<|im_start|>assistant\n" : "";
        if (!name || lomo_chat_render(name, &msg, 1, &text, &len, NULL) < 0) { lomo_tokenizer_free(tk); return die("--chat-template"); }
        if (!(full = (char *)malloc(len + strlen(gp) + 1))) { LOMO_FREE(text); lomo_tokenizer_free(tk); return 1; }
        memcpy(full, text, len); strcpy(full + len, gp);
        LOMO_FREE(text);
        n_prompt = lomo_tokenize(tk, full, strlen(full), 0, &prompt, NULL);   /* the template wrote the specials */
        free(full);
    } else n_prompt = lomo_tokenize(tk, a->generate, strlen(a->generate), 1, &prompt, NULL);
    if (n_prompt < 0) { lomo_tokenizer_free(tk); return die("--generate: tokenize"); }
    for (i = 0; i < n_prompt; i++)
        if (prompt[i] >= m->cfg.vocab_size) {
            fprintf(stderr, "llama_ft: --generate: the tokenizer gives id %d, outside the model's vocabulary [0, %d)\n",
                    prompt[i], m->cfg.vocab_size);
            LOMO_FREE(prompt); lomo_tokenizer_free(tk); return 1;
        }
    gen_options(a, &g, eos, n_eos);
    if (a->max_new_tokens < 0) g.max_new_tokens = 128;
    memset(&st, 0, sizeof st);
    st.tk = tk;
    st.ids = out = (int32_t *)malloc(sizeof(int32_t) * (size_t)g.max_new_tokens + 4);
    g.on_token = gen_stream_token; g.user = &st;
    if (a->stop) { stops[0] = a->stop; g.stop_strings = stops; g.n_stop = 1; g.decode = gen_decode; g.decode_user = &st; }
    n = out && n_prompt > 0 ? lomo_generate(m, prompt, (int)n_prompt, &g, out, NULL) : -1;
    if (n >= 0 && (txt = lomo_detokenize(tk, out, n, 1))) {   /* whatever was held back */
        size_t len = strlen(txt);
        if (len > st.printed) fwrite(txt + st.printed, 1, len - st.printed, stdout);
        LOMO_FREE(txt);
    }
    printf("\n");
    LOMO_FREE(st.last); LOMO_FREE(prompt); free(out);
    lomo_tokenizer_free(tk);
    return n < 0 ? die(n_prompt ? "--generate" : "--generate: the prompt has no tokens") : 0;
}
#endif

/* --prompt-ids FILE: one line out per line in (blank lines skipped), the new ids only */
static int gen_mode(lomo_model *m, const args *a) {
    const char *dir = a->model ? a->model : a->resume;
    int32_t eos[64], *prompt = NULL, *out = NULL;
    int n_eos, rc = 1, line_no = 0;
    lomo_gen_opts g;
    FILE *f;
    char *line = NULL;
    size_t cap = 0;
    if (!dir) { fprintf(stderr, "llama_ft: --prompt-ids / --generate need --model DIR\n"); return 2; }
    if ((n_eos = lomo_eos_ids(dir, eos, 64)) < 0) return die("eos_token_id");
    if (a->generate) {
#ifndef LOMO_NO_TOKENIZER
        return gen_text(m, a, dir, eos, n_eos);
#else
        fprintf(stderr, "llama_ft: --generate needs the tokenizer (built with LOMO_NO_TOKENIZER); use --prompt-ids\n");
        return 2;
#endif
    }
    gen_options(a, &g, eos, n_eos);
    if (a->max_new_tokens < 0) g.max_new_tokens = 64;
    if (!(f = fopen(a->prompt_ids, "r"))) { fprintf(stderr, "llama_ft: %s: cannot open\n", a->prompt_ids); return 1; }
    if (!(out = (int32_t *)malloc(sizeof(int32_t) * (size_t)g.max_new_tokens + 4))) { fclose(f); return 1; }
    for (;;) {
        const char *err;
        int n_prompt, n;
        char *p;
        {   /* one whole line, any length */
            size_t used = 0;
            int ch;
            if (!line && !(line = (char *)malloc(cap = 256))) goto fail;
            while ((ch = fgetc(f)) != EOF && ch != '\n') {
                if (used + 2 > cap) { char *q = (char *)realloc(line, cap *= 2); if (!q) goto fail; line = q; }
                line[used++] = (char)ch;
            }
            line[used] = 0;
            if (ch == EOF && used == 0) break;
        }
        line_no++;
        for (p = line; *p == ' ' || *p == '\t' || *p == '\r'; p++) {}
        if (!*p) continue;
        if (gen_parse_ids(line, m->cfg.vocab_size, &prompt, &n_prompt, &err)) {
            fprintf(stderr, "llama_ft: %s:%d: %s (vocabulary [0, %d))\n", a->prompt_ids, line_no, err, m->cfg.vocab_size);
            goto fail;
        }
        n = lomo_generate(m, prompt, n_prompt, &g, out, NULL);
        free(prompt); prompt = NULL;
        if (n < 0) { fprintf(stderr, "llama_ft: %s:%d: ", a->prompt_ids, line_no); die("generate"); goto fail; }
        gen_print_ids(stdout, out, n);
        fputc('\n', stdout);
        fflush(stdout);
    }
    rc = 0;
fail:
    fclose(f);
    free(line); free(out); free(prompt);
    return rc;
}

/* --sample-every N: a short greedy sample from --sample-prompt (a JSON array
   of ids, or text for the model's tokenizer), printed and appended to
   OUT.samples.jsonl */
static int gen_sample(lomo_model *m, const args *a, int64_t step) {
    int32_t *prompt = NULL, out[256];
    int n_prompt = 0, n, i;
    const char *err = "";
    char path[1100], *text = NULL;
    lomo_gen_opts g;
    FILE *f;
#ifndef LOMO_NO_TOKENIZER
    lomo_tokenizer *tk = NULL;
#endif
    if (!a->sample_prompt) { fprintf(stderr, "llama_ft: --sample-every needs --sample-prompt\n"); return -1; }
    if (a->sample_prompt[0] == '[') {
        if (gen_parse_ids(a->sample_prompt, m->cfg.vocab_size, &prompt, &n_prompt, &err)) {
            fprintf(stderr, "llama_ft: --sample-prompt: %s\n", err);
            return -1;
        }
    } else {
#ifndef LOMO_NO_TOKENIZER
        int64_t k;
        int32_t *ids = NULL;
        if (!(tk = lomo_tokenizer_load(a->model ? a->model : a->resume))) return -1;
        if ((k = lomo_tokenize(tk, a->sample_prompt, strlen(a->sample_prompt), 1, &ids, NULL)) <= 0) {
            lomo_tokenizer_free(tk); LOMO_FREE(ids);
            fprintf(stderr, "llama_ft: --sample-prompt: no tokens\n"); return -1;
        }
        for (i = 0; i < k; i++)
            if (ids[i] >= m->cfg.vocab_size) {
                fprintf(stderr, "llama_ft: --sample-prompt: token id %d is outside the model's vocabulary [0, %d)\n",
                        ids[i], m->cfg.vocab_size);
                LOMO_FREE(ids); lomo_tokenizer_free(tk); return -1;
            }
        prompt = (int32_t *)malloc(sizeof(int32_t) * (size_t)k);
        memcpy(prompt, ids, sizeof(int32_t) * (size_t)k);
        n_prompt = (int)k;
        LOMO_FREE(ids);
#else
        fprintf(stderr, "llama_ft: --sample-prompt text needs the tokenizer; give \"[ids]\"\n");
        return -1;
#endif
    }
    memset(&g, 0, sizeof g);
    g.max_new_tokens = a->max_new_tokens > 0 && a->max_new_tokens < 256 ? a->max_new_tokens : 32;
    n = lomo_generate(m, prompt, n_prompt, &g, out, NULL);
    free(prompt);
#ifndef LOMO_NO_TOKENIZER
    if (tk && n >= 0) text = lomo_detokenize(tk, out, n, 1);
    lomo_tokenizer_free(tk);
#endif
    if (n < 0) { LOMO_FREE(text); return -1; }
    printf("sample at step %lld: ", (long long)step);
    if (text) printf("%s", text); else gen_print_ids(stdout, out, n);
    printf("\n");
    snprintf(path, sizeof path, "%s.samples.jsonl", a->out);
    if (!(f = fopen(path, step <= a->sample_every && !a->resume ? "w" : "a"))) { LOMO_FREE(text); return -1; }
    fprintf(f, "{\"step\": %lld, \"ids\": ", (long long)step);
    gen_print_ids(f, out, n);
    if (text) {   /* as a JSON string */
        fprintf(f, ", \"text\": \"");
        for (i = 0; text[i]; i++) {
            unsigned char c = (unsigned char)text[i];
            if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
            else if (c < 0x20) fprintf(f, "\\u%04x", c);
            else fputc(c, f);
        }
        fputc('"', f);
    }
    fprintf(f, "}\n");
    LOMO_FREE(text);
    return fclose(f);
}

/* ---- platform: the backend and the MPI / NCCL ranks (every CUDA / NCCL / MPI #if after the includes) ---- */
#ifdef LOMO_CUDA
#define HAVE_CUDA 1
#else
#define HAVE_CUDA 0
#endif

/* --shard: MPI and the communicator (NCCL for --device cuda in a LOMO_NCCL build, each rank on its node's
   GPU, whose backend is opened here); rank 0 reports. GO_ON or the exit code. */
static int ranks_open(const args *a, lomo_load_opts *lo, int *rank, int *nranks, int *argc, char ***argv) {
    if (!a->shard) return GO_ON;
#ifdef LOMO_MPI
    lomo_comm *comm;
    MPI_Init(argc, argv);
#if defined(LOMO_CUDA) && defined(LOMO_NCCL)
    if (!strcmp(a->device, "cuda")) {   /* GPUs: NCCL, bootstrapped over MPI; one GPU per rank */
        int local = 0;
        char spec[32];
        MPI_Comm node;
        MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
        MPI_Comm_rank(node, &local);
        snprintf(spec, sizeof spec, "cuda:%d", local);
        if (!(lo->backend = lomo_backend_open(spec)) || !(comm = lomo_nccl_comm_from_mpi(MPI_COMM_WORLD, lo->backend)))
            return die("--shard --device cuda");
    } else
#endif
    if (!(comm = lomo_mpi_comm(MPI_COMM_WORLD))) return die("--shard");
    lo->comm = comm;
    *rank = comm->rank; *nranks = comm->size;
    if (*rank) (void)!freopen("/dev/null", "w", stdout);   /* rank 0 reports */
    return GO_ON;
#else
    (void)lo; (void)rank; (void)nranks; (void)argc; (void)argv;
    fprintf(stderr, "llama_ft: --shard needs a build with -DLOMO_MPI (make builds build/llama_ft_mpi)\n");
    return 2;
#endif
}

/* --device cpu|cuda: the one place the backend is chosen (lomo_backend_open; a sharded NCCL run has its
   rank's GPU already). GO_ON or the exit code. */
static int backend_open(const args *a, lomo_load_opts *lo) {
    if (strcmp(a->device, "cpu") && strcmp(a->device, "cuda")) {
        fprintf(stderr, "llama_ft: --device %s: expected cpu or cuda\n", a->device);
        return 2;
    }
    if (!strcmp(a->device, "cuda") && !HAVE_CUDA) {
        fprintf(stderr, "llama_ft: --device cuda needs a build with -DLOMO_CUDA (make cuda)\n");
        return 2;
    }
    if (!lo->backend && !(lo->backend = lomo_backend_open(a->device))) return die("--device cuda");
    return GO_ON;
}

static void ranks_barrier(const args *a) {
#ifdef LOMO_MPI
    if (a->shard) MPI_Barrier(MPI_COMM_WORLD);
#else
    (void)a;
#endif
}

static int ranks_max(const args *a, int x) {   /* the largest x over the ranks */
#ifdef LOMO_MPI
    if (a->shard) MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
#else
    (void)a;
#endif
    return x;
}

/* the end of a sharded run: the communicator freed; a failure (rc != 0) on any rank ends the job, not a hang */
static void ranks_close(const args *a, const lomo_load_opts *lo, int rc) {
#ifdef LOMO_MPI
    if (a->shard) {
#if defined(LOMO_CUDA) && defined(LOMO_NCCL)
        if (!strcmp(a->device, "cuda")) lomo_nccl_comm_free((lomo_comm *)lo->comm);
        else
#endif
        lomo_mpi_comm_free((lomo_comm *)lo->comm);
        if (rc) MPI_Abort(MPI_COMM_WORLD, rc);
        MPI_Finalize();
    }
#else
    (void)a; (void)lo; (void)rc;
#endif
}

/* ---- the run: load_model -> prepare -> (eval_modes) -> open_train_data -> eval_before -> train -> finish ---- */
typedef struct ft_run {
    args a;
    lomo_load_opts lo;
    int rank, nranks, demo;
    char demo_train[1100], demo_eval[1100], log_path[1100], ckpt[1100];
    int64_t start_step;        /* the step a --resume checkpoint was saved at (0: a fresh run) */
    lomo_data_pos pos;         /* ... and its data position */
    lomo_model *m;
    lomo_trainer *t;
    lomo_data *d;
    int mb, all_rows, total;   /* micro-batches, sequences per step over all ranks, steps of the run */
    double loss0, acc0;        /* eval before training (the demo's next-token accuracy) */
    int32_t *tok, *lab;
    FILE *log;
} ft_run;

/* the model: a --resume checkpoint, a Hugging Face directory (--model), or the demo's (with its data) */
static int load_model(ft_run *r) {
    args *a = &r->a;
    r->demo = !a->model && !a->resume;
    if (a->resume) {
        int fdt;
        if (read_state(a->resume, &r->start_step, &r->pos, &fdt)) return 1;   /* it said why */
        if (!(r->m = lomo_load(a->resume, &r->lo))) return die("--resume");
        r->m->file_dtype = (lomo_dtype)fdt;   /* export in the original dtype at the end */
        printf("resuming from %s at step %lld (data epoch %lld, example %lld)\n", a->resume, (long long)r->start_step,
               (long long)r->pos.epoch, (long long)r->pos.index);
    } else if (a->model) {
        if (!(r->m = lomo_load(a->model, &r->lo))) return die("--model");
    } else {
        lomo_config c;   /* the demo model: 4 layers, GQA, tied embeddings */
        lomo_config_default(&c, 96, 256, 4, 6, 2, 64);
        c.tie_embeddings = 1;
        c.max_seq_len = 64;
        if (!(r->m = lomo_model_new(&c, &r->lo))) return die("demo model");
        lomo_model_init_random(r->m, a->seed, 0.05f);
        if (!a->data) {
            a->seq_len = 32; a->batch = 8; a->lr = 0.1f; a->warmup = 0.1f;
            if (!a->steps && !a->epochs) a->steps = 400;
            if (a->log_every == 1) a->log_every = 20;
            snprintf(r->demo_train, sizeof r->demo_train, "%s.data.train.jsonl", a->out);
            snprintf(r->demo_eval, sizeof r->demo_eval, "%s.data.eval.jsonl", a->out);
            if (!r->rank && (write_demo_data(r->demo_train, 4000, a->seq_len, c.vocab_size, a->seed + 1) ||
                             write_demo_data(r->demo_eval, 256, a->seq_len, c.vocab_size, a->seed + 2))) return 1;
            ranks_barrier(a);   /* the files exist before anyone reads them */
            a->data = r->demo_train;
            if (!a->eval_data) a->eval_data = r->demo_eval;
        }
    }
    return 0;
}

/* the model line, the sequence length, --out checked, the trainer (and its --resume state) */
static int prepare(ft_run *r) {
    args *a = &r->a;
    lomo_model *m = r->m;
    lomo_train_opts to;
    printf("model: %.2fM parameters, %d layers, dim %d, %d/%d heads, vocab %d%s, %s; backend %s\n",
           lomo_n_params(m) / 1e6, m->cfg.n_layers, m->cfg.dim, m->cfg.n_heads, m->cfg.n_kv_heads,
           m->cfg.vocab_size, m->cfg.tie_embeddings ? ", tied" : "", m->cfg.model_type, m->be->name);
    if (m->be->host_memory) printf("matmuls: %s\n", lomo_cpu_blas());
    if ((a->eval_only || a->mc) && !a->seq_len_given && !r->demo) {   /* the model's context, up to a cap */
        a->seq_len = m->cfg.max_seq_len < EVAL_SEQ_CAP ? m->cfg.max_seq_len : EVAL_SEQ_CAP;
        if (a->seq_len < 2) a->seq_len = 2;
    }
    if (a->seq_len > m->cfg.max_seq_len)
        fprintf(stderr, "llama_ft: warning: --seq-len %d is longer than the model's max_position_embeddings %d: "
                "positions beyond %d were not seen in pretraining (context extension)\n", a->seq_len,
                m->cfg.max_seq_len, m->cfg.max_seq_len);
    if (!a->eval_only && !a->mc && a->data && !r->rank && check_writable(a->out)) return 1;

    memset(&to, 0, sizeof to);
    to.batch = a->batch; to.seq_len = a->seq_len; to.checkpointing = a->checkpointing;
    to.clip_norm = a->clip_norm; to.clip_value = a->clip_value; to.weight_decay = a->weight_decay;
    to.micro_batches = a->micro_batches; to.clip_mode = a->clip_mode_id; to.optimizer = a->optimizer_id;
    to.stochastic_rounding = a->stochastic_rounding; to.seed = a->seed; to.pass_cache = a->pass_cache_id;
    if (a->loss_scale > 0) { to.loss_scaling = 1; to.loss_scale_init = a->loss_scale; }
    to.loss_scale_window = a->loss_scale_window;
    if (a->mc || r->demo) to.head_chunk = -1;   /* they read the whole logits (lomo_logits) */
    if (!(r->t = lomo_trainer_new(m, &to))) return die("cannot set up training");
    if (a->resume && lomo_trainer_resume(r->t, a->resume)) return die("--resume trainer state");
    return 0;
}

/* --eval FILE (mean loss) and/or --mc FILE (multiple-choice accuracy), then exit */
static int eval_modes(ft_run *r) {
    const args *a = &r->a;
    double loss;
    int64_t n;
    printf("eval: seq-len %d%s, batch %d\n", a->seq_len, a->seq_len_given ? "" : " (the model's context, capped)", a->batch);
    if (a->eval_only) {
        if (evaluate(r->t, a->eval_only, a, r->m->cfg.vocab_size, &loss, &n)) return 1;   /* it said why */
        printf("eval_loss=%.6f tokens=%lld\n", loss, (long long)n);
    }
    if (a->mc && multiple_choice(r->t, r->m, a->mc, a)) return 1;   /* it said why */
    return 0;
}

/* --data opened (tokenized if text), the step count, the --resume position */
static int open_train_data(ft_run *r) {
    const args *a = &r->a;
    lomo_data_opts dop = {a->seq_len, r->m->cfg.vocab_size, a->shuffle, a->seed, 0, NULL, NULL};
    if (!(r->d = open_data(a->data, a, &dop))) return die("--data");
    r->mb = a->micro_batches > 1 ? a->micro_batches : 1;
    r->all_rows = a->batch * r->mb * r->nranks;   /* sequences per step: mb x --batch per rank, over all ranks */
    int steps_per_epoch = (int)((lomo_data_count(r->d) + r->all_rows - 1) / r->all_rows);
    r->total = a->steps ? a->steps : (a->epochs ? a->epochs : 1) * steps_per_epoch;
    if (lomo_data_seek(r->d, r->pos)) return die("--resume data position");
    printf("data: %lld examples of up to %d tokens, %d steps of %d x %d%s (%.2f epochs)\n", (long long)lomo_data_count(r->d),
           a->seq_len, r->total, r->mb, a->batch, r->nranks > 1 ? " per rank" : "", (double)r->total / steps_per_epoch);
    printf("data: %lld examples cut to --seq-len %d (their start kept)%s%s\n", (long long)lomo_data_truncated(r->d),
           a->seq_len, dop.chat_template ? "; chat template " : "", dop.chat_template ? dop.chat_template : "");
    return 0;
}

static int eval_before(ft_run *r) {
    const args *a = &r->a;
    int64_t ntok;
    if (!a->eval_data) return 0;
    if (evaluate(r->t, a->eval_data, a, r->m->cfg.vocab_size, &r->loss0, &ntok)) return 1;
    if (a->resume) printf("eval at step %lld (resumed): loss %.4f over %lld tokens", (long long)r->start_step, r->loss0, (long long)ntok);
    else printf("eval before training: loss %.4f over %lld tokens", r->loss0, (long long)ntok);
    if (r->demo) { r->acc0 = demo_accuracy(r->t, r->m, a->eval_data, a); printf(", next-token accuracy %.1f%%", 100 * r->acc0); }
    printf("\n");
    return 0;
}

/* The training loop: each step this rank's rows (lomo_data_next_rank) -> lomo_step -> CSV log and progress ->
   --eval-every, --sample-every -> --save-every / --stop-after / a signal. GO_ON when all steps ran, else the exit
   code (1 on an error, 0 after --stop-after, 128 + signal). */
static int train(ft_run *r) {
    const args *a = &r->a;
    lomo_model *m = r->m;
    int64_t ntok;
    snprintf(r->log_path, sizeof r->log_path, "%s.log.csv", a->out);
    snprintf(r->ckpt, sizeof r->ckpt, "%s.checkpoint", a->out);
    if (!(r->log = r->rank ? fopen("/dev/null", "w") : open_log(r->log_path, a->resume != NULL, r->start_step))) {
        fprintf(stderr, "llama_ft: cannot write %s: %s\n", r->log_path, strerror(errno));
        return 1;
    }
    r->tok = (int32_t *)calloc((size_t)r->all_rows * a->seq_len, sizeof(int32_t));
    r->lab = (int32_t *)calloc((size_t)r->all_rows * a->seq_len, sizeof(int32_t));
    if (!r->tok || !r->lab) {
        fprintf(stderr, "llama_ft: out of host memory for the %d x %d token batch\n", r->all_rows, a->seq_len);
        return 1;
    }
    signal(SIGINT, on_signal);    /* ISO C: the step in flight finishes, then the loop saves and stops */
    signal(SIGTERM, on_signal);
    double t0 = now();
    int64_t tokens_seen = 0, start_step = r->start_step;
    int skipped_run = 0, total = r->total;   /* consecutive skipped steps */
    int64_t saved_at = 0;  /* step of the last resumable checkpoint this run wrote */
    for (int64_t step = start_step + 1; step <= total; step++) {
        lomo_step_info info;
        float lr = lr_at(a, (int)step, total);
        /* the step's all_rows rows, of which this rank keeps its mb x --batch (with one process: all) */
        if (lomo_data_next_rank(r->d, a->batch, r->mb, r->rank, r->nranks, r->tok, r->lab) < 0) return die("--data");
        if (lomo_step(r->t, r->tok, r->lab, lr, &info)) {   /* e.g. non-finite weights: nothing more is saved */
            fprintf(stderr, "llama_ft: training stopped at step %lld: %s\n", (long long)step, lomo_error());
            if (saved_at) fprintf(stderr, "llama_ft: the last checkpoint, %s, is from step %lld and was not touched\n",
                                  r->ckpt, (long long)saved_at);
            else fprintf(stderr, "llama_ft: no checkpoint was written\n");
            return 1;
        }
        tokens_seen += (int64_t)r->all_rows * a->seq_len;
        double el = now() - t0, tps = tokens_seen / el;
        double peak = lomo_memory_report(m).total_peak / 1048576.0;
        fprintf(r->log, "%lld,%.6f,%.6g,%.6f,%lld,%d,%.1f,%.2f\n", (long long)step, info.loss, lr, info.grad_norm,
                (long long)info.n_tokens, info.skipped, tps, peak);
        fflush(r->log);
        if (step % a->log_every == 0 || step == start_step + 1 || step == total || info.skipped)
            printf("step %lld/%d  loss %.4f  lr %.3g  grad norm %.3f  %.0f tok/s  peak %.1f MiB  ETA %.0fs%s\n",
                   (long long)step, total, info.loss, lr, info.grad_norm, tps, peak,
                   el / (step - start_step) * (total - step), info.skipped ? "  (skipped)" : "");
        if (a->eval_data && a->eval_every && step % a->eval_every == 0 && step < total) {
            double l;
            if (evaluate(r->t, a->eval_data, a, m->cfg.vocab_size, &l, &ntok)) return 1;
            printf("eval_loss=%.6f tokens=%lld\n", l, (long long)ntok);
        }
        /* a skip that backed the loss scale off is the scaler working; the others count */
        if (!info.skipped) skipped_run = 0;
        else if (!(lomo_trainer_loss_scale(r->t) < info.loss_scale)) skipped_run++;
        if (a->max_skipped && skipped_run >= a->max_skipped) {
            fprintf(stderr, "llama_ft: step %lld: %d consecutive steps skipped (non-finite loss or gradients, or no "
                    "counted token): stopping (--max-skipped %d); nothing more is saved\n", (long long)step,
                    skipped_run, a->max_skipped);
            return 1;
        }
        if (a->sample_every && (step % a->sample_every == 0 || step == total) && gen_sample(m, a, step))
            return die("--sample-every");
        int sig = ranks_max(a, stop_signal);   /* all ranks stop together */
        int stop = (a->stop_after && step == start_step + a->stop_after && step < total) || (sig && step < total);
        /* while steps are being skipped (not loss-scale back-offs) the last checkpoint stays */
        if (((a->save_every && (step % a->save_every == 0 || step == total)) && !skipped_run) || stop) {
            if (save_checkpoint(m, r->t, r->ckpt, step, lomo_data_tell(r->d), a)) return die("--save-every");
            printf("saved resumable checkpoint %s (step %lld)\n", r->ckpt, (long long)step);
            saved_at = step;
        } else if (a->save_every && (step % a->save_every == 0 || step == total))
            printf("not saving a checkpoint at step %lld: %d consecutive steps skipped\n", (long long)step, skipped_run);
        if (sig && step < total) {
            fprintf(stderr, "llama_ft: %s at step %lld: stopped with a resumable checkpoint; continue with --resume %s\n",
                    sig == SIGINT ? "SIGINT" : "SIGTERM", (long long)step, r->ckpt);
            return 128 + sig;
        }
        if (stop) {
            printf("stopping after %d steps of this run (--stop-after); continue with --resume %s\n", a->stop_after, r->ckpt);
            return 0;
        }
    }
    fclose(r->log);
    r->log = NULL;
    return GO_ON;
}

/* after the last step: the final eval, the memory report, the Hugging Face checkpoint in --out */
static int finish(ft_run *r) {
    const args *a = &r->a;
    lomo_model *m = r->m;
    lomo_save_opts so;
    if (a->eval_data) {
        double loss1;
        int64_t ntok;
        if (evaluate(r->t, a->eval_data, a, m->cfg.vocab_size, &loss1, &ntok)) return 1;
        printf("eval after %d steps: loss %.4f (was %.4f)", r->total, loss1, r->loss0);
        if (r->demo) printf(", next-token accuracy %.1f%% (was %.1f%%)", 100 * demo_accuracy(r->t, m, a->eval_data, a), 100 * r->acc0);
        printf("\neval_loss=%.6f tokens=%lld\n", loss1, (long long)ntok);
    }
    printf("\nmemory, measured by lomo's accounting for this model and batch:\n");
    lomo_memory mr = lomo_memory_report(m);
    lomo_memory_print_compare(stdout, &mr, lomo_n_params(m));

    memset(&so, 0, sizeof so);
    so.copy_from = a->model ? a->model : a->resume;
    if (lomo_save_ex(m, a->out, &so)) return die("save");
    printf("saved a Hugging Face checkpoint to %s/ (log: %s)\n", a->out, r->log_path);
    return 0;
}

static void run_free(ft_run *r) {
    if (r->log) fclose(r->log);
    free(r->tok); free(r->lab);
    lomo_data_free(r->d);
    lomo_data_free(eval_cache);
    text_free();
    lomo_trainer_free(r->t);
    lomo_model_free(r->m);
}

/* parse options -> (tokenizer-only modes) -> ranks and backend -> model -> (one-shot modes) -> data -> train -> save */
int main(int argc, char **argv) {
    ft_run r;
    args *a = &r.a;
    int rc;
    memset(&r, 0, sizeof r);
    r.nranks = 1;
    setvbuf(stdout, NULL, _IOLBF, 0);   /* a redirected log is written line by line, never left empty */
    if ((rc = parse_args(argc, argv, a)) != GO_ON) return rc;

    /* modes that need no weights: the tokenizer only */
    if (a->tokenize || a->detokenize) return text_mode(a);
    if (a->render_chat) {
        rc = render_chat(a, a->seq_len_in_argv);
        text_free();
        return rc;
    }

    /* the backend (and the ranks of a sharded run), then the model */
    if ((rc = check_choices(a)) != GO_ON) return rc;
    r.lo.dtype = a->dtype_id;
    if ((rc = ranks_open(a, &r.lo, &r.rank, &r.nranks, &argc, &argv)) != GO_ON) return rc;
    if ((rc = backend_open(a, &r.lo)) != GO_ON) return rc;
    rc = 1;   /* from here every failure has said why */
    if (load_model(&r)) goto done;

    /* one-shot modes on the model */
    if (a->prompt_ids || a->generate) { rc = gen_mode(r.m, a); goto done; }   /* stdout: the generated ids only */
    if (prepare(&r)) goto done;
    if (a->eval_only || a->mc) { rc = eval_modes(&r); goto done; }

    /* training */
    if (!a->data) { fprintf(stderr, "llama_ft: --data is needed to train (or --eval / --mc)\n"); rc = 2; goto done; }
    if (open_train_data(&r) || eval_before(&r)) goto done;
    if ((rc = train(&r)) != GO_ON) goto done;
    rc = finish(&r);
done:
    run_free(&r);
    ranks_close(a, &r.lo, rc);
    return rc;
}
