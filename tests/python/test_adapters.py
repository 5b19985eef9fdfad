"""LoRA and prompt adapters against HF + PEFT (fp32): adapters made by PEFT itself on the
default model, mixed with base-model requests in one generate call, must give PEFT's greedy ids
exactly and close logprobs; bad adapters are refused with a ValueError naming them and the
engine keeps serving."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
from peft_adapters import LORA_SPECS, make_lora, make_prompt_adapter, peft_greedy

from taco_llm import (
    LLM,
    EngineArgs,
    LoRARequest,
    PromptAdapterRequest,
    SamplingParams,
    TokensPrompt,
)

MAX_NEW = 16
TEXTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village,",
]
MIXED = ["attn-r8", "mlp-r16", "all-r4-rs"]  # ranks 8, 16, 4; attention, MLP, both (rsLoRA)


@pytest.fixture(scope="module")
def adapter_root(tmp_path_factory, smol_model_dir) -> Path:
    root = tmp_path_factory.mktemp("adapters")
    for name in LORA_SPECS:
        make_lora(smol_model_dir, name, root)
    make_prompt_adapter(smol_model_dir, root)
    return root


@pytest.fixture(scope="module")
def prompts(smol_model_dir) -> list[list[int]]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smol_model_dir)
    return [tok.encode(t) for t in TEXTS]


@pytest.fixture(scope="module")
def peft_refs(smol_model_dir, adapter_root, prompts):
    """name -> (greedy ids per prompt, their logprobs), from HF + PEFT in fp32."""
    refs = {
        name: peft_greedy(smol_model_dir, str(adapter_root / name), prompts, MAX_NEW)
        for name in MIXED
    }
    refs["prompt"] = peft_greedy(smol_model_dir, str(adapter_root / "prompt-8"), prompts, MAX_NEW)
    return refs


@pytest.fixture(scope="module")
def lora_llm(smol_model_dir):
    # Two slots for three adapters: the batch cannot hold them all at once.
    llm = LLM(
        model=smol_model_dir,
        dtype="float32",
        enable_lora=True,
        max_loras=2,
        max_lora_rank=16,
        enable_prefix_caching=True,
    )
    yield llm
    del llm


def lora(root: Path, name: str, lora_id: int | None = None) -> LoRARequest:
    lora_id = lora_id if lora_id is not None else list(LORA_SPECS).index(name) + 1
    return LoRARequest(name, lora_id, str(root / name))


def greedy(n: int = MAX_NEW, **kw) -> SamplingParams:
    return SamplingParams(temperature=0.0, max_tokens=n, ignore_eos=True, **kw)


def test_mixed_adapters_and_base_in_one_batch_match_peft(
    lora_llm, adapter_root, prompts, peft_refs
):
    requests = [None] + [lora(adapter_root, n) for n in MIXED]
    batch = [(r, p) for r in requests for p in prompts]
    outs = lora_llm.generate(
        [TokensPrompt(prompt_token_ids=p) for _, p in batch],
        greedy(logprobs=0),
        lora_request=[r for r, _ in batch],
        use_tqdm=False,
    )
    base = [list(o.outputs[0].token_ids) for o in outs[: len(prompts)]]
    changed = 0
    for k, out in enumerate(outs[len(prompts) :]):
        name, j = MIXED[k // len(prompts)], k % len(prompts)
        ref_ids, ref_lps = peft_refs[name][0][j], peft_refs[name][1][j]
        got = list(out.outputs[0].token_ids)
        assert got == ref_ids, f"{name}, prompt {j}"
        lps = [entry[t].logprob for entry, t in zip(out.outputs[0].logprobs, got)]
        assert lps == pytest.approx(ref_lps, abs=2e-3), f"{name}, prompt {j}"
        assert out.lora_request == requests[1 + k // len(prompts)]
        changed += got != base[j]
    assert changed >= len(MIXED) * len(prompts) - 2  # the adapters do change the model


def test_one_lora_for_every_prompt_and_chat(lora_llm, adapter_root, prompts, peft_refs):
    req = lora(adapter_root, "mlp-r16")
    outs = lora_llm.generate(
        [TokensPrompt(prompt_token_ids=p) for p in prompts],
        greedy(),
        lora_request=req,
        use_tqdm=False,
    )
    assert [list(o.outputs[0].token_ids) for o in outs] == peft_refs["mlp-r16"][0]
    conv = [{"role": "user", "content": "Name a color."}]
    chat = lora_llm.chat(conv, greedy(8), lora_request=req, use_tqdm=False)[0]
    text = lora_llm.get_tokenizer().apply_chat_template(
        conv, tokenize=False, add_generation_prompt=True
    )
    gen = lora_llm.generate(text, greedy(8), lora_request=req, use_tqdm=False)[0]
    assert chat.outputs[0].token_ids == gen.outputs[0].token_ids
    plain = lora_llm.chat(conv, greedy(8), use_tqdm=False)[0]
    assert plain.outputs[0].token_ids != chat.outputs[0].token_ids


def test_prefix_cache_never_shares_kv_between_adapters(smol_model_dir, adapter_root, prompts):
    llm = LLM(
        model=smol_model_dir,
        dtype="float32",
        enable_lora=True,
        max_loras=2,
        enable_prefix_caching=True,
    )
    long = [t for p in prompts for t in p] * 3  # several blocks
    a, b = lora(adapter_root, "attn-r8"), lora(adapter_root, "all-r4-rs")

    def run(req, **kw):
        out = llm.generate(
            TokensPrompt(prompt_token_ids=long), greedy(6, **kw), lora_request=req, use_tqdm=False
        )[0]
        return list(out.outputs[0].token_ids), out.num_cached_tokens

    first_a, _ = run(a)
    again_a, cached = run(a)
    assert cached > 0
    got_b, cached_b = run(b)
    got_base, cached_base = run(None)
    assert cached_b == 0 and cached_base == 0
    # Prompt logprobs read nothing from the cache: these are the uncached answers.
    assert first_a == again_a == run(a, prompt_logprobs=0)[0]
    assert got_b == run(b, prompt_logprobs=0)[0]
    assert got_base == run(None, prompt_logprobs=0)[0]
    # The same id with other weights meets none of the old adapter's KV.
    assert llm.remove_lora(a.lora_int_id)
    swapped = LoRARequest("swapped", a.lora_int_id, str(adapter_root / "mlp-r16"))
    got, cached = run(swapped)
    assert cached == 0 and got == run(swapped, prompt_logprobs=0)[0]


def test_adapters_are_added_listed_and_removed(lora_llm, adapter_root):
    req = lora(adapter_root, "qk-r16")
    assert lora_llm.add_lora(req) is True
    assert lora_llm.add_lora(req) is False
    assert req.lora_int_id in lora_llm.list_loras()
    assert lora_llm.remove_lora(req.lora_int_id) is True
    assert lora_llm.remove_lora(req.lora_int_id) is False
    assert req.lora_int_id not in lora_llm.list_loras()


def _still_serves(llm, root, prompts, peft_refs):
    out = llm.generate(
        [TokensPrompt(prompt_token_ids=prompts[0])] * 2,
        greedy(),
        lora_request=[None, lora(root, "attn-r8")],
        use_tqdm=False,
    )
    assert list(out[1].outputs[0].token_ids) == peft_refs["attn-r8"][0][0]


def test_bad_adapters_raise_value_errors_naming_them(
    lora_llm, adapter_root, prompts, peft_refs, tmp_path
):
    p = TokensPrompt(prompt_token_ids=prompts[0])
    missing = LoRARequest("ghost", 11, str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="ghost.*no such directory"):
        lora_llm.generate(p, greedy(), lora_request=missing, use_tqdm=False)

    corrupt = tmp_path / "corrupt"
    shutil.copytree(adapter_root / "attn-r8", corrupt)
    (corrupt / "adapter_model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    with pytest.raises(ValueError, match="broken.*unreadable"):
        lora_llm.generate(
            p, greedy(), lora_request=LoRARequest("broken", 12, str(corrupt)), use_tqdm=False
        )

    bad_json = tmp_path / "bad-json"
    shutil.copytree(adapter_root / "attn-r8", bad_json)
    (bad_json / "adapter_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="badjson.*not valid JSON"):
        lora_llm.add_lora(LoRARequest("badjson", 13, str(bad_json)))

    # mlp-r16 has rank 16; an engine whose max_lora_rank is 8 refuses it (below).
    wrong_module = tmp_path / "wrong-module"
    shutil.copytree(adapter_root / "attn-r8", wrong_module)
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(wrong_module / "adapter_model.safetensors"))
    tensors = {k.replace("q_proj", "qkv_proj"): v for k, v in tensors.items()}
    save_file(tensors, str(wrong_module / "adapter_model.safetensors"))
    with pytest.raises(ValueError, match="fused.*module the model lacks"):
        lora_llm.add_lora(LoRARequest("fused", 14, str(wrong_module)))

    wrong_shape = tmp_path / "wrong-shape"
    shutil.copytree(adapter_root / "attn-r8", wrong_shape)
    tensors = load_file(str(wrong_shape / "adapter_model.safetensors"))
    key = next(k for k in tensors if "lora_B" in k)
    tensors[key] = tensors[key][:-1].contiguous()
    save_file(tensors, str(wrong_shape / "adapter_model.safetensors"))
    with pytest.raises(ValueError, match="shaped.*do not fit"):
        lora_llm.add_lora(LoRARequest("shaped", 15, str(wrong_shape)))

    lora_llm.add_lora(lora(adapter_root, "attn-r8"))
    with pytest.raises(ValueError, match="already holds 'attn-r8'"):
        lora_llm.add_lora(LoRARequest("other", 1, str(adapter_root / "mlp-r16")))
    with pytest.raises(ValueError, match="Lists must be the same length"):
        lora_llm.generate([p, p], greedy(), lora_request=[None], use_tqdm=False)
    with pytest.raises(TypeError, match="LoRARequest"):
        lora_llm.generate(p, greedy(), lora_request="attn-r8", use_tqdm=False)
    assert not {11, 12, 13, 14, 15} & lora_llm.list_loras()
    _still_serves(lora_llm, adapter_root, prompts, peft_refs)


def test_rank_above_max_lora_rank_and_disabled_adapters(smol_model_dir, adapter_root, prompts):
    llm = LLM(model=smol_model_dir, dtype="float32", enable_lora=True, max_lora_rank=8)
    p = TokensPrompt(prompt_token_ids=prompts[0])
    with pytest.raises(ValueError, match="mlp-r16.*rank 16.*above max_lora_rank=8"):
        llm.generate(p, greedy(4), lora_request=lora(adapter_root, "mlp-r16"), use_tqdm=False)
    assert (
        len(
            llm.generate(p, greedy(4), lora_request=lora(adapter_root, "attn-r8"), use_tqdm=False)[
                0
            ]
            .outputs[0]
            .token_ids
        )
        == 4
    )
    with pytest.raises(ValueError, match="enable_prompt_adapter"):
        llm.generate(
            p,
            greedy(4),
            prompt_adapter_request=PromptAdapterRequest("pa", 1, str(adapter_root / "prompt-8"), 8),
            use_tqdm=False,
        )
    del llm
    plain = LLM(model=smol_model_dir, dtype="float32")
    with pytest.raises(ValueError, match="attn-r8.*enable_lora=True"):
        plain.generate(p, greedy(4), lora_request=lora(adapter_root, "attn-r8"), use_tqdm=False)
    assert len(plain.generate(p, greedy(4), use_tqdm=False)[0].outputs[0].token_ids) == 4


def test_host_cache_smaller_than_the_adapters_reloads_them(
    smol_model_dir, adapter_root, prompts, peft_refs
):
    llm = LLM(model=smol_model_dir, dtype="float32", enable_lora=True, max_loras=1, max_cpu_loras=1)
    reqs = [lora(adapter_root, n) for n in MIXED] * 2
    outs = llm.generate(
        [TokensPrompt(prompt_token_ids=prompts[1])] * len(reqs),
        greedy(),
        lora_request=reqs,
        use_tqdm=False,
    )
    for r, o in zip(reqs, outs):
        assert list(o.outputs[0].token_ids) == peft_refs[r.lora_name][0][1], r.lora_name


def test_prompt_adapter_matches_peft(smol_model_dir, adapter_root, prompts, peft_refs):
    llm = LLM(
        model=smol_model_dir,
        dtype="float32",
        enable_prompt_adapter=True,
        max_prompt_adapter_token=8,
        enable_lora=True,
    )
    req = PromptAdapterRequest("pirate", 1, str(adapter_root / "prompt-8"), 8)
    outs = llm.generate(
        [TokensPrompt(prompt_token_ids=p) for p in prompts],
        greedy(logprobs=0, prompt_logprobs=0),
        prompt_adapter_request=req,
        use_tqdm=False,
    )
    base = llm.generate(
        [TokensPrompt(prompt_token_ids=p) for p in prompts], greedy(), use_tqdm=False
    )
    ref_ids, ref_lps = peft_refs["prompt"]
    for j, out in enumerate(outs):
        got = list(out.outputs[0].token_ids)
        assert got == ref_ids[j]
        lps = [entry[t].logprob for entry, t in zip(out.outputs[0].logprobs, got)]
        assert lps == pytest.approx(ref_lps[j], abs=2e-3)
        assert out.prompt_token_ids == prompts[j]
        assert len(out.prompt_logprobs) == len(prompts[j]) and out.prompt_logprobs[0] is None
    assert any(
        list(o.outputs[0].token_ids) != list(b.outputs[0].token_ids) for o, b in zip(outs, base)
    )
    # A prompt adapter and a LoRA together run (PEFT has no single reference for the pair).
    both = llm.generate(
        TokensPrompt(prompt_token_ids=prompts[0]),
        greedy(),
        lora_request=lora(adapter_root, "attn-r8"),
        prompt_adapter_request=req,
        use_tqdm=False,
    )[0]
    assert len(both.outputs[0].token_ids) == MAX_NEW
    with pytest.raises(ValueError, match="num_virtual_tokens=4 but the adapter has 8"):
        llm.generate(
            TokensPrompt(prompt_token_ids=prompts[0]),
            greedy(),
            prompt_adapter_request=PromptAdapterRequest("short", 2, req.local_path, 4),
            use_tqdm=False,
        )
    assert llm.list_prompt_adapters() == [1]
    assert llm.remove_prompt_adapter(1) is True


def test_prompt_adapter_above_max_prompt_adapter_token(smol_model_dir, adapter_root, prompts):
    llm = LLM(
        model=smol_model_dir,
        dtype="float32",
        enable_prompt_adapter=True,
        max_prompt_adapter_token=4,
    )
    req = PromptAdapterRequest("pirate", 1, str(adapter_root / "prompt-8"), 8)
    with pytest.raises(
        ValueError, match="pirate.*8 virtual tokens, above max_prompt_adapter_token=4"
    ):
        llm.generate(
            TokensPrompt(prompt_token_ids=prompts[0]),
            greedy(),
            prompt_adapter_request=req,
            use_tqdm=False,
        )
    lora_dir = str(adapter_root / "attn-r8")
    with pytest.raises(ValueError, match='not "PROMPT_TUNING"'):
        llm.add_prompt_adapter(PromptAdapterRequest("lora-as-prompt", 2, lora_dir, 8))


def test_request_and_engine_argument_checks(smol_model_dir, adapter_root, tmp_path):
    with pytest.raises(ValueError, match="lora_int_id must be an int > 0"):
        LoRARequest("a", 0, "/x")
    with pytest.raises(ValueError, match="lora_path"):
        LoRARequest("a", 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        req = LoRARequest("a", 1, lora_local_path=str(adapter_root / "attn-r8"))
    assert req.lora_path == str(adapter_root / "attn-r8")
    assert any(issubclass(w.category, DeprecationWarning) for w in caught)
    assert req == LoRARequest("a", 2, "/elsewhere") and hash(req) == hash("a")
    with pytest.raises(ValueError, match="prompt_adapter_id must be an int > 0"):
        PromptAdapterRequest("p", 0, "/x", 8)
    with pytest.raises(ValueError, match="max_lora_rank must be one of"):
        EngineArgs(model=smol_model_dir, enable_lora=True, max_lora_rank=12)
    with pytest.raises(ValueError, match="max_cpu_loras \\(1\\) must be >= max_loras \\(2\\)"):
        EngineArgs(model=smol_model_dir, enable_lora=True, max_loras=2, max_cpu_loras=1)
    with pytest.raises(ValueError, match="max_prompt_adapter_token must be set"):
        EngineArgs(model=smol_model_dir, enable_prompt_adapter=True)
    with pytest.raises(ValueError, match="dtype"):
        EngineArgs(model=smol_model_dir, enable_lora=True, lora_dtype="int8")
    config = json.loads((adapter_root / "attn-r8" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA"


@pytest.mark.parametrize("lora_dtype", ["auto", "float32"])
def test_bfloat16_model_with_adapters_stays_close_to_float32(
    smol_model_dir, adapter_root, prompts, peft_refs, lora_dtype
):
    llm = LLM(
        model=smol_model_dir,
        dtype="bfloat16",
        enable_lora=True,
        max_loras=3,
        lora_dtype=lora_dtype,
    )
    outs = llm.generate(
        [TokensPrompt(prompt_token_ids=prompts[0])] * len(MIXED),
        greedy(4),
        lora_request=[lora(adapter_root, n) for n in MIXED],
        use_tqdm=False,
    )
    for name, out in zip(MIXED, outs):
        # bf16 rounding may flip a near tie late; the first tokens agree with PEFT fp32.
        assert list(out.outputs[0].token_ids)[:2] == peft_refs[name][0][0][:2], name


def test_adapters_survive_chunked_prefill_preemption_beams_and_sampling(
    lora_llm, smol_model_dir, adapter_root, prompts
):
    # The same mixed batch through an engine that chunks every prompt and runs out of KV blocks
    # (requests are swapped out and back in): greedy, beam-search and seeded-sampling outputs
    # equal the unconstrained engine's, adapter by adapter.
    loras = [None] + [lora(adapter_root, n) for n in MIXED]
    batch = [(r, p) for r in loras for p in prompts]
    settings = [
        greedy(24),
        SamplingParams(n=2, temperature=0.8, seed=11, max_tokens=24, ignore_eos=True),
        SamplingParams(n=2, best_of=2, use_beam_search=True, temperature=0.0, max_tokens=12),
    ]

    def run(llm):
        out = []
        for sp in settings:
            res = llm.generate(
                [TokensPrompt(prompt_token_ids=p) for _, p in batch],
                sp,
                lora_request=[r for r, _ in batch],
                use_tqdm=False,
            )
            out.append([[list(c.token_ids) for c in o.outputs] for o in res])
        return out

    tight = LLM(
        model=smol_model_dir,
        dtype="float32",
        enable_lora=True,
        max_loras=2,
        enable_chunked_prefill=True,
        max_num_batched_tokens=16,
        num_gpu_blocks_override=12,
        max_model_len=96,
        preemption_mode="swap",
    )
    try:
        assert run(tight) == run(lora_llm)
        metrics = {m.name: m for m in tight.get_metrics()}
        assert metrics["vllm:num_preemptions"].value > 0
    finally:
        del tight


def test_speculative_decoding_with_adapters_matches_peft(
    smol_model_dir, adapter_root, prompts, peft_refs
):
    llm = LLM(
        model=smol_model_dir,
        dtype="float32",
        enable_lora=True,
        max_loras=2,
        max_lora_rank=16,
        enable_prompt_adapter=True,
        max_prompt_adapter_token=8,
        speculative_model="[ngram]",
        num_speculative_tokens=4,
        ngram_prompt_lookup_max=3,
    )
    requests = [lora(adapter_root, n) for n in MIXED]
    batch = [(r, p) for r in requests for p in prompts]
    outs = llm.generate(
        [TokensPrompt(prompt_token_ids=p) for _, p in batch],
        greedy(),
        lora_request=[r for r, _ in batch],
        use_tqdm=False,
    )
    for k, out in enumerate(outs):
        name, j = MIXED[k // len(prompts)], k % len(prompts)
        assert list(out.outputs[0].token_ids) == peft_refs[name][0][j], f"{name}, prompt {j}"
    req = PromptAdapterRequest("pirate", 1, str(adapter_root / "prompt-8"), 8)
    outs = llm.generate(
        [TokensPrompt(prompt_token_ids=p) for p in prompts],
        greedy(),
        prompt_adapter_request=req,
        use_tqdm=False,
    )
    assert [list(o.outputs[0].token_ids) for o in outs] == peft_refs["prompt"][0]
    metrics = {m.name: m.value for m in llm.get_metrics()}
    assert metrics["vllm:spec_decode_num_draft_tokens"] > 0
