/* core/rng.h — small deterministic RNG with explicit state (checkpointable as one uint64).
 * splitmix64: fast, full-period 2^64, and the state is a plain counter-like word. */
#ifndef TG_RNG_H
#define TG_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t state;
} tg_rng;

static inline void tg_rng_init(tg_rng *r, uint64_t seed) { r->state = seed; }

static inline uint64_t tg_rng_u64(tg_rng *r) {
    uint64_t z = (r->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline uint32_t tg_rng_u32(tg_rng *r) { return (uint32_t)(tg_rng_u64(r) >> 32); }

/* Uniform in [0, 1). */
static inline float tg_rng_f32(tg_rng *r) { return (float)(tg_rng_u64(r) >> 40) / 16777216.0f; }

/* Uniform integer in [0, n), n > 0 (Lemire's multiply; the tiny bias is irrelevant here). */
static inline uint64_t tg_rng_below(tg_rng *r, uint64_t n) {
    return (uint64_t)(((unsigned __int128)tg_rng_u64(r) * n) >> 64);
}

/* Standard normal via Box-Muller; uses two draws, so the state stays one word. */
float tg_rng_normal(tg_rng *r);

/* Stateless mix of (a, b): for seeds derived from (seed, epoch), (seed, rank), ... */
static inline uint64_t tg_hash64(uint64_t a, uint64_t b) {
    tg_rng r = {a ^ (b * 0xD6E8FEB86659FD93ull)};
    (void)tg_rng_u64(&r);
    return tg_rng_u64(&r);
}

#endif
