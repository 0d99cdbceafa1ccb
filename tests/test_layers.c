/* test_layers.c - the one table of a layer's tensors (LOMO__LAYER_TENSORS),
   checked against transformers and against the driver that walks it:
   1. lomo_load creates each fixture model's tensors in the order of
      transformers' named_parameters(), with its names and shapes (so lomo
      saves them in that order): tests/ref/layer_order.txt, written by
      tests/ref/make_layer_order.py from the same config.json files.
   2. The update hook sees every tensor exactly once per step, in the order
      lomo__stage_tensors gives (the table's bwd column): lm_head, final norm,
      layers L-1..0, embedding. With M = 1 the hook is called the moment
      lomo__layer_bwd completes a gradient, so this checks the bwd column
      against the backward itself; stored activations, checkpointing, and
      M = 2 micro-batches (tied: the final norm last), every family.
   3. Phi-3: wq, wk, wv, w_gate, w_up are the row blocks of qkv_proj and
      gate_up_proj that Phi3Attention / Phi3MLP split them into.
   4. lomo_trainer_new's one cleanup: the k-th allocation (LOMO_MALLOC: host
      and CPU-backend memory) fails, for every k until construction succeeds
      (AdamW with micro-batches: every kind of buffer): NULL with a reason,
      and every counted byte back (the ASan build also checks that no host
      memory leaks). */
#include <stdlib.h>
static long fail_at = -1, n_allocs;   /* fail the fail_at-th allocation while counting (fail_at >= 0) */
static void *test_malloc(size_t n) {
    if (fail_at >= 0 && n_allocs++ == fail_at) return NULL;
    return malloc(n);
}
#define LOMO_MALLOC(sz) test_malloc(sz)
#define LOMO_FREE(p) free(p)
#define LOMO_REALLOC(p, n) realloc((p), (n))
#define LOMO_IMPLEMENTATION
#include "../lomo.h"
#include "test_util.h"

static const char *cases[] = {"llama_gqa", "llama_tied", "llama_bias", "qwen2_bias", "qwen3_bias", "qwen3_tied",
                              "mistral", "gemma2", "gemma3", "phi3", "phi3_partial"};

typedef struct rec { int n, idx[512]; } rec;

static int record_hook(lomo_tensor *p, const float *g, const lomo_update_ctx *ctx, void *user) {
    rec *r = (rec *)user;
    (void)g; (void)ctx;
    if (r->n < 512) r->idx[r->n] = p->index;
    r->n++;
    return 0;   /* nothing is updated */
}

/* 1: names and shapes in named_parameters() order */
static void check_order(const char *name, const lomo_model *m) {
    FILE *f = fopen("tests/ref/layer_order.txt", "r");
    char line[512], cs[64], pn[256];
    long long d0, d1;
    int i = 0, bad = 0;
    if (!f) { CHECK(0, "tests/ref/layer_order.txt missing (run from the repository root)"); return; }
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || sscanf(line, "%63s %255s %lld %lld", cs, pn, &d0, &d1) != 4 || strcmp(cs, name)) continue;
        if (i >= m->n_tensors) { bad = 1; printf("  %s: transformers has %s beyond lomo's %d tensors\n", name, pn, i); break; }
        if (strcmp(m->tensors[i].name, pn) || m->tensors[i].shape[0] != d0 || m->tensors[i].shape[1] != d1) {
            printf("  %s: tensor %d: lomo %s [%lld, %lld], transformers %s [%lld, %lld]\n", name, i, m->tensors[i].name,
                   (long long)m->tensors[i].shape[0], (long long)m->tensors[i].shape[1], pn, d0, d1);
            bad = 1;
            break;
        }
        i++;
    }
    fclose(f);
    CHECK(!bad && i == m->n_tensors, "%s: lomo's %d tensors are not transformers' %d named_parameters() in order",
          name, m->n_tensors, i);
}

/* 2: the hook order of one step against the stages */
static void check_hook_order(const char *name, lomo_model *m, int M, int ckpt) {
    lomo_train_opts o;
    lomo_trainer *t;
    lomo_step_info info;
    lomo_tensor *st[32];
    rec r;
    int32_t tok[8];
    int want[512], nw = 0, i, l, k, tied = m->cfg.tie_embeddings, same;
    memset(&o, 0, sizeof o);
    memset(&r, 0, sizeof r);
    o.batch = 1; o.seq_len = 4; o.micro_batches = M; o.checkpointing = ckpt;
    o.update = record_hook; o.update_user = &r;
    t = lomo_trainer_new(m, &o);
    CHECK(t != NULL, "%s: trainer: %s", name, lomo_error());
    if (!t) return;
    for (i = 0; i < 4 * M; i++) tok[i] = tu_randint(m->cfg.vocab_size);
    CHECK(lomo_step(t, tok, NULL, 0.01f, &info) == 0, "%s: step: %s", name, lomo_error());
    if (!(tied && M > 1)) { k = lomo__stage_tensors(m, -1, st); for (i = 0; i < k; i++) want[nw++] = st[i]->index; }
    for (l = m->cfg.n_layers - 1; l >= 0; l--) {
        k = lomo__stage_tensors(m, l, st);
        for (i = 0; i < k; i++) want[nw++] = st[i]->index;
    }
    want[nw++] = m->embed->index;
    if (tied && M > 1) want[nw++] = m->final_norm->index;
    same = r.n == nw && nw == m->n_tensors;
    for (i = 0; same && i < nw; i++) same = r.idx[i] == want[i];
    for (i = 0; !same && i < nw && i < r.n; i++)
        if (r.idx[i] != want[i]) {
            printf("  %s M=%d ckpt=%d: hook call %d is %s, the stage order says %s\n", name, M, ckpt, i,
                   m->tensors[r.idx[i]].name, m->tensors[want[i]].name);
            break;
        }
    CHECK(same, "%s M=%d ckpt=%d: %d hook calls (%d tensors) not in the stage order", name, M, ckpt, r.n, m->n_tensors);
    lomo_trainer_free(t);
}

/* 3: Phi-3's split tensors are row blocks of the fused ones */
static void check_views(const char *name, const lomo_model *m) {
    const lomo_config *c = &m->cfg;
    int64_t C = c->dim, H = c->hidden_dim, qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    size_t es = m->cfg.dtype == LOMO_F32 ? 4 : 2;
    int l, ok = 1;
    for (l = 0; l < c->n_layers; l++) {
        const lomo_layer *L = &m->layers[l];
        const char *q = (const char *)L->w_qkv->data, *g = (const char *)L->w_gate_up->data;
        ok &= L->wq->data == q && L->wk->data == q + (size_t)(qd * C) * es && L->wv->data == q + (size_t)((qd + kvd) * C) * es;
        ok &= L->w_gate->data == g && L->w_up->data == g + (size_t)(H * C) * es;
        ok &= L->wq->shape[0] == qd && L->wk->shape[0] == kvd && L->wv->shape[0] == kvd && L->w_gate->shape[0] == H &&
              L->w_up->shape[0] == H && L->wq->shape[1] == C && L->w_up->shape[1] == C;
        ok &= L->wq->numel == qd * C && L->wv->numel == kvd * C && L->w_up->numel == H * C;
        ok &= L->wq->kind == LOMO_WQ && L->wk->kind == LOMO_WK && L->wv->kind == LOMO_WV && L->w_gate->kind == LOMO_W_GATE &&
              L->w_up->kind == LOMO_W_UP;
    }
    CHECK(ok, "%s: the q/k/v and gate/up views are not the fused tensors' row blocks", name);
}

/* 4: every allocation of lomo_trainer_new fails once */
static void check_new_cleanup(const char *name, lomo_model *m) {
    lomo_train_opts o;
    lomo_memory before = lomo_memory_report(m), after;
    long k;
    int ok = 1, tags_ok = 1, t_idx, built;
    memset(&o, 0, sizeof o);
    o.batch = 2; o.seq_len = 4; o.micro_batches = 2; o.optimizer = LOMO_OPT_ADAMW;
    for (k = 0; k < 10000; k++) {
        lomo_trainer *t;
        fail_at = k; n_allocs = 0;
        lomo__errbuf[0] = 0;
        t = lomo_trainer_new(m, &o);
        fail_at = -1;
        built = t != NULL;
        lomo_trainer_free(t);   /* (success: all of it back too) */
        after = lomo_memory_report(m);
        for (t_idx = 0; t_idx < LOMO_MEM_NTAGS; t_idx++) tags_ok &= after.current[t_idx] == before.current[t_idx];
        if (built) break;
        if (!lomo_error()[0]) { ok = 0; printf("  %s: allocation %ld failed without a reason\n", name, k); }
    }
    printf("%-13s lomo_trainer_new with each of its %ld allocations failing in turn\n", name, k);
    CHECK(k > 5 && k < 10000, "%s: lomo_trainer_new made %ld allocations", name, k);
    CHECK(ok, "%s: a failed lomo_trainer_new left no reason in lomo_error()", name);
    CHECK(tags_ok, "%s: a failed lomo_trainer_new kept counted memory", name);
}

int main(void) {
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char dir[128];
        lomo_model *m;
        snprintf(dir, sizeof dir, "tests/ref/%s", cases[i]);
        m = lomo_load(dir, NULL);
        CHECK(m != NULL, "%s: %s", dir, lomo_error());
        if (!m) continue;
        check_order(cases[i], m);
        check_hook_order(cases[i], m, 1, 0);
        check_hook_order(cases[i], m, 1, 1);
        check_hook_order(cases[i], m, 2, 1);
        if (m->cfg.fused_proj) check_views(cases[i], m);
        if (!strcmp(cases[i], "gemma3") || !strcmp(cases[i], "llama_bias")) check_new_cleanup(cases[i], m);
        printf("%-13s %2d tensors: named_parameters() order, hook order (M=1, checkpointing, M=2)%s\n", cases[i],
               m->n_tensors, m->cfg.fused_proj ? ", row-block views" : "");
        lomo_model_free(m);
    }
    return tu_done("test_layers");
}
