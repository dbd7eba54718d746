/* model/cpu/cpu_vmath_avx2.c — the AVX2 + FMA half of cpu_vmath.c, in its own file because SLEEF's
 * header declares its AVX2 functions only where the compiler targets AVX2 (CMake builds this file
 * with -mavx2 -mfma; cpu_vmath.c calls it only on CPUs that have both). */
#include <immintrin.h>
#include <sleef.h>
#include <stddef.h>
#include <string.h>

void tg_cpu_tanh_avx2(float *x, size_t n);

void tg_cpu_tanh_avx2(float *x, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, Sleef_tanhf8_u10avx2(_mm256_loadu_ps(x + i)));
    if (i < n) {
        float t[8] = {0.0f};
        memcpy(t, x + i, (n - i) * sizeof *t);
        _mm256_storeu_ps(t, Sleef_tanhf8_u10avx2(_mm256_loadu_ps(t)));
        memcpy(x + i, t, (n - i) * sizeof *t);
    }
}
