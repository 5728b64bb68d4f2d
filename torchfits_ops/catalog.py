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
            # "\0bytes:": see _fspath; a URL's object is not stat'ed (cached by name)
            st = os.stat(p) if not p.startswith(("\0", "http://", "https://", "s3://")) else None
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
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"source {i} out of range ({len(self)} sources)")
        out, covered = self._read([i])
        return out[0], covered[0]

    def __getitems__(self, indices: Sequence[int]) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """A batch as a list of samples, read by one ``read_cutouts`` call
        (the DataLoader of torch 2.x calls this with the batch's indices)."""
        out, covered = self._read(indices)
        return list(zip(out.unbind(0), covered.unbind(0)))

    def read_batch(self, indices: Sequence[int]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Samples ``indices`` stacked: ``(cutouts [B, C, H, W], covered
        bool [B, C])``, read by one ``read_cutouts`` call: every band's
        cutouts, grouped by image, on several threads (one inside a
        DataLoader worker, where the workers are the parallelism)."""
        return self._read(indices)

    def _read(self, indices: Sequence[int]) -> Tuple[torch.Tensor, torch.Tensor]:
        from torch.utils.data import get_worker_info
        from . import _call
        idx = torch.as_tensor(list(indices) if not isinstance(indices, torch.Tensor) else indices,
                              dtype=torch.int64).reshape(-1)
        n = len(self)
        if idx.numel() and (int(idx.min()) < -n or int(idx.max()) >= n):
            bad = int(idx[(idx < -n) | (idx >= n)][0])
            raise IndexError(f"source {bad} out of range ({n} sources)")
        idx = torch.where(idx < 0, idx + n, idx)
        h, w = self.shape
        image = self.index["image"][:, idx]                       # [C, B]
        files = image + self._offsets().unsqueeze(1)
        files = torch.where(image >= 0, files, torch.full_like(files, -1))
        # Cutout2D's placement: the first pixel at ceil(p - size / 2).
        y0 = torch.ceil(self.index["y"][:, idx] - h / 2.0)
        x0 = torch.ceil(self.index["x"][:, idx] - w / 2.0)
        y0 = torch.nan_to_num(y0, nan=0.0).to(torch.int64)
        x0 = torch.nan_to_num(x0, nan=0.0).to(torch.int64)
        items = torch.stack([files.t(), y0.t(), x0.t()], dim=2).reshape(-1, 3)  # [B*C, 3]
        dtype = self.dtype if self.dtype in (torch.float32, torch.float64) else torch.float64
        threads = 1 if get_worker_info() is not None else 0
        paths, hdus = self._flat()
        out = _call(torch.ops.torchfits.read_cutouts, paths, hdus, items, [h, w], self.fill, dtype,
                    threads)
        out = out.reshape(idx.numel(), len(self.bands), h, w)
        if out.dtype != self.dtype:
            out = out.to(self.dtype)
        return out, (image >= 0).t().contiguous()

    def _flat(self) -> Tuple[List[str], List[int]]:
        """Every band's paths in one list, and the HDU of each."""
        paths = [p for band in self.bands for p in band]
        hdus = [self.hdu[b] for b, band in enumerate(self.bands) for _ in band]
        return paths, hdus

    def _offsets(self) -> torch.Tensor:
        """The first file number of each band in ``_flat``'s list."""
        sizes = torch.tensor([0] + [len(b) for b in self.bands[:-1]], dtype=torch.int64)
        return torch.cumsum(sizes, 0)
