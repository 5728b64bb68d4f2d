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
 * (fits_create_memfile), whose realloc, once the cards have been read,
 * refuses to grow the file past a bound on its headers (the compressed
 * HDU's header, twice, plus 64 KiB: the rebuilt header has the same cards,
 * translated, the same spare blocks, and at most a few required keys more;
 * the scratch file adds a null primary array of one block). So the close
 * still writes and re-reads the rebuilt header, and fails where cfitsio's
 * fails (a header whose first card is not SIMPLE or XTENSION: status 252),
 * but the data unit is refused: the header string is cfitsio's, byte for
 * byte. cfitsio frees all it holds whatever the close's status (ffclos);
 * only the refusal's statuses are ignored, and the messages it left are
 * cleared back to a mark. The bound is per thread: concurrent reads each
 * have their own. An image smaller than the bound is allocated, as before.
 */
#include <stdint.h>
#include <stdlib.h>

#include <fitsio.h>

#include "../common/internal.h"

static _Thread_local size_t bound = SIZE_MAX;

/* The scratch file's realloc: as realloc up to the bound; past it, it
 * refuses, and cfitsio's memory driver reports MEMORY_ALLOCATION (from
 * mem_truncate) or WRITE_ERROR (a write past the end) instead of growing. */
static void *scratch_realloc(void *p, size_t n) {
    if (n > bound) return NULL;
    return realloc(p, n);
}

int tf_hdr2str(fitsfile *fp, char **header, int *nkeys, int *status) {
    *header = NULL;
    if (*status > 0) return *status;
    if (!fits_is_compressed_image(fp, status)) {
        if (*status > 0) return *status;
        return ffhdr2str(fp, 0, NULL, 0, header, nkeys, status);
    }
    LONGLONG head = 0, data = 0, end = 0;
    if (fits_get_hduaddrll(fp, &head, &data, &end, status) > 0) return *status;
    void *buf = NULL;
    size_t size = 0;
    fitsfile *tmp = NULL;
    bound = SIZE_MAX;
    if (fits_create_memfile(&tmp, &buf, &size, 2880, scratch_realloc, status) > 0) {
        free(buf);
        return *status;
    }
    fits_img_decompress_header(fp, tmp, status);
    ffhdr2str(tmp, 0, NULL, 0, header, nkeys, status);
    /* Close: the headers may be written, the data unit not. */
    bound = (size_t)(data - head) * 2 + ((size_t)64 << 10);
    int cst = 0;
    fits_write_errmark();
    fits_close_file(tmp, &cst);
    fits_clear_errmark();
    bound = SIZE_MAX;
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
