"""Bad input gets a clear exception naming the path (and HDU), never a crash."""
import gzip
import os
import shutil
import warnings

import numpy as np
import pytest
import torch
from astropy.io import fits

import torchfits_ops as tf
from fitsgen import random_array, write_astropy, write_multi_extension

ops = torch.ops.torchfits


@pytest.fixture
def image(tmp_path):
    return write_astropy(tmp_path / "img.fits", random_array((30, 40), 16, seed=1))


@pytest.fixture
def mef(tmp_path):
    return write_multi_extension(tmp_path / "mef.fits")


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def test_missing_file(tmp_path):
    path = str(tmp_path / "nope.fits")
    with pytest.raises(RuntimeError, match=r"nope\.fits: cannot open file: No such file or directory \[TF_EOPEN\]"):
        ops.read(path, 0)
    with pytest.raises(FileNotFoundError, match=r"nope\.fits"):
        tf.read(path)
    with pytest.raises(FileNotFoundError, match=r"nope\.fits"):
        tf.open(path)
    with pytest.raises(FileNotFoundError):
        tf.read_header(path)


def test_directory(tmp_path):
    with pytest.raises(OSError, match=r"it is a directory"):
        tf.read(tmp_path)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.fits"
    p.write_bytes(b"")
    with pytest.raises(tf.FitsError, match=r"empty\.fits: not a FITS file: the file is empty"):
        tf.read(p)


def test_not_fits(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("SIMPLE is not how this starts\n" * 200)
    with pytest.raises(tf.FitsError, match=r"notes\.txt: not a FITS file: it does not begin with the SIMPLE keyword \[TF_ENOTFITS\]"):
        tf.read(p)
    with pytest.raises(RuntimeError, match=r"notes\.txt.*\[TF_ENOTFITS\]"):
        ops.read_header(str(p), 0)


def test_gzip_of_garbage(tmp_path):
    import gzip

    p = tmp_path / "junk.fits.gz"
    with gzip.open(p, "wb") as f:
        f.write(b"\0" * 10000)
    with pytest.raises(tf.FitsError, match=r"junk\.fits\.gz"):
        tf.read(p)


def test_hdu_number_out_of_range(mef):
    with pytest.raises(IndexError, match=r"mef\.fits: HDU 8 does not exist \(the file has 8 HDUs\) \[TF_ENOHDU\]"):
        ops.read(mef, 8)
    with pytest.raises(IndexError, match=r"mef\.fits: HDU -9 does not exist"):
        tf.read(mef, -9)
    with pytest.raises(IndexError, match=r"mef\.fits: HDU -1 does not exist"):
        ops.read(mef, -1)
    with pytest.raises(IndexError, match=r"mef\.fits: HDU 99 does not exist"):
        tf.open(mef)[99]


def test_hdu_name_missing(mef):
    with pytest.raises(IndexError, match=r"mef\.fits: no HDU with EXTNAME 'WHT' \[TF_ENOHDU\]"):
        ops.read(mef, "WHT")
    with pytest.raises(IndexError, match=r"mef\.fits: no HDU with EXTNAME 'SCI' and EXTVER 3"):
        tf.read(mef, ("SCI", 3))
    with pytest.raises(IndexError, match=r"no HDU with EXTNAME 'WHT'"):
        tf.open(mef)["WHT"]
    with pytest.raises(ValueError, match=r"extver must be >= 0"):
        ops.read(mef, "SCI", -1)


def test_table_as_image(mef):
    with pytest.raises(TypeError, match=r"mef\.fits: HDU 7: HDU is a binary table, not an image \[TF_EHDUTYPE\]"):
        ops.read(mef, 7)
    with pytest.raises(TypeError, match=r"mef\.fits: HDU 7"):
        tf.read_cutout(mef, "CAT", [0], [1])


def test_empty_primary_has_no_data(mef):
    with pytest.raises(TypeError, match=r"mef\.fits: HDU 0: HDU has no image data \(NAXIS = 0\)"):
        tf.read(mef, 0)


@pytest.mark.parametrize("start,shape,step,exc,msg", [
    ([0, 0], [31, 1], None, IndexError, r"axis 0: region start 0, count 31, step 1 is outside the image's 30 pixels"),
    ([29, 39], [1, 2], None, IndexError, r"axis 1: region start 39, count 2"),
    ([0, 0], [16, 1], [2, 1], IndexError, r"axis 0: region start 0, count 16, step 2"),
    ([-1, 0], [1, 1], None, ValueError, r"start and count must be >= 0"),
    ([0, 0], [-1, 1], None, ValueError, r"start and count must be >= 0"),
    ([0], [1], None, ValueError, r"the region has 1 axes but the image has 2"),
    ([0, 0], [1, 1], [0, 1], ValueError, r"step must be >= 1"),
    ([0, 0], [1], None, ValueError, r"start has 2 entries but shape has 1"),
    ([0, 2**62], [1, 2**62], None, IndexError, r"outside the image"),
])
def test_bad_cutouts(image, start, shape, step, exc, msg):
    with pytest.raises(exc, match=msg):
        tf.read_cutout(image, 0, start, shape, step)


def test_slicing_errors(image):
    hdu = tf.open(image)[0]
    with pytest.raises(IndexError, match="out of bounds for axis 0 with size 30"):
        hdu[30]
    with pytest.raises(IndexError, match="too many indices"):
        hdu[1, 2, 3]
    with pytest.raises(TypeError, match="FITS images take ints, slices"):
        hdu["a"]


def truncate(src, dst, size):
    with open(src, "rb") as f:
        data = f.read()
    with open(dst, "wb") as f:
        f.write(data[:size])
    return str(dst)


@pytest.mark.parametrize("size", [80, 2880, 2881, 2880 + 100, 5000])
def test_truncated_file(tmp_path, image, size):
    p = truncate(image, tmp_path / "cut.fits", size)
    if size <= 2880:
        pattern = r"cut\.fits: (cannot read the primary header|HDU 0: file is truncated)"
    else:
        pattern = r"cut\.fits: HDU 0: file is truncated: the image needs 2400 bytes at offset 2880 but the file has \d+ \[TF_ECORRUPT\]"
    with pytest.raises(tf.FitsError, match=pattern):
        tf.read(p)
    with pytest.raises(RuntimeError, match=r"cut\.fits"):
        ops.read_cutout(p, 0, [0, 0], [1, 1])


@pytest.mark.parametrize("extra", [100, 2879, 2880, 2880 + 1000])
def test_file_cut_inside_an_extension_header(tmp_path, extra):
    """A file that ends inside an extension's header (a download cut short)
    says so: cfitsio stops at the cut and would count one HDU fewer, which
    read as "HDU 2 does not exist". The HDUs before it stay readable."""
    rng = np.random.default_rng(3)
    err = fits.ImageHDU(rng.random((20, 30)).astype(">f4"), name="ERR")
    for k in range(40):
        err.header["HISTORY"] = f"card {k}"  # a header of two blocks
    whole = tmp_path / "whole.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(rng.random((20, 30)).astype(">f4"), name="SCI"),
                  err]).writeto(whole)
    data = whole.read_bytes()
    second = 3 * 2880  # after the empty primary and SCI (a header block, 2400 bytes of data)
    assert data[second:second + 8] == b"XTENSION" and data.find(b"END" + b" " * 77, second) > second + 2880
    p = tmp_path / "cut.fits"
    p.write_bytes(data[:second + extra])
    cause = (r"cut\.fits: HDU 2: file is truncated: the header starting at byte %d has no END "
             r"card before the file ends at byte %d \[TF_ECORRUPT\]" % (second, second + extra))
    for call in (lambda: tf.read(p, 2), lambda: tf.read_header(p, 2), lambda: tf.info(p),
                 lambda: tf.num_hdus(p), lambda: tf.read(p, "ERR")):
        with pytest.raises(tf.FitsError, match=cause):
            call()
    assert torch.equal(tf.read(p, 1), tf.read(whole, 1))
    assert tf.read_header(p, 1)["EXTNAME"] == "SCI"


def test_zero_padding_after_the_last_hdu_is_no_hdu(tmp_path, mef):
    """Bytes after the last HDU that do not start an extension (zero
    padding, a partial block) are not read as a cut header."""
    for extra in (100, 2880, 5760 + 7):
        p = tmp_path / f"padded{extra}.fits"
        p.write_bytes(open(mef, "rb").read() + b"\0" * extra)
        assert tf.num_hdus(p) == tf.num_hdus(mef) == 8
        with pytest.raises(IndexError, match=r"HDU 8 does not exist \(the file has 8 HDUs\)"):
            tf.read(p, 8)


def test_truncated_gzip(tmp_path):
    import gzip

    data = random_array((100, 100), -32, seed=3)
    plain = write_astropy(tmp_path / "g.fits", data)
    raw = gzip.compress(open(plain, "rb").read())
    p = tmp_path / "g.fits.gz"
    p.write_bytes(raw[: len(raw) // 2])
    # cfitsio reads the unpacked bytes as it reads a plain file: the header
    # is whole, the data short, and the read says so.
    with pytest.raises(tf.FitsError, match=r"g\.fits\.gz: HDU 0: file is truncated: the image needs "
                                           r"40000 bytes at offset 2880 but the file has \d+ \[TF_ECORRUPT\]"):
        tf.read(p)


def gzip_bomb(path, image, zeros):
    """A gzip file of a small FITS image followed by `zeros` zero bytes:
    the zeros pack 1,000 to one."""
    import zlib

    plain = write_astropy(str(path) + ".plain", image)
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    with open(path, "wb") as out:
        out.write(z.compress(open(plain, "rb").read()))
        chunk = bytes(1 << 20)
        for _ in range(zeros >> 20):
            out.write(z.compress(chunk))
        out.write(z.flush())
    return str(path)


def test_gzip_bomb_refused_within_the_unpack_limit(tmp_path, monkeypatch):
    image = random_array((10, 12), 16, seed=5)
    p = gzip_bomb(tmp_path / "bomb.fits.gz", image, 64 << 20)
    assert os.path.getsize(p) < 100_000
    tf.set_unpack_max_mb(16)
    fds = open_fds()
    for call in (lambda: tf.read(p), lambda: tf.read_header(p), lambda: tf.open(p)):
        with pytest.raises(RuntimeError, match=r"bomb\.fits\.gz: the compressed file unpacks to more "
                                               r"than 16 MiB \(the limit set by "
                                               r"torchfits_ops.set_unpack_max_mb or TORCHFITS_UNPACK_MAX_MB\) \[TF_ELIMIT\]"):
            call()
    assert open_fds() == fds
    # Under a limit it fits, the file reads as cfitsio reads it: the zeros
    # after the last HDU are no HDU.
    tf.set_unpack_max_mb(100)
    np.testing.assert_array_equal(tf.read(p).numpy(), image)
    assert tf.num_hdus(p) == 1


def test_gzip_bomb_memory_stays_within_the_limit(tmp_path):
    """Before the limit, cfitsio unpacked for as long as the stream went on:
    a 9 MB file of 2 GiB of zeros took 2.2 GB. In a fresh process, so the
    peak is the open's own."""
    import subprocess
    import sys

    p = gzip_bomb(tmp_path / "bomb.fits.gz", random_array((10, 12), 16, seed=5), 1 << 30)
    code = ("import resource, sys, torchfits_ops as tf\n"
            "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "try:\n    tf.read(sys.argv[1])\nexcept RuntimeError as e:\n    print(e)\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) >> 10)\n")
    env = dict(os.environ, TORCHFITS_UNPACK_MAX_MB="64")
    out = subprocess.run([sys.executable, "-c", code, p], capture_output=True, text=True, env=env,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), timeout=120)
    msg, grown = out.stdout.strip().splitlines()
    assert "unpacks to more than 64 MiB" in msg and "[TF_ELIMIT]" in msg
    assert int(grown) < 64 + 40, f"the refused open grew the peak RSS by {grown} MiB"


@pytest.mark.skipif(not shutil.which("compress"), reason="needs compress (Debian: ncompress)")
def test_compress_dot_z_files(tmp_path, monkeypatch):
    """compress (LZW) files go to cfitsio's own LZW decoder, under the same
    limit. cfitsio 4.2's decoder copies into whatever its realloc returns: a
    refusal must not return (it was a SIGSEGV). The file's first bytes
    decide, not its name."""
    from corrupt_cases import compressed_dot_z

    image = random_array((40, 50), -32, seed=6)
    z = compressed_dot_z(write_astropy(tmp_path / "z.fits", image), str(tmp_path / "z.fits.Z"))
    np.testing.assert_array_equal(tf.read(z).numpy(), image)
    assert tf.read_header(z)["NAXIS1"] == 50

    small = write_astropy(tmp_path / "small.fits", random_array((10, 12), 16, seed=5))
    bomb = compressed_dot_z(small, str(tmp_path / "bomb.fits.Z"), extra_zeros=48 << 20)
    assert os.path.getsize(bomb) < 100_000
    tf.set_unpack_max_mb(8)
    for _ in range(3):  # the decoder's globals are reset for each call
        with pytest.raises(RuntimeError, match=r"bomb\.fits\.Z: the compressed file unpacks to more "
                                               r"than 8 MiB \(the limit set by "
                                               r"torchfits_ops.set_unpack_max_mb or TORCHFITS_UNPACK_MAX_MB\) \[TF_ELIMIT\]"):
            tf.read(bomb)
    np.testing.assert_array_equal(tf.read(z).numpy(), image)
    tf.set_unpack_max_mb(64)
    assert tf.read(bomb).shape == (10, 12)

    # A gzip stream under a .Z name is gzip, and compress's under any name
    # is compress's (cfitsio chose by ".Z" in the name).
    notlzw = tmp_path / "gz.fits.Z"
    notlzw.write_bytes(gzip.compress(open(small, "rb").read()))
    np.testing.assert_array_equal(tf.read(notlzw).numpy(), tf.read(small).numpy())
    renamed = tmp_path / "lzw.fits.gz"
    renamed.write_bytes(open(z, "rb").read())
    np.testing.assert_array_equal(tf.read(renamed).numpy(), image)


def test_gzip_stream_damaged(tmp_path):
    p = tmp_path / "bad.fits.gz"
    p.write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)) * 10)
    with pytest.raises(tf.FitsError, match=r"bad\.fits\.gz: cannot unpack the compressed file: .*\[TF_ENOTFITS\]"):
        tf.read(p)


def test_huge_naxis_claim_refused_before_allocation(tmp_path):
    # A header claiming 10^12 float64 pixels in a 2880-byte file.
    hdr = fits.Header()
    hdr["SIMPLE"] = True
    hdr["BITPIX"] = -64
    hdr["NAXIS"] = 2
    hdr["NAXIS1"] = 1000000
    hdr["NAXIS2"] = 1000000
    p = tmp_path / "huge.fits"
    p.write_bytes(hdr.tostring().encode())
    with pytest.raises(tf.FitsError, match=r"huge\.fits: HDU 0: file is truncated: the image needs 8000000000000 bytes"):
        tf.read(p)
    with pytest.raises(tf.FitsError, match=r"huge\.fits"):
        tf.read_cutout(p, 0, [0, 0], [1, 1])


@pytest.mark.parametrize("key,value,cause", [
    # refused by the core's header guard before cfitsio parses it
    (b"NAXIS1  =", b"          'notanint'", r"NAXIS1 +is not a number"),
    # a number, but not a BITPIX: cfitsio's own check
    (b"BITPIX  =", b"                  17", r"cfitsio status"),
])
def test_corrupt_header_value(tmp_path, image, key, value, cause):
    raw = bytearray(open(image, "rb").read())
    i = raw.find(key)
    raw[i + 10:i + 30] = value
    p = tmp_path / "bad.fits"
    p.write_bytes(bytes(raw))
    with pytest.raises(tf.FitsError, match=r"bad\.fits.*" + cause):
        tf.read(p)


def test_bad_hdu_argument_types(image):
    with pytest.raises(TypeError, match="hdu must be an int"):
        tf.read(image, 1.5)


def test_errors_leak_no_file_descriptors(tmp_path, image, mef):
    missing = str(tmp_path / "missing.fits")
    bad = truncate(image, tmp_path / "t.fits", 3000)
    before = open_fds()
    for _ in range(200):
        for call in (lambda: tf.read(missing), lambda: tf.read(bad), lambda: tf.read(mef, 99),
                     lambda: tf.read(mef, "NOPE"), lambda: tf.read(mef, 7),
                     lambda: tf.read_cutout(image, 0, [0, 0], [99, 1]),
                     lambda: tf.read_header(mef, 42)):
            with pytest.raises(Exception):
                call()
        tf.read(image)
    assert open_fds() == before


def test_input_files_are_not_modified(image, mef):
    before = {p: (os.stat(p).st_mtime_ns, open(p, "rb").read()) for p in (image, mef)}
    tf.read(image)
    tf.read_cutout(image, 0, [1, 1], [5, 5])
    tf.read_header(mef, 2)
    tf.info(mef)
    with pytest.raises(TypeError):
        tf.read(mef, 7)
    for p, (mtime, data) in before.items():
        assert os.stat(p).st_mtime_ns == mtime
        assert open(p, "rb").read() == data


# ---- BLANK where it cannot matter: no data, or a value BITPIX cannot hold ----

def _assert_both_paths(path, hdu, want, dtype):
    """The fast path and cfitsio's (raw too) give `want` (NaN nowhere)."""
    for t in (ops.read(str(path), hdu, False), ops._read_cfitsio(str(path), hdu, [], [], None, False)):
        assert t.dtype == dtype and tuple(t.shape) == want.shape
        assert not (t.is_floating_point() and t.isnan().any())
        np.testing.assert_array_equal(t.numpy(), want)
    raw = ops.read(str(path), hdu, True)
    assert torch.equal(raw, ops._read_cfitsio(str(path), hdu, [], [], None, True))


def test_blank_on_an_empty_primary_does_not_stop_the_file(tmp_path):
    """BITPIX 8, NAXIS 0, BLANK = -1 (as real archives write primary headers):
    the BLANK matters to no pixel, and every HDU reads, as in astropy and
    fitsio. It made info(), open() and every HDU fail [TF_ECORRUPT]."""
    import fitsio

    prim = fits.PrimaryHDU()
    prim.header["BLANK"] = -1
    img = np.arange(12, dtype=">i2").reshape(3, 4)
    cols = [fits.Column(name="a", format="J", array=np.arange(5, dtype=">i4"))]
    path = tmp_path / "blank0.fits"
    fits.HDUList([prim, fits.ImageHDU(img, name="SCI"),
                  fits.BinTableHDU.from_columns(cols, name="CAT")]).writeto(path)
    with fits.open(path) as f:
        assert f[0].header["BITPIX"] == 8 and f[0].header["BLANK"] == -1 and f[0].data is None
        np.testing.assert_array_equal(f[1].data, img)
    with fitsio.FITS(str(path)) as f:
        assert len(f) == 3
        np.testing.assert_array_equal(f[1].read(), img)
    infos = tf.info(path)
    assert [(m.kind, tuple(m.shape)) for m in infos] == [("image", ()), ("image", (3, 4)),
                                                         ("binary_table", (5,))]
    assert tf.num_hdus(path) == 3
    assert tf.read_header(path)["BLANK"] == -1
    with tf.open(path) as f:
        assert len(f) == 3
        got = f[1].read()
        assert got.dtype == torch.int16 and torch.equal(got, torch.from_numpy(img.astype(np.int16)))
        assert f["CAT"]["a"].tolist() == [0, 1, 2, 3, 4]
        assert f[1][1:3, 2:].tolist() == img[1:3, 2:].tolist()
    assert torch.equal(tf.read(path, "SCI"), torch.from_numpy(img.astype(np.int16)))
    with pytest.raises(TypeError, match=r"HDU 0: HDU has no image data"):
        tf.read(path, 0)


@pytest.mark.parametrize("writer", ["astropy", "fitsio"])
@pytest.mark.parametrize("blank", [-1, 300])
def test_uint8_blank_out_of_range_matches_no_pixel(tmp_path, writer, blank):
    """BITPIX 8 with a BLANK no byte can equal: ignored. The image reads as
    plain uint8, every value as stored (fitsio: the same uint8; astropy:
    the same values as float32, no NaN); scaled, as floats with no NaN
    (astropy's values; cfitsio's read, given no null value, agrees). It
    made the file unreadable [TF_ECORRUPT]."""
    import fitsio

    stored = np.array([[0, 1, 44, 127], [128, 254, 255, 7]], np.uint8)  # 300 % 256 = 44
    path = tmp_path / f"u8-{writer}.fits"
    ext = np.arange(6, dtype=np.int16).reshape(2, 3)
    if writer == "astropy":
        prim = fits.PrimaryHDU(stored)
        prim.header["BLANK"] = blank
        fits.HDUList([prim, fits.ImageHDU(ext)]).writeto(path)
    else:
        with fitsio.FITS(str(path), "rw", clobber=True) as f:
            f.write(stored, header=[{"name": "BLANK", "value": blank}])
            f.write(ext)
    assert fits.getheader(path)["BLANK"] == blank
    assert tf.info(path)[0].dtype == torch.uint8
    _assert_both_paths(path, 0, stored, torch.uint8)
    np.testing.assert_array_equal(fitsio.read(str(path), ext=0), stored)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = fits.getdata(path)
    assert not np.isnan(ref).any()
    np.testing.assert_array_equal(ref, stored)
    assert tf.read_cutout(path, 0, [1, 1], [1, 3]).tolist() == [[254, 255, 7]]
    assert torch.equal(tf.open(path)[1].read(), torch.from_numpy(ext))

    # scaled: floats, and the BLANK still matches nothing
    prim = fits.PrimaryHDU(stored)
    prim.header["BSCALE"], prim.header["BZERO"], prim.header["BLANK"] = 2.0, 1.0, blank
    scaled = tmp_path / f"u8s-{writer}.fits"
    prim.writeto(scaled)
    with fits.open(scaled) as f:
        ref = f[0].data
    assert not np.isnan(ref).any()
    _assert_both_paths(scaled, 0, ref, torch.float32)


@pytest.mark.parametrize("bitpix,blank,bscale", [(16, -32769, 0.5), (16, 40000, 1.0),
                                                 (32, 2**32 - 1, 0.5), (32, 2**31, 1.0)])
def test_wide_blank_out_of_range_is_not_cut(tmp_path, bitpix, blank, bscale):
    """A BLANK outside BITPIX's range, read into floats: cfitsio cuts a BITPIX
    32 BLANK to 32 bits when asked to check nulls (2^32 - 1 made every -1
    NaN); the core gives it no null value, so no pixel is NaN on either
    path, as astropy reads it."""
    dt = {16: ">i2", 32: ">i4"}[bitpix]
    info = np.iinfo(dt)
    stored = np.array([[0, -1, info.max], [info.min, 5, 7]], dt)
    prim = fits.PrimaryHDU(stored)
    prim.header["BSCALE"], prim.header["BLANK"] = bscale, blank
    path = tmp_path / "wide.fits"
    prim.writeto(path)
    with fits.open(path) as f:
        ref = f[0].data  # floats, no NaN
    assert ref.dtype.kind == "f" and not np.isnan(ref).any()
    if bscale == 1.0:  # unscaled: the stored integers, as fitsio gives them
        _assert_both_paths(path, 0, stored.astype(stored.dtype.newbyteorder("=")),
                           {16: torch.int16, 32: torch.int32}[bitpix])
    else:
        _assert_both_paths(path, 0, ref, {16: torch.float32, 32: torch.float64}[bitpix])
