"""torchfits_ops.data: FITS files as PyTorch datasets.

Built on torch.utils.data and torch.distributed, nothing of our own:

- ``FitsDataset(files)``: one sample per file (a whole image or the same
  cutout of each), map-style; works with ``DataLoader`` (any
  ``num_workers``, fork or spawn, ``persistent_workers``, ``pin_memory``)
  and ``DistributedSampler``.
- ``FitsCutoutDataset(path_or_paths, size)``: random or given cutouts from
  large images, reading only the cutout (uncompressed and compressed).
- ``FitsTableDataset(path)``: one sample per table row, read in row blocks.
- ``FitsIterableDataset(files)``: streams the files, sharded by the rank and
  world size of ``torch.distributed`` and by DataLoader worker.

Datasets hold paths, never open files: each read opens, reads and closes,
so they pickle to any worker. A sample costs one operator call. Batches of
whole files read through ``torch.ops.torchfits.read_batch``, which reads
the files in parallel inside the op: on torch 2.x the DataLoader calls
``__getitems__`` for that; on any torch, ``batch_loader`` gives the same.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, IterableDataset, RandomSampler
from torch.utils.data import SequentialSampler, get_worker_info
from torch.utils.data._utils.collate import default_collate

from . import _RAW_DTYPES, PathLike, _call, _fspath, _ops, info, read
from .remote import shown as _shown

__all__ = [
    "SkyCutoutDataset",
    "FitsCutoutDataset",
    "FitsDataset",
    "FitsIterableDataset",
    "FitsTableDataset",
    "batch_loader",
    "collate",
]

Cutout = Tuple[Sequence[int], Sequence[int]]
# Slots of the shared skip counter: 0 for the main process, 1 + worker id.
_SKIP_SLOTS = 257
# Files a FitsCutoutDataset keeps open (and mapped) in each process; the
# least recently used is closed when another is opened.
_KEEP_OPEN = 16


def collate(batch: List[Any]) -> Any:
    """default_collate after dropping skipped samples (None): the
    ``collate_fn`` to use with ``skip_errors=True``. A batch whose files
    were all skipped comes back as None."""
    kept = [s for s in batch if s is not None]
    return default_collate(kept) if kept else None


def _worker_slot() -> int:
    w = get_worker_info()
    return 0 if w is None else 1 + w.id % (_SKIP_SLOTS - 1)


class _SkipCounter:
    """A count of skipped files shared by the DataLoader workers: a tensor in
    shared memory, one slot per worker so no two processes write the same
    element."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.counts = torch.zeros(_SKIP_SLOTS if enabled else 1, dtype=torch.int64)
        if enabled:  # only then is a shared-memory segment worth holding
            self.counts.share_memory_()

    def add(self, n: int = 1) -> None:
        if self.enabled:
            self.counts[_worker_slot()] += n

    def total(self) -> int:
        return int(self.counts.sum())


def _fspaths(files: Union[PathLike, Sequence[PathLike]]) -> List[str]:
    if isinstance(files, (str, bytes, os.PathLike)):
        return [_fspath(files)]
    return [_fspath(f) for f in files]


def _hdu_number(hdu: int) -> int:
    if isinstance(hdu, bool) or not hasattr(hdu, "__index__") or int(hdu) < 0:
        raise TypeError(f"hdu must be an HDU number >= 0 for datasets, got {hdu!r}")
    return int(hdu)


class FitsDataset(Dataset):
    """One sample per file: the image of HDU ``hdu`` (or the same cutout of
    each), or ``(image, label_fn(path))`` when ``label_fn`` is given, so the
    default collate stacks batches.

    Args:
        files: FITS paths.
        hdu: HDU number (0-based).
        cutout: ``(start, shape)`` in C order to read the same region of
            each file, or None for the whole image.
        transform: applied to each image tensor.
        label_fn: ``label_fn(path)`` gives the sample's label.
        raw: stored values, without BZERO/BSCALE.
        skip_errors: a missing or corrupt file is skipped (the sample is
            None, dropped by ``torchfits_ops.data.collate``) and counted in
            ``num_skipped`` (summed over workers) instead of raising.

    ``dataset[i]`` is one sample; ``dataset[[i, j, ...]]`` is a whole batch
    read by one ``read_batch`` call (see ``batch_loader``); the DataLoader
    of torch 2.x calls ``__getitems__``, which does the same.
    """

    def __init__(self, files: Sequence[PathLike], hdu: int = 0, cutout: Optional[Cutout] = None,
                 transform: Optional[Callable[[torch.Tensor], Any]] = None,
                 label_fn: Optional[Callable[[str], Any]] = None, *, raw: bool = False,
                 skip_errors: bool = False):
        self.files = _fspaths(files)
        self.hdu = _hdu_number(hdu)
        self.start: Optional[List[int]] = None
        self.shape: Optional[List[int]] = None
        if cutout is not None:
            start, shape = cutout
            self.start, self.shape = [int(s) for s in start], [int(s) for s in shape]
        self.transform = transform
        self.label_fn = label_fn
        self.raw = raw
        self.skip_errors = skip_errors
        self._skipped = _SkipCounter(skip_errors)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def num_skipped(self) -> int:
        """Files skipped so far (skip_errors=True), over all workers."""
        return self._skipped.total()

    def _read(self, path: str) -> torch.Tensor:
        if self.start is None:
            return _ops.read(path, self.hdu, self.raw)
        return _ops.read_cutout(path, self.hdu, self.start, self.shape, None, self.raw)

    def _sample(self, image: torch.Tensor, path: str) -> Any:
        if self.transform is not None:
            image = self.transform(image)
        if self.label_fn is not None:
            return image, self.label_fn(path)
        return image

    def __getitem__(self, index):
        if not hasattr(index, "__index__"):
            return self._batch([int(i) for i in index])
        path = self.files[int(index)]
        if not self.skip_errors:
            return self._sample(_call(self._read, path), path)
        try:
            image = self._read(path)
        except RuntimeError:
            self._skipped.add()
            return None
        return self._sample(image, path)

    def _read_batch(self, indices: List[int]) -> Tuple[torch.Tensor, List[str]]:
        paths = [self.files[i] for i in indices]
        try:
            # In a DataLoader worker the workers are the parallelism: one
            # thread each (bench_data measured the difference).
            threads = 1 if get_worker_info() is not None else 0
            batch, ok = _call(_ops.read_batch, paths, self.hdu, self.start, self.shape, None,
                              self.raw, self.skip_errors, threads)
        except (RuntimeError, OSError):
            if not self.skip_errors:
                raise
            # With skip_errors the op raises only when no file could be read.
            self._skipped.add(len(paths))
            return torch.empty(0), []
        if self.skip_errors and not bool(ok.all()):
            self._skipped.add(int((~ok).sum()))
            keep = ok.nonzero().flatten()
            batch = batch.index_select(0, keep)
            paths = [paths[i] for i in keep.tolist()]
        return batch, paths

    def _read_shared(self, indices: List[int]) -> Optional[torch.Tensor]:
        """A worker's batch read straight into shared memory, where the
        DataLoader hands it to the main process without a copy (a batch in
        ordinary memory is copied into shared memory on its way, as the
        default collate copies samples into it). The first file's header
        gives the batch's shape and dtype; None where that cannot be known
        (the read then goes the ordinary way, and says why it fails)."""
        paths = [self.files[i] for i in indices]
        if not paths:
            return None
        try:
            metas = info(paths[0])
        except (RuntimeError, OSError, ValueError):
            return None
        if not 0 <= self.hdu < len(metas) or metas[self.hdu].kind != "image":
            return None
        meta = metas[self.hdu]
        dtype = _RAW_DTYPES.get(meta.bitpix) if self.raw else meta.dtype
        if dtype is None or not meta.shape:
            return None
        shape = self.shape if self.shape is not None else list(meta.shape)
        out = _shared_empty([len(paths)] + shape, dtype)
        try:
            ok = _call(_ops.read_batch_into, paths, self.hdu, out, self.start, None, self.raw,
                       self.skip_errors, 1)
        except (RuntimeError, OSError):
            if not self.skip_errors:
                raise
            self._skipped.add(len(paths))  # none could be read
            return torch.empty(0)
        if self.skip_errors and not bool(ok.all()):
            self._skipped.add(int((~ok).sum()))
            out = out.index_select(0, ok.nonzero().flatten())
        return out

    def __getitems__(self, indices: List[int]) -> List[Any]:
        """A batch as a list of samples, read by one read_batch call (the
        DataLoader of torch 2.x uses this). Skipped files are left out."""
        batch, paths = self._read_batch(list(indices))
        return [self._sample(image, path) for image, path in zip(batch.unbind(0), paths)]

    def _batch(self, indices: List[int]) -> Any:
        """A collated batch: the stacked images (and the collated labels)."""
        if self.transform is None and self.label_fn is None and get_worker_info() is not None:
            shared = self._read_shared(indices)
            if shared is not None:
                return shared
        batch, paths = self._read_batch(indices)
        if self.transform is None and self.label_fn is None:
            return batch
        return default_collate([self._sample(image, path)
                                for image, path in zip(batch.unbind(0), paths)])


def _shared_empty(shape: List[int], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised tensor in shared memory, made as the default collate
    makes a worker's batch."""
    numel = 1
    for n in shape:
        numel *= n
    proto = torch.empty(0, dtype=dtype)
    typed = proto._typed_storage() if hasattr(proto, "_typed_storage") else proto.storage()
    return proto.new(typed._new_shared(numel)).resize_(shape)


def batch_loader(dataset: Dataset, batch_size: int = 64, shuffle: bool = False,
                 drop_last: bool = False, sampler=None, generator=None, **kwargs) -> DataLoader:
    """A DataLoader that hands each batch of indices to ``dataset[indices]``
    in one call (``batch_size=None`` with a BatchSampler), so a FitsDataset
    reads the whole batch with one ``read_batch``. Works on every torch;
    ``sampler`` may be a DistributedSampler. Other arguments go to
    DataLoader."""
    if sampler is None:
        sampler = (RandomSampler(dataset, generator=generator) if shuffle
                   else SequentialSampler(dataset))
    return DataLoader(dataset, batch_size=None,
                      sampler=BatchSampler(sampler, batch_size, drop_last), **kwargs)


class FitsCutoutDataset(Dataset):
    """Cutouts of ``size`` from large images, reading only the cutout (plain
    and tile-compressed images alike).

    Args:
        path_or_paths: one FITS path or several.
        size: cutout shape in C order (an int: the same along every axis).
        positions: the cutouts' start corners in C order: ``(y, x)`` for one
            file, ``(file_index, y, x)`` for several. None: random.
        num_samples: how many random cutouts (default: as many as tile the
            images without overlap).
        seed: random cutouts are drawn once, from this seed (and the epoch
            given to ``set_epoch``), so every worker and rank agrees.
        hdu: HDU number of the image in each file.

    Each process keeps up to 16 of the files open (and mapped) between
    cutouts, as ``torch.classes.torchfits.File``; a pickled dataset (a
    spawned worker) opens its own.
    """

    def __init__(self, path_or_paths: Union[PathLike, Sequence[PathLike]],
                 size: Union[int, Sequence[int]], positions: Optional[Sequence[Sequence[int]]] = None,
                 num_samples: Optional[int] = None, seed: int = 0, hdu: int = 0,
                 transform: Optional[Callable[[torch.Tensor], Any]] = None, *, raw: bool = False):
        self.files = _fspaths(path_or_paths)
        if not self.files:
            raise ValueError("FitsCutoutDataset needs at least one file")
        self.hdu = _hdu_number(hdu)
        self.shapes = []
        for path in self.files:
            meta = info(path)
            if self.hdu >= len(meta):
                raise IndexError(f"{_shown(path)}: HDU {self.hdu} does not exist (the file has "
                                 f"{len(meta)} HDUs)")
            if meta[self.hdu].kind == "unsupported":
                read(path, self.hdu)  # raises NotImplementedError with the cause
            if meta[self.hdu].kind != "image" or not meta[self.hdu].shape:
                raise TypeError(f"{_shown(path)}: HDU {self.hdu} is not an image with data")
            self.shapes.append(tuple(meta[self.hdu].shape))
        ndim = len(self.shapes[0])
        self.size = [int(size)] * ndim if hasattr(size, "__index__") else [int(s) for s in size]
        for path, shape in zip(self.files, self.shapes):
            if len(shape) != len(self.size) or any(s > n for s, n in zip(self.size, shape)):
                raise ValueError(f"{_shown(path)}: HDU {self.hdu}: cutout size {tuple(self.size)} does "
                                 f"not fit the image of shape {shape}")
        self.transform = transform
        self.raw = raw
        self.seed = seed
        self.num_samples = num_samples
        self._open: "OrderedDict[int, Any]" = OrderedDict()  # file index -> File
        self.random = positions is None
        if positions is not None:
            rows = [[int(v) for v in p] for p in positions]
            if len(self.files) == 1:
                rows = [[0] + r if len(r) == ndim else r for r in rows]
            for r in rows:
                if len(r) != ndim + 1:
                    raise ValueError(f"a position needs {'(file_index, ' if len(self.files) > 1 else '('}"
                                     f"{ndim} start coordinates), got {r}")
            self.positions = torch.tensor(rows, dtype=torch.int64).reshape(-1, ndim + 1)
        else:
            self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Draw the random cutouts of an epoch (from seed and epoch)."""
        if not self.random:
            return
        n = self.num_samples
        if n is None:
            n = 0
            for shape in self.shapes:
                tiles = 1
                for s, k in zip(shape, self.size):
                    tiles *= s // k
                n += tiles
        g = torch.Generator().manual_seed(int(self.seed) * 1_000_003 + int(epoch))
        which = torch.randint(len(self.files), (n,), generator=g)
        starts = []
        for axis, k in enumerate(self.size):
            room = torch.tensor([shape[axis] - k + 1 for shape in self.shapes])[which]
            starts.append((torch.rand(n, generator=g, dtype=torch.float64) * room).long())
        self.positions = torch.stack([which] + starts, 1)

    def __len__(self) -> int:
        return int(self.positions.shape[0])

    def _file(self, i: int):
        f = self._open.get(i)
        if f is None:
            f = self._open[i] = _call(torch.classes.torchfits.File, self.files[i])
            if len(self._open) > _KEEP_OPEN:
                self._open.popitem(last=False)[1].close()
        else:
            self._open.move_to_end(i)
        return f

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state["_open"] = OrderedDict()  # each process opens its own
        return state

    def __getitem__(self, index: int) -> Any:
        row = self.positions[index].tolist()
        image = _call(self._file(row[0]).read_cutout, self.hdu, row[1:], self.size, None,
                      self.raw)
        return self.transform(image) if self.transform is not None else image


def _read_table_op():
    try:
        return _ops.read_table
    except (AttributeError, RuntimeError):
        return None


class FitsTableDataset(Dataset):
    """One sample per row of a table HDU: a dict of column name to tensor.
    Rows are read ``block_rows`` at a time through
    ``torch.ops.torchfits.read_table`` and the last block is kept, so a
    sequential (or block-shuffled) order reads each block once; a DataLoader
    batch (``__getitems__`` on torch 2.x, ``dataset[list]`` anywhere) reads
    each block it touches once.

    Args:
        path: a FITS file.
        hdu: the table's HDU number.
        columns: names of the columns to read (default: all).
        block_rows: rows per read.
        transform: applied to each row's dict.
    """

    def __init__(self, path: PathLike, hdu: int = 1, columns: Optional[Sequence[str]] = None,
                 block_rows: int = 4096, transform: Optional[Callable[[Dict[str, torch.Tensor]], Any]] = None):
        if _read_table_op() is None:
            raise NotImplementedError("FitsTableDataset needs torch.ops.torchfits.read_table, "
                                      "which this build of torchfits_ops does not have")
        self.path = _fspath(path)
        self.hdu = _hdu_number(hdu)
        meta = info(self.path)
        if self.hdu >= len(meta):
            raise IndexError(f"{self.path}: HDU {self.hdu} does not exist (the file has "
                             f"{len(meta)} HDUs)")
        if meta[self.hdu].kind == "unsupported":
            read(self.path, self.hdu)  # raises NotImplementedError with the cause
        if meta[self.hdu].kind not in ("binary_table", "ascii_table"):
            raise TypeError(f"{self.path}: HDU {self.hdu} is an image, not a table")
        self.num_rows = int(meta[self.hdu].shape[0])
        self.columns = [str(c) for c in columns] if columns else []
        if block_rows < 1:
            raise ValueError(f"block_rows must be >= 1, got {block_rows}")
        self.block_rows = int(block_rows)
        self.transform = transform
        self._cache: Optional[Tuple[int, Dict[str, torch.Tensor]]] = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_cache"] = None  # blocks stay in the process that read them
        return state

    def __len__(self) -> int:
        return self.num_rows

    def _block(self, b: int) -> Dict[str, torch.Tensor]:
        if self._cache is None or self._cache[0] != b:
            start = b * self.block_rows
            n = min(self.block_rows, self.num_rows - start)
            cols = _call(_read_table_op(), self.path, self.hdu, self.columns, start, n)
            self._cache = (b, dict(cols))
        return self._cache[1]

    def _row(self, index: int) -> Any:
        if index < 0:
            index += self.num_rows
        if not 0 <= index < self.num_rows:
            raise IndexError(f"{self.path}: HDU {self.hdu}: row {index} is outside the table's "
                             f"{self.num_rows} rows")
        block = self._block(index // self.block_rows)
        row = {k: v[index % self.block_rows] for k, v in block.items()}
        return self.transform(row) if self.transform is not None else row

    def __getitems__(self, indices: List[int]) -> List[Any]:
        order = sorted(range(len(indices)), key=lambda k: int(indices[k]) % max(self.num_rows, 1))
        out: List[Any] = [None] * len(indices)
        for k in order:  # block by block, each block read once
            out[k] = self._row(int(indices[k]))
        return out

    def __getitem__(self, index):
        if hasattr(index, "__index__"):
            return self._row(int(index))
        return default_collate(self.__getitems__(list(index)))


def _shard() -> Tuple[int, int]:
    """(rank, world size) from torch.distributed, (0, 1) outside a group."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class FitsIterableDataset(IterableDataset):
    """Streams one sample per file, as FitsDataset, sharded across the ranks
    of ``torch.distributed`` (read from the process group at iteration
    time) and then across DataLoader workers, so every file is read once
    per epoch by exactly one rank and worker. Files are read
    ``read_ahead`` at a time with read_batch.

    With ``shuffle=True`` all ranks shuffle the same way (from ``seed`` and
    the epoch given to ``set_epoch``) before sharding. Shards differ in
    size by at most one file.
    """

    def __init__(self, files: Sequence[PathLike], hdu: int = 0, cutout: Optional[Cutout] = None,
                 transform: Optional[Callable[[torch.Tensor], Any]] = None,
                 label_fn: Optional[Callable[[str], Any]] = None, *, shuffle: bool = False,
                 seed: int = 0, read_ahead: int = 64, raw: bool = False,
                 skip_errors: bool = False):
        self.maps = FitsDataset(files, hdu, cutout, transform, label_fn, raw=raw,
                                skip_errors=skip_errors)
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.read_ahead = max(1, int(read_ahead))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @property
    def num_skipped(self) -> int:
        return self.maps.num_skipped

    def shard_indices(self) -> List[int]:
        """The file indices this rank and worker read, in order."""
        n = len(self.maps)
        if self.shuffle:
            g = torch.Generator().manual_seed(int(self.seed) * 1_000_003 + self.epoch)
            order = torch.randperm(n, generator=g).tolist()
        else:
            order = list(range(n))
        rank, world = _shard()
        order = order[rank::world]
        w = get_worker_info()
        if w is not None:
            order = order[w.id::w.num_workers]
        return order

    def __iter__(self) -> Iterator[Any]:
        order = self.shard_indices()
        for i in range(0, len(order), self.read_ahead):
            yield from self.maps.__getitems__(order[i:i + self.read_ahead])

# The catalogue-driven multi-band cutout Dataset lives in catalog.py.
from .catalog import SkyCutoutDataset  # noqa: E402
