"""Build torchfits_ops: the C11 core as a static library, then one torch
extension (the C++ shim) linked against it and the system cfitsio.

    python3 setup.py build_ext --inplace      # development build
    pip install --no-build-isolation .        # into an existing torch env
    DEBUG=1 ...                               # -O0 -g for both parts
    SANITIZE=1 ...                            # ASan + UBSan on the C core (run with
                                              # LD_PRELOAD=$(gcc -print-file-name=libasan.so))
"""
import glob
import os

import torch
from setuptools import setup
from torch.utils.cpp_extension import BuildExtension, CppExtension

DEBUG = os.environ.get("DEBUG", "0") == "1"
SANITIZE = os.environ.get("SANITIZE", "0") == "1"
OPT = ["-O0", "-g"] if DEBUG else ["-O3"]
SAN = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"] if SANITIZE else []

core_sources = sorted(glob.glob("csrc/core/**/*.c", recursive=True))
core = (
    "torchfits_core",
    {
        # build_clib compiles with the C compiler: the core stays C11.
        "sources": core_sources,
        "cflags": ["-std=c11", "-fPIC", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror=implicit-function-declaration",
                   "-fvisibility=hidden"] + OPT + SAN,
    },
)

# torch.uint16/uint32/uint64 came with torch 2.3; older torch gets
# int32/int64/float64.
has_uint16 = int(hasattr(torch, "uint16") and hasattr(torch, "uint32") and hasattr(torch, "uint64"))

# A torch extension is bound to the ABI of the torch it was built with. The
# library's name says which (major.minor), so that builds for two torch lines
# can sit side by side and the loader can name the mismatch.
TORCH_VERSION = tuple(int(v) for v in torch.__version__.split(".")[:2])
TORCH_TAG = "torch{}_{}".format(*TORCH_VERSION)
# Recent torch headers are C++20 (torch's own builds use it); 1.13 needs 17.
CXX_STD = "-std=c++20" if TORCH_VERSION >= (2, 10) else "-std=c++17"

shim = CppExtension(
    f"torchfits_ops._C_{TORCH_TAG}",
    sorted(glob.glob("csrc/*.cpp")),
    libraries=["torchfits_core", "wcs", "cfitsio", "curl", "deflate", "z", "pthread", "m"],
    # The shim is not instrumented: -fsanitize=undefined breaks static asserts
    # in torch's registration headers. The link brings the sanitizer runtime.
    extra_compile_args=[CXX_STD, f"-DTORCHFITS_HAS_UINT16={has_uint16}"] + OPT,
    extra_link_args=SAN,
)

class build_ext(BuildExtension.with_options(use_ninja=True)):
    """Build the C core first: plain `build_ext --inplace` skips build_clib."""

    def run(self):
        self.run_command("build_clib")
        super().run()


# Name, version and dependencies are in pyproject.toml.
setup(
    libraries=[core],
    ext_modules=[shim],
    cmdclass={"build_ext": build_ext},
    # Objects of each torch line in a folder of their own.
    options={"build": {"build_temp": f"build/temp-{TORCH_TAG}", "build_lib": f"build/lib-{TORCH_TAG}"}},
)
