"""Data loading: read_into, read_batch, the Dataset classes with real
DataLoader worker processes (fork and spawn), the examples, and a real
two-process torch.distributed run. Values are compared with astropy on
files astropy and fitsio wrote. Every DataLoader and subprocess has a
timeout, so a hang fails instead of blocking."""
import json
import os
import pickle
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from astropy.io import fits
from torch.utils.data import DataLoader, DistributedSampler

import torchfits_ops as tf
from fitsgen import random_array, write_astropy, write_fitsio
from torchfits_ops.data import (FitsCutoutDataset, FitsDataset, FitsIterableDataset,
                                FitsTableDataset, batch_loader, collate)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ops = torch.ops.torchfits
TIMEOUT = 120  # seconds, for every DataLoader with workers and subprocess
NATIVE = {8: torch.uint8, 16: torch.int16, 32: torch.int32, 64: torch.int64,
          -32: torch.float32, -64: torch.float64}


def label_of(path):
    """Module level, so spawn workers can unpickle it."""
    return int(os.path.basename(path).split("_")[1].split(".")[0])


def plus_one(img):
    return img.to(torch.float32) + 1


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """12 small int16 images written by astropy, pixel values random."""
    d = tmp_path_factory.mktemp("small")
    return [write_astropy(d / f"img_{i}.fits", random_array((12, 10), 16, seed=i))
            for i in range(12)]


def expected(path):
    return torch.from_numpy(fits.getdata(path).astype(np.int16))


def loader_kwargs(workers, ctx="fork"):
    if workers == 0:
        return {"num_workers": 0}
    return {"num_workers": workers, "multiprocessing_context": ctx, "timeout": TIMEOUT}


# ---- read_into / read_cutout_into ----

@pytest.mark.parametrize("bitpix", sorted(NATIVE))
def test_read_into_matches_astropy(tmp_path, bitpix):
    data = random_array((9, 7), bitpix, seed=bitpix)
    path = write_astropy(tmp_path / "a.fits", data)
    out = torch.full((9, 7), 3, dtype=NATIVE[bitpix])
    ptr = out.data_ptr()
    assert ops.read_into(path, 0, out) is None  # filled in place, nothing returned
    assert out.data_ptr() == ptr
    np.testing.assert_array_equal(out.numpy(), fits.getdata(path))
    assert torch.equal(out, tf.read(path))


def test_read_into_batch_slice_and_cutout(files):
    batch = torch.zeros(3, 12, 10, dtype=torch.int16)
    for i in range(3):
        ops.read_into(files[i], 0, batch[i])
        assert torch.equal(batch[i], expected(files[i]))
    cut = torch.empty(4, 3, dtype=torch.int16)
    ops.read_cutout_into(files[5], 0, [2, 6], cut)
    assert torch.equal(cut, expected(files[5])[2:6, 6:9])
    strided = torch.empty(3, 2, dtype=torch.int16)
    ops.read_cutout_into(files[5], 0, [1, 0], strided, [4, 5])
    assert torch.equal(strided, expected(files[5])[1:12:4, 0:10:5])


def test_read_into_refuses_bad_out(files):
    path = files[0]
    with pytest.raises(TypeError, match=r"img_0\.fits.*dtype"):
        ops.read_into(path, 0, torch.empty(12, 10))
    with pytest.raises(ValueError, match=r"img_0\.fits.*shape \[12, 11\]"):
        ops.read_into(path, 0, torch.empty(12, 11, dtype=torch.int16))
    with pytest.raises(ValueError, match=r"img_0\.fits.*contiguous"):
        ops.read_into(path, 0, torch.empty(10, 12, dtype=torch.int16).t())
    with pytest.raises(ValueError, match=r"img_0\.fits.*shape"):
        ops.read_cutout_into(path, 0, [0], torch.empty(4, 4, dtype=torch.int16))
    with pytest.raises(IndexError, match=r"img_0\.fits"):
        ops.read_cutout_into(path, 0, [10, 0], torch.empty(4, 4, dtype=torch.int16))


def test_read_into_pinned_buffer_when_cuda(files):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: pinned memory needs one")
    buf = torch.empty(12, 10, dtype=torch.int16, pin_memory=True)
    ops.read_into(files[0], 0, buf)
    assert torch.equal(buf, expected(files[0]))


# ---- read_batch ----

def test_read_batch_matches_single_reads(files):
    batch, ok = ops.read_batch(files)
    assert batch.shape == (12, 12, 10) and batch.dtype == torch.int16
    assert ok.dtype == torch.bool and bool(ok.all())
    for i, path in enumerate(files):
        assert torch.equal(batch[i], expected(path))
    for threads in (1, 3):
        assert torch.equal(ops.read_batch(files, threads=threads)[0], batch)
    cut, _ = ops.read_batch(files, 0, [3, 2], [5, 4])
    assert torch.equal(cut, batch[:, 3:8, 2:6])
    empty, ok = ops.read_batch(files, 0, [3, 2], [0, 4])
    assert empty.shape == (12, 0, 4) and bool(ok.all())
    out = torch.empty(12, 5, 4, dtype=torch.int16)
    ok = ops.read_batch_into(files, 0, out, [3, 2])
    assert ok.dtype == torch.bool and bool(ok.all()) and torch.equal(out, cut)


def test_read_batch_compressed_and_scaled(tmp_path):
    paths = []
    for i in range(5):
        data = random_array((40, 30), 32, seed=i) // 1000
        paths.append(write_fitsio(tmp_path / f"c_{i}.fits", data.astype(np.int32), compress="RICE"))
    batch, _ = ops.read_batch(paths, 1, [10, 5], [8, 9])
    for i, path in enumerate(paths):
        np.testing.assert_array_equal(batch[i].numpy(), fits.getdata(path, 1)[10:18, 5:14])
    scaled = []
    for i in range(3):
        h = fits.PrimaryHDU(np.arange(20, dtype=np.int16).reshape(4, 5) + i)
        h.header["BSCALE"], h.header["BZERO"] = 0.5, 10.0
        scaled.append(str(tmp_path / f"s_{i}.fits"))
        h.writeto(scaled[-1])
    batch, _ = ops.read_batch(scaled)
    assert batch.dtype == torch.float32
    for i, path in enumerate(scaled):
        assert torch.equal(batch[i], tf.read(path))


def test_read_batch_errors_name_the_file(files, tmp_path):
    missing = str(tmp_path / "missing.fits")
    with pytest.raises(RuntimeError, match=r"missing\.fits: cannot open.*TF_EOPEN"):
        ops.read_batch(files[:3] + [missing] + files[3:])
    corrupt = tmp_path / "corrupt.fits"
    corrupt.write_bytes(open(files[0], "rb").read()[:2980])  # the header, 100 of 240 data bytes
    with pytest.raises(RuntimeError, match=r"corrupt\.fits.*truncated.*TF_ECORRUPT"):
        ops.read_batch(files[:2] + [str(corrupt)])
    other = write_astropy(tmp_path / "other.fits", np.zeros((5, 5), np.int16))
    with pytest.raises(ValueError, match=r"other\.fits: HDU 0: the image is int16 \[5, 5\] but "
                                         r"the batch is int16 \[12, 10\]"):
        ops.read_batch(files[:2] + [other])
    with pytest.raises(ValueError, match="at least one file"):
        ops.read_batch([])
    with pytest.raises(ValueError, match=r"read_batch_into.*shape"):
        ops.read_batch_into(files[:2], 0, torch.empty(3, 12, 10, dtype=torch.int16))
    batch, ok = ops.read_batch([files[0], missing, str(corrupt), other, files[1]],
                               skip_errors=True)
    assert ok.tolist() == [True, False, False, False, True]
    assert torch.equal(batch[0], expected(files[0])) and torch.equal(batch[4], expected(files[1]))
    assert int(batch[1:4].abs().sum()) == 0
    # The first readable file sets the shape when the first ones are bad.
    batch, ok = ops.read_batch([missing, files[2]], skip_errors=True)
    assert ok.tolist() == [False, True] and torch.equal(batch[1], expected(files[2]))


# ---- FitsDataset ----

def check_batches(batches, files, order=None):
    order = list(range(len(files))) if order is None else order
    got = torch.cat([b if isinstance(b, torch.Tensor) else b[0] for b in batches])
    want = torch.stack([expected(files[i]) for i in order])
    assert torch.equal(got, want)


@pytest.mark.parametrize("workers,ctx", [(0, None), (2, "fork"), (2, "spawn"), (4, "fork")])
def test_dataset_dataloader_workers(files, workers, ctx):
    ds = FitsDataset(files, label_fn=label_of)
    loader = DataLoader(ds, batch_size=5, **loader_kwargs(workers, ctx))
    batches = list(loader)
    assert [len(b[1]) for b in batches] == [5, 5, 2]
    check_batches(batches, files)
    assert torch.cat([b[1] for b in batches]).tolist() == list(range(12))


def test_dataset_persistent_workers_pin_memory_and_shuffle(files):
    ds = FitsDataset(files, transform=plus_one)
    gen = torch.Generator().manual_seed(7)
    loader = DataLoader(ds, batch_size=4, shuffle=True, generator=gen, persistent_workers=True,
                        pin_memory=torch.cuda.is_available(), **loader_kwargs(2))
    for _ in range(2):  # the same workers serve both epochs
        got = torch.cat(list(loader))
        assert got.dtype == torch.float32
        rows = {tuple(r.flatten().tolist()) for r in got}
        want = {tuple((expected(p).float() + 1).flatten().tolist()) for p in files}
        assert rows == want and got.shape[0] == 12
    # Seeded shuffles give the same order, with or without workers.
    runs = []
    for workers in (0, 2):
        g = torch.Generator().manual_seed(3)
        runs.append(torch.cat(list(DataLoader(ds, batch_size=4, shuffle=True, generator=g,
                                              **loader_kwargs(workers)))))
    assert torch.equal(runs[0], runs[1])


def test_dataset_batch_indexing_and_batch_loader(files):
    ds = FitsDataset(files, cutout=([1, 2], [6, 5]))
    assert torch.equal(ds[[3, 0, 7]], torch.stack([expected(files[i])[1:7, 2:7]
                                                   for i in (3, 0, 7)]))
    assert torch.equal(ds[4], expected(files[4])[1:7, 2:7])
    batches = list(batch_loader(ds, batch_size=5, **loader_kwargs(2)))
    assert [b.shape[0] for b in batches] == [5, 5, 2]
    assert torch.equal(torch.cat(batches), torch.stack([expected(p)[1:7, 2:7] for p in files]))
    labelled = FitsDataset(files, label_fn=label_of)
    images, labels = labelled[[2, 9]]
    assert labels.tolist() == [2, 9] and torch.equal(images[1], expected(files[9]))


class SharedFlag(FitsDataset):
    """A FitsDataset whose batches say whether the worker made them in
    shared memory (module level: workers unpickle it)."""

    def _batch(self, indices):
        out = super()._batch(indices)
        return out, torch.tensor(out.is_shared())


@pytest.mark.parametrize("raw", [False, True])
def test_batch_loader_reads_batches_into_shared_memory(tmp_path, raw):
    """In a worker a batch is read straight into shared memory (no copy on
    its way to the main process): the same values as astropy, scaled or
    raw, plain and tile-compressed; a file that fails is skipped and
    counted; a first file that cannot be read falls back to the ordinary
    read, which names it."""
    # uint16: stored as int16 with BZERO 32768
    scaled = [write_astropy(tmp_path / f"s_{i}.fits",
                            random_array((20, 30), 16, seed=i).astype(np.uint16))
              for i in range(5)]
    ds = SharedFlag(scaled, raw=raw)
    got = list(batch_loader(ds, batch_size=2, **loader_kwargs(2)))
    assert all(bool(flag) for _, flag in got)
    batch = torch.cat([b for b, _ in got])
    assert batch.dtype == (torch.int16 if raw else tf.read(scaled[0]).dtype)
    want = torch.stack([tf.read(p, raw=raw) for p in scaled])
    assert torch.equal(batch, want)
    if not raw:
        np.testing.assert_array_equal(batch.numpy().astype(np.int64),
                                      np.stack([fits.getdata(p) for p in scaled]).astype(np.int64))
    rice = tmp_path / "rice.fits"
    data = random_array((32, 24), 32, seed=9)
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, compression_type="RICE_1")]).writeto(rice)
    got = list(batch_loader(SharedFlag([str(rice)] * 3, hdu=1), batch_size=3, **loader_kwargs(2)))
    assert bool(got[0][1]) and torch.equal(got[0][0], torch.from_numpy(np.stack([data] * 3)))
    bad = tmp_path / "bad.fits"
    bad.write_bytes(b"SIMPLE  =                    T" + b" " * 2850)
    skipping = FitsDataset(scaled[:2] + [str(bad)] + scaled[2:], skip_errors=True)
    batch = torch.cat(list(batch_loader(skipping, batch_size=3, **loader_kwargs(2))))
    assert torch.equal(batch, torch.stack([tf.read(p) for p in scaled]))
    assert skipping.num_skipped == 1
    first_bad = FitsDataset([str(bad)] + scaled[:2])
    with pytest.raises(tf.FitsError, match=r"bad\.fits: cannot read the primary header"):
        list(batch_loader(first_bad, batch_size=3, **loader_kwargs(2)))


def test_dataset_pickles_without_open_files(files):
    ds = FitsDataset(files, hdu=0, label_fn=label_of, skip_errors=True)
    clone = pickle.loads(pickle.dumps(ds))
    assert clone.files == ds.files and torch.equal(clone[3][0], ds[3][0])
    for d in (FitsCutoutDataset(files[0], 4, num_samples=3), FitsIterableDataset(files)):
        pickle.loads(pickle.dumps(d))


@pytest.mark.parametrize("workers", [0, 2])
def test_dataset_missing_or_corrupt_file_raises_naming_it(files, tmp_path, workers):
    missing = str(tmp_path / "gone.fits")
    ds = FitsDataset(files[:4] + [missing])
    with pytest.raises(FileNotFoundError, match=r"gone\.fits"):
        list(DataLoader(ds, batch_size=2, **loader_kwargs(workers)))
    corrupt = tmp_path / "bad.fits"
    corrupt.write_bytes(b"SIMPLE  =                    T" + b"\0" * 3000)
    ds = FitsDataset([str(corrupt)] + files[:3])
    with pytest.raises(tf.FitsError, match=r"bad\.fits"):
        list(DataLoader(ds, batch_size=1, **loader_kwargs(workers)))
    with pytest.raises(FileNotFoundError, match=r"gone\.fits"):
        FitsDataset([missing])[0]


@pytest.mark.parametrize("workers", [0, 2])
def test_dataset_skip_errors_counts(files, tmp_path, workers):
    bad = tmp_path / "bad.fits"
    bad.write_bytes(b"not fits at all" * 300)
    names = files[:3] + [str(tmp_path / "gone.fits")] + files[3:6] + [str(bad)]
    ds = FitsDataset(names, skip_errors=True, label_fn=label_of)
    batches = list(DataLoader(ds, batch_size=3, collate_fn=collate, **loader_kwargs(workers)))
    labels = torch.cat([b[1] for b in batches if b is not None]).tolist()
    assert labels == [0, 1, 2, 3, 4, 5]
    assert ds.num_skipped == 2
    assert ds[3] is None and ds.num_skipped == 3


# ---- FitsCutoutDataset ----

@pytest.fixture(scope="module")
def big_images(tmp_path_factory):
    d = tmp_path_factory.mktemp("big")
    plain = write_astropy(d / "plain.fits", random_array((90, 70), -32, seed=1))
    data = (random_array((80, 60), 16, seed=2) // 16).astype(np.int16)
    packed = write_fitsio(d / "packed.fits", data, compress="RICE")
    return plain, packed


def test_cutout_dataset_given_positions(big_images):
    plain, packed = big_images
    ds = FitsCutoutDataset(plain, (8, 6), positions=[(0, 0), (82, 64), (40, 3)])
    ref = fits.getdata(plain)
    for (y, x), t in zip([(0, 0), (82, 64), (40, 3)], ds):
        np.testing.assert_array_equal(t.numpy(), ref[y:y + 8, x:x + 6])
    with pytest.raises(TypeError, match=r"packed\.fits: HDU 0 is not an image"):
        # the compressed image is HDU 1; HDU 0 of packed.fits is empty
        FitsCutoutDataset([plain, packed], 5, positions=[(1, 10, 20), (0, 2, 3)])
    ds = FitsCutoutDataset([plain, plain], 5, positions=[(1, 10, 20), (0, 2, 3)])
    np.testing.assert_array_equal(ds[0].numpy(), ref[10:15, 20:25])
    np.testing.assert_array_equal(ds[1].numpy(), ref[2:7, 3:8])
    ds = FitsCutoutDataset(packed, 5, positions=[(10, 20), (75, 55)], hdu=1)
    ref = fits.getdata(packed, 1)
    np.testing.assert_array_equal(ds[0].numpy(), ref[10:15, 20:25])
    np.testing.assert_array_equal(ds[1].numpy(), ref[75:80, 55:60])
    with pytest.raises(ValueError, match=r"plain\.fits.*does not fit"):
        FitsCutoutDataset(plain, 100)


def test_cutout_dataset_keeps_at_most_16_files_open(tmp_path):
    import torchfits_ops.data as tfd
    arrays = [random_array((40, 30), 16, seed=s) for s in range(20)]
    paths = [write_astropy(tmp_path / f"c{i}.fits", a) for i, a in enumerate(arrays)]
    positions = [(i % 20, i % 9, i % 7) for i in range(60)]
    ds = FitsCutoutDataset(paths, (5, 4), positions=positions)
    fds = len(os.listdir("/proc/self/fd"))
    for (i, y, x), t in zip(positions, ds):
        np.testing.assert_array_equal(t.numpy(), arrays[i][y:y + 5, x:x + 4])
    assert len(ds._open) == tfd._KEEP_OPEN == 16
    assert len(os.listdir("/proc/self/fd")) - fds <= 16
    assert sorted(ds._open) == sorted({i % 20 for i in range(44, 60)})
    copy = pickle.loads(pickle.dumps(ds))
    assert len(copy._open) == 0
    np.testing.assert_array_equal(copy[59].numpy(), arrays[19][5:10, 3:7])


def test_cutout_dataset_random_is_deterministic(big_images):
    plain, _ = big_images
    a = FitsCutoutDataset(plain, 16, num_samples=20, seed=5)
    b = FitsCutoutDataset(plain, 16, num_samples=20, seed=5)
    c = FitsCutoutDataset(plain, 16, num_samples=20, seed=6)
    assert torch.equal(a.positions, b.positions) and not torch.equal(a.positions, c.positions)
    assert int(a.positions[:, 1].max()) <= 90 - 16 and int(a.positions[:, 2].max()) <= 70 - 16
    assert len(FitsCutoutDataset(plain, 16)) == (90 // 16) * (70 // 16)
    ref = fits.getdata(plain)
    serial = torch.stack(list(DataLoader(a, batch_size=None)))
    parallel = torch.cat(list(DataLoader(a, batch_size=4, **loader_kwargs(2, "spawn"))))
    assert torch.equal(serial, parallel)
    for (f, y, x), t in zip(a.positions.tolist(), serial):
        np.testing.assert_array_equal(t.numpy(), ref[y:y + 16, x:x + 16])
    before = a.positions.clone()
    a.set_epoch(1)
    assert not torch.equal(before, a.positions)


# ---- FitsTableDataset (needs read_table from issue 3) ----

def test_table_dataset_reads_row_blocks(tmp_path):
    try:
        torch.ops.torchfits.read_table
    except (AttributeError, RuntimeError):
        pytest.skip("torch.ops.torchfits.read_table is not registered in this build "
                    "(the table reader of issue 3)")
    n = 1000
    path = write_id_flux_table(tmp_path, n, 0.5)
    ds = FitsTableDataset(path, 1, columns=["ID", "FLUX"], block_rows=64)
    assert len(ds) == n
    assert int(ds[999]["ID"]) == 999 and float(ds[10]["FLUX"]) == 5.0
    got = torch.cat([b["ID"] for b in DataLoader(ds, batch_size=100, **loader_kwargs(2))])
    assert got.tolist() == list(range(n))
    pickle.loads(pickle.dumps(ds))


# ---- FitsIterableDataset and DistributedSampler ----

@pytest.mark.parametrize("workers", [0, 2, 3])
def test_iterable_dataset_reads_each_file_once(files, workers):
    ds = FitsIterableDataset(files, label_fn=label_of, read_ahead=4)
    labels = []
    for images, ids in DataLoader(ds, batch_size=2, **loader_kwargs(workers)):
        for img, i in zip(images, ids.tolist()):
            assert torch.equal(img, expected(files[i]))
        labels += ids.tolist()
    assert sorted(labels) == list(range(12))


def test_distributed_sampler_shards_cover_every_file(files):
    ds = FitsDataset(files, label_fn=label_of)
    seen = []
    for rank in range(3):
        sampler = DistributedSampler(ds, num_replicas=3, rank=rank, shuffle=True, seed=1)
        seen += [int(i) for _, ids in DataLoader(ds, batch_size=2, sampler=sampler) for i in ids]
    assert sorted(seen) == list(range(12))


# ---- device= ----

def test_device_argument(files):
    path = files[1]
    assert torch.equal(tf.read(path, device="cpu"), expected(path))
    assert torch.equal(tf.read_cutout(path, 0, [1, 1], [3, 3], device=torch.device("cpu")),
                       expected(path)[1:4, 1:4])
    if torch.cuda.is_available():
        t = tf.read(path, device="cuda")
        assert t.is_cuda and torch.equal(t.cpu(), expected(path))
        t = tf.read_cutout(path, 0, [1, 1], [3, 3], raw=True, device="cuda")
        assert torch.equal(t.cpu(), expected(path)[1:4, 1:4])
    else:
        with pytest.raises(RuntimeError, match=r"img_1\.fits.*CUDA is not available"):
            tf.read(path, device="cuda")
        with pytest.raises(RuntimeError, match=r"img_1\.fits.*CUDA is not available"):
            tf.read_cutout(path, 0, [1, 1], [3, 3], device="cuda:0")


# ---- the examples ----

def run_example(args, **kw):
    proc = subprocess.run([sys.executable] + args, cwd=ROOT, capture_output=True, text=True,
                          timeout=300, **kw)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_example_train_cnn():
    out = run_example(["examples/train_cnn.py", "--files", "48", "--steps", "6",
                       "--batch-size", "8", "--workers", "2"])
    assert "trained 6 steps on 48 files" in out


def test_example_scripted_model():
    assert "scripted, saved and loaded" in run_example(["examples/scripted_model.py"])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_example_distributed_two_ranks_read_every_file_once(tmp_path):
    out = tmp_path / "result.json"
    env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")
    run_example(["-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
                 f"--master_port={free_port()}", "--redirects", "1", "--tee", "1",
                 "--log_dir", str(tmp_path / "logs"), "examples/distributed.py",
                 "--files", "18", "--workers", "1", "--out", str(out)], env=env)
    result = json.loads(out.read_text())
    assert result["world_size"] == 2
    for key in ("sampler", "iterable"):
        per_rank = [sorted(r[key]) for r in result["ranks"]]
        assert all(len(ids) == 9 for ids in per_rank)
        assert sorted(per_rank[0] + per_rank[1]) == list(range(18))
        assert result[f"{key}_exactly_once"] is True


def astropy_read_table(path, hdu, columns, start_row, num_rows):
    """read_table's schema, done by astropy: lets the block logic of
    FitsTableDataset be tested before the real operator is merged."""
    astropy_read_table.calls.append((start_row, num_rows))
    data = fits.getdata(path, hdu)[start_row:start_row + num_rows]
    return {c: torch.from_numpy(np.asarray(data[c]).astype(data[c].dtype.newbyteorder("=")))
            for c in (columns or data.columns.names)}


def test_table_dataset_block_logic_with_astropy_reader(tmp_path, monkeypatch):
    import torchfits_ops.data as tfdata

    astropy_read_table.calls = []
    monkeypatch.setattr(tfdata, "_read_table_op", lambda: astropy_read_table)
    n = 300
    path = write_id_flux_table(tmp_path, n, 0.25)
    ds = FitsTableDataset(path, 1, columns=["ID", "FLUX"], block_rows=64)
    assert len(ds) == n and int(ds[-1]["ID"]) == n - 1 and float(ds[10]["FLUX"]) == 2.5
    with pytest.raises(IndexError, match=r"t\.fits: HDU 1: row 300"):
        ds[300]
    ds = FitsTableDataset(path, 1, columns=["ID", "FLUX"], block_rows=64)  # no block kept
    astropy_read_table.calls = []
    batches = list(DataLoader(ds, batch_size=50))
    assert torch.cat([b["ID"] for b in batches]).tolist() == list(range(n))
    assert torch.equal(torch.cat([b["FLUX"] for b in batches]), torch.arange(n) * 0.25)
    # Each 64-row block read once, the last one short.
    assert astropy_read_table.calls == [(0, 64), (64, 64), (128, 64), (192, 64), (256, 44)]
    batch = ds[[5, 200, 6]]
    assert batch["ID"].tolist() == [5, 200, 6]
    got = torch.cat([b["ID"] for b in DataLoader(ds, batch_size=40, **loader_kwargs(2))])
    assert got.tolist() == list(range(n))
    with pytest.raises(TypeError, match="is an image"):
        FitsTableDataset(write_astropy(tmp_path / "img.fits", np.zeros((2, 2), np.int16)), 0)


def write_id_flux_table(tmp_path, n, step):
    """t.fits: a binary table of n rows, ID (K) = row and FLUX (E) = row * step."""
    cols = fits.ColDefs([fits.Column(name="ID", format="K", array=np.arange(n)),
                         fits.Column(name="FLUX", format="E", array=np.arange(n) * step)])
    path = str(tmp_path / "t.fits")
    fits.BinTableHDU.from_columns(cols).writeto(path)
    return path
