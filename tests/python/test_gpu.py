"""The engine on a CUDA GPU, run by `make gpu-check` on a GPU machine (TACO_TEST_GPU=1:
elsewhere conftest.py hides GPUs from the suite); every test skips where this build has no CUDA
backend or sees no device. HF transformers on the same GPU is the
oracle: fp32 greedy token ids must match it exactly (TF32 off on both sides)."""

from __future__ import annotations

import gc
import json
import re
from pathlib import Path

import pytest
import torch

# pytest puts this directory on sys.path (rootdir-relative test modules).
from test_hf_exact import engine_greedy, tiny_model_dir

from taco_llm import LLM, SamplingParams, TokensPrompt


def _cuda_engine_available() -> bool:
    try:
        from taco_llm import _C
    except ImportError:
        return False
    return bool(_C.cuda_available()) and torch.cuda.is_available()


needs_gpu = pytest.mark.skipif(
    not _cuda_engine_available(), reason="no CUDA backend in this build or no CUDA device"
)


@pytest.mark.skipif(_cuda_engine_available(), reason="a CUDA device is usable here")
def test_cuda_device_refused_without_gpu(smol_model_dir):
    with pytest.raises(ValueError, match="device"):
        LLM(model=smol_model_dir, device="cuda")


@needs_gpu
def test_head_dim_the_gpu_kernels_lack_is_refused_up_front(tmp_path):
    # The tiny Llama has head_dim 16: device="cuda" names it before loading anything, and
    # device="auto" serves it on the CPU.
    model = tiny_model_dir("llama", tmp_path)
    with pytest.raises(ValueError, match="head_dim 16"):
        LLM(model=model, device="cuda", skip_tokenizer_init=True)
    llm = LLM(model=model, device="auto", dtype="float32", skip_tokenizer_init=True)
    assert llm.model_info["device"] == "cpu"
    params = SamplingParams(max_tokens=2, ignore_eos=True, detokenize=False)
    out = llm.generate([TokensPrompt(prompt_token_ids=[5, 6, 7])], params, use_tqdm=False)
    assert len(out[0].outputs[0].token_ids) == 2


TEXTS = [
    "The capital of France is",
    "Write a short poem about the sea.\n",
    "def fibonacci(n):\n    ",
    "Explain paged attention in one paragraph:",
]


def hf_greedy_full(model, prompt: list[int], n: int) -> tuple[list[int], list[float]]:
    """Greedy decoding by recomputing the whole sequence each step (no cache API involved)."""
    ids, logprobs = list(prompt), []
    with torch.no_grad():
        for _ in range(n):
            logits = model(input_ids=torch.tensor([ids], device="cuda")).logits[0, -1].float()
            logp = torch.log_softmax(logits, dim=-1)
            tok = int(torch.argmax(logits))
            ids.append(tok)
            logprobs.append(float(logp[tok]))
    return ids[len(prompt) :], logprobs


@pytest.fixture(scope="module")
def prompts(smol_model_dir) -> list[list[int]]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smol_model_dir)
    return [tok(t)["input_ids"] for t in TEXTS]


@pytest.fixture(scope="module")
def hf_fp32(smol_model_dir, prompts):
    from transformers import AutoModelForCausalLM

    torch.backends.cuda.matmul.allow_tf32 = False
    model = AutoModelForCausalLM.from_pretrained(smol_model_dir, dtype=torch.float32).cuda().eval()
    want = [hf_greedy_full(model, p, 32) for p in prompts]
    del model
    torch.cuda.empty_cache()
    return want


def _make(smol_model_dir, **kw) -> LLM:
    return LLM(model=smol_model_dir, device="cuda", seed=0, **kw)


def _release() -> None:
    """After the caller's `del` of its last engine reference: collect it, return its memory."""
    gc.collect()
    torch.cuda.empty_cache()


@pytest.mark.parametrize("enforce_eager", [True, False])
@needs_gpu
def test_fp32_greedy_matches_hf_on_gpu(smol_model_dir, prompts, hf_fp32, enforce_eager):
    llm = _make(smol_model_dir, dtype="float32", enforce_eager=enforce_eager)
    assert llm.model_info["device"] == "cuda"
    try:
        got = engine_greedy(llm, prompts, 32)
        # Without logprobs, greedy tokens come from the device argmax.
        plain = SamplingParams(temperature=0.0, max_tokens=32, ignore_eos=True)
        fast = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], plain)
    finally:
        del llm
        _release()
    for i, ((ids, lps), (want_ids, want_lps)) in enumerate(zip(got, hf_fp32)):
        assert ids == want_ids, f"prompt {i}: {TEXTS[i]!r}"
        assert max(abs(a - b) for a, b in zip(lps, want_lps)) < 2e-3
        assert list(fast[i].outputs[0].token_ids) == want_ids
        assert fast[i].outputs[0].cumulative_logprob is None  # vLLM 0.6: no logprobs asked


@needs_gpu
def test_auto_dtype_close_to_fp32(smol_model_dir, prompts, hf_fp32):
    # dtype "auto" on a GPU follows the config's, float32 served as float16 (vLLM's rule); the
    # default model's directory is converted to float32.
    config = json.loads((Path(smol_model_dir) / "config.json").read_text())
    declared = config.get("torch_dtype") or config.get("dtype")
    llm = _make(smol_model_dir)
    try:
        assert llm.model_info["dtype"] == ("bfloat16" if declared == "bfloat16" else "float16")
        got = engine_greedy(llm, prompts, 4)
    finally:
        del llm
        _release()
    for (ids, lps), (want_ids, want_lps) in zip(got, hf_fp32):
        assert ids[:2] == want_ids[:2]
        assert abs(lps[0] - want_lps[0]) < 0.1


@needs_gpu
def test_too_little_memory_for_the_kv_cache_is_a_value_error(smol_model_dir, prompts):
    # 1% of the device does not even hold the weights and activations: refused at startup, the
    # message naming the argument, and the next engine in the process works.
    with pytest.raises(ValueError, match="gpu_memory_utilization"):
        _make(smol_model_dir, dtype="bfloat16", gpu_memory_utilization=0.01)
    gc.collect()
    llm = _make(smol_model_dir, dtype="bfloat16", gpu_memory_utilization=0.3)
    try:
        assert len(engine_greedy(llm, prompts[:1], 4)[0][0]) == 4
    finally:
        del llm
        _release()


@needs_gpu
def test_kv_cache_follows_gpu_memory_utilization(smol_model_dir):
    # vLLM 0.6's rule: the cache gets gpu_memory_utilization x capacity less what this engine
    # itself took (weights, activations), whatever else the device holds.
    def blocks_at(utilization: float) -> int:
        llm = _make(smol_model_dir, dtype="bfloat16", gpu_memory_utilization=utilization)
        blocks = llm.model_info["num_device_blocks"]
        del llm  # the only reference: the engine and its cache go before the next one
        gc.collect()
        torch.cuda.empty_cache()
        return blocks

    small_blocks, large_blocks = blocks_at(0.2), blocks_at(0.4)
    total = torch.cuda.get_device_properties(0).total_memory
    # SmolLM2 bf16: 30 layers x 3 kv heads x 64 dims x 16 tokens x 2 (K, V) x 2 bytes per block.
    block_bytes = 30 * 3 * 64 * 16 * 2 * 2
    assert small_blocks > 0
    # 0.2 more of the device goes entirely to blocks (weights and activations are already paid).
    assert abs((large_blocks - small_blocks) * block_bytes - 0.2 * total) < 0.02 * total


@needs_gpu
def test_swap_preemption_on_gpu_keeps_outputs(smol_model_dir, prompts):
    params = SamplingParams(temperature=0.8, seed=7, max_tokens=48, ignore_eos=True)
    many = [TokensPrompt(prompt_token_ids=p) for p in prompts * 4]
    roomy = _make(smol_model_dir, dtype="float32")
    want = [o.outputs[0].token_ids for o in roomy.generate(many, params, use_tqdm=False)]
    del roomy
    _release()
    # 24 blocks of 16 tokens cannot hold 16 sequences of ~60 tokens: the scheduler must swap.
    tight = _make(
        smol_model_dir,
        dtype="float32",
        num_gpu_blocks_override=24,
        max_model_len=256,
        swap_space=1,
        preemption_mode="swap",
        max_num_seqs=16,
    )
    try:
        got = [o.outputs[0].token_ids for o in tight.generate(many, params, use_tqdm=False)]
        metrics = {m.name: m.value for m in tight.get_metrics()}
    finally:
        del tight
        _release()
    assert metrics["vllm:num_preemptions"] > 0
    assert got == want


@needs_gpu
def test_sampling_and_n_on_gpu(smol_model_dir, prompts):
    llm = _make(smol_model_dir, dtype="bfloat16")
    try:
        params = SamplingParams(n=3, temperature=1.0, top_p=0.9, top_k=50, seed=1, max_tokens=16)
        a = llm.generate([TokensPrompt(prompt_token_ids=prompts[0])], params, use_tqdm=False)
        b = llm.generate([TokensPrompt(prompt_token_ids=prompts[0])], params, use_tqdm=False)
    finally:
        del llm
        _release()
    assert len(a[0].outputs) == 3
    assert [c.token_ids for c in a[0].outputs] == [c.token_ids for c in b[0].outputs]


@needs_gpu
def test_device_sampling_agrees_with_the_cpu_sampler(smol_model_dir, prompts):
    # Batches without processors sample on the GPU (cuda/src/sampling.cu); the CPU engine samples
    # on the host. Both draw the same seeded uniform numbers and fp32 logits agree to ~1e-5, so
    # tokens, logprobs, ranks and top lists must agree. Greedy rows with logprobs share the batch.
    # A draw within ~1e-5 of a boundary would flip and diverge the rest of its row: 8 tokens keep
    # that chance small.
    settings = [
        SamplingParams(temperature=0.8, top_k=40, top_p=0.9, min_p=0.02, seed=11, logprobs=5),
        SamplingParams(temperature=1.0, seed=12, logprobs=2),
        SamplingParams(temperature=0.0, logprobs=3),
        SamplingParams(temperature=0.6, top_p=0.5, seed=13),
    ]
    for p in settings:
        p.max_tokens, p.ignore_eos = 8, True
    batch = [TokensPrompt(prompt_token_ids=p) for p in prompts]

    def run(device: str):
        llm = LLM(model=smol_model_dir, device=device, dtype="float32", seed=0)
        try:
            return llm.generate(batch, settings, use_tqdm=False)
        finally:
            del llm
            _release()

    gpu, cpu = run("cuda"), run("cpu")
    for i, (g, c) in enumerate(zip(gpu, cpu)):
        g, c = g.outputs[0], c.outputs[0]
        assert g.token_ids == c.token_ids, f"prompt {i}"
        if settings[i].logprobs is None:
            assert g.cumulative_logprob is None and c.cumulative_logprob is None
            continue
        assert abs(g.cumulative_logprob - c.cumulative_logprob) < 1e-2
        for step_g, step_c in zip(g.logprobs, c.logprobs):
            assert list(step_g) == list(step_c), f"prompt {i}: top ids"
            for tok, lp in step_c.items():
                assert step_g[tok].rank == lp.rank
                assert abs(step_g[tok].logprob - lp.logprob) < 2e-3


@needs_gpu
def test_guided_outputs_on_the_gpu(smol_model_dir):
    # Guided rows are masked on the device (cuda/src/token_bitmask.cu) before the device argmax
    # (greedy, no logprobs) or the sampling kernel (T=0.8 seeded); the CPU engine masks on the
    # host. Finished outputs must satisfy their constraints, and greedy ones equal the CPU's.
    import jsonschema

    from taco_llm import GuidedDecodingParams

    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 16},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
        },
        "required": ["name", "age"],
    }
    guides = [
        GuidedDecodingParams(json=schema),
        GuidedDecodingParams(regex=r"[0-9]{3}-[0-9]{4}"),
        GuidedDecodingParams(choice=["red", "green", "blue"]),
    ]
    prompts = ["A person as JSON:", "A phone number:", "A colour:"]
    settings = [SamplingParams(temperature=0.0, max_tokens=60, guided_decoding=g) for g in guides]
    settings += [
        SamplingParams(temperature=0.8, seed=7, max_tokens=60, guided_decoding=g) for g in guides
    ]

    def run(device: str):
        llm = LLM(model=smol_model_dir, device=device, dtype="float32", seed=0)
        try:
            return llm.generate(prompts * 2, settings, use_tqdm=False)
        finally:
            del llm
            _release()

    gpu, cpu = run("cuda"), run("cpu")
    for i, out in enumerate(gpu):
        c = out.outputs[0]
        if c.finish_reason != "stop":
            continue
        kind = i % 3
        if kind == 0:
            jsonschema.validate(json.loads(c.text), schema)
        elif kind == 1:
            assert re.fullmatch(r"[0-9]{3}-[0-9]{4}", c.text), c.text
        else:
            assert c.text in ("red", "green", "blue")
    for g, c in zip(gpu[:3], cpu[:3]):
        assert g.outputs[0].token_ids == c.outputs[0].token_ids


@needs_gpu
def test_lora_batches_on_the_gpu_match_the_cpu(smol_model_dir, tmp_path):
    # Three PEFT adapters and the base model in one batch, through cuda/src/lora.cu in fp32
    # (two slots: adapters are copied in and out between steps): greedy ids equal the CPU's,
    # which equal HF + PEFT's (test_adapters.py).
    pytest.importorskip("peft")
    from peft_adapters import make_lora

    from taco_llm import LoRARequest

    names = ["attn-r8", "mlp-r16", "all-r4-rs"]
    loras = [None] + [
        LoRARequest(n, i + 1, make_lora(smol_model_dir, n, tmp_path)) for i, n in enumerate(names)
    ]
    prompts = ["The capital of France is", "def fibonacci(n):"]
    batch = [(r, p) for r in loras for p in prompts]
    params = SamplingParams(temperature=0.0, max_tokens=16, ignore_eos=True)

    def run(device: str):
        llm = LLM(
            model=smol_model_dir, device=device, dtype="float32", enable_lora=True, max_loras=2
        )
        try:
            outs = llm.generate(
                [p for _, p in batch], params, lora_request=[r for r, _ in batch], use_tqdm=False
            )
            return [list(o.outputs[0].token_ids) for o in outs]
        finally:
            del llm
            _release()

    assert run("cuda") == run("cpu")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@needs_gpu
def test_gguf_4bit_weights_on_gpu_close_to_fp32(smol_model_dir, prompts, hf_fp32, dtype):
    # The default GGUF's Q4_1 projections run the W4A16 kernels (GEMV for the 4-row decodes, the
    # widened weight for prefill); the HF directory holds the same weights dequantized.
    from taco_llm.default_model import default_gguf

    llm = LLM(model=default_gguf(), device="cuda", dtype=dtype, seed=0)
    try:
        got = engine_greedy(llm, prompts, 4)
    finally:
        del llm
        _release()
    for (ids, lps), (want_ids, want_lps) in zip(got, hf_fp32):
        assert ids[:2] == want_ids[:2]
        assert abs(lps[0] - want_lps[0]) < 0.1


@needs_gpu
def test_awq_checkpoint_on_gpu_close_to_hf(smol_model_dir, prompts, tmp_path):
    from group_quant_models import save_quantized
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(smol_model_dir, dtype=torch.float32).eval()
    path = str(tmp_path / "awq")
    save_quantized(path, model, method="awq", group_size=64)  # model now holds the dequantized
    torch.backends.cuda.matmul.allow_tf32 = False
    model = model.cuda()
    want = [hf_greedy_full(model, p, 4) for p in prompts]
    del model
    _release()
    llm = LLM(model=path, device="cuda", dtype="float16", seed=0, skip_tokenizer_init=True)
    try:
        got = engine_greedy(llm, prompts, 4)
    finally:
        del llm
        _release()
    for (ids, lps), (want_ids, want_lps) in zip(got, want):
        assert ids[:2] == want_ids[:2]
        assert abs(lps[0] - want_lps[0]) < 0.1


@needs_gpu
def test_cpu_offload_gives_the_same_tokens(smol_model_dir, prompts, hf_fp32):
    """cpu_offload_gb: the first decoder layers' weights (0.2 GiB of SmolLM2's 0.5 in float32)
    stay in pinned host memory and are copied in layer by layer; greedy ids equal to HF's, as
    without offloading. Prints decode tok/s with and without."""
    import time

    rates = {}
    for gib in (0.0, 0.2):
        llm = _make(smol_model_dir, dtype="float32", cpu_offload_gb=gib)
        try:
            got = engine_greedy(llm, prompts, 32)
            params = SamplingParams(temperature=0.0, max_tokens=128, ignore_eos=True)
            start = time.perf_counter()
            llm.generate([TokensPrompt(prompt_token_ids=prompts[0])], params, use_tqdm=False)
            rates[gib] = 127 / (time.perf_counter() - start)
        finally:
            del llm
            _release()
        for (ids, _), (want_ids, _) in zip(got, hf_fp32):
            assert ids == want_ids
    print(f"\nbench cpu_offload_gb decode tok/s: none {rates[0.0]:.1f}, 0.2 GiB {rates[0.2]:.1f}")


@needs_gpu
def test_speculative_decoding_on_gpu_matches_hf(smol_model_dir, prompts, hf_fp32):
    """Drafted tokens verified on the device (argmax and device sampling paths): fp32 greedy ids
    equal HF's, seeded samples equal plain decoding's on the same GPU."""
    spec = {
        "speculative_model": "[ngram]",
        "num_speculative_tokens": 4,
        "ngram_prompt_lookup_max": 3,
    }
    seeded = SamplingParams(temperature=0.8, seed=3, max_tokens=32, ignore_eos=True)
    inputs = [TokensPrompt(prompt_token_ids=p) for p in prompts]
    results = []
    for args in (spec, {}):
        llm = _make(smol_model_dir, dtype="float32", **args)
        try:
            got = engine_greedy(llm, prompts, 32)
            sampled = llm.generate(inputs, seeded, use_tqdm=False)
            metrics = {m.name: m.value for m in llm.get_metrics()}
        finally:
            del llm
            _release()
        results.append((got, [list(o.outputs[0].token_ids) for o in sampled], metrics))
    (got, sampled, metrics), (_, plain_sampled, _) = results
    for i, ((ids, _), (want_ids, _)) in enumerate(zip(got, hf_fp32)):
        assert ids == want_ids, f"prompt {i}: {TEXTS[i]!r}"
    assert sampled == plain_sampled
    assert metrics["vllm:spec_decode_num_draft_tokens"] > 0
