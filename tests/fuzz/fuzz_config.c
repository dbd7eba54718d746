/* libFuzzer: the INI config parser (train/config.c) on arbitrary text, then validation. */
#include "fuzz_util.h"
#include "train/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    const char *path = tg_fuzz_to_file(data, n, "ini");
    tg_config c;
    tg_config_defaults(&c);
    tg_error err = {0};
    if (tg_config_load_file(&c, path, &err) == TG_OK) {
        (void)tg_config_validate(&c, &err);
        char *s = tg_config_to_string(&c);
        free(s);
    }
    unlink(path);
    return 0;
}
