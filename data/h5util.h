/* data/h5util.h — HDF5 plumbing shared by the data module and the checkpoint code.
 *
 * Thread safety: Debian's libhdf5 is the serial (non-thread-safe) build, and HDF5's state is
 * process-global, so every HDF5 call in this program must hold tg_h5_lock(). The lock is a
 * process-wide recursive mutex: a true global is the honest model of a library that is itself
 * one global. The helpers below take the lock themselves; callers that make several HDF5 calls
 * in a row may hold it around them too (it is recursive).
 *
 * Errors: TG_H5_CHECK turns a negative HDF5 return into TG_ERR_HDF5 with file:line, the call
 * and the innermost messages of HDF5's error stack. HDF5's automatic error printing is switched
 * off the first time the lock is taken. */
#ifndef TG_H5UTIL_H
#define TG_H5UTIL_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* The registered HDF5 filter id of Zstandard (same as hdf5plugin / HDF5's H5Z-ZSTD);
 * cd_values[0] is the compression level. */
#define TG_H5_ZSTD_FILTER 32015

void tg_h5_lock(void);
void tg_h5_unlock(void);

/* Registers the zstd filter in this process (idempotent, thread-safe). Must be called before
 * creating or reading zstd-compressed datasets; the helpers below call it. */
tg_status tg_h5_zstd_register(tg_error *err);

/* Records an HDF5 failure (file:line, the failing expression, HDF5's error stack) in err,
 * clears the stack and returns TG_ERR_HDF5. Used by TG_H5_CHECK. */
tg_status tg_h5_fail(tg_error *err, const char *file, int line, const char *expr);

/* Checked HDF5 call in a function with `tg_status st` and a `cleanup:` label; works for
 * herr_t, htri_t and hid_t results (all negative on failure), e.g.
 *     TG_H5_CHECK(err, f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT)); */
#define TG_H5_CHECK(err, call)                                                                 \
    do {                                                                                       \
        if ((call) < 0) {                                                                      \
            st = tg_h5_fail((err), __FILE__, __LINE__, #call);                                 \
            goto cleanup;                                                                      \
        }                                                                                      \
    } while (0)

/* Writes a 1-D dataset `name` under loc (a file or group id) from n elements of mem_type
 * (e.g. H5T_NATIVE_FLOAT) stored as file_type (e.g. H5T_IEEE_F32LE). Chunked (chunk_elems,
 * 0 = min(n, 1M)) and zstd-compressed at `level` (1..22; 0 = no compression). No timestamps
 * are stored, so equal inputs give equal bytes. n may be 0. */
tg_status tg_h5_write_1d(hid_t loc, const char *name, hid_t mem_type, hid_t file_type,
                         const void *data, size_t n, size_t chunk_elems, int level,
                         tg_error *err);
/* Length of 1-D dataset `name`; error if it is missing or not 1-D. */
tg_status tg_h5_dataset_len(hid_t loc, const char *name, size_t *n, tg_error *err);
/* Reads all of 1-D dataset `name` into data as mem_type; its length must be exactly n. */
tg_status tg_h5_read_1d(hid_t loc, const char *name, hid_t mem_type, void *data, size_t n,
                        tg_error *err);

/* fp32 shorthands for the checkpoint code. */
tg_status tg_h5_write_f32(hid_t loc, const char *name, const float *data, size_t n, int level,
                          tg_error *err);
tg_status tg_h5_read_f32(hid_t loc, const char *name, float *data, size_t n, tg_error *err);

/* Scalar attributes on an object (file, group or dataset). Reading converts any integer or
 * float type; a missing attribute is TG_ERR_FORMAT "missing attribute NAME". */
tg_status tg_h5_attr_write_i64(hid_t obj, const char *name, int64_t v, tg_error *err);
tg_status tg_h5_attr_write_f64(hid_t obj, const char *name, double v, tg_error *err);
tg_status tg_h5_attr_write_str(hid_t obj, const char *name, const char *v, tg_error *err);
tg_status tg_h5_attr_read_i64(hid_t obj, const char *name, int64_t *v, tg_error *err);
tg_status tg_h5_attr_read_f64(hid_t obj, const char *name, double *v, tg_error *err);
/* Fixed- or variable-length string (h5py writes the latter); truncated to cap-1 bytes. */
tg_status tg_h5_attr_read_str(hid_t obj, const char *name, char *buf, size_t cap,
                              tg_error *err);

/* A file access property list that gives reproducible files (libver earliest, no caching
 * surprises); caller closes it. Returns < 0 on failure. */
hid_t tg_h5_fapl_create(void);

#endif
