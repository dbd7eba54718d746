/* core/fault.h — the one seam for test-only fault injection (docs/testing.md lists the switches).
 *
 * Built in only when CMake's TRUTHGPT_FAULT_INJECTION is on (its default follows BUILD_TESTING,
 * so the test builds have it; a product build configured with -DBUILD_TESTING=OFF does not).
 * Without it TG_FAULT_ENABLED is 0 and tg_fault_get always answers "off": the compiler drops
 * every fault branch and the product reads none of these variables. */
#ifndef TG_FAULT_H
#define TG_FAULT_H

#include "core/status.h"

typedef enum {
    TG_FAULT_STEP,         /* TRUTHGPT_FAULT_STEP=N: training fails on purpose at step N */
    TG_FAULT_STEP_RANK,    /* TRUTHGPT_FAULT_STEP_RANK=R: ... on rank R */
    TG_FAULT_NAN_STEP,     /* TRUTHGPT_NAN_STEP=N: the loss of step N becomes NaN */
    TG_FAULT_COMM_RANK,    /* TRUTHGPT_FAULT_RANK=R: rank R fails inside a collective ... */
    TG_FAULT_COMM_AT,      /* TRUTHGPT_FAULT_AT=N: ... from its N-th (0-based) on */
    TG_FAULT_CKPT_SLOW_MS, /* TRUTHGPT_CKPT_SLOW_MS=N: the checkpoint writer sleeps N ms per 64 KiB */
    TG_FAULT_CKPT_HOLD_STEP, /* TRUTHGPT_CKPT_HOLD_STEP=N: the writer of step N writes half of its
                              * .tmp file, then blocks until the process is killed */
    TG_FAULT_SPIKE_STEP,     /* TRUTHGPT_SPIKE_STEP=N: the loss of step N is 1000x, the first time
                              * the run reaches step N (a rollback then gets past it) */
} tg_fault_switch;

#ifdef TG_FAULT_INJECTION
#define TG_FAULT_ENABLED 1
/* *v = the switch's value (an integer >= 0), or `off` when it is unset. TG_ERR_CONFIG on junk. */
tg_status tg_fault_get(tg_fault_switch s, long long off, long long *v, tg_error *err);
#else
#define TG_FAULT_ENABLED 0
static inline tg_status tg_fault_get(tg_fault_switch s, long long off, long long *v, tg_error *err) {
    (void)s;
    (void)err;
    *v = off;
    return TG_OK;
}
#endif

#endif
