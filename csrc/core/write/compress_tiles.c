/*
 * compress_tiles.c - an image's tiles compressed on every core for the writer.
 *
 * cfitsio's fits_write_img compresses tile after tile on the calling
 * thread. Its codecs are plain functions of a buffer (exported by
 * libcfitsio: fits_rcomp, fits_rcomp_short, fits_rcomp_byte,
 * compress2mem_from_mem), so workers
 * here gather each tile's pixels in cfitsio's order (the first FITS axis
 * fastest), call the same codec with the same buffer size, and keep the
 * bytes; write.c then hands them to cfitsio in tile order, which writes
 * the table and heap as it would have. The file is byte for byte
 * cfitsio's (tests/test_write_fast.py).
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "../common/internal.h"
#include "compress_tiles.h"

/* libcfitsio's exported per-tile codecs (ricecomp.c, zcompress.c);
 * fitsio.h does not declare them. */
int fits_rcomp(int a[], int nx, unsigned char *c, int clen, int nblock);
int fits_rcomp_short(short a[], int nx, unsigned char *c, int clen, int nblock);
int fits_rcomp_byte(signed char a[], int nx, unsigned char *c, int clen, int nblock);
int compress2mem_from_mem(char *inmemptr, size_t inmemsize, char **buffptr, size_t *buffsize,
                          void *(*mem_realloc)(void *p, size_t newsize), size_t *filesize,
                          int *status);

typedef struct {
    tf_wtiles *t;
    int fd;                     /* FITS axes: dims[0] fastest */
    int64_t dims[TF_MAX_DIMS], tdim[TF_MAX_DIMS], ntile[TF_MAX_DIMS];
    int64_t maxtile;            /* pixels in a whole tile */
    int clen;                   /* cfitsio's buffer for one tile */
    atomic_llong next;
    atomic_int status;
} shared_t;

typedef struct {
    shared_t *s;
} job_t;

/* Tile k's pixels, the first FITS axis fastest, into buf; its count. */
static int64_t gather(const shared_t *s, int64_t k, char *buf) {
    const tf_wtiles *t = s->t;
    int64_t start[TF_MAX_DIMS] = {0}, len[TF_MAX_DIMS] = {0}, n = 1;
    for (int i = 0; i < s->fd; i++) {
        int64_t ti = k % s->ntile[i];
        k /= s->ntile[i];
        start[i] = ti * s->tdim[i];
        len[i] = s->dims[i] - start[i] < s->tdim[i] ? s->dims[i] - start[i] : s->tdim[i];
        n *= len[i];
    }
    const size_t es = t->elsize;
    const size_t line = (size_t)len[0] * es;
    int64_t c[TF_MAX_DIMS] = {0};  /* position within the tile, axes 1.. */
    char *out = buf;
    for (;;) {
        int64_t off = start[0], stride = s->dims[0];
        for (int i = 1; i < s->fd; i++) {
            off += (start[i] + c[i]) * stride;
            stride *= s->dims[i];
        }
        memcpy(out, (const char *)t->data + (size_t)off * es, line);
        out += line;
        int i = 1;
        for (; i < s->fd; i++) {
            if (++c[i] < len[i]) break;
            c[i] = 0;
        }
        if (i >= s->fd) break;
    }
    return n;
}

/* GZIP: the n values of pix made big-endian in place and, for GZIP_2,
 * their bytes shuffled by significance into shuf (cfitsio's
 * fits_shuffle_2bytes/4bytes); the bytes to compress. */
static char *gzip_input(const tf_wtiles *t, char *pix, char *shuf, int64_t n) {
    const size_t es = t->elsize;
    for (int64_t i = 0; i < n && es > 1; i++) {
        char *v = pix + (size_t)i * es;
        if (es == 2) {
            char a = v[0];
            v[0] = v[1];
            v[1] = a;
        } else {
            char a = v[0], b = v[1];
            v[0] = v[3];
            v[1] = v[2];
            v[2] = b;
            v[3] = a;
        }
    }
    if (t->codec != TF_CODEC_GZIP_2 || es == 1) return pix;
    for (int64_t i = 0; i < n; i++)
        for (size_t b = 0; b < es; b++) shuf[(size_t)b * (size_t)n + (size_t)i] = pix[(size_t)i * es + b];
    return shuf;
}

static void *worker(void *arg) {
    shared_t *s = ((job_t *)arg)->s;
    tf_wtiles *t = s->t;
    const int gzip = t->codec != TF_CODEC_RICE_1;
    char *pix = malloc((size_t)s->maxtile * t->elsize);
    char *shuf = gzip ? malloc((size_t)s->maxtile * t->elsize) : NULL;
    unsigned char *cbuf = gzip ? NULL : calloc((size_t)s->clen, 1);
    if (!pix || (gzip ? !shuf : !cbuf)) {
        atomic_store(&s->status, TF_ENOMEM);
        free(pix);
        free(shuf);
        free(cbuf);
        return NULL;
    }
    for (;;) {
        if (atomic_load_explicit(&s->status, memory_order_relaxed) != TF_OK) break;
        int64_t k = atomic_fetch_add(&s->next, 1);
        if (k >= t->ntiles) break;
        int64_t n = gather(s, k, pix);
        if (gzip) {
            /* Into a buffer of cfitsio's size, which it grows as it needs. */
            size_t size = (size_t)s->clen, out = 0;
            char *g = malloc(size);
            int st = 0;
            if (!g) {
                atomic_store(&s->status, TF_ENOMEM);
                break;
            }
            compress2mem_from_mem(gzip_input(t, pix, shuf, n), (size_t)n * t->elsize, &g, &size,
                                  realloc, &out, &st);
            if (st) {
                int code = g ? TF_EINVAL : TF_ENOMEM;  /* NULL: its realloc failed */
                free(g);
                int expected = TF_OK;
                if (atomic_compare_exchange_strong(&s->status, &expected, code))
                    t->failed_tile = k;
                break;
            }
            t->bytes[k] = (unsigned char *)g;
            t->lens[k] = out;
            continue;
        }
        int nel;
        if (t->elsize == 2)
            nel = fits_rcomp_short((short *)pix, (int)n, cbuf, s->clen, t->blocksize);
        else if (t->elsize == 1)
            nel = fits_rcomp_byte((signed char *)pix, (int)n, cbuf, s->clen, t->blocksize);
        else
            nel = fits_rcomp((int *)pix, (int)n, cbuf, s->clen, t->blocksize);
        if (nel < 0) {
            int expected = TF_OK;
            if (atomic_compare_exchange_strong(&s->status, &expected, TF_EINVAL))
                t->failed_tile = k;
            break;
        }
        unsigned char *b = malloc(nel ? (size_t)nel : 1);
        if (!b) {
            atomic_store(&s->status, TF_ENOMEM);
            break;
        }
        memcpy(b, cbuf, (size_t)nel);
        t->bytes[k] = b;
        t->lens[k] = (size_t)nel;
    }
    free(pix);
    free(shuf);
    free(cbuf);
    return NULL;
}

int tf_wtiles_compress(tf_wtiles *t) {
    t->ntiles = 0;
    t->bytes = NULL;
    t->lens = NULL;
    t->failed_tile = -1;
    if (t->ndim < 1 || t->ndim > TF_MAX_DIMS) return TF_EINVAL;
    if (t->codec == TF_CODEC_RICE_1 ? t->blocksize < 1
                                    : t->codec != TF_CODEC_GZIP_1 && t->codec != TF_CODEC_GZIP_2)
        return TF_EINVAL;
    if (t->elsize != 1 && t->elsize != 2 && t->elsize != 4) return TF_EINVAL;
    shared_t *s = calloc(1, sizeof *s);
    if (!s) return TF_ENOMEM;
    s->t = t;
    s->fd = t->ndim;
    int64_t ntiles = 1, total = 1;
    s->maxtile = 1;
    for (int i = 0; i < t->ndim; i++) {
        s->dims[i] = t->shape[t->ndim - 1 - i];
        s->tdim[i] = t->tile[t->ndim - 1 - i];
        if (s->dims[i] < 1 || s->tdim[i] < 1 || s->tdim[i] > s->dims[i]) {
            free(s);
            return TF_EINVAL;
        }
        s->ntile[i] = (s->dims[i] + s->tdim[i] - 1) / s->tdim[i];
        ntiles *= s->ntile[i];
        s->maxtile *= s->tdim[i];
        total *= s->dims[i];
    }
    /* imcomp_calc_max_elem: RICE_1; GZIP (the output does not depend on it) */
    int64_t clen = t->codec == TF_CODEC_RICE_1
                       ? (t->elsize == 2 ? 2 : 4) * s->maxtile + s->maxtile / t->blocksize + 2 + 4
                       : (int64_t)t->elsize * s->maxtile + 601;
    if (s->maxtile > INT32_MAX / 8 || clen > INT32_MAX) {
        free(s);
        return TF_EINVAL;
    }
    s->clen = (int)clen;
    t->ntiles = ntiles;
    t->bytes = calloc((size_t)ntiles, sizeof *t->bytes);
    t->lens = calloc((size_t)ntiles, sizeof *t->lens);
    if (!t->bytes || !t->lens) {
        free(s);
        return TF_ENOMEM;
    }
    atomic_init(&s->next, 0);
    atomic_init(&s->status, TF_OK);
    /* A thread per 256 KiB of pixels at least, one per core at most. */
    int64_t bytes = total * (int64_t)t->elsize;
    int threads = tf_auto_threads(t->threads);
    if (threads > bytes / (256 << 10)) threads = (int)(bytes / (256 << 10));
    if (threads > ntiles) threads = (int)ntiles;
    if (threads < 1) threads = 1;
    job_t jobs[TF_MAX_THREADS];
    for (int i = 0; i < threads; i++) jobs[i].s = s;
    tf_run_jobs(worker, jobs, sizeof jobs[0], threads);
    int rc = atomic_load(&s->status);
    free(s);
    return rc;
}

void tf_wtiles_free(tf_wtiles *t) {
    if (t->bytes)
        for (int64_t k = 0; k < t->ntiles; k++) free(t->bytes[k]);
    free(t->bytes);
    free(t->lens);
    t->bytes = NULL;
    t->lens = NULL;
}
