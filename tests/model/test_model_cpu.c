/* CPU backend contracts: padded vocab and ignored targets, thread-count determinism, gradient
 * accumulation and the grad-ready hook, sharded (ZeRO-style) AdamW and its state round trip, and
 * the bf16-storage emulation (opt.bf16) that serves as the reference for bf16 GPU curves. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "model_test_util.h"

/* Odd shapes on purpose: B*T and C are not multiples of the kernels' tile sizes. */
enum { L = 2, NH = 4, C = 40, T = 20, V = 300, B = 3 };

/* grads_zero + forward + backward(scale) on rows [0, Bu) of in/tgt. */
static void fwd_bwd(tg_model *m, const int32_t *in, const int32_t *tgt, int Bu, float scale,
                    int zero, float *loss) {
    tg_error err = {0};
    if (zero) CHECK_OK(tg_model_grads_zero(m, &err), &err);
    CHECK_OK(tg_model_forward(m, in, tgt, Bu, &err), &err);
    if (loss) CHECK_OK(tg_model_loss(m, loss, &err), &err);
    CHECK_OK(tg_model_backward(m, scale, &err), &err);
}

static double max_abs(const float *x, size_t n) {
    double mx = 0.0;
    for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs(x[i]));
    return mx;
}

/* 4: columns >= V never matter; targets == -1 are ignored. */
static void test_padded_vocab_and_ignore(void) {
    tg_error err = {0};
    tg_model *m = mt_model_new(L, NH, C, T, V, B, 1, 21);
    if (!m) return;
    const tg_gpt2_layout *lay = tg_model_layout(m);
    const int Vp = lay->cfg.padded_vocab_size;
    const size_t n = lay->n_params;
    int32_t in[B * T], tgt[B * T];
    mt_tokens(in, B * T, V, 1);
    mt_tokens(tgt, B * T, V, 2);
    tgt[0] = tgt[7] = tgt[T + 3] = tgt[2 * T + 19] = -1;
    float loss0 = NAN, loss1 = NAN;
    float *g0 = mt_floats(n), *g1 = mt_floats(n), *p = mt_floats(n);
    float *logits = mt_floats((size_t)B * T * Vp);

    fwd_bwd(m, in, tgt, B, 1.0f, 1, &loss0);
    CHECK_OK(tg_model_grads_get(m, g0, &err), &err);
    CHECK_OK(tg_model_logits_get(m, logits, &err), &err);
    /* The loss is the mean cross-entropy over the real vocab and the non-ignored positions. */
    double sum = 0.0;
    int n_valid = 0;
    for (int i = 0; i < B * T; i++) {
        if (tgt[i] < 0) continue;
        const float *z = logits + (size_t)i * Vp;
        double mx = -INFINITY, s = 0.0;
        for (int v = 0; v < V; v++) mx = fmax(mx, z[v]);
        for (int v = 0; v < V; v++) s += exp(z[v] - mx);
        sum += mx + log(s) - z[tgt[i]];
        n_valid++;
    }
    CHECK(n_valid == B * T - 4);
    CHECKF(fabs(loss0 - sum / n_valid) < 1e-5, "loss %.7f, from logits %.7f", loss0, sum / n_valid);
    /* padded wte rows (lm-head columns >= V) get exactly zero gradient */
    const float *gpad = g0 + lay->tensors[0].offset + (size_t)V * C;
    CHECK(max_abs(gpad, (size_t)(Vp - V) * C) == 0.0);

    /* Large values in the padded wte rows: their logits are huge, yet loss and all gradients
     * are unchanged, bit for bit. */
    CHECK_OK(tg_model_params_get(m, p, &err), &err);
    tg_rng r;
    tg_rng_init(&r, 3);
    for (size_t k = (size_t)V * C; k < (size_t)Vp * C; k++) p[k] = 30.0f + 10.0f * tg_rng_normal(&r);
    CHECK_OK(tg_model_params_set(m, p, &err), &err);
    fwd_bwd(m, in, tgt, B, 1.0f, 1, &loss1);
    CHECK_OK(tg_model_grads_get(m, g1, &err), &err);
    CHECK_OK(tg_model_logits_get(m, logits, &err), &err);
    CHECK(max_abs(logits + V, (size_t)(Vp - V)) > 10.0); /* the padded columns are really there */
    CHECKF(loss1 == loss0, "loss changed %.8f -> %.8f", loss0, loss1);
    CHECK(memcmp(g0, g1, n * sizeof *g0) == 0);

    /* All targets ignored: loss 0 and backward adds nothing. */
    for (int i = 0; i < B * T; i++) tgt[i] = -1;
    fwd_bwd(m, in, tgt, B, 1.0f, 1, &loss1);
    CHECK_OK(tg_model_grads_get(m, g1, &err), &err);
    CHECK(loss1 == 0.0f);
    CHECK(max_abs(g1, n) == 0.0);
    /* Out-of-range tokens are rejected, not read out of bounds. */
    in[5] = V;
    CHECK(tg_model_forward(m, in, NULL, B, &err) == TG_ERR_DATA);
    free(g0);
    free(g1);
    free(p);
    free(logits);
    tg_model_free(m);
}

/* Causality and T < max_seq_len: running the first T2 positions of a sequence gives the same
 * logits as the first T2 positions of the full run, and wpe rows >= T2 get no gradient. */
static void test_causal_short_T(void) {
    tg_error err = {0};
    enum { T2 = 13 };
    tg_model *full = mt_model_new_t(L, NH, C, T, T, V, B, 1, 61);
    tg_model *part = mt_model_new_t(L, NH, C, T, T2, V, B, 1, 61);
    if (!full || !part) goto cleanup;
    const tg_gpt2_layout *lay = tg_model_layout(full);
    const int Vp = lay->cfg.padded_vocab_size;
    int32_t in[B * T], in2[B * T2], tgt2[B * T2];
    mt_tokens(in, B * T, V, 71);
    mt_tokens(tgt2, B * T2, V, 72);
    for (int b = 0; b < B; b++) memcpy(in2 + b * T2, in + b * T, T2 * sizeof *in);
    float *lf = mt_floats((size_t)B * T * Vp), *lp = mt_floats((size_t)B * T2 * Vp);
    float *g = mt_floats(lay->n_params);
    CHECK_OK(tg_model_forward(full, in, NULL, B, &err), &err);
    CHECK_OK(tg_model_logits_get(full, lf, &err), &err);
    fwd_bwd(part, in2, tgt2, B, 1.0f, 1, NULL);
    CHECK_OK(tg_model_logits_get(part, lp, &err), &err);
    double dmax = 0.0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T2; t++)
            for (int v = 0; v < Vp; v++)
                dmax = fmax(dmax, fabs(lf[((size_t)b * T + t) * Vp + v] -
                                       lp[((size_t)b * T2 + t) * Vp + v]));
    CHECKF(dmax <= 1e-6, "logits differ by %.3e", dmax);
    CHECK_OK(tg_model_grads_get(part, g, &err), &err);
    const float *gwpe = g + lay->tensors[1].offset;
    CHECK(max_abs(gwpe + (size_t)T2 * C, (size_t)(T - T2) * C) == 0.0);
    CHECK(max_abs(gwpe + (size_t)(T2 - 1) * C, (size_t)C) > 0.0);
    CHECK(tg_model_loss(full, &(float){0}, &err) == TG_ERR_ARG); /* no targets, no loss */
    free(lf);
    free(lp);
    free(g);
cleanup:
    tg_model_free(full);
    tg_model_free(part);
}

/* 5: a few training steps give bitwise identical results for 1, 2 and 3 threads. */
typedef struct {
    float *params, *grads, *logits;
    float loss;
    double sqnorm;
} run_result;

static run_result run_steps(int threads) {
    tg_error err = {0};
    omp_set_num_threads(threads);
    run_result res = {0};
    tg_model *m = mt_model_new(L, NH, C, T, V, B, 64, 31);
    if (!m) return res;
    const size_t n = tg_model_n_padded(m), np = tg_model_layout(m)->n_params;
    const int Vp = tg_model_layout(m)->cfg.padded_vocab_size;
    int32_t in[B * T], tgt[B * T];
    CHECK_OK(tg_model_opt_init(m, 0, n, &err), &err);
    tg_adamw_args a = {.lo = 0, .hi = n, .lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                       .weight_decay = 0.1f, .grad_scale = 1.0f};
    for (int step = 1; step <= 3; step++) {
        mt_tokens(in, B * T, V, 100 + step);
        mt_tokens(tgt, B * T, V, 200 + step);
        fwd_bwd(m, in, tgt, B, 1.0f, 1, &res.loss);
        CHECK_OK(tg_model_grad_sqnorm(m, 0, n, &res.sqnorm, &err), &err);
        a.t = step;
        a.grad_scale = (float)(1.0 / (1.0 + sqrt(res.sqnorm)));
        CHECK_OK(tg_model_adamw(m, &a, &err), &err);
    }
    res.params = mt_floats(np);
    res.grads = mt_floats(np);
    res.logits = mt_floats((size_t)B * T * Vp);
    CHECK_OK(tg_model_params_get(m, res.params, &err), &err);
    CHECK_OK(tg_model_grads_get(m, res.grads, &err), &err);
    CHECK_OK(tg_model_logits_get(m, res.logits, &err), &err);
    tg_model_free(m);
    return res;
}

static void test_determinism(void) {
    const int max_threads = omp_get_max_threads();
    tg_model *m = mt_model_new(L, NH, C, T, V, B, 64, 31);
    if (!m) return;
    const size_t np = tg_model_layout(m)->n_params;
    const size_t nl = (size_t)B * T * tg_model_layout(m)->cfg.padded_vocab_size;
    tg_model_free(m);
    run_result r1 = run_steps(1);
    for (int threads = 2; threads <= 3; threads++) {
        run_result rn = run_steps(threads);
        if (!r1.params || !rn.params) break;
        CHECKF(r1.loss == rn.loss, "threads=%d loss %.9g vs %.9g", threads, rn.loss, r1.loss);
        CHECKF(r1.sqnorm == rn.sqnorm, "threads=%d", threads);
        CHECKF(memcmp(r1.params, rn.params, np * sizeof(float)) == 0, "threads=%d params", threads);
        CHECKF(memcmp(r1.grads, rn.grads, np * sizeof(float)) == 0, "threads=%d grads", threads);
        CHECKF(memcmp(r1.logits, rn.logits, nl * sizeof(float)) == 0, "threads=%d logits", threads);
        free(rn.params);
        free(rn.grads);
        free(rn.logits);
    }
    free(r1.params);
    free(r1.grads);
    free(r1.logits);
    omp_set_num_threads(max_threads);
}

/* 6: backward(0.5) on each half == backward(1.0) on the whole batch; hook ranges. */
typedef struct {
    int n;
    size_t lo[64], hi[64];
} hook_log;

static void hook_record(void *ctx, size_t lo, size_t hi) {
    hook_log *h = ctx;
    if (h->n < 64) {
        h->lo[h->n] = lo;
        h->hi[h->n] = hi;
    }
    h->n++;
}

static void test_accumulation_and_hook(void) {
    tg_error err = {0};
    enum { B4 = 4 };
    tg_model *m = mt_model_new(L, NH, C, T, V, B4, 1, 41);
    if (!m) return;
    const tg_gpt2_layout *lay = tg_model_layout(m);
    const size_t n = lay->n_params;
    int32_t in[B4 * T], tgt[B4 * T];
    mt_tokens(in, B4 * T, V, 7);
    mt_tokens(tgt, B4 * T, V, 8);
    float *gfull = mt_floats(n), *ghalf = mt_floats(n);
    hook_log h = {0};
    tg_model_set_grad_hook(m, hook_record, &h);
    fwd_bwd(m, in, tgt, B4, 1.0f, 1, NULL);
    CHECK_OK(tg_model_grads_get(m, gfull, &err), &err);

    /* L layer ranges from the last layer down, then the rest; together exactly [0, n_params). */
    CHECKF(h.n >= L + 1 && h.n <= 64, "%d hook calls", h.n);
    for (int i = 0; i < L && i < h.n; i++)
        CHECK(h.lo[i] == lay->layer_begin[L - 1 - i] && h.hi[i] == lay->layer_begin[L - i]);
    unsigned char *seen = calloc(n, 1);
    int overlap = 0;
    for (int i = 0; i < h.n && i < 64; i++) {
        CHECK(h.lo[i] <= h.hi[i] && h.hi[i] <= n);
        for (size_t k = h.lo[i]; k < h.hi[i] && k < n; k++) overlap += seen[k]++ != 0;
    }
    size_t covered = 0;
    for (size_t k = 0; k < n; k++) covered += seen[k] != 0;
    CHECKF(overlap == 0 && covered == n, "overlap %d, covered %zu of %zu", overlap, covered, n);
    free(seen);

    /* Two micro-batches of 2 rows, each scaled by 0.5, accumulate to the full-batch gradient. */
    tg_model_set_grad_hook(m, NULL, NULL);
    fwd_bwd(m, in, tgt, 2, 0.5f, 1, NULL);
    fwd_bwd(m, in + 2 * T, tgt + 2 * T, 2, 0.5f, 0, NULL);
    CHECK_OK(tg_model_grads_get(m, ghalf, &err), &err);
    double mx = 0.0, dmax = 0.0;
    for (size_t k = 0; k < n; k++) {
        mx = fmax(mx, fabs(gfull[k]));
        dmax = fmax(dmax, fabs(gfull[k] - ghalf[k]));
    }
    printf("accumulation: max |g| %.3e, max |full - halves| %.3e\n", mx, dmax);
    CHECK(mx > 0.0);
    CHECKF(dmax <= 1e-5 * mx, "max diff %.3e vs max |g| %.3e", dmax, mx);
    free(gfull);
    free(ghalf);
    tg_model_free(m);
}

/* 7: AdamW over shards [0, k) and [k, n) == over [0, n), bitwise; matches the PyTorch formula
 * with decay on 2-D weights only; the optimizer state round-trips through opt_get/opt_set. */
static int decays(const char *name) {
    return strstr(name, ".weight") != NULL && strstr(name, "ln_") == NULL;
}

static void test_sharded_adamw(void) {
    tg_error err = {0};
    enum { NM = 4 };
    tg_model *ms[NM] = {0}; /* full, shard 0, shard 1, resumed */
    for (int i = 0; i < NM; i++) ms[i] = mt_model_new(L, NH, C, T, V, B, 16, 51);
    if (!ms[0] || !ms[1] || !ms[2] || !ms[3]) goto cleanup_models;
    const tg_gpt2_layout *lay = tg_model_layout(ms[0]);
    const size_t np = lay->n_params, n = tg_model_n_padded(ms[0]);
    const size_t k = n / 3 + 7; /* in the middle of a tensor */
    int32_t in[B * T], tgt[B * T];
    mt_tokens(in, B * T, V, 9);
    mt_tokens(tgt, B * T, V, 10);
    for (int i = 0; i < NM; i++) fwd_bwd(ms[i], in, tgt, B, 1.0f, 1, NULL);
    float *p0 = mt_floats(np), *g = mt_floats(np), *p1 = mt_floats(np), *p2 = mt_floats(np);
    float *q = mt_floats(np), *mom = mt_floats(n), *var = mt_floats(n);
    CHECK_OK(tg_model_params_get(ms[0], p0, &err), &err);
    CHECK_OK(tg_model_grads_get(ms[0], g, &err), &err);

    /* grad_sqnorm in double, additive over shards */
    double s_all = 0.0, s_a = 0.0, s_b = 0.0, ref = 0.0;
    for (size_t i = 0; i < np; i++) ref += (double)g[i] * g[i];
    CHECK_OK(tg_model_grad_sqnorm(ms[0], 0, n, &s_all, &err), &err);
    CHECK_OK(tg_model_grad_sqnorm(ms[0], 0, k, &s_a, &err), &err);
    CHECK_OK(tg_model_grad_sqnorm(ms[0], k, n, &s_b, &err), &err);
    CHECKF(fabs(s_all - ref) <= 1e-12 * ref && fabs(s_a + s_b - ref) <= 1e-12 * ref,
           "sqnorm %.17g, shards %.17g, reference %.17g", s_all, s_a + s_b, ref);

    CHECK_OK(tg_model_opt_init(ms[0], 0, n, &err), &err);
    CHECK_OK(tg_model_opt_init(ms[1], 0, k, &err), &err);
    CHECK_OK(tg_model_opt_init(ms[2], k, n, &err), &err);
    CHECK(tg_model_opt_bytes(ms[0]) == 2 * n * sizeof(float));
    CHECK(tg_model_opt_bytes(ms[1]) == 2 * k * sizeof(float));
    tg_adamw_args a = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                       .weight_decay = 0.1f, .grad_scale = 0.5f};
    const size_t lo[3] = {0, 0, k}, hi[3] = {n, k, n};
    for (int t = 1; t <= 2; t++) {
        a.t = t;
        for (int i = 0; i < 3; i++) {
            a.lo = lo[i];
            a.hi = hi[i];
            CHECK_OK(tg_model_adamw(ms[i], &a, &err), &err);
        }
        if (t == 1) {
            CHECK_OK(tg_model_params_get(ms[0], p1, &err), &err);
            CHECK_OK(tg_model_opt_get(ms[0], mom, var, &err), &err);
        }
    }
    a.lo = 0;
    a.hi = k;
    CHECK(tg_model_adamw(ms[0], &a, &err) == TG_ERR_ARG); /* shard mismatch is refused */
    CHECK_OK(tg_model_params_get(ms[0], p2, &err), &err);
    CHECK_OK(tg_model_params_get(ms[1], q, &err), &err);
    CHECK(memcmp(q, p2, k * sizeof *q) == 0);
    CHECK_OK(tg_model_params_get(ms[2], q, &err), &err);
    CHECK(memcmp(q + k, p2 + k, (np - k) * sizeof *q) == 0);

    /* Reference AdamW in double, two steps with the same gradient. */
    double worst = 0.0;
    for (int ti = 0; ti < lay->n_tensors; ti++) {
        const tg_tensor_info *t = &lay->tensors[ti];
        const double wd = decays(t->name) ? a.weight_decay : 0.0;
        for (size_t e = t->offset; e < t->offset + t->numel; e++) {
            double p = p0[e], mo = 0.0, va = 0.0;
            const double gs = (double)g[e] * a.grad_scale;
            for (int s = 1; s <= 2; s++) {
                mo = a.beta1 * mo + (1.0 - a.beta1) * gs;
                va = a.beta2 * va + (1.0 - a.beta2) * gs * gs;
                const double mh = mo / (1.0 - pow(a.beta1, s)), vh = va / (1.0 - pow(a.beta2, s));
                p -= a.lr * (mh / (sqrt(vh) + a.eps) + wd * p);
            }
            worst = fmax(worst, fabs(p - p2[e]) / (fabs(p) + 1e-3));
        }
    }
    printf("adamw vs double reference: worst relative error %.3e\n", worst);
    CHECKF(worst < 1e-4, "worst %.3e", worst);

    /* Resume: params after step 1 + saved moments + the same gradient -> step 2, bit for bit. */
    CHECK_OK(tg_model_params_set(ms[3], p1, &err), &err);
    CHECK(tg_model_opt_get(ms[3], mom, var, &err) == TG_ERR_ARG); /* before opt_init */
    CHECK_OK(tg_model_opt_init(ms[3], 0, n, &err), &err);
    CHECK_OK(tg_model_opt_set(ms[3], mom, var, &err), &err);
    a.lo = 0;
    a.hi = n;
    a.t = 2;
    CHECK_OK(tg_model_adamw(ms[3], &a, &err), &err);
    CHECK_OK(tg_model_params_get(ms[3], q, &err), &err);
    CHECK(memcmp(q, p2, np * sizeof *q) == 0);
    /* the padding of the flat buffers stays zero */
    const float *pp = tg_model_params(ms[0], NULL), *gp = tg_model_grads(ms[0], NULL);
    CHECK(max_abs(pp + np, n - np) == 0.0 && max_abs(gp + np, n - np) == 0.0);
    free(p0);
    free(g);
    free(p1);
    free(p2);
    free(q);
    free(mom);
    free(var);
cleanup_models:
    for (int i = 0; i < NM; i++) tg_model_free(ms[i]);
}

/* 1 when x is exactly representable in bf16 (its low 16 bits are zero). */
static int is_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return (u & 0xffffu) == 0;
}

/* opt.bf16 on the CPU: the same model in fp32 and with bf16 storage emulated. Logits are bf16
 * values; params (the fp32 masters) are not rounded; loss and gradients move by bf16-sized
 * amounts (more than fp32 rounding, far less than a wrong kernel); two runs are identical. */
static void test_bf16_emulation(void) {
    tg_error err = {0};
    tg_gpt2_config cfg = {.max_seq_len = T, .vocab_size = V, .n_layer = L, .n_head = NH, .n_embd = C};
    tg_model_options o32 = {.device = TG_DEVICE_CPU, .B = B, .T = T, .pad_multiple = 64}, o16 = o32;
    tg_model *m32 = NULL, *m16 = NULL;
    o16.bf16 = 1;
    CHECK_OK(tg_gpt2_config_finalize(&cfg, &err), &err);
    CHECK_OK(tg_model_init(&m32, &cfg, &o32, &err), &err);
    CHECK_OK(tg_model_init(&m16, &cfg, &o16, &err), &err);
    if (!m32 || !m16) goto done;
    {
        const tg_gpt2_layout *lay = tg_model_layout(m32);
        const size_t n = lay->n_params, nl = (size_t)B * T * cfg.padded_vocab_size;
        float *p0 = malloc(n * sizeof *p0), *g32 = malloc(n * sizeof *g32), *g16 = malloc(n * sizeof *g16);
        float *back = malloc(n * sizeof *back), *logits = malloc(nl * sizeof *logits);
        int32_t in[B * T], tgt[B * T];
        float l32 = 0, l16 = 0, l16b = 0;
        int rounded = 1, masters_exact = 1;
        double d = 0, r = 0;
        tg_gpt2_params_init(lay, p0, 5);
        mt_tokens(in, B * T, V, 11);
        mt_tokens(tgt, B * T, V, 12);
        CHECK(strstr(tg_model_describe(m16), "emulating bf16") != NULL);
        CHECK_OK(tg_model_params_set(m32, p0, &err), &err);
        CHECK_OK(tg_model_params_set(m16, p0, &err), &err);
        fwd_bwd(m32, in, tgt, B, 1.0f, 1, &l32);
        CHECK_OK(tg_model_forward(m16, in, tgt, B, &err), &err);
        CHECK_OK(tg_model_logits_get(m16, logits, &err), &err);
        for (size_t i = 0; i < nl; i++) rounded &= is_bf16(logits[i]);
        CHECK(rounded);
        CHECK_OK(tg_model_loss(m16, &l16, &err), &err);
        CHECK_OK(tg_model_grads_zero(m16, &err), &err);
        CHECK_OK(tg_model_backward(m16, 1.0f, &err), &err);
        CHECK_OK(tg_model_grads_get(m32, g32, &err), &err);
        CHECK_OK(tg_model_grads_get(m16, g16, &err), &err);
        CHECK_OK(tg_model_params_get(m16, back, &err), &err);
        for (size_t i = 0; i < n; i++) masters_exact &= back[i] == p0[i];
        CHECK(masters_exact);
        for (size_t i = 0; i < n; i++) {
            d += ((double)g16[i] - g32[i]) * ((double)g16[i] - g32[i]);
            r += (double)g32[i] * g32[i];
        }
        const double eg = sqrt(d / r), el = fabs(l16 - l32) / l32;
        printf("bf16 emulation: loss %.6f vs fp32 %.6f (rel %.2e), gradients rel %.2e\n", l16, l32, el, eg);
        CHECKF(el > 1e-6 && el < 1e-2, "loss rel diff %.3g", el);
        CHECKF(eg > 1e-4 && eg < 5e-2, "gradient rel diff %.3g", eg);
        fwd_bwd(m16, in, tgt, B, 1.0f, 1, &l16b);
        CHECK_OK(tg_model_grads_get(m16, back, &err), &err);
        CHECK(l16b == l16 && memcmp(back, g16, n * sizeof *back) == 0);
        free(p0);
        free(g32);
        free(g16);
        free(back);
        free(logits);
    }
done:
    tg_model_free(m32);
    tg_model_free(m16);
}

/* 8: the CPU backend makes no choices by timing: an empty tuning blob, and a blob is refused
 * with the reason (the trainer then warns and goes on). */
static void test_tuning_blob(void) {
    tg_model *m = mt_model_new(L, NH, C, T, V, B, 64, 31);
    tg_error err = {0};
    void *blob = (void *)&err;
    size_t len = 123;
    const char fake[64] = "TGLT";
    if (!m) return;
    CHECK_OK(tg_model_tuning_get(m, &blob, &len, &err), &err);
    CHECK(blob == NULL && len == 0);
    CHECK(tg_model_tuning_set(m, fake, sizeof fake, &err) == TG_ERR_FORMAT);
    CHECKF(strstr(err.msg, "cpu backend") != NULL, "message: %s", err.msg);
    tg_model_free(m);
}

int main(void) {
    test_padded_vocab_and_ignore();
    test_causal_short_T();
    test_determinism();
    test_accumulation_and_hook();
    test_sharded_adamw();
    test_bf16_emulation();
    test_tuning_blob();
    TEST_MAIN_END();
}
