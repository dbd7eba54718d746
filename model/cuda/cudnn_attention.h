/* model/cuda/cudnn_attention.h — causal attention through cuDNN's fused SDPA (cudnn-frontend
 * graphs). Host C++ (cudnn_attention.cpp): kept out of the nvcc-compiled files because the
 * frontend's headers are heavy, and included by ops.cuh.
 *
 * init builds the forward and backward graphs for one (B, T, NH, HS) (bf16, causal); where cuDNN
 * (or this build) cannot, it returns TG_OK with *out = NULL and the reason in why. The caller
 * gives it tg_cudnn_attn_workspace() bytes of device memory before the first call.
 * Layouts: qkv (B, T, 3C), y/dy (B, T, C), dqkv (B, T, 3C) overwritten; stats (B, NH, T) fp32 in
 * natural-log units, read only by tg_cudnn_attn_backward. With grouped-query attention
 * (tg_cudnn_attn_init_gqa, NKV key/value heads, query head h reading KV head h / (NH / NKV)):
 * qkv and dqkv are (B, T, (NH + 2 NKV) HS) = q | k | v per row, and cuDNN sums dk, dv over each
 * group itself. */
#ifndef TG_CUDNN_ATTENTION_H
#define TG_CUDNN_ATTENTION_H

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stddef.h>

extern "C" {
#include "core/log.h"
#include "core/status.h"
}

typedef struct tg_cudnn_attn tg_cudnn_attn;
/* deterministic: the backward without dQ atomics (bitwise reproducible). tune: build every
 * candidate plan, and time them on the first forward / backward call (which then synchronises),
 * keeping the fastest and saying which through log (NULL: stderr; it must outlive a). */
tg_status tg_cudnn_attn_init(tg_cudnn_attn **out, int B, int T, int NH, int HS, int deterministic,
                             int tune, const tg_log *log, char *why, size_t why_n, tg_error *err);
size_t tg_cudnn_attn_workspace(const tg_cudnn_attn *a);
/* The same with NKV key/value heads (NH a multiple of NKV; NKV = NH is tg_cudnn_attn_init). */
tg_status tg_cudnn_attn_init_gqa(tg_cudnn_attn **out, int B, int T, int NH, int NKV, int HS, int deterministic,
                                 int tune, const tg_log *log, char *why, size_t why_n, tg_error *err);
void tg_cudnn_attn_set_workspace(tg_cudnn_attn *a, void *ws);
/* C: the query width NH * HS (k starts there in a row; v at C + NKV * HS). */
tg_status tg_cudnn_attn_forward(tg_cudnn_attn *a, __nv_bfloat16 *y, float *stats, const __nv_bfloat16 *qkv,
                                int C, cudaStream_t s, tg_error *err);
tg_status tg_cudnn_attn_backward(tg_cudnn_attn *a, __nv_bfloat16 *dqkv, const __nv_bfloat16 *dy,
                                 const __nv_bfloat16 *y, const __nv_bfloat16 *qkv, const float *stats, int C,
                                 cudaStream_t s, tg_error *err);
void tg_cudnn_attn_free(tg_cudnn_attn *a);
/* The version of the cuDNN library loaded at run time (cudnnGetVersion: major * 10000 + minor *
 * 100 + patch), which can differ from the headers' (LD_LIBRARY_PATH). */
size_t tg_cudnn_version(void);

#endif
