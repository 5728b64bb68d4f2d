/*
 * limit.c - the physical minimum of reading FITS pixels, the yardstick of
 * the benchmarks. harness.limit_lib builds it with cc as a shared
 * library and calls it through ctypes, so it runs interleaved with the
 * other contenders in the same process.
 *
 * One call: open the file, take a buffer (malloc below 32 MiB, which glibc
 * recycles between calls; above that a fresh mapping with transparent huge
 * pages asked for), pread `nrows` spans of `row_bytes` bytes, `row_stride`
 * bytes apart, starting at `offset`, byte swap them in place, release the
 * buffer, close. A whole image is one span. No header is parsed: the
 * caller passes the data offset.
 *
 * limit_table_rows is the floor of any column selection of a binary table:
 * the rows interleave the columns (a 46-byte row puts every column in every
 * cache line and page), so every row must be read whatever is selected. It
 * preads `nbytes` from `offset` in blocks of `block` bytes into one reused
 * buffer per thread, split across `threads` threads as torchfits splits a
 * table read, and does nothing with the bytes.
 *
 *   cc -O3 -shared -fPIC -pthread -o liblimit.so limit.c
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MMAP_FROM (32u << 20)

static void swap_inplace(void *p, size_t nbytes, int elsize) {
    size_t n = nbytes / (size_t)elsize;
    if (elsize == 2) {
        uint16_t *q = p;
        for (size_t i = 0; i < n; i++) q[i] = __builtin_bswap16(q[i]);
    } else if (elsize == 4) {
        uint32_t *q = p;
        for (size_t i = 0; i < n; i++) q[i] = __builtin_bswap32(q[i]);
    } else if (elsize == 8) {
        uint64_t *q = p;
        for (size_t i = 0; i < n; i++) q[i] = __builtin_bswap64(q[i]);
    }
}

/* 0 on success, -1 on any failure. `out`, when not NULL, receives the first
 * byte read (so the work cannot be optimized away). */
int limit_read(const char *path, long long offset, long long row_stride, long long row_bytes,
               long long nrows, int elsize, unsigned char *out) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t total = (size_t)(row_bytes * nrows);
    int mapped = total >= MMAP_FROM;
    char *buf;
    if (mapped) {
        buf = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (buf == MAP_FAILED) { close(fd); return -1; }
        madvise(buf, total, MADV_HUGEPAGE);
    } else {
        buf = malloc(total ? total : 1);
        if (!buf) { close(fd); return -1; }
    }
    int rc = 0;
    char *dst = buf;
    for (long long r = 0; r < nrows && rc == 0; r++) {
        size_t done = 0, want = (size_t)row_bytes;
        off_t off = (off_t)(offset + r * row_stride);
        while (done < want) {
            ssize_t got = pread(fd, dst + done, want - done, off + (off_t)done);
            if (got <= 0) { rc = -1; break; }
            done += (size_t)got;
        }
        dst += row_bytes;
    }
    if (rc == 0) swap_inplace(buf, total, elsize);
    if (out && total) *out = (unsigned char)buf[0];
    if (mapped) munmap(buf, total);
    else free(buf);
    close(fd);
    return rc;
}

typedef struct rows_job {
    int fd;
    long long offset, nbytes, block;
    int rc;
} rows_job;

static void *rows_worker(void *arg) {
    rows_job *j = arg;
    char *buf = malloc((size_t)(j->block > 0 ? j->block : 1));
    if (!buf) { j->rc = -1; return NULL; }
    for (long long done = 0; done < j->nbytes;) {
        size_t want = (size_t)(j->nbytes - done < j->block ? j->nbytes - done : j->block);
        ssize_t got = pread(j->fd, buf, want, (off_t)(j->offset + done));
        if (got <= 0) { j->rc = -1; break; }
        done += got;
    }
    free(buf);
    return NULL;
}

/* 0 on success, -1 on any failure. */
int limit_table_rows(const char *path, long long offset, long long nbytes, long long rowlen,
                     long long block, int threads) {
    if (threads < 1 || threads > 64 || rowlen < 1 || block < rowlen) return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    rows_job jobs[64];
    pthread_t tids[64];
    int started[64] = {0};
    long long nrows = nbytes / rowlen, per = (nrows + threads - 1) / threads;
    block -= block % rowlen;  /* whole rows per block, as torchfits reads them */
    int n = 0;
    for (long long first = 0; first < nrows; first += per, n++)
        jobs[n] = (rows_job){fd, offset + first * rowlen,
                             (nrows - first < per ? nrows - first : per) * rowlen, block, 0};
    for (int t = 1; t < n; t++)
        started[t] = pthread_create(&tids[t], NULL, rows_worker, &jobs[t]) == 0;
    for (int t = 1; t < n; t++)
        if (!started[t]) rows_worker(&jobs[t]);
    if (n > 0) rows_worker(&jobs[0]);
    int rc = 0;
    for (int t = 0; t < n; t++) {
        if (t > 0 && started[t]) pthread_join(tids[t], NULL);
        if (jobs[t].rc) rc = -1;
    }
    close(fd);
    return rc;
}

/* The fraction of the file's pages in the page cache (mincore), or -1.
 * The cold-cache case checks with it that dropping the cache worked. */
double limit_resident(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    off_t size = lseek(fd, 0, SEEK_END);
    if (size <= 0) { close(fd); return size == 0 ? 0 : -1; }
    void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return -1;
    long page = sysconf(_SC_PAGESIZE);
    size_t pages = ((size_t)size + (size_t)page - 1) / (size_t)page;
    unsigned char *vec = malloc(pages);
    double frac = -1;
    if (vec && mincore(map, (size_t)size, vec) == 0) {
        size_t in = 0;
        for (size_t i = 0; i < pages; i++) in += vec[i] & 1;
        frac = (double)in / (double)pages;
    }
    free(vec);
    munmap(map, (size_t)size);
    return frac;
}

typedef struct part_job {
    int fd;
    char *dst;
    long long offset, nbytes;
    int elsize, rc;
} part_job;

static void *part_worker(void *arg) {
    part_job *j = arg;
    /* 256 KiB at a time, swapped while in cache, as a careful reader does */
    const long long chunk = 256 * 1024;
    for (long long done = 0; done < j->nbytes && j->rc == 0;) {
        long long want = j->nbytes - done < chunk ? j->nbytes - done : chunk;
        ssize_t got = pread(j->fd, j->dst + done, (size_t)want, (off_t)(j->offset + done));
        if (got <= 0) { j->rc = -1; break; }
        swap_inplace(j->dst + done, (size_t)got, j->elsize);
        done += got;
    }
    return NULL;
}

/* limit_read of one contiguous span split across `threads` threads (each
 * preads its part in 256 KiB chunks and swaps each chunk in cache): the
 * bound for a reader that uses every core. 0 on success, -1 on failure. */
int limit_read_mt(const char *path, long long offset, long long nbytes, int elsize, int threads) {
    if (threads < 1 || threads > 64 || (elsize != 1 && nbytes % elsize)) return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t total = (size_t)nbytes;
    int mapped = total >= MMAP_FROM;
    char *buf;
    if (mapped) {
        buf = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (buf == MAP_FAILED) { close(fd); return -1; }
        madvise(buf, total, MADV_HUGEPAGE);
    } else {
        buf = malloc(total ? total : 1);
        if (!buf) { close(fd); return -1; }
    }
    part_job jobs[64];
    pthread_t tids[64];
    int started[64] = {0};
    long long per = (nbytes / threads + 4095) & ~4095LL;
    int n = 0;
    for (long long first = 0; first < nbytes && n < threads; first += per, n++)
        jobs[n] = (part_job){fd, buf + first, offset + first,
                             nbytes - first < per ? nbytes - first : per, elsize, 0};
    for (int t = 1; t < n; t++)
        started[t] = pthread_create(&tids[t], NULL, part_worker, &jobs[t]) == 0;
    for (int t = 1; t < n; t++)
        if (!started[t]) part_worker(&jobs[t]);
    if (n > 0) part_worker(&jobs[0]);
    int rc = 0;
    for (int t = 0; t < n; t++) {
        if (t > 0 && started[t]) pthread_join(tids[t], NULL);
        if (jobs[t].rc) rc = -1;
    }
    if (mapped) munmap(buf, total);
    else free(buf);
    close(fd);
    return rc;
}

/* `n` cutouts from a file mapped once (as a reader keeping the file open
 * does): each takes a fresh buffer, copies `nrows` spans of `row_bytes`
 * bytes, `row_stride` apart, from its offset in `offsets`, byte swaps them
 * and releases the buffer. The bound of cutouts through an open file: no
 * call, no header, no tensor. 0 on success, -1 on failure. */
int limit_cutouts_mapped(const char *path, long long row_stride, long long row_bytes,
                         long long nrows, int elsize, int n, const long long *offsets) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    off_t size = lseek(fd, 0, SEEK_END);
    char *map = size > 0 ? mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
    close(fd);
    if (map == MAP_FAILED) return -1;
    int rc = 0;
    volatile unsigned char sink = 0;
    for (int k = 0; k < n && rc == 0; k++) {
        char *buf = malloc((size_t)(row_bytes * nrows));
        if (!buf) { rc = -1; break; }
        for (long long r = 0; r < nrows; r++) {
            long long at = offsets[k] + r * row_stride;
            if (at < 0 || at + row_bytes > (long long)size) { rc = -1; break; }
            memcpy(buf + r * row_bytes, map + at, (size_t)row_bytes);
        }
        swap_inplace(buf, (size_t)(row_bytes * nrows), elsize);
        sink ^= (unsigned char)buf[0];
        free(buf);
    }
    munmap(map, (size_t)size);
    return rc;
}

static void swap_copy(char *restrict dst, const char *restrict src, size_t nbytes, int elsize) {
    size_t n = nbytes / (size_t)(elsize > 0 ? elsize : 1);
    if (elsize == 2) {
        for (size_t i = 0; i < n; i++) {
            uint16_t v;
            memcpy(&v, src + 2 * i, 2);
            v = __builtin_bswap16(v);
            memcpy(dst + 2 * i, &v, 2);
        }
    } else if (elsize == 4) {
        for (size_t i = 0; i < n; i++) {
            uint32_t v;
            memcpy(&v, src + 4 * i, 4);
            v = __builtin_bswap32(v);
            memcpy(dst + 4 * i, &v, 4);
        }
    } else if (elsize == 8) {
        for (size_t i = 0; i < n; i++) {
            uint64_t v;
            memcpy(&v, src + 8 * i, 8);
            v = __builtin_bswap64(v);
            memcpy(dst + 8 * i, &v, 8);
        }
    } else {
        memcpy(dst, src, nbytes);
    }
}

/* The other way to the same pixels: map the file (page tables filled at
 * once, MAP_POPULATE), then one pass that copies and swaps out of the
 * mapping into a fresh buffer, on one thread; no kernel copy. With the
 * pread limits, the bound of a whole-image read. 0 on success, -1 on
 * failure. */
int limit_read_mapped(const char *path, long long offset, long long nbytes, int elsize) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    off_t size = lseek(fd, 0, SEEK_END);
    if (size < offset + nbytes || nbytes <= 0) { close(fd); return -1; }
    char *map = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return -1;
    size_t total = (size_t)nbytes;
    int mapped = total >= MMAP_FROM;
    char *buf;
    if (mapped) {
        buf = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (buf == MAP_FAILED) { munmap(map, (size_t)size); return -1; }
        madvise(buf, total, MADV_HUGEPAGE);
    } else {
        buf = malloc(total);
        if (!buf) { munmap(map, (size_t)size); return -1; }
    }
    swap_copy(buf, map + offset, total, elsize);
    volatile unsigned char sink = (unsigned char)buf[total - 1];
    (void)sink;
    if (mapped) munmap(buf, total);
    else free(buf);
    munmap(map, (size_t)size);
    return 0;
}
