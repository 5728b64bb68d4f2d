/*
 * write.c - the writer: headers, tables and compressed images built in
 * memory by cfitsio, uncompressed image data stored straight from the
 * caller's buffer, then all put on disk safely.
 *
 * Why in memory: cfitsio writing a disk file in place leaves a half-written
 * file under the target's name when anything fails (a full disk, a bad card
 * in the third HDU, a crash), and it would have to be given the user's
 * path. Built with fits_create_memfile, the file exists only as parts
 * until tf_writer_commit, which writes them to a fresh temporary file in
 * the same directory, fsyncs it when asked, and renames (or links, without
 * overwrite) it into place: the target name holds either the old file or
 * the whole new one.
 *
 * Why not the data: cfitsio copies an image into its memory file through
 * its 2880-byte buffers, growing the file as it goes, and the commit then
 * copies it again. An uncompressed image instead gets a memory file of its
 * own for its header (cut out as a part, the memory file closed as if the
 * image had no data), and the commit swaps its values chunk by chunk from
 * the caller's buffer into the file. The bytes are cfitsio's: the tests
 * compare every dtype, with and without checksums, with a writer that
 * builds everything with cfitsio (TF_OPT_WRITE_CFITSIO).
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

#include "../common/convert.h"
#include "../common/internal.h"
#include "compress_tiles.h"

#define W_ERRLEN 1024

/* A piece of the file, in order: bytes (a finished memory file's HDUs, or
 * the header of a directly written image), then optionally an image's
 * data, stored from the caller's native values at commit. */
typedef struct wpart {
    void *buf;          /* owned: buf_free (a memory file's buffer) or free */
    int from_memfile;   /* buf came from buf_realloc */
    size_t off, len;    /* the bytes of buf to write */
    const void *data;   /* NULL, or native values (the caller's, not owned) */
    size_t nbytes;      /* of data; padded with zeros to 2880 */
    size_t elsize;
    int flip;           /* stored with the top bit flipped (BZERO types) */
} wpart;

struct tf_writer {
    fitsfile *fp;       /* the memory file being built; NULL when none */
    void *buf;          /* its bytes (owned through buf_realloc) */
    size_t bufsize;     /* what cfitsio believes the buffer holds */
    int mem_hdus;       /* HDUs in it, a placeholder primary included */
    int mem_skip;       /* 1: its first HDU is a placeholder primary, not
                           written (the HDUs after it are extensions) */
    wpart *parts;       /* finished pieces, in file order */
    int nparts, capparts;
    char *path;         /* the target, as given */
    int overwrite;
    int checksum;
    int sync;           /* fsync the file before the rename, the directory after */
    int via_cfitsio;    /* TF_OPT_WRITE_CFITSIO when created: every HDU
                           through cfitsio's memory file */
    int nhdu;           /* HDUs added (an automatic empty primary counts;
                           an appended file's old HDUs do not) */
    int failed;         /* a cfitsio error left the memory file unusable */
    /* Appending: the old file, open through the core's reader until the
     * commit copies its bytes; the new HDUs are all extensions (built
     * behind placeholder primaries). */
    tf_file *old;
    int64_t old_size;
    int old_hdus;
    struct stat old_st;
    char errmsg[W_ERRLEN];
};

/* The HDU being added, numbered as in the file on disk. */
#define HDU_NO(w) ((w)->nhdu + ((w)->old ? (w)->old_hdus : 0))
/* Whether the HDU being added is the file's primary. */
#define IS_PRIMARY(w) ((w)->nhdu == 0 && !(w)->old)

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

static int ensure_open(tf_writer *w);

/* Appending: open the old file through the core's reader, check that it is
 * plain FITS whose last HDU ends where the file ends, and start the memory
 * file with a placeholder primary behind which the new HDUs are built as
 * extensions. The old bytes are copied as they are at commit. */
/* The reader's message for the old file, without the path it begins
 * with (wfail puts the path first). */
static const char *old_errmsg(const tf_writer *w) {
    const char *m = tf_errmsg(w->old);
    size_t n = strlen(w->path);
    if (strncmp(m, w->path, n) == 0 && m[n] == ':' && m[n + 1] == ' ') m += n + 2;
    return m;
}

static int open_old(tf_writer *w) {
    tf_file *f = tf_create();
    if (!f) return wfail(w, TF_ENOMEM, 0, "out of memory");
    w->old = f;
    int n = 0, rc = tf_open(f, w->path);
    if (rc != TF_OK)
        return wfail(w, rc, 0, "cannot append to it: %s", old_errmsg(w));
    W_CHECK(f->plain, w, TF_EUNSUPPORTED,
            "cannot append to a compressed (gzip, compress) file; unpack it first");
    rc = tf_num_hdus(f, &n);
    if (rc != TF_OK)
        return wfail(w, rc, 0, "cannot append to it: %s", old_errmsg(w));
    W_CHECK(fstat(f->fd, &w->old_st) == 0, w, TF_EOPEN, "cannot stat it: %s", strerror(errno));
    rc = tf_need_fits(f);
    if (rc == TF_OK) rc = tf_move_to(f, n - 1, NULL);
    if (rc != TF_OK)
        return wfail(w, rc, 0, "cannot append to it: %s", old_errmsg(w));
    LONGLONG head = 0, data = 0, end = 0;
    int st = 0;
    fits_get_hduaddrll(f->fp, &head, &data, &end, &st);
    fits_clear_errmsg();
    W_CHECK(st == 0, w, TF_ECORRUPT, "cannot append to it: HDU %d cannot be located", n - 1);
    W_CHECK(end <= f->file_size, w, TF_ECORRUPT,
            "cannot append to it: its last HDU (%d) is truncated (it ends at byte %lld, the "
            "file at %lld)", n - 1, (long long)end, (long long)f->file_size);
    W_CHECK(end == f->file_size, w, TF_ECORRUPT,
            "cannot append to it: %lld bytes follow its last HDU (%d), which are not an HDU",
            (long long)(f->file_size - end), n - 1);
    w->old_size = f->file_size;
    w->old_hdus = n;
    return TF_OK;
}

int tf_writer_create(tf_writer **out, const char *path, int mode) {
    if (!out) return TF_EINVAL;
    tf_writer *w = calloc(1, sizeof *w);
    *out = w;
    if (!w) return TF_ENOMEM;
    W_CHECK(path && path[0], w, TF_EINVAL, "path is empty");
    w->path = strdup(path);
    if (!w->path) return TF_ENOMEM;
    W_CHECK(mode == TF_WRITE_NEW || mode == TF_WRITE_OVERWRITE || mode == TF_WRITE_APPEND, w,
            TF_EINVAL, "unknown write mode %d", mode);
    w->overwrite = mode == TF_WRITE_OVERWRITE;
    w->via_cfitsio = tf_get_option(TF_OPT_WRITE_CFITSIO) != 0;
    size_t len = strlen(path);
    W_CHECK(path[len - 1] != '/', w, TF_EINVAL, "path names a directory");

    struct stat st;
    int exists = stat(path, &st) == 0;
    if (exists) {
        W_CHECK(!S_ISDIR(st.st_mode), w, TF_EOPEN, "path is a directory (%s)", strerror(EISDIR));
        W_CHECK(mode != TF_WRITE_NEW, w, TF_EOPEN,
                "%s: the file is there and overwrite is False", strerror(EEXIST));
    }
    char *dir = dir_of(path);
    if (!dir) return wfail(w, TF_ENOMEM, 0, "out of memory");
    int rc = stat(dir, &st);
    int err = errno;
    free(dir);
    if (rc != 0) return wfail(w, TF_EOPEN, 0, "cannot write in its directory: %s", strerror(err));
    W_CHECK(S_ISDIR(st.st_mode), w, TF_EOPEN, "its directory is not a directory (%s)",
            strerror(ENOTDIR));
    if (exists && mode == TF_WRITE_APPEND) {
        /* A symbolic link: the file it names is the one appended to (the
         * rename would otherwise put a file in the link's place). */
        struct stat lst;
        if (lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode)) {
            char *real = realpath(path, NULL);
            if (!real) return wfail(w, TF_EOPEN, 0, "cannot resolve the link: %s", strerror(errno));
            free(w->path);
            w->path = real;
        }
        return open_old(w);
    }
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
    for (int i = 0; i < w->nparts; i++) {
        if (w->parts[i].from_memfile) buf_free(w->parts[i].buf);
        else free(w->parts[i].buf);
    }
    free(w->parts);
    tf_close(w->old);
    free(w->path);
    free(w);
}

int tf_writer_set_checksum(tf_writer *w, int on) {
    if (!w) return TF_EINVAL;
    /* A directly written image's checksum is made when it is added. */
    W_CHECK(w->nhdu == 0, w, TF_EINVAL, "set the checksum before adding HDUs");
    w->checksum = on != 0;
    return TF_OK;
}

int tf_writer_set_sync(tf_writer *w, int on) {
    if (!w) return TF_EINVAL;
    w->sync = on != 0;
    return TF_OK;
}

/* A memory file for the next HDUs. Unless the next HDU is the file's
 * primary, it starts with a placeholder primary (dropped when written) so
 * that they are built as extensions. */
static int ensure_open(tf_writer *w) {
    if (w->fp) return TF_OK;
    int st = 0;
    w->bufsize = 0;
    w->buf = buf_realloc(NULL, 2880);
    if (!w->buf) return wfail(w, TF_ENOMEM, 0, "out of memory");
    w->bufsize = 2880;
    w->mem_hdus = w->mem_skip = 0;
    fits_create_memfile(&w->fp, &w->buf, &w->bufsize, 2880, buf_realloc, &st);
    W_CFITSIO(st, w, "cannot create the file in memory");
    if (!IS_PRIMARY(w)) {
        fits_create_img(w->fp, BYTE_IMG, 0, NULL, &st);
        W_CFITSIO(st, w, "cannot start the new HDUs in memory");
        w->mem_hdus = w->mem_skip = 1;
    }
    return TF_OK;
}

static int push_part(tf_writer *w, const wpart *p) {
    if (w->nparts == w->capparts) {
        int cap = w->capparts ? 2 * w->capparts : 8;
        wpart *np = realloc(w->parts, (size_t)cap * sizeof *np);
        if (!np) return wfail(w, TF_ENOMEM, 0, "out of memory");
        w->parts = np;
        w->capparts = cap;
    }
    w->parts[w->nparts++] = *p;
    return TF_OK;
}

/* An HDU was added to the memory file. */
static void added(tf_writer *w) {
    w->nhdu++;
    w->mem_hdus++;
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
    W_CFITSIO(st, w, "HDU %d: the compression parameters were refused", HDU_NO(w));
    return TF_OK;
}

static int check_image(tf_writer *w, const tf_write_image *img, const tf_write_card *cards,
                       int ncards) {
    int h = HDU_NO(w);
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

/* Closes the memory file and keeps its new HDUs' bytes as a part: their
 * checksums first (cfitsio's own), then the flush that closes the last
 * HDU properly (a compressed image's heap and PCOUNT are only final then). */
static int finish_mem(tf_writer *w) {
    if (!w->fp) return TF_OK;
    int st = 0;
    if (w->mem_hdus == w->mem_skip) {
        /* Only a placeholder primary: nothing to write. */
        fits_close_file(w->fp, &st);
        fits_clear_errmsg();
        w->fp = NULL;
        buf_free(w->buf);
        w->buf = NULL;
        return TF_OK;
    }
    if (w->checksum) {
        for (int h = w->mem_skip + 1; h <= w->mem_hdus; h++) {
            fits_movabs_hdu(w->fp, h, NULL, &st);
            fits_write_chksum(w->fp, &st);
            W_CFITSIO(st, w, "HDU %d: cannot write CHECKSUM", HDU_NO(w) - 1 - (w->mem_hdus - h));
        }
    }
    fits_flush_file(w->fp, &st);
    fits_movabs_hdu(w->fp, w->mem_hdus, NULL, &st);
    LONGLONG head = 0, data = 0, end = 0, start = 0;
    fits_get_hduaddrll(w->fp, &head, &data, &end, &st);
    if (w->mem_skip) {
        /* The new HDUs start where the placeholder primary ends. */
        LONGLONG d1 = 0, e1 = 0;
        fits_movabs_hdu(w->fp, 2, NULL, &st);
        fits_get_hduaddrll(w->fp, &start, &d1, &e1, &st);
    }
    fits_close_file(w->fp, &st);
    w->fp = NULL;
    W_CFITSIO(st, w, "cannot finish the file in memory");
    W_CHECK(end > 0 && end % 2880 == 0 && (size_t)end <= w->bufsize, w, TF_EINVAL,
            "the file in memory has an unexpected size (%lld of %zu bytes)", (long long)end,
            w->bufsize);
    W_CHECK(start >= 0 && start % 2880 == 0 && start < end, w, TF_EINVAL,
            "the new HDUs in memory start at an unexpected byte (%lld)", (long long)start);
    wpart p = {.buf = w->buf, .from_memfile = 1, .off = (size_t)start,
               .len = (size_t)(end - start)};
    int rc = push_part(w, &p);
    if (rc == TF_OK) w->buf = NULL;  /* else freed with the writer */
    return rc;
}

static int is_offset_type(tf_wtype t) {
    return t == TF_W_INT8 || t == TF_W_UINT16 || t == TF_W_UINT32 || t == TF_W_UINT64;
}

/* The 1's complement sum of n native values as stored (big-endian, BZERO
 * types with the top bit flipped), the zero padding adding nothing; split
 * over threads for large images (sums of parts add up). */
typedef struct {
    const char *data;
    size_t nbytes, es;
    int flip;
    uint32_t sum;
} sum_job;

static void *sum_worker(void *arg) {
    sum_job *j = arg;
    enum { CHUNK = 64 << 10 };
    unsigned char tmp[CHUNK];
    uint32_t sum = 0;
    for (size_t off = 0; off < j->nbytes; off += CHUNK) {
        size_t take = j->nbytes - off < CHUNK ? j->nbytes - off : CHUNK;
        tf_store_be(j->data + off, tmp, take / j->es, j->es, j->flip);
        sum = tf_ones_sum(sum, tmp, take);
    }
    j->sum = sum;
    return NULL;
}

static uint32_t data_sum(const void *data, size_t nbytes, size_t es, int flip) {
    sum_job jobs[TF_MAX_THREADS];
    int n = tf_auto_threads(0);
    if ((size_t)n > nbytes / (4 << 20)) n = (int)(nbytes / (4 << 20));
    if (n < 1) n = 1;
    /* Parts of whole 64 KiB chunks (a multiple of 4 bytes and of es). */
    size_t per = (nbytes / (size_t)n + (64 << 10) - 1) / (64 << 10) * (64 << 10);
    int used = 0;
    for (size_t off = 0; off < nbytes && used < n; used++, off += per) {
        jobs[used] = (sum_job){(const char *)data + off, nbytes - off < per ? nbytes - off : per,
                               es, flip, 0};
    }
    tf_run_jobs(sum_worker, jobs, sizeof jobs[0], used);
    uint32_t sum = 0;
    for (int i = 0; i < used; i++) sum = tf_ones_add(sum, jobs[i].sum);
    return sum;
}

/* The header of an image whose data is stored directly: written by
 * cfitsio in its own memory file, with CHECKSUM and DATASUM as cfitsio's
 * fits_write_chksum makes them (same cards, same order, same comments; the
 * data's sum computed here from the caller's values), then kept as a part
 * followed by the data. The memory file is closed as an HDU without data,
 * so that cfitsio never fills the data it was not given. */
static int finish_direct(tf_writer *w, const tf_write_image *img) {
    int st = 0;
    const size_t es = wtypes[img->dtype].size;
    const int flip = is_offset_type(img->dtype);
    uint32_t dsum = 0;
    char chkcomm[FLEN_COMMENT], datacomm[FLEN_COMMENT];
    if (w->checksum) {
        dsum = data_sum(img->data, img->nbytes, es, flip);
        char datestr[32] = "";
        int timeref = 0;
        fits_get_system_time(datestr, &timeref, &st);
        snprintf(chkcomm, sizeof chkcomm, "HDU checksum updated %s", datestr);
        snprintf(datacomm, sizeof datacomm, "data unit checksum updated %s", datestr);
        fits_write_key_str(w->fp, "CHECKSUM", "0000000000000000", chkcomm, &st);
        fits_write_key_str(w->fp, "DATASUM", "         0", datacomm, &st);
    }
    fits_set_hdustruc(w->fp, &st);  /* END, and the header's final size */
    if (w->checksum && dsum != 0) {
        char v[32];
        snprintf(v, sizeof v, "%lu", (unsigned long)dsum);
        fits_modify_key_str(w->fp, "DATASUM", v, datacomm, &st);
    }
    fits_flush_buffer(w->fp, 0, &st);
    LONGLONG head = 0, data = 0, end = 0;
    fits_get_hduaddrll(w->fp, &head, &data, &end, &st);
    W_CFITSIO(st, w, "HDU %d: cannot write the header", HDU_NO(w));
    W_CHECK(head >= 0 && head % 2880 == 0 && data > head && data % 2880 == 0 &&
                (size_t)data <= w->bufsize,
            w, TF_EINVAL, "HDU %d: the header in memory has an unexpected size", HDU_NO(w));
    if (w->checksum) {
        uint32_t sum = tf_ones_sum(dsum, (const char *)w->buf + head, (size_t)(data - head));
        char chk[FLEN_VALUE];
        fits_encode_chksum(sum, 1, chk);
        fits_modify_key_str(w->fp, "CHECKSUM", chk, "&", &st);
        fits_flush_buffer(w->fp, 0, &st);
        W_CFITSIO(st, w, "HDU %d: cannot write CHECKSUM", HDU_NO(w));
    }
    size_t hlen = (size_t)(data - head);
    char *hdr = malloc(hlen);
    if (!hdr) return wfail(w, TF_ENOMEM, 0, "out of memory");
    memcpy(hdr, (const char *)w->buf + head, hlen);
    fits_modify_key_lng(w->fp, "NAXIS", 0, "&", &st);
    fits_set_hdustruc(w->fp, &st);
    fits_close_file(w->fp, &st);
    w->fp = NULL;
    buf_free(w->buf);
    w->buf = NULL;
    if (st > 0) free(hdr);
    W_CFITSIO(st, w, "HDU %d: cannot finish the header in memory", HDU_NO(w));
    wpart p = {.buf = hdr, .len = hlen, .data = img->data, .nbytes = img->nbytes, .elsize = es,
               .flip = flip};
    int rc = push_part(w, &p);
    if (rc) free(hdr);
    return rc;
}

/* Whether the n floats (doubles) at p hold a NaN. */
static int has_nan(const void *p, size_t n, int dbl) {
    if (dbl) {
        for (size_t i = 0; i < n; i++)
            if (isnan(((const double *)p)[i])) return 1;
    } else {
        for (size_t i = 0; i < n; i++)
            if (isnan(((const float *)p)[i])) return 1;
    }
    return 0;
}

/* Whether a compressed float image is quantized (cfitsio: quantize_level
 * 0 is lossless, GZIP only). */
static int quantized(const tf_write_image *img) {
    return wtypes[img->dtype].is_float && !(img->set_quantize_level && img->quantize_level == 0.0f);
}

/* A compressed image: its tiles compressed on every core
 * (compress_tiles.c), then given to cfitsio in tile order as
 * imcomp_compress_tile gives them (bytes, then ZSCALE and ZZERO; a tile
 * that could not be quantized in GZIP_COMPRESSED_DATA, added at the
 * first), then ZBLANK where NaN were written as nulls, as
 * fits_write_compressed_img adds it. The tile shape, Rice block size and
 * dither seed are read from the header cfitsio made. `dry`: compress
 * only, to refuse an HCOMPRESS_1 or PLIO_1 image that cfitsio's own
 * writer (option write_cfitsio) would write past its buffer for. */
static int write_tiles(tf_writer *w, const tf_write_image *img, int dry) {
    tf_wtiles t;
    memset(&t, 0, sizeof t);
    t.data = img->data;
    t.dtype = img->dtype;
    t.ndim = img->ndim;
    t.codec = img->codec;
    int st = 0;
    for (int d = 0; d < img->ndim; d++) {
        char key[FLEN_KEYWORD];
        long v = 0;
        snprintf(key, sizeof key, "ZTILE%d", img->ndim - d);
        fits_read_key_lng(w->fp, key, &v, NULL, &st);
        t.shape[d] = img->shape[d];
        t.tile[d] = v;
    }
    long blocksize = 0;
    if (img->codec == TF_CODEC_RICE_1) fits_read_key_lng(w->fp, "ZVAL1", &blocksize, NULL, &st);
    int col = 0, col_scale = 0, col_zero = 0;
    fits_get_colnum(w->fp, CASESEN, "COMPRESSED_DATA", &col, &st);
    t.quantize = quantized(img);
    if (t.quantize) {
        fits_get_colnum(w->fp, CASESEN, "ZSCALE", &col_scale, &st);
        fits_get_colnum(w->fp, CASESEN, "ZZERO", &col_zero, &st);
        t.qlevel = img->set_quantize_level ? img->quantize_level : 4.0f;
        t.dither = img->quantize_method ? img->quantize_method : 1;
        t.nulls = has_nan(img->data, img->nbytes / wtypes[img->dtype].size,
                          img->dtype == TF_W_FLOAT64);
        t.seed = img->dither_seed;
        if (t.dither != -1 && t.seed == 0 && dry) {
            t.seed = 1;
        } else if (t.dither != -1 && t.seed == 0 && st <= 0) {
            /* cfitsio's seed from the clock (imcomp_convert_tile_tfloat) */
            int hdunum = 1;
            fits_get_hdu_num(w->fp, &hdunum);
            t.seed = (((int)time(NULL) + ((int)clock() / (int)(CLOCKS_PER_SEC / 100)) +
                       hdunum - 1) % 10000) + 1;
            fits_update_key(w->fp, TINT, "ZDITHER0", &t.seed, NULL, &st);
        }
    }
    W_CFITSIO(st, w, "HDU %d: cannot read back the tiling cfitsio chose", HDU_NO(w));
    t.blocksize = (int)blocksize;
    t.hcomp_scale = img->hcomp_scale;
    int rc = tf_wtiles_compress(&t);
    if (dry) {
        int over = atomic_load(&t.cfitsio_overrun);
        tf_wtiles_free(&t);
        if (rc == TF_ENOMEM) return wfail(w, TF_ENOMEM, 0, "out of memory");
        W_CHECK(!over, w, TF_EUNSUPPORTED,
                "HDU %d: cfitsio's %s writer would write past its buffer for this "
                "image (option write_cfitsio)", HDU_NO(w),
                img->codec == TF_CODEC_PLIO_1 ? "PLIO_1" : "HCOMPRESS_1");
        return TF_OK;
    }
    int gzip_col = 0;
    for (int64_t k = 0; rc == TF_OK && k < t.ntiles && st <= 0; k++) {
        LONGLONG row = (LONGLONG)k + 1;
        if (t.raw[k]) {
            if (!gzip_col) {
                fits_insert_col(w->fp, 999, "GZIP_COMPRESSED_DATA", "1PB", &st);
                fits_get_colnum(w->fp, CASEINSEN, "GZIP_COMPRESSED_DATA", &gzip_col, &st);
            }
            fits_write_col_byt(w->fp, gzip_col, row, 1, (LONGLONG)t.lens[k], t.bytes[k], &st);
            continue;
        }
        if (img->codec == TF_CODEC_PLIO_1)
            fits_write_col_sht(w->fp, col, row, 1, (LONGLONG)(t.lens[k] / sizeof(short)),
                               (short *)t.bytes[k], &st);
        else
            fits_write_col_byt(w->fp, col, row, 1, (LONGLONG)t.lens[k], t.bytes[k], &st);
        if (t.quantize) {
            fits_write_col_dbl(w->fp, col_scale, row, 1, 1, &t.zscale[k], &st);
            fits_write_col_dbl(w->fp, col_zero, row, 1, 1, &t.zzero[k], &st);
        }
    }
    if (rc == TF_OK && t.nulls && st <= 0) {
        char card[FLEN_CARD];
        int tst = 0;
        fits_read_card(w->fp, "ZBLANK", card, &tst);
        if (tst) {
            fits_read_card(w->fp, "ZCMPTYPE", card, &st);
            fits_insert_key_lng(w->fp, "ZBLANK", -2147483647 /* COMPRESS_NULL_VALUE */,
                                "null value in the compressed integer array", &st);
        }
        fits_clear_errmsg();
    }
    int64_t bad = t.failed_tile;
    const char *why = t.failed_why;
    tf_wtiles_free(&t);
    if (rc == TF_ENOMEM) return wfail(w, TF_ENOMEM, 0, "out of memory");
    W_CHECK(rc == TF_OK, w, rc, "HDU %d: tile %lld could not be compressed%s%s", HDU_NO(w),
            (long long)bad, why ? ": " : "", why ? why : "");
    W_CFITSIO(st, w, "HDU %d: cannot write the data", HDU_NO(w));
    return TF_OK;
}

/* The image's data through cfitsio's own writer (option write_cfitsio):
 * a quantized float image with NaN as fpack writes it, the NaN given as
 * nulls (FLOATNULLVALUE / DOUBLENULLVALUE) to fits_write_imgnull. */
static int write_cfitsio_data(tf_writer *w, const tf_write_image *img, size_t n) {
    int st = 0;
    if (img->codec == TF_CODEC_HCOMPRESS_1 || img->codec == TF_CODEC_PLIO_1) {
        int rc = write_tiles(w, img, 1);
        if (rc) return rc;
    }
    const int dbl = img->dtype == TF_W_FLOAT64;
    if (img->codec && quantized(img) && has_nan(img->data, n, dbl)) {
        void *copy = malloc(img->nbytes);
        if (!copy) return wfail(w, TF_ENOMEM, 0, "out of memory");
        memcpy(copy, img->data, img->nbytes);
        tf_wtiles_nan_to_null(copy, n, dbl);
        double dnull = DOUBLENULLVALUE;
        float fnull = FLOATNULLVALUE;
        fits_write_imgnull(w->fp, dbl ? TDOUBLE : TFLOAT, 1, (LONGLONG)n, copy,
                           dbl ? (void *)&dnull : (void *)&fnull, &st);
        free(copy);
    } else {
        /* cfitsio's prototype is not const; it does not write to the data. */
        fits_write_img(w->fp, wtypes[img->dtype].datatype, 1, (LONGLONG)n, (void *)img->data,
                       &st);
    }
    W_CFITSIO(st, w, "HDU %d: cannot write the data", HDU_NO(w));
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
    size_t n = img->ndim ? img->nbytes / wtypes[img->dtype].size : 0;
    /* Uncompressed data is not copied into the memory file: the image gets
     * a memory file of its own for its header, and its data is stored
     * straight from the caller's buffer at commit. */
    const int direct = !img->codec && n && !w->via_cfitsio;
    if (direct) {
        rc = finish_mem(w);
        if (rc) return rc;
        rc = ensure_open(w);
        if (rc) return rc;
    }
    if (img->codec && IS_PRIMARY(w)) {
        fits_create_img(w->fp, BYTE_IMG, 0, NULL, &st);
        W_CFITSIO(st, w, "HDU 0: cannot write the empty primary HDU");
        drop_cfitsio_comments(w->fp);
        added(w);
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
    W_CFITSIO(st, w, "HDU %d: cannot create the image", HDU_NO(w));
    if (IS_PRIMARY(w)) drop_cfitsio_comments(w->fp);
    for (int i = 0; i < ncards; i++) {
        rc = write_card(w, i, &cards[i], is_float, img->codec != TF_CODEC_NONE);
        if (rc) {
            w->failed = 1;
            return rc;
        }
    }
    if (direct) {
        rc = finish_direct(w, img);
        if (rc) return rc;
        w->nhdu++;
        return TF_OK;
    }
    if (n && img->codec && !w->via_cfitsio) {
        rc = write_tiles(w, img, 0);
        if (rc) {
            w->failed = 1;
            return rc;
        }
    } else if (n) {
        rc = write_cfitsio_data(w, img, n);
        if (rc) return rc;
    }
    added(w);
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

/* Appending: the old file's bytes, read through the core's reader, into
 * fd. TF_OK, or a failure with errno in *err (0: the old file shrank). */
static int copy_old(tf_writer *w, int fd, int *err) {
    enum { CHUNK = 8 << 20 };
    size_t cap = w->old_size < CHUNK ? (size_t)w->old_size : CHUNK;
    char *chunk = malloc(cap ? cap : 1);
    if (!chunk) {
        *err = ENOMEM;
        return TF_ENOMEM;
    }
    int rc = TF_OK;
    for (int64_t off = 0; off < w->old_size && rc == TF_OK; off += (int64_t)cap) {
        size_t n = w->old_size - off < (int64_t)cap ? (size_t)(w->old_size - off) : cap;
        rc = tf_source_read(&w->old->src, chunk, n, off, err);
        if (rc == TF_OK && write_all(fd, chunk, n) != 0) {
            *err = errno;
            rc = TF_EIO;
        }
    }
    free(chunk);
    return rc;
}

/* Whether the file at the path is still the one opened for appending. */
static int old_unchanged(const tf_writer *w) {
    struct stat now;
    if (stat(w->path, &now) != 0) return 0;
    const struct stat *was = &w->old_st;
    return now.st_dev == was->st_dev && now.st_ino == was->st_ino &&
           now.st_size == was->st_size && now.st_mtim.tv_sec == was->st_mtim.tv_sec &&
           now.st_mtim.tv_nsec == was->st_mtim.tv_nsec;
}

/* Puts the finished temporary file in the target's place, atomically: a
 * reader sees the old file or the new one. Without sync, an existing
 * target is exchanged with it (renameat2 RENAME_EXCHANGE) and the old file,
 * now under the temporary name, unlinked: a plain rename over a file makes
 * ext4 start writing the new file out then and there (its auto_da_alloc
 * heuristic, for programs that replace files without fsync), about 30 ms
 * per 64 MiB, and that durability is what sync asks for. With sync, or
 * where the exchange is not available (no target, another file system,
 * an old kernel), rename. 0, or -1 with errno. */
static int replace_target(const char *tmp, const char *path, int sync) {
#ifdef RENAME_EXCHANGE
    if (!sync && renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_EXCHANGE) == 0) {
        if (unlink(tmp) == 0) return 0;
        /* Not a file there (a directory made meanwhile): put it back, and
         * fail as rename would. */
        int err = errno;
        (void)renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_EXCHANGE);
        errno = err;
        return -1;
    }
#endif
    return rename(tmp, path);
}

/* An image's data, stored (swapped, BZERO types flipped) chunk by chunk
 * into `chunk` and written, then the zeros up to its last 2880-byte block.
 * 0, or -1 with errno. */
static int write_data(int fd, const wpart *p, char *chunk, size_t cap) {
    cap -= cap % p->elsize;
    for (size_t off = 0; off < p->nbytes;) {
        size_t take = p->nbytes - off < cap ? p->nbytes - off : cap;
        tf_store_be((const char *)p->data + off, chunk, take / p->elsize, p->elsize, p->flip);
        if (write_all(fd, chunk, take) != 0) return -1;
        off += take;
    }
    size_t pad = (2880 - p->nbytes % 2880) % 2880;
    memset(chunk, 0, pad);
    return write_all(fd, chunk, pad);
}

/* The parts, in order. 0, or -1 with errno. */
static int write_parts(tf_writer *w, int fd, int64_t *total) {
    enum { CHUNK = 1 << 20 };
    char *chunk = NULL;
    int rc = 0;
    *total = 0;
    for (int i = 0; i < w->nparts && rc == 0; i++) {
        const wpart *p = &w->parts[i];
        rc = write_all(fd, (const char *)p->buf + p->off, p->len);
        *total += (int64_t)p->len;
        if (rc == 0 && p->data) {
            if (!chunk && !(chunk = malloc(CHUNK))) {
                errno = ENOMEM;
                rc = -1;
                break;
            }
            rc = write_data(fd, p, chunk, CHUNK);
            *total += (int64_t)((p->nbytes + 2879) / 2880 * 2880);
        }
    }
    int err = errno;
    free(chunk);
    errno = err;
    return rc;
}

static int put_on_disk(tf_writer *w, int64_t *total) {
    char tmp[4096 + 256];
    int fd = open_temp(w->path, tmp, sizeof tmp);
    if (fd < 0)
        return wfail(w, errno == ENAMETOOLONG ? TF_EINVAL : TF_EOPEN, 0,
                     "cannot create a temporary file beside it: %s", strerror(errno));
    int err = 0;
    const char *step = "write";
    if (w->old) {
        /* The new file keeps the old one's permission bits. */
        (void)fchmod(fd, w->old_st.st_mode & 07777);
        int rc = copy_old(w, fd, &err);
        if (rc != TF_OK) {
            close(fd);
            unlink(tmp);
            if (rc == TF_ECORRUPT)
                return wfail(w, TF_EOPEN, 0, "the file shrank while appending (nothing was "
                             "changed)");
            return wfail(w, rc == TF_ENOMEM ? TF_ENOMEM : TF_EIO, 0,
                         "cannot copy its bytes: %s (nothing was changed)", strerror(err));
        }
    }
    if (write_parts(w, fd, total) != 0) {
        err = errno;
    } else if (w->sync && fsync(fd) != 0) {
        err = errno;
        step = "fsync";
    }
    if (close(fd) != 0 && !err) {
        err = errno;
        step = "close";
    }
    if (!err && w->old && !old_unchanged(w)) {
        unlink(tmp);
        return wfail(w, TF_EOPEN, 0, "the file changed while appending (another writer?); "
                     "nothing was changed by this one");
    }
    if (!err) {
        if (w->overwrite || w->old) {
            if (replace_target(tmp, w->path, w->sync) != 0) {
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
        if (err == ENOMEM) return wfail(w, TF_ENOMEM, 0, "out of memory (nothing was written "
                                        "under this name)");
        int code = (err == ENOSPC || err == EFBIG || err == EDQUOT || err == EIO) ? TF_EIO : TF_EOPEN;
        return wfail(w, code, 0, "%s failed: %s (nothing was written under this name)", step,
                     strerror(err));
    }
    if (w->sync) fsync_dir(w->path);  /* best effort: the data itself is synced */
    return TF_OK;
}

int tf_writer_commit(tf_writer *w, int64_t *bytes) {
    if (!w) return TF_EINVAL;
    W_CHECK(!w->failed, w, TF_EINVAL, "an earlier error left this writer unusable");
    W_CHECK(w->path, w, TF_EINVAL, "no path");
    int rc;
    W_CHECK(!w->old || w->nhdu >= 1, w, TF_EINVAL, "append: no HDU was given");
    if (w->nhdu == 0) {
        /* No HDU added: an empty primary. */
        rc = ensure_open(w);
        if (rc) return rc;
        int st = 0;
        fits_create_img(w->fp, BYTE_IMG, 0, NULL, &st);
        W_CFITSIO(st, w, "HDU 0: cannot write the empty primary HDU");
        drop_cfitsio_comments(w->fp);
        added(w);
    }
    rc = finish_mem(w);
    if (rc) return rc;
    int64_t total = 0;
    rc = put_on_disk(w, &total);
    if (rc) return rc;
    if (bytes) *bytes = total + (w->old ? w->old_size : 0);
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
    /* Opened as every read opens a file (io/): cfitsio reads the bytes
     * through the core's driver, a gzip file unpacked in memory. */
    tf_file *f = tf_create();
    if (!f) {
        if (errlen) snprintf(errmsg, errlen, "%s: out of memory", path);
        return TF_ENOMEM;
    }
    int nh = 0;
    int rc = tf_open(f, path);
    if (rc == TF_OK) rc = tf_num_hdus(f, &nh);
    if (rc == TF_OK) rc = tf_need_fits(f);
    if (rc != TF_OK) {
        if (errlen) snprintf(errmsg, errlen, "%s", tf_errmsg(f));
        tf_close(f);
        return rc;
    }
    int st = 0, h = 0;
    for (; h < nh; h++) {
        int ds = 0, hs = 0;
        rc = tf_move_to(f, h, NULL); /* tf_move_to: a header cfitsio parsed again after a walk */
        if (rc != TF_OK) {
            if (errlen) snprintf(errmsg, errlen, "%s", tf_errmsg(f));
            tf_close(f);
            return rc;
        }
        fits_verify_chksum(f->fp, &ds, &hs, &st);
        if (st > 0) break;
        if (h < max) {
            datasum[h] = ds;
            hdusum[h] = hs;
        }
    }
    if (st > 0) {
        char text[FLEN_STATUS] = "";
        fits_get_errstatus(st, text);
        if (errlen)
            snprintf(errmsg, errlen, "%s: HDU %d: cannot verify its checksums (cfitsio status %d: %s)",
                     path, h, st, text);
        rc = st == READ_ERROR ? TF_EIO : st == MEMORY_ALLOCATION ? TF_ENOMEM : TF_ECORRUPT;
    }
    fits_clear_errmsg();
    tf_close(f);
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
    int h = HDU_NO(w);
    const char *name = col->name ? col->name : "";
    W_CHECK(printable(name) && strlen(name) <= 68, w, TF_EINVAL,
            "HDU %d: column %d: name must be printable ASCII of at most 68 characters", h, c);
    W_CHECK(!col->unit || (printable(col->unit) && strlen(col->unit) <= 68), w, TF_EINVAL,
            "HDU %d: column '%s': unit must be printable ASCII of at most 68 characters", h, name);
    W_CHECK(col->kind >= TF_WCOL_NUMBER && col->kind <= TF_WCOL_VARLEN, w, TF_EINVAL,
            "HDU %d: column '%s': unknown kind", h, name);
    W_CHECK((unsigned)col->dtype < TF_W_COUNT, w, TF_EINVAL, "HDU %d: column '%s': unknown dtype",
            h, name);
    W_CHECK(col->kind == TF_WCOL_NUMBER || col->kind == TF_WCOL_VARLEN ||
                col->dtype == TF_W_UINT8,
            w, TF_EINVAL, "HDU %d: column '%s': bool and string columns are uint8", h, name);
    const tf_wtype dt = col->dtype;
    const int fixed_zero = dt == TF_W_INT8 || dt == TF_W_UINT16 || dt == TF_W_UINT32 ||
                           dt == TF_W_UINT64;
    W_CHECK(!(col->has_tscal || col->has_tzero || col->has_tnull) || col->kind == TF_WCOL_NUMBER,
            w, TF_EINVAL, "HDU %d: column '%s': TSCAL, TZERO and TNULL are for numeric columns, "
            "not bool, string or variable-length ones", h, name);
    W_CHECK(!(col->has_tscal || col->has_tzero) || !fixed_zero, w, TF_EINVAL,
            "HDU %d: column '%s': its dtype is stored with the TZERO FITS fixes for it; write "
            "the stored type (int16 for uint16...) to give TSCAL or TZERO", h, name);
    W_CHECK(!col->has_tscal || (isfinite(col->tscal) && col->tscal != 0.0), w, TF_EINVAL,
            "HDU %d: column '%s': TSCAL must be finite and not 0", h, name);
    W_CHECK(!col->has_tzero || isfinite(col->tzero), w, TF_EINVAL,
            "HDU %d: column '%s': TZERO must be finite", h, name);
    if (col->has_tnull) {
        static const struct { int64_t lo, hi; } range[TF_W_COUNT] = {
            [TF_W_UINT8] = {0, 255},           [TF_W_INT8] = {-128, 127},
            [TF_W_INT16] = {INT16_MIN, INT16_MAX}, [TF_W_UINT16] = {0, UINT16_MAX},
            [TF_W_INT32] = {INT32_MIN, INT32_MAX}, [TF_W_UINT32] = {0, UINT32_MAX},
            [TF_W_INT64] = {INT64_MIN, INT64_MAX}, [TF_W_UINT64] = {0, INT64_MAX},
        };
        W_CHECK(!wtypes[dt].is_float, w, TF_EINVAL,
                "HDU %d: column '%s': TNULL is for integer columns (floats use NaN)", h, name);
        W_CHECK(col->tnull >= range[dt].lo && col->tnull <= range[dt].hi, w, TF_EINVAL,
                "HDU %d: column '%s': TNULL %lld is outside the column's dtype", h, name,
                (long long)col->tnull);
    }
    if (col->kind == TF_WCOL_VARLEN) {
        W_CHECK(dt == TF_W_UINT8 || dt == TF_W_INT16 || dt == TF_W_INT32 || dt == TF_W_INT64 ||
                    dt == TF_W_FLOAT32 || dt == TF_W_FLOAT64,
                w, TF_EUNSUPPORTED, "HDU %d: column '%s': a variable-length column holds uint8, "
                "int16, int32, int64, float32 or float64", h, name);
        W_CHECK(col->ndim == 0, w, TF_EINVAL,
                "HDU %d: column '%s': a variable-length column's elements are scalars", h, name);
        W_CHECK(col->offsets, w, TF_EINVAL, "HDU %d: column '%s': no offsets", h, name);
        size_t es = wtypes[dt].size;
        W_CHECK(col->nbytes % es == 0 && (col->nbytes == 0 || col->data), w, TF_EBUFSIZE,
                "HDU %d: column '%s': values hold %zu bytes, not whole elements", h, name,
                col->nbytes);
        int64_t count = (int64_t)(col->nbytes / es);
        W_CHECK(col->offsets[0] == 0, w, TF_EINVAL,
                "HDU %d: column '%s': offsets[0] is %lld, not 0", h, name,
                (long long)col->offsets[0]);
        for (int64_t r = 0; r < nrows; r++)
            W_CHECK(col->offsets[r + 1] >= col->offsets[r], w, TF_EINVAL,
                    "HDU %d: column '%s': offsets decrease at row %lld", h, name, (long long)r);
        W_CHECK(col->offsets[nrows] == count, w, TF_EINVAL,
                "HDU %d: column '%s': offsets end at %lld, the values hold %lld elements", h,
                name, (long long)col->offsets[nrows], (long long)count);
        *repeat = 1;
        return TF_OK;
    }
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
    W_CHECK(nrows >= 0, w, TF_EINVAL, "HDU %d: nrows is negative", HDU_NO(w));
    W_CHECK(ncols >= 0 && ncols <= 999 && (ncols == 0 || cols), w, TF_EINVAL,
            "HDU %d: a table has 0 to 999 columns, not %d", HDU_NO(w), ncols);
    W_CHECK(ncards >= 0 && (ncards == 0 || cards), w, TF_EINVAL, "HDU %d: bad header cards",
            HDU_NO(w));
    char (*tform)[32] = calloc((size_t)ncols + 1, sizeof *tform);
    char **ttype = calloc((size_t)ncols + 1, sizeof *ttype);
    char **tunit = calloc((size_t)ncols + 1, sizeof *tunit);
    int64_t *offset = calloc((size_t)ncols + 1, sizeof *offset);
    char **tformp = calloc((size_t)ncols + 1, sizeof *tformp);
    int rc = TF_OK;
    size_t heap = 0;
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
        if (cols[c].kind == TF_WCOL_VARLEN) {
            /* P descriptors hold 32-bit counts and heap offsets; Q 64-bit. */
            int64_t longest = 0;
            for (int64_t r = 0; r < nrows; r++)
                if (cols[c].offsets[r + 1] - cols[c].offsets[r] > longest)
                    longest = cols[c].offsets[r + 1] - cols[c].offsets[r];
            heap += cols[c].nbytes;
            int q = heap > (size_t)INT32_MAX;
            snprintf(tform[c], sizeof tform[c], "1%c%c(%lld)", q ? 'Q' : 'P', code,
                     (long long)longest);
            offset[c + 1] = offset[c] + (q ? 16 : 8);
        } else {
            snprintf(tform[c], sizeof tform[c], "%lld%c", (long long)rep, code);
            /* Where the column starts in a row: string cells are written
             * as bytes there (no C-string parsing, a NUL is kept). */
            offset[c + 1] = offset[c] + rep * (int64_t)(cols[c].kind == TF_WCOL_NUMBER
                                                         ? wtypes[cols[c].dtype].size : 1);
        }
        tformp[c] = tform[c];
        ttype[c] = (char *)(cols[c].name ? cols[c].name : "");
        tunit[c] = (char *)(cols[c].unit ? cols[c].unit : "");
    }
    rc = ensure_open(w);
    if (rc) goto done;
    int st = 0;
    if (IS_PRIMARY(w)) {
        fits_create_img(w->fp, BYTE_IMG, 0, NULL, &st);
        if (st > 0) {
            w->failed = 1;
            rc = wfail(w, TF_EINVAL, st, "HDU 0: cannot write the empty primary HDU");
            goto done;
        }
        drop_cfitsio_comments(w->fp);
        added(w);
    }
    fits_create_tbl(w->fp, BINARY_TBL, (LONGLONG)nrows, ncols, ttype, tformp, tunit, NULL,
                    &st);
    if (st > 0) {
        w->failed = 1;
        rc = wfail(w, TF_EINVAL, st, "HDU %d: cannot create the table", HDU_NO(w));
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
        if (col->kind == TF_WCOL_VARLEN) {
            size_t es = wtypes[col->dtype].size;
            for (int64_t r = 0; r < nrows && st <= 0; r++) {
                int64_t len = col->offsets[r + 1] - col->offsets[r];
                if (len == 0) continue; /* the zeroed descriptor: no elements */
                fits_write_col(w->fp, wcols[col->dtype].datatype, c + 1, (LONGLONG)r + 1, 1,
                               (LONGLONG)len,
                               (char *)col->data + (size_t)col->offsets[r] * es, &st);
            }
        } else if (col->kind == TF_WCOL_STRING) {
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
            rc = wfail(w, TF_EINVAL, st, "HDU %d: column '%s' could not be written", HDU_NO(w),
                       col->name ? col->name : "");
            goto done;
        }
    }
    if (st > 0) {
        w->failed = 1;
        rc = wfail(w, TF_EINVAL, st, "HDU %d: cannot write the table's TDIM", HDU_NO(w));
        goto done;
    }
    /* TSCALn, TZEROn, TNULLn as asked, after the data: cfitsio has written
     * the values unscaled (it applies TSCAL/TZERO from the header it last
     * parsed), as the stored values they are. */
    for (int c = 0; c < ncols && st <= 0; c++) {
        const tf_write_column *col = &cols[c];
        char key[FLEN_KEYWORD];
        if (col->has_tscal) {
            snprintf(key, sizeof key, "TSCAL%d", c + 1);
            fits_write_key_dbl(w->fp, key, col->tscal, -15, "data are scaled: stored * TSCAL + TZERO", &st);
        }
        if (col->has_tzero) {
            snprintf(key, sizeof key, "TZERO%d", c + 1);
            fits_write_key_dbl(w->fp, key, col->tzero, -15, NULL, &st);
        }
        if (col->has_tnull) {
            /* In the stored domain: the dtype's fixed TZERO taken off. */
            int64_t stored = col->tnull;
            if (col->dtype == TF_W_INT8) stored += 128;
            else if (col->dtype == TF_W_UINT16) stored -= 32768;
            else if (col->dtype == TF_W_UINT32) stored -= 2147483648LL;
            else if (col->dtype == TF_W_UINT64) stored = (int64_t)((uint64_t)stored ^ (1ULL << 63));
            snprintf(key, sizeof key, "TNULL%d", c + 1);
            fits_write_key_lng(w->fp, key, (LONGLONG)stored, "the stored value of a null", &st);
        }
    }
    if (st > 0) {
        w->failed = 1;
        rc = wfail(w, TF_EINVAL, st, "HDU %d: cannot write TSCAL, TZERO or TNULL", HDU_NO(w));
        goto done;
    }
    for (int i = 0; i < ncards; i++) {
        rc = write_card(w, i, &cards[i], 0, 0);
        if (rc) {
            w->failed = 1;
            goto done;
        }
    }
    added(w);
done:
    free(tform);
    free(ttype);
    free(tunit);
    free(offset);
    free(tformp);
    return rc;
}
