/*
 * replay_main.c - replay fuzz cases without libFuzzer (after libspng's
 * fuzz_main.c and zstd's regression_driver.c): each argument is a file, or a
 * folder whose files are replayed in name order. Each case is named on
 * stderr before it runs, so a crash names its case. Built with
 * -fsanitize=address,undefined by the test suite.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_walk.h"

static int replay_file(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) { perror(path); return 1; }
    uint8_t *data = NULL;
    size_t size = 0, cap = 0;
    for (;;) {
        if (size == cap) {
            cap = cap ? cap * 2 : 1 << 16;
            uint8_t *p = realloc(data, cap);
            if (!p) { free(data); fclose(fp); return 1; }
            data = p;
        }
        size_t k = fread(data + size, 1, cap - size, fp);
        if (k == 0) break;
        size += k;
    }
    fclose(fp);
    fprintf(stderr, "replay: %s (%zu bytes)\n", path, size);
    fuzz_walk_bytes(data, size);
    free(data);
    return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b) {
    return strcmp((*a)->d_name, (*b)->d_name);
}

int main(int argc, char **argv) {
    int failed = 0, count = 0;
    for (int i = 1; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) != 0) { perror(argv[i]); failed = 1; continue; }
        if (!S_ISDIR(sb.st_mode)) {
            failed |= replay_file(argv[i]);
            count++;
            continue;
        }
        struct dirent **names;
        int n = scandir(argv[i], &names, NULL, by_name);
        for (int k = 0; k < n; k++) {
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", argv[i], names[k]->d_name);
            if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode)) {
                failed |= replay_file(p);
                count++;
            }
            free(names[k]);
        }
        free(names);
    }
    fprintf(stderr, "replay: %d case%s, %s\n", count, count == 1 ? "" : "s",
            failed ? "some unreadable" : "no crash");
    return failed;
}
