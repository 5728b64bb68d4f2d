"""Write benchmark: by torchfits, fitsio and astropy, best of N runs each,
into one folder (default: a temporary one):
  - a 4096x4096 float32 image uncompressed;
  - a 4096x4096 int16 image RICE_1-compressed;
  - an image and a 1e6-row table (4 columns) in one file;
  - a table of 1e4 rows with a variable-length float32 column (0-63 each;
    fitsio writes variable-length rows in time quadratic in the rows);
  - appending a 2048x2048 float32 image to a 4096x4096 float32 file (the
    file is put back before each run; that copy is timed for every tool).

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
    n = 1_000_000
    cols = {"ra": g.uniform(0, 360, n), "dec": g.uniform(-90, 90, n),
            "flux": g.random(n).astype(np.float32), "id": np.arange(n, dtype=np.int64)}
    tcols = {k: torch.from_numpy(v) for k, v in cols.items()}
    rec = np.zeros(n, dtype=[(k, v.dtype) for k, v in cols.items()])
    for k, v in cols.items():
        rec[k] = v
    small = f32[:1024, :1024]
    cases["image 1k^2 + table 1e6 rows"] = {
        "torchfits": lambda: tf.write(p, [torch.from_numpy(small), tcols], overwrite=True),
        "fitsio": lambda: (fitsio.write(p, small, clobber=True), fitsio.write(p, rec)),
        "astropy": lambda: fits.HDUList([fits.PrimaryHDU(small), fits.BinTableHDU(rec)]).writeto(
            p, overwrite=True),
    }
    lengths = g.integers(0, 64, 10_000)
    rows = [g.random(k).astype(np.float32) for k in lengths]
    trows = [torch.from_numpy(r) for r in rows]
    vla = np.zeros(len(rows), dtype=[("spec", object)])
    vla["spec"] = rows
    cases["VLA table 1e4 rows"] = {
        "torchfits": lambda: tf.write_table(p, {"spec": trows}, overwrite=True),
        "fitsio": lambda: fitsio.write(p, vla, clobber=True),
        "astropy": lambda: fits.BinTableHDU.from_columns(
            [fits.Column(name="spec", format="PE()", array=np.array(rows, dtype=object))]).writeto(
            p, overwrite=True),
    }
    base = os.path.join(d, "base.fits")
    fits.PrimaryHDU(f32).writeto(base, overwrite=True)
    add = f32[:2048, :2048]

    def fresh():
        import shutil
        shutil.copyfile(base, p)

    cases["append 2k^2 to a 4k^2 file"] = {
        "torchfits": lambda: (fresh(), tf.write(p, torch.from_numpy(add), append=True)),
        "fitsio": lambda: (fresh(), fitsio.write(p, add)),
        "astropy": lambda: (fresh(), fits.append(p, add)),
    }
    sizes = {"float32 4k^2 plain": f32.nbytes, "int16 4k^2 RICE_1": i16.nbytes,
             "image 1k^2 + table 1e6 rows": small.nbytes + rec.nbytes,
             "VLA table 1e4 rows": sum(r.nbytes for r in rows),
             "append 2k^2 to a 4k^2 file": add.nbytes}
    for case, fns in cases.items():
        res = {name: best(fn, args.runs) for name, fn in fns.items()}
        mb = sizes[case] / 1e6
        line = ", ".join(f"{k} {v * 1e3:.0f} ms ({mb / v:.0f} MB/s)" for k, v in res.items())
        print(f"{case}: {line}; torchfits/fitsio = {res['torchfits'] / res['fitsio']:.2f}")
    os.remove(p)
    os.remove(base)


if __name__ == "__main__":
    main()
