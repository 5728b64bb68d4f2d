/*
 * image.c - reading images and image regions.
 *
 * Two paths give identical results:
 *  - the fast path, for uncompressed images in plain (not gzip) files:
 *    pread straight into the caller's buffer in cache-sized chunks, then
 *    byte swap (and scale) each chunk while it is still in cache; large
 *    reads are split across threads;
 *  - the cfitsio path (fits_read_pixll / fits_read_subset), for everything
 *    else and for testing the fast path against.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/convert.h"
#include "../common/internal.h"
#include "../compress/compress.h"

/* Bytes converted per step: small enough to stay in L2 between the read
 * and the swap. */
#define CHUNK_BYTES (256 * 1024)
/* Below this many output bytes a read stays on one thread. */
#define THREAD_MIN_BYTES (4 * 1024 * 1024)
/* Connections at least for a large remote read (read_fast). */
#define REMOTE_THREADS 4
/* Outputs from this size get transparent huge pages asked for (glibc
 * serves them with a fresh mapping each call). */
#define HUGE_MIN_BYTES (32 * 1024 * 1024)
/* Reads up to this many output bytes copy from the mapping of a handle
 * kept open (tf_map_file); larger ones pread on several threads. */
#define MAP_MAX_BYTES (4 * 1024 * 1024)
/* A tile-compressed image may claim at most this many output bytes per
 * byte of file: far above real compression ratios, far below a bomb. */
#define MAX_COMPRESSION_RATIO 4096

typedef struct plan {
    tf_hdu_info info;
    tf_dtype out;
    int ndim;
    int64_t start[TF_MAX_DIMS], count[TF_MAX_DIMS], step[TF_MAX_DIMS];
    int64_t nelem;          /* output elements */
    int64_t data_offset;    /* plain files: byte offset of the data */
    int fast;               /* the fast path applies */
} plan;

/* Besides the natural dtype, what a torch without uint16/32/64 asks for:
 * int32, int64 (both exact) and float64 (as BZERO 2^63 read before
 * torch had uint64). */
static int dtype_allowed(tf_dtype natural, tf_dtype want) {
    return want == natural || (natural == TF_UINT16 && want == TF_INT32) ||
           (natural == TF_UINT32 && want == TF_INT64) ||
           (natural == TF_UINT64 && want == TF_FLOAT64);
}

static int make_plan(tf_file *f, int hdu, const tf_image_request *req, plan *p) {
    static const tf_image_request defaults = {0};
    if (!req) req = &defaults;
    memset(p, 0, sizeof *p);
    /* HDU 0 of a fast-opened file needs no cfitsio; the cfitsio path always
     * takes cfitsio's parse of the header, so the tests compare both. */
    int fast_hdu = hdu == 0 && f->fast_hdu0 && req->path == TF_PATH_AUTO;
    if (fast_hdu) {
        f->err_hdu = 0;
        p->info = f->fast_info;
    } else {
        FORWARD_IF_ERROR(tf_need_fits(f));
        FORWARD_IF_ERROR(tf_hdu_info_cfitsio(f, hdu, &p->info));
    }
    const tf_hdu_info *in = &p->info;
    if (in->kind != TF_HDU_IMAGE)
        return tf_fail(f, TF_EHDUTYPE, 0, "HDU is %s, not an image",
                       in->kind == TF_HDU_BINARY_TABLE ? "a binary table" : "an ASCII table");
    if (in->ndim == 0)
        return tf_fail(f, TF_EHDUTYPE, 0, "HDU has no image data (NAXIS = 0)");

    tf_dtype natural = req->raw ? in->raw_dtype : in->dtype;
    if (req->dtype == TF_DTYPE_AUTO) {
        p->out = natural;
    } else {
        if (!dtype_allowed(natural, req->dtype))
            return tf_fail(f, TF_EINVAL, 0, "cannot read %s data as %s", tf_dtype_name(natural),
                           tf_dtype_name(req->dtype));
        p->out = req->dtype;
    }

    p->ndim = in->ndim;
    if (req->ndim != 0 && req->ndim != in->ndim)
        return tf_fail(f, TF_EINVAL, 0, "the region has %d axes but the image has %d", req->ndim,
                       in->ndim);
    p->nelem = 1;
    for (int d = 0; d < p->ndim; d++) {
        int64_t n = in->shape[d];
        if (req->ndim == 0) {
            p->start[d] = 0;
            p->count[d] = n;
            p->step[d] = 1;
        } else {
            int64_t s = req->start[d], c = req->count[d], k = req->step[d] ? req->step[d] : 1;
            if (s < 0 || c < 0 || k < 1)
                return tf_fail(f, TF_EINVAL, 0,
                               "axis %d: start %lld, count %lld, step %lld: start and count "
                               "must be >= 0 and step >= 1",
                               d, (long long)s, (long long)c, (long long)k);
            int64_t last;
            if (c > 0 && (!tf_mul_ok(c - 1, k, &last) || __builtin_add_overflow(last, s, &last) ||
                          last >= n))
                return tf_fail(f, TF_ERANGE, 0,
                               "axis %d: region start %lld, count %lld, step %lld is outside "
                               "the image's %lld pixels",
                               d, (long long)s, (long long)c, (long long)k, (long long)n);
            if (c == 0 && s > n)
                return tf_fail(f, TF_ERANGE, 0, "axis %d: start %lld is past the image's %lld pixels",
                               d, (long long)s, (long long)n);
            p->start[d] = s;
            p->count[d] = c;
            p->step[d] = k;
        }
        if (!tf_mul_ok(p->nelem, p->count[d], &p->nelem))
            return tf_fail(f, TF_ELIMIT, 0, "image size overflows");
    }

    /* Does the file hold the data it claims? Checked before any
     * allocation the claim would make. */
    int64_t npix = 1, stored_bytes, out_bytes;
    for (int d = 0; d < p->ndim; d++)
        if (!tf_mul_ok(npix, in->shape[d], &npix))
            return tf_fail(f, TF_ECORRUPT, 0, "NAXISn product overflows");
    if (!tf_mul_ok(npix, (int64_t)tf_dtype_size(in->raw_dtype), &stored_bytes) ||
        !tf_mul_ok(p->nelem, (int64_t)tf_dtype_size(p->out), &out_bytes))
        return tf_fail(f, TF_ECORRUPT, 0, "image byte size overflows");

    int st = 0;
    if (in->compressed) {
        /* cfitsio (4.2 here, and 4.6 in fitsio 1.4) cannot decode 64-bit
         * integer tiles: status 410 for integer outputs, and read as
         * float64 it returned the stored bytes taken as doubles, silently.
         * astropy 8 writes them (GZIP_1, GZIP_2); cfitsio does not. */
        if (in->bitpix == LONGLONG_IMG)
            return tf_fail(f, TF_EUNSUPPORTED, 0,
                           "tile-compressed images of 64-bit integers (ZBITPIX = 64) are not "
                           "supported: cfitsio cannot decode their tiles");
        int64_t bound;
        if (!tf_mul_ok(f->fp->Fptr->logfilesize + (1 << 20), MAX_COMPRESSION_RATIO, &bound) ||
            out_bytes > bound)
            return tf_fail(f, TF_ELIMIT, 0,
                           "compressed image claims %lld bytes, more than %d times the file size",
                           (long long)out_bytes, MAX_COMPRESSION_RATIO);
        return TF_OK;
    }
    LONGLONG head = 0, data = f->fast_data_offset, end = 0;
    if (!fast_hdu) {
        fits_get_hduaddrll(f->fp, &head, &data, &end, &st);
        RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "cannot locate the data");
    }
    /* For gzip files cfitsio holds the unpacked file in memory. */
    int64_t size = tf_direct(f) ? f->file_size : (int64_t)f->fp->Fptr->logfilesize;
    int64_t need;
    if (__builtin_add_overflow((int64_t)data, stored_bytes, &need) || need > size)
        return tf_fail(f, TF_ECORRUPT, 0,
                       "file is truncated: the image needs %lld bytes at offset %lld but the "
                       "file has %lld",
                       (long long)stored_bytes, (long long)data, (long long)size);
    p->data_offset = data;
    p->fast = tf_direct(f) && req->path == TF_PATH_AUTO;
    return TF_OK;
}

int tf_image_output(tf_file *f, int hdu, const tf_image_request *req, tf_dtype *dtype, int *ndim,
                    int64_t *shape) {
    FORWARD_IF_ERROR(tf_check_handle_lazy(f));
    plan p;
    FORWARD_IF_ERROR(make_plan(f, hdu, req, &p));
    if (dtype) *dtype = p.out;
    if (ndim) *ndim = p.ndim;
    if (shape)
        for (int d = 0; d < p.ndim; d++) shape[d] = p.count[d];
    return TF_OK;
}

/* ---- the fast path ---- */

/* Bytes read per step: CHUNK_BYTES, or more for a source that prefers
 * larger reads (a remote object: one request each). */
static int64_t chunk_bytes(const tf_source *s) {
    return s->chunk > CHUNK_BYTES ? s->chunk : CHUNK_BYTES;
}

/* Elements converted per step. */
static int64_t chunk_elems(const tf_conv *c, const tf_source *s) {
    return chunk_bytes(s) / (int64_t)(c->in_size > c->out_size ? c->in_size : c->out_size);
}

/* Read n (at most chunk_elems) stored elements at file_off and convert them
 * into dst: in place when the conversion allows, else through `bounce`. */
static int read_chunk(const tf_source *src, const tf_conv *c, int64_t file_off, int64_t n,
                      char *dst, char *bounce, int *err) {
    size_t in_bytes = (size_t)n * c->in_size;
    char *buf = tf_conv_inplace(c) ? dst : bounce;
    int rc = tf_source_read(src, buf, in_bytes, file_off, err);
    if (rc == TF_OK) tf_convert(c, buf, dst, (size_t)n);
    return rc;
}

/* The message of a failed chunk read, recorded on the caller's thread. */
static int chunk_failure(tf_file *f, int rc, int err, int64_t off) {
    if (rc == TF_EIO)
        return tf_fail(f, TF_EIO, 0, "read at offset %lld failed: %s", (long long)off,
                       strerror(err));
    return tf_fail(f, TF_ECORRUPT, 0, "file is truncated: data ends before byte %lld",
                   (long long)off);
}

/* n contiguous stored elements at file_off into dst, on this thread. */
static int read_run(tf_file *f, const tf_conv *c, int64_t file_off, int64_t n, char *dst,
                    char *bounce) {
    /* Bytes as stored (BITPIX 8 read raw): nothing to do while a chunk is
     * in cache, so one read of the whole run saves the syscalls. */
    const int64_t per = c->kind == TF_CONV_SWAP && c->in_size == 1 ? n : chunk_elems(c, &f->src);
    int err = 0;
    while (n > 0) {
        int64_t k = n < per ? n : per;
        int rc = read_chunk(&f->src, c, file_off, k, dst, bounce, &err);
        if (rc) return chunk_failure(f, rc, err, file_off);
        file_off += k * (int64_t)c->in_size;
        dst += (size_t)k * c->out_size;
        n -= k;
    }
    return TF_OK;
}

/*
 * A large run, split into chunks that the calling thread and detached
 * helper threads claim one at a time from an atomic counter. The caller
 * never waits for a helper that has not started: on a busy machine it
 * simply does the chunks itself. It waits only for chunks a helper has
 * claimed. A helper that starts late finds no chunk left and touches
 * nothing but the job's reference count, so the job (and nothing of the
 * caller's) outlives the call. Helpers never touch the handle: failures
 * are recorded in the job and reported by the caller.
 */
typedef struct run_job {
    atomic_int refs;
    atomic_llong next;       /* next chunk to claim */
    atomic_int failed;       /* skip the remaining chunks */
    int64_t nchunks, per, n;
    tf_conv conv;
    const tf_source *src;    /* the handle's: read only for a claimed chunk,
                                which the caller waits for */
    int64_t bounce_bytes;    /* a helper's bounce buffer */
    int64_t file_off;
    char *dst;
    pthread_mutex_t lock;
    pthread_cond_t all_done;
    int64_t done;            /* chunks finished or skipped, under lock */
    int rc, err;             /* first failure, under lock */
    int64_t err_off;
} run_job;

static void job_release(run_job *j) {
    if (atomic_fetch_sub(&j->refs, 1) == 1) {
        pthread_mutex_destroy(&j->lock);
        pthread_cond_destroy(&j->all_done);
        free(j);
    }
}

static void job_work(run_job *j, char *bounce) {
    for (;;) {
        int64_t i = atomic_fetch_add(&j->next, 1);
        if (i >= j->nchunks) return;
        int64_t first = i * j->per, k = j->n - first < j->per ? j->n - first : j->per;
        int64_t off = j->file_off + first * (int64_t)j->conv.in_size;
        int rc = TF_OK, err = 0;
        if (!atomic_load(&j->failed))
            rc = read_chunk(j->src, &j->conv, off, k, j->dst + first * (int64_t)j->conv.out_size,
                            bounce, &err);
        pthread_mutex_lock(&j->lock);
        if (rc != TF_OK && j->rc == TF_OK) {
            j->rc = rc;
            j->err = err;
            j->err_off = off;
            atomic_store(&j->failed, 1);
        }
        if (++j->done == j->nchunks) pthread_cond_signal(&j->all_done);
        pthread_mutex_unlock(&j->lock);
    }
}

static void *job_helper(void *arg) {
    run_job *j = arg;
    char *bounce = tf_conv_inplace(&j->conv) ? NULL : malloc((size_t)j->bounce_bytes);
    if (tf_conv_inplace(&j->conv) || bounce) job_work(j, bounce); /* else: leave it to others */
    free(bounce);
    job_release(j);
    return NULL;
}

/* Threads for a large read: TORCHFITS_THREADS from the environment (read
 * on each call, so a process may change it); else the request's; else one
 * per online CPU, asked once (sysconf reads /sys on every call). */
/* One contiguous run, split across threads when large. */
static int read_run_parallel(tf_file *f, const tf_conv *c, int64_t file_off, int64_t n,
                             char *dst, int threads, char *bounce) {
    int64_t out_bytes = n * (int64_t)c->out_size;
    run_job *j = NULL;
    if (threads > 1 && out_bytes >= THREAD_MIN_BYTES && (j = calloc(1, sizeof *j))) {
        if (pthread_mutex_init(&j->lock, NULL) != 0) {
            free(j);
            j = NULL;
        } else if (pthread_cond_init(&j->all_done, NULL) != 0) {
            pthread_mutex_destroy(&j->lock);
            free(j);
            j = NULL;
        }
    }
    if (!j) return read_run(f, c, file_off, n, dst, bounce);

    j->per = chunk_elems(c, &f->src);
    j->nchunks = (n + j->per - 1) / j->per;
    j->n = n;
    j->conv = *c;
    j->src = &f->src;
    j->bounce_bytes = chunk_bytes(&f->src);
    j->file_off = file_off;
    j->dst = dst;
    atomic_init(&j->refs, 1);
    atomic_init(&j->next, 0);
    atomic_init(&j->failed, 0);
    pthread_attr_t attr;
    int have_attr = pthread_attr_init(&attr) == 0 &&
                    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) == 0;
    /* At most one thread per THREAD_MIN_BYTES / 2 of output: starting a
     * thread costs tens of microseconds, and a large machine may have 16
     * cores. */
    int64_t most = out_bytes / (THREAD_MIN_BYTES / 2);
    if (threads > most) threads = (int)most;
    for (int t = 1; have_attr && t < threads && t < j->nchunks; t++) {
        pthread_t tid;
        atomic_fetch_add(&j->refs, 1);
        if (pthread_create(&tid, &attr, job_helper, j) != 0) {
            atomic_fetch_sub(&j->refs, 1);
            break; /* fewer helpers; the caller covers */
        }
    }
    if (have_attr) pthread_attr_destroy(&attr);

    job_work(j, bounce);
    pthread_mutex_lock(&j->lock);
    while (j->done < j->nchunks) pthread_cond_wait(&j->all_done, &j->lock);
    int rc = j->rc, err = j->err;
    int64_t err_off = j->err_off;
    pthread_mutex_unlock(&j->lock);
    job_release(j);
    return rc == TF_OK ? TF_OK : chunk_failure(f, rc, err, err_off);
}

/* One walk over the spans of a region: the rows of axis k, each `inner`
 * elements long when step[k] is 1. */
typedef struct span_walk {
    tf_file *f;
    const plan *p;
    const tf_conv *conv;
    int k;
    int64_t inner;
    const int64_t *stride;
    char *out;
    int threads;
    char *bounce;
    const char *map; /* copy from this mapping of the file instead of pread */
} span_walk;

/* n stored elements at file offset off into dst. From the mapping nothing
 * here may fail: a truncated file faults, and tf_map_guarded catches it. */
static int read_span(const span_walk *w, int64_t off, int64_t n, char *dst, int parallel) {
    if (w->map) {
        tf_convert(w->conv, w->map + off, dst, (size_t)n);
        return TF_OK;
    }
    return parallel ? read_run_parallel(w->f, w->conv, off, n, dst, w->threads, w->bounce)
                    : read_run(w->f, w->conv, off, n, dst, w->bounce);
}

static int walk_spans(void *arg) {
    const span_walk *w = arg;
    const plan *p = w->p;
    const int64_t *stride = w->stride;
    const size_t in_size = w->conv->in_size, out_size = w->conv->out_size;
    int k = w->k;
    int64_t idx[TF_MAX_DIMS] = {0};
    char *dst = w->out;
    for (;;) {
        int64_t elem = 0;
        for (int d = 0; d < k; d++) elem += (p->start[d] + idx[d] * p->step[d]) * stride[d];
        elem += p->start[k] * stride[k];
        int64_t off = p->data_offset + elem * (int64_t)in_size;
        if (p->step[k] == 1) {
            int64_t n = p->count[k] * w->inner;
            FORWARD_IF_ERROR(read_span(w, off, n, dst, 1));
            dst += n * (int64_t)out_size;
        } else {
            /* Strided axis: one read per block of `inner` elements. */
            for (int64_t i = 0; i < p->count[k]; i++) {
                int64_t boff = off + i * p->step[k] * stride[k] * (int64_t)in_size;
                FORWARD_IF_ERROR(read_span(w, boff, w->inner, dst, 0));
                dst += w->inner * (int64_t)out_size;
            }
        }
        /* Next row: odometer over the axes before k. */
        int d = k - 1;
        while (d >= 0 && ++idx[d] == p->count[d]) idx[d--] = 0;
        if (d < 0) return TF_OK;
    }
}

/* A remote file: hand every span of the region to the source first, so
 * that the rows of a cutout come in one round of merged requests rather
 * than one request per row. A single span needs no help (read_run reads
 * it in chunks); a region of more than MAX_PREFETCH spans is left to the
 * reads. */
#define MAX_PREFETCH 65536
static void prefetch_spans(const span_walk *w) {
    const plan *p = w->p;
    const int64_t *stride = w->stride;
    const int64_t in_size = (int64_t)w->conv->in_size;
    int k = w->k;
    int64_t rows = 1;
    for (int d = 0; d < k; d++) rows *= p->count[d];
    int64_t per = p->step[k] == 1 ? 1 : p->count[k], n = rows * per;
    if (n < 2 || n > MAX_PREFETCH) return;
    int64_t *ranges = malloc((size_t)n * 2 * sizeof *ranges);
    if (!ranges) return;
    int64_t idx[TF_MAX_DIMS] = {0}, m = 0;
    for (;;) {
        int64_t elem = p->start[k] * stride[k];
        for (int d = 0; d < k; d++) elem += (p->start[d] + idx[d] * p->step[d]) * stride[d];
        int64_t off = p->data_offset + elem * in_size;
        if (p->step[k] == 1) {
            ranges[2 * m] = off;
            ranges[2 * m++ + 1] = p->count[k] * w->inner * in_size;
        } else {
            for (int64_t i = 0; i < p->count[k]; i++) {
                ranges[2 * m] = off + i * p->step[k] * stride[k] * in_size;
                ranges[2 * m++ + 1] = w->inner * in_size;
            }
        }
        int d = k - 1;
        while (d >= 0 && ++idx[d] == p->count[d]) idx[d--] = 0;
        if (d < 0) break;
    }
    tf_source_prefetch(&w->f->src, ranges, (int)m);
    free(ranges);
}

/* Whether the region lies inside the mapping of a handle kept open. */
static int use_map(const tf_file *f, const plan *p, const tf_conv *c, const int64_t *stride) {
    if (!f->map || p->nelem * (int64_t)c->out_size > MAP_MAX_BYTES) return 0;
    int64_t last = 0;
    for (int d = 0; d < p->ndim; d++)
        last += (p->start[d] + (p->count[d] - 1) * p->step[d]) * stride[d];
    return p->data_offset + (last + 1) * (int64_t)c->in_size <= (int64_t)f->map_len;
}

static int read_fast(tf_file *f, const plan *p, const tf_image_request *req, char *out) {
    const tf_hdu_info *in = &p->info;
    int raw = req && req->raw;
    tf_conv conv;
    double scale = raw ? 1.0 : in->bscale, zero = raw ? 0.0 : in->bzero;
    if (!tf_conv_init(&conv, in->raw_dtype, p->out, scale, zero, in->has_blank && !raw,
                      in->blank))
        return tf_fail(f, TF_EUNSUPPORTED, 0, "no conversion from %s to %s",
                       tf_dtype_name(in->raw_dtype), tf_dtype_name(p->out));
    if (p->nelem == 0) return TF_OK;

    /* Axes k+1.. are whole (start 0, full count, step 1): each output row
     * of axis k is then one contiguous span of the file when step[k] is 1. */
    int nd = p->ndim, k = nd - 1;
    int64_t inner = 1;
    while (k > 0 && p->start[k] == 0 && p->count[k] == in->shape[k] && p->step[k] == 1) {
        inner *= in->shape[k];
        k--;
    }
    /* File strides, in elements, of each axis. */
    int64_t stride[TF_MAX_DIMS];
    stride[nd - 1] = 1;
    for (int d = nd - 2; d >= 0; d--) stride[d] = stride[d + 1] * in->shape[d + 1];

    span_walk w = {f, p, &conv, k, inner, stride, out, 0, NULL, NULL};
    if (use_map(f, p, &conv, stride)) {
        int faulted = 0;
        w.map = f->map;
        int rc = tf_map_guarded(walk_spans, &w, &faulted);
        if (faulted)
            return tf_fail(f, TF_ECORRUPT, 0,
                           "the file was truncated while it was read (it had %lld bytes)",
                           (long long)f->map_len);
        if (rc != -1) return rc;
        w.map = NULL; /* no guard: read with pread */
    }

    if (f->remote) prefetch_spans(&w);
    int threads = tf_auto_threads(req ? req->threads : 0);
    /* A remote read waits on the network, not on a core: chunks are
     * requested on at least REMOTE_THREADS connections at once. */
    if (f->remote && threads < REMOTE_THREADS) threads = REMOTE_THREADS;
    /* An automatic count splits a read only over cores idle right now: on
     * a busy machine a helper that is not scheduled makes the caller wait
     * for the chunk it claimed (under load a 4 MB read split in two took
     * three times as long as on one thread). */
    if (threads > 1 && !f->remote && !tf_threads_chosen(req ? req->threads : 0) &&
        p->nelem * (int64_t)conv.out_size >= THREAD_MIN_BYTES) {
        int idle = tf_idle_cpus();
        if (idle >= 0 && threads > 1 + idle) threads = 1 + idle;
    }
    w.threads = threads;
    int rc = TF_OK;
    if (!tf_conv_inplace(&conv) || p->step[k] != 1)
        GOTO_ERROR_IF(!(w.bounce = malloc((size_t)chunk_bytes(&f->src))), f, TF_ENOMEM,
                      "out of memory");
    tf_advise_huge(out, (size_t)p->nelem * conv.out_size, HUGE_MIN_BYTES);
    rc = walk_spans(&w);
cleanup:
    free(w.bounce);
    return rc;
}

/* ---- the cfitsio path ---- */

static int read_cfitsio(tf_file *f, const plan *p, const tf_image_request *req, void *out) {
    const tf_hdu_info *in = &p->info;
    int raw = req && req->raw;
    int type = tf_cfitsio_type(p->out), st = 0, anynul = 0, rc = TF_OK;
    float nan32 = NAN;
    double nan64 = NAN;
    void *nulval = NULL;
    if (!raw && p->out == TF_FLOAT32 && (in->has_blank || in->raw_dtype == TF_FLOAT32))
        nulval = &nan32;
    if (!raw && p->out == TF_FLOAT64 && (in->has_blank || in->raw_dtype == TF_FLOAT64))
        nulval = &nan64;
    if (p->nelem == 0) return TF_OK;
    /* cfitsio's GZIP decoder grows its buffer without bound on a corrupt
     * tile: check the tiles first, as the parallel reader does. */
    if (in->compressed)
        FORWARD_IF_ERROR(tf_compressed_check(f, in, p->start, p->count, p->step));
    if (raw) {
        fits_set_bscale(f->fp, 1.0, 0.0, &st);
        RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "cannot turn scaling off");
    } else {
        /* With duplicated BSCALE/BZERO/BLANK cards cfitsio's reader keeps
         * the last while its key lookup (and the fast path) takes the
         * first: give it the values the fast path uses (fuzzer). */
        fits_set_bscale(f->fp, in->bscale, in->bzero, &st);
        if (in->has_blank && in->raw_dtype != TF_FLOAT32 && in->raw_dtype != TF_FLOAT64)
            fits_set_imgnull(f->fp, (LONGLONG)in->blank, &st);
        RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "cannot set scaling");
    }

    int nd = p->ndim, whole = 1;
    long first[TF_MAX_DIMS], last[TF_MAX_DIMS], inc[TF_MAX_DIMS];
    for (int d = 0; d < nd; d++) {
        int a = nd - 1 - d; /* cfitsio counts axes fastest first, from 1 */
        first[a] = (long)(p->start[d] + 1);
        last[a] = (long)(p->start[d] + (p->count[d] - 1) * p->step[d] + 1);
        inc[a] = (long)p->step[d];
        whole &= p->start[d] == 0 && p->count[d] == in->shape[d] && p->step[d] == 1;
    }
    if (whole) {
        LONGLONG firstpix[TF_MAX_DIMS];
        for (int d = 0; d < nd; d++) firstpix[d] = 1;
        fits_read_pixll(f->fp, type, firstpix, (LONGLONG)p->nelem, nulval, out, &anynul, &st);
    } else {
        fits_read_subset(f->fp, type, first, last, inc, nulval, out, &anynul, &st);
    }
    GOTO_IF_CFITSIO(st, f, TF_ECORRUPT, "cannot read the image data");
cleanup:
    if (raw) {
        int st2 = 0;
        fits_set_bscale(f->fp, in->bscale, in->bzero, &st2);
    }
    return rc;
}

int tf_image_read(tf_file *f, int hdu, const tf_image_request *req, void *out,
                  size_t out_bytes) {
    FORWARD_IF_ERROR(tf_check_handle_lazy(f));
    plan p;
    FORWARD_IF_ERROR(make_plan(f, hdu, req, &p));
    size_t want = (size_t)p.nelem * tf_dtype_size(p.out);
    if (out_bytes != want || (!out && want))
        return tf_fail(f, TF_EBUFSIZE, 0, "output buffer has %zu bytes, the read needs %zu",
                       out_bytes, want);
    /* Tile-compressed images: the parallel tile reader (csrc/core/compress). */
    if (p.info.compressed && (!req || req->path == TF_PATH_AUTO))
        return tf_compressed_read(f, &p.info, p.out, req && req->raw, p.start, p.count, p.step,
                                  req ? req->threads : 0, out);
    return p.fast ? read_fast(f, &p, req, out) : read_cfitsio(f, &p, req, out);
}
