/* model/decode.h — incremental decoding with a KV cache: the prompt is processed in one forward
 * that fills every layer's keys and values, then each new token costs one row through the network
 * plus attention over the cached positions.
 *
 * Backends (model/decode_backend.h):
 *   CPU, fp32, GPT-2 and Llama (whose cache holds its n_kv_head heads; model/cpu/cpu_decode.h):
 *     each logit is computed with the same kernels and the same per-element arithmetic as
 *     tg_model_forward, so greedy decoding picks the same tokens as recomputing the whole window.
 *   CUDA, GPT-2 and Llama, the model's dtype (fp32 or bf16; model/cuda/cuda_decode.cu): the
 *     forward's norm, matmul, RoPE and SwiGLU launchers at M = the rows appended, and its own
 *     attention of the new rows over the cache (n_kv_head heads for Llama, as on the CPU).
 *     Matmuls of another shape may sum in another order and attention does, so logits equal the
 *     full forward's to rounding, not bitwise.
 *
 * Positions are absolute: at most the model's T (tg_model_opts(m)->T) tokens in all. The decoder
 * reads the model's parameters when it is made (tg_decoder_init): make a new one after they change.
 * On CUDA it uses the model's stream and cuBLASLt state: do not run the model's own forward or
 * backward between two appends of a decoder you still mean to use. */
#ifndef TG_MODEL_DECODE_H
#define TG_MODEL_DECODE_H

#include <stdint.h>

#include "core/status.h"
#include "model/model.h"

typedef struct tg_decoder tg_decoder;

/* m: a CPU model in fp32 (TG_ERR_ARG for bf16 emulation) or a CUDA model (GPT-2 or Llama);
 * TG_ERR_ARG or TG_ERR_UNSUPPORTED, saying why, for the others. */
tg_status tg_decoder_init(tg_decoder **out, tg_model *m, tg_error *err);
void tg_decoder_free(tg_decoder *d);

/* Tokens in the cache so far. */
int tg_decoder_len(const tg_decoder *d);

/* Appends n >= 1 tokens (ids in [0, vocab_size)) in one forward and writes the logits of the last
 * one to logits (padded_vocab_size floats; columns >= vocab_size are meaningless). TG_ERR_ARG if the
 * cache would exceed T tokens, TG_ERR_DATA for an id out of range; nothing changes then. After
 * any other error (CUDA) the cache length is unchanged too, but free the decoder. */
tg_status tg_decoder_append(tg_decoder *d, const int32_t *ids, int n, float *logits, tg_error *err);

#endif
