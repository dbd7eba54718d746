/* model/cuda/common.cuh — shared by the CUDA backend's .cu files: error-check macros, the
 * working dtype helpers and launch-size helpers. Internal to model/cuda/.
 *
 * Error convention (core/status.h): every function has `tg_status st = TG_OK;` and one
 * `cleanup:` label; the macros below record file, line, the failing call and the library's
 * error string into the tg_error and jump there. */
#ifndef TG_CUDA_COMMON_CUH
#define TG_CUDA_COMMON_CUH

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

extern "C" {
#include "core/log.h"
#include "core/status.h"
}

#define TG_CUDA_CHECK(err, call)                                                               \
    do {                                                                                       \
        cudaError_t e_ = (call);                                                               \
        if (e_ != cudaSuccess) {                                                               \
            st = tg_error_set_at((err), TG_ERR_CUDA, __FILE__, __LINE__, "%s: %s (%s)", #call, \
                                 cudaGetErrorString(e_), cudaGetErrorName(e_));                \
            goto cleanup;                                                                      \
        }                                                                                      \
    } while (0)

#define TG_CUBLAS_CHECK(err, call)                                                             \
    do {                                                                                       \
        cublasStatus_t s_ = (call);                                                            \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                     \
            st = tg_error_set_at((err), TG_ERR_CUDA, __FILE__, __LINE__, "%s: %s (%d)", #call, \
                                 cublasLtGetStatusString(s_), (int)s_);                        \
            goto cleanup;                                                                      \
        }                                                                                      \
    } while (0)

/* After every kernel launch: catches bad launch configurations at once (asynchronous faults
 * surface at the next synchronising call, e.g. tg_model_loss). */
#define TG_CUDA_LAUNCH_CHECK(err) TG_CUDA_CHECK(err, cudaGetLastError())

typedef __nv_bfloat16 tg_bf16;

/* Working dtype <-> fp32. Every kernel is a template over X in {float, tg_bf16}, computes in
 * fp32 and rounds to nearest-even when it stores X. Host too, for kernel bodies that a test runs
 * on the host (llama_kernels.cuh). */
__host__ __device__ __forceinline__ float tg_to_f32(float x) { return x; }
__host__ __device__ __forceinline__ float tg_to_f32(tg_bf16 x) { return __bfloat162float(x); }
template <typename X> __host__ __device__ __forceinline__ X tg_from_f32(float x);
template <> __host__ __device__ __forceinline__ float tg_from_f32<float>(float x) { return x; }
template <> __host__ __device__ __forceinline__ tg_bf16 tg_from_f32<tg_bf16>(float x) {
    return __float2bfloat16_rn(x);
}

/* cuBLASLt type of X. */
template <typename X> struct tg_cuda_type;
template <> struct tg_cuda_type<float> { static const cudaDataType_t value = CUDA_R_32F; };
template <> struct tg_cuda_type<tg_bf16> { static const cudaDataType_t value = CUDA_R_16BF; };

#define TG_CUDA_THREADS 256

/* Blocks for a grid-stride loop over n elements (capped; the kernels loop). */
static inline unsigned int tg_cuda_blocks(size_t n) {
    size_t b = (n + TG_CUDA_THREADS - 1) / TG_CUDA_THREADS;
    if (b > 65536) b = 65536;
    return b ? (unsigned int)b : 1u;
}

/* VEC consecutive elements of X moved as one access: 16 bytes (LDG/STG.128) when VEC is
 * TG_VEC16(X). Only for addresses aligned to the whole vector; VEC = 1 is the scalar fallback
 * of the same kernels. */
#define TG_VEC16(X) ((int)(16 / sizeof(X)))
template <typename X, int VEC> struct alignas(sizeof(X) * VEC) tg_vec {
    X v[VEC];
};
/* 1 when p is aligned to `bytes` (a power of two). */
static inline int tg_aligned(const void *p, size_t bytes) {
    return ((uintptr_t)p & (bytes - 1)) == 0;
}

__device__ __forceinline__ float tg_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float tg_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Asynchronous global -> shared copies (cp.async, sm_80+): the copy runs while the block computes
 * on other data. tg_cp_async(dst, src, bytes, ok): bytes in {4, 8, 16}, both addresses aligned to
 * it; ok = 0 zero-fills dst (src must still be a valid address). A group of copies is committed,
 * then waited for with tg_cp_async_wait<n>: until at most n committed groups are in flight (this
 * thread's copies only: a __syncthreads() must follow before other threads read them). */
template <int BYTES>
static __device__ __forceinline__ void tg_cp_async(void *dst, const void *src, int ok) {
    const uint32_t d = (uint32_t)__cvta_generic_to_shared(dst);
    if (BYTES == 16)
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(ok ? 16 : 0));
    else
        asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n" ::"r"(d), "l"(src), "n"(BYTES),
                     "r"(ok ? BYTES : 0));
}
static __device__ __forceinline__ void tg_cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> static __device__ __forceinline__ void tg_cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

#endif
