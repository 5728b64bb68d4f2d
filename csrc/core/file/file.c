/*
 * file.c - opening files, moving between HDUs, describing HDUs.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "../common/internal.h"

tf_file *tf_create(void) {
    tf_file *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->fd = -1;
    f->num_hdus = -1;
    f->err_hdu = -1;
    f->map_slot = -1;
    return f;
}

void tf_free_cards(tf_file *f) {
    free(f->cards);
    free(f->card_text);
    f->cards = NULL;
    f->card_text = NULL;
    f->ncards = 0;
}

/*
 * A small file's bytes for cfitsio's memory driver. The driver is handed a
 * "realloc" that never moves or grows the block: cfitsio calls it to
 * truncate or extend a memory file (fftrun from ffrhdu on some damaged
 * headers sets the file's size to the end of the HDU the header claims,
 * and with no realloc at all it then reads that far past the buffer). A
 * request within the block's capacity gets the same block back; a larger
 * one fails, and cfitsio reports an error (on open, tf_open then reads
 * the file from disk instead, where cfitsio meets the real end of the
 * file). The capacity is stored in front of the bytes.
 */
#define MEMFILE_HEAD 16

typedef struct memfile_head {
    size_t capacity;
    size_t refused; /* a request past the capacity was refused */
} memfile_head;
_Static_assert(sizeof(memfile_head) <= MEMFILE_HEAD, "memfile head");

static void *memfile_alloc(size_t capacity) {
    unsigned char *b = calloc(1, MEMFILE_HEAD + capacity);
    if (!b) return NULL;
    ((memfile_head *)b)->capacity = capacity;
    return b + MEMFILE_HEAD;
}

static memfile_head *memfile_head_of(void *p) {
    return (memfile_head *)((unsigned char *)p - MEMFILE_HEAD);
}

static void *memfile_realloc(void *p, size_t n) {
    if (!p) return NULL;
    memfile_head *h = memfile_head_of(p);
    if (n <= h->capacity) return p;
    h->refused = 1;
    return NULL;
}

static void memfile_free(void *p) {
    if (p) free(memfile_head_of(p));
}

/* The block of p with room for `capacity` bytes (p may move; the new bytes
 * are not cleared); NULL, with p still valid, when memory runs out. */
static void *memfile_resize(void *p, size_t capacity) {
    unsigned char *b = realloc(memfile_head_of(p), MEMFILE_HEAD + capacity);
    if (!b) return NULL;
    ((memfile_head *)b)->capacity = capacity;
    return b + MEMFILE_HEAD;
}

/*
 * A compressed file is unpacked into memory, as cfitsio does, but into at
 * most TF_OPT_UNPACK_MAX_MB (4096 MiB by default). cfitsio's own open (mem_compress_open)
 * grows its buffer for as long as the stream goes on: a 9 MB gzip file of
 * a 10x10 image followed by 2 GiB of zeros took 2.2 GB and 10 s to open,
 * and deflate packs 1,000 bytes into one, so 20 MB would have asked for
 * 20 GB. The stream is read as cfitsio's mem_uncompress2mem reads it: gzip
 * by zlib, the first member only, a stream cut short giving what it holds
 * (the core then reports the missing data); names with ".Z" by cfitsio's
 * own decoder for compress, pack and LZH (zuncompress2mem).
 */
/* cfitsio's memory driver copies whole 2880-byte records, past the end of
 * a file that stops inside its last record's span (found by the sanitizer
 * replay: a header-only compressed image): a zeroed guard beyond the bytes
 * it is told about. */
#define MEMFILE_GUARD (2 * 2880)

int zuncompress2mem(char *filename, FILE *diskfile, char **buffptr, size_t *buffsize,
                    void *(*mem_realloc)(void *p, size_t newsize), size_t *filesize, int *status);

static int unpack_too_big(tf_file *f, size_t limit) {
    return tf_fail(f, TF_ELIMIT, 0,
                   "the compressed file unpacks to more than %zu MiB (the limit set by "
                   "torchfits_ops.set_unpack_max_mb or TORCHFITS_UNPACK_MAX_MB)",
                   limit >> 20);
}

/* First room for the unpacked bytes: what the gzip trailer says, as
 * cfitsio reads it, but no more than 64 times the file (a trailer can
 * lie; the block grows as the stream proves it needs more). */
static size_t unpack_first_capacity(tf_file *f, size_t limit) {
    size_t cap = (size_t)f->file_size * 3;
    unsigned char t[4];
    if (f->file_size >= 18 && pread(f->fd, t, 4, f->file_size - 4) == 4) {
        uint64_t isize = t[0] | (uint64_t)t[1] << 8 | (uint64_t)t[2] << 16 | (uint64_t)t[3] << 24;
        if (f->file_size > 10000)
            while (isize < (uint64_t)f->file_size) isize += (uint64_t)1 << 32;
        cap = (size_t)isize;
    }
    if (cap / 64 > (size_t)f->file_size) cap = (size_t)f->file_size * 64;
    if (cap > limit) cap = limit;
    return cap < 2880 ? 2880 : cap;
}

static int unpack_gzip(tf_file *f, size_t limit, unsigned char **out, size_t *len) {
    int rc = TF_OK;
    size_t cap = unpack_first_capacity(f, limit), have = 0;
    unsigned char *buf = memfile_alloc(cap), in[1 << 16];
    z_stream z = {0};
    int zinit = 0;
    GOTO_ERROR_IF(!buf, f, TF_ENOMEM, "out of memory");
    GOTO_ERROR_IF(inflateInit2(&z, 15 + 16) != Z_OK, f, TF_ENOMEM, "out of memory");
    zinit = 1;
    int64_t at = 0;
    for (int zr = Z_OK; zr != Z_STREAM_END;) {
        if (z.avail_in == 0) {
            ssize_t got = pread(f->fd, in, sizeof in, at);
            GOTO_ERROR_IF(got < 0, f, TF_EIO, "cannot read the file: %s", strerror(errno));
            if (got == 0) break; /* cut short: what it held */
            at += got;
            z.next_in = in;
            z.avail_in = (uInt)got;
        }
        if (have == cap) {
            if (cap >= limit) {
                rc = unpack_too_big(f, limit);
                goto cleanup;
            }
            size_t grown = cap > limit / 2 ? limit : cap * 2;
            unsigned char *b = memfile_resize(buf, grown);
            GOTO_ERROR_IF(!b, f, TF_ENOMEM, "out of memory");
            buf = b;
            cap = grown;
        }
        size_t room = cap - have > UINT_MAX ? UINT_MAX : cap - have;
        z.next_out = buf + have;
        z.avail_out = (uInt)room;
        zr = inflate(&z, Z_NO_FLUSH);
        have += room - z.avail_out;
        GOTO_ERROR_IF(zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR, f, TF_ENOTFITS,
                      "cannot unpack the compressed file: %s", z.msg ? z.msg : "bad stream");
    }
    *out = buf;
    *len = have;
    buf = NULL;
cleanup:
    if (zinit) inflateEnd(&z);
    memfile_free(buf);
    return rc;
}

/*
 * cfitsio's compress decoder keeps its state in globals, and tells of its
 * growth only through the realloc it is given: one unpack at a time, with
 * its arguments and results kept here. Its output routine (write_buf)
 * copies into whatever that realloc returns, NULL included (a SIGSEGV in
 * cfitsio 4.2 whenever memory runs out), so past the limit the realloc
 * does not return: it jumps back to unpack_lzw. No frame in between holds
 * a lock or an allocation, and the decoder resets its globals on each
 * call.
 */
static pthread_mutex_t lzw_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    size_t limit, cap, size;
    char *buf;   /* the block as zuncompress2mem sees it */
    void *block; /* the block the realloc last handed out */
    int st, bad, refused, nomem;
    jmp_buf back;
} lzw;

static void *lzw_realloc(void *p, size_t n) {
    if (!p || n > lzw.limit) {
        lzw.refused = 1;
        longjmp(lzw.back, 1);
    }
    size_t cap = memfile_head_of(p)->capacity;
    if (n <= cap) return p;
    cap = cap > lzw.limit / 2 ? lzw.limit : cap * 2;
    if (!(p = memfile_resize(p, cap < n ? n : cap))) {
        lzw.nomem = 1;
        longjmp(lzw.back, 1);
    }
    return lzw.block = p;
}

static int unpack_lzw(tf_file *f, size_t limit, unsigned char **out, size_t *len) {
    int fd = dup(f->fd);
    FILE *in = fd >= 0 ? fdopen(fd, "rb") : NULL;
    if (!in) {
        if (fd >= 0) close(fd);
        return tf_fail(f, TF_EOPEN, 0, "cannot open file: %s", strerror(errno));
    }
    int rc = TF_OK;
    size_t cap = unpack_first_capacity(f, limit);
    pthread_mutex_lock(&lzw_lock);
    lzw.limit = limit;
    lzw.cap = cap;
    lzw.size = 0;
    lzw.block = lzw.buf = memfile_alloc(cap);
    lzw.st = lzw.bad = lzw.refused = lzw.nomem = 0;
    /* It returns -1 without a status for a stream that is not compress's. */
    if (lzw.buf && setjmp(lzw.back) == 0)
        lzw.bad = zuncompress2mem(f->path, in, &lzw.buf, &lzw.cap, lzw_realloc, &lzw.size, &lzw.st);
    if (lzw.refused) rc = unpack_too_big(f, limit);
    else if (!lzw.block || lzw.nomem) rc = tf_fail(f, TF_ENOMEM, 0, "out of memory");
    else if (lzw.bad || lzw.st)
        rc = tf_fail(f, TF_ENOTFITS, lzw.st, "cannot unpack the compressed file");
    void *buf = lzw.block;
    size_t size = lzw.size;
    pthread_mutex_unlock(&lzw_lock);
    fclose(in);
    if (rc != TF_OK) {
        fits_clear_errmsg();
        memfile_free(buf);
        return rc;
    }
    *out = buf;
    *len = size;
    return TF_OK;
}

/* The compressed file's bytes unpacked into f->membuf, with the zeroed
 * guard after them. */
static int unpack_file(tf_file *f) {
    size_t limit = tf_option_bytes(TF_OPT_UNPACK_MAX_MB), len = 0;
    unsigned char *buf = NULL;
    FORWARD_IF_ERROR(strstr(f->path, ".Z") ? unpack_lzw(f, limit, &buf, &len)
                                           : unpack_gzip(f, limit, &buf, &len));
    /* To size: a trailer that claimed more leaves no unused room. */
    unsigned char *b = memfile_resize(buf, len + MEMFILE_GUARD);
    if (!b) {
        memfile_free(buf);
        return tf_fail(f, TF_ENOMEM, 0, "out of memory");
    }
    buf = b;
    memset(buf + len, 0, MEMFILE_GUARD);
    f->membuf = buf;
    f->membuf_size = len;
    return TF_OK;
}

void tf_close(tf_file *f) {
    if (!f) return;
    if (f->fp) {
        int st = 0;
        fits_close_file(f->fp, &st);
    }
    tf_unmap_file(f);
    if (f->fd >= 0) close(f->fd);
    memfile_free(f->membuf); /* after fits_close_file, which reads it until then */
    tf_free_cards(f);
    free(f->col_text);
    free(f->skipped);
    free(f->path);
    free(f);
}

/* Plain files up to this size are read whole and parsed from memory. */
#define MEMFILE_MAX_BYTES (64 * 1024)
/* Bytes of a larger file read for the fast open of its primary header. */
#define FAST_HEAD_BYTES (4 * 2880)

/* Compressed-file signatures that cfitsio unpacks on open. */
static int is_compressed_file(const unsigned char *m, size_t n) {
    if (n >= 2 && m[0] == 0x1f && (m[1] == 0x8b || m[1] == 0x9d || m[1] == 0xa0)) return 1;
    if (n >= 4 && m[0] == 'P' && m[1] == 'K' && m[2] == 3 && m[3] == 4) return 1;
    return 0;
}

int tf_open(tf_file *f, const char *path) {
    if (!f) return TF_EINVAL;
    if (!path) return tf_fail(f, TF_EINVAL, 0, "no path given");
    if (f->fp || f->fast_hdu0)
        return tf_fail(f, TF_EINVAL, 0, "handle already has a file open");
    f->err_hdu = -1;
    f->path = strdup(path);
    if (!f->path) return TF_ENOMEM;

    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0)
        return tf_fail(f, TF_EOPEN, 0, "cannot open file: %s", strerror(errno));
    struct stat sb;
    if (fstat(f->fd, &sb) != 0)
        return tf_fail(f, TF_EOPEN, 0, "cannot stat file: %s", strerror(errno));
    if (S_ISDIR(sb.st_mode))
        return tf_fail(f, TF_EOPEN, 0, "cannot open file: it is a directory");
    f->file_size = (int64_t)sb.st_size;

    /* One read gives the magic and, for the fast open, the first blocks,
     * which hold every common primary header. */
    char head[FAST_HEAD_BYTES];
    size_t want = f->file_size < (int64_t)sizeof head ? (size_t)f->file_size : sizeof head;
    ssize_t got = want ? pread(f->fd, head, want, 0) : 0;
    if (got <= 0) return tf_fail(f, TF_ENOTFITS, 0, "not a FITS file: the file is empty");
    const unsigned char *magic = (const unsigned char *)head;

    int plain = got >= 9 && memcmp(magic, "SIMPLE  =", 9) == 0;
    if (!plain) {
        if (!is_compressed_file(magic, (size_t)got))
            return tf_fail(f, TF_ENOTFITS, 0,
                           "not a FITS file: it does not begin with the SIMPLE keyword");
        /* Unpacked into memory; our descriptor has no use then. */
        int rc = unpack_file(f);
        close(f->fd);
        f->fd = -1;
        FORWARD_IF_ERROR(rc);
    }

    f->plain = plain;
    if (plain && f->file_size <= MEMFILE_MAX_BYTES) {
        /* Small files: read whole; the header is parsed from these bytes,
         * and cfitsio, when needed, parses them from memory too:
         * fits_open_diskfile opens the file twice (once to look for gzip)
         * and reads it through stdio. */
        f->membuf_size = (size_t)f->file_size;
        f->membuf = memfile_alloc(f->membuf_size + MEMFILE_GUARD);
        if (!f->membuf) return tf_fail(f, TF_ENOMEM, 0, "out of memory");
        memcpy(f->membuf, head, (size_t)got);
        if ((size_t)got < f->membuf_size)
            FORWARD_IF_ERROR(tf_pread_full(f, (char *)f->membuf + got,
                                           f->membuf_size - (size_t)got, got));
        f->fast_hdu0 = tf_fast_primary(f, f->membuf, f->membuf_size);
    } else if (plain) {
        f->fast_hdu0 = tf_fast_primary(f, head, (size_t)got);
    }
    if (f->fast_hdu0) return TF_OK; /* cfitsio opens on first need */
    /* What the fast open declined goes to cfitsio: first the checks run on
     * every other header before cfitsio parses it; an unpacked file's too
     * (its primary header reached cfitsio unchecked: NAXIS = 104 crashed
     * it in a .fits.gz). */
    if (plain || f->membuf)
        FORWARD_IF_ERROR(tf_guard_primary(f, f->membuf ? (const char *)f->membuf : head,
                                          f->membuf ? f->membuf_size : (size_t)got));
    return tf_need_fits(f);
}

int tf_need_fits(tf_file *f) {
    if (f->fp) return TF_OK;
    int st = 0;
    if (f->membuf) {
        fits_open_memfile(&f->fp, f->path, READONLY, &f->membuf, &f->membuf_size, 0,
                          memfile_realloc, &st);
        if (st && !f->plain && memfile_head_of(f->membuf)->refused) {
            /* cfitsio wanted the file longer (a header claims more data
             * than there is), which it would have filled with zeros. */
            fits_clear_errmsg();
            f->fp = NULL;
            return tf_fail(f, TF_ECORRUPT, 0,
                           "file is truncated: a header claims more data than the unpacked file holds");
        }
        if (st && memfile_head_of(f->membuf)->refused) {
            /* The same in a plain file: open it from disk, which reports
             * that. */
            fits_clear_errmsg();
            memfile_free(f->membuf);
            f->membuf = NULL;
            st = 0;
            fits_open_diskfile(&f->fp, f->path, READONLY, &st);
        }
    } else {
        fits_open_diskfile(&f->fp, f->path, READONLY, &st);
    }
    if (st) {
        f->fp = NULL;
        f->fast_hdu0 = 0; /* cfitsio refused what the fast open took: trust it */
        if (st == FILE_NOT_OPENED && !f->plain)
            return tf_fail(f, TF_ENOTFITS, st, "cannot open compressed file as FITS");
        return tf_fail(f, f->plain ? TF_ECORRUPT : TF_ENOTFITS, st,
                       "cannot read the primary header");
    }
    return TF_OK;
}

/* A fast-opened file that ends exactly where HDU 0's data, padded to
 * whole blocks, ends holds that one HDU, as cfitsio counts: no need to
 * open cfitsio to count (a FitsFile of a survey image asks). */
static int only_hdu0(const tf_file *f) {
    if (!f->fast_hdu0 || !f->plain) return 0;
    const tf_hdu_info *h = &f->fast_info;
    int64_t bytes = h->ndim > 0 ? (int64_t)tf_dtype_size(h->raw_dtype) : 0;
    for (int d = 0; d < h->ndim; d++)
        if (!tf_mul_ok(bytes, h->shape[d], &bytes)) return 0;
    return f->fast_data_offset + (bytes + 2879) / 2880 * 2880 == f->file_size;
}

/* cfitsio's count of the HDUs (fits_get_num_hdus: from its current HDU
 * on, up to the first it cannot read), after tf_guard_headers has walked
 * them all; a cfitsio status. It must not read a skipped HDU (guard.c):
 * it counts on from the HDU after the last one, and the last one is the
 * last HDU when nothing follows it. */
static int count_hdus(tf_file *f, int *count) {
    int st = 0, last = -1;
    for (int i = 0; i < f->nskipped; i++)
        if (f->skipped[i].hdu > last) last = f->skipped[i].hdu;
    if (last >= 0) {
        fits_movabs_hdu(f->fp, last + 2, NULL, &st); /* HDU last + 1, 0-based */
        f->cf_stale = 1;
        if (st) {
            fits_clear_errmsg();
            *count = last + 1;
            return 0;
        }
    }
    fits_get_num_hdus(f->fp, count, &st);
    f->cf_stale = 1;
    return st;
}

int tf_num_hdus(tf_file *f, int *n) {
    FORWARD_IF_ERROR(tf_check_handle_lazy(f));
    if (f->num_hdus < 0 && only_hdu0(f)) f->num_hdus = 1;
    if (f->num_hdus < 0) {
        FORWARD_IF_ERROR(tf_check_handle(f));
        int count = 0;
        FORWARD_IF_ERROR(tf_guard_headers(f, INT_MAX));
        int st = count_hdus(f, &count);
        RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "cannot count HDUs");
        f->num_hdus = count;
    }
    *n = f->num_hdus;
    return TF_OK;
}

/*
 * cfitsio frees the current HDU's description before it reads the next
 * header, and when that header is damaged it goes back to the old HDU
 * number without reading it again (ffmahd -> ffgext). fits_get_num_hdus
 * and fits_movnam_hdu walk the file that way and then "return" to the old
 * HDU, which is a no-op; a later call then reads through the freed
 * description (fuzzer: NULL in ffpscl). After any such walk the current
 * header is read again before it is used.
 */
int ffchdu(fitsfile *fptr, int *status);
int ffgext(fitsfile *fptr, int hdunum, int *exttype, int *status);

static int reload_if_stale(tf_file *f) {
    if (!f->cf_stale) return TF_OK;
    int st = 0, type = 0;
    f->cf_stale = 0;
    ffchdu(f->fp, &st);
    ffgext(f->fp, f->fp->Fptr->curhdu, &type, &st);
    if (st) f->cf_stale = 1;
    RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "cannot read the header again");
    return TF_OK;
}

int tf_move_to(tf_file *f, int hdu, int *hdutype) {
    int st = 0, type = 0;
    if (hdu < 0) return tf_fail(f, TF_ENOHDU, 0, "HDU %d does not exist", hdu);
    FORWARD_IF_ERROR(tf_guard_headers(f, hdu));
    const tf_skip *skipped = tf_skipped(f, hdu);
    if (skipped) return tf_fail_skipped(f, skipped);
    FORWARD_IF_ERROR(reload_if_stale(f));
    fits_movabs_hdu(f->fp, hdu + 1, &type, &st);
    if (st) f->cf_stale = 1;
    if (st == END_OF_FILE || st == BAD_HDU_NUM) {
        fits_clear_errmsg();
        int count = 0, st2 = count_hdus(f, &count);
        fits_clear_errmsg();
        if (st2 == 0)
            return tf_fail(f, TF_ENOHDU, 0, "HDU %d does not exist (the file has %d HDU%s)",
                           hdu, count, count == 1 ? "" : "s");
        return tf_fail(f, TF_ENOHDU, 0, "HDU %d does not exist", hdu);
    }
    f->err_hdu = hdu;
    RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "cannot read the header");
    /* cfitsio describes an image with data, or a table with columns, in
     * tableptr; a damaged header seen through another handle on the same
     * file (cfitsio shares one FITSfile per path) can leave it NULL
     * (fuzzer: NULL in ffpscl). */
    const FITSfile *F = f->fp->Fptr;
    RETURN_ERROR_IF(!F->tableptr && (type == IMAGE_HDU ? F->imgdim > 0 : F->tfield > 0), f,
                    TF_ECORRUPT, "cannot read the header: cfitsio could not describe the HDU");
    if (hdutype) *hdutype = type;
    return TF_OK;
}

/* A string keyword of the current HDU into out ("" when absent). */
static int key_string(tf_file *f, const char *key, char *out) {
    int st = 0;
    out[0] = 0;
    fits_read_key_str(f->fp, key, out, NULL, &st);
    if (st == KEY_NO_EXIST) { fits_clear_errmsg(); out[0] = 0; return TF_OK; }
    RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "bad %s keyword", key);
    return TF_OK;
}

/* fits_movnam_hdu's search (EXTNAME, else HDUNAME, ignoring case; EXTVER
 * 1 when absent; extver 0 matches any) over every HDU, the skipped ones
 * by their raw cards. *index -1 when none matches. */
static int find_by_walk(tf_file *f, const char *extname, int extver, int *index) {
    int n = 0, st = 0;
    *index = -1;
    FORWARD_IF_ERROR(tf_num_hdus(f, &n));
    for (int k = 0; k < n; k++) {
        char name[FLEN_VALUE], alt[FLEN_VALUE];
        long ver = 1;
        const tf_skip *s = tf_skipped(f, k);
        if (s) {
            snprintf(name, sizeof name, "%s", s->extname);
            snprintf(alt, sizeof alt, "%s", s->hduname);
            ver = s->extver;
        } else {
            FORWARD_IF_ERROR(tf_move_to(f, k, NULL));
            FORWARD_IF_ERROR(key_string(f, "EXTNAME", name));
            FORWARD_IF_ERROR(key_string(f, "HDUNAME", alt));
            fits_read_key_lng(f->fp, "EXTVER", &ver, NULL, &st);
            if (st) { fits_clear_errmsg(); st = 0; ver = 1; }
        }
        int match = (name[0] && strcasecmp(name, extname) == 0) ||
                    (alt[0] && strcasecmp(alt, extname) == 0);
        if (match && (extver == 0 || ver == extver)) {
            *index = k;
            return TF_OK;
        }
    }
    return TF_OK;
}

int tf_find_hdu(tf_file *f, const char *extname, int extver, int *index) {
    FORWARD_IF_ERROR(tf_check_handle(f));
    if (!extname || !index) return tf_fail(f, TF_EINVAL, 0, "no EXTNAME given");
    if (extver < 0) return tf_fail(f, TF_EINVAL, 0, "EXTVER %d is negative", extver);
    if (strlen(extname) >= FLEN_VALUE)
        return tf_fail(f, TF_ENOHDU, 0, "no HDU with EXTNAME '%.40s...'", extname);
    char name[FLEN_VALUE];
    strcpy(name, extname);
    int st = 0;
    FORWARD_IF_ERROR(tf_guard_headers(f, INT_MAX));
    if (f->nskipped) {
        /* cfitsio's search reads every header from the first: it must not
         * meet a skipped HDU. */
        int found = -1;
        FORWARD_IF_ERROR(find_by_walk(f, extname, extver, &found));
        if (found >= 0) {
            *index = found;
            return TF_OK;
        }
        st = BAD_HDU_NUM;
    } else {
        FORWARD_IF_ERROR(reload_if_stale(f));
        fits_movnam_hdu(f->fp, ANY_HDU, name, extver, &st);
        f->cf_stale = 1;
    }
    if (st == BAD_HDU_NUM || st == END_OF_FILE) {
        fits_clear_errmsg();
        /* astropy's name for a primary HDU without EXTNAME */
        if (strcasecmp(extname, "PRIMARY") == 0 && extver <= 1) {
            *index = 0;
            return TF_OK;
        }
        if (extver)
            return tf_fail(f, TF_ENOHDU, 0, "no HDU with EXTNAME '%s' and EXTVER %d",
                           extname, extver);
        return tf_fail(f, TF_ENOHDU, 0, "no HDU with EXTNAME '%s'", extname);
    }
    RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "cannot search for EXTNAME '%s'", extname);
    int num = 0;
    fits_get_hdu_num(f->fp, &num);
    *index = num - 1;
    return TF_OK;
}

/* Read a double keyword, keeping `*v` when it is absent. */
static int key_double(tf_file *f, const char *key, double *v) {
    int st = 0;
    double x;
    fits_read_key_dbl(f->fp, key, &x, NULL, &st);
    if (st == KEY_NO_EXIST) { fits_clear_errmsg(); return TF_OK; }
    RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "bad %s keyword", key);
    *v = x;
    return TF_OK;
}

tf_dtype tf_stored_dtype(int bitpix) {
    switch (bitpix) {
    case BYTE_IMG: return TF_UINT8;
    case SHORT_IMG: return TF_INT16;
    case LONG_IMG: return TF_INT32;
    case LONGLONG_IMG: return TF_INT64;
    case FLOAT_IMG: return TF_FLOAT32;
    case DOUBLE_IMG: return TF_FLOAT64;
    default: return TF_DTYPE_AUTO;
    }
}

/* The documented dtype table: exact unsigned conventions, else floats.
 * Table columns use it too (B 8, I 16, J 32, K 64, E -32, D -64). */
tf_dtype tf_natural_dtype(int bitpix, double bscale, double bzero) {
    int unscaled = bscale == 1.0 && bzero == 0.0;
    switch (bitpix) {
    case BYTE_IMG:
        if (unscaled) return TF_UINT8;
        if (bscale == 1.0 && bzero == -128.0) return TF_INT8;
        return TF_FLOAT32;
    case SHORT_IMG:
        if (unscaled) return TF_INT16;
        if (bscale == 1.0 && bzero == 32768.0) return TF_UINT16;
        return TF_FLOAT32;
    case LONG_IMG:
        if (unscaled) return TF_INT32;
        if (bscale == 1.0 && bzero == 2147483648.0) return TF_UINT32;
        return TF_FLOAT64;
    case LONGLONG_IMG:
        return unscaled ? TF_INT64 : TF_FLOAT64;
    case FLOAT_IMG: return TF_FLOAT32;
    case DOUBLE_IMG: return TF_FLOAT64;
    default: return TF_DTYPE_AUTO;
    }
}

static int hdu_info_load(tf_file *f, int hdu, int type, tf_hdu_info *info);

/* The last HDU described is cached: a read asks twice (for the output's
 * size, then to fill it), and each description is some ten keyword
 * searches through the header. cfitsio is still moved to the HDU. */
int tf_hdu_info_get(tf_file *f, int hdu, tf_hdu_info *info) {
    FORWARD_IF_ERROR(tf_check_handle_lazy(f));
    if (!info) return tf_fail(f, TF_EINVAL, 0, "no info struct given");
    if (hdu == 0 && f->fast_hdu0) {
        f->err_hdu = 0;
        *info = f->fast_info;
        return TF_OK;
    }
    FORWARD_IF_ERROR(tf_need_fits(f));
    return tf_hdu_info_cfitsio(f, hdu, info);
}

int tf_hdu_info_cfitsio(tf_file *f, int hdu, tf_hdu_info *info) {
    int type = 0, rc = tf_move_to(f, hdu, &type);
    const tf_skip *s = rc == TF_EUNSUPPORTED ? tf_skipped(f, hdu) : NULL;
    if (s) { /* what its raw cards tell, for a listing */
        memset(info, 0, sizeof *info);
        info->index = hdu;
        info->kind = TF_HDU_IMAGE;
        info->bitpix = s->bitpix;
        info->bscale = 1.0;
        info->extver = s->extver;
        snprintf(info->extname, sizeof info->extname, "%s", s->extname);
        for (char *c = info->extname; *c; c++)
            if ((unsigned char)*c < 32 || (unsigned char)*c > 126) *c = '?';
    }
    FORWARD_IF_ERROR(rc);
    if (f->info_valid && f->info_cache.index == hdu) {
        *info = f->info_cache;
        return TF_OK;
    }
    FORWARD_IF_ERROR(hdu_info_load(f, hdu, type, info));
    f->info_cache = *info;
    f->info_valid = 1;
    return TF_OK;
}

/* The optional keywords an HDU description looks up. */
enum { K_EXTNAME = 1, K_EXTVER = 2, K_BSCALE = 4, K_BZERO = 8, K_BLANK = 16, K_ALL = 31 };

/* Which of them may be in the current header, in one pass over the cards
 * (fits_read_record only copies a card), so that absent keywords, the
 * usual case, cost no full search with cfitsio's keyword parser each: that
 * was ~25 us of a ~60 us small read. A superset of cfitsio's matches: a
 * card counts when it starts with the name, case aside, followed by no
 * keyword character, behind "HIERARCH " too (cfitsio's lookup finds
 * "HIERARCH BSCALE = 0" for BSCALE, and its tile reader scaled by it while
 * the description said 1: header variants); cfitsio's own lookup then
 * decides. */
static int keys_present(tf_file *f) {
    static const struct { const char *name; int bit; } keys[] = {
        {"EXTNAME", K_EXTNAME}, {"EXTVER", K_EXTVER}, {"BSCALE", K_BSCALE},
        {"BZERO", K_BZERO}, {"BLANK", K_BLANK}};
    int nkeys = 0, st = 0, found = 0;
    char card[FLEN_CARD];
    fits_get_hdrspace(f->fp, &nkeys, NULL, &st);
    for (int i = 1; st == 0 && i <= nkeys && found != K_ALL; i++) {
        fits_read_record(f->fp, i, card, &st);
        const char *name = card;
        if (strncmp(card, "HIERARCH ", 9) == 0)
            for (name += 9; *name == ' '; name++) {}
        for (size_t k = 0; st == 0 && k < sizeof keys / sizeof keys[0]; k++) {
            size_t n = strlen(keys[k].name);
            if (strncasecmp(name, keys[k].name, n) != 0) continue;
            char next = name[n];
            if (!(isalnum((unsigned char)next) || next == '-' || next == '_')) found |= keys[k].bit;
        }
    }
    if (st) { /* let the lookups below decide, and report */
        fits_clear_errmsg();
        return K_ALL;
    }
    return found;
}

static int hdu_info_load(tf_file *f, int hdu, int type, tf_hdu_info *info) {
    int st = 0;
    const int present = keys_present(f);
    memset(info, 0, sizeof *info);
    info->index = hdu;
    info->bscale = 1.0;
    info->extver = 1;
    info->dtype = info->raw_dtype = TF_DTYPE_AUTO;

    char extname[FLEN_VALUE] = "";
    if (present & K_EXTNAME) fits_read_key_str(f->fp, "EXTNAME", extname, NULL, &st);
    if (st == KEY_NO_EXIST) { st = 0; fits_clear_errmsg(); extname[0] = 0; }
    RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "bad EXTNAME keyword");
    snprintf(info->extname, sizeof info->extname, "%s", extname);
    for (char *c = info->extname; *c; c++)  /* ASCII only, as in header.c */
        if ((unsigned char)*c < 32 || (unsigned char)*c > 126) *c = '?';
    long extver = 1;
    if (present & K_EXTVER) fits_read_key_lng(f->fp, "EXTVER", &extver, NULL, &st);
    if (st == KEY_NO_EXIST) { st = 0; fits_clear_errmsg(); extver = 1; }
    RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "bad EXTVER keyword");
    info->extver = (int)extver;

    if (type == ASCII_TBL || type == BINARY_TBL) {
        info->kind = type == ASCII_TBL ? TF_HDU_ASCII_TABLE : TF_HDU_BINARY_TABLE;
        LONGLONG nrows = 0;
        int ncols = 0;
        fits_get_num_rowsll(f->fp, &nrows, &st);
        fits_get_num_cols(f->fp, &ncols, &st);
        RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "bad table header");
        info->nrows = nrows;
        info->ncols = ncols;
        return TF_OK;
    }

    info->kind = TF_HDU_IMAGE;
    info->compressed = fits_is_compressed_image(f->fp, &st);
    RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "bad compressed-image header");
    int bitpix = 0, naxis = 0;
    LONGLONG naxes[TF_MAX_DIMS] = {0};
    fits_get_img_dim(f->fp, &naxis, &st);
    RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "bad NAXIS keyword");
    RETURN_ERROR_IF(naxis < 0, f, TF_ECORRUPT, "NAXIS = %d is negative", naxis);
    /* The first TF_MAX_DIMS axes (cfitsio fills no more). */
    fits_get_img_paramll(f->fp, TF_MAX_DIMS, &bitpix, &naxis, naxes, &st);
    RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "bad image header");
    /* Valid FITS this reader does not read: the HDU is described as far
     * as it goes (index, kind, EXTNAME, EXTVER, BITPIX) for a listing,
     * and the handle stays usable for the other HDUs. */
    info->bitpix = bitpix;
    if (!info->compressed && naxis >= 1 && naxes[0] == 0) {
        int groups = 0;
        fits_read_key_log(f->fp, "GROUPS", &groups, NULL, &st);
        if (st) { st = 0; fits_clear_errmsg(); groups = 0; }
        RETURN_ERROR_IF(groups, f, TF_EUNSUPPORTED,
                        "random groups (GROUPS = T, NAXIS1 = 0) are not supported");
    }
    RETURN_ERROR_IF(naxis > TF_MAX_DIMS, f, TF_EUNSUPPORTED,
                    "NAXIS = %d: this reader reads images of at most %d axes", naxis,
                    TF_MAX_DIMS);
    if (!info->compressed) {
        /* An image has no heap and one group; anything else (a table
         * relabelled IMAGE, random groups) has data this reader would
         * misplace. Found by the fuzzer: the two read paths disagreed. */
        LONGLONG pcount = 0, gcount = 1;
        fits_read_key_lnglng(f->fp, "PCOUNT", &pcount, NULL, &st);
        if (st == KEY_NO_EXIST) { st = 0; fits_clear_errmsg(); pcount = 0; }
        fits_read_key_lnglng(f->fp, "GCOUNT", &gcount, NULL, &st);
        if (st == KEY_NO_EXIST) { st = 0; fits_clear_errmsg(); gcount = 1; }
        RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "bad PCOUNT or GCOUNT keyword");
        RETURN_ERROR_IF(pcount != 0 || gcount != 1, f, TF_ECORRUPT,
                        "PCOUNT = %lld, GCOUNT = %lld: an image needs 0 and 1",
                        (long long)pcount, (long long)gcount);
    }
    info->bitpix = bitpix;
    info->ndim = naxis;
    for (int i = 0; i < naxis; i++) {
        RETURN_ERROR_IF(naxes[i] < 0, f, TF_ECORRUPT, "NAXIS%d = %lld is negative",
                        i + 1, (long long)naxes[i]);
        info->shape[naxis - 1 - i] = naxes[i];
    }
    if (present & K_BSCALE) FORWARD_IF_ERROR(key_double(f, "BSCALE", &info->bscale));
    if (present & K_BZERO) FORWARD_IF_ERROR(key_double(f, "BZERO", &info->bzero));
    RETURN_ERROR_IF(info->bscale == 0.0, f, TF_ECORRUPT, "BSCALE is 0");
    /* BLANK matters only to an integer image with pixels. Elsewhere (an
     * empty primary HDU with BLANK = -1 on BITPIX 8, as real archives
     * write) it is not looked at: a keyword that cannot matter does not
     * make the file unreadable. The guard has already refused a value
     * that is not a number (cfitsio's integer parser aborts on some). */
    int has_pixels = naxis > 0;
    for (int i = 0; i < naxis; i++) has_pixels &= naxes[i] > 0;
    if (bitpix > 0 && has_pixels && (present & K_BLANK)) {
        LONGLONG blank = 0;
        fits_read_key_lnglng(f->fp, "BLANK", &blank, NULL, &st);
        if (st == KEY_NO_EXIST) { st = 0; fits_clear_errmsg(); }
        else {
            RETURN_IF_CFITSIO(st, f, TF_ECORRUPT, "bad BLANK keyword");
            /* A BLANK that BITPIX cannot hold (BITPIX 8 with BLANK = -1 or
             * 300) equals no stored value: the image reads as if it had
             * none, as astropy reads it (no pixel NaN) and fitsio (no null
             * check on images). cfitsio, asked to check nulls, skips such
             * a BLANK on BITPIX 8 and 16 but compares a BITPIX 32 one cut
             * to 32 bits (2^32 - 1 made every -1 NaN); both read paths
             * ask it only where has_blank is set. The fast open takes the
             * same view (guard.c). */
            int64_t lo, hi;
            if (!tf_int_range(tf_stored_dtype(bitpix), &lo, &hi) ||
                (blank >= lo && blank <= hi)) {
                info->has_blank = 1;
                info->blank = blank;
            }
        }
    }
    info->raw_dtype = tf_stored_dtype(bitpix);
    RETURN_ERROR_IF(info->raw_dtype == TF_DTYPE_AUTO, f, TF_ECORRUPT, "BITPIX = %d is not valid",
                    bitpix);
    info->dtype = tf_natural_dtype(bitpix, info->bscale, info->bzero);
    return TF_OK;
}
