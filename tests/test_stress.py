"""Heavy use: 10,000 reads (errors included) leak no file descriptors and
no memory; inputs are never modified; 8 threads and 4 DataLoader workers
give exactly the serial results."""
import hashlib
import os
import random

import numpy as np
import pytest
import torch
from astropy.io import fits

import torchfits_ops as tf
from fitsgen import random_array, run_threads, write_astropy, write_fitsio, write_multi_extension


def stamp(path):
    st = os.stat(path)
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest(), st.st_mtime_ns, st.st_size, st.st_mode


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("stress")
    out = {
        "small": write_astropy(d / "small.fits", random_array((64, 45), -32, seed=1)),
        "i16": write_astropy(d / "i16.fits", random_array((30, 20, 10), 16, seed=2)),
        # 4.5 MB: whole reads take the core's multi-threaded path.
        "big": write_astropy(d / "big.fits", random_array((1024, 1100), -32, seed=3)),
        "mef": write_multi_extension(d / "mef.fits"),
        "rice": write_fitsio(d / "rice.fits", random_array((200, 150), 16, seed=4).astype(np.int16),
                             compress="RICE", tile_dims=[20, 150]),
    }
    with open(out["small"], "rb") as fh:
        data = fh.read()
    trunc = d / "truncated.fits"
    trunc.write_bytes(data[: len(data) - 5000])
    out["truncated"] = str(trunc)
    for p in out.values():
        os.chmod(p, 0o444)
    return out


def shape_of(path, hdu):
    return tuple(fits.getheader(path, hdu)[f"NAXIS{i}"]
                 for i in range(fits.getheader(path, hdu)["NAXIS"], 0, -1))


def make_ops(files, seed, n):
    """n random operations: (kind, path, hdu, start, count, step)."""
    rng = random.Random(seed)
    targets = [(files["small"], 0), (files["i16"], 0), (files["big"], 0), (files["mef"], 1),
               (files["mef"], 6), (files["rice"], 1)]
    shapes = {t: shape_of(*t) for t in targets}
    ops = []
    for _ in range(n):
        path, hdu = rng.choice(targets)
        shape = shapes[(path, hdu)]
        r = rng.random()
        if r < 0.1 and path != files["big"] or r < 0.01:
            ops.append(("read", path, hdu, None, None, None))
        elif r < 0.2:
            ops.append(("header", path, hdu, None, None, None))
        else:
            start = [rng.randrange(n) for n in shape]
            step = [rng.choice((1, 1, 2, 3)) for _ in shape]
            count = [rng.randint(1, min(40, (n - s + k - 1) // k)) for n, s, k in zip(shape, start, step)]
            ops.append(("cutout", path, hdu, start, count, step))
    return ops


def run_op(op):
    kind, path, hdu, start, count, step = op
    if kind == "read":
        t = tf.read(path, hdu)
    elif kind == "header":
        return repr(sorted(tf.read_header(path, hdu).items()))
    else:
        t = tf.read_cutout(path, hdu, start, count, step)
    # One string: DataLoader's collation would turn a tuple into a list.
    return f"{t.dtype} {tuple(t.shape)} {hashlib.sha1(t.numpy().tobytes()).hexdigest()}"


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def rss_bytes():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_ten_thousand_reads_leak_nothing(files):
    before = {p: stamp(p) for p in files.values()}
    small, mef, rice, trunc = files["small"], files["mef"], files["rice"], files["truncated"]
    missing = os.path.join(os.path.dirname(small), "missing.fits")
    actions = [
        lambda: tf.read(small),
        lambda: tf.read_cutout(small, 0, [3, 4], [10, 11], [2, 1]),
        lambda: tf.read(mef, ("SCI", 2)),
        lambda: tf.read_header(mef, 4),
        lambda: tf.info(mef),
        lambda: tf.read_cutout(rice, 1, [5, 6], [7, 8]),
        lambda: tf.open(small)[0][3:9, 4:8],       # a File opened, mapped, dropped
        lambda: kept_rice[5:12, 6:14],              # a File kept open
        lambda: kept_small[0][1:40:3, 2:5],
    ]
    kept_rice, kept_small = tf.open(rice)[1], tf.open(small)
    errors = [
        (lambda: tf.read(trunc), tf.FitsError),
        (lambda: tf.read(missing), FileNotFoundError),
        (lambda: tf.read(mef, 40), IndexError),
        (lambda: tf.read(mef, "CAT"), TypeError),
        (lambda: tf.read_cutout(small, 0, [60, 0], [10, 1]), IndexError),
        (lambda: kept_small._handle().read_cutout(0, [60, 0], [10, 1]), IndexError),
        (lambda: kept_small[0][0:4, 0:4] if kept_small._handle().read(7) else None, IndexError),
    ]

    def one(i):
        if i % 4 == 3:
            fn, exc = errors[(i // 4) % len(errors)]
            with pytest.raises(exc):
                fn()
        else:
            actions[i % len(actions)]()

    for i in range(1000):  # warm up: allocator pools, cfitsio's tables
        one(i)
    fds, rss = open_fds(), rss_bytes()
    for i in range(10000):
        one(i)
    # No growth: a leak adds descriptors. One may close meanwhile (a server
    # that the remote tests run in this process drops an idle connection).
    assert open_fds() <= fds
    grown = rss_bytes() - rss
    assert grown < 8 << 20, f"RSS grew by {grown / 2**20:.1f} MiB over 10,000 reads"
    assert {p: stamp(p) for p in files.values()} == before


def test_threads_match_serial(files, monkeypatch):
    # An automatic thread count splits a read only over idle cores, which
    # 8 reading threads leave none of: ask for helper threads explicitly.
    tf.set_threads(3)
    before = {p: stamp(p) for p in files.values()}
    per_thread = [make_ops(files, seed, 1000) for seed in range(8)]
    serial = [[run_op(op) for op in ops] for ops in per_thread]
    results = [None] * 8

    def work(k):
        results[k] = [run_op(op) for op in per_thread[k]]

    failures = run_threads(work, 8)
    assert not failures, [repr(e) for e in failures]
    for k in range(8):
        bad = [i for i, (a, b) in enumerate(zip(results[k], serial[k])) if a != b]
        assert not bad, f"thread {k}: ops {bad[:5]} differ from the serial run"
    assert {p: stamp(p) for p in files.values()} == before


class Ops(torch.utils.data.Dataset):
    def __init__(self, ops):
        self.ops = ops

    def __len__(self):
        return len(self.ops)

    def __getitem__(self, i):
        return run_op(self.ops[i])


def test_dataloader_workers_match_serial(files):
    """The threads' 8 x 1,000 operations again, through 4 worker processes."""
    before = {p: stamp(p) for p in files.values()}
    ops = [op for seed in range(8) for op in make_ops(files, seed, 1000)]
    serial = [run_op(op) for op in ops]
    loader = torch.utils.data.DataLoader(Ops(ops), batch_size=None, num_workers=4)
    got = list(loader)
    assert len(got) == len(serial) == 8000
    bad = [i for i, (a, b) in enumerate(zip(got, serial)) if a != b]
    assert not bad, f"ops {bad[:5]} differ from the serial run"
    assert {p: stamp(p) for p in files.values()} == before
