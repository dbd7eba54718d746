/* app/ckpt_tokenizer.c — see ckpt_tokenizer.h. */
#include "app/ckpt_tokenizer.h"

#include <string.h>

tg_status tg_app_ckpt_tokenizer(const tg_ckpt_state *ck, const char *file, const char *tok_path, const tg_log *lg,
                                tg_tokenizer **out, tg_error *err) {
    tg_status st = TG_OK;
    tg_tokenizer *tok = NULL;
    *out = NULL;
    if (!tok_path) tok_path = ck->tokenizer_path;
    if (!tok_path || !tok_path[0])
        TG_FAIL(err, TG_ERR_ARG, "%s records no tokenizer file; pass --tokenizer FILE", file);
    TG_TRY(tg_tokenizer_load(&tok, tok_path, err));
    if (ck->tokenizer_hash && ck->tokenizer_hash[0] && strcmp(ck->tokenizer_hash, tg_tokenizer_hash(tok)) != 0)
        tg_log_warn(lg, "tokenizer %s (hash %.12s...) is not the one the model was trained with (hash %.12s...)",
                    tok_path, tg_tokenizer_hash(tok), ck->tokenizer_hash);
    if (tg_tokenizer_vocab_size(tok) > ck->model_cfg.vocab_size)
        TG_FAIL(err, TG_ERR_DATA, "tokenizer %s has %d tokens but the model only %d", tok_path,
                tg_tokenizer_vocab_size(tok), ck->model_cfg.vocab_size);
    *out = tok;
    tok = NULL;
cleanup:
    tg_tokenizer_free(tok);
    return st;
}
