/* model/cuda/layernorm.cu — LayerNorm fused with the residual add, its recompute, and its
 * backward (which adds into the residual-stream gradient). One warp per row; the weight and
 * bias gradients are column reductions without atomics (deterministic).
 *
 * Activation rows are moved as VEC-element vectors (16 bytes) when the buffers are aligned and
 * C % VEC == 0 (checked by the launchers; VEC = 1 is the scalar fallback of the same kernels).
 * w and bias sit at arbitrary offsets of the flat parameter buffer, so every block first stages
 * them as fp32 in shared memory with scalar loads. */
#include "model/cuda/ops.cuh"

#define TG_LN_EPS 1e-5f
#define TG_LN_MAX_WARPS 8      /* warps per block of the row kernels */
#define TG_LN_MAX_BLOCKS 1024  /* grid cap of the row kernels: staging w/bias stays negligible */
#define TG_LN_BWD_WARPS 4096   /* backward: blocks * warps (= the number of dw/db partials * W) */
#define TG_LN_SMEM 49152       /* default dynamic shared-memory limit per block */
/* Backward register kernel: ~170 registers a thread at C = 768 bf16; 4-warp blocks, 3 per SM
 * (12 warps, each with 9 16-byte loads of a row in flight) without spilling; 2 per SM at NV = 4. */
#define TG_LN_REG_THREADS 128

/* d[0..VEC) = p[0..VEC) from shared memory, 16 bytes at a time where VEC allows. */
template <int VEC> __device__ __forceinline__ void lds_f32(float (&d)[VEC], const float *p) {
    if constexpr (VEC % 4 == 0) {
#pragma unroll
        for (int k = 0; k < VEC / 4; k++) {
            const float4 t = ((const float4 *)p)[k];
            d[4 * k] = t.x;
            d[4 * k + 1] = t.y;
            d[4 * k + 2] = t.z;
            d[4 * k + 3] = t.w;
        }
    } else {
#pragma unroll
        for (int j = 0; j < VEC; j++) d[j] = p[j];
    }
}

/* Shared memory: ws, bs (C floats each: w, bias), then one row cache of C X per warp.
 * res = a + b (b may be NULL: x = a), out = (x - mean) * rstd * w + bias. Warp per row; a lane
 * always handles the same vectors of a row, so it reads back from the cache only what it wrote
 * (no barrier needed). */
template <typename X, int VEC>
__global__ void __launch_bounds__(TG_CUDA_THREADS)
residual_layernorm_kernel(X *__restrict__ res, X *__restrict__ out, float *__restrict__ mean,
                          float *__restrict__ rstd, const X *__restrict__ a,
                          const X *__restrict__ b, const X *__restrict__ w,
                          const X *__restrict__ bias, int N, int C) {
    typedef tg_vec<X, VEC> V;
    extern __shared__ float smem[];
    const int W = blockDim.x / 32, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int nvec = C / VEC;
    float *ws = smem, *bs = smem + C;
    V *xs = (V *)((X *)(smem + 2 * C) + (size_t)warp * C);
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        ws[c] = tg_to_f32(w[c]);
        bs[c] = tg_to_f32(bias[c]);
    }
    __syncthreads();
    for (int row = blockIdx.x * W + warp; row < N; row += gridDim.x * W) {
        const size_t off = (size_t)row * C;
        const V *ap = (const V *)(a + off), *bp = b ? (const V *)(b + off) : NULL;
        V *rp = b ? (V *)(res + off) : NULL, *op = (V *)(out + off);
        float sum = 0.0f;
#pragma unroll 4
        for (int v = lane; v < nvec; v += 32) {
            V xv = ap[v];
            if (b) { /* the LayerNorm input is the rounded residual (what backward reads back) */
                const V bv = bp[v];
#pragma unroll
                for (int j = 0; j < VEC; j++)
                    xv.v[j] = tg_from_f32<X>(tg_to_f32(xv.v[j]) + tg_to_f32(bv.v[j]));
                rp[v] = xv;
            }
            xs[v] = xv;
#pragma unroll
            for (int j = 0; j < VEC; j++) sum += tg_to_f32(xv.v[j]);
        }
        const float mu = tg_warp_sum(sum) / C;
        float var = 0.0f;
        for (int v = lane; v < nvec; v += 32) {
            const V xv = xs[v];
#pragma unroll
            for (int j = 0; j < VEC; j++) {
                const float d = tg_to_f32(xv.v[j]) - mu;
                var += d * d;
            }
        }
        const float rs = 1.0f / sqrtf(tg_warp_sum(var) / C + TG_LN_EPS);
#pragma unroll 4
        for (int v = lane; v < nvec; v += 32) {
            const V xv = xs[v];
            float wv[VEC], bv[VEC];
            lds_f32<VEC>(wv, ws + v * VEC);
            lds_f32<VEC>(bv, bs + v * VEC);
            V o;
#pragma unroll
            for (int j = 0; j < VEC; j++)
                o.v[j] = tg_from_f32<X>((tg_to_f32(xv.v[j]) - mu) * rs * wv[j] + bv[j]);
            op[v] = o;
        }
        if (lane == 0) {
            mean[row] = mu;
            rstd[row] = rs;
        }
    }
}

/* Elementwise over N*C/VEC vectors; shared memory: ws, bs (C floats each). */
template <typename X, int VEC>
__global__ void __launch_bounds__(TG_CUDA_THREADS)
layernorm_apply_kernel(X *__restrict__ out, const X *__restrict__ x,
                       const float *__restrict__ mean, const float *__restrict__ rstd,
                       const X *__restrict__ w, const X *__restrict__ bias, int N, int C) {
    typedef tg_vec<X, VEC> V;
    extern __shared__ float smem[];
    const int nvec = C / VEC;
    const size_t n = (size_t)N * nvec;
    float *ws = smem, *bs = smem + C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        ws[c] = tg_to_f32(w[c]);
        bs[c] = tg_to_f32(bias[c]);
    }
    __syncthreads();
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const size_t row = i / nvec;
        const int c = (int)(i - row * nvec) * VEC;
        const V xv = ((const V *)x)[i];
        const float mu = mean[row], rs = rstd[row];
        float wv[VEC], bv[VEC];
        lds_f32<VEC>(wv, ws + c);
        lds_f32<VEC>(bv, bs + c);
        V o;
#pragma unroll
        for (int j = 0; j < VEC; j++)
            o.v[j] = tg_from_f32<X>((tg_to_f32(xv.v[j]) - mu) * rs * wv[j] + bv[j]);
        ((V *)out)[i] = o;
    }
}

/* Fused backward. Block b takes the tiles of W consecutive rows t = b, b + grid, ...; per tile:
 *  1. warp per row: dx += rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm)),
 *     dnorm = dout * w; the row's dout, x and dx are all loaded at once (one memory latency
 *     per tile) into a shared-memory cache;
 *  2. barrier; thread per column vector: acc += sum over the tile's rows (in row order) of
 *     dout * norm and dout, read from the cache; barrier (the cache is reused).
 * Each column of acc belongs to one thread for the whole kernel, so acc needs no atomics; the
 * block finally writes partial[b][0][c] = sum dout*norm, partial[b][1][c] = sum dout, and the
 * finish kernel adds the blocks in order: bitwise reproducible.
 * Shared memory: ws (C), acc (2C), stat (16: mean, rstd of the tile's rows) floats, then per
 * warp a dout, an x and a dx row (3C X). */
template <typename X, int VEC>
__global__ void __launch_bounds__(TG_CUDA_THREADS)
layernorm_backward_kernel(X *__restrict__ dx, float *__restrict__ partial,
                          const X *__restrict__ dout, const X *__restrict__ x,
                          const float *__restrict__ mean, const float *__restrict__ rstd,
                          const X *__restrict__ w, int N, int C) {
    typedef tg_vec<X, VEC> V;
    extern __shared__ float smem[];
    const int W = blockDim.x / 32, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int nvec = C / VEC, ntiles = (N + W - 1) / W;
    float *ws = smem, *acc = smem + C, *stat = smem + 3 * C;
    X *cache = (X *)(smem + 3 * C + 2 * TG_LN_MAX_WARPS);
    V *dc = (V *)(cache + (size_t)warp * 3 * C), *xc = (V *)(cache + (size_t)warp * 3 * C + C);
    V *oc = (V *)(cache + (size_t)warp * 3 * C + 2 * C);
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        ws[c] = tg_to_f32(w[c]);
        acc[c] = 0.0f;
        acc[C + c] = 0.0f;
    }
    __syncthreads();
    for (int tile = blockIdx.x; tile < ntiles; tile += gridDim.x) {
        const int row = tile * W + warp;
        if (row < N) {
            const size_t off = (size_t)row * C;
            const float mu = mean[row], rs = rstd[row];
            const V *dp = (const V *)(dout + off), *xp = (const V *)(x + off);
            V *dxp = (V *)(dx + off);
            float s1 = 0.0f, s2 = 0.0f;
#pragma unroll 4
            for (int v = lane; v < nvec; v += 32) {
                const V dv = dp[v], xv = xp[v];
                dc[v] = dv;
                xc[v] = xv;
                oc[v] = dxp[v];
                float wv[VEC];
                lds_f32<VEC>(wv, ws + v * VEC);
#pragma unroll
                for (int j = 0; j < VEC; j++) {
                    const float n = (tg_to_f32(xv.v[j]) - mu) * rs;
                    const float dn = tg_to_f32(dv.v[j]) * wv[j];
                    s1 += dn;
                    s2 += dn * n;
                }
            }
            const float m1 = tg_warp_sum(s1) / C, m2 = tg_warp_sum(s2) / C;
#pragma unroll 4
            for (int v = lane; v < nvec; v += 32) { /* the lane's own cache entries */
                const V dv = dc[v], xv = xc[v];
                V o = oc[v];
                float wv[VEC];
                lds_f32<VEC>(wv, ws + v * VEC);
#pragma unroll
                for (int j = 0; j < VEC; j++) {
                    const float n = (tg_to_f32(xv.v[j]) - mu) * rs;
                    const float dn = tg_to_f32(dv.v[j]) * wv[j];
                    o.v[j] = tg_from_f32<X>(tg_to_f32(o.v[j]) + (dn - m1 - n * m2) * rs);
                }
                dxp[v] = o;
            }
            if (lane == 0) {
                stat[warp] = mu;
                stat[TG_LN_MAX_WARPS + warp] = rs;
            }
        }
        __syncthreads(); /* cache and stat of all rows of the tile written */
        const int rows = min(W, N - tile * W);
        for (int v = threadIdx.x; v < nvec; v += blockDim.x) {
            float aw[VEC], ab[VEC];
#pragma unroll
            for (int j = 0; j < VEC; j++) aw[j] = ab[j] = 0.0f;
            for (int r = 0; r < rows; r++) {
                const V dv = ((const V *)(cache + (size_t)r * 3 * C))[v];
                const V xv = ((const V *)(cache + (size_t)r * 3 * C + C))[v];
                const float mu = stat[r], rs = stat[TG_LN_MAX_WARPS + r];
#pragma unroll
                for (int j = 0; j < VEC; j++) {
                    const float d = tg_to_f32(dv.v[j]);
                    aw[j] += d * ((tg_to_f32(xv.v[j]) - mu) * rs);
                    ab[j] += d;
                }
            }
#pragma unroll
            for (int j = 0; j < VEC; j++) {
                acc[v * VEC + j] += aw[j];
                acc[C + v * VEC + j] += ab[j];
            }
        }
        __syncthreads(); /* the cache is overwritten by the next tile; acc read below */
    }
    float *pb = partial + (size_t)blockIdx.x * 2 * C;
    for (int i = threadIdx.x; i < 2 * C; i += blockDim.x) pb[i] = acc[i];
}

/* The backward for rows of at most 32 NV vectors (C <= 1024 in bf16): no row cache and no
 * barrier per row. Warp g of G takes rows g, g + G, ...; lane l always handles the vectors
 * v = l + 32 k (k < NV) of a row, so it accumulates their dw = sum dout * norm and db = sum dout
 * (and, with SUM, dsum = sum of the updated dx: the bias gradient of the projection that fed
 * this residual) across its rows in registers. (Accumulating in shared memory instead, for more
 * blocks per SM, is no faster on an H200.) At the end the block's W
 * warps are added in warp order through shared memory into partial[block][parts C]:
 * deterministic. Shared memory: ws (C floats), then red: W x C floats (one part at a time). */
template <typename X, int VEC, int NV, bool SUM>
__global__ void __launch_bounds__(TG_LN_REG_THREADS, NV >= 4 ? 2 : 3)
layernorm_backward_reg_kernel(X *__restrict__ dx, float *__restrict__ partial,
                              const X *__restrict__ dout, const X *__restrict__ x,
                              const float *__restrict__ mean, const float *__restrict__ rstd,
                              const X *__restrict__ w, int N, int C) {
    typedef tg_vec<X, VEC> V;
    extern __shared__ float smem[];
    const int W = blockDim.x / 32, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int G = gridDim.x * W, nvec = C / VEC, parts = SUM ? 3 : 2;
    float *ws = smem, *red = smem + C;
    float aw[NV][VEC], ab[NV][VEC], ao[SUM ? NV : 1][VEC];
#pragma unroll
    for (int k = 0; k < NV; k++)
#pragma unroll
        for (int j = 0; j < VEC; j++) aw[k][j] = ab[k][j] = ao[SUM ? k : 0][j] = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) ws[c] = tg_to_f32(w[c]);
    __syncthreads();
    for (int row = blockIdx.x * W + warp; row < N; row += G) {
        const size_t off = (size_t)row * C;
        const V *dp = (const V *)(dout + off), *xp = (const V *)(x + off);
        V *dxp = (V *)(dx + off);
        const float mu = mean[row], rs = rstd[row];
        V dv[NV], xv[NV], ov[NV];
#pragma unroll
        for (int k = 0; k < NV; k++) { /* every load of the row in flight at once */
            const int v = lane + 32 * k;
            if (v < nvec) {
                dv[k] = dp[v];
                xv[k] = xp[v];
                ov[k] = dxp[v];
            }
        }
        float s1 = 0.0f, s2 = 0.0f;
#pragma unroll
        for (int k = 0; k < NV; k++) {
            const int v = lane + 32 * k;
            if (v < nvec) {
                float wv[VEC];
                lds_f32<VEC>(wv, ws + v * VEC);
#pragma unroll
                for (int j = 0; j < VEC; j++) {
                    const float n = (tg_to_f32(xv[k].v[j]) - mu) * rs;
                    const float dn = tg_to_f32(dv[k].v[j]) * wv[j];
                    s1 += dn;
                    s2 += dn * n;
                }
            }
        }
        const float m1 = tg_warp_sum(s1) / C, m2 = tg_warp_sum(s2) / C;
#pragma unroll
        for (int k = 0; k < NV; k++) {
            const int v = lane + 32 * k;
            if (v < nvec) {
                float wv[VEC];
                lds_f32<VEC>(wv, ws + v * VEC);
#pragma unroll
                for (int j = 0; j < VEC; j++) {
                    const float d = tg_to_f32(dv[k].v[j]);
                    const float n = (tg_to_f32(xv[k].v[j]) - mu) * rs;
                    const X o = tg_from_f32<X>(tg_to_f32(ov[k].v[j]) + (d * wv[j] - m1 - n * m2) * rs);
                    ov[k].v[j] = o;
                    aw[k][j] += d * n;
                    ab[k][j] += d;
                    if (SUM) ao[SUM ? k : 0][j] += tg_to_f32(o); /* the stored (rounded) dx */
                }
                dxp[v] = ov[k];
            }
        }
    }
    /* partial[block] = sum over the block's warps in warp order */
    float *pb = partial + (size_t)blockIdx.x * parts * C;
    for (int part = 0; part < parts; part++) { /* one part at a time through red */
        __syncthreads();                        /* red is free */
#pragma unroll
        for (int k = 0; k < NV; k++) {
            const int v = lane + 32 * k;
            if (v < nvec)
#pragma unroll
                for (int j = 0; j < VEC; j++)
                    red[(size_t)warp * C + v * VEC + j] =
                        part == 0 ? aw[k][j] : part == 1 ? ab[k][j] : ao[SUM ? k : 0][j];
        }
        __syncthreads();
        for (int c = threadIdx.x; c < C; c += blockDim.x) {
            float t = 0.0f;
            for (int q = 0; q < W; q++) t += red[(size_t)q * C + c];
            pb[(size_t)part * C + c] = t;
        }
    }
}

/* Warps per block such that fixed + W * per_warp bytes of shared memory fit the default limit
 * (at least 1; the launch raises the limit when even one warp does not fit). */
static int ln_warps(size_t fixed, size_t per_warp) {
    int W = TG_LN_MAX_WARPS;
    while (W > 1 && fixed + W * per_warp > TG_LN_SMEM) W--;
    return W;
}

/* Allows `bytes` of dynamic shared memory for kernel when over the default. */
template <typename K> static cudaError_t ln_allow_smem(K kernel, size_t bytes) {
    if (bytes <= TG_LN_SMEM) return cudaSuccess;
    return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
}

static unsigned int ln_blocks(int N, int W) {
    const int b = (N + W - 1) / W;
    return (unsigned int)(b < 1 ? 1 : b > TG_LN_MAX_BLOCKS ? TG_LN_MAX_BLOCKS : b);
}

template <typename X, int VEC>
static tg_status launch_forward(X *res, X *out, float *mean, float *rstd, const X *a, const X *b,
                                const X *w, const X *bias, int N, int C, cudaStream_t s,
                                tg_error *err) {
    tg_status st = TG_OK;
    const size_t fixed = (size_t)2 * C * sizeof(float), per_warp = (size_t)C * sizeof(X);
    const int W = ln_warps(fixed, per_warp);
    const size_t smem = fixed + W * per_warp;
    TG_CUDA_CHECK(err, ln_allow_smem(residual_layernorm_kernel<X, VEC>, smem));
    residual_layernorm_kernel<X, VEC><<<ln_blocks(N, W), 32 * W, smem, s>>>(res, out, mean, rstd, a, b, w, bias, N, C);
    TG_CUDA_LAUNCH_CHECK(err);
cleanup:
    return st;
}

template <typename X>
tg_status tg_cuda_residual_layernorm_forward(X *res, X *out, float *mean, float *rstd,
                                             const X *a, const X *b, const X *w, const X *bias,
                                             int N, int C, cudaStream_t s, tg_error *err) {
    const int V = TG_VEC16(X);
    if (N <= 0 || C <= 0) return TG_OK;
    if (C % V == 0 && tg_aligned(out, 16) && tg_aligned(a, 16) &&
        (!b || (tg_aligned(b, 16) && tg_aligned(res, 16))))
        return launch_forward<X, TG_VEC16(X)>(res, out, mean, rstd, a, b, w, bias, N, C, s, err);
    return launch_forward<X, 1>(res, out, mean, rstd, a, b, w, bias, N, C, s, err);
}

template <typename X, int VEC>
static tg_status launch_apply(X *out, const X *x, const float *mean, const float *rstd,
                              const X *w, const X *bias, int N, int C, cudaStream_t s,
                              tg_error *err) {
    tg_status st = TG_OK;
    const size_t smem = (size_t)2 * C * sizeof(float);
    const size_t n = (size_t)N * (C / VEC);
    unsigned int blocks = tg_cuda_blocks(n);
    if (blocks > TG_LN_MAX_BLOCKS) blocks = TG_LN_MAX_BLOCKS;
    TG_CUDA_CHECK(err, ln_allow_smem(layernorm_apply_kernel<X, VEC>, smem));
    layernorm_apply_kernel<X, VEC><<<blocks, TG_CUDA_THREADS, smem, s>>>(out, x, mean, rstd, w, bias, N, C);
    TG_CUDA_LAUNCH_CHECK(err);
cleanup:
    return st;
}

template <typename X>
tg_status tg_cuda_layernorm_apply(X *out, const X *x, const float *mean, const float *rstd,
                                  const X *w, const X *bias, int N, int C, cudaStream_t s,
                                  tg_error *err) {
    if (N <= 0 || C <= 0) return TG_OK;
    if (C % TG_VEC16(X) == 0 && tg_aligned(out, 16) && tg_aligned(x, 16))
        return launch_apply<X, TG_VEC16(X)>(out, x, mean, rstd, w, bias, N, C, s, err);
    return launch_apply<X, 1>(out, x, mean, rstd, w, bias, N, C, s, err);
}

template <typename X, int VEC>
static tg_status launch_backward(X *dx, float *dw, float *db, float *dsum, float *partial,
                                 const X *dout, const X *x, const float *mean, const float *rstd,
                                 const X *w, int N, int C, cudaStream_t s, tg_error *err) {
    tg_status st = TG_OK;
    const size_t fixed = (size_t)(3 * C + 2 * TG_LN_MAX_WARPS) * sizeof(float);
    const size_t per_warp = (size_t)3 * C * sizeof(X);
    const int W = ln_warps(fixed, per_warp);
    const size_t smem = fixed + W * per_warp;
    /* Grid (= number of partials): TG_LN_BWD_WARPS warps in flight, within the partial buffer.
     * It depends only on N, C and X, so the summation order is the same on every device. */
    int chunks = (N + W - 1) / W;
    if (chunks > TG_LN_BWD_WARPS / W) chunks = TG_LN_BWD_WARPS / W;
    if (chunks > TG_CUDA_COL_CHUNKS) chunks = TG_CUDA_COL_CHUNKS;
    TG_CUDA_CHECK(err, ln_allow_smem(layernorm_backward_kernel<X, VEC>, smem));
    layernorm_backward_kernel<X, VEC><<<chunks, 32 * W, smem, s>>>(dx, partial, dout, x, mean, rstd, w, N, C);
    TG_CUDA_LAUNCH_CHECK(err);
    {
        float *const outs[3] = {dw, db, NULL};
        TG_TRY(tg_cuda_column_sum_finish(outs, partial, chunks, C, 2, s, err));
    }
    /* this kernel has no column sums of dx: a separate pass (after the finish: partial is free) */
    if (dsum) TG_TRY(tg_cuda_bias_backward<X>(dsum, partial, dx, N, C, s, err));
cleanup:
    return st;
}

/* Blocks of the register kernel: 4 rows per warp at least, at most TG_LN_REG_BLOCKS (enough to
 * fill the device; the (blocks, 3C) partials stay in the TG_CUDA_COL_CHUNKS x 4C buffer).
 * Depends only on N: the summation order is the same on every device. */
#define TG_LN_REG_BLOCKS 1024
template <typename X, int VEC, int NV>
static tg_status launch_backward_reg(X *dx, float *dw, float *db, float *dsum, float *partial,
                                     const X *dout, const X *x, const float *mean,
                                     const float *rstd, const X *w, int N, int C, cudaStream_t s,
                                     tg_error *err) {
    tg_status st = TG_OK;
    const int W = TG_LN_REG_THREADS / 32, parts = dsum ? 3 : 2;
    const size_t smem = (size_t)(1 + W) * C * sizeof(float);
    int blocks = (N + 4 * W - 1) / (4 * W);
    if (blocks > TG_LN_REG_BLOCKS) blocks = TG_LN_REG_BLOCKS;
    if (blocks < 1) blocks = 1;
    if (dsum) {
        TG_CUDA_CHECK(err, ln_allow_smem(layernorm_backward_reg_kernel<X, VEC, NV, true>, smem));
        layernorm_backward_reg_kernel<X, VEC, NV, true><<<blocks, TG_LN_REG_THREADS, smem, s>>>(
            dx, partial, dout, x, mean, rstd, w, N, C);
    } else {
        TG_CUDA_CHECK(err, ln_allow_smem(layernorm_backward_reg_kernel<X, VEC, NV, false>, smem));
        layernorm_backward_reg_kernel<X, VEC, NV, false><<<blocks, TG_LN_REG_THREADS, smem, s>>>(
            dx, partial, dout, x, mean, rstd, w, N, C);
    }
    TG_CUDA_LAUNCH_CHECK(err);
    {
        float *const outs[3] = {dw, db, dsum};
        TG_TRY(tg_cuda_column_sum_finish(outs, partial, blocks, C, parts, s, err));
    }
cleanup:
    return st;
}

/* The register kernel where a row is at most 4 x 32 vectors; else the row-cache kernel. */
template <typename X, int VEC>
static tg_status dispatch_backward(X *dx, float *dw, float *db, float *dsum, float *partial,
                                   const X *dout, const X *x, const float *mean, const float *rstd,
                                   const X *w, int N, int C, cudaStream_t s, tg_error *err) {
    const int nv = (C / VEC + 31) / 32;
    if (nv == 1) return launch_backward_reg<X, VEC, 1>(dx, dw, db, dsum, partial, dout, x, mean, rstd, w, N, C, s, err);
    if (nv == 2) return launch_backward_reg<X, VEC, 2>(dx, dw, db, dsum, partial, dout, x, mean, rstd, w, N, C, s, err);
    if (nv == 3) return launch_backward_reg<X, VEC, 3>(dx, dw, db, dsum, partial, dout, x, mean, rstd, w, N, C, s, err);
    if (nv == 4) return launch_backward_reg<X, VEC, 4>(dx, dw, db, dsum, partial, dout, x, mean, rstd, w, N, C, s, err);
    return launch_backward<X, VEC>(dx, dw, db, dsum, partial, dout, x, mean, rstd, w, N, C, s, err);
}

template <typename X>
tg_status tg_cuda_layernorm_backward(X *dx, float *dw, float *db, float *dsum, float *partial,
                                     const X *dout, const X *x, const float *mean,
                                     const float *rstd, const X *w, int N, int C, cudaStream_t s,
                                     tg_error *err) {
    if (N <= 0 || C <= 0) return TG_OK;
    if (C % TG_VEC16(X) == 0 && tg_aligned(dx, 16) && tg_aligned(dout, 16) && tg_aligned(x, 16))
        return dispatch_backward<X, TG_VEC16(X)>(dx, dw, db, dsum, partial, dout, x, mean, rstd, w, N,
                                                 C, s, err);
    return dispatch_backward<X, 1>(dx, dw, db, dsum, partial, dout, x, mean, rstd, w, N, C, s, err);
}

#define TG_INSTANTIATE(X)                                                                      \
    template tg_status tg_cuda_residual_layernorm_forward<X>(                                  \
        X *, X *, float *, float *, const X *, const X *, const X *, const X *, int, int,      \
        cudaStream_t, tg_error *);                                                             \
    template tg_status tg_cuda_layernorm_apply<X>(X *, const X *, const float *, const float *, \
                                                  const X *, const X *, int, int, cudaStream_t, \
                                                  tg_error *);                                  \
    template tg_status tg_cuda_layernorm_backward<X>(X *, float *, float *, float *, float *,   \
                                                     const X *, const X *, const float *,       \
                                                     const float *, const X *, int, int,        \
                                                     cudaStream_t, tg_error *);
TG_INSTANTIATE(float)
TG_INSTANTIATE(tg_bf16)
