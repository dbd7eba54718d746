/* ckpt/writer.h — the asynchronous checkpoint writer: training stalls only for a copy of the
 * state into the writer's host buffers; a background thread writes <ckpt_dir>/step_XXXXXXXX.h5
 * (ckpt/ckpt.h), then replaces <ckpt_dir>/latest, then deletes checkpoints beyond `keep`. */
#ifndef TG_CKPT_WRITER_H
#define TG_CKPT_WRITER_H

#include "ckpt/ckpt.h"
#include "core/log.h"

typedef struct tg_ckpt_writer tg_ckpt_writer;

/* Creates ckpt_dir (and parents) if needed and removes stale *.tmp files of earlier killed writes.
 * keep: number of newest checkpoints to keep (<= 0: keep all). lg is used from the background
 * thread for progress lines (may be NULL). */
tg_status tg_ckpt_writer_init(tg_ckpt_writer **w, const char *ckpt_dir, int keep, const tg_log *lg,
                              tg_error *err);

/* Copies st's arrays and strings into the writer's own host buffers, then returns; a background
 * thread builds the file in memory and writes step_XXXXXXXX.h5 (tmp name, fsync, rename, then latest, then deletes beyond keep).
 * If the previous write is still running, waits for it first. *stall_ms (may be NULL) = time this
 * call blocked the caller (wait + copy). A failure of the previous write is returned here (and
 * the new state is then not saved), or by tg_ckpt_writer_wait.
 * Host memory: the copy of the state (kept between saves) plus, while writing, one file image
 * (about the compressed checkpoint size).
 * Test hook: env TRUTHGPT_CKPT_SLOW_MS=N writes in 64 KiB pieces N ms apart (kill -9 tests). */
tg_status tg_ckpt_writer_save(tg_ckpt_writer *w, const tg_ckpt_state *st, double *stall_ms,
                              tg_error *err);

/* Optional, at start-up: allocates (and touches) the writer's host buffers for a model of cfg now,
 * so the first save stalls training only for the copy. Waits for a write in flight. */
tg_status tg_ckpt_writer_reserve(tg_ckpt_writer *w, const tg_gpt2_config *cfg, int with_adam,
                                 int with_master, tg_error *err);

/* Waits for the write in flight (if any) and returns its status. */
tg_status tg_ckpt_writer_wait(tg_ckpt_writer *w, tg_error *err);

/* Seconds the last completed background write took (0 before the first). */
double tg_ckpt_writer_last_write_s(const tg_ckpt_writer *w);

/* Waits for the write in flight (its error, if any, is dropped: call wait first to see it). */
void tg_ckpt_writer_free(tg_ckpt_writer *w);

#endif
