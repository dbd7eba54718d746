/* model/cpu/llama_kernels.h — internal: the fp32 OpenMP kernels Llama adds to cpu_kernels.h
 * (RMSNorm, RoPE, SwiGLU, nn.Linear-layout matmuls, grouped KV heads, the embedding).
 *
 * Same determinism contract as cpu_kernels.h: parallel over disjoint outputs, each output summed
 * in a fixed order, so results are bitwise identical for any thread count. N = rows (B*T). */
#ifndef TG_LLAMA_KERNELS_H
#define TG_LLAMA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* out (N, C) = x * rstd * w, rstd[n] = 1/sqrt(mean(x[n]^2) + eps) (HF LlamaRMSNorm, fp32). */
void tg_llama_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int N, int C, float eps);
/* dx += d/dx (accumulates into the residual gradient); dw += sum_n dout * x * rstd. */
void tg_llama_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                               const float *rstd, int N, int C);

/* cos/sin tables: tg_llama_rope_tables (model/llama.h). In place on x: rows of B*T positions (position = row % T), row stride ld, nh heads of hs
 * channels each starting at column 0. inverse = 0 rotates (forward); 1 rotates back, which is the
 * backward (the rotation is orthogonal). */
void tg_llama_rope(float *x, size_t ld, const float *cos_t, const float *sin_t, int B, int T, int nh, int hs,
                   int inverse);

/* h = silu(gate) * up over n elements. */
void tg_llama_swiglu_forward(float *h, const float *gate, const float *up, size_t n);
/* dgate, dup from dh (dgate may alias dh). */
void tg_llama_swiglu_backward(float *dgate, float *dup, const float *dh, const float *gate, const float *up,
                              size_t n);

/* out (N, OC) with row stride ldo = x (N, IC) @ W^T, W (OC, IC) as nn.Linear stores it. */
void tg_llama_linear_forward(float *out, size_t ldo, const float *x, const float *W, int N, int IC, int OC);
/* dx (N, IC) = dout @ W (accumulate: added to dx, else overwritten); dW (OC, IC) += dout^T @ x.
 * dout has row stride ldd. */
void tg_llama_linear_backward(float *dx, float *dW, const float *dout, size_t ldd, const float *x, const float *W,
                              int N, int IC, int OC, int accumulate);

/* Grouped-query attention on the shared attention kernels: kv (N, nkv*hs, row stride ld_in) is
 * expanded into out's nh*hs columns (row stride ld_out), head h reading KV head h / (nh/nkv). */
void tg_llama_kv_expand(float *out, size_t ld_out, const float *kv, size_t ld_in, int N, int nh, int nkv, int hs);
/* The adjoint: dkv (N, nkv*hs) = sum over each KV head's group of dexp's heads. */
void tg_llama_kv_reduce(float *dkv, const float *dexp, size_t ld_exp, int N, int nh, int nkv, int hs);

/* out (N, C) = E[inp[n]]. */
void tg_llama_embed_forward(float *out, const int32_t *inp, const float *E, int N, int C);
/* dE[inp[n]] += dout[n], rows in order n = 0..N-1 for every channel. */
void tg_llama_embed_backward(float *dE, const float *dout, const int32_t *inp, int N, int C);

#endif
