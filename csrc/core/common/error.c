/*
 * error.c - error messages, status names, dtype tables, checked reads.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

const char *tf_strerror(int status) {
    switch (status) {
    case TF_OK: return "TF_OK";
    case TF_EINVAL: return "TF_EINVAL";
    case TF_EOPEN: return "TF_EOPEN";
    case TF_ENOTFITS: return "TF_ENOTFITS";
    case TF_ENOHDU: return "TF_ENOHDU";
    case TF_EHDUTYPE: return "TF_EHDUTYPE";
    case TF_ERANGE: return "TF_ERANGE";
    case TF_ECORRUPT: return "TF_ECORRUPT";
    case TF_ELIMIT: return "TF_ELIMIT";
    case TF_ENOMEM: return "TF_ENOMEM";
    case TF_EIO: return "TF_EIO";
    case TF_EBUFSIZE: return "TF_EBUFSIZE";
    case TF_EUNSUPPORTED: return "TF_EUNSUPPORTED";
    case TF_EPOISONED: return "TF_EPOISONED";
    default: return "TF_E?";
    }
}

void tf_set_msg(char *errmsg, size_t errlen, const char *msg) {
    if (errmsg && errlen) snprintf(errmsg, errlen, "%s", msg);
}

void tf_batch_fail_note(tf_batch_fail *f, int64_t i, int rc, char *msg) {
    if (f->index >= 0 && i >= f->index) {
        free(msg);
        return;
    }
    f->index = i;
    f->rc = rc;
    free(f->msg);
    f->msg = msg;
}

int tf_batch_fail_pick(tf_batch_fail *first, size_t stride, int n, char *errmsg, size_t errlen) {
    int rc = TF_OK;
    int64_t lowest = -1;
    for (int t = 0; t < n; t++) {
        tf_batch_fail *f = (tf_batch_fail *)((char *)first + (size_t)t * stride);
        if (f->index >= 0 && (lowest < 0 || f->index < lowest)) {
            lowest = f->index;
            rc = f->rc;
            tf_set_msg(errmsg, errlen, f->msg ? f->msg : "out of memory");
        }
    }
    for (int t = 0; t < n; t++) {
        tf_batch_fail *f = (tf_batch_fail *)((char *)first + (size_t)t * stride);
        free(f->msg);
        f->msg = NULL;
    }
    return rc;
}

const char *tf_errmsg(const tf_file *f) {
    if (!f) return "out of memory";
    return f->errmsg ? f->errmsg : f->errbuf;
}

int tf_fail(tf_file *f, int status, int cfitsio_status, const char *fmt, ...) {
    if (!f) return status;
    /* The cause first, on its own, so the message's size is known. */
    char cause[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cause, sizeof cause, fmt, ap);
    va_end(ap);
    /* It may quote a damaged card: ASCII only, or Python cannot decode
     * the message and raises a RuntimeError without one (fuzzer). */
    /* A remote read that failed says why itself (an HTTP status, a
     * timeout), whatever the caller (or cfitsio, reading through the
     * driver) made of it. */
    int why = f->src.failure ? f->src.failure(&f->src, cause, sizeof cause) : 0;
    if (why) {
        status = why;
        cfitsio_status = 0;
    }
    for (unsigned char *c = (unsigned char *)cause; *c; c++)
        if (*c < 32 || *c > 126) *c = '?';
    /* cfitsio's fixed text for the code: its message stack is one for the
     * whole process, and another thread's call can put its own file's
     * detail there at any time. */
    char text[FLEN_STATUS] = "", code[32 + FLEN_STATUS] = "";
    if (cfitsio_status) {
        fits_get_errstatus(cfitsio_status, text);
        snprintf(code, sizeof code, " (cfitsio status %d: %s)", cfitsio_status, text);
    }
    char hdu[32] = "";
    if (f->err_hdu >= 0) snprintf(hdu, sizeof hdu, "HDU %d: ", f->err_hdu);
    /* The path stays as given, whole, however long (the shim escapes what
     * is not printable). */
    const char *path = f->path ? f->path : "?";
    size_t n = strlen(path) + 2 + strlen(hdu) + strlen(cause) + strlen(code) + 1;
    char *m = malloc(n);
    free(f->errmsg);
    f->errmsg = m;
    if (m) snprintf(m, n, "%s: %s%s%s", path, hdu, cause, code);
    else /* out of memory: the path is cut */
        snprintf(f->errbuf, sizeof f->errbuf, "%.160s: %s%.700s%s", path, hdu, cause, code);
    if (status == TF_ECORRUPT) f->poisoned = 1;
    return status;
}

int tf_check_handle_lazy(tf_file *f) {
    if (!f) return TF_EINVAL;
    f->err_hdu = -1;
    if (!f->fp && !f->fast_hdu0) return tf_fail(f, TF_EINVAL, 0, "no file is open on this handle");
    if (f->poisoned) return TF_EPOISONED;  /* keep the first message */
    return TF_OK;
}

int tf_check_handle(tf_file *f) {
    FORWARD_IF_ERROR(tf_check_handle_lazy(f));
    return tf_need_fits(f);
}

int tf_check_reentrant(void) {
    return fits_is_reentrant() ? TF_OK : TF_EUNSUPPORTED;
}

static const struct { size_t size; const char *name; } dtype_table[TF_DTYPE_COUNT] = {
    [TF_UINT8] = {1, "uint8"},      [TF_INT8] = {1, "int8"},
    [TF_INT16] = {2, "int16"},      [TF_UINT16] = {2, "uint16"},
    [TF_INT32] = {4, "int32"},      [TF_UINT32] = {4, "uint32"},
    [TF_INT64] = {8, "int64"},      [TF_FLOAT32] = {4, "float32"},
    [TF_FLOAT64] = {8, "float64"},  [TF_BOOL] = {1, "bool"},
    [TF_COMPLEX64] = {8, "complex64"}, [TF_COMPLEX128] = {16, "complex128"},
    [TF_UINT64] = {8, "uint64"},
};

size_t tf_dtype_size(tf_dtype dtype) {
    if ((int)dtype <= 0 || dtype >= TF_DTYPE_COUNT) return 0;
    return dtype_table[dtype].size;
}

int tf_int_range(tf_dtype t, int64_t *lo, int64_t *hi) {
    switch (t) {
    case TF_UINT8: *lo = 0; *hi = UINT8_MAX; return 1;
    case TF_INT8: *lo = INT8_MIN; *hi = INT8_MAX; return 1;
    case TF_INT16: *lo = INT16_MIN; *hi = INT16_MAX; return 1;
    case TF_UINT16: *lo = 0; *hi = UINT16_MAX; return 1;
    case TF_INT32: *lo = INT32_MIN; *hi = INT32_MAX; return 1;
    case TF_UINT32: *lo = 0; *hi = UINT32_MAX; return 1;
    case TF_INT64: *lo = INT64_MIN; *hi = INT64_MAX; return 1;
    default: return 0; /* uint64 too: its range is no int64 pair */
    }
}

const char *tf_dtype_name(tf_dtype dtype) {
    if ((int)dtype <= 0 || dtype >= TF_DTYPE_COUNT) return "auto";
    return dtype_table[dtype].name;
}

int tf_cfitsio_type(tf_dtype dtype) {
    switch (dtype) {
    case TF_BOOL: return TLOGICAL;
    case TF_UINT8: return TBYTE;
    case TF_INT8: return TSBYTE;
    case TF_INT16: return TSHORT;
    case TF_UINT16: return TUSHORT;
    case TF_INT32: return TINT;
    case TF_UINT32: return TUINT;
    case TF_INT64: return TLONGLONG;
    case TF_UINT64: return TULONGLONG;
    case TF_FLOAT32: return TFLOAT;
    case TF_FLOAT64: return TDOUBLE;
    case TF_COMPLEX64: return TCOMPLEX;
    case TF_COMPLEX128: return TDBLCOMPLEX;
    default: return 0;
    }
}
