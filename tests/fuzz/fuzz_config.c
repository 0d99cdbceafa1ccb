/* config.json: the parser and validation; when it is accepted, lomo's save
   with the input kept (each dtype), which must read back as the same config. */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lomo__json j;
    lomo__cfgp c;
    lomo_config cfg, back;
    int rc;
    if (lomo__json_parse(&j, (const char *)data, size, "config.json")) return 0;
    c.j = &j; c.path = "config.json"; c.obj = 0;
    rc = lomo__config_parse(&c, &cfg);
    lomo__json_free(&j);
    if (rc) return 0;
    cfg.dtype = (lomo_dtype)(size % 3);
    if (lomo__config_save_keep(fz_path("config.json"), &cfg, (const char *)data, size)) return 0;
    if (lomo__config_load(fz_path("config.json"), &back) || !lomo__config_same(&back, &cfg)) abort();
    return 0;
}
