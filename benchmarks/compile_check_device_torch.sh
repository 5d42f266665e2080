#!/usr/bin/env bash
# Compile every C++/CUDA translation unit against the headers of the device machine's torch
# (2.11.0+cu130, built as C++17 there), without a GPU, so that API drift between that torch and the
# one in .venv cannot make the one GPU call of a session fail at its build step.
#
#   bash benchmarks/compile_check_device_torch.sh [TORCH_VERSION]   # default 2.11.0; ~15 min on 2 cores
#
# Downloads the torch wheel once (~530 MB, only torch/include is unpacked) into $CACHE
# (default /tmp/device_torch). FILES="a.cu b.cpp" checks only those. Prints "FAIL <file>" with the errors, exits non-zero on any failure.
set -u
cd "$(dirname "$0")/.."
VER=${1:-2.11.0}
CACHE=${CACHE:-/tmp/device_torch}/$VER
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$CACHE"
if [ ! -d "$CACHE/torch/include" ]; then
  $PY -m pip download "torch==$VER" --no-deps -d "$CACHE" --python-version 3.12 --only-binary=:all: \
    --platform manylinux_2_28_x86_64 -q || exit 1
  (cd "$CACHE" && unzip -q -o torch-*.whl 'torch/include/*' 'torch/version.py') || exit 1
fi
grep '^__version__' "$CACHE/torch/version.py"
I=$CACHE/torch/include
SITE=$($PY -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
PYINC=$($PY -c "import sysconfig; print(sysconfig.get_paths()['include'])")
CUDA=${CUDA_HOME:-/usr/local/cuda}
FLAGS="-I$I -I$I/torch/csrc/api/include -I$CUDA/include -I$SITE/nvidia/cu13/include -I$PYINC
       -DTORCH_API_INCLUDE_EXTENSION_H -DTORCH_EXTENSION_NAME=_C -DSTYLESWAP_WITH_CUDA -std=c++17 -O1"
OBJ=$(mktemp -d)
fail=0
for f in ${FILES:-csrc/*.cpp csrc/cpu/*.cpp csrc/cuda/*.cpp csrc/cuda/*.cu}; do
  case $f in
    *.cu) cmd="$CUDA/bin/nvcc $FLAGS --expt-relaxed-constexpr -gencode=arch=compute_90a,code=sm_90a -Xcompiler -fPIC" ;;
    *) cmd="g++ $FLAGS -fPIC -fopenmp-simd" ;;
  esac
  if log=$(nice $cmd -c "$f" -o "$OBJ/$(basename "$f").o" 2>&1); then echo "ok   $f"; else echo "FAIL $f"; echo "$log" | grep -E "error" | head -20; fail=1; fi
done
rm -rf "$OBJ"
exit $fail
