/*
 * bench_hcompress_enc.c - the reentrant HCOMPRESS_1 encoder against
 * cfitsio's on one thread: a 4096 x 4096 noise image in 100 tiles of
 * 410 x 410 (the last row and column of tiles 406), lossless or at the
 * scale in argv[2], each tile copied fresh before each encode (not
 * timed). int32 pixels go through the 64-bit coders (fits_hcompress64,
 * tf_hcompress64: what cfitsio's writer uses for ZBITPIX 32), int16 ones
 * through the 32-bit coders. Prints the minimum over argv[1] runs (5) of
 * the CPU time of the encode calls alone, and checks that both give the
 * same bytes.
 *
 *   cc -std=c11 -O2 tests/c/bench_hcompress_enc.c csrc/core/write/hcompress_enc.c \
 *      -o /tmp/bench_hcompress_enc -lcfitsio -lm && /tmp/bench_hcompress_enc 5 0
 *
 * Instruction counts, which load on the machine does not change:
 *
 *   valgrind --tool=callgrind --toggle-collect='fits_hcompress*' \
 *      --toggle-collect='tf_hcompress*' /tmp/bench_hcompress_enc 1
 */
#define _GNU_SOURCE
#include <fitsio2.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../csrc/core/write/hcompress_enc.h"

#include "check.h"

enum { SIDE = 4096, TILE = 410 };

static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Approximately normal noise: mean 1000, sigma sigma. */
static int32_t noise(double sigma) {
    double s = 0;
    for (int i = 0; i < 12; i++) s += next() / 4294967296.0; /* 12 uniforms: variance 1 */
    return (int32_t)lround(1000 + sigma * (s - 6.0));
}

/* Seconds of encode calls to compress every tile; bytes out to *total. */
static double run(const int32_t *img, int wide, int ours, int scale, long *total,
                  unsigned char **keep) {
    long long *a64 = malloc(sizeof *a64 * TILE * TILE);
    int *a32 = malloc(sizeof *a32 * TILE * TILE);
    long cap = tf_hcompress_bound(TILE, TILE, wide);
    char *out = malloc((size_t)cap + 64);
    double secs = 0;
    int k = 0;
    *total = 0;
    for (int ty = 0; ty < SIDE; ty += TILE)
        for (int tx = 0; tx < SIDE; tx += TILE, k++) {
            int nx = SIDE - ty < TILE ? SIDE - ty : TILE; /* rows */
            int ny = SIDE - tx < TILE ? SIDE - tx : TILE; /* row length */
            for (int y = 0; y < nx; y++)
                for (int x = 0; x < ny; x++) {
                    int32_t v = img[(size_t)(ty + y) * SIDE + tx + x];
                    if (wide) a64[y * ny + x] = v;
                    else a32[y * ny + x] = v;
                }
            long len = cap;
            int st = 0;
            double t0 = cpu_now();
            if (wide && ours) st = tf_hcompress64(a64, ny, nx, scale, out, &len);
            else if (wide) fits_hcompress64(a64, ny, nx, scale, out, &len, &st);
            else if (ours) st = tf_hcompress(a32, ny, nx, scale, out, &len);
            else fits_hcompress(a32, ny, nx, scale, out, &len, &st);
            secs += cpu_now() - t0;
            CHECK(st == 0);
            *total += len;
            if (keep) { /* the first run's streams, to compare */
                if (!keep[k]) {
                    keep[k] = malloc((size_t)len + 8);
                    memcpy(keep[k] + 8, out, (size_t)len);
                    memcpy(keep[k], &len, sizeof len);
                } else {
                    long kl;
                    memcpy(&kl, keep[k], sizeof kl);
                    CHECK(kl == len && memcmp(keep[k] + 8, out, (size_t)len) == 0);
                }
            }
        }
    free(out);
    free(a32);
    free(a64);
    return secs;
}

int main(int argc, char **argv) {
    int runs = argc > 1 ? atoi(argv[1]) : 5, scale = argc > 2 ? atoi(argv[2]) : 0;
    int32_t *img = malloc(sizeof *img * SIDE * SIDE);
    for (int wide = 1; wide >= 0; wide--) {
        /* int32: sigma 3000; int16: sigma 30 (both well inside their range) */
        for (size_t i = 0; i < (size_t)SIDE * SIDE; i++) img[i] = noise(wide ? 3000 : 30);
        unsigned char *keep[121] = {0};
        double best[2] = {1e30, 1e30};
        long bytes[2];
        for (int r = 0; r < runs; r++)
            for (int ours = 0; ours < 2; ours++) {
                double s = run(img, wide, ours, scale, &bytes[ours], keep);
                if (s < best[ours]) best[ours] = s;
            }
        printf("%s 4096x4096 noise, 100 tiles, scale %d: cfitsio %s %.3f s, ours %.3f s "
               "(%.2fx), %ld bytes\n",
               wide ? "int32" : "int16", scale, wide ? "fits_hcompress64" : "fits_hcompress", best[0],
               best[1], best[0] / best[1], bytes[1]);
        CHECK(bytes[0] == bytes[1]);
        for (int k = 0; k < 121; k++) free(keep[k]);
    }
    free(img);
    return check_report();
}
