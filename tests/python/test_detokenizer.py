"""Incremental detokenization equals a full decode on the real tokenizer (unicode, emoji,
multi-byte characters split across tokens, special tokens), and stop-string search."""

import pytest
from transformers import AutoTokenizer

from taco_llm.detokenizer import decode_next, find_stop_string, init_state, peek_next

TEXTS = [
    "Hello, world! The capital of France is Paris.",
    "héllo wörld — naïve café, Ünïcödé",
    "Emoji: 🤖🚀👩‍👩‍👧 and flags 🇫🇷",
    "日本語のテキストと中文字符，한국어도。",
    "  leading spaces\tand\ttabs\n\nnew lines   ",
    "code: def f(x):\n    return x**2  # ∑ ∫ √",
    "<|im_start|>assistant\nspecial tokens<|im_end|> inside",
]


@pytest.fixture(scope="module")
def tokenizer(smol_model_dir):
    return AutoTokenizer.from_pretrained(smol_model_dir)


def _incremental(tokenizer, prompt_ids, output_ids, skip_special_tokens):
    state = init_state(tokenizer, prompt_ids, skip_special_tokens)
    text = ""
    for tid in output_ids:
        text += decode_next(tokenizer, state, tid, skip_special_tokens)
    return text


@pytest.mark.parametrize("skip", [True, False])
@pytest.mark.parametrize("text", TEXTS)
def test_incremental_equals_full_decode(tokenizer, text, skip):
    prompt_ids = tokenizer.encode("Tell me something:")
    output_ids = tokenizer.encode(text, add_special_tokens=False)
    full = tokenizer.decode(output_ids, skip_special_tokens=skip)
    assert _incremental(tokenizer, prompt_ids, output_ids, skip) == full


def test_partial_utf8_is_held_back(tokenizer):
    ids = tokenizer.encode("🤖", add_special_tokens=False)
    assert len(ids) > 1  # the emoji's bytes span several tokens
    state = init_state(tokenizer, tokenizer.encode("x"), True)
    pieces = []
    for tid in ids:
        pieces.append(decode_next(tokenizer, state, tid))
    assert pieces[:-1] == [""] * (len(ids) - 1) and pieces[-1] == "🤖"


def test_out_of_vocab_id_decodes_to_nothing(tokenizer):
    state = init_state(tokenizer, tokenizer.encode("x"), True)
    assert decode_next(tokenizer, state, len(tokenizer) + 10) == ""


def test_peek_leaves_state_unchanged(tokenizer):
    state = init_state(tokenizer, tokenizer.encode("The capital of France is"), True)
    paris, london = (
        tokenizer.encode(w, add_special_tokens=False)[0] for w in (" Paris", " London")
    )
    assert peek_next(tokenizer, state, london) == " London"
    assert decode_next(tokenizer, state, paris) == " Paris"


def test_find_stop_string():
    # Found only where the new characters could complete it.
    assert find_stop_string("abc STOP def", 4, ["STOP"], False) is None
    assert find_stop_string("abc STOP", 2, ["STOP"], False) == ("STOP", 4)
    assert find_stop_string("abc STOP", 2, ["STOP"], True) == ("STOP", -1)
    assert find_stop_string("abc STOPxy", 6, ["STOP"], True) == ("STOP", 8)
    # The earliest match wins, whatever the order of the list.
    assert find_stop_string("a1b2", 4, ["2", "1"], False) == ("1", 1)
    assert find_stop_string("abc", 0, ["a"], False) is None
    assert find_stop_string("abc", 3, [], False) is None
