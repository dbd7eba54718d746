/* model/cuda/gpt2_cuda_options.cu — the CUDA backend's choices (tg_cuda_options, model/model.h):
 * checked before any device is touched, so a wrong value fails at once with the option's name
 * and the accepted values, and applied to the backend's state (gpt2_cuda.cuh). */
#include <stdio.h>
#include <string.h>

#include "model/cuda/gpt2_cuda.cuh"

/* The LM head runs in chunks of this many rows by default (see lmhead_impl in gpt2_cuda.cu):
 * 8192 rows keep the matmuls large (8192 x 50304 x 768) while the logits take 0.8 GB instead of
 * 6.6 GB at B=64, T=1024. */
#define TG_CUDA_LMHEAD_ROWS_DEFAULT 8192

tg_status cuda_options_apply(cuda_impl *p, const tg_model_options *opt, tg_error *err) {
    tg_status st = TG_OK;
    const tg_cuda_options *o = &opt->cuda;
    const struct {
        const char *name;
        int value;
    } flags[] = {{"cudnn_atomics", o->cudnn_atomics}, {"cudnn_tune", o->cudnn_tune},
                 {"cublaslt_tune", o->cublaslt_tune}, {"unfused", o->unfused}, {"profile", o->profile}};
    if ((int)o->attention < TG_CUDA_ATTN_CUDNN || (int)o->attention > TG_CUDA_ATTN_NAIVE)
        TG_FAIL(err, TG_ERR_ARG, "cuda options: attention=%d: expected %d (cudnn), %d (flash) or %d (naive)",
                (int)o->attention, TG_CUDA_ATTN_CUDNN, TG_CUDA_ATTN_FLASH, TG_CUDA_ATTN_NAIVE);
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (flags[i].value != 0 && flags[i].value != 1)
            TG_FAIL(err, TG_ERR_ARG, "cuda options: %s=%d: expected 0 or 1", flags[i].name, flags[i].value);
    if (o->lmhead_rows < 0 || o->lmhead_rows > (1 << 30))
        TG_FAIL(err, TG_ERR_ARG, "cuda options: lmhead_rows=%d: expected a row count >= 1, or 0 for %d",
                o->lmhead_rows, TG_CUDA_LMHEAD_ROWS_DEFAULT);
    p->log = opt->log;
    p->blas.log = opt->log;
    p->blas.fuse = !o->unfused;
    /* Opt-in: timing noise may pick other algorithms in a resumed process (the trainer keeps them). */
    p->blas.tune = o->cublaslt_tune;
    p->head_rows = o->lmhead_rows ? o->lmhead_rows : TG_CUDA_LMHEAD_ROWS_DEFAULT;
cleanup:
    return st;
}

/* fp32 always takes the cuBLASLt + softmax path ("naive"): it is the exact reference. cuDNN serves
 * full batches; a partial batch (B_used < B) and any shape cuDNN refuses run on the flash
 * kernels. cuDNN takes NKV key/value heads as they are (grouped-query attention); the flash and
 * cuBLASLt paths need them repeated to NH (llama_cuda.cu does that). */
tg_status cuda_attention_init(cuda_impl *p, const tg_cuda_options *o, tg_error *err) {
    tg_status st = TG_OK;
    const int deterministic = !o->cudnn_atomics, tune = o->cudnn_tune;
    char why[200] = "";
    p->flash = p->bf16 && tg_cuda_flash_supported(p->C / p->NH) && o->attention != TG_CUDA_ATTN_NAIVE;
    if (p->flash && o->attention == TG_CUDA_ATTN_CUDNN)
        TG_TRY(tg_cudnn_attn_init_gqa(&p->cudnn, p->B, p->T, p->NH, p->NKV, p->C / p->NH, deterministic, tune,
                                      p->log, why, sizeof why, err));
    if (p->cudnn) {
        const size_t v = tg_cudnn_version();
        snprintf(p->note, sizeof p->note,
                 "bf16, attention: cudnn sdpa (cuDNN %zu.%zu.%zu, %s%s; flash kernels for partial batches)",
                 v / 10000, v / 100 % 100, v % 100, deterministic ? "deterministic" : "non-deterministic backward",
                 tune ? ", plans autotuned" : "");
    } else if (p->flash) {
        snprintf(p->note, sizeof p->note, "bf16, attention: flash kernels%s%s%s",
                 why[0] ? " (cudnn unavailable: " : "", why, why[0] ? ")" : "");
    } else {
        snprintf(p->note, sizeof p->note, "%s, attention: cuBLASLt + softmax (T x T)", p->bf16 ? "bf16" : "fp32");
    }
    {
        const size_t n = strlen(p->note), v = cublasLtGetVersion();
        snprintf(p->note + n, sizeof p->note - n, ", cuBLASLt %zu.%zu.%zu", v / 10000, v / 100 % 100, v % 100);
    }
cleanup:
    return st;
}
