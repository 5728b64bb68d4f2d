/*
 * write.c - the writer: a whole FITS file built in memory by cfitsio, then
 * put on disk safely.
 *
 * Why in memory: cfitsio writing a disk file in place leaves a half-written
 * file under the target's name when anything fails (a full disk, a bad card
 * in the third HDU, a crash), and it would have to be given the user's
 * path. Built with fits_create_memfile, the file exists only as bytes until
 * tf_writer_commit, which writes them to a fresh temporary file in the same
 * directory, fsyncs, and renames (or links, without overwrite) it into
 * place: the target name holds either the old file or the whole new one.
 * The cost is one copy of the file in memory.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <fitsio.h>

#include "../torchfits_core.h"

#define W_ERRLEN 1024

struct tf_writer {
    fitsfile *fp;       /* the memory file; NULL until the first HDU */
    void *buf;          /* its bytes (owned through buf_realloc) */
    size_t bufsize;     /* what cfitsio believes the buffer holds */
    char *path;         /* the target, as given */
    int overwrite;
    int checksum;
    int nhdu;           /* HDUs added (an automatic empty primary counts) */
    int failed;         /* a cfitsio error left the memory file unusable */
    char errmsg[W_ERRLEN];
};

/* ---- errors ---- */

static int wfail(tf_writer *w, int status, int cfitsio_status, const char *fmt, ...) {
    if (!w) return status;
    char *p = w->errmsg;
    size_t left = sizeof w->errmsg;
    int n = snprintf(p, left, "%s: ", w->path ? w->path : "?");
    if (n > 0 && (size_t)n < left) { p += n; left -= (size_t)n; }
    va_list ap;
    va_start(ap, fmt);
    n = vsnprintf(p, left, fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n < left) { p += n; left -= (size_t)n; }
    if (cfitsio_status) {
        char text[FLEN_STATUS] = "";
        char detail[FLEN_ERRMSG] = "";
        fits_get_errstatus(cfitsio_status, text);
        fits_read_errmsg(detail);
        fits_clear_errmsg();
        if (detail[0])
            snprintf(p, left, " (cfitsio status %d: %s; %s)", cfitsio_status, text, detail);
        else
            snprintf(p, left, " (cfitsio status %d: %s)", cfitsio_status, text);
    }
    return status;
}

#define W_CHECK(cond, w, code, ...) \
    do { if (!(cond)) return wfail((w), (code), 0, __VA_ARGS__); } while (0)
#define W_CFITSIO(st, w, ...) \
    do { if ((st) > 0) { (w)->failed = 1; return wfail((w), (st) == MEMORY_ALLOCATION ? TF_ENOMEM : TF_EINVAL, (st), __VA_ARGS__); } } while (0)

const char *tf_writer_errmsg(const tf_writer *w) {
    return w ? w->errmsg : "out of memory";
}

/* ---- memory ---- */

/* cfitsio's memory driver grows its buffer by a fixed step (deltasize),
 * which makes writing a large file quadratic. This realloc keeps the real
 * capacity in front of the block and grows it geometrically; a request
 * within the capacity returns the same block. */
#define CAP_HDR 16

static void *buf_realloc(void *p, size_t newsize) {
    if (p) {
        char *base = (char *)p - CAP_HDR;
        size_t cap;
        memcpy(&cap, base, sizeof cap);
        if (newsize <= cap) return p;
        size_t want = cap + cap / 2;
        if (want < newsize) want = newsize;
        char *nb = realloc(base, want + CAP_HDR);
        if (!nb) return NULL;
        memcpy(nb, &want, sizeof want);
        return nb + CAP_HDR;
    }
    size_t want = newsize < (1 << 20) ? (1 << 20) : newsize;
    char *nb = malloc(want + CAP_HDR);
    if (!nb) return NULL;
    memcpy(nb, &want, sizeof want);
    return nb + CAP_HDR;
}

static void buf_free(void *p) {
    if (p) free((char *)p - CAP_HDR);
}

/* ---- create, free ---- */

static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

int tf_writer_create(tf_writer **out, const char *path, int overwrite) {
    if (!out) return TF_EINVAL;
    tf_writer *w = calloc(1, sizeof *w);
    *out = w;
    if (!w) return TF_ENOMEM;
    w->overwrite = overwrite;
    W_CHECK(path && path[0], w, TF_EINVAL, "path is empty");
    w->path = strdup(path);
    if (!w->path) return TF_ENOMEM;
    size_t len = strlen(path);
    W_CHECK(path[len - 1] != '/', w, TF_EINVAL, "path names a directory");

    struct stat st;
    if (stat(path, &st) == 0) {
        W_CHECK(!S_ISDIR(st.st_mode), w, TF_EOPEN, "path is a directory (%s)", strerror(EISDIR));
        W_CHECK(overwrite, w, TF_EOPEN, "%s: the file is there and overwrite is False",
                strerror(EEXIST));
    }
    char *dir = dir_of(path);
    if (!dir) return wfail(w, TF_ENOMEM, 0, "out of memory");
    int rc = stat(dir, &st);
    int err = errno;
    free(dir);
    if (rc != 0) return wfail(w, TF_EOPEN, 0, "cannot write in its directory: %s", strerror(err));
    W_CHECK(S_ISDIR(st.st_mode), w, TF_EOPEN, "its directory is not a directory (%s)",
            strerror(ENOTDIR));
    return TF_OK;
}

void tf_writer_free(tf_writer *w) {
    if (!w) return;
    if (w->fp) {
        int st = 0;
        fits_close_file(w->fp, &st);
        fits_clear_errmsg();
    }
    buf_free(w->buf);
    free(w->path);
    free(w);
}

int tf_writer_set_checksum(tf_writer *w, int on) {
    if (!w) return TF_EINVAL;
    w->checksum = on != 0;
    return TF_OK;
}

static int ensure_open(tf_writer *w) {
    if (w->fp) return TF_OK;
    int st = 0;
    w->bufsize = 0;
    w->buf = buf_realloc(NULL, 2880);
    if (!w->buf) return wfail(w, TF_ENOMEM, 0, "out of memory");
    w->bufsize = 2880;
    fits_create_memfile(&w->fp, &w->buf, &w->bufsize, 2880, buf_realloc, &st);
    W_CFITSIO(st, w, "cannot create the file in memory");
    return TF_OK;
}

/* ---- header cards ---- */

static int has_digits_after(const char *k, const char *prefix) {
    size_t n = strlen(prefix);
    if (strncmp(k, prefix, n) != 0) return 0;
    if (!k[n]) return 0;
    for (const char *c = k + n; *c; c++)
        if (!isdigit((unsigned char)*c)) return 0;
    return 1;
}

/* Keywords the writer sets itself: a user's copy would contradict the
 * structure (NAXIS1), the data (BZERO on uint16), or the checksum. */
static int reserved_key(const char *k, int is_float, int compressed) {
    static const char *const exact[] = {
        "SIMPLE", "XTENSION", "BITPIX", "NAXIS", "EXTEND", "PCOUNT", "GCOUNT", "BSCALE",
        "BZERO", "END", "CHECKSUM", "DATASUM", "TFIELDS", "THEAP", "ZIMAGE", "ZBITPIX",
        "ZNAXIS", "ZCMPTYPE", "ZQUANTIZ", "ZDITHER0", "ZSIMPLE", "ZEXTEND", "ZBLOCKED",
        "ZPCOUNT", "ZGCOUNT", "ZHECKSUM", "ZDATASUM", "ZTENSION", "ZSCALE", "ZZERO", "ZBLANK",
        "ZMASKCMP", "CONTINUE", NULL};
    static const char *const indexed[] = {
        "NAXIS", "ZNAXIS", "ZTILE", "ZNAME", "ZVAL", "TTYPE", "TFORM", "TDIM", "TBCOL",
        "TSCAL", "TZERO", "TNULL", "TUNIT", "TDISP", NULL};
    for (int i = 0; exact[i]; i++)
        if (strcmp(k, exact[i]) == 0) return 1;
    for (int i = 0; indexed[i]; i++)
        if (has_digits_after(k, indexed[i])) return 1;
    if (strcmp(k, "BLANK") == 0 && (is_float || compressed)) return 1;
    return 0;
}

static int valid_int(const char *v) {
    const char *c = v;
    if (*c == '+' || *c == '-') c++;
    if (!isdigit((unsigned char)*c)) return 0;
    for (; *c; c++)
        if (!isdigit((unsigned char)*c)) return 0;
    return c - v <= 20;
}

static int valid_float(const char *v) {
    if (!*v || strlen(v) > 70) return 0;
    for (const char *c = v; *c; c++)
        if (!strchr("0123456789+-.E", *c)) return 0;
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    return *end == 0 && isfinite(d) && errno != ERANGE;
}

static int printable(const char *s) {
    for (const unsigned char *c = (const unsigned char *)s; *c; c++)
        if (*c < 32 || *c > 126) return 0;
    return 1;
}

static int write_card(tf_writer *w, int i, const tf_write_card *c, int is_float, int compressed) {
    W_CHECK(c->key && c->value, w, TF_EINVAL, "header card %d: key or value is missing", i);
    const char *key = c->key;
    if (strncmp(key, "HIERARCH ", 9) == 0) key += 9;
    while (*key == ' ') key++;
    const char *comment = c->comment ? c->comment : "";
    W_CHECK(printable(key), w, TF_EINVAL,
            "header card %d: key has a character that is not printable ASCII", i);
    W_CHECK(printable(c->value), w, TF_EINVAL,
            "header card %d (%s): value has a character that is not printable ASCII", i, key);
    W_CHECK(printable(comment), w, TF_EINVAL,
            "header card %d (%s): comment has a character that is not printable ASCII", i, key);
    size_t klen = strlen(key);
    int hierarch = klen > 8;
    for (const char *k = key; *k; k++)
        if (*k == ' ' || islower((unsigned char)*k)) hierarch = 1;
    W_CHECK(klen > 0 || c->type == 'H', w, TF_EINVAL, "header card %d: key is empty", i);
    W_CHECK(!strchr(key, '='), w, TF_EINVAL, "header card %d: key '%s' contains '='", i, key);
    if (!hierarch) {
        for (const char *k = key; *k; k++)
            W_CHECK(isupper((unsigned char)*k) || isdigit((unsigned char)*k) || *k == '-' ||
                        *k == '_',
                    w, TF_EINVAL,
                    "header card %d: key '%s' may hold only A-Z, 0-9, '-' and '_' (or be "
                    "written behind HIERARCH: longer than 8 characters, or with a blank)", i, key);
    }
    /* Behind HIERARCH too: cfitsio finds BSCALE there. */
    char upper[FLEN_KEYWORD + 8];
    W_CHECK(klen < FLEN_KEYWORD, w, TF_EINVAL, "header card %d: key '%.40s...' is too long", i,
            key);
    for (size_t j = 0; j <= klen; j++) upper[j] = (char)toupper((unsigned char)key[j]);
    W_CHECK(!reserved_key(upper, is_float, compressed), w, TF_EINVAL,
            "header key '%s' is reserved: torchfits writes the structural keywords itself "
            "(card %d)", key, i);

    char name[FLEN_KEYWORD + 16];
    snprintf(name, sizeof name, "%s%s", hierarch ? "HIERARCH " : "", key);
    int st = 0;
    char card[FLEN_CARD];
    switch (c->type) {
    case 'H':
        if (strcmp(upper, "COMMENT") == 0) {
            fits_write_comment(w->fp, c->value, &st);
        } else if (strcmp(upper, "HISTORY") == 0) {
            fits_write_history(w->fp, c->value, &st);
        } else {
            W_CHECK(klen == 0, w, TF_EINVAL,
                    "header card %d: commentary keys are COMMENT, HISTORY or \"\", not '%s'", i,
                    key);
            /* A blank keyword: the text in columns 9-80, split as needed. */
            const char *t = c->value;
            size_t left = strlen(t);
            do {
                size_t take = left > 72 ? 72 : left;
                snprintf(card, sizeof card, "        %.*s", (int)take, t);
                fits_write_record(w->fp, card, &st);
                t += take;
                left -= take;
            } while (left > 0 && st <= 0);
        }
        break;
    case 'C': {
        /* A value that needs CONTINUE cards (quotes count twice) gets the
         * LONGSTRN keyword that fitsverify asks for, once per header. */
        size_t len = 0;
        for (const char *v = c->value; *v; v++) len += *v == '\'' ? 2 : 1;
        if (len > 68) {
            char existing[FLEN_CARD];
            int st2 = 0;
            if (fits_read_card(w->fp, "LONGSTRN", existing, &st2) == KEY_NO_EXIST)
                fits_write_key_str(w->fp, "LONGSTRN", "OGIP 1.0",
                                   "The OGIP long string convention may be used", &st);
            fits_clear_errmsg();
        }
        fits_write_key_longstr(w->fp, name, c->value, comment, &st);
        break;
    }
    case 'U':
        fits_write_key_null(w->fp, name, comment, &st);
        break;
    case 'L':
    case 'I':
    case 'F': {
        if (c->type == 'L')
            W_CHECK(strcmp(c->value, "T") == 0 || strcmp(c->value, "F") == 0, w, TF_EINVAL,
                    "header key '%s': a logical value is T or F, not '%s'", key, c->value);
        if (c->type == 'I')
            W_CHECK(valid_int(c->value), w, TF_EINVAL,
                    "header key '%s': '%s' is not an integer FITS can hold", key, c->value);
        if (c->type == 'F')
            W_CHECK(valid_float(c->value), w, TF_EINVAL,
                    "header key '%s': '%s' is not a finite number as FITS writes it", key,
                    c->value);
        char value[FLEN_VALUE];
        snprintf(value, sizeof value, "%s", c->value);
        fits_make_key(name, value, comment, card, &st);
        if (st <= 0) fits_write_record(w->fp, card, &st);
        break;
    }
    default:
        return wfail(w, TF_EINVAL, 0, "header card %d (%s): unknown type '%c'", i, key,
                     c->type ? c->type : '?');
    }
    if (st > 0) {
        w->failed = 1;
        return wfail(w, TF_EINVAL, st, "header key '%s' (card %d) could not be written", key, i);
    }
    return TF_OK;
}

/* cfitsio writes two COMMENT cards of its own into a primary header ("FITS
 * (Flexible Image Transport System) format is defined in ..."); the user's
 * header should hold only what the user gave. Called right after the
 * primary is created, when those are its only COMMENT cards. */
static void drop_cfitsio_comments(fitsfile *fp) {
    int st = 0;
    while (st == 0) fits_delete_key(fp, "COMMENT", &st);
    fits_clear_errmsg();
}

/* ---- images ---- */

static const struct {
    int bitpix;      /* as fits_create_img takes it (USHORT_IMG...) */
    int datatype;    /* as fits_write_img takes it */
    size_t size;
    int is_float;
} wtypes[TF_W_COUNT] = {
    [TF_W_UINT8] = {BYTE_IMG, TBYTE, 1, 0},
    [TF_W_INT8] = {SBYTE_IMG, TSBYTE, 1, 0},
    [TF_W_INT16] = {SHORT_IMG, TSHORT, 2, 0},
    [TF_W_UINT16] = {USHORT_IMG, TUSHORT, 2, 0},
    [TF_W_INT32] = {LONG_IMG, TINT, 4, 0},
    [TF_W_UINT32] = {ULONG_IMG, TUINT, 4, 0},
    [TF_W_INT64] = {LONGLONG_IMG, TLONGLONG, 8, 0},
    [TF_W_UINT64] = {ULONGLONG_IMG, TULONGLONG, 8, 0},
    [TF_W_FLOAT32] = {FLOAT_IMG, TFLOAT, 4, 1},
    [TF_W_FLOAT64] = {DOUBLE_IMG, TDOUBLE, 8, 1},
};

static int set_compression(tf_writer *w, const tf_write_image *img) {
    static const int codes[] = {0, RICE_1, GZIP_1, GZIP_2, HCOMPRESS_1, PLIO_1};
    int st = 0;
    fits_set_compression_type(w->fp, codes[img->codec], &st);
    if (img->tile_ndim) {
        long dims[TF_MAX_DIMS];
        for (int d = 0; d < img->tile_ndim; d++) dims[d] = (long)img->tile[img->tile_ndim - 1 - d];
        fits_set_tile_dim(w->fp, img->tile_ndim, dims, &st);
    }
    if (wtypes[img->dtype].is_float) {
        fits_set_quantize_level(w->fp, img->set_quantize_level ? img->quantize_level : 4.0f, &st);
        fits_set_quantize_method(w->fp, img->quantize_method ? img->quantize_method : 1, &st);
        fits_set_dither_seed(w->fp, img->dither_seed, &st);
    }
    if (img->codec == TF_CODEC_HCOMPRESS_1) {
        fits_set_hcomp_scale(w->fp, img->hcomp_scale, &st);
        fits_set_hcomp_smooth(w->fp, img->hcomp_smooth, &st);
    }
    W_CFITSIO(st, w, "HDU %d: the compression parameters were refused", w->nhdu);
    return TF_OK;
}

static int check_image(tf_writer *w, const tf_write_image *img, const tf_write_card *cards,
                       int ncards) {
    int h = w->nhdu;
    W_CHECK((unsigned)img->dtype < TF_W_COUNT, w, TF_EINVAL, "HDU %d: unknown dtype %d", h,
            (int)img->dtype);
    W_CHECK(img->ndim >= 0 && img->ndim <= TF_MAX_DIMS, w, TF_EINVAL,
            "HDU %d: an image has 0 to %d axes, not %d", h, TF_MAX_DIMS, img->ndim);
    W_CHECK(ncards >= 0 && (ncards == 0 || cards), w, TF_EINVAL, "HDU %d: bad header cards", h);
    size_t n = img->ndim ? 1 : 0;
    for (int d = 0; d < img->ndim; d++) {
        W_CHECK(img->shape[d] >= 1, w, TF_EINVAL,
                "HDU %d: data shape axis %d is %lld; every axis needs at least one element", h, d,
                (long long)img->shape[d]);
        W_CHECK(img->shape[d] <= INT64_MAX / 16 && n <= SIZE_MAX / 16 / (size_t)img->shape[d],
                w, TF_EINVAL, "HDU %d: data is too large", h);
        n *= (size_t)img->shape[d];
    }
    W_CHECK(img->nbytes == n * wtypes[img->dtype].size, w, TF_EBUFSIZE,
            "HDU %d: data holds %zu bytes, its shape needs %zu", h, img->nbytes,
            n * wtypes[img->dtype].size);
    W_CHECK(n == 0 || img->data, w, TF_EINVAL, "HDU %d: data is missing", h);
    W_CHECK(img->codec >= TF_CODEC_NONE && img->codec <= TF_CODEC_PLIO_1, w, TF_EINVAL,
            "HDU %d: unknown compression %d", h, (int)img->codec);
    if (img->codec) {
        W_CHECK(img->ndim >= 1, w, TF_EINVAL, "HDU %d: compress needs an image with data", h);
        W_CHECK(img->dtype != TF_W_UINT64 && img->dtype != TF_W_INT64, w, TF_EUNSUPPORTED,
                "HDU %d: cfitsio's tile compression does not take 64-bit integers", h);
        W_CHECK(img->tile_ndim == 0 || img->tile_ndim == img->ndim, w, TF_EINVAL,
                "HDU %d: tile has %d axes, the image %d", h, img->tile_ndim, img->ndim);
        for (int d = 0; d < img->tile_ndim; d++)
            W_CHECK(img->tile[d] >= 1 && img->tile[d] <= img->shape[d], w, TF_EINVAL,
                    "HDU %d: tile axis %d is %lld; it must be 1 to the image's %lld", h, d,
                    (long long)img->tile[d], (long long)img->shape[d]);
        W_CHECK(img->quantize_method >= -1 && img->quantize_method <= 2, w, TF_EINVAL,
                "HDU %d: quantize_method %d is not -1 (NO_DITHER), 1 or 2 (SUBTRACTIVE_DITHER_1/2)",
                h, img->quantize_method);
        W_CHECK(img->dither_seed >= 0 && img->dither_seed <= 10000, w, TF_EINVAL,
                "HDU %d: dither_seed %d is not 0 (from the clock) to 10000", h, img->dither_seed);
        W_CHECK(isfinite(img->quantize_level), w, TF_EINVAL,
                "HDU %d: quantize_level is not finite", h);
        W_CHECK(!(img->set_quantize_level && img->quantize_level == 0.0f &&
                  wtypes[img->dtype].is_float && img->codec != TF_CODEC_GZIP_1 &&
                  img->codec != TF_CODEC_GZIP_2),
                w, TF_EINVAL, "HDU %d: quantize_level 0 (lossless floats) needs GZIP_1 or GZIP_2", h);
        W_CHECK(img->codec != TF_CODEC_HCOMPRESS_1 || img->quantize_method != 2 ||
                    !wtypes[img->dtype].is_float,
                w, TF_EINVAL, "HDU %d: HCOMPRESS_1 does not take SUBTRACTIVE_DITHER_2 "
                "(cfitsio would use SUBTRACTIVE_DITHER_1)", h);
        W_CHECK(img->codec != TF_CODEC_HCOMPRESS_1 || img->ndim >= 2, w, TF_EINVAL,
                "HDU %d: HCOMPRESS_1 needs an image of 2 or more axes", h);
    }
    return TF_OK;
}

int tf_writer_add_image(tf_writer *w, const tf_write_image *img, const tf_write_card *cards,
                        int ncards) {
    if (!w) return TF_EINVAL;
    W_CHECK(img, w, TF_EINVAL, "no image given");
    W_CHECK(!w->failed, w, TF_EINVAL, "an earlier error left this writer unusable");
    int rc = check_image(w, img, cards, ncards);
    if (rc) return rc;
    rc = ensure_open(w);
    if (rc) return rc;

    int st = 0;
    const int is_float = wtypes[img->dtype].is_float;
    if (img->codec && w->nhdu == 0) {
        fits_create_img(w->fp, BYTE_IMG, 0, NULL, &st);
        W_CFITSIO(st, w, "HDU 0: cannot write the empty primary HDU");
        drop_cfitsio_comments(w->fp);
        w->nhdu++;
    }
    if (img->codec) {
        rc = set_compression(w, img);
        if (rc) return rc;
    }
    long naxes[TF_MAX_DIMS];
    for (int d = 0; d < img->ndim; d++) naxes[d] = (long)img->shape[img->ndim - 1 - d];
    fits_create_img(w->fp, img->ndim ? wtypes[img->dtype].bitpix : BYTE_IMG, img->ndim,
                    naxes, &st);
    int st2 = 0;
    if (img->codec) fits_set_compression_type(w->fp, 0, &st2);
    W_CFITSIO(st, w, "HDU %d: cannot create the image", w->nhdu);
    if (w->nhdu == 0) drop_cfitsio_comments(w->fp);
    for (int i = 0; i < ncards; i++) {
        rc = write_card(w, i, &cards[i], is_float, img->codec != TF_CODEC_NONE);
        if (rc) {
            w->failed = 1;
            return rc;
        }
    }
    size_t n = img->ndim ? img->nbytes / wtypes[img->dtype].size : 0;
    if (n) {
        /* cfitsio's prototype is not const; it does not write to the data. */
        fits_write_img(w->fp, wtypes[img->dtype].datatype, 1, (LONGLONG)n, (void *)img->data,
                       &st);
        W_CFITSIO(st, w, "HDU %d: cannot write the data", w->nhdu);
    }
    w->nhdu++;
    return TF_OK;
}

/* ---- commit ---- */

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        size_t chunk = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
        ssize_t k = write(fd, p, chunk);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (k == 0) {
            errno = ENOSPC;
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* A temporary name beside the target: "<dir>/.<name>.tfw-<pid>-<n>". */
static int open_temp(const char *path, char *tmp, size_t tmplen) {
    static unsigned counter;
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    int dirlen = slash ? (int)(slash - path + 1) : 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    for (int attempt = 0; attempt < 100; attempt++) {
        unsigned n = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
        int len = snprintf(tmp, tmplen, "%.*s.%.200s.tfw-%ld-%lx-%u", dirlen, path, base,
                           (long)getpid(), (unsigned long)ts.tv_nsec, n);
        if (len < 0 || (size_t)len >= tmplen) {
            errno = ENAMETOOLONG;
            return -1;
        }
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST) return fd;
    }
    return -1;
}

static int fsync_dir(const char *path) {
    char *dir = dir_of(path);
    if (!dir) return -1;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static int put_on_disk(tf_writer *w, const char *data, size_t size) {
    char tmp[4096 + 256];
    int fd = open_temp(w->path, tmp, sizeof tmp);
    if (fd < 0)
        return wfail(w, errno == ENAMETOOLONG ? TF_EINVAL : TF_EOPEN, 0,
                     "cannot create a temporary file beside it: %s", strerror(errno));
    int err = 0;
    const char *step = "write";
    if (write_all(fd, data, size) != 0) {
        err = errno;
    } else if (fsync(fd) != 0) {
        err = errno;
        step = "fsync";
    }
    if (close(fd) != 0 && !err) {
        err = errno;
        step = "close";
    }
    if (!err) {
        if (w->overwrite) {
            if (rename(tmp, w->path) != 0) {
                err = errno;
                step = "rename";
            }
        } else if (link(tmp, w->path) == 0) {
            unlink(tmp);
        } else if (errno == EEXIST) {
            unlink(tmp);
            return wfail(w, TF_EOPEN, 0, "%s: the file appeared while writing and overwrite is False",
                         strerror(EEXIST));
        } else if (errno == EPERM || errno == ENOSYS || errno == EOPNOTSUPP) {
            /* A file system without hard links: check, then rename. */
            struct stat st;
            if (lstat(w->path, &st) == 0) {
                unlink(tmp);
                return wfail(w, TF_EOPEN, 0,
                             "%s: the file appeared while writing and overwrite is False",
                             strerror(EEXIST));
            }
            if (rename(tmp, w->path) != 0) {
                err = errno;
                step = "rename";
            }
        } else {
            err = errno;
            step = "link";
        }
    }
    if (err) {
        unlink(tmp);
        int code = (err == ENOSPC || err == EFBIG || err == EDQUOT || err == EIO) ? TF_EIO : TF_EOPEN;
        return wfail(w, code, 0, "%s failed: %s (nothing was written under this name)", step,
                     strerror(err));
    }
    fsync_dir(w->path);  /* best effort: the data itself is synced */
    return TF_OK;
}

int tf_writer_commit(tf_writer *w, int64_t *bytes) {
    if (!w) return TF_EINVAL;
    W_CHECK(!w->failed, w, TF_EINVAL, "an earlier error left this writer unusable");
    W_CHECK(w->path, w, TF_EINVAL, "no path");
    int rc;
    if (!w->fp) {
        /* No HDU added: an empty primary. */
        rc = ensure_open(w);
        if (rc) return rc;
        int st = 0;
        fits_create_img(w->fp, BYTE_IMG, 0, NULL, &st);
        W_CFITSIO(st, w, "HDU 0: cannot write the empty primary HDU");
        drop_cfitsio_comments(w->fp);
        w->nhdu = 1;
    }
    int st = 0;
    if (w->checksum) {
        for (int h = 1; h <= w->nhdu; h++) {
            fits_movabs_hdu(w->fp, h, NULL, &st);
            fits_write_chksum(w->fp, &st);
            W_CFITSIO(st, w, "HDU %d: cannot write CHECKSUM", h - 1);
        }
    }
    /* The flush closes the current HDU properly (a compressed image's heap
     * and PCOUNT are only final then), so that its end is the file's. */
    fits_flush_file(w->fp, &st);
    fits_movabs_hdu(w->fp, w->nhdu, NULL, &st);
    LONGLONG head = 0, data = 0, end = 0;
    fits_get_hduaddrll(w->fp, &head, &data, &end, &st);
    fits_close_file(w->fp, &st);
    w->fp = NULL;
    W_CFITSIO(st, w, "cannot finish the file in memory");
    W_CHECK(end > 0 && end % 2880 == 0 && (size_t)end <= w->bufsize, w, TF_EINVAL,
            "the file in memory has an unexpected size (%lld of %zu bytes)", (long long)end,
            w->bufsize);
    rc = put_on_disk(w, (const char *)w->buf, (size_t)end);
    if (rc) return rc;
    if (bytes) *bytes = (int64_t)end;
    w->failed = 1;  /* committed: nothing more can be added */
    return TF_OK;
}

/* ---- checksums ---- */

int tf_verify_checksums(const char *path, int *n, int *datasum, int *hdusum, int max,
                        char *errmsg, size_t errlen) {
    if (errlen) errmsg[0] = 0;
    if (!path || !n || max < 0 || (max && (!datasum || !hdusum))) {
        if (errlen) snprintf(errmsg, errlen, "bad arguments");
        return TF_EINVAL;
    }
    *n = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errlen) snprintf(errmsg, errlen, "%s: %s", path, strerror(errno));
        return TF_EOPEN;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        if (errlen) snprintf(errmsg, errlen, "%s: not a regular file", path);
        close(fd);
        return TF_EOPEN;
    }
    size_t size = (size_t)sb.st_size;
    void *buf = buf_realloc(NULL, size ? size : 1);
    if (!buf) {
        close(fd);
        if (errlen) snprintf(errmsg, errlen, "%s: out of memory", path);
        return TF_ENOMEM;
    }
    size_t got = 0;
    while (got < size) {
        ssize_t k = pread(fd, (char *)buf + got, size - got, (off_t)got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        got += (size_t)k;
    }
    close(fd);
    if (got != size) {
        buf_free(buf);
        if (errlen) snprintf(errmsg, errlen, "%s: read error", path);
        return TF_EIO;
    }
    fitsfile *fp = NULL;
    int st = 0;
    size_t bsize = size;
    fits_open_memfile(&fp, "verify", READONLY, &buf, &bsize, 0, NULL, &st);
    int nh = 0;
    if (st <= 0) fits_get_num_hdus(fp, &nh, &st);
    for (int h = 1; st <= 0 && h <= nh; h++) {
        int ds = 0, hs = 0;
        fits_movabs_hdu(fp, h, NULL, &st);
        fits_verify_chksum(fp, &ds, &hs, &st);
        if (st <= 0 && h - 1 < max) {
            datasum[h - 1] = ds;
            hdusum[h - 1] = hs;
        }
    }
    int rc = TF_OK;
    if (st > 0) {
        char text[FLEN_STATUS] = "";
        fits_get_errstatus(st, text);
        if (errlen) snprintf(errmsg, errlen, "%s: not readable as FITS (cfitsio status %d: %s)", path, st, text);
        fits_clear_errmsg();
        rc = TF_ECORRUPT;
    }
    int st2 = 0;
    if (fp) fits_close_file(fp, &st2);
    fits_clear_errmsg();
    buf_free(buf);
    *n = nh;
    return rc;
}

/* ---- binary tables ---- */

static const struct {
    char code;       /* TFORM letter */
    int datatype;    /* as fits_write_col takes it */
} wcols[TF_W_COUNT] = {
    [TF_W_UINT8] = {'B', TBYTE},   [TF_W_INT8] = {'S', TSBYTE},
    [TF_W_INT16] = {'I', TSHORT},  [TF_W_UINT16] = {'U', TUSHORT},
    [TF_W_INT32] = {'J', TINT},    [TF_W_UINT32] = {'V', TUINT},
    [TF_W_INT64] = {'K', TLONGLONG}, [TF_W_UINT64] = {'W', TULONGLONG},
    [TF_W_FLOAT32] = {'E', TFLOAT}, [TF_W_FLOAT64] = {'D', TDOUBLE},
};

static int check_column(tf_writer *w, int64_t nrows, int c, const tf_write_column *col,
                        int64_t *repeat) {
    int h = w->nhdu;
    const char *name = col->name ? col->name : "";
    W_CHECK(printable(name) && strlen(name) <= 68, w, TF_EINVAL,
            "HDU %d: column %d: name must be printable ASCII of at most 68 characters", h, c);
    W_CHECK(!col->unit || (printable(col->unit) && strlen(col->unit) <= 68), w, TF_EINVAL,
            "HDU %d: column '%s': unit must be printable ASCII of at most 68 characters", h, name);
    W_CHECK(col->kind >= TF_WCOL_NUMBER && col->kind <= TF_WCOL_STRING, w, TF_EINVAL,
            "HDU %d: column '%s': unknown kind", h, name);
    W_CHECK((unsigned)col->dtype < TF_W_COUNT, w, TF_EINVAL, "HDU %d: column '%s': unknown dtype",
            h, name);
    W_CHECK(col->kind == TF_WCOL_NUMBER || col->dtype == TF_W_UINT8, w, TF_EINVAL,
            "HDU %d: column '%s': bool and string columns are uint8", h, name);
    W_CHECK(col->ndim >= 0 && col->ndim < TF_MAX_DIMS, w, TF_EINVAL,
            "HDU %d: column '%s': too many axes", h, name);
    W_CHECK(col->kind != TF_WCOL_STRING || col->ndim >= 1, w, TF_EINVAL,
            "HDU %d: column '%s': a string column needs a width axis", h, name);
    int64_t rep = 1;
    for (int d = 0; d < col->ndim; d++) {
        W_CHECK(col->shape[d] >= 1 && col->shape[d] <= INT32_MAX / 16 && rep <= INT32_MAX / col->shape[d],
                w, TF_EINVAL, "HDU %d: column '%s': cell shape axis %d is %lld", h, name, d,
                (long long)col->shape[d]);
        rep *= col->shape[d];
    }
    size_t es = col->kind == TF_WCOL_NUMBER ? wtypes[col->dtype].size : 1;
    W_CHECK(nrows == 0 || (uint64_t)rep <= SIZE_MAX / es / (uint64_t)nrows, w, TF_EINVAL,
            "HDU %d: column '%s' is too large", h, name);
    W_CHECK(col->nbytes == (size_t)nrows * (size_t)rep * es, w, TF_EBUFSIZE,
            "HDU %d: column '%s' holds %zu bytes, %lld rows of its cells need %zu", h, name,
            col->nbytes, (long long)nrows, (size_t)nrows * (size_t)rep * es);
    W_CHECK(col->nbytes == 0 || col->data, w, TF_EINVAL, "HDU %d: column '%s': no data", h, name);
    *repeat = rep;
    return TF_OK;
}

int tf_writer_add_table(tf_writer *w, int64_t nrows, const tf_write_column *cols, int ncols,
                        const tf_write_card *cards, int ncards) {
    if (!w) return TF_EINVAL;
    W_CHECK(!w->failed, w, TF_EINVAL, "an earlier error left this writer unusable");
    W_CHECK(nrows >= 0, w, TF_EINVAL, "HDU %d: nrows is negative", w->nhdu);
    W_CHECK(ncols >= 0 && ncols <= 999 && (ncols == 0 || cols), w, TF_EINVAL,
            "HDU %d: a table has 0 to 999 columns, not %d", w->nhdu, ncols);
    W_CHECK(ncards >= 0 && (ncards == 0 || cards), w, TF_EINVAL, "HDU %d: bad header cards",
            w->nhdu);
    char (*tform)[32] = calloc((size_t)ncols + 1, sizeof *tform);
    char **ttype = calloc((size_t)ncols + 1, sizeof *ttype);
    char **tunit = calloc((size_t)ncols + 1, sizeof *tunit);
    int64_t *offset = calloc((size_t)ncols + 1, sizeof *offset);
    char **tformp = calloc((size_t)ncols + 1, sizeof *tformp);
    int rc = TF_OK;
    if (!tform || !ttype || !tunit || !offset || !tformp) {
        rc = wfail(w, TF_ENOMEM, 0, "out of memory");
        goto done;
    }
    for (int c = 0; c < ncols; c++) {
        int64_t rep = 0;
        rc = check_column(w, nrows, c, &cols[c], &rep);
        if (rc) goto done;
        char code = cols[c].kind == TF_WCOL_BOOL ? 'L'
                    : cols[c].kind == TF_WCOL_STRING ? 'A' : wcols[cols[c].dtype].code;
        snprintf(tform[c], sizeof tform[c], "%lld%c", (long long)rep, code);
        /* Where the column starts in a row: string cells are written as
         * bytes there (no C-string parsing, a NUL is kept). */
        offset[c + 1] = offset[c] + rep * (int64_t)(cols[c].kind == TF_WCOL_NUMBER
                                                     ? wtypes[cols[c].dtype].size : 1);
        tformp[c] = tform[c];
        ttype[c] = (char *)(cols[c].name ? cols[c].name : "");
        tunit[c] = (char *)(cols[c].unit ? cols[c].unit : "");
    }
    rc = ensure_open(w);
    if (rc) goto done;
    int st = 0;
    if (w->nhdu == 0) {
        fits_create_img(w->fp, BYTE_IMG, 0, NULL, &st);
        if (st > 0) {
            w->failed = 1;
            rc = wfail(w, TF_EINVAL, st, "HDU 0: cannot write the empty primary HDU");
            goto done;
        }
        drop_cfitsio_comments(w->fp);
        w->nhdu++;
    }
    fits_create_tbl(w->fp, BINARY_TBL, (LONGLONG)nrows, ncols, ttype, tformp, tunit, NULL,
                    &st);
    if (st > 0) {
        w->failed = 1;
        rc = wfail(w, TF_EINVAL, st, "HDU %d: cannot create the table", w->nhdu);
        goto done;
    }
    for (int c = 0; c < ncols && st <= 0; c++) {
        const tf_write_column *col = &cols[c];
        /* TDIM for cells of 2 or more axes (strings: beyond the width). */
        int cell_ndim = col->kind == TF_WCOL_STRING ? col->ndim : col->ndim;
        if (cell_ndim >= 2) {
            long dims[TF_MAX_DIMS];
            for (int d = 0; d < cell_ndim; d++) dims[d] = (long)col->shape[cell_ndim - 1 - d];
            fits_write_tdim(w->fp, c + 1, cell_ndim, dims, &st);
        }
        if (st > 0 || nrows == 0) continue;
        if (col->kind == TF_WCOL_STRING) {
            /* The characters as given, with no C-string parsing: a byte
             * column view of the same cells (the A column's bytes). */
            size_t width = col->nbytes / (size_t)nrows;
            for (int64_t r = 0; r < nrows && st <= 0; r++)
                fits_write_tblbytes(w->fp, (LONGLONG)r + 1, (LONGLONG)offset[c] + 1, (LONGLONG)width,
                                    (unsigned char *)col->data + (size_t)r * width, &st);
        } else if (col->kind == TF_WCOL_BOOL) {
            size_t n = col->nbytes;
            char *l = malloc(n ? n : 1);
            if (!l) {
                rc = wfail(w, TF_ENOMEM, 0, "out of memory");
                w->failed = 1;
                goto done;
            }
            for (size_t i = 0; i < n; i++) l[i] = ((const unsigned char *)col->data)[i] ? 1 : 0;
            fits_write_col_log(w->fp, c + 1, 1, 1, (LONGLONG)n, l, &st);
            free(l);
        } else {
            fits_write_col(w->fp, wcols[col->dtype].datatype, c + 1, 1, 1,
                           (LONGLONG)(col->nbytes / wtypes[col->dtype].size), (void *)col->data, &st);
        }
        if (st > 0) {
            w->failed = 1;
            rc = wfail(w, TF_EINVAL, st, "HDU %d: column '%s' could not be written", w->nhdu,
                       col->name ? col->name : "");
            goto done;
        }
    }
    if (st > 0) {
        w->failed = 1;
        rc = wfail(w, TF_EINVAL, st, "HDU %d: cannot write the table's TDIM", w->nhdu);
        goto done;
    }
    for (int i = 0; i < ncards; i++) {
        rc = write_card(w, i, &cards[i], 0, 0);
        if (rc) {
            w->failed = 1;
            goto done;
        }
    }
    w->nhdu++;
done:
    free(tform);
    free(ttype);
    free(tunit);
    free(offset);
    free(tformp);
    return rc;
}
