"""Writers of test FITS files, shared by the tests and the benchmarks.

Every function writes with astropy or fitsio (the reference readers) and
returns the path; the tests compare torchfits with what astropy reads back.
Also `run_threads`, the tests' way of reading from several threads.
"""
import gzip
import os
import shutil
import threading

import numpy as np
from astropy.io import fits

# BITPIX -> big-endian numpy dtype of the stored values
BITPIX_DTYPES = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


def random_array(shape, bitpix, seed=0):
    rng = np.random.default_rng(abs(seed))
    dt = np.dtype(BITPIX_DTYPES[bitpix])
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return rng.integers(info.min, info.max, size=shape, dtype=dt.newbyteorder("="), endpoint=True).astype(dt)
    return (rng.standard_normal(shape) * 1000).astype(dt)


def write_astropy(path, data, header=None, extra_hdus=()):
    hdus = [fits.PrimaryHDU(data, header=header)] + list(extra_hdus)
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return str(path)


def write_fitsio(path, data, header=None, compress=None, **kw):
    import fitsio

    if os.path.exists(path):
        os.remove(path)
    with fitsio.FITS(str(path), "rw") as f:
        f.write(data, header=header, compress=compress, **kw)
    return str(path)


def gzip_file(src, dst):
    with open(src, "rb") as fin, gzip.open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    return str(dst)


def write_multi_extension(path):
    """Empty primary, then SCI/ERR/DQ images with EXTVER 1 and 2, then a table."""
    rng = np.random.default_rng(1)
    hdus = [fits.PrimaryHDU()]
    for ver in (1, 2):
        sci = fits.ImageHDU(rng.standard_normal((20, 30)).astype(">f4"), name="SCI", ver=ver)
        err = fits.ImageHDU(rng.random((20, 30)).astype(">f4"), name="ERR", ver=ver)
        dq = fits.ImageHDU(rng.integers(0, 100, (20, 30)).astype(">i2"), name="DQ", ver=ver)
        hdus += [sci, err, dq]
    cols = fits.ColDefs([fits.Column(name="X", format="E", array=np.arange(5, dtype="f4"))])
    hdus.append(fits.BinTableHDU.from_columns(cols, name="CAT"))
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return str(path)


def mixed_table_arrays(nrows, seed=0):
    """Columns of the benchmark table: I, J, K, E, D, mixed (8 numeric)."""
    rng = np.random.default_rng(seed)
    return {
        "ID": np.arange(nrows, dtype=">i8"),
        "RA": rng.uniform(0, 360, nrows).astype(">f8"),
        "DEC": rng.uniform(-90, 90, nrows).astype(">f8"),
        "FLUX": rng.standard_normal(nrows).astype(">f4"),
        "FLUX_ERR": rng.random(nrows).astype(">f4"),
        "FLAGS": rng.integers(-2**31, 2**31 - 1, nrows).astype(">i4"),
        "NOBS": rng.integers(-2**15, 2**15 - 1, nrows).astype(">i2"),
        "Z": rng.random(nrows).astype(">f8"),
    }


def write_table_fitsio(path, arrays, extname=None, header=None):
    """Write a dict of numpy arrays as a binary table with fitsio."""
    import fitsio

    if os.path.exists(path):
        os.remove(path)
    with fitsio.FITS(str(path), "rw") as f:
        f.write(arrays, names=list(arrays), extname=extname, header=header)
    return str(path)


def write_table_astropy(path, columns, extname=None, ascii=False, header=None):
    """Write astropy fits.Column objects as a binary (or ASCII) table."""
    make = fits.TableHDU if ascii else fits.BinTableHDU
    hdu = make.from_columns(fits.ColDefs(list(columns)), name=extname, header=header)
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)
    return str(path)


def write_compressed_astropy(path, data, compression_type="RICE_1", tile_shape=None,
                             header=None, checksum=False, **kw):
    """A tile-compressed image in HDU 1 written by astropy. tile_shape is in
    C order (astropy >= 5.3 spells it tile_shape, older ones tile_size in
    FITS order)."""
    import inspect

    if tile_shape is not None:
        params = inspect.signature(fits.CompImageHDU.__init__).parameters
        if "tile_shape" in params:
            kw["tile_shape"] = tuple(tile_shape)
        else:
            kw["tile_size"] = list(tile_shape)[::-1]
    hdu = fits.CompImageHDU(data, header=header, compression_type=compression_type, **kw)
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True, checksum=checksum)
    return str(path)


def run_threads(work, n):
    """Run work(0) .. work(n - 1) on n threads at once; the exceptions they
    raised (an assert in a thread would otherwise only be printed)."""
    errors = []

    def run(k):
        try:
            work(k)
        except Exception as e:  # noqa: BLE001 - returned to the test
            errors.append(e)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors
