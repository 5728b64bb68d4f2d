/*
 * mapped.c - reading a file through a memory mapping, safely.
 *
 * A cutout of 64 rows from a large image is 64 short reads: as preads,
 * 64 system calls (about 50 us here); from a mapping, 64 copies from the
 * page cache (a few microseconds once the pages are mapped). A handle that
 * stays open across many reads (tf_map_file) therefore maps its file, and
 * small reads copy from the mapping.
 *
 * A mapping has one hazard preads do not: when the file is truncated by
 * someone else, touching a page past its new end raises SIGBUS, which would
 * kill the process. Copies from the mapping run inside tf_map_guarded: a
 * SIGBUS handler, installed on first use and put back if someone replaces
 * it, jumps out of the copy when the faulting thread is inside one, and the
 * read fails with TF_ECORRUPT ("the file shrank"). A SIGBUS anywhere else
 * goes to whatever handler was there before (or the default action).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "internal.h"

static _Thread_local sigjmp_buf *volatile bus_jump; /* set inside a guarded copy */
static struct sigaction bus_previous;
static pthread_mutex_t bus_lock = PTHREAD_MUTEX_INITIALIZER;

static void on_sigbus(int sig, siginfo_t *info, void *context) {
    (void)sig;
    (void)info;
    (void)context;
    sigjmp_buf *jump = bus_jump;
    if (jump) {
        bus_jump = NULL;
        siglongjmp(*jump, 1);
    }
    /* Not a copy of ours: the previous disposition acts when the access
     * faults again on return. */
    sigaction(SIGBUS, &bus_previous, NULL);
}

static int is_ours(const struct sigaction *sa) {
    return (sa->sa_flags & SA_SIGINFO) && sa->sa_sigaction == on_sigbus;
}

/* Our handler in place (again, if a library replaced it since). */
static int install_handler(void) {
    struct sigaction now;
    if (sigaction(SIGBUS, NULL, &now) != 0) return 0;
    if (is_ours(&now)) return 1;
    pthread_mutex_lock(&bus_lock);
    int ok = sigaction(SIGBUS, NULL, &now) == 0;
    if (ok && !is_ours(&now)) {
        struct sigaction sa = {0};
        sa.sa_sigaction = on_sigbus;
        /* SA_NODEFER: leaving by siglongjmp (which keeps the mask here)
         * must not leave SIGBUS blocked in the thread. */
        sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        ok = sigaction(SIGBUS, &sa, &now) == 0;
        if (ok) bus_previous = now;
    }
    pthread_mutex_unlock(&bus_lock);
    return ok;
}

int tf_map_guarded(int (*copy)(void *), void *arg, int *faulted) {
    *faulted = 0;
    if (!install_handler()) return -1;
    sigjmp_buf jump;
    if (sigsetjmp(jump, 0)) {
        *faulted = 1;
        return TF_ECORRUPT;
    }
    bus_jump = &jump;
    int rc = copy(arg);
    bus_jump = NULL;
    return rc;
}

/* Mappings are shared by the handles of one file (device, inode, size) in
 * the process, and the last MAP_KEEP stay mapped after their last handle
 * closes: a file opened again (a FitsFile per batch, a dataset reopened
 * each epoch) then finds its page tables filled instead of faulting on
 * every page again (a 64x64 cutout of an 8k x 8k float32 image touches 32
 * fault-around windows). A mapping is of the file itself, so it always
 * shows the file's current bytes; a file that changed size gets a mapping
 * of its new size, a replaced file (another inode) one of its own. */
#define MAP_KEEP 8

typedef struct map_entry {
    dev_t dev;
    ino_t ino;
    size_t len;
    const char *addr; /* NULL: a free slot */
    int refs;         /* handles using it */
    uint64_t used;    /* when last handed out */
} map_entry;

static map_entry map_cache[MAP_KEEP];
static uint64_t map_clock;
static pthread_mutex_t map_lock = PTHREAD_MUTEX_INITIALIZER;

/* A slot for a new mapping: a free one, else the least recently used one
 * no handle holds (unmapped now); -1 when every slot is in use. */
static int free_slot(void) {
    int best = -1;
    for (int i = 0; i < MAP_KEEP; i++) {
        if (!map_cache[i].addr) return i;
        if (map_cache[i].refs == 0 && (best < 0 || map_cache[i].used < map_cache[best].used))
            best = i;
    }
    if (best >= 0) munmap((void *)map_cache[best].addr, map_cache[best].len);
    return best;
}

/* A fork while another thread holds a lock would leave it held forever
 * in the child (DataLoader workers fork): hold both across fork. */
static void before_fork(void) {
    pthread_mutex_lock(&bus_lock);
    pthread_mutex_lock(&map_lock);
}

static void after_fork(void) {
    pthread_mutex_unlock(&map_lock);
    pthread_mutex_unlock(&bus_lock);
}

static void register_fork_handlers(void) { pthread_atfork(before_fork, after_fork, after_fork); }

int tf_map_file(tf_file *f) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, register_fork_handlers);
    FORWARD_IF_ERROR(tf_check_handle_lazy(f));
    if (f->map || f->fd < 0 || !f->plain || f->file_size <= 0) return TF_OK;
    struct stat sb;
    if (fstat(f->fd, &sb) != 0 || !S_ISREG(sb.st_mode) || (int64_t)sb.st_size != f->file_size)
        return TF_OK;
    size_t len = (size_t)f->file_size;
    pthread_mutex_lock(&map_lock);
    for (int i = 0; i < MAP_KEEP; i++) {
        map_entry *e = &map_cache[i];
        if (e->addr && e->dev == sb.st_dev && e->ino == sb.st_ino && e->len == len) {
            e->refs++;
            e->used = ++map_clock;
            f->map = e->addr;
            f->map_len = len;
            f->map_slot = i;
            pthread_mutex_unlock(&map_lock);
            return TF_OK;
        }
    }
    void *m = mmap(NULL, len, PROT_READ, MAP_SHARED, f->fd, 0);
    if (m != MAP_FAILED) { /* else reads go on with pread */
        f->map = m;
        f->map_len = len;
        f->map_slot = free_slot();
        if (f->map_slot >= 0)
            map_cache[f->map_slot] = (map_entry){sb.st_dev, sb.st_ino, len, m, 1, ++map_clock};
    }
    pthread_mutex_unlock(&map_lock);
    return TF_OK;
}

void tf_unmap_file(tf_file *f) {
    if (!f->map) return;
    if (f->map_slot >= 0) {
        pthread_mutex_lock(&map_lock);
        map_cache[f->map_slot].refs--; /* stays mapped for the next open */
        pthread_mutex_unlock(&map_lock);
    } else {
        munmap((void *)f->map, f->map_len); /* every slot was in use: its own */
    }
    f->map = NULL;
    f->map_len = 0;
    f->map_slot = -1;
}
