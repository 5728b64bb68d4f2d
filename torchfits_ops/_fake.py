"""Fake (meta) kernels of the operators that return tensors, for
``torch.compile``, ``torch.export`` and ``torch.library.opcheck``.

A read's output shape and dtype depend on the file. A fake kernel cannot
see data, but it is given the path, which torch.compile treats as a
constant of the graph (Dynamo guards on a string's value). So each kernel
here reads the HDU's header, once, while the graph is traced, and gives the
shape and dtype a read of that file returns: the graph is specialised on
the path. Calling the compiled function with another path traces again
(another file of the same shape and dtype included); the same path runs
the compiled graph. If the file behind a path is rewritten with another
shape while the compiled function lives, the shape check Inductor puts
after every operator call raises an AssertionError: it never returns a
tensor of the wrong shape.

Registered with ``torch.library.register_fake`` (torch 2.4+) or its older
name ``impl_abstract`` (2.2, 2.3); on older torch, which has no
torch.compile, nothing is registered.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch

from .remote import shown as _shown

_register = getattr(torch.library, "register_fake", None) or getattr(torch.library, "impl_abstract", None)

# What raw=True returns for each BITPIX: the stored values.
_RAW_DTYPES = {8: torch.uint8, 16: torch.int16, 32: torch.int32, 64: torch.int64,
               -32: torch.float32, -64: torch.float64}


def _fake(name: str):
    def wrap(fn):
        if _register is not None:
            _register(f"torchfits::{name}")(fn)
        return fn
    return wrap


def _image(path: str, hdu: int, raw: bool):
    """(shape, dtype) of a read of image HDU `hdu`, from its header."""
    from . import info
    metas = info(path)
    if not 0 <= hdu < len(metas):
        raise IndexError(f"{_shown(path)}: HDU {hdu} does not exist (the file has {len(metas)} HDUs)")
    m = metas[hdu]
    if m.kind == "unsupported":
        raise NotImplementedError(f"{_shown(path)}: HDU {hdu} is valid FITS this reader does not read "
                                  "(torchfits_ops.read names the cause) [TF_EUNSUPPORTED]")
    if m.kind != "image":
        raise TypeError(f"{_shown(path)}: HDU {hdu} is a {m.kind}, not an image")
    return list(m.shape), (_RAW_DTYPES[m.bitpix] if raw else m.dtype)


def _hdu_number(path: str, extname: str, extver: int) -> int:
    return torch.ops.torchfits.find_hdu(path, extname, extver)


@_fake("read")
def _read(path: str, hdu: int = 0, raw: bool = False) -> torch.Tensor:
    shape, dtype = _image(path, hdu, raw)
    return torch.empty(shape, dtype=dtype)


@_fake("read.name")
def _read_name(path: str, hdu: str, extver: int = 0, raw: bool = False) -> torch.Tensor:
    return _read(path, _hdu_number(path, hdu, extver), raw)


@_fake("read_cutout")
def _read_cutout(path: str, hdu: int, start: Sequence[int], shape: Sequence[int],
                 step: Optional[Sequence[int]] = None, raw: bool = False) -> torch.Tensor:
    _, dtype = _image(path, hdu, raw)
    return torch.empty(list(shape), dtype=dtype)


@_fake("read_cutout.name")
def _read_cutout_name(path: str, hdu: str, extver: int, start: Sequence[int],
                      shape: Sequence[int], step: Optional[Sequence[int]] = None,
                      raw: bool = False) -> torch.Tensor:
    return _read_cutout(path, _hdu_number(path, hdu, extver), start, shape, step, raw)


@_fake("_read_cfitsio")
def _read_cfitsio(path: str, hdu: int, start: Sequence[int], shape: Sequence[int],
                  step: Optional[Sequence[int]] = None, raw: bool = False) -> torch.Tensor:
    whole, dtype = _image(path, hdu, raw)
    return torch.empty(list(shape) if len(start) else whole, dtype=dtype)


@_fake("read_into")
def _read_into(path: str, hdu: int, out: torch.Tensor, raw: bool = False) -> None:
    return None


@_fake("read_cutout_into")
def _read_cutout_into(path: str, hdu: int, start: Sequence[int], out: torch.Tensor,
                      step: Optional[Sequence[int]] = None, raw: bool = False) -> None:
    return None


def _batch_item(paths: Sequence[str], hdu: int, shape: Optional[Sequence[int]], raw: bool,
                skip_errors: bool):
    """Shape and dtype of one item of a batch: the first readable file's,
    as the operator decides them."""
    for p in paths:
        try:
            whole, dtype = _image(p, hdu, raw)
        except (OSError, RuntimeError, IndexError, TypeError, ValueError):
            if skip_errors:
                continue
            raise
        return (list(shape) if shape is not None else whole), dtype
    return list(shape or []), torch.float32


@_fake("read_batch")
def _read_batch(paths: List[str], hdu: int = 0, start: Optional[Sequence[int]] = None,
                shape: Optional[Sequence[int]] = None, step: Optional[Sequence[int]] = None,
                raw: bool = False, skip_errors: bool = False, threads: int = 0):
    item, dtype = _batch_item(paths, hdu, shape, raw, skip_errors)
    return (torch.empty([len(paths)] + item, dtype=dtype),
            torch.empty([len(paths)], dtype=torch.bool))


@_fake("read_batch_into")
def _read_batch_into(paths: List[str], hdu: int, out: torch.Tensor,
                     start: Optional[Sequence[int]] = None, step: Optional[Sequence[int]] = None,
                     raw: bool = False, skip_errors: bool = False, threads: int = 0):
    return torch.empty([len(paths)], dtype=torch.bool)


@_fake("read_cutouts")
def _read_cutouts(paths: List[str], hdus: List[int], items: torch.Tensor, shape: Sequence[int],
                  fill: float, dtype: Optional[torch.dtype] = None, threads: int = 0):
    return items.new_empty([items.shape[0], shape[0], shape[1]], dtype=dtype or torch.float32)


@_fake("read_columns")
def _read_columns(path: str, hdu: int, columns: List[str], start_row: int = 0,
                  num_rows: int = -1) -> List[torch.Tensor]:
    from .table import table_info
    nrows, cols = table_info(path, hdu)
    by_name = {}
    for c in cols:
        by_name.setdefault(c.name.upper(), c)  # the first column of a name, any case
    rows = nrows - start_row if num_rows == -1 else num_rows
    if start_row < 0 or rows < 0 or start_row + rows > nrows:
        raise IndexError(f"{_shown(path)}: HDU {hdu}: rows {start_row} to {start_row + rows - 1} "
                         f"are outside the table's {nrows} rows")
    out = []
    for name in columns:
        c = by_name.get(name.upper())
        if c is None:
            raise ValueError(f"{_shown(path)}: HDU {hdu}: no column named '{name}'")
        out.append(torch.empty([rows] + list(c.shape), dtype=c.dtype))
    return out


@_fake("split_rows")
def _split_rows(values: torch.Tensor, offsets: torch.Tensor) -> List[torch.Tensor]:
    # Each row's length is in the data: a size the graph learns at run time.
    ctx = torch.library.get_ctx()
    size = getattr(ctx, "new_dynamic_size", None) or ctx.create_unbacked_symint
    return [values.new_empty([size()]) for _ in range(offsets.shape[0] - 1)]
