/* Finite-difference check of the CPU backend's gradients, every parameter tensor, on a tiny
 * GPT-2 (L=2, NH=2, C=18, T=7, V=50 -> Vp=128, B=2). The same checker must also REJECT two
 * deliberately wrong gradients (a transposed C x C weight gradient, one tensor's gradient
 * doubled), which shows it can fail. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model_test_util.h"

/* C, T, V are deliberately not multiples of the GEMM tile sizes, so edge tiles are checked too. */
enum { L = 2, NH = 2, C = 18, T = 7, V = 50, B = 2, SAMPLES = 64 };
static const float FD_EPS = 1e-2f; /* central-difference step (params are O(0.1..1)) */
static const double TOL = 5e-3;    /* per-tensor relative error allowed (seen: <= 1e-3) */

static double loss_at(tg_model *m, const float *params, const int32_t *in, const int32_t *tgt) {
    tg_error err = {0};
    float loss = NAN;
    CHECK_OK(tg_model_params_set(m, params, &err), &err);
    CHECK_OK(tg_model_forward(m, in, tgt, B, &err), &err);
    CHECK_OK(tg_model_loss(m, &loss, &err), &err);
    return loss;
}

/* Compares `analytic` (n_params) with central differences of the loss at params0, for up to
 * SAMPLES elements of every tensor (all of them for small tensors; wte only over its real rows).
 * Per tensor: rel = |fd - an|_2 / max(|fd|_2, |an|_2); a tensor fails when rel > TOL (both norms
 * below 1e-7 counts as agreeing zeros). Returns the number of failing tensors; when `expect` is a
 * tensor index, only says whether that tensor failed through *named_failed. */
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
        if (ti == 0) n = (size_t)V * C; /* padded wte rows: see test_model_cpu (exact zeros) */
        const int ns = n <= SAMPLES ? (int)n : SAMPLES;
        double d2 = 0.0, fd2 = 0.0, an2 = 0.0;
        for (int s = 0; s < ns; s++) {
            const size_t i = t->offset + (n <= SAMPLES ? (size_t)s : tg_rng_below(&r, n));
            const float orig = p[i];
            p[i] = orig + FD_EPS;
            const double lp = loss_at(m, p, in, tgt);
            p[i] = orig - FD_EPS;
            const double lm = loss_at(m, p, in, tgt);
            p[i] = orig;
            /* the step actually taken in fp32 */
            const double h = (double)(orig + FD_EPS) - (double)(orig - FD_EPS);
            const double fd = (lp - lm) / h, an = analytic[i];
            d2 += (fd - an) * (fd - an);
            fd2 += fd * fd;
            an2 += an * an;
        }
        const double denom = fmax(sqrt(fd2), sqrt(an2));
        const double rel = denom < 1e-7 ? 0.0 : sqrt(d2) / denom;
        const int bad = !(rel <= TOL);
        n_fail += bad;
        if (ti == expect && named_failed) *named_failed = bad;
        if (verbose || bad)
            printf("  %-34s |an|=%.3e |fd|=%.3e rel=%.2e %s\n", t->name, sqrt(an2), sqrt(fd2), rel,
                   bad ? "MISMATCH" : "ok");
    }
    free(p);
    return n_fail;
}

int main(void) {
    tg_error err = {0};
    tg_model *m = mt_model_new(L, NH, C, T, V, B, 1, 7);
    if (!m) TEST_MAIN_END();
    const tg_gpt2_layout *lay = tg_model_layout(m);
    const size_t n = lay->n_params;

    /* Larger-than-GPT-2 random params so every tensor has a clearly non-zero gradient: weights
     * N(0, 0.2), biases N(0, 0.1), LayerNorm gains 1 + N(0, 0.1). Padded wte rows stay 0. */
    float *params = mt_floats(n), *grads = mt_floats(n), *bad = mt_floats(n);
    tg_rng r;
    tg_rng_init(&r, 99);
    for (int ti = 0; ti < lay->n_tensors; ti++) {
        const tg_tensor_info *t = &lay->tensors[ti];
        const int gain = strstr(t->name, "ln_") && strstr(t->name, ".weight");
        const size_t ne = ti == 0 ? (size_t)V * C : t->numel;
        for (size_t k = 0; k < ne; k++) {
            const float z = tg_rng_normal(&r);
            params[t->offset + k] = t->ndim == 2 ? 0.2f * z : (gain ? 1.0f : 0.0f) + 0.1f * z;
        }
    }
    int32_t in[B * T], tgt[B * T];
    mt_tokens(in, B * T, V, 5);
    mt_tokens(tgt, B * T, V, 6);
    tgt[3] = -1; /* ignored positions: the finite differences must agree they do not count */
    tgt[T + 5] = -1;

    CHECK_OK(tg_model_params_set(m, params, &err), &err);
    CHECK_OK(tg_model_grads_zero(m, &err), &err);
    CHECK_OK(tg_model_forward(m, in, tgt, B, &err), &err);
    CHECK_OK(tg_model_backward(m, 1.0f, &err), &err);
    CHECK_OK(tg_model_grads_get(m, grads, &err), &err);

    printf("analytic gradients vs central differences (%d tensors):\n", lay->n_tensors);
    const int n_fail = grad_check(m, params, grads, in, tgt, 1, -1, NULL);
    CHECKF(n_fail == 0, "%d tensors disagree", n_fail);

    /* (a) transpose the square gradient of h.0.attn.c_proj.weight: must be caught. */
    const int tp = tg_gpt2_layout_find(lay, "transformer.h.0.attn.c_proj.weight");
    CHECK(tp >= 0 && lay->tensors[tp].shape[0] == C && lay->tensors[tp].shape[1] == C);
    memcpy(bad, grads, n * sizeof *bad);
    const float *g = grads + lay->tensors[tp].offset;
    float *gb = bad + lay->tensors[tp].offset;
    for (int i = 0; i < C; i++)
        for (int j = 0; j < C; j++) gb[i * C + j] = g[j * C + i];
    int failed = 0;
    printf("with the c_proj.weight gradient transposed:\n");
    const int n_fail_t = grad_check(m, params, bad, in, tgt, 0, tp, &failed);
    CHECKF(failed && n_fail_t == 1, "transposed gradient not detected (%d tensors failed)", n_fail_t);

    /* (b) double the gradient of h.1.mlp.c_fc.bias: must be caught. */
    const int tb = tg_gpt2_layout_find(lay, "transformer.h.1.mlp.c_fc.bias");
    CHECK(tb >= 0);
    memcpy(bad, grads, n * sizeof *bad);
    for (size_t k = 0; k < lay->tensors[tb].numel; k++) bad[lay->tensors[tb].offset + k] *= 2.0f;
    failed = 0;
    printf("with the c_fc.bias gradient doubled:\n");
    const int n_fail_d = grad_check(m, params, bad, in, tgt, 0, tb, &failed);
    CHECKF(failed && n_fail_d == 1, "doubled gradient not detected (%d tensors failed)", n_fail_d);

    free(params);
    free(grads);
    free(bad);
    tg_model_free(m);
    TEST_MAIN_END();
}
