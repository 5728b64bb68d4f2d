/*
 * hcompress_enc.c - cfitsio's fits_hcompress.c (the HCOMPRESS_1 encoder)
 * made reentrant, for the writer's tile threads.
 *
 * cfitsio keeps the encoder's output position, capacity and bit buffers
 * in file-scope statics (noutchar, noutmax, buffer2, bits_to_go2,
 * bitbuffer, bits_to_go3, bitcount) and holds its global lock around each
 * call, so tiles compressed from many threads would run one at a time.
 * Here that state lives in an hc_out passed down every call; there is no
 * global state left, and the stream is the same, byte for byte.
 *
 * The other changes: every output byte is bounds-checked (cfitsio stores
 * one byte past its buffer when a bit plane fills it, and does not check
 * bitmap planes at all), so a short buffer only ever gives TF_HCENC_FULL
 * (and a stream that fills the buffer exactly is accepted); arithmetic
 * that overflows in cfitsio's int and LONGLONG code is done in unsigned
 * types, with the same (wrapping) results and no undefined behaviour;
 * bit planes above 28 (32-bit) or 60 (64-bit), where cfitsio's codes go
 * out of range, get their 4-bit codes; log2 of a size is computed on
 * integers (cfitsio's float formula rounds up to the same value); the
 * quadtree's work areas are allocated once per call; bitcount, which
 * nothing reads, is gone.
 *
 * Some loops are rewritten for speed, with the same results: the sign
 * bits are gathered without branches, the quadrants' maxima row by row,
 * bufcopy looks up two blocks' Huffman codes at once and packs them into
 * a 64-bit word, 4 bytes at a time, and a bit plane that goes out as a
 * bitmap reuses its first quadtree level instead of recomputing it (1.75
 * times cfitsio's speed on noise, tests/c/bench_hcompress_enc.c). The
 * width-dependent functions are in hcompress_enc_body.h, built for int
 * and long long as cfitsio's two copies are.
 *
 * The algorithm (htrans.c, digitize.c, encode.c, qwrite.c, doencode.c,
 * bit_output.c, qtree_encode.c) is R. White's, from STScI:
 *
 * Copyright (c) 1993 Association of Universities for Research
 * in Astronomy. All rights reserved. Produced under National
 * Aeronautics and Space Administration Contract No. NAS5-26555.
 *
 * Programmer: R. White (htrans.c: 11 May 1992; digitize.c, qwrite.c:
 * 11 March 1991; encode.c: 2 February 1994; doencode.c: 7 May 1991;
 * qtree_encode.c: 15 May 1991).
 */
#include "hcompress_enc.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The output stream and the bit buffers (cfitsio's statics). */
typedef struct hc_out {
    unsigned char *out;
    long n, max;          /* noutchar, noutmax: bytes written, capacity */
    int overflow;         /* a byte did not fit */
    unsigned buffer2;     /* bits buffered for output */
    int bits_to_go2;      /* bits free in buffer2 */
    unsigned bitbuffer;   /* the quadtree's Huffman codes being packed */
    int bits_to_go3;      /* bits in bitbuffer */
} hc_out;

/* The quadtree's work areas, for the largest quadrant (bmax: half its
 * 2x2 blocks, rounded up): scratch holds the first level (2 * bmax), the
 * later levels go to reduced (2 * bmax) so that the first stays for a
 * bitmap (cfitsio reduces in place and recomputes it), and buffer
 * (bmax) gathers the Huffman codes. */
typedef struct hc_work {
    unsigned char *scratch, *reduced, *buffer;
} hc_work;

static const unsigned char code_magic[2] = {0xDD, 0x99};

/* Huffman code values and number of bits in each code, cfitsio's
 *   code[16] = {0x3e, 0x00, 0x01, 0x08, 0x02, 0x09, 0x1a, 0x1b,
 *               0x03, 0x1c, 0x0a, 0x1d, 0x0b, 0x1e, 0x3f, 0x0c};
 *   ncode[16] = {6, 3, 3, 4, 3, 4, 5, 5, 3, 5, 4, 5, 4, 5, 6, 4};
 * packed into constants (codes 0 to 7 are the bytes of the first from the
 * lowest, 8 to 15 those of the second; lengths are nybbles), so that
 * bufcopy's table of code pairs is built from them at compile time. */
#define HUFF_CODE(c) \
    ((int)(((c) < 8 ? 0x1b1a09020801003eull : 0x0c3f1e0b1d0a1c03ull) >> 8 * ((c) & 7) & 0xff))
#define HUFF_LEN(c) ((int)(0x4654545355434336ull >> 4 * (c) & 15))
#define HUFF16(M) M(0), M(1), M(2), M(3), M(4), M(5), M(6), M(7), \
                  M(8), M(9), M(10), M(11), M(12), M(13), M(14), M(15)
static const unsigned char code[16] = {HUFF16(HUFF_CODE)};
static const unsigned char ncode[16] = {HUFF16(HUFF_LEN)};

/* log2 of n rounded up (0 for n <= 1). */
static int ceil_log2(int n) {
    int k = 0;
    while (k < 31 && (1 << k) < n) k++;
    return k;
}

/* ---- qwrite.c: bytes ---- */

static inline void putbyte(hc_out *o, unsigned c) {
    if (o->n < o->max) o->out[o->n++] = (unsigned char)c;
    else o->overflow = 1;
}

/* n bytes, all or (when they do not fit) none. */
static void qwrite(hc_out *o, const unsigned char *buf, size_t n) {
    if (n > (size_t)(o->max - o->n)) {
        o->overflow = 1;
        return;
    }
    memcpy(o->out + o->n, buf, n);
    o->n += (long)n;
}

/* Big-endian, whatever the host. */
static void writeint(hc_out *o, int a) {
    unsigned char b[4];
    for (int i = 3; i >= 0; i--) {
        b[i] = (unsigned char)(a & 0xff);
        a >>= 8;
    }
    qwrite(o, b, 4);
}

static void writelonglong(hc_out *o, long long a) {
    unsigned char b[8];
    for (int i = 7; i >= 0; i--) {
        b[i] = (unsigned char)(a & 0xff);
        a >>= 8;
    }
    qwrite(o, b, 8);
}

/* ---- bit_output.c: bits, most significant first ---- */

static void start_outputing_bits(hc_out *o) {
    o->buffer2 = 0; /* buffer is empty to start with */
    o->bits_to_go2 = 8;
}

/* The low n bits of `bits`, n <= 8. */
static inline void output_nbits(hc_out *o, int bits, int n) {
    o->buffer2 = o->buffer2 << n | ((unsigned)bits & ((1u << n) - 1));
    o->bits_to_go2 -= n;
    if (o->bits_to_go2 <= 0) { /* buffer2 full: its top 8 bits out */
        putbyte(o, (o->buffer2 >> -o->bits_to_go2) & 0xff);
        o->bits_to_go2 += 8;
    }
}

static inline void output_nybble(hc_out *o, int bits) {
    output_nbits(o, bits & 15, 4);
}

#define output_huffman(o, c) output_nbits((o), code[c], ncode[c])

/* The low 4 bits of each of array[0 .. n - 1]. */
static void output_nnybble(hc_out *o, int n, const unsigned char array[]) {
    int kk = 0;
    if (n == 1) {
        output_nybble(o, array[0]);
        return;
    }
    if (o->bits_to_go2 <= 4) {
        /* just room for 1 nybble: write it out separately */
        output_nybble(o, array[0]);
        kk++;
        if (n == 2) { /* only 1 more to write */
            output_nybble(o, array[1]);
            return;
        }
    }
    /* bits_to_go2 is now 5 to 8; pairs of nybbles leave it as it is */
    const int shift = 8 - o->bits_to_go2;
    const int jj = (n - kk) / 2;
    if (jj > o->max - o->n) { /* does not fit: fill the buffer, no further */
        o->overflow = 1;
        return;
    }
    unsigned char *p = o->out + o->n;
    if (o->bits_to_go2 == 8) { /* byte-aligned */
        o->buffer2 = 0;
        for (int ii = 0; ii < jj; ii++, kk += 2)
            p[ii] = (unsigned char)((array[kk] & 15) << 4 | (array[kk + 1] & 15));
    } else {
        unsigned buf = o->buffer2;
        for (int ii = 0; ii < jj; ii++, kk += 2) {
            buf = buf << 8 | (unsigned)(array[kk] & 15) << 4 | (array[kk + 1] & 15);
            p[ii] = (unsigned char)(buf >> shift);
        }
        o->buffer2 = buf;
    }
    o->n += jj;
    if (kk != n) output_nybble(o, array[n - 1]); /* the last odd nybble */
}

/* The last bits, padded with zeros to a byte. */
static void done_outputing_bits(hc_out *o) {
    if (o->bits_to_go2 < 8) putbyte(o, (o->buffer2 << o->bits_to_go2) & 0xff);
}

/* ---- qtree_encode.c: the width-independent parts ---- */

/* The Huffman codes of two 2x2 blocks i & 15 (first) and i >> 4 for
 * bufcopy: the first's code in the low bits, the second's above, their
 * total length in the top 4 bits; a zero block adds nothing (cfitsio's
 * bufcopy skips it). */
#define NZ_CODE(c) ((c) == 0 ? 0 : HUFF_CODE(c))
#define NZ_LEN(c) ((c) == 0 ? 0 : HUFF_LEN(c))
#define PAIR(i) (uint16_t)(NZ_CODE((i) & 15) | NZ_CODE((i) >> 4) << NZ_LEN((i) & 15) | \
                           (NZ_LEN((i) & 15) + NZ_LEN((i) >> 4)) << 12)
#define PAIRS4(i) PAIR(i), PAIR(i + 1), PAIR(i + 2), PAIR(i + 3)
#define PAIRS16(i) PAIRS4(i), PAIRS4(i + 4), PAIRS4(i + 8), PAIRS4(i + 12)
#define PAIRS64(i) PAIRS16(i), PAIRS16(i + 16), PAIRS16(i + 32), PAIRS16(i + 48)
static const uint16_t pair_code[256] = {PAIRS64(0), PAIRS64(64), PAIRS64(128), PAIRS64(192)};
#undef PAIRS64
#undef PAIRS16
#undef PAIRS4
#undef PAIR

/* Append the Huffman codes of the non-zero a[0 .. n - 1] to the buffer;
 * 1 when it fills (the quadtree would be longer than a bitmap). */
static int bufcopy(hc_out *o, const unsigned char a[], int n, unsigned char buffer[], int *b,
                   int bmax) {
    /* codes gather in a 64-bit word, two blocks at a time, and 4 bytes
     * go out at a time while the buffer has room for them; the bytes and
     * the point where it fills are those of cfitsio's byte-at-a-time loop */
    uint64_t bits = o->bitbuffer;
    int nbits = o->bits_to_go3, nb = *b, i = 0;
    for (; i + 1 < n; i += 2) {
        unsigned e = pair_code[a[i] | a[i + 1] << 4];
        bits |= (uint64_t)(e & 0xFFF) << nbits;
        nbits += (int)(e >> 12);
        if (nbits >= 32) {
            if (bmax - nb <= 4) { /* it may fill: the rest byte by byte */
                i += 2;
                break;
            }
            for (int k = 0; k < 4; k++) buffer[nb++] = (unsigned char)(bits >> 8 * k);
            bits >>= 32;
            nbits -= 32;
        }
    }
    for (;;) { /* whole bytes out, then the remaining codes one by one */
        while (nbits >= 8) {
            buffer[nb++] = (unsigned char)bits;
            if (nb >= bmax) {
                *b = nb;
                return 1;
            }
            bits >>= 8;
            nbits -= 8;
        }
        if (i >= n) break;
        bits |= (uint64_t)NZ_CODE(a[i]) << nbits;
        nbits += NZ_LEN(a[i]);
        i++;
    }
    o->bitbuffer = (unsigned)bits;
    o->bits_to_go3 = nbits;
    *b = nb;
    return 0;
}
#undef NZ_CODE
#undef NZ_LEN

/* buffer[n - 1], ..., buffer[0], 8 bits each: output_nbits(o, buffer[i],
 * 8) in a loop, which leaves bits_to_go2 as it is. */
static void output_rbytes(hc_out *o, const unsigned char buffer[], int n) {
    if (n > o->max - o->n) {
        o->overflow = 1;
        return;
    }
    const int shift = 8 - o->bits_to_go2;
    unsigned buf = o->buffer2;
    unsigned char *p = o->out + o->n;
    for (int i = n - 1; i >= 0; i--) {
        buf = buf << 8 | buffer[i];
        *p++ = (unsigned char)(buf >> shift);
    }
    o->buffer2 = buf;
    o->n += n;
}

/* One quadtree level: each 2x2 block of the nx x ny array a (rows n apart)
 * becomes a 4-bit code of which of its elements are non-zero, into b
 * (which may be a). */
static void qtree_reduce(const unsigned char a[], int n, int nx, int ny, unsigned char b[]) {
    int i, j, k = 0; /* k is index of b[i/2, j/2] */
    for (i = 0; i < nx - 1; i += 2) {
        int s00 = n * i, s10 = s00 + n; /* a[i, j], a[i + 1, j] */
        for (j = 0; j < ny - 1; j += 2) {
            b[k++] = (unsigned char)((a[s10 + 1] != 0) | (a[s10] != 0) << 1 |
                                     (a[s00 + 1] != 0) << 2 | (a[s00] != 0) << 3);
            s00 += 2;
            s10 += 2;
        }
        if (j < ny) /* odd row length: the last element */
            b[k++] = (unsigned char)((a[s10] != 0) << 1 | (a[s00] != 0) << 3);
    }
    if (i < nx) { /* odd column length: the last row */
        int s00 = n * i;
        for (j = 0; j < ny - 1; j += 2) {
            b[k++] = (unsigned char)((a[s00 + 1] != 0) << 2 | (a[s00] != 0) << 3);
            s00 += 2;
        }
        if (j < ny) /* both odd: the corner element */
            b[k++] = (unsigned char)((a[s00] != 0) << 3);
    }
}

/* The bit plane as a bitmap: a 0 code, then the nybbles of the nqx x nqy
 * quadrant's 2x2 blocks, which qtree_onebit left in scratch. */
static void write_bdirect(hc_out *o, int nqx, int nqy, const unsigned char scratch[]) {
    output_nybble(o, 0x0);
    output_nnybble(o, ((nqx + 1) / 2) * ((nqy + 1) / 2), scratch);
}

/* 1 in the test's second build (tests/c/test_hcompress_enc.c), which
 * sends every bit plane through qtree_onebit_high. */
#ifndef TF_HCENC_TEST_HIGH
#define TF_HCENC_TEST_HIGH 0
#endif

/* The entry points' argument check (fits_hcompress, fits_hcompress64; the
 * body defines them). */
static int check_args(const void *a, int ny, int nx, const char *out, const long *nbytes) {
    if (!a || !nbytes || (!out && *nbytes > 0)) return TF_HCENC_ARG;
    if (nx < 1 || ny < 1 || (long long)nx * ny > INT_MAX - 8) return TF_HCENC_ARG;
    return TF_HCENC_OK;
}

#define T int
#define UT unsigned
#define NAME(x) x
#include "hcompress_enc_body.h"
#undef T
#undef UT
#undef NAME

#define T long long
#define UT unsigned long long
#define NAME(x) x##64
#include "hcompress_enc_body.h"
#undef T
#undef UT
#undef NAME

/* Per bit plane of a quadrant with nb 2x2 blocks, at most 4 + 4 * nb bits
 * (a bitmap) or 4 + 7 + 8 * (bmax - 1) <= 4 + 4 * nb + 3 (a quadtree,
 * which stops short of bmax bytes), or 4 + 6 (an empty quadrant's). */
long tf_hcompress_bound(int ny, int nx, int wide) {
    if (nx < 1 || ny < 1 || (long long)nx * ny > INT_MAX - 8) return 0;
    long long planes = wide ? 63 : 31; /* of a positive int / long long */
    long long nx2 = (nx + 1) / 2, ny2 = (ny + 1) / 2, bits = 4 + 7; /* end, padding */
    long long rows[4] = {nx2, nx2, nx / 2, nx / 2}, cols[4] = {ny2, ny / 2, ny2, ny / 2};
    for (int q = 0; q < 4; q++)
        bits += planes * (10 + 4 * ((rows[q] + 1) / 2) * ((cols[q] + 1) / 2));
    long long bytes = 25 + (bits + 7) / 8 + ((long long)nx * ny + 7) / 8;
    return bytes > LONG_MAX ? 0 : (long)bytes;
}

const char *tf_hcenc_strerror(int status) {
    switch (status) {
    case TF_HCENC_OK: return "no error";
    case TF_HCENC_FULL: return "its HCOMPRESS_1 stream does not fit in the output buffer";
    case TF_HCENC_ARG: return "invalid HCOMPRESS_1 tile size or buffer";
    case TF_HCENC_NOMEM: return "out of memory compressing an HCOMPRESS_1 tile";
    default: return "unknown HCOMPRESS_1 encoder status";
    }
}
