/* model/cuda/adamw.cu — one fused AdamW kernel over the optimizer shard: fp32 moments, fp32
 * master weights (bf16 working copy) or the fp32 working copy itself as master, decoupled
 * weight decay only for tensors with decay=1 (the shard comes as per-tensor chunks); with Muon,
 * its momentum phase on the chunks of Muon matrices. Same arithmetic as the CPU reference
 * (model/cpu/cpu_optim.c). Rounding of the bf16 working copy is to nearest-even (deterministic;
 * llm.c uses stochastic rounding — a possible later change). */
#include "model/cuda/ops.cuh"

/* Block b updates chunk b: elements [start, start + len) of one tensor (so one decay flag per
 * block, no per-element lookup); four independent elements per thread per pass keep loads in
 * flight. Elementwise, so the result does not depend on the chunking. */
template <typename X>
__global__ void __launch_bounds__(TG_CUDA_THREADS)
adamw_kernel(X *__restrict__ params, float *__restrict__ master, float *__restrict__ grads,
             float *__restrict__ m, float *__restrict__ v, size_t lo,
             const tg_cuda_adamw_chunk *__restrict__ chunks, tg_cuda_adamw_hp hp) {
    const tg_cuda_adamw_chunk c = chunks[blockIdx.x];
    const float wd = c.decay ? hp.weight_decay : 0.0f;
    if (hp.muon && c.muon) {
        /* Muon's momentum; the explicit _rn operations keep nvcc from fusing them into FMAs, so
         * the bits are the CPU's (muon_momentum in cpu_optim.c) for the same inputs. */
        const float mu = hp.momentum, omu = 1.0f - hp.momentum;
        for (unsigned int t = threadIdx.x; t < c.len; t += blockDim.x) {
            const size_t i = (size_t)c.start + t, j = i - lo;
            const float g = __fmul_rn(grads[i], hp.grad_scale);
            const float mi = __fadd_rn(__fmul_rn(mu, m[j]), __fmul_rn(omu, g));
            m[j] = mi;
            grads[i] = hp.nesterov ? __fadd_rn(__fmul_rn(omu, g), __fmul_rn(mu, mi)) : mi;
        }
        return;
    }
#pragma unroll 4
    for (unsigned int t = threadIdx.x; t < c.len; t += blockDim.x) {
        const size_t i = (size_t)c.start + t, j = i - lo;
        const float g = grads[i] * hp.grad_scale;
        const float mi = hp.beta1 * m[j] + (1.0f - hp.beta1) * g;
        const float vi = hp.beta2 * v[j] + (1.0f - hp.beta2) * g * g;
        m[j] = mi;
        v[j] = vi;
        const float mhat = mi / hp.bc1, vhat = vi / hp.bc2;
        const float p = master ? master[j] : tg_to_f32(params[i]);
        const float np = p - hp.lr * (mhat / (sqrtf(vhat) + hp.eps) + wd * p);
        if (master) master[j] = np;
        params[i] = tg_from_f32<X>(np);
    }
}

template <typename X> __global__ void to_f32_kernel(float *dst, const X *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = tg_to_f32(src[i]);
}

template <typename X>
tg_status tg_cuda_adamw(X *params, float *master, float *grads, float *m, float *v,
                        size_t lo, const tg_cuda_adamw_chunk *chunks, int n_chunks,
                        const tg_cuda_adamw_hp *hp, cudaStream_t s, tg_error *err) {
    tg_status st = TG_OK;
    if (n_chunks <= 0) goto cleanup;
    adamw_kernel<X><<<n_chunks, TG_CUDA_THREADS, 0, s>>>(params, master, grads, m, v, lo, chunks, *hp);
    TG_CUDA_LAUNCH_CHECK(err);
cleanup:
    return st;
}

template <typename X>
tg_status tg_cuda_to_f32(float *dst, const X *src, size_t n, cudaStream_t s, tg_error *err) {
    tg_status st = TG_OK;
    if (n == 0) goto cleanup;
    to_f32_kernel<X><<<tg_cuda_blocks(n), TG_CUDA_THREADS, 0, s>>>(dst, src, n);
    TG_CUDA_LAUNCH_CHECK(err);
cleanup:
    return st;
}

#define TG_INSTANTIATE(X)                                                                      \
    template tg_status tg_cuda_adamw<X>(X *, float *, float *, float *, float *, size_t,        \
                                        const tg_cuda_adamw_chunk *, int,                        \
                                        const tg_cuda_adamw_hp *, cudaStream_t, tg_error *);     \
    template tg_status tg_cuda_to_f32<X>(float *, const X *, size_t, cudaStream_t, tg_error *);
TG_INSTANTIATE(float)
TG_INSTANTIATE(tg_bf16)
