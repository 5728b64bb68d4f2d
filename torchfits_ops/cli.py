"""The ``torchfits`` command: look at, check, cut and time FITS files.

    torchfits info FILE...                      HDUs, kinds, shapes, dtypes, compression
    torchfits header FILE... [-e EXT] [-k KEY]  cards, or keywords across files (-t: a table)
    torchfits cutout FILE REGION -o OUT         a region to .npy, .pt, .png or .fits
    torchfits cutout FILE --sky RA DEC --size N -o OUT   the same at a sky position
    torchfits verify FILE...                    open and read every HDU; a summary of bad files
    torchfits bench [FILE]                      a quick speed check against installed readers
    torchfits preview FILE -o OUT.png           a PNG with an asinh or zscale stretch

Flags follow astropy's ``fitsinfo`` and ``fitsheader`` where those have
them. An error prints one line on stderr and exits non-zero; ``--debug``
shows the traceback instead.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

EXIT_ERROR = 1
EXIT_BAD_FILES = 1


class CliError(Exception):
    """An error worth one line to the user."""


def _tf():
    import torchfits_ops

    return torchfits_ops


def _hdu_key(text: Optional[str]):
    """-e accepts a number, an EXTNAME, or EXTNAME,EXTVER, as fitsheader's -e does."""
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    if "," in text:
        name, ver = text.rsplit(",", 1)
        try:
            return (name, int(ver))
        except ValueError:
            raise CliError(f"bad extension {text!r}: EXTVER must be a number") from None
    return text


def _hdu_indices(path: str, ext) -> List[int]:
    tf = _tf()
    infos = tf.info(path)
    if ext is None:
        return [h.index for h in infos]
    if isinstance(ext, int):
        n = len(infos)
        idx = ext + n if ext < 0 else ext
        if not 0 <= idx < n:
            raise CliError(f"{path}: no HDU {ext} (the file has {n})")
        return [idx]
    name, ver = (ext if isinstance(ext, tuple) else (ext, 0))
    return [torch_ops().find_hdu(path, name, ver)]


def torch_ops():
    _tf()
    import torch

    return torch.ops.torchfits


_ASTROPY_TYPE = {"binary_table": "BinTableHDU", "ascii_table": "TableHDU"}


def _kind_name(h) -> str:
    if h.kind == "image":
        if h.compressed:
            return "CompImageHDU"
        return "PrimaryHDU" if h.index == 0 else "ImageHDU"
    return _ASTROPY_TYPE.get(h.kind, h.kind)


def _cards(path: str, index: int) -> Tuple[List[str], List[str], List[str], List[str]]:
    return torch_ops().read_header_cards(path, index)


def _raw_headers(path: str, limit: int = 1000) -> List[Dict[str, str]]:
    """The stored cards of each HDU (key -> value text) of a plain FITS file,
    read directly: the operators give a tile-compressed HDU's image header,
    and ZCMPTYPE lives only in the stored one. Empty for gzip files."""
    return _walk(path, limit)[0]


def _walk(path: str, limit: int = 100000) -> Tuple[List[Dict[str, str]], Optional[str]]:
    """(cards of each HDU, why the walk stopped early or None), read directly."""
    out: List[Dict[str, str]] = []
    size_total = os.path.getsize(path)
    with open(path, "rb") as f:
        if f.read(2) == b"\x1f\x8b":
            return out, None
        f.seek(0)
        while len(out) < limit:
            cards: Dict[str, str] = {}
            while True:
                block = f.read(2880)
                if not cards and out and not block.startswith(b"XTENSION"):
                    return out, None  # end of file, or padding after the last HDU
                if len(block) < 2880:
                    return out, f"the file ends inside the header of HDU {len(out)}"
                done = False
                cards.setdefault("", "")  # this HDU has started
                for i in range(0, 2880, 80):
                    card = block[i:i + 80].decode("ascii", "replace")
                    key = card[:8].strip()
                    if key == "END":
                        done = True
                        break
                    if card[8:10] == "= " and key not in cards:
                        cards[key] = card[10:].split("/", 1)[0].strip().strip("'").strip()
                if done:
                    break
            out.append(cards)
            try:
                naxis = int(cards.get("NAXIS", "0"))
                size = 0
                if naxis:
                    size = abs(int(cards.get("BITPIX", "8"))) // 8
                    for i in range(1, naxis + 1):
                        size *= int(cards.get(f"NAXIS{i}", "0"))
                size = (size + int(cards.get("PCOUNT", "0"))) * int(cards.get("GCOUNT", "1"))
            except ValueError:
                return out, None
            end = f.tell() + size
            if end > size_total:
                return out, (f"truncated: HDU {len(out) - 1} needs {end} bytes, "
                             f"the file has {size_total}")
            f.seek(-(-size // 2880) * 2880, os.SEEK_CUR)
            if f.tell() >= size_total:
                return out, None
    return out, None


def _compression(raw: List[Dict[str, str]], h) -> str:
    if not h.compressed:
        return ""
    if h.index < len(raw):
        return raw[h.index].get("ZCMPTYPE", "yes") or "yes"
    return "yes"


def _dtype_name(h) -> str:
    if h.dtype is None:
        return ""
    return str(h.dtype).replace("torch.", "")


# ---- info -------------------------------------------------------------------

def cmd_info(args) -> int:
    tf = _tf()
    status = 0
    for n, path in enumerate(args.files):
        try:
            infos = tf.info(path)
        except Exception as e:
            if len(args.files) == 1:
                raise
            print(f"torchfits: {path}: {_one_line(e)}", file=sys.stderr)
            status = EXIT_ERROR
            continue
        if n:
            print()
        print(f"Filename: {path}")
        try:
            raw = _raw_headers(path) if any(h.compressed for h in infos) else []
        except OSError:
            raw = []
        rows = [("No.", "Name", "Ver", "Type", "Cards", "Shape", "Format", "Compression")]
        for h in infos:
            try:
                ncards = str(len(_cards(path, h.index)[0]))
            except Exception:
                ncards = "?"
            if h.kind == "image":
                shape = "(" + ", ".join(str(s) for s in h.shape) + ")" if h.shape else "()"
                fmt = _dtype_name(h) if h.shape else ""
            else:
                shape = f"{h.shape[0]}R x {_ncols(path, h.index)}C"
                fmt = ""
            rows.append((str(h.index), h.name or ("PRIMARY" if h.index == 0 else ""),
                         str(h.ver), _kind_name(h), ncards, shape, fmt, _compression(raw, h)))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return status


def _ncols(path: str, index: int) -> str:
    try:
        return str(len(torch_ops().table_info(path, index)[1]))
    except Exception:
        return "?"


# ---- header -----------------------------------------------------------------

def _card_text(key: str, value: str, comment: str, kind: str) -> str:
    if kind == "H":
        return f"{key:<8}{value}".rstrip()
    if key == "END":
        return "END"
    if kind == "C":  # strings start in column 11, padded to 8 characters
        value = ("'" + value.replace("'", "''").ljust(8) + "'").ljust(20)
    text = f"{key:<8}= {value:>20}" if len(key) <= 8 else f"HIERARCH {key} = {value}"
    if comment:
        text += f" / {comment}"
    return text


def cmd_header(args) -> int:
    ext = _hdu_key(args.extension)
    keywords = [k.upper() for k in (args.keyword or [])]
    table_rows: List[Tuple[str, str, str, str]] = []
    first = True
    for path in args.files:
        for index in _hdu_indices(path, ext):
            keys, values, comments, kinds = _cards(path, index)
            cards = list(zip(keys, values, comments, kinds))
            if keywords:
                cards = [c for c in cards if c[0].upper() in keywords]
            if args.table:
                for k in keywords or []:
                    found = [c for c in cards if c[0].upper() == k]
                    value = found[0][1] if found else ""
                    table_rows.append((path, str(index), k, value))
                if not keywords:
                    for c in cards:
                        table_rows.append((path, str(index), c[0], c[1]))
                continue
            if not first:
                print()
            first = False
            print(f"# HDU {index} in {path}:")
            for c in cards:
                print(_card_text(*c))
    if args.table:
        rows = [("filename", "hdu", "keyword", "value")] + table_rows
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


# ---- cutout -----------------------------------------------------------------

def _parse_region(text: str, shape: Sequence[int]) -> Tuple[List[int], List[int], List[int]]:
    """numpy-style 'a:b,c:d' (C order, 0-based, steps allowed) to start/shape/step."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != len(shape):
        raise CliError(f"region {text!r} has {len(parts)} axes, the image has {len(shape)} "
                       f"(shape {tuple(shape)})")
    start, size, step = [], [], []
    for p, n in zip(parts, shape):
        try:
            if ":" in p:
                bits = p.split(":")
                if len(bits) > 3:
                    raise ValueError
                s = slice(*[int(b) if b else None for b in bits])
                a, b, c = s.indices(n)
                if c < 1:
                    raise CliError(f"region {text!r}: steps must be positive")
                count = len(range(a, b, c))
            else:
                a, c, count = int(p), 1, 1
                a = a + n if a < 0 else a
        except ValueError:
            raise CliError(f"bad region {text!r}: use numpy slices in C order, e.g. 100:164,200:264") from None
        if count < 1:
            raise CliError(f"region {text!r} is empty on an axis of length {n}")
        start.append(a)
        size.append(count)
        step.append(c)
    return start, size, step


def _save(t, out: str, stretch: str = "asinh") -> None:
    ext = os.path.splitext(out)[1].lower()
    if ext == ".npy":
        import numpy as np

        np.save(out, t.numpy())
    elif ext == ".pt":
        import torch

        torch.save(t, out)
    elif ext == ".png":
        _write_png(_stretch(_plane(t), stretch), out)
    elif ext in (".fits", ".fit", ".fts"):
        tf = _tf()
        if not hasattr(tf, "write"):
            raise CliError("writing .fits needs torchfits_ops.write, which this build does not "
                           "have; write .npy, .pt or .png")
        tf.write(out, t)
    else:
        raise CliError(f"{out}: unknown output type {ext or '(none)'}; use .npy, .pt, .png or .fits")


def cmd_cutout(args) -> int:
    tf = _tf()
    ext = _hdu_key(args.extension)
    index = _first_image(args.file, ext)
    if (args.region is None) == (args.sky is None):
        raise CliError("give a REGION (numpy slices) or --sky RA DEC with --size, not both")
    if args.sky is not None:
        if args.size is None:
            raise CliError("--sky needs --size N (or NYxNX)")
        t = tf.read_sky_cutout(args.file, index, args.sky[0], args.sky[1], _parse_size(args.size),
                               mode="strict" if args.strict else "partial", raw=args.raw)
    else:
        h = tf.info(args.file)[index]
        start, size, step = _parse_region(args.region, h.shape)
        t = tf.read_cutout(args.file, index, start, size, step, raw=args.raw)
    _save(t, args.output, args.stretch)
    print(f"{args.output}: {tuple(t.shape)} {str(t.dtype).replace('torch.', '')} "
          f"from HDU {index} of {args.file}")
    return 0


def _parse_size(text: str) -> Tuple[int, int]:
    """"64" or "48x64" (ny x nx)."""
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise CliError(f"--size {text!r}: give N or NYxNX, positive integers")
    return parts[0], parts[1]


def _first_image(path: str, ext) -> int:
    tf = _tf()
    infos = tf.info(path)
    if ext is not None:
        index = _hdu_indices(path, ext)[0]
        if infos[index].kind != "image" or not infos[index].shape:
            raise CliError(f"{path}: HDU {index} is not an image with data")
        return index
    for h in infos:
        if h.kind == "image" and h.shape:
            return h.index
    raise CliError(f"{path}: no image HDU with data")


# ---- verify -----------------------------------------------------------------

def _verify_file(path: str) -> Optional[str]:
    """None if every HDU opens and reads, else why not (one line)."""
    tf = _tf()
    ops = torch_ops()
    try:
        infos = tf.info(path)
        try:
            _, cut = _walk(path)
        except OSError:
            cut = None
        if cut is not None:
            return cut
        for h in infos:
            ops.read_header_cards(path, h.index)
            if h.kind == "image":
                if h.shape:
                    ops.read(path, h.index)
            else:
                ops.read_table(path, h.index)
        checker = getattr(tf, "verify_checksum", None)
        if checker is not None:
            wrong = [f"HDU {i}: {key} does not match" for i, status in enumerate(checker(path))
                     for key, ok in (("DATASUM", status.datasum), ("CHECKSUM", status.checksum))
                     if ok is False]
            if wrong:
                return "; ".join(wrong)
    except Exception as e:  # every failure is a finding about the file
        return _one_line(e)
    return None


def cmd_verify(args) -> int:
    files = list(args.files)
    bar = None
    if not args.quiet and len(files) > 1:
        try:
            from tqdm import tqdm

            bar = tqdm(total=len(files), unit="file", file=sys.stderr, leave=False,
                       disable=not sys.stderr.isatty() and not args.progress)
        except ImportError:
            bar = None
    bad: List[Tuple[str, str]] = []
    for path in files:
        why = _verify_file(path)
        if why is not None:
            bad.append((path, why))
        if bar is not None:
            bar.update(1)
        elif args.progress:
            print(f"\r{len(bad)} bad / {files.index(path) + 1} of {len(files)}", end="",
                  file=sys.stderr)
    if bar is not None:
        bar.close()
    elif args.progress:
        print(file=sys.stderr)
    for path, why in bad:
        print(f"BAD  {path}: {why}")
    checks = "structure and data" + (", CHECKSUM/DATASUM" if hasattr(_tf(), "verify_checksum")
                                     else "")
    print(f"{len(files)} files checked ({checks}): {len(files) - len(bad)} ok, {len(bad)} bad")
    return EXIT_BAD_FILES if bad else 0


# ---- bench ------------------------------------------------------------------

def _write_test_image(path: str, shape=(1024, 1024)) -> None:
    """A plain float32 primary image, written without any FITS library."""
    import numpy as np

    data = np.random.default_rng(0).normal(100, 5, shape).astype(">f4")
    cards = ["SIMPLE  =                    T", "BITPIX  =                  -32",
             f"NAXIS   = {len(shape):>20}"]
    cards += [f"NAXIS{i + 1:<3}= {n:>20}" for i, n in enumerate(reversed(shape))]
    cards.append("END")
    header = "".join(c.ljust(80) for c in cards)
    header = header.ljust(-(-len(header) // 2880) * 2880)
    raw = data.tobytes()
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(raw)
        f.write(b"\0" * (-len(raw) % 2880))


def _time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cmd_bench(args) -> int:
    tf = _tf()
    import torch

    with tempfile.TemporaryDirectory(prefix="torchfits-bench-") as tmp:
        path = args.file
        if path is None:
            path = os.path.join(tmp, "bench.fits")
            _write_test_image(path, (args.size, args.size))
        index = _first_image(path, _hdu_key(args.extension))
        h = tf.info(path)[index]
        readers = {"torchfits": lambda: tf.read(path, index)}
        try:
            import fitsio

            readers["fitsio"] = lambda: torch.from_numpy(_native(fitsio.read(path, ext=index)))
        except ImportError:
            pass
        try:
            from astropy.io import fits

            readers["astropy"] = lambda: torch.from_numpy(
                _native(fits.getdata(path, index, memmap=False)))
        except ImportError:
            pass
        print(f"{path} HDU {index}: {tuple(h.shape)} {_dtype_name(h)}, "
              f"median of {args.repeats} reads, warm cache")
        base = None
        for name, fn in readers.items():
            t = _time(fn, args.repeats)
            base = base or t
            print(f"  {name:<10} {t * 1e3:9.3f} ms   torchfits / {name}: {base / t:.2f}")
    return 0


def _native(a):
    import numpy as np

    if a.dtype.byteorder not in ("=", "|"):
        a = a.astype(a.dtype.newbyteorder("="))
    return np.ascontiguousarray(a)


# ---- preview ----------------------------------------------------------------

def _plane(t):
    """A 2-D float image from a tensor of any rank: the first plane of a cube."""
    t = t.double()
    while t.dim() > 2:
        t = t[0]
    if t.dim() == 1:
        t = t.unsqueeze(0)
    if t.dim() == 0:
        t = t.reshape(1, 1)
    return t


def _zscale(a, samples: int = 1000, contrast: float = 0.25) -> Tuple[float, float]:
    """IRAF's zscale: a line fitted to the sorted sample, with rejection."""
    import numpy as np

    v = a[np.isfinite(a)].ravel()
    if v.size == 0:
        return 0.0, 1.0
    stride = max(1, v.size // samples)
    s = np.sort(v[::stride])
    n = s.size
    lo, hi = float(s[0]), float(s[-1])
    if n < 5:
        return lo, hi
    x = np.arange(n)
    keep = np.ones(n, bool)
    for _ in range(5):
        if keep.sum() < max(5, n // 2):
            break
        slope, icept = np.polyfit(x[keep], s[keep], 1)
        resid = s - (slope * x + icept)
        sigma = resid[keep].std()
        new = np.abs(resid) < 2.5 * sigma if sigma > 0 else keep
        if (new == keep).all():
            break
        keep = new
    else:
        slope, icept = np.polyfit(x[keep], s[keep], 1)
    median = float(np.median(s))
    slope = slope / contrast
    z1 = max(lo, median - (n // 2) * slope)
    z2 = min(hi, median + (n - n // 2) * slope)
    if not z2 > z1:
        z1, z2 = lo, hi
    return z1, z2


def _stretch(t, how: str):
    """A float image to values in [0, 1]."""
    import numpy as np

    a = t.numpy()
    finite = np.isfinite(a)
    if not finite.any():
        return np.zeros(a.shape)
    if how == "zscale":
        lo, hi = _zscale(a)
        out = (a - lo) / (hi - lo if hi > lo else 1.0)
    elif how == "asinh":
        lo, hi = np.percentile(a[finite], [0.5, 99.9])
        span = hi - lo if hi > lo else 1.0
        x = np.clip((a - lo) / span, 0, 1)
        soft = 0.02  # the linear part: a tenth of the range is faint sky
        out = np.arcsinh(x / soft) / np.arcsinh(1 / soft)
    elif how == "linear":
        lo, hi = np.percentile(a[finite], [0.5, 99.5])
        out = (a - lo) / (hi - lo if hi > lo else 1.0)
    else:
        raise CliError(f"unknown stretch {how!r}: use asinh, zscale or linear")
    out = np.where(finite, out, 0.0)
    return np.clip(out, 0.0, 1.0)


def _write_png(img, out: str, cmap: str = "gray") -> None:
    """img: values in [0, 1], row 0 at the bottom as FITS viewers show it."""
    import numpy as np

    img = np.flipud(np.asarray(img))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        plt.imsave(out, img, cmap=cmap, vmin=0.0, vmax=1.0)
        return
    except ImportError:
        pass
    try:
        from PIL import Image
    except ImportError:
        raise CliError("writing PNG needs matplotlib or Pillow; install one of them") from None
    Image.fromarray((img * 255 + 0.5).astype(np.uint8), mode="L").save(out)


def cmd_preview(args) -> int:
    tf = _tf()
    index = _first_image(args.file, _hdu_key(args.extension))
    t = tf.read(args.file, index)
    out = args.output or os.path.splitext(os.path.basename(args.file))[0] + ".png"
    if not out.lower().endswith(".png"):
        raise CliError(f"{out}: preview writes PNG files; give a name ending in .png")
    _write_png(_stretch(_plane(t), args.stretch), out, args.cmap)
    print(f"{out}: HDU {index} of {args.file}, {tuple(t.shape)}, {args.stretch} stretch")
    return 0


# ---- main -------------------------------------------------------------------

def _one_line(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    if isinstance(e, KeyError) and len(e.args) == 1:
        text = str(e.args[0])
    return " ".join(text.split())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="torchfits",
                                description="Look at, check, cut and time FITS files with torchfits.")
    p.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    s = sub.add_parser("info", help="HDUs, kinds, shapes, dtypes and compression (as fitsinfo)")
    s.add_argument("files", nargs="+", metavar="FILE")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("header", help="header cards, or keywords across files (as fitsheader)")
    s.add_argument("files", nargs="+", metavar="FILE")
    s.add_argument("-e", "--extension", metavar="HDU",
                   help="HDU number (0 = primary), EXTNAME, or EXTNAME,EXTVER (default: all)")
    s.add_argument("-k", "--keyword", action="append", metavar="KEYWORD",
                   help="only this keyword (repeatable)")
    s.add_argument("-t", "--table", action="store_true",
                   help="one line per file, HDU and keyword")
    s.set_defaults(func=cmd_header)

    s = sub.add_parser("cutout", help="a region of an image to .npy, .pt, .png (or .fits)")
    s.add_argument("file", metavar="FILE")
    s.add_argument("region", metavar="REGION", nargs="?",
                   help="numpy slices in C order, e.g. 100:164,200:264 or ::4,::4")
    s.add_argument("--sky", nargs=2, type=float, metavar=("RA", "DEC"),
                   help="instead of REGION: centred on this sky position (degrees, the "
                        "image's WCS frame), as astropy's Cutout2D")
    s.add_argument("--size", metavar="N|NYxNX", help="with --sky: the cutout's shape in pixels")
    s.add_argument("--strict", action="store_true",
                   help="with --sky: fail unless the cutout lies inside the image "
                        "(default: pad what lies outside, NaN for float images)")
    s.add_argument("-o", "--output", required=True, help="output file: .npy, .pt, .png or .fits")
    s.add_argument("-e", "--extension", metavar="HDU", help="image HDU (default: the first with data)")
    s.add_argument("--raw", action="store_true", help="stored values, without BZERO/BSCALE")
    s.add_argument("--stretch", default="asinh", choices=["asinh", "zscale", "linear"],
                   help="for .png output")
    s.set_defaults(func=cmd_cutout)

    s = sub.add_parser("verify", help="open and read every HDU of each file; list the bad ones")
    s.add_argument("files", nargs="+", metavar="FILE")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.add_argument("--progress", action="store_true",
                   help="show progress even when stderr is not a terminal")
    s.set_defaults(func=cmd_verify)

    s = sub.add_parser("bench", help="a quick read-speed check against installed readers")
    s.add_argument("file", nargs="?", metavar="FILE",
                   help="a FITS file (default: a float32 image written to a temporary folder)")
    s.add_argument("-e", "--extension", metavar="HDU")
    s.add_argument("-n", "--repeats", type=int, default=11)
    s.add_argument("--size", type=int, default=1024, help="side of the default test image")
    s.set_defaults(func=cmd_bench)

    s = sub.add_parser("preview", help="a PNG of an image with an asinh or zscale stretch")
    s.add_argument("file", metavar="FILE")
    s.add_argument("-o", "--output", help="PNG to write (default: FILE's name with .png, here)")
    s.add_argument("-e", "--extension", metavar="HDU")
    s.add_argument("--stretch", default="asinh", choices=["asinh", "zscale", "linear"])
    s.add_argument("--cmap", default="gray", help="matplotlib colour map (default gray)")
    s.set_defaults(func=cmd_preview)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("torchfits: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:
        if args.debug:
            raise
        print(f"torchfits: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
