/* core/env.h — the one parser of environment switches (the few settings that must be known
 * before a config exists, e.g. how comm/ starts). A value is the whole string; an unset or
 * empty variable leaves *v unchanged; anything else is TG_ERR_CONFIG naming the variable. */
#ifndef TG_ENV_H
#define TG_ENV_H

#include "core/status.h"

tg_status tg_env_get_double(const char *name, double *v, tg_error *err);
/* An integer >= 0. */
tg_status tg_env_get_count(const char *name, long long *v, tg_error *err);
/* 0 or 1. */
tg_status tg_env_get_flag(const char *name, int *v, tg_error *err);

#endif
