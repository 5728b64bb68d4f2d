/*
 * test_hcompress.c - the core's HCOMPRESS_1 decoder against cfitsio's.
 *
 * Streams come from cfitsio's own encoders (fits_hcompress for the 32-bit
 * path, fits_hcompress64 for the 64-bit one) on images of many shapes
 * (1 x 1, single rows and columns, odd sizes, up to 256 x 256 and 4096 x
 * 16) and kinds (smooth, noisy, constant, full range, spikes), lossless
 * and lossy (scale 0 to 64), decoded with and without smoothing; ours must
 * give exactly what fits_hdecompress / fits_hdecompress64 give. Then every
 * truncation of some of them, damaged copies and random garbage: ours must
 * stop with an error (or give the right pixels), never reading or writing
 * out of bounds (this file is also run under ASan/UBSan). cfitsio never
 * sees a damaged stream, nor a single row or column of more than 8
 * pixels: for those its decoder writes the quadtree of an empty quadrant
 * (which still expands along its other axis) past a malloc(0), which
 * glibc absorbs only up to its smallest chunk (ASan: SEGV at 90 pixels).
 * Ours decodes long single rows and columns losslessly, checked against
 * the pixels themselves. Prints "N passed, M failed".
 */
#define _GNU_SOURCE
#include <fitsio2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../csrc/core/compress/hcompress.h"

#include "check.h"

enum { SMOOTH, NOISE, CONSTANT, FULL, SPIKES, KINDS };

/* w x h pixels (w fastest) of kind k within `bits` signed bits. */
static void fill(int64_t *v, int w, int h, int kind, int bits) {
    int64_t lim = ((int64_t)1 << (bits - 1)) - 1;
    int64_t base = (int64_t)(next() % 2000) - 1000;
    int amp = 1 + (int)(next() % 300);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int64_t p;
            switch (kind) {
            case SMOOTH: p = base + (x * 7 + y * 3) % amp + (int)(next() % 5) - 2; break;
            case NOISE: p = base + (int64_t)(next() % (unsigned)(2 * amp)) - amp; break;
            case CONSTANT: p = base; break;
            case FULL: p = (int64_t)(((uint64_t)next() << 32 | next()) % (uint64_t)(2 * lim)) - lim; break;
            default: p = next() % 40 == 0 ? lim / 2 - (int64_t)(next() % 1000) : base; break;
            }
            if (p > lim) p = lim;
            if (p < -lim) p = -lim;
            v[(size_t)y * w + x] = p;
        }
}

/* Encode a w x h image with cfitsio (wide: the 64-bit coder), return the
 * stream (malloc'd, *len bytes) or NULL. */
static unsigned char *encode(const int64_t *v, int w, int h, int scale, int wide, long *len) {
    size_t n = (size_t)w * h;
    long cap = (long)(n * 16 + 1024);
    char *c = malloc((size_t)cap);
    int st = 0;
    *len = cap;
    if (wide) {
        LONGLONG *a = malloc(n * sizeof *a);
        for (size_t i = 0; i < n; i++) a[i] = v[i];
        fits_hcompress64(a, w, h, scale, c, len, &st);
        free(a);
    } else {
        int *a = malloc(n * sizeof *a);
        for (size_t i = 0; i < n; i++) a[i] = (int)v[i];
        fits_hcompress(a, w, h, scale, c, len, &st);
        free(a);
    }
    CHECK(st == 0 && *len > 0);
    if (st || *len <= 0) {
        free(c);
        return NULL;
    }
    return (unsigned char *)c;
}

/* cfitsio's decode of a valid stream: n pixels into ref. */
static int cfitsio_decode(const unsigned char *c, long len, int smooth, int wide, size_t n,
                          int32_t *ref) {
    unsigned char *pad = calloc((size_t)len + 64, 1);
    memcpy(pad, c, (size_t)len);
    int nx = 0, ny = 0, scale = 0, st = 0;
    if (wide) {
        LONGLONG *a = malloc(n * sizeof *a);
        fits_hdecompress64(pad, smooth, a, &nx, &ny, &scale, &st);
        memcpy(ref, a, n * 4); /* it packs the ints at the front */
        free(a);
    } else {
        fits_hdecompress(pad, smooth, (int *)ref, &nx, &ny, &scale, &st);
    }
    free(pad);
    return st == 0 && (size_t)nx * (size_t)ny == n ? 0 : -1;
}

/* Ours on an exact-size copy (so ASan sees any overread). */
static int ours(const unsigned char *c, size_t len, int smooth, int wide, size_t n, int32_t *out) {
    unsigned char *exact = malloc(len ? len : 1);
    memcpy(exact, c, len);
    size_t wl = tf_hcomp_work_size((int64_t)n, wide);
    void *work = malloc(wl ? wl : 1);
    int st = tf_hcomp_decode(exact, len, smooth, wide, (int64_t)n, out, work, wl);
    free(work);
    free(exact);
    return st;
}

static int mismatches;

/* Encode, decode with both (smooth 0 and 1), compare; the stream back. */
static unsigned char *roundtrip(int w, int h, int kind, int scale, int wide, long *len,
                                int32_t *ref_smooth0) {
    size_t n = (size_t)w * h;
    int64_t *v = malloc(n * sizeof *v);
    fill(v, w, h, kind, wide ? 32 : 16);
    unsigned char *c = encode(v, w, h, scale, wide, len);
    free(v);
    if (!c) return NULL;
    int32_t *ref = malloc(n * 4), *mine = malloc(n * 4);
    for (int smooth = 0; smooth < 2; smooth++) {
        CHECK(cfitsio_decode(c, *len, smooth, wide, n, ref) == 0);
        CHECK(ours(c, (size_t)*len, smooth, wide, n, mine) == TF_HCOMP_OK);
        int same = memcmp(mine, ref, n * 4) == 0;
        CHECK(same);
        if (!same && mismatches++ < 5)
            fprintf(stderr, "  mismatch: %dx%d kind %d scale %d wide %d smooth %d\n", w, h, kind,
                    scale, wide, smooth);
        if (smooth == 0 && ref_smooth0) memcpy(ref_smooth0, ref, n * 4);
    }
    free(mine);
    free(ref);
    return c;
}

static void test_valid(void) {
    static const int sizes[][2] = {{1, 1},  {1, 2},   {2, 1},   {1, 7},    {7, 1},   {2, 3},
                                   {3, 2},  {4, 4},   {5, 5},   {3, 9},    {17, 33}, {33, 17},
                                   {31, 63}, {64, 64}, {100, 100}, {300, 7}, {7, 300}, {256, 256},
                                   {4096, 16}, {8, 1}, {1, 8}};
    static const int scales[] = {0, 1, 2, 4, 16, 64};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (int kind = 0; kind < KINDS; kind++)
            for (size_t k = 0; k < sizeof scales / sizeof scales[0]; k++)
                for (int wide = 0; wide < 2; wide++) {
                    int w = sizes[s][0], h = sizes[s][1];
                    if (w * h > 10000 && (kind % 2 || k % 2)) continue; /* keep it quick */
                    long len;
                    free(roundtrip(w, h, kind, scales[k], wide, &len, NULL));
                }
}

/* Single rows and columns too long for cfitsio's decoder: lossless
 * streams give the pixels back. */
static void test_lines(void) {
    static const int sizes[][2] = {{90, 1}, {1, 90}, {1000, 1}, {1, 1000}, {4097, 1}, {1, 333}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (int kind = 0; kind < KINDS; kind++)
            for (int wide = 0; wide < 2; wide++) {
                int w = sizes[s][0], h = sizes[s][1];
                size_t n = (size_t)w * h;
                int64_t *v = malloc(n * sizeof *v);
                fill(v, w, h, kind, wide ? 32 : 16);
                long len;
                unsigned char *c = encode(v, w, h, 0, wide, &len);
                int32_t *mine = malloc(n * 4);
                int same = c && ours(c, (size_t)len, kind % 2, wide, n, mine) == TF_HCOMP_OK;
                for (size_t i = 0; same && i < n; i++) same = mine[i] == (int32_t)v[i];
                CHECK(same);
                free(mine);
                free(c);
                free(v);
            }
}

/* Every truncation of a few streams: an error, or the right pixels. */
static void test_truncated(void) {
    static const int cases[][5] = {/* w, h, kind, scale, wide */
                                   {17, 33, NOISE, 0, 0},  {17, 33, SMOOTH, 4, 1},
                                   {1, 7, NOISE, 0, 0},    {40, 40, SPIKES, 16, 0},
                                   {33, 17, FULL, 0, 1},   {5, 5, CONSTANT, 0, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const int *t = cases[i];
        size_t n = (size_t)t[0] * t[1];
        int32_t *ref = malloc(n * 4), *mine = malloc(n * 4);
        long len;
        unsigned char *c = roundtrip(t[0], t[1], t[2], t[3], t[4], &len, ref);
        if (!c) continue;
        int bad = 0;
        for (long cut = 0; cut < len; cut++) {
            int st = ours(c, (size_t)cut, 0, t[4], n, mine);
            if (st == TF_HCOMP_OK && memcmp(mine, ref, n * 4) != 0) bad++;
            if (st != TF_HCOMP_OK && st != TF_HCOMP_SHORT && st != TF_HCOMP_BAD) bad++;
        }
        CHECK(bad == 0);
        /* cut inside the planes: short */
        if (len > 30) CHECK(ours(c, 26, 0, t[4], n, mine) == TF_HCOMP_SHORT);
        free(c);
        free(mine);
        free(ref);
    }
}

/* Damaged copies of valid streams and random bytes behind a valid header:
 * any status, nothing out of bounds (ASan, UBSan). */
static void test_garbage(void) {
    int ok = 1;
    for (int rep = 0; rep < 600; rep++) {
        int w = 1 + (int)(next() % 70), h = 1 + (int)(next() % 70), wide = rep % 2;
        size_t n = (size_t)w * h;
        long len;
        int64_t *v = malloc(n * sizeof *v);
        fill(v, w, h, (int)(next() % KINDS), wide ? 32 : 16);
        unsigned char *c = encode(v, w, h, (int)(next() % 3) * 8, wide, &len);
        free(v);
        if (!c) continue;
        int32_t *mine = malloc(n * 4);
        for (int m = 0; m < 20; m++) {
            unsigned char *d = malloc((size_t)len);
            memcpy(d, c, (size_t)len);
            int flips = 1 + (int)(next() % 4);
            for (int f = 0; f < flips; f++) {
                size_t at = m % 5 == 0 ? 22 + next() % 3 : 25 + next() % (uint32_t)(len > 25 ? len - 25 : 1);
                if (at < (size_t)len) d[at] ^= (unsigned char)(1 + next() % 255);
            }
            int st = ours(d, (size_t)len, (int)(next() % 2), wide, n, mine);
            if (st != TF_HCOMP_OK && st != TF_HCOMP_SHORT && st != TF_HCOMP_BAD) ok = 0;
            free(d);
        }
        /* random bits behind the valid header */
        size_t glen = 25 + next() % 400;
        unsigned char *g = malloc(glen);
        memcpy(g, c, 25);
        for (size_t i = 25; i < glen; i++)
            g[i] = (unsigned char)(rep % 3 == 0 ? next() : rep % 3 == 1 ? next() | next() : next() & next());
        g[22 + rep % 3] = (unsigned char)(next() % (wide ? 65 : 33));
        int st = ours(g, glen, rep % 2, wide, n, mine);
        if (st != TF_HCOMP_OK && st != TF_HCOMP_SHORT && st != TF_HCOMP_BAD) ok = 0;
        free(g);
        free(mine);
        free(c);
    }
    CHECK(ok);
}

static void put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (24 - 8 * i));
}

/* Headers that must be refused before any plane is read. */
static void test_header(void) {
    unsigned char s[64] = {0xDD, 0x99};
    int32_t out[16];
    put32(s + 2, 4);
    put32(s + 6, 4);
    CHECK(ours(s, sizeof s, 0, 0, 16, out) == TF_HCOMP_OK); /* no planes: an image of 0 */
    CHECK(ours(s, sizeof s, 0, 0, 15, out) == TF_HCOMP_SIZE);
    put32(s + 2, (uint32_t)-4);
    put32(s + 6, (uint32_t)-4);
    CHECK(ours(s, sizeof s, 0, 0, 16, out) == TF_HCOMP_SIZE);
    put32(s + 2, 0x10000);
    put32(s + 6, 0x10000); /* 2^32 wraps to 0 in 32 bits */
    CHECK(ours(s, sizeof s, 0, 0, 16, out) == TF_HCOMP_SIZE);
    put32(s + 2, 4);
    put32(s + 6, 4);
    s[22] = 33;
    CHECK(ours(s, sizeof s, 0, 0, 16, out) == TF_HCOMP_BAD);
    CHECK(ours(s, sizeof s, 0, 1, 16, out) == TF_HCOMP_OK); /* 33 zero planes */
    s[22] = 65;
    CHECK(ours(s, sizeof s, 0, 1, 16, out) == TF_HCOMP_BAD);
    s[22] = 0;
    s[0] = 0xDE;
    CHECK(ours(s, sizeof s, 0, 0, 16, out) == TF_HCOMP_BAD);
    s[0] = 0xDD;
    CHECK(ours(s, 1, 0, 0, 16, out) == TF_HCOMP_SHORT);
    CHECK(ours(s, 24, 0, 0, 16, out) == TF_HCOMP_SHORT);
    /* a bad plane code (neither 0 nor 15) */
    s[22] = 1;
    s[25] = 0x50;
    CHECK(ours(s, sizeof s, 0, 0, 16, out) == TF_HCOMP_BAD);
    /* work too small, npix out of range */
    char work[8];
    CHECK(tf_hcomp_decode(s, sizeof s, 0, 0, 16, out, work, sizeof work) == TF_HCOMP_ARG);
    CHECK(tf_hcomp_work_size(0, 0) == 0 && tf_hcomp_work_size((int64_t)1 << 31, 1) == 0);
    CHECK(tf_hcomp_work_size(1000, 1) <= 13 * 1000 + 64 && tf_hcomp_work_size(1000, 0) <= 3 * 1000 + 64);
    CHECK(strstr(tf_hcomp_strerror(TF_HCOMP_SHORT), "ends") != NULL);
}

int main(void) {
    test_valid();
    test_lines();
    test_truncated();
    test_garbage();
    test_header();
    return check_report();
}
