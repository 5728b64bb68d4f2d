/*
 * test_hdr2str.c - the core's tf_hdr2str against cfitsio's
 * fits_convert_hdr2str.
 *
 *   test_hdr2str FILE...
 *
 * For every HDU of every file (tests/test_header.py writes them with
 * astropy and fitsio: compressed images of each codec, primary-style,
 * long headers, CONTINUE...), both must give the same string, byte for
 * byte, and the same number of cards, with cfitsio's error stack left as
 * it was; where cfitsio fails, the same status. Then the same HDUs again, in reverse order, to check that one
 * read leaves nothing behind for the next (also run under ASan with leak
 * checking), and on 4 threads at once, each with its own handles (the
 * scratch file's refusal to grow is per thread). Prints "compressed N"
 * (the compressed HDUs seen), "refused N" (the HDUs both refused, both
 * passes) and "N passed, M failed".
 */
#include <fitsio.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../csrc/core/common/internal.h"

#include "check.h"

static int compressed, refused;

static void compare(fitsfile *fp, const char *path, int hdu) {
    int st = 0, st2 = 0, n1 = -1, n2 = -1;
    char *ref = NULL, *got = NULL, msg[FLEN_ERRMSG];
    fits_movabs_hdu(fp, hdu, NULL, &st);
    CHECK(st == 0);
    if (st) return;
    int isc = fits_is_compressed_image(fp, &st);
    compressed += isc;
    fits_convert_hdr2str(fp, 0, NULL, 0, &ref, &n1, &st);
    fits_clear_errmsg();
    tf_hdr2str(fp, &got, &n2, &st2);
    CHECK(fits_read_errmsg(msg) == 0); /* nothing left on cfitsio's stack */
    CHECK(st == st2); /* and where cfitsio fails, the same status */
    refused += st2 > 0;
    if (st != st2) fprintf(stderr, "%s HDU %d: status %d / %d\n", path, hdu, st, st2);
    if (st2 > 0) {
        CHECK(got == NULL);
    } else if (!ref || !got) {
        CHECK(ref && got);
    } else {
        CHECK(n1 == n2);
        CHECK(strlen(got) == (size_t)n2 * 80);
        int same = strcmp(ref, got) == 0;
        CHECK(same);
        if (!same) fprintf(stderr, "%s HDU %d: headers differ\n", path, hdu);
    }
    int zero = 0; /* fits_free_memory does nothing on a status > 0 */
    if (ref) fits_free_memory(ref, &zero);
    if (got) fits_free_memory(got, &zero);
}

/* One thread: every HDU of every file, 5 times, on handles of its own;
 * returns the number of HDUs whose headers differed or failed. */
static int nfiles;
static char **files;

static void *thread_pass(void *arg) {
    long bad = 0;
    (void)arg;
    for (int r = 0; r < 5; r++)
        for (int a = 0; a < nfiles; a++) {
            fitsfile *fp = NULL;
            int st = 0, n = 0;
            fits_open_file(&fp, files[a], READONLY, &st);
            fits_get_num_hdus(fp, &n, &st);
            for (int h = 1; h <= n && !st; h++) {
                int s1 = 0, s2 = 0, n1 = 0, n2 = 0;
                char *ref = NULL, *got = NULL;
                fits_movabs_hdu(fp, h, NULL, &st);
                fits_convert_hdr2str(fp, 0, NULL, 0, &ref, &n1, &s1);
                tf_hdr2str(fp, &got, &n2, &s2);
                bad += s1 != s2 || (!s2 && (!ref || !got || n1 != n2 || strcmp(ref, got) != 0));
                int zero = 0;
                if (ref) fits_free_memory(ref, &zero);
                if (got) fits_free_memory(got, &zero);
            }
            bad += st != 0;
            st = 0;
            if (fp) fits_close_file(fp, &st);
        }
    return (void *)bad;
}

int main(int argc, char **argv) {
    for (int a = 1; a < argc; a++) {
        fitsfile *fp = NULL;
        int st = 0, n = 0;
        fits_open_file(&fp, argv[a], READONLY, &st);
        fits_get_num_hdus(fp, &n, &st);
        CHECK(st == 0 && n > 0);
        if (st) {
            fprintf(stderr, "%s: cannot open (status %d)\n", argv[a], st);
            continue;
        }
        for (int h = 1; h <= n; h++) compare(fp, argv[a], h);
        for (int h = n; h >= 1; h--) compare(fp, argv[a], h);
        fits_close_file(fp, &st);
        CHECK(st == 0);
    }
    nfiles = argc - 1;
    files = argv + 1;
    pthread_t t[4];
    for (int i = 0; i < 4; i++) CHECK(pthread_create(&t[i], NULL, thread_pass, NULL) == 0);
    for (int i = 0; i < 4; i++) {
        void *bad = (void *)1;
        pthread_join(t[i], &bad);
        CHECK(bad == NULL);
    }
    /* An error before anything: status in, status out, no header. */
    int st = 105, nk = 0;
    char *h = (char *)"not freed";
    CHECK(tf_hdr2str(NULL, &h, &nk, &st) == 105 && h == NULL);
    printf("compressed %d\nrefused %d\n", compressed, refused);
    return check_report();
}
