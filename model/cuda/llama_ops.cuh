/* model/cuda/llama_ops.cuh — the op launchers Llama adds to ops.cuh (llama_kernels.cu): RMSNorm,
 * RoPE fused into the attention re-layout, SwiGLU.
 *
 * Same conventions as ops.cuh: enqueued on s, each launch checked, X in {float, tg_bf16} with fp32
 * arithmetic, parameter gradients fp32 and accumulated (+=), column reductions without atomics.
 * The math is the CPU reference's (model/cpu/llama_kernels.c) operation for operation; only the
 * order of the row sums differs (warp trees instead of a serial loop). */
#ifndef TG_CUDA_LLAMA_OPS_CUH
#define TG_CUDA_LLAMA_OPS_CUH

#include "model/cuda/ops.cuh"

/* res = a + b (when b != NULL, rounded to X: the RMSNorm reads what backward reads back; else
 * x = a and res is not written);  out = w * (x * rstd), rstd = 1/sqrt(mean(x^2) + eps) (N, fp32,
 * kept for backward). One warp per row. */
template <typename X>
tg_status tg_cuda_residual_rmsnorm_forward(X *res, X *out, float *rstd, const X *a, const X *b, const X *w, int N,
                                           int C, float eps, cudaStream_t s, tg_error *err);
/* dx += r*w*dy - x * r^3/C * sum(w*dy*x) (the residual-stream gradient);  dw (fp32, C) += sum_n
 * dy*x*r, a deterministic two-pass column reduction through partial (TG_CUDA_COL_CHUNKS * C
 * floats; tg_cuda_column_sum_finish). */
template <typename X>
tg_status tg_cuda_rmsnorm_backward(X *dx, float *dw, float *partial, const X *dout, const X *x, const float *rstd,
                                   const X *w, int N, int C, cudaStream_t s, tg_error *err);

/* The attention input from the fused q|k|v projection, RoPE applied on the way:
 * raw (B, T, C + 2 KV) = q | k | v per row (KV = NKV * HS, the q/k/v_proj weights being adjacent
 * in the flat buffer, one matmul makes all three) ->
 * qkv (B, T, 3C) = rope(q) | rope(k) and v with KV head h / (NH/NKV) copied to head h
 * (grouped-query attention on the MHA kernels: attention.cu, flash_attention.cu and
 * cudnn_attention.cpp read this layout). cos_t, sin_t: (T, HS/2) fp32 (tg_llama_rope_tables);
 * HF's rotate-half pairs channel i < HS/2 with i + HS/2. */
template <typename X>
tg_status tg_cuda_llama_qkv_forward(X *qkv, const X *raw, const float *cos_t, const float *sin_t, int B, int T,
                                    int NH, int NKV, int HS, cudaStream_t s, tg_error *err);
/* The adjoint: dqkv (B, T, 3C) -> draw (B, T, C + 2 KV): dq rotated back; dk summed over each KV
 * head's group (fp32), then rotated back; dv summed over the group. Overwrites draw. */
template <typename X>
tg_status tg_cuda_llama_qkv_backward(X *draw, const X *dqkv, const float *cos_t, const float *sin_t, int B, int T,
                                     int NH, int NKV, int HS, cudaStream_t s, tg_error *err);

/* RoPE in the projection's layout: out (B, T, C + 2 KV) = in with the q and k heads rotated
 * (inverse = 1: rotated back, the backward) and v copied; out may be in. For cuDNN's attention,
 * which reads the KV heads as they are. */
template <typename X>
tg_status tg_cuda_llama_rope(X *out, const X *in, const float *cos_t, const float *sin_t, int B, int T, int NH,
                             int NKV, int HS, int inverse, cudaStream_t s, tg_error *err);

/* RoPE for the KV-cache decoder's n new rows: out (n, C + 2 KV) = in with the q and k heads of row
 * r rotated at position pos[0] + r, v copied; out may be in. pos is device memory read by the
 * kernel, so the launch is the same at every position (a CUDA graph can replay it). */
template <typename X>
tg_status tg_cuda_llama_rope_at(X *out, const X *in, const float *cos_t, const float *sin_t, const int32_t *pos, int n,
                                int NH, int NKV, int HS, cudaStream_t s, tg_error *err);

/* h (N, F) = silu(gate) * up, from gu (N, 2F) = gate | up per row (gate_proj and up_proj are
 * adjacent in the flat buffer: one matmul makes both). */
template <typename X>
tg_status tg_cuda_swiglu_forward(X *h, const X *gu, int N, int F, cudaStream_t s, tg_error *err);
/* dgu (N, 2F) = dgate | dup from dh (N, F) and gu. Overwrites dgu. */
template <typename X>
tg_status tg_cuda_swiglu_backward(X *dgu, const X *dh, const X *gu, int N, int F, cudaStream_t s, tg_error *err);

#endif
