/*
 * quantize.c - cfitsio's fits_quantize_float with its noise estimate made
 * fast, for the writer's tile threads (compress_tiles.c).
 *
 * cfitsio spends nearly all of a quantized float write in FnNoise5_float:
 * per image row, three quick_select medians of about a row of absolute
 * differences. A median is a value, so any exact selection gives it: here
 * a radix select on the float bits (the differences are >= 0, so their
 * bits sort as they do). Everything else is cfitsio's quantize.c line for
 * line, in the same float and double arithmetic, so the integers, ZSCALE
 * and ZZERO are bit for bit cfitsio's (tests/c/test_quantize.c compares
 * them).
 *
 * One place cfitsio reads what an earlier row left behind: on a row where
 * fewer 2nd-order differences than 3rd-order ones were kept (runs of three
 * equal pixels), it takes the median of differences2 over the 3rd-order
 * count, past what this row wrote, into what quick_select's swaps of
 * earlier rows left there. Such a tile is handed back to cfitsio
 * (TF_QUANTIZE_ASK_CFITSIO), as are NaN differences (infinities in the
 * data) and the absolute quantize levels (qlevel < 0, which skip the noise
 * estimate and are fast in cfitsio already).
 */
/* No fused multiply-adds: cfitsio's arithmetic rounds every step (gcc in
 * ISO C mode does not contract; clang needs telling). */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "quantize.h"

/* quantize.c's */
#define NINT(x) ((x >= 0.) ? (int)(x + 0.5) : (int)(x - 0.5))
#define NULL_VALUE -2147483647
#define ZERO_VALUE -2147483646
#define N_RESERVED_VALUES 10
#define N_RANDOM 10000
#define SUBTRACTIVE_DITHER_2 2

extern float *fits_rand_value;  /* cfitsio's (imcompress.c), from fits_init_randoms */

/* The value of rank k (0-based) among the n floats >= 0 (no NaN) whose
 * bits are at a: three counting passes over 11, 11 and 10 bits, the
 * later ones over the values that share the bits found so far. */
static uint32_t select_rank(const uint32_t *a, int n, int k, uint32_t *tmp) {
    unsigned cnt[2048];
    memset(cnt, 0, sizeof cnt);
    for (int i = 0; i < n; i++) cnt[a[i] >> 21]++;
    uint32_t b1 = 0;
    while ((unsigned)k >= cnt[b1]) k -= (int)cnt[b1++];
    int m = 0;
    for (int i = 0; i < n; i++)
        if (a[i] >> 21 == b1) tmp[m++] = a[i];
    memset(cnt, 0, sizeof cnt);
    for (int i = 0; i < m; i++) cnt[(tmp[i] >> 10) & 2047]++;
    uint32_t b2 = 0;
    while ((unsigned)k >= cnt[b2]) k -= (int)cnt[b2++];
    memset(cnt, 0, 1024 * sizeof cnt[0]);
    for (int i = 0; i < m; i++)
        if (((tmp[i] >> 10) & 2047) == b2) cnt[tmp[i] & 1023]++;
    uint32_t b3 = 0;
    while ((unsigned)k >= cnt[b3]) k -= (int)cnt[b3++];
    return b1 << 21 | b2 << 10 | b3;
}

/* quick_select_float's result: the median (rank (n - 1) / 2). */
static float median(const float *a, int n, uint32_t *tmp) {
    uint32_t bits = select_rank((const uint32_t *)(const void *)a, n, (n - 1) / 2, tmp);
    float v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The median of n row values, as FnNoise5_float takes it. */
static double median_of_rows(double *d, long n) {
    if (n == 0) return 0;
    if (n == 1) return d[0];
    qsort(d, (size_t)n, sizeof *d, by_value);
    return (d[(n - 1) / 2] + d[n / 2]) / 2.;
}

/* FnNoise5_float; 1 where cfitsio itself must answer (see the top). */
static int noise5(const float *array, long nx, long ny, int nullcheck, float nullvalue,
                  long *ngood, float *minval, float *maxval, double *noise2, double *noise3,
                  double *noise5v, int *nomem) {
    long nrows = 0, nrows2 = 0, ngoodpix = 0;
    float xminval = FLT_MAX, xmaxval = -FLT_MAX;
    if (nx < 9) {
        nx = nx * ny;
        ny = 1;
    }
    if (nx < 9) {
        for (long ii = 0; ii < nx; ii++) {
            if (nullcheck && array[ii] == nullvalue) continue;
            if (array[ii] < xminval) xminval = array[ii];
            if (array[ii] > xmaxval) xmaxval = array[ii];
            ngoodpix++;
        }
        *minval = xminval;
        *maxval = xmaxval;
        *ngood = ngoodpix;
        *noise2 = *noise3 = *noise5v = 0.;
        return 0;
    }
    float *d2 = malloc(sizeof(float) * (size_t)nx * 3);
    uint32_t *tmp = malloc(sizeof(uint32_t) * (size_t)nx);
    double *rows = malloc(sizeof(double) * (size_t)ny * 3);
    if (!d2 || !tmp || !rows) {
        free(d2);
        free(tmp);
        free(rows);
        *nomem = 1;
        return 1;
    }
    float *d3 = d2 + nx, *d5 = d3 + nx;
    double *diffs2 = rows, *diffs3 = rows + ny, *diffs5 = rows + 2 * ny;
    int ask = 0;
    for (long jj = 0; jj < ny && !ask; jj++) {
        const float *rowpix = array + jj * nx;
        float v[9];
        long ii = -1;
        int found = 0;
        /* the first 8 valid pixels */
        for (; found < 8; found++) {
            ii++;
            if (nullcheck)
                while (ii < nx && rowpix[ii] == nullvalue) ii++;
            if (ii >= nx) break;
            v[found] = rowpix[ii];
            ngoodpix++;
            if (v[found] < xminval) xminval = v[found];
            if (v[found] > xmaxval) xmaxval = v[found];
        }
        if (found < 8) continue;
        float v1 = v[0], v2 = v[1], v3 = v[2], v4 = v[3], v5 = v[4], v6 = v[5], v7 = v[6],
              v8 = v[7];
        long nvals = 0, nvals2 = 0;
        int nan = 0;
        for (ii++; ii < nx; ii++) {
            if (nullcheck)
                while (ii < nx && rowpix[ii] == nullvalue) ii++;
            if (ii == nx) break;
            float v9 = rowpix[ii];
            if (v9 < xminval) xminval = v9;
            if (v9 > xmaxval) xmaxval = v9;
            if (!(v5 == v6 && v6 == v7)) {
                d2[nvals2] = (float)fabs(v5 - v7);
                nan |= isnan(d2[nvals2]);
                nvals2++;
            }
            if (!(v3 == v4 && v4 == v5 && v5 == v6 && v6 == v7)) {
                d3[nvals] = (float)fabs((2 * v5) - v3 - v7);
                d5[nvals] = (float)fabs((6 * v5) - (4 * v3) - (4 * v7) + v1 + v9);
                nan |= isnan(d3[nvals]) | isnan(d5[nvals]);
                nvals++;
            } else {
                ngoodpix++;
            }
            v1 = v2;
            v2 = v3;
            v3 = v4;
            v4 = v5;
            v5 = v6;
            v6 = v7;
            v7 = v8;
            v8 = v9;
        }
        ngoodpix += nvals;
        if (nan || (nvals > 1 && nvals2 > 1 && nvals2 < nvals)) {
            ask = 1;
        } else if (nvals == 0) {
            continue;
        } else if (nvals == 1) {
            if (nvals2 == 1) diffs2[nrows2++] = d2[0];
            diffs3[nrows] = d3[0];
            diffs5[nrows] = d5[0];
            nrows++;
        } else {
            if (nvals2 > 1) diffs2[nrows2++] = median(d2, (int)nvals, tmp);
            diffs3[nrows] = median(d3, (int)nvals, tmp);
            diffs5[nrows] = median(d5, (int)nvals, tmp);
            nrows++;
        }
    }
    if (!ask) {
        double x3 = median_of_rows(diffs3, nrows), x5 = median_of_rows(diffs5, nrows);
        double x2 = median_of_rows(diffs2, nrows2);
        *ngood = ngoodpix;
        *minval = xminval;
        *maxval = xmaxval;
        *noise2 = 1.0483579 * x2;
        *noise3 = 0.6052697 * x3;
        *noise5v = 0.1772048 * x5;
    }
    free(d2);
    free(tmp);
    free(rows);
    return ask;
}

int tf_quantize_float(long row, const float *fdata, long nxpix, long nypix, int nullcheck,
                      float in_null_value, float qlevel, int dither_method, int *idata,
                      double *bscale, double *bzero) {
    long nx = nxpix * nypix, ngood = 0;
    if (nx <= 1) {
        *bscale = 1.;
        *bzero = 0.;
        return 0;
    }
    if (qlevel < 0.) return TF_QUANTIZE_ASK_CFITSIO;
    double stdev, noise2 = 0, noise3 = 0, noise5v = 0, delta, zeropt;
    float minval = 0., maxval = 0.;
    int nomem = 0;
    if (noise5(fdata, nxpix, nypix, nullcheck, in_null_value, &ngood, &minval, &maxval, &noise2,
               &noise3, &noise5v, &nomem))
        return nomem ? TF_QUANTIZE_NOMEM : TF_QUANTIZE_ASK_CFITSIO;
    if (nullcheck && ngood == 0) {
        minval = 0.;
        maxval = 1.;
        stdev = 1;
    } else {
        stdev = noise3;
        if (noise2 != 0. && noise2 < stdev) stdev = noise2;
        if (noise5v != 0. && noise5v < stdev) stdev = noise5v;
    }
    if (qlevel == 0.) delta = stdev / 4.;
    else delta = stdev / qlevel;
    if (delta == 0.) return 0;
    if ((maxval - minval) / delta > 2. * 2147483647. - N_RESERVED_VALUES) return 0;

    int iseed = 0, nextrand = 0;
    if (row > 0) {
        if (!fits_rand_value) return TF_QUANTIZE_ASK_CFITSIO;
        iseed = (int)((row - 1) % N_RANDOM);
        nextrand = (int)(fits_rand_value[iseed] * 500.);
    }
    const int nulls = ngood != nx;
    if (!nulls) {
        if (dither_method == SUBTRACTIVE_DITHER_2) {
            zeropt = minval - delta * (NULL_VALUE + N_RESERVED_VALUES);
        } else if ((maxval - minval) / delta < 2147483647. - N_RESERVED_VALUES) {
            zeropt = minval;
            long long iqfactor = (long long)(zeropt / delta + 0.5);
            zeropt = iqfactor * delta;
        } else {
            zeropt = (minval + maxval) / 2.;
        }
    } else {
        zeropt = minval - delta * (NULL_VALUE + N_RESERVED_VALUES);
    }
    if (row > 0) {
        /* The random numbers run in stretches to the end of the table;
         * each stretch is a loop the compiler can vectorize. */
        const int zero_code = dither_method == SUBTRACTIVE_DITHER_2;
        for (long i = 0; i < nx;) {
            long n = nx - i < N_RANDOM - nextrand ? nx - i : N_RANDOM - nextrand;
            const float *r = fits_rand_value + nextrand;
            const float *f = fdata + i;
            int *out = idata + i;
            for (long j = 0; j < n; j++) {
                double x = (((double)f[j] - zeropt) / delta) + r[j] - 0.5;
                int q = NINT(x);
                if (zero_code && f[j] == 0.0) q = ZERO_VALUE;
                if (nulls && f[j] == in_null_value) q = NULL_VALUE;
                out[j] = q;
            }
            i += n;
            nextrand += (int)n;
            if (nextrand == N_RANDOM) {
                iseed++;
                if (iseed == N_RANDOM) iseed = 0;
                nextrand = (int)(fits_rand_value[iseed] * 500);
            }
        }
    } else {
        for (long i = 0; i < nx; i++) {
            int q = NINT((fdata[i] - zeropt) / delta);
            if (nulls && fdata[i] == in_null_value) q = NULL_VALUE;
            idata[i] = q;
        }
    }
    *bscale = delta;
    *bzero = zeropt;
    return 1;
}
