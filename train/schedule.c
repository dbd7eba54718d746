#include "train/schedule.h"

#include <math.h>

double tg_schedule_lr(const tg_schedule *s, int step) {
    if (s->warmup_steps > 0 && step <= s->warmup_steps)
        return s->lr * (double)step / (double)s->warmup_steps;
    if (s->kind == TG_SCHED_CONSTANT || s->max_steps <= s->warmup_steps) return s->lr;
    /* progress 0 right after warmup, 1 at the last step */
    double p = (double)(step - s->warmup_steps) / (double)(s->max_steps - s->warmup_steps);
    if (p > 1.0) p = 1.0;
    double f = s->kind == TG_SCHED_COSINE ? 0.5 * (1.0 + cos(M_PI * p)) : 1.0 - p;
    return s->min_lr + f * (s->lr - s->min_lr);
}
