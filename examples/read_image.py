"""The main job: read a FITS file into tensors and show what was read.

    ./run.sh demo [FILE.fits]

Without a file, it writes a small multi-extension file first (with astropy,
as a survey pipeline would) and reads that.
"""
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

import torchfits_ops as tf  # noqa: E402


def make_example(path):
    import numpy as np
    from astropy.io import fits

    rng = np.random.default_rng(0)
    sky = rng.normal(100.0, 5.0, (512, 512)).astype(np.float32)
    yy, xx = np.mgrid[:512, :512]
    sky += 5000 * np.exp(-((xx - 300) ** 2 + (yy - 200) ** 2) / 20.0)
    primary = fits.PrimaryHDU()
    primary.header["TELESCOP"] = "EXAMPLE"
    primary.header["HISTORY"] = "written by examples/read_image.py"
    sci = fits.ImageHDU(sky, name="SCI")
    sci.header["BUNIT"] = "ADU"
    counts = fits.ImageHDU(rng.integers(0, 65535, (512, 512)).astype(np.uint16), name="COUNTS")
    comp = fits.CompImageHDU(sky, name="SCI_RICE", compression_type="RICE_1")
    fits.HDUList([primary, sci, counts, comp]).writeto(path, overwrite=True)


def main():
    if len(sys.argv) > 1:
        path = sys.argv[1]
    else:
        path = os.path.join(tempfile.mkdtemp(prefix="torchfits-"), "example.fits")
        make_example(path)
        print(f"wrote {path}")

    with tf.open(path) as f:
        print(f)
        for hdu in f:
            if hdu.kind != "image" or not hdu.info.shape:
                continue
            t = hdu.read()
            v = t.double()  # torch has no min/max for uint16/32/64 on the CPU
            print(f"HDU {hdu.index} {hdu.name or ''}: {tuple(t.shape)} {t.dtype}  "
                  f"min {v.min().item():.6g}  max {v.max().item():.6g}  "
                  f"mean {v.mean().item():.6g}")
        first = next((h for h in f if h.kind == "image" and len(h.info.shape) >= 2), None)
        if first is not None:
            cut = first[:64, :64]
            print(f"cutout [:64, :64] of HDU {first.index}: {tuple(cut.shape)} {cut.dtype}")
            keys = list(first.header.items())[:8]
            print("header:", ", ".join(f"{k}={v!r}" for k, v in keys))

    scripted = torch.jit.script(read_first)
    print("TorchScript read:", tuple(scripted(path, 0 if tf.info(path)[0].shape else 1).shape))


def read_first(path: str, hdu: int) -> torch.Tensor:
    return torch.ops.torchfits.read(path, hdu)


if __name__ == "__main__":
    main()
