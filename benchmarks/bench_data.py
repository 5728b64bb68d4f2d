"""Data loading: one DataLoader epoch over 10,000 small files, over 2048 x
2048 float32 files and over 2048 x 2048 float32 RICE_1 files; and the
batch op.

Every loader has the same options (batch size, 2 workers, no shuffle,
worker start-up included in the epoch). Each contender uses its own
dataset class where it has one: ours ``torchfits_ops.data.FitsDataset``
with its ``batch_loader`` (each batch read by one op call straight into
shared memory; a plain DataLoader over the same dataset, whose
``__getitems__`` reads a batch in one call and whose default collate then
copies it, is shown beside it), torchfits'
``FitsImageDataset`` with its ``make_loader`` (its default collate), and a
plain ``Dataset`` calling ``fitsio.read`` or astropy ``getdata`` for the
others. `limit (DataLoader, no read)` is the loader's own cost: a dataset
that returns zeros of the same shape.

Target (the issue's): ours >= 1.5x the best rival's files/s, that is our
epoch time <= 1/1.5 of the best rival's.
"""
import os

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

import harness
import rivals
from fitsgen import write_astropy

import torchfits
import torchfits_ops.data as tfd

GROUP = "data loading"
ops = torch.ops.torchfits
FILES_TARGET = 1 / 1.5
FILES_TEXT = "files/s >= 1.5x"


class FitsioDataset(Dataset):
    """What users write with fitsio: fitsio.read, then a tensor."""

    def __init__(self, files, hdu=0):
        self.files, self.hdu = files, hdu

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        import fitsio
        return rivals.to_tensor(fitsio.read(self.files[i], ext=self.hdu))


class AstropyDataset(FitsioDataset):
    def __getitem__(self, i):
        from astropy.io import fits
        return rivals.to_tensor(fits.getdata(self.files[i], ext=self.hdu, memmap=False))


class ZerosDataset(FitsioDataset):
    """The DataLoader's own cost (workers, collate, transfer): no read."""

    def __init__(self, files, shape, dtype):
        super().__init__(files)
        self.shape, self.dtype = shape, dtype

    def __getitem__(self, i):
        return torch.zeros(self.shape, dtype=self.dtype)


def epoch(loader):
    n = 0
    for batch in loader:
        if isinstance(batch, (tuple, list)):  # (images, labels)
            batch = batch[0]
        n += batch.shape[0]
    return n


def first_batch(loader):
    batch = next(iter(loader))
    if isinstance(batch, (tuple, list)):
        batch = batch[0]
    return batch.reshape(batch.shape[0], *batch.shape[-2:])  # [B, 1, H, W] -> [B, H, W]


def loaders(files, batch, shape, dtype, hdu=0):
    """name -> a function making that contender's DataLoader."""
    def plain(ds):
        return DataLoader(ds, batch_size=batch, num_workers=2, shuffle=False, timeout=600)

    return {
        "torchfits_ops": lambda: tfd.batch_loader(tfd.FitsDataset(files, hdu=hdu),
                                                  batch_size=batch, num_workers=2, timeout=600),
        "torchfits_ops plain DataLoader": lambda: plain(tfd.FitsDataset(files, hdu=hdu)),
        "torchfits": lambda: torchfits.data.make_loader(
            torchfits.data.FitsImageDataset(files, hdu=hdu), batch_size=batch, num_workers=2,
            shuffle=False, timeout=600),
        "fitsio": lambda: plain(FitsioDataset(files, hdu)),
        "astropy": lambda: plain(AstropyDataset(files, hdu)),
        "limit (DataLoader, no read)": lambda: plain(ZerosDataset(files, shape, dtype)),
    }


def epoch_case(name, files, batch, shape, dtype, hdu=0, repeat=3, notes=()):
    make = loaders(files, batch, shape, dtype, hdu)
    c = {k: (lambda m=m: epoch(m())) for k, m in make.items()}
    check = {k: (lambda m=m: first_batch(m())) for k, m in make.items()}
    row = harness.run_case(GROUP, name, c, check=check, unit="s/epoch", repeat=repeat, warmup=1,
                           target=FILES_TARGET, target_text=FILES_TEXT, notes=list(notes))
    fps = ", ".join(f"{k} {len(files) / v:,.0f}" for k, v in row["times"].items())
    row["notes"].append(f"files/s: {fps}")
    return row


def write_small_files(folder, n, shape=(64, 64)):
    """One file written by astropy, then copies with other pixel values
    (the same header, the data block replaced): valid FITS, fast to make."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    template = write_astropy(os.path.join(folder, "f00000.fits"),
                             rng.integers(-2000, 2000, shape, dtype=np.int16))
    raw = open(template, "rb").read()
    header = len(raw) - 2880 * -(-(shape[0] * shape[1] * 2) // 2880)
    paths = [template]
    for i in range(1, n):
        data = rng.integers(-2000, 2000, shape, dtype=np.int16).astype(">i2").tobytes()
        block = data + b"\0" * (len(raw) - header - len(data))
        path = os.path.join(folder, f"f{i:05d}.fits")
        with open(path, "wb") as f:
            f.write(raw[:header] + block)
        paths.append(path)
    return paths


def write_big_files(folder, n, size, compress):
    import fitsio
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(2)
    y, x = np.indices((size, size), dtype=np.float32)
    base = 1000 + 50 * np.sin(x / 200) + 30 * np.cos(y / 150)
    paths = []
    for i in range(n):
        img = (base + rng.normal(0, 20, (size, size))).astype(np.float32)
        p = os.path.join(folder, f"b{i:04d}.fits")
        if compress:
            with fitsio.FITS(p, "rw", clobber=True) as f:
                f.write(img, compress="RICE", qlevel=4.0, qmethod="SUBTRACTIVE_DITHER_1")
        else:
            write_astropy(p, img)
        paths.append(p)
    return paths


def run(workdir, quick):
    # 1. 10,000 small files, batch 64
    n = 2000 if quick else 10000
    files = write_small_files(os.path.join(workdir, "small"), n)
    yield epoch_case(f"DataLoader (batch 64, 2 workers), one epoch over {n:,} files of 64x64 "
                     "int16", files, 64, (64, 64), torch.int16)

    # 2. the batch op: 256 files into one tensor
    some = files[:256]

    def stack(fn):
        return lambda: torch.stack([fn(p) for p in some])

    c = {"torchfits_ops": lambda: ops.read_batch(some)[0],  # (batch, mask of files read)
         "torchfits_ops 256 x read": stack(lambda p: ops.read(p, 0)),
         "torchfits": lambda: torch.stack(torchfits.read_batch(some)),
         "torchfits 256 x read_tensor": stack(torchfits.read_tensor),
         "fitsio": stack(lambda p: rivals.to_tensor(__import__("fitsio").read(p))),
         "astropy": stack(lambda p: rivals.to_tensor(
             __import__("astropy.io.fits", fromlist=["fits"]).getdata(p, memmap=False)))}
    yield harness.run_case(GROUP, "256 files of 64x64 int16 into one tensor (the batch op)", c,
                           unit="s/batch", repeat=5 if quick else 15, target=0.7,
                           target_text="<= 0.7x (as small files)")
    for p in files:
        os.remove(p)

    # 3. 2048 x 2048 float32 files, plain and RICE_1, batch 8
    count = 16 if quick else 64
    for compress in (False, True):
        big = write_big_files(os.path.join(workdir, "rice" if compress else "plain"), count, 2048,
                              compress)
        what = "float32 RICE_1 q=4" if compress else "float32"
        mb = sum(os.path.getsize(p) for p in big) / 1e6
        yield epoch_case(f"DataLoader (batch 8, 2 workers), one epoch over {count} files of "
                         f"2048x2048 {what}", big, 8, (2048, 2048), torch.float32,
                         hdu=1 if compress else 0, notes=[f"{mb:,.0f} MB of files"])
        for p in big:
            os.remove(p)
