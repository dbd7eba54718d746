/* model/cpu/cpu_kernels.h — internal: the fp32 OpenMP layer kernels of the CPU backend.
 *
 * Shapes: B batch rows, T positions, C channels, NH heads, OC/IC output/input channels,
 * V real vocab, Vp padded vocab. Activations are row-major (B, T, ...).
 *
 * Determinism: every kernel parallelises over output elements (or disjoint output blocks) and
 * each output is summed in one fixed order that does not depend on the number of threads, so
 * results are bitwise identical for any OMP_NUM_THREADS. No atomics, no thread-count-dependent
 * reductions. Buffers should be 64-byte aligned (vector code then never peels by address). */
#ifndef TG_CPU_KERNELS_H
#define TG_CPU_KERNELS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* C[M, N] (row stride ldc) = base + A @ B, where A(r, k) = A[r*sar + k*sak] (so A may be a
 * transposed view), B is (K, N) row-major with row stride ldb, and base is C itself when
 * accumulate != 0, else bias[n] (bias may be NULL: zero). M, N, K > 0. Each C element sums k in
 * fixed chunks of consecutive k, each chunk in order, and adds the chunk sums to its base in
 * chunk order — the same arithmetic whatever the thread count. Parallel over tiles of C. */
/* The instruction-set paths of the GEMM. SSE (x86-64-v2) always exists; AVX2 needs AVX2 + FMA,
 * AVX512 AVX-512F besides. AVX2 and AVX512 both sum each element as one FMA chain along k: they
 * give the same bits. */
typedef enum { TG_CPU_ISA_SSE = 0, TG_CPU_ISA_AVX2 = 1, TG_CPU_ISA_AVX512 = 2 } tg_cpu_isa;

/* The fastest path this CPU runs (cpuid). */
tg_cpu_isa tg_cpu_isa_best(void);

/* As tg_cpu_gemm, with B(k, n) = B[k*sbk + n*sbn] (so B may be a transposed view), on the best
 * path. Per element the sum order is fixed by the ISA path alone (k chunks of 256, each in order),
 * never by the thread count. */
void tg_cpu_gemm_strided(float *C, size_t ldc, const float *A, size_t sar, size_t sak,
                         const float *B, size_t sbk, size_t sbn, const float *bias, int M, int N,
                         int K, int accumulate);
/* The packed path of tg_cpu_gemm_strided (which takes it for M > 4) on the given ISA path
 * (which the CPU must support): for tests. */
void tg_cpu_gemm_isa(float *C, size_t ldc, const float *A, size_t sar, size_t sak,
                     const float *B, size_t sbk, size_t sbn, const float *bias, int M, int N,
                     int K, int accumulate, tg_cpu_isa isa);
/* The small-M path tg_cpu_gemm_strided takes when tg_cpu_gemm_small_ok (M <= 4 rows, B
 * row-major or transposed: sbn == 1 or sbk == 1): matrix-vector kernels that read B in place and
 * share the N columns out to threads. Bitwise the same C as tg_cpu_gemm_isa on the same path. */
int tg_cpu_gemm_small_ok(int M, size_t sbk, size_t sbn);
void tg_cpu_gemm_small_isa(float *C, size_t ldc, const float *A, size_t sar, size_t sak,
                           const float *B, size_t sbk, size_t sbn, const float *bias, int M,
                           int N, int K, int accumulate, tg_cpu_isa isa);

void tg_cpu_gemm(float *C, size_t ldc, const float *A, size_t sar, size_t sak, const float *B,
                 size_t ldb, const float *bias, int M, int N, int K, int accumulate);

/* out (B,T,C) = wte[inp[b,t]] + wpe[t]. */
void tg_cpu_encoder_forward(float *out, const int32_t *inp, const float *wte, const float *wpe,
                            int B, int T, int C);
/* dwte[inp[b,t]] += dout[b,t]; dwpe[t] += sum_b dout[b,t]. */
void tg_cpu_encoder_backward(float *dwte, float *dwpe, const float *dout, const int32_t *inp,
                             int B, int T, int C);

/* out, mean, rstd (N = B*T rows of C) = LayerNorm(inp) * w + b, eps 1e-5. */
void tg_cpu_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                              const float *w, const float *b, int N, int C);
/* dinp += d/dinp; dw += ...; db += ... */
void tg_cpu_layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                               const float *inp, const float *w, const float *mean,
                               const float *rstd, int N, int C);

/* out (N, OC) = inp (N, IC) @ W (IC, OC) + bias (OC) — HF Conv1D layout. */
void tg_cpu_matmul_forward(float *out, const float *inp, const float *W, const float *bias, int N,
                           int IC, int OC);
/* dinp (N, IC) = dout @ W^T (overwritten); dW (IC, OC) += inp^T @ dout; dbias (OC) += sum_n dout.
 */
void tg_cpu_matmul_backward(float *dinp, float *dW, float *dbias, const float *dout,
                            const float *inp, const float *W, int N, int IC, int OC);

/* qkv (B,T,3C) -> out (B,T,C); att (B,NH,T,T) keeps the causal softmax (zeros above diagonal). */
void tg_cpu_attention_forward(float *out, float *att, const float *qkv, int B, int T, int C,
                              int NH);
/* dqkv (B,T,3C) = gradient (overwritten); scratch holds B*NH*T floats. */
void tg_cpu_attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv,
                               const float *att, int B, int T, int C, int NH);

/* x[i] = tanh(x[i]), i < n: SLEEF's vector tanhf (max error 1 ulp). Each element's
 * result depends on the ISA path alone (AVX2 and AVX512 share the FMA variant, SSE its own), never
 * on n or where x starts. */
void tg_cpu_tanh_isa(float *x, size_t n, tg_cpu_isa isa);

/* GELU, tanh approximation (tanh by tg_cpu_tanh_isa on the best path), over n elements.
 * backward: d (in place) = gelu'(inp) * d. */
void tg_cpu_gelu_forward(float *out, const float *inp, size_t n);
void tg_cpu_gelu_backward(float *d, const float *inp, size_t n);

/* out (N, C) = a + b. */
void tg_cpu_residual_forward(float *out, const float *a, const float *b, size_t n);

/* x[i] = x[i] rounded to bfloat16 (nearest-even), kept as float: bf16 storage emulated. */
void tg_cpu_round_bf16(float *x, size_t n);

/* Per row of logits (N, Vp): lse = log-sum-exp over the real vocab [0, V) and losses = lse -
 * logit[target] (0 where target < 0). Padded columns never enter the softmax. */
void tg_cpu_crossentropy_forward(float *losses, float *lse, const float *logits,
                                 const int32_t *targets, int N, int V, int Vp);
/* dlogits (N, Vp) = dscale * (softmax - onehot) on [0, V), 0 on padded columns and ignored rows. */
void tg_cpu_crossentropy_backward(float *dlogits, const float *logits, const float *lse,
                                  const int32_t *targets, float dscale, int N, int V, int Vp);

/* sum of g[i]^2 over [lo, hi) in double, as fixed 65536-element chunks summed in chunk order:
 * the result does not depend on the thread count. TG_ERR_NOMEM if the partial sums cannot be
 * allocated. */
/* x[0, n) = 0, on all threads. */
void tg_cpu_zero(float *x, size_t n);
tg_status tg_cpu_sqnorm(const float *g, size_t lo, size_t hi, double *out, tg_error *err);

/* a[j] = (q . k_j) * scale for j < n, k_j = k + j * stride (hs floats each): each dot sums its
 * products in i order, a rounded product then an add, as `for (i) dot += q[i] * k[i]` on x86-64-v2
 * does — eight keys at a time in SSE lanes, so the sum order is the scalar loop's. */
void tg_cpu_attention_scores(float *a, const float *q, const float *k, size_t stride, int n, int hs,
                             float scale);

/* One causal attention row, shared by the training forward and the KV-cache decoder so that both
 * give the same bits: query q (hs floats) attends over rows 0..t of k and v (row stride ld, hs
 * floats each); a[0..t] gets the softmax weights (a[t+1..] untouched), o[0..hs) the output. */
static inline void tg_cpu_attention_row_kv(float *o, float *a, const float *q, const float *k, const float *v,
                                           size_t ld, int hs, int t, float scale) {
    tg_cpu_attention_scores(a, q, k, ld, t + 1, hs, scale);
    float maxv = -INFINITY;
    for (int t2 = 0; t2 <= t; t2++)
        if (a[t2] > maxv) maxv = a[t2];
    float sum = 0.0f;
    for (int t2 = 0; t2 <= t; t2++) {
        a[t2] = expf(a[t2] - maxv);
        sum += a[t2];
    }
    const float inv = 1.0f / sum;
    for (int t2 = 0; t2 <= t; t2++) a[t2] *= inv;
    for (int i = 0; i < hs; i++) o[i] = 0.0f;
    for (int t2 = 0; t2 <= t; t2++) {
        const float *vr = v + (size_t)t2 * ld;
        const float w = a[t2];
        for (int i = 0; i < hs; i++) o[i] += w * vr[i];
    }
}

/* The same over a packed sequence: rows of 3*C floats (q, k, v), head h, query row t. */
static inline void tg_cpu_attention_row(float *o, float *a, const float *seq, int C, int h, int hs, int t,
                                        float scale) {
    const size_t C3 = 3 * (size_t)C, hh = (size_t)h * hs;
    tg_cpu_attention_row_kv(o, a, seq + (size_t)t * C3 + hh, seq + C + hh, seq + 2 * (size_t)C + hh, C3, hs, t,
                            scale);
}

#endif
