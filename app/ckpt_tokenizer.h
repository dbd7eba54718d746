/* app/ckpt_tokenizer.h — the tokenizer for a checkpoint's model, as `sample` and `eval` load it. */
#ifndef TG_APP_CKPT_TOKENIZER_H
#define TG_APP_CKPT_TOKENIZER_H

#include "ckpt/ckpt.h"
#include "core/log.h"
#include "data/tokenizer.h"

/* Loads tok_path, or (NULL) the file the checkpoint records; `file` names the checkpoint in
 * messages. A checkpoint that records none (an imported one) asks for --tokenizer; a tokenizer
 * with more tokens than the model's vocabulary is TG_ERR_DATA; one whose hash differs from the
 * recorded one is loaded with a warning through lg. */
tg_status tg_app_ckpt_tokenizer(const tg_ckpt_state *ck, const char *file, const char *tok_path, const tg_log *lg,
                                tg_tokenizer **out, tg_error *err);

#endif
