"""The writer's fast paths (uncompressed image data stored straight from
the tensor, tiles compressed on every core) against cfitsio's own writer
(option write_cfitsio=1: every HDU built by cfitsio in memory), byte for
byte, and their checksums against astropy, fitsio and fitsverify."""
import os
import re
import sys
import time

import numpy as np
import pytest
import torch
from astropy.io import fits

import torchfits_ops as tf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_write import DTYPES, fitsverify, sample, to_torch  # noqa: E402

fitsio = pytest.importorskip("fitsio")
ops = torch.ops.torchfits
IDS = lambda d: str(d).replace("torch.", "")  # noqa: E731


def both_ways(tmp_path, hdus, **kw):
    """The same write through cfitsio's writer and the fast one; the bytes
    of each. CHECKSUM/DATASUM comments hold the time to the second (from
    C's time(), a coarse clock): both writes are retried until every such
    time in the two files is the same."""
    ref, fast = tmp_path / "cfitsio.fits", tmp_path / "fast.fits"
    for _ in range(10):
        previous = ops.set_option("write_cfitsio", 1)
        try:
            tf.write(ref, hdus, overwrite=True, **kw)
        finally:
            ops.set_option("write_cfitsio", previous)
        tf.write(fast, hdus, overwrite=True, **kw)
        a, b = ref.read_bytes(), fast.read_bytes()
        if len(set(re.findall(rb"updated \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", a + b))) <= 1:
            break
        time.sleep(0.1)
    return a, b


@pytest.mark.parametrize("checksum", [False, True], ids=["plain", "checksum"])
@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_uncompressed_bytes_as_cfitsio(tmp_path, dtype, checksum):
    """Every dtype, as the primary, as extensions between a table and a
    compressed image, with odd sizes (a partial last block, for uint8 a
    partial last checksum word)."""
    a = to_torch(sample(dtype, (37, 53), seed=1), dtype)
    b = to_torch(sample(dtype, (3, 5, 7), seed=2), dtype)
    for hdus in (a, [a, (b, {"EXTNAME": "B", "OBJECT": "x"}), {"n": torch.arange(5)}, a],
                 [None, {"data": torch.arange(600, dtype=torch.int16).reshape(20, 30),
                         "compress": "RICE_1"}, b]):
        ref, fast = both_ways(tmp_path, hdus, checksum=checksum)
        assert len(ref) % 2880 == 0
        assert fast == ref
    if checksum:
        assert all(s == (True, True) for s in tf.verify_checksum(tmp_path / "fast.fits"))
        with fits.open(tmp_path / "fast.fits", checksum=True, disable_image_compression=True) as hl:
            for h in hl:
                assert h._checksum_valid and h._datasum_valid
        fitsverify(tmp_path / "fast.fits")


@pytest.mark.parametrize("fill", [0.0, -0.0, 1.0], ids=["zeros", "negzeros", "ones"])
def test_checksum_edge_data(tmp_path, fill):
    """All-zero data (DATASUM 0, which cfitsio writes as '         0'),
    -0.0 (top bits only) and ones, in a size that is many blocks."""
    t = torch.full((300, 301), fill, dtype=torch.float32)
    ref, fast = both_ways(tmp_path, [t, t.double()], checksum=True)
    assert fast == ref
    assert tf.verify_checksum(tmp_path / "fast.fits") == [(True, True), (True, True)]
    with fitsio.FITS(str(tmp_path / "fast.fits")) as f:
        for h in f:
            h.verify_checksum()  # raises on a mismatch
    b = bytearray((tmp_path / "fast.fits").read_bytes())
    b[2 * 2880 + 5] ^= 0x40
    (tmp_path / "fast.fits").write_bytes(bytes(b))
    assert tf.verify_checksum(tmp_path / "fast.fits") == [(False, False), (True, True)]
    with fitsio.FITS(str(tmp_path / "fast.fits")) as f:
        with pytest.raises(ValueError):
            f[0].verify_checksum()


def test_large_image_and_append(tmp_path):
    """Data larger than the store chunk (several chunks and a tail), and an
    append behind an existing file, both as cfitsio writes them."""
    t = torch.from_numpy(np.random.default_rng(3).standard_normal((700, 1031)).astype(np.float32))
    ref, fast = both_ways(tmp_path, [t, (t[:100].double(), {"EXTNAME": "D"})], checksum=True)
    assert fast == ref
    base = tmp_path / "base.fits"
    tf.write(base, torch.arange(10, dtype=torch.int16))
    for mode in (1, 0):
        p = tmp_path / f"app{mode}.fits"
        p.write_bytes(base.read_bytes())
        previous = ops.set_option("write_cfitsio", mode)
        try:
            tf.write(p, [t[:50], {"x": torch.arange(3)}, t[:7, :9].to(torch.int32)], append=True)
        finally:
            ops.set_option("write_cfitsio", previous)
    assert (tmp_path / "app1.fits").read_bytes() == (tmp_path / "app0.fits").read_bytes()
    with fits.open(tmp_path / "app0.fits") as hl:
        assert len(hl) == 4
        np.testing.assert_array_equal(hl[1].data, t[:50].numpy())


def test_data_read_until_commit_only(tmp_path):
    """The tensor may change after write returns: the file holds the
    values as they were."""
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    p = tmp_path / "x.fits"
    tf.write(p, t)
    t.fill_(-1)
    assert torch.equal(tf.read(p), torch.arange(12, dtype=torch.float32).reshape(3, 4))


def test_write_cfitsio_option():
    previous = ops.set_option("write_cfitsio", 1)
    try:
        assert ops.get_option("write_cfitsio") == 1
    finally:
        ops.set_option("write_cfitsio", previous)
    assert previous == 0
    with pytest.raises(ValueError, match="write_cfitsio"):
        ops.set_option("no_such_option", 1)


TILE_DTYPES = [torch.uint8, torch.int16, torch.int32, torch.int8]
if hasattr(torch, "uint16"):
    TILE_DTYPES += [torch.uint16, torch.uint32]


@pytest.mark.parametrize("checksum", [False, True], ids=["plain", "checksum"])
@pytest.mark.parametrize("codec", ["RICE_1", "GZIP_1", "GZIP_2"])
@pytest.mark.parametrize("dtype", TILE_DTYPES, ids=IDS)
def test_tiles_bytes_as_cfitsio(tmp_path, dtype, codec, checksum):
    """Tiles compressed on every core (uint8, int16, int32; the others go
    through cfitsio): the file is cfitsio's, for row tiles, tiles that do
    not divide the image (partial edge tiles), 3-d tiles, a 1-d image, and
    among other HDUs."""
    rng = np.random.default_rng(4)
    for shape, tile in (((300, 257), None), ((300, 257), [7, 50]), ((5, 30, 41), [2, 4, 9]),
                        ((1000,), None), ((1024, 1024), [16, 1024])):
        a = rng.poisson(100, shape) - (50 if dtype in (torch.int8, torch.int16, torch.int32) else 0)
        x = torch.from_numpy(a.astype(np.int64)).clamp(-128 if dtype == torch.int8 else 0,
                                                      127 if dtype == torch.int8 else 255).to(dtype)
        hdus = [torch.ones(3), {"data": x, "compress": codec, "tile": tile},
                {"c": torch.arange(4)}, {"data": x, "compress": codec, "tile": tile}]
        ref, fast = both_ways(tmp_path, hdus, checksum=checksum)
        assert fast == ref, (shape, tile)
        back = tf.read(tmp_path / "fast.fits", hdu=3)
        assert back.dtype == x.dtype and torch.equal(back, x)
    if checksum:
        assert all(s == (True, True) for s in tf.verify_checksum(tmp_path / "fast.fits"))
        fitsverify(tmp_path / "fast.fits")


@pytest.mark.parametrize("codec", ["RICE_1", "GZIP_2"])
def test_tile_threads_agree(tmp_path, codec):
    """One thread or many: the same bytes (tiles are handed to cfitsio in
    order whatever order they were compressed in)."""
    x = torch.from_numpy(np.random.default_rng(5).poisson(30, (512, 700)).astype(np.int16))
    out = {}
    for threads in (1, 3, 0):
        previous = ops.set_option("threads", threads)
        try:
            tf.write(tmp_path / f"t{threads}.fits", x, compress=codec, tile=[3, 700])
        finally:
            ops.set_option("threads", previous)
        out[threads] = (tmp_path / f"t{threads}.fits").read_bytes()
    assert out[1] == out[3] == out[0]
    with fits.open(tmp_path / "t0.fits") as hl:
        np.testing.assert_array_equal(hl[1].data, x.numpy())
    np.testing.assert_array_equal(fitsio.read(str(tmp_path / "t0.fits"), ext=1), x.numpy())


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.float32], ids=IDS)
def test_checksum_of_data_split_over_threads(tmp_path, dtype):
    """DATASUM of data large enough to be summed in parts on several
    threads (odd sizes: parts end mid-element for none, the last word is
    partial for uint8) equals cfitsio's."""
    rng = np.random.default_rng(6)
    x = torch.from_numpy(rng.integers(0, 250, (3001, 3003)).astype(NP_OF[dtype]))
    previous = ops.set_option("threads", 3)
    try:
        ref, fast = both_ways(tmp_path, [x, x[:1000]], checksum=True)
    finally:
        ops.set_option("threads", previous)
    assert fast == ref
    assert tf.verify_checksum(tmp_path / "fast.fits") == [(True, True), (True, True)]


NP_OF = {torch.uint8: np.uint8, torch.int16: np.int16, torch.float32: np.float32}


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.int32], ids=IDS)
def test_rice_coder_edge_data(tmp_path, dtype):
    """The Rice coder against cfitsio's on data that reaches each of its
    cases: all zeros (fs 0 alone), constants, full-range noise (raw
    blocks), lone outliers in quiet blocks (long unary codes), the extreme
    values, wrap-around differences, and tiles of 1 to 33 pixels."""
    info = np.iinfo(NP_OF_INT[dtype])
    rng = np.random.default_rng(7)
    quiet = rng.integers(0, 3, 4096)
    outliers = quiet.copy()
    outliers[::97] = info.max
    outliers[5::89] = info.min
    images = [np.zeros(4096), np.full(4096, 7), rng.integers(info.min, info.max, 4096, endpoint=True),
              outliers, np.resize([info.min, info.max], 4096), np.resize([0, info.max, 1], 4096),
              np.cumsum(rng.integers(-3, 4, 4096)) % (info.max + 1)]
    for a in images:
        x = torch.from_numpy(a.astype(np.int64).clip(info.min, info.max).astype(NP_OF_INT[dtype]))
        for tile in ([4096], [1], [31], [32], [33], [1000]):
            ref, fast = both_ways(tmp_path, [None, {"data": x, "compress": "RICE_1", "tile": tile}])
            assert fast == ref, tile
    assert torch.equal(tf.read(tmp_path / "fast.fits", hdu=1), x)


NP_OF_INT = {torch.uint8: np.uint8, torch.int16: np.int16, torch.int32: np.int32}


def float_image(dtype, shape, seed, nan=False):
    """Sky-like floats: noise on a level, a constant row (a tile cfitsio
    cannot quantize: no noise), and NaN where asked (a lone pixel and a
    whole row)."""
    a = np.random.default_rng(seed).normal(100, 10, shape).astype(dtype)
    a[1] = 7.5
    if nan:
        a[3, 5] = np.nan
        a[10, :] = np.nan
    return torch.from_numpy(a)


def version(module):
    return tuple(int(p) for p in re.findall(r"\d+", module.__version__)[:2])


# Whether a reader gives NaN for the null pixels of a quantized image
# (ZBLANK): Debian's astropy 5.2 and fitsio 1.1.8 (cfitsio 4.2) give the
# null's unquantized number instead, whoever wrote the file.
NULLS_AS_NAN = {"astropy": version(__import__("astropy")) >= (6, 0),
                "fitsio": version(fitsio) >= (1, 2)}


def same_values(ours, theirs, nulls_as_nan):
    if not nulls_as_nan:
        keep = ~np.isnan(ours)
        ours, theirs = ours[keep], theirs[keep]
    np.testing.assert_array_equal(ours, theirs)


FLOAT_OPTIONS = [dict(), dict(quantize_level=16.0), dict(quantize_level=-0.5),
                 dict(quantize_method="NO_DITHER"), dict(quantize_method="SUBTRACTIVE_DITHER_2"),
                 dict(quantize_level=0.0), dict(tile=[7, 50]), dict(tile=[1, 1])]


@pytest.mark.parametrize("nan", [False, True], ids=["finite", "nan"])
@pytest.mark.parametrize("codec", ["RICE_1", "GZIP_1", "GZIP_2", "HCOMPRESS_1"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_float_tiles_bytes_as_cfitsio(tmp_path, dtype, codec, nan):
    """Quantized floats, compressed on every core, are cfitsio's file for the
    same seed: ZSCALE/ZZERO per tile, each dither method and quantize level,
    lossless GZIP, tiles cfitsio cannot quantize (one pixel, no noise: in
    GZIP_COMPRESSED_DATA), and NaN as nulls with ZBLANK (as
    fits_write_imgnull of FLOATNULLVALUE writes them). astropy and fitsio
    read the file as we do."""
    x = float_image(dtype, (40, 257), seed=8, nan=nan)
    for kw in FLOAT_OPTIONS:
        if kw.get("quantize_level") == 0.0 and not codec.startswith("GZIP"):
            continue
        if codec == "HCOMPRESS_1" and (kw.get("quantize_method") == "SUBTRACTIVE_DITHER_2"
                                       or kw.get("tile") == [1, 1]):
            continue
        for extra in ([dict(), dict(hcomp_scale=2.5)] if codec == "HCOMPRESS_1" else [dict()]):
            hdu = {"data": x, "compress": codec, "dither_seed": 17, **kw, **extra}
            ref, fast = both_ways(tmp_path, [None, hdu])
            assert fast == ref, (kw, extra)
            path = tmp_path / "fast.fits"
            ours = tf.read(path, hdu=1).numpy()
            with fits.open(path) as hl:
                same_values(ours, hl[1].data, NULLS_AS_NAN["astropy"])
                header = hl[1].header
            same_values(ours, fitsio.read(str(path), ext=1), NULLS_AS_NAN["fitsio"])
            lossless = kw.get("quantize_level") == 0.0
            if lossless:
                assert np.array_equal(ours, x.numpy(), equal_nan=True)
            elif not extra:
                # NaN stay NaN where nulls survive the coder (all but lossy
                # HCOMPRESS, which smooths the null markers away)
                assert np.array_equal(np.isnan(ours), np.isnan(x.numpy()))
            with fits.open(path, disable_image_compression=True) as hl:
                cols = hl[1].columns.names
                zhead = hl[1].header
            if not lossless:
                assert cols[:3] == ["COMPRESSED_DATA", "ZSCALE", "ZZERO"]
                # one-pixel tiles, and the constant row as a tile of its
                # own where the step comes from the noise
                fallback = kw.get("tile") == [1, 1] or (
                    kw.get("tile") is None and codec != "HCOMPRESS_1"
                    and kw.get("quantize_level", 4.0) > 0)
                assert ("GZIP_COMPRESSED_DATA" in cols) == fallback
            assert ("ZBLANK" in zhead) == (nan and not lossless)
            assert header["BITPIX"] == (-32 if dtype == np.float32 else -64)
            fitsverify(path)


@pytest.mark.parametrize("codec", ["HCOMPRESS_1", "PLIO_1"])
@pytest.mark.parametrize("dtype", TILE_DTYPES, ids=IDS)
def test_hcompress_plio_bytes_as_cfitsio(tmp_path, dtype, codec):
    """HCOMPRESS_1 (lossless and scaled) and PLIO_1 of every integer type,
    compressed on every core: cfitsio's file, 2-d tiles that do not divide
    the image, and (PLIO_1) a 1-d image; lossless ones read back exactly."""
    rng = np.random.default_rng(9)
    for shape, tile in (((60, 257), None), ((60, 257), [7, 50]), ((1000,), None)):
        if codec == "HCOMPRESS_1" and len(shape) < 2:
            continue
        a = rng.poisson(100, shape)
        if dtype == getattr(torch, "uint32", None):
            a = a + 2**31 if codec == "HCOMPRESS_1" else a
        x = to_torch(a.astype(NP_ANY[dtype]), dtype)
        for scale in ([0.0, 2.5] if codec == "HCOMPRESS_1" else [None]):
            hdu = {"data": x, "compress": codec, "tile": tile}
            if scale is not None:
                hdu["hcomp_scale"] = scale
            if codec == "PLIO_1" and dtype == getattr(torch, "uint32", None):
                # uint32 is stored offset by -2**31: below 0 for PLIO
                with pytest.raises(ValueError, match=r"HDU 1: tile 0 could not be compressed: "
                                   r"PLIO_1 takes values 0 to 2\*\*24 - 1 only"):
                    tf.write(tmp_path / "p.fits", [None, hdu])
                assert not (tmp_path / "p.fits").exists()
                return
            ref, fast = both_ways(tmp_path, [None, hdu])
            assert fast == ref, (shape, tile, scale)
            if not scale:
                assert torch.equal(tf.read(tmp_path / "fast.fits", hdu=1), x)
            fitsverify(tmp_path / "fast.fits")


NP_ANY = {torch.uint8: np.uint8, torch.int8: np.int8, torch.int16: np.int16, torch.int32: np.int32}
if hasattr(torch, "uint16"):
    NP_ANY.update({torch.uint16: np.uint16, torch.uint32: np.uint32})


@pytest.mark.parametrize("dtype,codec", [(torch.int16, "HCOMPRESS_1"), (torch.int32, "HCOMPRESS_1"),
                                         ("uint16", "PLIO_1")], ids=str)
def test_incompressible_tiles_past_cfitsios_buffer(tmp_path, dtype, codec):
    """Noise that codes to more bytes than cfitsio's writer allows for a
    tile (HCOMPRESS_1: 2.2 or 4.4 bytes a pixel; PLIO_1: 4), where cfitsio's
    own writer writes past its buffer: ours codes it in a buffer large
    enough and the file reads back exactly; cfitsio's writer (option
    write_cfitsio) is refused before it runs."""
    if dtype == "uint16":
        if not hasattr(torch, "uint16"):
            pytest.skip("torch has no uint16")
        dtype = torch.uint16
    x = to_torch(sample(dtype, (60, 257), seed=3), dtype)
    hdu = {"data": x, "compress": codec, "tile": [7, 50]}
    tf.write(tmp_path / "n.fits", [None, hdu])
    assert torch.equal(tf.read(tmp_path / "n.fits", hdu=1), x)
    np.testing.assert_array_equal(fitsio.read(str(tmp_path / "n.fits"), ext=1), NP_VIEW(x))
    fitsverify(tmp_path / "n.fits")
    previous = ops.set_option("write_cfitsio", 1)
    try:
        with pytest.raises(NotImplementedError, match=f"HDU 1: cfitsio's {codec} writer would "
                           "write past its buffer for this image"):
            tf.write(tmp_path / "c.fits", [None, hdu])
    finally:
        ops.set_option("write_cfitsio", previous)
    assert not (tmp_path / "c.fits").exists()


def NP_VIEW(t):
    if hasattr(torch, "uint16") and t.dtype == torch.uint16:
        return t.view(torch.int16).numpy().view(np.uint16)
    return t.numpy()


def test_plio_of_floats_refused(tmp_path):
    """Quantized floats sit far below 0 for PLIO_1 (as with cfitsio's
    writer): a clear error, and no file."""
    with pytest.raises(ValueError, match=r"fl\.fits: HDU 1: tile \d+ could not be compressed: "
                       r"PLIO_1 takes values 0 to 2\*\*24 - 1 only"):
        tf.write(tmp_path / "fl.fits", [None, {"data": float_image(np.float32, (20, 30), 1),
                                               "compress": "PLIO_1"}])
    assert not (tmp_path / "fl.fits").exists()


def test_float_tile_threads_agree(tmp_path):
    """Quantized float tiles coded on 1, 3 or all threads: the same bytes
    (each tile's dither row comes from its own number)."""
    x = float_image(np.float32, (300, 700), seed=10, nan=True)
    out = {}
    for threads in (1, 3, 0):
        previous = ops.set_option("threads", threads)
        try:
            tf.write(tmp_path / f"t{threads}.fits", x, compress="RICE_1", dither_seed=123)
        finally:
            ops.set_option("threads", previous)
        out[threads] = (tmp_path / f"t{threads}.fits").read_bytes()
    assert out[1] == out[3] == out[0]


@pytest.mark.parametrize("method", ["SUBTRACTIVE_DITHER_1", "SUBTRACTIVE_DITHER_2", "NO_DITHER"])
def test_quantized_as_fitsio_and_astropy_write_it(tmp_path, method):
    """The same float image, quantize level and seed written by us, by
    fitsio and by astropy: every file decodes to the same values, read by
    each of the three readers."""
    x = float_image(np.float32, (64, 300), seed=11)
    arr = x.numpy()
    tf.write(tmp_path / "ours.fits", x, compress="RICE_1", quantize_level=8.0,
             quantize_method=method, dither_seed=77)
    writers = ["ours", "astropy"]
    if version(fitsio) >= (1, 2):  # Debian's fitsio 1.1.8 ignores dither_seed
        writers.append("fitsio")
        fitsio.write(str(tmp_path / "fitsio.fits"), arr, compress="RICE", qlevel=8.0,
                     qmethod=method, dither_seed=77)
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(
        arr, compression_type="RICE_1", quantize_level=8.0,
        quantize_method={"NO_DITHER": -1, "SUBTRACTIVE_DITHER_1": 1,
                         "SUBTRACTIVE_DITHER_2": 2}[method],
        dither_seed=77)]).writeto(tmp_path / "astropy.fits")
    ours = tf.read(tmp_path / "ours.fits", hdu=1).numpy()
    assert not np.array_equal(ours, arr)  # quantized: not the input
    assert np.abs(ours - arr).max() < 10
    for name in writers:
        path = tmp_path / f"{name}.fits"
        np.testing.assert_array_equal(tf.read(path, hdu=1).numpy(), ours, err_msg=name)
        np.testing.assert_array_equal(fitsio.read(str(path), ext=1), ours, err_msg=name)
        with fits.open(path) as hl:
            np.testing.assert_array_equal(hl[1].data, ours, err_msg=name)
