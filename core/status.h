/* core/status.h — status codes and the error context every library function fills.
 *
 * Contract: a library function returns TG_OK or an error code; on error it has written a
 * human-readable message into the caller's tg_error (when non-NULL). Library code never exits
 * and never prints errors itself; main() decides. */
#ifndef TG_STATUS_H
#define TG_STATUS_H

#include <stdarg.h>

typedef enum {
    TG_OK = 0,
    TG_ERR_ARG,          /* bad argument / usage */
    TG_ERR_CONFIG,       /* bad config key or value */
    TG_ERR_IO,           /* open/read/write/rename failed */
    TG_ERR_FORMAT,       /* a file is not what it claims to be */
    TG_ERR_DATA,         /* data is inconsistent (vocab mismatch, token out of range, ...) */
    TG_ERR_NOMEM,        /* allocation failed */
    TG_ERR_CUDA,         /* CUDA runtime / cuBLASLt / cuDNN */
    TG_ERR_NCCL,
    TG_ERR_MPI,
    TG_ERR_HDF5,
    TG_ERR_NUMERIC,      /* NaN/inf where it must not be */
    TG_ERR_INTERRUPTED,  /* a signal asked us to stop */
    TG_ERR_UNSUPPORTED,  /* built without the needed backend */
    TG_ERR_INTERNAL
} tg_status;

const char *tg_status_str(tg_status s);

typedef struct {
    tg_status code;
    char msg[2048];
} tg_error;

/* Formats the message into err (if non-NULL) and returns code. */
tg_status tg_error_set(tg_error *err, tg_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Like tg_error_set but prefixes "file:line: "; used by the library-call check macros. */
tg_status tg_error_set_at(tg_error *err, tg_status code, const char *file, int line,
                          const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Prepends context ("while loading X: ") to an existing message. */
void tg_error_prefix(tg_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tg_error_clear(tg_error *err);

/* Conventions for functions with one cleanup label:
 *     tg_status st = TG_OK;  ...  TG_TRY(f(..., err));  ...  cleanup: ...; return st;   */
#define TG_TRY(expr)                                                                           \
    do {                                                                                       \
        st = (expr);                                                                           \
        if (st != TG_OK) goto cleanup;                                                         \
    } while (0)

#define TG_FAIL(err, code, ...)                                                                \
    do {                                                                                       \
        st = tg_error_set((err), (code), __VA_ARGS__);                                         \
        goto cleanup;                                                                          \
    } while (0)

/* Allocation check: p = malloc(...); TG_CHECK_ALLOC(err, p); */
#define TG_CHECK_ALLOC(err, p)                                                                 \
    do {                                                                                       \
        if ((p) == NULL) {                                                                     \
            st = tg_error_set_at((err), TG_ERR_NOMEM, __FILE__, __LINE__, "out of memory (%s)", \
                                 #p);                                                          \
            goto cleanup;                                                                      \
        }                                                                                      \
    } while (0)

#endif
