"""Speculative decoding on SmolLM2-135M: drafts from n-grams (vLLM's "[ngram]") and from the
lookahead cache change nothing a request returns. In float32, greedy ids and seeded samples
equal plain decoding's token for token; unseeded samples keep their distribution (a
chi-square test); every other feature works beside it; bad arguments are ValueErrors."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from taco_llm import LLM, GuidedDecodingParams, SamplingParams

PARAGRAPH = (
    "It was a bright cold day in April, and the clocks were striking thirteen. Winston Smith, "
    "his chin nuzzled into his breast in an effort to escape the vile wind, slipped quickly "
    "through the glass doors of Victory Mansions."
)
CODE = """def fibonaci(n):
    if n < 2:
        return n
    return fibonaci(n - 1) + fibonaci(n - 2)
"""
CHATS = [
    [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}],
    [{"role": "user", "content": "Write a haiku about the sea."}],
    [{"role": "user", "content": "Repeat this paragraph word for word:\n\n" + PARAGRAPH}],
    [{"role": "user", "content": "Fix the typo in this code and return all of it:\n\n" + CODE}],
    [{"role": "user", "content": "Make this a bulleted list: red, green, blue, cyan, magenta"}],
]
NGRAM = {"speculative_model": "[ngram]", "num_speculative_tokens": 4, "ngram_prompt_lookup_max": 3}
LOOKAHEAD = {**NGRAM, "speculative_model": "[lookahead]"}


def spec_metrics(llm: LLM) -> dict[str, float]:
    return {m.name: m.value for m in llm.get_metrics() if "spec_decode" in m.name}


@pytest.fixture(scope="module")
def plain(smol_model_dir):
    llm = LLM(model=smol_model_dir, dtype="float32", seed=0)
    yield llm
    del llm


@pytest.fixture(scope="module", params=["ngram", "lookahead"])
def speculative(request, smol_model_dir):
    args = NGRAM if request.param == "ngram" else LOOKAHEAD
    llm = LLM(model=smol_model_dir, dtype="float32", seed=0, **args)
    yield llm
    del llm


def chat_ids(llm: LLM, sp: SamplingParams) -> list[list[list[int]]]:
    outs = llm.chat(CHATS, sp, use_tqdm=False)
    return [[list(c.token_ids) for c in o.outputs] for o in outs]


def test_greedy_ids_equal_plain_decoding(plain, speculative):
    sp = SamplingParams(temperature=0, max_tokens=96)
    before = spec_metrics(speculative)
    assert chat_ids(speculative, sp) == chat_ids(plain, sp)
    after = spec_metrics(speculative)
    drafted = (
        after["vllm:spec_decode_num_draft_tokens"] - before["vllm:spec_decode_num_draft_tokens"]
    )
    accepted = (
        after["vllm:spec_decode_num_accepted_tokens"]
        - before["vllm:spec_decode_num_accepted_tokens"]
    )
    assert accepted > 50 and drafted >= accepted  # the copying answers took drafts


def test_seeded_samples_equal_plain_decoding(plain, speculative):
    sp = SamplingParams(temperature=0.8, top_p=0.95, seed=11, max_tokens=48, n=2)
    assert chat_ids(speculative, sp) == chat_ids(plain, sp)


def test_every_sampling_feature_equals_plain_decoding(plain, speculative):
    sp = SamplingParams(
        temperature=0.7,
        seed=3,
        max_tokens=40,
        min_tokens=5,
        repetition_penalty=1.2,
        presence_penalty=0.3,
        frequency_penalty=0.2,
        logprobs=3,
        stop=["Smith,"],
    )
    a = speculative.chat(CHATS, sp, use_tqdm=False)
    b = plain.chat(CHATS, sp, use_tqdm=False)
    for x, y in zip(a, b):
        cx, cy = x.outputs[0], y.outputs[0]
        assert (cx.token_ids, cx.text, cx.finish_reason, cx.stop_reason) == (
            cy.token_ids,
            cy.text,
            cy.finish_reason,
            cy.stop_reason,
        )
        for ex, ey in zip(cx.logprobs, cy.logprobs):
            assert ex.keys() == ey.keys()
            for t in ex:
                assert ex[t].logprob == pytest.approx(ey[t].logprob, abs=1e-4)
                assert ex[t].rank == ey[t].rank
        assert cx.cumulative_logprob == pytest.approx(cy.cumulative_logprob, abs=1e-3)


def test_stop_string_inside_accepted_drafts(plain, speculative):
    # The paragraph is copied from the prompt in long accepted runs; a stop string in the middle
    # of one cuts the output there, as without drafts.
    sp = SamplingParams(temperature=0, max_tokens=96, stop=["glass doors"])
    (a,) = speculative.chat(CHATS[2], sp, use_tqdm=False)
    (b,) = plain.chat(CHATS[2], sp, use_tqdm=False)
    assert a.outputs[0].text == b.outputs[0].text
    assert a.outputs[0].finish_reason == "stop" and a.outputs[0].stop_reason == "glass doors"


def pearson_p_value(a: Counter, b: Counter) -> float:
    """p-value of the chi-square test that two samples come from one distribution (categories
    with fewer than 10 draws in both pooled into one), by the Wilson-Hilferty approximation."""
    keys = sorted(set(a) | set(b), key=lambda k: -(a[k] + b[k]))
    big = [k for k in keys if a[k] + b[k] >= 10]
    rows = [(a[k], b[k]) for k in big]
    rows.append((sum(a[k] for k in keys if k not in big), sum(b[k] for k in keys if k not in big)))
    rows = [r for r in rows if r[0] + r[1] > 0]
    na, nb = sum(r[0] for r in rows), sum(r[1] for r in rows)
    stat = 0.0
    for x, y in rows:
        total = x + y
        ea, eb = total * na / (na + nb), total * nb / (na + nb)
        stat += (x - ea) ** 2 / ea + (y - eb) ** 2 / eb
    df = len(rows) - 1
    z = ((stat / df) ** (1 / 3) - (1 - 2 / (9 * df))) / math.sqrt(2 / (9 * df))
    return 0.5 * math.erfc(z / math.sqrt(2))


def test_unseeded_sampling_keeps_the_distribution(smol_model_dir):
    """Many unseeded draws of the first three tokens of a continuation that drafts often
    predict: with drafts verified, the distribution is plain decoding's."""
    prompt = "one two three four, one two three four, one two three four, one two"
    # Small batches: drafts are sized against the batch they slow down.
    sp = SamplingParams(temperature=1.0, max_tokens=3, n=25, ignore_eos=True)
    counts = []
    for args in ({}, NGRAM):
        llm = LLM(model=smol_model_dir, dtype="float32", seed=5, **args)
        c = Counter()
        for _ in range(32):
            (out,) = llm.generate(prompt, sp, use_tqdm=False)
            c.update(tuple(s.token_ids) for s in out.outputs)
        counts.append(c)
        if args:
            m = spec_metrics(llm)
            assert m["vllm:spec_decode_num_accepted_tokens"] > 300
            assert (
                m["vllm:spec_decode_num_draft_tokens"] > m["vllm:spec_decode_num_accepted_tokens"]
            )
        del llm
    assert len(counts[0]) > 3  # a real distribution, not one answer
    assert pearson_p_value(counts[0], counts[1]) > 1e-3


def test_scheduling_features_equal_plain_decoding(smol_model_dir):
    """Chunked prefill, prefix caching, a cache small enough to preempt, n > 1, beams and a
    grammar, all with drafts on: every output equals the plain engine's."""
    common = dict(
        model=smol_model_dir,
        dtype="float32",
        enable_prefix_caching=True,
        enable_chunked_prefill=True,
        max_num_batched_tokens=64,
        num_gpu_blocks_override=20,
        max_model_len=320,
        block_size=16,
    )
    prompts = [
        {"prompt": "Repeat exactly: " + PARAGRAPH + "\n\n" + PARAGRAPH[:60]},
        {"prompt": "Repeat exactly: " + PARAGRAPH + "\n\n" + PARAGRAPH[:90]},
        {"prompt": CODE + "\n" + CODE[:40]},
    ]
    params = [
        SamplingParams(temperature=0, max_tokens=80),
        SamplingParams(temperature=0.9, seed=4, n=2, max_tokens=60, logprobs=1),
        SamplingParams(temperature=0, max_tokens=40, n=2, use_beam_search=True),
    ]
    guided = SamplingParams(
        temperature=0,
        max_tokens=8,
        guided_decoding=GuidedDecodingParams(choice=["fibonacci", "factorial"]),
    )
    results = []
    for args in ({}, NGRAM):
        llm = LLM(**common, **args)
        outs = llm.generate(prompts * 2, params * 2, use_tqdm=False)
        (g,) = llm.generate(prompts[2], guided, use_tqdm=False)
        results.append(
            (
                [[(c.token_ids, c.text, c.finish_reason) for c in o.outputs] for o in outs],
                g.outputs[0].text,
            )
        )
        metrics = {m.name: m.value for m in llm.get_metrics()}
        del llm
    assert results[1] == results[0]
    assert results[0][1] in ("fibonacci", "factorial")
    assert metrics["vllm:num_preemptions"] > 0
    assert metrics["vllm:spec_decode_num_accepted_tokens"] > 0


def test_metrics_report_drafts(smol_model_dir):
    llm = LLM(model=smol_model_dir, dtype="float32", **NGRAM)
    llm.chat(CHATS[2], SamplingParams(temperature=0, max_tokens=48), use_tqdm=False)
    m = spec_metrics(llm) | {
        x.name: x.value for x in llm.get_metrics() if x.name.startswith("taco:spec")
    }
    drafts = m["vllm:spec_decode_num_drafts"]
    accepted = m["vllm:spec_decode_num_accepted_tokens"]
    assert drafts > 0 and accepted > 0
    # Each verification emits its accepted drafts and one more, unless a stop cuts the run.
    assert drafts <= m["vllm:spec_decode_num_emitted_tokens"] <= accepted + drafts
    assert m["vllm:spec_decode_draft_acceptance_rate"] == pytest.approx(
        accepted / m["vllm:spec_decode_num_draft_tokens"]
    )
    assert m["taco:spec_decode_mean_accepted_length"] == pytest.approx(1 + accepted / drafts)


@pytest.mark.parametrize(
    ("kwargs", "error", "names"),
    [
        ({"num_speculative_tokens": 3}, ValueError, "num_speculative_tokens"),
        ({"ngram_prompt_lookup_max": 3}, ValueError, "ngram_prompt_lookup_max"),
        ({"speculative_model": "[ngram]"}, ValueError, "num_speculative_tokens"),
        ({"speculative_model": "[ngram]", "num_speculative_tokens": 3}, ValueError, "lookup_max"),
        (
            {"speculative_model": "[ngram]", "num_speculative_tokens": 0},
            ValueError,
            "num_speculative_tokens",
        ),
        ({**NGRAM, "num_speculative_tokens": 33}, ValueError, "num_speculative_tokens"),
        ({**NGRAM, "ngram_prompt_lookup_min": 4}, ValueError, "ngram_prompt_lookup_min"),
        ({**NGRAM, "ngram_prompt_lookup_max": -1}, ValueError, "ngram_prompt_lookup_max"),
        ({**NGRAM, "ngram_prompt_lookup_min": 0}, ValueError, "ngram_prompt_lookup_min"),
        ({**NGRAM, "speculative_disable_by_batch_size": 1}, ValueError, "disable_by_batch"),
        ({**NGRAM, "speculative_max_model_len": 100}, ValueError, "speculative_max_model_len"),
        (
            {**NGRAM, "spec_decoding_acceptance_method": "typical_acceptance_sampler"},
            NotImplementedError,
            "typical_acceptance_sampler",
        ),
        ({**NGRAM, "spec_decoding_acceptance_method": "best"}, ValueError, "acceptance_method"),
        (
            {"speculative_model": "/models/draft", "num_speculative_tokens": 3},
            NotImplementedError,
            "draft model",
        ),
        ({"speculative_config": {"num_speculative_tokens": 3}}, ValueError, "method"),
        ({"speculative_config": {"method": "ngram", "k": 3}}, ValueError, "'k'"),
        ({"speculative_config": {"method": "magic"}}, ValueError, "method"),
        ({"speculative_config": {"method": "eagle"}}, NotImplementedError, "eagle"),
        ({"speculative_config": {"method": "ngram"}}, ValueError, "num_speculative_tokens"),
        (
            {"speculative_config": {"method": "ngram", "num_speculative_tokens": 2}, **NGRAM},
            ValueError,
            "speculative_model",
        ),
        ({"speculative_config": "ngram"}, ValueError, "dict"),
    ],
)
def test_bad_arguments_name_what_is_wrong(smol_model_dir, kwargs, error, names):
    with pytest.raises(error, match=names):
        LLM(model=smol_model_dir, **kwargs)


def test_speculative_config_is_the_same_speculation(smol_model_dir):
    llm = LLM(
        model=smol_model_dir,
        dtype="float32",
        speculative_config={"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_max": 3},
    )
    o = llm.engine_args.speculation
    assert (o.method, o.num_speculative_tokens, o.prompt_lookup_max, o.prompt_lookup_min) == (
        "ngram",
        4,
        3,
        3,  # current vLLM: one bound given stands for both
    )
    defaults = LLM(
        model=smol_model_dir,
        dtype="float32",
        speculative_config={"method": "ngram", "num_speculative_tokens": 2},
    ).engine_args.speculation
    assert (defaults.prompt_lookup_max, defaults.prompt_lookup_min) == (5, 5)
    (out,) = llm.chat(CHATS[2], SamplingParams(temperature=0, max_tokens=40), use_tqdm=False)
    assert spec_metrics(llm)["vllm:spec_decode_num_accepted_tokens"] > 0
    assert out.outputs[0].text
