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

/* The micro-kernels' k loops (the *_sums functions) are left out of ASan/UBSan: they only read
 * the packed slivers of this file's own stack blocks, kc x MR and kc x NR, and with 10 checked
 * loads per 16 FMAs they made every sanitized test run ~8x slower than Release. Everything that
 * touches a caller's memory (packing, the write-back into C, edge blocks) stays instrumented;
 * test_cpu_gemm checks every edge shape against a double-precision reference. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_UNDEFINED__)
#define GEMM_UNCHECKED __attribute__((no_sanitize("address", "undefined"), noinline))
#else
#define GEMM_UNCHECKED
#endif

/* AVX-512: 8 x 32, sixteen zmm accumulators. Per element the same FMA chain along k as the AVX2
 * kernel, so both give the same bits. */
__attribute__((target("avx512f"))) GEMM_UNCHECKED static void ukernel_avx512_sums(int kc, const float *Ap,
                                                                                  const float *Bp,
                                                                                  __m512 acc[8][2]) {
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
}

__attribute__((target("avx512f"))) static void ukernel_avx512(int kc, const float *Ap, const float *Bp,
                                                               float *c, size_t ldc, const float *bias,
                                                               int mode) {
    __m512 acc[8][2];
    ukernel_avx512_sums(kc, Ap, Bp, acc);
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
__attribute__((target("avx2,fma"))) GEMM_UNCHECKED static void ukernel_avx2_sums(int kc, const float *Ap,
                                                                                 const float *Bp,
                                                                                 __m256 acc[6][2]) {
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
}

__attribute__((target("avx2,fma"))) static void ukernel_avx2(int kc, const float *Ap, const float *Bp,
                                                              float *c, size_t ldc, const float *bias,
                                                              int mode) {
    __m256 acc[6][2];
    ukernel_avx2_sums(kc, Ap, Bp, acc);
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

GEMM_UNCHECKED static void ukernel_sse_sums(int kc, const float *Ap, const float *Bp, v4f acc[4][2]) {
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
}

static void ukernel_sse(int kc, const float *Ap, const float *Bp, float *c, size_t ldc, const float *bias,
                        int mode) {
    v4f acc[4][2];
    ukernel_sse_sums(kc, Ap, Bp, acc);
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

/* ---------------------------------------------------------------------------------------------
 * Small M (a few rows, e.g. one token of KV-cache decoding): matrix-vector kernels that read B
 * in place. Packing B costs as much as the multiply when A has one row, and the packed path's
 * row tiles leave one thread working; here the N columns are shared out to threads instead.
 * Each C element gets exactly the packed path's arithmetic on the same ISA path: per GEMM_KC
 * chunk of k an accumulator starts at zero and takes the products in k order (one FMA each on
 * AVX2; a rounded product then an add on SSE), and the chunk sums are added to the base in chunk
 * order. So the result is bitwise that of tg_cpu_gemm_isa, for any thread count. */

#define GEMV_MAXM 4   /* rows at most; more rows reuse packed B better */
#define GEMV_PF 16    /* rows of B fetched ahead by the row-major AVX2 kernel */
#define GEMV_NB 64    /* columns per work item shared out to threads (a multiple of every group) */
/* Below this many multiply-adds one thread runs it all: OpenMP's fork and join cost more. */
#define GEMV_PAR_MIN (1L << 17)

typedef struct {
    float *C;
    size_t ldc;
    const float *A;
    size_t sar, sak;
    const float *B;
    size_t sbk, sbn;
    const float *bias;
    int M, N, K, accumulate;
} gemv_args;

/* ---- AVX2 + FMA ---- */

/* Lanes [0, n) of 8 set (n may be <= 0 or >= 8). */
__attribute__((target("avx2,fma"))) static inline __m256i mask8(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* C row r, columns [j, j + 8) (lanes below nv valid, all when full) = base + acc, base as the
 * packed path's epilogue: C itself after the first chunk or when accumulating, else bias or 0. */
__attribute__((always_inline, target("avx2,fma"))) static inline void
store_avx2(const gemv_args *g, int r, int j, int add_c, __m256 acc, int full, __m256i m) {
    float *c = g->C + (size_t)r * g->ldc + j;
    __m256 base;
    if (add_c) base = full ? _mm256_loadu_ps(c) : _mm256_maskload_ps(c, m);
    else if (g->bias) base = full ? _mm256_loadu_ps(g->bias + j) : _mm256_maskload_ps(g->bias + j, m);
    else base = _mm256_setzero_ps();
    const __m256 v = _mm256_add_ps(base, acc);
    if (full) _mm256_storeu_ps(c, v);
    else _mm256_maskstore_ps(c, m, v);
}

/* B row-major (sbn == 1): columns [j, j + 8*NV), the first nv of them valid, for MR rows. */
__attribute__((always_inline, target("avx2,fma"))) static inline void
rows_avx2(const gemv_args *g, int j, int nv, const int MR, const int NV, const int full) {
    __m256i m[4];
    for (int v = 0; v < NV; v++) m[v] = mask8(nv - 8 * v);
    for (int k0 = 0; k0 < g->K; k0 += GEMM_KC) {
        const int kc = g->K - k0 < GEMM_KC ? g->K - k0 : GEMM_KC;
        __m256 acc[GEMV_MAXM][4];
        for (int r = 0; r < MR; r++)
            for (int v = 0; v < NV; v++) acc[r][v] = _mm256_setzero_ps();
        const float *b = g->B + (size_t)k0 * g->sbk + j, *a = g->A + (size_t)k0 * g->sak;
        for (int k = 0; k < kc; k++) {
            __m256 bv[4];
            /* rows lie sbk apart, too far for the hardware prefetchers: fetch GEMV_PF rows ahead */
            for (int v = 0; v < NV; v += 2) _mm_prefetch((const char *)(b + GEMV_PF * g->sbk + 8 * v), _MM_HINT_T0);
            _mm_prefetch((const char *)(b + GEMV_PF * g->sbk + 8 * NV - 1), _MM_HINT_T0);
            for (int v = 0; v < NV; v++)
                bv[v] = full ? _mm256_loadu_ps(b + 8 * v) : _mm256_maskload_ps(b + 8 * v, m[v]);
            for (int r = 0; r < MR; r++) {
                const __m256 av = _mm256_broadcast_ss(a + (size_t)r * g->sar);
                for (int v = 0; v < NV; v++) acc[r][v] = _mm256_fmadd_ps(av, bv[v], acc[r][v]);
            }
            b += g->sbk;
            a += g->sak;
        }
        for (int r = 0; r < MR; r++)
            for (int v = 0; v < NV; v++)
                store_avx2(g, r, j + 8 * v, g->accumulate || k0 > 0, acc[r][v], full, m[v]);
    }
}

/* Four 8-float rows at p[0..3] (offset k) and p[4..7] -> u[q] = (p[0][k+q], ..., p[7][k+q]) for
 * q < 4: the low 128-bit lanes hold rows 0-3, the high lanes rows 4-7, transposed 4x4 per lane. */
__attribute__((always_inline, target("avx2,fma"))) static inline void
transpose_8x4(__m256 u[4], const float *const p[8], size_t k) {
    __m256 t[4];
    for (int i = 0; i < 4; i++)
        t[i] = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(p[i] + k)), _mm_loadu_ps(p[i + 4] + k), 1);
    const __m256 lo01 = _mm256_unpacklo_ps(t[0], t[1]), hi01 = _mm256_unpackhi_ps(t[0], t[1]);
    const __m256 lo23 = _mm256_unpacklo_ps(t[2], t[3]), hi23 = _mm256_unpackhi_ps(t[2], t[3]);
    u[0] = _mm256_shuffle_ps(lo01, lo23, 0x44);
    u[1] = _mm256_shuffle_ps(lo01, lo23, 0xEE);
    u[2] = _mm256_shuffle_ps(hi01, hi23, 0x44);
    u[3] = _mm256_shuffle_ps(hi01, hi23, 0xEE);
}

/* B transposed (sbk == 1: column n is the contiguous run B + n*sbn): columns [j, j + 16), the
 * first nv valid, for MR rows. Blocks of 8 columns x 4 k are transposed in registers so that
 * every lane (column) still takes its products one k at a time, in order. */
__attribute__((always_inline, target("avx2,fma"))) static inline void
cols_avx2(const gemv_args *g, int j, int nv, const int MR) {
    const float *p[16];
    for (int c = 0; c < 16; c++) /* lanes past nv read a valid column; they are never stored */
        p[c] = g->B + (size_t)(j + (c < nv ? c : nv - 1)) * g->sbn;
    const __m256i m0 = mask8(nv), m1 = mask8(nv - 8);
    const int full = nv == 16;
    for (int k0 = 0; k0 < g->K; k0 += GEMM_KC) {
        const int kc = g->K - k0 < GEMM_KC ? g->K - k0 : GEMM_KC;
        __m256 acc[GEMV_MAXM][2];
        for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
        const float *a = g->A + (size_t)k0 * g->sak;
        int k = 0;
        for (; k + 4 <= kc; k += 4) {
            __m256 u0[4], u1[4];
            if ((k & 15) == 0) /* 16 streams at once: ask for each column's next lines early */
                for (int c = 0; c < 16; c++) _mm_prefetch((const char *)(p[c] + k0 + k + 64), _MM_HINT_T0);
            transpose_8x4(u0, p, (size_t)(k0 + k));
            transpose_8x4(u1, p + 8, (size_t)(k0 + k));
            for (int q = 0; q < 4; q++)
                for (int r = 0; r < MR; r++) {
                    const __m256 av = _mm256_broadcast_ss(a + (size_t)r * g->sar + (size_t)(k + q) * g->sak);
                    acc[r][0] = _mm256_fmadd_ps(av, u0[q], acc[r][0]);
                    acc[r][1] = _mm256_fmadd_ps(av, u1[q], acc[r][1]);
                }
        }
        for (; k < kc; k++) {
            const size_t kk = (size_t)(k0 + k);
            const __m256 u0 =
                _mm256_setr_ps(p[0][kk], p[1][kk], p[2][kk], p[3][kk], p[4][kk], p[5][kk], p[6][kk], p[7][kk]);
            const __m256 u1 =
                _mm256_setr_ps(p[8][kk], p[9][kk], p[10][kk], p[11][kk], p[12][kk], p[13][kk], p[14][kk], p[15][kk]);
            for (int r = 0; r < MR; r++) {
                const __m256 av = _mm256_broadcast_ss(a + (size_t)r * g->sar + (size_t)k * g->sak);
                acc[r][0] = _mm256_fmadd_ps(av, u0, acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(av, u1, acc[r][1]);
            }
        }
        const int add_c = g->accumulate || k0 > 0;
        for (int r = 0; r < MR; r++) {
            store_avx2(g, r, j, add_c, acc[r][0], full, m0);
            if (nv > 8) store_avx2(g, r, j + 8, add_c, acc[r][1], full, m1);
        }
    }
}

/* Columns [n0, n1) of C on AVX2. */
__attribute__((target("avx2,fma"))) static void gemv_block_avx2(const gemv_args *g, int n0, int n1) {
    const int MR = g->M;
    if (g->sbn == 1) {
        const int W = MR <= 2 ? 32 : 16; /* 4 or 2 vectors a row: at most 8 accumulators */
        for (int j = n0; j < n1; j += W) {
            const int nv = n1 - j < W ? n1 - j : W;
#define ROWS_CASE(mr, nvec)                                                                        \
    case mr:                                                                                       \
        if (nv == W) rows_avx2(g, j, nv, mr, nvec, 1);                                             \
        else rows_avx2(g, j, nv, mr, nvec, 0);                                                     \
        break;
            switch (MR) {
                ROWS_CASE(1, 4)
                ROWS_CASE(2, 4)
                ROWS_CASE(3, 2)
                ROWS_CASE(4, 2)
            }
#undef ROWS_CASE
        }
    } else {
        for (int j = n0; j < n1; j += 16) {
            const int nv = n1 - j < 16 ? n1 - j : 16;
            switch (MR) {
            case 1: cols_avx2(g, j, nv, 1); break;
            case 2: cols_avx2(g, j, nv, 2); break;
            case 3: cols_avx2(g, j, nv, 3); break;
            case 4: cols_avx2(g, j, nv, 4); break;
            }
        }
    }
}

/* ---- SSE (x86-64-v2): a rounded product, then an add, as ukernel_sse ---- */

static inline __m128 load4(const float *p, int n, int full) {
    if (full || n >= 4) return _mm_loadu_ps(p);
    float t[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int i = 0; i < n; i++) t[i] = p[i];
    return _mm_loadu_ps(t);
}

static inline void store4(float *p, __m128 v, int n, int full) {
    if (full || n >= 4) {
        _mm_storeu_ps(p, v);
        return;
    }
    float t[4];
    _mm_storeu_ps(t, v);
    for (int i = 0; i < n; i++) p[i] = t[i];
}

__attribute__((always_inline)) static inline void store_sse(const gemv_args *g, int r, int j, int add_c, __m128 acc,
                                                           int n, int full) {
    float *c = g->C + (size_t)r * g->ldc + j;
    __m128 base;
    if (add_c) base = load4(c, n, full);
    else if (g->bias) base = load4(g->bias + j, n, full);
    else base = _mm_setzero_ps();
    store4(c, _mm_add_ps(base, acc), n, full);
}

__attribute__((always_inline)) static inline void rows_sse(const gemv_args *g, int j, int nv, const int MR,
                                                          const int NV, const int full) {
    for (int k0 = 0; k0 < g->K; k0 += GEMM_KC) {
        const int kc = g->K - k0 < GEMM_KC ? g->K - k0 : GEMM_KC;
        __m128 acc[GEMV_MAXM][4];
        for (int r = 0; r < MR; r++)
            for (int v = 0; v < NV; v++) acc[r][v] = _mm_setzero_ps();
        const float *b = g->B + (size_t)k0 * g->sbk + j, *a = g->A + (size_t)k0 * g->sak;
        for (int k = 0; k < kc; k++) {
            __m128 bv[4];
            for (int v = 0; v < NV; v++) bv[v] = full ? _mm_loadu_ps(b + 4 * v) : load4(b + 4 * v, nv - 4 * v, 0);
            for (int r = 0; r < MR; r++) {
                const __m128 av = _mm_set1_ps(a[(size_t)r * g->sar]);
                for (int v = 0; v < NV; v++) acc[r][v] = _mm_add_ps(acc[r][v], _mm_mul_ps(av, bv[v]));
            }
            b += g->sbk;
            a += g->sak;
        }
        for (int r = 0; r < MR; r++)
            for (int v = 0; v < NV && (full || 4 * v < nv); v++)
                store_sse(g, r, j + 4 * v, g->accumulate || k0 > 0, acc[r][v], nv - 4 * v, full);
    }
}

/* B transposed: columns [j, j + 8), the first nv valid; 4x4 blocks transposed in registers. */
__attribute__((always_inline)) static inline void cols_sse(const gemv_args *g, int j, int nv, const int MR) {
    const float *p[8];
    for (int c = 0; c < 8; c++) p[c] = g->B + (size_t)(j + (c < nv ? c : nv - 1)) * g->sbn;
    const int full = nv == 8;
    for (int k0 = 0; k0 < g->K; k0 += GEMM_KC) {
        const int kc = g->K - k0 < GEMM_KC ? g->K - k0 : GEMM_KC;
        __m128 acc[GEMV_MAXM][2];
        for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm_setzero_ps();
        const float *a = g->A + (size_t)k0 * g->sak;
        int k = 0;
        for (; k + 4 <= kc; k += 4) {
            const size_t kk = (size_t)(k0 + k);
            __m128 u0[4], u1[4];
            for (int i = 0; i < 4; i++) u0[i] = _mm_loadu_ps(p[i] + kk), u1[i] = _mm_loadu_ps(p[i + 4] + kk);
            _MM_TRANSPOSE4_PS(u0[0], u0[1], u0[2], u0[3]);
            _MM_TRANSPOSE4_PS(u1[0], u1[1], u1[2], u1[3]);
            for (int q = 0; q < 4; q++)
                for (int r = 0; r < MR; r++) {
                    const __m128 av = _mm_set1_ps(a[(size_t)r * g->sar + (size_t)(k + q) * g->sak]);
                    acc[r][0] = _mm_add_ps(acc[r][0], _mm_mul_ps(av, u0[q]));
                    acc[r][1] = _mm_add_ps(acc[r][1], _mm_mul_ps(av, u1[q]));
                }
        }
        for (; k < kc; k++) {
            const size_t kk = (size_t)(k0 + k);
            const __m128 u0 = _mm_setr_ps(p[0][kk], p[1][kk], p[2][kk], p[3][kk]);
            const __m128 u1 = _mm_setr_ps(p[4][kk], p[5][kk], p[6][kk], p[7][kk]);
            for (int r = 0; r < MR; r++) {
                const __m128 av = _mm_set1_ps(a[(size_t)r * g->sar + (size_t)k * g->sak]);
                acc[r][0] = _mm_add_ps(acc[r][0], _mm_mul_ps(av, u0));
                acc[r][1] = _mm_add_ps(acc[r][1], _mm_mul_ps(av, u1));
            }
        }
        const int add_c = g->accumulate || k0 > 0;
        for (int r = 0; r < MR; r++) {
            store_sse(g, r, j, add_c, acc[r][0], nv, full);
            if (nv > 4) store_sse(g, r, j + 4, add_c, acc[r][1], nv - 4, full);
        }
    }
}

static void gemv_block_sse(const gemv_args *g, int n0, int n1) {
    const int MR = g->M;
    if (g->sbn == 1) {
        const int W = MR <= 2 ? 16 : 8;
        for (int j = n0; j < n1; j += W) {
            const int nv = n1 - j < W ? n1 - j : W;
#define ROWS_CASE(mr, nvec)                                                                        \
    case mr:                                                                                       \
        if (nv == W) rows_sse(g, j, nv, mr, nvec, 1);                                              \
        else rows_sse(g, j, nv, mr, nvec, 0);                                                      \
        break;
            switch (MR) {
                ROWS_CASE(1, 4)
                ROWS_CASE(2, 4)
                ROWS_CASE(3, 2)
                ROWS_CASE(4, 2)
            }
#undef ROWS_CASE
        }
    } else {
        for (int j = n0; j < n1; j += 8) {
            const int nv = n1 - j < 8 ? n1 - j : 8;
            switch (MR) {
            case 1: cols_sse(g, j, nv, 1); break;
            case 2: cols_sse(g, j, nv, 2); break;
            case 3: cols_sse(g, j, nv, 3); break;
            case 4: cols_sse(g, j, nv, 4); break;
            }
        }
    }
}

int tg_cpu_gemm_small_ok(int M, size_t sbk, size_t sbn) { return M >= 1 && M <= GEMV_MAXM && (sbn == 1 || sbk == 1); }

void tg_cpu_gemm_small_isa(float *C, size_t ldc, const float *A, size_t sar, size_t sak, const float *B, size_t sbk,
                           size_t sbn, const float *bias, int M, int N, int K, int accumulate, tg_cpu_isa isa) {
    const gemv_args g = {C, ldc, A, sar, sak, B, sbk, sbn, bias, M, N, K, accumulate};
    const int n_items = (N + GEMV_NB - 1) / GEMV_NB;
    if ((long)M * N * K < GEMV_PAR_MIN || n_items == 1) { /* no OpenMP region at all: not even a team of one */
        if (isa >= TG_CPU_ISA_AVX2) gemv_block_avx2(&g, 0, N);
        else gemv_block_sse(&g, 0, N);
        return;
    }
    /* dynamic: a preempted thread's columns go to the other one; the split never changes a sum. */
#pragma omp parallel for schedule(dynamic, 1)
    for (int it = 0; it < n_items; it++) {
        const int n0 = it * GEMV_NB, n1 = N - n0 < GEMV_NB ? N : n0 + GEMV_NB;
        if (isa >= TG_CPU_ISA_AVX2) gemv_block_avx2(&g, n0, n1);
        else gemv_block_sse(&g, n0, n1);
    }
}

void tg_cpu_gemm_strided(float *C, size_t ldc, const float *A, size_t sar, size_t sak,
                         const float *B, size_t sbk, size_t sbn, const float *bias, int M, int N,
                         int K, int accumulate) {
    if (tg_cpu_gemm_small_ok(M, sbk, sbn)) {
        tg_cpu_gemm_small_isa(C, ldc, A, sar, sak, B, sbk, sbn, bias, M, N, K, accumulate, tg_cpu_isa_best());
        return;
    }
    tg_cpu_gemm_isa(C, ldc, A, sar, sak, B, sbk, sbn, bias, M, N, K, accumulate,
                    tg_cpu_isa_best());
}

void tg_cpu_gemm(float *C, size_t ldc, const float *A, size_t sar, size_t sak, const float *B,
                 size_t ldb, const float *bias, int M, int N, int K, int accumulate) {
    tg_cpu_gemm_strided(C, ldc, A, sar, sak, B, ldb, 1, bias, M, N, K, accumulate);
}
