/* data/synthetic.h — `data.train = synthetic`: a learnable token stream with no files, served
 * by the loader (data/loader.h) when its glob is "synthetic".
 * Window p (T+1 tokens) is an arithmetic progression mod V whose start and stride come from
 * hash(seed, p), so the next token is predictable from the previous two. Same position
 * semantics as the shard loader (data/loader.h): independent of the world size. */
#ifndef TG_SYNTHETIC_H
#define TG_SYNTHETIC_H

#include <stdint.h>

/* vocab_size of the stream when the model does not set one. */
#define TG_SYNTHETIC_VOCAB 512

/* Fills this rank's B rows of the window slice starting at `position`; returns nothing. */
void tg_synthetic_fill(uint64_t seed, uint64_t position, int rank, int B, int T, int V, int32_t *inputs,
                       int32_t *targets);

#endif
