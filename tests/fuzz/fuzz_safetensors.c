/* libFuzzer: the safetensors parser (interop/safetensors.c), from memory; every tensor is read. */
#include <string.h>

#include "interop/safetensors.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) abort();
    memcpy(buf, data, n);
    tg_st_file f;
    memset(&f, 0, sizeof f);
    tg_error err = {0};
    if (tg_st_file_parse(&f, buf, n, "fuzz", &err) == TG_OK) {
        for (int i = 0; i < f.n; i++) {
            const tg_st_tensor *t = &f.tensors[i];
            if (t->numel > (1 << 20)) continue;
            float *out = malloc((size_t)(t->numel ? t->numel : 1) * sizeof(float));
            if (!out) abort();
            tg_st_tensor_read_f32(&f, t, out);
            free(out);
        }
    }
    tg_st_file_free(&f);
    return 0;
}
