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
 */
#include <stdlib.h>
#include <string.h>

#include "../common/internal.h"

int ffgbyt(fitsfile *fptr, LONGLONG nbytes, void *buffer, int *status);

#define BLOCK 2880
#define CARD 80
/* Cards read ahead per header; a longer header is left to cfitsio (the
 * keywords checked here come first in every writer's output). */
#define MAX_SCAN_BLOCKS 64

typedef struct zhdr {
    int is_bintable, zimage;
    char zcmptype[24];
    int has_zbitpix;
    long long zbitpix;
    int has_zscale;  /* a ZSCALE column or keyword: quantized floats */
} zhdr;

/* The integer value of a card, 0 when it has none. */
static int card_int(const char *card, long long *v) {
    char buf[CARD - 9];
    memcpy(buf, card + 10, sizeof buf - 1);
    buf[sizeof buf - 1] = 0;
    char *end;
    *v = strtoll(buf, &end, 10);
    if (end == buf) return 0;
    while (*end == ' ') end++;
    return *end == 0 || *end == '/';
}

/* The string value of a card, unquoted, trailing blanks removed. */
static void card_str(const char *card, char *out, size_t n) {
    const char *q = memchr(card + 10, '\'', CARD - 10);
    size_t k = 0;
    if (q)
        for (q++; q < card + CARD && *q != '\'' && k + 1 < n; q++) out[k++] = *q;
    while (k > 0 && out[k - 1] == ' ') k--;
    out[k] = 0;
}

static int key_is(const char *card, const char *key) {
    size_t n = strlen(key);
    if (memcmp(card, key, n) != 0) return 0;
    for (size_t i = n; i < 8; i++)
        if (card[i] != ' ') return 0;
    return card[8] == '=';
}

/* Key with a numeric suffix: "ZTILE" matches ZTILE1..ZTILE999. */
static int key_indexed(const char *card, const char *stem) {
    size_t n = strlen(stem);
    if (memcmp(card, stem, n) != 0 || card[n] < '1' || card[n] > '9') return 0;
    size_t i = n + 1;
    while (i < 8 && card[i] >= '0' && card[i] <= '9') i++;
    while (i < 8 && card[i] == ' ') i++;
    return i == 8 && card[8] == '=';
}

static int is_rice(const char *t) { return strncmp(t, "RICE", 4) == 0; }

/* Check one card; `h` collects what later checks need. */
static int check_card(tf_file *f, const char *card, zhdr *h, int *rice_vals) {
    long long v;
    char s[24];
    if (key_is(card, "XTENSION")) {
        card_str(card, s, sizeof s);
        h->is_bintable = strcmp(s, "BINTABLE") == 0;
    } else if (key_is(card, "ZIMAGE")) {
        const char *p = card + 10;
        while (p < card + CARD && *p == ' ') p++;
        h->zimage = p < card + CARD && *p == 'T';
    } else if (key_is(card, "ZCMPTYPE")) {
        card_str(card, h->zcmptype, sizeof h->zcmptype);
    } else if (key_is(card, "ZBITPIX")) {
        h->has_zbitpix = card_int(card, &h->zbitpix);
    } else if (key_is(card, "ZSCALE")) {
        h->has_zscale = 1;
    } else if (key_indexed(card, "TTYPE") || key_indexed(card, "TUNIT") ||
               key_indexed(card, "TFORM") || key_indexed(card, "TDIM") ||
               key_indexed(card, "TDISP")) {
        /* cfitsio copies these values into fixed 70-byte fields with
         * strcpy: a 70-character unquoted value overflows (glibc aborts,
         * found by the fuzzer: overflow-ttype-unquoted). They are strings. */
        const char *q = card + 10;
        while (q < card + CARD && *q == ' ') q++;
        if (q == card + CARD || *q != '\'' || !memchr(q + 1, '\'', (size_t)(card + CARD - q - 1)))
            return tf_fail(f, TF_ECORRUPT, 0, "%.8s is not a quoted string", card);
        card_str(card, s, sizeof s);
        if (key_indexed(card, "TTYPE") && strcmp(s, "ZSCALE") == 0) h->has_zscale = 1;
    } else if (key_indexed(card, "ZTILE")) {
        if (card_int(card, &v) && v < 1)
            return tf_fail(f, TF_ECORRUPT, 0, "%.8s = %lld: a tile must have at least one pixel",
                           card, v);
    } else if (key_indexed(card, "ZNAXIS")) {
        if (card_int(card, &v) && v < 0)
            return tf_fail(f, TF_ECORRUPT, 0, "%.8s = %lld is negative", card, v);
    } else if (key_is(card, "ZDITHER0")) {
        /* An index into cfitsio's table of 10000 random numbers. */
        if (card_int(card, &v) && (v < 1 || v > 10000))
            return tf_fail(f, TF_ECORRUPT, 0, "ZDITHER0 = %lld is not in 1..10000", v);
    } else if (key_is(card, "ZVAL1") || key_is(card, "ZVAL2")) {
        /* Checked once ZCMPTYPE is known: remember the values. */
        if (card_int(card, &v)) rice_vals[card[4] - '1'] = v < -1 ? -1 : v > 1 << 20 ? 1 << 20 : (int)v;
        else rice_vals[card[4] - '1'] = -1;
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

/* The header at byte `off`: refuse what cfitsio would crash on. */
static int check_header(tf_file *f, int64_t off) {
    char block[BLOCK];
    unsigned char seen[NSTRUCTURAL] = {0};
    zhdr h = {0};
    int rice_vals[2] = {-2, -2}; /* -2: absent */
    int st = 0;
    for (int b = 0; b < MAX_SCAN_BLOCKS; b++) {
        if (off + (int64_t)(b + 1) * BLOCK > (int64_t)f->fp->Fptr->logfilesize) break;
        ffmbyt(f->fp, off + (LONGLONG)b * BLOCK, 0 /* REPORT_EOF */, &st);
        ffgbyt(f->fp, BLOCK, block, &st);
        if (st) {
            /* Short or unreadable: cfitsio reports that itself. */
            fits_clear_errmsg();
            return TF_OK;
        }
        for (int c = 0; c < BLOCK / CARD; c++) {
            const char *card = block + c * CARD;
            if (memcmp(card, "END     ", 8) == 0) goto done;
            FORWARD_IF_ERROR(check_duplicate(f, card, seen));
            FORWARD_IF_ERROR(check_card(f, card, &h, rice_vals));
        }
    }
done:
    if (!h.is_bintable || !h.zimage) return TF_OK;
    if (h.has_zbitpix && h.zbitpix != 8 && h.zbitpix != 16 && h.zbitpix != 32 &&
        h.zbitpix != 64 && h.zbitpix != -32 && h.zbitpix != -64)
        return tf_fail(f, TF_ECORRUPT, 0, "ZBITPIX = %lld is not valid", h.zbitpix);
    int lossy_int = is_rice(h.zcmptype) || strcmp(h.zcmptype, "PLIO_1") == 0 ||
                    strncmp(h.zcmptype, "HCOMPRESS", 9) == 0;
    if (h.has_zbitpix && h.zbitpix < 0 && lossy_int && !h.has_zscale)
        return tf_fail(f, TF_ECORRUPT, 0,
                       "ZBITPIX = %lld with %s but no ZSCALE: integer-only compression of "
                       "unquantized floats", h.zbitpix, h.zcmptype);
    if (is_rice(h.zcmptype)) {
        /* ZVAL1 is the block size (16 or 32 in every writer), ZVAL2 the
         * bytes per pixel. */
        if (rice_vals[0] != -2 && rice_vals[0] != 16 && rice_vals[0] != 32)
            return tf_fail(f, TF_ECORRUPT, 0, "RICE block size ZVAL1 = %d is not 16 or 32",
                           rice_vals[0]);
        int bp = rice_vals[1];
        if (bp != -2 && bp != 1 && bp != 2 && bp != 4 && bp != 8)
            return tf_fail(f, TF_ECORRUPT, 0, "RICE BYTEPIX ZVAL2 = %d is not 1, 2, 4 or 8", bp);
    }
    return TF_OK;
}

int tf_guard_headers(tf_file *f, int upto) {
    if (f->checked_hdus < 1) f->checked_hdus = 1; /* the primary: parsed on open, never compressed */
    while (f->checked_hdus <= upto) {
        int j = f->checked_hdus, st = 0, type;
        LONGLONG head, data, end;
        fits_movabs_hdu(f->fp, j, &type, &st);   /* HDU j-1, 0-based: already checked */
        if (st) f->cf_stale = 1;
        fits_get_hduaddrll(f->fp, &head, &data, &end, &st);
        if (st) { fits_clear_errmsg(); return TF_OK; } /* cfitsio will report it */
        if (end + BLOCK > (LONGLONG)f->fp->Fptr->logfilesize) return TF_OK; /* no HDU j */
        int saved = f->err_hdu;
        f->err_hdu = j;
        int rc = check_header(f, end);
        f->err_hdu = saved;
        if (rc != TF_OK) return rc;
        f->checked_hdus = j + 1;
    }
    return TF_OK;
}
