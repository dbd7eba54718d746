/* model/cuda/muon.cu — Muon's orthogonalisation (Newton-Schulz) and its update, on the device.
 *
 * The CPU's algorithm (model/cpu/cpu_optim.c) step for step, in fp32: the Frobenius norm (in
 * double), the scaled copy into X (transposed when the matrix is tall, so that the Gram matrix
 * X X^T is the smaller one), `steps` quintic iterations of three matmuls and two elementwise
 * passes, and the copy back with the shape scale. The elementwise passes use explicit
 * round-to-nearest operations so nvcc does not fuse them into FMAs (the CPU's loops are not
 * fused either); what differs from the CPU is the summation order of the norm and the matmuls.
 * Every reduction has a fixed order (no atomics): the result is the same bits run to run. */
#include "model/cuda/ops.cuh"

/* The quintic's coefficients (as tg_cpu_newton_schulz). */
#define NS_A 3.4445f
#define NS_B (-4.7750f)
#define NS_C 2.0315f

/* *inv = 1 / (sqrt(sum of the partials) + 1e-7), the sum in double in a fixed order (each
 * thread its strided share, then a tree). One block. */
__global__ void __launch_bounds__(TG_CUDA_THREADS) ns_inv_kernel(float *inv, const double *partial) {
    __shared__ double shared[TG_CUDA_THREADS];
    double sum = 0.0;
    for (int i = threadIdx.x; i < TG_CUDA_NORM_BLOCKS; i += blockDim.x) sum += partial[i];
    shared[threadIdx.x] = sum;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if ((int)threadIdx.x < half) shared[threadIdx.x] += shared[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) *inv = (float)(1.0 / (sqrt(shared[0]) + 1e-7));
}

/* X (n x k) = G * inv, G (rows x cols); X = G^T (n = cols, k = rows) when tr. Element e of X
 * is row e / k, column e % k; its source is G[e % k][e / k] when transposed. */
__global__ void ns_load_kernel(float *X, const float *G, const float *inv, int rows, int cols, int tr) {
    const float s = *inv;
    const size_t total = (size_t)rows * (size_t)cols;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        const size_t src = tr ? (e % (size_t)rows) * (size_t)cols + e / (size_t)rows : e;
        X[e] = __fmul_rn(G[src], s);
    }
}

/* G (rows x cols) = X * scale, undoing the transpose of ns_load_kernel. Element e of G is row
 * e / cols, column e % cols; transposed, it sits at X[e % cols][e / cols] (X is cols x rows). */
__global__ void ns_store_kernel(float *G, const float *X, float scale, int rows, int cols, int tr) {
    const size_t total = (size_t)rows * (size_t)cols;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        const size_t src = tr ? (e % (size_t)cols) * (size_t)rows + e / (size_t)cols : e;
        G[e] = __fmul_rn(X[src], scale);
    }
}

/* B = b * A + c * B (B holds A A). */
__global__ void ns_poly_kernel(float *B, const float *A, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        B[i] = __fadd_rn(__fmul_rn(NS_B, A[i]), __fmul_rn(NS_C, B[i]));
}

/* X = a * X + Y (Y holds B X). */
__global__ void ns_update_kernel(float *X, const float *Y, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        X[i] = __fadd_rn(__fmul_rn(NS_A, X[i]), Y[i]);
}

tg_status tg_cuda_newton_schulz(const tg_cuda_blas *bl, float *G, int rows, int cols, int steps, float scale,
                                const tg_cuda_ns_scratch *ns, cudaStream_t s, tg_error *err) {
    tg_status st = TG_OK;
    const int tr = rows > cols, n = tr ? cols : rows, k = tr ? rows : cols; /* X is n x k, n <= k */
    const size_t nk = (size_t)n * (size_t)k, nn = (size_t)n * (size_t)n;
    if (nk == 0) goto cleanup;
    TG_TRY(tg_cuda_sqnorm_partials(ns->partial, G, 0, nk, s, err));
    ns_inv_kernel<<<1, TG_CUDA_THREADS, 0, s>>>(ns->inv, ns->partial);
    TG_CUDA_LAUNCH_CHECK(err);
    ns_load_kernel<<<tg_cuda_blocks(nk), TG_CUDA_THREADS, 0, s>>>(ns->X, G, ns->inv, rows, cols, tr);
    TG_CUDA_LAUNCH_CHECK(err);
    for (int it = 0; it < steps; it++) {
        /* A (n x n) = X X^T: X as is, then X stored (n, k) read transposed. */
        TG_TRY(tg_cuda_matmul_batched<float>(bl, ns->A, ns->X, ns->X, n, n, k, 0, 1, 1.0f, 1, 0, 0, 0, s, err));
        /* B = A A, then b A + c B */
        TG_TRY(tg_cuda_matmul_batched<float>(bl, ns->B, ns->A, ns->A, n, n, n, 0, 0, 1.0f, 1, 0, 0, 0, s, err));
        ns_poly_kernel<<<tg_cuda_blocks(nn), TG_CUDA_THREADS, 0, s>>>(ns->B, ns->A, nn);
        TG_CUDA_LAUNCH_CHECK(err);
        /* Y (n x k) = B X, then X = a X + Y */
        TG_TRY(tg_cuda_matmul_batched<float>(bl, ns->Y, ns->B, ns->X, n, k, n, 0, 0, 1.0f, 1, 0, 0, 0, s, err));
        ns_update_kernel<<<tg_cuda_blocks(nk), TG_CUDA_THREADS, 0, s>>>(ns->X, ns->Y, nk);
        TG_CUDA_LAUNCH_CHECK(err);
    }
    ns_store_kernel<<<tg_cuda_blocks(nk), TG_CUDA_THREADS, 0, s>>>(G, ns->X, scale, rows, cols, tr);
    TG_CUDA_LAUNCH_CHECK(err);
cleanup:
    return st;
}

/* One block per chunk, as adamw_kernel; chunks of other tensors return at once. */
template <typename X>
__global__ void __launch_bounds__(TG_CUDA_THREADS)
muon_apply_kernel(X *__restrict__ params, float *__restrict__ master, const float *__restrict__ grads, size_t lo,
                  const tg_cuda_adamw_chunk *__restrict__ chunks, float lr, float wd) {
    const tg_cuda_adamw_chunk c = chunks[blockIdx.x];
    if (!c.muon) return;
    for (unsigned int t = threadIdx.x; t < c.len; t += blockDim.x) {
        const size_t i = (size_t)c.start + t, j = i - lo;
        const float p = master ? master[j] : tg_to_f32(params[i]);
        /* p - lr * (g + wd * p), unfused as the CPU's tg_cpu_muon_apply */
        const float np = __fsub_rn(p, __fmul_rn(lr, __fadd_rn(grads[i], __fmul_rn(wd, p))));
        if (master) master[j] = np;
        params[i] = tg_from_f32<X>(np);
    }
}

template <typename X>
tg_status tg_cuda_muon_apply(X *params, float *master, const float *grads, size_t lo,
                             const tg_cuda_adamw_chunk *chunks, int n_chunks, float lr, float wd,
                             cudaStream_t s, tg_error *err) {
    tg_status st = TG_OK;
    if (n_chunks <= 0) goto cleanup;
    muon_apply_kernel<X><<<n_chunks, TG_CUDA_THREADS, 0, s>>>(params, master, grads, lo, chunks, lr, wd);
    TG_CUDA_LAUNCH_CHECK(err);
cleanup:
    return st;
}

template tg_status tg_cuda_muon_apply<float>(float *, float *, const float *, size_t, const tg_cuda_adamw_chunk *,
                                             int, float, float, cudaStream_t, tg_error *);
template tg_status tg_cuda_muon_apply<tg_bf16>(tg_bf16 *, float *, const float *, size_t,
                                               const tg_cuda_adamw_chunk *, int, float, float, cudaStream_t,
                                               tg_error *);
