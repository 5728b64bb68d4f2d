/*
 * fuzz_walk.c - drive every public call of the core over one file.
 *
 * The core opens paths, so bytes from the fuzzer go to a memfd and are
 * opened as /proc/self/fd/N: no disk, no cleanup, nothing left behind when
 * a case crashes (but one link, for the names that end in .Z). One walker per HDU kind: images (full reads and cutouts,
 * fast path against cfitsio) and tables (every column, VLAs included, a
 * random window of rows, fast path against cfitsio).
 */
#define _GNU_SOURCE
#include "fuzz_walk.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../csrc/core/torchfits_core.h"

#define DOT_Z_DIR "/tmp/torchfits-fuzz.Z"

/* splitmix64: cutouts depend only on the input, so a crash replays. */
static uint64_t next_rand(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

typedef struct walk {
    const char *path;
    tf_file *f;
    uint64_t rng;
    uint64_t size;  /* bytes in the file; 0 when gzip-compressed */
} walk;

static void die(const walk *w, const char *what, int rc) {
    fprintf(stderr, "fuzz_walk: %s: %s (%s): %s\n", w->path, what, tf_strerror(rc),
            w->f ? tf_errmsg(w->f) : "");
    abort();
}

/* Every status is a known code, and every error message names the file. */
static int check(walk *w, int rc, const char *what) {
    if (rc < TF_OK || rc > TF_EPOISONED) die(w, "unknown status code", rc);
    if (rc != TF_OK && rc != TF_ENOMEM && !strstr(tf_errmsg(w->f), w->path))
        die(w, what, rc);
    return rc;
}

/* A corrupt file poisons the handle; open a fresh one to go on walking. */
static int reopen_if_poisoned(walk *w, int rc) {
    if (rc != TF_ECORRUPT && rc != TF_EPOISONED) return 1;
    tf_close(w->f);
    w->f = tf_create();
    if (!w->f) return 0;
    return check(w, tf_open(w->f, w->path), "reopen") == TF_OK;
}

/* Read `req` (NULL: whole image). Returns a malloc'd buffer or NULL. */
static void *read_region(walk *w, int hdu, const tf_image_request *req, size_t *bytes,
                         tf_dtype *dt_out) {
    tf_dtype dt;
    int nd;
    int64_t shape[TF_MAX_DIMS];
    int rc = check(w, tf_image_output(w->f, hdu, req, &dt, &nd, shape), "image_output");
    if (rc != TF_OK) return NULL;
    if (nd < 1 || nd > TF_MAX_DIMS) die(w, "image_output gave a bad ndim", TF_OK);
    size_t n = tf_dtype_size(dt);
    if (n == 0) die(w, "image_output gave a bad dtype", TF_OK);
    for (int d = 0; d < nd; d++) {
        if (shape[d] < 0) die(w, "image_output gave a negative extent", TF_OK);
        if (shape[d] && n > FUZZ_MAX_OUT_BYTES / (size_t)shape[d]) return NULL;
        n *= (size_t)shape[d];
    }
    /* The core checks a claim against the file before the caller
     * allocates: at most 8 output bytes per stored byte (uint8 to float64
     * does not happen; int16 to float32 is 2), or the compression limit. */
    tf_hdu_info info;
    if (tf_hdu_info_get(w->f, hdu, &info) == TF_OK && !info.compressed && w->size && n / 8 > w->size)
        die(w, "image_output allowed more than the file could hold", TF_OK);
    if (n > FUZZ_MAX_OUT_BYTES) return NULL;
    void *buf = malloc(n ? n : 1);
    if (!buf) return NULL;
    /* A wrong size must be refused, never written past. */
    if (n > 0 && check(w, tf_image_read(w->f, hdu, req, buf, n - 1), "short buffer") != TF_EBUFSIZE)
        die(w, "a short buffer was not refused", TF_OK);
    rc = check(w, tf_image_read(w->f, hdu, req, buf, n), "image_read");
    if (rc != TF_OK) {
        free(buf);
        reopen_if_poisoned(w, rc);
        return NULL;
    }
    *bytes = n;
    *dt_out = dt;
    return buf;
}

/* Equal, but for two known differences of cfitsio's float conversion
 * (see README, Reliability): it writes its own NaN for any NaN, and flushes
 * subnormal floats and -0 to 0 where the fast path keeps them. */
#define SAME_FLOATS(T)                                                                 \
    do {                                                                               \
        const T *x = a, *y = b;                                                        \
        for (size_t i = 0; i < n / sizeof(T); i++)                                     \
            if (memcmp(&x[i], &y[i], sizeof(T)) != 0 && !(isnan(x[i]) && isnan(y[i])) && \
                !(y[i] == 0 && (x[i] == 0 || fpclassify(x[i]) == FP_SUBNORMAL)))       \
                return 0;                                                              \
        return 1;                                                                      \
    } while (0)

static int same_values(const void *a, const void *b, size_t n, tf_dtype dt) {
    if (memcmp(a, b, n) == 0) return 1;
    if (dt == TF_FLOAT32) SAME_FLOATS(float);
    if (dt == TF_FLOAT64) SAME_FLOATS(double);
    return 0;
}

/* Whether the scaled float values a (fast path) and b (cfitsio) differ
 * only where the stored float is subnormal or infinite: cfitsio flushes a
 * subnormal stored value to 0 and makes an infinite one NaN before it
 * scales (README, Reliability); the fast path scales what is stored. */
#define FLUSHED_ONLY(S, T)                                                        \
    do {                                                                          \
        const S *st = stored;                                                     \
        const T *x = a, *y = b;                                                   \
        for (size_t i = 0; i < n / sizeof(T); i++)                                \
            if (memcmp(&x[i], &y[i], sizeof(T)) != 0 && !(isnan(x[i]) && isnan(y[i])) && \
                fpclassify(st[i]) != FP_SUBNORMAL && !isinf(st[i]))               \
                ok = 0;                                                           \
    } while (0)

static int flushed_only(walk *w, int hdu, const tf_image_request *req, const void *a,
                        const void *b, size_t n, tf_dtype dt) {
    if (req->raw || (dt != TF_FLOAT32 && dt != TF_FLOAT64)) return 0;
    tf_image_request raw = *req;
    raw.raw = 1;
    raw.path = TF_PATH_AUTO;
    size_t nr = 0;
    tf_dtype dr = TF_DTYPE_AUTO;
    void *stored = read_region(w, hdu, &raw, &nr, &dr);
    int ok = stored && nr / tf_dtype_size(dr) == n / tf_dtype_size(dt);
    if (ok && dr == TF_FLOAT32 && dt == TF_FLOAT32) FLUSHED_ONLY(float, float);
    else if (ok && dr == TF_FLOAT32 && dt == TF_FLOAT64) FLUSHED_ONLY(float, double);
    else if (ok && dr == TF_FLOAT64 && dt == TF_FLOAT64) FLUSHED_ONLY(double, double);
    else if (ok && dr == TF_FLOAT64 && dt == TF_FLOAT32) FLUSHED_ONLY(double, float);
    else ok = 0;
    free(stored);
    return ok;
}

/* The same region through the fast path and through cfitsio: where both
 * succeed the values must agree. */
static void read_both_paths(walk *w, int hdu, tf_image_request *req) {
    size_t n1 = 0, n2 = 0;
    tf_dtype d1 = TF_DTYPE_AUTO, d2 = TF_DTYPE_AUTO;
    req->path = TF_PATH_AUTO;
    void *a = read_region(w, hdu, req, &n1, &d1);
    if (!w->f) { free(a); return; }
    req->path = TF_PATH_CFITSIO;
    void *b = read_region(w, hdu, req, &n2, &d2);
    if (a && b && (n1 != n2 || d1 != d2 ||
                   (!same_values(a, b, n1, d1) && !flushed_only(w, hdu, req, a, b, n1, d1))))
        die(w, "read paths disagree", TF_OK);
    /* HDU 0 of a plain file may be read with no cfitsio at all (the fast
     * open parses its header): what it reads, cfitsio must read too. */
    if (hdu == 0 && w->size && a && !b && w->f)
        die(w, "the fast path read what cfitsio refused", TF_OK);
    free(a);
    free(b);
}

static void walk_image(walk *w, int hdu, const tf_hdu_info *info) {
    if (info->ndim < 1) return;
    tf_image_request req;
    for (int raw = 0; raw < 2 && w->f; raw++) {
        memset(&req, 0, sizeof req);
        req.raw = raw;
        req.threads = 1 + (int)(next_rand(&w->rng) % 3);
        read_both_paths(w, hdu, &req);
    }
    /* Cutouts: mostly inside the image, sometimes past its edge. */
    for (int k = 0; k < 3 && w->f; k++) {
        memset(&req, 0, sizeof req);
        req.ndim = info->ndim;
        req.raw = (int)(next_rand(&w->rng) & 1);
        for (int d = 0; d < info->ndim; d++) {
            int64_t n = info->shape[d] > 0 ? info->shape[d] : 1;
            uint64_t r = next_rand(&w->rng);
            req.start[d] = (int64_t)(r % (uint64_t)n);
            req.step[d] = 1 + (int64_t)((r >> 20) % 3);
            int64_t left = (n - req.start[d] + req.step[d] - 1) / req.step[d];
            req.count[d] = 1 + (int64_t)((r >> 40) % (uint64_t)(left < 64 ? left : 64));
            if ((r >> 60) == 0) req.count[d] += 1;  /* one past the edge */
        }
        read_both_paths(w, hdu, &req);
    }
}

/* One table read: the columns' buffers sized as the shim sizes them
 * (fixed: rows x shape; VLA: the total tf_table_vla_size gives), filled
 * through `path`. Returns the number of columns read (0: skipped or
 * refused); outs[] then own their buffers. */
static int read_columns(walk *w, int hdu, int ncols, int64_t start, int64_t rows,
                        tf_read_path path, tf_table_out *outs, tf_column_info *infos) {
    int n = 0;
    for (int c = 0; c < ncols && n < FUZZ_MAX_COLS; c++) {
        tf_column_info *ci = &infos[n];
        int rc = check(w, tf_table_column(w->f, hdu, c, ci), "table_column");
        if (rc != TF_OK) {
            if (!reopen_if_poisoned(w, rc)) goto fail_n;
            continue;
        }
        size_t esize = tf_dtype_size(ci->dtype);
        if (esize == 0) die(w, "table_column gave a bad dtype", TF_OK);
        tf_table_out *o = &outs[n];
        memset(o, 0, sizeof *o);
        o->col = c;
        uint64_t elems = 1;
        if (ci->kind == TF_COL_VLA) {
            int64_t nelem = -1;
            rc = check(w, tf_table_vla_size(w->f, hdu, c, start, rows, &nelem), "vla_size");
            if (rc != TF_OK) {
                if (!reopen_if_poisoned(w, rc)) goto fail_n;
                continue;
            }
            if (nelem < 0) die(w, "vla_size gave a negative count", TF_OK);
            elems = (uint64_t)nelem;
            o->offsets_bytes = (size_t)(rows + 1) * sizeof(int64_t);
            o->offsets = malloc(o->offsets_bytes);
            if (!o->offsets) continue;
        } else {
            elems = (uint64_t)rows;
            for (int d = 0; d < ci->ndim; d++) {
                if (ci->shape[d] < 0) die(w, "table_column gave a negative extent", TF_OK);
                if (ci->shape[d] && elems > FUZZ_MAX_OUT_BYTES / (uint64_t)ci->shape[d]) {
                    elems = UINT64_MAX;
                    break;
                }
                elems *= (uint64_t)ci->shape[d];
            }
        }
        if (elems > FUZZ_MAX_OUT_BYTES / esize) { free(o->offsets); continue; }
        o->data_bytes = (size_t)(elems * esize);
        /* Fixed columns come from the rows: never more output than the
         * file could hold (8 bools per stored byte of an X column). */
        if (ci->kind != TF_COL_VLA && w->size && o->data_bytes / 8 > w->size)
            die(w, "a column larger than the file could hold", TF_OK);
        o->data = malloc(o->data_bytes ? o->data_bytes : 1);
        if (!o->data) { free(o->offsets); continue; }
        n++;
    }
    if (n == 0) return 0;
    /* The sizes the shim takes from tf_table_output: the same as above,
     * and the total within what the file could hold (8 output bytes per
     * stored byte at most; variable-length arrays that share heap bytes
     * are refused past that, TF_ELIMIT). */
    tf_table_out sized[FUZZ_MAX_COLS];
    for (int i = 0; i < n; i++) sized[i] = (tf_table_out){.col = outs[i].col};
    int rc0 = check(w, tf_table_output(w->f, hdu, start, rows, sized, n), "table_output");
    if (rc0 != TF_OK) {
        if (rc0 != TF_ELIMIT) reopen_if_poisoned(w, rc0);
        goto fail_n;
    }
    uint64_t total = 0;
    for (int i = 0; i < n; i++) {
        if (sized[i].data_bytes != outs[i].data_bytes ||
            sized[i].offsets_bytes != (outs[i].offsets ? outs[i].offsets_bytes : 0))
            die(w, "table_output and table_column disagree on a column's size", TF_OK);
        total += sized[i].data_bytes + sized[i].offsets_bytes;
    }
    if (w->size && total / TF_TABLE_GROWTH > w->size &&
        tf_get_option(TF_OPT_TABLE_MAX_MB) == 0)
        die(w, "table_output allowed more than the file could hold", TF_OK);
    /* A buffer one byte short must be refused, never written past. */
    if (outs[0].data_bytes > 0) {
        outs[0].data_bytes--;
        if (check(w, tf_table_read(w->f, hdu, start, rows, outs, n, path), "short column") !=
            TF_EBUFSIZE)
            die(w, "a short column buffer was not refused", TF_OK);
        outs[0].data_bytes++;
        if (!w->f) goto fail_n;
    }
    int rc = check(w, tf_table_read(w->f, hdu, start, rows, outs, n, path), "table_read");
    if (rc == TF_OK) return n;
    reopen_if_poisoned(w, rc);
fail_n:
    for (int i = 0; i < n; i++) { free(outs[i].data); free(outs[i].offsets); }
    return 0;
}

static void walk_table(walk *w, int hdu) {
    int64_t nrows = 0;
    int ncols = 0;
    int rc = check(w, tf_table_shape(w->f, hdu, &nrows, &ncols), "table_shape");
    if (rc != TF_OK) { reopen_if_poisoned(w, rc); return; }
    if (nrows < 0 || ncols < 0) die(w, "table_shape gave a negative count", TF_OK);
    if (ncols > 0) {  /* a name lookup: the first column's, and one absent */
        tf_column_info ci;
        int at = -1;
        if (tf_table_column(w->f, hdu, 0, &ci) == TF_OK && ci.name[0]) {
            rc = check(w, tf_table_find_column(w->f, hdu, ci.name, &at), "find_column");
            if (rc == TF_OK && (at < 0 || at >= ncols)) die(w, "find_column out of range", TF_OK);
        }
        check(w, tf_table_find_column(w->f, hdu, "\x01no such column", &at), "find_column");
    }
    if (!w->f) return;
    /* Rows: all of a small table, else a random window; then past the end. */
    uint64_t r = next_rand(&w->rng);
    int64_t start = nrows > 0 && nrows > 512 ? (int64_t)(r % (uint64_t)nrows) : 0;
    int64_t rows = nrows - start;
    if (rows > 512) rows = 1 + (int64_t)((r >> 32) % 512);
    int64_t want = rows;
    rc = check(w, tf_table_rows(w->f, hdu, start, &want), "table_rows");
    if (rc != TF_OK) { reopen_if_poisoned(w, rc); return; }
    int64_t past = -1;
    if (tf_table_rows(w->f, hdu, nrows + 1, &past) == TF_OK)
        die(w, "table_rows took a start past the end", TF_OK);
    tf_table_out a[FUZZ_MAX_COLS], b[FUZZ_MAX_COLS];
    tf_column_info ia[FUZZ_MAX_COLS], ib[FUZZ_MAX_COLS];
    int na = read_columns(w, hdu, ncols, start, rows, TF_PATH_AUTO, a, ia);
    int nb = w->f ? read_columns(w, hdu, ncols, start, rows, TF_PATH_CFITSIO, b, ib) : 0;
    /* Where both paths read the same columns, the values agree (strings
     * too: both give the bytes stored). */
    if (na && nb && na == nb) {
        for (int i = 0; i < na; i++) {
            if (a[i].col != b[i].col || a[i].data_bytes != b[i].data_bytes ||
                !same_values(a[i].data, b[i].data, a[i].data_bytes, ia[i].dtype) ||
                (a[i].offsets && memcmp(a[i].offsets, b[i].offsets, a[i].offsets_bytes) != 0))
            {
                fprintf(stderr, "fuzz_walk: HDU %d column %d (%s, TFORM %s) rows %lld+%lld\n", hdu,
                        a[i].col, ia[i].name, ia[i].tform, (long long)start, (long long)rows);
                die(w, "table read paths disagree", TF_OK);
            }
        }
    }
    for (int i = 0; i < na; i++) { free(a[i].data); free(a[i].offsets); }
    for (int i = 0; i < nb; i++) { free(b[i].data); free(b[i].offsets); }
}

/* Find HDU `hdu` by its EXTNAME: never a later HDU of that name. Returns 0
 * when the walk must stop (the handle could not be opened again). */
static int find_by_name(walk *w, const tf_hdu_info *info, int hdu) {
    int at = -1;
    int rc = check(w, tf_find_hdu(w->f, info->extname, info->extver, &at), "find_hdu");
    if (rc == TF_OK && at > hdu) die(w, "find_hdu skipped past the HDU", TF_OK);
    return rc == TF_OK || reopen_if_poisoned(w, rc);
}

static void walk_header(walk *w, int hdu) {
    int ncards = 0;
    int rc = check(w, tf_header_load(w->f, hdu, &ncards), "header_load");
    if (rc != TF_OK) { reopen_if_poisoned(w, rc); return; }
    size_t total = 0;
    for (int i = 0; i < ncards; i++) {
        const char *key, *value, *comment;
        char type;
        if (tf_header_card(w->f, i, &key, &value, &comment, &type) != TF_OK)
            die(w, "header_card refused a card it counted", TF_OK);
        total += strlen(key) + strlen(value) + strlen(comment) + (size_t)type;
    }
    if (tf_header_card(w->f, ncards, NULL, NULL, NULL, NULL) != TF_EINVAL)
        die(w, "header_card accepted a card past the end", TF_OK);
    (void)total;
}

void fuzz_walk_file(const char *path, uint64_t seed) {
    struct stat sb;
    char magic[6] = "";
    FILE *fp = fopen(path, "rb");
    if (fp) {
        if (fread(magic, 1, sizeof magic, fp) != sizeof magic) magic[0] = 0;
        fclose(fp);
    }
    int plain = memcmp(magic, "SIMPLE", 6) == 0;
    walk w = {path, tf_create(), seed, plain && stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0};
    if (!w.f) return;
    int rc = check(&w, tf_open(w.f, path), "open");
    if (rc != TF_OK) goto done;
    /* Half the cases read small regions from a mapping of the file, as a
     * handle kept open does (tf_map_file); the others pread. */
    if (seed & 1) check(&w, tf_map_file(w.f), "map_file");
    int n = 0;
    rc = check(&w, tf_num_hdus(w.f, &n), "num_hdus");
    if (rc != TF_OK) {
        /* cfitsio counts by walking every header: a damaged later HDU fails
         * the count. Walk what opens, one HDU at a time. */
        n = 64;
        if (!reopen_if_poisoned(&w, rc)) goto done;
    }
    for (int hdu = 0; hdu < n && w.f; hdu++) {
        tf_hdu_info info;
        rc = check(&w, tf_hdu_info_get(w.f, hdu, &info), "hdu_info");
        if (rc == TF_ENOHDU) break;
        if (rc == TF_EUNSUPPORTED) {
            /* Valid FITS the core does not read (random groups, more than
             * 16 axes; more than 99: never given to cfitsio): described as
             * far as it goes, found by name, its header read, and the
             * handle usable for the next HDUs. */
            if (info.index != hdu) die(&w, "an unsupported HDU described as another", TF_OK);
            if (info.extname[0] && !find_by_name(&w, &info, hdu)) break;
            walk_header(&w, hdu);
            continue;
        }
        if (rc != TF_OK) {
            if (!reopen_if_poisoned(&w, rc)) break;
            walk_header(&w, hdu);
            continue;
        }
        if (info.extname[0] && !find_by_name(&w, &info, hdu)) break;
        walk_header(&w, hdu);
        if (!w.f) break;
        if (info.kind == TF_HDU_IMAGE)
            walk_image(&w, hdu, &info);
        else
            walk_table(&w, hdu);
    }
    /* Past the end, and a negative number: clean errors. */
    if (w.f) {
        tf_hdu_info info;
        check(&w, tf_hdu_info_get(w.f, -1, &info), "hdu -1");
    }
done:
    tf_close(w.f);
}

void fuzz_walk_bytes(const uint8_t *data, size_t size) {
    int fd = memfd_create("fuzz.fits", MFD_CLOEXEC);
    if (fd < 0) { perror("memfd_create"); abort(); }
    size_t off = 0;
    while (off < size) {
        ssize_t k = write(fd, data + off, size - off);
        if (k <= 0) { perror("write"); abort(); }
        off += (size_t)k;
    }
    char path[64];
    uint64_t seed = 1469598103934665603ULL; /* FNV-1a of the input */
    for (size_t i = 0; i < size; i++) seed = (seed ^ data[i]) * 1099511628211ULL;
    /* The core unpacks names with ".Z" through cfitsio's compress decoder:
     * compress's streams go there, and gzip's too now and then (which that
     * decoder must refuse). Through a link to /proc/self/fd, which every
     * process reads as its own, made once and left for the next run. */
    int dot_z = size >= 2 && data[0] == 0x1f &&
                (data[1] == 0x9d || (data[1] == 0x8b && (seed >> 40 & 3) == 0));
    if (dot_z && symlink("/proc/self/fd", DOT_Z_DIR) != 0 && errno != EEXIST) dot_z = 0;
    snprintf(path, sizeof path, dot_z ? DOT_Z_DIR "/%d" : "/proc/self/fd/%d", fd);
    /* Small enough that the fuzzer's inputs (200 KB at most; compress packs
     * some 8,000 to one) reach the unpack limit, and ASan's 1 GiB cap on an
     * allocation never does. */
    tf_set_option(TF_OPT_UNPACK_MAX_MB, 16);
    fuzz_walk_file(path, seed);
    close(fd);
}
