/*
 * unpack.c - compressed files (.fits.gz, .fits.Z) unpacked into memory.
 *
 * The kind of compression is read from the file's first bytes, never from
 * its name (cfitsio sends any name with ".Z" in it, a directory "run.Zoom/"
 * included, to its LZW decoder): gzip (1f 8b) is inflated by zlib, every
 * member of it, as gzip(1) and astropy read it; compress (1f 9d, LZW) by
 * cfitsio's decoder (zuncompress2mem). pack, LZH and zip are refused.
 *
 * The output is bounded by TF_OPT_UNPACK_MAX_MB (4096 MiB by default).
 * cfitsio's own open (mem_compress_open) grows its buffer for as long as
 * the stream goes on: a 9 MB gzip file of a 10x10 image followed by 2 GiB
 * of zeros took 2.2 GB and 10 s to open, and deflate packs 1,000 bytes
 * into one, so 20 MB would have asked for 20 GB. A stream cut short gives
 * what it holds (the core then reports the missing data).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "../common/internal.h"

int zuncompress2mem(char *filename, FILE *diskfile, char **buffptr, size_t *buffsize,
                    void *(*mem_realloc)(void *p, size_t newsize), size_t *filesize, int *status);

int tf_is_compressed(const unsigned char *m, size_t n) {
    if (n >= 2 && m[0] == 0x1f && (m[1] == 0x8b || m[1] == 0x9d || m[1] == 0x1e || m[1] == 0xa0))
        return 1;
    if (n >= 4 && m[0] == 'P' && m[1] == 'K' && m[2] == 3 && m[3] == 4) return 1;
    return 0;
}

/* Unpacked bytes live in a block that records its capacity in front, so
 * that cfitsio's LZW decoder can grow it through lzw_realloc. */
#define HEAD 16

static void *block_alloc(size_t capacity) {
    unsigned char *b = malloc(HEAD + capacity);
    if (!b) return NULL;
    *(size_t *)b = capacity;
    return b + HEAD;
}

static size_t block_capacity(void *p) { return *(size_t *)((unsigned char *)p - HEAD); }

/* p with room for `capacity` bytes (it may move); NULL, p still valid,
 * when memory runs out. */
static void *block_resize(void *p, size_t capacity) {
    unsigned char *b = realloc((unsigned char *)p - HEAD, HEAD + capacity);
    if (!b) return NULL;
    *(size_t *)b = capacity;
    return b + HEAD;
}

static void block_free(void *p) {
    if (p) free((unsigned char *)p - HEAD);
}

static int too_big(tf_file *f, size_t limit) {
    return tf_fail(f, TF_ELIMIT, 0,
                   "the compressed file unpacks to more than %zu MiB (the limit set by "
                   "torchfits_ops.set_unpack_max_mb or TORCHFITS_UNPACK_MAX_MB)",
                   limit >> 20);
}

/* First room for the unpacked bytes: what the gzip trailer says, but no
 * more than 64 times the file (a trailer can lie, and gives only the last
 * member's size; the block grows as the stream proves it needs more). */
static size_t first_capacity(tf_file *f, size_t limit) {
    size_t cap = (size_t)f->file_size * 3;
    unsigned char t[4];
    int err;
    if (f->file_size >= 18 && tf_source_read(&f->src, t, 4, f->file_size - 4, &err) == TF_OK) {
        uint64_t isize = t[0] | (uint64_t)t[1] << 8 | (uint64_t)t[2] << 16 | (uint64_t)t[3] << 24;
        if (f->file_size > 10000)
            while (isize < (uint64_t)f->file_size) isize += (uint64_t)1 << 32;
        cap = (size_t)isize;
    }
    if (cap / 64 > (size_t)f->file_size) cap = (size_t)f->file_size * 64;
    if (cap > limit) cap = limit;
    return cap < 2880 ? 2880 : cap;
}

/* Where the next gzip member begins at or after `at`: zero bytes between
 * members are passed over, as Python's gzip module (astropy) does. Returns
 * -1 at the end of the file or before anything that is not a member
 * (trailing bytes are left out, as gzip(1) does). */
static int64_t next_member(tf_file *f, int64_t at) {
    unsigned char b[4096];
    while (at < f->file_size) {
        int err = 0;
        int64_t got = f->src.read(&f->src, b, sizeof b, at, &err);
        if (got <= 0) return -1;
        int64_t i = 0;
        while (i < got && b[i] == 0) i++;
        at += i;
        if (i < got) break;
    }
    unsigned char magic[2];
    int err;
    if (at + 2 > f->file_size || tf_source_read(&f->src, magic, 2, at, &err) != TF_OK) return -1;
    return magic[0] == 0x1f && magic[1] == 0x8b ? at : -1;
}

static int unpack_gzip(tf_file *f, size_t limit, unsigned char **out, size_t *len) {
    int rc = TF_OK;
    size_t cap = first_capacity(f, limit), have = 0;
    unsigned char *buf = block_alloc(cap), in[1 << 16];
    z_stream z = {0};
    int zinit = 0;
    GOTO_ERROR_IF(!buf, f, TF_ENOMEM, "out of memory");
    GOTO_ERROR_IF(inflateInit2(&z, 15 + 16) != Z_OK, f, TF_ENOMEM, "out of memory");
    zinit = 1;
    int64_t at = 0; /* file offset of the next input byte to read */
    for (;;) {
        if (z.avail_in == 0) {
            int err = 0;
            int64_t got = f->src.read(&f->src, in, sizeof in, at, &err);
            GOTO_ERROR_IF(got < 0, f, TF_EIO, "cannot read the file: %s", strerror(err));
            if (got == 0) break; /* cut short: what it held */
            at += got;
            z.next_in = in;
            z.avail_in = (uInt)got;
        }
        if (have == cap) {
            if (cap >= limit) {
                rc = too_big(f, limit);
                goto cleanup;
            }
            size_t grown = cap > limit / 2 ? limit : cap * 2;
            unsigned char *b = block_resize(buf, grown);
            GOTO_ERROR_IF(!b, f, TF_ENOMEM, "out of memory");
            buf = b;
            cap = grown;
        }
        size_t room = cap - have > UINT_MAX ? UINT_MAX : cap - have;
        z.next_out = buf + have;
        z.avail_out = (uInt)room;
        int zr = inflate(&z, Z_NO_FLUSH);
        have += room - z.avail_out;
        GOTO_ERROR_IF(zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR, f, TF_ENOTFITS,
                      "cannot unpack the compressed file: %s", z.msg ? z.msg : "bad stream");
        if (zr == Z_STREAM_END) {
            /* The member ended: another may follow (cat a.gz b.gz). */
            int64_t next = next_member(f, at - (int64_t)z.avail_in);
            if (next < 0) break;
            GOTO_ERROR_IF(inflateReset(&z) != Z_OK, f, TF_ENOMEM, "out of memory");
            at = next;
            z.avail_in = 0;
        }
    }
    *out = buf;
    *len = have;
    buf = NULL;
cleanup:
    if (zinit) inflateEnd(&z);
    block_free(buf);
    return rc;
}

/* The compress decoder reads a FILE: one over the file's source, with its
 * own position (no dup, no shared offset). */
typedef struct cookie {
    const tf_source *src;
    int64_t at;
} cookie;

static ssize_t cookie_read(void *c, char *buf, size_t n) {
    cookie *k = c;
    int err = 0;
    int64_t got = k->src->read(k->src, buf, n, k->at, &err);
    if (got > 0) k->at += got;
    return (ssize_t)got;
}

static int cookie_close(void *c) { return 0; }

/*
 * cfitsio's compress decoder keeps its state in globals, and tells of its
 * growth only through the realloc it is given: one unpack at a time, with
 * its arguments and results kept here. Its output routine (write_buf)
 * copies into whatever that realloc returns, NULL included (a SIGSEGV in
 * cfitsio 4.2 whenever memory runs out), so past the limit the realloc
 * does not return: it jumps back to unpack_lzw. No frame in between holds
 * a lock or an allocation, and the decoder resets its globals on each
 * call.
 */
static pthread_mutex_t lzw_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    size_t limit, cap, size;
    char *buf;   /* the block as zuncompress2mem sees it */
    void *block; /* the block the realloc last handed out */
    int st, bad, refused, nomem;
    jmp_buf back;
} lzw;

static void *lzw_realloc(void *p, size_t n) {
    if (!p || n > lzw.limit) {
        lzw.refused = 1;
        longjmp(lzw.back, 1);
    }
    size_t cap = block_capacity(p);
    if (n <= cap) return p;
    cap = cap > lzw.limit / 2 ? lzw.limit : cap * 2;
    if (!(p = block_resize(p, cap < n ? n : cap))) {
        lzw.nomem = 1;
        longjmp(lzw.back, 1);
    }
    return lzw.block = p;
}

static int unpack_lzw(tf_file *f, size_t limit, unsigned char **out, size_t *len) {
    cookie k = {&f->src, 0};
    FILE *in = fopencookie(&k, "rb", (cookie_io_functions_t){cookie_read, NULL, NULL,
                                                             cookie_close});
    if (!in) return tf_fail(f, TF_ENOMEM, 0, "out of memory");
    int rc = TF_OK;
    size_t cap = first_capacity(f, limit);
    /* The decoder names its input in cfitsio's messages only. */
    char name[] = "compressed file";
    pthread_mutex_lock(&lzw_lock);
    lzw.limit = limit;
    lzw.cap = cap;
    lzw.size = 0;
    lzw.block = lzw.buf = block_alloc(cap);
    lzw.st = lzw.bad = lzw.refused = lzw.nomem = 0;
    /* It returns -1 without a status for a stream that is not compress's. */
    if (lzw.buf && setjmp(lzw.back) == 0)
        lzw.bad = zuncompress2mem(name, in, &lzw.buf, &lzw.cap, lzw_realloc, &lzw.size, &lzw.st);
    int refused = lzw.refused, nomem = !lzw.block || lzw.nomem, bad = lzw.bad || lzw.st;
    int st = lzw.st;
    void *buf = lzw.block;
    size_t size = lzw.size;
    pthread_mutex_unlock(&lzw_lock);
    fclose(in);
    if (refused) rc = too_big(f, limit);
    else if (nomem) rc = tf_fail(f, TF_ENOMEM, 0, "out of memory");
    else if (bad) rc = tf_fail(f, TF_ENOTFITS, st, "cannot unpack the compressed (LZW) file");
    if (rc != TF_OK) {
        block_free(buf);
        return rc;
    }
    *out = buf;
    *len = size;
    return TF_OK;
}

int tf_unpack(tf_file *f, const unsigned char *m, size_t n, size_t guard, unsigned char **out,
              size_t *len) {
    size_t limit = tf_option_bytes(TF_OPT_UNPACK_MAX_MB), have = 0;
    unsigned char *buf = NULL;
    if (n >= 2 && m[0] == 0x1f && m[1] == 0x8b)
        FORWARD_IF_ERROR(unpack_gzip(f, limit, &buf, &have));
    else if (n >= 2 && m[0] == 0x1f && m[1] == 0x9d)
        FORWARD_IF_ERROR(unpack_lzw(f, limit, &buf, &have));
    else
        return tf_fail(f, TF_ENOTFITS, 0,
                       "not a FITS file: it is compressed with %s; only gzip and compress "
                       "(.Z) files are unpacked",
                       m[0] == 'P' ? "zip" : m[1] == 0x1e ? "pack" : "LZH");
    /* To size: a trailer that claimed more leaves no unused room, and
     * `guard` zero bytes follow. */
    unsigned char *b = block_resize(buf, have + guard);
    if (!b) {
        block_free(buf);
        return tf_fail(f, TF_ENOMEM, 0, "out of memory");
    }
    memset(b + have, 0, guard);
    *out = b;
    *len = have;
    return TF_OK;
}

void *tf_membuf_alloc(size_t n) { return block_alloc(n); }

void tf_membuf_free(void *p) { block_free(p); }
