/*
 * file.c - opening files, moving between HDUs, describing HDUs.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../common/internal.h"

tf_file *tf_create(void) {
    tf_file *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->fd = -1;
    f->num_hdus = -1;
    f->err_hdu = -1;
    f->map_slot = -1;
    return f;
}

void tf_free_cards(tf_file *f) {
    free(f->cards);
    free(f->card_text);
    f->cards = NULL;
    f->card_text = NULL;
    f->ncards = 0;
}

/* cfitsio's memory driver copied whole 2880-byte records past the end of
 * a file that stops inside its last record's span; our driver reads
 * nothing past the end, but the zeroed guard stays for any reader of
 * membuf that rounds up to a record. */
#define MEMFILE_GUARD (2 * 2880)

void tf_close(tf_file *f) {
    if (!f) return;
    if (f->fp) {
        int st = 0;
        fits_close_file(f->fp, &st);
    }
    tf_unmap_file(f);
    if (f->fd >= 0) close(f->fd);
    tf_remote_close(f->remote); /* after fits_close_file, which reads it until then */
    tf_membuf_free(f->membuf); /* after fits_close_file, which reads it until then */
    tf_free_cards(f);
    free(f->col_text);
    free(f->errmsg);
    free(f->skipped);
    free(f->path);
    free(f);
}

/* Plain files up to this size are read whole and parsed from memory. */
#define MEMFILE_MAX_BYTES (64 * 1024)
/* Bytes of a larger file read for the fast open of its primary header. */
#define FAST_HEAD_BYTES (4 * 2880)

/* Open the object at a URL for f: f->src reads it by ranges, or from
 * memory where the server sent it whole. The path kept for messages is
 * the URL without its secrets. */
static int open_remote(tf_file *f, const char *url) {
    char *shown = tf_url_shown(url);
    if (!shown) return TF_ENOMEM;
    free(f->path);
    f->path = shown;
    char msg[512], *whole = NULL;
    int64_t len = 0;
    int rc = tf_remote_open(url, &f->remote, &f->src, &whole, &len, msg, sizeof msg);
    if (rc != TF_OK) return tf_fail(f, rc, 0, "%s", msg[0] ? msg : "out of memory");
    if (whole) {
        memset(whole + len, 0, TF_REMOTE_GUARD);
        f->membuf = whole;
        f->membuf_size = (size_t)len;
        tf_source_memory(&f->src, whole, (size_t)len);
        tf_remote_close(f->remote);
        f->remote = NULL;
    }
    f->file_size = f->src.size;
    return TF_OK;
}

int tf_remote_confirm(tf_file *f) {
    if (!f || !f->remote) return TF_OK;
    char msg[512];
    int rc = tf_remote_check(f->remote, msg, sizeof msg);
    return rc == TF_OK ? TF_OK : tf_fail(f, rc, 0, "%s", msg[0] ? msg : "out of memory");
}

int tf_remote_stale(const tf_file *f) { return f && tf_remote_is_stale(f->remote); }

int tf_open(tf_file *f, const char *path) {
    if (!f) return TF_EINVAL;
    if (!path) return tf_fail(f, TF_EINVAL, 0, "no path given");
    if (f->fp || f->fast_hdu0)
        return tf_fail(f, TF_EINVAL, 0, "handle already has a file open");
    f->err_hdu = -1;
    f->path = strdup(path);
    if (!f->path) return TF_ENOMEM;

    /* The one way in: every byte of the file, cfitsio's included, is read
     * through f->src (io/): a descriptor of ours, or a remote object. */
    if (tf_is_url(path)) FORWARD_IF_ERROR(open_remote(f, path));
    else {
        FORWARD_IF_ERROR(tf_source_open_file(f, path));
        tf_source_fd(&f->src, f->fd, f->file_size);
    }

    /* One read gives the magic and, for the fast open, the first blocks,
     * which hold every common primary header. */
    char head[FAST_HEAD_BYTES];
    size_t want = f->file_size < (int64_t)sizeof head ? (size_t)f->file_size : sizeof head;
    int err = 0;
    int64_t got = want ? f->src.read(&f->src, head, want, 0, &err) : 0;
    if (got < 0) return tf_fail(f, TF_EIO, 0, "cannot read the file: %s", strerror(err));
    if (got == 0) return tf_fail(f, TF_ENOTFITS, 0, "not a FITS file: the file is empty");
    const unsigned char *magic = (const unsigned char *)head;

    int plain = got >= 9 && memcmp(magic, "SIMPLE  =", 9) == 0;
    if (!plain) {
        if (!tf_is_compressed(magic, (size_t)got))
            return tf_fail(f, TF_ENOTFITS, 0,
                           "not a FITS file: it does not begin with the SIMPLE keyword");
        /* Unpacked into memory; our descriptor has no use then. A remote
         * file cannot be unpacked in part: it comes whole first, in one
         * request, within the same limit. */
        void *packed = NULL;
        if (f->remote) {
            if ((uint64_t)f->file_size > tf_option_bytes(TF_OPT_UNPACK_MAX_MB))
                return tf_fail(f, TF_ELIMIT, 0,
                               "the compressed file is %lld bytes, more than the limit for "
                               "files read whole (torchfits_ops.set_unpack_max_mb)",
                               (long long)f->file_size);
            if (!(packed = tf_membuf_alloc((size_t)f->file_size)))
                return tf_fail(f, TF_ENOMEM, 0, "out of memory");
            int rc = tf_source_read(&f->src, packed, (size_t)f->file_size, 0, &err);
            if (rc != TF_OK) {
                tf_membuf_free(packed);
                return tf_fail(f, rc, 0, "cannot read the file");
            }
            tf_source_memory(&f->src, packed, (size_t)f->file_size);
        }
        unsigned char *buf = NULL;
        size_t len = 0;
        int rc = tf_unpack(f, magic, (size_t)got, MEMFILE_GUARD, &buf, &len);
        tf_membuf_free(packed);
        if (f->fd >= 0) close(f->fd);
        f->fd = -1;
        tf_remote_close(f->remote);
        f->remote = NULL;
        /* A remote object the server sent whole: its packed bytes, read
         * by the unpack, are not needed any more. */
        tf_membuf_free(f->membuf);
        f->membuf = NULL;
        FORWARD_IF_ERROR(rc);
        f->membuf = buf;
        f->membuf_size = len;
    }

    f->plain = plain;
    if (plain && !f->membuf && f->file_size <= MEMFILE_MAX_BYTES) {
        /* Small files: read whole; the header is parsed from these bytes,
         * and cfitsio, when needed, parses them from memory too. */
        f->membuf_size = (size_t)f->file_size;
        f->membuf = tf_membuf_alloc(f->membuf_size + MEMFILE_GUARD);
        if (!f->membuf) return tf_fail(f, TF_ENOMEM, 0, "out of memory");
        memset((char *)f->membuf + f->membuf_size, 0, MEMFILE_GUARD);
        memcpy(f->membuf, head, (size_t)got);
        if ((size_t)got < f->membuf_size)
            FORWARD_IF_ERROR(tf_read_full(f, (char *)f->membuf + got,
                                          f->membuf_size - (size_t)got, got));
        f->fast_hdu0 = tf_fast_primary(f, f->membuf, f->membuf_size);
    } else if (plain) {
        f->fast_hdu0 = tf_fast_primary(f, head, (size_t)got);
    }
    if (f->membuf) {
        tf_source_memory(&f->src, f->membuf, f->membuf_size);
        tf_remote_close(f->remote); /* all of it is here */
        f->remote = NULL;
    }
    if (f->fast_hdu0) return TF_OK; /* cfitsio opens on first need */
    /* What the fast open declined goes to cfitsio: first the checks run on
     * every other header before cfitsio parses it; an unpacked file's too
     * (its primary header reached cfitsio unchecked: NAXIS = 104 crashed
     * it in a .fits.gz). */
    if (plain || f->membuf)
        FORWARD_IF_ERROR(tf_guard_primary(f, f->membuf ? (const char *)f->membuf : head,
                                          f->membuf ? f->membuf_size : (size_t)got));
    return tf_need_fits(f);
}

/*
 * What cfitsio refused in a header, in the core's own words: its message
 * stack is one for the whole process (another thread's call can put its own
 * file's text there at any time), so the card is found here instead, in the
 * header's bytes at `start`: "TFORM2 = '1Z'" into out, or "" when the
 * status is not about one keyword's value or no such card is found. For a
 * family of keywords (TFORMn, NAXISn, TBCOLn), the first whose value is
 * not valid.
 */
static int valid_value(const char *key, const char *v) {
    if (strncmp(key, "TFORM", 5) == 0) { /* repeat, then a type letter */
        if (*v++ != '\'') return 0;
        while (*v == ' ') v++;
        while (isdigit((unsigned char)*v)) v++;
        return *v && strchr("LXBIJKAEDCMPQ", toupper((unsigned char)*v)) != NULL;
    }
    /* NAXISn, TBCOLn: a non-negative integer */
    if (*v == '+') v++;
    if (!isdigit((unsigned char)*v)) return 0;
    while (isdigit((unsigned char)*v)) v++;
    while (*v == ' ') v++;
    return *v == 0 || *v == '/';
}

static void refused_card(tf_file *f, int64_t start, int st, char *out, size_t len) {
    const char *key = NULL;
    int family = 0; /* key followed by digits */
    switch (st) {
    case BAD_SIMPLE: key = "SIMPLE"; break;
    case BAD_BITPIX: key = "BITPIX"; break;
    case BAD_NAXIS: key = "NAXIS"; break;
    case BAD_NAXES: key = "NAXIS"; family = 1; break;
    case BAD_PCOUNT: key = "PCOUNT"; break;
    case BAD_GCOUNT: key = "GCOUNT"; break;
    case BAD_TFIELDS: key = "TFIELDS"; break;
    case BAD_TBCOL: key = "TBCOL"; family = 1; break;
    case BAD_TFORM: case BAD_TFORM_DTYPE: key = "TFORM"; family = 1; break;
    default: break;
    }
    out[0] = 0;
    if (!key || start < 0) return;
    size_t klen = strlen(key);
    char card[81];
    int err;
    /* A header of any length: 1,000 blocks is past any real one. */
    for (int64_t at = start; at < start + 36000 * 80; at += 80) {
        if (tf_source_read(&f->src, card, 80, at, &err) != TF_OK) return;
        card[80] = 0;
        if (strncmp(card, "END     ", 8) == 0) return;
        if (strncmp(card, key, klen) != 0) continue;
        const char *p = card + klen;
        if (family && !isdigit((unsigned char)*p)) continue;
        while (family && isdigit((unsigned char)*p)) p++;
        while (*p == ' ') p++;
        if (p - card > 8 || *p != '=') continue;
        for (p++; *p == ' '; p++) {}
        char value[72];
        snprintf(value, sizeof value, "%s", p);
        if (family && valid_value(key, value)) continue;
        /* The value as written, its quotes' blanks and any comment cut. */
        char *end = value[0] == '\'' ? strchr(value + 1, '\'') : value + strcspn(value, " /");
        if (end && *end == '\'') {
            char *q = end;
            while (q > value + 1 && q[-1] == ' ') q--;
            memmove(q, end, strlen(end) + 1);
            end = q + 1;
        }
        if (end) *end = 0;
        int name = (int)strcspn(card, " =");
        snprintf(out, len, ": %.*s = %s", name < 8 ? name : 8, card, value);
        return;
    }
}

int tf_need_fits(tf_file *f) {
    if (f->fp) return TF_OK;
    /* cfitsio reads f->src through the core's driver, under a name of the
     * core's own: it never sees the user's path. */
    int st = tf_cf_open(&f->src, &f->fp);
    if (st) {
        f->fp = NULL;
        f->fast_hdu0 = 0; /* cfitsio refused what the fast open took: trust it */
        if (st == MEMORY_ALLOCATION) return tf_fail(f, TF_ENOMEM, st, "out of memory");
        if (st == TOO_MANY_FILES)
            return tf_fail(f, TF_ELIMIT, st, "too many files open at once");
        if (st == READ_ERROR) return tf_fail(f, TF_EIO, st, "cannot read the file");
        if (st == FILE_NOT_OPENED && !f->plain)
            return tf_fail(f, TF_ENOTFITS, st, "cannot open compressed file as FITS");
        char card[96];
        refused_card(f, 0, st, card, sizeof card);
        return tf_fail(f, f->plain ? TF_ECORRUPT : TF_ENOTFITS, st,
                       "cannot read the primary header%s", card);
    }
    return TF_OK;
}

/* A fast-opened file that ends exactly where HDU 0's data, padded to
 * whole blocks, ends holds that one HDU, as cfitsio counts: no need to
 * open cfitsio to count (a FitsFile of a survey image asks). */
static int only_hdu0(const tf_file *f) {
    if (!f->fast_hdu0 || !f->plain) return 0;
    const tf_hdu_info *h = &f->fast_info;
    int64_t bytes = h->ndim > 0 ? (int64_t)tf_dtype_size(h->raw_dtype) : 0;
    for (int d = 0; d < h->ndim; d++)
        if (!tf_mul_ok(bytes, h->shape[d], &bytes)) return 0;
    return f->fast_data_offset + (bytes + 2879) / 2880 * 2880 == f->file_size;
}

/* cfitsio's count of the HDUs (fits_get_num_hdus: from its current HDU
 * on, up to the first it cannot read), after tf_guard_headers has walked
 * them all; a cfitsio status. It must not read a skipped HDU (guard.c):
 * it counts on from the HDU after the last one, and the last one is the
 * last HDU when nothing follows it. */
static int count_hdus(tf_file *f, int *count) {
    int st = 0, last = -1;
    for (int i = 0; i < f->nskipped; i++)
        if (f->skipped[i].hdu > last) last = f->skipped[i].hdu;
    if (last >= 0) {
        fits_movabs_hdu(f->fp, last + 2, NULL, &st); /* HDU last + 1, 0-based */
        f->cf_stale = 1;
        if (st) {
            fits_clear_errmsg();
            *count = last + 1;
            return 0;
        }
    }
    fits_get_num_hdus(f->fp, count, &st);
    f->cf_stale = 1;
    return st;
}

int tf_num_hdus(tf_file *f, int *n) {
    FORWARD_IF_ERROR(tf_check_handle_lazy(f));
    if (f->num_hdus < 0 && only_hdu0(f)) f->num_hdus = 1;
    if (f->num_hdus < 0) {
        FORWARD_IF_ERROR(tf_check_handle(f));
        int count = 0;
        FORWARD_IF_ERROR(tf_guard_headers(f, INT_MAX));
        int st = count_hdus(f, &count);
        RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "cannot count HDUs");
        f->num_hdus = count;
    }
    *n = f->num_hdus;
    return TF_OK;
}

/*
 * cfitsio frees the current HDU's description before it reads the next
 * header, and when that header is damaged it goes back to the old HDU
 * number without reading it again (ffmahd -> ffgext). fits_get_num_hdus
 * and fits_movnam_hdu walk the file that way and then "return" to the old
 * HDU, which is a no-op; a later call then reads through the freed
 * description (fuzzer: NULL in ffpscl). After any such walk the current
 * header is read again before it is used.
 */
int ffchdu(fitsfile *fptr, int *status);
int ffgext(fitsfile *fptr, int hdunum, int *exttype, int *status);

static int reload_if_stale(tf_file *f) {
    if (!f->cf_stale) return TF_OK;
    int st = 0, type = 0;
    f->cf_stale = 0;
    ffchdu(f->fp, &st);
    ffgext(f->fp, f->fp->Fptr->curhdu, &type, &st);
    if (st) f->cf_stale = 1;
    RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "cannot read the header again");
    return TF_OK;
}

int tf_move_to(tf_file *f, int hdu, int *hdutype) {
    int st = 0, type = 0;
    if (hdu < 0) return tf_fail(f, TF_ENOHDU, 0, "HDU %d does not exist", hdu);
    FORWARD_IF_ERROR(tf_guard_headers(f, hdu));
    const tf_skip *skipped = tf_skipped(f, hdu);
    if (skipped) return tf_fail_skipped(f, skipped);
    FORWARD_IF_ERROR(reload_if_stale(f));
    fits_movabs_hdu(f->fp, hdu + 1, &type, &st);
    if (st) f->cf_stale = 1;
    if (st == END_OF_FILE || st == BAD_HDU_NUM) {
        fits_clear_errmsg();
        int count = 0, st2 = count_hdus(f, &count);
        fits_clear_errmsg();
        if (st2 == 0)
            return tf_fail(f, TF_ENOHDU, 0, "HDU %d does not exist (the file has %d HDU%s)",
                           hdu, count, count == 1 ? "" : "s");
        return tf_fail(f, TF_ENOHDU, 0, "HDU %d does not exist", hdu);
    }
    f->err_hdu = hdu;
    if (st) {
        /* The header cfitsio stopped at, when it is this one. */
        const FITSfile *F = f->fp->Fptr;
        char card[96] = "";
        if (hdu <= F->maxhdu + 1) refused_card(f, F->headstart[hdu], st, card, sizeof card);
        return tf_fail(f, TF_ECORRUPT, st, "cannot read the header%s", card);
    }
    /* cfitsio describes an image with data, or a table with columns, in
     * tableptr; a damaged header seen through another handle on the same
     * file (cfitsio shares one FITSfile per path) can leave it NULL
     * (fuzzer: NULL in ffpscl). */
    const FITSfile *F = f->fp->Fptr;
    RETURN_ERROR_IF(!F->tableptr && (type == IMAGE_HDU ? F->imgdim > 0 : F->tfield > 0), f,
                    TF_ECORRUPT, "cannot read the header: cfitsio could not describe the HDU");
    if (hdutype) *hdutype = type;
    return TF_OK;
}

/* A string keyword of the current HDU into out ("" when absent). */
static int key_string(tf_file *f, const char *key, char *out) {
    int st = 0;
    out[0] = 0;
    fits_read_key_str(f->fp, key, out, NULL, &st);
    if (st == KEY_NO_EXIST) { fits_clear_errmsg(); out[0] = 0; return TF_OK; }
    RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "bad %s keyword", key);
    return TF_OK;
}

/* fits_movnam_hdu's search (EXTNAME, else HDUNAME, ignoring case; EXTVER
 * 1 when absent; extver 0 matches any) over every HDU, the skipped ones
 * by their raw cards. *index -1 when none matches. */
static int find_by_walk(tf_file *f, const char *extname, int extver, int *index) {
    int n = 0, st = 0;
    *index = -1;
    FORWARD_IF_ERROR(tf_num_hdus(f, &n));
    for (int k = 0; k < n; k++) {
        char name[FLEN_VALUE], alt[FLEN_VALUE];
        long ver = 1;
        const tf_skip *s = tf_skipped(f, k);
        if (s) {
            snprintf(name, sizeof name, "%s", s->extname);
            snprintf(alt, sizeof alt, "%s", s->hduname);
            ver = s->extver;
        } else {
            FORWARD_IF_ERROR(tf_move_to(f, k, NULL));
            FORWARD_IF_ERROR(key_string(f, "EXTNAME", name));
            FORWARD_IF_ERROR(key_string(f, "HDUNAME", alt));
            fits_read_key_lng(f->fp, "EXTVER", &ver, NULL, &st);
            if (st) { fits_clear_errmsg(); st = 0; ver = 1; }
        }
        int match = (name[0] && strcasecmp(name, extname) == 0) ||
                    (alt[0] && strcasecmp(alt, extname) == 0);
        if (match && (extver == 0 || ver == extver)) {
            *index = k;
            return TF_OK;
        }
    }
    return TF_OK;
}

int tf_find_hdu(tf_file *f, const char *extname, int extver, int *index) {
    FORWARD_IF_ERROR(tf_check_handle(f));
    if (!extname || !index) return tf_fail(f, TF_EINVAL, 0, "no EXTNAME given");
    if (extver < 0) return tf_fail(f, TF_EINVAL, 0, "EXTVER %d is negative", extver);
    if (strlen(extname) >= FLEN_VALUE)
        return tf_fail(f, TF_ENOHDU, 0, "no HDU with EXTNAME '%.40s...'", extname);
    char name[FLEN_VALUE];
    strcpy(name, extname);
    int st = 0;
    FORWARD_IF_ERROR(tf_guard_headers(f, INT_MAX));
    if (f->nskipped) {
        /* cfitsio's search reads every header from the first: it must not
         * meet a skipped HDU. */
        int found = -1;
        FORWARD_IF_ERROR(find_by_walk(f, extname, extver, &found));
        if (found >= 0) {
            *index = found;
            return TF_OK;
        }
        st = BAD_HDU_NUM;
    } else {
        FORWARD_IF_ERROR(reload_if_stale(f));
        fits_movnam_hdu(f->fp, ANY_HDU, name, extver, &st);
        f->cf_stale = 1;
    }
    if (st == BAD_HDU_NUM || st == END_OF_FILE) {
        fits_clear_errmsg();
        /* astropy's name for a primary HDU without EXTNAME */
        if (strcasecmp(extname, "PRIMARY") == 0 && extver <= 1) {
            *index = 0;
            return TF_OK;
        }
        if (extver)
            return tf_fail(f, TF_ENOHDU, 0, "no HDU with EXTNAME '%s' and EXTVER %d",
                           extname, extver);
        return tf_fail(f, TF_ENOHDU, 0, "no HDU with EXTNAME '%s'", extname);
    }
    RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "cannot search for EXTNAME '%s'", extname);
    int num = 0;
    fits_get_hdu_num(f->fp, &num);
    *index = num - 1;
    return TF_OK;
}

/* Read a double keyword, keeping `*v` when it is absent. */
static int key_double(tf_file *f, const char *key, double *v) {
    int st = 0;
    double x;
    fits_read_key_dbl(f->fp, key, &x, NULL, &st);
    if (st == KEY_NO_EXIST) { fits_clear_errmsg(); return TF_OK; }
    RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "bad %s keyword", key);
    *v = x;
    return TF_OK;
}

tf_dtype tf_stored_dtype(int bitpix) {
    switch (bitpix) {
    case BYTE_IMG: return TF_UINT8;
    case SHORT_IMG: return TF_INT16;
    case LONG_IMG: return TF_INT32;
    case LONGLONG_IMG: return TF_INT64;
    case FLOAT_IMG: return TF_FLOAT32;
    case DOUBLE_IMG: return TF_FLOAT64;
    default: return TF_DTYPE_AUTO;
    }
}

/* The documented dtype table: exact unsigned conventions, else floats.
 * Table columns use it too (B 8, I 16, J 32, K 64, E -32, D -64). */
tf_dtype tf_natural_dtype(int bitpix, double bscale, double bzero) {
    int unscaled = bscale == 1.0 && bzero == 0.0;
    switch (bitpix) {
    case BYTE_IMG:
        if (unscaled) return TF_UINT8;
        if (bscale == 1.0 && bzero == -128.0) return TF_INT8;
        return TF_FLOAT32;
    case SHORT_IMG:
        if (unscaled) return TF_INT16;
        if (bscale == 1.0 && bzero == 32768.0) return TF_UINT16;
        return TF_FLOAT32;
    case LONG_IMG:
        if (unscaled) return TF_INT32;
        if (bscale == 1.0 && bzero == 2147483648.0) return TF_UINT32;
        return TF_FLOAT64;
    case LONGLONG_IMG:
        if (unscaled) return TF_INT64;
        if (bscale == 1.0 && bzero == 9223372036854775808.0) return TF_UINT64;
        return TF_FLOAT64;
    case FLOAT_IMG: return TF_FLOAT32;
    case DOUBLE_IMG: return TF_FLOAT64;
    default: return TF_DTYPE_AUTO;
    }
}

static int hdu_info_load(tf_file *f, int hdu, int type, tf_hdu_info *info);

/* The last HDU described is cached: a read asks twice (for the output's
 * size, then to fill it), and each description is some ten keyword
 * searches through the header. cfitsio is still moved to the HDU. */
int tf_hdu_info_get(tf_file *f, int hdu, tf_hdu_info *info) {
    FORWARD_IF_ERROR(tf_check_handle_lazy(f));
    if (!info) return tf_fail(f, TF_EINVAL, 0, "no info struct given");
    if (hdu == 0 && f->fast_hdu0) {
        f->err_hdu = 0;
        *info = f->fast_info;
        return TF_OK;
    }
    FORWARD_IF_ERROR(tf_need_fits(f));
    return tf_hdu_info_cfitsio(f, hdu, info);
}

int tf_hdu_info_cfitsio(tf_file *f, int hdu, tf_hdu_info *info) {
    int type = 0, rc = tf_move_to(f, hdu, &type);
    const tf_skip *s = rc == TF_EUNSUPPORTED ? tf_skipped(f, hdu) : NULL;
    if (s) { /* what its raw cards tell, for a listing */
        memset(info, 0, sizeof *info);
        info->index = hdu;
        info->kind = TF_HDU_IMAGE;
        info->bitpix = s->bitpix;
        info->bscale = 1.0;
        info->extver = s->extver;
        snprintf(info->extname, sizeof info->extname, "%s", s->extname);
        for (char *c = info->extname; *c; c++)
            if ((unsigned char)*c < 32 || (unsigned char)*c > 126) *c = '?';
    }
    FORWARD_IF_ERROR(rc);
    if (f->info_valid && f->info_cache.index == hdu) {
        *info = f->info_cache;
        return TF_OK;
    }
    FORWARD_IF_ERROR(hdu_info_load(f, hdu, type, info));
    f->info_cache = *info;
    f->info_valid = 1;
    return TF_OK;
}

/* The optional keywords an HDU description looks up. */
enum { K_EXTNAME = 1, K_EXTVER = 2, K_BSCALE = 4, K_BZERO = 8, K_BLANK = 16, K_ALL = 31 };

/* Which of them may be in the current header, in one pass over the cards
 * (fits_read_record only copies a card), so that absent keywords, the
 * usual case, cost no full search with cfitsio's keyword parser each: that
 * was ~25 us of a ~60 us small read. A superset of cfitsio's matches: a
 * card counts when it starts with the name, case aside, followed by no
 * keyword character, behind "HIERARCH " too (cfitsio's lookup finds
 * "HIERARCH BSCALE = 0" for BSCALE, and its tile reader scaled by it while
 * the description said 1: header variants); cfitsio's own lookup then
 * decides. */
static int keys_present(tf_file *f) {
    static const struct { const char *name; int bit; } keys[] = {
        {"EXTNAME", K_EXTNAME}, {"EXTVER", K_EXTVER}, {"BSCALE", K_BSCALE},
        {"BZERO", K_BZERO}, {"BLANK", K_BLANK}};
    int nkeys = 0, st = 0, found = 0;
    char card[FLEN_CARD];
    fits_get_hdrspace(f->fp, &nkeys, NULL, &st);
    for (int i = 1; st == 0 && i <= nkeys && found != K_ALL; i++) {
        fits_read_record(f->fp, i, card, &st);
        const char *name = card;
        if (strncmp(card, "HIERARCH ", 9) == 0)
            for (name += 9; *name == ' '; name++) {}
        for (size_t k = 0; st == 0 && k < sizeof keys / sizeof keys[0]; k++) {
            size_t n = strlen(keys[k].name);
            if (strncasecmp(name, keys[k].name, n) != 0) continue;
            char next = name[n];
            if (!(isalnum((unsigned char)next) || next == '-' || next == '_')) found |= keys[k].bit;
        }
    }
    if (st) { /* let the lookups below decide, and report */
        fits_clear_errmsg();
        return K_ALL;
    }
    return found;
}

static int hdu_info_load(tf_file *f, int hdu, int type, tf_hdu_info *info) {
    int st = 0;
    const int present = keys_present(f);
    memset(info, 0, sizeof *info);
    info->index = hdu;
    info->bscale = 1.0;
    info->extver = 1;
    info->dtype = info->raw_dtype = TF_DTYPE_AUTO;

    char extname[FLEN_VALUE] = "";
    if (present & K_EXTNAME) fits_read_key_str(f->fp, "EXTNAME", extname, NULL, &st);
    if (st == KEY_NO_EXIST) { st = 0; fits_clear_errmsg(); extname[0] = 0; }
    RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "bad EXTNAME keyword");
    snprintf(info->extname, sizeof info->extname, "%s", extname);
    for (char *c = info->extname; *c; c++)  /* ASCII only, as in header.c */
        if ((unsigned char)*c < 32 || (unsigned char)*c > 126) *c = '?';
    long extver = 1;
    if (present & K_EXTVER) fits_read_key_lng(f->fp, "EXTVER", &extver, NULL, &st);
    if (st == KEY_NO_EXIST) { st = 0; fits_clear_errmsg(); extver = 1; }
    RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "bad EXTVER keyword");
    info->extver = (int)extver;

    if (type == ASCII_TBL || type == BINARY_TBL) {
        info->kind = type == ASCII_TBL ? TF_HDU_ASCII_TABLE : TF_HDU_BINARY_TABLE;
        LONGLONG nrows = 0;
        int ncols = 0;
        fits_get_num_rowsll(f->fp, &nrows, &st);
        fits_get_num_cols(f->fp, &ncols, &st);
        RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "bad table header");
        info->nrows = nrows;
        info->ncols = ncols;
        return TF_OK;
    }

    info->kind = TF_HDU_IMAGE;
    info->compressed = fits_is_compressed_image(f->fp, &st);
    RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "bad compressed-image header");
    int bitpix = 0, naxis = 0;
    LONGLONG naxes[TF_MAX_DIMS] = {0};
    fits_get_img_dim(f->fp, &naxis, &st);
    RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "bad NAXIS keyword");
    RETURN_ERROR_IF(naxis < 0, f, TF_ECORRUPT, "NAXIS = %d is negative", naxis);
    /* The first TF_MAX_DIMS axes (cfitsio fills no more). */
    fits_get_img_paramll(f->fp, TF_MAX_DIMS, &bitpix, &naxis, naxes, &st);
    RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "bad image header");
    /* Valid FITS this reader does not read: the HDU is described as far
     * as it goes (index, kind, EXTNAME, EXTVER, BITPIX) for a listing,
     * and the handle stays usable for the other HDUs. */
    info->bitpix = bitpix;
    if (!info->compressed && naxis >= 1 && naxes[0] == 0) {
        int groups = 0;
        fits_read_key_log(f->fp, "GROUPS", &groups, NULL, &st);
        if (st) { st = 0; fits_clear_errmsg(); groups = 0; }
        RETURN_ERROR_IF(groups, f, TF_EUNSUPPORTED,
                        "random groups (GROUPS = T, NAXIS1 = 0) are not supported");
    }
    RETURN_ERROR_IF(naxis > TF_MAX_DIMS, f, TF_EUNSUPPORTED,
                    "NAXIS = %d: this reader reads images of at most %d axes", naxis,
                    TF_MAX_DIMS);
    if (!info->compressed) {
        /* An image has no heap and one group; anything else (a table
         * relabelled IMAGE, random groups) has data this reader would
         * misplace. Found by the fuzzer: the two read paths disagreed. */
        LONGLONG pcount = 0, gcount = 1;
        fits_read_key_lnglng(f->fp, "PCOUNT", &pcount, NULL, &st);
        if (st == KEY_NO_EXIST) { st = 0; fits_clear_errmsg(); pcount = 0; }
        fits_read_key_lnglng(f->fp, "GCOUNT", &gcount, NULL, &st);
        if (st == KEY_NO_EXIST) { st = 0; fits_clear_errmsg(); gcount = 1; }
        RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "bad PCOUNT or GCOUNT keyword");
        RETURN_ERROR_IF(pcount != 0 || gcount != 1, f, TF_ECORRUPT,
                        "PCOUNT = %lld, GCOUNT = %lld: an image needs 0 and 1",
                        (long long)pcount, (long long)gcount);
    }
    info->bitpix = bitpix;
    info->ndim = naxis;
    for (int i = 0; i < naxis; i++) {
        RETURN_ERROR_IF(naxes[i] < 0, f, TF_ECORRUPT, "NAXIS%d = %lld is negative",
                        i + 1, (long long)naxes[i]);
        info->shape[naxis - 1 - i] = naxes[i];
    }
    if (present & K_BSCALE) FORWARD_IF_ERROR(key_double(f, "BSCALE", &info->bscale));
    if (present & K_BZERO) FORWARD_IF_ERROR(key_double(f, "BZERO", &info->bzero));
    RETURN_ERROR_IF(info->bscale == 0.0, f, TF_ECORRUPT, "BSCALE is 0");
    /* BLANK matters only to an integer image with pixels. Elsewhere (an
     * empty primary HDU with BLANK = -1 on BITPIX 8, as real archives
     * write) it is not looked at: a keyword that cannot matter does not
     * make the file unreadable. The guard has already refused a value
     * that is not a number (cfitsio's integer parser aborts on some). */
    int has_pixels = naxis > 0;
    for (int i = 0; i < naxis; i++) has_pixels &= naxes[i] > 0;
    if (bitpix > 0 && has_pixels && (present & K_BLANK)) {
        LONGLONG blank = 0;
        fits_read_key_lnglng(f->fp, "BLANK", &blank, NULL, &st);
        if (st == KEY_NO_EXIST) { st = 0; fits_clear_errmsg(); }
        else {
            RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "bad BLANK keyword");
            /* A BLANK that BITPIX cannot hold (BITPIX 8 with BLANK = -1 or
             * 300) equals no stored value: the image reads as if it had
             * none, as astropy reads it (no pixel NaN) and fitsio (no null
             * check on images). cfitsio, asked to check nulls, skips such
             * a BLANK on BITPIX 8 and 16 but compares a BITPIX 32 one cut
             * to 32 bits (2^32 - 1 made every -1 NaN); both read paths
             * ask it only where has_blank is set. The fast open takes the
             * same view (guard.c). */
            int64_t lo, hi;
            if (!tf_int_range(tf_stored_dtype(bitpix), &lo, &hi) ||
                (blank >= lo && blank <= hi)) {
                info->has_blank = 1;
                info->blank = blank;
            }
        }
    }
    info->raw_dtype = tf_stored_dtype(bitpix);
    RETURN_ERROR_IF(info->raw_dtype == TF_DTYPE_AUTO, f, TF_ECORRUPT, "BITPIX = %d is not valid",
                    bitpix);
    info->dtype = tf_natural_dtype(bitpix, info->bscale, info->bzero);
    return TF_OK;
}
