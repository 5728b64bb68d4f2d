/*
 * table.c - reading binary and ASCII table columns.
 *
 * Two paths:
 *  - the block path, for fixed-width columns of binary tables: read blocks
 *    of whole rows (pread in plain files, fits_read_tblbytes otherwise),
 *    then scatter each requested column out of the block and byte-swap
 *    (and scale) it with tf_convert while the block is still in cache;
 *    large reads in plain files are split by rows across threads;
 *  - cfitsio's column reads (fits_read_col), for ASCII tables, for the
 *    variable-length arrays in the heap, and for testing the block path.
 * Character columns (A, and PA/QA) come back as the bytes stored on both
 * paths: nothing stripped, nothing cut at a NUL. They, and the fields of
 * ASCII tables, are read as bytes (fits_read_col with TBYTE,
 * fits_read_tblbytes), never through cfitsio's string reader
 * (fits_read_col_str): it copies a field or a PA row into a 28,800-byte
 * buffer on the stack, and a PA row longer than that smashed the stack
 * (SIGABRT; SIGSEGV from 60,000 characters) on a valid file.
 * cfitsio parses and validates the table header (TFORMn, NAXIS1, THEAP)
 * when it moves to the HDU; sizes are checked against the real file size
 * here before anything is read or allocated.
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../common/convert.h"
#include "../common/internal.h"

/* Bytes of whole rows read per block: the block and its scatter stay in L2. */
#define BLOCK_BYTES (256 * 1024)
/* Below this many table bytes a read stays on one thread. */
#define THREAD_MIN_BYTES (4 * 1024 * 1024)

/* The geometry of the current table HDU, checked against the file. */
typedef struct table_geom {
    int hdu;
    int ascii;
    int ncols;
    int64_t nrows, rowlen;
    int64_t data_offset;   /* byte offset of the first row in the file */
    int64_t heap_avail;    /* bytes from THEAP to the end of the heap */
} table_geom;

static int table_geom_get(tf_file *f, int hdu, table_geom *g) {
    tf_hdu_info info;
    FORWARD_IF_ERROR(tf_hdu_info_get(f, hdu, &info));
    if (info.kind == TF_HDU_IMAGE)
        return tf_fail(f, TF_EHDUTYPE, 0, "HDU is an image, not a table");
    memset(g, 0, sizeof *g);
    g->hdu = hdu;
    FITSfile *F = f->fp->Fptr;
    g->ascii = info.kind == TF_HDU_ASCII_TABLE;
    g->ncols = info.ncols;
    g->nrows = info.nrows;
    g->rowlen = F->rowlength;
    g->data_offset = F->datastart;
    int64_t main_bytes, total;
    if (g->nrows < 0 || g->rowlen < 0 || F->heapsize < 0 ||
        !tf_mul_ok(g->nrows, g->rowlen, &main_bytes) ||
        __builtin_add_overflow(main_bytes, (int64_t)F->heapsize, &total))
        return tf_fail(f, TF_ECORRUPT, 0, "table size overflows (NAXIS1 %lld, NAXIS2 %lld)",
                       (long long)g->rowlen, (long long)g->nrows);
    int64_t size = tf_direct(f) ? f->file_size : (int64_t)F->logfilesize, need;
    if (__builtin_add_overflow(g->data_offset, total, &need) || need > size)
        return tf_fail(f, TF_ECORRUPT, 0,
                       "file is truncated: the table needs %lld bytes at offset %lld but the "
                       "file has %lld",
                       (long long)total, (long long)g->data_offset, (long long)size);
    /* Rows of no bytes cost the file nothing: bound them by its size, so
     * per-row outputs (offsets, string lists) cannot be made huge. */
    if (g->rowlen == 0 && g->nrows > size)
        return tf_fail(f, TF_ECORRUPT, 0, "NAXIS2 = %lld rows of 0 bytes in a file of %lld",
                       (long long)g->nrows, (long long)size);
    if (F->heapstart < main_bytes && F->heapsize > 0)
        return tf_fail(f, TF_ECORRUPT, 0, "THEAP = %lld points inside the rows (%lld bytes)",
                       (long long)F->heapstart, (long long)main_bytes);
    g->heap_avail = total - (int64_t)F->heapstart;
    if (g->heap_avail < 0) g->heap_avail = 0;
    return TF_OK;
}

/* The column keywords that have no parsed form in cfitsio, as written. */
typedef struct col_text {
    char tform[72], tunit[72], tdim[72];
    int has_null;
    int64_t null;
} col_text;

/* A card's string value without quotes and trailing blanks. */
static void unquote(const char *v, char *out, size_t len) {
    size_t n = 0;
    if (*v == '\'') {
        for (v++; *v && n + 1 < len; v++) {
            if (*v == '\'') {
                if (v[1] != '\'') break;
                v++;  /* '' is a quote */
            }
            out[n++] = *v;
        }
    } else {
        while (*v && n + 1 < len) out[n++] = *v++;
    }
    while (n > 0 && out[n - 1] == ' ') n--;
    out[n] = 0;
}

/* What the handle keeps of the last table HDU it described. */
typedef struct table_cache {
    table_geom g;
    col_text cols[];
} table_cache;

/* cfitsio's mark of a column without TNULLn (fitsio2.h). */
#ifndef NULL_UNDEFINED
#define NULL_UNDEFINED 1234554321
#endif

/* Read TFORMn, TUNITn and TDIMn of every column in one pass over the
 * header, once per HDU (TNULLn as cfitsio parsed it): looking each up by
 * name would search the whole header for every absent one, quadratic in
 * the number of columns. */
static int col_text_load(tf_file *f, int hdu, const table_geom *g) {
    free(f->col_text);
    f->col_text = NULL;
    table_cache *cache = calloc(1, sizeof *cache + ((size_t)g->ncols + 1) * sizeof(col_text));
    if (!cache) return tf_fail(f, TF_ENOMEM, 0, "out of memory");
    cache->g = *g;
    col_text *ct = cache->cols;
    int st = 0, nkeys = 0, more = 0;
    fits_get_hdrspace(f->fp, &nkeys, &more, &st);
    for (int k = 1; k <= nkeys && !st; k++) {
        char key[FLEN_KEYWORD] = "", value[FLEN_VALUE] = "";
        fits_read_keyn(f->fp, k, key, value, NULL, &st);
        if (st || key[0] != 'T') continue;
        static const char *const names[] = {"TFORM", "TUNIT", "TDIM"};
        for (int w = 0; w < 3; w++) {
            size_t len = strlen(names[w]);
            if (strncmp(key, names[w], len) != 0 || key[len] < '1' || key[len] > '9') continue;
            char *end;
            long n = strtol(key + len, &end, 10);
            if (*end || n < 1 || n > g->ncols) break;
            col_text *c = &ct[n - 1];
            if (w == 0) unquote(value, c->tform, sizeof c->tform);
            else if (w == 1) unquote(value, c->tunit, sizeof c->tunit);
            else if (w == 2) unquote(value, c->tdim, sizeof c->tdim);
            break;
        }
    }
    /* TNULLn as cfitsio took it when it set up the columns: "16.5" is no
     * null value to it (read here with strtoll it had been 16, and the
     * fast path made NaN of what cfitsio returned; header variants). */
    if (!g->ascii && !st)
        for (int n = 0; n < g->ncols; n++) {
            LONGLONG tnull = f->fp->Fptr->tableptr[n].tnull;
            ct[n].has_null = tnull != NULL_UNDEFINED;
            ct[n].null = ct[n].has_null ? (int64_t)tnull : 0;
        }
    if (st) {
        free(cache);
        return tf_fail(f, TF_ECORRUPT, st, "cannot read the table header");
    }
    f->col_text = cache;
    f->col_text_hdu = hdu;
    return TF_OK;
}

/* Entry of the public calls: a usable handle on table HDU `hdu`, its
 * geometry and column cards read once and then kept in the handle. */
static int enter(tf_file *f, int hdu, table_geom *g) {
    FORWARD_IF_ERROR(tf_check_handle(f));
    const table_cache *cache = f->col_text;
    if (cache && f->col_text_hdu == hdu) {
        FORWARD_IF_ERROR(tf_move_to(f, hdu, NULL));
        *g = cache->g;
        return TF_OK;
    }
    FORWARD_IF_ERROR(table_geom_get(f, hdu, g));
    return col_text_load(f, hdu, g);
}

int tf_table_shape(tf_file *f, int hdu, int64_t *nrows, int *ncols) {
    table_geom g;
    FORWARD_IF_ERROR(enter(f, hdu, &g));
    if (nrows) *nrows = g.nrows;
    if (ncols) *ncols = g.ncols;
    return TF_OK;
}

static int bitpix_of(char code) {
    switch (code) {
    case 'B': return 8;
    case 'I': return 16;
    case 'J': return 32;
    case 'K': return 64;
    case 'E': return -32;
    case 'D': return -64;
    default: return 0;
    }
}

/* Bytes of one stored element of a binary-table type letter (X: a byte
 * holds 8 elements, handled by the caller). */
static int64_t elem_bytes(char code) {
    switch (code) {
    case 'L': case 'X': case 'B': case 'A': return 1;
    case 'I': return 2;
    case 'J': case 'E': return 4;
    case 'K': case 'D': case 'C': return 8;
    case 'M': return 16;
    default: return 0;
    }
}

static tf_dtype raw_of(char code) {
    switch (code) {
    case 'I': return TF_INT16;
    case 'J': return TF_INT32;
    case 'K': return TF_INT64;
    case 'E': case 'C': return TF_FLOAT32;
    case 'D': case 'M': return TF_FLOAT64;
    default: return TF_UINT8;
    }
}

static int column_info(tf_file *f, const table_geom *g, int col, tf_column_info *ci) {
    if (col < 0 || col >= g->ncols)
        return tf_fail(f, TF_ERANGE, 0, "column %d does not exist (the table has %d)", col,
                       g->ncols);
    /* enter() loaded the column cards of this HDU */
    const col_text *ct = &((const table_cache *)f->col_text)->cols[col];
    memset(ci, 0, sizeof *ci);
    ci->index = col;
    int n = col + 1, st = 0;
    const tcolumn *tc = &f->fp->Fptr->tableptr[col];
    snprintf(ci->name, sizeof ci->name, "%s", tc->ttype);
    memcpy(ci->tform, ct->tform, sizeof ci->tform);
    memcpy(ci->tunit, ct->tunit, sizeof ci->tunit);
    memcpy(ci->tdim, ct->tdim, sizeof ci->tdim);
    ci->scale = tc->tscale;
    ci->zero = tc->tzero;
    ci->offset = tc->tbcol;
    ci->has_null = ct->has_null;
    ci->null = ct->null;
    int typecode = 0;
    LONGLONG repeat = 0, width = 0;
    fits_get_coltypell(f->fp, n, &typecode, &repeat, &width, &st);
    RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "column '%s': bad TFORM%d = '%s'", ci->name, n,
                      ci->tform);
    /* The type letter: the first letter of TFORM after the repeat count. */
    const char *t = ci->tform;
    while (*t >= '0' && *t <= '9') t++;
    char letter = (char)(*t >= 'a' && *t <= 'z' ? *t - 32 : *t);

    if (g->ascii) {
        ci->code = letter;
        ci->repeat = 1;
        ci->width = (int64_t)width;
        ci->raw_dtype = TF_UINT8;
        int scaled = ci->scale != 1.0 || ci->zero != 0.0;
        switch (letter) {
        case 'A':
            ci->kind = TF_COL_STRING;
            ci->dtype = TF_UINT8;
            ci->repeat = width;
            ci->ndim = 1;
            ci->shape[0] = width;
            return TF_OK;
        case 'I': ci->dtype = scaled ? TF_FLOAT64 : TF_INT64; break;
        case 'F': case 'E': case 'D': ci->dtype = TF_FLOAT64; break;
        default:
            return tf_fail(f, TF_ECORRUPT, 0, "column '%s': bad TFORM%d = '%s'", ci->name, n,
                           ci->tform);
        }
        ci->kind = TF_COL_FIXED;
        return TF_OK;
    }

    if (letter == 'P' || letter == 'Q') {
        ci->vla = letter;
        ci->kind = TF_COL_VLA;
        char c = t[1];
        ci->code = (char)(c >= 'a' && c <= 'z' ? c - 32 : c);
        ci->width = letter == 'P' ? 8 : 16;
        /* The declared maximum, "PE(100)"; 0 when not given. */
        const char *paren = strchr(t, '(');
        ci->repeat = paren ? strtoll(paren + 1, NULL, 10) : 0;
        ci->ndim = 1;
        ci->shape[0] = -1;
    } else {
        ci->code = letter;
        ci->repeat = repeat;
        ci->kind = letter == 'A' ? TF_COL_STRING : TF_COL_FIXED;
        ci->width = letter == 'X' ? (repeat + 7) / 8 : repeat * elem_bytes(letter);
    }
    if (!elem_bytes(ci->code) || (ci->vla && ci->code == 'X'))
        return tf_fail(f, TF_EUNSUPPORTED, 0, "column '%s': TFORM%d = '%s' is not supported",
                       ci->name, n, ci->tform);
    if (ci->offset < 0 || ci->width < 0 || ci->offset + ci->width > g->rowlen)
        return tf_fail(f, TF_ECORRUPT, 0,
                       "column '%s': TFORM%d = '%s' does not fit in the %lld-byte row",
                       ci->name, n, ci->tform, (long long)g->rowlen);
    ci->raw_dtype = raw_of(ci->code);
    /* A TNULLn the column's integers cannot hold matches nothing to the
     * fast path, but cfitsio compares it cut to the column's type (TNULL1 =
     * -2^63 on a J column made its zeros null; header variants), as with
     * BLANK on images. */
    int64_t lo, hi;
    if (ci->has_null && tf_int_range(ci->raw_dtype, &lo, &hi) &&
        (ci->null < lo || ci->null > hi))
        return tf_fail(f, TF_ECORRUPT, 0, "column '%s': TNULL%d = %lld does not fit its %s values",
                       ci->name, n, (long long)ci->null, tf_dtype_name(ci->raw_dtype));
    switch (ci->code) {
    case 'L': case 'X': ci->dtype = TF_BOOL; break;
    case 'A': ci->dtype = TF_UINT8; break;
    case 'C': ci->dtype = TF_COMPLEX64; break;
    case 'M': ci->dtype = TF_COMPLEX128; break;
    default: ci->dtype = tf_natural_dtype(bitpix_of(ci->code), ci->scale, ci->zero); break;
    }
    if (ci->vla) return TF_OK;

    /* The per-row shape: TDIM reversed (C order), else [repeat], or none
     * for a single element as astropy gives it (X always keeps its axis). */
    if (ci->tdim[0]) {
        int naxis = 0;
        LONGLONG naxes[TF_MAX_DIMS];
        char tdim[72];
        memcpy(tdim, ci->tdim, sizeof tdim);
        fits_decode_tdimll(f->fp, tdim, n, TF_MAX_DIMS, &naxis, naxes, &st);
        RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "column '%s': bad TDIM%d = '%s'", ci->name, n,
                          ci->tdim);
        if (naxis < 1)
            return tf_fail(f, TF_ECORRUPT, 0, "column '%s': TDIM%d = '%s' has %d axes", ci->name,
                           n, ci->tdim, naxis);
        /* Valid FITS (a TDIM may have up to 999): the other columns read. */
        if (naxis > TF_MAX_DIMS)
            return tf_fail(f, TF_EUNSUPPORTED, 0,
                           "column '%s': TDIM%d = '%s' has %d axes; this reader reads at most %d",
                           ci->name, n, ci->tdim, naxis, TF_MAX_DIMS);
        int64_t prod = 1;
        for (int d = 0; d < naxis; d++) {
            if (naxes[d] < 0 || !tf_mul_ok(prod, naxes[d], &prod)) prod = -1;
            ci->shape[naxis - 1 - d] = naxes[d];
        }
        if (prod != ci->repeat)
            return tf_fail(f, TF_ECORRUPT, 0,
                           "column '%s': TDIM%d = '%s' does not match the repeat count %lld",
                           ci->name, n, ci->tdim, (long long)ci->repeat);
        ci->ndim = naxis;
    } else if (ci->repeat != 1 || ci->code == 'X' || ci->code == 'A') {
        ci->ndim = 1;
        ci->shape[0] = ci->repeat;
    }
    return TF_OK;
}

int tf_table_column(tf_file *f, int hdu, int col, tf_column_info *info) {
    table_geom g;
    FORWARD_IF_ERROR(enter(f, hdu, &g));
    if (!info) return tf_fail(f, TF_EINVAL, 0, "no info struct given");
    return column_info(f, &g, col, info);
}

int tf_table_find_column(tf_file *f, int hdu, const char *name, int *col) {
    table_geom g;
    FORWARD_IF_ERROR(enter(f, hdu, &g));
    if (!name || !col) return tf_fail(f, TF_EINVAL, 0, "no column name given");
    int found = -1;
    /* cfitsio keeps every TTYPE parsed: no header search per column. */
    const tcolumn *tc = f->fp->Fptr->tableptr;
    for (int c = 0; c < g.ncols; c++) {
        const char *ttype = tc[c].ttype;
        if (strcmp(ttype, name) == 0) { found = c; break; }
        if (found < 0 && strcasecmp(ttype, name) == 0) found = c;
    }
    if (found < 0) return tf_fail(f, TF_EINVAL, 0, "no column named '%s'", name);
    *col = found;
    return TF_OK;
}

/* Rows [start, start + *nrows) inside the table; nrows -1 means to the end. */
static int check_rows(tf_file *f, const table_geom *g, int64_t start, int64_t *nrows) {
    if (start < 0 || *nrows < -1)
        return tf_fail(f, TF_EINVAL, 0, "start row %lld and row count %lld must be >= 0",
                       (long long)start, (long long)*nrows);
    if (start > g->nrows)
        return tf_fail(f, TF_ERANGE, 0, "start row %lld is past the table's %lld rows",
                       (long long)start, (long long)g->nrows);
    if (*nrows == -1) *nrows = g->nrows - start;
    if (*nrows > g->nrows - start)
        return tf_fail(f, TF_ERANGE, 0, "rows %lld to %lld are past the table's %lld rows",
                       (long long)start, (long long)(start + *nrows - 1), (long long)g->nrows);
    return TF_OK;
}

/* Elements of one row of a fixed or string column in its output. */
static int64_t row_elems(const tf_column_info *ci) {
    int64_t n = 1;
    for (int d = 0; d < ci->ndim; d++) n *= ci->shape[d];
    return n;
}

/* Check every descriptor of a VLA column over the rows and sum the counts
 * (into *nelem) and, when offsets is given, fill offsets[0..nrows]. */
static int vla_scan(tf_file *f, const table_geom *g, const tf_column_info *ci, int64_t start,
                    int64_t nrows, int64_t *nelem, int64_t *offsets) {
    int rc = TF_OK, st = 0;
    LONGLONG *len = NULL, *addr = NULL;
    int64_t esize = elem_bytes(ci->code), total = 0;
    if (offsets) offsets[0] = 0;
    if (nrows > 0) {
        len = malloc((size_t)nrows * sizeof *len);
        addr = malloc((size_t)nrows * sizeof *addr);
        GOTO_ERROR_IF(!len || !addr, f, TF_ENOMEM, "out of memory");
        fits_read_descriptsll(f->fp, ci->index + 1, start + 1, nrows, len, addr, &st);
        GOTO_IF_CFITSIO(st, f, TF_ECORRUPT, "column '%s': cannot read the array descriptors",
                        ci->name);
    }
    for (int64_t r = 0; r < nrows; r++) {
        int64_t bytes, end;
        if (len[r] < 0 || addr[r] < 0 || !tf_mul_ok(len[r], esize, &bytes) ||
            __builtin_add_overflow((int64_t)addr[r], bytes, &end) || end > g->heap_avail) {
            rc = tf_fail(f, TF_ECORRUPT, 0,
                         "column '%s', row %lld: the array of %lld elements at heap offset "
                         "%lld lies outside the %lld-byte heap",
                         ci->name, (long long)(start + r), (long long)len[r],
                         (long long)addr[r], (long long)g->heap_avail);
            goto cleanup;
        }
        /* Arrays may overlap (one heap can serve every row): the sum is
         * bounded by rows times heap, not by the heap. */
        if (__builtin_add_overflow(total, (int64_t)len[r], &total)) {
            rc = tf_fail(f, TF_ELIMIT, 0,
                         "column '%s': the arrays of rows %lld to %lld hold more than 2^63 "
                         "elements", ci->name, (long long)start, (long long)(start + r));
            goto cleanup;
        }
        if (offsets) offsets[r + 1] = total;
    }
    *nelem = total;
cleanup:
    free(len);
    free(addr);
    return rc;
}

int tf_table_rows(tf_file *f, int hdu, int64_t start, int64_t *nrows) {
    table_geom g;
    FORWARD_IF_ERROR(enter(f, hdu, &g));
    if (!nrows) return tf_fail(f, TF_EINVAL, 0, "no row count given");
    return check_rows(f, &g, start, nrows);
}

/* The most bytes one table read may produce (tf_table_output). */
static int64_t output_limit(const tf_file *f) {
    int64_t size = tf_direct(f) ? f->file_size : (int64_t)f->fp->Fptr->logfilesize, lim, cap;
    if (!tf_mul_ok(size, TF_TABLE_GROWTH, &lim)) lim = INT64_MAX;
    if (!tf_mul_ok(tf_get_option(TF_OPT_TABLE_MAX_MB), (int64_t)1 << 20, &cap)) cap = INT64_MAX;
    return lim > cap ? lim : cap;
}

/* TF_ELIMIT for a read of `total` bytes (INT64_MAX: more than int64
 * counts) that column `ci` took past `limit`. */
static int too_big(tf_file *f, const tf_column_info *ci, int64_t total, int64_t limit) {
    int64_t size = tf_direct(f) ? f->file_size : (int64_t)f->fp->Fptr->logfilesize, growth;
    char amount[64], why[128];
    if (total == INT64_MAX) snprintf(amount, sizeof amount, "more than 2^63 bytes");
    else snprintf(amount, sizeof amount, "%lld bytes", (long long)total);
    if (tf_mul_ok(size, TF_TABLE_GROWTH, &growth) && growth >= limit)
        snprintf(why, sizeof why, "%d times the file's %lld bytes", TF_TABLE_GROWTH,
                 (long long)size);
    else
        snprintf(why, sizeof why, "the table_max_mb setting, %lld MiB",
                 (long long)tf_get_option(TF_OPT_TABLE_MAX_MB));
    return tf_fail(f, TF_ELIMIT, 0,
                   "column '%s': the read would produce %s in all, more than the %lld bytes a "
                   "table read may produce (%s; variable-length arrays may share heap bytes: "
                   "torchfits_ops.set_table_max_mb or TORCHFITS_TABLE_MAX_MB allows more)",
                   ci->name, amount, (long long)limit, why);
}

int tf_table_vla_size(tf_file *f, int hdu, int col, int64_t start, int64_t nrows,
                      int64_t *nelem) {
    table_geom g;
    tf_column_info ci;
    FORWARD_IF_ERROR(enter(f, hdu, &g));
    FORWARD_IF_ERROR(column_info(f, &g, col, &ci));
    if (ci.kind != TF_COL_VLA)
        return tf_fail(f, TF_EINVAL, 0, "column '%s' is not a variable-length array", ci.name);
    FORWARD_IF_ERROR(check_rows(f, &g, start, &nrows));
    FORWARD_IF_ERROR(vla_scan(f, &g, &ci, start, nrows, nelem, NULL));
    int64_t bytes, limit = output_limit(f);
    if (!tf_mul_ok(*nelem, (int64_t)tf_dtype_size(ci.dtype), &bytes)) bytes = INT64_MAX;
    if (bytes > limit) return too_big(f, &ci, bytes, limit);
    return TF_OK;
}

/* ---- cfitsio's column reads ---- */

static int cfitsio_type(const tf_column_info *ci) {
    if (ci->code == 'X') return TBIT;
    if (ci->code == 'A') return TSTRING;
    return tf_cfitsio_type(ci->dtype);
}

/* The stored bytes of character column `ci` (fixed width or, with n the
 * row's length, a VLA) over `nrows` rows from `row` (0-based): cfitsio
 * reads a binary table's A column as bytes when asked for TBYTE, with
 * nothing stripped or cut at a NUL (fits_read_col_str ends each string at
 * its first NUL and drops trailing blanks). An ASCII table's fields are
 * copied from its rows (fits_read_tblbytes), a block of rows at a time. */
static int read_chars(tf_file *f, const table_geom *g, const tf_column_info *ci, int64_t row,
                      int64_t nrows, int64_t per, char *dst) {
    int rc = TF_OK, st = 0, anynul = 0;
    char *buf = NULL;
    if (nrows == 0 || per == 0) return TF_OK;
    if (!g->ascii) {
        fits_read_col(f->fp, TBYTE, ci->index + 1, row + 1, 1, nrows * per, NULL, dst, &anynul,
                      &st);
        RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "column '%s': cannot read rows %lld to %lld",
                          ci->name, (long long)row, (long long)(row + nrows - 1));
        return TF_OK;
    }
    /* cfitsio checks TBCOLn and the width against NAXIS1, except for
     * rows of no bytes. */
    RETURN_ERROR_IF(ci->offset < 0 || per > g->rowlen - ci->offset, f, TF_ECORRUPT,
                    "column '%s': TFORM%d = '%s' does not fit in the %lld-byte row", ci->name,
                    ci->index + 1, ci->tform, (long long)g->rowlen);
    int64_t block = BLOCK_BYTES / g->rowlen;
    if (block < 1) block = 1;
    if (block > nrows) block = nrows;
    GOTO_ERROR_IF(!(buf = malloc((size_t)(block * g->rowlen))), f, TF_ENOMEM, "out of memory");
    for (int64_t r = 0; r < nrows; r += block) {
        int64_t k = nrows - r < block ? nrows - r : block;
        fits_read_tblbytes(f->fp, row + r + 1, 1, k * g->rowlen, (unsigned char *)buf, &st);
        GOTO_IF_CFITSIO(st, f, TF_ECORRUPT, "column '%s': cannot read rows %lld to %lld",
                        ci->name, (long long)(row + r), (long long)(row + r + k - 1));
        for (int64_t i = 0; i < k; i++)
            memcpy(dst + (r + i) * per, buf + i * g->rowlen + ci->offset, (size_t)per);
    }
cleanup:
    free(buf);
    return rc;
}

/* `nelem` values of a column starting at row `row`, element `first` (both
 * 1-based) into dst, converted by cfitsio to the column's dtype. */
static int read_values(tf_file *f, const tf_column_info *ci, int64_t row, int64_t first,
                       int64_t nelem, void *dst) {
    if (nelem == 0) return TF_OK;
    int st = 0, anynul = 0, type = cfitsio_type(ci);
    float nan32 = NAN;
    double nan64 = NAN;
    void *nulval = NULL;
    if (ci->dtype == TF_FLOAT32) nulval = &nan32;
    if (ci->dtype == TF_FLOAT64) nulval = &nan64;
    if (type == TBIT) fits_read_col_bit(f->fp, ci->index + 1, row, first, nelem, dst, &st);
    else fits_read_col(f->fp, type, ci->index + 1, row, first, nelem, nulval, dst, &anynul, &st);
    RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "column '%s': cannot read row %lld", ci->name,
                      (long long)(row - 1));
    /* cfitsio hands a logical byte other than 'T', 'F' and NUL back as it
     * is (4 for 4), which is no bool: torch's bool holds 0 or 1. */
    if (ci->code == 'L')
        for (int64_t i = 0; i < nelem; i++) ((char *)dst)[i] = ((char *)dst)[i] != 0;
    return TF_OK;
}

/* One ASCII-table field with blanks trimmed on both sides, in place. */
static char *trim(char *s) {
    while (*s == ' ') s++;
    size_t n = strlen(s);
    while (n > 0 && s[n - 1] == ' ') s[--n] = 0;
    return s;
}

/* One ASCII-table number, as Fortran writes it ('D' exponents, an implied
 * decimal point of Fw.d when the field has none); NaN for a blank field or
 * the column's TNULL string. strtod rounds correctly where cfitsio's own
 * parser can miss the last bit, and astropy rounds correctly too. */
static int parse_ascii(char *s, const char *tnull, int decimals, double scale, double zero,
                       double *out) {
    char *p = trim(s), *end;
    if (!*p || (tnull[0] && strcmp(p, tnull) == 0)) { *out = NAN; return 1; }
    int has_point = 0;
    for (char *q = p; *q; q++) {
        if (*q == 'D' || *q == 'd') *q = 'E';
        if (*q == '.') has_point = 1;
    }
    double v = strtod(p, &end);
    if (!has_point && decimals > 0) v /= pow(10.0, decimals);
    *out = scale == 1.0 && zero == 0.0 ? v : v * scale + zero;
    return end != p && !*end;
}

/* An unscaled ASCII integer; 0 for a blank field or TNULL, as astropy. */
static int parse_ascii_int(char *s, const char *tnull, int64_t *out) {
    char *p = trim(s), *end;
    if (!*p || (tnull[0] && strcmp(p, tnull) == 0)) { *out = 0; return 1; }
    *out = strtoll(p, &end, 10);
    return end != p && !*end;
}

/* Numeric ASCII columns: the fields as stored (read_chars), then parsed.
 * (cfitsio's string reader copies a field into a buffer of 28,799
 * characters and refused a wider one, which FITS allows, as corrupt.) */
static int read_ascii_numbers(tf_file *f, const table_geom *g, const tf_column_info *ci,
                              int64_t start, int64_t nrows, void *dst) {
    int rc = TF_OK;
    int64_t width = ci->width;
    const char *dot = strchr(ci->tform, '.');
    int decimals = dot ? atoi(dot + 1) : 0;
    char tnull[sizeof f->fp->Fptr->tableptr[0].strnull + 1];
    snprintf(tnull, sizeof tnull, "%s", f->fp->Fptr->tableptr[ci->index].strnull);
    char *t = trim(tnull);
    int64_t block = BLOCK_BYTES / (width > 0 ? width : 1);
    if (block < 1) block = 1;
    if (block > nrows) block = nrows;
    char *text = malloc((size_t)(block * width) + 1), *field = malloc((size_t)width + 1);
    GOTO_ERROR_IF(!text || !field, f, TF_ENOMEM, "out of memory");
    for (int64_t r = 0; r < nrows; r += block) {
        int64_t k = nrows - r < block ? nrows - r : block;
        rc = read_chars(f, g, ci, start + r, k, width, text);
        if (rc) goto cleanup;
        for (int64_t i = 0; i < k; i++) {
            /* up to a NUL, as cfitsio's reader gave it */
            memcpy(field, text + i * width, (size_t)width);
            field[width] = 0;
            int ok = ci->dtype == TF_INT64
                   ? parse_ascii_int(field, t, (int64_t *)dst + r + i)
                   : parse_ascii(field, t, decimals, ci->scale, ci->zero, (double *)dst + r + i);
            GOTO_ERROR_IF(!ok, f, TF_ECORRUPT, "column '%s', row %lld: '%.40s' is not a number",
                          ci->name, (long long)(start + r + i), trim(field));
        }
    }
cleanup:
    free(text);
    free(field);
    return rc;
}

static int read_column_cfitsio(tf_file *f, const table_geom *g, const tf_column_info *ci,
                               int64_t start, int64_t nrows, char *dst) {
    int64_t per = row_elems(ci);
    if (g->ascii && ci->kind == TF_COL_FIXED) return read_ascii_numbers(f, g, ci, start, nrows, dst);
    if (ci->kind == TF_COL_STRING) return read_chars(f, g, ci, start, nrows, per, dst);
    if (ci->code == 'X') {  /* bits one row at a time */
        for (int64_t r = 0; r < nrows; r++)
            FORWARD_IF_ERROR(read_values(f, ci, start + r + 1, 1, per, dst + r * per));
        return TF_OK;
    }
    return read_values(f, ci, start + 1, 1, nrows * per, dst);
}

static int read_vla(tf_file *f, const table_geom *g, const tf_column_info *ci, int64_t start,
                    int64_t nrows, const tf_table_out *o) {
    int64_t nelem = 0;
    size_t osize = tf_dtype_size(ci->dtype);
    if (o->offsets_bytes != (size_t)(nrows + 1) * sizeof(int64_t) || !o->offsets)
        return tf_fail(f, TF_EBUFSIZE, 0, "column '%s': offsets buffer has %zu bytes, need %zu",
                       ci->name, o->offsets_bytes, (size_t)(nrows + 1) * sizeof(int64_t));
    FORWARD_IF_ERROR(vla_scan(f, g, ci, start, nrows, &nelem, o->offsets));
    if (o->data_bytes != (size_t)nelem * osize || (!o->data && nelem))
        return tf_fail(f, TF_EBUFSIZE, 0, "column '%s': buffer has %zu bytes, the read needs %zu",
                       ci->name, o->data_bytes, (size_t)nelem * osize);
    char *dst = o->data;
    for (int64_t r = 0; r < nrows; r++) {
        int64_t n = o->offsets[r + 1] - o->offsets[r];
        if (n == 0) continue;
        if (ci->code == 'A') FORWARD_IF_ERROR(read_chars(f, g, ci, start + r, 1, n, dst));
        else FORWARD_IF_ERROR(read_values(f, ci, start + r + 1, 1, n, dst));
        dst += n * (int64_t)osize;
    }
    return TF_OK;
}

/* ---- the block path ---- */

typedef struct block_col {
    const tf_column_info *ci;
    tf_conv conv;
    int64_t per;          /* output elements per row */
    int64_t out_row;      /* output bytes per row */
    char *dst;            /* output of the first row read */
} block_col;

typedef struct block_job {
    tf_file *f;
    const table_geom *g;
    const block_col *cols;
    int ncols;
    int64_t first, nrows;  /* table rows of this job */
    int64_t out_first;     /* output row of `first` */
    int use_fd;
    int rc;
} block_job;

/* Copy `w` bytes at src + i * stride to dst + i * w, for i < n. Constant
 * widths let the compiler turn each copy into one load and store. Other
 * widths up to 32 bytes (strings such as 20A, vectors such as 3E) copy as
 * two loads and stores of a constant size that overlap in the middle: a
 * memcpy call of a variable size per row cost as much again as the loop. */
static void gather(char *restrict dst, const char *restrict src, size_t stride, size_t w,
                   int64_t n) {
#define GATHER_W(W) \
    for (int64_t i = 0; i < n; i++) memcpy(dst + i * (W), src + i * stride, (W)); \
    return;
#define GATHER_2X(H) \
    for (int64_t i = 0; i < n; i++) { \
        char *d = dst + i * w; \
        const char *s = src + i * stride; \
        memcpy(d, s, (H)); \
        memcpy(d + w - (H), s + w - (H), (H)); \
    } \
    return;
    switch (w) {
    case 1: for (int64_t i = 0; i < n; i++) dst[i] = src[i * stride]; return;
    case 2: GATHER_W(2)
    case 4: GATHER_W(4)
    case 8: GATHER_W(8)
    case 16: GATHER_W(16)
    default:
        if (w > 16 && w < 32) { GATHER_2X(16) }
        if (w > 8 && w < 16) { GATHER_2X(8) }
        if (w > 4 && w < 8) { GATHER_2X(4) }
        if (w == 3) { GATHER_2X(2) }
        GATHER_W(w)
    }
#undef GATHER_2X
#undef GATHER_W
}

/* One block of k rows at `rows` (stride rowlen) into a column's output. */
static void scatter_col(const block_col *bc, const char *rows, size_t rowlen, int64_t k,
                        char *dst, char *scratch) {
    const tf_column_info *ci = bc->ci;
    const char *src = rows + ci->offset;
    size_t w = (size_t)ci->width;
    if (w == 0 || k == 0) return;
    switch (ci->code) {
    case 'A':
        /* The stored bytes, every one: real files keep binary data in
         * character columns (astrometry.net index files), and astropy and
         * fitsio keep the bytes after a NUL. Stripping is the Python
         * layer's (table.py). */
        gather(dst, src, rowlen, w, k);
        return;
    case 'L':
        /* 'T' true, 'F' false, NUL null (false here). Any other byte is not
         * a logical; cfitsio reads it as true, and so does the fast path,
         * so that both paths agree (astropy and fitsio read it as false;
         * header variants: the paths disagreed on heap bytes read as a
         * logical column, and cfitsio's path returned bools of 4). */
        gather(dst, src, rowlen, w, k);
        for (int64_t i = 0; i < k * (int64_t)w; i++) dst[i] = dst[i] != 0 && dst[i] != 'F';
        return;
    case 'X':
        gather(scratch, src, rowlen, w, k);
        for (int64_t i = 0; i < k; i++) {
            const unsigned char *b = (const unsigned char *)scratch + i * w;
            char *d = dst + i * bc->per;
            for (int64_t j = 0; j < bc->per; j++) d[j] = (b[j >> 3] >> (7 - (j & 7))) & 1;
        }
        return;
    default: {
        /* complex values convert as pairs of floats */
        size_t n = (size_t)(k * ci->repeat) * (ci->code == 'C' || ci->code == 'M' ? 2 : 1);
        /* one value a row: swap straight out of the block */
        if (n == (size_t)k && tf_convert_strided(&bc->conv, src, rowlen, dst, n)) return;
        if (tf_conv_inplace(&bc->conv)) {
            gather(dst, src, rowlen, w, k);
            tf_convert(&bc->conv, dst, dst, n);
        } else {
            gather(scratch, src, rowlen, w, k);
            tf_convert(&bc->conv, scratch, dst, n);
        }
    }
    }
}

static int block_run(block_job *j) {
    tf_file *f = j->f;
    const table_geom *g = j->g;
    size_t rowlen = (size_t)g->rowlen;
    int64_t per_block = rowlen ? BLOCK_BYTES / (int64_t)rowlen : j->nrows;
    if (per_block < 1) per_block = 1;
    if (per_block > j->nrows) per_block = j->nrows;
    size_t block_bytes = (size_t)per_block * rowlen;
    char *buf = malloc(block_bytes ? block_bytes : 1);
    char *scratch = malloc(block_bytes ? block_bytes : 1);
    if (!buf || !scratch) {
        free(buf);
        free(scratch);
        return TF_ENOMEM;
    }
    /* One column that is the whole row, stored as it is returned (bytes,
     * or values converted in place): its rows are read straight into the
     * output, the copy through the block saved (a 20A table of one column
     * spent as long in that copy as in the read). */
    const block_col *one = j->ncols == 1 ? &j->cols[0] : NULL;
    const int direct =
        j->use_fd && one && one->ci->offset == 0 && (size_t)one->out_row == rowlen &&
        (one->ci->code == 'A' ||
         (one->ci->kind == TF_COL_FIXED && one->ci->code != 'L' && one->ci->code != 'X' &&
          tf_conv_inplace(&one->conv)));
    int rc = TF_OK;
    for (int64_t r = 0; r < j->nrows; r += per_block) {
        int64_t k = j->nrows - r < per_block ? j->nrows - r : per_block;
        size_t bytes = (size_t)k * rowlen;
        if (direct) {
            char *dst = one->dst + (j->out_first + r) * one->out_row;
            rc = tf_read_full(f, dst, bytes, g->data_offset + (j->first + r) * (int64_t)rowlen);
            if (rc) break;
            if (one->ci->code != 'A') {
                char c = one->ci->code;
                size_t n = (size_t)(k * one->ci->repeat) * (c == 'C' || c == 'M' ? 2 : 1);
                tf_convert(&one->conv, dst, dst, n);
            }
            continue;
        }
        if (j->use_fd) {
            rc = tf_read_full(f, buf, bytes, g->data_offset + (j->first + r) * (int64_t)rowlen);
        } else if (bytes) {
            int st = 0;
            fits_read_tblbytes(f->fp, j->first + r + 1, 1, (LONGLONG)bytes,
                               (unsigned char *)buf, &st);
            if (st) rc = tf_fail(f, TF_ECORRUPT, st, "cannot read rows %lld to %lld",
                                 (long long)(j->first + r), (long long)(j->first + r + k - 1));
        }
        if (rc) break;
        for (int c = 0; c < j->ncols; c++) {
            const block_col *bc = &j->cols[c];
            scatter_col(bc, buf, rowlen, k, bc->dst + (j->out_first + r) * bc->out_row, scratch);
        }
    }
    free(buf);
    free(scratch);
    return rc;
}

static void *block_worker(void *arg) {
    block_job *j = arg;
    j->rc = block_run(j);
    return NULL;
}

static int read_blocks(tf_file *f, const table_geom *g, const block_col *cols, int ncols,
                       int64_t start, int64_t nrows) {
    if (ncols == 0 || nrows == 0) return TF_OK;
    int use_fd = tf_direct(f);
    int threads = use_fd && nrows * g->rowlen >= THREAD_MIN_BYTES ? tf_auto_threads(0) : 1;
    block_job jobs[TF_MAX_THREADS];
    int64_t per = (nrows + threads - 1) / threads;
    int nt = 0;
    for (int64_t first = 0; first < nrows; first += per, nt++)
        jobs[nt] = (block_job){f, g, cols, ncols, start + first,
                               nrows - first < per ? nrows - first : per, first, use_fd, TF_OK};
    tf_run_jobs(block_worker, jobs, sizeof jobs[0], nt);
    int rc = TF_OK;
    for (int t = 0; t < nt; t++)
        if (rc == TF_OK && jobs[t].rc != TF_OK) rc = jobs[t].rc;
    if (rc == TF_ENOMEM) return tf_fail(f, TF_ENOMEM, 0, "out of memory");
    return rc;
}

/* Column `col`'s description with the dtype a read asks for (AUTO, or a
 * wider exact type) in ci->dtype. */
static int out_column(tf_file *f, const table_geom *g, const tf_table_out *o,
                      tf_column_info *ci) {
    FORWARD_IF_ERROR(column_info(f, g, o->col, ci));
    tf_dtype want = o->dtype;
    if (want != TF_DTYPE_AUTO && want != ci->dtype) {
        RETURN_ERROR_IF(!((ci->dtype == TF_UINT16 && want == TF_INT32) ||
                          (ci->dtype == TF_UINT32 && want == TF_INT64) ||
                          (ci->dtype == TF_UINT64 && want == TF_FLOAT64)),
                        f, TF_EINVAL, "column '%s': cannot read %s data as %s", ci->name,
                        tf_dtype_name(ci->dtype), tf_dtype_name(want));
        ci->dtype = want;
    }
    return TF_OK;
}

int tf_table_output(tf_file *f, int hdu, int64_t start, int64_t nrows, tf_table_out *outs,
                    int nouts) {
    table_geom g;
    FORWARD_IF_ERROR(enter(f, hdu, &g));
    if (nouts < 0 || (nouts && !outs)) return tf_fail(f, TF_EINVAL, 0, "no columns given");
    FORWARD_IF_ERROR(check_rows(f, &g, start, &nrows));
    const int64_t limit = output_limit(f);
    int64_t total = 0;
    for (int i = 0; i < nouts; i++) {
        tf_column_info ci;
        FORWARD_IF_ERROR(out_column(f, &g, &outs[i], &ci));
        int64_t data, offsets = 0, nelem = 0, osize = (int64_t)tf_dtype_size(ci.dtype);
        if (ci.kind == TF_COL_VLA) {
            FORWARD_IF_ERROR(vla_scan(f, &g, &ci, start, nrows, &nelem, NULL));
            offsets = (nrows + 1) * (int64_t)sizeof(int64_t); /* rows: checked against the file */
        } else {
            nelem = nrows * row_elems(&ci); /* within the rows' bytes, 8 elements a byte at most */
        }
        if (!tf_mul_ok(nelem, osize, &data) || __builtin_add_overflow(total, data, &total) ||
            __builtin_add_overflow(total, offsets, &total))
            total = INT64_MAX;
        if (total > limit) return too_big(f, &ci, total, limit);
        outs[i].data_bytes = (size_t)data;
        outs[i].offsets_bytes = (size_t)offsets;
    }
    return TF_OK;
}

int tf_table_read(tf_file *f, int hdu, int64_t start, int64_t nrows, tf_table_out *outs,
                  int nouts, tf_read_path path) {
    table_geom g;
    FORWARD_IF_ERROR(enter(f, hdu, &g));
    if (nouts < 0 || (nouts && !outs)) return tf_fail(f, TF_EINVAL, 0, "no columns given");
    FORWARD_IF_ERROR(check_rows(f, &g, start, &nrows));
    int rc = TF_OK, nblock = 0;
    tf_column_info *infos = calloc((size_t)nouts + 1, sizeof *infos);
    block_col *bcols = calloc((size_t)nouts + 1, sizeof *bcols);
    GOTO_ERROR_IF(!infos || !bcols, f, TF_ENOMEM, "out of memory");
    for (int i = 0; i < nouts; i++) {
        tf_column_info *ci = &infos[i];
        rc = out_column(f, &g, &outs[i], ci);
        if (rc) goto cleanup;
        if (ci->kind == TF_COL_VLA) continue;
        int64_t per = row_elems(ci);
        size_t want = (size_t)(nrows * per) * tf_dtype_size(ci->dtype);
        GOTO_ERROR_IF(outs[i].data_bytes != want || (!outs[i].data && want), f, TF_EBUFSIZE,
                      "column '%s': buffer has %zu bytes, the read needs %zu", ci->name,
                      outs[i].data_bytes, want);
        if (g.ascii || path == TF_PATH_CFITSIO) continue;
        block_col *bc = &bcols[nblock++];
        bc->ci = ci;
        bc->per = per;
        bc->out_row = per * (int64_t)tf_dtype_size(ci->dtype);
        bc->dst = outs[i].data;
        tf_advise_huge(outs[i].data, outs[i].data_bytes, (size_t)4 << 20);
        if (ci->kind == TF_COL_FIXED && ci->code != 'L' && ci->code != 'X') {
            tf_dtype out = ci->dtype == TF_COMPLEX64 ? TF_FLOAT32
                         : ci->dtype == TF_COMPLEX128 ? TF_FLOAT64 : ci->dtype;
            if (!tf_conv_init(&bc->conv, ci->raw_dtype, out, ci->scale, ci->zero, ci->has_null,
                              ci->null)) {
                rc = tf_fail(f, TF_EUNSUPPORTED, 0, "column '%s': no conversion from %s to %s",
                             ci->name, tf_dtype_name(ci->raw_dtype), tf_dtype_name(out));
                goto cleanup;
            }
        }
    }
    rc = read_blocks(f, &g, bcols, nblock, start, nrows);
    if (rc) goto cleanup;
    for (int i = 0; i < nouts; i++) {
        const tf_column_info *ci = &infos[i];
        if (ci->kind == TF_COL_VLA) rc = read_vla(f, &g, ci, start, nrows, &outs[i]);
        else if (g.ascii || path == TF_PATH_CFITSIO)
            rc = read_column_cfitsio(f, &g, ci, start, nrows, outs[i].data);
        if (rc) goto cleanup;
    }
cleanup:
    free(infos);
    free(bcols);
    return rc;
}
