/* model/cuda/adamw.cu — one fused AdamW kernel over the optimizer shard: fp32 moments, fp32
 * master weights (bf16 working copy) or the fp32 working copy itself as master, decoupled
 * weight decay only for tensors with decay=1 (looked up in a small per-tensor table). Same
 * arithmetic as the CPU reference (model/cpu/gpt2_cpu.c). Rounding of the bf16 working copy is
 * to nearest-even (deterministic; llm.c uses stochastic rounding — a possible later change). */
#include "model/cuda/ops.cuh"

/* Index k of the tensor holding element i: tstart[k] <= i < tstart[k+1]; n_tensors if none. */
__device__ __forceinline__ int tensor_of(const unsigned long long *tstart, int n_tensors, size_t i) {
    if (i >= tstart[n_tensors]) return n_tensors;
    int lo = 0, hi = n_tensors - 1; /* invariant: tstart[lo] <= i */
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (tstart[mid] <= i) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

template <typename X>
__global__ void adamw_kernel(X *params, float *master, const float *grads, float *m, float *v,
                             size_t lo, size_t n, const unsigned long long *tstart,
                             const int *tdecay, int n_tensors, tg_cuda_adamw_hp hp) {
    for (size_t j = blockIdx.x * (size_t)blockDim.x + threadIdx.x; j < n;
         j += (size_t)gridDim.x * blockDim.x) {
        const size_t i = lo + j;
        const int k = tensor_of(tstart, n_tensors, i);
        const float wd = k < n_tensors && tdecay[k] ? hp.weight_decay : 0.0f;
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
tg_status tg_cuda_adamw(X *params, float *master, const float *grads, float *m, float *v,
                        size_t lo, size_t hi, const unsigned long long *tstart,
                        const int *tdecay, int n_tensors, const tg_cuda_adamw_hp *hp,
                        cudaStream_t s, tg_error *err) {
    tg_status st = TG_OK;
    const size_t n = hi - lo;
    if (n == 0) goto cleanup;
    adamw_kernel<X><<<tg_cuda_blocks(n), TG_CUDA_THREADS, 0, s>>>(params, master, grads, m, v, lo, n, tstart, tdecay, n_tensors, *hp);
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
    template tg_status tg_cuda_adamw<X>(X *, float *, const float *, float *, float *, size_t,  \
                                        size_t, const unsigned long long *, const int *, int,    \
                                        const tg_cuda_adamw_hp *, cudaStream_t, tg_error *);     \
    template tg_status tg_cuda_to_f32<X>(float *, const X *, size_t, cudaStream_t, tg_error *);
TG_INSTANTIATE(float)
TG_INSTANTIATE(tg_bf16)
