/* data/prepare.h — text -> tokenized HDF5 shards (`truthgpt prepare`).
 *
 * Documents are read in input order (docs.h), encoded in parallel batches (OpenMP, all cores
 * unless threads > 0) and appended in order, each preceded by eot, so the output depends only on
 * the inputs and options (byte-identical across runs and thread counts). Document g (0-based,
 * over all inputs) goes to validation iff floor((g+1)*F) > floor(g*F) for F = val_fraction,
 * i.e. exactly round-down(N*F) documents spread evenly. Shards hold exactly shard_tokens tokens
 * (the last of each split fewer); a document may continue into the next shard. Old
 * train_*.h5 / val_*.h5 in out_dir are removed first. */
#ifndef TG_PREPARE_H
#define TG_PREPARE_H

#include <stdint.h>

#include "core/log.h"
#include "core/status.h"
#include "data/docs.h"

typedef struct {
    const char *tokenizer_path;
    const char *out_dir;         /* created if missing (one level) */
    const char *const *inputs;
    int n_inputs;
    tg_input_mode mode;          /* AUTO: .jsonl -> JSONL, else TEXT */
    double val_fraction;         /* [0, 1) */
    uint64_t shard_tokens;       /* > 0 */
    uint64_t chunk_tokens;       /* HDF5 chunk length of `tokens` (> 0) */
    int zstd_level;              /* 1..22 */
    int threads;                 /* 0 = OpenMP default (all cores) */
} tg_prepare_options;

/* Defaults: val_fraction 0.01, shard_tokens 100M, chunk_tokens 64Ki, zstd_level 3. */
void tg_prepare_options_default(tg_prepare_options *o);

typedef struct {
    uint64_t bytes_done, bytes_total; /* input bytes */
    uint64_t tokens, docs;
    double seconds;
    int done;                         /* 1 on the final call */
} tg_prepare_progress;

typedef void (*tg_prepare_progress_fn)(void *ctx, const tg_prepare_progress *p);

typedef struct {
    uint64_t train_tokens, val_tokens, train_docs, val_docs;
    int train_shards, val_shards;
    uint64_t bytes;          /* input bytes read */
    double seconds;
    double unigram_entropy;  /* of the train split's tokens (eot included), nats/token */
    int vocab_size, eot_id;
} tg_prepare_result;

/* progress (may be NULL) is called from this thread after each batch and once at the end. */
tg_status tg_prepare_run(const tg_prepare_options *opt, const tg_log *lg,
                         tg_prepare_progress_fn progress, void *progress_ctx,
                         tg_prepare_result *res, tg_error *err);

#endif
