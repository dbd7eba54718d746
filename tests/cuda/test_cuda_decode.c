/* tests/cuda/test_cuda_decode.c — the CUDA KV-cache decoder (model/decode.h,
 * model/cuda/cuda_decode.cu) for GPT-2 and Llama against the CUDA full forward, the CPU decoder
 * and the full-recompute sampler.
 *
 * GPT-2 (L=2, V=97, T=40), head sizes 16 and 64, fp32 and bf16, with GPT-2's init plus noise on
 * every bias and LayerNorm parameter, scaled up for peaked, position-dependent predictions: in
 * fp32 every tensor by 8 (as tests/train/test_sample_cache.c; attention is then nearly one-hot),
 * in bf16 the matrices and wpe by 8, wte (the tied LM head too) by 4, the 1-D tensors not at all:
 * attention scores of order 1 (with every tensor scaled, scores of ~100 would turn bf16's
 * rounding of q and k, which differs between two matmul shapes in the last bit, into different
 * attention winners), block outputs that outweigh the token's own embedding (with only wte and
 * wpe scaled, or wte by 16, the tied head's greedy choice repeats the input token: 0 or 1
 * changes in 37 tokens, measured with this file's cases on the CPU backend; with these gains 26
 * and 32).
 * Llama (L=2, V=97, T=40, F = 2C + 48, rope_theta 500): grouped-query (4 query heads over 2 KV
 * heads, 8 over 2), multi-query (4 over 1, 2 over 1) and multi-head attention, head sizes 16 and
 * 64, tied and untied LM heads, plain and Llama 3 scaled RoPE (original context 16 < T, so all
 * three frequency bands occur), fp32 and bf16; Llama's init plus noise on the RMSNorm weights,
 * matrices x8 and the embedding and LM head x16 (run_llama_case says why), in both dtypes. The
 * greedy sequences change token 24 to 36 times in 37 (measured with these parameters on the CPU
 * backend; the one configuration that repeated its token, MQA 4/1 tied at C=64, is not used).
 * Per case:
 *  (a) logits at every position: a prompt of 5 tokens in one append (the many-row path), then
 *      one token per append (the first one-row append runs plainly, the second captures the CUDA
 *      graph, the rest replay it), against the logits of one CUDA full forward over the same
 *      tokens (tg_model_logits_get). Then a decoder takes all T tokens in one append; and
 *      another repeats the first one's appends, which must give the same bits.
 *  (b) fp32: the same logits from the CPU decoder on the same parameters.
 *  (c) greedy tokens of tg_sample_generate_cached against tg_sample_generate (full recompute).
 *  (d) limits: appending past T is TG_ERR_ARG with the message, an id >= V TG_ERR_DATA, n = 0
 *      TG_ERR_ARG, and the cache length is unchanged by a refused append.
 *
 * Tolerances, norm-wise over a row's V real logits (||a - b|| / ||b||):
 *   fp32 1e-4: every path computes in fp32 with fp32 accumulation; they differ only in the order
 *     of sums (cuBLASLt may choose another algorithm for M = 1 than for M = T, and the decoder's
 *     attention kernel sums in its own order) and in expf implementations, which gives ~1e-6;
 *     a wrong kernel (a wrong position, head, cache row) gives O(1).
 *   bf16 2e-2: as test_cuda_model's and test_cuda_llama's bf16 logits: activations are stored in
 *     bf16 (8 significant bits) some ten times along the path, and the two paths round different
 *     values wherever their sums run in another order (matmuls at another M; attention: flash or
 *     cuDNN round the probabilities to bf16, the decoder keeps them in fp32), so a few 1e-3 are
 *     expected. Llama's RoPE adds no difference of its own: both paths rotate their q|k|v
 *     projection with the same fp32 tables and the same arithmetic (llama_rope_raw_pair).
 * Greedy ties: where the two paths' logits differ by e with ||e|| <= tol * ||row|| (what (a)
 * checks on its tokens), they can only pick different ids whose logits are within
 * 2 * tol * ||row|| of each other (|e_i| + |e_j| <= 2 ||e||). The
 * sequences must be equal, or first differ at a position whose full-recompute logits have such a
 * near-tie between the two picks (then the rest is not compared: the prefixes differ). The
 * number of changes in the sequence is checked too, so that the comparison means something.
 *
 * Without a CUDA device: prints "SKIP: no CUDA device" and exits 77. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "cuda_test.h"
#include "model/decode.h"
#include "model/llama.h"
#include "cuda_model_test.h"
#include "tg_test.h"
#include "train/sample.h"

enum { T = 40, V = 97, L = 2, PROMPT = 5 };

static double norm(const float *a, int n) {
    double r = 0.0;
    for (int i = 0; i < n; i++) r += (double)a[i] * a[i];
    return sqrt(r);
}

static tg_model *make_model(const tg_gpt2_config *cfg, const float *params, int device, int bf16) {
    tg_error err = {0};
    tg_model_options o = {.device = device, .B = 1, .T = T, .pad_multiple = 1, .bf16 = bf16};
    tg_model *m = NULL;
    CHECK_OK(tg_model_init(&m, cfg, &o, &err), &err);
    if (m) CHECK_OK(tg_model_params_set(m, params, &err), &err);
    return m;
}

/* Logits of positions PROMPT-1 .. T-1 through a decoder of m: out (T, Vp), rows < PROMPT-1 unset. */
static void decode_all(tg_model *m, const int32_t *in, float *out, int Vp) {
    tg_error err = {0};
    tg_decoder *d = NULL;
    CHECK_OK(tg_decoder_init(&d, m, &err), &err);
    if (!d) return;
    CHECK_OK(tg_decoder_append(d, in, PROMPT, out + (size_t)(PROMPT - 1) * Vp, &err), &err);
    for (int t = PROMPT; t < T; t++) CHECK_OK(tg_decoder_append(d, in + t, 1, out + (size_t)t * Vp, &err), &err);
    CHECK(tg_decoder_len(d) == T);
    tg_decoder_free(d);
}

/* The largest per-row error over positions PROMPT-1 .. T-1; prints the positions above tol: the
 * prompt's last row is PROMPT-1, the first one-row append (plain launches) PROMPT, the second
 * (captured into the CUDA graph) PROMPT+1, graph replays after it. */
static double max_row_err(const float *a, const float *b, int Vp, double tol) {
    double worst = 0.0;
    for (int t = PROMPT - 1; t < T; t++) {
        const double e = rel_err(a + (size_t)t * Vp, b + (size_t)t * Vp, V);
        if (!(e <= worst)) worst = e; /* NaN sticks */
        if (!(e <= tol)) printf("  position %d: row error %.3g\n", t, e);
    }
    return worst;
}

/* (c): greedy cached vs full recompute from the prompt in[0, 3); tol as in (a). */
static void check_greedy(const char *name, tg_model *m, const int32_t *in, int Vp, double tol) {
    tg_error err = {0};
    tg_sample_options so = {.n_tokens = T - 3, .temperature = 0.0f, .top_k = 0, .stop_id = -1};
    tg_tokens u = {0}, c = {0};
    tg_rng r1, r2;
    tg_rng_init(&r1, 1), tg_rng_init(&r2, 1);
    for (int i = 0; i < 3; i++) {
        CHECK_OK(tg_tokens_push(&u, (uint32_t)in[i], &err), &err);
        CHECK_OK(tg_tokens_push(&c, (uint32_t)in[i], &err), &err);
    }
    CHECK_OK(tg_sample_generate(m, &u, &so, &r1, NULL, NULL, &err), &err);
    int made = 0;
    CHECK_OK(tg_sample_generate_cached(m, &c, &so, &r2, NULL, NULL, &made, &err), &err);
    CHECK(made == T - 3 && u.n == (size_t)T && c.n == (size_t)T);
    if (u.n != (size_t)T || c.n != (size_t)T) goto done;
    int first = -1;
    for (int i = 3; i < T && first < 0; i++)
        if (u.ids[i] != c.ids[i]) first = i;
    if (first >= 0) {
        /* the full recompute's logits at position first - 1: one forward over its sequence */
        int32_t seq[T];
        float *full = malloc((size_t)T * Vp * sizeof *full);
        for (int i = 0; i < T; i++) seq[i] = (int32_t)u.ids[i];
        CHECK_OK(tg_model_forward(m, seq, NULL, 1, &err), &err);
        CHECK_OK(tg_model_logits_get(m, full, &err), &err);
        const float *row = full + (size_t)(first - 1) * Vp;
        const double gap = (double)row[u.ids[first]] - row[c.ids[first]], bound = 2.0 * tol * norm(row, V);
        CHECKF(gap <= bound, "%s: greedy tokens differ at %d (%u vs %u) with a logit gap %.3g above the tie bound %.3g",
               name, first, u.ids[first], c.ids[first], gap, bound);
        printf("  greedy: a near-tie at position %d (gap %.3g <= %.3g): the sequences part there\n", first, gap,
               bound);
        free(full);
    }
    int distinct = 0;
    for (int i = 4; i < (first < 0 ? T : first); i++) distinct += u.ids[i] != u.ids[i - 1];
    CHECKF(first >= 0 || distinct >= 5, "%s: only %d changes in the greedy sequence", name, distinct);
    printf("  greedy: %d of %d tokens identical (%d changes)\n", (first < 0 ? T : first) - 3, T - 3, distinct);
done:
    tg_tokens_free(&u), tg_tokens_free(&c);
}

/* (d) */
static void check_limits(tg_model *m, const int32_t *in, int Vp) {
    tg_error err = {0};
    tg_decoder *d = NULL;
    float *logits = malloc((size_t)Vp * sizeof *logits);
    int32_t bad = V;
    CHECK_OK(tg_decoder_init(&d, m, &err), &err);
    if (!d) goto done;
    CHECK(tg_decoder_append(d, in, 0, logits, &err) == TG_ERR_ARG);
    CHECK(tg_decoder_append(d, &bad, 1, logits, &err) == TG_ERR_DATA);
    CHECK(tg_decoder_append(d, in, T + 1, logits, &err) == TG_ERR_ARG);
    CHECK(tg_decoder_len(d) == 0);
    CHECK_OK(tg_decoder_append(d, in, T - 1, logits, &err), &err);
    CHECK(tg_decoder_append(d, in, 2, logits, &err) == TG_ERR_ARG);
    CHECK(tg_decoder_len(d) == T - 1);
    CHECK_OK(tg_decoder_append(d, in, 1, logits, &err), &err);
    CHECK(tg_decoder_len(d) == T);
    CHECK(tg_decoder_append(d, in, 1, logits, &err) == TG_ERR_ARG);
    CHECKF(strstr(err.msg, "exceed the model's sequence length 40") != NULL, "%s", err.msg);
    CHECK(tg_decoder_len(d) == T);
done:
    tg_decoder_free(d);
    free(logits);
}

/* (a)-(d) for one model: cfg finalized, p its parameters, in T tokens. */
static void check_model(const char *name, const tg_gpt2_config *cfg, const float *p, const int32_t *in, int bf16) {
    tg_error err = {0};
    const int Vp = cfg->padded_vocab_size;
    const double tol = bf16 ? 2e-2 : 1e-4;
    float *full = malloc((size_t)T * Vp * sizeof *full), *dec = malloc((size_t)T * Vp * sizeof *dec);
    float *cpu_dec = malloc((size_t)T * Vp * sizeof *cpu_dec);
    tg_model *m = make_model(cfg, p, TG_DEVICE_CUDA, bf16);
    if (!m) goto done;
    printf("  backend: %s\n", tg_model_describe(m));

    /* (a) */
    CHECK_OK(tg_model_forward(m, in, NULL, 1, &err), &err);
    CHECK_OK(tg_model_logits_get(m, full, &err), &err);
    decode_all(m, in, dec, Vp);
    double e = max_row_err(dec, full, Vp, tol);
    CHECKF(e <= tol, "%s: decoder vs full forward logits: worst row error %.3g > %.3g", name, e, tol);
    printf("  decoder vs CUDA full forward: worst row error %.3g (tol %.0e)\n", e, tol);
    {
        tg_decoder *d = NULL; /* all T tokens in one append: the many-row path at full size */
        float *last = malloc((size_t)Vp * sizeof *last);
        CHECK_OK(tg_decoder_init(&d, m, &err), &err);
        if (d) CHECK_OK(tg_decoder_append(d, in, T, last, &err), &err);
        e = rel_err(last, full + (size_t)(T - 1) * Vp, V);
        CHECKF(e <= tol, "%s: one append of T tokens: error %.3g > %.3g", name, e, tol);
        tg_decoder_free(d);
        free(last);
    }
    /* a second decoder (a new graph) computes the same bits: no atomics, fixed orders */
    decode_all(m, in, cpu_dec, Vp);
    CHECKF(memcmp(dec + (size_t)(PROMPT - 1) * Vp, cpu_dec + (size_t)(PROMPT - 1) * Vp,
                  (size_t)(T - PROMPT + 1) * Vp * sizeof *dec) == 0,
           "%s: two decoders on the same tokens differ", name);

    /* (b) */
    if (!bf16) {
        tg_model *cpu = make_model(cfg, p, TG_DEVICE_CPU, 0);
        if (cpu) {
            decode_all(cpu, in, cpu_dec, Vp);
            e = max_row_err(dec, cpu_dec, Vp, tol);
            CHECKF(e <= tol, "%s: CUDA vs CPU decoder logits: worst row error %.3g > %.3g", name, e, tol);
            printf("  CUDA decoder vs CPU decoder: worst row error %.3g (tol %.0e)\n", e, tol);
        }
        tg_model_free(cpu);
    }

    /* (c), (d) */
    check_greedy(name, m, in, Vp, tol);
    check_limits(m, in, Vp);
done:
    tg_model_free(m);
    free(full), free(dec), free(cpu_dec);
}

static void run_gpt2_case(const char *name, int bf16, int n_head, int n_embd) {
    tg_error err = {0};
    tg_gpt2_config cfg = {.max_seq_len = T, .vocab_size = V, .n_layer = L, .n_head = n_head, .n_embd = n_embd};
    printf("case gpt2, %s\n", name);
    CHECK_OK(tg_gpt2_config_finalize(&cfg, &err), &err);
    tg_gpt2_layout lay;
    CHECK_OK(tg_gpt2_layout_init(&lay, &cfg, &err), &err);
    float *p = malloc(lay.n_params * sizeof *p);
    int32_t in[T];
    tg_rng r;
    tg_rng_init(&r, 99);
    tg_gpt2_params_init(&lay, p, 7);
    for (int k = 0; k < lay.n_tensors; k++) {
        const tg_tensor_info *ti = &lay.tensors[k];
        const float gain = !bf16 ? 8.0f : k == TG_GPT2_WTE ? 4.0f : ti->ndim == 2 ? 8.0f : 1.0f;
        for (size_t i = 0; i < ti->numel; i++) {
            if (ti->ndim == 1) p[ti->offset + i] += 0.1f * tg_rng_normal(&r);
            p[ti->offset + i] *= gain;
        }
    }
    for (int t = 0; t < T; t++) in[t] = (int32_t)tg_rng_below(&r, V);
    check_model(name, &cfg, p, in, bf16);
    tg_gpt2_layout_free(&lay);
    free(p);
}

/* Llama: n_head query heads over n_kv KV heads, tied or untied LM head, Llama 3 RoPE scaling when
 * rope_factor > 0 (original context 16 < T: all three frequency bands occur). */
static void run_llama_case(const char *name, int bf16, int n_head, int n_kv, int n_embd, int tied,
                           double rope_factor) {
    tg_error err = {0};
    tg_gpt2_config cfg = {.max_seq_len = T, .vocab_size = V, .n_layer = L, .n_head = n_head, .n_embd = n_embd,
                          .arch = TG_MODEL_ARCH_LLAMA, .n_kv_head = n_kv, .ffn_dim = 2 * n_embd + 48,
                          .rope_theta = 500.0, .tie_embeddings = tied};
    if (rope_factor > 0) {
        cfg.rope_factor = rope_factor;
        cfg.rope_low_freq_factor = 1.0;
        cfg.rope_high_freq_factor = 4.0;
        cfg.rope_original_max_pos = 16;
    }
    printf("case llama, %s\n", name);
    CHECK_OK(tg_gpt2_config_finalize(&cfg, &err), &err);
    tg_gpt2_layout lay;
    CHECK_OK(tg_gpt2_layout_init(&lay, &cfg, &err), &err);
    float *p = malloc(lay.n_params * sizeof *p);
    const int head = tg_llama_head_index(&cfg);
    int32_t in[T];
    tg_rng r;
    tg_rng_init(&r, 99);
    tg_llama_params_init(&lay, p, 7);
    for (int k = 0; k < lay.n_tensors; k++) {
        const tg_tensor_info *ti = &lay.tensors[k];
        /* matrices x8: attention scores with a standard deviation of ~1.5 (head size 16) to ~3
         * (64), estimated from the init's scales (peaked, not one-hot), and block outputs that
         * outweigh the embedding, so every position's prediction depends on its context; the
         * embedding and the LM head x16: logits with a spread of a few units */
        const float gain = ti->ndim == 1 ? 1.0f : k == TG_LLAMA_EMBED || k == head ? 16.0f : 8.0f;
        for (size_t i = 0; i < ti->numel; i++) {
            if (ti->ndim == 1) p[ti->offset + i] += 0.1f * tg_rng_normal(&r); /* RMSNorm weights */
            p[ti->offset + i] *= gain;
        }
    }
    for (int t = 0; t < T; t++) in[t] = (int32_t)tg_rng_below(&r, V);
    check_model(name, &cfg, p, in, bf16);
    tg_gpt2_layout_free(&lay);
    free(p);
}

int main(void) {
    cuda_test_require_device();
    run_gpt2_case("fp32, head size 16", 0, 4, 64);
    run_gpt2_case("fp32, head size 64", 0, 2, 128);
    run_gpt2_case("bf16, head size 16", 1, 4, 64);
    run_gpt2_case("bf16, head size 64", 1, 2, 128);
    /* name, bf16, n_head, n_kv_head, n_embd, tied, rope_factor */
    run_llama_case("fp32, GQA 4/2, head size 16, untied, llama3 rope", 0, 4, 2, 64, 0, 8.0);
    run_llama_case("fp32, MQA 4/1, head size 16, untied", 0, 4, 1, 64, 0, 0.0);
    run_llama_case("fp32, MHA 2/2, head size 64, untied", 0, 2, 2, 128, 0, 0.0);
    run_llama_case("fp32, GQA 8/2, head size 16, tied, llama3 rope", 0, 8, 2, 128, 1, 8.0);
    run_llama_case("bf16, GQA 4/2, head size 16, untied, llama3 rope", 1, 4, 2, 64, 0, 8.0);
    run_llama_case("bf16, MQA 2/1, head size 64, tied", 1, 2, 1, 128, 1, 0.0);
    TEST_MAIN_END();
}
