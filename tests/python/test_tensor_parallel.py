"""Tensor parallelism on the CPU (gloo): a split model gives what the whole one does.

- SmolLM2 (9 heads, 3 KV heads) at tensor_parallel_size=3, from its HF directory and from the
  Q4_1 GGUF it ships as, and a small random Qwen2 with one KV head (replicated) and an odd
  vocabulary at tensor_parallel_size=2: in float32, greedy token ids equal to one rank and
  logprobs within 1e-4, with sampling features (prompt logprobs, seeded sampling with n > 1,
  beam search) that run on rank 0 after the logits gather.
- Both backends: local processes ("mp") and Ray actors, including a two-node Ray cluster
  simulated on this machine with one rank per node.
- A rank killed with SIGKILL in the middle of generate: the call raises within 30 s, naming
  the rank; no process is left; a new engine then works.
- Bad sizes and backends are refused with a ValueError before any rank starts."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from taco_llm import LLM, GuidedDecodingParams, SamplingParams, TokensPrompt

pytestmark = pytest.mark.slow

SMOL_PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n",
    "Once upon a time, in a land far away,",
]


def proc_state(pid: int) -> tuple[int, str] | None:
    """(parent pid, state letter) of a process, None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), fields[0]


def child_pids() -> set[int]:
    """Live (not zombie) rank processes started by this one (Ray's own processes, children too
    while a test's Ray instance runs, are not counted)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        state = proc_state(int(entry.name))
        if state is None or state[0] != os.getpid() or state[1] == "Z":
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"taco_llm.parallel.worker" in cmdline:
            pids.add(int(entry.name))
    return pids


@pytest.fixture(scope="module")
def qwen2_one_kv_head(tmp_path_factory) -> str:
    """4 query heads sharing 1 KV head (so 2 ranks replicate it), q/k/v biases, tied embeddings
    and a vocabulary of 255 (the ranks' slices are 128 and 127 rows)."""
    config = AutoConfig.for_model(
        "qwen2",
        architectures=["Qwen2ForCausalLM"],
        tie_word_embeddings=True,
        vocab_size=255,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        max_position_embeddings=1024,
        initializer_range=0.2,
        eos_token_id=1,
        bos_token_id=0,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.copy_(0.5 * torch.randn_like(p))
            elif name.endswith("norm.weight"):
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("tp") / "qwen2_kv1"
    model.save_pretrained(path, safe_serialization=True)
    return str(path)


def tiny_llm(path: str, **kwargs) -> LLM:
    return LLM(model=path, dtype="float32", skip_tokenizer_init=True, **kwargs)


def token_prompts(count: int = 4) -> list[TokensPrompt]:
    g = torch.Generator().manual_seed(3)
    return [
        TokensPrompt(prompt_token_ids=torch.randint(2, 255, (n,), generator=g).tolist())
        for n in (3, 17, 40, 70)[:count]
    ]


def run_features(llm: LLM, prompts) -> dict:
    """Greedy with logprobs and prompt logprobs, seeded sampling with n=2, and beam search."""
    greedy = llm.generate(
        prompts,
        SamplingParams(temperature=0.0, max_tokens=12, logprobs=3, prompt_logprobs=2),
        use_tqdm=False,
    )
    sampled = llm.generate(
        prompts,
        SamplingParams(temperature=0.8, top_p=0.95, n=2, seed=7, max_tokens=8),
        use_tqdm=False,
    )
    beams = llm.generate(
        prompts[:2],
        SamplingParams(n=2, best_of=3, use_beam_search=True, temperature=0.0, max_tokens=6),
        use_tqdm=False,
    )
    return {"greedy": greedy, "sampled": sampled, "beams": beams}


def run_guided(llm: LLM, prompts) -> list:
    """Structured output (rank 0 masks the gathered logits): greedy JSON and sampled choices."""
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 12}, "n": {"type": "integer"}},
        "required": ["name", "n"],
    }
    params = [
        SamplingParams(
            temperature=0.0, max_tokens=24, guided_decoding=GuidedDecodingParams(json=schema)
        ),
        SamplingParams(
            temperature=0.9, seed=4, n=2, guided_decoding=GuidedDecodingParams(choice=["yes", "no"])
        ),
    ]
    return llm.generate(prompts[:2], params, use_tqdm=False)


def assert_same(whole: dict, split: dict, tol: float = 1e-4) -> None:
    for a, b in zip(whole["greedy"], split["greedy"]):
        ca, cb = a.outputs[0], b.outputs[0]
        assert ca.token_ids == cb.token_ids
        for sa, sb in zip(ca.logprobs, cb.logprobs):
            assert sa.keys() == sb.keys()
            for t in sa:
                assert abs(sa[t].logprob - sb[t].logprob) < tol
        for pa, pb in zip((a.prompt_logprobs or [None])[1:], (b.prompt_logprobs or [None])[1:]):
            for t in pa:
                assert abs(pa[t].logprob - pb[t].logprob) < tol
    for key in ("sampled", "beams", "guided"):
        for a, b in zip(whole.get(key, []), split.get(key, [])):
            assert [c.token_ids for c in a.outputs] == [c.token_ids for c in b.outputs]


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray instance with room for three one-CPU ranks (this machine has two cores)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def smol_whole(smol_model_dir) -> dict:
    llm = LLM(model=smol_model_dir, dtype="float32")
    out = run_features(llm, SMOL_PROMPTS)
    out["guided"] = run_guided(llm, SMOL_PROMPTS)
    del llm
    return out


def test_smol_tp3_mp_matches_one_rank(smol_model_dir, smol_whole):
    llm = LLM(model=smol_model_dir, dtype="float32", tensor_parallel_size=3)
    assert len(child_pids()) >= 2
    split = run_features(llm, SMOL_PROMPTS)
    split["guided"] = run_guided(llm, SMOL_PROMPTS)
    assert all(c.text in ("yes", "no") for c in split["guided"][1].outputs)
    assert_same(smol_whole, split)
    del llm
    assert child_pids() == set()


# One rank against `tp` ranks in a fresh process whose CPU kernels run at the x86-64 level
# without VNNI: there the quantized linears compute in float. With VNNI they round activations
# to int8 per block, where float-noise differences between the ranks' partial sums flip int8
# steps (logprobs then differ by up to ~0.15, as int8 and float runs of one rank do).
_COMPARE = """
import json, sys
from taco_llm import LLM, SamplingParams, TokensPrompt
spec = json.loads(sys.argv[1])
prompts = [p if isinstance(p, str) else TokensPrompt(prompt_token_ids=p) for p in spec["prompts"]]
params = SamplingParams(temperature=0.0, max_tokens=12, logprobs=2)
out = {}
for tp in (1, spec["tp"]):
    llm = LLM(dtype="float32", tensor_parallel_size=tp, **spec["kwargs"])
    res = llm.generate(prompts, params, use_tqdm=False)
    out[tp] = [
        [list(o.outputs[0].token_ids), [{str(t): lp.logprob for t, lp in s.items()}
                                        for s in o.outputs[0].logprobs]]
        for o in res
    ]
    del llm
print(json.dumps(out))
"""


def compare_at_float_level(kwargs: dict, prompts: list, tp: int, tol: float = 1e-4) -> None:
    import json
    import subprocess
    import sys

    isa = "avx2" if "avx2" in Path("/proc/cpuinfo").read_text() else "generic"
    spec = {"kwargs": kwargs, "prompts": prompts, "tp": tp}
    done = subprocess.run(
        [sys.executable, "-c", _COMPARE, json.dumps(spec)],
        env=dict(os.environ, TACO_CPU_ISA=isa),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    for (ids1, lps1), (idsn, lpsn) in zip(out["1"], out[str(tp)]):
        assert ids1 == idsn
        for a, b in zip(lps1, lpsn):
            assert a.keys() == b.keys()
            assert max(abs(a[t] - b[t]) for t in a) < tol, (a, b)


def test_smol_gguf_tp3_matches_one_rank():
    """The default model as served (its Q4_1 GGUF): the shards stay 4-bit (every cut falls on a
    32-column block boundary)."""
    from taco_llm.default_model import default_gguf

    compare_at_float_level({"model": default_gguf()}, SMOL_PROMPTS, 3)


@pytest.fixture(scope="module")
def quantized_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tp_quant")


@pytest.mark.parametrize("fmt", ["awq", "gptq-act-order", "fp8", "kv-fp8"])
def test_quantized_formats_tp2_match_one_rank(fmt, quantized_root):
    """AWQ shards stay 4-bit; act-order GPTQ's column cuts load dequantized; FP8 weights
    (quantized at load) and 8-bit KV caches split like the rest (each rank holds its KV heads'
    8-bit blocks)."""
    from group_quant_models import save_quantized, tiny_llama

    model = tiny_llama(seed=3)
    path = quantized_root / fmt
    kwargs: dict = {"model": str(path), "skip_tokenizer_init": True}
    if fmt == "awq":
        save_quantized(str(path), model, method="awq", group_size=64)
    elif fmt == "gptq-act-order":
        save_quantized(str(path), model, method="gptq", group_size=32, act_order=True)
    else:
        model.save_pretrained(path, safe_serialization=True)
        kwargs.update({"quantization": "fp8"} if fmt == "fp8" else {"kv_cache_dtype": "fp8"})
    prompts = [[5, 9, 33, 70], list(range(3, 40)), [200, 3, 3, 3, 17]]
    # An 8-bit cache rounds K and V: float-noise differences between the ranks' sums can move a
    # value across a rounding boundary (one E4M3 step is 6-12 % of it).
    compare_at_float_level(kwargs, prompts, 2, tol=2e-2 if fmt == "kv-fp8" else 1e-4)


@pytest.mark.parametrize("arch", ["llama", "mistral", "qwen2", "qwen3", "llama-biases"])
def test_every_family_tp2_matches_one_rank(arch, tmp_path):
    """Each family's tiny model (4 heads, 2 KV heads) split in 2; llama-biases adds attention
    and MLP biases, whose row-parallel halves (o_proj, down_proj) are added after the
    all-reduce."""
    from test_hf_exact import _TINY_ARCHS, tiny_model_dir

    if arch == "llama-biases":
        _TINY_ARCHS["llama-biases"] = dict(_TINY_ARCHS["llama"], attention_bias=True, mlp_bias=True)
    path = tiny_model_dir(arch, tmp_path)
    prompts = token_prompts()
    whole = run_features(LLM(model=path, dtype="float32", skip_tokenizer_init=True), prompts)
    llm = LLM(model=path, dtype="float32", skip_tokenizer_init=True, tensor_parallel_size=2)
    assert_same(whole, run_features(llm, prompts))
    del llm


def test_smol_tp3_ray_matches_one_rank(smol_model_dir, smol_whole, ray_local):
    llm = LLM(
        model=smol_model_dir,
        dtype="float32",
        tensor_parallel_size=3,
        distributed_executor_backend="ray",
    )
    assert_same(smol_whole, run_features(llm, SMOL_PROMPTS))
    del llm


@pytest.mark.parametrize("backend", ["mp", "mp-gloo", "ray"])
def test_replicated_kv_head_tp2_matches_one_rank(qwen2_one_kv_head, backend, request):
    """mp-gloo: the collectives through gloo alone (disable_custom_all_reduce), not the shared
    memory ranks on one machine use by default."""
    gloo = backend == "mp-gloo"
    backend = backend.removesuffix("-gloo")
    if backend == "ray":
        request.getfixturevalue("ray_local")
    prompts = token_prompts()
    whole = run_features(tiny_llm(qwen2_one_kv_head), prompts)
    llm = tiny_llm(
        qwen2_one_kv_head,
        tensor_parallel_size=2,
        distributed_executor_backend=backend,
        disable_custom_all_reduce=gloo,
        # A small cache: preemption (recompute), chunked prefill and prefix caching run across
        # the ranks too.
        num_gpu_blocks_override=12,
        max_model_len=192,
        enable_chunked_prefill=True,
        max_num_batched_tokens=32,
        enable_prefix_caching=True,
    )
    assert_same(whole, run_features(llm, prompts))
    preemptions = next(m for m in llm.get_metrics() if m.name == "vllm:num_preemptions")
    assert preemptions.value > 0
    del llm


def test_swap_preemption_tp2_matches_one_rank(qwen2_one_kv_head):
    """Preemption by swapping: every rank moves its own KV blocks to and from its CPU swap space
    as rank 0's plan says (forked beams and n > 1 sequences swap as a group)."""
    prompts = token_prompts()
    whole = run_features(tiny_llm(qwen2_one_kv_head), prompts)
    llm = tiny_llm(
        qwen2_one_kv_head,
        tensor_parallel_size=2,
        num_gpu_blocks_override=12,
        max_model_len=192,
        preemption_mode="swap",
        swap_space=1,
    )
    assert_same(whole, run_features(llm, prompts))
    swapped = next(m for m in llm.get_metrics() if m.name == "taco:num_swapped_out")
    assert swapped.value > 0
    del llm


def test_ray_two_node_cluster_one_rank_per_node(qwen2_one_kv_head):
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        prompts = token_prompts()
        whole = run_features(tiny_llm(qwen2_one_kv_head), prompts)
        llm = tiny_llm(
            qwen2_one_kv_head, tensor_parallel_size=2, distributed_executor_backend="ray"
        )
        launcher = llm._ranks.launcher
        nodes = ray.util.placement_group_table(launcher.placement)["bundles_to_node_id"]
        assert len(set(nodes.values())) == 2  # rank 0 on the head node, rank 1 on the other
        assert_same(whole, run_features(llm, prompts))
        del llm
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.mark.parametrize("gloo", [False, True], ids=["shm", "gloo"])
def test_killed_rank_raises_and_releases_everything(qwen2_one_kv_head, gloo):
    """Shared memory notices the dead process while it waits; gloo its closed connections."""
    llm = LLM(
        model=qwen2_one_kv_head,
        dtype="float32",
        skip_tokenizer_init=True,
        tensor_parallel_size=2,
        disable_custom_all_reduce=gloo,
    )
    victim = llm._ranks.launcher.procs[1].pid
    prompts = [TokensPrompt(prompt_token_ids=[5 + i, 7, 9]) for i in range(16)]
    calls = []

    def kill_on_tenth_step(output_ids, logits):
        # Runs on rank 0 while the ranks are between collectives of the running generate.
        calls.append(1)
        if len(calls) == 10 * len(prompts):
            os.kill(victim, signal.SIGKILL)
        return logits

    long = SamplingParams(
        temperature=0.0, max_tokens=500, ignore_eos=True, logits_processors=[kill_on_tenth_step]
    )
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"rank 1 killed by SIGKILL") as info:
        llm.generate(prompts, long, use_tqdm=False)
    assert time.monotonic() - start < 30
    assert "create a new LLM" in str(info.value)
    assert child_pids() == set()
    # The engine is closed: later calls say so instead of hanging.
    with pytest.raises(RuntimeError, match="rank 1 killed"):
        llm.generate(prompts[:1], SamplingParams(max_tokens=2), use_tqdm=False)
    del llm
    # A new engine in the same process works.
    again = LLM(
        model=qwen2_one_kv_head, dtype="float32", skip_tokenizer_init=True, tensor_parallel_size=2
    )
    out = again.generate(prompts[:2], SamplingParams(temperature=0.0, max_tokens=4), use_tqdm=False)
    assert all(len(o.outputs[0].token_ids) == 4 for o in out)
    del again
    assert child_pids() == set()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tensor_parallel_size": 0}, "tensor_parallel_size must be an int >= 1"),
        ({"tensor_parallel_size": 3}, r"does not divide the model's attention heads \(4\)"),
        ({"tensor_parallel_size": 8}, r"does not divide the model's attention heads \(4\)"),
        (
            {"tensor_parallel_size": 2, "distributed_executor_backend": "uni"},
            "'uni' runs one rank",
        ),
        ({"distributed_executor_backend": "mpi"}, "distributed_executor_backend must be"),
        ({"cpu_offload_gb": -1}, "cpu_offload_gb must be"),
    ],
)
def test_bad_parallel_arguments_rejected_before_ranks_start(qwen2_one_kv_head, kwargs, match):
    with pytest.raises(ValueError, match=match):
        LLM(model=qwen2_one_kv_head, skip_tokenizer_init=True, **kwargs)
    assert child_pids() == set()


def test_cpu_offload_and_custom_all_reduce_accepted_on_cpu(qwen2_one_kv_head):
    """On the CPU the weights are in host memory already: cpu_offload_gb changes nothing, and
    the CPU has no custom all-reduce to disable."""
    prompts = token_prompts(2)
    params = SamplingParams(temperature=0.0, max_tokens=6)
    base = LLM(model=qwen2_one_kv_head, dtype="float32", skip_tokenizer_init=True)
    offload = LLM(
        model=qwen2_one_kv_head,
        dtype="float32",
        skip_tokenizer_init=True,
        cpu_offload_gb=4,
        disable_custom_all_reduce=True,
    )
    a = base.generate(prompts, params, use_tqdm=False)
    b = offload.generate(prompts, params, use_tqdm=False)
    assert [o.outputs[0].token_ids for o in a] == [o.outputs[0].token_ids for o in b]


def test_idle_engine_outlives_the_collectives_timeout(qwen2_one_kv_head, monkeypatch):
    """Idle ranks wait in a collective; rank 0's heartbeat (every TACO_TP_HEARTBEAT_S) keeps
    them inside its timeout (TACO_TP_TIMEOUT_S), here 0.2 s and 1 s against 3 s of idling."""
    monkeypatch.setenv("TACO_TP_HEARTBEAT_S", "0.2")
    monkeypatch.setenv("TACO_TP_TIMEOUT_S", "1")
    prompts = token_prompts(2)
    params = SamplingParams(temperature=0.0, max_tokens=4)
    want = tiny_llm(qwen2_one_kv_head).generate(prompts, params, use_tqdm=False)
    for gloo in (False, True):
        llm = tiny_llm(qwen2_one_kv_head, tensor_parallel_size=2, disable_custom_all_reduce=gloo)
        time.sleep(3)
        got = llm.generate(prompts, params, use_tqdm=False)
        assert [o.outputs[0].token_ids for o in got] == [o.outputs[0].token_ids for o in want]
        del llm
    assert child_pids() == set()


def test_ray_backend_without_ray_names_the_package(qwen2_one_kv_head, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ValueError, match=r"pip install 'taco_llm\[ray\]'"):
        tiny_llm(qwen2_one_kv_head, tensor_parallel_size=2, distributed_executor_backend="ray")
    assert child_pids() == set()


_ORPHAN = """
import sys, time
from taco_llm import LLM
llm = LLM(model=sys.argv[1], dtype="float32", skip_tokenizer_init=True, tensor_parallel_size=2)
print(*[p.pid for p in llm._ranks.launcher.procs.values()], flush=True)
time.sleep(120)
"""


def test_ranks_exit_when_rank_zero_is_killed(qwen2_one_kv_head):
    """Local ranks watch their stdin pipe from rank 0: when rank 0 dies, however it dies, they
    exit instead of waiting for a step that never comes."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-c", _ORPHAN, qwen2_one_kv_head],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        ranks = [int(p) for p in proc.stdout.readline().split()]
        assert len(ranks) == 1
    finally:
        proc.kill()
        proc.wait()

    def running(pid: int) -> bool:  # neither gone nor a zombie awaiting its new parent
        state = proc_state(pid)
        return state is not None and state[1] != "Z"

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and running(ranks[0]):
        time.sleep(0.05)
    assert not running(ranks[0])
