"""Logits processing against HF transformers' processors on the real model (fp32, greedy): the
same penalties, biases and bans must pick the same tokens. HF has no presence / frequency
penalty or allowed-ids processor, so those are written here as HF LogitsProcessors with the
OpenAI / vLLM definitions."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, LogitsProcessor, LogitsProcessorList

from taco_llm import SamplingParams

pytestmark = pytest.mark.slow


def chat_ids(tok, question: str) -> list[int]:
    text = tok.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, tokenize=False
    )
    return tok.encode(text, add_special_tokens=False)


MAX_TOKENS = 24


class PresenceFrequency(LogitsProcessor):
    """logit -= presence * [count > 0] + frequency * count, over generated tokens only."""

    def __init__(self, prompt_len: int, presence: float, frequency: float):
        self.prompt_len, self.presence, self.frequency = prompt_len, presence, frequency

    def __call__(self, input_ids, scores):
        counts = torch.zeros_like(scores)
        out = input_ids[:, self.prompt_len :]
        counts.scatter_add_(1, out, torch.ones_like(out, dtype=scores.dtype))
        return scores - self.presence * (counts > 0).to(scores.dtype) - self.frequency * counts


class AllowedIds(LogitsProcessor):
    def __init__(self, ids: list[int]):
        self.ids = torch.tensor(ids)

    def __call__(self, input_ids, scores):
        masked = torch.full_like(scores, float("-inf"))
        masked[:, self.ids] = scores[:, self.ids]
        return masked


@pytest.fixture(scope="module")
def hf_model(smol_model_dir):
    return AutoModelForCausalLM.from_pretrained(smol_model_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def prompt(smol_llm) -> list[int]:
    tok = smol_llm.get_tokenizer()
    return chat_ids(tok, "List the days of the week, then list them again.")


def hf_greedy(model, prompt, **kwargs) -> list[int]:
    with torch.no_grad():
        out = model.generate(
            torch.tensor([prompt]),
            attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
            do_sample=False,
            max_new_tokens=MAX_TOKENS,
            **kwargs,
        )
    ids = out[0, len(prompt) :].tolist()
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    cut = next((i + 1 for i, t in enumerate(ids) if t in eos), len(ids))
    return ids[:cut]


def ours(llm, prompt, **kwargs) -> list[int]:
    params = SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS, **kwargs)
    (out,) = llm.generate([{"prompt_token_ids": prompt}], params)
    return list(out.outputs[0].token_ids)


def test_plain_greedy_baseline(smol_llm, hf_model, prompt):
    assert ours(smol_llm, prompt) == hf_greedy(hf_model, prompt)


@pytest.mark.parametrize("penalty", [1.3, 0.8])
def test_repetition_penalty_equals_hf(smol_llm, hf_model, prompt, penalty):
    got = ours(smol_llm, prompt, repetition_penalty=penalty)
    assert got == hf_greedy(hf_model, prompt, repetition_penalty=penalty)
    assert got != ours(smol_llm, prompt)  # the penalty changes this answer


def test_presence_and_frequency_penalties_equal_hf_processor(smol_llm, hf_model, prompt):
    proc = PresenceFrequency(len(prompt), presence=2.0, frequency=1.5)
    got = ours(smol_llm, prompt, presence_penalty=2.0, frequency_penalty=1.5)
    assert got == hf_greedy(hf_model, prompt, logits_processor=LogitsProcessorList([proc]))
    assert got != ours(smol_llm, prompt)


def test_min_tokens_equals_hf_min_new_tokens(smol_llm, hf_model):
    tok = smol_llm.get_tokenizer()
    short = chat_ids(tok, "Say OK.")
    free = ours(smol_llm, short)
    assert len(free) < 16  # ends early on its own
    got = ours(smol_llm, short, min_tokens=20)
    assert len(got) >= 20
    assert got == hf_greedy(hf_model, short, min_new_tokens=20)


def test_logit_bias_equals_hf_sequence_bias(smol_llm, hf_model, prompt):
    base = ours(smol_llm, prompt)
    bias = {base[0]: -100.0, base[3]: -5.0, 1000: 2.0}
    got = ours(smol_llm, prompt, logit_bias=bias)
    want = hf_greedy(hf_model, prompt, sequence_bias={(t,): b for t, b in bias.items()})
    assert got == want and got[0] != base[0]


def test_bad_words_equal_hf_bad_words_ids(smol_llm, hf_model, prompt):
    tok = smol_llm.get_tokenizer()
    words = ["Monday", "Tuesday"]
    ids = []
    for w in words:
        for text in (w, " " + w):
            enc = tok.encode(text, add_special_tokens=False)
            if enc not in ids:
                ids.append(enc)
    got = ours(smol_llm, prompt, bad_words=words)
    assert got == hf_greedy(hf_model, prompt, bad_words_ids=ids)
    assert "Monday" not in tok.decode(got) and "Monday" in tok.decode(ours(smol_llm, prompt))


def test_allowed_token_ids_equal_hf_processor(smol_llm, hf_model, prompt):
    base = ours(smol_llm, prompt)
    allowed = sorted(set(base[1:10]))
    got = ours(smol_llm, prompt, allowed_token_ids=allowed)
    proc = LogitsProcessorList([AllowedIds(allowed)])
    assert got == hf_greedy(hf_model, prompt, logits_processor=proc)
    assert set(got) <= set(allowed)
