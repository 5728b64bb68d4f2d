/*
 * test_core.c - unit tests of the C core, without torch.
 *
 *   test_core DIR
 *
 * DIR holds files that tests/test_core_c.py wrote with astropy:
 * img16.fits (int16 30x40), scaled.fits (int16 with BSCALE/BZERO/BLANK),
 * trunc.fits (img16.fits cut short), mef.fits (multi-extension).
 * Prints one line per failed check and "N passed, M failed" at the end.
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../csrc/core/common/convert.h"
#include "../../csrc/core/torchfits_core.h"

#include "check.h"

static char dir[4096];

static const char *at(const char *name) {
    static char buf[8192];
    snprintf(buf, sizeof buf, "%s/%s", dir, name);
    return buf;
}

static tf_file *open_ok(const char *name) {
    tf_file *f = tf_create();
    int rc = tf_open(f, at(name));
    if (rc) fprintf(stderr, "open %s: %s\n", name, tf_errmsg(f));
    CHECK(rc == TF_OK);
    return f;
}

static void test_open_errors(void) {
    tf_file *f = tf_create();
    CHECK(tf_open(f, at("missing.fits")) == TF_EOPEN);
    CHECK(strstr(tf_errmsg(f), "missing.fits: cannot open file") != NULL);
    CHECK(tf_hdu_info_get(f, 0, &(tf_hdu_info){0}) == TF_EINVAL);
    tf_close(f);
    tf_close(NULL);
    CHECK(tf_open(NULL, "x") == TF_EINVAL);
    CHECK(strcmp(tf_errmsg(NULL), "out of memory") == 0);
    CHECK(tf_check_reentrant() == TF_OK);
}

static void test_info_and_read(void) {
    tf_file *f = open_ok("img16.fits");
    tf_hdu_info info;
    CHECK(tf_hdu_info_get(f, 0, &info) == TF_OK);
    CHECK(info.kind == TF_HDU_IMAGE && info.bitpix == 16 && info.ndim == 2);
    CHECK(info.shape[0] == 30 && info.shape[1] == 40);
    CHECK(info.dtype == TF_INT16 && info.raw_dtype == TF_INT16 && !info.compressed);

    tf_dtype dt;
    int nd;
    int64_t shape[TF_MAX_DIMS];
    CHECK(tf_image_output(f, 0, NULL, &dt, &nd, shape) == TF_OK);
    CHECK(dt == TF_INT16 && nd == 2 && shape[0] == 30 && shape[1] == 40);

    int16_t fast[1200], slow[1200];
    tf_image_request req = {0};
    CHECK(tf_image_read(f, 0, &req, fast, sizeof fast) == TF_OK);
    req.path = TF_PATH_CFITSIO;
    CHECK(tf_image_read(f, 0, &req, slow, sizeof slow) == TF_OK);
    CHECK(memcmp(fast, slow, sizeof fast) == 0);
    /* Pixel (row 1, column 2) is 1*40+2 in the file astropy wrote. */
    CHECK(fast[42] == 42 - 600);

    /* A wrong buffer size is refused and does not poison the handle. */
    CHECK(tf_image_read(f, 0, &req, fast, sizeof fast - 2) == TF_EBUFSIZE);
    CHECK(strstr(tf_errmsg(f), "needs 2400") != NULL);
    CHECK(tf_image_read(f, 0, &req, fast, sizeof fast) == TF_OK);

    /* A cutout with steps through both paths. */
    tf_image_request cut = {.ndim = 2, .start = {1, 3}, .count = {5, 4}, .step = {6, 9}};
    int16_t a[20], b[20];
    CHECK(tf_image_read(f, 0, &cut, a, sizeof a) == TF_OK);
    cut.path = TF_PATH_CFITSIO;
    CHECK(tf_image_read(f, 0, &cut, b, sizeof b) == TF_OK);
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(a[0] == (1 * 40 + 3) - 600 && a[4] == (7 * 40 + 3) - 600 && a[5] == (7 * 40 + 12) - 600);

    /* Out of range and bad arguments: errors, handle still usable. */
    tf_image_request bad = {.ndim = 2, .start = {0, 0}, .count = {31, 1}};
    CHECK(tf_image_output(f, 0, &bad, NULL, NULL, NULL) == TF_ERANGE);
    bad.count[0] = -1;
    CHECK(tf_image_output(f, 0, &bad, NULL, NULL, NULL) == TF_EINVAL);
    bad = (tf_image_request){.dtype = TF_FLOAT32};
    CHECK(tf_image_output(f, 0, &bad, NULL, NULL, NULL) == TF_EINVAL);
    CHECK(tf_image_output(f, 1, NULL, NULL, NULL, NULL) == TF_ENOHDU);
    CHECK(strstr(tf_errmsg(f), "HDU 1 does not exist (the file has 1 HDU)") != NULL);
    CHECK(tf_image_read(f, 0, &req, fast, sizeof fast) == TF_OK);
    tf_close(f);
}

static void test_scaled(void) {
    tf_file *f = open_ok("scaled.fits");
    tf_hdu_info info;
    CHECK(tf_hdu_info_get(f, 0, &info) == TF_OK);
    CHECK(info.dtype == TF_FLOAT32 && info.has_blank && info.blank == -32768);
    CHECK(info.bscale == 0.5 && info.bzero == 10.0);
    float fast[12], slow[12];
    tf_image_request req = {0};
    CHECK(tf_image_read(f, 0, &req, fast, sizeof fast) == TF_OK);
    req.path = TF_PATH_CFITSIO;
    CHECK(tf_image_read(f, 0, &req, slow, sizeof slow) == TF_OK);
    CHECK(isnan(fast[0]) && isnan(slow[0]));
    CHECK(memcmp(fast + 1, slow + 1, sizeof fast - sizeof(float)) == 0);
    CHECK(fast[1] == 1 * 0.5f + 10.0f);
    int16_t raw[12];
    tf_image_request r = {.raw = 1};
    CHECK(tf_image_read(f, 0, &r, raw, sizeof raw) == TF_OK);
    CHECK(raw[0] == -32768 && raw[1] == 1);
    tf_close(f);
}

static void test_truncated_poisons(void) {
    tf_file *f = open_ok("trunc.fits");
    int16_t buf[1200];
    CHECK(tf_image_read(f, 0, NULL, buf, sizeof buf) == TF_ECORRUPT);
    CHECK(strstr(tf_errmsg(f), "trunc.fits: HDU 0: file is truncated") != NULL);
    CHECK(tf_image_read(f, 0, NULL, buf, sizeof buf) == TF_EPOISONED);
    CHECK(strstr(tf_errmsg(f), "file is truncated") != NULL); /* first message kept */
    tf_close(f);
}

static void test_mef_and_header(void) {
    tf_file *f = open_ok("mef.fits");
    int n = 0, idx = -1;
    CHECK(tf_num_hdus(f, &n) == TF_OK && n == 8);
    CHECK(tf_find_hdu(f, "err", 2, &idx) == TF_OK && idx == 5);
    CHECK(tf_find_hdu(f, "SCI", 0, &idx) == TF_OK && idx == 1);
    CHECK(tf_find_hdu(f, "NOPE", 0, &idx) == TF_ENOHDU);
    CHECK(strstr(tf_errmsg(f), "no HDU with EXTNAME 'NOPE'") != NULL);
    CHECK(tf_find_hdu(f, "PRIMARY", 0, &idx) == TF_OK && idx == 0);
    CHECK(tf_image_output(f, 7, NULL, NULL, NULL, NULL) == TF_EHDUTYPE);
    CHECK(tf_image_output(f, 0, NULL, NULL, NULL, NULL) == TF_EHDUTYPE);

    int ncards = 0;
    CHECK(tf_header_load(f, 2, &ncards) == TF_OK && ncards > 8);
    const char *key, *value, *comment;
    char type;
    int found = 0;
    for (int i = 0; i < ncards; i++) {
        CHECK(tf_header_card(f, i, &key, &value, &comment, &type) == TF_OK);
        if (strcmp(key, "EXTNAME") == 0) found = strcmp(value, "ERR") == 0 && type == 'C';
        CHECK(strcmp(key, "END") != 0);
    }
    CHECK(found);
    CHECK(tf_header_card(f, ncards, &key, NULL, NULL, NULL) == TF_EINVAL);
    tf_close(f);
}

/* The conversion kernels against a plain scalar reference, at lengths that
 * are not multiples of any vector width. */
static void put_be(unsigned char *p, uint64_t v, size_t size) {
    for (size_t i = 0; i < size; i++) p[i] = (unsigned char)(v >> (8 * (size - 1 - i)));
}

static uint64_t get_be(const unsigned char *p, size_t size) {
    uint64_t v = 0;
    for (size_t i = 0; i < size; i++) v = v << 8 | p[i];
    return v;
}

static void test_convert(void) {
    enum { N = 67 };
    unsigned char src[N * 8];
    unsigned char dst[N * 8];
    uint64_t seed = 12345;
    for (size_t i = 0; i < sizeof src; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        src[i] = (unsigned char)(seed >> 56);
    }
    for (size_t n = 0; n <= N; n++) {
        tf_conv c;
        /* int16 -> uint16 (BZERO 32768) in place */
        memcpy(dst, src, n * 2);
        CHECK(tf_conv_init(&c, TF_INT16, TF_UINT16, 1, 32768, 0, 0));
        tf_convert(&c, dst, dst, n);
        for (size_t i = 0; i < n; i++) {
            uint16_t want = (uint16_t)(((src[2 * i] << 8) | src[2 * i + 1]) ^ 0x8000);
            uint16_t got;
            memcpy(&got, dst + 2 * i, 2);
            if (got != want) { CHECK(got == want); break; }
        }
        /* int32 -> int64 (BZERO 2^31) */
        CHECK(tf_conv_init(&c, TF_INT32, TF_INT64, 1, 2147483648.0, 0, 0));
        tf_convert(&c, src, dst, n);
        for (size_t i = 0; i < n; i++) {
            int32_t s = (int32_t)(((uint32_t)src[4 * i] << 24) | ((uint32_t)src[4 * i + 1] << 16) |
                                  ((uint32_t)src[4 * i + 2] << 8) | src[4 * i + 3]);
            int64_t got;
            memcpy(&got, dst + 8 * i, 8);
            if (got != (int64_t)s + 2147483648LL) { CHECK(0); break; }
        }
        /* int64 -> uint64 (BZERO 2^63) in place: the sign bit flipped */
        memcpy(dst, src, n * 8);
        CHECK(tf_conv_init(&c, TF_INT64, TF_UINT64, 1, 9223372036854775808.0, 0, 0));
        CHECK(tf_conv_inplace(&c));
        tf_convert(&c, dst, dst, n);
        for (size_t i = 0; i < n; i++) {
            uint64_t want = 0, got;
            for (int b = 0; b < 8; b++) want = want << 8 | src[8 * i + b];
            want ^= UINT64_C(1) << 63;
            memcpy(&got, dst + 8 * i, 8);
            if (got != want) { CHECK(got == want); break; }
        }
        /* int64 -> float64 (BZERO 2^63), what a torch without uint64 gets:
         * the unsigned value rounded once, as cfitsio gives it, and NaN
         * for BLANK (the stored value of element 2) */
        unsigned char s64[N * 8];
        memcpy(s64, src, sizeof s64);
        if (n > 1) put_be(s64 + 8, 0, 8);                       /* 2^63 */
        if (n > 5) put_be(s64 + 40, UINT64_C(1) << 63 | 1, 8); /* 1 */
        int64_t blank = n > 2 ? (int64_t)get_be(s64 + 16, 8) : 0;
        CHECK(tf_conv_init(&c, TF_INT64, TF_FLOAT64, 1, 9223372036854775808.0, n > 2, blank));
        tf_convert(&c, s64, dst, n);
        for (size_t i = 0; i < n; i++) {
            uint64_t u = get_be(s64 + 8 * i, 8);
            double got;
            memcpy(&got, dst + 8 * i, 8);
            if (n > 2 && (int64_t)u == blank) { if (!isnan(got)) { CHECK(0); break; } }
            else if (got != (double)(u ^ UINT64_C(1) << 63)) { CHECK(0); break; }
        }
        if (n > 5) {
            double one, top;
            memcpy(&one, dst + 40, 8);
            memcpy(&top, dst + 8, 8);
            CHECK(one == 1.0 && top == 9223372036854775808.0);
        }
        /* int16 -> float32 with scale, zero and BLANK */
        unsigned char s16[N * 2];
        memcpy(s16, src, sizeof s16);
        if (n > 3) put_be(s16 + 6, (uint16_t)-5, 2);
        CHECK(tf_conv_init(&c, TF_INT16, TF_FLOAT32, 0.25, -3, 1, -5));
        tf_convert(&c, s16, dst, n);
        for (size_t i = 0; i < n; i++) {
            int16_t s = (int16_t)((s16[2 * i] << 8) | s16[2 * i + 1]);
            float got;
            memcpy(&got, dst + 4 * i, 4);
            if (s == -5) { if (!isnan(got)) { CHECK(0); break; } }
            else if (got != (float)((double)s * 0.25 + -3.0)) { CHECK(0); break; }
        }
        /* float64 swap */
        CHECK(tf_conv_init(&c, TF_FLOAT64, TF_FLOAT64, 1, 0, 0, 0));
        CHECK(tf_conv_inplace(&c));
        tf_convert(&c, src, dst, n);
        for (size_t i = 0; i < n; i++)
            for (int b = 0; b < 8; b++)
                if (dst[8 * i + b] != src[8 * i + 7 - b]) { CHECK(0); i = n; break; }
    }
    tf_conv c;
    CHECK(!tf_conv_init(&c, TF_INT16, TF_INT8, 1, 0, 0, 0));
    CHECK(tf_dtype_size(TF_COMPLEX128) == 16 && tf_dtype_size(TF_DTYPE_AUTO) == 0);
    CHECK(strcmp(tf_dtype_name(TF_UINT16), "uint16") == 0);
    CHECK(strcmp(tf_dtype_name(TF_UINT64), "uint64") == 0 && tf_dtype_size(TF_UINT64) == 8);
    CHECK(!tf_conv_init(&c, TF_UINT64, TF_FLOAT32, 1, 0, 0, 0));
    CHECK(strcmp(tf_strerror(TF_EPOISONED), "TF_EPOISONED") == 0);
}

/* Blocks of 32 MiB and more: a freed block is handed out again for a
 * request it fits, never while in use, never for one much smaller. */
static void test_blocks(void) {
    const size_t mib = (size_t)1 << 20;
    size_t la = 0, lb = 0, lc = 0, ls = 1;
    char *small = tf_block_alloc(1000, &ls);
    CHECK(small && ls == 0); /* malloc's */
    tf_block_free(small, ls);
    char *a = tf_block_alloc(40 * mib + 1, &la);
    CHECK(a && la >= 40 * mib + 1 && la % 4096 == 0 && (uintptr_t)a % 4096 == 0);
    memset(a, 7, 40 * mib + 1);
    char *b = tf_block_alloc(48 * mib, &lb); /* a is in use */
    CHECK(b && b != a);
    tf_block_free(a, la);
    char *c = tf_block_alloc(40 * mib, &lc);
    CHECK(c == a && lc == la); /* kept, handed out again, not zeroed */
    CHECK(c[0] == 7 && c[40 * mib] == 7);
    tf_block_free(b, lb);
    char *d = tf_block_alloc(32 * mib, &lb); /* b wastes over a quarter */
    CHECK(d && d != b && d != c);
    tf_block_free(c, lc);
    tf_block_free(d, lb);
    /* A forked child does not reuse its parent's kept blocks (each page
     * would be copied first): its block is fresh, zeroed memory. */
    pid_t pid = fork();
    if (pid == 0) {
        size_t lk = 0;
        char *k = tf_block_alloc(40 * mib, &lk);
        _exit(k && k[0] == 0 && k[40 * mib - 1] == 0 ? 0 : 1);
    }
    int wst = 0;
    CHECK(pid > 0 && waitpid(pid, &wst, 0) == pid && WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
    c = tf_block_alloc(40 * mib, &lc); /* the parent still has its block */
    CHECK(c && c[0] == 7);
    tf_block_free(c, lc);
    tf_set_option(TF_OPT_KEEP_MB, 0); /* keeps none: these unmap */
    a = tf_block_alloc(40 * mib, &la);
    CHECK(a != NULL);
    tf_block_free(a, la);
    tf_set_option(TF_OPT_KEEP_MB, 256);
    tf_block_free(NULL, 0);
}

/* Appending: the old bytes stay, and a file changed between the open and
 * the commit is not replaced (under ASan: the old file's handle freed). */
static void test_append(void) {
    char path[8192];
    snprintf(path, sizeof path, "%s", at("append.fits"));
    unlink(path);
    int16_t px[6] = {1, 2, 3, 4, 5, 6};
    tf_write_image img;
    memset(&img, 0, sizeof img);
    img.dtype = TF_W_INT16;
    img.ndim = 2;
    img.shape[0] = 2;
    img.shape[1] = 3;
    img.data = px;
    img.nbytes = sizeof px;
    tf_writer *w = NULL;
    int64_t bytes = 0;
    CHECK(tf_writer_create(&w, path, TF_WRITE_NEW) == TF_OK);
    CHECK(tf_writer_add_image(w, &img, NULL, 0) == TF_OK);
    CHECK(tf_writer_commit(w, &bytes) == TF_OK && bytes == 2 * 2880);
    tf_writer_free(w);

    CHECK(tf_writer_create(&w, path, TF_WRITE_APPEND) == TF_OK);
    CHECK(tf_writer_add_image(w, &img, NULL, 0) == TF_OK);
    CHECK(tf_writer_commit(w, &bytes) == TF_OK && bytes == 4 * 2880);
    tf_writer_free(w);
    tf_file *f = tf_create();
    int n = 0;
    CHECK(tf_open(f, path) == TF_OK && tf_num_hdus(f, &n) == TF_OK && n == 2);
    tf_close(f);

    /* Changed meanwhile (another writer appended a block): refused. */
    CHECK(tf_writer_create(&w, path, TF_WRITE_APPEND) == TF_OK);
    CHECK(tf_writer_add_image(w, &img, NULL, 0) == TF_OK);
    FILE *fp = fopen(path, "ab");
    char block[2880];
    memset(block, ' ', sizeof block);
    CHECK(fp && fwrite(block, 1, sizeof block, fp) == sizeof block);
    if (fp) fclose(fp);
    CHECK(tf_writer_commit(w, &bytes) == TF_EOPEN);
    CHECK(strstr(tf_writer_errmsg(w), "changed while appending") != NULL);
    tf_writer_free(w);
    FILE *in = fopen(path, "rb");
    long size = -1;
    if (in) {
        fseek(in, 0, SEEK_END);
        size = ftell(in);
        fclose(in);
    }
    CHECK(size == 5 * 2880);

    /* Bytes after the last HDU that are no HDU (the blank block): refused
     * at once. */
    CHECK(tf_writer_create(&w, path, TF_WRITE_APPEND) == TF_ECORRUPT);
    CHECK(strstr(tf_writer_errmsg(w), "2880 bytes follow its last HDU") != NULL);
    tf_writer_free(w);

    /* Appending nothing: refused at the commit. */
    unlink(path);
    CHECK(tf_writer_create(&w, path, TF_WRITE_NEW) == TF_OK);
    CHECK(tf_writer_add_image(w, &img, NULL, 0) == TF_OK);
    CHECK(tf_writer_commit(w, &bytes) == TF_OK);
    tf_writer_free(w);
    CHECK(tf_writer_create(&w, path, TF_WRITE_APPEND) == TF_OK);
    CHECK(tf_writer_commit(w, &bytes) == TF_EINVAL);
    tf_writer_free(w);
    unlink(path);
}

/* Tiles compressed on several threads (RICE_1, GZIP_2) and uncompressed
 * data stored directly, with checksums: read back equal, checksums
 * verified (also under ASan/UBSan). */
static void test_write_tiles(void) {
    char path[8192];
    snprintf(path, sizeof path, "%s", at("tiles.fits"));
    unlink(path);
    enum { H = 200, W = 333 };
    static int16_t px[H * W], back[H * W];
    for (int i = 0; i < H * W; i++) px[i] = (int16_t)((i * 7919) % 601 - 300 + (i % 97 == 0 ? 30000 : 0));
    tf_write_image img;
    memset(&img, 0, sizeof img);
    img.dtype = TF_W_INT16;
    img.ndim = 2;
    img.shape[0] = H;
    img.shape[1] = W;
    img.data = px;
    img.nbytes = sizeof px;
    tf_set_option(TF_OPT_THREADS, 3);
    tf_writer *w = NULL;
    int64_t bytes = 0;
    CHECK(tf_writer_create(&w, path, TF_WRITE_NEW) == TF_OK);
    CHECK(tf_writer_set_checksum(w, 1) == TF_OK);
    CHECK(tf_writer_add_image(w, &img, NULL, 0) == TF_OK);
    img.codec = TF_CODEC_RICE_1;
    img.tile_ndim = 2;
    img.tile[0] = 7;
    img.tile[1] = 50;
    CHECK(tf_writer_add_image(w, &img, NULL, 0) == TF_OK);
    img.codec = TF_CODEC_GZIP_2;
    CHECK(tf_writer_add_image(w, &img, NULL, 0) == TF_OK);
    CHECK(tf_writer_set_checksum(w, 0) == TF_EINVAL); /* after HDUs: refused */
    CHECK(tf_writer_commit(w, &bytes) == TF_OK && bytes > 0);
    tf_writer_free(w);
    tf_set_option(TF_OPT_THREADS, 0);

    int n = 0, ds[4] = {0}, hs[4] = {0};
    char msg[512];
    CHECK(tf_verify_checksums(path, &n, ds, hs, 4, msg, sizeof msg) == TF_OK && n == 3);
    for (int h = 0; h < 3; h++) CHECK(ds[h] == 1 && hs[h] == 1);
    tf_file *f = tf_create();
    CHECK(f && tf_open(f, path) == TF_OK);
    for (int h = 0; h < 3; h++) {
        tf_image_request req = {0};
        memset(back, 0, sizeof back);
        CHECK(tf_image_read(f, h, &req, back, sizeof back) == TF_OK);
        CHECK(memcmp(back, px, sizeof px) == 0);
    }
    tf_close(f);
    unlink(path);
}

/* Every other codec path of the parallel tile writer, under the
 * sanitizers: quantized floats with NaN (nulls) and a noiseless row (a
 * tile stored as gzip of its values), one-pixel tiles, lossless GZIP_2 of
 * doubles, HCOMPRESS_1 of noise (more bytes than cfitsio's buffer), PLIO_1. */
static void test_write_more_tiles(void) {
    char path[8192];
    snprintf(path, sizeof path, "%s", at("tiles2.fits"));
    unlink(path);
    enum { H = 40, W = 257 };
    static float fx[H * W], fback[H * W];
    static double dx[H * W], dback[H * W];
    static int16_t sx[H * W], sback[H * W];
    static uint8_t bx[H * W], bback[H * W];
    unsigned r = 12345;
    for (int i = 0; i < H * W; i++) {
        r = r * 1103515245u + 12345u;
        fx[i] = 100.0f + (float)((r >> 16) % 1000) / 50.0f;
        dx[i] = fx[i] * 1.5;
        sx[i] = (int16_t)(r >> 8);
        bx[i] = (uint8_t)(i / W + (i % 5 == 0));
    }
    for (int i = W; i < 2 * W; i++) fx[i] = 7.5f;
    fx[3 * W + 5] = NAN;
    for (int i = 10 * W; i < 11 * W; i++) fx[i] = NAN;
    tf_write_image img;
    memset(&img, 0, sizeof img);
    img.ndim = 2;
    img.shape[0] = H;
    img.shape[1] = W;
    tf_set_option(TF_OPT_THREADS, 3);
    tf_writer *w = NULL;
    int64_t bytes = 0;
    CHECK(tf_writer_create(&w, path, TF_WRITE_NEW) == TF_OK);
    img.dtype = TF_W_FLOAT32;
    img.data = fx;
    img.nbytes = sizeof fx;
    img.codec = TF_CODEC_RICE_1;
    img.dither_seed = 9;
    CHECK(tf_writer_add_image(w, &img, NULL, 0) == TF_OK);              /* HDU 1 */
    img.tile_ndim = 2;
    img.tile[0] = 1;
    img.tile[1] = 1;
    img.shape[0] = 3;                                                     /* 3 x 257 */
    img.nbytes = 3 * W * sizeof(float);
    CHECK(tf_writer_add_image(w, &img, NULL, 0) == TF_OK);              /* HDU 2 */
    img.shape[0] = H;
    img.tile_ndim = 0;
    img.dtype = TF_W_FLOAT64;
    img.data = dx;
    img.nbytes = sizeof dx;
    img.codec = TF_CODEC_GZIP_2;
    img.set_quantize_level = 1;
    img.quantize_level = 0.0f;
    CHECK(tf_writer_add_image(w, &img, NULL, 0) == TF_OK);              /* HDU 3 */
    img.set_quantize_level = 0;
    img.dtype = TF_W_INT16;
    img.data = sx;
    img.nbytes = sizeof sx;
    img.codec = TF_CODEC_HCOMPRESS_1;
    img.tile_ndim = 2;
    img.tile[0] = 7;
    img.tile[1] = 50;
    CHECK(tf_writer_add_image(w, &img, NULL, 0) == TF_OK);              /* HDU 4 */
    img.tile_ndim = 0;
    img.dtype = TF_W_UINT8;
    img.data = bx;
    img.nbytes = sizeof bx;
    img.codec = TF_CODEC_PLIO_1;
    CHECK(tf_writer_add_image(w, &img, NULL, 0) == TF_OK);              /* HDU 5 */
    CHECK(tf_writer_commit(w, &bytes) == TF_OK && bytes > 0);
    tf_writer_free(w);
    tf_set_option(TF_OPT_THREADS, 0);

    tf_file *f = tf_create();
    CHECK(f && tf_open(f, path) == TF_OK);
    tf_image_request req = {0};
    CHECK(tf_image_read(f, 1, &req, fback, sizeof fback) == TF_OK);
    int same_nan = 1, close = 1;
    for (int i = 0; i < H * W; i++) {
        if (isnan(fx[i]) != isnan(fback[i])) same_nan = 0;
        if (!isnan(fx[i]) && fabsf(fx[i] - fback[i]) > 1.0f) close = 0;
    }
    CHECK(same_nan && close);
    CHECK(fback[W] == 7.5f);  /* the noiseless row, stored as it is */
    CHECK(tf_image_read(f, 2, &req, fback, 3 * W * sizeof(float)) == TF_OK);
    CHECK(memcmp(fback, fx, 3 * W * sizeof(float)) == 0);  /* one pixel: not quantized */
    CHECK(tf_image_read(f, 3, &req, dback, sizeof dback) == TF_OK);
    CHECK(memcmp(dback, dx, sizeof dx) == 0);
    CHECK(tf_image_read(f, 4, &req, sback, sizeof sback) == TF_OK);
    CHECK(memcmp(sback, sx, sizeof sx) == 0);
    CHECK(tf_image_read(f, 5, &req, bback, sizeof bback) == TF_OK);
    CHECK(memcmp(bback, bx, sizeof bx) == 0);
    tf_close(f);
    unlink(path);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    snprintf(dir, sizeof dir, "%s", argv[1]);
    test_open_errors();
    test_info_and_read();
    test_scaled();
    test_truncated_poisons();
    test_mef_and_header();
    test_convert();
    test_blocks();
    test_append();
    test_write_tiles();
    test_write_more_tiles();
    return check_report();
}
