"""Write benchmark (issue 19): a 4096x4096 float32 image uncompressed, and a
4096x4096 int16 image RICE_1-compressed, by torchfits, fitsio and astropy,
best of N runs each, into one folder (default: a temporary one).

    python benchmarks/write.py [--dir DIR] [--runs N]
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import torchfits_ops as tf  # noqa: E402


def best(fn, runs):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=None)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    import fitsio
    from astropy.io import fits
    d = args.dir or tempfile.mkdtemp(prefix="tfwrite-")
    g = np.random.default_rng(0)
    f32 = g.standard_normal((4096, 4096)).astype(np.float32)
    i16 = (g.poisson(100, (4096, 4096))).astype(np.int16)
    p = os.path.join(d, "b.fits")
    cases = {
        "float32 4k^2 plain": {
            "torchfits": lambda: tf.write(p, torch.from_numpy(f32), overwrite=True),
            "fitsio": lambda: fitsio.write(p, f32, clobber=True),
            "astropy": lambda: fits.PrimaryHDU(f32).writeto(p, overwrite=True),
        },
        "int16 4k^2 RICE_1": {
            "torchfits": lambda: tf.write(p, torch.from_numpy(i16), compress="RICE_1",
                                          overwrite=True),
            "fitsio": lambda: fitsio.write(p, i16, compress="RICE", clobber=True),
            "astropy": lambda: fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(
                i16, compression_type="RICE_1")]).writeto(p, overwrite=True),
        },
    }
    for case, fns in cases.items():
        res = {name: best(fn, args.runs) for name, fn in fns.items()}
        mb = (f32.nbytes if "float32" in case else i16.nbytes) / 1e6
        line = ", ".join(f"{k} {v * 1e3:.0f} ms ({mb / v:.0f} MB/s)" for k, v in res.items())
        print(f"{case}: {line}; torchfits/fitsio = {res['torchfits'] / res['fitsio']:.2f}")
    os.remove(p)


if __name__ == "__main__":
    main()
