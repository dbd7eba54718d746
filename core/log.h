/* core/log.h — progress/diagnostic output to stderr.
 * The logger is a value passed around (no global): it carries the rank so only the caller
 * decides who prints. Level: 0 quiet, 1 info, 2 debug. */
#ifndef TG_LOG_H
#define TG_LOG_H

typedef struct {
    int rank;   /* printed as a prefix when world > 1 */
    int world;
    int level;
} tg_log;

void tg_log_info(const tg_log *lg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tg_log_warn(const tg_log *lg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tg_log_debug(const tg_log *lg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
