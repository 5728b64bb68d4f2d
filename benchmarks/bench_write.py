"""Writing against fitsio 1.4.2, astropy 8 and torchfits 1.3.1, in run.py's
format (benchmarks/write.py has more cases, standalone):

- a 4096x4096 float32 image, uncompressed (target <= 0.5x the best rival);
- a 4096x4096 int16 image, RICE_1 (target <= 0.4x the best rival);
- a 4096x4096 float32 image, RICE_1 quantized (quantize level 4,
  SUBTRACTIVE_DITHER_1, the same dither seed for all; target <= 0.4x the
  best rival): each rival's file must decode to the same values as ours;
- the limit: the same bytes (the file's header and big-endian data, made
  beforehand) written with one os.write, as `dd` would, to the same
  folder; no fsync, as the rivals make none.

Each case's notes give every contender's MB/s of image data.

Ours writes to a temporary name and renames it into place, without fsync
(sync=False, the default; see docs/writing.md); the rivals write in place,
without fsync either. Each
contender's file is read back by astropy and compared with the tensor.

    python benchmarks/bench_write.py [--quick]
"""
import os
import sys
import warnings

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
import harness  # noqa: E402
import torchfits_ops as tf  # noqa: E402

GROUP = "Writing"


def read_back(path, hdu):
    from astropy.io import fits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(path) as hl:
            return torch.from_numpy(np.array(hl[hdu].data).astype(hl[hdu].data.dtype.newbyteorder("=")))


SEED = 42  # the dither seed of the quantized case, for every contender


def contenders(workdir, tensor, compress):
    import fitsio
    from astropy.io import fits
    arr = tensor.numpy()
    quantized = compress and tensor.is_floating_point()
    hdu = 1 if compress else 0
    paths = {}

    def path(who):
        return paths.setdefault(who, os.path.join(workdir, f"w-{who.replace(' ', '_')}.fits"))

    c = {}
    if quantized:
        c["torchfits_ops"] = lambda: tf.write(path("ours"), tensor, compress=compress,
                                              overwrite=True, quantize_level=4.0,
                                              dither_seed=SEED)
        c["fitsio"] = lambda: fitsio.write(path("fitsio"), arr, compress="RICE", clobber=True,
                                           qlevel=4.0, qmethod="SUBTRACTIVE_DITHER_1",
                                           dither_seed=SEED)
        c["astropy"] = lambda: fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(
            arr, compression_type=compress, quantize_level=4.0,
            quantize_method=1, dither_seed=SEED)]).writeto(path("astropy"), overwrite=True)
    elif compress:
        c["torchfits_ops"] = lambda: tf.write(path("ours"), tensor, compress=compress, overwrite=True)
        c["fitsio"] = lambda: fitsio.write(path("fitsio"), arr, compress="RICE", clobber=True)
        c["astropy"] = lambda: fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(
            arr, compression_type=compress)]).writeto(path("astropy"), overwrite=True)
    else:
        c["torchfits_ops"] = lambda: tf.write(path("ours"), tensor, overwrite=True)
        c["fitsio"] = lambda: fitsio.write(path("fitsio"), arr, clobber=True)
        c["astropy"] = lambda: fits.PrimaryHDU(arr).writeto(path("astropy"), overwrite=True)
    try:
        import torchfits
        c["torchfits"] = lambda: torchfits.write(path("torchfits"), tensor, overwrite=True,
                                                 compress=compress or False)
    except ImportError:
        pass
    if not compress:
        image = os.path.join(workdir, "image-bytes.fits")
        fits.PrimaryHDU(arr).writeto(image, overwrite=True)
        with open(image, "rb") as f:
            blob = f.read()

        def dd():
            fd = os.open(path("limit"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, blob)
            finally:
                os.close(fd)

        c["limit (one write of the file's bytes)"] = dd

    def checker(who, fn):
        def check():
            fn()
            return read_back(paths[who], hdu)
        return check

    keys = {"torchfits_ops": "ours", "fitsio": "fitsio", "astropy": "astropy",
            "torchfits": "torchfits"}
    check = {who: checker(keys[who], fn) for who, fn in c.items() if who in keys}
    return c, check


def run(workdir, quick):
    os.makedirs(workdir, exist_ok=True)
    # No writeback left over from earlier cases (bench_memory writes two
    # 1 GiB files just before): the kernel's flusher would take a core
    # from whoever writes on two.
    os.sync()
    n = 1024 if quick else 4096
    g = np.random.default_rng(0)
    f32 = torch.from_numpy(g.standard_normal((n, n)).astype(np.float32))
    i16 = torch.from_numpy(g.poisson(100, (n, n)).astype(np.int16))
    sky = torch.from_numpy((g.normal(100, 10, (n, n)) + 50 * g.random((n, n)) ** 40)
                           .astype(np.float32))
    for name, tensor, compress, target in (
            (f"write {n}x{n} float32, uncompressed", f32, None, 0.5),
            (f"write {n}x{n} int16, RICE_1", i16, "RICE_1", 0.4),
            (f"write {n}x{n} float32, RICE_1 quantized", sky, "RICE_1", 0.4)):
        c, check = contenders(workdir, tensor, compress)
        # torchfits 1.3.1 takes no dither seed: its values differ from the
        # others' by the dither, so its file is timed but not compared.
        unchecked = (harness.BOUND, "torchfits") if tensor.is_floating_point() and compress \
            else (harness.BOUND,)
        res = harness.run_case(GROUP, name, c, check=check, unit="s/write", unchecked=unchecked,
                               repeat=3 if quick else 7, warmup=1, target=target,
                               target_text=f"<= {target}x",
                               notes=["ours: temporary file, rename, no fsync (sync=False); "
                                      "rivals: in place, no fsync"])
        # the image's bytes over each contender's time
        mb = tensor.numel() * tensor.element_size() / 1e6
        res["notes"].append("MB/s of image data: " + ", ".join(
            f"{who.split(' (')[0]} {mb / t:.0f}" for who, t in sorted(res["times"].items(),
                                                                      key=lambda kv: kv[1])))
        yield res


if __name__ == "__main__":
    harness.standalone(run, "bench-write-")
