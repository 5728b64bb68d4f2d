"""The torchfits command, run as users run it: python -m torchfits_ops in a subprocess."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tf(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "torchfits_ops", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from astropy.io import fits

    d = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    sky = rng.normal(100, 5, (128, 96)).astype(np.float32)
    sky[60:64, 40:44] += 5000
    primary = fits.PrimaryHDU()
    primary.header["TELESCOP"] = "EXAMPLE"
    sci = fits.ImageHDU(sky, name="SCI")
    sci.header["EXPTIME"] = (30.0, "seconds")
    comp = fits.CompImageHDU(rng.integers(0, 1000, (64, 64)).astype(np.int16), name="RICE",
                             compression_type="RICE_1")
    table = fits.BinTableHDU.from_columns(
        [fits.Column(name="FLUX", format="E", array=np.arange(10, dtype=np.float32))], name="CAT")
    good = d / "good.fits"
    fits.HDUList([primary, sci, comp, table]).writeto(good)
    other = d / "other.fits"
    h = fits.PrimaryHDU(np.zeros((8, 8), np.int16))
    h.header["EXPTIME"] = 12.5
    h.writeto(other)
    truncated = d / "truncated.fits"
    truncated.write_bytes(good.read_bytes()[:2880 * 3 + 100])
    notfits = d / "notfits.fits"
    notfits.write_text("hello\n" * 1000)
    return {"dir": d, "good": good, "other": other, "truncated": truncated, "notfits": notfits}


def test_help_lists_every_subcommand():
    r = tf("--help")
    assert r.returncode == 0
    for cmd in ("info", "header", "cutout", "verify", "bench", "preview"):
        assert cmd in r.stdout


def test_info(files):
    r = tf("info", files["good"])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"Filename: {files['good']}"
    assert lines[1].split()[:4] == ["No.", "Name", "Ver", "Type"]
    body = "\n".join(lines[2:])
    assert "PRIMARY" in body and "PrimaryHDU" in body
    sci = next(l for l in lines if " SCI " in l)
    assert "ImageHDU" in sci and "(128, 96)" in sci and "float32" in sci
    rice = next(l for l in lines if " RICE " in l)
    assert "CompImageHDU" in rice and "(64, 64)" in rice and "RICE_1" in rice and "int16" in rice
    cat = next(l for l in lines if " CAT " in l)
    assert "BinTableHDU" in cat and "10R x 1C" in cat


def test_info_several_files(files):
    r = tf("info", files["good"], files["other"])
    assert r.returncode == 0
    assert r.stdout.count("Filename:") == 2


def test_header_cards(files):
    r = tf("header", files["good"], "-e", "SCI")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"# HDU 1 in {files['good']}:")
    assert "XTENSION= 'IMAGE   '" in r.stdout and "EXTNAME = 'SCI     '" in r.stdout
    assert "EXPTIME =                 30.0 / seconds" in r.stdout


def test_header_keyword_across_files_as_table(files):
    r = tf("header", "-k", "EXPTIME", "-e", "0", "-t", files["good"], files["other"])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["filename", "hdu", "keyword", "value"]
    assert lines[1].split() == [str(files["good"]), "0", "EXPTIME"]  # not in that HDU: empty
    assert lines[2].split() == [str(files["other"]), "0", "EXPTIME", "12.5"]


def test_header_keyword_every_hdu(files):
    r = tf("header", "-k", "EXTNAME", files["good"])
    assert r.returncode == 0
    assert "'SCI     '" in r.stdout and "'CAT     '" in r.stdout and r.stdout.count("# HDU") == 4


@pytest.mark.parametrize("ext", ["npy", "pt", "png"])
def test_cutout(files, tmp_path, ext):
    out = tmp_path / f"stamp.{ext}"
    r = tf("cutout", files["good"], "58:66,38:46", "-e", "SCI", "-o", out)
    assert r.returncode == 0, r.stderr
    assert "(8, 8) float32" in r.stdout
    import torchfits_ops

    want = torchfits_ops.read_cutout(files["good"], "SCI", (58, 38), (8, 8))
    if ext == "npy":
        assert torch.equal(torch.from_numpy(np.load(out)), want)
    elif ext == "pt":
        assert torch.equal(torch.load(out), want)
    else:
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cutout_steps_and_default_hdu(files, tmp_path):
    out = tmp_path / "every4.npy"
    r = tf("cutout", files["good"], "::4,::4", "-o", out)  # the first image with data: SCI
    assert r.returncode == 0, r.stderr
    assert np.load(out).shape == (32, 24)


def test_cutout_fits_needs_a_writer(files, tmp_path):
    import torchfits_ops

    r = tf("cutout", files["good"], "0:8,0:8", "-e", "SCI", "-o", tmp_path / "s.fits")
    if hasattr(torchfits_ops, "write"):
        assert r.returncode == 0, r.stderr
    else:
        assert r.returncode == 1
        assert "torchfits_ops.write" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_cutout_at_a_sky_position_is_cutout2d(tmp_path):
    from astropy.io import fits
    from astropy.nddata import Cutout2D
    from astropy.wcs import WCS

    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [50.5, 40.5]
    w.wcs.cdelt = [-0.001, 0.001]
    data = np.random.default_rng(3).normal(size=(80, 100)).astype(np.float32)
    path = tmp_path / "sky.fits"
    fits.PrimaryHDU(data, header=w.to_header()).writeto(path)
    ra, dec = 150.0123, 1.9871  # about pixel (38.3, 27.6)
    out = tmp_path / "stamp.npy"
    r = tf("cutout", path, "--sky", ra, dec, "--size", "11x16", "-o", out)
    assert r.returncode == 0, r.stderr
    x, y = w.all_world2pix([[ra, dec]], 0)[0]
    want = Cutout2D(data, (x, y), (11, 16), wcs=w, mode="partial").data
    got = np.load(out)
    assert got.shape == (11, 16) and np.array_equal(got, want)
    # Near the edge: padded with NaN, or refused with --strict.
    ra0, dec0 = w.all_pix2world([[1.0, 1.0]], 0)[0]
    r = tf("cutout", path, "--sky", ra0, dec0, "--size", "8", "-o", out)
    assert r.returncode == 0, r.stderr
    x0, y0 = w.all_world2pix([[ra0, dec0]], 0)[0]
    want = Cutout2D(data, (x0, y0), (8, 8), wcs=w, mode="partial").data
    got = np.load(out)
    assert 0 < np.isnan(got).sum() < 64
    assert np.array_equal(got, want, equal_nan=True)
    r = tf("cutout", path, "--sky", ra0, dec0, "--size", "8", "--strict", "-o", out)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    r = tf("cutout", path, "--sky", ra, dec, "-o", out)
    assert r.returncode == 1 and "--size" in r.stderr
    r = tf("cutout", path, "0:4,0:4", "--sky", ra, dec, "--size", "4", "-o", out)
    assert r.returncode == 1 and "not both" in r.stderr


def test_cutout_bad_region(files, tmp_path):
    r = tf("cutout", files["good"], "0:8", "-e", "SCI", "-o", tmp_path / "x.npy")
    assert r.returncode == 1
    assert "2 axes" in r.stderr or "axes" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = tf("cutout", files["good"], "200:300,0:8", "-e", "SCI", "-o", tmp_path / "x.npy")
    assert r.returncode == 1 and "Traceback" not in r.stderr


def test_verify(files):
    r = tf("verify", files["good"], files["other"], files["truncated"], files["notfits"])
    assert r.returncode == 1
    out = r.stdout
    assert f"BAD  {files['truncated']}:" in out and f"BAD  {files['notfits']}:" in out
    assert str(files["good"]) not in out.replace(str(files["good"]) + ":", "")  # good files not listed
    assert "4 files checked" in out and "2 ok, 2 bad" in out
    assert "Traceback" not in r.stderr


def test_verify_all_good(files):
    r = tf("verify", "--progress", files["good"], files["other"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 ok, 0 bad" in r.stdout


def test_verify_checksums(tmp_path):
    import torch
    import torchfits_ops

    good, bad = tmp_path / "sum.fits", tmp_path / "flipped.fits"
    torchfits_ops.write(good, torch.arange(2000, dtype=torch.int16).reshape(40, 50), checksum=True)
    blob = bytearray(good.read_bytes())
    blob[2880 + 100] ^= 1  # one bit of the data
    bad.write_bytes(bytes(blob))
    r = tf("verify", good, bad)
    assert r.returncode == 1
    assert f"BAD  {bad}: HDU 0: DATASUM does not match; HDU 0: CHECKSUM does not match" in r.stdout
    assert "2 files checked (structure and data, CHECKSUM/DATASUM): 1 ok, 1 bad" in r.stdout


def test_bench(files):
    r = tf("bench", files["good"], "-e", "SCI", "-n", "3")
    assert r.returncode == 0, r.stderr
    assert "torchfits" in r.stdout and " ms" in r.stdout
    r = tf("bench", "-n", "2", "--size", "128")
    assert r.returncode == 0, r.stderr
    assert "(128, 128) float32" in r.stdout


@pytest.mark.parametrize("stretch", ["asinh", "zscale"])
def test_preview(files, tmp_path, stretch):
    out = tmp_path / f"preview-{stretch}.png"
    r = tf("preview", files["good"], "-e", "SCI", "--stretch", stretch, "-o", out)
    assert r.returncode == 0, r.stderr
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    img = matplotlib.image.imread(str(out))
    assert img.shape[:2] == (128, 96)
    assert img[..., 0].std() > 0.01  # not a flat image


def test_errors_are_one_line(files, tmp_path):
    for args in (["info", tmp_path / "missing.fits"],
                 ["info", files["notfits"]],
                 ["header", files["good"], "-e", "NOPE"],
                 ["header", files["good"], "-e", "9"],
                 ["preview", files["good"], "-e", "CAT", "-o", tmp_path / "x.png"],
                 ["cutout", files["good"], "0:4,0:4", "-e", "SCI", "-o", tmp_path / "x.bmp"]):
        r = tf(*args)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("torchfits: error: "), (args, r.stderr)


def test_debug_shows_the_traceback(tmp_path):
    r = tf("--debug", "info", tmp_path / "missing.fits")
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_usage_error_exits_2():
    r = tf("cutout")
    assert r.returncode == 2 and "usage:" in r.stderr
