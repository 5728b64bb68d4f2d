/*
 * memory.c - output buffers: hints, and large blocks kept for reuse.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
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

/* Blocks of BLOCK_MIN bytes and more are mappings of their own, and the
 * last few freed are kept for the next output instead of unmapped. glibc
 * maps and unmaps every block that large on each call, so a loop reading
 * 64 MB images paid, per read, the kernel zeroing 64 MB of fresh pages
 * and faulting them in, and each unmap stalled the page faults of every
 * other thread of the process. Smaller blocks come from malloc, which
 * recycles them itself. */
#define BLOCK_MIN ((size_t)32 << 20)
#define BLOCK_SLOTS 4

typedef struct {
    void *p; /* NULL: a free slot */
    size_t len;
    uint64_t freed; /* when it was kept */
} kept_block;

static kept_block kept[BLOCK_SLOTS];
static uint64_t kept_clock;
static pthread_mutex_t block_lock = PTHREAD_MUTEX_INITIALIZER;

/* TF_OPT_KEEP_MB, read on each call (a process may change it). */
static size_t keep_limit(void) { return tf_option_bytes(TF_OPT_KEEP_MB); }

/* A fork while another thread holds the lock would leave it held forever
 * in the child (DataLoader workers fork). The child lets go of the kept
 * blocks: reusing one would copy each page the parent still shares
 * before overwriting it, dearer than a fresh page. */
static void block_lock_fork(void) { pthread_mutex_lock(&block_lock); }
static void block_unlock_fork(void) { pthread_mutex_unlock(&block_lock); }
static void block_child_fork(void) {
    for (int i = 0; i < BLOCK_SLOTS; i++)
        if (kept[i].p) {
            munmap(kept[i].p, kept[i].len);
            kept[i].p = NULL;
        }
    pthread_mutex_unlock(&block_lock);
}
static void register_fork_handlers(void) {
    pthread_atfork(block_lock_fork, block_unlock_fork, block_child_fork);
}

void *tf_block_alloc(size_t bytes, size_t *len) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    *len = 0;
    if (bytes < BLOCK_MIN) return malloc(bytes ? bytes : 1);
    size_t page = 4096, want = bytes + page - 1;
    if (want < bytes) return NULL;
    want &= ~(page - 1);
    pthread_once(&once, register_fork_handlers);
    /* The smallest kept block that fits without wasting over a quarter. */
    void *p = NULL;
    pthread_mutex_lock(&block_lock);
    int best = -1;
    for (int i = 0; i < BLOCK_SLOTS; i++)
        if (kept[i].p && kept[i].len >= want && kept[i].len - want <= want / 4 &&
            (best < 0 || kept[i].len < kept[best].len))
            best = i;
    if (best >= 0) {
        p = kept[best].p;
        *len = kept[best].len;
        kept[best].p = NULL;
    }
    pthread_mutex_unlock(&block_lock);
    if (p) return p;
    p = mmap(NULL, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    tf_advise_huge(p, want, 0);
    *len = want;
    return p;
}

void tf_block_free(void *p, size_t len) {
    if (!p) return;
    if (len == 0) {
        free(p);
        return;
    }
    size_t limit = keep_limit();
    kept_block drop[BLOCK_SLOTS + 1];
    int ndrop = 0;
    pthread_mutex_lock(&block_lock);
    if (len <= limit) {
        /* Make room: a free slot and at most `limit` bytes kept, dropping
         * the blocks kept longest first. */
        for (;;) {
            size_t total = len;
            int slot = -1, oldest = -1;
            for (int i = 0; i < BLOCK_SLOTS; i++) {
                if (!kept[i].p) {
                    slot = i;
                    continue;
                }
                total += kept[i].len;
                if (oldest < 0 || kept[i].freed < kept[oldest].freed) oldest = i;
            }
            if (slot >= 0 && total <= limit) {
                kept[slot] = (kept_block){p, len, ++kept_clock};
                p = NULL;
                break;
            }
            drop[ndrop++] = kept[oldest];
            kept[oldest].p = NULL;
        }
    }
    pthread_mutex_unlock(&block_lock);
    if (p) drop[ndrop++] = (kept_block){p, len, 0};
    for (int i = 0; i < ndrop; i++) munmap(drop[i].p, drop[i].len);
}

int tf_fail_alloc(tf_file *f, int hdu, size_t bytes, const char *what, const char *cause) {
    if (!f) return TF_ENOMEM;
    f->err_hdu = hdu;
    return tf_fail(f, TF_ENOMEM, 0, "cannot allocate %zu bytes for %s%s%s%s", bytes,
                   what ? what : "the output", cause && *cause ? " (" : "",
                   cause ? cause : "", cause && *cause ? ")" : "");
}
