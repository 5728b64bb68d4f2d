"""Header variants of tile-compressed images, tables and plain images, for
the replay driver.

    python3 fuzz/header_variants.py DIR [EVERY]   (or: fuzz/run.sh variants)

Writes, for RICE_1 (integer and quantized float), GZIP_1, GZIP_2,
HCOMPRESS_1 and PLIO_1 files, a binary table with every kind of column, an
ASCII table, and plain images (BITPIX 16, 8 and -32 in the primary HDU,
which the fast open parses without cfitsio, and BITPIX 32 in an IMAGE
extension), all as astropy wrote them, a table of strings longer than
cfitsio's string buffer, and an image extension of 104 axes (written here),
each keyword below given
each odd value below, in eight ways: in place, with
no blank after the "=", with the "=" a column late, behind HIERARCH, with
the name in lower case, twice with the odd value first, twice with it last,
and moved to the end of the header. cfitsio reads keywords in any case,
from column 10 or after an "=" in any column, behind HIERARCH too,
wherever they are, and takes either card of a pair; the guard
(csrc/core/file/guard.c) must refuse what cfitsio would crash on, and both
read paths must agree on the rest. The replay driver walks every file
under ASan/UBSan. About 63,000 files, 1.1 GB; five minutes to replay here. EVERY n writes every n-th only (the test
suite replays every 16th).
"""
import io
import os
import sys

import numpy as np
from astropy.io import fits

VALUES = ["0", "-1", "1", "3", "7", "2147483648", "9223372036854775807", "-9223372036854775808",
          "xx", "\xff" * 40 + "64", "0   32", "16.5", "1E1", "'16'", "T", "F", "", "'RICE_1'",
          "'HCOMPRESS_1'", "'PLIO_1'", "'GZIP_1'", "'NONE'", "'SUBTRACTIVE_DITHER_2'", "-64",
          "-32", "64", "8", "100000"]
KEYS = ["ZBITPIX", "ZNAXIS", "ZNAXIS1", "ZNAXIS2", "ZTILE1", "ZTILE2", "ZVAL1", "ZVAL2",
        "ZNAME1", "ZNAME2", "ZCMPTYPE", "ZQUANTIZ", "ZDITHER0", "ZBLANK", "ZIMAGE", "ZSIMPLE",
        "TFORM1", "TFORM2", "TTYPE1", "TTYPE2", "NAXIS1", "NAXIS2", "PCOUNT", "THEAP", "TFIELDS",
        "ZSCALE", "ZZERO", "BSCALE", "BZERO", "BLANK"]
PADDING = 40  # HISTORY cards: room for duplicates and moved cards


TABLE_VALUES = VALUES + ["'1PJ(999999999)'", "'0A'", "'-1J'", "'100000000E'", "'2X'",
                        "'QD(-1)'", "'(0,0)'", "'(100,100)'", "'J'", "'PB'", "'1Q'", "'8A'",
                        "'3L'", "'(3,2)'"]
TABLE_KEYS = ["TFORM1", "TFORM2", "TFORM3", "TFORM4", "TFORM5", "TFORM6", "TFORM7", "TFORM8",
              "TTYPE1", "TTYPE3", "TDIM4", "TSCAL1", "TZERO1", "TNULL1", "THEAP", "PCOUNT",
              "NAXIS1", "NAXIS2", "TFIELDS", "GCOUNT"]

# Plain images, in the primary HDU (which the fast open parses without
# cfitsio) and in an IMAGE extension.
IMAGE_VALUES = VALUES + ["16", "32", "-16", "20", "32768", "1.5", "-0.0", "1E400", "'IMAGE'",
                         "'BINTABLE'", "'TABLE'", "'A3DTABLE'", "'FOO'", "2880", "1000000000000"]
IMAGE_KEYS = ["SIMPLE", "XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "NAXIS3", "EXTEND",
              "BSCALE", "BZERO", "BLANK", "GROUPS", "PCOUNT", "GCOUNT"]

# ASCII tables: the fields' widths and places are keywords too.
ASCII_VALUES = VALUES + ["'I10'", "'I0'", "'I20'", "'F10.3'", "'F5.9'", "'E15.7'", "'E-1.2'",
                         "'D25.17'", "'A8'", "'A100000'", "'A0'", "'J'", "10", "80", "81",
                         "'  -5'", "'*'"]
ASCII_KEYS = ["TFORM1", "TFORM2", "TFORM3", "TFORM4", "TFORM5", "TBCOL1", "TBCOL2", "TBCOL3",
              "TBCOL5", "TNULL1", "TNULL3", "TSCAL1", "TZERO1", "TSCAL3", "NAXIS1", "NAXIS2",
              "TFIELDS", "PCOUNT", "GCOUNT"]


def card(key, value, blank=True):
    text = key.ljust(8) + ("= " + value.rjust(20) if blank else "=" + value)
    return text.ljust(80)[:80].encode("latin-1")


def card_late(key, value):
    """The "=" in column 10, not 9: no value to the standard, one to cfitsio."""
    return (key.ljust(8) + " = " + value.rjust(20)).ljust(80)[:80].encode("latin-1")


def card_hierarch(key, value):
    return ("HIERARCH " + key + " = " + value).ljust(80)[:80].encode("latin-1")


def compressed(data, algo, **kw):
    """A CompImageHDU with 16x16 tiles (astropy >= 5.3 says tile_shape,
    older ones tile_size: the same for square tiles)."""
    import inspect
    params = inspect.signature(fits.CompImageHDU.__init__).parameters
    kw["tile_shape" if "tile_shape" in params else "tile_size"] = (16, 16)
    return fits.CompImageHDU(data, compression_type=algo, **kw)


def table(rng):
    """A binary table with every kind of column: J with a TNULL (scaled in
    bases()), D, 8A, 6E shaped (3,2), PJ and QD variable-length arrays, 3L,
    12X."""
    n = 60
    vla = np.empty(n, dtype=object)
    vla[:] = [np.arange(k % 7, dtype=">i4") for k in range(n)]
    vld = np.empty(n, dtype=object)
    vld[:] = [np.ones(k % 5, dtype=">f8") for k in range(n)]
    cols = [fits.Column(name="I", format="J", array=np.arange(n, dtype=">i4"), null=-1),
            fits.Column(name="D", format="D", array=rng.standard_normal(n)),
            fits.Column(name="S", format="8A", array=np.array([b"row%d" % k for k in range(n)])),
            fits.Column(name="M", format="6E", dim="(3,2)", array=np.ones((n, 2, 3), ">f4")),
            fits.Column(name="V", format="PJ()", array=vla),
            fits.Column(name="W", format="QD()", array=vld),
            fits.Column(name="L", format="3L", array=np.ones((n, 3), bool)),
            fits.Column(name="B", format="12X", array=np.zeros((n, 12), bool))]
    return fits.BinTableHDU.from_columns(cols)


def ascii_table(rng):
    """An ASCII table: I with a TNULL, F, E, D and A fields (scaled in
    bases())."""
    n = 40
    cols = [fits.Column(name="I", format="I8", array=np.arange(n), null="-99"),
            fits.Column(name="F", format="F12.4", array=rng.standard_normal(n)),
            fits.Column(name="E", format="E15.7", array=rng.standard_normal(n), null="NAN"),
            fits.Column(name="D", format="D25.17", array=rng.standard_normal(n)),
            fits.Column(name="S", format="A6", array=np.array([b"r%d" % k for k in range(n)]))]
    return fits.TableHDU.from_columns(cols)


def image_hdus(rng, algo):
    """The HDUs of a plain-image base: the image is the primary HDU, or the
    first extension after an empty primary."""
    if algo == "image_i16":
        return [fits.PrimaryHDU((rng.standard_normal((64, 80)) * 50).astype(np.int16))]
    if algo == "image_u8":
        return [fits.PrimaryHDU(rng.integers(0, 255, (30, 40)).astype(np.uint8))]
    if algo == "image_f32":
        return [fits.PrimaryHDU(rng.standard_normal((4, 16, 20)).astype(np.float32))]
    return [fits.PrimaryHDU(), fits.ImageHDU(rng.integers(-2**31, 2**31 - 1, (20, 30),
                                                          dtype=np.int64).astype(np.int32))]


# An image extension of 104 axes (each 1; FITS allows 999, cfitsio's
# header parse holds 99 and crashed past that) between two small images,
# written here: astropy makes no array of more than 64 axes. The guard
# must skip it, or refuse what its cards make of it, and the HDUs after it
# stay readable.
MANY_AXES_VALUES = VALUES + ["16", "99", "100", "103", "104", "105", "999", "1000", "'IMAGE'",
                             "'BINTABLE'", "'FOO'"]
MANY_AXES_KEYS = ["XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "NAXIS99", "NAXIS104",
                  "PCOUNT", "GCOUNT", "GROUPS", "EXTNAME"]


def raw_header(cards):
    raw = b"".join(cards) + b"END".ljust(80)
    return raw + b" " * (-len(raw) % 2880)


def many_axes(rng):
    """Bytes of: an empty primary, the 104-axis image, a small image."""
    out = io.BytesIO()
    fits.PrimaryHDU().writeto(out)
    cards = [card("XTENSION", "'IMAGE   '"), card("BITPIX", "16"), card("NAXIS", "104")]
    cards += [card(f"NAXIS{i}", "1") for i in range(1, 105)]
    cards += [card("PCOUNT", "0"), card("GCOUNT", "1"), card("EXTNAME", "'MANY    '")]
    cards += [f"HISTORY padding {k}".ljust(80).encode() for k in range(PADDING)]
    after = io.BytesIO()
    fits.ImageHDU(rng.integers(0, 100, (6, 7)).astype(np.int16), name="AFTER").writeto(after)
    data = b"\0\7" + b"\0" * 2878
    return out.getvalue() + raw_header(cards) + data + after.getvalue()[2880:]


# A table of long strings: a PA column whose rows pass cfitsio's 28,800-byte
# string buffer (one of 30,000 characters smashed its stack), and a fixed
# A column as wide.
LONG_VALUES = TABLE_VALUES + ["'1PA(30000)'", "'1QA(30000)'", "'30000A'", "'1PA'", "'30008A'",
                              "'29999A'", "30008", "60016", "'(100,300)'"]
LONG_KEYS = ["TFORM1", "TFORM2", "TDIM2", "NAXIS1", "NAXIS2", "PCOUNT", "THEAP"]


def long_strings(rng):
    n, width = 2, 30000
    pa = np.empty(n, dtype=object)
    pa[:] = [b"x" * 30000, b"short"]
    cols = [fits.Column(name="P", format="PA(30000)", array=pa),
            fits.Column(name="A", format=f"{width}A",
                        array=np.array([b"a" * width, b"b" * (width - 9)]))]
    return fits.BinTableHDU.from_columns(cols)


# Cards put in after astropy wrote the file (it would rescale the data):
# into the HISTORY slots PADDING - 2 and PADDING - 3.
SCALING = {"table": [card("TSCAL1", "2.0"), card("TZERO1", "10.0")],
           "ascii": [card("TSCAL1", "2.0"), card("TZERO1", "10.0")],
           "image_i16": [card("BSCALE", "2.0"), card("BZERO", "10.0")],
           "image_u8": [card("BLANK", "255"), card("BZERO", "-128")],
           "image_f32": [card("BSCALE", "0.5"), card("BZERO", "1.0")],
           "image_ext": [card("BLANK", "-2147483648"), card("BZERO", "2147483648")]}


def bases():
    """(name, file bytes, keys, values, header start) of each base file:
    the keys are looked for, and the HISTORY slots are, in the header that
    starts at that byte."""
    rng = np.random.default_rng(1)
    ints = (rng.standard_normal((64, 80)) * 50).astype(np.int16)
    for algo in ["RICE_1", "GZIP_1", "GZIP_2", "HCOMPRESS_1", "PLIO_1", "RICE_1 float", "table",
                 "ascii", "image_i16", "image_u8", "image_f32", "image_ext", "many_axes",
                 "long_strings"]:
        hdus = None
        if algo == "many_axes":
            yield algo, many_axes(rng), MANY_AXES_KEYS, MANY_AXES_VALUES, 2880
            continue
        if algo.startswith("image"):
            hdus = image_hdus(rng, algo)
            hdu = hdus[-1]
        elif algo == "ascii":
            hdu = ascii_table(rng)
        elif algo == "table":
            hdu = table(rng)
        elif algo == "long_strings":
            hdu = long_strings(rng)
        elif algo == "RICE_1 float":
            hdu = compressed(rng.standard_normal((64, 80)).astype(np.float32), "RICE_1",
                             quantize_level=4)
        else:
            hdu = compressed((np.abs(ints) % 64 if algo == "PLIO_1" else ints).astype(np.int16),
                             algo)
        for k in range(PADDING):
            hdu.header["HISTORY"] = f"padding {k}"
        out = io.BytesIO()
        fits.HDUList(hdus or [fits.PrimaryHDU(), hdu]).writeto(out)
        raw = bytearray(out.getvalue())
        for k, c in zip([PADDING - 2, PADDING - 3], SCALING.get(algo, [])):
            at = raw.find(b"HISTORY padding %d" % k)
            raw[at:at + 80] = c
        keys, values = {"table": (TABLE_KEYS, TABLE_VALUES), "ascii": (ASCII_KEYS, ASCII_VALUES),
                        "long_strings": (LONG_KEYS, LONG_VALUES)}.get(
            algo, (IMAGE_KEYS, IMAGE_VALUES) if algo.startswith("image") else (KEYS, VALUES))
        start = 0 if algo in ("image_i16", "image_u8", "image_f32") else 2880
        yield algo.replace(" ", "_"), bytes(raw), keys, values, start


def variants(base, keys, values, start=2880):
    def at(key):  # the card of `key` in the header at `start`, or -1
        i = base.find(key.ljust(8).encode() + b"=", start)
        while i >= 0 and (i - start) % 80:
            i = base.find(key.ljust(8).encode() + b"=", i + 1)
        return i if i >= 0 and base.find(b"END" + b" " * 77, start) > i else -1

    def slot(raw, n):
        return raw.find(b"HISTORY padding %d" % n)

    for key in keys:
        i = at(key)
        for vi, value in enumerate(values):
            for tag, c in [("std", card(key, value)), ("nob", card(key, value, blank=False)),
                           ("late", card_late(key, value)), ("hier", card_hierarch(key, value)),
                           ("low", card(key.lower(), value))]:
                raw = bytearray(base)
                where = i if i >= 0 else slot(raw, 5)
                raw[where:where + 80] = c
                yield f"{key}_{vi}_{tag}", raw
            if i < 0:
                continue
            odd = card(key, value)
            raw = bytearray(base)  # the odd value first, the original later
            raw[slot(raw, 0):slot(raw, 0) + 80] = base[i:i + 80]
            raw[i:i + 80] = odd
            yield f"{key}_{vi}_dupbadfirst", raw
            raw = bytearray(base)  # the original first, the odd value later
            raw[slot(raw, 0):slot(raw, 0) + 80] = odd
            yield f"{key}_{vi}_dupbadlast", raw
            raw = bytearray(base)  # moved to the end of the header
            raw[i:i + 80] = b"COMMENT moved".ljust(80)
            raw[slot(raw, PADDING - 1):slot(raw, PADDING - 1) + 80] = odd
            yield f"{key}_{vi}_moved", raw


def main(out, every=1):
    """Write the variants (every `every`-th of them) into `out`; their count."""
    os.makedirs(out, exist_ok=True)
    n = k = 0
    for algo, base, keys, values, start in bases():
        for name, raw in variants(base, keys, values, start):
            k += 1
            if (k - 1) % every:
                continue
            with open(os.path.join(out, f"{algo}_{name}.fits"), "wb") as f:
                f.write(bytes(raw))
            n += 1
    return n


if __name__ == "__main__":
    out = sys.argv[1]
    print(f"{main(out, int(sys.argv[2]) if len(sys.argv) > 2 else 1)} header variants in {out}")
