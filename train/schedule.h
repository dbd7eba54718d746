/* train/schedule.h — learning-rate schedule: linear warmup to lr, then cosine/linear/constant
 * decay to min_lr at max_steps. step is 1-based (the step about to be taken). */
#ifndef TG_SCHEDULE_H
#define TG_SCHEDULE_H

typedef enum { TG_SCHED_COSINE, TG_SCHED_LINEAR, TG_SCHED_CONSTANT } tg_sched_kind;

typedef struct {
    tg_sched_kind kind;
    double lr, min_lr;
    int warmup_steps, max_steps;
} tg_schedule;

double tg_schedule_lr(const tg_schedule *s, int step);

#endif
