/* data/bpe_train.c — learning a byte-level BPE vocabulary (tg_bpe_trainer, see tokenizer.h):
 * count the pre-split pieces, then merge the most frequent adjacent pair until the vocabulary is
 * full, keeping pair counts incrementally in a hash table + lazy max-heap. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer.h"
#include "data/vocab.h"

/* ---------------------------------------------------------------- BPE training */

struct tg_bpe_trainer {
    pcre2_code *re;
    tg_vocab pieces;    /* unique pre-split pieces */
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
    TG_TRY(tg_pretok_compile(&tr->re, err));
    *out = tr;
    tr = NULL;
cleanup:
    tg_bpe_trainer_free(tr);
    return st;
}

void tg_bpe_trainer_free(tg_bpe_trainer *tr) {
    if (!tr) return;
    pcre2_code_free(tr->re);
    tg_vocab_free(&tr->pieces);
    free(tr->counts);
    free(tr);
}

static tg_status count_piece(void *ctx, const uint8_t *p, size_t n, tg_error *err) {
    tg_bpe_trainer *tr = ctx;
    int64_t id = tr->pieces.map.slots ? tg_bytes_map_get(&tr->pieces.map, p, n) : -1;
    if (id < 0) {
        tg_status st = tg_vocab_add(&tr->pieces, p, n, err);
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
    return tg_pretok_each(tr->re, text, n, count_piece, tr, err);
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

/* The words being merged: every unique piece as a symbol sequence (ids), weighted by its count. */
typedef struct {
    uint32_t *syms;   /* all words' symbols, word w at syms[off[w]..off[w]+len[w]) */
    size_t *off, *len;
    uint32_t *stamp;  /* per word: the last merge that visited it */
    size_t n;
} bpe_words;

static void words_free(bpe_words *ws) {
    free(ws->syms);
    free(ws->off);
    free(ws->len);
    free(ws->stamp);
}

/* Words as byte symbols, and the initial pair counts. */
static tg_status words_init(bpe_words *ws, const tg_bpe_trainer *tr, pair_table *pt, tg_error *err) {
    tg_status st = TG_OK;
    size_t W = tr->pieces.n, total = tr->pieces.arena_n;
    ws->n = W;
    ws->syms = malloc((total + 1) * sizeof *ws->syms);
    ws->off = malloc((W + 1) * sizeof *ws->off);
    ws->len = malloc((W + 1) * sizeof *ws->len);
    ws->stamp = calloc(W + 1, sizeof *ws->stamp);
    TG_CHECK_ALLOC(err, ws->syms);
    TG_CHECK_ALLOC(err, ws->off);
    TG_CHECK_ALLOC(err, ws->len);
    TG_CHECK_ALLOC(err, ws->stamp);
    for (size_t w = 0; w < W; w++) {
        ws->off[w] = tr->pieces.off[w];
        ws->len[w] = tr->pieces.len[w];
        const uint8_t *p = tr->pieces.arena + ws->off[w];
        for (size_t i = 0; i < ws->len[w]; i++) ws->syms[ws->off[w] + i] = p[i];
        for (size_t i = 0; i + 1 < ws->len[w]; i++)
            TG_TRY(pairs_add(pt, p[i], p[i + 1], tr->counts[w], (int32_t)w, err));
    }
    TG_TRY(flush_dirty(pt, err));
cleanup:
    return st;
}

/* Replaces (a, b) by c in every word that lists the pair r, updating the pair counts. merge is
 * the 1-based merge number (marks visited words). */
static tg_status words_merge(bpe_words *ws, const tg_bpe_trainer *tr, pair_table *pt, const pair_rec *r,
                             uint32_t a, uint32_t b, uint32_t c, uint32_t merge, tg_error *err) {
    tg_status st = TG_OK;
    int32_t *list = r->words; /* r's list is not appended to below (no new pair equals (a,b)) */
    uint32_t n_list = r->n_words;
    for (uint32_t li = 0; li < n_list; li++) {
        int32_t w = list[li];
        if (ws->stamp[w] == merge) continue;
        ws->stamp[w] = merge;
        uint32_t *s = ws->syms + ws->off[w];
        size_t n = ws->len[w];
        int found = 0;
        for (size_t i = 0; i + 1 < n; i++)
            if (s[i] == a && s[i + 1] == b) found = 1;
        if (!found) continue;
        int64_t wc = tr->counts[w];
        for (size_t i = 0; i + 1 < n; i++) TG_TRY(pairs_add(pt, s[i], s[i + 1], -wc, -1, err));
        size_t o = 0;
        for (size_t i = 0; i < n;) {
            if (i + 1 < n && s[i] == a && s[i + 1] == b) {
                s[o++] = c;
                i += 2;
            } else {
                s[o++] = s[i++];
            }
        }
        ws->len[w] = o;
        for (size_t i = 0; i + 1 < o; i++)
            TG_TRY(pairs_add(pt, s[i], s[i + 1], wc, (s[i] == c || s[i + 1] == c) ? w : -1, err));
    }
    TG_TRY(flush_dirty(pt, err));
cleanup:
    return st;
}

static tg_status rank_file_write(const tg_vocab *v, const char *path, tg_error *err) {
    tg_status st = TG_OK;
    char *text = NULL;
    FILE *f = NULL;
    size_t text_n = 0;
    TG_TRY(tg_vocab_serialize(v, &text, &text_n, err));
    f = fopen(path, "wb");
    if (!f) TG_FAIL(err, TG_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    if (fwrite(text, 1, text_n, f) != text_n)
        TG_FAIL(err, TG_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    if (fclose(f) != 0) {
        f = NULL;
        TG_FAIL(err, TG_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    }
    f = NULL;
cleanup:
    if (f) fclose(f);
    free(text);
    return st;
}

tg_status tg_bpe_trainer_save(tg_bpe_trainer *tr, int vocab_size, const char *path,
                              const tg_log *lg, int *n_merges, tg_error *err) {
    tg_status st = TG_OK;
    tg_vocab tv = {0};
    pair_table pt = {.stamp = 1};
    bpe_words ws = {0};
    uint8_t *buf = NULL;
    int merges = 0;
    if (vocab_size < 257)
        TG_FAIL(err, TG_ERR_ARG, "vocab size %d is too small (at least 257: 256 bytes + eot)", vocab_size);
    size_t target = (size_t)vocab_size - 1;
    for (int c = 0; c < 256; c++) {
        uint8_t b = (uint8_t)c;
        TG_TRY(tg_vocab_add(&tv, &b, 1, err));
    }
    TG_TRY(words_init(&ws, tr, &pt, err));
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
        int64_t c = tg_bytes_map_get(&tv.map, buf, la + lb);
        if (c < 0) {
            TG_TRY(tg_vocab_add(&tv, buf, la + lb, err));
            c = (int64_t)tv.n - 1;
        }
        merges++;
        TG_TRY(words_merge(&ws, tr, &pt, r, e.a, e.b, (uint32_t)c, (uint32_t)merges, err));
    }
    TG_TRY(rank_file_write(&tv, path, err));
    if (n_merges) *n_merges = merges;
cleanup:
    tg_vocab_free(&tv);
    pairs_free(&pt);
    words_free(&ws);
    free(buf);
    return st;
}
