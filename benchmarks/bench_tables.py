"""Binary tables: 1,000,000 rows x 8 numeric columns (I/J/K/E/D), 3 of
those 8 columns, 400 float32 columns, a variable-length array column and a
fixed-width string column.

Contenders (rivals.py): ours the operator ``torch.ops.torchfits.read_table``
(a dict of tensors; the Python ``read_table`` shown too); torchfits
``read(hdu=1)`` and ``table.read_torch``; ``fitsio.read`` and astropy
(``fits.open(memmap=False)``), their columns as native-endian tensors.
Strings come back as fixed-width bytes from every reader (ours and
torchfits as uint8 tensors [rows, width], fitsio and astropy as numpy
bytes arrays), and are compared as text. Variable-length arrays come
back as one tensor per row from every reader (fitsio's and astropy's
arrays made tensors); ours is the
Python ``read_table`` there (the operator's flat values and offsets shown
too).

`limit` is limit_table_rows in limit.c: the pread of every row (and the
heap, for variable-length arrays) in 256 KiB blocks, on as many threads as
ours uses, with nothing done with the bytes: the floor of any table read
into memory. Rows interleave the columns (every 46-byte row puts every
column in every cache line and page), so it is the floor of a column
selection too.

Target (ours over the best rival): <= 0.5x.
"""
import os

import numpy as np
import torch
from astropy.io import fits

import fitsio
import harness
import rivals
import torchfits
import torchfits_ops as tf
from fitsgen import mixed_table_arrays, write_table_fitsio

GROUP = "tables"
SELECT = ["RA", "DEC", "FLUX"]


def rows_only(lib, path, heap=False):
    """limit.c: a function that preads every row of HDU 1 (and its heap,
    where `heap`), no column work."""
    with fits.open(path) as h:
        offset = h[1].fileinfo()["datLoc"]
        rowlen, nrows = h[1].header["NAXIS1"], h[1].header["NAXIS2"]
        pcount = h[1].header.get("PCOUNT", 0) if heap else 0
    # as many threads as our table reads use (one below 4 MiB of rows)
    threads = min(tf.options()["threads"] or os.cpu_count() or 1, 16)
    if rowlen * nrows < 4 << 20:
        threads = 1
    raw = path.encode()
    nbytes = rowlen * nrows + pcount

    def read():
        if lib.limit_table_rows(raw, offset, nbytes, rowlen, 256 * 1024, threads) != 0:
            raise OSError(f"limit_table_rows failed on {path}")
    return read


def vla_table(path, nrows):
    rng = np.random.default_rng(7)
    lengths = rng.integers(0, 20, nrows)
    flat = rng.standard_normal(int(lengths.sum())).astype(np.float32)
    cells = np.empty(nrows, dtype=object)
    o = 0
    for i, n in enumerate(lengths):
        cells[i] = flat[o:o + n]
        o += n
    cols = [fits.Column(name="ID", format="J", array=np.arange(nrows, dtype=np.int32)),
            fits.Column(name="V", format="PE()", array=cells)]
    fits.BinTableHDU.from_columns(cols).writeto(path, overwrite=True)
    return path


def string_table(path, nrows):
    rng = np.random.default_rng(8)
    words = np.array([f"obj-{i:07d}-{'abcdefgh'[i % 8] * (i % 6)}" for i in range(nrows)])
    rng.shuffle(words)
    cols = [fits.Column(name="NAME", format="20A", array=words)]
    fits.BinTableHDU.from_columns(cols).writeto(path, overwrite=True)
    return path


def run(workdir, quick):
    os.makedirs(workdir, exist_ok=True)
    lib = harness.limit_lib(workdir)
    nrows = 100_000 if quick else 1_000_000
    repeat = 5 if quick else 15
    path = write_table_fitsio(os.path.join(workdir, "table.fits"), mixed_table_arrays(nrows))

    c = rivals.table_readers(path)
    c["limit"] = rows_only(lib, path)
    yield harness.run_case(GROUP, f"{nrows:,} rows x 8 columns (I/J/K/E/D)", c, repeat=repeat,
                           target=0.5)

    c = rivals.table_readers(path, SELECT)
    c["limit"] = rows_only(lib, path)
    yield harness.run_case(GROUP, f"3 of 8 columns, {nrows:,} rows", c, repeat=repeat,
                           target=0.5)
    os.remove(path)

    wide = {f"C{i}": np.arange(10_000, dtype=">f4") + i for i in range(400)}
    wpath = write_table_fitsio(os.path.join(workdir, "wide.fits"), wide)
    c = rivals.table_readers(wpath)
    c["limit"] = rows_only(lib, wpath)
    yield harness.run_case(GROUP, "400 float32 columns x 10,000 rows", c, repeat=repeat,
                           target=0.5)
    os.remove(wpath)

    # variable-length arrays: one tensor per row from every reader
    nv = 20_000 if quick else 100_000
    vpath = vla_table(os.path.join(workdir, "vla.fits"), nv)
    op = torch.ops.torchfits.read_table

    def vla_op_as_rows():
        d = op(vpath, 1, ["V"], 0, -1)
        return {"V": list(torch.tensor_split(d["V"], d["V.offsets"][1:-1]))}

    def fitsio_vla():
        # vstorage="object": one array per row (the default pads every row
        # to the longest)
        rows = fitsio.read(vpath, ext=1, columns=["V"], vstorage="object")["V"]
        return {"V": [rivals.to_tensor(v) for v in rows]}

    def astropy_vla():
        with fits.open(vpath, memmap=False) as f:
            return {"V": [torch.from_numpy(np.asarray(v).astype("=f4")) for v in f[1].data["V"]]}

    c = {"torchfits_ops": lambda: tf.read_table(vpath, 1, ["V"]),
         "torchfits_ops op (flat values + offsets)": lambda: op(vpath, 1, ["V"], 0, -1),
         "torchfits": lambda: torchfits.read(vpath, hdu=1, columns=["V"]),
         "torchfits table.read_torch": lambda: torchfits.table.read_torch(vpath, hdu=1, columns=["V"]),
         "fitsio": fitsio_vla, "astropy": astropy_vla,
         "limit": rows_only(lib, vpath, heap=True)}
    yield harness.run_case(GROUP, f"variable-length float32 arrays (PE), {nv:,} rows of 0-19",
                           c, check={"torchfits_ops op (flat values + offsets)": vla_op_as_rows},
                           repeat=max(3, repeat // 2), target=0.5)
    os.remove(vpath)

    # fixed-width strings: bytes from every reader
    ns = 100_000 if quick else 1_000_000
    spath = string_table(os.path.join(workdir, "str.fits"), ns)

    def astropy_str():
        with fits.open(spath, memmap=False) as f:
            return {"NAME": np.asarray(f[1].data["NAME"])}

    c = {"torchfits_ops": lambda: op(spath, 1, ["NAME"], 0, -1),
         "torchfits_ops read_table (list of str)": lambda: tf.read_table(spath, 1, ["NAME"]),
         "torchfits": lambda: torchfits.read(spath, hdu=1, columns=["NAME"]),
         "torchfits table.read_torch": lambda: torchfits.table.read_torch(spath, hdu=1,
                                                                          columns=["NAME"]),
         "fitsio": lambda: {"NAME": fitsio.read(spath, ext=1, columns=["NAME"])["NAME"]},
         "astropy": astropy_str, "limit": rows_only(lib, spath)}
    yield harness.run_case(GROUP, f"fixed-width strings (20A), {ns:,} rows", c,
                           repeat=max(3, repeat // 2), target=0.5)
    os.remove(spath)
