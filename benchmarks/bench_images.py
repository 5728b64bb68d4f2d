"""Uncompressed images: whole reads of every BITPIX at 1k x 1k and 4k x 4k
(and unsigned and scaled data), 1,000 small files, 100 random cutouts,
headers to dicts, and two Python threads reading at once.

Contenders (rivals.py): ours ``torchfits_ops.read`` (the Python wrapper,
its overhead counted), with its default threads (one per CPU) and on one
thread; torchfits ``read`` and ``read_tensor``; ``fitsio.read`` and
astropy ``getdata(memmap=False)`` as native-endian tensors; and the
bounds (benchmarks/limit.c), parsing no header: `limit` (open, buffer,
pread in 256 KiB chunks each swapped in cache, release, close; one thread),
`limit 2 threads` (the same, split in two) and `limit mmap` (the file
mapped, one pass copying and swapping out of the mapping, no kernel copy).

Targets (ours over the best rival, same run): uncompressed images of 4 MB
and more <= 0.5x, smaller ones and the small-file loop <= 0.7x, cutouts
and headers <= 0.5x.
"""
import ctypes
import os
import random
import subprocess
import sys
import threading

import numpy as np
from astropy.io import fits

import harness
import rivals
import torchfits_ops as tf
from fitsgen import random_array

HERE = os.path.dirname(os.path.abspath(__file__))
GROUP = "images"


def one_thread(fn):
    def run():
        previous = tf.set_threads(1)
        try:
            return fn()
        finally:
            tf.set_threads(previous)
    return run


def limit_read(lib, path, offset, row_stride, row_bytes, nrows, elsize):
    if lib.limit_read(path.encode(), offset, row_stride, row_bytes, nrows, elsize, None) != 0:
        raise OSError(f"limit_read failed on {path}")


def limit_mt(lib, path, offset, nbytes, elsize, threads):
    if lib.limit_read_mt(path.encode(), offset, nbytes, elsize, threads) != 0:
        raise OSError(f"limit_read_mt failed on {path}")


def limit_mapped(lib, path, offset, nbytes, elsize):
    if lib.limit_read_mapped(path.encode(), offset, nbytes, elsize) != 0:
        raise OSError(f"limit_read_mapped failed on {path}")


def data_offset(path, hdu=0):
    with fits.open(path) as h:
        return h[hdu].fileinfo()["datLoc"]


def image_target(nbytes):
    """The issue's targets for uncompressed images: <= 0.5x the best rival
    from 4 MB on, <= 0.7x below."""
    return 0.5 if nbytes >= 4_000_000 else 0.7


def whole_images(workdir, lib, quick):
    sizes = [1024] if quick else [1024, 4096]
    rows = []
    kinds = [(b, f"BITPIX {b}", {}) for b in (8, 16, 32, 64, -32, -64)]
    kinds += [(16, "uint16 (BZERO 32768)", {"BZERO": 32768}),
              (16, "int16 scaled to float32", {"BSCALE": 0.5, "BZERO": 100.0})]
    for n in sizes:
        repeat = (7 if quick else 21) if n <= 1024 else (5 if quick else 11)
        for bitpix, label, keys in kinds:
            path = os.path.join(workdir, f"img_{n}_{len(keys)}_{bitpix}.fits")
            data = random_array((n, n), bitpix, seed=n + bitpix)
            hdu = fits.PrimaryHDU(data)
            for k, v in keys.items():  # the stored values as they are
                hdu.header[k] = v
            hdu.writeto(path, overwrite=True)
            del data, hdu
            off, elsize = data_offset(path), abs(bitpix) // 8
            nbytes = n * n * elsize
            c = rivals.image_readers(path)
            c["torchfits_ops 1 thread"] = one_thread(c["torchfits_ops"])
            c["limit"] = lambda: limit_mt(lib, path, off, nbytes, elsize, 1)
            c["limit 2 threads"] = lambda: limit_mt(lib, path, off, nbytes, elsize, 2)
            c["limit mmap"] = lambda: limit_mapped(lib, path, off, nbytes, elsize)
            rows.append(harness.run_case(GROUP, f"{label}, {n}x{n} ({nbytes / 1e6:.1f} MB)", c,
                                         repeat=repeat, target=image_target(nbytes)))
            os.remove(path)
            yield rows[-1]


def loop(fns):
    """Call each of fns once, keeping no result alive."""
    def go():
        for fn in fns:
            fn()
    return go


def small_files(workdir, lib, quick):
    count = 200 if quick else 1000
    paths = []
    for i in range(count):
        hdr = fits.Header()
        for k in range(30 - 6):  # with SIMPLE..NAXIS2, EXTEND: 30 cards
            hdr[f"KEY{k:03d}"] = (k * 1.5, f"card {k}")
        p = os.path.join(workdir, f"small_{i:04d}.fits")
        fits.PrimaryHDU(random_array((64, 64), 16, seed=i), header=hdr).writeto(p)
        paths.append(p)
    off = data_offset(paths[0])
    one = rivals.image_readers(paths[7])
    every = {}
    for name in one:
        readers = [rivals.image_readers(p)[name] for p in paths]
        every[name] = loop(readers)
    every["limit"] = loop([(lambda p=p: limit_read(lib, p, off, 8192, 8192, 1, 2)) for p in paths])
    row = harness.run_case(GROUP, f"{count} small files (64x64 int16, 30 cards), per file", every,
                           check=one, unit="s/file", repeat=5 if quick else 9, warmup=1,
                           per=count, target=0.7)
    for p in paths:
        os.remove(p)
    yield row


def cutouts(workdir, lib, quick):
    n = 2048 if quick else 8192
    path = os.path.join(workdir, "big_f32.fits")
    rng = np.random.default_rng(3)
    hdr = fits.PrimaryHDU(np.zeros((1, 1), ">f4")).header
    hdr["NAXIS1"], hdr["NAXIS2"] = n, n
    with open(path, "wb") as f:  # written in blocks of rows: no 256 MB array
        f.write(hdr.tostring().encode())
        for r in range(0, n, 1024):
            f.write(rng.standard_normal((min(1024, n - r), n)).astype(">f4").tobytes())
        f.write(b"\0" * ((-(n * n * 4)) % 2880))
    off = data_offset(path)
    rnd = random.Random(4)
    corners = [(rnd.randrange(n - 64), rnd.randrange(n - 64)) for _ in range(100)]
    c = rivals.cutout_readers(path, 0, corners)
    offsets = (ctypes.c_longlong * len(corners))(*[off + (y * n + x) * 4 for y, x in corners])
    raw = path.encode()

    def limit_mapped():
        if lib.limit_cutouts_mapped(raw, n * 4, 64 * 4, 64, 4, len(corners), offsets) != 0:
            raise OSError(f"limit_cutouts_mapped failed on {path}")

    c["limit"] = limit_mapped
    c["limit open per cutout"] = lambda: [limit_read(lib, path, off + (y * n + x) * 4, n * 4,
                                                     64 * 4, 64, 4) for y, x in corners]
    # the fixed cost of one call: 100 cutouts of 1x1 pixel through the same readers
    one = rivals.cutout_readers(path, 0, corners, size=1)
    fixed = harness.measure({k: one[k] for k in ("torchfits_ops", "torchfits")},
                            repeat=7 if quick else 15)
    row = harness.run_case(GROUP, f"100 random 64x64 cutouts of a {n}x{n} float32 image", c,
                           unit="s/100 cutouts", repeat=7 if quick else 15, target=0.5,
                           notes=["limit: the file mapped once, each cutout copied and swapped "
                                  "into a fresh buffer (no call, no tensor); limit open per "
                                  "cutout: open, 64 preads, close per cutout",
                                  "the fixed cost of a call (100 cutouts of 1x1 through the file "
                                  "kept open): " + ", ".join(f"{k} {v * 1e4:.2f} µs per cutout"
                                                             for k, v in fixed.items())])
    os.remove(path)
    yield row


def headers(workdir, quick):
    """110 cards (typed values, comments, HISTORY) in each of 200 files, so
    that no reader serves a header from a cache of the same path."""
    count = 200
    hdr = fits.Header()
    for k in range(100):
        hdr[f"KEY{k:03d}"] = ((k * 1.25, k, f"text {k}", k % 2 == 0)[k % 4], f"comment {k}")
    hdr["HISTORY"] = "one"
    hdr["HISTORY"] = "two"
    first = os.path.join(workdir, "hdr_000.fits")
    fits.PrimaryHDU(np.zeros((8, 8), ">i2"), header=hdr).writeto(first, overwrite=True)
    raw = open(first, "rb").read()
    paths = [first]
    for i in range(1, count):
        p = os.path.join(workdir, f"hdr_{i:03d}.fits")
        with open(p, "wb") as f:
            f.write(raw)
        paths.append(p)
    c = rivals.header_readers(paths)
    row = harness.run_case(GROUP, f"header to dict (110 cards), per header, {count} files", c,
                           check=rivals.header_readers(paths[:3]), compare=rivals.header_diff,
                           unit="s/header", per=count, repeat=5 if quick else 15, warmup=1,
                           target=0.5, notes=["fitsio: read_header's FITSHDR as it is (no dict "
                                              "made); astropy: dict(getheader()); torchfits: "
                                              "read_header's Header"])
    for p in paths:
        os.remove(p)
    yield row


def two_threads(workdir, quick):
    """Two Python threads, each reading its own 4k x 4k float32 image, per
    read: what a thread pool (or a DataLoader with threads) gets."""
    n = 2048 if quick else 4096
    paths = []
    for i in range(2):
        p = os.path.join(workdir, f"thr_{i}.fits")
        fits.PrimaryHDU(random_array((n, n), -32, seed=10 + i)).writeto(p, overwrite=True)
        paths.append(p)
    per = 2 if quick else 4
    readers = [rivals.image_readers(p) for p in paths]

    def two(name):
        def loop(fn):
            for _ in range(per):
                fn()

        def go():
            ts = [threading.Thread(target=loop, args=(r[name],)) for r in readers]
            for th in ts:
                th.start()
            for th in ts:
                th.join()
        return go

    c = {name: two(name) for name in readers[0]}
    gil = {who: "releases" if releases_gil(workdir, who) else "holds"
           for who in ("torchfits_ops", "torchfits", "fitsio")}
    row = harness.run_case(GROUP, f"two Python threads reading {n}x{n} float32, per read", c,
                           check={k: v for k, v in readers[0].items()}, repeat=5 if quick else 9,
                           warmup=1, per=2 * per, target=0.5,
                           notes=["during a read, " + ", ".join(f"{k} {v} the GIL"
                                                                for k, v in gil.items())])
    for p in paths:
        os.remove(p)
    yield row


_GIL = r"""
import os, sys, threading, time
sys.path.insert(0, {root!r})
import torch, fitsio, torchfits, torchfits_ops
fifo = sys.argv[1]
read = {{"torchfits_ops": lambda p: torch.ops.torchfits.read(p, 0),
        "torchfits": lambda p: torchfits.read_tensor(p),
        "fitsio": fitsio.read}}[sys.argv[2]]
def reader():
    try:
        read(fifo)
    except Exception:
        pass
threading.Thread(target=reader, daemon=True).start()
time.sleep(0.3)  # returns only if the reader, blocked in open(), let go of the GIL
print("released", flush=True)
with open(fifo, "wb") as w:
    w.write(b"x")
"""


def releases_gil(workdir, who):
    """Whether a read lets other Python threads run: the reader opens a FIFO,
    which blocks in open() until the main thread (which needs the GIL to
    wake from sleep) opens it for writing."""
    fifo = os.path.join(workdir, f"gil_{who}.fifo")
    if os.path.exists(fifo):
        os.remove(fifo)
    os.mkfifo(fifo)
    try:
        r = subprocess.run([sys.executable, "-c", _GIL.format(root=os.path.dirname(HERE)), fifo,
                            who], capture_output=True, text=True, timeout=60)
        return "released" in r.stdout
    except subprocess.TimeoutExpired:
        return False
    finally:
        try:  # unblock a reader left hanging
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)
        except OSError:
            pass
        os.remove(fifo)


def run(workdir, quick):
    os.makedirs(workdir, exist_ok=True)
    lib = harness.limit_lib(workdir)
    only = os.environ.get("BENCH_CASES", "")  # e.g. "whole,small" while developing
    parts = [("whole", lambda: whole_images(workdir, lib, quick)),
             ("small", lambda: small_files(workdir, lib, quick)),
             ("cutouts", lambda: cutouts(workdir, lib, quick)),
             ("header", lambda: headers(workdir, quick)),
             ("threads", lambda: two_threads(workdir, quick))]
    for name, fn in parts:
        if not only or name in only.split(","):
            yield from fn()  # one case at a time, so run.py prints as it goes
