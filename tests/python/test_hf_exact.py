"""HF transformers (fp32) is the oracle: greedy token ids must match it exactly, for the real
SmolLM2 model and for tiny random-weight Llama (llama3 rope scaling), Mistral, Qwen2 and Qwen3
models; bf16 must agree on the first tokens with close logprobs."""

from __future__ import annotations

import gc
import math
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from taco_llm import LLM, SamplingParams, TokensPrompt

TINY_VOCAB = 256

_TINY_ARCHS = {
    # Llama with llama3 rope scaling whose original context (64) is far below the prompts, so
    # the scaled frequencies matter; untied head, attention biases off.
    "llama": dict(
        model_type="llama",
        architectures=["LlamaForCausalLM"],
        rope_parameters=dict(
            rope_type="llama3",
            rope_theta=10000.0,
            factor=8.0,
            low_freq_factor=1.0,
            high_freq_factor=4.0,
            original_max_position_embeddings=64,
        ),
        tie_word_embeddings=False,
    ),
    "mistral": dict(
        model_type="mistral", architectures=["MistralForCausalLM"], sliding_window=None
    ),
    # Qwen2: q/k/v biases, tied embeddings.
    "qwen2": dict(model_type="qwen2", architectures=["Qwen2ForCausalLM"], tie_word_embeddings=True),
    # Qwen3: q/k RMSNorm and a head_dim that is not hidden_size / heads.
    "qwen3": dict(model_type="qwen3", architectures=["Qwen3ForCausalLM"], head_dim=32),
}


def tiny_model_dir(arch: str, root: Path) -> str:
    """Saves a random-weight `arch` model (2 layers, GQA 4:2) with safetensors under root."""
    spec = dict(_TINY_ARCHS[arch])
    model_type = spec.pop("model_type")
    config = AutoConfig.for_model(
        model_type,
        vocab_size=TINY_VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        rms_norm_eps=1e-6,
        # Wider than the default 0.02 so logits are peaked and greedy choices are not near-ties.
        initializer_range=0.2,
        eos_token_id=1,
        bos_token_id=0,
        **spec,
    )
    torch.manual_seed(sum(map(ord, arch)))
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    # Norm weights and biases start at 1 and 0 in HF; perturb them so their loading is tested.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.5 * torch.randn_like(p))
    path = root / arch
    model.save_pretrained(path, safe_serialization=True)
    return str(path)


def hf_greedy(model, prompt: list[int], n: int) -> tuple[list[int], list[float]]:
    """Plain greedy decoding with a KV cache and no EOS handling (the engine's ignore_eos)."""
    ids, logprobs = [], []
    cache = None
    inp = torch.tensor([prompt])
    with torch.no_grad():
        for _ in range(n):
            out = model(input_ids=inp, cache=cache, use_cache=True)
            cache = out.cache
            logp = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
            tok = int(torch.argmax(out.logits[0, -1]))
            ids.append(tok)
            logprobs.append(float(logp[tok]))
            inp = torch.tensor([[tok]])
    return ids, logprobs


def engine_greedy(llm: LLM, prompts: list[list[int]], n: int):
    params = SamplingParams(temperature=0.0, max_tokens=n, ignore_eos=True, logprobs=0)
    outs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
    result = []
    for o in outs:
        c = o.outputs[0]
        lps = [step[tok].logprob for tok, step in zip(c.token_ids, c.logprobs)]
        result.append((list(c.token_ids), lps))
    return result


def random_prompts(count: int, seed: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    lengths = [3, 7, 16, 17, 33, 64, 100, 200][:count]
    return [torch.randint(2, TINY_VOCAB, (n,), generator=g).tolist() for n in lengths]


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny_models")


@pytest.mark.parametrize("arch", sorted(_TINY_ARCHS))
def test_tiny_fp32_greedy_matches_hf(arch, tiny_root):
    path = tiny_model_dir(arch, tiny_root)
    prompts = random_prompts(8, seed=len(arch))
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    want = [hf_greedy(hf, p, 24) for p in prompts]
    llm = LLM(model=path, dtype="float32", skip_tokenizer_init=True, seed=0)
    try:
        got = engine_greedy(llm, prompts, 24)
    finally:
        del llm
        gc.collect()
    for i, ((ids, lps), (want_ids, want_lps)) in enumerate(zip(got, want)):
        assert ids == want_ids, f"{arch} prompt {i} (len {len(prompts[i])})"
        assert max(abs(a - b) for a, b in zip(lps, want_lps)) < 1e-3


@pytest.mark.parametrize("arch", sorted(_TINY_ARCHS))
def test_tiny_bf16_close_to_hf(arch, tiny_root):
    path = tiny_model_dir(arch, tiny_root)
    prompts = random_prompts(6, seed=100 + len(arch))
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16)
    want = [hf_greedy(hf, p, 4) for p in prompts]
    llm = LLM(model=path, dtype="bfloat16", skip_tokenizer_init=True, seed=0)
    try:
        got = engine_greedy(llm, prompts, 4)
    finally:
        del llm
        gc.collect()
    first_agree = sum(ids[0] == w[0] for (ids, _), (w, _) in zip(got, want))
    assert first_agree >= len(prompts) - 1, f"{arch}: bf16 first tokens agree {first_agree}"
    for (ids, lps), (want_ids, want_lps) in zip(got, want):
        if ids[0] == want_ids[0]:
            assert abs(lps[0] - want_lps[0]) < 0.15


def smol_prompts(tokenizer) -> list[list[int]]:
    """16 prompts, chat-formatted and raw text, from 4 to about 500 tokens."""
    raw = [
        "The capital of France is",
        "def fibonacci(n):\n",
        "Once upon a time, in a small village by the sea,",
        "1, 2, 3, 4, 5,",
        "The quick brown fox jumps over the lazy dog. " * 5,
        "Photosynthesis is the process by which",
        "In 1969, the first humans landed on",
        "Here is a recipe for pancakes:\n1.",
        " ".join(f"Item {i} costs {i * 3} dollars." for i in range(60)),
    ]
    chats = [
        "What is 2+2?",
        "Write a haiku about the ocean.",
        "Explain recursion to a child.",
        "Give me three tips for learning a new language.",
        "Translate 'good morning' into French and Spanish.",
        "Summarize this: " + "The city council met on Tuesday to discuss the budget. " * 8,
        "List the planets of the solar system.",
    ]
    prompts = [tokenizer(t)["input_ids"] for t in raw]
    for c in chats:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": c}], add_generation_prompt=True, tokenize=False
        )
        prompts.append(tokenizer(text, add_special_tokens=False)["input_ids"])
    return prompts


def test_smol_fp32_greedy_matches_hf(smol_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(smol_model_dir)
    prompts = smol_prompts(tokenizer)
    lengths = sorted(len(p) for p in prompts)
    assert len(prompts) == 16 and lengths[0] <= 8 and lengths[-1] >= 400, lengths
    llm = LLM(model=smol_model_dir, dtype="float32", seed=0)
    try:
        got = engine_greedy(llm, prompts, 48)
    finally:
        del llm
        gc.collect()
    hf = AutoModelForCausalLM.from_pretrained(smol_model_dir, dtype=torch.float32)
    for i, p in enumerate(prompts):
        want_ids, want_lps = hf_greedy(hf, p, 48)
        ids, lps = got[i]
        assert ids == want_ids, f"prompt {i} (len {len(p)})"
        assert max(abs(a - b) for a, b in zip(lps, want_lps)) < 1e-3
        assert all(math.isfinite(x) for x in lps)
