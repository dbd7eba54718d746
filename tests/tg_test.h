/* tests/tg_test.h — the few macros the C tests use. Each test binary prints
 * "N passed, N failed" last and exits non-zero on any failure. */
#ifndef TG_TEST_H
#define TG_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int tg_test_passed, tg_test_failed;

#define CHECK(cond)                                                                            \
    do {                                                                                       \
        if (cond) {                                                                            \
            tg_test_passed++;                                                                  \
        } else {                                                                               \
            tg_test_failed++;                                                                  \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                    \
        }                                                                                      \
    } while (0)

#define CHECKF(cond, ...)                                                                      \
    do {                                                                                       \
        if (cond) {                                                                            \
            tg_test_passed++;                                                                  \
        } else {                                                                               \
            tg_test_failed++;                                                                  \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                    \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fprintf(stderr, "\n");                                                             \
        }                                                                                      \
    } while (0)

/* Checks a tg_status call succeeded; prints the error message otherwise. */
#define CHECK_OK(call, errp)                                                                   \
    do {                                                                                       \
        tg_status st_ = (call);                                                                \
        CHECKF(st_ == TG_OK, "%s -> %s: %s", #call, tg_status_str(st_), (errp)->msg);          \
    } while (0)

#define TEST_MAIN_END()                                                                        \
    do {                                                                                       \
        printf("%d passed, %d failed\n", tg_test_passed, tg_test_failed);                      \
        return tg_test_failed ? 1 : 0;                                                         \
    } while (0)

#endif
