/*
 * compress_tiles.c - an image's tiles compressed on every core for the writer.
 *
 * cfitsio's fits_write_img compresses tile after tile on the calling
 * thread (imcomp_compress_tile). Its steps are plain functions of a
 * buffer, so workers here gather each tile's pixels in cfitsio's order
 * (the first FITS axis fastest), prepare them as imcomp_convert_tile_*
 * does (unsigned types offset; floats quantized as cfitsio's
 * fits_quantize_float/double quantize them, with the tile's dither row:
 * float32 by quantize.c, its noise estimate made fast), code them
 * (RICE_1: the same bitstream as fits_rcomp*, written faster, below;
 * GZIP: cfitsio's compress2mem_from_mem; PLIO_1: its pl_p2li; HCOMPRESS_1:
 * hcompress_enc.c, fits_hcompress made reentrant) with the same buffer
 * sizes, and keep the bytes; write.c then hands them to cfitsio in tile
 * order, which writes the table and heap as it would have. The file is
 * byte for byte cfitsio's (tests/test_write_fast.py).
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <fitsio.h>

#include "../common/convert.h"
#include "../common/internal.h"
#include "compress_tiles.h"
#include "hcompress_enc.h"
#include "quantize.h"

/* libcfitsio's exported per-tile steps (ricecomp.c, zcompress.c,
 * pliocomp.c, quantize.c, imcompress.c); fitsio.h does not declare them. */
int fits_rcomp(int a[], int nx, unsigned char *c, int clen, int nblock);
int fits_rcomp_short(short a[], int nx, unsigned char *c, int clen, int nblock);
int fits_rcomp_byte(signed char a[], int nx, unsigned char *c, int clen, int nblock);
int compress2mem_from_mem(char *inmemptr, size_t inmemsize, char **buffptr, size_t *buffsize,
                          void *(*mem_realloc)(void *p, size_t newsize), size_t *filesize,
                          int *status);
int pl_p2li(int *pxsrc, int xs, short *lldst, int npix);
int fits_init_randoms(void);
int fits_quantize_float(long row, float fdata[], long nx, long ny, int nullcheck,
                        float in_null_value, float quantize_level, int dither_method,
                        int idata[], double *bscale, double *bzero, int *iminval,
                        int *imaxval);
int fits_quantize_double(long row, double fdata[], long nx, long ny, int nullcheck,
                         double in_null_value, float quantize_level, int dither_method,
                         int idata[], double *bscale, double *bzero, int *iminval,
                         int *imaxval);

typedef struct {
    tf_wtiles *t;
    int fd;                     /* FITS axes: dims[0] fastest */
    int64_t dims[TF_MAX_DIMS], tdim[TF_MAX_DIMS], ntile[TF_MAX_DIMS];
    int64_t maxtile;            /* pixels in a whole tile */
    size_t es;                  /* bytes per input value */
    int zbitpix;                /* the image's BITPIX */
    int clen;                   /* cfitsio's buffer for one tile */
    int hc_cap;                 /* HCOMPRESS_1's (more: clen can be too few) */
    atomic_llong next;
    atomic_int status;
} shared_t;

typedef struct {
    shared_t *s;
    int64_t failed;     /* the tile this worker could not code, or -1 */
    int rc;
    const char *why;
} job_t;

/* The 2-d shape the quantizer and HCOMPRESS_1 see of a tile of fd axes
 * of len[] pixels (fits_calc_tile_rows: the first axis longer than 1, and
 * the product of the others). */
static void tile_rows(const int64_t *len, int fd, long *nx, long *ny) {
    *nx = 0;
    *ny = 1;
    for (int i = 0; i < fd; i++) {
        if (len[i] <= 1) continue;
        if (!*nx) *nx = (long)len[i];
        else *ny *= (long)len[i];
    }
    if (!*nx) *nx = 1;
}

/* Tile k's pixels, the first FITS axis fastest, into buf; its count, and
 * its tile_rows. */
static int64_t gather(const shared_t *s, int64_t k, char *buf, long *nx, long *ny) {
    const tf_wtiles *t = s->t;
    int64_t start[TF_MAX_DIMS] = {0}, len[TF_MAX_DIMS] = {0}, n = 1;
    for (int i = 0; i < s->fd; i++) {
        int64_t ti = k % s->ntile[i];
        k /= s->ntile[i];
        start[i] = ti * s->tdim[i];
        len[i] = s->dims[i] - start[i] < s->tdim[i] ? s->dims[i] - start[i] : s->tdim[i];
        n *= len[i];
    }
    tile_rows(len, s->fd, nx, ny);
    const size_t es = s->es;
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

/* ---- a tile's bytes ---- */

/* A worker's scratch, each sized for a whole tile. */
typedef struct {
    char *pix;        /* the tile's values as given */
    char *ints;       /* int32 (quantized floats, PLIO_1, HCOMPRESS_1) or
                         int64 (HCOMPRESS_1 of 32-bit values) */
    char *shuf;       /* gzip's input: the tile big-endian, or shuffled */
    unsigned char *cbuf;
    uint32_t *diff;   /* RICE_1's block */
} scratch_t;

/* gzip of n native values of size es at vals, big-endian (tf_store_be)
 * and, for `shuffle`, their big-endian bytes grouped by significance
 * (cfitsio's fits_shuffle_*bytes), into a buffer of cfitsio's size that it
 * grows as it needs. */
static int gzip_tile(scratch_t *w, const char *vals, int64_t n, size_t es, int shuffle,
                     size_t clen, unsigned char **out, size_t *outlen) {
    const char *in = vals;
    if (shuffle && es > 1) {
        /* big-endian byte b of a value is its native byte es - 1 - b */
        for (int64_t i = 0; i < n; i++)
            for (size_t b = 0; b < es; b++)
                w->shuf[(size_t)b * (size_t)n + (size_t)i] = vals[(size_t)i * es + es - 1 - b];
        in = w->shuf;
    } else if (es > 1) {
        tf_store_be(vals, w->shuf, (size_t)n, es, 0);
        in = w->shuf;
    }
    size_t size = clen ? clen : 1, len = 0;
    char *g = malloc(size);
    if (!g) return TF_ENOMEM;
    int st = 0;
    compress2mem_from_mem((char *)in, (size_t)n * es, &g, &size, realloc, &len, &st);
    if (st) {
        int code = g ? TF_EINVAL : TF_ENOMEM;  /* NULL: its realloc failed */
        free(g);
        return code;
    }
    *out = (unsigned char *)g;
    *outlen = len;
    return TF_OK;
}

/* A copy of the first len bytes of cbuf as the tile's. */
static int keep(const unsigned char *cbuf, size_t len, unsigned char **out, size_t *outlen) {
    unsigned char *b = malloc(len ? len : 1);
    if (!b) return TF_ENOMEM;
    memcpy(b, cbuf, len);
    *out = b;
    *outlen = len;
    return TF_OK;
}

/* Integer-only codecs need int32: the tile's values converted as
 * imcomp_convert_tile_* converts them for PLIO_1 and HCOMPRESS_1. */
static void to_int32(const shared_t *s, const char *pix, int64_t n, int *out) {
    const tf_wtiles *t = s->t;
    const int hc = t->codec == TF_CODEC_HCOMPRESS_1;
    for (int64_t i = 0; i < n; i++) {
        switch (t->dtype) {
        case TF_W_UINT8: out[i] = ((const uint8_t *)pix)[i]; break;
        case TF_W_INT8: out[i] = ((const int8_t *)pix)[i] + 128; break;
        case TF_W_INT16: out[i] = ((const int16_t *)pix)[i]; break;
        case TF_W_UINT16: out[i] = ((const uint16_t *)pix)[i] - (hc ? 32768 : 0); break;
        case TF_W_INT32: out[i] = ((const int32_t *)pix)[i]; break;
        default: out[i] = (int)(((const uint32_t *)pix)[i] ^ 0x80000000u); break;
        }
    }
}

/* RICE_1 or GZIP of n values of il bytes at vals (the offset types already
 * offset), as imcomp_compress_tile codes them. */
static int code_bytes(const shared_t *s, scratch_t *w, char *vals, int64_t n, int il,
                      unsigned char **out, size_t *outlen) {
    const tf_wtiles *t = s->t;
    if (t->codec != TF_CODEC_RICE_1)
        return gzip_tile(w, vals, n, (size_t)il, t->codec == TF_CODEC_GZIP_2, (size_t)s->clen,
                         out, outlen);
    int nel = (il == 2 ? rice16 : il == 1 ? rice8 : rice32)(vals, (int)n, w->cbuf, s->clen,
                                                           t->blocksize, w->diff);
    if (nel == -2) {
        if (il == 2) nel = fits_rcomp_short((short *)vals, (int)n, w->cbuf, s->clen, t->blocksize);
        else if (il == 1)
            nel = fits_rcomp_byte((signed char *)vals, (int)n, w->cbuf, s->clen, t->blocksize);
        else nel = fits_rcomp((int *)vals, (int)n, w->cbuf, s->clen, t->blocksize);
    }
    if (nel < 0) return TF_EINVAL;
    return keep(w->cbuf, (size_t)nel, out, outlen);
}

/* PLIO_1 or HCOMPRESS_1 of the n int32 values at w->ints (a tile of nx by
 * ny), as imcomp_compress_tile codes them; *why on a refusal. */
static int code_ints(const shared_t *s, scratch_t *w, int64_t n, long nx, long ny, int nullcheck,
                     unsigned char **out, size_t *outlen, const char **why) {
    tf_wtiles *t = s->t;
    int *idata = (int *)w->ints;
    if (t->codec == TF_CODEC_PLIO_1) {
        for (int64_t i = 0; i < n; i++)
            if (idata[i] < 0 || idata[i] > 16777215) {
                *why = "PLIO_1 takes values 0 to 2**24 - 1 only";
                return TF_EINVAL;
            }
        int nel = pl_p2li(idata, 1, (short *)w->cbuf, (int)n);
        if (nel < 0) return TF_EINVAL;
        /* (up to 2 shorts a pixel and 7 more: past cfitsio's own buffer) */
        if ((int64_t)nel * 2 > s->clen) atomic_store(&t->cfitsio_overrun, 1);
        return keep(w->cbuf, (size_t)nel * sizeof(short), out, outlen);
    }
    float scale = t->hcomp_scale;
    if (scale > 0.f) {
        double noise2 = 0, noise3 = 0, noise5 = 0;
        int st = 0;
        fits_img_stats_int(idata, nx, ny, nullcheck, t->hc_nullval, NULL, NULL, NULL, NULL, NULL,
                           NULL, &noise2, &noise3, &noise5, &st);
        if (noise2 != 0. && noise2 < noise3) noise3 = noise2;
        if (noise5 != 0. && noise5 < noise3) noise3 = noise5;
        scale = (float)(scale * noise3);
    } else if (scale < 0.f) {
        scale = scale * -1.0F;
    }
    int iscale = (int)(scale + 0.5);
    long len = s->hc_cap;
    int rc;
    if (s->zbitpix == BYTE_IMG || s->zbitpix == SHORT_IMG) {
        rc = tf_hcompress(idata, (int)nx, (int)ny, iscale, (char *)w->cbuf, &len);
    } else {
        long long *ll = (long long *)w->ints;
        for (int64_t i = n - 1; i >= 0; i--) ll[i] = idata[i];
        rc = tf_hcompress64(ll, (int)nx, (int)ny, iscale, (char *)w->cbuf, &len);
    }
    if (rc) {
        *why = tf_hcenc_strerror(rc);
        return rc == TF_HCENC_NOMEM ? TF_ENOMEM : TF_EINVAL;
    }
    /* cfitsio's own writer gives fits_hcompress only clen bytes, and its
     * coder does not check every write against them. */
    if (len > s->clen) atomic_store(&t->cfitsio_overrun, 1);
    return keep(w->cbuf, (size_t)len, out, outlen);
}

void tf_wtiles_nan_to_null(void *v, size_t n, int dbl) {
    if (dbl) {
        double *d = v;
        for (size_t i = 0; i < n; i++)
            if (isnan(d[i])) d[i] = DOUBLENULLVALUE;
    } else {
        float *f = v;
        for (size_t i = 0; i < n; i++)
            if (isnan(f[i])) f[i] = FLOATNULLVALUE;
    }
}

/* A float tile: quantized (its NaN made cfitsio's null value first, where
 * the image has any) and coded as integers, or, where cfitsio would not
 * quantize it, gzip of its values (raw[k]); lossless: gzip of its values. */
static int code_float(const shared_t *s, scratch_t *w, int64_t k, int64_t n, long nx, long ny,
                      unsigned char **out, size_t *outlen, const char **why) {
    tf_wtiles *t = s->t;
    const int dbl = t->dtype == TF_W_FLOAT64;
    const size_t es = dbl ? 8 : 4;
    if (!t->quantize)
        return gzip_tile(w, w->pix, n, es, t->codec == TF_CODEC_GZIP_2, (size_t)s->clen, out,
                         outlen);
    if (t->nulls) tf_wtiles_nan_to_null(w->pix, (size_t)n, dbl);
    long row = t->dither == -1 ? 0 : (long)(k + 1) + t->seed - 1;
    int *idata = (int *)w->ints, imin = 0, imax = 0;
    double bscale = 1., bzero = 0.;
    int flag = dbl ? TF_QUANTIZE_ASK_CFITSIO
                   : tf_quantize_float(row, (float *)w->pix, nx, ny, t->nulls, FLOATNULLVALUE,
                                       t->qlevel, t->dither, idata, &bscale, &bzero);
    if (flag == TF_QUANTIZE_NOMEM) return TF_ENOMEM;
    if (flag == TF_QUANTIZE_ASK_CFITSIO)
        flag = dbl ? fits_quantize_double(row, (double *)w->pix, nx, ny, t->nulls,
                                          DOUBLENULLVALUE, t->qlevel, t->dither, idata, &bscale,
                                          &bzero, &imin, &imax)
                   : fits_quantize_float(row, (float *)w->pix, nx, ny, t->nulls, FLOATNULLVALUE,
                                         t->qlevel, t->dither, idata, &bscale, &bzero, &imin,
                                         &imax);
    if (flag > 1) return TF_ENOMEM;
    if (flag == 0) {
        /* The nulls back to NaN, all bits set (imcomp_float2nan). */
        if (t->nulls) {
            if (dbl) {
                double *v = (double *)w->pix;
                for (int64_t i = 0; i < n; i++)
                    if (v[i] == DOUBLENULLVALUE) memset(&v[i], 0xFF, 8);
            } else {
                float *v = (float *)w->pix;
                for (int64_t i = 0; i < n; i++)
                    if (v[i] == FLOATNULLVALUE) memset(&v[i], 0xFF, 4);
            }
        }
        t->raw[k] = 1;
        return gzip_tile(w, w->pix, n, es, 0, (size_t)((double)n * (double)es * 1.1), out,
                         outlen);
    }
    t->zscale[k] = bscale;
    t->zzero[k] = bzero;
    if (t->codec == TF_CODEC_PLIO_1 || t->codec == TF_CODEC_HCOMPRESS_1)
        return code_ints(s, w, n, nx, ny, t->nulls, out, outlen, why);
    return code_bytes(s, w, w->ints, n, 4, out, outlen);
}

/* Tile k into t->bytes[k] / t->lens[k]. */
static int code_tile(const shared_t *s, scratch_t *w, int64_t k, const char **why) {
    tf_wtiles *t = s->t;
    long nx = 1, ny = 1;
    int64_t n = gather(s, k, w->pix, &nx, &ny);
    unsigned char **out = &t->bytes[k];
    size_t *outlen = &t->lens[k];
    if (t->dtype == TF_W_FLOAT32 || t->dtype == TF_W_FLOAT64)
        return code_float(s, w, k, n, nx, ny, out, outlen, why);
    if (t->codec == TF_CODEC_PLIO_1 || t->codec == TF_CODEC_HCOMPRESS_1) {
        to_int32(s, w->pix, n, (int *)w->ints);
        return code_ints(s, w, n, nx, ny, 0, out, outlen, why);
    }
    /* RICE_1 and GZIP take the values at their own width, offset. */
    if (t->dtype == TF_W_INT8)
        for (int64_t i = 0; i < n; i++) w->pix[i] ^= (char)0x80;
    else if (t->dtype == TF_W_UINT16)
        for (int64_t i = 0; i < n; i++) ((uint16_t *)w->pix)[i] ^= 0x8000u;
    else if (t->dtype == TF_W_UINT32)
        for (int64_t i = 0; i < n; i++) ((uint32_t *)w->pix)[i] ^= 0x80000000u;
    return code_bytes(s, w, w->pix, n, (int)s->es, out, outlen);
}

static void *worker(void *arg) {
    job_t *job = arg;
    shared_t *s = job->s;
    tf_wtiles *t = s->t;
    const size_t m = (size_t)s->maxtile;
    scratch_t w = {0};
    w.pix = malloc(m * s->es);
    w.ints = malloc(m * 8);
    w.shuf = malloc(m * 8);
    /* The Rice coder writes up to a block past clen before it checks;
     * pl_p2li writes up to 2 shorts a pixel and 7 more, unchecked. */
    w.cbuf = calloc((size_t)(s->clen > s->hc_cap ? s->clen : s->hc_cap) +
                        8 * (size_t)(t->blocksize > 0 ? t->blocksize : 1) + 4 * m + 64, 1);
    w.diff = malloc(sizeof *w.diff * (size_t)(t->blocksize > 0 ? t->blocksize : 1));
    if (!w.pix || !w.ints || !w.shuf || !w.cbuf || !w.diff) {
        atomic_store(&s->status, TF_ENOMEM);
    } else {
        for (;;) {
            if (atomic_load_explicit(&s->status, memory_order_relaxed) != TF_OK) break;
            int64_t k = atomic_fetch_add(&s->next, 1);
            if (k >= t->ntiles) break;
            const char *why = NULL;
            int rc = code_tile(s, &w, k, &why);
            if (rc == TF_OK) continue;
            /* Tiles are handed out in order, so the ones before k are all
             * being coded: the lowest failing tile is among the workers'. */
            job->failed = k;
            job->rc = rc;
            job->why = why;
            atomic_store(&s->status, rc);
            break;
        }
    }
    free(w.pix);
    free(w.ints);
    free(w.shuf);
    free(w.cbuf);
    free(w.diff);
    return NULL;
}

/* cfitsio's buffer for one tile of n pixels (imcomp_calc_max_elem). */
static int64_t max_elem(tf_codec codec, int64_t n, int zbitpix, int blocksize) {
    switch (codec) {
    case TF_CODEC_RICE_1:
        return (zbitpix == 16 ? 2 : 4) * n + n / blocksize + 2 + 4;
    case TF_CODEC_GZIP_1:
    case TF_CODEC_GZIP_2:
        return zbitpix == 16 ? n * 2 : zbitpix == 8 ? n : n * 4;
    case TF_CODEC_HCOMPRESS_1:
        return zbitpix == 16 || zbitpix == 8 ? (int64_t)((double)n * 2.2 + 26)
                                             : (int64_t)((double)n * 4.4 + 26);
    default:
        return n * 4;
    }
}

int tf_wtiles_compress(tf_wtiles *t) {
    static const int bitpix[TF_W_COUNT] = {
        [TF_W_UINT8] = 8, [TF_W_INT8] = 8, [TF_W_INT16] = 16, [TF_W_UINT16] = 16,
        [TF_W_INT32] = 32, [TF_W_UINT32] = 32, [TF_W_FLOAT32] = -32, [TF_W_FLOAT64] = -64};
    t->ntiles = 0;
    t->bytes = NULL;
    t->lens = NULL;
    t->zscale = t->zzero = NULL;
    t->raw = NULL;
    t->failed_tile = -1;
    t->failed_why = NULL;
    atomic_init(&t->cfitsio_overrun, 0);
    if (t->ndim < 1 || t->ndim > TF_MAX_DIMS) return TF_EINVAL;
    if ((unsigned)t->dtype >= TF_W_COUNT || !bitpix[t->dtype]) return TF_EINVAL;
    if (t->codec < TF_CODEC_RICE_1 || t->codec > TF_CODEC_PLIO_1) return TF_EINVAL;
    if (t->codec == TF_CODEC_RICE_1 && t->blocksize < 1) return TF_EINVAL;
    const int is_float = bitpix[t->dtype] < 0;
    if (is_float && !t->quantize && t->codec != TF_CODEC_GZIP_1 && t->codec != TF_CODEC_GZIP_2)
        return TF_EINVAL;
    if (is_float && t->quantize && t->dither != -1 && (t->seed < 1 || t->seed > 10000))
        return TF_EINVAL;
    /* fits_quantize_* read cfitsio's table of random numbers, made once. */
    if (is_float && t->quantize && t->dither != -1 && fits_init_randoms()) return TF_ENOMEM;
    shared_t *s = calloc(1, sizeof *s);
    if (!s) return TF_ENOMEM;
    s->t = t;
    s->fd = t->ndim;
    s->zbitpix = bitpix[t->dtype];
    s->es = (size_t)abs(s->zbitpix) / 8;
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
    int64_t clen = max_elem(t->codec, s->maxtile, s->zbitpix, t->blocksize);
    if (s->maxtile > INT32_MAX / 32 || clen > INT32_MAX) {
        free(s);
        return TF_EINVAL;
    }
    s->clen = (int)clen;
    if (t->codec == TF_CODEC_HCOMPRESS_1) {
        /* room for any whole tile (an edge tile is smaller) */
        long nx, ny;
        tile_rows(s->tdim, s->fd, &nx, &ny);
        long cap = tf_hcompress_bound((int)nx, (int)ny,
                                      s->zbitpix != BYTE_IMG && s->zbitpix != SHORT_IMG);
        if (cap <= 0 || cap > INT32_MAX) {
            free(s);
            return TF_EINVAL;
        }
        s->hc_cap = (int)cap;
    }
    t->ntiles = ntiles;
    t->bytes = calloc((size_t)ntiles, sizeof *t->bytes);
    t->lens = calloc((size_t)ntiles, sizeof *t->lens);
    t->zscale = calloc((size_t)ntiles, sizeof *t->zscale);
    t->zzero = calloc((size_t)ntiles, sizeof *t->zzero);
    t->raw = calloc((size_t)ntiles, 1);
    if (!t->bytes || !t->lens || !t->zscale || !t->zzero || !t->raw) {
        free(s);
        return TF_ENOMEM;
    }
    atomic_init(&s->next, 0);
    atomic_init(&s->status, TF_OK);
    /* A thread per 256 KiB of pixels at least, one per core at most. */
    int64_t bytes = total * (int64_t)s->es;
    int threads = tf_auto_threads(t->threads);
    if (threads > bytes / (256 << 10)) threads = (int)(bytes / (256 << 10));
    if (threads > ntiles) threads = (int)ntiles;
    if (threads < 1) threads = 1;
    job_t jobs[TF_MAX_THREADS];
    for (int i = 0; i < threads; i++) jobs[i] = (job_t){.s = s, .failed = -1};
    tf_run_jobs(worker, jobs, sizeof jobs[0], threads);
    int rc = atomic_load(&s->status);
    for (int i = 0; i < threads; i++) {
        if (jobs[i].failed < 0 || (t->failed_tile >= 0 && jobs[i].failed > t->failed_tile))
            continue;
        t->failed_tile = jobs[i].failed;
        t->failed_why = jobs[i].why;
        rc = jobs[i].rc;
    }
    free(s);
    return rc;
}

void tf_wtiles_free(tf_wtiles *t) {
    if (t->bytes)
        for (int64_t k = 0; k < t->ntiles; k++) free(t->bytes[k]);
    free(t->bytes);
    free(t->lens);
    free(t->zscale);
    free(t->zzero);
    free(t->raw);
    t->bytes = NULL;
    t->lens = NULL;
    t->zscale = t->zzero = NULL;
    t->raw = NULL;
}
