/*
 * rice.c - bounded RICE_1 decoder.
 *
 * The stream (Rice, Yeh and Miller; cfitsio's ricecomp.c writes it): the
 * first pixel raw, big-endian, in bytepix bytes; then, MSB first, blocks
 * of nblock pixels (the last one shorter). Each block opens with an
 * fsbits-wide code k (3, 4, 5 bits for 1, 2, 4 byte pixels), fs = k - 1:
 *   fs < 0       every difference in the block is zero;
 *   fs == fsmax  each difference is stored in 8 * bytepix raw bits;
 *   otherwise    each difference is a unary count of zero bits ended by
 *                a one bit (the high part), then fs low bits.
 * A difference d is the zigzag map of the signed step (even: d >> 1, odd:
 * ~(d >> 1)) and is added to the previous pixel, modulo 2^(8*bytepix).
 * Codes above fsmax + 1 (possible only with 5-bit codes) are never
 * written by an encoder and are rejected.
 *
 * Bits are taken from a 64-bit buffer refilled eight bytes at a time where
 * eight remain; every read of n bits first checks that n valid bits are
 * there, so a short or damaged stream ends the decode with an error and
 * nothing past the input is touched.
 */
#include "rice.h"

#include <string.h>

typedef struct bits {
    const unsigned char *p, *end;
    uint64_t buf; /* valid bits at the top; bits below them may be set */
    int nb;       /* valid bits in buf, 0..63 */
} bits;

static inline void refill(bits *b) {
    if (b->end - b->p >= 8) {
        uint64_t v;
        memcpy(&v, b->p, 8);
        v = __builtin_bswap64(v);
        b->buf |= v >> b->nb;
        b->p += (63 - b->nb) >> 3;
        b->nb |= 56;
    } else {
        while (b->nb < 56 && b->p < b->end) {
            b->buf |= (uint64_t)*b->p++ << (56 - b->nb);
            b->nb += 8;
        }
    }
}

/* The top n bits, 1 <= n <= nb. */
static inline uint32_t peek(const bits *b, int n) { return (uint32_t)(b->buf >> (64 - n)); }

static inline void skip(bits *b, int n) {
    b->buf = n < 64 ? b->buf << n : 0;
    b->nb -= n;
}

/* Leading zero bits then a one: the count, or -1 when the stream ends. */
static inline int64_t unary(bits *b) {
    int64_t zeros = 0;
    for (;;) {
        if (b->nb < 32) refill(b);
        int nz = b->buf ? __builtin_clzll(b->buf) : 64;
        if (nz < b->nb) {
            skip(b, nz + 1);
            return zeros + nz;
        }
        if (b->nb == 0) return -1;
        zeros += b->nb;
        skip(b, b->nb);
        b->buf = 0; /* bits below the valid ones come back with the refill */
    }
}

#define DECODE_BODY(T, FSBITS, FSMAX, BBITS)                                     \
    do {                                                                         \
        T *o = out;                                                              \
        uint32_t last = 0;                                                       \
        int64_t i = 0;                                                           \
        bits b = {in + bytepix, in + len, 0, 0};                                 \
        if (from) {                                                              \
            i = from->pix;                                                       \
            last = from->last;                                                   \
            b.p = in + from->bit / 8;                                            \
            refill(&b);                                                          \
            if (b.nb < (int)(from->bit % 8)) return TF_RICE_SHORT;              \
            skip(&b, (int)(from->bit % 8));                                      \
        } else {                                                                 \
            for (int j = 0; j < bytepix; j++) last = last << 8 | in[j];          \
        }                                                                        \
        for (; i < nout;) {                                                      \
            if (marks && i % stride == 0 && i / stride < nmarks) {               \
                /* a block starts here: where the stream is, for later */        \
                tf_rice_mark *m = &marks[i / stride];                            \
                m->pix = i;                                                      \
                m->bit = (int64_t)(b.p - in) * 8 - b.nb;                         \
                m->last = last;                                                  \
            }                                                                    \
            if (b.nb < FSBITS) refill(&b);                                       \
            if (b.nb < FSBITS) return TF_RICE_SHORT;                             \
            int fs = (int)peek(&b, FSBITS) - 1;                                  \
            skip(&b, FSBITS);                                                    \
            int64_t imax = nout - i < nblock ? nout : i + nblock;                \
            if (fs < 0) {                                                        \
                for (; i < imax; i++) o[i] = (T)last;                            \
            } else if (fs == FSMAX) {                                            \
                for (; i < imax; i++) {                                          \
                    if (b.nb < BBITS) refill(&b);                                \
                    if (b.nb < BBITS) return TF_RICE_SHORT;                      \
                    uint32_t d = peek(&b, BBITS);                                \
                    skip(&b, BBITS);                                             \
                    d = (d & 1) ? ~(d >> 1) : d >> 1;                            \
                    o[i] = (T)(last += d);                                       \
                    last = o[i];                                                 \
                }                                                                \
            } else if (fs > FSMAX) {                                             \
                return TF_RICE_BAD;                                              \
            } else {                                                             \
                for (; i < imax; i++) {                                          \
                    /* a code is mostly a few bits: refill at half empty */      \
                    if (b.nb < 32) refill(&b);                                   \
                    /* fast: the whole code lies in the valid bits */            \
                    /* (no valid bit set: nz 63, longer than nb) */              \
                    int nz = __builtin_clzll(b.buf | 1);                         \
                    int used = nz + 1 + fs;                                      \
                    if (__builtin_expect(used <= b.nb, 1)) {                     \
                        uint64_t y = b.buf << nz << 1;                           \
                        uint32_t d = (uint32_t)nz << fs | (uint32_t)((y >> 1) >> (63 - fs)); \
                        b.buf <<= used;                                          \
                        b.nb -= used;                                            \
                        last = (T)(last + ((d >> 1) ^ (0u - (d & 1))));          \
                        o[i] = (T)last;                                          \
                        continue;                                                \
                    }                                                            \
                    int64_t hi = unary(&b);                                      \
                    if (hi < 0) return TF_RICE_SHORT;                            \
                    uint32_t d = (uint32_t)((uint64_t)hi << fs);                 \
                    if (fs) {                                                    \
                        if (b.nb < fs) refill(&b);                               \
                        if (b.nb < fs) return TF_RICE_SHORT;                     \
                        d |= peek(&b, fs);                                       \
                        skip(&b, fs);                                            \
                    }                                                            \
                    d = (d & 1) ? ~(d >> 1) : d >> 1;                            \
                    o[i] = (T)(last += d);                                       \
                    last = o[i];                                                 \
                }                                                                \
            }                                                                    \
        }                                                                        \
        return TF_RICE_OK;                                                       \
    } while (0)

static int decode1(const unsigned char *in, size_t len, int nblock, int64_t nout, void *out,
                   const tf_rice_mark *from, tf_rice_mark *marks, int64_t stride, int64_t nmarks) {
    const int bytepix = 1;
    DECODE_BODY(uint8_t, 3, 6, 8);
}

static int decode2(const unsigned char *in, size_t len, int nblock, int64_t nout, void *out,
                   const tf_rice_mark *from, tf_rice_mark *marks, int64_t stride, int64_t nmarks) {
    const int bytepix = 2;
    DECODE_BODY(uint16_t, 4, 14, 16);
}

static int decode4(const unsigned char *in, size_t len, int nblock, int64_t nout, void *out,
                   const tf_rice_mark *from, tf_rice_mark *marks, int64_t stride, int64_t nmarks) {
    const int bytepix = 4;
    DECODE_BODY(uint32_t, 5, 25, 32);
}

int tf_rice_decode_marked(const unsigned char *in, size_t len, int bytepix, int nblock,
                          int64_t nout, void *out, const tf_rice_mark *from,
                          tf_rice_mark *marks, int64_t stride, int64_t nmarks) {
    if (nblock < 1 || nout < 0) return TF_RICE_ARG;
    if (nout == 0) return TF_RICE_OK;
    if (bytepix != 1 && bytepix != 2 && bytepix != 4) return TF_RICE_ARG;
    if (len < (size_t)bytepix) return TF_RICE_SHORT;
    if (marks && (stride < 1 || stride % nblock != 0 || nmarks < 0)) return TF_RICE_ARG;
    if (from && (from->pix < 0 || from->pix % nblock != 0 || from->pix > nout ||
                 from->bit < 0 || from->bit >= 8 * (int64_t)len))
        return TF_RICE_ARG;
    switch (bytepix) {
    case 1: return decode1(in, len, nblock, nout, out, from, marks, stride, nmarks);
    case 2: return decode2(in, len, nblock, nout, out, from, marks, stride, nmarks);
    default: return decode4(in, len, nblock, nout, out, from, marks, stride, nmarks);
    }
}

int tf_rice_decode(const unsigned char *in, size_t len, int bytepix, int nblock, int64_t nout,
                   void *out) {
    return tf_rice_decode_marked(in, len, bytepix, nblock, nout, out, NULL, NULL, 1, 0);
}

const char *tf_rice_strerror(int status) {
    switch (status) {
    case TF_RICE_OK: return "no error";
    case TF_RICE_SHORT: return "its RICE_1 stream ends before the tile's last pixel";
    case TF_RICE_BAD: return "its RICE_1 stream holds an invalid block code";
    default: return "invalid RICE_1 parameters";
    }
}
