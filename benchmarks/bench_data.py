"""Data loading: DataLoader throughput over many small files, the batch op
against single reads, and reads into a reused buffer against fresh
allocation.

    ./run.sh bench --only data [--quick]
"""
import os
import sys

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

import harness

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests"))
from fitsgen import write_astropy  # noqa: E402

from torchfits_ops.data import FitsDataset, batch_loader  # noqa: E402

ops = torch.ops.torchfits


class FitsioDataset(Dataset):
    """What users write today: fitsio.read, then a tensor."""

    def __init__(self, files):
        self.files = files

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        import fitsio
        return torch.from_numpy(np.ascontiguousarray(fitsio.read(self.files[i]), dtype=np.int16))


class AstropyDataset(FitsioDataset):
    def __getitem__(self, i):
        from astropy.io import fits
        return torch.from_numpy(np.ascontiguousarray(fits.getdata(self.files[i]), dtype=np.int16))


class PerSampleDataset(Dataset):
    """FitsDataset without __getitems__: one op call per sample, as on a
    torch whose DataLoader does not batch the fetch."""

    def __init__(self, files):
        self.inner = FitsDataset(files)

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, i):
        return self.inner[i]


class NoReadDataset(FitsioDataset):
    """The DataLoader's own cost (workers, collate, transfer): no read."""

    def __getitem__(self, i):
        return torch.zeros(64, 64, dtype=torch.int16)


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


def epoch(loader):
    n = 0
    for batch in loader:
        n += batch.shape[0]
    return n


def run(workdir, quick):
    rows = []
    n = 2000 if quick else 10000
    files = write_small_files(os.path.join(workdir, "small"), n)
    from astropy.io import fits
    assert torch.equal(FitsDataset(files)[5],
                       torch.from_numpy(fits.getdata(files[5]).astype(np.int16)))

    # 1. DataLoader, 2 workers, batch 64, over n small files: one epoch
    # (worker start-up included), every contender the same loader options.
    def loader(ds):
        return DataLoader(ds, batch_size=64, num_workers=2, timeout=600)

    contenders = {
        "torchfits": lambda: epoch(loader(FitsDataset(files))),
        "torchfits per-sample": lambda: epoch(loader(PerSampleDataset(files))),
        "torchfits batch_loader": lambda: epoch(batch_loader(FitsDataset(files), 64,
                                                             num_workers=2, timeout=600)),
        "fitsio": lambda: epoch(loader(FitsioDataset(files))),
        "astropy": lambda: epoch(loader(AstropyDataset(files))),
        "no read (DataLoader floor)": lambda: epoch(loader(NoReadDataset(files))),
    }
    t = harness.measure(contenders, repeat=3, warmup=1)
    fps = {k: n / v for k, v in t.items()}
    met = t["torchfits"] * 2 <= t["fitsio"] and t["torchfits"] * 4 <= t["astropy"]
    rows.append({"group": "data loading",
                 "case": f"DataLoader(batch 64, 2 workers), {n} files 64x64 int16, one epoch "
                         f"({', '.join(f'{k} {v:.0f} files/s' for k, v in fps.items())})",
                 "times": t, "unit": "s/epoch",
                 "target": "torchfits >= 2x fitsio and >= 4x astropy files/s", "met": met})

    # 2. The batch op on 256 files against 256 single reads.
    some = files[:256]
    t = harness.measure({
        "torchfits": lambda: ops.read_batch(some),
        "torchfits 256 x read": lambda: [ops.read(p, 0) for p in some],
        "fitsio": lambda: [np.asarray(__import__("fitsio").read(p)) for p in some],
    }, repeat=5 if quick else 15)
    rows.append({"group": "data loading", "case": "256 files 64x64 int16 into one tensor",
                 "times": t, "unit": "s/batch",
                 "target": "read_batch <= 1/1.5 x 256 single reads",
                 "met": t["torchfits"] * 1.5 <= t["torchfits 256 x read"]})

    # 3. Reading into a reused buffer against a fresh allocation.
    rng = np.random.default_rng(1)
    for shape in [(64, 64), (2048, 2048)]:
        path = write_astropy(os.path.join(workdir, f"into_{shape[0]}.fits"),
                             rng.standard_normal(shape).astype(np.float32))
        reused = torch.empty(shape, dtype=torch.float32)
        cases = {"torchfits": lambda: ops.read(path, 0),
                 "torchfits read_into reused": lambda: ops.read_into(path, 0, reused)}
        if torch.cuda.is_available():
            pinned = torch.empty(shape, dtype=torch.float32, pin_memory=True)
            cases["torchfits read_into pinned"] = lambda: ops.read_into(path, 0, pinned)
            cases["torchfits fresh + pin_memory()"] = lambda: ops.read(path, 0).pin_memory()
        t = harness.measure(cases, repeat=10 if quick else 30)
        rows.append({"group": "data loading",
                     "case": f"{shape[0]}x{shape[1]} float32: fresh tensor vs read_into",
                     "times": t, "unit": "s/read", "target": None, "met": None})
    return rows
