"""Tables read by torchfits compared with astropy on files astropy and fitsio
wrote: every TFORM code, repeat counts, TDIM, scaling, nulls, strings,
variable-length arrays, ASCII tables, row and column selection, errors."""
import warnings

import numpy as np
import pytest
import torch
from astropy.io import fits

import torchfits_ops as tf
from fitsgen import gzip_file, mixed_table_arrays, write_table_astropy, write_table_fitsio
from unsigned import as_numpy, assert_unsigned

ops = torch.ops.torchfits
N = 37


def astropy_columns(path, hdu=1):
    """Each column as astropy reads it: arrays, or lists of arrays for VLAs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(path) as f:
            data = f[hdu].data
            out = {}
            for n in data.names:
                vla = str(data.columns[n].format).lstrip("0123456789")[:1] in "PQ"
                out[n] = [np.array(x) for x in data[n]] if vla else np.array(data[n])
            return out


def both_paths(path, hdu=1, columns=(), start=0, num=-1):
    fast = ops.read_table(str(path), hdu, list(columns), start, num)
    slow = ops._read_table_cfitsio(str(path), hdu, list(columns), start, num)
    return fast, slow


def assert_numeric(t, expected, dtype):
    assert t.dtype == dtype, (t.dtype, dtype)
    assert tuple(t.shape) == np.shape(expected), (tuple(t.shape), np.shape(expected))
    np.testing.assert_array_equal(as_numpy(t), np.asarray(expected).astype(as_numpy(t).dtype))


@pytest.fixture(scope="module")
def every_tform(tmp_path_factory):
    rng = np.random.default_rng(3)
    cx = (rng.standard_normal((N, 2)) + 1j * rng.standard_normal((N, 2)))
    cols = [
        fits.Column(name="l", format="L", array=rng.random(N) > 0.5),
        fits.Column(name="l3", format="3L", array=rng.random((N, 3)) > 0.5),
        fits.Column(name="x1", format="1X", array=rng.random((N, 1)) > 0.5),
        fits.Column(name="x11", format="11X", array=rng.random((N, 11)) > 0.5),
        fits.Column(name="b", format="B", array=rng.integers(0, 256, N).astype(np.uint8)),
        fits.Column(name="i", format="I", array=rng.integers(-2**15, 2**15, N).astype(np.int16)),
        fits.Column(name="j", format="J", array=rng.integers(-2**31, 2**31, N).astype(np.int32)),
        fits.Column(name="k", format="K", array=rng.integers(-2**62, 2**62, N).astype(np.int64)),
        fits.Column(name="e", format="E", array=rng.standard_normal(N).astype(np.float32)),
        fits.Column(name="d", format="D", unit="deg", array=rng.standard_normal(N)),
        fits.Column(name="c", format="C", array=cx[:, 0].astype(np.complex64)),
        fits.Column(name="m2", format="2M", array=cx),
        fits.Column(name="j3", format="3J", array=rng.integers(-99, 99, (N, 3)).astype(np.int32)),
        fits.Column(name="tdim", format="6E", dim="(3,2)",
                    array=rng.standard_normal((N, 2, 3)).astype(np.float32)),
        fits.Column(name="s", format="8A",
                    array=np.array(["", "a", "ab c", "12345678"] * 10)[:N]),
        fits.Column(name="Mixed_Case", format="D", array=np.arange(N, dtype=float)),
    ]
    return write_table_astropy(tmp_path_factory.mktemp("t") / "every.fits", cols, extname="CAT")


NATIVE = {"l": torch.bool, "l3": torch.bool, "x1": torch.bool, "x11": torch.bool,
          "b": torch.uint8, "i": torch.int16, "j": torch.int32, "k": torch.int64,
          "e": torch.float32, "d": torch.float64, "c": torch.complex64, "m2": torch.complex128,
          "j3": torch.int32, "tdim": torch.float32, "Mixed_Case": torch.float64}


def test_every_tform_matches_astropy(every_tform):
    expected = astropy_columns(every_tform)
    fast, slow = both_paths(every_tform)
    for name, dtype in NATIVE.items():
        assert_numeric(fast[name], expected[name], dtype)
        assert torch.equal(fast[name], slow[name]), name
    assert fast["s"].dtype == torch.uint8 and tuple(fast["s"].shape) == (N, 8)
    got = tf.read_table(every_tform)
    assert got["s"] == [s.rstrip() for s in expected["s"]]
    assert list(got) == [c for c in fits.getdata(every_tform, 1).names]
    for name in NATIVE:
        assert torch.equal(got[name], fast[name])


def test_metadata(every_tform):
    nrows, cols = tf.table_info(every_tform, "CAT")
    assert nrows == N
    by = {c.name: c for c in cols}
    assert by["tdim"].shape == (2, 3) and by["tdim"].tdim == "(3,2)" and by["tdim"].repeat == 6
    assert by["x11"].shape == (11,) and by["x11"].tform == "11X"
    assert by["j"].shape == () and by["j"].dtype == torch.int32 and by["j"].tunit == ""
    assert by["d"].tunit == "deg" and by["d"].tform == "D"
    assert by["s"].kind == "string" and by["s"].repeat == 8
    res = ops.table_info(every_tform, 1)
    assert res[0] == N and res[1] == [c.name for c in cols]
    with tf.open(every_tform) as f:
        hdu = f["CAT"]
        assert isinstance(hdu, tf.TableHDU)
        assert hdu.num_rows == N and len(hdu) == N
        assert hdu.columns == [c.name for c in cols]


def test_column_and_row_selection(every_tform):
    expected = astropy_columns(every_tform)
    got = tf.read_table(every_tform, "cat", columns=["MIXED_CASE", "J"], rows=slice(5, 20))
    assert list(got) == ["Mixed_Case", "j"]  # the file's spelling, in the order asked
    assert_numeric(got["j"], expected["j"][5:20], torch.int32)
    got = tf.read_table(every_tform, 1, columns=["s", "tdim"], rows=range(3, 30, 4))
    assert got["s"] == [s.rstrip() for s in expected["s"][3:30:4]]
    assert_numeric(got["tdim"], expected["tdim"][3:30:4], torch.float32)
    got = tf.read_table(every_tform, rows=slice(-5, None))
    assert_numeric(got["k"], expected["k"][-5:], torch.int64)
    got = tf.read_table(every_tform, rows=slice(30, 1000))  # clamped as Python slices are
    assert_numeric(got["d"], expected["d"][30:], torch.float64)
    fast, slow = both_paths(every_tform, 1, ["x11", "l3", "c"], 7, 11)
    for name in fast:
        assert torch.equal(fast[name], slow[name])
        assert_numeric(fast[name], expected[name][7:18], NATIVE[name])
    with tf.open(every_tform) as f:
        hdu = f[1]
        assert_numeric(hdu["E"], expected["e"], torch.float32)
        two = hdu[["i", "K"]]
        assert list(two) == ["i", "k"]
        rows = hdu[10:20]
        assert set(rows) == set(NATIVE) | {"s"}
        assert_numeric(rows["b"], expected["b"][10:20], torch.uint8)
        assert_numeric(hdu[range(2, 4)]["i"], expected["i"][2:4], torch.int16)


def test_fitsio_written_unsigned_and_scaled(tmp_path):
    rng = np.random.default_rng(5)
    arrays = {
        "u1": rng.integers(0, 256, N).astype(np.uint8),
        "i1": rng.integers(-128, 128, N).astype(np.int8),
        "u2": np.array([0, 1, 32767, 32768, 65535] * 8, dtype=np.uint16)[:N],
        "u4": np.array([0, 1, 2**31 - 1, 2**31, 2**32 - 1] * 8, dtype=np.uint32)[:N],
        "i8": rng.integers(-2**63, 2**63 - 1, N, dtype=np.int64),
        "f4": rng.standard_normal((N, 4)).astype(np.float32),
        "f8": rng.standard_normal(N),
    }
    path = write_table_fitsio(tmp_path / "u.fits", arrays)
    hdr = fits.getheader(path, 1)
    assert hdr["TZERO3"] == 32768 and hdr["TZERO4"] == 2**31 and hdr["TZERO2"] == -128
    expected = astropy_columns(path)
    fast, slow = both_paths(path)
    want = {"u1": torch.uint8, "i1": torch.int8, "i8": torch.int64, "f4": torch.float32,
            "f8": torch.float64}
    for name, dtype in want.items():
        assert_numeric(fast[name], expected[name], dtype)
        assert torch.equal(fast[name], slow[name]), name
        np.testing.assert_array_equal(as_numpy(fast[name]), arrays[name])
    for name, bits in (("u2", 16), ("u4", 32)):
        assert_unsigned(fast[name], expected[name], bits)
        assert_unsigned(fast[name], arrays[name], bits)
        assert torch.equal(fast[name], slow[name]), name


def test_scaling_and_nulls(tmp_path):
    import fitsio

    stored = np.array([-5, 0, 7, -999, 12000] * 4, dtype=np.int16)
    arrays = {"scaled": stored, "scaledj": stored.astype(np.int32),
              "nulled": stored.astype(np.int32),
              "fl": np.array([1, np.nan, 3, 4, 5] * 4, np.float32)}
    path = write_table_fitsio(tmp_path / "s.fits", arrays)
    with fitsio.FITS(path, "rw") as f:  # scaling keywords over the stored integers
        f[1].write_keys([{"name": "TSCAL1", "value": 0.5}, {"name": "TZERO1", "value": 10.0},
                         {"name": "TNULL1", "value": -999},
                         {"name": "TSCAL2", "value": 0.25}, {"name": "TZERO2", "value": -3.0},
                         {"name": "TNULL3", "value": -999}])
    # the file stores the raw integers; astropy scales them
    fast, slow = both_paths(path)
    assert fast["scaled"].dtype == torch.float32 and fast["scaledj"].dtype == torch.float64
    for name in fast:
        assert torch.equal(fast[name].isnan(), slow[name].isnan()) if fast[name].is_floating_point() else True
        np.testing.assert_array_equal(fast[name].numpy(), slow[name].numpy())
    raw = fits.getdata(path, 1)
    want_scaled = np.where(stored == -999, np.nan, stored.astype(np.float64) * 0.5 + 10.0)
    np.testing.assert_array_equal(fast["scaled"].numpy(), want_scaled.astype(np.float32))
    np.testing.assert_allclose(fast["scaledj"].numpy(), raw["scaledj"])
    # integer nulls keep their stored value, as astropy gives them
    assert_numeric(fast["nulled"], raw["nulled"], torch.int32)
    nulls = tf.read_table_nulls(path)
    np.testing.assert_array_equal(nulls["nulled"].numpy(), stored == -999)
    np.testing.assert_array_equal(nulls["scaled"].numpy(), stored == -999)
    np.testing.assert_array_equal(nulls["fl"].numpy(), np.isnan(raw["fl"]))
    assert tf.table_info(path)[1][2].tnull == -999


def vla_columns():
    rows_j = [np.arange(n, dtype=np.int32) * (n + 1) for n in (0, 3, 1, 7, 2)]
    rows_e = [np.linspace(0, 1, n).astype(np.float32) for n in (4, 0, 2, 1, 5)]
    rows_d = [np.arange(n, dtype=np.float64) - 2.5 for n in (1, 2, 3, 0, 9)]
    rows_s = ["hello", "", "a b", "trailing  ", "x"]
    return [
        fits.Column(name="vj", format="PJ()", array=np.array(rows_j, dtype=object)),
        fits.Column(name="ve", format="PE()", array=np.array(rows_e, dtype=object)),
        fits.Column(name="vd", format="QD()", array=np.array(rows_d, dtype=object)),
        fits.Column(name="vs", format="PA()", array=np.array(rows_s, dtype=object)),
        fits.Column(name="plain", format="J", array=np.arange(5, dtype=np.int32)),
    ], (rows_j, rows_e, rows_d, rows_s)


def test_variable_length_arrays(tmp_path):
    cols, (rows_j, rows_e, rows_d, rows_s) = vla_columns()
    path = write_table_astropy(tmp_path / "v.fits", cols)
    got = tf.read_table(path)
    with fits.open(path) as f:
        data = f[1].data
        for name, rows in (("vj", rows_j), ("ve", rows_e), ("vd", rows_d)):
            assert len(got[name]) == 5
            for t, a, want in zip(got[name], data[name], rows):
                np.testing.assert_array_equal(t.numpy(), np.asarray(a))
                np.testing.assert_array_equal(t.numpy(), want)
        assert got["vs"] == [s.rstrip() for s in rows_s]
        # astropy gives each PA row as an array of characters
        assert got["vs"] == ["".join(c.decode() if isinstance(c, bytes) else str(c)
                                     for c in np.asarray(a).ravel()).rstrip() for a in data["vs"]]
    raw = ops.read_table(str(path), 1, ["VJ"], 1, 3)
    assert set(raw) == {"vj", "vj.offsets"}
    assert raw["vj.offsets"].tolist() == [0, 3, 4, 11]
    assert raw["vj"].dtype == torch.int32
    sliced = tf.read_table(path, columns=["vd"], rows=slice(2, 5))
    for t, want in zip(sliced["vd"], rows_d[2:5]):
        np.testing.assert_array_equal(t.numpy(), want)


def test_split_rows():
    """One tensor per row, equal to tensor_split's, each a copy of its own
    (writing to a row leaves the input and the other rows alone); bad
    offsets are a ValueError naming the cause."""
    values = torch.arange(12, dtype=torch.float64) * 1.5
    offsets = torch.tensor([0, 3, 3, 7, 12])
    rows = ops.split_rows(values, offsets)
    want = torch.tensor_split(values, offsets[1:-1])
    assert [r.dtype for r in rows] == [torch.float64] * 4
    assert [r.tolist() for r in rows] == [w.tolist() for w in want]
    assert [tuple(r.shape) for r in rows] == [(3,), (0,), (4,), (5,)]
    rows[2][0] = -1.0
    assert values[3].item() == 4.5 and rows[2][0].item() == -1.0
    storage = [getattr(r, "untyped_storage", r.storage)() for r in rows if r.numel()]
    assert len({s.data_ptr() for s in storage}) == 3  # torch 1.13 has no untyped_storage
    # offsets that start inside the values, and a strided view as values
    part = ops.split_rows(values[::2], torch.tensor([1, 2, 6]))
    assert [r.tolist() for r in part] == [[3.0], [6.0, 9.0, 12.0, 15.0]]
    assert ops.split_rows(values, torch.tensor([5])) == []
    with pytest.raises(ValueError, match="offsets decrease at row 1"):
        ops.split_rows(values, torch.tensor([0, 4, 2, 12]))
    with pytest.raises(ValueError, match="outside the 12 values"):
        ops.split_rows(values, torch.tensor([0, 13]))
    with pytest.raises(ValueError, match="outside the 12 values"):
        ops.split_rows(values, torch.tensor([-1, 2]))
    with pytest.raises(ValueError, match="offsets must be int64"):
        ops.split_rows(values, torch.tensor([0, 2], dtype=torch.int32))
    with pytest.raises(ValueError, match="values must have one axis"):
        ops.split_rows(values.reshape(3, 4), torch.tensor([0, 2]))


@pytest.mark.parametrize("width", [3, 5, 7, 9, 15, 17, 20, 31, 33])
def test_string_widths(tmp_path, width):
    """Character columns of every width class the row gather copies in its
    own way, beside a 2-byte column (rows of odd length): every stored byte,
    as astropy reads them."""
    rng = np.random.default_rng(width)
    n = 300
    raw = rng.integers(33, 127, (n, width), dtype=np.uint8)  # no blanks: astropy pads with NULs
    words = raw.view(f"S{width}").ravel()
    cols = [fits.Column(name="s", format=f"{width}A", array=words),
            fits.Column(name="i", format="I", array=np.arange(n, dtype=np.int16)),
            fits.Column(name="v", format=f"{width}B", array=raw)]
    path = write_table_astropy(tmp_path / "w.fits", cols)
    got = ops.read_table(str(path), 1, None, 0, -1)
    assert got["s"].dtype == torch.uint8 and tuple(got["s"].shape) == (n, width)
    np.testing.assert_array_equal(got["s"].numpy(), raw)
    np.testing.assert_array_equal(got["v"].numpy(), raw)
    np.testing.assert_array_equal(got["i"].numpy(), np.arange(n))
    with fits.open(path) as f:
        np.testing.assert_array_equal(np.asarray(f[1].data["v"]), got["v"].numpy())
    cf = ops._read_table_cfitsio(str(path), 1, None, 7, 100)
    for k in ("s", "v", "i"):
        assert torch.equal(cf[k], got[k][7:107]), k


def test_heap_gap(tmp_path):
    """THEAP past the end of the rows: a gap before the heap."""
    cols, (rows_j, *_rest) = vla_columns()
    hdu = fits.BinTableHDU.from_columns(cols[:1])
    path = tmp_path / "plain.fits"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    with fits.open(path) as f:
        hdr = f[1].header.copy()
    with open(path, "rb") as fh:
        blob = fh.read()
    data_start = 2880 + len(hdr.tostring())
    main = hdr["NAXIS1"] * hdr["NAXIS2"]
    heap = blob[data_start + main:data_start + main + hdr["PCOUNT"]]
    gap = 100
    hdr["THEAP"] = main + gap
    hdr["PCOUNT"] = hdr["PCOUNT"] + gap
    head = hdr.tostring().encode()
    body = blob[data_start:data_start + main] + b"\x7f" * gap + heap
    body += b"\0" * (-len(body) % 2880)
    out = tmp_path / "gap.fits"
    out.write_bytes(blob[:2880] + head + body)
    with fits.open(out) as f:
        for a, want in zip(f[1].data["vj"], rows_j):
            np.testing.assert_array_equal(a, want)  # astropy agrees the file is right
    got = tf.read_table(out)
    for t, want in zip(got["vj"], rows_j):
        np.testing.assert_array_equal(t.numpy(), want)


def test_ascii_table(tmp_path):
    cols = [
        fits.Column(name="name", format="A10", array=np.array(["alpha", "be ta", "", "gamma"])),
        fits.Column(name="count", format="I8", array=np.array([1, -20, 300, 4000])),
        fits.Column(name="f", format="F10.4", array=np.array([1.5, -2.25, 3.125, 0.0])),
        fits.Column(name="e", format="E15.7", array=np.array([1e-3, 2e10, -3.5, 4.0])),
        fits.Column(name="d", format="D25.17", array=np.array([np.pi, -np.e, 1e300, 0.1])),
    ]
    path = write_table_astropy(tmp_path / "a.fits", cols, ascii=True)
    with fits.open(path) as f:
        assert f[1].header["XTENSION"] == "TABLE"
        data = f[1].data
        got = tf.read_table(path)
        assert got["name"] == [s.rstrip() for s in data["name"]]
        assert_numeric(got["count"], data["count"], torch.int64)
        for n in ("f", "e", "d"):
            assert_numeric(got[n], data[n], torch.float64)
    assert tf.info(path)[1].kind == "ascii_table"
    got = tf.read_table(path, columns=["D"], rows=slice(1, 3))
    assert got["d"].tolist() == [-np.e, 1e300]


def test_zero_rows_and_zero_width(tmp_path):
    cols = [fits.Column(name="a", format="J", array=np.zeros(0, np.int32)),
            fits.Column(name="s", format="4A", array=np.zeros(0, "S4")),
            fits.Column(name="v", format="PE()", array=np.array([], dtype=object))]
    path = write_table_astropy(tmp_path / "z.fits", cols)
    got = tf.read_table(path)
    assert got["a"].shape == (0,) and got["a"].dtype == torch.int32
    assert got["s"] == [] and got["v"] == []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cols = [fits.Column(name="z", format="0J"),
                fits.Column(name="j", format="J", array=np.arange(4, dtype=np.int32))]
        path = write_table_astropy(tmp_path / "w.fits", cols)
    got = tf.read_table(path)
    assert got["z"].shape == (4, 0) and got["z"].dtype == torch.int32
    assert got["j"].tolist() == [0, 1, 2, 3]


def test_large_table_threads_and_gzip(tmp_path):
    arrays = mixed_table_arrays(150_000, seed=2)  # about 6 MB: split across threads
    path = write_table_fitsio(tmp_path / "big.fits", arrays, extname="OBJ")
    fast, slow = both_paths(path)
    for name, a in arrays.items():
        np.testing.assert_array_equal(fast[name].numpy(), a)
        assert torch.equal(fast[name], slow[name])
    sel = ops.read_table(path, "obj", ["flux", "ID"], 1000, 50_000, 0)
    np.testing.assert_array_equal(sel["FLUX"].numpy(), arrays["FLUX"][1000:51000])
    gz = gzip_file(path, tmp_path / "big.fits.gz")
    got = tf.read_table(gz, "OBJ", rows=slice(10, 70_000))
    for name, a in arrays.items():
        np.testing.assert_array_equal(got[name].numpy(), a[10:70_000])


def test_torchscript(every_tform):
    @torch.jit.script
    def flux(path: str) -> torch.Tensor:
        cols = torch.ops.torchfits.read_table(path, 1, ["d"], 0, -1)
        return cols["d"].float()

    np.testing.assert_array_equal(flux(every_tform).numpy(),
                                  fits.getdata(every_tform, 1)["d"].astype(np.float32))


# ---- bad input ----

def test_errors_name_path_hdu_and_column(every_tform, tmp_path):
    path = every_tform
    with pytest.raises(KeyError, match="no column named 'NOPE'") as e:
        tf.read_table(path, columns=["NOPE"])
    assert path in str(e.value) and "HDU 1" in str(e.value)
    with pytest.raises(ValueError, match="no column named"):
        ops.read_table(path, 1, ["NOPE"], 0, -1)
    with tf.open(path) as f, pytest.raises(KeyError, match="NOPE"):
        f[1]["NOPE"]
    with pytest.raises(IndexError, match=f"{path}: HDU 1: rows 30 to 49 are past the table's {N} rows"):
        ops.read_table(path, 1, [], 30, 20)
    with pytest.raises(IndexError, match="past the table"):
        tf.read_table(path, rows=range(0, N + 1))
    with pytest.raises(IndexError, match="start row 100 is past"):
        ops.read_table(path, 1, [], 100, -1)
    with pytest.raises(ValueError, match="must be >= 0"):
        ops.read_table(path, 1, [], 0, -2)
    with pytest.raises(ValueError, match="must be >= 0"):
        ops.read_table(path, 1, [], -1, 2)
    with pytest.raises(TypeError, match="HDU 0: HDU is an image, not a table"):
        tf.read_table(path, 0)
    with pytest.raises(IndexError, match="HDU 5 does not exist"):
        tf.read_table(path, 5)


def patch_header(path, old, new):
    blob = bytearray(open(path, "rb").read())
    i = blob.index(old.encode())
    blob[i:i + len(new)] = new.encode()
    open(path, "wb").write(bytes(blob))


def test_corrupt_tform(tmp_path):
    path = write_table_astropy(tmp_path / "t.fits",
                               [fits.Column(name="a", format="J", array=np.arange(3, dtype=np.int32))])
    patch_header(path, "TFORM1  = 'J       '", "TFORM1  = '1Z      '")
    with pytest.raises(tf.FitsError, match="t.fits: HDU 1") as e:
        tf.read_table(path)
    assert "TFORM" in str(e.value) and "'1Z'" in str(e.value)


def test_heap_pointer_outside_heap(tmp_path):
    cols, _ = vla_columns()
    path = write_table_astropy(tmp_path / "v.fits", cols[:1])
    hdr = fits.getheader(path, 1)
    blob = bytearray(open(path, "rb").read())
    data_start = 2880 + len(hdr.tostring())
    # row 3's descriptor: (count, offset) as big-endian int32; point far away
    blob[data_start + 3 * 8 + 4:data_start + 3 * 8 + 8] = (10**6).to_bytes(4, "big")
    open(path, "wb").write(bytes(blob))
    with pytest.raises(tf.FitsError, match="column 'vj', row 3: .* outside the .*heap") as e:
        tf.read_table(path)
    assert str(path) in str(e.value) and "HDU 1" in str(e.value)
    # the rows before it still read
    got = tf.read_table(path, rows=slice(0, 3))
    assert len(got["vj"]) == 3


def test_truncated_table(tmp_path):
    arrays = mixed_table_arrays(2000)
    path = write_table_fitsio(tmp_path / "t.fits", arrays)
    blob = open(path, "rb").read()
    open(path, "wb").write(blob[:len(blob) // 2])
    with pytest.raises(tf.FitsError, match="truncated"):
        tf.read_table(path)


def test_wide_table(tmp_path):
    """Many columns: names, units and TDIMs from one pass over the header."""
    cols = [fits.Column(name=f"c{i}", format="2J" if i % 3 else "E", unit=f"u'{i}",
                        dim="(2)" if i % 3 == 1 else None,
                        array=np.full((5, 2) if i % 3 else 5, i, dtype=np.int32 if i % 3 else np.float32))
            for i in range(300)]
    path = write_table_astropy(tmp_path / "wide.fits", cols)
    expected = astropy_columns(path)
    got = tf.read_table(path)
    assert list(got) == list(expected)
    for name, a in expected.items():
        np.testing.assert_array_equal(got[name].numpy(), a)
    _, info = tf.table_info(path)
    assert [c.tunit for c in info] == [f"u'{i}" for i in range(300)]
    assert [c.tdim for c in info[:3]] == ["", "(2)", ""]
    sel = tf.read_table(path, columns=["C299", "c1"])
    assert list(sel) == ["c299", "c1"]


def test_bad_tdim_and_unsupported_vla(tmp_path):
    path = write_table_astropy(
        tmp_path / "d.fits",
        [fits.Column(name="a", format="6E", dim="(3,2)", array=np.zeros((4, 2, 3), np.float32)),
         fits.Column(name="v", format="PJ()", array=np.array([np.arange(2)] * 4, dtype=object))])
    patch_header(path, "TDIM1   = '(3,2)   '", "TDIM1   = '(4,2)   '")
    with pytest.raises(tf.FitsError, match="column 'a': bad TDIM1 = '\\(4,2\\)'"):
        tf.read_table(path, columns=["a"])
    # the operator still reads the other columns
    assert ops.read_table(path, 1, ["v"], 0, -1)["v"].tolist() == [0, 1] * 4
    patch_header(path, "TFORM2  = 'PJ(2)   '", "TFORM2  = 'PX(2)   '")
    with pytest.raises(NotImplementedError, match="column 'v': TFORM2 = 'PX\\(2\\)' is not supported"):
        ops.read_table(path, 1, ["v"], 0, -1)


def test_theap_inside_rows(tmp_path):
    cols, _ = vla_columns()
    path = write_table_astropy(tmp_path / "v.fits", cols[:1])
    patch_header(path, "TTYPE1  = 'vj      '", f"{'THEAP   =                    8':80s}")
    with pytest.raises(tf.FitsError, match="HDU 1: .*THEAP") as e:
        tf.read_table(path)
    assert str(path) in str(e.value)


def test_corrupted_bytes_fail_cleanly(tmp_path):
    """Random damage to a table's header and data: every read either works
    or raises a documented exception naming the file; nothing crashes."""
    import random

    cols, _ = vla_columns()
    cols += [fits.Column(name="t", format="6E", dim="(3,2)", array=np.zeros((5, 2, 3), np.float32)),
             fits.Column(name="x", format="11X", array=np.ones((5, 11), bool)),
             fits.Column(name="s", format="7A", array=np.array(["a"] * 5))]
    base = open(write_table_astropy(tmp_path / "base.fits", cols), "rb").read()
    rng = random.Random(7)
    bad = tmp_path / "bad.fits"
    failures = 0
    for _ in range(150):
        blob = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(2880, 5760 if rng.random() < 0.7 else len(blob))
            blob[i] = rng.choice(b"0123456789 '()PQJEAXL-") if i < 5760 else rng.randrange(256)
        bad.write_bytes(bytes(blob))
        for read in (lambda: ops.read_table(str(bad), 1, None, 0, -1),
                     lambda: ops._read_table_cfitsio(str(bad), 1, None, 0, -1),
                     lambda: tf.read_table(bad)):
            try:
                read()
            except (RuntimeError, IndexError, ValueError, TypeError, KeyError) as e:
                failures += 1
                assert str(bad) in str(e)
    assert failures > 0  # the damage did reach the reader


def test_string_array_with_tdim(tmp_path):
    a = np.array([["ab", "cde", "f", "ghijk"], ["", "x y", "zz", "12345"]])
    path = write_table_astropy(tmp_path / "s.fits",
                               [fits.Column(name="s", format="20A", dim="(5,4)", array=a)])
    assert ops.read_table(str(path), 1, None, 0, -1)["s"].shape == (2, 4, 5)
    assert tf.read_table(path)["s"] == fits.getdata(path, 1)["s"].tolist() == a.tolist()


def test_ascii_nulls(tmp_path):
    """TNULLn strings in an ASCII table: integers read 0, as astropy gives
    them; floats (null or blank) NaN, where astropy gives 0."""
    h = fits.Header([("XTENSION", "TABLE"), ("BITPIX", 8), ("NAXIS", 2), ("NAXIS1", 12),
                     ("NAXIS2", 3), ("PCOUNT", 0), ("GCOUNT", 1), ("TFIELDS", 2),
                     ("TTYPE1", "i"), ("TFORM1", "I6"), ("TBCOL1", 1), ("TNULL1", "NULL"),
                     ("TTYPE2", "f"), ("TFORM2", "F6.2"), ("TBCOL2", 7), ("TNULL2", "NULL")])
    data = b"     1  1.50" + b"  NULL  NULL" + b"    -3      "
    primary = fits.Header([("SIMPLE", True), ("BITPIX", 8), ("NAXIS", 0), ("EXTEND", True)])
    path = tmp_path / "n.fits"
    path.write_bytes(primary.tostring().encode() + h.tostring().encode() + data
                     + b" " * (2880 - len(data)))
    with fits.open(path) as f:
        want_i = f[1].data["i"].tolist()
    got = tf.read_table(path)
    assert got["i"].tolist() == want_i == [1, 0, -3]
    assert got["f"][0].item() == 1.5 and got["f"][1:].isnan().all()
    assert tf.read_table_nulls(path)["f"].tolist() == [False, True, True]
    blob = bytearray(path.read_bytes())
    i = blob.index(b"    -3")
    blob[i:i + 6] = b"  -3x "
    path.write_bytes(bytes(blob))
    with pytest.raises(tf.FitsError, match="column 'i', row 2: '-3x' is not a number"):
        tf.read_table(path)


def test_zero_width_rows_bounded(tmp_path):
    # The header as astropy 5.2 wrote it for a 0J column; astropy 8 fails
    # to write a table of zero-width rows (ZeroDivisionError).
    table = fits.Header([("XTENSION", "BINTABLE"), ("BITPIX", 8), ("NAXIS", 2), ("NAXIS1", 0),
                         ("NAXIS2", 0), ("PCOUNT", 0), ("GCOUNT", 1), ("TFIELDS", 1),
                         ("TTYPE1", "z"), ("TFORM1", "0J")])
    path = tmp_path / "z.fits"
    path.write_bytes(fits.PrimaryHDU().header.tostring().encode() + table.tostring().encode())
    with fits.open(path) as f:  # astropy reads it
        assert f[1].data is None or len(f[1].data) == 0
    assert tf.read_table(path)["z"].shape == (0, 0)
    patch_header(path, "NAXIS2  =                    0", "NAXIS2  =      100000000000000")
    with pytest.raises(tf.FitsError, match="NAXIS2 = 100000000000000 rows of 0 bytes"):
        tf.read_table(path)


def _stored_rows(path, hdu=1):
    """The table's rows as stored: uint8 [NAXIS2, NAXIS1]."""
    with fits.open(path) as f:
        at = f.fileinfo(hdu)["datLoc"]
        nrows, width = f[hdu].header["NAXIS2"], f[hdu].header["NAXIS1"]
    with open(path, "rb") as fh:
        fh.seek(at)
        return np.frombuffer(fh.read(nrows * width), np.uint8).reshape(nrows, width)


def _as_astropy_gives(v):
    return v.decode("latin-1") if isinstance(v, bytes) else v


# Character fields as real files store them: NULs inside, trailing NULs and
# blanks mixed, control characters; 8 bytes each. BINARY has bytes past
# ASCII too (astropy keeps such a column as bytes, not str).
TEXT = [b"ab\0cd\0\0\0", b"ab  \0\0\0\0", b"  x y   ", b"\0" * 8, b"\0abc    ", b"abcdefgh",
        b"ab\t\x0b \0 z", b"a\0 \0 \0  ", b"ab\x1c\x1f\0\0\0\0"]
BINARY = [b"\x99\xff\x01\0\x80 \0\0"] + TEXT[1:]


def test_strings_keep_every_stored_byte(tmp_path):
    """Character columns (A, with TDIM, and PA) come back from the operator
    as the bytes stored, on both paths: astropy and fitsio keep what
    follows a NUL, and real files (astrometry.net index files) keep binary
    data there. The Python API gives astropy 8's data[col][row]: trailing
    NULs, then trailing blanks removed (str.rstrip()'s on an ASCII column,
    bytes.rstrip()'s on another); NULs inside stay. The fast path zeroed
    all after a NUL; cfitsio's path ended the string there."""
    n = len(TEXT)
    path = tmp_path / "bytes.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns([
        fits.Column(name="s", format="8A", array=np.array(["S" * 8] * n)),
        fits.Column(name="b", format="8A", array=np.array(["B" * 8] * n)),
        fits.Column(name="t", format="8A", dim="(4,2)", array=np.array([["TTTT", "TTTT"]] * n)),
        fits.Column(name="v", format="PA(8)", array=np.array(["V" * 8] * n, dtype=object)),
        fits.Column(name="j", format="J", array=np.arange(n, dtype=">i4")),
    ])]).writeto(path)
    # astropy writes a field up to its last non-blank: put the bytes in
    blob = bytearray(path.read_bytes())
    for mark, values in ((b"S", TEXT), (b"B", BINARY), (b"T", TEXT), (b"V", TEXT)):
        at = 0
        for v in values:
            at = blob.index(mark * 8, at)
            blob[at:at + 8] = v
    path.write_bytes(bytes(blob))

    fast = ops.read_table(str(path), 1, None, 0, -1)
    slow = ops._read_table_cfitsio(str(path), 1, None, 0, -1)
    assert list(fast) == list(slow) == ["s", "b", "t", "v.offsets", "v", "j"]
    for key in fast:
        assert torch.equal(fast[key], slow[key]), key
    assert fast["s"].dtype == torch.uint8 and tuple(fast["s"].shape) == (n, 8)
    assert tuple(fast["t"].shape) == (n, 2, 4)
    assert [bytes(r.tolist()) for r in fast["s"]] == TEXT
    assert [bytes(r.tolist()) for r in fast["b"]] == BINARY
    assert [bytes(r.flatten().tolist()) for r in fast["t"]] == TEXT
    assert np.array_equal(fast["s"].numpy(), _stored_rows(path)[:, :8])
    assert fast["v"].dtype == torch.uint8 and bytes(fast["v"].tolist()) == b"".join(TEXT)
    assert fast["v.offsets"].tolist() == list(range(0, 8 * n + 1, 8))
    assert fast["j"].tolist() == list(range(n))

    got = tf.read_table(path)
    assert got["s"] == ["ab\0cd", "ab", "  x y", "", "\0abc", "abcdefgh", "ab\t\x0b \0 z",
                        "a\0 \0 \0", "ab"]
    assert got["b"] == ["\x99\xff\x01\0\x80"] + got["s"][1:-1] + ["ab\x1c\x1f"]
    assert got["t"][6] == ["ab", " \0 z"] and got["t"][8] == ["ab", ""]
    assert got["v"] == got["s"]  # astropy gives a PA row as an array of characters
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(path) as f:
            d = f[1].data
            for name in ("s", "b"):
                assert got[name] == [_as_astropy_gives(d[name][r]) for r in range(n)], name
            assert got["t"] == [[_as_astropy_gives(x) for x in d["t"][r]] for r in range(n)]
            heap = [np.asarray(d["v"][r]).astype("S1").tobytes() for r in range(n)]
            assert heap == TEXT
    assert tf.read_table(path, columns=["s"], rows=slice(4, 6))["s"] == ["\0abc", "abcdefgh"]


@pytest.mark.parametrize("writer", ["astropy", "fitsio"])
def test_strings_as_the_writers_store_them(tmp_path, writer):
    """NULs inside a string, written by astropy (its fields end at the last
    non-blank byte, NUL padded) and fitsio (1.4 writes the bytes given;
    1.1 writes through cfitsio's strings, cut at a NUL and blank padded):
    the operator gives the stored bytes, the API astropy's strings, and
    fitsio's strings less their trailing blanks."""
    import fitsio

    values = np.array([b"ab\0cd", b"\0abc  ", b"a\0 \0 z", b"plain", b""], dtype="S8")
    path = tmp_path / f"{writer}.fits"
    if writer == "astropy":
        fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
            [fits.Column(name="s", format="8A", array=values)])]).writeto(path)
    else:
        rec = np.zeros(len(values), dtype=[("s", "S8")])
        rec["s"] = values
        fitsio.write(str(path), rec, clobber=True)
    stored = _stored_rows(path)
    fast = ops.read_table(str(path), 1, ["s"], 0, -1)["s"]
    assert fast.dtype == torch.uint8 and tuple(fast.shape) == (5, 8)
    assert np.array_equal(fast.numpy(), stored)
    assert torch.equal(fast, ops._read_table_cfitsio(str(path), 1, ["s"], 0, -1)["s"])
    if writer == "astropy":  # what follows the NUL was written
        assert bytes(stored[0]) == b"ab\0cd\0\0\0"
    got = tf.read_table(path)["s"]
    with fits.open(path) as f:
        assert got == [_as_astropy_gives(f[1].data["s"][r]) for r in range(5)]
    assert got == [str(v).rstrip(" ") for v in fitsio.read(str(path), ext=1)["s"]]


def test_ascii_table_strings_are_the_stored_characters(tmp_path):
    """An ASCII table's A fields: the operator gives the characters stored,
    trailing blanks included (cfitsio's string read gave NULs for them)."""
    cols = [fits.Column(name="name", format="A7", array=np.array(["alpha", " be ta", "", "gamma12"])),
            fits.Column(name="n", format="I4", array=np.array([1, 2, 3, 4]))]
    path = write_table_astropy(tmp_path / "a.fits", cols, ascii=True)
    fast = ops.read_table(str(path), 1, None, 0, -1)
    assert torch.equal(fast["name"], ops._read_table_cfitsio(str(path), 1, None, 0, -1)["name"])
    assert [bytes(r.tolist()) for r in fast["name"]] == [b"alpha  ", b" be ta ", b" " * 7, b"gamma12"]
    assert np.array_equal(fast["name"].numpy(), _stored_rows(path)[:, :7])
    assert tf.read_table(path, rows=range(1, 4))["name"] == [" be ta", "", "gamma12"]
    with fits.open(path) as f:
        assert tf.read_table(path)["name"] == [f[1].data["name"][r] for r in range(4)]


@pytest.mark.parametrize("dup", ["TFORM2  = 'J       '", "TSCAL1  =                  2.0",
                                 "tdim2   = '(2,1)   '"])
def test_column_keyword_twice_is_refused(tmp_path, dup):
    """cfitsio sets up columns from the cards in order (the last TFORMn of
    two wins) but finds keywords by search (the first): with a column
    keyword twice its reads and the fast path's disagreed (fuzzer:
    paths-disagree-duplicate-tform). Such a header is refused."""
    cols = [fits.Column(name="a", format="J", array=np.arange(5, dtype=">i4")),
            fits.Column(name="b", format="2E", array=np.ones((5, 2), ">f4"), dim="(2,1)"),
            fits.Column(name="c", format="8A", array=np.array([b"x"] * 5))]
    fits.BinTableHDU.from_columns(cols).writeto(tmp_path / "t.fits")
    tdim = "TDIM2   =" if "TDIM" in dup.upper() else None
    if "TSCAL1" in dup:
        raw = bytearray((tmp_path / "t.fits").read_bytes())
        at = raw.index(b"TTYPE3  =")  # becomes a TSCAL1, then a second one
        raw[at:at + 80] = "TSCAL1  =                  1.0".ljust(80).encode()
        (tmp_path / "t.fits").write_bytes(bytes(raw))
    raw = bytearray((tmp_path / "t.fits").read_bytes())
    at = raw.index(b"TTYPE2  =")
    raw[at:at + 80] = dup.ljust(80).encode()
    (tmp_path / "t.fits").write_bytes(bytes(raw))
    assert tdim is None or tdim.encode() in raw
    key = dup.split("=")[0].strip().upper()
    with pytest.raises(tf.FitsError, match=rf"t\.fits: HDU 1: keyword {key} appears twice"):
        tf.read_table(tmp_path / "t.fits", 1)


def _table_with_cards(tmp_path, cards, name="t.fits"):
    """A J column 'a' (0..4) and a 1L column 'l', with `cards` in the
    header (in place of HISTORY cards written for them)."""
    cols = [fits.Column(name="a", format="J", array=np.arange(5, dtype=">i4")),
            fits.Column(name="l", format="1L", array=np.array([True, False, True, False, True]))]
    hdu = fits.BinTableHDU.from_columns(cols)
    for k in range(len(cards)):
        hdu.header["HISTORY"] = f"slot {k}"
    path = tmp_path / name
    hdu.writeto(path)
    raw = bytearray(path.read_bytes())
    for k, card in enumerate(cards):
        at = raw.index(b"HISTORY slot %d" % k)
        raw[at:at + 80] = card.ljust(80).encode()
    path.write_bytes(bytes(raw))
    return path


def test_tnull_as_cfitsio_reads_it(tmp_path):
    """TNULL1 = 16.5 is no null value to cfitsio; it was 16 to the fast
    path (header variants). One that the column's integers cannot hold is
    refused, as BLANK is on images: cfitsio compared it cut to 32 bits."""
    path = _table_with_cards(tmp_path, ["TNULL1  =                 16.5"])
    t = tf.read_table(path, 1, columns=["a"])["a"]
    assert t.dtype == torch.int32 and t.tolist() == [0, 1, 2, 3, 4]
    assert torch.ops.torchfits._read_table_cfitsio(str(path), 1, ["a"], 0, -1)["a"].tolist() == \
        [0, 1, 2, 3, 4]
    path = _table_with_cards(tmp_path, ["TNULL1  = -9223372036854775808"], "t2.fits")
    with pytest.raises(tf.FitsError, match=r"column 'a': TNULL1 = -9223372036854775808 does not fit"):
        tf.read_table(path, 1, columns=["a"])


def test_logical_bytes_other_than_t_f_nul(tmp_path):
    """A byte of a logical column other than 'T', 'F' and NUL: true to
    cfitsio, so true on both paths, and a valid bool (cfitsio's path had
    handed back the byte itself)."""
    path = _table_with_cards(tmp_path, [])
    raw = bytearray(path.read_bytes())
    data = (raw.index(b"END     ", 2880) // 2880 + 1) * 2880
    for row, byte in enumerate([ord("T"), ord("F"), 0, 4, 255]):
        raw[data + row * 5 + 4] = byte  # rows are 5 bytes: J, then L
    path.write_bytes(bytes(raw))
    fast = tf.read_table(path, 1, columns=["l"])["l"]
    slow = torch.ops.torchfits._read_table_cfitsio(str(path), 1, ["l"], 0, -1)["l"]
    assert fast.tolist() == slow.tolist() == [True, False, False, True, True]
    assert slow.view(torch.uint8).tolist() == [1, 0, 0, 1, 1]


@pytest.mark.parametrize("tform,dtype", [("20A", None), ("B", np.uint8), ("I", ">i2"),
                                         ("J", ">i4"), ("K", ">i8"), ("E", ">f4"),
                                         ("3D", ">f8"), ("C", ">c8"), ("2M", ">c16")])
def test_one_column_that_is_the_whole_row(tmp_path, tform, dtype):
    """A table of one column reads its rows straight into the output (and
    converts in place): the same values as astropy and as the cfitsio
    path, over enough rows to split across threads and blocks."""
    rng = np.random.default_rng(11)
    n = 300_001
    repeat = int(tform[:-1] or 1)
    if dtype is None:
        arr = np.array([f"s{i:07d}-{'x' * (i % 12)}" for i in range(n)])
    else:
        shape = (n, repeat) if repeat > 1 else (n,)
        if np.dtype(dtype).kind == "c":
            arr = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
        elif np.dtype(dtype).kind == "f":
            arr = rng.standard_normal(shape).astype(dtype)
        else:
            info = np.iinfo(np.dtype(dtype))
            arr = rng.integers(info.min, info.max, shape, dtype=np.dtype(dtype).newbyteorder("="))
    path = write_table_astropy(tmp_path / "one.fits", [fits.Column(name="v", format=tform,
                                                                   array=arr)])
    expected = astropy_columns(path)["v"]
    fast, slow = both_paths(path)
    assert torch.equal(fast["v"], slow["v"])
    if dtype is None:
        assert fast["v"].dtype == torch.uint8 and tuple(fast["v"].shape) == (n, 20)
        assert tf.read_table(path)["v"] == [s.rstrip() for s in expected]
    else:
        assert_numeric(fast["v"], expected, fast["v"].dtype)
    # a slice of rows starting mid-table: the direct read lands at the right row
    part = tf.read_table(path, columns=["v"], rows=slice(12345, 212345))["v"]
    if dtype is None:
        assert part == [s.rstrip() for s in expected[12345:212345]]
    else:
        assert_numeric(part, expected[12345:212345], fast["v"].dtype)
