#!/usr/bin/env bash
# The one prepared GPU call (docs/gpu_session.md): build the CUDA kernels (TORCH_CUDA_ARCH_LIST=9.0,
# compiled as sm_90a), test, the other match paths, benchmark (issue 3), end to end at high resolution
# (issue 6), compute-sanitizer, a tile sweep, then train the decoder with whatever time is left
# (issue 5), all within BUDGET_S seconds (default 560, under the device tool's 600 s per call).
#
#   OUT=$OUT bash benchmarks/gpu_check.sh                    # everything, in the order above
#   STEPS="e2e train" BUDGET_S=200 bash benchmarks/gpu_check.sh   # a second call on the warm machine
#   E2E_SIZES="4096 3840x2160" E2E_REFERENCE=0 ...   # only the bar cases, no conv-reference pipeline
#   E2E_FORMATS=jpg SANITIZE_DEFAULT=0 ...           # JPEG output only; sanitise only the other match paths
#   PRESET=tiled bash benchmarks/gpu_check.sh        # issues 25/37 (docs/gpu_session.md): build, tests, the
#                                                    # four match paths, bench, sanitize, tile sweep
#
# PRESET=tiled only sets defaults (each can still be overridden): STEPS="build tests kernels bench
# sanitize sweep", EXP_KERNELS="cublas_fused cublas tma wgmma" (the tiled cuBLAS driver with the fused
# and the ATen reduce, then the hand-written Hopper kernels: in order of value, the last is what a
# short budget drops), TEST_FILES="test_cuda test_regions:cuda test_approx:cuda", PATH_TEST_FILES=
# test_cuda without the tests that do not depend on the match path (PATH_TESTS_K), bench cases
# 128:128,256:256,1024:256 in TF32 and bf16 with the conv reference only at 512 and 1024 px TF32
# (CONV_AT), no "highest" case, SANITIZE_DEFAULT=0, a tile sweep of the fused path at 1024 px
# (TILE_SWEEP) last, BUDGET_S=440.
#
# Steps (STEPS, in this order of value): build tests kernels bench e2e stages sanitize sweep profile train quality.
# "tests": each file of TEST_FILES in its own process (a crash in one must not hide another), default
#   match path; FILE:EXPR runs only that file's tests selected by -k EXPR (test_regions:cuda = its CUDA tests).
# "kernels" tests the other match paths EXP_KERNELS (STYLESWAP_MATCH_KERNEL values: the tiled cuBLAS
#   driver of csrc/match_tiled.cpp with the fused or the ATen reduce, the Hopper kernels of
#   csrc/cuda/match_wgmma.cu): a path's own tests (tests/test_cuda.py -k "experimental and KERNEL": they
#   fail if the path did not run, via _C.match_kernel_launches()), then each file of PATH_TEST_FILES with
#   the variable set, each in its own process. A path passes when every one of those exits 0 with tests
#   passed (5, "nothing selected", only for a PATH_TEST_FILES file that PATH_TESTS_K empties); a failure,
#   a crash (signal), a timeout or a run where every test skipped keeps it out and is named in the
#   summary ("kernels failed: ..."). Only the paths that passed (OK_KERNELS) are benched, run end to end
#   and sanitised, so a path that hangs or fails costs its capped tests.
# "sanitize": compute-sanitizer memcheck and racecheck of benchmarks/sanitize_small.py, cublas_fused
#   first. sanitize_small.py calls the fused reduce through the tiled driver's private op under every
#   path, so its first run, whichever path, sanitises that kernel; with no path passed it runs once
#   under the default kernel for that reason.
# "sweep": STYLESWAP_TILED_TILE shapes of cublas_fused (TILE_SWEEP) at 1024 px, after the sanitizer.
# "profile": Nsight Compute on one launch per mode of each match kernel (benchmarks/profile_match.py)
#   and the SASS instruction mix of the built extension (cuobjdump), for CUDA_NOTES' "what limits it".
#
# Budget: every step has a cap, clipped to what is left of BUDGET_S minus what the later steps asked for
# keep for themselves (RESERVE_bench, RESERVE_sanitize, RESERVE_sweep: their estimated times, see
# reserve_for), so a slow or hanging step cuts itself short instead of the sanitizer: e.g. the bench's
# 160 s cap is clipped to leave the sanitizer and the sweep their time. Only the build and the tests
# step (the default path's suite) come before every reserve. A step or a match path
# that gets too little time is skipped and listed at the end ("not run: ..."), so a second call can run
# just those. A failing step does not stop later ones. The build is skipped when _C with CUDA kernels
# already imports.
#
# The device tool returns at most 8 files from $OUT, so every log and JSON goes to $RUN (default
# ./gpu_run), which is packed into $OUT/gpu_run.tgz after every step (a call cut short keeps what
# was done); summary.txt, bench.json, sweep.json, e2e_cuda.json and the decoder checkpoint are also
# copied to $OUT on their own.
#
# e2e, train and quality need what benchmarks/prepare_carry.sh puts into $CARRY (default .carry,
# named in the run's `carry`): the VGG-19 slice, the training images, the UST baseline and, if
# one exists, the decoder checkpoint to resume from.
#
# Dry runs on the CPU (benchmarks/gpu_check_dry_run.py, tests/test_gpu_check.py): PYTHON and SANITIZER
# name stubs, GPU_CHECK_CLOCK a file holding a simulated clock (seconds) that the stubs advance by their
# estimated times; every capped command sees its cap in GPU_CHECK_CAP. Real runs set none of these.
set -u -o pipefail
cd "$(dirname "$0")/.."
if [ "${PRESET:-}" = tiled ]; then
  : "${STEPS:=build tests kernels bench sanitize sweep}" "${EXP_KERNELS:=cublas_fused cublas tma wgmma}" "${BUDGET_S:=440}"
  : "${TEST_FILES:=test_cuda test_regions:cuda test_approx:cuda}" "${PATH_TEST_FILES:=test_cuda}"
  : "${BENCH_CASES:=128:128,256:256,1024:256}" "${CONV_AT=128:128:tf32,256:256:tf32}"
  : "${HIGHEST_CASE=}" "${BENCH_SKIP:=tiles,bank}" "${TILE_SWEEP:=4096,2048 8192,1024 2048,4096 8192,2048}"
  : "${SANITIZE_DEFAULT:=0}"
  : "${PATH_TESTS_K:=not experimental and not gather_equals and not backward_equals and not compile}"
fi
OUT=${OUT:-$PWD/gpu_out}
RUN=${RUN_DIR:-$PWD/gpu_run}
CARRY=${CARRY:-.carry}
mkdir -p "$OUT" "$RUN"
case $CARRY in /*) ;; *) CARRY="$PWD/$CARRY" ;; esac  # absolute: the children run elsewhere
STEPS=${STEPS:-"build tests kernels bench e2e stages sanitize sweep profile train quality"}
ORDER="build tests kernels bench e2e stages sanitize sweep profile train quality"
EXP_KERNELS=${EXP_KERNELS:-"cublas cublas_fused wgmma tma"}
TEST_FILES=${TEST_FILES:-"test_cuda test_patch_bank test_regions:cuda test_approx:cuda"}
PATH_TEST_FILES=${PATH_TEST_FILES:-"test_cuda test_patch_bank"}
# Without the kernels step: wgmma, whose tests passed on the H200 (2026-11-27).
OK_KERNELS=${OK_KERNELS:-wgmma}
PY=${PYTHON:-python3}
if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then export CUDA_HOME=/usr/local/cuda; fi
export PATH="${CUDA_HOME:-/usr/local/cuda}/bin:$PATH"
BUDGET=${BUDGET_S:-560}
VGG="$CARRY/vgg19_conv1_1-conv3_1_torchvision.pth"
CKPT="$CARRY/runs/decoder.ckpt"
export STYLESWAP_VGG19_WEIGHTS="$VGG"
NOT_RUN=""
OK_FINAL=0  # 1 once OK_KERNELS can no longer change (after the kernels step, run or not)

now() { if [ -n "${GPU_CHECK_CLOCK:-}" ]; then cat "$GPU_CHECK_CLOCK"; else date +%s; fi; }
T0=$(now)
left() { echo $(( BUDGET - ($(now) - T0) )); }
# The seconds a later step keeps for itself while earlier ones run: its estimated time on an H100/H200
# (docs/gpu_session.md, "Budget"); 0 for the steps that take what is left.
reserve_for() {
  case $1 in
    bench) echo "${RESERVE_bench:-60}" ;;
    sanitize) echo "${RESERVE_sanitize:-60}" ;;  # memcheck + racecheck of the first path, 30 s each
    sweep)  # nothing once OK_KERNELS is final (after the kernels step) without cublas_fused, the path it times
      if [ -z "${TILE_SWEEP:-}" ] || { [ "$OK_FINAL" = 1 ] && [[ " $OK_KERNELS " != *" cublas_fused "* ]]; }; then
        echo 0
      else echo "${RESERVE_sweep:-20}"; fi ;;
    *) echo 0 ;;
  esac
}
# reserve_after STEP: what the steps after STEP (in ORDER, those asked for) keep for themselves.
reserve_after() {
  local total=0 seen=0 s
  for s in $ORDER; do
    if [ $seen = 1 ] && has "$s"; then total=$(( total + $(reserve_for "$s") )); fi
    [ "$s" = "$1" ] && seen=1
  done
  echo $total
}
# limit CAP [RESERVE]: the cap clipped to what is left of the budget minus RESERVE (at least 1 s)
limit() { local l=$(( $(left) - ${2:-0} )); l=$(( $1 < l ? $1 : l )); echo $(( l > 1 ? l : 1 )); }
# capped CAP CMD...: CMD under timeout (TERM at CAP s, KILL 10 s later); a dry run's stub reads GPU_CHECK_CAP.
capped() { local cap=$1; shift; GPU_CHECK_CAP=$cap timeout -k 10 "$cap" "$@"; }
stamp() { echo "[gpu_check +$(( $(now) - T0 ))s] $*" | tee -a "$RUN/summary.txt"; }
has() { [[ " $STEPS " == *" $1 "* ]]; }
# want STEP MIN_S [KEEP_S]: the step is asked for and at least MIN_S seconds are left besides KEEP_S,
# by default what the later steps keep for themselves (else noted as not run)
want() {
  has "$1" || return 1
  local keep=${3:-$(reserve_after "$1")}
  if [ $(( $(left) - keep )) -lt "$2" ]; then
    NOT_RUN="$NOT_RUN $1"; stamp "$1 not run: $(left) s left, $keep s kept for later steps, needs >= $2 s"; return 1
  fi
  stamp "$1"
}
pack() {
  tar czf "$OUT/gpu_run.tgz.part" -C "$(dirname "$RUN")" "$(basename "$RUN")" 2>/dev/null && mv "$OUT/gpu_run.tgz.part" "$OUT/gpu_run.tgz"
  for f in summary.txt bench.json sweep.json e2e_cuda.json; do [ -f "$RUN/$f" ] && cp "$RUN/$f" "$OUT/"; done
  [ -f "$CKPT" ] && cp "$CKPT" "$OUT/decoder.ckpt"
  return 0
}

# exit_name RC CAP SECONDS [NOMINAL]: how a capped command ended, in words: a timeout (124; 137 = killed
# after the TERM was ignored) or a crash (128 + signal) is named as such; a timeout at a cap that the
# budget had clipped below the step's own (NOMINAL) is "CUT SHORT", the budget's doing, not the command's.
exit_name() {
  local rc=$1 cap=$2 el=$3 nominal=${4:-$2}
  if [ "$rc" -eq 124 ] || { [ "$rc" -eq 137 ] && [ "$el" -ge "$cap" ]; }; then
    if [ "$cap" -lt "$nominal" ]; then echo "CUT SHORT at $cap s (the budget left it $cap of its $nominal s)"; else echo "TIMEOUT after $cap s"; fi
  elif [ "$rc" -gt 128 ]; then echo "CRASHED (SIG$(kill -l $(( rc - 128 )) 2>/dev/null || echo $(( rc - 128 ))), exit $rc)"
  else echo "exit $rc"; fi
}

# pytest_run LOG CAP KEEP KERNEL EMPTY_OK SPEC [KEXPR]: one pytest process on tests/FILE.py (SPEC = FILE,
# or FILE:EXPR for the file's tests that -k EXPR selects) under CAP clipped to the budget less KEEP
# seconds (limit), STYLESWAP_MATCH_KERNEL=KERNEL ("" = unset: the default path), -k "(KEXPR) and
# (EXPR)". Sets VERDICT to one line and returns 0 only for a pass: exit 0 with at least one test
# passed, or 5 (nothing selected) where EMPTY_OK=1. VERDICT_SHORT: passed, FAILED, TIMEOUT after N s,
# CUT SHORT ..., CRASHED (SIGSEGV, exit 139), NO TEST RAN, NO TESTS SELECTED, ... The exit code
# decides, not the log: -rfEs lists the FAILED, ERROR and SKIPPED lines (pytest.ini's -ra is replaced),
# -v names each test as it starts (the one a timeout or a crash interrupted is the last named), and a
# test that runs into the cap dumps its stack (faulthandler_timeout).
pytest_run() {
  local log=$1 nominal=$2 cap kernel=$4 empty_ok=$5 spec=$6 kexpr=${7:-}
  cap=$(limit "$nominal" "$3")
  local file=${spec%%:*} sel="" k
  [[ $spec == *:* ]] && sel=${spec#*:}
  k=$kexpr
  [ -n "$sel" ] && k="${k:+($k) and }($sel)"
  local args=(-m pytest "tests/$file.py" -v -rfEs -p no:cacheprovider -o "faulthandler_timeout=$(( cap > 10 ? cap - 5 : cap ))")
  [ -n "$k" ] && args+=(-k "$k")
  local envs=(env -u STYLESWAP_MATCH_KERNEL COLUMNS=250)  # (COLUMNS: FAILED lines cut at 250, not 80)
  [ -n "$kernel" ] && envs=(env COLUMNS=250 "STYLESWAP_MATCH_KERNEL=$kernel")
  local t0 rc line passed
  t0=$(now)
  capped "$cap" "${envs[@]}" $PY "${args[@]}" > "$log" 2>&1
  rc=$?
  line=$(grep -E "(passed|failed|error|skipped|deselected|no tests ran)[^=]* in [0-9.]+s" "$log" | tail -1 | tr -d '=' | sed 's/^ *//; s/ *$//')
  passed=$(grep -oE "[0-9]+ passed" <<< "$line" | cut -d' ' -f1)
  case $rc in
    0) if [ "${passed:-0}" -gt 0 ]; then VERDICT="passed: $line" VERDICT_SHORT=passed; return 0; fi
       VERDICT_SHORT="NO TEST RAN" VERDICT="NO TEST RAN (every test skipped?): $line" ;;
    1) VERDICT_SHORT=FAILED VERDICT="FAILED: $line" ;;
    5) if [ "$empty_ok" = 1 ]; then VERDICT="no test selected (none depends on the path)" VERDICT_SHORT=empty; return 0; fi
       VERDICT_SHORT="NO TESTS SELECTED" VERDICT="NO TESTS SELECTED (exit 5)" ;;
    2) VERDICT_SHORT=INTERRUPTED VERDICT="INTERRUPTED (exit 2: a collection error?): $line" ;;
    3 | 4) VERDICT_SHORT="PYTEST ERROR" VERDICT="PYTEST ERROR (exit $rc)" ;;
    *) VERDICT_SHORT=$(exit_name $rc "$cap" $(( $(now) - t0 )) "$nominal")
       local where
       where=$(grep -oE 'File "[^"]*tests/[^"]*", line [0-9]+ in test_[A-Za-z0-9_]+' "$log" | tail -1 | sed 's|File "[^"]*/tests/|tests/|; s|", line| line|')
       [ -z "$where" ] && where=$(grep -oE "tests/[A-Za-z0-9_]+\.py::[^ ]+" "$log" | tail -1)
       VERDICT="$VERDICT_SHORT${where:+ in $where}" ;;
  esac
  return 1
}
# Adds LOG's FAILED / ERROR lines and the last lines of a crash to the summary.
report_failures() {
  grep -E "^(FAILED|ERROR) |^Fatal Python error|^E +[A-Za-z]*(Error|Exception)" "$1" | head -${2:-10} | cut -c1-300 | tee -a "$RUN/summary.txt"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" 2>&1
  nvcc --version 2>&1 | tail -1; echo "steps: $STEPS; budget ${BUDGET}s"; } | tee "$RUN/env.txt"

cuda_built() { $PY -c "import styleswap_ext, sys; sys.exit(0 if styleswap_ext.CUDA_BUILT else 1)" > /dev/null 2>&1; }
if has build && ! cuda_built; then
  stamp "build (sm_90a)"
  rm -rf build styleswap_ext/_C*.so
  export FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0 STYLESWAP_PTXAS_VERBOSE=1 MAX_JOBS=${MAX_JOBS:-$(nproc)}
  t0=$(now) cap=$(limit 330)
  capped $cap $PY setup.py build_ext --inplace > "$RUN/build.log" 2>&1
  rc=$?
  grep -E "ptxas info|bytes stack frame|spill|Compiling entry|Function properties" "$RUN/build.log" > "$RUN/ptxas.log"
  stamp "build rc=$rc$([ $rc -ne 0 ] && echo " ($(exit_name $rc $cap $(( $(now) - t0 )) 330))")"
  if [ $rc -ne 0 ]; then grep -E "error" "$RUN/build.log" | head -30; tail -20 "$RUN/build.log"; pack; exit 1; fi
fi
$PY -c "import styleswap_ext, torch; assert styleswap_ext.CUDA_BUILT, 'no CUDA kernels'; print('import ok', torch.cuda.is_available())" 2>&1 | tee -a "$RUN/summary.txt" || { pack; exit 1; }
pack

if want tests 30 0; then
  # Default match path, first of all (nothing is kept for later steps here). One process per file: a
  # crash in one (2026-11-27: a SIGSEGV in test_cuda.py) must not hide the others.
  for spec in $TEST_FILES; do
    f=${spec%%:*}
    pytest_run "$RUN/tests_$f.log" ${TESTS_CAP_S:-75} 0 "" 0 "$spec" "not experimental"
    stamp "tests $spec: $VERDICT"
    report_failures "$RUN/tests_$f.log" 20
  done
  pack
fi

if want kernels 30; then
  # The other match paths (STYLESWAP_MATCH_KERNEL), before the figures that use them: is the code there,
  # do a path's own tests pass (short cap: a pipeline that deadlocks shows up here as a timeout), does
  # the CUDA suite pass with it, how fast is it next to the bare GEMM (here only when the bench step is
  # not asked for; otherwise the bench step times them)?
  $PY -c "from styleswap_ext import _C; print('wgmma_available', _C.wgmma_available(0))" 2>&1 | tee -a "$RUN/summary.txt"
  OK_KERNELS="" FAILED_KERNELS=""
  reserve=$(reserve_after kernels)
  for kernel in $EXP_KERNELS; do
    if [ $(( $(left) - reserve )) -lt 30 ]; then
      NOT_RUN="$NOT_RUN kernels-$kernel"; stamp "kernel $kernel not tested: $(left) s left, $reserve s kept for later steps"; continue
    fi
    # (own tests: "not KERNEL_fused" because -k matches substrings, and cublas's own tests are not cublas_fused's)
    if ! pytest_run "$RUN/tests_own_$kernel.log" ${OWN_CAP_S:-45} $reserve "" 0 test_cuda "experimental and $kernel and not ${kernel}_fused"; then
      stamp "kernel $kernel, own tests: $VERDICT"
      report_failures "$RUN/tests_own_$kernel.log"
      if [[ $VERDICT_SHORT == "CUT SHORT"* ]]; then NOT_RUN="$NOT_RUN kernels-$kernel"
      else FAILED_KERNELS="$FAILED_KERNELS $kernel (own tests: $VERDICT_SHORT)"; fi
      continue
    fi
    stamp "kernel $kernel, own tests: $VERDICT"
    ok=1
    for spec in $PATH_TEST_FILES; do
      f=${spec%%:*}
      pytest_run "$RUN/tests_${kernel}_$f.log" ${PATH_CAP_S:-100} $reserve "$kernel" 1 "$spec" "${PATH_TESTS_K:-not experimental}"
      rc=$?
      stamp "tests $spec (STYLESWAP_MATCH_KERNEL=$kernel): $VERDICT"
      report_failures "$RUN/tests_${kernel}_$f.log"
      [ $rc = 0 ] && continue
      ok=0
      # cut short by the budget: not tested (a second call can), not failed
      if [[ $VERDICT_SHORT == "CUT SHORT"* ]]; then NOT_RUN="$NOT_RUN kernels-$kernel"; break; fi
      FAILED_KERNELS="$FAILED_KERNELS $kernel ($spec: $VERDICT_SHORT)"
    done
    [ $ok = 1 ] && OK_KERNELS="$OK_KERNELS $kernel"
  done
  OK_KERNELS=$(echo $OK_KERNELS)
  stamp "kernels passed: ${OK_KERNELS:-none}"
  stamp "kernels failed:${FAILED_KERNELS:- none}"
  if [ -n "$OK_KERNELS" ] && ! has bench && [ $(( $(left) - reserve )) -ge 40 ]; then
    capped $(limit 100 $reserve) $PY benchmarks/bench_gpu.py --kernels "$(echo $OK_KERNELS | tr ' ' ,)" --skip conv,tiles,bank,agree \
      --highest-case "" --cases 128:128,256:256,1024:256 --out "$RUN/bench_kernels.json" > "$RUN/bench_kernels.log" 2> "$RUN/bench_kernels.err"
    stamp "bench kernels rc=$?"
  fi
  pack
fi
OK_FINAL=1

if want bench 60; then
  bench_args=(--out "$RUN/bench.json")
  [ -n "${BENCH_CASES:-}" ] && bench_args+=(--cases "$BENCH_CASES")
  [ -n "${BENCH_SKIP:-}" ] && bench_args+=(--skip "$BENCH_SKIP")
  [ -n "${CONV_AT+set}" ] && bench_args+=(--conv-at "$CONV_AT")
  [ -n "${HIGHEST_CASE+set}" ] && bench_args+=(--highest-case "$HIGHEST_CASE")
  # the match paths that passed the kernels step (or OK_KERNELS as given), beside the default; the tile
  # sweep is its own step, after the sanitizer
  [ -n "$OK_KERNELS" ] && bench_args+=(--kernels "$(echo $OK_KERNELS | tr ' ' ,)")
  cap=$(limit 160 $(reserve_after bench))
  t0=$(now)
  capped $cap $PY benchmarks/bench_gpu.py "${bench_args[@]}" ${BENCH_ARGS:-} > "$RUN/bench.log" 2> "$RUN/bench.err"
  rc=$?
  stamp "bench rc=$rc$([ $rc -ne 0 ] && echo " ($(exit_name $rc $cap $(( $(now) - t0 )) 160))")"
  if [ $rc -ne 0 ] && [ -s "$RUN/bench.json" ]; then  # cut short: report what was measured
    $PY benchmarks/bench_gpu.py --table-from "$RUN/bench.json" >> "$RUN/bench.log" 2>&1
  fi
  pack
fi

if want e2e 40; then
  # Issue 6: stylize end to end (fresh process each: load, encode, swap, decode, save), 1024 px style,
  # TF32. The bar cases first; the conv-reference pipeline afterwards (it runs out of memory above 1024 px).
  if [ -f "$VGG" ]; then
    capped $(limit 110 $(reserve_after e2e)) $PY benchmarks/e2e.py --device cuda --precision tf32 --style-size 1024 --impls ours \
      --sizes ${E2E_SIZES:-4096 3840x2160 2048 1024 512} --formats ${E2E_FORMATS:-png jpg} --timeout 60 \
      --vgg-weights "$VGG" --json "$RUN/e2e_cuda.json" --png "$RUN/e2e_cuda.png" > "$RUN/e2e.log" 2>&1
    stamp "e2e ours rc=$?"
    # The bar cases again with each match path that passed its tests.
    for kernel in $OK_KERNELS; do
      STYLESWAP_MATCH_KERNEL=$kernel capped $(limit 60 $(reserve_after e2e)) $PY benchmarks/e2e.py --device cuda --precision tf32 --style-size 1024 \
        --impls ours --sizes 4096 3840x2160 --formats ${E2E_FORMATS:-jpg png} --timeout 40 \
        --vgg-weights "$VGG" --json "$RUN/e2e_cuda_$kernel.json" --png "$RUN/e2e_cuda_$kernel.png" >> "$RUN/e2e.log" 2>&1
      stamp "e2e ours (STYLESWAP_MATCH_KERNEL=$kernel) rc=$?"
    done
    if [ "${E2E_REFERENCE:-1}" = 1 ]; then  # E2E_REFERENCE=0: the reference's figures are already known
      capped $(limit 60 $(reserve_after e2e)) $PY benchmarks/e2e.py --device cuda --precision tf32 --style-size 1024 --impls reference \
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
  capped $(limit 90 $(reserve_after stages)) $PY benchmarks/e2e_stages.py --size 4096 --kernels default $OK_KERNELS --formats jpg png \
    --vgg-weights "$VGG" --json "$RUN/stages_4096.json" > "$RUN/stages.log" 2>&1
  stamp "stages rc=$?"
  pack
fi

if want sanitize 30; then
  SAN=${SANITIZER:-$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)}
  if [ -x "$SAN" ]; then
    # The match paths that passed, cublas_fused first (the fused reduce kernel, issue 37; RESERVE_sanitize
    # keeps its memcheck and racecheck their time whatever the steps before took); SANITIZE_DEFAULT=1 adds
    # the default kernel (clean on the H200, 2026-11-27). With none, the default kernel once: every run
    # also calls the fused reduce through the tiled driver's private op (sanitize_small.py).
    san_kernels=$( { [ "${SANITIZE_DEFAULT:-1}" = 1 ] && echo default; for k in $OK_KERNELS; do [ "$k" = cublas_fused ] && echo 0 $k || echo 1 $k; done | sort -s -k1,1 | cut -d' ' -f2; } | tr '\n' ' ')
    [ -z "${san_kernels// }" ] && san_kernels=default
    reserve=$(reserve_after sanitize)
    first=1
    for kernel in $san_kernels; do
      for tool in memcheck racecheck; do
        # the first path's memcheck leaves its racecheck 30 s, where both fit
        keep=$reserve
        [ $first = 1 ] && [ $tool = memcheck ] && [ $(( $(left) - reserve )) -ge 60 ] && keep=$(( reserve + 30 ))
        if [ $(( $(left) - keep )) -lt 30 ]; then
          NOT_RUN="$NOT_RUN sanitize-$tool-$kernel"; stamp "sanitize $tool $kernel not run: $(left) s left, $keep s kept"; continue
        fi
        cap=$(limit ${SANITIZE_CAP_S:-120} $keep)
        t0=$(now)
        capped $cap env STYLESWAP_MATCH_KERNEL=$kernel "$SAN" --tool $tool --error-exitcode 9 $PY benchmarks/sanitize_small.py \
          > "$RUN/sanitize_${tool}_$kernel.log" 2>&1
        rc=$?
        case $rc in
          0) what=clean ;;
          9) what="ERRORS FOUND" ;;
          *) what=$(exit_name $rc $cap $(( $(now) - t0 )) ${SANITIZE_CAP_S:-120}) ;;
        esac
        stamp "sanitize $tool $kernel: $what : $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$RUN/sanitize_${tool}_$kernel.log" | tail -1)"
      done
      first=0
    done
  else
    stamp "compute-sanitizer not found"
  fi
  pack
fi

if [ -n "${TILE_SWEEP:-}" ] && has sweep && [[ " $OK_KERNELS " != *" cublas_fused "* ]]; then
  stamp "sweep skipped: cublas_fused did not pass its tests"
elif [ -n "${TILE_SWEEP:-}" ] && want sweep 20; then
  # Tile shapes of the fused path (STYLESWAP_TILED_TILE="ROWS,COLS"), last: the default tile follows it
  # (docs/gpu_session.md), but it is worth less than the sanitizer. Beside the bare GEMM and the default tile.
  cap=$(limit ${SWEEP_CAP_S:-90} $(reserve_after sweep))
  t0=$(now)
  capped $cap $PY benchmarks/bench_gpu.py --cases 256:256 --modes tf32,bf16 --highest-case "" --skip conv,peer,tiles,bank,agree \
    --kernels cublas_fused --tile-sweep "$TILE_SWEEP" --out "$RUN/sweep.json" > "$RUN/sweep.log" 2> "$RUN/sweep.err"
  rc=$?
  stamp "sweep rc=$rc$([ $rc -ne 0 ] && echo " ($(exit_name $rc $cap $(( $(now) - t0 )) ${SWEEP_CAP_S:-90}))")"
  pack
fi

if want profile 30; then
  NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
  if [ -x "$NCU" ]; then
    for kernel in default $OK_KERNELS; do
      if [ "$(left)" -lt 30 ]; then NOT_RUN="$NOT_RUN profile-$kernel"; continue; fi
      STYLESWAP_MATCH_KERNEL=$kernel capped $(limit 60) "$NCU" --clock-control none -k regex:match -c 2 \
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
    capped $(( TL + 30 )) $PY -m styleswap_ext train-decoder --content-dir "$CARRY/data/content" --style-dir "$CARRY/data/style" \
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
    capped $(limit 200) $PY benchmarks/quality_report.py --decoder "$CKPT" --content-dir "$CARRY/data/content" \
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
[ -f "$RUN/sweep.log" ] && cat "$RUN/sweep.log"
exit 0
