/* test_chat.c - chat templates (rendered text and assistant spans against
   transformers' apply_chat_template), template detection from
   tokenizer_config.json, and the text dataset formats of lomo_data_open
   ({"text"}, {"prompt", "completion"}, alpaca, {"messages"}, *.txt) with ids
   and labels against transformers / tokenizers. Fixtures: tests/ref/chat/,
   made by tests/ref/make_chat_fixtures.py. Run from the repository root:
     gcc -std=c11 -Wall -Wextra -pedantic -O1 -g -fsanitize=address,undefined \
         -fno-sanitize-recover=all tests/test_chat.c -o /tmp/test_chat -lm && /tmp/test_chat [-v]
   -v prints every refusal message. Scratch files go to build/tmp_chat/. */
#define LOMO_IMPLEMENTATION
#include "../lomo.h"

#include "test_util.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#define REF "tests/ref/chat/"
#define NT 5
static const char *const names[NT] = {"llama3", "chatml", "qwen2", "mistral", "mistral-v1"};
static const int wrong[NT] = {1, 3, 3, 0, 0};   /* a template whose tokens the tokenizer of names[t] lacks */

static const char *write_text(const char *name, const char *s) {
    const char *path = tu_path(name);
    FILE *f = fopen(path, "wb");
    if (f) { fwrite(s, 1, strlen(s), f); fclose(f); }
    return path;
}

/* the lines of a fixture file, each parsed (NULL-terminated list; free with free_lines) */
typedef struct { char *buf; lomo__json *j; int n; } lines;
static lines read_lines(const char *path) {
    lines L = {NULL, NULL, 0};
    size_t len, pos = 0, n;
    const char *s;
    if (lomo__read_file(path, &L.buf, &len)) { printf("FAIL cannot read %s: %s\n", path, lomo_error()); tu_fail++; return L; }
    L.j = (lomo__json *)calloc(4096, sizeof *L.j);
    while (lomo__data_line(L.buf, len, &pos, &s, &n) && L.n < 4096) {
        if (lomo__data_blank(s, n)) continue;
        if (lomo__json_parse(&L.j[L.n], s, n, path)) { printf("FAIL %s: %s\n", path, lomo_error()); tu_fail++; break; }
        L.n++;
    }
    return L;
}
static void free_lines(lines *L) {
    int i;
    for (i = 0; i < L->n; i++) lomo__json_free(&L->j[i]);
    free(L->j); free(L->buf);
}

static char *jstr(const lomo__json *j, int node) { return lomo__json_strdup(j, node, "fixture", "string", NULL); }

/* messages of conversation line c (strings owned by the result; free with lomo__msgs_free-like loop) */
static lomo_chat_msg *conv(const lomo__json *j, int *n) {
    int arr = lomo__json_get(j, 0, "messages"), c, k = 0;
    lomo_chat_msg *m = (lomo_chat_msg *)calloc((size_t)j->nodes[arr].count + 1, sizeof *m);
    for (c = j->nodes[arr].first; c >= 0; c = j->nodes[c].next, k++) {
        m[k].role = jstr(j, lomo__json_get(j, c, "role"));
        m[k].content = jstr(j, lomo__json_get(j, c, "content"));
    }
    *n = k;
    return m;
}
static void conv_free(lomo_chat_msg *m, int n) {
    int i;
    for (i = 0; i < n; i++) { LOMO_FREE((void *)m[i].role); LOMO_FREE((void *)m[i].content); }
    free(m);
}

/* ints of array node arr into a malloc'd array; count in *n */
static int32_t *jints(const lomo__json *j, int arr, int64_t *n) {
    int32_t *v = (int32_t *)malloc(((size_t)(arr >= 0 ? j->nodes[arr].count : 0) + 1) * sizeof *v);
    int c;
    int64_t k = 0, x;
    for (c = arr >= 0 ? j->nodes[arr].first : -1; c >= 0; c = j->nodes[c].next) { lomo__json_int(j, c, &x); v[k++] = (int32_t)x; }
    *n = k;
    return v;
}

/* ------------------------------------------------------------------------ */

/* every conversation, every template: the text and spans transformers gives, or a refusal where it raises */
static void test_render(void) {
    lines C = read_lines(REF "conversations.jsonl");
    int t, i;
    for (t = 0; t < NT; t++) {
        char path[256];
        lines R;
        snprintf(path, sizeof path, REF "render_%s.jsonl", names[t]);
        R = read_lines(path);
        CHECK(R.n == C.n && C.n > 10, "%s: %d rendered lines for %d conversations", names[t], R.n, C.n);
        for (i = 0; i < C.n && i < R.n; i++) {
            int n, k;
            lomo_chat_msg *m = conv(&C.j[i], &n);
            char *text = NULL, *want;
            size_t len = 0;
            int64_t *sp = NULL;
            k = lomo_chat_render(names[t], m, n, &text, &len, &sp);
            if (lomo__json_get(&R.j[i], 0, "error") >= 0) {
                CHECK(k < 0 && strstr(lomo_error(), "messages["), "%s conversation %d: expected a refusal, got %d (%s)",
                      names[t], i, k, k < 0 ? lomo_error() : text);
                if (tu_verbose && k < 0) printf("  ok  %s\n", lomo_error());
            } else {
                int64_t ns, *ws;
                int32_t *w32;
                int sa = lomo__json_get(&R.j[i], 0, "spans"), c, q = 0, same = 1;
                want = jstr(&R.j[i], lomo__json_get(&R.j[i], 0, "text"));
                CHECK(k >= 0 && text && want && len == strlen(want) && !strcmp(text, want),
                      "%s conversation %d: rendered\n[%s]\nexpected\n[%s]\n(%s)", names[t], i, text ? text : "",
                      want ? want : "", k < 0 ? lomo_error() : "");
                ws = (int64_t *)malloc(((size_t)R.j[i].nodes[sa].count + 1) * 2 * sizeof *ws);
                for (c = R.j[i].nodes[sa].first; c >= 0; c = R.j[i].nodes[c].next, q++) {
                    w32 = jints(&R.j[i], c, &ns);
                    ws[2 * q] = w32[0]; ws[2 * q + 1] = w32[1];
                    free(w32);
                }
                for (c = 0; c < q && k == q; c++) same &= sp[2 * c] == ws[2 * c] && sp[2 * c + 1] == ws[2 * c + 1];
                CHECK(k == q && same, "%s conversation %d: %d spans (first [%lld, %lld)), expected %d (first [%lld, %lld))",
                      names[t], i, k, k > 0 ? (long long)sp[0] : -1LL, k > 0 ? (long long)sp[1] : -1LL, q,
                      q > 0 ? (long long)ws[0] : -1LL, q > 0 ? (long long)ws[1] : -1LL);
                free(ws);
                LOMO_FREE(want);
            }
            LOMO_FREE(text); LOMO_FREE(sp);
            conv_free(m, n);
        }
        free_lines(&R);
    }
    free_lines(&C);
    {   /* refusals by name */
        lomo_chat_msg m[2] = {{"user", "hi"}, {"tool", "x"}};
        char *text;
        EXPECT_ERR(lomo_chat_render("llama2", m, 1, &text, NULL, NULL) < 0, "unknown chat template \"llama2\"", "llama3, chatml");
        EXPECT_ERR(lomo_chat_render("chatml", m, 2, &text, NULL, NULL) < 0, "messages[1].role = \"tool\"", "\"assistant\"");
        EXPECT_ERR(lomo_chat_render("llama3", m, 0, &text, NULL, NULL) < 0, "messages is empty", NULL);
        m[1].role = "assistant"; m[1].content = "bad \xc3 utf-8";
        EXPECT_ERR(lomo_chat_render("mistral", m, 2, &text, NULL, NULL) < 0, "messages[1].content is not valid UTF-8", NULL);
    }
}

static void test_detect(void) {
    int t;
    const char *d = tu_path("model");
    char path[512], *s;
    size_t len;
    mkdir(d, 0755);
    for (t = 0; t < NT; t++) {   /* the official templates, as tokenizer_config.json and as chat_template.jinja */
        const char *got;
        snprintf(path, sizeof path, REF "tokenizer_config_%s.json", names[t]);
        got = lomo_chat_template_detect(path);
        CHECK(got && !strcmp(got, names[t]), "detect %s: got %s (%s)", path, got ? got : "NULL", got ? "" : lomo_error());
    }
    {   /* a model directory: chat_template.jinja wins over tokenizer_config.json; a list with "default" */
        lomo__json j;
        int node;
        char *tpl;
        lomo__read_file(REF "tokenizer_config_mistral.json", &s, &len);
        lomo__json_parse(&j, s, len, "cfg");
        node = lomo__json_get(&j, 0, "chat_template");
        tpl = jstr(&j, node);
        snprintf(path, sizeof path, "%s/chat_template.jinja", d);
        write_text("model/chat_template.jinja", tpl);
        write_text("model/tokenizer_config.json", "{\"chat_template\": \"<|im_start|>You are a helpful assistant.<|im_end|>\"}");
        CHECK(lomo_chat_template_detect(d) && !strcmp(lomo_chat_template_detect(d), "mistral"), "jinja file first: %s", lomo_error());
        remove(path);
        CHECK(lomo_chat_template_detect(d) && !strcmp(lomo_chat_template_detect(d), "qwen2"), "tokenizer_config.json: %s", lomo_error());
        {
            size_t cap = strlen(s) + 200;
            char *list = (char *)malloc(cap);
            snprintf(list, cap, "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"x\"}, {\"name\": \"default\", "
                     "\"template\": %.*s}]}", (int)(j.nodes[node].len + 2), j.nodes[node].s - 1);
            write_text("model/tokenizer_config.json", list);
            CHECK(lomo_chat_template_detect(d) && !strcmp(lomo_chat_template_detect(d), "mistral"), "list: %s", lomo_error());
            free(list);
        }
        LOMO_FREE(tpl); lomo__json_free(&j); LOMO_FREE(s);
    }
    write_text("model/tokenizer_config.json", "{\"bos_token\": \"<s>\"}");
    EXPECT_ERR(lomo_chat_template_detect(d) == NULL, "tokenizer_config.json: no chat_template", "--chat-template");
    write_text("model/tokenizer_config.json", "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"x\"}]}");
    EXPECT_ERR(lomo_chat_template_detect(d) == NULL, "without a \"default\" entry", NULL);
    write_text("model/tokenizer_config.json", "{\"chat_template\": \"{{ '<|start_header_id|>' }}Cutting Knowledge Date{{ '<|eot_id|>' }}\"}");
    EXPECT_ERR(lomo_chat_template_detect(d) == NULL, "Llama 3.1", "--chat-template llama3");
    write_text("model/tokenizer_config.json", "{\"chat_template\": \"{{ '[INST] ' + m + '[/INST]' }}\"}");
    EXPECT_ERR(lomo_chat_template_detect(d) == NULL, "not Mistral-7B-Instruct v0.1/v0.2's", NULL);
    write_text("model/tokenizer_config.json", "{\"chat_template\": \"<|im_start|><think><|im_end|>You are a helpful assistant.\"}");
    EXPECT_ERR(lomo_chat_template_detect(d) == NULL, "<think>", NULL);
    write_text("model/tokenizer_config.json", "{\"chat_template\": \"{{ messages }}\"}");
    EXPECT_ERR(lomo_chat_template_detect(d) == NULL, "none of the built-in ones", "--chat-template NAME");
    write_text("model/tokenizer_config.json", "{\"chat_template\": 7}");
    EXPECT_ERR(lomo_chat_template_detect(d) == NULL, "chat_template must be a string, found 7", NULL);
    write_text("model/tokenizer_config.json", "{\"chat_template\": \"x\"");
    EXPECT_ERR(lomo_chat_template_detect(d) == NULL, "tokenizer_config.json: invalid JSON", NULL);
    remove(tu_path("model/tokenizer_config.json"));
    EXPECT_ERR(lomo_chat_template_detect(d) == NULL, "tokenizer_config.json: cannot open", NULL);
}

#ifndef LOMO_NO_TOKENIZER
static lomo_data_opts opts(int T, int V, const lomo_tokenizer *tk, const char *tpl) {
    lomo_data_opts o;
    memset(&o, 0, sizeof o);
    o.seq_len = T; o.vocab_size = V; o.tokenizer = tk; o.chat_template = tpl;
    return o;
}

/* every example of d (file order, untruncated when T is large) against the {"input_ids", "labels"} lines of
   path, skipping lines with "error" */
static void compare_examples(const lomo_data *d, const char *path, const char *what) {
    lines E = read_lines(path);
    int i, k = 0, bad = 0;
    for (i = 0; i < E.n; i++) {
        int64_t n, nl, len;
        int32_t *ids, *lab;
        const int32_t *t, *l;
        if (lomo__json_get(&E.j[i], 0, "error") >= 0) continue;
        ids = jints(&E.j[i], lomo__json_get(&E.j[i], 0, "input_ids"), &n);
        lab = jints(&E.j[i], lomo__json_get(&E.j[i], 0, "labels"), &nl);
        len = lomo_data_example(d, k, &t, &l);
        if (len != n || memcmp(t, ids, (size_t)n * 4) || memcmp(l, lab, (size_t)n * 4)) {
            int64_t q;
            if (bad++ < 3) {
                printf("FAIL %s example %d: %lld tokens, expected %lld\n  got ", what, k, (long long)len, (long long)n);
                for (q = 0; q < len && q < 40; q++) printf("%d/%d ", t[q], l[q]);
                printf("\n  exp ");
                for (q = 0; q < n && q < 40; q++) printf("%d/%d ", ids[q], lab[q]);
                printf("\n");
            }
        }
        free(ids); free(lab);
        k++;
    }
    CHECK(!bad && k == lomo_data_count(d) && k > 2, "%s: %d of %d examples differ (%lld in the data)", what, bad, k,
          (long long)lomo_data_count(d));
    free_lines(&E);
}

static void test_chat_data(void) {
    int t;
    for (t = 0; t < NT; t++) {
        char path[256], conv_path[64];
        lines C, R;
        lomo_tokenizer *tk;
        lomo_data_opts o;
        lomo_data *d;
        char *all = NULL;
        size_t cap = 0, used = 0;
        int i;
        snprintf(path, sizeof path, REF "tok_%s.json", names[t]);
        if (!(tk = lomo_tokenizer_load(path))) { CHECK(0, "load %s: %s", path, lomo_error()); continue; }
        /* the conversations the template accepts, as one data file */
        C = read_lines(REF "conversations.jsonl");
        snprintf(path, sizeof path, REF "render_%s.jsonl", names[t]);
        R = read_lines(path);
        for (i = 0; i < C.n && i < R.n; i++) {
            size_t n = C.j[i].nodes[0].len;
            if (lomo__json_get(&R.j[i], 0, "error") >= 0) continue;
            if (used + n + 2 > cap) { cap = 2 * (used + n + 2); all = (char *)realloc(all, cap); }
            memcpy(all + used, C.j[i].nodes[0].s, n); used += n;
            all[used++] = '\n'; all[used] = 0;
        }
        snprintf(conv_path, sizeof conv_path, "chat_%s.jsonl", names[t]);
        o = opts(1 << 20, lomo_tokenizer_vocab_size(tk), tk, names[t]);
        d = lomo_data_open(write_text(conv_path, all), &o);
        CHECK(d != NULL, "%s: %s", names[t], lomo_error());
        snprintf(path, sizeof path, REF "encode_%s.jsonl", names[t]);
        if (d) compare_examples(d, path, names[t]);
        CHECK(d && lomo_data_truncated(d) == 0, "%s: nothing is cut", names[t]);
        lomo_data_free(d);
        {   /* lomo_chat_encode gives the same as the data path, conversation 0 */
            int n;
            lomo_chat_msg *m = conv(&C.j[0], &n);
            int32_t *ids, *lab, *wi, *wl;
            int64_t k = lomo_chat_encode(tk, names[t], m, n, &ids, &lab), nw, nl;
            lines E = read_lines(path);
            wi = jints(&E.j[0], lomo__json_get(&E.j[0], 0, "input_ids"), &nw);
            wl = jints(&E.j[0], lomo__json_get(&E.j[0], 0, "labels"), &nl);
            CHECK(k == nw && !memcmp(ids, wi, (size_t)k * 4) && !memcmp(lab, wl, (size_t)k * 4),
                  "%s: lomo_chat_encode %lld tokens, expected %lld (%s)", names[t], (long long)k, (long long)nw,
                  k < 0 ? lomo_error() : "");
            LOMO_FREE(ids); LOMO_FREE(lab); free(wi); free(wl);
            free_lines(&E);
            conv_free(m, n);
        }
        /* truncation keeps the start */
        o = opts(7, lomo_tokenizer_vocab_size(tk), tk, names[t]);
        d = lomo_data_open(tu_path(conv_path), &o);
        if (d) {   /* the examples longer than 7 are cut, each to its first 7 tokens; the others are whole */
            lomo_data_opts o2 = opts(1 << 20, lomo_tokenizer_vocab_size(tk), tk, names[t]);
            lomo_data *full = lomo_data_open(tu_path(conv_path), &o2);
            int64_t e, cut = 0, ok = 0;
            for (e = 0; full && e < lomo_data_count(full); e++) {
                const int32_t *a, *b, *la, *lb;
                int64_t na = lomo_data_example(d, e, &a, &la), nb = lomo_data_example(full, e, &b, &lb);
                cut += nb > 7;
                ok += na == (nb > 7 ? 7 : nb) && !memcmp(a, b, (size_t)na * 4) && !memcmp(la, lb, (size_t)na * 4);
            }
            CHECK(full && ok == lomo_data_count(d) && cut == lomo_data_truncated(d) && cut > 5,
                  "%s: %lld of %lld cut to their start, %lld counted as cut of %lld", names[t], (long long)ok,
                  (long long)lomo_data_count(d), (long long)lomo_data_truncated(d), (long long)cut);
            lomo_data_free(full);
        } else CHECK(0, "%s: seq_len 7: %s", names[t], lomo_error());
        lomo_data_free(d);
        /* refusals: no template; the model's vocabulary smaller than the tokenizer's; the wrong family */
        o = opts(64, lomo_tokenizer_vocab_size(tk), tk, NULL);
        EXPECT_ERR(lomo_data_open(tu_path(conv_path), &o) == NULL, ":1: {\"messages\"} lines need a chat template", "--chat-template");
        o = opts(64, 100, tk, names[t]);
        EXPECT_ERR(lomo_data_open(tu_path(conv_path), &o) == NULL, ":1: token", "outside the vocabulary [0, 100)");
        o = opts(64, lomo_tokenizer_vocab_size(tk), tk, names[wrong[t]]);
        EXPECT_ERR(lomo_data_open(tu_path(conv_path), &o) == NULL, ":1: chat template", "which the tokenizer does not have");
        free(all);
        free_lines(&C); free_lines(&R);
        lomo_tokenizer_free(tk);
    }
}

/* the template's ids and labels with the tok helper's real-vocabulary tokenizers (tests/ref/tok/) */
static void test_cross(void) {
    static const char *const cross[5][3] = {
        {"chatml", "tests/ref/tok/qwen2.json", REF "encode_chatml_tokqwen2.jsonl"},
        {"mistral", "tests/ref/tok/spm_legacy.json", REF "encode_mistral_tokspm.jsonl"},
        {"mistral", "tests/ref/tok/full/spm_legacy.json", REF "encode_mistral_tokspm_full.jsonl"},
        {"mistral-v1", "tests/ref/tok/spm_legacy.json", REF "encode_mistral-v1_tokspm.jsonl"},
        {"mistral-v1", "tests/ref/tok/full/spm_legacy.json", REF "encode_mistral-v1_tokspm_full.jsonl"}};
    int c;
    for (c = 0; c < 5; c++) {
        lomo_tokenizer *tk;
        lomo_data_opts o;
        lomo_data *d;
        struct stat st;
        if (strstr(cross[c][1], "/full/") && stat(cross[c][1], &st)) {
            printf("skipped: %s is absent (the full Mistral v1 tokenizer)\n", cross[c][1]);
            continue;
        }
        if (!(tk = lomo_tokenizer_load(cross[c][1]))) { CHECK(0, "load %s: %s", cross[c][1], lomo_error()); continue; }
        o = opts(1 << 20, lomo_tokenizer_vocab_size(tk), tk, cross[c][0]);
        {   /* the conversations this template accepts (the fixture marks the others with "error") */
            lines C = read_lines(REF "conversations.jsonl"), E = read_lines(cross[c][2]);
            char *all = (char *)calloc(1, (size_t)C.n * 4096 + 1);
            size_t used = 0;
            int i;
            for (i = 0; i < C.n && i < E.n; i++) {
                if (lomo__json_get(&E.j[i], 0, "error") >= 0) continue;
                memcpy(all + used, C.j[i].nodes[0].s, C.j[i].nodes[0].len);
                used += C.j[i].nodes[0].len;
                all[used++] = '\n';
            }
            d = lomo_data_open(write_text("cross.jsonl", all), &o);
            CHECK(d != NULL, "%s with %s: %s", cross[c][0], cross[c][1], lomo_error());
            if (d) compare_examples(d, cross[c][2], cross[c][1]);
            lomo_data_free(d);
            free(all); free_lines(&C); free_lines(&E);
        }
        lomo_tokenizer_free(tk);
    }
}

static void test_text_formats(void) {
    lomo_tokenizer *tk = lomo_tokenizer_load(REF "tok_llama3.json");
    const char *fmts[3] = {"text", "pc", "alpaca"};
    int f, V;
    lomo_data_opts o;
    lomo_data *d;
    if (!tk) { CHECK(0, "load tok_llama3.json: %s", lomo_error()); return; }
    V = lomo_tokenizer_vocab_size(tk);
    for (f = 0; f < 3; f++) {
        char path[256], exp[256];
        snprintf(path, sizeof path, REF "data_%s.jsonl", fmts[f]);
        snprintf(exp, sizeof exp, REF "expect_%s.jsonl", fmts[f]);
        o = opts(1 << 20, V, tk, NULL);
        d = lomo_data_open(path, &o);
        CHECK(d != NULL, "%s: %s", path, lomo_error());
        if (d) compare_examples(d, exp, fmts[f]);
        lomo_data_free(d);
        o = opts(64, V, NULL, NULL);
        EXPECT_ERR(lomo_data_open(path, &o) == NULL, ":1:", "needs a tokenizer");
    }
    {   /* a .json file holding one JSON array of the alpaca objects (alpaca_data.json's layout) */
        char *buf, *arr;
        size_t len, i, k = 0;
        lomo__read_file(REF "data_alpaca.jsonl", &buf, &len);
        arr = (char *)calloc(1, 2 * len + 16);
        arr[k++] = '[';
        arr[k++] = '\n';
        for (i = 0; i < len; i++) {
            if (buf[i] == '\n') { if (i + 1 < len) { arr[k++] = ','; } arr[k++] = '\n'; continue; }
            arr[k++] = buf[i];
        }
        arr[k++] = ']';
        o = opts(1 << 20, V, tk, NULL);
        d = lomo_data_open(write_text("alpaca_data.json", arr), &o);
        CHECK(d != NULL, "alpaca_data.json: %s", lomo_error());
        if (d) compare_examples(d, REF "expect_alpaca.jsonl", "alpaca as one JSON array");
        lomo_data_free(d);
        LOMO_FREE(buf); free(arr);
        EXPECT_ERR(lomo_data_open(write_text("arr.json", "[\n{\"text\": \"a\"},\n\n  {\"text\": 5}]"), &o) == NULL,
                   "arr.json:4: text must be a string, found 5", NULL);
        EXPECT_ERR(lomo_data_open(write_text("arr.json", " [\"x\"]"), &o) == NULL, "arr.json:1: expected a JSON object", NULL);
        EXPECT_ERR(lomo_data_open(write_text("arr.json", "[]"), &o) == NULL, "arr.json: no examples (an empty JSON array)", NULL);
        EXPECT_ERR(lomo_data_open(write_text("arr.json", "[{\"text\": \"a\"},]"), &o) == NULL, "arr.json: invalid JSON", NULL);
    }
    /* one format per file, named with both lines */
    o = opts(64, V, tk, "llama3");
    EXPECT_ERR(lomo_data_open(write_text("mix.jsonl", "{\"text\": \"a\"}\n\n{\"text\": \"b\"}\n{\"messages\": []}\n"), &o) == NULL,
               "mix.jsonl:4: this line is {\"messages\"} but line 1 is {\"text\"}", "one format per file");
    EXPECT_ERR(lomo_data_open(write_text("mix.jsonl", "{\"prompt\": \"a\", \"completion\": \"b\"}\n{\"input_ids\": [1]}\n"), &o) == NULL,
               "mix.jsonl:2: this line is {\"input_ids\"} but line 1 is {\"prompt\", \"completion\"}", NULL);
    EXPECT_ERR(lomo_data_open(write_text("two.jsonl", "{\"text\": \"a\", \"messages\": []}\n"), &o) == NULL,
               "two.jsonl:1: the line has the keys of two formats, {\"text\"} and {\"messages\"}", NULL);
    EXPECT_ERR(lomo_data_open(write_text("none.jsonl", "{\"txt\": \"a\"}\n"), &o) == NULL, "none.jsonl:1: missing \"input_ids\"", "\"messages\"");
    EXPECT_ERR(lomo_data_open(write_text("p.jsonl", "{\"prompt\": \"a\"}\n"), &o) == NULL, "p.jsonl:1: \"prompt\" without \"completion\"", NULL);
    EXPECT_ERR(lomo_data_open(write_text("p.jsonl", "{\"prompt\": \"a\", \"completion\": [1]}\n"), &o) == NULL, "p.jsonl:1: completion must be a string, found [1]", NULL);
    EXPECT_ERR(lomo_data_open(write_text("t.jsonl", "{\"text\": \"a\\u0000b\"}\n"), &o) == NULL, "t.jsonl:1: text contains \\u0000", NULL);
    EXPECT_ERR(lomo_data_open(write_text("t.jsonl", "{\"text\": null}\n"), &o) == NULL, "t.jsonl:1: text must be a string, found null", NULL);
    EXPECT_ERR(lomo_data_open(write_text("a.jsonl", "{\"instruction\": \"a\", \"input\": 3, \"output\": \"b\"}\n"), &o) == NULL, "a.jsonl:1: input must be a string", NULL);
    EXPECT_ERR(lomo_data_open(write_text("m.jsonl", "{\"messages\": {}}\n"), &o) == NULL, "m.jsonl:1: messages must be an array", NULL);
    EXPECT_ERR(lomo_data_open(write_text("m.jsonl", "{\"messages\": [{\"role\": \"user\"}]}\n"), &o) == NULL, "m.jsonl:1: missing \"messages[0].content\"", NULL);
    EXPECT_ERR(lomo_data_open(write_text("m.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, 5]}\n"), &o) == NULL, "m.jsonl:1: messages[1] must be an object", NULL);
    EXPECT_ERR(lomo_data_open(write_text("m.jsonl", "{\"messages\": [{\"role\": \"bot\", \"content\": \"a\"}]}\n"), &o) == NULL, "m.jsonl:1: messages[0].role = \"bot\"", NULL);
    EXPECT_ERR(lomo_data_open(write_text("m.jsonl", "{\"messages\": [{\"role\": \"assistant\", \"content\": \"\", \"tool_calls\": []}]}\n"), &o) == NULL, "m.jsonl:1: messages[0] has tool_calls", NULL);
    EXPECT_ERR(lomo_data_open(write_text("m.jsonl", "{\"messages\": []}\n"), &o) == NULL, "m.jsonl:1: messages is empty", NULL);
    o.chat_template = "jinja";
    EXPECT_ERR(lomo_data_open(write_text("m.jsonl", "{\"text\": \"a\"}\n"), &o) == NULL, "unknown chat template \"jinja\"", NULL);
    {   /* plain text: one document, cut into seq_len pieces; labels = ids */
        const char *doc = "Plain text, one document.\nSecond line: 12345 and 你好 and 👩‍👩‍👧.\n";
        int32_t *ids;
        int64_t n = lomo_tokenize(tk, doc, strlen(doc), 1, &ids, NULL), i, got = 0;
        o = opts(5, V, tk, NULL);
        d = lomo_data_open(write_text("doc.txt", doc), &o);
        CHECK(d && lomo_data_count(d) == (n + 4) / 5, "doc.txt: %lld examples for %lld tokens (%s)",
              d ? (long long)lomo_data_count(d) : -1LL, (long long)n, d ? "" : lomo_error());
        for (i = 0; d && i < lomo_data_count(d); i++) {
            const int32_t *t, *l;
            int64_t k = lomo_data_example(d, i, &t, &l);
            if (k > 0 && !memcmp(t, ids + got, (size_t)k * 4) && !memcmp(l, t, (size_t)k * 4)) got += k;
        }
        CHECK(n > 10 && got == n, "doc.txt: %lld of %lld tokens in order", (long long)got, (long long)n);
        lomo_data_free(d);
        LOMO_FREE(ids);
        o = opts(5, V, NULL, NULL);
        EXPECT_ERR(lomo_data_open(tu_path("doc.txt"), &o) == NULL, "doc.txt: plain text (*.txt) needs a tokenizer", NULL);
        o = opts(5, V, tk, NULL);
        EXPECT_ERR(lomo_data_open(write_text("bad.txt", "abc \xff def"), &o) == NULL, "bad.txt: not UTF-8 text", NULL);
    }
    lomo_tokenizer_free(tk);
}

/* copies file a to b */
static int copy_file(const char *a, const char *b) {
    char *buf;
    size_t len;
    FILE *f;
    if (lomo__read_file(a, &buf, &len)) return -1;
    f = fopen(b, "wb");
    if (f) { fwrite(buf, 1, len, f); fclose(f); }
    LOMO_FREE(buf);
    return f ? 0 : -1;
}

/* llama_ft as a user runs it (skipped when build/llama_ft is not built): --render-chat prints exactly the
   fixture's ids and labels, with the template named or detected; training on {"messages"} data lowers the
   loss on the assistant tokens; refusals name the file, line and flag. */
static void test_cli(void) {
    struct stat st;
    const char *bin = "build/llama_ft";
    char dir[300], cmd[2048], *out, *want;
    size_t n_out, n_want;
    lomo_tokenizer *tk;
    lomo_config c;
    lomo_model *m;
    if (stat(bin, &st)) { printf("skipped: %s is not built (make build/llama_ft)\n", bin); return; }
    snprintf(dir, sizeof dir, "%s", tu_path("cli_model"));
    if (!(tk = lomo_tokenizer_load(REF "tok_llama3.json"))) { CHECK(0, "%s", lomo_error()); return; }
    lomo_config_default(&c, 32, 64, 2, 4, 2, lomo_tokenizer_vocab_size(tk));
    c.max_seq_len = 512;
    lomo_tokenizer_free(tk);
    m = lomo_model_new(&c, NULL);
    if (!m) { CHECK(0, "model: %s", lomo_error()); return; }
    lomo_model_init_random(m, 5, 0.02f);
    CHECK(lomo_save(m, dir) == 0, "save: %s", lomo_error());
    lomo_model_free(m);
    copy_file(REF "tok_llama3.json", tu_path("cli_model/tokenizer.json"));
    copy_file(REF "tokenizer_config_llama3.json", tu_path("cli_model/tokenizer_config.json"));
    /* every conversation (llama3 refuses none) */
    snprintf(cmd, sizeof cmd, "%s --model %s --render-chat " REF "conversations.jsonl --chat-template llama3 > %s 2>&1",
             bin, dir, tu_path("render.out"));
    CHECK(system(cmd) == 0, "%s", cmd);
    lomo__read_file(tu_path("render.out"), &out, &n_out);
    lomo__read_file(REF "encode_llama3.jsonl", &want, &n_want);
    CHECK(out && want && n_out == n_want && !memcmp(out, want, n_want), "--render-chat output differs from "
          REF "encode_llama3.jsonl (%zu vs %zu bytes): %.300s", n_out, n_want, out ? out : "");
    LOMO_FREE(out);
    snprintf(cmd, sizeof cmd, "%s --model %s --render-chat " REF "conversations.jsonl > %s 2>&1", bin, dir,
             tu_path("render2.out"));
    CHECK(system(cmd) == 0, "%s", cmd);
    lomo__read_file(tu_path("render2.out"), &out, &n_out);
    CHECK(out && n_out == n_want && !memcmp(out, want, n_want), "--render-chat with the template detected from "
          "tokenizer_config.json: %.300s", out ? out : "");
    LOMO_FREE(out); LOMO_FREE(want);
    /* train on chat data: the eval loss (assistant tokens only) goes down; the cut examples are reported */
    snprintf(cmd, sizeof cmd, "%s --model %s --data " REF "conversations.jsonl --eval-data " REF "conversations.jsonl "
             "--seq-len 48 --batch 6 --steps 40 --lr 0.1 --log-every 40 --out %s > %s 2>&1", bin, dir,
             tu_path("cli_out"), tu_path("train.log"));
    CHECK(system(cmd) == 0, "%s", cmd);
    lomo__read_file(tu_path("train.log"), &out, &n_out);
    {
        const char *p = out ? strstr(out, "eval after 40 steps: loss ") : NULL, *q = out ? strstr(out, "examples cut") : NULL;
        double after = 0, before = 0;
        int got = p && sscanf(p, "eval after 40 steps: loss %lf (was %lf)", &after, &before) == 2;
        CHECK(got && after < 0.8 * before, "training on chat data: loss %g -> %g\n%s", before, after, out ? out : "");
        CHECK(q && strstr(out, "chat template llama3") && !strstr(out, "data: 0 examples cut"),
              "the run reports the examples cut and the template:\n%s", out ? out : "");
        if (tu_verbose && out) printf("%s", out);
    }
    LOMO_FREE(out);
    /* refusals: no template to be found; a mixed file */
    remove(tu_path("cli_model/tokenizer_config.json"));
    snprintf(cmd, sizeof cmd, "%s --model %s --data " REF "conversations.jsonl --steps 1 --out %s > %s 2>&1", bin, dir,
             tu_path("cli_out"), tu_path("err.log"));
    CHECK(system(cmd) != 0, "no template: must fail");
    lomo__read_file(tu_path("err.log"), &out, &n_out);
    CHECK(out && strstr(out, "conversations.jsonl:1: {\"messages\"} lines need a chat template") &&
          strstr(out, "--chat-template") && strstr(out, "tokenizer_config.json: cannot open"),
          "no template: %s", out ? out : "");
    LOMO_FREE(out);
    write_text("cli_mix.jsonl", "{\"text\": \"a\"}\n{\"prompt\": \"b\", \"completion\": \"c\"}\n");
    snprintf(cmd, sizeof cmd, "%s --model %s --data %s --steps 1 --out %s > %s 2>&1", bin, dir,
             tu_path("cli_mix.jsonl"), tu_path("cli_out"), tu_path("err.log"));
    CHECK(system(cmd) != 0, "mixed formats: must fail");
    lomo__read_file(tu_path("err.log"), &out, &n_out);
    CHECK(out && strstr(out, "cli_mix.jsonl:2: this line is {\"prompt\", \"completion\"} but line 1 is {\"text\"}"),
          "mixed: %s", out ? out : "");
    LOMO_FREE(out);
}
#endif

int main(int argc, char **argv) {
    tu_verbose = argc > 1 && !strcmp(argv[1], "-v");
    if (tu_scratch("build/tmp_chat")) return 2;
    test_render();
    test_detect();
#ifndef LOMO_NO_TOKENIZER
    test_chat_data();
    test_cross();
    test_text_formats();
    test_cli();
#endif
    return tu_done("test_chat");
}
