/* tests/cuda/test_cuda_llama_kernels.cu — Llama's CUDA kernels (model/cuda/llama_kernels.cu)
 * against the CPU reference functions they mirror (model/cpu/llama_kernels.c), in fp32 and bf16.
 *
 * Two ways to run the kernels, the same cases and checks for both:
 *   (no argument)  on the GPU, through the launchers of llama_ops.cuh (exits 77 without a GPU);
 *   --host         their bodies (llama_kernels.cuh, __host__ __device__) on the host over the
 *                  launchers' index spaces, warp sums emulated lane by lane: the index arithmetic,
 *                  the layouts and the formulas checked without a GPU (what the GPU adds: the
 *                  launch shapes, device expf/sqrtf, FMA contraction and memory behaviour).
 *
 * Every input is drawn in fp32 and rounded to X first, so both sides read the same values; the
 * CPU reference then computes in fp32 as the backend does. What may differ:
 *  - fp32: the order of the row sums (warp trees vs a serial loop; the RMSNorm statistics and
 *    its weight-gradient column sums), FMA contraction in the GPU's products and expf's last
 *    bit. Each is an error of a few fp32 ulps relative to the terms (~1e-6 here: rows of <= 2048
 *    terms of similar size); the checks allow 1e-5, while a wrong index, sign or missing term
 *    gives errors of order 1.
 *  - bf16: one rounding of each output to bf16 (8 significant bits: at most 2^-9 relative), and
 *    a value within an fp32 ulp of a rounding boundary may round the other way: one bf16 ulp,
 *    at most 2^-7 relative. Elementwise outputs are checked to 2^-7 relative (+1e-5 absolute for
 *    values near 0). Outputs that are a difference of larger terms (RMSNorm's dx) are checked
 *    norm-wise to 4e-3 (twice the unit roundoff 2^-9) in bf16 and 1e-5 in fp32; fp32 outputs of
 *    bf16 inputs (rstd, the weight gradient) to 1e-5 like fp32.
 * Outputs start as NaN (every element must be written), and each kernel runs twice: the bits
 * must not change (no atomics).
 *
 * Shapes: rows not a multiple of the 8-row blocks, C not a multiple of 32 (the lane loops), more
 * rows than TG_CUDA_COL_CHUNKS (several rows per column-sum chunk), a long row (C = 2048); RoPE
 * with GQA (4 query heads over 2 KV heads), MQA and MHA, head sizes 16 and 64, plain and Llama 3
 * scaled frequencies, positions row % T over several sequences, and the KV-cache decoder's rows at
 * absolute positions t0 + r. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/cuda/llama_kernels.cuh"
#include "model/cuda/llama_ops.cuh"

extern "C" {
#include "core/rng.h"
#include "model/cpu/llama_kernels.h"
#include "model/llama.h"
}
#include "cuda_test.h"
#include "tg_test.h"

static float to_f32(float x) { return x; }
static float to_f32(tg_bf16 x) { return __bfloat162float(x); }
template <typename X> static X from_f32(float x);
template <> float from_f32<float>(float x) { return x; }
template <> tg_bf16 from_f32<tg_bf16>(float x) { return __float2bfloat16_rn(x); }

/* n values scale * N(0,1) rounded to X: host X copy in hx, the same values as fp32 in hf. */
template <typename X> static void randn(X *hx, float *hf, size_t n, float scale, tg_rng *r) {
    for (size_t i = 0; i < n; i++) {
        hx[i] = from_f32<X>(scale * tg_rng_normal(r));
        hf[i] = to_f32(hx[i]);
    }
}
template <typename X> static X *alloc_x(size_t n) { return (X *)malloc((n ? n : 1) * sizeof(X)); }
static float *alloc_f(size_t n) { return (float *)malloc((n ? n : 1) * sizeof(float)); }
template <typename X> static void fill_nan(X *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = from_f32<X>(NAN);
}
template <typename X> static float *to_floats(const X *p, size_t n) {
    float *f = alloc_f(n);
    for (size_t i = 0; i < n; i++) f[i] = to_f32(p[i]);
    return f;
}

/* ---- the two ways to run a kernel: host arrays in and out ---- */

static int g_host; /* --host: the kernel bodies on the host */
static cudaStream_t g_stream;

/* device copies of host arrays, and back */
template <typename X> static X *dev(const X *h, size_t n) {
    X *d = NULL;
    CU(cudaMalloc((void **)&d, (n ? n : 1) * sizeof(X)));
    if (h) CU(cudaMemcpy(d, h, n * sizeof(X), cudaMemcpyHostToDevice));
    return d;
}
template <typename X> static void back(X *h, X *d, size_t n) {
    CU(cudaStreamSynchronize(g_stream));
    CU(cudaMemcpy(h, d, n * sizeof(X), cudaMemcpyDeviceToHost));
    CU(cudaFree(d));
}

/* The warp sum of 32 lanes' partial values as tg_warp_sum does it (xor butterfly: every lane ends
 * with the same bits). */
static float warp_sum_host(float v[32]) {
    for (int o = 16; o > 0; o >>= 1) {
        float t[32];
        for (int l = 0; l < 32; l++) t[l] = v[l] + v[l ^ o];
        memcpy(v, t, sizeof t);
    }
    return v[0];
}

template <typename X>
static void run_rmsnorm_fwd(X *res, X *out, float *rstd, const X *a, const X *b, const X *w, int N, int C, float eps) {
    tg_error err = {};
    const size_t n = (size_t)N * C;
    if (g_host) {
        for (int row = 0; row < N; row++) {
            const size_t off = (size_t)row * C;
            float part[32];
            for (int l = 0; l < 32; l++) part[l] = llama_rms_sumsq<X>(res, a, b, off, C, l, 32);
            const float r = llama_rms_rstd(warp_sum_host(part), C, eps);
            for (int l = 0; l < 32; l++) llama_rms_scale<X>(out, b ? res : a, w, off, C, r, l, 32);
            rstd[row] = r;
        }
        return;
    }
    X *d_res = b ? dev<X>(NULL, n) : NULL, *d_out = dev<X>(NULL, n), *d_a = dev(a, n), *d_b = b ? dev(b, n) : NULL;
    X *d_w = dev(w, C);
    float *d_rstd = dev<float>(NULL, N);
    CHECK_OK(tg_cuda_residual_rmsnorm_forward<X>(d_res, d_out, d_rstd, d_a, d_b, d_w, N, C, eps, g_stream, &err), &err);
    if (b) back(res, d_res, n);
    back(out, d_out, n);
    back(rstd, d_rstd, N);
    CU(cudaFree(d_a));
    CU(cudaFree(d_b));
    CU(cudaFree(d_w));
}

/* dx and dw accumulate into what they hold. */
template <typename X>
static void run_rmsnorm_bwd(X *dx, float *dw, const X *dout, const X *x, const float *rstd, const X *w, int N, int C) {
    tg_error err = {};
    const size_t n = (size_t)N * C;
    if (g_host) {
        for (int row = 0; row < N; row++) {
            const size_t off = (size_t)row * C;
            float part[32];
            for (int l = 0; l < 32; l++) part[l] = llama_rms_dot<X>(dout, x, w, off, C, l, 32);
            const float dot = warp_sum_host(part);
            for (int l = 0; l < 32; l++) llama_rms_dx<X>(dx, dout, x, w, off, C, rstd[row], dot, l, 32);
        }
        int chunks = 0, rows = 0;
        llama_rms_dw_chunks(N, &chunks, &rows);
        CHECK(chunks <= TG_CUDA_COL_CHUNKS && (size_t)chunks * rows >= (size_t)N);
        for (int c = 0; c < C; c++) { /* the second pass in chunk order (the finish kernel's order differs) */
            float sum = 0.0f;
            for (int k = 0; k < chunks; k++) sum += llama_rms_dw_part<X>(dout, x, rstd, N, C, rows, k, c);
            dw[c] += sum;
        }
        return;
    }
    X *d_dx = dev(dx, n), *d_dout = dev(dout, n), *d_x = dev(x, n), *d_w = dev(w, C);
    float *d_dw = dev(dw, C), *d_rstd = dev(rstd, N), *d_part = dev<float>(NULL, (size_t)TG_CUDA_COL_CHUNKS * C);
    CHECK_OK(tg_cuda_rmsnorm_backward<X>(d_dx, d_dw, d_part, d_dout, d_x, d_rstd, d_w, N, C, g_stream, &err), &err);
    back(dx, d_dx, n);
    back(dw, d_dw, C);
    CU(cudaFree(d_dout));
    CU(cudaFree(d_x));
    CU(cudaFree(d_w));
    CU(cudaFree(d_rstd));
    CU(cudaFree(d_part));
}

template <typename X>
static void run_qkv_fwd(X *qkv, const X *raw, const float *ct, const float *st, int B, int T, int NH, int NKV, int HS) {
    tg_error err = {};
    const size_t n3 = (size_t)B * T * 3 * NH * HS, nraw = (size_t)B * T * (NH + 2 * NKV) * HS, nt = (size_t)T * (HS / 2);
    if (g_host) {
        const size_t pairs = (size_t)B * T * 3 * NH * (HS / 2);
        for (size_t idx = 0; idx < pairs; idx++) llama_qkv_forward_at<X>(qkv, raw, ct, st, T, NH, NKV, HS, idx);
        return;
    }
    X *d_qkv = dev<X>(qkv, n3), *d_raw = dev(raw, nraw); /* qkv: its NaN poison too */
    float *d_ct = dev(ct, nt), *d_st = dev(st, nt);
    CHECK_OK(tg_cuda_llama_qkv_forward<X>(d_qkv, d_raw, d_ct, d_st, B, T, NH, NKV, HS, g_stream, &err), &err);
    back(qkv, d_qkv, n3);
    CU(cudaFree(d_raw));
    CU(cudaFree(d_ct));
    CU(cudaFree(d_st));
}

template <typename X>
static void run_qkv_bwd(X *draw, const X *dqkv, const float *ct, const float *st, int B, int T, int NH, int NKV, int HS) {
    tg_error err = {};
    const size_t n3 = (size_t)B * T * 3 * NH * HS, nraw = (size_t)B * T * (NH + 2 * NKV) * HS, nt = (size_t)T * (HS / 2);
    if (g_host) {
        const size_t pairs = (size_t)B * T * (NH + 2 * NKV) * (HS / 2);
        for (size_t idx = 0; idx < pairs; idx++) llama_qkv_backward_at<X>(draw, dqkv, ct, st, T, NH, NKV, HS, idx);
        return;
    }
    X *d_draw = dev<X>(draw, nraw), *d_dqkv = dev(dqkv, n3);
    float *d_ct = dev(ct, nt), *d_st = dev(st, nt);
    CHECK_OK(tg_cuda_llama_qkv_backward<X>(d_draw, d_dqkv, d_ct, d_st, B, T, NH, NKV, HS, g_stream, &err), &err);
    back(draw, d_draw, nraw);
    CU(cudaFree(d_dqkv));
    CU(cudaFree(d_ct));
    CU(cudaFree(d_st));
}

/* RoPE in the projection's layout (cuDNN's path); in place when out == in. */
template <typename X>
static void run_rope(X *out, const X *in, const float *ct, const float *st, int B, int T, int NH, int NKV, int HS,
                     int inverse) {
    tg_error err = {};
    const size_t nraw = (size_t)B * T * (NH + 2 * NKV) * HS, nt = (size_t)T * (HS / 2);
    if (g_host) {
        const size_t pairs = (size_t)B * T * (NH + 2 * NKV) * (HS / 2);
        for (size_t idx = 0; idx < pairs; idx++) llama_rope_raw_at<X>(out, in, ct, st, T, NH, NKV, HS, inverse, idx);
        return;
    }
    X *d_out = dev<X>(out, nraw), *d_in = out == in ? d_out : dev(in, nraw);
    float *d_ct = dev(ct, nt), *d_st = dev(st, nt);
    CHECK_OK(tg_cuda_llama_rope<X>(d_out, d_in, d_ct, d_st, B, T, NH, NKV, HS, inverse, g_stream, &err), &err);
    if (d_in != d_out) CU(cudaFree(d_in));
    back(out, d_out, nraw);
    CU(cudaFree(d_ct));
    CU(cudaFree(d_st));
}

/* RoPE of the KV-cache decoder's n rows at positions t0 + r (t0 read from device memory). */
template <typename X>
static void run_rope_at(X *out, const X *in, const float *ct, const float *st, int t0, int T, int n, int NH, int NKV,
                        int HS) {
    tg_error err = {};
    const size_t nraw = (size_t)n * (NH + 2 * NKV) * HS, nt = (size_t)T * (HS / 2);
    if (g_host) {
        const size_t pairs = (size_t)n * (NH + 2 * NKV) * (HS / 2);
        for (size_t idx = 0; idx < pairs; idx++) llama_rope_pos_at<X>(out, in, ct, st, t0, NH, NKV, HS, idx);
        return;
    }
    X *d_out = dev<X>(out, nraw), *d_in = out == in ? d_out : dev(in, nraw);
    float *d_ct = dev(ct, nt), *d_st = dev(st, nt);
    int32_t *d_pos = dev(&t0, 1);
    CHECK_OK(tg_cuda_llama_rope_at<X>(d_out, d_in, d_ct, d_st, d_pos, n, NH, NKV, HS, g_stream, &err), &err);
    if (d_in != d_out) CU(cudaFree(d_in));
    back(out, d_out, nraw);
    CU(cudaFree(d_ct));
    CU(cudaFree(d_st));
    CU(cudaFree(d_pos));
}

template <typename X> static void run_swiglu_fwd(X *h, const X *gu, int N, int F) {
    tg_error err = {};
    const size_t n = (size_t)N * F;
    if (g_host) {
        for (size_t i = 0; i < n; i++) llama_swiglu_forward_at<X>(h, gu, F, i);
        return;
    }
    X *d_h = dev<X>(h, n), *d_gu = dev(gu, 2 * n);
    CHECK_OK(tg_cuda_swiglu_forward<X>(d_h, d_gu, N, F, g_stream, &err), &err);
    back(h, d_h, n);
    CU(cudaFree(d_gu));
}

template <typename X> static void run_swiglu_bwd(X *dgu, const X *dh, const X *gu, int N, int F) {
    tg_error err = {};
    const size_t n = (size_t)N * F;
    if (g_host) {
        for (size_t i = 0; i < n; i++) llama_swiglu_backward_at<X>(dgu, dh, gu, F, i);
        return;
    }
    X *d_dgu = dev<X>(dgu, 2 * n), *d_dh = dev(dh, n), *d_gu = dev(gu, 2 * n);
    CHECK_OK(tg_cuda_swiglu_backward<X>(d_dgu, d_dh, d_gu, N, F, g_stream, &err), &err);
    back(dgu, d_dgu, 2 * n);
    CU(cudaFree(d_dh));
    CU(cudaFree(d_gu));
}

/* ---- checks ---- */

/* Largest |got - ref| - (rel |ref| + abs) over n (<= 0: within tolerance; NaN counts as over). */
static void check_elem(const char *what, const float *got, const float *ref, size_t n, double rel, double abs_tol) {
    double worst = -INFINITY;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        const double e = fabs((double)got[i] - ref[i]) - (rel * fabs((double)ref[i]) + abs_tol);
        if (!(e <= worst)) {
            worst = isnan(e) ? INFINITY : e;
            at = i;
        }
    }
    printf("  %-34s max excess %.2e (at %zu: got %.7g ref %.7g)\n", what, worst, at, n ? got[at] : 0.f,
           n ? ref[at] : 0.f);
    CHECKF(worst <= 0.0, "%s: outside tolerance", what);
}

/* ||got - ref|| / ||ref|| <= tol (NaN fails) */
static void check_norm(const char *what, const float *got, const float *ref, size_t n, double tol) {
    double d = 0.0, r = 0.0;
    for (size_t i = 0; i < n; i++) {
        d += ((double)got[i] - ref[i]) * ((double)got[i] - ref[i]);
        r += (double)ref[i] * ref[i];
    }
    const double e = r > 0 ? sqrt(d / r) : sqrt(d);
    printf("  %-34s norm-wise rel err %.2e (tol %.1e)\n", what, e, tol);
    CHECKF(e <= tol, "%s: rel err %.3g > %.3g", what, e, tol);
}

static void check_same_bits(const char *what, const void *a, const void *b, size_t bytes) {
    CHECKF(memcmp(a, b, bytes) == 0, "%s: a second run gave other bits", what);
}

static const double BF16_REL = 1.0 / 128, ABS = 1e-5;
template <typename X> static double elem_rel() { return sizeof(X) == 2 ? BF16_REL : 1e-5; }
template <typename X> static double norm_tol() { return sizeof(X) == 2 ? 4e-3 : 1e-5; }

/* ---- cases ---- */

/* RMSNorm forward (with and without the residual add) and backward. */
template <typename X> static void rmsnorm_case(const char *tname, int N, int C) {
    const float eps = 1e-5f;
    const size_t n = (size_t)N * C;
    tg_rng r;
    tg_rng_init(&r, (uint64_t)N * 131 + C);
    X *ha = alloc_x<X>(n), *hb = alloc_x<X>(n), *hw = alloc_x<X>(C), *hdy = alloc_x<X>(n), *hdx0 = alloc_x<X>(n);
    X *hx = alloc_x<X>(n), *res = alloc_x<X>(n), *out = alloc_x<X>(n), *dx = alloc_x<X>(n);
    float *fa = alloc_f(n), *fb = alloc_f(n), *fw = alloc_f(C), *fdy = alloc_f(n), *fdx = alloc_f(n), *fx = alloc_f(n);
    float *ref_out = alloc_f(n), *ref_rstd = alloc_f(N), *ref_dw = alloc_f(C), *dw0 = alloc_f(C);
    float *rstd = alloc_f(N), *dw = alloc_f(C);
    float *keep[2][5] = {};
    printf("%s rmsnorm N=%d C=%d\n", tname, N, C);
    randn<X>(ha, fa, n, 1.0f, &r);
    randn<X>(hb, fb, n, 0.5f, &r);
    for (int c = 0; c < C; c++) { /* non-unit weights, some negative */
        hw[c] = from_f32<X>(1.0f + 0.5f * tg_rng_normal(&r));
        fw[c] = to_f32(hw[c]);
    }
    randn<X>(hdy, fdy, n, 1.0f, &r);
    randn<X>(hdx0, fdx, n, 0.3f, &r); /* dx accumulates into this */
    for (int c = 0; c < C; c++) dw0[c] = ref_dw[c] = 0.1f * tg_rng_normal(&r);
    /* the CPU side: x = a + b rounded to X, as the kernel stores the residual */
    for (size_t i = 0; i < n; i++) {
        hx[i] = from_f32<X>(fa[i] + fb[i]);
        fx[i] = to_f32(hx[i]);
    }
    tg_llama_rmsnorm_forward(ref_out, ref_rstd, fx, fw, N, C, eps);
    tg_llama_rmsnorm_backward(fdx, ref_dw, fdy, fx, fw, ref_rstd, N, C);
    for (int run = 0; run < 2; run++) {
        fill_nan(res, n);
        fill_nan(out, n);
        for (int i = 0; i < N; i++) rstd[i] = NAN;
        memcpy(dx, hdx0, n * sizeof(X));
        memcpy(dw, dw0, C * sizeof(float));
        run_rmsnorm_fwd<X>(res, out, rstd, ha, hb, hw, N, C, eps);
        /* backward from the reference rstd and x: checked on its own */
        run_rmsnorm_bwd<X>(dx, dw, hdy, hx, ref_rstd, hw, N, C);
        keep[run][0] = to_floats(res, n);
        keep[run][1] = to_floats(out, n);
        keep[run][2] = to_floats(rstd, N);
        keep[run][3] = to_floats(dx, n);
        keep[run][4] = to_floats(dw, C);
    }
    check_elem("residual (a + b rounded)", keep[0][0], fx, n, 0.0, 0.0);
    check_elem("out", keep[0][1], ref_out, n, elem_rel<X>(), ABS);
    check_elem("rstd", keep[0][2], ref_rstd, N, 1e-5, 0.0);
    check_norm("dx (accumulated)", keep[0][3], fdx, n, norm_tol<X>());
    check_norm("dweight (accumulated, fp32)", keep[0][4], ref_dw, C, 1e-5);
    const size_t sizes[5] = {n, n, (size_t)N, n, (size_t)C};
    for (int k = 0; k < 5; k++) {
        check_same_bits("rmsnorm run to run", keep[0][k], keep[1][k], sizes[k] * sizeof(float));
        free(keep[0][k]);
        free(keep[1][k]);
    }
    /* without the residual (b = NULL: x = a, res not written) */
    fill_nan(out, n);
    run_rmsnorm_fwd<X>(NULL, out, rstd, ha, NULL, hw, N, C, eps);
    tg_llama_rmsnorm_forward(ref_out, ref_rstd, fa, fw, N, C, eps);
    float *o = to_floats(out, n);
    check_elem("out without residual", o, ref_out, n, elem_rel<X>(), ABS);
    free(o);
    free(ha), free(hb), free(hw), free(hdy), free(hdx0), free(hx), free(res), free(out), free(dx);
    free(fa), free(fb), free(fw), free(fdy), free(fdx), free(fx);
    free(ref_out), free(ref_rstd), free(ref_dw), free(dw0), free(rstd), free(dw);
}

/* The q|k|v re-layout with RoPE and its adjoint, against llama_cpu.c's sequence of calls. */
template <typename X>
static void rope_case(const char *tname, int B, int T, int NH, int NKV, int HS, double rope_factor) {
    const int C = NH * HS, KV = NKV * HS, QKV = C + 2 * KV, N = B * T, half = HS / 2;
    tg_gpt2_config cfg = {};
    cfg.n_embd = C;
    cfg.n_head = NH;
    cfg.rope_theta = 10000.0;
    if (rope_factor > 0) { /* Llama 3.1's values, with a short original context so all 3 bands occur */
        cfg.rope_factor = rope_factor;
        cfg.rope_low_freq_factor = 1.0;
        cfg.rope_high_freq_factor = 4.0;
        cfg.rope_original_max_pos = 64;
    }
    float *inv = alloc_f(half), *ct = alloc_f((size_t)T * half), *st = alloc_f((size_t)T * half);
    tg_llama_rope_inv_freq(&cfg, inv);
    tg_llama_rope_tables(ct, st, T, half, inv);
    const size_t nraw = (size_t)N * QKV, n3 = (size_t)N * 3 * C;
    tg_rng r;
    tg_rng_init(&r, (uint64_t)NH * 1000 + NKV * 10 + HS);
    X *hraw = alloc_x<X>(nraw), *hd3 = alloc_x<X>(n3), *qkv = alloc_x<X>(n3), *draw = alloc_x<X>(nraw);
    float *fraw = alloc_f(nraw), *fd3 = alloc_f(n3), *kv = alloc_f((size_t)N * KV);
    float *ref3 = (float *)calloc(n3, 4), *refraw = (float *)calloc(nraw, 4);
    float *keep[2][2];
    printf("%s rope re-layout B=%d T=%d NH=%d NKV=%d HS=%d%s\n", tname, B, T, NH, NKV, HS,
           rope_factor > 0 ? " (llama3 scaling)" : "");
    randn<X>(hraw, fraw, nraw, 1.0f, &r);
    randn<X>(hd3, fd3, n3, 1.0f, &r);
    /* forward reference: q roped in place in the 3C rows; k roped, then expanded; v expanded */
    for (int i = 0; i < N; i++) memcpy(ref3 + (size_t)i * 3 * C, fraw + (size_t)i * QKV, (size_t)C * 4);
    tg_llama_rope(ref3, 3 * (size_t)C, ct, st, B, T, NH, HS, 0);
    for (int i = 0; i < N; i++) memcpy(kv + (size_t)i * KV, fraw + (size_t)i * QKV + C, (size_t)KV * 4);
    tg_llama_rope(kv, (size_t)KV, ct, st, B, T, NKV, HS, 0);
    tg_llama_kv_expand(ref3 + C, 3 * (size_t)C, kv, (size_t)KV, N, NH, NKV, HS);
    tg_llama_kv_expand(ref3 + 2 * C, 3 * (size_t)C, fraw + C + KV, (size_t)QKV, N, NH, NKV, HS);
    /* backward reference: dq rotated back; dk reduced then rotated back; dv reduced */
    for (int i = 0; i < N; i++) memcpy(refraw + (size_t)i * QKV, fd3 + (size_t)i * 3 * C, (size_t)C * 4);
    tg_llama_rope(refraw, (size_t)QKV, ct, st, B, T, NH, HS, 1);
    tg_llama_kv_reduce(kv, fd3 + C, 3 * (size_t)C, N, NH, NKV, HS);
    tg_llama_rope(kv, (size_t)KV, ct, st, B, T, NKV, HS, 1);
    for (int i = 0; i < N; i++) memcpy(refraw + (size_t)i * QKV + C, kv + (size_t)i * KV, (size_t)KV * 4);
    tg_llama_kv_reduce(kv, fd3 + 2 * C, 3 * (size_t)C, N, NH, NKV, HS);
    for (int i = 0; i < N; i++) memcpy(refraw + (size_t)i * QKV + C + KV, kv + (size_t)i * KV, (size_t)KV * 4);
    for (int run = 0; run < 2; run++) {
        fill_nan(qkv, n3);
        fill_nan(draw, nraw);
        run_qkv_fwd<X>(qkv, hraw, ct, st, B, T, NH, NKV, HS);
        run_qkv_bwd<X>(draw, hd3, ct, st, B, T, NH, NKV, HS);
        keep[run][0] = to_floats(qkv, n3);
        keep[run][1] = to_floats(draw, nraw);
    }
    check_elem("qkv forward (rope, kv repeated)", keep[0][0], ref3, n3, elem_rel<X>(), ABS);
    /* the group sums: up to NH/NKV terms of size ~1, summed in the same order as the CPU's */
    check_elem("qkv backward (unrope, kv summed)", keep[0][1], refraw, nraw, elem_rel<X>(), ABS * (NH / NKV));
    check_same_bits("rope forward run to run", keep[0][0], keep[1][0], n3 * sizeof(float));
    check_same_bits("rope backward run to run", keep[0][1], keep[1][1], nraw * sizeof(float));
    for (int k = 0; k < 2; k++) free(keep[0][k]), free(keep[1][k]);
    {   /* cuDNN's path: RoPE in the projection's layout, forward out of place, inverse in place */
        float *ref_f = alloc_f(nraw), *ref_b = alloc_f(nraw);
        X *hgrad = alloc_x<X>(nraw);
        memcpy(ref_f, fraw, nraw * 4);
        tg_llama_rope(ref_f, (size_t)QKV, ct, st, B, T, NH, HS, 0);
        tg_llama_rope(ref_f + C, (size_t)QKV, ct, st, B, T, NKV, HS, 0);
        randn<X>(hgrad, ref_b, nraw, 1.0f, &r); /* a gradient in that layout */
        tg_llama_rope(ref_b, (size_t)QKV, ct, st, B, T, NH, HS, 1);
        tg_llama_rope(ref_b + C, (size_t)QKV, ct, st, B, T, NKV, HS, 1);
        fill_nan(draw, nraw);
        run_rope<X>(draw, hraw, ct, st, B, T, NH, NKV, HS, 0);
        float *got = to_floats(draw, nraw);
        check_elem("rope in the projection layout", got, ref_f, nraw, elem_rel<X>(), ABS);
        free(got);
        run_rope<X>(hgrad, hgrad, ct, st, B, T, NH, NKV, HS, 1);
        got = to_floats(hgrad, nraw);
        check_elem("inverse rope in place", got, ref_b, nraw, elem_rel<X>(), ABS);
        free(got), free(ref_f), free(ref_b), free(hgrad);
    }
    {   /* the KV-cache decoder's rows: n rows of one sequence from position t0 (the last rows of
         * the tables), out of place and in place, against the CPU decoder's calls (tables from t0) */
        const int n = T < 5 ? T : 5, t0 = T - n;
        const size_t nr = (size_t)n * QKV;
        float *ref = alloc_f(nr);
        X *out = alloc_x<X>(nr), *inpl = alloc_x<X>(nr);
        memcpy(ref, fraw, nr * 4);
        tg_llama_rope(ref, (size_t)QKV, ct + (size_t)t0 * half, st + (size_t)t0 * half, 1, n, NH, HS, 0);
        tg_llama_rope(ref + C, (size_t)QKV, ct + (size_t)t0 * half, st + (size_t)t0 * half, 1, n, NKV, HS, 0);
        fill_nan(out, nr);
        run_rope_at<X>(out, hraw, ct, st, t0, T, n, NH, NKV, HS);
        float *got = to_floats(out, nr);
        check_elem("rope at positions t0 + r", got, ref, nr, elem_rel<X>(), ABS);
        memcpy(inpl, hraw, nr * sizeof(X));
        run_rope_at<X>(inpl, inpl, ct, st, t0, T, n, NH, NKV, HS);
        float *got_in = to_floats(inpl, nr);
        check_same_bits("rope at positions, in place", got_in, got, nr * sizeof(float));
        free(got), free(got_in), free(ref), free(out), free(inpl);
    }
    free(inv), free(ct), free(st), free(hraw), free(hd3), free(qkv), free(draw), free(fraw), free(fd3), free(kv);
    free(ref3), free(refraw);
}

/* SwiGLU on the fused gate|up rows, forward and backward. */
template <typename X> static void swiglu_case(const char *tname, int N, int F) {
    const size_t n = (size_t)N * F;
    tg_rng r;
    tg_rng_init(&r, (uint64_t)N * 7 + F);
    X *hgu = alloc_x<X>(2 * n), *hdh = alloc_x<X>(n), *h = alloc_x<X>(n), *dgu = alloc_x<X>(2 * n);
    float *fgu = alloc_f(2 * n), *fdh = alloc_f(n), *gate = alloc_f(n), *up = alloc_f(n), *ref_h = alloc_f(n);
    float *dg = alloc_f(n), *du = alloc_f(n), *refgu = alloc_f(2 * n);
    printf("%s swiglu N=%d F=%d\n", tname, N, F);
    randn<X>(hgu, fgu, 2 * n, 3.0f, &r); /* gates well into both tails of the sigmoid */
    randn<X>(hdh, fdh, n, 1.0f, &r);
    for (int i = 0; i < N; i++) {
        memcpy(gate + (size_t)i * F, fgu + (size_t)i * 2 * F, (size_t)F * 4);
        memcpy(up + (size_t)i * F, fgu + (size_t)i * 2 * F + F, (size_t)F * 4);
    }
    tg_llama_swiglu_forward(ref_h, gate, up, n);
    tg_llama_swiglu_backward(dg, du, fdh, gate, up, n);
    for (int i = 0; i < N; i++) {
        memcpy(refgu + (size_t)i * 2 * F, dg + (size_t)i * F, (size_t)F * 4);
        memcpy(refgu + (size_t)i * 2 * F + F, du + (size_t)i * F, (size_t)F * 4);
    }
    fill_nan(h, n);
    fill_nan(dgu, 2 * n);
    run_swiglu_fwd<X>(h, hgu, N, F);
    run_swiglu_bwd<X>(dgu, hdh, hgu, N, F);
    float *go = to_floats(h, n), *gg = to_floats(dgu, 2 * n);
    /* expf differs by an ulp or two between the libraries: relative 1e-5 in fp32 */
    check_elem("h = silu(gate) * up", go, ref_h, n, elem_rel<X>(), ABS);
    check_elem("dgate | dup", gg, refgu, 2 * n, elem_rel<X>(), ABS);
    free(go), free(gg), free(hgu), free(hdh), free(h), free(dgu), free(fgu), free(fdh), free(gate), free(up);
    free(ref_h), free(dg), free(du), free(refgu);
}

template <typename X> static void all_cases(const char *tname) {
    rmsnorm_case<X>(tname, 74, 96);
    rmsnorm_case<X>(tname, 3000, 200); /* > TG_CUDA_COL_CHUNKS rows: 3 rows per chunk */
    rmsnorm_case<X>(tname, 37, 2048);
    rope_case<X>(tname, 3, 37, 4, 2, 16, 0.0);   /* GQA */
    rope_case<X>(tname, 2, 40, 4, 1, 16, 8.0);   /* MQA, Llama 3 scaling */
    rope_case<X>(tname, 2, 33, 2, 2, 64, 0.0);   /* MHA, head size 64 */
    rope_case<X>(tname, 1, 130, 8, 2, 64, 32.0); /* T past original_max_pos */
    swiglu_case<X>(tname, 70, 160);
    swiglu_case<X>(tname, 5, 4099);
}

int main(int argc, char **argv) {
    g_host = argc > 1 && strcmp(argv[1], "--host") == 0;
    if (!g_host) {
        cuda_test_require_device();
        CU(cudaStreamCreate(&g_stream));
    }
    printf("kernels run %s\n", g_host ? "as their bodies on the host (--host)" : "on the GPU");
    all_cases<float>("fp32");
    all_cases<tg_bf16>("bf16");
    if (!g_host) CU(cudaStreamDestroy(g_stream));
    TEST_MAIN_END();
}
