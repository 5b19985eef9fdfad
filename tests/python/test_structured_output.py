"""Structured output on SmolLM2-135M-Instruct: every output that finishes with "stop" satisfies
its constraint (jsonschema for JSON, a full regex match, one of the choices, the EBNF grammar's
language), guided requests leave the greedy outputs of unguided ones unchanged, the features a
request may combine keep working with a grammar, and bad constraints are refused with a
ValueError before any request is queued."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest

from taco_llm import (
    LLM,
    GuidedDecodingParams,
    LLMGuidedOptions,
    SamplingParams,
    StructuredOutputsParams,
)

pytestmark = pytest.mark.slow

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "email": {"type": "string", "pattern": "^[a-z]{1,12}@[a-z]{1,10}\\.com$"},
    },
    "required": ["name", "age", "email"],
}
ORDER = {
    "type": "object",
    "properties": {
        "customer": {
            "type": "object",
            "properties": {
                "id": {"type": "integer", "minimum": 1, "maximum": 9999},
                "vip": {"type": "boolean"},
            },
            "required": ["id", "vip"],
        },
        "items": {
            "type": "array",
            "minItems": 1,
            "maxItems": 3,
            "items": {
                "type": "object",
                "properties": {
                    "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{3}$"},
                    "qty": {"type": "integer", "minimum": 1, "maximum": 9},
                },
                "required": ["sku", "qty"],
            },
        },
    },
    "required": ["customer", "items"],
}
TICKET = {
    "type": "object",
    "properties": {
        "priority": {"enum": ["low", "medium", "high"]},
        "status": {"type": "string", "enum": ["open", "closed"]},
        "tags": {
            "type": "array",
            "items": {"type": "string", "maxLength": 10},
            "minItems": 1,
            "maxItems": 4,
        },
    },
    "required": ["priority", "status", "tags"],
}
POINT = {
    "type": "object",
    "properties": {
        "x": {"type": "number"},
        "y": {"type": "number"},
        "label": {"type": ["string", "null"]},
    },
    "required": ["x", "y", "label"],
}
SCORES = {
    "type": "array",
    "items": {"type": "integer", "minimum": -5, "maximum": 5},
    "minItems": 2,
    "maxItems": 5,
}
SCHEMAS = {"person": PERSON, "order": ORDER, "ticket": TICKET, "point": POINT, "scores": SCORES}
REGEXES = [
    r"\d{3}-\d{4}",
    r"(Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day",
    r"[A-Z][a-z]{2,8}( [A-Z][a-z]{2,8})?",
    r"#[0-9a-f]{6}",
    r"(true|false)",
]
CHOICES = [["positive", "negative", "neutral"], ["Paris", "London", "Berlin", "Rome"]]
# Arithmetic over single digits, spaces allowed around operators.
ARITHMETIC = r"""
root ::= expr
expr ::= term (space ("+" | "-") space term)*
term ::= factor (space ("*" | "/") space factor)*
factor ::= [0-9] | "(" expr ")"
space ::= " "?
"""
ARITHMETIC_RE = re.compile(r"[0-9()+\-*/ ]+")


def _arithmetic_ok(text: str) -> bool:
    if not ARITHMETIC_RE.fullmatch(text) or text != text.strip():
        return False
    depth = 0
    for ch in text:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0 and re.search(r"[+\-*/] *[+\-*/)]|\( *[+\-*/)]", text) is None


@pytest.fixture(scope="module")
def llm(smol_model_dir):
    llm = LLM(model=smol_model_dir, dtype="float32", seed=0, max_model_len=1024)
    yield llm
    del llm


def _chat(llm, prompts, params):
    return llm.chat([[{"role": "user", "content": p}] for p in prompts], params, use_tqdm=False)


def _check(kind, constraint, text):
    if kind == "json":
        jsonschema.validate(json.loads(text), constraint)
    elif kind == "regex":
        assert re.fullmatch(constraint, text), (constraint, text)
    elif kind == "choice":
        assert text in constraint, (constraint, text)
    else:
        assert _arithmetic_ok(text), text


def _cases():
    """(kind, constraint, GuidedDecodingParams, prompt) for every constraint, several prompts."""
    out = []
    topics = ["a customer", "an order", "a support ticket", "a point", "some scores", "a user"]
    for name, schema in SCHEMAS.items():
        for t in topics:
            prompt = f"Give {t} as JSON ({name})."
            out.append(("json", schema, GuidedDecodingParams(json=schema), prompt))
    for rx in REGEXES:
        for t in ("a phone number", "a day", "a name", "a colour"):
            out.append(("regex", rx, GuidedDecodingParams(regex=rx), f"Write {t}."))
    for choices in CHOICES:
        for t in ("I love it", "What is the capital of France?", "Meh."):
            out.append(("choice", choices, GuidedDecodingParams(choice=choices), t))
    for t in ("Write a sum.", "Compute something with brackets.", "2 times 3"):
        out.append(("grammar", ARITHMETIC, GuidedDecodingParams(grammar=ARITHMETIC), t))
    return out


def test_every_finished_guided_output_satisfies_its_constraint(llm):
    cases = _cases()
    prompts = [c[3] for c in cases]
    checked = 0
    for temperature in (0.0, 0.8):
        params = [
            SamplingParams(temperature=temperature, seed=17 + i, max_tokens=120, guided_decoding=g)
            for i, (_, _, g, _) in enumerate(cases)
        ]
        outs = _chat(llm, prompts, params)
        finished = 0
        for (kind, constraint, _, _), out in zip(cases, outs):
            c = out.outputs[0]
            assert c.finish_reason in ("stop", "length")
            if c.finish_reason == "stop":
                _check(kind, constraint, c.text)
                finished += 1
        # A sequence cut by max_tokens is a prefix of a valid output; nearly all finish.
        assert finished >= 0.9 * len(cases), (temperature, finished, len(cases))
        checked += finished
    assert checked >= 100


def test_guided_requests_leave_unguided_greedy_outputs_unchanged(llm):
    free = ["Tell me about the sea.", "Count from one to ten.", "What is a cat?"]
    params = SamplingParams(temperature=0, max_tokens=40)
    alone = _chat(llm, free, params)
    guided = [GuidedDecodingParams(json=PERSON), GuidedDecodingParams(regex=REGEXES[0])]
    mixed_prompts = [free[0], "Give a person as JSON.", free[1], "A phone number?", free[2]]
    mixed_params = [
        params,
        SamplingParams(temperature=0, max_tokens=60, guided_decoding=guided[0]),
        params,
        SamplingParams(temperature=0.8, seed=3, max_tokens=20, guided_decoding=guided[1]),
        params,
    ]
    mixed = _chat(llm, mixed_prompts, mixed_params)
    for a, m in zip(alone, [mixed[0], mixed[2], mixed[4]]):
        assert a.outputs[0].token_ids == m.outputs[0].token_ids
    jsonschema.validate(json.loads(mixed[1].outputs[0].text), PERSON)


def test_guided_options_request_applies_to_every_prompt(llm):
    prompts = ["Pick a colour.", "Another colour?"]
    for request in (
        LLMGuidedOptions(guided_choice=["red", "green", "blue"]),
        {"guided_choice": ["red", "green", "blue"], "guided_decoding_backend": "xgrammar"},
    ):
        outs = llm.generate(
            prompts, SamplingParams(temperature=0), use_tqdm=False, guided_options_request=request
        )
        assert [o.outputs[0].text in ("red", "green", "blue") for o in outs] == [True, True]
    prompt = llm.get_tokenizer().apply_chat_template(
        [{"role": "user", "content": "Reply with a JSON object whose key 'ok' is true."}],
        tokenize=False,
        add_generation_prompt=True,
    )
    outs = llm.generate(
        [prompt],
        SamplingParams(temperature=0, max_tokens=60),
        use_tqdm=False,
        guided_options_request={"guided_json_object": True},
    )
    assert outs[0].outputs[0].finish_reason == "stop"
    assert isinstance(json.loads(outs[0].outputs[0].text), (dict, list))


def test_structured_outputs_and_pydantic_models(llm):
    pydantic = pytest.importorskip("pydantic")

    class City(pydantic.BaseModel):
        name: str = pydantic.Field(max_length=16)
        population: int = pydantic.Field(ge=0, le=10**9)

    params = SamplingParams(
        temperature=0, max_tokens=80, structured_outputs=StructuredOutputsParams(json=City)
    )
    out = _chat(llm, ["Describe Paris as JSON."], params)[0].outputs[0]
    assert out.finish_reason == "stop", out.text
    City.model_validate_json(out.text)


def test_n_seeds_stop_strings_and_logprobs_with_a_grammar(llm):
    choices = ["alpha", "beta", "gamma", "delta"]
    g = GuidedDecodingParams(choice=choices)
    params = SamplingParams(n=3, temperature=1.0, seed=5, logprobs=3, guided_decoding=g)
    first = _chat(llm, ["Pick a Greek letter."], params)[0]
    assert len(first.outputs) == 3
    for c in first.outputs:
        assert c.text in choices
        for step, chosen in zip(c.logprobs, c.token_ids):
            # Masked ids have probability 0: -inf when a top list reaches them, as in vLLM.
            assert step[chosen].logprob > float("-inf")
    # The same seed gives the same outputs elsewhere in a batch.
    again = _chat(llm, ["Hello there.", "Pick a Greek letter."], [SamplingParams(), params])[1]
    assert [c.text for c in again.outputs] == [c.text for c in first.outputs]
    # Greedy logprobs of a choice: the masked distribution, so the tokens listed are allowed.
    one = _chat(
        llm,
        ["Yes or no?"],
        SamplingParams(
            temperature=0, logprobs=5, guided_decoding=GuidedDecodingParams(choice=["yes", "no"])
        ),
    )[0].outputs[0]
    assert one.text in ("yes", "no")
    first_step = one.logprobs[0]
    tok = llm.get_tokenizer()
    for t, v in first_step.items():
        if v.logprob > float("-inf"):
            assert any(c.startswith(tok.decode([t])) for c in ("yes", "no"))
    # A stop string ends a guided output early, as for any other request.
    s = SamplingParams(
        temperature=0,
        max_tokens=80,
        stop=['"age"'],
        guided_decoding=GuidedDecodingParams(json=PERSON),
    )
    out = _chat(llm, ["A person as JSON."], s)[0].outputs[0]
    assert out.finish_reason == "stop" and out.stop_reason == '"age"'
    assert '"age"' not in out.text and out.text.lstrip().startswith("{")


def test_beam_search_keeps_every_beam_in_the_grammar(llm):
    # Beams swap histories from step to step: each beam's matcher follows its own output.
    rx = r"(red|green|blue) (cat|dog|bird)"
    params = SamplingParams(
        n=3,
        best_of=3,
        use_beam_search=True,
        temperature=0,
        max_tokens=12,
        guided_decoding=GuidedDecodingParams(regex=rx),
    )
    out = _chat(llm, ["Name a coloured animal."], params)[0]
    assert len(out.outputs) == 3
    for c in out.outputs:
        assert c.finish_reason == "stop" and re.fullmatch(rx, c.text), c.text
    # Wider than the grammar: only continuations of nonzero probability become beams, so two
    # choices give two outputs, each valid (never a masked token ranked -inf).
    wide = SamplingParams(
        n=4,
        best_of=4,
        use_beam_search=True,
        temperature=0,
        max_tokens=4,
        guided_decoding=GuidedDecodingParams(choice=["A", "B"]),
    )
    out = llm.generate(["Pick one:"], wide, use_tqdm=False)[0]
    assert sorted(c.text for c in out.outputs) == ["A", "B"]


def test_best_of_and_ignore_eos_with_a_grammar(llm):
    g = GuidedDecodingParams(choice=["north", "south", "east", "west"])
    params = SamplingParams(n=2, best_of=4, temperature=1.0, seed=8, guided_decoding=g)
    out = _chat(llm, ["Which way?"], params)[0]
    assert len(out.outputs) == 2 and all(c.text in g.choice for c in out.outputs)
    # After the grammar's end only EOS may follow; ignore_eos runs on to max_tokens with it.
    params = SamplingParams(temperature=0, max_tokens=6, ignore_eos=True, guided_decoding=g)
    c = _chat(llm, ["Which way?"], params)[0].outputs[0]
    assert c.finish_reason == "length" and c.text in g.choice
    eos = llm.get_tokenizer().eos_token_id
    assert c.token_ids[-1] == eos


def test_an_empty_constraint_is_no_constraint(llm):
    free = SamplingParams(temperature=0, max_tokens=8)
    empty = SamplingParams(temperature=0, max_tokens=8, guided_decoding=GuidedDecodingParams())
    a, b = llm.generate(["The sea is", "The sea is"], [free, empty], use_tqdm=False)
    assert a.outputs[0].token_ids == b.outputs[0].token_ids
    outs = llm.generate(["The sea is"], free, use_tqdm=False, guided_options_request={})
    assert outs[0].outputs[0].token_ids == a.outputs[0].token_ids
    assert StructuredOutputsParams().all_constraints_none()
    with pytest.raises(NotImplementedError, match="structural_tag"):
        StructuredOutputsParams(structural_tag="{}")


def test_a_failing_guide_fails_its_call_only(llm, monkeypatch):
    from taco_llm.structured_output.guide import Guide

    real = Guide.__call__

    def broken(self, rows, bitmask, vocab_size):
        raise RuntimeError("guide broke")

    params = SamplingParams(
        temperature=0, max_tokens=30, guided_decoding=GuidedDecodingParams(json=PERSON)
    )
    monkeypatch.setattr(Guide, "__call__", broken)
    with pytest.raises(RuntimeError, match="guide broke"):
        _chat(llm, ["A person as JSON."], params)
    monkeypatch.setattr(Guide, "__call__", real)
    assert not llm._engine.has_unfinished()
    out = _chat(llm, ["A person as JSON."], params)[0].outputs[0]
    if out.finish_reason == "stop":
        jsonschema.validate(json.loads(out.text), PERSON)
    else:
        assert out.text.lstrip().startswith("{")


def test_raw_logprobs_mode_reports_the_unmasked_distribution(smol_model_dir):
    raw = LLM(model=smol_model_dir, dtype="float32", seed=0, logprobs_mode="raw_logprobs")
    prompt = ["Is water wet? Answer:"]
    free = raw.generate(
        prompt, SamplingParams(temperature=0, max_tokens=1, logprobs=20), use_tqdm=False
    )[0].outputs[0]
    g = GuidedDecodingParams(choice=["yes", "no"])
    guided = raw.generate(
        prompt,
        SamplingParams(temperature=0, max_tokens=4, logprobs=20, guided_decoding=g),
        use_tqdm=False,
    )[0].outputs[0]
    assert guided.text in ("yes", "no")
    # The first step's raw logprobs are the model's, mask or not.
    first_free, first_guided = free.logprobs[0], guided.logprobs[0]
    common = set(first_free) & set(first_guided)
    assert len(common) >= 20  # the same top 20; each dict adds its sampled token
    for t in common:
        assert first_guided[t].logprob == pytest.approx(first_free[t].logprob, abs=1e-5)
    del raw


def test_max_tokens_mid_grammar_finishes_with_length(llm):
    params = SamplingParams(
        temperature=0, max_tokens=5, guided_decoding=GuidedDecodingParams(json=ORDER)
    )
    out = _chat(llm, ["An order as JSON."], params)[0].outputs[0]
    assert out.finish_reason == "length" and len(out.token_ids) == 5


def test_min_tokens_cannot_force_tokens_past_the_grammar(llm):
    params = SamplingParams(
        temperature=0,
        min_tokens=6,
        max_tokens=10,
        guided_decoding=GuidedDecodingParams(choice=["no"]),
    )
    out = _chat(llm, ["Say no."], params)[0].outputs[0]
    # The grammar ends after "no": only EOS may follow, and it is not shown.
    assert out.text == "no"


def test_whitespace_pattern_and_disable_any_whitespace(llm):
    prompt = ["A person as pretty-printed JSON."]
    out = _chat(
        llm,
        ["Any JSON object, pretty-printed."],
        SamplingParams(
            temperature=0,
            max_tokens=60,
            guided_decoding=GuidedDecodingParams(json_object=True, whitespace_pattern=r"[ ]?"),
        ),
    )[0].outputs[0]
    assert "\n" not in out.text and "  " not in out.text, out.text
    for g in (
        GuidedDecodingParams(json=PERSON, whitespace_pattern=r"[ ]?"),
        GuidedDecodingParams(json=PERSON, disable_any_whitespace=True),
        GuidedDecodingParams(json=PERSON, backend="xgrammar:disable-any-whitespace"),
    ):
        out = _chat(llm, prompt, SamplingParams(temperature=0, max_tokens=80, guided_decoding=g))
        text = out[0].outputs[0].text
        assert "\n" not in text and "  " not in text, text
        jsonschema.validate(json.loads(text), PERSON)


def test_scheduling_features_keep_guided_outputs(smol_model_dir, llm):
    prompts = [f"Give person {i} as JSON." for i in range(6)] + ["Pick a day."]
    params = [
        SamplingParams(
            temperature=0, max_tokens=60, guided_decoding=GuidedDecodingParams(json=PERSON)
        )
    ] * 6
    params.append(
        SamplingParams(
            temperature=0, max_tokens=10, guided_decoding=GuidedDecodingParams(regex=REGEXES[1])
        )
    )
    want = [o.outputs[0].token_ids for o in _chat(llm, prompts, params)]
    # Prefix caching, chunked prefill in small chunks, and a KV cache so small that sequences
    # are preempted and recomputed mid-grammar.
    other = LLM(
        model=smol_model_dir,
        dtype="float32",
        seed=0,
        max_model_len=200,
        enable_prefix_caching=True,
        enable_chunked_prefill=True,
        max_num_batched_tokens=32,
        num_gpu_blocks_override=14,
        block_size=16,
    )
    outs = _chat(other, prompts, params)
    assert other.get_metrics()  # the engine ran
    preempted = sum(m.value for m in other.get_metrics() if "preemption" in m.name)
    assert preempted > 0
    assert [o.outputs[0].token_ids for o in outs] == want


def test_each_grammar_compiles_once(llm):
    cache = llm._guide.grammars
    schema = {"type": "object", "properties": {"k": {"type": "integer"}}, "required": ["k"]}
    before = cache.compilations
    params = SamplingParams(
        temperature=0, max_tokens=20, guided_decoding=GuidedDecodingParams(json=schema)
    )
    llm.generate(["a", "b", "c", "d"], params, use_tqdm=False)
    llm.generate(["e"], params, use_tqdm=False)
    assert cache.compilations == before + 1


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: GuidedDecodingParams(json={"type": "objectx"}), r"json: invalid JSON schema"),
        (
            lambda: GuidedDecodingParams(json={"type": "integer", "minimum": "a"}),
            r"invalid JSON schema at 'minimum'",
        ),
        (lambda: GuidedDecodingParams(json="{not json"), r"json is not valid JSON"),
        (lambda: GuidedDecodingParams(regex="(ab"), r"regex: invalid regex: .*parenthesis"),
        (
            lambda: GuidedDecodingParams(grammar="root ::= foo"),
            r"grammar: invalid EBNF grammar: .*foo",
        ),
        (lambda: GuidedDecodingParams(choice=[]), r"choice must be a non-empty list"),
        (lambda: GuidedDecodingParams(json=PERSON, regex="a"), r"only one kind"),
        (lambda: GuidedDecodingParams(regex="a", backend="outlines"), r"'outlines'.*xgrammar"),
        (
            lambda: GuidedDecodingParams(json=PERSON, whitespace_pattern="(x"),
            r"whitespace_pattern: invalid regex",
        ),
        (lambda: StructuredOutputsParams(choice=["a", 3]), r"choice must contain strings"),
    ],
)
def test_bad_constraints_are_refused_and_the_engine_still_serves(llm, make, message):
    with pytest.raises(ValueError, match=message):
        g = make()
        good = SamplingParams(temperature=0, max_tokens=4)
        bad = SamplingParams(temperature=0, max_tokens=4, guided_decoding=g)
        llm.generate(["first", "second"], [good, bad], use_tqdm=False)
    assert not llm._engine.has_unfinished()
    out = llm.generate(["Hello"], SamplingParams(temperature=0, max_tokens=3), use_tqdm=False)
    assert len(out[0].outputs[0].token_ids) == 3


def test_bad_guided_options_request(llm):
    sp = SamplingParams(temperature=0, max_tokens=3)
    with pytest.raises(ValueError, match=r"guided_options_request\.regex: invalid regex"):
        llm.generate("a", sp, guided_options_request={"guided_regex": "(ab"})
    with pytest.raises(ValueError, match="only one kind"):
        llm.generate("a", sp, guided_options_request={"guided_regex": "a", "guided_choice": ["b"]})
    with pytest.raises(TypeError, match="unknown key"):
        llm.generate("a", sp, guided_options_request={"guided_jsn": {}})
    with pytest.raises(ValueError, match="Cannot set both"):
        llm.generate(
            "a",
            SamplingParams(guided_decoding=GuidedDecodingParams(regex="a")),
            guided_options_request={"guided_regex": "b"},
        )
    with pytest.raises(ValueError, match="guided_decoding and structured_outputs"):
        SamplingParams(
            guided_decoding=GuidedDecodingParams(regex="a"),
            structured_outputs=StructuredOutputsParams(regex="a"),
        )
    with pytest.raises(ValueError, match="guided_decoding_backend"):
        LLM(model=llm.engine_args.model, guided_decoding_backend="outlines")
    assert not llm._engine.has_unfinished()
