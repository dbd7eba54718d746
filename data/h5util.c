/* data/h5util.c — see h5util.h. */
#include "data/h5util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "data/h5zstd.h"

/* Process-wide, because HDF5 (serial build) is one process-wide state machine. */
static pthread_mutex_t g_h5_mutex;
static pthread_once_t g_h5_once = PTHREAD_ONCE_INIT;
static int g_zstd_registered; /* guarded by g_h5_mutex */

static void h5_once_init(void) {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&g_h5_mutex, &a);
    pthread_mutexattr_destroy(&a);
    /* We report HDF5 errors ourselves (TG_H5_CHECK); HDF5 must not print them. */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void tg_h5_lock(void) {
    pthread_once(&g_h5_once, h5_once_init);
    pthread_mutex_lock(&g_h5_mutex);
    /* Debian's libhdf5 keeps the auto-print switch per thread (it is built thread-safe
     * underneath), so silence it in whichever thread takes the lock; errors reach the user
     * through tg_error instead. */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void tg_h5_unlock(void) { pthread_mutex_unlock(&g_h5_mutex); }

/* ---- error stack -> message ---- */

typedef struct {
    char buf[1024];
    size_t n;
    int count;
} h5_err_acc;

static herr_t h5_err_walk(unsigned n, const H5E_error2_t *e, void *ctx) {
    (void)n;
    h5_err_acc *a = ctx;
    if (a->count >= 4 || !e->desc || !e->desc[0]) return 0;
    int w = snprintf(a->buf + a->n, sizeof a->buf - a->n, "%s%s", a->count ? "; " : "", e->desc);
    if (w > 0 && (size_t)w < sizeof a->buf - a->n) a->n += (size_t)w;
    a->count++;
    return 0;
}

tg_status tg_h5_fail(tg_error *err, const char *file, int line, const char *expr) {
    h5_err_acc a = {{0}, 0, 0};
    tg_h5_lock();
    /* Upward: the most specific message first (e.g. "truncated file" before "unable to open"). */
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5_err_walk, &a);
    H5Eclear2(H5E_DEFAULT);
    tg_h5_unlock();
    return tg_error_set_at(err, TG_ERR_HDF5, file, line, "HDF5 call failed: %s: %s", expr,
                           a.count ? a.buf : "(no HDF5 error message)");
}

/* ---- the zstd filter: data/h5zstd.c (shared with the loadable plugin) ---- */

tg_status tg_h5_zstd_register(tg_error *err) {
    tg_status st = TG_OK;
    tg_h5_lock();
    if (!g_zstd_registered) {
        TG_H5_CHECK(err, H5Zregister(&tg_h5z_zstd_class));
        g_zstd_registered = 1;
    }
cleanup:
    tg_h5_unlock();
    return st;
}

hid_t tg_h5_fapl_create(void) {
    tg_h5_lock();
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0 && H5Pset_libver_bounds(fapl, H5F_LIBVER_EARLIEST, H5F_LIBVER_V110) < 0) {
        H5Pclose(fapl);
        fapl = -1;
    }
    tg_h5_unlock();
    return fapl;
}

/* ---- 1-D datasets ---- */

tg_status tg_h5_write_1d(hid_t loc, const char *name, hid_t mem_type, hid_t file_type,
                         const void *data, size_t n, size_t chunk_elems, int level,
                         tg_error *err) {
    tg_status st = TG_OK;
    hid_t space = -1, dcpl = -1, ds = -1;
    if (level > 0 && (st = tg_h5_zstd_register(err)) != TG_OK) return st;
    tg_h5_lock();
    hsize_t dims[1] = {(hsize_t)n};
    TG_H5_CHECK(err, space = H5Screate_simple(1, dims, NULL));
    TG_H5_CHECK(err, dcpl = H5Pcreate(H5P_DATASET_CREATE));
    TG_H5_CHECK(err, H5Pset_obj_track_times(dcpl, 0)); /* reproducible bytes */
    if (n > 0) {
        hsize_t chunk[1] = {(hsize_t)(chunk_elems ? chunk_elems : (n < (1u << 20) ? n : (1u << 20)))};
        if (chunk[0] > n) chunk[0] = n;
        TG_H5_CHECK(err, H5Pset_chunk(dcpl, 1, chunk));
        if (level > 0) {
            unsigned cd[1] = {(unsigned)level};
            TG_H5_CHECK(err, H5Pset_filter(dcpl, TG_H5_ZSTD_FILTER, H5Z_FLAG_MANDATORY, 1, cd));
        }
        /* HDF5's Fletcher-32 on each stored chunk: HDF5 verifies it on every read, so a flipped
         * byte is an error, never silently altered data. */
        TG_H5_CHECK(err, H5Pset_fletcher32(dcpl));
    }
    TG_H5_CHECK(err, ds = H5Dcreate2(loc, name, file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT));
    if (n > 0) TG_H5_CHECK(err, H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data));
cleanup:
    if (ds >= 0) H5Dclose(ds);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (space >= 0) H5Sclose(space);
    tg_h5_unlock();
    if (st != TG_OK) tg_error_prefix(err, "writing dataset '%s': ", name);
    return st;
}

tg_status tg_h5_dataset_len(hid_t loc, const char *name, size_t *n, tg_error *err) {
    tg_status st = TG_OK;
    hid_t ds = -1, space = -1;
    tg_h5_lock();
    htri_t ex = H5Lexists(loc, name, H5P_DEFAULT);
    if (ex <= 0) TG_FAIL(err, TG_ERR_FORMAT, "missing dataset '%s'", name);
    TG_H5_CHECK(err, ds = H5Dopen2(loc, name, H5P_DEFAULT));
    TG_H5_CHECK(err, space = H5Dget_space(ds));
    int rank = H5Sget_simple_extent_ndims(space);
    if (rank != 1) TG_FAIL(err, TG_ERR_FORMAT, "dataset '%s' has rank %d, expected 1", name, rank);
    hsize_t dims[1];
    TG_H5_CHECK(err, H5Sget_simple_extent_dims(space, dims, NULL));
    *n = (size_t)dims[0];
cleanup:
    if (space >= 0) H5Sclose(space);
    if (ds >= 0) H5Dclose(ds);
    tg_h5_unlock();
    return st;
}

tg_status tg_h5_read_1d(hid_t loc, const char *name, hid_t mem_type, void *data, size_t n,
                        tg_error *err) {
    tg_status st = TG_OK;
    hid_t ds = -1;
    size_t len = 0;
    if ((st = tg_h5_zstd_register(err)) != TG_OK) return st;
    tg_h5_lock();
    TG_TRY(tg_h5_dataset_len(loc, name, &len, err));
    if (len != n) TG_FAIL(err, TG_ERR_FORMAT, "dataset '%s' has %zu elements, expected %zu", name, len, n);
    TG_H5_CHECK(err, ds = H5Dopen2(loc, name, H5P_DEFAULT));
    if (n > 0) TG_H5_CHECK(err, H5Dread(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data));
cleanup:
    if (ds >= 0) H5Dclose(ds);
    tg_h5_unlock();
    return st;
}

tg_status tg_h5_write_f32(hid_t loc, const char *name, const float *data, size_t n, int level,
                          tg_error *err) {
    return tg_h5_write_1d(loc, name, H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, data, n, 0, level, err);
}

tg_status tg_h5_read_f32(hid_t loc, const char *name, float *data, size_t n, tg_error *err) {
    return tg_h5_read_1d(loc, name, H5T_NATIVE_FLOAT, data, n, err);
}

/* ---- attributes ---- */

static tg_status attr_write(hid_t obj, const char *name, hid_t file_type, hid_t mem_type,
                            const void *v, tg_error *err) {
    tg_status st = TG_OK;
    hid_t space = -1, a = -1;
    tg_h5_lock();
    TG_H5_CHECK(err, space = H5Screate(H5S_SCALAR));
    if (H5Aexists(obj, name) > 0) TG_H5_CHECK(err, H5Adelete(obj, name));
    TG_H5_CHECK(err, a = H5Acreate2(obj, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT));
    TG_H5_CHECK(err, H5Awrite(a, mem_type, v));
cleanup:
    if (a >= 0) H5Aclose(a);
    if (space >= 0) H5Sclose(space);
    tg_h5_unlock();
    if (st != TG_OK) tg_error_prefix(err, "writing attribute '%s': ", name);
    return st;
}

tg_status tg_h5_attr_write_i64(hid_t obj, const char *name, int64_t v, tg_error *err) {
    return attr_write(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v, err);
}

tg_status tg_h5_attr_write_f64(hid_t obj, const char *name, double v, tg_error *err) {
    return attr_write(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v, err);
}

tg_status tg_h5_attr_write_str(hid_t obj, const char *name, const char *v, tg_error *err) {
    tg_status st = TG_OK;
    hid_t t = -1;
    tg_h5_lock();
    TG_H5_CHECK(err, t = H5Tcopy(H5T_C_S1));
    TG_H5_CHECK(err, H5Tset_size(t, strlen(v) ? strlen(v) : 1));
    TG_H5_CHECK(err, H5Tset_strpad(t, H5T_STR_NULLTERM));
    TG_TRY(attr_write(obj, name, t, t, v, err));
cleanup:
    if (t >= 0) H5Tclose(t);
    tg_h5_unlock();
    return st;
}

static tg_status attr_open(hid_t obj, const char *name, hid_t *a, tg_error *err) {
    tg_status st = TG_OK;
    htri_t ex = H5Aexists(obj, name);
    if (ex <= 0) return tg_error_set(err, TG_ERR_FORMAT, "missing attribute '%s'", name);
    TG_H5_CHECK(err, *a = H5Aopen(obj, name, H5P_DEFAULT));
cleanup:
    return st;
}

static tg_status attr_read_num(hid_t obj, const char *name, hid_t mem_type, void *v,
                               tg_error *err) {
    tg_status st = TG_OK;
    hid_t a = -1, t = -1, sp = -1;
    tg_h5_lock();
    TG_TRY(attr_open(obj, name, &a, err));
    TG_H5_CHECK(err, t = H5Aget_type(a));
    H5T_class_t c = H5Tget_class(t);
    if (c != H5T_INTEGER && c != H5T_FLOAT)
        TG_FAIL(err, TG_ERR_FORMAT, "attribute '%s' is not a number", name);
    /* One element only (v holds one), and a sane bit layout (HDF5's conversion trusts the
     * stored precision and offset of a corrupt file's type). */
    TG_H5_CHECK(err, sp = H5Aget_space(a));
    if (H5Sget_simple_extent_npoints(sp) != 1)
        TG_FAIL(err, TG_ERR_FORMAT, "attribute '%s' is not a single number", name);
    size_t bytes = H5Tget_size(t), prec = H5Tget_precision(t);
    int off = H5Tget_offset(t);
    if (bytes == 0 || bytes > 16 || prec == 0 || off < 0 || (size_t)off + prec > 8 * bytes)
        TG_FAIL(err, TG_ERR_FORMAT, "attribute '%s' has a corrupt number type", name);
    TG_H5_CHECK(err, H5Aread(a, mem_type, v));
cleanup:
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    tg_h5_unlock();
    return st;
}

tg_status tg_h5_attr_read_i64(hid_t obj, const char *name, int64_t *v, tg_error *err) {
    return attr_read_num(obj, name, H5T_NATIVE_INT64, v, err);
}

tg_status tg_h5_attr_read_f64(hid_t obj, const char *name, double *v, tg_error *err) {
    return attr_read_num(obj, name, H5T_NATIVE_DOUBLE, v, err);
}

tg_status tg_h5_attr_read_str(hid_t obj, const char *name, char *buf, size_t cap,
                              tg_error *err) {
    tg_status st = TG_OK;
    hid_t a = -1, t = -1, mt = -1;
    char *tmp = NULL;
    tg_h5_lock();
    TG_TRY(attr_open(obj, name, &a, err));
    TG_H5_CHECK(err, t = H5Aget_type(a));
    if (H5Tget_class(t) != H5T_STRING)
        TG_FAIL(err, TG_ERR_FORMAT, "attribute '%s' is not a string", name);
    if (H5Tis_variable_str(t) > 0) {
        char *vs = NULL;
        TG_H5_CHECK(err, mt = H5Tcopy(H5T_C_S1));
        TG_H5_CHECK(err, H5Tset_size(mt, H5T_VARIABLE));
        TG_H5_CHECK(err, H5Tset_cset(mt, H5Tget_cset(t))); /* h5py writes UTF-8 strings */
        TG_H5_CHECK(err, H5Aread(a, mt, &vs));
        snprintf(buf, cap, "%s", vs ? vs : "");
        H5free_memory(vs);
    } else {
        size_t sz = H5Tget_size(t);
        tmp = calloc(sz + 1, 1);
        TG_CHECK_ALLOC(err, tmp);
        TG_H5_CHECK(err, mt = H5Tcopy(H5T_C_S1));
        TG_H5_CHECK(err, H5Tset_size(mt, sz + 1));
        TG_H5_CHECK(err, H5Tset_strpad(mt, H5T_STR_NULLTERM));
        TG_H5_CHECK(err, H5Tset_cset(mt, H5Tget_cset(t)));
        TG_H5_CHECK(err, H5Aread(a, mt, tmp));
        snprintf(buf, cap, "%s", tmp);
    }
cleanup:
    free(tmp);
    if (mt >= 0) H5Tclose(mt);
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    tg_h5_unlock();
    return st;
}
