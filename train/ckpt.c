/* train/ckpt.c — checkpoint file format, asynchronous writer, verified loading (see ckpt.h). */
#include "train/ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/fault.h"
#include "core/timer.h"
#include "data/h5util.h"

#define CK_FORMAT_NAME "truthgpt-ckpt"
#define CK_ZSTD_LEVEL 3
#define CK_CHUNK_ELEMS (256 * 1024) /* ~1 MiB of fp32 per chunk: the unit compressed under the lock */
#define CK_PATH_MAX 4096

/* ------------------------------------------------------------------------------------------ */
/* CRC-32C                                                                                     */

#if !defined(__SSE4_2__)
static uint32_t ck_crc_table[256];
static pthread_once_t ck_crc_once = PTHREAD_ONCE_INIT;
static void ck_crc_table_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        ck_crc_table[i] = c;
    }
}
#endif

uint32_t tg_crc32c(uint32_t crc, const void *data, size_t n) {
    const unsigned char *p = data;
    crc = ~crc;
#if defined(__SSE4_2__)
    /* The crc32 instruction computes exactly CRC-32C; 8 bytes per instruction. */
    uint64_t c = crc;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = __builtin_ia32_crc32di(c, w);
        p += 8;
        n -= 8;
    }
    crc = (uint32_t)c;
    while (n--) crc = __builtin_ia32_crc32qi(crc, *p++);
#else
    pthread_once(&ck_crc_once, ck_crc_table_init);
    while (n--) crc = ck_crc_table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
#endif
    return ~crc;
}

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

/* ------------------------------------------------------------------------------------------ */
/* HDF5 plumbing: every call holds the shared lock (data/h5util.h).                            */

/* r = expr under the lock; on r < 0 records the error and jumps to cleanup. */
#define CK_H5(expr)                                                                            \
    do {                                                                                       \
        tg_h5_lock();                                                                          \
        int64_t r_ = (int64_t)(expr);                                                          \
        if (r_ < 0) st = tg_h5_fail(err, __FILE__, __LINE__, #expr);                           \
        tg_h5_unlock();                                                                        \
        if (r_ < 0) goto cleanup;                                                              \
    } while (0)

/* Closes any HDF5 id (ignoring errors: only used in cleanup paths) and resets it. */
static void ck_close(hid_t *id) {
    if (*id < 0) return;
    tg_h5_lock();
    switch (H5Iget_type(*id)) {
    case H5I_FILE: H5Fclose(*id); break;
    case H5I_GROUP: H5Gclose(*id); break;
    case H5I_DATASET: H5Dclose(*id); break;
    case H5I_DATASPACE: H5Sclose(*id); break;
    case H5I_DATATYPE: H5Tclose(*id); break;
    case H5I_ATTR: H5Aclose(*id); break;
    case H5I_GENPROP_LST: H5Pclose(*id); break;
    default: break;
    }
    H5Eclear2(H5E_DEFAULT);
    tg_h5_unlock();
    *id = -1;
}


/* HDF5 (Debian's build is thread-safe underneath) keeps the "print errors" switch per thread:
 * switch it off in whichever thread writes or reads, so the library never prints. */
static void ck_h5_quiet(void) {
    tg_h5_lock();
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    tg_h5_unlock();
}

/* ------------------------------------------------------------------------------------------ */
/* small helpers                                                                               */

static void ck_sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Test builds only (core/fault.h): TRUTHGPT_CKPT_SLOW_MS=N writes the file in 64 KiB pieces and sleeps N ms after each,
 * so that a kill -9 reliably lands in the middle of a write. */
static int ck_slow_ms(void) {
    long long ms = 0;
    if (tg_fault_get(TG_FAULT_CKPT_SLOW_MS, 0, &ms, NULL) != TG_OK) ms = 0;
    return ms > 1000000 ? 1000000 : (int)ms;
}

static char *ck_strdup(const char *s) {
    if (!s) s = "";
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* fsync of a directory makes a rename in it durable. */
static tg_status ck_fsync_dir(const char *path, tg_error *err) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return tg_error_set(err, TG_ERR_IO, "open %s for fsync: %s", path, strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0) return tg_error_set(err, TG_ERR_IO, "fsync %s: %s", path, strerror(e));
    return TG_OK;
}

static tg_status ck_mkdir_p(const char *dir, tg_error *err) {
    char buf[CK_PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf)
        return tg_error_set(err, TG_ERR_ARG, "checkpoint dir path too long: %s", dir);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return tg_error_set(err, TG_ERR_IO, "mkdir %s: %s", buf, strerror(errno));
            *p = c;
            if (c == '\0') break;
        }
    }
    return TG_OK;
}

static void ck_dirname(const char *path, char *dir, size_t cap) {
    snprintf(dir, cap, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash) snprintf(dir, cap, ".");
    else if (slash == dir) dir[1] = '\0';
    else *slash = '\0';
}

/* Is name exactly "step_<digits>.h5" with at least 8 digits? Sets *step. */
static int ck_parse_name(const char *name, int64_t *step) {
    if (strncmp(name, "step_", 5) != 0) return 0;
    const char *p = name + 5;
    int nd = 0;
    int64_t v = 0;
    while (*p >= '0' && *p <= '9') {
        if (v > (INT64_MAX - 9) / 10) return 0;
        v = v * 10 + (*p - '0');
        p++;
        nd++;
    }
    if (nd < 8 || strcmp(p, ".h5") != 0) return 0;
    *step = v;
    return 1;
}

typedef struct {
    int64_t step;
    char name[256];
} ck_entry;

static int ck_entry_cmp_desc(const void *a, const void *b) {
    int64_t x = ((const ck_entry *)a)->step, y = ((const ck_entry *)b)->step;
    return (x < y) - (x > y);
}

/* Lists step_*.h5 in dir, newest first. A missing dir gives 0 entries. */
static tg_status ck_list(const char *dir, ck_entry **out, int *n_out, tg_error *err) {
    tg_status st = TG_OK;
    ck_entry *e = NULL;
    int n = 0, cap = 0;
    DIR *d = opendir(dir);
    *out = NULL;
    *n_out = 0;
    if (!d) {
        if (errno == ENOENT) return TG_OK;
        return tg_error_set(err, TG_ERR_IO, "opendir %s: %s", dir, strerror(errno));
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        int64_t step;
        if (!ck_parse_name(de->d_name, &step) || strlen(de->d_name) >= sizeof e->name) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            ck_entry *ne = realloc(e, (size_t)cap * sizeof *e);
            TG_CHECK_ALLOC(err, ne);
            e = ne;
        }
        e[n].step = step;
        snprintf(e[n].name, sizeof e[n].name, "%s", de->d_name);
        n++;
    }
    if (n > 1) qsort(e, (size_t)n, sizeof *e, ck_entry_cmp_desc);
    *out = e;
    *n_out = n;
    e = NULL;
cleanup:
    closedir(d);
    free(e);
    return st;
}

/* The scalars and strings of the root attributes as one canonical text, so one CRC covers them. */
static char *ck_meta_text(const tg_ckpt_state *s, int64_t n_params, int has_adam, int has_master) {
    const tg_gpt2_config *c = &s->model_cfg;
    const char *th = s->tokenizer_hash ? s->tokenizer_hash : "";
    const char *tp = s->tokenizer_path ? s->tokenizer_path : "";
    const char *fmt = "format=%s\nversion=%d\nstep=%" PRId64 "\ntokens_seen=%" PRId64
                      "\nrng_state=%" PRIu64 "\nworld_size=%d\nzero_stage=%d\nn_params=%" PRId64
                      "\nmodel=%d,%d,%d,%d,%d,%d\nhas_adam=%d\nhas_master=%d\n"
                      "tokenizer_hash=%s\ntokenizer_path=%s\n";
#define CK_META_ARGS                                                                           \
    CK_FORMAT_NAME, TG_CKPT_FORMAT_VERSION, s->step, s->tokens_seen, s->rng_state,             \
        s->world_size, s->zero_stage, n_params, c->max_seq_len, c->vocab_size,                 \
        c->padded_vocab_size, c->n_layer, c->n_head, c->n_embd, has_adam, has_master, th, tp
    int n = snprintf(NULL, 0, fmt, CK_META_ARGS);
    char *t = malloc((size_t)n + 1);
    if (t) snprintf(t, (size_t)n + 1, fmt, CK_META_ARGS);
#undef CK_META_ARGS
    return t;
}

/* ------------------------------------------------------------------------------------------ */
/* writing                                                                                     */

/* Writes n bytes to a new file at path and fsyncs it (data on disk before the rename makes the
 * name appear). slow_ms: the test hook. */
static tg_status ck_file_write(const char *path, const unsigned char *buf, size_t n, int slow_ms,
                               tg_error *err) {
    tg_status st = TG_OK;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) TG_FAIL(err, TG_ERR_IO, "create %s: %s", path, strerror(errno));
    size_t piece = slow_ms > 0 ? (size_t)64 << 10 : (size_t)64 << 20;
    for (size_t off = 0; off < n;) {
        size_t want = n - off < piece ? n - off : piece;
        ssize_t w = write(fd, buf + off, want);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0)
            TG_FAIL(err, TG_ERR_IO, "write %s (%zu of %zu bytes written): %s", path, off, n,
                    w < 0 ? strerror(errno) : "no progress");
        off += (size_t)w;
        if (slow_ms > 0) ck_sleep_ms(slow_ms);
    }
    if (fsync(fd) != 0) TG_FAIL(err, TG_ERR_IO, "fsync %s: %s", path, strerror(errno));
    int rc = close(fd);
    fd = -1;
    if (rc != 0) TG_FAIL(err, TG_ERR_IO, "close %s: %s", path, strerror(errno));
cleanup:
    if (fd >= 0) close(fd);
    return st;
}

/* path := buf[0, n), crash-safely: <path>.tmp is written and fsynced, renamed over path, and the
 * directory fsynced, so a reader sees the old file or the whole new one. A failure removes the
 * .tmp and leaves path as it was. slow_ms: the test hook (ck_file_write). */
static tg_status ck_replace(const char *path, const void *buf, size_t n, int slow_ms, tg_error *err) {
    tg_status st = TG_OK;
    char tmp[CK_PATH_MAX], dir[CK_PATH_MAX];
    int created = 0;
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        TG_FAIL(err, TG_ERR_ARG, "path too long: %s", path);
    unlink(tmp); /* a leftover of a killed write */
    created = 1;
    TG_TRY(ck_file_write(tmp, buf, n, slow_ms, err));
    if (rename(tmp, path) != 0) TG_FAIL(err, TG_ERR_IO, "rename %s -> %s: %s", tmp, path, strerror(errno));
    created = 0;
    ck_dirname(path, dir, sizeof dir);
    TG_TRY(ck_fsync_dir(dir, err));
cleanup:
    if (created) unlink(tmp); /* never leave a half-written file behind (disk full, ...) */
    return st;
}

tg_status tg_ckpt_file_replace(const char *path, const void *buf, size_t n, tg_error *err) {
    return ck_replace(path, buf, n, 0, err);
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

/* Writes one dataset of ndim (1 or 2) dims from data (native type mtype, file type ftype,
 * elem bytes each), chunked and zstd-compressed when compress, with its crc32c attribute.
 * The data is written one chunk row-block per locked call so the loader thread is never blocked
 * for more than one chunk's compression. */
static tg_status ck_dset_write(hid_t parent, const char *name, hid_t ftype, hid_t mtype,
                               size_t elem, const void *data, int ndim, const hsize_t *dims,
                               int compress, tg_error *err) {
    tg_status st = TG_OK;
    hid_t fsp = -1, msp = -1, dcpl = -1, d = -1;
    hsize_t rows = dims[0], cols = ndim == 2 ? dims[1] : 1;
    size_t nbytes = (size_t)(rows * cols) * elem;
    uint32_t crc = tg_crc32c(0, data, nbytes); /* outside the lock */
    hsize_t chunk[2] = {rows, cols};
    if (ndim == 1 && rows > CK_CHUNK_ELEMS) chunk[0] = CK_CHUNK_ELEMS;
    if (ndim == 2) {
        hsize_t r = cols >= CK_CHUNK_ELEMS ? 1 : CK_CHUNK_ELEMS / cols;
        chunk[0] = r < rows ? r : rows;
    }
    CK_H5(fsp = H5Screate_simple(ndim, dims, NULL));
    CK_H5(dcpl = H5Pcreate(H5P_DATASET_CREATE));
    CK_H5(H5Pset_obj_track_times(dcpl, 0)); /* no timestamps: equal states give equal files */
    if (compress && rows * cols > 0) {
        const unsigned level = CK_ZSTD_LEVEL;
        CK_H5(H5Pset_chunk(dcpl, ndim, chunk));
        CK_H5(H5Pset_filter(dcpl, TG_H5_ZSTD_FILTER, H5Z_FLAG_MANDATORY, 1, &level));
    }
    CK_H5(d = H5Dcreate2(parent, name, ftype, fsp, H5P_DEFAULT, dcpl, H5P_DEFAULT));
    hsize_t step = compress ? chunk[0] : rows;
    for (hsize_t r0 = 0; r0 < rows; r0 += step) {
        hsize_t nr = rows - r0 < step ? rows - r0 : step;
        hsize_t start[2] = {r0, 0}, count[2] = {nr, cols};
        CK_H5(H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL));
        CK_H5(msp = H5Screate_simple(ndim, count, NULL));
        CK_H5(H5Dwrite(d, mtype, msp, fsp, H5P_DEFAULT,
                       (const char *)data + (size_t)(r0 * cols) * elem));
        ck_close(&msp);
    }
    TG_TRY(ck_attr_write(d, "crc32c", H5T_STD_U32LE, H5T_NATIVE_UINT32, &crc, err));
cleanup:
    ck_close(&msp);
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

tg_status tg_ckpt_path(const char *ckpt_dir, int64_t step, char *path, size_t cap, tg_error *err) {
    int n = snprintf(path, cap, "%s/step_%08" PRId64 ".h5", ckpt_dir, step);
    if (n < 0 || (size_t)n >= cap)
        return tg_error_set(err, TG_ERR_ARG, "checkpoint path too long (dir %s)", ckpt_dir);
    return TG_OK;
}

size_t tg_ckpt_n_params(const tg_gpt2_config *cfg) {
    tg_gpt2_layout lay;
    tg_error e;
    if (tg_gpt2_layout_init(&lay, cfg, &e) != TG_OK) return 0;
    size_t n = lay.n_params;
    tg_gpt2_layout_free(&lay);
    return n;
}

tg_status tg_ckpt_write_file(const char *path, const tg_ckpt_state *s, tg_error *err) {
    tg_status st = TG_OK;
    tg_gpt2_layout lay = {0};
    int have_lay = 0;
    hid_t fapl = -1, fcpl = -1, f = -1;
    char tmp[CK_PATH_MAX]; /* only the in-memory file's name: ck_replace writes the real one */
    char *meta = NULL;
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

    int has_adam = s->adam_m != NULL, has_master = s->master != NULL;
    const tg_gpt2_config *c = &s->model_cfg;
    TG_TRY(tg_h5_attr_write_str(f, "format", CK_FORMAT_NAME, err));
    TG_TRY(tg_h5_attr_write_i64(f, "format_version", TG_CKPT_FORMAT_VERSION, err));
    TG_TRY(tg_h5_attr_write_i64(f, "step", s->step, err));
    TG_TRY(tg_h5_attr_write_i64(f, "tokens_seen", s->tokens_seen, err));
    TG_TRY(ck_attr_write(f, "rng_state", H5T_STD_U64LE, H5T_NATIVE_UINT64, &s->rng_state, err));
    TG_TRY(tg_h5_attr_write_i64(f, "world_size", s->world_size, err));
    TG_TRY(tg_h5_attr_write_i64(f, "zero_stage", s->zero_stage, err));
    TG_TRY(tg_h5_attr_write_i64(f, "n_params", (int64_t)lay.n_params, err));
    TG_TRY(tg_h5_attr_write_i64(f, "max_seq_len", c->max_seq_len, err));
    TG_TRY(tg_h5_attr_write_i64(f, "vocab_size", c->vocab_size, err));
    TG_TRY(tg_h5_attr_write_i64(f, "padded_vocab_size", c->padded_vocab_size, err));
    TG_TRY(tg_h5_attr_write_i64(f, "n_layer", c->n_layer, err));
    TG_TRY(tg_h5_attr_write_i64(f, "n_head", c->n_head, err));
    TG_TRY(tg_h5_attr_write_i64(f, "n_embd", c->n_embd, err));
    TG_TRY(tg_h5_attr_write_i64(f, "has_adam", has_adam, err));
    TG_TRY(tg_h5_attr_write_i64(f, "has_master", has_master, err));
    TG_TRY(tg_h5_attr_write_str(f, "tokenizer_hash", s->tokenizer_hash, err));
    TG_TRY(tg_h5_attr_write_str(f, "tokenizer_path", s->tokenizer_path, err));
    meta = ck_meta_text(s, (int64_t)lay.n_params, has_adam, has_master);
    TG_CHECK_ALLOC(err, meta);
    uint32_t meta_crc = tg_crc32c(0, meta, strlen(meta));
    TG_TRY(ck_attr_write(f, "meta_crc32c", H5T_STD_U32LE, H5T_NATIVE_UINT32, &meta_crc, err));

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
    if (has_adam) {
        TG_TRY(ck_write_tensors(f, "adam_m", &lay, s->adam_m, err));
        TG_TRY(ck_write_tensors(f, "adam_v", &lay, s->adam_v, err));
    }
    if (has_master) TG_TRY(ck_write_tensors(f, "master", &lay, s->master, err));

    hid_t fclose_id = f;
    f = -1;
    CK_H5(H5Fclose(fclose_id)); /* flushes into memory; ck_img_free hands us the buffer */
    size_t img_n = 0;
    TG_TRY(ck_image_len(&image, &img_n, err));

    TG_TRY(ck_replace(path, image.mem, img_n, slow_ms, err));
cleanup:
    ck_close(&f);
    ck_close(&fcpl);
    ck_close(&fapl);
    if (have_lay) tg_gpt2_layout_free(&lay);
    free(meta);
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

/* <dir>/latest := name (one line), crash-safely (ck_replace). */
static tg_status ck_latest_write(const char *dir, const char *name, tg_error *err) {
    char dst[CK_PATH_MAX], line[300];
    if (snprintf(dst, sizeof dst, "%s/latest", dir) >= (int)sizeof dst)
        return tg_error_set(err, TG_ERR_ARG, "checkpoint dir path too long: %s", dir);
    const int n = snprintf(line, sizeof line, "%s\n", name);
    return ck_replace(dst, line, (size_t)n, 0, err);
}

/* Keeps newest_step (complete, and pointed to by `latest` when this runs) and the keep-1
 * checkpoints before it; deletes older ones. Files of later steps (left by another run) are
 * neither counted nor touched. */
static tg_status ck_prune(const char *dir, int keep, int64_t newest_step, const tg_log *lg,
                          tg_error *err) {
    tg_status st = TG_OK;
    ck_entry *e = NULL;
    int n = 0, kept = 0;
    if (keep <= 0) return TG_OK;
    TG_TRY(ck_list(dir, &e, &n, err));
    for (int i = 0; i < n; i++) { /* newest first */
        if (e[i].step > newest_step) continue;
        if (kept < keep) {
            kept++;
            continue;
        }
        char p[CK_PATH_MAX];
        if (snprintf(p, sizeof p, "%s/%s", dir, e[i].name) >= (int)sizeof p) continue;
        if (unlink(p) != 0 && errno != ENOENT)
            TG_FAIL(err, TG_ERR_IO, "delete old checkpoint %s: %s", p, strerror(errno));
        tg_log_debug(lg, "checkpoint: deleted %s (keep=%d)", p, keep);
    }
cleanup:
    free(e);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* the asynchronous writer                                                                     */

struct tg_ckpt_writer {
    char dir[CK_PATH_MAX];
    int keep;
    tg_log lg;
    int has_lg;
    pthread_t thread;
    int running;              /* a thread was started and not yet joined */
    tg_status result;         /* of the last joined write */
    tg_error result_err;
    double last_write_s;
    /* The writer's own copy of the state being written; its arrays point into buf[] (reused
     * across saves: params, adam_m, adam_v, master) or are NULL when absent. */
    tg_ckpt_state s;
    float *buf[4];
    size_t cap_buf[4];        /* elements allocated in buf[i] */
    tg_loader_state *buf_loader;
    int cap_loader;
};

tg_status tg_ckpt_writer_init(tg_ckpt_writer **out, const char *ckpt_dir, int keep,
                              const tg_log *lg, tg_error *err) {
    tg_status st = TG_OK;
    tg_ckpt_writer *w = NULL;
    DIR *d = NULL;
    *out = NULL;
    w = calloc(1, sizeof *w);
    TG_CHECK_ALLOC(err, w);
    if (snprintf(w->dir, sizeof w->dir, "%s", ckpt_dir) >= (int)sizeof w->dir)
        TG_FAIL(err, TG_ERR_ARG, "checkpoint dir path too long: %s", ckpt_dir);
    w->keep = keep;
    if (lg) {
        w->lg = *lg;
        w->has_lg = 1;
    }
    TG_TRY(ck_mkdir_p(ckpt_dir, err));
    TG_TRY(tg_h5_zstd_register(err));
    /* Remove leftovers of writes that were killed (they were never renamed into place). */
    d = opendir(ckpt_dir);
    if (!d) TG_FAIL(err, TG_ERR_IO, "opendir %s: %s", ckpt_dir, strerror(errno));
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if (n > 4 && strcmp(de->d_name + n - 4, ".tmp") == 0 &&
            (strncmp(de->d_name, "step_", 5) == 0 || strcmp(de->d_name, "latest.tmp") == 0)) {
            char p[CK_PATH_MAX];
            if (snprintf(p, sizeof p, "%s/%s", ckpt_dir, de->d_name) < (int)sizeof p) {
                unlink(p);
                tg_log_debug(lg, "checkpoint: removed stale %s", p);
            }
        }
    }
    *out = w;
    w = NULL;
cleanup:
    if (d) closedir(d);
    free(w);
    return st;
}

static void *ck_writer_main(void *arg) {
    tg_ckpt_writer *w = arg;
    tg_status st = TG_OK;
    tg_error *err = &w->result_err;
    char path[CK_PATH_MAX];
    const tg_log *lg = w->has_lg ? &w->lg : NULL;
    double t0 = tg_now_ms();
    TG_TRY(tg_ckpt_path(w->dir, w->s.step, path, sizeof path, err));
    TG_TRY(tg_ckpt_write_file(path, &w->s, err));
    TG_TRY(ck_latest_write(w->dir, strrchr(path, '/') + 1, err));
    TG_TRY(ck_prune(w->dir, w->keep, w->s.step, lg, err));
    w->last_write_s = (tg_now_ms() - t0) * 1e-3;
    tg_log_info(lg, "checkpoint: wrote %s in %.2f s (background)", path, w->last_write_s);
cleanup:
    w->result = st;
    return NULL;
}

static tg_status ck_writer_join(tg_ckpt_writer *w, tg_error *err) {
    if (!w->running) return TG_OK;
    pthread_join(w->thread, NULL);
    w->running = 0;
    tg_status st = w->result;
    if (st != TG_OK && err) *err = w->result_err;
    w->result = TG_OK; /* reported once */
    return st;
}

tg_status tg_ckpt_writer_wait(tg_ckpt_writer *w, tg_error *err) { return ck_writer_join(w, err); }

double tg_ckpt_writer_last_write_s(const tg_ckpt_writer *w) { return w->last_write_s; }

/* Host buffers of checkpoint size (GBs): 2 MiB aligned and marked for transparent huge pages,
 * so that first touching them (the first save's copy, which stalls training) takes 512x fewer
 * page faults. Freed with free(). */
static float *ck_alloc_floats(size_t n) {
    void *p = NULL;
    size_t bytes = n * sizeof(float), align = (size_t)2 << 20;
    if (bytes < align) return malloc(bytes ? bytes : 1);
    if (posix_memalign(&p, align, bytes) != 0) return NULL;
#ifdef MADV_HUGEPAGE
    (void)madvise(p, bytes / align * align, MADV_HUGEPAGE); /* a hint: failure is harmless */
#endif
    return p;
}

/* Copies n floats into the reusable buffer *buf (grown to n) and returns it in *dst; a NULL
 * src gives *dst = NULL (the array is absent from this checkpoint) and keeps the buffer. */
static tg_status ck_copy_f32(float **dst, float **buf, size_t *cap, const float *src, size_t n,
                             tg_error *err) {
    tg_status st = TG_OK;
    *dst = NULL;
    if (!src) return TG_OK;
    if (!*buf || *cap < n) {
        free(*buf);
        *cap = 0;
        *buf = ck_alloc_floats(n);
        TG_CHECK_ALLOC(err, *buf);
        *cap = n;
    }
    memcpy(*buf, src, n * sizeof(float));
    *dst = *buf;
cleanup:
    return st;
}

tg_status tg_ckpt_writer_reserve(tg_ckpt_writer *w, const tg_gpt2_config *cfg, int with_adam,
                                 int with_master, tg_error *err) {
    tg_status st = TG_OK;
    TG_TRY(ck_writer_join(w, err));
    size_t n = tg_ckpt_n_params(cfg);
    if (n == 0) TG_FAIL(err, TG_ERR_ARG, "checkpoint: bad model config");
    int want[4] = {1, with_adam, with_adam, with_master};
    for (int k = 0; k < 4; k++) {
        if (!want[k] || (w->buf[k] && w->cap_buf[k] >= n)) continue;
        free(w->buf[k]);
        w->cap_buf[k] = 0;
        w->buf[k] = ck_alloc_floats(n);
        TG_CHECK_ALLOC(err, w->buf[k]);
        w->cap_buf[k] = n;
        memset(w->buf[k], 0, n * sizeof(float)); /* fault the pages in now, not at a save */
    }
cleanup:
    return st;
}

tg_status tg_ckpt_writer_save(tg_ckpt_writer *w, const tg_ckpt_state *in, double *stall_ms,
                              tg_error *err) {
    tg_status st = TG_OK;
    double t0 = tg_now_ms();
    tg_ckpt_state *s = &w->s;
    TG_TRY(ck_writer_join(w, err));
    size_t n = tg_ckpt_n_params(&in->model_cfg);
    if (n == 0) TG_FAIL(err, TG_ERR_ARG, "checkpoint: bad model config");
    if (!in->params) TG_FAIL(err, TG_ERR_ARG, "checkpoint: state has no params");
    if ((in->adam_m == NULL) != (in->adam_v == NULL))
        TG_FAIL(err, TG_ERR_ARG, "checkpoint: adam_m and adam_v must both be set or both NULL");
    if (in->n_loader_states < 0 || (in->n_loader_states > 0 && !in->loader_states))
        TG_FAIL(err, TG_ERR_ARG, "checkpoint: bad loader states");

    free(s->config_ini);
    free(s->tokenizer_hash);
    free(s->tokenizer_path);
    *s = *in; /* scalars; every pointer is replaced below by the writer's own copy */
    s->config_ini = s->tokenizer_hash = s->tokenizer_path = NULL;
    s->loader_states = w->buf_loader;
    TG_TRY(ck_copy_f32(&s->params, &w->buf[0], &w->cap_buf[0], in->params, n, err));
    TG_TRY(ck_copy_f32(&s->adam_m, &w->buf[1], &w->cap_buf[1], in->adam_m, n, err));
    TG_TRY(ck_copy_f32(&s->adam_v, &w->buf[2], &w->cap_buf[2], in->adam_v, n, err));
    TG_TRY(ck_copy_f32(&s->master, &w->buf[3], &w->cap_buf[3], in->master, n, err));
    if (in->n_loader_states > w->cap_loader) {
        free(w->buf_loader);
        w->cap_loader = 0;
        w->buf_loader = s->loader_states = malloc((size_t)in->n_loader_states * sizeof *s->loader_states);
        TG_CHECK_ALLOC(err, s->loader_states);
        w->cap_loader = in->n_loader_states;
    }
    if (in->n_loader_states > 0)
        memcpy(s->loader_states, in->loader_states,
               (size_t)in->n_loader_states * sizeof *s->loader_states);
    s->config_ini = ck_strdup(in->config_ini);
    TG_CHECK_ALLOC(err, s->config_ini);
    s->tokenizer_hash = ck_strdup(in->tokenizer_hash);
    TG_CHECK_ALLOC(err, s->tokenizer_hash);
    s->tokenizer_path = ck_strdup(in->tokenizer_path);
    TG_CHECK_ALLOC(err, s->tokenizer_path);
    w->result = TG_OK;
    if (pthread_create(&w->thread, NULL, ck_writer_main, w) != 0)
        TG_FAIL(err, TG_ERR_INTERNAL, "checkpoint: cannot start the writer thread");
    w->running = 1;
cleanup:
    if (stall_ms) *stall_ms = tg_now_ms() - t0;
    return st;
}

void tg_ckpt_writer_free(tg_ckpt_writer *w) {
    if (!w) return;
    (void)ck_writer_join(w, NULL);
    for (int i = 0; i < 4; i++) free(w->buf[i]);
    free(w->buf_loader);
    free(w->s.config_ini);
    free(w->s.tokenizer_hash);
    free(w->s.tokenizer_path);
    free(w);
}

/* ------------------------------------------------------------------------------------------ */
/* reading: one walk over the file serves load, verify and describe                            */

typedef enum { CK_LOAD, CK_VERIFY, CK_DESCRIBE } ck_mode;

typedef struct {
    ck_mode mode;
    FILE *out;      /* describe */
    int n_bad;      /* describe: datasets that failed their checksum or could not be read */
    int n_ok;
} ck_reader;

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

/* Reads dataset `name` under parent (expected ndim/dims) as mtype into buf and verifies its
 * crc32c. label names it in messages ("/params/x"). In describe mode a checksum or read failure
 * is printed and counted, not returned. */
static tg_status ck_dset_read(hid_t parent, const char *name, const char *label, hid_t mtype,
                              size_t elem, void *buf, int ndim, const hsize_t *dims,
                              ck_reader *rd, tg_error *err) {
    tg_status st = TG_OK;
    hid_t d = -1, sp = -1;
    hsize_t fdims[2] = {0, 0};
    int fnd = 0, exists = 0;
    uint32_t stored = 0, got = 0;
    hsize_t storage = 0;
    tg_error rerr;
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
    if (rd->mode == CK_DESCRIBE) {
        char shape[64];
        if (ndim == 2)
            snprintf(shape, sizeof shape, "[%llu, %llu]", (unsigned long long)dims[0],
                     (unsigned long long)dims[1]);
        else
            snprintf(shape, sizeof shape, "[%llu]", (unsigned long long)dims[0]);
        const char *verdict = !read_ok ? "BAD (unreadable)" : got != stored ? "BAD (checksum)" : "ok";
        fprintf(rd->out, "  %-44s %-14s %12zu B %12llu B stored  crc32c %08x  %s\n", label, shape,
                nbytes, (unsigned long long)storage, stored, verdict);
        if (!read_ok) fprintf(rd->out, "    (%s)\n", rerr.msg);
        if (!read_ok || got != stored) rd->n_bad++;
        else rd->n_ok++;
        goto cleanup;
    }
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
                                 float *flat, ck_reader *rd, tg_error *err) {
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
        /* load: into place; verify/describe: flat is one tensor's scratch */
        float *dst = rd->mode == CK_LOAD ? flat + t->offset : flat;
        TG_TRY(ck_dset_read(g, t->name, label, H5T_NATIVE_FLOAT, sizeof(float), dst, t->ndim, dims,
                            rd, err));
    }
cleanup:
    ck_close(&g);
    return st;
}

static tg_status ck_read(const char *path, tg_ckpt_state *s, ck_reader *rd, int show_config,
                         tg_error *err) {
    tg_status st = TG_OK;
    hid_t f = -1, d = -1, sp = -1;
    tg_gpt2_layout lay = {0};
    int have_lay = 0;
    char *meta = NULL;
    float *scratch = NULL;
    uint64_t *ls = NULL;
    char sbuf[CK_PATH_MAX];
    struct stat sb;
    memset(s, 0, sizeof *s);
    if (stat(path, &sb) != 0) TG_FAIL(err, TG_ERR_IO, "%s", strerror(errno));
    ck_h5_quiet();
    TG_TRY(tg_h5_zstd_register(err));
    CK_H5(f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT));

    TG_TRY(tg_h5_attr_read_str(f, "format", sbuf, sizeof sbuf, err));
    if (strcmp(sbuf, CK_FORMAT_NAME) != 0)
        TG_FAIL(err, TG_ERR_FORMAT, "not a truthgpt checkpoint (format attribute \"%s\")", sbuf);
    int64_t version = 0, n_params = 0;
    int has_adam = 0, has_master = 0;
    TG_TRY(tg_h5_attr_read_i64(f, "format_version", &version, err));
    if (version < 1 || version > TG_CKPT_FORMAT_VERSION)
        TG_FAIL(err, TG_ERR_FORMAT, "checkpoint format version %" PRId64 " (this build reads 1..%d)",
                version, TG_CKPT_FORMAT_VERSION);
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
    TG_TRY(ck_attr_read_int(f, "has_adam", &has_adam, err));
    TG_TRY(ck_attr_read_int(f, "has_master", &has_master, err));
    TG_TRY(tg_h5_attr_read_str(f, "tokenizer_hash", sbuf, sizeof sbuf, err));
    s->tokenizer_hash = ck_strdup(sbuf);
    TG_CHECK_ALLOC(err, s->tokenizer_hash);
    TG_TRY(tg_h5_attr_read_str(f, "tokenizer_path", sbuf, sizeof sbuf, err));
    s->tokenizer_path = ck_strdup(sbuf);
    TG_CHECK_ALLOC(err, s->tokenizer_path);
    uint32_t meta_stored = 0;
    TG_TRY(ck_attr_read(f, "meta_crc32c", H5T_NATIVE_UINT32, &meta_stored, err));
    meta = ck_meta_text(s, n_params, has_adam, has_master);
    TG_CHECK_ALLOC(err, meta);
    uint32_t meta_got = tg_crc32c(0, meta, strlen(meta));
    if (meta_got != meta_stored) {
        if (rd->mode != CK_DESCRIBE)
            TG_FAIL(err, TG_ERR_FORMAT,
                    "checksum mismatch in the root attributes (stored %08x, have %08x): the file "
                    "is corrupt", meta_stored, meta_got);
        rd->n_bad++;
    }
    TG_TRY(tg_gpt2_layout_init(&lay, c, err));
    have_lay = 1;
    if ((int64_t)lay.n_params != n_params)
        TG_FAIL(err, TG_ERR_FORMAT, "n_params %" PRId64 " does not match the model shape (%zu)",
                n_params, lay.n_params);

    /* config text */
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
    /* describe prints the header first, so it reads the small datasets quietly */
    ck_reader quiet = *rd;
    if (quiet.mode == CK_DESCRIBE) quiet.mode = CK_VERIFY;
    TG_TRY(ck_dset_read(f, "config_ini", "/config_ini", H5T_NATIVE_UINT8, 1, s->config_ini, 1,
                        &ini_len, &quiet, err));
    s->config_ini[ini_len - 1] = '\0';

    CK_H5(exists = H5Lexists(f, "loader_states", H5P_DEFAULT));
    if (exists) {
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
        TG_TRY(ck_dset_read(f, "loader_states", "/loader_states", H5T_NATIVE_UINT64, sizeof *ls, ls,
                            2, dims, &quiet, err));
        s->n_loader_states = (int)dims[0];
        s->loader_states = calloc(dims[0], sizeof *s->loader_states);
        TG_CHECK_ALLOC(err, s->loader_states);
        for (int r = 0; r < s->n_loader_states; r++) {
            s->loader_states[r].seed = ls[2 * r];
            s->loader_states[r].position = ls[2 * r + 1];
        }
    }

    if (rd->mode == CK_DESCRIBE) {
        FILE *o = rd->out;
        fprintf(o, "checkpoint      %s (%.1f MB)\n", path, (double)sb.st_size / 1e6);
        fprintf(o, "format          %s v%" PRId64 "\n", CK_FORMAT_NAME, version);
        fprintf(o, "step            %" PRId64 "\n", s->step);
        fprintf(o, "tokens_seen     %" PRId64 "\n", s->tokens_seen);
        fprintf(o, "rng_state       0x%016" PRIx64 "\n", s->rng_state);
        fprintf(o, "saved by        world_size=%d zero_stage=%d\n", s->world_size, s->zero_stage);
        fprintf(o, "model           T=%d V=%d Vp=%d L=%d NH=%d C=%d  (%zu parameters)\n",
                c->max_seq_len, c->vocab_size, c->padded_vocab_size, c->n_layer, c->n_head,
                c->n_embd, lay.n_params);
        fprintf(o, "optimizer       %s%s\n", has_adam ? "AdamW m, v (gathered)" : "none",
                has_master ? " + fp32 master weights" : "");
        fprintf(o, "tokenizer       %s (hash %s)\n", s->tokenizer_path[0] ? s->tokenizer_path : "-",
                s->tokenizer_hash[0] ? s->tokenizer_hash : "-");
        for (int r = 0; r < s->n_loader_states; r++)
            fprintf(o, "loader[%d]       seed=%" PRIu64 " position=%" PRIu64 "\n", r,
                    s->loader_states[r].seed, s->loader_states[r].position);
        fprintf(o, "root attributes crc32c %08x  %s\n", meta_stored,
                meta_got == meta_stored ? "ok" : "BAD (checksum)");
        if (show_config) fprintf(o, "config:\n%s%s", s->config_ini,
                                 (ini_len > 1 && s->config_ini[ini_len - 2] != '\n') ? "\n" : "");
        fprintf(o, "datasets:\n");
        /* the small ones again, now printed */
        TG_TRY(ck_dset_read(f, "config_ini", "/config_ini", H5T_NATIVE_UINT8, 1, s->config_ini, 1,
                            &ini_len, rd, err));
        if (s->n_loader_states > 0) {
            hsize_t dims[2] = {(hsize_t)s->n_loader_states, 2};
            TG_TRY(ck_dset_read(f, "loader_states", "/loader_states", H5T_NATIVE_UINT64,
                                sizeof *ls, ls, 2, dims, rd, err));
        }
    }

    float *arrays[4] = {NULL, NULL, NULL, NULL};
    const char *groups[4] = {"params", "adam_m", "adam_v", "master"};
    int present[4] = {1, has_adam, has_adam, has_master};
    if (rd->mode != CK_LOAD) {
        size_t mx = 1;
        for (int i = 0; i < lay.n_tensors; i++)
            if (lay.tensors[i].numel > mx) mx = lay.tensors[i].numel;
        scratch = malloc(mx * sizeof *scratch);
        TG_CHECK_ALLOC(err, scratch);
    }
    for (int k = 0; k < 4; k++) {
        if (!present[k]) continue;
        if (rd->mode == CK_LOAD) {
            arrays[k] = malloc(lay.n_params * sizeof(float));
            switch (k) { /* owned by s from here on, so cleanup frees them on error */
            case 0: s->params = arrays[k]; break;
            case 1: s->adam_m = arrays[k]; break;
            case 2: s->adam_v = arrays[k]; break;
            default: s->master = arrays[k]; break;
            }
            TG_CHECK_ALLOC(err, arrays[k]);
        }
        TG_TRY(ck_read_tensors(f, groups[k], &lay, rd->mode == CK_LOAD ? arrays[k] : scratch, rd,
                               err));
    }
    if (rd->mode == CK_DESCRIBE) {
        if (rd->n_bad == 0) fprintf(rd->out, "checksums: all %d datasets ok\n", rd->n_ok);
        else fprintf(rd->out, "checksums: %d BAD, %d ok\n", rd->n_bad, rd->n_ok);
    }
cleanup:
    ck_close(&sp);
    ck_close(&d);
    ck_close(&f);
    if (have_lay) tg_gpt2_layout_free(&lay);
    free(meta);
    free(scratch);
    free(ls);
    if (st != TG_OK || rd->mode != CK_LOAD) tg_ckpt_state_free(s);
    if (st != TG_OK) tg_error_prefix(err, "checkpoint %s: ", path);
    return st;
}

void tg_ckpt_state_free(tg_ckpt_state *s) {
    if (!s) return;
    free(s->loader_states);
    free(s->config_ini);
    free(s->tokenizer_hash);
    free(s->tokenizer_path);
    free(s->params);
    free(s->adam_m);
    free(s->adam_v);
    free(s->master);
    memset(s, 0, sizeof *s);
}

tg_status tg_ckpt_load(const char *path, tg_ckpt_state *s, tg_error *err) {
    ck_reader rd = {CK_LOAD, NULL, 0, 0};
    return ck_read(path, s, &rd, 0, err);
}

tg_status tg_ckpt_verify(const char *path, tg_error *err) {
    tg_ckpt_state s;
    ck_reader rd = {CK_VERIFY, NULL, 0, 0};
    return ck_read(path, &s, &rd, 0, err);
}

tg_status tg_ckpt_describe(const char *path, FILE *out, int show_config, int *n_bad,
                           tg_error *err) {
    tg_ckpt_state s;
    ck_reader rd = {CK_DESCRIBE, out, 0, 0};
    tg_status st = ck_read(path, &s, &rd, show_config, err);
    if (n_bad) *n_bad = rd.n_bad;
    return st;
}

/* The newest checkpoint in ckpt_dir that verifies (st == NULL) or loads (st != NULL). */
static tg_status ck_latest(const char *ckpt_dir, const tg_log *lg, tg_ckpt_state *st_out,
                           char *path, size_t cap, int *found, tg_error *err) {
    tg_status st = TG_OK;
    ck_entry *e = NULL;
    int n = 0;
    *found = 0;
    TG_TRY(ck_list(ckpt_dir, &e, &n, err));
    for (int i = 0; i < n; i++) {
        char p[CK_PATH_MAX];
        tg_error verr;
        if (snprintf(p, sizeof p, "%s/%s", ckpt_dir, e[i].name) >= (int)sizeof p) continue;
        tg_status vst = st_out ? tg_ckpt_load(p, st_out, &verr) : tg_ckpt_verify(p, &verr);
        if (vst != TG_OK) {
            tg_log_warn(lg, "%s; %s", verr.msg,
                        i + 1 < n ? "falling back to an older checkpoint" : "no older checkpoint");
            continue;
        }
        if (snprintf(path, cap, "%s", p) >= (int)cap) {
            if (st_out) tg_ckpt_state_free(st_out);
            TG_FAIL(err, TG_ERR_ARG, "checkpoint path does not fit (%zu bytes): %s", cap, p);
        }
        *found = 1;
        break;
    }
cleanup:
    free(e);
    return st;
}

tg_status tg_ckpt_find_latest(const char *ckpt_dir, const tg_log *lg, char *path, size_t cap,
                              int *found, tg_error *err) {
    return ck_latest(ckpt_dir, lg, NULL, path, cap, found, err);
}

tg_status tg_ckpt_load_latest(const char *ckpt_dir, const tg_log *lg, tg_ckpt_state *st,
                              char *path, size_t cap, int *found, tg_error *err) {
    memset(st, 0, sizeof *st);
    return ck_latest(ckpt_dir, lg, st, path, cap, found, err);
}
