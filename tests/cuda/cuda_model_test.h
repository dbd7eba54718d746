/* tests/cuda/cuda_model_test.h — what the tests comparing a CUDA tg_model with the CPU backend
 * share (C only): the relative error, a grad-ready hook that records its calls, and a batch of
 * random tokens and targets. */
#ifndef TG_TEST_CUDA_MODEL_TEST_H
#define TG_TEST_CUDA_MODEL_TEST_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "core/rng.h"

/* ||a - b|| / ||b|| over n elements (0 when both are zero) */
static inline double rel_err(const float *a, const float *b, size_t n) {
    double d = 0.0, r = 0.0;
    for (size_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        r += (double)b[i] * b[i];
    }
    if (r == 0.0) return d == 0.0 ? 0.0 : INFINITY;
    return sqrt(d / r);
}

/* The first 64 calls of the grad-ready hook (n counts them all). */
typedef struct {
    int n;
    size_t lo[64], hi[64];
} hook_log;

static inline void hook(void *ctx, size_t lo, size_t hi) {
    hook_log *h = ctx;
    if (h->n < 64) {
        h->lo[h->n] = lo;
        h->hi[h->n] = hi;
    }
    h->n++;
}

/* n random tokens in [0, V), and targets with about one in ten ignored (-1). */
static inline void make_batch_n(tg_rng *r, int32_t *in, int32_t *tgt, int n, int V) {
    for (int i = 0; i < n; i++) {
        in[i] = (int32_t)tg_rng_below(r, (uint64_t)V);
        tgt[i] = tg_rng_f32(r) < 0.1f ? -1 : (int32_t)tg_rng_below(r, (uint64_t)V);
    }
}

#endif
