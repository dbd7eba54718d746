/* ckpt/write.c — writing a checkpoint file: built in memory (HDF5 core driver), then written out
 * crash-safely by core/fsio (see ckpt.h for the format). */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>
#include <zstd.h>

#include "ckpt/internal.h"
#include "core/crc32c.h"
#include "core/fault.h"
#include "core/fsio.h"

#define CK_ZSTD_LEVEL 3
#define CK_CHUNK_ELEMS (256 * 1024) /* ~1 MiB of fp32 per chunk: the unit compressed in parallel */

/* ------------------------------------------------------------------------------------------ */
/* In-memory HDF5 files: the core driver's buffer is allocated through these callbacks, and the
 * one it frees at close (a complete, cleanly closed file) is kept instead of freed.           */

typedef struct {
    unsigned char *mem; /* the closed file's bytes, owned by us after close */
    size_t cap;         /* bytes allocated for the buffer in use */
} ck_image;

static void *ck_img_malloc(size_t size, H5FD_file_image_op_t op, void *udata) {
    (void)op;
    void *p = malloc(size);
    if (p) ((ck_image *)udata)->cap = size;
    return p;
}

static void *ck_img_memcpy(void *dst, const void *src, size_t size, H5FD_file_image_op_t op,
                           void *udata) {
    (void)op;
    (void)udata;
    return memcpy(dst, src, size);
}

static void *ck_img_realloc(void *ptr, size_t size, H5FD_file_image_op_t op, void *udata) {
    (void)op;
    void *p = realloc(ptr, size);
    if (p) ((ck_image *)udata)->cap = size;
    return p;
}

static herr_t ck_img_free(void *ptr, H5FD_file_image_op_t op, void *udata) {
    ck_image *im = udata;
    if (op == H5FD_FILE_IMAGE_OP_FILE_CLOSE && !im->mem) im->mem = ptr;
    else free(ptr);
    return 0;
}

/* The fapl may be copied; every copy shares the one ck_image. */
static void *ck_img_udata_copy(void *udata) { return udata; }
static herr_t ck_img_udata_free(void *udata) {
    (void)udata;
    return 0;
}

/* Length of a closed file image: the end-of-file address in its superblock (v2/v3 at offset 0:
 * signature (8), version, sizeof_offsets, sizeof_lengths, flags, base, extension, EOF, root). */
static tg_status ck_image_len(const ck_image *im, size_t *len, tg_error *err) {
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    const unsigned char *p = im->mem;
    if (!p || im->cap < 48 || memcmp(p, sig, 8) != 0 || p[8] < 2 || p[8] > 3 || p[9] != 8)
        return tg_error_set(err, TG_ERR_INTERNAL, "in-memory HDF5 file has no v2/v3 superblock");
    uint64_t eof = 0;
    for (int i = 7; i >= 0; i--) eof = (eof << 8) | p[12 + 2 * 8 + i];
    if (eof < 48 || eof > im->cap)
        return tg_error_set(err, TG_ERR_INTERNAL, "in-memory HDF5 file: EOF %llu outside 48..%zu",
                            (unsigned long long)eof, im->cap);
    *len = (size_t)eof;
    return TG_OK;
}

/* Test builds only (core/fault.h): TRUTHGPT_CKPT_SLOW_MS=N writes the file in 64 KiB pieces and sleeps N ms after each,
 * so that a kill -9 reliably lands in the middle of a write. */
static int ck_slow_ms(void) {
    long long ms = 0;
    if (tg_fault_get(TG_FAULT_CKPT_SLOW_MS, 0, &ms, NULL) != TG_OK) ms = 0;
    return ms > 1000000 ? 1000000 : (int)ms;
}

/* Test builds only: TRUTHGPT_CKPT_HOLD_STEP=N leaves the write of step N half done (its .tmp
 * holds the first half of the image) and blocks, so a test can kill -9 the process mid-write
 * as soon as it sees the .tmp, whatever the machine's speed or load. */
static void ck_hold_if_asked(const char *path, int64_t step, const void *mem, size_t n) {
    long long hold = -1;
    if (tg_fault_get(TG_FAULT_CKPT_HOLD_STEP, -1, &hold, NULL) != TG_OK || hold != step) return;
    char tmp[TG_PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *fp = fopen(tmp, "wb");
    if (fp) {
        fwrite(mem, 1, n / 2, fp);
        fclose(fp);
    }
    for (;;) pause();
}

static tg_status ck_attr_write(hid_t obj, const char *name, hid_t ftype, hid_t mtype,
                               const void *val, tg_error *err) {
    tg_status st = TG_OK;
    hid_t sp = -1, a = -1;
    CK_H5(sp = H5Screate(H5S_SCALAR));
    CK_H5(a = H5Acreate2(obj, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT));
    CK_H5(H5Awrite(a, mtype, val));
cleanup:
    ck_close(&a);
    ck_close(&sp);
    return st;
}

/* The chunks of a compressed dataset, compressed in parallel into out[i] (malloc'd, out_n[i]
 * bytes). Each chunk is compressed exactly as the filter would (ZSTD_compress of the whole chunk
 * at CK_ZSTD_LEVEL; the last, partial chunk padded with the fill value 0), so the file is the one
 * H5Dwrite through the filter gives, byte for byte. Plain threads that block, not OpenMP: an
 * OpenMP team spins at its barriers, which on a loaded machine (a GPU run's busy host, shared
 * nodes) took the CPU the compression needed and made the write 2x slower than one thread. */
typedef struct {
    const unsigned char *data;
    size_t nbytes, chunk_bytes, n_chunks;
    unsigned char **out;
    size_t *out_n;
    atomic_size_t next;  /* the next chunk to take */
    atomic_int failed;
} ck_zjob;

static void *ck_zworker(void *arg) {
    ck_zjob *j = arg;
    ZSTD_CCtx *cx = ZSTD_createCCtx();
    unsigned char *pad = NULL;
    size_t cap = ZSTD_compressBound(j->chunk_bytes);
    if (!cx) atomic_store(&j->failed, 1);
    for (;;) {
        size_t i = atomic_fetch_add(&j->next, 1);
        if (i >= j->n_chunks || atomic_load(&j->failed)) break;
        size_t off = i * j->chunk_bytes;
        size_t n = j->nbytes - off < j->chunk_bytes ? j->nbytes - off : j->chunk_bytes;
        const void *src = j->data + off;
        if (n < j->chunk_bytes) {
            if (!pad) pad = malloc(j->chunk_bytes);
            if (!pad) {
                atomic_store(&j->failed, 1);
                break;
            }
            memset(pad, 0, j->chunk_bytes);
            memcpy(pad, src, n);
            src = pad;
        }
        j->out[i] = malloc(cap);
        size_t r = j->out[i] ? ZSTD_compressCCtx(cx, j->out[i], cap, src, j->chunk_bytes, CK_ZSTD_LEVEL) : 0;
        if (!j->out[i] || ZSTD_isError(r)) atomic_store(&j->failed, 1);
        else j->out_n[i] = r;
    }
    free(pad);
    ZSTD_freeCCtx(cx);
    return NULL;
}

static tg_status ck_chunks_compress(const unsigned char *data, size_t nbytes, size_t chunk_bytes,
                                    size_t n_chunks, unsigned char **out, size_t *out_n,
                                    tg_error *err) {
    enum { CK_MAX_ZTHREADS = 16 };
    pthread_t th[CK_MAX_ZTHREADS];
    ck_zjob j = {data, nbytes, chunk_bytes, n_chunks, out, out_n, 0, 0};
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    size_t nt = ncpu < 1 ? 1 : (size_t)ncpu;
    if (nt > CK_MAX_ZTHREADS) nt = CK_MAX_ZTHREADS;
    if (nt > n_chunks) nt = n_chunks;
    size_t started = 0;
    for (; started + 1 < nt; started++) /* the caller is the last worker */
        if (pthread_create(&th[started], NULL, ck_zworker, &j) != 0) break;
    ck_zworker(&j);
    for (size_t k = 0; k < started; k++) pthread_join(th[k], NULL);
    if (atomic_load(&j.failed))
        return tg_error_set(err, TG_ERR_NOMEM, "zstd compression of %zu chunks failed", n_chunks);
    return TG_OK;
}

/* Writes one dataset of ndim (1 or 2) dims from data (native type mtype, file type ftype,
 * elem bytes each), chunked and zstd-compressed when compress, with its crc32c attribute.
 * Compressed chunks are compressed in parallel outside the HDF5 lock and handed to HDF5 as they
 * are (H5Dwrite_chunk), so the loader thread waits at most for one chunk's copy. */
static tg_status ck_dset_write(hid_t parent, const char *name, hid_t ftype, hid_t mtype,
                               size_t elem, const void *data, int ndim, const hsize_t *dims,
                               int compress, tg_error *err) {
    tg_status st = TG_OK;
    hid_t fsp = -1, dcpl = -1, d = -1;
    hsize_t rows = dims[0], cols = ndim == 2 ? dims[1] : 1;
    size_t nbytes = (size_t)(rows * cols) * elem;
    unsigned char **cbuf = NULL;
    size_t *cn = NULL, n_chunks = 0;
    uint32_t crc = tg_crc32c(0, data, nbytes); /* outside the lock */
    hsize_t chunk[2] = {rows, cols};
    if (ndim == 1 && rows > CK_CHUNK_ELEMS) chunk[0] = CK_CHUNK_ELEMS;
    if (ndim == 2) {
        hsize_t r = cols >= CK_CHUNK_ELEMS ? 1 : CK_CHUNK_ELEMS / cols;
        chunk[0] = r < rows ? r : rows;
    }
    compress = compress && rows * cols > 0;
    CK_H5(fsp = H5Screate_simple(ndim, dims, NULL));
    CK_H5(dcpl = H5Pcreate(H5P_DATASET_CREATE));
    CK_H5(H5Pset_obj_track_times(dcpl, 0)); /* no timestamps: equal states give equal files */
    if (compress) {
        const unsigned level = CK_ZSTD_LEVEL;
        CK_H5(H5Pset_chunk(dcpl, ndim, chunk));
        CK_H5(H5Pset_filter(dcpl, TG_H5_ZSTD_FILTER, H5Z_FLAG_MANDATORY, 1, &level));
    }
    CK_H5(d = H5Dcreate2(parent, name, ftype, fsp, H5P_DEFAULT, dcpl, H5P_DEFAULT));
    if (!compress) {
        if (nbytes > 0) CK_H5(H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data));
    } else {
        n_chunks = (size_t)((rows + chunk[0] - 1) / chunk[0]);
        cbuf = calloc(n_chunks, sizeof *cbuf);
        cn = calloc(n_chunks, sizeof *cn);
        TG_CHECK_ALLOC(err, cbuf);
        TG_CHECK_ALLOC(err, cn);
        TG_TRY(ck_chunks_compress(data, nbytes, (size_t)(chunk[0] * cols) * elem, n_chunks, cbuf,
                                  cn, err));
        for (size_t i = 0; i < n_chunks; i++) {
            hsize_t off[2] = {(hsize_t)i * chunk[0], 0};
            CK_H5(H5Dwrite_chunk(d, H5P_DEFAULT, 0, off, cn[i], cbuf[i]));
            free(cbuf[i]);
            cbuf[i] = NULL;
        }
    }
    TG_TRY(ck_attr_write(d, "crc32c", H5T_STD_U32LE, H5T_NATIVE_UINT32, &crc, err));
cleanup:
    for (size_t i = 0; cbuf && i < n_chunks; i++) free(cbuf[i]);
    free(cbuf);
    free(cn);
    ck_close(&d);
    ck_close(&dcpl);
    ck_close(&fsp);
    if (st != TG_OK) tg_error_prefix(err, "dataset %s: ", name);
    return st;
}

/* One group of n_params-sized fp32 arrays, one dataset per tensor under its HF name. */
static tg_status ck_write_tensors(hid_t file, const char *group, const tg_gpt2_layout *lay,
                                  const float *flat, tg_error *err) {
    tg_status st = TG_OK;
    hid_t g = -1, gcpl = -1;
    CK_H5(gcpl = H5Pcreate(H5P_GROUP_CREATE));
    CK_H5(H5Pset_obj_track_times(gcpl, 0));
    CK_H5(g = H5Gcreate2(file, group, H5P_DEFAULT, gcpl, H5P_DEFAULT));
    for (int i = 0; i < lay->n_tensors; i++) {
        const tg_tensor_info *t = &lay->tensors[i];
        hsize_t dims[2] = {(hsize_t)t->shape[0], t->ndim == 2 ? (hsize_t)t->shape[1] : 1};
        TG_TRY(ck_dset_write(g, t->name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, sizeof(float),
                             flat + t->offset, t->ndim, dims, 1, err));
    }
cleanup:
    ck_close(&g);
    ck_close(&gcpl);
    if (st != TG_OK) tg_error_prefix(err, "/%s: ", group);
    return st;
}

/* The root attributes, and meta_crc32c over their canonical text (ck_meta_text). */
static tg_status ck_write_root_attrs(hid_t f, const tg_ckpt_state *s, const tg_gpt2_layout *lay,
                                     tg_error *err) {
    tg_status st = TG_OK;
    char *meta = NULL;
    int has_adam = s->adam_m != NULL, has_master = s->master != NULL;
    const tg_gpt2_config *c = &s->model_cfg;
    TG_TRY(tg_h5_attr_write_str(f, "format", CK_FORMAT_NAME, err));
    TG_TRY(tg_h5_attr_write_i64(f, "format_version", TG_CKPT_FORMAT_VERSION, err));
    TG_TRY(tg_h5_attr_write_i64(f, "step", s->step, err));
    TG_TRY(tg_h5_attr_write_i64(f, "tokens_seen", s->tokens_seen, err));
    TG_TRY(ck_attr_write(f, "rng_state", H5T_STD_U64LE, H5T_NATIVE_UINT64, &s->rng_state, err));
    TG_TRY(tg_h5_attr_write_i64(f, "world_size", s->world_size, err));
    TG_TRY(tg_h5_attr_write_i64(f, "zero_stage", s->zero_stage, err));
    TG_TRY(tg_h5_attr_write_i64(f, "n_params", (int64_t)lay->n_params, err));
    TG_TRY(tg_h5_attr_write_i64(f, "max_seq_len", c->max_seq_len, err));
    TG_TRY(tg_h5_attr_write_i64(f, "vocab_size", c->vocab_size, err));
    TG_TRY(tg_h5_attr_write_i64(f, "padded_vocab_size", c->padded_vocab_size, err));
    TG_TRY(tg_h5_attr_write_i64(f, "n_layer", c->n_layer, err));
    TG_TRY(tg_h5_attr_write_i64(f, "n_head", c->n_head, err));
    TG_TRY(tg_h5_attr_write_i64(f, "n_embd", c->n_embd, err));
    if (c->arch == TG_MODEL_ARCH_LLAMA) { /* absent: gpt2 (files from before model.arch) */
        TG_TRY(tg_h5_attr_write_str(f, "arch", "llama", err));
        TG_TRY(tg_h5_attr_write_i64(f, "n_kv_head", c->n_kv_head, err));
        TG_TRY(tg_h5_attr_write_i64(f, "ffn_dim", c->ffn_dim, err));
        TG_TRY(tg_h5_attr_write_i64(f, "tie_embeddings", c->tie_embeddings, err));
        TG_TRY(ck_attr_write(f, "rope_theta", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &c->rope_theta, err));
        TG_TRY(ck_attr_write(f, "norm_eps", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &c->norm_eps, err));
    }
    TG_TRY(tg_h5_attr_write_i64(f, "has_adam", has_adam, err));
    TG_TRY(tg_h5_attr_write_i64(f, "has_master", has_master, err));
    TG_TRY(tg_h5_attr_write_str(f, "tokenizer_hash", s->tokenizer_hash, err));
    TG_TRY(tg_h5_attr_write_str(f, "tokenizer_path", s->tokenizer_path, err));
    if (s->muon) TG_TRY(tg_h5_attr_write_str(f, "optimizer", "muon", err));
    meta = ck_meta_text(s, (int64_t)lay->n_params, has_adam, has_master);
    TG_CHECK_ALLOC(err, meta);
    uint32_t meta_crc = tg_crc32c(0, meta, strlen(meta));
    TG_TRY(ck_attr_write(f, "meta_crc32c", H5T_STD_U32LE, H5T_NATIVE_UINT32, &meta_crc, err));
cleanup:
    free(meta);
    return st;
}

tg_status tg_ckpt_write_file(const char *path, const tg_ckpt_state *s, tg_error *err) {
    tg_status st = TG_OK;
    tg_gpt2_layout lay = {0};
    int have_lay = 0;
    hid_t fapl = -1, fcpl = -1, f = -1;
    char tmp[TG_PATH_MAX]; /* only the in-memory file's name: tg_fs_file_replace writes the real one */
    uint64_t *ls = NULL;
    ck_image image = {NULL, 0};
    int slow_ms = ck_slow_ms();
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        TG_FAIL(err, TG_ERR_ARG, "checkpoint path too long: %s", path);
    if (!s->params) TG_FAIL(err, TG_ERR_ARG, "checkpoint state has no params");
    if ((s->adam_m == NULL) != (s->adam_v == NULL))
        TG_FAIL(err, TG_ERR_ARG, "checkpoint state: adam_m and adam_v must both be set or both NULL");
    if (s->n_loader_states < 0 || (s->n_loader_states > 0 && !s->loader_states))
        TG_FAIL(err, TG_ERR_ARG, "checkpoint state: bad loader states");
    TG_TRY(tg_gpt2_layout_init(&lay, &s->model_cfg, err));
    have_lay = 1;
    ck_h5_quiet();
    TG_TRY(tg_h5_zstd_register(err));

    /* The file is built in memory (core driver, no backing store) and written out by us: HDF5
     * never sees an I/O error (after a failed write it cannot close the file cleanly and may
     * crash at exit), a full disk is a plain ENOSPC from write(), and the slow disk write runs
     * without the HDF5 lock. Costs one file image (~ the checkpoint's size) of host memory. */
    H5FD_file_image_callbacks_t cb = {ck_img_malloc, ck_img_memcpy, ck_img_realloc, ck_img_free,
                                      ck_img_udata_copy, ck_img_udata_free, &image};
    CK_H5(fapl = H5Pcreate(H5P_FILE_ACCESS));
    CK_H5(H5Pset_fapl_core(fapl, (size_t)16 << 20, 0));
    CK_H5(H5Pset_file_image_callbacks(fapl, &cb));
    /* 1.8+ object headers and superblock carry checksums: metadata corruption is detected too. */
    CK_H5(H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18));
    CK_H5(fcpl = H5Pcreate(H5P_FILE_CREATE));
    CK_H5(H5Pset_obj_track_times(fcpl, 0)); /* the root group's header: no timestamp either */
    CK_H5(f = H5Fcreate(tmp, H5F_ACC_TRUNC, fcpl, fapl));

    TG_TRY(ck_write_root_attrs(f, s, &lay, err));

    const char *ini = s->config_ini ? s->config_ini : "";
    hsize_t ini_dims[1] = {strlen(ini) + 1};
    TG_TRY(ck_dset_write(f, "config_ini", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, ini, 1, ini_dims, 0,
                         err));
    if (s->n_loader_states > 0) {
        ls = malloc((size_t)s->n_loader_states * 2 * sizeof *ls);
        TG_CHECK_ALLOC(err, ls);
        for (int r = 0; r < s->n_loader_states; r++) {
            ls[2 * r] = s->loader_states[r].seed;
            ls[2 * r + 1] = s->loader_states[r].position;
        }
        hsize_t ls_dims[2] = {(hsize_t)s->n_loader_states, 2};
        TG_TRY(ck_dset_write(f, "loader_states", H5T_STD_U64LE, H5T_NATIVE_UINT64, sizeof *ls, ls,
                             2, ls_dims, 0, err));
    }
    TG_TRY(ck_write_tensors(f, "params", &lay, s->params, err));
    if (s->adam_m) {
        TG_TRY(ck_write_tensors(f, "adam_m", &lay, s->adam_m, err));
        TG_TRY(ck_write_tensors(f, "adam_v", &lay, s->adam_v, err));
    }
    if (s->master) TG_TRY(ck_write_tensors(f, "master", &lay, s->master, err));

    hid_t fclose_id = f;
    f = -1;
    CK_H5(H5Fclose(fclose_id)); /* flushes into memory; ck_img_free hands us the buffer */
    size_t img_n = 0;
    TG_TRY(ck_image_len(&image, &img_n, err));

    if (TG_FAULT_ENABLED) ck_hold_if_asked(path, s->step, image.mem, img_n);
    TG_TRY(tg_fs_file_replace(path, image.mem, img_n, slow_ms, err));
cleanup:
    ck_close(&f);
    ck_close(&fcpl);
    ck_close(&fapl);
    if (have_lay) tg_gpt2_layout_free(&lay);
    free(ls);
    free(image.mem);
    if (st != TG_OK) {
        /* HDF5 buries errno deep in its message: say plainly what happened. */
        if (err && (strstr(err->msg, "No space left") || strstr(err->msg, "File too large") ||
                    strstr(err->msg, "Disk quota")))
            tg_error_prefix(err, "disk full (or file size limit reached); older checkpoints are "
                                 "untouched: ");
        tg_error_prefix(err, "writing checkpoint %s: ", path);
    }
    return st;
}
