/* interop/hf.h — model weights to and from a Hugging Face model directory: GPT2LMHeadModel for
 * arch gpt2, LlamaForCausalLM for arch llama.
 *
 * GPT-2: truthgpt's parameter table (model/gpt2.h) already uses HF's names and HF's Conv1D layouts
 * ([in, out], y = x @ W + b), so the mapping is one to one, except that:
 *   - truthgpt pads wte to a multiple of 128 rows: export writes the vocab_size real rows,
 *     import zero-fills the padding;
 *   - the LM head is tied to wte: export writes no lm_head.weight; import accepts one only if it
 *     equals wte;
 *   - import also accepts names without the "transformer." prefix (GPT2Model files) and ignores
 *     the attn.bias / attn.masked_bias buffers of older files.
 *
 * Llama: the table (model/llama.h) uses LlamaForCausalLM's names and nn.Linear layouts, one to
 * one; embed_tokens and an untied lm_head are cut to / padded from vocab_size rows as wte is.
 * config.json carries num_key_value_heads, intermediate_size, rope_theta, rms_norm_eps and
 * tie_word_embeddings (absent keys take LlamaConfig's defaults: n_head KV heads, theta 10000, eps
 * 1e-6, untied). hidden_act other than silu, attention/mlp biases, a head_dim other than
 * hidden_size / num_attention_heads and any rope_scaling but "default" are refused by key. A tied
 * file may carry lm_head.weight only if it equals embed_tokens; rotary_emb.inv_freq buffers are
 * ignored. */
#ifndef TG_INTEROP_HF_H
#define TG_INTEROP_HF_H

#include "core/status.h"
#include "interop/safetensors.h"
#include "model/gpt2.h"

/* Writes DIR/config.json, DIR/generation_config.json and DIR/model.safetensors (dtype F32 or
 * BF16) for the model lay/params (its arch decides the format). eos_id (bos too) is the tokenizer's end-of-text id. DIR is
 * created if missing. */
tg_status tg_hf_export(const char *dir, const tg_gpt2_layout *lay, const float *params, tg_st_dtype dtype,
                       int eos_id, tg_error *err);

/* Reads DIR/config.json (model_type gpt2 with GPT-2's fixed choices: gelu_new, eps 1e-5, tied
 * head; or model_type llama, above) and its weights (model.safetensors, or the shards listed in model.safetensors.index.json;
 * F32/BF16/F16) into *cfg (finalized) and *params (malloc'ed, n_params of cfg's layout, padded
 * rows zero). Unsupported architectures, missing or unknown tensors and shape mismatches are
 * TG_ERR_FORMAT naming the file and the tensor. */
tg_status tg_hf_import(const char *dir, tg_gpt2_config *cfg, float **params, tg_error *err);

#endif
