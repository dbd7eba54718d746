#include "train/schedule.h"

#include <math.h>

static double decay_factor(tg_decay_shape shape, double p) {
    switch (shape) {
    case TG_DECAY_COSINE: return 0.5 * (1.0 + cos(M_PI * p));
    case TG_DECAY_SQRT: return 1.0 - sqrt(p);
    case TG_DECAY_LINEAR: break;
    }
    return 1.0 - p;
}

int tg_schedule_decay_start(const tg_schedule *s) {
    long decay = lround(s->decay_frac * (double)s->max_steps);
    long room = (long)s->max_steps - (s->warmup_steps > 0 ? s->warmup_steps : 0);
    if (decay > room) decay = room;
    if (decay < 0) decay = 0;
    return s->max_steps - (int)decay;
}

double tg_schedule_lr(const tg_schedule *s, int step) {
    if (s->warmup_steps > 0 && step <= s->warmup_steps)
        return s->lr * (double)step / (double)s->warmup_steps;
    if (s->kind == TG_SCHED_CONSTANT || s->max_steps <= s->warmup_steps) return s->lr;
    if (s->kind == TG_SCHED_WSD) {
        int start = tg_schedule_decay_start(s);
        if (step <= start || start >= s->max_steps) return s->lr;
        /* progress 0 at the decay's first step (still lr), 1 at max_steps (min_lr) */
        double p = (double)(step - start) / (double)(s->max_steps - start);
        if (p > 1.0) p = 1.0;
        return s->min_lr + decay_factor(s->decay_shape, p) * (s->lr - s->min_lr);
    }
    /* progress 0 right after warmup, 1 at the last step */
    double p = (double)(step - s->warmup_steps) / (double)(s->max_steps - s->warmup_steps);
    if (p > 1.0) p = 1.0;
    double f = s->kind == TG_SCHED_COSINE ? 0.5 * (1.0 + cos(M_PI * p)) : 1.0 - p;
    return s->min_lr + f * (s->lr - s->min_lr);
}
