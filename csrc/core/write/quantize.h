/*
 * quantize.h - private to the core: cfitsio's fits_quantize_float with a
 * fast noise estimate, the same integers and scaling (quantize.c).
 */
#ifndef TORCHFITS_WRITE_QUANTIZE_H
#define TORCHFITS_WRITE_QUANTIZE_H

enum {
    TF_QUANTIZE_ASK_CFITSIO = -1,  /* call fits_quantize_float instead */
    TF_QUANTIZE_NOMEM = -2
};

/* fits_quantize_float's contract (quantize.c of cfitsio: 1 quantized into
 * idata with *bscale / *bzero, 0 not quantized), minus iminval/imaxval;
 * or TF_QUANTIZE_ASK_CFITSIO for the cases it leaves to cfitsio (absolute
 * levels, infinities, rows whose answer in cfitsio depends on earlier
 * rows' leftovers), or TF_QUANTIZE_NOMEM. Dithering reads cfitsio's
 * random table: call fits_init_randoms first. Reentrant. */
int tf_quantize_float(long row, const float *fdata, long nxpix, long nypix, int nullcheck,
                      float in_null_value, float qlevel, int dither_method, int *idata,
                      double *bscale, double *bzero);

#endif /* TORCHFITS_WRITE_QUANTIZE_H */
