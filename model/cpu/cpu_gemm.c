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
#define GEMM_MC 48  /* multiple of both MRs (6 and 4) */
#define GEMM_NC 128 /* multiple of both NRs (16 and 8) */
#define GEMM_MAXMR 6
#define GEMM_MAXNR 16

typedef void (*gemm_ukernel)(int kc, const float *Ap, const float *Bp, float *acc);

/* AVX2 + FMA: 6 x 16, twelve ymm accumulators. acc (6 x 16 row-major) is overwritten. */
__attribute__((target("avx2,fma"))) static void ukernel_avx2(int kc, const float *Ap,
                                                              const float *Bp, float *acc) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int k = 0; k < kc; k++) {
        const __m256 b0 = _mm256_loadu_ps(Bp), b1 = _mm256_loadu_ps(Bp + 8);
        __m256 a = _mm256_broadcast_ss(Ap + 0);
        c00 = _mm256_fmadd_ps(a, b0, c00);
        c01 = _mm256_fmadd_ps(a, b1, c01);
        a = _mm256_broadcast_ss(Ap + 1);
        c10 = _mm256_fmadd_ps(a, b0, c10);
        c11 = _mm256_fmadd_ps(a, b1, c11);
        a = _mm256_broadcast_ss(Ap + 2);
        c20 = _mm256_fmadd_ps(a, b0, c20);
        c21 = _mm256_fmadd_ps(a, b1, c21);
        a = _mm256_broadcast_ss(Ap + 3);
        c30 = _mm256_fmadd_ps(a, b0, c30);
        c31 = _mm256_fmadd_ps(a, b1, c31);
        a = _mm256_broadcast_ss(Ap + 4);
        c40 = _mm256_fmadd_ps(a, b0, c40);
        c41 = _mm256_fmadd_ps(a, b1, c41);
        a = _mm256_broadcast_ss(Ap + 5);
        c50 = _mm256_fmadd_ps(a, b0, c50);
        c51 = _mm256_fmadd_ps(a, b1, c51);
        Ap += 6;
        Bp += 16;
    }
    _mm256_storeu_ps(acc + 0, c00);
    _mm256_storeu_ps(acc + 8, c01);
    _mm256_storeu_ps(acc + 16, c10);
    _mm256_storeu_ps(acc + 24, c11);
    _mm256_storeu_ps(acc + 32, c20);
    _mm256_storeu_ps(acc + 40, c21);
    _mm256_storeu_ps(acc + 48, c30);
    _mm256_storeu_ps(acc + 56, c31);
    _mm256_storeu_ps(acc + 64, c40);
    _mm256_storeu_ps(acc + 72, c41);
    _mm256_storeu_ps(acc + 80, c50);
    _mm256_storeu_ps(acc + 88, c51);
}

/* SSE (x86-64-v2): 4 x 8, separate multiply and add. */
typedef float v4f __attribute__((vector_size(16)));

static void ukernel_sse(int kc, const float *Ap, const float *Bp, float *acc) {
    v4f c[4][2];
    for (int r = 0; r < 4; r++) c[r][0] = c[r][1] = (v4f){0.0f, 0.0f, 0.0f, 0.0f};
    for (int k = 0; k < kc; k++) {
        v4f b0, b1;
        memcpy(&b0, Bp, sizeof b0);
        memcpy(&b1, Bp + 4, sizeof b1);
        for (int r = 0; r < 4; r++) {
            const v4f a = {Ap[r], Ap[r], Ap[r], Ap[r]};
            const v4f p0 = a * b0, p1 = a * b1; /* kept apart: no contraction into FMA */
            c[r][0] += p0;
            c[r][1] += p1;
        }
        Ap += 4;
        Bp += 8;
    }
    for (int r = 0; r < 4; r++) memcpy(acc + r * 8, c[r], sizeof c[r]);
}

tg_cpu_isa tg_cpu_isa_best(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return TG_CPU_ISA_AVX2;
    return TG_CPU_ISA_SSE;
}

/* Packs A rows [0, mc) x k [0, kc) into slivers of MR rows: sliver s holds, for each k, MR values. */
static void pack_a(float *dst, const float *A, size_t sar, size_t sak, int mc, int kc, int MR) {
    for (int r0 = 0; r0 < mc; r0 += MR) {
        const int mr = mc - r0 < MR ? mc - r0 : MR;
        if (sak == 1) {
            for (int r = 0; r < mr; r++) {
                const float *a = A + (size_t)(r0 + r) * sar;
                for (int k = 0; k < kc; k++) dst[(size_t)k * MR + r] = a[k];
            }
        } else {
            for (int k = 0; k < kc; k++) {
                const float *a = A + (size_t)k * sak + (size_t)r0 * sar;
                for (int r = 0; r < mr; r++) dst[(size_t)k * MR + r] = a[(size_t)r * sar];
            }
        }
        for (int r = mr; r < MR; r++)
            for (int k = 0; k < kc; k++) dst[(size_t)k * MR + r] = 0.0f;
        dst += (size_t)kc * MR;
    }
}

/* Packs B k [0, kc) x columns [0, nc) into slivers of NR columns. */
static void pack_b(float *dst, const float *B, size_t sbk, size_t sbn, int kc, int nc, int NR) {
    for (int c0 = 0; c0 < nc; c0 += NR) {
        const int nr = nc - c0 < NR ? nc - c0 : NR;
        if (sbn == 1) {
            for (int k = 0; k < kc; k++) {
                const float *b = B + (size_t)k * sbk + c0;
                float *d = dst + (size_t)k * NR;
                memcpy(d, b, (size_t)nr * sizeof(float));
                for (int c = nr; c < NR; c++) d[c] = 0.0f;
            }
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
    const int MR = isa == TG_CPU_ISA_AVX2 ? 6 : 4, NR = isa == TG_CPU_ISA_AVX2 ? 16 : 8;
    const gemm_ukernel uk = isa == TG_CPU_ISA_AVX2 ? ukernel_avx2 : ukernel_sse;
    /* Narrow tiles when the matrix is small, so both threads get work (numerics unaffected). */
    int nc_tile = GEMM_NC;
    if ((long)((M + GEMM_MC - 1) / GEMM_MC) * ((N + GEMM_NC - 1) / GEMM_NC) < 8) nc_tile = 32;
    const int n_mb = (M + GEMM_MC - 1) / GEMM_MC, n_nb = (N + nc_tile - 1) / nc_tile;
    const long n_tiles = (long)n_mb * n_nb;
    /* dynamic: on a shared machine a preempted thread's tiles go to the other one; which thread
     * computes a tile never changes its arithmetic. */
#pragma omp parallel for schedule(dynamic, 1)
    for (long t = 0; t < n_tiles; t++) {
        /* Row blocks vary fastest: consecutive tiles of one thread reuse the same B columns. */
        const int mb = (int)(t % n_mb), nb = (int)(t / n_mb);
        const int m0 = mb * GEMM_MC, n0 = nb * nc_tile;
        const int mc = M - m0 < GEMM_MC ? M - m0 : GEMM_MC;
        const int nc = N - n0 < nc_tile ? N - n0 : nc_tile;
        float Ap[GEMM_MC * GEMM_KC] __attribute__((aligned(64)));
        float Bp[GEMM_KC * GEMM_NC] __attribute__((aligned(64)));
        float acc[GEMM_MAXMR * GEMM_MAXNR] __attribute__((aligned(64)));
        for (int k0 = 0; k0 < K; k0 += GEMM_KC) {
            const int kc = K - k0 < GEMM_KC ? K - k0 : GEMM_KC;
            const int add_c = accumulate || k0 > 0;
            pack_a(Ap, A + (size_t)m0 * sar + (size_t)k0 * sak, sar, sak, mc, kc, MR);
            pack_b(Bp, B + (size_t)k0 * sbk + (size_t)n0 * sbn, sbk, sbn, kc, nc, NR);
            for (int j0 = 0; j0 < nc; j0 += NR) {
                const int nr = nc - j0 < NR ? nc - j0 : NR;
                const float *bs = Bp + (size_t)(j0 / NR) * kc * NR;
                for (int i0 = 0; i0 < mc; i0 += MR) {
                    const int mr = mc - i0 < MR ? mc - i0 : MR;
                    uk(kc, Ap + (size_t)(i0 / MR) * kc * MR, bs, acc);
                    for (int r = 0; r < mr; r++) {
                        float *c = C + (size_t)(m0 + i0 + r) * ldc + n0 + j0;
                        const float *ar = acc + r * NR;
                        if (add_c)
                            for (int j = 0; j < nr; j++) c[j] = c[j] + ar[j];
                        else if (bias)
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
