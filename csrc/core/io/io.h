/*
 * io.h - private to the core: every byte of a file comes in through here.
 *
 * The core opens each file itself (tf_source_open_file: read-only,
 * non-blocking for the open, close-on-exec, regular files only) and reads
 * it with pread. cfitsio never sees the user's path: it reads a tf_source
 * through an I/O driver of ours (cfdriver.c), opened under a name the core
 * makes up ("tfio://<n>", unique among open files), so nothing of the
 * path can be expanded (~user), stripped (leading blanks), parsed
 * (brackets, parentheses), cut (1,024 bytes) or swapped for a sibling
 * (name.gz). A compressed file is recognised by its first bytes, never by
 * its name, and unpacked into memory (unpack.c); cfitsio then reads those
 * bytes through the same driver.
 *
 * A tf_source is a read callback, its context and a size: a local file,
 * bytes in memory, and later a remote object read by ranges.
 */
#ifndef TORCHFITS_IO_H
#define TORCHFITS_IO_H

#include <fitsio.h>
#include <stddef.h>
#include <stdint.h>

#include "../torchfits_core.h"

typedef struct tf_source tf_source;
struct tf_source {
    /* Up to n bytes at byte `off` into buf. Returns the count read, fewer
     * than n only where the source ends; -1 on failure, with an errno
     * value in *err. Called from several threads at once (no shared file
     * offset). A copy of the struct reads the same (cfdriver.c keeps one
     * per cfitsio handle). */
    int64_t (*read)(const tf_source *s, void *buf, size_t n, int64_t off, int *err);
    void *ctx;    /* the reader's: a descriptor, the bytes, a connection */
    int64_t size; /* bytes in the source */
    /* Optional (NULL for local sources). prefetch: the caller is about to
     * read these n ranges (offset, length pairs); a remote source fetches
     * what it lacks at once, merged, on several connections. failure: the
     * cause of the last failed read, in words, into buf; returns its TF_
     * code and forgets it (0: none recorded). */
    void (*prefetch)(const tf_source *s, const int64_t *ranges, int n);
    int (*failure)(const tf_source *s, char *buf, size_t n);
    int64_t chunk; /* bytes per read that suit the source (0: any) */
};

/* Hand the ranges a read is about to make to the source (a no-op for
 * local files). */
static inline void tf_source_prefetch(const tf_source *s, const int64_t *ranges, int n) {
    if (s->prefetch && n > 0) s->prefetch(s, ranges, n);
}

/* ---- remote objects (remote.c) ---- */

typedef struct tf_remote tf_remote;

/* Zero bytes after an object read whole (as MEMFILE_GUARD in file.c). */
#define TF_REMOTE_GUARD (2 * 2880)

/* Whether a path names a remote object: http://, https://, s3://. */
int tf_is_url(const char *path);

/* The URL as messages show it: no user:password@, the query as "?...";
 * malloc'ed (NULL when out of memory). */
char *tf_url_shown(const char *url);

/* Open the object at `url`: one request for its first bytes and its size.
 * On success *out and *src read it by ranges; or, where the server sent
 * the whole object (it ignored the Range header), *whole holds it
 * (*whole_len bytes, then TF_REMOTE_GUARD bytes of room; tf_membuf_free)
 * and src still reads from the cache. On failure a TF_ code, the cause in
 * msg. */
int tf_remote_open(const char *url, tf_remote **out, tf_source *src, char **whole,
                   int64_t *whole_len, char *msg, size_t msglen);
void tf_remote_close(tf_remote *r);

/* For an object opened from the metadata cache that made no request yet:
 * one conditional request checks that the object is the cached version.
 * TF_OK (also for any other object), or a TF_ code with the cause in msg
 * (tf_remote_is_stale then set where the object changed). */
int tf_remote_check(tf_remote *r, char *msg, size_t msglen);

/* Whether a request found the object opened from the metadata cache
 * changed (the operation must be redone on a fresh open). */
int tf_remote_is_stale(const tf_remote *r);

/* ---- what opens of URLs learnt, across opens (metacache.c) ---- */

/* Keep an object's size, validators (ETag, Last-Modified: "" for none)
 * and first `len` bytes under `key`, replacing its entry, within
 * TF_OPT_REMOTE_META_MB (least recently used dropped first). */
void tf_meta_put(const char *key, int64_t size, const char *etag, const char *lastmod,
                 const char *first, int64_t len);

/* The entry under `key`: *size, etag, lastmod set and a copy of its first
 * bytes returned (*len of them; free() it); NULL for none. With
 * TF_OPT_REMOTE_META_MB 0, empties the cache first. */
char *tf_meta_get(const char *key, int64_t *size, char *etag, size_t etag_len, char *lastmod,
                  size_t lastmod_len, int64_t *len);

/* Forget the entry under `key`, if any. */
void tf_meta_drop(const char *key);

/* A source reading descriptor fd (owned by the caller) of `size` bytes. */
void tf_source_fd(tf_source *s, int fd, int64_t size);

/* A source over n bytes at p (owned by the caller, unchanged while used). */
void tf_source_memory(tf_source *s, const void *p, size_t n);

/* Exactly n bytes at off: TF_OK, TF_EIO (errno in *err) or TF_ECORRUPT
 * (the source ends first; *err 0). Touches no handle: any thread may call
 * it. */
int tf_source_read(const tf_source *s, void *buf, size_t n, int64_t off, int *err);

/* The same on a descriptor. */
int tf_pread_exact(int fd, void *buf, size_t n, int64_t off, int *err);

/* Up to n bytes at off, fewer only at the end of the file (EINTR and
 * short reads retried); -1 with errno set on failure. */
int64_t tf_pread_upto(int fd, void *buf, size_t n, int64_t off);

/* Read exactly n bytes at off of the handle's source; TF_OK, or
 * TF_EIO / TF_ECORRUPT (the file ends first) recorded on the handle. */
int tf_read_full(tf_file *f, void *buf, size_t n, int64_t off);

/* Open `path` for f: f->fd and f->file_size, after checking that it is a
 * regular file (a FIFO, directory, device or socket is TF_EOPEN at once,
 * named; never a wait on a FIFO). (source.c) */
int tf_source_open_file(tf_file *f, const char *path);

/* Whether the first n bytes at m begin a compressed file (gzip, compress,
 * pack, LZH, zip). (unpack.c) */
int tf_is_compressed(const unsigned char *m, size_t n);

/* Unpack the compressed file behind f->fd (f->file_size bytes, first bytes
 * in magic[0..n)) into *out (*len bytes, followed by `guard` zero bytes;
 * give it back with tf_membuf_free), within TF_OPT_UNPACK_MAX_MB. The kind
 * comes from the magic bytes: gzip (every member) by zlib, compress (LZW)
 * by cfitsio's decoder; pack, LZH and zip are TF_ENOTFITS. (unpack.c) */
int tf_unpack(tf_file *f, const unsigned char *magic, size_t n, size_t guard,
              unsigned char **out, size_t *len);

/* Memory for a file's bytes, as tf_unpack gives it; NULL when out of
 * memory. Not zeroed. Freed by tf_membuf_free (NULL is ignored). */
void *tf_membuf_alloc(size_t n);
void tf_membuf_free(void *p);

/* Open cfitsio read-only on `src` through the core's I/O driver, under a
 * name of the core's own, unique among open files. The source (its
 * context) must outlive *fp. Returns a cfitsio status (*fp NULL on
 * failure). Safe from any thread. (cfdriver.c) */
int tf_cf_open(const tf_source *src, fitsfile **fp);

#endif /* TORCHFITS_IO_H */
