#include "core/env.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

tg_status tg_env_get_double(const char *name, double *v, tg_error *err) {
    const char *s = getenv(name);
    if (!s || !*s) return TG_OK;
    char *end = NULL;
    errno = 0;
    double x = strtod(s, &end);
    if (errno || end == s || *end != '\0')
        return tg_error_set(err, TG_ERR_CONFIG, "environment %s=%s is not a number", name, s);
    *v = x;
    return TG_OK;
}

tg_status tg_env_get_count(const char *name, long long *v, tg_error *err) {
    const char *s = getenv(name);
    if (!s || !*s) return TG_OK;
    char *end = NULL;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno || end == s || *end != '\0' || x < 0)
        return tg_error_set(err, TG_ERR_CONFIG, "environment %s=%s is not an integer >= 0", name, s);
    *v = x;
    return TG_OK;
}

tg_status tg_env_get_flag(const char *name, int *v, tg_error *err) {
    const char *s = getenv(name);
    if (!s || !*s) return TG_OK;
    if (strcmp(s, "0") != 0 && strcmp(s, "1") != 0)
        return tg_error_set(err, TG_ERR_CONFIG, "%s=%s: expected 0 or 1", name, s);
    *v = s[0] == '1';
    return TG_OK;
}
