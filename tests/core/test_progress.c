/* Progress reports: the formatting of both modes, and when plain (non-terminal) lines come, with an
 * injected clock so that nothing depends on timing. */
#include <stdlib.h>
#include <string.h>

#include "core/progress.h"
#include "tg_test.h"

static double fake_now(void *ctx) { return *(double *)ctx; }

static int count_lines(FILE *f) {
    int n = 0, c;
    rewind(f);
    while ((c = fgetc(f)) != EOF) n += c == '\n';
    return n;
}

int main(void) {
    char buf[256];
    tg_progress_format(buf, sizeof buf, 0, "prepare", "MB", 25e6, 100e6, 1e6, 5.0, "1.2M tokens");
    CHECKF(!strcmp(buf, "prepare: 25.0% 25.0/100.0 MB 5.0 MB/s ETA 0:15 1.2M tokens"), "%s", buf);
    tg_progress_format(buf, sizeof buf, 1, "prepare", "MB", 50e6, 100e6, 1e6, 10.0, NULL);
    CHECKF(!strcmp(buf, "prepare [###############...............]  50.0% 50.0/100.0 MB 5.0 MB/s ETA 0:10"), "%s",
           buf);
    tg_progress_format(buf, sizeof buf, 0, "verify", "shards", 3, 0, 1, 2.0, NULL); /* total unknown */
    CHECKF(!strcmp(buf, "verify: 3.0 shards 1.5 shards/s"), "%s", buf);
    tg_progress_format(buf, sizeof buf, 0, "x", "u", 0, 10, 1, 0.0, NULL); /* nothing done yet: no ETA */
    CHECKF(!strcmp(buf, "x: 0.0% 0.0/10.0 u 0.0 u/s ETA ?"), "%s", buf);
    tg_progress_format(buf, sizeof buf, 0, "x", "u", 7200, 10000, 1, 3600.0, NULL);
    CHECKF(!strcmp(buf, "x: 72.0% 7200.0/10000.0 u 2.0 u/s ETA 23:20"), "%s", buf);

    /* Plain mode: a line per 10% of the total, or after interval_s, and always a final one. */
    FILE *f = tmpfile();
    CHECK(f != NULL);
    double now = 100.0;
    tg_progress p;
    tg_progress_init(&p, f, "t", "u", 1000, 1, fake_now, &now);
    p.tty = 0;
    p.interval_s = 10.0;
    tg_progress_update(&p, 500, NULL); /* within quiet_s of the start: nothing */
    CHECK(count_lines(f) == 0);
    fseek(f, 0, SEEK_END);
    now += p.quiet_s;
    p.last_t = now; /* as if a line had just been printed: only the 10% steps count below */
    for (int i = 1; i <= 1000; i++) tg_progress_update(&p, i, NULL); /* no time passes */
    CHECKF(count_lines(f) == 10, "%d lines", count_lines(f));
    fseek(f, 0, SEEK_END);
    tg_progress_update(&p, 1000, NULL); /* nothing new, no time: no line */
    CHECK(count_lines(f) == 10);
    fseek(f, 0, SEEK_END);
    now += 10.0; /* the interval passed: one line even without progress */
    tg_progress_update(&p, 1000, NULL);
    CHECK(count_lines(f) == 11);
    fseek(f, 0, SEEK_END);
    tg_progress_finish(&p, 1000, "done");
    tg_progress_finish(&p, 1000, "done"); /* once */
    CHECK(count_lines(f) == 12);
    fclose(f);

    /* A job done within quiet_s prints nothing, not even the final report. */
    f = tmpfile();
    now = 0;
    tg_progress_init(&p, f, "t", "u", 10, 1, fake_now, &now);
    p.tty = 0;
    for (int i = 1; i <= 10; i++) tg_progress_update(&p, i, NULL);
    now = 1.0;
    tg_progress_finish(&p, 10, NULL);
    CHECK(count_lines(f) == 0);
    fclose(f);
    TEST_MAIN_END();
}
