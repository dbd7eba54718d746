/* data/shard.c — see shard.h. */
#include "data/shard.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/h5util.h"

tg_status tg_shard_write(const char *path, const tg_shard_info *info, const char *split,
                         int shard_index, const void *tokens, const uint64_t *doc_offsets,
                         uint64_t chunk_tokens, int zstd_level, tg_error *err) {
    tg_status st = TG_OK;
    hid_t fapl = -1, f = -1;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int db = tg_shard_dtype_bytes(info->vocab_size);
    tg_h5_lock();
    TG_H5_CHECK(err, fapl = tg_h5_fapl_create());
    TG_H5_CHECK(err, f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl));
    TG_TRY(tg_h5_write_1d(f, "tokens", db == 2 ? H5T_NATIVE_UINT16 : H5T_NATIVE_UINT32,
                          db == 2 ? H5T_STD_U16LE : H5T_STD_U32LE, tokens, info->n_tokens,
                          chunk_tokens, zstd_level, err));
    TG_TRY(tg_h5_write_1d(f, "doc_offsets", H5T_NATIVE_UINT64, H5T_STD_U64LE, doc_offsets,
                          info->n_docs, 0, zstd_level, err));
    TG_TRY(tg_h5_attr_write_i64(f, "format_version", TG_SHARD_FORMAT_VERSION, err));
    TG_TRY(tg_h5_attr_write_i64(f, "vocab_size", info->vocab_size, err));
    TG_TRY(tg_h5_attr_write_i64(f, "eot_id", info->eot_id, err));
    TG_TRY(tg_h5_attr_write_str(f, "tokenizer_name", info->tokenizer_name, err));
    TG_TRY(tg_h5_attr_write_str(f, "tokenizer_hash", info->tokenizer_hash, err));
    TG_TRY(tg_h5_attr_write_i64(f, "n_tokens", (int64_t)info->n_tokens, err));
    TG_TRY(tg_h5_attr_write_i64(f, "n_docs", (int64_t)info->n_docs, err));
    TG_TRY(tg_h5_attr_write_str(f, "split", split, err));
    TG_TRY(tg_h5_attr_write_i64(f, "shard_index", shard_index, err));
    hid_t fc = f;
    f = -1;
    TG_H5_CHECK(err, H5Fclose(fc));
    if (rename(tmp, path) != 0)
        TG_FAIL(err, TG_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
cleanup:
    if (f >= 0) H5Fclose(f);
    if (fapl >= 0) H5Pclose(fapl);
    tg_h5_unlock();
    if (st != TG_OK) {
        remove(tmp);
        tg_error_prefix(err, "%s: ", path);
    }
    return st;
}

/* Checks the tokens dataset's type against the vocabulary: unsigned, 2 or 4 bytes as required. */
static tg_status check_dtype(hid_t ds, int64_t vocab_size, int *dtype_bytes, tg_error *err) {
    tg_status st = TG_OK;
    hid_t t = -1;
    TG_H5_CHECK(err, t = H5Dget_type(ds));
    int want = tg_shard_dtype_bytes(vocab_size);
    size_t sz = H5Tget_size(t);
    H5T_class_t cls = H5Tget_class(t);
    int is_unsigned = cls == H5T_INTEGER && H5Tget_sign(t) == H5T_SGN_NONE;
    if (!is_unsigned || (int)sz != want) {
        const char *kind = cls == H5T_INTEGER ? (is_unsigned ? "uint" : "int")
                           : cls == H5T_FLOAT ? "float" : "non-numeric";
        TG_FAIL(err, TG_ERR_FORMAT, "dataset 'tokens' has dtype %s%zu; expected uint%d for vocab_size %lld",
                kind, sz * 8, want * 8, (long long)vocab_size);
    }
    *dtype_bytes = want;
cleanup:
    if (t >= 0) H5Tclose(t);
    return st;
}

tg_status tg_shard_read_info(const char *path, tg_shard_info *info, tg_error *err) {
    tg_status st = TG_OK;
    hid_t f = -1, ds = -1, dcpl = -1;
    memset(info, 0, sizeof *info);
    FILE *probe = fopen(path, "rb");
    if (!probe) return tg_error_set(err, TG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    fclose(probe);
    if ((st = tg_h5_zstd_register(err)) != TG_OK) return st;
    tg_h5_lock();
    htri_t is = H5Fis_hdf5(path);
    if (is <= 0) {
        H5Eclear2(H5E_DEFAULT);
        TG_FAIL(err, TG_ERR_FORMAT, "not an HDF5 file");
    }
    TG_H5_CHECK(err, f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT));
    TG_TRY(tg_h5_attr_read_i64(f, "format_version", &info->format_version, err));
    if (info->format_version == 1)
        TG_FAIL(err, TG_ERR_FORMAT, "format_version 1 shards have no checksums; re-run `truthgpt prepare` "
                "to write format_version %d", TG_SHARD_FORMAT_VERSION);
    if (info->format_version != TG_SHARD_FORMAT_VERSION)
        TG_FAIL(err, TG_ERR_FORMAT, "unsupported format_version %lld (this build reads %d)",
                (long long)info->format_version, TG_SHARD_FORMAT_VERSION);
    TG_TRY(tg_h5_attr_read_i64(f, "vocab_size", &info->vocab_size, err));
    TG_TRY(tg_h5_attr_read_i64(f, "eot_id", &info->eot_id, err));
    if (info->vocab_size < 1 || info->vocab_size > INT32_MAX || info->eot_id < 0 ||
        info->eot_id >= info->vocab_size)
        TG_FAIL(err, TG_ERR_FORMAT, "bad vocab_size %lld / eot_id %lld", (long long)info->vocab_size,
                (long long)info->eot_id);
    TG_TRY(tg_h5_attr_read_str(f, "tokenizer_name", info->tokenizer_name, sizeof info->tokenizer_name, err));
    TG_TRY(tg_h5_attr_read_str(f, "tokenizer_hash", info->tokenizer_hash, sizeof info->tokenizer_hash, err));
    int64_t n_tok_attr = 0, n_docs = 0;
    TG_TRY(tg_h5_attr_read_i64(f, "n_tokens", &n_tok_attr, err));
    TG_TRY(tg_h5_attr_read_i64(f, "n_docs", &n_docs, err));
    size_t n = 0, nd = 0;
    TG_TRY(tg_h5_dataset_len(f, "tokens", &n, err));
    TG_TRY(tg_h5_dataset_len(f, "doc_offsets", &nd, err));
    if (n == 0) TG_FAIL(err, TG_ERR_FORMAT, "dataset 'tokens' is empty");
    if ((int64_t)n != n_tok_attr)
        TG_FAIL(err, TG_ERR_FORMAT, "attribute n_tokens = %lld but dataset 'tokens' has %zu",
                (long long)n_tok_attr, n);
    if ((int64_t)nd != n_docs)
        TG_FAIL(err, TG_ERR_FORMAT, "attribute n_docs = %lld but dataset 'doc_offsets' has %zu",
                (long long)n_docs, nd);
    TG_H5_CHECK(err, ds = H5Dopen2(f, "tokens", H5P_DEFAULT));
    TG_TRY(check_dtype(ds, info->vocab_size, &info->dtype_bytes, err));
    TG_H5_CHECK(err, dcpl = H5Dget_create_plist(ds));
    hsize_t chunk[1] = {0};
    if (H5Pget_layout(dcpl) == H5D_CHUNKED) TG_H5_CHECK(err, H5Pget_chunk(dcpl, 1, chunk));
    info->chunk = chunk[0] ? chunk[0] : n;
    /* Every version-2 shard stores its tokens with a checksum; one without was not written here. */
    {
        unsigned flags = 0;
        size_t ncd = 0;
        if (H5Pget_filter_by_id2(dcpl, H5Z_FILTER_FLETCHER32, &flags, &ncd, NULL, 0, NULL, NULL) < 0) {
            H5Eclear2(H5E_DEFAULT);
            TG_FAIL(err, TG_ERR_FORMAT, "dataset 'tokens' has no Fletcher-32 checksum filter");
        }
    }
    info->n_tokens = n;
    info->n_docs = (uint64_t)n_docs;
cleanup:
    if (dcpl >= 0) H5Pclose(dcpl);
    if (ds >= 0) H5Dclose(ds);
    if (f >= 0) H5Fclose(f);
    tg_h5_unlock();
    if (st != TG_OK) tg_error_prefix(err, "%s: ", path);
    return st;
}

void tg_shard_handle_init(tg_shard_handle *h) {
    memset(h, 0, sizeof *h);
    h->file = h->dset = -1;
}

void tg_shard_handle_close(tg_shard_handle *h) {
    if (!h->open) return;
    tg_h5_lock();
    if (h->dset >= 0) H5Dclose(h->dset);
    if (h->file >= 0) H5Fclose(h->file);
    tg_h5_unlock();
    h->file = h->dset = -1;
    h->open = 0;
    h->path[0] = 0;
}

tg_status tg_shard_read_tokens(tg_shard_handle *h, const char *path, const tg_shard_info *info,
                               uint64_t start, uint64_t n, void *out, tg_error *err) {
    tg_status st = TG_OK;
    hid_t fs = -1, ms = -1;
    if (start + n > info->n_tokens)
        return tg_error_set(err, TG_ERR_INTERNAL, "%s: read [%llu, %llu) past the end (%llu tokens)", path,
                            (unsigned long long)start, (unsigned long long)(start + n),
                            (unsigned long long)info->n_tokens);
    tg_h5_lock();
    if (h->open && strcmp(h->path, path) != 0) tg_shard_handle_close(h);
    if (!h->open) {
        hid_t dapl = -1;
        snprintf(h->path, sizeof h->path, "%s", path);
        h->open = 1;
        TG_H5_CHECK(err, h->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT));
        /* A chunk cache of a few chunks: a block read straddles at most two chunks at its ends. */
        TG_H5_CHECK(err, dapl = H5Pcreate(H5P_DATASET_ACCESS));
        size_t cache = (size_t)info->chunk * (size_t)info->dtype_bytes * 4;
        if (H5Pset_chunk_cache(dapl, 521, cache, 1.0) < 0) {
            H5Pclose(dapl);
            TG_H5_CHECK(err, -1);
        }
        h->dset = H5Dopen2(h->file, "tokens", dapl);
        H5Pclose(dapl);
        TG_H5_CHECK(err, h->dset);
    }
    hsize_t off[1] = {start}, cnt[1] = {n};
    TG_H5_CHECK(err, fs = H5Dget_space(h->dset));
    TG_H5_CHECK(err, H5Sselect_hyperslab(fs, H5S_SELECT_SET, off, NULL, cnt, NULL));
    TG_H5_CHECK(err, ms = H5Screate_simple(1, cnt, NULL));
    TG_H5_CHECK(err, H5Dread(h->dset, info->dtype_bytes == 2 ? H5T_NATIVE_UINT16 : H5T_NATIVE_UINT32,
                             ms, fs, H5P_DEFAULT, out));
cleanup:
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    tg_h5_unlock();
    if (st != TG_OK) {
        tg_shard_handle_close(h);
        tg_error_prefix(err, "%s: reading tokens [%llu, %llu): ", path, (unsigned long long)start,
                        (unsigned long long)(start + n));
        return st;
    }
    /* Range check outside the lock: max first (fixed 64-wide blocks vectorise even at -O2),
     * locate the offender only on failure. */
    uint32_t vmax = 0;
    uint64_t i = 0;
    if (info->dtype_bytes == 2) {
        const uint16_t *p = out;
        uint16_t m = 0;
        for (; i + 64 <= n; i += 64) {
            uint16_t bm = 0;
            for (int k = 0; k < 64; k++) bm = p[i + k] > bm ? p[i + k] : bm;
            m = bm > m ? bm : m;
        }
        for (; i < n; i++) m = p[i] > m ? p[i] : m;
        vmax = m;
    } else {
        const uint32_t *p = out;
        uint32_t m = 0;
        for (; i + 64 <= n; i += 64) {
            uint32_t bm = 0;
            for (int k = 0; k < 64; k++) bm = p[i + k] > bm ? p[i + k] : bm;
            m = bm > m ? bm : m;
        }
        for (; i < n; i++) m = p[i] > m ? p[i] : m;
        vmax = m;
    }
    if ((int64_t)vmax >= info->vocab_size) {
        for (uint64_t j = 0; j < n; j++) {
            uint32_t v = info->dtype_bytes == 2 ? ((const uint16_t *)out)[j] : ((const uint32_t *)out)[j];
            if ((int64_t)v >= info->vocab_size)
                return tg_error_set(err, TG_ERR_DATA, "%s: token id %u at position %llu >= vocab_size %lld",
                                    path, v, (unsigned long long)(start + j), (long long)info->vocab_size);
        }
    }
    return TG_OK;
}

tg_status tg_shard_verify(const char *path, tg_shard_info *info, tg_error *err) {
    tg_status st = TG_OK;
    tg_shard_handle h;
    tg_shard_handle_init(&h);
    void *buf = NULL;
    uint64_t *docs = NULL;
    hid_t f = -1;
    int locked = 0;
    TG_TRY(tg_shard_read_info(path, info, err));
    /* Every chunk of tokens, in chunk-aligned blocks: HDF5 checks each chunk's Fletcher-32. */
    uint64_t block = info->chunk ? info->chunk : 1;
    if (!(buf = malloc((size_t)block * (size_t)info->dtype_bytes)))
        TG_FAIL(err, TG_ERR_NOMEM, "%s: out of memory", path);
    for (uint64_t s = 0; s < info->n_tokens; s += block) {
        uint64_t n = info->n_tokens - s < block ? info->n_tokens - s : block;
        TG_TRY(tg_shard_read_tokens(&h, path, info, s, n, buf, err));
    }
    /* doc_offsets: strictly increasing, inside tokens (their chunks are checksummed too). */
    if (info->n_docs > 0) {
        if (!(docs = malloc((size_t)info->n_docs * sizeof *docs)))
            TG_FAIL(err, TG_ERR_NOMEM, "%s: out of memory", path);
        tg_h5_lock();
        locked = 1;
        TG_H5_CHECK(err, f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT));
        TG_TRY(tg_h5_read_1d(f, "doc_offsets", H5T_NATIVE_UINT64, docs, (size_t)info->n_docs, err));
        H5Fclose(f);
        f = -1;
        tg_h5_unlock();
        locked = 0;
        for (uint64_t i = 0; i < info->n_docs; i++)
            if (docs[i] >= info->n_tokens || (i > 0 && docs[i] <= docs[i - 1]))
                TG_FAIL(err, TG_ERR_FORMAT, "%s: doc_offsets[%llu] = %llu is out of order or past %llu tokens",
                        path, (unsigned long long)i, (unsigned long long)docs[i],
                        (unsigned long long)info->n_tokens);
    }
cleanup:
    if (f >= 0) H5Fclose(f);
    if (locked) tg_h5_unlock();
    if (st != TG_OK && strncmp(err->msg, path, strlen(path)) != 0) tg_error_prefix(err, "%s: ", path);
    tg_shard_handle_close(&h);
    free(buf);
    free(docs);
    return st;
}
