/* core/file.c — see file.h. Reads in doubling chunks rather than trusting ftell, so pipes and
 * /proc files work too. */
#include "core/file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

tg_status tg_file_read(const char *path, uint8_t **out, size_t *n, tg_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return tg_error_set(err, TG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    tg_status st = TG_OK;
    size_t cap = 1 << 16, len = 0;
    uint8_t *buf = malloc(cap + 1);
    TG_CHECK_ALLOC(err, buf);
    for (;;) {
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0) break;
        if (len == cap) {
            uint8_t *b = realloc(buf, cap * 2 + 1);
            TG_CHECK_ALLOC(err, b);
            buf = b;
            cap *= 2;
        }
    }
    if (ferror(f)) TG_FAIL(err, TG_ERR_IO, "%s: read failed: %s", path, strerror(errno));
    buf[len] = 0;
    *out = buf;
    *n = len;
    buf = NULL;
cleanup:
    free(buf);
    fclose(f);
    return st;
}
