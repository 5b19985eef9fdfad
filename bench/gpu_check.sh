#!/usr/bin/env bash
# `make gpu-check`: on a machine with an NVIDIA GPU, build the CUDA backend, run every `kernel`
# test (CUDA and CPU kernels) and the `bench` label, and append a dated summary to
# docs/gpu-runs.md. Exits non-zero when a test failed, after writing the summary.
#
# Offline GPU machines: the venv is layered (a .pth file) on a python3 that already has a CUDA
# torch, pybind11, scikit-build-core, nvidia-nccl-cu13, cmake and ninja; what it lacks travels in
# the checkout:
#   .whl/*.whl      nvidia-cutlass (pip download --no-deps nvidia-cutlass==4.2.0.0, 6.4 MB),
#                   installed with --no-index --no-deps: the build only reads its headers, and
#                   `import cutlass_library` needs none of its declared dependencies
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

log=$(mktemp -d)
# No _C module: nothing here imports it yet (the GPU pytest suite needs the CUDA model runner).
TACO_CUDA_JOBS=${TACO_CUDA_JOBS:-$(nproc)} TACO_CUDA_TARGETS=all \
  TACO_CUDA_CMAKE_ARGS=-DTACO_BUILD_PYTHON=OFF bash .ci/cuda_compile.sh \
  2>&1 | tee "$log/build.log" | tail -5
build_rc=${PIPESTATUS[0]}
kernel_rc=1 bench_rc=1
if [ "$build_rc" -eq 0 ]; then
  # The ctest of the cmake that configured the build (test discovery needs the same version).
  ctest_bin=$(sed -n 's/^CMAKE_CTEST_COMMAND:INTERNAL=//p' build/cuda/CMakeCache.txt)
  (cd build/cuda && "$ctest_bin" -L kernel --output-on-failure -j4) >"$log/kernel.log" 2>&1
  kernel_rc=$?
  (cd build/cuda && "$ctest_bin" -L bench -V) >"$log/bench.log" 2>&1
  bench_rc=$?
  tail -25 "$log/kernel.log"
  grep -oE 'bench [a-z_]+ .*time_us=.*|bench skipped.*|bench failed.*|device .*SMs' "$log/bench.log"
fi

{
  echo
  echo "## $(date -u '+%Y-%m-%d %H:%M UTC') — $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)"
  echo
  echo "Commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), \`make gpu-check\`."
  if [ "$build_rc" -ne 0 ]; then
    echo "- build FAILED (exit $build_rc); last lines:"
    echo '```'
    tail -20 "$log/build.log"
    echo '```'
  else
    summary=$(grep -E 'tests passed|tests failed' "$log/kernel.log" | tail -1)
    skipped=$(grep -c '(Skipped)' "$log/kernel.log")
    echo "- kernel tests (exit $kernel_rc): ${summary:-no ctest summary; last lines:}" \
      "(${skipped} skipped: a skip means the test saw no CUDA device)"
    if [ -z "$summary" ]; then
      echo '```'
      tail -15 "$log/kernel.log"
      echo '```'
    fi
    grep -E '^\s+[0-9]+ - .*\((Failed|Timeout|Not Run|SEGFAULT|Exception)' "$log/kernel.log" |
      sed 's/^ */  - failed: /'
    echo "- bench (exit $bench_rc):"
    echo '```'
    grep -oE 'bench [a-z_]+ .*time_us=.*|bench skipped.*|bench failed.*|device .*SMs' "$log/bench.log"
    echo '```'
  fi
} >>docs/gpu-runs.md
echo "gpu-check: summary appended to docs/gpu-runs.md (logs in $log)"
[ "$build_rc" -eq 0 ] && [ "$kernel_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
