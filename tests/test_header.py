"""Headers compared with astropy's reading of the same files."""
import warnings

import numpy as np
import pytest
import torch
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning

import torchfits_ops as tf
from fitsgen import random_array, write_multi_extension

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
