/* ckpt/writer.h — the asynchronous checkpoint writer: training stalls only for a copy of the
 * state into one of the writer's two host snapshots, never for an earlier write; a background
 * thread writes <ckpt_dir>/step_XXXXXXXX.h5
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

/* Copies st's arrays and strings into one of the writer's two host snapshots, queues it, and
 * returns; the background thread writes step_XXXXXXXX.h5 (ckpt/ckpt.h: streamed into a .tmp,
 * fsync, rename), then `latest`, then deletes beyond keep. A save never waits for a write: it
 * copies into the snapshot not being written; if that one is still queued (saves come faster
 * than writes), the new state replaces it and the replaced step is never written (a warning in
 * the log says so). *stall_ms (may be NULL) = time this call blocked the caller (the copy).
 * A failure of an earlier write is returned here (and the new state is then not saved), or by
 * tg_ckpt_writer_wait.
 * Host memory: two snapshots (params + moments each; allocated by tg_ckpt_writer_reserve, or
 * by the first save that needs each), and during a write 4 MiB of compression buffers per core.
 * Test hook: env TRUTHGPT_CKPT_SLOW_MS=N sleeps N ms after each dataset (kill -9 tests). */
tg_status tg_ckpt_writer_save(tg_ckpt_writer *w, const tg_ckpt_state *st, double *stall_ms,
                              tg_error *err);

/* Optional, at start-up: allocates (and touches) both snapshots' host buffers for a model of cfg
 * now, so that every save stalls training only for the copy (without it, the first save into each
 * snapshot also pays for faulting in fresh pages). */
tg_status tg_ckpt_writer_reserve(tg_ckpt_writer *w, const tg_gpt2_config *cfg, int with_adam,
                                 int with_master, tg_error *err);

/* Waits until every queued save is written and returns the first failure not yet reported. */
tg_status tg_ckpt_writer_wait(tg_ckpt_writer *w, tg_error *err);

/* Seconds the last completed background write took (0 before the first). */
double tg_ckpt_writer_last_write_s(tg_ckpt_writer *w);

/* Tests: fn(arg, step) is called on the writing thread as the write of each step begins (it may
 * block, to hold a write in progress while the test does something else). */
void tg_ckpt_writer_set_hook(tg_ckpt_writer *w, void (*fn)(void *arg, int64_t step), void *arg);

/* Writes what is queued, then stops the thread (an error is dropped: call wait first to see it). */
void tg_ckpt_writer_free(tg_ckpt_writer *w);

#endif
