"""GGUF files served straight from the file: weights stay block-quantized (Q8_0, Q4_0, Q4_1),
the config comes from the metadata, the tokenizer from the file. The reference is HF
transformers loading the same file (it dequantizes every weight to float32 and undoes the
converter's q/k interleave itself)."""

from __future__ import annotations

import pytest
from gguf_models import hf_model, write_gguf, write_random_k_gguf
from quant_oracle import assert_int8_close, assert_matches, hf_gguf, ours

CASES = {
    "llama-q8_0": ("llama", "Q8_0", True, None),
    "llama-q4_0": ("llama", "Q4_0", True, None),
    "llama-q4_1": ("llama", "Q4_1", True, None),
    "qwen2-q4_1": ("qwen2", "Q4_1", True, None),
    # An untied output layer in another type than the rest, and F32 for it.
    "llama-q4_1-head-q8_0": ("llama", "Q4_1", False, "Q8_0"),
    "llama-q4_0-head-f32": ("llama", "Q4_0", False, "F32"),
    "llama-q5_0": ("llama", "Q5_0", True, None),
    "llama-q5_1": ("llama", "Q5_1", True, None),
    # Mixed types inside the fused q/k/v and gate/up weights, as llama.cpp's _M files have.
    "llama-mixed": (
        "llama",
        "Q4_1",
        True,
        {"attn_v": "Q8_0", "ffn_up": "Q5_0", "ffn_down": "Q4_0"},
    ),
    # K-quants: random super-blocks (the gguf package cannot quantize to them).
    "llama-q4_k": ("llama", "Q4_K", True, "random"),
    "llama-q5_k": ("llama", "Q5_K", True, "random"),
    "llama-q6_k": ("llama", "Q6_K", True, "random"),
}
# |logprob - HF| at the float level: summation order only, and for the K-quants also their
# per-32-value scales d * scale and dmin * min rounded to fp16 when packed.
TOL_FLOAT = {"Q4_K": 2e-3, "Q5_K": 2e-3, "Q6_K": 2e-3}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request, tmp_path_factory):
    arch, qtype, tied, head = CASES[request.param]
    path = str(tmp_path_factory.mktemp("gguf") / f"{request.param}.gguf")
    if head == "random":
        write_random_k_gguf(path, qtype)
    elif isinstance(head, dict):
        write_gguf(path, hf_model(arch, tied=tied), arch, qtype, types=head)
    else:
        write_gguf(path, hf_model(arch, tied=tied), arch, qtype, head)
    return path, hf_gguf(path), qtype


def test_float_path_matches_hf_on_the_dequantized_weights(case):
    # At the AVX2 level the quantized linears widen the codes to float: the same arithmetic as
    # HF's float32 over the dequantized weights, up to summation order.
    path, ref, qtype = case
    tol = TOL_FLOAT.get(qtype, 2e-4)
    got = ours(path, "avx2", ref["forced"])
    assert_matches(got, ref, tol)
    for a, b in zip(got["logprobs"], ref["logprobs"]):
        assert a == pytest.approx(b, abs=tol)


def test_default_level_close_to_hf(case):
    # At the top level x is rounded to int8 per block of 32 (as llama.cpp does) for integer dot
    # products: logprobs stay close, and greedy choices agree wherever they are not near-ties.
    path, ref, _ = case
    assert_int8_close(ours(path, None, ref["forced"]), ref)


def test_config_comes_from_the_metadata(case):
    from taco_llm import LLM

    path, _, _ = case
    info = LLM(model=path, skip_tokenizer_init=True).model_info
    assert info["max_model_len"] == 256
    assert info["vocab_size"] == 256
    assert list(info["eos_token_ids"]) == [2]
    assert info["architecture"] == ("Qwen2ForCausalLM" if "qwen2" in path else "LlamaForCausalLM")


def test_quantization_argument(tmp_path):
    from taco_llm import LLM

    path = str(tmp_path / "m.gguf")
    write_gguf(path, hf_model("llama"), "llama", "Q8_0")
    assert LLM(model=path, quantization="gguf", load_format="gguf", skip_tokenizer_init=True)
    with pytest.raises(ValueError, match="quantization must be None or one of"):
        LLM(model=path, quantization="int3")
    with pytest.raises(NotImplementedError, match="quantization='bitsandbytes'"):
        LLM(model=path, quantization="bitsandbytes")
    with pytest.raises(ValueError, match="quantization='fp8' contradicts the model, a GGUF file"):
        LLM(model=path, quantization="fp8")
    with pytest.raises(ValueError, match="quantization='awq' contradicts the model, a GGUF file"):
        LLM(model=path, quantization="awq")
    with pytest.raises(ValueError, match="load_format='safetensors'"):
        LLM(model=path, load_format="safetensors")
    not_gguf = tmp_path / "notes.txt"
    not_gguf.write_text("hello")
    with pytest.raises(ValueError, match="not a GGUF file"):
        LLM(model=str(not_gguf))


def test_quantization_gguf_needs_a_gguf_file(smol_model_dir):
    from taco_llm import LLM

    with pytest.raises(ValueError, match="quantization='gguf' needs model to be a GGUF file"):
        LLM(model=smol_model_dir, quantization="gguf")
    with pytest.raises(ValueError, match="load_format='gguf' needs model to be a GGUF file"):
        LLM(model=smol_model_dir, load_format="gguf")


def test_unsupported_tensor_type_names_tensor_and_type(tmp_path):
    from taco_llm import LLM

    path = str(tmp_path / "q2.gguf")
    write_random_k_gguf(path, "Q2_K")
    with pytest.raises(ValueError, match=r'tensor "token_embd\.weight" has GGUF type Q2_K'):
        LLM(model=path, skip_tokenizer_init=True)


def test_truncated_file_is_an_error_and_the_next_engine_loads(tmp_path):
    from taco_llm import LLM

    path = str(tmp_path / "m.gguf")
    write_gguf(path, hf_model("llama"), "llama", "Q4_1")
    data = open(path, "rb").read()
    for cut in (10, 200, len(data) // 2, len(data) - 1):
        bad = tmp_path / f"cut{cut}.gguf"
        bad.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="cut"):
            LLM(model=str(bad), skip_tokenizer_init=True)
    assert LLM(model=path, skip_tokenizer_init=True)
