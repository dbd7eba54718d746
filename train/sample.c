#include "train/sample.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

int tg_sample_pick(const float *logits, int V, float temperature, int top_k, float *probs, tg_rng *rng) {
    int best = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    if (temperature <= 0.0f) return best;
    /* k-th largest logit as a threshold (ties at the threshold are all kept: harmless) */
    float thresh = -FLT_MAX;
    if (top_k > 0 && top_k < V) {
        for (int i = 0; i < V; i++) probs[i] = logits[i];
        /* partial selection: k passes are fine for the k of interest (tens) */
        for (int k = 0; k < top_k; k++) {
            int m = k;
            for (int i = k + 1; i < V; i++)
                if (probs[i] > probs[m]) m = i;
            float t = probs[k];
            probs[k] = probs[m];
            probs[m] = t;
        }
        thresh = probs[top_k - 1];
    }
    double sum = 0.0;
    for (int i = 0; i < V; i++) {
        float p = logits[i] >= thresh ? expf((logits[i] - logits[best]) / temperature) : 0.0f;
        probs[i] = p;
        sum += p;
    }
    double u = (double)tg_rng_f32(rng) * sum, acc = 0.0;
    for (int i = 0; i < V; i++) {
        acc += probs[i];
        if (probs[i] > 0.0f && u < acc) return i;
    }
    return best;
}

tg_status tg_sample_generate(tg_model *m, tg_tokens *ids, const tg_sample_options *o, tg_rng *rng,
                             tg_sample_emit_fn emit, void *ctx, tg_error *err) {
    tg_status st = TG_OK;
    const int T = tg_model_opts(m)->T, Vp = tg_model_layout(m)->cfg.padded_vocab_size;
    int V = tg_model_layout(m)->cfg.vocab_size;
    if (o->vocab_limit > 0 && o->vocab_limit < V) V = o->vocab_limit;
    int32_t *inputs = calloc((size_t)T, sizeof *inputs);
    float *logits = malloc((size_t)T * (size_t)Vp * sizeof *logits);
    float *probs = malloc((size_t)V * sizeof *probs);
    TG_CHECK_ALLOC(err, inputs);
    TG_CHECK_ALLOC(err, logits);
    TG_CHECK_ALLOC(err, probs);
    if (ids->n == 0) TG_FAIL(err, TG_ERR_ARG, "sample: the prompt needs at least one token");
    for (int k = 0; k < o->n_tokens; k++) {
        /* the last min(n, T) tokens; positions after them are padding a causal model ignores */
        size_t n_ctx = ids->n < (size_t)T ? ids->n : (size_t)T;
        const uint32_t *c = ids->ids + (ids->n - n_ctx);
        for (int t = 0; t < T; t++) inputs[t] = t < (int)n_ctx ? (int32_t)c[t] : 0;
        TG_TRY(tg_model_forward(m, inputs, NULL, 1, err));
        TG_TRY(tg_model_logits_get(m, logits, err));
        int next = tg_sample_pick(logits + (n_ctx - 1) * (size_t)Vp, V, o->temperature, o->top_k, probs, rng);
        TG_TRY(tg_tokens_push(ids, (uint32_t)next, err));
        if (emit) emit(ctx, (uint32_t)next);
    }
cleanup:
    free(inputs);
    free(logits);
    free(probs);
    return st;
}
