/* interop/hf_llama.c — Llama <-> a Hugging Face LlamaForCausalLM directory (see hf.h).
 *
 * truthgpt's Llama table (model/llama.h) uses HF's names and nn.Linear layouts, so every tensor
 * maps one to one; only the vocabulary rows (embed_tokens, an untied lm_head) are cut to
 * vocab_size on export and zero-padded on import. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fsio.h"
#include "interop/hf_internal.h"
#include "model/llama.h"

tg_status tg_hf_llama_export(const char *dir, const tg_gpt2_layout *lay, const float *params, tg_st_dtype dtype,
                             int eos_id, tg_error *err) {
    tg_status st = TG_OK;
    json_t *cfgj = NULL, *gen = NULL, *rs = NULL, *rp = NULL;
    tg_st_entry *e = NULL;
    const tg_gpt2_config *c = &lay->cfg;
    if (dtype != TG_ST_F32 && dtype != TG_ST_BF16) TG_FAIL(err, TG_ERR_ARG, "export dtype must be fp32 or bf16");
    TG_TRY(tg_fs_mkdir_p(dir, err));
    /* rope_theta (and rope_scaling) for transformers 4.x, rope_parameters for 5.x (which prefers it) */
    cfgj = json_pack("{s:[s],s:s,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:s,s:i,s:f,s:f,s:{s:f,s:s},s:f,s:b,s:b,s:f,s:i,"
                     "s:i,s:i,s:b,s:s,s:b}",
                     "architectures", "LlamaForCausalLM", "model_type", "llama", "vocab_size", c->vocab_size,
                     "hidden_size", c->n_embd, "intermediate_size", c->ffn_dim, "num_hidden_layers", c->n_layer,
                     "num_attention_heads", c->n_head, "num_key_value_heads", c->n_kv_head, "head_dim",
                     c->n_embd / c->n_head, "hidden_act", "silu", "max_position_embeddings", c->max_seq_len,
                     "rms_norm_eps", c->norm_eps, "rope_theta", c->rope_theta, "rope_parameters", "rope_theta",
                     c->rope_theta, "rope_type", "default", "initializer_range", 0.02, "attention_bias", 0,
                     "mlp_bias", 0, "attention_dropout", 0.0, "pretraining_tp", 1, "bos_token_id", eos_id,
                     "eos_token_id", eos_id, "tie_word_embeddings", c->tie_embeddings, "torch_dtype",
                     dtype == TG_ST_F32 ? "float32" : "bfloat16", "use_cache", 1);
    TG_CHECK_ALLOC(err, cfgj);
    if (c->rope_factor != 0) {
        rs = json_pack("{s:s,s:f,s:f,s:f,s:i}", "rope_type", "llama3", "factor", c->rope_factor, "low_freq_factor",
                       c->rope_low_freq_factor, "high_freq_factor", c->rope_high_freq_factor,
                       "original_max_position_embeddings", c->rope_original_max_pos);
        TG_CHECK_ALLOC(err, rs);
        rp = json_deep_copy(rs);
        TG_CHECK_ALLOC(err, rp);
        if (json_object_set_new(rp, "rope_theta", json_real(c->rope_theta)) != 0 ||
            json_object_set(cfgj, "rope_scaling", rs) != 0 || json_object_set(cfgj, "rope_parameters", rp) != 0)
            TG_FAIL(err, TG_ERR_NOMEM, "out of memory");
    }
    TG_TRY(tg_hf_json_write(dir, "config.json", cfgj, err));
    gen = json_pack("{s:i,s:i}", "bos_token_id", eos_id, "eos_token_id", eos_id);
    TG_CHECK_ALLOC(err, gen);
    TG_TRY(tg_hf_json_write(dir, "generation_config.json", gen, err));
    TG_TRY(tg_hf_entries(lay, params, dtype, &e, err));
    char path[TG_PATH_MAX];
    TG_TRY(tg_hf_path_join(path, dir, "model.safetensors", err));
    TG_TRY(tg_st_file_write(path, e, lay->n_tensors, err));
cleanup:
    free(e);
    json_decref(cfgj);
    json_decref(gen);
    json_decref(rs);
    json_decref(rp);
    return st;
}

/* ---- import ---- */

/* root[key] as a number, def when absent or null. */
static tg_status cfg_num(json_t *root, const char *key, double def, double *out, const char *path, tg_error *err) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return TG_OK;
    }
    if (!json_is_number(v) || !isfinite(json_number_value(v)))
        return tg_error_set(err, TG_ERR_FORMAT, "%s: \"%s\" is not a number", path, key);
    *out = json_number_value(v);
    return TG_OK;
}

/* Llama's choices that truthgpt implements; anything else is refused by key. */
static tg_status cfg_check(json_t *root, const tg_gpt2_config *c, const char *path, tg_error *err) {
    json_t *v = json_object_get(root, "hidden_act");
    if (v && (!json_is_string(v) || strcmp(json_string_value(v), "silu") != 0))
        return tg_error_set(err, TG_ERR_FORMAT, "%s: hidden_act must be silu (SwiGLU), got '%s'", path,
                            json_is_string(v) ? json_string_value(v) : "?");
    static const char *const off[] = {"attention_bias", "mlp_bias"};
    for (int i = 0; i < 2; i++) {
        v = json_object_get(root, off[i]);
        if (v && !json_is_false(v))
            return tg_error_set(err, TG_ERR_FORMAT, "%s: %s must be false (truthgpt's Llama has no biases)", path,
                                off[i]);
    }
    v = json_object_get(root, "head_dim");
    if (v && !json_is_null(v) && !(json_is_integer(v) && json_integer_value(v) == c->n_embd / c->n_head))
        return tg_error_set(err, TG_ERR_FORMAT,
                            "%s: head_dim must be hidden_size / num_attention_heads (%d); a different head_dim is "
                            "not supported", path, c->n_embd / c->n_head);
    v = json_object_get(root, "tie_word_embeddings");
    if (v && !json_is_boolean(v))
        return tg_error_set(err, TG_ERR_FORMAT, "%s: tie_word_embeddings is not a boolean", path);
    return TG_OK;
}

/* RoPE scaling: transformers 5.x writes rope_parameters {rope_theta, rope_type, ...}, 4.x
 * rope_scaling {rope_type or type, ...}; rope_parameters wins when both are there, as in
 * transformers. Plain RoPE ("default") and Llama 3's ("llama3") are implemented. */
static tg_status cfg_rope(json_t *root, tg_gpt2_config *c, const char *path, tg_error *err) {
    const char *rkey = "rope_parameters";
    json_t *v = json_object_get(root, rkey);
    if (!v || json_is_null(v)) v = json_object_get(root, rkey = "rope_scaling");
    if (!v || json_is_null(v)) return TG_OK;
    if (!json_is_object(v)) return tg_error_set(err, TG_ERR_FORMAT, "%s: %s is not an object", path, rkey);
    json_t *t = json_object_get(v, "rope_type");
    if (!t) t = json_object_get(v, "type");
    const char *type = !t ? "default" : json_is_string(t) ? json_string_value(t) : "?";
    if (strcmp(type, "default") == 0) return TG_OK;
    if (strcmp(type, "llama3") != 0)
        return tg_error_set(err, TG_ERR_FORMAT,
                            "%s: %s type '%s' is not supported (truthgpt implements rope_type \"default\" and "
                            "\"llama3\")", path, rkey, type);
    static const char *const keys[] = {"factor", "low_freq_factor", "high_freq_factor"};
    double *dst[] = {&c->rope_factor, &c->rope_low_freq_factor, &c->rope_high_freq_factor};
    for (int i = 0; i < 3; i++) {
        json_t *x = json_object_get(v, keys[i]);
        if (!json_is_number(x))
            return tg_error_set(err, TG_ERR_FORMAT, "%s: %s (llama3) needs a number \"%s\"", path, rkey, keys[i]);
        *dst[i] = json_number_value(x);
    }
    json_t *x = json_object_get(v, "original_max_position_embeddings");
    if (!json_is_integer(x) || json_integer_value(x) <= 0 || json_integer_value(x) > (1 << 30))
        return tg_error_set(err, TG_ERR_FORMAT,
                            "%s: %s (llama3) needs a positive integer \"original_max_position_embeddings\"", path,
                            rkey);
    c->rope_original_max_pos = (int)json_integer_value(x);
    return TG_OK;
}

tg_status tg_hf_llama_import(const char *dir, json_t *root, const char *path, tg_gpt2_config *cfg, float **params,
                             tg_error *err) {
    tg_status st = TG_OK;
    tg_hf_shards sh = {0};
    tg_gpt2_layout lay = {0};
    float *p = NULL, *tmp = NULL;
    memset(cfg, 0, sizeof *cfg);
    cfg->arch = TG_MODEL_ARCH_LLAMA;
    TG_TRY(tg_hf_cfg_int(root, "num_hidden_layers", NULL, &cfg->n_layer, path, err));
    TG_TRY(tg_hf_cfg_int(root, "num_attention_heads", NULL, &cfg->n_head, path, err));
    TG_TRY(tg_hf_cfg_int(root, "hidden_size", NULL, &cfg->n_embd, path, err));
    TG_TRY(tg_hf_cfg_int(root, "intermediate_size", NULL, &cfg->ffn_dim, path, err));
    TG_TRY(tg_hf_cfg_int(root, "max_position_embeddings", NULL, &cfg->max_seq_len, path, err));
    TG_TRY(tg_hf_cfg_int(root, "vocab_size", NULL, &cfg->vocab_size, path, err));
    json_t *kv = json_object_get(root, "num_key_value_heads");
    if (kv && !json_is_null(kv)) TG_TRY(tg_hf_cfg_int(root, "num_key_value_heads", NULL, &cfg->n_kv_head, path, err));
    else cfg->n_kv_head = cfg->n_head; /* HF's default: multi-head attention */
    /* HF LlamaConfig's defaults where a key is absent: theta 10000, eps 1e-6, untied */
    TG_TRY(cfg_num(root, "rope_theta", 10000.0, &cfg->rope_theta, path, err));
    json_t *rp = json_object_get(root, "rope_parameters");
    if (json_is_object(rp)) TG_TRY(cfg_num(rp, "rope_theta", cfg->rope_theta, &cfg->rope_theta, path, err));
    TG_TRY(cfg_num(root, "rms_norm_eps", 1e-6, &cfg->norm_eps, path, err));
    TG_TRY(cfg_check(root, cfg, path, err));
    TG_TRY(cfg_rope(root, cfg, path, err));
    cfg->tie_embeddings = json_is_true(json_object_get(root, "tie_word_embeddings"));
    tg_status fs = tg_gpt2_config_finalize(cfg, err);
    if (fs != TG_OK) {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err->msg);
        TG_FAIL(err, TG_ERR_FORMAT, "%s: %s", path, msg);
    }
    TG_TRY(tg_gpt2_layout_init(&lay, cfg, err));
    TG_TRY(tg_hf_shards_open(&sh, dir, err));
    p = calloc(lay.n_params, sizeof *p);
    TG_CHECK_ALLOC(err, p);
    for (int i = 0; i < lay.n_tensors; i++) TG_TRY(tg_hf_read_tensor(&sh, dir, &lay, i, lay.tensors[i].name, p, err));
    /* Everything else must be a known buffer or, when tied, an lm_head equal to embed_tokens. */
    for (int f = 0; f < sh.n; f++) {
        for (int k = 0; k < sh.files[f].n; k++) {
            const tg_st_tensor *t = &sh.files[f].tensors[k];
            const char *nm = t->name;
            if (tg_gpt2_layout_find(&lay, nm) >= 0) continue;
            if (tg_hf_ends_with(nm, ".self_attn.rotary_emb.inv_freq")) continue; /* a buffer older files carry */
            if (strcmp(nm, "lm_head.weight") == 0) { /* here only when tied */
                const tg_tensor_info *w = &lay.tensors[TG_LLAMA_EMBED];
                if (t->ndim != 2 || t->shape[0] != cfg->vocab_size || t->shape[1] != cfg->n_embd)
                    TG_FAIL(err, TG_ERR_FORMAT, "%s: lm_head.weight has the wrong shape", dir);
                tmp = malloc((size_t)t->numel * sizeof *tmp);
                TG_CHECK_ALLOC(err, tmp);
                tg_st_tensor_read_f32(&sh.files[f], t, tmp);
                if (memcmp(tmp, p + w->offset, (size_t)t->numel * sizeof *tmp) != 0)
                    TG_FAIL(err, TG_ERR_FORMAT,
                            "%s: lm_head.weight differs from model.embed_tokens.weight but config.json says "
                            "tie_word_embeddings true", dir);
                free(tmp);
                tmp = NULL;
                continue;
            }
            TG_FAIL(err, TG_ERR_FORMAT, "%s: unknown tensor '%s' in %s", dir, nm, sh.names[f]);
        }
    }
    *params = p;
    p = NULL;
cleanup:
    free(p);
    free(tmp);
    tg_hf_shards_free(&sh);
    tg_gpt2_layout_free(&lay);
    return st;
}
