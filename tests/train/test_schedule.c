/* Learning-rate schedule: warmup, cosine/linear endpoints, constant. */
#include <math.h>

#include "tg_test.h"
#include "train/schedule.h"

static int near(double a, double b) { return fabs(a - b) <= 1e-12 * (fabs(b) + 1); }

int main(void) {
    tg_schedule s = {TG_SCHED_COSINE, 1e-3, 1e-4, 10, 110};
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
    TEST_MAIN_END();
}
