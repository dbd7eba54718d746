/* tg_cpu_attention_scores (model/cpu/cpu_kernels.c), the attention dots of the training forward and
 * the KV-cache decoder, against the plain loop `dot += q[i] * k[i]` compiled for the same target:
 * bitwise equal for key counts and head sizes off its 8-key and 4-channel blocks. */
#include <string.h>

#include "model/cpu/cpu_kernels.h"
#include "tg_test.h"

static float frand(unsigned *s) {
    *s = *s * 1103515245u + 12345u;
    return (float)((*s >> 8) & 0xffff) / 8192.0f - 4.0f;
}

int main(void) {
    static const int hss[] = {1, 3, 4, 7, 8, 32, 63, 64, 65, 128};
    static const int ns[] = {1, 2, 7, 8, 9, 15, 16, 17, 40, 129};
    enum { MAXN = 129, MAXHS = 128, STRIDE = 3 * MAXHS + 5 };
    static float keys[MAXN * STRIDE], q[MAXHS], a[MAXN + 1], ref[MAXN + 1];
    unsigned s = 12345;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) keys[i] = frand(&s);
    for (int i = 0; i < MAXHS; i++) q[i] = frand(&s);
    for (size_t hi = 0; hi < sizeof hss / sizeof hss[0]; hi++)
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
            const int hs = hss[hi], n = ns[ni];
            const float scale = 1.0f / sqrtf((float)hs);
            for (int j = 0; j < n; j++) {
                const float *k = keys + 1 + (size_t)j * STRIDE;
                float dot = 0.0f;
                for (int i = 0; i < hs; i++) dot += q[i] * k[i];
                ref[j] = dot * scale;
            }
            a[n] = ref[n] = 99.0f; /* never written */
            tg_cpu_attention_scores(a, q, keys + 1, STRIDE, n, hs, scale);
            CHECKF(memcmp(a, ref, (size_t)(n + 1) * sizeof a[0]) == 0, "hs=%d n=%d: scores differ from the plain loop",
                   hs, n);
        }
    TEST_MAIN_END();
}
