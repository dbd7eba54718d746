/* The CPU backend's vector tanh (model/cpu/cpu_vmath.c, SLEEF) and the GELU built on it: tanh within
 * 1 ulp (+ 1 for the double reference's rounding to float) of tanh in double, over the range GELU
 * feeds it and beyond (saturation, signed zeros, tiny values, inf, NaN); each element's result is
 * the same wherever it sits in the array and however long the array is (tails are padded, blocks and
 * threads split anywhere); AVX2 and AVX512 share one path. GELU forward and backward within a few
 * ulps of the formula in double, and bitwise the same on 1 and 2 threads. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/cpu/cpu_kernels.h"
#include "tg_test.h"

static float frand(unsigned *s, float scale) {
    *s = *s * 1103515245u + 12345u;
    return ((float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f) * scale;
}

/* |a - b| in units of b's ulp (float). */
static double ulps(float a, double b) {
    if (b == 0.0) return a == 0.0f ? 0.0 : INFINITY;
    const double ulp = ldexp(1.0, ilogb(b) - 23);
    return fabs((double)a - b) / ulp;
}

static void check_tanh(tg_cpu_isa isa) {
    enum { N = 1 << 16 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y), *z = malloc(N * sizeof *z);
    CHECK(x && y && z);
    if (!x || !y || !z) goto out;
    unsigned s = 7;
    for (int i = 0; i < N; i++) x[i] = frand(&s, i % 5 == 0 ? 20.0f : i % 5 == 1 ? 1e-3f : 4.0f);
    x[0] = 0.0f, x[1] = -0.0f, x[2] = 1e-30f, x[3] = -9.5f, x[4] = 88.0f, x[5] = INFINITY;
    x[6] = -INFINITY, x[7] = NAN;
    memcpy(y, x, N * sizeof *y);
    tg_cpu_tanh_isa(y, N, isa);
    double worst = 0.0;
    for (int i = 0; i < N; i++) {
        if (isnan(x[i])) {
            CHECKF(isnan(y[i]), "tanh(NaN) = %g", (double)y[i]);
            continue;
        }
        const double u = ulps(y[i], tanh((double)x[i]));
        if (u > worst) worst = u;
    }
    printf("isa %d: tanh worst error %.2f ulp over %d values\n", (int)isa, worst, N);
    CHECKF(worst <= 2.0, "tanh error %.2f ulp", worst);
    CHECK(signbit(y[1]) && y[1] == 0.0f && y[5] == 1.0f && y[6] == -1.0f);
    /* Position independence: every offset and length gives each element the same bits. */
    for (int off = 0; off < 9; off++)
        for (int n = 1; n < 40; n += 3) {
            memcpy(z, x + off, (size_t)n * sizeof *z);
            tg_cpu_tanh_isa(z, (size_t)n, isa);
            CHECKF(memcmp(z, y + off, (size_t)n * sizeof *z) == 0, "isa %d offset %d length %d", (int)isa, off, n);
        }
out:
    free(x), free(y), free(z);
}

static double gelu_ref(double x) { return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x))); }

static double gelu_grad_ref(double x) {
    const double a = sqrt(2.0 / M_PI), t = tanh(a * (x + 0.044715 * x * x * x));
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * a * (1.0 + 3.0 * 0.044715 * x * x);
}

static void check_gelu(void) {
    enum { N = 100003 }; /* over the parallel threshold, not a multiple of any block */
    float *x = malloc(N * sizeof *x), *y1 = malloc(N * sizeof *y1), *y2 = malloc(N * sizeof *y2);
    float *d1 = malloc(N * sizeof *d1), *d2 = malloc(N * sizeof *d2);
    CHECK(x && y1 && y2 && d1 && d2);
    if (!x || !y1 || !y2 || !d1 || !d2) goto out;
    unsigned s = 11;
    for (int i = 0; i < N; i++) x[i] = frand(&s, 6.0f);
    for (int i = 0; i < N; i++) d1[i] = d2[i] = 1.0f;
    omp_set_num_threads(1);
    tg_cpu_gelu_forward(y1, x, N);
    tg_cpu_gelu_backward(d1, x, N);
    omp_set_num_threads(2);
    tg_cpu_gelu_forward(y2, x, N);
    tg_cpu_gelu_backward(d2, x, N);
    CHECK(memcmp(y1, y2, N * sizeof *y1) == 0);
    CHECK(memcmp(d1, d2, N * sizeof *d1) == 0);
    /* Absolute error against the scale of the values: GELU cancels for negative x (0.5 x (1 + t)
     * with t near -1), where relative error is meaningless. */
    double worst_f = 0.0, worst_b = 0.0;
    for (int i = 0; i < N; i++) {
        const double ef = fabs(y1[i] - gelu_ref(x[i])) / fmax(1.0, fabs(x[i]));
        const double eb = fabs(d1[i] - gelu_grad_ref(x[i])) / fmax(1.0, fabs(x[i]));
        if (ef > worst_f) worst_f = ef;
        if (eb > worst_b) worst_b = eb;
    }
    printf("gelu: forward worst %.3g, backward worst %.3g (absolute, per max(1, |x|))\n", worst_f, worst_b);
    CHECKF(worst_f < 4e-7 && worst_b < 4e-6, "gelu errors %.3g %.3g", worst_f, worst_b);
out:
    free(x), free(y1), free(y2), free(d1), free(d2);
}

int main(void) {
    const int best = (int)tg_cpu_isa_best();
    for (int isa = 0; isa <= best; isa++) check_tanh((tg_cpu_isa)isa);
    check_gelu();
    TEST_MAIN_END();
}
