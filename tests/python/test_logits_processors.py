"""vLLM-style logits_processors (Python callables) on the real model: they see the right ids,
their edits decide the tokens, both signatures work, and a failing processor raises its own
error while the engine stays usable."""

from __future__ import annotations

import pytest
import torch

from taco_llm import SamplingParams

pytestmark = pytest.mark.slow

PROMPT = "The capital of France is"


def test_processor_forces_tokens_and_sees_output_ids(smol_llm):
    tok = smol_llm.get_tokenizer()
    forced = tok.encode(" banana banana banana", add_special_tokens=False)
    seen: list[list[int]] = []

    def force(output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
        seen.append(list(output_ids))
        logits[:] = float("-inf")
        logits[forced[len(output_ids) % len(forced)]] = 0.0
        return logits

    params = SamplingParams(temperature=0.0, max_tokens=6, logits_processors=[force])
    (out,) = smol_llm.generate(PROMPT, params)
    ids = list(out.outputs[0].token_ids)
    assert ids == [forced[i % len(forced)] for i in range(6)]
    assert seen == [ids[:i] for i in range(6)]
    assert out.outputs[0].logprobs is None


def test_three_argument_form_gets_the_prompt_and_returned_tensor_is_used(smol_llm):
    tok = smol_llm.get_tokenizer()
    prompt_ids = tok.encode(PROMPT)
    prompts_seen = []

    def ban_top(prompt, output_ids, logits):
        prompts_seen.append(list(prompt))
        out = logits.clone()  # a new tensor, not an in-place edit
        out[logits.argmax()] = float("-inf")
        return out

    plain = smol_llm.generate(PROMPT, SamplingParams(temperature=0.0, max_tokens=4))
    edited = smol_llm.generate(
        PROMPT, SamplingParams(temperature=0.0, max_tokens=4, logits_processors=[ban_top])
    )
    assert prompts_seen and all(p == prompt_ids for p in prompts_seen)
    assert edited[0].outputs[0].token_ids[0] != plain[0].outputs[0].token_ids[0]


def test_only_requests_with_processors_are_touched(smol_llm):
    calls = []

    def count(output_ids, logits):
        calls.append(len(output_ids))
        return logits

    greedy = SamplingParams(temperature=0.0, max_tokens=5)
    hooked = SamplingParams(temperature=0.0, max_tokens=5, logits_processors=[count])
    a, b = smol_llm.generate([PROMPT, PROMPT], [greedy, hooked])
    assert a.outputs[0].token_ids == b.outputs[0].token_ids  # identity processor
    assert sorted(calls) == [0, 1, 2, 3, 4]


def test_failing_processor_raises_and_engine_recovers(smol_llm):
    def boom(output_ids, logits):
        if len(output_ids) == 2:
            raise RuntimeError("processor failed on purpose")
        return logits

    params = [
        SamplingParams(temperature=0.0, max_tokens=8, logits_processors=[boom]),
        SamplingParams(temperature=0.0, max_tokens=8),
    ]
    with pytest.raises(RuntimeError, match="on purpose"):
        smol_llm.generate([PROMPT, PROMPT], params)

    def wrong_shape(output_ids, logits):
        return logits[:10]

    with pytest.raises(TypeError, match="must return a tensor of shape"):
        smol_llm.generate(
            PROMPT, SamplingParams(temperature=0.0, max_tokens=3, logits_processors=[wrong_shape])
        )
    assert smol_llm._engine.num_unfinished() == 0
    (out,) = smol_llm.generate(PROMPT, SamplingParams(temperature=0.0, max_tokens=3))
    assert len(out.outputs[0].token_ids) == 3
    assert len(smol_llm._logits_processors) == 0
