/*
 * test_quantize.c - the writer's float quantizer (csrc/core/write/quantize.c)
 * against cfitsio's fits_quantize_float: for tiles of many shapes and
 * kinds (noise, sources, integer-valued counts, constant runs, nulls,
 * infinities, tiny and huge values), every quantize level and dither
 * method, and dither rows that cross the end of cfitsio's random table,
 * ours gives the same return value, ZSCALE and ZZERO bits and integers,
 * or hands the tile back to cfitsio (TF_QUANTIZE_ASK_CFITSIO), which must
 * happen only for the cases it names. Also run under ASan/UBSan. Prints
 * "N passed, M failed".
 */
#define _GNU_SOURCE
#include <fitsio2.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../csrc/core/write/quantize.h"

#include "check.h"

static double gauss(void) {
    double u1 = (next() + 1.0) / 4294967297.0, u2 = (next() + 1.0) / 4294967297.0;
    return sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Pixels of kind k into f (n of them). */
static void fill(float *f, long n, long nx, int kind) {
    double level = (next() % 3 == 0) ? 0 : 100.0 * (next() % 50);
    double sigma = kind == 7 ? 1e-30 : kind == 8 ? 1e25 : 0.5 + (next() % 200) / 10.0;
    for (long i = 0; i < n; i++) {
        double v = level + sigma * gauss();
        switch (kind) {
        case 1: /* sources */
            if (next() % 97 == 0) v += 50 * sigma * (next() % 100);
            break;
        case 2: /* counts: integer-valued, runs of equal values */
            v = floor(fabs(v) / 10);
            break;
        case 3: /* constant rows */
            if ((i / nx) % 2) v = 7.25;
            break;
        case 4: /* a constant image with one outlier */
            v = i == n / 2 ? 9.0 : 3.0;
            break;
        case 5: /* stretches of zeros (SUBTRACTIVE_DITHER_2 codes them) */
            if ((i / 37) % 3 == 0) v = 0.0;
            break;
        case 6: /* an infinity */
            if (i == n / 3) v = INFINITY;
            break;
        default: break;
        }
        f[i] = (float)v;
    }
}

/* Nulls (FLOATNULLVALUE) into f: scattered, a whole row, or all. */
static void nulls(float *f, long n, long nx, int how) {
    if (how == 1)
        for (long i = 0; i < n; i++)
            if (next() % 13 == 0) f[i] = FLOATNULLVALUE;
    if (how == 2)
        for (long i = 0; i < nx && i < n; i++) f[i] = FLOATNULLVALUE;
    if (how == 3)
        for (long i = 0; i < n; i++) f[i] = FLOATNULLVALUE;
}

static int asked;

static void compare(const float *f, long nx, long ny, int nullcheck, float q, int method,
                    long row, int *a, int *b, float *copy) {
    long n = nx * ny;
    double s1 = 0, z1 = 0, s2 = 0, z2 = 0;
    int mn = 0, mx = 0;
    memset(a, 0x55, sizeof(int) * (size_t)n);
    memset(b, 0x55, sizeof(int) * (size_t)n);
    memcpy(copy, f, sizeof(float) * (size_t)n);
    int ours = tf_quantize_float(row, f, nx, ny, nullcheck, FLOATNULLVALUE, q, method, a, &s1,
                                 &z1);
    if (ours == TF_QUANTIZE_ASK_CFITSIO) {
        asked++;
        return;
    }
    CHECK(memcmp(copy, f, sizeof(float) * (size_t)n) == 0); /* input untouched */
    int theirs = fits_quantize_float(row, copy, nx, ny, nullcheck, FLOATNULLVALUE, q, method, b,
                                     &s2, &z2, &mn, &mx);
    CHECK(ours == theirs);
    if (ours != theirs) {
        fprintf(stderr, "  nx %ld ny %ld q %g method %d row %ld: %d vs %d\n", nx, ny, q, method,
                row, ours, theirs);
        return;
    }
    if (ours != 1) return;
    CHECK(memcmp(&s1, &s2, sizeof s1) == 0 && memcmp(&z1, &z2, sizeof z1) == 0);
    int same = memcmp(a, b, sizeof(int) * (size_t)n) == 0;
    CHECK(same);
    if (!same || memcmp(&s1, &s2, sizeof s1) || memcmp(&z1, &z2, sizeof z1))
        fprintf(stderr, "  nx %ld ny %ld q %g method %d row %ld nullcheck %d: scale %.17g/%.17g "
                "zero %.17g/%.17g\n", nx, ny, q, method, row, nullcheck, s1, s2, z1, z2);
}

int main(void) {
    if (fits_init_randoms()) return 2;
    static const long shapes[][2] = {{1, 1},   {5, 1},  {8, 1},   {9, 1},  {3, 3},   {2, 5},
                                     {4096, 1}, {257, 7}, {100, 100}, {10, 300}, {1, 50},
                                     {20000, 1}, {33, 2}, {9, 9}};
    static const float levels[] = {4.0f, 0.0f, 16.0f, 1.5f, 64.0f, -0.5f};
    static const int methods[] = {1, 2, -1};
    long maxn = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        if (shapes[s][0] * shapes[s][1] > maxn) maxn = shapes[s][0] * shapes[s][1];
    float *f = malloc(sizeof(float) * (size_t)maxn), *copy = malloc(sizeof(float) * (size_t)maxn);
    int *a = malloc(sizeof(int) * (size_t)maxn), *b = malloc(sizeof(int) * (size_t)maxn);
    int total = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        long nx = shapes[s][0], ny = shapes[s][1], n = nx * ny;
        for (int kind = 0; kind <= 8; kind++) {
            for (int how = 0; how <= 3; how++) {
                fill(f, n, nx, kind);
                nulls(f, n, nx, how);
                for (size_t l = 0; l < sizeof levels / sizeof levels[0]; l++)
                    for (size_t m = 0; m < sizeof methods / sizeof methods[0]; m++) {
                        long row = methods[m] == -1 ? 0 : 1 + (long)(next() % 10000);
                        if (n >= 20000 && row < 9000) row += 9000;  /* past the table's end */
                        compare(f, nx, ny, how != 0, levels[l], methods[m], row, a, b, copy);
                        total++;
                    }
            }
        }
    }
    /* Ours answers for most tiles: the cases it hands back are the rare ones. */
    CHECK(asked < total / 3);
    fprintf(stderr, "%d of %d tiles handed back to cfitsio\n", asked, total);
    free(f);
    free(copy);
    free(a);
    free(b);
    return check_report();
}
