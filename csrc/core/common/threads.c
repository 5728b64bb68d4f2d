/*
 * threads.c - fanning a read out over threads.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"

int tf_auto_threads(int requested) {
    static atomic_int online; /* sysconf reads /sys on every call: ask once */
    const char *env = getenv("TORCHFITS_THREADS");
    if (env && *env) {
        long v = strtol(env, NULL, 10);
        if (v >= 1) return v < TF_MAX_THREADS ? (int)v : TF_MAX_THREADS;
    }
    if (requested > 0) return requested < TF_MAX_THREADS ? requested : TF_MAX_THREADS;
    int n = atomic_load_explicit(&online, memory_order_relaxed);
    if (n == 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c < 1 ? 1 : c > TF_MAX_THREADS ? TF_MAX_THREADS : (int)c;
        atomic_store_explicit(&online, n, memory_order_relaxed);
    }
    return n;
}

void tf_run_jobs(void *(*worker)(void *), void *jobs, size_t job_size, int njobs) {
    pthread_t tids[TF_MAX_THREADS];
    int started[TF_MAX_THREADS] = {0};
    char *job = jobs;
    if (njobs > TF_MAX_THREADS) njobs = TF_MAX_THREADS;
    for (int t = 1; t < njobs; t++)
        started[t] = pthread_create(&tids[t], NULL, worker, job + t * job_size) == 0;
    for (int t = 1; t < njobs; t++)
        if (!started[t]) worker(job + t * job_size);
    if (njobs > 0) worker(job);  /* the calling thread takes the first job */
    for (int t = 1; t < njobs; t++)
        if (started[t]) pthread_join(tids[t], NULL);
}
