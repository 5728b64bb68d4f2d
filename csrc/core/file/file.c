/*
 * file.c - opening files, moving between HDUs, describing HDUs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/internal.h"

tf_file *tf_create(void) {
    tf_file *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->fd = -1;
    f->num_hdus = -1;
    f->err_hdu = -1;
    return f;
}

static void free_cards(tf_file *f) {
    free(f->cards);
    free(f->card_text);
    f->cards = NULL;
    f->card_text = NULL;
    f->ncards = 0;
}

void tf_close(tf_file *f) {
    if (!f) return;
    if (f->fp) {
        int st = 0;
        fits_close_file(f->fp, &st);
    }
    if (f->fd >= 0) close(f->fd);
    free_cards(f);
    free(f->path);
    free(f);
}

/* Compressed-file signatures that cfitsio unpacks on open. */
static int is_compressed_file(const unsigned char *m, size_t n) {
    if (n >= 2 && m[0] == 0x1f && (m[1] == 0x8b || m[1] == 0x9d || m[1] == 0xa0)) return 1;
    if (n >= 4 && m[0] == 'P' && m[1] == 'K' && m[2] == 3 && m[3] == 4) return 1;
    return 0;
}

int tf_open(tf_file *f, const char *path) {
    if (!f) return TF_EINVAL;
    if (!path) return tf_fail(f, TF_EINVAL, 0, "no path given");
    if (f->fp) return tf_fail(f, TF_EINVAL, 0, "handle already has a file open");
    f->err_hdu = -1;
    f->path = strdup(path);
    if (!f->path) return TF_ENOMEM;

    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0)
        return tf_fail(f, TF_EOPEN, 0, "cannot open file: %s", strerror(errno));
    struct stat sb;
    if (fstat(f->fd, &sb) != 0)
        return tf_fail(f, TF_EOPEN, 0, "cannot stat file: %s", strerror(errno));
    if (S_ISDIR(sb.st_mode))
        return tf_fail(f, TF_EOPEN, 0, "cannot open file: it is a directory");
    f->file_size = (int64_t)sb.st_size;

    unsigned char magic[9] = {0};
    ssize_t got = pread(f->fd, magic, sizeof magic, 0);
    if (got <= 0) return tf_fail(f, TF_ENOTFITS, 0, "not a FITS file: the file is empty");

    int plain = got == 9 && memcmp(magic, "SIMPLE  =", 9) == 0;
    if (!plain) {
        if (!is_compressed_file(magic, (size_t)got))
            return tf_fail(f, TF_ENOTFITS, 0,
                           "not a FITS file: it does not begin with the SIMPLE keyword");
        /* cfitsio unpacks it into memory; our descriptor has no use then. */
        close(f->fd);
        f->fd = -1;
    }

    int st = 0;
    fits_open_diskfile(&f->fp, path, READONLY, &st);
    if (st) {
        f->fp = NULL;
        if (st == FILE_NOT_OPENED && !plain)
            return tf_fail(f, TF_ENOTFITS, st, "cannot open compressed file as FITS");
        return tf_fail(f, plain ? TF_ECORRUPT : TF_ENOTFITS, st,
                       "cannot read the primary header");
    }
    return TF_OK;
}

int tf_num_hdus(tf_file *f, int *n) {
    FORWARD_IF_ERROR(tf_check_handle(f));
    if (f->num_hdus < 0) {
        int st = 0, count = 0;
        FORWARD_IF_ERROR(tf_guard_headers(f, INT_MAX));
        fits_get_num_hdus(f->fp, &count, &st);
        RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "cannot count HDUs");
        f->num_hdus = count;
    }
    *n = f->num_hdus;
    return TF_OK;
}

int tf_move_to(tf_file *f, int hdu, int *hdutype) {
    int st = 0, type = 0;
    if (hdu < 0) return tf_fail(f, TF_ENOHDU, 0, "HDU %d does not exist", hdu);
    FORWARD_IF_ERROR(tf_guard_headers(f, hdu));
    fits_movabs_hdu(f->fp, hdu + 1, &type, &st);
    if (st == END_OF_FILE || st == BAD_HDU_NUM) {
        fits_clear_errmsg();
        int count = 0, st2 = 0;
        fits_get_num_hdus(f->fp, &count, &st2);
        fits_clear_errmsg();
        if (st2 == 0)
            return tf_fail(f, TF_ENOHDU, 0, "HDU %d does not exist (the file has %d HDU%s)",
                           hdu, count, count == 1 ? "" : "s");
        return tf_fail(f, TF_ENOHDU, 0, "HDU %d does not exist", hdu);
    }
    f->err_hdu = hdu;
    RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "cannot read the header");
    if (hdutype) *hdutype = type;
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
    fits_movnam_hdu(f->fp, ANY_HDU, name, extver, &st);
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

static tf_dtype stored_dtype(int bitpix) {
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

/* The documented dtype table: exact unsigned conventions, else floats. */
static tf_dtype natural_dtype(int bitpix, double bscale, double bzero) {
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
        return unscaled ? TF_INT64 : TF_FLOAT64;
    case FLOAT_IMG: return TF_FLOAT32;
    case DOUBLE_IMG: return TF_FLOAT64;
    default: return TF_DTYPE_AUTO;
    }
}

int tf_hdu_info_get(tf_file *f, int hdu, tf_hdu_info *info) {
    FORWARD_IF_ERROR(tf_check_handle(f));
    if (!info) return tf_fail(f, TF_EINVAL, 0, "no info struct given");
    int type = 0, st = 0;
    FORWARD_IF_ERROR(tf_move_to(f, hdu, &type));
    memset(info, 0, sizeof *info);
    info->index = hdu;
    info->bscale = 1.0;
    info->extver = 1;
    info->dtype = info->raw_dtype = TF_DTYPE_AUTO;

    char extname[FLEN_VALUE] = "";
    fits_read_key_str(f->fp, "EXTNAME", extname, NULL, &st);
    if (st == KEY_NO_EXIST) { st = 0; fits_clear_errmsg(); extname[0] = 0; }
    RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "bad EXTNAME keyword");
    snprintf(info->extname, sizeof info->extname, "%s", extname);
    for (char *c = info->extname; *c; c++)  /* ASCII only, as in header.c */
        if ((unsigned char)*c < 32 || (unsigned char)*c > 126) *c = '?';
    long extver = 1;
    fits_read_key_lng(f->fp, "EXTVER", &extver, NULL, &st);
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
    RETURN_ERROR_IF(naxis > TF_MAX_DIMS, f, TF_ELIMIT,
                    "NAXIS = %d is more axes than the %d this reader accepts", naxis, TF_MAX_DIMS);
    fits_get_img_paramll(f->fp, TF_MAX_DIMS, &bitpix, &naxis, naxes, &st);
    RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "bad image header");
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
    FORWARD_IF_ERROR(key_double(f, "BSCALE", &info->bscale));
    FORWARD_IF_ERROR(key_double(f, "BZERO", &info->bzero));
    RETURN_ERROR_IF(info->bscale == 0.0, f, TF_ECORRUPT, "BSCALE is 0");
    if (bitpix > 0) {
        LONGLONG blank = 0;
        fits_read_key_lnglng(f->fp, "BLANK", &blank, NULL, &st);
        if (st == KEY_NO_EXIST) { st = 0; fits_clear_errmsg(); }
        else {
            RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "bad BLANK keyword");
            /* cfitsio truncates a BLANK that BITPIX cannot hold and blanks
             * other pixels; the fast path would blank none (fuzzer). */
            int64_t lo = bitpix == 8 ? 0 : bitpix == 16 ? INT16_MIN : bitpix == 32 ? INT32_MIN : INT64_MIN;
            int64_t hi = bitpix == 8 ? UINT8_MAX : bitpix == 16 ? INT16_MAX : bitpix == 32 ? INT32_MAX : INT64_MAX;
            RETURN_ERROR_IF(blank < lo || blank > hi, f, TF_ECORRUPT,
                            "BLANK = %lld does not fit BITPIX = %d", (long long)blank, bitpix);
            info->has_blank = 1;
            info->blank = blank;
        }
    }
    info->raw_dtype = stored_dtype(bitpix);
    RETURN_ERROR_IF(info->raw_dtype == TF_DTYPE_AUTO, f, TF_ECORRUPT, "BITPIX = %d is not valid",
                    bitpix);
    info->dtype = natural_dtype(bitpix, info->bscale, info->bzero);
    return TF_OK;
}
