/*
 * internal.h - private to the core: the handle, error macros, helpers.
 */
#ifndef TORCHFITS_INTERNAL_H
#define TORCHFITS_INTERNAL_H

#include <fitsio.h>
#include <stdarg.h>
#include <stdint.h>

#include "../torchfits_core.h"
#include "../io/io.h"

/* Room for a message when the exact size cannot be allocated (cut). */
#define TF_ERRMSG_LEN 1024

typedef struct tf_card {
    char *key;
    char *value;
    char *comment;
    char type;
} tf_card;

struct tf_file {
    fitsfile *fp;        /* cfitsio handle, NULL until opened */
    char *path;          /* as given to tf_open */
    int fd;              /* our own read-only descriptor for the fast path,
                            -1 when the file is not plain FITS (gzip...) */
    int64_t file_size;   /* bytes on disk (of the plain file) */
    int num_hdus;        /* cached; -1 until counted */
    int checked_hdus;    /* HDUs 0..n-1 passed tf_guard_headers */
    int poisoned;        /* the file proved corrupt */
    int cf_stale;        /* a cfitsio move may have failed half-way: its
                            current HDU is to be read again (tf_move_to) */
    int err_hdu;         /* HDU named in the message; -1 for none */
    char *errmsg;        /* the last message, of any length (the path is
                            kept whole); NULL: none, or errbuf holds it */
    char errbuf[TF_ERRMSG_LEN]; /* the message, cut, when out of memory */
    tf_card *cards;      /* last loaded header */
    int ncards;
    char *card_text;     /* storage for the strings of `cards` */
    void *col_text;      /* tables: each column's TFORM, TUNIT, TDIM, TNULL
                            cards for HDU col_text_hdu, read in one pass
                            (table.c); one block, freed by tf_close */
    int col_text_hdu;

    void *membuf;        /* a small file's bytes, or a compressed file's
                            unpacked bytes (tf_membuf_alloc), which cfitsio
                            reads from memory */
    size_t membuf_size;
    tf_source src;       /* every read of the file's bytes, cfitsio's too
                            (through io/cfdriver.c): membuf when set, else
                            the descriptor or the remote object */
    tf_remote *remote;   /* a URL's object, read by ranges (io/remote.c);
                            NULL for local files and objects read whole */
    int info_valid;      /* info_cache describes HDU info_cache.index: the
                            file is read-only, so it stays true */
    tf_hdu_info info_cache;

    /* The fast open (guard.c, tf_fast_primary): a plain primary header that
     * the core parsed itself, exactly, with no doubt. Image reads of HDU 0
     * then need no cfitsio at all; anything else opens cfitsio on first use
     * (tf_need_fits). */
    int fast_hdu0;
    tf_hdu_info fast_info;
    int64_t fast_data_offset;
    int plain;           /* the file is plain FITS (not gzip...) */

    /* tf_map_file: the whole file mapped read-only, for small reads of a
     * handle kept open (mapped.c); NULL when not mapped. */
    const char *map;
    size_t map_len;
    int map_slot;        /* its entry in mapped.c's cache, -1: its own */

    /* HDUs that cfitsio must never parse (guard.c: NAXIS of 100 to 999),
     * found by tf_guard_headers; cfitsio is told where the next HDU
     * starts, so the HDUs after them stay readable. */
    struct tf_skip *skipped;
    int nskipped;
};

/* Whether f->src reads the file's bytes as stored (a plain local file, a
 * remote object read by ranges, or a plain remote object fetched whole
 * into membuf: small, or from a server that ignored Range), so the fast
 * paths may read them directly; else cfitsio reads an unpacked copy in
 * memory. */
static inline int tf_direct(const tf_file *f) {
    return f->fd >= 0 || f->remote || (f->plain && f->membuf);
}

/* An HDU the core describes from its raw cards only (guard.c). */
typedef struct tf_skip {
    int hdu;             /* 0-based */
    int64_t start;       /* byte offset of its header */
    int64_t data;        /* of its data */
    int64_t end;         /* of the next HDU: the data padded to whole blocks */
    int bitpix;
    char extname[FLEN_VALUE], hduname[FLEN_VALUE];
    int extver;
    char why[160];       /* the cause, for TF_EUNSUPPORTED */
} tf_skip;

/* The skipped HDU `hdu`, or NULL (guard.c). */
const tf_skip *tf_skipped(const tf_file *f, int hdu);

/* errmsg (errlen bytes, may be NULL) set to msg (error.c). */
void tf_set_msg(char *errmsg, size_t errlen, const char *msg);

/* A batch worker's failure (batch.c, cutouts.c): the lowest item it
 * failed on, its status and message. Zero it with index -1. */
typedef struct tf_batch_fail {
    int64_t index;   /* -1: none */
    int rc;
    char *msg;       /* owned; NULL: no memory for it */
} tf_batch_fail;

/* Keep item i's failure if it is the lowest of this worker's yet; msg
 * (malloc'd or NULL) is taken over, and freed when not kept (error.c). */
void tf_batch_fail_note(tf_batch_fail *f, int64_t i, int rc, char *msg);

/* The lowest-item failure of n workers' records, each `stride` bytes after
 * the one before, from `first`: its status (TF_OK: none) and its message
 * into errmsg; every message is freed (error.c). */
int tf_batch_fail_pick(tf_batch_fail *first, size_t stride, int n, char *errmsg, size_t errlen);

/* tf_fail with TF_EUNSUPPORTED for skipped HDU `s` (guard.c). */
int tf_fail_skipped(tf_file *f, const tf_skip *s);

/*
 * Record an error: "<path>: HDU <n>: <cause>" (the HDU part only when
 * err_hdu >= 0), plus cfitsio's status code and its fixed text for it when
 * cfitsio_status is non-zero (never cfitsio's message stack, which all
 * threads share). Returns `status`, and poisons the handle for
 * TF_ECORRUPT. Use through the macros below.
 */
int tf_fail(tf_file *f, int status, int cfitsio_status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* Straight-line error handling, after zstd's RETURN_ERROR_IF. Each function
 * that owns resources has one `cleanup:` label; GOTO_ERROR_IF sets `rc` and
 * jumps there. */
#define RETURN_ERROR_IF(cond, f, code, ...) \
    do { if (cond) return tf_fail((f), (code), 0, __VA_ARGS__); } while (0)

#define GOTO_ERROR_IF(cond, f, code, ...) \
    do { if (cond) { rc = tf_fail((f), (code), 0, __VA_ARGS__); goto cleanup; } } while (0)

/* A cfitsio call failed with `st`: map it to a tf_status and record it. */
#define RETURN_IF_CFITSIO(st, f, code, ...) \
    do { if (st) return tf_fail((f), (code), (st), __VA_ARGS__); } while (0)

#define GOTO_IF_CFITSIO(st, f, code, ...) \
    do { if (st) { rc = tf_fail((f), (code), (st), __VA_ARGS__); goto cleanup; } } while (0)

#define FORWARD_IF_ERROR(expr) \
    do { int tf_rc_ = (expr); if (tf_rc_ != TF_OK) return tf_rc_; } while (0)

/* Checks made on entry to every public call that takes a handle; opens
 * cfitsio on the file when the open was fast (tf_need_fits). */
int tf_check_handle(tf_file *f);

/* The same checks without opening cfitsio: for the image calls, which read
 * HDU 0 of a fast-opened file without it. */
int tf_check_handle_lazy(tf_file *f);

/* Open the file with cfitsio if tf_open left that for later (file.c). */
int tf_need_fits(tf_file *f);

/* Parse the primary header in buf[0..n) (the file's first bytes) with no
 * cfitsio: only a plain, strictly written image header of the mandatory
 * keywords, BSCALE, BZERO, BLANK (and PCOUNT 0, GCOUNT 1) is accepted, into
 * f->fast_info and f->fast_data_offset. Returns 1 when accepted, 0 for
 * anything else (cfitsio then parses it). Never fails. (guard.c) */
int tf_fast_primary(tf_file *f, const char *buf, size_t n);

/* tf_hdu_info_get through cfitsio's parse of the header (file.c). */
int tf_hdu_info_cfitsio(tf_file *f, int hdu, tf_hdu_info *info);

/* Move cfitsio to HDU `hdu` (0-based) and set err_hdu; gives TF_ENOHDU for
 * a number past the end. *hdutype receives cfitsio's IMAGE_HDU etc. */
int tf_move_to(tf_file *f, int hdu, int *hdutype);

/* The dtype of a default read of data stored with this BITPIX, scale and
 * zero: exact for the unsigned conventions, floating point for other
 * scaling (file.c). */
tf_dtype tf_natural_dtype(int bitpix, double scale, double zero);

/* The dtype of data stored with this BITPIX; TF_DTYPE_AUTO for none
 * (file.c). */
tf_dtype tf_stored_dtype(int bitpix);

/* Bounds of an integer dtype in *lo, *hi; 0 (and nothing set) for any
 * other dtype (error.c, beside the dtype table). */
int tf_int_range(tf_dtype t, int64_t *lo, int64_t *hi);

/* Check the raw headers of HDUs up to `upto` (0-based; INT_MAX: all)
 * for values cfitsio would crash on, before cfitsio parses them. */
int tf_guard_headers(tf_file *f, int upto);
/* The same checks on the primary header's first blocks in buf (n bytes),
 * before cfitsio parses it. */
int tf_guard_primary(tf_file *f, const char *buf, size_t n);

/* Run copy(arg), which reads from f->map, with a SIGBUS from a truncated
 * file caught: *faulted is then 1 and the result TF_ECORRUPT. -1 when the
 * guard cannot be set up (read with pread instead). (mapped.c) */
int tf_map_guarded(int (*copy)(void *), void *arg, int *faulted);

/* Drop the mapping of tf_map_file, if any. */
void tf_unmap_file(tf_file *f);

/* a * b into *out, returning 0 on overflow of int64. */
static inline int tf_mul_ok(int64_t a, int64_t b, int64_t *out) {
    return !__builtin_mul_overflow(a, b, out) && *out >= 0;
}

/* Free the cards of the last loaded header. */
void tf_free_cards(tf_file *f);
/* The current HDU's header as one string of 80-character cards (freed with
 * fits_free_memory), as cfitsio's fits_convert_hdr2str gives it, byte for
 * byte: for a tile-compressed image, the image's own header. Unlike
 * fits_convert_hdr2str it never allocates the image's data unit
 * (header/hdr2str.c). cfitsio-style: returns and sets *status; *header is
 * NULL on error. Needs nothing else of the core (tests/c/test_hdr2str.c). */
int tf_hdr2str(fitsfile *fp, char **header, int *nkeys, int *status);

/* Ask for transparent huge pages on an output buffer of at least
 * min_bytes before the first write faults it in (where the system leaves
 * them to madvise): the first write into fresh memory then faults once
 * per 2 MiB instead of once per 4 KiB, which can cost more than the read
 * itself. Only the 2 MiB-aligned interior is advised; a hint, errors are
 * ignored. */
void tf_advise_huge(void *p, size_t n, size_t min_bytes);

/* cfitsio's datatype code (TBYTE...) for reading into a dtype; 0 for none. */
int tf_cfitsio_type(tf_dtype dtype);

/* An option counted in MiB, in bytes (saturated) (options.c). */
size_t tf_option_bytes(tf_option opt);

/* Most threads one read is split across. */
#define TF_MAX_THREADS 16
/* Most threads a batch of remote files is opened on: they wait on the
 * network, not on a core. */
#define TF_MAX_IO_THREADS 64

/* Threads for a batch of `n` files, `usual` of them for local files: for
 * a batch with a URL, TF_OPT_REMOTE_THREADS where that is more (at most
 * TF_MAX_IO_THREADS); never more than n (threads.c). */
int tf_batch_threads(const char *const *paths, int64_t npaths, int usual, int64_t n);

/* Threads for a large read: TF_OPT_THREADS when set (> 0),
 * else `requested` (> 0), else the number of online CPUs; at most
 * TF_MAX_THREADS (threads.c). */
int tf_auto_threads(int requested);

/* Whether `requested` (> 0) or TF_OPT_THREADS set the thread count. */
int tf_threads_chosen(int requested);

/* Online CPUs with no runnable task on them right now (from the runnable
 * count in /proc/loadavg, the caller counted as running); -1 if unknown. */
int tf_idle_cpus(void);

/* Run worker(job) for each of njobs jobs laid out job_size bytes apart:
 * jobs 1.. on new threads (on the caller's when a thread cannot start),
 * job 0 on the caller's, and wait for all. Workers report through their
 * job. */
void tf_run_jobs(void *(*worker)(void *), void *jobs, size_t job_size, int njobs);

#endif /* TORCHFITS_INTERNAL_H */
