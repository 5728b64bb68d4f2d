/*
 * precheck.c - the header checks cfitsio needs before it parses a
 * tile-compressed image's header.
 *
 * cfitsio reads ZTILEn while moving to the HDU and divides by it: a ZTILEn
 * of 0 kills the process with SIGFPE before any of its own checks. So the
 * raw header cards of every HDU cfitsio has not parsed yet are scanned
 * first (plain files; cfitsio holds gzip files in memory, unchecked here).
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compress.h"

/* Scan at most this many header blocks of 2880 bytes for the Z keywords. */
#define MAX_SCAN_BLOCKS 64

static int card_int(const char *card, long long *v) {
    if (card[8] != '=') return 0;
    char buf[72];
    memcpy(buf, card + 10, 70);
    buf[70] = 0;
    char *end;
    *v = strtoll(buf, &end, 10);
    return end != buf;
}

/* Check the header that begins at byte `off`. */
static int check_header_at(tf_file *f, int hdu, int64_t off) {
    char block[2880];
    int zimage = 0;
    long long ztile[MAX_COMPRESS_DIM + 1];
    int has_tile[MAX_COMPRESS_DIM + 1] = {0};
    for (int b = 0; b < MAX_SCAN_BLOCKS; b++) {
        if (off + (int64_t)(b + 1) * 2880 > f->file_size) return TF_OK; /* cfitsio reports it */
        if (pread(f->fd, block, sizeof block, (off_t)(off + (int64_t)b * 2880)) != 2880)
            return TF_OK;
        for (int c = 0; c < 36; c++) {
            const char *card = block + 80 * c;
            long long v;
            int n;
            if (memcmp(card, "END     ", 8) == 0) goto done;
            if (memcmp(card, "ZIMAGE  =", 9) == 0) zimage = strchr(card + 10, 'T') != NULL;
            if (memcmp(card, "ZTILE", 5) == 0 && card[5] >= '1' && card[5] <= '0' + MAX_COMPRESS_DIM &&
                card[6] == ' ' && card_int(card, &v)) {
                n = card[5] - '0';
                ztile[n] = v;
                has_tile[n] = 1;
            }
        }
    }
done:
    if (!zimage) return TF_OK;
    for (int n = 1; n <= MAX_COMPRESS_DIM; n++)
        if (has_tile[n] && ztile[n] < 1) {
            f->err_hdu = hdu;
            return tf_fail(f, TF_ECORRUPT, 0,
                           "inconsistent ZNAXISn and ZTILEn: ZTILE%d = %lld is not positive", n,
                           ztile[n]);
        }
    return TF_OK;
}

int tf_compressed_precheck(tf_file *f, int hdu) {
    if (f->fd < 0 || hdu < 1) return TF_OK;
    FITSfile *F = f->fp->Fptr;
    /* cfitsio knows where header maxhdu + 1 begins; walk from there. */
    for (int k = F->maxhdu + 1; k <= hdu; k++) {
        if (k >= F->MAXHDU) return TF_OK;
        FORWARD_IF_ERROR(check_header_at(f, k, F->headstart[k]));
        if (k < hdu) {
            int st = 0;
            fits_movabs_hdu(f->fp, k + 1, NULL, &st);
            if (st) {
                fits_clear_errmsg();
                return TF_OK; /* the caller's move reports it */
            }
        }
    }
    return TF_OK;
}
