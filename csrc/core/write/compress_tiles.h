/*
 * compress_tiles.h - compressing an image's tiles on every core for the writer
 * (write.c): each tile prepared and coded as cfitsio's imcomp_compress_tile
 * does it, from worker threads, one output buffer per tile. No cfitsio file
 * is touched here.
 */
#ifndef TORCHFITS_WRITE_COMPRESS_TILES_H
#define TORCHFITS_WRITE_COMPRESS_TILES_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "../torchfits_core.h"

typedef struct tf_wtiles {
    /* in */
    const void *data;         /* C-contiguous native values */
    tf_wtype dtype;           /* any but TF_W_INT64 / TF_W_UINT64 */
    int ndim;
    int64_t shape[TF_MAX_DIMS];   /* C order */
    int64_t tile[TF_MAX_DIMS];    /* C order, each 1..shape */
    tf_codec codec;           /* RICE_1, GZIP_1, GZIP_2, HCOMPRESS_1 or PLIO_1 */
    int blocksize;            /* RICE_1's (cfitsio: 32) */
    /* floats: */
    int quantize;             /* 1: quantized to integers (ZSCALE/ZZERO per
                                 tile); 0: lossless (GZIP codecs) */
    float qlevel;             /* fits_quantize_float's quantize_level */
    int dither;               /* -1 NO_DITHER, 1 or 2 SUBTRACTIVE_DITHER_1/2 */
    int seed;                 /* ZDITHER0, 1..10000 */
    int nulls;                /* 1: the image holds NaN: they become cfitsio's
                                 null value (fits_write_imgnull with
                                 FLOATNULLVALUE / DOUBLENULLVALUE) */
    int hc_nullval;           /* fits_img_stats_int's null value (HCOMPRESS_1): 0, the
                                 zblank cfitsio's writer holds while it codes */
    float hcomp_scale;        /* HCOMPRESS_1 */
    int threads;              /* 0: automatic */
    /* out: tile k (cfitsio's row k + 1) in bytes[k], lens[k] bytes (PLIO_1:
     * native shorts); quantized floats: zscale[k], zzero[k], and raw[k] = 1
     * where the tile could not be quantized and bytes[k] is the gzip of its
     * values (cfitsio's GZIP_COMPRESSED_DATA column) */
    int64_t ntiles;
    unsigned char **bytes;
    size_t *lens;
    double *zscale, *zzero;
    unsigned char *raw;
    int64_t failed_tile;      /* -1, or the tile the codec refused */
    const char *failed_why;   /* and why (static text) */
    atomic_int cfitsio_overrun;   /* 1: an HCOMPRESS_1 or PLIO_1 tile took more
                                     bytes than cfitsio's writer allows for it
                                     (it would have written past its buffer) */
} tf_wtiles;

/* Compress every tile, as cfitsio's imcomp_compress_tile does for
 * fits_write_img (fits_write_imgnull where nulls) of the same values: the
 * same conversions (unsigned types offset, PLIO_1 and HCOMPRESS_1 on ints),
 * quantization by cfitsio's fits_quantize_float/double with its dither row,
 * RICE_1 as fits_rcomp* code a tile (the same bytes, by a faster writer of
 * the same bitstream), GZIP_1/2 by cfitsio's compress2mem_from_mem of the
 * big-endian (GZIP_2: shuffled) tile, PLIO_1 by pl_p2li, HCOMPRESS_1 by a
 * reentrant copy of fits_hcompress (hcompress_enc.c), each in cfitsio's
 * buffer size. TF_OK, TF_ENOMEM, or TF_EINVAL (a codec refused a tile:
 * failed_tile, failed_why). Free the outputs with tf_wtiles_free, also
 * after an error. */
int tf_wtiles_compress(tf_wtiles *t);
void tf_wtiles_free(tf_wtiles *t);

/* The NaN of n floats (dbl: doubles) at v made cfitsio's null value,
 * FLOATNULLVALUE / DOUBLENULLVALUE, as fits_write_imgnull takes them. */
void tf_wtiles_nan_to_null(void *v, size_t n, int dbl);

#endif /* TORCHFITS_WRITE_COMPRESS_TILES_H */
