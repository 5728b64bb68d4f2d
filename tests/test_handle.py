"""torch.classes.torchfits.File and FitsFile: a file kept open across reads,
its image reads copied from a mapping of the file. Values are compared with
astropy and with the one-shot ops (which pread); a file truncated while a
handle has it mapped must give FitsError, never SIGBUS."""
import os
import pickle
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from astropy.io import fits

import torchfits_ops as tf
from fitsgen import (BITPIX_DTYPES, gzip_file, random_array, run_threads, write_astropy,
                     write_multi_extension)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
File = torch.classes.torchfits.File


def regions(shape, n, seed):
    rnd = random.Random(seed)
    for _ in range(n):
        start = [rnd.randrange(s) for s in shape]
        count = [rnd.randint(1, s - a) for s, a in zip(shape, start)]
        step = [rnd.randint(1, 3) for _ in shape]
        count = [max(1, (c + st - 1) // st) for c, st in zip(count, step)]
        yield start, count, step


@pytest.mark.parametrize("bitpix", sorted(BITPIX_DTYPES))
def test_cutouts_match_astropy_and_pread(tmp_path, bitpix):
    data = random_array((67, 45), bitpix, seed=bitpix)
    path = write_astropy(tmp_path / "img.fits", data)
    f = File(path)
    for start, count, step in regions(data.shape, 40, bitpix):
        got = f.read_cutout(0, start, count, step)
        want = data[tuple(slice(a, a + c * s, s) for a, c, s in zip(start, count, step))]
        np.testing.assert_array_equal(got.numpy(), want.astype(want.dtype.newbyteorder("=")))
        assert torch.equal(got, tf.read_cutout(path, 0, start, count, step))
    assert torch.equal(f.read(0), tf.read(path))
    f.close()


@pytest.mark.parametrize("bitpix", sorted(BITPIX_DTYPES))
def test_many_cutouts_in_one_call(tmp_path, bitpix):
    """ImageHDU.cutouts (File.read_cutouts): [N, *shape], region i equal to
    slicing and to astropy; starts as a list or a tensor; none gives [0,
    *shape]; a region outside the image or a start of the wrong length is
    refused."""
    data = random_array((67, 45), bitpix, seed=bitpix + 1)
    path = write_astropy(tmp_path / "img.fits", data)
    rnd = random.Random(bitpix)
    starts = [[rnd.randrange(67 - 8 + 1), rnd.randrange(45 - 5 + 1)] for _ in range(25)]
    with tf.open(path) as f:
        h = f[0]
        got = h.cutouts(starts, [8, 5])
        assert tuple(got.shape) == (25, 8, 5) and got.dtype == h.dtype
        for g, (y, x) in zip(got, starts):
            want = data[y:y + 8, x:x + 5]
            np.testing.assert_array_equal(g.numpy(), want.astype(want.dtype.newbyteorder("=")))
            np.testing.assert_array_equal(g.numpy(), h[y:y + 8, x:x + 5].numpy())
        np.testing.assert_array_equal(h.cutouts(torch.tensor(starts), (8, 5)).numpy(), got.numpy())
        none = h.cutouts([], [8, 5])
        assert tuple(none.shape) == (0, 8, 5) and none.dtype == h.dtype
        with pytest.raises(IndexError, match="region start 60, count 8"):
            h.cutouts([[0, 0], [60, 0]], [8, 5])
        with pytest.raises(ValueError, match="has 1 axes"):
            h.cutouts([[0]], [8, 5])
        with pytest.raises(ValueError, match=r"starts must be \[N, 2\]"):
            h.cutouts(torch.zeros(3, 3, dtype=torch.long), [8, 5])
        # after an error the handle still reads
        np.testing.assert_array_equal(h.cutouts(starts[:2], [8, 5]).numpy(), got[:2].numpy())
    with pytest.raises(ValueError, match="not a multiple of the 2 axes"):
        File(path).read_cutouts(0, [1, 2, 3], [8, 5])


def test_many_cutouts_of_a_compressed_image(tmp_path):
    """cutouts on a tile-compressed HDU: the tiles each region touches, as
    astropy decodes them."""
    rng = np.random.default_rng(5)
    data = rng.integers(-3000, 3000, (90, 70)).astype(np.int16)
    path = tmp_path / "c.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, compression_type="RICE_1",
                                                       tile_shape=(16, 16))]).writeto(path)
    starts = [[0, 0], [74, 54], [13, 29], [40, 3]]
    with tf.open(path) as f:
        got = f[1].cutouts(starts, [16, 16])
    assert got.dtype == torch.int16 and tuple(got.shape) == (4, 16, 16)
    for g, (y, x) in zip(got, starts):
        np.testing.assert_array_equal(g.numpy(), data[y:y + 16, x:x + 16])


def test_scaling_and_blank(tmp_path):
    data = np.arange(-600, 600, dtype=np.int16).reshape(30, 40)
    hdr = fits.Header([("BSCALE", 0.5), ("BZERO", 7.0), ("BLANK", 5)])
    path = tmp_path / "s.fits"
    hdu = fits.PrimaryHDU(data, header=hdr)
    hdu.header["BSCALE"], hdu.header["BZERO"], hdu.header["BLANK"] = 0.5, 7.0, 5
    hdu.writeto(path, output_verify="silentfix")
    with fits.open(path, do_not_scale_image_data=True) as h:
        assert h[0].header["BSCALE"] == 0.5 and (h[0].data == 5).any()
    f = File(str(path))
    for start, count, step in regions((30, 40), 30, 1):
        for raw in (False, True):
            got = f.read_cutout(0, start, count, step, raw)
            want = tf.read_cutout(path, 0, start, count, step, raw=raw)
            assert got.dtype == want.dtype
            assert torch.equal(torch.nan_to_num(got, nan=-1e9), torch.nan_to_num(want, nan=-1e9))
    assert torch.isnan(f.read_cutout(0, [0, 0], [30, 40])).any()


def test_fitsfile_slicing_and_extensions(tmp_path):
    path = write_multi_extension(tmp_path / "mef.fits")
    with tf.open(path) as f:
        for hdu in f:
            if hdu.kind != "image" or not hdu.info.shape:
                continue
            want = fits.getdata(path, hdu.index)
            np.testing.assert_array_equal(hdu[1:5, ::2].numpy(), want[1:5, ::2])
            np.testing.assert_array_equal(hdu.read().numpy(), want)
        # a table read on the same FitsFile is unaffected
        assert len(f) == len(fits.open(path))
    with pytest.raises(ValueError, match="closed"):
        f[1][0:2]


def test_errors_leave_the_handle_usable(tmp_path):
    data = random_array((20, 30), 16, seed=2)
    path = write_astropy(tmp_path / "e.fits", data)
    f = File(path)
    with pytest.raises(IndexError, match="e.fits"):
        f.read_cutout(0, [15, 0], [10, 5])
    with pytest.raises(IndexError, match="HDU 3 does not exist"):
        f.read(3)
    np.testing.assert_array_equal(f.read_cutout(0, [1, 2], [3, 4]).numpy(), data[1:4, 2:6])
    f.close()
    assert f.closed()
    with pytest.raises(ValueError, match="e.fits: the file is closed"):
        f.read(0)
    with pytest.raises(FileNotFoundError, match="nope.fits"):
        tf.open(tmp_path / "nope.fits")


def test_gzip_file_is_read_without_mapping(tmp_path):
    data = random_array((40, 50), -32, seed=3)
    path = gzip_file(write_astropy(tmp_path / "g.fits", data), tmp_path / "g.fits.gz")
    f = File(path)
    np.testing.assert_array_equal(f.read_cutout(0, [5, 6], [7, 8]).numpy(), data[5:12, 6:14])


def test_threads_share_one_file(tmp_path):
    data = random_array((512, 300), -32, seed=4)
    path = write_astropy(tmp_path / "t.fits", data)
    f = tf.open(path)
    hdu = f[0]

    def work(seed):
        for start, count, step in regions(data.shape, 150, seed):
            key = tuple(slice(a, a + c * s, s) for a, c, s in zip(start, count, step))
            assert np.array_equal(hdu[key].numpy(), data[key]), key

    assert run_threads(work, 4) == []
    f.close()


class Cutouts(torch.utils.data.Dataset):
    def __init__(self, f, corners):
        self.f, self.corners = f, corners

    def __len__(self):
        return len(self.corners)

    def __getitem__(self, i):
        y, x = self.corners[i]
        return self.f[0][y:y + 16, x:x + 16]


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_workers(tmp_path, context):
    data = random_array((256, 256), 16, seed=5)
    path = write_astropy(tmp_path / "d.fits", data)
    f = tf.open(path)
    f[0][0:4, 0:4]  # the parent's handle is open (and mapped) before the fork
    rnd = random.Random(6)
    corners = [(rnd.randrange(240), rnd.randrange(240)) for _ in range(64)]
    loader = torch.utils.data.DataLoader(Cutouts(f, corners), batch_size=8, num_workers=2,
                                         multiprocessing_context=context)
    got = torch.cat(list(loader))
    want = np.stack([data[y:y + 16, x:x + 16] for y, x in corners])
    np.testing.assert_array_equal(got.numpy(), want)
    np.testing.assert_array_equal(f[0][3:9, 1:2].numpy(), data[3:9, 1:2])  # parent still reads


def test_pickle_and_torchscript(tmp_path):
    data = random_array((32, 32), 32, seed=7)
    path = write_astropy(tmp_path / "p.fits", data)
    f = tf.open(path)
    f[0][0:1, 0:1]
    g = pickle.loads(pickle.dumps(f))
    np.testing.assert_array_equal(g[0][2:5, 3:9].numpy(), data[2:5, 3:9])

    @torch.jit.script
    def corner(h: File, n: int) -> torch.Tensor:
        return h.read_cutout(0, [0, 0], [n, n], None, False)

    np.testing.assert_array_equal(corner(File(path), 4).numpy(), data[:4, :4])


TRUNCATE = textwrap.dedent("""
    import faulthandler, os, sys
    sys.path.insert(0, sys.argv[1])
    import numpy as np, torch
    import torchfits_ops as tf
    path, order = sys.argv[2], sys.argv[3]
    if order == "before":
        faulthandler.enable()  # a SIGBUS handler of someone else's, installed first
    hdu = tf.open(path)[0]
    n = 2000
    first = hdu[n - 64:, n - 64:]  # mapped
    if order == "after":
        faulthandler.enable()  # replaces ours: the next read must put it back
    os.truncate(path, 2880 * 40)
    try:
        hdu[n - 64:, n - 64:]
    except tf.FitsError as e:
        print("FitsError:", e)
    else:
        print("no error")
    try:
        hdu[:4, :4]
    except tf.FitsError as e:
        print("then:", e)
    print("alive")
""")


@pytest.mark.parametrize("order", ["none", "before", "after"])
def test_file_truncated_while_mapped(tmp_path, order):
    """Another process truncates the file under a mapped handle: the read
    fails with FitsError naming the file; the process does not die of
    SIGBUS. Run in a subprocess so that a crash fails the test."""
    path = tmp_path / "shrinks.fits"
    fits.PrimaryHDU(np.ones((2000, 2000), dtype=">f4")).writeto(path)
    proc = subprocess.run([sys.executable, "-c", TRUNCATE, ROOT, str(path), order],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"FitsError: {path}: HDU 0: the file was truncated while it was read")
    assert lines[1].startswith(f"then: {path}") and "truncated" in lines[1]
    assert lines[-1] == "alive"


def mappings_of(path):
    with open("/proc/self/maps") as fh:
        return sum(1 for line in fh if line.rstrip().endswith(os.path.realpath(path)))


def test_mappings_are_shared_and_the_last_8_kept(tmp_path):
    """A file opened again reuses the mapping of the last handle (its page
    tables filled); at most 8 mappings outlive their handles; a file that
    changed size gets a mapping of its new size."""
    data = random_array((300, 200), -32, seed=9)
    path = write_astropy(tmp_path / "m.fits", data)
    for _ in range(20):
        f = File(path)
        np.testing.assert_array_equal(f.read_cutout(0, [5, 6], [7, 8]).numpy(), data[5:12, 6:14])
        f.close()
    assert mappings_of(path) == 1
    others = [write_astropy(tmp_path / f"o{i}.fits", data) for i in range(12)]
    for p in others:
        File(p).read_cutout(0, [0, 0], [2, 2])
    assert sum(mappings_of(p) for p in others + [path]) <= 8
    held = [File(p) for p in others]  # more files held open than kept: each maps its own
    for h in held:
        h.read_cutout(0, [0, 0], [2, 2])
    assert all(mappings_of(p) == 1 for p in others)
    for h in held:
        h.close()
    bigger = random_array((310, 200), -32, seed=10)
    write_astropy(path, bigger)  # rewritten in place: another size
    f = File(path)
    np.testing.assert_array_equal(f.read_cutout(0, [303, 0], [7, 5]).numpy(), bigger[303:310, :5])


def test_many_fitsfiles_keep_at_most_64_descriptors(tmp_path):
    """One FitsFile per file of a survey: past 64 the oldest handles are
    let go and opened again on their next read, so descriptors stay
    bounded while every read stays right."""
    import torchfits_ops as tfo
    arrays = [random_array((20, 30), 16, seed=100 + i) for i in range(150)]
    paths = [write_astropy(tmp_path / f"s{i}.fits", a) for i, a in enumerate(arrays)]
    fds = len(os.listdir("/proc/self/fd"))
    files = [tf.open(p) for p in paths]
    for f, a in zip(files, arrays):
        np.testing.assert_array_equal(f[0][2:5, 3:7].numpy(), a[2:5, 3:7])
    assert len(os.listdir("/proc/self/fd")) - fds <= tfo._KEPT_OPEN
    for f, a in zip(files[:10], arrays):  # let go earlier: opened again
        np.testing.assert_array_equal(f[0][:, 1].numpy(), a[:, 1])
    assert len(os.listdir("/proc/self/fd")) - fds <= tfo._KEPT_OPEN
    for f in files:
        f.close()
    assert len(os.listdir("/proc/self/fd")) == fds
