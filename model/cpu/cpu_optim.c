/* model/cpu/cpu_optim.c — AdamW and Muon for the CPU backends (contract in cpu_optim.h). */
#include "model/cpu/cpu_optim.h"

#include <immintrin.h>
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

/* The AdamW update of n elements. The AVX2 body (no FMA: nothing is contracted) and the scalar
 * loop do the same IEEE operations in the same order, so the path never changes a bit. */
typedef struct {
    float gs, b1, c1, b2, c2, bc1, bc2, lr, eps, wd;
} adamw_k;

static void adamw_scalar(float *p, const float *g, float *mo, float *va, size_t n, const adamw_k *k) {
    for (size_t i = 0; i < n; i++) {
        const float gi = g[i] * k->gs;
        const float mi = k->b1 * mo[i] + k->c1 * gi;
        const float vi = k->b2 * va[i] + k->c2 * gi * gi;
        mo[i] = mi;
        va[i] = vi;
        const float mhat = mi / k->bc1, vhat = vi / k->bc2;
        p[i] -= k->lr * (mhat / (sqrtf(vhat) + k->eps) + k->wd * p[i]);
    }
}

__attribute__((target("avx2"))) static void adamw_avx2(float *p, const float *g, float *mo, float *va, size_t n,
                                                       const adamw_k *k) {
    const __m256 gs = _mm256_set1_ps(k->gs), b1 = _mm256_set1_ps(k->b1), c1 = _mm256_set1_ps(k->c1);
    const __m256 b2 = _mm256_set1_ps(k->b2), c2 = _mm256_set1_ps(k->c2), bc1 = _mm256_set1_ps(k->bc1);
    const __m256 bc2 = _mm256_set1_ps(k->bc2), lr = _mm256_set1_ps(k->lr), eps = _mm256_set1_ps(k->eps);
    const __m256 wd = _mm256_set1_ps(k->wd);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 gi = _mm256_mul_ps(_mm256_loadu_ps(g + i), gs);
        const __m256 mi = _mm256_add_ps(_mm256_mul_ps(b1, _mm256_loadu_ps(mo + i)), _mm256_mul_ps(c1, gi));
        const __m256 vi = _mm256_add_ps(_mm256_mul_ps(b2, _mm256_loadu_ps(va + i)),
                                        _mm256_mul_ps(_mm256_mul_ps(c2, gi), gi));
        _mm256_storeu_ps(mo + i, mi);
        _mm256_storeu_ps(va + i, vi);
        const __m256 mhat = _mm256_div_ps(mi, bc1), vhat = _mm256_div_ps(vi, bc2);
        const __m256 pi = _mm256_loadu_ps(p + i);
        const __m256 u = _mm256_add_ps(_mm256_div_ps(mhat, _mm256_add_ps(_mm256_sqrt_ps(vhat), eps)),
                                       _mm256_mul_ps(wd, pi));
        _mm256_storeu_ps(p + i, _mm256_sub_ps(pi, _mm256_mul_ps(lr, u)));
    }
    adamw_scalar(p + i, g + i, mo + i, va + i, n - i, k);
}

/* Muon's momentum for a piece of a matrix: m <- mu m + (1 - mu) g; the gradient buffer gets the
 * (Nesterov) update direction that tg_cpu_muon_orth orthogonalises. */
static void muon_momentum(float *g, float *mo, size_t n, float gs, float mu, int nest) {
    for (size_t i = 0; i < n; i++) {
        const float gi = g[i] * gs;
        const float mi = mu * mo[i] + (1.0f - mu) * gi;
        mo[i] = mi;
        g[i] = nest ? (1.0f - mu) * gi + mu * mi : mi;
    }
}

enum { PIECE_ADAMW, PIECE_ADAMW_DECAY, PIECE_MUON };

tg_status tg_cpu_optim_adamw(const tg_cpu_optim *o, const tg_adamw_args *a, tg_error *err) {
    const tg_gpt2_layout *lay = o->lay;
    /* One parallel region over the shard cut into pieces of at most BLOCK elements that never
     * straddle a tensor (so each knows its rule and decay); threads share out the pieces. Each
     * element's update is independent of the others: the result does not depend on the split.
     * The padding [n_params, n_padded) has zero params and grads; it is left untouched. */
    enum { BLOCK = 1 << 14 };
    size_t n_pieces = 0;
    for (int k = 0; k < lay->n_tensors; k++) {
        size_t i0, i1;
        if (clip_range(&lay->tensors[k], o->lo, o->hi, &i0, &i1)) n_pieces += (i1 - i0 + BLOCK - 1) / BLOCK;
    }
    struct piece {
        size_t start, len;
        int kind;
    } *piece = malloc((n_pieces ? n_pieces : 1) * sizeof *piece);
    if (!piece) return tg_error_set(err, TG_ERR_NOMEM, "model: out of memory (optimizer step)");
    size_t np = 0;
    for (int k = 0; k < lay->n_tensors; k++) {
        const tg_tensor_info *t = &lay->tensors[k];
        size_t i0, i1;
        if (!clip_range(t, o->lo, o->hi, &i0, &i1)) continue;
        const int kind = a->muon && tg_model_muon_tensor(t) ? PIECE_MUON
                         : t->decay                         ? PIECE_ADAMW_DECAY
                                                            : PIECE_ADAMW;
        for (size_t j = i0; j < i1; j += BLOCK)
            piece[np++] = (struct piece){j - o->lo, i1 - j < BLOCK ? i1 - j : BLOCK, kind};
    }
    const float bc1 = (float)(1.0 - pow((double)a->beta1, a->t));
    const float bc2 = (float)(1.0 - pow((double)a->beta2, a->t));
    const adamw_k kd = {a->grad_scale, a->beta1, 1.0f - a->beta1, a->beta2, 1.0f - a->beta2,
                        bc1, bc2, a->lr, a->eps, a->weight_decay};
    adamw_k k0 = kd;
    k0.wd = 0.0f;
    const float mu = a->muon ? a->muon->momentum : 0.0f;
    const int nest = a->muon ? a->muon->nesterov : 0;
    const int avx2 = tg_cpu_isa_best() >= TG_CPU_ISA_AVX2;
    float *params = o->params, *grads = o->grads, *mo = o->m, *va = o->v;
    /* dynamic: a preempted thread's pieces go to the other one */
#pragma omp parallel for schedule(dynamic, 16)
    for (size_t q = 0; q < np; q++) {
        const size_t j = piece[q].start, n = piece[q].len;
        if (piece[q].kind == PIECE_MUON) {
            muon_momentum(grads + j, mo + j, n, a->grad_scale, mu, nest);
            continue;
        }
        const adamw_k *k = piece[q].kind == PIECE_ADAMW_DECAY ? &kd : &k0;
        if (avx2) adamw_avx2(params + j, grads + j, mo + j, va + j, n, k);
        else adamw_scalar(params + j, grads + j, mo + j, va + j, n, k);
    }
    free(piece);
    return TG_OK;
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
