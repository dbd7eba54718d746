/* interop/hf.c — GPT-2 <-> Hugging Face directory, and the dispatch by architecture (see hf.h). */
#include "interop/hf.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fsio.h"
#include "interop/hf_internal.h"

static tg_status gpt2_export(const char *dir, const tg_gpt2_layout *lay, const float *params, tg_st_dtype dtype,
                             int eos_id, tg_error *err) {
    tg_status st = TG_OK;
    json_t *cfgj = NULL, *gen = NULL;
    tg_st_entry *e = NULL;
    const tg_gpt2_config *c = &lay->cfg;
    if (dtype != TG_ST_F32 && dtype != TG_ST_BF16) TG_FAIL(err, TG_ERR_ARG, "export dtype must be fp32 or bf16");
    TG_TRY(tg_fs_mkdir_p(dir, err));
    cfgj = json_pack("{s:[s],s:s,s:i,s:i,s:i,s:i,s:i,s:i,s:n,s:s,s:f,s:f,s:f,s:f,s:f,s:i,s:i,s:b,s:s,s:b}",
                     "architectures", "GPT2LMHeadModel", "model_type", "gpt2", "vocab_size", c->vocab_size,
                     "n_positions", c->max_seq_len, "n_ctx", c->max_seq_len, "n_embd", c->n_embd, "n_layer",
                     c->n_layer, "n_head", c->n_head, "n_inner", "activation_function", "gelu_new",
                     "resid_pdrop", 0.0, "embd_pdrop", 0.0, "attn_pdrop", 0.0, "layer_norm_epsilon", 1e-5,
                     "initializer_range", 0.02, "bos_token_id", eos_id, "eos_token_id", eos_id,
                     "tie_word_embeddings", 1, "torch_dtype", dtype == TG_ST_F32 ? "float32" : "bfloat16",
                     "use_cache", 1);
    TG_CHECK_ALLOC(err, cfgj);
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
    return st;
}

/* ---- import ---- */

/* GPT-2's fixed choices that truthgpt implements; anything else is refused by name. */
static tg_status cfg_check(json_t *root, int n_embd, const char *path, tg_error *err) {
    json_t *v = json_object_get(root, "activation_function");
    if (v && (!json_is_string(v) || strcmp(json_string_value(v), "gelu_new") != 0))
        return tg_error_set(err, TG_ERR_FORMAT, "%s: activation_function must be gelu_new (tanh GELU), got '%s'",
                            path, json_is_string(v) ? json_string_value(v) : "?");
    v = json_object_get(root, "layer_norm_epsilon");
    if (v && (!json_is_number(v) || fabs(json_number_value(v) - 1e-5) > 1e-12))
        return tg_error_set(err, TG_ERR_FORMAT, "%s: layer_norm_epsilon must be 1e-5", path);
    v = json_object_get(root, "n_inner");
    if (v && !json_is_null(v) && !(json_is_integer(v) && json_integer_value(v) == 4 * n_embd))
        return tg_error_set(err, TG_ERR_FORMAT, "%s: n_inner must be null or 4*n_embd", path);
    v = json_object_get(root, "tie_word_embeddings");
    if (v && !json_is_true(v))
        return tg_error_set(err, TG_ERR_FORMAT, "%s: tie_word_embeddings=false is not supported", path);
    static const char *const off[] = {"scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "add_cross_attention"};
    for (int i = 0; i < 3; i++) {
        v = json_object_get(root, off[i]);
        if (json_is_true(v)) return tg_error_set(err, TG_ERR_FORMAT, "%s: %s=true is not supported", path, off[i]);
    }
    v = json_object_get(root, "scale_attn_weights");
    if (json_is_false(v)) return tg_error_set(err, TG_ERR_FORMAT, "%s: scale_attn_weights=false is not supported", path);
    return TG_OK;
}

/* The file's name for truthgpt's "transformer.X": that, or "X" (GPT2Model files). */
static const char *hf_name(const tg_hf_shards *s, const char *name) {
    int f;
    const char *pre = "transformer.";
    if (!tg_hf_shards_find(s, name, &f) && strncmp(name, pre, strlen(pre)) == 0 &&
        tg_hf_shards_find(s, name + strlen(pre), &f))
        return name + strlen(pre);
    return name;
}

static tg_status gpt2_import(const char *dir, json_t *root, const char *path, tg_gpt2_config *cfg, float **params,
                             tg_error *err) {
    tg_status st = TG_OK;
    tg_hf_shards sh = {0};
    tg_gpt2_layout lay = {0};
    float *p = NULL, *tmp = NULL;
    memset(cfg, 0, sizeof *cfg);
    TG_TRY(tg_hf_cfg_int(root, "n_layer", "num_hidden_layers", &cfg->n_layer, path, err));
    TG_TRY(tg_hf_cfg_int(root, "n_head", "num_attention_heads", &cfg->n_head, path, err));
    TG_TRY(tg_hf_cfg_int(root, "n_embd", "hidden_size", &cfg->n_embd, path, err));
    TG_TRY(tg_hf_cfg_int(root, "n_positions", "max_position_embeddings", &cfg->max_seq_len, path, err));
    TG_TRY(tg_hf_cfg_int(root, "vocab_size", NULL, &cfg->vocab_size, path, err));
    TG_TRY(cfg_check(root, cfg->n_embd, path, err));
    TG_TRY(tg_gpt2_config_finalize(cfg, err));
    TG_TRY(tg_gpt2_layout_init(&lay, cfg, err));
    TG_TRY(tg_hf_shards_open(&sh, dir, err));
    p = calloc(lay.n_params, sizeof *p);
    TG_CHECK_ALLOC(err, p);
    for (int i = 0; i < lay.n_tensors; i++)
        TG_TRY(tg_hf_read_tensor(&sh, dir, &lay, i, hf_name(&sh, lay.tensors[i].name), p, err));
    /* Everything else must be a known buffer or a tied head equal to wte. */
    for (int f = 0; f < sh.n; f++) {
        for (int k = 0; k < sh.files[f].n; k++) {
            const tg_st_tensor *t = &sh.files[f].tensors[k];
            const char *nm = t->name;
            char full[TG_GPT2_MAX_NAME + 16];
            snprintf(full, sizeof full, "transformer.%s", nm);
            if (tg_gpt2_layout_find(&lay, nm) >= 0 || tg_gpt2_layout_find(&lay, full) >= 0) continue;
            if (tg_hf_ends_with(nm, ".attn.bias") || tg_hf_ends_with(nm, ".attn.masked_bias")) continue;
            if (strcmp(nm, "lm_head.weight") == 0) {
                const tg_tensor_info *w = &lay.tensors[TG_GPT2_WTE];
                if (t->numel != (int64_t)cfg->vocab_size * cfg->n_embd)
                    TG_FAIL(err, TG_ERR_FORMAT, "%s: lm_head.weight has the wrong shape", dir);
                tmp = malloc((size_t)t->numel * sizeof *tmp);
                TG_CHECK_ALLOC(err, tmp);
                tg_st_tensor_read_f32(&sh.files[f], t, tmp);
                if (memcmp(tmp, p + w->offset, (size_t)t->numel * sizeof *tmp) != 0)
                    TG_FAIL(err, TG_ERR_FORMAT, "%s: lm_head.weight differs from transformer.wte.weight (untied heads are not supported)", dir);
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

tg_status tg_hf_export(const char *dir, const tg_gpt2_layout *lay, const float *params, tg_st_dtype dtype,
                       int eos_id, tg_error *err) {
    if (lay->cfg.arch == TG_MODEL_ARCH_LLAMA) return tg_hf_llama_export(dir, lay, params, dtype, eos_id, err);
    return gpt2_export(dir, lay, params, dtype, eos_id, err);
}

tg_status tg_hf_import(const char *dir, tg_gpt2_config *cfg, float **params, tg_error *err) {
    tg_status st = TG_OK;
    json_t *root = NULL;
    char path[TG_PATH_MAX];
    *params = NULL;
    TG_TRY(tg_hf_path_join(path, dir, "config.json", err));
    json_error_t jerr;
    root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) TG_FAIL(err, TG_ERR_FORMAT, "%s: cannot read: %s (line %d)", path, jerr.text, jerr.line);
    if (!json_is_object(root)) TG_FAIL(err, TG_ERR_FORMAT, "%s: not a JSON object", path);
    json_t *v = json_object_get(root, "model_type");
    const char *type = json_is_string(v) ? json_string_value(v) : "(missing)";
    if (strcmp(type, "gpt2") == 0) st = gpt2_import(dir, root, path, cfg, params, err);
    else if (strcmp(type, "llama") == 0) st = tg_hf_llama_import(dir, root, path, cfg, params, err);
    else
        TG_FAIL(err, TG_ERR_FORMAT, "%s: unsupported architecture: model_type '%s' (supported: gpt2, llama)", path,
                type);
cleanup:
    json_decref(root);
    return st;
}
