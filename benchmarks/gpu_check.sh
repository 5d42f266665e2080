#!/usr/bin/env bash
# The one prepared GPU call (docs/gpu_session.md): build the CUDA kernels (TORCH_CUDA_ARCH_LIST=9.0,
# compiled as sm_90a), test, the experimental Hopper match kernels, benchmark (issue 3), end to end
# at high resolution (issue 6), compute-sanitizer, then train the decoder with whatever time is
# left (issue 5), all within BUDGET_S seconds (default 560, under the device tool's 600 s per call).
#
#   OUT=$OUT bash benchmarks/gpu_check.sh                    # everything, in the order above
#   STEPS="e2e train" BUDGET_S=200 bash benchmarks/gpu_check.sh   # a second call on the warm machine
#   E2E_SIZES="4096 3840x2160" E2E_REFERENCE=0 ...   # only the bar cases, no conv-reference pipeline
#   E2E_FORMATS=jpg SANITIZE_DEFAULT=0 ...           # JPEG output only; sanitise only the experimental kernels
#   PRESET=tiled bash benchmarks/gpu_check.sh        # issue 25's call (docs/gpu_session.md): build, tests, the
#                                                    # four match paths, the bench at 512/1024/4096x1024 px, sanitize
#
# PRESET=tiled only sets defaults (each can still be overridden): STEPS="build tests kernels bench
# sanitize", EXP_KERNELS="cublas cublas_fused tma wgmma" (the tiled cuBLAS driver with the ATen and
# the fused reduce, then the hand-written Hopper kernels), the CUDA suite per path without the tests
# that do not depend on the match path (PATH_TESTS_K), bench cases 128:128,256:256,1024:256 in TF32
# and bf16 with the conv reference only at 512 and 1024 px TF32 (CONV_AT), a tile sweep of the fused
# path at 1024 px (TILE_SWEEP), no "highest" case, SANITIZE_DEFAULT=0, BUDGET_S=440.
#
# Steps (STEPS, in this order of value): build tests kernels bench e2e stages sanitize profile train quality.
# "profile": Nsight Compute on one launch per mode of each match kernel (benchmarks/profile_match.py)
# and the SASS instruction mix of the built extension (cuobjdump), for CUDA_NOTES' "what limits it".
# "kernels" tests the other match paths EXP_KERNELS (default "cublas cublas_fused wgmma tma",
# STYLESWAP_MATCH_KERNEL values: the tiled cuBLAS driver of csrc/match_tiled.cpp with the ATen or the
# fused reduce, the Hopper kernels of csrc/cuda/match_wgmma.cu) and times those that pass; only those
# (OK_KERNELS) run in e2e, stages and sanitize, so a kernel that hangs or fails costs one capped test.
# Each has its own cap, clipped to what is left of the budget; a failing step does not stop later
# ones, and a step that gets too little time is skipped and listed at the end ("not run: ..."), so
# a second call can run just those. The build is skipped when _C with CUDA kernels already imports.
#
# The device tool returns at most 8 files from $OUT, so every log and JSON goes to $RUN (default
# ./gpu_run), which is packed into $OUT/gpu_run.tgz after every step (a call cut short keeps what
# was done); summary.txt, bench.json, e2e_cuda.json and the decoder checkpoint are also copied
# to $OUT on their own.
#
# e2e, train and quality need what benchmarks/prepare_carry.sh puts into $CARRY (default .carry,
# named in the run's `carry`): the VGG-19 slice, the training images, the UST baseline and, if
# one exists, the decoder checkpoint to resume from.
set -u -o pipefail
cd "$(dirname "$0")/.."
if [ "${PRESET:-}" = tiled ]; then
  : "${STEPS:=build tests kernels bench sanitize}" "${EXP_KERNELS:=cublas cublas_fused tma wgmma}" "${BUDGET_S:=440}"
  : "${TEST_FILES:=test_cuda}" "${BENCH_CASES:=128:128,256:256,1024:256}" "${CONV_AT=128:128:tf32,256:256:tf32}"
  : "${HIGHEST_CASE=}" "${BENCH_SKIP:=tiles,bank}" "${TILE_SWEEP:=4096,2048 8192,1024 2048,4096 8192,2048}"
  : "${SANITIZE_DEFAULT:=0}"
  : "${PATH_TESTS_K:=not experimental and not gather_equals and not backward_equals and not compile}"
fi
OUT=${OUT:-$PWD/gpu_out}
RUN=${RUN_DIR:-$PWD/gpu_run}
CARRY=${CARRY:-.carry}
mkdir -p "$OUT" "$RUN"
CARRY=$(cd "$CARRY" 2>/dev/null && pwd || echo "$PWD/$CARRY")  # absolute: the children run elsewhere
STEPS=${STEPS:-"build tests kernels bench e2e stages sanitize profile train quality"}
EXP_KERNELS=${EXP_KERNELS:-"cublas cublas_fused wgmma tma"}
# Without the kernels step: wgmma, whose tests passed on the H200 (2026-11-27).
OK_KERNELS=${OK_KERNELS:-wgmma}
PY=${PYTHON:-python3}
T0=$(date +%s)
if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then export CUDA_HOME=/usr/local/cuda; fi
export PATH="${CUDA_HOME:-/usr/local/cuda}/bin:$PATH"
BUDGET=${BUDGET_S:-560}
VGG="$CARRY/vgg19_conv1_1-conv3_1_torchvision.pth"
CKPT="$CARRY/runs/decoder.ckpt"
export STYLESWAP_VGG19_WEIGHTS="$VGG"
NOT_RUN=""

left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
# limit CAP: the step's own cap, clipped to what is left of the budget (at least 1 s)
limit() { local l=$(left); l=$(( $1 < l ? $1 : l )); echo $(( l > 1 ? l : 1 )); }
stamp() { echo "[gpu_check +$(( $(date +%s) - T0 ))s] $*" | tee -a "$RUN/summary.txt"; }
has() { [[ " $STEPS " == *" $1 "* ]]; }
# want STEP MIN_S: the step is asked for and at least MIN_S seconds are left (else noted as not run)
want() {
  has "$1" || return 1
  if [ "$(left)" -lt "$2" ]; then NOT_RUN="$NOT_RUN $1"; stamp "$1 not run: $(left) s left, needs >= $2 s"; return 1; fi
  stamp "$1"
}
pack() {
  tar czf "$OUT/gpu_run.tgz.part" -C "$(dirname "$RUN")" "$(basename "$RUN")" 2>/dev/null && mv "$OUT/gpu_run.tgz.part" "$OUT/gpu_run.tgz"
  for f in summary.txt bench.json e2e_cuda.json; do [ -f "$RUN/$f" ] && cp "$RUN/$f" "$OUT/"; done
  [ -f "$CKPT" ] && cp "$CKPT" "$OUT/decoder.ckpt"
  return 0
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" 2>&1
  nvcc --version 2>&1 | tail -1; echo "steps: $STEPS; budget ${BUDGET}s"; } | tee "$RUN/env.txt"

cuda_built() { $PY -c "import styleswap_ext, sys; sys.exit(0 if styleswap_ext.CUDA_BUILT else 1)" > /dev/null 2>&1; }
if has build && ! cuda_built; then
  stamp "build (sm_90a)"
  rm -rf build styleswap_ext/_C*.so
  export FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0 STYLESWAP_PTXAS_VERBOSE=1 MAX_JOBS=${MAX_JOBS:-$(nproc)}
  timeout $(limit 330) $PY setup.py build_ext --inplace > "$RUN/build.log" 2>&1
  rc=$?
  grep -E "ptxas info|bytes stack frame|spill|Compiling entry|Function properties" "$RUN/build.log" > "$RUN/ptxas.log"
  stamp "build rc=$rc"
  if [ $rc -ne 0 ]; then grep -E "error" "$RUN/build.log" | head -30; tail -20 "$RUN/build.log"; pack; exit 1; fi
fi
$PY -c "import styleswap_ext, torch; assert styleswap_ext.CUDA_BUILT, 'no CUDA kernels'; print('import ok', torch.cuda.is_available())" 2>&1 | tee -a "$RUN/summary.txt" || { pack; exit 1; }
pack

if want tests 30; then
  # One process per file: a crash in one (2026-11-27: a SIGSEGV in test_cuda.py) must not hide the other.
  for t in ${TEST_FILES:-test_cuda test_patch_bank}; do
    timeout $(limit 75) $PY -m pytest tests/$t.py -q -rs -p no:cacheprovider -k "not experimental" > "$RUN/tests_$t.log" 2>&1
    stamp "tests $t rc=$? : $(tail -1 "$RUN/tests_$t.log" | cut -c1-200)"
    grep -E "^(FAILED|ERROR)|^  File .*tests/.* in test_" "$RUN/tests_$t.log" | head -20 | tee -a "$RUN/summary.txt"
  done
  pack
fi

if want kernels 30; then
  # The other match paths (STYLESWAP_MATCH_KERNEL): the tiled cuBLAS driver (cublas, cublas_fused) and the
  # experimental Hopper kernels, before the figures that use them: is the sm_90a code there, do a
  # path's own tests pass (short cap: a pipeline that deadlocks shows up here as a timeout), does the
  # CUDA suite pass with it (each in its own process), how fast is it next to the bare GEMM (here only
  # when the bench step is not asked for; otherwise the bench step times them)?
  $PY -c "from styleswap_ext import _C; print('wgmma_available', _C.wgmma_available(0))" 2>&1 | tee -a "$RUN/summary.txt"
  OK_KERNELS=""
  # Leave the bench step its time (KERNELS_RESERVE s, when it is asked for): a path not tested for
  # lack of time is not timed either, but the default and the GEMM floor still are.
  reserve=0; has bench && reserve=${KERNELS_RESERVE:-120}
  for kernel in $EXP_KERNELS; do
    if [ "$(left)" -lt $(( 30 + reserve )) ]; then NOT_RUN="$NOT_RUN kernels-$kernel"; stamp "kernel $kernel not tested: out of time"; continue; fi
    # ("not KERNEL_fused": -k matches substrings, and cublas's own tests are not cublas_fused's)
    timeout $(limit 45) $PY -m pytest tests/test_cuda.py -q -rs -p no:cacheprovider -k "experimental and $kernel and not ${kernel}_fused" \
      > "$RUN/tests_own_$kernel.log" 2>&1
    rc=$?
    stamp "tests experimental $kernel rc=$rc : $(tail -1 "$RUN/tests_own_$kernel.log" | cut -c1-200)"
    grep -E "^(FAILED|ERROR)|Error" "$RUN/tests_own_$kernel.log" | head -10 | tee -a "$RUN/summary.txt"
    [ $rc -eq 0 ] || continue
    STYLESWAP_MATCH_KERNEL=$kernel timeout $(limit $(( $(left) - reserve < 100 ? $(left) - reserve : 100 ))) $PY -m pytest $(for f in ${TEST_FILES:-test_cuda test_patch_bank}; do echo tests/$f.py; done) \
      -q -rs -p no:cacheprovider -k "${PATH_TESTS_K:-not experimental}" > "$RUN/tests_$kernel.log" 2>&1
    stamp "tests (STYLESWAP_MATCH_KERNEL=$kernel) rc=$? : $(tail -1 "$RUN/tests_$kernel.log" | cut -c1-200)"
    grep -E "^(FAILED|ERROR)" "$RUN/tests_$kernel.log" | head -10 | tee -a "$RUN/summary.txt"
    # A crash of the suite that is not this kernel's (the default kernel's tests step shows it too)
    # should not keep it out of the figures: any FAILED line does.
    grep -qE "^FAILED" "$RUN/tests_$kernel.log" || OK_KERNELS="$OK_KERNELS $kernel"
  done
  OK_KERNELS=$(echo $OK_KERNELS)
  stamp "experimental kernels that passed: ${OK_KERNELS:-none}"
  if [ -n "$OK_KERNELS" ] && ! has bench && [ "$(left)" -ge 40 ]; then
    timeout $(limit 100) $PY benchmarks/bench_gpu.py --kernels "$(echo $OK_KERNELS | tr ' ' ,)" --skip conv,tiles,bank,agree \
      --highest-case "" --cases 128:128,256:256,1024:256 --out "$RUN/bench_kernels.json" > "$RUN/bench_kernels.log" 2> "$RUN/bench_kernels.err"
    stamp "bench kernels rc=$?"
  fi
  pack
fi

if want bench 60; then
  bench_args=(--out "$RUN/bench.json")
  [ -n "${BENCH_CASES:-}" ] && bench_args+=(--cases "$BENCH_CASES")
  [ -n "${BENCH_SKIP:-}" ] && bench_args+=(--skip "$BENCH_SKIP")
  [ -n "${CONV_AT+set}" ] && bench_args+=(--conv-at "$CONV_AT")
  [ -n "${HIGHEST_CASE+set}" ] && bench_args+=(--highest-case "$HIGHEST_CASE")
  [ -n "${TILE_SWEEP:-}" ] && bench_args+=(--tile-sweep "$TILE_SWEEP")
  # the match paths that passed the kernels step (or OK_KERNELS as given), beside the default
  [ -n "$OK_KERNELS" ] && bench_args+=(--kernels "$(echo $OK_KERNELS | tr ' ' ,)")
  timeout $(limit 160) $PY benchmarks/bench_gpu.py "${bench_args[@]}" ${BENCH_ARGS:-} > "$RUN/bench.log" 2> "$RUN/bench.err"
  rc=$?
  stamp "bench rc=$rc"
  if [ $rc -ne 0 ] && [ -s "$RUN/bench.json" ]; then  # cut short: report what was measured
    $PY benchmarks/bench_gpu.py --table-from "$RUN/bench.json" >> "$RUN/bench.log" 2>&1
  fi
  pack
fi

if want e2e 40; then
  # Issue 6: stylize end to end (fresh process each: load, encode, swap, decode, save), 1024 px style,
  # TF32. The bar cases first; the conv-reference pipeline afterwards (it runs out of memory above 1024 px).
  if [ -f "$VGG" ]; then
    timeout $(limit 110) $PY benchmarks/e2e.py --device cuda --precision tf32 --style-size 1024 --impls ours \
      --sizes ${E2E_SIZES:-4096 3840x2160 2048 1024 512} --formats ${E2E_FORMATS:-png jpg} --timeout 60 \
      --vgg-weights "$VGG" --json "$RUN/e2e_cuda.json" --png "$RUN/e2e_cuda.png" > "$RUN/e2e.log" 2>&1
    stamp "e2e ours rc=$?"
    # The bar cases again with each experimental match kernel that passed its tests.
    for kernel in $OK_KERNELS; do
      STYLESWAP_MATCH_KERNEL=$kernel timeout $(limit 60) $PY benchmarks/e2e.py --device cuda --precision tf32 --style-size 1024 \
        --impls ours --sizes 4096 3840x2160 --formats ${E2E_FORMATS:-jpg png} --timeout 40 \
        --vgg-weights "$VGG" --json "$RUN/e2e_cuda_$kernel.json" --png "$RUN/e2e_cuda_$kernel.png" >> "$RUN/e2e.log" 2>&1
      stamp "e2e ours (STYLESWAP_MATCH_KERNEL=$kernel) rc=$?"
    done
    if [ "${E2E_REFERENCE:-1}" = 1 ]; then  # E2E_REFERENCE=0: the reference's figures are already known
      timeout $(limit 60) $PY benchmarks/e2e.py --device cuda --precision tf32 --style-size 1024 --impls reference \
        --sizes 512 1024 2048 4096 --timeout 40 \
        --vgg-weights "$VGG" --json "$RUN/e2e_cuda_reference.json" --png "$RUN/e2e_cuda_reference.png" >> "$RUN/e2e.log" 2>&1
      stamp "e2e reference rc=$?"
    fi
    grep -h '"status"' "$RUN/e2e.log" | cut -c1-220 | tee -a "$RUN/summary.txt"
  else
    stamp "e2e skipped: $VGG missing (run benchmarks/prepare_carry.sh and carry $CARRY)"
  fi
  pack
fi

if want stages 30; then
  # Issue 6: where the 4096 px end-to-end time goes (load, encode, bank, swap, decode, save), per match kernel.
  timeout $(limit 90) $PY benchmarks/e2e_stages.py --size 4096 --kernels default $OK_KERNELS --formats jpg png \
    --vgg-weights "$VGG" --json "$RUN/stages_4096.json" > "$RUN/stages.log" 2>&1
  stamp "stages rc=$?"
  pack
fi

if want sanitize 45; then
  SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  if [ -x "$SAN" ]; then
    # the experimental kernels that passed too (STYLESWAP_MATCH_KERNEL); SANITIZE_DEFAULT=0 leaves out
    # the default kernel (clean on the H200, 2026-11-27)
    for kernel in $([ "${SANITIZE_DEFAULT:-1}" = 1 ] && echo default) $OK_KERNELS; do
      for tool in memcheck racecheck; do
        if [ "$(left)" -lt 45 ]; then NOT_RUN="$NOT_RUN sanitize-$tool-$kernel"; stamp "sanitize $tool $kernel not run: out of time"; continue; fi
        STYLESWAP_MATCH_KERNEL=$kernel timeout $(limit 120) "$SAN" --tool $tool --error-exitcode 9 $PY benchmarks/sanitize_small.py \
          > "$RUN/sanitize_${tool}_$kernel.log" 2>&1
        stamp "sanitize $tool $kernel rc=$? : $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$RUN/sanitize_${tool}_$kernel.log" | tail -1)"
      done
    done
  else
    stamp "compute-sanitizer not found"
  fi
  pack
fi

if want profile 30; then
  NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
  if [ -x "$NCU" ]; then
    for kernel in default $OK_KERNELS; do
      if [ "$(left)" -lt 30 ]; then NOT_RUN="$NOT_RUN profile-$kernel"; continue; fi
      STYLESWAP_MATCH_KERNEL=$kernel timeout $(limit 60) "$NCU" --clock-control none -k regex:match -c 2 \
        --section SpeedOfLight --section Occupancy --section MemoryWorkloadAnalysis \
        $PY benchmarks/profile_match.py > "$RUN/ncu_$kernel.log" 2>&1
      stamp "profile $kernel rc=$? : $(grep -E 'Compute \(SM\) Throughput' "$RUN/ncu_$kernel.log" | tr -s ' ' | tr '\n' ';' | cut -c1-160)"
    done
  else
    stamp "ncu not found"
  fi
  # Which instructions each kernel was compiled to (HGMMA = wgmma, HMMA = mma.sync, UTMALDG = TMA, LDL/STL = spills)
  if command -v cuobjdump > /dev/null; then
    cuobjdump --dump-sass styleswap_ext/_C*.so 2>/dev/null | awk '
      /Function :/ { f = $3 }
      { for (i = 1; i <= NF; i++) if ($i ~ /^(HGMMA|HMMA|UTMALDG|LDGSTS|LDSM|LDL|STL|SYNCS)/) { split($i, a, "."); n[f " " a[1]]++ } }
      END { for (k in n) print k, n[k] }' | grep -i match | sort > "$RUN/sass_mix.txt"
    stamp "sass mix: $(wc -l < "$RUN/sass_mix.txt") lines in sass_mix.txt"
  fi
  pack
fi

QUALITY_RESERVE=0
has quality && QUALITY_RESERVE=${QUALITY_S:-100}
if want train $(( 90 + QUALITY_RESERVE )); then
  # Issue 5: continue the decoder's training (resumes $CKPT when it exists) until QUALITY_RESERVE
  # seconds before the budget ends; --time-limit stops cleanly and checkpoints. No instance norm, as
  # the CPU run it resumes (docs/training.md: measured better PSNR at the same feature loss); pixel
  # weight 300 on the real-image targets (the CPU run used 30; 300 traded +0.84 dB PSNR for +2.4 %
  # objective there, docs/training.md, and QUALITY.md's capacity probe puts the objective bar out of
  # this architecture's reach, so the run aims at the PSNR bar; PIXEL_WEIGHT=30 restores the old
  # balance); lr 1e-4 (the CPU run stepped 1e-3, 3e-4, 1e-4, 3e-5, each step lowering the validation
  # loss; docs/training.md "Learning rate: measured"), not the CPU run's last 3e-5: the GPU's 256 px
  # crops are new to the decoder.
  if [ -f "$VGG" ] && [ -d "$CARRY/data/content" ]; then
    mkdir -p "$CARRY/runs"
    TL=$(( $(left) - QUALITY_RESERVE - 5 ))
    timeout $(( TL + 30 )) $PY -m styleswap_ext train-decoder --content-dir "$CARRY/data/content" --style-dir "$CARRY/data/style" \
      --out "$CKPT" --resume --time-limit $TL --val-every 1000 --save-every 1000 --no-instance-norm --pixel-weight ${PIXEL_WEIGHT:-300} --lr ${LR:-1e-4} \
      -q > "$RUN/train.log" 2>&1
    stamp "train rc=$? : $(tail -1 "$RUN/train.log" | cut -c1-200)"
  else
    stamp "train skipped: $VGG or $CARRY/data missing (run benchmarks/prepare_carry.sh and carry $CARRY)"
  fi
  pack
fi

if want quality 45; then
  if [ -f "$CKPT" ] && [ -d "$CARRY/ust_baseline" ]; then
    timeout $(limit 200) $PY benchmarks/quality_report.py --decoder "$CKPT" --content-dir "$CARRY/data/content" \
      --style-dir "$CARRY/data/style" --ust-dir "$CARRY/ust_baseline" --vgg-weights "$VGG" --size 512 --pairs 4 \
      --opt-iters 100 500 --out-dir "$RUN/quality" > "$RUN/quality.log" 2>&1
    stamp "quality rc=$?"
  else
    stamp "quality skipped: no $CKPT or $CARRY/ust_baseline"
  fi
  pack
fi

stamp "done${NOT_RUN:+; not run (time):$NOT_RUN}"
pack
cat "$RUN/summary.txt"
[ -f "$RUN/bench.log" ] && cat "$RUN/bench.log"
[ -f "$RUN/bench_kernels.log" ] && cat "$RUN/bench_kernels.log"
exit 0
