/* libFuzzer: the tiktoken rank-file reader (tg_tokenizer_load); a loaded one encodes and decodes. */
#include "data/tokenizer.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    const char *path = tg_fuzz_to_file(data, n, "tiktoken");
    tg_tokenizer *t = NULL;
    tg_error err = {0};
    if (tg_tokenizer_load(&t, path, &err) == TG_OK) {
        static const uint8_t text[] = "Hello world, 123 <|endoftext|> \xc3\xa9\xff";
        tg_tokens ids = {0};
        if (tg_tokenizer_encode(t, text, sizeof text - 1, &ids, &err) == TG_OK) {
            uint8_t *s = NULL;
            size_t len = 0;
            if (tg_tokenizer_decode(t, ids.ids, ids.n, &s, &len, &err) == TG_OK) free(s);
        }
        tg_tokens_free(&ids);
        tg_tokenizer_free(t);
    }
    unlink(path);
    return 0;
}
