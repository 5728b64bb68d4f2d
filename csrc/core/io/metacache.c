/*
 * metacache.c - what opens of URLs learnt, kept across opens.
 *
 * An entry is keyed by the resolved URL and the identity that signs its
 * requests (remote.c makes the key), and holds the object's size, its
 * ETag and Last-Modified, and its first bytes (the primary header and, for
 * a tile-compressed image, the tile table). The entries hold at most
 * TF_OPT_REMOTE_META_MB MiB in all; the least recently used is dropped
 * first. A handful of hundreds of entries at most, so a linear search.
 * Nothing here checks a version: remote.c makes every request of a file
 * opened from an entry conditional on it, and drops the entry when the
 * server shows another version.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/internal.h"

typedef struct meta_entry {
    char *key;
    int64_t size;
    char *etag, *lastmod;
    char *first; /* the first `len` bytes of the object */
    int64_t len;
    uint64_t used;
} meta_entry;

static meta_entry *meta;
static int nmeta, meta_cap;
static size_t meta_bytes;
static uint64_t meta_tick;
static pthread_mutex_t meta_lock = PTHREAD_MUTEX_INITIALIZER;

/* A fork while another thread holds the lock would leave the child's
 * cache locked for ever. */
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
static void before_fork(void) { pthread_mutex_lock(&meta_lock); }
static void after_fork(void) { pthread_mutex_unlock(&meta_lock); }
static void at_fork(void) { pthread_atfork(before_fork, after_fork, after_fork); }

static void lock(void) {
    pthread_once(&fork_once, at_fork);
    pthread_mutex_lock(&meta_lock);
}

/* Under meta_lock. */
static void meta_remove(int i) {
    meta_bytes -= (size_t)meta[i].len;
    free(meta[i].key);
    free(meta[i].etag);
    free(meta[i].lastmod);
    free(meta[i].first);
    meta[i] = meta[--nmeta];
}

static int meta_index(const char *key) {
    for (int i = 0; i < nmeta; i++)
        if (strcmp(meta[i].key, key) == 0) return i;
    return -1;
}

void tf_meta_drop(const char *key) {
    lock();
    int i = meta_index(key);
    if (i >= 0) meta_remove(i);
    pthread_mutex_unlock(&meta_lock);
}

void tf_meta_put(const char *key, int64_t size, const char *etag, const char *lastmod,
                 const char *first, int64_t len) {
    size_t max = tf_option_bytes(TF_OPT_REMOTE_META_MB);
    if (len <= 0 || (size_t)len > max) return;
    meta_entry e = {.key = strdup(key), .size = size, .etag = strdup(etag),
                    .lastmod = strdup(lastmod), .first = malloc((size_t)len), .len = len};
    if (!e.key || !e.etag || !e.lastmod || !e.first) goto fail;
    memcpy(e.first, first, (size_t)len);
    lock();
    int i = meta_index(key);
    if (i >= 0) meta_remove(i);
    while (nmeta && meta_bytes + (size_t)len > max) { /* the least recently used */
        int lru = 0;
        for (int k = 1; k < nmeta; k++)
            if (meta[k].used < meta[lru].used) lru = k;
        meta_remove(lru);
    }
    if (nmeta == meta_cap) {
        int cap = meta_cap ? 2 * meta_cap : 64;
        meta_entry *m = realloc(meta, (size_t)cap * sizeof *m);
        if (!m) {
            pthread_mutex_unlock(&meta_lock);
            goto fail;
        }
        meta = m;
        meta_cap = cap;
    }
    e.used = ++meta_tick;
    meta[nmeta++] = e;
    meta_bytes += (size_t)len;
    pthread_mutex_unlock(&meta_lock);
    return;
fail:
    free(e.key);
    free(e.etag);
    free(e.lastmod);
    free(e.first);
}

char *tf_meta_get(const char *key, int64_t *size, char *etag, size_t etag_len, char *lastmod,
                  size_t lastmod_len, int64_t *len) {
    size_t max = tf_option_bytes(TF_OPT_REMOTE_META_MB);
    char *copy = NULL;
    lock();
    if (!max)
        while (nmeta) meta_remove(nmeta - 1);
    int i = meta_index(key);
    if (i >= 0 && (copy = malloc((size_t)meta[i].len))) {
        meta_entry *e = &meta[i];
        memcpy(copy, e->first, (size_t)e->len);
        *len = e->len;
        *size = e->size;
        snprintf(etag, etag_len, "%s", e->etag);
        snprintf(lastmod, lastmod_len, "%s", e->lastmod);
        e->used = ++meta_tick;
    }
    pthread_mutex_unlock(&meta_lock);
    return copy;
}
