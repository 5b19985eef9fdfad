"""SamplingParams: vLLM's defaults, every validation rule (ValueError naming the field),
normalization, and the conversion to the engine's SamplingOptions."""

import pytest

from taco_llm import _C, BeamSearchParams, RequestOutputKind, SamplingParams, SamplingType
from taco_llm.sampling_params import to_engine_options


def test_vllm_defaults():
    p = SamplingParams()
    assert (p.n, p.best_of, p.temperature, p.top_p, p.top_k, p.min_p) == (1, 1, 1.0, 1.0, -1, 0.0)
    assert (p.presence_penalty, p.frequency_penalty, p.repetition_penalty) == (0.0, 0.0, 1.0)
    assert (p.max_tokens, p.min_tokens, p.logprobs, p.prompt_logprobs) == (16, 0, None, None)
    assert p.stop == [] and p.stop_token_ids == [] and p.seed is None
    assert p.skip_special_tokens and p.spaces_between_special_tokens and p.detokenize
    assert p.output_kind == RequestOutputKind.CUMULATIVE
    assert p.sampling_type == SamplingType.RANDOM


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"n": 0}, "n"),
        ({"n": 1.5}, "n"),
        ({"n": 3, "best_of": 2}, "best_of"),
        ({"presence_penalty": 2.5}, "presence_penalty"),
        ({"presence_penalty": -2.1}, "presence_penalty"),
        ({"frequency_penalty": 3}, "frequency_penalty"),
        ({"repetition_penalty": 0.0}, "repetition_penalty"),
        ({"repetition_penalty": -1}, "repetition_penalty"),
        ({"temperature": -0.1}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.1}, "top_p"),
        ({"top_k": 0}, "top_k"),
        ({"top_k": -2}, "top_k"),
        ({"top_k": 2.5}, "top_k"),
        ({"min_p": -0.1}, "min_p"),
        ({"min_p": 1.5}, "min_p"),
        ({"seed": "x"}, "seed"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"min_tokens": -1}, "min_tokens"),
        ({"min_tokens": 5, "max_tokens": 4}, "min_tokens"),
        ({"logprobs": -1}, "logprobs"),
        ({"prompt_logprobs": -2}, "prompt_logprobs"),
        ({"truncate_prompt_tokens": 0}, "truncate_prompt_tokens"),
        ({"stop": ["ok", ""]}, "stop"),
        ({"stop": "x", "detokenize": False}, "stop"),
        ({"bad_words": [" "]}, "bad_words"),
        ({"allowed_token_ids": []}, "allowed_token_ids"),
        ({"allowed_token_ids": [-1]}, "allowed_token_ids"),
        ({"stop_token_ids": [1, -5]}, "stop_token_ids"),
        ({"logit_bias": {1: 200.0}}, "logit_bias"),
        ({"logit_bias": {-1: 1.0}}, "logit_bias"),
        ({"logit_bias": [1, 2]}, "logit_bias"),
        ({"output_kind": 7}, "output_kind"),
        ({"n": 2, "best_of": 3, "output_kind": RequestOutputKind.DELTA}, "best_of"),
        # greedy (temperature 0) with several sequences, as vLLM 0.6 refuses it
        ({"temperature": 0, "n": 2}, "n and best_of"),
        ({"temperature": 0, "best_of": 2}, "best_of"),
        # parameters that only beam search uses
        ({"early_stopping": True}, "early_stopping"),
        ({"length_penalty": 0.5}, "length_penalty"),
        # beam search rules
        ({"use_beam_search": True, "best_of": 1, "temperature": 0}, "best_of"),
        ({"use_beam_search": True, "n": 2, "temperature": 0.5}, "temperature"),
        ({"use_beam_search": True, "n": 2, "temperature": 0, "top_p": 0.5}, "top_p"),
        ({"use_beam_search": True, "n": 2, "temperature": 0, "top_k": 5}, "top_k"),
        (
            {"use_beam_search": True, "n": 2, "temperature": 0, "early_stopping": "x"},
            "early_stopping",
        ),
    ],
)
def test_invalid_values_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        SamplingParams(**kwargs)


def test_normalization():
    p = SamplingParams(stop="###", seed=-1, logprobs=True, prompt_logprobs=True)
    assert p.stop == ["###"] and p.seed is None and p.logprobs == 1 and p.prompt_logprobs == 1
    assert p.output_text_buffer_length == 2
    assert SamplingParams(temperature=1e-4).temperature == pytest.approx(1e-2)
    g = SamplingParams(temperature=0.0, top_p=0.5, top_k=3, min_p=0.2)
    assert (g.top_p, g.top_k, g.min_p) == (1.0, -1, 0.0)
    assert g.sampling_type == SamplingType.GREEDY
    assert SamplingParams(seed=3).sampling_type == SamplingType.RANDOM_SEED
    assert SamplingParams(n=3).best_of == 3
    assert SamplingParams(logit_bias={"5": 1.5}).logit_bias == {5: 1.5}
    assert SamplingParams(output_kind=2).output_kind == RequestOutputKind.FINAL_ONLY


def test_beam_search_params_are_accepted():
    p = SamplingParams(
        use_beam_search=True,
        n=2,
        best_of=4,
        temperature=0,
        length_penalty=0.8,
        early_stopping="never",
    )
    assert p.sampling_type == SamplingType.BEAM


def test_clone_is_independent():
    p = SamplingParams(stop=["a"], logits_processors=[len])
    q = p.clone()
    q.stop.append("b")
    assert p.stop == ["a"] and q.logits_processors[0] is len


def test_from_optional_skips_none():
    p = SamplingParams.from_optional(n=None, temperature=0.5, max_tokens=None)
    assert p.n == 1 and p.temperature == 0.5 and p.max_tokens == 16


def test_to_engine_options():
    p = SamplingParams(
        n=2,
        best_of=3,
        temperature=0.7,
        top_p=0.9,
        top_k=40,
        min_p=0.05,
        seed=-5 % 2**40,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        repetition_penalty=1.2,
        stop_token_ids=[7],
        ignore_eos=True,
        min_tokens=12,
        max_tokens=None,
        logprobs=3,
        prompt_logprobs=0,
        allowed_token_ids=[1, 2, 3],
        logit_bias={9: -3.0, 4: 1.0},
    )
    o = to_engine_options(p, _C.SamplingOptions, max_tokens=10, bad_words_token_ids=[[5, 6]])
    assert (o.n, o.best_of, o.top_k, o.max_tokens, o.min_tokens) == (2, 3, 40, 10, 10)
    assert o.temperature == pytest.approx(0.7) and o.top_p == pytest.approx(0.9)
    assert o.seed == -5 % 2**40 and o.stop_token_ids == [7] and o.ignore_eos
    assert (o.logprobs, o.prompt_logprobs) == (3, 0)
    assert o.logit_bias == [(4, 1.0), (9, -3.0)] and o.allowed_token_ids == [1, 2, 3]
    assert o.bad_words_token_ids == [[5, 6]]
    o.validate()  # the engine's own checks accept the converted options
    d = to_engine_options(SamplingParams(seed=-7), _C.SamplingOptions, 16)
    assert (d.logprobs, d.prompt_logprobs, d.seed) == (-1, -1, 2**64 - 7)
    b = SamplingParams(use_beam_search=True, n=2, temperature=0, early_stopping="never")
    ob = to_engine_options(b, _C.SamplingOptions, 16)
    assert ob.use_beam_search and ob.early_stopping == 2 and ob.temperature == 0.0
    d.validate()
    ob.validate()


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"beam_width": 0, "max_tokens": 4}, "beam_width"),
        ({"beam_width": 2, "max_tokens": 0}, "max_tokens"),
        ({"beam_width": 2, "max_tokens": 4, "temperature": -0.5}, "temperature"),
    ],
)
def test_beam_search_params_validation(kwargs, field):
    with pytest.raises(ValueError, match=field):
        BeamSearchParams(**kwargs)
