/* model/cpu/cpu_optim.c — AdamW and Muon for the CPU backends (contract in cpu_optim.h). */
#include "model/cpu/cpu_optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/cpu/cpu_kernels.h"

/* Each tensor's part [*i0, *i1) of [lo, hi); 0 when they do not meet. */
static int clip_range(const tg_tensor_info *t, size_t lo, size_t hi, size_t *i0, size_t *i1) {
    *i0 = t->offset > lo ? t->offset : lo;
    *i1 = t->offset + t->numel < hi ? t->offset + t->numel : hi;
    return *i0 < *i1;
}

void tg_cpu_optim_adamw(const tg_cpu_optim *o, const tg_adamw_args *a) {
    const tg_gpt2_layout *lay = o->lay;
    const float bc1 = (float)(1.0 - pow((double)a->beta1, a->t));
    const float bc2 = (float)(1.0 - pow((double)a->beta2, a->t));
    float *params = o->params, *grads = o->grads, *mo = o->m, *va = o->v;
    const size_t lo = o->lo;
    /* Walk the tensors that intersect the shard, so each range knows its rule and decay. The
     * padding [n_params, n_padded) has zero params and grads; it is left untouched. */
    for (int k = 0; k < lay->n_tensors; k++) {
        const tg_tensor_info *t = &lay->tensors[k];
        size_t i0, i1;
        if (!clip_range(t, o->lo, o->hi, &i0, &i1)) continue;
        if (a->muon && tg_model_muon_tensor(t)) {
            const float mu = a->muon->momentum, gs = a->grad_scale;
            const int nest = a->muon->nesterov;
#pragma omp parallel for schedule(static)
            for (size_t i = i0; i < i1; i++) {
                const float g = grads[i - lo] * gs;
                const float mi = mu * mo[i - lo] + (1.0f - mu) * g;
                mo[i - lo] = mi;
                grads[i - lo] = nest ? (1.0f - mu) * g + mu * mi : mi;
            }
            continue;
        }
        const float wd = t->decay ? a->weight_decay : 0.0f;
#pragma omp parallel for schedule(static)
        for (size_t i = i0; i < i1; i++) {
            const float g = grads[i - lo] * a->grad_scale;
            const float mi = a->beta1 * mo[i - lo] + (1.0f - a->beta1) * g;
            const float vi = a->beta2 * va[i - lo] + (1.0f - a->beta2) * g * g;
            mo[i - lo] = mi;
            va[i - lo] = vi;
            const float mhat = mi / bc1, vhat = vi / bc2;
            params[i - lo] -= a->lr * (mhat / (sqrtf(vhat) + a->eps) + wd * params[i - lo]);
        }
    }
}

static float *falloc(size_t n) {
    size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    return aligned_alloc(64, bytes ? bytes : 64);
}

tg_status tg_cpu_newton_schulz(float *G, int rows, int cols, int steps, tg_error *err) {
    tg_status st = TG_OK;
    const float a = 3.4445f, b = -4.7750f, c = 2.0315f;
    const int tr = rows > cols, n = tr ? cols : rows, k = tr ? rows : cols; /* X is n x k, n <= k */
    const size_t nk = (size_t)n * (size_t)k, nn = (size_t)n * (size_t)n;
    float *X = falloc(nk), *Y = falloc(nk), *A = falloc(nn), *B = falloc(nn);
    TG_CHECK_ALLOC(err, X);
    TG_CHECK_ALLOC(err, Y);
    TG_CHECK_ALLOC(err, A);
    TG_CHECK_ALLOC(err, B);
    if (tr) {
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++) X[(size_t)j * k + i] = G[(size_t)i * cols + j];
    } else {
        memcpy(X, G, nk * sizeof(float));
    }
    double sq = 0; /* one fixed order */
    for (size_t i = 0; i < nk; i++) sq += (double)X[i] * X[i];
    const float inv = (float)(1.0 / (sqrt(sq) + 1e-7));
    for (size_t i = 0; i < nk; i++) X[i] *= inv;
    for (int s = 0; s < steps; s++) {
        /* A = X X^T; B = b A + c A A; X = a X + B X */
        tg_cpu_gemm_strided(A, (size_t)n, X, (size_t)k, 1, X, 1, (size_t)k, NULL, n, n, k, 0);
        tg_cpu_gemm_strided(B, (size_t)n, A, (size_t)n, 1, A, (size_t)n, 1, NULL, n, n, n, 0);
        for (size_t i = 0; i < nn; i++) B[i] = b * A[i] + c * B[i];
        tg_cpu_gemm_strided(Y, (size_t)k, B, (size_t)n, 1, X, (size_t)k, 1, NULL, n, k, n, 0);
        for (size_t i = 0; i < nk; i++) X[i] = a * X[i] + Y[i];
    }
    if (tr) {
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++) G[(size_t)i * cols + j] = X[(size_t)j * k + i];
    } else {
        memcpy(G, X, nk * sizeof(float));
    }
cleanup:
    free(X);
    free(Y);
    free(A);
    free(B);
    return st;
}

tg_status tg_cpu_muon_orth(const tg_gpt2_layout *lay, float *grads, size_t lo, size_t hi, int ns_steps,
                           tg_error *err) {
    tg_status st = TG_OK;
    for (int k = 0; k < lay->n_tensors; k++) {
        const tg_tensor_info *t = &lay->tensors[k];
        if (!tg_model_muon_tensor(t) || t->offset < lo || t->offset >= hi) continue;
        float *X = grads + t->offset;
        TG_TRY(tg_cpu_newton_schulz(X, t->shape[0], t->shape[1], ns_steps, err));
        /* GPT-2 stores weights (in, out) (HF Conv1D), Llama (out, in) (nn.Linear). */
        const int fan_out = lay->cfg.arch == TG_MODEL_ARCH_LLAMA ? t->shape[0] : t->shape[1];
        const int fan_in = lay->cfg.arch == TG_MODEL_ARCH_LLAMA ? t->shape[1] : t->shape[0];
        const float scale = fan_out > fan_in ? sqrtf((float)fan_out / (float)fan_in) : 1.0f;
        if (scale != 1.0f)
            for (size_t i = 0; i < t->numel; i++) X[i] *= scale;
    }
cleanup:
    return st;
}

void tg_cpu_muon_apply(const tg_cpu_optim *o, const tg_adamw_args *a) {
    const tg_gpt2_layout *lay = o->lay;
    const float lr = a->muon->lr, wd = a->muon->weight_decay;
    float *params = o->params;
    const float *grads = o->grads;
    const size_t lo = o->lo;
    for (int k = 0; k < lay->n_tensors; k++) {
        const tg_tensor_info *t = &lay->tensors[k];
        size_t i0, i1;
        if (!tg_model_muon_tensor(t) || !clip_range(t, o->lo, o->hi, &i0, &i1)) continue;
#pragma omp parallel for schedule(static)
        for (size_t i = i0; i < i1; i++) params[i - lo] -= lr * (grads[i - lo] + wd * params[i - lo]);
    }
}
