/*
 * remote.c - a tf_source over HTTP(S) and S3, read by byte ranges.
 *
 * A remote file is an object read with ranged GETs through libcurl. The
 * first request asks for the first FIRST_BYTES bytes: its Content-Range
 * gives the object's size, and its ETag and Last-Modified are kept; every
 * later answer must carry the same ones, or the read fails ("changed
 * between requests"), so a file is never a mix of old and new bytes. A
 * server that ignores the Range header on that first request sends the
 * whole object: it is kept in memory (within TF_OPT_UNPACK_MAX_MB) and
 * read from there. On a later request, ignoring the range is an error.
 *
 * Bytes fetched are kept in a cache of extents (TF_OPT_REMOTE_CACHE_MB
 * per file, least recently used dropped first), so cfitsio's 2880-byte
 * reads, header scans and tile-table reads cost one request per
 * READAHEAD_BYTES (growing to MAX_READAHEAD while reads go on in order),
 * and a file kept open (torchfits_ops.open) does not
 * fetch the same bytes twice. A read of BIG_BYTES or more goes straight
 * into the caller's buffer. A caller that knows the ranges it is about to
 * read (a cutout's rows, the tiles it touches) hands them to prefetch
 * first: ranges with small gaps are merged, and the merged ranges are
 * fetched at once on several connections, one round trip in all.
 *
 * Connections are reused: idle curl handles are shared by every file. A
 * failed request is retried (TF_OPT_REMOTE_RETRIES times, backoff from
 * 100 ms doubling) where retrying is right: 500, 502, 503, 504, a reset
 * or closed connection, a body cut short. A timeout is not retried: the
 * caller has waited long enough. Only http and https are spoken, on
 * redirects too, and never from https down to http; certificates are
 * verified unless TF_OPT_VERIFY_TLS is 0.
 *
 * What an open learnt (the size, ETag and Last-Modified, the first
 * FIRST_BYTES: the primary header and, for a tile-compressed image, the
 * tile table) is kept in a process-wide cache keyed by the resolved URL
 * and the identity that signs it (TF_OPT_REMOTE_META_MB in all, least
 * recently used dropped first). A later open of the same URL then makes
 * no request of its own: its requests for data carry the cached version
 * as a condition (If-Match with a strong ETag, else If-Unmodified-Since),
 * and any answer that shows another version (412, another ETag, any 4xx)
 * drops the entry and marks the object stale, so that the caller redoes
 * its operation on a fresh open (tf_remote_stale; the shim and the batch
 * readers do). An operation that needed no request at all (everything it
 * read was cached) confirms the version with one conditional request
 * (tf_remote_check: 304 Not Modified, or an answer of the same version).
 * Without a strong ETag or a Last-Modified nothing is cached. The cache
 * itself is metacache.c.
 *
 * s3://bucket/key becomes an https (or the endpoint's) URL, path-style or
 * virtual-host style, signed with SigV4 by libcurl when a key is set
 * (tf_remote_set: Python copies AWS_* from its environment; the core
 * never calls getenv). Messages name the URL without user:password@ and
 * without its query string, so no secret reaches an exception.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "../common/internal.h"

#define FIRST_BYTES (64 * 1024)
#define READAHEAD_BYTES (64 * 1024)
#define MAX_READAHEAD (8 << 20)
#define BIG_BYTES (1024 * 1024)
/* Ranges closer than this are fetched as one: a round trip costs more
 * than this many bytes on any link worth reading from. */
#define MERGE_GAP (256 * 1024)
#define POOL 16
#define MAX_PARALLEL 8
#define MSG_LEN 512

/* ---- settings (tf_remote_set) ---- */

enum { K_KEY, K_SECRET, K_TOKEN, K_REGION, K_ENDPOINT, K_COUNT };
static const char *const key_names[K_COUNT] = {"aws_access_key_id", "aws_secret_access_key",
                                               "aws_session_token", "aws_region",
                                               "aws_endpoint_url"};
static char *settings[K_COUNT];
static pthread_mutex_t settings_lock = PTHREAD_MUTEX_INITIALIZER;

int tf_remote_set(const char *key, const char *value) {
    for (int k = 0; k < K_COUNT; k++) {
        if (strcmp(key, key_names[k]) != 0) continue;
        char *v = value && *value ? strdup(value) : NULL;
        if (value && *value && !v) return TF_ENOMEM;
        pthread_mutex_lock(&settings_lock);
        free(settings[k]);
        settings[k] = v;
        pthread_mutex_unlock(&settings_lock);
        return TF_OK;
    }
    return TF_EINVAL;
}

static _Atomic int64_t stat_requests, stat_bytes;

void tf_remote_stats(int64_t *requests, int64_t *bytes, int reset) {
    *requests = reset ? atomic_exchange(&stat_requests, 0) : atomic_load(&stat_requests);
    *bytes = reset ? atomic_exchange(&stat_bytes, 0) : atomic_load(&stat_bytes);
}

int tf_is_url(const char *path) {
    return strncmp(path, "http://", 7) == 0 || strncmp(path, "https://", 8) == 0 ||
           strncmp(path, "s3://", 5) == 0;
}

char *tf_url_shown(const char *url) {
    /* scheme://[userinfo@]host/path[?query] -> without userinfo; the
     * query as "?..." */
    const char *rest = strstr(url, "://");
    rest = rest ? rest + 3 : url;
    const char *slash = rest + strcspn(rest, "/?#");
    const char *at = memchr(rest, '@', (size_t)(slash - rest));
    for (const char *p = at ? at + 1 : NULL; p && p < slash; p++) /* the last @ */
        if (*p == '@') at = p;
    size_t head = (size_t)(rest - url);
    const char *host = at ? at + 1 : rest;
    size_t tail = strcspn(host, "?#");
    int query = host[tail] != 0;
    char *s = malloc(head + tail + 5);
    if (!s) return NULL;
    memcpy(s, url, head);
    memcpy(s + head, host, tail);
    strcpy(s + head + tail, query ? "?..." : "");
    return s;
}

/* ---- the object ---- */

typedef struct extent {
    int64_t off, len;
    char *data;
    uint64_t used;
} extent;

struct tf_remote {
    char *url;   /* what is requested */
    char *shown; /* what messages say */
    int https;
    char *userpwd, *sigv4;
    struct curl_slist *headers;
    long connect_ms, read_s, verify;
    int retries;
    int64_t size;
    char etag[256], lastmod[128];
    char *key;                   /* in the metadata cache: URL, identity */
    int from_cache;              /* opened from it, without a request */
    struct curl_slist *cond;     /* headers + If-Match (from_cache) */
    struct curl_slist *confirm;  /* headers + If-None-Match (from_cache) */
    atomic_int validated;        /* a request confirmed the cached version */
    atomic_int stale;            /* a request found another version */

    pthread_mutex_t lock;
    extent *ext;
    int next, cap;
    size_t cached, cache_max;
    uint64_t tick;
    int64_t last_off, last_end, readahead; /* the last fetch of remote_read */
    int fail_code; /* the last failure, for tf_fail (0: none) */
    char fail_msg[MSG_LEN];
};

/* A validator the server can check: a strong ETag (a weak one never
 * matches If-Match), or a Last-Modified. */
static int strong_etag(const char *etag) { return etag[0] == '"'; }

/* Keep what r's first request learnt: its first `len` bytes at `first`. */
static void meta_put(const tf_remote *r, const char *first, int64_t len) {
    if (r->key && (strong_etag(r->etag) || r->lastmod[0]))
        tf_meta_put(r->key, r->size, r->etag, r->lastmod, first, len);
}

/* r's request headers and one more line; NULL when out of memory. */
static struct curl_slist *headers_and(const struct curl_slist *base, const char *line) {
    struct curl_slist *h = NULL, *n;
    for (const struct curl_slist *p = base; p; p = p->next) {
        if (!(n = curl_slist_append(h, p->data))) goto fail;
        h = n;
    }
    if ((n = curl_slist_append(h, line))) return n;
fail:
    curl_slist_free_all(h);
    return NULL;
}

/* The object is not the version cached: forget it, and have the caller
 * redo its operation where this file was opened from the cache. */
static void changed(tf_remote *r) {
    if (r->key) tf_meta_drop(r->key);
    if (r->from_cache) atomic_store(&r->stale, 1);
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static int curl_ok;
static void pool_before_fork(void);
static void pool_parent(void);
static void pool_child(void);
static void curl_start(void) {
    curl_ok = curl_global_init(CURL_GLOBAL_ALL) == CURLE_OK;
    if (curl_ok) pthread_atfork(pool_before_fork, pool_parent, pool_child);
}

/* The answer to one request. */
typedef struct answer {
    char *dst;        /* where the body goes */
    int64_t cap;      /* bytes expected (206) */
    int64_t got;
    int allow_whole;  /* first request: a 200 may bring the whole object */
    char *whole;      /* its bytes (grown) */
    int64_t whole_cap, whole_max;
    long status;      /* of the last status line seen */
    int too_long, too_big, ignored;
    int64_t last_ms;  /* when the last byte came (or the request began) */
    int64_t stall_ms; /* no byte for this long: the transfer fails */
    int stalled;
    char etag[256], lastmod[128], range[128];
} answer;

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* libcurl's own low-speed check averages the speed over a window of about
 * five seconds, so a server that sent some bytes and then stalled was
 * dropped only read_timeout + ~5 s later. This checks the time since the
 * last byte instead; libcurl calls it about once a second when idle. */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow) {
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    answer *a = arg;
    if (now_ms() - a->last_ms >= a->stall_ms) {
        a->stalled = 1;
        return 1;
    }
    return 0;
}

static size_t on_header(char *b, size_t size, size_t n, void *arg) {
    answer *a = arg;
    a->last_ms = now_ms();
    size_t len = size * n;
    char line[512];
    size_t k = len < sizeof line - 1 ? len : sizeof line - 1;
    memcpy(line, b, k);
    line[k] = 0;
    while (k && (line[k - 1] == '\r' || line[k - 1] == '\n')) line[--k] = 0;
    if (strncmp(line, "HTTP/", 5) == 0) { /* a new answer (after a redirect too) */
        const char *sp = strchr(line, ' ');
        a->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        a->etag[0] = a->lastmod[0] = a->range[0] = 0;
        return len;
    }
    char *colon = strchr(line, ':');
    if (!colon) return len;
    *colon = 0;
    char *v = colon + 1;
    while (*v == ' ' || *v == '\t') v++;
    if (!strcasecmp(line, "ETag")) snprintf(a->etag, sizeof a->etag, "%s", v);
    else if (!strcasecmp(line, "Last-Modified")) snprintf(a->lastmod, sizeof a->lastmod, "%s", v);
    else if (!strcasecmp(line, "Content-Range")) snprintf(a->range, sizeof a->range, "%s", v);
    return len;
}

static size_t on_body(char *b, size_t size, size_t n, void *arg) {
    answer *a = arg;
    a->last_ms = now_ms();
    size_t len = size * n;
    if (a->status == 206) {
        if ((int64_t)len > a->cap - a->got) {
            a->too_long = 1;
            return 0;
        }
        memcpy(a->dst + a->got, b, len);
        a->got += (int64_t)len;
    } else if (a->status == 200) {
        if (!a->allow_whole) {
            a->ignored = 1;
            return 0;
        }
        if (a->got + (int64_t)len > a->whole_max) {
            a->too_big = 1;
            return 0;
        }
        if (a->got + (int64_t)len > a->whole_cap) {
            int64_t c = a->whole_cap ? a->whole_cap : 1 << 20;
            while (c < a->got + (int64_t)len) c *= 2;
            if (c > a->whole_max) c = a->whole_max;
            char *w = tf_membuf_alloc((size_t)c + TF_REMOTE_GUARD);
            if (!w) {
                a->too_big = 2;
                return 0;
            }
            if (a->got) memcpy(w, a->whole, (size_t)a->got);
            tf_membuf_free(a->whole);
            a->whole = w;
            a->whole_cap = c;
        }
        memcpy(a->whole + a->got, b, len);
        a->got += (int64_t)len;
    }
    /* Bodies of error answers are dropped. */
    return len;
}

/* Idle curl handles, shared by every remote file of the process: each
 * keeps its connections open, so the next file on the same server (a
 * DataLoader going through many small objects) skips the TCP and TLS
 * handshakes. A forked child must not use the parent's connections: it
 * forgets them (atfork), without closing them. */
static CURL *pool[POOL];
static int npool;
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;

static void pool_before_fork(void) { pthread_mutex_lock(&pool_lock); }
static void pool_parent(void) { pthread_mutex_unlock(&pool_lock); }
static void pool_child(void) {
    npool = 0;
    pthread_mutex_unlock(&pool_lock);
}

static CURL *take_handle(tf_remote *r) {
    CURL *c = NULL;
    pthread_mutex_lock(&pool_lock);
    if (npool) c = pool[--npool];
    pthread_mutex_unlock(&pool_lock);
    return c ? c : curl_easy_init();
}

static void give_handle(tf_remote *r, CURL *c) {
    pthread_mutex_lock(&pool_lock);
    if (npool < POOL) {
        pool[npool++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&pool_lock);
    if (c) curl_easy_cleanup(c);
}

static void set_failure(tf_remote *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_failure(tf_remote *r, int code, const char *fmt, ...) {
    char m[MSG_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&r->lock);
    r->fail_code = code;
    memcpy(r->fail_msg, m, sizeof m);
    pthread_mutex_unlock(&r->lock);
}

static const char *reason(long status) {
    switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 410: return "Gone";
    case 412: return "Precondition Failed";
    case 416: return "Range Not Satisfiable";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "error";
    }
}

/* "bytes a-b/total" (total may be "*"). */
static int parse_range(const char *s, int64_t *a, int64_t *b, int64_t *total) {
    long long x, y;
    char t[32];
    if (sscanf(s, "bytes %lld-%lld/%31s", &x, &y, t) != 3) return 0;
    *a = x;
    *b = y;
    *total = strcmp(t, "*") ? strtoll(t, NULL, 10) : -1;
    return 1;
}

/*
 * One ranged GET of [off, off + n) into dst (n > 0), with retries. On the
 * first request (r->size < 0) the size is learnt, and a 200 answer may
 * bring the whole object into *whole. `confirm`: the request asks for the
 * bytes only if the object is not the cached version (304 Not Modified:
 * it is). Returns TF_OK or a TF_ code, the failure recorded on r.
 */
static int fetch(tf_remote *r, int64_t off, int64_t n, char *dst, char **whole,
                 int64_t *whole_len, int confirm) {
    int first = r->size < 0;
    char range[64];
    snprintf(range, sizeof range, "%lld-%lld", (long long)off, (long long)(off + n - 1));
    for (int attempt = 0;; attempt++) {
        if (attempt) {
            struct timespec ts = {0, 100 * 1000 * 1000};
            for (int k = 1; k < attempt; k++) {
                ts.tv_nsec *= 2;
                if (ts.tv_nsec >= 1000000000L) {
                    ts.tv_sec += ts.tv_nsec / 1000000000L;
                    ts.tv_nsec %= 1000000000L;
                }
            }
            nanosleep(&ts, NULL);
        }
        CURL *c = take_handle(r);
        if (!c) {
            set_failure(r, TF_ENOMEM, "out of memory for a connection");
            return TF_ENOMEM;
        }
        answer a = {.dst = dst, .cap = n, .allow_whole = first,
                    .whole_max = (int64_t)tf_option_bytes(TF_OPT_UNPACK_MAX_MB),
                    .last_ms = now_ms(), .stall_ms = (int64_t)r->read_s * 1000};
        char errbuf[CURL_ERROR_SIZE] = "";
        curl_easy_reset(c);
        curl_easy_setopt(c, CURLOPT_URL, r->url);
        curl_easy_setopt(c, CURLOPT_RANGE, range);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, r->https ? "https" : "http,https");
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, r->connect_ms);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, r->read_s);
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(c, CURLOPT_XFERINFODATA, &a);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, r->verify);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, r->verify ? 2L : 0L);
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, &a);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &a);
        curl_easy_setopt(c, CURLOPT_USERAGENT, "torchfits");
        struct curl_slist *headers = confirm ? r->confirm : r->from_cache ? r->cond : r->headers;
        if (headers) curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
        if (r->sigv4) curl_easy_setopt(c, CURLOPT_AWS_SIGV4, r->sigv4);
        if (r->userpwd) curl_easy_setopt(c, CURLOPT_USERPWD, r->userpwd);
        CURLcode cc = curl_easy_perform(c);
        give_handle(r, c);
        atomic_fetch_add(&stat_requests, 1);
        atomic_fetch_add(&stat_bytes, a.got);

        int retry = attempt < r->retries;
        if (a.stalled) {
            tf_membuf_free(a.whole);
            set_failure(r, TF_EIO, "timed out (no data for %ld s)", r->read_s);
            return TF_EIO;
        }
        if (a.too_big) {
            tf_membuf_free(a.whole);
            if (a.too_big == 2) {
                set_failure(r, TF_ENOMEM, "out of memory for the whole object");
                return TF_ENOMEM;
            }
            set_failure(r, TF_ELIMIT,
                        "the server sent the whole object instead of a range, and it is "
                        "larger than the limit for files read whole (%lld MiB; "
                        "torchfits_ops.set_unpack_max_mb)",
                        (long long)(a.whole_max >> 20));
            return TF_ELIMIT;
        }
        if (a.ignored) {
            set_failure(r, TF_EIO, "the server ignored the Range header (answered 200 to a "
                                   "request for bytes %s)", range);
            return TF_EIO;
        }
        if (a.too_long) {
            set_failure(r, TF_EIO, "the server sent more bytes than the range asked for "
                                   "(bytes %s, Content-Range '%s')", range, a.range);
            return TF_EIO;
        }
        if (cc != CURLE_OK) {
            tf_membuf_free(a.whole);
            const char *what = errbuf[0] ? errbuf : curl_easy_strerror(cc);
            switch (cc) {
            case CURLE_OPERATION_TIMEDOUT:
                set_failure(r, TF_EIO, "timed out (%s)", what);
                return TF_EIO;
            case CURLE_COULDNT_CONNECT:
            case CURLE_RECV_ERROR:
            case CURLE_SEND_ERROR:
            case CURLE_GOT_NOTHING:
            case CURLE_PARTIAL_FILE:
                if (retry) continue;
                set_failure(r, TF_EIO, "%s (after %d attempts)", what, attempt + 1);
                return TF_EIO;
            case CURLE_PEER_FAILED_VERIFICATION:
            case CURLE_SSL_CACERT_BADFILE:
                set_failure(r, TF_EIO, "TLS certificate verification failed (%s)", what);
                return TF_EIO;
            case CURLE_UNSUPPORTED_PROTOCOL:
                set_failure(r, TF_EIO, "redirect refused: only %s is followed (%s)",
                            r->https ? "https" : "http and https", what);
                return TF_EIO;
            case CURLE_COULDNT_RESOLVE_HOST:
                set_failure(r, TF_EOPEN, "cannot resolve the host (%s)", what);
                return TF_EOPEN;
            default:
                set_failure(r, TF_EIO, "%s", what);
                return TF_EIO;
            }
        }
        long status = a.status;
        if (confirm && status == 304) {
            atomic_store(&r->validated, 1);
            return TF_OK;
        }
        if (r->from_cache && status >= 400 && status < 500) {
            /* 412: not the version asked for; any other refusal (a 404
             * for a deleted object, a 403) is for the fresh open to say. */
            changed(r);
            set_failure(r, TF_EIO, "the object changed since it was opened before (HTTP %ld "
                                   "%s)", status, reason(status));
            return TF_EIO;
        }
        if (status == 200 && first) {
            r->size = a.got;
            snprintf(r->etag, sizeof r->etag, "%s", a.etag);
            snprintf(r->lastmod, sizeof r->lastmod, "%s", a.lastmod);
            *whole = a.whole;
            *whole_len = a.got;
            return TF_OK;
        }
        if (status == 416 && first) { /* an empty object has no byte 0 */
            long long t = -1;
            if (sscanf(a.range, "bytes */%lld", &t) == 1 && t == 0) {
                r->size = 0;
                *whole_len = 0;
                return TF_OK;
            }
        }
        if (status != 206) {
            tf_membuf_free(a.whole);
            if ((status == 500 || status == 502 || status == 503 || status == 504) && retry)
                continue;
            int code = status == 404 ? TF_EOPEN : status == 403 || status == 401 ? TF_EOPEN
                                                                                  : TF_EIO;
            const char *errno_text = status == 404 ? "No such file or directory: "
                                     : status == 403 || status == 401 ? "Permission denied: "
                                                                      : "";
            if (status >= 500 && attempt)
                set_failure(r, code, "HTTP %ld %s (after %d attempts)", status, reason(status),
                            attempt + 1);
            else
                set_failure(r, code, "%sHTTP %ld %s", errno_text, status, reason(status));
            return code;
        }
        /* 206: the same object (a changed one may have another size, so
         * this comes before the Content-Range), and the range asked for. */
        if (!first && (strcmp(r->etag, a.etag) != 0 || strcmp(r->lastmod, a.lastmod) != 0)) {
            changed(r);
            set_failure(r, TF_EIO, "the object changed between requests (ETag %s -> %s, "
                                   "Last-Modified '%s' -> '%s')",
                        r->etag[0] ? r->etag : "none", a.etag[0] ? a.etag : "none",
                        r->lastmod, a.lastmod);
            return TF_EIO;
        }
        int64_t ra, rb, total;
        if (!parse_range(a.range, &ra, &rb, &total) || ra != off || rb < ra ||
            (total >= 0 && rb >= total) || (!first && total != r->size) ||
            (!first && rb != off + n - 1) || (first && rb > off + n - 1)) {
            set_failure(r, TF_EIO, "the server's Content-Range '%s' does not match the "
                                   "request (bytes %s)", a.range, range);
            return TF_EIO;
        }
        if (a.got != rb - ra + 1) {
            if (retry) continue;
            set_failure(r, TF_EIO, "the answer was cut short: %lld of %lld bytes (after %d "
                                   "attempts)", (long long)a.got, (long long)(rb - ra + 1),
                        attempt + 1);
            return TF_EIO;
        }
        if (first) {
            if (total < 0) {
                set_failure(r, TF_EIO, "the server did not give the object's size "
                                       "(Content-Range '%s')", a.range);
                return TF_EIO;
            }
            r->size = total;
            snprintf(r->etag, sizeof r->etag, "%s", a.etag);
            snprintf(r->lastmod, sizeof r->lastmod, "%s", a.lastmod);
            *whole_len = a.got;
        } else {
            atomic_store(&r->validated, 1);
        }
        return TF_OK;
    }
}

/* ---- the cache ---- */

/* The cached extent holding all of [off, off + n), or NULL. Under
 * r->lock. */
static extent *cached(tf_remote *r, int64_t off, int64_t n) {
    for (int i = 0; i < r->next; i++) {
        extent *e = &r->ext[i];
        if (e->data && off >= e->off && off + n <= e->off + e->len) return e;
    }
    return NULL;
}

/* Copy [off, off + n) from such an extent; 1 if done. Under r->lock. */
static int from_cache(tf_remote *r, void *buf, int64_t n, int64_t off) {
    extent *e = cached(r, off, n);
    if (!e) return 0;
    memcpy(buf, e->data + (off - e->off), (size_t)n);
    e->used = ++r->tick;
    return 1;
}

/* Keep `data` (len bytes at off, malloc'ed) in the cache, or free it. */
static void keep(tf_remote *r, int64_t off, int64_t len, char *data) {
    pthread_mutex_lock(&r->lock);
    if ((size_t)len > r->cache_max) {
        pthread_mutex_unlock(&r->lock);
        free(data);
        return;
    }
    while (r->cached + (size_t)len > r->cache_max) { /* drop the least recently used */
        int lru = -1;
        for (int i = 0; i < r->next; i++)
            if (r->ext[i].data && (lru < 0 || r->ext[i].used < r->ext[lru].used)) lru = i;
        if (lru < 0) break;
        free(r->ext[lru].data);
        r->cached -= (size_t)r->ext[lru].len;
        r->ext[lru].data = NULL;
    }
    int slot = -1;
    for (int i = 0; i < r->next && slot < 0; i++)
        if (!r->ext[i].data) slot = i;
    if (slot < 0) {
        if (r->next == r->cap) {
            int cap = r->cap ? 2 * r->cap : 64;
            extent *e = realloc(r->ext, (size_t)cap * sizeof *e);
            if (!e) {
                pthread_mutex_unlock(&r->lock);
                free(data);
                return;
            }
            r->ext = e;
            r->cap = cap;
        }
        slot = r->next++;
    }
    r->ext[slot] = (extent){off, len, data, ++r->tick};
    r->cached += (size_t)len;
    pthread_mutex_unlock(&r->lock);
}

static int64_t remote_read(const tf_source *s, void *buf, size_t n, int64_t off, int *err) {
    tf_remote *r = s->ctx;
    *err = 0;
    if (off < 0 || off >= r->size || n == 0) return 0;
    if ((int64_t)n > r->size - off) n = (size_t)(r->size - off);
    pthread_mutex_lock(&r->lock);
    int hit = from_cache(r, buf, (int64_t)n, off);
    pthread_mutex_unlock(&r->lock);
    if (hit) return (int64_t)n;
    if (atomic_load(&r->stale)) { /* known changed: no more requests */
        set_failure(r, TF_EIO, "the object changed since it was opened before");
        *err = EIO;
        return -1;
    }
    if (n >= BIG_BYTES) {
        if (fetch(r, off, (int64_t)n, buf, NULL, NULL, 0) != TF_OK) {
            *err = EIO;
            return -1;
        }
        return (int64_t)n;
    }
    /* Reads that go on where the last fetch ended (tiles decoded in turn,
     * table rows in blocks) double the readahead, up to MAX_READAHEAD;
     * a read elsewhere starts again from READAHEAD_BYTES. */
    pthread_mutex_lock(&r->lock);
    int64_t ra = off >= r->last_off && off <= r->last_end + READAHEAD_BYTES
                     ? (r->readahead * 2 < MAX_READAHEAD ? r->readahead * 2 : MAX_READAHEAD)
                     : READAHEAD_BYTES;
    r->readahead = ra;
    pthread_mutex_unlock(&r->lock);
    int64_t len = (int64_t)n > ra ? (int64_t)n : ra;
    if (len > r->size - off) len = r->size - off;
    char *data = malloc((size_t)len);
    if (!data) {
        *err = ENOMEM;
        return -1;
    }
    if (fetch(r, off, len, data, NULL, NULL, 0) != TF_OK) {
        free(data);
        *err = EIO;
        return -1;
    }
    memcpy(buf, data, n);
    pthread_mutex_lock(&r->lock);
    r->last_off = off;
    r->last_end = off + len;
    pthread_mutex_unlock(&r->lock);
    keep(r, off, len, data);
    return (int64_t)n;
}

typedef struct span {
    int64_t off, len;
} span;

static int by_offset(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

typedef struct prefetch_job {
    tf_remote *r;
    span *spans;
    int n;
    atomic_int next;
} prefetch_job;

static void *prefetch_worker(void *arg) {
    prefetch_job *j = arg;
    for (int i; (i = atomic_fetch_add(&j->next, 1)) < j->n;) {
        span *s = &j->spans[i];
        char *data = malloc((size_t)s->len);
        if (!data) continue;
        if (fetch(j->r, s->off, s->len, data, NULL, NULL, 0) != TF_OK) {
            /* The read that needs it fetches it again, and fails there,
             * with its own message. */
            free(data);
            pthread_mutex_lock(&j->r->lock);
            j->r->fail_code = 0;
            pthread_mutex_unlock(&j->r->lock);
            continue;
        }
        keep(j->r, s->off, s->len, data);
    }
    return NULL;
}

static void remote_prefetch(const tf_source *s, const int64_t *ranges, int n) {
    tf_remote *r = s->ctx;
    if (n <= 0) return;
    span *sp = malloc((size_t)n * sizeof *sp);
    if (!sp) return;
    int m = 0;
    for (int i = 0; i < n; i++) {
        int64_t off = ranges[2 * i], len = ranges[2 * i + 1];
        if (off < 0 || len <= 0 || off >= r->size) continue;
        if (len > r->size - off) len = r->size - off;
        sp[m++] = (span){off, len};
    }
    qsort(sp, (size_t)m, sizeof *sp, by_offset);
    int k = 0; /* merge */
    for (int i = 0; i < m; i++) {
        if (k && sp[i].off <= sp[k - 1].off + sp[k - 1].len + MERGE_GAP) {
            int64_t end = sp[i].off + sp[i].len;
            if (end > sp[k - 1].off + sp[k - 1].len) sp[k - 1].len = end - sp[k - 1].off;
        } else {
            sp[k++] = sp[i];
        }
    }
    /* What is cached already, and what would not stay cached, is left to
     * the reads themselves. */
    int w = 0;
    int64_t total = 0;
    pthread_mutex_lock(&r->lock);
    for (int i = 0; i < k; i++) {
        if (!cached(r, sp[i].off, sp[i].len) && total + sp[i].len <= (int64_t)r->cache_max / 2) {
            total += sp[i].len;
            sp[w++] = sp[i];
        }
    }
    pthread_mutex_unlock(&r->lock);
    prefetch_job j = {r, sp, w, 0};
    int threads = w < MAX_PARALLEL ? w : MAX_PARALLEL;
    pthread_t tid[MAX_PARALLEL];
    int started = 0;
    for (int t = 1; t < threads; t++)
        if (pthread_create(&tid[started], NULL, prefetch_worker, &j) == 0) started++;
    if (w) prefetch_worker(&j);
    for (int t = 0; t < started; t++) pthread_join(tid[t], NULL);
    free(sp);
}

static int remote_failure(const tf_source *s, char *buf, size_t n) {
    tf_remote *r = s->ctx;
    pthread_mutex_lock(&r->lock);
    int code = r->fail_code;
    if (code) snprintf(buf, n, "%s", r->fail_msg);
    r->fail_code = 0;
    pthread_mutex_unlock(&r->lock);
    return code;
}

/* ---- opening ---- */

/* Key characters kept as they are in an S3 path (the rest %XX). */
static int unreserved(unsigned char c) {
    return isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/';
}

static char *s3_url(const char *path, char **sigv4, char *msg, size_t msglen) {
    const char *b = path + 5, *slash = strchr(b, '/');
    if (!slash || slash == b || !slash[1]) {
        snprintf(msg, msglen, "an S3 URL is s3://bucket/key");
        return NULL;
    }
    pthread_mutex_lock(&settings_lock);
    char *endpoint = settings[K_ENDPOINT] ? strdup(settings[K_ENDPOINT]) : NULL;
    char *region = strdup(settings[K_REGION] ? settings[K_REGION] : "us-east-1");
    pthread_mutex_unlock(&settings_lock);
    size_t blen = (size_t)(slash - b);
    const char *key = slash + 1;
    int64_t style = tf_get_option(TF_OPT_S3_ADDRESSING); /* 0 auto, 1 path, 2 virtual */
    int dotted = memchr(b, '.', blen) != NULL;
    int virtual_host = style == 2 || (style == 0 && !endpoint && !dotted);
    char *host = NULL;
    if (endpoint) {
        host = endpoint;
        endpoint = NULL;
        size_t l = strlen(host);
        while (l && host[l - 1] == '/') host[--l] = 0;
    } else if (region) {
        if (asprintf(&host, "https://s3.%s.amazonaws.com", region) < 0) host = NULL;
    }
    char *url = NULL, *enc = malloc(3 * strlen(key) + 1);
    if (host && enc) {
        char *e = enc;
        for (const unsigned char *k = (const unsigned char *)key; *k; k++)
            e += unreserved(*k) ? sprintf(e, "%c", *k) : sprintf(e, "%%%02X", *k);
        *e = 0;
        const char *sep = strstr(host, "://");
        if (!sep) {
            snprintf(msg, msglen, "the S3 endpoint '%s' is not a URL (http[s]://host[:port])",
                     host);
        } else if (virtual_host) {
            size_t scheme = (size_t)(sep + 3 - host);
            if (asprintf(&url, "%.*s%.*s.%s/%s", (int)scheme, host, (int)blen, b, sep + 3, enc) <
                0)
                url = NULL;
        } else if (asprintf(&url, "%s/%.*s/%s", host, (int)blen, b, enc) < 0) {
            url = NULL;
        }
    }
    if (url && sigv4 && asprintf(sigv4, "aws:amz:%s:s3", region) < 0) *sigv4 = NULL;
    free(enc);
    free(host);
    free(endpoint);
    free(region);
    return url;
}

void tf_remote_close(tf_remote *r) {
    if (!r) return;
    for (int i = 0; i < r->next; i++) free(r->ext[i].data);
    free(r->ext);
    curl_slist_free_all(r->headers);
    curl_slist_free_all(r->cond);
    curl_slist_free_all(r->confirm);
    free(r->key);
    free(r->url);
    free(r->shown);
    free(r->userpwd);
    free(r->sigv4);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

int tf_remote_open(const char *path, tf_remote **out, tf_source *src, char **whole,
                   int64_t *whole_len, char *msg, size_t msglen) {
    *out = NULL;
    *whole = NULL;
    *whole_len = 0;
    msg[0] = 0;
    pthread_once(&curl_once, curl_start);
    if (!curl_ok) {
        snprintf(msg, msglen, "libcurl could not be initialised");
        return TF_EIO;
    }
    tf_remote *r = calloc(1, sizeof *r);
    if (!r) return TF_ENOMEM;
    pthread_mutex_init(&r->lock, NULL);
    r->size = -1;
    r->readahead = READAHEAD_BYTES;
    r->connect_ms = (long)tf_get_option(TF_OPT_CONNECT_TIMEOUT_MS);
    r->read_s = (long)((tf_get_option(TF_OPT_READ_TIMEOUT_MS) + 999) / 1000);
    if (r->read_s < 1) r->read_s = 1;
    r->verify = tf_get_option(TF_OPT_VERIFY_TLS) != 0;
    r->retries = (int)tf_get_option(TF_OPT_REMOTE_RETRIES);
    r->cache_max = tf_option_bytes(TF_OPT_REMOTE_CACHE_MB);
    int rc = TF_ENOMEM;
    char *identity = NULL; /* who signs: part of the metadata cache's key */
    if (strncmp(path, "s3://", 5) == 0) {
        r->url = s3_url(path, &r->sigv4, msg, msglen);
        if (!r->url) {
            rc = msg[0] ? TF_EINVAL : TF_ENOMEM;
            goto fail;
        }
        pthread_mutex_lock(&settings_lock);
        int have_key = settings[K_KEY] && settings[K_SECRET];
        if (have_key && asprintf(&r->userpwd, "%s:%s", settings[K_KEY], settings[K_SECRET]) < 0)
            r->userpwd = NULL;
        if (have_key) identity = strdup(settings[K_KEY]);
        char *token = NULL;
        if (have_key && settings[K_TOKEN] &&
            asprintf(&token, "x-amz-security-token: %s", settings[K_TOKEN]) < 0)
            token = NULL;
        pthread_mutex_unlock(&settings_lock);
        if (!have_key) { /* anonymous: unsigned requests */
            free(r->sigv4);
            r->sigv4 = NULL;
        } else {
            if (!r->userpwd) goto fail;
            struct curl_slist *h =
                curl_slist_append(NULL, "x-amz-content-sha256: "
                                        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
            if (h && token) {
                struct curl_slist *h2 = curl_slist_append(h, token);
                if (!h2) curl_slist_free_all(h);
                h = h2;
            }
            free(token);
            if (!h) goto fail;
            r->headers = h;
        }
    } else {
        r->url = strdup(path);
        if (!r->url) goto fail;
    }
    r->https = strncmp(r->url, "https://", 8) == 0;
    r->shown = tf_url_shown(path);
    if (!r->shown) goto fail;
    if (asprintf(&r->key, "%s\n%s", r->url, identity ? identity : "") < 0) {
        r->key = NULL;
        goto fail;
    }

    int64_t known = 0;
    char *first = tf_meta_get(r->key, &r->size, r->etag, sizeof r->etag, r->lastmod,
                              sizeof r->lastmod, &known);
    if (first) { /* known: no request now; the data requests are conditional */
        char cond[300], confirm[300];
        if (strong_etag(r->etag)) {
            snprintf(cond, sizeof cond, "If-Match: %s", r->etag);
            snprintf(confirm, sizeof confirm, "If-None-Match: %s", r->etag);
        } else {
            snprintf(cond, sizeof cond, "If-Unmodified-Since: %s", r->lastmod);
            snprintf(confirm, sizeof confirm, "If-Modified-Since: %s", r->lastmod);
        }
        r->cond = headers_and(r->headers, cond);
        r->confirm = headers_and(r->headers, confirm);
        if (!r->cond || !r->confirm) {
            free(first);
            goto fail;
        }
        r->from_cache = 1;
        keep(r, 0, known, first);
        goto opened;
    }
    first = malloc(FIRST_BYTES);
    if (!first) goto fail;
    rc = fetch(r, 0, FIRST_BYTES, first, whole, whole_len, 0);
    if (rc != TF_OK) {
        free(first);
        char why[MSG_LEN];
        tf_source tmp = {0};
        tmp.ctx = r;
        remote_failure(&tmp, why, sizeof why);
        snprintf(msg, msglen, "%s", why);
        goto fail;
    }
    if (*whole || r->size == 0) {
        free(first); /* read whole, or empty */
    } else {
        /* An object that came whole in the first answer needs no cache:
         * its next open makes one request either way. */
        if (*whole_len < r->size) meta_put(r, first, *whole_len);
        keep(r, 0, *whole_len, first);
    }
opened:
    free(identity);
    *src = (tf_source){.read = remote_read, .ctx = r, .size = r->size};
    src->prefetch = remote_prefetch;
    src->failure = remote_failure;
    src->chunk = 8 << 20;
    *out = r;
    return TF_OK;
fail:
    free(identity);
    tf_remote_close(r);
    return rc;
}

int tf_remote_is_stale(const tf_remote *r) { return r && atomic_load(&r->stale); }

int tf_remote_check(tf_remote *r, char *msg, size_t msglen) {
    msg[0] = 0;
    if (!r || !r->from_cache || atomic_load(&r->validated)) return TF_OK;
    if (atomic_load(&r->stale)) {
        snprintf(msg, msglen, "the object changed since it was opened before");
        return TF_EIO;
    }
    int64_t n = r->size < FIRST_BYTES ? r->size : FIRST_BYTES;
    char *buf = malloc(n > 0 ? (size_t)n : 1);
    if (!buf) return TF_ENOMEM;
    int rc = n > 0 ? fetch(r, 0, n, buf, NULL, NULL, 1) : TF_OK;
    free(buf);
    if (rc != TF_OK) {
        tf_source tmp = {.ctx = r};
        remote_failure(&tmp, msg, msglen);
    }
    return rc;
}
