"""Paths are bytes to the OS: str, bytes, os.PathLike and str with
surrogate escapes all name the file they name; NUL is a ValueError."""
import os
import pathlib

import numpy as np
import pytest
import torch
from astropy.io import fits

import torchfits_ops as tf


@pytest.fixture
def image():
    return np.arange(12, dtype=np.int16).reshape(3, 4)


def _every_reader(path, image):
    """Each way in reads the file: image, cutout, header, info, table-less
    metadata, open(), a batch and a dataset."""
    np.testing.assert_array_equal(tf.read(path).numpy(), image)
    np.testing.assert_array_equal(tf.read_cutout(path, 0, [1, 1], [2, 2]).numpy(), image[1:3, 1:3])
    assert tf.read_header(path)["NAXIS1"] == 4
    assert tf.num_hdus(path) == 1 and tf.info(path)[0].shape == (3, 4)
    with tf.open(path) as f:
        np.testing.assert_array_equal(f[0][0:2, :].numpy(), image[0:2])
    from torchfits_ops.data import FitsDataset
    ds = FitsDataset([path, path])
    np.testing.assert_array_equal(ds[1].numpy(), image)


def test_non_utf8_names_as_str_and_bytes(tmp_path, image):
    name = os.fsencode(str(tmp_path)) + b"/caf\xe9-\xff.fits"  # Latin-1, not UTF-8
    with open(name, "wb") as fh:
        fits.PrimaryHDU(image).writeto(fh)
    listed = [n for n in os.listdir(tmp_path) if n.startswith("caf")]
    assert listed == ["caf\udce9-\udcff.fits"]  # what os.listdir gives: surrogate escapes
    _every_reader(name, image)
    _every_reader(os.path.join(tmp_path, listed[0]), image)
    _every_reader(pathlib.Path(tmp_path, listed[0]), image)
    # and the message of a failure shows the bytes
    missing = os.fsencode(str(tmp_path)) + b"/no-\xe9.fits"
    with pytest.raises(FileNotFoundError, match=r"no-\\xe9\.fits"):
        tf.read(missing)


def test_utf8_names(tmp_path, image):
    path = tmp_path / "δ Cep – ñ.fits"
    fits.writeto(path, image)
    _every_reader(path, image)
    _every_reader(os.fsencode(str(path)), image)


def test_nul_is_a_value_error(tmp_path, image):
    path = tmp_path / "a.fits"
    fits.writeto(path, image)
    for bad in (str(path) + "\0junk", os.fsencode(str(path)) + b"\0junk"):
        with pytest.raises(ValueError, match="a path cannot contain a NUL byte"):
            tf.read(bad)
        with pytest.raises(ValueError, match="a path cannot contain a NUL byte"):
            tf.info(bad)
    # the operators too, which TorchScript calls directly
    with pytest.raises(ValueError, match=r"a path cannot contain a NUL byte: '.*a\.fits\\x00junk'"):
        torch.ops.torchfits.read(str(path) + "\0junk", 0, False)
    with pytest.raises(ValueError, match="a path cannot contain a NUL byte"):
        torch.ops.torchfits.read_batch([str(path), "x\0"], 0, None, None, None, False, False, 0)
    # EXTNAME and column names, where astropy and fitsio raise too
    with pytest.raises(ValueError, match="an EXTNAME cannot contain a NUL byte"):
        tf.read(path, "SCI\0X")
