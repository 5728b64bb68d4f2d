"""The fast open (csrc/core/file/guard.c, tf_fast_primary): the core parses a
plain primary image header itself and reads HDU 0 with no cfitsio; any
header it is not certain of goes to cfitsio. For headers written card by
card (odd spacing, 1.0E0, CONTINUE, HIERARCH, lower case, duplicates...),
a C probe says which way tf_open went, and `read` must equal cfitsio's own
read (`_read_cfitsio`, which always takes cfitsio's parse of the header)
value for value, dtype and shape, or both must raise the same exception."""
import glob
import re
import os
import shutil
import subprocess

import fitsio
import numpy as np
import pytest
import torch
from astropy.io import fits

import torchfits_ops as tf
from fitsgen import random_array
from unsigned import assert_unsigned

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CC = shutil.which("cc") or shutil.which("gcc")
SHAPE = (5, 7)  # NAXIS2, NAXIS1


def num(key, value, comment=""):
    card = f"{key:<8}= {value:>20}"
    return card + (f" / {comment}" if comment else "")


def build_file(path, cards, bitpix=16, data=None, mandatory=None):
    """Header cards as written (mandatory ones first unless given), END,
    then the big-endian data."""
    if data is None:
        data = random_array(SHAPE, bitpix, seed=abs(bitpix))
    if mandatory is None:
        mandatory = [num("SIMPLE", "T"), num("BITPIX", bitpix), num("NAXIS", data.ndim)]
        mandatory += [num(f"NAXIS{i + 1}", n) for i, n in enumerate(reversed(data.shape))]
    text = b"".join(c.encode("latin-1").ljust(80)[:80] for c in mandatory + cards)
    text += b"END".ljust(80)
    text += b" " * (-len(text) % 2880)
    raw = np.ascontiguousarray(data).astype(data.dtype.newbyteorder(">")).tobytes()
    raw += b"\0" * (-len(raw) % 2880)
    with open(path, "wb") as f:
        f.write(text + raw)
    return str(path)


def with_blank(bitpix, blank):
    d = random_array(SHAPE, bitpix, seed=3)
    d.flat[::4] = blank
    return d


FILLER = [num(f"KEY{i:03d}", i * 1.5, f"card {i}") for i in range(150)]  # > 4 blocks

# (id, cards, BITPIX, data, fast open expected)
VARIANTS = [
    ("plain", [], 16, None, True),
    ("bscale-1.0E0", [num("BSCALE", "1.0E0"), num("BZERO", "3.5")], 16, None, True),
    ("bscale-exponents", [num("BSCALE", "2.5E-3"), num("BZERO", "-1.25E+2")], 32, None, True),
    ("unsigned-16", [num("BZERO", 32768)], 16, None, True),
    ("unsigned-32", [num("BZERO", 2147483648)], 32, None, True),
    ("unsigned-64", [num("BZERO", 9223372036854775808)], 64, None, True),
    ("unsigned-64-exponent", [num("BZERO", "9.223372036854775808E18")], 64, None, True),
    ("unsigned-64-string", ["BZERO   = '9223372036854775808'"], 64, None, False),  # fitsio's
    ("int8", [num("BZERO", -128)], 8, None, True),
    ("blank-scaled", [num("BSCALE", 0.5), num("BZERO", 1.0), num("BLANK", -3)], 16,
     with_blank(16, -3), True),
    ("blank-unscaled", [num("BLANK", 9)], 32, with_blank(32, 9), True),
    ("blank-on-float", [num("BLANK", 5)], -32, None, True),
    # a BLANK BITPIX cannot hold matches no pixel: ignored by both parses
    ("blank-out-of-range", [num("BLANK", 40000)], 16, None, True),
    ("blank-out-of-range-u8", [num("BLANK", -1)], 8, with_blank(8, 255), True),
    ("blank-out-of-range-scaled", [num("BSCALE", 0.5), num("BLANK", 2**32 - 1)], 32,
     with_blank(32, -1), True),
    ("pcount-gcount", [num("PCOUNT", 0), num("GCOUNT", 1), num("EXTEND", "T")], -64, None, True),
    ("commentary-and-strings", ["COMMENT a comment", "HISTORY one", "", "DATE    = '2020-01-01'",
                                "OBJECT  = 'It''s / not a comment'", num("BSCALE", 2.0),
                                "        free text in a blank keyword"], 16, None, True),
    ("long-header-small-file", FILLER + [num("BZERO", 10.0)], 16, None, True),
    ("free-format", [], 16, None, True),  # mandatory cards below
    # handed to cfitsio
    ("continue", ["OBJECT  = 'abc&'", "CONTINUE  'def'", num("BZERO", 2.0)], 16, None, False),
    ("hierarch", ["HIERARCH ESO DET CHIP = 3"], 16, None, False),
    ("hierarch-bscale", ["HIERARCH BSCALE = 2.0"], 16, None, False),
    ("lowercase", ["bscale  =                  2.0"], 16, None, False),
    ("duplicate-bscale", [num("BSCALE", 2.0), num("BSCALE", 3.0)], 16, None, False),
    ("duplicate-blank", [num("BLANK", 9), num("BLANK", 7)], 16, with_blank(16, 9), False),
    ("bscale-D", [num("BSCALE", "1.0D0")], 16, None, False),
    ("bscale-zero", [num("BSCALE", 0.0)], 16, None, False),
    ("bscale-huge", [num("BSCALE", "1E400")], 16, None, False),
    ("bzero-two-tokens", ["BZERO   = 1 2"], 16, None, False),
    ("bscale-no-equals", ["BSCALE    2.0"], 16, None, False),
    ("extname", ["EXTNAME = 'SCI'"], 16, None, False),
    ("groups", [num("GROUPS", "T")], 16, None, False),
    ("extra-naxis3", [num("NAXIS3", 4)], 16, None, False),
    ("non-ascii", ["COMMENT caf\xe9"], 16, None, False),
    ("end-with-junk", [], 16, None, False),  # END card rewritten below
]


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    if CC is None:
        pytest.skip("no C compiler")
    out = str(tmp_path_factory.mktemp("probe") / "fast_open_probe")
    sources = sorted(glob.glob(os.path.join(ROOT, "csrc/core/**/*.c"), recursive=True))
    res = subprocess.run([CC, "-std=c11", "-O1", os.path.join(ROOT, "tests/c/fast_open_probe.c"),
                          *sources, "-o", out, "-lwcs", "-lcfitsio", "-lcurl", "-ldeflate", "-lz", "-lpthread", "-lm"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr

    def run(paths):
        r = subprocess.run([out, *paths], capture_output=True, text=True, timeout=60, check=True)
        return {line.split(" ", 2)[2]: (line.split()[0], line.split()[1] == "1")
                for line in r.stdout.splitlines()}
    return run


def outcome(fn):
    """(tensor, None), or (None, (exception type, its [TF_...] status))."""
    try:
        return fn(), None
    except Exception as e:  # compared by type and status below
        return None, (type(e), re.findall(r"\[TF_\w+\]", str(e)))


def assert_same(a, b):
    (ta, ea), (tb, eb) = a, b
    assert ea == eb, (ea, eb)
    if ta is None:
        return
    assert ta.dtype == tb.dtype and ta.shape == tb.shape
    if ta.is_floating_point():
        assert torch.equal(torch.isnan(ta), torch.isnan(tb))
        assert torch.equal(ta.nan_to_num(), tb.nan_to_num())
    else:
        assert torch.equal(ta, tb)


def make_variant(tmp_path, vid, cards, bitpix, data):
    path = tmp_path / f"{vid}.fits"
    if vid == "free-format":
        mandatory = ["SIMPLE  = T", "BITPIX  = 16 / two bytes", "NAXIS   = 2",
                     "NAXIS1  = 7", "NAXIS2  =          5"]
        return build_file(path, cards, bitpix, data, mandatory)
    p = build_file(path, cards, bitpix, data)
    if vid == "end-with-junk":
        b = bytearray(open(p, "rb").read())
        at = b.index(b"END" + b" " * 77)
        b[at + 40:at + 43] = b"xyz"
        open(p, "wb").write(bytes(b))
    return p


@pytest.mark.parametrize("vid,cards,bitpix,data,fast", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_header_variants_read_as_cfitsio_does(tmp_path, probe, vid, cards, bitpix, data, fast):
    path = make_variant(tmp_path, vid, cards, bitpix, data)
    status, took_fast = probe([path])[path]
    assert took_fast == fast, status
    for raw in (False, True):
        mine = outcome(lambda: torch.ops.torchfits.read(path, 0, raw))
        ref = outcome(lambda: torch.ops.torchfits._read_cfitsio(path, 0, [], [], None, raw))
        assert_same(mine, ref)
        cut = outcome(lambda: torch.ops.torchfits.read_cutout(path, 0, [1, 2], [3, 4], None, raw))
        cut_ref = outcome(lambda: torch.ops.torchfits._read_cfitsio(path, 0, [1, 2], [3, 4],
                                                                     None, raw))
        assert_same(cut, cut_ref)
    if fast and "BLANK" not in "".join(cards):
        # and the values of an independent reader (on cfitsio, scaling in double)
        t = tf.read(path)
        # fitsio fails (status 412) on BITPIX 64 with a numeric BZERO 2^63,
        # as astropy writes it; it reads its own, a string: astropy there
        expected = fits.getdata(path) if vid.startswith("unsigned-64") else fitsio.read(path)
        if expected.dtype.kind == "u" and expected.dtype.itemsize > 1:
            assert_unsigned(t, expected, 8 * expected.dtype.itemsize)
        else:
            np.testing.assert_array_equal(t.numpy(), expected.astype(t.numpy().dtype))


def test_first_wins_for_a_duplicated_bscale(tmp_path):
    path = make_variant(tmp_path, "dup", [num("BSCALE", 2.0), num("BSCALE", 3.0)], 16, None)
    stored = tf.read(path, raw=True).to(torch.float64)
    assert torch.equal(tf.read(path), (stored * 2.0).to(torch.float32))
    assert tf.read_header(path)["BSCALE"] == 2.0


def test_long_header_of_a_large_file_goes_to_cfitsio(tmp_path, probe):
    data = random_array((200, 100), -32, seed=5)  # 80 KB: past the whole-file read
    path = build_file(tmp_path / "big.fits", FILLER, -32, data)
    short = build_file(tmp_path / "short.fits", FILLER[:20], -32, data)
    got = probe([path, short])
    assert got[path] == ("TF_OK", False) and got[short] == ("TF_OK", True)
    for p in (path, short):
        assert_same(outcome(lambda: torch.ops.torchfits.read(p, 0, False)),
                    outcome(lambda: torch.ops.torchfits._read_cfitsio(p, 0, [], [], None, False)))
        np.testing.assert_array_equal(tf.read(p).numpy(), fitsio.read(p))


def test_other_calls_open_cfitsio_when_needed(tmp_path, probe):
    # A fast-opened file: header, info, EXTNAME lookup and the extension
    # (through cfitsio, opened on first use) work as before.
    from astropy.io import fits
    path = str(tmp_path / "mef.fits")
    prim = fits.PrimaryHDU(random_array((6, 4), 16, seed=1))
    prim.header["BZERO"] = 5.0
    ext = fits.ImageHDU(random_array((3, 2), -64, seed=2), name="SCI")
    fits.HDUList([prim, ext]).writeto(path)
    assert probe([path])[path] == ("TF_OK", True)
    assert tf.num_hdus(path) == 2
    assert tf.read_header(path)["BZERO"] == 5.0
    assert [i.name for i in tf.info(path)] == ["", "SCI"]
    np.testing.assert_array_equal(tf.read(path, "SCI").numpy(), fitsio.read(path, ext=1))
    np.testing.assert_array_equal(tf.read(path, "PRIMARY").numpy(),
                                  fitsio.read(path, ext=0).astype(np.float32))
    with tf.open(path) as f:
        assert f[0].shape == (6, 4) and f[0][1:3, 1:3].shape == (2, 2)


def test_truncated_data_of_a_fast_opened_file(tmp_path, probe):
    path = build_file(tmp_path / "t.fits", [], -32, random_array((50, 40), -32, seed=6))
    b = open(path, "rb").read()
    open(path, "wb").write(b[:2880 + 4000])
    assert probe([path])[path] == ("TF_OK", True)
    with pytest.raises(tf.FitsError, match=r"HDU 0: file is truncated.*\[TF_ECORRUPT\]"):
        tf.read(path)
    with pytest.raises(RuntimeError, match=r"HDU 0: file is truncated.*\[TF_ECORRUPT\]"):
        torch.ops.torchfits._read_cfitsio(path, 0, [], [], None, False)


@pytest.mark.parametrize("shape,tail", [
    ((), b""), ((1,), b""), ((10, 288), b""), ((7, 13), b""), ((7, 13), b"\0" * 2880),
    ((7, 13), b"X" * 100), ((7, 13), b"END" + b" " * 2877),
])
def test_hdu_count_without_cfitsio_agrees(tmp_path, shape, tail):
    """A fast-opened file that ends where HDU 0's padded data ends is
    counted as one HDU without cfitsio; anything after it goes to cfitsio.
    Either way the count is cfitsio's (fitsio) and astropy's."""
    from astropy.io import fits
    path = tmp_path / "n.fits"
    data = np.arange(int(np.prod(shape)), dtype=">i2").reshape(shape) if shape else None
    fits.PrimaryHDU(data).writeto(path)
    with open(path, "ab") as fh:
        fh.write(tail)
    with fitsio.FITS(str(path)) as f:
        want = len(f)
    assert tf.num_hdus(path) == want == len(tf.open(path))
    if not tail:
        assert want == 1
    if shape:
        np.testing.assert_array_equal(tf.open(path)[0].read().numpy(), data)
