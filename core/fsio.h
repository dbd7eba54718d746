/* core/fsio.h — filesystem helpers for files that must never be seen half-written
 * (checkpoints, `latest`, tuning files) and the directories that hold them. */
#ifndef TG_CORE_FSIO_H
#define TG_CORE_FSIO_H

#include <stddef.h>

#include "core/status.h"

/* The one limit on path lengths (Linux's PATH_MAX): buffers for paths are this size, and a path
 * that does not fit is TG_ERR_ARG, never silently cut. */
#define TG_PATH_MAX 4096

/* mkdir -p: creates dir and its missing parents (mode 0777 less the umask); existing ones are
 * fine. TG_ERR_ARG if dir does not fit TG_PATH_MAX, TG_ERR_IO naming the directory otherwise. */
tg_status tg_fs_mkdir_p(const char *dir, tg_error *err);

/* fsync of a directory: makes a rename in it durable. */
tg_status tg_fs_fsync_dir(const char *dir, tg_error *err);

/* The directory part of path into dir (cap bytes): "a/b" -> "a", "b" -> ".", "/b" -> "/". */
void tg_fs_dirname(const char *path, char *dir, size_t cap);

/* Creates path (it must not exist: O_EXCL), writes buf[0, n) and fsyncs it, so the data is on
 * disk before a rename makes the name appear. pause_ms > 0 writes in 64 KiB pieces with a pause
 * of pause_ms after each (tests that kill a process mid-write); 0 writes in 64 MiB pieces. */
tg_status tg_fs_file_write(const char *path, const void *buf, size_t n, int pause_ms, tg_error *err);

/* path := buf[0, n), crash-safely: <path>.tmp is written and fsynced (tg_fs_file_write, with
 * pause_ms), renamed over path, and the directory fsynced, so a reader sees the old file or the
 * whole new one. A failure removes the .tmp and leaves path as it was. */
tg_status tg_fs_file_replace(const char *path, const void *buf, size_t n, int pause_ms, tg_error *err);

/* Sleeps ms milliseconds (resuming after signals). */
void tg_sleep_ms(int ms);

#endif
