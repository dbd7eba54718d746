/* tests/tg_jacobi.h — eigenvalues of a small symmetric matrix in double (cyclic Jacobi), for the
 * tests that check singular values of an orthogonalised matrix (Muon's Newton-Schulz). */
#ifndef TG_TEST_JACOBI_H
#define TG_TEST_JACOBI_H

#include <math.h>

/* Eigenvalues of the symmetric n x n S (destroyed) into ev, by cyclic Jacobi rotations. */
static inline void jacobi_eig(double *S, int n, double *ev) {
    for (int sweep = 0; sweep < 60; sweep++) {
        double off = 0;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) off += S[p * n + q] * S[p * n + q];
        if (off < 1e-22) break;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) {
                const double apq = S[p * n + q];
                if (fabs(apq) < 1e-300) continue;
                const double th = (S[q * n + q] - S[p * n + p]) / (2 * apq);
                const double t = (th >= 0 ? 1 : -1) / (fabs(th) + sqrt(th * th + 1));
                const double cs = 1 / sqrt(t * t + 1), sn = t * cs;
                for (int k = 0; k < n; k++) { /* columns p, q */
                    const double x = S[k * n + p], y = S[k * n + q];
                    S[k * n + p] = cs * x - sn * y;
                    S[k * n + q] = sn * x + cs * y;
                }
                for (int k = 0; k < n; k++) { /* rows p, q */
                    const double x = S[p * n + k], y = S[q * n + k];
                    S[p * n + k] = cs * x - sn * y;
                    S[q * n + k] = sn * x + cs * y;
                }
            }
    }
    for (int i = 0; i < n; i++) ev[i] = S[i * n + i];
}

#endif
