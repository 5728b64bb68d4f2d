"""Train a small CNN on a directory of FITS cutouts through a DataLoader.

    python3 examples/train_cnn.py [--files 512] [--steps 50] [--workers 2]

Writes a directory of 32x32 float32 cutouts first (with astropy, half of
them with a point source; the label is in the file name), then trains a
classifier for a few steps with DataLoader(num_workers=2) and a tqdm
progress bar. Prints the loss and accuracy at the end.
"""
import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from tqdm import tqdm  # noqa: E402

from torchfits_ops.data import FitsDataset  # noqa: E402


def make_cutouts(folder, n, size=32, seed=0):
    from astropy.io import fits

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    paths = []
    for i in range(n):
        label = i % 2
        img = rng.normal(100.0, 5.0, (size, size))
        if label:
            cy, cx = rng.uniform(8, size - 8, 2)
            img += 200.0 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 4.0)
        path = os.path.join(folder, f"cut_{i:05d}_{label}.fits")
        fits.PrimaryHDU(img.astype(np.float32)).writeto(path, overwrite=True)
        paths.append(path)
    return paths


def label_of(path):
    """The class from the file name: cut_<n>_<label>.fits."""
    return int(path[-6])


def asinh_stretch(img):
    """Sky-subtracted, asinh-stretched, with a channel axis."""
    img = img - img.median()
    return torch.asinh(img / 10.0).unsqueeze(0)


class SmallCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1))
        self.head = torch.nn.Linear(16, 2)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", help="folder of cutouts (default: a temporary one)")
    ap.add_argument("--files", type=int, default=512)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory(prefix="torchfits-cnn-") as tmp:
        folder = args.dir or tmp
        os.makedirs(folder, exist_ok=True)
        paths = make_cutouts(folder, args.files, seed=args.seed)
        ds = FitsDataset(paths, transform=asinh_stretch, label_fn=label_of)
        loader = DataLoader(ds, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                            persistent_workers=args.workers > 0, timeout=120 if args.workers else 0,
                            generator=torch.Generator().manual_seed(args.seed))
        model = SmallCNN()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        step, correct, seen = 0, 0, 0
        with tqdm(total=args.steps, desc="training", unit="step") as bar:
            while step < args.steps:
                for x, y in loader:
                    loss = torch.nn.functional.cross_entropy(model(x), y)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    correct += int((model(x).argmax(1) == y).sum())
                    seen += len(y)
                    step += 1
                    bar.set_postfix(loss=f"{loss.item():.3f}")
                    bar.update(1)
                    if step == args.steps:
                        break
        print(f"trained {step} steps on {len(ds)} files: final loss {loss.item():.4f}, "
              f"running accuracy {correct / max(seen, 1):.3f}")
    return loss.item()


if __name__ == "__main__":
    main()
