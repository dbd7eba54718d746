/* model/cpu/cpu_decode.h — internal: the architecture-independent half of the KV-cache decoder
 * (model/decode.h; tg_cpu_decoder_init in model/decode_backend.h) on the CPU: the cache of every
 * layer's keys and values, the work buffers, and attention of new rows over the cache. Each
 * architecture adds its step (gpt2_cpu_decode.c, llama_cpu_decode.c): the rows of one append through the network, with the
 * full forward's kernels so that every logit has the full forward's bits.
 *
 * The cache holds n_kv_head heads per position (grouped-query attention keeps its small cache;
 * GPT-2 has n_kv_head = n_head): keys as attention reads them (Llama: after RoPE) and values. */
#ifndef TG_CPU_DECODE_H
#define TG_CPU_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "model/decode_backend.h"
#include "model/gpt2.h"

#define TG_CPU_DEC_MAX_BUFS 12

typedef struct tg_cpu_decoder tg_cpu_decoder;

struct tg_cpu_decoder {
    const float *params;
    const tg_gpt2_layout *lay;
    int T, L, C, NH, NKV, hs, V, Vp;
    size_t kvd;                /* NKV * hs: one position's keys (or values) in one layer */
    int len;                   /* positions cached */
    float *k, *v;              /* (L, T, kvd) */
    float *att;                /* (cap, NH, T): softmax weights of the rows being appended */
    /* work buffers of the step, each per_row[i] floats per appended row, cap rows */
    int nbufs;
    size_t per_row[TG_CPU_DEC_MAX_BUFS];
    float *buf[TG_CPU_DEC_MAX_BUFS];
    int cap;
    float *table[2];           /* the architecture's fixed tables (Llama: RoPE cos, sin) */
    /* rows ids[0, n) at positions [len, len + n): fill the cache rows, write the last row's logits */
    void (*step)(tg_cpu_decoder *d, const int32_t *ids, int n, float *logits);
};

/* 64-byte aligned, zeroed, n floats (NULL when out of memory). */
float *tg_cpu_dec_alloc(size_t n);
/* Tensor idx of the layout in the decoder's parameters. */
static inline const float *tg_cpu_dec_tensor(const tg_cpu_decoder *d, int idx) {
    return d->params + d->lay->tensors[idx].offset;
}
/* Layer l's cache rows from position t on. */
static inline float *tg_cpu_dec_k(const tg_cpu_decoder *d, int l, int t) {
    return d->k + ((size_t)l * d->T + (size_t)t) * d->kvd;
}
static inline float *tg_cpu_dec_v(const tg_cpu_decoder *d, int l, int t) {
    return d->v + ((size_t)l * d->T + (size_t)t) * d->kvd;
}

/* Rows [t0, t0 + n) attend causally over layer l's cache [0, t] (rows up to t0 + n - 1 filled):
 * out (n, NH * hs) row by row; q: head h of row r at q + r * ldq + h * hs. Query head h reads KV
 * head h / (NH / NKV). The loop of the training forward's attention (tg_cpu_attention_row_kv). */
void tg_cpu_dec_attention(tg_cpu_decoder *d, int l, float *out, const float *q, size_t ldq, int t0, int n);

/* The architectures: set nbufs, per_row, step and the tables (allocated with tg_cpu_dec_alloc,
 * freed by tg_decoder_free). */
tg_status tg_cpu_dec_gpt2_setup(tg_cpu_decoder *d, tg_error *err);
tg_status tg_cpu_dec_llama_setup(tg_cpu_decoder *d, tg_error *err);

#endif
