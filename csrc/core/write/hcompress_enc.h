/*
 * hcompress_enc.h - private to the core: a reentrant HCOMPRESS_1 encoder,
 * byte for byte cfitsio's fits_hcompress and fits_hcompress64, callable
 * from any number of threads at once (cfitsio's keeps its output state in
 * file-scope statics and serialises callers on its global lock).
 */
#ifndef TORCHFITS_WRITE_HCOMPRESS_ENC_H
#define TORCHFITS_WRITE_HCOMPRESS_ENC_H

enum {
    TF_HCENC_OK = 0,
    TF_HCENC_FULL = -1,  /* the stream does not fit in *nbytes bytes */
    TF_HCENC_ARG = -2,   /* nx or ny below 1, nx * ny above INT_MAX - 8, a NULL */
    TF_HCENC_NOMEM = -3
};

/*
 * Compress the nx rows of ny pixels (ny fastest; cfitsio's names, which
 * are the reverse of FITS's NAXIS1/NAXIS2) at `a` with the H-transform,
 * quantised by `scale` (0 or 1: lossless), into out[0 .. *nbytes - 1]:
 * the bytes fits_hcompress (32-bit arithmetic; cfitsio uses it for
 * ZBITPIX 8 and 16) or fits_hcompress64 (64-bit; ZBITPIX 32 and the
 * quantised floats) write for the same call. `a` is overwritten with the
 * transform. *nbytes is the buffer's size on input and the stream's
 * length on TF_HCENC_OK, 0 on an error.
 *
 * Nothing is ever written past out[*nbytes - 1]: a short buffer gives
 * TF_HCENC_FULL. A stream that fills the buffer exactly is accepted
 * (cfitsio refuses it, as it cannot tell it from an overflow, and it
 * writes one byte past the buffer in a bit plane, or any number in a
 * bitmap plane, before noticing). tf_hcompress_bound gives a size that
 * always fits. Reentrant: no global state; it allocates and frees about
 * nx * ny / 4 bytes (the sign bits and the quadtree's buffers) and a row.
 *
 * Where cfitsio's behaviour is undefined its compiled code's is kept:
 * sums wrap, shifts right are arithmetic. One exception: when a
 * coefficient needs 29 or more bit planes on the 32-bit path (61 or more
 * on the 64-bit one), cfitsio's quadtree coder indexes its Huffman tables
 * with sign-extended codes (code[248..255], read past the table); ours
 * uses the 4-bit codes the format defines (cfitsio may crash there). Its
 * writer gets there only from 32-bit values, which it sends to
 * fits_hcompress64: 16-bit ones need about 16 + log2 of the tile's longer
 * side (a half-black, half-white 4096 x 4096 int16 tile: 28 planes).
 */
int tf_hcompress(int *a, int ny, int nx, int scale, char *out, long *nbytes);
int tf_hcompress64(long long *a, int ny, int nx, int scale, char *out, long *nbytes);

/* A buffer size that any nx x ny tile fits on the 32-bit (wide 0) or
 * 64-bit path, whatever its values and scale; 0 for sizes tf_hcompress
 * refuses. About 4 * nx * ny bytes (wide: 8 * nx * ny): every bit plane
 * stored as a bitmap. (cfitsio's writer allocates 2.2 * nx * ny + 26
 * bytes for ZBITPIX 8 and 16 tiles, 4.4 * nx * ny + 26 for the others.) */
long tf_hcompress_bound(int ny, int nx, int wide);

/* Words for a TF_HCENC_ status. */
const char *tf_hcenc_strerror(int status);

#endif /* TORCHFITS_WRITE_HCOMPRESS_ENC_H */
