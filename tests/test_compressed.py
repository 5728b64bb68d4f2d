"""Tile-compressed images (csrc/core/compress): the parallel tile reader
compared with astropy, fitsio and cfitsio's own single-threaded path on
files astropy and fitsio wrote; cutouts; threads; bad input."""
import concurrent.futures
import os
import re
import subprocess
import sys

import fitsio
import numpy as np
import pytest
import torch
from astropy.io import fits

import torchfits_ops as tf
from fitsgen import random_array, write_compressed_astropy, write_fitsio
from unsigned import HAS_UNSIGNED, as_numpy, unsigned_dtype

# Big enough (over 2 MiB of output) that full reads go parallel.
BIG = (1031, 613)
ODD = (131, 97)


def cfitsio_read(path, hdu=1, start=(), shape=(), step=None, raw=False):
    return torch.ops.torchfits._read_cfitsio(str(path), hdu, list(start), list(shape), step, raw)


def astropy_read(path, hdu=1):
    with fits.open(path) as f:
        return np.array(f[hdu].data)


def smooth(shape, dtype, seed=0, noise=20.0):
    """Sky-like data: compresses as real images do, and quantizes sensibly."""
    rng = np.random.default_rng(seed)
    idx = np.indices(shape)
    img = 1000 + 50 * np.sin(idx[-1] / 37.0) + 30 * np.cos(idx[0] / 23.0)
    img = img + rng.normal(0, noise, shape)
    return img.astype(dtype)


def check_all_paths(path, expected, monkeypatch, cutouts=True):
    """Full read equals astropy, cfitsio's path and the one-thread read;
    cutouts (with steps, over tile edges) equal astropy's slices."""
    t = tf.read(path, 1)
    assert tuple(t.shape) == expected.shape
    np.testing.assert_array_equal(as_numpy(t), expected)
    ref = cfitsio_read(path)
    assert t.dtype == ref.dtype
    # Bit for bit, NaNs included.
    assert torch.equal(t.flatten().view(torch.uint8), ref.flatten().view(torch.uint8))
    tf.set_threads(1)
    one = tf.read(path, 1)
    tf.set_threads(0)
    assert torch.equal(one.flatten().view(torch.uint8), t.flatten().view(torch.uint8))
    if not cutouts:
        return
    h, w = expected.shape
    rng = np.random.default_rng(5)
    boxes = [((0, 0), (h, w), (1, 1)), ((h - 1, w - 1), (1, 1), (1, 1)),
             ((3, 5), ((h - 4) // 3, (w - 6) // 2), (3, 2))]
    for _ in range(4):
        y, x = int(rng.integers(0, h - 10)), int(rng.integers(0, w - 10))
        ch, cw = int(rng.integers(1, h - y)), int(rng.integers(1, w - x))
        boxes.append(((y, x), (ch, cw), (1, 1)))
    for start, shape, step in boxes:
        cut = tf.read_cutout(path, 1, list(start), list(shape), list(step))
        sl = tuple(slice(s, s + (n - 1) * k + 1, k) for s, n, k in zip(start, shape, step))
        np.testing.assert_array_equal(as_numpy(cut), expected[sl])
        ref = cfitsio_read(path, 1, start, shape, list(step))
        assert torch.equal(cut.flatten().view(torch.uint8), ref.flatten().view(torch.uint8))


INT_ALGOS = ["RICE_1", "GZIP_1", "GZIP_2", "HCOMPRESS_1", "PLIO_1"]


@pytest.mark.parametrize("algo", INT_ALGOS)
@pytest.mark.parametrize("tiles", ["rows", "2d"])
def test_int16_astropy(tmp_path, monkeypatch, algo, tiles):
    shape = ODD if algo == "PLIO_1" else BIG
    data = smooth(shape, ">i2", seed=1)
    if algo == "PLIO_1":  # PLIO holds masks of non-negative values
        data = (data % 64).astype(">i2")
    # fpack's defaults: one row per tile (16 rows for HCOMPRESS); 2-d tiles
    # with partial last tiles.
    rows = 16 if algo == "HCOMPRESS_1" else 1
    tile = (rows, shape[1]) if tiles == "rows" else (64, 48)
    path = write_compressed_astropy(tmp_path / "c.fits", data, algo, tile)
    check_all_paths(path, astropy_read(path), monkeypatch)


@pytest.mark.parametrize("bitpix", [8, 32])
@pytest.mark.parametrize("algo", ["RICE_1", "GZIP_2", "HCOMPRESS_1"])
def test_other_int_types_astropy(tmp_path, monkeypatch, bitpix, algo):
    if bitpix == 8 and algo == "HCOMPRESS_1":
        pytest.skip("astropy writes HCOMPRESS for 16/32-bit data")
    data = random_array(BIG, bitpix, seed=2)
    if bitpix == 32:
        data = (data // 1024).astype(">i4")  # HCOMPRESS keeps 32-bit values below 2^31/ 4
    path = write_compressed_astropy(tmp_path / "c.fits", data, algo, (40, 100))
    expected = astropy_read(path)
    check_all_paths(path, expected, monkeypatch)
    assert tf.read(path, 1).dtype == {8: torch.uint8, 32: torch.int32}[bitpix]


@pytest.mark.parametrize("algo", ["RICE_1", "GZIP_1", "GZIP_2", "HCOMPRESS_1"])
@pytest.mark.parametrize("method", [-1, 1, 2], ids=["NO_DITHER", "DITHER_1", "DITHER_2"])
@pytest.mark.parametrize("dtype", [">f4", ">f8"])
def test_quantized_floats_astropy(tmp_path, monkeypatch, algo, method, dtype):
    # No NaN here: astropy 5.2 quantizes NaN without writing ZBLANK (every
    # reader then returns garbage there); NaNs are tested on fitsio's files.
    data = smooth(BIG, dtype, seed=3)
    data[200, 3:40] = 0.0  # SUBTRACTIVE_DITHER_2 keeps exact zeros
    tile = (1, BIG[1]) if algo != "HCOMPRESS_1" else (32, 64)
    path = write_compressed_astropy(tmp_path / "q.fits", data, algo, tile,
                                    quantize_method=method, quantize_level=4.0, dither_seed=42)
    expected = astropy_read(path)
    t = tf.read(path, 1)
    assert t.dtype == {">f4": torch.float32, ">f8": torch.float64}[dtype]
    if method == 2:
        assert (t[200, 3:40] == 0).all()
    check_all_paths(path, expected, monkeypatch)


@pytest.mark.parametrize("algo", ["GZIP_1", "GZIP_2"])
def test_lossless_floats_astropy(tmp_path, monkeypatch, algo):
    data = random_array(BIG, -32, seed=4)
    data[3, 3] = np.nan
    path = write_compressed_astropy(tmp_path / "l.fits", data, algo, (50, 50),
                                    quantize_level=0.0)
    np.testing.assert_array_equal(astropy_read(path), data)
    check_all_paths(path, data, monkeypatch)


def test_blank_and_scaling(tmp_path, monkeypatch):
    """Integers with BLANK and BSCALE/BZERO: floats, BLANK pixels NaN."""
    raw = smooth(BIG, ">i2", seed=5)
    raw[10, 10:20] = -32768
    hdr = fits.Header()
    hdr["BLANK"] = -32768
    hdu = fits.CompImageHDU(raw, header=hdr, compression_type="RICE_1",
                            do_not_scale_image_data=True)
    path = tmp_path / "b.fits"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    # astropy 8 drops BSCALE/BZERO given with raw data, so they are added to
    # the stored table's header, where cfitsio and astropy 5 put them.
    with fits.open(path, mode="update", disable_image_compression=True) as f:
        f[1].header["BSCALE"] = 0.5
        f[1].header["BZERO"] = 100.0
    t = tf.read(path, 1)
    assert t.dtype == torch.float32
    assert torch.isnan(t[10, 10:20]).all() and not torch.isnan(t[11]).any()
    expected = raw.astype(np.float64) * 0.5 + 100.0
    expected[10, 10:20] = np.nan
    np.testing.assert_array_equal(t.numpy(), expected.astype(np.float32))
    check_all_paths(path, t.numpy(), monkeypatch)
    np.testing.assert_array_equal(tf.read(path, 1, raw=True).numpy(), raw)
    np.testing.assert_array_equal(cfitsio_read(path, raw=True).numpy(), raw)


@pytest.mark.parametrize("algo,kw", [
    ("RICE", {}),
    ("GZIP", {}),
    ("GZIP_2", {}),
    ("HCOMPRESS", {}),
    ("RICE", {"qmethod": "SUBTRACTIVE_DITHER_2"}),
    ("GZIP_2", {"qmethod": "NO_DITHER"}),
])
@pytest.mark.parametrize("dtype", ["i2", "i4", "f4"])
def test_fitsio_written(tmp_path, monkeypatch, algo, kw, dtype):
    import fitsio

    data = smooth(BIG, dtype, seed=6)
    if dtype == "f4":
        data[0, 0:5] = 0.0
        data[7, 9] = np.nan
        data[100, :50] = np.nan
        kw = dict(kw, qlevel=8.0)
    elif kw:
        pytest.skip("quantization applies to floats")
    path = write_fitsio(tmp_path / "f.fits", data, compress=algo, tile_dims=[100, 77], **kw)
    expected = fitsio.read(str(path), ext=1)
    np.testing.assert_array_equal(expected, astropy_read(path))
    check_all_paths(path, expected, monkeypatch)
    # fitsio 1.1.8 (like astropy 5.2) quantizes NaN without ZBLANK, so
    # those pixels come back as the same finite value from every reader.


@pytest.mark.parametrize("algo", ["RICE_1", "HCOMPRESS_1"])
def test_3d_and_1d(tmp_path, monkeypatch, algo):
    cube = smooth((5, 300, 400), ">i2", seed=7)
    tile = (2, 64, 64) if algo == "RICE_1" else (1, 64, 64)  # HCOMPRESS tiles are 2-d
    path = write_compressed_astropy(tmp_path / "cube.fits", cube, algo, tile)
    t = tf.read(path, 1)
    np.testing.assert_array_equal(t.numpy(), astropy_read(path))
    assert torch.equal(t, cfitsio_read(path))
    cut = tf.read_cutout(path, 1, [1, 50, 60], [2, 80, 200], [2, 3, 1])
    np.testing.assert_array_equal(cut.numpy(), astropy_read(path)[1:4:2, 50:288:3, 60:260])
    if algo == "RICE_1":
        line = smooth((1, 3_000_001), ">i2", seed=8)[0]
        path = write_compressed_astropy(tmp_path / "line.fits", line, algo, (100_000,))
        np.testing.assert_array_equal(tf.read(path, 1).numpy(), line)
        np.testing.assert_array_equal(tf.read_cutout(path, 1, [99_990], [30]).numpy(),
                                      line[99_990:100_020])


def test_gzip_file_holding_compressed_hdu(tmp_path, monkeypatch):
    from fitsgen import gzip_file

    data = smooth(BIG, ">i2", seed=9)
    path = write_compressed_astropy(tmp_path / "c.fits", data, "RICE_1", (16, 613))
    gz = gzip_file(path, tmp_path / "c.fits.gz")
    np.testing.assert_array_equal(tf.read(gz, 1).numpy(), data)
    np.testing.assert_array_equal(tf.read_cutout(gz, 1, [5, 7], [40, 30]).numpy(),
                                  data[5:45, 7:37])


def test_many_threads_many_files(tmp_path):
    """Reads from many Python threads at once, each parallel inside, over
    files that share names with handles open elsewhere: identical results."""
    files, expected = [], []
    for i, algo in enumerate(["RICE_1", "GZIP_2", "HCOMPRESS_1", "RICE_1"]):
        data = smooth(BIG, ">f4" if i % 2 else ">i2", seed=10 + i)
        p = write_compressed_astropy(tmp_path / f"m{i}.fits", data, algo, (32, 613),
                                     quantize_level=4.0, quantize_method=1)
        files.append(p)
        expected.append(cfitsio_read(p))
    jobs = list(range(32))

    def one(n):
        i = n % len(files)
        if n % 3 == 2:
            return tf.read_cutout(files[i], 1, [100, 0], [700, 613]), expected[i][100:800]
        return tf.read(files[i], 1), expected[i]

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        for t, ref in ex.map(one, jobs):
            assert t.shape == ref.shape
            assert torch.equal(t.flatten().view(torch.uint8), ref.flatten().view(torch.uint8))


def test_memory_stays_bounded(tmp_path):
    """Peak memory of a full read: the output plus a few tiles per thread."""
    data = smooth((2048, 2048), ">f4", seed=11)
    path = write_compressed_astropy(tmp_path / "m.fits", data, "RICE_1", (128, 128),
                                    quantize_level=4.0)
    code = f"""
import resource, sys
sys.path.insert(0, {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))!r})
import torchfits_ops as tf
tf.read_cutout({path!r}, 1, [0, 0], [1, 1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = tf.read({path!r}, 1)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024, t.numel() * 4)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    grew, nbytes = map(int, out.stdout.split())
    # 16 MiB of output; a row of 16 tiles of 64 KiB per thread is 1 MiB.
    assert grew < nbytes + 8 * 2**20, (grew, nbytes)


# ---- bad input ----

def table_layout(path):
    """(data offset, row width, column byte positions) of HDU 1's table."""
    with fits.open(path, disable_image_compression=True) as f:
        h = f[1].header
        loc = f[1].fileinfo()["datLoc"]
        cols = [h[f"TTYPE{i}"] for i in range(1, h["TFIELDS"] + 1)]
        pos, widths = {}, 0
        for i, c in enumerate(cols, 1):
            pos[c] = widths
            form = h[f"TFORM{i}"]
            widths += 16 if "Q" in form else 8 if "P" in form else \
                {"D": 8, "E": 4, "J": 4, "K": 8}[form.strip()[-1]]
        return loc, h["NAXIS1"], pos


def patch(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def replace_card(path, key, value):
    raw = bytearray(open(path, "rb").read())
    m = re.search(rb"%s\s*=[^/]{21}" % key.encode().ljust(8), bytes(raw))
    assert m
    card = (key.ljust(8) + "= " + value.rjust(20)).encode()
    raw[m.start():m.start() + len(card)] = card
    open(path, "wb").write(bytes(raw))


@pytest.fixture
def rice_file(tmp_path):
    data = smooth((64, 80), ">i2", seed=12)
    return write_compressed_astropy(tmp_path / "bad.fits", data, "RICE_1", (1, 80)), data


def assert_fails(path, match, exc=tf.FitsError):
    with pytest.raises(exc) as e:
        tf.read(path, 1)
    msg = str(e.value)
    assert str(path) in msg and "HDU 1" in msg, msg
    assert re.search(match, msg), msg
    return msg


def test_truncated_tile(rice_file):
    path, _ = rice_file
    loc, width, pos = table_layout(path)
    row = loc + 9 * width + pos["COMPRESSED_DATA"]
    length = int.from_bytes(open(path, "rb").read()[row:row + 4], "big")
    patch(path, row, (length // 4).to_bytes(4, "big"))
    msg = assert_fails(path, r"tile 10\b")
    assert "decode" in msg
    # A cutout that avoids the tile still reads; one that touches it fails.
    assert tuple(tf.read_cutout(path, 1, [20, 0], [5, 80]).shape) == (5, 80)
    with pytest.raises(tf.FitsError, match=r"tile 10\b"):
        tf.read_cutout(path, 1, [8, 0], [3, 80])


def test_descriptor_outside_heap(rice_file):
    path, _ = rice_file
    loc, width, pos = table_layout(path)
    patch(path, loc + 5 * width + pos["COMPRESSED_DATA"] + 4, (10**9).to_bytes(4, "big"))
    assert_fails(path, r"tile 6\b.*outside the heap")
    patch(path, loc + 5 * width + pos["COMPRESSED_DATA"], (2**31 - 1).to_bytes(4, "big"))
    assert_fails(path, r"tile 6\b.*outside the heap")


def test_garbage_tiles_never_crash(tmp_path):
    """Random bytes over the heap of every algorithm: an error naming the
    file, or some image of the right shape; never a crash or a hang."""
    rng = np.random.default_rng(13)
    for algo in ["RICE_1", "GZIP_1", "GZIP_2", "HCOMPRESS_1", "PLIO_1"]:
        data = smooth((64, 80), ">i2", seed=14)
        if algo == "PLIO_1":
            data = (data % 64).astype(">i2")
        path = write_compressed_astropy(tmp_path / f"g{algo}.fits", data, algo, (16, 16))
        loc, width, _ = table_layout(path)
        heap = loc + width * 20
        size = os.path.getsize(path)
        for trial in range(6):
            p = tmp_path / f"g{algo}{trial}.fits"
            raw = bytearray(open(path, "rb").read())
            n = int(rng.integers(1, 200))
            at = int(rng.integers(heap, size - n))
            raw[at:at + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
            p.write_bytes(bytes(raw))
            try:
                t = tf.read(p, 1)
                assert tuple(t.shape) == (64, 80)
            except tf.FitsError as e:
                assert str(p) in str(e) and "HDU 1" in str(e)


def test_unknown_compression_type(rice_file):
    path, _ = rice_file
    replace_card(path, "ZCMPTYPE", "'FOO_1   '")
    with pytest.raises((tf.FitsError, TypeError)) as e:
        tf.read(path, 1)
    assert str(path) in str(e.value) and "HDU 1" in str(e.value)


@pytest.mark.parametrize("key,value,match", [
    ("ZNAXIS2", "640", r"inconsistent|tiles|truncated|table"),
    # ZTILE1 = 1000000 on this 80-pixel axis is one tile a row, clipped as
    # astropy and fitsio read it (test_limits.py); ZTILE2 so large makes
    # one tile of a 64-row table
    ("ZTILE2", "1000000", r"inconsistent|ZTILE|tiles"),
    ("ZTILE2", "0", r"ZTILE|tile"),
])
def test_inconsistent_tiling(rice_file, key, value, match):
    path, _ = rice_file
    replace_card(path, key, value)
    with pytest.raises((tf.FitsError, RuntimeError)) as e:
        tf.read(path, 1)
    msg = str(e.value)
    assert str(path) in msg and "HDU 1" in msg and re.search(match, msg), msg



@pytest.mark.parametrize("value,match", [
    ("0                  32", r"ZVAL1 +is not a number"),  # cfitsio: 0, SIGFPE
    ("32", None),  # no blank after "=": cfitsio reads 32, so do we
])
def test_value_right_after_equals(rice_file, value, match):
    """A value that starts in column 10, with no blank after the "=", is
    the value cfitsio reads: the guard reads it from there too (fuzzer:
    fpe-rice-zval1-no-blank, where it read "0   32" as 32)."""
    path, data = rice_file
    raw = bytearray(open(path, "rb").read())
    at = bytes(raw).index(b"ZVAL1   = ")
    raw[at:at + 80] = ("ZVAL1   =" + value).ljust(80).encode()
    open(path, "wb").write(bytes(raw))
    if match:
        assert_fails(path, match)
    else:
        np.testing.assert_array_equal(tf.read(path, 1).numpy(), data)


def set_card(path, key, card):
    """Replace the card of `key` (as written) with `card`, as is."""
    raw = bytearray(open(path, "rb").read())
    at = bytes(raw).index(key.ljust(8).encode() + b"=")
    raw[at:at + 80] = card.ljust(80).encode()
    open(path, "wb").write(bytes(raw))


@pytest.mark.parametrize("changes,match", [
    # cfitsio finds keywords in any case: its integer parser then aborted
    # on this value (fuzzer: abort-znaxis-lower-case)
    ([("ZNAXIS2", "ZNAXiS2 = " + "x" * 60 + "64")], r"ZNAXiS2 +is not a number"),
    # twice, a bad value first: cfitsio may take either card, and took the
    # bad one (SIGFPE); the guard had kept the last
    ([("ZNAME1", "ZVAL1   =                    0")], r"RICE block size ZVAL1 = 0"),
    # a second XTENSION card, which cfitsio ignores, had cleared the first
    ([("ZNAME1", "XTENSION= 'IMAGE   '"), ("ZVAL1", "ZVAL1   =                    0")],
     r"RICE block size ZVAL1 = 0"),
    # A3DTABLE is a binary table to cfitsio: the block size 0 divided
    ([("XTENSION", "XTENSION= 'A3DTABLE'"), ("ZVAL1", "ZVAL1   =                    0")],
     r"RICE block size ZVAL1 = 0"),
    # cfitsio takes the text after an "=" in any column as the value: the
    # guard passed the card over and ffc2j aborted on it (fuzzer:
    # abort-znaxis-no-value-indicator)
    ([("ZNAXIS2", "ZNAXIS2 \x7f x= " + "x" * 60 + "64")], r"ZNAXIS2 +is not a number"),
    ([("ZVAL1", "ZVAL1     =                  0")], r"RICE block size ZVAL1 = 0"),
    # and finds keywords behind HIERARCH
    ([("ZVAL1", "HIERARCH ZVAL1 = 0")], r"RICE block size ZVAL1 = 0"),
    ([("ZNAME1", "HIERARCH ZBITPIX = 16")], r"keyword ZBITPIX appears twice"),
])
def test_guard_matches_names_as_cfitsio_does(rice_file, changes, match):
    """The guard reads keyword names, repeated keywords and extension types
    the way cfitsio may, so that no header it lets through makes cfitsio
    crash."""
    path, _ = rice_file
    for key, card in changes:
        set_card(path, key, card)
    assert_fails(path, match)


@pytest.mark.parametrize("key,card", [
    ("ZNAXIS1", "ZNAXIS1   =                   80"),
    ("ZVAL1", "ZVAL1  =                     32"),
    ("ZVAL1", "HIERARCH ZVAL1 = 32"),
])
def test_guard_takes_values_cfitsio_takes(rice_file, key, card):
    """A good value with its "=" out of column 9, or behind HIERARCH, is
    checked as cfitsio reads it and the image still reads."""
    path, data = rice_file
    set_card(path, key, card)
    np.testing.assert_array_equal(tf.read(path, 1).numpy(), data)


@pytest.mark.parametrize("card,scale,zero", [
    ("HIERARCH BZERO = 32768", 1, 32768),
    ("HIERARCH BSCALE = 2.0", 2, 0),
    ("HIERARCH BSCALE = 0", 0, 0),
])
def test_scaling_behind_hierarch(rice_file, card, scale, zero):
    """cfitsio's lookup finds BSCALE and BZERO behind HIERARCH, and its
    tile reader scaled by them while the HDU's description (and so the
    dtype and the other read path) did not (header variants: the paths
    disagreed on "HIERARCH BSCALE = 0"). Both paths now take them, as
    fitsio does."""
    path, data = rice_file
    add_card(path, card)
    if scale == 0:
        for read in (lambda: tf.read(path, 1),
                     lambda: torch.ops.torchfits._read_cfitsio(str(path), 1, [], [], None, False)):
            with pytest.raises((tf.FitsError, RuntimeError), match=r"bad\.fits: HDU 1: BSCALE is 0"):
                read()
        return
    want = data.astype(np.float64) * scale + zero
    np.testing.assert_array_equal(fitsio.read(str(path), ext=1).astype(np.float64), want)
    fast = tf.read(path, 1)
    slow = torch.ops.torchfits._read_cfitsio(str(path), 1, [], [], None, False)
    assert fast.dtype == slow.dtype == (unsigned_dtype(16) if zero else torch.float32)
    np.testing.assert_array_equal(as_numpy(fast).astype(np.float64), want)
    assert torch.equal(fast, slow)


def test_guard_reads_the_whole_header(tmp_path):
    """cfitsio takes a keyword wherever it is in the header: a RICE block
    size of 0 after 2,400 HISTORY cards (block 68) had been past the
    guard's 64 blocks, and divided (SIGFPE). The same for a primary header
    longer than the bytes the open reads first."""
    data = smooth((64, 80), ">i2", seed=12)
    hdu = fits.CompImageHDU(data.astype(np.int16), compression_type="RICE_1", tile_shape=(1, 80))
    for k in range(2400):
        hdu.header["HISTORY"] = f"padding {k}"
    path = tmp_path / "long.fits"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    raw = bytearray(path.read_bytes())
    at = raw.index(b"ZVAL1   =")
    raw[at:at + 80] = b"COMMENT   ZVAL1 was here".ljust(80)
    at = raw.index(b"HISTORY padding 2390")
    assert at // 2880 > 65
    raw[at:at + 80] = b"ZVAL1   =                    0".ljust(80)
    path.write_bytes(bytes(raw))
    assert_fails(path, r"RICE block size ZVAL1 = 0")

    h = fits.PrimaryHDU(np.zeros((300, 300), ">i2"))
    for k in range(1200):
        h.header["HISTORY"] = f"padding {k}"
    path = tmp_path / "longp.fits"
    h.writeto(path)
    raw = bytearray(path.read_bytes())
    at = raw.index(b"HISTORY padding 1150")
    raw[at:at + 80] = ("BLANK   = " + "x" * 60 + "12").encode()
    path.write_bytes(bytes(raw))
    with pytest.raises(tf.FitsError, match=r"longp\.fits: BLANK +is not a number"):
        tf.read(path)


def add_card(path, card):
    """Put `card` where HDU 1's END is and END after it (same block)."""
    raw = bytearray(open(path, "rb").read())
    at = next(i for i in range(2880, len(raw), 80) if raw[i:i + 8] == b"END     ")
    assert (at + 80) % 2880 and raw[at + 80:at + 160].strip() == b""
    raw[at:at + 160] = card.ljust(80).encode() + b"END".ljust(80)
    open(path, "wb").write(bytes(raw))


@pytest.mark.parametrize("algo,card,match", [
    # cfitsio takes any THEAP; the heap offset overflowed in the tile
    # checks (header variants, UBSan)
    ("GZIP_1", "THEAP   =  9223372036854775807", r"heap \(THEAP = 9223372036854775807\) lies outside"),
    ("GZIP_1", "THEAP   =                   -8", r"heap \(THEAP = -8\) lies outside"),
    # 'NONE' is for floats stored as they are: on integer pixels cfitsio
    # read zeros (HCOMPRESS) or failed (RICE, GZIP), the core's decoders
    # the pixels: the read paths disagreed
    ("HCOMPRESS_1", "ZQUANTIZ= 'NONE    '", r"ZQUANTIZ = 'NONE'.*integer image"),
    ("RICE_1", "zquantiz= 'NONE    '", r"ZQUANTIZ = 'NONE'.*integer image"),
])
def test_header_variants(tmp_path, algo, card, match):
    """Findings of the header variants (fuzz/header_variants.py): each
    tile-compressed keyword given odd values in odd places, replayed
    through both read paths under ASan/UBSan."""
    data = smooth((64, 80), ">i2", seed=12)
    path = write_compressed_astropy(tmp_path / "v.fits", data, algo, (16, 16))
    add_card(path, card)
    assert_fails(path, match)


@pytest.mark.parametrize("card,bad", [
    ("Q UANTIZ= 'SUBTRACTIVE_DITHER_1'", "Q UANTIZ"),   # a blank inside the name (fuzzer)
    ("DATE.OBS= '2020-01-01'", "DATE.OBS"),             # a character FITS names do not have
    ("A=1", "A=1"),
    ("date-obs= '2020-01-01'", None),                   # lower case: cfitsio upper-cases it
    ("HIERARCH ESO DET CHIP = 3", None),
    ("COMMENT   a comment", None),
])
def test_compressed_header_with_a_bad_keyword_name(tmp_path, card, bad):
    """cfitsio rebuilds a compressed image's header card by card and
    refuses a name with a blank inside or a character other than A-Z 0-9
    - _; after that error it wrote an uninitialized count of blank cards
    (5 s of CPU for one header in the fuzzer). The core refuses such a card
    first, with the cause; names cfitsio takes still read."""
    data = smooth((64, 80), ">i2", seed=12)
    path = write_compressed_astropy(tmp_path / "k.fits", data, "RICE_1", (16, 16))
    add_card(path, card)
    if bad is None:
        header = tf.read_header(path, 1)
        assert header["NAXIS1"] == 80 and header["BITPIX"] == 16
        assert torch.equal(tf.read(path, 1), torch.from_numpy(data.astype(np.int16)))
        return
    with pytest.raises(tf.FitsError, match=r"k\.fits: HDU 1: cannot read the header: card \d+ has "
                       r"a keyword name that FITS does not allow \(\"%s\"\)" % re.escape(bad)):
        tf.read_header(path, 1)
    # the pixels do not go through the header's copy
    assert torch.equal(tf.read(path, 1), torch.from_numpy(data.astype(np.int16)))


def test_quantiz_none_on_quantized_floats(tmp_path):
    data = smooth((64, 80), ">f4", seed=12)
    path = write_compressed_astropy(tmp_path / "f.fits", data, "RICE_1", (16, 16))
    with fits.open(path, disable_image_compression=True) as f:
        written = "ZQUANTIZ" in f[1].header
    if written:
        set_card(path, "ZQUANTIZ", "ZQUANTIZ= 'NONE    '")
    else:  # newer astropy (8 here) leaves out NO_DITHER, the default
        add_card(path, "ZQUANTIZ= 'NONE    '")
    assert_fails(path, r"ZQUANTIZ = 'NONE'.*a ZSCALE is present")

# ---- RICE_1 tiles decoded by the core's own pipeline (rice.c, own_unit) ----

@pytest.mark.parametrize("dtype", ["u2", "u4", "i1"])
def test_rice_unsigned_and_signed_byte_conventions(tmp_path, monkeypatch, dtype):
    """BZERO 32768 / 2147483648 / -128: exact integers, as astropy and
    cfitsio give them; raw reads return the stored values."""
    info = np.iinfo(dtype)
    rng = np.random.default_rng(21)
    data = rng.integers(info.min, info.max, BIG, dtype=np.int64, endpoint=True).astype(dtype)
    data[:40] = (info.min + info.max) // 2 + (smooth((40, BIG[1]), "f8", seed=2) - 1000)
    data[3, :7] = [info.min, info.max, info.min + 1, info.max - 1, 0, 1, info.min]
    path = write_compressed_astropy(tmp_path / "u.fits", data, "RICE_1", (50, 64))
    expected = astropy_read(path)
    np.testing.assert_array_equal(expected, data)
    assert torch.equal(tf.read(path, 1, raw=True), cfitsio_read(path, raw=True))
    want = {"u2": unsigned_dtype(16), "u4": unsigned_dtype(32), "i1": torch.int8}[dtype]
    assert tf.read(path, 1).dtype == want
    if dtype != "u4" or HAS_UNSIGNED:
        check_all_paths(path, expected, monkeypatch)
        return
    # Without torch.uint32, uint32 reads as int64, which cfitsio's tile
    # decoder does not support (status 410): only the core's own RICE
    # pipeline reads it.
    with pytest.raises(RuntimeError, match="410"):
        cfitsio_read(path)
    t = tf.read(path, 1)
    assert t.dtype == torch.int64
    np.testing.assert_array_equal(t.numpy(), expected)
    tf.set_threads(1)
    assert torch.equal(tf.read(path, 1), t)
    tf.set_threads(0)
    cut = tf.read_cutout(path, 1, [3, 5], [300, 200], [3, 2])
    np.testing.assert_array_equal(cut.numpy(), expected[3:903:3, 5:405:2])


def write_cfitsio_quantized(path, data, tiles, method, null=-999.0, ctype=11):
    """A quantized float image (RICE_1: ctype 11; GZIP_1 21, GZIP_2 22)
    written by the system cfitsio, with
    the pixels equal to `null` stored as nulls (ZBLANK), which neither
    astropy 5.2 nor fitsio 1.1.8 write."""
    import ctypes
    lib = ctypes.CDLL("libcfitsio.so.10")
    fp, st = ctypes.c_void_p(), ctypes.c_int(0)
    lib.ffinit(ctypes.byref(fp), f"!{path}".encode(), ctypes.byref(st))
    lib.fits_set_compression_type(fp, ctype, ctypes.byref(st))
    dims = (ctypes.c_long * len(tiles))(*tiles[::-1])
    lib.fits_set_tile_dim(fp, len(tiles), dims, ctypes.byref(st))
    lib.fits_set_quantize_level(fp, ctypes.c_float(4.0), ctypes.byref(st))
    lib.fits_set_quantize_method(fp, method, ctypes.byref(st))
    lib.fits_set_dither_seed(fp, 77, ctypes.byref(st))
    f32 = data.dtype == np.float32
    naxes = (ctypes.c_long * data.ndim)(*data.shape[::-1])
    lib.ffcrim(fp, -32 if f32 else -64, data.ndim, naxes, ctypes.byref(st))
    a = np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("="))
    nul = (ctypes.c_float if f32 else ctypes.c_double)(null)
    lib.ffppn(fp, 42 if f32 else 82, ctypes.c_longlong(1), ctypes.c_longlong(a.size),
              a.ctypes.data_as(ctypes.c_void_p), ctypes.byref(nul), ctypes.byref(st))
    lib.ffclos(fp, ctypes.byref(st))
    assert st.value == 0, st.value
    return str(path)


@pytest.mark.parametrize("method", [-1, 1, 2], ids=["NO_DITHER", "DITHER_1", "DITHER_2"])
@pytest.mark.parametrize("dtype", ["f4", "f8"])
@pytest.mark.parametrize("ctype", [11, 21, 22], ids=["RICE_1", "GZIP_1", "GZIP_2"])
def test_rice_zblank_nulls(tmp_path, monkeypatch, method, dtype, ctype):
    """ZBLANK pixels come back NaN, bit for bit as cfitsio and fitsio give
    them, through full reads, cutouts with steps and any thread count."""
    import fitsio

    data = smooth(BIG, dtype, seed=22)
    data[5, 5:10] = -999.0
    data[100] = -999.0
    data[7, 20:30] = 0.0
    path = write_cfitsio_quantized(tmp_path / "z.fits", data, (1, BIG[1]), method, ctype=ctype)
    with fits.open(path, disable_image_compression=True) as f:  # the table's header
        assert "ZBLANK" in f[1].header
    # astropy 5.2 and fitsio 1.1.8 ignore the ZBLANK keyword (they return
    # the null code's dequantized value): the reference is cfitsio 4.2.
    expected = cfitsio_read(path).numpy()
    nulls = data == -999.0
    np.testing.assert_array_equal(np.isnan(expected), nulls)
    assert np.abs(expected[~nulls] - data[~nulls]).max() < 20.0  # within quantization
    np.testing.assert_array_equal(fitsio.read(path, ext=1)[~nulls], expected[~nulls])
    t = tf.read(path, 1)
    if method == 2:
        assert (t[7, 20:30] == 0).all()
    check_all_paths(path, expected, monkeypatch)


def test_rice_cutout_stops_before_a_bad_tail(tmp_path, monkeypatch):
    """Tiles are decoded only as far as a cutout needs: damage past that
    point does not stop it; a read that reaches it fails, naming the tile,
    on both paths (cfitsio's path is checked by rice.c first)."""
    data = smooth((256, 200), ">i2", seed=23)
    path = write_compressed_astropy(tmp_path / "t.fits", data, "RICE_1", (128, 100))
    loc, width, pos = table_layout(path)
    raw = open(path, "rb").read()
    desc = loc + 0 * width + pos["COMPRESSED_DATA"]  # tile 1: rows 0..127, cols 0..99
    length = int.from_bytes(raw[desc:desc + 4], "big")
    patch(path, desc, (length // 2).to_bytes(4, "big"))
    np.testing.assert_array_equal(tf.read_cutout(path, 1, [0, 0], [8, 100]).numpy(), data[:8, :100])
    for read in (lambda: tf.read(path, 1), lambda: cfitsio_read(path),
                 lambda: tf.read_cutout(path, 1, [120, 0], [8, 100])):
        # (the cfitsio path's op is called without the package's translation)
        with pytest.raises((tf.FitsError, RuntimeError),
                           match=r"tile 1 \(pixels 0:128, 0:100\).*RICE_1 stream ends"):
            read()


@pytest.mark.parametrize("head", [(0, 7, 30000), (0, 7, -100, 2000, 0, 0, 0)],
                         ids=["old-layout", "new-layout"])
def test_plio_line_list_past_its_end(tmp_path, head):
    """A PLIO_1 line list whose length word points past its cell, with
    instructions that never finish the tile: cfitsio's pl_l2pi would read
    on out of bounds; both paths refuse the tile."""
    data = (smooth((64, 48), ">i2", seed=24) % 64).astype(">i2")
    path = write_compressed_astropy(tmp_path / "p.fits", data, "PLIO_1", (16, 48))
    loc, width, pos = table_layout(path)
    raw = open(path, "rb").read()
    desc = loc + 2 * width + pos["COMPRESSED_DATA"]  # tile 3
    n = int.from_bytes(raw[desc:desc + 4], "big")
    off = int.from_bytes(raw[desc + 4:desc + 8], "big")
    heap = loc + width * 4  # 4 tiles; the heap follows the table
    words = list(head) + [0x2000] * (n - len(head))  # opcode 2, data 0: no pixels
    patch(path, heap + off, b"".join(int(w).to_bytes(2, "big", signed=True) for w in words))
    np.testing.assert_array_equal(tf.read_cutout(path, 1, [0, 0], [32, 48]).numpy(), data[:32])
    for read in (lambda: tf.read(path, 1), lambda: cfitsio_read(path)):
        with pytest.raises((tf.FitsError, RuntimeError),
                           match=r"tile 3 \(pixels 32:48, 0:48\).*PLIO_1 line list runs past"):
            read()


@pytest.mark.parametrize("algo", ["GZIP_1", "GZIP_2"])
def test_gzip_tile_cut_short(tmp_path, algo):
    """A GZIP tile whose stream ends early: the core's inflate (exactly the
    tile's bytes) refuses it, naming the tile, on both paths."""
    data = smooth((64, 80), ">i2", seed=25)
    path = write_compressed_astropy(tmp_path / "g.fits", data, algo, (16, 80))
    loc, width, pos = table_layout(path)
    desc = loc + 1 * width + pos["COMPRESSED_DATA"]  # tile 2
    length = int.from_bytes(open(path, "rb").read()[desc:desc + 4], "big")
    patch(path, desc, (length // 2).to_bytes(4, "big"))
    np.testing.assert_array_equal(tf.read_cutout(path, 1, [0, 0], [16, 80]).numpy(), data[:16])
    for read in (lambda: tf.read(path, 1), lambda: cfitsio_read(path),
                 lambda: tf.read_cutout(path, 1, [20, 5], [2, 3])):
        with pytest.raises((tf.FitsError, RuntimeError),
                           match=r"tile 2 \(pixels 16:32, 0:80\).*GZIP stream is corrupt"):
            read()


# ---- HCOMPRESS_1 tiles decoded by the core's own pipeline (hcompress.c) ----

def skip_small_hcompress_tiles(err):
    """Skip where astropy refuses to write HCOMPRESS tiles with under 4
    pixels along an axis (astropy 8 does; 5.2 wrote them, so the 1.13 line
    still tests them; cfitsio and fitsio widen such tiles instead)."""
    import astropy

    if "less than 4 pixels" not in str(err):
        raise err
    pytest.skip(f"astropy {astropy.__version__} does not write HCOMPRESS tiles of "
                f"under 4 pixels: {err}")


@pytest.mark.parametrize("dtype", [">i2", ">i4", ">f4"])
@pytest.mark.parametrize("scale,smoothing", [(0, 0), (4, 0), (4, 1), (25, 1)])
@pytest.mark.parametrize("shape,tile", [(BIG, (16, BIG[1])), (ODD, (16, 24)), (ODD, (40, 97))],
                         ids=["rows", "odd-2d", "odd-rows"])
def test_hcompress_astropy(tmp_path, monkeypatch, dtype, scale, smoothing, shape, tile):
    """Lossless and lossy (hcomp_scale), smoothed or not, partial last
    tiles (3 rows, 1 column): equal to astropy and the cfitsio path."""
    data = smooth(shape, dtype, seed=31, noise=40.0)
    if dtype == ">i4":
        data = (data.astype(np.int64) * 1000).astype(dtype)
    kw = dict(hcomp_scale=scale, hcomp_smooth=smoothing)
    if dtype == ">f4":
        kw.update(quantize_level=4.0, quantize_method=1, dither_seed=7)
    try:
        path = write_compressed_astropy(tmp_path / "h.fits", data, "HCOMPRESS_1", tile, **kw)
    except ValueError as e:
        skip_small_hcompress_tiles(e)
    with fits.open(path, disable_image_compression=True) as f:
        assert f[1].header["ZCMPTYPE"] == "HCOMPRESS_1"
        assert (f[1].header.get("ZVAL2", 0) == smoothing)
    expected = astropy_read(path)
    if scale == 0 and dtype != ">f4":
        np.testing.assert_array_equal(expected, data)
    check_all_paths(path, expected, monkeypatch)


@pytest.mark.parametrize("method", [-1, 1, 2], ids=["NO_DITHER", "DITHER_1", "DITHER_2"])
def test_hcompress_quantized_dithers(tmp_path, monkeypatch, method):
    data = smooth(BIG, ">f4", seed=32)
    data[100, 5:60] = 0.0
    path = write_compressed_astropy(tmp_path / "q.fits", data, "HCOMPRESS_1", (32, 64),
                                    quantize_method=method, quantize_level=8.0, dither_seed=3,
                                    hcomp_scale=2.0, hcomp_smooth=1)
    check_all_paths(path, astropy_read(path), monkeypatch)


@pytest.mark.parametrize("dtype", ["u1", "i2", "i4", "f4"])
@pytest.mark.parametrize("scale,smoothing", [(0, 0), (8, 0), (8, 1)])
def test_hcompress_fitsio(tmp_path, monkeypatch, dtype, scale, smoothing):
    import fitsio

    data = smooth(ODD, "f8", seed=33, noise=15.0)
    kw = dict(hcomp_scale=scale, hcomp_smooth=smoothing)
    if dtype == "u1":
        data = (data - 1000) / 2 + 128  # stays well inside 0..255, even lossy
    if dtype == "f4":
        data[4, 4] = np.nan
        kw["qlevel"] = 16.0
    data = data.astype(dtype)
    path = write_fitsio(tmp_path / "f.fits", data, compress="HCOMPRESS", tile_dims=[32, 40], **kw)
    expected = fitsio.read(path, ext=1)
    if scale == 0 and dtype != "f4":
        np.testing.assert_array_equal(expected, data)
    check_all_paths(path, expected, monkeypatch)


def overshooting(tmp_path, dtype):
    """A lossy HCOMPRESS image whose decoded values leave the type's range
    (edges between its extremes)."""
    info = np.iinfo(dtype)
    data = np.full((64, 64), info.min, dtype=np.int64)
    data[:, 20:40] = info.max
    data[30:34, :] = info.max
    return write_fitsio(tmp_path / f"o{dtype}.fits", data.astype(dtype), compress="HCOMPRESS",
                        tile_dims=[16, 16], hcomp_scale=4)


@pytest.mark.parametrize("dtype", ["i2", "u2"])
def test_hcompress_overshoot_clipped_or_widened(tmp_path, monkeypatch, dtype):
    """int16 outputs are clipped, as cfitsio clips them; without
    torch.uint16, uint16 reads as int32 and keeps values beyond 0..65535,
    as cfitsio does. (With torch.uint16: next test.)"""
    if dtype == "u2" and HAS_UNSIGNED:
        pytest.skip("uint16 reads as torch.uint16 here: see "
                    "test_hcompress_overshoot_uint_fails_like_cfitsio")
    path = overshooting(tmp_path, dtype)
    ref = cfitsio_read(path)
    if dtype == "u2":
        assert ref.dtype == torch.int32
        assert ref.min() < 0 and ref.max() > 65535
    check_all_paths(path, ref.numpy(), monkeypatch)
    assert torch.equal(tf.read(path, 1, raw=True), cfitsio_read(path, raw=True))


@pytest.mark.parametrize("dtype", ["u1", "u2"])
def test_hcompress_overshoot_uint_fails_like_cfitsio(tmp_path, dtype):
    """cfitsio refuses an 8-bit read whose lossy tiles overshoot (status
    412), and a uint16 one (with torch.uint16; fitsio fails too); the core
    hands such a tile to cfitsio and fails the same way."""
    if dtype == "u2" and not HAS_UNSIGNED:
        pytest.skip("uint16 reads as int32 here: test_hcompress_overshoot_clipped_or_widened")
    path = overshooting(tmp_path, dtype)
    with pytest.raises(RuntimeError, match="412"):
        cfitsio_read(path)
    with pytest.raises(tf.FitsError, match="412") as e:
        tf.read(path, 1)
    assert str(path) in str(e.value) and "HDU 1" in str(e.value)
    if dtype == "u2":  # the stored int16 values still read, clipped as cfitsio clips them
        assert torch.equal(tf.read(path, 1, raw=True), cfitsio_read(path, raw=True))


@pytest.mark.parametrize("what", ["magic", "planes", "size", "cut"])
def test_hcompress_corrupt_tile(tmp_path, what):
    """A damaged HCOMPRESS tile: FitsError naming file, HDU and tile, on
    the core's path and on the cfitsio path (checked by ours first, so
    cfitsio's decoder never sees it); tiles elsewhere still read."""
    data = smooth((64, 80), ">i2", seed=34)
    path = write_compressed_astropy(tmp_path / "h.fits", data, "HCOMPRESS_1", (16, 80))
    loc, width, pos = table_layout(path)
    desc = loc + 2 * width + pos["COMPRESSED_DATA"]  # tile 3
    raw = open(path, "rb").read()
    length = int.from_bytes(raw[desc:desc + 4], "big")
    with fits.open(path, disable_image_compression=True) as f:
        heap = loc + f[1].header.get("THEAP", width * f[1].header["NAXIS2"])
    stream = heap + int.from_bytes(raw[desc + 4:desc + 8], "big")
    assert raw[stream:stream + 2] == b"\xdd\x99"
    if what == "magic":
        patch(path, stream, b"\x00\x00")
        why = "is malformed"
    elif what == "planes":
        patch(path, stream + 22, b"\xff")
        why = "is malformed"
    elif what == "size":
        patch(path, stream + 2, (17).to_bytes(4, "big"))
        why = "is not the tile's size"
    else:
        patch(path, desc, (length // 2).to_bytes(4, "big"))
        why = "ends before"
    np.testing.assert_array_equal(tf.read_cutout(path, 1, [0, 0], [32, 80]).numpy(),
                                  cfitsio_read(path, 1, [0, 0], [32, 80]).numpy())
    for read in (lambda: tf.read(path, 1), lambda: cfitsio_read(path),
                 lambda: tf.read_cutout(path, 1, [40, 5], [2, 3])):
        with pytest.raises((tf.FitsError, RuntimeError),
                           match=r"tile 3 \(pixels 32:48, 0:80\).*HCOMPRESS_1 stream " + why) as e:
            read()
        assert str(path) in str(e.value) and "HDU 1" in str(e.value)


# ---- cutouts of row tiles: resumed from recorded stream positions ----

def _rice_rows(path, data, **kw):
    with fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, compression_type="RICE_1",
                                                           **kw)]) as h:
        h.writeto(path, overwrite=True)
    return astropy_read(path)


@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.int32, np.uint8])
def test_rice_row_cutouts_resume_bit_for_bit(tmp_path, dtype):
    """Cutouts of a 1-row-tile RICE_1 image (astropy's default tiling;
    float32 quantized with dither): the first reads record where each row's
    stream stood every few blocks, later reads of the same rows start there.
    Every read, first or resumed, equals astropy's decode bit for bit; and a
    file rewritten in place (new bytes, same size) is not read through the
    old positions."""
    path = str(tmp_path / "rows.fits")
    shape = (90, 3000)
    data = smooth(shape, np.float64, seed=1) if dtype == np.float32 else None
    if dtype != np.float32:
        info = np.iinfo(dtype)
        data = np.random.default_rng(2).integers(max(info.min, -3000), min(info.max, 3000), shape)
    ref = _rice_rows(path, data.astype(dtype))
    rng = np.random.default_rng(3)
    ny, nx = 16, 40
    items = torch.tensor([[0, int(rng.integers(-5, shape[0])), int(rng.integers(-10, shape[1]))]
                          for _ in range(400)], dtype=torch.int64)
    items[:4] = torch.tensor([[0, 0, 2960], [0, 3, 64], [0, 74, 1200], [0, 10, 2990]])

    def check(ref):
        for threads in (1, 2):
            out = torch.ops.torchfits.read_cutouts([path], [1], items, [ny, nx], -1.0,
                                                   torch.float64, threads).numpy()
            for k, (_, y, x) in enumerate(items.tolist()):
                np.testing.assert_array_equal(out[k], _ref_cutout(ref, y, x, ny, nx))

    check(ref)   # records positions
    check(ref)   # resumes from them
    # A region read through the image API takes the same path.
    with tf.open(path) as f:
        np.testing.assert_array_equal(f[1][20:40, 1500:1600].numpy(), ref[20:40, 1500:1600])
    size = os.path.getsize(path)
    for seed in range(4, 12):  # new bytes of the same length, same inode
        other = np.roll(data, seed * 7, axis=1).astype(dtype)
        new = _rice_rows(str(tmp_path / "other.fits"), other)
        if os.path.getsize(tmp_path / "other.fits") == size:
            break
    else:
        pytest.skip("no rewrite of the same size")
    with open(tmp_path / "other.fits", "rb") as src, open(path, "r+b") as dst:
        dst.write(src.read())
    check(new)


def _ref_cutout(data, y, x, ny, nx, fill=-1.0):
    out = np.full((ny, nx), fill, dtype=np.float64)
    y0, y1, x0, x1 = max(y, 0), min(y + ny, data.shape[0]), max(x, 0), min(x + nx, data.shape[1])
    if y1 > y0 and x1 > x0:
        out[y0 - y:y1 - y, x0 - x:x1 - x] = data[y0:y1, x0:x1]
    return out
