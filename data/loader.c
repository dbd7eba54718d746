/* data/loader.c — see loader.h. */
#include "data/loader.h"

#include <glob.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "data/shard.h"
#include "data/synthetic.h"

typedef struct {
    char *path;
    tg_shard_info info;
    uint64_t n_windows;
} shard_ent;

typedef struct {
    uint32_t shard;
    uint32_t nw;  /* windows in the block (K, fewer for a shard's last block) */
    uint64_t w0;  /* first window (index within the shard) */
} block_ent;

/* A decoded block: its tokens (shard dtype) and, for the shuffled order, its window permutation
 * for one epoch. */
typedef struct {
    int64_t block;     /* -1 = empty */
    int64_t perm_epoch;
    void *tokens;
    uint32_t *perm;
    uint64_t last_use;
} block_cache;

#define N_CACHE 2

typedef struct {
    int32_t *inputs, *targets; /* B*T each */
    uint64_t pos;
    tg_status st;
    tg_error err;
} slot;

struct tg_loader {
    tg_loader_options opt;
    int B, T;
    int synthetic_vocab;    /* > 0: glob "synthetic", no shards (data/synthetic.h) */
    shard_ent *shards;
    int n_shards;
    block_ent *blocks;
    uint64_t n_blocks, n_windows, K;
    int dtype_bytes;
    /* reader side (only the producer touches these) */
    uint64_t *id_cum;       /* identity order: cum[j] = windows in blocks [0, j) */
    int64_t ord_epoch;      /* epoch of ord_perm / ord_cum, -1 = none */
    uint64_t *ord_perm, *ord_cum;
    block_cache cache[N_CACHE];
    uint64_t use_clock;
    tg_shard_handle h;
    /* consumer state */
    uint64_t seed, position;
    /* prefetch */
    int P;
    slot *ring;
    int head, count;
    uint64_t prod_pos;
    int stop, prod_failed, running;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* mixture (n_src > 0): each global row g comes from source pick(g); the source's own stream
     * (a sub-loader with B=1, world=1) serves its next unused position, counted per source */
    int n_src;
    tg_loader **src;
    double *cumw;           /* cumulative normalised weights, cumw[n_src-1] = 1 */
    uint64_t *counts;       /* consumer: rows drawn from each source before `position` */
    uint64_t *prod_counts;  /* producer: the same at prod_pos */
    uint64_t *tmp_counts;
};

int tg_loader_vocab_size(const tg_loader *l) {
    if (l->n_src) return tg_loader_vocab_size(l->src[0]);
    return l->synthetic_vocab ? l->synthetic_vocab : (int)l->shards[0].info.vocab_size;
}
int tg_loader_eot_id(const tg_loader *l) {
    if (l->n_src) return tg_loader_eot_id(l->src[0]);
    return l->synthetic_vocab ? -1 : (int)l->shards[0].info.eot_id; }
const char *tg_loader_tokenizer_hash(const tg_loader *l) {
    if (l->n_src) return tg_loader_tokenizer_hash(l->src[0]);
    return l->synthetic_vocab ? "" : l->shards[0].info.tokenizer_hash;
}
uint64_t tg_loader_n_windows(const tg_loader *l) {
    uint64_t n = l->n_windows;
    for (int i = 0; i < l->n_src; i++) n += tg_loader_n_windows(l->src[i]);
    return n;
}
uint64_t tg_loader_n_tokens(const tg_loader *l) {
    uint64_t n = 0;
    for (int i = 0; i < l->n_src; i++) n += tg_loader_n_tokens(l->src[i]);
    for (int i = 0; i < l->n_shards; i++) n += l->shards[i].info.n_tokens;
    return n;
}

/* ---- order ---- */

/* First j with cum[j+1] > idx (cum has n+1 entries, cum[0] = 0). */
static uint64_t cum_find(const uint64_t *cum, uint64_t n, uint64_t idx) {
    uint64_t lo = 0, hi = n; /* answer in [lo, hi) */
    while (hi - lo > 1) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (cum[mid] <= idx) lo = mid;
        else hi = mid;
    }
    return lo;
}

static uint64_t epoch_seed(uint64_t seed, uint64_t epoch) { return tg_hash64(seed, epoch); }

static void epoch_order(tg_loader *l, uint64_t epoch) {
    if (l->ord_epoch == (int64_t)epoch) return;
    tg_rng r;
    tg_rng_init(&r, epoch_seed(l->seed, epoch));
    for (uint64_t i = 0; i < l->n_blocks; i++) l->ord_perm[i] = i;
    for (uint64_t i = l->n_blocks; i > 1; i--) {
        uint64_t j = tg_rng_below(&r, i);
        uint64_t t = l->ord_perm[i - 1];
        l->ord_perm[i - 1] = l->ord_perm[j];
        l->ord_perm[j] = t;
    }
    l->ord_cum[0] = 0;
    for (uint64_t i = 0; i < l->n_blocks; i++)
        l->ord_cum[i + 1] = l->ord_cum[i] + l->blocks[l->ord_perm[i]].nw;
    l->ord_epoch = (int64_t)epoch;
}

/* Global position -> (block, window offset inside the block before the inner permutation). */
static void locate(tg_loader *l, uint64_t pos, uint64_t *block, uint64_t *off, uint64_t *epoch) {
    *epoch = pos / l->n_windows;
    uint64_t idx = pos % l->n_windows;
    if (!l->opt.shuffle) {
        uint64_t j = cum_find(l->id_cum, l->n_blocks, idx);
        *block = j;
        *off = idx - l->id_cum[j];
        return;
    }
    epoch_order(l, *epoch);
    uint64_t j = cum_find(l->ord_cum, l->n_blocks, idx);
    *block = l->ord_perm[j];
    *off = idx - l->ord_cum[j];
}

static tg_status cache_get(tg_loader *l, uint64_t b, uint64_t epoch, block_cache **out, tg_error *err) {
    tg_status st = TG_OK;
    block_cache *c = NULL;
    for (int i = 0; i < N_CACHE; i++)
        if (l->cache[i].block == (int64_t)b) c = &l->cache[i];
    if (!c) {
        c = &l->cache[0];
        for (int i = 1; i < N_CACHE; i++)
            if (l->cache[i].last_use < c->last_use) c = &l->cache[i];
        const block_ent *be = &l->blocks[b];
        const shard_ent *s = &l->shards[be->shard];
        c->block = -1;
        c->perm_epoch = -1;
        TG_TRY(tg_shard_read_tokens(&l->h, s->path, &s->info, be->w0 * (uint64_t)l->T,
                                    (uint64_t)be->nw * (uint64_t)l->T + 1, c->tokens, err));
        c->block = (int64_t)b;
    }
    if (l->opt.shuffle && c->perm_epoch != (int64_t)epoch) {
        uint32_t nw = l->blocks[b].nw;
        tg_rng r;
        tg_rng_init(&r, tg_hash64(epoch_seed(l->seed, epoch) ^ 0x5bd1e995u, b));
        for (uint32_t i = 0; i < nw; i++) c->perm[i] = i;
        for (uint32_t i = nw; i > 1; i--) {
            uint32_t j = (uint32_t)tg_rng_below(&r, i);
            uint32_t t = c->perm[i - 1];
            c->perm[i - 1] = c->perm[j];
            c->perm[j] = t;
        }
        c->perm_epoch = (int64_t)epoch;
    }
    c->last_use = ++l->use_clock;
    *out = c;
cleanup:
    return st;
}

/* This rank's micro-batch for global position pos: windows pos + rank*B + i, i < B. */
static tg_status make_batch(tg_loader *l, uint64_t pos, int32_t *inputs, int32_t *targets,
                            tg_error *err) {
    tg_status st = TG_OK;
    const int B = l->B, T = l->T;
    for (int i = 0; i < B; i++) {
        uint64_t p = pos + (uint64_t)l->opt.rank * (uint64_t)B + (uint64_t)i;
        uint64_t b, off, epoch;
        locate(l, p, &b, &off, &epoch);
        block_cache *c = NULL;
        TG_TRY(cache_get(l, b, epoch, &c, err));
        uint64_t w = l->opt.shuffle ? c->perm[off] : off;
        int32_t *in = inputs + (size_t)i * T, *tg = targets + (size_t)i * T;
        if (l->dtype_bytes == 2) {
            const uint16_t *src = (const uint16_t *)c->tokens + w * (uint64_t)T;
            for (int t = 0; t < T; t++) in[t] = src[t];
            for (int t = 0; t < T; t++) tg[t] = src[t + 1];
        } else {
            const uint32_t *src = (const uint32_t *)c->tokens + w * (uint64_t)T;
            for (int t = 0; t < T; t++) in[t] = (int32_t)src[t];
            for (int t = 0; t < T; t++) tg[t] = (int32_t)src[t + 1];
        }
    }
cleanup:
    return st;
}

/* ---- mixture ---- */

/* Source of global row g: a uniform draw keyed on (seed, g) alone, so the choice does not depend
 * on the world size, B or what was read before. */
static int mix_pick(const tg_loader *l, uint64_t g) {
    double u = (double)(tg_hash64(tg_hash64(l->seed, 0x6d6978u), g) >> 11) * 0x1p-53;
    int s = 0;
    while (s < l->n_src - 1 && u >= l->cumw[s]) s++;
    return s;
}

/* counts (at row pos) += the sources of rows [pos, pos + n). */
static void mix_advance(const tg_loader *l, uint64_t *counts, uint64_t pos, uint64_t n) {
    for (uint64_t j = 0; j < n; j++) counts[mix_pick(l, pos + j)]++;
}

/* This rank's rows of the world*B rows at pos; counts is at pos and ends at pos + world*B. */
static tg_status mix_batch(tg_loader *l, uint64_t pos, uint64_t *counts, int32_t *inputs,
                           int32_t *targets, tg_error *err) {
    tg_status st = TG_OK;
    const uint64_t lo = (uint64_t)l->opt.rank * (uint64_t)l->B, step = (uint64_t)l->opt.world * (uint64_t)l->B;
    for (uint64_t j = 0; j < step; j++) {
        int s = mix_pick(l, pos + j);
        uint64_t k = counts[s]++;
        if (j < lo || j >= lo + (uint64_t)l->B) continue;
        size_t off = (size_t)(j - lo) * (size_t)l->T;
        TG_TRY(make_batch(l->src[s], k, inputs + off, targets + off, err));
    }
cleanup:
    return st;
}

/* ---- prefetch thread ---- */

static void *producer(void *arg) {
    tg_loader *l = arg;
    const uint64_t step = (uint64_t)l->opt.world * (uint64_t)l->B;
    for (;;) {
        pthread_mutex_lock(&l->mu);
        while (!l->stop && l->count == l->P) pthread_cond_wait(&l->cv, &l->mu);
        if (l->stop) {
            pthread_mutex_unlock(&l->mu);
            break;
        }
        slot *s = &l->ring[(l->head + l->count) % l->P];
        uint64_t pos = l->prod_pos;
        pthread_mutex_unlock(&l->mu);
        tg_error_clear(&s->err);
        s->st = l->n_src ? mix_batch(l, pos, l->prod_counts, s->inputs, s->targets, &s->err)
                         : make_batch(l, pos, s->inputs, s->targets, &s->err);
        s->pos = pos;
        pthread_mutex_lock(&l->mu);
        l->count++;
        l->prod_pos += step;
        if (s->st != TG_OK) l->prod_failed = 1;
        pthread_cond_broadcast(&l->cv);
        int done = l->prod_failed;
        pthread_mutex_unlock(&l->mu);
        if (done) break; /* the consumer gets the error from the slot */
    }
    return NULL;
}

static void prefetch_stop(tg_loader *l) {
    if (!l->running) return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
    l->running = 0;
}

static tg_status prefetch_start(tg_loader *l, tg_error *err) {
    l->head = l->count = 0;
    l->stop = l->prod_failed = 0;
    l->prod_pos = l->position;
    if (l->n_src) memcpy(l->prod_counts, l->counts, (size_t)l->n_src * sizeof *l->counts);
    if (pthread_create(&l->thread, NULL, producer, l) != 0)
        return tg_error_set(err, TG_ERR_INTERNAL, "cannot start the loader's prefetch thread");
    l->running = 1;
    return TG_OK;
}

/* ---- open / free ---- */

/* The block table (blocks of K consecutive windows of one shard, docs/data.md) and the block
 * caches, once the shards are known. */
static tg_status blocks_build(tg_loader *l, const tg_loader_options *opt, tg_error *err) {
    tg_status st = TG_OK;
    const int n = l->n_shards;
    const uint64_t T = (uint64_t)opt->T;
    uint64_t bt = opt->block_tokens > 0 ? (uint64_t)opt->block_tokens : (1u << 20);
    l->K = bt / T ? bt / T : 1;
    for (int i = 0; i < n; i++) {
        l->n_blocks += (l->shards[i].n_windows + l->K - 1) / l->K;
        l->n_windows += l->shards[i].n_windows;
    }
    l->blocks = malloc(l->n_blocks * sizeof *l->blocks);
    l->id_cum = malloc((l->n_blocks + 1) * sizeof *l->id_cum);
    l->ord_perm = malloc(l->n_blocks * sizeof *l->ord_perm);
    l->ord_cum = malloc((l->n_blocks + 1) * sizeof *l->ord_cum);
    TG_CHECK_ALLOC(err, l->blocks);
    TG_CHECK_ALLOC(err, l->id_cum);
    TG_CHECK_ALLOC(err, l->ord_perm);
    TG_CHECK_ALLOC(err, l->ord_cum);
    uint64_t j = 0;
    l->id_cum[0] = 0;
    for (int i = 0; i < n; i++)
        for (uint64_t w = 0; w < l->shards[i].n_windows; w += l->K, j++) {
            uint64_t nw = l->shards[i].n_windows - w < l->K ? l->shards[i].n_windows - w : l->K;
            l->blocks[j] = (block_ent){(uint32_t)i, (uint32_t)nw, w};
            l->id_cum[j + 1] = l->id_cum[j] + nw;
        }
    for (int i = 0; i < N_CACHE; i++) {
        l->cache[i].tokens = malloc((l->K * T + 1) * (uint64_t)l->dtype_bytes);
        l->cache[i].perm = malloc(l->K * sizeof(uint32_t));
        TG_CHECK_ALLOC(err, l->cache[i].tokens);
        TG_CHECK_ALLOC(err, l->cache[i].perm);
    }
cleanup:
    return st;
}

static int has_glob_chars(const char *s) { return strpbrk(s, "*?[") != NULL; }

/* A mixture spec has a comma or ends in ":<weight>" (":" then only number characters). */
static int mix_is_spec(const char *g) {
    const char *c = strrchr(g, ':');
    return strchr(g, ',') != NULL || (c && strspn(c + 1, "0123456789.eE+-") == strlen(c + 1));
}

static tg_status ring_open(tg_loader *l, tg_error *err) {
    tg_status st = TG_OK;
    if (l->P > 0) {
        l->ring = calloc((size_t)l->P, sizeof *l->ring);
        TG_CHECK_ALLOC(err, l->ring);
        for (int i = 0; i < l->P; i++) {
            l->ring[i].inputs = malloc((size_t)l->B * l->T * sizeof(int32_t));
            l->ring[i].targets = malloc((size_t)l->B * l->T * sizeof(int32_t));
            TG_CHECK_ALLOC(err, l->ring[i].inputs);
            TG_CHECK_ALLOC(err, l->ring[i].targets);
        }
        TG_TRY(prefetch_start(l, err));
    }
cleanup:
    return st;
}

/* Parses "glob:w,glob:w,..." and opens one sub-loader per source (B=1, world=1, no prefetch,
 * seed hashed with the source index); all sources must share one tokenizer. */
static tg_status mix_open(tg_loader *l, const tg_loader_options *opt, tg_error *err) {
    tg_status st = TG_OK;
    char *spec = strdup(opt->glob);
    TG_CHECK_ALLOC(err, spec);
    int n = 1;
    for (const char *c = opt->glob; *c; c++) n += *c == ',';
    l->src = calloc((size_t)n, sizeof *l->src);
    l->cumw = calloc((size_t)n, sizeof *l->cumw);
    l->counts = calloc((size_t)n, sizeof *l->counts);
    l->prod_counts = calloc((size_t)n, sizeof *l->prod_counts);
    l->tmp_counts = calloc((size_t)n, sizeof *l->tmp_counts);
    TG_CHECK_ALLOC(err, l->src);
    TG_CHECK_ALLOC(err, l->cumw);
    TG_CHECK_ALLOC(err, l->counts);
    TG_CHECK_ALLOC(err, l->prod_counts);
    TG_CHECK_ALLOC(err, l->tmp_counts);
    double total = 0;
    char *part = spec;
    for (int i = 0; i < n; i++) {
        char *comma = strchr(part, ',');
        if (comma) *comma = 0;
        char *colon = strrchr(part, ':');
        if (!colon)
            TG_FAIL(err, TG_ERR_CONFIG, "data mixture \"%s\": source %d \"%s\" has no \":weight\"",
                    opt->glob, i + 1, part);
        *colon = 0;
        char *end = NULL;
        double w = strtod(colon + 1, &end);
        if (!part[0])
            TG_FAIL(err, TG_ERR_CONFIG, "data mixture \"%s\": source %d has no glob before \":%s\"",
                    opt->glob, i + 1, colon + 1);
        if (end == colon + 1 || *end || !isfinite(w) || w <= 0)
            TG_FAIL(err, TG_ERR_CONFIG, "data mixture \"%s\": source %d (%s) weight \"%s\" is not a number > 0",
                    opt->glob, i + 1, part, colon + 1);
        if (strcmp(part, TG_LOADER_SYNTHETIC) == 0)
            TG_FAIL(err, TG_ERR_CONFIG, "data mixture \"%s\": \"synthetic\" cannot be a mixture source", opt->glob);
        tg_loader_options so = *opt;
        so.glob = part;
        so.B = 1;
        so.rank = 0;
        so.world = 1;
        so.prefetch = 0;
        so.seed = tg_hash64(opt->seed, (uint64_t)i + 1);
        TG_TRY(tg_loader_open(&l->src[i], &so, err));
        l->n_src = i + 1;
        const tg_loader *a = l->src[0], *b = l->src[i];
        if (i > 0 && (strcmp(tg_loader_tokenizer_hash(a), tg_loader_tokenizer_hash(b)) != 0 ||
                      tg_loader_vocab_size(a) != tg_loader_vocab_size(b) || tg_loader_eot_id(a) != tg_loader_eot_id(b)))
            TG_FAIL(err, TG_ERR_DATA,
                    "data mixture: source %d (%s) has tokenizer hash %s, vocab_size %d, eot_id %d; source 1 (%s) "
                    "has %s, %d, %d: all sources must be tokenized alike",
                    i + 1, part, tg_loader_tokenizer_hash(b), tg_loader_vocab_size(b), tg_loader_eot_id(b),
                    l->src[0]->shards[0].path, tg_loader_tokenizer_hash(a), tg_loader_vocab_size(a),
                    tg_loader_eot_id(a));
        total += w;
        l->cumw[i] = total;
        part = comma ? comma + 1 : part + strlen(part);
    }
    for (int i = 0; i < n; i++) l->cumw[i] /= total;
    l->cumw[n - 1] = 1.0;
cleanup:
    free(spec);
    return st;
}

tg_status tg_loader_open(tg_loader **out, const tg_loader_options *opt, tg_error *err) {
    tg_status st = TG_OK;
    glob_t g;
    int have_glob = 0;
    tg_loader *l = NULL;
    if (!opt->glob || !opt->glob[0]) TG_FAIL(err, TG_ERR_ARG, "no data files given");
    if (opt->B <= 0 || opt->T <= 0 || opt->world <= 0 || opt->rank < 0 || opt->rank >= opt->world ||
        opt->prefetch < 0)
        TG_FAIL(err, TG_ERR_ARG, "bad loader options (B=%d T=%d rank=%d world=%d prefetch=%d)",
                opt->B, opt->T, opt->rank, opt->world, opt->prefetch);
    l = calloc(1, sizeof *l);
    TG_CHECK_ALLOC(err, l);
    l->opt = *opt;
    l->opt.glob = NULL;
    l->B = opt->B;
    l->T = opt->T;
    l->seed = opt->seed;
    l->ord_epoch = -1;
    tg_shard_handle_init(&l->h);
    for (int i = 0; i < N_CACHE; i++) l->cache[i].block = -1;
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    if (strcmp(opt->glob, TG_LOADER_SYNTHETIC) == 0) {
        l->synthetic_vocab = opt->vocab_size > 0 ? opt->vocab_size : TG_SYNTHETIC_VOCAB;
        if (!opt->shuffle) l->seed = tg_hash64(opt->seed, 0x7661); /* validation: a different stream */
        *out = l;
        return TG_OK;
    }
    if (mix_is_spec(opt->glob)) {
        TG_TRY(mix_open(l, opt, err));
        l->P = opt->prefetch;
        TG_TRY(ring_open(l, err));
        *out = l;
        l = NULL;
        goto cleanup;
    }
    /* The files, sorted by name (glob sorts). A pattern without wildcards is a plain path. */
    int rc = glob(opt->glob, 0, NULL, &g);
    have_glob = 1;
    if (rc == GLOB_NOMATCH && has_glob_chars(opt->glob))
        TG_FAIL(err, TG_ERR_IO, "%s: no files match", opt->glob);
    if (rc != 0 && rc != GLOB_NOMATCH) TG_FAIL(err, TG_ERR_IO, "%s: cannot list files", opt->glob);
    int n = rc == GLOB_NOMATCH ? 1 : (int)g.gl_pathc;
    l->shards = calloc((size_t)n, sizeof *l->shards);
    TG_CHECK_ALLOC(err, l->shards);
    l->n_shards = n;
    uint64_t T = (uint64_t)opt->T;
    for (int i = 0; i < n; i++) {
        shard_ent *s = &l->shards[i];
        s->path = strdup(rc == GLOB_NOMATCH ? opt->glob : g.gl_pathv[i]);
        TG_CHECK_ALLOC(err, s->path);
        TG_TRY(tg_shard_read_info(s->path, &s->info, err));
        const shard_ent *f = &l->shards[0];
        if (opt->vocab_size > 0 && s->info.vocab_size != opt->vocab_size)
            TG_FAIL(err, TG_ERR_DATA, "%s: vocab_size %lld does not match the model's vocab_size %d",
                    s->path, (long long)s->info.vocab_size, opt->vocab_size);
        if (i > 0 && s->info.vocab_size != f->info.vocab_size)
            TG_FAIL(err, TG_ERR_DATA, "%s: vocab_size %lld differs from %s's %lld", s->path,
                    (long long)s->info.vocab_size, f->path, (long long)f->info.vocab_size);
        if (i > 0 && s->info.eot_id != f->info.eot_id)
            TG_FAIL(err, TG_ERR_DATA, "%s: eot_id %lld differs from %s's %lld", s->path,
                    (long long)s->info.eot_id, f->path, (long long)f->info.eot_id);
        if (i > 0 && strcmp(s->info.tokenizer_hash, f->info.tokenizer_hash) != 0)
            TG_FAIL(err, TG_ERR_DATA, "%s: tokenizer hash %s (%s) differs from %s's %s (%s)", s->path,
                    s->info.tokenizer_hash, s->info.tokenizer_name, f->path, f->info.tokenizer_hash,
                    f->info.tokenizer_name);
        if (s->info.n_tokens < T + 1)
            TG_FAIL(err, TG_ERR_DATA, "%s: shard has %llu tokens, shorter than one window of T+1 = %llu",
                    s->path, (unsigned long long)s->info.n_tokens, (unsigned long long)(T + 1));
        s->n_windows = (s->info.n_tokens - 1) / T;
    }
    l->dtype_bytes = l->shards[0].info.dtype_bytes;
    TG_TRY(blocks_build(l, opt, err));
    l->P = opt->prefetch;
    TG_TRY(ring_open(l, err));
    *out = l;
    l = NULL;
cleanup:
    if (have_glob) globfree(&g);
    tg_loader_free(l);
    return st;
}

void tg_loader_free(tg_loader *l) {
    if (!l) return;
    prefetch_stop(l);
    for (int i = 0; i < l->n_src; i++) tg_loader_free(l->src[i]);
    free(l->src);
    free(l->cumw);
    free(l->counts);
    free(l->prod_counts);
    free(l->tmp_counts);
    tg_shard_handle_close(&l->h);
    for (int i = 0; i < l->n_shards; i++) free(l->shards[i].path);
    free(l->shards);
    free(l->blocks);
    free(l->id_cum);
    free(l->ord_perm);
    free(l->ord_cum);
    for (int i = 0; i < N_CACHE; i++) {
        free(l->cache[i].tokens);
        free(l->cache[i].perm);
    }
    if (l->ring)
        for (int i = 0; i < l->P; i++) {
            free(l->ring[i].inputs);
            free(l->ring[i].targets);
        }
    free(l->ring);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    free(l);
}

/* ---- serving ---- */

tg_status tg_loader_next(tg_loader *l, int32_t *inputs, int32_t *targets, tg_error *err) {
    const uint64_t step = (uint64_t)l->opt.world * (uint64_t)l->B;
    const size_t n = (size_t)l->B * (size_t)l->T;
    if (l->synthetic_vocab) {
        tg_synthetic_fill(l->seed, l->position, l->opt.rank, l->B, l->T, l->synthetic_vocab, inputs, targets);
        l->position += step;
        return TG_OK;
    }
    if (l->P == 0 && l->n_src) { /* counts move only on success */
        memcpy(l->tmp_counts, l->counts, (size_t)l->n_src * sizeof *l->counts);
        tg_status st = mix_batch(l, l->position, l->tmp_counts, inputs, targets, err);
        if (st == TG_OK) {
            memcpy(l->counts, l->tmp_counts, (size_t)l->n_src * sizeof *l->counts);
            l->position += step;
        }
        return st;
    }
    if (l->P == 0) {
        tg_status st = make_batch(l, l->position, inputs, targets, err);
        if (st == TG_OK) l->position += step;
        return st;
    }
    pthread_mutex_lock(&l->mu);
    while (l->count == 0 && l->running) pthread_cond_wait(&l->cv, &l->mu);
    int have = l->count > 0;
    slot *s = &l->ring[l->head];
    pthread_mutex_unlock(&l->mu);
    if (!have) /* only after a failed tg_loader_state_set */
        return tg_error_set(err, TG_ERR_INTERNAL, "the loader's prefetch thread is not running");
    if (s->st != TG_OK) {
        if (err) *err = s->err;
        return s->st; /* sticky: the slot stays, so every later call reports it too */
    }
    memcpy(inputs, s->inputs, n * sizeof *inputs);
    memcpy(targets, s->targets, n * sizeof *targets);
    pthread_mutex_lock(&l->mu);
    l->head = (l->head + 1) % l->P;
    l->count--;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    if (l->n_src) mix_advance(l, l->counts, l->position, step);
    l->position += step;
    return TG_OK;
}

void tg_loader_state_get(const tg_loader *l, tg_loader_state *s) {
    s->seed = l->seed;
    s->position = l->position;
}

tg_status tg_loader_state_set(tg_loader *l, const tg_loader_state *s, tg_error *err) {
    if (l->synthetic_vocab) { /* the stream's seed is fixed at open: only the position moves */
        l->position = s->position;
        return TG_OK;
    }
    prefetch_stop(l);
    if (s->seed != l->seed) {
        l->seed = s->seed;
        l->ord_epoch = -1;
        for (int i = 0; i < N_CACHE; i++) l->cache[i].perm_epoch = -1;
    }
    l->position = s->position;
    if (l->n_src) {
        /* The per-source counts are a function of (seed, position): replay the draws (~4e7/s) so
         * the checkpoint keeps only [seed, position], whatever the world size was. */
        for (int i = 0; i < l->n_src; i++) {
            tg_loader_state ss = {tg_hash64(s->seed, (uint64_t)i + 1), 0};
            tg_status st = tg_loader_state_set(l->src[i], &ss, err);
            if (st != TG_OK) return st;
        }
        memset(l->counts, 0, (size_t)l->n_src * sizeof *l->counts);
        mix_advance(l, l->counts, 0, s->position);
    }
    if (l->P > 0) return prefetch_start(l, err);
    return TG_OK;
}
