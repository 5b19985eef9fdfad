"""AWQ and GPTQ checkpoints (quantization_config in config.json, or quantization="awq" /
"gptq"): the weights stay 4- or 8-bit on the CPU. Checkpoints are written by a round-to-nearest
quantizer packing the published layouts; the oracle is HF transformers with the dequantized
weights."""

from __future__ import annotations

import json
import os

import pytest
from group_quant_models import save_quantized, tiny_llama
from quant_oracle import assert_int8_close, assert_matches, ours, reference

CASES = {
    "awq-g64": dict(method="awq", group_size=64),
    "awq-g32": dict(method="awq", group_size=32),
    "awq-g128": dict(method="awq", group_size=128),
    "gptq-4bit-sym-g64": dict(method="gptq", bits=4, group_size=64, sym=True),
    "gptq-4bit-asym-g32": dict(method="gptq", bits=4, group_size=32, sym=False),
    "gptq-4bit-act-order": dict(method="gptq", bits=4, group_size=64, sym=True, act_order=True),
    # Each projection its own input order: fused parts that disagree are served dequantized.
    "gptq-4bit-act-order-unshared": dict(
        method="gptq", bits=4, group_size=32, sym=False, act_order=True, shared_order=False
    ),
    "gptq-4bit-per-channel": dict(method="gptq", bits=4, group_size=-1, sym=False),
    "gptq-8bit-sym": dict(method="gptq", bits=8, group_size=64, sym=True),
    "gptq-8bit-asym": dict(method="gptq", bits=8, group_size=128, sym=False),
}
# |logprob - HF| at the float level: the packed blocks hold the checkpoint's values exactly
# (symmetric ones as Q4_0 / Q8_0, zero points as integer z beside the scale); only the summation
# order differs.
TOL_FLOAT = 2e-4


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request, tmp_path_factory):
    kw = CASES[request.param]
    path = str(tmp_path_factory.mktemp("quant") / request.param)
    model = tiny_llama()
    save_quantized(path, model, **kw)
    return path, reference(model), kw


def test_float_path_matches_hf_on_the_dequantized_weights(case):
    path, ref, _ = case
    assert_matches(ours(path, "avx2", ref["forced"]), ref, TOL_FLOAT)


def test_default_level_close_to_hf(case):
    path, ref, _ = case
    assert_int8_close(ours(path, None, ref["forced"]), ref)


def test_quantization_argument_must_match_the_checkpoint(case):
    from taco_llm import LLM

    path, _, kw = case
    method = kw["method"]
    other = "gptq" if method == "awq" else "awq"
    assert LLM(model=path, quantization=method, skip_tokenizer_init=True)
    assert LLM(model=path, quantization=f"{method}_marlin", skip_tokenizer_init=True)
    with pytest.raises(ValueError, match=f'quantization "{other}" contradicts the checkpoint'):
        LLM(model=path, quantization=other, skip_tokenizer_init=True)


def _edit_config(path: str, **quant) -> None:
    cfg_path = os.path.join(path, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["quantization_config"].update(quant)
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)


def test_bad_quantization_configs(tmp_path):
    from taco_llm import LLM

    base = tiny_llama()
    for i, (edit, message) in enumerate(
        [
            (dict(quant_method="bitsandbytes"), 'quant_method "bitsandbytes" is not supported'),
            (dict(group_size=16), "group_size 16 is not supported"),
            (dict(bits=3), "AWQ checkpoints must have 4 bits"),
            (dict(version="gemv"), 'AWQ version "gemv" is not supported'),
            (dict(group_size=128 * 3), "scale rows"),
        ]
    ):
        path = str(tmp_path / f"m{i}")
        save_quantized(path, base, method="awq", group_size=64)
        _edit_config(path, **edit)
        with pytest.raises(ValueError, match=message):
            LLM(model=path, skip_tokenizer_init=True)


def test_quantization_on_an_unquantized_checkpoint(smol_model_dir):
    from taco_llm import LLM

    with pytest.raises(ValueError, match='quantization "awq": the checkpoint is not quantized'):
        LLM(model=smol_model_dir, quantization="awq", skip_tokenizer_init=True)
