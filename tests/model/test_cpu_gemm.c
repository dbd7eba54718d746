/* The CPU GEMM (model/cpu/cpu_gemm.c) against a naive double-precision reference, on every ISA path
 * this CPU runs: odd shapes (m, n, k off the tile sizes, k over several 256-chunks), A and B as
 * transposed views, row strides wider than the matrix (the gap is never written), bias and
 * accumulate; bitwise the same C for 1 and 2 threads, and for the AVX2 and AVX512 paths (both one FMA
 * chain per element). The small-M path (matrix-vector kernels, M <= 4) bitwise against the packed
 * path on the same ISA path, on 1 and 2 threads. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/cpu/cpu_kernels.h"
#include "tg_test.h"

static float frand(unsigned *s) {
    *s = *s * 1103515245u + 12345u;
    return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

typedef struct {
    int M, N, K, ta, tb, acc, bias;
} shape;

static void run_case(const shape *sh, tg_cpu_isa isa) {
    const int M = sh->M, N = sh->N, K = sh->K;
    const size_t ldc = (size_t)N + 3;
    /* A is (M, K): stored (M, K+1) or, transposed, (K, M+2). B is (K, N): (K, N+1) or (N, K+2). */
    const size_t sar = sh->ta ? 1 : (size_t)K + 1, sak = sh->ta ? (size_t)M + 2 : 1;
    const size_t sbk = sh->tb ? 1 : (size_t)N + 1, sbn = sh->tb ? (size_t)K + 2 : 1;
    const size_t na = sh->ta ? (size_t)K * (M + 2) : (size_t)M * (K + 1);
    const size_t nb = sh->tb ? (size_t)N * (K + 2) : (size_t)K * (N + 1);
    float *A = malloc(na * sizeof *A), *B = malloc(nb * sizeof *B), *bias = malloc(N * sizeof *bias);
    float *C1 = malloc((size_t)M * ldc * sizeof *C1), *C2 = malloc((size_t)M * ldc * sizeof *C2);
    float *C0 = malloc((size_t)M * ldc * sizeof *C0);
    CHECK(A && B && bias && C1 && C2 && C0);
    if (!A || !B || !bias || !C1 || !C2 || !C0) goto out;
    unsigned s = (unsigned)(M * 131 + N * 17 + K);
    for (size_t i = 0; i < na; i++) A[i] = frand(&s);
    for (size_t i = 0; i < nb; i++) B[i] = frand(&s);
    for (int i = 0; i < N; i++) bias[i] = frand(&s);
    for (size_t i = 0; i < (size_t)M * ldc; i++) C0[i] = frand(&s);
    memcpy(C1, C0, (size_t)M * ldc * sizeof *C0);
    memcpy(C2, C0, (size_t)M * ldc * sizeof *C0);
    const float *bp = sh->bias ? bias : NULL;
    omp_set_num_threads(1);
    tg_cpu_gemm_isa(C1, ldc, A, sar, sak, B, sbk, sbn, bp, M, N, K, sh->acc, isa);
    omp_set_num_threads(2);
    tg_cpu_gemm_isa(C2, ldc, A, sar, sak, B, sbk, sbn, bp, M, N, K, sh->acc, isa);
    CHECKF(memcmp(C1, C2, (size_t)M * ldc * sizeof *C1) == 0,
           "isa=%d M=%d N=%d K=%d ta=%d tb=%d: 1 and 2 threads differ", isa, M, N, K, sh->ta, sh->tb);
    if (isa == TG_CPU_ISA_AVX512) {
        memcpy(C2, C0, (size_t)M * ldc * sizeof *C0);
        tg_cpu_gemm_isa(C2, ldc, A, sar, sak, B, sbk, sbn, bp, M, N, K, sh->acc, TG_CPU_ISA_AVX2);
        CHECKF(memcmp(C1, C2, (size_t)M * ldc * sizeof *C1) == 0,
               "M=%d N=%d K=%d ta=%d tb=%d acc=%d: AVX512 and AVX2 paths differ", M, N, K, sh->ta, sh->tb, sh->acc);
    }
    double worst = 0.0;
    int gap_ok = 1;
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            double ref = sh->acc ? C0[i * ldc + j] : (bp ? bp[j] : 0.0), mag = fabs(ref);
            for (int k = 0; k < K; k++) {
                const double t = (double)A[i * sar + k * sak] * B[k * sbk + j * sbn];
                ref += t;
                mag += fabs(t);
            }
            const double e = fabs(C1[i * ldc + j] - ref) / (mag + 1e-30);
            if (e > worst) worst = e;
        }
        for (size_t j = (size_t)N; j < ldc; j++) gap_ok &= C1[i * ldc + j] == C0[i * ldc + j];
    }
    /* fp32 summation error is at most ~K * 2^-24 relative to sum |terms|. */
    CHECKF(worst <= (K + 2) * 6e-8, "isa=%d M=%d N=%d K=%d ta=%d tb=%d acc=%d bias=%d: rel err %g",
           isa, M, N, K, sh->ta, sh->tb, sh->acc, sh->bias, worst);
    CHECKF(gap_ok, "isa=%d M=%d N=%d K=%d: wrote past N in a strided row", isa, M, N, K);
out:
    free(A);
    free(B);
    free(bias);
    free(C0);
    free(C1);
    free(C2);
}

/* The small-M path against the packed one: every byte of C (the row gaps too) the same. */
static void run_small_case(const shape *sh, tg_cpu_isa isa) {
    const int M = sh->M, N = sh->N, K = sh->K;
    const size_t ldc = (size_t)N + 3;
    const size_t sar = sh->ta ? 1 : (size_t)K + 1, sak = sh->ta ? (size_t)M + 2 : 1;
    const size_t sbk = sh->tb ? 1 : (size_t)N + 1, sbn = sh->tb ? (size_t)K + 2 : 1;
    const size_t na = sh->ta ? (size_t)K * (M + 2) : (size_t)M * (K + 1);
    const size_t nb = sh->tb ? (size_t)N * (K + 2) : (size_t)K * (N + 1), nc = (size_t)M * ldc;
    float *A = malloc(na * sizeof *A), *B = malloc(nb * sizeof *B), *bias = malloc(N * sizeof *bias);
    float *C0 = malloc(nc * sizeof *C0), *Cp = malloc(nc * sizeof *Cp), *C1 = malloc(nc * sizeof *C1);
    float *C2 = malloc(nc * sizeof *C2);
    CHECK(A && B && bias && C0 && Cp && C1 && C2);
    if (!A || !B || !bias || !C0 || !Cp || !C1 || !C2) goto out;
    CHECK(tg_cpu_gemm_small_ok(M, sbk, sbn));
    unsigned s = (unsigned)(M * 7919 + N * 31 + K);
    for (size_t i = 0; i < na; i++) A[i] = frand(&s);
    for (size_t i = 0; i < nb; i++) B[i] = frand(&s);
    for (int i = 0; i < N; i++) bias[i] = frand(&s);
    for (size_t i = 0; i < nc; i++) C0[i] = frand(&s);
    memcpy(Cp, C0, nc * sizeof *C0);
    memcpy(C1, C0, nc * sizeof *C0);
    memcpy(C2, C0, nc * sizeof *C0);
    const float *bp = sh->bias ? bias : NULL;
    omp_set_num_threads(1);
    tg_cpu_gemm_isa(Cp, ldc, A, sar, sak, B, sbk, sbn, bp, M, N, K, sh->acc, isa);
    tg_cpu_gemm_small_isa(C1, ldc, A, sar, sak, B, sbk, sbn, bp, M, N, K, sh->acc, isa);
    omp_set_num_threads(2);
    tg_cpu_gemm_small_isa(C2, ldc, A, sar, sak, B, sbk, sbn, bp, M, N, K, sh->acc, isa);
    CHECKF(memcmp(Cp, C1, nc * sizeof *C1) == 0, "isa=%d M=%d N=%d K=%d ta=%d tb=%d acc=%d bias=%d: small-M != packed",
           isa, M, N, K, sh->ta, sh->tb, sh->acc, sh->bias);
    CHECKF(memcmp(C1, C2, nc * sizeof *C1) == 0, "isa=%d M=%d N=%d K=%d ta=%d tb=%d: small-M 1 and 2 threads differ",
           isa, M, N, K, sh->ta, sh->tb);
    if (isa == tg_cpu_isa_best()) { /* tg_cpu_gemm_strided takes the small path: same bytes */
        memcpy(C2, C0, nc * sizeof *C0);
        tg_cpu_gemm_strided(C2, ldc, A, sar, sak, B, sbk, sbn, bp, M, N, K, sh->acc);
        CHECKF(memcmp(Cp, C2, nc * sizeof *C2) == 0, "M=%d N=%d K=%d: tg_cpu_gemm_strided != packed", M, N, K);
    }
out:
    free(A);
    free(B);
    free(bias);
    free(C0);
    free(Cp);
    free(C1);
    free(C2);
}

int main(void) {
    /* Shapes around the tile sizes: MR 4/6/8, NR 8/16/32, row blocks of 192 (and the one-block case
     * below), column blocks of 64 and 128, k chunks of 256. */
    static const int dims[][3] = {{1, 1, 1},     {7, 13, 5},     {6, 16, 256},  {5, 17, 257},
                                  {50, 37, 300}, {97, 130, 513}, {49, 129, 64}, {200, 33, 31},
                                  {8, 32, 16},   {64, 96, 40},   {193, 70, 9},  {16, 300, 260}};
    const int n_isa = (int)tg_cpu_isa_best() + 1;
    printf("GEMM paths tested: SSE%s%s\n", n_isa >= 2 ? " AVX2" : "", n_isa >= 3 ? " AVX512" : "");
    for (int isa = 0; isa < n_isa; isa++)
        for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++)
            for (int v = 0; v < 8; v++) {
                const shape sh = {dims[d][0], dims[d][1], dims[d][2], v & 1, (v >> 1) & 1,
                                  (v >> 2) & 1, !((v >> 2) & 1) && (d & 1)};
                run_case(&sh, (tg_cpu_isa)isa);
            }
    /* Small M: column counts off every group width (32/16/8/4) and the 64-column work items, k
     * off the 4-wide transpose and over several 256-chunks; M*N*K >= 2^17 for the threaded split. */
    static const int sdims[][2] = {{1, 1}, {3, 5}, {13, 7}, {17, 256}, {33, 257}, {64, 259}, {65, 513},
                                   {200, 770}, {130, 1031}, {777, 300}};
    for (int isa = 0; isa < n_isa; isa++)
        for (int M = 1; M <= 4; M++)
            for (size_t d = 0; d < sizeof sdims / sizeof sdims[0]; d++)
                for (int v = 0; v < 8; v++) {
                    const shape sh = {M, sdims[d][0], sdims[d][1], v & 1, (v >> 1) & 1, (v >> 2) & 1,
                                      !((v >> 2) & 1) && ((d + M) & 1)};
                    run_small_case(&sh, (tg_cpu_isa)isa);
                }
    TEST_MAIN_END();
}
