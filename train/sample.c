#include "train/sample.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "model/decode.h"

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

/* Nucleus sampling over probs (V entries, unnormalised, sum > 0): draws among the most likely ids
 * whose mass reaches top_p of the total. cand: V entries of scratch. */
typedef struct {
    float p;
    int id;
} cand_t;

static int by_prob_desc(const void *a, const void *b) {
    const cand_t *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int pick_top_p(const float *probs, int V, float top_p, cand_t *cand, tg_rng *rng) {
    int n = 0;
    double sum = 0.0;
    for (int i = 0; i < V; i++)
        if (probs[i] > 0.0f) cand[n++] = (cand_t){probs[i], i}, sum += probs[i];
    qsort(cand, (size_t)n, sizeof *cand, by_prob_desc);
    double keep = 0.0;
    int k = 0;
    while (k < n && keep < (double)top_p * sum) keep += cand[k++].p;
    double u = (double)tg_rng_f32(rng) * keep, acc = 0.0;
    for (int i = 0; i < k; i++) {
        acc += cand[i].p;
        if (u < acc) return cand[i].id;
    }
    return cand[0].id;
}

tg_status tg_sample_generate_cached(tg_model *m, tg_tokens *ids, const tg_sample_options *o, tg_rng *rng,
                                    tg_sample_emit_fn emit, void *ctx, int *n_out, tg_error *err) {
    tg_status st = TG_OK;
    const int T = tg_model_opts(m)->T, Vp = tg_model_layout(m)->cfg.padded_vocab_size;
    int V = tg_model_layout(m)->cfg.vocab_size;
    if (o->vocab_limit > 0 && o->vocab_limit < V) V = o->vocab_limit;
    tg_decoder *d = NULL;
    int32_t *prompt = NULL;
    cand_t *idx = NULL;
    float *logits = malloc((size_t)Vp * sizeof *logits), *probs = malloc((size_t)V * sizeof *probs);
    if (n_out) *n_out = 0;
    TG_CHECK_ALLOC(err, logits);
    TG_CHECK_ALLOC(err, probs);
    if (ids->n == 0) TG_FAIL(err, TG_ERR_ARG, "sample: the prompt needs at least one token");
    if (ids->n + (size_t)o->n_tokens > (size_t)T)
        TG_FAIL(err, TG_ERR_ARG, "sample: %zu prompt + %d new tokens exceed the model's sequence length %d",
                ids->n, o->n_tokens, T);
    if (o->n_tokens == 0) goto cleanup;
    const int use_top_p = o->temperature > 0.0f && o->top_p > 0.0f && o->top_p < 1.0f;
    if (use_top_p) {
        idx = malloc((size_t)V * sizeof *idx);
        TG_CHECK_ALLOC(err, idx);
    }
    prompt = malloc(ids->n * sizeof *prompt);
    TG_CHECK_ALLOC(err, prompt);
    for (size_t i = 0; i < ids->n; i++) prompt[i] = (int32_t)ids->ids[i];
    TG_TRY(tg_decoder_init(&d, m, err));
    TG_TRY(tg_decoder_append(d, prompt, (int)ids->n, logits, err));
    for (int k = 0; k < o->n_tokens; k++) {
        int next;
        if (use_top_p) {
            /* top-k and temperature first (probs holds the kept weights), then the nucleus */
            (void)tg_sample_pick(logits, V, o->temperature, o->top_k, probs, rng);
            next = pick_top_p(probs, V, o->top_p, idx, rng);
        } else {
            next = tg_sample_pick(logits, V, o->temperature, o->top_k, probs, rng);
        }
        TG_TRY(tg_tokens_push(ids, (uint32_t)next, err));
        if (n_out) *n_out = k + 1;
        if (emit) emit(ctx, (uint32_t)next);
        if (o->stop_id >= 0 && next == o->stop_id) break;
        if (k + 1 < o->n_tokens) {
            int32_t in = next;
            TG_TRY(tg_decoder_append(d, &in, 1, logits, err));
        }
    }
cleanup:
    tg_decoder_free(d);
    free(prompt);
    free(idx);
    free(logits);
    free(probs);
    return st;
}
