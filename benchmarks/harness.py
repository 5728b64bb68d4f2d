"""The shared benchmark harness.

Each benchmarks/bench_<topic>.py defines

    def run(workdir: str, quick: bool) -> Iterator[dict]

yielding one dict per case, made by `case()` below. A case times
contenders named "<package>[ <variant>]":

- ``torchfits_ops`` is ours, the call a user makes; ``torchfits_ops <variant>``
  are other ways of ours (one thread, the op, ...), shown, not compared;
- ``torchfits`` (the PyPI package torchfits 1.3.1, another project),
  ``fitsio`` and ``astropy`` (and their variants) are the rivals; the best
  rival of a case is the fastest of all of their calls;
- ``limit`` is benchmarks/limit.c, the physical bound where one applies.

`run_case` first calls every contender once and compares its result with
ours (`diff`): bit for bit, or within a tolerance the case documents for
lossy decoding. A contender that disagrees is not timed; the disagreement
is a finding of the case. Then `measure` runs the contenders that agreed
side by side in this one process, interleaved (each round calls every
contender once, in a shuffled order), after a warm-up that also warms the
page cache, and keeps the median.
"""
import ctypes
import gc
import importlib.metadata
import os
import platform
import random
import statistics
import subprocess
import tempfile
import time
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OURS = "torchfits_ops"
RIVALS = ("torchfits", "fitsio", "astropy", "astrocut")
BOUND = "limit"
# package -> a callable run untimed before each timed call of its contenders
# (rivals.py empties torchfits' data cache with it)
SETUP_FOR: Dict[str, Callable[[], object]] = {}


def package(name: str) -> str:
    return name.split(" ", 1)[0]


def is_rival(name: str) -> bool:
    return package(name) in RIVALS


# ---- timing ----

def measure(contenders: Dict[str, Callable[[], object]], repeat: int = 15, number: int = 1,
            warmup: int = 2, setup: Optional[Dict[str, Callable[[], object]]] = None
            ) -> Dict[str, float]:
    """Median seconds per call of each contender, interleaved.

    The order is shuffled in every round (with a fixed seed): a contender
    that always ran right after another read of the same file would find
    its pages and a just-freed buffer of the same size hot in cache.
    `setup[name]`, where given, runs untimed before each call of `name`;
    by default SETUP_FOR of its package. The garbage collector is off
    during the rounds and runs between them.
    """
    setup = dict(setup or {})
    for name in contenders:
        if name not in setup and package(name) in SETUP_FOR:
            setup[name] = SETUP_FOR[package(name)]
    times = {name: [] for name in contenders}
    for _ in range(warmup):
        for name, fn in contenders.items():
            if name in setup:
                setup[name]()
            fn()
    order = list(contenders.items())
    rng = random.Random(0)
    # as timeit does: no garbage collection inside a timed call (it would
    # land on whichever contender happened to cross the threshold); the
    # collector runs between rounds instead
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            gc.collect()
            _round(order, rng, number, setup, times)
    finally:
        if enabled:
            gc.enable()
    return {name: statistics.median(v) for name, v in times.items()}


def _round(order, rng, number, setup, times):
    """One round: every contender once (`number` calls), in a new order."""
    rng.shuffle(order)
    for name, fn in order:
        elapsed = 0.0
        for _ in range(number):
            if name in setup:
                setup[name]()
            t0 = time.perf_counter()
            fn()
            elapsed += time.perf_counter() - t0
        times[name].append(elapsed / number)


# ---- correctness ----

def _as_tensor(x):
    if isinstance(x, torch.Tensor):
        return x
    a = np.asarray(x)
    if a.dtype.kind in "SUO":
        return a
    if a.dtype.byteorder not in "=|":
        a = a.astype(a.dtype.newbyteorder("="))
    return torch.from_numpy(np.ascontiguousarray(a))


def _strings(x) -> List[str]:
    """Fixed-width strings in any of the forms the readers return (uint8
    tensor [rows, width], numpy S/U array, list of str) as a list of str
    with trailing blanks and NULs removed."""
    if isinstance(x, torch.Tensor):
        x = x.numpy()
    if isinstance(x, np.ndarray) and x.dtype == np.uint8:
        x = x.reshape(x.shape[0], -1).view(f"S{x.shape[-1]}").ravel() if x.ndim > 1 and x.shape[-1] else x
    out = []
    for v in (x.tolist() if isinstance(x, np.ndarray) else list(x)):
        if isinstance(v, bytes):
            v = v.split(b"\0", 1)[0].decode("latin-1")
        out.append(str(v).rstrip(" "))
    return out


def diff(ref, out, tol: Optional[float] = None, what: str = "") -> Optional[str]:
    """None where `out` holds the values of `ref` (ours), else what differs.

    Tensors and arrays: the same shape and the same values (NaN equal to
    NaN) compared exactly, or within `tol` (absolute) where given; a
    different dtype with the same values is not a difference (see
    `dtype_note`). Dicts (tables): the same columns, each compared. Lists
    (variable-length arrays): the same length, each row compared. Strings
    are compared as str with trailing blanks removed.
    """
    if isinstance(ref, dict):
        if not isinstance(out, dict):
            return f"{what}returns {type(out).__name__}, not a dict of columns"
        keys = {k.upper(): k for k in out}
        for k, v in ref.items():
            if k.upper() not in keys:
                return f"{what}has no column {k}"
            d = diff(v, out[keys[k.upper()]], tol, f"column {k}: ")
            if d:
                return d
        return None
    if isinstance(ref, (list, tuple)) and (not ref or isinstance(ref[0], str)):
        a, b = _strings(ref), _strings(out)
        if a != b:
            bad = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            return (f"{what}strings differ at row {bad} ({a[bad] if bad < len(a) else None!r} "
                    f"against {b[bad] if bad < len(b) else None!r})")
        return None
    if isinstance(ref, (list, tuple)):
        if len(ref) != len(out):
            return f"{what}{len(out)} rows, not {len(ref)}"
        for i, (x, y) in enumerate(zip(ref, out)):
            d = diff(x, y, tol, f"{what}row {i}: ")
            if d:
                return d
        return None
    a, b = _as_tensor(ref), _as_tensor(out)
    if isinstance(b, np.ndarray) or isinstance(a, np.ndarray):
        return diff(_strings(a), _strings(b), tol, what)
    if tuple(a.shape) != tuple(b.shape):
        if a.numel() == b.numel() and b.squeeze().shape == a.squeeze().shape:
            b = b.reshape(a.shape)
        else:
            return f"{what}shape {tuple(b.shape)}, not {tuple(a.shape)}"
    if a.dtype == torch.bool or b.dtype == torch.bool:
        same = torch.equal(a.to(torch.bool), b.to(torch.bool))
        return None if same else f"{what}logical values differ"
    wide = torch.float64 if (a.is_floating_point() or b.is_floating_point()) else torch.int64
    if a.dtype == torch.uint64 or b.dtype == torch.uint64:
        a, b = a.to(torch.float64), b.to(torch.float64)  # rare; exact below 2**53
    x, y = a.to(wide), b.to(wide)
    if wide == torch.float64:
        nan = torch.isnan(x) | torch.isnan(y)
        if not torch.equal(torch.isnan(x), torch.isnan(y)):
            return f"{what}{int((torch.isnan(x) ^ torch.isnan(y)).sum())} values NaN in one only"
        x, y = x[~nan], y[~nan]
    err = (x - y).abs().max().item() if x.numel() else 0
    if (tol is None and err != 0) or (tol is not None and err > tol):
        n = int(((x - y).abs() > (tol or 0)).sum())
        return f"{what}{n} of {x.numel()} values differ (largest difference {err:.6g})"
    return None


def dtype_of(x) -> Optional[str]:
    if isinstance(x, torch.Tensor):
        return str(x.dtype).split(".")[-1]
    if isinstance(x, np.ndarray) and x.dtype.kind not in "SUO":
        return x.dtype.name
    return None


# ---- cases ----

def run_case(group: str, name: str, contenders: Dict[str, Callable[[], object]], *,
             unit: str = "s/read", repeat: int = 15, number: int = 1, warmup: int = 2,
             target: Optional[float] = None, target_text: Optional[str] = None,
             tol: Optional[float] = None, tol_text: Optional[str] = None,
             check: Optional[Dict[str, Callable[[], object]]] = None,
             unchecked: tuple = (BOUND,), setup: Optional[Dict[str, Callable]] = None,
             per: float = 1.0, notes: Optional[List[str]] = None,
             compare: Optional[Callable[[object, object], Optional[str]]] = None) -> dict:
    """Check every contender against ours, time those that agree, and make
    the case's row. `check[name]`, where given, is called instead of the
    contender for the comparison (a loop over many files checks one of
    them); `compare(ours, theirs)`, where given, replaces `diff`. `per`
    divides the times (e.g. the number of files)."""
    check = check or {}
    findings, notes = [], list(notes or [])
    for fn in SETUP_FOR.values():
        fn()
    ref_fn = check.get(OURS, contenders[OURS])
    ref = ref_fn()
    for who in list(contenders):
        if who == OURS or package(who) in unchecked:
            continue
        try:
            got = check.get(who, contenders[who])()
        except Exception as e:  # noqa: BLE001 - a contender that fails is a finding
            findings.append(f"{who} fails: {type(e).__name__}: {str(e)[:200]}")
            del contenders[who]
            continue
        d = compare(ref, got) if compare else diff(ref, got, tol)
        if d:
            findings.append(f"{who} returns other values than torchfits_ops: {d}; not timed")
            del contenders[who]
            continue
        dr, dg = dtype_of(ref), dtype_of(got)
        if dr is not None and dg is not None and dr != dg:
            note = f"{who} returns {dg} where torchfits_ops returns {dr} (the same values)"
            if note not in notes:
                notes.append(note)
    del ref
    t = measure(contenders, repeat=repeat, number=number, warmup=warmup, setup=setup)
    t = {k: v / per for k, v in t.items()}
    return case(group, name, t, unit=unit, target=target, target_text=target_text,
                findings=findings, notes=notes, tol_text=tol_text if tol is not None else None)


def case(group, name, times, unit="s/read", target=None, target_text=None, findings=(),
         notes=(), tol_text=None, higher_is_better=False) -> dict:
    """A case's row: the times, the best rival, our ratio to it, the
    target (a ratio of times, ours over the best rival's) and whether it
    was met."""
    rivals = {k: v for k, v in times.items() if is_rival(k)}
    best = min(rivals, key=rivals.get) if rivals else None
    ours = times.get(OURS)
    r = ours / rivals[best] if best and ours is not None and rivals[best] > 0 else None
    limits = [v for k, v in times.items() if package(k) == BOUND and v > 0]
    bound = ours / min(limits) if ours is not None and limits else None
    met = None if target is None or r is None else r <= target
    return {"group": group, "case": name, "times": times, "unit": unit, "best": best,
            "ratio": r, "bound": bound, "target": target,
            "target_text": target_text or (f"<= {target:g}x" if target is not None else None),
            "met": met, "findings": list(findings), "notes": list(notes), "tol": tol_text}


# ---- page cache ----

_limit = None


def limit_lib(workdir: str):
    """Build limit.c into workdir and load it."""
    global _limit
    if _limit is None:
        os.makedirs(workdir, exist_ok=True)
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
        lib.limit_read_mt.argtypes = [ctypes.c_char_p] + [ctypes.c_longlong] * 2 + [
            ctypes.c_int] * 2
        lib.limit_read_mt.restype = ctypes.c_int
        lib.limit_cutouts_mapped.argtypes = [ctypes.c_char_p] + [ctypes.c_longlong] * 3 + [
            ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_longlong)]
        lib.limit_cutouts_mapped.restype = ctypes.c_int
        lib.limit_read_mapped.argtypes = [ctypes.c_char_p] + [ctypes.c_longlong] * 2 + [
            ctypes.c_int]
        lib.limit_read_mapped.restype = ctypes.c_int
        lib.limit_resident.argtypes = [ctypes.c_char_p]
        lib.limit_resident.restype = ctypes.c_double
        _limit = lib
    return _limit


def drop_page_cache(paths=()) -> Optional[str]:
    """sync; echo 3 > /proc/sys/vm/drop_caches. None when it worked (each
    of `paths` has no page left in the cache, as mincore says), else why
    not."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError as e:
        return f"echo 3 > /proc/sys/vm/drop_caches failed: {e}"
    lib = _limit
    for p in paths:
        if lib is not None:
            left = lib.limit_resident(p.encode())
            if left > 0.01:
                return f"after dropping the page cache, {left:.0%} of {os.path.basename(p)} was still cached"
    return None


# ---- the machine and the versions ----

def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{cpu}, {os.cpu_count()} cores{mem}; {platform.system()} {platform.release()}"


def cfitsio_versions() -> Dict[str, str]:
    """The cfitsio each package runs: ours links the system's libcfitsio,
    torchfits bundles one in libtorchfits_core.so, fitsio links one in
    statically. ffvers gives major + minor/100 + micro/10000."""
    import fitsio

    def fmt(v):
        major = int(v)
        rest = round((v - major) * 10000)
        return f"{major}.{rest // 100}.{rest % 100}"

    out = {}
    try:
        for line in open("/proc/self/maps"):
            p = line.split()[-1]
            if "libcfitsio.so" in p and "torchfits_ops" not in out:
                lib = ctypes.CDLL(p)
                v = ctypes.c_float()
                lib.ffvers(ctypes.byref(v))
                out["torchfits_ops"] = f"{fmt(v.value)} (Debian's {os.path.basename(p)})"
            if p.endswith("libtorchfits_core.so") and "torchfits" not in out:
                lib = ctypes.CDLL(p)
                v = ctypes.c_float()
                lib.ffvers(ctypes.byref(v))
                out["torchfits"] = f"{fmt(v.value)} (bundled in libtorchfits_core.so)"
    except OSError:
        pass
    try:
        out["fitsio"] = f"{fmt(float(fitsio.cfitsio_version()))} (linked into fitsio's extension)"
    except Exception:  # noqa: BLE001
        pass
    return out


def versions() -> Dict[str, str]:
    import sys

    def v(dist):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    import torchfits_ops
    out = {"Python": sys.version.split()[0], "torch": torch.__version__,
           "torchfits_ops (ours)": f"{torchfits_ops.__version__} at commit {git_commit()}",
           "torchfits": v("torchfits"), "fitsio": v("fitsio"), "astropy": v("astropy"), "astrocut": v("astrocut"),
           "numpy": v("numpy"), "pyarrow": v("pyarrow")}
    for k, c in cfitsio_versions().items():
        out[f"cfitsio of {k}"] = c
    try:
        cc = subprocess.run([os.environ.get("CC", "cc"), "--version"], capture_output=True,
                            text=True).stdout.splitlines()[0]
        out["C compiler (ours, limit.c)"] = cc
    except (OSError, IndexError):
        pass
    return out


def git_commit() -> str:
    try:
        r = subprocess.run(["git", "-C", HERE, "log", "-1", "--format=%h"], capture_output=True,
                           text=True)
        dirty = subprocess.run(["git", "-C", HERE, "status", "--porcelain", "--", "csrc",
                                "torchfits_ops", "setup.py"], capture_output=True, text=True)
        return r.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


def load() -> str:
    """The load average and what else was running, for the page."""
    try:
        la = open("/proc/loadavg").read().split()[:3]
        return f"load average {' '.join(la)}"
    except OSError:
        return ""


def standalone(run, prefix: str) -> None:
    """A bench module run by itself (`python benchmarks/bench_X.py
    [--quick]`): its cases in a temporary folder, each printed as it
    finishes; RESULTS.md is left alone (benchmarks/run.py writes it)."""
    import sys
    quick = "--quick" in sys.argv
    with tempfile.TemporaryDirectory(prefix=prefix) as d:
        for r in run(d, quick):
            ts = ", ".join(f"{k} {v:.4g}" for k, v in r["times"].items())
            ratio = f"{r['ratio']:.3f}" if r["ratio"] is not None else "-"
            print(f"{r['case']} ({r['unit']}): {ts}\n  best rival {r['best']}, ours/rival "
                  f"{ratio} {r['target_text'] or ''}"
                  + "".join(f"\n  finding: {f}" for f in r["findings"])
                  + "".join(f"\n  note: {x}" for x in r["notes"]), flush=True)
