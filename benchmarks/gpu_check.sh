#!/usr/bin/env bash
# One-shot GPU check of the styleswap CUDA kernels (issue 3): build (TORCH_CUDA_ARCH_LIST=9.0, which
# setup.py compiles as sm_90a), test, benchmark.
#
#   bash benchmarks/gpu_check.sh            # everything, results under $OUT (default ./gpu_out)
#   STEPS="tests bench" bash benchmarks/gpu_check.sh   # a subset (build is skipped if _C is importable)
#
# Writes: $OUT/build.log, $OUT/ptxas.log (register/smem/spill report), $OUT/tests.log, $OUT/bench.json,
# $OUT/bench.log, $OUT/tests_wgmma.log and $OUT/bench_wgmma.json (the experimental wgmma kernel),
# $OUT/sanitize_memcheck.log, $OUT/sanitize_racecheck.log, $OUT/summary.txt; prints the benchmark
# tables last. Each step has its own time limit, clipped so the whole script ends within BUDGET_S
# (default 570 s); a failing step does not stop later ones. Order = priority: build, tests, bench,
# wgmma, then the (slow) sanitizers with whatever time is left.
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
STEPS=${STEPS:-"build tests bench wgmma sanitize"}
PY=${PYTHON:-python3}
T0=$(date +%s)
if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then export CUDA_HOME=/usr/local/cuda; fi
export PATH="${CUDA_HOME:-/usr/local/cuda}/bin:$PATH"
BUDGET=${BUDGET_S:-570}  # whole script, seconds: stays under the device tool's 600 s per call
# limit STEP_MAX: the step's own cap, clipped to what is left of the budget (at least 1 s)
limit() { local left=$(( BUDGET - ($(date +%s) - T0) )); local l=$(( $1 < left ? $1 : left )); echo $(( l > 1 ? l : 1 )); }
stamp() { echo "[gpu_check +$(( $(date +%s) - T0 ))s] $*" | tee -a "$OUT/summary.txt"; }
has() { [[ " $STEPS " == *" $1 "* ]]; }

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" 2>&1
  nvcc --version 2>&1 | tail -1; } | tee "$OUT/env.txt"

if has build; then
  stamp "build (sm_90)"
  rm -rf build styleswap_ext/_C*.so
  export FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0 STYLESWAP_PTXAS_VERBOSE=1 MAX_JOBS=${MAX_JOBS:-8}
  timeout $(limit 360) $PY setup.py build_ext --inplace > "$OUT/build.log" 2>&1
  rc=$?
  grep -E "ptxas info|bytes stack frame|spill|Compiling entry|Function properties" "$OUT/build.log" > "$OUT/ptxas.log"
  stamp "build rc=$rc"
  if [ $rc -ne 0 ]; then tail -40 "$OUT/build.log"; exit 1; fi
fi
$PY -c "import styleswap_ext, torch; assert styleswap_ext.CUDA_BUILT, 'no CUDA kernels'; print('import ok', torch.cuda.is_available())" 2>&1 | tee -a "$OUT/summary.txt" || exit 1

if has tests; then
  stamp "tests"
  timeout $(limit 200) $PY -m pytest tests/test_cuda.py tests/test_patch_bank.py -q -rs -p no:cacheprovider -k "not wgmma" > "$OUT/tests.log" 2>&1
  stamp "tests rc=$? : $(tail -1 "$OUT/tests.log")"
fi

if has bench; then
  stamp "bench"
  timeout $(limit 240) $PY benchmarks/bench_gpu.py --out "$OUT/bench.json" ${BENCH_ARGS:-} > "$OUT/bench.log" 2> "$OUT/bench.err"
  rc=$?
  stamp "bench rc=$rc"
  if [ $rc -ne 0 ] && [ -s "$OUT/bench.json" ]; then  # cut short: report what was measured
    $PY benchmarks/bench_gpu.py --table-from "$OUT/bench.json" >> "$OUT/bench.log" 2>&1
  fi
fi

if has wgmma; then
  # The experimental Hopper kernel (csrc/cuda/match_wgmma.cu), after the main figures so that a
  # fault in it cannot cost them: is it there, does the CUDA suite pass with it, how fast is it?
  stamp "wgmma"
  $PY -c "from styleswap_ext import _C; print('wgmma_available', _C.wgmma_available(0))" 2>&1 | tee -a "$OUT/summary.txt"
  STYLESWAP_MATCH_KERNEL=wgmma timeout $(limit 120) $PY -m pytest tests/test_cuda.py tests/test_patch_bank.py -q -x -p no:cacheprovider > "$OUT/tests_wgmma.log" 2>&1
  stamp "tests (STYLESWAP_MATCH_KERNEL=wgmma) rc=$? : $(tail -1 "$OUT/tests_wgmma.log")"
  timeout $(limit 90) $PY benchmarks/bench_gpu.py --wgmma --skip conv,peer,tiles,bank,agree --highest-case "" \
    --cases 128:128,256:256,1024:256 --out "$OUT/bench_wgmma.json" > "$OUT/bench_wgmma.log" 2> "$OUT/bench_wgmma.err"
  stamp "bench wgmma rc=$?"
fi

if has sanitize; then
  SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  if [ -x "$SAN" ]; then
    for tool in memcheck racecheck; do
      if [ "$(limit 9999)" -lt 45 ]; then stamp "sanitize $tool skipped: out of time budget"; continue; fi
      stamp "sanitize $tool"
      timeout $(limit 150) "$SAN" --tool $tool --error-exitcode 9 $PY benchmarks/sanitize_small.py > "$OUT/sanitize_$tool.log" 2>&1
      stamp "sanitize $tool rc=$? : $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitize_$tool.log" | tail -1)"
    done
  else
    stamp "compute-sanitizer not found"
  fi
fi

stamp "done"
cat "$OUT/summary.txt"
[ -f "$OUT/bench.log" ] && cat "$OUT/bench.log"
[ -f "$OUT/bench_wgmma.log" ] && cat "$OUT/bench_wgmma.log"
exit 0
