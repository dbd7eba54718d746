/* model/cpu/cpu_gemm.c — the packed, blocked fp32 GEMM of the CPU backend (see cpu_kernels.h).
 *
 * BLIS-style: C is cut into MC x NC tiles shared out to threads; per tile, k runs in GEMM_KC
 * chunks in order, the A block (MC x kc) and B block (kc x NC) are packed into MR-row and NR-column
 * slivers (zero padded), and a register micro-kernel sums one sliver pair along k. Each C element
 * is base + (sum of chunk 0) then + (sum of chunk 1) ..., every chunk summed in k order: the
 * arithmetic depends on the ISA path but never on the tile-to-thread split, so results are bitwise
 * the same for any thread count. */
#include "model/cpu/cpu_kernels.h"

#include <immintrin.h>
#include <string.h>

#define GEMM_KC 256
#define GEMM_MC 192 /* largest row block; a multiple of every MR (4, 6, 8) */
#define GEMM_NC 128 /* column block; a multiple of every NR (8, 16, 32) */
#define GEMM_NC_NARROW 64
#define GEMM_MAXMR 8
#define GEMM_MAXNR 32

/* How a micro-kernel writes its MR x NR block: C = 0 + acc, bias + acc, C + acc (each element one
 * IEEE addition, as the scalar write-back does), or the raw sums into an NR-wide buffer (partial
 * blocks, which the caller writes back element by element). */
enum { OUT_ZERO, OUT_BIAS, OUT_ADD, OUT_RAW };

typedef void (*gemm_ukernel)(int kc, const float *Ap, const float *Bp, float *c, size_t ldc,
                             const float *bias, int mode);

/* AVX-512: 8 x 32, sixteen zmm accumulators. Per element the same FMA chain along k as the AVX2
 * kernel, so both give the same bits. */
__attribute__((target("avx512f"))) static void ukernel_avx512(int kc, const float *Ap, const float *Bp,
                                                               float *c, size_t ldc, const float *bias,
                                                               int mode) {
    __m512 acc[8][2];
    for (int r = 0; r < 8; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_loadu_ps(Bp), b1 = _mm512_loadu_ps(Bp + 16);
        for (int r = 0; r < 8; r++) {
            const __m512 a = _mm512_set1_ps(Ap[r]);
            acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);
        }
        Ap += 8;
        Bp += 32;
    }
    const __m512 z = _mm512_setzero_ps();
    const __m512 bl = mode == OUT_BIAS ? _mm512_loadu_ps(bias) : z;
    const __m512 bh = mode == OUT_BIAS ? _mm512_loadu_ps(bias + 16) : z;
    for (int r = 0; r < 8; r++) {
        float *cr = c + (size_t)r * ldc;
        __m512 lo = acc[r][0], hi = acc[r][1];
        if (mode == OUT_ADD) {
            lo = _mm512_add_ps(_mm512_loadu_ps(cr), lo);
            hi = _mm512_add_ps(_mm512_loadu_ps(cr + 16), hi);
        } else if (mode != OUT_RAW) {
            lo = _mm512_add_ps(bl, lo);
            hi = _mm512_add_ps(bh, hi);
        }
        _mm512_storeu_ps(cr, lo);
        _mm512_storeu_ps(cr + 16, hi);
    }
}

/* AVX2 + FMA: 6 x 16, twelve ymm accumulators. */
__attribute__((target("avx2,fma"))) static void ukernel_avx2(int kc, const float *Ap, const float *Bp,
                                                              float *c, size_t ldc, const float *bias,
                                                              int mode) {
    __m256 acc[6][2];
    for (int r = 0; r < 6; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int k = 0; k < kc; k++) {
        const __m256 b0 = _mm256_loadu_ps(Bp), b1 = _mm256_loadu_ps(Bp + 8);
        for (int r = 0; r < 6; r++) {
            const __m256 a = _mm256_broadcast_ss(Ap + r);
            acc[r][0] = _mm256_fmadd_ps(a, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(a, b1, acc[r][1]);
        }
        Ap += 6;
        Bp += 16;
    }
    const __m256 z = _mm256_setzero_ps();
    const __m256 bl = mode == OUT_BIAS ? _mm256_loadu_ps(bias) : z;
    const __m256 bh = mode == OUT_BIAS ? _mm256_loadu_ps(bias + 8) : z;
    for (int r = 0; r < 6; r++) {
        float *cr = c + (size_t)r * ldc;
        __m256 lo = acc[r][0], hi = acc[r][1];
        if (mode == OUT_ADD) {
            lo = _mm256_add_ps(_mm256_loadu_ps(cr), lo);
            hi = _mm256_add_ps(_mm256_loadu_ps(cr + 8), hi);
        } else if (mode != OUT_RAW) {
            lo = _mm256_add_ps(bl, lo);
            hi = _mm256_add_ps(bh, hi);
        }
        _mm256_storeu_ps(cr, lo);
        _mm256_storeu_ps(cr + 8, hi);
    }
}

/* SSE (x86-64-v2): 4 x 8, separate multiply and add. */
typedef float v4f __attribute__((vector_size(16)));

static void ukernel_sse(int kc, const float *Ap, const float *Bp, float *c, size_t ldc, const float *bias,
                        int mode) {
    v4f acc[4][2];
    for (int r = 0; r < 4; r++) acc[r][0] = acc[r][1] = (v4f){0.0f, 0.0f, 0.0f, 0.0f};
    for (int k = 0; k < kc; k++) {
        v4f b0, b1;
        memcpy(&b0, Bp, sizeof b0);
        memcpy(&b1, Bp + 4, sizeof b1);
        for (int r = 0; r < 4; r++) {
            const v4f a = {Ap[r], Ap[r], Ap[r], Ap[r]};
            const v4f p0 = a * b0, p1 = a * b1; /* kept apart: no contraction into FMA */
            acc[r][0] += p0;
            acc[r][1] += p1;
        }
        Ap += 4;
        Bp += 8;
    }
    v4f bl = {0.0f, 0.0f, 0.0f, 0.0f}, bh = bl;
    if (mode == OUT_BIAS) {
        memcpy(&bl, bias, sizeof bl);
        memcpy(&bh, bias + 4, sizeof bh);
    }
    for (int r = 0; r < 4; r++) {
        float *cr = c + (size_t)r * ldc;
        v4f lo = acc[r][0], hi = acc[r][1];
        if (mode == OUT_ADD) {
            v4f c0, c1;
            memcpy(&c0, cr, sizeof c0);
            memcpy(&c1, cr + 4, sizeof c1);
            lo = c0 + lo;
            hi = c1 + hi;
        } else if (mode != OUT_RAW) {
            lo = bl + lo;
            hi = bh + hi;
        }
        memcpy(cr, &lo, sizeof lo);
        memcpy(cr + 4, &hi, sizeof hi);
    }
}

tg_cpu_isa tg_cpu_isa_best(void) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return TG_CPU_ISA_SSE;
    return __builtin_cpu_supports("avx512f") ? TG_CPU_ISA_AVX512 : TG_CPU_ISA_AVX2;
}

/* dst[k*ldd + r] = src[r*lds + k] for r, k in [0, 8): one 8 x 8 transpose in registers. */
__attribute__((target("avx2"))) static void transpose8(float *dst, size_t ldd, const float *src, size_t lds) {
    __m256 r[8], t[8];
    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(src + (size_t)i * lds);
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);
        r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);
    }
    /* r0..r3 hold columns 0, 1, 2, 3 of rows 0-3 (low lanes) and 4-7 of them (high lanes);
     * r4..r7 the same for rows 4-7. */
    for (int i = 0; i < 4; i++) {
        _mm256_storeu_ps(dst + (size_t)i * ldd, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
        _mm256_storeu_ps(dst + (size_t)(i + 4) * ldd, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
    }
}

/* dst[k*W + r] = src[r*lds + k] for r < n, k < kc, and 0 for r in [n, W): a W-wide sliver packed
 * from n rows that are contiguous along k. Whole groups of 8 rows go through transpose8 when simd. */
static void pack_rows(float *dst, int W, const float *src, size_t lds, int n, int kc, int simd) {
    int r0 = 0;
    if (simd)
        for (; r0 + 8 <= n; r0 += 8) {
            int k = 0;
            for (; k + 8 <= kc; k += 8) transpose8(dst + (size_t)k * W + r0, (size_t)W, src + (size_t)r0 * lds + k, lds);
            for (; k < kc; k++)
                for (int r = r0; r < r0 + 8; r++) dst[(size_t)k * W + r] = src[(size_t)r * lds + k];
        }
    for (int r = r0; r < n; r++) {
        const float *a = src + (size_t)r * lds;
        for (int k = 0; k < kc; k++) dst[(size_t)k * W + r] = a[k];
    }
    for (int r = n; r < W; r++)
        for (int k = 0; k < kc; k++) dst[(size_t)k * W + r] = 0.0f;
}

/* Packs A rows [0, mc) x k [0, kc) into slivers of MR rows: sliver s holds, for each k, MR values. */
static void pack_a(float *dst, const float *A, size_t sar, size_t sak, int mc, int kc, int MR, int simd) {
    for (int r0 = 0; r0 < mc; r0 += MR) {
        const int mr = mc - r0 < MR ? mc - r0 : MR;
        if (sak == 1) {
            pack_rows(dst, MR, A + (size_t)r0 * sar, sar, mr, kc, simd);
        } else {
            for (int k = 0; k < kc; k++) {
                const float *a = A + (size_t)k * sak + (size_t)r0 * sar;
                for (int r = 0; r < mr; r++) dst[(size_t)k * MR + r] = a[(size_t)r * sar];
            }
            for (int r = mr; r < MR; r++)
                for (int k = 0; k < kc; k++) dst[(size_t)k * MR + r] = 0.0f;
        }
        dst += (size_t)kc * MR;
    }
}

/* Packs B k [0, kc) x columns [0, nc) into slivers of NR columns. */
static void pack_b(float *dst, const float *B, size_t sbk, size_t sbn, int kc, int nc, int NR, int simd) {
    for (int c0 = 0; c0 < nc; c0 += NR) {
        const int nr = nc - c0 < NR ? nc - c0 : NR;
        if (sbn == 1) {
            for (int k = 0; k < kc; k++) {
                const float *b = B + (size_t)k * sbk + c0;
                float *d = dst + (size_t)k * NR;
                memcpy(d, b, (size_t)nr * sizeof(float));
                for (int c = nr; c < NR; c++) d[c] = 0.0f;
            }
        } else if (sbk == 1) { /* a transposed view: each column is contiguous along k */
            pack_rows(dst, NR, B + (size_t)c0 * sbn, sbn, nr, kc, simd);
        } else {
            for (int c = 0; c < nr; c++) {
                const float *b = B + (size_t)(c0 + c) * sbn;
                for (int k = 0; k < kc; k++) dst[(size_t)k * NR + c] = b[(size_t)k * sbk];
            }
            for (int c = nr; c < NR; c++)
                for (int k = 0; k < kc; k++) dst[(size_t)k * NR + c] = 0.0f;
        }
        dst += (size_t)kc * NR;
    }
}

void tg_cpu_gemm_isa(float *C, size_t ldc, const float *A, size_t sar, size_t sak,
                     const float *B, size_t sbk, size_t sbn, const float *bias, int M, int N,
                     int K, int accumulate, tg_cpu_isa isa) {
    const int MR = isa == TG_CPU_ISA_AVX512 ? 8 : isa == TG_CPU_ISA_AVX2 ? 6 : 4;
    const int NR = isa == TG_CPU_ISA_AVX512 ? 32 : isa == TG_CPU_ISA_AVX2 ? 16 : 8;
    const gemm_ukernel uk = isa == TG_CPU_ISA_AVX512 ? ukernel_avx512
                            : isa == TG_CPU_ISA_AVX2 ? ukernel_avx2
                                                     : ukernel_sse;
    const int simd = isa >= TG_CPU_ISA_AVX2; /* packing only moves data: any path may use it */
    /* One row block when M is small, so B is packed once per column block; narrow column blocks
     * when there are few tiles, so both threads get work. Tile shapes never change the numerics. */
    const int mc_tile = M <= GEMM_MC ? (M + MR - 1) / MR * MR : GEMM_MC;
    const int n_mb = (M + mc_tile - 1) / mc_tile;
    const int nc_tile = (long)n_mb * ((N + GEMM_NC - 1) / GEMM_NC) < 8 ? GEMM_NC_NARROW : GEMM_NC;
    const int n_nb = (N + nc_tile - 1) / nc_tile;
    const long n_tiles = (long)n_mb * n_nb;
    /* dynamic: on a shared machine a preempted thread's tiles go to the other one; which thread
     * computes a tile never changes its arithmetic. */
#pragma omp parallel for schedule(dynamic, 1)
    for (long t = 0; t < n_tiles; t++) {
        /* Row blocks vary fastest: consecutive tiles of one thread reuse the same B columns. */
        const int mb = (int)(t % n_mb), nb = (int)(t / n_mb);
        const int m0 = mb * mc_tile, n0 = nb * nc_tile;
        const int mc = M - m0 < mc_tile ? M - m0 : mc_tile;
        const int nc = N - n0 < nc_tile ? N - n0 : nc_tile;
        float Ap[GEMM_MC * GEMM_KC] __attribute__((aligned(64)));
        float Bp[GEMM_KC * GEMM_NC] __attribute__((aligned(64)));
        float acc[GEMM_MAXMR * GEMM_MAXNR] __attribute__((aligned(64)));
        for (int k0 = 0; k0 < K; k0 += GEMM_KC) {
            const int kc = K - k0 < GEMM_KC ? K - k0 : GEMM_KC;
            const int mode = accumulate || k0 > 0 ? OUT_ADD : bias ? OUT_BIAS : OUT_ZERO;
            pack_a(Ap, A + (size_t)m0 * sar + (size_t)k0 * sak, sar, sak, mc, kc, MR, simd);
            pack_b(Bp, B + (size_t)k0 * sbk + (size_t)n0 * sbn, sbk, sbn, kc, nc, NR, simd);
            for (int j0 = 0; j0 < nc; j0 += NR) {
                const int nr = nc - j0 < NR ? nc - j0 : NR;
                const float *bs = Bp + (size_t)(j0 / NR) * kc * NR;
                for (int i0 = 0; i0 < mc; i0 += MR) {
                    const int mr = mc - i0 < MR ? mc - i0 : MR;
                    const float *as = Ap + (size_t)(i0 / MR) * kc * MR;
                    float *cb = C + (size_t)(m0 + i0) * ldc + n0 + j0;
                    if (mr == MR && nr == NR) {
                        uk(kc, as, bs, cb, ldc, bias ? bias + n0 + j0 : NULL, mode);
                        continue;
                    }
                    uk(kc, as, bs, acc, (size_t)NR, NULL, OUT_RAW);
                    for (int r = 0; r < mr; r++) {
                        float *c = cb + (size_t)r * ldc;
                        const float *ar = acc + r * NR;
                        if (mode == OUT_ADD)
                            for (int j = 0; j < nr; j++) c[j] = c[j] + ar[j];
                        else if (mode == OUT_BIAS)
                            for (int j = 0; j < nr; j++) c[j] = bias[n0 + j0 + j] + ar[j];
                        else
                            for (int j = 0; j < nr; j++) c[j] = 0.0f + ar[j];
                    }
                }
            }
        }
    }
}

void tg_cpu_gemm_strided(float *C, size_t ldc, const float *A, size_t sar, size_t sak,
                         const float *B, size_t sbk, size_t sbn, const float *bias, int M, int N,
                         int K, int accumulate) {
    tg_cpu_gemm_isa(C, ldc, A, sar, sak, B, sbk, sbn, bias, M, N, K, accumulate,
                    tg_cpu_isa_best());
}

void tg_cpu_gemm(float *C, size_t ldc, const float *A, size_t sar, size_t sak, const float *B,
                 size_t ldb, const float *bias, int M, int N, int K, int accumulate) {
    tg_cpu_gemm_strided(C, ldc, A, sar, sak, B, ldb, 1, bias, M, N, K, accumulate);
}
