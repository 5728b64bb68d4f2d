"""Sky coordinates: an HDU's world coordinate system through wcslib, and
cutouts centred on sky positions.

Pixel coordinates are 0-based, as astropy's ``all_world2pix(..., 0)`` and
``all_pix2world(..., 0)``: the centre of the first pixel is 0, and column
``x`` of a pixel array is FITS axis 1 (NAXIS1, the fastest, the last axis
of a tensor read from the file). World coordinates are in the units of the
WCS after wcslib's fixes (degrees for celestial axes, SI units for spectral
ones), one column per WCS axis in the header's order.

The header is parsed by the C core and handed to wcslib (wcspih, wcsfix as
astropy applies by default, wcsset), which does every projection it knows,
spectral axes, and the distortions it reads from headers: SIP (``-SIP``
CTYPE with ``A_p_q``/``B_p_q``) and TPV. Points outside a projection give
NaN rows. Large batches run on several threads (``set_threads``).
"""
from __future__ import annotations

import math
from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

import torch

from ._fake import _fake
from .remote import shown as _shown

__all__ = ["WCSInfo", "pixel_to_world", "read_sky_cutout", "wcs_info", "world_to_pixel"]


def _pkg():
    from . import _call, _fspath, _hdu_args
    return _call, _fspath, _hdu_args


def _index(path: str, hdu) -> int:
    _call, _, _hdu_args = _pkg()
    index, name, ver = _hdu_args(path, hdu)
    if name is not None:
        index = _call(torch.ops.torchfits.find_hdu, path, name, ver)
    return index


def _alt(alt: str) -> str:
    if not isinstance(alt, str):
        raise TypeError(f"alt must be a str ('' or a letter A-Z), got {alt!r}")
    return alt.strip().upper()


def _coords(x, what: str) -> Tuple[torch.Tensor, bool]:
    t = torch.as_tensor(x, dtype=torch.float64)
    if t.device.type != "cpu":
        t = t.cpu()
    single = t.dim() == 1
    if single:
        t = t.unsqueeze(0)
    if t.dim() != 2:
        raise ValueError(f"{what} must be [N, naxis] (or [naxis] for one point), not of shape {tuple(t.shape)}")
    return t, single


def world_to_pixel(path, hdu, world, alt: str = "", *, wcslib: bool = False) -> torch.Tensor:
    """World coordinates to 0-based pixel coordinates.

    Args:
        path: a FITS file.
        hdu: HDU number (0-based), EXTNAME or (EXTNAME, EXTVER).
        world: float64 ``[N, naxis]`` (or ``[naxis]``), one column per WCS
            axis in header order (RA, Dec in degrees for a celestial image).
        alt: ``""`` for the primary WCS, or an alternate WCS letter A-Z.
        wcslib: every point through wcslib's own code, bit for bit what
            astropy.wcs computes. By default a 2-axis TAN WCS, without
            distortion or with SIP, is computed in closed form instead:
            several times faster, the same values to about 1e-10 pixel.

    Returns:
        float64 ``[N, naxis]``: ``x`` (FITS axis 1) first, as astropy's
        ``all_world2pix(world, 0)``. Points outside the projection are NaN.
    """
    _call, _fspath, _ = _pkg()
    path = _fspath(path)
    t, single = _coords(world, "world")
    out = _call(torch.ops.torchfits.world_to_pixel, path, _index(path, hdu), t, _alt(alt), bool(wcslib))
    return out[0] if single else out


def pixel_to_world(path, hdu, pixel, alt: str = "", *, wcslib: bool = False) -> torch.Tensor:
    """0-based pixel coordinates to world coordinates: the inverse of
    :func:`world_to_pixel`, as astropy's ``all_pix2world(pixel, 0)``
    (``wcslib`` as there; the closed form agrees to about 1e-12 degree)."""
    _call, _fspath, _ = _pkg()
    path = _fspath(path)
    t, single = _coords(pixel, "pixel")
    out = _call(torch.ops.torchfits.pixel_to_world, path, _index(path, hdu), t, _alt(alt), bool(wcslib))
    return out[0] if single else out


class WCSInfo(NamedTuple):
    """The WCS of an HDU in brief (``wcs_info``)."""
    ctype: List[str]
    cunit: List[str]
    crval: List[float]
    crpix: List[float]          # 1-based, as stored in the header
    scale: List[float]          # per pixel axis: length of column i of CDELT*PC (CD), in CUNIT per pixel
    shape: List[int]            # NAXISn, FITS order (x first)
    corners: torch.Tensor       # [4, naxis]: world coordinates of the corner pixels' centres


def wcs_info(path, hdu=0, alt: str = "") -> WCSInfo:
    """CTYPE, CUNIT, CRVAL, CRPIX, pixel scale, image size and footprint.

    ``corners`` are the world coordinates of the centres of the four corner
    pixels, in the order of astropy's ``WCS.calc_footprint()``: (0, 0),
    (0, NAXIS2-1), (NAXIS1-1, NAXIS2-1), (NAXIS1-1, 0); empty when the HDU
    has no image with as many axes as the WCS. The pixel scale of a
    celestial image equals astropy's ``proj_plane_pixel_scales``.
    """
    _call, _fspath, _ = _pkg()
    path = _fspath(path)
    r = _call(torch.ops.torchfits.wcs_info, path, _index(path, hdu), _alt(alt))
    return WCSInfo(*r)


@_fake("world_to_pixel")
def _world_to_pixel_fake(path: str, hdu: int, world: torch.Tensor, alt: str = "",
                         wcslib: bool = False) -> torch.Tensor:
    return torch.empty_like(world)


@_fake("pixel_to_world")
def _pixel_to_world_fake(path: str, hdu: int, pixel: torch.Tensor, alt: str = "",
                         wcslib: bool = False) -> torch.Tensor:
    return torch.empty_like(pixel)


# ---- cutouts at sky positions ----

def _celestial_axes(ctype: Sequence[str]) -> Tuple[int, int]:
    """(longitude, latitude) WCS axis numbers, from CTYPE as wcslib reads it."""
    lng = lat = -1
    for i, c in enumerate(ctype):
        head = c[:4].upper()
        if head == "RA--" or head[1:4] == "LON" or head[2:4] == "LN":
            lng = i
        elif head == "DEC-" or head[1:4] == "LAT" or head[2:4] == "LT":
            lat = i
    if lng < 0 or lat < 0:
        raise ValueError(f"the WCS has no celestial axes (CTYPE {list(ctype)})")
    return lng, lat


def _overlap(pos: float, size: int, large: int, mode: str) -> Tuple[int, int, int]:
    """astropy's overlap_slices along one axis (limit rounding np.ceil):
    (first index in the image, first index in the cutout, length)."""
    lo = int(math.ceil(pos - size / 2.0))
    hi = lo + size
    if hi < 0 or (hi == 0 and size != 0) or lo >= large:
        raise ValueError("the cutout does not overlap the image (astropy's NoOverlapError)")
    if mode == "strict" and (lo < 0 or hi > large):
        raise ValueError("the cutout overlaps the image only partially (mode='strict'; "
                         "astropy's PartialOverlapError)")
    start = max(0, lo)
    stop = min(large, hi)
    return start, max(0, -lo), stop - start


def read_sky_cutout(path, hdu, ra: float, dec: float, shape, mode: str = "partial",
                    fill: Optional[float] = None, *, return_mask: bool = False,
                    alt: str = "", raw: bool = False):
    """The cutout of a 2-D image centred on a sky position, as astropy's
    ``Cutout2D(data, SkyCoord(ra, dec), shape, wcs, mode=mode)``.

    The position goes through :func:`world_to_pixel` (distortions
    included), then the region is placed exactly as Cutout2D places it:
    along each axis the first pixel is ``ceil(p - n / 2)``, ``p`` the
    0-based pixel position. Only that region is read (only the tiles it
    touches, for a tile-compressed image).

    Args:
        path, hdu: the image.
        ra, dec: the position in degrees, in the WCS's own celestial frame
            (its RADESYS / galactic / ecliptic axes: no frame conversion is
            made; for Galactic images pass l, b).
        shape: (ny, nx), or one int for a square.
        mode: "partial" (a cutout crossing the edge is padded with
            ``fill``) or "strict" (ValueError unless the cutout lies
            inside the image). No overlap at all is a ValueError in both.
        fill: the padding: default NaN for floating-point images and 0 for
            integer ones (as read with ``raw=True`` or unscaled).
        return_mask: also return a bool mask ``[ny, nx]``, True where the
            pixel came from the image.
        alt: alternate WCS letter.

    Returns:
        The cutout ``[ny, nx]``, with the dtype of ``read``; with
        ``return_mask``, ``(cutout, mask)``.
    """
    from . import read_cutout
    _call, _fspath, _ = _pkg()
    if mode not in ("partial", "strict"):
        raise ValueError(f"mode must be 'partial' or 'strict', not {mode!r}")
    if isinstance(shape, int):
        shape = (shape, shape)
    ny, nx = (int(s) for s in shape)
    if ny < 1 or nx < 1:
        raise ValueError(f"shape must be positive, not {tuple(shape)}")
    path = _fspath(path)
    index = _index(path, hdu)
    a = _alt(alt)
    w = _call(torch.ops.torchfits.wcs_info, path, index, a)
    ctype, img = w[0], w[5]
    if len(img) != 2:
        raise ValueError(f"{_shown(path)}: HDU {index}: read_sky_cutout needs a 2-D image, "
                         f"this HDU has NAXISn {list(img)}")
    lng, lat = _celestial_axes(ctype)
    world = torch.zeros(1, len(ctype), dtype=torch.float64)
    world[0, lng], world[0, lat] = float(ra), float(dec)
    # wcslib itself: placed exactly as Cutout2D places it, even at a
    # position on a half-pixel boundary.
    pix = _call(torch.ops.torchfits.world_to_pixel, path, index, world, a, True)[0]
    x, y = float(pix[0]), float(pix[1])
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"{_shown(path)}: HDU {index}: ({ra}, {dec}) is outside the projection")
    ys, yc, yn = _overlap(y, ny, int(img[1]), mode)
    xs, xc, xn = _overlap(x, nx, int(img[0]), mode)
    part = read_cutout(path, index, [ys, xs], [yn, xn], raw=raw)
    if yn == ny and xn == nx:
        out = part
    else:
        if fill is None:
            fill = math.nan if part.dtype.is_floating_point or part.dtype.is_complex else 0
        out = torch.full((ny, nx), fill, dtype=part.dtype)
        out[yc:yc + yn, xc:xc + xn] = part
    if not return_mask:
        return out
    mask = torch.zeros((ny, nx), dtype=torch.bool)
    mask[yc:yc + yn, xc:xc + xn] = True
    return out, mask
