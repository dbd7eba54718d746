/* core/fault.c — reads the test-only fault switches (core/fault.h); empty without the option. */
#include "core/fault.h"

#ifdef TG_FAULT_INJECTION
#include "core/env.h"

static const char *const FAULT_VARS[] = {
    [TG_FAULT_STEP] = "TRUTHGPT_FAULT_STEP",       [TG_FAULT_STEP_RANK] = "TRUTHGPT_FAULT_STEP_RANK",
    [TG_FAULT_NAN_STEP] = "TRUTHGPT_NAN_STEP",     [TG_FAULT_COMM_RANK] = "TRUTHGPT_FAULT_RANK",
    [TG_FAULT_COMM_AT] = "TRUTHGPT_FAULT_AT",      [TG_FAULT_CKPT_SLOW_MS] = "TRUTHGPT_CKPT_SLOW_MS",
    [TG_FAULT_CKPT_HOLD_STEP] = "TRUTHGPT_CKPT_HOLD_STEP",
    [TG_FAULT_SPIKE_STEP] = "TRUTHGPT_SPIKE_STEP",
};

tg_status tg_fault_get(tg_fault_switch s, long long off, long long *v, tg_error *err) {
    *v = off;
    return tg_env_get_count(FAULT_VARS[s], v, err);
}
#else
typedef int tg_fault_unused; /* ISO C wants a translation unit to declare something */
#endif
