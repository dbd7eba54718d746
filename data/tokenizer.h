/* data/tokenizer.h — byte-level BPE as GPT-2 does it, with tiktoken rank files.
 *
 * Rank file ("tiktoken" format, e.g. GPT-2's r50k_base): one line per token,
 * `<base64 of the token's bytes> <rank>`, ranks 0..N-1, every single byte present. The rank is
 * the token id. Encoding pre-splits the text with GPT-2's pattern
 *     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * (PCRE2, Unicode classes) and then, inside each piece, repeatedly merges the adjacent pair whose
 * concatenation has the lowest rank (tiktoken's algorithm), so GPT-2's file gives GPT-2's ids.
 * Bytes that are not valid UTF-8 match no pattern item; each run of them is its own piece, so
 * encode/decode round-trips ANY byte string exactly.
 *
 * End of text: a rank file of N entries has eot_id = N and vocab_size = N + 1 (GPT-2: 50256 is
 * <|endoftext|>, vocab 50257). Encoding never produces eot; prepare inserts it before each
 * document. Decoding eot yields the text "<|endoftext|>".
 *
 * Content hash: SHA-256 (hex) of the canonical rank file (ranks in order, "b64 rank\n"), which is
 * byte-for-byte what tg_bpe_trainer_save writes and what tiktoken ships, so `sha256sum FILE`
 * gives the same string. The name is the file's base name. */
#ifndef TG_TOKENIZER_H
#define TG_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/log.h"
#include "core/status.h"

/* A growable id vector; zero-initialise, append with tg_tokens_push / encode, free. */
typedef struct {
    uint32_t *ids;
    size_t n, cap;
} tg_tokens;

tg_status tg_tokens_reserve(tg_tokens *v, size_t cap, tg_error *err);
tg_status tg_tokens_push(tg_tokens *v, uint32_t id, tg_error *err);
void tg_tokens_free(tg_tokens *v);

typedef struct tg_tokenizer tg_tokenizer;

/* Loads a rank file; errors name the file and line (bad base64, bad/duplicate rank, duplicate
 * token, missing single byte, empty file). */
tg_status tg_tokenizer_load(tg_tokenizer **out, const char *path, tg_error *err);
void tg_tokenizer_free(tg_tokenizer *t);

int tg_tokenizer_vocab_size(const tg_tokenizer *t); /* N + 1 */
int tg_tokenizer_eot_id(const tg_tokenizer *t);     /* N */
const char *tg_tokenizer_name(const tg_tokenizer *t);
const char *tg_tokenizer_hash(const tg_tokenizer *t); /* 64 hex chars */

/* Appends the ids of text[0..n) to out. Thread-safe: any number of threads may encode with one
 * tokenizer at once. */
tg_status tg_tokenizer_encode(const tg_tokenizer *t, const uint8_t *text, size_t n,
                              tg_tokens *out, tg_error *err);

/* A memo of recently encoded pieces for one thread (1.5 MB): tg_tokenizer_encode_cached gives
 * the same ids as tg_tokenizer_encode, faster on natural text. A cache belongs to one tokenizer
 * and must not be shared between threads. */
typedef struct tg_encode_cache tg_encode_cache;
tg_status tg_encode_cache_init(tg_encode_cache **out, const tg_tokenizer *t, tg_error *err);
void tg_encode_cache_free(tg_encode_cache *c);
tg_status tg_tokenizer_encode_cached(const tg_tokenizer *t, tg_encode_cache *cache,
                                     const uint8_t *text, size_t n, tg_tokens *out,
                                     tg_error *err);

/* The bytes of one token (not NUL-terminated); NULL if id >= vocab_size. */
const uint8_t *tg_tokenizer_piece(const tg_tokenizer *t, uint32_t id, size_t *len);

/* Decodes ids into a malloc'd buffer (*out, *out_len; a NUL follows for convenience).
 * TG_ERR_DATA for an id >= vocab_size. */
tg_status tg_tokenizer_decode(const tg_tokenizer *t, const uint32_t *ids, size_t n,
                              uint8_t **out, size_t *out_len, tg_error *err);

/* ---- training ----
 * Feed text with tg_bpe_trainer_add (pre-split and counted like encode does), then
 * tg_bpe_trainer_save learns merges until the vocabulary has vocab_size - 1 entries (plus eot =
 * vocab_size) and writes a rank file: ranks 0..255 are the single bytes 0..255, then one token
 * per merge in the order learned. Each step merges the most frequent adjacent pair; ties go to
 * the smaller (left id, right id). A merge whose bytes already exist as a token reuses it. */
typedef struct tg_bpe_trainer tg_bpe_trainer;

tg_status tg_bpe_trainer_init(tg_bpe_trainer **out, tg_error *err);
void tg_bpe_trainer_free(tg_bpe_trainer *tr);
tg_status tg_bpe_trainer_add(tg_bpe_trainer *tr, const uint8_t *text, size_t n, tg_error *err);
/* vocab_size >= 257. Stops early (with a warning) if no pair is left to merge. The number of
 * merges made is written to *n_merges (may be NULL). */
tg_status tg_bpe_trainer_save(tg_bpe_trainer *tr, int vocab_size, const char *path,
                              const tg_log *lg, int *n_merges, tg_error *err);

/* Called during tg_bpe_trainer_save after each merge (done of total), e.g. for a progress bar. */
typedef void (*tg_bpe_progress_fn)(void *ctx, int done, int total);
void tg_bpe_trainer_set_progress(tg_bpe_trainer *tr, tg_bpe_progress_fn fn, void *ctx);

/* SHA-256 of data as 64 hex chars + NUL (exposed for tests and shard metadata). */
void tg_sha256_hex(const void *data, size_t n, char out[65]);

#endif
