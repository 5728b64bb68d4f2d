"""The fast path (pread into the tensor, vectorized swap and scaling, helper
threads, huge pages) against cfitsio's own routines (`_read_cfitsio`) and
fitsio, bit for bit, for every conversion it has: odd widths that leave a
tail after the vector loop, reads split across threads, and outputs large
enough for huge pages."""
import fitsio
import numpy as np
import pytest
import torch
from astropy.io import fits

import torchfits_ops as tf
from fitsgen import random_array
from unsigned import as_numpy, assert_unsigned

# (BITPIX, extra keywords): every conversion kind of csrc/core/common/convert.c
KINDS = [
    (8, {}),                                     # copy
    (16, {}), (32, {}), (64, {}), (-32, {}), (-64, {}),   # byte swap
    (8, {"BZERO": -128}),                        # flip sign: int8
    (16, {"BZERO": 32768}), (32, {"BZERO": 2147483648}),  # unsigned
    (64, {"BZERO": 2**63}),                      # uint64 (float64 before torch 2.3)
    (8, {"BSCALE": 0.5, "BZERO": 3.0, "BLANK": 7}),       # scaled, BLANK -> NaN
    (16, {"BSCALE": 0.1, "BZERO": -2.5, "BLANK": -3}),
    (32, {"BSCALE": 1e-3, "BZERO": 12.0, "BLANK": 5}),
    (64, {"BSCALE": 2.0, "BZERO": 1.0}),
    (-32, {"BSCALE": 3.0, "BZERO": 0.5}),        # scaled floats
    (-64, {"BSCALE": 0.25, "BZERO": -1.0}),
]


def kind_id(k):
    return f"{k[0]}" + "".join(f"-{key}{val}" for key, val in k[1].items())


def write(path, shape, bitpix, keys, seed):
    data = random_array(shape, bitpix, seed=seed)
    if "BLANK" in keys:
        data.flat[::97] = keys["BLANK"]
    hdu = fits.PrimaryHDU(data)
    # astropy would rescale the data for BZERO/BSCALE: set the keywords on
    # the stored values instead, as a raw writer would.
    for key, value in keys.items():
        hdu.header[key] = value
    hdu.writeto(path, overwrite=True, output_verify="silentfix")
    return str(path)


def assert_paths_agree(path, raw=False):
    fast = tf.read(path, raw=raw)
    ref = torch.ops.torchfits._read_cfitsio(path, 0, [], [], None, raw)
    assert fast.dtype == ref.dtype and fast.shape == ref.shape
    if fast.is_floating_point():
        assert torch.equal(torch.isnan(fast), torch.isnan(ref))
        assert torch.equal(fast.nan_to_num(), ref.nan_to_num())
    else:
        assert torch.equal(fast, ref)
    return fast


def assert_matches_fitsio(t, path, keys=None):
    """Equal to fitsio's values; fitsio does not turn BLANK into NaN (astropy
    and torchfits do), so there the stored BLANK pixels must be NaN."""
    bitpix = fits.getheader(path)["BITPIX"]
    if bitpix in (16, 32, 64) and keys == {"BZERO": 2 ** (bitpix - 1)}:  # unsigned
        # fitsio fails (status 412) on BITPIX 64 with BZERO 2^63 written as
        # a number, as here: astropy there
        assert_unsigned(t, fits.getdata(path) if bitpix == 64 else fitsio.read(path), bitpix)
        return
    if t.dtype == torch.float64 and keys and bitpix == 64:
        # fitsio reads scaled BITPIX 64 as int64 and overflows; astropy
        # scales in double, as cfitsio does, so float64 results are exact.
        expected = fits.getdata(path)
    else:
        expected = fitsio.read(path)
    assert tuple(t.shape) == expected.shape
    if keys and "BLANK" in keys:
        with fits.open(path, do_not_scale_image_data=True) as f:
            blank = f[0].data == keys["BLANK"]
        assert blank.any()
        expected = expected.astype(as_numpy(t).dtype)
        expected[blank] = np.nan
    np.testing.assert_array_equal(as_numpy(t), expected.astype(as_numpy(t).dtype))


@pytest.mark.parametrize("kind", KINDS, ids=kind_id)
@pytest.mark.parametrize("width", [1, 3, 15, 17, 33, 65])
def test_odd_widths(tmp_path, kind, width):
    bitpix, keys = kind
    path = write(tmp_path / "w.fits", (3, width), bitpix, keys, seed=width)
    t = assert_paths_agree(path)
    assert_matches_fitsio(t, path, keys)
    assert_paths_agree(path, raw=True)


@pytest.mark.parametrize("kind", KINDS, ids=kind_id)
def test_threaded_and_huge_page_reads(tmp_path, monkeypatch, kind):
    # 2051 x 2053: over the 4 MiB threshold for every type (so helper
    # threads share the chunks), not a multiple of the 256 KiB chunk, of
    # 2880 or of any vector width; float64 output passes 32 MiB (huge pages).
    # The default follows torch.get_num_threads(), which may be 1: ask for 2.
    tf.set_threads(2)
    bitpix, keys = kind
    path = write(tmp_path / "big.fits", (2051, 2053), bitpix, keys, seed=1)
    t = assert_paths_agree(path)
    assert_matches_fitsio(t, path, keys)


def test_one_pixel_every_bitpix(tmp_path):
    for bitpix in (8, 16, 32, 64, -32, -64):
        path = write(tmp_path / f"p{bitpix}.fits", (1,), bitpix, {}, seed=bitpix)
        t = assert_paths_agree(path)
        assert_matches_fitsio(t, path)


def test_cutouts_of_a_large_image_match_fitsio(tmp_path):
    path = write(tmp_path / "c.fits", (1500, 1700), -32, {}, seed=2)
    rng = np.random.default_rng(0)
    with fitsio.FITS(path) as f:
        for _ in range(20):
            y, x = int(rng.integers(0, 1500 - 64)), int(rng.integers(0, 1700 - 64))
            cut = tf.read_cutout(path, 0, [y, x], [64, 64])
            np.testing.assert_array_equal(cut.numpy(), f[0][y:y + 64, x:x + 64])
        # full-width rows: one contiguous span
        cut = tf.read_cutout(path, 0, [100, 0], [300, 1700])
        np.testing.assert_array_equal(cut.numpy(), f[0][100:400, :])


@pytest.mark.parametrize("threads", [1, 3, 16, 0])
def test_thread_count_set(tmp_path, threads):
    path = write(tmp_path / "t.fits", (1031, 1029), -64, {"BSCALE": 0.5, "BZERO": 2.0}, seed=4)
    tf.set_threads(threads)
    t = assert_paths_agree(path)
    assert_matches_fitsio(t, path)


@pytest.mark.parametrize("place", ["first", "last"])
def test_scaling_keywords_found_anywhere_in_a_long_header(tmp_path, place):
    # The HDU description scans the cards once for EXTNAME, EXTVER, BSCALE,
    # BZERO and BLANK before asking cfitsio: keywords after 200 others, or
    # before look-alike names (BZEROX, BSCALE_2, EXTNAMES), must be found.
    stored = random_array((9, 11), 16, seed=8)
    stored[2, 3] = -5
    hdu = fits.ImageHDU(stored)
    filler = [(f"FILL{i:04d}", i) for i in range(200)]
    decoys = [("BZEROX", 99.0), ("BSCALE_2", 7.0), ("EXTNAMES", "decoy"), ("BLANKS", 1)]
    real = [("EXTNAME", "SCI"), ("EXTVER", 3), ("BSCALE", 0.5), ("BZERO", 10.0), ("BLANK", -5)]
    cards = (real + decoys + filler) if place == "first" else (filler + decoys + real)
    for key, value in cards:
        hdu.header[key] = value
    path = str(tmp_path / "h.fits")
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    t = tf.read(path, ("SCI", 3))
    ref = torch.ops.torchfits._read_cfitsio(path, 1, [], [], None, False)
    assert torch.equal(t.nan_to_num(), ref.nan_to_num())
    expected = stored.astype(np.float64) * 0.5 + 10.0
    expected[2, 3] = np.nan
    np.testing.assert_array_equal(t.numpy(), expected.astype(np.float32))
    info = tf.info(path)[1]
    assert (info.name, info.ver) == ("SCI", 3)
    # and absent ones leave the defaults
    plain = write(tmp_path / "p.fits", (4, 5), 16, {}, seed=1)
    assert tf.read(plain).dtype == torch.int16
