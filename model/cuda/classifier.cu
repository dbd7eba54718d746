/* model/cuda/classifier.cu — softmax cross-entropy over the real vocabulary V of the Vp padded
 * logit columns (padded columns never enter the softmax), targets -1 ignored.
 *
 * The LM head runs in row chunks (gpt2_cuda.cu), so a logits buffer holds one chunk. It takes
 * two kernels, one block per row: the forward gives per-row losses and the
 * log-sum-exp, the backward then turns the logits into dlogits in place. That reads the logits
 * twice and writes them once (3 x N x Vp x sizeof(X) bytes: 19.8 GB a step at GPT-2 124M, B=64;
 * 5.3 ms on an H200, 3.7 TB/s).
 *
 * Reading the logits once (a persistent block per SM staging two rows in shared memory with
 * cp.async: 2/3 of the traffic) makes the kernels 16% faster alone but the step only 0.1 ms
 * faster on an H200, not worth its complexity; the two plain kernels stay.
 *
 * Rows are moved as VEC-element vectors (16 bytes) when the logits are aligned and
 * Vp % VEC == 0 (VEC = 1 otherwise), and the log-sum-exp is a single pass with an online
 * maximum. exp is exp2 of a pre-scaled argument (one FFMA + MUFU.EX2) so the exponentials keep
 * up with the memory system. */
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

/* Block-wide merge (blockDim.x == NT) in a fixed order; every thread gets it. */
template <int NT> __device__ online_lse block_lse(online_lse v) {
    __shared__ online_lse shared[NT / 32];
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


/* This thread's (m, s) over its vectors of the row x[0, V) (vectors v = threadIdx.x + k NT):
 * one pass; a vector whose maximum exceeds m rescales s once (not once per element). */
template <typename X, int VEC, int NT>
__device__ __forceinline__ online_lse thread_lse(const X *__restrict__ x, int V) {
    typedef tg_vec<X, VEC> Vec;
    const int nfull = V / VEC; /* vectors wholly inside [0, V) */
    online_lse a;
    a.m = -INFINITY;
    a.s = 0.0f;
#pragma unroll 4
    for (int v = threadIdx.x; v < nfull; v += NT) {
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
    for (int j = nfull * VEC + threadIdx.x; j < V; j += NT) { /* the partial vector */
        online_lse b;
        b.m = tg_to_f32(x[j]);
        b.s = 1.0f;
        a = lse_merge(a, b);
    }
    return a;
}

/* One vector (columns c0 = v VEC ..) of a valid row's dlogits: dscale * (exp(x - lse) - onehot(tgt))
 * on [0, V), 0 on [V, Vp). ll = lse log2(e). Per element only the FFMA, the exp2 and the scaling:
 * the bounds and the one-hot are checked per vector. */
template <typename X, int VEC>
__device__ __forceinline__ tg_vec<X, VEC> dlogits_vec(tg_vec<X, VEC> xv, int v, float ll, int tgt,
                                                      float dscale, int V, int nfull) {
    const int c0 = v * VEC;
    float g[VEC];
#pragma unroll
    for (int j = 0; j < VEC; j++) g[j] = exp2f(fmaf(tg_to_f32(xv.v[j]), TG_LOG2E, -ll)) * dscale;
    if (v >= nfull) /* the vector holding V (and the padding after it) */
#pragma unroll
        for (int j = 0; j < VEC; j++)
            if (c0 + j >= V) g[j] = 0.0f;
    if ((unsigned)(tgt - c0) < (unsigned)VEC)
#pragma unroll
        for (int j = 0; j < VEC; j++)
            if (c0 + j == tgt) g[j] -= dscale;
#pragma unroll
    for (int j = 0; j < VEC; j++) xv.v[j] = tg_from_f32<X>(g[j]);
    return xv;
}

/* row[0, Vp) <- 0: an ignored row's dlogits. Thread t writes vectors t, t + NT, ... */
template <typename X, int VEC, int NT> __device__ __forceinline__ void row_zero(X *row, int Vp) {
    tg_vec<X, VEC> z;
#pragma unroll
    for (int j = 0; j < VEC; j++) z.v[j] = tg_from_f32<X>(0.0f);
    for (int v = threadIdx.x; v < Vp / VEC; v += NT) ((tg_vec<X, VEC> *)row)[v] = z;
}

/* row[0, Vp) <- its dlogits in place (a row with tgt < 0 becomes 0 and is not read). Thread t
 * handles the same vectors as in thread_lse. */
template <typename X, int VEC, int NT>
__device__ __forceinline__ void row_dlogits(X *__restrict__ row, float lse, int tgt, float dscale,
                                            int V, int Vp) {
    typedef tg_vec<X, VEC> Vec;
    Vec *x = (Vec *)row;
    const int nvec = Vp / VEC, nfull = V / VEC;
    const float ll = lse * TG_LOG2E;
    if (tgt < 0) {
        row_zero<X, VEC, NT>(row, Vp);
        return;
    }
#pragma unroll 4
    for (int v = threadIdx.x; v < nvec; v += NT) x[v] = dlogits_vec<X, VEC>(x[v], v, ll, tgt, dscale, V, nfull);
}

/* losses[row] = lse - x[target] (0 for ignored rows); lse[row] too when lse != NULL. */
template <typename X, int VEC>
__global__ void __launch_bounds__(TG_CUDA_THREADS)
crossentropy_forward_kernel(float *__restrict__ losses, float *__restrict__ lse,
                            const X *__restrict__ logits, const int32_t *__restrict__ targets,
                            int V, int Vp) {
    const size_t row = blockIdx.x;
    const X *x = logits + row * Vp;
    const int tgt = targets[row];
    /* issued early: its latency overlaps the pass */
    const float xt = (threadIdx.x == 0 && tgt >= 0) ? tg_to_f32(x[tgt]) : 0.0f;
    const online_lse a = block_lse<TG_CUDA_THREADS>(thread_lse<X, VEC, TG_CUDA_THREADS>(x, V));
    if (threadIdx.x == 0) {
        const float l = a.m + logf(a.s);
        if (lse) lse[row] = l;
        losses[row] = tgt >= 0 ? l - xt : 0.0f;
    }
}

template <typename X, int VEC>
__global__ void __launch_bounds__(TG_CUDA_THREADS)
crossentropy_backward_kernel(X *__restrict__ logits, const float *__restrict__ lse,
                             const int32_t *__restrict__ targets, float dscale, int V, int Vp) {
    const size_t row = blockIdx.x;
    row_dlogits<X, VEC, TG_CUDA_THREADS>(logits + row * Vp, lse[row], targets[row], dscale, V, Vp);
}

/* 16-byte vectors when the rows allow it. */
#define XENT_LAUNCH(kernel, X, ...)                                                            \
    do {                                                                                       \
        if (Vp % TG_VEC16(X) == 0 && tg_aligned(logits, 16))                                   \
            kernel<X, TG_VEC16(X)><<<N, TG_CUDA_THREADS, 0, s>>>(__VA_ARGS__);                 \
        else                                                                                   \
            kernel<X, 1><<<N, TG_CUDA_THREADS, 0, s>>>(__VA_ARGS__);                           \
        TG_CUDA_LAUNCH_CHECK(err);                                                             \
    } while (0)

template <typename X>
tg_status tg_cuda_crossentropy_forward(float *losses, float *lse, const X *logits,
                                       const int32_t *targets, int N, int V, int Vp,
                                       cudaStream_t s, tg_error *err) {
    tg_status st = TG_OK;
    if (N > 0) XENT_LAUNCH(crossentropy_forward_kernel, X, losses, lse, logits, targets, V, Vp);
cleanup:
    return st;
}

template <typename X>
tg_status tg_cuda_crossentropy_backward(X *logits, const float *lse, const int32_t *targets,
                                        float dscale, int N, int V, int Vp, cudaStream_t s,
                                        tg_error *err) {
    tg_status st = TG_OK;
    if (N > 0) XENT_LAUNCH(crossentropy_backward_kernel, X, logits, lse, targets, dscale, V, Vp);
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
