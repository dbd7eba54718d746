/* interop/hf.c — GPT-2 <-> Hugging Face directory (see hf.h). */
#include "interop/hf.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fsio.h"

static tg_status path_join(char *out, const char *dir, const char *name, tg_error *err) {
    int n = snprintf(out, TG_PATH_MAX, "%s/%s", dir, name);
    if (n < 0 || n >= TG_PATH_MAX) return tg_error_set(err, TG_ERR_ARG, "path too long: %s/%s", dir, name);
    return TG_OK;
}

static tg_status json_write(const char *dir, const char *name, json_t *j, tg_error *err) {
    char path[TG_PATH_MAX];
    tg_status st = path_join(path, dir, name, err);
    if (st != TG_OK) return st;
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    if (!s) return tg_error_set(err, TG_ERR_NOMEM, "out of memory writing %s", path);
    size_t n = strlen(s);
    char *t = realloc(s, n + 2);
    if (!t) {
        free(s);
        return tg_error_set(err, TG_ERR_NOMEM, "out of memory writing %s", path);
    }
    t[n] = '\n';
    st = tg_fs_file_replace(path, t, n + 1, 0, err);
    free(t);
    return st;
}

tg_status tg_hf_export(const char *dir, const tg_gpt2_layout *lay, const float *params, tg_st_dtype dtype,
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
    TG_TRY(json_write(dir, "config.json", cfgj, err));
    gen = json_pack("{s:i,s:i}", "bos_token_id", eos_id, "eos_token_id", eos_id);
    TG_CHECK_ALLOC(err, gen);
    TG_TRY(json_write(dir, "generation_config.json", gen, err));
    e = calloc((size_t)lay->n_tensors, sizeof *e);
    TG_CHECK_ALLOC(err, e);
    for (int i = 0; i < lay->n_tensors; i++) {
        const tg_tensor_info *t = &lay->tensors[i];
        e[i] = (tg_st_entry){.name = t->name, .dtype = dtype, .ndim = t->ndim, .data = params + t->offset};
        for (int d = 0; d < t->ndim; d++) e[i].shape[d] = t->shape[d];
        if (i == TG_GPT2_WTE) e[i].shape[0] = c->vocab_size; /* the padding rows stay behind */
    }
    char path[TG_PATH_MAX];
    TG_TRY(path_join(path, dir, "model.safetensors", err));
    TG_TRY(tg_st_file_write(path, e, lay->n_tensors, err));
cleanup:
    free(e);
    json_decref(cfgj);
    json_decref(gen);
    return st;
}

/* ---- import ---- */

static tg_status cfg_int(json_t *root, const char *key, const char *alt, int *out, const char *path,
                         tg_error *err) {
    json_t *v = json_object_get(root, key);
    if (!v && alt) v = json_object_get(root, alt);
    if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > (1 << 30))
        return tg_error_set(err, TG_ERR_FORMAT, "%s: \"%s\" is missing or not a positive integer", path, key);
    *out = (int)json_integer_value(v);
    return TG_OK;
}

/* GPT-2's fixed choices that truthgpt implements; anything else is refused by name. */
static tg_status cfg_check(json_t *root, int n_embd, const char *path, tg_error *err) {
    json_t *v = json_object_get(root, "model_type");
    if (!json_is_string(v) || strcmp(json_string_value(v), "gpt2") != 0)
        return tg_error_set(err, TG_ERR_FORMAT, "%s: unsupported architecture: model_type '%s' (supported: gpt2)",
                            path, json_is_string(v) ? json_string_value(v) : "(missing)");
    v = json_object_get(root, "activation_function");
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

typedef struct {
    int n;
    tg_st_file *files;
    char **names;
} shard_set;

static void shards_free(shard_set *s) {
    for (int i = 0; i < s->n; i++) {
        tg_st_file_free(&s->files[i]);
        free(s->names[i]);
    }
    free(s->files);
    free(s->names);
}

/* Opens model.safetensors, or every shard named in model.safetensors.index.json. */
static tg_status shards_open(shard_set *s, const char *dir, tg_error *err) {
    tg_status st = TG_OK;
    json_t *idx = NULL;
    char path[TG_PATH_MAX];
    memset(s, 0, sizeof *s);
    TG_TRY(path_join(path, dir, "model.safetensors.index.json", err));
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        TG_TRY(path_join(path, dir, "model.safetensors", err));
        s->files = calloc(1, sizeof *s->files);
        s->names = calloc(1, sizeof *s->names);
        TG_CHECK_ALLOC(err, s->files);
        TG_CHECK_ALLOC(err, s->names);
        TG_TRY(tg_st_file_open(&s->files[0], path, err));
        s->names[0] = strdup("model.safetensors");
        s->n = 1;
        TG_CHECK_ALLOC(err, s->names[0]);
        goto cleanup;
    }
    json_error_t jerr;
    idx = json_loadf(fp, JSON_REJECT_DUPLICATES, &jerr);
    fclose(fp);
    if (!idx) TG_FAIL(err, TG_ERR_FORMAT, "%s: not valid JSON: %s (line %d)", path, jerr.text, jerr.line);
    json_t *map = json_object_get(idx, "weight_map");
    if (!json_is_object(map)) TG_FAIL(err, TG_ERR_FORMAT, "%s: no \"weight_map\" object", path);
    size_t cap = json_object_size(map);
    s->files = calloc(cap + 1, sizeof *s->files);
    s->names = calloc(cap + 1, sizeof *s->names);
    TG_CHECK_ALLOC(err, s->files);
    TG_CHECK_ALLOC(err, s->names);
    const char *key;
    json_t *v;
    json_object_foreach(map, key, v) {
        if (!json_is_string(v)) TG_FAIL(err, TG_ERR_FORMAT, "%s: weight_map['%s'] is not a file name", path, key);
        const char *fname = json_string_value(v);
        if (strchr(fname, '/')) TG_FAIL(err, TG_ERR_FORMAT, "%s: shard name '%s' has a '/'", path, fname);
        int seen = 0;
        for (int i = 0; i < s->n; i++) seen |= strcmp(s->names[i], fname) == 0;
        if (seen) continue;
        char spath[TG_PATH_MAX];
        TG_TRY(path_join(spath, dir, fname, err));
        s->names[s->n] = strdup(fname);
        TG_CHECK_ALLOC(err, s->names[s->n]);
        TG_TRY(tg_st_file_open(&s->files[s->n], spath, err));
        s->n++;
    }
cleanup:
    json_decref(idx);
    if (st != TG_OK) {
        s->n += s->names && s->names[s->n] ? 1 : 0; /* free the half-opened one too */
        shards_free(s);
    }
    return st;
}

static const tg_st_tensor *shards_find(const shard_set *s, const char *name, int *file) {
    for (int i = 0; i < s->n; i++) {
        const tg_st_tensor *t = tg_st_file_find(&s->files[i], name);
        if (t) {
            *file = i;
            return t;
        }
    }
    return NULL;
}

/* The tensor for truthgpt's name: "transformer.X", or "X" (GPT2Model files). */
static const tg_st_tensor *find_hf(const shard_set *s, const char *name, int *file) {
    const tg_st_tensor *t = shards_find(s, name, file);
    const char *pre = "transformer.";
    if (!t && strncmp(name, pre, strlen(pre)) == 0) t = shards_find(s, name + strlen(pre), file);
    return t;
}

static int ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

tg_status tg_hf_import(const char *dir, tg_gpt2_config *cfg, float **params, tg_error *err) {
    tg_status st = TG_OK;
    json_t *root = NULL;
    shard_set sh = {0};
    tg_gpt2_layout lay = {0};
    float *p = NULL, *tmp = NULL;
    char path[TG_PATH_MAX];
    *params = NULL;
    TG_TRY(path_join(path, dir, "config.json", err));
    json_error_t jerr;
    root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) TG_FAIL(err, TG_ERR_FORMAT, "%s: cannot read: %s (line %d)", path, jerr.text, jerr.line);
    memset(cfg, 0, sizeof *cfg);
    TG_TRY(cfg_int(root, "n_layer", "num_hidden_layers", &cfg->n_layer, path, err));
    TG_TRY(cfg_int(root, "n_head", "num_attention_heads", &cfg->n_head, path, err));
    TG_TRY(cfg_int(root, "n_embd", "hidden_size", &cfg->n_embd, path, err));
    TG_TRY(cfg_int(root, "n_positions", "max_position_embeddings", &cfg->max_seq_len, path, err));
    TG_TRY(cfg_int(root, "vocab_size", NULL, &cfg->vocab_size, path, err));
    TG_TRY(cfg_check(root, cfg->n_embd, path, err));
    TG_TRY(tg_gpt2_config_finalize(cfg, err));
    TG_TRY(tg_gpt2_layout_init(&lay, cfg, err));
    TG_TRY(shards_open(&sh, dir, err));
    p = calloc(lay.n_params, sizeof *p);
    TG_CHECK_ALLOC(err, p);
    for (int i = 0; i < lay.n_tensors; i++) {
        const tg_tensor_info *ti = &lay.tensors[i];
        int fi = 0;
        const tg_st_tensor *t = find_hf(&sh, ti->name, &fi);
        if (!t) TG_FAIL(err, TG_ERR_FORMAT, "%s: missing tensor '%s'", dir, ti->name);
        int64_t want0 = i == TG_GPT2_WTE ? cfg->vocab_size : ti->shape[0];
        int ok = t->ndim == ti->ndim && t->shape[0] == want0 && (ti->ndim == 1 || t->shape[1] == ti->shape[1]);
        if (!ok)
            TG_FAIL(err, TG_ERR_FORMAT, "%s: tensor '%s' (in %s): shape [%lld%s%lld] does not match the config's [%lld, %d]",
                    dir, t->name, sh.names[fi], (long long)t->shape[0], t->ndim > 1 ? ", " : "",
                    t->ndim > 1 ? (long long)t->shape[1] : 0LL, (long long)want0, ti->ndim > 1 ? ti->shape[1] : 0);
        tg_st_tensor_read_f32(&sh.files[fi], t, p + ti->offset);
    }
    /* Everything else must be a known buffer or a tied head equal to wte. */
    for (int f = 0; f < sh.n; f++) {
        for (int k = 0; k < sh.files[f].n; k++) {
            const tg_st_tensor *t = &sh.files[f].tensors[k];
            const char *nm = t->name;
            char full[TG_GPT2_MAX_NAME + 16];
            snprintf(full, sizeof full, "transformer.%s", nm);
            if (tg_gpt2_layout_find(&lay, nm) >= 0 || tg_gpt2_layout_find(&lay, full) >= 0) continue;
            if (ends_with(nm, ".attn.bias") || ends_with(nm, ".attn.masked_bias")) continue;
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
    shards_free(&sh);
    tg_gpt2_layout_free(&lay);
    json_decref(root);
    return st;
}
