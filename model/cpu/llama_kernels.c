/* model/cpu/llama_kernels.c — see llama_kernels.h. */
#include "model/cpu/llama_kernels.h"

#include <math.h>

#include "model/cpu/cpu_kernels.h"

void tg_llama_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int N, int C, float eps) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *xn = x + (size_t)n * C;
        float *on = out + (size_t)n * C;
        float ss = 0.0f;
        for (int c = 0; c < C; c++) ss += xn[c] * xn[c];
        const float r = 1.0f / sqrtf(ss / (float)C + eps);
        for (int c = 0; c < C; c++) on[c] = w[c] * (xn[c] * r);
        rstd[n] = r;
    }
}

void tg_llama_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                               const float *rstd, int N, int C) {
    /* y = w * x * r, r = (mean x^2 + eps)^-1/2:  dx = r * w*dy - x * r^3 / C * sum(w*dy*x). */
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *xn = x + (size_t)n * C, *dn = dout + (size_t)n * C;
        float *dxn = dx + (size_t)n * C;
        const float r = rstd[n];
        float dot = 0.0f;
        for (int c = 0; c < C; c++) dot += w[c] * dn[c] * xn[c];
        const float k = dot * r * r * r / (float)C;
        for (int c = 0; c < C; c++) dxn[c] += r * w[c] * dn[c] - k * xn[c];
    }
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        float s = 0.0f;
        for (int n = 0; n < N; n++) s += dout[(size_t)n * C + c] * x[(size_t)n * C + c] * rstd[n];
        dw[c] += s;
    }
}

void tg_llama_rope(float *x, size_t ld, const float *cos_t, const float *sin_t, int B, int T, int nh, int hs,
                   int inverse) {
    const int half = hs / 2;
    const float sgn = inverse ? -1.0f : 1.0f;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < B * T; n++) {
        const int t = n % T;
        const float *ct = cos_t + (size_t)t * half, *st = sin_t + (size_t)t * half;
        for (int h = 0; h < nh; h++) {
            float *v = x + (size_t)n * ld + (size_t)h * hs;
            for (int i = 0; i < half; i++) {
                const float a = v[i], b = v[i + half], c = ct[i], s = sgn * st[i];
                v[i] = a * c - b * s;
                v[i + half] = b * c + a * s;
            }
        }
    }
}

void tg_llama_swiglu_forward(float *h, const float *gate, const float *up, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        const float g = gate[i];
        h[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void tg_llama_swiglu_backward(float *dgate, float *dup, const float *dh, const float *gate, const float *up,
                              size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        const float g = gate[i], s = 1.0f / (1.0f + expf(-g)), d = dh[i];
        dup[i] = d * g * s;
        dgate[i] = d * up[i] * s * (1.0f + g * (1.0f - s));
    }
}

void tg_llama_linear_forward(float *out, size_t ldo, const float *x, const float *W, int N, int IC, int OC) {
    /* B(ic, oc) = W[oc*IC + ic]: the GEMM packs W as a transposed view, no copy. */
    tg_cpu_gemm_strided(out, ldo, x, (size_t)IC, 1, W, 1, (size_t)IC, NULL, N, OC, IC, 0);
}

void tg_llama_linear_backward(float *dx, float *dW, const float *dout, size_t ldd, const float *x, const float *W,
                              int N, int IC, int OC, int accumulate) {
    tg_cpu_gemm(dx, (size_t)IC, dout, ldd, 1, W, (size_t)IC, NULL, N, IC, OC, accumulate);
    tg_cpu_gemm(dW, (size_t)IC, dout, 1, ldd, x, (size_t)IC, NULL, OC, IC, N, 1);
}

void tg_llama_kv_expand(float *out, size_t ld_out, const float *kv, size_t ld_in, int N, int nh, int nkv, int hs) {
    const int group = nh / nkv;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int h = 0; h < nh; h++) {
            const float *src = kv + (size_t)n * ld_in + (size_t)(h / group) * hs;
            float *dst = out + (size_t)n * ld_out + (size_t)h * hs;
            for (int i = 0; i < hs; i++) dst[i] = src[i];
        }
}

void tg_llama_kv_reduce(float *dkv, const float *dexp, size_t ld_exp, int N, int nh, int nkv, int hs) {
    const int group = nh / nkv;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int k = 0; k < nkv; k++) {
            float *dst = dkv + (size_t)n * nkv * hs + (size_t)k * hs;
            for (int i = 0; i < hs; i++) {
                float s = 0.0f;
                for (int g = 0; g < group; g++) s += dexp[(size_t)n * ld_exp + (size_t)(k * group + g) * hs + i];
                dst[i] = s;
            }
        }
}

void tg_llama_embed_forward(float *out, const int32_t *inp, const float *E, int N, int C) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) out[(size_t)n * C + c] = E[(size_t)inp[n] * C + c];
}

void tg_llama_embed_backward(float *dE, const float *dout, const int32_t *inp, int N, int C) {
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++)
        for (int n = 0; n < N; n++) dE[(size_t)inp[n] * C + c] += dout[(size_t)n * C + c];
}
