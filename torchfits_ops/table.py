"""Binary and ASCII tables as dicts of tensors.

The operators (``torch.ops.torchfits.read_table``, ``table_info``) return
what TorchScript can carry: a ``Dict(str, Tensor)`` with strings as uint8
``[rows, width]`` (every byte as stored) and each variable-length array
column ``NAME`` as its values concatenated plus ``NAME.offsets``. The
functions here turn those into ``list[str]`` and ``list[Tensor]`` the way
astropy presents them.
"""
from __future__ import annotations

import os
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from . import HDU, HDUKey, PathLike, _call, _fspath, _hdu_args, _ops

__all__ = ["ColumnInfo", "TableHDU", "read_table", "read_table_nulls", "table_info"]

Rows = Union[None, slice, range]
Value = Union[torch.Tensor, List[str], List[torch.Tensor]]


class ColumnInfo(NamedTuple):
    name: str
    tform: str
    tunit: str
    tdim: str
    repeat: int          # elements per row (bits for X, characters for A)
    shape: Tuple[int, ...]  # per row, C order (TDIM reversed); (-1,) for VLAs
    dtype: torch.dtype   # dtype of the tensor a read gives (uint8 for strings)
    kind: str            # "fixed", "string", "vla" or "vla_string"
    tscal: float
    tzero: float
    tnull: Optional[int]  # TNULLn of integer columns, None when absent


def _table_call(op, *args):
    """One operator call; an unknown column becomes KeyError."""
    try:
        return _call(op, *args)
    except ValueError as err:
        if "no column named" in str(err):
            raise KeyError(str(err)) from None
        raise


def _kind(tform: str) -> str:
    code = tform.lstrip("0123456789").upper()
    if code[:1] in ("P", "Q"):
        return "vla_string" if code[1:2] == "A" else "vla"
    return "string" if code[:1] == "A" else "fixed"


def table_info(path: PathLike, hdu: HDUKey = 1) -> Tuple[int, List[ColumnInfo]]:
    """(rows, one ColumnInfo per column) of a table HDU, from its header."""
    path = _fspath(path)
    index, name, ver = _hdu_args(path, hdu)
    if name is None:
        res = _table_call(_ops.table_info, path, index)
    else:
        res = _table_call(_ops.table_info, path, name, ver)
    nrows, names, tforms, tunits, tdims, repeats, shapes, dtypes, tscal, tzero, tnull, has = res
    cols = [
        ColumnInfo(names[i], tforms[i], tunits[i], tdims[i], repeats[i], tuple(shapes[i]),
                   getattr(torch, dtypes[i]), _kind(tforms[i]), tscal[i], tzero[i],
                   tnull[i] if has[i] else None)
        for i in range(len(names))
    ]
    return nrows, cols


def _row_span(rows: Rows, nrows: Optional[int]) -> Tuple[int, int, int]:
    """rows -> (start, count, step) of the span to read; step applied after."""
    if rows is None:
        return 0, -1, 1
    if isinstance(rows, range):
        if rows.step < 0:
            raise ValueError(f"a row range needs a positive step, got {rows}")
        if len(rows) == 0:
            return min(max(rows.start, 0), nrows if nrows is not None else rows.start), 0, 1
        return rows.start, rows[-1] - rows.start + 1, rows.step
    if isinstance(rows, slice):
        if nrows is None:
            raise TypeError("internal: a slice needs the row count")
        start, stop, step = rows.indices(nrows)
        if step < 0:
            raise ValueError(f"a row slice needs a positive step, got {rows}")
        count = max(0, stop - start)
        return start, count, step
    raise TypeError(f"rows must be None, a slice or a range, not {type(rows).__name__}")


# What astropy strips from the end of a string after its trailing NULs:
# astropy decodes a character column holding ASCII only to str, and
# str.rstrip() takes these; a column with other bytes stays bytes, and
# bytes.rstrip() takes fewer.
_BLANKS_ASCII = b" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"
_BLANKS_BYTES = b" \t\n\r\x0b\x0c"


def _blanks(a: np.ndarray) -> bytes:
    return _BLANKS_ASCII if a.size == 0 or int(a.max()) < 128 else _BLANKS_BYTES


def _text(b: bytes, blanks: bytes) -> str:
    """One string as astropy 8's ``data[col][row]`` gives it: trailing NULs,
    then trailing blanks removed; NULs and anything else inside kept; each
    byte one character (latin-1)."""
    return b.rstrip(b"\0").rstrip(blanks).decode("latin-1")


def _decode_strings(t: torch.Tensor) -> list:
    """uint8 [rows, ..., width] -> nested lists of str, one per field of
    `width` bytes (_text)."""
    width = t.shape[-1] if t.dim() > 1 else 0
    arr = t.numpy()
    if width == 0:
        flat: list = [""] * int(np.prod(arr.shape[:-1], dtype=np.int64)) if arr.ndim > 1 else []
    else:
        blanks = _blanks(arr)
        rows = np.ascontiguousarray(arr).reshape(-1, width).view(f"S{width}").ravel().tolist()
        # .tolist() of S{width} drops the trailing NULs, as _text does
        flat = [_text(b, blanks) for b in rows]
    for n in reversed(arr.shape[1:-1]):
        flat = [flat[i:i + n] for i in range(0, len(flat), n)]
    return flat


def _split_vla(values: torch.Tensor, offsets: torch.Tensor, strings: bool) -> list:
    if strings:
        arr = values.numpy()
        data, blanks = arr.tobytes(), _blanks(arr)
        o = offsets.tolist()
        return [_text(data[o[i]:o[i + 1]], blanks) for i in range(len(o) - 1)]
    return _ops.split_rows(values, offsets)


def _convert(raw: Dict[str, torch.Tensor], cols: Dict[str, ColumnInfo], step: int) -> Dict[str, Value]:
    out: Dict[str, Value] = {}
    for key, t in raw.items():
        c = cols.get(key)
        if c is None:  # a NAME.offsets companion
            continue
        if c.kind == "string":
            v: Value = _decode_strings(t)
        elif c.kind in ("vla", "vla_string"):
            v = _split_vla(t, raw[key + ".offsets"], c.kind == "vla_string")
        else:
            v = t
        if step != 1:
            v = v[::step]
        out[key] = v
    return out


def _read(path: str, hdu: HDUKey, columns: Optional[Sequence[str]], rows: Rows,
          info: Optional[Tuple[int, List[ColumnInfo]]] = None) -> Dict[str, Value]:
    if isinstance(columns, str):
        columns = [columns]
    columns = [str(c) for c in columns] if columns is not None else []
    if info is None:
        info = table_info(path, hdu)
    nrows, cols = info
    start, count, step = _row_span(rows, nrows)
    index, name, ver = _hdu_args(path, hdu)
    if name is None:
        raw = _table_call(_ops.read_table, path, index, columns, start, count)
    else:
        raw = _table_call(_ops.read_table, path, name, columns, start, count, ver)
    return _convert(raw, {c.name: c for c in cols}, step)


def read_table(path: PathLike, hdu: HDUKey = 1, columns: Optional[Sequence[str]] = None,
               rows: Rows = None) -> Dict[str, Value]:
    """Read a binary or ASCII table HDU into a dict keyed by column name.

    Args:
        path: a FITS file (gzip files too).
        hdu: HDU number (0-based: the first extension is 1), EXTNAME, or
            (EXTNAME, EXTVER).
        columns: names to read (matched ignoring case; the keys keep the
            file's spelling); None reads all.
        rows: a slice (clamped as Python clamps) or a range (which must
            lie inside the table) of rows; None reads all. Only the span
            of rows asked for is read.

    Returns:
        Numeric, logical and bit columns as tensors ``[rows, *shape]``
        (shape from TDIMn in C order, or the repeat count); strings
        (``A``, and ``PA``/``QA`` one per row) as ``list[str]``, each byte
        one character (latin-1), as astropy's ``data[col][row]`` gives
        them: trailing NULs and then trailing blanks removed, NULs and
        other bytes inside kept (``torch.ops.torchfits.read_table`` gives
        every stored byte); variable-length arrays as ``list[Tensor]``,
        one per row.
    """
    return _read(_fspath(path), hdu, columns, rows)


def read_table_nulls(path: PathLike, hdu: HDUKey = 1, columns: Optional[Sequence[str]] = None,
                     rows: Rows = None) -> Dict[str, torch.Tensor]:
    """Null masks (True where a value is undefined) of the numeric columns:
    integer columns equal to TNULLn (they keep that stored value in a
    read), scaled integer columns and floats where they are NaN."""
    path = _fspath(path)
    info = table_info(path, hdu)
    data = _read(path, hdu, columns, rows, info)
    out: Dict[str, torch.Tensor] = {}
    for c in info[1]:
        v = data.get(c.name)
        if not isinstance(v, torch.Tensor) or c.kind != "fixed" or v.dtype == torch.bool:
            continue
        if v.is_floating_point() or v.is_complex():
            out[c.name] = torch.isnan(v)
        elif c.tnull is not None:
            # An integer dtype means TSCAL 1 and an integral TZERO; added
            # as Python ints, exact for TZERO 2^63 (uint64) too, where a
            # float sum rounds.
            out[c.name] = v == c.tnull + int(c.tzero)
        else:
            out[c.name] = torch.zeros(v.shape, dtype=torch.bool)
    return out


class TableHDU(HDU):
    """A binary or ASCII table HDU of a FitsFile.

    ``hdu["FLUX"]`` reads one column, ``hdu[["RA", "DEC"]]`` several,
    ``hdu[1000:2000]`` (or a range) a span of rows of every column.
    """

    _table: Optional[Tuple[int, List[ColumnInfo]]] = None

    def _info(self) -> Tuple[int, List[ColumnInfo]]:
        if self._table is None:
            self._table = table_info(self._file.path, self.index)
        return self._table

    @property
    def num_rows(self) -> int:
        return self.info.shape[0]

    @property
    def columns(self) -> List[str]:
        """Column names as the file spells them."""
        return [c.name for c in self._info()[1]]

    @property
    def column_info(self) -> List[ColumnInfo]:
        return list(self._info()[1])

    def read(self, columns: Optional[Sequence[str]] = None, rows: Rows = None) -> Dict[str, Value]:
        """As read_table on this HDU."""
        return _read(self._file.path, self.index, columns, rows, self._info())

    def __len__(self) -> int:
        return self.num_rows

    def __getitem__(self, key):
        if isinstance(key, str):
            (value,) = self.read([key]).values()
            return value
        if isinstance(key, (slice, range)):
            return self.read(None, key)
        if isinstance(key, (list, tuple)) and all(isinstance(k, str) for k in key):
            return self.read(list(key))
        raise TypeError("a table HDU takes a column name, a list of names, or a slice or "
                        f"range of rows, not {key!r}")
