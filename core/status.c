#include "core/status.h"

#include <stdio.h>
#include <string.h>

const char *tg_status_str(tg_status s) {
    switch (s) {
    case TG_OK: return "ok";
    case TG_ERR_ARG: return "invalid argument";
    case TG_ERR_CONFIG: return "config error";
    case TG_ERR_IO: return "I/O error";
    case TG_ERR_FORMAT: return "bad file format";
    case TG_ERR_DATA: return "data error";
    case TG_ERR_NOMEM: return "out of memory";
    case TG_ERR_CUDA: return "CUDA error";
    case TG_ERR_NCCL: return "NCCL error";
    case TG_ERR_MPI: return "MPI error";
    case TG_ERR_HDF5: return "HDF5 error";
    case TG_ERR_NUMERIC: return "numeric error";
    case TG_ERR_INTERRUPTED: return "interrupted";
    case TG_ERR_UNSUPPORTED: return "unsupported";
    case TG_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

tg_status tg_error_set(tg_error *err, tg_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

tg_status tg_error_set_at(tg_error *err, tg_status code, const char *file, int line,
                          const char *fmt, ...) {
    if (err) {
        int n = snprintf(err->msg, sizeof err->msg, "%s:%d: ", file, line);
        if (n < 0 || (size_t)n >= sizeof err->msg) n = 0;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg + n, sizeof err->msg - (size_t)n, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

void tg_error_prefix(tg_error *err, const char *fmt, ...) {
    if (!err) return;
    char head[1024], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    size_t n = strlen(head);
    if (n >= sizeof err->msg) n = sizeof err->msg - 1;
    memcpy(err->msg, head, n);
    size_t k = strlen(old);
    if (k > sizeof err->msg - 1 - n) k = sizeof err->msg - 1 - n; /* truncation is fine here */
    memcpy(err->msg + n, old, k);
    err->msg[n + k] = '\0';
}

void tg_error_clear(tg_error *err) {
    if (err) {
        err->code = TG_OK;
        err->msg[0] = '\0';
    }
}
