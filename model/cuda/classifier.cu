/* model/cuda/classifier.cu — softmax cross-entropy over the real vocabulary V of the Vp padded
 * logit columns (padded columns never enter the softmax), targets -1 ignored.
 *
 * Forward keeps only the per-row log-sum-exp (fp32) next to the logits; backward then turns the
 * logits buffer into dlogits in place, so fp32-or-bf16 logits exist exactly once. (llm.c fuses
 * both into the forward; splitting them keeps tg_model_logits_get valid after a forward with
 * targets, at the cost of one extra read of the logits.) One block per row. */
#include "model/cuda/ops.cuh"

#include <math.h>

/* Block-wide reduction (blockDim.x == TG_CUDA_THREADS); every thread gets the result. */
__device__ float block_reduce(float v, int is_max) {
    __shared__ float shared[TG_CUDA_THREADS / 32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
    v = is_max ? tg_warp_max(v) : tg_warp_sum(v);
    __syncthreads(); /* shared may still be read by a previous call */
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = lane < nw ? shared[lane] : (is_max ? -INFINITY : 0.0f);
    return is_max ? tg_warp_max(v) : tg_warp_sum(v);
}

template <typename X>
__global__ void crossentropy_forward_kernel(float *losses, float *lse, const X *logits,
                                            const int32_t *targets, int V, int Vp) {
    const size_t row = blockIdx.x;
    const X *x = logits + row * Vp;
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < V; j += blockDim.x) mx = fmaxf(mx, tg_to_f32(x[j]));
    mx = block_reduce(mx, 1);
    float sum = 0.0f;
    for (int j = threadIdx.x; j < V; j += blockDim.x) sum += expf(tg_to_f32(x[j]) - mx);
    sum = block_reduce(sum, 0);
    if (threadIdx.x == 0) {
        const float l = mx + logf(sum);
        const int tgt = targets[row];
        lse[row] = l;
        losses[row] = tgt >= 0 ? l - tg_to_f32(x[tgt]) : 0.0f;
    }
}

template <typename X>
__global__ void crossentropy_backward_kernel(X *logits, const float *lse, const int32_t *targets,
                                             float dscale, int V, int Vp) {
    const size_t row = blockIdx.x;
    X *x = logits + row * Vp;
    const int tgt = targets[row];
    const float l = lse[row];
    for (int j = threadIdx.x; j < Vp; j += blockDim.x) {
        float g = 0.0f;
        if (tgt >= 0 && j < V) g = (expf(tg_to_f32(x[j]) - l) - (j == tgt ? 1.0f : 0.0f)) * dscale;
        x[j] = tg_from_f32<X>(g);
    }
}

template <typename X>
tg_status tg_cuda_crossentropy_forward(float *losses, float *lse, const X *logits,
                                       const int32_t *targets, int N, int V, int Vp,
                                       cudaStream_t s, tg_error *err) {
    tg_status st = TG_OK;
    crossentropy_forward_kernel<X><<<N, TG_CUDA_THREADS, 0, s>>>(losses, lse, logits, targets, V, Vp);
    TG_CUDA_LAUNCH_CHECK(err);
cleanup:
    return st;
}

template <typename X>
tg_status tg_cuda_crossentropy_backward(X *logits, const float *lse, const int32_t *targets,
                                        float dscale, int N, int V, int Vp, cudaStream_t s,
                                        tg_error *err) {
    tg_status st = TG_OK;
    crossentropy_backward_kernel<X><<<N, TG_CUDA_THREADS, 0, s>>>(logits, lse, targets, dscale, V, Vp);
    TG_CUDA_LAUNCH_CHECK(err);
cleanup:
    return st;
}

#define TG_INSTANTIATE(X)                                                                      \
    template tg_status tg_cuda_crossentropy_forward<X>(float *, float *, const X *,            \
                                                       const int32_t *, int, int, int,          \
                                                       cudaStream_t, tg_error *);               \
    template tg_status tg_cuda_crossentropy_backward<X>(X *, const float *, const int32_t *,   \
                                                        float, int, int, int, cudaStream_t,     \
                                                        tg_error *);
TG_INSTANTIATE(float)
TG_INSTANTIATE(tg_bf16)
