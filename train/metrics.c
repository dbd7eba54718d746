/* train/metrics.c — the metrics.jsonl writer (contract in metrics.h). */
#include "train/metrics.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/config.h"
#include "train/tb.h"

struct tg_metrics {
    FILE *f;
    tg_tb *tb; /* the same records as TensorBoard events */
};

/* Keeps the records of steps <= last_step (and any line without a step), via a temporary
 * renamed over the file. */
static tg_status metrics_truncate(const char *path, int64_t last_step, tg_error *err) {
    tg_status st = TG_OK;
    char tmp[TG_PATH_MAX + 64], line[4096];
    FILE *in = fopen(path, "r"), *out = NULL;
    if (!in) return TG_OK; /* no metrics yet */
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    out = fopen(tmp, "w");
    if (!out) TG_FAIL(err, TG_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    while (fgets(line, sizeof line, in)) {
        long long step;
        if (sscanf(line, "{\"step\":%lld", &step) == 1 && step > last_step) continue;
        fputs(line, out);
    }
    if (fclose(out) != 0) {
        out = NULL;
        TG_FAIL(err, TG_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    }
    out = NULL;
    if (rename(tmp, path) != 0) TG_FAIL(err, TG_ERR_IO, "cannot replace %s: %s", path, strerror(errno));
cleanup:
    if (out) fclose(out);
    fclose(in);
    return st;
}

tg_status tg_metrics_open(tg_metrics **out, const char *out_dir, int64_t resumed_step, tg_error *err) {
    tg_status st = TG_OK;
    char path[TG_PATH_MAX + 32];
    tg_metrics *m = NULL;
    *out = NULL;
    snprintf(path, sizeof path, "%s/metrics.jsonl", out_dir);
    if (resumed_step > 0) TG_TRY(metrics_truncate(path, resumed_step, err));
    m = calloc(1, sizeof *m);
    TG_CHECK_ALLOC(err, m);
    m->f = fopen(path, resumed_step > 0 ? "a" : "w");
    if (!m->f) TG_FAIL(err, TG_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    TG_TRY(tg_tb_open(&m->tb, out_dir, resumed_step, err));
    *out = m;
    m = NULL;
cleanup:
    tg_metrics_free(m);
    return st;
}

void tg_metrics_free(tg_metrics *m) {
    if (!m) return;
    if (m->f) fclose(m->f);
    tg_tb_free(m->tb);
    free(m);
}

void tg_metrics_write_step(tg_metrics *m, const tg_metrics_step *r) {
    if (!m) return;
    fprintf(m->f,
            "{\"step\":%d,\"loss\":%.9g,\"lr\":%.6g,\"grad_norm\":%.6f,\"tokens\":%lld,\"ms\":%.3f,"
            "\"tokens_per_s\":%.1f,\"tflops\":%.4f%s}\n",
            r->step, r->loss, r->lr, r->grad_norm, (long long)r->tokens, r->ms, r->tokens_per_s, r->tflops,
            r->spike ? ",\"spike\":true" : "");
    fflush(m->f);
    tg_tb_scalar(m->tb, r->step, "train/loss", r->loss);
    tg_tb_scalar(m->tb, r->step, "train/lr", r->lr);
    tg_tb_scalar(m->tb, r->step, "train/grad_norm", r->grad_norm);
    tg_tb_scalar(m->tb, r->step, "perf/tokens_per_s", r->tokens_per_s);
    tg_tb_scalar(m->tb, r->step, "perf/tflops", r->tflops);
    if (r->mfu > 0) tg_tb_scalar(m->tb, r->step, "perf/mfu", r->mfu);
}

void tg_metrics_write_skipped(tg_metrics *m, int step) {
    if (!m) return;
    fprintf(m->f, "{\"step\":%d,\"skipped\":true,\"loss\":null,\"grad_norm\":null}\n", step);
    fflush(m->f);
    tg_tb_scalar(m->tb, step, "train/skipped", 1.0);
}

void tg_metrics_write_val(tg_metrics *m, int step, double val_loss) {
    if (!m) return;
    fprintf(m->f, "{\"step\":%d,\"val_loss\":%.9g}\n", step, val_loss);
    fflush(m->f);
    tg_tb_scalar(m->tb, step, "val/loss", val_loss);
}

void tg_metrics_write_ckpt(tg_metrics *m, int step, double stall_ms) {
    if (!m) return;
    fprintf(m->f, "{\"step\":%d,\"ckpt_stall_ms\":%.3f}\n", step, stall_ms);
    fflush(m->f);
    tg_tb_scalar(m->tb, step, "perf/ckpt_stall_ms", stall_ms);
}

void tg_metrics_write_stop(tg_metrics *m, int step) {
    if (!m) return;
    fprintf(m->f, "{\"step\":%d,\"stop_saved\":true}\n", step);
    fflush(m->f);
}

void tg_metrics_write_tasks(tg_metrics *m, int step, double acc, double acc_norm, int n_items) {
    if (!m) return;
    fprintf(m->f, "{\"step\":%d,\"eval_acc\":%.9g,\"eval_acc_norm\":%.9g,\"eval_items\":%d}\n", step, acc,
            acc_norm, n_items);
    fflush(m->f);
    tg_tb_scalar(m->tb, step, "eval/acc", acc);
    tg_tb_scalar(m->tb, step, "eval/acc_norm", acc_norm);
}

void tg_metrics_write_sample(tg_metrics *m, int step, const char *text, size_t n) {
    if (!m) return;
    tg_tb_text(m->tb, step, "samples/text", text, n);
}
