"""A TorchScript module that reads a FITS image, normalizes it with an
asinh stretch and predicts, saved with torch.jit.save and loaded again.

    python3 examples/scripted_model.py [FILE.fits]

The loading process needs `import torchfits_ops` (which registers the
operators) before torch.jit.load.
"""
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import torchfits_ops  # noqa: E402,F401  (registers torch.ops.torchfits)


class FitsClassifier(torch.nn.Module):
    """path -> class scores, entirely in TorchScript."""

    def __init__(self, softening: float = 10.0):
        super().__init__()
        self.softening = softening
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.head = torch.nn.Linear(4, 2)

    def normalize(self, img: torch.Tensor) -> torch.Tensor:
        img = img.to(torch.float32)
        return torch.asinh((img - img.median()) / self.softening)

    def forward(self, path: str) -> torch.Tensor:
        img = torch.ops.torchfits.read(path, 0, False)
        x = self.normalize(img).unsqueeze(0).unsqueeze(0)
        x = torch.relu(self.conv(x)).mean(dim=(2, 3))
        return self.head(x)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="torchfits-jit-") as tmp:
        if argv:
            path = argv[0]
        else:
            from astropy.io import fits
            path = os.path.join(tmp, "img.fits")
            rng = np.random.default_rng(0)
            fits.PrimaryHDU(rng.normal(100, 5, (64, 64)).astype(np.int16)).writeto(path)
        scripted = torch.jit.script(FitsClassifier())
        before = scripted(path)
        saved = os.path.join(tmp, "model.pt")
        torch.jit.save(scripted, saved)
        loaded = torch.jit.load(saved)
        after = loaded(path)
        assert torch.equal(before, after), (before, after)
        print(f"scripted, saved and loaded: scores {after.tolist()} for {path}")
    return after


if __name__ == "__main__":
    main()
