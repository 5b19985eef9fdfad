"""Scheduling must never change greedy outputs: chunked prefill at several chunk sizes, prefix
caching, and a KV cache so small that the engine has to preempt, all on the real model."""

import pytest

pytest.importorskip("taco_llm._C", reason="the compiled engine is not built")

from taco_llm import LLM, SamplingParams, TokensPrompt  # noqa: E402
from taco_llm.metrics import Counter, Gauge  # noqa: E402

pytestmark = pytest.mark.slow

GREEDY = SamplingParams(temperature=0.0, max_tokens=12)


@pytest.fixture(scope="module")
def prompts(smol_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smol_model_dir)
    shared = "You are a helpful assistant. Answer briefly and precisely. " * 3
    texts = [
        shared + "What is the capital of France?",
        shared + "Name a primary color.",
        "def fibonacci(n):",
        "The quick brown fox jumps over the lazy dog. " * 4,
    ]
    return [TokensPrompt(prompt_token_ids=tok(t)["input_ids"]) for t in texts]


def _metrics(llm) -> dict[str, float]:
    """Read as vLLM users do: one loop over llm.get_metrics(), name -> value."""
    values = {}
    for m in llm.get_metrics():
        assert isinstance(m, (Counter, Gauge)), m
        if m.name == "vllm:request_success":
            values[f"{m.name}:{m.labels['finished_reason']}"] = m.value
        else:
            values[m.name] = m.value
    return values


def _run(model_dir, prompts, **engine_kwargs):
    llm = LLM(model=model_dir, dtype="float32", **engine_kwargs)
    return [list(o.outputs[0].token_ids) for o in llm.generate(prompts, GREEDY, use_tqdm=False)]


@pytest.fixture(scope="module")
def reference(smol_model_dir, prompts):
    return _run(smol_model_dir, prompts)


@pytest.mark.parametrize("chunk", [1, 7, 16])
def test_chunked_prefill_keeps_greedy_outputs(smol_model_dir, prompts, reference, chunk):
    ids = _run(
        smol_model_dir,
        prompts,
        enable_chunked_prefill=True,
        max_num_batched_tokens=chunk,
        max_num_seqs=chunk,
        max_model_len=512,
    )
    assert ids == reference


def test_prefix_caching_keeps_outputs_and_reports_hits(smol_model_dir, prompts, reference):
    llm = LLM(model=smol_model_dir, dtype="float32", enable_prefix_caching=True)
    first = llm.generate(prompts, GREEDY, use_tqdm=False)
    again = llm.generate(prompts, GREEDY, use_tqdm=False)
    assert [list(o.outputs[0].token_ids) for o in first] == reference
    assert [list(o.outputs[0].token_ids) for o in again] == reference
    block = 16
    for o in again:
        n = len(o.prompt_token_ids)
        assert o.num_cached_tokens % block == 0
        assert o.num_cached_tokens < n  # the last prompt token is always recomputed
        if n > block:  # at least one full block was computed before, so it must hit
            assert o.num_cached_tokens > 0
    m = _metrics(llm)
    assert 0 < m["vllm:prefix_cache_hits"] <= m["vllm:prefix_cache_queries"]
    # vLLM counts every prompt token, cached ones included; the engine computed the rest.
    prompt_tokens = 2 * sum(len(p["prompt_token_ids"]) for p in prompts)
    assert m["vllm:prompt_tokens"] == m["vllm:prefix_cache_queries"] == prompt_tokens
    assert m["taco:prompt_tokens_computed"] == prompt_tokens - m["vllm:prefix_cache_hits"]
    assert m["vllm:generation_tokens"] == sum(len(o.outputs[0].token_ids) for o in first + again)
    assert m["vllm:request_success:stop"] + m["vllm:request_success:length"] == 2 * len(prompts)
    assert m["vllm:num_requests_running"] == m["vllm:num_requests_waiting"] == 0
    assert 0.0 <= m["vllm:kv_cache_usage_perc"] <= 1.0


@pytest.mark.parametrize("mode", ["recompute", "swap"])
def test_tiny_kv_cache_preempts_and_keeps_outputs(smol_model_dir, prompts, mode):
    # Four sequences of 40-90 tokens need 16+ blocks of 16 tokens together; 10 blocks hold one
    # max_model_len (160) sequence, so the engine must preempt and resume.
    long_greedy = SamplingParams(temperature=0.0, max_tokens=48)
    llm = LLM(model=smol_model_dir, dtype="float32")
    reference = [
        list(o.outputs[0].token_ids) for o in llm.generate(prompts, long_greedy, use_tqdm=False)
    ]
    del llm
    tiny = LLM(
        model=smol_model_dir,
        dtype="float32",
        num_gpu_blocks_override=10,
        max_model_len=160,
        preemption_mode=mode,
        swap_space=1,
    )
    outs = tiny.generate(prompts, long_greedy, use_tqdm=False)
    assert [list(o.outputs[0].token_ids) for o in outs] == reference
    m = _metrics(tiny)
    assert m["vllm:num_preemptions"] > 0
    assert m["taco:kv_blocks_total"] == 10 and m["vllm:kv_cache_usage_perc"] == 0.0
    if mode == "swap":
        assert m["taco:num_swapped_out"] > 0
