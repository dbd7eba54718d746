/* core/timer.h — monotonic wall clock. */
#ifndef TG_TIMER_H
#define TG_TIMER_H

#include <time.h>

static inline double tg_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

#endif
