/*
 * fuzz_core.c - the libFuzzer target: one input is one FITS file.
 * Build and run with fuzz/run.sh.
 */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_walk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_walk_bytes(data, size);
    return 0;
}
