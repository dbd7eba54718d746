/* model/cuda/global_norm.cu — sum of squares of the fp32 gradients over [lo, hi), in double,
 * as TG_CUDA_NORM_BLOCKS per-block partials that the host adds in order (no atomics, so the
 * value is reproducible bit for bit). */
#include "model/cuda/ops.cuh"

/* Grid-stride over [lo, hi) with 8 independent loads in flight per thread (the sum itself is
 * one chain per thread, so the order is fixed by the grid size alone). */
__global__ void __launch_bounds__(TG_CUDA_THREADS) sqnorm_kernel(double *partial, const float *g, size_t lo, size_t hi) {
    __shared__ double shared[TG_CUDA_THREADS];
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t i = lo + blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    double sum = 0.0;
    for (; i + 7 * stride < hi; i += 8 * stride) {
        float x[8];
#pragma unroll
        for (int u = 0; u < 8; u++) x[u] = g[i + u * stride];
#pragma unroll
        for (int u = 0; u < 8; u++) sum += (double)x[u] * (double)x[u];
    }
    for (; i < hi; i += stride) sum += (double)g[i] * (double)g[i];
    shared[threadIdx.x] = sum;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if ((int)threadIdx.x < half) shared[threadIdx.x] += shared[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) partial[blockIdx.x] = shared[0];
}

tg_status tg_cuda_sqnorm_partials(double *partial, const float *g, size_t lo, size_t hi,
                                  cudaStream_t s, tg_error *err) {
    tg_status st = TG_OK;
    sqnorm_kernel<<<TG_CUDA_NORM_BLOCKS, TG_CUDA_THREADS, 0, s>>>(partial, g, lo, hi);
    TG_CUDA_LAUNCH_CHECK(err);
cleanup:
    return st;
}
