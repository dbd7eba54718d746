/* tests/data/test_util.h — temp dirs, files and stderr capture for the data tests. */
#ifndef TG_DATA_TEST_UTIL_H
#define TG_DATA_TEST_UTIL_H

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tdir[256];

__attribute__((unused)) static void tmpdir_make(void) {
    snprintf(tdir, sizeof tdir, "/tmp/tg_data_test_XXXXXX");
    if (!mkdtemp(tdir)) {
        perror("mkdtemp");
        exit(1);
    }
}

__attribute__((unused)) static void tmpdir_remove(void) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tdir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", tdir);
}

/* Path inside the temp dir (rotating static buffers, fine for a few at a time). */
__attribute__((unused)) static const char *tpath(const char *name) {
    static char bufs[128][512];
    static int k;
    char *b = bufs[k++ % 128];
    snprintf(b, 512, "%s/%s", tdir, name);
    return b;
}

__attribute__((unused)) static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n) {
        perror(path);
        exit(1);
    }
    fclose(f);
}

__attribute__((unused)) static void write_str(const char *path, const char *s) {
    write_file(path, s, strlen(s));
}

__attribute__((unused)) static char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    size_t r = fread(b, 1, (size_t)sz, f);
    b[r] = 0;
    fclose(f);
    if (n) *n = r;
    return b;
}

/* Redirects stderr into a file until stderr_end(), which returns what was written (malloc'd). */
static int saved_stderr = -1;
__attribute__((unused)) static void stderr_begin(void) {
    fflush(stderr);
    saved_stderr = dup(2);
    int fd = open(tpath("stderr.txt"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 2);
    close(fd);
}
__attribute__((unused)) static char *stderr_end(void) {
    fflush(stderr);
    dup2(saved_stderr, 2);
    close(saved_stderr);
    return read_all(tpath("stderr.txt"), NULL);
}

#endif
