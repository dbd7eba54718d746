/* model/cuda/layernorm.cu — LayerNorm fused with the residual add, its recompute, and its
 * backward (which adds into the residual-stream gradient). One warp per row; the weight and
 * bias gradients are column reductions without atomics (deterministic). */
#include "model/cuda/ops.cuh"

#define TG_LN_EPS 1e-5f
#define TG_WARPS_PER_BLOCK (TG_CUDA_THREADS / 32)

/* res = a + b (b may be NULL: x = a), out = (x - mean) * rstd * w + bias. Warp per row. */
template <typename X>
__global__ void residual_layernorm_kernel(X *res, X *out, float *mean, float *rstd, const X *a,
                                          const X *b, const X *w, const X *bias, int N, int C) {
    const int row = blockIdx.x * TG_WARPS_PER_BLOCK + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const size_t off = (size_t)row * C;
    /* The LayerNorm input is the rounded residual (what backward reads back). */
    const X *x = b ? res + off : a + off;
    float sum = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float v;
        if (b) {
            const X r = tg_from_f32<X>(tg_to_f32(a[off + c]) + tg_to_f32(b[off + c]));
            res[off + c] = r;
            v = tg_to_f32(r);
        } else {
            v = tg_to_f32(a[off + c]);
        }
        sum += v;
    }
    const float mu = tg_warp_sum(sum) / C;
    float var = 0.0f;
    for (int c = lane; c < C; c += 32) { /* each lane reads back only what it wrote */
        const float d = tg_to_f32(x[c]) - mu;
        var += d * d;
    }
    const float rs = 1.0f / sqrtf(tg_warp_sum(var) / C + TG_LN_EPS);
    for (int c = lane; c < C; c += 32) {
        const float n = (tg_to_f32(x[c]) - mu) * rs;
        out[off + c] = tg_from_f32<X>(n * tg_to_f32(w[c]) + tg_to_f32(bias[c]));
    }
    if (lane == 0) {
        mean[row] = mu;
        rstd[row] = rs;
    }
}

template <typename X>
__global__ void layernorm_apply_kernel(X *out, const X *x, const float *mean, const float *rstd,
                                       const X *w, const X *bias, size_t n, int C) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const size_t row = i / C;
        const int c = (int)(i % C);
        const float nv = (tg_to_f32(x[i]) - mean[row]) * rstd[row];
        out[i] = tg_from_f32<X>(nv * tg_to_f32(w[c]) + tg_to_f32(bias[c]));
    }
}

/* dx += rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm)), dnorm = dout * w. Warp/row. */
template <typename X>
__global__ void layernorm_backward_dx_kernel(X *dx, const X *dout, const X *x, const float *mean,
                                             const float *rstd, const X *w, int N, int C) {
    const int row = blockIdx.x * TG_WARPS_PER_BLOCK + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const size_t off = (size_t)row * C;
    const float mu = mean[row], rs = rstd[row];
    float s1 = 0.0f, s2 = 0.0f;
    for (int c = lane; c < C; c += 32) {
        const float n = (tg_to_f32(x[off + c]) - mu) * rs;
        const float dn = tg_to_f32(dout[off + c]) * tg_to_f32(w[c]);
        s1 += dn;
        s2 += dn * n;
    }
    const float m1 = tg_warp_sum(s1) / C, m2 = tg_warp_sum(s2) / C;
    for (int c = lane; c < C; c += 32) {
        const float n = (tg_to_f32(x[off + c]) - mu) * rs;
        const float dn = tg_to_f32(dout[off + c]) * tg_to_f32(w[c]);
        dx[off + c] = tg_from_f32<X>(tg_to_f32(dx[off + c]) + (dn - m1 - n * m2) * rs);
    }
}

/* grid (ceil(C/256), chunks): partial[chunk][0][c] = sum dout*norm, [1][c] = sum dout. */
template <typename X>
__global__ void layernorm_backward_dw_kernel(float *partial, const X *dout, const X *x,
                                             const float *mean, const float *rstd, int N, int C) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const int per = (N + gridDim.y - 1) / gridDim.y;
    const int r0 = blockIdx.y * per, r1 = min(N, r0 + per);
    float sw = 0.0f, sb = 0.0f;
    for (int r = r0; r < r1; r++) {
        const size_t i = (size_t)r * C + c;
        const float d = tg_to_f32(dout[i]);
        sw += d * (tg_to_f32(x[i]) - mean[r]) * rstd[r];
        sb += d;
    }
    partial[((size_t)blockIdx.y * 2 + 0) * C + c] = sw;
    partial[((size_t)blockIdx.y * 2 + 1) * C + c] = sb;
}

__global__ void layernorm_backward_dw_finish_kernel(float *dw, float *db, const float *partial,
                                                    int chunks, int C) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float sw = 0.0f, sb = 0.0f;
    for (int k = 0; k < chunks; k++) {
        sw += partial[((size_t)k * 2 + 0) * C + c];
        sb += partial[((size_t)k * 2 + 1) * C + c];
    }
    dw[c] += sw;
    db[c] += sb;
}

template <typename X>
tg_status tg_cuda_residual_layernorm_forward(X *res, X *out, float *mean, float *rstd,
                                             const X *a, const X *b, const X *w, const X *bias,
                                             int N, int C, cudaStream_t s, tg_error *err) {
    tg_status st = TG_OK;
    const unsigned int blocks = (unsigned int)((N + TG_WARPS_PER_BLOCK - 1) / TG_WARPS_PER_BLOCK);
    residual_layernorm_kernel<X><<<blocks, TG_CUDA_THREADS, 0, s>>>(res, out, mean, rstd, a, b, w, bias, N, C);
    TG_CUDA_LAUNCH_CHECK(err);
cleanup:
    return st;
}

template <typename X>
tg_status tg_cuda_layernorm_apply(X *out, const X *x, const float *mean, const float *rstd,
                                  const X *w, const X *bias, int N, int C, cudaStream_t s,
                                  tg_error *err) {
    tg_status st = TG_OK;
    const size_t n = (size_t)N * C;
    layernorm_apply_kernel<X><<<tg_cuda_blocks(n), TG_CUDA_THREADS, 0, s>>>(out, x, mean, rstd, w, bias, n, C);
    TG_CUDA_LAUNCH_CHECK(err);
cleanup:
    return st;
}

template <typename X>
tg_status tg_cuda_layernorm_backward(X *dx, float *dw, float *db, float *partial, const X *dout,
                                     const X *x, const float *mean, const float *rstd,
                                     const X *w, int N, int C, cudaStream_t s, tg_error *err) {
    tg_status st = TG_OK;
    const unsigned int blocks = (unsigned int)((N + TG_WARPS_PER_BLOCK - 1) / TG_WARPS_PER_BLOCK);
    const int chunks = N < TG_CUDA_COL_CHUNKS ? N : TG_CUDA_COL_CHUNKS;
    const dim3 grid((C + TG_CUDA_THREADS - 1) / TG_CUDA_THREADS, chunks);
    layernorm_backward_dx_kernel<X><<<blocks, TG_CUDA_THREADS, 0, s>>>(dx, dout, x, mean, rstd, w, N, C);
    TG_CUDA_LAUNCH_CHECK(err);
    layernorm_backward_dw_kernel<X><<<grid, TG_CUDA_THREADS, 0, s>>>(partial, dout, x, mean, rstd, N, C);
    TG_CUDA_LAUNCH_CHECK(err);
    layernorm_backward_dw_finish_kernel<<<grid.x, TG_CUDA_THREADS, 0, s>>>(dw, db, partial, chunks, C);
    TG_CUDA_LAUNCH_CHECK(err);
cleanup:
    return st;
}

#define TG_INSTANTIATE(X)                                                                      \
    template tg_status tg_cuda_residual_layernorm_forward<X>(                                  \
        X *, X *, float *, float *, const X *, const X *, const X *, const X *, int, int,      \
        cudaStream_t, tg_error *);                                                             \
    template tg_status tg_cuda_layernorm_apply<X>(X *, const X *, const float *, const float *, \
                                                  const X *, const X *, int, int, cudaStream_t, \
                                                  tg_error *);                                  \
    template tg_status tg_cuda_layernorm_backward<X>(X *, float *, float *, float *, const X *, \
                                                     const X *, const float *, const float *,   \
                                                     const X *, int, int, cudaStream_t,         \
                                                     tg_error *);
TG_INSTANTIATE(float)
TG_INSTANTIATE(tg_bf16)
