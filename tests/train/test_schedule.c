/* Learning-rate schedule: warmup, cosine/linear endpoints, constant, WSD at its corners. */
#include <math.h>

#include "tg_test.h"
#include "train/schedule.h"

static int near(double a, double b) { return fabs(a - b) <= 1e-12 * (fabs(b) + 1); }

int main(void) {
    tg_schedule s = {.kind = TG_SCHED_COSINE, .lr = 1e-3, .min_lr = 1e-4, .warmup_steps = 10, .max_steps = 110};
    CHECK(near(tg_schedule_lr(&s, 1), 1e-4));
    CHECK(near(tg_schedule_lr(&s, 10), 1e-3));
    CHECK(near(tg_schedule_lr(&s, 60), 0.5 * (1e-3 + 1e-4)));
    CHECK(near(tg_schedule_lr(&s, 110), 1e-4));
    CHECK(tg_schedule_lr(&s, 30) > tg_schedule_lr(&s, 31));
    s.kind = TG_SCHED_LINEAR;
    CHECK(near(tg_schedule_lr(&s, 35), 1e-3 - 0.25 * 9e-4));
    s.kind = TG_SCHED_CONSTANT;
    CHECK(near(tg_schedule_lr(&s, 100), 1e-3));
    s.warmup_steps = 0;
    CHECK(near(tg_schedule_lr(&s, 1), 1e-3));

    /* WSD: 10 warmup, 100 steps, decay over the last 20 (steps 81..100), 80 = last stable step. */
    tg_schedule w = {.kind = TG_SCHED_WSD, .lr = 1e-3, .min_lr = 1e-4, .warmup_steps = 10, .max_steps = 100,
                     .decay_frac = 0.2, .decay_shape = TG_DECAY_LINEAR};
    CHECK(tg_schedule_decay_start(&w) == 80);
    CHECK(near(tg_schedule_lr(&w, 1), 1e-4));
    CHECK(near(tg_schedule_lr(&w, 10), 1e-3));
    CHECK(near(tg_schedule_lr(&w, 11), 1e-3));
    CHECK(near(tg_schedule_lr(&w, 80), 1e-3));
    CHECK(near(tg_schedule_lr(&w, 81), 1e-4 + (1.0 - 1.0 / 20) * 9e-4));
    CHECK(near(tg_schedule_lr(&w, 90), 1e-4 + 0.5 * 9e-4));
    CHECK(near(tg_schedule_lr(&w, 100), 1e-4));
    CHECK(near(tg_schedule_lr(&w, 150), 1e-4)); /* past the end: stays at min_lr */
    w.decay_shape = TG_DECAY_COSINE;
    CHECK(near(tg_schedule_lr(&w, 80), 1e-3));
    CHECK(near(tg_schedule_lr(&w, 90), 1e-4 + 0.5 * 9e-4));
    CHECK(near(tg_schedule_lr(&w, 85), 1e-4 + 0.5 * (1 + cos(M_PI * 0.25)) * 9e-4));
    CHECK(near(tg_schedule_lr(&w, 100), 1e-4));
    w.decay_shape = TG_DECAY_SQRT;
    CHECK(near(tg_schedule_lr(&w, 80), 1e-3));
    CHECK(near(tg_schedule_lr(&w, 85), 1e-4 + 0.5 * 9e-4)); /* 1 - sqrt(0.25) */
    CHECK(near(tg_schedule_lr(&w, 100), 1e-4));
    for (int t = 81; t < 100; t++) CHECK(tg_schedule_lr(&w, t) > tg_schedule_lr(&w, t + 1));
    /* decay_frac 0: constant after warmup; 1: decays from the step after warmup (clamped by it). */
    w.decay_frac = 0;
    CHECK(tg_schedule_decay_start(&w) == 100);
    CHECK(near(tg_schedule_lr(&w, 100), 1e-3));
    w.decay_frac = 1;
    w.decay_shape = TG_DECAY_LINEAR;
    CHECK(tg_schedule_decay_start(&w) == 10);
    CHECK(near(tg_schedule_lr(&w, 10), 1e-3));
    CHECK(near(tg_schedule_lr(&w, 55), 1e-4 + 0.5 * 9e-4));
    CHECK(near(tg_schedule_lr(&w, 100), 1e-4));
    w.warmup_steps = 0;
    CHECK(tg_schedule_decay_start(&w) == 0);
    CHECK(near(tg_schedule_lr(&w, 1), 1e-4 + (1.0 - 1.0 / 100) * 9e-4));
    TEST_MAIN_END();
}
