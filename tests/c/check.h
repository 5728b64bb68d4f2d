/*
 * check.h - the check macro and tally of the C unit tests.
 *
 * CHECK(cond) counts a pass or prints the failed condition with its line;
 * check_report() prints "N passed, M failed" and returns the exit status.
 */
#ifndef TORCHFITS_TEST_CHECK_H
#define TORCHFITS_TEST_CHECK_H

#include <stdio.h>

static int passed, failed;

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (cond) passed++;                                                      \
        else { failed++; fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); } \
    } while (0)

static int check_report(void) {
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}

#endif /* TORCHFITS_TEST_CHECK_H */
