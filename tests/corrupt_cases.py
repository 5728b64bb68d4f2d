"""Damaged FITS files, built from well-formed ones that astropy and fitsio
wrote. Shared by the corruption suite (test_corruption.py), the sanitizer
replay (test_sanitize.py) and the fuzzer's seed corpus (fuzz/run.sh).

    base_files(dir)   -> {name: path}   the well-formed files
    cases(bases)      -> [Case]          every damaged variant, in memory
    write_seeds(dir)                     the base files, as fuzz seeds

Each Case holds the bytes and, where the damage makes it certain, the HDUs
whose data must not read without an error (truncated data).
"""
import os
import struct
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import numpy as np
from astropy.io import fits

import fitsgen

BLOCK = 2880
CARD = 80


@dataclass
class Case:
    name: str
    data: bytes
    # HDU numbers whose whole read (read, or read_table) must raise: their
    # data is cut.
    must_fail: Tuple[int, ...] = field(default_factory=tuple)


def _images(d):
    rng = np.random.default_rng(7)
    out = {}
    out["u8"] = fitsgen.write_astropy(os.path.join(d, "u8.fits"),
                                      rng.integers(0, 255, (40, 50), dtype=np.uint8))
    hdr = fits.Header()
    hdr["BSCALE"], hdr["BZERO"], hdr["BLANK"] = 0.5, 10.0, -32768
    data = rng.integers(-1000, 1000, (3, 20, 30)).astype(">i2")
    data[0, 0, :5] = -32768
    h = fits.PrimaryHDU(data, header=hdr)
    h.header["BSCALE"], h.header["BZERO"], h.header["BLANK"] = 0.5, 10.0, -32768
    fits.HDUList([h]).writeto(os.path.join(d, "i16_scaled.fits"), overwrite=True)
    out["i16_scaled"] = os.path.join(d, "i16_scaled.fits")
    out["u16"] = fitsgen.write_astropy(os.path.join(d, "u16.fits"),
                                       rng.integers(0, 65535, (33, 31)).astype(np.uint16))
    out["f32"] = fitsgen.write_astropy(os.path.join(d, "f32.fits"),
                                       fitsgen.random_array((64, 45), -32, seed=3))
    out["f64_1d"] = fitsgen.write_astropy(os.path.join(d, "f64_1d.fits"),
                                          fitsgen.random_array((1000,), -64, seed=4))
    out["i64"] = fitsgen.write_fitsio(os.path.join(d, "i64.fits"),
                                      rng.integers(-2**40, 2**40, (20, 21)).astype(np.int64))
    out["mef"] = fitsgen.write_multi_extension(os.path.join(d, "mef.fits"))
    return out


def _tables(d):
    rng = np.random.default_rng(8)
    n = 60
    cols = [
        fits.Column(name="I", format="J", array=np.arange(n, dtype=np.int32)),
        fits.Column(name="D", format="D", array=rng.standard_normal(n)),
        fits.Column(name="S", format="8A", array=np.array([f"s{i}" for i in range(n)])),
        fits.Column(name="M", format="6E", dim="(3,2)", array=rng.random((n, 2, 3)).astype("f4")),
        fits.Column(name="V", format="PJ()",
                    array=np.array([np.arange(i % 7, dtype=np.int32) for i in range(n)], dtype=object)),
        fits.Column(name="W", format="QD()",
                    array=np.array([rng.random(i % 5) for i in range(n)], dtype=object)),
    ]
    tab = fits.BinTableHDU.from_columns(cols, name="VLA")
    img = fits.ImageHDU(rng.random((10, 10)).astype(">f4"), name="AFTER")
    p = os.path.join(d, "table_vla.fits")
    fits.HDUList([fits.PrimaryHDU(), tab, img]).writeto(p, overwrite=True)
    acols = [fits.Column(name="A", format="I6", array=np.arange(n)),
             fits.Column(name="B", format="E12.4", array=rng.random(n))]
    q = os.path.join(d, "ascii.fits")
    fits.HDUList([fits.PrimaryHDU(), fits.TableHDU.from_columns(acols, name="ASC")]).writeto(q, overwrite=True)
    return {"table_vla": p, "ascii": q}


def _compressed(d):
    rng = np.random.default_rng(9)
    out = {}
    ints = rng.integers(0, 500, (64, 48)).astype(np.int32)
    floats = rng.standard_normal((64, 48)).astype(np.float32)
    for kind in ("RICE", "GZIP", "GZIP_2", "HCOMPRESS", "PLIO"):
        data = ints if kind == "PLIO" else floats if kind == "HCOMPRESS" else ints.astype(np.int16)
        out[f"comp_{kind.lower()}"] = fitsgen.write_fitsio(
            os.path.join(d, f"comp_{kind.lower()}.fits"), data, compress=kind, tile_dims=[16, 48])
    out["comp_float_q"] = fitsgen.write_fitsio(os.path.join(d, "comp_float_q.fits"), floats,
                                               compress="RICE", tile_dims=[8, 48])
    out["gz"] = fitsgen.gzip_file(out["f32"], os.path.join(d, "f32.fits.gz")) if "f32" in out else None
    if out["gz"] is None:
        del out["gz"]
    return out


def base_files(d) -> Dict[str, str]:
    os.makedirs(d, exist_ok=True)
    out = _images(d)
    out.update(_tables(d))
    out.update(_compressed(d))
    out["gz"] = fitsgen.gzip_file(out["f32"], os.path.join(d, "f32.fits.gz"))
    return out


def write_seeds(d):
    out = base_files(d)
    compressed_dot_z(out["f32"], os.path.join(d, "f32.fits.Z"))


def compressed_dot_z(src, dst, extra_zeros=0):
    """src packed by Unix compress (Debian: ncompress), with extra_zeros
    zero bytes after it; None without compress."""
    import shutil
    import subprocess

    if not shutil.which("compress"):
        return None
    with open(src, "rb") as fin, open(dst, "wb") as out:
        proc = subprocess.Popen(["compress", "-c"], stdin=subprocess.PIPE, stdout=out)
        proc.stdin.write(fin.read())
        chunk = bytes(1 << 20)
        for _ in range(extra_zeros >> 20):
            proc.stdin.write(chunk)
        proc.stdin.close()
        assert proc.wait() in (0, 2)  # 2: the output is no smaller
    return dst


# ---- layout of a well-formed file ----

def hdu_layout(data: bytes):
    """[(header_start, data_start, data_bytes)] per HDU, read from the cards
    (data_bytes without padding)."""
    out, pos = [], 0
    while pos + BLOCK <= len(data):
        cards, p = {}, pos
        while True:
            if p + CARD > len(data):
                return out
            card = data[p:p + CARD].decode("ascii", "replace")
            p += CARD
            key = card[:8].strip()
            if key == "END":
                break
            if card[8:10] == "= " and key not in cards:
                cards[key] = card[10:].split("/")[0].strip()
        dstart = -(-p // BLOCK) * BLOCK
        naxis = int(cards.get("NAXIS", 0))
        n = 1 if naxis else 0
        for i in range(1, naxis + 1):
            n *= int(cards[f"NAXIS{i}"])
        nbytes = abs(int(cards["BITPIX"])) // 8 * int(cards.get("GCOUNT", 1)) * (
            int(cards.get("PCOUNT", 0)) + n)
        out.append((pos, dstart, nbytes))
        pos = dstart + -(-nbytes // BLOCK) * BLOCK
    return out


def _whole_read_hdus(path):
    """HDU numbers whose data a whole read touches to its last byte:
    images with data, compressed images, and tables with rows (whose last
    row holds a variable-length array, when there is a heap)."""
    with fits.open(path) as hl:
        return [i for i, h in enumerate(hl)
                if isinstance(h, fits.CompImageHDU) or h.header.get("NAXIS", 0) and (
                    h.is_image or h.header.get("NAXIS2", 0))]


# ---- damage ----

def truncations(name, data, whole):
    """Cuts at every block boundary and in the middle of every block."""
    lay = hdu_layout(data)
    for cut in sorted({*range(0, len(data), BLOCK), *range(BLOCK // 2, len(data), BLOCK),
                       *range(BLOCK - 1, len(data), BLOCK)}):
        if cut >= len(data):
            continue
        fail = tuple(i for i, (_, ds, nb) in enumerate(lay) if i in whole and nb and cut < ds + nb)
        yield Case(f"{name}-trunc{cut}", data[:cut], fail)


def _find_card(data, hstart, key):
    p = hstart
    while p + CARD <= len(data):
        k = data[p:p + 8].decode("ascii", "replace").strip()
        if k == key:
            return p
        if k == "END":
            return -1
        p += CARD
    return -1


def set_card(data, hstart, key, value):
    """Rewrite `key = value` in the header starting at hstart; None when the
    key is absent."""
    p = _find_card(data, hstart, key)
    if p < 0:
        return None
    card = f"{key:<8}= {value:>20}".ljust(CARD)[:CARD].encode("ascii")
    return data[:p] + card + data[p + CARD:]


def add_card(data, hstart, card_text):
    """Put a card where END is and END one card later (if the block has room)."""
    p = _find_card(data, hstart, "END")
    if p < 0 or (p + CARD) % BLOCK == 0:
        return None
    card = card_text.ljust(CARD)[:CARD].encode("ascii")
    end = "END".ljust(CARD).encode("ascii")
    return data[:p] + card + end + data[p + 2 * CARD:]


HUGE = ["-1", "-9223372036854775808", "1000000000000", "9223372036854775807",
        "4294967297", "'abc'", "1.5", "T", ""]

IMAGE_EDITS = [("NAXIS", v) for v in ["-1", "0", "17", "999", "'x'", "99999999999", ""]] + \
              [("NAXIS1", v) for v in HUGE] + [("NAXIS2", v) for v in HUGE[:5]] + \
              [("BITPIX", v) for v in ["0", "7", "12", "-16", "128", "'X'", "-9999999999", "F"]] + \
              [("BSCALE", v) for v in ["0", "'abc'", "1e400", "NaN"]] + \
              [("BZERO", v) for v in ["'x'", "-1e308", "1e400"]] + \
              [("BLANK", v) for v in ["'x'", "1.5", "99999999999999999999"]] + \
              [("SIMPLE", "F"), ("SIMPLE", "'T'"), ("EXTEND", "'x'")]

TABLE_EDITS = [("TFORM1", v) for v in ["'Q'", "'999999999999E'", "'-1J'", "'PJ('", "'0J'", "'2147483648J'", "'Z'", "5"]] + \
              [("TFORM5", v) for v in ["'PJ(99999999999)'", "'QJ'", "'PZ()'", "'1PJ(-1)'", "'2PJ()'"]] + \
              [("TDIM4", v) for v in ["'(1000,1000)'", "'(a)'", "'(-1,2)'", "'(3,2'", "'()'", "'(9223372036854775807,2)'"]] + \
              [("THEAP", v) for v in ["-1", "0", "1000000000000", "'x'", "9223372036854775807"]] + \
              [("PCOUNT", v) for v in ["-1", "1000000000000", "'x'", "0", "9223372036854775807"]] + \
              [("GCOUNT", v) for v in ["0", "2", "-1"]] + \
              [("NAXIS1", v) for v in ["0", "1", "-8", "100000000", "999999999999"]] + \
              [("NAXIS2", v) for v in ["-1", "1000000000000", "61", "9223372036854775807"]] + \
              [("TFIELDS", v) for v in ["0", "-1", "999", "1000000", "'x'"]] + \
              [("TSCAL1", "0"), ("TZERO1", "'x'"), ("TNULL1", "'x'"), ("XTENSION", "'FOO'"),
               ("XTENSION", "'IMAGE'"), ("XTENSION", "'TABLE'"), ("EXTNAME", "5")]

COMPRESSED_EDITS = [("ZCMPTYPE", v) for v in ["'GARBAGE'", "'RICE_ONE'", "''", "5", "'GZIP_1'", "'PLIO_1'", "'HCOMPRESS_1'", "'NOCOMPRESS'"]] + \
                   [("ZBITPIX", v) for v in ["7", "0", "'x'", "-64", "64"]] + \
                   [("ZNAXIS", v) for v in ["0", "-1", "99", "3"]] + \
                   [("ZNAXIS1", v) for v in HUGE[:5]] + [("ZNAXIS2", v) for v in HUGE[:5]] + \
                   [("ZTILE1", v) for v in ["0", "-1", "1000000000", "1000000000000"]] + \
                   [("ZTILE2", v) for v in ["0", "1000000000", "7"]] + \
                   [("ZVAL1", v) for v in ["0", "-1", "1000000", "'x'"]] + \
                   [("ZVAL2", v) for v in ["0", "-1", "1000000"]] + \
                   [("ZQUANTIZ", "'BOGUS'"), ("ZDITHER0", "-5"), ("ZDITHER0", "100000000"),
                    ("ZSCALE", "0"), ("ZZERO", "'x'"), ("TFORM1", "'1PB(0)'"), ("TFORM1", "'1QB'"),
                    ("TFORM1", "'1PJ(99999999)'"), ("ZIMAGE", "F"), ("ZIMAGE", "'T'")]


def header_damage(name, data, kind):
    lay = hdu_layout(data)
    edits = IMAGE_EDITS if kind == "image" else TABLE_EDITS if kind == "table" else COMPRESSED_EDITS
    for h, (hstart, _, _) in enumerate(lay):
        for key, value in edits:
            new = set_card(data, hstart, key, value)
            if new is None and key == "THEAP" and _find_card(data, hstart, "TFIELDS") >= 0:
                new = add_card(data, hstart, f"{key:<8}= {value:>20}")  # astropy omits it
            if new is not None:
                yield Case(f"{name}-h{h}-{key}={value}", new)
        # A duplicated keyword with another value; the first one wins.
        for key in ("NAXIS1", "BITPIX", "NAXIS", "PCOUNT", "TFORM1", "ZCMPTYPE"):
            p = _find_card(data, hstart, key)
            if p >= 0:
                new = add_card(data, hstart, f"{key:<8}= {'99999999':>20}")
                if new is not None:
                    yield Case(f"{name}-h{h}-dup-{key}", new)
        # Missing END: every END-and-padding card blanked.
        p = _find_card(data, hstart, "END")
        if p >= 0:
            yield Case(f"{name}-h{h}-noEND", data[:p] + b" " * CARD + data[p + CARD:])
            yield Case(f"{name}-h{h}-END-garbage", data[:p] + b"\x00\xff" * (CARD // 2) + data[p + CARD:])
        # A non-numeric byte in the middle of a header value, non-ASCII in a key.
        yield Case(f"{name}-h{h}-binary-header",
                   data[:hstart + 3 * CARD] + bytes(range(128, 208)) + data[hstart + 4 * CARD:])


def byte_flips(name, data, seed, n_cases=12):
    """Random bytes changed in the data and heap (past the first header)."""
    lay = hdu_layout(data)
    rng = np.random.default_rng(seed)
    regions = [(ds, ds + nb) for _, ds, nb in lay if nb > 0]
    if not regions:
        return
    for k in range(n_cases):
        buf = bytearray(data)
        lo, hi = regions[k % len(regions)]
        # The heap is the tail of a table's data: bias half the cases to it.
        if k % 2:
            lo = max(lo, hi - (hi - lo) // 3)
        for pos in rng.integers(lo, hi, size=1 + k % 8):
            buf[pos] = int(rng.integers(0, 256))
        yield Case(f"{name}-flip{k}", bytes(buf))


KIND = {"table_vla": "table", "ascii": "table", "mef": "image"}


def cases(bases: Dict[str, str]) -> List[Case]:
    out = []
    for i, (name, path) in enumerate(sorted(bases.items())):
        with open(path, "rb") as fh:
            data = fh.read()
        if name == "gz":
            out += [Case(f"gz-trunc{c}", data[:c]) for c in range(0, len(data), max(1, len(data) // 16))]
            continue
        out += truncations(name, data, _whole_read_hdus(path))
        kind = "compressed" if name.startswith("comp") else KIND.get(name, "image")
        out += header_damage(name, data, kind)
        if kind != "image":
            out += header_damage(name, data, "image")  # NAXIS/BITPIX of the table HDU too
        out += byte_flips(name, data, seed=i)
    # Not FITS at all.
    out += [Case("empty", b""), Case("one-byte", b"S"), Case("simple-only", b"SIMPLE  =" + b" " * 71),
            Case("zeros", b"\0" * BLOCK), Case("gz-garbage", b"\x1f\x8b" + b"\0" * 100),
            Case("zip-garbage", b"PK\x03\x04" + b"\0" * 100)]
    return out
