#!/usr/bin/env bash
# Set up, build and run torchfits on Debian 12 (as root, or with sudo):
#   ./run.sh demo    install what is missing, build, run the example
#   ./run.sh test    install what is missing, build, run the test suite
#   ./run.sh bench   ... run the benchmarks (writes benchmarks/RESULTS.md)
#   ./run.sh build   ... build only
set -euo pipefail
cd "$(dirname "$0")"

PACKAGES=(
  python3-torch libtorch-dev libcfitsio-dev ninja-build build-essential python3-dev
  python3-setuptools python3-numpy python3-pytest python3-astropy python3-fitsio
  python3-psutil python3-tqdm python3-matplotlib clang-14 libclang-rt-14-dev ncompress
)

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

# Debian's torch lives under /usr/bin/python3; the python3 first on PATH may
# be another interpreter without it.
pick_python() {
  local c
  for c in "${PYTHON:-}" /usr/bin/python3 python3; do
    [[ -n $c ]] && "$c" -c "import torch" >/dev/null 2>&1 && { echo "$c"; return; }
  done
  echo "run.sh: no Python with torch found (set PYTHON=...)" >&2
  exit 1
}

build() {
  mkdir -p build
  if ! "$PY" setup.py build_ext --inplace >build/build.log 2>&1; then
    cat build/build.log >&2
    echo "run.sh: build failed (log above, also in build/build.log)" >&2
    exit 1
  fi
}

cmd=${1:-demo}
shift || true
install_missing
PY=$(pick_python)
build
case "$cmd" in
  demo) exec "$PY" examples/read_image.py "$@" ;;
  test) exec "$PY" -m pytest -q -p no:cacheprovider tests "$@" ;;
  bench) exec "$PY" benchmarks/run.py "$@" ;;
  build) ;;
  *) echo "usage: ./run.sh demo|test|bench|build" >&2; exit 2 ;;
esac
