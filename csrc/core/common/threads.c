/*
 * threads.c - fanning a read out over threads.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static int online_cpus(void) {
    static atomic_int online; /* sysconf reads /sys on every call: ask once */
    int n = atomic_load_explicit(&online, memory_order_relaxed);
    if (n == 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c < 1 ? 1 : c > TF_MAX_THREADS ? TF_MAX_THREADS : (int)c;
        atomic_store_explicit(&online, n, memory_order_relaxed);
    }
    return n;
}

int tf_auto_threads(int requested) {
    int64_t v = tf_get_option(TF_OPT_THREADS);
    if (v) return v < TF_MAX_THREADS ? (int)v : TF_MAX_THREADS;
    if (requested > 0) return requested < TF_MAX_THREADS ? requested : TF_MAX_THREADS;
    return online_cpus();
}

int tf_threads_chosen(int requested) {
    return requested > 0 || tf_get_option(TF_OPT_THREADS) > 0;
}

int tf_idle_cpus(void) {
    /* "0.52 0.58 0.59 3/512 12345": the fourth field counts the runnable
     * tasks, the caller included. */
    char buf[128];
    int fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    const char *slash = strchr(buf, '/');
    if (!slash) return -1;
    const char *p = slash;
    while (p > buf && p[-1] >= '0' && p[-1] <= '9') p--;
    if (p == slash) return -1;
    long running = strtol(p, NULL, 10);
    int idle = online_cpus() - (int)running;
    return idle < 0 ? 0 : idle;
}

int tf_batch_threads(const char *const *paths, int64_t npaths, int usual, int64_t n) {
    int remote = 0;
    for (int64_t i = 0; i < npaths && !remote; i++) remote = tf_is_url(paths[i]);
    int64_t io = remote ? tf_get_option(TF_OPT_REMOTE_THREADS) : 0;
    if (io > TF_MAX_IO_THREADS) io = TF_MAX_IO_THREADS;
    int nt = io > usual ? (int)io : usual;
    if (nt > n) nt = n > 0 ? (int)n : 1;
    return nt < 1 ? 1 : nt;
}

void tf_run_jobs(void *(*worker)(void *), void *jobs, size_t job_size, int njobs) {
    pthread_t tids[TF_MAX_IO_THREADS];
    int started[TF_MAX_IO_THREADS] = {0};
    char *job = jobs;
    if (njobs > TF_MAX_IO_THREADS) njobs = TF_MAX_IO_THREADS;
    for (int t = 1; t < njobs; t++)
        started[t] = pthread_create(&tids[t], NULL, worker, job + t * job_size) == 0;
    for (int t = 1; t < njobs; t++)
        if (!started[t]) worker(job + t * job_size);
    if (njobs > 0) worker(job);  /* the calling thread takes the first job */
    for (int t = 1; t < njobs; t++)
        if (started[t]) pthread_join(tids[t], NULL);
}
