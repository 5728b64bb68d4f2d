/*
 * threads.c - fanning a read out over threads.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <unistd.h>

#include "internal.h"

int tf_auto_threads(int requested) {
    if (requested > 0) return requested < TF_MAX_THREADS ? requested : TF_MAX_THREADS;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > TF_MAX_THREADS ? TF_MAX_THREADS : (int)n;
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
