/* interop/hf_common.c — the plumbing shared by the GPT-2 and Llama mappings (hf_internal.h). */
#include "interop/hf_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fsio.h"
#include "model/llama.h"

tg_status tg_hf_path_join(char *out, const char *dir, const char *name, tg_error *err) {
    int n = snprintf(out, TG_PATH_MAX, "%s/%s", dir, name);
    if (n < 0 || n >= TG_PATH_MAX) return tg_error_set(err, TG_ERR_ARG, "path too long: %s/%s", dir, name);
    return TG_OK;
}

tg_status tg_hf_json_write(const char *dir, const char *name, json_t *j, tg_error *err) {
    char path[TG_PATH_MAX];
    tg_status st = tg_hf_path_join(path, dir, name, err);
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

tg_status tg_hf_cfg_int(json_t *root, const char *key, const char *alt, int *out, const char *path,
                         tg_error *err) {
    json_t *v = json_object_get(root, key);
    if (!v && alt) v = json_object_get(root, alt);
    if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > (1 << 30))
        return tg_error_set(err, TG_ERR_FORMAT, "%s: \"%s\" is missing or not a positive integer", path, key);
    *out = (int)json_integer_value(v);
    return TG_OK;
}

void tg_hf_shards_free(tg_hf_shards *s) {
    for (int i = 0; i < s->n; i++) {
        tg_st_file_free(&s->files[i]);
        free(s->names[i]);
    }
    free(s->files);
    free(s->names);
}

/* Opens model.safetensors, or every shard named in model.safetensors.index.json. */
tg_status tg_hf_shards_open(tg_hf_shards *s, const char *dir, tg_error *err) {
    tg_status st = TG_OK;
    json_t *idx = NULL;
    char path[TG_PATH_MAX];
    memset(s, 0, sizeof *s);
    TG_TRY(tg_hf_path_join(path, dir, "model.safetensors.index.json", err));
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        TG_TRY(tg_hf_path_join(path, dir, "model.safetensors", err));
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
        TG_TRY(tg_hf_path_join(spath, dir, fname, err));
        s->names[s->n] = strdup(fname);
        TG_CHECK_ALLOC(err, s->names[s->n]);
        TG_TRY(tg_st_file_open(&s->files[s->n], spath, err));
        s->n++;
    }
cleanup:
    json_decref(idx);
    if (st != TG_OK) {
        s->n += s->names && s->names[s->n] ? 1 : 0; /* free the half-opened one too */
        tg_hf_shards_free(s);
    }
    return st;
}

const tg_st_tensor *tg_hf_shards_find(const tg_hf_shards *s, const char *name, int *file) {
    for (int i = 0; i < s->n; i++) {
        const tg_st_tensor *t = tg_st_file_find(&s->files[i], name);
        if (t) {
            *file = i;
            return t;
        }
    }
    return NULL;
}

int tg_hf_ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}


/* The tensors whose rows are the vocabulary: stored with vocab_size rows in HF files. */
static int is_vocab_tensor(const tg_gpt2_layout *lay, int i) {
    if (lay->cfg.arch == TG_MODEL_ARCH_LLAMA)
        return i == TG_LLAMA_EMBED || (!lay->cfg.tie_embeddings && i == tg_llama_head_index(&lay->cfg));
    return i == TG_GPT2_WTE;
}

tg_status tg_hf_entries(const tg_gpt2_layout *lay, const float *params, tg_st_dtype dtype, tg_st_entry **out,
                        tg_error *err) {
    tg_st_entry *e = calloc((size_t)lay->n_tensors, sizeof *e);
    *out = e;
    if (!e) return tg_error_set(err, TG_ERR_NOMEM, "out of memory");
    for (int i = 0; i < lay->n_tensors; i++) {
        const tg_tensor_info *t = &lay->tensors[i];
        e[i] = (tg_st_entry){.name = t->name, .dtype = dtype, .ndim = t->ndim, .data = params + t->offset};
        for (int d = 0; d < t->ndim; d++) e[i].shape[d] = t->shape[d];
        if (is_vocab_tensor(lay, i)) e[i].shape[0] = lay->cfg.vocab_size; /* the padding rows stay behind */
    }
    return TG_OK;
}

tg_status tg_hf_read_tensor(const tg_hf_shards *sh, const char *dir, const tg_gpt2_layout *lay, int i,
                            const char *hf_name, float *p, tg_error *err) {
    const tg_tensor_info *ti = &lay->tensors[i];
    int fi = 0;
    const tg_st_tensor *t = tg_hf_shards_find(sh, hf_name, &fi);
    if (!t) return tg_error_set(err, TG_ERR_FORMAT, "%s: missing tensor '%s'", dir, ti->name);
    int64_t want0 = is_vocab_tensor(lay, i) ? lay->cfg.vocab_size : ti->shape[0];
    int ok = t->ndim == ti->ndim && t->shape[0] == want0 && (ti->ndim == 1 || t->shape[1] == ti->shape[1]);
    if (!ok)
        return tg_error_set(err, TG_ERR_FORMAT,
                            "%s: tensor '%s' (in %s): shape [%lld%s%lld] does not match the config's [%lld, %d]", dir,
                            t->name, sh->names[fi], (long long)t->shape[0], t->ndim > 1 ? ", " : "",
                            t->ndim > 1 ? (long long)t->shape[1] : 0LL, (long long)want0,
                            ti->ndim > 1 ? ti->shape[1] : 0);
    tg_st_tensor_read_f32(&sh->files[fi], t, p + ti->offset);
    return TG_OK;
}
