/*
 * compress_tiles.c - an image's tiles compressed on every core for the writer.
 *
 * cfitsio's fits_write_img compresses tile after tile on the calling
 * thread. Its codecs are plain functions of a buffer, so workers here
 * gather each tile's pixels in cfitsio's order (the first FITS axis
 * fastest), code them (Rice: the same bitstream as fits_rcomp*, written
 * faster, below; GZIP: cfitsio's exported compress2mem_from_mem) with the
 * same buffer size, and keep the bytes; write.c then hands them to cfitsio in tile order, which writes
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

/* ---- Rice coding, as cfitsio's fits_rcomp_byte/short/fits_rcomp ----
 *
 * The same bitstream as ricecomp.c (MSB first: the first value raw, then
 * per block of nblock pixels a split level fs in fsbits bits and each
 * mapped difference as a unary top and fs raw bits; fs >= fsmax: raw
 * differences; all zero: fs 0 alone), written through a 64-bit
 * accumulator instead of a byte at a time. The block's split level comes
 * from the same arithmetic: cfitsio's double sums of at most nblock values
 * below 2^32 are exact, so integer division gives the same truncation.
 * Returns the bytes written, -1 past clen, or -2 where ricecomp.c shifts a
 * negative int (int32 differences of 2^31 or more in a coded block): the
 * caller then asks cfitsio itself. */
typedef struct {
    unsigned char *p;
    uint64_t acc;   /* the low n bits are pending */
    int n;
} bits_t;

static inline void put_bits(bits_t *b, uint64_t v, int k) {  /* k <= 32 */
    b->acc = (b->acc << k) | (v & ((UINT64_C(1) << k) - 1));
    b->n += k;
    if (b->n >= 32) {
        b->n -= 32;
        uint32_t w = (uint32_t)(b->acc >> b->n);
        b->p[0] = (unsigned char)(w >> 24);
        b->p[1] = (unsigned char)(w >> 16);
        b->p[2] = (unsigned char)(w >> 8);
        b->p[3] = (unsigned char)w;
        b->p += 4;
    }
}

static inline __attribute__((always_inline)) int rice_encode(const void *data, size_t es, int nx,
                                                             unsigned char *out, int clen,
                                                             int nblock, uint32_t *diff) {
    const int fsbits = es == 1 ? 3 : es == 2 ? 4 : 5;
    const int fsmax = es == 1 ? 6 : es == 2 ? 14 : 25;
    const int bbits = 1 << fsbits;
    const uint32_t vmask = es == 4 ? 0xFFFFFFFFu : (1u << (8 * es)) - 1;
    bits_t b = {out, 0, 0};
    uint32_t last;
    if (es == 1) last = ((const uint8_t *)data)[0];
    else if (es == 2) last = ((const uint16_t *)data)[0];
    else last = ((const uint32_t *)data)[0];
    put_bits(&b, last, 8 * (int)es);
    for (int i = 0; i < nx; i += nblock) {
        const int nb = nx - i < nblock ? nx - i : nblock;
        /* pdiff in the value's width, mapped: 2d for d >= 0, -2d - 1 else
         * (branch-free, so that the loops vectorize) */
#define LOAD(k) (es == 1 ? (uint32_t)((const uint8_t *)data)[k]                       \
                 : es == 2 ? (uint32_t)((const uint16_t *)data)[k]                    \
                           : ((const uint32_t *)data)[k])
#define MAP(d) ((((d) << 1) ^ (0u - (((d) & vmask) >> (8 * es - 1)))) & vmask)
        {
            uint32_t d0 = (LOAD(i) - last) & vmask;
            diff[0] = MAP(d0);
        }
        for (int j = 1; j < nb; j++) {
            uint32_t d = (LOAD(i + j) - LOAD(i + j - 1)) & vmask;
            diff[j] = MAP(d);
        }
#undef MAP
#undef LOAD
        last = es == 1 ? ((const uint8_t *)data)[i + nb - 1]
               : es == 2 ? ((const uint16_t *)data)[i + nb - 1]
                         : ((const uint32_t *)data)[i + nb - 1];
        uint64_t sum = 0;
        uint32_t big = 0;
        for (int j = 0; j < nb; j++) {
            sum += diff[j];
            big |= diff[j];
        }
        /* dpsum = (sum - nb/2 - 1) / nb, 0 when negative; psum >> 1 bits */
        int64_t num = (int64_t)sum - nb / 2 - 1;
        uint64_t dpsum = num < 0 ? 0 : (uint64_t)num / (uint64_t)nb;
        uint64_t psum = dpsum >> 1;
        int fs = 0;
        while (psum > 0) {
            fs++;
            psum >>= 1;
        }
        if (fs >= fsmax) {
            put_bits(&b, (uint64_t)fsmax + 1, fsbits);
            for (int j = 0; j < nb; j++) put_bits(&b, diff[j], bbits);
        } else if (fs == 0 && sum == 0) {
            put_bits(&b, 0, fsbits);
        } else {
            if (es == 4 && (big >> 31)) return -2;
            put_bits(&b, (uint64_t)fs + 1, fsbits);
            const uint32_t fsmask = (1u << fs) - 1;
            for (int j = 0; j < nb; j++) {
                uint32_t v = diff[j], top = v >> fs;
                if (top + 1 + (uint32_t)fs <= 32) {
                    put_bits(&b, ((uint64_t)1 << fs) | (v & fsmask), (int)top + 1 + fs);
                } else {
                    for (; top >= 32; top -= 32) put_bits(&b, 0, 32);
                    put_bits(&b, 1, (int)top + 1);
                    if (fs) put_bits(&b, v & fsmask, fs);
                }
            }
        }
        if (b.p - out > (ptrdiff_t)clen) return -1;
    }
    /* The pending bits, the last byte padded with zeros. */
    while (b.n >= 8) {
        b.n -= 8;
        *b.p++ = (unsigned char)(b.acc >> b.n);
    }
    if (b.n > 0) *b.p++ = (unsigned char)(b.acc << (8 - b.n));
    if (b.p - out > (ptrdiff_t)clen) return -1;
    return (int)(b.p - out);
}

/* One copy per value size, its branches folded. */
static int rice8(const void *d, int nx, unsigned char *o, int clen, int nb, uint32_t *diff) {
    return rice_encode(d, 1, nx, o, clen, nb, diff);
}
static int rice16(const void *d, int nx, unsigned char *o, int clen, int nb, uint32_t *diff) {
    return rice_encode(d, 2, nx, o, clen, nb, diff);
}
static int rice32(const void *d, int nx, unsigned char *o, int clen, int nb, uint32_t *diff) {
    return rice_encode(d, 4, nx, o, clen, nb, diff);
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
    /* The coder writes up to a block past clen before it checks. */
    unsigned char *cbuf = gzip ? NULL : calloc((size_t)s->clen + 8 * (size_t)t->blocksize + 64, 1);
    uint32_t *diff = gzip ? NULL : malloc(sizeof *diff * (size_t)t->blocksize);
    if (!pix || (gzip ? !shuf : !cbuf || !diff)) {
        atomic_store(&s->status, TF_ENOMEM);
        free(pix);
        free(shuf);
        free(cbuf);
        free(diff);
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
        int nel = (t->elsize == 2 ? rice16 : t->elsize == 1 ? rice8 : rice32)(
            pix, (int)n, cbuf, s->clen, t->blocksize, diff);
        if (nel == -2) {
            if (t->elsize == 2)
                nel = fits_rcomp_short((short *)pix, (int)n, cbuf, s->clen, t->blocksize);
            else if (t->elsize == 1)
                nel = fits_rcomp_byte((signed char *)pix, (int)n, cbuf, s->clen, t->blocksize);
            else
                nel = fits_rcomp((int *)pix, (int)n, cbuf, s->clen, t->blocksize);
        }
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
    free(diff);
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
