/* model/cuda/classifier.cu — softmax cross-entropy over the real vocabulary V of the Vp padded
 * logit columns (padded columns never enter the softmax), targets -1 ignored.
 *
 * The LM head runs in row chunks (gpt2_cuda.cu), so a logits buffer holds one chunk. The
 * default is two kernels, one block per row: the forward gives per-row losses and the
 * log-sum-exp, the backward then turns the logits into dlogits in place. That reads the logits
 * twice and writes them once (3 x N x Vp x sizeof(X) bytes: 19.8 GB a step at GPT-2 124M, B=64;
 * 5.3 ms on an H200, 3.7 TB/s).
 *
 * TG_CUDA_XENT=fused (tg_cuda_crossentropy_fused) reads them once: a persistent block per SM
 * copies its next row into shared memory (cp.async) while it works on the current one from the
 * other buffer, so each row comes from DRAM once and goes back once (2/3 of the traffic). Two
 * rows of shared memory are 201 KB for GPT-2's bf16 Vp = 50304, which an sm_90 block may opt
 * into (227 KB); where they do not fit it runs the two kernels. (The earlier one-kernel version
 * re-read each row from global memory right after its log-sum-exp, llm.c's way; on an H200 it
 * measured the same as the two kernels: the re-reads missed L2.)
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

/* tg_cuda_crossentropy_fused: rows blockIdx.x, + gridDim.x, ... of one persistent block per SM;
 * while the block works on a row from one shared buffer, cp.async fills the other with its next
 * row (ignored rows are not read). Per row: the log-sum-exp from shared memory, then dlogits
 * from shared memory into the row in global memory. VEC is always the 16-byte vector. */
#define XENT_ROW_THREADS 512
template <typename X, int VEC>
__global__ void __launch_bounds__(XENT_ROW_THREADS, 1)
crossentropy_rows_kernel(float *__restrict__ losses, X *__restrict__ logits,
                         const int32_t *__restrict__ targets, float dscale, int N, int V, int Vp) {
    typedef tg_vec<X, VEC> Vec;
    extern __shared__ __align__(16) unsigned char xent_smem[];
    X *const buf = (X *)xent_smem; /* two rows: buf[0, Vp) and buf[Vp, 2 Vp) */
    const int nvec = Vp / VEC, nfull = V / VEC;
    /* row r into shared buffer k, unless r is past the end or ignored (then nothing is read) */
    auto fetch = [&](int r, int k) {
        if (r < N && targets[r] >= 0)
            for (int v = threadIdx.x; v < nvec; v += XENT_ROW_THREADS)
                tg_cp_async<16>(buf + (size_t)k * Vp + v * VEC, logits + (size_t)r * Vp + v * VEC, 1);
        tg_cp_async_commit(); /* possibly empty: keeps the wait count uniform */
    };
    int row = blockIdx.x, b = 0;
    fetch(row, 0);
    for (; row < N; row += gridDim.x, b ^= 1) {
        const X *cur = buf + (size_t)b * Vp;
        fetch(row + gridDim.x, b ^ 1); /* into the buffer the previous row used */
        tg_cp_async_wait<1>(); /* this row's copies, not the next row's */
        __syncthreads();       /* every thread's */
        X *out = logits + (size_t)row * Vp;
        const int tgt = targets[row]; /* the same for the whole block: no divergent barrier below */
        if (tgt < 0) {
            if (threadIdx.x == 0) losses[row] = 0.0f;
            row_zero<X, VEC, XENT_ROW_THREADS>(out, Vp);
        } else {
            const online_lse a = block_lse<XENT_ROW_THREADS>(thread_lse<X, VEC, XENT_ROW_THREADS>(cur, V));
            const float lse = a.m + logf(a.s), ll = lse * TG_LOG2E;
            if (threadIdx.x == 0) losses[row] = lse - tg_to_f32(cur[tgt]);
#pragma unroll 4
            for (int v = threadIdx.x; v < nvec; v += XENT_ROW_THREADS)
                ((Vec *)out)[v] = dlogits_vec<X, VEC>(((const Vec *)cur)[v], v, ll, tgt, dscale, V, nfull);
        }
        __syncthreads(); /* cur is free: the next iteration copies into it */
    }
    tg_cp_async_wait<0>(); /* nothing is left in flight at exit (the last group is empty) */
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

tg_status tg_cuda_crossentropy_staged(int Vp, size_t x_bytes, int *staged, int *sms, tg_error *err) {
    tg_status st = TG_OK;
    int dev = 0, smem_max = 0, n_sm = 0;
    *staged = 0;
    TG_CUDA_CHECK(err, cudaGetDevice(&dev));
    TG_CUDA_CHECK(err, cudaDeviceGetAttribute(&smem_max, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    TG_CUDA_CHECK(err, cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, dev));
    /* two rows, plus block_lse's static shared memory; rows of whole 16-byte vectors */
    *staged = (Vp * x_bytes) % 16 == 0 && 2 * (size_t)Vp * x_bytes + 1024 <= (size_t)smem_max;
    if (sms) *sms = n_sm;
cleanup:
    return st;
}

template <typename X>
tg_status tg_cuda_crossentropy_fused(float *losses, float *lse, X *logits, const int32_t *targets,
                                     float dscale, int N, int V, int Vp, cudaStream_t s,
                                     tg_error *err) {
    tg_status st = TG_OK;
    const size_t smem = (size_t)2 * Vp * sizeof(X);
    int staged = 0, sms = 0;
    if (N <= 0) return TG_OK;
    TG_TRY(tg_cuda_crossentropy_staged(Vp, sizeof(X), &staged, &sms, err));
    if (staged && tg_aligned(logits, 16)) {
        TG_CUDA_CHECK(err, cudaFuncSetAttribute(crossentropy_rows_kernel<X, TG_VEC16(X)>,
                                                cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        crossentropy_rows_kernel<X, TG_VEC16(X)><<<N < sms ? N : sms, XENT_ROW_THREADS, smem, s>>>(
            losses, logits, targets, dscale, N, V, Vp);
        TG_CUDA_LAUNCH_CHECK(err);
    } else {
        TG_TRY(tg_cuda_crossentropy_forward<X>(losses, lse, logits, targets, N, V, Vp, s, err));
        TG_TRY(tg_cuda_crossentropy_backward<X>(logits, lse, targets, dscale, N, V, Vp, s, err));
    }
cleanup:
    return st;
}

#define TG_INSTANTIATE(X)                                                                      \
    template tg_status tg_cuda_crossentropy_forward<X>(float *, float *, const X *,            \
                                                       const int32_t *, int, int, int,          \
                                                       cudaStream_t, tg_error *);               \
    template tg_status tg_cuda_crossentropy_backward<X>(X *, const float *, const int32_t *,   \
                                                        float, int, int, int, cudaStream_t,     \
                                                        tg_error *);                            \
    template tg_status tg_cuda_crossentropy_fused<X>(float *, float *, X *, const int32_t *,    \
                                                     float, int, int, int, cudaStream_t,        \
                                                     tg_error *);
TG_INSTANTIATE(float)
TG_INSTANTIATE(tg_bf16)
