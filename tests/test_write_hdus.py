"""Several HDUs in one write (images and tables mixed), append, and the
table options (TSCAL/TZERO/TNULL, variable-length columns), each compared
with astropy and fitsio reading the file."""
import gzip
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from typing import List, Optional

import numpy as np
import pytest
import torch
from astropy.io import fits

import torchfits_ops as tf

fitsio = pytest.importorskip("fitsio")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAS_UINT = hasattr(torch, "uint16")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_write import fitsverify  # noqa: E402


def no_temporaries(d, *keep):
    assert sorted(os.listdir(d)) == sorted(keep)


# ---- several HDUs in one call ----

def test_images_and_tables_mixed(tmp_path):
    img = torch.arange(12, dtype=torch.int16).reshape(3, 4)
    a = torch.arange(5, dtype=torch.float64)
    second = torch.full((2, 2), 7.5, dtype=torch.float32)
    p = tmp_path / "m.fits"
    tf.write(p, [
        img,
        {"a": a, "s": ["x", "yy", "", "zzz", "w"]},
        (second, {"EXTNAME": "SCI"}),
        ({"b": torch.tensor([True, False])}, {"EXTNAME": "FLAGS"}),
        {"columns": {"data": torch.arange(3, dtype=torch.int32)}, "header": {"EXTNAME": "D"},
         "units": {"data": "adu"}},
        {"data": torch.ones(8, 8, dtype=torch.int32), "compress": "RICE_1"},
    ])
    assert tf.num_hdus(p) == 6
    assert torch.equal(tf.read(p, 0), img)
    t1 = tf.read_table(p, 1)
    assert torch.equal(t1["a"], a) and list(t1["s"]) == ["x", "yy", "", "zzz", "w"]
    assert torch.equal(tf.read(p, "SCI"), second)
    assert torch.equal(tf.read_table(p, "FLAGS")["b"], torch.tensor([True, False]))
    assert torch.equal(tf.read_table(p, "D")["data"], torch.arange(3, dtype=torch.int32))
    assert torch.equal(tf.read(p, 5), torch.ones(8, 8, dtype=torch.int32))
    with fits.open(p) as h:
        assert [type(x).__name__ for x in h] == ["PrimaryHDU", "BinTableHDU", "ImageHDU",
                                                 "BinTableHDU", "BinTableHDU", "CompImageHDU"]
        np.testing.assert_array_equal(h[0].data, img.numpy())
        np.testing.assert_array_equal(h[1].data["a"], a.numpy())
        np.testing.assert_array_equal(h["SCI"].data, second.numpy())
        np.testing.assert_array_equal(h["FLAGS"].data["b"], [True, False])
        assert h["D"].header["TUNIT1"] == "adu"
        np.testing.assert_array_equal(h[5].data, np.ones((8, 8), np.int32))
    with fitsio.FITS(str(p)) as f:
        np.testing.assert_array_equal(f[1].read()["a"], a.numpy())
        np.testing.assert_array_equal(f["D"].read()["data"], [0, 1, 2])
    fitsverify(p)


def test_table_first_gets_an_empty_primary(tmp_path):
    p = tmp_path / "t.fits"
    tf.write(p, {"x": torch.arange(4)}, {"EXTNAME": "CAT"})
    with fits.open(p) as h:
        assert h[0].header["NAXIS"] == 0 and h[1].name == "CAT"
        np.testing.assert_array_equal(h[1].data["x"], np.arange(4))


def test_mixed_bad_arguments(tmp_path):
    p = tmp_path / "b.fits"
    with pytest.raises(TypeError, match=r"data\[1\] must be"):
        tf.write(p, [torch.zeros(2), 3])
    with pytest.raises(TypeError, match="column 'a' must be"):
        tf.write(p, [torch.zeros(2), {"a": 3}])
    # A tuple is a list of HDUs: a header dict in it is read as a table's
    # columns, and refused with a pointer to the (data, header) pair.
    with pytest.raises(TypeError, match=r"data\[1\]: column 'EXTNAME'.*\[\(data, header\)\]"):
        tf.write(p, (torch.ones(2), {"EXTNAME": "X"}))
    with pytest.raises(TypeError, match="header given twice"):
        tf.write(p, [({"columns": {"a": torch.zeros(2)}, "header": {"A": 1}}, {"B": 2})])
    with pytest.raises(ValueError, match="reserved"):
        tf.write(p, [torch.zeros(2), ({"a": torch.zeros(2)}, {"TFORM1": "E"})])
    # A cfitsio failure in the last HDU: nothing is written.
    with pytest.raises((ValueError, RuntimeError)):
        tf.write(p, [{"a": torch.zeros(2)},
                     {"data": torch.full((4, 4), -1, dtype=torch.int32), "compress": "PLIO_1"}])
    no_temporaries(tmp_path)


# ---- append ----

def _old_file(path):
    fits.HDUList([fits.PrimaryHDU(np.arange(6, dtype=np.int32).reshape(2, 3)),
                  fits.ImageHDU(np.ones(5, np.float32), name="ONES")]).writeto(path)
    return path.read_bytes()


def test_append_keeps_old_bytes(tmp_path):
    p = tmp_path / "a.fits"
    old = _old_file(p)
    mode = 0o640
    os.chmod(p, mode)
    img = torch.arange(20, dtype=torch.float32).reshape(4, 5)
    n = tf.write(p, img, {"EXTNAME": "NEW"}, append=True)
    b = p.read_bytes()
    assert n == len(b) and b[:len(old)] == old and len(b) > len(old)
    assert os.stat(p).st_mode & 0o777 == mode
    n2 = tf.write_table(p, {"r": torch.arange(3, dtype=torch.int16)}, {"EXTNAME": "T"},
                        append=True)
    b2 = p.read_bytes()
    assert n2 == len(b2) and b2[:len(b)] == b
    assert tf.num_hdus(p) == 4
    assert torch.equal(tf.read(p, "NEW"), img)
    with fits.open(p) as h:
        assert [x.name for x in h] == ["PRIMARY", "ONES", "NEW", "T"]
        assert h[2].header["XTENSION"] == "IMAGE"
        np.testing.assert_array_equal(h["NEW"].data, img.numpy())
        np.testing.assert_array_equal(h["T"].data["r"], [0, 1, 2])
        np.testing.assert_array_equal(h[0].data, np.arange(6).reshape(2, 3))
    with fitsio.FITS(str(p)) as f:
        assert len(f) == 4
        np.testing.assert_array_equal(f["NEW"].read(), img.numpy())
    fitsverify(p)
    no_temporaries(tmp_path, "a.fits")


def test_append_several_and_compressed(tmp_path):
    p = tmp_path / "a.fits"
    old = _old_file(p)
    tf.write(p, [torch.zeros(3, dtype=torch.uint8), {"data": torch.ones(16, 16, dtype=torch.int16),
                                                     "compress": "GZIP_1"}, {"c": torch.ones(2)}],
             append=True)
    assert p.read_bytes()[:len(old)] == old
    with fits.open(p) as h:
        assert len(h) == 5
        np.testing.assert_array_equal(h[3].data, np.ones((16, 16), np.int16))
        np.testing.assert_array_equal(h[4].data["c"], [1.0, 1.0])


def test_append_through_a_symlink_appends_to_its_target(tmp_path):
    p = tmp_path / "real.fits"
    old = _old_file(p)
    link = tmp_path / "link.fits"
    link.symlink_to(p.name)
    tf.write(link, torch.ones(2), append=True)
    assert link.is_symlink() and tf.num_hdus(p) == 3
    assert p.read_bytes()[:len(old)] == old
    no_temporaries(tmp_path, "real.fits", "link.fits")


def test_append_makes_a_missing_file(tmp_path):
    p = tmp_path / "new.fits"
    tf.write(p, torch.ones(2, 2), append=True)
    assert tf.num_hdus(p) == 1 and torch.equal(tf.read(p), torch.ones(2, 2))
    tf.write(p, torch.zeros(3), append=True)
    with fits.open(p) as h:
        assert len(h) == 2 and h[1].header["XTENSION"] == "IMAGE"


def test_append_checksum_only_in_new_hdus(tmp_path):
    p = tmp_path / "c.fits"
    old = _old_file(p)
    tf.write(p, torch.arange(7, dtype=torch.int64), append=True, checksum=True)
    assert p.read_bytes()[:len(old)] == old
    assert tf.verify_checksum(p) == [(None, None), (None, None), (True, True)]
    fitsverify(p)


def test_append_error_names_the_hdu_as_numbered_on_disk(tmp_path):
    p = tmp_path / "e.fits"
    old = _old_file(p)
    tf.write_table(p, {"y": torch.zeros(2)}, append=True)  # HDU 2
    with pytest.raises(ValueError, match=r"HDU 4: column 'x'"):
        tf.write(p, [torch.ones(2), {"columns": {"x": torch.zeros(2, dtype=torch.int16)},
                                     "tnull": {"x": 1 << 20}}], append=True)
    assert tf.num_hdus(p) == 3  # the table appended first, nothing of the failed call
    assert p.read_bytes()[:len(old)] == old
    no_temporaries(tmp_path, "e.fits")


def test_append_refusals_leave_the_file(tmp_path):
    p = tmp_path / "a.fits"
    old = _old_file(p)
    with pytest.raises(ValueError, match="overwrite and append"):
        tf.write(p, torch.ones(2), overwrite=True, append=True)
    # Bytes after the last HDU that are not an HDU.
    q = tmp_path / "tail.fits"
    q.write_bytes(old + b"garbage")
    with pytest.raises(tf.FitsError, match="7 bytes follow its last HDU"):
        tf.write(q, torch.ones(2), append=True)
    assert q.read_bytes() == old + b"garbage"
    # A truncated last HDU.
    r = tmp_path / "cut.fits"
    r.write_bytes(old[:-2880])
    with pytest.raises(tf.FitsError, match="cut.fits.*truncated"):
        tf.write(r, torch.ones(2), append=True)
    assert r.read_bytes() == old[:-2880]
    # gzip: not appended to (the new file could not be gzip as well).
    g = tmp_path / "a.fits.gz"
    g.write_bytes(gzip.compress(old))
    with pytest.raises(NotImplementedError, match="compressed"):
        tf.write(g, torch.ones(2), append=True)
    # Not FITS at all.
    t = tmp_path / "text.fits"
    t.write_bytes(b"hello")
    with pytest.raises(tf.FitsError, match="not a FITS file"):
        tf.write(t, torch.ones(2), append=True)
    assert p.read_bytes() == old and t.read_bytes() == b"hello"
    no_temporaries(tmp_path, "a.fits", "tail.fits", "cut.fits", "a.fits.gz", "text.fits")


_APPEND_CHILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    import torch, torchfits_ops as tf
    t = torch.arange(1536 * 1536, dtype=torch.float32).reshape(1536, 1536)
    print("ready", flush=True)
    tf.write({path!r}, t, {{"EXTNAME": "NEW"}}, append=True)
    print("done", flush=True)
""")


def test_killed_append_leaves_old_or_whole_file(tmp_path):
    """SIGKILL at random moments of a large append, 24 times: the file is
    the old bytes exactly, or the old bytes and the whole new HDU, which
    astropy and fitsio read."""
    p = tmp_path / "k.fits"
    big = np.arange(2048 * 1024, dtype=np.float64).reshape(2048, 1024)
    fits.HDUList([fits.PrimaryHDU(big), fits.ImageHDU(big[:512], name="B")]).writeto(p)
    old = p.read_bytes()
    new = torch.arange(1536 * 1536, dtype=torch.float32).reshape(1536, 1536)
    code = _APPEND_CHILD.format(root=ROOT, path=str(p))
    # How long one append takes here, from "ready" to the end.
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    t0 = time.monotonic()
    assert proc.stdout.readline().strip() == "done"
    span = time.monotonic() - t0
    proc.wait()
    proc.stdout.close()
    whole = p.read_bytes()
    assert whole[:len(old)] == old and len(whole) > len(old)
    rng = random.Random(7)
    outcomes = []
    for _ in range(24):
        p.write_bytes(old)
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, span * 1.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        b = p.read_bytes()
        if b == old:
            outcomes.append("old")
            continue
        assert b == whole, "the file is neither the old one nor the whole new one"
        outcomes.append("new")
        with fits.open(p) as h:
            np.testing.assert_array_equal(h["NEW"].data, new.numpy())
            np.testing.assert_array_equal(h[0].data, big)
        with fitsio.FITS(str(p)) as f:
            np.testing.assert_array_equal(f["NEW"].read(), new.numpy())
    temps = [n for n in os.listdir(tmp_path) if n != "k.fits"]
    assert all(n.startswith(".k.fits.tfw-") for n in temps), temps
    # Some kills landed inside the commit (a temporary stayed) or after it.
    assert len(temps) + outcomes.count("new") >= 1, outcomes
    print("outcomes:", outcomes.count("old"), "old,", outcomes.count("new"), "new,",
          len(temps), "killed while writing the temporary")


# ---- table options ----

def test_tscal_tzero_tnull_round_trip(tmp_path):
    p = tmp_path / "s.fits"
    raw = torch.tensor([1, 2, -3, 99], dtype=torch.int16)
    cols = {"s": raw, "n": torch.tensor([5, -1, 7, -1], dtype=torch.int32),
            "z": torch.tensor([10, 20, 30, 40], dtype=torch.int32),
            "f": torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float32)}
    tnull = {"n": -1}
    if HAS_UINT:
        cols["u"] = torch.tensor([0, 65535, 3, 65535], dtype=torch.int32).to(torch.uint16)
        tnull["u"] = 65535
    tf.write_table(p, cols, tscal={"s": 0.5, "f": 2.0}, tzero={"s": 10.0, "z": 1000.0},
                   tnull=tnull, units={"s": "K"})
    want_s = raw.double() * 0.5 + 10.0
    with fits.open(p) as h:
        hd, d = h[1].header, h[1].data
        assert hd["TSCAL1"] == 0.5 and hd["TZERO1"] == 10.0 and hd["TUNIT1"] == "K"
        assert hd["TNULL2"] == -1 and hd["TZERO3"] == 1000.0 and hd["TSCAL4"] == 2.0
        np.testing.assert_allclose(d["s"], want_s.numpy())
        np.testing.assert_array_equal(d["z"], [1010, 1020, 1030, 1040])
        np.testing.assert_array_equal(d["f"], [2.0, 4.0, 6.0, 8.0])
        if HAS_UINT:
            assert hd["TNULL5"] == 32767 and hd["TZERO5"] == 32768
    # fitsio 1.4.2 misreads integer columns with a TSCAL or TZERO of their
    # own (read_column("s"): [10, 10, nan, 10]), and a whole-table read()
    # of such a table; cfitsio's fits_read_col, which fitsio wraps, reads
    # what astropy reads.
    with fitsio.FITS(str(p)) as f:
        np.testing.assert_array_equal(f[1].read_column("f"), [2.0, 4.0, 6.0, 8.0])
        np.testing.assert_array_equal(f[1].read_column("n"), [5, -1, 7, -1])
    cf = torch.ops.torchfits._read_table_cfitsio(str(p), 1)
    assert cf["s"].tolist() == want_s.tolist()
    assert cf["z"].tolist() == [1010.0, 1020.0, 1030.0, 1040.0]
    ours = tf.read_table(p)
    assert torch.allclose(ours["s"].double(), want_s)
    assert torch.equal(ours["z"].long(), torch.tensor([1010, 1020, 1030, 1040]))
    masks = tf.read_table_nulls(p)
    assert masks["n"].tolist() == [False, True, False, True]
    if HAS_UINT:
        assert masks["u"].tolist() == [False, True, False, True]
    raw_cols = torch.ops.torchfits.read_table(str(p), 1, ["s"])
    assert raw_cols["s"].tolist() == want_s.tolist()  # the op gives values, as the reader does
    fitsverify(p)


def test_stored_values_written_unchanged(tmp_path):
    """TSCAL/TZERO are keywords only: the bytes are the tensor's values."""
    p = tmp_path / "raw.fits"
    raw = torch.tensor([1, 2, 3], dtype=torch.int16)
    tf.write_table(p, {"s": raw}, tscal={"s": 3.0}, tzero={"s": -7.0})
    with fits.open(p, do_not_scale_image_data=True) as h:
        stored = np.frombuffer(h[1].data.tobytes(), dtype=">i2")
    np.testing.assert_array_equal(stored, [1, 2, 3])


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(tscal={"b": 2.0}), ValueError, "numeric columns"),
    (dict(tnull={"f": 1}), ValueError, "TNULL is for integer columns"),
    (dict(tnull={"i": 1 << 20}), ValueError, "outside the column's dtype"),
    (dict(tscal={"i": 0.0}), ValueError, "TSCAL must be finite and not 0"),
    (dict(tscal={"i": float("nan")}), ValueError, "finite number"),
    (dict(tzero={"missing": 1.0}), ValueError, "not given"),
    (dict(tnull={"i": 1.5}), ValueError, "64-bit int"),
    (dict(tscal=[1.0]), TypeError, "dict of column name"),
])
def test_table_option_errors(tmp_path, kwargs, exc, match):
    p = tmp_path / "x.fits"
    cols = {"i": torch.zeros(2, dtype=torch.int16), "f": torch.zeros(2),
            "b": torch.tensor([True, False])}
    with pytest.raises(exc, match=match):
        tf.write_table(p, cols, **kwargs)
    no_temporaries(tmp_path)


@pytest.mark.skipif(not HAS_UINT, reason="torch < 2.3 has no uint16")
def test_tzero_refused_where_fits_fixes_it(tmp_path):
    with pytest.raises(ValueError, match="TZERO FITS fixes"):
        tf.write_table(tmp_path / "u.fits", {"u": torch.zeros(2, dtype=torch.uint16)},
                       tzero={"u": 5.0})


VLA_DTYPES = [torch.uint8, torch.int16, torch.int32, torch.int64, torch.float32, torch.float64]


@pytest.mark.parametrize("dtype", VLA_DTYPES, ids=lambda d: str(d).replace("torch.", ""))
def test_varlen_round_trip(tmp_path, dtype):
    rows = [torch.arange(n, dtype=dtype) * 3 for n in (3, 0, 1, 7, 2)]
    p = tmp_path / "v.fits"
    tf.write_table(p, {"v": rows, "k": torch.arange(5, dtype=torch.int32)})
    ours = tf.read_table(p)
    assert len(ours["v"]) == 5
    for got, want in zip(ours["v"], rows):
        assert got.dtype == dtype and torch.equal(got, want)
    with fits.open(p) as h:
        assert h[1].header["TFORM1"].startswith("1P") and h[1].header["TFORM1"].endswith("(7)")
        for got, want in zip(h[1].data["v"], rows):
            np.testing.assert_array_equal(got, want.numpy())
    with fitsio.FITS(str(p)) as f:
        d = f[1].read(vstorage="object")
        for got, want in zip(d["v"], rows):
            np.testing.assert_array_equal(np.atleast_1d(got)[:len(want)] if len(want) else [],
                                          want.numpy())
    fitsverify(p)


def test_varlen_from_the_ops_read_form(tmp_path):
    """torch.ops.torchfits.read_table gives NAME and NAME.offsets; that dict
    writes back as the same table."""
    src = tmp_path / "src.fits"
    col = fits.Column(name="spec", format="PE()", array=np.array(
        [np.arange(4, dtype=np.float32), np.zeros(0, np.float32), np.ones(2, np.float32)],
        dtype=object))
    fits.BinTableHDU.from_columns([col, fits.Column(name="id", format="J",
                                                    array=np.arange(3))]).writeto(src)
    d = torch.ops.torchfits.read_table(str(src), 1)
    assert set(d) == {"spec", "spec.offsets", "id"}
    p = tmp_path / "back.fits"
    tf.write_table(p, d)
    back = torch.ops.torchfits.read_table(str(p), 1)
    assert set(back) == set(d)
    for k in d:
        assert torch.equal(back[k], d[k]), k
    with fits.open(p) as h:
        np.testing.assert_array_equal(h[1].data["spec"][0], np.arange(4))
        assert len(h[1].data["spec"][1]) == 0


@pytest.mark.parametrize("columns, exc, match", [
    ({"v": torch.arange(3), "v.offsets": torch.tensor([0, 2, 1, 3])}, ValueError,
     "offsets decrease at row 1"),
    ({"v": torch.arange(3), "v.offsets": torch.tensor([0, 1, 2])}, ValueError,
     "offsets end at 2, the values hold 3"),
    ({"v": torch.arange(3), "v.offsets": torch.tensor([1, 2, 3])}, ValueError, r"offsets\[0\] is 1"),
    ({"v": torch.arange(3), "v.offsets": torch.tensor([0, 3], dtype=torch.int32)}, TypeError,
     "int64"),
    ({"v": [torch.arange(2), torch.arange(2.0)]}, TypeError, "one dtype"),
    ({"v": [torch.zeros(2, 2)]}, ValueError, "1-d"),
    ({"v": [torch.zeros(2, dtype=torch.int8)]}, NotImplementedError, "variable-length column holds"),
    ({"v": [torch.ones(2)], "w": torch.ones(3)}, ValueError, "rows"),
])
def test_varlen_errors(tmp_path, columns, exc, match):
    with pytest.raises(exc, match=match):
        tf.write_table(tmp_path / "x.fits", columns)
    no_temporaries(tmp_path)


# ---- verify_checksum through the core's reader ----

def test_verify_checksum_gzip_and_errors(tmp_path):
    p = tmp_path / "c.fits"
    tf.write(p, [torch.ones(3), {"a": torch.arange(2)}], checksum=True)
    g = tmp_path / "c.fits.gz"
    g.write_bytes(gzip.compress(p.read_bytes()))
    assert tf.verify_checksum(g) == [(True, True)] * 2
    t = tmp_path / "t.fits"
    t.write_bytes(b"not fits")
    with pytest.raises(tf.FitsError, match="not a FITS file"):
        tf.verify_checksum(t)
    with pytest.raises(IsADirectoryError, match="directory"):
        tf.verify_checksum(tmp_path)


# ---- TorchScript ----

def test_scripted_write_hdus(tmp_path):
    @torch.jit.script
    def save(path: str, x: torch.Tensor, col: torch.Tensor) -> int:
        images: List[Optional[torch.Tensor]] = [x, None]
        offsets: List[Optional[torch.Tensor]] = [None]
        return torch.ops.torchfits.write_hdus(
            path, ["image", "table"], images, [0, 1], ["EXTNAME"], ["CAT"], [""], ["C"], [0, 1],
            ["c"], [col], offsets, [], [], [], [], [], [], [], [], [], [], [], [], [], False,
            False, False)

    p = tmp_path / "s.fits"
    save(str(p), torch.ones(2, 2), torch.arange(3))
    with fits.open(p) as h:
        np.testing.assert_array_equal(h[0].data, np.ones((2, 2)))
        np.testing.assert_array_equal(h["CAT"].data["c"], [0, 1, 2])
