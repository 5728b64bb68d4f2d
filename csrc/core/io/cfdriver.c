/*
 * cfdriver.c - cfitsio reads our sources through an I/O driver of ours.
 *
 * cfitsio opens files by name and interprets the name (extended filename
 * syntax, ~user, leading blanks, name.gz siblings, ".Z" anywhere, 1,024
 * bytes at most), and shares one FITSfile between two opens of the same
 * name, which is not safe across threads. So cfitsio never gets a user's
 * path: tf_cf_open puts the source in a slot of the table below and opens
 * "tfio://<id>", where <id> is a number never used before in the process
 * (a slot number plus a multiple of the table size), so no two open files
 * ever share a name, not even a file being closed and the next one put in
 * its slot (ffclos calls the driver's close before it forgets the name).
 * cfitsio parses such a name to itself, and hands "<id>" to our open.
 *
 * cfitsio's driver interface is a seek then a read per call on a handle;
 * each slot keeps its own position and a copy of the source, and reads it
 * with the source's read callback (pread for a file: no shared offset, so
 * handles on the same file are independent, as the tile readers need).
 * Only one thread uses a cfitsio handle at a time, so the position needs
 * no lock; the table's lock is taken to claim, open and release slots.
 *
 * Read-only: create, truncate, write and remove fail.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fitsio2.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/internal.h"

#define PREFIX "tfio://"
/* As many as cfitsio can have open (NMAXFILES). */
#define NSLOTS 10000

typedef struct slot {
    tf_source src;
    int64_t pos;
    uint64_t id;  /* the number in the name; id % NSLOTS is the slot */
    int refs;     /* tf_cf_open's claim, and cfitsio's open handle */
} slot;

static slot *slots;
static uint64_t claims;         /* claims so far: each id is claims * NSLOTS + slot */
static int hint;
static int registered = -1;     /* cfitsio status of the registration */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static int drv_open(char *name, int rwmode, int *handle) {
    char *end;
    errno = 0;
    uint64_t id = strtoull(name, &end, 10);
    if (rwmode != READONLY || errno || end == name || *end) return FILE_NOT_OPENED;
    int i = (int)(id % NSLOTS), st = FILE_NOT_OPENED;
    pthread_mutex_lock(&lock);
    if (slots[i].refs > 0 && slots[i].id == id) {
        slots[i].refs++;
        slots[i].pos = 0;
        *handle = i;
        st = 0;
    }
    pthread_mutex_unlock(&lock);
    return st;
}

static void release(int i) {
    pthread_mutex_lock(&lock);
    if (--slots[i].refs == 0) slots[i].src = (tf_source){0};
    pthread_mutex_unlock(&lock);
}

static int drv_close(int handle) {
    release(handle);
    return 0;
}

static int drv_size(int handle, LONGLONG *size) {
    *size = slots[handle].src.size;
    return 0;
}

static int drv_seek(int handle, LONGLONG offset) {
    if (offset < 0) return SEEK_ERROR;
    slots[handle].pos = offset;
    return 0;
}

/* cfitsio reads whole 2880-byte records. A file whose last record is cut
 * short (its final padding left out, or cut inside it) reads as if padded
 * with zeros, as its bytes read through the fast path, and as cfitsio's
 * memory driver read the small files before; a read past that record is
 * END_OF_FILE, an I/O error READ_ERROR. Nothing is read past the end. */
static int drv_read(int handle, void *buf, long n) {
    slot *s = &slots[handle];
    int64_t size = s->src.size, padded = (size + 2879) / 2880 * 2880;
    if (n < 0 || s->pos > padded || (int64_t)n > padded - s->pos) return END_OF_FILE;
    size_t have = s->pos >= size ? 0 : (int64_t)n < size - s->pos ? (size_t)n
                                                                  : (size_t)(size - s->pos);
    int err = 0;
    int rc = have ? tf_source_read(&s->src, buf, have, s->pos, &err) : TF_OK;
    if (rc == TF_ECORRUPT) return END_OF_FILE; /* the file shrank since */
    if (rc != TF_OK) return READ_ERROR;
    memset((char *)buf + have, 0, (size_t)n - have);
    s->pos += n;
    return 0;
}

static int drv_write(int handle, void *buf, long n) { return WRITE_ERROR; }
static int drv_flush(int handle) { return 0; }
static int drv_truncate(int handle, LONGLONG size) { return WRITE_ERROR; }
static int drv_create(char *name, int *handle) { return FILE_NOT_CREATED; }
static int drv_remove(char *name) { return FILE_NOT_OPENED; }
static int drv_checkfile(char *urltype, char *infile, char *outfile) { return 0; }

/* A fork while another thread holds the table's lock would leave it held
 * in the child (DataLoader workers fork). */
static void before_fork(void) { pthread_mutex_lock(&lock); }
static void after_fork(void) { pthread_mutex_unlock(&lock); }

static void register_driver(void) {
    slots = calloc(NSLOTS, sizeof *slots);
    if (!slots) {
        registered = MEMORY_ALLOCATION;
        return;
    }
    /* cfitsio registers its own drivers on first use; ours comes after. */
    int st = fits_init_cfitsio();
    if (!st)
        st = fits_register_driver(PREFIX, NULL, NULL, NULL, NULL, NULL, drv_checkfile,
                                  drv_open, drv_create, drv_truncate, drv_close, drv_remove,
                                  drv_size, drv_flush, drv_seek, drv_read, drv_write);
    if (!st) pthread_atfork(before_fork, after_fork, after_fork);
    registered = st;
}

int tf_cf_open(const tf_source *src, fitsfile **fp) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, register_driver);
    *fp = NULL;
    if (registered) return registered;

    int i = -1;
    uint64_t id = 0;
    pthread_mutex_lock(&lock);
    for (int k = 0; k < NSLOTS; k++) {
        int j = (hint + k) % NSLOTS;
        if (slots[j].refs == 0) {
            i = j;
            break;
        }
    }
    if (i >= 0) {
        hint = (i + 1) % NSLOTS;
        id = ++claims * NSLOTS + (uint64_t)i;
        slots[i] = (slot){*src, 0, id, 1};
    }
    pthread_mutex_unlock(&lock);
    if (i < 0) return TOO_MANY_FILES;

    char name[64];
    snprintf(name, sizeof name, PREFIX "%" PRIu64, id);
    int st = 0;
    fits_open_file(fp, name, READONLY, &st);
    if (st) *fp = NULL;
    release(i); /* cfitsio's open holds the slot until its close */
    return st;
}
