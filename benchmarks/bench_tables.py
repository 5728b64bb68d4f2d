"""Tables: 1,000,000 rows x 8 numeric columns (mixed I/J/K/E/D) into
native-endian torch tensors, torchfits against fitsio and astropy, and a
3-column selection against reading all 8."""
import os

import numpy as np
import torch

import harness
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


def run(workdir, quick):
    os.makedirs(workdir, exist_ok=True)
    nrows = 100_000 if quick else 1_000_000
    repeat = 5 if quick else 15
    path = write_table_fitsio(os.path.join(workdir, "table.fits"), mixed_table_arrays(nrows))
    op = torch.ops.torchfits.read_table

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
    }, repeat=repeat)
    sel = t["torchfits"] / t["torchfits all 8"]
    cases.append({"group": "tables", "case": f"3 of 8 columns, {nrows:,} rows "
                  f"(torchfits 3 / all 8 = {sel:.2f})", "times": t, "unit": "s/read",
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
