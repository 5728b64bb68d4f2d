/*
 * header.c - a header as a list of parsed cards.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../common/internal.h"

#define CARD 80

int ffgbyt(fitsfile *fptr, LONGLONG nbytes, void *buffer, int *status);

/* Copy n bytes of s into the arena, trimmed of trailing blanks. */
static char *put(char **arena, const char *s, size_t n) {
    while (n > 0 && s[n - 1] == ' ') n--;
    char *out = *arena;
    memmove(out, s, n);
    out[n] = 0;
    *arena += n + 1;
    return out;
}

/* Unquote the FITS string that starts at `s` (at a quote) into `out`:
 * '' becomes ', and the value ends at the closing quote. Returns the
 * length written; *end gets the position after the closing quote. */
static size_t unquote(const char *s, size_t n, char *out, size_t *end) {
    size_t i = 1, k = 0;
    while (i < n) {
        if (s[i] == '\'') {
            if (i + 1 < n && s[i + 1] == '\'') {
                out[k++] = '\'';
                i += 2;
                continue;
            }
            i++;
            break;
        }
        out[k++] = s[i++];
    }
    *end = i;
    return k;
}

/* The comment in s[from, n): the text after the first '/'. */
static const char *comment_of(const char *s, size_t n, size_t from, size_t *len) {
    for (size_t i = from; i < n; i++)
        if (s[i] == '/') {
            i++;
            while (i < n && s[i] == ' ') i++;
            *len = n - i;
            return s + i;
        }
    *len = 0;
    return s;
}

/* A value card (not a string with CONTINUE, handled apart), parsed with
 * cfitsio's own routines; a quoted string is unquoted. */
static void parse_value(const char *card, tf_card *out, char **arena) {
    char value[FLEN_VALUE] = "", comm[FLEN_COMMENT] = "", cardbuf[FLEN_CARD];
    memcpy(cardbuf, card, CARD);
    cardbuf[CARD] = 0;
    int st = 0;
    fits_parse_value(cardbuf, value, comm, &st);
    if (st) { fits_clear_errmsg(); value[0] = 0; st = 0; }
    char type = 'U';
    if (value[0]) {
        fits_get_keytype(value, &type, &st);
        if (st) { fits_clear_errmsg(); type = 'C'; }
    }
    if (type == 'C' && value[0] == '\'') {
        size_t end, k = unquote(value, strlen(value), *arena, &end);
        out->value = put(arena, *arena, k);
    } else {
        out->value = put(arena, value, strlen(value));
    }
    out->comment = put(arena, comm, strlen(comm));
    out->type = type;
}

static int is_key(const char *card, const char *key) {
    size_t n = strlen(key);
    if (memcmp(card, key, n) != 0) return 0;
    for (size_t i = n; i < 8; i++)
        if (card[i] != ' ') return 0;
    return 1;
}

/*
 * cfitsio builds a compressed image's own header (tf_hdr2str ->
 * imcomp_copy_comp2img) by writing each card into a scratch header, and
 * ffprec refuses a card whose name FITS does not allow: a blank inside it
 * ("Q UANTIZ"), a character other than A-Z 0-9 - _. After that error
 * imcomp_copy_comp2img asks ffghsp for the spare header space; ffghsp
 * returns at once on the error, leaving the count unset, and the count of
 * blank cards then written is whatever the stack held: up to 2^31 calls
 * that each return at once, 5 s of CPU for one header (fuzzer: a slow
 * unit). Such a card is found here first, tested as ffprec tests it (the
 * card up to a NUL, bytes outside 32-126 made blanks, the name upper-cased
 * up to the "=", fftkey on its first 8 characters), and refused with
 * cfitsio's cause. Checked against ffprec on 2 million random cards.
 */
static int bad_key_name(const char *card) {
    char t[CARD + 1];
    const char *nul = memchr(card, 0, CARD); /* ffprec copies up to a NUL, blanks after */
    size_t n = nul ? (size_t)(nul - card) : CARD;
    for (size_t i = 0; i < CARD; i++) {
        unsigned char c = i < n ? (unsigned char)card[i] : ' ';
        t[i] = c < 32 || c > 126 ? ' ' : (char)c;
    }
    t[CARD] = 0;
    size_t keylen = strcspn(t, "=");
    if (keylen == CARD || !strncasecmp(t, "COMMENT ", 8) || !strncasecmp(t, "HISTORY ", 8) ||
        !strncmp(t, "        ", 8) || !strncasecmp(t, "CONTINUE", 8))
        keylen = 8;
    for (size_t i = 0; i < keylen; i++) t[i] = (char)toupper((unsigned char)t[i]);
    int blank = 0;
    for (int i = 0; i < 8; i++) {
        char c = t[i];
        if ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_') {
            if (blank) return 1;
        } else if (c == ' ') {
            blank = 1;
        } else {
            return 1;
        }
    }
    return 0;
}

static int check_compressed_names(tf_file *f) {
    int st = 0, nkeys = 0, more = 0;
    if (!fits_is_compressed_image(f->fp, &st) || st) {
        if (st) fits_clear_errmsg();
        return TF_OK;
    }
    fits_get_hdrspace(f->fp, &nkeys, &more, &st);
    char card[CARD + 1];
    for (int k = 1; k <= nkeys && !st; k++) {
        fits_read_record(f->fp, k, card, &st);
        if (!st && bad_key_name(card)) {
            for (size_t i = 0; i < 8 && card[i]; i++)
                if ((unsigned char)card[i] < 32 || (unsigned char)card[i] > 126) card[i] = '?';
            return tf_fail(f, TF_ECORRUPT, 0,
                           "cannot read the header: card %d has a keyword name that FITS does not "
                           "allow (\"%.8s\"), and cfitsio cannot rebuild the compressed image's "
                           "header", k, card);
        }
    }
    if (st) fits_clear_errmsg(); /* tf_hdr2str reports it */
    return TF_OK;
}

/* The cards of a skipped HDU (guard.c: cfitsio must not parse it), as
 * they are in the file up to END, into *text (malloc'ed). */
static int raw_header(tf_file *f, const tf_skip *s, char **text) {
    int st = 0;
    size_t n = (size_t)(s->data - s->start);
    char *buf = malloc(n + 1);
    if (!buf) return tf_fail(f, TF_ENOMEM, 0, "out of memory for a header of %zu bytes", n);
    ffmbyt(f->fp, s->start, 0 /* REPORT_EOF */, &st);
    ffgbyt(f->fp, (LONGLONG)n, buf, &st);
    if (st) {
        free(buf);
        f->err_hdu = s->hdu;
        return tf_fail(f, TF_ECORRUPT, st, "cannot read the header");
    }
    size_t len = 0;
    while (len + CARD <= n && !is_key(buf + len, "END")) len += CARD;
    buf[len] = 0;
    *text = buf;
    return TF_OK;
}

int tf_header_load(tf_file *f, int hdu, int *ncards) {
    FORWARD_IF_ERROR(tf_check_handle(f));
    int rc = TF_OK, st = 0, nkeys = 0;
    char *text = NULL, *raw = NULL;
    tf_free_cards(f);
    if (hdu >= 0) FORWARD_IF_ERROR(tf_guard_headers(f, hdu));
    const tf_skip *skipped = hdu >= 0 ? tf_skipped(f, hdu) : NULL;
    if (skipped) {
        /* An HDU cfitsio cannot parse: its cards as they are. */
        FORWARD_IF_ERROR(raw_header(f, skipped, &raw));
        f->err_hdu = hdu;
        text = raw;
    } else {
        FORWARD_IF_ERROR(tf_move_to(f, hdu, NULL));
        /* For a compressed image this gives the header of the image itself. */
        FORWARD_IF_ERROR(check_compressed_names(f));
        tf_hdr2str(f->fp, &text, &nkeys, &st);
        GOTO_IF_CFITSIO(st, f, TF_ECORRUPT, "cannot read the header");
    }
    size_t len = strlen(text);
    GOTO_ERROR_IF(len % CARD != 0, f, TF_ECORRUPT, "header length %zu is not whole cards", len);
    /* Cards are ASCII 32-126; anything else becomes '?', as astropy does
     * (the shim hands these strings to Python, which wants valid UTF-8). */
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)text[i] < 32 || (unsigned char)text[i] > 126) text[i] = '?';
    size_t ncard = len / CARD;
    /* Each card yields at most its key, value and comment. */
    f->cards = calloc(ncard ? ncard : 1, sizeof *f->cards);
    f->card_text = malloc(ncard * 3 * (CARD + 1) + 1);
    GOTO_ERROR_IF(!f->cards || !f->card_text, f, TF_ENOMEM, "out of memory for %zu cards", ncard);

    char *arena = f->card_text;
    int n = 0;
    for (size_t c = 0; c < ncard; c++) {
        const char *card = text + c * CARD;
        tf_card *out = &f->cards[n];
        size_t clen;
        const char *com;
        if (strncmp(card, "HIERARCH ", 9) == 0) {
            const char *eq = memchr(card, '=', CARD);
            if (eq) {
                const char *k = card + 9;
                while (k < eq && *k == ' ') k++;
                out->key = put(&arena, k, (size_t)(eq - k));
                parse_value(card, out, &arena);
                n++;
                continue;
            }
        }
        if (is_key(card, "END")) break;
        char key[9];
        memcpy(key, card, 8);
        key[8] = 0;
        int valued = card[8] == '=' && card[9] == ' ';
        if (!valued || is_key(card, "COMMENT") || is_key(card, "HISTORY")) {
            size_t k = 8;
            while (k > 0 && key[k - 1] == ' ') k--;
            if (k == 0) {
                /* A blank keyword: commentary text, kept unless empty. */
                const char *t = card + 8;
                size_t tl = CARD - 8;
                while (tl > 0 && t[tl - 1] == ' ') tl--;
                if (tl == 0) continue;
            }
            out->key = put(&arena, key, k);
            out->value = put(&arena, card + 8, CARD - 8);
            out->comment = put(&arena, "", 0);
            out->type = 'H';
            n++;
            continue;
        }
        out->key = put(&arena, key, 8);
        /* The value: after "= ", up to the comment for non-strings. */
        const char *v = card + 10;
        size_t vl = CARD - 10;
        while (vl > 0 && *v == ' ') { v++; vl--; }
        if (vl > 0 && *v == '\'') {
            size_t end;
            char *dst = arena;
            size_t k = unquote(v, vl, dst, &end);
            com = comment_of(v, vl, end, &clen);
            /* Long strings: value ending in '&' continued on CONTINUE cards. */
            while (k > 0 && c + 1 < ncard) {
                size_t t = k;
                while (t > 0 && dst[t - 1] == ' ') t--;
                if (t == 0 || dst[t - 1] != '&') break;
                const char *next = text + (c + 1) * CARD;
                if (!is_key(next, "CONTINUE")) break;
                const char *q = memchr(next + 8, '\'', CARD - 8);
                if (!q) break;
                k = t - 1;
                size_t qend;
                size_t qn = (size_t)(next + CARD - q);
                k += unquote(q, qn, dst + k, &qend);
                com = comment_of(q, qn, qend, &clen);
                card = next;
                c++;
            }
            out->value = put(&arena, dst, k);
            out->comment = put(&arena, com, clen);
            out->type = 'C';
            n++;
            continue;
        }
        parse_value(card, out, &arena);
        n++;
    }
    f->ncards = n;
    *ncards = n;
cleanup:
    if (raw) {
        free(raw);
    } else if (text) {
        int st2 = 0;
        fits_free_memory(text, &st2);
    }
    return rc;
}

int tf_header_card(const tf_file *f, int i, const char **key, const char **value,
                   const char **comment, char *type) {
    if (!f || i < 0 || i >= f->ncards) return TF_EINVAL;
    const tf_card *c = &f->cards[i];
    if (key) *key = c->key;
    if (value) *value = c->value;
    if (comment) *comment = c->comment;
    if (type) *type = c->type;
    return TF_OK;
}
