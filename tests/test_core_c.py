"""Builds the C unit tests of the core (tests/c/test_core.c) with the core's
sources and runs them: once optimised, once under AddressSanitizer and
UndefinedBehaviorSanitizer (leak checking included)."""
import glob
import os
import shutil
import subprocess

import numpy as np
import pytest
from astropy.io import fits

from fitsgen import write_astropy, write_multi_extension

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CC = shutil.which("cc") or shutil.which("gcc")


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    d = tmp_path_factory.mktemp("core")
    img = write_astropy(d / "img16.fits", (np.arange(1200) - 600).astype(">i2").reshape(30, 40))
    hdu = fits.PrimaryHDU(np.arange(12, dtype=">i2").reshape(3, 4))
    hdu.header["BSCALE"] = 0.5
    hdu.header["BZERO"] = 10.0
    hdu.header["BLANK"] = -32768
    hdu.data[0, 0] = -32768
    hdu.writeto(d / "scaled.fits")
    (d / "trunc.fits").write_bytes(open(img, "rb").read()[:2880 + 1000])
    write_multi_extension(d / "mef.fits")
    return str(d)


def build(out, flags):
    sources = sorted(glob.glob(os.path.join(ROOT, "csrc/core/**/*.c"), recursive=True))
    cmd = [CC, "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter", *flags,
           os.path.join(ROOT, "tests/c/test_core.c"), *sources, "-o", out,
           "-lwcs", "-lcfitsio", "-lcurl", "-ldeflate", "-lz", "-lpthread", "-lm"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return out


@pytest.mark.parametrize("mode", ["O2", "asan-ubsan"])
def test_core_unit_tests(tmp_path, fixtures, mode):
    if CC is None:
        pytest.skip("no C compiler")
    flags = ["-O2"] if mode == "O2" else [
        "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
        "-fno-omit-frame-pointer"]
    exe = build(str(tmp_path / f"test_core_{mode}"), flags)
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
               UBSAN_OPTIONS="print_stacktrace=1")
    res = subprocess.run([exe, fixtures], capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip().endswith("0 failed"), res.stdout
    assert "ERROR: AddressSanitizer" not in res.stderr and "runtime error" not in res.stderr


# The core's own decoders and encoder, each tested against cfitsio by a C
# program of its own (which prints "N passed, M failed"), plain and under
# ASan/UBSan.
DECODERS = {
    # tests/c/test_rice.c: RICE_1 equals cfitsio's on streams cfitsio
    # wrote, and fails cleanly on cut and random ones.
    "rice": ("csrc/core/compress/rice.c", 6000),
    # tests/c/test_hcompress.c: HCOMPRESS_1 equals fits_hdecompress /
    # fits_hdecompress64 on streams cfitsio wrote (lossless, lossy,
    # smoothed), and fails cleanly on cut, damaged and random ones.
    "hcompress": ("csrc/core/compress/hcompress.c", 8000),
    # tests/c/test_hcompress_enc.c: the reentrant HCOMPRESS_1 encoder
    # writes fits_hcompress / fits_hcompress64's bytes (lossless and lossy,
    # 1 x 1 to 300 x 300, fixed and random shapes), fails cleanly on short
    # buffers (ASan: no byte past them), and gives the same bytes from 8
    # threads at once.
    "hcompress_enc": ("csrc/core/write/hcompress_enc.c", 85000),
    # tests/c/test_quantize.c: the float quantizer gives fits_quantize_float's
    # integers, ZSCALE and ZZERO bit for bit (noise, sources, counts,
    # constants, nulls, infinities; every level and dither method), or
    # hands the tile back to cfitsio where it says it does.
    "quantize": ("csrc/core/write/quantize.c", 20000),
}


@pytest.mark.parametrize("mode", ["O2", "asan-ubsan"])
@pytest.mark.parametrize("decoder", sorted(DECODERS))
def test_decoder_against_cfitsio(tmp_path, decoder, mode):
    if CC is None:
        pytest.skip("no C compiler")
    source, least = DECODERS[decoder]
    flags = ["-O2"] if mode == "O2" else [
        "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
        "-fno-omit-frame-pointer"]
    exe = str(tmp_path / f"test_{decoder}_{mode}")
    cmd = [CC, "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter", *flags,
           os.path.join(ROOT, f"tests/c/test_{decoder}.c"), os.path.join(ROOT, source),
           "-o", exe, "-lcfitsio", "-lz", "-lpthread", "-lm"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    res = subprocess.run([exe], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, ASAN_OPTIONS="detect_leaks=1"))
    assert res.returncode == 0, res.stdout + res.stderr
    passed, failed = res.stdout.split(" passed, ")
    assert int(passed) > least and failed.strip() == "0 failed", res.stdout
    assert "ERROR: AddressSanitizer" not in res.stderr and "runtime error" not in res.stderr
