/* data/loader.h — serves (B, T+1) token windows from a glob of HDF5 shards.
 *
 * The corpus (all shards, in sorted file-name order) is cut into windows of T+1 tokens with
 * stride T. Windows are visited in a deterministic shuffled order that depends only on
 * (seed, epoch); the order is an infinite stream: global position p is window
 * perm_{p / N}[p % N] for N windows. The loader's state is that position (plus the seed), so it is
 * independent of the world size: a micro-batch of rank r takes the B windows at
 * cursor + r*B ... and then the cursor advances by world*B. A global step of accumulation A
 * therefore consumes the same A*world*B windows whatever world is, as long as the product is fixed.
 *
 * Shuffled order (data/loader.c, docs/data.md): windows are grouped in blocks of
 * K = max(1, block_tokens / T) consecutive windows of one shard (block_tokens defaults to 1Mi);
 * epoch e visits the blocks in a Fisher-Yates permutation seeded by tg_hash64(seed, e) and the
 * windows inside each block in a permutation seeded by (seed, e, block). Blocks keep reads
 * sequential (one block = one contiguous, chunk-friendly HDF5 read); the order depends only on
 * (seed, epoch, T, block_tokens, the shards), never on world or B.
 *
 * Validation (shuffle=0) reads windows in file order: a fixed prefix from position 0; the caller
 * restores state {seed, 0} before each evaluation to read the same subset every time.
 * A background thread reads and decompresses ahead (prefetch > 0). data/ knows nothing of CUDA.
 * Every HDF5 call holds tg_h5_lock (data/h5util.h). Errors name the file and the problem.
 *
 * The glob "synthetic" (TG_LOADER_SYNTHETIC) opens no files: it serves the learnable stream of
 * data/synthetic.h with the same position semantics, vocab_size (0 = TG_SYNTHETIC_VOCAB) and
 * no tokenizer (hash "", eot_id -1, n_tokens and n_windows 0: the stream is endless). Validation
 * (shuffle=0) reads a different stream (seed hashed); state_set moves only the position.
 *
 * Mixture: a spec "web/NAME.h5:0.7,code/NAME.h5:0.3" (globs; a comma, or a trailing ":weight") names sources
 * with weights > 0 (normalised). Global row g (the same position counter as above) comes from
 * source s with probability w_s, drawn from tg_hash64 keyed on (seed, g) only; source s serves its
 * own stream (the order above, seed tg_hash64(seed, s+1)) at the next position not yet used by an
 * earlier row. The order is thus independent of world and B, and the state stays {seed, position}:
 * state_set replays the draws 0..position to rebuild the per-source counts. All sources must share
 * tokenizer hash, vocab_size and eot_id (else TG_ERR_DATA); a malformed spec is TG_ERR_CONFIG. */
#ifndef TG_LOADER_H
#define TG_LOADER_H

#include <stdint.h>

#include "core/status.h"

#define TG_LOADER_SYNTHETIC "synthetic"

typedef struct {
    const char *glob;     /* shard files, e.g. "data/fineweb/train_*.h5", or "synthetic" */
    int B, T;             /* micro-batch rows, sequence length (windows are T+1 tokens) */
    int rank, world;      /* this rank takes rows [rank*B, rank*B + B) of each world*B slice */
    uint64_t seed;
    int shuffle;          /* 1 for training, 0 for validation */
    int vocab_size;       /* expected vocab (0 = accept the shards'); mismatch is an error */
    int prefetch;         /* micro-batches to read ahead in a background thread (0 = none) */
    int block_tokens;     /* shuffle granularity in tokens (0 = 1Mi); part of the order */
} tg_loader_options;

typedef struct {
    uint64_t seed;
    uint64_t position;    /* global window position of the next micro-batch slice */
} tg_loader_state;

typedef struct tg_loader tg_loader;

tg_status tg_loader_open(tg_loader **out, const tg_loader_options *opt, tg_error *err);
void tg_loader_free(tg_loader *l);

/* The shards' metadata (identical across shards, checked at open). */
int tg_loader_vocab_size(const tg_loader *l);
int tg_loader_eot_id(const tg_loader *l);
const char *tg_loader_tokenizer_hash(const tg_loader *l);
uint64_t tg_loader_n_tokens(const tg_loader *l);
uint64_t tg_loader_n_windows(const tg_loader *l);

/* Fills inputs[B*T] and targets[B*T] (targets = inputs shifted by one) with this rank's rows of
 * the next world*B windows and advances the state. */
tg_status tg_loader_next(tg_loader *l, int32_t *inputs, int32_t *targets, tg_error *err);

/* State at the start of the next tg_loader_next; set discards prefetched batches. */
void tg_loader_state_get(const tg_loader *l, tg_loader_state *s);
tg_status tg_loader_state_set(tg_loader *l, const tg_loader_state *s, tg_error *err);

#endif
