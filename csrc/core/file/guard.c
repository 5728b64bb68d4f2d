/*
 * guard.c - header checks made before cfitsio parses an HDU.
 *
 * cfitsio 4.2 trusts some keywords of tile-compressed images while it parses
 * the header (on fits_movabs_hdu, fits_get_num_hdus, fits_movnam_hdu): a
 * ZTILEn of 0 divides by zero (SIGFPE), a RICE block size of 0 too, a RICE
 * BYTEPIX or block size out of range overruns its buffers, a float ZBITPIX
 * on integer RICE data overruns the tile buffer, a ZDITHER0 outside
 * 1..10000 indexes outside its table of random numbers, and a 70-character
 * unquoted TTYPEn overflows a 70-byte field. Each was found by the
 * fuzzer (tests/crashers/). Before cfitsio first reads an HDU's header, the
 * core reads the raw cards of that header (through cfitsio's own byte
 * reader, so gzip files are covered) and refuses those values.
 *
 * The same pass reads the HDU's layout (BITPIX, NAXIS, NAXISn, PCOUNT,
 * GCOUNT, GROUPS) before cfitsio does:
 *  - cfitsio's description of an image holds 99 axes (imgnaxis[99]), and
 *    its header parse writes NAXISn past them: SIGSEGV from NAXIS = 104
 *    on, valid FITS up to 999. An extension with NAXIS of 100 to 999 is
 *    skipped: never given to cfitsio, described from its raw cards, and
 *    cfitsio is told where the next HDU starts (tf_skip), so the other
 *    HDUs stay readable; reading it is TF_EUNSUPPORTED. A primary HDU
 *    with that many axes makes the whole file TF_EUNSUPPORTED (cfitsio
 *    parses the primary header when it opens a file). NAXIS past 999 is
 *    not FITS: TF_ECORRUPT.
 *  - an extension whose data runs past the end of the file says so, the
 *    same wherever it is reached (info, num_hdus, open, a read): cfitsio
 *    counted a small file one HDU short (its memory driver refused to
 *    grow, and the count stopped there) and read of that HDU said "could
 *    not allocate memory".
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../common/internal.h"

int ffgbyt(fitsfile *fptr, LONGLONG nbytes, void *buffer, int *status);

#define BLOCK 2880
#define CARD 80

typedef struct zhdr {
    int is_bintable, zimage;
    char zcmptype[24];
    int has_zbitpix;
    long long zbitpix;
    int has_zscale;  /* a ZSCALE column or keyword: quantized floats */
    int zero_axis;   /* a ZNAXISn of 0 */
    int quantiz_none; /* a ZQUANTIZ of 'NONE': floats stored losslessly */
} zhdr;

/* Values are read from column 10, right after the "=", as cfitsio reads
 * them: the standard's blank in column 10 may be missing, and a value
 * that starts there is still the value cfitsio takes ("=0   32" is 0 to
 * cfitsio; read from column 11 it looked like 32; fuzzer:
 * fpe-rice-zval1-no-blank). */
#define VALUE_COL 9

/* The integer value of a card, 0 when it has none. */
static int card_int(const char *card, long long *v) {
    char buf[CARD - VALUE_COL + 1];
    memcpy(buf, card + VALUE_COL, sizeof buf - 1);
    buf[sizeof buf - 1] = 0;
    char *end;
    *v = strtoll(buf, &end, 10);
    if (end == buf) return 0;
    while (*end == ' ') end++;
    return *end == 0 || *end == '/';
}

/* The string value of a card, unquoted, trailing blanks removed. */
static void card_str(const char *card, char *out, size_t n) {
    const char *q = memchr(card + VALUE_COL, '\'', CARD - VALUE_COL);
    size_t k = 0;
    if (q)
        for (q++; q < card + CARD && *q != '\'' && k + 1 < n; q++) out[k++] = *q;
    while (k > 0 && out[k - 1] == ' ') k--;
    out[k] = 0;
}

/* Keyword names compare regardless of case, as cfitsio's lookups do: it
 * found "ZNAXiS2" for ZNAXIS2 and parsed its value, which the guard had
 * not checked (fuzzer: abort-znaxis-lower-case). */
static int upper(char c) { return c >= 'a' && c <= 'z' ? c - ('a' - 'A') : c; }

static int name_starts(const char *card, const char *stem, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (upper(card[i]) != stem[i]) return 0;
    return 1;
}

static int key_is(const char *card, const char *key) {
    size_t n = strlen(key);
    if (!name_starts(card, key, n)) return 0;
    for (size_t i = n; i < 8; i++)
        if (card[i] != ' ') return 0;
    return card[8] == '=';
}

/* Key with a numeric suffix: "ZTILE" matches ZTILE1..ZTILE999. */
static int key_indexed(const char *card, const char *stem) {
    size_t n = strlen(stem);
    if (!name_starts(card, stem, n) || card[n] < '1' || card[n] > '9') return 0;
    size_t i = n + 1;
    while (i < 8 && card[i] >= '0' && card[i] <= '9') i++;
    while (i < 8 && card[i] == ' ') i++;
    return i == 8 && card[8] == '=';
}

static int is_rice(const char *t) { return strncmp(t, "RICE", 4) == 0; }

/* The end of a number at p (before e): [+-]digits[.digits][X[+-]digits],
 * or with the digits after the point only, X one of `exps`; NULL when
 * there is none. */
static const char *scan_number(const char *p, const char *e, const char *exps) {
    if (p < e && (*p == '+' || *p == '-')) p++;
    int digits = 0;
    while (p < e && *p >= '0' && *p <= '9') p++, digits++;
    if (p < e && *p == '.')
        for (p++; p < e && *p >= '0' && *p <= '9'; p++) digits++;
    if (!digits) return NULL;
    if (p < e && *p && strchr(exps, *p)) {
        p++;
        if (p < e && (*p == '+' || *p == '-')) p++;
        if (p == e || *p < '0' || *p > '9') return NULL;
        while (p < e && *p >= '0' && *p <= '9') p++;
    }
    return p;
}

/* Whether the card's value is a number (any exponent letter cfitsio
 * reads), then blanks or a comment. */
static int card_is_number(const char *card) {
    const char *p = card + VALUE_COL, *end = card + CARD;
    while (p < end && *p == ' ') p++;
    if (!(p = scan_number(p, end, "EDed"))) return 0;
    while (p < end && *p == ' ') p++;
    return p == end || *p == '/';
}

/* Keywords cfitsio reads as numbers. Its integer parser (ffc2j) builds an
 * error message with strncat one byte past its buffer for a long value
 * that is not a number: glibc's fortified build aborts the process, in
 * the plain build too (fuzzer: abort-zbitpix-garbage). */
static int numeric_key(const char *card) {
    static const char *const keys[] = {"BITPIX", "NAXIS", "PCOUNT", "GCOUNT", "TFIELDS",
                                       "THEAP", "EXTVER", "BLANK", "BSCALE", "BZERO",
                                       "ZNAXIS", "ZBITPIX", "ZBLANK", "ZDITHER0", "ZPCOUNT",
                                       "ZGCOUNT", "ZSCALE", "ZZERO"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
        if (key_is(card, keys[k])) return 1;
    return key_indexed(card, "NAXIS") || key_indexed(card, "ZNAXIS") ||
           key_indexed(card, "ZTILE") || key_indexed(card, "ZVAL") ||
           key_indexed(card, "TSCAL") || key_indexed(card, "TZERO");
}

/* RICE_1's ZVAL1 is the block size (16 or 32 in every writer), ZVAL2 the
 * bytes per pixel. */
static int rice_val_ok(int i, int v) {
    return i == 0 ? v == 16 || v == 32 : v == 1 || v == 2 || v == 4 || v == 8;
}

/* Check one card; `h` collects what later checks need. */
static int check_card(tf_file *f, const char *card, zhdr *h, int *rice_vals) {
    long long v;
    char s[24];
    if (numeric_key(card) && !card_is_number(card))
        return tf_fail(f, TF_ECORRUPT, 0, "%.8s is not a number", card);
    if (key_is(card, "XTENSION")) {
        card_str(card, s, sizeof s);
        /* cfitsio reads all three as binary tables, and a compressed image
         * in an A3DTABLE skipped these checks (a RICE block size of 0 then
         * divided in cfitsio); the case is ignored, and a second XTENSION
         * card cannot clear the first's, to be safe. */
        h->is_bintable |= strcasecmp(s, "BINTABLE") == 0 || strcasecmp(s, "A3DTABLE") == 0 ||
                          strcasecmp(s, "3DTABLE") == 0;
    } else if (key_is(card, "ZIMAGE")) {
        const char *p = card + VALUE_COL;
        while (p < card + CARD && *p == ' ') p++;
        h->zimage = p < card + CARD && upper(*p) == 'T';
    } else if (key_is(card, "ZCMPTYPE")) {
        card_str(card, h->zcmptype, sizeof h->zcmptype);
    } else if (key_is(card, "ZQUANTIZ")) {
        card_str(card, s, sizeof s);
        h->quantiz_none |= strcasecmp(s, "NONE") == 0;
    } else if (key_is(card, "ZBITPIX")) {
        /* cfitsio's parse of a garbage value overflowed a buffer of its
         * own in ffc2j (glibc abort; fuzzer: abort-zbitpix-garbage). */
        h->has_zbitpix = card_int(card, &h->zbitpix);
        if (!h->has_zbitpix) return tf_fail(f, TF_ECORRUPT, 0, "ZBITPIX is not an integer");
    } else if (key_is(card, "ZSCALE")) {
        h->has_zscale = 1;
    } else if (key_indexed(card, "TTYPE") || key_indexed(card, "TUNIT") ||
               key_indexed(card, "TFORM") || key_indexed(card, "TDIM") ||
               key_indexed(card, "TDISP")) {
        /* cfitsio copies these values into fixed 70-byte fields with
         * strcpy: a 70-character unquoted value overflows (glibc aborts,
         * found by the fuzzer: overflow-ttype-unquoted). They are strings. */
        const char *q = card + VALUE_COL;
        while (q < card + CARD && *q == ' ') q++;
        if (q == card + CARD || *q != '\'' || !memchr(q + 1, '\'', (size_t)(card + CARD - q - 1)))
            return tf_fail(f, TF_ECORRUPT, 0, "%.8s is not a quoted string", card);
        card_str(card, s, sizeof s);
        if (key_indexed(card, "TTYPE") && strcmp(s, "ZSCALE") == 0) h->has_zscale = 1;
    } else if (key_indexed(card, "ZTILE") || key_indexed(card, "ZNAXIS") ||
               key_is(card, "ZDITHER0")) {
        /* Integers by the convention. cfitsio parses what else it finds
         * its own way: a logical F or "0   16" as ZTILEn gave 0 and a
         * division by zero, a junk ZDITHER0 an index before its table
         * (fuzzer: fpe-ztile-logical, fpe-ztile-trailing-junk). */
        if (!card_int(card, &v))
            return tf_fail(f, TF_ECORRUPT, 0, "%.8s is not an integer", card);
        if (key_indexed(card, "ZTILE") && v < 1)
            return tf_fail(f, TF_ECORRUPT, 0, "%.8s = %lld: a tile must have at least one pixel",
                           card, v);
        if (key_indexed(card, "ZNAXIS") && v < 0)
            return tf_fail(f, TF_ECORRUPT, 0, "%.8s = %lld is negative", card, v);
        if (key_indexed(card, "ZNAXIS") && v == 0) h->zero_axis = 1;
        /* An index into cfitsio's table of 10000 random numbers. */
        if (key_is(card, "ZDITHER0") && (v < 1 || v > 10000))
            return tf_fail(f, TF_ECORRUPT, 0, "ZDITHER0 = %lld is not in 1..10000", v);
    } else if (key_is(card, "ZVAL1") || key_is(card, "ZVAL2")) {
        /* Checked once ZCMPTYPE is known: remember the values. */
        int i = card[4] - '1', val = -1;
        if (card_int(card, &v)) val = v < -1 ? -1 : v > 1 << 20 ? 1 << 20 : (int)v;
        /* With the keyword twice, cfitsio may take either card (its search
         * starts where the last one ended): a bad value in any of them
         * stays, a good one never hides it ("ZVAL1 = 0" then "ZVAL1 = 32":
         * SIGFPE). */
        if (rice_vals[i] == -2 || rice_val_ok(i, rice_vals[i])) rice_vals[i] = val;
    }
    return TF_OK;
}

/* Keywords that fix the layout of the data. FITS allows each once; with
 * two, cfitsio takes one for some of its sizes and the other for others,
 * and reads outside its buffers (a duplicated PCOUNT in a compressed
 * image: SIGSEGV in ffgdesll). */
static const char *const STRUCTURAL[] = {
    "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "NAXIS3", "PCOUNT", "GCOUNT", "TFIELDS",
    "THEAP", "ZBITPIX", "ZNAXIS", "ZNAXIS1", "ZNAXIS2", "ZNAXIS3", "ZCMPTYPE", "ZIMAGE",
};
#define NSTRUCTURAL (sizeof STRUCTURAL / sizeof STRUCTURAL[0])

static int check_duplicate(tf_file *f, const char *card, unsigned char *seen) {
    for (size_t k = 0; k < NSTRUCTURAL; k++)
        if (key_is(card, STRUCTURAL[k])) {
            if (seen[k]++)
                return tf_fail(f, TF_ECORRUPT, 0, "keyword %s appears twice in the header",
                               STRUCTURAL[k]);
            return TF_OK;
        }
    return TF_OK;
}

/* The keywords that describe a table column. cfitsio sets up its columns
 * from the cards in order (the last of two TFORM3 wins) but finds a
 * keyword by search (the first, or whichever its search meets first): a
 * second TFORM3 left its string reads blank where the fast path read the
 * bytes (fuzzer: paths-disagree-duplicate-tform). */
static const char *const COLUMN_KEYS[] = {"TFORM", "TTYPE", "TDIM", "TSCAL", "TZERO", "TNULL"};
#define NCOLUMN_KEYS (sizeof COLUMN_KEYS / sizeof COLUMN_KEYS[0])
#define MAX_COLUMNS 999 /* cfitsio's most */

/* FITS allows 999 axes; cfitsio's description of an image holds 99. */
#define FITS_MAX_AXES 999
#define CFITSIO_MAX_AXES 99

/* The keywords that fix the size of an HDU's data, and name it. */
typedef struct layout {
    int has_bitpix, has_naxis, has_pcount, has_gcount, has_extver, has_znaxis, groups;
    long long bitpix, naxis, pcount, gcount, extver, znaxis;
    unsigned char naxisn_seen[FITS_MAX_AXES / 8 + 1]; /* bit n: NAXISn seen */
    int64_t naxisn[FITS_MAX_AXES + 1];                 /* 1-based */
    char extname[FLEN_VALUE], hduname[FLEN_VALUE];
} layout;

/* What the checks of one header collect across its cards. */
typedef struct header_scan {
    unsigned char seen[NSTRUCTURAL];
    unsigned char columns_seen[NCOLUMN_KEYS][MAX_COLUMNS / 8 + 1]; /* bit n: key n seen */
    zhdr h;
    int rice_vals[2]; /* -2: absent */
    layout lay;
} header_scan;

/* Collect the layout keywords (the first of a repeated NAXISn; BITPIX,
 * NAXIS, NAXIS1-3, PCOUNT and GCOUNT may not repeat: check_duplicate). */
static void collect_layout(const char *card, layout *L) {
    long long v;
    if (key_is(card, "BITPIX")) {
        L->has_bitpix = card_int(card, &L->bitpix);
    } else if (key_is(card, "NAXIS")) {
        L->has_naxis = card_int(card, &L->naxis);
    } else if (key_is(card, "ZNAXIS")) {
        L->has_znaxis = card_int(card, &L->znaxis);
    } else if (key_indexed(card, "NAXIS")) {
        int n = atoi(card + 5);
        if (n >= 1 && n <= FITS_MAX_AXES && !(L->naxisn_seen[n / 8] & (1u << (n % 8))) &&
            card_int(card, &v)) {
            L->naxisn_seen[n / 8] |= (unsigned char)(1u << (n % 8));
            L->naxisn[n] = v;
        }
    } else if (key_is(card, "PCOUNT")) {
        L->has_pcount = card_int(card, &L->pcount);
    } else if (key_is(card, "GCOUNT")) {
        L->has_gcount = card_int(card, &L->gcount);
    } else if (key_is(card, "GROUPS")) {
        const char *p = card + VALUE_COL;
        while (p < card + CARD && *p == ' ') p++;
        L->groups = p < card + CARD && upper(*p) == 'T';
    } else if (key_is(card, "EXTNAME")) {
        card_str(card, L->extname, sizeof L->extname);
    } else if (key_is(card, "HDUNAME")) {
        card_str(card, L->hduname, sizeof L->hduname);
    } else if (key_is(card, "EXTVER")) {
        L->has_extver = card_int(card, &L->extver);
    }
}

/* The bytes of data the layout claims, as FITS and cfitsio count them:
 * |BITPIX|/8 * GCOUNT * (PCOUNT + NAXIS1 * ... * NAXISn), NAXIS1 left out
 * for random groups. 0 when the cards do not tell (a missing NAXISn, an
 * invalid BITPIX: cfitsio reports those); -1 when it overflows. */
static int layout_bytes(const layout *L, int64_t *bytes) {
    if (!L->has_bitpix || !L->has_naxis || L->naxis < 0 || L->naxis > FITS_MAX_AXES) return 0;
    long long b = L->bitpix;
    if (b != 8 && b != 16 && b != 32 && b != 64 && b != -32 && b != -64) return 0;
    long long pcount = L->has_pcount ? L->pcount : 0, gcount = L->has_gcount ? L->gcount : 1;
    if (pcount < 0 || gcount < 0) return 0;
    int64_t npix = L->naxis > 0;
    for (int n = 1; n <= L->naxis; n++) {
        if (!(L->naxisn_seen[n / 8] & (1u << (n % 8))) || L->naxisn[n] < 0) return 0;
        if (n == 1 && L->naxisn[1] == 0 && L->groups) continue; /* random groups */
        if (!tf_mul_ok(npix, L->naxisn[n], &npix)) return -1;
    }
    if (__builtin_add_overflow(npix, (int64_t)pcount, &npix) || !tf_mul_ok(npix, gcount, &npix) ||
        !tf_mul_ok(npix, (b < 0 ? -b : b) / 8, bytes))
        return -1;
    return 1;
}

/* The layout checks of a whole header at byte `head`, its data at byte
 * `data`: NAXIS within FITS's 999, the data inside the file (extensions),
 * and NAXIS within cfitsio's 99, ZNAXIS of a tile-compressed image within
 * its 6 (else *sk describes the HDU to skip, for an extension;
 * TF_EUNSUPPORTED for the primary). */
static int check_layout(tf_file *f, const header_scan *hs, int64_t head, int64_t data,
                        int primary, tf_skip *sk, int *skip) {
    const layout *L = &hs->lay;
    const int extension = !primary;
    *skip = 0;
    if (!L->has_naxis) return TF_OK; /* cfitsio reports a missing NAXIS */
    if (L->naxis < 0 || L->naxis > FITS_MAX_AXES)
        return tf_fail(f, TF_ECORRUPT, 0, "NAXIS = %lld: FITS allows 0 to %d axes", L->naxis,
                       FITS_MAX_AXES);
    int64_t bytes = 0;
    int known = layout_bytes(L, &bytes);
    if (known < 0)
        return tf_fail(f, TF_ECORRUPT, 0,
                       "the data size (BITPIX, NAXISn, PCOUNT, GCOUNT) overflows");
    if (extension && known) {
        int64_t size = tf_direct(f) ? f->file_size : (int64_t)f->fp->Fptr->logfilesize, stop;
        if (__builtin_add_overflow(data, bytes, &stop) || stop > size)
            return tf_fail(f, TF_ECORRUPT, 0,
                           "file is truncated: the header claims %lld bytes of data from byte "
                           "%lld, the file has %lld bytes",
                           (long long)bytes, (long long)data, (long long)size);
    }
    /* cfitsio's description of a tile-compressed image holds 6 axes
     * (MAX_COMPRESS_DIM): it refuses more while it parses the header, and
     * its count of the HDUs stopped there, dropping this HDU and every
     * later one from a listing. */
    int compressed_axes = extension && hs->h.is_bintable && hs->h.zimage && L->has_znaxis &&
                          L->znaxis > MAX_COMPRESS_DIM;
    if (compressed_axes && L->znaxis > FITS_MAX_AXES)
        return tf_fail(f, TF_ECORRUPT, 0, "ZNAXIS = %lld: FITS allows 0 to %d axes", L->znaxis,
                       FITS_MAX_AXES);
    if (L->naxis <= CFITSIO_MAX_AXES && !compressed_axes) return TF_OK;
    if (!extension)
        return tf_fail(f, TF_EUNSUPPORTED, 0,
                       "NAXIS = %lld in the primary header: cfitsio, which parses the headers, "
                       "holds at most %d axes (FITS allows %d; this reader reads images of up "
                       "to %d), so no HDU of this file can be read",
                       L->naxis, CFITSIO_MAX_AXES, FITS_MAX_AXES, TF_MAX_DIMS);
    if (!known)
        return tf_fail(f, TF_ECORRUPT, 0,
                       "NAXIS = %lld, but BITPIX or an NAXISn is missing or not valid",
                       L->naxis);
    memset(sk, 0, sizeof *sk);
    sk->start = head;
    sk->data = data;
    if (__builtin_add_overflow(data, (bytes + BLOCK - 1) / BLOCK * BLOCK, &sk->end))
        return tf_fail(f, TF_ECORRUPT, 0, "the data size overflows");
    sk->bitpix = compressed_axes && hs->h.has_zbitpix ? (int)hs->h.zbitpix : (int)L->bitpix;
    snprintf(sk->extname, sizeof sk->extname, "%s", L->extname);
    snprintf(sk->hduname, sizeof sk->hduname, "%s", L->hduname);
    sk->extver = L->has_extver && L->extver >= INT32_MIN && L->extver <= INT32_MAX
               ? (int)L->extver : 1;
    if (L->naxis > CFITSIO_MAX_AXES)
        snprintf(sk->why, sizeof sk->why,
                 "NAXIS = %lld: this reader reads images of at most %d axes, and cfitsio parses "
                 "headers of at most %d", L->naxis, TF_MAX_DIMS, CFITSIO_MAX_AXES);
    else
        snprintf(sk->why, sizeof sk->why,
                 "ZNAXIS = %lld: cfitsio reads tile-compressed images of at most %d axes",
                 L->znaxis, MAX_COMPRESS_DIM);
    *skip = 1;
    return TF_OK;
}

static int check_column_duplicate(tf_file *f, const char *card, header_scan *hs) {
    if (upper(card[0]) != 'T') return TF_OK;
    for (size_t k = 0; k < NCOLUMN_KEYS; k++) {
        if (!key_indexed(card, COLUMN_KEYS[k])) continue;
        int n = atoi(card + strlen(COLUMN_KEYS[k]));
        if (n < 1 || n > MAX_COLUMNS) return TF_OK;
        unsigned char *bits = hs->columns_seen[k], bit = (unsigned char)(1u << (n % 8));
        if (bits[n / 8] & bit)
            return tf_fail(f, TF_ECORRUPT, 0, "keyword %s%d appears twice in the header",
                           COLUMN_KEYS[k], n);
        bits[n / 8] |= bit;
        return TF_OK;
    }
    return TF_OK;
}

/* cfitsio also finds a keyword where the standard has none: with the "="
 * in another column ("ZNAXIS  x= 2") or behind HIERARCH ("HIERARCH ZNAXIS
 * = 2"), its lookups match the name and take the text after the first "="
 * as the value. The guard passed such cards over, and a ZNAXIS of binary
 * garbage with an "=" in column 30 reached cfitsio's ffc2j, which aborts
 * on it (fuzzer: abort-znaxis-no-value-indicator). The card as cfitsio
 * reads it, rewritten as "NAME    = value" into `out`, so the checks see
 * what cfitsio sees: 1 when rewritten, 0 when cfitsio finds no value or
 * no name of 8 characters or fewer, -1 when the value is too long for a
 * card (cfitsio's fields hold 70 characters). */
static int standard_form(const char *card, char *out) {
    char in[CARD + 1], name[2 * FLEN_CARD], value[2 * FLEN_CARD], comm[2 * FLEN_CARD];
    int len = 0, status = 0;
    memcpy(in, card, CARD);
    in[CARD] = 0;
    name[0] = value[0] = 0;
    if (ffgknm(in, name, &len, &status) || len < 1 || len > 8) return 0;
    if (ffpsvc(in, value, comm, &status) || !value[0]) return 0;
    memset(out, ' ', CARD);
    memcpy(out, name, (size_t)len);
    out[8] = '=';
    size_t n = strlen(value);
    if (n > CARD - VALUE_COL - 1) return -1;
    memcpy(out + VALUE_COL + 1, value, n);
    return 1;
}

/* One block of cards; *ended when it holds END. */
static int check_block(tf_file *f, const char *block, header_scan *hs, int *ended) {
    char rewritten[CARD];
    for (int c = 0; c < BLOCK / CARD; c++) {
        const char *card = block + c * CARD;
        if (memcmp(card, "END     ", 8) == 0) {
            *ended = 1;
            return TF_OK;
        }
        /* A card without "=" in column 9 has a value for cfitsio only
         * with an "=" somewhere: most (COMMENT, HISTORY, blank) have none
         * and are passed over at once. */
        if (card[8] != '=') {
            if (!memchr(card, '=', CARD)) continue;
            int r = standard_form(card, rewritten);
            if (r < 0)
                return tf_fail(f, TF_ECORRUPT, 0, "the value of %.8s is longer than a card holds",
                               rewritten);
            if (r == 0) continue;
            card = rewritten;
        }
        /* Every keyword checked here starts with one of these letters, in
         * either case: most cards (WCS, instrument keywords) are passed
         * over at once. */
        if (!memchr("BEGHNPTXZ", upper(card[0]), 9)) continue;
        FORWARD_IF_ERROR(check_duplicate(f, card, hs->seen));
        FORWARD_IF_ERROR(check_column_duplicate(f, card, hs));
        FORWARD_IF_ERROR(check_card(f, card, &hs->h, hs->rice_vals));
        collect_layout(card, &hs->lay);
    }
    return TF_OK;
}

/* The checks that need the whole header. */
static int check_whole(tf_file *f, const header_scan *hs) {
    const zhdr *h = &hs->h;
    const int *rice_vals = hs->rice_vals;
    if (!h->is_bintable || !h->zimage) return TF_OK;
    /* No writer makes one, and cfitsio's default tile (a whole row) is
     * then 0 pixels wide: SIGFPE (fuzzer: fpe-znaxis1-zero-default-tile). */
    if (h->zero_axis)
        return tf_fail(f, TF_ECORRUPT, 0, "a tile-compressed image with an empty axis (ZNAXISn = 0)");
    if (h->has_zbitpix && h->zbitpix != 8 && h->zbitpix != 16 && h->zbitpix != 32 &&
        h->zbitpix != 64 && h->zbitpix != -32 && h->zbitpix != -64)
        return tf_fail(f, TF_ECORRUPT, 0, "ZBITPIX = %lld is not valid", h->zbitpix);
    int lossy_int = is_rice(h->zcmptype) || strcmp(h->zcmptype, "PLIO_1") == 0 ||
                    strncmp(h->zcmptype, "HCOMPRESS", 9) == 0;
    if (h->has_zbitpix && h->zbitpix < 0 && lossy_int && !h->has_zscale)
        return tf_fail(f, TF_ECORRUPT, 0,
                       "ZBITPIX = %lld with %s but no ZSCALE: integer-only compression of "
                       "unquantized floats", h->zbitpix, h->zcmptype);
    /* 'NONE' says the floats were compressed as they are: with integer
     * pixels or a ZSCALE, cfitsio then read zeros, an overflow or unscaled
     * quantized values where the core's decoders read the tiles (header
     * variants: the two read paths disagreed). No writer makes one. */
    if (h->quantiz_none && ((h->has_zbitpix && h->zbitpix > 0) || h->has_zscale))
        return tf_fail(f, TF_ECORRUPT, 0, "ZQUANTIZ = 'NONE' (floats stored losslessly) on %s",
                       h->has_zscale ? "quantized data (a ZSCALE is present)"
                                     : "an integer image");
    if (is_rice(h->zcmptype)) {
        if (rice_vals[0] != -2 && !rice_val_ok(0, rice_vals[0]))
            return tf_fail(f, TF_ECORRUPT, 0, "RICE block size ZVAL1 = %d is not 16 or 32",
                           rice_vals[0]);
        int bp = rice_vals[1];
        if (bp != -2 && !rice_val_ok(1, bp))
            return tf_fail(f, TF_ECORRUPT, 0, "RICE BYTEPIX ZVAL2 = %d is not 1, 2, 4 or 8", bp);
    }
    return TF_OK;
}

/* The header at byte `off`: refuse what cfitsio would crash on. */
/* A header that starts with XTENSION but has no END before the end of the
 * file: cfitsio stops there and counts one HDU fewer, which read as "HDU j
 * does not exist" for a file cut inside a header. */
static int cut_header(tf_file *f, int64_t off) {
    return tf_fail(f, TF_ECORRUPT, 0,
                   "file is truncated: the header starting at byte %lld has no END card before "
                   "the file ends at byte %lld",
                   (long long)off, (long long)f->fp->Fptr->logfilesize);
}

/* *skip set (and *sk filled) for an HDU cfitsio must not parse. */
static int check_header(tf_file *f, int64_t off, int extension, tf_skip *sk, int *skip) {
    char block[BLOCK];
    header_scan hs = {.rice_vals = {-2, -2}};
    int st = 0, ended = 0;
    int64_t b = 0;
    *skip = 0;
    /* The whole header, however long: cfitsio reads a keyword wherever it
     * is (a RICE block size of 0 in the 68th block had been left to it:
     * SIGFPE). The cards are cheap to pass over. */
    for (; !ended; b++) {
        if (off + (b + 1) * BLOCK > (int64_t)f->fp->Fptr->logfilesize) {
            if (extension) return cut_header(f, off);
            break;
        }
        ffmbyt(f->fp, off + (LONGLONG)b * BLOCK, 0 /* REPORT_EOF */, &st);
        ffgbyt(f->fp, BLOCK, block, &st);
        if (st) {
            /* Short or unreadable: cfitsio reports that itself. */
            fits_clear_errmsg();
            return TF_OK;
        }
        FORWARD_IF_ERROR(check_block(f, block, &hs, &ended));
    }
    if (ended)
        FORWARD_IF_ERROR(check_layout(f, &hs, off, off + b * BLOCK, 0, sk, skip));
    if (*skip) return TF_OK; /* never parsed: its other keywords do not matter */
    return check_whole(f, &hs);
}

const tf_skip *tf_skipped(const tf_file *f, int hdu) {
    for (int i = 0; i < f->nskipped; i++)
        if (f->skipped[i].hdu == hdu) return &f->skipped[i];
    return NULL;
}

int tf_fail_skipped(tf_file *f, const tf_skip *s) {
    f->err_hdu = s->hdu;
    return tf_fail(f, TF_EUNSUPPORTED, 0, "%s", s->why);
}

/* Record HDU `sk->hdu` as skipped, and tell cfitsio where the HDU after
 * it starts and that this one exists, as its own parse of the header
 * would have: moving past it then goes straight to the next (ffmahd moves
 * to the HDU after the highest it knows, at headstart[]). */
static int add_skip(tf_file *f, const tf_skip *sk) {
    tf_skip *list = realloc(f->skipped, ((size_t)f->nskipped + 1) * sizeof *list);
    if (!list) return tf_fail(f, TF_ENOMEM, 0, "out of memory");
    f->skipped = list;
    FITSfile *F = f->fp->Fptr;
    int next = sk->hdu + 1;
    if (next >= F->MAXHDU) { /* as ffmahd grows it */
        LONGLONG *p = realloc(F->headstart, ((size_t)next + 1001) * sizeof *p);
        if (!p) return tf_fail(f, TF_ENOMEM, 0, "out of memory");
        F->headstart = p;
        F->MAXHDU = next + 1000;
    }
    F->headstart[next] = sk->end;
    if (F->maxhdu < sk->hdu) F->maxhdu = sk->hdu;
    list[f->nskipped++] = *sk;
    return TF_OK;
}

/* Whether the bytes at `off` of a plain file begin an extension header.
 * Bytes past the last HDU that do not (zero padding, other records) are no
 * HDU to cfitsio, and none here. A bare pread: cfitsio reads whole blocks
 * only and fails on the piece of one that a cut file ends with; a gzip
 * file (not read directly) keeps cfitsio's "does not exist". */
static int starts_extension(tf_file *f, int64_t off) {
    char head[8];
    int err;
    return tf_direct(f) && tf_source_read(&f->src, head, sizeof head, off, &err) == TF_OK &&
           memcmp(head, "XTENSION", sizeof head) == 0;
}

int tf_guard_primary(tf_file *f, const char *buf, size_t n) {
    header_scan hs = {.rice_vals = {-2, -2}};
    int ended = 0;
    size_t off = 0;
    for (; off + BLOCK <= n && !ended; off += BLOCK)
        FORWARD_IF_ERROR(check_block(f, buf + off, &hs, &ended));
    /* A header longer than the bytes read at open: the rest from the file
     * (a garbage BLANK past them would reach cfitsio's integer parser). */
    char block[BLOCK];
    int64_t at = (int64_t)off;
    for (; !ended && tf_direct(f) && at + BLOCK <= f->file_size; at += BLOCK) {
        int err;
        if (tf_source_read(&f->src, block, BLOCK, at, &err) != TF_OK) break; /* cfitsio reports it */
        FORWARD_IF_ERROR(check_block(f, block, &hs, &ended));
    }
    if (ended) {
        /* NAXIS: cfitsio parses this header on open, before any HDU can
         * be skipped. */
        tf_skip sk;
        int skip, saved = f->err_hdu;
        f->err_hdu = 0;
        int rc = check_layout(f, &hs, 0, at, 1, &sk, &skip);
        f->err_hdu = saved;
        FORWARD_IF_ERROR(rc);
    }
    return check_whole(f, &hs);
}

int tf_guard_headers(tf_file *f, int upto) {
    if (f->checked_hdus < 1) f->checked_hdus = 1; /* the primary: parsed on open, never compressed */
    while (f->checked_hdus <= upto) {
        int j = f->checked_hdus, st = 0, type, skip = 0;
        LONGLONG head, data, end;
        const tf_skip *prev = tf_skipped(f, j - 1);
        if (prev) {
            end = prev->end; /* cfitsio must not parse HDU j-1 */
        } else {
            fits_movabs_hdu(f->fp, j, &type, &st);   /* HDU j-1, 0-based: already checked */
            if (st) f->cf_stale = 1;
            fits_get_hduaddrll(f->fp, &head, &data, &end, &st);
            if (st) { fits_clear_errmsg(); return TF_OK; } /* cfitsio will report it */
        }
        int extension = starts_extension(f, end);
        if (!extension && end + BLOCK > (LONGLONG)f->fp->Fptr->logfilesize) return TF_OK; /* no HDU j */
        int saved = f->err_hdu;
        f->err_hdu = j;
        tf_skip sk;
        int rc = check_header(f, end, extension, &sk, &skip);
        f->err_hdu = saved;
        if (rc == TF_OK && skip) {
            sk.hdu = j;
            rc = add_skip(f, &sk);
        }
        if (rc != TF_OK) return rc;
        f->checked_hdus = j + 1;
    }
    return TF_OK;
}

/* ---- the fast open: the primary header parsed without cfitsio ----
 *
 * A read of a 64x64 image spent most of its time in cfitsio's open
 * (fits_open_file reads the header through its buffers, parses every card
 * and sets up 40 zeroed I/O buffers). A plain primary image header is a
 * handful of keywords; the core reads them here, straight from the file's
 * first bytes, and cfitsio opens the file only when a call needs it.
 *
 * Only what is certain is accepted: the mandatory keywords in their places,
 * BSCALE, BZERO, BLANK, PCOUNT 0 and GCOUNT 1, each at most once and
 * written as plain numbers, every card printable ASCII with an upper-case
 * keyword name, and END within the bytes given. Anything else (HIERARCH,
 * CONTINUE, lower case, EXTNAME, GROUPS, a duplicate, 1.0D0, an empty axis,
 * a value that does not parse exactly) returns 0 and cfitsio parses the
 * header as before, so the answer is never different, only sooner. */

/* Most digits of an integer value accepted here (cfitsio's long long). */
#define FAST_MAX_DIGITS 18

/* The value field of `card` (after "= "): p..end, blanks trimmed, and no
 * more than a comment after it. 0 when the card has no "= " value. */
static int value_span(const char *card, const char **p, const char **end) {
    if (card[8] != '=' || card[9] != ' ') return 0;
    const char *q = card + 10, *e = card + CARD;
    while (q < e && *q == ' ') q++;
    const char *v = q;
    while (q < e && *q != ' ' && *q != '/') q++;
    const char *ve = q;
    while (q < e && *q == ' ') q++;
    if (q < e && *q != '/') return 0; /* a second token: not a plain value */
    if (v == ve) return 0;
    *p = v;
    *end = ve;
    return 1;
}

/* A plain integer: [+-]digits. */
static int strict_int(const char *card, long long *out) {
    const char *p, *e;
    if (!value_span(card, &p, &e)) return 0;
    int neg = 0;
    if (*p == '+' || *p == '-') neg = *p++ == '-';
    if (p == e || e - p > FAST_MAX_DIGITS) return 0;
    long long v = 0;
    for (; p < e; p++) {
        if (*p < '0' || *p > '9') return 0;
        v = v * 10 + (*p - '0');
    }
    *out = neg ? -v : v;
    return 1;
}

/* A plain decimal number: [+-]digits[.digits][E[+-]digits], or with the
 * digits after the point only; finite. strtod rounds as cfitsio's does
 * (it calls strtod). */
static int strict_double(const char *card, double *out) {
    const char *p, *e;
    if (!value_span(card, &p, &e)) return 0;
    char buf[CARD];
    size_t n = (size_t)(e - p);
    if (scan_number(p, e, "E") != e) return 0;
    memcpy(buf, p, n);
    buf[n] = 0;
    char *end;
    double v = strtod(buf, &end);
    if (end != buf + n || !(v > -1e308 && v < 1e308)) return 0;
    *out = v;
    return 1;
}

/* Printable ASCII, and a keyword name of A-Z 0-9 _ - (then blanks only). */
static int clean_card(const char *card) {
    for (int i = 0; i < CARD; i++)
        if ((unsigned char)card[i] < 32 || (unsigned char)card[i] > 126) return 0;
    int i = 0;
    while (i < 8 && ((card[i] >= 'A' && card[i] <= 'Z') || (card[i] >= '0' && card[i] <= '9') ||
                     card[i] == '_' || card[i] == '-'))
        i++;
    while (i < 8 && card[i] == ' ') i++;
    return i == 8;
}

/* The card's keyword name is `key` exactly (with or without a value). */
static int name_is(const char *card, const char *key) {
    size_t n = strlen(key);
    if (memcmp(card, key, n) != 0) return 0;
    for (size_t i = n; i < 8; i++)
        if (card[i] != ' ') return 0;
    return 1;
}

int tf_fast_primary(tf_file *f, const char *buf, size_t n) {
    enum { S_BSCALE = 1, S_BZERO = 2, S_BLANK = 4, S_PCOUNT = 8, S_GCOUNT = 16 };
    size_t ncards = n / CARD;
    long long v;
    if (ncards < 4) return 0;
    /* SIMPLE = T, BITPIX, NAXIS, NAXIS1..n: in this order, as FITS says. */
    const char *p, *e;
    if (!clean_card(buf) || !key_is(buf, "SIMPLE") || !value_span(buf, &p, &e) || e - p != 1 ||
        *p != 'T')
        return 0;
    if (!clean_card(buf + CARD) || !key_is(buf + CARD, "BITPIX") || !strict_int(buf + CARD, &v))
        return 0;
    int bitpix = (int)v;
    if (v != 8 && v != 16 && v != 32 && v != 64 && v != -32 && v != -64) return 0;
    if (!clean_card(buf + 2 * CARD) || !key_is(buf + 2 * CARD, "NAXIS") ||
        !strict_int(buf + 2 * CARD, &v) || v < 1 || v > TF_MAX_DIMS)
        return 0;
    int naxis = (int)v;
    if (ncards < 3 + (size_t)naxis + 1) return 0;
    tf_hdu_info info;
    memset(&info, 0, sizeof info);
    info.index = 0;
    info.kind = TF_HDU_IMAGE;
    info.bitpix = bitpix;
    info.ndim = naxis;
    info.bscale = 1.0;
    info.extver = 1;
    int64_t npix = 1;
    for (int i = 0; i < naxis; i++) {
        const char *card = buf + (size_t)(3 + i) * CARD;
        char key[9];
        snprintf(key, sizeof key, "NAXIS%d", i + 1);
        /* An empty axis (NAXIS1 = 0 is also random groups) goes to cfitsio. */
        if (!clean_card(card) || !key_is(card, key) || !strict_int(card, &v) || v < 1 ||
            !tf_mul_ok(npix, v, &npix))
            return 0;
        info.shape[naxis - 1 - i] = v;
    }
    int seen = 0;
    size_t c = 3 + (size_t)naxis;
    for (;; c++) {
        if (c >= ncards) return 0; /* no END in the bytes given */
        const char *card = buf + c * CARD;
        if (!clean_card(card)) return 0;
        if (name_is(card, "END")) {
            for (int i = 3; i < CARD; i++)
                if (card[i] != ' ') return 0;
            break;
        }
        int bit = name_is(card, "BSCALE") ? S_BSCALE : name_is(card, "BZERO") ? S_BZERO
                : name_is(card, "BLANK") ? S_BLANK : name_is(card, "PCOUNT") ? S_PCOUNT
                : name_is(card, "GCOUNT") ? S_GCOUNT : 0;
        if (bit) {
            if (seen & bit) return 0; /* a duplicate: cfitsio's two lookups may differ */
            seen |= bit;
            int ok;
            if (bit == S_BSCALE) ok = strict_double(card, &info.bscale) && info.bscale != 0.0;
            else if (bit == S_BZERO) ok = strict_double(card, &info.bzero);
            else if (bit == S_PCOUNT) ok = strict_int(card, &v) && v == 0;
            else if (bit == S_GCOUNT) ok = strict_int(card, &v) && v == 1;
            else ok = strict_int(card, &v);
            if (!ok) return 0;
            /* A BLANK that BITPIX cannot hold matches no pixel: ignored,
             * as the description through cfitsio ignores it (file.c). */
            int64_t lo, hi;
            if (bit == S_BLANK && tf_int_range(tf_stored_dtype(bitpix), &lo, &hi) && v >= lo &&
                v <= hi) {
                info.has_blank = 1;
                info.blank = v;
            }
            continue;
        }
        /* Keywords that change what the header means, or whose value the
         * core would have to parse: cfitsio decides. */
        if (memcmp(card, "NAXIS", 5) == 0 || name_is(card, "SIMPLE") ||
            name_is(card, "BITPIX") || name_is(card, "GROUPS") || name_is(card, "EXTNAME") ||
            name_is(card, "EXTVER") || name_is(card, "XTENSION") || name_is(card, "HIERARCH") ||
            name_is(card, "CONTINUE") || memcmp(card, "ZIMAGE", 6) == 0)
            return 0;
    }
    int64_t bytes;
    tf_dtype raw = tf_stored_dtype(bitpix);
    if (!tf_mul_ok(npix, (int64_t)tf_dtype_size(raw), &bytes)) return 0;
    info.raw_dtype = raw;
    info.dtype = tf_natural_dtype(bitpix, info.bscale, info.bzero);
    f->fast_info = info;
    f->fast_data_offset = (int64_t)(c / (BLOCK / CARD) + 1) * BLOCK;
    return 1;
}
