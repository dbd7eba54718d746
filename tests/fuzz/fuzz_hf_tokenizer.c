/* libFuzzer: the Hugging Face tokenizer.json import (interop/hf_tokenizer.c). */
#include "fuzz_util.h"
#include "interop/hf_tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    const char *path = tg_fuzz_to_file(data, n, "json");
    char out[600];
    snprintf(out, sizeof out, "%s.tiktoken", path);
    tg_error err = {0};
    (void)tg_hf_tokenizer_import(path, NULL, NULL, out, &err);
    unlink(out);
    unlink(path);
    return 0;
}
