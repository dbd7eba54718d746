/* tests/cuda/test_cuda_muon.c — Muon (tg_model_adamw with muon, tg_model_muon_orth,
 * tg_model_muon_apply) on the CUDA backends against the CPU backends.
 *
 * Both backends get the same parameters and, for each of two steps, the same gradients written
 * straight into their gradient buffers, so only the optimizer is compared (the forward and
 * backward are test_cuda_model's and test_cuda_llama's). The shard cuts through wte (and, for
 * Llama, through the first Muon matrix) and ends inside the tensors after the last block, as in
 * test_cuda_model. Cases: GPT-2 fp32, GPT-2 bf16 (fp32 masters), Llama fp32 (GQA, untied; the
 * Llama shape scale uses (out, in) weights). Per step:
 *  - after the first phase, the gradient buffers are equal bit for bit: Muon's update U on the
 *    Muon matrices of the shard (the kernel does the CPU's unfused fp32 operations), the raw
 *    gradients everywhere else; m on the Muon matrices bit for bit, v zero there on both;
 *    AdamW's m and v elsewhere within 1e-6 (norm-wise relative: the AdamW kernel lets nvcc fuse
 *    into FMAs, ~1 ulp per element);
 *  - after muon_orth, done on the GPU in two owner ranges [cut, n) then [0, cut), each Muon
 *    matrix within 5e-4 of the CPU's (norm-wise relative), everything else bit for bit. Why
 *    5e-4: both backends run the same fp32 Newton-Schulz and differ only in the summation order
 *    of the norm and of the matmuls (~1e-6 relative per matmul); the CPU's fp32 iteration is
 *    within ~2e-5 (max abs, entries ~0.15) of a double-precision one (test_muon), so two fp32
 *    orders should agree to ~1e-5; the quintic's slope is at most ~3.9 on [0, 1.2], so five
 *    steps could amplify a rounding difference by more, hence the headroom. A wrong transpose,
 *    coefficient, step count or shape scale gives errors of 1e-1 or more;
 *  - the two owner ranges give the single range's result bit for bit (U is put back and the
 *    whole range done again: fixed-order reductions, the same cuBLASLt plans);
 *  - the GPU's orthogonalised matrices, divided by their shape scale, have every singular value
 *    in [0.6, 1.25] (the quintic's band, as test_muon checks on the CPU; square matrices get a
 *    gradient with a dominant diagonal so that none is nearly singular);
 *  - after muon_apply, the parameter updates (new - old, per backend) within 5e-4 on each Muon
 *    matrix and 1e-4 on the AdamW tensors: their updates differ by a few ulps (FMA rounding
 *    through sqrt and divide), but the new parameter is rounded to its own ulp, up to 2.4e-7
 *    for the LayerNorm weights near 1, against updates of ~lr = 1e-2; parameters outside the
 *    shard untouched; with bf16 the working copy equals the masters rounded to
 *    nearest-even.
 * Without a CUDA device: prints "SKIP: no CUDA device" and exits 77. */
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "model/llama.h"
#include "model/model.h"
#include "cuda_model_test.h"
#include "cuda_test.h"
#include "tg_jacobi.h"
#include "tg_test.h"

enum { B = 2, T = 16 };

#define TOL_NS 5e-4   /* orthogonalised matrices and Muon updates */
#define TOL_ADAMW 1e-4 /* AdamW updates */
#define TOL_MOM 1e-6  /* AdamW moments */

/* The model's whole gradient buffer (n_padded fp32) <- host. */
static void grads_put(tg_model *m, const float *host, size_t n_padded) {
    tg_dtype dt;
    float *g = tg_model_grads(m, &dt);
    cudaStream_t s = (cudaStream_t)tg_model_stream(m);
    if (!s) {
        memcpy(g, host, n_padded * sizeof(float));
        return;
    }
    /* the model's stream does not synchronise with the legacy default stream */
    CU(cudaStreamSynchronize(s));
    CU(cudaMemcpyAsync(g, host, n_padded * sizeof(float), cudaMemcpyHostToDevice, s));
    CU(cudaStreamSynchronize(s));
}

/* Round to nearest-even bf16 (finite x), as __float2bfloat16_rn. */
static uint16_t bf16_rn(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* Smallest and largest singular value of R / scale (rows x cols). */
static void sv_range(const float *R, int rows, int cols, float scale, double *lo, double *hi) {
    const int tr = rows > cols, n = tr ? cols : rows, k = tr ? rows : cols;
    double *S = malloc((size_t)n * n * sizeof *S), *ev = malloc((size_t)n * sizeof *ev);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double acc = 0;
            for (int q = 0; q < k; q++) {
                const double x = tr ? R[(size_t)q * cols + i] : R[(size_t)i * cols + q];
                const double y = tr ? R[(size_t)q * cols + j] : R[(size_t)j * cols + q];
                acc += x * y;
            }
            S[i * n + j] = acc / ((double)scale * scale);
        }
    jacobi_eig(S, n, ev);
    *lo = 1e9;
    *hi = 0;
    for (int i = 0; i < n; i++) {
        const double s = sqrt(fmax(ev[i], 0));
        *lo = fmin(*lo, s);
        *hi = fmax(*hi, s);
    }
    free(S);
    free(ev);
}

/* The shape scale of the Muon matrices (model.h, tg_model_muon_orth). */
static float shape_scale(const tg_gpt2_layout *lay, const tg_tensor_info *t) {
    const int llama = lay->cfg.arch == TG_MODEL_ARCH_LLAMA;
    const int fan_out = llama ? t->shape[0] : t->shape[1], fan_in = llama ? t->shape[1] : t->shape[0];
    return fan_out > fan_in ? sqrtf((float)fan_out / (float)fan_in) : 1.0f;
}

/* Random gradients of ~1e-2; square Muon matrices get a dominant diagonal (see the header). */
static void make_grads(const tg_gpt2_layout *lay, float *g, size_t n_padded, uint64_t seed) {
    tg_rng r;
    tg_rng_init(&r, seed);
    memset(g, 0, n_padded * sizeof(float));
    for (size_t i = 0; i < lay->n_params; i++) g[i] = 0.01f * (tg_rng_f32(&r) * 2.0f - 1.0f);
    for (int k = 0; k < lay->n_tensors; k++) {
        const tg_tensor_info *t = &lay->tensors[k];
        if (!tg_model_muon_tensor(t) || t->shape[0] != t->shape[1]) continue;
        const int n = t->shape[0];
        for (int i = 0; i < n; i++) g[t->offset + (size_t)i * n + i] += 0.01f * 1.75f * sqrtf((float)n);
    }
}

/* Each Muon matrix fully inside [lo, hi), for the orthogonality check. */
static int inside(const tg_tensor_info *t, size_t lo, size_t hi) {
    return t->offset >= lo && t->offset + t->numel <= hi;
}

static void run_case(const char *name, const tg_gpt2_config *cfg0, int bf16) {
    tg_error err = {0};
    tg_gpt2_config cfg = *cfg0;
    tg_model_options cpu_opt = {.device = TG_DEVICE_CPU, .B = B, .T = T, .pad_multiple = 64};
    tg_model_options gpu_opt = cpu_opt;
    tg_model *cpu = NULL, *gpu = NULL;
    printf("case %s\n", name);
    gpu_opt.device = TG_DEVICE_CUDA;
    gpu_opt.bf16 = bf16;
    CHECK_OK(tg_gpt2_config_finalize(&cfg, &err), &err);
    CHECK_OK(tg_model_init(&cpu, &cfg, &cpu_opt, &err), &err);
    CHECK_OK(tg_model_init(&gpu, &cfg, &gpu_opt, &err), &err);
    if (!cpu || !gpu) {
        tg_model_free(cpu);
        tg_model_free(gpu);
        return;
    }
    CHECK(tg_model_has_muon(gpu));
    const tg_gpt2_layout *lay = tg_model_layout(cpu);
    const size_t n = lay->n_params, np = tg_model_n_padded(cpu);
    const int L = cfg.n_layer, llama = cfg.arch == TG_MODEL_ARCH_LLAMA;
    CHECK(tg_model_n_padded(gpu) == np);
    int first_muon = -1, n_muon = 0;
    for (int k = 0; k < lay->n_tensors; k++)
        if (tg_model_muon_tensor(&lay->tensors[k])) {
            if (first_muon < 0) first_muon = k;
            n_muon++;
        }
    CHECK(n_muon == (llama ? 7 : 4) * L);
    /* The shard: from inside wte (or, for Llama, the middle of the first Muon matrix) to just
     * past the last block. The owner cut for muon_orth: the start of block 1. */
    const tg_tensor_info *fm = &lay->tensors[first_muon];
    const size_t lo = llama ? fm->offset + fm->numel / 2 + 3 : 13, hi = lay->layer_begin[L] + 7;
    const size_t cut = lay->layer_begin[1], ns = hi - lo;
    float *p0 = malloc(np * sizeof(float)), *G = malloc(np * sizeof(float));
    float *pc = malloc(np * sizeof(float)), *pg = malloc(np * sizeof(float));
    float *qc = malloc(np * sizeof(float)), *qg = malloc(np * sizeof(float));
    float *gc = malloc(np * sizeof(float)), *gg = malloc(np * sizeof(float)), *U = malloc(np * sizeof(float));
    float *mc = malloc(ns * sizeof(float)), *vc = malloc(ns * sizeof(float));
    float *mg = malloc(ns * sizeof(float)), *vg = malloc(ns * sizeof(float));
    float *dc = malloc(np * sizeof(float)), *dg = malloc(np * sizeof(float));
    uint16_t *wb = malloc(np * sizeof(uint16_t));
    tg_rng r;
    tg_rng_init(&r, 99);
    if (llama) tg_llama_params_init(lay, p0, 42);
    else tg_gpt2_params_init(lay, p0, 42);
    for (int k = 0; k < lay->n_tensors; k++)
        if (lay->tensors[k].ndim == 1)
            for (size_t i = 0; i < lay->tensors[k].numel; i++) p0[lay->tensors[k].offset + i] += 0.1f * tg_rng_normal(&r);
    CHECK_OK(tg_model_params_set(cpu, p0, &err), &err);
    CHECK_OK(tg_model_params_set(gpu, p0, &err), &err);
    CHECK_OK(tg_model_opt_init(cpu, lo, hi, &err), &err);
    CHECK_OK(tg_model_opt_init(gpu, lo, hi, &err), &err);
    CHECK_OK(tg_model_params_set(gpu, p0, &err), &err); /* exact fp32 masters */

    const tg_muon_args mu = {.lr = 0.02f, .momentum = 0.95f, .nesterov = 1, .ns_steps = 5, .weight_decay = 0.1f};
    for (int step = 1; step <= 2; step++) {
        const tg_adamw_args aw = {.lo = lo, .hi = hi, .lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                                  .weight_decay = 0.1f, .grad_scale = 0.5f, .t = step, .muon = &mu};
        CHECK_OK(tg_model_params_get(cpu, pc, &err), &err);
        CHECK_OK(tg_model_params_get(gpu, pg, &err), &err);
        make_grads(lay, G, np, 1000 + (uint64_t)step);
        grads_put(cpu, G, np);
        grads_put(gpu, G, np);

        /* phase 1: momentum and U (Muon), AdamW (the rest) */
        CHECK_OK(tg_model_adamw(cpu, &aw, &err), &err);
        CHECK_OK(tg_model_adamw(gpu, &aw, &err), &err);
        CHECK_OK(tg_model_grads_get(cpu, gc, &err), &err);
        CHECK_OK(tg_model_grads_get(gpu, gg, &err), &err);
        CHECKF(memcmp(gc, gg, n * sizeof(float)) == 0, "step %d: gradient buffers after the first phase differ", step);
        CHECK_OK(tg_model_opt_get(cpu, mc, vc, &err), &err);
        CHECK_OK(tg_model_opt_get(gpu, mg, vg, &err), &err);
        int m_same = 1, v_zero = 1;
        double worst_m = 0, worst_v = 0;
        for (int k = 0; k < lay->n_tensors; k++) {
            const tg_tensor_info *t = &lay->tensors[k];
            const size_t a = t->offset > lo ? t->offset : lo, e = t->offset + t->numel < hi ? t->offset + t->numel : hi;
            if (a >= e) continue;
            if (tg_model_muon_tensor(t)) {
                m_same &= memcmp(mc + (a - lo), mg + (a - lo), (e - a) * sizeof(float)) == 0;
                for (size_t i = a; i < e; i++) v_zero &= vc[i - lo] == 0.0f && vg[i - lo] == 0.0f;
            } else {
                worst_m = fmax(worst_m, rel_err(mg + (a - lo), mc + (a - lo), e - a));
                worst_v = fmax(worst_v, rel_err(vg + (a - lo), vc + (a - lo), e - a));
            }
        }
        printf("  step %d phase 1: U and Muon m bitwise %s; AdamW m, v rel err %.2e, %.2e\n", step,
               m_same ? "equal" : "DIFFERENT", worst_m, worst_v);
        CHECK(m_same);
        CHECK(v_zero);
        CHECKF(worst_m < TOL_MOM && worst_v < TOL_MOM, "AdamW moments: %g, %g", worst_m, worst_v);

        /* phase 2: orthogonalisation; the GPU in two owner ranges, then again in one */
        memcpy(U, gg, n * sizeof(float));
        memset(U + n, 0, (np - n) * sizeof(float));
        CHECK_OK(tg_model_muon_orth(cpu, 0, np, mu.ns_steps, &err), &err);
        CHECK_OK(tg_model_muon_orth(gpu, cut, np, mu.ns_steps, &err), &err);
        CHECK_OK(tg_model_muon_orth(gpu, 0, cut, mu.ns_steps, &err), &err);
        CHECK_OK(tg_model_grads_get(gpu, dg, &err), &err); /* the split result */
        grads_put(gpu, U, np);
        CHECK_OK(tg_model_muon_orth(gpu, 0, np, mu.ns_steps, &err), &err);
        CHECK_OK(tg_model_grads_get(cpu, gc, &err), &err);
        CHECK_OK(tg_model_grads_get(gpu, gg, &err), &err);
        CHECKF(memcmp(dg, gg, n * sizeof(float)) == 0, "step %d: two owner ranges != one range", step);
        double worst_ns = 0, sv_lo = 1e9, sv_hi = 0;
        int rest_same = 1;
        for (int k = 0; k < lay->n_tensors; k++) {
            const tg_tensor_info *t = &lay->tensors[k];
            const size_t o = t->offset;
            if (!tg_model_muon_tensor(t)) {
                rest_same &= memcmp(gc + o, gg + o, t->numel * sizeof(float)) == 0;
                continue;
            }
            worst_ns = fmax(worst_ns, rel_err(gg + o, gc + o, t->numel));
            if (inside(t, lo, hi)) {
                double a, b;
                sv_range(gg + o, t->shape[0], t->shape[1], shape_scale(lay, t), &a, &b);
                sv_lo = fmin(sv_lo, a);
                sv_hi = fmax(sv_hi, b);
            }
        }
        printf("  step %d phase 2: NS rel err %.2e (bound %.0e); GPU singular values in [%.3f, %.3f]\n", step,
               worst_ns, TOL_NS, sv_lo, sv_hi);
        CHECK(rest_same);
        CHECKF(worst_ns < TOL_NS, "Newton-Schulz GPU vs CPU: %g", worst_ns);
        CHECKF(sv_lo > 0.6 && sv_hi < 1.25, "singular values [%g, %g]", sv_lo, sv_hi);

        /* phase 3: the update */
        CHECK_OK(tg_model_muon_apply(cpu, &aw, &err), &err);
        CHECK_OK(tg_model_muon_apply(gpu, &aw, &err), &err);
        CHECK_OK(tg_model_params_get(cpu, qc, &err), &err);
        CHECK_OK(tg_model_params_get(gpu, qg, &err), &err);
        for (size_t i = 0; i < n; i++) {
            dc[i] = qc[i] - pc[i];
            dg[i] = qg[i] - pg[i];
        }
        double worst_mu = 0, worst_aw = 0;
        int outside_same = 1;
        for (size_t i = 0; i < n; i++)
            if (i < lo || i >= hi) outside_same &= dc[i] == 0.0f && dg[i] == 0.0f;
        for (int k = 0; k < lay->n_tensors; k++) {
            const tg_tensor_info *t = &lay->tensors[k];
            const size_t a = t->offset > lo ? t->offset : lo, e = t->offset + t->numel < hi ? t->offset + t->numel : hi;
            if (a >= e) continue;
            const double d = rel_err(dg + a, dc + a, e - a);
            if (tg_model_muon_tensor(t)) worst_mu = fmax(worst_mu, d);
            else worst_aw = fmax(worst_aw, d);
        }
        printf("  step %d phase 3: update rel err Muon %.2e, AdamW %.2e\n", step, worst_mu, worst_aw);
        CHECK(outside_same);
        CHECKF(worst_mu < TOL_NS, "Muon update: %g", worst_mu);
        CHECKF(worst_aw < TOL_ADAMW, "AdamW update: %g", worst_aw);
        if (bf16) { /* the working copy is the masters rounded, on the shard */
            tg_dtype dt;
            const void *w = tg_model_params(gpu, &dt);
            cudaStream_t s = (cudaStream_t)tg_model_stream(gpu);
            CHECK(dt == TG_DTYPE_BF16);
            CU(cudaStreamSynchronize(s));
            CU(cudaMemcpy(wb, w, n * sizeof(uint16_t), cudaMemcpyDeviceToHost));
            int same = 1;
            for (size_t i = lo; i < hi && i < n; i++) same &= wb[i] == bf16_rn(qg[i]);
            CHECKF(same, "step %d: bf16 working copy != rounded masters", step);
        }
    }
    tg_model_free(cpu);
    tg_model_free(gpu);
    free(p0);
    free(G);
    free(pc);
    free(pg);
    free(qc);
    free(qg);
    free(gc);
    free(gg);
    free(U);
    free(mc);
    free(vc);
    free(mg);
    free(vg);
    free(dc);
    free(dg);
    free(wb);
}

int main(void) {
    cuda_test_require_device();
    const tg_gpt2_config gpt2 = {.max_seq_len = T, .vocab_size = 100, .n_layer = 2, .n_head = 4, .n_embd = 64};
    const tg_gpt2_config llama = {.max_seq_len = T, .vocab_size = 100, .n_layer = 2, .n_head = 4, .n_embd = 64,
                                  .arch = TG_MODEL_ARCH_LLAMA, .n_kv_head = 2, .ffn_dim = 176,
                                  .rope_theta = 10000.0, .norm_eps = 1e-5};
    run_case("gpt2-fp32", &gpt2, 0);
    run_case("gpt2-bf16", &gpt2, 1);
    run_case("llama-fp32", &llama, 0);
    TEST_MAIN_END();
}
