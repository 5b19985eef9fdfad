"""Parsing of LLM.generate's prompts: str, list of str, TextPrompt, TokensPrompt, lists of
those, token lists, and the legacy prompt_token_ids argument."""

import pytest

from taco_llm import TextPrompt, TokensPrompt
from taco_llm.inputs import is_single_prompt, parse_prompts


def _pairs(parsed):
    return [(p.text, p.token_ids) for p in parsed]


def test_forms():
    assert _pairs(parse_prompts("hi")) == [("hi", None)]
    assert _pairs(parse_prompts(["a", "b"])) == [("a", None), ("b", None)]
    assert _pairs(parse_prompts(TextPrompt(prompt="x"))) == [("x", None)]
    assert _pairs(parse_prompts(TokensPrompt(prompt_token_ids=[1, 2]))) == [(None, [1, 2])]
    mixed = ["a", TextPrompt(prompt="b"), TokensPrompt(prompt_token_ids=[3]), [4, 5]]
    assert _pairs(parse_prompts(mixed)) == [("a", None), ("b", None), (None, [3]), (None, [4, 5])]
    assert _pairs(parse_prompts([1, 2, 3])) == [(None, [1, 2, 3])]
    assert _pairs(parse_prompts(("a", "b"))) == [("a", None), ("b", None)]


def test_legacy_prompt_token_ids():
    assert _pairs(parse_prompts(None, [1, 2])) == [(None, [1, 2])]
    assert _pairs(parse_prompts(None, [[1], [2, 3]])) == [(None, [1]), (None, [2, 3])]
    # Both given: the text is used, as vLLM 0.6 does.
    assert _pairs(parse_prompts(["a", "b"], [[1], [2]])) == [("a", None), ("b", None)]
    with pytest.raises(ValueError, match="lengths of prompts"):
        parse_prompts(["a"], [[1], [2]])
    with pytest.raises(ValueError, match="prompt_token_ids"):
        parse_prompts(None, [])
    with pytest.raises(ValueError, match="prompt_token_ids"):
        parse_prompts(None, [["x"]])


@pytest.mark.parametrize(
    "bad", [None, [], 3, [None], [{"text": "x"}], [{"prompt": 5}], [{"prompt_token_ids": "ab"}]]
)
def test_malformed(bad):
    with pytest.raises(ValueError):
        parse_prompts(bad)


def test_multimodal_not_built():
    with pytest.raises(NotImplementedError, match="multi_modal_data"):
        parse_prompts(TextPrompt(prompt="x", multi_modal_data={"image": object()}))


def test_is_single_prompt():
    assert is_single_prompt("x") and is_single_prompt({"prompt": "x"}) and is_single_prompt([1])
    assert not is_single_prompt(["x"]) and not is_single_prompt([[1]])
