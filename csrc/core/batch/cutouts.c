/*
 * cutouts.c - many same-sized 2-d cutouts from the images of a few files,
 * into one float buffer: a batch of catalogue sources in several bands.
 *
 * The cutouts are grouped by file (a stable sort of the item numbers by
 * file), and each group of at most GROUP items is one unit of work: its
 * thread opens the file once, maps it when the group is large enough to
 * pay for the mapping, and reads each cutout's overlap with the image
 * (only that region: only the tiles it touches for a tile-compressed
 * image). The values come as tf_image_read gives them (BZERO/BSCALE
 * applied, BLANK as NaN), converted to float32 or float64 into the item's
 * slot, with `fill` where the cutout leaves the image. Threads take groups
 * from a shared atomic counter, each with its own handles (never shared).
 */
#define _GNU_SOURCE
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/internal.h"

/* Most cutouts one thread takes from one file at a time: small enough that
 * a batch drawn from few files still spreads over the threads. */
#define GROUP 32
/* Map the file for a group of at least this many cutouts. */
#define MAP_FROM 8
#define CUT_MAX_THREADS 8

typedef struct order_item {
    int64_t file, index;
} order_item;

static int by_file(const void *a, const void *b) {
    const order_item *x = a, *y = b;
    if (x->file != y->file) return x->file < y->file ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

typedef struct cut_job {
    const char *const *paths;
    const int *hdus;
    const int64_t *items;   /* [n, 3]: file, y, x */
    const order_item *order;
    const int64_t *group;   /* [ngroups + 1]: start of each group in order */
    int64_t ngroups;
    int64_t ny, nx;
    tf_dtype out_dtype;
    double fill;
    char *out;
    atomic_llong next;
} cut_job;

typedef struct cut_worker {
    cut_job *job;
    tf_batch_fail fail;     /* the lowest item this worker failed on */
    void *scratch;
    size_t scratch_len;
} cut_worker;

/* One value of dtype t at p, as a double. */
static double value_at(tf_dtype t, const char *p) {
    switch (t) {
    case TF_UINT8: return *(const uint8_t *)p;
    case TF_INT8: return *(const int8_t *)p;
    case TF_INT16: return *(const int16_t *)p;
    case TF_UINT16: return *(const uint16_t *)p;
    case TF_INT32: return *(const int32_t *)p;
    case TF_UINT32: return *(const uint32_t *)p;
    case TF_INT64: return (double)*(const int64_t *)p;
    case TF_UINT64: return (double)*(const uint64_t *)p;
    case TF_FLOAT32: return *(const float *)p;
    case TF_FLOAT64: return *(const double *)p;
    default: return NAN;
    }
}

/* n values of dtype t from src into dst (float32 or float64). */
static void convert_row(tf_dtype t, const char *src, tf_dtype out, char *dst, int64_t n) {
    size_t es = tf_dtype_size(t);
    if (out == TF_FLOAT32) {
        float *d = (float *)dst;
        if (t == TF_FLOAT32) { memcpy(d, src, (size_t)n * sizeof *d); return; }
        for (int64_t i = 0; i < n; i++) d[i] = (float)value_at(t, src + (size_t)i * es);
    } else {
        double *d = (double *)dst;
        if (t == TF_FLOAT64) { memcpy(d, src, (size_t)n * sizeof *d); return; }
        for (int64_t i = 0; i < n; i++) d[i] = value_at(t, src + (size_t)i * es);
    }
}

static void fill_values(tf_dtype out, char *dst, int64_t n, double v) {
    if (out == TF_FLOAT32) {
        float *d = (float *)dst;
        for (int64_t i = 0; i < n; i++) d[i] = (float)v;
    } else {
        double *d = (double *)dst;
        for (int64_t i = 0; i < n; i++) d[i] = v;
    }
}

/* One cutout from the open image (ny0 x nx0 pixels, dtype t) into slot. */
static int read_item(tf_file *f, int hdu, tf_dtype t, int64_t h, int64_t w, cut_worker *wk,
                     int64_t y, int64_t x, char *slot) {
    cut_job *j = wk->job;
    size_t os = tf_dtype_size(j->out_dtype), es = tf_dtype_size(t);
    int64_t ys = y < 0 ? 0 : y, xs = x < 0 ? 0 : x;
    int64_t ye = y + j->ny > h ? h : y + j->ny, xe = x + j->nx > w ? w : x + j->nx;
    if (ye <= ys || xe <= xs) {
        fill_values(j->out_dtype, slot, j->ny * j->nx, j->fill);
        return TF_OK;
    }
    int64_t yn = ye - ys, xn = xe - xs;
    tf_image_request req;
    memset(&req, 0, sizeof req);
    req.ndim = 2;
    req.start[0] = ys;
    req.start[1] = xs;
    req.count[0] = yn;
    req.count[1] = xn;
    req.threads = 1;
    size_t bytes = (size_t)yn * (size_t)xn * es;
    if (yn == j->ny && xn == j->nx && t == j->out_dtype)
        return tf_image_read(f, hdu, &req, slot, bytes);
    if (bytes > wk->scratch_len) {
        void *p = realloc(wk->scratch, bytes);
        RETURN_ERROR_IF(!p, f, TF_ENOMEM, "no memory for a cutout of %lld x %lld",
                        (long long)yn, (long long)xn);
        wk->scratch = p;
        wk->scratch_len = bytes;
    }
    int rc = tf_image_read(f, hdu, &req, wk->scratch, bytes);
    if (rc != TF_OK) return rc;
    if (yn != j->ny || xn != j->nx) fill_values(j->out_dtype, slot, j->ny * j->nx, j->fill);
    for (int64_t r = 0; r < yn; r++)
        convert_row(t, (const char *)wk->scratch + (size_t)(r * xn) * es, j->out_dtype,
                    slot + (size_t)(((ys - y + r) * j->nx) + (xs - x)) * os, xn);
    return TF_OK;
}

static void fail(cut_worker *wk, int64_t item, int rc, const char *msg) {
    tf_batch_fail_note(&wk->fail, item, rc, msg ? strdup(msg) : NULL);
}

/* The items of one group, all of one file. */
static void read_group(cut_worker *wk, int64_t g) {
    cut_job *j = wk->job;
    int64_t a = j->group[g], b = j->group[g + 1];
    int64_t file = j->order[a].file;
    int hdu = j->hdus[file];
    size_t slot_bytes = (size_t)(j->ny * j->nx) * tf_dtype_size(j->out_dtype);
    int stale_once = 0;
redo:;
    tf_file *f = tf_create();
    if (!f) {
        fail(wk, j->order[a].index, TF_ENOMEM, "out of memory");
        return;
    }
    tf_hdu_info info;
    int rc = tf_open(f, j->paths[file]);
    if (rc == TF_OK && b - a >= MAP_FROM) rc = tf_map_file(f);
    if (rc == TF_OK) rc = tf_hdu_info_get(f, hdu, &info);
    if (rc == TF_OK && (info.kind != TF_HDU_IMAGE || info.ndim != 2))
        rc = tf_fail(f, TF_EINVAL, 0, "HDU %d: cutouts need a 2-d image, not %d axes", hdu,
                     info.kind == TF_HDU_IMAGE ? info.ndim : 0);
    if (rc == TF_OK && (info.dtype == TF_BOOL || info.dtype == TF_COMPLEX64 ||
                        info.dtype == TF_COMPLEX128))
        rc = tf_fail(f, TF_EUNSUPPORTED, 0, "HDU %d: cutouts are float; the image is %s", hdu,
                     tf_dtype_name(info.dtype));
    int64_t failed = j->order[a].index;
    for (int64_t k = a; k < b && rc == TF_OK; k++) {
        int64_t i = j->order[k].index;
        const int64_t *it = j->items + 3 * i;
        failed = i;
        rc = read_item(f, hdu, info.dtype, info.shape[0], info.shape[1], wk, it[1], it[2],
                       j->out + (size_t)i * slot_bytes);
    }
    if (rc == TF_OK) rc = tf_remote_confirm(f);
    if (rc != TF_OK && tf_remote_stale(f) && !stale_once) {
        /* A URL opened from the metadata cache had changed: the group
         * again, on a fresh open. */
        stale_once = 1;
        tf_close(f);
        goto redo;
    }
    if (rc != TF_OK) fail(wk, failed, rc, tf_errmsg(f));
    tf_close(f);
}

static void *cut_work(void *arg) {
    cut_worker *wk = arg;
    for (;;) {
        int64_t g = atomic_fetch_add(&wk->job->next, 1);
        if (g >= wk->job->ngroups) break;
        read_group(wk, g);
    }
    return NULL;
}

int tf_cutouts_read(const char *const *paths, const int *hdus, int64_t npaths,
                    const int64_t *items, int64_t n, int64_t ny, int64_t nx, tf_dtype out_dtype,
                    double fill, void *out, size_t out_bytes, int threads, char *errmsg,
                    size_t errlen) {
    tf_set_msg(errmsg, errlen, "");
    if ((npaths > 0 && (!paths || !hdus)) || npaths < 0 || n < 0 || (n > 0 && !items) ||
        ny < 1 || nx < 1 || (out_dtype != TF_FLOAT32 && out_dtype != TF_FLOAT64)) {
        tf_set_msg(errmsg, errlen, "cutouts need files, items [n, 3], a positive shape and a "
                                "float32 or float64 output");
        return TF_EINVAL;
    }
    int64_t slot = (int64_t)tf_dtype_size(out_dtype), total = 0;
    if (!tf_mul_ok(slot, ny, &slot) || !tf_mul_ok(slot, nx, &slot) || !tf_mul_ok(slot, n, &total) ||
        (uint64_t)total != (uint64_t)out_bytes || (total && !out)) {
        if (errmsg && errlen)
            snprintf(errmsg, errlen, "output buffer has %zu bytes, %lld cutouts of %lld x %lld "
                     "need %lld", out_bytes, (long long)n, (long long)ny, (long long)nx,
                     (long long)total);
        return TF_EBUFSIZE;
    }
    for (int64_t i = 0; i < n; i++)
        if (items[3 * i] < -1 || items[3 * i] >= npaths) {
            if (errmsg && errlen)
                snprintf(errmsg, errlen, "cutout %lld names file %lld; there are %lld files",
                         (long long)i, (long long)items[3 * i], (long long)npaths);
            return TF_EINVAL;
        }
    if (n == 0) return TF_OK;

    order_item *order = malloc((size_t)n * sizeof *order);
    int64_t *group = malloc(((size_t)n + 1) * sizeof *group);
    if (!order || !group) {
        free(order);
        free(group);
        tf_set_msg(errmsg, errlen, "out of memory");
        return TF_ENOMEM;
    }
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        if (items[3 * i] < 0) fill_values(out_dtype, (char *)out + (size_t)(i * slot), slot /
                                          (int64_t)tf_dtype_size(out_dtype), fill);
        else order[m++] = (order_item){items[3 * i], i};
    }
    qsort(order, (size_t)m, sizeof *order, by_file);
    int64_t ngroups = 0;
    for (int64_t k = 0; k < m; k++)
        if (k == 0 || order[k].file != order[k - 1].file || k - group[ngroups - 1] >= GROUP)
            group[ngroups++] = k;
    group[ngroups] = m;

    cut_job job = {.paths = paths, .hdus = hdus, .items = items, .order = order, .group = group,
                   .ngroups = ngroups, .ny = ny, .nx = nx, .out_dtype = out_dtype, .fill = fill,
                   .out = out};
    atomic_init(&job.next, 0);
    int nt = tf_auto_threads(threads);
    if (nt > CUT_MAX_THREADS) nt = CUT_MAX_THREADS;
    nt = tf_batch_threads(paths, npaths, nt, ngroups);
    cut_worker *workers = calloc((size_t)nt, sizeof *workers);
    if (!workers) {
        free(order);
        free(group);
        tf_set_msg(errmsg, errlen, "out of memory");
        return TF_ENOMEM;
    }
    for (int t = 0; t < nt; t++) {
        workers[t].job = &job;
        workers[t].fail.index = -1;
    }
    if (ngroups > 0) tf_run_jobs(cut_work, workers, sizeof *workers, nt);

    int rc = tf_batch_fail_pick(&workers[0].fail, sizeof *workers, nt, errmsg, errlen);
    for (int t = 0; t < nt; t++) free(workers[t].scratch);
    free(workers);
    free(order);
    free(group);
    return rc;
}
