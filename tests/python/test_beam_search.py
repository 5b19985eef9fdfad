"""Beam search against HF transformers' beam search on the real model (fp32): the same beams,
in the same order, with the same scores, for several widths, early_stopping modes and length
penalties; and the LLM.beam_search (vLLM 0.6.3) form of the same search."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from taco_llm import BeamSearchParams, SamplingParams

pytestmark = pytest.mark.slow


def chat_ids(tok, question: str) -> list[int]:
    text = tok.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, tokenize=False
    )
    return tok.encode(text, add_special_tokens=False)


QUESTIONS = [
    "What is 2 + 2? Answer with one number.",
    "Name one primary color. One word only.",
    "Write a haiku about the sea.",
    "Is water wet? Answer yes or no.",
]

# (width, max_tokens, early_stopping, length_penalty)
CASES = [
    (2, 20, False, 1.0),
    (4, 24, False, 1.0),
    (3, 20, True, 1.0),
    (3, 16, "never", 2.0),
    (2, 16, False, 0.0),
]


@pytest.fixture(scope="module")
def prompts(smol_llm) -> list[list[int]]:
    tok = smol_llm.get_tokenizer()
    return [chat_ids(tok, q) for q in QUESTIONS]


@pytest.fixture(scope="module")
def hf_model(smol_model_dir):
    model = AutoModelForCausalLM.from_pretrained(smol_model_dir, dtype=torch.float32)
    model.eval()
    return model


def hf_beams(model, prompt, width, max_tokens, early_stopping, length_penalty):
    """HF's returned beams, best first: (generated ids through the first EOS, score)."""
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    with torch.no_grad():
        out = model.generate(
            torch.tensor([prompt]),
            attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
            num_beams=width,
            num_return_sequences=width,
            max_new_tokens=max_tokens,
            do_sample=False,
            early_stopping=early_stopping,
            length_penalty=length_penalty,
            output_scores=True,
            return_dict_in_generate=True,
        )
    beams = []
    for row, score in zip(out.sequences, out.sequences_scores):
        ids = row[len(prompt) :].tolist()
        cut = next((i + 1 for i, t in enumerate(ids) if t in eos), len(ids))
        beams.append((ids[:cut], float(score)))
    return beams


@pytest.mark.parametrize("width,max_tokens,early_stopping,length_penalty", CASES)
def test_beam_search_equals_hf(
    smol_llm, hf_model, prompts, width, max_tokens, early_stopping, length_penalty
):
    params = SamplingParams(
        n=width,
        best_of=width,
        use_beam_search=True,
        temperature=0.0,
        max_tokens=max_tokens,
        early_stopping=early_stopping,
        length_penalty=length_penalty,
        logprobs=0,  # vLLM 0.6 reports cumulative_logprob only with logprobs
    )
    outputs = smol_llm.generate([{"prompt_token_ids": p} for p in prompts], params)
    for prompt, out in zip(prompts, outputs):
        want = hf_beams(hf_model, prompt, width, max_tokens, early_stopping, length_penalty)
        got = [list(c.token_ids) for c in out.outputs]
        assert got == [ids for ids, _ in want], f"prompt {prompt[-8:]}"
        assert [o.index for o in out.outputs] == list(range(width))
        for c, (_, score) in zip(out.outputs, want):
            ours = c.cumulative_logprob / (len(c.token_ids) ** length_penalty)
            assert ours == pytest.approx(score, abs=2e-3)
            assert c.finish_reason in ("stop", "length")


def test_n_below_width_returns_the_best_beams(smol_llm, prompts):
    wide = SamplingParams(n=4, best_of=4, use_beam_search=True, temperature=0.0, max_tokens=12)
    narrow = SamplingParams(n=2, best_of=4, use_beam_search=True, temperature=0.0, max_tokens=12)
    a, b = smol_llm.generate([{"prompt_token_ids": prompts[2]}] * 2, [wide, narrow])
    assert [c.token_ids for c in b.outputs] == [c.token_ids for c in a.outputs[:2]]
    assert len(b.outputs) == 2


def test_beam_search_api_matches_use_beam_search(smol_llm, prompts):
    params = BeamSearchParams(beam_width=3, max_tokens=16)
    results = smol_llm.beam_search([{"prompt_token_ids": p} for p in prompts[:2]], params)
    legacy = smol_llm.generate(
        [{"prompt_token_ids": p} for p in prompts[:2]],
        SamplingParams(
            n=3, best_of=3, use_beam_search=True, temperature=0.0, max_tokens=16, logprobs=0
        ),
    )
    tok = smol_llm.get_tokenizer()
    for prompt, res, old in zip(prompts, results, legacy):
        assert len(res.sequences) == 3
        for seq, c in zip(res.sequences, old.outputs):
            assert seq.tokens == prompt + list(c.token_ids)
            assert seq.cum_logprob == pytest.approx(c.cumulative_logprob)
            assert seq.text == tok.decode(seq.tokens)


def test_beam_search_with_logprobs_and_engine_reuse(smol_llm, prompts):
    params = SamplingParams(
        n=2, best_of=2, use_beam_search=True, temperature=0.0, max_tokens=8, logprobs=3
    )
    (out,) = smol_llm.generate([{"prompt_token_ids": prompts[0]}], params)
    for c in out.outputs:
        assert len(c.logprobs) == len(c.token_ids)
        total = 0.0
        for tid, entry in zip(c.token_ids, c.logprobs):
            assert tid in entry and len(entry) <= 4
            total += entry[tid].logprob
        assert total == pytest.approx(c.cumulative_logprob, abs=1e-3)
    # Beam and plain requests in one call, then a plain call: nothing is left behind.
    mixed = smol_llm.generate(
        [{"prompt_token_ids": p} for p in prompts[:2]],
        [params, SamplingParams(temperature=0.0, max_tokens=4)],
    )
    assert len(mixed[0].outputs) == 2 and len(mixed[1].outputs[0].token_ids) == 4
    used = [m.value for m in smol_llm.get_metrics() if m.name == "taco:kv_blocks_used"]
    assert used == [0]
    assert smol_llm._engine.num_unfinished() == 0
