/* The Llama CPU reference (model.arch=llama): finite-difference check of every parameter
 * tensor's gradient for GQA, MQA and MHA, tied and untied heads (and that a wrong gradient is
 * caught), loss ~ ln V at init, overfitting one batch, thread-count-independent bitwise results,
 * and the config checks. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "model/llama.h"
#include "model_test_util.h"

/* C, T, V not multiples of the GEMM tiles; head size 4 (even, for RoPE). */
enum { L = 2, NH = 4, C = 16, T = 7, V = 50, B = 2, F = 20, SAMPLES = 24 };
static const float FD_EPS = 1e-2f;
static const double TOL = 5e-3;

static tg_model *llama_new(int nkv, int tied, int Bm, int Tm, double theta, tg_error *err) {
    tg_gpt2_config cfg = {.max_seq_len = Tm, .vocab_size = V, .n_layer = L, .n_head = NH, .n_embd = C,
                          .arch = TG_MODEL_ARCH_LLAMA, .n_kv_head = nkv, .ffn_dim = F, .rope_theta = theta,
                          .norm_eps = 1e-5, .tie_embeddings = tied};
    tg_model_options opt = {.device = TG_DEVICE_CPU, .B = Bm, .T = Tm, .pad_multiple = 1};
    tg_model *m = NULL;
    CHECK_OK(tg_gpt2_config_finalize(&cfg, err), err);
    CHECK_OK(tg_model_init(&m, &cfg, &opt, err), err);
    return m;
}

static double loss_at(tg_model *m, const float *params, const int32_t *in, const int32_t *tgt) {
    tg_error err = {0};
    float loss = NAN;
    CHECK_OK(tg_model_params_set(m, params, &err), &err);
    CHECK_OK(tg_model_forward(m, in, tgt, B, &err), &err);
    CHECK_OK(tg_model_loss(m, &loss, &err), &err);
    return loss;
}

/* As test_model_gradcheck.c: per tensor rel = |fd - an| / max(|fd|, |an|) over up to SAMPLES
 * elements; returns the number of tensors above TOL; *named_failed says whether `expect` did. */
static int grad_check(tg_model *m, const float *params0, const float *analytic, const int32_t *in,
                      const int32_t *tgt, int verbose, int expect, int *named_failed) {
    const tg_gpt2_layout *lay = tg_model_layout(m);
    float *p = mt_floats(lay->n_params);
    memcpy(p, params0, lay->n_params * sizeof *p);
    int n_fail = 0;
    tg_rng r;
    tg_rng_init(&r, 1234);
    for (int ti = 0; ti < lay->n_tensors; ti++) {
        const tg_tensor_info *t = &lay->tensors[ti];
        size_t n = t->numel;
        if (t->layer < 0 && t->ndim == 2) n = (size_t)V * C; /* real vocab rows */
        const int ns = n <= SAMPLES ? (int)n : SAMPLES;
        double d2 = 0.0, fd2 = 0.0, an2 = 0.0;
        for (int s = 0; s < ns; s++) {
            const size_t i = t->offset + (n <= SAMPLES ? (size_t)s : tg_rng_below(&r, n));
            /* central differences at steps e and e/2, Richardson-combined: the O(e^2) term
             * cancels (the embeddings feed an RMSNorm directly, whose curvature is large) */
            double d[2];
            for (int k = 0; k < 2; k++) {
                const float orig = p[i], e = k ? FD_EPS / 2 : FD_EPS;
                p[i] = orig + e;
                const double lp = loss_at(m, p, in, tgt);
                p[i] = orig - e;
                const double lm = loss_at(m, p, in, tgt);
                p[i] = orig;
                d[k] = (lp - lm) / ((double)(orig + e) - (double)(orig - e)); /* the fp32 step taken */
            }
            const double fd = (4.0 * d[1] - d[0]) / 3.0, an = analytic[i];
            d2 += (fd - an) * (fd - an);
            fd2 += fd * fd;
            an2 += an * an;
        }
        const double denom = fmax(sqrt(fd2), sqrt(an2));
        const double rel = denom < 1e-7 ? 0.0 : sqrt(d2) / denom;
        const int bad = !(rel <= TOL) || (denom < 1e-7 && t->layer >= 0);
        n_fail += bad;
        if (ti == expect && named_failed) *named_failed = bad;
        if (verbose || bad)
            printf("  %-44s |an|=%.3e |fd|=%.3e rel=%.2e %s\n", t->name, sqrt(an2), sqrt(fd2), rel,
                   bad ? "MISMATCH" : "ok");
    }
    free(p);
    return n_fail;
}

/* Weights N(0, 0.2), norm gains 1 + N(0, 0.1): every tensor gets a clearly non-zero gradient. */
static void big_params(const tg_gpt2_layout *lay, float *params) {
    tg_rng r;
    tg_rng_init(&r, 99);
    memset(params, 0, lay->n_params * sizeof *params);
    for (int ti = 0; ti < lay->n_tensors; ti++) {
        const tg_tensor_info *t = &lay->tensors[ti];
        const size_t ne = t->layer < 0 && t->ndim == 2 ? (size_t)V * C : t->numel;
        for (size_t k = 0; k < ne; k++) {
            const float z = tg_rng_normal(&r);
            params[t->offset + k] = t->ndim == 2 ? 0.3f * z : 1.0f + 0.1f * z;
        }
    }
}

static void check_case(int nkv, int tied, int with_bad) {
    tg_error err = {0};
    printf("n_kv_head=%d tie_embeddings=%d:\n", nkv, tied);
    tg_model *m = llama_new(nkv, tied, B, T, 10000.0, &err);
    if (!m) return;
    const tg_gpt2_layout *lay = tg_model_layout(m);
    const size_t n = lay->n_params;
    CHECK(lay->n_tensors == 1 + 9 * L + 1 + !tied);
    float *params = mt_floats(n), *grads = mt_floats(n), *bad = mt_floats(n);
    big_params(lay, params);
    int32_t in[B * T], tgt[B * T];
    mt_tokens(in, B * T, V, 5);
    mt_tokens(tgt, B * T, V, 6);
    tgt[3] = -1;
    CHECK_OK(tg_model_params_set(m, params, &err), &err);
    CHECK_OK(tg_model_grads_zero(m, &err), &err);
    CHECK_OK(tg_model_forward(m, in, tgt, B, &err), &err);
    CHECK_OK(tg_model_backward(m, 1.0f, &err), &err);
    CHECK_OK(tg_model_grads_get(m, grads, &err), &err);
    const int n_fail = grad_check(m, params, grads, in, tgt, 1, -1, NULL);
    CHECKF(n_fail == 0, "%d tensors disagree (n_kv_head=%d tied=%d)", n_fail, nkv, tied);
    if (with_bad) {
        /* a k_proj gradient doubled, and the square o_proj gradient transposed: both caught */
        const int tk = tg_gpt2_layout_find(lay, "model.layers.1.self_attn.k_proj.weight");
        const int to = tg_gpt2_layout_find(lay, "model.layers.0.self_attn.o_proj.weight");
        CHECK(tk >= 0 && to >= 0);
        memcpy(bad, grads, n * sizeof *bad);
        for (size_t k = 0; k < lay->tensors[tk].numel; k++) bad[lay->tensors[tk].offset + k] *= 2.0f;
        int failed = 0;
        const int nf = grad_check(m, params, bad, in, tgt, 0, tk, &failed);
        CHECKF(failed && nf == 1, "doubled k_proj gradient not detected (%d failed)", nf);
        memcpy(bad, grads, n * sizeof *bad);
        const float *g = grads + lay->tensors[to].offset;
        float *gb = bad + lay->tensors[to].offset;
        for (int i = 0; i < C; i++)
            for (int j = 0; j < C; j++) gb[i * C + j] = g[j * C + i];
        failed = 0;
        const int nt = grad_check(m, params, bad, in, tgt, 0, to, &failed);
        CHECKF(failed && nt == 1, "transposed o_proj gradient not detected (%d failed)", nt);
    }
    free(params);
    free(grads);
    free(bad);
    tg_model_free(m);
}

/* Loss at the documented init ~ ln V; 150 AdamW steps on one batch drive it near zero; the same
 * run with 1 and 2 threads is bitwise identical. */
static float overfit(int threads, float *loss0, float *params_out) {
    tg_error err = {0};
    omp_set_num_threads(threads);
    tg_model *m = llama_new(2, 0, B, T, 10000.0, &err);
    if (!m) return NAN;
    const tg_gpt2_layout *lay = tg_model_layout(m);
    float *p = mt_floats(lay->n_params);
    tg_gpt2_params_init(lay, p, 3);
    CHECK_OK(tg_model_params_set(m, p, &err), &err);
    CHECK_OK(tg_model_opt_init(m, 0, tg_model_n_padded(m), &err), &err);
    int32_t in[B * T], tgt[B * T];
    mt_tokens(in, B * T, V, 11);
    mt_tokens(tgt, B * T, V, 12);
    float loss = NAN;
    for (int step = 1; step <= 150; step++) {
        CHECK_OK(tg_model_grads_zero(m, &err), &err);
        CHECK_OK(tg_model_forward(m, in, tgt, B, &err), &err);
        CHECK_OK(tg_model_loss(m, &loss, &err), &err);
        if (step == 1) *loss0 = loss;
        CHECK_OK(tg_model_backward(m, 1.0f, &err), &err);
        tg_adamw_args a = {.lo = 0, .hi = tg_model_n_padded(m), .lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.95f,
                           .eps = 1e-8f, .weight_decay = 0.0f, .grad_scale = 1.0f, .t = step};
        CHECK_OK(tg_model_adamw(m, &a, &err), &err);
    }
    CHECK_OK(tg_model_params_get(m, params_out, &err), &err);
    free(p);
    tg_model_free(m);
    return loss;
}

static void check_config_errors(void) {
    struct {
        int nh, nkv, c, f;
        double theta, eps;
        int tied;
        const char *want;
    } bad[] = {
        {4, 3, 16, 20, 0, 0, 0, "multiple of n_kv_head"},
        {4, 2, 20, 20, 0, 0, 0, "must be even"},
        {4, 2, 16, 0, 0, 0, 0, "ffn_dim"},
        {4, 2, 16, 20, 0.5, 0, 0, "rope_theta"},
        {4, 2, 16, 20, 0, 2.0, 0, "norm_eps"},
        {4, 2, 16, 20, 0, 0, 2, "tie_embeddings"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tg_error err = {0};
        tg_gpt2_config cfg = {.max_seq_len = 8, .vocab_size = V, .n_layer = 1, .n_head = bad[i].nh,
                              .n_embd = bad[i].c, .arch = TG_MODEL_ARCH_LLAMA, .n_kv_head = bad[i].nkv,
                              .ffn_dim = bad[i].f, .rope_theta = bad[i].theta, .norm_eps = bad[i].eps,
                              .tie_embeddings = bad[i].tied};
        const tg_status st = tg_gpt2_config_finalize(&cfg, &err);
        CHECKF(st == TG_ERR_ARG && strstr(err.msg, bad[i].want), "case %zu: %s", i, err.msg);
    }
    tg_error err = {0};
    tg_gpt2_config ok = {.max_seq_len = 8, .vocab_size = V, .n_layer = 1, .n_head = 4, .n_embd = 16,
                         .arch = TG_MODEL_ARCH_LLAMA, .ffn_dim = 8};
    CHECK_OK(tg_gpt2_config_finalize(&ok, &err), &err);
    CHECK(ok.n_kv_head == 4 && ok.rope_theta == 10000.0 && ok.norm_eps == 1e-5);
    /* Llama 3's RoPE scaling: factor >= 1, 0 < low < high, a positive original context, and no
     * stray keys without a factor */
    const struct {
        double factor, low, high;
        int orig;
        const char *want;
    } rope[] = {
        {0.5, 1, 4, 8192, "rope_factor must be"},
        {8, 4, 1, 8192, "0 < low < high"},
        {8, 0, 4, 8192, "0 < low < high"},
        {8, 1, 4, 0, "rope_original_max_pos must be positive"},
        {0, 1, 4, 8192, "need rope_factor"},
    };
    for (size_t i = 0; i < sizeof rope / sizeof rope[0]; i++) {
        tg_gpt2_config cfg = ok;
        cfg.rope_factor = rope[i].factor, cfg.rope_low_freq_factor = rope[i].low;
        cfg.rope_high_freq_factor = rope[i].high, cfg.rope_original_max_pos = rope[i].orig;
        const tg_status st = tg_gpt2_config_finalize(&cfg, &err);
        CHECKF(st == TG_ERR_ARG && strstr(err.msg, rope[i].want), "rope case %zu: %s", i, err.msg);
    }
    ok.rope_factor = 32, ok.rope_low_freq_factor = 1, ok.rope_high_freq_factor = 4, ok.rope_original_max_pos = 8192;
    CHECK_OK(tg_gpt2_config_finalize(&ok, &err), &err);
}

int main(void) {
    check_config_errors();
    check_case(2, 0, 1); /* GQA, untied */
    check_case(1, 1, 0); /* MQA, tied */
    check_case(4, 0, 0); /* MHA, untied */
    check_case(2, 1, 0); /* GQA, tied */

    tg_error err = {0};
    tg_model *m = llama_new(2, 0, B, T, 10000.0, &err);
    const size_t np = m ? tg_model_layout(m)->n_params : 1;
    tg_model_free(m);
    float *p1 = mt_floats(np), *p2 = mt_floats(np);
    float l0a = NAN, l0b = NAN;
    const float la = overfit(1, &l0a, p1), lb = overfit(2, &l0b, p2);
    printf("init loss %.4f (ln V = %.4f), after 150 steps on one batch %.5f\n", l0a, log((double)V), la);
    CHECKF(fabs(l0a - log((double)V)) < 0.1, "init loss %.4f vs ln V %.4f", l0a, log((double)V));
    CHECKF(la < 0.05f, "did not overfit one batch: %.4f", la);
    CHECKF(la == lb && memcmp(p1, p2, np * sizeof *p1) == 0, "1 vs 2 threads differ: %.8f %.8f", la, lb);
    free(p1);
    free(p2);
    TEST_MAIN_END();
}
