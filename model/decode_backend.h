/* model/decode_backend.h — internal: what a KV-cache decoder implements behind model/decode.h.
 * model/decode.c owns the cache length and the checks every append needs (row count, room left
 * up to T, token range) and forwards each call to the decoder made for the model's backend:
 * cpu/cpu_decode.c (GPT-2 and Llama, fp32) or cuda/cuda_decode.cu (GPT-2 and Llama, fp32 or bf16). */
#ifndef TG_MODEL_DECODE_BACKEND_H
#define TG_MODEL_DECODE_BACKEND_H

#include <stdint.h>

#include "core/status.h"
#include "model/model.h"

typedef struct {
    const char *name;
    void (*free)(void *impl);
    /* Rows ids[0, n) at the positions after the ones cached so far; n >= 1, the cache has room
     * and every id is in [0, vocab_size) (decode.c checked). Writes the last row's logits
     * (padded_vocab_size floats). */
    tg_status (*append)(void *impl, const int32_t *ids, int n, float *logits, tg_error *err);
} tg_decoder_ops;

/* Each makes its decoder for m or says why not (TG_ERR_ARG / TG_ERR_UNSUPPORTED). */
tg_status tg_cpu_decoder_init(void **impl, const tg_decoder_ops **ops, tg_model *m, tg_error *err);
#ifdef TG_HAVE_CUDA
tg_status tg_cuda_decoder_init(void **impl, const tg_decoder_ops **ops, tg_model *m, tg_error *err);
#endif

#endif
