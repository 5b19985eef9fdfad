"""The CPU kernels are built for several x86-64 levels and chosen at run time: every level this
CPU supports serves the same fp32 greedy tokens as the default choice (HF-exact), and bf16 agrees
closely, so a wheel built on one machine is right on a CPU with fewer instruction sets."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

_LEVELS = ["avx512bf16", "avx512", "avx2", "generic"]

_SCRIPT = r"""
import json, sys
from taco_llm import LLM, SamplingParams, _C
model, dtype = sys.argv[1], sys.argv[2]
llm = LLM(model=model, dtype=dtype, seed=0)
prompts = ["The capital of France is", "def fibonacci(n):", "Once upon a time, in a land far away,"
           " there lived a dragon who loved to read books about"]
outs = llm.generate(prompts, SamplingParams(temperature=0.0, max_tokens=24, logprobs=0))
print(json.dumps({
    "isa": _C.cpu_isa(),
    "ids": [o.outputs[0].token_ids for o in outs],
    "logprobs": [[lp[t].logprob for lp, t in zip(o.outputs[0].logprobs, o.outputs[0].token_ids)]
                 for o in outs],
}))
"""


def _run(model_dir: str, dtype: str, isa: str | None) -> dict:
    env = dict(os.environ)
    env.pop("TACO_CPU_ISA", None)
    if isa is not None:
        env["TACO_CPU_ISA"] = isa
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, model_dir, dtype],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def default_fp32(smol_model_dir):
    return _run(smol_model_dir, "float32", None)


@pytest.mark.slow
@pytest.mark.parametrize("isa", _LEVELS[1:])
def test_each_level_serves_the_default_fp32_greedy_tokens(smol_model_dir, default_fp32, isa):
    forced = _run(smol_model_dir, "float32", isa)
    if forced["isa"] != isa:
        pytest.skip(f"this CPU lacks {isa} (runs {forced['isa']})")
    assert forced["ids"] == default_fp32["ids"]
    for got, want in zip(forced["logprobs"], default_fp32["logprobs"]):
        assert got == pytest.approx(want, abs=1e-4)


@pytest.mark.slow
def test_avx2_bf16_agrees_with_the_default(smol_model_dir):
    default = _run(smol_model_dir, "bfloat16", None)
    forced = _run(smol_model_dir, "bfloat16", "avx2")
    assert forced["isa"] == "avx2"
    # bf16 rounding differs between the AVX-512 and the scalar kernels' summation orders: the
    # first tokens agree, and the sampled tokens' logprobs stay close.
    for got, want in zip(forced["ids"], default["ids"]):
        assert got[:8] == want[:8]
    for got, want in zip(forced["logprobs"], default["logprobs"]):
        assert got[:8] == pytest.approx(want[:8], abs=0.1)


def test_unknown_level_falls_back_with_a_warning():
    env = dict(os.environ, TACO_CPU_ISA="no-such-level")
    proc = subprocess.run(
        [sys.executable, "-c", "from taco_llm import _C; print(_C.cpu_isa())"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert proc.stdout.strip() in _LEVELS
    assert "TACO_CPU_ISA=no-such-level" in proc.stderr
