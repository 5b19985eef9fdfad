"""vLLM compatibility details over the real engine core without a model
(tests/python/core_engine.py): get_metrics() as vLLM's metric objects, cumulative_logprob only
with logprobs, max_logprobs=0, vLLM's error phrases, and LLM.deprecate_legacy_api(). The real
tokenizer is used."""

import dataclasses
import warnings

import core_engine
import pytest
from core_engine import PROMPT_LOGPROB, cumulative_logprob, default_script, sampled_logprob

from taco_llm import LLM, EngineArgs, SamplingParams, TokensPrompt
from taco_llm.metrics import (
    Counter,
    FrontendStats,
    Gauge,
    Histogram,
    Metric,
    Vector,
    build_metrics,
)


def _core_llm(model_dir, engine_kwargs=None, **kwargs):
    return core_engine.make_llm(model_dir, engine_kwargs, disable_async_output_proc=True, **kwargs)


@pytest.fixture(scope="module")
def llm(smol_model_dir):
    return _core_llm(smol_model_dir)


def _first_tokens(out, index, count):
    """The tokens the executor's default script gives sequence `index` of `out`."""
    return default_script(out.prompt_token_ids, index)[:count]


# ---- get_metrics ----


def test_metric_classes_have_vllms_fields():
    fields = {cls: [f.name for f in dataclasses.fields(cls)] for cls in (Counter, Gauge)}
    assert fields == {Counter: ["name", "labels", "value"], Gauge: ["name", "labels", "value"]}
    assert [f.name for f in dataclasses.fields(Vector)] == ["name", "labels", "values"]
    assert [f.name for f in dataclasses.fields(Histogram)] == [
        "name",
        "labels",
        "count",
        "sum",
        "buckets",
    ]
    assert all(issubclass(c, Metric) for c in (Counter, Gauge, Vector, Histogram))


def test_get_metrics_names_types_and_values(smol_model_dir):
    # 16 KV blocks of 16 tokens with swap space: three requests growing to 121 tokens outgrow
    # the cache (one is swapped out, then back in), and a second call finds each prompt's full
    # blocks in the prefix cache.
    llm = _core_llm(
        smol_model_dir,
        {"num_device_blocks": 16, "num_cpu_blocks": 32},
        max_model_len=256,
        enable_prefix_caching=True,
        preemption_mode="swap",
    )
    engine = llm._engine
    prefix = "The quick brown fox jumps over the lazy dog. " * 4
    prompts = [prefix + word for word in ("One", "Two", "Three")]
    first = llm.generate(prompts, SamplingParams(max_tokens=80), use_tqdm=False)
    again = llm.generate(prompts, SamplingParams(max_tokens=3, n=2), use_tqdm=False)
    full_blocks = [(len(o.prompt_token_ids) - 1) // 16 * 16 for o in again]
    assert [o.num_cached_tokens for o in again] == full_blocks and min(full_blocks) > 0
    # Requests in flight: two 100-token prompts take 14 of the 16 blocks, two more wait.
    live = llm._C.SamplingOptions()
    live.max_tokens = 8
    for i in range(4):
        engine.add_request(f"live{i}", [1000 + 100 * i + j for j in range(100)], live)
    engine.step()
    raw = engine.metrics()
    assert raw["num_preemptions"] == raw["num_swapped_out"] >= 1
    assert raw["prefix_cache_hits"] >= sum(full_blocks)
    metrics = llm.get_metrics()
    assert all(isinstance(m, (Counter, Gauge)) for m in metrics)
    for m in metrics:
        assert m.labels["model_name"] == smol_model_dir and m.labels["engine"] == "0"
        assert type(m.value) is (int if isinstance(m, Counter) else float), m
    values = {m.name: m.value for m in metrics if m.name != "vllm:request_success"}
    assert values == {
        "vllm:num_requests_running": 2.0,
        "vllm:num_requests_waiting": 2.0,
        "vllm:kv_cache_usage_perc": 14 / 16,
        "vllm:prefix_cache_queries": raw["prefix_cache_queries"],
        "vllm:prefix_cache_hits": raw["prefix_cache_hits"],
        "vllm:num_preemptions": raw["num_preemptions"],
        "vllm:prompt_tokens": sum(len(o.prompt_token_ids) for o in first + again),
        "vllm:generation_tokens": 3 * 80 + 3 * 2 * 3 + 2,
        "taco:num_requests_swapped": 0.0,
        "taco:num_swapped_out": raw["num_swapped_out"],
        "taco:kv_blocks_used": 14.0,
        "taco:kv_blocks_total": 16.0,
        "taco:cpu_blocks_used": 0.0,
        "taco:num_steps": raw["num_steps"],
        "taco:prompt_tokens_computed": raw["num_prompt_tokens_computed"],
        # Without speculative decoding: no drafts.
        "vllm:spec_decode_num_drafts": 0,
        "vllm:spec_decode_num_draft_tokens": 0,
        "vllm:spec_decode_num_accepted_tokens": 0,
        "vllm:spec_decode_num_emitted_tokens": 0,
        "vllm:spec_decode_draft_acceptance_rate": 0.0,
        "taco:spec_decode_mean_accepted_length": 0.0,
    }
    success = {
        m.labels["finished_reason"]: m.value for m in metrics if m.name == "vllm:request_success"
    }
    assert success == {"stop": 0, "length": 9, "abort": 0}
    assert all(isinstance(m, Counter) for m in metrics if m.name == "vllm:request_success")
    assert all(engine.abort(f"live{i}") for i in range(4))


def test_prefix_cache_queries_zero_without_prefix_caching(llm):
    # docs/metrics.md: vllm:prefix_cache_queries is always 0 without enable_prefix_caching.
    llm.generate(["Hello there", "The capital of France is"], use_tqdm=False)
    values = {m.name: m.value for m in llm.get_metrics()}
    assert (values["vllm:prefix_cache_queries"], values["vllm:prefix_cache_hits"]) == (0, 0)


def test_interrupted_call_counts_aborted_sequences(smol_model_dir):
    llm = _core_llm(smol_model_dir)
    llm._engine.interrupt_at_step = 2
    with pytest.raises(KeyboardInterrupt):
        llm.generate(["a", "b"], SamplingParams(max_tokens=20, n=3), use_tqdm=False)
    success = {
        m.labels["finished_reason"]: m.value
        for m in llm.get_metrics()
        if m.name == "vllm:request_success"
    }
    assert success == {"stop": 0, "length": 0, "abort": 6}


def test_served_model_name_labels_and_missing_engine_counters(smol_model_dir):
    llm = _core_llm(smol_model_dir, served_model_name=["smol", "alias"])
    assert {m.labels["model_name"] for m in llm.get_metrics()} == {"smol"}
    # A counter the engine build does not report is left out, not reported as 0.
    names = {m.name for m in build_metrics({"num_running": 1}, FrontendStats(), "m")}
    assert "vllm:num_requests_running" in names and "taco:cpu_blocks_used" not in names
    assert "vllm:kv_cache_usage_perc" not in names


# ---- cumulative_logprob ----


def test_cumulative_logprob_only_with_logprobs(llm):
    (out,) = llm.generate("Hi", SamplingParams(max_tokens=3), use_tqdm=False)
    assert out.outputs[0].cumulative_logprob is None and out.outputs[0].logprobs is None
    (out,) = llm.generate("Hi", SamplingParams(max_tokens=3, logprobs=0), use_tqdm=False)
    expected = cumulative_logprob(_first_tokens(out, 0, 3), 0)
    assert out.outputs[0].cumulative_logprob == pytest.approx(expected)


def test_cumulative_logprob_hidden_for_best_of_and_beams_without_logprobs(llm):
    # best_of still ranks by the (unreported) cumulative logprob.
    sp = SamplingParams(n=2, best_of=4, max_tokens=3)
    (out,) = llm.generate("Hi", sp, use_tqdm=False)
    cum = {i: cumulative_logprob(_first_tokens(out, i, 3), i) for i in range(4)}
    assert [c.index for c in out.outputs] == sorted(cum, key=lambda i: -cum[i])[:2]
    assert [c.cumulative_logprob for c in out.outputs] == [None, None]
    beams = SamplingParams(n=2, best_of=2, use_beam_search=True, temperature=0.0, max_tokens=3)
    (out,) = llm.generate("Hi", beams, use_tqdm=False)
    assert [c.cumulative_logprob for c in out.outputs] == [None, None]
    beams.logprobs = 0
    (out,) = llm.generate("Hi", beams, use_tqdm=False)
    assert all(c.cumulative_logprob is not None for c in out.outputs)


def test_beam_search_api_keeps_cum_logprob(llm):
    from taco_llm import BeamSearchParams

    (res,) = llm.beam_search(["Hi"], BeamSearchParams(beam_width=1, max_tokens=3))
    (seq,) = res.sequences
    prompt = seq.tokens[:-3]
    # One beam keeps the executor's top candidate: the scripted token.
    assert seq.tokens[-3:] == default_script(prompt, 0)[:3]
    assert seq.cum_logprob == pytest.approx(cumulative_logprob(seq.tokens[-3:], 0))


# ---- max_logprobs ----


def test_max_logprobs_zero(smol_model_dir, tmp_path):
    assert EngineArgs(model=str(tmp_path), max_logprobs=0).max_logprobs == 0
    llm = _core_llm(smol_model_dir, max_logprobs=0)
    sp = SamplingParams(max_tokens=2, logprobs=0, prompt_logprobs=0)
    (out,) = llm.generate("Hi there", sp, use_tqdm=False)
    c = out.outputs[0]
    assert [list(e) for e in c.logprobs] == [[t] for t in c.token_ids]  # the sampled token only
    assert [e[t].logprob for t, e in zip(c.token_ids, c.logprobs)] == pytest.approx(
        [sampled_logprob(t, 0) for t in c.token_ids]
    )
    assert c.cumulative_logprob == pytest.approx(cumulative_logprob(c.token_ids, 0))
    assert [{t: lp.logprob for t, lp in e.items()} for e in out.prompt_logprobs[1:]] == [
        {t: pytest.approx(PROMPT_LOGPROB)} for t in out.prompt_token_ids[1:]
    ]
    for field in ("logprobs", "prompt_logprobs"):
        with pytest.raises(ValueError, match="Cannot request more than 0 logprobs"):
            llm.generate("Hi", SamplingParams(**{field: 1}), use_tqdm=False)


# ---- vLLM's error phrases ----


def test_empty_prompt_phrase(llm):
    for prompt in ("", TokensPrompt(prompt_token_ids=[])):
        with pytest.raises(ValueError, match="Prompt cannot be empty"):
            llm.generate([prompt], use_tqdm=False)
    with pytest.raises(ValueError, match="decoder prompt cannot be empty"):
        llm.generate(prompts=None, prompt_token_ids=[[]], use_tqdm=False)


def test_out_of_vocabulary_phrase(llm):
    with pytest.raises(ValueError, match="Token id 49152 is out of vocabulary"):
        llm.generate(TokensPrompt(prompt_token_ids=[5, 49152]), use_tqdm=False)
    with pytest.raises(ValueError, match="out of vocabulary"):
        llm.generate([[1, -3]], use_tqdm=False)
    with pytest.raises(ValueError, match="out-of-vocab token id"):
        llm.generate("ok", SamplingParams(allowed_token_ids=[49152]), use_tqdm=False)


def test_text_prompt_without_tokenizer_phrase(smol_model_dir):
    llm = _core_llm(smol_model_dir, skip_tokenizer_init=True)
    phrase = "cannot pass text prompts when `skip_tokenizer_init` is True"
    with pytest.raises(ValueError, match=phrase):
        llm.generate("abc", use_tqdm=False)
    with pytest.raises(ValueError, match=phrase):
        llm.chat([{"role": "user", "content": "hi"}], use_tqdm=False)
    assert llm.generate({"prompt_token_ids": [1, 2, 3]}, use_tqdm=False)[0].finished


# ---- DEPRECATE_LEGACY ----


def test_legacy_keywords_warn_only_inside_deprecate_legacy_api(llm):
    sp = SamplingParams(max_tokens=1)
    assert LLM.DEPRECATE_LEGACY is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        llm.generate(prompt_token_ids=[1, 2, 3], sampling_params=sp, use_tqdm=False)
    with LLM.deprecate_legacy_api():
        assert LLM.DEPRECATE_LEGACY is True
        with pytest.warns(DeprecationWarning, match="prompt_token_ids") as record:
            llm.generate(prompt_token_ids=[1, 2, 3], sampling_params=sp, use_tqdm=False)
        assert "Please use the 'prompts' parameter instead." in str(record[0].message)
        assert record[0].filename == __file__  # points at the caller
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            # As vLLM 0.6: prompts= is the current API; a positional legacy argument is silent.
            llm.generate(prompts="Hi", sampling_params=sp, use_tqdm=False)
            llm.generate(None, sp, [1, 2, 3], use_tqdm=False)
    assert LLM.DEPRECATE_LEGACY is False


def test_deprecate_legacy_api_restores_on_error():
    with pytest.raises(RuntimeError):
        with LLM.deprecate_legacy_api():
            raise RuntimeError("boom")
    assert LLM.DEPRECATE_LEGACY is False
