/*
 * hdr2str.c - an HDU's header as one string of cards, a tile-compressed
 * image's rebuilt as the image's own, without the image's data unit.
 *
 * cfitsio's fits_convert_hdr2str rebuilds a compressed image's header by
 * creating a scratch "mem://" file, copying the header into it
 * (fits_img_decompress_header), reading the cards back (ffhdr2str) and
 * closing the scratch file. Closing it redefines the last HDU (ffchdu ->
 * ffrdef -> ffrhdu), and for a mem:// or memkeep:// file ffrhdu grows the
 * file to hold that HDU whole (fftrun -> mem_truncate: realloc, then a
 * memset of the new bytes): the image's empty data unit, the size of the
 * uncompressed image. For an 8192x8192 float32 image that is 256 MB
 * allocated, zeroed and freed for each header read, about 0.1 s of page
 * faults.
 *
 * Here the same steps run on a scratch memory file of our own
 * (fits_create_memfile), whose realloc refuses to grow once the cards have
 * been read: the header string is cfitsio's, byte for byte, and the close
 * fails only on that refusal, after cfitsio has freed all it holds
 * (ffclos frees its structures whatever the status). Only that one close
 * error is ignored, and the messages it left are cleared back to a mark.
 * The seal is per thread: concurrent reads each have their own.
 */
#include <stdlib.h>

#include <fitsio.h>

#include "../common/internal.h"

static _Thread_local int sealed;

/* The scratch file's realloc: as realloc, until sealed; then it refuses
 * (cfitsio reports MEMORY_ALLOCATION) any size but the one it has. */
static void *scratch_realloc(void *p, size_t n) {
    if (sealed) return NULL;
    return realloc(p, n);
}

int tf_hdr2str(fitsfile *fp, char **header, int *nkeys, int *status) {
    *header = NULL;
    if (*status > 0) return *status;
    if (!fits_is_compressed_image(fp, status)) {
        if (*status > 0) return *status;
        return ffhdr2str(fp, 0, NULL, 0, header, nkeys, status);
    }
    void *buf = NULL;
    size_t size = 0;
    fitsfile *tmp = NULL;
    sealed = 0;
    if (fits_create_memfile(&tmp, &buf, &size, 2880, scratch_realloc, status) > 0) {
        free(buf);
        return *status;
    }
    fits_img_decompress_header(fp, tmp, status);
    ffhdr2str(tmp, 0, NULL, 0, header, nkeys, status);
    /* Close: nothing may grow now, so the data unit is never allocated. */
    sealed = 1;
    int cst = 0;
    fits_write_errmark();
    fits_close_file(tmp, &cst);
    fits_clear_errmark();
    sealed = 0;
    free(buf);
    if (*status <= 0 && cst > 0 && cst != MEMORY_ALLOCATION && cst != WRITE_ERROR)
        *status = cst;
    if (*status > 0 && *header) {
        int st = 0;
        fits_free_memory(*header, &st);
        *header = NULL;
    }
    return *status;
}
