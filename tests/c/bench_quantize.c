/*
 * bench_quantize.c - the writer's float quantizer (csrc/core/write/quantize.c)
 * against cfitsio's fits_quantize_float on one thread: a 4096 x 4096
 * float32 image of noise on a level, quantized a row (one default tile)
 * at a time at level 4 with SUBTRACTIVE_DITHER_1. Prints the minimum over
 * argv[1] runs (3) of the CPU time of the quantize calls alone, and checks
 * that both give the same integers and scaling.
 *
 *   cc -std=c11 -O2 tests/c/bench_quantize.c csrc/core/write/quantize.c \
 *      -o /tmp/bench_quantize -lcfitsio -lm && /tmp/bench_quantize 3
 */
#define _GNU_SOURCE
#include <fitsio2.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../csrc/core/write/quantize.h"

#include "check.h"

enum { N = 4096 };

static double cpu(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    int runs = argc > 1 ? atoi(argv[1]) : 3;
    if (fits_init_randoms()) return 2;
    float *img = malloc(sizeof(float) * N * N), *row = malloc(sizeof(float) * N);
    int *a = malloc(sizeof(int) * N), *b = malloc(sizeof(int) * N);
    for (long i = 0; i < (long)N * N; i++) {
        double u1 = (next() + 1.0) / 4294967297.0, u2 = (next() + 1.0) / 4294967297.0;
        img[i] = (float)(100 + 10 * sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
    }
    double best_ours = 1e30, best_cfitsio = 1e30;
    int same = 1;
    for (int r = 0; r < runs; r++) {
        double t_ours = 0, t_cfitsio = 0;
        for (int y = 0; y < N; y++) {
            double s1, z1, s2, z2;
            int mn, mx;
            double t0 = cpu();
            int q1 = tf_quantize_float(y + 1 + 42, img + (long)y * N, N, 1, 0, 0, 4.0f, 1, a, &s1,
                                       &z1);
            double t1 = cpu();
            memcpy(row, img + (long)y * N, sizeof(float) * N);
            double t2 = cpu();
            int q2 = fits_quantize_float(y + 1 + 42, row, N, 1, 0, 0, 4.0f, 1, b, &s2, &z2, &mn,
                                         &mx);
            double t3 = cpu();
            t_ours += t1 - t0;
            t_cfitsio += t3 - t2;
            if (q1 != q2 || (q1 == 1 && (s1 != s2 || z1 != z2 || memcmp(a, b, sizeof(int) * N))))
                same = 0;
        }
        if (t_ours < best_ours) best_ours = t_ours;
        if (t_cfitsio < best_cfitsio) best_cfitsio = t_cfitsio;
    }
    printf("quantize 4096 x 4096 float32, a row a tile: ours %.3f s, cfitsio %.3f s (%.2fx), "
           "same output: %s\n", best_ours, best_cfitsio, best_cfitsio / best_ours,
           same ? "yes" : "NO");
    return same ? 0 : 1;
}
