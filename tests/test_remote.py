"""Remote reads over HTTP(S) and S3, against real servers on loopback
(tests/servers.py): nginx, SeaweedFS S3 and a fault server.

Every remote read is compared with the local read of the same file, which
astropy or fitsio wrote (and, for images, with astropy's values);
remote_stats() bounds how many requests and bytes a read took; each
misbehaving server gives its documented exception type and message.
"""
import os
import socket
import threading
import time

import numpy as np
import pytest
import torch
from astropy.io import fits
from torch.utils.data import DataLoader

import torchfits_ops as tf
from fitsgen import (gzip_file, mixed_table_arrays, random_array, write_astropy, write_fitsio,
                     write_multi_extension, write_table_astropy, write_table_fitsio)
from servers import (S3_KEY, S3_SECRET, LatencyProxy, http_get, faults, nginx,  # noqa: F401
                     seaweed, served_dir, tls_faults)
from torchfits_ops.data import FitsCutoutDataset, FitsDataset

ops = torch.ops.torchfits
BITPIXES = (8, 16, 32, 64, -32, -64)
BIG = 4096          # the 4096x4096 float32 image (64 MiB)
# Most bytes a 64x64 cutout of it may fetch: the first request (64 KiB:
# the primary header and what follows), then its 64 rows as one range
# (they lie 16 KiB apart, so in at most 3 single-range requests the span
# of the rows, 63 * 16 KiB + 256 bytes, is what must come).
CUTOUT_BYTES = 64 * 1024 + 63 * BIG * 4 + 64 * 4
AWS_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
            "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE")


def sky(shape, seed):
    rng = np.random.default_rng(seed)
    y, x = np.indices(shape, dtype=np.float32)
    return (1000 + 50 * np.sin(x / 200) + 30 * np.cos(y / 150)
            + rng.normal(0, 20, shape)).astype(np.float32)


@pytest.fixture(scope="session")
def files(served_dir):
    """name -> local path of every file the servers serve."""
    d = served_dir
    out = {}
    for b in BITPIXES:
        out[f"astropy_{b}.fits"] = write_astropy(d / f"astropy_{b}.fits",
                                                 random_array((37, 53), b, seed=b))
        out[f"fitsio_{b}.fits"] = write_fitsio(d / f"fitsio_{b}.fits",
                                               random_array((29, 41), b, seed=100 + b))
    u16 = np.arange(40 * 30, dtype=np.uint16).reshape(40, 30) * 50
    out["astropy_u16.fits"] = write_astropy(d / "astropy_u16.fits", u16)
    out["cube.fits"] = write_astropy(d / "cube.fits", random_array((5, 60, 70), -32, seed=7))
    out["big.fits"] = write_astropy(d / "big.fits", sky((BIG, BIG), 1))
    out["rice_small.fits"] = write_fitsio(d / "rice_small.fits", sky((300, 500), 2),
                                          compress="RICE", tile_dims=[64, 64], qlevel=4.0,
                                          qmethod="SUBTRACTIVE_DITHER_1")
    out["rice_big.fits"] = write_fitsio(d / "rice_big.fits", sky((BIG, BIG), 3), compress="RICE",
                                        tile_dims=[256, 256], qlevel=4.0,
                                        qmethod="SUBTRACTIVE_DITHER_1")
    out["rice_i16.fits"] = write_fitsio(d / "rice_i16.fits",
                                        sky((256, 384), 4).astype(np.int16), compress="RICE")
    out["img.fits.gz"] = gzip_file(out["astropy_-32.fits"], d / "img.fits.gz")
    # gzip bytes under a plain name: the magic bytes decide, not the name
    out["gz_named_plain.fits"] = gzip_file(out["fitsio_16.fits"], d / "gz_named_plain.fits")
    out["mef.fits"] = write_multi_extension(d / "mef.fits")
    out["table_fitsio.fits"] = write_table_fitsio(d / "table_fitsio.fits",
                                                  mixed_table_arrays(5000, seed=3), extname="CAT")
    rng = np.random.default_rng(5)
    out["table_astropy.fits"] = write_table_astropy(d / "table_astropy.fits", [
        fits.Column(name="ID", format="K", array=np.arange(800)),
        fits.Column(name="MAG", format="E", array=rng.random(800).astype("f4")),
        fits.Column(name="NAME", format="8A", array=np.array([f"s{i}" for i in range(800)])),
        fits.Column(name="VEC", format="3D", array=rng.random((800, 3))),
    ], extname="SRC")
    for i in range(12):
        out[f"stamp_{i}.fits"] = write_astropy(d / f"stamp_{i}.fits",
                                               random_array((64, 64), -32, seed=200 + i))
    return out


@pytest.fixture(scope="session")
def s3_objects(seaweed, files):
    """name -> s3:// URL of every file, uploaded to SeaweedFS."""
    return {name: seaweed.put(path, f"data/{name}") for name, path in files.items()}


@pytest.fixture(autouse=True)
def _remote_settings(monkeypatch):
    """Each test starts with the default remote settings and no AWS
    variables from the outside, and leaves them so."""
    for v in AWS_VARS:
        monkeypatch.delenv(v, raising=False)
    saved = tf.remote_settings() if hasattr(tf, "remote_settings") else None
    yield
    if saved is not None:
        tf.set_remote(**saved)


@pytest.fixture
def s3_env(monkeypatch, seaweed):
    for k, v in seaweed.env().items():
        monkeypatch.setenv(k, v)
    return seaweed


def astropy_tensor(path, hdu=0):
    with fits.open(path) as h:
        a = h[hdu].data
        return torch.from_numpy(np.ascontiguousarray(a.astype(a.dtype.newbyteorder("="))))


def stats_of(fn):
    """(result, requests, bytes) of one call."""
    tf.remote_stats(reset=True)
    out = fn()
    s = tf.remote_stats()
    return out, s["requests"], s["bytes"]


def assert_same_table(a, b):
    assert list(a) == list(b)
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
        else:
            assert a[k] == b[k], k


# ---- the servers themselves (independent of torchfits) ----

def test_fault_server_behaves_as_documented(faults):
    data = os.urandom(20000)
    faults.add("probe.bin", data)
    assert http_get(f"{faults.url}/ok/probe.bin", (5, 9))[2] == data[5:10]
    assert http_get(f"{faults.url}/status/403/probe.bin")[0] == 403
    assert http_get(f"{faults.url}/norange/probe.bin", (5, 9))[2] == data
    st, h, body = http_get(f"{faults.url}/badrange/probe.bin", (5, 9))
    assert st == 206 and body == data[5:10] and h["Content-Range"] != "bytes 5-9/20000"
    assert [http_get(f"{faults.url}/flaky503/2/probe.bin")[0] for _ in range(3)] == [503, 503, 200]
    e1 = http_get(f"{faults.url}/changing/probe.bin")[1]["ETag"]
    e2 = http_get(f"{faults.url}/changing/probe.bin")[1]["ETag"]
    assert e1 != e2
    assert faults.counts["/flaky503/2/probe.bin"] == 3


def test_nginx_honours_ranges(nginx, files):
    st, h, body = http_get(f"{nginx.url}/big.fits", (2880, 2880 + 99))
    assert st == 206 and h["Content-Range"] == f"bytes 2880-2979/{os.path.getsize(files['big.fits'])}"
    with open(files["big.fits"], "rb") as f:
        f.seek(2880)
        assert body == f.read(100)
    assert nginx.log()[-1][:3] == ("GET", "/big.fits", 206)


def test_seaweed_refuses_unsigned_and_serves_signed(seaweed, s3_objects):
    import subprocess
    url = f"{seaweed.endpoint}/{seaweed.bucket}/data/astropy_8.fits"
    assert http_get(url)[0] == 403
    r = subprocess.run(["curl", "-s", "-o", os.devnull, "-w", "%{http_code}", "--aws-sigv4",
                        "aws:amz:us-east-1:s3", "--user", f"{S3_KEY}:{S3_SECRET}", url],
                       capture_output=True, text=True)
    assert r.stdout == "200"


# ---- HTTP through nginx ----

@pytest.mark.parametrize("writer", ["astropy", "fitsio"])
@pytest.mark.parametrize("bitpix", BITPIXES)
def test_http_image_every_bitpix(nginx, files, writer, bitpix):
    name = f"{writer}_{bitpix}.fits"
    got = tf.read(f"{nginx.url}/{name}")
    want = tf.read(files[name])
    assert got.dtype == want.dtype and got.shape == want.shape
    assert torch.equal(got, want)
    assert torch.equal(got, astropy_tensor(files[name]).to(got.dtype))


def test_http_scaled_unsigned(nginx, files):
    got = tf.read(f"{nginx.url}/astropy_u16.fits")
    assert torch.equal(got, tf.read(files["astropy_u16.fits"]))
    assert got.to(torch.int64).max().item() == (40 * 30 - 1) * 50


def test_http_cutout_header_info(nginx, files):
    url = f"{nginx.url}/cube.fits"
    got = tf.read_cutout(url, 0, [1, 10, 20], [3, 16, 24], [1, 2, 1])
    assert torch.equal(got, tf.read_cutout(files["cube.fits"], 0, [1, 10, 20], [3, 16, 24],
                                           [1, 2, 1]))
    assert got.shape == (3, 16, 24)
    mef = f"{nginx.url}/mef.fits"
    assert tf.num_hdus(mef) == 8
    assert tf.info(mef) == tf.info(files["mef.fits"])
    for hdu in (0, 2, ("SCI", 2), "CAT"):
        assert tf.read_header(mef, hdu) == tf.read_header(files["mef.fits"], hdu)
    assert torch.equal(tf.read(mef, ("ERR", 2)), tf.read(files["mef.fits"], ("ERR", 2)))
    # the raw operators take URLs too
    assert ops.num_hdus(mef) == 8
    assert torch.equal(ops.read(mef, 3, False), tf.read(files["mef.fits"], 3))
    assert torch.equal(ops.read_cutout(url, 0, [0, 1, 2], [1, 5, 6], None, False),
                       tf.read(files["cube.fits"])[0:1, 1:6, 2:8])
    assert ops.read_header_cards(mef, 1) == ops.read_header_cards(files["mef.fits"], 1)


def test_http_tables(nginx, files):
    url = f"{nginx.url}/table_fitsio.fits"
    loc = files["table_fitsio.fits"]
    assert_same_table(tf.read_table(url, "CAT"), tf.read_table(loc, "CAT"))
    part = tf.read_table(url, 1, columns=["RA", "flux", "NOBS"], rows=slice(1200, 3400))
    assert_same_table(part, tf.read_table(loc, 1, columns=["RA", "flux", "NOBS"],
                                          rows=slice(1200, 3400)))
    assert part["RA"].shape == (2200,)
    ref = fits.getdata(loc, 1)
    assert np.array_equal(part["RA"].numpy(), ref["RA"][1200:3400])
    url2 = f"{nginx.url}/table_astropy.fits"
    assert_same_table(tf.read_table(url2, "SRC"), tf.read_table(files["table_astropy.fits"], "SRC"))


def test_http_rice(nginx, files):
    for name in ("rice_small.fits", "rice_i16.fits"):
        url = f"{nginx.url}/{name}"
        got = tf.read(url, 1)
        assert torch.equal(got, tf.read(files[name], 1)), name
        assert torch.equal(got, astropy_tensor(files[name], 1).to(got.dtype)), name
        cut = tf.read_cutout(url, 1, [37, 101], [64, 90])
        assert torch.equal(cut, got[37:101, 101:191]), name


def test_http_gzip_is_downloaded_and_unpacked(nginx, files):
    got = tf.read(f"{nginx.url}/img.fits.gz")
    assert torch.equal(got, tf.read(files["astropy_-32.fits"]))
    got2 = tf.read(f"{nginx.url}/gz_named_plain.fits")
    assert torch.equal(got2, tf.read(files["fitsio_16.fits"]))
    assert tf.read_header(f"{nginx.url}/img.fits.gz")["NAXIS1"] == 53


def test_http_uncompressed_cutout_reads_little(nginx, files):
    url = f"{nginx.url}/big.fits"
    cut, n, nbytes = stats_of(lambda: tf.read_cutout(url, 0, [2000, 3000], [64, 64]))
    assert torch.equal(cut, tf.read_cutout(files["big.fits"], 0, [2000, 3000], [64, 64]))
    assert 1 <= n <= 3, n
    assert 64 * 64 * 4 <= nbytes <= CUTOUT_BYTES, nbytes


def test_http_rice_cutout_reads_few_tiles(nginx, files):
    url = f"{nginx.url}/rice_big.fits"
    size = os.path.getsize(files["rice_big.fits"])
    cut, n, nbytes = stats_of(lambda: tf.read_cutout(url, 1, [1000, 3000], [64, 64]))
    assert torch.equal(cut, tf.read_cutout(files["rice_big.fits"], 1, [1000, 3000], [64, 64]))
    assert 1 <= n <= 3, n
    assert nbytes < size / 8, (nbytes, size)


def test_http_header_of_big_file_reads_little(nginx, files):
    hdr, n, nbytes = stats_of(lambda: tf.read_header(f"{nginx.url}/big.fits"))
    assert hdr["NAXIS1"] == BIG and hdr["BITPIX"] == -32
    assert n >= 1 and nbytes < 200 * 1024, nbytes
    _, n, nbytes = stats_of(lambda: tf.info(f"{nginx.url}/rice_big.fits"))
    assert nbytes < 200 * 1024, nbytes


def test_http_open_caches_blocks(nginx, files):
    url = f"{nginx.url}/big.fits"
    ref = tf.open(files["big.fits"])[0]
    rng = np.random.default_rng(0)
    with tf.open(url) as f:
        hdu = f[0]
        assert hdu.shape == (BIG, BIG)
        for y, x in rng.integers(0, BIG - 64, (8, 2)):
            assert torch.equal(hdu[y:y + 64, x:x + 64], ref[y:y + 64, x:x + 64])
        # the same cutout again comes from the file's cache
        hdu[100:164, 200:264]
        _, n, _ = stats_of(lambda: hdu[100:164, 200:264])
        assert n == 0


def test_http_read_batch_and_dataloader(nginx, files):
    names = [f"stamp_{i}.fits" for i in range(12)]
    urls = [f"{nginx.url}/{n}" for n in names]
    locs = [files[n] for n in names]
    got, ok = ops.read_batch(urls, 0, None, None, None, False, False, 0)
    want, _ = ops.read_batch(locs, 0, None, None, None, False, False, 0)
    assert ok.all() and torch.equal(got, want) and got.shape == (12, 64, 64)
    cut, _ = ops.read_batch(urls, 0, [8, 4], [16, 32], None, False, False, 0)
    assert torch.equal(cut, want[:, 8:24, 4:36])
    loader = DataLoader(FitsDataset(urls), batch_size=4, num_workers=2, timeout=120,
                        multiprocessing_context="fork")
    batches = list(loader)
    assert len(batches) == 3
    assert torch.equal(torch.cat(batches), want)


def test_http_cutout_dataset(nginx, files):
    ds = FitsCutoutDataset(f"{nginx.url}/big.fits", 32, positions=[(10, 20), (4000, 4000)])
    ref = FitsCutoutDataset(files["big.fits"], 32, positions=[(10, 20), (4000, 4000)])
    assert all(torch.equal(ds[i], ref[i]) for i in range(2))
    ds2 = FitsCutoutDataset([f"{nginx.url}/rice_small.fits"], 32, positions=[(0, 100, 200)],
                            hdu=1)
    assert torch.equal(ds2[0], tf.read(files["rice_small.fits"], 1)[100:132, 200:232])


def test_http_missing_file(nginx):
    url = f"{nginx.url}/no/such.fits"
    with pytest.raises(FileNotFoundError, match="HTTP 404") as e:
        tf.read(url)
    assert str(e.value).startswith(url)


# ---- the fault server ----

@pytest.fixture(scope="module")
def fault_files(faults, files):
    with open(files["astropy_-32.fits"], "rb") as f:
        small = f.read()
    # 16 MiB: big enough that a read takes more than one request
    mid = np.random.default_rng(9).standard_normal((2048, 2048)).astype(">f4")
    path = files["astropy_-32.fits"] + ".mid.fits"
    fits.PrimaryHDU(mid).writeto(path, overwrite=True)
    with open(path, "rb") as f:
        big = f.read()
    faults.add("x.fits", small)
    faults.add("mid.fits", big)
    return {"x.fits": files["astropy_-32.fits"], "mid.fits": path}


def fault_url(faults, behaviour, name="x.fits"):
    return f"{faults.url}/{behaviour}/{name}"


@pytest.mark.parametrize("code, exc", [(403, PermissionError), (404, FileNotFoundError),
                                       (416, OSError), (400, OSError), (410, OSError)])
def test_fault_status(faults, fault_files, code, exc):
    url = fault_url(faults, f"status/{code}")
    for call in (tf.read, tf.read_header, tf.info, tf.open):
        with pytest.raises(exc, match=f"HTTP {code}") as e:
            call(url)
        assert str(e.value).startswith(url), str(e.value)


@pytest.mark.parametrize("code", [500, 502, 503, 504])
def test_fault_server_errors_are_retried(faults, fault_files, code):
    tf.set_remote(retries=2)
    url = fault_url(faults, f"status/{code}", f"x{code}.fits")
    faults.add(f"x{code}.fits", b"")
    path = f"/status/{code}/x{code}.fits"
    with pytest.raises(OSError, match=f"HTTP {code}") as e:
        tf.read(url)
    assert str(e.value).startswith(url)
    assert faults.counts[path] == 3  # the first try and 2 retries


def test_fault_503_twice_then_data(faults, fault_files):
    tf.set_remote(retries=3)
    url = fault_url(faults, "flaky503/2")
    t0 = time.monotonic()
    got = tf.read(url)
    took = time.monotonic() - t0
    assert torch.equal(got, tf.read(fault_files["x.fits"]))
    assert faults.counts["/flaky503/2/x.fits"] >= 3
    assert took >= 0.1 + 0.2 - 0.02  # backoff 0.1 s, then 0.2 s


def test_fault_503_more_than_retries(faults, fault_files):
    tf.set_remote(retries=1)
    url = fault_url(faults, "flaky503/5", "x.fits")
    with pytest.raises(OSError, match="HTTP 503"):
        tf.read(url)
    assert faults.counts["/flaky503/5/x.fits"] == 2


@pytest.mark.parametrize("behaviour", ["truncate", "close"])
def test_fault_body_cut_short(faults, fault_files, behaviour):
    tf.set_remote(retries=2)
    url = fault_url(faults, behaviour, "mid.fits")
    with pytest.raises(OSError) as e:
        tf.read(url)
    assert not isinstance(e.value, (FileNotFoundError, PermissionError, TimeoutError))
    assert str(e.value).startswith(url)
    assert faults.counts[f"/{behaviour}/mid.fits"] >= 2  # retried


def test_fault_stall_times_out_fast(faults, fault_files):
    tf.set_remote(read_timeout=1.0)
    url = fault_url(faults, "stall", "mid.fits")
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="timed out") as e:
        tf.read(url)
    took = time.monotonic() - t0
    assert str(e.value).startswith(url)
    assert took < 1.0 + 2.5, took


def test_fault_stall_without_retries(faults, fault_files):
    tf.set_remote(read_timeout=1.0, retries=0)
    url = fault_url(faults, "stall", "x.fits")
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="timed out"):
        tf.read_header(url)
    assert time.monotonic() - t0 < 3.0


def test_fault_no_range_on_first_request_downloads_whole(faults, fault_files):
    for name in ("x.fits", "mid.fits"):
        url = fault_url(faults, "norange", name)
        assert torch.equal(tf.read(url), tf.read(fault_files[name]))
        assert torch.equal(tf.read_cutout(url, 0, [3, 4], [5, 6]),
                           tf.read_cutout(fault_files[name], 0, [3, 4], [5, 6]))


def test_fault_no_range_gzip_downloads_whole_and_unpacks(faults, fault_files, files):
    """A .fits.gz the server sends whole: unpacked from those bytes."""
    with open(files["img.fits.gz"], "rb") as f:
        faults.add("img.fits.gz", f.read())
    url = fault_url(faults, "norange", "img.fits.gz")
    want = tf.read(files["astropy_-32.fits"])
    assert torch.equal(tf.read(url), want)
    with tf.open(url) as f:
        assert torch.equal(f[0][3:9, 4:10], want[3:9, 4:10])


def test_fault_no_range_beyond_unpack_limit(faults, fault_files):
    """A whole-file answer beyond the unpack limit fails as a .gz bomb does."""
    tf.set_unpack_max_mb(4)
    url = fault_url(faults, "norange", "mid.fits")
    with pytest.raises(RuntimeError, match=r"set_unpack_max_mb.*\[TF_ELIMIT\]") as e:
        tf.read(url)
    assert str(e.value).startswith(url)


def test_fault_range_ignored_later(faults, fault_files):
    url = fault_url(faults, "norange-later", "mid.fits")
    with pytest.raises(OSError, match="ignored the Range") as e:
        with tf.open(url) as f:
            f[0][2040:2048, 2040:2048]
            f[0][:]
    assert str(e.value).startswith(url)


def test_fault_wrong_content_range(faults, fault_files):
    url = fault_url(faults, "badrange", "mid.fits")
    with pytest.raises(OSError, match="Content-Range") as e:
        tf.read(url)
    assert str(e.value).startswith(url)


def test_fault_object_changed(faults, fault_files):
    url = fault_url(faults, "changing", "mid.fits")
    with pytest.raises(OSError, match="changed") as e:
        with tf.open(url) as f:
            f[0][2040:2048, 2040:2048]
            f[0][1000:1010, 0:10]
    assert str(e.value).startswith(url)


def test_fault_redirect_is_followed(faults, fault_files):
    assert torch.equal(tf.read(fault_url(faults, "redirect")), tf.read(fault_files["x.fits"]))


def test_connection_refused(fault_files):
    port = _closed_port()
    url = f"http://127.0.0.1:{port}/x.fits"
    t0 = time.monotonic()
    with pytest.raises(OSError) as e:
        tf.read(url)
    assert not isinstance(e.value, (FileNotFoundError, PermissionError))
    assert str(e.value).startswith(url)
    assert time.monotonic() - t0 < 5


def test_connect_timeout():
    """A listener whose backlog is full drops further SYNs: connect hangs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fill = []
    try:
        for _ in range(4):
            c = socket.socket()
            c.setblocking(False)
            try:
                c.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            fill.append(c)
        time.sleep(0.2)
        tf.set_remote(connect_timeout=1.0)
        url = f"http://127.0.0.1:{port}/x.fits"
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match="timed out") as e:
            tf.read(url)
        assert str(e.value).startswith(url)
        assert time.monotonic() - t0 < 1.0 + 2.0
    finally:
        for c in fill:
            c.close()
        server.close()


def test_credentials_and_query_never_in_messages(faults, fault_files):
    base = f"127.0.0.1:{faults.port}/status/404/x.fits"
    with pytest.raises(FileNotFoundError, match="HTTP 404") as e:
        tf.read(f"http://alice:hunter2secret@{base}")
    msg = str(e.value)
    assert "hunter2secret" not in msg and "alice" not in msg
    assert msg.startswith(f"http://{base}"), msg
    with pytest.raises(FileNotFoundError) as e:
        tf.read(f"http://{base}?X-Amz-Signature=TOPSECRETSIG&token=abc")
    msg = str(e.value)
    assert "TOPSECRETSIG" not in msg and "token=abc" not in msg
    assert msg.startswith(f"http://{base}?..."), msg


# ---- TLS ----

@pytest.fixture(scope="module")
def tls_files(tls_faults, fault_files):
    with open(fault_files["x.fits"], "rb") as f:
        tls_faults.add("x.fits", f.read())
    return fault_files


def test_tls_self_signed_refused_by_default(tls_faults, tls_files):
    url = f"{tls_faults.url}/ok/x.fits"
    with pytest.raises(OSError) as e:
        tf.read(url)
    msg = str(e.value)
    assert msg.startswith(url)
    assert any(w in msg.lower() for w in ("certificate", "ssl", "tls")), msg


def test_tls_without_verification(tls_faults, tls_files):
    tf.set_remote(verify_tls=False)
    assert torch.equal(tf.read(f"{tls_faults.url}/ok/x.fits"), tf.read(tls_files["x.fits"]))


def test_tls_redirect_to_http_refused(tls_faults, tls_files, faults):
    tf.set_remote(verify_tls=False)
    url = f"{tls_faults.url}/redirect-http/x.fits"
    before = faults.counts.get("/ok/x.fits", 0)
    with pytest.raises(OSError) as e:
        tf.read(url)
    assert str(e.value).startswith(url)
    assert faults.counts.get("/ok/x.fits", 0) == before  # the http server was never asked


# ---- settings ----

def test_set_remote_returns_previous_and_validates():
    cur = tf.remote_settings()
    assert set(cur) >= {"connect_timeout", "read_timeout", "retries", "cache_mb", "verify_tls",
                        "s3_addressing"}
    prev = tf.set_remote(read_timeout=7.5, retries=1)
    assert prev == cur
    now = tf.remote_settings()
    assert now["read_timeout"] == 7.5 and now["retries"] == 1
    assert now["connect_timeout"] == cur["connect_timeout"]
    with pytest.raises((ValueError, TypeError)):
        tf.set_remote(s3_addressing="sideways")
    with pytest.raises((ValueError, TypeError)):
        tf.set_remote(no_such_setting=1)


# ---- names that are files, never connections ----

def _closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Listener:
    """A listening socket that records whether anything connected."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connected = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
                self.connected += 1
                c.close()
            except OSError:
                pass

    def close(self):
        self.stop.set()
        self.thread.join()
        self.sock.close()


SPECIAL = ["ftp://127.0.0.1:{port}/x.fits", "root://127.0.0.1:{port}/x.fits",
           "ftps://127.0.0.1:{port}/x.fits", "shmem://h2", "mem://x.fits", "file://x.fits",
           "-", "stdin", "stdin.fits", "x.fits[1]", "x.fits(out.fits)", "x.fits[1](out2.fits)",
           "httpx://127.0.0.1:{port}/x.fits", "compress://x.fits", "x.fits.gz(out3.fits)"]


@pytest.mark.parametrize("pattern", SPECIAL)
def test_special_names_are_local_files(tmp_path, monkeypatch, pattern):
    listener = Listener()
    try:
        monkeypatch.chdir(tmp_path)
        name = pattern.format(port=listener.port)
        for call in (tf.read, tf.read_header, tf.info, tf.open,
                     lambda p: tf.read_table(p, 1)):
            with pytest.raises(FileNotFoundError):
                call(name)
        time.sleep(0.3)
        assert listener.connected == 0, name
        assert os.listdir(tmp_path) == [], name
    finally:
        listener.close()


# ---- S3 (SeaweedFS) ----

@pytest.mark.parametrize("addressing", ["path", "auto"])
def test_s3_signed_reads_path_style(s3_env, s3_objects, files, addressing):
    tf.set_remote(s3_addressing=addressing)
    for b in BITPIXES:
        for w in ("astropy", "fitsio"):
            name = f"{w}_{b}.fits"
            assert torch.equal(tf.read(s3_objects[name]), tf.read(files[name])), name
    assert tf.read_header(s3_objects["mef.fits"], "CAT") == tf.read_header(files["mef.fits"], "CAT")
    assert_same_table(tf.read_table(s3_objects["table_fitsio.fits"], 1, columns=["ID", "Z"],
                                    rows=slice(10, 400)),
                      tf.read_table(files["table_fitsio.fits"], 1, columns=["ID", "Z"],
                                    rows=slice(10, 400)))
    assert torch.equal(tf.read(s3_objects["img.fits.gz"]), tf.read(files["astropy_-32.fits"]))
    assert torch.equal(tf.read(s3_objects["rice_small.fits"], 1), tf.read(files["rice_small.fits"], 1))


@pytest.fixture
def s3_recorder(seaweed):
    """A proxy in front of SeaweedFS that records what clients send."""
    proxy = LatencyProxy(seaweed.port, one_way=0.0, record=True)
    yield proxy
    proxy.stop()


@pytest.mark.parametrize("addressing, host", [("virtual", "localhost"), ("path", "localhost"),
                                              ("auto", "localhost"), ("auto", "127.0.0.1")])
def test_s3_addressing_styles(monkeypatch, seaweed, s3_objects, files, s3_recorder, addressing,
                              host):
    """The request line and Host header show the style; "auto" is path
    style for a custom endpoint."""
    env = seaweed.env()
    env["AWS_ENDPOINT_URL"] = f"http://{host}:{s3_recorder.port}"
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    tf.set_remote(s3_addressing=addressing)
    assert torch.equal(tf.read(s3_objects["fitsio_-64.fits"]), tf.read(files["fitsio_-64.fits"]))
    assert torch.equal(tf.read_cutout(s3_objects["cube.fits"], 0, [2, 3, 4], [2, 20, 30]),
                       tf.read_cutout(files["cube.fits"], 0, [2, 3, 4], [2, 20, 30]))
    sent = b"".join(s3_recorder.sent)
    assert b"Authorization: AWS4-HMAC-SHA256" in sent
    if addressing == "virtual":
        assert f"Host: tfbucket.{host}:{s3_recorder.port}".encode() in sent
        assert b"GET /data/fitsio_-64.fits " in sent
    else:
        assert f"Host: {host}:{s3_recorder.port}".encode() in sent
        assert b"GET /tfbucket/data/fitsio_-64.fits " in sent


def test_s3_endpoint_url_s3_variable(monkeypatch, seaweed, s3_objects, files):
    env = seaweed.env()
    env["AWS_ENDPOINT_URL_S3"] = env.pop("AWS_ENDPOINT_URL")
    env["AWS_DEFAULT_REGION"] = env.pop("AWS_REGION")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert torch.equal(tf.read(s3_objects["astropy_16.fits"]), tf.read(files["astropy_16.fits"]))


def test_s3_cutouts_read_little(s3_env, s3_objects, files):
    cut, n, nbytes = stats_of(lambda: tf.read_cutout(s3_objects["big.fits"], 0, [100, 4000],
                                                     [64, 64]))
    assert torch.equal(cut, tf.read_cutout(files["big.fits"], 0, [100, 4000], [64, 64]))
    assert 1 <= n <= 3 and nbytes <= CUTOUT_BYTES, (n, nbytes)
    cut, n, nbytes = stats_of(lambda: tf.read_cutout(s3_objects["rice_big.fits"], 1, [3000, 17],
                                                     [64, 64]))
    assert torch.equal(cut, tf.read_cutout(files["rice_big.fits"], 1, [3000, 17], [64, 64]))
    assert 1 <= n <= 3 and nbytes < os.path.getsize(files["rice_big.fits"]) / 8, (n, nbytes)


def test_s3_dataloader(s3_env, s3_objects, files):
    names = [f"stamp_{i}.fits" for i in range(8)]
    loader = DataLoader(FitsDataset([s3_objects[n] for n in names]), batch_size=4, num_workers=2,
                        timeout=120, multiprocessing_context="fork")
    want = torch.stack([tf.read(files[n]) for n in names])
    assert torch.equal(torch.cat(list(loader)), want)


def test_s3_missing_key(s3_env, s3_objects):
    url = "s3://tfbucket/data/nothing-here.fits"
    with pytest.raises(FileNotFoundError, match="HTTP 404") as e:
        tf.read(url)
    assert str(e.value).startswith(url)


def test_s3_wrong_secret(monkeypatch, s3_env, s3_objects):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "WRONGSECRETxyz")
    url = s3_objects["astropy_8.fits"]
    with pytest.raises(PermissionError, match="HTTP 403") as e:
        tf.read(url)
    msg = str(e.value)
    assert msg.startswith(url)
    assert "WRONGSECRETxyz" not in msg and S3_SECRET not in msg


def test_s3_anonymous_refused_on_private_bucket(monkeypatch, seaweed, s3_objects):
    monkeypatch.setenv("AWS_ENDPOINT_URL", seaweed.endpoint)
    url = s3_objects["astropy_8.fits"]
    with pytest.raises(PermissionError, match="HTTP 403") as e:
        tf.read(url)
    assert str(e.value).startswith(url)


def test_s3_credentials_are_read_on_every_call(monkeypatch, s3_env, s3_objects, files):
    url = s3_objects["astropy_32.fits"]
    assert torch.equal(tf.read(url), tf.read(files["astropy_32.fits"]))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "nope")
    with pytest.raises(PermissionError):
        tf.read(url)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    assert torch.equal(tf.read(url), tf.read(files["astropy_32.fits"]))


# ---- what an open learnt, kept across opens (set_remote(meta_cache_mb=...)) ----

def rice_file(path, seed, shape=(1024, 1024)):
    """A RICE_1 image of 128 x 128 tiles in HDU 1: about 2 MiB, so a read
    of it needs more than the first 64 KiB."""
    return write_fitsio(path, sky(shape, seed), compress="RICE", tile_dims=[128, 128],
                        qlevel=4.0, qmethod="SUBTRACTIVE_DITHER_1")


def replace_file(dest, new, make):
    """A new version of `dest`: written by make(new), moved over dest, and
    dated 10 s after the old one (nginx's ETag is the time and the size,
    and a rewrite within the same second could keep both)."""
    old = os.stat(dest).st_mtime
    make(new)
    os.replace(new, dest)
    os.utime(dest, (old + 10, old + 10))


def test_http_second_open_of_rice_url_makes_one_request(nginx, served_dir):
    path = rice_file(served_dir / "meta_rice.fits", 11)
    url = f"{nginx.url}/meta_rice.fits"
    cut, n, _ = stats_of(lambda: tf.read_cutout(url, 1, [300, 500], [64, 64]))
    assert n == 2, n  # the first 64 KiB, then the tiles
    assert torch.equal(cut, tf.read_cutout(path, 1, [300, 500], [64, 64]))
    for start in ([10, 900], [700, 100], [900, 950]):
        cut, n, _ = stats_of(lambda: tf.read_cutout(url, 1, start, [64, 64]))
        assert n == 1, (start, n)  # the tiles only, conditional on the version
        assert torch.equal(cut, tf.read_cutout(path, 1, start, [64, 64])), start
    # a call that needs no data request confirms the version: one request,
    # answered 304 without a body
    hdr, n, nbytes = stats_of(lambda: tf.read_header(url, 1))
    assert (n, nbytes) == (1, 0)
    assert hdr == tf.read_header(path, 1)
    assert [s for m, u, s, *_ in nginx.log() if u == "/meta_rice.fits"][-1] == 304
    # a batch and a kept-open file use the cache too
    got, ok = ops.read_batch([url, url], 1, [64, 64], [32, 32], None, False, False, 0)
    assert ok.all() and torch.equal(got[1], tf.read_cutout(path, 1, [64, 64], [32, 32]))
    with tf.open(url) as f:
        assert torch.equal(f[1][5:9, 7:11], tf.read_cutout(path, 1, [5, 7], [4, 4]))
    # turned off: the open makes its own request again, and nothing is kept
    tf.set_remote(meta_cache_mb=0)
    _, n, _ = stats_of(lambda: tf.read_cutout(url, 1, [10, 900], [64, 64]))
    assert n == 2, n
    tf.set_remote(meta_cache_mb=16)
    _, n, _ = stats_of(lambda: tf.read_cutout(url, 1, [10, 900], [64, 64]))
    assert n == 2, n


def test_http_rewritten_between_opens_is_read_anew(nginx, served_dir, tmp_path):
    dest = served_dir / "meta_rewrite.fits"
    rice_file(dest, 12)
    url = f"{nginx.url}/meta_rewrite.fits"
    tf.read_cutout(url, 1, [0, 0], [64, 64])  # known now
    replace_file(dest, tmp_path / "v2.fits", lambda p: rice_file(p, 13))
    want = tf.read_cutout(str(dest), 1, [600, 600], [64, 64])
    cut, n, _ = stats_of(lambda: tf.read_cutout(url, 1, [600, 600], [64, 64]))
    assert torch.equal(cut, want)
    # the tiles asked for the old version (412), then a fresh open: the
    # first 64 KiB, the tiles
    assert n == 3, n
    assert 412 in [s for m, u, s, *_ in nginx.log() if u == "/meta_rewrite.fits"]
    # a header alone: its confirming request finds the new version, and
    # the call is redone
    replace_file(dest, tmp_path / "v3.fits", lambda p: rice_file(p, 14, shape=(512, 768)))
    hdr, n, _ = stats_of(lambda: tf.read_header(url, 1))
    assert hdr == tf.read_header(str(dest), 1) and hdr["NAXIS1"] == 768, hdr
    assert n == 2, n
    # a batch read redoes its file too
    replace_file(dest, tmp_path / "v4.fits", lambda p: rice_file(p, 15, shape=(512, 768)))
    got, ok = ops.read_batch([url], 1, [100, 200], [64, 64], None, False, False, 0)
    assert ok.all() and torch.equal(got[0], tf.read_cutout(str(dest), 1, [100, 200], [64, 64]))
    # and read_cutouts its group of cutouts
    replace_file(dest, tmp_path / "v5.fits", lambda p: rice_file(p, 16, shape=(512, 768)))
    items = torch.tensor([[0, 10, 20], [0, 300, 600]])
    got = ops.read_cutouts([url], [1], items, [32, 32], 0.0)
    local = tf.read(str(dest), 1)
    assert torch.equal(got[0], local[10:42, 20:52]) and torch.equal(got[1], local[300:332, 600:632])


def test_fault_changed_object_is_read_anew(faults, fault_files):
    """The fault server ignores If-Match: its answer's other ETag is the
    sign, and the call is redone on the new version."""
    url = fault_url(faults, "changing/again", "mid.fits")
    tf.read_header(url)  # the first version, known now
    cut = tf.read_cutout(url, 0, [0, 0], [4, 2048])
    with open(fault_files["mid.fits"], "rb") as f:
        data = f.read()
    new = data[:2880] + bytes(b ^ 0xFF for b in data[2880:5760]) + data[5760:]
    want = np.frombuffer(new[2880:2880 + 4 * 2048 * 4], ">f4").reshape(4, 2048).astype("f4")
    old = np.frombuffer(data[2880:2880 + 4 * 2048 * 4], ">f4").reshape(4, 2048).astype("f4")
    assert not np.array_equal(want, old)
    assert np.array_equal(cut.numpy(), want)


def test_s3_rewritten_object_is_read_anew(s3_env, seaweed, tmp_path):
    a = rice_file(tmp_path / "a.fits", 21)
    b = rice_file(tmp_path / "b.fits", 22)
    url = seaweed.put(a, "data/meta_rewrite.fits")
    assert torch.equal(tf.read_cutout(url, 1, [500, 500], [64, 64]),
                       tf.read_cutout(a, 1, [500, 500], [64, 64]))
    cut, n, _ = stats_of(lambda: tf.read_cutout(url, 1, [100, 100], [64, 64]))
    assert n == 1, n
    assert torch.equal(cut, tf.read_cutout(a, 1, [100, 100], [64, 64]))
    seaweed.put(b, "data/meta_rewrite.fits")
    cut, n, _ = stats_of(lambda: tf.read_cutout(url, 1, [500, 500], [64, 64]))
    assert torch.equal(cut, tf.read_cutout(b, 1, [500, 500], [64, 64]))
    assert n == 3, n


def test_http_batch_of_urls_is_fetched_at_once(nginx, files):
    """Through a proxy adding 100 ms each way, 12 files one after another
    take 12 round trips (2.4 s and more); on 16 threads about one."""
    proxy = LatencyProxy(nginx.port, one_way=0.1)
    try:
        urls = [f"{proxy.url}/stamp_{i}.fits" for i in range(12)]
        want = torch.stack([tf.read(files[f"stamp_{i}.fits"]) for i in range(12)])
        tf.remote_stats(reset=True)
        t0 = time.monotonic()
        got, ok = ops.read_batch(urls, 0, None, None, None, False, False, 1)
        fast = time.monotonic() - t0
        assert ok.all() and torch.equal(got, want)
        # one each, and the first file once more before: it gives the
        # batch's dtype and shape
        assert tf.remote_stats()["requests"] == 13
        tf.set_remote(batch_threads=1)
        t0 = time.monotonic()
        got, ok = ops.read_batch(urls, 0, None, None, None, False, False, 1)
        slow = time.monotonic() - t0
        assert ok.all() and torch.equal(got, want)
        assert slow >= 12 * 0.2, slow
        assert fast < slow / 3, (fast, slow)
    finally:
        proxy.stop()


def test_http_metadata_cache_keeps_the_most_recent_within_its_size(nginx, served_dir):
    """1 MiB holds 16 first blocks of 64 KiB: of 20 URLs opened in turn,
    the last 16 are known, the first 4 were dropped."""
    rice_file(served_dir / "meta_lru.fits", 17)
    urls = [f"{nginx.url}/meta_lru.fits?copy={i}" for i in range(20)]  # one key each
    tf.set_remote(meta_cache_mb=1)
    for u in urls:
        tf.read_cutout(u, 1, [900, 900], [8, 8])
    counts = []
    for u in (urls[0], urls[3], urls[4], urls[19]):
        _, n, _ = stats_of(lambda: tf.read_cutout(u, 1, [900, 900], [8, 8]))
        counts.append(n)
    # urls[0] and urls[3], opened afresh, push out urls[4] and urls[5]
    # before urls[4] is read
    assert counts == [2, 2, 2, 1], counts
