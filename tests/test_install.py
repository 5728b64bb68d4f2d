"""The library loads only under the torch it was built for, and says so."""
import os
import shutil
import subprocess
import sys

import torch

import torchfits_ops as tf


def test_library_named_for_this_torch():
    major, minor = torch.__version__.split(".")[:2]
    here = os.path.dirname(tf.__file__)
    assert any(n.startswith(f"_C_torch{major}_{minor}.") for n in os.listdir(here))


def test_library_of_another_torch_is_named_not_loaded(tmp_path):
    """A package holding only a library built for another torch raises an
    ImportError naming both versions and how to rebuild."""
    pkg = tmp_path / "torchfits_ops"
    shutil.copytree(os.path.dirname(tf.__file__), pkg,
                    ignore=shutil.ignore_patterns("_C_*.so", "__pycache__"))
    (pkg / "_C_torch0_9.cpython-311-x86_64-linux-gnu.so").write_bytes(b"not a library")
    r = subprocess.run([sys.executable, "-c", "import torchfits_ops"], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert (f"ImportError: torchfits_ops was built for torch 0.9, but this Python has torch "
            f"{torch.__version__}") in r.stderr
    assert "pip install --no-build-isolation ." in r.stderr


def test_missing_library_says_how_to_build(tmp_path):
    pkg = tmp_path / "torchfits_ops"
    shutil.copytree(os.path.dirname(tf.__file__), pkg,
                    ignore=shutil.ignore_patterns("_C_*.so", "__pycache__"))
    r = subprocess.run([sys.executable, "-c", "import torchfits_ops"], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 1 and "the compiled library (_C_torch" in r.stderr
    assert "build_ext --inplace" in r.stderr
