#!/usr/bin/env bash
# CUDA backend, compile and link only: CI machines have nvcc but no GPU. Builds
# taco_cuda, the CUDA kernel tests and benches, and libtaco with the CUDA dispatch in cpp/ops,
# against the CUDA build of torch in a venv of its own (the CPU venv .venv keeps the CPU torch).
# Runs nothing on a device: `make gpu-check` does that on a GPU machine.
#   TACO_CUDA_VENV  the venv to use or create (default .venv-cuda)
#   TACO_CUDA_JOBS  parallel compile jobs (default 2)
#   TACO_CUDA_TARGETS  targets to build (default: those above; `all` for everything)
#   TACO_CUDA_CMAKE_ARGS  extra configure arguments (e.g. -DTACO_BUILD_PYTHON=OFF)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nvcc >/dev/null; then
  echo "cuda_compile: nvcc not on PATH, skipped"
  exit 0
fi
VENV=${TACO_CUDA_VENV:-.venv-cuda}
BUILD=build/cuda
start=$(date +%s)
mkdir -p "$BUILD"

if [ ! -f "$VENV/.deps" ]; then
  test -x "$VENV/bin/python" || "${PY:-python3}" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q torch==2.14.1 pybind11==3.1.0 scikit-build-core==1.1.2 \
    nvidia-cutlass==4.2.0.0 nvidia-nccl-cu13==2.30.7 numpy ninja cmake
  touch "$VENV/.deps"
fi
VPY=$(cd "$VENV" && pwd)/bin/python
export PATH=$(dirname "$VPY"):$PATH
# cmake and ninja from the venv's wheels where it has them: a distribution's cmake may be too old
# for nvcc 13's C++20 (seen with Debian's 3.25), and a layered venv has no bin/cmake of its own.
for tool in "cmake.CMAKE_BIN_DIR" "ninja.BIN_DIR"; do
  if dir=$("$VPY" -c "import ${tool%%.*}; print(${tool})" 2>/dev/null); then PATH=$dir:$PATH; fi
done
export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/ccache}
# torch's CMake config otherwise adds every architecture it knows to the nvcc flags.
export TORCH_CUDA_ARCH_LIST="8.0;9.0a"

# The toolkit root: nvcc on PATH may be a wrapper script outside it, so ask nvcc itself.
cuda_root=${CUDA_HOME:-$(cd "$BUILD" && touch probe.cu &&
  nvcc --dryrun -c probe.cu 2>&1 | sed -n 's/^#\$ TOP=//p' | head -1)}
# libnvrtc comes with the CUDA torch wheel's nvidia-cuda-nvrtc dependency, not always the toolkit.
nvrtc=$("$VPY" - <<'PY'
import glob, os, nvidia
for root in nvidia.__path__:
    hits = sorted(glob.glob(os.path.join(root, "*", "lib", "libnvrtc.so*")))
    hits = [h for h in hits if "builtins" not in h and ".alt." not in h]
    if hits:
        print(hits[0]); break
PY
) || nvrtc=""
launcher=()
for cc in "$PWD/.venv/bin/ccache" "$(command -v ccache || true)"; do
  if [ -x "$cc" ]; then
    launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER="$cc" -DCMAKE_CUDA_COMPILER_LAUNCHER="$cc")
    break
  fi
done

cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DTACO_PYTHON="$VPY" -DPython_EXECUTABLE="$VPY" -DTACO_REQUIRE_CUDA=ON \
  -DCMAKE_CUDA_COMPILER="$cuda_root/bin/nvcc" -DCUDA_TOOLKIT_ROOT_DIR="$cuda_root" \
  -DCMAKE_CUDA_ARCHITECTURES="90a;80" ${nvrtc:+-DCUDA_nvrtc_LIBRARY="$nvrtc"} "${launcher[@]}" \
  ${TACO_CUDA_CMAKE_ARGS:-} \
  >"$BUILD.configure.log" 2>&1 || { cat "$BUILD.configure.log"; exit 1; }
if grep 'taco: CUDA backend off' "$BUILD.configure.log"; then exit 1; fi
targets=${TACO_CUDA_TARGETS:-taco_cuda test_cuda_kernels bench_cuda_kernels bench_gemm taco}
# shellcheck disable=SC2086  # the target list splits on spaces
cmake --build "$BUILD" -j "${TACO_CUDA_JOBS:-2}" --target $targets
echo "cuda_compile: built $targets for sm_90a and sm_80 in $(( $(date +%s) - start )) s"
