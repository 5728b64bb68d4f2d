/*
 * check.h - the check macro and tally of the C unit tests.
 *
 * CHECK(cond) counts a pass or prints the failed condition with its line;
 * check_report() prints "N passed, M failed" and returns the exit status;
 * next() gives the tests' pseudo-random numbers.
 */
#ifndef TORCHFITS_TEST_CHECK_H
#define TORCHFITS_TEST_CHECK_H

#include <stdint.h>
#include <stdio.h>

static int passed, failed;

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (cond) passed++;                                                      \
        else { failed++; fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); } \
    } while (0)

/* xorshift64: test data that is the same on every run. */
static uint64_t rng = 88172645463325252ull;
static inline uint32_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

static int check_report(void) {
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}

#endif /* TORCHFITS_TEST_CHECK_H */
