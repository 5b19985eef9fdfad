"""FP8 weights: pre-quantized checkpoints (vLLM's "fp8" format and compressed-tensors' FP8
schemes, per-tensor or per-channel scales, static or dynamic activation scales) and
quantization="fp8" on a float checkpoint. The weights stay one byte each on the CPU; the oracle
is HF transformers with the dequantized weights."""

from __future__ import annotations

import json
import os

import pytest
import torch
from fp8_models import dequantize_, save_fp8
from group_quant_models import save_quantized, tiny_llama
from quant_oracle import assert_int8_close, assert_matches, int8_diffs, ours, reference
from safetensors.torch import load_file, save_file

CASES = {
    "fp8-dynamic": dict(fmt="fp8"),
    "fp8-static": dict(fmt="fp8", static=True),
    "compressed-tensors-channel": dict(fmt="compressed-tensors", per_channel=True),
    "compressed-tensors-tensor-static": dict(fmt="compressed-tensors", static=True),
}
# |logprob - HF| in float32: the codes are exact in bf16 and the products exact in float32; only
# the summation order differs.
TOL_FLOAT = 2e-4


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("fp8") / request.param)
    model = tiny_llama()
    save_fp8(path, model, **CASES[request.param])
    return path, reference(model)


@pytest.mark.parametrize("isa", [None, "avx2"])
def test_float32_matches_hf_on_the_dequantized_weights(case, isa):
    path, ref = case
    assert_matches(ours(path, isa, ref["forced"]), ref, TOL_FLOAT)


def test_bfloat16_close_to_hf(case):
    path, ref = case
    assert_int8_close(ours(path, None, ref["forced"], dtype="bfloat16"), ref)


def test_quantization_fp8_quantizes_a_float_checkpoint_at_load(tmp_path):
    model = tiny_llama(seed=1)
    path = str(tmp_path / "float")
    model.save_pretrained(path)
    dequantize_(model)  # what per-tensor FP8 at load makes of the projections
    ref = reference(model)
    for isa in (None, "generic"):
        assert_matches(ours(path, isa, ref["forced"], quantization="fp8"), ref, TOL_FLOAT)
    # Without quantization= the same directory serves its float weights: different logprobs.
    plain = ours(path, None, ref["forced"])
    assert max(int8_diffs(plain, ref)) > TOL_FLOAT


def test_quantization_argument_must_match_the_checkpoint(tmp_path):
    from taco_llm import LLM

    fp8, ct, awq = (str(tmp_path / n) for n in ("fp8", "ct", "awq"))
    save_fp8(fp8, tiny_llama(), fmt="fp8")
    save_fp8(ct, tiny_llama(), fmt="compressed-tensors")
    save_quantized(awq, tiny_llama(), method="awq", group_size=64)
    assert LLM(model=fp8, quantization="fp8", skip_tokenizer_init=True)
    assert LLM(model=ct, quantization="compressed-tensors", skip_tokenizer_init=True)
    for path, q in (
        (fp8, "awq"),
        (ct, "fp8"),
        (awq, "fp8"),
    ):
        with pytest.raises(ValueError, match=f'quantization "{q}" contradicts the checkpoint'):
            LLM(model=path, quantization=q, skip_tokenizer_init=True)


def _rewrite(path: str, config_edit=None, tensors_edit=None) -> None:
    if config_edit:
        cfg_path = os.path.join(path, "config.json")
        with open(cfg_path) as f:
            cfg = json.load(f)
        config_edit(cfg["quantization_config"])
        with open(cfg_path, "w") as f:
            json.dump(cfg, f)
    if tensors_edit:
        st = os.path.join(path, "model.safetensors")
        tensors = load_file(st)
        tensors_edit(tensors)
        save_file(tensors, st)


def test_bad_fp8_checkpoints(tmp_path):
    from taco_llm import LLM

    name = "model.layers.0.self_attn.q_proj"

    def block_size(q):
        q["weight_block_size"] = [128, 128]

    def int4_scheme(q):
        q["config_groups"]["group_0"]["weights"].update(num_bits=4, type="int")

    def group_strategy(q):
        q["config_groups"]["group_0"]["weights"]["strategy"] = "group"

    def no_scale(t):
        del t[name + ".weight_scale"]

    def block_scales(t):
        t[name + ".weight_scale"] = torch.ones(2, 2)

    for i, (fmt, cfg_edit, t_edit, message) in enumerate(
        [
            ("fp8", block_size, None, "block-wise FP8"),
            ("compressed-tensors", int4_scheme, None, "weights of 4-bit int are not supported"),
            ("compressed-tensors", group_strategy, None, 'weight strategy "group"'),
            ("fp8", None, no_scale, f'has no "{name}.weight_scale"'),
            ("fp8", None, block_scales, "not block-wise scales"),
        ]
    ):
        path = str(tmp_path / f"m{i}")
        save_fp8(path, tiny_llama(), fmt=fmt)
        _rewrite(path, cfg_edit, t_edit)
        with pytest.raises(ValueError, match=message):
            LLM(model=path, skip_tokenizer_init=True)
