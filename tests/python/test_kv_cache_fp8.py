"""8-bit KV caches (kv_cache_dtype="fp8" / "fp8_e4m3" / "fp8_e5m2"): K and V are stored as
8-bit floats of x / scale (the checkpoint's k_scale / v_scale, else 1) and read back as
value * scale. The oracle is HF transformers whose attention sees K and V rounded the same way."""

from __future__ import annotations

import os

import pytest
import torch
from group_quant_models import tiny_llama
from quant_oracle import int8_diffs, ours, reference
from safetensors.torch import load_file, save_file

FORMATS = {"fp8": (torch.float8_e4m3fn, 448.0), "fp8_e5m2": (torch.float8_e5m2, 57344.0)}
TOL_FLOAT = 2e-4
# Our K and HF's differ in the last float bits (summation order), so now and then one element
# lands on the other side of an 8-bit rounding boundary: one code apart moves a logprob by up to a
# few 1e-3. Almost every position must still agree to the float level.
TOL_ROUNDING_FLIP = 1e-2


def assert_close(got: dict, ref: dict) -> None:
    assert got["ids"] == ref["ids"]
    diffs = sorted(int8_diffs(got, ref))
    print(f"{got['isa']}: |logprob - HF| max {diffs[-1]:.6f}, median {diffs[len(diffs) // 2]:.2e}")
    assert diffs[-1] < TOL_ROUNDING_FLIP
    assert diffs[int(0.95 * len(diffs))] < TOL_FLOAT


def fake_quantized_attention(fmt: torch.dtype, max_value: float, k_scale: float, v_scale: float):
    """An HF attention function that attends over K / k_scale and V / v_scale rounded to fmt."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    def rounded(t: torch.Tensor, scale: float) -> torch.Tensor:
        x = (t.float() / scale).clamp(-max_value, max_value)
        return (x.to(fmt).float() * scale).to(t.dtype)

    def attention(module, query, key, value, attention_mask, **kwargs):
        key, value = rounded(key, k_scale), rounded(value, v_scale)
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)

    return attention


def reference_with_rounded_kv(model, kv_cache_dtype: str, k_scale=1.0, v_scale=1.0) -> dict:
    from transformers import AttentionInterface

    name = f"taco_test_{kv_cache_dtype}_{k_scale}_{v_scale}"
    AttentionInterface.register(
        name, fake_quantized_attention(*FORMATS[kv_cache_dtype], k_scale, v_scale)
    )
    model.set_attn_implementation(name)
    try:
        return reference(model)
    finally:
        model.set_attn_implementation("sdpa")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    model = tiny_llama()
    path = str(tmp_path_factory.mktemp("kv") / "m")
    model.save_pretrained(path)
    return path, model


@pytest.mark.parametrize("isa", [None, "avx2"])
@pytest.mark.parametrize("kv_cache_dtype", sorted(FORMATS))
def test_matches_hf_attending_over_the_rounded_cache(model_dir, kv_cache_dtype, isa):
    path, model = model_dir
    ref = reference_with_rounded_kv(model, kv_cache_dtype)
    got = ours(path, isa, ref["forced"], kv_cache_dtype=kv_cache_dtype)
    assert_close(got, ref)
    # The rounding is real: the plain HF model disagrees by far more.
    assert max(int8_diffs(got, reference(model))) > 100 * TOL_FLOAT


def test_checkpoint_kv_scales(tmp_path):
    model = tiny_llama(seed=2)
    path = str(tmp_path / "m")
    model.save_pretrained(path)
    st = os.path.join(path, "model.safetensors")
    tensors = load_file(st)
    for i in range(model.config.num_hidden_layers):
        tensors[f"model.layers.{i}.self_attn.k_scale"] = torch.tensor(0.5)
        tensors[f"model.layers.{i}.self_attn.v_scale"] = torch.tensor(2.0)
    save_file(tensors, st)
    ref = reference_with_rounded_kv(model, "fp8", 0.5, 2.0)
    got = ours(path, None, ref["forced"], kv_cache_dtype="fp8_e4m3")
    assert_close(got, ref)

    from taco_llm import LLM

    tensors["model.layers.1.self_attn.v_scale"] = torch.tensor(-1.0)
    save_file(tensors, st)
    with pytest.raises(ValueError, match='"model.layers.1.self_attn.v_scale" must be one positive'):
        LLM(model=path, kv_cache_dtype="fp8", skip_tokenizer_init=True)


def test_cache_holds_twice_the_blocks_of_bf16(model_dir):
    from taco_llm import LLM

    path, _ = model_dir
    blocks = {
        kv: LLM(
            model=path, kv_cache_dtype=kv, dtype="bfloat16", skip_tokenizer_init=True
        ).model_info["num_device_blocks"]
        for kv in ("auto", "fp8")
    }
    assert blocks["fp8"] == 2 * blocks["auto"]


def test_prefix_caching_keeps_the_outputs(model_dir):
    from taco_llm import LLM, SamplingParams

    path, _ = model_dir
    prefix = list(range(10, 60))
    prompts = [{"prompt_token_ids": prefix + [i, i + 1]} for i in range(6)]
    sp = SamplingParams(temperature=0, max_tokens=24, ignore_eos=True, logprobs=0)

    def run(**kwargs):
        llm = LLM(model=path, kv_cache_dtype="fp8", skip_tokenizer_init=True, **kwargs)
        outs = llm.generate(prompts, sp, use_tqdm=False)
        return [(o.outputs[0].token_ids, o.outputs[0].cumulative_logprob) for o in outs]

    # The shared prefix's cached 8-bit blocks are the ones a fresh prefill writes.
    assert run(enable_prefix_caching=True) == run()


def test_bad_kv_cache_dtype(model_dir):
    from taco_llm import LLM

    path, _ = model_dir
    with pytest.raises(ValueError, match="kv_cache_dtype must be one of"):
        LLM(model=path, kv_cache_dtype="int8", skip_tokenizer_init=True)


def _scales_file(path, scales, dtype="float8_e4m3fn") -> str:
    import json

    doc = {
        "model_type": "llama",
        "kv_cache": {
            "dtype": dtype,
            "scaling_factor": {"0": {str(i): s for i, s in enumerate(scales)}},
        },
    }
    path.write_text(json.dumps(doc))
    return str(path)


def test_quantization_param_path_scales(model_dir, tmp_path):
    # vLLM's KV-cache scales file: one scale per layer for K and V, over the checkpoint's.
    path, model = model_dir
    scales = _scales_file(tmp_path / "kv.json", [0.5] * model.config.num_hidden_layers)
    ref = reference_with_rounded_kv(model, "fp8", 0.5, 0.5)
    got = ours(path, None, ref["forced"], kv_cache_dtype="fp8", quantization_param_path=scales)
    assert_close(got, ref)


def test_bad_quantization_param_path(model_dir, tmp_path):
    from taco_llm import LLM

    path, model = model_dir
    layers = model.config.num_hidden_layers
    for doc, message in [
        (_scales_file(tmp_path / "a.json", [1.0] * (layers - 1)), "no scaling factor for layer"),
        (_scales_file(tmp_path / "b.json", [1.0, -2.0]), "must be a positive number"),
        (_scales_file(tmp_path / "c.json", [1.0] * layers, "int8"), "float8_e4m3fn"),
        (str(tmp_path / "missing.json"), "quantization_param_path must be a JSON file"),
    ]:
        with pytest.raises(ValueError, match=message):
            LLM(
                model=path,
                kv_cache_dtype="fp8",
                quantization_param_path=doc,
                skip_tokenizer_init=True,
            )
    # With the model dtype's cache the scales are unused, as in vLLM: a warning, not an error.
    good = _scales_file(tmp_path / "d.json", [1.0] * layers)
    with pytest.warns(UserWarning, match="not used"):
        LLM(model=path, quantization_param_path=good, skip_tokenizer_init=True)
