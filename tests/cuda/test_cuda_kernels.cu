/* tests/cuda/test_cuda_kernels.cu — the row kernels of the loss and the LayerNorm backward
 * against double-precision host references, at GPT-2's shapes and at shapes that take the other
 * paths; then each timed at GPT-2 124M's shape (B=64, T=1024).
 *
 * Cross-entropy (model/cuda/classifier.cu). Per case: random logits (normal, scale 3: a spread
 * softmax with a few large entries), ~10% of targets ignored (-1), dscale = 1/rows; the forward
 * (losses and lse), then dlogits in place. Checked: every loss to 1e-4 absolute, every dlogit
 * (padded columns and ignored rows must be exactly 0) to the rounding of its type plus the fp32
 * arithmetic's (1e-5 relative, 4e-6 x dscale absolute), and that a second run gives identical
 * bits. A wrong row, column or reduction gives errors of order dscale. Losses start as NaN, so a
 * row never written fails. Timed at the LM head's chunk (8192 rows, V = 50257, bf16), with the
 * DRAM traffic it implies (3 x rows x Vp x 2 bytes) as GB/s.
 *
 * LayerNorm backward (model/cuda/layernorm.cu): the register kernel (rows of up to 1024 bf16 /
 * 512 fp32 channels) and the row-cache kernel (longer rows), with and without dsum: dx
 * (accumulated into a nonzero dx) norm-wise against the reference (bf16: 1e-2, the output
 * rounding; fp32: 1e-5), dw, db and dsum (fp32 column sums) to 1e-5, where dsum's reference is
 * the sum of the kernel's own stored dx; a second run gives identical bits. Timed at N = 65536,
 * C = 768, bf16, with dsum.
 *
 * Without a CUDA device: prints "SKIP: no CUDA device" and exits 77. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/cuda/ops.cuh"

extern "C" {
#include "core/rng.h"
}
#include "cuda_test.h"
#include "tg_test.h"

static float to_f32(float x) { return x; }
static float to_f32(tg_bf16 x) { return __bfloat162float(x); }
template <typename X> static X from_f32(float x);
template <> float from_f32<float>(float x) { return x; }
template <> tg_bf16 from_f32<tg_bf16>(float x) { return __float2bfloat16_rn(x); }

/* The forward and backward on a copy of h_logits; returns dlogits (rows x Vp) and losses. */
template <typename X>
static void run_xent(X *d_logits, float *d_losses, float *d_lse, const int32_t *d_tgt, const X *h_logits, X *h_out,
                     float *h_losses, int N, int V, int Vp, float dscale, cudaStream_t s) {
    tg_error err = {};
    CU(cudaMemcpy(d_logits, h_logits, (size_t)N * Vp * sizeof(X), cudaMemcpyHostToDevice));
    CU(cudaMemset(d_losses, 0xff, (size_t)N * sizeof(float))); /* NaN */
    CHECK_OK(tg_cuda_crossentropy_forward<X>(d_losses, d_lse, d_logits, d_tgt, N, V, Vp, s, &err), &err);
    CHECK_OK(tg_cuda_crossentropy_backward<X>(d_logits, d_lse, d_tgt, dscale, N, V, Vp, s, &err), &err);
    CU(cudaStreamSynchronize(s));
    CU(cudaMemcpy(h_out, d_logits, (size_t)N * Vp * sizeof(X), cudaMemcpyDeviceToHost));
    CU(cudaMemcpy(h_losses, d_losses, (size_t)N * sizeof(float), cudaMemcpyDeviceToHost));
}

template <typename X> static void run_case(const char *name, int N, int V, int Vp, cudaStream_t s) {
    const size_t n = (size_t)N * Vp;
    const float dscale = 1.0f / N;
    /* the rounding of a stored dlogit (bf16 keeps 8 significant bits: 2^-8 relative), plus the
     * fp32 arithmetic before it: exp2f's and the log-sum-exp's relative errors (~2e-6) */
    const double rel = (sizeof(X) == 2 ? 1.0 / 256 : 0.0) + 1e-5, abs_tol = 4e-6 * dscale;
    X *h = (X *)malloc(n * sizeof(X)), *out = (X *)malloc(n * sizeof(X)), *out2 = (X *)malloc(n * sizeof(X));
    float *loss = (float *)malloc(N * sizeof(float)), *loss2 = (float *)malloc(N * sizeof(float));
    double *ref_lse = (double *)malloc(N * sizeof(double));
    int32_t *tgt = (int32_t *)malloc(N * sizeof(int32_t));
    X *d_logits;
    float *d_losses, *d_lse;
    int32_t *d_tgt;
    tg_rng r;
    tg_rng_init(&r, 11);
    for (size_t i = 0; i < n; i++) h[i] = from_f32<X>((i % Vp) < (size_t)V ? 3.0f * tg_rng_normal(&r) : 0.0f);
    for (int i = 0; i < N; i++) tgt[i] = tg_rng_f32(&r) < 0.1f ? -1 : (int32_t)tg_rng_below(&r, (uint64_t)V);
    tgt[0] = V - 1; /* the last real column, in the vector that holds the padding */
    for (int i = 0; i < N; i++) {
        double m = -INFINITY, sum = 0.0;
        for (int c = 0; c < V; c++) m = fmax(m, to_f32(h[(size_t)i * Vp + c]));
        for (int c = 0; c < V; c++) sum += exp(to_f32(h[(size_t)i * Vp + c]) - m);
        ref_lse[i] = m + log(sum);
    }
    CU(cudaMalloc(&d_logits, n * sizeof(X)));
    CU(cudaMalloc(&d_losses, N * sizeof(float)));
    CU(cudaMalloc(&d_lse, N * sizeof(float)));
    CU(cudaMalloc(&d_tgt, N * sizeof(int32_t)));
    CU(cudaMemcpy(d_tgt, tgt, N * sizeof(int32_t), cudaMemcpyHostToDevice));
    {
        run_xent<X>(d_logits, d_losses, d_lse, d_tgt, h, out, loss, N, V, Vp, dscale, s);
        double loss_err = 0.0, g_excess = 0.0;
        long bad_zero = 0;
        for (int i = 0; i < N; i++) {
            const double lref = tgt[i] < 0 ? 0.0 : ref_lse[i] - to_f32(h[(size_t)i * Vp + tgt[i]]);
            const double e = fabs(loss[i] - lref);
            loss_err = isfinite(loss[i]) ? fmax(loss_err, e) : INFINITY;
            for (int c = 0; c < Vp; c++) {
                const double g = to_f32(out[(size_t)i * Vp + c]);
                if (tgt[i] < 0 || c >= V) {
                    bad_zero += g != 0.0;
                    continue;
                }
                const double x = to_f32(h[(size_t)i * Vp + c]);
                const double gref = dscale * (exp(x - ref_lse[i]) - (c == tgt[i] ? 1.0 : 0.0));
                const double excess = fabs(g - gref) - (rel * fabs(gref) + abs_tol);
                g_excess = isfinite(g) ? fmax(g_excess, excess) : INFINITY;
            }
        }
        printf("%s cross-entropy N=%d V=%d Vp=%d: max loss err %.2e, dlogit err beyond rounding %.2e, nonzero padding/ignored %ld\n",
               name, N, V, Vp, loss_err, g_excess, bad_zero);
        CHECK(loss_err <= 1e-4);
        CHECK(g_excess <= 0.0);
        CHECK(bad_zero == 0);
    }
    /* run to run: same bits */
    run_xent<X>(d_logits, d_losses, d_lse, d_tgt, h, out2, loss2, N, V, Vp, dscale, s);
    CHECK(memcmp(out, out2, n * sizeof(X)) == 0);
    CHECK(memcmp(loss, loss2, N * sizeof(float)) == 0);
    cudaFree(d_logits);
    cudaFree(d_losses);
    cudaFree(d_lse);
    cudaFree(d_tgt);
    free(h);
    free(out);
    free(out2);
    free(loss);
    free(loss2);
    free(ref_lse);
    free(tgt);
}

/* The LM head's chunk of GPT-2 124M (8192 rows, bf16), 10 runs in place. */
static void time_chunk(cudaStream_t s) {
    const int N = 8192, V = 50257, Vp = 50304, reps = 10;
    const size_t n = (size_t)N * Vp;
    tg_error err = {};
    tg_bf16 *d_logits, *h = (tg_bf16 *)malloc(n * sizeof(tg_bf16));
    float *d_losses, *d_lse, ms = 0.0f;
    int32_t *d_tgt, *tgt = (int32_t *)malloc(N * sizeof(int32_t));
    cudaEvent_t e0, e1;
    tg_rng r;
    tg_rng_init(&r, 5);
    for (size_t i = 0; i < n; i++) h[i] = __float2bfloat16_rn((i % Vp) < (size_t)V ? tg_rng_normal(&r) : 0.0f);
    for (int i = 0; i < N; i++) tgt[i] = (int32_t)tg_rng_below(&r, (uint64_t)V);
    CU(cudaMalloc(&d_logits, n * sizeof(tg_bf16)));
    CU(cudaMalloc(&d_losses, N * sizeof(float)));
    CU(cudaMalloc(&d_lse, N * sizeof(float)));
    CU(cudaMalloc(&d_tgt, N * sizeof(int32_t)));
    CU(cudaMemcpy(d_tgt, tgt, N * sizeof(int32_t), cudaMemcpyHostToDevice));
    CU(cudaEventCreate(&e0));
    CU(cudaEventCreate(&e1));
    /* in place, over and over: from the second run on the input is the previous dlogits, which
     * costs the same (every row valid; the kernels' work does not depend on the values) */
    CU(cudaMemcpy(d_logits, h, n * sizeof(tg_bf16), cudaMemcpyHostToDevice));
    for (int i = 0; i <= reps; i++) { /* the first is a warm-up */
        if (i == 1) CU(cudaEventRecord(e0, s));
        CHECK_OK(tg_cuda_crossentropy_forward<tg_bf16>(d_losses, d_lse, d_logits, d_tgt, N, V, Vp, s, &err), &err);
        CHECK_OK(tg_cuda_crossentropy_backward<tg_bf16>(d_logits, d_lse, d_tgt, 1.0f / N, N, V, Vp, s, &err), &err);
    }
    CU(cudaEventRecord(e1, s));
    CU(cudaEventSynchronize(e1));
    CU(cudaEventElapsedTime(&ms, e0, e1));
    {
        const double gb = (double)n * sizeof(tg_bf16) / 1e9, t = ms / reps;
        printf("  timing cross-entropy N=%d V=%d bf16: %.3f ms per chunk (%.0f GB/s for its 3 passes over the logits)\n",
               N, V, t, 3 * gb / (t * 1e-3));
    }
    cudaFree(d_logits);
    cudaFree(d_losses);
    cudaFree(d_lse);
    cudaFree(d_tgt);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    free(h);
    free(tgt);
}

/* ---- LayerNorm backward ---- */

/* norm-wise ||a - b|| / ||b|| over n doubles-vs-floats */
static double rel_err_d(const float *a, const double *b, size_t n) {
    double d = 0.0, r = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double x = (double)a[i] - b[i];
        d += isfinite(a[i]) ? x * x : INFINITY;
        r += b[i] * b[i];
    }
    return r == 0.0 ? (d == 0.0 ? 0.0 : INFINITY) : sqrt(d / r);
}

/* The device side of one LayerNorm backward call: (N, C) dout, x, dx; w (C); mean, rstd (N);
 * sums: dw | db | dsum (3C); partial: the kernels' scratch. */
template <typename X> struct ln_dev {
    X *dout, *x, *dx, *w;
    float *mean, *rstd, *sums, *partial;
};
template <typename X> static void ln_dev_alloc(ln_dev<X> *d, int N, int C) {
    const size_t n = (size_t)N * C;
    CU(cudaMalloc(&d->dout, n * sizeof(X)));
    CU(cudaMalloc(&d->x, n * sizeof(X)));
    CU(cudaMalloc(&d->dx, n * sizeof(X)));
    CU(cudaMalloc(&d->w, C * sizeof(X)));
    CU(cudaMalloc(&d->mean, N * sizeof(float)));
    CU(cudaMalloc(&d->rstd, N * sizeof(float)));
    CU(cudaMalloc(&d->sums, 3 * C * sizeof(float)));
    CU(cudaMalloc(&d->partial, (size_t)TG_CUDA_COL_CHUNKS * 4 * C * sizeof(float)));
}
template <typename X> static void ln_dev_free(ln_dev<X> *d) {
    cudaFree(d->dout);
    cudaFree(d->x);
    cudaFree(d->dx);
    cudaFree(d->w);
    cudaFree(d->mean);
    cudaFree(d->rstd);
    cudaFree(d->sums);
    cudaFree(d->partial);
}
/* dx += the backward, into d->sums (dsum only when with_sum). */
template <typename X> static void ln_dev_run(const ln_dev<X> *d, int N, int C, int with_sum, cudaStream_t s) {
    tg_error err = {};
    CHECK_OK(tg_cuda_layernorm_backward<X>(d->dx, d->sums, d->sums + C, with_sum ? d->sums + 2 * C : NULL, d->partial,
                                           d->dout, d->x, d->mean, d->rstd, d->w, N, C, s, &err),
             &err);
}

/* kernel: which one this shape takes (printed) */
template <typename X> static void ln_case(const char *name, const char *kernel, int N, int C, cudaStream_t s) {
    const size_t n = (size_t)N * C;
    const double tol_dx = sizeof(X) == 2 ? 1e-2 : 1e-5, tol_sum = 1e-5;
    X *h_dout = (X *)malloc(n * sizeof(X)), *h_x = (X *)malloc(n * sizeof(X)), *h_dx0 = (X *)malloc(n * sizeof(X));
    X *h_w = (X *)malloc(C * sizeof(X)), *h_dx = (X *)malloc(n * sizeof(X)), *h_dx_first = (X *)malloc(n * sizeof(X));
    float *h_mean = (float *)malloc(N * sizeof(float)), *h_rstd = (float *)malloc(N * sizeof(float));
    float *f_dx = (float *)malloc(n * sizeof(float)), *sums = (float *)malloc(3 * C * sizeof(float)),
          *sums_first = (float *)malloc(3 * C * sizeof(float));
    double *ref_dx = (double *)malloc(n * sizeof(double)), *ref = (double *)calloc(3 * C, sizeof(double));
    ln_dev<X> d;
    tg_rng r;
    tg_rng_init(&r, 21);
    for (size_t i = 0; i < n; i++) {
        h_dout[i] = from_f32<X>(tg_rng_normal(&r));
        h_x[i] = from_f32<X>(0.5f + 2.0f * tg_rng_normal(&r));
        h_dx0[i] = from_f32<X>(tg_rng_normal(&r));
    }
    for (int c = 0; c < C; c++) h_w[c] = from_f32<X>(1.0f + 0.3f * tg_rng_normal(&r));
    for (int i = 0; i < N; i++) { /* the forward's statistics, rounded to float as it stores them */
        double mu = 0.0, var = 0.0;
        for (int c = 0; c < C; c++) mu += to_f32(h_x[(size_t)i * C + c]);
        mu /= C;
        for (int c = 0; c < C; c++) var += (to_f32(h_x[(size_t)i * C + c]) - mu) * (to_f32(h_x[(size_t)i * C + c]) - mu);
        h_mean[i] = (float)mu;
        h_rstd[i] = (float)(1.0 / sqrt(var / C + 1e-5));
    }
    for (int i = 0; i < N; i++) { /* dx = dx0 + (dn - mean(dn) - n mean(dn n)) rstd, dn = dout w */
        const double mu = h_mean[i], rs = h_rstd[i];
        double m1 = 0.0, m2 = 0.0;
        for (int c = 0; c < C; c++) {
            const size_t k = (size_t)i * C + c;
            const double nn = (to_f32(h_x[k]) - mu) * rs, dn = (double)to_f32(h_dout[k]) * to_f32(h_w[c]);
            m1 += dn;
            m2 += dn * nn;
        }
        m1 /= C;
        m2 /= C;
        for (int c = 0; c < C; c++) {
            const size_t k = (size_t)i * C + c;
            const double nn = (to_f32(h_x[k]) - mu) * rs, d = to_f32(h_dout[k]);
            ref_dx[k] = to_f32(h_dx0[k]) + (d * to_f32(h_w[c]) - m1 - nn * m2) * rs;
            ref[c] += d * nn; /* dw */
            ref[C + c] += d;  /* db */
        }
    }
    ln_dev_alloc(&d, N, C);
    CU(cudaMemcpy(d.dout, h_dout, n * sizeof(X), cudaMemcpyHostToDevice));
    CU(cudaMemcpy(d.x, h_x, n * sizeof(X), cudaMemcpyHostToDevice));
    CU(cudaMemcpy(d.w, h_w, C * sizeof(X), cudaMemcpyHostToDevice));
    CU(cudaMemcpy(d.mean, h_mean, N * sizeof(float), cudaMemcpyHostToDevice));
    CU(cudaMemcpy(d.rstd, h_rstd, N * sizeof(float), cudaMemcpyHostToDevice));
    for (int with_sum = 0; with_sum <= 1; with_sum++)
        for (int rep = 0; rep < 2; rep++) { /* the second run must give the first's bits */
            CU(cudaMemcpy(d.dx, h_dx0, n * sizeof(X), cudaMemcpyHostToDevice));
            CU(cudaMemset(d.sums, 0, 3 * C * sizeof(float)));
            ln_dev_run(&d, N, C, with_sum, s);
            CU(cudaStreamSynchronize(s));
            CU(cudaMemcpy(h_dx, d.dx, n * sizeof(X), cudaMemcpyDeviceToHost));
            CU(cudaMemcpy(sums, d.sums, 3 * C * sizeof(float), cudaMemcpyDeviceToHost));
            if (rep == 1) {
                CHECKF(memcmp(h_dx_first, h_dx, n * sizeof(X)) == 0 &&
                           memcmp(sums_first, sums, (with_sum ? 3 : 2) * C * sizeof(float)) == 0,
                       "%s C=%d dsum=%d: a second run gave other bits", name, C, with_sum);
                continue;
            }
            memcpy(h_dx_first, h_dx, n * sizeof(X));
            memcpy(sums_first, sums, 3 * C * sizeof(float));
            for (size_t i = 0; i < n; i++) f_dx[i] = to_f32(h_dx[i]);
            for (int c = 0; c < C; c++) ref[2 * C + c] = 0.0; /* dsum: of the dx the kernel stored */
            for (size_t i = 0; i < n; i++) ref[2 * C + i % C] += f_dx[i];
            const double e_dx = rel_err_d(f_dx, ref_dx, n), e_dw = rel_err_d(sums, ref, C),
                         e_db = rel_err_d(sums + C, ref + C, C),
                         e_ds = with_sum ? rel_err_d(sums + 2 * C, ref + 2 * C, C) : 0.0;
            printf("%s layernorm-backward %-8s N=%d C=%d dsum=%d: rel err dx %.2e dw %.2e db %.2e dsum %.2e\n", name,
                   kernel, N, C, with_sum, e_dx, e_dw, e_db, e_ds);
            CHECK(e_dx < tol_dx);
            CHECK(e_dw < tol_sum && e_db < tol_sum && e_ds < tol_sum);
        }
    ln_dev_free(&d);
    free(h_dout);
    free(h_x);
    free(h_dx0);
    free(h_w);
    free(h_dx);
    free(h_dx_first);
    free(h_mean);
    free(h_rstd);
    free(f_dx);
    free(sums);
    free(sums_first);
    free(ref_dx);
    free(ref);
}

/* The backward at GPT-2 124M's shape (N = 65536, C = 768, bf16, with dsum), 10 runs each; the
 * traffic is 4 (N, C) tensors (dout, x, dx read and written). */
static void ln_time(cudaStream_t s) {
    const int N = 65536, C = 768, reps = 10;
    const size_t n = (size_t)N * C;
    ln_dev<tg_bf16> d;
    tg_bf16 *h = (tg_bf16 *)malloc(n * sizeof(tg_bf16));
    float *hm = (float *)malloc(N * sizeof(float));
    cudaEvent_t e0, e1;
    tg_rng r;
    tg_rng_init(&r, 8);
    for (size_t i = 0; i < n; i++) h[i] = __float2bfloat16_rn(tg_rng_normal(&r));
    for (int i = 0; i < N; i++) hm[i] = 1.0f;
    ln_dev_alloc(&d, N, C);
    CU(cudaMemcpy(d.dout, h, n * 2, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(d.x, h, n * 2, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(d.dx, h, n * 2, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(d.w, h, C * 2, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(d.mean, hm, N * 4, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(d.rstd, hm, N * 4, cudaMemcpyHostToDevice));
    CU(cudaEventCreate(&e0));
    CU(cudaEventCreate(&e1));
    {
        float ms = 0.0f;
        for (int i = 0; i <= reps; i++) { /* the first is a warm-up */
            if (i == 1) CU(cudaEventRecord(e0, s));
            ln_dev_run(&d, N, C, 1, s);
        }
        CU(cudaEventRecord(e1, s));
        CU(cudaEventSynchronize(e1));
        CU(cudaEventElapsedTime(&ms, e0, e1));
        ms /= reps;
        printf("  timing layernorm-backward N=%d C=%d bf16: %.3f ms (%.0f GB/s over 4 tensors; x25 a step: %.2f ms)\n",
               N, C, ms, 4.0 * n * 2 / (ms * 1e-3) / 1e9, 25 * ms);
    }
    ln_dev_free(&d);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    free(h);
    free(hm);
}

int main(void) {
    cuda_test_require_device();
    cudaStream_t s;
    CU(cudaStreamCreate(&s));
    /* GPT-2's vocabulary */
    run_case<tg_bf16>("bf16", 400, 50257, 50304, s);
    run_case<float>("fp32", 40, 50257, 50304, s);
    /* a row with a partial last vector (V = 1001) */
    run_case<tg_bf16>("bf16", 37, 1001, 1024, s);
    run_case<float>("fp32", 300, 1001, 1024, s);
    /* Vp not a multiple of the 16-byte vector: the scalar kernels; then a long row (V = 100000) */
    run_case<tg_bf16>("bf16", 20, 99, 100, s);
    run_case<tg_bf16>("bf16", 20, 100000, 100032, s);
    /* LayerNorm backward: GPT-2 124M's and 350M's C (3 and 4 vectors a lane), a short row with
     * idle lanes, fp32 within the register kernels (C = 384); past them: GPT-2 1.5B's C = 1600 in
     * bf16 and C = 768 in fp32 (row cache) */
    ln_case<tg_bf16>("bf16", "register", 1000, 768, s);
    ln_case<tg_bf16>("bf16", "register", 513, 1024, s);
    ln_case<tg_bf16>("bf16", "register", 300, 200, s);
    ln_case<float>("fp32", "register", 700, 384, s);
    ln_case<tg_bf16>("bf16", "rowcache", 300, 1600, s);
    ln_case<float>("fp32", "rowcache", 200, 768, s);
    if (!getenv("TG_KERNELS_QUICK")) {
        time_chunk(s);
        ln_time(s);
    }
    CU(cudaStreamDestroy(s));
    TEST_MAIN_END();
}
