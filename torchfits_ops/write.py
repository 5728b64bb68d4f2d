"""Writing FITS files: images (plain or tile-compressed) and binary tables.

Each function checks its arguments, turns the header into cards, and makes
exactly one ``torch.ops.torchfits`` call. The core builds the whole file in
memory with cfitsio, writes it to a temporary file beside the target,
fsyncs it and renames it into place: after an error, or a crash, the
target name holds the old file (or nothing), never part of a new one.

Structural keywords (SIMPLE, XTENSION, BITPIX, NAXIS, NAXISn, EXTEND,
PCOUNT, GCOUNT, BSCALE, BZERO, END, CHECKSUM, DATASUM, the tile-compression
Z* keywords and the table column keywords) are refused in a user's header
with a ValueError naming the key: the writer sets them from the data.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import torch

from . import PathLike, _fspath, _ops, _translate

__all__ = ["ChecksumStatus", "verify_checksum", "write", "write_table"]

Header = Union[None, Mapping[str, Any], Sequence[Tuple[Any, ...]]]
ImageData = Optional[torch.Tensor]

_COMMENTARY = ("COMMENT", "HISTORY", "")
_CODECS = ("RICE_1", "GZIP_1", "GZIP_2", "HCOMPRESS_1", "PLIO_1")
_METHODS = {"NO_DITHER": -1, "SUBTRACTIVE_DITHER_1": 1, "SUBTRACTIVE_DITHER_2": 2}
_IMAGE_DTYPES = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float32,
                 torch.float64] + [getattr(torch, n) for n in ("uint16", "uint32", "uint64")
                                   if hasattr(torch, n)]


def _wcall(op, *args):
    try:
        return op(*args)
    except RuntimeError as err:
        msg = str(err)
        if "[TF_EOPEN]" in msg and "File exists" in msg:
            raise FileExistsError(msg) from None
        if "[TF_EIO]" in msg:
            raise OSError(msg) from None
        new = _translate(err)
        if new is err:
            raise
        raise new from None


def _key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"header key {key!r} is not a str")
    k = key.strip()
    if k.upper().startswith("HIERARCH "):
        return "HIERARCH " + k[9:].strip()
    if len(k) <= 8 and " " not in k:
        return k.upper()
    return k


def _value(key: str, value: Any) -> Tuple[str, str]:
    """(value as text, type letter) for one keyword."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"header key {key!r}: a tensor value must hold one element")
        value = value.item()
    if value is None:
        return "", "U"
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return ("T" if value else "F"), "L"
    if isinstance(value, numbers.Integral):
        v = int(value)
        if not -(2 ** 63) <= v < 2 ** 63:
            raise ValueError(f"header key {key!r}: {v} is outside the 64-bit integers FITS holds")
        return str(v), "I"
    if isinstance(value, numbers.Real):
        v = float(value)
        if not math.isfinite(v):
            raise ValueError(f"header key {key!r}: {v} is not finite; FITS has no inf or nan values")
        text = repr(v).upper()
        return text, "F"
    if isinstance(value, str):
        return value, "C"
    raise TypeError(f"header key {key!r}: a value is a str, int, float, bool or None, "
                    f"not {type(value).__name__}")


def _ascii(key: str, what: str, text: str) -> str:
    try:
        text.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(f"header key {key!r}: the {what} is not ASCII, which FITS headers are") from None
    if any(not 32 <= ord(c) <= 126 for c in text):
        raise ValueError(f"header key {key!r}: the {what} has a control character")
    return text


def _cards(header: Header) -> Tuple[List[str], List[str], List[str], List[str]]:
    """A header as four lists (keys, values, comments, types).

    header: a dict {key: value} or {key: (value, comment)}, or a list of
    (key, value) or (key, value, comment) cards. COMMENT, HISTORY and ""
    take a str or a list of str. Order is kept."""
    keys: List[str] = []
    values: List[str] = []
    comments: List[str] = []
    types: List[str] = []
    if header is None:
        return keys, values, comments, types
    if isinstance(header, Mapping):
        items = []
        for k, v in header.items():
            if isinstance(v, tuple):
                if len(v) != 2:
                    raise ValueError(f"header key {k!r}: give a value or a (value, comment) pair")
                items.append((k, v[0], v[1]))
            else:
                items.append((k, v, ""))
    elif isinstance(header, (list, tuple)):
        items = []
        for card in header:
            if not isinstance(card, (tuple, list)) or len(card) not in (2, 3):
                raise ValueError(f"header card {card!r} is not (key, value) or (key, value, comment)")
            items.append((card[0], card[1], card[2] if len(card) == 3 else ""))
    else:
        raise TypeError(f"header must be a dict or a list of (key, value, comment) cards, "
                        f"not {type(header).__name__}")
    for k, v, c in items:
        key = _key(k)
        comment = "" if c is None else str(c)
        if key in _COMMENTARY:
            texts = v if isinstance(v, (list, tuple)) else [v]
            for t in texts:
                keys.append(key)
                values.append(_ascii(key, "text", "" if t is None else str(t)))
                comments.append("")
                types.append("H")
            continue
        text, kind = _value(key, v)
        keys.append(_ascii(key, "key", key))
        values.append(_ascii(key, "value", text))
        comments.append(_ascii(key, "comment", comment))
        types.append(kind)
    return keys, values, comments, types


def _image(data: ImageData, where: str) -> ImageData:
    if data is None:
        return None
    if not isinstance(data, torch.Tensor):
        raise TypeError(f"{where} must be a torch.Tensor or None, not {type(data).__name__}")
    if data.dtype not in _IMAGE_DTYPES:
        names = ", ".join(str(d).replace("torch.", "") for d in _IMAGE_DTYPES)
        raise TypeError(f"{where}: dtype {data.dtype} has no FITS image type ({names})")
    if data.dim() == 0 or data.dim() > 16:
        raise ValueError(f"{where} has {data.dim()} axes; an image has 1 to 16 (None: no data)")
    if data.numel() == 0:
        raise ValueError(f"{where} has shape {tuple(data.shape)}; every axis needs an element "
                         "(None: no data)")
    return data.detach()


_OPTS = ("compress", "tile", "quantize_level", "quantize_method", "dither_seed", "hcomp_scale")


_TABLE_KEYS = ("columns", "header", "units", "strings", "tnull", "tscal", "tzero")


class _Args:
    """The flattened arguments of torch.ops.torchfits.write_hdus."""

    def __init__(self) -> None:
        self.kinds: List[str] = []
        self.images: List[Optional[torch.Tensor]] = []
        self.ncards: List[int] = []
        self.keys: List[str] = []
        self.values: List[str] = []
        self.comments: List[str] = []
        self.types: List[str] = []
        self.ncols: List[int] = []
        self.names: List[str] = []
        self.columns: List[torch.Tensor] = []
        self.offsets: List[Optional[torch.Tensor]] = []
        self.col_kinds: List[str] = []
        self.units: List[str] = []
        self.tscal: List[float] = []
        self.tzero: List[float] = []
        self.tnull: List[int] = []
        self.flags: List[int] = []
        self.codecs: List[str] = []
        self.tiles: List[List[int]] = []
        self.levels: List[float] = []
        self.methods: List[int] = []
        self.seeds: List[int] = []
        self.scales: List[float] = []

    def header(self, header: Header) -> None:
        k, v, c, ty = _cards(header)
        self.ncards.append(len(k))
        self.keys += k
        self.values += v
        self.comments += c
        self.types += ty

    def image(self, h: Mapping[str, Any], where: str, defaults: Mapping[str, Any]) -> None:
        t = _image(h.get("data"), where)
        opt = {name: h.get(name, defaults[name] if t is not None else None) for name in _OPTS}
        codec = opt["compress"]
        if codec is None:
            codec = ""
        if not isinstance(codec, str) or (codec and codec.upper() not in _CODECS):
            raise ValueError(f"compress must be None or one of {', '.join(_CODECS)}, not {codec!r}")
        codec = codec.upper()
        if codec and t is None:
            raise ValueError(f"{where}: compress needs data")
        if not codec and t is not None:
            given = [name for name in _OPTS[1:] if opt[name] is not None]
            if given:
                raise ValueError(f"{where}: {', '.join(given)} apply only with compress")
        tl = opt["tile"]
        if tl is not None:
            tl = [int(x) for x in tl]
            if t is not None and len(tl) != t.dim():
                raise ValueError(f"tile {tl} has {len(tl)} axes, {where} has {t.dim()}")
        ql = opt["quantize_level"]
        if ql is not None and (not isinstance(ql, numbers.Real) or not math.isfinite(ql)):
            raise ValueError(f"quantize_level must be a finite number, not {ql!r}")
        qm = opt["quantize_method"]
        if qm is not None and qm not in _METHODS:
            raise ValueError(f"quantize_method must be one of {', '.join(_METHODS)}, not {qm!r}")
        ds = opt["dither_seed"]
        if ds is not None and (isinstance(ds, bool) or not isinstance(ds, numbers.Integral)
                               or not 1 <= ds <= 10000):
            raise ValueError(f"dither_seed must be an int from 1 to 10000, not {ds!r}")
        hs = opt["hcomp_scale"]
        if hs is not None and (not isinstance(hs, numbers.Real) or not math.isfinite(hs) or hs < 0):
            raise ValueError(f"hcomp_scale must be a finite number >= 0, not {hs!r}")
        self.kinds.append("image")
        self.images.append(t)
        self.ncols.append(0)
        self.header(h.get("header"))
        self.codecs.append(codec)
        self.tiles.append(tl or [])
        self.levels.append(4.0 if ql is None else float(ql))
        self.methods.append(0 if qm is None else _METHODS[qm])
        self.seeds.append(0 if ds is None else int(ds))
        self.scales.append(0.0 if hs is None else float(hs))

    def table(self, spec: Mapping[str, Any], where: str) -> None:
        columns = spec.get("columns")
        if not isinstance(columns, Mapping):
            raise TypeError(f"{where}: columns must be a dict of name to values, "
                            f"not {type(columns).__name__}")
        opts: Dict[str, Dict[str, Any]] = {}
        for name in ("units", "tnull", "tscal", "tzero"):
            v = spec.get(name)
            if v is not None and not isinstance(v, Mapping):
                raise TypeError(f"{where}: {name} must be a dict of column name to value, "
                                f"not {type(v).__name__}")
            opts[name] = dict(v or {})
        strings = set(spec.get("strings") or ())
        for n in columns:
            if not isinstance(n, str):
                raise TypeError(f"column name {n!r} is not a str")
        # NAME and NAME.offsets, as torch.ops.torchfits.read_table gives a
        # variable-length column, are one column.
        pairs = {n[:-8] for n in columns if n.endswith(".offsets") and n[:-8] in columns}
        names = [n for n in columns if not (n.endswith(".offsets") and n[:-8] in pairs)]
        for name in ("units", "tnull", "tscal", "tzero"):
            unknown = set(opts[name]) - set(names)
            if unknown:
                raise ValueError(f"{name} names columns that are not given: {sorted(unknown)}")
        unknown = strings - set(names)
        if unknown:
            raise ValueError(f"strings names columns that are not given: {sorted(unknown)}")
        self.kinds.append("table")
        self.images.append(None)
        self.ncols.append(len(names))
        self.header(spec.get("header"))
        self.codecs.append("")
        self.tiles.append([])
        self.levels.append(4.0)
        self.methods.append(0)
        self.seeds.append(0)
        self.scales.append(0.0)
        for name in names:
            value = columns[name]
            off: Optional[torch.Tensor] = None
            kind = ""
            if name in pairs:
                t, off = value, columns[name + ".offsets"]
                if not isinstance(t, torch.Tensor) or not isinstance(off, torch.Tensor):
                    raise TypeError(f"column {name!r}: values and offsets must be tensors")
                t = t.detach()
                off = off.detach()
                kind = "P"
            elif isinstance(value, torch.Tensor):
                t = value.detach()
                if name in strings:
                    if t.dtype != torch.uint8 or t.dim() < 2:
                        raise TypeError(f"column {name!r}: strings are uint8 [rows, width]")
                    kind = "A"
                else:
                    if t.dtype != torch.bool and t.dtype not in _IMAGE_DTYPES:
                        raise TypeError(f"column {name!r}: dtype {t.dtype} has no FITS column type")
                    if t.dim() == 0:
                        raise ValueError(f"column {name!r} is 0-d; a column is [rows, *cell]")
            elif isinstance(value, (list, tuple)) and value and all(
                    isinstance(x, torch.Tensor) for x in value):
                t, off = _varlen_column(name, value)
                kind = "P"
            elif isinstance(value, (list, tuple)) and all(isinstance(x, str) for x in value):
                t = _string_column(name, value)
                kind = "A"
            else:
                raise TypeError(f"{where}: column {name!r} must be a tensor, a list of str or a "
                                f"list of 1-d tensors (one per row), not {type(value).__name__} "
                                "(a dict in a list of HDUs is a table; an HDU's header goes in "
                                "a pair: [(data, header)])")
            scal = opts["tscal"].get(name)
            zero = opts["tzero"].get(name)
            null = opts["tnull"].get(name)
            for what, v in (("tscal", scal), ("tzero", zero)):
                if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Real)
                                      or not math.isfinite(v)):
                    raise ValueError(f"column {name!r}: {what} must be a finite number, not {v!r}")
            if null is not None and (isinstance(null, bool) or not isinstance(null, numbers.Integral)
                                     or not -(2 ** 63) <= null < 2 ** 63):
                raise ValueError(f"column {name!r}: tnull must be a 64-bit int, not {null!r}")
            self.names.append(name)
            self.columns.append(t)
            self.offsets.append(off)
            self.col_kinds.append(kind)
            self.units.append(str(opts["units"].get(name, "")))
            self.tscal.append(1.0 if scal is None else float(scal))
            self.tzero.append(0.0 if zero is None else float(zero))
            self.tnull.append(0 if null is None else int(null))
            self.flags.append((1 if scal is not None else 0) | (2 if zero is not None else 0)
                              | (4 if null is not None else 0))

    def call(self, path: str, overwrite: bool, append: bool, checksum: bool,
             sync: bool) -> int:
        if any(self.codecs):
            compress = [self.codecs, [x for tl in self.tiles for x in tl],
                        [len(tl) for tl in self.tiles], self.levels, self.methods, self.seeds,
                        self.scales]
        else:
            compress = [[], [], [], [], [], [], []]
        return int(_wcall(_ops.write_hdus, path, self.kinds, self.images, self.ncards, self.keys,
                          self.values, self.comments, self.types, self.ncols, self.names,
                          self.columns, self.offsets, self.col_kinds, self.units, self.tscal,
                          self.tzero, self.tnull, self.flags, *compress, overwrite, append,
                          checksum, sync))


def _varlen_column(name: str, rows: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    dtype = rows[0].dtype
    for i, r in enumerate(rows):
        if r.dtype != dtype:
            raise TypeError(f"column {name!r}: row {i} is {r.dtype}, row 0 {dtype}; a "
                            "variable-length column has one dtype")
        if r.dim() != 1:
            raise ValueError(f"column {name!r}: row {i} has {r.dim()} axes; a variable-length "
                             "column's rows are 1-d")
    lengths = torch.tensor([r.numel() for r in rows], dtype=torch.int64)
    offsets = torch.zeros(len(rows) + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(lengths, 0)
    values = torch.cat([r.detach().cpu() for r in rows])
    return values, offsets


def _check_flags(overwrite: Any, append: Any, checksum: Any, sync: Any) -> None:
    for name, v in (("overwrite", overwrite), ("append", append), ("checksum", checksum),
                    ("sync", sync)):
        if not isinstance(v, bool):
            raise TypeError(f"{name} must be a bool, not {type(v).__name__}")
    if overwrite and append:
        raise ValueError("overwrite and append exclude each other: append keeps the file's HDUs")


def _is_hdu_data(x: Any) -> bool:
    return x is None or isinstance(x, (torch.Tensor, Mapping))


def write(path: PathLike, data: Union[ImageData, Mapping[str, Any], Sequence[Any]],
          header: Header = None, *, overwrite: bool = False, append: bool = False,
          compress: Optional[str] = None, tile: Optional[Sequence[int]] = None,
          quantize_level: Optional[float] = None, quantize_method: Optional[str] = None,
          dither_seed: Optional[int] = None, hcomp_scale: Optional[float] = None,
          checksum: bool = False, sync: bool = False) -> int:
    """Write image and table HDUs to a FITS file; returns its size in bytes.

    data: one HDU or a list of HDUs, in order. An HDU is
      - a tensor ``[..., NAXIS2, NAXIS1]`` (an image: C order, 1 to 16
        axes, any device, any strides), or None (an HDU without data);
      - a dict of columns ``{name: values}`` (a binary table; values as for
        :func:`write_table`);
      - a pair (either of those, header);
      - a dict with "data" and optionally "header" and the compression
        options below (an image), or with "columns" and optionally
        "header", "units", "strings", "tnull", "tscal", "tzero" (a table;
        the form for a table with a column named "data" or "columns").
    The first HDU is the primary; a table or a compressed image first gets
    an empty primary before it.
    header: with a single HDU; a dict {key: value or (value, comment)} or
    a list of (key, value[, comment]) cards; COMMENT/HISTORY take text or a
    list of texts; long strings are continued with CONTINUE; keys of more
    than 8 characters or with blanks are written behind HIERARCH.
    Structural keys are refused (ValueError naming the key).
    compress: None, "RICE_1", "GZIP_1", "GZIP_2", "HCOMPRESS_1" or "PLIO_1"
    (cfitsio's tile compression) for every image with data, unless an HDU
    dict says otherwise; tile: tile shape in C order (default: one row per
    tile); quantize_level (floats; default 4, 0 = lossless with GZIP),
    quantize_method "SUBTRACTIVE_DITHER_1" (default),
    "SUBTRACTIVE_DITHER_2" or "NO_DITHER", dither_seed 1..10000 (default:
    from the clock), hcomp_scale (HCOMPRESS_1; 0 lossless).
    overwrite: replace an existing file (default False: FileExistsError).
    append: add the HDUs after the last HDU of the existing file (plain
    FITS, not gzip; the first new HDU becomes an extension), or make a new
    file when none is there. The old HDUs are kept byte for byte: a new
    file (the old bytes, then the new HDUs) replaces the old one atomically.
    checksum: write CHECKSUM and DATASUM in every HDU written.
    sync: fsync the file before it is renamed into place, and its folder
    after (durable across a power loss; default False: the write is still
    atomic, see docs/writing.md).
    """
    _check_flags(overwrite, append, checksum, sync)
    p = _fspath(path)
    defaults = dict(compress=compress, tile=tile, quantize_level=quantize_level,
                    quantize_method=quantize_method, dither_seed=dither_seed,
                    hcomp_scale=hcomp_scale)
    if data is None or isinstance(data, (torch.Tensor, Mapping)):
        hdus: List[Any] = [(data, header)]
        single = True
    elif isinstance(data, (list, tuple)):
        if header is not None:
            raise TypeError("header goes with each HDU when data is a list: (data, header) or "
                            "{'data': ..., 'header': ...}")
        hdus = list(data)
        single = False
        if not hdus:
            raise ValueError("data is an empty list: give None for a file with an empty primary")
    else:
        raise TypeError(f"data must be a tensor, None, a dict of columns or a list of HDUs, "
                        f"not {type(data).__name__}")
    args = _Args()
    for i, h in enumerate(hdus):
        where = "data" if single else f"data[{i}]"
        hdr = None
        if isinstance(h, tuple) and len(h) == 2 and _is_hdu_data(h[0]):
            h, hdr = h
        if h is None or isinstance(h, torch.Tensor):
            args.image(dict(data=h, header=hdr), where, defaults)
        elif isinstance(h, Mapping):
            spec = dict(h)
            if "columns" in h and set(h) <= set(_TABLE_KEYS) and isinstance(h["columns"], Mapping):
                kind = "table"
            elif "data" in h and set(h) <= {"data", "header", *_OPTS} and (
                    h["data"] is None or isinstance(h["data"], torch.Tensor)):
                kind = "image"
            else:
                kind = "table"
                spec = dict(columns=h)
            if hdr is not None:
                if spec.get("header") is not None:
                    raise TypeError(f"{where}: a header given twice")
                spec["header"] = hdr
            if kind == "table":
                args.table(spec, where)
            else:
                args.image(spec, where, defaults)
        else:
            raise TypeError(f"{where} must be a tensor, None, a dict (of columns, or an HDU "
                            f"with 'data' or 'columns') or (data, header), not {type(h).__name__}")
    return args.call(p, overwrite, append, checksum, sync)


def _string_column(name: str, value: Sequence[str]) -> torch.Tensor:
    rows = []
    for s in value:
        if not isinstance(s, str):
            raise TypeError(f"column {name!r}: a string column holds str, not {type(s).__name__}")
        try:
            rows.append(s.encode("ascii"))
        except UnicodeEncodeError:
            raise ValueError(f"column {name!r}: {s!r} is not ASCII, which FITS strings are") from None
    width = max([len(r) for r in rows] + [1])
    buf = b"".join(r.ljust(width, b" ") for r in rows)
    if not rows:
        return torch.empty((0, width), dtype=torch.uint8)
    return torch.frombuffer(bytearray(buf), dtype=torch.uint8).reshape(len(rows), width)


def write_table(path: PathLike, columns: Mapping[str, Any], header: Header = None, *,
                units: Optional[Mapping[str, str]] = None, strings: Sequence[str] = (),
                tnull: Optional[Mapping[str, int]] = None,
                tscal: Optional[Mapping[str, float]] = None,
                tzero: Optional[Mapping[str, float]] = None, overwrite: bool = False,
                append: bool = False, checksum: bool = False, sync: bool = False) -> int:
    """Write one binary table (after an empty primary, or with append after
    the last HDU of an existing file); returns the file's size.

    columns: {name: values} in order; values
      - a tensor [rows, *cell] (bool as L; uint16, uint32, uint64 and
        int8 with TZERO as FITS defines; cells of 2 or more axes get TDIM);
      - a list of str (A, padded with blanks to the longest);
      - a list of 1-d tensors of one dtype, one per row (a variable-length
        array column, TFORM 1PT(max), or 1QT(max) past 2 GiB of heap:
        uint8, int16, int32, int64, float32, float64), or the values of
        every row concatenated under NAME with int64 [rows + 1] offsets
        under "NAME.offsets", as torch.ops.torchfits.read_table returns them.
    A uint8 [rows, ..., width] tensor named in ``strings`` is written as
    characters, byte for byte.
    units: {name: TUNIT}. tscal, tzero: {name: number}, written as TSCALn
    and TZEROn: the tensor holds the stored values, and readers return
    stored * TSCAL + TZERO (not for int8, uint16, uint32, uint64, whose
    TZERO FITS fixes). tnull: {name: int} for integer columns, the value
    that marks a null as the tensor holds it (written as TNULLn in the
    stored domain). header, overwrite, append, checksum, sync: as for
    :func:`write`."""
    if not isinstance(columns, Mapping):
        raise TypeError(f"columns must be a dict of name to values, not {type(columns).__name__}")
    _check_flags(overwrite, append, checksum, sync)
    args = _Args()
    args.table(dict(columns=columns, header=header, units=units, strings=strings, tnull=tnull,
                    tscal=tscal, tzero=tzero), "columns")
    return args.call(_fspath(path), overwrite, append, checksum, sync)


class ChecksumStatus(NamedTuple):
    """Per HDU: True (matches), False (does not match), None (no keyword)."""
    datasum: Optional[bool]
    checksum: Optional[bool]


def verify_checksum(path: PathLike) -> List[ChecksumStatus]:
    """DATASUM and CHECKSUM of every HDU of any FITS file, as cfitsio's
    fits_verify_chksum checks them."""
    ds, hs = _wcall(_ops.verify_checksum, _fspath(path))
    conv = {1: True, 0: None, -1: False}
    return [ChecksumStatus(conv[int(d)], conv[int(h)]) for d, h in zip(ds, hs)]
