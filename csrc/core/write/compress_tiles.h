/*
 * compress_tiles.h - compressing an image's tiles on every core for the writer
 * (write.c): cfitsio's own per-tile codecs, called from worker threads,
 * one output buffer per tile. No cfitsio file is touched here.
 */
#ifndef TORCHFITS_WRITE_COMPRESS_TILES_H
#define TORCHFITS_WRITE_COMPRESS_TILES_H

#include <stddef.h>
#include <stdint.h>

#include "../torchfits_core.h"

typedef struct tf_wtiles {
    /* in */
    const void *data;         /* C-contiguous native values */
    size_t elsize;            /* 1 (uint8), 2 (int16), 4 (int32) */
    int ndim;
    int64_t shape[TF_MAX_DIMS];   /* C order */
    int64_t tile[TF_MAX_DIMS];    /* C order, each 1..shape */
    tf_codec codec;           /* RICE_1, GZIP_1 or GZIP_2 */
    int blocksize;            /* RICE_1's (cfitsio: 32) */
    int threads;              /* 0: automatic */
    /* out: tile k (cfitsio's row k + 1) in bytes[k], lens[k] bytes */
    int64_t ntiles;
    unsigned char **bytes;
    size_t *lens;
    int64_t failed_tile;      /* -1, or the tile the codec refused */
} tf_wtiles;

/* Compress every tile, as cfitsio's imcomp_compress_tile does for
 * fits_write_img of the same values: RICE_1 as fits_rcomp_byte,
 * fits_rcomp_short or fits_rcomp code a tile (the same bytes, by a faster
 * writer of the same bitstream), in cfitsio's buffer size; GZIP_1 and GZIP_2 by cfitsio's compress2mem_from_mem of the
 * big-endian tile (GZIP_2: its bytes shuffled by significance first).
 * TF_OK, TF_ENOMEM, or TF_EINVAL (a codec error: failed_tile). Free the
 * outputs with tf_wtiles_free, also after an error. */
int tf_wtiles_compress(tf_wtiles *t);
void tf_wtiles_free(tf_wtiles *t);

#endif /* TORCHFITS_WRITE_COMPRESS_TILES_H */
