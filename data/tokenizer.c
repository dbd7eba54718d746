/* data/tokenizer.c — see tokenizer.h: loading a rank file, encoding and decoding (BPE training is
 * in bpe_train.c; the vocabulary map in vocab.c). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "data/tokenizer.h"

#include <errno.h>
#include <limits.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "data/vocab.h"

/* ---------------------------------------------------------------- id vectors */

tg_status tg_tokens_reserve(tg_tokens *v, size_t cap, tg_error *err) {
    if (cap <= v->cap) return TG_OK;
    size_t c = v->cap ? v->cap : 256;
    while (c < cap) c *= 2;
    uint32_t *p = realloc(v->ids, c * sizeof *p);
    if (!p) return tg_error_set(err, TG_ERR_NOMEM, "out of memory (%zu token ids)", c);
    v->ids = p;
    v->cap = c;
    return TG_OK;
}

tg_status tg_tokens_push(tg_tokens *v, uint32_t id, tg_error *err) {
    if (v->n == v->cap) {
        tg_status st = tg_tokens_reserve(v, v->n + 1, err);
        if (st != TG_OK) return st;
    }
    v->ids[v->n++] = id;
    return TG_OK;
}

void tg_tokens_free(tg_tokens *v) {
    free(v->ids);
    v->ids = NULL;
    v->n = v->cap = 0;
}

/* ---------------------------------------------------------------- SHA-256 */

static const uint32_t sha_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static uint32_t ror32(uint32_t x, int r) { return (x >> r) | (x << (32 - r)); }

static void sha256_block(uint32_t h[8], const uint8_t *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 |
               p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror32(w[i - 15], 7) ^ ror32(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror32(w[i - 2], 17) ^ ror32(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = hh + (ror32(e, 6) ^ ror32(e, 11) ^ ror32(e, 25)) + ((e & f) ^ (~e & g)) +
                      sha_k[i] + w[i];
        uint32_t t2 = (ror32(a, 2) ^ ror32(a, 13) ^ ror32(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        hh = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += hh;
}

void tg_sha256_hex(const void *data, size_t n, char out[65]) {
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                     0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    const uint8_t *p = data;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) sha256_block(h, p + i);
    uint8_t tail[128] = {0};
    size_t r = n - i;
    memcpy(tail, p + i, r);
    tail[r] = 0x80;
    size_t tl = r + 1 + 8 <= 64 ? 64 : 128;
    uint64_t bits = (uint64_t)n * 8;
    for (int k = 0; k < 8; k++) tail[tl - 1 - k] = (uint8_t)(bits >> (8 * k));
    sha256_block(h, tail);
    if (tl == 128) sha256_block(h, tail + 64);
    for (int k = 0; k < 8; k++) snprintf(out + 8 * k, 9, "%08x", h[k]);
}

/* ---------------------------------------------------------------- pre-split */

static const char *GPT2_PATTERN =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

tg_status tg_pretok_compile(pcre2_code **out, tg_error *err) {
    int ec = 0;
    PCRE2_SIZE eo = 0;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)GPT2_PATTERN, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &ec, &eo, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return tg_error_set(err, TG_ERR_INTERNAL, "PCRE2 compile failed at %zu: %s", (size_t)eo,
                            (const char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* optional speed-up; falls back to the interpreter */
    *out = re;
    return TG_OK;
}


tg_status tg_pretok_each(const pcre2_code *re, const uint8_t *text, size_t n, tg_piece_fn fn,
                             void *ctx, tg_error *err) {
    tg_status st = TG_OK;
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    TG_CHECK_ALLOC(err, md);
    size_t pos = 0;
    while (pos < n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)text, n, pos, 0, md, NULL);
        size_t ms, me;
        if (rc == PCRE2_ERROR_NOMATCH) {
            ms = me = n;
        } else if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            TG_FAIL(err, TG_ERR_INTERNAL, "PCRE2 match failed at byte %zu: %s", pos,
                    (const char *)msg);
        } else {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            ms = ov[0];
            me = ov[1];
            if (me <= ms) me = ms + 1; /* cannot happen with this pattern; never loop forever */
        }
        if (ms > pos) TG_TRY(fn(ctx, text + pos, ms - pos, err)); /* invalid UTF-8 run */
        if (me > ms && ms < n) TG_TRY(fn(ctx, text + ms, (me > n ? n : me) - ms, err));
        pos = me;
    }
cleanup:
    pcre2_match_data_free(md);
    return st;
}

/* ---------------------------------------------------------------- tokenizer */

struct tg_tokenizer {
    tg_vocab v;
    pcre2_code *re;
    int eot;
    uint32_t byte_id[256]; /* id of each single byte */
    int32_t *pair_id;      /* [65536]: id of each 2-byte token, or -1 (the hot first merges) */
    char name[256];
    char hash[65];
};

static const char EOT_TEXT[] = "<|endoftext|>";

int tg_tokenizer_vocab_size(const tg_tokenizer *t) { return t->eot + 1; }
int tg_tokenizer_eot_id(const tg_tokenizer *t) { return t->eot; }
const char *tg_tokenizer_name(const tg_tokenizer *t) { return t->name; }
const char *tg_tokenizer_hash(const tg_tokenizer *t) { return t->hash; }

void tg_tokenizer_free(tg_tokenizer *t) {
    if (!t) return;
    tg_vocab_free(&t->v);
    pcre2_code_free(t->re);
    free(t->pair_id);
    free(t);
}

tg_status tg_tokenizer_load(tg_tokenizer **out, const char *path, tg_error *err) {
    tg_status st = TG_OK;
    uint8_t *text = NULL, *tok = NULL;
    int64_t *rank_of_line = NULL;
    uint32_t *line_of_rank = NULL;
    char *canon = NULL;
    tg_vocab lines = {0};
    tg_tokenizer *t = calloc(1, sizeof *t);
    TG_CHECK_ALLOC(err, t);
    size_t n = 0;
    TG_TRY(tg_file_read(path, &text, &n, err));
    tok = malloc(n + 4);
    TG_CHECK_ALLOC(err, tok);
    /* Pass 1: parse lines in file order into a temporary vocab + their ranks. */
    size_t n_lines = 0, cap_lines = 0;
    size_t lineno = 0;
    for (size_t p = 0; p < n;) {
        size_t e = p;
        while (e < n && text[e] != '\n') e++;
        lineno++;
        size_t le = e;
        if (le > p && text[le - 1] == '\r') le--;
        if (le > p) {
            size_t sp = p;
            while (sp < le && text[sp] != ' ') sp++;
            if (sp == le)
                TG_FAIL(err, TG_ERR_FORMAT, "%s:%zu: expected '<base64> <rank>'", path, lineno);
            long tl = tg_b64_decode((const char *)text + p, sp - p, tok);
            if (tl <= 0) TG_FAIL(err, TG_ERR_FORMAT, "%s:%zu: invalid base64 token", path, lineno);
            char *endp = NULL;
            errno = 0;
            long long r = strtoll((const char *)text + sp + 1, &endp, 10);
            if (errno || endp != (char *)text + le || r < 0 || r > INT32_MAX - 1)
                TG_FAIL(err, TG_ERR_FORMAT, "%s:%zu: invalid rank", path, lineno);
            if (lines.map.slots && tg_bytes_map_get(&lines.map, tok, (size_t)tl) >= 0)
                TG_FAIL(err, TG_ERR_FORMAT, "%s:%zu: duplicate token", path, lineno);
            TG_TRY(tg_vocab_add(&lines, tok, (size_t)tl, err));
            if (n_lines == cap_lines) {
                cap_lines = cap_lines ? cap_lines * 2 : 1024;
                int64_t *r2 = realloc(rank_of_line, cap_lines * sizeof *r2);
                TG_CHECK_ALLOC(err, r2);
                rank_of_line = r2;
            }
            rank_of_line[n_lines++] = r;
        }
        p = e + 1;
    }
    if (n_lines == 0) TG_FAIL(err, TG_ERR_FORMAT, "%s: empty rank file", path);
    /* Ranks must be a permutation of 0..N-1: the rank is the id. */
    line_of_rank = malloc(n_lines * sizeof *line_of_rank);
    TG_CHECK_ALLOC(err, line_of_rank);
    memset(line_of_rank, 0xff, n_lines * sizeof *line_of_rank);
    for (size_t i = 0; i < n_lines; i++) {
        int64_t r = rank_of_line[i];
        if ((size_t)r >= n_lines)
            TG_FAIL(err, TG_ERR_FORMAT, "%s: rank %lld out of range (file has %zu tokens)", path,
                    (long long)r, n_lines);
        if (line_of_rank[r] != UINT32_MAX)
            TG_FAIL(err, TG_ERR_FORMAT, "%s: rank %lld appears twice", path, (long long)r);
        line_of_rank[r] = (uint32_t)i;
    }
    for (size_t r = 0; r < n_lines; r++) {
        uint32_t i = line_of_rank[r];
        TG_TRY(tg_vocab_add(&t->v, lines.arena + lines.off[i], lines.len[i], err));
    }
    for (int b = 0; b < 256; b++) {
        uint8_t c = (uint8_t)b;
        if (tg_bytes_map_get(&t->v.map, &c, 1) < 0)
            TG_FAIL(err, TG_ERR_FORMAT, "%s: byte 0x%02x has no token (a rank file must contain all 256 single bytes)", path, b);
    }
    if (n_lines > (size_t)INT32_MAX - 1) TG_FAIL(err, TG_ERR_FORMAT, "%s: too many tokens", path);
    t->eot = (int)n_lines;
    for (int b = 0; b < 256; b++) {
        uint8_t c = (uint8_t)b;
        t->byte_id[b] = (uint32_t)tg_bytes_map_get(&t->v.map, &c, 1);
    }
    t->pair_id = malloc(65536 * sizeof *t->pair_id);
    TG_CHECK_ALLOC(err, t->pair_id);
    for (int k = 0; k < 65536; k++) {
        uint8_t c[2] = {(uint8_t)(k >> 8), (uint8_t)k};
        t->pair_id[k] = (int32_t)tg_bytes_map_get(&t->v.map, c, 2);
    }
    size_t canon_n = 0;
    TG_TRY(tg_vocab_serialize(&t->v, &canon, &canon_n, err));
    tg_sha256_hex(canon, canon_n, t->hash);
    const char *base = strrchr(path, '/');
    snprintf(t->name, sizeof t->name, "%s", base ? base + 1 : path);
    TG_TRY(tg_pretok_compile(&t->re, err));
    *out = t;
    t = NULL;
cleanup:
    tg_tokenizer_free(t);
    tg_vocab_free(&lines);
    free(text);
    free(tok);
    free(rank_of_line);
    free(line_of_rank);
    free(canon);
    return st;
}

/* BPE inside one piece: repeatedly merge the adjacent pair with the lowest rank (tiktoken).
 * The merged part's id is that rank, so ids are tracked, not looked up again. */
static tg_status bpe_piece(const tg_tokenizer *t, const uint8_t *p, size_t n, tg_tokens *out,
                           tg_error *err) {
    const tg_bytes_map *m = &t->v.map;
    tg_status st = TG_OK;
    if (n == 1) return tg_tokens_push(out, t->byte_id[p[0]], err);
    int64_t whole = tg_bytes_map_get(m, p, n);
    if (whole >= 0) return tg_tokens_push(out, (uint32_t)whole, err);
    /* b[0..k] are part boundaries, id[i] the id of part i, r[i] the rank (= id) of parts i and
     * i+1 merged, or -1. */
    size_t stack_b[129];
    int64_t stack_r[129];
    uint32_t stack_id[129];
    size_t *b = stack_b;
    int64_t *r = stack_r;
    uint32_t *id = stack_id;
    if (n > 128) {
        b = malloc((n + 1) * sizeof *b);
        r = malloc((n + 1) * sizeof *r);
        id = malloc((n + 1) * sizeof *id);
        if (!b || !r || !id) {
            st = tg_error_set(err, TG_ERR_NOMEM, "out of memory (piece of %zu bytes)", n);
            goto cleanup;
        }
    }
    size_t k = n; /* number of parts */
    for (size_t i = 0; i <= n; i++) b[i] = i;
    for (size_t i = 0; i < n; i++) id[i] = t->byte_id[p[i]];
    for (size_t i = 0; i + 1 < k; i++) r[i] = t->pair_id[(size_t)p[i] << 8 | p[i + 1]];
    while (k > 1) {
        size_t best = SIZE_MAX;
        int64_t best_r = INT64_MAX;
        for (size_t i = 0; i + 1 < k; i++)
            if (r[i] >= 0 && r[i] < best_r) best_r = r[i], best = i;
        if (best == SIZE_MAX) break;
        /* merge parts best and best+1: drop boundary best+1 */
        id[best] = (uint32_t)best_r;
        memmove(b + best + 1, b + best + 2, (k - best - 1) * sizeof *b);
        memmove(id + best + 1, id + best + 2, (k - best - 2) * sizeof *id);
        memmove(r + best + 1, r + best + 2, (k > best + 3 ? k - best - 3 : 0) * sizeof *r);
        k--;
        if (best + 1 < k) r[best] = tg_bytes_map_get(m, p + b[best], b[best + 2] - b[best]);
        else r[best] = -1;
        if (best > 0) r[best - 1] = tg_bytes_map_get(m, p + b[best - 1], b[best + 1] - b[best - 1]);
    }
    TG_TRY(tg_tokens_reserve(out, out->n + k, err));
    memcpy(out->ids + out->n, id, k * sizeof *id);
    out->n += k;
cleanup:
    if (b != stack_b) free(b);
    if (r != stack_r) free(r);
    if (id != stack_id) free(id);
    return st;
}

/* ---- encode cache: piece bytes -> ids, for pieces of up to CACHE_MAX_BYTES ---- */

#define CACHE_MAX_BYTES 24
#define CACHE_MAX_IDS 12
#define CACHE_SLOTS (1u << 16) /* direct-mapped; a collision just replaces */

typedef struct {
    uint8_t len, n_ids;
    uint8_t bytes[CACHE_MAX_BYTES];
    uint32_t ids[CACHE_MAX_IDS];
} cache_slot;

struct tg_encode_cache {
    const tg_tokenizer *t;
    cache_slot *slots;
};

tg_status tg_encode_cache_init(tg_encode_cache **out, const tg_tokenizer *t, tg_error *err) {
    tg_encode_cache *c = calloc(1, sizeof *c);
    if (c) c->slots = calloc(CACHE_SLOTS, sizeof *c->slots);
    if (!c || !c->slots) {
        if (c) free(c);
        return tg_error_set(err, TG_ERR_NOMEM, "out of memory (encode cache)");
    }
    c->t = t;
    *out = c;
    return TG_OK;
}

void tg_encode_cache_free(tg_encode_cache *c) {
    if (!c) return;
    free(c->slots);
    free(c);
}

typedef struct {
    const tg_tokenizer *t;
    tg_encode_cache *cache;
    tg_tokens *out;
} encode_ctx;

static tg_status encode_piece(void *vctx, const uint8_t *p, size_t n, tg_error *err) {
    encode_ctx *c = vctx;
    if (!c->cache || n > CACHE_MAX_BYTES || n < 3) return bpe_piece(c->t, p, n, c->out, err);
    cache_slot *s = &c->cache->slots[tg_bytes_hash(p, n) & (CACHE_SLOTS - 1)];
    if (s->len == n && memcmp(s->bytes, p, n) == 0) {
        tg_status st = tg_tokens_reserve(c->out, c->out->n + s->n_ids, err);
        if (st != TG_OK) return st;
        memcpy(c->out->ids + c->out->n, s->ids, s->n_ids * sizeof *s->ids);
        c->out->n += s->n_ids;
        return TG_OK;
    }
    size_t before = c->out->n;
    tg_status st = bpe_piece(c->t, p, n, c->out, err);
    size_t k = c->out->n - before;
    if (st == TG_OK && k <= CACHE_MAX_IDS) {
        s->len = (uint8_t)n;
        s->n_ids = (uint8_t)k;
        memcpy(s->bytes, p, n);
        memcpy(s->ids, c->out->ids + before, k * sizeof *s->ids);
    }
    return st;
}

tg_status tg_tokenizer_encode(const tg_tokenizer *t, const uint8_t *text, size_t n,
                              tg_tokens *out, tg_error *err) {
    encode_ctx c = {t, NULL, out};
    return tg_pretok_each(t->re, text, n, encode_piece, &c, err);
}

tg_status tg_tokenizer_encode_cached(const tg_tokenizer *t, tg_encode_cache *cache,
                                     const uint8_t *text, size_t n, tg_tokens *out, tg_error *err) {
    encode_ctx c = {t, cache && cache->t == t ? cache : NULL, out};
    return tg_pretok_each(t->re, text, n, encode_piece, &c, err);
}

const uint8_t *tg_tokenizer_piece(const tg_tokenizer *t, uint32_t id, size_t *len) {
    if (id == (uint32_t)t->eot) {
        *len = sizeof EOT_TEXT - 1;
        return (const uint8_t *)EOT_TEXT;
    }
    if (id > (uint32_t)t->eot) {
        *len = 0;
        return NULL;
    }
    *len = t->v.len[id];
    return t->v.arena + t->v.off[id];
}

tg_status tg_tokenizer_decode(const tg_tokenizer *t, const uint32_t *ids, size_t n,
                              uint8_t **out, size_t *out_len, tg_error *err) {
    size_t total = 0, len = 0;
    for (size_t i = 0; i < n; i++) {
        if (!tg_tokenizer_piece(t, ids[i], &len))
            return tg_error_set(err, TG_ERR_DATA, "token id %u at position %zu >= vocab_size %d",
                                ids[i], i, t->eot + 1);
        total += len;
    }
    uint8_t *buf = malloc(total + 1);
    if (!buf) return tg_error_set(err, TG_ERR_NOMEM, "out of memory (decode %zu bytes)", total);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = tg_tokenizer_piece(t, ids[i], &len);
        memcpy(buf + o, p, len);
        o += len;
    }
    buf[o] = 0;
    *out = buf;
    *out_len = o;
    return TG_OK;
}
