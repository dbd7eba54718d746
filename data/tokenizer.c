/* data/tokenizer.c — see tokenizer.h. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "data/tokenizer.h"

#include <errno.h>
#include <limits.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"

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

/* ---------------------------------------------------------------- base64 */

static const char b64_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_val(int c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Decodes s[0..n) into out (capacity >= 3*n/4+3); returns the length or -1 if invalid. */
static long b64_decode(const char *s, size_t n, uint8_t *out) {
    if (n % 4 != 0 || n == 0) return -1;
    long o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4], pad = 0;
        for (int k = 0; k < 4; k++) {
            if (s[i + k] == '=' && i + 4 == n && k >= 2) {
                v[k] = 0;
                pad++;
            } else {
                if (pad) return -1;
                v[k] = b64_val((unsigned char)s[i + k]);
                if (v[k] < 0) return -1;
            }
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[o++] = (uint8_t)(w >> 16);
        if (pad < 2) out[o++] = (uint8_t)(w >> 8);
        if (pad < 1) out[o++] = (uint8_t)w;
    }
    return o;
}

/* Appends base64 of p[0..n) to s (capacity checked by caller: 4*((n+2)/3)). */
static size_t b64_encode(const uint8_t *p, size_t n, char *s) {
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t w = (uint32_t)p[i] << 16;
        if (i + 1 < n) w |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n) w |= p[i + 2];
        s[o++] = b64_chars[(w >> 18) & 63];
        s[o++] = b64_chars[(w >> 12) & 63];
        s[o++] = i + 1 < n ? b64_chars[(w >> 6) & 63] : '=';
        s[o++] = i + 2 < n ? b64_chars[w & 63] : '=';
    }
    return o;
}

/* ---------------------------------------------------------------- byte-string -> id map */

static uint64_t hash_bytes(const uint8_t *p, size_t n) {
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
} bytes_map;

static int64_t bmap_get(const bytes_map *m, const uint8_t *p, size_t n) {
    uint64_t h = hash_bytes(p, n);
    uint32_t tag = (uint32_t)(h >> 32);
    size_t i = h & m->mask;
    for (;;) {
        uint32_t s = m->slots[i];
        if (!s) return -1;
        uint32_t id = s - 1;
        if (m->tags[i] == tag && m->len[id] == n && memcmp(*m->arena + m->off[id], p, n) == 0)
            return id;
        i = (i + 1) & m->mask;
    }
}

/* Inserts id (its bytes already in the arena); the table must have room (load <= 1/2). */
static void bmap_put(bytes_map *m, uint32_t id) {
    uint64_t h = hash_bytes(*m->arena + m->off[id], m->len[id]);
    size_t i = h & m->mask;
    while (m->slots[i]) i = (i + 1) & m->mask;
    m->slots[i] = id + 1;
    m->tags[i] = (uint32_t)(h >> 32);
}

/* A vocabulary: id -> bytes and bytes -> id. */
typedef struct {
    uint8_t *arena;
    size_t arena_n, arena_cap;
    uint64_t *off;
    uint32_t *len;
    size_t n, cap;
    bytes_map map;
} vocab;

static void vocab_free(vocab *v) {
    free(v->arena);
    free(v->off);
    free(v->len);
    free(v->map.slots);
    free(v->map.tags);
    memset(v, 0, sizeof *v);
}

static tg_status vocab_rehash(vocab *v, size_t slots, tg_error *err) {
    uint32_t *s = calloc(slots, sizeof *s), *t = calloc(slots, sizeof *t);
    if (!s || !t) {
        free(s);
        free(t);
        return tg_error_set(err, TG_ERR_NOMEM, "out of memory (vocab map)");
    }
    free(v->map.slots);
    free(v->map.tags);
    v->map.slots = s;
    v->map.tags = t;
    v->map.mask = slots - 1;
    v->map.arena = (const uint8_t *const *)&v->arena;
    v->map.off = v->off;
    v->map.len = v->len;
    for (size_t i = 0; i < v->n; i++) bmap_put(&v->map, (uint32_t)i);
    return TG_OK;
}

/* Appends a token (id = v->n). Does not check for duplicates (callers do). */
static tg_status vocab_add(vocab *v, const uint8_t *p, size_t n, tg_error *err) {
    tg_status st = TG_OK;
    if (v->n == v->cap) {
        size_t c = v->cap ? v->cap * 2 : 1024;
        uint64_t *o = realloc(v->off, c * sizeof *o);
        if (o) v->off = o;
        uint32_t *l = realloc(v->len, c * sizeof *l);
        if (l) v->len = l;
        if (!o || !l) return tg_error_set(err, TG_ERR_NOMEM, "out of memory (vocab)");
        v->cap = c;
    }
    if (v->arena_n + n > v->arena_cap) {
        size_t c = v->arena_cap ? v->arena_cap : 65536;
        while (c < v->arena_n + n) c *= 2;
        uint8_t *a = realloc(v->arena, c);
        if (!a) return tg_error_set(err, TG_ERR_NOMEM, "out of memory (vocab bytes)");
        v->arena = a;
        v->arena_cap = c;
    }
    memcpy(v->arena + v->arena_n, p, n);
    v->off[v->n] = v->arena_n;
    v->len[v->n] = (uint32_t)n;
    v->arena_n += n;
    v->n++;
    if (v->n * 2 > v->map.mask + 1 || !v->map.slots) {
        size_t slots = 2048;
        while (slots < v->n * 4) slots *= 2;
        TG_TRY(vocab_rehash(v, slots, err));
    } else {
        v->map.off = v->off; /* the arrays may have moved */
        v->map.len = v->len;
        bmap_put(&v->map, (uint32_t)(v->n - 1));
    }
cleanup:
    return st;
}

/* ---------------------------------------------------------------- pre-split */

static const char *GPT2_PATTERN =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static tg_status pretok_compile(pcre2_code **out, tg_error *err) {
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

/* Calls fn(ctx, piece, len) for every pre-split piece of text, covering every byte in order:
 * regex matches, and the runs of invalid UTF-8 between them. */
typedef tg_status (*piece_fn)(void *ctx, const uint8_t *p, size_t n, tg_error *err);

static tg_status pretok_each(const pcre2_code *re, const uint8_t *text, size_t n, piece_fn fn,
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
    vocab v;
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
    vocab_free(&t->v);
    pcre2_code_free(t->re);
    free(t->pair_id);
    free(t);
}

/* Canonical rank-file text of a vocabulary (malloc'd). */
static tg_status vocab_serialize(const vocab *v, char **out, size_t *out_n, tg_error *err) {
    size_t cap = 0;
    for (size_t i = 0; i < v->n; i++) cap += 4 * ((v->len[i] + 2) / 3) + 24;
    char *s = malloc(cap + 1);
    if (!s) return tg_error_set(err, TG_ERR_NOMEM, "out of memory (rank file)");
    size_t o = 0;
    for (size_t i = 0; i < v->n; i++) {
        o += b64_encode(v->arena + v->off[i], v->len[i], s + o);
        o += (size_t)snprintf(s + o, cap + 1 - o, " %zu\n", i);
    }
    *out = s;
    *out_n = o;
    return TG_OK;
}

tg_status tg_tokenizer_load(tg_tokenizer **out, const char *path, tg_error *err) {
    tg_status st = TG_OK;
    uint8_t *text = NULL, *tok = NULL;
    int64_t *rank_of_line = NULL;
    uint32_t *line_of_rank = NULL;
    char *canon = NULL;
    vocab lines = {0};
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
            long tl = b64_decode((const char *)text + p, sp - p, tok);
            if (tl <= 0) TG_FAIL(err, TG_ERR_FORMAT, "%s:%zu: invalid base64 token", path, lineno);
            char *endp = NULL;
            errno = 0;
            long long r = strtoll((const char *)text + sp + 1, &endp, 10);
            if (errno || endp != (char *)text + le || r < 0 || r > INT32_MAX - 1)
                TG_FAIL(err, TG_ERR_FORMAT, "%s:%zu: invalid rank", path, lineno);
            if (lines.map.slots && bmap_get(&lines.map, tok, (size_t)tl) >= 0)
                TG_FAIL(err, TG_ERR_FORMAT, "%s:%zu: duplicate token", path, lineno);
            TG_TRY(vocab_add(&lines, tok, (size_t)tl, err));
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
        TG_TRY(vocab_add(&t->v, lines.arena + lines.off[i], lines.len[i], err));
    }
    for (int b = 0; b < 256; b++) {
        uint8_t c = (uint8_t)b;
        if (bmap_get(&t->v.map, &c, 1) < 0)
            TG_FAIL(err, TG_ERR_FORMAT, "%s: byte 0x%02x has no token (a rank file must contain all 256 single bytes)", path, b);
    }
    if (n_lines > (size_t)INT32_MAX - 1) TG_FAIL(err, TG_ERR_FORMAT, "%s: too many tokens", path);
    t->eot = (int)n_lines;
    for (int b = 0; b < 256; b++) {
        uint8_t c = (uint8_t)b;
        t->byte_id[b] = (uint32_t)bmap_get(&t->v.map, &c, 1);
    }
    t->pair_id = malloc(65536 * sizeof *t->pair_id);
    TG_CHECK_ALLOC(err, t->pair_id);
    for (int k = 0; k < 65536; k++) {
        uint8_t c[2] = {(uint8_t)(k >> 8), (uint8_t)k};
        t->pair_id[k] = (int32_t)bmap_get(&t->v.map, c, 2);
    }
    size_t canon_n = 0;
    TG_TRY(vocab_serialize(&t->v, &canon, &canon_n, err));
    tg_sha256_hex(canon, canon_n, t->hash);
    const char *base = strrchr(path, '/');
    snprintf(t->name, sizeof t->name, "%s", base ? base + 1 : path);
    TG_TRY(pretok_compile(&t->re, err));
    *out = t;
    t = NULL;
cleanup:
    tg_tokenizer_free(t);
    vocab_free(&lines);
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
    const bytes_map *m = &t->v.map;
    tg_status st = TG_OK;
    if (n == 1) return tg_tokens_push(out, t->byte_id[p[0]], err);
    int64_t whole = bmap_get(m, p, n);
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
        if (best + 1 < k) r[best] = bmap_get(m, p + b[best], b[best + 2] - b[best]);
        else r[best] = -1;
        if (best > 0) r[best - 1] = bmap_get(m, p + b[best - 1], b[best + 1] - b[best - 1]);
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
    cache_slot *s = &c->cache->slots[hash_bytes(p, n) & (CACHE_SLOTS - 1)];
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
    return pretok_each(t->re, text, n, encode_piece, &c, err);
}

tg_status tg_tokenizer_encode_cached(const tg_tokenizer *t, tg_encode_cache *cache,
                                     const uint8_t *text, size_t n, tg_tokens *out, tg_error *err) {
    encode_ctx c = {t, cache && cache->t == t ? cache : NULL, out};
    return pretok_each(t->re, text, n, encode_piece, &c, err);
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

/* ---------------------------------------------------------------- BPE training */

struct tg_bpe_trainer {
    pcre2_code *re;
    vocab pieces;    /* unique pre-split pieces */
    int64_t *counts; /* per piece */
    size_t counts_cap;
    tg_bpe_progress_fn progress; /* may be NULL */
    void *progress_ctx;
};

void tg_bpe_trainer_set_progress(tg_bpe_trainer *tr, tg_bpe_progress_fn fn, void *ctx) {
    tr->progress = fn;
    tr->progress_ctx = ctx;
}

tg_status tg_bpe_trainer_init(tg_bpe_trainer **out, tg_error *err) {
    tg_status st = TG_OK;
    tg_bpe_trainer *tr = calloc(1, sizeof *tr);
    TG_CHECK_ALLOC(err, tr);
    TG_TRY(pretok_compile(&tr->re, err));
    *out = tr;
    tr = NULL;
cleanup:
    tg_bpe_trainer_free(tr);
    return st;
}

void tg_bpe_trainer_free(tg_bpe_trainer *tr) {
    if (!tr) return;
    pcre2_code_free(tr->re);
    vocab_free(&tr->pieces);
    free(tr->counts);
    free(tr);
}

static tg_status count_piece(void *ctx, const uint8_t *p, size_t n, tg_error *err) {
    tg_bpe_trainer *tr = ctx;
    int64_t id = tr->pieces.map.slots ? bmap_get(&tr->pieces.map, p, n) : -1;
    if (id < 0) {
        tg_status st = vocab_add(&tr->pieces, p, n, err);
        if (st != TG_OK) return st;
        id = (int64_t)tr->pieces.n - 1;
        if (tr->pieces.n > tr->counts_cap) {
            size_t c = tr->counts_cap ? tr->counts_cap * 2 : 4096;
            int64_t *cc = realloc(tr->counts, c * sizeof *cc);
            if (!cc) return tg_error_set(err, TG_ERR_NOMEM, "out of memory (piece counts)");
            tr->counts = cc;
            tr->counts_cap = c;
        }
        tr->counts[id] = 0;
    }
    tr->counts[id]++;
    return TG_OK;
}

tg_status tg_bpe_trainer_add(tg_bpe_trainer *tr, const uint8_t *text, size_t n, tg_error *err) {
    return pretok_each(tr->re, text, n, count_piece, tr, err);
}

/* Pair statistics: (a, b) -> count and the words it occurs in (may hold stale entries). */
typedef struct {
    uint64_t key;
    int64_t count;
    int32_t *words;
    uint32_t n_words, cap_words;
    uint32_t stamp; /* last merge in which it was queued for the heap */
} pair_rec;

typedef struct {
    int64_t count;
    uint32_t a, b;
} heap_ent;

typedef struct {
    pair_rec *recs;
    size_t n, cap;
    uint32_t *slots; /* rec index + 1 */
    size_t mask;
    heap_ent *heap;
    size_t heap_n, heap_cap;
    uint32_t *dirty;
    size_t dirty_n, dirty_cap;
    uint32_t stamp;
} pair_table;

static uint64_t pair_key(uint32_t a, uint32_t b) { return (uint64_t)a << 32 | b; }
static size_t pair_hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return (size_t)k;
}

static void pairs_free(pair_table *pt) {
    for (size_t i = 0; i < pt->n; i++) free(pt->recs[i].words);
    free(pt->recs);
    free(pt->slots);
    free(pt->heap);
    free(pt->dirty);
}

static tg_status pairs_find(pair_table *pt, uint32_t a, uint32_t b, pair_rec **out, tg_error *err) {
    uint64_t k = pair_key(a, b);
    if (!pt->slots || (pt->n + 1) * 2 > pt->mask + 1) {
        size_t ns = pt->slots ? (pt->mask + 1) * 2 : 1 << 16;
        uint32_t *s = calloc(ns, sizeof *s);
        if (!s) return tg_error_set(err, TG_ERR_NOMEM, "out of memory (pair table)");
        free(pt->slots);
        pt->slots = s;
        pt->mask = ns - 1;
        for (size_t i = 0; i < pt->n; i++) {
            size_t j = pair_hash(pt->recs[i].key) & pt->mask;
            while (pt->slots[j]) j = (j + 1) & pt->mask;
            pt->slots[j] = (uint32_t)i + 1;
        }
    }
    size_t j = pair_hash(k) & pt->mask;
    while (pt->slots[j]) {
        pair_rec *r = &pt->recs[pt->slots[j] - 1];
        if (r->key == k) {
            *out = r;
            return TG_OK;
        }
        j = (j + 1) & pt->mask;
    }
    if (pt->n == pt->cap) {
        size_t c = pt->cap ? pt->cap * 2 : 1 << 15;
        pair_rec *r = realloc(pt->recs, c * sizeof *r);
        if (!r) return tg_error_set(err, TG_ERR_NOMEM, "out of memory (pairs)");
        pt->recs = r;
        pt->cap = c;
    }
    pair_rec *r = &pt->recs[pt->n];
    memset(r, 0, sizeof *r);
    r->key = k;
    pt->slots[j] = (uint32_t)pt->n + 1;
    pt->n++;
    *out = r;
    return TG_OK;
}

/* Adds delta to (a, b)'s count, records word w (if >= 0) and queues the pair for the heap. */
static tg_status pairs_add(pair_table *pt, uint32_t a, uint32_t b, int64_t delta, int32_t w,
                           tg_error *err) {
    pair_rec *r = NULL;
    tg_status st = pairs_find(pt, a, b, &r, err);
    if (st != TG_OK) return st;
    r->count += delta;
    if (w >= 0 && (r->n_words == 0 || r->words[r->n_words - 1] != w)) {
        if (r->n_words == r->cap_words) {
            uint32_t c = r->cap_words ? r->cap_words * 2 : 4;
            int32_t *ws = realloc(r->words, c * sizeof *ws);
            if (!ws) return tg_error_set(err, TG_ERR_NOMEM, "out of memory (pair words)");
            r->words = ws;
            r->cap_words = c;
        }
        r->words[r->n_words++] = w;
    }
    if (r->stamp != pt->stamp) {
        r->stamp = pt->stamp;
        if (pt->dirty_n == pt->dirty_cap) {
            size_t c = pt->dirty_cap ? pt->dirty_cap * 2 : 1024;
            uint32_t *d = realloc(pt->dirty, c * sizeof *d);
            if (!d) return tg_error_set(err, TG_ERR_NOMEM, "out of memory (dirty pairs)");
            pt->dirty = d;
            pt->dirty_cap = c;
        }
        pt->dirty[pt->dirty_n++] = (uint32_t)(r - pt->recs);
    }
    return TG_OK;
}

/* Heap order: higher count first; ties: smaller a, then smaller b. */
static int heap_before(const heap_ent *x, const heap_ent *y) {
    if (x->count != y->count) return x->count > y->count;
    if (x->a != y->a) return x->a < y->a;
    return x->b < y->b;
}

static tg_status heap_push(pair_table *pt, heap_ent e, tg_error *err) {
    if (pt->heap_n == pt->heap_cap) {
        size_t c = pt->heap_cap ? pt->heap_cap * 2 : 1 << 15;
        heap_ent *h = realloc(pt->heap, c * sizeof *h);
        if (!h) return tg_error_set(err, TG_ERR_NOMEM, "out of memory (pair heap)");
        pt->heap = h;
        pt->heap_cap = c;
    }
    size_t i = pt->heap_n++;
    while (i > 0 && heap_before(&e, &pt->heap[(i - 1) / 2])) {
        pt->heap[i] = pt->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    pt->heap[i] = e;
    return TG_OK;
}

static heap_ent heap_pop(pair_table *pt) {
    heap_ent top = pt->heap[0], last = pt->heap[--pt->heap_n];
    size_t i = 0, n = pt->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap_before(&pt->heap[c + 1], &pt->heap[c])) c++;
        if (!heap_before(&pt->heap[c], &last)) break;
        pt->heap[i] = pt->heap[c];
        i = c;
    }
    if (n > 0) pt->heap[i] = last;
    return top;
}

static tg_status flush_dirty(pair_table *pt, tg_error *err) {
    tg_status st = TG_OK;
    for (size_t i = 0; i < pt->dirty_n; i++) {
        pair_rec *r = &pt->recs[pt->dirty[i]];
        if (r->count > 0)
            TG_TRY(heap_push(pt, (heap_ent){r->count, (uint32_t)(r->key >> 32), (uint32_t)r->key}, err));
    }
    pt->dirty_n = 0;
    pt->stamp++;
cleanup:
    return st;
}

tg_status tg_bpe_trainer_save(tg_bpe_trainer *tr, int vocab_size, const char *path,
                              const tg_log *lg, int *n_merges, tg_error *err) {
    tg_status st = TG_OK;
    vocab tv = {0};
    pair_table pt = {0};
    uint32_t *syms = NULL, *wstamp = NULL;
    size_t *woff = NULL, *wlen = NULL;
    uint8_t *buf = NULL;
    char *text = NULL;
    FILE *f = NULL;
    int merges = 0;
    if (vocab_size < 257)
        TG_FAIL(err, TG_ERR_ARG, "vocab size %d is too small (at least 257: 256 bytes + eot)", vocab_size);
    size_t target = (size_t)vocab_size - 1;
    for (int c = 0; c < 256; c++) {
        uint8_t b = (uint8_t)c;
        TG_TRY(vocab_add(&tv, &b, 1, err));
    }
    /* Words = unique pieces as symbol sequences, weighted by their counts. */
    size_t W = tr->pieces.n, total = tr->pieces.arena_n;
    syms = malloc((total + 1) * sizeof *syms);
    woff = malloc((W + 1) * sizeof *woff);
    wlen = malloc((W + 1) * sizeof *wlen);
    wstamp = calloc(W + 1, sizeof *wstamp);
    TG_CHECK_ALLOC(err, syms);
    TG_CHECK_ALLOC(err, woff);
    TG_CHECK_ALLOC(err, wlen);
    TG_CHECK_ALLOC(err, wstamp);
    pt.stamp = 1;
    for (size_t w = 0; w < W; w++) {
        woff[w] = tr->pieces.off[w];
        wlen[w] = tr->pieces.len[w];
        const uint8_t *p = tr->pieces.arena + woff[w];
        for (size_t i = 0; i < wlen[w]; i++) syms[woff[w] + i] = p[i];
        for (size_t i = 0; i + 1 < wlen[w]; i++)
            TG_TRY(pairs_add(&pt, p[i], p[i + 1], tr->counts[w], (int32_t)w, err));
    }
    TG_TRY(flush_dirty(&pt, err));
    while (tv.n < target) {
        if (tr->progress) tr->progress(tr->progress_ctx, (int)(tv.n - 256), (int)(target - 256));
        if (pt.heap_n == 0) {
            tg_log_warn(lg, "BPE training: no pair left to merge after %d merges (vocab %zu < %zu requested)",
                        merges, tv.n + 1, target + 1);
            break;
        }
        heap_ent e = heap_pop(&pt);
        pair_rec *r = NULL;
        TG_TRY(pairs_find(&pt, e.a, e.b, &r, err));
        if (r->count != e.count || r->count <= 0) continue; /* stale heap entry */
        /* The new token: bytes(a) + bytes(b), reusing an existing id with the same bytes. */
        size_t la = tv.len[e.a], lb = tv.len[e.b];
        uint8_t *nb = realloc(buf, la + lb);
        TG_CHECK_ALLOC(err, nb);
        buf = nb;
        memcpy(buf, tv.arena + tv.off[e.a], la);
        memcpy(buf + la, tv.arena + tv.off[e.b], lb);
        int64_t c = bmap_get(&tv.map, buf, la + lb);
        if (c < 0) {
            TG_TRY(vocab_add(&tv, buf, la + lb, err));
            c = (int64_t)tv.n - 1;
        }
        merges++;
        uint32_t a = e.a, b = e.b, cc = (uint32_t)c;
        int32_t *list = r->words; /* r's list is not appended to below (no new pair equals (a,b)) */
        uint32_t n_list = r->n_words;
        for (uint32_t li = 0; li < n_list; li++) {
            int32_t w = list[li];
            if (wstamp[w] == (uint32_t)merges) continue;
            wstamp[w] = (uint32_t)merges;
            uint32_t *s = syms + woff[w];
            size_t n = wlen[w];
            int found = 0;
            for (size_t i = 0; i + 1 < n; i++)
                if (s[i] == a && s[i + 1] == b) found = 1;
            if (!found) continue;
            int64_t wc = tr->counts[w];
            for (size_t i = 0; i + 1 < n; i++) TG_TRY(pairs_add(&pt, s[i], s[i + 1], -wc, -1, err));
            size_t o = 0;
            for (size_t i = 0; i < n;) {
                if (i + 1 < n && s[i] == a && s[i + 1] == b) {
                    s[o++] = cc;
                    i += 2;
                } else {
                    s[o++] = s[i++];
                }
            }
            wlen[w] = o;
            for (size_t i = 0; i + 1 < o; i++)
                TG_TRY(pairs_add(&pt, s[i], s[i + 1], wc, (s[i] == cc || s[i + 1] == cc) ? w : -1, err));
        }
        TG_TRY(flush_dirty(&pt, err));
    }
    size_t text_n = 0;
    TG_TRY(vocab_serialize(&tv, &text, &text_n, err));
    f = fopen(path, "wb");
    if (!f) TG_FAIL(err, TG_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    if (fwrite(text, 1, text_n, f) != text_n)
        TG_FAIL(err, TG_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    if (fclose(f) != 0) {
        f = NULL;
        TG_FAIL(err, TG_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    }
    f = NULL;
    if (n_merges) *n_merges = merges;
cleanup:
    if (f) fclose(f);
    vocab_free(&tv);
    pairs_free(&pt);
    free(syms);
    free(woff);
    free(wlen);
    free(wstamp);
    free(buf);
    free(text);
    return st;
}
