"""Writing (issue 19): images, headers, tables, tile compression and
checksums written by torchfits, read back by torchfits, astropy and fitsio,
and checked by fitsverify; bad arguments, overwrite and atomic writes."""
import os
import shutil
import subprocess
import sys
import textwrap
from typing import List, Optional

import numpy as np
import pytest
import torch
from astropy.io import fits

import torchfits_ops as tf

fitsio = pytest.importorskip("fitsio")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAS_UINT = hasattr(torch, "uint16")
FITSVERIFY = shutil.which("fitsverify")

DTYPES = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float32,
          torch.float64]
if HAS_UINT:
    DTYPES += [torch.uint16, torch.uint32, torch.uint64]
# What our reader returns for each where it is not the dtype written: a
# reader without uint64 reads BZERO 2**63 images as float64 (its raw bits
# are checked then); one with it gives uint64 back.
READ_BACK = {d: d for d in DTYPES}
if HAS_UINT:
    READ_BACK[torch.uint64] = torch.float64
NP = {torch.uint8: np.uint8, torch.int8: np.int8, torch.int16: np.int16, torch.int32: np.int32,
      torch.int64: np.int64, torch.float32: np.float32, torch.float64: np.float64}
if HAS_UINT:
    NP.update({torch.uint16: np.uint16, torch.uint32: np.uint32, torch.uint64: np.uint64})
SHAPES = [(7,), (5, 3), (2, 3, 4), (2, 1, 3, 5)]


def sample(dtype, shape, seed=0):
    g = np.random.default_rng(seed)
    npd = NP[dtype]
    if np.issubdtype(npd, np.integer):
        info = np.iinfo(npd)
        a = g.integers(info.min, info.max, size=shape, dtype=npd, endpoint=True)
        a.flat[0] = info.min
        a.flat[-1] = info.max
    else:
        a = g.standard_normal(shape).astype(npd) * 1e3
    return a


def to_torch(a, dtype):
    if a.dtype in (np.uint16, np.uint32, np.uint64):
        return torch.from_numpy(a.view({2: np.int16, 4: np.int32, 8: np.int64}[a.itemsize])).view(dtype)
    return torch.from_numpy(a)


def as_np(t):
    if HAS_UINT and t.dtype in (torch.uint16, torch.uint32, torch.uint64):
        npd = {torch.uint16: np.uint16, torch.uint32: np.uint32, torch.uint64: np.uint64}[t.dtype]
        signed = {torch.uint16: torch.int16, torch.uint32: torch.int32, torch.uint64: torch.int64}[t.dtype]
        return t.view(signed).numpy().view(npd)
    return t.numpy()


def fitsverify(path):
    if not FITSVERIFY:
        pytest.skip("fitsverify is not installed (apt-get install fitsverify)")
    out = subprocess.run([FITSVERIFY, str(path)], capture_output=True, text=True).stdout
    assert "**** Verification found 0 warning(s) and 0 error(s). ****" in out, out


# ---- images ----

@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_image_round_trip(tmp_path, dtype, shape):
    a = sample(dtype, shape)
    t = to_torch(a, dtype)
    p = tmp_path / "a.fits"
    n = tf.write(p, t, {"OBJECT": "M31"})
    assert n == os.path.getsize(p) and n % 2880 == 0
    back = tf.read(p)
    assert tuple(back.shape) == shape
    if back.dtype == dtype:
        assert torch.equal(back, t)
    else:  # uint64 read as float64 by a reader without torch.uint64 reads:
        # stored int64 with BZERO 2**63; the raw bits are the value's
        assert back.dtype == READ_BACK[dtype]
        raw = tf.read(p, raw=True)
        assert np.array_equal(raw.numpy().view(np.uint64) ^ np.uint64(1 << 63), a)
    with fits.open(p) as h:
        assert h[0].data.dtype == a.dtype.newbyteorder(">") or h[0].data.dtype == a.dtype
        np.testing.assert_array_equal(h[0].data, a)
        assert h[0].header["OBJECT"] == "M31"
    if HAS_UINT and dtype == torch.uint64:
        # fitsio 1.4 reads BZERO 2**63 images as int64 and overflows
        # (status 412); astropy reads them as uint64, above.
        fitsverify(p)
        return
    f = fitsio.read(str(p))
    assert f.dtype.kind == a.dtype.kind and f.dtype.itemsize == a.dtype.itemsize
    np.testing.assert_array_equal(f, a)
    fitsverify(p)


def test_non_contiguous_and_grad(tmp_path):
    base = torch.arange(60, dtype=torch.float32).reshape(6, 10)
    t = base.t()[::2]
    assert not t.is_contiguous()
    p = tmp_path / "nc.fits"
    tf.write(p, t.requires_grad_(False))
    assert torch.equal(tf.read(p), t.contiguous())
    g = torch.ones(3, 4, requires_grad=True)
    tf.write(tmp_path / "g.fits", g * 2)
    assert torch.equal(tf.read(tmp_path / "g.fits"), torch.full((3, 4), 2.0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_tensor(tmp_path):
    t = torch.arange(12, dtype=torch.int16, device="cuda").reshape(3, 4)
    tf.write(tmp_path / "c.fits", t)
    assert torch.equal(tf.read(tmp_path / "c.fits"), t.cpu())


def test_meta_device_is_refused(tmp_path):
    p = tmp_path / "m.fits"
    with pytest.raises((RuntimeError, NotImplementedError, ValueError)):
        tf.write(p, torch.empty(3, 4, device="meta"))
    assert not p.exists()


def test_empty_primary(tmp_path):
    p = tmp_path / "e.fits"
    tf.write(p, None, {"TELESCOP": "X"})
    with fits.open(p) as h:
        assert len(h) == 1 and h[0].header["NAXIS"] == 0 and h[0].data is None
        assert h[0].header["TELESCOP"] == "X"
    assert tf.info(p)[0].shape == () or tuple(tf.info(p)[0].shape) == ()
    fitsverify(p)


def test_several_hdus(tmp_path):
    p = tmp_path / "m.fits"
    a = torch.arange(6, dtype=torch.int32).reshape(2, 3)
    b = torch.linspace(0, 1, 10, dtype=torch.float64)
    tf.write(p, [None, (a, {"EXTNAME": "A"}), {"data": b, "header": [("EXTNAME", "B", "second")]}])
    assert tf.num_hdus(p) == 3
    assert torch.equal(tf.read(p, "A"), a)
    assert torch.equal(tf.read(p, 2), b)
    with fits.open(p) as h:
        assert h[2].header.comments["EXTNAME"] == "second"
        np.testing.assert_array_equal(h["A"].data, a.numpy())
    fitsverify(p)


# ---- headers ----

def test_header_kinds(tmp_path):
    long = ("a long string " * 12).strip()  # FITS does not keep trailing blanks
    hdr = [
        ("STR", "hello", "a string"),
        ("QUOTE", "it's", ""),
        ("INT", 42, "an int"),
        ("BIG", -(2 ** 62), ""),
        ("FLT", 0.1, "a float"),
        ("SMALL", 1.5e-300, ""),
        ("BOOLT", True, ""),
        ("BOOLF", False, ""),
        ("LONGSTR", long, "continued"),
        ("HIERARCH ESO DET CHIP", "CCD1", "hierarch"),
        ("exposure_time_long", 12.5, ""),
        ("COMMENT", "first comment", ""),
        ("COMMENT", ["second", "third"], ""),
        ("HISTORY", "made by torchfits", ""),
        ("", "a blank-keyword card", ""),
        ("lower", 1, ""),
    ]
    p = tmp_path / "h.fits"
    tf.write(p, torch.zeros(2, 2, dtype=torch.int16), hdr)
    with fits.open(p) as h:
        hd = h[0].header
        assert hd["STR"] == "hello" and hd.comments["STR"] == "a string"
        assert hd["QUOTE"] == "it's"
        assert hd["INT"] == 42 and hd["BIG"] == -(2 ** 62)
        assert hd["FLT"] == 0.1 and hd["SMALL"] == 1.5e-300
        assert hd["BOOLT"] is True and hd["BOOLF"] is False
        assert hd["LONGSTR"] == long
        assert hd["LONGSTRN"] == "OGIP 1.0"
        assert hd["ESO DET CHIP"] == "CCD1"
        assert hd["exposure_time_long"] == 12.5
        assert list(hd["COMMENT"]) == ["first comment", "second", "third"]
        assert list(hd["HISTORY"]) == ["made by torchfits"]
        assert hd["LOWER"] == 1
    ours = tf.read_header(p)
    assert ours["LONGSTR"] == long and ours["INT"] == 42 and ours["ESO DET CHIP"] == "CCD1"
    fh = fitsio.read_header(str(p))
    assert fh["LONGSTR"] == long and fh["FLT"] == 0.1
    fitsverify(p)


def test_undefined_value(tmp_path):
    """None writes a keyword without a value (legal FITS; fitsverify warns
    about any such keyword, so it is not run here)."""
    p = tmp_path / "u.fits"
    tf.write(p, torch.zeros(2), [("UNDEF", None, "no value")])
    with fits.open(p) as h:
        v = h[0].header["UNDEF"]
        assert v is None or isinstance(v, fits.card.Undefined)
        assert h[0].header.comments["UNDEF"] == "no value"


def test_header_dict_with_comments(tmp_path):
    p = tmp_path / "d.fits"
    tf.write(p, torch.zeros(3, dtype=torch.float32), {"A": (1, "one"), "B": "two",
                                                         "HISTORY": ["x", "y"]})
    with fits.open(p) as h:
        assert h[0].header["A"] == 1 and h[0].header.comments["A"] == "one"
        assert h[0].header["B"] == "two"
        assert list(h[0].header["HISTORY"]) == ["x", "y"]


@pytest.mark.parametrize("key", ["SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "EXTEND", "BZERO",
                                 "BSCALE", "PCOUNT", "GCOUNT", "XTENSION", "CHECKSUM", "DATASUM",
                                 "END", "ZIMAGE", "TFORM1", "HIERARCH BSCALE", "naxis2"])
def test_reserved_keys_refused(tmp_path, key):
    p = tmp_path / "r.fits"
    with pytest.raises(ValueError, match="reserved"):
        tf.write(p, torch.zeros(2, dtype=torch.int16), {key: 1})
    assert not p.exists()
    assert os.listdir(tmp_path) == []


def test_blank_refused_on_floats_only(tmp_path):
    with pytest.raises(ValueError, match="BLANK"):
        tf.write(tmp_path / "f.fits", torch.zeros(2), {"BLANK": -1})
    tf.write(tmp_path / "i.fits", torch.zeros(2, dtype=torch.int16), {"BLANK": -1})
    assert fits.getheader(tmp_path / "i.fits")["BLANK"] == -1


@pytest.mark.parametrize("header, match, exc", [
    ({"A": float("nan")}, "not finite", ValueError),
    ({"A": float("inf")}, "not finite", ValueError),
    ({"A": 2 ** 64}, "64-bit", ValueError),
    ({"A": "caf\u00e9"}, "not ASCII", ValueError),
    ({"A": "tab\there"}, "control", ValueError),
    ({"A": 1j}, "complex", TypeError),
    ({"A=B": 1}, "=", ValueError),
    ({"BAD$": 1}, "A-Z", ValueError),
    ({1: 1}, "not a str", TypeError),
    ([("A",)], "not \\(key, value\\)", ValueError),
    ("A=1", "dict or a list", TypeError),
])
def test_bad_headers(tmp_path, header, match, exc):
    p = tmp_path / "b.fits"
    with pytest.raises(exc, match=match):
        tf.write(p, torch.zeros(2), header)
    assert os.listdir(tmp_path) == []


# ---- bad arguments, overwrite, atomicity ----

@pytest.mark.parametrize("kwargs, match, exc", [
    (dict(data=torch.zeros(2, dtype=torch.bool)), "dtype", TypeError),
    (dict(data=torch.zeros(2, dtype=torch.complex64)), "dtype", TypeError),
    (dict(data=torch.tensor(1.0)), "axes", ValueError),
    (dict(data=torch.zeros(0, 3)), "every axis", ValueError),
    (dict(data=torch.zeros(*([1] * 17))), "axes", ValueError),
    (dict(data="x"), "data must be", TypeError),
    (dict(data=[]), "empty list", ValueError),
    (dict(data=[torch.zeros(2)], header={"A": 1}), "header goes with each HDU", TypeError),
    (dict(data=torch.zeros(2, 2), compress="LZMA"), "compress", ValueError),
    (dict(data=torch.zeros(4, 4), compress="RICE_1", tile=[2]), "tile", ValueError),
    (dict(data=torch.zeros(4, 4), compress="RICE_1", tile=[0, 4]), "tile", ValueError),
    (dict(data=torch.zeros(4, 4), compress="RICE_1", tile=[5, 4]), "tile", ValueError),
    (dict(data=torch.zeros(4, 4), compress="RICE_1", dither_seed=0), "dither_seed", ValueError),
    (dict(data=torch.zeros(4, 4), compress="RICE_1", quantize_method="X"), "quantize_method",
     ValueError),
    (dict(data=torch.zeros(4, 4), compress="RICE_1", quantize_level=0.0), "lossless", ValueError),
    (dict(data=torch.zeros(4, dtype=torch.int64), compress="RICE_1"), "64-bit", NotImplementedError),
    (dict(data=torch.zeros(4), compress="HCOMPRESS_1"), "HCOMPRESS_1", ValueError),
    (dict(data=torch.zeros(4), overwrite=1), "overwrite", TypeError),
    (dict(data=torch.zeros(4, 4), tile=[2, 2]), "tile apply only with compress", ValueError),
    (dict(data=torch.zeros(4, 4), quantize_level=2.0), "only with compress", ValueError),
    (dict(data=torch.zeros(4), checksum="yes"), "checksum", TypeError),
])
def test_bad_arguments(tmp_path, kwargs, match, exc):
    p = tmp_path / "x.fits"
    data = kwargs.pop("data")
    with pytest.raises(exc, match=match):
        tf.write(p, data, **kwargs)
    assert os.listdir(tmp_path) == []


def test_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError):
        tf.write(tmp_path / "no" / "such" / "dir.fits", torch.zeros(2))
    d = tmp_path / "adir"
    d.mkdir()
    with pytest.raises(OSError, match="directory"):
        tf.write(d, torch.zeros(2), overwrite=True)
    with pytest.raises(ValueError):
        tf.write("", torch.zeros(2))


def test_overwrite(tmp_path):
    p = tmp_path / "o.fits"
    p.write_bytes(b"precious bytes")
    with pytest.raises(FileExistsError, match="overwrite"):
        tf.write(p, torch.zeros(2))
    assert p.read_bytes() == b"precious bytes"
    assert sorted(os.listdir(tmp_path)) == ["o.fits"]
    tf.write(p, torch.ones(3), overwrite=True)
    assert torch.equal(tf.read(p), torch.ones(3))
    assert sorted(os.listdir(tmp_path)) == ["o.fits"]


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace to see the fsyncs")
def test_sync_fsyncs_only_when_asked(tmp_path):
    """sync=False (the default) makes no fsync; sync=True fsyncs the file
    before the rename and the folder after. Both leave the same bytes."""
    script = textwrap.dedent("""
        import sys, torch, torchfits_ops as tf
        tf.write(sys.argv[1], torch.arange(5000, dtype=torch.float32), overwrite=True,
                 sync=sys.argv[2] == "1")
    """)
    calls = {}
    for sync in ("0", "1"):
        log = tmp_path / f"strace-{sync}.txt"
        r = subprocess.run(["strace", "-f", "-e", "trace=fsync,fdatasync,rename,renameat,"
                            "renameat2,link,linkat", "-o", str(log), sys.executable, "-c", script,
                            str(tmp_path / f"s{sync}.fits"), sync],
                           cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0 and "ptrace" in r.stderr:
            pytest.skip("ptrace is not allowed here")
        assert r.returncode == 0, r.stderr
        calls[sync] = [ln.split(None, 1)[1].split("(")[0] for ln in log.read_text().splitlines()
                       if "(" in ln and "resumed" not in ln and "+++" not in ln]
    assert "fsync" not in calls["0"] and "fdatasync" not in calls["0"]
    assert calls["1"].count("fsync") == 2
    # The file's fsync comes before its rename, the folder's after.
    first = next(i for i, c in enumerate(calls["1"]) if c in ("rename", "renameat", "renameat2",
                                                                "link", "linkat"))
    assert calls["1"][first - 1] == "fsync" and calls["1"][-1] == "fsync"
    assert (tmp_path / "s0.fits").read_bytes() == (tmp_path / "s1.fits").read_bytes()
    with pytest.raises(TypeError, match="sync must be a bool"):
        tf.write(tmp_path / "s2.fits", torch.zeros(2), sync=1)


def test_bytes_and_non_utf8_paths(tmp_path):
    p = os.path.join(os.fsencode(tmp_path), b"caf\xe9.fits")
    tf.write(p, torch.arange(3, dtype=torch.int16))
    assert torch.equal(tf.read(p), torch.arange(3, dtype=torch.int16))
    assert os.listdir(os.fsencode(tmp_path)) == [b"caf\xe9.fits"]
    with pytest.raises(FileExistsError):
        tf.write(os.fsdecode(p), torch.zeros(2))


def test_replace_keeps_open_readers_on_the_old_file(tmp_path):
    """overwrite=True renames a new file into place: a handle open on the
    old file still reads the old data."""
    p = tmp_path / "r.fits"
    tf.write(p, torch.zeros(4, 4))
    with tf.open(p) as f:
        tf.write(p, torch.ones(4, 4), overwrite=True)
        assert torch.equal(f[0].read(), torch.zeros(4, 4))
    assert torch.equal(tf.read(p), torch.ones(4, 4))


def test_mode_follows_umask(tmp_path):
    old = os.umask(0o027)
    try:
        tf.write(tmp_path / "u.fits", torch.zeros(2))
    finally:
        os.umask(old)
    assert (os.stat(tmp_path / "u.fits").st_mode & 0o777) == 0o640


def test_error_mid_file_writes_nothing(tmp_path):
    """The third HDU fails inside cfitsio (PLIO_1 takes no negative
    values): nothing is written, the old file stays."""
    p = tmp_path / "mid.fits"
    p.write_bytes(b"old")
    bad = torch.full((8, 8), -5, dtype=torch.int32)
    with pytest.raises((ValueError, RuntimeError)):
        tf.write(p, [None, torch.zeros(4, 4), {"data": bad, "compress": "PLIO_1"}], overwrite=True)
    assert p.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["mid.fits"]


_FSIZE_CHILD = textwrap.dedent("""
    import os, resource, signal, sys
    sys.path.insert(0, {root!r})
    import torch, torchfits_ops as tf
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    try:
        tf.write({path!r}, torch.ones(1024, 1024), overwrite=True)
    except OSError as e:
        print("OSError", e)
        sys.exit(3)
    sys.exit(0)
""")


def test_size_limit_leaves_old_file(tmp_path):
    """A write that hits RLIMIT_FSIZE (as a full disk would: EFBIG, ENOSPC)
    fails with OSError; the old file is untouched and no temporary stays."""
    p = tmp_path / "big.fits"
    p.write_bytes(b"old contents")
    code = _FSIZE_CHILD.format(root=ROOT, path=str(p))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "File too large" in r.stdout
    assert p.read_bytes() == b"old contents"
    assert sorted(os.listdir(tmp_path)) == ["big.fits"]


_KILL_CHILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    import torch, torchfits_ops as tf
    t = torch.arange(2048 * 2048, dtype=torch.float32).reshape(2048, 2048)
    print("ready", flush=True)
    while True:
        tf.write({path!r}, t, overwrite=True)
""")


def test_killed_writer_never_leaves_a_partial_file(tmp_path):
    """SIGKILL at random moments while the file is rewritten in a loop: the
    target is always a whole, valid file (a temporary may stay behind)."""
    import random
    import signal
    import time
    p = tmp_path / "k.fits"
    t = torch.arange(2048 * 2048, dtype=torch.float32).reshape(2048, 2048)
    tf.write(p, t)
    rng = random.Random(1)
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", _KILL_CHILD.format(root=ROOT, path=str(p))],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        assert torch.equal(tf.read(p), t)
    for name in os.listdir(tmp_path):
        assert name == "k.fits" or name.startswith(".k.fits.tfw-")


# ---- tile compression ----

def _int_image(dtype, shape=(64, 48), seed=3):
    g = np.random.default_rng(seed)
    a = g.integers(0, 200, size=shape).astype(NP[dtype])
    return a


LOSSLESS = [("RICE_1", torch.uint8), ("RICE_1", torch.int16), ("RICE_1", torch.int32),
            ("GZIP_1", torch.int16), ("GZIP_2", torch.int32), ("GZIP_1", torch.uint8),
            ("HCOMPRESS_1", torch.int16), ("HCOMPRESS_1", torch.int32), ("PLIO_1", torch.int16),
            ("PLIO_1", torch.int32), ("RICE_1", torch.int8)]
if HAS_UINT:
    LOSSLESS += [("RICE_1", torch.uint16), ("GZIP_2", torch.uint32)]


@pytest.mark.parametrize("codec, dtype", LOSSLESS,
                         ids=lambda x: x if isinstance(x, str) else str(x).replace("torch.", ""))
def test_lossless_compression(tmp_path, codec, dtype):
    a = _int_image(dtype)
    t = to_torch(a, dtype)
    p = tmp_path / "c.fits"
    tile = [16, 48] if codec != "PLIO_1" else None
    tf.write(p, t, {"OBJECT": "x"}, compress=codec, tile=tile)
    assert tf.info(p)[1].compressed
    back = tf.read(p, 1)
    assert back.dtype == dtype and torch.equal(back, t)
    with fits.open(p) as h:
        assert h[1].header["ZCMPTYPE"] if "ZCMPTYPE" in h[1].header else True
        np.testing.assert_array_equal(h[1].data, a)
        assert h[1].header["OBJECT"] == "x"
    np.testing.assert_array_equal(fitsio.read(str(p), ext=1), a)
    fitsverify(p)


def test_input_not_modified_by_compression(tmp_path):
    t = torch.randn(64, 64)
    keep = t.clone()
    tf.write(tmp_path / "q.fits", t, compress="RICE_1", dither_seed=7)
    assert torch.equal(t, keep)


@pytest.mark.parametrize("codec", ["RICE_1", "GZIP_1", "GZIP_2", "HCOMPRESS_1"])
@pytest.mark.parametrize("method", ["SUBTRACTIVE_DITHER_1", "SUBTRACTIVE_DITHER_2", "NO_DITHER"])
def test_quantized_floats_agree(tmp_path, codec, method):
    if codec == "HCOMPRESS_1" and method == "SUBTRACTIVE_DITHER_2":
        with pytest.raises(ValueError, match="SUBTRACTIVE_DITHER_2"):
            tf.write(tmp_path / "f.fits", torch.ones(8, 8), compress=codec,
                     quantize_method=method)
        assert os.listdir(tmp_path) == []
        return
    g = np.random.default_rng(5)
    a = (g.standard_normal((64, 64)) * 10 + 100).astype(np.float32)
    a[3, 4] = 0.0
    p = tmp_path / "f.fits"
    tf.write(p, torch.from_numpy(a), compress=codec, quantize_level=16.0, quantize_method=method,
             dither_seed=42, tile=[16, 64])
    ours = tf.read(p, 1).numpy()
    with fits.open(p, disable_image_compression=True) as h:
        assert h[1].header["ZQUANTIZ"] == method
        assert method == "NO_DITHER" or h[1].header["ZDITHER0"] == 42
        assert h[1].header["ZCMPTYPE"] == {"RICE_1": "RICE_ONE"}.get(codec, codec) or \
            h[1].header["ZCMPTYPE"] == codec
    with fits.open(p) as h:
        theirs = h[1].data
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(ours, fitsio.read(str(p), ext=1))
    assert np.abs(ours - a).max() < 1.0  # quantized to ~sigma/16
    fitsverify(p)


def test_lossless_float_gzip(tmp_path):
    t = torch.randn(32, 32, dtype=torch.float64)
    p = tmp_path / "l.fits"
    tf.write(p, t, compress="GZIP_2", quantize_level=0.0)
    assert torch.equal(tf.read(p, 1), t)
    np.testing.assert_array_equal(fitsio.read(str(p), ext=1), t.numpy())
    fitsverify(p)


def test_same_quantization_as_fitsio(tmp_path):
    """fitsio (cfitsio) writing with the same parameters and seed quantizes
    to the same values."""
    import inspect
    if "dither_seed" not in inspect.signature(fitsio.FITS.write).parameters:
        pytest.skip(f"fitsio {fitsio.__version__} cannot set the dither seed")
    g = np.random.default_rng(8)
    a = (g.standard_normal((50, 40)) * 3).astype(np.float32)
    ours = tmp_path / "ours.fits"
    theirs = tmp_path / "theirs.fits"
    tf.write(ours, torch.from_numpy(a), compress="RICE_1", quantize_level=8.0, dither_seed=17,
             tile=[10, 40])
    with fitsio.FITS(str(theirs), "rw", clobber=True) as f:
        f.write(a, compress="RICE", qlevel=8.0, tile_dims=[10, 40], dither_seed=17,
                qmethod="SUBTRACTIVE_DITHER_1")
    np.testing.assert_array_equal(tf.read(ours, 1).numpy(), fitsio.read(str(theirs), ext=1))


def test_compressed_several_hdus(tmp_path):
    p = tmp_path / "s.fits"
    a = torch.arange(100, dtype=torch.int16).reshape(10, 10)
    tf.write(p, [None, {"data": a, "compress": "RICE_1", "header": {"EXTNAME": "SCI"}},
                 {"data": a.float(), "compress": "GZIP_2", "quantize_level": 0.0}])
    assert tf.num_hdus(p) == 3
    assert torch.equal(tf.read(p, "SCI"), a)
    assert torch.equal(tf.read(p, 2), a.float())
    fitsverify(p)


# ---- tables ----

def test_table_round_trip(tmp_path):
    n = 5
    cols = {
        "u8": torch.arange(n, dtype=torch.uint8),
        "i8": torch.arange(n, dtype=torch.int8) - 3,
        "i16": torch.arange(n, dtype=torch.int16) * -300,
        "i32": torch.arange(n, dtype=torch.int32) * 100000,
        "i64": torch.arange(n, dtype=torch.int64) * 2 ** 40,
        "f32": torch.linspace(0, 1, n, dtype=torch.float32),
        "f64": torch.linspace(-1, 1, n, dtype=torch.float64),
        "vec": torch.arange(n * 3, dtype=torch.float32).reshape(n, 3),
        "mat": torch.arange(n * 6, dtype=torch.int32).reshape(n, 2, 3),
        "flag": torch.tensor([True, False, True, True, False]),
        "name": ["a", "bb", "ccc", "", "eeeee"],
        "raw": torch.tensor([[65, 66], [67, 68], [69, 70], [71, 72], [73, 74]], dtype=torch.uint8),
    }
    if HAS_UINT:
        cols["u16"] = (torch.arange(n, dtype=torch.int32) * 16000).to(torch.uint16)
        cols["u32"] = (torch.arange(n, dtype=torch.int64) * 1000000000).to(torch.uint32)
    p = tmp_path / "t.fits"
    tf.write_table(p, cols, {"EXTNAME": "CAT", "HISTORY": "made"}, units={"f32": "mag"},
                   strings=["raw"])
    ours = tf.read_table(p, 1)
    for k in ("u8", "i8", "i16", "i32", "i64", "f32", "f64", "vec", "mat", "flag"):
        assert ours[k].dtype == cols[k].dtype, k
        assert torch.equal(ours[k], cols[k]), k
    if HAS_UINT:
        assert torch.equal(ours["u16"], cols["u16"]) and ours["u16"].dtype == torch.uint16
        assert torch.equal(ours["u32"], cols["u32"])
    assert list(ours["name"]) == cols["name"]
    assert list(ours["raw"]) == ["AB", "CD", "EF", "GH", "IJ"]
    with fits.open(p) as h:
        d = h["CAT"].data
        np.testing.assert_array_equal(d["i16"], cols["i16"].numpy())
        np.testing.assert_array_equal(d["mat"], cols["mat"].numpy())
        np.testing.assert_array_equal(d["flag"], cols["flag"].numpy())
        assert list(d["name"]) == cols["name"]
        assert h[1].header["TUNIT6"] == "mag"
        assert h[1].header["TDIM9"] == "(3,2)"
    f = fitsio.read(str(p), ext=1)
    np.testing.assert_array_equal(f["i8"], cols["i8"].numpy())
    np.testing.assert_array_equal(f["vec"], cols["vec"].numpy())
    fitsverify(p)


def test_table_bad_arguments(tmp_path):
    p = tmp_path / "t.fits"
    with pytest.raises(ValueError, match="rows"):
        tf.write_table(p, {"a": torch.zeros(3), "b": torch.zeros(4)})
    with pytest.raises(TypeError, match="column 'a'"):
        tf.write_table(p, {"a": torch.zeros(3, dtype=torch.complex64)})
    with pytest.raises(TypeError, match="column 'a'"):
        tf.write_table(p, {"a": [1, 2]})
    with pytest.raises(ValueError, match="reserved"):
        tf.write_table(p, {"a": torch.zeros(3)}, {"TTYPE1": "x"})
    with pytest.raises(ValueError, match="not ASCII"):
        tf.write_table(p, {"a": ["\u00e9"]})
    assert os.listdir(tmp_path) == []


def test_empty_table(tmp_path):
    p = tmp_path / "e.fits"
    tf.write_table(p, {"a": torch.zeros(0, dtype=torch.float32)})
    with fits.open(p) as h:
        assert len(h[1].data) == 0
    fitsverify(p)


# ---- checksums ----

def test_checksum_written_and_verified(tmp_path):
    p = tmp_path / "c.fits"
    tf.write(p, [torch.arange(10, dtype=torch.int16),
                 {"data": torch.ones(16, 16), "compress": "RICE_1"}], checksum=True)
    assert tf.verify_checksum(p) == [(True, True), (True, True)]
    with fits.open(p, checksum=True) as h:
        assert "CHECKSUM" in h[0].header and "DATASUM" in h[0].header
    fitsverify(p)
    # One flipped data byte: DATASUM and CHECKSUM of HDU 0 no longer match.
    b = bytearray(p.read_bytes())
    b[2880 + 3] ^= 1
    p.write_bytes(bytes(b))
    assert tf.verify_checksum(p)[0] == (False, False)
    assert tf.verify_checksum(p)[1] == (True, True)


def test_verify_files_by_others(tmp_path):
    p = tmp_path / "astropy.fits"
    fits.HDUList([fits.PrimaryHDU(np.arange(10, dtype=np.int32))]).writeto(p, checksum=True)
    assert tf.verify_checksum(p) == [(True, True)]
    q = tmp_path / "plain.fits"
    fits.PrimaryHDU(np.arange(3.0)).writeto(q)
    assert tf.verify_checksum(q) == [(None, None)]
    tf.write_table(tmp_path / "t.fits", {"a": torch.arange(4)}, checksum=True)
    assert tf.verify_checksum(tmp_path / "t.fits") == [(True, True), (True, True)]
    with pytest.raises(FileNotFoundError):
        tf.verify_checksum(tmp_path / "missing.fits")


# ---- TorchScript ----

def test_scripted_write(tmp_path):
    @torch.jit.script
    def save(path: str, x: torch.Tensor) -> int:
        data: List[Optional[torch.Tensor]] = [x * 2]
        return torch.ops.torchfits.write(path, data, [1], ["OBJECT"], ["scripted"], [""], ["C"])

    p = tmp_path / "s.fits"
    x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    assert save(str(p), x) == os.path.getsize(p)
    assert torch.equal(tf.read(p), x * 2)
    assert tf.read_header(p)["OBJECT"] == "scripted"


# ---- DataLoader workers ----

class _WritingDataset(torch.utils.data.Dataset):
    def __init__(self, folder):
        self.folder = folder

    def __len__(self):
        return 6

    def __getitem__(self, i):
        t = torch.full((16, 16), float(i))
        return tf.write(os.path.join(self.folder, f"w{i}.fits"), t, {"INDEX": i})


def test_dataloader_workers_write_distinct_files(tmp_path):
    loader = torch.utils.data.DataLoader(_WritingDataset(str(tmp_path)), batch_size=None,
                                         num_workers=2)
    sizes = list(loader)
    assert len(sizes) == 6
    for i in range(6):
        p = tmp_path / f"w{i}.fits"
        assert torch.equal(tf.read(p), torch.full((16, 16), float(i)))
        assert tf.read_header(p)["INDEX"] == i
    assert sorted(os.listdir(tmp_path)) == sorted(f"w{i}.fits" for i in range(6))
