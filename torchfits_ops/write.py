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


def write(path: PathLike, data: Union[ImageData, Sequence[Any]], header: Header = None, *,
          overwrite: bool = False, compress: Optional[str] = None,
          tile: Optional[Sequence[int]] = None, quantize_level: Optional[float] = None,
          quantize_method: Optional[str] = None, dither_seed: Optional[int] = None,
          hcomp_scale: Optional[float] = None, checksum: bool = False) -> int:
    """Write image HDUs to a new FITS file; returns its size in bytes.

    data: a tensor ``[..., NAXIS2, NAXIS1]`` (C order, 1 to 16 axes; any
    device, any strides), None for an HDU without data, or a list of HDUs,
    each a tensor, None, a (data, header) pair, or a dict with "data" and
    optionally "header" and the compression options below (which, given to
    the call, apply to every HDU with data). The first HDU is the primary;
    a compressed first image gets an empty primary before it.
    header: a dict {key: value or (value, comment)} or a list of
    (key, value[, comment]) cards; COMMENT/HISTORY take text or a list of
    texts; long strings are continued with CONTINUE; keys of more than 8
    characters or with blanks are written behind HIERARCH. Structural keys
    are refused (ValueError naming the key).
    compress: None, "RICE_1", "GZIP_1", "GZIP_2", "HCOMPRESS_1" or "PLIO_1"
    (cfitsio's tile compression); tile: tile shape in C order (default:
    one row per tile); quantize_level (floats; default 4, 0 = lossless with
    GZIP), quantize_method "SUBTRACTIVE_DITHER_1" (default),
    "SUBTRACTIVE_DITHER_2" or "NO_DITHER", dither_seed 1..10000 (default:
    from the clock), hcomp_scale (HCOMPRESS_1; 0 lossless).
    overwrite: replace an existing file (default False: FileExistsError).
    checksum: write CHECKSUM and DATASUM in every HDU.
    """
    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite must be a bool, not {type(overwrite).__name__}")
    if not isinstance(checksum, bool):
        raise TypeError(f"checksum must be a bool, not {type(checksum).__name__}")
    p = _fspath(path)
    defaults = dict(compress=compress, tile=tile, quantize_level=quantize_level,
                    quantize_method=quantize_method, dither_seed=dither_seed,
                    hcomp_scale=hcomp_scale)
    if data is None or isinstance(data, torch.Tensor):
        hdus = [dict(data=data, header=header)]
    elif isinstance(data, (list, tuple)):
        if header is not None:
            raise TypeError("header goes with each HDU when data is a list: (data, header) or "
                            "{'data': ..., 'header': ...}")
        hdus = []
        for i, h in enumerate(data):
            if h is None or isinstance(h, torch.Tensor):
                hdus.append(dict(data=h))
            elif isinstance(h, tuple) and len(h) == 2:
                hdus.append(dict(data=h[0], header=h[1]))
            elif isinstance(h, Mapping):
                unknown = set(h) - {"data", "header", *_OPTS}
                if unknown:
                    raise TypeError(f"data[{i}]: unknown keys {sorted(unknown)}")
                hdus.append(dict(h))
            else:
                raise TypeError(f"data[{i}] must be a tensor, None, (data, header) or a dict, "
                                f"not {type(h).__name__}")
        if not hdus:
            raise ValueError("data is an empty list: give None for a file with an empty primary")
    else:
        raise TypeError(f"data must be a tensor, None or a list of HDUs, not {type(data).__name__}")

    tensors: List[Optional[torch.Tensor]] = []
    ncards: List[int] = []
    keys: List[str] = []
    values: List[str] = []
    comments: List[str] = []
    types: List[str] = []
    codecs: List[str] = []
    tiles: List[List[int]] = []
    levels: List[float] = []
    methods: List[int] = []
    seeds: List[int] = []
    scales: List[float] = []
    for i, h in enumerate(hdus):
        where = "data" if len(hdus) == 1 and not isinstance(data, (list, tuple)) else f"data[{i}]"
        t = _image(h.get("data"), where)
        tensors.append(t)
        k, v, c, ty = _cards(h.get("header"))
        ncards.append(len(k))
        keys += k
        values += v
        comments += c
        types += ty
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
        codecs.append(codec)
        tl = opt["tile"]
        if tl is not None:
            tl = [int(x) for x in tl]
            if t is not None and len(tl) != t.dim():
                raise ValueError(f"tile {tl} has {len(tl)} axes, {where} has {t.dim()}")
        tiles.append(tl or [])
        ql = opt["quantize_level"]
        if ql is not None and (not isinstance(ql, numbers.Real) or not math.isfinite(ql)):
            raise ValueError(f"quantize_level must be a finite number, not {ql!r}")
        levels.append(4.0 if ql is None else float(ql))
        qm = opt["quantize_method"]
        if qm is not None and qm not in _METHODS:
            raise ValueError(f"quantize_method must be one of {', '.join(_METHODS)}, not {qm!r}")
        methods.append(0 if qm is None else _METHODS[qm])
        ds = opt["dither_seed"]
        if ds is not None and (isinstance(ds, bool) or not isinstance(ds, numbers.Integral)
                               or not 1 <= ds <= 10000):
            raise ValueError(f"dither_seed must be an int from 1 to 10000, not {ds!r}")
        seeds.append(0 if ds is None else int(ds))
        hs = opt["hcomp_scale"]
        if hs is not None and (not isinstance(hs, numbers.Real) or not math.isfinite(hs) or hs < 0):
            raise ValueError(f"hcomp_scale must be a finite number >= 0, not {hs!r}")
        scales.append(0.0 if hs is None else float(hs))
    any_codec = any(codecs)
    if not any_codec:
        return int(_wcall(_ops.write, p, tensors, ncards, keys, values, comments, types, overwrite,
                          checksum))
    return int(_wcall(_ops.write, p, tensors, ncards, keys, values, comments, types, overwrite,
                      checksum, codecs, [x for tl in tiles for x in tl], [len(tl) for tl in tiles],
                      levels, methods, seeds, scales))


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
                overwrite: bool = False, checksum: bool = False) -> int:
    """Write an empty primary HDU and one binary table; returns the file's size.

    columns: {name: values} in order; values a tensor [rows, *cell] (bool
    as L; uint16, uint32, uint64 and int8 with TZERO as FITS defines;
    cells of 2 or more axes get TDIM) or a list of str (A, padded with
    blanks to the longest). A uint8 [rows, ..., width] tensor named in
    ``strings`` is written as characters, byte for byte.
    units: {name: TUNIT}. header: as for :func:`write`."""
    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite must be a bool, not {type(overwrite).__name__}")
    if not isinstance(columns, Mapping):
        raise TypeError(f"columns must be a dict of name to values, not {type(columns).__name__}")
    p = _fspath(path)
    units = dict(units or {})
    strings = set(strings)
    unknown = (set(units) | strings) - set(columns)
    if unknown:
        raise ValueError(f"units/strings name columns that are not given: {sorted(unknown)}")
    names: List[str] = []
    tensors: List[torch.Tensor] = []
    kinds: List[str] = []
    for name, value in columns.items():
        if not isinstance(name, str):
            raise TypeError(f"column name {name!r} is not a str")
        if isinstance(value, torch.Tensor):
            t = value.detach()
            if name in strings:
                if t.dtype != torch.uint8 or t.dim() < 2:
                    raise TypeError(f"column {name!r}: strings are uint8 [rows, width]")
                kinds.append("A")
            else:
                if t.dtype != torch.bool and t.dtype not in _IMAGE_DTYPES:
                    raise TypeError(f"column {name!r}: dtype {t.dtype} has no FITS column type")
                if t.dim() == 0:
                    raise ValueError(f"column {name!r} is 0-d; a column is [rows, *cell]")
                kinds.append("")
        elif isinstance(value, (list, tuple)) and all(isinstance(s, str) for s in value):
            t = _string_column(name, value)
            kinds.append("A")
        else:
            raise TypeError(f"column {name!r} must be a tensor or a list of str, "
                            f"not {type(value).__name__}")
        names.append(name)
        tensors.append(t)
    k, v, c, ty = _cards(header)
    return int(_wcall(_ops.write_table, p, names, tensors, kinds,
                      [str(units.get(n, "")) for n in names] if units else [], k, v, c, ty,
                      overwrite, checksum))


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
