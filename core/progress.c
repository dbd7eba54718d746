#include "core/progress.h"

#include <time.h>
#include <unistd.h>

static double wall_clock(void *ctx) {
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void tg_progress_init(tg_progress *p, FILE *out, const char *label, const char *unit, double total, double scale,
                      tg_progress_clock clock, void *clock_ctx) {
    *p = (tg_progress){.out = out, .tty = isatty(fileno(out)), .label = label, .unit = unit, .total = total,
                       .scale = scale > 0 ? scale : 1.0, .interval_s = 30.0, .quiet_s = 2.0, .clock = clock ? clock : wall_clock,
                       .clock_ctx = clock_ctx};
    p->t0 = p->clock(p->clock_ctx);
    p->last_t = p->t0;
}

static void fmt_eta(char *buf, size_t cap, double s) {
    if (!(s >= 0) || s > 1e8) snprintf(buf, cap, "?");
    else if (s >= 3600) snprintf(buf, cap, "%d:%02d:%02d", (int)s / 3600, (int)s % 3600 / 60, (int)s % 60);
    else snprintf(buf, cap, "%d:%02d", (int)s / 60, (int)s % 60);
}

int tg_progress_format(char *buf, size_t cap, int tty, const char *label, const char *unit, double done,
                       double total, double scale, double elapsed_s, const char *extra) {
    double d = done / scale, t = total / scale;
    double rate = elapsed_s > 1e-9 ? d / elapsed_s : 0;
    double frac = total > 0 ? (done >= total ? 1.0 : done / total) : -1;
    char eta[32] = "?";
    if (frac > 0 && rate > 0) fmt_eta(eta, sizeof eta, (t - d) / rate);
    else if (frac >= 1) fmt_eta(eta, sizeof eta, 0);
    const char *x = extra ? extra : "";
    const char *sp = x[0] ? " " : "";
    if (frac < 0)
        return snprintf(buf, cap, "%s: %.1f %s %.1f %s/s%s%s", label, d, unit, rate, unit, sp, x);
    if (tty) {
        char bar[31];
        int k = (int)(frac * 30);
        for (int i = 0; i < 30; i++) bar[i] = i < k ? '#' : '.';
        bar[30] = 0;
        return snprintf(buf, cap, "%s [%s] %5.1f%% %.1f/%.1f %s %.1f %s/s ETA %s%s%s", label, bar, 100 * frac, d, t,
                        unit, rate, unit, eta, sp, x);
    }
    return snprintf(buf, cap, "%s: %.1f%% %.1f/%.1f %s %.1f %s/s ETA %s%s%s", label, 100 * frac, d, t, unit, rate,
                    unit, eta, sp, x);
}

static void report(tg_progress *p, double done, const char *extra, double now, int final) {
    char line[512];
    tg_progress_format(line, sizeof line, p->tty, p->label, p->unit, done, p->total, p->scale, now - p->t0, extra);
    if (p->tty) fprintf(p->out, "\r%s\033[K%s", line, final ? "\n" : "");
    else fprintf(p->out, "%s\n", line);
    fflush(p->out);
    p->last_t = now;
    p->printed = 1;
    if (p->total > 0) p->last_frac = done / p->total;
}

void tg_progress_update(tg_progress *p, double done, const char *extra) {
    double now = p->clock(p->clock_ctx);
    if (now - p->t0 < p->quiet_s) return;
    int due;
    if (p->tty) due = now - p->last_t >= 0.2;
    else due = now - p->last_t >= p->interval_s || (p->total > 0 && done / p->total >= p->last_frac + 0.1 - 1e-9);
    if (due) report(p, done, extra, now, 0);
}

void tg_progress_finish(tg_progress *p, double done, const char *extra) {
    if (p->printed_final) return;
    p->printed_final = 1;
    double now = p->clock(p->clock_ctx);
    if (p->printed || now - p->t0 >= p->quiet_s) report(p, done, extra, now, 1);
}
