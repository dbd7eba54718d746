/* tests/model/model_test_util.h — small helpers shared by the model tests. */
#ifndef TG_MODEL_TEST_UTIL_H
#define TG_MODEL_TEST_UTIL_H

#include <stdint.h>
#include <stdlib.h>

#include "core/rng.h"
#include "model/model.h"
#include "tg_test.h"

/* A CPU model with max_seq_len Tmax running (B, T) micro-batches, GPT-2 init from seed; NULL
 * (and a failed CHECK) on error. */
static inline tg_model *mt_model_new_t(int L, int NH, int C, int Tmax, int T, int V, int B,
                                       size_t pad_multiple, uint64_t seed) {
    tg_error err = {0};
    tg_gpt2_config cfg = {.max_seq_len = Tmax, .vocab_size = V, .n_layer = L, .n_head = NH,
                          .n_embd = C};
    tg_model_options opt = {.device = TG_DEVICE_CPU, .B = B, .T = T, .pad_multiple = pad_multiple};
    tg_model *m = NULL;
    CHECK_OK(tg_gpt2_config_finalize(&cfg, &err), &err);
    CHECK_OK(tg_model_init(&m, &cfg, &opt, &err), &err);
    if (!m) return NULL;
    const tg_gpt2_layout *lay = tg_model_layout(m);
    float *p = malloc(lay->n_params * sizeof *p);
    tg_gpt2_params_init(lay, p, seed);
    CHECK_OK(tg_model_params_set(m, p, &err), &err);
    free(p);
    return m;
}

static inline tg_model *mt_model_new(int L, int NH, int C, int T, int V, int B,
                                     size_t pad_multiple, uint64_t seed) {
    return mt_model_new_t(L, NH, C, T, T, V, B, pad_multiple, seed);
}

/* n tokens uniform in [0, V). */
static inline void mt_tokens(int32_t *out, int n, int V, uint64_t seed) {
    tg_rng r;
    tg_rng_init(&r, seed);
    for (int i = 0; i < n; i++) out[i] = (int32_t)tg_rng_below(&r, (uint64_t)V);
}

static inline float *mt_floats(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

#endif
