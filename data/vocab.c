/* data/vocab.c — the vocabulary shared by the tokenizer and the BPE trainer: token bytes in one
 * arena, a hash map from bytes to id, and the canonical rank-file text (base64 + rank). */
#include "data/vocab.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
long tg_b64_decode(const char *s, size_t n, uint8_t *out) {
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



int64_t tg_bytes_map_get(const tg_bytes_map *m, const uint8_t *p, size_t n) {
    uint64_t h = tg_bytes_hash(p, n);
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
static void bytes_map_put(tg_bytes_map *m, uint32_t id) {
    uint64_t h = tg_bytes_hash(*m->arena + m->off[id], m->len[id]);
    size_t i = h & m->mask;
    while (m->slots[i]) i = (i + 1) & m->mask;
    m->slots[i] = id + 1;
    m->tags[i] = (uint32_t)(h >> 32);
}


void tg_vocab_free(tg_vocab *v) {
    free(v->arena);
    free(v->off);
    free(v->len);
    free(v->map.slots);
    free(v->map.tags);
    memset(v, 0, sizeof *v);
}

static tg_status vocab_rehash(tg_vocab *v, size_t slots, tg_error *err) {
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
    for (size_t i = 0; i < v->n; i++) bytes_map_put(&v->map, (uint32_t)i);
    return TG_OK;
}

/* Appends a token (id = v->n). Does not check for duplicates (callers do). */
tg_status tg_vocab_add(tg_vocab *v, const uint8_t *p, size_t n, tg_error *err) {
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
        bytes_map_put(&v->map, (uint32_t)(v->n - 1));
    }
cleanup:
    return st;
}

/* Canonical rank-file text of a vocabulary (malloc'd). */
tg_status tg_vocab_serialize(const tg_vocab *v, char **out, size_t *out_n, tg_error *err) {
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
