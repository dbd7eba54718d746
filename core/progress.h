/* core/progress.h — progress of a long command: on a terminal a bar redrawn in place with rate and
 * ETA; otherwise (logs, SLURM) a plain line every interval_s seconds or every 10% of the total,
 * whichever comes first. Jobs done within quiet_s (2 s) print nothing. The clock can be injected so that tests do not depend on timing. */
#ifndef TG_CORE_PROGRESS_H
#define TG_CORE_PROGRESS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef double (*tg_progress_clock)(void *ctx); /* seconds, monotonic */

typedef struct {
    FILE *out;
    int tty;             /* 1: bar with \r; 0: plain lines */
    const char *label;   /* e.g. "prepare" */
    const char *unit;    /* e.g. "MB", "merges" */
    double total;        /* 0 = unknown (no percentage, no ETA) */
    double scale;        /* done and total are divided by this for display (e.g. 1e6 for bytes -> MB) */
    double interval_s;   /* plain mode: seconds between lines (TTY: redraw at most every 0.2 s) */
    double quiet_s;      /* nothing at all (not even the final report) for jobs shorter than this */
    tg_progress_clock clock;
    void *clock_ctx;
    double t0, last_t, last_frac;
    int printed_final, printed;
} tg_progress;

/* out's tty-ness decides the mode (override p->tty after init to force one); clock NULL = the
 * monotonic wall clock. */
void tg_progress_init(tg_progress *p, FILE *out, const char *label, const char *unit, double total, double scale,
                      tg_progress_clock clock, void *clock_ctx);

/* Formats one report: "label: 42.0% 12.3/29.3 MB 4.1 MB/s ETA 0:04" (plain) or a 30-wide bar
 * (tty); extra (may be NULL or "") is appended, e.g. token counts. Returns snprintf's count. */
int tg_progress_format(char *buf, size_t cap, int tty, const char *label, const char *unit, double done,
                       double total, double scale, double elapsed_s, const char *extra);

/* Reports done (in the caller's units) if due; extra as in tg_progress_format. */
void tg_progress_update(tg_progress *p, double done, const char *extra);
/* The final report (always printed; ends the bar's line). */
void tg_progress_finish(tg_progress *p, double done, const char *extra);

#endif
