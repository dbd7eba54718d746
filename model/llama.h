/* model/llama.h — the Llama architecture (pre-RMSNorm blocks, RoPE, grouped-query attention,
 * SwiGLU MLP, no biases): shapes and the table of named parameter tensors.
 *
 * The configuration is tg_gpt2_config with arch = TG_MODEL_ARCH_LLAMA (its Llama fields set);
 * the table is a tg_gpt2_layout, so everything that walks tensors by name (checkpoints, AdamW's
 * decay flags, data-parallel layer ranges) works for both architectures unchanged.
 *
 * Names and layouts are Hugging Face LlamaForCausalLM's (nn.Linear weights are (out, in):
 * y = x @ W^T), with C = n_embd, hs = C / n_head, KV = n_kv_head * hs, F = ffn_dim:
 *   model.embed_tokens.weight                         (Vp, C)  rows >= vocab_size stay zero
 *   per layer l, prefix model.layers.<l>.:
 *     input_layernorm.weight                          (C)
 *     self_attn.q_proj.weight                         (C, C)
 *     self_attn.k_proj.weight                         (KV, C)
 *     self_attn.v_proj.weight                         (KV, C)
 *     self_attn.o_proj.weight                         (C, C)
 *     post_attention_layernorm.weight                 (C)
 *     mlp.gate_proj.weight                            (F, C)
 *     mlp.up_proj.weight                              (F, C)
 *     mlp.down_proj.weight                            (C, F)
 *   model.norm.weight                                 (C)
 *   lm_head.weight                                    (Vp, C)  only when tie_embeddings = 0
 * Stored in this order; each layer contiguous (layer_begin[L] is where model.norm starts).
 * RoPE uses HF's rotate-half convention: within a head, dimension i < hs/2 pairs with i + hs/2,
 * angle t * theta^(-2i/hs). */
#ifndef TG_LLAMA_H
#define TG_LLAMA_H

#include "model/gpt2.h"

enum { TG_LLAMA_EMBED = 0, TG_LLAMA_FIRST_BLOCK = 1 };
typedef enum {
    TG_LLAMA_IN_NORM,   /* input_layernorm.weight */
    TG_LLAMA_Q,         /* self_attn.q_proj.weight */
    TG_LLAMA_K,         /* self_attn.k_proj.weight */
    TG_LLAMA_V,         /* self_attn.v_proj.weight */
    TG_LLAMA_O,         /* self_attn.o_proj.weight */
    TG_LLAMA_POST_NORM, /* post_attention_layernorm.weight */
    TG_LLAMA_GATE,      /* mlp.gate_proj.weight */
    TG_LLAMA_UP,        /* mlp.up_proj.weight */
    TG_LLAMA_DOWN,      /* mlp.down_proj.weight */
    TG_LLAMA_BLOCK_TENSORS
} tg_llama_block_tensor;

static inline int tg_llama_block_index(int layer, tg_llama_block_tensor k) {
    return TG_LLAMA_FIRST_BLOCK + TG_LLAMA_BLOCK_TENSORS * layer + (int)k;
}
/* model.norm.weight */
static inline int tg_llama_norm_index(int n_layer) {
    return TG_LLAMA_FIRST_BLOCK + TG_LLAMA_BLOCK_TENSORS * n_layer;
}
/* The tensor the LM head reads: lm_head.weight, or model.embed_tokens.weight when tied. */
static inline int tg_llama_head_index(const tg_gpt2_config *c) {
    return c->tie_embeddings ? TG_LLAMA_EMBED : tg_llama_norm_index(c->n_layer) + 1;
}

/* Fills the defaults (n_kv_head 0 -> n_head, rope_theta 0 -> 10000, norm_eps 0 -> 1e-5) and
 * checks the Llama keys: n_head a multiple of n_kv_head, an even head size (RoPE rotates pairs),
 * ffn_dim > 0, rope_theta > 1, 0 < norm_eps < 1, tie_embeddings 0|1; with rope_factor set, Llama
 * 3's scaling: rope_factor >= 1, 0 < rope_low_freq_factor < rope_high_freq_factor,
 * rope_original_max_pos > 0 (all zero without it). */
tg_status tg_llama_config_check(tg_gpt2_config *cfg, tg_error *err);

/* RoPE's inverse frequencies, hs/2 of them (hs = n_embd / n_head), in fp32 as HF computes them:
 * inv[i] = theta^(-2i/hs); with rope_factor (HF's rope_type "llama3", Llama 3.1+), each
 * wavelength w = 2 pi / inv[i] longer than original_max_pos / low_freq_factor is divided by
 * rope_factor, one shorter than original_max_pos / high_freq_factor is kept, and those between
 * are interpolated: s = (original_max_pos / w - low) / (high - low),
 * inv = (1 - s) * inv / factor + s * inv (_compute_llama3_parameters, operation for operation). */
void tg_llama_rope_inv_freq(const tg_gpt2_config *cfg, float *inv);

/* cos/sin tables (T, half): angle t * inv_freq[i] in fp32 as HF computes it, its cosine and sine
 * in double rounded to fp32 (every backend reads these tables, so RoPE's angles agree bitwise). */
void tg_llama_rope_tables(float *cos_t, float *sin_t, int T, int half, const float *inv_freq);

/* The table above (cfg finalized). Called by tg_gpt2_layout_init for arch = llama. */
tg_status tg_llama_layout_init(tg_gpt2_layout *lay, const tg_gpt2_config *cfg, tg_error *err);

/* Initialisation as LlamaForCausalLM's (initializer_range 0.02) with GPT-2's scaled residual
 * projections: N(0, 0.02) weights, o_proj and down_proj N(0, 0.02/sqrt(2L)), RMSNorm weights 1,
 * padded vocab rows 0. One RNG stream per tensor (deterministic, thread-independent). */
void tg_llama_params_init(const tg_gpt2_layout *lay, float *params, uint64_t seed);

/* Training FLOPs per token: 6N + 6*L*C*T (the causal attention scores and values, forward
 * and backward, counted as the PaLM convention does). */
double tg_llama_flops_per_token(const tg_gpt2_layout *lay, int T);

#endif
