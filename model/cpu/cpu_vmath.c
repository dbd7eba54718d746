/* model/cpu/cpu_vmath.c — vector transcendental functions of the CPU backend (see cpu_kernels.h),
 * through SLEEF (libsleef): glibc's scalar tanhf costs ~20 ns an element and GELU spent most of a
 * small model's step in it; SLEEF's vector tanhf is ~8x cheaper with a 1-ulp bound. Every element
 * goes through the same vector function (tails are padded), so a result never depends on where a
 * thread's range or a block starts, only on the ISA path: the AVX2 and AVX-512 paths share the FMA
 * variant (cpu_vmath_avx2.c), the SSE path takes the SSE4 one. */
#include <immintrin.h>
#include <sleef.h>
#include <string.h>

#include "model/cpu/cpu_kernels.h"

/* cpu_vmath_avx2.c (compiled for AVX2 + FMA; call only where the CPU has them) */
void tg_cpu_tanh_avx2(float *x, size_t n);

static void tanh_sse4(float *x, size_t n) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) _mm_storeu_ps(x + i, Sleef_tanhf4_u10sse4(_mm_loadu_ps(x + i)));
    if (i < n) {
        float t[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        memcpy(t, x + i, (n - i) * sizeof *t);
        _mm_storeu_ps(t, Sleef_tanhf4_u10sse4(_mm_loadu_ps(t)));
        memcpy(x + i, t, (n - i) * sizeof *t);
    }
}

void tg_cpu_tanh_isa(float *x, size_t n, tg_cpu_isa isa) {
    if (isa >= TG_CPU_ISA_AVX2)
        tg_cpu_tanh_avx2(x, n);
    else
        tanh_sse4(x, n);
}
