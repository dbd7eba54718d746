/* ckpt/write.c — writing a checkpoint file, streamed: chunks compressed by a few threads are
 * written in order into a reserved .tmp, which is then fsynced and renamed (see ckpt.h). */
#define _GNU_SOURCE /* sync_file_range */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>
#include <zstd.h>

#include "ckpt/internal.h"
#include "core/crc32c.h"
#include "core/fault.h"
#include "core/fsio.h"

#define CK_ZSTD_LEVEL 3
#define CK_CHUNK_ELEMS (256 * 1024) /* ~1 MiB of fp32 per chunk: the unit compressed in parallel */

/* Length of a closed HDF5 file: the end-of-file address in its superblock (v2/v3 at offset 0:
 * signature (8), version, sizeof_offsets, sizeof_lengths, flags, base, extension, EOF, root). */
static tg_status ck_file_eoa(int fd, const char *path, uint64_t *len, tg_error *err) {
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    unsigned char p[48];
    ssize_t r = pread(fd, p, sizeof p, 0);
    if (r != (ssize_t)sizeof p)
        return tg_error_set(err, TG_ERR_IO, "read back the superblock of %s: %s", path,
                            r < 0 ? strerror(errno) : "short read");
    if (memcmp(p, sig, 8) != 0 || p[8] < 2 || p[8] > 3 || p[9] != 8)
        return tg_error_set(err, TG_ERR_INTERNAL, "%s has no v2/v3 superblock", path);
    uint64_t eof = 0;
    for (int i = 7; i >= 0; i--) eof = (eof << 8) | p[12 + 2 * 8 + i];
    if (eof < 48) return tg_error_set(err, TG_ERR_INTERNAL, "%s: EOF address %llu", path, (unsigned long long)eof);
    *len = eof;
    return TG_OK;
}

/* Test builds only (core/fault.h): TRUTHGPT_CKPT_SLOW_MS=N sleeps N ms after each dataset, so
 * that a kill -9 reliably lands in the middle of a write. */
static int ck_slow_ms(void) {
    long long ms = 0;
    if (tg_fault_get(TG_FAULT_CKPT_SLOW_MS, 0, &ms, NULL) != TG_OK) ms = 0;
    return ms > 1000000 ? 1000000 : (int)ms;
}

/* Test builds only: TRUTHGPT_CKPT_HOLD_STEP=N blocks the write of step N once half of its
 * compressed chunks are in its .tmp, so a test can kill -9 the process mid-write as soon as it
 * sees the .tmp, whatever the machine's speed or load. */
static int ck_hold_step(int64_t step) {
    long long hold = -1;
    return tg_fault_get(TG_FAULT_CKPT_HOLD_STEP, -1, &hold, NULL) == TG_OK && hold == step;
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

/* Reserves the first n bytes of fd: 0 or an errno. Where the filesystem cannot reserve (fallocate
 * unsupported: NFSv3, ...) nothing is reserved, rather than glibc's emulation of writing every
 * block (slow over a network); a full disk then shows as HDF5's write error instead. */
static int ck_reserve(int fd, uint64_t n) {
    int r;
    while ((r = fallocate(fd, 0, 0, (off_t)n)) != 0 && errno == EINTR) { /* a signal (TERM: a stop) */
    }
    if (r == 0) return 0;
    return errno == EOPNOTSUPP || errno == ENOSYS ? 0 : errno;
}

/* ---- the compression pipeline -------------------------------------------------------------
 * Every chunk of every compressed dataset, numbered in file order, is compressed by a few
 * threads into a ring of slots, and the writing thread hands them to HDF5 in that order
 * (H5Dwrite_chunk, outside the filter), so compression, HDF5 and the disk overlap and host
 * memory is the ring, not the file. Each chunk is compressed exactly as the filter would
 * (ZSTD_compress of the whole chunk at CK_ZSTD_LEVEL; the last, partial chunk padded with the
 * fill value 0). Plain threads that block, not OpenMP: an OpenMP team spins at its barriers,
 * which on a loaded machine took the CPU the compression needed. */

typedef struct { /* one compressed dataset */
    const unsigned char *data;
    size_t nbytes, chunk_bytes, n_chunks, first; /* first: number of its first chunk */
} ck_zsrc;

enum { CK_MAX_ZTHREADS = 16 };

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv_slot; /* to the workers: a slot was freed */
    pthread_cond_t cv_done; /* to the writer: a chunk is compressed (or a worker failed) */
    const ck_zsrc *src;
    size_t n_src, n_total;
    size_t next;            /* the next chunk to compress */
    size_t written;         /* chunks handed to HDF5: chunk g may use its slot once g < written + n_slots */
    size_t n_slots, slot_cap;
    unsigned char *slot_mem;
    size_t *slot_n, *slot_chunk; /* compressed size; chunk number + 1 held (0: none) */
    int failed, quit;
    pthread_t th[CK_MAX_ZTHREADS];
    size_t n_th;
    int sync_inited;
} ck_zpipe;

static void *ck_zworker(void *arg) {
    ck_zpipe *p = arg;
    ZSTD_CCtx *cx = ZSTD_createCCtx();
    unsigned char *pad = NULL;
    size_t pad_cap = 0, at = 0; /* at: the source of the last chunk (chunk numbers only grow) */
    pthread_mutex_lock(&p->mu);
    if (!cx) p->failed = 1;
    for (;;) {
        while (!p->quit && !p->failed && p->next < p->n_total && p->next >= p->written + p->n_slots)
            pthread_cond_wait(&p->cv_slot, &p->mu);
        if (p->quit || p->failed || p->next >= p->n_total) break;
        const size_t g = p->next++;
        pthread_mutex_unlock(&p->mu);
        while (at + 1 < p->n_src && p->src[at + 1].first <= g) at++;
        const ck_zsrc *s = &p->src[at];
        const size_t off = (g - s->first) * s->chunk_bytes;
        const size_t n = s->nbytes - off < s->chunk_bytes ? s->nbytes - off : s->chunk_bytes;
        const void *in = s->data + off;
        int ok = 1;
        if (n < s->chunk_bytes) {
            if (pad_cap < s->chunk_bytes) {
                free(pad);
                pad = malloc(s->chunk_bytes);
                pad_cap = pad ? s->chunk_bytes : 0;
            }
            if (pad) {
                memcpy(pad, in, n);
                memset(pad + n, 0, s->chunk_bytes - n);
            }
            ok = pad != NULL;
            in = pad;
        }
        unsigned char *dst = p->slot_mem + (g % p->n_slots) * p->slot_cap;
        size_t r = ok ? ZSTD_compressCCtx(cx, dst, p->slot_cap, in, s->chunk_bytes, CK_ZSTD_LEVEL) : 0;
        pthread_mutex_lock(&p->mu);
        if (!ok || ZSTD_isError(r)) {
            p->failed = 1;
        } else {
            p->slot_n[g % p->n_slots] = r;
            p->slot_chunk[g % p->n_slots] = g + 1;
        }
        pthread_cond_broadcast(&p->cv_done);
    }
    pthread_cond_broadcast(&p->cv_done);
    pthread_mutex_unlock(&p->mu);
    free(pad);
    ZSTD_freeCCtx(cx);
    return NULL;
}

/* Stops and joins the workers and frees the ring (p zeroed: safe to call twice). */
static void ck_zpipe_stop(ck_zpipe *p) {
    if (p->sync_inited) {
        pthread_mutex_lock(&p->mu);
        p->quit = 1;
        pthread_cond_broadcast(&p->cv_slot);
        pthread_mutex_unlock(&p->mu);
        for (size_t k = 0; k < p->n_th; k++) pthread_join(p->th[k], NULL);
        pthread_cond_destroy(&p->cv_done);
        pthread_cond_destroy(&p->cv_slot);
        pthread_mutex_destroy(&p->mu);
    }
    free(p->slot_mem);
    free(p->slot_n);
    free(p->slot_chunk);
    memset(p, 0, sizeof *p);
}

static tg_status ck_zpipe_start(ck_zpipe *p, const ck_zsrc *src, size_t n_src, tg_error *err) {
    tg_status st = TG_OK;
    memset(p, 0, sizeof *p);
    p->src = src;
    p->n_src = n_src;
    size_t max_chunk = 0;
    for (size_t i = 0; i < n_src; i++) {
        p->n_total += src[i].n_chunks;
        if (src[i].chunk_bytes > max_chunk) max_chunk = src[i].chunk_bytes;
    }
    if (p->n_total == 0) return TG_OK;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    size_t nt = ncpu < 1 ? 1 : (size_t)ncpu;
    if (nt > CK_MAX_ZTHREADS) nt = CK_MAX_ZTHREADS;
    if (nt > p->n_total) nt = p->n_total;
    p->n_slots = 4 * nt; /* enough that a worker rarely waits for the writer */
    p->slot_cap = ZSTD_compressBound(max_chunk);
    p->slot_mem = malloc(p->n_slots * p->slot_cap);
    p->slot_n = calloc(p->n_slots, sizeof *p->slot_n);
    p->slot_chunk = calloc(p->n_slots, sizeof *p->slot_chunk);
    if (!p->slot_mem || !p->slot_n || !p->slot_chunk)
        TG_FAIL(err, TG_ERR_NOMEM, "checkpoint: out of memory for %zu compression buffers", p->n_slots);
    if (pthread_mutex_init(&p->mu, NULL) != 0) TG_FAIL(err, TG_ERR_INTERNAL, "pthread_mutex_init");
    pthread_cond_init(&p->cv_slot, NULL);
    pthread_cond_init(&p->cv_done, NULL);
    p->sync_inited = 1;
    for (; p->n_th < nt; p->n_th++)
        if (pthread_create(&p->th[p->n_th], NULL, ck_zworker, p) != 0) break;
    if (p->n_th == 0) TG_FAIL(err, TG_ERR_INTERNAL, "checkpoint: cannot start a compression thread");
cleanup:
    if (st != TG_OK) ck_zpipe_stop(p);
    return st;
}

/* Waits for chunk g (the writer takes them in order) and returns its compressed bytes, valid
 * until ck_zpipe_release(p, g). */
static tg_status ck_zpipe_take(ck_zpipe *p, size_t g, const void **buf, size_t *n, tg_error *err) {
    pthread_mutex_lock(&p->mu);
    while (!p->failed && p->slot_chunk[g % p->n_slots] != g + 1) pthread_cond_wait(&p->cv_done, &p->mu);
    int failed = p->failed;
    *buf = p->slot_mem + (g % p->n_slots) * p->slot_cap;
    *n = p->slot_n[g % p->n_slots];
    pthread_mutex_unlock(&p->mu);
    if (failed) return tg_error_set(err, TG_ERR_NOMEM, "zstd compression failed (out of memory?)");
    return TG_OK;
}

static void ck_zpipe_release(ck_zpipe *p, size_t g) {
    pthread_mutex_lock(&p->mu);
    p->written = g + 1;
    pthread_cond_broadcast(&p->cv_slot);
    pthread_mutex_unlock(&p->mu);
}

/* What the writing thread carries through the datasets. */
typedef struct {
    ck_zpipe pipe;
    size_t next_chunk;  /* the next chunk (in pipe numbering) to write */
    int fd;             /* our own descriptor of the .tmp (HDF5 has its own) */
    uint64_t unsynced;  /* bytes written since writeback was last started */
    int slow_ms;        /* test hooks */
    int hold;
} ck_wctx;

/* Chunk rows of a dataset of rows x cols: ~CK_CHUNK_ELEMS elements per chunk. */
static hsize_t ck_chunk_rows(int ndim, hsize_t rows, hsize_t cols) {
    if (ndim == 1) return rows > CK_CHUNK_ELEMS ? CK_CHUNK_ELEMS : rows;
    hsize_t r = cols >= CK_CHUNK_ELEMS ? 1 : CK_CHUNK_ELEMS / cols;
    return r < rows ? r : rows;
}

/* A tensor of the layout as a compressed dataset (2-D tensors keep their shape, 1-D ones too). */
static void ck_tensor_dims(const tg_tensor_info *t, hsize_t dims[2]) {
    dims[0] = (hsize_t)t->shape[0];
    dims[1] = t->ndim == 2 ? (hsize_t)t->shape[1] : 1;
}

/* Writes one dataset of ndim (1 or 2) dims from data (native type mtype, file type ftype,
 * elem bytes each), chunked and zstd-compressed when compress (its chunks come from the
 * pipeline, in order), with its crc32c attribute. */
static tg_status ck_dset_write(hid_t parent, const char *name, hid_t ftype, hid_t mtype,
                               size_t elem, const void *data, int ndim, const hsize_t *dims,
                               int compress, ck_wctx *w, tg_error *err) {
    tg_status st = TG_OK;
    hid_t fsp = -1, dcpl = -1, d = -1;
    hsize_t rows = dims[0], cols = ndim == 2 ? dims[1] : 1;
    size_t nbytes = (size_t)(rows * cols) * elem;
    uint32_t crc = tg_crc32c(0, data, nbytes); /* outside the lock, while the workers compress */
    hsize_t chunk[2] = {ck_chunk_rows(ndim, rows, cols), cols};
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
        ck_zpipe *p = &w->pipe;
        const size_t n_chunks = (size_t)((rows + chunk[0] - 1) / chunk[0]);
        for (size_t i = 0; i < n_chunks; i++) {
            const size_t g = w->next_chunk;
            const void *buf = NULL;
            size_t n = 0;
            if (g >= p->n_total) TG_FAIL(err, TG_ERR_INTERNAL, "more chunks than planned");
            TG_TRY(ck_zpipe_take(p, g, &buf, &n, err));
            hsize_t off[2] = {(hsize_t)i * chunk[0], 0};
            CK_H5(H5Dwrite_chunk(d, H5P_DEFAULT, 0, off, n, buf));
            ck_zpipe_release(p, g);
            w->next_chunk = g + 1;
            w->unsynced += n;
#ifdef SYNC_FILE_RANGE_WRITE
            /* Start writing back what is written so far (a hint: no waiting, errors show at
             * fsync), so the final fsync waits for the tail only. */
            if (w->unsynced >= ((uint64_t)32 << 20)) {
                (void)sync_file_range(w->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
                w->unsynced = 0;
            }
#endif
            if (TG_FAULT_ENABLED && w->hold && w->next_chunk == (p->n_total + 1) / 2)
                for (;;) pause();
        }
    }
    TG_TRY(ck_attr_write(d, "crc32c", H5T_STD_U32LE, H5T_NATIVE_UINT32, &crc, err));
    if (TG_FAULT_ENABLED && w->slow_ms > 0) tg_sleep_ms(w->slow_ms);
cleanup:
    ck_close(&d);
    ck_close(&dcpl);
    ck_close(&fsp);
    if (st != TG_OK) tg_error_prefix(err, "dataset %s: ", name);
    return st;
}

/* One group of n_params-sized fp32 arrays, one dataset per tensor under its HF name. */
static tg_status ck_write_tensors(hid_t file, const char *group, const tg_gpt2_layout *lay,
                                  const float *flat, ck_wctx *w, tg_error *err) {
    tg_status st = TG_OK;
    hid_t g = -1, gcpl = -1;
    CK_H5(gcpl = H5Pcreate(H5P_GROUP_CREATE));
    CK_H5(H5Pset_obj_track_times(gcpl, 0));
    CK_H5(g = H5Gcreate2(file, group, H5P_DEFAULT, gcpl, H5P_DEFAULT));
    for (int i = 0; i < lay->n_tensors; i++) {
        const tg_tensor_info *t = &lay->tensors[i];
        hsize_t dims[2];
        ck_tensor_dims(t, dims);
        TG_TRY(ck_dset_write(g, t->name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, sizeof(float),
                             flat + t->offset, t->ndim, dims, 1, w, err));
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
        if (c->rope_factor != 0) { /* absent: plain RoPE */
            TG_TRY(tg_h5_attr_write_str(f, "rope_scaling", "llama3", err));
            TG_TRY(ck_attr_write(f, "rope_factor", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &c->rope_factor, err));
            TG_TRY(ck_attr_write(f, "rope_low_freq_factor", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE,
                                 &c->rope_low_freq_factor, err));
            TG_TRY(ck_attr_write(f, "rope_high_freq_factor", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE,
                                 &c->rope_high_freq_factor, err));
            TG_TRY(tg_h5_attr_write_i64(f, "rope_original_max_pos", c->rope_original_max_pos, err));
        }
    }
    TG_TRY(tg_h5_attr_write_i64(f, "has_adam", has_adam, err));
    TG_TRY(tg_h5_attr_write_i64(f, "has_master", has_master, err));
    TG_TRY(tg_h5_attr_write_str(f, "tokenizer_hash", s->tokenizer_hash ? s->tokenizer_hash : "", err));
    TG_TRY(tg_h5_attr_write_str(f, "tokenizer_path", s->tokenizer_path ? s->tokenizer_path : "", err));
    if (s->muon) TG_TRY(tg_h5_attr_write_str(f, "optimizer", "muon", err));
    meta = ck_meta_text(s, (int64_t)lay->n_params, has_adam, has_master);
    TG_CHECK_ALLOC(err, meta);
    uint32_t meta_crc = tg_crc32c(0, meta, strlen(meta));
    TG_TRY(ck_attr_write(f, "meta_crc32c", H5T_STD_U32LE, H5T_NATIVE_UINT32, &meta_crc, err));
cleanup:
    free(meta);
    return st;
}

/* The tensor groups in file order; NULL arrays are absent. */
static int ck_groups(const tg_ckpt_state *s, const char *names[4], const float *arrays[4]) {
    int n = 0;
    const char *nm[4] = {"params", "adam_m", "adam_v", "master"};
    const float *ar[4] = {s->params, s->adam_m, s->adam_v, s->master};
    for (int k = 0; k < 4; k++)
        if (ar[k]) {
            names[n] = nm[k];
            arrays[n++] = ar[k];
        }
    return n;
}

tg_status tg_ckpt_write_file(const char *path, const tg_ckpt_state *s, tg_error *err) {
    tg_status st = TG_OK;
    tg_gpt2_layout lay = {0};
    int have_lay = 0, created = 0;
    hid_t fapl = -1, fcpl = -1, f = -1;
    char tmp[TG_PATH_MAX], dir[TG_PATH_MAX];
    uint64_t *ls = NULL;
    ck_zsrc *src = NULL;
    ck_wctx w;
    memset(&w, 0, sizeof w);
    w.fd = -1;
    w.slow_ms = ck_slow_ms();
    const char *gname[4];
    const float *garr[4];
    const int n_groups = ck_groups(s, gname, garr);
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        TG_FAIL(err, TG_ERR_ARG, "checkpoint path too long: %s", path);
    if (!s->params) TG_FAIL(err, TG_ERR_ARG, "checkpoint state has no params");
    if ((s->adam_m == NULL) != (s->adam_v == NULL))
        TG_FAIL(err, TG_ERR_ARG, "checkpoint state: adam_m and adam_v must both be set or both NULL");
    if (s->n_loader_states < 0 || (s->n_loader_states > 0 && !s->loader_states))
        TG_FAIL(err, TG_ERR_ARG, "checkpoint state: bad loader states");
    TG_TRY(tg_gpt2_layout_init(&lay, &s->model_cfg, err));
    have_lay = 1;
    w.hold = TG_FAULT_ENABLED && ck_hold_step(s->step);
    ck_h5_quiet();
    TG_TRY(tg_h5_zstd_register(err));

    /* The plan: every compressed chunk in file order, and an upper bound of the file size. */
    const char *ini = s->config_ini ? s->config_ini : "";
    const size_t ini_n = strlen(ini) + 1;
    size_t n_src = 0, n_dsets = 2 + (size_t)n_groups * (size_t)lay.n_tensors;
    uint64_t bound = (uint64_t)ini_n + (uint64_t)s->n_loader_states * 16;
    src = calloc((size_t)n_groups * (size_t)lay.n_tensors + 1, sizeof *src);
    TG_CHECK_ALLOC(err, src);
    size_t first = 0;
    for (int k = 0; k < n_groups; k++)
        for (int i = 0; i < lay.n_tensors; i++) {
            const tg_tensor_info *t = &lay.tensors[i];
            hsize_t dims[2];
            ck_tensor_dims(t, dims);
            if (dims[0] * dims[1] == 0) continue;
            ck_zsrc *z = &src[n_src++];
            hsize_t cr = ck_chunk_rows(t->ndim, dims[0], dims[1]);
            z->data = (const unsigned char *)(garr[k] + t->offset);
            z->nbytes = (size_t)(dims[0] * dims[1]) * sizeof(float);
            z->chunk_bytes = (size_t)(cr * dims[1]) * sizeof(float);
            z->n_chunks = (size_t)((dims[0] + cr - 1) / cr);
            z->first = first;
            first += z->n_chunks;
            bound += (uint64_t)z->n_chunks * ZSTD_compressBound(z->chunk_bytes) + 96 * (uint64_t)z->n_chunks;
        }
    /* Metadata: object headers (~0.5 KB), chunk B-tree nodes (~2.6 KB per node of 32 entries
     * and more per entry: generous), groups, root attributes. */
    bound += (uint64_t)n_dsets * 8192 + ((uint64_t)64 << 10);

    /* Reserve the whole file first: a full disk (or a file size limit) is then a plain error
     * here, before HDF5 writes anything, and HDF5 never sees an I/O error (after a failed write
     * it cannot close a file cleanly). The reservation is made twice: once on a file of our
     * own, then again after H5Fcreate (which truncates it), on the same descriptor. */
    tg_fs_dirname(path, dir, sizeof dir);
    unlink(tmp); /* a leftover of a killed write */
    w.fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (w.fd < 0) TG_FAIL(err, TG_ERR_IO, "create %s: %s", tmp, strerror(errno));
    created = 1;
    int fr = ck_reserve(w.fd, bound);
    if (fr != 0) TG_FAIL(err, TG_ERR_IO, "reserve %llu bytes for %s: %s", (unsigned long long)bound, tmp, strerror(fr));

    CK_H5(fapl = H5Pcreate(H5P_FILE_ACCESS));
    CK_H5(H5Pset_fapl_sec2(fapl));
    /* 1.8+ object headers and superblock carry checksums: metadata corruption is detected too. */
    CK_H5(H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18));
    CK_H5(fcpl = H5Pcreate(H5P_FILE_CREATE));
    CK_H5(H5Pset_obj_track_times(fcpl, 0)); /* the root group's header: no timestamp either */
    CK_H5(f = H5Fcreate(tmp, H5F_ACC_TRUNC, fcpl, fapl));
    fr = ck_reserve(w.fd, bound);
    if (fr != 0) TG_FAIL(err, TG_ERR_IO, "reserve %llu bytes for %s: %s", (unsigned long long)bound, tmp, strerror(fr));
    TG_TRY(ck_zpipe_start(&w.pipe, src, n_src, err));

    TG_TRY(ck_write_root_attrs(f, s, &lay, err));
    hsize_t ini_dims[1] = {ini_n};
    TG_TRY(ck_dset_write(f, "config_ini", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, ini, 1, ini_dims, 0,
                         &w, err));
    if (s->n_loader_states > 0) {
        ls = malloc((size_t)s->n_loader_states * 2 * sizeof *ls);
        TG_CHECK_ALLOC(err, ls);
        for (int r = 0; r < s->n_loader_states; r++) {
            ls[2 * r] = s->loader_states[r].seed;
            ls[2 * r + 1] = s->loader_states[r].position;
        }
        hsize_t ls_dims[2] = {(hsize_t)s->n_loader_states, 2};
        TG_TRY(ck_dset_write(f, "loader_states", H5T_STD_U64LE, H5T_NATIVE_UINT64, sizeof *ls, ls,
                             2, ls_dims, 0, &w, err));
    }
    for (int k = 0; k < n_groups; k++) TG_TRY(ck_write_tensors(f, gname[k], &lay, garr[k], &w, err));
    if (w.next_chunk != w.pipe.n_total)
        TG_FAIL(err, TG_ERR_INTERNAL, "wrote %zu of %zu planned chunks", w.next_chunk, w.pipe.n_total);
    ck_zpipe_stop(&w.pipe);

    hid_t fclose_id = f;
    f = -1;
    CK_H5(H5Fclose(fclose_id));
    /* The reservation beyond the file's end goes; then the usual fsync, rename, dir fsync. */
    uint64_t eoa = 0;
    TG_TRY(ck_file_eoa(w.fd, tmp, &eoa, err));
    if (eoa > bound) TG_FAIL(err, TG_ERR_INTERNAL, "%s: %llu bytes, more than the %llu reserved", tmp,
                             (unsigned long long)eoa, (unsigned long long)bound);
    if (ftruncate(w.fd, (off_t)eoa) != 0) TG_FAIL(err, TG_ERR_IO, "truncate %s: %s", tmp, strerror(errno));
    if (fsync(w.fd) != 0) TG_FAIL(err, TG_ERR_IO, "fsync %s: %s", tmp, strerror(errno));
    int rc = close(w.fd);
    w.fd = -1;
    if (rc != 0) TG_FAIL(err, TG_ERR_IO, "close %s: %s", tmp, strerror(errno));
    if (rename(tmp, path) != 0) TG_FAIL(err, TG_ERR_IO, "rename %s -> %s: %s", tmp, path, strerror(errno));
    created = 0;
    TG_TRY(tg_fs_fsync_dir(dir, err));
cleanup:
    ck_zpipe_stop(&w.pipe);
    ck_close(&f);
    ck_close(&fcpl);
    ck_close(&fapl);
    if (w.fd >= 0) close(w.fd);
    if (created) unlink(tmp); /* never leave a half-written file behind (disk full, ...) */
    if (have_lay) tg_gpt2_layout_free(&lay);
    free(ls);
    free(src);
    if (st != TG_OK) {
        /* Say plainly what happened. */
        if (err && (strstr(err->msg, "No space left") || strstr(err->msg, "File too large") ||
                    strstr(err->msg, "Disk quota")))
            tg_error_prefix(err, "disk full (or file size limit reached); older checkpoints are "
                                 "untouched: ");
        tg_error_prefix(err, "writing checkpoint %s: ", path);
    }
    return st;
}
