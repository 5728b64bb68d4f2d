"""The operators inside TorchScript, across save/load, and in DataLoader
worker processes."""
import os
import subprocess
import sys
from typing import List

import numpy as np
import torch
from astropy.io import fits

import torchfits_ops  # noqa: F401  (registers torch.ops.torchfits)
from fitsgen import random_array, write_astropy, write_multi_extension

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@torch.jit.script
def read_scaled(path: str, hdu: int) -> torch.Tensor:
    return torch.ops.torchfits.read(path, hdu).to(torch.float32) / 100.0


@torch.jit.script
def read_by_name(path: str, name: str) -> torch.Tensor:
    cut = torch.ops.torchfits.read_cutout(path, name, 1, [2, 3], [4, 5], None, False)
    hdr = torch.ops.torchfits.read_header(path, name, 1)
    return cut * float(hdr["NAXIS1"])


class Reader(torch.nn.Module):
    """Reads its own inputs: the whole image, normalised, then a linear map."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(2.0))

    def forward(self, paths: List[str]) -> torch.Tensor:
        images = [torch.ops.torchfits.read(p, 0).to(torch.float32) for p in paths]
        x = torch.stack(images)
        x = torch.asinh(x / 1000.0)
        return x.flatten(1).mean(1) * self.scale


def test_script_function(tmp_path):
    data = random_array((8, 9), 16, seed=1)
    path = write_astropy(tmp_path / "a.fits", data)
    np.testing.assert_allclose(read_scaled(path, 0).numpy(), data.astype(np.float32) / 100.0)
    mef = write_multi_extension(tmp_path / "m.fits")
    sci = fits.getdata(mef, "SCI", 1)
    np.testing.assert_allclose(read_by_name(mef, "SCI").numpy(), sci[2:6, 3:8] * 30)


def test_scripted_module_save_load(tmp_path):
    paths = [write_astropy(tmp_path / f"{i}.fits", random_array((6, 7), -32, seed=i)) for i in range(3)]
    module = torch.jit.script(Reader())
    want = module(paths)
    saved = str(tmp_path / "reader.pt")
    torch.jit.save(module, saved)
    loaded = torch.jit.load(saved)
    assert torch.equal(loaded(paths), want)
    expected = torch.stack([torch.asinh(torch.from_numpy(fits.getdata(p).astype(np.float32)) / 1000.0)
                            for p in paths]).flatten(1).mean(1) * 2.0
    torch.testing.assert_close(want.detach(), expected)

    # A fresh process that only loads the library and the saved module.
    code = (
        "import sys, torch, torchfits_ops\n"
        f"m = torch.jit.load({saved!r})\n"
        f"print(m({paths!r}).tolist())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert np.allclose(eval(out.stdout.strip()), want.tolist())


def test_script_errors_surface(tmp_path):
    import pytest

    with pytest.raises(RuntimeError, match=r"missing\.fits: cannot open file"):
        read_scaled(str(tmp_path / "missing.fits"), 0)


class Files(torch.utils.data.Dataset):
    def __init__(self, paths):
        self.paths = paths

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return torch.ops.torchfits.read(self.paths[i], 0)


def test_dataloader_workers(tmp_path):
    paths = [write_astropy(tmp_path / f"{i}.fits", random_array((16, 16), 16, seed=i)) for i in range(8)]
    loader = torch.utils.data.DataLoader(Files(paths), batch_size=4, num_workers=2, timeout=60)
    batches = list(loader)
    got = torch.cat(batches)
    want = np.stack([fits.getdata(p) for p in paths])
    np.testing.assert_array_equal(got.numpy(), want)
