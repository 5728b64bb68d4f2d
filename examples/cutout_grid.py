"""A grid of training cutouts, as a DataLoader hands them to a model, saved as a PNG.

    ./run.sh python examples/cutout_grid.py [FILE.fits] [-o cutouts.png]

Without a file it writes a 2048x2048 synthetic sky (stars and galaxies over
noise) and cuts that. Each cutout is read on its own, only
its 64x64 pixels, by FitsCutoutDataset, in two DataLoader workers.
"""
import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from torchfits_ops.data import FitsCutoutDataset  # noqa: E402


def make_sky(path, n=2048, seed=1):
    """A synthetic sky written with astropy, as a survey pipeline would."""
    from astropy.io import fits

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n].astype(np.float32)
    sky = rng.normal(100.0, 4.0, (n, n)).astype(np.float32)
    for _ in range(1500):  # stars: round Gaussians over a wide range of brightness
        y, x = rng.uniform(0, n, 2)
        flux, s = 10 ** rng.uniform(1.5, 4), rng.uniform(1.2, 2.0)
        r0, c0, r1, c1 = int(max(y - 12, 0)), int(max(x - 12, 0)), int(min(y + 12, n)), int(min(x + 12, n))
        sky[r0:r1, c0:c1] += flux * np.exp(-((xx[r0:r1, c0:c1] - x) ** 2 + (yy[r0:r1, c0:c1] - y) ** 2) / (2 * s * s))
    for _ in range(200):  # galaxies: elongated exponential profiles
        y, x = rng.uniform(0, n, 2)
        a, q, th = rng.uniform(3, 9), rng.uniform(0.3, 0.9), rng.uniform(0, np.pi)
        r0, c0, r1, c1 = int(max(y - 40, 0)), int(max(x - 40, 0)), int(min(y + 40, n)), int(min(x + 40, n))
        dx, dy = xx[r0:r1, c0:c1] - x, yy[r0:r1, c0:c1] - y
        u = dx * np.cos(th) + dy * np.sin(th)
        v = (-dx * np.sin(th) + dy * np.cos(th)) / q
        sky[r0:r1, c0:c1] += 10 ** rng.uniform(1.5, 2.5) * np.exp(-np.sqrt(u * u + v * v) / a * 1.7)
    fits.PrimaryHDU(sky).writeto(path, overwrite=True)


def asinh_stretch(batch):
    """The batch to [0, 1] with one asinh stretch for all (sky level to the
    brightest pixels), so empty sky looks dark and cutouts compare."""
    flat = batch.flatten()
    lo = flat.median()
    hi = flat.quantile(0.9995)
    x = ((batch - lo) / (hi - lo).clamp_min(1e-6)).clamp(0, 1)
    return torch.asinh(x / 0.05) / np.arcsinh(1 / 0.05)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", nargs="?")
    ap.add_argument("-o", "--output", default="cutouts.png")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--rows", type=int, default=6)
    ap.add_argument("--cols", type=int, default=8)
    args = ap.parse_args()

    path = args.file
    if path is None:
        path = os.path.join(tempfile.mkdtemp(prefix="torchfits-"), "sky.fits")
        make_sky(path)
        print(f"wrote {path}")

    n = args.rows * args.cols
    ds = FitsCutoutDataset(path, size=args.size, num_samples=n, seed=0,
                           transform=lambda t: t.float())
    loader = DataLoader(ds, batch_size=n, num_workers=2)
    batch = next(iter(loader))  # [n, size, size], as a training step gets it
    print(f"batch {tuple(batch.shape)} {batch.dtype}")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img = asinh_stretch(batch).numpy()
    fig, axes = plt.subplots(args.rows, args.cols, figsize=(args.cols * 1.2, args.rows * 1.2 + 0.4))
    for ax, cut, pos in zip(axes.ravel(), img, ds.positions[:n].tolist()):
        ax.imshow(cut, cmap="magma", origin="lower", vmin=0, vmax=1)
        ax.set_title(f"y{pos[1]} x{pos[2]}", fontsize=6, pad=2)
        ax.axis("off")
    fig.suptitle(f"{n} random {args.size}x{args.size} cutouts of {os.path.basename(path)} "
                 "(FitsCutoutDataset, 2 workers)", fontsize=8)
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
