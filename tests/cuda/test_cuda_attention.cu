/* tests/cuda/test_cuda_attention.cu — flash attention (bf16, model/cuda/flash_attention.cu)
 * against the cuBLASLt attention in fp32 (model/cuda/attention.cu, itself checked against the
 * CPU reference by test_cuda_model) at GPT-2's head size and sequence length and at odd shapes
 * (T not a multiple of the 64-row tile, head sizes 16/32/64).
 *
 * Both get the same bf16-rounded q, k, v and output gradient. Tolerance: flash rounds P and dS
 * to bf16 (unit roundoff 2^-9 ~ 2e-3) before the second products, and writes bf16 outputs, so
 * norm-wise errors land around 3e-3; 1.5e-2 leaves headroom while a wrong tile, mask or
 * fragment layout gives errors of order 1. Outputs are poisoned (NaN) first, so an element
 * never written fails; the pipelined (cp.async) and plain kernels must give identical bits.
 * cuDNN runs twice per shape (bitwise equal) with its heuristic plan, and at GPT-2's shape also
 * with every candidate plan timed and the fastest kept (cuda.cudnn_tune's path).
 * Then cuDNN's grouped-query attention (gqa_case) against the flash kernels with the KV heads
 * repeated. Last it times forward and backward at GPT-2 124M's shape (B=64, NH=12, T=1024, HS=64), cuDNN
 * also with its plans autotuned.
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

static double rel_err(const float *a, const float *b, size_t n) {
    double d = 0.0, r = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double x = (double)a[i] - b[i];
        d += isfinite(a[i]) ? x * x : INFINITY;
        r += (double)b[i] * b[i];
    }
    return r == 0.0 ? (d == 0.0 ? 0.0 : INFINITY) : sqrt(d / r);
}

/* err over the columns [c0, c0 + w) of rows of width ld */
static double rel_err_cols(const float *a, const float *b, size_t rows, int ld, int c0, int w) {
    double d = 0.0, r = 0.0;
    for (size_t i = 0; i < rows; i++)
        for (int c = c0; c < c0 + w; c++) {
            const double x = (double)a[i * ld + c] - b[i * ld + c];
            d += isfinite(a[i * ld + c]) ? x * x : INFINITY;
            r += (double)b[i * ld + c] * b[i * ld + c];
        }
    return r == 0.0 ? (d == 0.0 ? 0.0 : INFINITY) : sqrt(d / r);
}

static void to_bf16(tg_bf16 *dst, float *rounded, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) {
        dst[i] = __float2bfloat16_rn(src[i]);
        rounded[i] = __bfloat162float(dst[i]);
    }
}

static void from_bf16(float *dst, const tg_bf16 *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = __bfloat162float(src[i]);
}

/* the implementation under test: cuDNN when cd is set, else the flash kernels, pipelined (the
 * product's) or plain */
static tg_status fwd(tg_cudnn_attn *cd, int pipe, tg_bf16 *y, float *lse, const tg_bf16 *qkv, int B, int T, int C,
                     int NH, cudaStream_t s, tg_error *err) {
    return cd     ? tg_cudnn_attn_forward(cd, y, lse, qkv, C, s, err)
           : pipe ? tg_cuda_flash_attention_forward(y, lse, qkv, B, T, C, NH, s, err)
                  : tg_cuda_flash_attention_forward_plain(y, lse, qkv, B, T, C, NH, s, err);
}
static tg_status bwd(tg_cudnn_attn *cd, int pipe, tg_bf16 *d, float *delta, const tg_bf16 *dy, const tg_bf16 *y,
                     const tg_bf16 *qkv, const float *lse, int B, int T, int C, int NH, cudaStream_t s,
                     tg_error *err) {
    return cd     ? tg_cudnn_attn_backward(cd, d, dy, y, qkv, lse, C, s, err)
           : pipe ? tg_cuda_flash_attention_backward(d, delta, dy, y, qkv, lse, B, T, C, NH, s, err)
                  : tg_cuda_flash_attention_backward_plain(d, delta, dy, y, qkv, lse, B, T, C, NH, s, err);
}

/* One case's device buffers: inputs qkv (B,T,3C) and dy (B,T,C), outputs y and d (= dqkv). */
typedef struct {
    int B, T, C, NH;
    size_t n1, n3; /* B*T*C, B*T*3C */
    tg_bf16 *qkv, *dy, *y, *d;
    float *lse, *delta;
} attn_bufs;

/* Forward + backward into poisoned outputs (0xFFFF is a bf16 NaN, so an element never written
 * fails the comparison), results copied to hy, hd. */
static void run_once(const attn_bufs *b, tg_cudnn_attn *cd, int pipe, cudaStream_t s, tg_bf16 *hy, tg_bf16 *hd) {
    tg_error err = {};
    CU(cudaMemset(b->y, 0xFF, b->n1 * 2));
    CU(cudaMemset(b->d, 0xFF, b->n3 * 2));
    CHECK_OK(fwd(cd, pipe, b->y, b->lse, b->qkv, b->B, b->T, b->C, b->NH, s, &err), &err);
    CHECK_OK(bwd(cd, pipe, b->d, b->delta, b->dy, b->y, b->qkv, b->lse, b->B, b->T, b->C, b->NH, s, &err), &err);
    CU(cudaStreamSynchronize(s));
    CU(cudaMemcpy(hy, b->y, b->n1 * 2, cudaMemcpyDeviceToHost));
    CU(cudaMemcpy(hd, b->d, b->n3 * 2, cudaMemcpyDeviceToHost));
}

/* y and dq, dk, dv (the three column blocks of d) against the fp32 reference, within tol. */
static void check_errors(const char *who, const char *line, const attn_bufs *b, const tg_bf16 *hy,
                         const tg_bf16 *hd, const float *ref_y, const float *ref_d) {
    const size_t N = (size_t)b->B * b->T;
    const int C = b->C;
    const double tol = 1.5e-2;
    float *got_y = (float *)malloc(b->n1 * 4), *got_d = (float *)malloc(b->n3 * 4);
    from_bf16(got_y, hy, b->n1);
    from_bf16(got_d, hd, b->n3);
    const double ey = rel_err(got_y, ref_y, b->n1);
    const double eq = rel_err_cols(got_d, ref_d, N, 3 * C, 0, C);
    const double ek = rel_err_cols(got_d, ref_d, N, 3 * C, C, C);
    const double ev = rel_err_cols(got_d, ref_d, N, 3 * C, 2 * C, C);
    printf("%s: rel err y %.2e  dq %.2e  dk %.2e  dv %.2e\n", line, ey, eq, ek, ev);
    CHECKF(ey < tol, "%s y rel err %.3g", who, ey);
    CHECKF(eq < tol, "%s dq rel err %.3g", who, eq);
    CHECKF(ek < tol, "%s dk rel err %.3g", who, ek);
    CHECKF(ev < tol, "%s dv rel err %.3g", who, ev);
    free(got_y);
    free(got_d);
}

/* tuned: also check cuDNN with every candidate plan built and timed (slow to build: GPT-2's
 * shape only) */
static void run_case(cudaStream_t s, const tg_cuda_blas *bl, int B, int T, int NH, int HS, float amp, int tuned) {
    const int C = NH * HS;
    const size_t N = (size_t)B * T, n3 = N * 3 * C, n1 = N * C, natt = (size_t)B * NH * T * T;
    tg_error err = {};
    tg_rng r;
    tg_rng_init(&r, 7 + (uint64_t)T * 31 + (uint64_t)HS);
    float *qkv = (float *)malloc(n3 * 4), *dy = (float *)malloc(n1 * 4);
    float *ref_y = (float *)malloc(n1 * 4), *ref_d = (float *)malloc(n3 * 4);
    tg_bf16 *qkv_b = (tg_bf16 *)malloc(n3 * 2), *dy_b = (tg_bf16 *)malloc(n1 * 2);
    tg_bf16 *h_y = (tg_bf16 *)malloc(n1 * 2), *h_d = (tg_bf16 *)malloc(n3 * 2);
    tg_bf16 *h_y2 = (tg_bf16 *)malloc(n1 * 2), *h_d2 = (tg_bf16 *)malloc(n3 * 2);
    for (size_t i = 0; i < n3; i++) qkv[i] = amp * tg_rng_normal(&r);
    for (size_t i = 0; i < n1; i++) dy[i] = tg_rng_normal(&r);
    to_bf16(qkv_b, qkv, qkv, n3);
    to_bf16(dy_b, dy, dy, n1);

    /* reference: fp32 cuBLASLt attention */
    float *f_qkv, *f_qkvr, *f_att, *f_heads, *f_out, *f_dqkv, *f_dqkvr, *f_datt, *f_dheads, *f_dout;
    CU(cudaMalloc(&f_qkv, n3 * 4));
    CU(cudaMalloc(&f_qkvr, n3 * 4));
    CU(cudaMalloc(&f_att, natt * 4));
    CU(cudaMalloc(&f_heads, n1 * 4));
    CU(cudaMalloc(&f_out, n1 * 4));
    CU(cudaMalloc(&f_dqkv, n3 * 4));
    CU(cudaMalloc(&f_dqkvr, n3 * 4));
    CU(cudaMalloc(&f_datt, natt * 4));
    CU(cudaMalloc(&f_dheads, n1 * 4));
    CU(cudaMalloc(&f_dout, n1 * 4));
    CU(cudaMemcpy(f_qkv, qkv, n3 * 4, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(f_dout, dy, n1 * 4, cudaMemcpyHostToDevice));
    CHECK_OK(tg_cuda_attention_forward<float>(bl, f_out, f_qkvr, f_att, f_heads, f_qkv, B, T, C, NH, s, &err), &err);
    CHECK_OK(tg_cuda_attention_backward<float>(bl, f_dqkv, f_dqkvr, f_datt, f_dheads, f_dout, f_qkvr, f_att, B,
                                               T, C, NH, s, &err), &err);
    CU(cudaStreamSynchronize(s));
    CU(cudaMemcpy(ref_y, f_out, n1 * 4, cudaMemcpyDeviceToHost));
    CU(cudaMemcpy(ref_d, f_dqkv, n3 * 4, cudaMemcpyDeviceToHost));

    /* flash, bf16, twice */
    tg_bf16 *b_qkv, *b_dy, *b_y, *b_d;
    float *lse, *delta;
    CU(cudaMalloc(&b_qkv, n3 * 2));
    CU(cudaMalloc(&b_dy, n1 * 2));
    CU(cudaMalloc(&b_y, n1 * 2));
    CU(cudaMalloc(&b_d, n3 * 2));
    CU(cudaMalloc(&lse, (size_t)B * NH * T * 4));
    CU(cudaMalloc(&delta, (size_t)B * NH * T * 4));
    CU(cudaMemcpy(b_qkv, qkv_b, n3 * 2, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(b_dy, dy_b, n1 * 2, cudaMemcpyHostToDevice));
    const attn_bufs bufs = {B, T, C, NH, n1, n3, b_qkv, b_dy, b_y, b_d, lse, delta};
    char line[96];
    /* the pipelined kernels (the default), then the plain ones — same arithmetic */
    run_once(&bufs, NULL, 1, s, h_y, h_d);
    run_once(&bufs, NULL, 0, s, h_y2, h_d2);
    snprintf(line, sizeof line, "  B=%d T=%d NH=%d HS=%d amp=%.1f", B, T, NH, HS, amp);
    check_errors("flash", line, &bufs, h_y, h_d, ref_y, ref_d);
    CHECKF(memcmp(h_y, h_y2, n1 * 2) == 0 && memcmp(h_d, h_d2, n3 * 2) == 0,
           "pipelined and plain flash kernels differ (a race, or a tile read before it landed)");

    /* cuDNN SDPA (deterministic backward), where it takes the shape: same inputs and tolerance,
     * twice, bitwise equal; with tuned, then the same with every plan built and the fastest kept
     * (the tuning of cuda.cudnn_tune: the first run times them). */
    for (int tune = 0; tune <= tuned; tune++) {
        tg_cudnn_attn *cd = NULL;
        char why[200] = "";
        CHECK_OK(tg_cudnn_attn_init(&cd, B, T, NH, HS, 1, tune, NULL, why, sizeof why, &err), &err);
        if (!cd) {
            printf("    cudnn%s: not available for this shape (%s)\n", tune ? " (tuned)" : "", why);
        } else {
            void *ws = NULL;
            const size_t wsb = tg_cudnn_attn_workspace(cd);
            CU(cudaMalloc(&ws, wsb ? wsb : 16));
            tg_cudnn_attn_set_workspace(cd, ws);
            run_once(&bufs, cd, 1, s, h_y, h_d);
            run_once(&bufs, cd, 1, s, h_y2, h_d2);
            check_errors("cudnn", tune ? "    cudnn (tuned)" : "    cudnn", &bufs, h_y, h_d, ref_y, ref_d);
            CHECKF(memcmp(h_y, h_y2, n1 * 2) == 0 && memcmp(h_d, h_d2, n3 * 2) == 0,
                   "cudnn attention (deterministic%s) differs between two runs", tune ? ", tuned" : "");
            tg_cudnn_attn_free(cd);
            cudaFree(ws);
        }
    }

    cudaFree(f_qkv);
    cudaFree(f_qkvr);
    cudaFree(f_att);
    cudaFree(f_heads);
    cudaFree(f_out);
    cudaFree(f_dqkv);
    cudaFree(f_dqkvr);
    cudaFree(f_datt);
    cudaFree(f_dheads);
    cudaFree(f_dout);
    cudaFree(b_qkv);
    cudaFree(b_dy);
    cudaFree(b_y);
    cudaFree(b_d);
    cudaFree(lse);
    cudaFree(delta);
    free(qkv);
    free(dy);
    free(ref_y);
    free(ref_d);
    free(qkv_b);
    free(dy_b);
    free(h_y);
    free(h_d);
    free(h_y2);
    free(h_d2);
}

/* Forward and backward time at GPT-2 124M's attention shape (random data, no check).
 * impl 0: flash, plain; 1: flash, pipelined; 2: cuDNN deterministic; 3: cuDNN with atomics;
 * 4: cuDNN deterministic with its plans autotuned (the warm-up calls do the timing). */
static void time_gpt2(cudaStream_t s, int impl) {
    const int pipe = impl == 1;
    static const char *const names[] = {"flash (plain)", "flash (pipelined)", "cudnn (deterministic)",
                                        "cudnn (atomics)", "cudnn (det., tuned)"};
    const int B = 64, T = 1024, NH = 12, HS = 64, C = NH * HS, reps = 10;
    const size_t N = (size_t)B * T;
    tg_error err = {};
    tg_bf16 *qkv, *dy, *y, *d;
    float *lse, *delta, ms_f = 0.0f, ms_b = 0.0f;
    cudaEvent_t e0, e1, e2;
    tg_cudnn_attn *cd = NULL;
    void *ws = NULL;
    if (impl >= 2) { /* first, so that "not available" has nothing to free */
        char why[200] = "";
        CHECK_OK(tg_cudnn_attn_init(&cd, B, T, NH, HS, impl != 3, impl == 4, NULL, why, sizeof why, &err), &err);
        if (!cd) {
            printf("  %-22s timing: not available (%s)\n", names[impl], why);
            return;
        }
        CU(cudaMalloc(&ws, tg_cudnn_attn_workspace(cd) + 16));
        tg_cudnn_attn_set_workspace(cd, ws);
    }
    CU(cudaMalloc(&qkv, N * 3 * C * 2));
    CU(cudaMalloc(&dy, N * C * 2));
    CU(cudaMalloc(&y, N * C * 2));
    CU(cudaMalloc(&d, N * 3 * C * 2));
    CU(cudaMalloc(&lse, (size_t)B * NH * T * 4));
    CU(cudaMalloc(&delta, (size_t)B * NH * T * 4));
    {
        /* small random values: bf16 of uniform bytes would hold NaNs and huge numbers */
        const size_t n = N * 3 * C;
        tg_bf16 *h = (tg_bf16 *)malloc(n * 2);
        tg_rng r;
        tg_rng_init(&r, 3);
        for (size_t i = 0; i < n; i++) h[i] = __float2bfloat16_rn(tg_rng_normal(&r));
        CU(cudaMemcpy(qkv, h, n * 2, cudaMemcpyHostToDevice));
        CU(cudaMemcpy(dy, h, N * C * 2, cudaMemcpyHostToDevice));
        free(h);
    }
    CU(cudaEventCreate(&e0));
    CU(cudaEventCreate(&e1));
    CU(cudaEventCreate(&e2));
    for (int i = 0; i < 2; i++) { /* warm-up */
        CHECK_OK(fwd(cd, pipe, y, lse, qkv, B, T, C, NH, s, &err), &err);
        CHECK_OK(bwd(cd, pipe, d, delta, dy, y, qkv, lse, B, T, C, NH, s, &err), &err);
    }
    CU(cudaEventRecord(e0, s));
    for (int i = 0; i < reps; i++) CHECK_OK(fwd(cd, pipe, y, lse, qkv, B, T, C, NH, s, &err), &err);
    CU(cudaEventRecord(e1, s));
    for (int i = 0; i < reps; i++)
        CHECK_OK(bwd(cd, pipe, d, delta, dy, y, qkv, lse, B, T, C, NH, s, &err), &err);
    CU(cudaEventRecord(e2, s));
    CU(cudaEventSynchronize(e2));
    CU(cudaEventElapsedTime(&ms_f, e0, e1));
    CU(cudaEventElapsedTime(&ms_b, e1, e2));
    ms_f /= reps;
    ms_b /= reps;
    /* causal: half of the 4*B*NH*T^2*HS forward FLOPs; backward counted as 2.5x forward */
    const double flops = 2.0 * B * NH * (double)T * T * HS;
    printf("  %-22s timing B=%d NH=%d T=%d HS=%d (one layer): forward %.3f ms (%.0f TFLOP/s), backward %.3f ms "
           "(%.0f TFLOP/s)\n",
           names[impl], B, NH, T, HS, ms_f, flops / (ms_f * 1e-3) / 1e12, ms_b, 2.5 * flops / (ms_b * 1e-3) / 1e12);
    cudaFree(qkv);
    cudaFree(dy);
    cudaFree(y);
    cudaFree(d);
    cudaFree(lse);
    cudaFree(delta);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaEventDestroy(e2);
    tg_cudnn_attn_free(cd);
    cudaFree(ws);
}

/* cuDNN's grouped-query attention (tg_cudnn_attn_init_gqa: NKV key/value heads read as they are,
 * q | k | v rows of (NH + 2 NKV) HS, dk and dv summed over each group by cuDNN, as
 * model/cuda/llama_cuda.cu uses it) against the flash kernels on the same values with each KV
 * head repeated over its group (the MHA path llama_cuda.cu takes otherwise), their dk and dv then
 * summed over the group in fp32 on the host. Both are bf16 fused attentions with errors ~3e-3
 * against exact arithmetic (run_case's tolerance argument); their difference is held to 2e-2
 * norm-wise, while a wrong head mapping gives errors of order 1. Where cuDNN refuses the shape
 * the case says why and checks nothing (llama_cuda.cu then takes the flash kernels). */
static void gqa_case(cudaStream_t s, int B, int T, int NH, int NKV, int HS) {
    tg_error err = {};
    const int C = NH * HS, KV = NKV * HS, R = C + 2 * KV, group = NH / NKV;
    const size_t N = (size_t)B * T, nraw = N * R, n3 = N * 3 * C, nc = N * C;
    char why[256] = "";
    tg_cudnn_attn *cd = NULL;
    void *ws = NULL;
    tg_rng r;
    tg_rng_init(&r, (uint64_t)NH * 100 + NKV * 10 + HS);
    printf("cudnn gqa B=%d T=%d NH=%d NKV=%d HS=%d\n", B, T, NH, NKV, HS);
    CHECK_OK(tg_cudnn_attn_init_gqa(&cd, B, T, NH, NKV, HS, 1, 0, NULL, why, sizeof why, &err), &err);
    if (!cd) {
        printf("  cuDNN refuses this shape (%s): not checked\n", why);
        return;
    }
    float *f = (float *)malloc(nraw * 4), *fd = (float *)malloc(nc * 4);
    tg_bf16 *h_raw = (tg_bf16 *)malloc(nraw * 2), *h3 = (tg_bf16 *)malloc(n3 * 2), *h_dy = (tg_bf16 *)malloc(nc * 2);
    float *y_c = (float *)malloc(nc * 4), *y_f = (float *)malloc(nc * 4), *d_c = (float *)malloc(nraw * 4);
    float *d_c2 = (float *)malloc(nraw * 4), *d3 = (float *)malloc(n3 * 4), *d_f = (float *)malloc(nraw * 4);
    tg_bf16 *raw, *qkv3, *dy, *yc, *yf, *draw, *dqkv3, *hb = (tg_bf16 *)malloc(n3 * 2);
    float *lse_c, *lse_f, *delta;
    for (size_t i = 0; i < nraw; i++) f[i] = tg_rng_normal(&r);
    for (size_t i = 0; i < nc; i++) fd[i] = tg_rng_normal(&r);
    to_bf16(h_raw, f, f, nraw);
    to_bf16(h_dy, fd, fd, nc);
    for (size_t n = 0; n < N; n++) /* expanded: q, then k and v of KV head h / group for head h */
        for (int part = 0; part < 3; part++)
            for (int h = 0; h < NH; h++)
                for (int i = 0; i < HS; i++) {
                    const size_t src = part == 0 ? (size_t)h * HS : (size_t)C + (part == 2 ? KV : 0) + (size_t)(h / group) * HS;
                    h3[n * 3 * C + (size_t)part * C + (size_t)h * HS + i] = h_raw[n * R + src + i];
                }
    CU(cudaMalloc(&raw, nraw * 2));
    CU(cudaMalloc(&qkv3, n3 * 2));
    CU(cudaMalloc(&dy, nc * 2));
    CU(cudaMalloc(&yc, nc * 2));
    CU(cudaMalloc(&yf, nc * 2));
    CU(cudaMalloc(&draw, nraw * 2));
    CU(cudaMalloc(&dqkv3, n3 * 2));
    CU(cudaMalloc(&lse_c, (size_t)B * NH * T * 4));
    CU(cudaMalloc(&lse_f, (size_t)B * NH * T * 4));
    CU(cudaMalloc(&delta, (size_t)B * NH * T * 4));
    CU(cudaMalloc(&ws, tg_cudnn_attn_workspace(cd) + 1));
    tg_cudnn_attn_set_workspace(cd, ws);
    CU(cudaMemcpy(raw, h_raw, nraw * 2, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(qkv3, h3, n3 * 2, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(dy, h_dy, nc * 2, cudaMemcpyHostToDevice));
    for (int run = 0; run < 2; run++) {
        CU(cudaMemset(yc, 0xff, nc * 2));
        CU(cudaMemset(draw, 0xff, nraw * 2));
        CHECK_OK(tg_cudnn_attn_forward(cd, yc, lse_c, raw, C, s, &err), &err);
        CHECK_OK(tg_cudnn_attn_backward(cd, draw, dy, yc, raw, lse_c, C, s, &err), &err);
        CU(cudaStreamSynchronize(s));
        CU(cudaMemcpy(hb, draw, nraw * 2, cudaMemcpyDeviceToHost));
        from_bf16(run ? d_c2 : d_c, hb, nraw);
    }
    CHECKF(memcmp(d_c, d_c2, nraw * 4) == 0, "cudnn gqa backward: a second run gave other bits");
    CU(cudaMemcpy(hb, yc, nc * 2, cudaMemcpyDeviceToHost));
    from_bf16(y_c, hb, nc);
    CU(cudaMemset(dqkv3, 0xff, n3 * 2));
    CHECK_OK(tg_cuda_flash_attention_forward(yf, lse_f, qkv3, B, T, C, NH, s, &err), &err);
    CHECK_OK(tg_cuda_flash_attention_backward(dqkv3, delta, dy, yf, qkv3, lse_f, B, T, C, NH, s, &err), &err);
    CU(cudaStreamSynchronize(s));
    CU(cudaMemcpy(hb, yf, nc * 2, cudaMemcpyDeviceToHost));
    from_bf16(y_f, hb, nc);
    CU(cudaMemcpy(hb, dqkv3, n3 * 2, cudaMemcpyDeviceToHost));
    from_bf16(d3, hb, n3);
    for (size_t n = 0; n < N; n++) { /* flash's gradients in the projection layout: dk, dv summed per group */
        for (int c = 0; c < C; c++) d_f[n * R + c] = d3[n * 3 * C + c];
        for (int part = 1; part < 3; part++)
            for (int k = 0; k < NKV; k++)
                for (int i = 0; i < HS; i++) {
                    float sum = 0.0f;
                    for (int g = 0; g < group; g++) sum += d3[n * 3 * C + (size_t)part * C + (size_t)(k * group + g) * HS + i];
                    d_f[n * R + C + (part == 2 ? KV : 0) + (size_t)k * HS + i] = sum;
                }
    }
    const double ey = rel_err(y_c, y_f, nc), eq = rel_err_cols(d_c, d_f, N, R, 0, C);
    const double ek = rel_err_cols(d_c, d_f, N, R, C, KV), ev = rel_err_cols(d_c, d_f, N, R, C + KV, KV);
    printf("  cudnn gqa vs flash (repeated kv): y %.2e, dq %.2e, dk %.2e, dv %.2e\n", ey, eq, ek, ev);
    CHECK(ey < 2e-2);
    CHECK(eq < 2e-2);
    CHECK(ek < 2e-2);
    CHECK(ev < 2e-2);
    cudaFree(raw), cudaFree(qkv3), cudaFree(dy), cudaFree(yc), cudaFree(yf), cudaFree(draw), cudaFree(dqkv3);
    cudaFree(lse_c), cudaFree(lse_f), cudaFree(delta), cudaFree(ws);
    free(f), free(fd), free(h_raw), free(h3), free(h_dy), free(y_c), free(y_f), free(d_c), free(d_c2);
    free(d3), free(d_f), free(hb);
    tg_cudnn_attn_free(cd);
}

int main(void) {
    cuda_test_require_device();
    cudaStream_t s;
    tg_cuda_blas bl = {};
    CU(cudaStreamCreate(&s));
    if (cublasLtCreate(&bl.lt) != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "cublasLtCreate failed\n");
        return 1;
    }
    bl.workspace_bytes = (size_t)32 << 20;
    bl.fuse = 1;
    CU(cudaMalloc(&bl.workspace, bl.workspace_bytes));
    /* TG_ATTN_QUICK=1 (under compute-sanitizer): the small shapes only, no timing */
    const int quick = getenv("TG_ATTN_QUICK") != NULL;
    if (!quick) run_case(s, &bl, 2, 1024, 2, 64, 1.0f, 1);
    run_case(s, &bl, 1, 200, 3, 64, 2.0f, 0);
    run_case(s, &bl, 2, 77, 2, 32, 1.0f, 0);
    run_case(s, &bl, 3, 50, 4, 16, 1.0f, 0);
    run_case(s, &bl, 1, 64, 1, 64, 3.0f, 0);
    gqa_case(s, 2, 100, 4, 2, 32); /* GQA */
    gqa_case(s, 1, 130, 4, 1, 64); /* MQA */
    gqa_case(s, 2, 64, 6, 3, 16);
    if (!quick) {
        for (int impl = 0; impl < 5; impl++) time_gpt2(s, impl);
    }
    cudaFree(bl.workspace);
    tg_cuda_blas_free(&bl);
    cudaStreamDestroy(s);
    TEST_MAIN_END();
}
