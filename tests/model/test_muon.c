/* tests/model/test_muon.c — Muon on the CPU backend, without MPI:
 *  - Newton-Schulz (tg_cpu_newton_schulz) against a double-precision reference written here from
 *    the published algorithm, for a wide and a tall matrix; its output is orthogonal up to the
 *    quintic's band: every singular value in [0.6, 1.25] (Jacobi eigenvalues of X X^T); the tall
 *    matrix gives the transpose of the wide one's result, bit for bit;
 *  - one optimizer step of a small GPT-2 (tg_model_adamw with muon, muon_orth, muon_apply)
 *    against the reference: Muon's momentum, Nesterov, NS, the fan_out/fan_in scale and decay on
 *    the blocks' 2-D matrices; AdamW on the others;
 *  - orthogonalising in two owner ranges gives the whole range's result bit for bit;
 *  - the momentum lands in the AdamW m slot and v stays zero on Muon matrices. */
#include <math.h>
#include <string.h>

#include "core/rng.h"
#include "model/cpu/cpu_optim.h"
#include "model/model.h"
#include "model/model_test_util.h"
#include "tg_jacobi.h"
#include "tg_test.h"

enum { L = 2, NH = 2, C = 32, T = 16, V = 64, B = 2 };

/* The reference: X (r x c) <- NS(X / (|X|_F + 1e-7)), in double, on the transpose when r > c. */
static void ns_ref(double *G, int r, int c, int steps) {
    const double a = 3.4445, b = -4.7750, cc = 2.0315;
    const int tr = r > c, n = tr ? c : r, k = tr ? r : c;
    double *X = calloc((size_t)n * k, sizeof *X), *A = calloc((size_t)n * n, sizeof *A);
    double *Bm = calloc((size_t)n * n, sizeof *Bm), *Y = calloc((size_t)n * k, sizeof *Y);
    for (int i = 0; i < r; i++)
        for (int j = 0; j < c; j++) {
            if (tr) X[(size_t)j * k + i] = G[(size_t)i * c + j];
            else X[(size_t)i * k + j] = G[(size_t)i * c + j];
        }
    double sq = 0;
    for (size_t i = 0; i < (size_t)n * k; i++) sq += X[i] * X[i];
    for (size_t i = 0; i < (size_t)n * k; i++) X[i] /= sqrt(sq) + 1e-7;
    for (int s = 0; s < steps; s++) {
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) {
                double acc = 0;
                for (int q = 0; q < k; q++) acc += X[(size_t)i * k + q] * X[(size_t)j * k + q];
                A[(size_t)i * n + j] = acc;
            }
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) {
                double acc = 0;
                for (int q = 0; q < n; q++) acc += A[(size_t)i * n + q] * A[(size_t)q * n + j];
                Bm[(size_t)i * n + j] = b * A[(size_t)i * n + j] + cc * acc;
            }
        for (int i = 0; i < n; i++)
            for (int j = 0; j < k; j++) {
                double acc = 0;
                for (int q = 0; q < n; q++) acc += Bm[(size_t)i * n + q] * X[(size_t)q * k + j];
                Y[(size_t)i * k + j] = a * X[(size_t)i * k + j] + acc;
            }
        memcpy(X, Y, (size_t)n * k * sizeof *X);
    }
    for (int i = 0; i < r; i++)
        for (int j = 0; j < c; j++) G[(size_t)i * c + j] = tr ? X[(size_t)j * k + i] : X[(size_t)i * k + j];
    free(X);
    free(A);
    free(Bm);
    free(Y);
}

static void randn(float *x, size_t n, uint64_t seed) {
    tg_rng r;
    tg_rng_init(&r, seed);
    for (size_t i = 0; i < n; i++) x[i] = (float)(tg_rng_f32(&r) * 2.0f - 1.0f);
}

static void test_newton_schulz(void) {
    tg_error err = {0};
    enum { R = 24, K = 40 };
    float *W = mt_floats(R * K), *Tt = mt_floats(R * K);
    double *ref = calloc(R * K, sizeof *ref), *S = calloc(R * R, sizeof *S), ev[R];
    randn(W, R * K, 7);
    for (int i = 0; i < R; i++)
        for (int j = 0; j < K; j++) Tt[j * R + i] = W[i * K + j];
    for (int i = 0; i < R * K; i++) ref[i] = W[i];
    ns_ref(ref, R, K, 5);
    CHECK_OK(tg_cpu_newton_schulz(W, R, K, 5, &err), &err);
    CHECK_OK(tg_cpu_newton_schulz(Tt, K, R, 5, &err), &err);
    double worst = 0;
    for (int i = 0; i < R * K; i++) worst = fmax(worst, fabs(W[i] - ref[i]));
    CHECKF(worst < 2e-5, "NS vs the double reference: max |diff| %g", worst);
    int same = 1;
    for (int i = 0; i < R; i++)
        for (int j = 0; j < K; j++) same &= Tt[j * R + i] == W[i * K + j];
    CHECK(same); /* the tall matrix is computed as the transpose of the wide one */
    for (int i = 0; i < R; i++)
        for (int j = 0; j < R; j++) {
            double acc = 0;
            for (int q = 0; q < K; q++) acc += (double)W[i * K + q] * W[j * K + q];
            S[i * R + j] = acc;
        }
    jacobi_eig(S, R, ev);
    double lo = 1e9, hi = 0;
    for (int i = 0; i < R; i++) {
        lo = fmin(lo, sqrt(fmax(ev[i], 0)));
        hi = fmax(hi, sqrt(fmax(ev[i], 0)));
    }
    printf("NS(5) singular values in [%.3f, %.3f] (|diff| to reference %.2g)\n", lo, hi, worst);
    CHECKF(lo > 0.6 && hi < 1.25, "singular values [%g, %g]", lo, hi);
    free(W);
    free(Tt);
    free(ref);
    free(S);
}

/* One step of a small GPT-2 with Muon against the reference, and the owner split. */
static void test_step(void) {
    tg_error err = {0};
    tg_model *m = mt_model_new(L, NH, C, T, V, B, 64, 3), *m2 = mt_model_new(L, NH, C, T, V, B, 64, 3);
    if (!m || !m2) return;
    const tg_gpt2_layout *lay = tg_model_layout(m);
    const size_t n = tg_model_n_padded(m), np = lay->n_params;
    float *P0 = mt_floats(n), *G = mt_floats(n), *P1 = mt_floats(n), *P2 = mt_floats(n);
    float *Mo = mt_floats(n), *Va = mt_floats(n);
    int32_t in[B * T], tgt[B * T];
    mt_tokens(in, B * T, V, 11);
    mt_tokens(tgt, B * T, V, 12);
    tg_model *ms[2] = {m, m2};
    for (int j = 0; j < 2; j++) {
        CHECK_OK(tg_model_opt_init(ms[j], 0, n, &err), &err);
        CHECK_OK(tg_model_grads_zero(ms[j], &err), &err);
        CHECK_OK(tg_model_forward(ms[j], in, tgt, B, &err), &err);
        CHECK_OK(tg_model_backward(ms[j], 1.0f, &err), &err);
    }
    CHECK_OK(tg_model_params_get(m, P0, &err), &err);
    CHECK_OK(tg_model_grads_get(m, G, &err), &err);
    const tg_muon_args mu = {.lr = 0.05f, .momentum = 0.9f, .nesterov = 1, .ns_steps = 5, .weight_decay = 0.1f};
    const tg_adamw_args aw = {.lo = 0, .hi = n, .lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                              .weight_decay = 0.1f, .grad_scale = 0.5f, .t = 1, .muon = &mu};
    CHECK_OK(tg_model_adamw(m, &aw, &err), &err);
    CHECK_OK(tg_model_muon_orth(m, 0, n, mu.ns_steps, &err), &err);
    CHECK_OK(tg_model_muon_apply(m, &aw, &err), &err);
    CHECK_OK(tg_model_params_get(m, P1, &err), &err);
    CHECK_OK(tg_model_opt_get(m, Mo, Va, &err), &err);
    /* the same step with the matrices split between two "owners" at a tensor boundary */
    size_t cut = lay->tensors[tg_gpt2_block_index(1, TG_GPT2_LN1_W)].offset;
    CHECK_OK(tg_model_adamw(m2, &aw, &err), &err);
    CHECK_OK(tg_model_muon_orth(m2, cut, n, mu.ns_steps, &err), &err);
    CHECK_OK(tg_model_muon_orth(m2, 0, cut, mu.ns_steps, &err), &err);
    CHECK_OK(tg_model_muon_apply(m2, &aw, &err), &err);
    CHECK_OK(tg_model_params_get(m2, P2, &err), &err);
    CHECK(memcmp(P1, P2, np * sizeof(float)) == 0);

    int n_muon = 0;
    double worst_mu = 0, worst_aw = 0, worst_m = 0;
    for (int k = 0; k < lay->n_tensors; k++) {
        const tg_tensor_info *t = &lay->tensors[k];
        const size_t o = t->offset;
        if (tg_model_muon_tensor(t)) {
            n_muon++;
            double *U = calloc(t->numel, sizeof *U);
            int vzero = 1;
            for (size_t i = 0; i < t->numel; i++) {
                const double g = (double)G[o + i] * aw.grad_scale, mm = (1 - mu.momentum) * g;
                U[i] = (1 - mu.momentum) * g + mu.momentum * mm;
                vzero &= Va[o + i] == 0.0f;
                worst_m = fmax(worst_m, fabs(Mo[o + i] - mm));
            }
            CHECK(vzero);
            ns_ref(U, t->shape[0], t->shape[1], mu.ns_steps);
            const double scale = t->shape[1] > t->shape[0] ? sqrt((double)t->shape[1] / t->shape[0]) : 1.0;
            for (size_t i = 0; i < t->numel; i++) {
                const double want = P0[o + i] - mu.lr * (scale * U[i] + mu.weight_decay * P0[o + i]);
                worst_mu = fmax(worst_mu, fabs(P1[o + i] - want));
            }
            free(U);
        } else {
            for (size_t i = 0; i < t->numel; i++) {
                const double g = (double)G[o + i] * aw.grad_scale, wd = t->decay ? aw.weight_decay : 0;
                const double mh = g, vh = g * g; /* t = 1: the bias corrections undo (1 - beta) */
                const double want = P0[o + i] - aw.lr * (mh / (sqrt(vh) + aw.eps) + wd * P0[o + i]);
                worst_aw = fmax(worst_aw, fabs(P1[o + i] - want));
            }
        }
    }
    printf("step: %d Muon matrices, max |diff| to the reference: Muon %.2g, AdamW %.2g\n", n_muon, worst_mu,
           worst_aw);
    CHECK(n_muon == 4 * L);
    CHECKF(worst_mu < 1e-6, "Muon step vs reference: %g", worst_mu);
    CHECKF(worst_aw < 1e-6, "AdamW step vs reference: %g", worst_aw);
    CHECKF(worst_m < 1e-7, "Muon momentum in the m slot vs reference: %g", worst_m);
    tg_model_free(m);
    tg_model_free(m2);
    free(P0);
    free(G);
    free(P1);
    free(P2);
    free(Mo);
    free(Va);
}

int main(void) {
    test_newton_schulz();
    test_step();
    TEST_MAIN_END();
}
