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



/* Imports a HF byte-level BPE tokenizer into a tiktoken rank file at out (crash-safely): from
 * tokenizer_json (model.type BPE, ByteLevel), or from vocab_json (+ merges_txt, checked: every
 * merge must join two tokens into a third). Ranks are the vocab ids, which must be 0..N-1 with
 * every single byte present; the end-of-text token (an added special token, or
 * "<|endoftext|>") must be id N, the one after the last rank. Other special tokens are refused. */
tg_status tg_hf_tokenizer_import(const char *tokenizer_json, const char *vocab_json, const char *merges_txt,
                                 const char *out, tg_error *err);
#endif
