/* data/synthetic.c — see synthetic.h. */
#include "data/synthetic.h"

#include "core/rng.h"

void tg_synthetic_fill(uint64_t seed, uint64_t position, int rank, int B, int T, int V, int32_t *inputs,
                       int32_t *targets) {
    const int n_strides = V < 8 ? V : 8; /* few strides: a tiny model learns them fast */
    for (int b = 0; b < B; b++) {
        uint64_t p = position + (uint64_t)rank * (uint64_t)B + (uint64_t)b;
        uint64_t h = tg_hash64(seed, p);
        int64_t start = (int64_t)(h % (uint64_t)V);
        int64_t stride = 1 + (int64_t)((h >> 32) % (uint64_t)n_strides);
        for (int t = 0; t < T; t++) {
            inputs[b * T + t] = (int32_t)((start + stride * t) % V);
            targets[b * T + t] = (int32_t)((start + stride * (t + 1)) % V);
        }
    }
}
