/*
 * tiles.c - reading tile-compressed images on several threads.
 *
 * cfitsio decodes: every tile goes through its own codecs, dequantization,
 * dithering, null handling and scaling (fits_read_subset), so results equal
 * cfitsio's, and astropy's and fitsio's, bit for bit. What this file adds:
 *  - the region is cut along its slowest axis at tile-row boundaries into
 *    units; a unit is a contiguous slab of the output, so each thread
 *    decodes its units straight into their place in the caller's buffer;
 *  - every thread has its own cfitsio handle. cfitsio attaches a second
 *    open of the same file name to the first one's buffers, which is not
 *    safe across threads, so workers open the file by a name of their own:
 *    /proc/self/fd/N of a dup of our descriptor (the same inode, even if
 *    the file has been renamed since). Where that fails, one thread reads;
 *  - only tiles that overlap the region are decoded (cfitsio's subset
 *    read), and only the overlapping part is copied;
 *  - before anything is decoded, the tile table is checked: ZTILEn against
 *    ZNAXISn and the table's rows, and every descriptor of an overlapping
 *    tile against the heap and the real file size, so a hostile length
 *    never reaches cfitsio's allocator;
 *  - memory: cfitsio keeps one decoded tile per tile column per handle;
 *    worker handles are closed at the end of the read, so the peak is the
 *    output plus one row of tiles per thread.
 *  - GZIP tiles are inflated once into a small window first: cfitsio grows
 *    its output buffer for as long as a (corrupt) stream keeps producing,
 *    so a bad tile could make it allocate without end;
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
#include <zlib.h>

#include "compress.h"

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
    int gzip_bad;             /* it was a GZIP tile that would not inflate */
    int64_t fail_tile[TF_MAX_DIMS];
    /* GZIP tiles, checked before cfitsio inflates them */
    const tiling *tiles;
    int gzip_cols[2];         /* columns holding gzip streams; 0: none */
    int64_t gzip_max;         /* bytes a tile may inflate to */
} reader;

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

/* A handle of this thread's own on the same file, at the HDU. */
static int open_private(const reader *r, fitsfile **fp, int *dupfd) {
    int st = 0;
    *fp = NULL;
    *dupfd = dup(r->f->fd);
    if (*dupfd < 0) return FILE_NOT_OPENED;
    char name[64];
    snprintf(name, sizeof name, "/proc/self/fd/%d", *dupfd);
    fits_open_diskfile(fp, name, READONLY, &st);
    if (st) {
        *fp = NULL;
        return st;
    }
    fits_movabs_hdu(*fp, r->hdu + 1, NULL, &st);
    if (!st && r->raw) fits_set_bscale(*fp, 1.0, 0.0, &st);
    return st;
}

static void close_private(fitsfile *fp, int dupfd) {
    int st = 0;
    if (fp) fits_close_file(fp, &st);
    if (dupfd >= 0) close(dupfd);
}

static int64_t tile_row(const tiling *t, const int64_t *idx);
static int next_tile(const tiling *t, int64_t *idx);

/* Whether `len` bytes of gzip stream inflate, within r->gzip_max bytes. */
static int inflates(const reader *r, const unsigned char *in, int64_t len) {
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
            ok = (int64_t)z.total_out <= r->gzip_max;
            break;
        }
        if (e != Z_OK || (int64_t)z.total_out > r->gzip_max) break;
    }
    inflateEnd(&z);
    return ok;
}

/* Check the GZIP tiles of axis-0 indices [i0, i1) on handle fp. Returns a
 * cfitsio status, or -1 with the tile in *bad when a stream is corrupt. */
static int scan_gzip(const reader *r, fitsfile *fp, int64_t i0, int64_t i1, int64_t *bad) {
    tiling t = *r->tiles;
    t.lo[0] = (r->start[0] + i0 * r->step[0]) / t.tile[0];
    t.hi[0] = (r->start[0] + (i1 - 1) * r->step[0]) / t.tile[0];
    int64_t idx[TF_MAX_DIMS];
    for (int d = 0; d < t.nd; d++) idx[d] = t.lo[d];
    unsigned char *buf = NULL;
    int64_t cap = 0;
    int st = 0;
    do {
        for (int c = 0; c < 2 && r->gzip_cols[c] > 0 && !st; c++) {
            LONGLONG len = 0, off = 0;
            fits_read_descriptll(fp, r->gzip_cols[c], tile_row(&t, idx), &len, &off, &st);
            if (st || len == 0) continue;
            if (len > cap) { /* checked against the heap by check_descriptors */
                free(buf);
                if (!(buf = malloc((size_t)len))) {
                    st = MEMORY_ALLOCATION;
                    break;
                }
                cap = len;
            }
            int anynul = 0;
            fits_read_col(fp, TBYTE, r->gzip_cols[c], tile_row(&t, idx), 1, len, NULL, buf,
                          &anynul, &st);
            if (!st && !inflates(r, buf, len)) {
                memcpy(bad, idx, sizeof idx);
                st = -1;
            }
        }
    } while (!st && next_tile(&t, idx));
    free(buf);
    return st;
}

typedef struct worker {
    reader *r;
    fitsfile *fp;  /* NULL: open a private handle */
    int all;       /* take the whole region as one unit */
} worker;

static void *work(void *arg) {
    worker *w = arg;
    reader *r = w->r;
    fitsfile *fp = w->fp;
    int dupfd = -1, st = 0;
    if (!fp && (st = open_private(r, &fp, &dupfd)) != 0) {
        record_failure(r, st, -1, -1);
    } else {
        int64_t i0, i1;
        int64_t bad[TF_MAX_DIMS];
        while (take_unit(r, w->all, &i0, &i1)) {
            if (r->gzip_cols[0] > 0 && (st = scan_gzip(r, fp, i0, i1, bad)) != 0) {
                pthread_mutex_lock(&r->lock);
                if (!r->failed && st == -1) {
                    r->gzip_bad = 1;
                    memcpy(r->fail_tile, bad, sizeof bad);
                }
                pthread_mutex_unlock(&r->lock);
                record_failure(r, st, i0, i1);
                break;
            }
            if ((st = read_unit(r, fp, i0, i1)) != 0) {
                record_failure(r, st, i0, i1);
                break;
            }
        }
    }
    if (!w->fp) close_private(fp, dupfd);
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

/* Check ZTILEn against the image and the table, and find the tiles that
 * overlap the box start..start+(count-1)*step. */
static int make_tiling(tf_file *f, const tf_hdu_info *in, const int64_t *start,
                       const int64_t *count, const int64_t *step, tiling *t) {
    FITSfile *F = f->fp->Fptr;
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
    /* cfitsio allocates a buffer of ZTILE1*ZTILE2*... elements. */
    RETURN_ERROR_IF(maxtile > npix, f, TF_ECORRUPT,
                    "inconsistent ZNAXISn and ZTILEn: a tile of %lld pixels in an image of %lld",
                    (long long)maxtile, (long long)npix);
    RETURN_ERROR_IF(total > (int64_t)F->numrows, f, TF_ECORRUPT,
                    "inconsistent ZNAXISn and ZTILEn: %lld tiles but the table has %lld rows",
                    (long long)total, (long long)F->numrows);
    return TF_OK;
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
    if (f->fd >= 0 && f->file_size < limit) limit = f->file_size;
    int64_t heap = (int64_t)data + (int64_t)F->heapstart;
    const int cols[3] = {F->cn_compressed, F->cn_gzip_data, F->cn_uncompressed};
    int64_t width[3] = {0, 0, 0};
    for (int c = 0; c < 3; c++) {
        if (cols[c] <= 0) continue;
        int typecode = 0;
        LONGLONG repeat = 0, w = 0;
        fits_get_coltypell(f->fp, cols[c], &typecode, &repeat, &w, &st);
        RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "bad tile column %d", cols[c]);
        RETURN_ERROR_IF(typecode >= 0 || w < 1, f, TF_ECORRUPT,
                        "tile column %d is not a variable-length array", cols[c]);
        width[c] = w;
    }
    int64_t idx[TF_MAX_DIMS];
    for (int d = 0; d < t->nd; d++) idx[d] = t->lo[d];
    char where[256];
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
                return tf_fail(f, TF_ECORRUPT, 0,
                               "%s: its data (%lld elements at heap offset %lld) lies outside "
                               "the heap", where, (long long)len, (long long)off);
            }
        }
    } while (next_tile(t, idx));
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

/* The table columns whose tiles are GZIP streams, which scan_gzip
 * inflates into a bounded window before cfitsio does. */
static void set_gzip_columns(reader *r, tf_file *f, const tiling *t) {
    FITSfile *F = f->fp->Fptr;
    int n = 0, gz = F->compress_type == GZIP_1 || F->compress_type == GZIP_2;
    if (gz && F->cn_compressed > 0) r->gzip_cols[n++] = F->cn_compressed;
    if (F->cn_gzip_data > 0) r->gzip_cols[n++] = F->cn_gzip_data;
    r->gzip_max = t->max_tile * 8; /* no stored pixel is wider than 8 bytes */
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
    set_gzip_columns(r, f, t);
    return TF_OK;
}

int tf_compressed_check(tf_file *f, const tf_hdu_info *in, const int64_t *start,
                        const int64_t *count, const int64_t *step) {
    tiling t;
    reader r;
    int64_t nelem;
    FORWARD_IF_ERROR(prepare_reader(f, in, start, count, step, &t, &r, &nelem));
    if (nelem == 0) return TF_OK;
    if (r.gzip_cols[0] <= 0) return TF_OK;
    int64_t bad[TF_MAX_DIMS];
    int st = scan_gzip(&r, f->fp, 0, count[0], bad);
    if (st == -1) {
        char where[256];
        describe_tile(&t, bad, where, sizeof where);
        return tf_fail(f, TF_ECORRUPT, 0, "%s: its GZIP stream is corrupt", where);
    }
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

    float nan32 = NAN;
    double nan64 = NAN;
    r.hdu = in->index;
    r.raw = raw;
    r.type = tf_cfitsio_type(out_type);
    r.row_elems = nelem / count[0];
    r.out_size = tf_dtype_size(out_type);
    r.out = out;
    /* NaN for null pixels (BLANK, ZBLANK, NaN in the stored floats) where
     * the output is a float, as the cfitsio path does. */
    if (!raw && out_type == TF_FLOAT32 && (in->has_blank || in->raw_dtype == TF_FLOAT32))
        r.nulval = &nan32;
    if (!raw && out_type == TF_FLOAT64 && (in->has_blank || in->raw_dtype == TF_FLOAT64))
        r.nulval = &nan64;
    pthread_mutex_init(&r.lock, NULL);

    int rc = TF_OK, st = 0;
    if (raw) {
        fits_set_bscale(f->fp, 1.0, 0.0, &st);
        GOTO_IF_CFITSIO(st, f, TF_ECORRUPT, "cannot turn scaling off");
    }

    /* Threads: only for plain files and reads worth splitting. */
    int nt = tf_auto_threads(threads);
    if (f->fd < 0 || (size_t)nelem * r.out_size < PARALLEL_MIN_BYTES) nt = 1;
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
    if (r.failed && r.gzip_bad) {
        char where[256];
        describe_tile(&t, r.fail_tile, where, sizeof where);
        rc = tf_fail(f, TF_ECORRUPT, 0, "%s: its GZIP stream is corrupt", where);
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
