/* train/sample.h — autoregressive sampling from a model (shared by `truthgpt sample` and the
 * trainer's train.sample_every). */
#ifndef TG_SAMPLE_H
#define TG_SAMPLE_H

#include <stdint.h>

#include "core/rng.h"
#include "core/status.h"
#include "data/tokenizer.h"
#include "model/model.h"

typedef struct {
    int n_tokens;       /* tokens to add */
    float temperature;  /* <= 0: greedy */
    int top_k;          /* <= 0: all */
    int vocab_limit;    /* only ids < vocab_limit are candidates (the tokenizer's vocab) */
    float top_p;        /* nucleus: keep the most likely ids up to this mass; <= 0 or >= 1: all (cached path) */
    int stop_id;        /* stop after sampling this id (e.g. end-of-text); < 0: never (cached path). Set it:
                         * 0 is a token id */
} tg_sample_options;

/* Called with each new token id as it is sampled (e.g. to print its piece). */
typedef void (*tg_sample_emit_fn)(void *ctx, uint32_t id);

/* Index of the next token from one row of logits: softmax(logits/temperature) restricted to the
 * top_k largest; greedy when temperature <= 0. probs: V floats of scratch. */
int tg_sample_pick(const float *logits, int V, float temperature, int top_k, float *probs, tg_rng *rng);

/* Extends ids (at least one token) by o->n_tokens sampled from m. Each token costs one forward of
 * row 0 over the last T tokens (T = the model's), so no KV cache is needed. Overwrites the model's
 * activations (call between training steps, not inside one). emit may be NULL. */
tg_status tg_sample_generate(tg_model *m, tg_tokens *ids, const tg_sample_options *o, tg_rng *rng,
                             tg_sample_emit_fn emit, void *ctx, tg_error *err);

/* The same extension with a KV cache (model/decode.h: CPU fp32 models, CUDA models): the prompt
 * in one forward, then one row per token, so a token's cost does not grow with the window.
 * ids->n + o->n_tokens must not exceed the model's T (TG_ERR_ARG otherwise). With temperature 0
 * on the CPU it picks exactly the tokens tg_sample_generate picks (on CUDA the logits agree to
 * rounding, so a near-tie may go the other way). Honours top_p and stop_id; *n_out (may be NULL)
 * = tokens added. */
tg_status tg_sample_generate_cached(tg_model *m, tg_tokens *ids, const tg_sample_options *o, tg_rng *rng,
                                    tg_sample_emit_fn emit, void *ctx, int *n_out, tg_error *err);

#endif
