/*
 * test_rice.c - the core's RICE_1 decoder against cfitsio's.
 *
 * Streams come from cfitsio's own encoders (fits_rcomp, _short, _byte) on
 * random data of many kinds (smooth, noisy, constant, full range, short
 * tails); ours must decode them to exactly what fits_rdecomp / _short /
 * _byte give. Then every truncation of some of them, and random garbage:
 * ours must stop with an error (or, when the cut only dropped padding,
 * still give the right pixels), never reading or writing out of bounds
 * (this file is also run under ASan/UBSan). cfitsio never sees garbage.
 * Prints "N passed, M failed".
 */
#define _GNU_SOURCE
#include <fitsio2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../csrc/core/compress/rice.h"

#include "check.h"

/* Pixels of kind k: 0 smooth walk, 1 noise of random width, 2 constant
 * runs, 3 full range, 4 mix of blocks. */
static void fill(int32_t *v, int n, int kind, int bits) {
    uint32_t x = next(); /* wraps, as a walk in 8*bytepix bits would */
    int width = 1 + (int)(next() % (unsigned)bits);
    for (int i = 0; i < n; i++) {
        int k = kind == 4 ? (int)((i / 16 + next() % 2) % 4) : kind;
        switch (k) {
        case 0: x += next() % 7 - 3; break;
        case 1: x += (next() & ((1u << (width - 1)) * 2 - 1)) - (1u << (width - 1)); break;
        case 2: if (next() % 50 == 0) x = next(); break;
        default: x = next(); break;
        }
        v[i] = (int32_t)x;
    }
}

/* Encode with cfitsio, decode with both, compare; return the stream. */
static int roundtrip(int bytepix, int nblock, int n, int kind, unsigned char *c, int cap,
                     void *ref) {
    int32_t *v = malloc(sizeof(int32_t) * (size_t)n);
    fill(v, n, kind, 8 * bytepix);
    int clen;
    if (bytepix == 4) {
        clen = fits_rcomp((int *)v, n, c, cap, nblock);
    } else if (bytepix == 2) {
        short *s = malloc(sizeof(short) * (size_t)n);
        for (int i = 0; i < n; i++) s[i] = (short)v[i];
        clen = fits_rcomp_short(s, n, c, cap, nblock);
        free(s);
    } else {
        signed char *s = malloc((size_t)n);
        for (int i = 0; i < n; i++) s[i] = (signed char)v[i];
        clen = fits_rcomp_byte(s, n, c, cap, nblock);
        free(s);
    }
    free(v);
    CHECK(clen > 0);
    if (clen <= 0) return 0;
    /* cfitsio's decoders check the stream's end only after each block:
     * hand them a padded copy, to be safe. */
    unsigned char *pad = calloc((size_t)clen + 64, 1);
    memcpy(pad, c, (size_t)clen);
    int st = bytepix == 4   ? fits_rdecomp(pad, clen, ref, n, nblock)
             : bytepix == 2 ? fits_rdecomp_short(pad, clen, ref, n, nblock)
                            : fits_rdecomp_byte(pad, clen, ref, n, nblock);
    free(pad);
    CHECK(st == 0);
    /* ours, on an exact-size copy so ASan sees any overread */
    unsigned char *exact = malloc((size_t)clen);
    memcpy(exact, c, (size_t)clen);
    void *mine = malloc((size_t)n * (size_t)bytepix);
    CHECK(tf_rice_decode(exact, (size_t)clen, bytepix, nblock, n, mine) == TF_RICE_OK);
    CHECK(memcmp(mine, ref, (size_t)n * (size_t)bytepix) == 0);
    /* a prefix only */
    int part = n / 3;
    CHECK(tf_rice_decode(exact, (size_t)clen, bytepix, nblock, part, mine) == TF_RICE_OK);
    CHECK(memcmp(mine, ref, (size_t)part * (size_t)bytepix) == 0);
    free(mine);
    free(exact);
    return clen;
}

static void test_valid(void) {
    const int bps[3] = {1, 2, 4}, blocks[2] = {16, 32};
    const int sizes[] = {1, 2, 15, 16, 17, 31, 33, 100, 1000, 4096, 65536};
    for (int b = 0; b < 3; b++)
        for (int k = 0; k < 2; k++)
            for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
                for (int kind = 0; kind < 5; kind++)
                    for (int rep = 0; rep < 3; rep++) {
                        int n = sizes[s], cap = n * 5 + 64;
                        unsigned char *c = malloc((size_t)cap);
                        void *ref = malloc((size_t)n * 4);
                        roundtrip(bps[b], blocks[k], n, kind, c, cap, ref);
                        free(ref);
                        free(c);
                    }
}

/* Every truncation of a few streams: an error, or the right pixels. */
static void test_truncated(void) {
    const int bps[3] = {1, 2, 4};
    for (int b = 0; b < 3; b++)
        for (int kind = 0; kind < 5; kind++) {
            int n = 300, cap = n * 5 + 64, bp = bps[b];
            unsigned char *c = malloc((size_t)cap);
            void *ref = malloc((size_t)n * 4);
            int clen = roundtrip(bp, 32, n, kind, c, cap, ref);
            void *mine = malloc((size_t)n * 4);
            int bad = 0;
            for (int cut = 0; cut < clen; cut++) {
                unsigned char *t = malloc((size_t)cut + 1);
                memcpy(t, c, (size_t)cut);
                int st = tf_rice_decode(t, (size_t)cut, bp, 32, n, mine);
                if (st == TF_RICE_OK && memcmp(mine, ref, (size_t)n * (size_t)bp) != 0) bad++;
                if (st != TF_RICE_OK && st != TF_RICE_SHORT && st != TF_RICE_BAD) bad++;
                free(t);
            }
            CHECK(bad == 0);
            /* the stream cut right after its first byte past the raw pixel
             * cannot hold n pixels */
            CHECK(tf_rice_decode(c, (size_t)bp, bp, 32, n, mine) == TF_RICE_SHORT);
            free(mine);
            free(ref);
            free(c);
        }
}

/* Random bytes: any status, no overrun (ASan). */
static void test_garbage(void) {
    const int bps[3] = {1, 2, 4};
    int ok = 1;
    for (int rep = 0; rep < 3000; rep++) {
        size_t len = next() % 200;
        unsigned char *t = malloc(len + 1);
        for (size_t i = 0; i < len; i++)
            t[i] = (unsigned char)(rep % 3 == 0 ? next() : rep % 3 == 1 ? next() & next() : 0);
        int n = 1 + (int)(next() % 2000), bp = bps[rep % 3];
        void *out = malloc((size_t)n * 4);
        int st = tf_rice_decode(t, len, bp, rep % 2 ? 16 : 32, n, out);
        if (st != TF_RICE_OK && st != TF_RICE_SHORT && st != TF_RICE_BAD) ok = 0;
        free(out);
        free(t);
    }
    CHECK(ok);
    unsigned char z[8] = {0};
    uint32_t o[4];
    CHECK(tf_rice_decode(z, 8, 3, 32, 4, o) == TF_RICE_ARG);
    CHECK(tf_rice_decode(z, 8, 4, 0, 4, o) == TF_RICE_ARG);
    CHECK(tf_rice_decode(z, 8, 4, 32, 0, o) == TF_RICE_OK);
    CHECK(tf_rice_decode(z, 3, 4, 32, 4, o) == TF_RICE_SHORT);
    /* 5-bit code 31 (fs = 30 > fsmax): never written, rejected */
    unsigned char hi[8] = {0, 0, 0, 0, 0xf8, 0, 0, 0};
    CHECK(tf_rice_decode(hi, 8, 4, 32, 4, o) == TF_RICE_BAD);
    CHECK(strstr(tf_rice_strerror(TF_RICE_SHORT), "ends") != NULL);
}

int main(void) {
    test_valid();
    test_truncated();
    test_garbage();
    return check_report();
}
