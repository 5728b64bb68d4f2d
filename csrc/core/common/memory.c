/*
 * memory.c - hints about output buffers.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <sys/mman.h>

#include "internal.h"

void tf_advise_huge(void *p, size_t n, size_t min_bytes) {
#ifdef MADV_HUGEPAGE
    const uintptr_t huge = (uintptr_t)2 << 20;
    if (n < min_bytes || n < 2 * huge) return;
    uintptr_t a = ((uintptr_t)p + huge - 1) & ~(huge - 1);
    uintptr_t b = ((uintptr_t)p + n) & ~(huge - 1);
    if (b > a) (void)madvise((void *)a, b - a, MADV_HUGEPAGE);
#else
    (void)p;
    (void)n;
    (void)min_bytes;
#endif
}
