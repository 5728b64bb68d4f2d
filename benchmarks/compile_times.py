"""How long torch.compile takes around torchfits reads, and when it traces
again. Each row is one call of a compiled function that reads an image
and normalises it; the times are wall-clock, eager is the same function
uncompiled.

    ./run.sh python benchmarks/compile_times.py
"""
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from astropy.io import fits  # noqa: E402

import torchfits_ops  # noqa: E402,F401


def f(path: str) -> torch.Tensor:
    x = torch.ops.torchfits.read(path, 0, False).to(torch.float32)
    return (x - x.mean()) / x.std()


class Backend:
    def __init__(self):
        self.graphs = 0

    def __call__(self, gm, inputs):
        self.graphs += 1
        from torch._inductor.compile_fx import compile_fx
        return compile_fx(gm, inputs)


def main():
    d = tempfile.mkdtemp()
    rng = np.random.default_rng(0)
    files = {
        "a.fits": rng.normal(0, 1, (1024, 1024)).astype(np.float32),
        "b.fits": rng.normal(0, 1, (1024, 1024)).astype(np.float32),
        "c.fits": rng.normal(0, 1, (512, 2048)).astype(np.float32),
        "d.fits": rng.integers(0, 60000, (1024, 1024)).astype(np.uint16),
    }
    for name, data in files.items():
        fits.writeto(os.path.join(d, name), data)
    backend = Backend()
    cf = torch.compile(f, fullgraph=True, backend=backend)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs\n")
    print("| call | graphs traced so far | compiled | eager |")
    print("|---|---|---|---|")
    for label, name in [("first call, a.fits 1024x1024 float32", "a.fits"),
                        ("second call, same path", "a.fits"),
                        ("another file, same shape and dtype", "b.fits"),
                        ("another shape (512x2048)", "c.fits"),
                        ("another dtype (uint16)", "d.fits"),
                        ("a.fits again", "a.fits")]:
        p = os.path.join(d, name)
        t0 = time.perf_counter()
        got = cf(p)
        t1 = time.perf_counter()
        want = f(p)
        t2 = time.perf_counter()
        torch.testing.assert_close(got, want)
        print(f"| {label} | {backend.graphs} | {(t1 - t0) * 1e3:.1f} ms | {(t2 - t1) * 1e3:.1f} ms |")


if __name__ == "__main__":
    main()
