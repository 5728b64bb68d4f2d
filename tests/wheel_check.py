"""Run by `./run.sh wheel` in a fresh venv holding only torch and the
wheel, from outside the repository: the installed package imports and
reads a file. (Not a pytest module: it needs that venv.)"""
import os
import struct
import sys
import tempfile

import torch

import torchfits_ops as tf

here = os.path.dirname(os.path.abspath(tf.__file__))
assert "site-packages" in here, f"torchfits_ops was imported from {here}, not the installed wheel"


def card(text: str) -> bytes:
    return text.ljust(80).encode()


header = b"".join(card(c) for c in [
    "SIMPLE  =                    T", "BITPIX  =                   16", "NAXIS   =                    2",
    "NAXIS1  =                    3", "NAXIS2  =                    2", "BZERO   =                32768",
    "END"])
header = header.ljust(2880, b" ")
stored = [v - 32768 for v in (0, 1, 2, 65533, 65534, 65535)]
data = struct.pack(">6h", *stored).ljust(2880, b"\0")
with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "u16.fits")
    with open(path, "wb") as fh:
        fh.write(header + data)
    t = tf.read(path)
    want_dtype = getattr(torch, "uint16", None) or torch.int32
    assert t.dtype == want_dtype and t.shape == (2, 3), (t.dtype, t.shape)
    assert t.to(torch.int64).flatten().tolist() == [0, 1, 2, 65533, 65534, 65535]
print(f"wheel OK: torchfits_ops from {here}, torch {torch.__version__}, "
      f"Python {sys.version.split()[0]}, read {tuple(t.shape)} {t.dtype}")
