"""A catalogue-driven multi-band cutout Dataset (re-exported by
``torchfits_ops.data``).

``SkyCutoutDataset(ra, dec, bands, shape)``: one sample per source, the
cutout centred on it in each band, stacked as ``[C, H, W]``, with a
per-band coverage flag. Cutouts are placed exactly as astropy's
``Cutout2D(..., mode="partial")`` places them (see ``read_sky_cutout``).

The index of which image covers which source is built once, from headers
only: one ``world_to_pixel`` call per image over the whole catalogue
(wcslib, several threads). It holds tensors and paths, so the dataset
pickles to DataLoader workers, and it can be saved to and loaded from a
file (``cache=``). Policy when several images of a band cover a source:
the one where the source is farthest from an edge (the largest distance,
in pixels, from the source to the nearest edge of the image), the first
listed on a tie. A source is covered by an image when its position lies
inside the image (within the outer edges of the edge pixels).
"""
from __future__ import annotations

import hashlib
import math
import os
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch.utils.data import Dataset

__all__ = ["SkyCutoutDataset"]


def _key(ra: torch.Tensor, dec: torch.Tensor, bands: List[List[str]], hdu: List[int], alt: str) -> str:
    h = hashlib.sha256()
    h.update(ra.numpy().tobytes())
    h.update(dec.numpy().tobytes())
    h.update(repr((hdu, alt)).encode())
    for band in bands:
        for p in band:
            st = os.stat(p) if not p.startswith("\0") else None  # "\0bytes:": see _fspath
            h.update(repr((p, st and st.st_size, st and st.st_mtime_ns)).encode())
        h.update(b"|")
    return h.hexdigest()


def build_index(ra: torch.Tensor, dec: torch.Tensor, bands: List[List[str]], hdu: List[int],
                alt: str = "") -> Dict[str, torch.Tensor]:
    """For each band and source: the chosen image (-1: none), the 0-based
    pixel position in it, and its distance to the nearest edge. Tensors
    ``image`` int64 [C, N], ``x``, ``y``, ``margin`` float64 [C, N]."""
    from .wcs import _celestial_axes
    n, c = ra.numel(), len(bands)
    image = torch.full((c, n), -1, dtype=torch.int64)
    xs = torch.full((c, n), math.nan, dtype=torch.float64)
    ys = torch.full((c, n), math.nan, dtype=torch.float64)
    margin = torch.full((c, n), -math.inf, dtype=torch.float64)
    for b, paths in enumerate(bands):
        for i, p in enumerate(paths):
            info = torch.ops.torchfits.wcs_info(p, hdu[b], alt)
            ctype, img = info[0], info[5]
            if len(img) != 2:
                raise ValueError(f"{p}: HDU {hdu[b]}: a 2-D image is needed, NAXISn is {list(img)}")
            lng, lat = _celestial_axes(ctype)
            world = torch.zeros(n, len(ctype), dtype=torch.float64)
            world[:, lng], world[:, lat] = ra, dec
            # wcslib itself: placed as read_sky_cutout and Cutout2D place it.
            pix = torch.ops.torchfits.world_to_pixel(p, hdu[b], world, alt, True)
            x, y = pix[:, 0], pix[:, 1]
            nx, ny = float(img[0]), float(img[1])
            m = torch.minimum(torch.minimum(x + 0.5, nx - 0.5 - x), torch.minimum(y + 0.5, ny - 0.5 - y))
            m = torch.nan_to_num(m, nan=-math.inf)
            better = (m > 0) & (m > margin[b])
            image[b][better] = i
            xs[b][better], ys[b][better], margin[b][better] = x[better], y[better], m[better]
    return {"image": image, "x": xs, "y": ys, "margin": margin}


class SkyCutoutDataset(Dataset):
    """Cutouts of catalogue sources in several bands.

    Args:
        ra, dec: the sources' positions in degrees (sequences or 1-D
            tensors), in the images' celestial frame (no frame conversion).
        bands: per band, the list of image paths (a list of lists, or a
            dict band name -> list; the channel order is the order given).
        shape: (H, W) of each cutout, or one int.
        hdu: the image HDU in every file (0-based; 1 for a tile-compressed
            image after an empty primary), or one per band.
        fill: value of pixels outside the image or of an uncovered band
            (default NaN).
        dtype: of the stacked sample (default float32).
        cache: a file for the index: loaded when it matches these sources
            and files (same positions, paths, sizes and modification times),
            built and saved otherwise.

    Each sample is ``(cutout [C, H, W], covered bool [C])``. Works with
    any DataLoader ``num_workers`` and with ``DistributedSampler``.
    """

    def __init__(self, ra, dec, bands: Union[Sequence[Sequence], Mapping[str, Sequence]],
                 shape, hdu: Union[int, Sequence[int]] = 0, fill: float = math.nan, dtype: torch.dtype = torch.float32,
                 cache: Optional[Union[str, os.PathLike]] = None, alt: str = ""):
        from . import _fspath
        self.ra = torch.as_tensor(ra, dtype=torch.float64).reshape(-1).clone()
        self.dec = torch.as_tensor(dec, dtype=torch.float64).reshape(-1).clone()
        if self.ra.numel() != self.dec.numel():
            raise ValueError(f"ra and dec differ in length ({self.ra.numel()} and {self.dec.numel()})")
        if isinstance(bands, Mapping):
            self.band_names = [str(k) for k in bands]
            bands = list(bands.values())
        else:
            self.band_names = [str(i) for i in range(len(bands))]
        self.bands = [[_fspath(p) for p in band] for band in bands]
        if not self.bands:
            raise ValueError("bands is empty")
        if isinstance(shape, int):
            shape = (shape, shape)
        self.shape = (int(shape[0]), int(shape[1]))
        if min(self.shape) < 1:
            raise ValueError(f"shape must be positive, not {shape}")
        self.hdu = [int(hdu)] * len(self.bands) if isinstance(hdu, int) else [int(h) for h in hdu]
        if len(self.hdu) != len(self.bands):
            raise ValueError(f"hdu has {len(self.hdu)} entries for {len(self.bands)} bands")
        self.fill, self.dtype, self.alt = float(fill), dtype, alt.strip().upper()
        key = _key(self.ra, self.dec, self.bands, self.hdu, self.alt)
        index = None
        if cache is not None and os.path.exists(cache):
            saved = torch.load(cache)
            if isinstance(saved, dict) and saved.get("key") == key:
                index = saved["index"]
        if index is None:
            index = build_index(self.ra, self.dec, self.bands, self.hdu, self.alt)
            if cache is not None:
                torch.save({"key": key, "index": index}, cache)
        self.index = index

    def __len__(self) -> int:
        return self.ra.numel()

    def coverage(self) -> torch.Tensor:
        """bool [C, N]: which band covers which source."""
        return self.index["image"] >= 0

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, torch.Tensor]:
        from .wcs import _overlap
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"source {i} out of range ({len(self)} sources)")
        h, w = self.shape
        out = torch.full((len(self.bands), h, w), self.fill, dtype=self.dtype)
        covered = torch.zeros(len(self.bands), dtype=torch.bool)
        image, xs, ys = self.index["image"], self.index["x"], self.index["y"]
        for b, paths in enumerate(self.bands):
            k = int(image[b, i])
            if k < 0:
                continue
            p = paths[k]
            shp = self._image_shape(b, k)
            y0, yc, yn = _overlap(float(ys[b, i]), h, shp[0], "partial")
            x0, xc, xn = _overlap(float(xs[b, i]), w, shp[1], "partial")
            part = torch.ops.torchfits.read_cutout(p, self.hdu[b], [y0, x0], [yn, xn], None, False)
            out[b, yc:yc + yn, xc:xc + xn] = part.to(self.dtype)
            covered[b] = True
        return out, covered

    def _image_shape(self, b: int, k: int) -> Tuple[int, int]:
        """(NAXIS2, NAXIS1) of image k of band b, from the header, kept."""
        shapes = self.__dict__.setdefault("_shapes", {})
        s = shapes.get((b, k))
        if s is None:
            from . import info
            s = tuple(info(self.bands[b][k])[self.hdu[b]].shape)
            shapes[(b, k)] = s
        return s
