/* Shared by the libFuzzer harnesses: the readers under test take paths, so each input is written
 * to a per-process temporary file first (a path the harness owns, removed at exit). */
#ifndef TG_FUZZ_UTIL_H
#define TG_FUZZ_UTIL_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Writes data to $TMPDIR/tgfuzz-<pid>.<ext> (same path each call) and returns the path. */
static inline const char *tg_fuzz_to_file(const uint8_t *data, size_t n, const char *ext) {
    static char path[512];
    const char *tmp = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/tgfuzz-%d.%s", tmp && *tmp ? tmp : "/tmp", (int)getpid(), ext);
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (n && fwrite(data, 1, n, f) != n) abort();
    if (fclose(f) != 0) abort();
    return path;
}
#endif
