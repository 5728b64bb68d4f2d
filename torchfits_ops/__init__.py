"""torchfits_ops: FITS files read straight into PyTorch tensors.

Importing this package loads the compiled library, which registers the
operators ``torch.ops.torchfits.*`` with PyTorch's dispatcher. Those
operators work from Python, from ``torch.jit.script`` code and from
DataLoader workers. The functions here are thin, typed wrappers around
them: each converts its arguments, makes one ``torch.ops`` call, and turns
the result into friendlier Python types where that helps.

HDU numbers are 0-based (0 is the primary HDU), as in astropy and fitsio.
Shapes are in C order (NAXISn reversed).
"""
from __future__ import annotations

import glob
import os
import weakref
from collections import OrderedDict
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch

__all__ = [
    "ColumnInfo",
    "FitsError",
    "FitsFile",
    "HDU",
    "HDUInfo",
    "ImageHDU",
    "TableHDU",
    "UnsupportedHDU",
    "info",
    "num_hdus",
    "open",
    "read",
    "read_cutout",
    "read_header",
    "read_table",
    "read_table_nulls",
    "set_keep_mb",
    "set_table_max_mb",
    "set_threads",
    "set_unpack_max_mb",
    "options",
    "remote_settings",
    "remote_stats",
    "set_remote",
    "table_info",
    "WCSInfo",
    "pixel_to_world",
    "read_sky_cutout",
    "wcs_info",
    "world_to_pixel",
    "ChecksumStatus",
    "verify_checksum",
    "write",
    "write_table",
]

__version__ = "0.1.0"


def _torch_tag(version: str) -> str:
    major, minor = version.split(".")[:2]
    return f"torch{major}_{minor}"


def _load_library() -> None:
    """Load the library built for this torch. A torch extension is bound to
    the ABI of the torch it was built with (major.minor); its file name says
    which, and a library built for another torch is named, not loaded."""
    here = os.path.dirname(os.path.abspath(__file__))
    tag = _torch_tag(torch.__version__)
    found = sorted(glob.glob(os.path.join(here, f"_C_{tag}.*so")))
    if not found:
        others = sorted(os.path.basename(p) for p in glob.glob(os.path.join(here, "_C_torch*.so")))
        if others:
            built = ", ".join(p.split(".")[0][len("_C_torch"):].replace("_", ".") for p in others)
            raise ImportError(
                f"torchfits_ops was built for torch {built}, but this Python has torch "
                f"{torch.__version__} ({here} holds {', '.join(others)}). A torch extension "
                "only loads under the torch it was built with: rebuild it here with "
                "`python setup.py build_ext --inplace`, or reinstall with "
                "`pip install --no-build-isolation .`")
        raise ImportError(
            f"torchfits_ops: the compiled library (_C_{tag}*.so) is missing from "
            f"{here}; build it with `python setup.py build_ext --inplace` "
            "or install with `pip install --no-build-isolation .`"
        )
    torch.ops.load_library(found[0])


_load_library()
_ops = torch.ops.torchfits
from . import _fake  # noqa: E402,F401  (fake kernels for torch.compile)
from . import remote as _remote  # noqa: E402
from .remote import remote_settings, remote_stats, set_remote  # noqa: E402,F401
from .remote import shown as _shown  # noqa: E402

# The settings' environment variables, read once, here, under the GIL:
# the core never calls getenv (a read with the GIL released raced a
# Python thread's os.environ assignment). Change them at run time with the
# setters below.
_ENVIRONMENT = {"threads": "TORCHFITS_THREADS", "keep_mb": "TORCHFITS_KEEP_MB",
                "unpack_max_mb": "TORCHFITS_UNPACK_MAX_MB",
                "table_max_mb": "TORCHFITS_TABLE_MAX_MB"}


def _options_from_environment() -> None:
    import warnings
    for name, var in _ENVIRONMENT.items():
        text = os.environ.get(var, "").strip()
        if not text:
            continue
        try:
            value = int(text)
            if value < 0:
                raise ValueError
        except ValueError:
            warnings.warn(f"torchfits_ops: {var}={text!r} is not a count >= 0; using "
                          f"{_ops.get_option(name)}", RuntimeWarning, stacklevel=3)
            continue
        _ops.set_option(name, value)


_options_from_environment()
_remote.sync_aws_environment()


def set_threads(n: int) -> int:
    """Threads for one large image read or tile decode (0: one per CPU, the
    default; TORCHFITS_THREADS at import). Returns the previous value."""
    return _ops.set_option("threads", int(n))


def set_keep_mb(mb: int) -> int:
    """MiB of freed large outputs kept for reuse (256; 0 keeps none;
    TORCHFITS_KEEP_MB at import). Returns the previous value."""
    return _ops.set_option("keep_mb", int(mb))


def set_unpack_max_mb(mb: int) -> int:
    """Most MiB a compressed (.gz, .Z) file may unpack to (4096;
    TORCHFITS_UNPACK_MAX_MB at import). Returns the previous value."""
    return _ops.set_option("unpack_max_mb", int(mb))


def set_table_max_mb(mb: int) -> int:
    """MiB one table read may produce in all (every column, offsets too)
    where that is more than 8 times the file's size; 0 (the default): 8
    times the file's size is the limit (TORCHFITS_TABLE_MAX_MB at import).
    Only a table whose variable-length arrays share heap bytes, or whose
    ASCII columns overlap, comes near it; past it the read raises
    RuntimeError [TF_ELIMIT] before anything is allocated. Returns the
    previous value."""
    return _ops.set_option("table_max_mb", int(mb))


def options() -> Dict[str, int]:
    """The current settings: threads, keep_mb, unpack_max_mb, table_max_mb."""
    return {name: _ops.get_option(name) for name in _ENVIRONMENT}

PathLike = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]

# How a name that is not UTF-8 crosses the dispatcher (its str arguments are
# UTF-8): a NUL, which no real path holds, then the name's bytes in hex.
_BYTES_PATH = "\0bytes:"


def _fspath(path: PathLike) -> str:
    """A path as the operators take it. str, bytes and os.PathLike all
    work; a path is any bytes but NUL (ValueError). A name that is not
    UTF-8 (bytes, or a str with surrogate escapes as os.listdir returns)
    is sent as its bytes (see _BYTES_PATH)."""
    p = os.fspath(path)
    if isinstance(p, str):
        if p.startswith("s3://"):
            _remote.sync_aws_environment()
        if "\0" not in p:
            try:
                p.encode("utf-8")
                return p
            except UnicodeEncodeError:
                pass
        b = os.fsencode(p)
    else:
        b = p
    if b"\0" in b:
        raise ValueError(f"a path cannot contain a NUL byte: {p!r}")
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return _BYTES_PATH + b.hex()
HDUKey = Union[int, str, Tuple[str, int]]


class FitsError(RuntimeError):
    """A file that is not FITS, or is corrupt or truncated. The message
    names the file, the HDU and the cause."""


def _translate(err: RuntimeError) -> Exception:
    """Map an operator's RuntimeError to the documented Python type."""
    msg = str(err)
    if "[TF_EOPEN]" in msg:
        if "No such file" in msg:
            return FileNotFoundError(msg)
        if "Permission denied" in msg:
            return PermissionError(msg)
        if "it is a directory" in msg:
            return IsADirectoryError(msg)
        return OSError(msg)
    if "[TF_ECORRUPT]" in msg or "[TF_ENOTFITS]" in msg or "[TF_EPOISONED]" in msg:
        return FitsError(msg)
    if "[TF_EIO]" in msg:
        # A read that failed below FITS: the disk, or the network for a URL.
        if "timed out" in msg:
            return TimeoutError(msg)
        return OSError(msg)
    return err


def _call(op, *args):
    try:
        return op(*args)
    except RuntimeError as err:  # IndexError, ValueError, TypeError pass by
        new = _translate(err)
        if new is err:
            raise
        raise new from None


def _hdu_args(path: str, hdu: HDUKey) -> Tuple[Optional[int], Optional[str], int]:
    """(number, None, 0) or (None, EXTNAME, EXTVER); negative numbers count
    from the end."""
    if isinstance(hdu, tuple):
        name, ver = hdu
        return None, str(name), int(ver)
    if isinstance(hdu, str):
        return None, hdu, 0
    if isinstance(hdu, bool) or not hasattr(hdu, "__index__"):
        raise TypeError(f"hdu must be an int, an EXTNAME str or an (EXTNAME, EXTVER) tuple, got {hdu!r}")
    index = int(hdu)
    if index < 0:
        count = num_hdus(path)
        if index + count < 0:
            raise IndexError(f"{_shown(path)}: HDU {index} does not exist (the file has {count} HDUs)")
        index += count
    return index, None, 0


_RAW_DTYPES = {8: torch.uint8, 16: torch.int16, 32: torch.int32, 64: torch.int64,
               -32: torch.float32, -64: torch.float64}


def _device_read(path: str, index: Optional[int], name: Optional[str], ver: int,
                 start: Optional[List[int]], shape: Optional[List[int]],
                 step: Optional[List[int]], raw: bool, device) -> torch.Tensor:
    """Read onto `device`. For CUDA: into pinned memory (read_into), then an
    asynchronous copy (non_blocking=True)."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"{_shown(path)}: device {device} was asked for, but CUDA is not available "
                           f"(torch {torch.__version__}, built with CUDA {torch.version.cuda})")
    if name is not None:
        index = _call(_ops.find_hdu, path, name, ver)
    if device.type != "cuda":
        t = (_call(_ops.read, path, index, raw) if start is None else
             _call(_ops.read_cutout, path, index, start, shape, step, raw))
        return t.to(device)
    meta = info(path)[index]
    dtype = _RAW_DTYPES[meta.bitpix] if raw else meta.dtype
    buf = torch.empty(meta.shape if start is None else shape, dtype=dtype, pin_memory=True)
    if start is None:
        _call(_ops.read_into, path, index, buf, raw)
    else:
        _call(_ops.read_cutout_into, path, index, start, buf, step, raw)
    return buf.to(device, non_blocking=True)


def read(path: PathLike, hdu: HDUKey = 0, *, raw: bool = False, device=None) -> torch.Tensor:
    """Read a whole image HDU.

    Args:
        path: a FITS file (``.fits.gz`` and other gzip files too).
        hdu: HDU number (0-based, negative from the end), EXTNAME, or
            (EXTNAME, EXTVER).
        raw: return the stored values, without BZERO/BSCALE.
        device: where the tensor goes (default CPU). A CUDA device reads into
            pinned memory and copies with non_blocking=True; RuntimeError
            when CUDA is not available.

    Returns:
        A tensor of shape (NAXISn, ..., NAXIS1). Its dtype follows the table
        in the README: exact for the unsigned conventions, float32/float64
        for other scaling (BLANK pixels become NaN; a BLANK that BITPIX
        cannot hold, such as -1 on BITPIX 8, matches no pixel and is
        ignored).
    """
    path = _fspath(path)
    index, name, ver = _hdu_args(path, hdu)
    if device is not None:
        return _device_read(path, index, name, ver, None, None, None, raw, device)
    if name is None:
        return _call(_ops.read, path, index, raw)
    return _call(_ops.read, path, name, ver, raw)


def read_cutout(
    path: PathLike,
    hdu: HDUKey,
    start: Sequence[int],
    shape: Sequence[int],
    step: Optional[Sequence[int]] = None,
    *,
    raw: bool = False,
    device=None,
) -> torch.Tensor:
    """Read the region ``start[d] + i * step[d]`` for ``i < shape[d]`` of an
    image (C order, 0-based), reading only what the region needs.

    Returns a tensor of the given shape. A region outside the image raises
    IndexError. ``device`` as for ``read``.
    """
    path = _fspath(path)
    index, name, ver = _hdu_args(path, hdu)
    start, shape = [int(s) for s in start], [int(s) for s in shape]
    step = None if step is None else [int(s) for s in step]
    if device is not None:
        return _device_read(path, index, name, ver, start, shape, step, raw, device)
    if name is None:
        return _call(_ops.read_cutout, path, index, start, shape, step, raw)
    return _call(_ops.read_cutout, path, name, ver, start, shape, step, raw)


def _typed_value(value: str, kind: str) -> Any:
    """The card's value as Python; a value its type letter does not fit
    (cfitsio calls "1e400" an integer) stays the card's text."""
    try:
        if kind == "L":
            return value == "T"
        if kind == "I":
            return int(value)
        if kind == "F":
            return float(value.replace("D", "E").replace("d", "e"))
        if kind == "X":
            re_, im = value.strip("()").split(",")
            return complex(float(re_.replace("D", "E")), float(im.replace("D", "E")))
    except ValueError:
        return value
    if kind == "U":
        return None
    return value


def read_header(path: PathLike, hdu: HDUKey = 0) -> Dict[str, Any]:
    """Read an HDU's header as a dict, in card order.

    Values are typed: bool, int, float, complex, str, or None for a keyword
    without value. COMMENT and HISTORY hold all their cards joined with
    newlines; long strings continued with CONTINUE cards come back whole;
    for a repeated keyword the first card wins. For a tile-compressed image
    this is the image's header, as astropy shows it. (The operator
    ``torch.ops.torchfits.read_header`` gives the same keys with the values
    as text, for TorchScript.)
    """
    path = _fspath(path)
    index, name, ver = _hdu_args(path, hdu)
    if name is not None:
        index = _call(_ops.find_hdu, path, name, ver)
    keys, values, _, kinds = _call(_ops.read_header_cards, path, index)
    out: Dict[str, Any] = {}
    for key, value, kind in zip(keys, values, kinds):
        if kind == "H" and key in ("COMMENT", "HISTORY") and key in out:
            out[key] += "\n" + value
        elif key not in out:
            out[key] = _typed_value(value, kind)
    return out


def num_hdus(path: PathLike) -> int:
    """Number of HDUs in the file."""
    return _call(_ops.num_hdus, _fspath(path))


class HDUInfo(NamedTuple):
    index: int
    name: str
    ver: int
    # "image", "binary_table", "ascii_table", or "unsupported": valid FITS
    # this reader does not read (random groups, more than 16 axes), listed
    # with its name, version and BITPIX; reading it raises
    # NotImplementedError with the cause
    kind: str
    shape: Tuple[int, ...]  # images: C order; tables: (rows,); unsupported: ()
    dtype: Optional[torch.dtype]  # what read() returns; None for tables
    bitpix: int
    compressed: bool


def info(path: PathLike) -> List[HDUInfo]:
    """One HDUInfo per HDU, from a single pass over the file's headers."""
    return _infos(_call(_ops.info, _fspath(path)))


def _infos(t) -> List[HDUInfo]:
    kinds, shapes, dtypes, names, vers, bitpix, compressed = t
    return [
        HDUInfo(i, names[i], vers[i], kinds[i], tuple(shapes[i]),
                getattr(torch, dtypes[i]) if dtypes[i] else None, bitpix[i], compressed[i])
        for i in range(len(kinds))
    ]


def _box(key: Any, shape: Tuple[int, ...]) -> Optional[Tuple[List[int], List[int]]]:
    """(start, count) of the common cutout, a[y0:y1, x0:x1] with every bound
    an int inside the image and no step; None for any other index. On the
    path of every cutout, so it skips the general walk of _region."""
    if type(key) is not tuple or len(key) != len(shape):
        return None
    start, count = [], []
    for k, n in zip(key, shape):
        if type(k) is not slice or k.step is not None:
            return None
        a, b = k.start, k.stop
        if type(a) is not int or type(b) is not int or not 0 <= a < b <= n:
            return None
        start.append(a)
        count.append(b - a)
    return start, count


def _region(key: Any, shape: Tuple[int, ...]):
    """numpy-style index -> (start, count, step, flip axes, kept axes)."""
    box = _box(key, shape)
    if box is not None:
        return box[0], box[1], [1] * len(shape), [], list(range(len(shape)))
    if not isinstance(key, tuple):
        key = (key,)
    if sum(k is Ellipsis for k in key) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if Ellipsis in key:
        i = key.index(Ellipsis)
        key = key[:i] + (slice(None),) * (len(shape) - len(key) + 1) + key[i + 1:]
    if len(key) > len(shape):
        raise IndexError(f"too many indices: the image has {len(shape)} axes, {len(key)} were given")
    key = key + (slice(None),) * (len(shape) - len(key))
    start, count, step, flip, keep = [], [], [], [], []
    for axis, (k, n) in enumerate(zip(key, shape)):
        if isinstance(k, slice):
            s, e, st = k.indices(n)
            if st > 0:
                c = max(0, (e - s + st - 1) // st)
            else:
                c = max(0, (s - e - st - 1) // -st)
                s = s + (c - 1) * st if c else 0
                st = -st
                flip.append(len(keep))
            start.append(s)
            count.append(c)
            step.append(st)
            keep.append(axis)
        elif hasattr(k, "__index__") and not isinstance(k, bool):
            i = int(k)
            if not -n <= i < n:
                raise IndexError(f"index {i} is out of bounds for axis {axis} with size {n}")
            start.append(i % n)
            count.append(1)
            step.append(1)
        else:
            raise TypeError(f"FITS images take ints, slices and '...' as indices, not {k!r}")
    return start, count, step, flip, keep


class HDU:
    """One HDU of a FitsFile; reads go to the file on each call."""

    def __init__(self, file: "FitsFile", meta: HDUInfo):
        self._file = file
        self.info = meta
        self._header: Optional[Dict[str, Any]] = None

    index = property(lambda self: self.info.index)
    name = property(lambda self: self.info.name)
    ver = property(lambda self: self.info.ver)
    kind = property(lambda self: self.info.kind)

    @property
    def header(self) -> Dict[str, Any]:
        """The header as read_header gives it (read once, then kept)."""
        if self._header is None:
            self._header = read_header(self._file.path, self.index)
        return self._header

    def __repr__(self) -> str:
        name = f" {self.name!r}" if self.name else ""
        return f"<{type(self).__name__} {self.index}{name} {self.kind} shape={self.info.shape}>"


class ImageHDU(HDU):
    @property
    def shape(self) -> torch.Size:
        return torch.Size(self.info.shape)

    @property
    def dtype(self) -> torch.dtype:
        return self.info.dtype

    @property
    def ndim(self) -> int:
        return len(self.info.shape)

    def read(self, *, raw: bool = False) -> torch.Tensor:
        """The whole image, as torchfits_ops.read gives it."""
        return _call(self._file._handle().read, self.index, raw)

    def __getitem__(self, key: Any) -> torch.Tensor:
        """numpy-style slicing (ints, slices with steps, negative indices,
        '...') that reads only the region asked for."""
        meta = self.info
        box = _box(key, meta.shape)
        if box is not None:  # no step (None: the call converts no list), no axis dropped
            return _call(self._file._cutout(), meta.index, box[0], box[1], None, False)
        start, count, step, flip, keep = _region(key, meta.shape)
        if 0 in count:
            return torch.empty([count[a] for a in keep], dtype=meta.dtype)
        t = _call(self._file._cutout(), meta.index, start, count, step, False)
        if len(keep) != len(count):  # integer indices drop their axes
            t = t.reshape([count[a] for a in keep])
        return t.flip(flip) if flip else t

    def cutouts(self, starts: Union[Sequence[Sequence[int]], torch.Tensor], shape: Sequence[int],
                *, raw: bool = False) -> torch.Tensor:
        """Many regions of one shape in one call: ``[len(starts), *shape]``,
        region i from ``starts[i]`` (C order, 0-based; every region inside
        the image, else IndexError). ``starts`` is a list of corners or an
        integer tensor ``[N, ndim]``. One call into the open file for all of
        them, where slicing pays that call per region."""
        shape = [int(v) for v in shape]
        if isinstance(starts, torch.Tensor):
            if starts.dim() != 2 or starts.shape[1] != len(shape):
                raise ValueError(f"starts must be [N, {len(shape)}], got {list(starts.shape)}")
            flat = starts.reshape(-1).tolist()
        else:
            flat = []
            for s in starts:
                if len(s) != len(shape):
                    raise ValueError(f"start {list(s)} has {len(s)} axes, shape {shape} has "
                                     f"{len(shape)}")
                flat.extend(int(v) for v in s)
        return _call(self._file._handle().read_cutouts, self.index, flat, shape, raw)


class UnsupportedHDU(HDU):
    """An HDU this reader lists but does not read (kind "unsupported"):
    random groups, or an image of more than 16 axes. Its header reads."""

    def read(self, *, raw: bool = False) -> torch.Tensor:
        """Raises NotImplementedError naming the cause."""
        return _call(self._file._handle().read, self.index, raw)


# Tables live in table.py; it imports the helpers above.
from .table import ColumnInfo, TableHDU, read_table, read_table_nulls, table_info  # noqa: E402
# Sky coordinates (WCS through wcslib) live in wcs.py.
from .wcs import WCSInfo, pixel_to_world, read_sky_cutout, wcs_info, world_to_pixel  # noqa: E402
# Writing lives in write.py; it imports the helpers above.
from .write import ChecksumStatus, verify_checksum, write, write_table  # noqa: E402


class FitsFile:
    """A FITS file's HDUs, from ``torchfits_ops.open(path)``.

    The HDU list and image reads and slices go through one handle kept
    open (and the file mapped) from ``open()`` until ``close()`` or the end
    of the ``with`` block: many cutouts of one large image then cost a copy each,
    not an open and a read per row. The object stays picklable and safe to
    share with DataLoader workers and threads: a pickled copy, a forked
    worker and a second thread reading at the same time each use a handle
    of their own. A process keeps at most 64 such handles open (the oldest
    is opened again on its next read). Table and header reads open the
    file per call.
    """

    def __init__(self, path: PathLike):
        self.path = _fspath(path)
        self._file = None  # torch.classes.torchfits.File (None: let go, or closed)
        self._read_cutout = None  # its bound read_cutout, set with it
        self._closed = False
        # One open for the HDU list and the reads that follow.
        self._infos = _infos(_call(self._handle().info))
        # HDU objects point to this file, which keeps them only weakly: no
        # cycle, so a FitsFile nobody holds closes its handle at once
        # rather than at the next garbage collection.
        self._hdus: "weakref.WeakValueDictionary[int, HDU]" = weakref.WeakValueDictionary()

    def _hdu(self, index: int) -> HDU:
        h = self._hdus.get(index)
        if h is None:
            m = self._infos[index]
            cls = {"image": ImageHDU, "unsupported": UnsupportedHDU}.get(m.kind, TableHDU)
            h = self._hdus[index] = cls(self, m)
        return h

    def _handle(self):
        if self._file is None:
            if self._closed:
                raise ValueError(f"{self.path}: the file is closed")
            self._file = _call(torch.classes.torchfits.File, self.path)
            self._read_cutout = self._file.read_cutout
            _keep_open(self)
        return self._file

    def _cutout(self):
        """The handle's read_cutout, looked up once per handle."""
        if self._read_cutout is None:
            self._handle()
        return self._read_cutout

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state["_file"] = state["_read_cutout"] = None  # each process opens its own
        del state["_hdus"]
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._hdus = weakref.WeakValueDictionary()

    def __enter__(self) -> "FitsFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the handle kept for image reads; later reads raise ValueError."""
        if self._file is not None:
            self._file.close()
        self._file = self._read_cutout = None
        self._closed = True
        _forget_open(self)

    def __len__(self) -> int:
        return len(self._infos)

    def __iter__(self):
        return (self._hdu(i) for i in range(len(self._infos)))

    def __getitem__(self, key: HDUKey) -> HDU:
        if isinstance(key, (str, tuple)):
            name, ver = (key, 0) if isinstance(key, str) else key
            return self._hdu(_call(_ops.find_hdu, self.path, str(name), int(ver)))
        if isinstance(key, bool) or not hasattr(key, "__index__"):
            raise TypeError(f"HDUs are indexed by number, EXTNAME or (EXTNAME, EXTVER), not {key!r}")
        n = len(self._infos)
        if not -n <= int(key) < n:
            raise IndexError(f"{self.path}: HDU {key} does not exist (the file has {n} HDUs)")
        return self._hdu(int(key) % n)

    def info(self) -> List[HDUInfo]:
        """One HDUInfo per HDU."""
        return list(self._infos)

    def __repr__(self) -> str:
        lines = [f"<FitsFile {self.path!r}: {len(self)} HDUs>"]
        for m in self.info():
            lines.append(f"  {m.index:3d} {m.name or '':12s} {m.kind:13s} {str(m.shape):20s} "
                         f"{m.dtype if m.dtype else ''}{' (compressed)' if m.compressed else ''}")
        return "\n".join(lines)


# FitsFile handles kept open in this process, oldest first. Past
# _KEPT_OPEN the oldest is let go (its file object closes once no thread
# is reading through it) and opened again on its next read: a program that
# holds many FitsFile objects (one per file of a survey) keeps at most this
# many descriptors open.
_KEPT_OPEN = 64
_open_files: "OrderedDict[int, weakref.ref]" = OrderedDict()


def _keep_open(f: FitsFile) -> None:
    key = id(f)

    def gone(ref, key=key):
        if _open_files.get(key) is ref:
            del _open_files[key]

    _open_files[key] = weakref.ref(f, gone)
    _open_files.move_to_end(key)
    while len(_open_files) > _KEPT_OPEN:
        _, ref = _open_files.popitem(last=False)
        other = ref()
        if other is not None:
            other._file = other._read_cutout = None


def _forget_open(f: FitsFile) -> None:
    ref = _open_files.get(id(f))
    if ref is not None and ref() is f:
        del _open_files[id(f)]


def open(path: PathLike) -> FitsFile:  # noqa: A001 - mirrors astropy.io.fits.open
    """Open a FITS file for reading HDUs by number or EXTNAME:

        with torchfits_ops.open("img.fits") as f:
            print(f.info())
            cut = f["SCI"][100:164, 200:264]
    """
    return FitsFile(path)
