"""Remote reads over HTTP: nginx on loopback behind a latency proxy that
adds 10 ms each way (a 20 ms round trip; tests/servers.py LatencyProxy,
in a process of its own: this kernel has no netem).

Cases:
- 100 random 64x64 cutouts of an 8192 x 8192 float32 RICE_1 image
  (q=4, 256 x 256 tiles; 4096 x 4096 with --quick), each cutout opening
  the URL afresh, and the same through one open file;
- a full read of a 4096 x 4096 float32 image (64 MiB), beside curl
  fetching the same URL to /dev/null (``limit curl``, the transfer alone);
- one DataLoader epoch (batch 64, 2 workers) over 1,000 remote 64 x 64
  float32 files (200 with --quick).

Rivals: astropy 8 through fsspec (``fits.open(url, use_fsspec=True)``,
then ``.section`` for cutouts; fsspec's HTTP file reads ahead in blocks
of its default size), astropy's own download (``fits.getdata(url,
cache=False)``) for the full read, and the PyPI torchfits 1.3.1 where it
is installed (.venv-bench) and reads URLs. Each case's notes give our
requests and bytes per call (``torchfits_ops.remote_stats()``). After
the warm-up run a URL is known to the metadata cache (docs/remote.md),
so a cutout opening it afresh makes one conditional request, its tiles;
the first open of a URL makes one more.
No target is set: these cases are measured, not yet judged.
"""
import os
import subprocess
import sys

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

import harness
import torchfits_ops as tf
import torchfits_ops.data as tfd

sys.path.insert(0, os.path.join(os.path.dirname(harness.HERE), "tests"))
import servers  # noqa: E402
from fitsgen import write_astropy  # noqa: E402

try:
    import torchfits
except ImportError:  # only .venv-bench has it
    torchfits = None

GROUP = "remote"
ONE_WAY = 0.010


def have_fsspec():
    try:
        import aiohttp  # noqa: F401
        import fsspec  # noqa: F401
        return True
    except ImportError:
        return False


def to_tensor(a):
    a = np.asarray(a)
    return torch.from_numpy(np.ascontiguousarray(a.astype(a.dtype.newbyteorder("="))))


def sky(shape, seed):
    rng = np.random.default_rng(seed)
    y, x = np.indices(shape, dtype=np.float32)
    return (1000 + 50 * np.sin(x / 200) + 30 * np.cos(y / 150)
            + rng.normal(0, 20, shape)).astype(np.float32)


def per_call(fn, calls=1):
    """(requests, bytes) per call of fn, from remote_stats."""
    tf.remote_stats(reset=True)
    fn()
    s = tf.remote_stats()
    return s["requests"] / calls, s["bytes"] / calls


def stats_note(fn, calls, what):
    n, b = per_call(fn, calls)
    return f"torchfits_ops{what}: {n:.1f} requests and {b / 1024:.1f} KiB per call"


class AstropyUrlDataset(Dataset):
    def __init__(self, urls):
        self.urls = urls

    def __len__(self):
        return len(self.urls)

    def __getitem__(self, i):
        from astropy.io import fits
        with fits.open(self.urls[i], use_fsspec=True) as h:
            return to_tensor(h[0].data)


def epoch(loader):
    return torch.cat(list(loader))


def run(workdir, quick):
    os.makedirs(workdir, exist_ok=True)
    root = os.path.join(workdir, "served")
    os.makedirs(root, exist_ok=True)
    nginx = servers.Nginx(root, os.path.join(workdir, "nginx"))
    proxy, url = servers.start_proxy_process(nginx.port, ONE_WAY)
    fsspec_ok = have_fsspec()
    try:
        yield from _cases(root, url, quick, fsspec_ok)
    finally:
        servers.stop(proxy)
        nginx.stop()


def _cases(root, url, quick, fsspec_ok):
    from astropy.io import fits
    import fitsio

    latency = f"through a proxy adding {ONE_WAY * 1e3:.0f} ms each way to nginx on loopback"
    missing = [] if fsspec_ok else ["astropy fsspec not run: fsspec or aiohttp is not installed"]

    # ---- cutouts of a RICE image ----
    n = 4096 if quick else 8192
    path = os.path.join(root, "rice.fits")
    if os.path.exists(path):
        os.remove(path)
    with fitsio.FITS(path, "rw") as f:
        f.write(sky((n, n), 1), compress="RICE", tile_dims=[256, 256], qlevel=4.0,
                qmethod="SUBTRACTIVE_DITHER_1")
    rice = f"{url}/rice.fits"
    rng = np.random.default_rng(1)
    corners = [(int(y), int(x)) for y, x in rng.integers(0, n - 64, (100, 2))]

    def ours_fresh():
        return [tf.read_cutout(rice, 1, [y, x], [64, 64]) for y, x in corners]

    def ours_open():
        with tf.open(rice) as f:
            h = f[1]
            return [h[y:y + 64, x:x + 64] for y, x in corners]

    def astropy_fresh():
        out = []
        for y, x in corners:
            with fits.open(rice, use_fsspec=True) as h:
                out.append(to_tensor(h[1].section[y:y + 64, x:x + 64]))
        return out

    def astropy_open():
        with fits.open(rice, use_fsspec=True) as h:
            s = h[1].section
            return [to_tensor(s[y:y + 64, x:x + 64]) for y, x in corners]

    def torchfits_fresh():
        return [torchfits.read_subset(rice, 1, x, y, x + 64, y + 64) for y, x in corners]

    def one_request_each():
        """The bound of a fresh open per cutout: one round trip each (a
        ranged GET of 40 KiB on a kept-alive connection, no decoding)."""
        import http.client
        import urllib.parse
        u = urllib.parse.urlsplit(rice)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        try:
            for _ in corners:
                conn.request("GET", u.path, headers={"Range": "bytes=0-40959"})
                r = conn.getresponse()
                r.read()
                assert r.status == 206, r.status
        finally:
            conn.close()

    for fresh, c in ((True, {"torchfits_ops": ours_fresh, "astropy fsspec": astropy_fresh,
                             "torchfits": torchfits_fresh,
                             "limit (one request per cutout)": one_request_each}),
                     (False, {"torchfits_ops": ours_open, "astropy fsspec": astropy_open})):
        if not fsspec_ok:
            c.pop("astropy fsspec")
        if torchfits is None:
            c.pop("torchfits", None)
        notes = [latency, stats_note(c["torchfits_ops"], len(corners), " per cutout")] + missing
        yield harness.run_case(
            GROUP, f"100 random 64x64 cutouts, {n}x{n} float32 RICE_1 256x256 tiles, "
                   + ("each opening the URL" if fresh else "one open file"),
            c, unit="s/100 cutouts", repeat=3, warmup=1, notes=notes,
            target=0.25 if fresh else None)
    os.remove(path)

    # ---- a full read of 64 MiB ----
    path = write_astropy(os.path.join(root, "full.fits"), sky((4096, 4096), 2))
    full = f"{url}/full.fits"

    def curl():
        subprocess.run(["curl", "-sS", "-o", os.devnull, full], check=True)

    c = {"torchfits_ops": lambda: tf.read(full),
         "astropy": lambda: to_tensor(fits.getdata(full, cache=False)),
         "astropy fsspec": lambda: to_tensor(fits.getdata(full, use_fsspec=True)),
         "torchfits": lambda: torchfits.read(full),
         "limit curl": curl}
    if not fsspec_ok:
        c.pop("astropy fsspec")
    if torchfits is None:
        c.pop("torchfits")
    notes = [latency, stats_note(c["torchfits_ops"], 1, "")] + missing
    yield harness.run_case(GROUP, "4096x4096 float32 (64 MiB), full read", c, repeat=3 if quick else 5,
                           warmup=1, notes=notes)
    os.remove(path)

    # ---- a DataLoader epoch over small remote files ----
    count = 200 if quick else 1000
    small = os.path.join(root, "small")
    os.makedirs(small, exist_ok=True)
    rng = np.random.default_rng(3)
    urls = []
    for i in range(count):
        write_astropy(os.path.join(small, f"s{i:05d}.fits"),
                      rng.standard_normal((64, 64)).astype(">f4"))
        urls.append(f"{url}/small/s{i:05d}.fits")

    def loader(ds):
        return DataLoader(ds, batch_size=64, num_workers=2, shuffle=False, timeout=600)

    c = {"torchfits_ops": lambda: epoch(loader(tfd.FitsDataset(urls))),
         "astropy fsspec": lambda: epoch(loader(AstropyUrlDataset(urls)))}
    if torchfits is not None:
        c["torchfits"] = lambda: epoch(torchfits.data.make_loader(
            torchfits.data.FitsImageDataset(urls), batch_size=64, num_workers=2, shuffle=False,
            timeout=600))
    if not fsspec_ok:
        c.pop("astropy fsspec")
    notes = [latency, stats_note(lambda: tf.read(urls[0]), 1, " per file (one read)")] + missing
    row = harness.run_case(GROUP, f"DataLoader epoch, {count} remote 64x64 float32 files, "
                                  "batch 64, 2 workers", c, unit="s/epoch", repeat=3, warmup=1,
                           notes=notes)
    row["notes"].append("files/s: " + ", ".join(f"{k} {count / v:,.0f}"
                                                for k, v in row["times"].items()))
    yield row
