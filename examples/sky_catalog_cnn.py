"""Train a small CNN on multi-band cutouts of catalogue sources.

    python3 examples/sky_catalog_cnn.py [--sources 2000] [--epochs 2] [--workers 2]

Writes a synthetic survey to a temporary folder: 3 bands of 4 overlapping
TAN images each (band r tile-compressed with RICE_1), with point sources
of two kinds (compact and extended) at known sky positions. The catalogue
(RA, Dec, label) drives SkyCutoutDataset, which indexes the footprints
once from the headers and returns [3, 32, 32] cutouts with a coverage
flag per band; uncovered bands and pixels outside an image are NaN, set
to 0 here before the network sees them.
"""
import argparse
import os
import tempfile
import warnings

import numpy as np
import torch
from astropy.io import fits
from astropy.wcs import WCS
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from torchfits_ops.data import SkyCutoutDataset

SIDE = 512
SCALE = 1.0 / 3600  # 1 arcsec pixels


def survey(folder, n_sources, rng):
    ra = 150.0 + rng.uniform(-0.12, 0.12, n_sources)
    dec = 2.0 + rng.uniform(-0.12, 0.12, n_sources)
    label = rng.integers(0, 2, n_sources)
    bands = []
    for b, name in enumerate("gri"):
        paths = []
        for k, (dra, ddec) in enumerate([(-0.06, -0.06), (0.06, -0.06), (-0.06, 0.06), (0.06, 0.06)]):
            w = WCS(naxis=2)
            w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
            w.wcs.crval = [150.0 + dra, 2.0 + ddec]
            w.wcs.crpix = [SIDE / 2 + 0.5, SIDE / 2 + 0.5]
            w.wcs.cdelt = [-SCALE, SCALE]
            img = rng.normal(0, 1, (SIDE, SIDE)).astype(np.float32)
            x, y = w.all_world2pix(np.stack([ra, dec], 1), 0).T
            yy, xx = np.mgrid[0:SIDE, 0:SIDE]
            inside = (x > -10) & (x < SIDE + 10) & (y > -10) & (y < SIDE + 10)
            for xi, yi, lab in zip(x[inside], y[inside], label[inside]):
                sigma = 1.2 if lab == 0 else 3.0
                y0, y1 = max(0, int(yi) - 12), min(SIDE, int(yi) + 13)
                x0, x1 = max(0, int(xi) - 12), min(SIDE, int(xi) + 13)
                img[y0:y1, x0:x1] += (20 + 5 * b) * np.exp(
                    -((xx[y0:y1, x0:x1] - xi) ** 2 + (yy[y0:y1, x0:x1] - yi) ** 2) / (2 * sigma ** 2))
            path = os.path.join(folder, f"{name}_{k}.fits")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if name == "r":
                    fits.HDUList([fits.PrimaryHDU(),
                                  fits.CompImageHDU(img, header=w.to_header(),
                                                    compression_type="RICE_1")]).writeto(path)
                else:
                    fits.PrimaryHDU(img, header=w.to_header()).writeto(path)
            paths.append(path)
        bands.append(paths)
    return ra, dec, torch.from_numpy(label), bands


class Labelled(torch.utils.data.Dataset):
    def __init__(self, cutouts, labels):
        self.cutouts, self.labels = cutouts, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        x, covered = self.cutouts[i]
        return torch.nan_to_num(x), covered, self.labels[i]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sources", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        ra, dec, labels, bands = survey(d, args.sources, rng)
        cutouts = SkyCutoutDataset(ra, dec, {"g": bands[0], "r": bands[1], "i": bands[2]},
                                   (32, 32), hdu=[0, 1, 0], cache=os.path.join(d, "index.pt"))
        print(f"{len(cutouts)} sources; covered per band:", cutouts.coverage().sum(1).tolist())
        loader = DataLoader(Labelled(cutouts, labels), batch_size=64, shuffle=True,
                            num_workers=args.workers, persistent_workers=args.workers > 0)
        model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                              nn.Flatten(), nn.Linear(32, 2))
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        for epoch in range(args.epochs):
            correct = seen = 0
            for x, covered, y in tqdm(loader, desc=f"epoch {epoch}"):
                logits = model(x)
                loss = nn.functional.cross_entropy(logits, y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                correct += (logits.argmax(1) == y).sum().item()
                seen += len(y)
            print(f"epoch {epoch}: loss {loss.item():.3f}, train accuracy {correct / seen:.3f}")


if __name__ == "__main__":
    main()
