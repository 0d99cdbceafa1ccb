/* The JSON reader every other reader uses: parse, then walk every node with
   the accessors (decode, compare, integer, show, key lookup). */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lomo__json j;
    int i;
    char buf[256];
    int64_t v;
    if (lomo__json_parse(&j, (const char *)data, size, "fuzz.json")) return 0;
    for (i = 0; i < j.n; i++) {
        const lomo__jnode *nd = &j.nodes[i];
        lomo__json_show(&j, i, buf, sizeof buf);
        lomo__json_int(&j, i, &v);
        if (nd->type == LOMO__J_STR && lomo__json_str(&j, i, buf, sizeof buf) >= 0) {
            if (!lomo__json_streq(&j, i, buf)) abort();              /* a decoded string equals itself */
            if (lomo__json_keycmp(&j, i, i)) abort();
        }
        if (nd->type == LOMO__J_OBJ && nd->first >= 0) {
            int k = j.nodes[nd->first].key;
            if (lomo__json_str(&j, k, buf, sizeof buf) >= 0 && lomo__json_get(&j, i, buf) != nd->first) abort(); /* keys unique */
            lomo__json_get(&j, i, "model_type");
        }
    }
    if (lomo__json_dup_key(&j) != -1) abort();   /* parse refused duplicates already */
    lomo__json_free(&j);
    return 0;
}
