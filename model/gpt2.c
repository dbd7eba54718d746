#include "model/gpt2.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "model/llama.h"

tg_status tg_gpt2_config_finalize(tg_gpt2_config *c, tg_error *err) {
    if (c->max_seq_len <= 0 || c->vocab_size <= 0 || c->n_layer <= 0 || c->n_head <= 0 ||
        c->n_embd <= 0)
        return tg_error_set(err, TG_ERR_ARG,
                            "gpt2: all shapes must be positive (seq_len=%d vocab_size=%d n_layer=%d "
                            "n_head=%d n_embd=%d)",
                            c->max_seq_len, c->vocab_size, c->n_layer, c->n_head, c->n_embd);
    if (c->n_embd % c->n_head != 0)
        return tg_error_set(err, TG_ERR_ARG, "gpt2: n_embd (%d) must be a multiple of n_head (%d)",
                            c->n_embd, c->n_head);
    c->padded_vocab_size = (c->vocab_size + 127) / 128 * 128;
    if (c->arch == TG_MODEL_ARCH_LLAMA) return tg_llama_config_check(c, err);
    if (c->arch != TG_MODEL_ARCH_GPT2) return tg_error_set(err, TG_ERR_ARG, "model: unknown arch %d", (int)c->arch);
    return TG_OK;
}

int tg_gpt2_config_equal(const tg_gpt2_config *a, const tg_gpt2_config *b) {
    return a->max_seq_len == b->max_seq_len && a->vocab_size == b->vocab_size &&
           a->padded_vocab_size == b->padded_vocab_size && a->n_layer == b->n_layer && a->n_head == b->n_head &&
           a->n_embd == b->n_embd && a->arch == b->arch && a->n_kv_head == b->n_kv_head && a->ffn_dim == b->ffn_dim &&
           a->rope_theta == b->rope_theta && a->norm_eps == b->norm_eps && a->tie_embeddings == b->tie_embeddings &&
           a->rope_factor == b->rope_factor && a->rope_low_freq_factor == b->rope_low_freq_factor &&
           a->rope_high_freq_factor == b->rope_high_freq_factor && a->rope_original_max_pos == b->rope_original_max_pos;
}

static void add_tensor(tg_gpt2_layout *lay, size_t *off, const char *name, int layer, int ndim,
                       int d0, int d1) {
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

tg_status tg_gpt2_layout_init(tg_gpt2_layout *lay, const tg_gpt2_config *cfg, tg_error *err) {
    tg_status st = TG_OK;
    if (cfg->arch == TG_MODEL_ARCH_LLAMA) return tg_llama_layout_init(lay, cfg, err);
    memset(lay, 0, sizeof *lay);
    lay->cfg = *cfg;
    const int L = cfg->n_layer, C = cfg->n_embd;
    if (cfg->padded_vocab_size < cfg->vocab_size || cfg->padded_vocab_size % 128)
        return tg_error_set(err, TG_ERR_ARG, "gpt2: config not finalized (padded_vocab_size)");
    lay->tensors = calloc((size_t)tg_gpt2_final_index(L, TG_GPT2_LNF_B) + 1, sizeof *lay->tensors);
    lay->layer_begin = calloc((size_t)L + 1, sizeof *lay->layer_begin);
    TG_CHECK_ALLOC(err, lay->tensors);
    TG_CHECK_ALLOC(err, lay->layer_begin);
    size_t off = 0;
    char name[TG_GPT2_MAX_NAME];
    add_tensor(lay, &off, "transformer.wte.weight", -1, 2, cfg->padded_vocab_size, C);
    add_tensor(lay, &off, "transformer.wpe.weight", -1, 2, cfg->max_seq_len, C);
    static const struct {
        const char *suffix;
        int ndim, d0, d1; /* in units of C (d0, d1) */
    } per_layer[TG_GPT2_BLOCK_TENSORS] = {
        [TG_GPT2_LN1_W] = {"ln_1.weight", 1, 1, 0},
        [TG_GPT2_LN1_B] = {"ln_1.bias", 1, 1, 0},
        [TG_GPT2_QKV_W] = {"attn.c_attn.weight", 2, 1, 3},
        [TG_GPT2_QKV_B] = {"attn.c_attn.bias", 1, 3, 0},
        [TG_GPT2_ATTPROJ_W] = {"attn.c_proj.weight", 2, 1, 1},
        [TG_GPT2_ATTPROJ_B] = {"attn.c_proj.bias", 1, 1, 0},
        [TG_GPT2_LN2_W] = {"ln_2.weight", 1, 1, 0},
        [TG_GPT2_LN2_B] = {"ln_2.bias", 1, 1, 0},
        [TG_GPT2_FC_W] = {"mlp.c_fc.weight", 2, 1, 4},
        [TG_GPT2_FC_B] = {"mlp.c_fc.bias", 1, 4, 0},
        [TG_GPT2_FCPROJ_W] = {"mlp.c_proj.weight", 2, 4, 1},
        [TG_GPT2_FCPROJ_B] = {"mlp.c_proj.bias", 1, 1, 0},
    };
    for (int l = 0; l < L; l++) {
        lay->layer_begin[l] = off;
        for (int i = 0; i < TG_GPT2_BLOCK_TENSORS; i++) {
            snprintf(name, sizeof name, "transformer.h.%d.%s", l, per_layer[i].suffix);
            add_tensor(lay, &off, name, l, per_layer[i].ndim, per_layer[i].d0 * C,
                       per_layer[i].d1 * C);
        }
    }
    lay->layer_begin[L] = off;
    add_tensor(lay, &off, "transformer.ln_f.weight", -1, 1, C, 0);
    add_tensor(lay, &off, "transformer.ln_f.bias", -1, 1, C, 0);
    lay->n_params = off;
cleanup:
    if (st != TG_OK) tg_gpt2_layout_free(lay);
    return st;
}

void tg_gpt2_layout_free(tg_gpt2_layout *lay) {
    free(lay->tensors);
    free(lay->layer_begin);
    lay->tensors = NULL;
    lay->layer_begin = NULL;
    lay->n_tensors = 0;
}

int tg_gpt2_layout_find(const tg_gpt2_layout *lay, const char *name) {
    for (int i = 0; i < lay->n_tensors; i++)
        if (strcmp(lay->tensors[i].name, name) == 0) return i;
    return -1;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

void tg_gpt2_params_init(const tg_gpt2_layout *lay, float *params, uint64_t seed) {
    const tg_gpt2_config *c = &lay->cfg;
    if (c->arch == TG_MODEL_ARCH_LLAMA) {
        tg_llama_params_init(lay, params, seed);
        return;
    }
    const float std = 0.02f, std_res = 0.02f / sqrtf(2.0f * (float)c->n_layer);
    for (int i = 0; i < lay->n_tensors; i++) {
        const tg_tensor_info *t = &lay->tensors[i];
        float *p = params + t->offset;
        /* One RNG stream per tensor, so a tensor's values do not depend on the others' sizes. */
        tg_rng r;
        tg_rng_init(&r, tg_hash64(seed, (uint64_t)i));
        if (t->ndim == 1) {
            float v = ends_with(t->name, "ln_1.weight") || ends_with(t->name, "ln_2.weight") ||
                              ends_with(t->name, "ln_f.weight")
                          ? 1.0f
                          : 0.0f;
            for (size_t k = 0; k < t->numel; k++) p[k] = v;
            continue;
        }
        float s = ends_with(t->name, "c_proj.weight") ? std_res : std;
        size_t n = t->numel;
        if (i == TG_GPT2_WTE) n = (size_t)c->vocab_size * (size_t)c->n_embd; /* wte: padded rows stay 0 */
        for (size_t k = 0; k < n; k++) p[k] = s * tg_rng_normal(&r);
        for (size_t k = n; k < t->numel; k++) p[k] = 0.0f;
    }
}

double tg_gpt2_flops_per_token(const tg_gpt2_layout *lay, int T) {
    const tg_gpt2_config *c = &lay->cfg;
    if (c->arch == TG_MODEL_ARCH_LLAMA) return tg_llama_flops_per_token(lay, T);
    return 6.0 * (double)lay->n_params + 12.0 * c->n_layer * (double)c->n_embd * (double)T;
}
