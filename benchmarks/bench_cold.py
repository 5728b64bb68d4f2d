"""The first read of a file with a cold page cache, against the same read
with a warm one: a 4096 x 4096 float32 image (64 MiB) and the same image
RICE_1-compressed (q=4, SUBTRACTIVE_DITHER_1).

Before each timed cold read (untimed): sync, then
``echo 3 > /proc/sys/vm/drop_caches``, checked with mincore (none of the
file's pages may be left in the cache). Where the machine does not allow
it, the cold cases are left out and the page says so. The limits here are
limit.c's pread and byte swap, on one thread and on two, and its mapped
copy, from the same cold cache: the disk's bound.

Target: as for any uncompressed image of 4 MB or more, <= 0.5x the best
rival (compressed: <= 0.5x, as for compressed full reads).
"""
import os

import numpy as np
from astropy.io import fits

import harness
import rivals
from bench_compressed import sky, write
from bench_images import data_offset, limit_mapped, limit_mt

GROUP = "cold page cache"


def run(workdir, quick):
    os.makedirs(workdir, exist_ok=True)
    lib = harness.limit_lib(workdir)
    n = 2048 if quick else 4096
    repeat = 3 if quick else 5
    plain = os.path.join(workdir, "cold.fits")
    fits.PrimaryHDU(sky((n, n), np.float32, 11)).writeto(plain, overwrite=True)
    rice = write(os.path.join(workdir, "cold_rice.fits"), sky((n, n), np.float32, 12),
                 compress="RICE", qlevel=4.0, qmethod="SUBTRACTIVE_DITHER_1")
    why = harness.drop_page_cache([plain, rice])
    if why:
        for what in ("float32", "float32 RICE_1 q=4"):
            row = harness.case(GROUP, f"first read of a {n}x{n} {what} image, cold page cache: "
                                      "left out", {}, notes=[why])
            yield row
        return
    off = data_offset(plain)
    nbytes = n * n * 4
    for label, path, hdu in ((f"{n}x{n} float32 ({nbytes / 1e6:.0f} MB)", plain, 0),
                             (f"{n}x{n} float32 RICE_1 q=4 ({os.path.getsize(rice) / 1e6:.0f} MB "
                              "on disk)", rice, 1)):
        c = rivals.image_readers(path, hdu)
        if hdu == 0:
            c["limit"] = lambda: limit_mt(lib, plain, off, nbytes, 4, 1)
            c["limit 2 threads"] = lambda: limit_mt(lib, plain, off, nbytes, 4, 2)
            c["limit mmap"] = lambda: limit_mapped(lib, plain, off, nbytes, 4)

        def cold(name, path=path):
            extra = harness.SETUP_FOR.get(harness.package(name))

            def go():
                if extra:
                    extra()
                err = harness.drop_page_cache([path])
                if err:
                    raise RuntimeError(err)
            return go

        setup = {name: cold(name) for name in c}
        yield harness.run_case(GROUP, f"first read of a {label}, cold page cache", dict(c),
                               setup=setup, repeat=repeat, warmup=0, target=0.5)
        yield harness.run_case(GROUP, f"{label}, warm page cache (the same read)", dict(c),
                               repeat=repeat * 2 + 1, target=0.5)
    os.remove(plain)
    os.remove(rice)
