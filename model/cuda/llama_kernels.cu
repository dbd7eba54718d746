/* model/cuda/llama_kernels.cu — RMSNorm, the RoPE + grouped-query re-layout, SwiGLU
 * (llama_ops.cuh). Plain scalar kernels: these are elementwise or one pass over a row, small next
 * to the matmuls; each is written to match model/cpu/llama_kernels.c operation for operation. */
#include "model/cuda/llama_ops.cuh"

#define TG_RMS_WARPS 8 /* rows (warps) per block of the row kernels */

/* ---- RMSNorm ---- */

template <typename X>
__global__ void __launch_bounds__(32 * TG_RMS_WARPS)
residual_rmsnorm_kernel(X *__restrict__ res, X *__restrict__ out, float *__restrict__ rstd,
                        const X *__restrict__ a, const X *__restrict__ b, const X *__restrict__ w, int N, int C,
                        float eps) {
    const int row = blockIdx.x * TG_RMS_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const size_t off = (size_t)row * C;
    float ss = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float x = tg_to_f32(a[off + c]);
        if (b) {
            const X r = tg_from_f32<X>(x + tg_to_f32(b[off + c]));
            res[off + c] = r;
            x = tg_to_f32(r);
        }
        ss += x * x;
    }
    ss = tg_warp_sum(ss);
    const float r = 1.0f / sqrtf(ss / (float)C + eps);
    /* second pass reads the rounded residual back (this lane wrote it: no barrier needed) */
    const X *x = b ? res : a;
    for (int c = lane; c < C; c += 32) out[off + c] = tg_from_f32<X>(tg_to_f32(w[c]) * (tg_to_f32(x[off + c]) * r));
    if (lane == 0) rstd[row] = r;
}

template <typename X>
__global__ void __launch_bounds__(32 * TG_RMS_WARPS)
rmsnorm_backward_dx_kernel(X *__restrict__ dx, const X *__restrict__ dout, const X *__restrict__ x,
                           const float *__restrict__ rstd, const X *__restrict__ w, int N, int C) {
    const int row = blockIdx.x * TG_RMS_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const size_t off = (size_t)row * C;
    const float r = rstd[row];
    float dot = 0.0f;
    for (int c = lane; c < C; c += 32) dot += tg_to_f32(w[c]) * tg_to_f32(dout[off + c]) * tg_to_f32(x[off + c]);
    dot = tg_warp_sum(dot);
    const float k = dot * r * r * r / (float)C;
    for (int c = lane; c < C; c += 32) {
        const float wc = tg_to_f32(w[c]), dy = tg_to_f32(dout[off + c]), xc = tg_to_f32(x[off + c]);
        dx[off + c] = tg_from_f32<X>(tg_to_f32(dx[off + c]) + (r * wc * dy - k * xc));
    }
}

/* Block k sums rows [k*rows, (k+1)*rows) of dy*x*rstd per column, in row order, into partial[k]. */
template <typename X>
__global__ void rmsnorm_backward_dw_kernel(float *__restrict__ partial, const X *__restrict__ dout,
                                           const X *__restrict__ x, const float *__restrict__ rstd, int N, int C,
                                           int rows) {
    const int r0 = blockIdx.x * rows, r1 = r0 + rows < N ? r0 + rows : N;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float s = 0.0f;
        for (int n = r0; n < r1; n++) s += tg_to_f32(dout[(size_t)n * C + c]) * tg_to_f32(x[(size_t)n * C + c]) * rstd[n];
        partial[(size_t)blockIdx.x * C + c] = s;
    }
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
    const int chunks = N < TG_CUDA_COL_CHUNKS ? N : TG_CUDA_COL_CHUNKS;
    const int rows = chunks > 0 ? (N + chunks - 1) / chunks : 0;
    float *const outs[3] = {dw, NULL, NULL};
    if (N <= 0) goto cleanup;
    rmsnorm_backward_dx_kernel<X><<<blocks, 32 * TG_RMS_WARPS, 0, s>>>(dx, dout, x, rstd, w, N, C);
    TG_CUDA_LAUNCH_CHECK(err);
    /* ceil(N / rows) <= chunks blocks; the last ones may be empty and write zeros */
    rmsnorm_backward_dw_kernel<X><<<chunks, TG_CUDA_THREADS, 0, s>>>(partial, dout, x, rstd, N, C, rows);
    TG_CUDA_LAUNCH_CHECK(err);
    TG_TRY(tg_cuda_column_sum_finish(outs, partial, chunks, C, 1, s, err));
cleanup:
    return st;
}

/* ---- RoPE + grouped-query re-layout ---- */

/* One thread per rotated pair (n, part, h, i), i < HS/2; parts 0 q, 1 k, 2 v (v only copied). */
template <typename X>
__global__ void llama_qkv_forward_kernel(X *__restrict__ qkv, const X *__restrict__ raw,
                                         const float *__restrict__ cos_t, const float *__restrict__ sin_t, int T,
                                         int NH, int NKV, int HS, size_t n) {
    const int half = HS / 2, C = NH * HS, KV = NKV * HS, group = NH / NKV;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < n; idx += (size_t)gridDim.x * blockDim.x) {
        const int i = (int)(idx % half), h = (int)(idx / half % NH), part = (int)(idx / half / NH % 3);
        const size_t row = idx / half / NH / 3;
        const int t = (int)(row % T);
        const X *src = raw + row * (size_t)(C + 2 * KV) +
                       (part == 0 ? (size_t)h * HS : (size_t)C + (part == 2 ? KV : 0) + (size_t)(h / group) * HS);
        X *dst = qkv + row * 3 * (size_t)C + (size_t)part * C + (size_t)h * HS;
        const float a = tg_to_f32(src[i]), b = tg_to_f32(src[i + half]);
        if (part == 2) {
            dst[i] = src[i];
            dst[i + half] = src[i + half];
        } else {
            const float c = cos_t[(size_t)t * half + i], s = sin_t[(size_t)t * half + i];
            dst[i] = tg_from_f32<X>(a * c - b * s);
            dst[i + half] = tg_from_f32<X>(b * c + a * s);
        }
    }
}

/* One thread per pair (n, head slot, i) of draw: slots [0, NH) q, [NH, NH+NKV) k, then v. */
template <typename X>
__global__ void llama_qkv_backward_kernel(X *__restrict__ draw, const X *__restrict__ dqkv,
                                          const float *__restrict__ cos_t, const float *__restrict__ sin_t, int T,
                                          int NH, int NKV, int HS, size_t n) {
    const int half = HS / 2, C = NH * HS, group = NH / NKV, slots = NH + 2 * NKV;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < n; idx += (size_t)gridDim.x * blockDim.x) {
        const int i = (int)(idx % half), slot = (int)(idx / half % slots);
        const size_t row = idx / half / slots;
        const int t = (int)(row % T);
        const X *d = dqkv + row * 3 * (size_t)C;
        X *dst = draw + row * (size_t)slots * HS + (size_t)slot * HS;
        float a = 0.0f, b = 0.0f;
        int rotate = 1;
        if (slot < NH) {
            a = tg_to_f32(d[(size_t)slot * HS + i]);
            b = tg_to_f32(d[(size_t)slot * HS + i + half]);
        } else {
            const int kv = slot < NH + NKV ? slot - NH : slot - NH - NKV;
            const X *base = d + (slot < NH + NKV ? C : 2 * C);
            rotate = slot < NH + NKV;
            for (int g = 0; g < group; g++) { /* the group's heads in order, as tg_llama_kv_reduce */
                a += tg_to_f32(base[(size_t)(kv * group + g) * HS + i]);
                b += tg_to_f32(base[(size_t)(kv * group + g) * HS + i + half]);
            }
        }
        if (rotate) { /* the inverse rotation: sin -> -sin */
            const float c = cos_t[(size_t)t * half + i], s = -sin_t[(size_t)t * half + i];
            const float a2 = a * c - b * s, b2 = b * c + a * s;
            a = a2;
            b = b2;
        }
        dst[i] = tg_from_f32<X>(a);
        dst[i + half] = tg_from_f32<X>(b);
    }
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

/* ---- SwiGLU ---- */

template <typename X>
__global__ void swiglu_forward_kernel(X *__restrict__ h, const X *__restrict__ gu, int F, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const size_t row = i / F, f = i % F;
        const float g = tg_to_f32(gu[row * 2 * F + f]), u = tg_to_f32(gu[row * 2 * F + F + f]);
        h[i] = tg_from_f32<X>(g / (1.0f + expf(-g)) * u);
    }
}

template <typename X>
__global__ void swiglu_backward_kernel(X *__restrict__ dgu, const X *__restrict__ dh, const X *__restrict__ gu, int F,
                                       size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const size_t row = i / F, f = i % F;
        const float g = tg_to_f32(gu[row * 2 * F + f]), u = tg_to_f32(gu[row * 2 * F + F + f]);
        const float sg = 1.0f / (1.0f + expf(-g)), d = tg_to_f32(dh[i]);
        dgu[row * 2 * F + F + f] = tg_from_f32<X>(d * g * sg);
        dgu[row * 2 * F + f] = tg_from_f32<X>(d * u * sg * (1.0f + g * (1.0f - sg)));
    }
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
    template tg_status tg_cuda_swiglu_forward<X>(X *, const X *, int, int, cudaStream_t, tg_error *);              \
    template tg_status tg_cuda_swiglu_backward<X>(X *, const X *, const X *, int, int, cudaStream_t, tg_error *);
TG_INSTANTIATE(float)
TG_INSTANTIATE(tg_bf16)
