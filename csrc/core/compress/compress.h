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
 * `out`; only tiles that overlap the region are decoded. Results equal
 * cfitsio's fits_read_subset bit for bit: it is cfitsio that decodes.
 */
int tf_compressed_read(tf_file *f, const tf_hdu_info *in, tf_dtype out_type, int raw,
                       const int64_t *start, const int64_t *count, const int64_t *step,
                       int threads, void *out);

/*
 * Scan the raw headers of HDUs up to `hdu` that cfitsio has not parsed yet
 * for what would crash its compressed-image setup (ZTILEn <= 0). Called by
 * tf_move_to before it asks cfitsio to move. TF_OK or TF_ECORRUPT.
 */
int tf_compressed_precheck(tf_file *f, int hdu);

#endif /* TORCHFITS_COMPRESS_H */
