/*
 * batch.c - the same HDU (or region) of many files read into one buffer.
 *
 * Small files are dominated by opening and header parsing, not by the
 * read, so the files are spread over a few threads. Each thread takes the
 * next file from a shared atomic counter and reads it with its own
 * tf_file handle (handles are never shared between threads), straight into
 * the file's slot of the caller's buffer.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/internal.h"

#define BATCH_MAX_THREADS 8

/* "int16 [64, 64]" into buf. */
static void describe(char *buf, size_t len, tf_dtype dtype, int ndim, const int64_t *shape) {
    int n = snprintf(buf, len, "%s [", tf_dtype_name(dtype));
    for (int d = 0; d < ndim && n > 0 && (size_t)n < len; d++)
        n += snprintf(buf + n, len - (size_t)n, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (n > 0 && (size_t)n < len) snprintf(buf + n, len - (size_t)n, "]");
}

/* Open one file and read it into dst (item bytes), checking it gives the
 * batch's dtype and shape. On failure *msg is the file's message (whole,
 * however long its path; free() it; NULL when out of memory). */
static int read_one(const char *path, int hdu, const tf_image_request *req, tf_dtype dtype,
                    int ndim, const int64_t *shape, char *dst, size_t item, char **msg) {
    *msg = NULL;
    int stale_once = 0;
redo:;
    tf_file *f = tf_create();
    if (!f) return TF_ENOMEM;
    tf_dtype got = TF_DTYPE_AUTO;
    int got_ndim = 0;
    int64_t got_shape[TF_MAX_DIMS];
    int rc = tf_open(f, path);
    if (rc == TF_OK) rc = tf_image_output(f, hdu, req, &got, &got_ndim, got_shape);
    if (rc == TF_OK && (got != dtype || got_ndim != ndim ||
                        memcmp(got_shape, shape, (size_t)ndim * sizeof *shape) != 0)) {
        char want[160], have[160];
        describe(want, sizeof want, dtype, ndim, shape);
        describe(have, sizeof have, got, got_ndim, got_shape);
        rc = tf_fail(f, TF_EINVAL, 0, "the image is %s but the batch is %s", have, want);
    }
    if (rc == TF_OK) rc = tf_image_read(f, hdu, req, dst, item);
    if (rc == TF_OK) rc = tf_remote_confirm(f);
    if (rc != TF_OK && tf_remote_stale(f) && !stale_once) {
        /* A URL opened from the metadata cache had changed: once more,
         * on a fresh open. */
        stale_once = 1;
        tf_close(f);
        goto redo;
    }
    if (rc != TF_OK) *msg = strdup(tf_errmsg(f));
    tf_close(f);
    return rc;
}

typedef struct batch_job {
    const char *const *paths;
    int64_t n;
    int hdu;
    tf_image_request req;
    tf_dtype dtype;
    int ndim;
    const int64_t *shape;
    char *out;
    size_t item;
    uint8_t *ok;            /* NULL: stop at the first error */
    atomic_llong next;      /* the next file to take */
    atomic_int stop;        /* set on the first error when ok is NULL */
} batch_job;

typedef struct batch_worker {
    batch_job *job;
    tf_batch_fail fail;     /* the lowest file this worker failed on */
} batch_worker;

static void *batch_work(void *arg) {
    batch_worker *w = arg;
    batch_job *j = w->job;
    for (;;) {
        if (!j->ok && atomic_load(&j->stop)) break;
        int64_t i = atomic_fetch_add(&j->next, 1);
        if (i >= j->n) break;
        /* An empty region (a zero-length axis) still checks every file. */
        char *dst = j->item ? j->out + (size_t)i * j->item : j->out;
        char *msg = NULL;
        int rc = read_one(j->paths[i], j->hdu, &j->req, j->dtype, j->ndim, j->shape, dst, j->item,
                          &msg);
        if (j->ok) j->ok[i] = rc == TF_OK;
        if (rc == TF_OK) continue;
        if (j->ok && j->item) memset(dst, 0, j->item);
        else atomic_store(&j->stop, 1);
        tf_batch_fail_note(&w->fail, i, rc, msg);
    }
    return NULL;
}

static int auto_threads(int threads, int64_t n) {
    threads = tf_auto_threads(threads);
    if (threads > BATCH_MAX_THREADS) threads = BATCH_MAX_THREADS;
    return n < threads ? (int)n : threads;
}

int tf_batch_output(const char *const *paths, int64_t n, int hdu, const tf_image_request *req,
                    int skip_errors, tf_dtype *dtype, int *ndim, int64_t *shape,
                    char *errmsg, size_t errlen) {
    tf_set_msg(errmsg, errlen, "");
    if (!paths || n < 1) {
        tf_set_msg(errmsg, errlen, "a batch needs at least one file");
        return TF_EINVAL;
    }
    int first_rc = TF_OK, stale_once = 0;
    for (int64_t i = 0; i < n; i++) {
        tf_file *f = tf_create();
        if (!f) {
            tf_set_msg(errmsg, errlen, "out of memory");
            return TF_ENOMEM;
        }
        int rc = tf_open(f, paths[i]);
        if (rc == TF_OK) rc = tf_image_output(f, hdu, req, dtype, ndim, shape);
        /* The plan must be the object's current version, not a cached one. */
        if (rc == TF_OK) rc = tf_remote_confirm(f);
        if (rc != TF_OK && tf_remote_stale(f) && !stale_once) {
            stale_once = 1;
            tf_close(f);
            i--;
            continue;
        }
        stale_once = 0;
        if (rc != TF_OK && first_rc == TF_OK) {
            first_rc = rc;
            tf_set_msg(errmsg, errlen, tf_errmsg(f));
        }
        tf_close(f);
        if (rc == TF_OK) return TF_OK;
        if (!skip_errors) break;
    }
    return first_rc;
}

int tf_batch_read(const char *const *paths, int64_t n, int hdu, const tf_image_request *req,
                  tf_dtype dtype, int ndim, const int64_t *shape, void *out, size_t out_bytes,
                  int threads, uint8_t *ok, char *errmsg, size_t errlen) {
    tf_set_msg(errmsg, errlen, "");
    if (!paths || n < 1 || ndim < 1 || ndim > TF_MAX_DIMS || !shape) {
        tf_set_msg(errmsg, errlen, "a batch needs at least one file, an image shape and a buffer");
        return TF_EINVAL;
    }
    int64_t item = (int64_t)tf_dtype_size(dtype), total;
    for (int d = 0; d < ndim; d++)
        if (shape[d] < 0 || !tf_mul_ok(item, shape[d], &item)) {
            tf_set_msg(errmsg, errlen, "the batch's image size overflows");
            return TF_EINVAL;
        }
    if (!tf_mul_ok(item, n, &total) || (uint64_t)total != (uint64_t)out_bytes ||
        (total && !out)) {
        if (errmsg && errlen)
            snprintf(errmsg, errlen, "output buffer has %zu bytes, %lld files need %lld each",
                     out_bytes, (long long)n, (long long)item);
        return TF_EBUFSIZE;
    }

    batch_job job = {.paths = paths, .n = n, .hdu = hdu, .dtype = dtype, .ndim = ndim,
                     .shape = shape, .out = out, .item = (size_t)item, .ok = ok};
    if (req) job.req = *req;
    job.req.threads = 1; /* the files are the parallelism */
    atomic_init(&job.next, 0);
    atomic_init(&job.stop, 0);

    int nt = tf_batch_threads(paths, n, auto_threads(threads, n), n);
    batch_worker *workers = calloc((size_t)nt, sizeof *workers);
    if (!workers) {
        tf_set_msg(errmsg, errlen, "out of memory");
        return TF_ENOMEM;
    }
    for (int t = 0; t < nt; t++) {
        workers[t].job = &job;
        workers[t].fail.index = -1;
    }
    /* The calling thread is worker 0; workers claim files from a shared
     * counter, so one whose thread cannot start runs on the caller. */
    tf_run_jobs(batch_work, workers, sizeof *workers, nt);

    int rc = tf_batch_fail_pick(&workers[0].fail, sizeof *workers, nt, errmsg, errlen);
    free(workers);
    return ok ? TF_OK : rc;
}
