"""Unsigned integers (BZERO or TZERO 2^15, 2^31, 2^63 with scale 1): images,
table columns, tile-compressed images, read_into and read_batch, compared
with astropy (and fitsio) on files they wrote. torch 2.3 and later give
torch.uint16, uint32 and uint64, exact; older torch (1.13) int32, int64
and float64 (tests/unsigned.py says what each gives)."""
import gzip
import os

import numpy as np
import pytest
import torch
from astropy.io import fits

import torchfits_ops as tf
from fitsgen import (gzip_file, write_astropy, write_compressed_astropy, write_fitsio,
                     write_table_fitsio)
from unsigned import HAS_UNSIGNED, assert_unsigned, expected, unsigned_dtype

ops = torch.ops.torchfits
BITS = [16, 32, 64]
UINT = {16: np.uint16, 32: np.uint32, 64: np.uint64}
INT = {16: np.int16, 32: np.int32, 64: np.int64}
STORED = {16: torch.int16, 32: torch.int32, 64: torch.int64}


def values(bits, shape, seed=0):
    """Random unsigned values with the ends and the middle of the range
    first and, for 64 bits, values that float64 cannot hold."""
    info = np.iinfo(UINT[bits])
    rng = np.random.default_rng(seed + bits)
    data = rng.integers(0, info.max, size=shape, dtype=UINT[bits], endpoint=True)
    top = 1 << (bits - 1)
    edges = [0, 1, 2, top - 1, top, top + 1, info.max - 1, info.max]
    if bits == 64:
        edges += [2**53 + 1, 2**63 + 3, 2**64 - 5]
    flat = data.reshape(-1)
    n = min(len(edges), flat.size)
    flat[:n] = np.array(edges[:n], dtype=UINT[bits])
    return data


def stored(data, bits):
    """The values as the file stores them: the top bit flipped, signed."""
    u = np.asarray(data).astype(UINT[bits])
    return (u ^ UINT[bits](1 << (bits - 1))).view(INT[bits])


def cfitsio_image(path, hdu=0, start=(), shape=(), step=None, raw=False):
    return ops._read_cfitsio(str(path), hdu, list(start), list(shape), step, raw)


def write_image(path, data, writer):
    """astropy writes BZERO as a number; fitsio writes BZERO 2^63 as a
    string, which cfitsio (and so the core) reads too."""
    if writer == "astropy":
        return write_astropy(path, data)
    if data.dtype == np.uint64 and not fitsio_writes_uint64(os.path.dirname(path)):
        import fitsio

        pytest.skip(f"fitsio {fitsio.__version__} does not write uint64 images")
    return write_fitsio(path, data)


def fitsio_writes_uint64(folder):
    """fitsio 1.1.8 (beside torch 1.13 here) writes no uint64 image
    (SystemError) nor uint64 table column (ValueError); 1.4 writes both."""
    try:
        write_fitsio(os.path.join(folder, "probe_u8.fits"), np.zeros(1, np.uint64))
        return True
    except SystemError:
        return False


def reference(path, bits, hdu=0):
    """The values as astropy reads them, checked against fitsio's below 64
    bits (fitsio 1.4 fails with status 412 on most uint64 images, its own
    too)."""
    ref = fits.getdata(path, hdu)
    if bits < 64:
        import fitsio

        np.testing.assert_array_equal(fitsio.read(str(path), ext=hdu), ref)
    return ref


def test_dtype_per_torch_line(tmp_path):
    """Written out for each torch line, not through tests/unsigned.py."""
    images = {b: write_astropy(tmp_path / f"u{b}.fits", values(b, (2, 5))) for b in BITS}
    rec = np.zeros(8, dtype=[(f"u{b}", UINT[b]) for b in BITS])
    for b in BITS:
        rec[f"u{b}"] = values(b, 8)
    table = str(tmp_path / "t.fits")
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU(rec)]).writeto(table)
    got = {b: tf.read(p).dtype for b, p in images.items()}
    info = {b: tf.info(p)[0].dtype for b, p in images.items()}
    cols = {c.name: c.dtype for c in tf.table_info(table)[1]}
    read = {k: v.dtype for k, v in tf.read_table(table).items()}
    if hasattr(torch, "uint64"):  # torch 2.3 and later
        assert got == info == {16: torch.uint16, 32: torch.uint32, 64: torch.uint64}
        assert cols == read == {"u16": torch.uint16, "u32": torch.uint32, "u64": torch.uint64}
    else:  # torch 1.13: the widest exact signed type, float64 for uint64
        assert got == info == {16: torch.int32, 32: torch.int64, 64: torch.float64}
        assert cols == read == {"u16": torch.int32, "u32": torch.int64, "u64": torch.float64}
    for b, p in images.items():  # raw reads: the stored type on every line
        assert tf.read(p, raw=True).dtype == STORED[b]


# ---- images ----

@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("shape", [(1,), (3, 37), (2, 3, 17)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("writer", ["astropy", "fitsio"])
def test_image(tmp_path, bits, shape, writer):
    data = values(bits, shape, seed=len(shape))
    path = write_image(tmp_path / "u.fits", data, writer)
    ref = reference(path, bits)
    np.testing.assert_array_equal(ref, data)
    t = tf.read(path)
    assert_unsigned(t, ref, bits)
    assert torch.equal(t, cfitsio_image(path))  # cfitsio's own reading routines
    assert tf.info(path)[0].dtype == unsigned_dtype(bits)
    raw = tf.read(path, raw=True)
    assert raw.dtype == STORED[bits]
    np.testing.assert_array_equal(raw.numpy(), stored(data, bits))
    assert torch.equal(raw, cfitsio_image(path, raw=True))
    gz = gzip_file(path, tmp_path / "u.fits.gz")  # read through cfitsio's memory copy
    assert torch.equal(tf.read(gz), t)


@pytest.mark.parametrize("bits", BITS)
def test_image_cutouts(tmp_path, bits):
    data = values(bits, (41, 53), seed=2)
    path = write_astropy(tmp_path / "u.fits", data)
    boxes = [((0, 0), (41, 53), None), ((3, 5), (9, 17), None), ((1, 2), (13, 10), [3, 5]),
             ((40, 52), (1, 1), None)]
    with tf.open(path) as f:  # a handle kept open: cutouts copy from its mapping
        for start, shape, step in boxes:
            k = step or [1, 1]
            sl = tuple(slice(s, s + (n - 1) * j + 1, j) for s, n, j in zip(start, shape, k))
            cut = tf.read_cutout(path, 0, list(start), list(shape), step)
            assert_unsigned(cut, data[sl], bits)
            assert torch.equal(cut, cfitsio_image(path, 0, start, shape, step))
            assert torch.equal(f[0][sl], cut)


# ---- tables ----

def astropy_table(path, data, extra=()):
    """A binary table of uint columns written by astropy (TZEROn from the
    uint dtypes): scalar, repeat 3, and TDIM (2, 3) columns."""
    rec = np.zeros(len(data[16]), dtype=[(f"s{b}", UINT[b]) for b in BITS] +
                   [(f"v{b}", UINT[b], (3,)) for b in BITS] +
                   [(f"d{b}", UINT[b], (2, 3)) for b in BITS])
    for b in BITS:
        rec[f"s{b}"] = data[b][:, 0]
        rec[f"v{b}"] = data[b][:, :3]
        rec[f"d{b}"] = data[b].reshape(-1, 2, 3)
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU(rec)]).writeto(path)
    return str(path)


def fitsio_table(path, data):
    arrays = {}
    for b in data:
        arrays[f"s{b}"] = data[b][:, 0].copy()
        arrays[f"v{b}"] = data[b][:, :3].copy()
        arrays[f"d{b}"] = data[b].reshape(-1, 2, 3).copy()
    return write_table_fitsio(path, arrays)


@pytest.mark.parametrize("writer", ["astropy", "fitsio"])
def test_table_columns(tmp_path, writer):
    bits = BITS
    if writer == "fitsio" and not fitsio_writes_uint64(tmp_path):
        bits = [16, 32]  # fitsio 1.1.8: "unsupported type 'u8'"
    data = {b: values(b, (29, 6), seed=5) for b in bits}
    write = astropy_table if writer == "astropy" else fitsio_table
    path = write(tmp_path / "t.fits", data)
    hdr = fits.getheader(path, 1)  # fitsio writes TZERO 2^63 as a string
    zero = {hdr[f"TTYPE{i}"]: int(hdr[f"TZERO{i}"]) for i in range(1, hdr["TFIELDS"] + 1)}
    assert zero == {f"{kind}{b}": 2 ** (b - 1) for kind in "svd" for b in bits}
    with fits.open(path) as f:
        ref = {n: np.array(f[1].data[n]) for n in f[1].data.names}
    fast = ops.read_table(path, 1)                  # the block path
    slow = ops._read_table_cfitsio(path, 1)         # cfitsio's column reads
    info = {c.name: c for c in tf.table_info(path)[1]}
    for b in bits:
        for kind, want in (("s", data[b][:, 0]), ("v", data[b][:, :3]),
                           ("d", data[b].reshape(-1, 2, 3))):
            name = f"{kind}{b}"
            np.testing.assert_array_equal(ref[name], want)
            assert_unsigned(fast[name], ref[name], b)
            assert torch.equal(fast[name], slow[name]), name
            assert info[name].dtype == unsigned_dtype(b)
    # rows and columns picked: the same values
    wide = max(bits)
    got = tf.read_table(path, columns=[f"v{wide}", "S16"], rows=slice(3, 20, 4))
    assert list(got) == [f"v{wide}", "s16"]
    assert_unsigned(got[f"v{wide}"], data[wide][3:20:4, :3], wide)
    assert_unsigned(got["s16"], data[16][3:20:4, 0], 16)
    got = tf.read_table(path, columns=["d16"], rows=range(27, 29))
    assert_unsigned(got["d16"], data[16][27:29].reshape(-1, 2, 3), 16)


def test_table_uint64_nulls(tmp_path):
    """TNULL on a K column with TZERO 2^63: the null is the stored value
    -1, read as 2^63 - 1, which float64 cannot tell from 2^63."""
    data = np.array([0, 1, 2**63 - 1, 2**63, 2**64 - 1, 2**53 + 1, 2**63 - 1], dtype=np.uint64)
    col = fits.Column(name="n", format="K", bzero=2**63, null=-1, array=data)
    path = tmp_path / "n.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns([col])]).writeto(path)
    hdr = fits.getheader(path, 1)
    assert hdr["TNULL1"] == -1 and hdr["TZERO1"] == 2**63
    ref = fits.getdata(path, 1)["n"]
    np.testing.assert_array_equal(ref, data)
    null = data == 2**63 - 1
    t = tf.read_table(path)["n"]
    nulls = tf.read_table_nulls(path)["n"]
    np.testing.assert_array_equal(nulls.numpy(), null)
    slow = ops._read_table_cfitsio(str(path), 1)["n"]
    if HAS_UNSIGNED:  # integer nulls keep their value, as astropy gives them
        assert_unsigned(t, ref, 64)
        assert torch.equal(slow, t)
    else:  # float64: NaN, as for other scaled columns
        assert t.dtype == torch.float64
        np.testing.assert_array_equal(t.isnan().numpy(), null)
        np.testing.assert_array_equal(t.numpy()[~null], expected(ref[~null], 64))
        assert torch.equal(slow.nan_to_num(), t.nan_to_num())


def test_table_uint64_variable_length(tmp_path):
    """A PK column with TZERO 2^63: read through cfitsio (TULONGLONG)."""
    rows = [np.array([0, 2**64 - 1], np.uint64), np.zeros(0, np.uint64),
            np.array([2**63, 7, 2**53 + 1, 2**63 - 1], np.uint64)]
    cells = np.empty(3, dtype=object)
    cells[:] = [stored(r, 64) for r in rows]
    col = fits.Column(name="v", format="PK()", array=cells)
    path = tmp_path / "v.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns([col])]).writeto(path)
    # TZERO1 as a card of its own, after the column's (astropy would apply
    # it to the data it writes)
    raw = bytearray(path.read_bytes())
    at = next(i for i in range(2880, len(raw), 80) if raw[i:i + 8] == b"END     ")
    raw[at:at + 160] = b"TZERO1  =  9223372036854775808".ljust(80) + b"END".ljust(80)
    path.write_bytes(bytes(raw))
    got = tf.read_table(path)["v"]
    assert len(got) == 3
    for t, want in zip(got, rows):
        assert_unsigned(t, want, 64)
    assert tf.table_info(path)[1][0].dtype == unsigned_dtype(64)


# ---- tile-compressed images ----

@pytest.mark.parametrize("bits", [16, 32])
@pytest.mark.parametrize("algo", ["RICE_1", "GZIP_1", "GZIP_2", "HCOMPRESS_1"])
@pytest.mark.parametrize("writer", ["astropy", "fitsio"])
def test_compressed(tmp_path, bits, algo, writer):
    rng = np.random.default_rng(bits)
    # smooth values near both ends of the range, as a sky would give them
    base = np.linspace(0, np.iinfo(UINT[bits]).max, 64 * 80).reshape(64, 80)
    data = np.clip(base + rng.normal(0, 50, base.shape), 0, np.iinfo(UINT[bits]).max)
    data = data.astype(UINT[bits])
    data[0, :4] = [0, 1, np.iinfo(UINT[bits]).max, 1 << (bits - 1)]
    if algo == "HCOMPRESS_1" and bits == 32:
        # HCOMPRESS sums stored values in 32 bits: keep them (data - 2^31) small
        data = ((data.astype(np.int64) - 2**31) // 1024 + 2**31).astype(np.uint32)
    path = tmp_path / "c.fits"
    if writer == "astropy":
        write_compressed_astropy(path, data, algo, (16, 40))
    else:
        write_fitsio(path, data, compress=algo.split("_")[0] if algo != "GZIP_2" else "GZIP_2",
                     tile_dims=[16, 40])
    ref = reference(path, bits, hdu=1)
    np.testing.assert_array_equal(ref, data)
    assert tf.info(path)[1].dtype == unsigned_dtype(bits)
    t = tf.read(path, 1)
    assert_unsigned(t, ref, bits)
    cut = tf.read_cutout(path, 1, [5, 7], [20, 30], [2, 1])
    assert_unsigned(cut, ref[5:45:2, 7:37], bits)
    if bits == 32 and not HAS_UNSIGNED:
        return  # int64 output: cfitsio's tile decoder refuses it (test_compressed.py)
    assert torch.equal(t, ops._read_cfitsio(str(path), 1, [], [], None, False))
    assert torch.equal(cut, ops._read_cfitsio(str(path), 1, [5, 7], [20, 30], [2, 1], False))


def write_gzip_int64(path, data, unsigned):
    """A GZIP_1 tile-compressed image of 64-bit integers, one tile per
    row, built as a table: cfitsio (so fitsio and astropy 5.2) cannot write
    one; astropy 8 writes and reads them."""
    store = stored(data, 64) if unsigned else np.asarray(data, np.int64)
    cells = np.empty(len(store), dtype=object)
    cells[:] = [np.frombuffer(gzip.compress(r.astype(">i8").tobytes()), np.uint8) for r in store]
    hdu = fits.BinTableHDU.from_columns([fits.Column(name="COMPRESSED_DATA", format="1PB()",
                                                     array=cells)])
    cards = [("ZIMAGE", True), ("ZBITPIX", 64), ("ZNAXIS", 2), ("ZNAXIS1", store.shape[1]),
             ("ZNAXIS2", store.shape[0]), ("ZTILE1", store.shape[1]), ("ZTILE2", 1),
             ("ZCMPTYPE", "GZIP_1")]
    if unsigned:
        cards += [("BSCALE", 1), ("BZERO", 2**63)]
    for key, value in cards:
        hdu.header[key] = value
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    return str(path)


@pytest.mark.parametrize("unsigned", [True, False], ids=["uint64", "int64"])
def test_compressed_64_bit_refused(tmp_path, unsigned):
    """cfitsio cannot decode ZBITPIX 64 tiles (status 410; read as float64
    it returned the stored bytes taken as doubles): every read refuses
    them, naming the file and HDU; the HDU is still described."""
    data = values(64, (5, 9), seed=7) if unsigned else values(64, (5, 9), seed=7).view(np.int64)
    path = write_gzip_int64(tmp_path / "c64.fits", data, unsigned)
    try:
        with fits.open(path) as f:  # astropy 8 decodes them itself
            np.testing.assert_array_equal(f[1].data, data)
    except TypeError as e:  # astropy 5.2 decodes through cfitsio
        assert "unsupported datatype" in str(e)
    meta = tf.info(path)[1]
    assert meta.compressed and meta.bitpix == 64 and meta.shape == (5, 9)
    assert meta.dtype == (unsigned_dtype(64) if unsigned else torch.int64)
    match = r"c64\.fits: HDU 1: tile-compressed images of 64-bit integers \(ZBITPIX = 64\)"
    for read in (lambda: tf.read(path, 1), lambda: tf.read(path, 1, raw=True),
                 lambda: tf.read_cutout(path, 1, [1, 1], [2, 2]),
                 lambda: ops._read_cfitsio(path, 1, [], [], None, False),
                 lambda: ops.read_batch([path], 1)):
        with pytest.raises(NotImplementedError, match=match):
            read()
    with tf.open(path) as f:  # not taken as corrupt: the handle still reads HDU 0
        with pytest.raises(NotImplementedError):
            f[1].read()
        assert f[0].header["SIMPLE"] is True


@pytest.mark.parametrize("writer", ["astropy", "fitsio"])
def test_compressed_64_bit_writers(tmp_path, writer):
    """The writers of the other tests cannot make ZBITPIX 64 tiles, or
    make the ones test_compressed_64_bit_refused builds by hand."""
    data = values(64, (4, 7))
    path = tmp_path / "w.fits"
    try:
        if writer == "astropy":
            fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, compression_type="GZIP_1")]
                         ).writeto(path)
        else:
            write_fitsio(path, data, compress="GZIP")
    except (OSError, RuntimeError) as e:  # cfitsio: "writing TULONGLONG ... not supported"
        assert "not supported" in str(e) or "413" in str(e), e
        return
    except SystemError:  # fitsio 1.1.8 writes no uint64 image at all
        assert writer == "fitsio"
        return
    assert writer == "astropy"  # astropy 8
    assert tf.info(path)[1].dtype == unsigned_dtype(64)
    with pytest.raises(NotImplementedError, match="ZBITPIX = 64"):
        tf.read(path, 1)


# ---- read_into and read_batch ----

@pytest.mark.parametrize("bits", BITS)
def test_read_into(tmp_path, bits):
    data = values(bits, (9, 13), seed=11)
    path = write_astropy(tmp_path / "u.fits", data)
    out = torch.zeros(9, 13, dtype=unsigned_dtype(bits))
    ptr = out.data_ptr()
    assert ops.read_into(path, 0, out) is None and out.data_ptr() == ptr
    assert_unsigned(out, data, bits)
    assert torch.equal(out, tf.read(path))
    cut = torch.zeros(3, 4, dtype=unsigned_dtype(bits))
    ops.read_cutout_into(path, 0, [2, 1], cut, [3, 2])
    assert_unsigned(cut, data[2:9:3, 1:8:2], bits)
    raw = torch.zeros(9, 13, dtype=STORED[bits])
    ops.read_into(path, 0, raw, True)
    np.testing.assert_array_equal(raw.numpy(), stored(data, bits))
    # any other dtype is refused: the stored one, the fallback on a torch
    # that has the unsigned one, and the unsigned one's neighbours
    wrong = {STORED[bits], torch.int64, torch.float64, torch.float32} - {unsigned_dtype(bits)}
    for dtype in wrong:
        with pytest.raises(TypeError, match=r"u\.fits.*dtype"):
            ops.read_into(path, 0, torch.zeros(9, 13, dtype=dtype))


@pytest.mark.parametrize("bits", BITS)
def test_read_batch(tmp_path, bits):
    datas = [values(bits, (6, 11), seed=20 + i) for i in range(5)]
    fitsio_too = bits < 64 or fitsio_writes_uint64(tmp_path)
    paths = [write_image(tmp_path / f"b{i}.fits", d, "fitsio" if fitsio_too and i % 2 else "astropy")
             for i, d in enumerate(datas)]
    batch, ok = ops.read_batch(paths)
    assert bool(ok.all())
    assert_unsigned(batch, np.stack(datas), bits)
    for threads in (1, 3):
        assert torch.equal(ops.read_batch(paths, threads=threads)[0], batch)
    cut, _ = ops.read_batch(paths, 0, [1, 2], [4, 3], [1, 3])
    assert_unsigned(cut, np.stack(datas)[:, 1:5, 2:9:3], bits)
    out = torch.zeros(5, 4, 3, dtype=unsigned_dtype(bits))
    ok = ops.read_batch_into(paths, 0, out, [1, 2], [1, 3])
    assert bool(ok.all()) and torch.equal(out, cut)
    raw, _ = ops.read_batch(paths, 0, None, None, None, True)
    assert raw.dtype == STORED[bits]
    np.testing.assert_array_equal(raw.numpy(), np.stack([stored(d, bits) for d in datas]))
    # a file of the signed type in the same batch is refused, by name
    signed = write_astropy(tmp_path / "signed.fits", stored(datas[0], bits))
    with pytest.raises(ValueError, match=r"signed\.fits"):
        ops.read_batch(paths + [signed])
