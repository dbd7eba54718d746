/* model/backend.h — internal: what a backend (cpu/, cuda/) implements behind model/model.h.
 * model.c owns the shared parts (layout, options, hook) and forwards each call to ops. */
#ifndef TG_MODEL_BACKEND_H
#define TG_MODEL_BACKEND_H

#include "model/model.h"

typedef struct tg_backend_ops tg_backend_ops;

struct tg_model {
    const tg_backend_ops *ops;
    tg_gpt2_layout lay;
    tg_model_options opt;
    size_t n_padded;
    tg_grad_ready_fn hook;
    void *hook_ctx;
    tg_shard_io shard_io; /* set by tg_model_shard_storage */
    void *impl; /* backend state */
};

/* Each function has the contract of its tg_model_* namesake in model/model.h. */
struct tg_backend_ops {
    const char *name;
    tg_status (*init)(tg_model *m, tg_error *err); /* m->lay/opt/n_padded are set */
    void (*free)(tg_model *m);
    tg_status (*params_set)(tg_model *m, const float *host, tg_error *err);
    tg_status (*params_get)(tg_model *m, float *host, tg_error *err);
    tg_status (*grads_get)(tg_model *m, float *host, tg_error *err);
    void *(*params)(tg_model *m, tg_dtype *dtype);
    void *(*grads)(tg_model *m, tg_dtype *dtype);
    void *(*stream)(tg_model *m);
    tg_status (*grads_zero)(tg_model *m, tg_error *err);
    tg_status (*forward)(tg_model *m, const int32_t *inputs, const int32_t *targets, int B_used,
                         tg_error *err);
    tg_status (*loss)(tg_model *m, float *loss, tg_error *err);
    tg_status (*logits_get)(tg_model *m, float *host, tg_error *err);
    tg_status (*backward)(tg_model *m, float loss_scale, tg_error *err);
    tg_status (*grad_sqnorm)(tg_model *m, size_t lo, size_t hi, double *out, tg_error *err);
    tg_status (*opt_init)(tg_model *m, size_t lo, size_t hi, tg_error *err);
    size_t (*opt_bytes)(const tg_model *m);
    tg_status (*opt_get)(tg_model *m, float *mom, float *var, tg_error *err);
    tg_status (*opt_set)(tg_model *m, const float *mom, const float *var, tg_error *err);
    tg_status (*adamw)(tg_model *m, const tg_adamw_args *a, tg_error *err);
    size_t (*device_bytes)(const tg_model *m);
    const char *(*describe)(const tg_model *m);
    /* Optional (NULL: the backend picks nothing by timing; model.c answers for it). */
    tg_status (*tuning_get)(tg_model *m, void **blob, size_t *len, tg_error *err);
    tg_status (*tuning_set)(tg_model *m, const void *blob, size_t len, tg_error *err);
    /* Optional (NULL: sharded storage is refused; model.c checks level and shard first). */
    tg_status (*shard_storage)(tg_model *m, int level, size_t lo, size_t hi, tg_error *err);
    float *(*shard_params)(tg_model *m);
    float *(*shard_grads)(tg_model *m);
    /* Optional (NULL: no Muon; adamw then refuses a->muon). Contracts in model.h. */
    tg_status (*muon_orth)(tg_model *m, size_t lo, size_t hi, int ns_steps, tg_error *err);
    tg_status (*muon_apply)(tg_model *m, const tg_adamw_args *a, tg_error *err);
    /* Optional (NULL: model.c derives it from params/grads dtypes, opt_bytes and device_bytes). */
    void (*memory)(const tg_model *m, tg_model_memory *out);
};

extern const tg_backend_ops tg_cpu_backend_ops;
extern const tg_backend_ops tg_cpu_llama_backend_ops; /* model/cpu/llama_cpu.c */
#ifdef TG_HAVE_CUDA
extern const tg_backend_ops tg_cuda_backend_ops;
extern const tg_backend_ops tg_cuda_llama_backend_ops; /* model/cuda/llama_cuda.cu */
#endif

/* Calls the grad-ready hook, if any (backends call it from backward). */
static inline void tg_model_grad_ready(tg_model *m, size_t lo, size_t hi) {
    if (m->hook) m->hook(m->hook_ctx, lo, hi);
}

#endif
