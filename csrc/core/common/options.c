/*
 * options.c - the process-wide settings. Set through tf_set_option (from
 * Python: torchfits_ops.set_threads and the like, and the environment read
 * once at import), never read from the environment here: getenv on a read
 * path, with the GIL released, raced a Python thread's setenv (SIGSEGV).
 */
#include <stdatomic.h>

#include "internal.h"

static _Atomic int64_t options[TF_OPT_COUNT] = {
    [TF_OPT_THREADS] = 0,
    [TF_OPT_KEEP_MB] = 256,
    [TF_OPT_UNPACK_MAX_MB] = 4096,
    [TF_OPT_TABLE_MAX_MB] = 0,
    [TF_OPT_CONNECT_TIMEOUT_MS] = 10000,
    [TF_OPT_READ_TIMEOUT_MS] = 30000,
    [TF_OPT_REMOTE_RETRIES] = 3,
    [TF_OPT_REMOTE_CACHE_MB] = 64,
    [TF_OPT_VERIFY_TLS] = 1,
    [TF_OPT_S3_ADDRESSING] = 0,
    [TF_OPT_REMOTE_META_MB] = 16,
    [TF_OPT_REMOTE_THREADS] = 16,
    [TF_OPT_WRITE_CFITSIO] = 0,
};

int tf_set_option(tf_option opt, int64_t value) {
    if ((unsigned)opt >= TF_OPT_COUNT || value < 0) return TF_EINVAL;
    atomic_store_explicit(&options[opt], value, memory_order_relaxed);
    return TF_OK;
}

int64_t tf_get_option(tf_option opt) {
    if ((unsigned)opt >= TF_OPT_COUNT) return -1;
    return atomic_load_explicit(&options[opt], memory_order_relaxed);
}

size_t tf_option_bytes(tf_option opt) {
    int64_t mb = tf_get_option(opt);
    if (mb < 0) return 0;
    return (uint64_t)mb > (SIZE_MAX >> 21) ? SIZE_MAX >> 1 : (size_t)mb << 20;
}
