/* core/fsio.c — see fsio.h. */
#include "core/fsio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void tg_sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

tg_status tg_fs_fsync_dir(const char *dir, tg_error *err) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return tg_error_set(err, TG_ERR_IO, "open %s for fsync: %s", dir, strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0) return tg_error_set(err, TG_ERR_IO, "fsync %s: %s", dir, strerror(e));
    return TG_OK;
}

tg_status tg_fs_mkdir_p(const char *dir, tg_error *err) {
    char buf[TG_PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf)
        return tg_error_set(err, TG_ERR_ARG, "directory path too long: %s", dir);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return tg_error_set(err, TG_ERR_IO, "cannot create directory %s: %s", buf, strerror(errno));
            *p = c;
            if (c == '\0') break;
        }
    }
    return TG_OK;
}

void tg_fs_dirname(const char *path, char *dir, size_t cap) {
    snprintf(dir, cap, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash) snprintf(dir, cap, ".");
    else if (slash == dir) dir[1] = '\0';
    else *slash = '\0';
}

tg_status tg_fs_file_write(const char *path, const void *buf, size_t n, int pause_ms, tg_error *err) {
    tg_status st = TG_OK;
    const unsigned char *b = buf;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) TG_FAIL(err, TG_ERR_IO, "create %s: %s", path, strerror(errno));
    size_t piece = pause_ms > 0 ? (size_t)64 << 10 : (size_t)64 << 20;
    for (size_t off = 0; off < n;) {
        size_t want = n - off < piece ? n - off : piece;
        ssize_t w = write(fd, b + off, want);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0)
            TG_FAIL(err, TG_ERR_IO, "write %s (%zu of %zu bytes written): %s", path, off, n,
                    w < 0 ? strerror(errno) : "no progress");
        off += (size_t)w;
        if (pause_ms > 0) tg_sleep_ms(pause_ms);
    }
    if (fsync(fd) != 0) TG_FAIL(err, TG_ERR_IO, "fsync %s: %s", path, strerror(errno));
    int rc = close(fd);
    fd = -1;
    if (rc != 0) TG_FAIL(err, TG_ERR_IO, "close %s: %s", path, strerror(errno));
cleanup:
    if (fd >= 0) close(fd);
    return st;
}

tg_status tg_fs_file_replace(const char *path, const void *buf, size_t n, int pause_ms, tg_error *err) {
    tg_status st = TG_OK;
    char tmp[TG_PATH_MAX], dir[TG_PATH_MAX];
    int created = 0;
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        TG_FAIL(err, TG_ERR_ARG, "path too long: %s", path);
    unlink(tmp); /* a leftover of a killed write */
    created = 1;
    TG_TRY(tg_fs_file_write(tmp, buf, n, pause_ms, err));
    if (rename(tmp, path) != 0) TG_FAIL(err, TG_ERR_IO, "rename %s -> %s: %s", tmp, path, strerror(errno));
    created = 0;
    tg_fs_dirname(path, dir, sizeof dir);
    TG_TRY(tg_fs_fsync_dir(dir, err));
cleanup:
    if (created) unlink(tmp); /* never leave a half-written file behind (disk full, ...) */
    return st;
}
