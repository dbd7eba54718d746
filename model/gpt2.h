/* model/gpt2.h — GPT-2 shapes and the table of named parameter tensors.
 *
 * All parameters live in one contiguous fp32 buffer. The table below names each tensor with
 * its Hugging Face GPT-2 name and gives its offset, so checkpoints/exports map 1:1.
 *
 * Layouts (row-major), with C = n_embd, Vp = padded vocab, T = max_seq_len, L = n_layer:
 *   transformer.wte.weight              (Vp, C)   rows >= vocab_size are padding (kept zero)
 *   transformer.wpe.weight              (T, C)
 *   per layer l, prefix transformer.h.<l>.:
 *     ln_1.weight, ln_1.bias            (C)
 *     attn.c_attn.weight                (C, 3C)   HF Conv1D layout: y = x @ W + b; columns q|k|v
 *     attn.c_attn.bias                  (3C)
 *     attn.c_proj.weight                (C, C)
 *     attn.c_proj.bias                  (C)
 *     ln_2.weight, ln_2.bias            (C)
 *     mlp.c_fc.weight                   (C, 4C)
 *     mlp.c_fc.bias                     (4C)
 *     mlp.c_proj.weight                 (4C, C)
 *     mlp.c_proj.bias                   (C)
 *   transformer.ln_f.weight, ln_f.bias  (C)
 * The LM head is tied to wte (HF's lm_head.weight is the same tensor; it is not stored twice).
 *
 * Tensors are stored in exactly this order: wte, wpe, layer 0 ... layer L-1, ln_f. Keeping each
 * layer contiguous lets data parallelism reduce gradients layer by layer as backward makes them. */
#ifndef TG_GPT2_H
#define TG_GPT2_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* The architecture a config describes. GPT-2 is zero, so a zero-initialised config is GPT-2. */
typedef enum { TG_MODEL_ARCH_GPT2 = 0, TG_MODEL_ARCH_LLAMA = 1 } tg_model_arch;

typedef struct {
    int max_seq_len;       /* T: positions in wpe (Llama: the longest sequence) */
    int vocab_size;        /* V: real tokens */
    int padded_vocab_size; /* Vp: V rounded up to a multiple of 128 */
    int n_layer;           /* L */
    int n_head;            /* NH */
    int n_embd;            /* C */
    /* Llama only (model/llama.h); GPT-2 requires them zero. */
    tg_model_arch arch;
    int n_kv_head;         /* KV heads (GQA); 0 = n_head. n_head must be a multiple */
    int ffn_dim;           /* SwiGLU hidden width (F) */
    double rope_theta;     /* RoPE base; 0 = 10000 */
    double norm_eps;       /* RMSNorm epsilon; 0 = 1e-5 */
    int tie_embeddings;    /* 1: lm_head is model.embed_tokens (not stored twice) */
    /* Llama 3's RoPE frequency scaling (HF rope_type "llama3"); rope_factor 0: plain RoPE, and
     * the other three 0 too. model/llama.h: tg_llama_rope_inv_freq. */
    double rope_factor;
    double rope_low_freq_factor, rope_high_freq_factor;
    int rope_original_max_pos;
} tg_gpt2_config;

#define TG_GPT2_MAX_NAME 64

/* Indices into tg_gpt2_layout.tensors. The table holds wte, wpe, then TG_GPT2_BLOCK_TENSORS
 * tensors per block in the order of tg_gpt2_block_tensor, then ln_f's two: backends and tests
 * name a tensor through these rather than by arithmetic of their own. */
enum { TG_GPT2_WTE = 0, TG_GPT2_WPE = 1, TG_GPT2_FIRST_BLOCK = 2 };
typedef enum {
    TG_GPT2_LN1_W,    /* ln_1.weight */
    TG_GPT2_LN1_B,    /* ln_1.bias */
    TG_GPT2_QKV_W,    /* attn.c_attn.weight */
    TG_GPT2_QKV_B,    /* attn.c_attn.bias */
    TG_GPT2_ATTPROJ_W,/* attn.c_proj.weight */
    TG_GPT2_ATTPROJ_B,/* attn.c_proj.bias */
    TG_GPT2_LN2_W,    /* ln_2.weight */
    TG_GPT2_LN2_B,    /* ln_2.bias */
    TG_GPT2_FC_W,     /* mlp.c_fc.weight */
    TG_GPT2_FC_B,     /* mlp.c_fc.bias */
    TG_GPT2_FCPROJ_W, /* mlp.c_proj.weight */
    TG_GPT2_FCPROJ_B, /* mlp.c_proj.bias */
    TG_GPT2_BLOCK_TENSORS
} tg_gpt2_block_tensor;
typedef enum { TG_GPT2_LNF_W, TG_GPT2_LNF_B } tg_gpt2_final_tensor;

/* Index of tensor k of block `layer` (0 <= layer < n_layer). */
static inline int tg_gpt2_block_index(int layer, tg_gpt2_block_tensor k) {
    return TG_GPT2_FIRST_BLOCK + TG_GPT2_BLOCK_TENSORS * layer + (int)k;
}
/* Index of ln_f's weight or bias in a model of n_layer blocks. */
static inline int tg_gpt2_final_index(int n_layer, tg_gpt2_final_tensor k) {
    return TG_GPT2_FIRST_BLOCK + TG_GPT2_BLOCK_TENSORS * n_layer + (int)k;
}

typedef struct {
    char name[TG_GPT2_MAX_NAME]; /* Hugging Face name */
    size_t offset;               /* in elements, into the flat buffer */
    size_t numel;
    int ndim;                    /* 1 or 2 */
    int shape[2];
    int layer;                   /* 0..L-1, or -1 for wte/wpe/ln_f */
    int decay;                   /* 1: AdamW weight decay applies (2-D weights only) */
} tg_tensor_info;

typedef struct {
    tg_gpt2_config cfg;
    int n_tensors;
    tg_tensor_info *tensors;
    size_t n_params;    /* sum of numel */
    size_t *layer_begin; /* L+1 entries: element offset where layer l starts; [L] = start of ln_f */
} tg_gpt2_layout;

/* Rounds V up to a multiple of 128 into cfg->padded_vocab_size and checks the shapes
 * (n_embd % n_head == 0, all positive); for Llama also fills the zero defaults and checks its
 * keys (tg_llama_config_check). */
tg_status tg_gpt2_config_finalize(tg_gpt2_config *cfg, tg_error *err);

/* 1 when a and b describe the same model (every field; padding bytes ignored). */
int tg_gpt2_config_equal(const tg_gpt2_config *a, const tg_gpt2_config *b);

/* Builds the tensor table for cfg (cfg must be finalized; Llama: model/llama.h's table). Free with tg_gpt2_layout_free. */
tg_status tg_gpt2_layout_init(tg_gpt2_layout *lay, const tg_gpt2_config *cfg, tg_error *err);
void tg_gpt2_layout_free(tg_gpt2_layout *lay);

/* Index of the tensor named `name`, or -1. */
int tg_gpt2_layout_find(const tg_gpt2_layout *lay, const char *name);

/* GPT-2 initialisation into params[0..n_params): N(0, 0.02) weights, residual output
 * projections (attn.c_proj.weight, mlp.c_proj.weight) N(0, 0.02/sqrt(2L)), biases 0,
 * LayerNorm weights 1, padded wte rows 0. Deterministic for a seed, independent of threads. */
void tg_gpt2_params_init(const tg_gpt2_layout *lay, float *params, uint64_t seed);

/* Training FLOPs per token for sequence length T: 6N + 12*L*C*T, N = all parameters
 * (the PaLM / llm.c convention; the padded vocab rows count). */
double tg_gpt2_flops_per_token(const tg_gpt2_layout *lay, int T);

#endif
