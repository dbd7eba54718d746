#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>

static void vlog(const tg_log *lg, const char *tag, const char *fmt, va_list ap) {
    char buf[4096];
    int n = 0;
    if (lg && lg->world > 1) n = snprintf(buf, sizeof buf, "[rank %d] ", lg->rank);
    n += snprintf(buf + n, sizeof buf - (size_t)n, "%s", tag);
    if (n < (int)sizeof buf) vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
    fprintf(stderr, "%s\n", buf); /* one write per line keeps ranks' lines whole */
    fflush(stderr);
}

void tg_log_info(const tg_log *lg, const char *fmt, ...) {
    if (lg && lg->level < 1) return;
    va_list ap;
    va_start(ap, fmt);
    vlog(lg, "", fmt, ap);
    va_end(ap);
}

void tg_log_warn(const tg_log *lg, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vlog(lg, "warning: ", fmt, ap);
    va_end(ap);
}

void tg_log_debug(const tg_log *lg, const char *fmt, ...) {
    if (!lg || lg->level < 2) return;
    va_list ap;
    va_start(ap, fmt);
    vlog(lg, "debug: ", fmt, ap);
    va_end(ap);
}
