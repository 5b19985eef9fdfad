"""The offline API on the real default model (SmolLM2-135M-Instruct) through the compiled engine:
each sampling field's effect, stops, n, chat, Ctrl-C, repeated calls and engine release.
Comparisons with HF transformers live in test_hf_exact*.py."""

import _thread
import gc
import os
import signal
import threading
import weakref

import pytest

pytest.importorskip("taco_llm._C", reason="the compiled engine is not built")

from taco_llm import LLM, SamplingParams  # noqa: E402

pytestmark = pytest.mark.slow

PROMPTS = ["The capital of France is", "My favourite food is", "Once upon a time"]


def _texts(outs):
    return [o.outputs[0].text for o in outs]


def test_chat_answers_paris(smol_llm):
    conv = [{"role": "user", "content": "What is the capital of France?"}]
    (out,) = smol_llm.chat(conv, SamplingParams(temperature=0, max_tokens=24), use_tqdm=False)
    assert "Paris" in out.outputs[0].text
    assert out.finished and out.outputs[0].finish_reason in ("stop", "length")


def test_greedy_is_deterministic_and_batch_independent(smol_llm):
    sp = SamplingParams(temperature=0, max_tokens=8)
    alone = [smol_llm.generate(p, sp, use_tqdm=False)[0].outputs[0].token_ids for p in PROMPTS]
    batched = smol_llm.generate(PROMPTS, sp, use_tqdm=False)
    assert [o.outputs[0].token_ids for o in batched] == alone
    assert [o.prompt for o in batched] == PROMPTS


def test_top_k_1_equals_greedy(smol_llm):
    greedy = smol_llm.generate(PROMPTS, SamplingParams(temperature=0, max_tokens=8), use_tqdm=False)
    top1 = smol_llm.generate(
        PROMPTS, SamplingParams(temperature=0.8, top_k=1, max_tokens=8, seed=3), use_tqdm=False
    )
    assert _texts(top1) == _texts(greedy)


def test_seed_same_tokens_in_any_batch_position(smol_llm):
    seeded = SamplingParams(temperature=1.0, max_tokens=12, seed=1234)
    other = SamplingParams(temperature=1.0, max_tokens=12)
    alone = smol_llm.generate(PROMPTS[0], seeded, use_tqdm=False)[0].outputs[0].token_ids
    batch = smol_llm.generate(
        [PROMPTS[1], PROMPTS[0], PROMPTS[2]], [other, seeded, other], use_tqdm=False
    )
    assert batch[1].outputs[0].token_ids == alone
    differs = smol_llm.generate(
        PROMPTS[0], SamplingParams(temperature=1.0, max_tokens=12, seed=99), use_tqdm=False
    )
    assert differs[0].outputs[0].token_ids != alone


def test_n_returns_distinct_sequences(smol_llm):
    (out,) = smol_llm.generate(
        PROMPTS[2], SamplingParams(n=3, temperature=1.0, max_tokens=12, seed=7), use_tqdm=False
    )
    assert [c.index for c in out.outputs] == [0, 1, 2]
    assert len({tuple(c.token_ids) for c in out.outputs}) == 3


def test_max_tokens_and_stop_strings(smol_llm):
    tok = smol_llm.get_tokenizer()
    sp = SamplingParams(temperature=0, max_tokens=20)
    (free,) = smol_llm.generate(PROMPTS[2], sp, use_tqdm=False)
    text = free.outputs[0].text
    assert len(free.outputs[0].token_ids) <= 20
    # A stop string made of the last character of one token and the first of the next.
    ids = free.outputs[0].token_ids
    prefix = [tok.decode(ids[:i], skip_special_tokens=True) for i in range(len(ids) + 1)]
    grows = [len(prefix[i + 1]) > len(prefix[i]) for i in range(len(ids))]
    b = next(i for i in range(1, len(ids)) if grows[i - 1] and grows[i])
    stop = text[len(prefix[b]) - 1 : len(prefix[b]) + 1]
    (stopped,) = smol_llm.generate(
        PROMPTS[2], SamplingParams(temperature=0, max_tokens=20, stop=[stop]), use_tqdm=False
    )
    c = stopped.outputs[0]
    assert (c.finish_reason, c.stop_reason) == ("stop", stop)
    assert c.text == text[: text.index(stop)]


def test_logprobs_and_prompt_logprobs_shapes(smol_llm):
    sp = SamplingParams(temperature=0, max_tokens=4, logprobs=3, prompt_logprobs=2)
    (out,) = smol_llm.generate(PROMPTS[0], sp, use_tqdm=False)
    c = out.outputs[0]
    assert len(c.logprobs) == len(c.token_ids)
    for tid, entry in zip(c.token_ids, c.logprobs):
        assert tid in entry and 3 <= len(entry) <= 4
        assert entry[tid].rank == 1  # greedy picks the top token
    assert len(out.prompt_logprobs) == len(out.prompt_token_ids)
    assert out.prompt_logprobs[0] is None
    for tid, entry in zip(out.prompt_token_ids[1:], out.prompt_logprobs[1:]):
        assert tid in entry and entry[tid].logprob <= 0.0
    total = sum(e[t].logprob for t, e in zip(c.token_ids, c.logprobs))
    assert c.cumulative_logprob == pytest.approx(total, abs=1e-3)


def test_penalties_change_output(smol_llm):
    base = SamplingParams(temperature=0, max_tokens=24)
    (plain,) = smol_llm.generate("List: apple, apple, apple,", base, use_tqdm=False)
    penalized = SamplingParams(temperature=0, max_tokens=24, repetition_penalty=1.8)
    (pen,) = smol_llm.generate("List: apple, apple, apple,", penalized, use_tqdm=False)
    assert pen.outputs[0].token_ids != plain.outputs[0].token_ids


def test_errors_leave_nothing_queued(smol_llm):
    with pytest.raises(ValueError):
        smol_llm.generate(["ok", ""], use_tqdm=False)
    with pytest.raises(ValueError):
        smol_llm.generate([[1, 2, 10**7]], use_tqdm=False)
    running = [m.value for m in smol_llm.get_metrics() if m.name == "vllm:num_requests_running"]
    assert running == [0]
    assert not smol_llm._engine.has_unfinished()
    assert smol_llm.generate("ok", SamplingParams(max_tokens=1), use_tqdm=False)


def test_ctrl_c_aborts_and_next_call_works(smol_llm):
    # A process started in the background by a non-interactive shell inherits SIGINT ignored,
    # and Python then installs no handler, so interrupt_main would do nothing: install Python's.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.5, _thread.interrupt_main)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            smol_llm.generate(
                PROMPTS * 4, SamplingParams(max_tokens=2000, ignore_eos=True), use_tqdm=False
            )
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert not smol_llm._engine.has_unfinished()
    (out,) = smol_llm.generate(PROMPTS[0], SamplingParams(max_tokens=2), use_tqdm=False)
    assert len(out.outputs[0].token_ids) == 2


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def test_many_small_calls_do_not_leak(smol_llm):
    sp = SamplingParams(temperature=0, max_tokens=1)
    for _ in range(50):  # warm up allocator pools
        smol_llm.generate("Hi", sp, use_tqdm=False)
    before = _rss_mb()
    for _ in range(1000):
        smol_llm.generate("Hi", sp, use_tqdm=False)
    assert _rss_mb() - before < 50
    assert not smol_llm._engine.has_unfinished()


def test_del_releases_engine_and_second_llm_works(smol_model_dir):
    llm = LLM(model=smol_model_dir, dtype="float32", max_model_len=256)
    ref = weakref.ref(llm._engine)
    llm.generate("Hi", SamplingParams(max_tokens=2), use_tqdm=False)
    del llm
    gc.collect()
    assert ref() is None
    second = LLM(model=smol_model_dir, dtype="float32", max_model_len=256)
    assert second.generate("Hi", SamplingParams(max_tokens=2), use_tqdm=False)


def test_sampled_token_rank_is_its_vocabulary_rank(smol_llm):
    sp = SamplingParams(temperature=2.0, max_tokens=24, logprobs=3, seed=5)
    (out,) = smol_llm.generate(PROMPTS[0], sp, use_tqdm=False)
    c = out.outputs[0]
    outside_top = 0
    for tid, entry in zip(c.token_ids, c.logprobs):
        others = sorted((lp.logprob for t, lp in entry.items() if t != tid), reverse=True)
        rank = entry[tid].rank
        assert rank == 1 + sum(x > entry[tid].logprob for x in others) or rank > 3
        outside_top += rank > 3
    assert outside_top > 0  # a hot temperature samples tokens outside the top 3


def test_best_of_returns_the_n_best_by_cumulative_logprob(smol_llm):
    sp = SamplingParams(n=2, best_of=5, temperature=1.0, max_tokens=10, seed=3, logprobs=0)
    (out,) = smol_llm.generate(PROMPTS[2], sp, use_tqdm=False)
    assert len(out.outputs) == 2
    every = smol_llm.generate(
        PROMPTS[2],
        SamplingParams(n=5, temperature=1.0, max_tokens=10, seed=3, logprobs=0),
        use_tqdm=False,
    )[0].outputs
    ranked = sorted(every, key=lambda c: -c.cumulative_logprob)[:2]
    # Seeded sequences draw by (seed, index, position): the same five streams either way.
    assert [(c.index, c.token_ids) for c in out.outputs] == [(c.index, c.token_ids) for c in ranked]


def test_kv_cache_smaller_than_max_model_len_is_a_value_error(smol_model_dir):
    # As vLLM: a cache that cannot hold one max_model_len sequence is refused at startup.
    with pytest.raises(ValueError, match="fewer than max_model_len 8192"):
        LLM(model=smol_model_dir, num_gpu_blocks_override=8)
    llm = LLM(model=smol_model_dir, num_gpu_blocks_override=8, max_model_len=128)
    out = llm.generate("Hi", SamplingParams(max_tokens=3, ignore_eos=True))
    assert len(out[0].outputs[0].token_ids) == 3
