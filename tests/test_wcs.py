"""Sky coordinates: world_to_pixel / pixel_to_world / wcs_info through
wcslib, compared with astropy.wcs (all_world2pix / all_pix2world, origin
0), and read_sky_cutout compared with astropy's Cutout2D pixel for pixel."""
import glob
import math
import os
import warnings

import numpy as np
import pytest
import torch

import torchfits_ops as tf

fits = pytest.importorskip("astropy.io.fits")
awcs = pytest.importorskip("astropy.wcs")
from astropy.wcs import FITSFixedWarning  # noqa: E402

PIX_TOL = 1e-8
DEG_TOL = 1e-10

# Headers of real files from other software, shipped in Debian's
# python3-astropy (and in pip's astropy): Calabretta's wcslib test maps of
# 1904-66 in every projection, spectral cubes, SIP and TPV headers.
_DATA_DIRS = [
    "/usr/lib/python3/dist-packages/astropy/wcs/tests/data",
    os.path.join(os.path.dirname(awcs.__file__), "tests", "data"),
]
DATA = next((d for d in _DATA_DIRS if os.path.isdir(os.path.join(d, "maps"))), None)


def _wcs(header, key=" "):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return awcs.WCS(header, key=key)


def _write(path, header, shape=None, dtype=np.float32, data=None):
    if data is None:
        n = header.get("NAXIS", 0)
        if shape is None:
            shape = tuple(header.get(f"NAXIS{i}", 10) for i in range(n, 0, -1)) or (10, 10)
        data = np.zeros(shape, dtype=dtype)
    h = header.copy()
    for k in ("SIMPLE", "BITPIX", "NAXIS", "EXTEND", "XTENSION", "PCOUNT", "GCOUNT"):
        h.remove(k, ignore_missing=True, remove_all=True)
    for i in range(1, 10):
        h.remove(f"NAXIS{i}", ignore_missing=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits.PrimaryHDU(data=data, header=h).writeto(path, overwrite=True)
    return str(path)


def _grid(nx, ny, n=17):
    x, y = np.meshgrid(np.linspace(-3.3, nx + 2.7, n), np.linspace(-2.1, ny + 3.9, n))
    return np.stack([x.ravel(), y.ravel()], axis=1)


def _lon_close(a, b):
    d = np.abs(a - b)
    return np.minimum(d, 360.0 - d)


def _check_pix2world(path, w, pix, alt=""):
    ours = tf.pixel_to_world(path, 0, torch.from_numpy(pix), alt=alt).numpy()
    ref = w.all_pix2world(pix, 0)
    assert np.array_equal(np.isnan(ours).any(1), np.isnan(ref).any(1))
    ok = ~np.isnan(ref).any(1)
    lng = w.wcs.lng if w.wcs.lng >= 0 else None
    for c in range(pix.shape[1]):
        if c == lng:
            diff = _lon_close(ours[ok, c], ref[ok, c])
        else:
            diff = np.abs(ours[ok, c] - ref[ok, c])
        assert diff.max(initial=0) < DEG_TOL * max(1.0, np.abs(ref[ok, c]).max(initial=0)), c
    return ref[ok], pix[ok]


def _check_world2pix(path, w, world, alt=""):
    ours = tf.world_to_pixel(path, 0, torch.from_numpy(world), alt=alt).numpy()
    ref = w.all_world2pix(world, 0, tolerance=1e-12, maxiter=200)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=PIX_TOL)
    return ours


# ---- every projection: headers written by astropy ----

# The projection codes wcslib knows, with the PVi_m a few of them need.
PROJECTIONS = {
    "AZP": {1: 2.0, 2: 30.0}, "SZP": {1: 2.0, 2: 180.0, 3: 60.0}, "TAN": {}, "STG": {},
    "SIN": {}, "ARC": {}, "ZPN": {0: 0.0, 1: 1.0, 3: 0.05}, "ZEA": {}, "AIR": {1: 45.0},
    "CYP": {1: 1.0, 2: 0.7}, "CEA": {1: 1.0}, "CAR": {}, "MER": {}, "SFL": {}, "PAR": {},
    "MOL": {}, "AIT": {}, "COP": {1: 45.0, 2: 25.0}, "COE": {1: -45.0, 2: 25.0},
    "COD": {1: 45.0, 2: 25.0}, "COO": {1: 45.0, 2: 25.0}, "BON": {1: 45.0}, "PCO": {},
    "TSC": {}, "CSC": {}, "QSC": {}, "HPX": {}, "XPH": {},
}


def _header(code, crval=(150.0, 20.0), cdelt=(-0.2, 0.2), pv=None, nx=64, ny=48):
    w = awcs.WCS(naxis=2)
    w.wcs.ctype = [f"RA---{code}", f"DEC--{code}"]
    w.wcs.crval = list(crval)
    w.wcs.crpix = [nx / 2 + 0.3, ny / 2 - 0.7]
    w.wcs.cdelt = list(cdelt)
    w.wcs.pc = [[math.cos(0.3), -math.sin(0.3)], [math.sin(0.3), math.cos(0.3)]]
    if pv:
        w.wcs.set_pv([(2, m, v) for m, v in pv.items()])
    return w.to_header(), nx, ny


@pytest.mark.parametrize("code", sorted(PROJECTIONS))
def test_projection_astropy_header(tmp_path, code):
    hdr, nx, ny = _header(code, pv=PROJECTIONS[code])
    path = _write(tmp_path / f"{code}.fits", hdr, (ny, nx))
    w = _wcs(fits.getheader(path))
    world, pix = _check_pix2world(path, w, _grid(nx, ny))
    assert len(world) > 0.5 * len(_grid(nx, ny))
    back = _check_world2pix(path, w, world)
    if code != "CSC":  # CSC's two directions are approximations of each other
        np.testing.assert_allclose(back, pix, rtol=0, atol=1e-6)


@pytest.mark.skipif(DATA is None, reason="astropy's WCS test data is not installed")
@pytest.mark.parametrize("hdr", sorted(glob.glob(os.path.join(DATA or "", "maps", "*.hdr"))),
                         ids=os.path.basename)
def test_projection_wcslib_maps(tmp_path, hdr):
    """Calabretta's maps of 1904-66 in each projection (wcslib's test set)."""
    header = fits.Header.fromfile(hdr, sep="", endcard=False, padding=False)
    path = _write(tmp_path / "map.fits", header)
    w = _wcs(fits.getheader(path))
    world, pix = _check_pix2world(path, w, _grid(192, 192, 25))
    _check_world2pix(path, w, world)


@pytest.mark.skipif(DATA is None, reason="astropy's WCS test data is not installed")
@pytest.mark.parametrize("hdr", sorted(glob.glob(os.path.join(DATA or "", "spectra", "*.hdr"))),
                         ids=os.path.basename)
def test_spectral_cubes(tmp_path, hdr):
    header = fits.Header.fromfile(hdr, sep="", endcard=False, padding=False)
    n = header["NAXIS"]
    shape = tuple(max(1, min(header[f"NAXIS{i}"], 16)) for i in range(n, 0, -1))
    path = _write(tmp_path / "cube.fits", header, shape)
    w = _wcs(fits.getheader(path))
    rng = np.random.default_rng(1)
    pix = rng.uniform(-2, 14, size=(200, w.wcs.naxis))
    world, pix = _check_pix2world(path, w, pix)
    _check_world2pix(path, w, world)


def test_spectral_axis_astropy(tmp_path):
    w = awcs.WCS(naxis=3)
    w.wcs.ctype = ["RA---SIN", "DEC--SIN", "FREQ"]
    w.wcs.crval = [83.8, -5.4, 1.4204e9]
    w.wcs.crpix = [8, 8, 1]
    w.wcs.cdelt = [-1e-3, 1e-3, 1.5e5]
    w.wcs.cunit = ["deg", "deg", "Hz"]
    w.wcs.specsys = "LSRK"
    path = _write(tmp_path / "cube.fits", w.to_header(), (20, 16, 16))
    aw = _wcs(fits.getheader(path))
    rng = np.random.default_rng(2)
    pix = rng.uniform(-1, 17, size=(300, 3))
    world, pix = _check_pix2world(path, aw, pix)
    _check_world2pix(path, aw, world)
    # And a spectral axis transformed to wavelength (wcslib's F2W).
    w.wcs.ctype = ["RA---SIN", "DEC--SIN", "WAVE-F2W"]
    w.wcs.crval = [83.8, -5.4, 0.21106]
    w.wcs.cdelt = [-1e-3, 1e-3, 2e-5]
    w.wcs.cunit = ["deg", "deg", "m"]
    w.wcs.restfrq = 1.4204e9
    path = _write(tmp_path / "cube2.fits", w.to_header(), (20, 16, 16))
    aw = _wcs(fits.getheader(path))
    world, pix = _check_pix2world(path, aw, pix)
    _check_world2pix(path, aw, world)


# ---- alternate WCS ----

def test_alternate_wcs(tmp_path):
    hdr, nx, ny = _header("TAN")
    alt, _, _ = _header("SIN", crval=(10.0, -30.0), cdelt=(-0.01, 0.01))
    for card in _wcs(alt).to_header(key="A").cards:
        hdr.append(card)
    gal = awcs.WCS(naxis=2)
    gal.wcs.ctype = ["GLON-CAR", "GLAT-CAR"]
    gal.wcs.crval = [120.0, 5.0]
    gal.wcs.crpix = [1, 1]
    gal.wcs.cdelt = [-0.05, 0.05]
    for card in gal.to_header(key="Z").cards:
        hdr.append(card)
    path = _write(tmp_path / "alt.fits", hdr, (ny, nx))
    header = fits.getheader(path)
    pix = _grid(nx, ny)
    for key in ("", "A", "Z", "a"):
        w = _wcs(header, key=key.upper() or " ")
        world, p = _check_pix2world(path, w, pix, alt=key)
        _check_world2pix(path, w, world, alt=key)
    a = tf.pixel_to_world(path, 0, torch.tensor([[1.0, 2.0]]), alt="A")
    p = tf.pixel_to_world(path, 0, torch.tensor([[1.0, 2.0]]))
    assert not torch.allclose(a, p)
    with pytest.raises(ValueError, match="no WCS B"):
        tf.world_to_pixel(path, 0, torch.tensor([[1.0, 2.0]]), alt="B")
    with pytest.raises(ValueError, match="A-Z"):
        tf.world_to_pixel(path, 0, torch.tensor([[1.0, 2.0]]), alt="AB")


# ---- distortions ----

def _sip_header(nx=200, ny=150):
    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
    h["CRVAL1"], h["CRVAL2"] = 202.48, 47.2
    h["CRPIX1"], h["CRPIX2"] = nx / 2 + 0.5, ny / 2 - 0.25
    h["CD1_1"], h["CD1_2"], h["CD2_1"], h["CD2_2"] = -2.8e-4, 1.1e-5, 1.2e-5, 2.8e-4
    h["A_ORDER"], h["B_ORDER"] = 3, 3
    for k, v in {"A_0_2": 2.1e-6, "A_1_1": -3.2e-6, "A_2_0": 4.5e-6, "A_0_3": 1.1e-9,
                 "A_3_0": -2.5e-9, "A_1_2": 3e-10, "B_0_2": -1.9e-6, "B_1_1": 2.7e-6,
                 "B_2_0": 1.2e-6, "B_2_1": 2e-9, "B_0_3": -7e-10}.items():
        h[k] = v
    return h, nx, ny


def test_sip(tmp_path):
    hdr, nx, ny = _sip_header()
    path = _write(tmp_path / "sip.fits", hdr, (ny, nx))
    w = _wcs(fits.getheader(path))
    assert w.sip is not None
    world, pix = _check_pix2world(path, w, _grid(nx, ny))
    back = _check_world2pix(path, w, world)
    np.testing.assert_allclose(back, pix, rtol=0, atol=PIX_TOL)


def test_tpv(tmp_path):
    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"] = "RA---TPV", "DEC--TPV"
    h["CRVAL1"], h["CRVAL2"] = 35.2, -4.9
    h["CRPIX1"], h["CRPIX2"] = 1024.5, 2048.5
    h["CD1_1"], h["CD1_2"], h["CD2_1"], h["CD2_2"] = 0.0, -7.3e-5, 7.3e-5, 0.0
    for ax, terms in ((1, {0: 1.2e-4, 1: 1.0003, 2: 1.5e-4, 4: 2.1e-3, 5: -1.7e-3, 6: 3.3e-4,
                           7: -1.1e-2, 8: 2.2e-3, 9: -4.1e-3, 10: 1.3e-3}),
                      (2, {0: -2.2e-4, 1: 0.9998, 2: -3.1e-4, 4: -1.8e-3, 5: 2.4e-3, 6: -3.9e-4,
                           7: 9.1e-3, 8: -2.9e-3, 9: 3.4e-3, 10: -1.6e-3})):
        for m, v in terms.items():
            h[f"PV{ax}_{m}"] = v
    path = _write(tmp_path / "tpv.fits", h, (40, 30))
    w = _wcs(fits.getheader(path))
    pix = _grid(2048, 4096, 15)
    world, pix = _check_pix2world(path, w, pix)
    _check_world2pix(path, w, world)
    # The distortion matters: a TAN without it lands elsewhere.
    assert np.abs(w.wcs_pix2world(pix, 0) - _wcs(_strip_pv(h)).wcs_pix2world(pix, 0)).max() > 1e-5


def _strip_pv(h):
    h = h.copy()
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    for k in [k for k in h if k.startswith("PV")]:
        del h[k]
    return h


@pytest.mark.skipif(DATA is None, reason="astropy's WCS test data is not installed")
@pytest.mark.parametrize("name", ["irac_sip.hdr", "siponly.hdr", "tpvonly.hdr", "sip.fits",
                                  "sip2.fits", "3d_cd.hdr", "2wcses.hdr"])
def test_real_headers(tmp_path, name):
    src = os.path.join(DATA, name)
    if name.endswith(".fits"):
        header = fits.getheader(src)
    else:
        header = fits.Header.fromfile(src, sep="", endcard=False, padding=False)
    n = header.get("NAXIS", 0) or header.get("WCSAXES", 2)
    shape = tuple(min(int(header.get(f"NAXIS{i}", 50) or 50), 64) for i in range(n, 0, -1))
    path = _write(tmp_path / "real.fits", header, shape)
    w = _wcs(fits.getheader(path))
    nx = int(header.get("NAXIS1", 100) or 100)
    ny = int(header.get("NAXIS2", 100) or 100)
    pix = _grid(nx, ny, 13)
    if w.wcs.naxis > 2:
        pix = np.concatenate([pix, np.full((len(pix), w.wcs.naxis - 2), 1.5)], axis=1)
    world, pix = _check_pix2world(path, w, pix)
    _check_world2pix(path, w, world)


# ---- errors ----

def _bad(tmp_path, **cards):
    hdr, nx, ny = _header("TAN")
    for k, v in cards.items():
        hdr[k] = v
    return _write(tmp_path / "bad.fits", hdr, (ny, nx))


def test_bad_projection_names_ctype(tmp_path):
    path = _bad(tmp_path, CTYPE1="RA---XYZ", CTYPE2="DEC--XYZ")
    with pytest.raises(ValueError, match="CTYPE1 = 'RA---XYZ'"):
        tf.world_to_pixel(path, 0, torch.zeros(1, 2, dtype=torch.float64))


def test_rejected_keyword_is_named(tmp_path):
    path = _bad(tmp_path, CRPIX1="abc")
    with pytest.raises(ValueError, match="CRPIX1"):
        tf.pixel_to_world(path, 0, torch.zeros(1, 2, dtype=torch.float64))


def test_rejected_other_keyword_is_not_an_error(tmp_path):
    """A rejected keyword that does not define the transformation (here a
    bad MJD-OBS, in an extension with PCOUNT and GCOUNT) is ignored, as
    astropy ignores it."""
    hdr, nx, ny = _header("TAN")
    hdr["MJD-OBS"] = "abc"
    path = str(tmp_path / "ext.fits")
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((ny, nx), np.float32), header=hdr,
                                                   name="SCI")]).writeto(path)
    w = _wcs(fits.getheader(path, 1))
    pix = _grid(nx, ny, 5)
    ours = tf.pixel_to_world(path, "SCI", torch.from_numpy(pix)).numpy()
    np.testing.assert_allclose(ours, w.all_pix2world(pix, 0), rtol=0, atol=DEG_TOL)


def test_singular_matrix_is_named(tmp_path):
    # A zero row: exactly singular (wcslib's inversion lets roundoff pass
    # for a merely rank-deficient matrix, and then gives NaN).
    path = _bad(tmp_path, PC1_1=1.0, PC1_2=0.5, PC2_1=0.0, PC2_2=0.0)
    with pytest.raises(ValueError, match="PCi_j.*singular"):
        tf.pixel_to_world(path, 0, torch.zeros(1, 2, dtype=torch.float64))


def test_no_wcs_and_bad_arguments(tmp_path):
    path = _write(tmp_path / "plain.fits", fits.Header(), (4, 4))
    with pytest.raises(ValueError, match="no WCS"):
        tf.pixel_to_world(path, 0, torch.zeros(1, 2, dtype=torch.float64), alt="C")
    hdr, nx, ny = _header("TAN")
    path = _write(tmp_path / "ok.fits", hdr, (ny, nx))
    with pytest.raises(ValueError, match="columns"):
        tf.world_to_pixel(path, 0, torch.zeros(5, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="float64"):
        torch.ops.torchfits.world_to_pixel(path, 0, torch.zeros(5, 2), "")
    with pytest.raises(IndexError):
        tf.world_to_pixel(path, 3, torch.zeros(5, 2, dtype=torch.float64))
    # Outside the projection: NaN, as astropy.
    sin_hdr, _, _ = _header("SIN")
    path = _write(tmp_path / "sin.fits", sin_hdr, (ny, nx))
    out = tf.world_to_pixel(path, 0, torch.tensor([[150.0 + 180.0, -20.0]], dtype=torch.float64))
    assert torch.isnan(out).all()
    # One point, and an empty batch.
    one = tf.world_to_pixel(path, 0, [150.0, 20.0])
    assert one.shape == (2,)
    assert tf.world_to_pixel(path, 0, torch.zeros(0, 2, dtype=torch.float64)).shape == (0, 2)


# ---- threads, info, TorchScript ----

def test_many_points_on_threads(tmp_path):
    hdr, nx, ny = _sip_header(4000, 4000)
    path = _write(tmp_path / "sip.fits", hdr, (8, 8))  # header only matters
    w = _wcs(fits.getheader(path))
    rng = np.random.default_rng(3)
    pix = rng.uniform(0, 4000, size=(200_000, 2))
    old = tf.set_threads(2)
    try:
        world = tf.pixel_to_world(path, 0, torch.from_numpy(pix)).numpy()
        back = tf.world_to_pixel(path, 0, torch.from_numpy(world)).numpy()
    finally:
        tf.set_threads(old)
    one = tf.pixel_to_world(path, 0, torch.from_numpy(pix[-1000:])).numpy()
    np.testing.assert_array_equal(world[-1000:], one)
    np.testing.assert_allclose(world[::97], w.all_pix2world(pix[::97], 0), rtol=0, atol=DEG_TOL)
    np.testing.assert_allclose(back, pix, rtol=0, atol=PIX_TOL)


def test_wcs_info(tmp_path):
    hdr, nx, ny = _header("TAN")
    path = _write(tmp_path / "tan.fits", hdr, (ny, nx))
    w = _wcs(fits.getheader(path))
    i = tf.wcs_info(path, 0)
    assert i.ctype == ["RA---TAN", "DEC--TAN"]
    assert i.cunit == ["deg", "deg"]
    assert i.crval == [150.0, 20.0]
    np.testing.assert_allclose(i.crpix, w.wcs.crpix)
    np.testing.assert_allclose(i.scale, awcs.utils.proj_plane_pixel_scales(w), rtol=1e-12)
    assert i.shape == [nx, ny]
    np.testing.assert_allclose(i.corners.numpy(), w.calc_footprint(), rtol=0, atol=DEG_TOL)


@pytest.mark.parametrize("kind", ["unity", "cd"])
def test_wcs_info_scale(tmp_path, kind):
    """Pixel scale without a PC matrix (wcslib keeps no product matrix
    then) and from CDi_j."""
    if kind == "unity":
        w = awcs.WCS(naxis=2)
        w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        w.wcs.crval = [10.0, -5.0]
        w.wcs.crpix = [5, 6]
        w.wcs.cdelt = [-0.004, 0.003]
        hdr = w.to_header()
    else:
        hdr, _, _ = _sip_header()
    path = _write(tmp_path / f"{kind}.fits", hdr, (30, 40))
    w = _wcs(fits.getheader(path))
    i = tf.wcs_info(path, 0)
    np.testing.assert_allclose(i.scale, awcs.utils.proj_plane_pixel_scales(w), rtol=1e-12)
    np.testing.assert_allclose(i.corners.numpy(), w.calc_footprint(), rtol=0, atol=DEG_TOL)


def test_torchscript(tmp_path):
    hdr, nx, ny = _header("ZEA")
    path = _write(tmp_path / "zea.fits", hdr, (ny, nx))

    @torch.jit.script
    def roundtrip(p: str, pix: torch.Tensor) -> torch.Tensor:
        world = torch.ops.torchfits.pixel_to_world(p, 0, pix, "")
        return torch.ops.torchfits.world_to_pixel(p, 0, world, "")

    pix = torch.from_numpy(_grid(nx, ny))
    torch.testing.assert_close(roundtrip(path, pix), pix, rtol=0, atol=PIX_TOL)


@pytest.mark.skipif(not hasattr(torch.library, "opcheck"), reason="torch.library.opcheck needs torch 2.4+")
def test_opcheck(tmp_path):
    hdr, nx, ny = _header("TAN")
    path = _write(tmp_path / "tan.fits", hdr, (ny, nx))
    x = torch.from_numpy(_grid(nx, ny, 4))
    torch.library.opcheck(torch.ops.torchfits.pixel_to_world.default, (path, 0, x, ""))
    world = torch.ops.torchfits.pixel_to_world(path, 0, x, "")  # no NaN: opcheck compares exactly
    torch.library.opcheck(torch.ops.torchfits.world_to_pixel.default, (path, 0, world, ""))


# ---- the closed-form TAN path against wcslib itself ----

def _tan_header(crval, cdelt=(-0.01, 0.012), angle=0.4, swap=False, lonpole=None, cd=None):
    h = fits.Header()
    lon, lat = ("RA---TAN", "DEC--TAN")
    h["CTYPE1"], h["CTYPE2"] = (lat, lon) if swap else (lon, lat)
    h["CRVAL1"], h["CRVAL2"] = (crval[1], crval[0]) if swap else crval
    h["CRPIX1"], h["CRPIX2"] = 40.3, -12.7
    if cd is not None:
        h["CD1_1"], h["CD1_2"], h["CD2_1"], h["CD2_2"] = cd
    else:
        h["CDELT1"], h["CDELT2"] = cdelt
        c, s = math.cos(angle), math.sin(angle)
        h["PC1_1"], h["PC1_2"], h["PC2_1"], h["PC2_2"] = c, -s, s, c
    if lonpole is not None:
        h["LONPOLE"] = lonpole
    return h


TAN_CASES = {
    "plain": dict(crval=(150.0, 20.0)),
    "negative_lon": dict(crval=(-30.0, -45.0)),
    "zero_lon": dict(crval=(0.0, 5.0)),
    "lonpole": dict(crval=(210.0, -60.0), lonpole=150.0),
    "swapped_axes": dict(crval=(75.0, 30.0), swap=True),
    "near_pole": dict(crval=(10.0, 89.99)),
    "at_pole": dict(crval=(10.0, 90.0)),       # wcslib's own rotation there
    "south_pole": dict(crval=(300.0, -90.0)),
    "skewed_cd": dict(crval=(3.0, 1.0), cd=(-2.8e-4, 1.1e-5, 1.7e-5, 2.9e-4)),
}


@pytest.mark.parametrize("case", sorted(TAN_CASES))
def test_tan_closed_form_matches_wcslib(tmp_path, case):
    """The default path (closed form for TAN) against wcslib itself
    (wcslib=True) and astropy, on pixels far beyond the image and on
    world positions over the whole sphere (half of them behind the
    projection's horizon: NaN in both)."""
    path = _write(tmp_path / f"{case}.fits", _tan_header(**TAN_CASES[case]), (30, 40))
    w = _wcs(fits.getheader(path))
    rng = np.random.default_rng(11)
    pix = np.concatenate([_grid(40, 30), rng.uniform(-5000, 5000, (2000, 2))])
    pt = torch.from_numpy(pix)
    fast = tf.pixel_to_world(path, 0, pt).numpy()
    ref = tf.pixel_to_world(path, 0, pt, wcslib=True).numpy()
    assert not np.isnan(fast).any() and not np.isnan(ref).any()
    lng = w.wcs.lng
    assert _lon_close(fast[:, lng], ref[:, lng]).max() < 1e-11
    np.testing.assert_allclose(fast[:, 1 - lng], ref[:, 1 - lng], rtol=0, atol=1e-11)
    _check_pix2world(path, w, pix)
    # world -> pixel: the image's neighbourhood, and the whole sphere
    near = ref[: len(_grid(40, 30))]
    sphere = np.stack([rng.uniform(-360, 360, 4000), np.degrees(np.arcsin(rng.uniform(-1, 1, 4000)))], 1)
    if lng == 1:
        sphere = sphere[:, ::-1].copy()
    for world in (near, sphere):
        wt = torch.from_numpy(world)
        fast = tf.world_to_pixel(path, 0, wt).numpy()
        ref = tf.world_to_pixel(path, 0, wt, wcslib=True).numpy()
        np.testing.assert_array_equal(np.isnan(fast), np.isnan(ref))
        ok = ~np.isnan(ref[:, 0])
        # relative to the distance from the reference pixel: far out, a
        # pixel coordinate of 1e6 carries 1e-10 of rounding in either
        scale = np.maximum(1.0, np.abs(ref[ok]))
        assert (np.abs(fast[ok] - ref[ok]) / scale).max() < 1e-10
        near_ok = ok & (np.abs(ref).max(1) < 1e4)
        _check_world2pix(path, w, world[near_ok])
    assert 0.3 < ok.mean() < 0.7  # the sphere's far side is outside TAN
    np.testing.assert_allclose(tf.world_to_pixel(path, 0, torch.from_numpy(near)).numpy(),
                               pix[: len(near)], rtol=0, atol=1e-9)


def test_wcslib_flag_on_threads(tmp_path):
    """Both paths split over threads give what one thread gives, and the
    flag changes the path (the closed form rounds differently somewhere in
    200,000 points)."""
    path = _write(tmp_path / "tan.fits", _tan_header((150.0, 20.0)), (30, 40))
    rng = np.random.default_rng(2)
    pix = torch.from_numpy(rng.uniform(-100, 100, (200_000, 2)))
    old = tf.set_threads(2)
    try:
        many = [tf.pixel_to_world(path, 0, pix, wcslib=flag) for flag in (False, True)]
        back = tf.world_to_pixel(path, 0, many[0])
    finally:
        tf.set_threads(old)
    tf.set_threads(1)
    try:
        one = [tf.pixel_to_world(path, 0, pix, wcslib=flag) for flag in (False, True)]
    finally:
        tf.set_threads(old)
    assert torch.equal(many[0], one[0]) and torch.equal(many[1], one[1])
    assert not torch.equal(many[0], many[1])
    torch.testing.assert_close(many[0], many[1], rtol=0, atol=1e-11)
    torch.testing.assert_close(back, pix, rtol=0, atol=1e-9)


def _closed_form_round_trip(path, w, pix, atol_world):
    """pixel_to_world by the closed form against wcslib (which it must not
    merely be) and astropy, then world_to_pixel back to the pixels, 1e-9."""
    pt = torch.from_numpy(pix)
    fast = tf.pixel_to_world(path, 0, pt).numpy()
    ref = tf.pixel_to_world(path, 0, pt, wcslib=True).numpy()
    assert not np.array_equal(fast, ref)  # the closed form ran
    np.testing.assert_allclose(fast, ref, rtol=0, atol=atol_world)
    _check_pix2world(path, w, pix)
    wt = torch.from_numpy(ref)
    back = tf.world_to_pixel(path, 0, wt).numpy()
    np.testing.assert_allclose(back, pix, rtol=0, atol=1e-9)
    return wt, back


@pytest.mark.parametrize("order", [2, 3, 5])
def test_sip_closed_form_matches_wcslib(tmp_path, order):
    """TAN-SIP in closed form (the forward polynomial; Newton's method
    back) against wcslib itself and astropy, over and around the image."""
    hdr, nx, ny = _sip_header(2000, 1500)
    for k in list(hdr):
        if k[:2] in ("A_", "B_") and k[2:] != "ORDER":
            p, q = (int(x) for x in k[2:].split("_"))
            if p + q > order:
                del hdr[k]
    hdr["A_ORDER"] = hdr["B_ORDER"] = order
    if order == 5:
        hdr["A_5_0"], hdr["B_1_4"], hdr["A_2_2"] = 3e-16, -2e-16, 1e-15
    hdr["AP_ORDER"], hdr["AP_1_0"] = 1, 1e-7   # inverse terms: used by neither
    path = _write(tmp_path / f"sip{order}.fits", hdr, (8, 8))
    w = _wcs(fits.getheader(path))
    rng = np.random.default_rng(order)
    pix = np.concatenate([_grid(nx, ny), rng.uniform(-300, 2300, (3000, 2))])
    wt, back = _closed_form_round_trip(path, w, pix, 1e-11)
    np.testing.assert_allclose(back, tf.world_to_pixel(path, 0, wt, wcslib=True).numpy(),
                               rtol=0, atol=1e-9)
    _check_world2pix(path, w, wt.numpy())


def _tpv_header(pv, swap=False, cd=True, crval=(35.2, -4.9)):
    """A TPV header written by astropy.wcs (WCS.to_header): CD (or CDELT
    and PC), and the PVi_m given, as {axis: {m: value}}. With the
    longitude second, astropy writes TPD records instead: that header is
    written card by card."""
    if swap:
        h = fits.Header()
        h["CTYPE1"], h["CTYPE2"] = "DEC--TPV", "RA---TPV"
        h["CRVAL1"], h["CRVAL2"] = crval[::-1]
        h["CRPIX1"], h["CRPIX2"] = 1024.5, 2048.5
        h["CD1_1"], h["CD1_2"], h["CD2_1"], h["CD2_2"] = 1.1e-6, -7.3e-5, 7.3e-5, 2.1e-6
        for ax, terms in pv.items():
            for m, v in terms.items():
                h[f"PV{ax}_{m}"] = v
        return h
    w = awcs.WCS(naxis=2)
    w.wcs.ctype = ["RA---TPV", "DEC--TPV"]
    w.wcs.crval = list(crval)
    w.wcs.crpix = [1024.5, 2048.5]
    if cd:
        w.wcs.cd = [[1.1e-6, -7.3e-5], [7.3e-5, 2.1e-6]]
    else:
        w.wcs.cdelt = [-7.3e-5, 8.0e-5]
        c, s = math.cos(0.3), math.sin(0.3)
        w.wcs.pc = [[c, -s], [s, c]]
    w.wcs.set_pv([(ax, m, v) for ax, terms in pv.items() for m, v in terms.items()])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        h = w.to_header()
    assert any(k.startswith("PV1_") for k in h) and h["CTYPE1"].endswith("TPV")
    return h


# Several polynomial orders: first degree only, third with PVi_3 and
# PVi_11 (r and r^3), fifth with some terms only, seventh with r^7.
TPV_CASES = {
    "linear": dict(pv={1: {1: 1.01, 2: 0.01}, 2: {1: 0.99}}),
    "cubic_r": dict(pv={1: {0: 1.2e-4, 1: 1.0003, 2: 1.5e-4, 3: 2e-3, 4: 2.1e-3, 5: -1.7e-3,
                            6: 3.3e-4, 7: -1.1e-2, 8: 2.2e-3, 9: -4.1e-3, 10: 1.3e-3, 11: 5e-3},
                        2: {0: -2.2e-4, 1: 0.9998, 2: -3.1e-4, 3: -1e-3, 4: -1.8e-3, 5: 2.4e-3,
                            6: -3.9e-4, 7: 9.1e-3, 8: -2.9e-3, 9: 3.4e-3, 10: -1.6e-3}}),
    "quintic_some": dict(pv={1: {1: 1.0, 4: 2e-3, 17: 1e-2, 20: -3e-2},
                             2: {1: 1.0, 6: -1e-3, 22: 2e-2, 23: 0.5}}),
    "septic_r7_pc": dict(cd=False, pv={1: {1: 1.0, 4: 1e-5, 3: 1e-4, 31: 1e-24, 39: 2e-25},
                                       2: {1: 1.0, 5: 2e-5, 38: -1e-24, 36: 3e-25}}),
    "swapped_axes": dict(swap=True, pv={1: {1: 1.0, 4: 2e-3, 7: 3e-2},
                                        2: {1: 1.0, 6: -1e-3, 10: 2e-2}}),
}


@pytest.mark.parametrize("case", sorted(TPV_CASES))
def test_tpv_closed_form_matches_wcslib(tmp_path, case):
    """TPV in closed form (the polynomial forward; Newton's method back)
    against wcslib itself (wcslib=True) and astropy, over and around a
    2048x4096 image."""
    path = _write(tmp_path / f"{case}.fits", _tpv_header(**TPV_CASES[case]), (8, 8))
    w = _wcs(fits.getheader(path))
    rng = np.random.default_rng(5)
    pix = np.concatenate([_grid(2048, 4096, 15), rng.uniform(-200, 4300, (3000, 2))])
    wt, back = _closed_form_round_trip(path, w, pix, 1e-12)
    slow = tf.world_to_pixel(path, 0, wt, wcslib=True).numpy()
    ok = np.isfinite(slow).all(1)
    if case == "swapped_axes":
        # wcslib's iteration assumes each axis's polynomial depends mostly on
        # its own axis; TPV's fixed axis map breaks that when the longitude
        # is the second axis, and wcslib (so astropy) returns inf or NaN for
        # many points. The closed form still inverts them.
        assert 0.2 < (~ok).mean() < 0.9
    else:
        assert ok.all()
    np.testing.assert_allclose(back[ok], slow[ok], rtol=0, atol=PIX_TOL)
    _check_world2pix(path, w, wt.numpy()[ok])


def test_tpv_without_a_pixel(tmp_path):
    """A sky position the polynomial never reaches (P = x + x^2 has no value
    below -1/4 degree): Newton's method cannot converge, wcslib takes the
    point over and gives NaN, as astropy does; the other points are
    unaffected, on one thread or two."""
    h = _tpv_header({1: {1: 1.0, 4: 1.0}, 2: {1: 1.0}}, crval=(0.0, 0.0))
    path = _write(tmp_path / "fold.fits", h, (8, 8))
    w = _wcs(fits.getheader(path))
    world = w.all_pix2world(np.random.default_rng(1).uniform(0, 2000, (40_000, 2)), 0)
    world[7] = [359.0, 0.1]   # 1 degree west: nothing maps there
    ref = w.all_world2pix(world, 0)
    assert np.isnan(ref[7]).all() and np.isfinite(np.delete(ref, 7, 0)).all()
    old = tf.set_threads(2)
    try:
        for threads in (1, 2):
            tf.set_threads(threads)
            ours = tf.world_to_pixel(path, 0, torch.from_numpy(world)).numpy()
            assert np.isnan(ours[7]).all()
            np.testing.assert_allclose(np.delete(ours, 7, 0), np.delete(ref, 7, 0), rtol=0,
                                       atol=PIX_TOL)
    finally:
        tf.set_threads(old)


def test_tpd_goes_through_wcslib(tmp_path):
    """The same polynomial as TPD records (astropy writes a TPV with the
    longitude second that way) is not the closed form's: wcslib alone,
    bit for bit."""
    w = awcs.WCS(naxis=2)
    w.wcs.ctype = ["DEC--TPV", "RA---TPV"]
    w.wcs.crval, w.wcs.crpix = [-4.9, 35.2], [1024.5, 2048.5]
    w.wcs.cd = [[1.1e-6, -7.3e-5], [7.3e-5, 2.1e-6]]
    w.wcs.set_pv([(1, 1, 1.0), (1, 4, 2e-3), (2, 1, 1.0), (2, 6, -1e-3)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        h = w.to_header()
    assert h["CQDIS1"] == "TPD"
    path = _write(tmp_path / "tpd.fits", h, (8, 8))
    pt = torch.from_numpy(_grid(2048, 4096, 9))
    world = tf.pixel_to_world(path, 0, pt, wcslib=True)
    assert torch.equal(tf.pixel_to_world(path, 0, pt), world)
    assert torch.equal(tf.world_to_pixel(path, 0, world), tf.world_to_pixel(path, 0, world, wcslib=True))


# ---- sky cutouts against Cutout2D ----

def _image_file(tmp_path, name, dtype=np.float32, compressed=False, nx=61, ny=50, code="TAN"):
    hdr, _, _ = _header(code, cdelt=(-0.01, 0.01), nx=nx, ny=ny)
    rng = np.random.default_rng(4)
    data = (rng.uniform(-1000, 1000, size=(ny, nx))).astype(dtype)
    path = str(tmp_path / name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if compressed:
            fits.HDUList([fits.PrimaryHDU(),
                          fits.CompImageHDU(data=data, header=hdr, compression_type="RICE_1",
                                            tile_shape=(8, 16))]).writeto(path)
        else:
            fits.PrimaryHDU(data=data, header=hdr).writeto(path)
    return path, data, _wcs(hdr)


def _positions(w, nx, ny, n, rng):
    """Sky positions from pixel positions spread over and beyond the image."""
    pix = np.stack([rng.uniform(-6, nx + 5, n), rng.uniform(-6, ny + 5, n)], axis=1)
    pix[:6] = [[0, 0], [nx - 1, ny - 1], [-0.5, 3.5], [nx - 0.5, 10], [20.5, 20.5], [7, -0.49]]
    return w.all_pix2world(pix, 0)


@pytest.mark.parametrize("kind", ["float", "int", "compressed"])
def test_sky_cutout_matches_cutout2d(tmp_path, kind):
    from astropy.coordinates import SkyCoord
    from astropy.nddata import Cutout2D
    from astropy.nddata.utils import NoOverlapError, PartialOverlapError

    nx, ny = 61, 50
    dtype = np.int32 if kind == "int" else np.float32
    path, data, w = _image_file(tmp_path, f"{kind}.fits", dtype=dtype,
                                compressed=kind == "compressed", nx=nx, ny=ny)
    hdu = 1 if kind == "compressed" else 0
    if kind == "compressed":
        data = fits.getdata(path, 1)  # the quantised values
    fill = 0 if kind == "int" else np.nan
    rng = np.random.default_rng(5)
    shapes = [(1, 1), (2, 2), (3, 3), (4, 7), (7, 4), (10, 11), (16, 16), (5, 64)]
    checked = partial = 0
    for ra, dec in _positions(w, nx, ny, 60, rng):
        for shape in shapes:
            pos = SkyCoord(ra, dec, unit="deg", frame="icrs")
            for mode in ("partial", "strict"):
                try:
                    ref = Cutout2D(data, pos, shape, wcs=w, mode=mode, fill_value=fill)
                except (NoOverlapError, PartialOverlapError):
                    with pytest.raises(ValueError):
                        tf.read_sky_cutout(path, hdu, ra, dec, shape, mode=mode)
                    continue
                if any(sl.stop <= sl.start for sl in ref.slices_original):
                    # Older astropy (5.2) returns an all-fill cutout when
                    # the region ends exactly at the image's first pixel;
                    # astropy 8 (and we) raise NoOverlapError.
                    with pytest.raises(ValueError, match="overlap"):
                        tf.read_sky_cutout(path, hdu, ra, dec, shape, mode=mode)
                    continue
                out, mask = tf.read_sky_cutout(path, hdu, ra, dec, shape, mode=mode, return_mask=True)
                np.testing.assert_array_equal(out.numpy(), ref.data)
                assert out.dtype == torch.from_numpy(ref.data).dtype
                sl = ref.slices_cutout
                expect = np.zeros(shape, bool)
                expect[sl] = True
                np.testing.assert_array_equal(mask.numpy(), expect)
                checked += 1
                partial += not expect.all()
    assert checked > 300 and partial > 50


def test_sky_cutout_fill_and_errors(tmp_path):
    path, data, w = _image_file(tmp_path, "f.fits")
    ra, dec = w.all_pix2world([[0.3, 0.2]], 0)[0]
    out = tf.read_sky_cutout(path, 0, ra, dec, 4, fill=-5.0)
    # Cutout2D's rule: the first row is ceil(0.2 - 4/2) = -1, one row of fill.
    assert out.shape == (4, 4) and (out[:1] == -5).all() and (out[:, :1] == -5).all()
    assert (out[1:, 1:] != -5).all()
    with pytest.raises(ValueError, match="strict"):
        tf.read_sky_cutout(path, 0, ra, dec, 4, mode="strict")
    with pytest.raises(ValueError, match="mode"):
        tf.read_sky_cutout(path, 0, ra, dec, 4, mode="trim")
    ra, dec = w.all_pix2world([[500.0, 500.0]], 0)[0]
    with pytest.raises(ValueError, match="overlap"):
        tf.read_sky_cutout(path, 0, ra, dec, 4)


# ---- the catalogue Dataset ----

def test_sky_cutout_dataset(tmp_path):
    from astropy.coordinates import SkyCoord
    from astropy.nddata import Cutout2D
    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler
    from torchfits_ops.data import SkyCutoutDataset

    rng = np.random.default_rng(7)
    bands, wcses, datas = [], [], []
    for b, (dtype, compressed) in enumerate([(np.float32, False), (np.int16, True)]):
        paths, ws, ds = [], [], []
        for k, crval in enumerate([(150.0, 20.0), (150.25, 20.1)]):
            w = awcs.WCS(naxis=2)
            w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
            w.wcs.crval = list(crval)
            w.wcs.crpix = [30.5 + b, 25.0 - k]
            w.wcs.cdelt = [-0.005, 0.005]
            data = rng.uniform(-100, 100, (52, 61)).astype(dtype)
            path = str(tmp_path / f"b{b}_{k}.fits")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if compressed:
                    fits.HDUList([fits.PrimaryHDU(),
                                  fits.CompImageHDU(data=data, header=w.to_header(),
                                                    compression_type="RICE_1",
                                                    tile_shape=(8, 16))]).writeto(path)
                else:
                    fits.PrimaryHDU(data=data, header=w.to_header()).writeto(path)
            paths.append(path)
            ws.append(w)
            ds.append(fits.getdata(path, 1 if compressed else 0))
        bands.append(paths)
        wcses.append(ws)
        datas.append(ds)
    pix = np.stack([rng.uniform(-20, 110, 80), rng.uniform(-15, 60, 80)], axis=1)
    ra, dec = wcses[0][0].all_pix2world(pix, 0).T
    cache = tmp_path / "index.pt"
    ds = SkyCutoutDataset(ra, dec, {"g": bands[0], "r": bands[1]}, (9, 8), hdu=[0, 1],
                          cache=cache)
    assert cache.exists()
    again = SkyCutoutDataset(ra, dec, {"g": bands[0], "r": bands[1]}, (9, 8), hdu=[0, 1],
                          cache=cache)
    assert torch.equal(again.index["image"], ds.index["image"])
    n_cov = 0
    for i in range(len(ds)):
        x, cov = ds[i]
        assert x.shape == (2, 9, 8) and x.dtype == torch.float32
        for b in range(2):
            # The policy, by astropy: the image where the source is
            # farthest from an edge.
            best, best_m = -1, 0.0
            for k, w in enumerate(wcses[b]):
                px, py = w.all_world2pix([[ra[i], dec[i]]], 0, tolerance=1e-12)[0]
                m = min(px + 0.5, 61 - 0.5 - px, py + 0.5, 52 - 0.5 - py)
                if m > best_m:
                    best, best_m = k, m
            assert bool(cov[b]) == (best >= 0)
            if best < 0:
                assert torch.isnan(x[b]).all()
                continue
            n_cov += 1
            ref = Cutout2D(datas[b][best].astype(np.float32), SkyCoord(ra[i], dec[i], unit="deg"),
                           (9, 8), wcs=wcses[b][best], mode="partial", fill_value=np.nan)
            np.testing.assert_array_equal(x[b].numpy(), ref.data)
    assert 40 < n_cov < 160
    loader = DataLoader(ds, batch_size=16, num_workers=2)
    xs = torch.cat([x for x, _ in loader])
    assert xs.shape == (80, 2, 9, 8)
    torch.testing.assert_close(xs[5], ds[5][0], equal_nan=True)
    sampler = DistributedSampler(ds, num_replicas=2, rank=1, shuffle=False)
    got = [i for i in sampler]
    assert len(got) == 40


# ---- many cutouts in one call (read_cutouts) and the batched Dataset ----

def _ref_cutout(data, y, x, ny, nx, fill):
    """The cutout with first pixel (y, x), `fill` outside: by hand."""
    out = np.full((ny, nx), fill, dtype=np.float64)
    for r in range(ny):
        for c in range(nx):
            if 0 <= y + r < data.shape[0] and 0 <= x + c < data.shape[1]:
                out[r, c] = data[y + r, x + c]
    return out


def _cutout_files(tmp_path):
    rng = np.random.default_rng(9)
    files, datas, hdus = [], [], []
    a = rng.uniform(-50, 50, (40, 33)).astype(np.float32)
    files.append(_write(tmp_path / "f32.fits", fits.Header(), data=a))
    datas.append(a.astype(np.float64)); hdus.append(0)
    b = rng.integers(-3000, 3000, (25, 47)).astype(np.int16)
    h = fits.Header()
    h["BSCALE"], h["BZERO"] = 0.5, 100.0
    p = str(tmp_path / "i16.fits")
    fits.PrimaryHDU(data=b, header=h).writeto(p)
    files.append(p); datas.append(fits.getdata(p).astype(np.float64)); hdus.append(0)
    c = rng.uniform(-5, 5, (64, 48)).astype(np.float32)
    p = str(tmp_path / "rice.fits")
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data=c, compression_type="RICE_1",
                                                       tile_shape=(8, 16))]).writeto(p)
    files.append(p); datas.append(fits.getdata(p, 1).astype(np.float64)); hdus.append(1)
    return files, datas, hdus


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_read_cutouts_against_numpy(tmp_path, dtype):
    files, datas, hdus = _cutout_files(tmp_path)
    rng = np.random.default_rng(1)
    ny, nx = 7, 9
    items = []
    for _ in range(300):
        f = int(rng.integers(-1, 3))
        h, w = datas[f].shape if f >= 0 else (10, 10)
        items.append([f, int(rng.integers(-ny - 2, h + 2)), int(rng.integers(-nx - 2, w + 2))])
    items[:3] = [[0, 0, 0], [1, -ny, 3], [2, 64 - ny, 48 - nx]]  # inside; just outside; corner
    it = torch.tensor(items, dtype=torch.int64)
    for threads in (1, 3):
        out = torch.ops.torchfits.read_cutouts(files, hdus, it, [ny, nx], -7.5, dtype, threads)
        assert out.shape == (300, ny, nx) and out.dtype == dtype
        for k, (f, y, x) in enumerate(items):
            ref = (np.full((ny, nx), -7.5) if f < 0 else _ref_cutout(datas[f], y, x, ny, nx, -7.5))
            np.testing.assert_array_equal(out[k].numpy(), ref.astype(dtype_np(dtype)))
    nan = torch.ops.torchfits.read_cutouts(files, hdus, it[:2], [ny, nx], math.nan)
    assert nan.dtype == torch.float32 and torch.isnan(nan[1]).all()
    empty = torch.ops.torchfits.read_cutouts([], [], torch.zeros(0, 3, dtype=torch.int64), [2, 2], 0.0)
    assert empty.shape == (0, 2, 2)


def dtype_np(dtype):
    return np.float32 if dtype == torch.float32 else np.float64


def test_read_cutouts_errors(tmp_path):
    files, datas, hdus = _cutout_files(tmp_path)
    it = torch.tensor([[0, 0, 0], [1, 0, 0]], dtype=torch.int64)
    ops = torch.ops.torchfits
    with pytest.raises(ValueError, match="names file 3; there are 3 files"):
        ops.read_cutouts(files, hdus, torch.tensor([[3, 0, 0]]), [4, 4], 0.0)
    with pytest.raises(TypeError, match="items must be int64"):
        ops.read_cutouts(files, hdus, it.float(), [4, 4], 0.0)
    with pytest.raises(ValueError, match=r"items must be \[n, 3\]"):
        ops.read_cutouts(files, hdus, it[:, :2], [4, 4], 0.0)
    with pytest.raises(ValueError, match="3 paths but 2 hdus"):
        ops.read_cutouts(files, hdus[:2], it, [4, 4], 0.0)
    with pytest.raises(ValueError, match="two positive sizes"):
        ops.read_cutouts(files, hdus, it, [0, 4], 0.0)
    with pytest.raises(TypeError, match="float32 or float64"):
        ops.read_cutouts(files, hdus, it, [4, 4], 0.0, torch.int16)
    missing = str(tmp_path / "missing.fits")
    with pytest.raises(FileNotFoundError, match="missing.fits"):
        tf._call(ops.read_cutouts, [files[0], missing], [0, 0], it, [4, 4], 0.0)
    os.mkfifo(tmp_path / "pipe.fits")  # refused at once, never opened for reading
    with pytest.raises(OSError, match="pipe.fits: cannot open file: it is a FIFO"):
        tf._call(ops.read_cutouts, [files[0], str(tmp_path / "pipe.fits")], [0, 0], it, [4, 4], 0.0)
    cube = _write(tmp_path / "cube.fits", fits.Header(), data=np.zeros((2, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"cube.fits.*2-d image, not 3 axes"):
        tf._call(ops.read_cutouts, [cube], [0], it[:1], [4, 4], 0.0)
    with pytest.raises((IndexError, ValueError), match="i16.fits"):
        tf._call(ops.read_cutouts, files, [0, 3, 1], it, [4, 4], 0.0)


def test_sky_cutout_dataset_batches(tmp_path):
    """A DataLoader batch is one read_cutouts call (__getitems__), with
    workers and with a DistributedSampler, and equals the samples read one
    by one."""
    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler
    from torchfits_ops.data import SkyCutoutDataset

    files, datas, hdus = _cutout_files(tmp_path)
    rng = np.random.default_rng(3)
    bands, ws = [], []
    for b in range(2):
        paths = []
        for k in range(2):
            w = awcs.WCS(naxis=2)
            w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
            w.wcs.crval = [150.0 + 0.1 * k, 20.0 + 0.05 * b]
            w.wcs.crpix = [20.0, 16.0]
            w.wcs.cdelt = [-0.004, 0.004]
            paths.append(_write(tmp_path / f"s{b}{k}.fits", w.to_header(),
                                data=rng.uniform(0, 1, (33, 41)).astype(np.float32)))
            ws.append(w)
        bands.append(paths)
    ra, dec = ws[0].all_pix2world(np.stack([rng.uniform(-20, 60, 101), rng.uniform(-20, 50, 101)], 1), 0).T
    ds = SkyCutoutDataset(ra, dec, bands, (6, 5))
    one = [ds[i] for i in range(len(ds))]
    x, cov = ds.read_batch([4, 0, -1, 4])
    assert x.shape == (4, 2, 6, 5) and cov.shape == (4, 2) and cov.dtype == torch.bool
    for k, i in enumerate([4, 0, 100, 4]):
        torch.testing.assert_close(x[k], one[i][0], equal_nan=True, rtol=0, atol=0)
        assert torch.equal(cov[k], one[i][1])
    assert 0 < int(torch.stack([c for _, c in one]).sum()) < 202
    with pytest.raises(IndexError, match="source 101 out of range"):
        ds.read_batch([0, 101])
    items = ds.__getitems__([3, 7])
    assert len(items) == 2 and torch.equal(items[1][1], one[7][1])

    # One op call per batch (counted in the main process: no workers).
    import torchfits_ops
    calls, real = [], torchfits_ops._call

    def counting(op, *args):
        calls.append(op)
        return real(op, *args)

    torchfits_ops._call = counting
    try:
        assert len(list(DataLoader(ds, batch_size=16))) == 7
    finally:
        torchfits_ops._call = real
    assert calls == [torch.ops.torchfits.read_cutouts] * 7

    loader = DataLoader(ds, batch_size=16, num_workers=2)
    got = list(loader)
    assert len(got) == 7
    xs = torch.cat([b[0] for b in got])
    covs = torch.cat([b[1] for b in got])
    torch.testing.assert_close(xs, torch.stack([s[0] for s in one]), equal_nan=True, rtol=0, atol=0)
    assert torch.equal(covs, torch.stack([s[1] for s in one]))
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=5)
        sampler.set_epoch(1)
        order = list(sampler)
        batches = list(DataLoader(ds, batch_size=8, sampler=sampler, num_workers=2))
        xs = torch.cat([b[0] for b in batches])
        torch.testing.assert_close(xs, torch.stack([one[i][0] for i in order]), equal_nan=True,
                                   rtol=0, atol=0)
        seen += order
    assert sorted(set(seen)) == list(range(101))
