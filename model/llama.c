#include "model/llama.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"

tg_status tg_llama_config_check(tg_gpt2_config *c, tg_error *err) {
    if (c->n_kv_head == 0) c->n_kv_head = c->n_head;
    if (c->rope_theta == 0) c->rope_theta = 10000.0;
    if (c->norm_eps == 0) c->norm_eps = 1e-5;
    if (c->n_kv_head < 0 || c->n_head % c->n_kv_head != 0)
        return tg_error_set(err, TG_ERR_ARG, "llama: n_head (%d) must be a positive multiple of n_kv_head (%d)",
                            c->n_head, c->n_kv_head);
    if ((c->n_embd / c->n_head) % 2 != 0)
        return tg_error_set(err, TG_ERR_ARG,
                            "llama: the head size n_embd/n_head (%d/%d = %d) must be even (RoPE rotates pairs)",
                            c->n_embd, c->n_head, c->n_embd / c->n_head);
    if (c->ffn_dim <= 0)
        return tg_error_set(err, TG_ERR_ARG, "llama: ffn_dim must be positive (got %d)", c->ffn_dim);
    if (!(c->rope_theta > 1.0) || !isfinite(c->rope_theta))
        return tg_error_set(err, TG_ERR_ARG, "llama: rope_theta must be a finite number > 1 (got %g)", c->rope_theta);
    if (!(c->norm_eps > 0.0 && c->norm_eps < 1.0))
        return tg_error_set(err, TG_ERR_ARG, "llama: norm_eps must lie in (0, 1) (got %g)", c->norm_eps);
    if (c->tie_embeddings != 0 && c->tie_embeddings != 1)
        return tg_error_set(err, TG_ERR_ARG, "llama: tie_embeddings must be 0 or 1 (got %d)", c->tie_embeddings);
    if (c->rope_factor == 0) {
        if (c->rope_low_freq_factor != 0 || c->rope_high_freq_factor != 0 || c->rope_original_max_pos != 0)
            return tg_error_set(err, TG_ERR_ARG, "llama: the llama3 RoPE scaling keys need rope_factor");
        return TG_OK;
    }
    if (!(c->rope_factor >= 1.0) || !isfinite(c->rope_factor))
        return tg_error_set(err, TG_ERR_ARG, "llama: rope_factor must be a finite number >= 1 (got %g)", c->rope_factor);
    if (!(c->rope_low_freq_factor > 0.0 && c->rope_low_freq_factor < c->rope_high_freq_factor) ||
        !isfinite(c->rope_high_freq_factor))
        return tg_error_set(err, TG_ERR_ARG,
                            "llama: rope_low_freq_factor (%g) and rope_high_freq_factor (%g) must satisfy 0 < low < high",
                            c->rope_low_freq_factor, c->rope_high_freq_factor);
    if (c->rope_original_max_pos <= 0)
        return tg_error_set(err, TG_ERR_ARG, "llama: rope_original_max_pos must be positive (got %d)",
                            c->rope_original_max_pos);
    return TG_OK;
}

void tg_llama_rope_inv_freq(const tg_gpt2_config *c, float *inv) {
    const int hs = c->n_embd / c->n_head, half = hs / 2;
    for (int i = 0; i < half; i++) /* HF: 1 / theta^(arange(0, hs, 2) / hs), in fp32 */
        inv[i] = (float)(1.0 / pow(c->rope_theta, (double)(float)((float)(2 * i) / (float)hs)));
    if (c->rope_factor == 0) return;
    /* torch's fp32 arithmetic with Python scalars rounded to fp32 */
    const float factor = (float)c->rope_factor, low = (float)c->rope_low_freq_factor;
    const float old = (float)c->rope_original_max_pos;
    const float low_wl = (float)((double)c->rope_original_max_pos / c->rope_low_freq_factor);
    const float high_wl = (float)((double)c->rope_original_max_pos / c->rope_high_freq_factor);
    const float span = (float)(c->rope_high_freq_factor - c->rope_low_freq_factor);
    const float two_pi = (float)(2.0 * 3.14159265358979323846);
    for (int i = 0; i < half; i++) {
        const float wl = two_pi / inv[i];
        const float scaled = wl > low_wl ? inv[i] / factor : inv[i];
        if (!(wl < high_wl) && !(wl > low_wl)) {
            const float s = (old / wl - low) / span;
            inv[i] = (1.0f - s) * scaled / factor + s * scaled;
        } else {
            inv[i] = scaled;
        }
    }
}

void tg_llama_rope_tables(float *cos_t, float *sin_t, int T, int half, const float *inv_freq) {
    for (int i = 0; i < half; i++) {
        const float inv = inv_freq[i]; /* angle = t * inv_freq in fp32, as HF */
        for (int t = 0; t < T; t++) {
            const float a = (float)t * inv;
            cos_t[(size_t)t * half + i] = (float)cos((double)a);
            sin_t[(size_t)t * half + i] = (float)sin((double)a);
        }
    }
}

static void add_tensor(tg_gpt2_layout *lay, size_t *off, const char *name, int layer, int ndim, int d0, int d1) {
    tg_tensor_info *t = &lay->tensors[lay->n_tensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->offset = *off;
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = ndim == 2 ? d1 : 1;
    t->numel = (size_t)d0 * (size_t)t->shape[1];
    t->layer = layer;
    t->decay = ndim == 2;
    *off += t->numel;
}

tg_status tg_llama_layout_init(tg_gpt2_layout *lay, const tg_gpt2_config *cfg, tg_error *err) {
    tg_status st = TG_OK;
    memset(lay, 0, sizeof *lay);
    lay->cfg = *cfg;
    const int L = cfg->n_layer, C = cfg->n_embd, Vp = cfg->padded_vocab_size, F = cfg->ffn_dim;
    if (cfg->arch != TG_MODEL_ARCH_LLAMA || cfg->n_kv_head <= 0 || F <= 0 || Vp < cfg->vocab_size || Vp % 128)
        return tg_error_set(err, TG_ERR_ARG, "llama: config not finalized");
    const int KV = cfg->n_kv_head * (C / cfg->n_head);
    lay->tensors = calloc((size_t)tg_llama_norm_index(L) + 2, sizeof *lay->tensors);
    lay->layer_begin = calloc((size_t)L + 1, sizeof *lay->layer_begin);
    TG_CHECK_ALLOC(err, lay->tensors);
    TG_CHECK_ALLOC(err, lay->layer_begin);
    size_t off = 0;
    char name[TG_GPT2_MAX_NAME];
    add_tensor(lay, &off, "model.embed_tokens.weight", -1, 2, Vp, C);
    const struct {
        const char *suffix;
        int ndim, d0, d1;
    } per_layer[TG_LLAMA_BLOCK_TENSORS] = {
        [TG_LLAMA_IN_NORM] = {"input_layernorm.weight", 1, C, 0},
        [TG_LLAMA_Q] = {"self_attn.q_proj.weight", 2, C, C},
        [TG_LLAMA_K] = {"self_attn.k_proj.weight", 2, KV, C},
        [TG_LLAMA_V] = {"self_attn.v_proj.weight", 2, KV, C},
        [TG_LLAMA_O] = {"self_attn.o_proj.weight", 2, C, C},
        [TG_LLAMA_POST_NORM] = {"post_attention_layernorm.weight", 1, C, 0},
        [TG_LLAMA_GATE] = {"mlp.gate_proj.weight", 2, F, C},
        [TG_LLAMA_UP] = {"mlp.up_proj.weight", 2, F, C},
        [TG_LLAMA_DOWN] = {"mlp.down_proj.weight", 2, C, F},
    };
    for (int l = 0; l < L; l++) {
        lay->layer_begin[l] = off;
        for (int i = 0; i < TG_LLAMA_BLOCK_TENSORS; i++) {
            snprintf(name, sizeof name, "model.layers.%d.%s", l, per_layer[i].suffix);
            add_tensor(lay, &off, name, l, per_layer[i].ndim, per_layer[i].d0, per_layer[i].d1);
        }
    }
    lay->layer_begin[L] = off;
    add_tensor(lay, &off, "model.norm.weight", -1, 1, C, 0);
    if (!cfg->tie_embeddings) add_tensor(lay, &off, "lm_head.weight", -1, 2, Vp, C);
    lay->n_params = off;
cleanup:
    if (st != TG_OK) tg_gpt2_layout_free(lay);
    return st;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

void tg_llama_params_init(const tg_gpt2_layout *lay, float *params, uint64_t seed) {
    const tg_gpt2_config *c = &lay->cfg;
    const float std = 0.02f, std_res = 0.02f / sqrtf(2.0f * (float)c->n_layer);
    for (int i = 0; i < lay->n_tensors; i++) {
        const tg_tensor_info *t = &lay->tensors[i];
        float *p = params + t->offset;
        tg_rng r;
        tg_rng_init(&r, tg_hash64(seed, (uint64_t)i));
        if (t->ndim == 1) { /* the RMSNorm weights */
            for (size_t k = 0; k < t->numel; k++) p[k] = 1.0f;
            continue;
        }
        const float s = ends_with(t->name, "o_proj.weight") || ends_with(t->name, "down_proj.weight") ? std_res : std;
        size_t n = t->numel;
        if (t->shape[0] == c->padded_vocab_size && t->layer < 0) n = (size_t)c->vocab_size * (size_t)c->n_embd;
        for (size_t k = 0; k < n; k++) p[k] = s * tg_rng_normal(&r);
        for (size_t k = n; k < t->numel; k++) p[k] = 0.0f;
    }
}

double tg_llama_flops_per_token(const tg_gpt2_layout *lay, int T) {
    const tg_gpt2_config *c = &lay->cfg;
    return 6.0 * (double)lay->n_params + 6.0 * c->n_layer * (double)c->n_embd * (double)T;
}
