/*
 * torchfits_core.h - the public API of the torchfits C core.
 *
 * Plain C11 on top of cfitsio: no torch, no Python. The C++ shim (the .cpp
 * files in csrc) is the only caller in the package; the C unit tests and the fuzz harness
 * call it too.
 *
 * Conventions (after libspng and zstd):
 *  - A tf_file is an opaque handle. Create it with tf_create(), open a file
 *    with tf_open(), release it with tf_close() (always, even after errors).
 *  - Every call returns an int from the tf_status enum; results come back
 *    through pointer arguments.
 *  - After an error, tf_errmsg() gives a message that names the file (the
 *    path whole, however long), the HDU and the cause (with cfitsio's status
 *    code and its fixed text where cfitsio refused something).
 *  - Sizes are asked for first (tf_image_output), then the caller's buffer is
 *    filled (tf_image_read); a buffer of the wrong size is refused.
 *  - A handle whose file proved corrupt is poisoned: every later call returns
 *    TF_EPOISONED. A bad argument does not poison it.
 *  - One handle must not be used by two threads at once. Separate handles on
 *    the same file are independent and may be used concurrently.
 *
 * Untrusted input: every size read from a file is overflow-checked and
 * compared with the real file size before anything is allocated.
 * HDU numbers are 0-based (0 is the primary HDU), as in astropy and fitsio.
 * Shapes are in C order: NAXISn reversed, slowest axis first.
 */
#ifndef TORCHFITS_CORE_H
#define TORCHFITS_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Most axes an image may have. FITS allows 999; no real data uses more. */
#define TF_MAX_DIMS 16

typedef enum tf_status {
    TF_OK = 0,
    TF_EINVAL,        /* a bad argument from the caller */
    TF_EOPEN,         /* the file could not be opened (missing, permissions) */
    TF_ENOTFITS,      /* the file is not FITS */
    TF_ENOHDU,        /* no HDU with that number or name */
    TF_EHDUTYPE,      /* the HDU is of another kind (a table read as image) */
    TF_ERANGE,        /* a region or row range outside the data */
    TF_ECORRUPT,      /* malformed or truncated header or data */
    TF_ELIMIT,        /* beyond a safety limit of the reader */
    TF_ENOMEM,        /* out of memory */
    TF_EIO,           /* an operating-system read error */
    TF_EBUFSIZE,      /* the caller's buffer has the wrong size */
    TF_EUNSUPPORTED,  /* valid FITS that this reader does not handle */
    TF_EPOISONED      /* an earlier call found the file corrupt */
} tf_status;

/* Element types of data the core can produce. */
typedef enum tf_dtype {
    TF_DTYPE_AUTO = 0, /* in requests: the natural type for the data */
    TF_UINT8,
    TF_INT8,
    TF_INT16,
    TF_UINT16,
    TF_INT32,
    TF_UINT32,
    TF_INT64,
    TF_FLOAT32,
    TF_FLOAT64,
    TF_BOOL,
    TF_COMPLEX64,
    TF_COMPLEX128,
    TF_UINT64,         /* appended: the values above keep their numbers */
    TF_DTYPE_COUNT
} tf_dtype;

typedef enum tf_hdu_kind {
    TF_HDU_IMAGE = 0,      /* includes tile-compressed images */
    TF_HDU_ASCII_TABLE,
    TF_HDU_BINARY_TABLE
} tf_hdu_kind;

/* Which implementation reads image data. */
typedef enum tf_read_path {
    TF_PATH_AUTO = 0,  /* the fast path where it applies, else cfitsio */
    TF_PATH_CFITSIO    /* always cfitsio's own reading routines */
} tf_read_path;

typedef struct tf_hdu_info {
    int index;            /* 0-based HDU number */
    tf_hdu_kind kind;
    int bitpix;           /* stored BITPIX (ZBITPIX for compressed images) */
    int ndim;             /* number of axes (0 for an empty primary) */
    int64_t shape[TF_MAX_DIMS]; /* C order */
    double bscale, bzero; /* 1 and 0 when absent */
    int has_blank;        /* BLANK present on an integer image with pixels, and
                             within BITPIX's range (one outside it equals no
                             stored value and is ignored) */
    int64_t blank;
    int compressed;       /* a tile-compressed image */
    char extname[72];     /* "" when absent */
    int extver;           /* 1 when absent, as FITS defines */
    tf_dtype dtype;       /* what tf_image_read returns by default */
    tf_dtype raw_dtype;   /* the stored type (raw reads) */
    int64_t nrows;        /* tables: rows; images: 0 */
    int ncols;            /* tables: columns; images: 0 */
} tf_hdu_info;

/* A read of an image region. Zero-initialise, then set what you need. */
typedef struct tf_image_request {
    int raw;              /* 1: stored values, BZERO/BSCALE not applied */
    tf_dtype dtype;       /* TF_DTYPE_AUTO, or a wider type: int32 for uint16
                             data, int64 for uint32 data (exact), float64
                             for uint64 data (rounded above 2^53) */
    int ndim;             /* 0: the whole image; else the image's ndim */
    int64_t start[TF_MAX_DIMS]; /* C order, 0-based, each >= 0 */
    int64_t count[TF_MAX_DIMS]; /* elements along each axis, each >= 1 */
    int64_t step[TF_MAX_DIMS];  /* >= 1; 0 is taken as 1 */
    tf_read_path path;
    int threads;          /* 0: automatic (one per online CPU); 1: single-threaded.
                             TF_OPT_THREADS, when set, overrides it */
} tf_image_request;

typedef struct tf_file tf_file;

/* Process-wide settings. Each call reads them when it starts; they may be
 * changed at any time from any thread. */
typedef enum tf_option {
    TF_OPT_THREADS = 0,   /* threads for one large read; 0 (default): one per
                             online CPU, or the request's own count */
    TF_OPT_KEEP_MB,       /* MiB of freed large output blocks kept for reuse
                             (256; 0 keeps none) */
    TF_OPT_UNPACK_MAX_MB, /* most MiB a compressed file may unpack to (4096) */
    TF_OPT_TABLE_MAX_MB,  /* MiB one table read may produce in all, where that is
                             more than TF_TABLE_GROWTH times the file's size
                             (0: that multiple is the limit); see
                             tf_table_output */
    TF_OPT_CONNECT_TIMEOUT_MS, /* remote: connecting gives up after (10,000) */
    TF_OPT_READ_TIMEOUT_MS,    /* remote: a transfer with no progress for this
                                  long fails (30,000; counted in whole seconds) */
    TF_OPT_REMOTE_RETRIES,     /* remote: retries of a 5xx or a broken
                                  connection, backoff from 100 ms (3) */
    TF_OPT_REMOTE_CACHE_MB,    /* remote: MiB of fetched bytes kept per open
                                  file (64) */
    TF_OPT_VERIFY_TLS,         /* remote: check certificates (1; 0 does not) */
    TF_OPT_S3_ADDRESSING,      /* s3:// URLs: 0 auto (virtual-host for AWS,
                                  path-style for a custom endpoint), 1 path,
                                  2 virtual-host */
    TF_OPT_REMOTE_META_MB,     /* remote: MiB of the process-wide cache of what
                                  an open learnt about a URL (size, ETag or
                                  Last-Modified, the first block: headers and
                                  tile table), so a later open of the same URL
                                  sends no request of its own (16; 0: off) */
    TF_OPT_REMOTE_THREADS,     /* remote: threads that open the URLs of one
                                  batch at once (16) */
    TF_OPT_WRITE_CFITSIO,      /* writers: 1 builds every HDU with cfitsio in
                                  memory (its own writer, the reference the
                                  tests compare with); 0 (default) stores
                                  uncompressed image data straight from the
                                  caller's buffer and compresses tiles on
                                  every core */
    TF_OPT_COUNT
} tf_option;

/** Remote settings that are strings: "aws_access_key_id",
 *  "aws_secret_access_key", "aws_session_token", "aws_region",
 *  "aws_endpoint_url" (NULL or "" unsets). The core never reads the
 *  environment; Python copies AWS_* into these. Used by opens after the
 *  call. @return TF_OK, TF_EINVAL for an unknown key, TF_ENOMEM. */
int tf_remote_set(const char *key, const char *value);

/** Requests made and bytes received by remote reads in this process
 *  (since the last reset, when `reset` is set: then zeroed). */
void tf_remote_stats(int64_t *requests, int64_t *bytes, int reset);

/** A file opened on a URL from the metadata cache (TF_OPT_REMOTE_META_MB)
 *  makes no request at open: its first request for data asks the server
 *  for the cached version only (If-Match, or If-Unmodified-Since). Call
 *  this when an operation on f has succeeded: where f made no request yet
 *  (all it read was cached), one conditional request checks the version.
 *  @return TF_OK, or TF_EIO with tf_remote_stale(f) set when the object
 *  changed. No-op for any other file. */
int tf_remote_confirm(tf_file *f);

/** Whether a request of f, opened from the metadata cache, found that the
 *  object changed since it was cached: what f read may mix versions, and
 *  the operation must be redone on a fresh handle (the entry is dropped,
 *  so that open fetches anew). 0 for any other file. */
int tf_remote_stale(const tf_file *f);

/** Set an option. @return TF_OK, or TF_EINVAL for an unknown option or a
 *  negative value. */
int tf_set_option(tf_option opt, int64_t value);

/** An option's value; -1 for an unknown option. */
int64_t tf_get_option(tf_option opt);

/** Allocate a handle. @return NULL only when out of memory. */
tf_file *tf_create(void);

/**
 * Open a FITS file read-only. The path is a plain file name, handed to the
 * OS as it is: cfitsio never sees it (no extended filename syntax, no ~
 * expansion, no stripped blanks, no name.gz siblings, no length limit of
 * its own). Only a regular file is read: a directory, FIFO, device or
 * socket is TF_EOPEN at once. A file compressed with gzip (every member of
 * it) or compress (.Z) is unpacked into memory, as told by its first bytes,
 * whatever its name, within TF_OPT_UNPACK_MAX_MB. The file is never
 * written. A plainly written primary image header of a
 * plain file is parsed by the core itself (the fast open); cfitsio then
 * opens the file on the first call that needs it, and any header the core
 * is not certain of is parsed by cfitsio here, as before.
 * @return TF_OK, TF_EOPEN, TF_ENOTFITS, TF_ECORRUPT, TF_ELIMIT, TF_EIO or TF_ENOMEM.
 */
int tf_open(tf_file *f, const char *path);

/**
 * For a handle kept open across many reads: map the file (plain files
 * only), so that small image reads (cutouts, under 4 MiB of output) copy
 * from the page cache instead of making a pread per row. Copies from the
 * mapping are guarded: a file truncated by another process during a read
 * gives TF_ECORRUPT, never SIGBUS. A file that cannot be mapped is read
 * with pread as before. Not worth it for a handle used once (mapping and
 * unmapping cost more than a cutout's preads).
 * @return TF_OK (mapped or not), or the handle's error.
 */
int tf_map_file(tf_file *f);

/**
 * Memory for an output of `bytes` bytes, to be given back with
 * tf_block_free(p, *len). Blocks of 32 MiB and more are mappings of their
 * own, and freed ones are kept for reuse (up to TF_OPT_KEEP_MB MiB in
 * all, 256 by default; 0 keeps none), so that a loop reading large images
 * does not fault in and zero fresh pages on every read. Smaller blocks come
 * from malloc (*len is then 0). The memory is not zeroed.
 * @return NULL when out of memory.
 */
void *tf_block_alloc(size_t bytes, size_t *len);

/** Give back a block from tf_block_alloc; NULL is ignored. */
void tf_block_free(void *p, size_t len);

/**
 * Record that the caller could not allocate `bytes` bytes for `what` ("the
 * image", "column 'X'") of HDU `hdu` (-1: none) of the file open on f, with
 * the allocator's `cause` (may be NULL), so that tf_errmsg names the file:
 * "<path>: HDU <hdu>: cannot allocate <bytes> bytes for <what> (<cause>)".
 * The handle stays usable. @return TF_ENOMEM.
 */
int tf_fail_alloc(tf_file *f, int hdu, size_t bytes, const char *what, const char *cause);

/** Close the file and free the handle. Accepts NULL. */
void tf_close(tf_file *f);

/** The message of the last error: file, HDU and cause. Never NULL. */
const char *tf_errmsg(const tf_file *f);

/** The name of a status code ("TF_ECORRUPT"). */
const char *tf_strerror(int status);

/** Check once that the linked cfitsio is the thread-safe (reentrant) build.
 *  @return TF_OK or TF_EUNSUPPORTED. */
int tf_check_reentrant(void);

/** Number of HDUs in the file. Walks every header once, then caches. */
int tf_num_hdus(tf_file *f, int *n);

/**
 * Find an HDU by EXTNAME (case-insensitive, as FITS compares) and EXTVER
 * (0 matches any). A primary HDU with EXTNAME is found too.
 * @return TF_OK, or TF_ENOHDU when none matches.
 */
int tf_find_hdu(tf_file *f, const char *extname, int extver, int *index);

/** Describe HDU `hdu`. @return TF_OK, TF_ENOHDU, TF_ECORRUPT. */
int tf_hdu_info_get(tf_file *f, int hdu, tf_hdu_info *info);

/** Size of one element of a dtype in bytes (0 for TF_DTYPE_AUTO). */
size_t tf_dtype_size(tf_dtype dtype);

/** Name of a dtype as torch spells it ("float32"). */
const char *tf_dtype_name(tf_dtype dtype);

/**
 * What tf_image_read would produce for this request: its dtype, ndim and
 * shape. Checks the request against the image (TF_ERANGE for a region
 * outside it) and against the file's size (TF_ECORRUPT for truncated data).
 * Tile-compressed images of 64-bit integers (ZBITPIX 64) give
 * TF_EUNSUPPORTED: cfitsio cannot decode their tiles.
 * req may be NULL for the whole image with default options.
 */
int tf_image_output(tf_file *f, int hdu, const tf_image_request *req,
                    tf_dtype *dtype, int *ndim, int64_t *shape);

/**
 * Read an image region into `out`, C-contiguous, of exactly `out_bytes`
 * bytes (the product of the shape from tf_image_output times the dtype
 * size; anything else gives TF_EBUFSIZE). Nothing else is allocated for
 * the output.
 */
int tf_image_read(tf_file *f, int hdu, const tf_image_request *req,
                  void *out, size_t out_bytes);

/* Header cards, as parsed by tf_header_load. */
typedef enum tf_card_type {
    TF_CARD_STRING = 'C',
    TF_CARD_LOGICAL = 'L',
    TF_CARD_INT = 'I',
    TF_CARD_FLOAT = 'F',
    TF_CARD_COMPLEX = 'X',
    TF_CARD_UNDEFINED = 'U',  /* a keyword with an empty value */
    TF_CARD_COMMENTARY = 'H'  /* COMMENT, HISTORY, and valueless keywords */
} tf_card_type;

/**
 * Parse the header of HDU `hdu` into cards kept inside the handle (valid
 * until the next tf_header_load or tf_close). String values are unquoted,
 * trailing blanks stripped, and long strings continued with CONTINUE cards
 * are joined into one card. HIERARCH keywords lose their HIERARCH prefix.
 * For tile-compressed images this is the header of the image, as astropy
 * shows it, not of the table that stores it.
 */
int tf_header_load(tf_file *f, int hdu, int *ncards);

/** Card i of the last loaded header. Pointers stay owned by the handle. */
int tf_header_card(const tf_file *f, int i, const char **key,
                   const char **value, const char **comment, char *type);

/* ---- sky coordinates: an HDU's WCS through wcslib (wcs/) ---- */

/* An HDU's world coordinate system: wcslib's wcsprm, built from the header
 * cards the core parsed (tf_header_load), never from the file by wcslib. */
typedef struct tf_wcs tf_wcs;

/**
 * Parse the WCS of HDU `hdu` (alt: "" or " " for the primary WCS, or a
 * letter A-Z) with wcslib's wcspih, apply wcsfix's fixes as astropy.wcs
 * does by default, and wcsset it. A WCS keyword wcslib rejects, or a
 * description it cannot set up, gives TF_EINVAL with a message naming the
 * keyword; an HDU without that WCS gives TF_EINVAL too. The handle's
 * header cache is reused (the last tf_header_load is replaced).
 * Free with tf_wcs_free.
 */
int tf_wcs_load(tf_file *f, int hdu, const char *alt, tf_wcs **out);

/** Release a tf_wcs. Accepts NULL. */
void tf_wcs_free(tf_wcs *w);

/** Number of WCS axes (the columns of the coordinate arrays). */
int tf_wcs_naxis(const tf_wcs *w);

/** The axis sizes (NAXISn, FITS order) of the image the WCS belongs to;
 *  *n is 0 for an HDU without data. At most TF_MAX_DIMS. */
void tf_wcs_image_shape(const tf_wcs *w, int *n, int64_t *naxisn);

/** Axis i: CTYPE, CUNIT, CRVAL, CRPIX (1-based, as stored), and the pixel
 *  scale of pixel axis i: the length of column i of CDELT*PC (CD), over
 *  every world axis. Pointers stay owned by `w`. */
int tf_wcs_axis(const tf_wcs *w, int i, const char **ctype, const char **cunit,
                double *crval, double *crpix, double *scale);

/**
 * Transform n points, row-major [n, naxis] doubles, from pixel to world
 * (to_world = 1, wcslib's wcsp2s) or world to pixel (wcss2p). Pixel
 * coordinates are 0-based: the centre of the first pixel is 0, as in
 * astropy's wcs_pix2world(..., 0). Distortions that wcslib knows (SIP and
 * TPV, read from the header) are applied. A point wcslib finds invalid
 * (outside the projection) gives a row of NaN. Large n is split over up to
 * `threads` threads (0: automatic), each with its own copy of the wcsprm.
 *
 * A 2-axis celestial TAN WCS, without distortion or with SIP, is computed
 * in closed form (several times faster than wcslib, the same values to
 * about 1e-10 pixel and 1e-12 degree), unless `flags` has TF_WCS_WCSLIB: then every
 * point goes through wcslib's own code, bit for bit what astropy.wcs
 * computes (what placing a cutout exactly as Cutout2D does needs, at a
 * position on a half-pixel boundary).
 * Errors go to f's message (f is only used for that). `in` and `out` may
 * not overlap.
 */
#define TF_WCS_WCSLIB 1
int tf_wcs_transform(tf_file *f, const tf_wcs *w, int to_world, const double *in,
                     double *out, int64_t n, int threads, int flags);

/* ---- batch reads: the same HDU (or region) of many files ---- */

/**
 * What tf_batch_read would produce per file: the dtype, ndim and shape that
 * `req` gives on the first of the n files (with skip_errors, the first that
 * can be read). On failure `errmsg` (errlen bytes) receives the file's
 * message. @return TF_OK, or that file's status (TF_EINVAL for n < 1).
 */
int tf_batch_output(const char *const *paths, int64_t n, int hdu, const tf_image_request *req,
                    int skip_errors, tf_dtype *dtype, int *ndim, int64_t *shape,
                    char *errmsg, size_t errlen);

/**
 * Read HDU `hdu` (or the region in `req`) of each of the n files into
 * consecutive slots of `out`: file i fills bytes [i*item, (i+1)*item) where
 * item = out_bytes / n must be the product of `shape` times the size of
 * `dtype` (TF_EBUFSIZE otherwise). Each file must give exactly that dtype
 * and shape (TF_EINVAL names the one that does not). Files are read by up
 * to `threads` threads (0: automatic), each with its own handle.
 *
 * ok == NULL: the first error stops the batch; the status and the message
 * (in errmsg) are those of the lowest-numbered failing file.
 * ok != NULL (n bytes): every file is tried; ok[i] is 1 when file i was
 * read, 0 when not (its slot is zero-filled); the return is TF_OK and
 * errmsg holds the message of the first failing file ("" if none).
 */
int tf_batch_read(const char *const *paths, int64_t n, int hdu, const tf_image_request *req,
                  tf_dtype dtype, int ndim, const int64_t *shape, void *out, size_t out_bytes,
                  int threads, uint8_t *ok, char *errmsg, size_t errlen);

/**
 * Many cutouts of ny x nx pixels from the 2-d images of a few files, into
 * one float buffer (out_dtype TF_FLOAT32 or TF_FLOAT64) of exactly n*ny*nx
 * values (TF_EBUFSIZE otherwise): a batch of catalogue sources in several
 * bands. items is [n, 3] int64: file (an index into paths and hdus, or -1
 * for none), y, x: the 0-based C-order position of the cutout's first
 * pixel, which may lie partly or wholly outside the image. Pixels outside
 * the image, and every pixel of an item with file -1, are `fill`. Values
 * are those tf_image_read gives (BZERO/BSCALE applied, BLANK as NaN),
 * converted; only each cutout's overlap with the image is read (only the
 * tiles it touches, for a tile-compressed image). The items are grouped by
 * file, each group read with one handle, and the groups spread over up to
 * `threads` threads (0: automatic). The first error (that of the lowest
 * failing item) stops the read, with the file's message in errmsg: a file
 * that cannot be read, an HDU that is not a 2-d image, a bool or complex
 * image (TF_EUNSUPPORTED).
 */
int tf_cutouts_read(const char *const *paths, const int *hdus, int64_t npaths,
                    const int64_t *items, int64_t n, int64_t ny, int64_t nx, tf_dtype out_dtype,
                    double fill, void *out, size_t out_bytes, int threads, char *errmsg,
                    size_t errlen);

/* ---- tables ---- */

/* How a table column comes back. */
typedef enum tf_column_kind {
    TF_COL_FIXED = 0, /* numbers, logicals (L), bits (X): [rows, *shape] of dtype */
    TF_COL_STRING,    /* characters (A): uint8 [rows, *shape], last axis the width;
                         the bytes as stored (trailing blanks, NULs and what
                         follows a NUL included) */
    TF_COL_VLA        /* P/Q descriptors: values concatenated, plus int64
                         offsets [rows + 1] into them (in elements); PA/QA
                         characters as stored, as for TF_COL_STRING */
} tf_column_kind;

typedef struct tf_column_info {
    int index;             /* 0-based column number */
    char name[72];         /* TTYPEn as written ("" when absent) */
    char tform[72];        /* TFORMn as written */
    char tunit[72];        /* TUNITn, "" when absent */
    char tdim[72];         /* TDIMn as written, "" when absent */
    char code;             /* the data type letter: L X B I J K A E D C M
                              (the element type for P/Q columns) */
    char vla;              /* 'P' or 'Q' for variable-length arrays, else 0 */
    tf_column_kind kind;
    int64_t repeat;        /* elements per row (bits for X, characters for
                              A, the declared maximum for P/Q) */
    int ndim;              /* per-row shape in C order (TDIM reversed); 0
                              for one element per row, as astropy gives */
    int64_t shape[TF_MAX_DIMS];
    tf_dtype dtype;        /* what a read returns (uint8 for strings) */
    tf_dtype raw_dtype;    /* the stored element type */
    double scale, zero;    /* TSCALn, TZEROn (1 and 0 when absent) */
    int has_null;          /* TNULLn present (integer columns) */
    int64_t null;
    int64_t offset;        /* binary tables: the column's first byte in a row */
    int64_t width;         /* bytes per row in the table */
} tf_column_info;

/** Rows and columns of table HDU `hdu`; TF_EHDUTYPE for an image. */
int tf_table_shape(tf_file *f, int hdu, int64_t *nrows, int *ncols);

/** Describe column `col` (0-based) of table HDU `hdu`. TF_ECORRUPT for a
 *  TFORM or TDIM that does not fit the table, TF_ERANGE for no such column. */
int tf_table_column(tf_file *f, int hdu, int col, tf_column_info *info);

/** Find a column by TTYPE: an exact match first, else the first that
 *  matches ignoring case, as FITS compares. TF_EINVAL when none does. */
int tf_table_find_column(tf_file *f, int hdu, const char *name, int *col);

/** Check rows [start, start + *nrows) against the table, resolving
 *  *nrows = -1 to "to the end". TF_EINVAL for a negative start or count,
 *  TF_ERANGE for rows past the end. */
int tf_table_rows(tf_file *f, int hdu, int64_t start, int64_t *nrows);

/**
 * Total elements of VLA column `col` over rows [start, start + nrows),
 * after checking every descriptor points inside the heap (TF_ECORRUPT
 * naming the column and row when one does not), and that the column alone
 * stays within the limit of tf_table_output (TF_ELIMIT). tf_table_output
 * gives this and the rest of a read's sizes at once.
 */
int tf_table_vla_size(tf_file *f, int hdu, int col, int64_t start, int64_t nrows,
                      int64_t *nelem);

/* A table read produces at most this many times the file's size (the
 * unpacked size of a compressed file) unless TF_OPT_TABLE_MAX_MB allows
 * more: no read of a well-formed table comes near it (bits to bools and
 * ASCII digits to 8-byte numbers are the widest, 8 to 1), but
 * variable-length arrays may share heap bytes, and one 1 MB heap may
 * serve every row of a table. */
#define TF_TABLE_GROWTH 8

/* One column of a table read: where its values go. */
typedef struct tf_table_out tf_table_out;

/**
 * The sizes of a read of rows [start, start + nrows) (nrows -1: to the
 * end) of the columns in `outs` (col and dtype set): each one's data_bytes
 * and, for VLAs, offsets_bytes are filled in, after every VLA descriptor
 * is checked against the heap. Nothing is read or allocated. The total
 * (every column's values and offsets) may be at most TF_TABLE_GROWTH
 * times the file's size, or TF_OPT_TABLE_MAX_MB MiB where that is more:
 * past it, TF_ELIMIT naming the file, HDU, the column that crossed it and
 * the sizes. Ask this, allocate, then tf_table_read.
 */
int tf_table_output(tf_file *f, int hdu, int64_t start, int64_t nrows, tf_table_out *outs,
                    int nouts);

struct tf_table_out {
    int col;             /* 0-based column */
    tf_dtype dtype;      /* TF_DTYPE_AUTO (the column's dtype), or a wider
                            type: int32 for uint16, int64 for uint32 (exact),
                            float64 for uint64 (rounded above 2^53) */
    void *data;          /* [nrows, *shape] of the column's dtype, or the
                            VLA values; exactly data_bytes long */
    size_t data_bytes;
    int64_t *offsets;    /* VLAs: nrows + 1 entries; else NULL */
    size_t offsets_bytes;
};

/**
 * Read rows [start, start + nrows) of the columns in `outs` (nrows -1: to
 * the end). Fixed-width columns of binary tables are read in one pass over
 * blocks of whole rows, each block scattered and byte-swapped into every
 * column (split across threads for large reads in plain files); ASCII
 * tables and VLAs go through cfitsio's column reads. path TF_PATH_CFITSIO
 * reads every column with cfitsio (for tests). Buffers of the wrong size
 * give TF_EBUFSIZE; rows outside the table TF_ERANGE.
 */
int tf_table_read(tf_file *f, int hdu, int64_t start, int64_t nrows, tf_table_out *outs,
                  int nouts, tf_read_path path);


/* ---- writing (csrc/core/write/) ---- */

/*
 * A tf_writer builds headers, tables and compressed images in memory with
 * cfitsio (fits_create_memfile: cfitsio never sees the caller's path);
 * uncompressed image data stays in the caller's buffer. tf_writer_commit
 * writes the file to a new temporary file in the target's directory
 * (O_CREAT|O_EXCL, mode 0666 less the umask), storing image data chunk by
 * chunk (byte swapped), fsyncs it when asked (tf_writer_set_sync) and
 * renames it into place. On any error the temporary file is removed and an
 * existing target is left as it was. Create with tf_writer_create, add HDUs
 * in order, commit, and always tf_writer_free (which discards an
 * uncommitted file). One writer must not be used by two threads at once;
 * separate writers are independent.
 */
typedef struct tf_writer tf_writer;

/* Element types a writer takes (the write side has uint64 and int8). */
typedef enum tf_wtype {
    TF_W_UINT8 = 0,   /* BITPIX 8 */
    TF_W_INT8,        /* BITPIX 8, BZERO -128 */
    TF_W_INT16,       /* BITPIX 16 */
    TF_W_UINT16,      /* BITPIX 16, BZERO 32768 */
    TF_W_INT32,       /* BITPIX 32 */
    TF_W_UINT32,      /* BITPIX 32, BZERO 2147483648 */
    TF_W_INT64,       /* BITPIX 64 */
    TF_W_UINT64,      /* BITPIX 64, BZERO 9223372036854775808 */
    TF_W_FLOAT32,     /* BITPIX -32 */
    TF_W_FLOAT64,     /* BITPIX -64 */
    TF_W_COUNT
} tf_wtype;

/* Tile compression of an image HDU (cfitsio's own compressor). */
typedef enum tf_codec {
    TF_CODEC_NONE = 0,
    TF_CODEC_RICE_1,
    TF_CODEC_GZIP_1,
    TF_CODEC_GZIP_2,
    TF_CODEC_HCOMPRESS_1,
    TF_CODEC_PLIO_1
} tf_codec;

/* One header card to write. type as tf_card_type: 'C' string (long ones
 * continued with CONTINUE), 'L' ("T"/"F"), 'I' (a decimal integer), 'F' (a
 * finite number as FITS writes it: digits, '.', 'E'), 'U' (no value), 'H'
 * commentary (key COMMENT, HISTORY or "": value is the text, split over
 * cards as needed). A key longer than 8 characters, or with a blank or a
 * lower-case letter, is written behind HIERARCH (a leading "HIERARCH " is
 * taken off first). Structural keywords are refused (TF_EINVAL naming the
 * key): SIMPLE, XTENSION, BITPIX, NAXIS, NAXISn, EXTEND, PCOUNT, GCOUNT,
 * BSCALE, BZERO, END, CHECKSUM, DATASUM, the tile-compression Z* keywords,
 * table column keywords (TFIELDS, TTYPEn, TFORMn, ...), and BLANK on a
 * floating-point or compressed image. */
typedef struct tf_write_card {
    const char *key;
    const char *value;
    const char *comment;  /* NULL or "" for none */
    char type;
} tf_write_card;

/* An image HDU to add. Zero-initialise, then set what you need. */
typedef struct tf_write_image {
    tf_wtype dtype;
    int ndim;                     /* 0: no data (an empty primary or extension) */
    int64_t shape[TF_MAX_DIMS];   /* C order, each >= 1 */
    const void *data;             /* C-contiguous, native byte order; not modified,
                                     and read until tf_writer_commit returns */
    size_t nbytes;                /* exactly prod(shape) * element size */
    tf_codec codec;
    int tile_ndim;                /* 0: cfitsio's default tiles (one row each) */
    int64_t tile[TF_MAX_DIMS];    /* C order, as many as ndim */
    int set_quantize_level;       /* 1: use quantize_level (floats); else 4 */
    float quantize_level;         /* > 0: noise / level; < 0: absolute step;
                                     0: lossless (GZIP codecs only) */
    int quantize_method;          /* 0 or 1: SUBTRACTIVE_DITHER_1 (cfitsio's
                                     default), 2: SUBTRACTIVE_DITHER_2,
                                     -1: NO_DITHER */
    int dither_seed;              /* 0: cfitsio's clock-based seed; 1..10000 */
    float hcomp_scale;            /* HCOMPRESS_1 only; 0: lossless */
    int hcomp_smooth;
} tf_write_image;

/* How tf_writer_create treats a file already at the path. */
enum {
    TF_WRITE_NEW = 0,        /* refuse it (TF_EOPEN, "File exists") */
    TF_WRITE_OVERWRITE = 1,  /* replace it at commit */
    TF_WRITE_APPEND = 2      /* keep its bytes and add the new HDUs after its
                                last one (no file there: as TF_WRITE_NEW) */
};

/** Start a file for `path`; mode is one of TF_WRITE_*. Checks at once,
 *  before anything is built, that the directory exists and (TF_WRITE_NEW)
 *  that no file has the name. TF_WRITE_APPEND opens an existing file
 *  through the core's reader (io/), checks that it is plain FITS (not
 *  gzip) whose last HDU ends where the file ends, and keeps it open until
 *  the commit, which writes a new file (a copy of the old bytes, then the
 *  new HDUs) to a temporary name and renames it over the old one, after
 *  checking that the old file was not changed meanwhile (same inode, size
 *  and mtime). The old bytes never pass through cfitsio: the new HDUs are
 *  built as extensions behind a placeholder primary that is dropped.
 *  @return TF_OK, TF_EINVAL, TF_EOPEN ("File exists", "No such file..."),
 *  TF_ENOTFITS / TF_ECORRUPT / TF_EUNSUPPORTED (append to a file that is
 *  not plain, whole FITS), TF_ENOMEM. *w is set even on failure (for the
 *  message) unless NULL. */
int tf_writer_create(tf_writer **w, const char *path, int mode);

/** Add an image HDU with its header cards. A compressed image as the first
 *  HDU gets an empty primary HDU before it (FITS keeps compressed images in
 *  extensions). Nothing touches the disk. @return TF_OK, TF_EINVAL (a bad
 *  argument or card, named), TF_EBUFSIZE, TF_ENOMEM, TF_EUNSUPPORTED. */
int tf_writer_add_image(tf_writer *w, const tf_write_image *img, const tf_write_card *cards,
                        int ncards);

/* A binary-table column to add. */
typedef enum tf_wcol_kind {
    TF_WCOL_NUMBER = 0,  /* dtype's values: TFORM B (uint8), I, J, K, E, D; int8,
                            uint16, uint32, uint64 with TZERO as FITS defines */
    TF_WCOL_BOOL,        /* uint8 0/1 as L */
    TF_WCOL_STRING,      /* uint8 characters as A; the last axis of shape is
                            the width */
    TF_WCOL_VARLEN       /* a variable-length array column (TFORM 1PT(max),
                            or 1QT(max) when the heap passes 2 GiB): row r
                            holds data elements offsets[r]..offsets[r+1];
                            dtype uint8, int16, int32, int64, float32 or
                            float64; ndim 0 */
} tf_wcol_kind;

typedef struct tf_write_column {
    const char *name;             /* TTYPE; NULL or "" for none */
    const char *unit;             /* TUNIT; NULL or "" for none */
    tf_wcol_kind kind;
    tf_wtype dtype;               /* TF_WCOL_NUMBER; else uint8 */
    int ndim;                     /* per-row shape, C order: 0 one value per row;
                                     2 or more also writes TDIM */
    int64_t shape[TF_MAX_DIMS];
    const void *data;             /* [nrows, *shape], C-contiguous, native order
                                     (VARLEN: every row's elements, concatenated) */
    size_t nbytes;
    const int64_t *offsets;       /* VARLEN only: nrows + 1 element offsets into
                                     data, starting at 0, not decreasing, ending
                                     at the element count */
    /* Column scaling and nulls, written as TSCALn, TZEROn and TNULLn. The
     * data are the stored values (they are written unchanged; readers give
     * stored * TSCAL + TZERO). Not for bool, string or variable-length
     * columns, nor for the dtypes whose TZERO FITS fixes (int8, uint16,
     * uint32, uint64) except TNULL. tnull is in the data's own domain (the
     * value a reader returns for a null: for uint16, 65535 is written as
     * TNULL 32767), integer dtypes only. */
    int has_tscal, has_tzero, has_tnull;
    double tscal, tzero;
    int64_t tnull;
} tf_write_column;

/** Add a binary-table HDU of nrows rows (an empty primary first when it is
 *  the first HDU). Same card rules as images; TSCALn, TZEROn, TNULLn and the
 *  table's own column keywords come from cols, never from cards. */
int tf_writer_add_table(tf_writer *w, int64_t nrows, const tf_write_column *cols, int ncols,
                        const tf_write_card *cards, int ncards);

/** Write CHECKSUM and DATASUM into every HDU added (on != 0); set before
 *  adding HDUs (TF_EINVAL after). Appending leaves the old HDUs' bytes as
 *  they are. */
int tf_writer_set_checksum(tf_writer *w, int on);

/** Make the commit durable (on != 0): fsync the temporary file before the
 *  rename and the directory after it. Off (the default), the commit is
 *  still atomic for every reader and against a crash of the process, but
 *  not against a power loss or a kernel crash, after which the target may
 *  hold the old file, the new one, or (on some file systems) an empty or
 *  partial one. */
int tf_writer_set_sync(tf_writer *w, int on);

/** Write the file: temporary file, fsync, rename (or, without overwrite,
 *  link so that a file made meanwhile is not replaced). *bytes (may be NULL)
 *  gets the file's size. @return TF_OK, TF_EOPEN, TF_EIO (disk full, a
 *  size limit; the target is untouched), TF_ENOMEM. */
int tf_writer_commit(tf_writer *w, int64_t *bytes);

/** The last error's message (names the path and the HDU). Never NULL. */
const char *tf_writer_errmsg(const tf_writer *w);

/** Discard and free. Accepts NULL. */
void tf_writer_free(tf_writer *w);

/**
 * Verify CHECKSUM and DATASUM of every HDU of the file at `path` (opened
 * and read through the core's reader, io/, as every read is: gzip files
 * too; cfitsio never sees the path). Per HDU, datasum[i] and
 * hdusum[i] are 1 (matches), 0 (keyword absent) or -1 (does not match), as
 * fits_verify_chksum reports them. *n gets the number of HDUs; at most max
 * are stored. errmsg (errlen bytes) gets the message on failure.
 */
int tf_verify_checksums(const char *path, int *n, int *datasum, int *hdusum, int max,
                        char *errmsg, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif /* TORCHFITS_CORE_H */
