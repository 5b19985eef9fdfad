"""Shared fixtures: the default real model (SmolLM2-135M-Instruct as an HF directory) and an
engine on it, built once per test module."""

import os

import pytest

# The CPU suite stays on the CPU where a GPU is visible too (device="auto" would pick it, and the
# oracles here are HF on the CPU); `make gpu-check` sets TACO_TEST_GPU=1 for test_gpu.py.
if os.environ.get("TACO_TEST_GPU") != "1":
    os.environ["CUDA_VISIBLE_DEVICES"] = ""


# Module scope is enough: the directory is converted once and cached on disk, so later lookups
# only check its completion marker.
@pytest.fixture(scope="module")
def smol_model_dir() -> str:
    from taco_llm.default_model import default_model_dir

    return default_model_dir()


@pytest.fixture(scope="module")
def smol_llm(smol_model_dir):
    from taco_llm import LLM

    llm = LLM(model=smol_model_dir, dtype="float32", seed=0)
    yield llm
    del llm
