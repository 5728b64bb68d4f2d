"""Headers compared with astropy's reading of the same files."""
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning

import torchfits_ops as tf
from fitsgen import random_array, run_threads, write_compressed_astropy, write_multi_extension

ops = torch.ops.torchfits
LONG = "a long string value that does not fit on one card, " * 4 + "and ends here"


@pytest.fixture(scope="module")
def header_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("hdr") / "h.fits"
    hdu = fits.PrimaryHDU(random_array((4, 5), 16))
    h = hdu.header
    h["OBJECT"] = ("M31", "the target")
    h["EXPTIME"] = (300.5, "seconds")
    h["NCOMBINE"] = 7
    h["BIGINT"] = 2**40
    h["FLAG"] = False
    h["QUOTED"] = "it's here"
    h["TRAILING"] = "abc   "
    h["LEADING"] = "   xyz"
    h["EMPTYSTR"] = ""
    h["UNDEF"] = None
    h["SMALL"] = 1.5e-30
    h["LONGSTR"] = LONG
    h["DUP"] = 1
    h.append(("DUP", 2))
    h["COMMENT"] = "first comment"
    h["COMMENT"] = "second comment"
    h["HISTORY"] = "step one"
    h["HISTORY"] = "step two"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)
        h["HIERARCH ESO DET CHIP NAME"] = "CCD-42"
    hdu.writeto(path)
    return str(path)


def test_typed_values_match_astropy(header_file):
    got = tf.read_header(header_file)
    ref = fits.getheader(header_file)
    for key in ("SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "OBJECT", "EXPTIME",
                "NCOMBINE", "BIGINT", "FLAG", "QUOTED", "LEADING", "EMPTYSTR", "SMALL",
                "LONGSTR", "ESO DET CHIP NAME"):
        assert got[key] == ref[key], key
        assert type(got[key]) is type(ref[key]), key
    assert got["TRAILING"] == "abc"  # trailing blanks are not significant in FITS
    assert got["UNDEF"] is None
    assert got["LONGSTR"] == LONG
    assert got["DUP"] == 1
    assert got["COMMENT"] == "first comment\nsecond comment"
    assert got["HISTORY"] == "step one\nstep two"
    assert list(got)[:5] == ["SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2"]
    assert "END" not in got and "CONTINUE" not in got


def test_op_gives_text_values(header_file):
    d = ops.read_header(header_file, 0)
    assert d["OBJECT"] == "M31"
    assert d["EXPTIME"] == "300.5"
    assert d["FLAG"] == "F"
    assert d["QUOTED"] == "it's here"
    assert d["LONGSTR"] == LONG
    assert d["DUP"] == "1"
    assert d["COMMENT"] == "first comment\nsecond comment"
    keys, values, comments, types = ops.read_header_cards(header_file, 0)
    card = dict(zip(keys, zip(values, comments, types)))
    assert card["OBJECT"] == ("M31", "the target", "C")
    assert card["EXPTIME"] == ("300.5", "seconds", "F")
    assert card["NCOMBINE"][2] == "I" and card["FLAG"][2] == "L" and card["UNDEF"][2] == "U"
    assert keys.count("DUP") == 2 and keys.count("COMMENT") == 2


def test_every_keyword_of_a_multi_extension_file(tmp_path):
    path = write_multi_extension(tmp_path / "m.fits")
    with fits.open(path) as ref:
        for i, hdu in enumerate(ref):
            got = tf.read_header(path, i)
            want = {k: v for k, v in hdu.header.items() if k not in ("COMMENT", "HISTORY", "")}
            assert {k: got[k] for k in want} == want
    assert tf.read_header(path, ("SCI", 2))["EXTVER"] == 2
    assert ops.read_header(path, "DQ", 2)["EXTNAME"] == "DQ"
    with tf.open(path) as f:
        assert f["ERR"].header["EXTNAME"] == "ERR"


def test_compressed_image_header_is_the_image_header(tmp_path):
    data = random_array((30, 40), 16, seed=2)
    hdu = fits.CompImageHDU(data, compression_type="RICE_1", name="SCI")
    hdu.header["GAIN"] = 2.5
    path = tmp_path / "c.fits"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    got = tf.read_header(path, 1)
    with fits.open(path) as ref:
        want = ref[1].header
    assert got["NAXIS1"] == 40 and got["NAXIS2"] == 30 and got["BITPIX"] == 16
    assert got["GAIN"] == 2.5 and got["EXTNAME"] == "SCI"
    assert "ZIMAGE" not in got and "ZCMPTYPE" not in got and "TFORM1" not in got
    for key in ("BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "GAIN", "EXTNAME"):
        assert got[key] == want[key]


def test_gzip_file_header(tmp_path):
    import gzip

    hdu = fits.PrimaryHDU(np.zeros((3, 3), dtype=np.float32))
    hdu.header["OBSERVER"] = "Hubble"
    p = tmp_path / "h.fits"
    hdu.writeto(p)
    gz = tmp_path / "h.fits.gz"
    gz.write_bytes(gzip.compress(p.read_bytes()))
    assert tf.read_header(gz)["OBSERVER"] == "Hubble"


# Compressed images: the image's own header, built by cfitsio. The core's
# tf_hdr2str (csrc/core/header/hdr2str.c) builds it as fits_convert_hdr2str
# does, but in a scratch memory file that never holds the image's (empty)
# data unit; tests/c/test_hdr2str.c compares the two byte for byte.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CC = shutil.which("cc") or shutil.which("gcc")
NOTE = "a note on the image " * 3


def _image_header(cards=0, long=True, extname=None):
    """An image header for astropy: GAIN, HISTORY, COMMENT, a CONTINUE
    string, and `cards` more keys (several 2880-byte blocks)."""
    h = fits.Header()
    if extname:
        h["EXTNAME"] = extname
    h["GAIN"] = (2.5, "e-/ADU")
    h["OBJECT"] = "NGC 1275"
    h["HISTORY"] = "reduced"
    h["COMMENT"] = "a comment"
    if long:
        h["LONGSTR"] = LONG
    for i in range(cards):
        h[f"KEY{i:05d}"] = (i * 0.5, f"card {i}")
        if i % 10 == 0:
            h["HISTORY"] = f"step {i}"
    return h


def _fitsio_header(cards=0):
    recs = [{"name": "GAIN", "value": 2.5, "comment": "e-/ADU"},
            {"name": "OBJECT", "value": "NGC 1275"},
            {"name": "LONGSTR", "value": LONG},
            {"name": "HISTORY", "value": "reduced"},
            {"name": "COMMENT", "value": "a comment"}]
    recs += [{"name": f"KEY{i:05d}", "value": i, "comment": f"card {i}"} for i in range(cards)]
    return recs


@pytest.fixture(scope="module")
def compressed_files(tmp_path_factory):
    """{name: path} of tile-compressed images in HDU 1, of each codec and
    kind, written by astropy and by fitsio."""
    d = tmp_path_factory.mktemp("chdr")
    i16 = random_array((30, 40), 16, seed=3)
    i32 = (random_array((30, 40), 32, seed=4) // 65536).astype(np.int32)
    f32 = random_array((30, 40), -32, seed=5)
    plio = np.abs(i16 // 8).astype(np.int16)
    out = {}

    def astropy(name, data, ctype, header=None, **kw):
        out["astropy_" + name] = write_compressed_astropy(d / f"a_{name}.fits", data, ctype,
                                                          header=header, **kw)

    astropy("rice_i16", i16, "RICE_1", _image_header(extname="SCI"), tile_shape=(10, 40))
    astropy("rice_f32_quantized", f32, "RICE_1", _image_header(), quantize_level=8.0)
    astropy("gzip1_f32_quantized", f32, "GZIP_1", _image_header(extname="FLUX"))
    astropy("gzip2_i32", i32, "GZIP_2", _image_header())
    # Not full-range int16: astropy 5.2's hcompress aborts on that.
    astropy("hcompress_i16", i16 // 8, "HCOMPRESS_1", _image_header(), tile_shape=(10, 40))
    astropy("plio_i16", plio, "PLIO_1", _image_header(extname="MASK"))
    astropy("checksum", i16, "RICE_1", _image_header(extname="SCI"), checksum=True)
    astropy("long_header", i16, "RICE_1", _image_header(cards=150, extname="SCI"))
    primary = fits.PrimaryHDU(i16).header  # ZSIMPLE: it was a primary array
    primary.extend(_image_header(), end=True)
    astropy("zsimple", i16, "RICE_1", primary)

    def fitsio_(name, data, compress, cards=0, checksum=False, **kw):
        import fitsio

        path = str(d / f"f_{name}.fits")
        with fitsio.FITS(path, "rw", clobber=True) as f:
            f.write(data, header=_fitsio_header(cards), compress=compress, **kw)
            if checksum:
                f[-1].write_checksum()
        out["fitsio_" + name] = path

    fitsio_("rice_i16", i16, "RICE", extname="IMG")
    fitsio_("gzip_f32_quantized", f32, "GZIP")
    fitsio_("gzip2_i32", i32, "GZIP_2")
    fitsio_("hcompress_i32", i32, "HCOMPRESS", tile_dims=(10, 40))
    fitsio_("plio_i16", plio, "PLIO")
    fitsio_("checksum", i16, "RICE", checksum=True)
    fitsio_("long_header", f32, "RICE", cards=120, extname="SCI")
    return out


def _build_hdr2str(out, sanitize):
    flags = ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
             "-fno-omit-frame-pointer"] if sanitize else ["-O2"]
    cmd = [CC, "-std=c11", "-Wall", "-Wextra", "-Werror", *flags,
           os.path.join(ROOT, "tests/c/test_hdr2str.c"),
           os.path.join(ROOT, "csrc/core/header/hdr2str.c"), "-o", out, "-lcfitsio", "-lpthread", "-lm"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return out


@pytest.mark.parametrize("mode", ["O2", "asan-ubsan"])
def test_compressed_header_is_cfitsios_byte_for_byte(tmp_path, compressed_files, header_file,
                                                    refused_file, mode):
    if CC is None:
        pytest.skip("no C compiler")
    exe = _build_hdr2str(str(tmp_path / f"test_hdr2str_{mode}"), mode != "O2")
    plain = write_multi_extension(tmp_path / "m.fits")  # not compressed: ffhdr2str as is
    files = sorted(compressed_files.values()) + [plain, header_file, refused_file]
    res = subprocess.run([exe, *files], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, ASAN_OPTIONS="detect_leaks=1"))
    assert res.returncode == 0, res.stdout + res.stderr
    # Each HDU 1, twice; cfitsio refuses the rebuilt header of refused_file.
    assert f"compressed {2 * len(compressed_files) + 2}\nrefused 2\n" in res.stdout
    passed, failed = res.stdout.strip().splitlines()[-1].split(" passed, ")
    assert failed == "0 failed" and int(passed) > 10 * len(files), res.stdout + res.stderr
    assert "ERROR: AddressSanitizer" not in res.stderr and "runtime error" not in res.stderr


# The keys that say what kind of HDU it is are left out: cfitsio rebuilds
# a primary array (SIMPLE, EXTEND) unless the table has ZTENSION, which
# astropy 5.2 does not write, and astropy gives XTENSION, PCOUNT, GCOUNT.
STRUCTURE = ("SIMPLE", "XTENSION", "EXTEND", "PCOUNT", "GCOUNT")
# Compression keys astropy 5.2 leaves in the image header (cfitsio drops them).
LEFT_BY_ASTROPY_5_2 = ("ZDITHER0", "ZQUANTIZ")


def _image_keys(header):
    return {k: v for k, v in header.items()
            if k not in ("", "COMMENT", "HISTORY", "CHECKSUM", "DATASUM") + STRUCTURE
            + LEFT_BY_ASTROPY_5_2}


def test_compressed_header_matches_astropy(compressed_files):
    for name, path in compressed_files.items():
        got = tf.read_header(path, 1)
        ref = fits.getheader(path, 1)
        want = _image_keys(ref)
        assert {k: got.get(k) for k in want} == want, name
        with fits.open(path, disable_image_compression=True) as raw:
            table = raw[1].header
        primary = "ZSIMPLE" in table or "ZTENSION" not in table
        assert list(got)[0] == ("SIMPLE" if primary else "XTENSION"), name
        assert got["LONGSTR"] == LONG and got["GAIN"] == 2.5 and got["OBJECT"] == "NGC 1275"
        assert "reduced" in got["HISTORY"].split("\n") and "a comment" in got["COMMENT"]
        assert not any(k.startswith(("ZIMAGE", "ZCMPTYPE", "ZBITPIX", "ZNAXIS", "ZTILE", "TFORM"))
                       for k in got), name
        assert (got["NAXIS1"], got["NAXIS2"]) == (40, 30), name
        if "long_header" in name:
            assert got["KEY00119"] == (119 * 0.5 if name.startswith("astropy") else 119)
    assert tf.read_header(compressed_files["astropy_rice_i16"], 1)["EXTNAME"] == "SCI"
    assert tf.read_header(compressed_files["fitsio_rice_i16"], 1)["EXTNAME"] == "IMG"
    assert tf.read_header(compressed_files["astropy_gzip1_f32_quantized"], 1)["BITPIX"] == -32
    # Written from a primary array (ZSIMPLE): SIMPLE, as astropy and cfitsio give it.
    assert list(tf.read_header(compressed_files["astropy_zsimple"], 1))[0] == "SIMPLE"
    assert list(fits.getheader(compressed_files["astropy_zsimple"], 1))[0] == "SIMPLE"


def test_compressed_headers_read_on_threads_at_once(compressed_files):
    # Each thread's scratch file is its own (the refusal to grow is per thread).
    paths = sorted(compressed_files.values())
    want = [tf.read_header(p, 1) for p in paths]

    def work(k):
        for r in range(20):
            i = (k + r) % len(paths)
            assert tf.read_header(paths[i], 1) == want[i], paths[i]

    assert run_threads(work, 8) == []


# A read in a fresh process that reports its peak resident size. The image
# claims 16384 x 16384 float32 (1 GiB uncompressed): astropy writes 64 rows
# of one tile each, and the header is then made to say 16384 rows in tiles
# of 256 (64 tiles still), in place. Only the header is read, so the file
# needs no 1 GiB array to write (the tiles' contents are not read).
_RSS_SCRIPT = """
import resource, sys
import torchfits_ops as tf
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
h = tf.read_header(sys.argv[1], 1)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
assert (h["NAXIS1"], h["NAXIS2"], h["BITPIX"], h["EXTNAME"]) == (16384, 16384, -32, "BIG"), h
print(before, after)
"""


def _put_card(path, start, card):
    """Overwrite, in place, the card of `path` that starts with `start`."""
    raw = bytearray(open(path, "rb").read())
    at = raw.find(start)
    assert at >= 0 and at % 80 == 0, start
    raw[at:at + 80] = card.ljust(80).encode()
    open(path, "wb").write(raw)


def _kind_card(path, kind, at):
    """Make the card that starts with `at` say the HDU was an extension
    (ZTENSION), a primary array (ZSIMPLE), or neither; the others go."""
    card = {"ZTENSION": "ZTENSION= 'IMAGE   '", "ZSIMPLE": "ZSIMPLE =                    T",
            "neither": "COMMENT neither"}[kind]
    _put_card(path, at, "SPARE   =                    0")
    for key in (b"ZTENSION= ", b"ZSIMPLE = "):
        if key in open(path, "rb").read():
            _put_card(path, key, "COMMENT was " + key.decode())
    _put_card(path, b"SPARE   = ", card)


@pytest.fixture(scope="module")
def refused_file(tmp_path_factory):
    """ZTENSION after EXTNAME: the rebuilt header's first card is EXTNAME,
    which cfitsio refuses when it reads the header back (status 252)."""
    path = write_compressed_astropy(tmp_path_factory.mktemp("refused") / "late.fits",
                                    random_array((30, 40), 16, seed=7), "RICE_1",
                                    header=fits.Header([("EXTNAME", "LATE"), ("SPARE", 0)]))
    _kind_card(path, "ZTENSION", b"SPARE   = ")
    return path


def test_compressed_header_refused_as_cfitsio_refuses_it(refused_file):
    with pytest.raises(tf.FitsError, match=r"late\.fits: HDU 1: cannot read the header "
                                           r"\(cfitsio status 252: 1st key not SIMPLE or "
                                           r"XTENSION\)"):
        tf.read_header(refused_file, 1)
    assert tf.read_header(refused_file, 0)["SIMPLE"] is True  # the file stays usable


# cfitsio rebuilds the header three ways: an extension (ZTENSION), a
# primary array (ZSIMPLE), or a new image (neither, as astropy 5.2 writes).
@pytest.mark.parametrize("kind", ["ZTENSION", "ZSIMPLE", "neither"])
def test_compressed_header_does_not_allocate_the_image(tmp_path, kind):
    path = write_compressed_astropy(tmp_path / "big.fits", np.zeros((64, 16384), np.float32),
                                    "RICE_1", tile_shape=(1, 16384),
                                    header=fits.Header([("EXTNAME", "BIG")]))
    _put_card(path, b"ZNAXIS2 = ", f"ZNAXIS2 = {16384:>20}")
    _put_card(path, b"ZTILE2  = ", f"ZTILE2  = {256:>20}")
    # Right after ZIMAGE, where cfitsio wants it.
    if b"ZTENSION= " in open(path, "rb").read():
        _kind_card(path, kind, b"ZTENSION= ")
    elif kind != "neither":  # astropy 5.2 writes "neither", with no room for more
        pytest.skip("astropy 5.2 writes neither ZTENSION nor ZSIMPLE (astropy 8 does)")
    with fits.open(path, disable_image_compression=True) as f:
        assert ("ZSIMPLE" in f[1].header) == (kind == "ZSIMPLE")
        assert ("ZTENSION" in f[1].header) == (kind == "ZTENSION")
    assert fits.getheader(path, 1)["NAXIS2"] == 16384
    res = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, path], capture_output=True,
                         text=True, timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    before, after = (int(x) for x in res.stdout.split())  # KiB
    # cfitsio's fits_convert_hdr2str: about 1 GiB more (the zeroed data unit).
    assert after - before < 64 << 10, (before, after)
