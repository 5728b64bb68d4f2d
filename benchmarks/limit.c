/*
 * limit.c - the physical minimum of reading FITS pixels, the yardstick of
 * the image benchmarks. bench_images.py builds it with cc as a shared
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
 *   cc -O3 -shared -fPIC -o liblimit.so limit.c
 */
#define _GNU_SOURCE
#include <fcntl.h>
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
