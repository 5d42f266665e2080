#!/usr/bin/env bash
# Build the committed HEAD against the device machine's torch (default 2.11.0, a cu130 build from
# PyPI) with the CUDA kernels (FORCE_CUDA=1, sm_90a; that torch compiles extensions as C++17) and
# run the whole test suite with it, on a machine without a GPU. Catches what the header-only
# compile_check_device_torch.sh cannot: link and import errors (a symbol that only the newer torch
# has), and Python-side API drift in the package and the tests.
#
#   bash benchmarks/test_device_torch.sh [TORCH_VERSION]   # ~3 GB download once; build ~15 min on 2 cores
#
# The venv goes to $VENV (default /tmp/venv-torch-VERSION), the clone to $WORK (default
# ../device-torch-check beside this checkout, so that the tests find ../shared as usual).
# Exits with pytest's status.
set -eu
cd "$(dirname "$0")/.."
SRC=$PWD
VER=${1:-2.11.0}
VENV=${VENV:-/tmp/venv-torch-$VER}
WORK=${WORK:-$SRC/../device-torch-check}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q "torch==$VER" numpy ninja pybind11 pillow tqdm pytest pytest-benchmark hypothesis av
rm -rf "$WORK"
git clone -q "$SRC" "$WORK"
cd "$WORK"
git log --oneline -1
FORCE_CUDA=1 CUDA_HOME=${CUDA_HOME:-/usr/local/cuda} TORCH_CUDA_ARCH_LIST=9.0 \
  "$VENV/bin/python" setup.py build_ext --inplace > build.log 2>&1 || { tail -30 build.log; exit 1; }
"$VENV/bin/python" -c "import torch, styleswap_ext as s; print('torch', torch.__version__, 'CUDA kernels built:', s.CUDA_BUILT)"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider
