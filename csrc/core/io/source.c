/*
 * source.c - opening a local file, and reading sources with pread.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/internal.h"

int64_t tf_pread_upto(int fd, void *buf, size_t n, int64_t off) {
    char *p = buf;
    size_t done = 0;
    while (done < n) {
        ssize_t got = pread(fd, p + done, n - done, (off_t)(off + (int64_t)done));
        if (got < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (got == 0) break;
        done += (size_t)got;
    }
    return (int64_t)done;
}

int tf_pread_exact(int fd, void *buf, size_t n, int64_t off, int *err) {
    *err = 0;
    int64_t got = tf_pread_upto(fd, buf, n, off);
    if (got < 0) {
        *err = errno;
        return TF_EIO;
    }
    return (size_t)got == n ? TF_OK : TF_ECORRUPT;
}

static int64_t fd_read(const tf_source *s, void *buf, size_t n, int64_t off, int *err) {
    int64_t got = tf_pread_upto((int)(intptr_t)s->ctx, buf, n, off);
    if (got < 0) *err = errno;
    return got;
}

void tf_source_fd(tf_source *s, int fd, int64_t size) {
    *s = (tf_source){.read = fd_read, .ctx = (void *)(intptr_t)fd, .size = size};
}

static int64_t memory_read(const tf_source *s, void *buf, size_t n, int64_t off, int *err) {
    if (off < 0 || off >= s->size) return 0;
    if ((int64_t)n > s->size - off) n = (size_t)(s->size - off);
    memcpy(buf, (const char *)s->ctx + off, n);
    return (int64_t)n;
}

void tf_source_memory(tf_source *s, const void *p, size_t n) {
    *s = (tf_source){.read = memory_read, .ctx = (void *)p, .size = (int64_t)n};
}

int tf_source_read(const tf_source *s, void *buf, size_t n, int64_t off, int *err) {
    *err = 0;
    char *p = buf;
    while (n > 0) {
        int64_t got = s->read(s, p, n, off, err);
        if (got < 0) return TF_EIO;
        if (got == 0) return TF_ECORRUPT;
        p += got;
        n -= (size_t)got;
        off += got;
    }
    return TF_OK;
}

int tf_read_full(tf_file *f, void *buf, size_t n, int64_t off) {
    int err = 0;
    int64_t got = 0;
    while ((size_t)got < n) {
        int64_t k = f->src.read(&f->src, (char *)buf + got, n - (size_t)got, off + got, &err);
        if (k < 0)
            return tf_fail(f, TF_EIO, 0, "read of %zu bytes at offset %lld failed: %s", n,
                           (long long)off, strerror(err));
        if (k == 0) break;
        got += k;
    }
    if ((size_t)got < n)
        return tf_fail(f, TF_ECORRUPT, 0, "file is truncated: data ends at byte %lld",
                       (long long)(off + got));
    return TF_OK;
}

/* What a file that is not a regular file is, for the message. */
static const char *file_kind(mode_t m) {
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a FIFO (named pipe)";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    return "not a regular file";
}

int tf_source_open_file(tf_file *f, const char *path) {
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
     * writer, forever; fstat then refuses it at once. */
    f->fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (f->fd < 0) {
        int e = errno;
        struct stat sb;
        /* A socket cannot be opened at all (ENXIO): say what it is. */
        if (e == ENXIO && stat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
            return tf_fail(f, TF_EOPEN, 0, "cannot open file: it is %s, not a regular file",
                           file_kind(sb.st_mode));
        return tf_fail(f, TF_EOPEN, 0, "cannot open file: %s", strerror(e));
    }
    struct stat sb;
    if (fstat(f->fd, &sb) != 0)
        return tf_fail(f, TF_EOPEN, 0, "cannot stat file: %s", strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return tf_fail(f, TF_EOPEN, 0, "cannot open file: it is %s, not a regular file",
                       file_kind(sb.st_mode));
    /* Reads block as usual (a network file system may honour the flag). */
    int fl = fcntl(f->fd, F_GETFL);
    if (fl >= 0) fcntl(f->fd, F_SETFL, fl & ~O_NONBLOCK);
    f->file_size = (int64_t)sb.st_size;
    return TF_OK;
}
