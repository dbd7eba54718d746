/* model/cuda/classifier.cu — softmax cross-entropy over the real vocabulary V of the Vp padded
 * logit columns (padded columns never enter the softmax), targets -1 ignored.
 *
 * Forward keeps only the per-row log-sum-exp (fp32) next to the logits; backward then turns the
 * logits buffer into dlogits in place, so fp32-or-bf16 logits exist exactly once. (llm.c fuses
 * both into the forward; splitting them keeps tg_model_logits_get valid after a forward with
 * targets, at the cost of one extra read of the logits.) One block per row.
 *
 * Both kernels are bound by reading the (N, Vp) logits once: rows are moved as VEC-element
 * vectors (16 bytes) when the logits are aligned and Vp % VEC == 0 (VEC = 1 otherwise), and
 * the forward is a single pass with an online maximum. exp is exp2 of a pre-scaled argument
 * (one FFMA + MUFU.EX2) so the exponentials keep up with the memory system. */
#include "model/cuda/ops.cuh"

#include <math.h>

#define TG_LOG2E 1.4426950408889634f

/* Running (max m, sum s of exp(x - m)) of a set of values; m = -inf for the empty set. */
struct online_lse {
    float m, s;
};

/* The pair for the union of two sets; the empty set (m = -inf) adds nothing. */
__device__ __forceinline__ online_lse lse_merge(online_lse a, online_lse b) {
    const float m = fmaxf(a.m, b.m);
    if (m == -INFINITY) return a;
    online_lse r;
    r.m = m;
    r.s = (a.m == -INFINITY ? 0.0f : a.s * exp2f((a.m - m) * TG_LOG2E)) +
          (b.m == -INFINITY ? 0.0f : b.s * exp2f((b.m - m) * TG_LOG2E));
    return r;
}

/* Block-wide merge (blockDim.x == TG_CUDA_THREADS) in a fixed order; every thread gets it. */
__device__ online_lse block_lse(online_lse v) {
    __shared__ online_lse shared[TG_CUDA_THREADS / 32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
    for (int o = 16; o > 0; o >>= 1) {
        online_lse u;
        u.m = __shfl_xor_sync(0xffffffffu, v.m, o);
        u.s = __shfl_xor_sync(0xffffffffu, v.s, o);
        v = lse_merge(v, u);
    }
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v.m = -INFINITY;
    v.s = 0.0f;
    if (lane < nw) v = shared[lane];
    for (int o = 16; o > 0; o >>= 1) {
        online_lse u;
        u.m = __shfl_xor_sync(0xffffffffu, v.m, o);
        u.s = __shfl_xor_sync(0xffffffffu, v.s, o);
        v = lse_merge(v, u);
    }
    return v;
}

/* One pass over the row: each thread keeps (m, s) over its vectors; a vector whose maximum
 * exceeds m rescales s once (not once per element). */
template <typename X, int VEC>
__global__ void __launch_bounds__(TG_CUDA_THREADS)
crossentropy_forward_kernel(float *__restrict__ losses, float *__restrict__ lse,
                            const X *__restrict__ logits, const int32_t *__restrict__ targets,
                            int V, int Vp) {
    typedef tg_vec<X, VEC> Vec;
    const size_t row = blockIdx.x;
    const X *x = logits + row * Vp;
    const int nfull = V / VEC; /* vectors wholly inside [0, V) */
    const int tgt = targets[row];
    /* issued early: its latency overlaps the pass */
    const float xt = (threadIdx.x == 0 && tgt >= 0) ? tg_to_f32(x[tgt]) : 0.0f;
    online_lse a;
    a.m = -INFINITY;
    a.s = 0.0f;
#pragma unroll 4
    for (int v = threadIdx.x; v < nfull; v += blockDim.x) {
        const Vec xv = ((const Vec *)x)[v];
        float f[VEC], vm = -INFINITY;
#pragma unroll
        for (int j = 0; j < VEC; j++) {
            f[j] = tg_to_f32(xv.v[j]);
            vm = fmaxf(vm, f[j]);
        }
        if (vm > a.m) {
            a.s = a.m == -INFINITY ? 0.0f : a.s * exp2f((a.m - vm) * TG_LOG2E);
            a.m = vm;
        }
        const float ml = a.m * TG_LOG2E;
        float t = 0.0f;
#pragma unroll
        for (int j = 0; j < VEC; j++) t += exp2f(fmaf(f[j], TG_LOG2E, -ml));
        a.s += t;
    }
    for (int j = nfull * VEC + threadIdx.x; j < V; j += blockDim.x) { /* the partial vector */
        online_lse b;
        b.m = tg_to_f32(x[j]);
        b.s = 1.0f;
        a = lse_merge(a, b);
    }
    a = block_lse(a);
    if (threadIdx.x == 0) {
        const float l = a.m + logf(a.s);
        lse[row] = l;
        losses[row] = tgt >= 0 ? l - xt : 0.0f;
    }
}

/* logits <- dscale * (exp(x - lse) - onehot) over [0, V), 0 on [V, Vp) and on ignored rows
 * (which are not read). */
template <typename X, int VEC>
__global__ void __launch_bounds__(TG_CUDA_THREADS)
crossentropy_backward_kernel(X *__restrict__ logits, const float *__restrict__ lse,
                             const int32_t *__restrict__ targets, float dscale, int V, int Vp) {
    typedef tg_vec<X, VEC> Vec;
    const size_t row = blockIdx.x;
    Vec *x = (Vec *)(logits + row * Vp);
    const int tgt = targets[row], nvec = Vp / VEC;
    const float ll = lse[row] * TG_LOG2E;
    if (tgt < 0) {
        Vec z;
#pragma unroll
        for (int j = 0; j < VEC; j++) z.v[j] = tg_from_f32<X>(0.0f);
        for (int v = threadIdx.x; v < nvec; v += blockDim.x) x[v] = z;
        return;
    }
#pragma unroll 4
    for (int v = threadIdx.x; v < nvec; v += blockDim.x) {
        Vec xv = x[v];
        const int c0 = v * VEC;
#pragma unroll
        for (int j = 0; j < VEC; j++) {
            const int c = c0 + j;
            float g = 0.0f;
            if (c < V)
                g = (exp2f(fmaf(tg_to_f32(xv.v[j]), TG_LOG2E, -ll)) - (c == tgt ? 1.0f : 0.0f)) *
                    dscale;
            xv.v[j] = tg_from_f32<X>(g);
        }
        x[v] = xv;
    }
}

template <typename X>
tg_status tg_cuda_crossentropy_forward(float *losses, float *lse, const X *logits,
                                       const int32_t *targets, int N, int V, int Vp,
                                       cudaStream_t s, tg_error *err) {
    tg_status st = TG_OK;
    if (N <= 0) goto cleanup;
    if (Vp % TG_VEC16(X) == 0 && tg_aligned(logits, 16))
        crossentropy_forward_kernel<X, TG_VEC16(X)><<<N, TG_CUDA_THREADS, 0, s>>>(losses, lse, logits, targets, V, Vp);
    else
        crossentropy_forward_kernel<X, 1><<<N, TG_CUDA_THREADS, 0, s>>>(losses, lse, logits, targets, V, Vp);
    TG_CUDA_LAUNCH_CHECK(err);
cleanup:
    return st;
}

template <typename X>
tg_status tg_cuda_crossentropy_backward(X *logits, const float *lse, const int32_t *targets,
                                        float dscale, int N, int V, int Vp, cudaStream_t s,
                                        tg_error *err) {
    tg_status st = TG_OK;
    if (N <= 0) goto cleanup;
    if (Vp % TG_VEC16(X) == 0 && tg_aligned(logits, 16))
        crossentropy_backward_kernel<X, TG_VEC16(X)><<<N, TG_CUDA_THREADS, 0, s>>>(logits, lse, targets, dscale, V, Vp);
    else
        crossentropy_backward_kernel<X, 1><<<N, TG_CUDA_THREADS, 0, s>>>(logits, lse, targets, dscale, V, Vp);
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
