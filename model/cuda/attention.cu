/* model/cuda/attention.cu — causal multi-head self-attention as llm.c's non-cuDNN path:
 * permute qkv to (B, NH, T, HS), preatt = q k^T / sqrt(HS) and y = att v as cuBLASLt
 * strided-batched matmuls over B*NH, a causal softmax kernel in between, and the reverse for
 * backward. The full T x T products are computed (the upper half is masked by the softmax).
 * Memory: att is (B, NH, T, T) per layer unless opt.recompute (then it is recomputed). */
#include "model/cuda/ops.cuh"

#include <math.h>

/* Where element i of a (B, NH, T, HS) tensor sits in a (B, T, ...) one of row stride rs whose
 * columns h * HS + d hold the heads. */
static __device__ __forceinline__ size_t bt_offset(size_t i, int T, int NH, int HS, size_t rs) {
    const int d = (int)(i % HS);
    const int t = (int)((i / HS) % T);
    const int h = (int)((i / ((size_t)HS * T)) % NH);
    const size_t b = i / ((size_t)HS * T * NH);
    return (b * T + t) * rs + (size_t)h * HS + d;
}

/* qkv (B, T, 3, NH, HS) -> q, k, v each (B, NH, T, HS). */
template <typename X>
__global__ void permute_qkv_kernel(X *q, X *k, X *v, const X *qkv, int B, int T, int NH, int HS) {
    const size_t n = (size_t)B * NH * T * HS, C = (size_t)NH * HS;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const size_t src = bt_offset(i, T, NH, HS, 3 * C);
        q[i] = qkv[src];
        k[i] = qkv[src + C];
        v[i] = qkv[src + 2 * C];
    }
}

/* The reverse of permute_qkv_kernel. */
template <typename X>
__global__ void unpermute_qkv_kernel(X *dqkv, const X *dq, const X *dk, const X *dv, int B, int T,
                                     int NH, int HS) {
    const size_t n = (size_t)B * NH * T * HS, C = (size_t)NH * HS;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const size_t dst = bt_offset(i, T, NH, HS, 3 * C);
        dqkv[dst] = dq[i];
        dqkv[dst + C] = dk[i];
        dqkv[dst + 2 * C] = dv[i];
    }
}

/* to_heads = 1: (B, T, NH, HS) -> (B, NH, T, HS); 0: the reverse. */
template <typename X>
__global__ void permute_heads_kernel(X *out, const X *inp, int B, int T, int NH, int HS, int to_heads) {
    const size_t n = (size_t)B * NH * T * HS;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const size_t bth = bt_offset(i, T, NH, HS, (size_t)NH * HS);
        if (to_heads) out[i] = inp[bth];
        else out[bth] = inp[i];
    }
}

/* In place over rows of (B*NH*T, T): row r is query t = r % T; softmax over keys j <= t,
 * zero for j > t. One warp per row; a lane only ever touches its own columns. */
template <typename X> __global__ void causal_softmax_kernel(X *att, size_t rows, int T) {
    const size_t row = blockIdx.x * (size_t)(blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= rows) return;
    const int t = (int)(row % T);
    X *p = att + row * T;
    float mx = -INFINITY;
    for (int j = lane; j <= t; j += 32) mx = fmaxf(mx, tg_to_f32(p[j]));
    mx = tg_warp_max(mx);
    float sum = 0.0f;
    for (int j = lane; j <= t; j += 32) sum += expf(tg_to_f32(p[j]) - mx);
    const float inv = 1.0f / tg_warp_sum(sum);
    for (int j = lane; j < T; j += 32)
        p[j] = tg_from_f32<X>(j <= t ? expf(tg_to_f32(p[j]) - mx) * inv : 0.0f);
}

/* In place: datt <- att * (datt - sum_j att_j datt_j) on j <= t, 0 above the diagonal. */
template <typename X>
__global__ void causal_softmax_backward_kernel(X *datt, const X *att, size_t rows, int T) {
    const size_t row = blockIdx.x * (size_t)(blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= rows) return;
    const int t = (int)(row % T);
    X *d = datt + row * T;
    const X *p = att + row * T;
    float dot = 0.0f;
    for (int j = lane; j <= t; j += 32) dot += tg_to_f32(p[j]) * tg_to_f32(d[j]);
    dot = tg_warp_sum(dot);
    for (int j = lane; j < T; j += 32)
        d[j] = tg_from_f32<X>(j <= t ? tg_to_f32(p[j]) * (tg_to_f32(d[j]) - dot) : 0.0f);
}

static unsigned int rows_blocks(size_t rows) {
    const size_t per = TG_CUDA_THREADS / 32;
    return (unsigned int)((rows + per - 1) / per);
}

template <typename X>
tg_status tg_cuda_attention_probs(const tg_cuda_blas *bl, X *att, const X *qkvr, int B, int T,
                                  int C, int NH, cudaStream_t s, tg_error *err) {
    tg_status st = TG_OK;
    const int HS = C / NH;
    const size_t BTC = (size_t)B * T * C, rows = (size_t)B * NH * T;
    const long long sq = (long long)T * HS, sa = (long long)T * T;
    const X *q = qkvr, *k = qkvr + BTC;
    /* preatt (T, T) = q (T, HS) @ k^T / sqrt(HS), per (b, h) */
    TG_TRY(tg_cuda_matmul_batched<X>(bl, att, q, k, T, T, HS, 0, 1, 1.0f / sqrtf((float)HS), B * NH, sq, sq, sa, s,
                                     err));
    causal_softmax_kernel<X><<<rows_blocks(rows), TG_CUDA_THREADS, 0, s>>>(att, rows, T);
    TG_CUDA_LAUNCH_CHECK(err);
cleanup:
    return st;
}

template <typename X>
tg_status tg_cuda_attention_forward(const tg_cuda_blas *bl, X *out, X *qkvr, X *att, X *y,
                                    const X *qkv, int B, int T, int C, int NH, cudaStream_t s,
                                    tg_error *err) {
    tg_status st = TG_OK;
    const int HS = C / NH;
    const size_t BTC = (size_t)B * T * C;
    const long long sq = (long long)T * HS, sa = (long long)T * T;
    permute_qkv_kernel<X><<<tg_cuda_blocks(BTC), TG_CUDA_THREADS, 0, s>>>(qkvr, qkvr + BTC, qkvr + 2 * BTC, qkv, B, T, NH, HS);
    TG_CUDA_LAUNCH_CHECK(err);
    TG_TRY(tg_cuda_attention_probs<X>(bl, att, qkvr, B, T, C, NH, s, err));
    /* y (T, HS) = att (T, T) @ v (T, HS) */
    TG_TRY(tg_cuda_matmul_batched<X>(bl, y, att, qkvr + 2 * BTC, T, HS, T, 0, 0, 1.0f, B * NH, sa, sq, sq, s, err));
    permute_heads_kernel<X><<<tg_cuda_blocks(BTC), TG_CUDA_THREADS, 0, s>>>(out, y, B, T, NH, HS, 0);
    TG_CUDA_LAUNCH_CHECK(err);
cleanup:
    return st;
}

template <typename X>
tg_status tg_cuda_attention_backward(const tg_cuda_blas *bl, X *dqkv, X *dqkvr, X *datt, X *dy,
                                     const X *dout, const X *qkvr, const X *att, int B, int T,
                                     int C, int NH, cudaStream_t s, tg_error *err) {
    tg_status st = TG_OK;
    const int HS = C / NH;
    const size_t BTC = (size_t)B * T * C, rows = (size_t)B * NH * T;
    const long long sq = (long long)T * HS, sa = (long long)T * T;
    const float scale = 1.0f / sqrtf((float)HS);
    const X *q = qkvr, *k = qkvr + BTC, *v = qkvr + 2 * BTC;
    X *dq = dqkvr, *dk = dqkvr + BTC, *dv = dqkvr + 2 * BTC;
    permute_heads_kernel<X><<<tg_cuda_blocks(BTC), TG_CUDA_THREADS, 0, s>>>(dy, dout, B, T, NH, HS, 1);
    TG_CUDA_LAUNCH_CHECK(err);
    /* datt (T, T) = dy (T, HS) @ v^T */
    TG_TRY(tg_cuda_matmul_batched<X>(bl, datt, dy, v, T, T, HS, 0, 1, 1.0f, B * NH, sq, sq, sa, s, err));
    /* dv (T, HS) = att^T (T, T) @ dy (T, HS) */
    TG_TRY(tg_cuda_matmul_batched<X>(bl, dv, att, dy, T, HS, T, 1, 0, 1.0f, B * NH, sa, sq, sq, s, err));
    causal_softmax_backward_kernel<X><<<rows_blocks(rows), TG_CUDA_THREADS, 0, s>>>(datt, att, rows, T);
    TG_CUDA_LAUNCH_CHECK(err);
    /* dq = dpreatt @ k / sqrt(HS);  dk = dpreatt^T @ q / sqrt(HS) */
    TG_TRY(tg_cuda_matmul_batched<X>(bl, dq, datt, k, T, HS, T, 0, 0, scale, B * NH, sa, sq, sq, s, err));
    TG_TRY(tg_cuda_matmul_batched<X>(bl, dk, datt, q, T, HS, T, 1, 0, scale, B * NH, sa, sq, sq, s, err));
    unpermute_qkv_kernel<X><<<tg_cuda_blocks(BTC), TG_CUDA_THREADS, 0, s>>>(dqkv, dq, dk, dv, B, T, NH, HS);
    TG_CUDA_LAUNCH_CHECK(err);
cleanup:
    return st;
}

#define TG_INSTANTIATE(X)                                                                      \
    template tg_status tg_cuda_attention_probs<X>(const tg_cuda_blas *, X *, const X *, int, int, \
                                                  int, int, cudaStream_t, tg_error *);          \
    template tg_status tg_cuda_attention_forward<X>(const tg_cuda_blas *, X *, X *, X *, X *,   \
                                                    const X *, int, int, int, int, cudaStream_t, \
                                                    tg_error *);                                \
    template tg_status tg_cuda_attention_backward<X>(const tg_cuda_blas *, X *, X *, X *, X *,  \
                                                     const X *, const X *, const X *, int, int, \
                                                     int, int, cudaStream_t, tg_error *);
TG_INSTANTIATE(float)
TG_INSTANTIATE(tg_bf16)
