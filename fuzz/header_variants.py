"""Header variants of tile-compressed images, for the replay driver.

    python3 fuzz/header_variants.py DIR [EVERY]   (or: fuzz/run.sh variants)

Writes, for RICE_1 (integer and quantized float), GZIP_1, GZIP_2,
HCOMPRESS_1 and PLIO_1 files that astropy wrote, each compressed-image and
table keyword below given each odd value below, in six ways: in place, with
no blank after the "=", with the name in lower case, twice with the odd
value first, twice with it last, and moved to the end of the header. cfitsio
reads keywords in any case, from column 10, wherever they are, and takes
either card of a pair; the guard (csrc/core/file/guard.c) must refuse what
cfitsio would crash on, and both read paths must agree on the rest. The
replay driver walks every file under ASan/UBSan. About 23,000 files, 430 MB;
three minutes to replay here. EVERY n writes every n-th only (the test
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


def bases():
    rng = np.random.default_rng(1)
    ints = (rng.standard_normal((64, 80)) * 50).astype(np.int16)
    for algo in ["RICE_1", "GZIP_1", "GZIP_2", "HCOMPRESS_1", "PLIO_1", "RICE_1 float"]:
        if algo == "RICE_1 float":
            hdu = fits.CompImageHDU(rng.standard_normal((64, 80)).astype(np.float32),
                                    compression_type="RICE_1", tile_shape=(16, 16),
                                    quantize_level=4)
        else:
            data = np.abs(ints) % 64 if algo == "PLIO_1" else ints
            hdu = fits.CompImageHDU(data.astype(np.int16), compression_type=algo,
                                    tile_shape=(16, 16))
        for k in range(PADDING):
            hdu.header["HISTORY"] = f"padding {k}"
        out = io.BytesIO()
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(out)
        yield algo.replace(" ", "_"), out.getvalue()


def card(key, value, blank=True):
    text = key.ljust(8) + ("= " + value.rjust(20) if blank else "=" + value)
    return text.ljust(80)[:80].encode("latin-1")


def variants(base):
    def at(key):  # the card of `key` in HDU 1, or -1
        i = base.find(key.ljust(8).encode() + b"=", 2880)
        return i if i >= 0 and (i - 2880) % 80 == 0 else -1

    def slot(raw, n):
        return raw.find(b"HISTORY padding %d" % n)

    for key in KEYS:
        i = at(key)
        for vi, value in enumerate(VALUES):
            for tag, c in [("std", card(key, value)), ("nob", card(key, value, blank=False)),
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
    for algo, base in bases():
        for name, raw in variants(base):
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
