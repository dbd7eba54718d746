/* ckpt/internal.h — shared by the files of ckpt/ only: HDF5 plumbing under the shared lock,
 * the canonical metadata text one CRC covers, and the directory listing. */
#ifndef TG_CKPT_INTERNAL_H
#define TG_CKPT_INTERNAL_H

#include <hdf5.h>

#include "ckpt/ckpt.h"
#include "data/h5util.h"

#define CK_FORMAT_NAME TG_CKPT_FORMAT_NAME

/* r = expr under the lock (data/h5util.h); on r < 0 records the error and jumps to cleanup. */
#define CK_H5(expr)                                                                            \
    do {                                                                                       \
        tg_h5_lock();                                                                          \
        int64_t r_ = (int64_t)(expr);                                                          \
        if (r_ < 0) st = tg_h5_fail(err, __FILE__, __LINE__, #expr);                           \
        tg_h5_unlock();                                                                        \
        if (r_ < 0) goto cleanup;                                                              \
    } while (0)


/* Closes any HDF5 id (ignoring errors: only used in cleanup paths) and resets it to -1. */
void ck_close(hid_t *id);

/* Switches HDF5's error printing off in the calling thread (HDF5 keeps the switch per thread). */
void ck_h5_quiet(void);

/* strdup that maps NULL to "". */
char *ck_strdup(const char *s);

/* The scalars and strings of the root attributes as one canonical text (malloc'd; NULL when out
 * of memory), so one CRC covers them. */
char *ck_meta_text(const tg_ckpt_state *s, int64_t n_params, int has_adam, int has_master);

/* A checkpoint file in a directory: step_<step>.h5. */
typedef struct {
    int64_t step;
    char name[256];
} ck_entry;

/* Lists step_*.h5 in dir, newest first (*out: free()). A missing dir gives 0 entries. */
tg_status ck_list(const char *dir, ck_entry **out, int *n_out, tg_error *err);

/* <dir>/latest := name (one line), crash-safely (tg_fs_file_replace). */
tg_status ck_latest_write(const char *dir, const char *name, tg_error *err);

/* Keeps newest_step and the keep-1 checkpoints before it in dir; deletes older ones (keep <= 0:
 * keeps all). Files of later steps (left by another run) are neither counted nor touched. */
tg_status ck_prune(const char *dir, int keep, int64_t newest_step, const tg_log *lg, tg_error *err);

#endif
