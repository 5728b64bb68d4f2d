/*
 * tiles.c - reading tile-compressed images on several threads.
 *
 * RICE_1, GZIP_1, GZIP_2 and HCOMPRESS_1 tiles are decoded here
 * (own_unit): the tile's bytes by pread, rice.c, zlib or hcompress.c,
 * then what cfitsio's
 * imcomp_decompress_tile and its converters do (scaling, nulls,
 * dequantization with cfitsio's dither table), for the common output
 * types (set_own), bit for bit. Everything else is decoded by cfitsio
 * (fits_read_subset), after scan_tiles has checked every stream it will
 * meet. What the file does:
 *  - the region is cut along its slowest axis at tile-row boundaries into
 *    units; a unit is a contiguous slab of the output, so each thread
 *    decodes its units straight into their place in the caller's buffer;
 *  - every thread has its own cfitsio handle. cfitsio attaches a second
 *    open of the same file name to the first one's buffers, which is not
 *    safe across threads, so workers open the handle's source through the
 *    core's driver, which gives every open a name never used before
 *    (io/cfdriver.c) and reads with pread (the same inode, even if the
 *    file has been renamed since). Where that fails, one thread reads;
 *  - only tiles that overlap the region are decoded, only the overlapping
 *    part is copied, and a RICE tile only up to the last pixel needed
 *    (an HCOMPRESS tile is a transform: always whole);
 *  - before anything is decoded, the tile table is checked: ZTILEn against
 *    ZNAXISn and the table's rows, and every descriptor of an overlapping
 *    tile against the heap and the real file size, so a hostile length
 *    never reaches an allocator;
 *  - memory: cfitsio keeps one decoded tile per tile column per handle,
 *    each thread here one tile's bytes and pixels; worker handles are
 *    closed at the end of the read, so the peak is the output plus one row
 *    of tiles per thread;
 *  - tiles cfitsio decodes are checked first (scan_tiles): GZIP streams
 *    must inflate within the tile's size (cfitsio grows its buffer for as
 *    long as a corrupt stream keeps producing), RICE and HCOMPRESS streams
 *    must decode (cfitsio's decoders run past a corrupt stream's end, and
 *    its HCOMPRESS one leaks its buffer on a failing tile), PLIO line lists
 *    must stay inside their cell.
 * Gzip-compressed files (.fits.gz) are read on one thread: cfitsio unpacks
 * the whole file into memory per handle.
 */
#define _GNU_SOURCE
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>
#include <libdeflate.h>
#include <zlib.h>
#include <sys/stat.h>

#include "compress.h"
#include "hcompress.h"
#include "rice.h"

/* cfitsio's table of dither offsets (imcompress.c; exported, not in its
 * public headers) and the function that fills it. */
extern float *fits_rand_value;
int fits_init_randoms(void);
#define N_RANDOM 10000             /* entries in fits_rand_value */
#define DITHER2_ZERO (-2147483646) /* SUBTRACTIVE_DITHER_2's exact zero */
#define NO_QUANTIZE 9999           /* float tiles stored losslessly */

/* A unit of work is at least this many output elements (whole tile rows),
 * so that row-tiled images do not pay one call per row. */
#define UNIT_MIN_ELEMS (256 * 1024)
/* Below this many output bytes a read stays on one thread. */
#define PARALLEL_MIN_BYTES (2 * 1024 * 1024)

typedef struct tiling {
    int nd;                     /* C order below */
    int64_t tile[TF_MAX_DIMS];  /* ZTILEn */
    int64_t ntiles[TF_MAX_DIMS];
    int64_t lo[TF_MAX_DIMS], hi[TF_MAX_DIMS]; /* tiles overlapping a box, inclusive */
    int64_t max_tile;           /* pixels in a whole tile */
} tiling;

/* A plain local file as it is now: what the RICE marks are kept for. */
typedef struct file_id {
    int on;
    uint64_t dev, ino;
    int64_t size, mtime_ns;
} file_id;

typedef struct reader {
    /* fixed for the read */
    tf_file *f;
    int hdu, raw, type, nd;
    void *nulval;
    const int64_t *start, *count, *step;
    int64_t tile0;       /* tile length along axis 0 (C order) */
    int64_t row_elems;   /* output elements per index of axis 0 */
    size_t out_size;
    char *out;
    /* work handed out under `lock` */
    pthread_mutex_t lock;
    int64_t next;        /* next index of axis 0 to hand out */
    int failed;
    /* the first failure */
    int st;
    int64_t fail_i0, fail_i1; /* its unit; fail_i0 < 0: opening failed */
    const char *fail_why;     /* non-NULL: fail_tile is the bad tile, this the cause */
    int64_t fail_tile[TF_MAX_DIMS];
    /* tiles checked before cfitsio decodes them */
    const tiling *tiles;
    const int64_t *shape;     /* the image's, C order */
    int gzip_cols[2];         /* columns holding gzip streams; 0: none */
    int gzip_width[2];        /* bytes per pixel each must inflate to; 0: 1, 2, 4 or 8 */
    int64_t gzip_max;         /* bytes a tile may inflate to */
    int rice;                 /* RICE_1: every tile is decoded by rice.c first */
    int hcomp;                /* HCOMPRESS_1: every tile is decoded by hcompress.c first */
    int hcomp_smooth;         /* its SMOOTH parameter */
    int hcomp_wide;           /* cfitsio's 64-bit decoder (ZBITPIX not 8 or 16) */
    int plio;                 /* PLIO_1: every line list is walked by plio_ok first */
    int rice_bytepix, rice_nblock, cn_compressed;
    int64_t heap;             /* file offset of the heap */
    int pread_ok;             /* COMPRESSED_DATA's cells read with pread */
    /* tiles decoded here rather than by cfitsio (see set_own) */
    int own;                  /* OWN_INT or OWN_FLOAT; 0: cfitsio decodes */
    int codec;                /* RICE_1, GZIP_1, GZIP_2 or HCOMPRESS_1 */
    int pix_bytes;            /* bytes of a decoded pixel: 1, 2, 4 */
    int clip;                 /* OWN_INT, HCOMPRESS_1: decoded values may overshoot */
    tf_dtype out_type, stored_type;
    int64_t izero;            /* OWN_INT: added to each stored value */
    double bscale, bzero;     /* BSCALE and BZERO in effect (raw: 1, 0) */
    int dither, seed;         /* SUBTRACTIVE_DITHER_1/2 (else 0), ZDITHER0 */
    int nullcheck;            /* OWN_FLOAT: ZBLANK/BLANK pixels become NaN */
    int cn_zscale, cn_zzero, cn_zblank, zblank; /* as cfitsio's FITSfile */
    double zscale, zzero;
    int zbitpix;
    file_id id;               /* RICE_1 from a plain local file: for the marks */
} reader;

enum { OWN_INT = 1, OWN_FLOAT = 2 };

/* End (exclusive) of the unit of axis-0 indices that begins at i0: whole
 * tile rows, at least UNIT_MIN_ELEMS elements, or `all` for one unit. */
static int64_t unit_end(const reader *r, int64_t i0, int all) {
    const int64_t s = r->start[0], k = r->step[0], c = r->count[0];
    if (all) return c;
    int64_t i1 = i0;
    do {
        int64_t row = s + i1 * k;
        int64_t next_tile_row = (row / r->tile0 + 1) * r->tile0;
        int64_t n = (next_tile_row - s + k - 1) / k; /* first index at or past it */
        i1 = n < c ? n : c;
    } while (i1 < c && (i1 - i0) * r->row_elems < UNIT_MIN_ELEMS);
    return i1;
}

static void record_failure(reader *r, int st, int64_t i0, int64_t i1) {
    pthread_mutex_lock(&r->lock);
    if (!r->failed) {
        r->failed = 1;
        r->st = st;
        r->fail_i0 = i0;
        r->fail_i1 = i1;
    }
    pthread_mutex_unlock(&r->lock);
}

static int take_unit(reader *r, int all, int64_t *i0, int64_t *i1) {
    pthread_mutex_lock(&r->lock);
    int ok = !r->failed && r->next < r->count[0];
    if (ok) {
        *i0 = r->next;
        *i1 = r->next = unit_end(r, r->next, all);
    }
    pthread_mutex_unlock(&r->lock);
    return ok;
}

static void clip_tiles(fitsfile *fp);

/* cfitsio's subset read of axis-0 indices [i0, i1) of the region, with
 * the other axes as in the region, into `dst`. */
static int read_slab(const reader *r, fitsfile *fp, const int64_t *start, const int64_t *count,
                     void *dst) {
    long first[TF_MAX_DIMS], last[TF_MAX_DIMS], inc[TF_MAX_DIMS];
    for (int d = 0; d < r->nd; d++) {
        int a = r->nd - 1 - d; /* cfitsio counts axes fastest first, from 1 */
        first[a] = (long)(start[d] + 1);
        last[a] = (long)(start[d] + (count[d] - 1) * r->step[d] + 1);
        inc[a] = (long)r->step[d];
    }
    int st = 0, anynul = 0;
    clip_tiles(fp); /* a worker's own handle read the header afresh */
    fits_read_subset(fp, r->type, first, last, inc, r->nulval, dst, &anynul, &st);
    return st;
}

static int read_unit(const reader *r, fitsfile *fp, int64_t i0, int64_t i1) {
    int64_t start[TF_MAX_DIMS], count[TF_MAX_DIMS];
    for (int d = 0; d < r->nd; d++) {
        start[d] = r->start[d];
        count[d] = r->count[d];
    }
    start[0] = r->start[0] + i0 * r->step[0];
    count[0] = i1 - i0;
    return read_slab(r, fp, start, count, r->out + (size_t)(i0 * r->row_elems) * r->out_size);
}

/* A handle of this thread's own on the same file, at the HDU: cfitsio
 * reads the handle's source through the core's driver, under a name of
 * its own (io/cfdriver.c). */
static int open_private(const reader *r, fitsfile **fp) {
    int st = tf_cf_open(&r->f->src, fp);
    if (st) return st;
    fits_movabs_hdu(*fp, r->hdu + 1, NULL, &st);
    if (!st && r->raw) fits_set_bscale(*fp, 1.0, 0.0, &st);
    return st;
}

static void close_private(fitsfile *fp) {
    int st = 0;
    if (fp) fits_close_file(fp, &st);
}

static int64_t tile_row(const tiling *t, const int64_t *idx);
static int next_tile(const tiling *t, int64_t *idx);

/* Whether `len` bytes of gzip stream inflate, within r->gzip_max bytes,
 * to `width` bytes (0: 1, 2, 4 or 8) for each of the tile's `tilelen`
 * pixels. cfitsio takes a stream that ends short and leaves the rest of
 * its tile buffer as it was: the cfitsio path then returned whatever that
 * memory held (sanitizer replay: the two paths disagreed on a damaged
 * GZIP_2 tile, depending on what ran before). */
static int inflates(const reader *r, const unsigned char *in, int64_t len, int64_t tilelen,
                    int width) {
    unsigned char window[32768];
    z_stream z;
    memset(&z, 0, sizeof z);
    if (len > (int64_t)UINT32_MAX || inflateInit2(&z, 15 + 16) != Z_OK) return 0;
    z.next_in = (unsigned char *)in;
    z.avail_in = (uInt)len;
    int ok = 0;
    for (;;) { /* ends: each round must make progress, the output is bounded */
        z.next_out = window;
        z.avail_out = sizeof window;
        uInt avail_in = z.avail_in;
        int e = inflate(&z, Z_NO_FLUSH);
        if (e == Z_OK && z.avail_in == avail_in && z.avail_out == sizeof window) break;
        if (e == Z_STREAM_END) {
            int64_t n = (int64_t)z.total_out;
            ok = n <= r->gzip_max &&
                 (width ? n == width * tilelen
                        : n == tilelen || n == 2 * tilelen || n == 4 * tilelen || n == 8 * tilelen);
            break;
        }
        if (e != Z_OK || (int64_t)z.total_out > r->gzip_max) break;
    }
    inflateEnd(&z);
    return ok;
}

/* A thread's buffers for tiles: compressed bytes, decoded pixels. */
typedef struct scratch {
    unsigned char *in;
    int64_t in_cap;
    void *pix;      /* max_tile pixels of 4 bytes, allocated on first use */
    unsigned char *raw; /* GZIP_2: the inflated, still shuffled bytes */
    void *work;     /* HCOMPRESS_1: the decoder's work area for max_tile */
    size_t work_len;
    struct libdeflate_decompressor *gz; /* GZIP_1/GZIP_2, made on first use */
} scratch;

static void free_scratch(scratch *s) {
    free(s->in);
    free(s->pix);
    free(s->raw);
    free(s->work);
    if (s->gz) libdeflate_free_decompressor(s->gz);
}

static int grow(scratch *s, int64_t len) {
    if (len <= s->in_cap) return 0;
    unsigned char *p = realloc(s->in, (size_t)len); /* len: checked against the heap */
    if (!p) return MEMORY_ALLOCATION;
    s->in = p;
    s->in_cap = len;
    return 0;
}

/* n bytes at heap offset off (checked against the file by
 * check_descriptors) into p; a cfitsio status. Not tf_read_full: workers
 * must not write the handle's error message. */
static int pread_heap(const reader *r, void *p, int64_t n, int64_t off) {
    int err;
    return tf_source_read(&r->f->src, p, (size_t)n, r->heap + off, &err) ? READ_ERROR : 0;
}

/* Column `col`'s bytes for table row `row` into s->in: pread at the
 * descriptor's (checked) heap offset for plain files and byte columns,
 * cfitsio otherwise.
 * Returns a cfitsio status; *len 0 for an empty cell. */
static int tile_bytes(const reader *r, fitsfile *fp, int col, int64_t row, scratch *s,
                      int64_t *len) {
    LONGLONG n = 0, off = 0;
    int st = 0, anynul = 0;
    fits_read_descriptll(fp, col, row, &n, &off, &st);
    *len = st ? 0 : n;
    if (st || n == 0) return st;
    if ((st = grow(s, n)) != 0) return st;
    if (col != r->cn_compressed || !r->pread_ok) {
        fits_read_col(fp, TBYTE, col, row, 1, n, NULL, s->in, &anynul, &st);
        return st;
    }
    return pread_heap(r, s->in, n, off);
}

/* Pixels in the tile at idx (edge tiles are short), and its origin. */
static int64_t tile_pixels(const reader *r, const tiling *t, const int64_t *idx, int64_t *origin,
                           int64_t *extent) {
    int64_t n = 1;
    for (int d = 0; d < t->nd; d++) {
        origin[d] = idx[d] * t->tile[d];
        extent[d] = r->shape[d] - origin[d] < t->tile[d] ? r->shape[d] - origin[d] : t->tile[d];
        n *= extent[d];
    }
    return n;
}

static int rice_decode_tile(const reader *r, scratch *s, int64_t len, int64_t nout) {
    if (!s->pix && !(s->pix = malloc((size_t)r->tiles->max_tile * 4))) return MEMORY_ALLOCATION;
    return tf_rice_decode(s->in, (size_t)len, r->rice_bytepix, r->rice_nblock, nout, s->pix);
}

/* A whole HCOMPRESS_1 tile of tilelen pixels into s->pix as 32-bit ints,
 * what cfitsio's fits_hdecompress(64) leaves for imcomp_decompress_tile.
 * A TF_HCOMP_ status, or MEMORY_ALLOCATION. */
static int hcomp_decode_tile(const reader *r, scratch *s, int64_t len, int64_t tilelen) {
    if (!s->pix && !(s->pix = malloc((size_t)r->tiles->max_tile * 4))) return MEMORY_ALLOCATION;
    if (!s->work) {
        /* the largest tile's size: ZTILEn were checked against the image */
        s->work_len = tf_hcomp_work_size(r->tiles->max_tile, r->hcomp_wide);
        if (s->work_len == 0) return TF_HCOMP_ARG;
        if (!(s->work = malloc(s->work_len))) return MEMORY_ALLOCATION;
    }
    return tf_hcomp_decode(s->in, (size_t)len, r->hcomp_smooth, r->hcomp_wide, tilelen, s->pix,
                           s->work, s->work_len);
}

/* Whether cfitsio's pl_l2pi (pliocomp.c) stays inside a PLIO_1 line list
 * of n words (native shorts) when it expands npix pixels: its walk,
 * without the output. It trusts the list's header: the length (ll[2], or
 * in the newer layout, ll[2] <= 0, ll[3] + ll[4] * 32768 with the first
 * instruction at ll[1]), and an opcode 1 reads the word after it. What
 * it writes is bounded by npix whatever the list says. */
static int plio_ok(const int16_t *ll, int64_t n, int64_t npix) {
    if (n < 3) return 0;
    int64_t len, first; /* 1-based, as pl_l2pi counts */
    if (ll[2] > 0) {
        len = ll[2];
        first = 4;
    } else {
        if (n < 5) return 0;
        len = (int64_t)ll[4] * 32768 + ll[3];
        first = (int64_t)ll[1] + 1;
    }
    if (npix <= 0 || len <= 0) return 1;
    int64_t x1 = 1;
    int skip = 0;
    for (int64_t ip = first; ip <= len; ip++) {
        if (skip) {
            skip = 0;
            continue;
        }
        if (ip < 1 || ip - 1 >= n) return 0;
        int opcode = ll[ip - 1] / 4096, data = ll[ip - 1] & 4095;
        switch (opcode) {
        case 0: case 4: case 5: x1 += data; break;
        case 1:
            if (ip >= n) return 0;
            skip = 1;
            break;
        case 6: case 7: x1++; break;
        default: break;
        }
        if (x1 > npix) break;
    }
    return 1;
}

/* A PLIO_1 tile's line list (a 'PI' column: n shorts) into s->in as
 * native shorts. */
static int tile_shorts(const reader *r, fitsfile *fp, int64_t row, scratch *s, int64_t *n) {
    LONGLONG len = 0, off = 0;
    int st = 0, anynul = 0;
    fits_read_descriptll(fp, r->cn_compressed, row, &len, &off, &st);
    *n = st ? 0 : len;
    if (st || len == 0) return st;
    if ((st = grow(s, 2 * len)) != 0) return st;
    if (!r->pread_ok) {
        fits_read_col(fp, TSHORT, r->cn_compressed, row, 1, len, NULL, s->in, &anynul, &st);
        return st;
    }
    if ((st = pread_heap(r, s->in, 2 * len, off)) != 0) return st;
    for (int64_t i = 0; i < len; i++) {
        uint16_t v;
        memcpy(&v, s->in + 2 * i, 2);
        v = (uint16_t)(v << 8 | v >> 8);
        memcpy(s->in + 2 * i, &v, 2);
    }
    return 0;
}

/* Check the tiles of axis-0 indices [i0, i1) on handle fp before cfitsio
 * decodes them: GZIP streams inflate within the tile's size, RICE_1 and
 * HCOMPRESS_1 streams decode (rice.c, hcompress.c), PLIO_1 line lists
 * stay inside their cell, so
 * that cfitsio never meets a stream that would make it allocate without
 * end or read out of bounds. Returns a
 * cfitsio status, or -1 with the tile in *bad and the cause in *why. */
static int scan_tiles(const reader *r, fitsfile *fp, int64_t i0, int64_t i1, scratch *s,
                      int64_t *bad, const char **why) {
    tiling t = *r->tiles;
    t.lo[0] = (r->start[0] + i0 * r->step[0]) / t.tile[0];
    t.hi[0] = (r->start[0] + (i1 - 1) * r->step[0]) / t.tile[0];
    int64_t idx[TF_MAX_DIMS], origin[TF_MAX_DIMS], extent[TF_MAX_DIMS];
    for (int d = 0; d < t.nd; d++) idx[d] = t.lo[d];
    int st = 0;
    do {
        int64_t row = tile_row(&t, idx), len = 0;
        for (int c = 0; c < 2 && r->gzip_cols[c] > 0 && !st; c++) {
            st = tile_bytes(r, fp, r->gzip_cols[c], row, s, &len);
            if (!st && len > 0 &&
                !inflates(r, s->in, len, tile_pixels(r, &t, idx, origin, extent),
                          r->gzip_width[c])) {
                *why = "its GZIP stream is corrupt";
                st = -1;
            }
        }
        if (!st && r->rice) {
            st = tile_bytes(r, fp, r->cn_compressed, row, s, &len);
            if (!st && len > 0) {
                int e = rice_decode_tile(r, s, len, tile_pixels(r, &t, idx, origin, extent));
                if (e == MEMORY_ALLOCATION) st = e;
                else if (e != TF_RICE_OK) {
                    *why = tf_rice_strerror(e);
                    st = -1;
                }
            }
        }
        if (!st && r->hcomp) {
            st = tile_bytes(r, fp, r->cn_compressed, row, s, &len);
            if (!st && len > 0) {
                int e = hcomp_decode_tile(r, s, len, tile_pixels(r, &t, idx, origin, extent));
                if (e == MEMORY_ALLOCATION) st = e;
                else if (e != TF_HCOMP_OK) {
                    *why = tf_hcomp_strerror(e);
                    st = -1;
                }
            }
        }
        if (!st && r->plio) {
            st = tile_shorts(r, fp, row, s, &len);
            if (!st && len > 0 &&
                !plio_ok((const int16_t *)s->in, len, tile_pixels(r, &t, idx, origin, extent))) {
                *why = "its PLIO_1 line list runs past its end";
                st = -1;
            }
        }
        if (st == -1) memcpy(bad, idx, sizeof idx);
    } while (!st && next_tile(&t, idx));
    return st;
}

/* ---- RICE_1 and GZIP tiles decoded here ----
 * What cfitsio's imcomp_decompress_tile and its converters do for the
 * cases set_own admits, pixel for pixel. */

/* Where the dither sequence of a tile stands `m` pixels on. */
typedef struct dither {
    int iseed, next;
} dither;

static dither dither_at(int64_t row_seed, int64_t m) {
    dither q;
    q.iseed = (int)((row_seed - 1) % N_RANDOM);
    q.next = (int)(fits_rand_value[q.iseed] * 500);
    while (m > 0) {
        int64_t room = N_RANDOM - q.next;
        if (m < room) {
            q.next += (int)m;
            break;
        }
        m -= room;
        if (++q.iseed == N_RANDOM) q.iseed = 0;
        q.next = (int)(fits_rand_value[q.iseed] * 500);
    }
    return q;
}

/* SUBTRACTIVE_DITHER_2's code for an exact zero (only 4-byte tiles hold it). */
static inline int dither2_zero(int64_t v) { return v == DITHER2_ZERO; }

/* Per-tile constants of a quantized float tile. */
typedef struct qtile {
    double scale, zero;
    int nullcheck, tnull;
    int64_t seed_row; /* cfitsio's `row` of unquantize_i4r4 */
} qtile;

static int qtile_params(const reader *r, fitsfile *fp, int64_t row, qtile *q) {
    int st = 0, anynul = 0;
    double scale = 1.0, zero = 0.0;
    if (r->cn_zscale == -1) {
        scale = r->zscale;
        zero = r->zzero;
    } else if (r->cn_zscale > 0) {
        fits_read_col(fp, TDOUBLE, r->cn_zscale, row, 1, 1, NULL, &scale, &anynul, &st);
        fits_read_col(fp, TDOUBLE, r->cn_zzero, row, 1, 1, NULL, &zero, &anynul, &st);
        if (st) return st;
        if (r->zbitpix < 0 && (r->bscale != 1.0 || r->bzero != 0.0)) {
            scale = scale * r->bscale;
            zero = zero * r->bscale + r->bzero;
        }
    }
    if (scale == 1.0 && zero == 0.0) {
        scale = r->bscale;
        zero = r->bzero;
    }
    q->scale = scale;
    q->zero = zero;
    q->nullcheck = r->nullcheck;
    q->tnull = r->zblank;
    if (r->nullcheck && r->cn_zblank > 0)
        fits_read_col(fp, TINT, r->cn_zblank, row, 1, 1, NULL, &q->tnull, &anynul, &st);
    q->seed_row = row + r->seed - 1;
    return st;
}

/* n pixels of the decoded tile (IN_T) from local index p, step k, into
 * dst (OUT_T, contiguous): cfitsio's fffi?r4/fffi?r8 (scaling, nulls),
 * or its unquantize_i?r4/_i?r8 where the tiles are dithered. */
#define UNQUANTIZE(IN_T, OUT_T)                                                             \
    do {                                                                                    \
        const IN_T *in = pix;                                                               \
        OUT_T *o = (OUT_T *)dst;                                                            \
        const OUT_T nan = (OUT_T)NAN;                                                       \
        const IN_T tnull = (IN_T)q->tnull;                                                  \
        if (!r->dither) {                                                                   \
            for (int64_t j = 0; j < n; j++) {                                               \
                IN_T v = in[p + j * k];                                                     \
                o[j] = q->nullcheck && v == tnull ? nan : (OUT_T)(v * q->scale + q->zero);  \
            }                                                                               \
            break;                                                                          \
        }                                                                                   \
        dither dt = dither_at(q->seed_row, p);                                              \
        const float *rv = fits_rand_value;                                                  \
        const double scale = q->scale, zero = q->zero;                                      \
        if (k == 1) { /* runs of consecutive table entries, between reseeds */              \
            const int plain = !q->nullcheck && r->dither != SUBTRACTIVE_DITHER_2;           \
            for (int64_t j = 0; j < n;) {                                                   \
                int64_t m = n - j < N_RANDOM - dt.next ? n - j : N_RANDOM - dt.next;        \
                const float *rr = rv + dt.next;                                             \
                const IN_T *src = in + p + j;                                               \
                OUT_T *out = o + j;                                                         \
                if (plain) {                                                                \
                    for (int64_t t = 0; t < m; t++)                                         \
                        out[t] = (OUT_T)(((double)src[t] - rr[t] + 0.5) * scale + zero);    \
                } else {                                                                    \
                    for (int64_t t = 0; t < m; t++) {                                       \
                        IN_T v = src[t];                                                    \
                        if (q->nullcheck && v == tnull) out[t] = nan;                       \
                        else if (r->dither == SUBTRACTIVE_DITHER_2 && dither2_zero(v))      \
                            out[t] = 0;                                                     \
                        else out[t] = (OUT_T)(((double)v - rr[t] + 0.5) * scale + zero);    \
                    }                                                                       \
                }                                                                           \
                j += m;                                                                     \
                dt.next += (int)m;                                                          \
                if (dt.next == N_RANDOM) {                                                  \
                    if (++dt.iseed == N_RANDOM) dt.iseed = 0;                               \
                    dt.next = (int)(rv[dt.iseed] * 500);                                    \
                }                                                                           \
            }                                                                               \
            break;                                                                          \
        }                                                                                   \
        for (int64_t j = 0; j < n; j++) {                                                   \
            IN_T v = in[p + j * k];                                                         \
            if (q->nullcheck && v == tnull) o[j] = nan;                                     \
            else if (r->dither == SUBTRACTIVE_DITHER_2 && dither2_zero(v)) o[j] = 0;        \
            else o[j] = (OUT_T)(((double)v - rv[dt.next] + 0.5) * scale + zero);            \
            if (j + 1 < n) dt = dither_at(q->seed_row, p + (j + 1) * k);                    \
        }                                                                                   \
    } while (0)

static void unquantize(const reader *r, const qtile *q, const void *pix, int64_t p, int64_t k,
                       int64_t n, char *dst) {
    int bp = r->pix_bytes;
    if (r->out_type == TF_FLOAT32) {
        if (bp == 1) UNQUANTIZE(uint8_t, float);
        else if (bp == 2) UNQUANTIZE(int16_t, float);
        else UNQUANTIZE(int32_t, float);
    } else {
        if (bp == 1) UNQUANTIZE(uint8_t, double);
        else if (bp == 2) UNQUANTIZE(int16_t, double);
        else UNQUANTIZE(int32_t, double);
    }
}

#define CONVERT_INT(OUT_T)                                                                  \
    do {                                                                                    \
        OUT_T *o = (OUT_T *)dst;                                                            \
        switch (r->pix_bytes) {                                                             \
        case 1: {                                                                           \
            const uint8_t *in = pix;                                                        \
            for (int64_t j = 0; j < n; j++) o[j] = (OUT_T)(in[p + j * k] + r->izero);      \
            break;                                                                          \
        }                                                                                   \
        case 2: {                                                                           \
            const int16_t *in = pix;                                                        \
            for (int64_t j = 0; j < n; j++) o[j] = (OUT_T)(in[p + j * k] + r->izero);      \
            break;                                                                          \
        }                                                                                   \
        default: {                                                                          \
            const int32_t *in = pix;                                                        \
            for (int64_t j = 0; j < n; j++) o[j] = (OUT_T)(in[p + j * k] + r->izero);      \
            break;                                                                          \
        }                                                                                   \
        }                                                                                   \
    } while (0)

/* M(OUT_T) for the C type of the reader's integer output. */
#define FOR_INT_OUT(M)                              \
    switch (r->out_type) {                          \
    case TF_UINT8: M(uint8_t); break;               \
    case TF_INT8: M(int8_t); break;                 \
    case TF_INT16: M(int16_t); break;               \
    case TF_UINT16: M(uint16_t); break;             \
    case TF_INT32: M(int32_t); break;               \
    case TF_UINT32: M(uint32_t); break;             \
    default: M(int64_t); break;                     \
    }

#define CONVERT_CLIPPED(OUT_T)                                                              \
    do {                                                                                    \
        OUT_T *o = (OUT_T *)dst;                                                            \
        for (int64_t j = 0; j < n; j++) {                                                   \
            int64_t v = (int64_t)in[p + j * k] + r->izero;                                  \
            if (__builtin_expect(v < lo || v > hi, 0)) {                                    \
                if (r->out_type != TF_INT16) return 1;                                      \
                v = v < lo ? lo : hi;                                                       \
            }                                                                               \
            o[j] = (OUT_T)v;                                                                \
        }                                                                                   \
    } while (0)

/* A lossy HCOMPRESS_1 tile of integers can overshoot the image's type.
 * cfitsio clips into a 16-bit output (imcomp_decompress_tile forgives
 * that overflow for HCOMPRESS) and fails any other read with status 412:
 * clip the first, hand the rest to cfitsio (1). */
static int convert_clipped(const reader *r, const void *pix, int64_t p, int64_t k, int64_t n,
                           char *dst) {
    const int32_t *in = pix;
    int64_t lo = INT64_MIN, hi = INT64_MAX;
    tf_int_range(r->out_type, &lo, &hi);
    FOR_INT_OUT(CONVERT_CLIPPED)
    return 0;
}

/* 0; 1 when cfitsio must take the unit (convert_clipped). */
static int convert(const reader *r, const qtile *q, const void *pix, int64_t p, int64_t k,
                   int64_t n, char *dst) {
    if (r->own == OWN_FLOAT) {
        unquantize(r, q, pix, p, k, n, dst);
        return 0;
    }
    if (r->clip) return convert_clipped(r, pix, p, k, n, dst);
    if (k == 1 && r->izero == 0 && r->out_type == r->stored_type) {
        memcpy(dst, (const char *)pix + p * r->pix_bytes, (size_t)n * r->out_size);
        return 0;
    }
    FOR_INT_OUT(CONVERT_INT)
    return 0;
}

/* Inflate a GZIP_1/GZIP_2 tile of `tilelen` pixels of r->pix_bytes into
 * s->pix as native integers: exactly that many bytes, unshuffled (GZIP_2)
 * and from big-endian. 0; -1 for a corrupt or short stream; 1 when it
 * inflates to another size (cfitsio then guesses the pixel type from the
 * size: it takes the unit, after scan_tiles). */
static int gunzip_tile(const reader *r, scratch *s, int64_t len, int64_t tilelen) {
    const int bp = r->pix_bytes;
    const int64_t want = tilelen * bp;
    if (!s->pix && !(s->pix = malloc((size_t)r->tiles->max_tile * 4))) return MEMORY_ALLOCATION;
    int shuffled = r->codec == GZIP_2 && bp > 1;
    if (shuffled && !s->raw && !(s->raw = malloc((size_t)r->tiles->max_tile * 4)))
        return MEMORY_ALLOCATION;
    if (len > (int64_t)UINT32_MAX || want > (int64_t)UINT32_MAX) return 1;
    unsigned char *dst = shuffled ? s->raw : s->pix;
    /* libdeflate: the same streams as zlib's inflate (one gzip member, its
     * CRC-32 and length checked, bytes after it ignored) in about half
     * the time (measured on int16 row tiles: 0.48x). It either inflates the
     * whole stream or says why not. */
    if (!s->gz && !(s->gz = libdeflate_alloc_decompressor())) return MEMORY_ALLOCATION;
    size_t got = 0;
    enum libdeflate_result e =
        libdeflate_gzip_decompress(s->gz, s->in, (size_t)len, dst, (size_t)want, &got);
    if (e == LIBDEFLATE_INSUFFICIENT_SPACE) return 1; /* it would give more */
    if (e != LIBDEFLATE_SUCCESS) return -1;           /* damaged, or it ends early */
    if ((int64_t)got != want) return 1;
    const int64_t n = tilelen;
    if (bp == 2) {
        uint16_t *o = s->pix;
        if (shuffled)
            for (int64_t i = 0; i < n; i++) o[i] = (uint16_t)(dst[i] << 8 | dst[n + i]);
        else
            for (int64_t i = 0; i < n; i++) o[i] = (uint16_t)(dst[2 * i] << 8 | dst[2 * i + 1]);
    } else if (bp == 4) {
        uint32_t *o = s->pix;
        if (shuffled)
            for (int64_t i = 0; i < n; i++)
                o[i] = (uint32_t)dst[i] << 24 | (uint32_t)dst[n + i] << 16 |
                       (uint32_t)dst[2 * n + i] << 8 | dst[3 * n + i];
        else
            for (int64_t i = 0; i < n; i++)
                o[i] = (uint32_t)dst[4 * i] << 24 | (uint32_t)dst[4 * i + 1] << 16 |
                       (uint32_t)dst[4 * i + 2] << 8 | dst[4 * i + 3];
    }
    return 0;
}

/* ---- where RICE_1 tiles' streams were, for cutouts ----
 * A cutout takes a few pixels from the middle of each tile it crosses
 * (of a row-tiled image: 64 pixels of a 4096-pixel row), and RICE is
 * sequential: every pixel before them is decoded too, half a row on
 * average. A catalogue epoch comes back to each tile many times (each row
 * of a 4096x4096 image by about ten 64x64 cutouts). So a partial decode
 * records where the stream stood every `stride` pixels (a few blocks: the
 * bit offset and the previous value), in a table keyed by the file's
 * identity (device, inode, size, mtime) and the tile's heap offset; the
 * next partial decode of that tile starts at the last mark before its
 * first pixel, and gives the same bits (rice.h). A direct-mapped table of
 * MARK_SLOTS tiles (48 MB of address space, 184 bytes a tile as used;
 * 2^18 slots hold a band of 16 images of 4096 rows with few collisions),
 * allocated at the first partial decode, where a collision replaces; one
 * lock, held for a copy. Whole-tile reads never use it. */
#define MARK_SLOTS (1 << 18)
#define MARK_MAX 16

typedef struct mark_slot {
    uint64_t dev, ino;
    int64_t size, mtime_ns, off, stride; /* stride 0: empty */
    int32_t nblock, bytepix;
    uint32_t bit[MARK_MAX], last[MARK_MAX]; /* bit 0: no mark */
} mark_slot;

static mark_slot *mark_table;
static pthread_mutex_t mark_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t mark_once = PTHREAD_ONCE_INIT;

/* A DataLoader forks its workers: never while another thread holds the
 * lock, which the child could then not take. */
static void mark_prefork(void) { pthread_mutex_lock(&mark_lock); }
static void mark_postfork(void) { pthread_mutex_unlock(&mark_lock); }
static void mark_init(void) { pthread_atfork(mark_prefork, mark_postfork, mark_postfork); }

static size_t mark_index(const file_id *id, int64_t off) {
    uint64_t h = id->dev * 0x9E3779B97F4A7C15ull ^ id->ino * 0xC2B2AE3D27D4EB4Full ^
                 (uint64_t)off * 0x165667B19E3779F9ull ^ (uint64_t)id->mtime_ns;
    h ^= h >> 29;
    return (size_t)(h % MARK_SLOTS);
}

static int mark_match(const mark_slot *m, const file_id *id, int64_t off, int64_t stride,
                      const reader *r) {
    return m->off == off && m->dev == id->dev && m->ino == id->ino && m->size == id->size &&
           m->mtime_ns == id->mtime_ns && m->stride == stride && m->nblock == r->rice_nblock &&
           m->bytepix == r->rice_bytepix;
}

/* The tile's marks into m[MARK_MAX] (bit 0 where none); 0 when the table
 * has none for it. */
static int marks_get(const reader *r, int64_t off, int64_t stride, tf_rice_mark *m) {
    int found = 0;
    memset(m, 0, MARK_MAX * sizeof *m);
    pthread_once(&mark_once, mark_init);
    pthread_mutex_lock(&mark_lock);
    if (mark_table) {
        const mark_slot *e = &mark_table[mark_index(&r->id, off)];
        if ((found = mark_match(e, &r->id, off, stride, r)))
            for (int k = 0; k < MARK_MAX; k++)
                m[k] = (tf_rice_mark){k * stride, e->bit[k], e->last[k]};
    }
    pthread_mutex_unlock(&mark_lock);
    return found;
}

static void marks_put(const reader *r, int64_t off, int64_t stride, const tf_rice_mark *m) {
    pthread_mutex_lock(&mark_lock);
    if (!mark_table) mark_table = calloc(MARK_SLOTS, sizeof *mark_table);
    if (mark_table) {
        mark_slot *e = &mark_table[mark_index(&r->id, off)];
        if (!mark_match(e, &r->id, off, stride, r)) {
            *e = (mark_slot){r->id.dev, r->id.ino, r->id.size, r->id.mtime_ns, off, stride,
                             r->rice_nblock, r->rice_bytepix, {0}, {0}};
        }
        for (int k = 0; k < MARK_MAX; k++)
            if (m[k].bit > 0 && m[k].bit <= UINT32_MAX && m[k].pix == k * stride) {
                e->bit[k] = (uint32_t)m[k].bit;
                e->last[k] = m[k].last;
            }
    }
    pthread_mutex_unlock(&mark_lock);
}

/* Decode the RICE_1 tile of `len` bytes at heap offset `off` far enough
 * for pixels [first, nout), from the last recorded mark at or before
 * `first`, and record the marks it passes. From a mark only the bytes the
 * pixels up to nout take from an encoder that picks each block's code
 * well are read (8 * bytepix + 1 bits a pixel at most, and a block code
 * per block); a stream that needs more there, or disagrees with the
 * marks, is decoded again from its start, whole bytes. TF_RICE_ status,
 * MEMORY_ALLOCATION or READ_ERROR. */
static int rice_decode_part(const reader *r, scratch *s, int64_t off, int64_t len, int64_t first,
                            int64_t nout, int64_t tilelen) {
    if (!s->pix && !(s->pix = malloc((size_t)r->tiles->max_tile * 4))) return MEMORY_ALLOCATION;
    int64_t nb = r->rice_nblock, blocks = (tilelen + nb - 1) / nb;
    int64_t stride = nb * ((blocks + MARK_MAX - 1) / MARK_MAX);
    tf_rice_mark m[MARK_MAX];
    const tf_rice_mark *from = NULL;
    if (marks_get(r, off, stride, m))
        for (int64_t k = first / stride; k > 0 && !from; k--)
            if (k < MARK_MAX && m[k].bit > 0 && m[k].pix <= first && m[k].bit < 8 * len)
                from = &m[k];
    int e;
    if (from) {
        int64_t lo = from->bit / 8, n = nout - from->pix, bp = r->rice_bytepix;
        int64_t bits = n * (8 * bp + 1) + (n / nb + 2) * 8 * (bp == 1 ? 3 : bp == 2 ? 4 : 5);
        int64_t hi = lo + bits / 8 + 16;
        if (hi > len) hi = len;
        if ((e = grow(s, hi - lo)) != 0) return e;
        if ((e = pread_heap(r, s->in, hi - lo, off + lo)) != 0) return e;
        tf_rice_mark start = *from;
        start.bit -= 8 * lo;
        tf_rice_mark sub[MARK_MAX]; /* marks relative to lo */
        memset(sub, 0, sizeof sub);
        e = tf_rice_decode_marked(s->in, (size_t)(hi - lo), r->rice_bytepix, r->rice_nblock,
                                  nout, s->pix, &start, sub, stride, MARK_MAX);
        if (e == TF_RICE_OK) {
            for (int k = 0; k < MARK_MAX; k++)
                if (sub[k].bit > 0) m[k] = (tf_rice_mark){sub[k].pix, sub[k].bit + 8 * lo, sub[k].last};
            marks_put(r, off, stride, m);
            return e;
        }
        /* not what the marks said: the whole tile, from its start */
    }
    if ((e = grow(s, len)) != 0) return e;
    if ((e = pread_heap(r, s->in, len, off)) != 0) return e;
    e = tf_rice_decode_marked(s->in, (size_t)len, r->rice_bytepix, r->rice_nblock, nout, s->pix,
                              NULL, m, stride, MARK_MAX);
    if (e == TF_RICE_OK) marks_put(r, off, stride, m);
    return e;
}

/* Decode a tile's first nout pixels (RICE_1; GZIP and HCOMPRESS tiles
 * whole) into s->pix. 0, 1 (cfitsio decodes), -1 with *why, or a cfitsio
 * status. */
static int decode_tile(const reader *r, scratch *s, int64_t len, int64_t nout, int64_t tilelen,
                       const char **why) {
    if (r->codec == HCOMPRESS_1) {
        int e = hcomp_decode_tile(r, s, len, tilelen);
        if (e == MEMORY_ALLOCATION || e == TF_HCOMP_OK) return e;
        *why = tf_hcomp_strerror(e);
        return -1;
    }
    if (r->codec != RICE_1) {
        int e = gunzip_tile(r, s, len, tilelen);
        if (e == -1) *why = "its GZIP stream is corrupt";
        return e;
    }
    int e = rice_decode_tile(r, s, len, nout);
    if (e == MEMORY_ALLOCATION || e == TF_RICE_OK) return e;
    *why = tf_rice_strerror(e);
    return -1;
}

/* Decode the tiles of axis-0 indices [i0, i1) here and copy their part
 * of the region into r->out. A RICE_1 tile is decoded only up to the last
 * pixel the region takes from it. Returns 0; 1 when a tile is not for
 * this pipeline (empty COMPRESSED_DATA, a GZIP tile of another size, an
 * HCOMPRESS tile overshooting an integer output: cfitsio takes the unit);
 * -1 with *bad, *why for a corrupt tile; else a cfitsio status. */
static int own_unit(reader *r, fitsfile *fp, int64_t i0, int64_t i1, scratch *s, int64_t *bad,
                    const char **why) {
    tiling t = *r->tiles;
    const int nd = t.nd;
    t.lo[0] = (r->start[0] + i0 * r->step[0]) / t.tile[0];
    t.hi[0] = (r->start[0] + (i1 - 1) * r->step[0]) / t.tile[0];
    int64_t ostride[TF_MAX_DIMS];
    ostride[nd - 1] = 1;
    for (int d = nd - 2; d >= 0; d--) ostride[d] = ostride[d + 1] * r->count[d + 1];
    int64_t idx[TF_MAX_DIMS];
    for (int d = 0; d < nd; d++) idx[d] = t.lo[d];
    do {
        int64_t origin[TF_MAX_DIMS], extent[TF_MAX_DIMS], a[TF_MAX_DIMS], b[TF_MAX_DIMS];
        int64_t tstride[TF_MAX_DIMS];
        int64_t tilelen = tile_pixels(r, &t, idx, origin, extent);
        int empty = 0;
        for (int d = 0; d < nd; d++) { /* region indices [a, b) that fall in the tile */
            int64_t st0 = r->start[d], k = r->step[d], hi = origin[d] + extent[d];
            a[d] = origin[d] > st0 ? (origin[d] - st0 + k - 1) / k : 0;
            b[d] = (hi - st0 + k - 1) / k;
            if (b[d] > r->count[d]) b[d] = r->count[d];
            empty |= b[d] <= a[d];
        }
        if (empty) continue;
        tstride[nd - 1] = 1;
        for (int d = nd - 2; d >= 0; d--) tstride[d] = tstride[d + 1] * extent[d + 1];
        int64_t last = 0, first = 0; /* the tile's last and first pixels the region takes */
        for (int d = 0; d < nd; d++) {
            last += (r->start[d] + (b[d] - 1) * r->step[d] - origin[d]) * tstride[d];
            first += (r->start[d] + a[d] * r->step[d] - origin[d]) * tstride[d];
        }

        int64_t row = tile_row(&t, idx), len = 0;
        int st = 0; /* cfitsio's calls return at once on a nonzero status */
        if (r->codec == RICE_1 && r->id.on && first >= 2 * r->rice_nblock) {
            /* a cutout: from the tile's marks (id.on: the cells are read
             * with pread) */
            LONGLONG n = 0, off = 0;
            fits_read_descriptll(fp, r->cn_compressed, row, &n, &off, &st);
            if (st) return st;
            if (n == 0) return 1;
            st = rice_decode_part(r, s, (int64_t)off, (int64_t)n, first, last + 1, tilelen);
            if (st != TF_RICE_OK && st != MEMORY_ALLOCATION && st != READ_ERROR) {
                *why = tf_rice_strerror(st);
                st = -1;
            }
        } else {
            st = tile_bytes(r, fp, r->cn_compressed, row, s, &len);
            if (st) return st;
            if (len == 0) return 1;
            st = decode_tile(r, s, len, last + 1, tilelen, why);
        }
        if (st != 0) {
            if (st == -1) memcpy(bad, idx, sizeof idx);
            return st;
        }
        qtile q = {0};
        if (r->own == OWN_FLOAT && (st = qtile_params(r, fp, row, &q)) != 0) return st;

        /* odometer over the axes before the last; runs along the last */
        int64_t j[TF_MAX_DIMS];
        for (int d = 0; d < nd; d++) j[d] = a[d];
        const int L = nd - 1;
        const int64_t n = b[L] - a[L], k = r->step[L];
        for (;;) {
            int64_t p = 0, o = 0;
            for (int d = 0; d < nd; d++) {
                p += (r->start[d] + j[d] * r->step[d] - origin[d]) * tstride[d];
                o += j[d] * ostride[d];
            }
            if (convert(r, &q, s->pix, p, k, n, r->out + (size_t)o * r->out_size)) return 1;
            int d = L - 1;
            while (d >= 0 && ++j[d] == b[d]) j[d] = a[d], d--;
            if (d < 0) break;
        }
    } while (next_tile(&t, idx));
    return 0;
}

typedef struct worker {
    reader *r;
    fitsfile *fp;  /* NULL: open a private handle */
    int all;       /* take the whole region as one unit */
} worker;

static void record_bad_tile(reader *r, const int64_t *bad, const char *why) {
    pthread_mutex_lock(&r->lock);
    if (!r->failed) {
        r->fail_why = why;
        memcpy(r->fail_tile, bad, sizeof r->fail_tile);
    }
    pthread_mutex_unlock(&r->lock);
}

static void *work(void *arg) {
    worker *w = arg;
    reader *r = w->r;
    fitsfile *fp = w->fp;
    int st = 0;
    scratch s = {0};
    if (!fp && (st = open_private(r, &fp)) != 0) {
        record_failure(r, st, -1, -1);
    } else {
        int64_t i0, i1;
        int64_t bad[TF_MAX_DIMS];
        const char *why = NULL;
        while (take_unit(r, w->all, &i0, &i1)) {
            st = r->own ? own_unit(r, fp, i0, i1, &s, bad, &why) : 1;
            if (st == 1) { /* cfitsio decodes, after the checks */
                st = r->gzip_cols[0] > 0 || r->rice || r->hcomp || r->plio
                         ? scan_tiles(r, fp, i0, i1, &s, bad, &why)
                         : 0;
                if (st == 0) st = read_unit(r, fp, i0, i1);
            }
            if (st != 0) {
                if (st == -1) record_bad_tile(r, bad, why);
                record_failure(r, st, i0, i1);
                break;
            }
        }
    }
    free_scratch(&s);
    if (!w->fp) close_private(fp);
    return NULL;
}

/* 1-based table row of the tile at tile indices idx (C order). */
static int64_t tile_row(const tiling *t, const int64_t *idx) {
    int64_t row = 0;
    for (int d = 0; d < t->nd; d++) row = row * t->ntiles[d] + idx[d];
    return row + 1;
}

/* Next tile index in [lo, hi] (odometer); 0 after the last. */
static int next_tile(const tiling *t, int64_t *idx) {
    int d = t->nd - 1;
    while (d >= 0 && ++idx[d] > t->hi[d]) idx[d] = t->lo[d], d--;
    return d >= 0;
}

static void describe_tile(const tiling *t, const int64_t *idx, char *buf, size_t n) {
    int len = snprintf(buf, n, "tile %lld (pixels", (long long)tile_row(t, idx));
    for (int d = 0; d < t->nd && len > 0 && (size_t)len < n; d++)
        len += snprintf(buf + len, n - (size_t)len, "%s%lld:%lld", d ? ", " : " ",
                        (long long)(idx[d] * t->tile[d]),
                        (long long)((idx[d] + 1) * t->tile[d]));
    if (len > 0 && (size_t)len < n) snprintf(buf + len, n - (size_t)len, ")");
}

/* A ZTILEn larger than its axis (astropy writes ZTILE1 = 128 for a
 * 70-pixel axis when asked for such a tile) describes one tile along that
 * axis, clipped to the image, as astropy and fitsio read it: clip it in
 * cfitsio's description of the HDU on fp, where it also sizes cfitsio's
 * tile buffer (maxtilelen, the product of ZTILEn: unclipped, ZTILEn of
 * 10^6 on a small image asked for a buffer of 10^12 pixels). The layout
 * is unchanged: that axis has one tile either way. cfitsio sets both
 * again whenever it reads the header, so every read clips before cfitsio
 * decodes (make_tiling, read_slab). */
static void clip_tiles(fitsfile *fp) {
    FITSfile *F = fp->Fptr;
    if (F->zndim < 1 || F->zndim > MAX_COMPRESS_DIM) return;
    long maxtilelen = 1;
    for (int a = 0; a < F->zndim; a++) {
        if (F->znaxis[a] >= 1 && F->tilesize[a] > F->znaxis[a]) F->tilesize[a] = F->znaxis[a];
        if (F->tilesize[a] < 1 || __builtin_mul_overflow(maxtilelen, F->tilesize[a], &maxtilelen))
            return; /* make_tiling refuses these */
    }
    F->maxtilelen = maxtilelen;
}

/* Check ZTILEn against the image and the table, and find the tiles that
 * overlap the box start..start+(count-1)*step. */
static int make_tiling(tf_file *f, const tf_hdu_info *in, const int64_t *start,
                       const int64_t *count, const int64_t *step, tiling *t) {
    FITSfile *F = f->fp->Fptr;
    clip_tiles(f->fp);
    t->nd = in->ndim;
    RETURN_ERROR_IF(F->zndim != in->ndim, f, TF_ECORRUPT,
                    "ZNAXIS = %d but the image has %d axes", F->zndim, in->ndim);
    int64_t total = 1, maxtile = 1, npix = 1;
    for (int d = 0; d < t->nd; d++) {
        int a = t->nd - 1 - d;
        int64_t n = in->shape[d], z = F->tilesize[a];
        RETURN_ERROR_IF(z < 1, f, TF_ECORRUPT, "ZTILE%d = %lld is not positive", a + 1,
                        (long long)z);
        t->tile[d] = z;
        t->ntiles[d] = n == 0 ? 0 : (n - 1) / z + 1;
        RETURN_ERROR_IF(!tf_mul_ok(total, t->ntiles[d], &total) ||
                            !tf_mul_ok(maxtile, z, &maxtile) || !tf_mul_ok(npix, n, &npix),
                        f, TF_ECORRUPT, "ZNAXISn and ZTILEn overflow");
        if (count[d] > 0) {
            t->lo[d] = start[d] / z;
            t->hi[d] = (start[d] + (count[d] - 1) * step[d]) / z;
        }
    }
    t->max_tile = maxtile;
    /* cfitsio allocates a buffer of ZTILE1*ZTILE2*... elements (clipped to
     * the image above, so this holds for every image with pixels). */
    RETURN_ERROR_IF(maxtile > npix, f, TF_ECORRUPT,
                    "inconsistent ZNAXISn and ZTILEn: a tile of %lld pixels in an image of %lld",
                    (long long)maxtile, (long long)npix);
    RETURN_ERROR_IF(total > (int64_t)F->numrows, f, TF_ECORRUPT,
                    "inconsistent ZNAXISn and ZTILEn: %lld tiles but the table has %lld rows",
                    (long long)total, (long long)F->numrows);
    return TF_OK;
}

static const char *comp_name(int type) {
    switch (type) {
    case RICE_1: return "RICE_1";
    case GZIP_1: return "GZIP_1";
    case GZIP_2: return "GZIP_2";
    case PLIO_1: return "PLIO_1";
    case HCOMPRESS_1: return "HCOMPRESS_1";
    case BZIP2_1: return "BZIP2_1";
    default: return "its ZCMPTYPE";
    }
}

/* Every descriptor of the tiles in t's box must point inside the heap,
 * and the heap inside the file. */
static int check_descriptors(tf_file *f, const tiling *t) {
    FITSfile *F = f->fp->Fptr;
    int st = 0;
    LONGLONG head = 0, data = 0, end = 0;
    fits_get_hduaddrll(f->fp, &head, &data, &end, &st);
    RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "cannot locate the tile table");
    int64_t limit = end;
    if (tf_direct(f) && f->file_size < limit) limit = f->file_size;
    /* THEAP, as cfitsio took it, may be anything (9223372036854775807
     * overflowed here: header variants under UBSan). */
    int64_t heap;
    RETURN_ERROR_IF(F->heapstart < 0 || __builtin_add_overflow((int64_t)data, (int64_t)F->heapstart,
                                                               &heap) || heap > limit,
                    f, TF_ECORRUPT, "the heap (THEAP = %lld) lies outside the file",
                    (long long)F->heapstart);
    const int cols[3] = {F->cn_compressed, F->cn_gzip_data, F->cn_uncompressed};
    int64_t width[3] = {0, 0, 0};
    /* cfitsio leaves these 0 when it gave up on the compression keywords
     * half-way (a damaged ZCMPTYPE), and then decodes column 0: it reads
     * before its column table (fuzzer and corruption suite, under ASan
     * now and then: SEGV in ffgdesll). */
    RETURN_ERROR_IF(cols[0] <= 0 && cols[1] <= 0 && cols[2] <= 0, f, TF_ECORRUPT,
                    "the tile table has no COMPRESSED_DATA column that cfitsio accepts");
    for (int c = 0; c < 3; c++) {
        if (cols[c] <= 0) continue;
        int typecode = 0;
        LONGLONG repeat = 0, w = 0;
        fits_get_coltypell(f->fp, cols[c], &typecode, &repeat, &w, &st);
        RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "bad tile column %d", cols[c]);
        RETURN_ERROR_IF(typecode >= 0 || w < 1, f, TF_ECORRUPT,
                        "tile column %d is not a variable-length array", cols[c]);
        /* The codecs read bytes (PLIO_1: 16-bit line lists); cfitsio
         * would decode whatever the column holds. */
        int want = c == 0 && F->compress_type == PLIO_1 ? TSHORT : TBYTE;
        RETURN_ERROR_IF(c < 2 && -typecode != want && !(want == TBYTE && -typecode == TSBYTE), f,
                        TF_ECORRUPT, "tile column %s holds %s, not the %s that %s needs",
                        c == 0 ? "COMPRESSED_DATA" : "GZIP_COMPRESSED_DATA",
                        -typecode == TSHORT ? "16-bit integers" : "another type",
                        want == TSHORT ? "16-bit integers" : "bytes",
                        c == 0 ? comp_name(F->compress_type) : "GZIP");
        width[c] = w;
    }
    int64_t idx[TF_MAX_DIMS];
    for (int d = 0; d < t->nd; d++) idx[d] = t->lo[d];
    char where[256];
    /* A remote file: the heap ranges of the tiles in the box, fetched at
     * once below (merged, on several connections) rather than one request
     * per tile as they are decoded. */
    int64_t *want = NULL;
    int nwant = 0, capwant = 0;
    do {
        int64_t row = tile_row(t, idx);
        for (int c = 0; c < 3; c++) {
            if (cols[c] <= 0) continue;
            LONGLONG len = 0, off = 0;
            int64_t bytes, stop;
            fits_read_descriptll(f->fp, cols[c], row, &len, &off, &st);
            if (st) describe_tile(t, idx, where, sizeof where);
            RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "%s: cannot read its descriptor", where);
            if (len < 0 || off < 0 || !tf_mul_ok(len, width[c], &bytes) ||
                __builtin_add_overflow(heap, (int64_t)off, &stop) ||
                __builtin_add_overflow(stop, bytes, &stop) || stop > limit) {
                describe_tile(t, idx, where, sizeof where);
                free(want);
                return tf_fail(f, TF_ECORRUPT, 0,
                               "%s: its data (%lld elements at heap offset %lld) lies outside "
                               "the heap", where, (long long)len, (long long)off);
            }
            if (f->remote && bytes > 0 && capwant >= 0) {
                if (nwant == capwant) {
                    int64_t *w = capwant < (1 << 20) ? realloc(want, (size_t)(capwant ? 2 * capwant : 64) * 2 * sizeof *w) : NULL;
                    if (!w) { /* no prefetch: the tiles are read one by one */
                        capwant = -1;
                        continue;
                    }
                    want = w;
                    capwant = capwant ? 2 * capwant : 64;
                }
                want[2 * nwant] = heap + (int64_t)off;
                want[2 * nwant + 1] = bytes;
                nwant++;
            }
        }
    } while (next_tile(t, idx));
    if (capwant > 0) tf_source_prefetch(&f->src, want, nwant);
    free(want);
    return TF_OK;
}

/* After a unit failed: decode its tiles one at a time on f->fp to name the
 * first bad one. Each tile's part of the region is read into `scratch`. */
static void name_bad_tile(tf_file *f, const reader *r, const tiling *t0, char *where, size_t n) {
    tiling t = *t0;
    int64_t i0 = r->fail_i0, i1 = r->fail_i1;
    t.lo[0] = (r->start[0] + i0 * r->step[0]) / t.tile[0];
    t.hi[0] = (r->start[0] + (i1 - 1) * r->step[0]) / t.tile[0];
    snprintf(where, n, "tile row %lld", (long long)t.lo[0]);
    /* Tiles decoded here may have been checked only in part: cfitsio must
     * not see them. */
    if (r->own) return;
    /* At most min(count, ZTILE) region indices fall in one tile per axis. */
    size_t max_elems = 1;
    for (int d = 0; d < t.nd; d++)
        max_elems *= (size_t)(r->count[d] < t.tile[d] ? r->count[d] : t.tile[d]);
    char *scratch = malloc(max_elems * r->out_size);
    if (!scratch) return;
    int64_t idx[TF_MAX_DIMS];
    for (int d = 0; d < t.nd; d++) idx[d] = t.lo[d];
    do {
        int64_t start[TF_MAX_DIMS], count[TF_MAX_DIMS];
        int empty = 0;
        for (int d = 0; d < t.nd && !empty; d++) {
            /* region indices that fall in this tile along axis d */
            int64_t lo = idx[d] * t.tile[d], hi = lo + t.tile[d];
            int64_t s = r->start[d], k = r->step[d];
            int64_t a = lo > s ? (lo - s + k - 1) / k : 0;
            int64_t b = (hi - s + k - 1) / k;
            if (b > r->count[d]) b = r->count[d];
            empty = b <= a;
            start[d] = s + a * k;
            count[d] = b - a;
        }
        if (!empty && read_slab(r, f->fp, start, count, scratch) != 0) {
            describe_tile(&t, idx, where, n);
            break;
        }
    } while (next_tile(&t, idx));
    free(scratch);
}

/* The tiles checked before cfitsio decodes them (scan_tiles): GZIP
 * streams, in the columns that hold them, RICE_1 and HCOMPRESS_1 streams,
 * PLIO_1 line lists; and how their bytes are read. */
static int set_codecs(reader *r, tf_file *f, const tf_hdu_info *in, const tiling *t) {
    FITSfile *F = f->fp->Fptr;
    int n = 0, gz = F->compress_type == GZIP_1 || F->compress_type == GZIP_2;
    /* Floats: quantized tiles hold 4-byte integers, lossless ones (and the
     * GZIP_COMPRESSED_DATA fallback) the floats themselves. Integer
     * images: cfitsio takes 1, 2, 4 or 8 bytes a pixel. */
    int fwidth = F->zbitpix < 0 ? -F->zbitpix / 8 : 0;
    if (gz && F->cn_compressed > 0) {
        r->gzip_width[n] = fwidth && F->quantize_level != NO_QUANTIZE ? 4 : fwidth;
        r->gzip_cols[n++] = F->cn_compressed;
    }
    if (F->cn_gzip_data > 0) {
        r->gzip_width[n] = fwidth;
        r->gzip_cols[n++] = F->cn_gzip_data;
    }
    r->gzip_max = t->max_tile * 8; /* no stored pixel is wider than 8 bytes */
    r->shape = in->shape;
    r->rice = F->compress_type == RICE_1 && F->cn_compressed > 0;
    r->plio = F->compress_type == PLIO_1 && F->cn_compressed > 0;
    r->hcomp = F->compress_type == HCOMPRESS_1 && F->cn_compressed > 0;
    /* as imcomp_decompress_tile picks the decoders */
    r->hcomp_smooth = F->hcomp_smooth;
    r->hcomp_wide = F->zbitpix != BYTE_IMG && F->zbitpix != SHORT_IMG;
    r->rice_bytepix = F->rice_bytepix == 1 || F->rice_bytepix == 2 ? F->rice_bytepix : 4;
    r->rice_nblock = F->rice_blocksize;
    r->cn_compressed = F->cn_compressed;
    int st = 0;
    LONGLONG head = 0, data = 0, end = 0;
    fits_get_hduaddrll(f->fp, &head, &data, &end, &st);
    RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "cannot locate the tile table");
    r->heap = (int64_t)data + (int64_t)F->heapstart; /* in the file: check_descriptors */
    /* Tile bytes are read with pread only from the column types that hold
     * them as they are (1PB / 1QB, 1PI / 1QI for PLIO); cfitsio converts
     * anything else, and then so do we, through it. */
    if (F->cn_compressed > 0 && tf_direct(f)) {
        int typecode = 0;
        LONGLONG repeat = 0, width = 0;
        fits_get_coltypell(f->fp, F->cn_compressed, &typecode, &repeat, &width, &st);
        RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "bad tile column %d", F->cn_compressed);
        r->pread_ok = r->plio ? typecode == -TSHORT : typecode == -TBYTE;
    }
    return TF_OK;
}

static int is_int(tf_dtype t) {
    return t == TF_UINT8 || t == TF_INT8 || t == TF_INT16 || t == TF_UINT16 || t == TF_INT32 ||
           t == TF_UINT32 || t == TF_INT64;
}

/* Whether every value in [lo, hi] fits integer dtype t. (Callers pass
 * at most 2^31 + 2^32 in magnitude, far inside int64.) */
static int holds(tf_dtype t, double lo, double hi) {
    int64_t min, max;
    return tf_int_range(t, &min, &max) && lo >= (double)min && hi <= (double)max;
}

/* Whether this read's tiles are decoded here (own_unit; RICE_1, GZIP_1,
 * GZIP_2, HCOMPRESS_1), and the constants for it. Covered: integer images read as
 * integers with
 * BSCALE 1 and an integral BZERO (the unsigned conventions), and
 * integer images read as floats (BSCALE, BZERO, BLANK/ZBLANK -> NaN),
 * and quantized float images read as their own type (any ZQUANTIZ,
 * ZSCALE/ZZERO and ZBLANK as columns or keywords). Anything else is decoded by
 * cfitsio, after scan_tiles has checked its streams. */
static void set_own(reader *r, tf_file *f, const tf_hdu_info *in, tf_dtype out_type, int raw) {
    FITSfile *F = f->fp->Fptr;
    r->own = 0;
    int bp, nb; /* bytes of a decoded pixel; of the image's integers */
    r->codec = F->compress_type;
    if (r->codec == RICE_1) {
        if (!r->rice || r->rice_nblock < 1) return;
        nb = bp = r->rice_bytepix;
    } else if (r->codec == GZIP_1 || r->codec == GZIP_2) {
        /* the size imcomp_decompress_tile expects of a valid tile */
        nb = bp = F->zbitpix > 0 ? F->zbitpix / 8 : 4;
        if (F->cn_compressed <= 0 || (bp != 1 && bp != 2 && bp != 4)) return;
    } else if (r->codec == HCOMPRESS_1) {
        /* always 32-bit ints out of the decoder, whatever ZBITPIX */
        bp = 4;
        nb = F->zbitpix > 0 ? F->zbitpix / 8 : 4;
        if (!r->hcomp || (nb != 1 && nb != 2 && nb != 4)) return;
        r->clip = 1;
    } else {
        return;
    }
    r->pix_bytes = bp;
    r->out_type = out_type;
    r->bscale = raw ? 1.0 : in->bscale;
    r->bzero = raw ? 0.0 : in->bzero;
    if (F->zbitpix == 8 * nb && is_int(out_type) && F->cn_zscale == 0 && r->bscale == 1.0 &&
        r->bzero == floor(r->bzero) && fabs(r->bzero) <= 4294967296.0) {
        double lo = nb == 1 ? 0 : nb == 2 ? -32768.0 : -2147483648.0;
        double hi = nb == 1 ? 255 : nb == 2 ? 32767.0 : 2147483647.0;
        if (!holds(out_type, lo + r->bzero, hi + r->bzero)) return;
        r->izero = (int64_t)r->bzero;
        r->stored_type = bp == 1 ? TF_UINT8 : bp == 2 ? TF_INT16 : TF_INT32;
        r->own = OWN_INT;
    } else if ((F->zbitpix == FLOAT_IMG && bp == 4 && out_type == TF_FLOAT32 &&
                F->quantize_level != NO_QUANTIZE) ||
               (F->zbitpix == DOUBLE_IMG && bp == 4 && out_type == TF_FLOAT64 &&
                F->quantize_level != NO_QUANTIZE) ||
               (F->zbitpix == 8 * nb && (out_type == TF_FLOAT32 || out_type == TF_FLOAT64))) {
        if (F->cn_zscale > 0 && F->cn_zzero <= 0) return;
        if (!fits_rand_value && fits_init_randoms()) return;
        int dithered = F->zbitpix < 0 && (F->quantize_method == SUBTRACTIVE_DITHER_1 ||
                                          F->quantize_method == SUBTRACTIVE_DITHER_2);
        r->dither = dithered ? F->quantize_method : 0;
        r->seed = F->dither_seed;
        r->cn_zscale = F->cn_zscale;
        r->cn_zzero = F->cn_zzero;
        r->zscale = F->zscale;
        r->zzero = F->zzero;
        r->cn_zblank = F->cn_zblank;
        r->zblank = F->zblank;
        r->nullcheck = F->cn_zblank != 0 && r->nulval != NULL;
        r->zbitpix = F->zbitpix;
        r->own = OWN_FLOAT;
    }
}

/* What a read and a check share: the tiling of the region, every
 * overlapping tile's data checked against the heap, and the reader's
 * geometry. *nelem 0: an empty region, nothing to do. */
static int prepare_reader(tf_file *f, const tf_hdu_info *in, const int64_t *start,
                          const int64_t *count, const int64_t *step, tiling *t, reader *r,
                          int64_t *nelem) {
    memset(r, 0, sizeof *r);
    *nelem = 1;
    for (int d = 0; d < in->ndim; d++) *nelem *= count[d];
    if (*nelem == 0) return TF_OK;
    FORWARD_IF_ERROR(make_tiling(f, in, start, count, step, t));
    FORWARD_IF_ERROR(check_descriptors(f, t));
    r->f = f;
    r->nd = in->ndim;
    r->start = start;
    r->count = count;
    r->step = step;
    r->tile0 = t->tile[0];
    r->tiles = t;
    FORWARD_IF_ERROR(set_codecs(r, f, in, t));
    struct stat sb;
    if (r->rice && r->pread_ok && f->fd >= 0 && fstat(f->fd, &sb) == 0 &&
        S_ISREG(sb.st_mode))
        r->id = (file_id){1, (uint64_t)sb.st_dev, (uint64_t)sb.st_ino, (int64_t)sb.st_size,
                          (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec};
    return TF_OK;
}

void tf_forget_tiles(fitsfile *fp) {
    /* cfitsio keeps the last decoded tile of each tile column, keyed by
     * row and data type but not by the scaling it applied: after a raw
     * read (fits_set_bscale 1, 0) a scaled read of the same tile got the
     * raw values back (fuzzer: the two read paths disagreed on one
     * handle with BSCALE 4). Forget them before a read. */
    FITSfile *F = fp->Fptr;
    if (!F->tilerow || F->tilesize[0] < 1 || F->znaxis[0] < 1) return;
    long n = (long)((F->znaxis[0] - 1) / F->tilesize[0]) + 1;
    for (long k = 0; k < n; k++) F->tilerow[k] = 0;
}

int tf_compressed_check(tf_file *f, const tf_hdu_info *in, const int64_t *start,
                        const int64_t *count, const int64_t *step) {
    tiling t;
    reader r;
    int64_t nelem;
    FORWARD_IF_ERROR(prepare_reader(f, in, start, count, step, &t, &r, &nelem));
    tf_forget_tiles(f->fp);
    if (nelem == 0) return TF_OK;
    if (r.gzip_cols[0] <= 0 && !r.rice && !r.hcomp && !r.plio) return TF_OK;
    int64_t bad[TF_MAX_DIMS];
    const char *why = NULL;
    scratch s = {0};
    int st = scan_tiles(&r, f->fp, 0, count[0], &s, bad, &why);
    free_scratch(&s);
    if (st == -1) {
        char where[256];
        describe_tile(&t, bad, where, sizeof where);
        return tf_fail(f, TF_ECORRUPT, 0, "%s: cannot decode the compressed data: %s", where, why);
    }
    RETURN_ERROR_IF(st == MEMORY_ALLOCATION, f, TF_ENOMEM,
                    "cannot allocate memory to check tiles of %lld pixels", (long long)t.max_tile);
    RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "cannot read the compressed tiles");
    return TF_OK;
}

int tf_compressed_read(tf_file *f, const tf_hdu_info *in, tf_dtype out_type, int raw,
                       const int64_t *start, const int64_t *count, const int64_t *step,
                       int threads, void *out) {
    tiling t;
    reader r;
    int64_t nelem;
    FORWARD_IF_ERROR(prepare_reader(f, in, start, count, step, &t, &r, &nelem));
    if (nelem == 0) return TF_OK;
    tf_forget_tiles(f->fp);

    float nan32 = NAN;
    double nan64 = NAN;
    r.hdu = in->index;
    r.raw = raw;
    r.type = tf_cfitsio_type(out_type);
    r.row_elems = nelem / count[0];
    r.out_size = tf_dtype_size(out_type);
    r.out = out;
    /* Decoded tiles land all over a fresh tensor: 4 KiB faults were ~15%
     * of a 4k x 4k RICE_1 read's CPU time. */
    tf_advise_huge(out, (size_t)nelem * r.out_size, (size_t)4 << 20);
    /* NaN for null pixels (BLANK, ZBLANK, NaN in the stored floats) where
     * the output is a float, as the cfitsio path does. */
    if (!raw && out_type == TF_FLOAT32 && (in->has_blank || in->raw_dtype == TF_FLOAT32))
        r.nulval = &nan32;
    if (!raw && out_type == TF_FLOAT64 && (in->has_blank || in->raw_dtype == TF_FLOAT64))
        r.nulval = &nan64;
    set_own(&r, f, in, out_type, raw);
    pthread_mutex_init(&r.lock, NULL);

    int rc = TF_OK, st = 0;
    if (raw) {
        fits_set_bscale(f->fp, 1.0, 0.0, &st);
        GOTO_IF_CFITSIO(st, f, TF_ECORRUPT, "cannot turn scaling off");
    }

    /* Threads: only for plain files and reads worth splitting. */
    int nt = tf_auto_threads(threads);
    if (!tf_direct(f) || (size_t)nelem * r.out_size < PARALLEL_MIN_BYTES) nt = 1;
    if (nt > 1) {
        int64_t units = 0;
        for (int64_t i = 0; i < count[0] && units < nt; i = unit_end(&r, i, 0)) units++;
        if (units < nt) nt = (int)units;
    }

    worker ws[TF_MAX_THREADS];
    for (int i = 0; i < nt; i++) ws[i] = (worker){&r, i == 0 ? f->fp : NULL, nt == 1};
    tf_run_jobs(work, ws, sizeof ws[0], nt); /* the calling thread works too */

    if (r.failed) {
        if (r.fail_i0 < 0) {
            /* A worker could not open its handle: read on one thread. */
            fits_clear_errmsg();
            r.failed = 0;
            r.next = 0;
            worker w = {&r, f->fp, 1};
            work(&w);
        }
    }
    if (r.failed && r.fail_why) {
        char where[256];
        describe_tile(&t, r.fail_tile, where, sizeof where);
        rc = tf_fail(f, TF_ECORRUPT, 0, "%s: cannot decode the compressed data: %s", where,
                     r.fail_why);
        goto cleanup;
    }
    /* Out of memory is not a damaged tile: no poisoning, and no retry
     * tile by tile (name_bad_tile) that would ask again. */
    if (r.failed && r.st == MEMORY_ALLOCATION) {
        fits_clear_errmsg();
        rc = tf_fail(f, TF_ENOMEM, 0, "cannot allocate memory to decode tiles of %lld pixels",
                     (long long)t.max_tile);
        goto cleanup;
    }
    if (r.failed) {
        char where[256];
        fits_clear_errmsg(); /* the workers' messages; the retry leaves its own */
        name_bad_tile(f, &r, &t, where, sizeof where);
        GOTO_IF_CFITSIO(r.st, f, TF_ECORRUPT, "%s: cannot decode the compressed data", where);
    }
cleanup:
    if (raw) {
        int st2 = 0;
        fits_set_bscale(f->fp, in->bscale, in->bzero, &st2);
    }
    pthread_mutex_destroy(&r.lock);
    return rc;
}
