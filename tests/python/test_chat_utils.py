"""Chat conversations -> prompts: the tokenizer's template, overrides (string and file),
add_generation_prompt, continue_final_message, lists of conversations, content parts."""

import pytest
from transformers import AutoTokenizer

from taco_llm.chat_utils import apply_chat_template, load_chat_template, parse_conversations

CONV = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def tokenizer(smol_model_dir):
    return AutoTokenizer.from_pretrained(smol_model_dir)


def test_default_template(tokenizer):
    text = apply_chat_template(tokenizer, CONV)
    assert text.startswith("<|im_start|>system\n")
    assert text.endswith(
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    )
    no_gen = apply_chat_template(tokenizer, CONV, add_generation_prompt=False)
    assert not no_gen.endswith("assistant\n")


def test_continue_final_message(tokenizer):
    conv = CONV + [{"role": "assistant", "content": "The capital is"}]
    text = apply_chat_template(
        tokenizer, conv, add_generation_prompt=False, continue_final_message=True
    )
    assert text.endswith("<|im_start|>assistant\nThe capital is")
    with pytest.raises(ValueError, match="continue_final_message"):
        apply_chat_template(
            tokenizer, conv, add_generation_prompt=True, continue_final_message=True
        )


def test_template_override_string_and_file(tokenizer, tmp_path):
    template = "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}"
    assert apply_chat_template(tokenizer, CONV, template) == "[user]What is the capital of France?"
    path = tmp_path / "t.jinja"
    path.write_text(template)
    assert load_chat_template(str(path)) == template
    with pytest.raises(ValueError, match="chat_template"):
        load_chat_template(str(tmp_path / "missing.jinja"))


def test_parse_conversations():
    convs, batch = parse_conversations(CONV)
    assert not batch and convs == [CONV]
    convs, batch = parse_conversations([CONV, CONV])
    assert batch and len(convs) == 2
    parts = [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    ]
    assert parse_conversations(parts)[0][0][0]["content"] == "a\nb"
    with pytest.raises(NotImplementedError, match="image_url"):
        parse_conversations([{"role": "user", "content": [{"type": "image_url"}]}])
    for bad in ([], [{"content": "no role"}], "text", [[]]):
        with pytest.raises(ValueError):
            parse_conversations(bad)
