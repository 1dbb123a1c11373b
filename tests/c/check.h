/* The C tests' checks: a failed CHECK prints where and why, counts, and the test goes on. */
#ifndef TMAC_TEST_CHECK_H
#define TMAC_TEST_CHECK_H

#include <stdio.h>

#include "tmac.h"

static int failures = 0;

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                   \
            fputc('\n', stderr);                                            \
            failures++;                                                     \
        }                                                                   \
    } while (0)

#define CHECK_STATUS(expr, want)                                                    \
    do {                                                                            \
        tmac_status got_ = (expr);                                                  \
        CHECK(got_ == (want), "%s returned %d (%s), expected %d: %s", #expr,        \
              (int)got_, tmac_status_str(got_), (int)(want), tmac_last_error(NULL)); \
    } while (0)

#endif
