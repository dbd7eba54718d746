/* model/cuda/encoder.cu — token + position embeddings, forward and backward (wpe NULL: token
 * embeddings only, as Llama's embed_tokens). */
#include "model/cuda/ops.cuh"

/* out[b,t,c] = wte[tok[b,t], c] (+ wpe[t, c]); grid-stride over B*T*C. */
template <typename X>
__global__ void encoder_forward_kernel(X *out, const int32_t *tokens, const X *wte, const X *wpe,
                                       int T, int C, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const size_t row = i / C;
        const int c = (int)(i % C), t = (int)(row % T);
        const int tok = tokens[row];
        if (wpe) out[i] = tg_from_f32<X>(tg_to_f32(wte[(size_t)tok * C + c]) + tg_to_f32(wpe[(size_t)t * C + c]));
        else out[i] = wte[(size_t)tok * C + c];
    }
}

/* One block per distinct token: sums its positions' gradient rows in ascending order. */
template <typename X>
__global__ void encoder_backward_wte_kernel(float *dwte, const X *dout, const int32_t *uniq,
                                            const int32_t *seg, const int32_t *pos, int C) {
    const int k = blockIdx.x;
    const int tok = uniq[k], p0 = seg[k], p1 = seg[k + 1];
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float sum = 0.0f;
        for (int p = p0; p < p1; p++) sum += tg_to_f32(dout[(size_t)pos[p] * C + c]);
        dwte[(size_t)tok * C + c] += sum;
    }
}

/* One thread per (t, c): sums over b. */
template <typename X>
__global__ void encoder_backward_wpe_kernel(float *dwpe, const X *dout, int B, int T, int C) {
    const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= (size_t)T * C) return;
    float sum = 0.0f;
    for (int b = 0; b < B; b++) sum += tg_to_f32(dout[(size_t)b * T * C + i]);
    dwpe[i] += sum;
}

template <typename X>
tg_status tg_cuda_encoder_forward(X *out, const int32_t *tokens, const X *wte, const X *wpe,
                                  int B, int T, int C, cudaStream_t s, tg_error *err) {
    tg_status st = TG_OK;
    const size_t n = (size_t)B * T * C;
    encoder_forward_kernel<X><<<tg_cuda_blocks(n), TG_CUDA_THREADS, 0, s>>>(out, tokens, wte, wpe, T, C, n);
    TG_CUDA_LAUNCH_CHECK(err);
cleanup:
    return st;
}

template <typename X>
tg_status tg_cuda_encoder_backward(float *dwte, float *dwpe, const X *dout, const int32_t *uniq,
                                   const int32_t *seg, const int32_t *pos, int n_uniq, int B,
                                   int T, int C, cudaStream_t s, tg_error *err) {
    tg_status st = TG_OK;
    const size_t n_wpe = (size_t)T * C;
    const unsigned int wpe_blocks = (unsigned int)((n_wpe + TG_CUDA_THREADS - 1) / TG_CUDA_THREADS);
    if (n_uniq > 0) {
        encoder_backward_wte_kernel<X><<<n_uniq, TG_CUDA_THREADS, 0, s>>>(dwte, dout, uniq, seg, pos, C);
        TG_CUDA_LAUNCH_CHECK(err);
    }
    if (dwpe) {
        encoder_backward_wpe_kernel<X><<<wpe_blocks, TG_CUDA_THREADS, 0, s>>>(dwpe, dout, B, T, C);
        TG_CUDA_LAUNCH_CHECK(err);
    }
cleanup:
    return st;
}

#define TG_INSTANTIATE(X)                                                                      \
    template tg_status tg_cuda_encoder_forward<X>(X *, const int32_t *, const X *, const X *,   \
                                                  int, int, int, cudaStream_t, tg_error *);     \
    template tg_status tg_cuda_encoder_backward<X>(float *, float *, const X *, const int32_t *, \
                                                   const int32_t *, const int32_t *, int, int,   \
                                                   int, int, cudaStream_t, tg_error *);
TG_INSTANTIATE(float)
TG_INSTANTIATE(tg_bf16)
