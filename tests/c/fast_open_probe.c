/*
 * fast_open_probe.c - for each path on the command line, whether tf_open
 * took the fast open (the core parsed the primary header itself and left
 * cfitsio closed): prints "<status> <fast> <path>". Built and run by
 * tests/test_fast_open.py.
 */
#include <stdio.h>

#include "../../csrc/core/common/internal.h"

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        tf_file *f = tf_create();
        if (!f) return 2;
        int rc = tf_open(f, argv[i]);
        printf("%s %d %s\n", tf_strerror(rc), rc == TF_OK && f->fast_hdu0 && !f->fp, argv[i]);
        tf_close(f);
    }
    return 0;
}
