/*
 * compress.h - private to the core: the parallel reader of tile-compressed
 * images.
 */
#ifndef TORCHFITS_COMPRESS_H
#define TORCHFITS_COMPRESS_H

#include "../common/internal.h"

/* Environment variable that caps the reader's threads when the request
 * leaves them automatic (req->threads == 0). */

/*
 * Read the region start + i*step, i < count (C order, already checked
 * against the image by the caller) of the tile-compressed image HDU `hdu`,
 * on which f->fp stands, into `out` (C-contiguous, `out_type` elements).
 * Tile rows are decoded by up to `threads` threads (0: automatic), each
 * with its own cfitsio handle, each writing straight into its part of
 * `out`; only tiles that overlap the region are decoded. RICE_1, GZIP and
 * HCOMPRESS_1 tiles are decoded by the core (rice.c, zlib, hcompress.c),
 * the rest by cfitsio; results equal cfitsio's fits_read_subset bit for
 * bit.
 */
int tf_compressed_read(tf_file *f, const tf_hdu_info *in, tf_dtype out_type, int raw,
                       const int64_t *start, const int64_t *count, const int64_t *step,
                       int threads, void *out);

/* The checks tf_compressed_read makes before cfitsio decodes a tile (tile
 * layout, every overlapping tile's data inside the heap, GZIP tiles that
 * inflate within the tile's size, RICE and HCOMPRESS tiles that decode,
 * PLIO line lists inside their cell), for the cfitsio path: cfitsio's
 * decoders otherwise grow a buffer without bound, run out of bounds or
 * leak on a corrupt tile. */
int tf_compressed_check(tf_file *f, const tf_hdu_info *in, const int64_t *start,
                        const int64_t *count, const int64_t *step);

/* Drop cfitsio's cached decoded tiles on fp: they keep the scaling of the
 * read that decoded them. */
void tf_forget_tiles(fitsfile *fp);

#endif /* TORCHFITS_COMPRESS_H */
