/*
 * hcompress.h - private to the core: a bounded decoder for the
 * HCOMPRESS_1 tile codec of the FITS tiled image convention (the stream
 * cfitsio's fits_hcompress and fits_hcompress64 write).
 */
#ifndef TORCHFITS_HCOMPRESS_H
#define TORCHFITS_HCOMPRESS_H

#include <stddef.h>
#include <stdint.h>

enum {
    TF_HCOMP_OK = 0,
    TF_HCOMP_SHORT = -1, /* the stream ends before its last code */
    TF_HCOMP_BAD = -2,   /* bad magic, bit-plane count, plane code or end mark */
    TF_HCOMP_SIZE = -3,  /* its nx * ny is not the tile's pixel count */
    TF_HCOMP_ARG = -4    /* npix out of range, or `work` too small */
};

/* Bytes of `work` tf_hcomp_decode needs for a tile of npix pixels
 * (1 <= npix <= INT32_MAX) on the 32-bit (wide 0) or 64-bit path; 0 for
 * an npix out of range. At most 13 * npix + 64 (wide), 3 * npix + 64. */
size_t tf_hcomp_work_size(int64_t npix, int wide);

/*
 * Decode an HCOMPRESS_1 stream of `len` bytes into the npix pixels of
 * `out`: exactly what cfitsio 4.2's fits_hdecompress (wide 0: 32-bit
 * arithmetic, used for ZBITPIX 8 and 16) or fits_hdecompress64 (wide 1:
 * 64-bit arithmetic then truncated to 32 bits, used for ZBITPIX 32, -32
 * and -64) give, including the smoothing when `smooth` is not 0 (the
 * tile's SMOOTH parameter). The layout is the stream's: nx rows of ny
 * pixels, ny fastest; a stream whose nx * ny is not npix is refused.
 * `work` holds tf_hcomp_work_size(npix, wide) bytes, 8-byte aligned.
 *
 * Reentrant, no allocation. Never reads past in[len - 1] nor writes
 * past out[npix - 1] or the work area, whatever the stream holds; a short
 * or malformed stream gives TF_HCOMP_SHORT / _BAD / _SIZE (out then holds
 * garbage). Bytes after the last code are allowed, as cfitsio allows them.
 */
int tf_hcomp_decode(const unsigned char *in, size_t len, int smooth, int wide, int64_t npix,
                    int32_t *out, void *work, size_t work_len);

/* Words for a TF_HCOMP_ status. */
const char *tf_hcomp_strerror(int status);

#endif /* TORCHFITS_HCOMPRESS_H */
