"""cfitsio's fixed limits and unusual valid files (issue 17, findings 1, 2,
10 and 11 a-c): each reached a crash, an unbounded allocation or a wrong
refusal. Every test reads in a subprocess (isolated.run) under a timeout
and an address-space cap, checks the values against astropy (and fitsio)
where the file is valid and the error type and message where it is not,
and that the folder of input files is left as it was.

Files astropy cannot write (string rows of a megabyte, which astropy reads
in time and memory quadratic in the row's length; overlapping
variable-length arrays; more than 64 axes) are written here, block by
block, by `_raw`.
"""
import gzip
import hashlib
import inspect
import io
import json

import numpy as np
import pytest
from astropy.io import fits

from isolated import run, snapshot

BLOCK = 2880


# ---- a minimal FITS writer for what astropy cannot write ----

def _card(key, value=None):
    if value is None:
        text = f"{key:<8}"
    elif isinstance(value, bool):
        text = f"{key:<8}= {'T' if value else 'F':>20}"
    elif isinstance(value, (int, np.integer)):
        text = f"{key:<8}= {value:>20}"
    else:
        text = f"{key:<8}= " + f"'{value:<8}'"
    assert len(text) <= 80, text
    return text.ljust(80).encode("ascii")


def _header(cards):
    raw = b"".join(_card(*c) for c in cards) + _card("END")
    return raw + b" " * (-len(raw) % BLOCK)


def _pad(data):
    return data + b"\0" * (-len(data) % BLOCK)


def _primary():
    return _header([("SIMPLE", True), ("BITPIX", 8), ("NAXIS", 0), ("EXTEND", True)])


def _image(naxes, bitpix=16, extname=None, primary=False, data=None):
    """An image HDU; naxes in FITS order. Data: arange of the element type
    unless given."""
    cards = [("SIMPLE", True) if primary else ("XTENSION", "IMAGE"), ("BITPIX", bitpix),
             ("NAXIS", len(naxes))]
    cards += [(f"NAXIS{i}", n) for i, n in enumerate(naxes, 1)]
    cards += [("EXTEND", True)] if primary else [("PCOUNT", 0), ("GCOUNT", 1)]
    if extname:
        cards.append(("EXTNAME", extname))
    npix = int(np.prod(naxes)) if naxes else 0
    if data is None:
        dt = {8: ">u1", 16: ">i2", 32: ">i4", -32: ">f4"}[bitpix]
        data = (np.arange(npix) % 127).astype(dt).tobytes()
    return _header(cards) + _pad(data)


def _bintable(columns, nrows, rows, heap=b"", extname=None):
    """columns: [(name, tform)]; rows: the main table's bytes."""
    naxis1 = len(rows) // nrows if nrows else 0
    cards = [("XTENSION", "BINTABLE"), ("BITPIX", 8), ("NAXIS", 2), ("NAXIS1", naxis1),
             ("NAXIS2", nrows), ("PCOUNT", len(heap)), ("GCOUNT", 1),
             ("TFIELDS", len(columns))]
    for i, (name, tform) in enumerate(columns, 1):
        cards += [(f"TTYPE{i}", name), (f"TFORM{i}", tform)]
    if extname:
        cards.append(("EXTNAME", extname))
    return _header(cards) + _pad(rows + heap)


def _vla_table(arrays, code="A", extname=None):
    """One P column of the byte strings in `arrays`, laid out one after the
    other in the heap."""
    desc, heap = b"", b""
    for a in arrays:
        desc += np.array([len(a), len(heap)], ">i4").tobytes()
        heap += a
    longest = max((len(a) for a in arrays), default=0)
    return _bintable([("S", f"P{code}({longest})")], len(arrays), desc, heap, extname)


def _add_cards(raw, start, cards):
    """raw with `cards` put before the END of the header at byte `start`
    (a block more where they need it)."""
    raw = bytes(raw)
    end = raw.index(_card("END"), start)
    while (end - start) % 80:
        end = raw.index(_card("END"), end + 1)
    data = (end // BLOCK + 1) * BLOCK
    head = raw[start:end] + cards + _card("END")
    return raw[:start] + head + b" " * (-len(head) % BLOCK) + raw[data:]


def _isolated(code, folder, *args, gb=4, timeout=180):
    """Run `code` in a subprocess (address space `gb` GiB) that prints one
    JSON line last; the folder of inputs must be left unchanged."""
    before = snapshot(folder)
    r = run(code, *args, timeout=timeout, address_space_gb=gb)
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr[-3000:]}"
    assert snapshot(folder) == before, "the input folder changed"
    return json.loads(r.stdout.strip().splitlines()[-1])


# What a call raised, for the subprocesses: [type name, message] or None.
_PRELUDE = """
import json, sys, hashlib
import torch
import torchfits_ops as tf
ops = torch.ops.torchfits
def outcome(fn):
    try:
        v = fn()
        return ["ok", v]
    except Exception as e:
        return [type(e).__name__, str(e)]
"""


def _digest(b):
    return hashlib.sha256(bytes(b)).hexdigest()


def _text(b):
    """A string as read_table gives it (table.py's _text): trailing NULs,
    then trailing blanks removed, each byte a character."""
    blanks = b" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f" if max(b, default=0) < 128 else b" \t\n\r\x0b\x0c"
    return b.rstrip(b"\0").rstrip(blanks).decode("latin-1")


# ---- finding 1: long strings ----

def test_long_strings_read_without_cfitsio_string_buffers(tmp_path):
    """A PA row longer than cfitsio's 28,800-byte string buffer smashed the
    stack (SIGABRT from ~29,000 characters, SIGSEGV from ~60,000) on a valid
    file; fixed-width A columns and ASCII-table fields wider than it were
    refused or, through cfitsio's string reader, at risk. Every one reads,
    on both read paths, byte for byte."""
    d = tmp_path / "in"
    d.mkdir()
    rng = np.random.default_rng(17)
    lengths = [5, 30_000, 70_000, 1_000_000, 0, 3]
    rows = []
    for n in lengths:
        b = bytearray(rng.integers(32, 127, n, dtype=np.uint8).tobytes())
        if n > 10:
            b[n // 2] = 0          # a NUL inside is kept
            b[-4:] = b"  \0\0"      # trailing blanks and NULs are stripped in Python
        rows.append(bytes(b))
    (d / "pa.fits").write_bytes(_primary() + _vla_table(rows, extname="PA"))
    # astropy reads a PA row in time and memory quadratic in its length:
    # its reference is a file with one 30,000-character row (0.9 GB there)
    # astropy reads a PA row in time and memory quadratic in its length:
    # its reference is a file with one row of 30,000 printable characters
    # (0.9 GB there)
    long_row = bytes(rng.integers(33, 127, 30_000, dtype=np.uint8))
    (d / "pa30k.fits").write_bytes(_primary() + _vla_table([b"ab", long_row, b"c"]))
    width = 100_000
    fixed = b"".join(bytes([65 + i]) * (width - 7) + b"x\0y  \0\0" for i in range(3))
    (d / "wide_a.fits").write_bytes(_primary() + _bintable([("S", f"{width}A")], 3, fixed))
    w = 40_000
    acols = [fits.Column(name="N", format=f"I{w}", array=np.array([0, 7, -14])),
             fits.Column(name="S", format=f"A{w}", array=np.array(["p" * w, "q" * 5, "r" * (w - 1)]))]
    fits.HDUList([fits.PrimaryHDU(), fits.TableHDU.from_columns(acols)]).writeto(d / "ascii.fits")

    code = _PRELUDE + """
d = sys.argv[1]
out = {}
for name in ("pa", "pa30k", "wide_a", "ascii"):
    p = f"{d}/{name}.fits"
    fast = ops.read_table(p, 1, None, 0, -1)
    slow = ops._read_table_cfitsio(p, 1, None, 0, -1)
    py = tf.read_table(p, 1)
    out[name] = {
        "same": sorted(k for k in fast if torch.equal(fast[k], slow[k])),
        "keys": sorted(fast),
        "S": [hashlib.sha256(fast["S"][i].numpy().tobytes()).hexdigest()
              for i in range(fast["S"].shape[0])] if fast["S"].dim() == 2 else
             hashlib.sha256(fast["S"].numpy().tobytes()).hexdigest(),
        "offsets": fast["S.offsets"].tolist() if "S.offsets" in fast else None,
        "py": [hashlib.sha256(s.encode("latin-1")).hexdigest() for s in py["S"]],
        "N": fast["N"].tolist() if "N" in fast else None,
    }
print(json.dumps(out))
"""
    out = _isolated(code, d, d, gb=6)

    pa = out["pa"]
    assert pa["same"] == pa["keys"] == ["S", "S.offsets"]
    assert pa["offsets"] == np.cumsum([0] + lengths).tolist()
    assert pa["S"] == _digest(b"".join(rows))
    assert pa["py"] == [_digest(_text(r).encode("latin-1")) for r in rows]
    with fits.open(d / "pa30k.fits") as h:  # each row an array of characters
        ref = ["".join(c.decode() if isinstance(c, bytes) else str(c) for c in np.asarray(a).ravel())
               for a in h[1].data["S"]]
    assert ref[1] == long_row.decode()
    assert out["pa30k"]["py"] == [_digest(r.encode("latin-1")) for r in ref]

    wa = out["wide_a"]
    assert wa["same"] == wa["keys"] == ["S"]
    assert wa["S"] == [_digest(fixed[i * width:(i + 1) * width]) for i in range(3)]
    with fits.open(d / "wide_a.fits") as h:
        assert wa["py"] == [_digest(s.encode("latin-1")) for s in h[1].data["S"]]

    asc = out["ascii"]
    assert asc["same"] == asc["keys"] == ["N", "S"]
    with fits.open(d / "ascii.fits") as h:
        assert asc["N"] == h[1].data["N"].tolist() == [0, 7, -14]
        assert asc["py"] == [_digest(s.encode("latin-1")) for s in h[1].data["S"]]


# ---- finding 2: many axes ----

def test_many_axes(tmp_path):
    """NAXIS of 104 and more crashed every call that reached the HDU:
    cfitsio's header parse holds 99 axes. Such an extension is skipped and
    listed, the HDUs after it read; NAXIS 17 to 999 is TF_EUNSUPPORTED for
    that HDU only; past 999, TF_ECORRUPT; in the primary header (which
    cfitsio parses on open), TF_EUNSUPPORTED for the file."""
    d = tmp_path / "in"
    d.mkdir()
    first = _image([3, 2], primary=True)
    ok = _image([4, 5], bitpix=-32, extname="OK")
    for n in (17, 104, 999):
        (d / f"ext{n}.fits").write_bytes(first + _image([1] * n, bitpix=8, extname=f"AX{n}") + ok)
    (d / "ext1000.fits").write_bytes(first + _image([1] * 1000, bitpix=8) + ok)
    (d / "two.fits").write_bytes(first + _image([1] * 120, extname="A") +
                                 _image([1] * 200, extname="B") + ok)
    (d / "last.fits").write_bytes(first + ok + _image([1] * 100 + [3], bitpix=8, extname="LAST"))
    (d / "prim104.fits").write_bytes(_image([1] * 104, bitpix=8, primary=True) + ok)
    # a tile-compressed image of 7 axes (cfitsio reads at most 6): a 10x10
    # RICE_1 image given five more axes of 1
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(np.arange(100, dtype=np.int16).reshape(10, 10),
                                                       name="Z7"),
                  fits.ImageHDU(np.arange(20, dtype=">f4").reshape(5, 4), name="OK")]).writeto(buf)
    raw = bytearray(buf.getvalue())
    at = raw.index(b"ZNAXIS  =")
    raw[at:at + 80] = _card("ZNAXIS", 7)
    extra = b"".join(_card(f"ZNAXIS{i}", 1) + _card(f"ZTILE{i}", 1) for i in range(3, 8))
    (d / "z7.fits").write_bytes(_add_cards(raw, 2880, extra))
    # a TDIM of 17 axes: that column is refused, the others read
    tdim = "(" + ",".join(["2"] + ["1"] * 16) + ")"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns([
        fits.Column(name="A", format="J", array=np.arange(3)),
        fits.Column(name="T", format="2J", array=np.arange(6).reshape(3, 2))])]).writeto(d / "tdim17.fits")
    (d / "tdim17.fits").write_bytes(_add_cards((d / "tdim17.fits").read_bytes(), 2880,
                                               _card("TDIM2", tdim)))
    (d / "prim104.fits.gz").write_bytes(gzip.compress((d / "prim104.fits").read_bytes()))
    (d / "ext104.fits.gz").write_bytes(gzip.compress((d / "ext104.fits").read_bytes()))

    code = _PRELUDE + """
d = sys.argv[1]
out = {}
for name in ("ext17", "ext104", "ext999", "ext1000", "two", "last", "prim104",
             "prim104.fits.gz", "ext104.fits.gz"):
    p = f"{d}/{name}" if name.endswith(".gz") else f"{d}/{name}.fits"
    r = out[name] = {}
    r["info"] = outcome(lambda: [[h.kind, h.name, h.ver, list(h.shape), h.bitpix] for h in tf.info(p)])
    r["num"] = outcome(lambda: tf.num_hdus(p))
    r["reads"] = [outcome(lambda: tf.read(p, i).tolist()) for i in range(4)]
    r["headers"] = [outcome(lambda: [tf.read_header(p, i).get(k) for k in
                                     ("NAXIS", "BITPIX", "EXTNAME", "NAXIS1", "NAXIS104")])
                    for i in range(4)]
    r["ok"] = outcome(lambda: tf.read(p, "OK").tolist())
    r["neg"] = outcome(lambda: tf.read(p, -1).tolist())
    def opened():
        with tf.open(p) as f:
            kinds = [type(h).__name__ for h in f]
            return kinds, outcome(lambda: f[1].read()), f[len(f) - 1].read().tolist(), \\
                outcome(lambda: f[1].header["NAXIS"])
    r["open"] = outcome(opened)
p = f"{d}/z7.fits"
out["z7"] = [outcome(lambda: [[h.kind, h.name, h.bitpix] for h in tf.info(p)]),
             outcome(lambda: tf.read(p, 1)), outcome(lambda: tf.read(p, "OK").tolist()),
             outcome(lambda: tf.read_header(p, "Z7")["ZNAXIS"])]
p = f"{d}/tdim17.fits"
out["tdim17"] = [outcome(lambda: tf.table_info(p)), outcome(lambda: tf.read_table(p)),
                 outcome(lambda: ops.read_table(p, 1, ["A"], 0, -1)["A"].tolist())]
print(json.dumps(out))
"""
    out = _isolated(code, d, d, gb=4)

    with fits.open(d / "z7.fits") as h:
        ref_ok7 = h[2].data.tolist()
    assert out["z7"][0] == ["ok", [["image", "", 8], ["unsupported", "Z7", 16], ["image", "OK", -32]]]
    assert out["z7"][1] == ["NotImplementedError", f"{d}/z7.fits: HDU 1: ZNAXIS = 7: cfitsio reads "
                            "tile-compressed images of at most 6 axes [TF_EUNSUPPORTED]"]
    assert out["z7"][2] == ["ok", ref_ok7] and out["z7"][3] == ["ok", 7]
    with fits.open(d / "tdim17.fits") as h:  # valid: astropy reads it
        assert h[1].data["T"].ndim == 18 and h[1].data["A"].tolist() == [0, 1, 2]
    msg = (f"{d}/tdim17.fits: HDU 1: column 'T': TDIM2 = '{tdim}' has 17 axes; this reader reads "
           "at most 16 [TF_EUNSUPPORTED]")
    assert out["tdim17"][:2] == [["NotImplementedError", msg]] * 2
    assert out["tdim17"][2] == ["ok", [0, 1, 2]]

    with fits.open(d / "ext104.fits") as h:
        ref0, ref_ok = h[0].data.tolist(), h[2].data.tolist()
    for n in (17, 104, 999):
        r = out[f"ext{n}"]
        assert r["info"] == ["ok", [["image", "", 1, [2, 3], 16],
                                    ["unsupported", f"AX{n}", 1, [], 8],
                                    ["image", "OK", 1, [5, 4], -32]]]
        assert r["num"] == ["ok", 3]
        assert r["reads"][0] == ["ok", ref0] and r["reads"][2] == ["ok", ref_ok]
        assert r["ok"] == r["neg"] == ["ok", ref_ok]
        kind, msg = r["reads"][1]
        assert kind == "NotImplementedError" and msg.startswith(f"{d}/ext{n}.fits: HDU 1: NAXIS = {n}: ")
        assert "this reader reads images of at most 16 axes" in msg and msg.endswith("[TF_EUNSUPPORTED]")
        if n > 99:
            assert "cfitsio parses headers of at most 99" in msg
        assert r["reads"][3][0] == "IndexError" and "HDU 3 does not exist (the file has 3 HDUs)" in r["reads"][3][1]
        assert r["headers"][1] == ["ok", [n, 8, f"AX{n}", 1, 1 if n >= 104 else None]]
        assert r["open"] == ["ok", [["ImageHDU", "UnsupportedHDU", "ImageHDU"],
                                    ["NotImplementedError", msg], ref_ok, ["ok", n]]]
    with fits.open(d / "ext104.fits") as h:  # astropy reads the header too
        assert h[1].header["NAXIS"] == 104 and h[1].header["EXTNAME"] == "AX104"

    two = out["two"]
    assert [k[0] for k in two["info"][1]] == ["image", "unsupported", "unsupported", "image"]
    assert two["num"] == ["ok", 4] and two["reads"][3] == ["ok", ref_ok] == two["ok"]
    assert two["headers"][2] == ["ok", [200, 16, "B", 1, 1]]

    last = out["last"]  # the skipped HDU is the last one
    assert [k[0] for k in last["info"][1]] == ["image", "image", "unsupported"]
    assert last["num"] == ["ok", 3] and last["reads"][1] == ["ok", ref_ok]
    assert last["reads"][2][0] == "NotImplementedError" and last["headers"][2][1][2] == "LAST"

    kind, msg = out["ext1000"]["info"]
    assert kind == "FitsError" and "HDU 1: NAXIS = 1000: FITS allows 0 to 999 axes [TF_ECORRUPT]" in msg
    assert out["ext1000"]["reads"][0] == ["ok", ref0]  # HDU 0 is reached without HDU 1

    for name in ("prim104", "prim104.fits.gz"):
        for call in ("info", "num", "ok", "open"):
            kind, msg = out[name][call]
            assert kind == "NotImplementedError", (name, call, kind, msg)
            assert "HDU 0: NAXIS = 104 in the primary header" in msg and "no HDU of this file can be read" in msg
    assert out["ext104.fits.gz"]["info"] == out["ext104"]["info"]
    assert out["ext104.fits.gz"]["reads"][2] == ["ok", ref_ok]


# ---- finding 10: output bounded by the file ----

def test_table_output_bounded_by_the_file(tmp_path):
    """Overlapping variable-length arrays let a 1 MB file make read_table
    allocate rows x 1 MiB (2 GB for 2,000 rows, 20 GB for 20,000). A read
    produces at most 8 times the file's size unless table_max_mb allows
    more: TF_ELIMIT before anything is allocated, naming the file, HDU,
    column and size; and an allocation that fails names the file."""
    d = tmp_path / "in"
    d.mkdir()
    mib = 1 << 20
    heap = (np.arange(mib) % 251).astype(np.uint8).tobytes()

    def overlapping(rows, heap):
        desc = np.tile(np.array([len(heap), 0], ">i4"), rows).tobytes()
        return _primary() + _bintable([("V", f"PB({len(heap)})")], rows, desc, heap, "OVER")

    (d / "over2k.fits").write_bytes(overlapping(2000, heap))
    (d / "over20k.fits").write_bytes(overlapping(20000, heap))
    small = (np.arange(1000) % 7).astype(np.uint8).tobytes()
    (d / "over100.fits").write_bytes(overlapping(100, small))  # 100 KB from 8.6 KB
    # the same amount of data, not shared: reads under the default limit
    rng = np.random.default_rng(10)
    arrays = np.empty(50, dtype=object)
    arrays[:] = [rng.integers(0, 255, 1000 + i, dtype=np.uint8) for i in range(50)]
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
        [fits.Column(name="V", format="PB()", array=arrays)])]).writeto(d / "plain.fits")

    code = _PRELUDE + """
d = sys.argv[1]
out = {}
for name in ("over2k", "over20k", "over100"):
    p = f"{d}/{name}.fits"
    out[name] = [outcome(lambda: len(tf.read_table(p, 1)["V"])),
                 outcome(lambda: len(ops.read_table(p, 1, None, 0, -1))),
                 outcome(lambda: len(ops._read_table_cfitsio(p, 1, None, 0, -1))),
                 outcome(lambda: len(tf.read_table(p, "OVER", rows=slice(0, 3))["V"]))]
p = f"{d}/plain.fits"
out["plain"] = outcome(lambda: [v.tolist() for v in tf.read_table(p, 1)["V"]])
tf.set_table_max_mb(1)  # allows the 100 KB of over100
v = tf.read_table(f"{d}/over100.fits", 1)["V"]
out["over100_allowed"] = [len(v), all(torch.equal(x, v[0]) for x in v), v[0].tolist()]
tf.set_table_max_mb(1000)  # 1000 MiB: still short of 2000
out["over2k_still"] = outcome(lambda: tf.read_table(f"{d}/over2k.fits", 1))
tf.set_table_max_mb(100000)  # 20 GB is allowed now; the allocation fails
out["alloc"] = outcome(lambda: tf.read_table(f"{d}/over20k.fits", 1))
print(json.dumps(out))
"""
    out = _isolated(code, d, d, gb=4)

    for name, rows in (("over2k", 2000), ("over20k", 20000)):
        size = (d / f"{name}.fits").stat().st_size
        want = rows * mib + (rows + 1) * 8
        for kind, msg in out[name][:3]:
            assert kind == "RuntimeError", (kind, msg)
            assert msg == (f"{d}/{name}.fits: HDU 1: column 'V': the read would produce {want} "
                           f"bytes in all, more than the {8 * size} bytes a table read may produce "
                           f"(8 times the file's {size} bytes; variable-length arrays may share "
                           "heap bytes: torchfits_ops.set_table_max_mb or TORCHFITS_TABLE_MAX_MB "
                           "allows more) [TF_ELIMIT]")
        assert out[name][3] == ["ok", 3]  # a few rows are within the limit
    assert out["over100"][0][0] == "RuntimeError" and "[TF_ELIMIT]" in out["over100"][0][1]

    with fits.open(d / "plain.fits") as h:
        assert out["plain"] == ["ok", [a.tolist() for a in h[1].data["V"]]]
    with fits.open(d / "over100.fits") as h:  # astropy reads shared arrays too
        ref = h[1].data["V"]
        assert out["over100_allowed"] == [100, True, ref[0].tolist()]
        assert all(np.array_equal(r, ref[0]) for r in ref)
    kind, msg = out["over2k_still"]
    assert kind == "RuntimeError" and "more than the 1048576000 bytes a table read may produce " \
        "(the table_max_mb setting, 1000 MiB;" in msg
    kind, msg = out["alloc"]
    assert kind == "RuntimeError", (kind, msg)
    assert msg.startswith(f"{d}/over20k.fits: HDU 1: cannot allocate {20000 * mib} bytes for "
                          "column 'V' (") and msg.endswith("[TF_ENOMEM]"), msg


def test_image_allocation_failure_names_the_file(tmp_path):
    """An image output that cannot be allocated (a tile-compressed image
    of 2 GB of zeros in a 0.6 MB file: within the compression limit) names
    the file and HDU, not torch's allocator alone."""
    d = tmp_path / "in"
    d.mkdir()
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), _compressed(np.zeros((1000, 1000), np.int16), "RICE_1",
                                                 (1000, 1000), "BIG")]).writeto(buf)
    raw = bytearray(buf.getvalue())
    for key in ("ZNAXIS2", "ZTILE2"):  # one tile of 10^6 x 1000 pixels
        at = raw.index(key.ljust(8).encode() + b"=")
        raw[at:at + 80] = _card(key, 10 ** 6)
    (d / "big.fits").write_bytes(bytes(raw) + bytes(600_000))
    code = _PRELUDE + """
p = sys.argv[1] + "/big.fits"
print(json.dumps([outcome(lambda: list(tf.info(p)[1].shape)), outcome(lambda: tf.read(p, 1)),
                  outcome(lambda: tf.read(p, "BIG", device="cpu"))]))
"""
    out = _isolated(code, d, d, gb=1)
    assert out[0] == ["ok", [1000000, 1000]]
    for kind, msg in out[1:]:
        assert kind == "RuntimeError", (kind, msg)
        assert msg.startswith(f"{d}/big.fits: HDU 1: cannot allocate 2000000000 bytes for the "
                              "image (") and msg.endswith("[TF_ENOMEM]"), msg


# ---- finding 11a: ZTILE larger than the image ----

def _compressed(data, ctype, tile, name):
    """A CompImageHDU with `tile` in numpy order, on either astropy."""
    params = inspect.signature(fits.CompImageHDU).parameters
    if "tile_shape" in params:
        return fits.CompImageHDU(data, compression_type=ctype, tile_shape=tile, name=name)
    return fits.CompImageHDU(data, compression_type=ctype, tile_size=tile[::-1], name=name)


def test_tile_larger_than_the_image(tmp_path):
    """astropy writes the tile it is asked for, larger than the image; the
    tile check refused such a file as corrupt where astropy and fitsio read
    it. Clipped to the image: the same pixels as astropy and fitsio, whole
    and in cutouts, on both read paths, for every codec."""
    d = tmp_path / "in"
    d.mkdir()
    rng = np.random.default_rng(11)
    i16 = rng.integers(0, 1000, (50, 70)).astype(np.int16)
    f32 = (rng.standard_normal((50, 70)) * 10).astype(np.float32)
    cube = rng.integers(0, 1000, (3, 20, 30)).astype(np.int32)  # PLIO_1: >= 0
    hdus = [fits.PrimaryHDU()]
    cases = []
    for ctype in ("RICE_1", "GZIP_1", "GZIP_2", "HCOMPRESS_1", "PLIO_1"):
        hdus.append(_compressed(i16, ctype, (64, 128), ctype))
        cases.append((ctype, (50, 70)))
    hdus.append(_compressed(f32, "RICE_1", (64, 128), "FLOAT"))
    cases.append(("FLOAT", (50, 70)))
    for ctype in ("RICE_1", "GZIP_2", "PLIO_1"):  # ZTILE3 > NAXIS3 too
        hdus.append(_compressed(cube, ctype, (5, 32, 40), "CUBE_" + ctype))
        cases.append(("CUBE_" + ctype, (3, 20, 30)))
    p = d / "ztile.fits"
    fits.HDUList(hdus).writeto(p)
    with fits.open(p, disable_image_compression=True) as h:
        assert (h[1].header["ZTILE1"], h[1].header["ZTILE2"]) == (128, 64)
        assert h[7].header["ZTILE3"] == 5
    # a tile of 10^6 x 64: cfitsio would size its tile buffer from it
    raw = bytearray(p.read_bytes())
    at = raw.index(b"ZTILE1  =", raw.index(b"GZIP_2"))
    raw[at:at + 80] = _card("ZTILE1", 1000000)
    (d / "huge_tile.fits").write_bytes(bytes(raw))

    code = _PRELUDE + """
d, n = sys.argv[1], int(sys.argv[2])
out = {}
for name in ("ztile", "huge_tile"):
    p = f"{d}/{name}.fits"
    res = out[name] = []
    for i in range(1, n + 1):
        nd = len(tf.info(p)[i].shape)
        start, count, step = ([1, 2, 3], [2, 9, 7], [1, 2, 4]) if nd == 3 else ([5, 7], [20, 20], [2, 3])
        res.append([outcome(lambda: tf.read(p, i).tolist()),
                    outcome(lambda: ops._read_cfitsio(p, i, [], [], None, False).tolist()),
                    outcome(lambda: tf.read_cutout(p, i, start, count, step).tolist()),
                    outcome(lambda: ops._read_cfitsio(p, i, start, count, step, False).tolist())])
print(json.dumps(out))
"""
    out = _isolated(code, d, d, len(cases), gb=4)

    import fitsio
    for name in ("ztile", "huge_tile"):
        path = d / f"{name}.fits"
        with fits.open(path) as h:
            for i, (hdu, shape) in enumerate(cases, 1):
                ref = h[i].data
                assert ref.shape == shape
                sub = ref[1:3, 2:20:2, 3:30:4] if len(shape) == 3 else ref[5:45:2, 7:67:3]
                full, slow, cut, slow_cut = out[name][i - 1]
                for got, want in ((full, ref), (slow, ref), (cut, sub), (slow_cut, sub)):
                    assert got[0] == "ok", (name, hdu, got)
                    np.testing.assert_array_equal(np.array(got[1], dtype=ref.dtype), want)
                f = fitsio.FITS(str(path))
                np.testing.assert_array_equal(np.array(full[1], dtype=ref.dtype), f[i].read())
                np.testing.assert_array_equal(np.array(cut[1], dtype=ref.dtype),
                                              f[i][1:3, 2:20:2, 3:30:4] if len(shape) == 3
                                              else f[i][5:45:2, 7:67:3])
                f.close()


# ---- finding 11b: random groups ----

def test_random_groups_unsupported_not_corrupt(tmp_path):
    """Random groups are valid FITS: TF_EUNSUPPORTED for that HDU, named,
    listed by info(); the other HDUs of the file read as astropy reads them."""
    d = tmp_path / "in"
    d.mkdir()
    imdata = np.arange(10 * 2 * 3 * 4, dtype=np.float32).reshape(10, 1, 2, 3, 4)
    groups = fits.GroupsHDU(fits.GroupData(imdata, parnames=["abc", "xyz"], bitpix=-32,
                                           pardata=[np.arange(10.0), np.arange(10.0) * 2]))
    img = fits.ImageHDU(np.arange(6, dtype=">i2").reshape(2, 3), name="SCI")
    tab = fits.BinTableHDU.from_columns([fits.Column(name="X", format="J", array=np.arange(4))],
                                        name="TAB")
    fits.HDUList([groups, img, tab]).writeto(d / "groups.fits")

    code = _PRELUDE + """
p = sys.argv[1] + "/groups.fits"
out = {
    "info": outcome(lambda: [[h.kind, h.name, list(h.shape), h.bitpix] for h in tf.info(p)]),
    "num": outcome(lambda: tf.num_hdus(p)),
    "read0": outcome(lambda: tf.read(p, 0)),
    "raw0": outcome(lambda: ops.read(p, 0, True)),
    "sci": outcome(lambda: tf.read(p, "SCI").tolist()),
    "tab": outcome(lambda: tf.read_table(p, 2)["X"].tolist()),
    "header0": outcome(lambda: [tf.read_header(p, 0)[k] for k in ("GROUPS", "PCOUNT", "GCOUNT", "NAXIS1")]),
}
with tf.open(p) as f:  # one handle: the refusal leaves it usable
    out["open"] = [type(f[0]).__name__, outcome(lambda: f[0].read()), f[1].read().tolist(),
                   outcome(lambda: f[0].read()), f["TAB"]["X"].tolist()]
print(json.dumps(out))
"""
    out = _isolated(code, d, d, gb=4)
    with fits.open(d / "groups.fits") as h:
        sci, tab = h[1].data.tolist(), h[2].data["X"].tolist()
        assert h[0].header["GROUPS"] is True
    msg = f"{d}/groups.fits: HDU 0: random groups (GROUPS = T, NAXIS1 = 0) are not supported [TF_EUNSUPPORTED]"
    assert out["info"] == ["ok", [["unsupported", "", [], -32], ["image", "SCI", [2, 3], 16],
                                  ["binary_table", "TAB", [4], 0]]]
    assert out["num"] == ["ok", 3]
    assert out["read0"] == out["raw0"] == ["NotImplementedError", msg]
    assert out["sci"] == ["ok", sci] and out["tab"] == ["ok", tab]
    assert out["header0"] == ["ok", [True, 2, 10, 0]]
    assert out["open"] == ["UnsupportedHDU", ["NotImplementedError", msg], sci,
                           ["NotImplementedError", msg], tab]


# ---- finding 11c: an extension claiming more data than the file holds ----

@pytest.mark.filterwarnings("ignore:File may have been truncated")  # astropy's, below
@pytest.mark.parametrize("big", [False, True], ids=["small-file", "large-file"])
def test_extension_past_the_end_says_truncated(tmp_path, big):
    """info() and num_hdus() of a small file dropped an extension whose
    data runs past the end (cfitsio's memory driver refused to grow), and a
    read of it said "could not allocate memory". Every call that reaches it
    now says the file is truncated, and how; the HDUs before it read."""
    d = tmp_path / "in"
    d.mkdir()
    n = 30000 if big else 3  # a file over or under 64 KiB
    first, sci = _image([3, 2], primary=True), _image([n, 2], extname="SCI")
    claim = _image([10 ** 6, 2], extname="BIG")
    cut = claim[:BLOCK + 100]  # its header and 100 bytes of its 4,000,000
    (d / "last.fits").write_bytes(first + sci + cut)
    (d / "middle.fits").write_bytes(first + claim[:BLOCK] + _pad(b"\0" * 100) + sci)
    (d / "last.fits.gz").write_bytes(gzip.compress((d / "last.fits").read_bytes()))

    code = _PRELUDE + """
d = sys.argv[1]
out = {}
for name in ("last.fits", "middle.fits", "last.fits.gz"):
    p = f"{d}/{name}"
    out[name] = {
        "info": outcome(lambda: len(tf.info(p))),
        "num": outcome(lambda: tf.num_hdus(p)),
        "open": outcome(lambda: len(tf.open(p))),
        "read_big": outcome(lambda: tf.read(p, "BIG")),
        "read2": outcome(lambda: tf.read(p, 2).shape[0]),
        "header2": outcome(lambda: len(tf.read_header(p, 2))),
        "read0": outcome(lambda: tf.read(p, 0).tolist()),
        "read1": outcome(lambda: tf.read(p, 1).shape[0]),
    }
print(json.dumps(out))
"""
    out = _isolated(code, d, d, gb=4)
    size_last = len(first + sci + cut)
    for name, hdu, at, size in (("last.fits", 2, len(first + sci) + BLOCK, size_last),
                                ("middle.fits", 1, len(first) + BLOCK,
                                 (d / "middle.fits").stat().st_size),
                                ("last.fits.gz", 2, len(first + sci) + BLOCK, size_last)):
        r = out[name]
        msg = (f"{d}/{name}: HDU {hdu}: file is truncated: the header claims 4000000 bytes of "
               f"data from byte {at}, the file has {size} bytes [TF_ECORRUPT]")
        calls = ["info", "num", "open", "read_big", "header2"] + (["read2"] if hdu == 2 else ["read1", "read2"])
        for call in calls:
            assert r[call] == ["FitsError", msg], (name, call, r[call])
        assert r["read0"] == ["ok", [[0, 1, 2], [3, 4, 5]]]
        if hdu == 2:
            assert r["read1"] == ["ok", 2]
    with fits.open(d / "last.fits") as h:  # astropy lists it, warning of the cut
        assert len(h) == 3 and h[2].header["EXTNAME"] == "BIG"
