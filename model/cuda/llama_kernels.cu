/* model/cuda/llama_kernels.cu — RMSNorm, the RoPE + grouped-query re-layout, SwiGLU
 * (llama_ops.cuh). Plain scalar kernels: these are elementwise or one pass over a row, small next
 * to the matmuls. Their bodies are in llama_kernels.cuh (host and device), each written to match
 * model/cpu/llama_kernels.c operation for operation. */
#include "model/cuda/llama_kernels.cuh"
#include "model/cuda/llama_ops.cuh"

#define TG_RMS_WARPS 8 /* rows (warps) per block of the row kernels */

/* ---- RMSNorm: one warp per row ---- */

template <typename X>
__global__ void __launch_bounds__(32 * TG_RMS_WARPS)
residual_rmsnorm_kernel(X *res, X *out, float *rstd, const X *a, const X *b, const X *w, int N, int C, float eps) {
    const int row = blockIdx.x * TG_RMS_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const size_t off = (size_t)row * C;
    const float r = llama_rms_rstd(tg_warp_sum(llama_rms_sumsq<X>(res, a, b, off, C, lane, 32)), C, eps);
    /* reads the rounded residual back: this lane wrote those columns (no barrier needed) */
    llama_rms_scale<X>(out, b ? res : a, w, off, C, r, lane, 32);
    if (lane == 0) rstd[row] = r;
}

template <typename X>
__global__ void __launch_bounds__(32 * TG_RMS_WARPS)
rmsnorm_backward_dx_kernel(X *dx, const X *dout, const X *x, const float *rstd, const X *w, int N, int C) {
    const int row = blockIdx.x * TG_RMS_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const size_t off = (size_t)row * C;
    const float dot = tg_warp_sum(llama_rms_dot<X>(dout, x, w, off, C, lane, 32));
    llama_rms_dx<X>(dx, dout, x, w, off, C, rstd[row], dot, lane, 32);
}

/* Block k: the chunk's column sums of dy * x * rstd into partial[k]. */
template <typename X>
__global__ void rmsnorm_backward_dw_kernel(float *partial, const X *dout, const X *x, const float *rstd, int N, int C,
                                           int rows) {
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        partial[(size_t)blockIdx.x * C + c] = llama_rms_dw_part<X>(dout, x, rstd, N, C, rows, blockIdx.x, c);
}

template <typename X>
tg_status tg_cuda_residual_rmsnorm_forward(X *res, X *out, float *rstd, const X *a, const X *b, const X *w, int N,
                                           int C, float eps, cudaStream_t s, tg_error *err) {
    tg_status st = TG_OK;
    const unsigned int blocks = (unsigned int)((N + TG_RMS_WARPS - 1) / TG_RMS_WARPS);
    if (N <= 0) goto cleanup;
    residual_rmsnorm_kernel<X><<<blocks, 32 * TG_RMS_WARPS, 0, s>>>(res, out, rstd, a, b, w, N, C, eps);
    TG_CUDA_LAUNCH_CHECK(err);
cleanup:
    return st;
}

template <typename X>
tg_status tg_cuda_rmsnorm_backward(X *dx, float *dw, float *partial, const X *dout, const X *x, const float *rstd,
                                   const X *w, int N, int C, cudaStream_t s, tg_error *err) {
    tg_status st = TG_OK;
    const unsigned int blocks = (unsigned int)((N + TG_RMS_WARPS - 1) / TG_RMS_WARPS);
    int chunks = 0, rows = 0;
    float *const outs[3] = {dw, NULL, NULL};
    llama_rms_dw_chunks(N, &chunks, &rows);
    if (N <= 0) goto cleanup;
    rmsnorm_backward_dx_kernel<X><<<blocks, 32 * TG_RMS_WARPS, 0, s>>>(dx, dout, x, rstd, w, N, C);
    TG_CUDA_LAUNCH_CHECK(err);
    /* the last chunks may hold no rows and write zeros */
    rmsnorm_backward_dw_kernel<X><<<chunks, TG_CUDA_THREADS, 0, s>>>(partial, dout, x, rstd, N, C, rows);
    TG_CUDA_LAUNCH_CHECK(err);
    TG_TRY(tg_cuda_column_sum_finish(outs, partial, chunks, C, 1, s, err));
cleanup:
    return st;
}

/* ---- RoPE + grouped-query re-layout ---- */

template <typename X>
__global__ void llama_qkv_forward_kernel(X *qkv, const X *raw, const float *cos_t, const float *sin_t, int T, int NH,
                                         int NKV, int HS, size_t n) {
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < n; idx += (size_t)gridDim.x * blockDim.x)
        llama_qkv_forward_at<X>(qkv, raw, cos_t, sin_t, T, NH, NKV, HS, idx);
}

template <typename X>
__global__ void llama_qkv_backward_kernel(X *draw, const X *dqkv, const float *cos_t, const float *sin_t, int T, int NH,
                                          int NKV, int HS, size_t n) {
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < n; idx += (size_t)gridDim.x * blockDim.x)
        llama_qkv_backward_at<X>(draw, dqkv, cos_t, sin_t, T, NH, NKV, HS, idx);
}

template <typename X>
tg_status tg_cuda_llama_qkv_forward(X *qkv, const X *raw, const float *cos_t, const float *sin_t, int B, int T,
                                    int NH, int NKV, int HS, cudaStream_t s, tg_error *err) {
    tg_status st = TG_OK;
    const size_t n = (size_t)B * T * 3 * NH * (HS / 2);
    if (n == 0) goto cleanup;
    llama_qkv_forward_kernel<X><<<tg_cuda_blocks(n), TG_CUDA_THREADS, 0, s>>>(qkv, raw, cos_t, sin_t, T, NH, NKV, HS, n);
    TG_CUDA_LAUNCH_CHECK(err);
cleanup:
    return st;
}

template <typename X>
tg_status tg_cuda_llama_qkv_backward(X *draw, const X *dqkv, const float *cos_t, const float *sin_t, int B, int T,
                                     int NH, int NKV, int HS, cudaStream_t s, tg_error *err) {
    tg_status st = TG_OK;
    const size_t n = (size_t)B * T * (NH + 2 * NKV) * (HS / 2);
    if (n == 0) goto cleanup;
    llama_qkv_backward_kernel<X><<<tg_cuda_blocks(n), TG_CUDA_THREADS, 0, s>>>(draw, dqkv, cos_t, sin_t, T, NH, NKV,
                                                                               HS, n);
    TG_CUDA_LAUNCH_CHECK(err);
cleanup:
    return st;
}

template <typename X>
__global__ void llama_rope_kernel(X *out, const X *in, const float *cos_t, const float *sin_t, int T, int NH, int NKV,
                                  int HS, int inverse, size_t n) {
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < n; idx += (size_t)gridDim.x * blockDim.x)
        llama_rope_raw_at<X>(out, in, cos_t, sin_t, T, NH, NKV, HS, inverse, idx);
}

template <typename X>
tg_status tg_cuda_llama_rope(X *out, const X *in, const float *cos_t, const float *sin_t, int B, int T, int NH,
                             int NKV, int HS, int inverse, cudaStream_t s, tg_error *err) {
    tg_status st = TG_OK;
    const size_t n = (size_t)B * T * (NH + 2 * NKV) * (HS / 2);
    if (n == 0) goto cleanup;
    llama_rope_kernel<X><<<tg_cuda_blocks(n), TG_CUDA_THREADS, 0, s>>>(out, in, cos_t, sin_t, T, NH, NKV, HS, inverse,
                                                                       n);
    TG_CUDA_LAUNCH_CHECK(err);
cleanup:
    return st;
}

template <typename X>
__global__ void llama_rope_at_kernel(X *out, const X *in, const float *cos_t, const float *sin_t, const int32_t *pos,
                                     int NH, int NKV, int HS, size_t n) {
    const int t0 = pos[0];
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < n; idx += (size_t)gridDim.x * blockDim.x)
        llama_rope_pos_at<X>(out, in, cos_t, sin_t, t0, NH, NKV, HS, idx);
}

template <typename X>
tg_status tg_cuda_llama_rope_at(X *out, const X *in, const float *cos_t, const float *sin_t, const int32_t *pos, int n,
                                int NH, int NKV, int HS, cudaStream_t s, tg_error *err) {
    tg_status st = TG_OK;
    const size_t pairs = (size_t)n * (NH + 2 * NKV) * (HS / 2);
    if (pairs == 0) goto cleanup;
    llama_rope_at_kernel<X><<<tg_cuda_blocks(pairs), TG_CUDA_THREADS, 0, s>>>(out, in, cos_t, sin_t, pos, NH, NKV, HS,
                                                                              pairs);
    TG_CUDA_LAUNCH_CHECK(err);
cleanup:
    return st;
}

/* ---- SwiGLU ---- */

template <typename X> __global__ void swiglu_forward_kernel(X *h, const X *gu, int F, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        llama_swiglu_forward_at<X>(h, gu, F, i);
}

template <typename X> __global__ void swiglu_backward_kernel(X *dgu, const X *dh, const X *gu, int F, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        llama_swiglu_backward_at<X>(dgu, dh, gu, F, i);
}

template <typename X>
tg_status tg_cuda_swiglu_forward(X *h, const X *gu, int N, int F, cudaStream_t s, tg_error *err) {
    tg_status st = TG_OK;
    const size_t n = (size_t)N * F;
    if (n == 0) goto cleanup;
    swiglu_forward_kernel<X><<<tg_cuda_blocks(n), TG_CUDA_THREADS, 0, s>>>(h, gu, F, n);
    TG_CUDA_LAUNCH_CHECK(err);
cleanup:
    return st;
}

template <typename X>
tg_status tg_cuda_swiglu_backward(X *dgu, const X *dh, const X *gu, int N, int F, cudaStream_t s, tg_error *err) {
    tg_status st = TG_OK;
    const size_t n = (size_t)N * F;
    if (n == 0) goto cleanup;
    swiglu_backward_kernel<X><<<tg_cuda_blocks(n), TG_CUDA_THREADS, 0, s>>>(dgu, dh, gu, F, n);
    TG_CUDA_LAUNCH_CHECK(err);
cleanup:
    return st;
}

#define TG_INSTANTIATE(X)                                                                                          \
    template tg_status tg_cuda_residual_rmsnorm_forward<X>(X *, X *, float *, const X *, const X *, const X *, int, \
                                                           int, float, cudaStream_t, tg_error *);                  \
    template tg_status tg_cuda_rmsnorm_backward<X>(X *, float *, float *, const X *, const X *, const float *,      \
                                                   const X *, int, int, cudaStream_t, tg_error *);                 \
    template tg_status tg_cuda_llama_qkv_forward<X>(X *, const X *, const float *, const float *, int, int, int,    \
                                                    int, int, cudaStream_t, tg_error *);                           \
    template tg_status tg_cuda_llama_qkv_backward<X>(X *, const X *, const float *, const float *, int, int, int,   \
                                                     int, int, cudaStream_t, tg_error *);                          \
    template tg_status tg_cuda_llama_rope<X>(X *, const X *, const float *, const float *, int, int, int, int, int, \
                                             int, cudaStream_t, tg_error *);                                        \
    template tg_status tg_cuda_llama_rope_at<X>(X *, const X *, const float *, const float *, const int32_t *, int, \
                                                int, int, int, cudaStream_t, tg_error *);                          \
    template tg_status tg_cuda_swiglu_forward<X>(X *, const X *, int, int, cudaStream_t, tg_error *);              \
    template tg_status tg_cuda_swiglu_backward<X>(X *, const X *, const X *, int, int, cudaStream_t, tg_error *);
TG_INSTANTIATE(float)
TG_INSTANTIATE(tg_bf16)
