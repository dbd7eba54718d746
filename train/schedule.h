/* train/schedule.h — learning-rate schedule: linear warmup to lr, then cosine/linear/constant
 * decay to min_lr at max_steps, or WSD (warmup, stable at lr, then a decay to min_lr over the last
 * decay_frac of max_steps in the given shape). step is 1-based (the step about to be taken). */
#ifndef TG_SCHEDULE_H
#define TG_SCHEDULE_H

typedef enum { TG_SCHED_COSINE, TG_SCHED_LINEAR, TG_SCHED_CONSTANT, TG_SCHED_WSD } tg_sched_kind;

/* WSD's decay, f(p) for progress p in [0,1]: linear 1-p, cosine (1+cos(pi p))/2, sqrt 1-sqrt(p). */
typedef enum { TG_DECAY_LINEAR, TG_DECAY_COSINE, TG_DECAY_SQRT } tg_decay_shape;

typedef struct {
    tg_sched_kind kind;
    double lr, min_lr;
    int warmup_steps, max_steps;
    double decay_frac;          /* WSD: share of max_steps spent decaying, in [0,1] */
    tg_decay_shape decay_shape; /* WSD */
} tg_schedule;

/* WSD: the first step of the decay; steps before it (after warmup) run at lr, max_steps at min_lr.
 * The decay takes round(decay_frac*max_steps) steps, at most what warmup leaves. */
int tg_schedule_decay_start(const tg_schedule *s);

double tg_schedule_lr(const tg_schedule *s, int step);

#endif
