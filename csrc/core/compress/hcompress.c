/*
 * hcompress.c - bounded HCOMPRESS_1 decoder.
 *
 * The stream (R. White's H-compress, STScI; cfitsio's fits_hcompress.c
 * writes it), big-endian:
 *   2 bytes  magic DD 99
 *   4 bytes  nx, the tile's rows        4 bytes  ny, its row length
 *   4 bytes  scale                      8 bytes  sum of all pixels
 *   3 bytes  bit planes of the quadrants [0], [1] (both middle ones), [2]
 * then, MSB first, the bit planes of the H-transform's four quadrants
 * (rows 0..ceil(nx/2) and the rest, times columns 0..ceil(ny/2) and the
 * rest), each plane from the top: a 4-bit code, 0 for a plane written as
 * 4-bit codes of its 2x2 blocks, 15 for one written as a quadtree (one
 * code for the whole quadrant, then log2 levels, each replacing every
 * set bit of the level above, last first, by the Huffman code of its 2x2
 * block); a 4-bit 0 ends the planes. From the next byte boundary one sign
 * bit per non-zero coefficient, in pixel order. Pixel 0 then takes the sum.
 *
 * Decoding then multiplies by the scale (when above 1) and inverts the
 * H-transform level by level (hinv), optionally nudging coefficients
 * toward interpolated values (hsmooth). hcompress_body.h holds the parts
 * that depend on the integer width: cfitsio decodes ZBITPIX 8 and 16 in
 * 32-bit ints and everything else in 64-bit ones, and the two disagree
 * wherever a sum overflows 32 bits, so both are kept. Arithmetic wraps
 * (unsigned) and shifts right are arithmetic, which is what cfitsio's
 * compiled code does, without its undefined behaviour on garbage.
 *
 * Bits come from a 64-bit buffer refilled eight bytes at a time; past the
 * input's end it reads zeros and counts them, and each plane, the end
 * mark and the sign bits check that no bit read lay past the end. All
 * loops are bounded by the tile's size and the plane count (at most 32 or
 * 64), so a hostile stream costs at most ~64 passes over the tile.
 */
#include "hcompress.h"

#include <string.h>

typedef struct bitin {
    const unsigned char *in;
    size_t len, pos; /* pos: next byte to load, may run past len (zeros) */
    uint64_t buf;    /* valid bits at the top; bits below are 0 or the next ones */
    int nb;          /* valid bits in buf */
} bitin;

static inline void refill(bitin *b) {
    if (b->pos <= b->len && b->len - b->pos >= 8) {
        uint64_t v;
        memcpy(&v, b->in + b->pos, 8);
        v = __builtin_bswap64(v);
        b->buf |= v >> b->nb;
        b->pos += (size_t)((63 - b->nb) >> 3);
        b->nb |= 56;
    } else {
        while (b->nb <= 56) {
            uint64_t byte = b->pos < b->len ? b->in[b->pos] : 0;
            b->pos++;
            b->buf |= byte << (56 - b->nb);
            b->nb += 8;
        }
    }
}

/* The next n bits, 1 <= n <= 8. */
static inline unsigned take(bitin *b, int n) {
    if (b->nb < n) refill(b);
    unsigned v = (unsigned)(b->buf >> (64 - n));
    b->buf <<= n;
    b->nb -= n;
    return v;
}

/* Whether a bit read so far lay past the input's end. */
static inline int overrun(const bitin *b) {
    return b->pos > b->len && (b->pos - b->len) * 8 > (size_t)b->nb;
}

/* The fixed Huffman code of a 2x2 block's 4 bits, by the next 6 stream
 * bits: length << 4 | value. Values 1, 2, 4, 8 take 3 bits; 3, 5, 10, 12,
 * 15 take 4; 6, 7, 9, 11, 13 take 5; 0 and 14 take 6. */
static const uint8_t huff[64] = {
    0x31, 0x31, 0x31, 0x31, 0x31, 0x31, 0x31, 0x31, 0x32, 0x32, 0x32, 0x32, 0x32,
    0x32, 0x32, 0x32, 0x34, 0x34, 0x34, 0x34, 0x34, 0x34, 0x34, 0x34, 0x38, 0x38,
    0x38, 0x38, 0x38, 0x38, 0x38, 0x38, 0x43, 0x43, 0x43, 0x43, 0x45, 0x45, 0x45,
    0x45, 0x4a, 0x4a, 0x4a, 0x4a, 0x4c, 0x4c, 0x4c, 0x4c, 0x4f, 0x4f, 0x4f, 0x4f,
    0x56, 0x56, 0x57, 0x57, 0x59, 0x59, 0x5b, 0x5b, 0x5d, 0x5d, 0x60, 0x6e};

static inline uint8_t huffman(bitin *b) {
    if (b->nb < 6) refill(b);
    uint8_t e = huff[b->buf >> 58];
    int n = e >> 4;
    b->buf <<= n;
    b->nb -= n;
    return e & 15;
}

/* Smallest k with 2^k >= n, n >= 1 (cfitsio's float log2, rounded then
 * bumped, comes to the same). */
static int ceil_log2(int64_t n) {
    int k = 0;
    while (((int64_t)1 << k) < n) k++;
    return k;
}

/* One quadtree level: the ceil(nx/2) x ceil(ny/2) codes at the start of q
 * become nx x ny bits, each code spread over its 2x2 block (8: top left,
 * 4: top right, 2: bottom left, 1: bottom right, clipped at odd edges),
 * in place from the end; then every set bit, last first, is replaced by
 * the next Huffman code. */
static void expand(bitin *b, uint8_t *q, int nx, int ny) {
    const int hx = (nx + 1) / 2, hy = (ny + 1) / 2;
    for (int i = hx - 1; i >= 0; i--) {
        const int two_rows = 2 * i + 1 < nx;
        for (int j = hy - 1; j >= 0; j--) {
            unsigned v = q[(size_t)i * (size_t)hy + (size_t)j];
            uint8_t *r0 = q + (size_t)2 * (size_t)i * (size_t)ny + (size_t)(2 * j);
            const int two_cols = 2 * j + 1 < ny;
            if (two_rows) {
                if (two_cols) r0[ny + 1] = v & 1;
                r0[ny] = (v >> 1) & 1;
            }
            if (two_cols) r0[1] = (v >> 2) & 1;
            r0[0] = (v >> 3) & 1;
        }
    }
    for (size_t k = (size_t)nx * (size_t)ny; k-- > 0;)
        if (q[k]) q[k] = huffman(b);
}

/* One bit plane of an nqx x nqy quadrant: its 2x2 block codes, a dense
 * ceil(nqx/2) x ceil(nqy/2) grid, into q (cap bytes). An empty quadrant
 * (nqx or nqy 0) reads what cfitsio reads for it and yields no codes. */
static int plane_codes(bitin *b, uint8_t *q, size_t cap, int nqx, int nqy, int log2n) {
    unsigned kind = take(b, 4);
    if (kind == 0) { /* written directly, 4 bits a block */
        size_t n = (size_t)((nqx + 1) / 2) * (size_t)((nqy + 1) / 2);
        if (n > cap) return TF_HCOMP_BAD; /* cannot happen: cap covers the tile */
        for (size_t i = 0; i < n; i++) q[i] = (uint8_t)take(b, 4);
        return TF_HCOMP_OK;
    }
    if (kind != 15) return TF_HCOMP_BAD;
    q[0] = huffman(b);
    int nx = 1, ny = 1, fx = nqx, fy = nqy;
    int64_t c = (int64_t)1 << log2n;
    for (int k = 1; k < log2n; k++) {
        /* sizes go up as n(k) = ceil(n(k+1) / 2) toward nqx, nqy */
        c >>= 1;
        nx = 2 * nx - (fx <= c);
        ny = 2 * ny - (fy <= c);
        if (fx > c) fx -= (int)c;
        if (fy > c) fy -= (int)c;
        if ((size_t)nx * (size_t)ny > cap) return TF_HCOMP_BAD;
        expand(b, q, nx, ny);
        if (overrun(b)) return TF_HCOMP_SHORT;
    }
    return TF_HCOMP_OK;
}

typedef struct header {
    int nx, ny, scale;
    int64_t sum;
    int planes[3];
} header;

static int64_t be(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = v << 8 | p[i];
    return n == 4 ? (int64_t)(int32_t)(uint32_t)v : (int64_t)v;
}

#define HEADER_BYTES 25

static int read_header(const unsigned char *in, size_t len, int wide, int64_t npix, header *h) {
    if (len < 2) return TF_HCOMP_SHORT;
    if (in[0] != 0xDD || in[1] != 0x99) return TF_HCOMP_BAD;
    if (len < HEADER_BYTES) return TF_HCOMP_SHORT;
    h->nx = (int)be(in + 2, 4);
    h->ny = (int)be(in + 6, 4);
    h->scale = (int)be(in + 10, 4);
    h->sum = be(in + 14, 8);
    if (h->nx < 1 || h->ny < 1 || (int64_t)h->nx * h->ny != npix) return TF_HCOMP_SIZE;
    for (int i = 0; i < 3; i++) {
        h->planes[i] = in[22 + i];
        if (h->planes[i] > (wide ? 64 : 32)) return TF_HCOMP_BAD;
    }
    return TF_HCOMP_OK;
}

/* The H-transform's quadrants: first pixel, rows, row length, plane count. */
typedef struct quadrant {
    int64_t off;
    int nqx, nqy, planes;
} quadrant;

static void quadrants(const header *h, quadrant *q) {
    const int nx2 = (h->nx + 1) / 2, ny2 = (h->ny + 1) / 2;
    const int64_t ny = h->ny;
    q[0] = (quadrant){0, nx2, ny2, h->planes[0]};
    q[1] = (quadrant){ny2, nx2, h->ny / 2, h->planes[1]};
    q[2] = (quadrant){ny * nx2, h->nx / 2, ny2, h->planes[1]};
    q[3] = (quadrant){ny * nx2 + ny2, h->nx / 2, h->ny / 2, h->planes[2]};
}

#define T int32_t
#define UT uint32_t
#define NBITS 32
#define NAME(x) x##32
#include "hcompress_body.h"
#undef T
#undef UT
#undef NBITS
#undef NAME

#define T int64_t
#define UT uint64_t
#define NBITS 64
#define NAME(x) x##64
#include "hcompress_body.h"
#undef T
#undef UT
#undef NBITS
#undef NAME

/* Layout of `work`: the 64-bit coefficients (wide), the unshuffle buffer
 * (half a tile of coefficients), the quadtree codes (at most a quarter of
 * the tile, plus one). */
static size_t align8(size_t n) { return (n + 7) & ~(size_t)7; }

size_t tf_hcomp_work_size(int64_t npix, int wide) {
    if (npix < 1 || npix > INT32_MAX) return 0;
    size_t n = (size_t)npix, el = wide ? 8 : 4;
    return (wide ? 8 * n : 0) + align8(el * (n / 2 + 2)) + align8(n / 2 + 16);
}

int tf_hcomp_decode(const unsigned char *in, size_t len, int smooth, int wide, int64_t npix,
                    int32_t *out, void *work, size_t work_len) {
    size_t need = tf_hcomp_work_size(npix, wide);
    if (need == 0 || work_len < need) return TF_HCOMP_ARG;
    header h;
    int st = read_header(in, len, wide, npix, &h);
    if (st) return st;
    bitin b = {in, len, HEADER_BYTES, 0, 0};
    size_t n = (size_t)npix, el = wide ? 8 : 4;
    char *w = work;
    if (!wide) {
        int32_t *tmp = (int32_t *)w;
        uint8_t *q = (uint8_t *)(w + align8(el * (n / 2 + 2)));
        return decode32(&b, &h, smooth, out, tmp, q, n / 2 + 16);
    }
    int64_t *a = (int64_t *)w, *tmp = (int64_t *)(w + 8 * n);
    uint8_t *q = (uint8_t *)(w + 8 * n + align8(el * (n / 2 + 2)));
    st = decode64(&b, &h, smooth, a, tmp, q, n / 2 + 16);
    if (st) return st;
    for (size_t i = 0; i < n; i++) out[i] = (int32_t)a[i]; /* cfitsio's (int) cast */
    return TF_HCOMP_OK;
}

const char *tf_hcomp_strerror(int status) {
    switch (status) {
    case TF_HCOMP_OK: return "no error";
    case TF_HCOMP_SHORT: return "its HCOMPRESS_1 stream ends before its last code";
    case TF_HCOMP_BAD: return "its HCOMPRESS_1 stream is malformed";
    case TF_HCOMP_SIZE: return "its HCOMPRESS_1 stream is not the tile's size";
    default: return "invalid HCOMPRESS_1 parameters";
    }
}
