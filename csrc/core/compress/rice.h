/*
 * rice.h - private to the core: a bounded decoder for the RICE_1 tile
 * codec of the FITS tiled image convention (the stream fits_rcomp,
 * fits_rcomp_short and fits_rcomp_byte write).
 */
#ifndef TORCHFITS_RICE_H
#define TORCHFITS_RICE_H

#include <stddef.h>
#include <stdint.h>

enum {
    TF_RICE_OK = 0,
    TF_RICE_SHORT = -1, /* the stream ends before the last pixel asked for */
    TF_RICE_BAD = -2,   /* a block's code is not one an encoder writes */
    TF_RICE_ARG = -3    /* bytepix not 1, 2 or 4, nblock < 1, negative count */
};

/*
 * Decode the first `nout` pixels of a RICE_1 stream of `len` bytes coded
 * with `bytepix` bytes a pixel (ZVAL2) and blocks of `nblock` pixels
 * (ZVAL1) into `out`: uint8_t, uint16_t or uint32_t elements for bytepix
 * 1, 2, 4, the bit patterns cfitsio's fits_rdecomp_byte / _short /
 * fits_rdecomp produce. The stream is sequential, so decoding stops after
 * pixel nout - 1; pass the tile's length to check the whole stream.
 *
 * Never reads past in[len - 1] nor writes past out[nout - 1]; a stream
 * that ends early or is malformed gives TF_RICE_SHORT / TF_RICE_BAD (out
 * then holds garbage). Bytes left over after the last pixel are allowed,
 * as cfitsio allows them.
 */
int tf_rice_decode(const unsigned char *in, size_t len, int bytepix, int nblock, int64_t nout,
                   void *out);

/* Where a stream is at the start of a block: its pixel number (a multiple
 * of nblock), the bits consumed before it, and the previous pixel's value
 * (as the decoder keeps it, unsigned). */
typedef struct tf_rice_mark {
    int64_t pix, bit;
    uint32_t last;
} tf_rice_mark;

/*
 * tf_rice_decode, resumable: with `from` (a mark an earlier decode of the
 * same stream recorded), decoding starts at pixel from->pix and writes
 * out[from->pix .. nout - 1] only, bit for bit what a decode from the
 * start gives there. With `marks`, the state at each block start that is
 * a multiple of `stride` pixels (stride a multiple of nblock) is recorded
 * in marks[pix / stride], for pix / stride < nmarks; others are left
 * alone. `in` may begin anywhere before the mark: from->bit counts from
 * in[0], and so do the marks recorded. A `from` that does not lie inside the stream is TF_RICE_ARG; a
 * mark from another stream gives garbage, never an access outside in[] or
 * out[].
 */
int tf_rice_decode_marked(const unsigned char *in, size_t len, int bytepix, int nblock,
                          int64_t nout, void *out, const tf_rice_mark *from,
                          tf_rice_mark *marks, int64_t stride, int64_t nmarks);

/* Words for a TF_RICE_ status. */
const char *tf_rice_strerror(int status);

#endif /* TORCHFITS_RICE_H */
