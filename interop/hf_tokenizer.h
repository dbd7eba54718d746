/* interop/hf_tokenizer.h — truthgpt's tokenizer (tiktoken ranks, data/tokenizer.h) as a Hugging
 * Face tokenizer.json: byte-level BPE, the GPT-2 pre-tokenizer, vocab id = rank, and the end of
 * text "<|endoftext|>" as the special token N. The merges are every split (a, b) of each token
 * into two tokens, ordered by the rank of a+b (then of a, b): HF's BPE applying merges by that
 * order reproduces tiktoken's "merge the pair whose concatenation ranks lowest". */
#ifndef TG_INTEROP_HF_TOKENIZER_H
#define TG_INTEROP_HF_TOKENIZER_H

#include "core/status.h"
#include "data/tokenizer.h"

/* Writes DIR/tokenizer.json and DIR/tokenizer_config.json (model_max_length = n_positions). */
tg_status tg_hf_tokenizer_write(const char *dir, const tg_tokenizer *t, int n_positions, tg_error *err);

#endif
