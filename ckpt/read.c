/* ckpt/read.c — reading a checkpoint file back: load (keep the arrays), verify (check every
 * checksum, keep nothing) and info (check every checksum, keep one record per dataset for
 * `ckpt info`, tolerating bad ones). One walk over the file serves all three. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ckpt/internal.h"
#include "core/crc32c.h"
#include "core/fsio.h"

/* How one walk treats what it reads. */
typedef struct {
    int keep_arrays;     /* load: the tensors go into the state */
    tg_ckpt_info *info;  /* info: one record per dataset; bad tensors are recorded, not errors */
} ck_walk;

static tg_status ck_attr_read(hid_t obj, const char *name, hid_t mtype, void *v, tg_error *err) {
    tg_status st = TG_OK;
    hid_t a = -1;
    int exists = 0;
    CK_H5(exists = H5Aexists(obj, name));
    if (!exists) TG_FAIL(err, TG_ERR_FORMAT, "missing attribute %s", name);
    CK_H5(a = H5Aopen(obj, name, H5P_DEFAULT));
    CK_H5(H5Aread(a, mtype, v));
cleanup:
    ck_close(&a);
    return st;
}

static tg_status ck_attr_read_int(hid_t obj, const char *name, int *v, tg_error *err) {
    int64_t x = 0;
    tg_status st = tg_h5_attr_read_i64(obj, name, &x, err);
    if (st != TG_OK) return st;
    if (x < INT32_MIN || x > INT32_MAX)
        return tg_error_set(err, TG_ERR_FORMAT, "attribute %s = %" PRId64 " out of range", name, x);
    *v = (int)x;
    return TG_OK;
}

/* A new record at the end of info->datasets (NULL when out of memory). */
static tg_ckpt_dataset_info *ck_info_add(tg_ckpt_info *info) {
    if (info->n_datasets == info->cap_datasets) {
        int cap = info->cap_datasets ? 2 * info->cap_datasets : 128;
        tg_ckpt_dataset_info *d = realloc(info->datasets, (size_t)cap * sizeof *d);
        if (!d) return NULL;
        info->datasets = d;
        info->cap_datasets = cap;
    }
    tg_ckpt_dataset_info *r = &info->datasets[info->n_datasets++];
    memset(r, 0, sizeof *r);
    return r;
}

/* Reads dataset `name` under parent (expected ndim/dims) as mtype into buf and verifies its
 * crc32c. label names it in messages ("/params/x"). With info, the dataset's record is appended
 * to it once the data was read (or failed to read); with tolerate too, a checksum or read
 * failure is only recorded there (and counted in info->n_bad), not returned. */
static tg_status ck_dset_read(hid_t parent, const char *name, const char *label, hid_t mtype,
                              size_t elem, void *buf, int ndim, const hsize_t *dims,
                              tg_ckpt_info *info, int tolerate, tg_error *err) {
    tg_status st = TG_OK;
    hid_t d = -1, sp = -1;
    hsize_t fdims[2] = {0, 0};
    int fnd = 0, exists = 0;
    uint32_t stored = 0, got = 0;
    hsize_t storage = 0;
    tg_error rerr = {0};
    CK_H5(exists = H5Lexists(parent, name, H5P_DEFAULT));
    if (!exists) TG_FAIL(err, TG_ERR_FORMAT, "missing dataset %s", label);
    CK_H5(d = H5Dopen2(parent, name, H5P_DEFAULT));
    CK_H5(sp = H5Dget_space(d));
    CK_H5(fnd = H5Sget_simple_extent_ndims(sp));
    if (fnd != ndim) TG_FAIL(err, TG_ERR_FORMAT, "%s has %d dims, expected %d", label, fnd, ndim);
    CK_H5(H5Sget_simple_extent_dims(sp, fdims, NULL));
    for (int i = 0; i < ndim; i++)
        if (fdims[i] != dims[i])
            TG_FAIL(err, TG_ERR_FORMAT, "%s has shape [%llu%s%llu], expected [%llu%s%llu]", label,
                    (unsigned long long)fdims[0], ndim == 2 ? ", " : "",
                    ndim == 2 ? (unsigned long long)fdims[1] : 0ull, (unsigned long long)dims[0],
                    ndim == 2 ? ", " : "", ndim == 2 ? (unsigned long long)dims[1] : 0ull);
    TG_TRY(ck_attr_read(d, "crc32c", H5T_NATIVE_UINT32, &stored, err));
    size_t nbytes = (size_t)(dims[0] * (ndim == 2 ? dims[1] : 1)) * elem;
    int read_ok = 1;
    tg_h5_lock();
    herr_t r = H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    if (r < 0) {
        read_ok = 0;
        tg_h5_fail(&rerr, __FILE__, __LINE__, "H5Dread");
    }
    storage = H5Dget_storage_size(d);
    tg_h5_unlock();
    if (read_ok) got = tg_crc32c(0, buf, nbytes);
    if (info) {
        tg_ckpt_dataset_info *rec = ck_info_add(info);
        TG_CHECK_ALLOC(err, rec);
        snprintf(rec->label, sizeof rec->label, "%s", label);
        rec->ndim = ndim;
        rec->dims[0] = dims[0];
        rec->dims[1] = ndim == 2 ? dims[1] : 0;
        rec->bytes = nbytes;
        rec->stored_bytes = storage;
        rec->crc32c = stored;
        rec->readable = read_ok;
        rec->crc_ok = read_ok && got == stored;
        if (!read_ok) rec->why = rerr;
        if (tolerate && !rec->crc_ok) info->n_bad++;
    }
    if (tolerate) goto cleanup;
    if (!read_ok) {
        if (err) *err = rerr;
        st = rerr.code;
        tg_error_prefix(err, "%s is unreadable (corrupt?): ", label);
        goto cleanup;
    }
    if (got != stored)
        TG_FAIL(err, TG_ERR_FORMAT,
                "checksum mismatch in %s (stored crc32c %08x, data has %08x): the file is corrupt",
                label, stored, got);
cleanup:
    ck_close(&sp);
    ck_close(&d);
    return st;
}

static tg_status ck_read_tensors(hid_t f, const char *group, const tg_gpt2_layout *lay,
                                 float *flat, const ck_walk *w, tg_error *err) {
    tg_status st = TG_OK;
    hid_t g = -1;
    int exists = 0;
    char label[TG_GPT2_MAX_NAME + 32];
    CK_H5(exists = H5Lexists(f, group, H5P_DEFAULT));
    if (!exists) TG_FAIL(err, TG_ERR_FORMAT, "missing group /%s", group);
    CK_H5(g = H5Gopen2(f, group, H5P_DEFAULT));
    for (int i = 0; i < lay->n_tensors; i++) {
        const tg_tensor_info *t = &lay->tensors[i];
        hsize_t dims[2] = {(hsize_t)t->shape[0], t->ndim == 2 ? (hsize_t)t->shape[1] : 1};
        snprintf(label, sizeof label, "/%s/%s", group, t->name);
        /* load: into place; verify/info: flat is one tensor's scratch */
        float *dst = w->keep_arrays ? flat + t->offset : flat;
        TG_TRY(ck_dset_read(g, t->name, label, H5T_NATIVE_FLOAT, sizeof(float), dst, t->ndim, dims,
                            w->info, w->info != NULL, err));
    }
cleanup:
    ck_close(&g);
    return st;
}

/* The root attributes into s and *h (format name and version, shape, flags), and their
 * meta_crc32c: a mismatch is an error unless info is set (then it is recorded). */
static tg_status ck_read_header(hid_t f, tg_ckpt_state *s, tg_ckpt_info *h, const ck_walk *w,
                                tg_error *err) {
    tg_status st = TG_OK;
    char sbuf[TG_PATH_MAX];
    char *meta = NULL;
    int64_t n_params = 0;
    htri_t has_format = 0, has_tokens = 0;
    CK_H5(has_format = H5Aexists(f, "format"));
    if (!has_format) {
        CK_H5(has_tokens = H5Lexists(f, "tokens", H5P_DEFAULT));
        TG_FAIL(err, TG_ERR_FORMAT, "not a truthgpt checkpoint: %s",
                has_tokens ? "looks like a data shard (a 'tokens' dataset, no 'format' attribute)"
                           : "no 'format' attribute");
    }
    TG_TRY(tg_h5_attr_read_str(f, "format", sbuf, sizeof sbuf, err));
    if (strcmp(sbuf, CK_FORMAT_NAME) != 0)
        TG_FAIL(err, TG_ERR_FORMAT, "not a truthgpt checkpoint (format attribute \"%s\")", sbuf);
    TG_TRY(tg_h5_attr_read_i64(f, "format_version", &h->format_version, err));
    if (h->format_version < 1 || h->format_version > TG_CKPT_FORMAT_VERSION)
        TG_FAIL(err, TG_ERR_FORMAT, "checkpoint format version %" PRId64 " (this build reads 1..%d)",
                h->format_version, TG_CKPT_FORMAT_VERSION);
    TG_TRY(tg_h5_attr_read_i64(f, "step", &s->step, err));
    TG_TRY(tg_h5_attr_read_i64(f, "tokens_seen", &s->tokens_seen, err));
    TG_TRY(ck_attr_read(f, "rng_state", H5T_NATIVE_UINT64, &s->rng_state, err));
    TG_TRY(ck_attr_read_int(f, "world_size", &s->world_size, err));
    TG_TRY(ck_attr_read_int(f, "zero_stage", &s->zero_stage, err));
    TG_TRY(tg_h5_attr_read_i64(f, "n_params", &n_params, err));
    tg_gpt2_config *c = &s->model_cfg;
    TG_TRY(ck_attr_read_int(f, "max_seq_len", &c->max_seq_len, err));
    TG_TRY(ck_attr_read_int(f, "vocab_size", &c->vocab_size, err));
    TG_TRY(ck_attr_read_int(f, "padded_vocab_size", &c->padded_vocab_size, err));
    TG_TRY(ck_attr_read_int(f, "n_layer", &c->n_layer, err));
    TG_TRY(ck_attr_read_int(f, "n_head", &c->n_head, err));
    TG_TRY(ck_attr_read_int(f, "n_embd", &c->n_embd, err));
    int has_arch = 0;
    CK_H5(has_arch = H5Aexists(f, "arch"));
    if (has_arch) {
        TG_TRY(tg_h5_attr_read_str(f, "arch", sbuf, sizeof sbuf, err));
        if (strcmp(sbuf, "llama") != 0) TG_FAIL(err, TG_ERR_FORMAT, "unknown model arch '%s'", sbuf);
        c->arch = TG_MODEL_ARCH_LLAMA;
        TG_TRY(ck_attr_read_int(f, "n_kv_head", &c->n_kv_head, err));
        TG_TRY(ck_attr_read_int(f, "ffn_dim", &c->ffn_dim, err));
        TG_TRY(ck_attr_read_int(f, "tie_embeddings", &c->tie_embeddings, err));
        TG_TRY(ck_attr_read(f, "rope_theta", H5T_NATIVE_DOUBLE, &c->rope_theta, err));
        TG_TRY(ck_attr_read(f, "norm_eps", H5T_NATIVE_DOUBLE, &c->norm_eps, err));
        int has_rope = 0;
        CK_H5(has_rope = H5Aexists(f, "rope_scaling"));
        if (has_rope) {
            TG_TRY(tg_h5_attr_read_str(f, "rope_scaling", sbuf, sizeof sbuf, err));
            if (strcmp(sbuf, "llama3") != 0) TG_FAIL(err, TG_ERR_FORMAT, "unknown rope_scaling '%s'", sbuf);
            TG_TRY(ck_attr_read(f, "rope_factor", H5T_NATIVE_DOUBLE, &c->rope_factor, err));
            TG_TRY(ck_attr_read(f, "rope_low_freq_factor", H5T_NATIVE_DOUBLE, &c->rope_low_freq_factor, err));
            TG_TRY(ck_attr_read(f, "rope_high_freq_factor", H5T_NATIVE_DOUBLE, &c->rope_high_freq_factor, err));
            TG_TRY(ck_attr_read_int(f, "rope_original_max_pos", &c->rope_original_max_pos, err));
        }
    }
    TG_TRY(ck_attr_read_int(f, "has_adam", &h->has_adam, err));
    TG_TRY(ck_attr_read_int(f, "has_master", &h->has_master, err));
    TG_TRY(tg_h5_attr_read_str(f, "tokenizer_hash", sbuf, sizeof sbuf, err));
    s->tokenizer_hash = ck_strdup(sbuf);
    TG_CHECK_ALLOC(err, s->tokenizer_hash);
    TG_TRY(tg_h5_attr_read_str(f, "tokenizer_path", sbuf, sizeof sbuf, err));
    s->tokenizer_path = ck_strdup(sbuf);
    TG_CHECK_ALLOC(err, s->tokenizer_path);
    int has_opt = 0;
    CK_H5(has_opt = H5Aexists(f, "optimizer"));
    if (has_opt) {
        TG_TRY(tg_h5_attr_read_str(f, "optimizer", sbuf, sizeof sbuf, err));
        if (strcmp(sbuf, "muon") != 0) TG_FAIL(err, TG_ERR_FORMAT, "unknown optimizer '%s'", sbuf);
        s->muon = 1;
    }
    TG_TRY(ck_attr_read(f, "meta_crc32c", H5T_NATIVE_UINT32, &h->meta_crc32c, err));
    meta = ck_meta_text(s, n_params, h->has_adam, h->has_master);
    TG_CHECK_ALLOC(err, meta);
    uint32_t meta_got = tg_crc32c(0, meta, strlen(meta));
    h->meta_ok = meta_got == h->meta_crc32c;
    if (!h->meta_ok) {
        if (!w->info)
            TG_FAIL(err, TG_ERR_FORMAT,
                    "checksum mismatch in the root attributes (stored %08x, have %08x): the file "
                    "is corrupt", h->meta_crc32c, meta_got);
        w->info->n_bad++;
    }
    h->n_params = n_params;
cleanup:
    free(meta);
    return st;
}

/* /config_ini and /loader_states into s: small, and always checked strictly. */
static tg_status ck_read_small(hid_t f, tg_ckpt_state *s, const ck_walk *w, tg_error *err) {
    tg_status st = TG_OK;
    hid_t d = -1, sp = -1;
    uint64_t *ls = NULL;
    int exists = 0;
    hsize_t ini_len = 0;
    CK_H5(d = H5Dopen2(f, "config_ini", H5P_DEFAULT));
    CK_H5(sp = H5Dget_space(d));
    CK_H5(H5Sget_simple_extent_dims(sp, &ini_len, NULL));
    ck_close(&sp);
    ck_close(&d);
    if (ini_len == 0) TG_FAIL(err, TG_ERR_FORMAT, "/config_ini is empty");
    s->config_ini = malloc((size_t)ini_len);
    TG_CHECK_ALLOC(err, s->config_ini);
    TG_TRY(ck_dset_read(f, "config_ini", "/config_ini", H5T_NATIVE_UINT8, 1, s->config_ini, 1,
                        &ini_len, w->info, 0, err));
    s->config_ini[ini_len - 1] = '\0';

    CK_H5(exists = H5Lexists(f, "loader_states", H5P_DEFAULT));
    if (!exists) goto cleanup;
    hsize_t dims[2] = {0, 2};
    CK_H5(d = H5Dopen2(f, "loader_states", H5P_DEFAULT));
    CK_H5(sp = H5Dget_space(d));
    CK_H5(H5Sget_simple_extent_dims(sp, dims, NULL));
    ck_close(&sp);
    ck_close(&d);
    if (dims[0] == 0 || dims[0] > 1u << 20)
        TG_FAIL(err, TG_ERR_FORMAT, "/loader_states has %llu rows", (unsigned long long)dims[0]);
    dims[1] = 2;
    ls = malloc((size_t)dims[0] * 2 * sizeof *ls);
    TG_CHECK_ALLOC(err, ls);
    TG_TRY(ck_dset_read(f, "loader_states", "/loader_states", H5T_NATIVE_UINT64, sizeof *ls, ls, 2,
                        dims, w->info, 0, err));
    s->n_loader_states = (int)dims[0];
    s->loader_states = calloc(dims[0], sizeof *s->loader_states);
    TG_CHECK_ALLOC(err, s->loader_states);
    for (int r = 0; r < s->n_loader_states; r++) {
        s->loader_states[r].seed = ls[2 * r];
        s->loader_states[r].position = ls[2 * r + 1];
    }
cleanup:
    ck_close(&sp);
    ck_close(&d);
    free(ls);
    return st;
}

/* The tensor groups: into s's arrays (load) or through one tensor's scratch (verify, info). */
static tg_status ck_read_arrays(hid_t f, tg_ckpt_state *s, const tg_gpt2_layout *lay,
                                const tg_ckpt_info *h, const ck_walk *w, tg_error *err) {
    tg_status st = TG_OK;
    float *scratch = NULL;
    const char *groups[4] = {"params", "adam_m", "adam_v", "master"};
    int present[4] = {1, h->has_adam, h->has_adam, h->has_master};
    float **arrays[4] = {&s->params, &s->adam_m, &s->adam_v, &s->master};
    if (!w->keep_arrays) {
        size_t mx = 1;
        for (int i = 0; i < lay->n_tensors; i++)
            if (lay->tensors[i].numel > mx) mx = lay->tensors[i].numel;
        scratch = malloc(mx * sizeof *scratch);
        TG_CHECK_ALLOC(err, scratch);
    }
    for (int k = 0; k < 4; k++) {
        if (!present[k]) continue;
        float *dst = scratch;
        if (w->keep_arrays) {
            /* owned by s from here on, so the caller frees it on error */
            dst = *arrays[k] = malloc(lay->n_params * sizeof(float));
            TG_CHECK_ALLOC(err, dst);
        }
        TG_TRY(ck_read_tensors(f, groups[k], lay, dst, w, err));
    }
cleanup:
    free(scratch);
    return st;
}

/* One walk over the file. h receives the header fields (a scratch one when w->info is NULL). */
static tg_status ck_read(const char *path, tg_ckpt_state *s, tg_ckpt_info *h, const ck_walk *w,
                         tg_error *err) {
    tg_status st = TG_OK;
    hid_t f = -1;
    tg_gpt2_layout lay = {0};
    int have_lay = 0;
    struct stat sb;
    memset(s, 0, sizeof *s);
    if (stat(path, &sb) != 0) TG_FAIL(err, TG_ERR_IO, "%s", strerror(errno));
    h->file_bytes = (uint64_t)sb.st_size;
    ck_h5_quiet();
    TG_TRY(tg_h5_zstd_register(err));
    CK_H5(f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT));
    TG_TRY(ck_read_header(f, s, h, w, err));
    TG_TRY(tg_gpt2_layout_init(&lay, &s->model_cfg, err));
    have_lay = 1;
    if ((int64_t)lay.n_params != h->n_params)
        TG_FAIL(err, TG_ERR_FORMAT, "n_params %" PRId64 " does not match the model shape (%zu)",
                h->n_params, lay.n_params);
    TG_TRY(ck_read_small(f, s, w, err));
    h->header_read = 1;
    TG_TRY(ck_read_arrays(f, s, &lay, h, w, err));
cleanup:
    ck_close(&f);
    if (have_lay) tg_gpt2_layout_free(&lay);
    if (st != TG_OK && !w->info) tg_ckpt_state_free(s);
    if (st != TG_OK) tg_error_prefix(err, "checkpoint %s: ", path);
    return st;
}

tg_status tg_ckpt_load(const char *path, tg_ckpt_state *s, tg_error *err) {
    tg_ckpt_info h;
    memset(&h, 0, sizeof h);
    ck_walk w = {.keep_arrays = 1, .info = NULL};
    return ck_read(path, s, &h, &w, err);
}

tg_status tg_ckpt_verify(const char *path, tg_error *err) {
    tg_ckpt_info h;
    memset(&h, 0, sizeof h);
    ck_walk w = {.keep_arrays = 0, .info = NULL};
    tg_status st = ck_read(path, &h.state, &h, &w, err);
    tg_ckpt_state_free(&h.state);
    return st;
}

tg_status tg_ckpt_info_read(const char *path, tg_ckpt_info *info, tg_error *err) {
    memset(info, 0, sizeof *info);
    ck_walk w = {.keep_arrays = 0, .info = info};
    return ck_read(path, &info->state, info, &w, err);
}

void tg_ckpt_info_free(tg_ckpt_info *info) {
    if (!info) return;
    tg_ckpt_state_free(&info->state);
    free(info->datasets);
    memset(info, 0, sizeof *info);
}
