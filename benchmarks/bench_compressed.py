"""Tile-compressed images: torchfits' parallel tile reader against fitsio
(and torchfits on one thread, TORCHFITS_THREADS=1), side by side.

Files are written by fitsio (cfitsio's fpack conventions): one tile per row
for RICE_1 and GZIP_2, 16 rows for HCOMPRESS_1, floats quantized with
q=4 and SUBTRACTIVE_DITHER_1. The data are sky-like (smooth background
plus Gaussian noise) so that compression ratios are realistic.
"""
import os

import numpy as np
import torch

import harness
import torchfits_ops as tf


def sky(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    y, x = np.indices(shape, dtype=np.float32)
    img = 1000 + 50 * np.sin(x / 200) + 30 * np.cos(y / 150)
    img += rng.normal(0, 20, shape).astype(np.float32)
    return img.astype(dtype)


def write(path, data, **kw):
    import fitsio

    if os.path.exists(path):
        os.remove(path)
    with fitsio.FITS(path, "rw") as f:
        f.write(data, **kw)
    return path


def one_thread(fn):
    def run():
        previous = tf.set_threads(1)
        try:
            return fn()
        finally:
            tf.set_threads(previous)
    return run


def run(workdir, quick):
    import fitsio

    os.makedirs(workdir, exist_ok=True)
    n = 2048 if quick else 4096
    big = 4096 if quick else 8192
    repeat = 5 if quick else 11
    rows = []
    full = [
        ("int16 RICE_1", np.int16, dict(compress="RICE"), 0.55),
        ("float32 RICE_1 q=4 SUBTRACTIVE_DITHER_1", np.float32,
         dict(compress="RICE", qlevel=4.0, qmethod="SUBTRACTIVE_DITHER_1"), 0.55),
        ("float32 GZIP_2 q=4 SUBTRACTIVE_DITHER_1", np.float32,
         dict(compress="GZIP_2", qlevel=4.0, qmethod="SUBTRACTIVE_DITHER_1"), 0.55),
        ("int16 HCOMPRESS_1", np.int16, dict(compress="HCOMPRESS"), 0.6),
        ("int16 RICE_1, 256x256 tiles", np.int16, dict(compress="RICE", tile_dims=[256, 256]),
         None),
    ]
    for i, (name, dtype, kw, target) in enumerate(full):
        path = write(os.path.join(workdir, f"full{i}.fits"), sky((n, n), dtype, i), **kw)
        assert torch.equal(tf.read(path, 1), torch.from_numpy(fitsio.read(path, ext=1)))
        times = harness.measure({
            "torchfits": lambda: tf.read(path, 1),
            "fitsio": lambda: fitsio.read(path, ext=1),
            "torchfits 1 thread": one_thread(lambda: tf.read(path, 1)),
        }, repeat=repeat)
        r = harness.ratio(times)
        rows.append({"group": "compressed images", "case": f"{n}x{n} {name}, full read",
                     "times": times, "unit": "s/read",
                     "target": f"torchfits <= {target} x fitsio" if target else None,
                     "met": (r <= target) if target else None})

    path = write(os.path.join(workdir, "cutouts.fits"), sky((big, big), np.int16, 9),
                 compress="RICE", tile_dims=[256, 256])
    rng = np.random.default_rng(1)
    corners = [(int(y), int(x)) for y, x in rng.integers(0, big - 64, (100, 2))]
    f = fitsio.FITS(path)
    hdu = f[1]
    a = tf.read_cutout(path, 1, list(corners[0]), [64, 64]).numpy()
    np.testing.assert_array_equal(a, hdu[corners[0][0]:corners[0][0] + 64,
                                         corners[0][1]:corners[0][1] + 64])

    # Both keep the file open across the cutouts, as slicing an open file
    # does; the one-shot op (open, read, close per cutout) is shown apart.
    kept = tf.open(path)
    ours_hdu = kept[1]

    def ours():
        for y, x in corners:
            ours_hdu[y:y + 64, x:x + 64]

    def ours_oneshot():
        for y, x in corners:
            tf.read_cutout(path, 1, [y, x], [64, 64])

    def theirs():
        for y, x in corners:
            hdu[y:y + 64, x:x + 64]

    times = harness.measure({"torchfits": ours, "torchfits open per cutout": ours_oneshot,
                             "fitsio": theirs}, repeat=max(3, repeat // 2))
    kept.close()
    f.close()
    r = harness.ratio(times)
    rows.append({"group": "compressed images",
                 "case": f"100 random 64x64 cutouts, {big}x{big} int16 RICE_1, 256x256 tiles",
                 "times": times, "unit": "s/100 cutouts",
                 "target": "torchfits <= 0.15 x fitsio slicing", "met": r <= 0.15})
    return rows
