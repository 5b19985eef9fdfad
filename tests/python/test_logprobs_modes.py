"""What logprobs are computed from (logprobs_mode). The default, as vLLM 0.6, is the
distribution the token was drawn from: after penalties, temperature and top-k / top-p; the raw
modes report the model's own logits."""

from __future__ import annotations

import math

import pytest

from taco_llm import LLM, SamplingParams

pytestmark = pytest.mark.slow

PROMPT = "Once upon a time, in a small village,"


@pytest.fixture(scope="module")
def raw_llm(smol_model_dir):
    llm = LLM(model=smol_model_dir, dtype="float32", seed=0, logprobs_mode="raw_logprobs")
    yield llm
    del llm


def _run(llm, **kwargs):
    (out,) = llm.generate(PROMPT, SamplingParams(**kwargs), use_tqdm=False)
    return out.outputs[0]


def test_processed_logprobs_are_of_the_tempered_distribution(smol_llm, raw_llm):
    kwargs = dict(temperature=2.0, logprobs=4, seed=11, max_tokens=12)
    proc, raw = _run(smol_llm, **kwargs), _run(raw_llm, **kwargs)
    assert proc.token_ids == raw.token_ids  # the mode changes reports, not sampling
    checked = 0
    for p_entry, r_entry in zip(proc.logprobs, raw.logprobs):
        common = sorted(set(p_entry) & set(r_entry))
        for a, b in zip(common, common[1:]):
            dp = p_entry[a].logprob - p_entry[b].logprob
            dr = r_entry[a].logprob - r_entry[b].logprob
            assert dp == pytest.approx(dr / 2.0, abs=1e-4)
            checked += 1
    assert checked > 10
    assert proc.cumulative_logprob == pytest.approx(
        sum(e[t].logprob for t, e in zip(proc.token_ids, proc.logprobs)), abs=1e-3
    )


def test_top_k_renormalizes_and_hides_filtered_tokens(smol_llm):
    out = _run(smol_llm, temperature=0.8, top_k=3, logprobs=5, seed=3, max_tokens=10)
    for tid, entry in zip(out.token_ids, out.logprobs):
        assert len(entry) <= 3 and tid in entry
        assert sum(math.exp(lp.logprob) for lp in entry.values()) == pytest.approx(1.0, abs=1e-4)
        assert sorted(lp.rank for lp in entry.values()) == list(range(1, len(entry) + 1))
    only = _run(smol_llm, temperature=0.7, top_k=1, logprobs=0, seed=3, max_tokens=5)
    assert all(e[t].logprob == 0.0 for t, e in zip(only.token_ids, only.logprobs))


def test_greedy_logprobs_agree_across_modes(smol_llm, raw_llm):
    kwargs = dict(temperature=0.0, logprobs=3, max_tokens=8)
    proc, raw = _run(smol_llm, **kwargs), _run(raw_llm, **kwargs)
    assert proc.token_ids == raw.token_ids
    for t, p_entry, r_entry in zip(proc.token_ids, proc.logprobs, raw.logprobs):
        assert p_entry[t].logprob == pytest.approx(r_entry[t].logprob, abs=1e-5)


def test_raw_mode_reports_before_penalties(smol_llm, raw_llm):
    plain = _run(smol_llm, temperature=0.0, logprobs=20, max_tokens=1)
    kwargs = dict(temperature=0.0, logprobs=0, max_tokens=1, repetition_penalty=2.0)
    raw, proc = _run(raw_llm, **kwargs), _run(smol_llm, **kwargs)
    t = raw.token_ids[0]
    assert t in plain.logprobs[0]
    assert raw.logprobs[0][t].logprob == pytest.approx(plain.logprobs[0][t].logprob, abs=1e-5)
    assert proc.logprobs[0][t].logprob != pytest.approx(raw.logprobs[0][t].logprob, abs=1e-3)


def test_bad_logprobs_mode_is_rejected(smol_model_dir):
    with pytest.raises(ValueError, match="logprobs_mode"):
        LLM(model=smol_model_dir, logprobs_mode="softmax")
