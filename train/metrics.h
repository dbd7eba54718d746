/* train/metrics.h — <out_dir>/metrics.jsonl, one JSON object per line, written by rank 0.
 *
 * Records (keys in this order):
 *   train step:   {"step","loss","lr","grad_norm","tokens","ms","tokens_per_s","tflops"}
 *   skipped step: {"step","skipped":true,"loss":null,"grad_norm":null}  (non-finite loss/norm)
 *   validation:   {"step","val_loss"}
 * The same values go to TensorBoard events in <out_dir>/tb/ (train/tb.h): train/loss, train/lr,
 * train/grad_norm, perf/tokens_per_s, perf/tflops, perf/mfu (when the peak is known), train/skipped
 * (1 at a skipped step), val/loss, and samples/text (text plugin).
 * Each line is flushed when written, so a killed run leaves whole lines. Write errors do not
 * stop training (the checkpoints report their own). */
#ifndef TG_METRICS_H
#define TG_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct tg_metrics tg_metrics;

typedef struct {
    int step;
    double loss, lr, grad_norm;
    int64_t tokens;                   /* tokens seen so far */
    double ms, tokens_per_s, tflops;  /* this step's wall time and rates */
    int spike;                        /* 1: a loss spike (train.spike_sigma): "spike":true */
    double mfu;                       /* model FLOPs utilisation in [0,1]; 0 = peak unknown */
} tg_metrics_step;

/* Opens <out_dir>/metrics.jsonl: a fresh run (resumed_step 0) starts an empty file; a resumed
 * one first drops the records of steps after resumed_step (an interrupted run may have logged a
 * few past its last checkpoint), so the file reads as one uninterrupted run, then appends. */
tg_status tg_metrics_open(tg_metrics **out, const char *out_dir, int64_t resumed_step, tg_error *err);
void tg_metrics_free(tg_metrics *m);

/* Each is a no-op on m == NULL (ranks other than 0). */
void tg_metrics_write_step(tg_metrics *m, const tg_metrics_step *r);
void tg_metrics_write_skipped(tg_metrics *m, int step);
void tg_metrics_write_val(tg_metrics *m, int step, double val_loss);
/* Multiple-choice accuracy (train.eval_tasks): "eval_acc", "eval_acc_norm", "eval_items";
 * TensorBoard eval/acc and eval/acc_norm. */
void tg_metrics_write_tasks(tg_metrics *m, int step, double acc, double acc_norm, int n_items);
/* A checkpoint save: "ckpt_stall_ms", the time the training loop was blocked by it (gathering the
 * state to the host and copying it into the writer's snapshot); TensorBoard perf/ckpt_stall_ms. */
void tg_metrics_write_ckpt(tg_metrics *m, int step, double stall_ms);
/* A stop request (signal) ended the run after step's checkpoint was complete on disk: "stop_saved"
 * (true). A file record, not a log line: under mpirun the launcher that carried the log may be gone. */
void tg_metrics_write_stop(tg_metrics *m, int step);
/* A generated sample (TensorBoard only; the log has it too). */
void tg_metrics_write_sample(tg_metrics *m, int step, const char *text, size_t n);

#endif
