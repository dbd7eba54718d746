/* model/cpu/cpu_decode.c — the KV-cache decoder of model/decode.h: cache, buffers, checks and
 * attention over the cache shared by the architectures (cpu_decode.h). */
#include "model/cpu/cpu_decode.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/cpu/cpu_kernels.h"

float *tg_cpu_dec_alloc(size_t n) {
    size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    float *p = aligned_alloc(64, bytes ? bytes : 64);
    if (p) memset(p, 0, bytes ? bytes : 64);
    return p;
}

static void free_work(tg_cpu_decoder *d) {
    for (int i = 0; i < d->nbufs; i++) {
        free(d->buf[i]);
        d->buf[i] = NULL;
    }
    free(d->att);
    d->att = NULL;
    d->cap = 0;
}

static tg_status reserve(tg_cpu_decoder *d, int n, tg_error *err) {
    if (n <= d->cap) return TG_OK;
    free_work(d);
    int ok = (d->att = tg_cpu_dec_alloc((size_t)n * d->NH * d->T)) != NULL;
    for (int i = 0; i < d->nbufs; i++) ok &= (d->buf[i] = tg_cpu_dec_alloc((size_t)n * d->per_row[i])) != NULL;
    if (!ok) {
        free_work(d);
        return tg_error_set(err, TG_ERR_NOMEM, "decoder: out of memory for %d rows", n);
    }
    d->cap = n;
    return TG_OK;
}

static void cpu_decoder_free(void *impl);
static tg_status cpu_decoder_append(void *impl, const int32_t *ids, int n, float *logits, tg_error *err);
static const tg_decoder_ops cpu_decoder_ops = {"cpu", cpu_decoder_free, cpu_decoder_append};

tg_status tg_cpu_decoder_init(void **out, const tg_decoder_ops **ops, tg_model *m, tg_error *err) {
    tg_status st = TG_OK;
    *out = NULL;
    const tg_model_options *o = tg_model_opts(m);
    if (o->device != TG_DEVICE_CPU || o->bf16)
        return tg_error_set(err, TG_ERR_ARG, "decoder: the KV cache needs the CPU backend in fp32");
    tg_dtype dt;
    const float *params = tg_model_params(m, &dt);
    if (!params) return tg_error_set(err, TG_ERR_ARG, "decoder: the parameters are sharded (ZeRO-3), not all here");
    if (dt != TG_DTYPE_F32) return tg_error_set(err, TG_ERR_ARG, "decoder: parameters must be fp32");
    tg_cpu_decoder *d = calloc(1, sizeof *d);
    if (!d) return tg_error_set(err, TG_ERR_NOMEM, "decoder: out of memory");
    const tg_gpt2_config *c = &tg_model_layout(m)->cfg;
    d->params = params;
    d->lay = tg_model_layout(m);
    d->T = o->T, d->L = c->n_layer, d->C = c->n_embd, d->NH = c->n_head, d->hs = c->n_embd / c->n_head;
    d->NKV = c->arch == TG_MODEL_ARCH_LLAMA ? c->n_kv_head : c->n_head;
    d->V = c->vocab_size, d->Vp = c->padded_vocab_size;
    d->kvd = (size_t)d->NKV * d->hs;
    if (c->arch == TG_MODEL_ARCH_LLAMA) TG_TRY(tg_cpu_dec_llama_setup(d, err));
    else TG_TRY(tg_cpu_dec_gpt2_setup(d, err));
    d->k = tg_cpu_dec_alloc((size_t)d->L * d->T * d->kvd);
    d->v = tg_cpu_dec_alloc((size_t)d->L * d->T * d->kvd);
    if (!d->k || !d->v) TG_FAIL(err, TG_ERR_NOMEM, "decoder: out of memory for the KV cache");
    *out = d;
    *ops = &cpu_decoder_ops;
    d = NULL;
cleanup:
    cpu_decoder_free(d);
    return st;
}

static void cpu_decoder_free(void *impl) {
    tg_cpu_decoder *d = impl;
    if (!d) return;
    free_work(d);
    free(d->k);
    free(d->v);
    free(d->table[0]);
    free(d->table[1]);
    free(d);
}

void tg_cpu_dec_attention(tg_cpu_decoder *d, int l, float *out, const float *q, size_t ldq, int t0, int n) {
    const int NH = d->NH, hs = d->hs, T = d->T, group = d->NH / d->NKV;
    const float scale = 1.0f / sqrtf((float)hs);
    const float *k = tg_cpu_dec_k(d, l, 0), *v = tg_cpu_dec_v(d, l, 0);
    if ((long)n * NH * (t0 + n) * hs < (1L << 15)) { /* a short cache: cheaper than an OpenMP fork and join */
        for (int r = 0; r < n; r++)
            for (int h = 0; h < NH; h++) {
                const size_t kh = (size_t)(h / group) * hs;
                tg_cpu_attention_row_kv(out + (size_t)r * NH * hs + (size_t)h * hs,
                                        d->att + ((size_t)r * NH + h) * T, q + (size_t)r * ldq + (size_t)h * hs,
                                        k + kh, v + kh, d->kvd, hs, t0 + r, scale);
            }
        return;
    }
#pragma omp parallel for collapse(2) schedule(static)
    for (int r = 0; r < n; r++)
        for (int h = 0; h < NH; h++) {
            const size_t kh = (size_t)(h / group) * hs;
            tg_cpu_attention_row_kv(out + (size_t)r * NH * hs + (size_t)h * hs, d->att + ((size_t)r * NH + h) * T,
                                    q + (size_t)r * ldq + (size_t)h * hs, k + kh, v + kh, d->kvd, hs, t0 + r, scale);
        }
}

/* decode.c checked n, the room left and the ids. */
static tg_status cpu_decoder_append(void *impl, const int32_t *ids, int n, float *logits, tg_error *err) {
    tg_cpu_decoder *d = impl;
    tg_status st = reserve(d, n, err);
    if (st != TG_OK) return st;
    d->step(d, ids, n, logits);
    d->len += n;
    return TG_OK;
}
