/*
 * fuzz_walk.h - the walk over a FITS file shared by the libFuzzer target
 * (fuzz_core.c) and the plain replay driver (replay_main.c).
 */
#ifndef TORCHFITS_FUZZ_WALK_H
#define TORCHFITS_FUZZ_WALK_H

#include <stddef.h>
#include <stdint.h>

/* The largest output buffer the walk allocates for one read. The core's own
 * limits (file size, compression ratio) apply before that; this only keeps
 * the fuzzer within its memory limit on a legitimately large claim. */
#define FUZZ_MAX_OUT_BYTES ((size_t)64 << 20)
/* Columns read per table (the rest are described, not read). */
#define FUZZ_MAX_COLS 64

/*
 * Open `path` with the core and exercise every public call on every HDU:
 * info, EXTNAME lookup, header cards, whole images and cutouts on both read
 * paths, raw and scaled. `seed` picks the cutouts. Aborts (a finding for the
 * fuzzer) when the core breaks a promise it makes for any input: an error
 * message that does not name the file, an unknown status code, or the two
 * read paths disagreeing on data both accepted.
 */
void fuzz_walk_file(const char *path, uint64_t seed);

/* Write `data` to an anonymous in-memory file and walk it. */
void fuzz_walk_bytes(const uint8_t *data, size_t size);

#endif
