/* KV-cache generation (model/decode.h, tg_sample_generate_cached) against the full recompute,
 * for GPT-2 and for Llama with grouped-query attention (tied and untied) and multi-query
 * attention: logits of every position bitwise equal to tg_model_forward's, greedy tokens identical
 * to tg_sample_generate's; for GPT-2 also the seq_len limit, stop_id, and seeded sampling (top-k,
 * top-p) repeatable. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/decode.h"
#include "model/llama.h"
#include "tg_test.h"
#include "train/sample.h"

enum { T = 48, V = 97, L = 2, NH = 4, C = 32 };

static tg_model *make_model(const tg_gpt2_config *cfg, float *params, int bf16) {
    tg_error err = {0};
    tg_model_options o = {.device = TG_DEVICE_CPU, .B = 1, .T = T, .pad_multiple = 1, .bf16 = bf16};
    tg_model *m = NULL;
    CHECK_OK(tg_model_init(&m, cfg, &o, &err), &err);
    CHECK_OK(tg_model_params_set(m, params, &err), &err);
    return m;
}

/* Parameters for cfg (finalized), scaled up: peaked, position-dependent predictions, so greedy
 * paths differ when anything is wrong. */
static float *make_params(const tg_gpt2_config *cfg, float gain) {
    tg_error err = {0};
    tg_gpt2_layout lay;
    CHECK_OK(tg_gpt2_layout_init(&lay, cfg, &err), &err);
    float *p = malloc(lay.n_params * sizeof *p);
    if (cfg->arch == TG_MODEL_ARCH_LLAMA) tg_llama_params_init(&lay, p, 7);
    else tg_gpt2_params_init(&lay, p, 7);
    for (size_t i = 0; i < lay.n_params; i++) p[i] *= gain;
    tg_gpt2_layout_free(&lay);
    return p;
}

/* 1. Logits at every position bitwise: prompt of 5 in one append, then one token at a time.
 * 2. Greedy: identical tokens to the full-recompute path. Returns the greedy sequence. */
static tg_tokens check_cache(const char *what, tg_model *m, const int32_t *in) {
    tg_error err = {0};
    const int Vp = tg_model_layout(m)->cfg.padded_vocab_size;
    float *full = malloc((size_t)T * Vp * sizeof *full), *dec = malloc((size_t)Vp * sizeof *dec);
    CHECK_OK(tg_model_forward(m, in, NULL, 1, &err), &err);
    CHECK_OK(tg_model_logits_get(m, full, &err), &err);
    tg_decoder *d = NULL;
    CHECK_OK(tg_decoder_init(&d, m, &err), &err);
    CHECK_OK(tg_decoder_append(d, in, 5, dec, &err), &err);
    int diff = memcmp(dec, full + (size_t)4 * Vp, (size_t)V * sizeof *dec) != 0;
    for (int t = 5; t < T; t++) {
        CHECK_OK(tg_decoder_append(d, in + t, 1, dec, &err), &err);
        diff += memcmp(dec, full + (size_t)t * Vp, (size_t)V * sizeof *dec) != 0;
    }
    CHECKF(diff == 0, "%s: %d positions with logits not bitwise equal", what, diff);
    CHECK(tg_decoder_len(d) == T);
    CHECK(tg_decoder_append(d, in, 1, dec, &err) == TG_ERR_ARG); /* full: a clear error */
    CHECKF(strstr(err.msg, "exceed the model's sequence length 48"), "%s", err.msg);
    tg_decoder_free(d);

    tg_sample_options so = {.n_tokens = T - 3, .temperature = 0.0f, .top_k = 0, .stop_id = -1};
    tg_tokens a = {0}, b = {0};
    tg_rng r1, r2;
    tg_rng_init(&r1, 1), tg_rng_init(&r2, 1);
    for (int i = 0; i < 3; i++) {
        CHECK_OK(tg_tokens_push(&a, (uint32_t)in[i], &err), &err);
        CHECK_OK(tg_tokens_push(&b, (uint32_t)in[i], &err), &err);
    }
    CHECK_OK(tg_sample_generate(m, &a, &so, &r1, NULL, NULL, &err), &err);
    int made = 0;
    CHECK_OK(tg_sample_generate_cached(m, &b, &so, &r2, NULL, NULL, &made, &err), &err);
    CHECK(made == T - 3 && a.n == (size_t)T && b.n == (size_t)T);
    CHECKF(memcmp(a.ids, b.ids, a.n * sizeof *a.ids) == 0, "%s: greedy tokens differ", what);
    int distinct = 0; /* the check means something only if the tokens vary */
    for (size_t i = 4; i < b.n; i++) distinct += b.ids[i] != b.ids[i - 1];
    CHECKF(distinct >= 5, "%s: only %d changes in the greedy sequence", what, distinct);
    printf("%s: logits bitwise at %d positions, %zu greedy tokens identical (%d changes)\n", what, T, b.n - 3,
           distinct);
    tg_tokens_free(&b);
    free(full), free(dec);
    return a;
}

int main(void) {
    tg_error err = {0};
    tg_gpt2_config cfg = {.max_seq_len = T, .vocab_size = V, .n_layer = L, .n_head = NH, .n_embd = C};
    CHECK_OK(tg_gpt2_config_finalize(&cfg, &err), &err);
    float *p = make_params(&cfg, 8.0f);
    tg_model *m = make_model(&cfg, p, 0);
    int32_t in[T];
    for (int t = 0; t < T; t++) in[t] = (t * 31 + 7) % V;

    /* Llama: GQA untied, GQA tied, MQA tied (the cache holds n_kv_head heads). */
    const struct {
        const char *what;
        int nkv, tied;
        double rope_factor;
    } lc[] = {{"llama gqa untied", 2, 0, 0},
              {"llama gqa tied", 2, 1, 0},
              {"llama mqa tied", 1, 1, 0},
              {"llama gqa untied, llama3 rope", 2, 0, 8}};
    for (size_t i = 0; i < sizeof lc / sizeof lc[0]; i++) {
        tg_gpt2_config lcfg = {.max_seq_len = T, .vocab_size = V, .n_layer = L, .n_head = NH, .n_embd = C,
                               .arch = TG_MODEL_ARCH_LLAMA, .n_kv_head = lc[i].nkv, .ffn_dim = 40,
                               .rope_theta = 500.0, .norm_eps = 1e-5, .tie_embeddings = lc[i].tied};
        if (lc[i].rope_factor != 0) { /* original context 16: scaled frequencies within the 48 positions */
            lcfg.rope_factor = lc[i].rope_factor, lcfg.rope_low_freq_factor = 1, lcfg.rope_high_freq_factor = 4;
            lcfg.rope_original_max_pos = 16;
        }
        CHECK_OK(tg_gpt2_config_finalize(&lcfg, &err), &err);
        float *lp = make_params(&lcfg, 8.0f);
        tg_model *lm = make_model(&lcfg, lp, 0);
        tg_tokens g = check_cache(lc[i].what, lm, in);
        tg_tokens_free(&g);
        tg_model_free(lm);
        free(lp);
    }

    tg_tokens a = check_cache("gpt2", m, in);
    tg_decoder *d = NULL;
    tg_rng r1, r2;
    tg_rng_init(&r1, 1), tg_rng_init(&r2, 1);
    tg_sample_options so;
    int made = 0;

    /* 3. Beyond seq_len: an error, nothing generated. */
    tg_tokens c = {0};
    CHECK_OK(tg_tokens_push(&c, 1, &err), &err);
    so = (tg_sample_options){.n_tokens = T, .temperature = 0.0f, .top_k = 0, .stop_id = -1};
    CHECK(tg_sample_generate_cached(m, &c, &so, &r2, NULL, NULL, NULL, &err) == TG_ERR_ARG);
    CHECK(c.n == 1);

    /* 4. stop_id: stops right after emitting it (the greedy sequence's 4th new token). */
    so.n_tokens = 20;
    so.stop_id = (int)a.ids[6];
    tg_tokens e = {0};
    for (int i = 0; i < 3; i++) CHECK_OK(tg_tokens_push(&e, (uint32_t)in[i], &err), &err);
    CHECK_OK(tg_sample_generate_cached(m, &e, &so, &r2, NULL, NULL, &made, &err), &err);
    CHECKF(e.n <= 7 && e.ids[e.n - 1] == (uint32_t)so.stop_id && made == (int)e.n - 3, "n %zu", e.n);

    /* 5. Seeded sampling with top-k and top-p: the same seed gives the same tokens. */
    so = (tg_sample_options){.n_tokens = 30, .temperature = 1.0f, .top_k = 20, .top_p = 0.9f, .stop_id = -1};
    tg_tokens s1 = {0}, s2 = {0};
    CHECK_OK(tg_tokens_push(&s1, 3, &err), &err);
    CHECK_OK(tg_tokens_push(&s2, 3, &err), &err);
    tg_rng_init(&r1, 42), tg_rng_init(&r2, 42);
    CHECK_OK(tg_sample_generate_cached(m, &s1, &so, &r1, NULL, NULL, NULL, &err), &err);
    CHECK_OK(tg_sample_generate_cached(m, &s2, &so, &r2, NULL, NULL, NULL, &err), &err);
    CHECK(s1.n == 31 && memcmp(s1.ids, s2.ids, s1.n * sizeof *s1.ids) == 0);
    for (size_t i = 0; i < s1.n; i++) CHECK(s1.ids[i] < (uint32_t)V);

    /* 6. bf16 emulation is refused by the decoder (the caller falls back to the full path). */
    tg_model *m16 = make_model(&cfg, p, 1);
    CHECK(tg_decoder_init(&d, m16, &err) == TG_ERR_ARG);
    tg_model_free(m16);

    tg_tokens_free(&a), tg_tokens_free(&c), tg_tokens_free(&e);
    tg_tokens_free(&s1), tg_tokens_free(&s2);
    free(p);
    tg_model_free(m);
    TEST_MAIN_END();
}
