"""How each contender reads: ours (torchfits_ops) and the rivals, the PyPI
package torchfits (another project, 1.3.1), fitsio and astropy.

Every reader returns what a PyTorch user wants: native-endian tensors
(fitsio's and astropy's numpy arrays go through torch.from_numpy, after a
byte swap where they are big-endian, and that cost counts). Where a rival
has more than one documented call for the job, each is a contender
("torchfits read_tensor"), and the best rival of a case is the fastest of
them all.

torchfits keeps an in-process cache of whole read results (a later read
of the same file returns a copy of the first) beside caches of header
metadata. `clear_torchfits_data_cache` (harness.SETUP_FOR) empties the data cache, untimed, before each
timed call of a torchfits contender, so that every call reads the file;
its metadata caches stay warm (which can only help it).
"""
import numpy as np
import torch
from astropy.io import fits

import fitsio
import harness
import torchfits
import torchfits_ops as tf

# torch before 2.3 has no uint16/uint32: ours widens them there, and so
# must the others, for the same tensors.
WIDEN = {} if hasattr(torch, "uint16") else {np.dtype(np.uint16): np.int32,
                                              np.dtype(np.uint32): np.int64}


def to_tensor(a):
    """A native-endian tensor of a numpy array, as cheaply as numpy allows."""
    native = a.dtype.newbyteorder("=")
    want = WIDEN.get(native, native)
    if a.dtype != want:
        a = a.astype(want)
    return torch.from_numpy(a)


def clear_torchfits_data_cache():
    torchfits.clear_file_cache(data=True, meta=False, hdu_types=False, stats=False, cpp=False)


harness.SETUP_FOR["torchfits"] = clear_torchfits_data_cache


# ---- whole images (plain or tile-compressed) ----

def image_readers(path, hdu=0, astropy_memmap=False):
    """Whole-image reads. HDU numbers are 0-based for all four."""
    def ours():
        return tf.read(path, hdu)

    def tf_read():
        return torchfits.read(path, hdu=hdu)

    def tf_read_tensor():
        return torchfits.read_tensor(path, hdu=hdu)

    def fitsio_read():
        return to_tensor(fitsio.read(path, ext=hdu))

    def astropy_read():
        return to_tensor(fits.getdata(path, ext=hdu, memmap=astropy_memmap))

    return {"torchfits_ops": ours, "torchfits": tf_read, "torchfits read_tensor": tf_read_tensor,
            "fitsio": fitsio_read, "astropy": astropy_read}


# ---- cutouts ----

def cutout_readers(path, hdu, corners, size=64):
    """`len(corners)` cutouts of size x size at (row, column) corners, each
    reader keeping one file (or reader) open across them, as slicing an
    open file does; the one-shot calls (open, read, close per cutout) are
    variants."""
    def ours():
        with tf.open(path) as f:
            h = f[hdu]
            return [h[y:y + size, x:x + size] for y, x in corners]

    def ours_oneshot():
        return [tf.read_cutout(path, hdu, [y, x], [size, size]) for y, x in corners]

    def ours_many():  # every region in one call into the open file
        with tf.open(path) as f:
            return list(f[hdu].cutouts(corners, [size, size]))

    def tf_reader():
        with torchfits.open_subset_reader(path, hdu=hdu) as r:
            return [r.read_subset(x, y, x + size, y + size) for y, x in corners]

    def tf_oneshot():
        return [torchfits.read_subset(path, hdu, x, y, x + size, y + size) for y, x in corners]

    def fitsio_cuts():
        with fitsio.FITS(path) as f:
            h = f[hdu]
            return [to_tensor(h[y:y + size, x:x + size]) for y, x in corners]

    def astropy_cuts():
        with fits.open(path) as hl:  # .section reads only the region
            s = hl[hdu].section
            return [to_tensor(s[y:y + size, x:x + size]) for y, x in corners]

    return {"torchfits_ops": ours, "torchfits_ops open per cutout": ours_oneshot,
            "torchfits_ops cutouts() in one call": ours_many,
            "torchfits": tf_reader, "torchfits open per cutout": tf_oneshot,
            "fitsio": fitsio_cuts, "astropy": astropy_cuts}


# ---- headers ----

def header_readers(paths):
    """Every header of `paths` as a dict-like of typed values."""
    def loop(fn):
        return lambda: [fn(p) for p in paths]

    return {"torchfits_ops": loop(tf.read_header),
            "torchfits": loop(torchfits.read_header),
            "fitsio": loop(fitsio.read_header),
            "astropy": loop(lambda p: dict(fits.getheader(p)))}


def header_values(h):
    """A header as {KEY: value} without COMMENT/HISTORY, for comparison."""
    if hasattr(h, "records"):  # fitsio FITSHDR
        items = [(r["name"], r["value"]) for r in h.records()]
    else:
        items = list(h.items())
    out = {}
    for k, v in items:
        k = str(k).upper()
        if k in ("COMMENT", "HISTORY", "") or k in out:
            continue
        if isinstance(v, str):
            v = v.rstrip(" ")
        out[k] = v
    return out


def header_diff(ref, got):
    for i, (a, b) in enumerate(zip(ref, got)):
        a, b = header_values(a), header_values(b)
        if a.keys() != b.keys():
            return f"file {i}: other keywords ({sorted(set(a) ^ set(b))[:5]})"
        for k in a:
            x, y = a[k], b[k]
            if isinstance(x, bool) or isinstance(y, bool):
                same = bool(x) == bool(y) and type(x) is type(y)
            elif isinstance(x, (int, float)) and isinstance(y, (int, float)):
                same = float(x) == float(y)
            else:
                same = str(x) == str(y)
            if not same:
                return f"file {i}: {k} = {y!r}, not {x!r}"
    return None


# ---- tables ----

def _native(a):
    a = np.asarray(a)
    return torch.from_numpy(np.ascontiguousarray(a.astype(a.dtype.newbyteorder("="), copy=False)))


def table_readers(path, columns=None, hdu=1):
    """Numeric columns as tensors, keyed by name."""
    op = torch.ops.torchfits.read_table
    cols = list(columns) if columns else []

    def ours():
        return op(path, hdu, cols, 0, -1)

    def tf_read():
        return torchfits.read(path, hdu=hdu, columns=columns)

    def tf_read_torch():
        return torchfits.table.read_torch(path, hdu=hdu, columns=columns)

    def fitsio_read():
        d = fitsio.read(path, ext=hdu, columns=columns)
        return {n: _native(d[n]) for n in d.dtype.names}

    def astropy_read():
        with fits.open(path, memmap=False) as f:
            d = f[hdu].data
            return {n: _native(d[n]) for n in (columns or d.names)}

    return {"torchfits_ops": ours, "torchfits_ops read_table": lambda: tf.read_table(path, hdu, columns),
            "torchfits": tf_read, "torchfits table.read_torch": tf_read_torch,
            "fitsio": fitsio_read, "astropy": astropy_read}
