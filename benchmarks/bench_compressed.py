"""Tile-compressed images: full reads for each codec, and 100 random
cutouts of a RICE_1 image.

Files are written by fitsio (cfitsio's fpack conventions): one tile per
row unless said, 16 rows for HCOMPRESS_1, floats quantized with q=4 and
SUBTRACTIVE_DITHER_1. The data are sky-like (smooth background plus
Gaussian noise) so that compression ratios are realistic; the PLIO_1 image
is a mask (small non-negative integers in runs).

Contenders (rivals.py): ours ``torchfits_ops.read`` (its tiles decoded on
every core; one thread shown too); torchfits ``read`` and
``read_tensor``; ``fitsio.read``; astropy ``getdata`` (its own decoder).
Quantized floats are decoded the same way by all (cfitsio's dither
sequence), so every case is compared bit for bit.

Targets (ours over the best rival): full reads <= 0.5x, cutouts <= 0.5x.
"""
import os

import numpy as np

import bench_images
import harness
import rivals
import torchfits_ops as tf

GROUP = "compressed"


def sky(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    y, x = np.indices(shape, dtype=np.float32)
    img = 1000 + 50 * np.sin(x / 200) + 30 * np.cos(y / 150)
    img += rng.normal(0, 20, shape).astype(np.float32)
    return img.astype(dtype)


def mask(shape, seed):
    rng = np.random.default_rng(seed)
    m = np.zeros(shape, np.int32)
    for _ in range(shape[0] // 4):
        y, x = rng.integers(0, shape[0]), rng.integers(0, shape[1] - 200)
        m[y, x:x + rng.integers(5, 200)] = rng.integers(1, 64)
    return m


def write(path, data, **kw):
    import fitsio

    if os.path.exists(path):
        os.remove(path)
    with fitsio.FITS(path, "rw") as f:
        f.write(data, **kw)
    return path


CODECS = [
    ("int16 RICE_1", lambda n: sky((n, n), np.int16, 0), dict(compress="RICE")),
    ("float32 RICE_1 q=4 SUBTRACTIVE_DITHER_1", lambda n: sky((n, n), np.float32, 1),
     dict(compress="RICE", qlevel=4.0, qmethod="SUBTRACTIVE_DITHER_1")),
    ("int16 GZIP_1", lambda n: sky((n, n), np.int16, 2), dict(compress="GZIP")),
    ("float32 GZIP_2 q=4 SUBTRACTIVE_DITHER_1", lambda n: sky((n, n), np.float32, 3),
     dict(compress="GZIP_2", qlevel=4.0, qmethod="SUBTRACTIVE_DITHER_1")),
    ("int16 HCOMPRESS_1", lambda n: sky((n, n), np.int16, 4), dict(compress="HCOMPRESS")),
    ("int32 PLIO_1 (a mask)", lambda n: mask((n, n), 5), dict(compress="PLIO")),
    ("int16 RICE_1, 256x256 tiles", lambda n: sky((n, n), np.int16, 6),
     dict(compress="RICE", tile_dims=[256, 256])),
]


def run(workdir, quick):
    os.makedirs(workdir, exist_ok=True)
    n = 2048 if quick else 4096
    big = 4096 if quick else 8192
    repeat = 5 if quick else 11
    for i, (name, make, kw) in enumerate(CODECS):
        path = write(os.path.join(workdir, f"full{i}.fits"), make(n), **kw)
        c = rivals.image_readers(path, 1)
        c["torchfits_ops 1 thread"] = bench_images.one_thread(c["torchfits_ops"])
        ratio = (n * n * (2 if "int16" in name else 4)) / os.path.getsize(path)
        yield harness.run_case(GROUP, f"{n}x{n} {name}, full read", c, repeat=repeat, target=0.5,
                               notes=[f"compression ratio {ratio:.1f}"])
        os.remove(path)

    path = write(os.path.join(workdir, "cutouts.fits"), sky((big, big), np.int16, 9),
                 compress="RICE", tile_dims=[256, 256])
    rng = np.random.default_rng(1)
    corners = [(int(y), int(x)) for y, x in rng.integers(0, big - 64, (100, 2))]
    c = rivals.cutout_readers(path, 1, corners)
    yield harness.run_case(GROUP, f"100 random 64x64 cutouts, {big}x{big} int16 RICE_1, "
                                  "256x256 tiles", c, unit="s/100 cutouts",
                           repeat=max(3, repeat // 2), target=0.5)
    os.remove(path)
