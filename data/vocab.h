/* data/vocab.h — internal to data/: the vocabulary map and the GPT-2 pre-split shared by the
 * tokenizer (tokenizer.c) and the BPE trainer (bpe_train.c). Not part of the public API. */
#ifndef TG_DATA_VOCAB_H
#define TG_DATA_VOCAB_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/status.h"

struct pcre2_real_code_8;

/* Inline: it is the encoder's hot path (the piece cache) as well as the map's. */
static inline uint64_t tg_bytes_hash(const uint8_t *p, size_t n) {
    /* 8 bytes at a time, multiply-xorshift mixing: tokens are short, this is the hot path. */
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
        p += 8;
        n -= 8;
    }
    if (n) {
        uint64_t w = 0;
        memcpy(&w, p, n);
        h = (h ^ w) * 0x94d049bb133111ebull;
    }
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 32);
}

/* Open addressing; slots hold id+1 (0 = empty) and a tag (high hash bits) that spares most
 * byte comparisons; keys are the tokens' bytes in a shared arena. */
typedef struct {
    uint32_t *slots;
    uint32_t *tags;
    size_t mask;
    const uint8_t *const *arena; /* points at the owner's arena pointer (it may move) */
    const uint64_t *off;         /* per id: offset in arena */
    const uint32_t *len;         /* per id: length */
} tg_bytes_map;

/* A vocabulary: id -> bytes and bytes -> id. */
typedef struct {
    uint8_t *arena;
    size_t arena_n, arena_cap;
    uint64_t *off;
    uint32_t *len;
    size_t n, cap;
    tg_bytes_map map;
} tg_vocab;

/* Calls fn(ctx, piece, len) for every pre-split piece of text, covering every byte in order:
 * regex matches, and the runs of invalid UTF-8 between them. */
typedef tg_status (*tg_piece_fn)(void *ctx, const uint8_t *p, size_t n, tg_error *err);

/* Frees v's memory and zeroes it (a zeroed tg_vocab is empty and valid). */
void tg_vocab_free(tg_vocab *v);
/* Appends a token (id = v->n). Does not check for duplicates (callers do). */
tg_status tg_vocab_add(tg_vocab *v, const uint8_t *p, size_t n, tg_error *err);
/* Id of the token with bytes p[0..n), or -1. m must have been built (m->slots != NULL). */
int64_t tg_bytes_map_get(const tg_bytes_map *m, const uint8_t *p, size_t n);
/* Canonical rank-file text of a vocabulary ("<base64> <rank>\n" per id; malloc'd into *out). */
tg_status tg_vocab_serialize(const tg_vocab *v, char **out, size_t *out_n, tg_error *err);
/* Decodes n base64 characters into out (room for 3*n/4 bytes); the length, or -1 if invalid. */
long tg_b64_decode(const char *s, size_t n, uint8_t *out);

/* Compiles GPT-2's pre-split pattern (PCRE2, JIT where available). */
tg_status tg_pretok_compile(struct pcre2_real_code_8 **out, tg_error *err);
tg_status tg_pretok_each(const struct pcre2_real_code_8 *re, const uint8_t *text, size_t n,
                         tg_piece_fn fn, void *ctx, tg_error *err);

#endif
