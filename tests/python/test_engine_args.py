"""EngineArgs: vLLM 0.6 names and defaults, ValueError for bad values, NotImplementedError for
features not built, TypeError for unknown arguments, and the conversion to EngineOptions."""

import pytest
import torch

from taco_llm import _C, EngineArgs


@pytest.fixture
def model_dir(tmp_path):
    return str(tmp_path)


def test_defaults(model_dir):
    a = EngineArgs(model=model_dir)
    assert a.tokenizer == model_dir and a.tokenizer_mode == "auto" and a.seed == 0
    assert (a.block_size, a.max_num_seqs, a.swap_space, a.gpu_memory_utilization) == (
        16,
        256,
        4,
        0.9,
    )
    assert a.max_seq_len_to_capture == 8192 and a.max_logprobs == 20 and a.enforce_eager is None
    o = a.to_engine_options(_C.EngineOptions)
    assert (o.model, o.dtype, o.device, o.block_size, o.max_num_seqs) == (
        model_dir,
        "auto",
        "auto",
        16,
        256,
    )
    assert (o.max_num_batched_tokens, o.max_model_len, o.num_gpu_blocks_override) == (0, 0, 0)
    assert o.preemption_mode == "recompute" and o.swap_space_gib == 4.0 and not o.enforce_eager
    o.validate()  # the engine's own checks accept the converted options


def test_conversion(model_dir):
    a = EngineArgs(
        model=model_dir,
        dtype=torch.bfloat16,
        seed=7,
        max_model_len=512,
        block_size=32,
        enable_prefix_caching=True,
        enable_chunked_prefill=True,
        max_num_batched_tokens=256,
        preemption_mode="swap",
        num_gpu_blocks_override=64,
        enforce_eager=True,
        max_context_len_to_capture=1024,
        swap_space=0,
        device="cpu",
        cpu_kvcache_space_gib=1.5,
    )
    o = a.to_engine_options(_C.EngineOptions)
    assert (o.dtype, o.seed, o.max_model_len, o.block_size) == ("bfloat16", 7, 512, 32)
    assert o.enable_prefix_caching and o.enable_chunked_prefill and o.enforce_eager
    assert (o.max_num_batched_tokens, o.preemption_mode, o.num_gpu_blocks_override) == (
        256,
        "swap",
        64,
    )
    assert (o.max_seq_len_to_capture, o.swap_space_gib, o.device) == (1024, 0.0, "cpu")
    assert o.cpu_kvcache_space_gib == 1.5
    o.validate()
    assert EngineArgs(model=model_dir, dtype="half").dtype == "float16"
    assert EngineArgs(model=model_dir, dtype="float").dtype == "float32"


def test_unknown_kwargs_type_error(model_dir):
    with pytest.raises(TypeError, match="bogus_one, bogus_two"):
        EngineArgs.from_kwargs(model=model_dir, bogus_two=1, bogus_one=2)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"pipeline_parallel_size": 2}, "pipeline_parallel_size"),
        ({"quantization": "bitsandbytes"}, "quantization"),
        ({"revision": "main"}, "revision"),
        ({"tokenizer_revision": "v1"}, "tokenizer_revision"),
        ({"enable_lora": True, "long_lora_scaling_factors": (4.0,)}, "long_lora_scaling_factors"),
        ({"enable_lora": True, "tensor_parallel_size": 2}, "tensor_parallel_size > 1"),
        ({"speculative_model": "x"}, "speculative_model"),
        ({"num_scheduler_steps": 8}, "num_scheduler_steps"),
        ({"tokenizer_mode": "mistral"}, "tokenizer_mode"),
        ({"load_format": "bitsandbytes"}, "load_format"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_not_built(model_dir, kwargs, name):
    with pytest.raises(NotImplementedError, match=name):
        EngineArgs(model=model_dir, **kwargs)


def test_parallel_arguments(model_dir):
    args = EngineArgs(model=model_dir, tensor_parallel_size=2, worker_use_ray=True)
    assert args.distributed_executor_backend == "ray"  # vLLM's deprecated spelling
    assert EngineArgs(model=model_dir, cpu_offload_gb=2.5).cpu_offload_gb == 2.5
    with pytest.raises(ValueError, match="contradicts"):
        EngineArgs(model=model_dir, worker_use_ray=True, distributed_executor_backend="mp")
    with pytest.raises(ValueError, match="tensor_parallel_size must be an int >= 1"):
        EngineArgs(model=model_dir, tensor_parallel_size=1.5)
    with pytest.raises(NotImplementedError, match="executor class"):
        EngineArgs(model=model_dir, distributed_executor_backend=object)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"gpu_memory_utilization": 0.0}, "gpu_memory_utilization"),
        ({"gpu_memory_utilization": 1.2}, "gpu_memory_utilization"),
        ({"block_size": 12}, "block_size"),
        ({"swap_space": -1}, "swap_space"),
        ({"dtype": "int8"}, "dtype"),
        ({"device": "gpu0"}, "device"),
        ({"max_num_seqs": 0}, "max_num_seqs"),
        ({"max_num_batched_tokens": 0}, "max_num_batched_tokens"),
        ({"max_model_len": -4}, "max_model_len"),
        ({"max_seq_len_to_capture": 0}, "max_seq_len_to_capture"),
        ({"preemption_mode": "drop"}, "preemption_mode"),
        ({"num_gpu_blocks_override": 0}, "num_gpu_blocks_override"),
        ({"seed": 1.5}, "seed"),
        ({"load_format": "zip"}, "load_format"),
        ({"cpu_kvcache_space_gib": -1}, "cpu_kvcache_space_gib"),
        ({"max_logprobs": -1}, "max_logprobs"),
    ],
)
def test_bad_values(model_dir, kwargs, name):
    with pytest.raises(ValueError, match=name):
        EngineArgs(model=model_dir, **kwargs)


def test_model_must_be_a_directory(tmp_path):
    with pytest.raises(ValueError, match="model"):
        EngineArgs(model=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="model"):
        EngineArgs(model="")
