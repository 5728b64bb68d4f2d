"""Tables: 1,000,000 rows x 8 numeric columns (mixed I/J/K/E/D) into
native-endian torch tensors, torchfits against fitsio and astropy, and a
3-column selection against reading all 8.

The 3-column case also times `limit`: limit_table_rows in benchmarks/limit.c,
the pread of every row in 256 KiB blocks on as many threads as torchfits
uses, with nothing done with the bytes. Rows interleave the columns (every
46-byte row puts every column in every cache line and page), so that is the
floor of any selection, and `limit / all 8` bounds `3 / all 8` from below."""
import os

import numpy as np
import torch
from astropy.io import fits

import harness
from bench_images import limit_lib
import torchfits_ops as tf
from fitsgen import mixed_table_arrays, write_table_fitsio

SELECT = ["RA", "DEC", "FLUX"]


def _native(a):
    return torch.from_numpy(a.astype(a.dtype.newbyteorder("="), copy=True))


def fitsio_read(path, columns=None):
    import fitsio

    d = fitsio.read(path, ext=1, columns=columns)
    return {n: _native(d[n]) for n in d.dtype.names}


def astropy_read(path, columns=None):
    from astropy.io import fits

    with fits.open(path, memmap=False) as f:
        d = f[1].data
        return {n: _native(np.asarray(d[n])) for n in (columns or d.names)}


def rows_only(lib, path):
    """limit.c: a function that preads every row of HDU 1, no column work."""
    with fits.open(path) as h:
        offset = h[1].fileinfo()["datLoc"]
        rowlen, nrows = h[1].header["NAXIS1"], h[1].header["NAXIS2"]
    # as many threads as torchfits' table reads use (tf_auto_threads; one
    # below 4 MiB of rows)
    threads = min(int(os.environ.get("TORCHFITS_THREADS") or os.cpu_count() or 1), 16)
    if rowlen * nrows < 4 << 20:
        threads = 1
    raw = path.encode()

    def read():
        if lib.limit_table_rows(raw, offset, rowlen * nrows, rowlen, 256 * 1024, threads) != 0:
            raise OSError(f"limit_table_rows failed on {path}")
    return read


def run(workdir, quick):
    os.makedirs(workdir, exist_ok=True)
    nrows = 100_000 if quick else 1_000_000
    repeat = 5 if quick else 15
    path = write_table_fitsio(os.path.join(workdir, "table.fits"), mixed_table_arrays(nrows))
    op = torch.ops.torchfits.read_table
    rows = rows_only(limit_lib(workdir), path)

    # the results agree before anything is timed
    ours, theirs = op(path, 1, [], 0, -1), fitsio_read(path)
    assert all(torch.equal(ours[n], theirs[n]) for n in theirs)

    label = f"{nrows:,} rows x 8 columns (I/J/K/E/D)"
    t = harness.measure({
        "torchfits": lambda: op(path, 1, [], 0, -1),
        "torchfits (Python API)": lambda: tf.read_table(path),
        "fitsio": lambda: fitsio_read(path),
        "astropy": lambda: astropy_read(path),
    }, repeat=repeat)
    cases = [{"group": "tables", "case": label, "times": t, "unit": "s/read",
              "target": "torchfits <= 0.2 x fitsio", "met": harness.ratio(t) <= 0.2}]

    t = harness.measure({
        "torchfits": lambda: op(path, 1, SELECT, 0, -1),
        "torchfits all 8": lambda: op(path, 1, [], 0, -1),
        "fitsio": lambda: fitsio_read(path, SELECT),
        "limit": rows,
    }, repeat=repeat)
    sel = t["torchfits"] / t["torchfits all 8"]
    floor = t["limit"] / t["torchfits all 8"]
    cases.append({"group": "tables", "case": f"3 of 8 columns, {nrows:,} rows "
                  f"(torchfits 3 / all 8 = {sel:.2f}; limit, the rows alone / all 8 = "
                  f"{floor:.2f})", "times": t, "unit": "s/read",
                  "target": "torchfits 3 columns <= 0.5 x torchfits all 8", "met": sel <= 0.5})

    # a wide table: per-column header work must stay linear
    wide = {f"C{i}": np.arange(10_000, dtype=">f4") + i for i in range(400)}
    wpath = write_table_fitsio(os.path.join(workdir, "wide.fits"), wide)
    t = harness.measure({
        "torchfits": lambda: op(wpath, 1, [], 0, -1),
        "fitsio": lambda: fitsio_read(wpath),
        "astropy": lambda: astropy_read(wpath),
    }, repeat=repeat)
    cases.append({"group": "tables", "case": "400 float32 columns x 10,000 rows", "times": t,
                  "unit": "s/read", "target": None, "met": None})
    return cases
