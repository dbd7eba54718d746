/* tests/cuda/test_cuda_llama.c — the CUDA backend for model.arch=llama (model/cuda/llama_cuda.cu)
 * against the CPU reference backend (model/cpu/llama_cpu.c).
 *
 * A small Llama (L=2, C=64, F=176, T=32, V=100 -> Vp=128, B=4) gets the same parameters and
 * batches on both backends; two micro-batches are accumulated (the second with B_used = 3 and
 * ignored targets), then two AdamW steps on a shard that cuts through embed_tokens and
 * model.norm. Compared: logits, loss, every parameter gradient (norm-wise relative error per
 * tensor), grad_sqnorm, the AdamW update and moments, and the grad-ready hook sequence; then the
 * contract errors. The same checks as test_cuda_model.c's for GPT-2. Then the grad-ready hook's
 * timing (hook_snapshots: gradients copied on the model's stream at each hook equal the final
 * ones), with L=3, tied and untied, each attention.
 *
 * Cases: grouped-query (4 query heads over 2 KV heads), multi-query (1 KV head) and multi-head
 * attention; tied and untied LM heads; plain and Llama 3 scaled RoPE; fp32 (always the cuBLASLt
 * attention) with and without cuBLASLt's epilogue fusion; bf16 with the flash kernels (head
 * sizes 16 and 64), with the cuBLASLt attention and with cuDNN's SDPA (where cuDNN takes the
 * shape: the KV heads as they are, RoPE in the projection's layout, for the full first
 * micro-batch; the flash kernels with repeated KV heads for the partial second one); LM head in
 * one chunk or in chunks of 48 rows.
 *
 * Tolerances, as test_cuda_model.c's: fp32 must match to 1e-4 (the backends differ only in
 * summation order and expf's last bits; the RoPE tables are the same fp32 numbers on both).
 * The CPU backend has no bf16 emulation for Llama, so bf16 is compared with fp32: bf16 keeps 8
 * significant bits (unit roundoff 2^-9 = 2e-3) and every activation and activation gradient is
 * rounded ~10-20 times along the forward/backward path (Llama has GPT-2's count: the q|k|v
 * re-layout adds a rounding where GPT-2 has none, the MLP has one fewer stored pre-activation),
 * which gives norm-wise errors of about 1e-2 on gradients; 5e-2 leaves headroom while a wrong
 * kernel shows errors of O(1). Logits and loss see fewer roundings: 2e-2 and 1e-2.
 *
 * Without a CUDA device: prints "SKIP: no CUDA device" and exits 77. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "model/llama.h"
#include "model/model.h"
#include "cuda_model_test.h"
#include "cuda_test.h"
#include "tg_test.h"

enum { B = 4, T = 32 };

typedef struct {
    float loss, logits, grads, sqnorm, update, moments, params;
} tolerances;

/* loss, logits, grads, sqnorm, AdamW update, AdamW moments, params after AdamW (test_cuda_model.c
 * explains each). */
static const tolerances fp32_tol = {1e-4f, 1e-4f, 1e-4f, 1e-4f, 1e-3f, 1e-4f, 1e-4f};
static const tolerances bf16_tol = {1e-2f, 2e-2f, 5e-2f, 1e-1f, 1e-1f, 1e-1f, 1e-2f};

static void make_batch(tg_rng *r, int32_t *in, int32_t *tgt, int V) { make_batch_n(r, in, tgt, B * T, V); }

/* co: the CUDA options (attention cudnn, flash or naive = cuBLASLt + softmax; LM-head rows...);
 * C = 64, n_head query heads over n_kv KV heads (head size 64 / n_head), tied or untied head,
 * Llama 3 RoPE scaling when rope_factor > 0. */
static void run_case(const char *name, int bf16, tg_cuda_options co, int n_head, int n_kv, int tied,
                     double rope_factor, const tolerances *tol) {
    tg_error err = {0};
    tg_gpt2_config cfg = {.max_seq_len = T, .vocab_size = 100, .n_layer = 2, .n_head = n_head, .n_embd = 64,
                          .arch = TG_MODEL_ARCH_LLAMA, .n_kv_head = n_kv, .ffn_dim = 176, .rope_theta = 10000.0,
                          .norm_eps = 1e-5, .tie_embeddings = tied};
    tg_model_options cpu_opt = {.device = TG_DEVICE_CPU, .B = B, .T = T, .pad_multiple = 64};
    tg_model_options gpu_opt = cpu_opt;
    tg_model *cpu = NULL, *gpu = NULL;
    hook_log hc = {0}, hg = {0};
    printf("case %s\n", name);
    if (rope_factor > 0) { /* a short original context, so that all three frequency bands occur */
        cfg.rope_factor = rope_factor;
        cfg.rope_low_freq_factor = 1.0;
        cfg.rope_high_freq_factor = 4.0;
        cfg.rope_original_max_pos = 16;
    }
    gpu_opt.device = TG_DEVICE_CUDA;
    gpu_opt.bf16 = bf16;
    gpu_opt.cuda = co;
    CHECK_OK(tg_gpt2_config_finalize(&cfg, &err), &err);
    CHECK_OK(tg_model_init(&cpu, &cfg, &cpu_opt, &err), &err);
    CHECK_OK(tg_model_init(&gpu, &cfg, &gpu_opt, &err), &err);
    if (gpu) printf("  backend: %s\n", tg_model_describe(gpu));
    if (!cpu || !gpu) {
        tg_model_free(cpu);
        tg_model_free(gpu);
        return;
    }
    const tg_gpt2_layout *lay = tg_model_layout(cpu);
    const size_t n = lay->n_params, np = tg_model_n_padded(cpu);
    const int V = cfg.vocab_size, Vp = cfg.padded_vocab_size, L = cfg.n_layer;
    CHECK(tg_model_n_padded(gpu) == np);
    /* a, b hold params/grads (n) or the AdamW moments m|v of the shard (2 x (hi-lo) <= 2 np) */
    float *p0 = malloc(n * sizeof(float)), *a = malloc(2 * np * sizeof(float)), *b = malloc(2 * np * sizeof(float));
    float *la = malloc((size_t)B * T * Vp * sizeof(float)), *lb = malloc((size_t)B * T * Vp * sizeof(float));
    int32_t in1[B * T], tg1[B * T], in2[B * T], tg2[B * T];
    tg_rng r;
    tg_rng_init(&r, 1234);
    /* Llama init, then non-unit RMSNorm weights so their paths matter. */
    tg_llama_params_init(lay, p0, 42);
    for (int k = 0; k < lay->n_tensors; k++)
        if (lay->tensors[k].ndim == 1)
            for (size_t i = 0; i < lay->tensors[k].numel; i++)
                p0[lay->tensors[k].offset + i] += 0.1f * tg_rng_normal(&r);
    make_batch(&r, in1, tg1, V);
    make_batch(&r, in2, tg2, V);

    /* A shard that cuts through embed_tokens and model.norm.weight. */
    const size_t lo = 13, hi = lay->layer_begin[L] + 7;
    CHECK_OK(tg_model_params_set(cpu, p0, &err), &err);
    CHECK_OK(tg_model_params_set(gpu, p0, &err), &err);
    CHECK_OK(tg_model_opt_init(cpu, lo, hi, &err), &err);
    CHECK_OK(tg_model_opt_init(gpu, lo, hi, &err), &err);
    CHECK_OK(tg_model_params_set(gpu, p0, &err), &err); /* exact fp32 masters (docs/cuda.md) */
    tg_model_set_grad_hook(cpu, hook, &hc);
    tg_model_set_grad_hook(gpu, hook, &hg);

    CHECK_OK(tg_model_grads_zero(cpu, &err), &err);
    CHECK_OK(tg_model_grads_zero(gpu, &err), &err);
    float lc = 0, lg = 0;
    /* micro-batch 1: all B rows */
    CHECK_OK(tg_model_forward(cpu, in1, tg1, B, &err), &err);
    CHECK_OK(tg_model_forward(gpu, in1, tg1, B, &err), &err);
    CHECK_OK(tg_model_logits_get(cpu, lb, &err), &err);
    CHECK_OK(tg_model_logits_get(gpu, la, &err), &err);
    double e = rel_err(la, lb, (size_t)B * T * Vp);
    CHECKF(e < tol->logits, "%s: logits rel err %.3g", name, e);
    CHECK_OK(tg_model_loss(cpu, &lc, &err), &err);
    CHECK_OK(tg_model_loss(gpu, &lg, &err), &err);
    CHECKF(fabsf(lg - lc) < tol->loss * fabsf(lc), "%s: loss cuda %.7f cpu %.7f", name, lg, lc);
    printf("  loss 1: cuda %.6f cpu %.6f, logits rel err %.2e\n", lg, lc, e);
    CHECK_OK(tg_model_backward(cpu, 0.5f, &err), &err);
    CHECK_OK(tg_model_backward(gpu, 0.5f, &err), &err);
    /* micro-batch 2: B_used = B - 1 rows, accumulated; the trainer's order (backward, then loss:
     * on CUDA the loss then comes from the fused LM-head pass of backward) */
    CHECK_OK(tg_model_forward(cpu, in2, tg2, B - 1, &err), &err);
    CHECK_OK(tg_model_forward(gpu, in2, tg2, B - 1, &err), &err);
    CHECK_OK(tg_model_backward(cpu, 0.5f, &err), &err);
    CHECK_OK(tg_model_backward(gpu, 0.5f, &err), &err);
    CHECK_OK(tg_model_loss(cpu, &lc, &err), &err);
    CHECK_OK(tg_model_loss(gpu, &lg, &err), &err);
    CHECKF(fabsf(lg - lc) < tol->loss * fabsf(lc), "%s: loss 2 cuda %.7f cpu %.7f", name, lg, lc);

    /* the hook sequence */
    CHECKF(hg.n == hc.n && hg.n == 2 * (L + 2), "%s: hook calls cuda %d cpu %d", name, hg.n, hc.n);
    for (int i = 0; i < hc.n && i < hg.n && i < 64; i++)
        CHECKF(hg.lo[i] == hc.lo[i] && hg.hi[i] == hc.hi[i], "%s: hook %d", name, i);

    /* gradients, tensor by tensor */
    CHECK_OK(tg_model_grads_get(cpu, b, &err), &err);
    CHECK_OK(tg_model_grads_get(gpu, a, &err), &err);
    double worst = 0.0;
    int worst_k = 0;
    for (int k = 0; k < lay->n_tensors; k++) {
        const tg_tensor_info *t = &lay->tensors[k];
        e = rel_err(a + t->offset, b + t->offset, t->numel);
        CHECKF(e < tol->grads, "%s: grad %s rel err %.3g", name, t->name, e);
        if (e > worst) {
            worst = e;
            worst_k = k;
        }
    }
    printf("  grads: worst rel err %.2e (%s)\n", worst, lay->tensors[worst_k].name);

    double sc = 0, sg = 0;
    CHECK_OK(tg_model_grad_sqnorm(cpu, 0, np, &sc, &err), &err);
    CHECK_OK(tg_model_grad_sqnorm(gpu, 0, np, &sg, &err), &err);
    CHECKF(fabs(sg - sc) < tol->sqnorm * sc, "%s: sqnorm cuda %.9g cpu %.9g", name, sg, sc);
    CHECK_OK(tg_model_grad_sqnorm(cpu, lay->layer_begin[0] + 3, lay->layer_begin[1], &sc, &err), &err);
    CHECK_OK(tg_model_grad_sqnorm(gpu, lay->layer_begin[0] + 3, lay->layer_begin[1], &sg, &err), &err);
    CHECKF(fabs(sg - sc) < tol->sqnorm * sc, "%s: layer-0 sqnorm cuda %.9g cpu %.9g", name, sg, sc);

    /* Two AdamW steps on the shard (same gradients). eps = 1e-3 keeps the step-1 update
     * g/(|g| + eps) away from sign(g), which would turn grads that differ only by rounding
     * into updates of opposite sign. */
    tg_adamw_args ad = {.lo = lo, .hi = hi, .lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-3f,
                        .weight_decay = 0.1f, .grad_scale = 0.7f, .t = 1};
    for (ad.t = 1; ad.t <= 2; ad.t++) {
        CHECK_OK(tg_model_adamw(cpu, &ad, &err), &err);
        CHECK_OK(tg_model_adamw(gpu, &ad, &err), &err);
    }
    CHECK_OK(tg_model_params_get(cpu, b, &err), &err);
    CHECK_OK(tg_model_params_get(gpu, a, &err), &err);
    e = rel_err(a, b, n);
    CHECKF(e < tol->params, "%s: params after adamw rel err %.3g", name, e);
    /* the update itself, inside the shard */
    for (size_t i = lo; i < hi; i++) {
        a[i] -= p0[i];
        b[i] -= p0[i];
    }
    e = rel_err(a + lo, b + lo, hi - lo);
    CHECKF(e < tol->update, "%s: adamw update rel err %.3g", name, e);
    /* outside the shard nothing moved (up to the working-copy rounding) */
    CHECKF(rel_err(a, p0, lo) < tol->params && rel_err(b, p0, lo) == 0.0, "%s: params below shard", name);
    printf("  adamw: update rel err %.2e\n", e);
    CHECK_OK(tg_model_opt_get(cpu, b, b + (hi - lo), &err), &err);
    CHECK_OK(tg_model_opt_get(gpu, a, a + (hi - lo), &err), &err);
    e = rel_err(a, b, hi - lo);
    CHECKF(e < tol->moments, "%s: adam m rel err %.3g", name, e);
    e = rel_err(a + (hi - lo), b + (hi - lo), hi - lo);
    CHECKF(e < tol->moments, "%s: adam v rel err %.3g", name, e);
    CHECK(tg_model_opt_bytes(gpu) == (bf16 ? 3 : 2) * (hi - lo) * sizeof(float));

    /* contract errors */
    CHECK(tg_model_backward(gpu, 1.0f, &err) == TG_ERR_ARG); /* backward already ran */
    in1[5] = V;
    CHECK(tg_model_forward(gpu, in1, tg1, B, &err) == TG_ERR_DATA);
    in1[5] = 0;

    free(p0);
    free(a);
    free(b);
    free(la);
    free(lb);
    tg_model_free(cpu);
    tg_model_free(gpu);
}

/* The grad-ready hook comes only after the gradients it names are complete on the model's stream:
 * like the trainer's hook (which all-reduces [lo, hi) on a stream ordered after the model's), this
 * one copies [lo, hi) of the gradients on the model's stream when called; after two micro-batches
 * (the second partial) those copies must equal the final gradients bit for bit. */
typedef struct {
    tg_model *m;
    float *snap; /* device, n_padded */
    hook_log log;
} snapshot_hook;

static void snapshot(void *ctx, size_t lo, size_t hi) {
    snapshot_hook *h = ctx;
    tg_dtype dt;
    const float *g = tg_model_grads(h->m, &dt);
    hook(&h->log, lo, hi);
    CHECK(cudaMemcpyAsync(h->snap + lo, g + lo, (hi - lo) * sizeof(float), cudaMemcpyDeviceToDevice,
                          (cudaStream_t)tg_model_stream(h->m)) == cudaSuccess);
}

static void hook_snapshots(const char *name, int bf16, tg_cuda_attention attn, int tied) {
    tg_error err = {0};
    tg_gpt2_config cfg = {.max_seq_len = T, .vocab_size = 100, .n_layer = 3, .n_head = 4, .n_embd = 64,
                          .arch = TG_MODEL_ARCH_LLAMA, .n_kv_head = 2, .ffn_dim = 176, .tie_embeddings = tied};
    tg_model_options opt = {.device = TG_DEVICE_CUDA, .bf16 = bf16, .B = B, .T = T, .pad_multiple = 64,
                            .cuda = {.attention = attn, .lmhead_rows = 32}};
    tg_model *m = NULL;
    snapshot_hook sh = {0};
    int32_t in1[B * T], tg1[B * T], in2[B * T], tg2[B * T];
    tg_rng r;
    printf("case hook snapshots %s\n", name);
    CHECK_OK(tg_gpt2_config_finalize(&cfg, &err), &err);
    CHECK_OK(tg_model_init(&m, &cfg, &opt, &err), &err);
    if (!m) return;
    const tg_gpt2_layout *lay = tg_model_layout(m);
    float *p0 = malloc(lay->n_params * sizeof(float)), *g = malloc(lay->n_params * sizeof(float));
    float *snap = malloc(lay->n_params * sizeof(float));
    tg_llama_params_init(lay, p0, 11);
    tg_rng_init(&r, 5);
    make_batch(&r, in1, tg1, cfg.vocab_size);
    make_batch(&r, in2, tg2, cfg.vocab_size);
    sh.m = m;
    CHECK(cudaMalloc((void **)&sh.snap, tg_model_n_padded(m) * sizeof(float)) == cudaSuccess);
    tg_model_set_grad_hook(m, snapshot, &sh);
    CHECK_OK(tg_model_params_set(m, p0, &err), &err);
    CHECK_OK(tg_model_grads_zero(m, &err), &err);
    CHECK_OK(tg_model_forward(m, in1, tg1, B, &err), &err);
    CHECK_OK(tg_model_backward(m, 0.5f, &err), &err);
    CHECK_OK(tg_model_forward(m, in2, tg2, B - 1, &err), &err);
    CHECK_OK(tg_model_backward(m, 0.5f, &err), &err);
    if (sh.snap) {
        size_t bad = 0;
        CHECK_OK(tg_model_grads_get(m, g, &err), &err);
        CHECKF(sh.log.n == 2 * (cfg.n_layer + 2), "%s: %d hook calls", name, sh.log.n);
        CHECK(cudaMemcpy(snap, sh.snap, lay->n_params * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess);
        for (size_t i = 0; i < lay->n_params; i++) bad += memcmp(&g[i], &snap[i], sizeof(float)) != 0;
        CHECKF(bad == 0, "%s: %zu of %zu gradients copied at the hooks differ from the final ones", name, bad,
               lay->n_params);
        printf("  %zu of %zu hook-time gradients differ from the final ones\n", bad, lay->n_params);
        cudaFree(sh.snap);
    }
    free(p0);
    free(g);
    free(snap);
    tg_model_free(m);
}

/* What the Llama CUDA backend refuses at init, before it touches a device. */
static void refusals(void) {
    tg_error err = {0};
    tg_gpt2_config cfg = {.max_seq_len = T, .vocab_size = 100, .n_layer = 2, .n_head = 4, .n_embd = 64,
                          .arch = TG_MODEL_ARCH_LLAMA, .n_kv_head = 2, .ffn_dim = 176};
    tg_model_options opt = {.device = TG_DEVICE_CUDA, .B = B, .T = T, .recompute = 1};
    tg_model *m = NULL;
    printf("case refusals\n");
    CHECK_OK(tg_gpt2_config_finalize(&cfg, &err), &err);
    CHECK(tg_model_init(&m, &cfg, &opt, &err) == TG_ERR_UNSUPPORTED && m == NULL);
    CHECKF(strstr(err.msg, "recompute") != NULL, "message: %s", err.msg);
}

int main(void) {
    const tg_cuda_options flash48 = {.attention = TG_CUDA_ATTN_FLASH, .lmhead_rows = 48};
    const tg_cuda_options flash = {.attention = TG_CUDA_ATTN_FLASH, .lmhead_rows = 8192};
    const tg_cuda_options naive48 = {.attention = TG_CUDA_ATTN_NAIVE, .lmhead_rows = 48};
    const tg_cuda_options cudnn = {.attention = TG_CUDA_ATTN_CUDNN, .lmhead_rows = 8192};
    const tg_cuda_options cudnn48 = {.attention = TG_CUDA_ATTN_CUDNN, .lmhead_rows = 48};
    const tg_cuda_options unfused = {.attention = TG_CUDA_ATTN_FLASH, .unfused = 1, .lmhead_rows = 8192};
    refusals(); /* before any device is touched: runs without a GPU too */
    cuda_test_require_device();
    /* name, bf16, options, n_head, n_kv_head, tied, rope_factor */
    run_case("fp32-gqa-untied", 0, flash48, 4, 2, 0, 0.0, &fp32_tol);
    run_case("fp32-mqa-tied-llama3rope", 0, flash, 4, 1, 1, 8.0, &fp32_tol);
    run_case("fp32-mha-untied-nofusion", 0, unfused, 4, 4, 0, 0.0, &fp32_tol);
    run_case("bf16-flash-gqa-untied", 1, flash, 4, 2, 0, 0.0, &bf16_tol);
    run_case("bf16-flash-mqa-tied-hs64", 1, flash48, 1, 1, 1, 8.0, &bf16_tol);
    run_case("bf16-naive-gqa-tied", 1, naive48, 4, 2, 1, 0.0, &bf16_tol);
    /* cuDNN SDPA serves the full first micro-batch, flash the partial second one (B_used < B) */
    run_case("bf16-cudnn-gqa-untied", 1, cudnn, 4, 2, 0, 8.0, &bf16_tol);
    run_case("bf16-cudnn-mqa-tied", 1, cudnn48, 2, 1, 1, 0.0, &bf16_tol);
    hook_snapshots("bf16-cudnn-untied", 1, TG_CUDA_ATTN_CUDNN, 0);
    hook_snapshots("bf16-flash-tied", 1, TG_CUDA_ATTN_FLASH, 1);
    hook_snapshots("fp32-tied", 0, TG_CUDA_ATTN_NAIVE, 1);
    TEST_MAIN_END();
}
