/*
 * convert.h - turning big-endian stored FITS values into native output.
 */
#ifndef TORCHFITS_CONVERT_H
#define TORCHFITS_CONVERT_H

#include <stddef.h>
#include <stdint.h>

#include "../torchfits_core.h"

typedef enum tf_conv_kind {
    TF_CONV_SWAP,     /* output type is the stored type: byte swap only */
    TF_CONV_FLIPSIGN, /* same size, top bit flipped: u8->i8, i16->u16, i32->u32, i64->u64 */
    TF_CONV_OFFSET,   /* widen and add 2^(bits-1): i16->i32, i32->i64 */
    TF_CONV_SCALE     /* to float: stored * scale + zero in double, BLANK -> NaN */
} tf_conv_kind;

typedef struct tf_conv {
    tf_conv_kind kind;
    tf_dtype in, out;      /* in: the stored type */
    size_t in_size, out_size;
    double scale, zero;
    int has_blank;
    int64_t blank;
    int u64;               /* SCALE of int64 with scale 1, zero 2^63: the
                              uint64 value rounded once, as cfitsio does */
} tf_conv;

/* Whether a conversion works in place (src == dst). */
static inline int tf_conv_inplace(const tf_conv *c) {
    return c->kind == TF_CONV_SWAP || c->kind == TF_CONV_FLIPSIGN;
}

/* Set up the conversion from stored `in` to `out`; 0 if unsupported. */
int tf_conv_init(tf_conv *c, tf_dtype in, tf_dtype out, double scale, double zero,
                 int has_blank, int64_t blank);

/* Convert n stored (big-endian) values. In place (src == dst) only when
 * tf_conv_inplace(c); otherwise src and dst must not overlap. */
void tf_convert(const tf_conv *c, const void *src, void *dst, size_t n);

/* Byte swap n stored values spaced `stride` bytes apart (one per row of a
 * table) into contiguous dst in one pass. Only for TF_CONV_SWAP; returns 0
 * (doing nothing) for other conversions, which the caller gathers first. */
int tf_convert_strided(const tf_conv *c, const void *src, size_t stride, void *dst, size_t n);

/* The write direction: n native values of `size` bytes (1, 2, 4, 8) into
 * their stored big-endian form in dst, the top bit flipped first when
 * `flip` (int8, uint16, uint32, uint64: FITS stores them offset by
 * BZERO). src and dst must not overlap. */
void tf_store_be(const void *src, void *dst, size_t n, size_t size, int flip);

/* The 32-bit 1's complement sum of FITS checksums (cfitsio's ffcsum, Rob
 * Seaman's algorithm) of n stored bytes taken as big-endian 32-bit words,
 * added to `sum`; a partial last word is padded with zeros. Sums of parts
 * that start at multiples of 4 bytes combine with tf_ones_add. */
uint32_t tf_ones_sum(uint32_t sum, const void *p, size_t n);
uint32_t tf_ones_add(uint32_t a, uint32_t b);

#endif /* TORCHFITS_CONVERT_H */
