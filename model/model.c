#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "model/backend.h"

#ifdef TG_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

int tg_model_cuda_available(void) {
#ifdef TG_HAVE_CUDA
    return 1;
#else
    return 0;
#endif
}

int tg_model_cuda_device_count(void) {
#ifdef TG_HAVE_CUDA
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
    return n;
#else
    return 0;
#endif
}

tg_status tg_model_init(tg_model **out, const tg_gpt2_config *cfg, const tg_model_options *opt,
                        tg_error *err) {
    tg_status st = TG_OK;
    tg_model *m = NULL;
    *out = NULL;
    if (opt->B <= 0 || opt->T <= 0 || opt->T > cfg->max_seq_len)
        return tg_error_set(err, TG_ERR_ARG, "model: need 0 < T <= %d and B > 0 (got B=%d T=%d)",
                            cfg->max_seq_len, opt->B, opt->T);
    m = calloc(1, sizeof *m);
    TG_CHECK_ALLOC(err, m);
    m->opt = *opt;
    if (m->opt.pad_multiple == 0) m->opt.pad_multiple = 1;
    TG_TRY(tg_gpt2_layout_init(&m->lay, cfg, err));
    m->n_padded = (m->lay.n_params + m->opt.pad_multiple - 1) / m->opt.pad_multiple * m->opt.pad_multiple;
    if (opt->device == TG_DEVICE_CPU) {
        m->ops = cfg->arch == TG_MODEL_ARCH_LLAMA ? &tg_cpu_llama_backend_ops : &tg_cpu_backend_ops;
    } else {
#ifdef TG_HAVE_CUDA
        m->ops = cfg->arch == TG_MODEL_ARCH_LLAMA ? &tg_cuda_llama_backend_ops : &tg_cuda_backend_ops;
#else
        TG_FAIL(err, TG_ERR_UNSUPPORTED,
                "train.device=cuda but truthgpt was built without CUDA (configure with -DTRUTHGPT_CUDA=ON)");
#endif
    }
    TG_TRY(m->ops->init(m, err));
    *out = m;
    m = NULL;
cleanup:
    if (m) {
        tg_gpt2_layout_free(&m->lay);
        free(m);
    }
    return st;
}

void tg_model_free(tg_model *m) {
    if (!m) return;
    if (m->ops) m->ops->free(m);
    tg_gpt2_layout_free(&m->lay);
    free(m);
}

const tg_gpt2_layout *tg_model_layout(const tg_model *m) { return &m->lay; }
size_t tg_model_n_padded(const tg_model *m) { return m->n_padded; }
const tg_model_options *tg_model_opts(const tg_model *m) { return &m->opt; }
void tg_model_set_grad_hook(tg_model *m, tg_grad_ready_fn fn, void *ctx) {
    m->hook = fn;
    m->hook_ctx = ctx;
}

tg_status tg_model_params_set(tg_model *m, const float *h, tg_error *e) { return m->ops->params_set(m, h, e); }
tg_status tg_model_params_get(tg_model *m, float *h, tg_error *e) { return m->ops->params_get(m, h, e); }
tg_status tg_model_grads_get(tg_model *m, float *h, tg_error *e) { return m->ops->grads_get(m, h, e); }
void *tg_model_params(tg_model *m, tg_dtype *d) { return m->ops->params(m, d); }
void *tg_model_grads(tg_model *m, tg_dtype *d) { return m->ops->grads(m, d); }
void *tg_model_stream(tg_model *m) { return m->ops->stream(m); }
tg_status tg_model_grads_zero(tg_model *m, tg_error *e) { return m->ops->grads_zero(m, e); }
tg_status tg_model_forward(tg_model *m, const int32_t *in, const int32_t *tgt, int B_used, tg_error *e) {
    if (B_used <= 0 || B_used > m->opt.B)
        return tg_error_set(e, TG_ERR_ARG, "model: forward with B=%d rows, model holds %d", B_used, m->opt.B);
    return m->ops->forward(m, in, tgt, B_used, e);
}
tg_status tg_model_loss(tg_model *m, float *l, tg_error *e) { return m->ops->loss(m, l, e); }
tg_status tg_model_logits_get(tg_model *m, float *h, tg_error *e) { return m->ops->logits_get(m, h, e); }
tg_status tg_model_backward(tg_model *m, float s, tg_error *e) { return m->ops->backward(m, s, e); }
tg_status tg_model_grad_sqnorm(tg_model *m, size_t lo, size_t hi, double *out, tg_error *e) {
    if (lo > hi || hi > m->n_padded) return tg_error_set(e, TG_ERR_ARG, "model: bad range [%zu, %zu)", lo, hi);
    return m->ops->grad_sqnorm(m, lo, hi, out, e);
}
tg_status tg_model_opt_init(tg_model *m, size_t lo, size_t hi, tg_error *e) {
    if (lo > hi || hi > m->n_padded) return tg_error_set(e, TG_ERR_ARG, "model: bad shard [%zu, %zu)", lo, hi);
    return m->ops->opt_init(m, lo, hi, e);
}
size_t tg_model_opt_bytes(const tg_model *m) { return m->ops->opt_bytes(m); }
tg_status tg_model_opt_get(tg_model *m, float *mo, float *v, tg_error *e) { return m->ops->opt_get(m, mo, v, e); }
tg_status tg_model_opt_set(tg_model *m, const float *mo, const float *v, tg_error *e) { return m->ops->opt_set(m, mo, v, e); }
static tg_status no_muon(const tg_model *m, tg_error *e);
tg_status tg_model_adamw(tg_model *m, const tg_adamw_args *a, tg_error *e) {
    if (a->muon && !tg_model_has_muon(m)) return no_muon(m, e);
    return m->ops->adamw(m, a, e);
}
int tg_model_muon_tensor(const tg_tensor_info *t) { return t->ndim == 2 && t->layer >= 0; }
int tg_model_has_muon(const tg_model *m) { return m->ops->muon_orth && m->ops->muon_apply; }
static tg_status no_muon(const tg_model *m, tg_error *e) {
    return tg_error_set(e, TG_ERR_CONFIG, "train.optimizer=muon: the %s backend has no Muon yet (use the CPU "
                        "backend, train.device=cpu, or train.optimizer=adamw)", m->ops->name);
}
tg_status tg_model_muon_orth(tg_model *m, size_t lo, size_t hi, int ns_steps, tg_error *e) {
    if (!tg_model_has_muon(m)) return no_muon(m, e);
    if (lo > hi || hi > m->n_padded) return tg_error_set(e, TG_ERR_ARG, "model: bad range [%zu, %zu)", lo, hi);
    if (ns_steps < 1) return tg_error_set(e, TG_ERR_ARG, "model: muon ns_steps=%d must be >= 1", ns_steps);
    return m->ops->muon_orth(m, lo, hi, ns_steps, e);
}
tg_status tg_model_muon_apply(tg_model *m, const tg_adamw_args *a, tg_error *e) {
    if (!tg_model_has_muon(m) || !a->muon) return no_muon(m, e);
    return m->ops->muon_apply(m, a, e);
}
size_t tg_model_device_bytes(const tg_model *m) { return m->ops->device_bytes(m); }
const char *tg_model_describe(const tg_model *m) { return m->ops->describe(m); }
tg_status tg_model_tuning_get(tg_model *m, void **blob, size_t *len, tg_error *e) {
    *blob = NULL;
    *len = 0;
    return m->ops->tuning_get ? m->ops->tuning_get(m, blob, len, e) : TG_OK;
}
tg_status tg_model_tuning_set(tg_model *m, const void *blob, size_t len, tg_error *e) {
    if (m->ops->tuning_set) return m->ops->tuning_set(m, blob, len, e);
    return tg_error_set(e, TG_ERR_FORMAT, "the %s backend makes no choices by timing; a tuning blob is for the "
                        "CUDA backend", m->ops->name);
}

int tg_model_n_segments(const tg_model *m) { return m->lay.cfg.n_layer + 2; }

void tg_model_segment(const tg_model *m, int seg, size_t *lo, size_t *hi) {
    const int L = m->lay.cfg.n_layer;
    *lo = seg <= 0 ? 0 : m->lay.layer_begin[seg - 1];
    *hi = seg > L ? m->n_padded : m->lay.layer_begin[seg];
}

tg_status tg_model_shard_storage(tg_model *m, int level, size_t lo, size_t hi, const tg_shard_io *io,
                                 tg_error *err) {
    if (!m->ops->shard_storage)
        return tg_error_set(err, TG_ERR_CONFIG, "the %s backend keeps all gradients and parameters on every rank: "
                            "train.zero_stage 2 and 3 (sharded storage) need the CPU backend (train.device=cpu)",
                            m->ops->name);
    if (level != 2 && level != 3)
        return tg_error_set(err, TG_ERR_ARG, "model: sharded storage level %d (2 or 3)", level);
    if (lo >= hi || hi > m->n_padded || !io || !io->grads_flush || (level == 3 && !io->params_fill))
        return tg_error_set(err, TG_ERR_ARG, "model: bad shard [%zu, %zu) or io for sharded storage", lo, hi);
    m->shard_io = *io;
    return m->ops->shard_storage(m, level, lo, hi, err);
}

float *tg_model_shard_params(tg_model *m) { return m->ops->shard_params ? m->ops->shard_params(m) : NULL; }
float *tg_model_shard_grads(tg_model *m) { return m->ops->shard_grads ? m->ops->shard_grads(m) : NULL; }

void tg_model_memory_get(const tg_model *m, tg_model_memory *out) {
    memset(out, 0, sizeof *out);
    if (m->ops->memory) {
        m->ops->memory(m, out);
        return;
    }
    tg_dtype pd = TG_DTYPE_F32, gd = TG_DTYPE_F32;
    tg_model *mm = (tg_model *)m; /* the pointer getters only read */
    (void)mm->ops->params(mm, &pd);
    (void)mm->ops->grads(mm, &gd);
    out->params = m->n_padded * (pd == TG_DTYPE_BF16 ? 2 : 4);
    out->grads = m->n_padded * (gd == TG_DTYPE_BF16 ? 2 : 4);
    out->optimizer = m->ops->opt_bytes(m);
    size_t total = m->ops->device_bytes(m), known = out->params + out->grads + out->optimizer;
    out->activations = total > known ? total - known : 0;
}

/* Dense bf16 tensor-core peaks (no sparsity), TFLOP/s, from the vendor datasheets. */
static double peak_for(const char *name) {
    if (strstr(name, "H200") || strstr(name, "H100 SXM") || strstr(name, "H100 80GB HBM3")) return 989.4;
    if (strstr(name, "H100")) return 756.0; /* PCIe */
    if (strstr(name, "A100")) return 312.0;
    if (strstr(name, "L40S")) return 362.0;
    return 0.0;
}

tg_status tg_model_device_info(const tg_model *m, tg_device_info *info, tg_error *err) {
    memset(info, 0, sizeof *info);
    if (m->opt.device == TG_DEVICE_CPU) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        snprintf(info->name, sizeof info->name, "cpu");
        info->used_bytes = (size_t)ru.ru_maxrss * 1024;
        return TG_OK;
    }
#ifdef TG_HAVE_CUDA
    struct cudaDeviceProp prop;
    size_t free_b = 0, total_b = 0;
    cudaError_t e = cudaGetDeviceProperties(&prop, m->opt.cuda_device);
    if (e == cudaSuccess) e = cudaMemGetInfo(&free_b, &total_b);
    if (e != cudaSuccess)
        return tg_error_set_at(err, TG_ERR_CUDA, __FILE__, __LINE__, "device info: %s", cudaGetErrorString(e));
    snprintf(info->name, sizeof info->name, "%.127s", prop.name);
    info->peak_bf16_tflops = peak_for(prop.name);
    info->used_bytes = total_b - free_b;
    info->total_bytes = total_b;
    return TG_OK;
#else
    (void)peak_for;
    return tg_error_set(err, TG_ERR_UNSUPPORTED, "built without CUDA");
#endif
}
