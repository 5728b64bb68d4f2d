"""Sky coordinates against astropy 8: world_to_pixel of 10^6 positions
(TAN and TAN-SIP) against WCS.all_world2pix, and sky cutouts against
Cutout2D (astropy reading the whole image once, then cutting).

    python benchmarks/bench_wcs.py [N]

Standalone (not in run.py yet): prints one line per case.
"""
import os
import sys
import tempfile
import time
import warnings

import numpy as np
import torch
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.nddata import Cutout2D
from astropy.wcs import WCS

import torchfits_ops as tf
from torchfits_ops.data import SkyCutoutDataset


def header(sip, n):
    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"] = ("RA---TAN-SIP", "DEC--TAN-SIP") if sip else ("RA---TAN", "DEC--TAN")
    h["CRVAL1"], h["CRVAL2"] = 202.48, 47.2
    h["CRPIX1"], h["CRPIX2"] = n / 2 + 0.5, n / 2 + 0.5
    h["CD1_1"], h["CD1_2"], h["CD2_1"], h["CD2_2"] = -2.8e-4, 1.1e-5, 1.2e-5, 2.8e-4
    if sip:
        h["A_ORDER"], h["B_ORDER"] = 3, 3
        for k, v in {"A_0_2": 2.1e-6, "A_1_1": -3.2e-6, "A_2_0": 4.5e-6, "A_3_0": -2.5e-9,
                     "B_0_2": -1.9e-6, "B_1_1": 2.7e-6, "B_0_3": -7e-10}.items():
            h[k] = v
    return h


def best(fn, repeat=3):
    t = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return min(t)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10**6
    d = tempfile.mkdtemp()
    side = 4096
    for sip in (False, True):
        path = os.path.join(d, f"sip{int(sip)}.fits")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rng = np.random.default_rng(0)
            data = rng.normal(0, 1, (side, side)).astype(np.float32)
            fits.PrimaryHDU(data=data, header=header(sip, side)).writeto(path, overwrite=True)
            w = WCS(fits.getheader(path))
        pix = rng.uniform(0, side, (n, 2))
        world = w.all_pix2world(pix, 0)
        wt = torch.from_numpy(world)
        ta = best(lambda: w.all_world2pix(world, 0))
        to = best(lambda: tf.world_to_pixel(path, 0, wt))
        name = "TAN-SIP" if sip else "TAN"
        print(f"world_to_pixel {name} N={n}: astropy {n / ta / 1e6:.2f} M/s, "
              f"torchfits {n / to / 1e6:.2f} M/s ({ta / to:.1f}x)")
    # Cutouts of 64x64 around 1000 sources of the SIP image.
    m = 1000
    pos = w.all_pix2world(rng.uniform(0, side, (m, 2)), 0)
    coords = SkyCoord(pos[:, 0], pos[:, 1], unit="deg")

    def astropy_loop():
        arr = fits.getdata(path)
        for c in coords:
            Cutout2D(arr, c, (64, 64), wcs=w, mode="partial")

    def ours():
        for ra, dec in pos:
            tf.read_sky_cutout(path, 0, ra, dec, (64, 64))

    ta, to = best(astropy_loop, 1), best(ours, 1)
    print(f"sky cutouts 64x64 of a 4k^2 SIP image, {m} sources: Cutout2D {m / ta:.0f}/s, "
          f"read_sky_cutout {m / to:.0f}/s ({ta / to:.1f}x)")
    ds = SkyCutoutDataset(pos[:, 0], pos[:, 1], [[path]], (64, 64))
    td = best(lambda: [ds[i] for i in range(m)], 1)
    print(f"SkyCutoutDataset 1 band, {m} samples (index built): {m / td:.0f}/s")


if __name__ == "__main__":
    main()
