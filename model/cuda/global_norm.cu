/* model/cuda/global_norm.cu — sum of squares of the fp32 gradients over [lo, hi), in double,
 * as TG_CUDA_NORM_BLOCKS per-block partials that the host adds in order (no atomics, so the
 * value is reproducible bit for bit). */
#include "model/cuda/ops.cuh"

__global__ void sqnorm_kernel(double *partial, const float *g, size_t lo, size_t hi) {
    __shared__ double shared[TG_CUDA_THREADS];
    double sum = 0.0;
    for (size_t i = lo + blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < hi;
         i += (size_t)gridDim.x * blockDim.x)
        sum += (double)g[i] * (double)g[i];
    shared[threadIdx.x] = sum;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
        if ((int)threadIdx.x < stride) shared[threadIdx.x] += shared[threadIdx.x + stride];
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
