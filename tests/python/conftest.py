"""Shared fixtures: the default real model (SmolLM2-135M-Instruct as an HF directory) and an
engine on it, built once per test module."""

import pytest


@pytest.fixture(scope="session")
def smol_model_dir() -> str:
    from taco_llm.default_model import default_model_dir

    return default_model_dir()


@pytest.fixture(scope="module")
def smol_llm(smol_model_dir):
    from taco_llm import LLM

    llm = LLM(model=smol_model_dir, dtype="float32", seed=0)
    yield llm
    del llm
