"""torch 2.x: fake kernels, torch.library.opcheck and torch.compile.

On torch without torch.library.register_fake (Debian's 1.13) the fake
kernels are not registered; the guard is tested there too."""
import numpy as np
import pytest
import torch
from astropy.io import fits
from astropy.table import Table

import torchfits_ops as tf
from torchfits_ops import _fake

HAS_FAKE = hasattr(torch.library, "register_fake")
HAS_OPCHECK = hasattr(torch.library, "opcheck")
needs_compile = pytest.mark.skipif(not HAS_FAKE, reason="torch.compile with custom-op fakes needs torch >= 2.4")

ops = torch.ops.torchfits

# Every operator that returns tensors.
TENSOR_OPS = ["read", "read.name", "read_cutout", "read_cutout.name", "_read_cfitsio", "read_into",
              "read_cutout_into", "read_batch", "read_batch_into", "read_cutouts", "read_columns",
              "split_rows"]


def test_fake_guard_follows_torch():
    """The fakes are registered exactly where torch can take them."""
    assert (_fake._register is not None) == (HAS_FAKE or hasattr(torch.library, "impl_abstract"))
    if not HAS_FAKE:
        return
    from torch._library.simple_registry import singleton
    for name in TENSOR_OPS:
        entry = singleton.find(f"torchfits::{name}")
        assert entry.fake_impl.kernel is not None, name


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("compile")
    rng = np.random.default_rng(3)
    img = rng.normal(10, 2, (40, 50)).astype(np.float32)
    u16 = rng.integers(0, 65535, (30, 20)).astype(np.uint16)
    hdus = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(img, name="SCI"),
                         fits.ImageHDU(u16, name="U16"),
                         fits.CompImageHDU(rng.integers(-500, 500, (64, 48)).astype(np.int32),
                                           compression_type="RICE_1", name="RICE")])
    hdus.writeto(d / "img.fits")
    other = rng.normal(0, 1, (40, 50)).astype(np.float32)
    fits.writeto(d / "other.fits", other)
    fits.writeto(d / "wide.fits", rng.normal(0, 1, (16, 70)).astype(np.float32))
    t = Table({"flux": rng.normal(0, 1, 100).astype(np.float32),
               "id": np.arange(100, dtype=np.int64),
               "vec": rng.normal(0, 1, (100, 3)).astype(np.float64),
               "name": np.array([f"src{i}" for i in range(100)])})
    t.write(d / "cat.fits")
    return {"img": str(d / "img.fits"), "other": str(d / "other.fits"),
            "wide": str(d / "wide.fits"), "cat": str(d / "cat.fits"), "dir": d,
            "data": img, "u16": u16, "other_data": other, "table": t}


def _opcheck_cases(f):
    img = f["img"]
    return [
        (ops.read.default, (img, 1, False)),
        (ops.read.default, (img, 2, False)),
        (ops.read.default, (img, 2, True)),
        (ops.read.default, (img, 3, False)),
        (ops.read.name, (img, "SCI", 0, False)),
        (ops.read_cutout.default, (img, 1, [3, 4], [10, 12], [1, 2], False)),
        (ops.read_cutout.default, (img, 3, [5, 5], [20, 30], None, False)),
        (ops.read_cutout.name, (img, "U16", 1, [0, 0], [5, 5], None, False)),
        (ops._read_cfitsio.default, (img, 1, [], [], None, False)),
        (ops._read_cfitsio.default, (img, 1, [1, 1], [4, 4], None, False)),
        (ops.read_into.default, (img, 1, torch.empty(40, 50), False)),
        (ops.read_cutout_into.default, (img, 1, [2, 2], torch.empty(5, 6), None, False)),
        (ops.read_batch.default, ([f["other"], f["other"]], 0, None, None, None, False, False, 0)),
        (ops.read_batch.default, ([img, img], 1, [0, 0], [8, 8], None, False, False, 1)),
        (ops.read_batch_into.default, ([img, img], 1, torch.empty(2, 40, 50), None, None, False, False, 0)),
        (ops.read_cutouts.default, ([img, f["other"], img], [1, 0, 3],
                                    torch.tensor([[0, 0, 0], [1, -2, 45], [-1, 0, 0], [2, 60, 1]]),
                                    [4, 6], 0.0, None, 0)),
        (ops.read_cutouts.default, ([img], [2], torch.tensor([[0, 3, 3]]), [5, 5], -1.0,
                                    torch.float64, 1)),
        (ops.read_columns.default, (f["cat"], 1, ["flux", "ID", "vec", "name"], 0, -1)),
        (ops.read_columns.default, (f["cat"], 1, ["vec"], 10, 20)),
        (ops.split_rows.default, (torch.arange(10.0), torch.tensor([0, 3, 3, 10]))),
    ]


@pytest.mark.skipif(not (HAS_OPCHECK and HAS_FAKE), reason="torch.library.opcheck needs torch >= 2.4")
def test_opcheck_every_tensor_op(files):
    """Schema, fake kernel, autograd registration and AOT dispatch, for
    each operator that returns tensors (read_table returns a dict, which
    torch.compile cannot trace: read_columns is its traceable form)."""
    seen = set()
    for op, args in _opcheck_cases(files):
        torch.library.opcheck(op, args)  # all of opcheck's test utilities
        seen.add(op._schema.name.split("::")[1] + ("" if op._overloadname == "default" else "." + op._overloadname))
    assert seen == set(TENSOR_OPS)


@pytest.mark.skipif(not HAS_FAKE, reason="needs torch >= 2.4")
def test_fake_matches_real(files):
    """The fake's shape and dtype are the real read's, for every case
    (uint16 included), under FakeTensorMode."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import ShapeEnv
    for op, args in _opcheck_cases(files):
        real = op(*args)
        # split_rows's sizes are in the data: its fake needs a shape
        # environment to make them symbols in
        dynamic = op is ops.split_rows.default
        with FakeTensorMode(shape_env=ShapeEnv() if dynamic else None) as mode:
            fargs = [mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args]
            fake = op(*fargs)
        if real is None:  # the _into operators fill their argument
            assert fake is None
            continue
        reals = real if isinstance(real, (list, tuple)) else [real]
        fakes = fake if isinstance(fake, (list, tuple)) else [fake]
        if dynamic:
            assert len(fakes) == len(reals) and all(x.dtype == r.dtype and x.dim() == 1
                                                    for r, x in zip(reals, fakes))
            continue
        assert [(tuple(r.shape), r.dtype) for r in reals] == [(tuple(x.shape), x.dtype) for x in fakes], op


def test_read_columns_matches_read_table(files):
    cols = ops.read_columns(files["cat"], 1, ["name", "flux", "VEC"], 5, 30)
    table = ops.read_table(files["cat"], 1, None, 5, 30)
    assert [c.dtype for c in cols] == [torch.uint8, torch.float32, torch.float64]
    assert torch.equal(cols[0], table["name"]) and cols[0].shape[0] == 30
    assert torch.equal(cols[1], table["flux"])
    np.testing.assert_array_equal(cols[2].numpy(), files["table"]["vec"][5:35])


def test_read_columns_refuses(files, tmp_path):
    with pytest.raises(ValueError, match="at least one column"):
        ops.read_columns(files["cat"], 1, [], 0, -1)
    with pytest.raises(ValueError, match="no column named 'nope'"):
        ops.read_columns(files["cat"], 1, ["nope"], 0, -1)
    vla = fits.BinTableHDU.from_columns([fits.Column(
        name="v", format="PJ()", array=np.array([np.arange(3), np.arange(1)], dtype=object))])
    fits.HDUList([fits.PrimaryHDU(), vla]).writeto(tmp_path / "vla.fits")
    with pytest.raises(ValueError, match="column v has variable-length rows"):
        ops.read_columns(str(tmp_path / "vla.fits"), 1, ["v"], 0, -1)


class Counter:
    """A torch.compile backend that counts the graphs compiled, then runs
    Inductor."""

    def __init__(self):
        self.graphs = 0

    def __call__(self, gm, example_inputs):
        self.graphs += 1
        from torch._inductor.compile_fx import compile_fx
        return compile_fx(gm, example_inputs)


@needs_compile
def test_compile_function_fullgraph(files):
    torch._dynamo.reset()

    def f(path: str):
        x = torch.ops.torchfits.read(path, 1, False)
        cut = torch.ops.torchfits.read_cutout(path, 3, [4, 8], [16, 16], None, False)
        return (x - x.mean()) / x.std(), cut.float().sum()

    backend = Counter()
    cf = torch.compile(f, fullgraph=True, backend=backend)
    got, want = cf(files["img"]), f(files["img"])
    torch.testing.assert_close(got[0], want[0])
    assert got[1].item() == want[1].item()
    cf(files["img"])
    assert backend.graphs == 1  # the same path reuses the graph


@needs_compile
def test_compile_module_with_table_and_wrappers(files):
    """An nn.Module whose forward reads an image (by EXTNAME, through the
    Python wrappers) and catalogue columns, then computes."""
    torch._dynamo.reset()

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 2, 3, padding=1)

        def forward(self, image: str, catalogue: str):
            x = tf.read(image, "SCI")
            u = tf.read_cutout(image, "U16", [0, 0], [8, 8]).to(torch.float32)
            flux, vec = torch.ops.torchfits.read_columns(catalogue, 1, ["flux", "vec"], 0, -1)
            y = self.conv(x[None, None])
            return y.mean() + flux.sum() + vec.sum() + u.mean()

    torch.manual_seed(0)
    m = Model()
    backend = Counter()
    cm = torch.compile(m, fullgraph=True, backend=backend)
    torch.testing.assert_close(cm(files["img"], files["cat"]), m(files["img"], files["cat"]))
    assert backend.graphs == 1


@needs_compile
def test_compile_unsigned_dtype(files):
    torch._dynamo.reset()
    cf = torch.compile(lambda p: torch.ops.torchfits.read(p, 2, False), fullgraph=True)
    out = cf(files["img"])
    assert out.dtype == torch.uint16
    np.testing.assert_array_equal(out.numpy(), files["u16"])


@needs_compile
def test_compile_recompiles_per_path_and_refuses_a_changed_file(files, tmp_path):
    """Another path traces again, even with the same shape; a file rewritten
    with another shape under a path already compiled raises instead of
    returning a tensor of the wrong shape."""
    torch._dynamo.reset()
    path = str(tmp_path / "changing.fits")
    fits.writeto(path, np.ones((6, 7), np.float32))
    backend = Counter()
    cf = torch.compile(lambda p: torch.ops.torchfits.read(p, 0, False) * 2, fullgraph=True, backend=backend)
    assert cf(path).shape == (6, 7)
    assert backend.graphs == 1
    out = cf(files["other"])
    np.testing.assert_array_equal(out.numpy(), files["other_data"] * 2)
    assert backend.graphs == 2
    out = cf(files["wide"])
    assert out.shape == (16, 70) and backend.graphs == 3
    fits.writeto(path, np.ones((7, 6), np.float32), overwrite=True)
    with pytest.raises(AssertionError, match="expected size 7==6"):
        cf(path)


@needs_compile
def test_export_module_with_a_fixed_path(files, tmp_path):
    """torch.export bakes the path into the program as a constant; the
    exported program reads the file when run, and survives save/load."""
    class Model(torch.nn.Module):
        def __init__(self, path: str):
            super().__init__()
            self.path = path

        def forward(self, w: torch.Tensor) -> torch.Tensor:
            return torch.ops.torchfits.read(self.path, 1, False) * w

    ep = torch.export.export(Model(files["img"]), (torch.tensor(2.0),))
    torch.export.save(ep, str(tmp_path / "m.pt2"))
    loaded = torch.export.load(str(tmp_path / "m.pt2"))
    out = loaded.module()(torch.tensor(3.0))
    np.testing.assert_allclose(out.numpy(), files["data"] * 3, rtol=1e-6)
