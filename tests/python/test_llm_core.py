"""LLM logic over the real engine core without a model (tests/python/core_engine.py: the C++
scheduler, KV blocks, stops and n / best_of over a scripted executor): input parsing and
validation, output order, n / best_of, stop strings and stop ids, logprob shapes, error cleanup
and KeyboardInterrupt. The real tokenizer is used."""

import gc
import inspect
import weakref

import core_engine
import pytest
from core_engine import PROMPT_LOGPROB, cumulative_logprob, default_script, sampled_logprob

import taco_llm.llm as llm_module
from taco_llm import LLM, SamplingParams, TextPrompt, TokensPrompt


def _make_llm(model_dir, sync, engine_kwargs=None, **kwargs):
    engine_kwargs = {"step_delay_s": 0.0005, **(engine_kwargs or {})}
    llm = core_engine.make_llm(model_dir, engine_kwargs, disable_async_output_proc=sync, **kwargs)
    if not sync:
        # Async output processing runs on GPU engines only (as in vLLM): pose as one.
        llm.model_info["device"] = "cuda"
    return llm


def _sibling(llm, engine_kwargs=None, **kwargs):
    """Another LLM like `llm` (same model, same output mode) with other arguments."""
    sync = llm.engine_args.disable_async_output_proc
    return _make_llm(llm.engine_args.model, sync, engine_kwargs, **kwargs)


@pytest.fixture(scope="module", params=[False, True], ids=["async", "sync"])
def core_llm(request, smol_model_dir):
    yield _make_llm(smol_model_dir, request.param)


@pytest.fixture
def llm(core_llm):
    engine = core_llm._engine
    yield core_llm
    engine.script = default_script
    engine.interrupt_at_step = None
    assert not engine.has_unfinished(), "a call left requests in the engine"


def _script_text(tokenizer, text):
    ids = tokenizer.encode(text, add_special_tokens=False)
    return lambda prompt, index: ids + [2]


def test_signature_matches_seed():
    sig = inspect.signature(LLM.__init__)
    expected = {
        "tokenizer": None,
        "tokenizer_mode": "auto",
        "skip_tokenizer_init": False,
        "trust_remote_code": False,
        "tensor_parallel_size": 1,
        "dtype": "auto",
        "quantization": None,
        "revision": None,
        "tokenizer_revision": None,
        "seed": 0,
        "gpu_memory_utilization": 0.9,
        "swap_space": 4,
        "cpu_offload_gb": 0,
        "enforce_eager": None,
        "max_context_len_to_capture": None,
        "max_seq_len_to_capture": 8192,
        "disable_custom_all_reduce": False,
        "disable_async_output_proc": False,
    }
    for name, default in expected.items():
        assert sig.parameters[name].default == default, name
    gen = inspect.signature(LLM.generate).parameters
    assert list(gen)[1:8] == [
        "prompts",
        "sampling_params",
        "prompt_token_ids",
        "use_tqdm",
        "lora_request",
        "prompt_adapter_request",
        "guided_options_request",
    ]
    chat = inspect.signature(LLM.chat).parameters
    assert chat["add_generation_prompt"].default is True
    assert chat["use_tqdm"].default is True


def test_outputs_in_input_order(llm):
    prompts = [f"Prompt number {i}" for i in range(7)]
    small = _sibling(llm, max_num_seqs=3)  # later prompts wait, then finish later
    outs = small.generate(prompts, SamplingParams(max_tokens=3), use_tqdm=False)
    assert small._engine.peak_running == 3
    assert [o.prompt for o in outs] == prompts
    assert all(o.finished and len(o.outputs[0].token_ids) == 3 for o in outs)
    assert all(o.outputs[0].finish_reason == "length" for o in outs)
    assert len({o.request_id for o in outs}) == 7


def test_prompt_forms(llm):
    tok = llm.get_tokenizer()
    ids = tok.encode("Hello there")
    outs = llm.generate(
        ["Hello there", TextPrompt(prompt="Hello there"), TokensPrompt(prompt_token_ids=ids)],
        SamplingParams(max_tokens=2),
        use_tqdm=False,
    )
    assert [o.prompt_token_ids for o in outs] == [ids, ids, ids]
    assert outs[2].prompt is None and outs[0].prompt == "Hello there"
    legacy = llm.generate(prompt_token_ids=[ids, ids], use_tqdm=False)
    assert len(legacy) == 2 and legacy[0].prompt_token_ids == ids
    single = llm.generate("Hello there", use_tqdm=False)
    assert len(single) == 1 and len(single[0].outputs[0].token_ids) == 16  # default max_tokens


def test_params_list_paired(llm):
    sps = [SamplingParams(max_tokens=1), SamplingParams(max_tokens=4)]
    outs = llm.generate(["a", "b"], sps, use_tqdm=False)
    assert [len(o.outputs[0].token_ids) for o in outs] == [1, 4]
    with pytest.raises(ValueError, match="sampling_params"):
        llm.generate(["a", "b", "c"], sps, use_tqdm=False)


def test_n_returns_distinct_indices(llm):
    (out,) = llm.generate("Hi", SamplingParams(n=3, max_tokens=4), use_tqdm=False)
    assert [c.index for c in out.outputs] == [0, 1, 2]
    assert len({tuple(c.token_ids) for c in out.outputs}) == 3


def test_best_of_returns_n_best(llm):
    sp = SamplingParams(n=2, best_of=4, max_tokens=3, logprobs=0)
    (out,) = llm.generate("Hi", sp, use_tqdm=False)
    # The n best by the executor's logprobs, each keeping its position among the best_of.
    cum = {i: cumulative_logprob(default_script(out.prompt_token_ids, i)[:3], i) for i in range(4)}
    best = sorted(cum, key=lambda i: -cum[i])[:2]
    assert [c.index for c in out.outputs] == best
    assert [c.cumulative_logprob for c in out.outputs] == pytest.approx([cum[i] for i in best])
    assert out.outputs[0].text == llm.get_tokenizer().decode(out.outputs[0].token_ids)


def test_best_of_ranks_after_stop_strings_end_sequences(llm):
    tok = llm.get_tokenizer()
    stop = tok.encode(" STOP", add_special_tokens=False)
    word = tok.encode(" more", add_special_tokens=False)
    llm._engine.script = lambda p, i: stop + word * 8 if i == 2 else word * 8
    params = SamplingParams(n=2, best_of=4, max_tokens=6, stop=["STOP"], logprobs=0)
    (out,) = llm.generate("Hi", params, use_tqdm=False)
    # Sequence 2 stopped early: its cumulative logprob sums only the tokens up to the stop
    # string, which makes it the best here; vLLM 0.6 keeps each returned sequence's position
    # among the best_of as its index.
    cum = {i: cumulative_logprob((word * 8)[:6], i) for i in (0, 1, 3)}
    cum[2] = cumulative_logprob(stop, 2)
    assert [c.index for c in out.outputs] == sorted(cum, key=lambda i: -cum[i])[:2] == [2, 0]
    best = out.outputs[0]
    assert best.token_ids == stop
    assert best.finish_reason == "stop" and best.stop_reason == "STOP"
    assert best.cumulative_logprob == pytest.approx(
        sum(e[t].logprob for t, e in zip(best.token_ids, best.logprobs))
    )
    assert best.cumulative_logprob > out.outputs[1].cumulative_logprob


def test_max_tokens_none_runs_to_max_model_len(llm):
    short = _sibling(llm, {"script": lambda p, i: [300] * 10000}, max_model_len=40)
    assert short.model_info["max_model_len"] == 40
    (out,) = short.generate([[5] * 30], SamplingParams(max_tokens=None), use_tqdm=False)
    assert len(out.outputs[0].token_ids) == 10
    assert out.outputs[0].finish_reason == "length"


def test_stop_string_across_tokens(llm):
    tok = llm.get_tokenizer()
    llm._engine.script = _script_text(tok, "The answer is forty-two. Next question please")
    sp = SamplingParams(max_tokens=30, stop=["two. Ne"])
    (out,) = llm.generate("Q", sp, use_tqdm=False)
    c = out.outputs[0]
    assert c.text == "The answer is forty-"
    assert (c.finish_reason, c.stop_reason) == ("stop", "two. Ne")
    assert llm._engine.finish_calls[-1] == (out.request_id, 0)
    sp = SamplingParams(max_tokens=30, stop=["two. Ne"], include_stop_str_in_output=True)
    (out,) = llm.generate("Q", sp, use_tqdm=False)
    assert out.outputs[0].text == "The answer is forty-two. Ne"


def test_stop_string_one_token_before_max_tokens(llm):
    # With async output, the engine finishes the request (length) in the step that runs while
    # the stop string is found: the stop is not reported for a request that is gone.
    tok = llm.get_tokenizer()
    llm._engine.script = _script_text(tok, "one two three four")
    (out,) = llm.generate("Q", SamplingParams(max_tokens=3, stop=[" two"]), use_tqdm=False)
    assert (out.outputs[0].text, out.outputs[0].finish_reason) == ("one", "stop")


def test_stop_string_waits_for_min_tokens(llm):
    tok = llm.get_tokenizer()
    ids = tok.encode("a b a b a b a b", add_special_tokens=False)
    llm._engine.script = lambda prompt, index: ids + [2]
    sp = SamplingParams(stop=["a"], min_tokens=3, logprobs=0)
    (out,) = llm.generate("Q", sp, use_tqdm=False)
    assert out.outputs[0].text == "a b "  # the first "a" came before min_tokens
    assert out.outputs[0].token_ids == ids[:3]
    # No token after the stop counts (with async output the engine may compute one more).
    assert out.outputs[0].cumulative_logprob == pytest.approx(cumulative_logprob(ids[:3], 0))


def test_eos_and_stop_token_ids(llm):
    tok = llm.get_tokenizer()
    llm._engine.script = _script_text(tok, "Paris is nice")
    (out,) = llm.generate("Q", SamplingParams(max_tokens=10), use_tqdm=False)
    c = out.outputs[0]
    assert (c.text, c.finish_reason, c.stop_reason) == ("Paris is nice", "stop", None)
    assert c.token_ids[-1] == 2
    nice = tok.encode(" nice", add_special_tokens=False)[0]
    (out,) = llm.generate("Q", SamplingParams(stop_token_ids=[nice]), use_tqdm=False)
    assert (out.outputs[0].text, out.outputs[0].stop_reason) == ("Paris is", nice)
    sp = SamplingParams(stop_token_ids=[nice], include_stop_str_in_output=True)
    (out,) = llm.generate("Q", sp, use_tqdm=False)
    assert out.outputs[0].text == "Paris is nice"
    sp = SamplingParams(skip_special_tokens=False, ignore_eos=True, max_tokens=5)
    (out,) = llm.generate("Q", sp, use_tqdm=False)
    assert out.outputs[0].text == "Paris is nice<|im_end|><|im_end|>"


def test_logprobs_shapes(llm):
    sp = SamplingParams(max_tokens=3, logprobs=2, prompt_logprobs=1)
    (out,) = llm.generate("The capital of France", sp, use_tqdm=False)
    c = out.outputs[0]
    assert c.token_ids == default_script(out.prompt_token_ids, 0)[:3]
    assert len(c.logprobs) == 3
    for tok_id, entry in zip(c.token_ids, c.logprobs):
        # The executor's top list is the sampled token, then token + 1, ... each 1.0 lower.
        assert list(entry) == [tok_id, tok_id + 1]
        lp = sampled_logprob(tok_id, 0)
        assert entry[tok_id].rank == 1 and entry[tok_id].logprob == pytest.approx(lp)
        assert entry[tok_id + 1].rank == 2 and entry[tok_id + 1].logprob == pytest.approx(lp - 1)
        assert entry[tok_id].decoded_token == llm.get_tokenizer().decode([tok_id])
    assert len(out.prompt_logprobs) == len(out.prompt_token_ids)
    assert out.prompt_logprobs[0] is None
    for tok_id, entry in zip(out.prompt_token_ids[1:], out.prompt_logprobs[1:]):
        assert entry[tok_id].logprob == pytest.approx(PROMPT_LOGPROB)
    assert c.cumulative_logprob == pytest.approx(cumulative_logprob(c.token_ids, 0))


def test_bad_input_leaves_nothing_queued(llm):
    engine = llm._engine
    before = len(engine.added)
    cases = [
        (["ok", ""], None),
        ([[1, 2], [1, -3]], None),
        ([[1, 2], [49152]], None),
        ([[7] * 9000], None),
        (["ok"], SamplingParams(stop_token_ids=[10**6])),
        (["ok"], SamplingParams(allowed_token_ids=[49152])),
        (["ok"], SamplingParams(logit_bias={60000: 1.0})),
        (["ok"], SamplingParams(logprobs=21)),
        ([], None),
    ]
    for prompts, sp in cases:
        with pytest.raises(ValueError):
            llm.generate(prompts, sp, use_tqdm=False)
    assert len(engine.added) == before and not engine.has_unfinished()
    assert llm.generate("still works", SamplingParams(max_tokens=1), use_tqdm=False)


def test_engine_rejection_aborts_earlier_requests(llm):
    engine = llm._engine
    before = len(engine.added)
    # Nine sequences of up to 8100 tokens can never fit the 4096 blocks of 16 tokens: the
    # engine rejects the second request after queueing the first.
    small = SamplingParams(max_tokens=4)
    sps = [small, SamplingParams(n=9, max_tokens=8100), small]
    with pytest.raises(ValueError, match="more than the 4096 the cache holds"):
        llm.generate(["a", "b", "c"], sps, use_tqdm=False)
    assert len(engine.added) == before + 1
    assert not engine.has_unfinished()


def test_keyboard_interrupt_aborts_and_next_call_works(llm):
    engine = llm._engine
    engine.interrupt_at_step = engine.num_step_calls + 3
    with pytest.raises(KeyboardInterrupt):
        llm.generate(["a", "b", "c"], SamplingParams(max_tokens=50), use_tqdm=False)
    assert not engine.has_unfinished()
    outs = llm.generate(["a", "b"], SamplingParams(max_tokens=2), use_tqdm=False)
    assert all(o.finished for o in outs)


def test_adapter_requests_are_checked(llm):
    from taco_llm import LoRARequest, PromptAdapterRequest

    for kwargs in (
        {"lora_request": object()},
        {"prompt_adapter_request": object()},
    ):
        with pytest.raises(TypeError, match=next(iter(kwargs))):
            llm.generate("a", **kwargs)
    with pytest.raises(TypeError, match=r"logits_processors\[1\] must be callable"):
        llm.generate("a", SamplingParams(logits_processors=[lambda ids, logits: logits, 3]))
    with pytest.raises(TypeError, match="lora_request"):
        llm.chat([{"role": "user", "content": "hi"}], lora_request=object())
    with pytest.raises(ValueError, match="'x'.*without enable_lora=True"):
        llm.generate("a", lora_request=LoRARequest("x", 1, "/x"))
    with pytest.raises(ValueError, match="'p'.*without enable_prompt_adapter=True"):
        llm.generate("a", prompt_adapter_request=PromptAdapterRequest("p", 1, "/p", 4))
    assert llm.list_loras() == set() and llm.list_prompt_adapters() == []
    assert llm.generate("a", SamplingParams(max_tokens=2), use_tqdm=False)[0].finished


def test_chat_single_and_batch(llm):
    conv = [{"role": "user", "content": "What is the capital of France?"}]
    (out,) = llm.chat(conv, SamplingParams(max_tokens=2), use_tqdm=False)
    assert out.prompt.endswith("<|im_start|>assistant\n")
    outs = llm.chat(
        [conv, conv + [{"role": "assistant", "content": "It is"}]],
        SamplingParams(max_tokens=2),
        use_tqdm=False,
        add_generation_prompt=False,
        continue_final_message=True,
    )
    assert len(outs) == 2 and outs[1].prompt.endswith("It is")


def test_truncate_prompt_tokens(llm):
    sp = SamplingParams(max_tokens=1, truncate_prompt_tokens=3)
    (out,) = llm.generate([list(range(10, 20))], sp, use_tqdm=False)
    assert out.prompt_token_ids == [17, 18, 19]


def test_progress_bar_reports_speed(llm, capsys):
    llm.generate(["a", "b"], SamplingParams(max_tokens=2), use_tqdm=True)
    err = capsys.readouterr().err
    assert "Processed prompts" in err and "toks/s" in err


def test_metrics_and_beam_search(llm):
    assert any(m.name == "taco:num_steps" and m.value > 0 for m in llm.get_metrics())
    from taco_llm import BeamSearchParams

    (res,) = llm.beam_search(["Hi"], BeamSearchParams(beam_width=1, max_tokens=3))
    assert len(res.sequences) == 1
    assert res.sequences[0].tokens[: len(llm.get_tokenizer().encode("Hi"))] == [
        *llm.get_tokenizer().encode("Hi")
    ]
    with pytest.raises(ValueError, match="temperature"):
        BeamSearchParams(beam_width=2, max_tokens=3, temperature=-1.0)
    with pytest.raises(ValueError, match="beam_width"):
        BeamSearchParams(beam_width=0, max_tokens=3)
    assert llm.generate("Hi", SamplingParams(max_tokens=2), use_tqdm=False)[0].finished


def test_del_releases_engine(smol_model_dir, monkeypatch):
    mod = core_engine.module()
    monkeypatch.setattr(llm_module, "_load_engine_module", lambda: mod)
    llm = LLM(model=smol_model_dir)
    llm.generate(["a", "b"], SamplingParams(max_tokens=2), use_tqdm=False)
    ref = weakref.ref(mod.last)
    del mod.last, llm
    assert ref() is None  # freed by reference counting: no cycle holds the engine
    gc.collect()


def test_llm_constructor_errors(smol_model_dir):
    with pytest.raises(ValueError, match=r"attention heads \(9\)"):
        LLM(model=smol_model_dir, tensor_parallel_size=2)
    with pytest.raises(NotImplementedError, match="quantization"):
        LLM(model=smol_model_dir, quantization="bitsandbytes")
    with pytest.raises(TypeError, match="not_an_arg"):
        LLM(model=smol_model_dir, not_an_arg=1)
    with pytest.raises(ValueError, match="gpu_memory_utilization"):
        LLM(model=smol_model_dir, gpu_memory_utilization=2)


def test_detokenize_off(llm):
    sp = SamplingParams(max_tokens=3, detokenize=False, logprobs=1)
    (out,) = llm.generate("Hi", sp, use_tqdm=False)
    c = out.outputs[0]
    assert c.text == "" and len(c.token_ids) == 3
    assert all(e[t].decoded_token is None for t, e in zip(c.token_ids, c.logprobs))


def test_skip_tokenizer_init(smol_model_dir):
    llm = core_engine.make_llm(smol_model_dir, skip_tokenizer_init=True)
    assert llm.get_tokenizer() is None
    (out,) = llm.generate(TokensPrompt(prompt_token_ids=[1, 2, 3]), use_tqdm=False)
    assert out.outputs[0].text == "" and len(out.outputs[0].token_ids) == 16
    with pytest.raises(ValueError, match="cannot pass text prompts when `skip_tokenizer_init`"):
        llm.generate("text prompt", use_tqdm=False)
