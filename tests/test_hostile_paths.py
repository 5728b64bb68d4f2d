"""Hostile paths, special files and unusual valid files (issue 17).

cfitsio interprets a file name (~user, leading blanks, [...] and (...),
name.gz siblings, ".Z" anywhere, 1,024 bytes at most); the core reads the
file it names. Now the core opens every file itself and cfitsio only reads
through the core's driver, so both read the same bytes. Each case runs in a
fresh process with a time limit and an address-space cap (tests/isolated.py),
reads what astropy reads or fails with the documented error, and leaves its
folder as it found it.
"""
import gzip
import hashlib
import json
import os
import socket
import stat
import textwrap
import zlib

import numpy as np
import pytest
from astropy.io import fits

import isolated

# Run in the child before each case's code: `readall` describes a file as
# the parent's `expected` does from astropy.
PRELUDE = """
import hashlib, json, os, sys
import numpy as np
import torch
import torchfits_ops as tf

def digest(a):
    a = np.ascontiguousarray(a)
    return [str(a.dtype), list(a.shape), hashlib.sha256(a.tobytes()).hexdigest()]

def readall(p):
    n = tf.num_hdus(p)
    return {"n": n, "shapes": [list(i.shape) for i in tf.info(p)],
            "data": [digest(tf.read(p, i).numpy()) for i in range(n)],
            "object": tf.read_header(p, 0).get("OBJECT")}

def attempt(fn):
    try:
        fn()
        return None
    except Exception as e:
        return [type(e).__name__, str(e)]
"""


def child(code, cwd, timeout=120, env=None, address_space_gb=12):
    """The JSON the child prints last; fails on a crash or a hang."""
    full_env = dict(os.environ if env is None else env)
    res = isolated.run(PRELUDE + textwrap.dedent(code), timeout=timeout, env=full_env,
                       cwd=str(cwd), address_space_gb=address_space_gb)
    assert res.returncode == 0, f"exit {res.returncode}\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}"
    return json.loads(res.stdout.strip().splitlines()[-1])


def digest(a):
    a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("="))
    return [str(a.dtype), list(a.shape), hashlib.sha256(a.tobytes()).hexdigest()]


def expected(path):
    """What `readall` must give, from astropy."""
    with fits.open(os.fspath(path)) as h:
        return {"n": len(h), "shapes": [list(x.data.shape) for x in h],
                "data": [digest(x.data) for x in h], "object": h[0].header.get("OBJECT")}


def mef(path, seed, side=200):
    """A primary float32 image (side x side: over 64 KiB from side 130) and
    an int32 image extension. OBJECT names the file; EXTNAME in the primary
    header keeps the core's fast open away, so cfitsio parses the file."""
    rng = np.random.default_rng(seed)
    primary = fits.PrimaryHDU(rng.normal(size=(side, side)).astype(">f4"))
    primary.header["OBJECT"] = f"seed{seed}"
    primary.header["EXTNAME"] = "MAIN"
    ext = fits.ImageHDU(rng.integers(-1000, 1000, size=(7, 5 + seed % 7)).astype(">i4"), name="SCI")
    fits.HDUList([primary, ext]).writeto(os.fspath(path))
    return path


def test_tilde_is_a_relative_directory(tmp_path):
    """"~name/f" and "~/f" name relative directories. cfitsio expanded
    them: "~name" with no such user was a NULL dereference (SIGSEGV) for
    files over 64 KiB, and "~/img.fits" read $HOME's file's headers over
    this file's bytes (wrong data, no error)."""
    (tmp_path / "~tfnouser9x").mkdir()
    mef(tmp_path / "~tfnouser9x" / "big.fits", seed=1)
    (tmp_path / "~").mkdir()
    mef(tmp_path / "~" / "img.fits", seed=2)
    (tmp_path / "home").mkdir()
    mef(tmp_path / "home" / "img.fits", seed=3, side=150)
    before = isolated.snapshot(tmp_path)
    got = child("""
        print(json.dumps([readall("~tfnouser9x/big.fits"), readall("~/img.fits")]))
    """, tmp_path, env=dict(os.environ, HOME=str(tmp_path / "home")))
    assert got[0] == expected(tmp_path / "~tfnouser9x" / "big.fits")
    assert got[1] == expected(tmp_path / "~" / "img.fits")
    assert got[1]["object"] == "seed2"
    assert isolated.snapshot(tmp_path) == before


def _refused(err, path, what, cls="OSError"):
    assert err is not None, f"{path} was read"
    assert err[0] == cls and f"{path}: cannot open file: it is {what}, not a regular file [TF_EOPEN]" \
        in err[1], err


def test_fifo_is_refused_at_once(tmp_path):
    """Opening a FIFO for reading waits for a writer: read, info, open and
    read_batch (with the FIFO anywhere in the list) blocked forever."""
    os.mkfifo(tmp_path / "pipe.fits")
    mef(tmp_path / "good.fits", seed=4)
    fits.writeto(tmp_path / "small.fits", np.arange(6, dtype=">i2"))
    before = isolated.snapshot(tmp_path)
    got = child("""
        p = "pipe.fits"
        print(json.dumps([
            attempt(lambda: tf.read(p)), attempt(lambda: tf.info(p)),
            attempt(lambda: tf.open(p)), attempt(lambda: tf.read_header(p)),
            attempt(lambda: torch.ops.torchfits.read_batch(["small.fits", p], 0)),
            attempt(lambda: torch.ops.torchfits.read_batch([p, "small.fits"], 0)),
            torch.ops.torchfits.read_batch(["small.fits", p, "small.fits"], 0, None, None, None,
                                           False, True, 0)[1].tolist(),
            readall("good.fits")]))
    """, tmp_path, timeout=60)
    for err in got[:4]:
        _refused(err, "pipe.fits", "a FIFO (named pipe)")
    for err in got[4:6]:  # the operator raises the shim's error type
        assert err[0] == "RuntimeError" and "pipe.fits: cannot open file: it is a FIFO" in err[1]
    assert got[6] == [True, False, True]
    assert got[7] == expected(tmp_path / "good.fits")
    assert isolated.snapshot(tmp_path) == before


def test_leading_blank_names_its_own_file(tmp_path):
    """" img.fits" is not "img.fits": cfitsio stripped the blank and parsed
    the headers of the other file over this one's bytes (float data read
    as int16, no error)."""
    mef(tmp_path / " img.fits", seed=5)
    mef(tmp_path / "img.fits", seed=6, side=140)
    before = isolated.snapshot(tmp_path)
    got = child("""
        print(json.dumps([readall(" img.fits"), readall("img.fits")]))
    """, tmp_path)
    assert got[0] == expected(tmp_path / " img.fits") and got[0]["object"] == "seed5"
    assert got[1] == expected(tmp_path / "img.fits") and got[1]["object"] == "seed6"
    assert isolated.snapshot(tmp_path) == before


def _gzip_bomb(path, side=4096):
    """A gzip file of a valid float32 image side x side (64 MiB unpacked,
    some 70 KB packed)."""
    header = fits.PrimaryHDU(np.zeros((1, 1), dtype=">f4")).header
    header["NAXIS1"] = header["NAXIS2"] = side
    z = zlib.compressobj(1, zlib.DEFLATED, 31)
    with open(path, "wb") as out:
        out.write(z.compress(header.tostring().encode()))
        left = side * side * 4
        chunk = bytes(1 << 20)
        while left > 0:
            out.write(z.compress(chunk[:min(left, len(chunk))]))
            left -= len(chunk)
        out.write(z.flush())


def test_leading_blank_does_not_open_a_sibling(tmp_path):
    """With " lb.fits" present and "lb.fits" missing, cfitsio looked for
    "lb.fits.gz" and unpacked it itself, past the unpack limit."""
    mef(tmp_path / " lb.fits", seed=7)
    _gzip_bomb(tmp_path / "lb.fits.gz")
    before = isolated.snapshot(tmp_path)
    got = child("""
        import resource
        tf.set_unpack_max_mb(16)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out = readall(" lb.fits")
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) >> 10
        err = attempt(lambda: tf.read("lb.fits.gz"))
        print(json.dumps([out, grown, err]))
    """, tmp_path)
    assert got[0] == expected(tmp_path / " lb.fits")
    assert got[1] < 32, f"reading ' lb.fits' grew the peak RSS by {got[1]} MiB"
    assert got[2][0] == "RuntimeError" and "lb.fits.gz: the compressed file unpacks to more than " \
        "16 MiB" in got[2][1]
    assert isolated.snapshot(tmp_path) == before


NAMES = ["spec[OIII].fits", "obs[3].fits", "a(1).fits", "b{2}.fits", "c+1.fits", "d#.fits",
         "-", "x.fits[1]", "y.fits(z.fits)", "e.fits[col X=Y]", "mem:/f.fits", "http:/h.fits"]


def test_names_with_brackets_and_url_syntax(tmp_path):
    """Brackets, parentheses, "-" (stdin to cfitsio) and URL prefixes are
    part of a file's name: small files (read from memory) were refused as
    corrupt, large ones read through cfitsio's extended filename syntax."""
    (tmp_path / "mem:").mkdir()
    (tmp_path / "http:").mkdir()
    for i, name in enumerate(NAMES):
        mef(tmp_path / name, seed=10 + i, side=200 if i % 2 else 20)
    before = isolated.snapshot(tmp_path)
    got = child(f"""
        print(json.dumps([readall(name) for name in {NAMES!r}]))
    """, tmp_path)
    for name, g in zip(NAMES, got):
        assert g == expected(tmp_path / name), name
    assert isolated.snapshot(tmp_path) == before


def test_bracket_names_do_not_leak(tmp_path):
    """Each call on a small file with brackets in its name leaked about
    100 KB and one of cfitsio's memory-file slots; after some 10,000 calls
    every small file in the process failed ("too many files")."""
    mef(tmp_path / "spec[OIII].fits", seed=30, side=20)
    mef(tmp_path / "plain.fits", seed=31, side=20)
    before = isolated.snapshot(tmp_path)
    got = child("""
        def rss():
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        for _ in range(2000):
            tf.info("spec[OIII].fits")
        base = rss()
        for _ in range(18000):
            tf.info("spec[OIII].fits")
        grown = (rss() - base) >> 20
        print(json.dumps([grown, readall("spec[OIII].fits"), readall("plain.fits")]))
    """, tmp_path, timeout=300)
    assert got[0] < 8, f"20,000 calls grew the RSS by {got[0]} MiB"
    assert got[1] == expected(tmp_path / "spec[OIII].fits")
    assert got[2] == expected(tmp_path / "plain.fits")
    assert isolated.snapshot(tmp_path) == before


def test_long_paths(tmp_path):
    """A valid file at a path of 1,025 bytes and more was refused as
    corrupt (cfitsio's names stop at 1,024), and messages lost the path past
    about 1,000 bytes (a 1 KiB buffer)."""
    deep = tmp_path
    while len(os.fsencode(str(deep))) < 1200:
        deep = deep / ("d" * 200)
    deep.mkdir(parents=True)
    mef(deep / "big.fits", seed=40)
    mef(deep / "small.fits", seed=41, side=20)
    missing = str(tmp_path / "m")
    while len(missing) < 3800:
        missing += "/" + "e" * 150
    missing += "/" + "e" * (4000 - len(missing) - len("//missing.fits")) + "/missing.fits"
    # 4,000 bytes, under PATH_MAX (4,096): the OS looks it up
    toolong = str(tmp_path / ("f" * 200)) * 30  # past PATH_MAX: the OS refuses it
    assert len(missing) == 4000 and len(toolong) > 4096
    before = isolated.snapshot(tmp_path)
    got = child(f"""
        big, small = {str(deep / "big.fits")!r}, {str(deep / "small.fits")!r}
        missing, toolong = {missing!r}, {toolong!r}
        print(json.dumps([readall(big), readall(small),
                          attempt(lambda: tf.read(missing)), attempt(lambda: tf.info(missing)),
                          attempt(lambda: torch.ops.torchfits.read_batch([small, missing], 1)),
                          attempt(lambda: tf.read(toolong))]))
    """, tmp_path)
    assert got[0] == expected(deep / "big.fits")
    assert got[1] == expected(deep / "small.fits")
    for err in got[2:4]:
        assert err[0] == "FileNotFoundError"
        assert err[1] == f"{missing}: cannot open file: No such file or directory [TF_EOPEN]"
    assert got[4][0] == "RuntimeError"
    assert got[4][1].startswith(f"{missing}: cannot open file: No such file or directory [TF_EOPEN]")
    assert got[5][0] == "OSError"
    assert got[5][1] == f"{toolong}: cannot open file: File name too long [TF_EOPEN]"
    assert isolated.snapshot(tmp_path) == before


def test_compression_is_read_from_the_content(tmp_path):
    """".Z" anywhere in the path (a directory run.Zoom/) sent a gzip file
    to cfitsio's LZW decoder, which refused it."""
    (tmp_path / "run.Zoom").mkdir()
    plain = mef(tmp_path / "plain.fits", seed=50)
    data = open(plain, "rb").read()
    (tmp_path / "run.Zoom" / "img.fits.gz").write_bytes(gzip.compress(data))
    (tmp_path / "x.fits.Z").write_bytes(gzip.compress(data))
    (tmp_path / "noext").write_bytes(gzip.compress(data))
    before = isolated.snapshot(tmp_path)
    got = child("""
        print(json.dumps([readall(p) for p in ("run.Zoom/img.fits.gz", "x.fits.Z", "noext")]))
    """, tmp_path)
    for g in got:
        assert g == expected(plain)
    assert isolated.snapshot(tmp_path) == before


def test_multi_member_gzip(tmp_path):
    """A gzip file of several members (cat a.gz b.gz) is read whole, as
    gzip(1) and astropy read it; only the first member was read, and
    num_hdus() said 1."""
    data = open(mef(tmp_path / "plain.fits", seed=60), "rb").read()
    cut = 2880 * 3 + 1234  # inside the primary image's data
    (tmp_path / "split.fits.gz").write_bytes(gzip.compress(data[:cut]) + gzip.compress(data[cut:]))
    # three members, zero bytes between two of them (Python's gzip module,
    # and so astropy, passes over them)
    thirds = [data[:5000], data[5000:90000], data[90000:]]
    (tmp_path / "three.fits.gz").write_bytes(gzip.compress(thirds[0]) + gzip.compress(thirds[1]) +
                                             bytes(100) + gzip.compress(thirds[2]))
    # two whole files: astropy takes the second file's primary HDU for a
    # third HDU; FITS and cfitsio do not (its first keyword is SIMPLE, not
    # XTENSION): the first file's HDUs are read, and HDU 2 is refused.
    other = open(mef(tmp_path / "other.fits", seed=61, side=30), "rb").read()
    (tmp_path / "two.fits.gz").write_bytes(gzip.compress(data) + gzip.compress(other))
    before = isolated.snapshot(tmp_path)
    got = child("""
        print(json.dumps([readall("split.fits.gz"), readall("three.fits.gz"),
                          readall("two.fits.gz"), attempt(lambda: tf.read("two.fits.gz", 2))]))
    """, tmp_path)
    assert got[0] == expected(tmp_path / "split.fits.gz") == expected(tmp_path / "plain.fits")
    assert got[1] == expected(tmp_path / "plain.fits")
    whole = expected(tmp_path / "two.fits.gz")
    assert whole["n"] == 4
    assert got[2] == {"n": 2, "shapes": whole["shapes"][:2], "data": whole["data"][:2],
                      "object": "seed60"}
    assert got[3][0] == "FitsError" and "first keyword not XTENSION" in got[3][1]
    assert isolated.snapshot(tmp_path) == before


def test_directory_device_and_socket(tmp_path):
    """Only regular files are read: a directory, a character device and a
    socket each give a clear error naming what they are."""
    (tmp_path / "adir").mkdir()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(tmp_path / "sock"))
    try:
        assert stat.S_ISSOCK(os.stat(tmp_path / "sock").st_mode)
        before = isolated.snapshot(tmp_path)
        got = child("""
            out = []
            for p in ("adir", "/dev/null", "sock"):
                out.append([attempt(lambda: tf.read(p)), attempt(lambda: tf.info(p)),
                            attempt(lambda: tf.open(p))])
            print(json.dumps(out))
        """, tmp_path, timeout=60)
        for errs, (p, what, cls) in zip(got, [("adir", "a directory", "IsADirectoryError"),
                                              ("/dev/null", "a character device", "OSError"),
                                              ("sock", "a socket", "OSError")]):
            for err in errs:
                _refused(err, p, what, cls)
        assert isolated.snapshot(tmp_path) == before
    finally:
        sock.close()


def test_errors_do_not_cross_threads(tmp_path):
    """Messages come from the core's own state and cfitsio's status code:
    cfitsio's message stack is one for the whole process, and about 0.1% of
    messages raised by several threads at once carried another file's
    text."""
    def patched(name, old, new, seed):
        p = mef(tmp_path / name, seed=seed, side=20)
        raw = open(p, "rb").read()
        assert raw.count(old) == 1
        open(p, "wb").write(raw.replace(old, new))
        return name

    bitpix = patched("bitpix.fits", b"BITPIX  =                  -32", b"BITPIX  =                   17", 71)
    naxis = patched("naxis.fits", b"NAXIS1  =                    5", b"NAXIS1  =                   -5", 70)
    t = fits.BinTableHDU.from_columns([fits.Column(name="a", format="J", array=np.arange(3))])
    fits.HDUList([fits.PrimaryHDU(), t]).writeto(tmp_path / "tform.fits")
    raw = open(tmp_path / "tform.fits", "rb").read().replace(b"TFORM1  = 'J       '", b"TFORM1  = '1Z      '")
    open(tmp_path / "tform.fits", "wb").write(raw)
    (tmp_path / "notfits.fits").write_bytes(b"NOT A FITS FILE " * 200)
    names = [bitpix, naxis, "tform.fits", "notfits.fits"]
    before = isolated.snapshot(tmp_path)
    got = child(f"""
        import threading
        names = {names!r}
        def message(name):
            try:
                tf.read(name, 1)
            except Exception as e:
                return str(e)
            return "read"
        first = {{n: message(n) for n in names}}
        bad = []
        def work(name):
            for _ in range(10000):
                m = message(name)
                if m != first[name]:
                    bad.append([name, m])
        threads = [threading.Thread(target=work, args=(n,)) for n in names]
        for th in threads: th.start()
        for th in threads: th.join()
        print(json.dumps([first, bad[:5], len(bad)]))
    """, tmp_path, timeout=300)
    first, bad, nbad = got
    assert first[bitpix] == f"{bitpix}: cannot read the primary header: BITPIX = 17 (cfitsio status 211: " \
        "illegal BITPIX keyword value) [TF_ECORRUPT]"
    assert first[naxis].startswith(f"{naxis}: HDU 1: cannot read the header: NAXIS1 = -5 (cfitsio status")
    assert first["tform.fits"].startswith("tform.fits: HDU 1: cannot read the header: TFORM1 = '1Z' "
                                          "(cfitsio status 26")
    assert first["notfits.fits"].startswith("notfits.fits: not a FITS file")
    assert nbad == 0, bad
    assert isolated.snapshot(tmp_path) == before
