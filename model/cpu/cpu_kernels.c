/* model/cpu/cpu_kernels.c — fp32 layer kernels for the CPU backend (see cpu_kernels.h).
 * The layer maths follows llm.c's train_gpt2.c; the weights use the HF Conv1D (in, out) layout. */
#include "model/cpu/cpu_kernels.h"

#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Below these sizes (elements) a forward kernel runs on the calling thread, outside any OpenMP
 * region: fork and join cost more than the work (one row of KV-cache decoding), and on a busy
 * machine an unscheduled thread would hold the others at the join. Numerics never depend on it. */
#define PAR_MIN_ELEMS (1L << 15)
#define PAR_MIN_GELU (1L << 14) /* GELU: ~3 ns an element */

/* --------------------------------------------------------------------------------------------- */

void tg_cpu_encoder_forward(float *out, const int32_t *inp, const float *wte, const float *wpe,
                            int B, int T, int C) {
#pragma omp parallel for schedule(static)
    for (int bt = 0; bt < B * T; bt++) {
        const float *we = wte + (size_t)inp[bt] * C;
        const float *pe = wpe + (size_t)(bt % T) * C;
        float *o = out + (size_t)bt * C;
        for (int c = 0; c < C; c++) o[c] = we[c] + pe[c];
    }
}

/* Column blocks for reductions over rows: a thread owns whole columns, so the sum over rows runs
 * in row order whatever the thread count. */
#define COL_BLOCK 32

void tg_cpu_encoder_backward(float *dwte, float *dwpe, const float *dout, const int32_t *inp,
                             int B, int T, int C) {
    const int n_cb = (C + COL_BLOCK - 1) / COL_BLOCK;
    /* Tokens repeat, so dwte rows are shared between positions: split by columns. */
#pragma omp parallel for schedule(static)
    for (int cb = 0; cb < n_cb; cb++) {
        const int c0 = cb * COL_BLOCK, c1 = c0 + COL_BLOCK < C ? c0 + COL_BLOCK : C;
        for (int bt = 0; bt < B * T; bt++) {
            float *dw = dwte + (size_t)inp[bt] * C;
            const float *d = dout + (size_t)bt * C;
            for (int c = c0; c < c1; c++) dw[c] += d[c];
        }
    }
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        float *dp = dwpe + (size_t)t * C;
        for (int b = 0; b < B; b++) {
            const float *d = dout + ((size_t)b * T + t) * C;
            for (int c = 0; c < C; c++) dp[c] += d[c];
        }
    }
}

static inline void layernorm_row(float *o, float *mean, float *rstd, const float *x, const float *w,
                                 const float *b, int C) {
    const float eps = 1e-5f;
    float m = 0.0f;
    for (int c = 0; c < C; c++) m += x[c];
    m /= (float)C;
    float v = 0.0f;
    for (int c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
    v /= (float)C;
    const float s = 1.0f / sqrtf(v + eps);
    for (int c = 0; c < C; c++) o[c] = (x[c] - m) * s * w[c] + b[c];
    *mean = m;
    *rstd = s;
}

void tg_cpu_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                              const float *w, const float *b, int N, int C) {
    if ((long)N * C < PAR_MIN_ELEMS) {
        for (int n = 0; n < N; n++)
            layernorm_row(out + (size_t)n * C, mean + n, rstd + n, inp + (size_t)n * C, w, b, C);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        layernorm_row(out + (size_t)n * C, mean + n, rstd + n, inp + (size_t)n * C, w, b, C);
}

void tg_cpu_layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                               const float *inp, const float *w, const float *mean,
                               const float *rstd, int N, int C) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *d = dout + (size_t)n * C;
        const float m = mean[n], s = rstd[n];
        float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
        for (int c = 0; c < C; c++) {
            const float norm = (x[c] - m) * s, dnorm = w[c] * d[c];
            dnorm_mean += dnorm;
            dnorm_norm_mean += dnorm * norm;
        }
        dnorm_mean /= (float)C;
        dnorm_norm_mean /= (float)C;
        float *di = dinp + (size_t)n * C;
        for (int c = 0; c < C; c++) {
            const float norm = (x[c] - m) * s;
            di[c] += (w[c] * d[c] - dnorm_mean - norm * dnorm_norm_mean) * s;
        }
    }
    const int n_cb = (C + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for schedule(static)
    for (int cb = 0; cb < n_cb; cb++) {
        const int c0 = cb * COL_BLOCK, nc = c0 + COL_BLOCK < C ? COL_BLOCK : C - c0;
        float sw[COL_BLOCK] = {0}, sb[COL_BLOCK] = {0};
        for (int n = 0; n < N; n++) {
            const float *x = inp + (size_t)n * C + c0, *d = dout + (size_t)n * C + c0;
            const float m = mean[n], s = rstd[n];
            for (int c = 0; c < nc; c++) {
                sw[c] += (x[c] - m) * s * d[c];
                sb[c] += d[c];
            }
        }
        for (int c = 0; c < nc; c++) {
            dw[c0 + c] += sw[c];
            db[c0 + c] += sb[c];
        }
    }
}

void tg_cpu_matmul_forward(float *out, const float *inp, const float *W, const float *bias, int N,
                           int IC, int OC) {
    tg_cpu_gemm(out, (size_t)OC, inp, (size_t)IC, 1, W, (size_t)OC, bias, N, OC, IC, 0);
}

void tg_cpu_matmul_backward(float *dinp, float *dW, float *dbias, const float *dout,
                            const float *inp, const float *W, int N, int IC, int OC) {
    /* dinp = dout @ W^T: B(k=o, n=i) = W[i*OC + o]; the GEMM's packing reads it transposed. */
    tg_cpu_gemm_strided(dinp, (size_t)IC, dout, (size_t)OC, 1, W, 1, (size_t)OC, NULL, N, IC, OC, 0);
    /* dW += inp^T @ dout: A = inp viewed transposed (row stride 1, k stride IC). */
    tg_cpu_gemm(dW, (size_t)OC, inp, 1, (size_t)IC, dout, (size_t)OC, NULL, IC, OC, N, 1);
    if (dbias) {
        const int n_cb = (OC + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for schedule(static)
        for (int cb = 0; cb < n_cb; cb++) {
            const int o0 = cb * COL_BLOCK, no = o0 + COL_BLOCK < OC ? COL_BLOCK : OC - o0;
            float s[COL_BLOCK] = {0};
            for (int n = 0; n < N; n++) {
                const float *d = dout + (size_t)n * OC + o0;
                for (int o = 0; o < no; o++) s[o] += d[o];
            }
            for (int o = 0; o < no; o++) dbias[o0 + o] += s[o];
        }
    }
}

void tg_cpu_attention_scores(float *a, const float *q, const float *k, size_t stride, int n, int hs,
                             float scale) {
    const __m128 sc = _mm_set1_ps(scale);
    int j = 0;
    /* Eight keys: 4x4 blocks (4 keys x 4 channels) transposed in registers, so each lane is one
     * key's dot taking its products one channel at a time. */
    for (; j + 8 <= n; j += 8) {
        const float *p[8];
        for (int c = 0; c < 8; c++) p[c] = k + (size_t)(j + c) * stride;
        __m128 d0 = _mm_setzero_ps(), d1 = _mm_setzero_ps();
        int i = 0;
        for (; i + 4 <= hs; i += 4) {
            __m128 u0[4], u1[4];
            for (int c = 0; c < 4; c++) u0[c] = _mm_loadu_ps(p[c] + i), u1[c] = _mm_loadu_ps(p[c + 4] + i);
            _MM_TRANSPOSE4_PS(u0[0], u0[1], u0[2], u0[3]);
            _MM_TRANSPOSE4_PS(u1[0], u1[1], u1[2], u1[3]);
            for (int e = 0; e < 4; e++) {
                const __m128 qv = _mm_set1_ps(q[i + e]);
                d0 = _mm_add_ps(d0, _mm_mul_ps(qv, u0[e]));
                d1 = _mm_add_ps(d1, _mm_mul_ps(qv, u1[e]));
            }
        }
        for (; i < hs; i++) {
            const __m128 qv = _mm_set1_ps(q[i]);
            d0 = _mm_add_ps(d0, _mm_mul_ps(qv, _mm_setr_ps(p[0][i], p[1][i], p[2][i], p[3][i])));
            d1 = _mm_add_ps(d1, _mm_mul_ps(qv, _mm_setr_ps(p[4][i], p[5][i], p[6][i], p[7][i])));
        }
        _mm_storeu_ps(a + j, _mm_mul_ps(d0, sc));
        _mm_storeu_ps(a + j + 4, _mm_mul_ps(d1, sc));
    }
    for (; j < n; j++) {
        const float *kj = k + (size_t)j * stride;
        float dot = 0.0f;
        for (int i = 0; i < hs; i++) dot += q[i] * kj[i];
        a[j] = dot * scale;
    }
}

void tg_cpu_attention_forward(float *out, float *att, const float *qkv, int B, int T, int C,
                              int NH) {
    const int hs = C / NH;
    const size_t C3 = 3 * (size_t)C;
    const float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for collapse(3) schedule(dynamic, 4)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            for (int h = 0; h < NH; h++) {
                float *a = att + (((size_t)b * NH + h) * T + t) * T;
                tg_cpu_attention_row(out + ((size_t)b * T + t) * C + (size_t)h * hs, a, qkv + (size_t)b * T * C3, C,
                                     h, hs, t, scale);
                for (int t2 = t + 1; t2 < T; t2++) a[t2] = 0.0f;
            }
        }
    }
}

void tg_cpu_attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv,
                               const float *att, int B, int T, int C, int NH) {
    const int hs = C / NH;
    const size_t C3 = 3 * (size_t)C;
    const float scale = 1.0f / sqrtf((float)hs);
    /* One (b, h) pair owns its q, k, v slices of dqkv for all t: no write is shared. */
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            float *datt = scratch + ((size_t)b * NH + h) * T; /* (T) */
            for (int t = 0; t < T; t++) {
                float *d = dqkv + ((size_t)b * T + t) * C3 + (size_t)h * hs;
                memset(d, 0, (size_t)hs * sizeof *d);
                memset(d + C, 0, (size_t)hs * sizeof *d);
                memset(d + 2 * C, 0, (size_t)hs * sizeof *d);
            }
            for (int t = 0; t < T; t++) {
                const float *a = att + (((size_t)b * NH + h) * T + t) * T;
                const float *dy = dout + ((size_t)b * T + t) * C + (size_t)h * hs;
                const float *q = qkv + ((size_t)b * T + t) * C3 + (size_t)h * hs;
                float *dq = dqkv + ((size_t)b * T + t) * C3 + (size_t)h * hs;
                /* datt = dy . v; dv += att * dy */
                float dot_ad = 0.0f;
                for (int t2 = 0; t2 <= t; t2++) {
                    const size_t row = ((size_t)b * T + t2) * C3 + (size_t)h * hs;
                    const float *v = qkv + row + 2 * (size_t)C;
                    float *dv = dqkv + row + 2 * (size_t)C;
                    float s = 0.0f;
                    for (int i = 0; i < hs; i++) s += dy[i] * v[i];
                    datt[t2] = s;
                    dot_ad += a[t2] * s;
                    const float w = a[t2];
                    for (int i = 0; i < hs; i++) dv[i] += w * dy[i];
                }
                /* softmax backward: dpre = att * (datt - sum(att * datt)); then through the scaled
                 * dot product into dq and dk. */
                for (int t2 = 0; t2 <= t; t2++) {
                    const float dpre = a[t2] * (datt[t2] - dot_ad) * scale;
                    const size_t row = ((size_t)b * T + t2) * C3 + (size_t)h * hs;
                    const float *k = qkv + row + C;
                    float *dk = dqkv + row + C;
                    for (int i = 0; i < hs; i++) {
                        dq[i] += dpre * k[i];
                        dk[i] += dpre * q[i];
                    }
                }
            }
        }
    }
}

#define GELU_SCALE 0.7978845608028654f /* sqrt(2 / pi) */
#define GELU_BLOCK 256                    /* elements whose tanh arguments sit in one stack buffer */

/* th = tanh(sqrt(2/pi) (x + 0.044715 x^3)) over one block of n <= GELU_BLOCK. */
static void gelu_tanh_block(float *th, const float *inp, size_t n, tg_cpu_isa isa) {
    for (size_t i = 0; i < n; i++) {
        const float x = inp[i];
        th[i] = GELU_SCALE * (x + 0.044715f * x * x * x);
    }
    tg_cpu_tanh_isa(th, n, isa);
}

/* out = 0.5 x (1 + th) over one block. */
static void gelu_forward_block(float *out, const float *inp, size_t n, tg_cpu_isa isa) {
    float th[GELU_BLOCK];
    gelu_tanh_block(th, inp, n, isa);
    for (size_t i = 0; i < n; i++) out[i] = 0.5f * inp[i] * (1.0f + th[i]);
}

static void gelu_backward_block(float *d, const float *inp, size_t n, tg_cpu_isa isa) {
    float th[GELU_BLOCK];
    gelu_tanh_block(th, inp, n, isa);
    for (size_t i = 0; i < n; i++) {
        const float x = inp[i], t = th[i];
        const float sech2 = 1.0f - t * t;
        const float g = 0.5f * (1.0f + t) + 0.5f * x * sech2 * GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
        d[i] *= g;
    }
}

/* Each element's arithmetic is the same in any block (cpu_vmath.c), so the split into blocks and
 * threads never changes a result. */
void tg_cpu_gelu_forward(float *out, const float *inp, size_t n) {
    const tg_cpu_isa isa = tg_cpu_isa_best();
    const size_t nb = (n + GELU_BLOCK - 1) / GELU_BLOCK;
    if (n < PAR_MIN_GELU) {
        for (size_t b = 0; b < nb; b++) {
            const size_t lo = b * GELU_BLOCK, len = n - lo < GELU_BLOCK ? n - lo : GELU_BLOCK;
            gelu_forward_block(out + lo, inp + lo, len, isa);
        }
        return;
    }
#pragma omp parallel for schedule(static)
    for (size_t b = 0; b < nb; b++) {
        const size_t lo = b * GELU_BLOCK, len = n - lo < GELU_BLOCK ? n - lo : GELU_BLOCK;
        gelu_forward_block(out + lo, inp + lo, len, isa);
    }
}

void tg_cpu_gelu_backward(float *d, const float *inp, size_t n) {
    const tg_cpu_isa isa = tg_cpu_isa_best();
    const size_t nb = (n + GELU_BLOCK - 1) / GELU_BLOCK;
#pragma omp parallel for schedule(static)
    for (size_t b = 0; b < nb; b++) {
        const size_t lo = b * GELU_BLOCK, len = n - lo < GELU_BLOCK ? n - lo : GELU_BLOCK;
        gelu_backward_block(d + lo, inp + lo, len, isa);
    }
}

void tg_cpu_residual_forward(float *out, const float *a, const float *b, size_t n) {
    if (n < PAR_MIN_ELEMS) {
        for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
        return;
    }
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void tg_cpu_round_bf16(float *x, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], sizeof u);
        if ((u & 0x7f800000u) != 0x7f800000u) { /* inf and NaN stay as they are */
            u += 0x7fffu + ((u >> 16) & 1u);    /* round to nearest, ties to even */
            u &= 0xffff0000u;
            memcpy(&x[i], &u, sizeof u);
        }
    }
}

void tg_cpu_crossentropy_forward(float *losses, float *lse, const float *logits,
                                 const int32_t *targets, int N, int V, int Vp) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *z = logits + (size_t)n * Vp;
        float maxv = -INFINITY;
        for (int v = 0; v < V; v++) maxv = z[v] > maxv ? z[v] : maxv;
        float sum = 0.0f;
        for (int v = 0; v < V; v++) sum += expf(z[v] - maxv);
        lse[n] = maxv + logf(sum);
        losses[n] = targets[n] < 0 ? 0.0f : lse[n] - z[targets[n]];
    }
}

void tg_cpu_crossentropy_backward(float *dlogits, const float *logits, const float *lse,
                                  const int32_t *targets, float dscale, int N, int V, int Vp) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *z = logits + (size_t)n * Vp;
        float *dz = dlogits + (size_t)n * Vp;
        const int tgt = targets[n];
        if (tgt < 0) {
            memset(dz, 0, (size_t)Vp * sizeof *dz);
            continue;
        }
        for (int v = 0; v < V; v++) dz[v] = expf(z[v] - lse[n]) * dscale;
        dz[tgt] -= dscale;
        for (int v = V; v < Vp; v++) dz[v] = 0.0f;
    }
}

/* Sum of squares of n floats in double: eight running sums (lane j takes elements i = j mod 8, in
 * order), combined pairwise, then the tail in order. The AVX2 body (multiply and add kept apart)
 * and the scalar loop do the same operations, so the result does not depend on the path. */
static double sqnorm_scalar(const float *g, size_t n) {
    double l[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) l[j] += (double)g[i + j] * (double)g[i + j];
    double s = ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]));
    for (; i < n; i++) s += (double)g[i] * (double)g[i];
    return s;
}

__attribute__((target("avx2"))) static double sqnorm_avx2(const float *g, size_t n) {
    __m256d s0 = _mm256_setzero_pd(), s1 = s0; /* lanes 0-3 and 4-7 */
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_loadu_ps(g + i);
        const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(x));
        const __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1));
        s0 = _mm256_add_pd(s0, _mm256_mul_pd(lo, lo));
        s1 = _mm256_add_pd(s1, _mm256_mul_pd(hi, hi));
    }
    double l[8];
    _mm256_storeu_pd(l, s0);
    _mm256_storeu_pd(l + 4, s1);
    double s = ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]));
    for (; i < n; i++) s += (double)g[i] * (double)g[i];
    return s;
}

tg_status tg_cpu_sqnorm(const float *g, size_t lo, size_t hi, double *out, tg_error *err) {
    enum { CHUNK = 1 << 16 };
    const size_t n = hi - lo, n_chunks = (n + CHUNK - 1) / CHUNK;
    double *part = malloc((n_chunks ? n_chunks : 1) * sizeof *part);
    if (!part) return tg_error_set(err, TG_ERR_NOMEM, "model: out of memory (grad_sqnorm)");
    const int avx2 = tg_cpu_isa_best() >= TG_CPU_ISA_AVX2;
#pragma omp parallel for schedule(dynamic, 16)
    for (size_t c = 0; c < n_chunks; c++) {
        const size_t i0 = lo + c * CHUNK, i1 = i0 + CHUNK < hi ? i0 + CHUNK : hi;
        part[c] = avx2 ? sqnorm_avx2(g + i0, i1 - i0) : sqnorm_scalar(g + i0, i1 - i0);
    }
    double total = 0.0;
    for (size_t c = 0; c < n_chunks; c++) total += part[c];
    free(part);
    *out = total;
    return TG_OK;
}

void tg_cpu_zero(float *x, size_t n) {
    enum { CHUNK = 1 << 16 };
    const size_t n_chunks = (n + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(dynamic, 16)
    for (size_t c = 0; c < n_chunks; c++) {
        const size_t i0 = c * CHUNK, m = n - i0 < CHUNK ? n - i0 : CHUNK;
        memset(x + i0, 0, m * sizeof *x);
    }
}
