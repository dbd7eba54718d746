/* data/prepare.c — see prepare.h. */
#include "data/prepare.h"

#include <errno.h>
#include <glob.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/timer.h"
#include "data/shard.h"
#include "data/tokenizer.h"

void tg_prepare_options_default(tg_prepare_options *o) {
    memset(o, 0, sizeof *o);
    o->val_fraction = 0.01;
    o->shard_tokens = 100000000ull;
    o->chunk_tokens = 65536;
    o->zstd_level = 3;
}

/* One split's output: the shard being filled. */
typedef struct {
    const char *split;
    int dtype_bytes;
    void *tokens;          /* shard_tokens capacity, grown on demand */
    uint64_t n, cap;
    uint64_t *docs;
    uint64_t n_docs, cap_docs;
    int shard_index;
    uint64_t total_tokens, total_docs;
    uint64_t *unigram;     /* counts per id (train only), else NULL */
} split_writer;

typedef struct {
    const tg_prepare_options *opt;
    const tg_tokenizer *tok;
    const tg_log *lg;
    tg_shard_info info;
    split_writer train, val;
    /* the batch of documents waiting to be encoded */
    uint8_t *arena;
    size_t arena_n, arena_cap;
    size_t *doc_off, *doc_len;
    size_t batch_n, batch_cap;
    tg_tokens *enc;        /* per batch document */
    size_t enc_cap;
    tg_encode_cache **caches; /* one per OpenMP thread */
    int n_caches;
    uint64_t next_doc;     /* global document index of the batch's first document */
    /* progress */
    tg_prepare_progress_fn progress;
    void *progress_ctx;
    uint64_t bytes_total, bytes_files_done; /* files finished before the current one */
    tg_docs_progress file_prog;             /* position in the current file */
    uint64_t bytes_done;                    /* input bytes whose documents are all encoded */
    double t0;
} prep;

#define BATCH_BYTES (32u << 20)
#define BATCH_DOCS 65536

static tg_status writer_flush(prep *P, split_writer *w, tg_error *err) {
    if (w->n == 0) return TG_OK;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s_%06d.h5", P->opt->out_dir, w->split, w->shard_index);
    tg_shard_info info = P->info;
    info.n_tokens = w->n;
    info.n_docs = w->n_docs;
    tg_status st = tg_shard_write(path, &info, w->split, w->shard_index, w->tokens, w->docs,
                                  P->opt->chunk_tokens, P->opt->zstd_level, err);
    if (st != TG_OK) return st;
    tg_log_debug(P->lg, "wrote %s (%llu tokens, %llu docs)", path, (unsigned long long)w->n,
                 (unsigned long long)w->n_docs);
    w->shard_index++;
    w->n = 0;
    w->n_docs = 0;
    return TG_OK;
}

/* Appends one document (eot + ids) to a split, cutting shards at exactly shard_tokens. */
static tg_status writer_append(prep *P, split_writer *w, const tg_tokens *ids, tg_error *err) {
    tg_status st = TG_OK;
    uint64_t S = P->opt->shard_tokens;
    if (w->n == S) TG_TRY(writer_flush(P, w, err));
    if (w->n_docs == w->cap_docs) {
        uint64_t c = w->cap_docs ? w->cap_docs * 2 : 1024;
        uint64_t *d = realloc(w->docs, c * sizeof *d);
        TG_CHECK_ALLOC(err, d);
        w->docs = d;
        w->cap_docs = c;
    }
    w->docs[w->n_docs++] = w->n;
    w->total_docs++;
    for (size_t i = 0; i <= ids->n;) {
        if (w->n == S) TG_TRY(writer_flush(P, w, err));
        size_t take = ids->n + 1 - i;
        if (take > S - w->n) take = S - w->n;
        if (w->n + take > w->cap) {
            uint64_t c = w->cap ? w->cap : 1 << 16;
            while (c < w->n + take) c *= 2;
            if (c > S) c = S;
            void *t = realloc(w->tokens, c * (uint64_t)w->dtype_bytes);
            TG_CHECK_ALLOC(err, t);
            w->tokens = t;
            w->cap = c;
        }
        for (size_t k = 0; k < take; k++, i++) {
            uint32_t id = i == 0 ? (uint32_t)P->info.eot_id : ids->ids[i - 1];
            if (w->dtype_bytes == 2) ((uint16_t *)w->tokens)[w->n + k] = (uint16_t)id;
            else ((uint32_t *)w->tokens)[w->n + k] = id;
            if (w->unigram) w->unigram[id]++;
        }
        w->n += take;
        w->total_tokens += take;
    }
cleanup:
    return st;
}

static void report(prep *P, int done) {
    if (!P->progress) return;
    tg_prepare_progress p = {P->bytes_done, P->bytes_total,
                             P->train.total_tokens + P->val.total_tokens,
                             P->train.total_docs + P->val.total_docs, (tg_now_ms() - P->t0) / 1e3, done};
    P->progress(P->progress_ctx, &p);
}

/* Encodes the pending batch in parallel, then appends it in document order. */
static tg_status batch_flush(prep *P, tg_error *err) {
    tg_status st = TG_OK;
    size_t n = P->batch_n;
    if (n == 0) return TG_OK;
    if (n > P->enc_cap) {
        tg_tokens *e = realloc(P->enc, n * sizeof *e);
        TG_CHECK_ALLOC(err, e);
        memset(e + P->enc_cap, 0, (n - P->enc_cap) * sizeof *e);
        P->enc = e;
        P->enc_cap = n;
    }
    tg_status first_st = TG_OK;
    tg_error first_err = {0};
    size_t first_doc = SIZE_MAX;
#pragma omp parallel num_threads(P->n_caches)
    {
        tg_encode_cache *cache = P->caches[omp_get_thread_num()];
#pragma omp for schedule(dynamic, 4)
        for (size_t i = 0; i < n; i++) {
            tg_error e = {0};
            P->enc[i].n = 0;
            tg_status s = tg_tokenizer_encode_cached(P->tok, cache, P->arena + P->doc_off[i],
                                                     P->doc_len[i], &P->enc[i], &e);
            if (s != TG_OK) {
#pragma omp critical(tg_prepare_err)
                if (i < first_doc) {
                    first_doc = i;
                    first_st = s;
                    first_err = e;
                }
            }
        }
    }
    if (first_st != TG_OK) {
        if (err) *err = first_err;
        TG_FAIL(err, first_st, "encoding document %llu: %s", (unsigned long long)(P->next_doc + first_doc),
                first_err.msg);
    }
    double F = P->opt->val_fraction;
    for (size_t i = 0; i < n; i++) {
        uint64_t g = P->next_doc + i;
        int is_val = floor((double)(g + 1) * F) > floor((double)g * F);
        TG_TRY(writer_append(P, is_val ? &P->val : &P->train, &P->enc[i], err));
        if (P->enc[i].cap > (1u << 22)) tg_tokens_free(&P->enc[i]); /* don't hoard huge buffers */
    }
    P->next_doc += n;
    P->bytes_done = P->bytes_files_done + P->file_prog.offset;
    P->batch_n = 0;
    P->arena_n = 0;
    report(P, 0);
cleanup:
    return st;
}

static tg_status on_doc(void *ctx, const uint8_t *doc, size_t len, tg_error *err) {
    prep *P = ctx;
    tg_status st = TG_OK;
    if (P->arena_n + len > P->arena_cap) {
        size_t c = P->arena_cap ? P->arena_cap : BATCH_BYTES;
        while (c < P->arena_n + len) c *= 2;
        uint8_t *a = realloc(P->arena, c);
        TG_CHECK_ALLOC(err, a);
        P->arena = a;
        P->arena_cap = c;
    }
    if (P->batch_n == P->batch_cap) {
        size_t c = P->batch_cap ? P->batch_cap * 2 : 4096;
        size_t *o = realloc(P->doc_off, c * sizeof *o);
        TG_CHECK_ALLOC(err, o);
        P->doc_off = o;
        size_t *l = realloc(P->doc_len, c * sizeof *l);
        TG_CHECK_ALLOC(err, l);
        P->doc_len = l;
        P->batch_cap = c;
    }
    memcpy(P->arena + P->arena_n, doc, len);
    P->doc_off[P->batch_n] = P->arena_n;
    P->doc_len[P->batch_n] = len;
    P->batch_n++;
    P->arena_n += len;
    if (P->arena_n >= BATCH_BYTES || P->batch_n >= BATCH_DOCS) TG_TRY(batch_flush(P, err));
cleanup:
    return st;
}

static tg_status remove_old_shards(const char *dir, const tg_log *lg, tg_error *err) {
    const char *pats[] = {"train_*.h5", "val_*.h5"};
    for (int k = 0; k < 2; k++) {
        char pat[4200];
        snprintf(pat, sizeof pat, "%s/%s", dir, pats[k]);
        glob_t g;
        int rc = glob(pat, 0, NULL, &g);
        if (rc == 0) {
            for (size_t i = 0; i < g.gl_pathc; i++) {
                if (remove(g.gl_pathv[i]) != 0) {
                    tg_status st = tg_error_set(err, TG_ERR_IO, "cannot remove old shard %s: %s",
                                                g.gl_pathv[i], strerror(errno));
                    globfree(&g);
                    return st;
                }
            }
            if (g.gl_pathc) tg_log_info(lg, "removed %zu old %s shard(s) in %s", g.gl_pathc,
                                        k ? "val" : "train", dir);
        }
        globfree(&g);
    }
    return TG_OK;
}

tg_status tg_prepare_run(const tg_prepare_options *opt, const tg_log *lg,
                         tg_prepare_progress_fn progress, void *progress_ctx,
                         tg_prepare_result *res, tg_error *err) {
    tg_status st = TG_OK;
    tg_tokenizer *tok = NULL;
    prep P = {0};
    P.opt = opt;
    P.lg = lg;
    P.progress = progress;
    P.progress_ctx = progress_ctx;
    P.t0 = tg_now_ms();
    if (opt->n_inputs <= 0) TG_FAIL(err, TG_ERR_ARG, "no input files");
    if (!(opt->val_fraction >= 0 && opt->val_fraction < 1))
        TG_FAIL(err, TG_ERR_ARG, "--val-fraction must be in [0, 1), got %g", opt->val_fraction);
    if (opt->shard_tokens == 0 || opt->chunk_tokens == 0)
        TG_FAIL(err, TG_ERR_ARG, "--shard-tokens and the chunk size must be > 0");
    if (opt->zstd_level < 1 || opt->zstd_level > 22)
        TG_FAIL(err, TG_ERR_ARG, "zstd level must be in 1..22, got %d", opt->zstd_level);
    if (opt->threads > 0) omp_set_num_threads(opt->threads);
    /* Inputs must all be readable before any output is touched. */
    for (int i = 0; i < opt->n_inputs; i++) {
        struct stat sb;
        FILE *f = fopen(opt->inputs[i], "rb");
        if (!f) TG_FAIL(err, TG_ERR_IO, "%s: cannot open: %s", opt->inputs[i], strerror(errno));
        fclose(f);
        if (stat(opt->inputs[i], &sb) == 0) P.bytes_total += (uint64_t)sb.st_size;
    }
    TG_TRY(tg_tokenizer_load(&tok, opt->tokenizer_path, err));
    P.tok = tok;
    P.info.format_version = TG_SHARD_FORMAT_VERSION;
    P.info.vocab_size = tg_tokenizer_vocab_size(tok);
    P.info.eot_id = tg_tokenizer_eot_id(tok);
    snprintf(P.info.tokenizer_name, sizeof P.info.tokenizer_name, "%s", tg_tokenizer_name(tok));
    snprintf(P.info.tokenizer_hash, sizeof P.info.tokenizer_hash, "%s", tg_tokenizer_hash(tok));
    P.n_caches = omp_get_max_threads();
    P.caches = calloc((size_t)P.n_caches, sizeof *P.caches);
    TG_CHECK_ALLOC(err, P.caches);
    for (int i = 0; i < P.n_caches; i++) TG_TRY(tg_encode_cache_init(&P.caches[i], tok, err));
    int db = tg_shard_dtype_bytes(P.info.vocab_size);
    P.train = (split_writer){.split = "train", .dtype_bytes = db};
    P.val = (split_writer){.split = "val", .dtype_bytes = db};
    P.train.unigram = calloc((size_t)P.info.vocab_size, sizeof *P.train.unigram);
    TG_CHECK_ALLOC(err, P.train.unigram);
    if (mkdir(opt->out_dir, 0777) != 0 && errno != EEXIST)
        TG_FAIL(err, TG_ERR_IO, "cannot create output directory %s: %s", opt->out_dir, strerror(errno));
    TG_TRY(remove_old_shards(opt->out_dir, lg, err));
    for (int i = 0; i < opt->n_inputs; i++) {
        TG_TRY(tg_docs_read(opt->inputs[i], opt->mode, lg, on_doc, &P, &P.file_prog, err));
        P.bytes_files_done += P.file_prog.offset;
        memset(&P.file_prog, 0, sizeof P.file_prog);
    }
    TG_TRY(batch_flush(&P, err));
    TG_TRY(writer_flush(&P, &P.train, err));
    TG_TRY(writer_flush(&P, &P.val, err));
    if (P.train.total_tokens == 0) TG_FAIL(err, TG_ERR_DATA, "no documents in the inputs: nothing to write");
    if (opt->val_fraction > 0 && P.val.total_docs == 0)
        tg_log_warn(lg, "validation split is empty (%llu documents x val fraction %g < 1)",
                    (unsigned long long)P.train.total_docs, opt->val_fraction);
    P.bytes_done = P.bytes_total;
    report(&P, 1);
    if (res) {
        memset(res, 0, sizeof *res);
        res->train_tokens = P.train.total_tokens;
        res->val_tokens = P.val.total_tokens;
        res->train_docs = P.train.total_docs;
        res->val_docs = P.val.total_docs;
        res->train_shards = P.train.shard_index;
        res->val_shards = P.val.shard_index;
        res->bytes = P.bytes_total;
        res->seconds = (tg_now_ms() - P.t0) / 1e3;
        res->vocab_size = (int)P.info.vocab_size;
        res->eot_id = (int)P.info.eot_id;
        double H = 0, N = (double)P.train.total_tokens;
        for (int64_t i = 0; i < P.info.vocab_size; i++)
            if (P.train.unigram[i]) {
                double p = (double)P.train.unigram[i] / N;
                H -= p * log(p);
            }
        res->unigram_entropy = H;
    }
cleanup:
    for (int i = 0; i < P.n_caches; i++) tg_encode_cache_free(P.caches[i]);
    free(P.caches);
    tg_tokenizer_free(tok);
    free(P.train.tokens);
    free(P.train.docs);
    free(P.train.unigram);
    free(P.val.tokens);
    free(P.val.docs);
    free(P.arena);
    free(P.doc_off);
    free(P.doc_len);
    for (size_t i = 0; i < P.enc_cap; i++) tg_tokens_free(&P.enc[i]);
    free(P.enc);
    return st;
}
