"""Image reads: torchfits against fitsio, astropy and the physical limit.

Every case of issue 4. Each case runs its contenders side by side in this
one process, interleaved, after a warm-up that fills the page cache, and
keeps the median (harness.measure):

- torchfits: ``torchfits_ops.read`` / ``read_cutout`` / ``read_header``
  (the Python wrappers users call, so their overhead counts), with its
  default thread count (torch.get_num_threads()); whole images also with
  TORCHFITS_THREADS=2;
- fitsio: ``torch.from_numpy(fitsio.read(path))``;
- astropy: ``fits.getdata(path, memmap=False)``, made native-endian, as a
  tensor;
- limit: benchmarks/limit.c (built here with cc, called through ctypes):
  open, buffer, pread, byteswap in place, release, close. No header parse.

Where torch has no uint16/uint32 (before 2.3), the other readers' unsigned
arrays are widened to int32/int64, the dtype torchfits returns there.
"""
import ctypes
import os
import random
import subprocess
import sys
import threading

import numpy as np
import torch
from astropy.io import fits

import fitsio
import harness
import torchfits_ops as tf
from fitsgen import random_array

HERE = os.path.dirname(os.path.abspath(__file__))
GROUP = "images"
WIDEN = {np.dtype(np.uint16): np.int32, np.dtype(np.uint32): np.int64}
if hasattr(torch, "uint16"):
    WIDEN = {}


# ---- contenders ----

def to_tensor(a):
    """A native-endian tensor of a numpy array, as cheaply as numpy allows."""
    native = a.dtype.newbyteorder("=")
    want = WIDEN.get(native, native)
    if a.dtype != want:
        a = a.astype(want)
    return torch.from_numpy(a)


def with_threads(n, fn, *args):
    """fn with torchfits_ops.set_threads(n) (the default: one per CPU)."""
    previous = tf.set_threads(n)
    try:
        return fn(*args)
    finally:
        tf.set_threads(previous)


def fitsio_read(path):
    return to_tensor(fitsio.read(path))


def astropy_read(path):
    return to_tensor(fits.getdata(path, memmap=False))


_limit = None


def limit_lib(workdir):
    """Build limit.c into workdir and load it."""
    global _limit
    if _limit is None:
        so = os.path.join(workdir, "liblimit.so")
        subprocess.run([os.environ.get("CC", "cc"), "-O3", "-shared", "-fPIC", "-pthread", "-o",
                        so, os.path.join(HERE, "limit.c")], check=True)
        lib = ctypes.CDLL(so)
        lib.limit_read.argtypes = [ctypes.c_char_p] + [ctypes.c_longlong] * 4 + [
            ctypes.c_int, ctypes.c_void_p]
        lib.limit_read.restype = ctypes.c_int
        lib.limit_table_rows.argtypes = [ctypes.c_char_p] + [ctypes.c_longlong] * 4 + [
            ctypes.c_int]
        lib.limit_table_rows.restype = ctypes.c_int
        _limit = lib
    return _limit


def limit_read(lib, path, offset, row_stride, row_bytes, nrows, elsize):
    if lib.limit_read(path.encode(), offset, row_stride, row_bytes, nrows, elsize, None) != 0:
        raise OSError(f"limit_read failed on {path}")


def data_offset(path):
    with fits.open(path) as h:
        return h[0].fileinfo()["datLoc"]


def case(name, times, target=None, met=None, unit="s/read"):
    return {"group": GROUP, "case": name, "times": times, "unit": unit, "target": target,
            "met": met}


# ---- cases ----

def whole_images(workdir, lib, quick):
    sizes = [1024] if quick else [1024, 4096]
    repeat = 7 if quick else 21
    rows = []
    kinds = [(b, f"BITPIX {b}", {}) for b in (8, 16, 32, 64, -32, -64)]
    kinds += [(16, "uint16 (BZERO 32768)", {"BZERO": 32768}),
              (16, "int16 scaled to float32", {"BSCALE": 0.5, "BZERO": 100.0})]
    for n in sizes:
        for bitpix, label, keys in kinds:
            path = os.path.join(workdir, f"img_{n}_{label.split()[0]}_{len(keys)}_{bitpix}.fits")
            data = random_array((n, n), bitpix, seed=n + bitpix)
            hdr = fits.Header()
            hdu = fits.PrimaryHDU(data, header=hdr)
            for k, v in keys.items():
                # the stored values as they are, keywords added after
                hdu.header[k] = v
            hdu.writeto(path, overwrite=True)
            off, elsize = data_offset(path), abs(bitpix) // 8
            nbytes = n * n * elsize
            t = harness.measure({
                "torchfits": lambda: tf.read(path),
                "torchfits 2 threads": lambda: with_threads(2, tf.read, path),
                "fitsio": lambda: fitsio_read(path),
                "astropy": lambda: astropy_read(path),
                "limit": lambda: limit_read(lib, path, off, nbytes, nbytes, 1, elsize),
            }, repeat=repeat)
            if keys:
                target, met = "none set (reported)", None
            else:
                tgt = 1.0 if bitpix == 8 else 0.5
                target = f"<= 1.25 x limit, <= {tgt} x fitsio"
                met = (t["torchfits"] <= 1.25 * t["limit"]
                       and t["torchfits"] <= tgt * t["fitsio"])
            rows.append(case(f"{label}, {n}x{n}", t, target, met))
            os.remove(path)
    return rows


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

    def every(fn):
        def go():
            for p in paths:
                fn(p)
        return go

    t = harness.measure({
        "torchfits": every(tf.read),
        "fitsio": every(fitsio_read),
        "astropy": every(astropy_read),
        "limit": every(lambda p: limit_read(lib, p, off, 8192, 8192, 1, 2)),
    }, repeat=5 if quick else 9, warmup=1)
    t = {k: v / count for k, v in t.items()}
    for p in paths:
        os.remove(p)
    return [case(f"{count} small files (64x64 int16, 30 cards), per file", t,
                 "<= 0.5 x fitsio", t["torchfits"] <= 0.5 * t["fitsio"], "s/file")]


def cutouts(workdir, lib, quick):
    n = 2048 if quick else 8192
    path = os.path.join(workdir, "big_f32.fits")
    rng = np.random.default_rng(3)
    data = np.empty((n, n), dtype=">f4")
    for r in range(0, n, 1024):
        data[r:r + 1024] = rng.standard_normal((min(1024, n - r), n))
    fits.PrimaryHDU(data).writeto(path, overwrite=True)
    del data
    off = data_offset(path)
    rnd = random.Random(4)
    corners = [(rnd.randrange(n - 64), rnd.randrange(n - 64)) for _ in range(100)]

    def torchfits_cuts():
        with tf.open(path) as f:  # opened once per 100 cutouts, like fitsio's
            h = f[0]
            for y, x in corners:
                h[y:y + 64, x:x + 64]

    def torchfits_oneshot():
        for y, x in corners:
            tf.read_cutout(path, 0, [y, x], [64, 64])

    def fitsio_cuts():
        with fitsio.FITS(path) as f:  # opened once per 100 cutouts
            h = f[0]
            for y, x in corners:
                torch.from_numpy(h[y:y + 64, x:x + 64])

    def astropy_cuts():
        with fits.open(path) as h:  # .section reads only the region
            s = h[0].section
            for y, x in corners:
                to_tensor(s[y:y + 64, x:x + 64])

    def limit_cuts():
        for y, x in corners:
            limit_read(lib, path, off + (y * n + x) * 4, n * 4, 64 * 4, 64, 4)

    t = harness.measure({"torchfits": torchfits_cuts, "torchfits open per cutout": torchfits_oneshot,
                         "fitsio": fitsio_cuts,
                         "astropy": astropy_cuts, "limit": limit_cuts},
                        repeat=7 if quick else 15)
    os.remove(path)
    return [case(f"100 random 64x64 cutouts of a {n}x{n} float32 image", t, "<= 0.1 x fitsio",
                 t["torchfits"] <= 0.1 * t["fitsio"], "s/100 cutouts")]


def headers(workdir, quick):
    path = os.path.join(workdir, "hdr.fits")
    hdr = fits.Header()
    for k in range(100):
        hdr[f"KEY{k:03d}"] = ((k * 1.25, k, f"text {k}", k % 2 == 0)[k % 4], f"comment {k}")
    hdr["HISTORY"] = "one"
    hdr["HISTORY"] = "two"
    fits.PrimaryHDU(np.zeros((8, 8), ">i2"), header=hdr).writeto(path, overwrite=True)
    t = harness.measure({
        "torchfits": lambda: tf.read_header(path),
        "fitsio": lambda: fitsio.read_header(path),
        "astropy": lambda: dict(fits.getheader(path)),
    }, repeat=9 if quick else 31, number=5)
    return [case("header to dict (110 cards)", t, "<= 0.3 x fitsio read_header",
                 t["torchfits"] <= 0.3 * t["fitsio"], "s/header")]


def two_threads(workdir, quick):
    n = 2048 if quick else 4096
    paths = []
    for i in range(2):
        p = os.path.join(workdir, f"thr_{i}.fits")
        fits.PrimaryHDU(random_array((n, n), -32, seed=10 + i)).writeto(p, overwrite=True)
        paths.append(p)
    per = 4 if quick else 8

    def loop(fn, path, count):  # keeps no result alive
        for _ in range(count):
            fn(path)

    def one(fn):
        return lambda: loop(fn, paths[0], 2 * per)

    def two(fn):
        def go():
            ts = [threading.Thread(target=loop, args=(fn, p, per)) for p in paths]
            for th in ts:
                th.start()
            for th in ts:
                th.join()
        return go

    # os.environ is set before the threads start and read by the core only
    single = {"torchfits(1) 1 thread": one(tf.read), "torchfits(1) 2 threads": two(tf.read)}

    t = harness.measure({"torchfits 1 thread": one(tf.read), "torchfits 2 threads": two(tf.read),
                         "fitsio 1 thread": one(fitsio_read),
                         "fitsio 2 threads": two(fitsio_read),
                         **{k: (lambda v=v: with_threads(1, v)) for k, v in single.items()}},
                        repeat=5 if quick else 9, warmup=1)
    t = {k: v / (2 * per) for k, v in t.items()}
    gain = t["torchfits 1 thread"] / t["torchfits 2 threads"]
    gain_fitsio = t["fitsio 1 thread"] / t["fitsio 2 threads"]
    gain_single = t["torchfits(1) 1 thread"] / t["torchfits(1) 2 threads"]
    for p in paths:
        os.remove(p)
    gil = {who: "releases" if releases_gil(workdir, who) else "holds"
           for who in ("torchfits", "fitsio")}
    return [case(f"two Python threads reading {n}x{n} float32 (throughput 2 threads / 1: "
                 f"torchfits {gain:.2f}x, torchfits with TORCHFITS_THREADS=1 {gain_single:.2f}x, "
                 f"fitsio {gain_fitsio:.2f}x; during a read torchfits "
                 f"{gil['torchfits']} the GIL, fitsio {gil['fitsio']} it)", t,
                 ">= 1.6 x one thread's throughput", max(gain, gain_single) >= 1.6, "s/read")]


_GIL = r"""
import os, sys, threading, time
sys.path.insert(0, {root!r})
import torch, fitsio, torchfits_ops as tf
fifo = sys.argv[1]
read = {{"torchfits": lambda p: torch.ops.torchfits.read(p, 0), "fitsio": fitsio.read}}[sys.argv[2]]
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
                            who], capture_output=True, text=True, timeout=30)
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


_PEAK = r"""
import sys, torch
sys.path.insert(0, {root!r})
import numpy as np, fitsio, torchfits_ops as tf
from astropy.io import fits
def rss(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
before = rss("VmRSS:")
path, who = sys.argv[1], sys.argv[2]
if who == "torchfits":
    x = tf.read(path)
elif who == "fitsio":
    x = torch.from_numpy(fitsio.read(path))
else:
    x = fits.getdata(path, memmap=False)
    x = torch.from_numpy(x.astype(x.dtype.newbyteorder("="), copy=False))
print(rss("VmHWM:") - before, x.numel() * x.element_size())
"""


def peak_memory(workdir, quick):
    """Peak RSS over the RSS before the read, in a fresh process each."""
    n = 4096 if quick else 16384
    path = os.path.join(workdir, "huge.fits")
    hdr = fits.PrimaryHDU(np.zeros((1, 1), ">f4")).header
    hdr["NAXIS1"], hdr["NAXIS2"] = n, n
    row = (np.arange(n, dtype=np.float32) * 0.5).astype(">f4").tobytes()
    with open(path, "wb") as f:
        f.write(hdr.tostring().encode())
        for _ in range(n):
            f.write(row)
        pad = (-(n * n * 4)) % 2880
        f.write(b"\0" * pad)
    script = _PEAK.format(root=os.path.dirname(HERE))
    out = {}
    for who in ("torchfits", "fitsio", "astropy"):
        r = subprocess.run([sys.executable, "-c", script, path, who], capture_output=True,
                           text=True, check=True)
        peak, size = map(int, r.stdout.split())
        out[who] = peak
    os.remove(path)
    mb = {k: f"{v / 2**20:.0f} MiB" for k, v in out.items()}
    return [case(f"peak memory reading a {size / 2**30:.2f} GiB float32 image (RSS high-water "
                 f"mark over the RSS before; torchfits {mb['torchfits']}, fitsio "
                 f"{mb['fitsio']}, astropy {mb['astropy']})", {k: float(v) for k, v in out.items()},
                 "<= image + 100 MB", out["torchfits"] <= size + 100e6, "bytes")]


def run(workdir, quick):
    os.makedirs(workdir, exist_ok=True)
    lib = limit_lib(workdir)
    only = os.environ.get("BENCH_CASES", "")  # e.g. "whole,small" while developing
    parts = [("whole", lambda: whole_images(workdir, lib, quick)),
             ("small", lambda: small_files(workdir, lib, quick)),
             ("cutouts", lambda: cutouts(workdir, lib, quick)),
             ("header", lambda: headers(workdir, quick)),
             ("threads", lambda: two_threads(workdir, quick)),
             ("peak", lambda: peak_memory(workdir, quick))]
    for name, fn in parts:
        if not only or name in only.split(","):
            yield from fn()  # one case at a time, so run.py prints as it goes
