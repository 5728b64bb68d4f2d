"""Sky coordinates against astropy 8 and astrocut.

- world_to_pixel / pixel_to_world of 10^6 positions (TAN, TAN-SIP, TPV)
  against astropy.wcs's all_world2pix / all_pix2world;
- 64x64 sky cutouts of a 4096x4096 image against astropy's Cutout2D and
  astrocut's FITSCutout (placed alike: astrocut with
  limit_rounding_method="ceil", as Cutout2D places them);
- a catalogue epoch: 10,000 sources over 16 images of 4096x4096 in each of
  3 bands (the third RICE_1-compressed), a DataLoader (2 workers, batches
  of 64) of [3, 64, 64] samples, our SkyCutoutDataset against a Dataset of
  astropy Cutout2D calls (on .section for the compressed band).

    python benchmarks/bench_wcs.py [--quick]

Run by benchmarks/run.py with the others. astrocut is optional: without
it, its contenders are left out.
"""
import os
import sys
import warnings

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import harness  # noqa: E402
import torchfits_ops as tf  # noqa: E402
from torchfits_ops.data import SkyCutoutDataset  # noqa: E402

GROUP = "Sky coordinates"
W2P_TARGET = 0.2  # 5x astropy's throughput


def header(kind, n, crval=(202.48, 47.2)):
    from astropy.io import fits
    h = fits.Header()
    proj = {"tan": "TAN", "sip": "TAN-SIP", "tpv": "TPV"}[kind]
    h["CTYPE1"], h["CTYPE2"] = f"RA---{proj}", f"DEC--{proj}"
    h["CRVAL1"], h["CRVAL2"] = crval
    h["CRPIX1"], h["CRPIX2"] = n / 2 + 0.5, n / 2 + 0.5
    h["CD1_1"], h["CD1_2"], h["CD2_1"], h["CD2_2"] = -2.8e-4, 1.1e-5, 1.2e-5, 2.8e-4
    if kind == "sip":
        h["A_ORDER"], h["B_ORDER"] = 3, 3
        for k, v in {"A_0_2": 2.1e-6, "A_1_1": -3.2e-6, "A_2_0": 4.5e-6, "A_3_0": -2.5e-9,
                     "B_0_2": -1.9e-6, "B_1_1": 2.7e-6, "B_0_3": -7e-10}.items():
            h[k] = v
    if kind == "tpv":
        for k, v in {"PV1_1": 1.0, "PV1_4": 2e-3, "PV1_5": -1e-3, "PV1_7": 3e-3,
                     "PV2_1": 1.0, "PV2_4": -2e-3, "PV2_6": 1.5e-3, "PV2_10": 2e-3}.items():
            h[k] = v
    return h


def write_image(path, data, hdr):
    from astropy.io import fits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits.PrimaryHDU(data=data, header=hdr).writeto(path, overwrite=True)
    return path


def astropy_wcs(path):
    from astropy.io import fits
    from astropy.wcs import WCS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return WCS(fits.getheader(path))


def with_threads(n, fn):
    def call():
        old = tf.set_threads(n)
        try:
            return fn()
        finally:
            tf.set_threads(old)
    return call


def transform_case(name, op, arg, astropy_fn, quick, tol, tol_text):
    """One direction of a transform: ours on the default threads and on
    one, astropy, and for TAN also through wcslib; positions/s noted."""
    n = arg.shape[0]
    c = {"torchfits_ops": lambda: op(arg),
         "torchfits_ops 1 thread": with_threads(1, lambda: op(arg)),
         "astropy": astropy_fn}
    if name.endswith(" TAN"):
        c["torchfits_ops wcslib"] = lambda: op(arg, wcslib=True)
    row = harness.run_case(GROUP, name, c, unit="s/call", repeat=3 if quick else 7, tol=tol,
                           tol_text=tol_text, target=W2P_TARGET,
                           target_text="<= 0.2x (5x astropy)")
    row["notes"].append("positions/s: " + ", ".join(
        f"{k} {n / v / 1e6:.1f} M" for k, v in row["times"].items()))
    return row


def transform_cases(workdir, quick):
    n = 200_000 if quick else 10**6
    side = 4096
    rng = np.random.default_rng(0)
    for kind in ("tan", "sip", "tpv"):
        path = write_image(os.path.join(workdir, f"{kind}.fits"), np.zeros((8, 8), np.float32),
                           header(kind, side))
        w = astropy_wcs(path)
        pix = rng.uniform(0, side, (n, 2))
        world = w.all_pix2world(pix, 0)
        wt, pt = torch.from_numpy(world), torch.from_numpy(pix)
        name = {"tan": "TAN", "sip": "TAN-SIP", "tpv": "TPV"}[kind]
        # astropy's all_world2pix stops SIP's iteration at 1e-4 pixel by
        # default: compared within that, for SIP only.
        tol, tol_text = (1e-4, "1e-4 pixel (astropy's default SIP tolerance)") if kind == "sip" \
            else (1e-8, "1e-8 pixel")
        yield transform_case(f"world_to_pixel, {n:,} positions, {name}",
                             lambda a, **kw: tf.world_to_pixel(path, 0, a, **kw), wt,
                             lambda: w.all_world2pix(world, 0), quick, tol, tol_text)
        yield transform_case(f"pixel_to_world, {n:,} positions, {name}",
                             lambda a, **kw: tf.pixel_to_world(path, 0, a, **kw), pt,
                             lambda: w.all_pix2world(pix, 0), quick, 1e-10, "1e-10 degree")


def cutout_case(workdir, quick):
    from astropy.coordinates import SkyCoord
    from astropy.io import fits
    from astropy.nddata import Cutout2D
    side, m = 4096, 100 if quick else 300
    rng = np.random.default_rng(1)
    path = write_image(os.path.join(workdir, "big.fits"),
                       rng.normal(0, 1, (side, side)).astype(np.float32), header("sip", side))
    w = astropy_wcs(path)
    pos = w.all_pix2world(rng.uniform(-20, side + 20, (m, 2)), 0)
    coords = SkyCoord(pos[:, 0], pos[:, 1], unit="deg")

    def ours():
        return torch.stack([tf.read_sky_cutout(path, 0, ra, dec, (64, 64)) for ra, dec in pos])

    def ours_batched():
        # One world_to_pixel for every source, then one read_cutouts.
        pix = tf.world_to_pixel(path, 0, torch.from_numpy(pos), wcslib=True)
        first = torch.ceil(pix.flip(1) - 32.0).to(torch.int64)
        items = torch.cat([torch.zeros(m, 1, dtype=torch.int64), first], 1)
        return torch.ops.torchfits.read_cutouts([path], [0], items, [64, 64], float("nan"))

    def astropy_cutouts():
        with fits.open(path) as hl:
            data = hl[0].data
            return np.stack([Cutout2D(data, c, (64, 64), wcs=w, mode="partial").data
                             for c in coords])

    c = {"torchfits_ops": ours, "torchfits_ops batched (read_cutouts)": ours_batched,
         "astropy Cutout2D": astropy_cutouts}
    notes = ["astropy opens the file once (memory-mapped) and cuts every source with "
             "Cutout2D; ours opens it per cutout (read_sky_cutout), or reads all in one "
             "read_cutouts call"]
    try:
        import astrocut

        def astrocut_cutouts():
            out = []
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for cc in coords:
                    fc = astrocut.FITSCutout([path], cc, 64, limit_rounding_method="ceil",
                                             extension=0)
                    out.append(fc.fits_cutouts[0][1].data)
            return np.stack(out)

        c["astrocut FITSCutout"] = astrocut_cutouts
        notes.append(f"astrocut {astrocut.__version__}: one FITSCutout per source, "
                     "limit_rounding_method='ceil' (Cutout2D's placement)")
    except ImportError:
        notes.append("astrocut is not installed: not compared")
    row = harness.run_case(GROUP, f"{m} sky cutouts 64x64 of a 4096x4096 TAN-SIP image", c,
                           unit="s/cutout", per=m, repeat=3 if quick else 5, warmup=1,
                           notes=notes)
    row["notes"].append("cutouts/s: " + ", ".join(
        f"{k} {1 / v:,.0f}" for k, v in row["times"].items()))
    return row


# ---- a catalogue epoch ----

class AstropyCutoutDataset(Dataset):
    """What one writes with astropy: per worker, each image opened once
    (memory-mapped) with its WCS; per sample, Cutout2D in every band from
    the image chosen by the same index as ours (the image where the source
    is farthest from an edge)."""

    def __init__(self, ra, dec, bands, shape, image, hdus):
        self.ra, self.dec, self.bands, self.shape = ra, dec, bands, shape
        self.image = image.numpy()
        self.hdus = hdus
        self._open = {}

    def __len__(self):
        return len(self.ra)

    def _get(self, path, hdu):
        from astropy.io import fits
        from astropy.wcs import WCS
        if path not in self._open:
            h = fits.open(path)[hdu]
            # A tile-compressed image: .section decodes only the tiles a
            # cutout touches (.data would decode the whole image).
            data = h.section if hdu else h.data
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._open[path] = (data, WCS(h.header))
        return self._open[path]

    def __getitem__(self, i):
        from astropy.coordinates import SkyCoord
        from astropy.nddata import Cutout2D
        c = SkyCoord(self.ra[i], self.dec[i], unit="deg")
        out = np.full((len(self.bands),) + self.shape, np.nan, dtype=np.float32)
        covered = torch.zeros(len(self.bands), dtype=torch.bool)
        for b, paths in enumerate(self.bands):
            k = self.image[b, i]
            if k < 0:
                continue
            data, w = self._get(paths[k], self.hdus[b])
            out[b] = Cutout2D(data, c, self.shape, wcs=w, mode="partial", fill_value=np.nan).data
            covered[b] = True
        return torch.from_numpy(out), covered


# The catalogue's bands: the third is RICE_1-compressed (HDU 1).
CATALOGUE_HDUS = [0, 0, 1]


def catalogue_files(workdir, quick):
    """16 images of 4096x4096 (512x512 with --quick) in each of 3 bands, a
    4x4 mosaic per band, each band's grid shifted a little, with overlaps;
    the third band RICE_1-compressed (astropy's defaults: 1-row tiles,
    quantized)."""
    from astropy.io import fits
    side, grid = (512, 4) if quick else (4096, 4)
    scale = 2.8e-4  # the header's CD scale
    rng = np.random.default_rng(2)
    base = rng.normal(100, 10, (side, side)).astype(np.float32)
    bands = []
    for b in range(3):
        paths = []
        for gy in range(grid):
            for gx in range(grid):
                h = header("tan", side, crval=(150.0 + (gx - 1.5) * side * scale * 0.95 + b * 0.004,
                                               2.0 + (gy - 1.5) * side * scale * 0.95))
                data = np.roll(base, (gy * 37 + b, gx * 53), axis=(0, 1))
                path = os.path.join(workdir, f"cat_b{b}_{gy}{gx}.fits")
                if CATALOGUE_HDUS[b]:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(
                            data, header=h, compression_type="RICE_1")]).writeto(path, overwrite=True)
                    paths.append(path)
                else:
                    paths.append(write_image(path, data, h))
        bands.append(paths)
    n = 2000 if quick else 10_000
    half = 2 * side * scale
    ra = rng.uniform(150.0 - half, 150.0 + half, n)
    dec = rng.uniform(2.0 - half, 2.0 + half, n)
    return ra, dec, bands


def fits_side(path):
    from astropy.io import fits
    return fits.getheader(path)["NAXIS1"]


def catalogue_case(workdir, quick):
    import time
    ra, dec, bands = catalogue_files(workdir, quick)
    t0 = time.perf_counter()
    ours = SkyCutoutDataset(ra, dec, bands, (64, 64), hdu=CATALOGUE_HDUS)
    t_index = time.perf_counter() - t0
    theirs = AstropyCutoutDataset(ra, dec, bands, (64, 64), ours.index["image"], CATALOGUE_HDUS)
    n = len(ra)

    def loader(ds):
        return DataLoader(ds, batch_size=64, num_workers=2, shuffle=False, timeout=600)

    def epoch(ds):
        k = 0
        for x, cov in loader(ds):
            k += x.shape[0]
        assert k == n
        return k

    def first(ds):
        return next(iter(loader(ds)))[0]

    c = {"torchfits_ops": lambda: epoch(ours), "astropy Cutout2D": lambda: epoch(theirs)}
    check = {"torchfits_ops": lambda: first(ours), "astropy Cutout2D": lambda: first(theirs)}
    side = fits_side(bands[0][0])
    row = harness.run_case(GROUP, f"catalogue epoch: {n:,} sources x 3 bands of 16 images "
                           f"{side}x{side} (one band RICE_1), [3, 64, 64] samples, DataLoader "
                           "2 workers", c, check=check,
                           unit="s/epoch", repeat=1 if quick else 2, warmup=0,
                           notes=[f"index of {n:,} sources over 48 images built in "
                                  f"{t_index:.2f} s (headers only), not timed"])
    row["notes"].append("samples/s: " + ", ".join(
        f"{k} {n / v:,.0f}" for k, v in row["times"].items()))
    return row


def run(workdir, quick):
    os.makedirs(workdir, exist_ok=True)
    yield from transform_cases(workdir, quick)
    yield cutout_case(workdir, quick)
    yield catalogue_case(workdir, quick)


if __name__ == "__main__":
    harness.standalone(run, "bench-wcs-")
