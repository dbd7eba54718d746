/* tests/cuda/test_cuda_llama_kernels.cu — Llama's CUDA kernels (model/cuda/llama_kernels.cu)
 * against the CPU reference functions they mirror (model/cpu/llama_kernels.c), in fp32 and bf16.
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
 * Each kernel also runs twice: the bits must not change (no atomics).
 *
 * Shapes: rows not a multiple of the 8-row blocks, C not a multiple of 32 (the lane loops), more
 * rows than TG_CUDA_COL_CHUNKS (several rows per column-sum chunk), a long row (C = 2048); RoPE
 * with GQA (4 query heads over 2 KV heads), MQA and MHA, head sizes 16 and 64, plain and Llama 3
 * scaled frequencies, positions row % T over several sequences.
 *
 * Without a CUDA device: prints "SKIP: no CUDA device" and exits 77. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

template <typename X> static X *upload(const X *h, size_t n) {
    X *d = NULL;
    CU(cudaMalloc((void **)&d, (n ? n : 1) * sizeof(X)));
    CU(cudaMemcpy(d, h, n * sizeof(X), cudaMemcpyHostToDevice));
    return d;
}
/* device X[n] -> host fp32 */
template <typename X> static float *download(const X *d, size_t n) {
    X *h = (X *)malloc((n ? n : 1) * sizeof(X));
    float *f = (float *)malloc((n ? n : 1) * sizeof(float));
    CU(cudaDeviceSynchronize());
    CU(cudaMemcpy(h, d, n * sizeof(X), cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < n; i++) f[i] = to_f32(h[i]);
    free(h);
    return f;
}

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

/* ||got - ref|| / ||ref|| <= tol */
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

static void check_same_bits(const char *what, const float *a, const float *b, size_t n) {
    CHECKF(memcmp(a, b, n * sizeof(float)) == 0, "%s: a second run gave other bits", what);
}

static const double BF16_REL = 1.0 / 128, ABS = 1e-5;
template <typename X> static double elem_rel() { return sizeof(X) == 2 ? BF16_REL : 1e-5; }
template <typename X> static double norm_tol() { return sizeof(X) == 2 ? 4e-3 : 1e-5; }

/* RMSNorm forward (with the residual add) and backward. */
template <typename X> static void rmsnorm_case(const char *tname, int N, int C, cudaStream_t s) {
    tg_error err = {};
    const float eps = 1e-5f;
    const size_t n = (size_t)N * C;
    tg_rng r;
    tg_rng_init(&r, (uint64_t)N * 131 + C);
    X *ha = (X *)malloc(n * sizeof(X)), *hb = (X *)malloc(n * sizeof(X)), *hw = (X *)malloc(C * sizeof(X));
    X *hdy = (X *)malloc(n * sizeof(X)), *hdx0 = (X *)malloc(n * sizeof(X)), *hx = (X *)malloc(n * sizeof(X));
    float *fa = (float *)malloc(n * 4), *fb = (float *)malloc(n * 4), *fw = (float *)malloc(C * 4);
    float *fdy = (float *)malloc(n * 4), *fdx = (float *)malloc(n * 4), *fx = (float *)malloc(n * 4);
    float *ref_out = (float *)malloc(n * 4), *ref_rstd = (float *)malloc(N * 4), *ref_dw = (float *)malloc(C * 4);
    float *dw0 = (float *)malloc(C * 4);
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

    X *da = upload(ha, n), *db = upload(hb, n), *dw = upload(hw, C), *ddy = upload(hdy, n), *dx = upload(hx, n);
    X *dres, *dout, *ddx;
    float *drstd, *dgw, *dpartial, *drstd_ref;
    CU(cudaMalloc((void **)&dres, n * sizeof(X)));
    CU(cudaMalloc((void **)&dout, n * sizeof(X)));
    CU(cudaMalloc((void **)&ddx, n * sizeof(X)));
    CU(cudaMalloc((void **)&drstd, N * 4));
    CU(cudaMalloc((void **)&dgw, C * 4));
    CU(cudaMalloc((void **)&dpartial, (size_t)TG_CUDA_COL_CHUNKS * C * 4));
    drstd_ref = upload(ref_rstd, N);
    float *got[2][5];
    for (int run = 0; run < 2; run++) {
        CU(cudaMemcpy(ddx, hdx0, n * sizeof(X), cudaMemcpyHostToDevice));
        CU(cudaMemcpy(dgw, dw0, C * 4, cudaMemcpyHostToDevice));
        CHECK_OK(tg_cuda_residual_rmsnorm_forward<X>(dres, dout, drstd, da, db, dw, N, C, eps, s, &err), &err);
        /* backward from the reference rstd and x: checked on its own */
        CHECK_OK(tg_cuda_rmsnorm_backward<X>(ddx, dgw, dpartial, ddy, dx, drstd_ref, dw, N, C, s, &err), &err);
        got[run][0] = download(dres, n);
        got[run][1] = download(dout, n);
        got[run][2] = download(drstd, N);
        got[run][3] = download(ddx, n);
        got[run][4] = download(dgw, C);
    }
    check_elem("residual (a + b rounded)", got[0][0], fx, n, 0.0, 0.0);
    check_elem("out", got[0][1], ref_out, n, elem_rel<X>(), ABS);
    check_elem("rstd", got[0][2], ref_rstd, N, 1e-5, 0.0);
    check_norm("dx (accumulated)", got[0][3], fdx, n, norm_tol<X>());
    check_norm("dweight (accumulated, fp32)", got[0][4], ref_dw, C, 1e-5);
    const size_t sizes[5] = {n, n, (size_t)N, n, (size_t)C};
    for (int k = 0; k < 5; k++) {
        check_same_bits("rmsnorm run to run", got[0][k], got[1][k], sizes[k]);
        free(got[0][k]);
        free(got[1][k]);
    }
    {   /* without the residual (b = NULL: x = a, res untouched) */
        CHECK_OK(tg_cuda_residual_rmsnorm_forward<X>(NULL, dout, drstd, da, NULL, dw, N, C, eps, s, &err), &err);
        tg_llama_rmsnorm_forward(ref_out, ref_rstd, fa, fw, N, C, eps);
        float *o = download(dout, n);
        check_elem("out without residual", o, ref_out, n, elem_rel<X>(), ABS);
        free(o);
    }
    cudaFree(da);
    cudaFree(db);
    cudaFree(dw);
    cudaFree(ddy);
    cudaFree(dx);
    cudaFree(dres);
    cudaFree(dout);
    cudaFree(ddx);
    cudaFree(drstd);
    cudaFree(dgw);
    cudaFree(dpartial);
    cudaFree(drstd_ref);
    free(ha), free(hb), free(hw), free(hdy), free(hdx0), free(hx);
    free(fa), free(fb), free(fw), free(fdy), free(fdx), free(fx);
    free(ref_out), free(ref_rstd), free(ref_dw), free(dw0);
}

/* The q|k|v re-layout with RoPE and its adjoint, against llama_cpu.c's sequence of calls. */
template <typename X>
static void rope_case(const char *tname, int B, int T, int NH, int NKV, int HS, double rope_factor, cudaStream_t s) {
    tg_error err = {};
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
    float *inv = (float *)malloc(half * 4), *ct = (float *)malloc((size_t)T * half * 4),
          *st = (float *)malloc((size_t)T * half * 4);
    tg_llama_rope_inv_freq(&cfg, inv);
    tg_llama_rope_tables(ct, st, T, half, inv);
    const size_t nraw = (size_t)N * QKV, n3 = (size_t)N * 3 * C;
    tg_rng r;
    tg_rng_init(&r, (uint64_t)NH * 1000 + NKV * 10 + HS);
    X *hraw = (X *)malloc(nraw * sizeof(X)), *hd3 = (X *)malloc(n3 * sizeof(X));
    float *fraw = (float *)malloc(nraw * 4), *fd3 = (float *)malloc(n3 * 4);
    float *ref3 = (float *)calloc(n3, 4), *refraw = (float *)calloc(nraw, 4), *kv = (float *)malloc((size_t)N * KV * 4);
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

    X *draw = upload(hraw, nraw), *dd3 = upload(hd3, n3), *dqkv, *ddraw;
    float *dct = upload(ct, (size_t)T * half), *dst = upload(st, (size_t)T * half);
    CU(cudaMalloc((void **)&dqkv, n3 * sizeof(X)));
    CU(cudaMalloc((void **)&ddraw, nraw * sizeof(X)));
    /* poison: every output element must be written */
    CU(cudaMemset(dqkv, 0xff, n3 * sizeof(X)));
    CU(cudaMemset(ddraw, 0xff, nraw * sizeof(X)));
    float *got[2][2];
    for (int run = 0; run < 2; run++) {
        CHECK_OK(tg_cuda_llama_qkv_forward<X>(dqkv, draw, dct, dst, B, T, NH, NKV, HS, s, &err), &err);
        CHECK_OK(tg_cuda_llama_qkv_backward<X>(ddraw, dd3, dct, dst, B, T, NH, NKV, HS, s, &err), &err);
        got[run][0] = download(dqkv, n3);
        got[run][1] = download(ddraw, nraw);
    }
    check_elem("qkv forward (rope, kv repeated)", got[0][0], ref3, n3, elem_rel<X>(), ABS);
    /* the group sums: up to NH/NKV terms of size ~1, summed in the same order as the CPU's */
    check_elem("qkv backward (unrope, kv summed)", got[0][1], refraw, nraw, elem_rel<X>(), ABS * (NH / NKV));
    check_same_bits("rope forward run to run", got[0][0], got[1][0], n3);
    check_same_bits("rope backward run to run", got[0][1], got[1][1], nraw);
    for (int k = 0; k < 2; k++) free(got[0][k]), free(got[1][k]);
    cudaFree(draw);
    cudaFree(dd3);
    cudaFree(dqkv);
    cudaFree(ddraw);
    cudaFree(dct);
    cudaFree(dst);
    free(inv), free(ct), free(st), free(hraw), free(hd3), free(fraw), free(fd3), free(ref3), free(refraw), free(kv);
}

/* SwiGLU on the fused gate|up rows, forward and backward. */
template <typename X> static void swiglu_case(const char *tname, int N, int F, cudaStream_t s) {
    tg_error err = {};
    const size_t n = (size_t)N * F;
    tg_rng r;
    tg_rng_init(&r, (uint64_t)N * 7 + F);
    X *hgu = (X *)malloc(2 * n * sizeof(X)), *hdh = (X *)malloc(n * sizeof(X));
    float *fgu = (float *)malloc(2 * n * 4), *fdh = (float *)malloc(n * 4);
    float *gate = (float *)malloc(n * 4), *up = (float *)malloc(n * 4), *h = (float *)malloc(n * 4);
    float *dg = (float *)malloc(n * 4), *du = (float *)malloc(n * 4), *refgu = (float *)malloc(2 * n * 4);
    printf("%s swiglu N=%d F=%d\n", tname, N, F);
    randn<X>(hgu, fgu, 2 * n, 3.0f, &r); /* gates well into both tails of the sigmoid */
    randn<X>(hdh, fdh, n, 1.0f, &r);
    for (int i = 0; i < N; i++) {
        memcpy(gate + (size_t)i * F, fgu + (size_t)i * 2 * F, (size_t)F * 4);
        memcpy(up + (size_t)i * F, fgu + (size_t)i * 2 * F + F, (size_t)F * 4);
    }
    tg_llama_swiglu_forward(h, gate, up, n);
    tg_llama_swiglu_backward(dg, du, fdh, gate, up, n);
    for (int i = 0; i < N; i++) {
        memcpy(refgu + (size_t)i * 2 * F, dg + (size_t)i * F, (size_t)F * 4);
        memcpy(refgu + (size_t)i * 2 * F + F, du + (size_t)i * F, (size_t)F * 4);
    }
    X *dgu = upload(hgu, 2 * n), *ddh = upload(hdh, n), *dout, *ddgu;
    CU(cudaMalloc((void **)&dout, n * sizeof(X)));
    CU(cudaMalloc((void **)&ddgu, 2 * n * sizeof(X)));
    CU(cudaMemset(ddgu, 0xff, 2 * n * sizeof(X)));
    CHECK_OK(tg_cuda_swiglu_forward<X>(dout, dgu, N, F, s, &err), &err);
    CHECK_OK(tg_cuda_swiglu_backward<X>(ddgu, ddh, dgu, N, F, s, &err), &err);
    float *go = download(dout, n), *gg = download(ddgu, 2 * n);
    /* expf differs by an ulp or two between the libraries: relative 1e-5 in fp32 */
    check_elem("h = silu(gate) * up", go, h, n, elem_rel<X>(), ABS);
    check_elem("dgate | dup", gg, refgu, 2 * n, elem_rel<X>(), ABS);
    cudaFree(dgu);
    cudaFree(ddh);
    cudaFree(dout);
    cudaFree(ddgu);
    free(go), free(gg), free(hgu), free(hdh), free(fgu), free(fdh), free(gate), free(up), free(h), free(dg), free(du),
        free(refgu);
}

template <typename X> static void all_cases(const char *tname, cudaStream_t s) {
    rmsnorm_case<X>(tname, 74, 96, s);
    rmsnorm_case<X>(tname, 3000, 200, s); /* > TG_CUDA_COL_CHUNKS rows: 3 rows per chunk */
    rmsnorm_case<X>(tname, 37, 2048, s);
    rope_case<X>(tname, 3, 37, 4, 2, 16, 0.0, s);  /* GQA */
    rope_case<X>(tname, 2, 40, 4, 1, 16, 8.0, s);  /* MQA, Llama 3 scaling */
    rope_case<X>(tname, 2, 33, 2, 2, 64, 0.0, s);  /* MHA, head size 64 */
    rope_case<X>(tname, 1, 130, 8, 2, 64, 32.0, s); /* T past original_max_pos */
    swiglu_case<X>(tname, 70, 160, s);
    swiglu_case<X>(tname, 5, 4099, s);
}

int main(void) {
    cudaStream_t s;
    cuda_test_require_device();
    CU(cudaStreamCreate(&s));
    all_cases<float>("fp32", s);
    all_cases<tg_bf16>("bf16", s);
    CU(cudaStreamDestroy(s));
    TEST_MAIN_END();
}
