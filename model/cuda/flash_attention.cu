/* model/cuda/flash_attention.cu — causal self-attention without the T x T matrix (FlashAttention-2
 * style), bf16 in, fp32 accumulation, on the tensor cores through mma.sync m16n8k16 (sm_80+).
 *
 * Layouts: q, k, v are read in place from the qkv projection (B, T, 3C), head h at columns
 * h*HS (+C for k, +2C for v); the output y is written as (B, T, C) — no permutes. lse (B, NH, T)
 * fp32 keeps each row's log2-sum-exp of the scaled scores for backward.
 *
 * Work split: a block of 4 warps takes 64 rows (queries in forward and dQ, keys in dK/dV); each
 * warp owns 16 of them, so softmax statistics never leave a warp (rows live in quads of lanes).
 * The 64-row tiles of the other operand go through shared memory, read with ldmatrix.
 * Backward is two kernels — dK/dV (loop over query tiles) and dQ (loop over key tiles) — which
 * recompute the probabilities instead of accumulating dQ with atomics: every output element is
 * written by one thread in a fixed order, so results are bitwise reproducible.
 *
 * Fragment layouts (PTX ISA, mma.m16n8k16 with .bf16): g = lane / 4, t = lane % 4;
 *   A (16x16, row-major) a0 = (g, 2t..2t+1), a1 = (g+8, 2t..), a2 = (g, 2t+8..), a3 = (g+8, 2t+8..)
 *   B (16x8, k x n)      b0 = (k 2t..2t+1, n g), b1 = (k 2t+8.., n g)
 *   C (16x8, fp32)       c0,c1 = (g, 2t..2t+1), c2,c3 = (g+8, 2t..2t+1)
 * so a C fragment pair of S (two 8-column tiles) is exactly the A fragment of P for the next
 * product (FA2's register reuse). */
#include "model/cuda/ops.cuh"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FA_ROWS 64 /* rows per block and per shared-memory tile */
#define FA_THREADS 128
#define FA_PAD 8 /* bf16 elements of padding per shared row: ldmatrix rows hit distinct banks */

static __device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
                 "{%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Four 8x8 b16 matrices; lanes 8i..8i+7 give the row addresses of matrix i; r[i] = matrix i's
 * fragment: (row lane/4, cols 2(lane%4)..+1), or with .trans (rows 2(lane%4)..+1, col lane/4). */
static __device__ __forceinline__ void ldsm_x4(uint32_t r[4], const tg_bf16 *p) {
    const uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}
static __device__ __forceinline__ void ldsm_x4_t(uint32_t r[4], const tg_bf16 *p) {
    const uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

static __device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi); /* .x (lo) in the low half */
    return *reinterpret_cast<uint32_t *>(&v);
}

static __device__ __forceinline__ uint32_t ld32(const tg_bf16 *p) {
    return *reinterpret_cast<const uint32_t *>(p);
}

/* A fragments (16 rows x HS, k = head dim) of rows row0.. from global rows of stride rs;
 * rows >= T read as zero. */
template <int HS>
static __device__ __forceinline__ void load_a_frags(uint32_t f[HS / 16][4], const tg_bf16 *base,
                                                    size_t rs, int row0, int T) {
    const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int r0 = row0 + g, r1 = row0 + g + 8;
#pragma unroll
    for (int kk = 0; kk < HS / 16; kk++) {
        const int c = kk * 16 + 2 * t;
        f[kk][0] = r0 < T ? ld32(base + (size_t)r0 * rs + c) : 0u;
        f[kk][1] = r1 < T ? ld32(base + (size_t)r1 * rs + c) : 0u;
        f[kk][2] = r0 < T ? ld32(base + (size_t)r0 * rs + c + 8) : 0u;
        f[kk][3] = r1 < T ? ld32(base + (size_t)r1 * rs + c + 8) : 0u;
    }
}

/* sm[64][HS + FA_PAD] <- rows row0..row0+63 (zero past T), 16 bytes per access. */
template <int HS>
static __device__ __forceinline__ void load_tile(tg_bf16 (*sm)[HS + FA_PAD], const tg_bf16 *base, size_t rs,
                                                 int row0, int T) {
    constexpr int CH = HS / 8;
    for (int i = threadIdx.x; i < FA_ROWS * CH; i += FA_THREADS) {
        const int r = i / CH, c = (i % CH) * 8;
        uint4 v = make_uint4(0u, 0u, 0u, 0u);
        if (row0 + r < T) v = *reinterpret_cast<const uint4 *>(base + (size_t)(row0 + r) * rs + c);
        *reinterpret_cast<uint4 *>(&sm[r][c]) = v;
    }
}

/* The same through cp.async (sm_80+): the copy runs while the block computes on the other
 * buffer. Rows past T are zero-filled (source size 0; the address stays valid: row 0). */
template <int HS>
static __device__ __forceinline__ void load_tile_async(tg_bf16 (*sm)[HS + FA_PAD], const tg_bf16 *base,
                                                       size_t rs, int row0, int T) {
    constexpr int CH = HS / 8;
    for (int i = threadIdx.x; i < FA_ROWS * CH; i += FA_THREADS) {
        const int r = i / CH, c = (i % CH) * 8, ok = row0 + r < T;
        tg_cp_async<16>(&sm[r][c], base + (size_t)(ok ? row0 + r : 0) * rs + c, ok);
    }
}
/* 64 floats of a (B*NH, T) row statistic from row0 (zero past T). */
static __device__ __forceinline__ void load_stat_async(float *sm, const float *src, int row0, int T) {
    for (int i = threadIdx.x; i < FA_ROWS; i += FA_THREADS) {
        const int ok = row0 + i < T;
        tg_cp_async<4>(&sm[i], src + (ok ? row0 + i : 0), ok);
    }
}

/* The K and V tiles (rows kt * 64..) of one head, for the loops over key tiles kt = 0..last of
 * the forward and dQ kernels. base: the head's q columns in qkv (k at +C, v at +2C), rows of
 * stride rs. PIPE: kv_tiles_first before the loop starts tile 0's copy; kv_tiles_wait then
 * prefetches tile kt + 1 into the other buffer and waits for tile kt, and the caller ends each
 * iteration with a barrier (its buffer is refilled next). Else plain loads between barriers.
 * Returns the buffer that holds tile kt. */
template <int HS, bool PIPE>
static __device__ __forceinline__ void kv_tiles_first(tg_bf16 (*ks)[FA_ROWS][HS + FA_PAD],
                                                      tg_bf16 (*vs)[FA_ROWS][HS + FA_PAD],
                                                      const tg_bf16 *base, int C, size_t rs, int T) {
    if (!PIPE) return;
    load_tile_async<HS>(ks[0], base + C, rs, 0, T);
    load_tile_async<HS>(vs[0], base + 2 * C, rs, 0, T);
    tg_cp_async_commit();
}
template <int HS, bool PIPE>
static __device__ __forceinline__ int kv_tiles_wait(tg_bf16 (*ks)[FA_ROWS][HS + FA_PAD],
                                                    tg_bf16 (*vs)[FA_ROWS][HS + FA_PAD], const tg_bf16 *base,
                                                    int C, size_t rs, int kt, int last, int T) {
    if (PIPE) {
        const int cur = kt & 1;
        if (kt < last) {
            load_tile_async<HS>(ks[cur ^ 1], base + C, rs, (kt + 1) * FA_ROWS, T);
            load_tile_async<HS>(vs[cur ^ 1], base + 2 * C, rs, (kt + 1) * FA_ROWS, T);
        }
        tg_cp_async_commit(); /* possibly empty: keeps the wait count uniform */
        tg_cp_async_wait<1>(); /* all but the prefetch */
        __syncthreads();
        return cur;
    }
    __syncthreads(); /* every warp is done with the previous tile */
    load_tile<HS>(ks[0], base + C, rs, kt * FA_ROWS, T);
    load_tile<HS>(vs[0], base + 2 * C, rs, kt * FA_ROWS, T);
    __syncthreads();
    return 0;
}

/* acc (16 x 64, 8 column tiles) += A (16 x HS) @ sm^T, sm = 64 rows x HS: S = Q K^T and friends. */
template <int HS>
static __device__ __forceinline__ void mma_abt(float acc[8][4], const uint32_t a[HS / 16][4],
                                               const tg_bf16 (*sm)[HS + FA_PAD]) {
    const int lane = threadIdx.x % 32, mi = lane / 8, r = lane % 8;
#pragma unroll
    for (int kk = 0; kk < HS / 16; kk++) {
#pragma unroll
        for (int np = 0; np < 4; np++) {
            uint32_t b[4];
            ldsm_x4(b, &sm[np * 16 + r + (mi / 2) * 8][kk * 16 + (mi & 1) * 8]);
            mma16816(acc[2 * np], a[kk], b[0], b[1]);
            mma16816(acc[2 * np + 1], a[kk], b[2], b[3]);
        }
    }
}

/* acc (16 x HS) += P (16 x 64, as 8 fp32 column tiles) @ sm, sm = 64 rows x HS: O += P V. */
template <int HS>
static __device__ __forceinline__ void mma_pb(float acc[HS / 8][4], const float p[8][4],
                                              const tg_bf16 (*sm)[HS + FA_PAD]) {
    const int lane = threadIdx.x % 32, mi = lane / 8, r = lane % 8;
#pragma unroll
    for (int j = 0; j < 4; j++) {
        const uint32_t a[4] = {pack_bf16(p[2 * j][0], p[2 * j][1]), pack_bf16(p[2 * j][2], p[2 * j][3]),
                               pack_bf16(p[2 * j + 1][0], p[2 * j + 1][1]),
                               pack_bf16(p[2 * j + 1][2], p[2 * j + 1][3])};
#pragma unroll
        for (int dp = 0; dp < HS / 16; dp++) {
            uint32_t b[4];
            ldsm_x4_t(b, &sm[j * 16 + r + (mi & 1) * 8][dp * 16 + (mi / 2) * 8]);
            mma16816(acc[2 * dp], a, b[0], b[1]);
            mma16816(acc[2 * dp + 1], a, b[2], b[3]);
        }
    }
}

/* Writes a 16 x HS fp32 accumulator * scale as bf16 rows row0.. (< T) of stride rs. */
template <int HS>
static __device__ __forceinline__ void store_rows(tg_bf16 *base, size_t rs, int row0, int T,
                                                  const float acc[HS / 8][4], const float scale[2]) {
    const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        const int row = row0 + g + 8 * rr;
        if (row >= T) continue;
#pragma unroll
        for (int j = 0; j < HS / 8; j++) {
            const uint32_t v = pack_bf16(acc[j][2 * rr] * scale[rr], acc[j][2 * rr + 1] * scale[rr]);
            *reinterpret_cast<uint32_t *>(base + (size_t)row * rs + j * 8 + 2 * t) = v;
        }
    }
}

/* grid (ceil(T/64), B*NH): y, lse <- softmax(q k^T * scale, causal) v. sl2 = scale * log2(e). */
/* PIPE: double-buffered cp.async tiles (the next tile loads during this one's math); else plain
 * loads between two barriers. */
template <int HS, bool PIPE>
__global__ void __launch_bounds__(FA_THREADS)
flash_forward_kernel(tg_bf16 *y, float *lse, const tg_bf16 *qkv, int T, int NH, float sl2) {
    __shared__ __align__(16) tg_bf16 ks_buf[PIPE ? 2 : 1][FA_ROWS][HS + FA_PAD];
    __shared__ __align__(16) tg_bf16 vs_buf[PIPE ? 2 : 1][FA_ROWS][HS + FA_PAD];
    const int nt = (T + FA_ROWS - 1) / FA_ROWS, qt = nt - 1 - (int)blockIdx.x; /* long rows first */
    const int bh = blockIdx.y, b = bh / NH, h = bh % NH, C = NH * HS;
    const size_t rs = 3 * (size_t)C;
    const tg_bf16 *base = qkv + (size_t)b * T * rs + (size_t)h * HS;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int q0 = qt * FA_ROWS + warp * 16;
    uint32_t qf[HS / 16][4];
    float o[HS / 8][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    load_a_frags<HS>(qf, base, rs, q0, T);
#pragma unroll
    for (int j = 0; j < HS / 8; j++) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;

    kv_tiles_first<HS, PIPE>(ks_buf, vs_buf, base, C, rs, T);
    for (int kt = 0; kt <= qt; kt++) {
        const int cur = kv_tiles_wait<HS, PIPE>(ks_buf, vs_buf, base, C, rs, kt, qt, T);
        const tg_bf16(*ks)[HS + FA_PAD] = ks_buf[cur];
        const tg_bf16(*vs)[HS + FA_PAD] = vs_buf[cur];
        float s[8][4];
#pragma unroll
        for (int n = 0; n < 8; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
        mma_abt<HS>(s, qf, ks);
#pragma unroll
        for (int rr = 0; rr < 2; rr++) {
            const int q = q0 + g + 8 * rr;
            float mx = m[rr];
#pragma unroll
            for (int n = 0; n < 8; n++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const int key = kt * FA_ROWS + n * 8 + 2 * t + e;
                    /* key 0 is never masked, so every row's max is finite after tile 0 */
                    const float v = (key > q || key >= T) ? -INFINITY : s[n][2 * rr + e] * sl2;
                    s[n][2 * rr + e] = v;
                    mx = fmaxf(mx, v);
                }
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const float alpha = exp2f(m[rr] - mx);
            float sum = 0.0f;
#pragma unroll
            for (int n = 0; n < 8; n++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const float pv = exp2f(s[n][2 * rr + e] - mx);
                    s[n][2 * rr + e] = pv;
                    sum += pv;
                }
            sum += __shfl_xor_sync(0xffffffffu, sum, 1);
            sum += __shfl_xor_sync(0xffffffffu, sum, 2);
            m[rr] = mx;
            l[rr] = l[rr] * alpha + sum;
#pragma unroll
            for (int j = 0; j < HS / 8; j++) {
                o[j][2 * rr] *= alpha;
                o[j][2 * rr + 1] *= alpha;
            }
        }
        mma_pb<HS>(o, s, vs);
        if (PIPE) __syncthreads(); /* buffer cur is refilled by the next iteration's prefetch */
    }
    const float inv[2] = {1.0f / l[0], 1.0f / l[1]};
    store_rows<HS>(y + (size_t)b * T * C + (size_t)h * HS, (size_t)C, q0, T, o, inv);
    if (t == 0)
        for (int rr = 0; rr < 2; rr++) {
            const int q = q0 + g + 8 * rr;
            if (q < T) lse[(size_t)bh * T + q] = m[rr] + log2f(l[rr]);
        }
}

/* delta (B*NH, T) = rowsum(dy * y) per head: the softmax backward's D. HS/8 threads per row. */
template <int HS>
__global__ void flash_delta_kernel(float *delta, const tg_bf16 *dy, const tg_bf16 *y, int B, int T, int NH) {
    constexpr int TPR = HS / 8;
    const size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x, rows = (size_t)B * T * NH;
    const size_t row = idx / TPR; /* (b, t, h) */
    const int part = (int)(idx % TPR);
    float sum = 0.0f;
    if (row < rows) {
        const size_t off = row * HS + (size_t)part * 8; /* (B, T, NH, HS) == (B, T, C) */
        const uint4 a = *reinterpret_cast<const uint4 *>(dy + off), c = *reinterpret_cast<const uint4 *>(y + off);
        const __nv_bfloat162 *a2 = reinterpret_cast<const __nv_bfloat162 *>(&a);
        const __nv_bfloat162 *c2 = reinterpret_cast<const __nv_bfloat162 *>(&c);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const float2 fa = __bfloat1622float2(a2[i]), fc = __bfloat1622float2(c2[i]);
            sum += fa.x * fc.x + fa.y * fc.y;
        }
    }
    /* TPR consecutive lanes hold one row (TPR divides 32; the block size is a multiple of 32) */
#pragma unroll
    for (int o = TPR / 2; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (row < rows && part == 0) {
        const size_t h = row % NH, bt = row / NH, b = bt / T, t = bt % T;
        delta[(b * NH + h) * T + t] = sum;
    }
}

/* grid (ceil(T/64), B*NH): dk, dv of 64 keys, looping over the query tiles at or after them. */
template <int HS, bool PIPE>
__global__ void __launch_bounds__(FA_THREADS)
flash_backward_dkv_kernel(tg_bf16 *dqkv, const tg_bf16 *dy, const tg_bf16 *qkv, const float *lse,
                          const float *delta, int T, int NH, float scale, float sl2) {
    __shared__ __align__(16) tg_bf16 qs_buf[PIPE ? 2 : 1][FA_ROWS][HS + FA_PAD];
    __shared__ __align__(16) tg_bf16 dos_buf[PIPE ? 2 : 1][FA_ROWS][HS + FA_PAD];
    __shared__ __align__(16) float lse_buf[PIPE ? 2 : 1][FA_ROWS], d_buf[PIPE ? 2 : 1][FA_ROWS];
    const int nt = (T + FA_ROWS - 1) / FA_ROWS, kt = (int)blockIdx.x; /* long loops first */
    const int bh = blockIdx.y, b = bh / NH, h = bh % NH, C = NH * HS;
    const size_t rs = 3 * (size_t)C;
    const tg_bf16 *base = qkv + (size_t)b * T * rs + (size_t)h * HS;
    const tg_bf16 *dybase = dy + (size_t)b * T * C + (size_t)h * HS;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int k0 = kt * FA_ROWS + warp * 16;
    uint32_t kf[HS / 16][4], vf[HS / 16][4];
    float dk[HS / 8][4], dv[HS / 8][4];
    load_a_frags<HS>(kf, base + C, rs, k0, T);
    load_a_frags<HS>(vf, base + 2 * C, rs, k0, T);
#pragma unroll
    for (int j = 0; j < HS / 8; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) dk[j][e] = dv[j][e] = 0.0f;

    if (PIPE) {
        load_tile_async<HS>(qs_buf[0], base, rs, kt * FA_ROWS, T);
        load_tile_async<HS>(dos_buf[0], dybase, (size_t)C, kt * FA_ROWS, T);
        load_stat_async(lse_buf[0], lse + (size_t)bh * T, kt * FA_ROWS, T);
        load_stat_async(d_buf[0], delta + (size_t)bh * T, kt * FA_ROWS, T);
        tg_cp_async_commit();
    }
    for (int qt = kt; qt < nt; qt++) {
        const int cur = PIPE ? ((qt - kt) & 1) : 0;
        if (PIPE) {
            if (qt + 1 < nt) {
                load_tile_async<HS>(qs_buf[cur ^ 1], base, rs, (qt + 1) * FA_ROWS, T);
                load_tile_async<HS>(dos_buf[cur ^ 1], dybase, (size_t)C, (qt + 1) * FA_ROWS, T);
                load_stat_async(lse_buf[cur ^ 1], lse + (size_t)bh * T, (qt + 1) * FA_ROWS, T);
                load_stat_async(d_buf[cur ^ 1], delta + (size_t)bh * T, (qt + 1) * FA_ROWS, T);
            }
            tg_cp_async_commit();
            tg_cp_async_wait<1>(); /* all but the prefetch */
            __syncthreads();
        } else {
            __syncthreads();
            load_tile<HS>(qs_buf[0], base, rs, qt * FA_ROWS, T);
            load_tile<HS>(dos_buf[0], dybase, (size_t)C, qt * FA_ROWS, T);
            for (int i = threadIdx.x; i < FA_ROWS; i += FA_THREADS) {
                const int q = qt * FA_ROWS + i;
                lse_buf[0][i] = q < T ? lse[(size_t)bh * T + q] : 0.0f;
                d_buf[0][i] = q < T ? delta[(size_t)bh * T + q] : 0.0f;
            }
            __syncthreads();
        }
        const tg_bf16(*qs)[HS + FA_PAD] = qs_buf[cur];
        const tg_bf16(*dos)[HS + FA_PAD] = dos_buf[cur];
        const float *lse_s = lse_buf[cur], *d_s = d_buf[cur];
        /* s = S^T (16 keys x 64 queries) -> P^T */
        float s[8][4], dp[8][4];
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[n][e] = dp[n][e] = 0.0f;
        mma_abt<HS>(s, kf, qs);
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int key = k0 + g + 8 * (e >> 1), ql = n * 8 + 2 * t + (e & 1), q = qt * FA_ROWS + ql;
                s[n][e] = (key > q || q >= T || key >= T) ? 0.0f : exp2f(s[n][e] * sl2 - lse_s[ql]);
            }
        mma_pb<HS>(dv, s, dos);   /* dV += P^T dO */
        mma_abt<HS>(dp, vf, dos); /* dP^T = V dO^T */
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[n][e] *= dp[n][e] - d_s[n * 8 + 2 * t + (e & 1)];
        mma_pb<HS>(dk, s, qs); /* dK += dS^T Q (times scale below) */
        if (PIPE) __syncthreads();
    }
    const float one[2] = {1.0f, 1.0f}, sc[2] = {scale, scale};
    store_rows<HS>(dqkv + (size_t)b * T * rs + (size_t)h * HS + C, rs, k0, T, dk, sc);
    store_rows<HS>(dqkv + (size_t)b * T * rs + (size_t)h * HS + 2 * C, rs, k0, T, dv, one);
}

/* grid (ceil(T/64), B*NH): dq of 64 queries, looping over the key tiles at or before them. */
template <int HS, bool PIPE>
__global__ void __launch_bounds__(FA_THREADS)
flash_backward_dq_kernel(tg_bf16 *dqkv, const tg_bf16 *dy, const tg_bf16 *qkv, const float *lse,
                         const float *delta, int T, int NH, float scale, float sl2) {
    __shared__ __align__(16) tg_bf16 ks_buf[PIPE ? 2 : 1][FA_ROWS][HS + FA_PAD];
    __shared__ __align__(16) tg_bf16 vs_buf[PIPE ? 2 : 1][FA_ROWS][HS + FA_PAD];
    const int nt = (T + FA_ROWS - 1) / FA_ROWS, qt = nt - 1 - (int)blockIdx.x;
    const int bh = blockIdx.y, b = bh / NH, h = bh % NH, C = NH * HS;
    const size_t rs = 3 * (size_t)C;
    const tg_bf16 *base = qkv + (size_t)b * T * rs + (size_t)h * HS;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int q0 = qt * FA_ROWS + warp * 16;
    uint32_t qf[HS / 16][4], dof[HS / 16][4];
    float dq[HS / 8][4], lr[2], dr[2];
    load_a_frags<HS>(qf, base, rs, q0, T);
    load_a_frags<HS>(dof, dy + (size_t)b * T * C + (size_t)h * HS, (size_t)C, q0, T);
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        const int q = q0 + g + 8 * rr;
        lr[rr] = q < T ? lse[(size_t)bh * T + q] : 0.0f;
        dr[rr] = q < T ? delta[(size_t)bh * T + q] : 0.0f;
    }
#pragma unroll
    for (int j = 0; j < HS / 8; j++) dq[j][0] = dq[j][1] = dq[j][2] = dq[j][3] = 0.0f;

    kv_tiles_first<HS, PIPE>(ks_buf, vs_buf, base, C, rs, T);
    for (int kt = 0; kt <= qt; kt++) {
        const int cur = kv_tiles_wait<HS, PIPE>(ks_buf, vs_buf, base, C, rs, kt, qt, T);
        const tg_bf16(*ks)[HS + FA_PAD] = ks_buf[cur];
        const tg_bf16(*vs)[HS + FA_PAD] = vs_buf[cur];
        float s[8][4], dp[8][4];
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[n][e] = dp[n][e] = 0.0f;
        mma_abt<HS>(s, qf, ks);  /* S = Q K^T */
        mma_abt<HS>(dp, dof, vs); /* dP = dO V^T */
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int rr = e >> 1, q = q0 + g + 8 * rr, key = kt * FA_ROWS + n * 8 + 2 * t + (e & 1);
                const float p = (key > q || key >= T || q >= T) ? 0.0f : exp2f(s[n][e] * sl2 - lr[rr]);
                s[n][e] = p * (dp[n][e] - dr[rr]);
            }
        mma_pb<HS>(dq, s, ks); /* dQ += dS K */
        if (PIPE) __syncthreads();
    }
    const float sc[2] = {scale, scale};
    store_rows<HS>(dqkv + (size_t)b * T * rs + (size_t)h * HS, rs, q0, T, dq, sc);
}

int tg_cuda_flash_supported(int HS) { return HS == 16 || HS == 32 || HS == 64; }

template <int HS>
static tg_status flash_forward(tg_bf16 *y, float *lse, const tg_bf16 *qkv, int B, int T, int NH, bool pipe,
                               cudaStream_t s, tg_error *err) {
    tg_status st = TG_OK;
    const dim3 grid((unsigned)((T + FA_ROWS - 1) / FA_ROWS), (unsigned)(B * NH));
    const float sl2 = (float)(1.4426950408889634 / sqrt((double)HS));
    if (pipe) flash_forward_kernel<HS, true><<<grid, FA_THREADS, 0, s>>>(y, lse, qkv, T, NH, sl2);
    else flash_forward_kernel<HS, false><<<grid, FA_THREADS, 0, s>>>(y, lse, qkv, T, NH, sl2);
    TG_CUDA_LAUNCH_CHECK(err);
cleanup:
    return st;
}

template <int HS>
static tg_status flash_backward(tg_bf16 *dqkv, float *delta, const tg_bf16 *dy, const tg_bf16 *y,
                                const tg_bf16 *qkv, const float *lse, int B, int T, int NH, bool pipe,
                                cudaStream_t s, tg_error *err) {
    tg_status st = TG_OK;
    const dim3 grid((unsigned)((T + FA_ROWS - 1) / FA_ROWS), (unsigned)(B * NH));
    const double scale = 1.0 / sqrt((double)HS);
    const float sl2 = (float)(1.4426950408889634 * scale);
    const size_t threads = (size_t)B * T * NH * (HS / 8);
    flash_delta_kernel<HS><<<(unsigned)((threads + 255) / 256), 256, 0, s>>>(delta, dy, y, B, T, NH);
    TG_CUDA_LAUNCH_CHECK(err);
    if (pipe) {
        flash_backward_dkv_kernel<HS, true><<<grid, FA_THREADS, 0, s>>>(dqkv, dy, qkv, lse, delta, T, NH,
                                                                        (float)scale, sl2);
        TG_CUDA_LAUNCH_CHECK(err);
        flash_backward_dq_kernel<HS, true><<<grid, FA_THREADS, 0, s>>>(dqkv, dy, qkv, lse, delta, T, NH,
                                                                       (float)scale, sl2);
    } else {
        flash_backward_dkv_kernel<HS, false><<<grid, FA_THREADS, 0, s>>>(dqkv, dy, qkv, lse, delta, T, NH,
                                                                         (float)scale, sl2);
        TG_CUDA_LAUNCH_CHECK(err);
        flash_backward_dq_kernel<HS, false><<<grid, FA_THREADS, 0, s>>>(dqkv, dy, qkv, lse, delta, T, NH,
                                                                        (float)scale, sl2);
    }
    TG_CUDA_LAUNCH_CHECK(err);
cleanup:
    return st;
}

/* pipe: the cp.async double-buffered kernels (the product's); without it the plain ones, which do
 * the same arithmetic (the same bits) and serve tests as the reference for the pipelining. */
static tg_status flash_forward_any(tg_bf16 *y, float *lse, const tg_bf16 *qkv, int B, int T, int C, int NH,
                                   bool pipe, cudaStream_t s, tg_error *err) {
    tg_status st = TG_OK;
    switch (C / NH) {
    case 16: TG_TRY(flash_forward<16>(y, lse, qkv, B, T, NH, pipe, s, err)); break;
    case 32: TG_TRY(flash_forward<32>(y, lse, qkv, B, T, NH, pipe, s, err)); break;
    case 64: TG_TRY(flash_forward<64>(y, lse, qkv, B, T, NH, pipe, s, err)); break;
    default: TG_FAIL(err, TG_ERR_ARG, "flash attention: head size %d not supported (16, 32, 64)", C / NH);
    }
cleanup:
    return st;
}

static tg_status flash_backward_any(tg_bf16 *dqkv, float *delta, const tg_bf16 *dy, const tg_bf16 *y,
                                    const tg_bf16 *qkv, const float *lse, int B, int T, int C, int NH, bool pipe,
                                    cudaStream_t s, tg_error *err) {
    tg_status st = TG_OK;
    switch (C / NH) {
    case 16: TG_TRY(flash_backward<16>(dqkv, delta, dy, y, qkv, lse, B, T, NH, pipe, s, err)); break;
    case 32: TG_TRY(flash_backward<32>(dqkv, delta, dy, y, qkv, lse, B, T, NH, pipe, s, err)); break;
    case 64: TG_TRY(flash_backward<64>(dqkv, delta, dy, y, qkv, lse, B, T, NH, pipe, s, err)); break;
    default: TG_FAIL(err, TG_ERR_ARG, "flash attention: head size %d not supported (16, 32, 64)", C / NH);
    }
cleanup:
    return st;
}

tg_status tg_cuda_flash_attention_forward(tg_bf16 *y, float *lse, const tg_bf16 *qkv, int B, int T,
                                          int C, int NH, cudaStream_t s, tg_error *err) {
    return flash_forward_any(y, lse, qkv, B, T, C, NH, true, s, err);
}

tg_status tg_cuda_flash_attention_backward(tg_bf16 *dqkv, float *delta, const tg_bf16 *dy,
                                           const tg_bf16 *y, const tg_bf16 *qkv, const float *lse,
                                           int B, int T, int C, int NH, cudaStream_t s, tg_error *err) {
    return flash_backward_any(dqkv, delta, dy, y, qkv, lse, B, T, C, NH, true, s, err);
}

tg_status tg_cuda_flash_attention_forward_plain(tg_bf16 *y, float *lse, const tg_bf16 *qkv, int B, int T, int C,
                                                int NH, cudaStream_t s, tg_error *err) {
    return flash_forward_any(y, lse, qkv, B, T, C, NH, false, s, err);
}

tg_status tg_cuda_flash_attention_backward_plain(tg_bf16 *dqkv, float *delta, const tg_bf16 *dy, const tg_bf16 *y,
                                                 const tg_bf16 *qkv, const float *lse, int B, int T, int C, int NH,
                                                 cudaStream_t s, tg_error *err) {
    return flash_backward_any(dqkv, delta, dy, y, qkv, lse, B, T, C, NH, false, s, err);
}
