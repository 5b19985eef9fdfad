"""EngineArgs: vLLM 0.6's engine arguments, names and defaults, validated and converted to the
C++ engine's `_C.EngineOptions`.

A bad value raises ValueError naming the argument and its allowed values. A non-default value for
a feature taco_llm does not build yet raises NotImplementedError naming the argument: a vLLM user
is never silently given something else than what they asked for."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, fields
from typing import Any

from taco_llm import speculative
from taco_llm.structured_output.params import parse_backend

_DTYPE_ALIASES = {
    "auto": "auto",
    "half": "float16",
    "float16": "float16",
    "bfloat16": "bfloat16",
    "float": "float32",
    "float32": "float32",
}
_DEVICES = ("auto", "cpu", "cuda")
_VLLM_ONLY_DEVICES = ("neuron", "tpu", "xpu", "openvino")
_BLOCK_SIZES = (8, 16, 32)
_LOAD_FORMATS = ("auto", "safetensors", "gguf")
_VLLM_LOAD_FORMATS = (
    "pt",
    "npcache",
    "dummy",
    "tensorizer",
    "sharded_state",
    "bitsandbytes",
    "mistral",
)
# quantization= values: those built (vLLM's Marlin names read the same checkpoints), and vLLM's
# others (refused as not built yet).
_QUANTIZATIONS = ("awq", "gptq", "fp8", "compressed-tensors", "gguf", "awq_marlin", "gptq_marlin")
_QUANTIZATION_ALIASES = {"awq_marlin": "awq", "gptq_marlin": "gptq"}
_VLLM_QUANTIZATIONS = (
    "aqlm",
    "bitsandbytes",
    "deepspeedfp",
    "experts_int8",
    "fbgemm_fp8",
    "gptq_marlin_24",
    "marlin",
    "modelopt",
    "qqq",
    "tpu_int8",
)
_GGUF_MAGIC = b"GGUF"


def is_gguf(path: str) -> bool:
    """Whether path is a GGUF file (by its magic, as the engine decides)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == _GGUF_MAGIC
    except OSError:
        return False


# Where the ranks of tensor parallelism run: "mp", local processes (the default); "ray", Ray
# actors; "uni", this process only (tensor_parallel_size 1).
_BACKENDS = ("mp", "ray", "uni")

_LOGPROBS_MODES = ("processed_logprobs", "raw_logprobs", "processed_logits", "raw_logits")
# "auto": the model dtype; the 8-bit floats store K / k_scale and V / v_scale (CPU).
_KV_CACHE_DTYPES = ("auto", "fp8", "fp8_e4m3", "fp8_e5m2")

# vLLM 0.6's LoRA ranks (LoRAConfig.max_lora_rank).
_LORA_RANKS = (8, 16, 32, 64, 128, 256)

# Arguments whose features are not built: any value other than this default is refused.

_NOT_BUILT: dict[str, Any] = {
    "pipeline_parallel_size": 1,
    "revision": None,
    "code_revision": None,
    "tokenizer_revision": None,
    "rope_scaling": None,
    "rope_theta": None,
    "long_lora_scaling_factors": None,
    "num_scheduler_steps": 1,
    "limit_mm_per_prompt": None,
    "mm_processor_kwargs": None,
    "disable_sliding_window": False,
    "override_neuron_config": None,
}


def _normalize_dtype(dtype: Any) -> str:
    name = str(dtype).removeprefix("torch.") if not isinstance(dtype, str) else dtype
    if name not in _DTYPE_ALIASES:
        raise ValueError(
            f"dtype must be one of {sorted(_DTYPE_ALIASES)} (or a torch float dtype), "
            f"got {dtype!r}."
        )
    return _DTYPE_ALIASES[name]


def _int_at_least(name: str, value: Any, low: int, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        suffix = " or None" if allow_none else ""
        raise ValueError(f"{name} must be an int >= {low}{suffix}, got {value!r}.")


def _positive_int(name: str, value: Any, allow_none: bool) -> None:
    _int_at_least(name, value, 1, allow_none)


@dataclass
class EngineArgs:
    """Arguments of the engine, as vLLM 0.6 names them (see LLM for the documented ones)."""

    model: str
    served_model_name: str | list[str] | None = None
    tokenizer: str | None = None
    skip_tokenizer_init: bool = False
    tokenizer_mode: str = "auto"
    trust_remote_code: bool = False
    download_dir: str | None = None
    load_format: str = "auto"
    dtype: Any = "auto"
    kv_cache_dtype: str = "auto"
    quantization_param_path: str | None = None
    seed: int = 0
    max_model_len: int | None = None
    distributed_executor_backend: str | None = None
    worker_use_ray: bool = False
    pipeline_parallel_size: int = 1
    tensor_parallel_size: int = 1
    block_size: int = 16
    enable_prefix_caching: bool = False
    disable_sliding_window: bool = False
    use_v2_block_manager: bool = False
    swap_space: float = 4
    cpu_offload_gb: float = 0
    gpu_memory_utilization: float = 0.9
    max_num_batched_tokens: int | None = None
    max_num_seqs: int = 256
    max_logprobs: int = 20
    disable_log_stats: bool = False
    revision: str | None = None
    code_revision: str | None = None
    rope_scaling: dict | None = None
    rope_theta: float | None = None
    tokenizer_revision: str | None = None
    quantization: str | None = None
    enforce_eager: bool | None = None
    max_context_len_to_capture: int | None = None
    max_seq_len_to_capture: int = 8192
    disable_custom_all_reduce: bool = False
    limit_mm_per_prompt: dict | None = None
    enable_lora: bool = False
    max_loras: int = 1
    max_lora_rank: int = 16
    fully_sharded_loras: bool = False
    lora_extra_vocab_size: int = 256
    long_lora_scaling_factors: tuple | None = None
    lora_dtype: Any = "auto"
    max_cpu_loras: int | None = None
    enable_prompt_adapter: bool = False
    max_prompt_adapters: int = 1
    max_prompt_adapter_token: int = 0
    device: str = "auto"
    num_scheduler_steps: int = 1
    num_gpu_blocks_override: int | None = None
    preemption_mode: str | None = None
    enable_chunked_prefill: bool | None = None
    # Speculative decoding (vLLM 0.6's arguments; speculative_config is current vLLM's form).
    speculative_model: str | None = None
    speculative_model_quantization: str | None = None
    speculative_draft_tensor_parallel_size: int | None = None
    num_speculative_tokens: int | None = None
    speculative_max_model_len: int | None = None
    speculative_disable_by_batch_size: int | None = None
    ngram_prompt_lookup_max: int | None = None
    ngram_prompt_lookup_min: int | None = None
    spec_decoding_acceptance_method: str = "rejection_sampler"
    typical_acceptance_sampler_posterior_threshold: float | None = None
    typical_acceptance_sampler_posterior_alpha: float | None = None
    disable_logprobs_during_spec_decoding: bool | None = None
    speculative_config: dict | None = None
    disable_async_output_proc: bool = False
    override_neuron_config: dict | None = None
    mm_processor_kwargs: dict | None = None
    # Structured output: xgrammar serves it ("auto" picks it); vLLM 0.6's default, "outlines",
    # is not built.
    guided_decoding_backend: str = "xgrammar"
    # taco_llm extensions: CPU KV cache size (GiB; 0 = env TACO_CPU_KVCACHE_SPACE or 4) and CPU
    # threads (0 = all cores).
    cpu_kvcache_space_gib: float = 0.0
    num_threads: int = 0
    # From later vLLM: what logprobs are computed from. The default is vLLM 0.6's behaviour (the
    # distribution sampled from: after penalties, temperature, top-k/top-p/min-p); "raw_*" are
    # the model's own logits before any processing (later vLLM's default).
    logprobs_mode: str = "processed_logprobs"

    def __post_init__(self) -> None:
        self._check_not_built()
        self._check_model()
        self.dtype = _normalize_dtype(self.dtype)
        self._check_device()
        self._check_memory()
        self._check_scheduling()
        self._check_parallel()
        self._check_adapters()
        if self.speculative_model_quantization is not None:
            raise ValueError(
                "speculative_model_quantization applies to a draft model, which taco_llm does "
                "not run yet."
            )
        self.speculation = speculative.parse(self)
        parse_backend(self.guided_decoding_backend, "guided_decoding_backend")
        if self.max_context_len_to_capture is not None:
            # Deprecated vLLM name of max_seq_len_to_capture; it wins when given.
            _positive_int("max_context_len_to_capture", self.max_context_len_to_capture, False)
            self.max_seq_len_to_capture = self.max_context_len_to_capture
        _positive_int("max_seq_len_to_capture", self.max_seq_len_to_capture, False)

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> EngineArgs:
        """EngineArgs(**kwargs) with a TypeError that names every unknown argument."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(f"Unknown engine argument(s): {', '.join(unknown)}.")
        return cls(**kwargs)

    def _check_not_built(self) -> None:
        for name, default in _NOT_BUILT.items():
            value = getattr(self, name)
            if value != default:
                raise NotImplementedError(
                    f"{name}={value!r} is not supported by taco_llm yet (only {default!r})."
                )
        if self.tokenizer_mode not in ("auto", "slow"):
            raise NotImplementedError(
                f"tokenizer_mode={self.tokenizer_mode!r} is not supported (use 'auto' or 'slow')."
            )
        if self.load_format in _VLLM_LOAD_FORMATS:
            raise NotImplementedError(
                f"load_format={self.load_format!r} is not supported yet (use 'auto' or "
                "'safetensors')."
            )
        if self.load_format not in _LOAD_FORMATS:
            raise ValueError(
                f"load_format must be one of {_LOAD_FORMATS}, got {self.load_format!r}."
            )
        q = self.quantization
        if q in _VLLM_QUANTIZATIONS:
            raise NotImplementedError(
                f"quantization={q!r} is not supported by taco_llm yet (only None or one of "
                f"{_QUANTIZATIONS})."
            )
        if q is not None and q not in _QUANTIZATIONS:
            raise ValueError(
                f"quantization must be None or one of {_QUANTIZATIONS + _VLLM_QUANTIZATIONS}, "
                f"got {q!r}."
            )

    def _check_model(self) -> None:
        if not isinstance(self.model, (str, os.PathLike)) or not str(self.model):
            raise ValueError(
                "model must be a path to an HF-format directory or a GGUF file, "
                f"got {self.model!r}."
            )
        self.model = os.fspath(self.model)
        gguf = os.path.isfile(self.model)
        if gguf and not is_gguf(self.model):
            raise ValueError(f"model {self.model!r} is a file but not a GGUF file.")
        if not gguf and not os.path.isdir(self.model):
            raise ValueError(
                f"model must be a local HF-format directory (config.json + *.safetensors) or a "
                f"GGUF file; {self.model!r} is neither (downloading from the Hub is not supported)."
            )
        if gguf and self.load_format == "safetensors":
            raise ValueError(
                f"load_format='safetensors' does not read the GGUF file {self.model!r}."
            )
        if not gguf and (self.load_format == "gguf" or self.quantization == "gguf"):
            which = "load_format" if self.load_format == "gguf" else "quantization"
            raise ValueError(f"{which}='gguf' needs model to be a GGUF file, got {self.model!r}.")
        if gguf and self.quantization not in (None, "gguf"):
            raise ValueError(
                f"quantization={self.quantization!r} contradicts the model, a GGUF file "
                "(quantization='gguf')."
            )
        if gguf:
            self.quantization = "gguf"
        if self.tokenizer is None:
            # A GGUF file carries its tokenizer (vocabulary, merges, chat template).
            self.tokenizer = self.model
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"seed must be an int, got {self.seed!r}.")

    def _check_device(self) -> None:
        if self.device in _VLLM_ONLY_DEVICES:
            raise NotImplementedError(f"device={self.device!r} is not supported (use {_DEVICES}).")
        if self.device not in _DEVICES:
            raise ValueError(f"device must be one of {_DEVICES}, got {self.device!r}.")

    def _check_memory(self) -> None:
        gmu = self.gpu_memory_utilization
        if not isinstance(gmu, (int, float)) or isinstance(gmu, bool) or not 0.0 < gmu <= 1.0:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {gmu!r}.")
        if not isinstance(self.swap_space, (int, float)) or self.swap_space < 0:
            raise ValueError(f"swap_space must be a number of GiB >= 0, got {self.swap_space!r}.")
        if (
            not isinstance(self.cpu_kvcache_space_gib, (int, float))
            or self.cpu_kvcache_space_gib < 0
        ):
            raise ValueError(
                "cpu_kvcache_space_gib must be >= 0 (0: default), "
                f"got {self.cpu_kvcache_space_gib!r}."
            )
        if self.block_size not in _BLOCK_SIZES:
            raise ValueError(f"block_size must be one of {_BLOCK_SIZES}, got {self.block_size!r}.")
        _positive_int("num_gpu_blocks_override", self.num_gpu_blocks_override, True)

    def _check_adapters(self) -> None:
        if self.enable_lora:
            _positive_int("max_loras", self.max_loras, False)
            if self.max_lora_rank not in _LORA_RANKS:
                raise ValueError(
                    f"max_lora_rank must be one of {_LORA_RANKS}, got {self.max_lora_rank!r}."
                )
            _positive_int("max_cpu_loras", self.max_cpu_loras, True)
            if self.max_cpu_loras is not None and self.max_cpu_loras < self.max_loras:
                raise ValueError(
                    f"max_cpu_loras ({self.max_cpu_loras}) must be >= max_loras ({self.max_loras})."
                )
            _int_at_least("lora_extra_vocab_size", self.lora_extra_vocab_size, 0, False)
            self.lora_dtype = _normalize_dtype(self.lora_dtype or "auto")
        if self.enable_prompt_adapter:
            _positive_int("max_prompt_adapters", self.max_prompt_adapters, False)
            if (
                not isinstance(self.max_prompt_adapter_token, int)
                or self.max_prompt_adapter_token < 1
            ):
                raise ValueError(
                    "max_prompt_adapter_token must be set to the most virtual tokens a prompt "
                    f"adapter may have (an int > 0), got {self.max_prompt_adapter_token!r}."
                )
        if (self.enable_lora or self.enable_prompt_adapter) and self.tensor_parallel_size > 1:
            raise NotImplementedError(
                "enable_lora / enable_prompt_adapter with tensor_parallel_size > 1 is not "
                "supported yet."
            )

    def _check_parallel(self) -> None:
        _positive_int("tensor_parallel_size", self.tensor_parallel_size, False)
        backend = self.distributed_executor_backend
        if isinstance(backend, type):
            raise NotImplementedError(
                "distributed_executor_backend as an executor class is not supported "
                f"(use one of {_BACKENDS}), got {backend!r}."
            )
        if backend not in (None, *_BACKENDS):
            raise ValueError(
                f"distributed_executor_backend must be None or one of {_BACKENDS}, got {backend!r}."
            )
        if self.worker_use_ray:
            # vLLM's deprecated spelling of the Ray backend.
            if backend not in (None, "ray"):
                raise ValueError(
                    f"worker_use_ray=True contradicts distributed_executor_backend={backend!r}."
                )
            self.distributed_executor_backend = backend = "ray"
        if backend == "uni" and self.tensor_parallel_size > 1:
            raise ValueError(
                "distributed_executor_backend='uni' runs one rank in this process; "
                f"tensor_parallel_size={self.tensor_parallel_size} needs 'mp' or 'ray'."
            )
        gib = self.cpu_offload_gb
        if not isinstance(gib, (int, float)) or isinstance(gib, bool) or not gib >= 0:
            raise ValueError(f"cpu_offload_gb must be a number of GiB >= 0, got {gib!r}.")
        if not isinstance(self.disable_custom_all_reduce, bool):
            raise ValueError(
                f"disable_custom_all_reduce must be a bool, got {self.disable_custom_all_reduce!r}."
            )

    def _check_scheduling(self) -> None:
        _positive_int("max_num_seqs", self.max_num_seqs, False)
        _positive_int("max_num_batched_tokens", self.max_num_batched_tokens, True)
        _positive_int("max_model_len", self.max_model_len, True)
        # vLLM allows 0: requests may then ask logprobs=0 (the sampled token's logprob only).
        _int_at_least("max_logprobs", self.max_logprobs, 0, False)
        if self.preemption_mode not in (None, "recompute", "swap"):
            raise ValueError(
                "preemption_mode must be None, 'recompute' or 'swap', "
                f"got {self.preemption_mode!r}."
            )
        if self.quantization_param_path is not None:
            path = self.quantization_param_path
            if not isinstance(path, (str, os.PathLike)) or not os.path.isfile(path):
                raise ValueError(
                    "quantization_param_path must be a JSON file of KV cache scaling factors, "
                    f"got {path!r}."
                )
            if self.kv_cache_dtype == "auto":
                warnings.warn(
                    "quantization_param_path gives KV cache scaling factors, but kv_cache_dtype "
                    "is 'auto': they are not used.",
                    stacklevel=3,
                )
        if self.kv_cache_dtype not in _KV_CACHE_DTYPES:
            raise ValueError(
                f"kv_cache_dtype must be one of {', '.join(map(repr, _KV_CACHE_DTYPES))}, "
                f"got {self.kv_cache_dtype!r}."
            )
        if self.logprobs_mode not in _LOGPROBS_MODES:
            raise ValueError(
                f"logprobs_mode must be one of {', '.join(map(repr, _LOGPROBS_MODES))}, "
                f"got {self.logprobs_mode!r}."
            )
        if not isinstance(self.num_threads, int) or self.num_threads < 0:
            raise ValueError(
                f"num_threads must be an int >= 0 (0: all cores), got {self.num_threads!r}."
            )

    def to_engine_options(self, options_cls: type) -> Any:
        """Fills a `_C.EngineOptions` (passed in so this module does not import the extension)."""
        o = options_cls()
        o.model = self.model
        q = self.quantization or ""
        o.quantization = _QUANTIZATION_ALIASES.get(q, q)
        o.dtype = self.dtype
        o.device = self.device
        o.kv_cache_dtype = self.kv_cache_dtype
        o.quantization_param_path = os.fspath(self.quantization_param_path or "")
        o.seed = self.seed % 2**64
        o.block_size = self.block_size
        o.max_num_seqs = self.max_num_seqs
        o.max_num_batched_tokens = self.max_num_batched_tokens or 0
        o.max_model_len = self.max_model_len or 0
        o.enable_prefix_caching = bool(self.enable_prefix_caching)
        o.enable_chunked_prefill = bool(self.enable_chunked_prefill)
        o.swap_space_gib = float(self.swap_space)
        o.preemption_mode = self.preemption_mode or "recompute"
        o.num_gpu_blocks_override = self.num_gpu_blocks_override or 0
        o.cpu_kvcache_space_gib = float(self.cpu_kvcache_space_gib)
        o.gpu_memory_utilization = float(self.gpu_memory_utilization)
        o.enforce_eager = bool(self.enforce_eager)
        o.max_seq_len_to_capture = self.max_seq_len_to_capture
        o.num_threads = self.num_threads
        o.logprobs_mode = self.logprobs_mode
        o.tensor_parallel_size = self.tensor_parallel_size
        o.disable_custom_all_reduce = self.disable_custom_all_reduce
        o.cpu_offload_gb = float(self.cpu_offload_gb)
        o.enable_lora = bool(self.enable_lora)
        if self.enable_lora:
            o.max_loras = self.max_loras
            o.max_lora_rank = self.max_lora_rank
            o.max_cpu_loras = self.max_cpu_loras or 0
            o.lora_dtype = self.lora_dtype
        spec = self.speculation
        o.speculative_method = spec.method
        o.num_speculative_tokens = spec.num_speculative_tokens
        o.ngram_prompt_lookup_max = spec.prompt_lookup_max
        o.ngram_prompt_lookup_min = spec.prompt_lookup_min
        o.speculative_disable_by_batch_size = spec.disable_by_batch_size
        o.enable_prompt_adapter = bool(self.enable_prompt_adapter)
        if self.enable_prompt_adapter:
            o.max_prompt_adapters = self.max_prompt_adapters
            o.max_prompt_adapter_token = self.max_prompt_adapter_token
        return o
