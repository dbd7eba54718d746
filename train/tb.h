/* train/tb.h — TensorBoard event files: <out_dir>/tb/events.out.tfevents.<time>.truthgpt.<pid>,
 * TFRecord-framed Event protos (encoded with protobuf-c), written by rank 0.
 *
 * One events file per run directory: a fresh run (resumed_step 0) removes older events files; a
 * resumed one rewrites them into a new file keeping only the events of steps <= resumed_step (a
 * run may have logged steps past its last checkpoint), so the curves never repeat or go back.
 * Each record is flushed when written; write errors are reported once and then ignored (they do
 * not stop training). */
#ifndef TG_TB_H
#define TG_TB_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct tg_tb tg_tb;

tg_status tg_tb_open(tg_tb **out, const char *out_dir, int64_t resumed_step, tg_error *err);
void tg_tb_free(tg_tb *tb);

/* Each is a no-op on tb == NULL. */
void tg_tb_scalar(tg_tb *tb, int64_t step, const char *tag, double value);
/* A text sample (TensorBoard's text plugin): text is n bytes of UTF-8. */
void tg_tb_text(tg_tb *tb, int64_t step, const char *tag, const char *text, size_t n);

#endif
