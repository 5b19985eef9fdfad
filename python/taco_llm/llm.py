"""LLM: the vLLM / TACO-LLM offline API over the C++ engine."""

from __future__ import annotations

import functools
import itertools
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

from taco_llm.adapters import AdapterRegistry
from taco_llm.chat_utils import apply_chat_template, load_chat_template, parse_conversations
from taco_llm.engine_args import EngineArgs
from taco_llm.engine_loop import run_requests
from taco_llm.inputs import ParsedPrompt, parse_prompts
from taco_llm.logits_processors import LogitsProcessorRegistry
from taco_llm.lora.request import LoRARequest
from taco_llm.metrics import FrontendStats, Metric, build_metrics
from taco_llm.outputs import BeamSearchOutput, BeamSearchSequence, RequestOutput
from taco_llm.prompt_adapter.request import PromptAdapterRequest
from taco_llm.request_builder import RequestBuilder, pair_params
from taco_llm.sampling_params import BeamSearchParams, SamplingParams
from taco_llm.structured_output.guide import Guide
from taco_llm.structured_output.params import LLMGuidedOptions
from taco_llm.tokenizer import get_tokenizer


def _load_engine_module() -> Any:
    """The compiled engine module. torch goes first: _C links against its libraries."""
    import torch  # noqa: F401

    from taco_llm import _C

    return _C


def start_ranks(C: Any, options: Any, backend: str | None) -> Any:
    """Starts ranks 1 .. N-1 of a tensor-parallel engine, after checking that the model splits
    (a ValueError before any process starts)."""
    device = C.check_tensor_parallel(options)
    from taco_llm.parallel.ranks import TensorParallelRanks

    if device == "cuda" and backend != "ray":
        import torch

        count = torch.cuda.device_count()
        if options.tensor_parallel_size > count:
            raise ValueError(
                f"tensor_parallel_size={options.tensor_parallel_size} exceeds the "
                f"{count} CUDA device(s) of this machine (one rank per device; use the Ray "
                "backend to span machines)."
            )
    return TensorParallelRanks(options, backend or "mp", device)


def _close_engine(engine: Any, ranks: Any) -> None:
    try:
        engine.close()
    finally:
        ranks.close()


def _refuse(name: str, value: Any) -> None:
    if value is not None:
        raise NotImplementedError(f"{name} is not supported by taco_llm yet (got {value!r}).")


def _with_guided_options(params: list[SamplingParams], request: Any) -> list[SamplingParams]:
    """vLLM 0.6's guided_options_request: the same constraint on every prompt's params."""
    guided = LLMGuidedOptions.coerce(request).to_params()
    if guided.is_empty():
        return params
    out = []
    for i, p in enumerate(params):
        if p.constraint is not None:
            raise ValueError(
                f"Cannot set both guided_options_request and sampling_params[{i}]'s "
                "guided_decoding / structured_outputs."
            )
        p = p.clone()
        p.guided_decoding = guided
        p.guided_by_call = True  # errors name guided_options_request
        out.append(p)
    return out


def _deprecate_legacy_kwargs(*names: str, advice: str) -> Callable[[Callable], Callable]:
    """vLLM 0.6's deprecation of legacy keyword arguments: while DEPRECATE_LEGACY is set,
    a call that passes any of `names` by keyword (whatever its value) warns with a
    DeprecationWarning pointing at the caller. Positional use does not warn."""

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            used = sorted(set(kwargs) & set(names))
            if used and getattr(args[0] if args else LLM, "DEPRECATE_LEGACY", False):
                warnings.warn(
                    DeprecationWarning(
                        f"The keyword arguments {used} are deprecated and will be removed in a "
                        f"future update. {advice}"
                    ),
                    stacklevel=2,
                )
            return fn(*args, **kwargs)

        return inner

    return wrap


class LLM:
    """An LLM for offline inference: a tokenizer, the C++ engine (model, paged KV cache,
    scheduler) and the loop that turns batches of prompts into RequestOutputs.

    Arguments are vLLM 0.6's (see EngineArgs for **kwargs). A non-default value for a feature
    taco_llm does not build yet raises NotImplementedError naming it."""

    # vLLM 0.6: when True, generate() warns on the legacy `prompt_token_ids=` keyword.
    DEPRECATE_LEGACY: ClassVar[bool] = False

    @classmethod
    @contextmanager
    def deprecate_legacy_api(cls) -> Iterator[None]:
        """Within this block, the legacy generate() keyword arguments warn (DEPRECATE_LEGACY
        is True); the previous value comes back on exit, on an exception too."""
        previous = cls.DEPRECATE_LEGACY
        cls.DEPRECATE_LEGACY = True
        try:
            yield
        finally:
            cls.DEPRECATE_LEGACY = previous

    def __init__(
        self,
        model: str,
        tokenizer: str | None = None,
        tokenizer_mode: str = "auto",
        skip_tokenizer_init: bool = False,
        trust_remote_code: bool = False,
        tensor_parallel_size: int = 1,
        dtype: str = "auto",
        quantization: str | None = None,
        revision: str | None = None,
        tokenizer_revision: str | None = None,
        seed: int = 0,
        gpu_memory_utilization: float = 0.9,
        swap_space: float = 4,
        cpu_offload_gb: float = 0,
        enforce_eager: bool | None = None,
        max_context_len_to_capture: int | None = None,
        max_seq_len_to_capture: int = 8192,
        disable_custom_all_reduce: bool = False,
        disable_async_output_proc: bool = False,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("disable_log_stats", True)
        self.engine_args = EngineArgs.from_kwargs(
            model=model,
            tokenizer=tokenizer,
            tokenizer_mode=tokenizer_mode,
            skip_tokenizer_init=skip_tokenizer_init,
            trust_remote_code=trust_remote_code,
            tensor_parallel_size=tensor_parallel_size,
            dtype=dtype,
            quantization=quantization,
            revision=revision,
            tokenizer_revision=tokenizer_revision,
            seed=seed,
            gpu_memory_utilization=gpu_memory_utilization,
            swap_space=swap_space,
            cpu_offload_gb=cpu_offload_gb,
            enforce_eager=enforce_eager,
            max_context_len_to_capture=max_context_len_to_capture,
            max_seq_len_to_capture=max_seq_len_to_capture,
            disable_custom_all_reduce=disable_custom_all_reduce,
            disable_async_output_proc=disable_async_output_proc,
            **kwargs,
        )
        args = self.engine_args
        self._tokenizer = None
        if not args.skip_tokenizer_init:
            self._tokenizer = get_tokenizer(
                args.tokenizer, args.tokenizer_mode, args.trust_remote_code
            )
        self._C = _load_engine_module()
        self._logits_processors = LogitsProcessorRegistry()
        # The guide's grammars learn the model's vocabulary once the engine has loaded it.
        self._guide = Guide(self._tokenizer, args.guided_decoding_backend)
        options = args.to_engine_options(self._C.EngineOptions)
        self._ranks = None
        self._failure: str | None = None
        if args.tensor_parallel_size > 1:
            self._ranks = start_ranks(self._C, options, args.distributed_executor_backend)
        try:
            self._engine = self._C.Engine(options, self._logits_processors, self._guide)
        except BaseException as e:
            if self._ranks is None:
                raise
            failure = self._ranks.settled_failure() if not isinstance(e, ValueError) else None
            self._ranks.close(grace_s=2.0)
            if failure and not isinstance(e, ValueError):
                raise RuntimeError(f"tensor parallelism: {failure}") from e
            raise
        # Tensor parallelism: rank 0's engine is destroyed first (it tells the other ranks to
        # stop), then the ranks are released: on `del llm`, garbage collection or interpreter
        # exit. One rank needs nothing: reference counting frees the engine.
        self._closer = None
        if self._ranks is not None:
            self._closer = weakref.finalize(self, _close_engine, self._engine, self._ranks)
        self.model_info: dict[str, Any] = dict(self._engine.model_info)
        self._guide.grammars.set_model(
            int(self.model_info["vocab_size"]), list(self.model_info["eos_token_ids"])
        )
        self._adapters = AdapterRegistry(self._engine, args.enable_lora, args.enable_prompt_adapter)
        self._request_counter = itertools.count()
        self._stats = FrontendStats()

    # ---- tokenizer ----

    def get_tokenizer(self) -> Any:
        return self._tokenizer

    def set_tokenizer(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._guide.grammars.set_tokenizer(tokenizer)

    # ---- generation ----

    @_deprecate_legacy_kwargs(
        "prompt_token_ids", advice="Please use the 'prompts' parameter instead."
    )
    def generate(
        self,
        prompts: Any = None,
        sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
        prompt_token_ids: list[int] | list[list[int]] | None = None,
        use_tqdm: bool = True,
        lora_request: LoRARequest | list[LoRARequest | None] | None = None,
        prompt_adapter_request: PromptAdapterRequest | None = None,
        guided_options_request: Any = None,
    ) -> list[RequestOutput]:
        """Generates completions for the prompts (a str, a TextPrompt, a TokensPrompt, or a list
        of them; or the legacy prompt_token_ids). Outputs are in the order of the prompts.
        lora_request: one LoRA adapter for every prompt, or a list of one per prompt (None: the
        base model); prompt_adapter_request: a prompt adapter for every prompt."""
        parsed = parse_prompts(prompts, prompt_token_ids)
        params = pair_params(sampling_params, len(parsed))
        if guided_options_request is not None:
            params = _with_guided_options(params, guided_options_request)
        adapters = self._adapters.for_prompts(lora_request, prompt_adapter_request, len(parsed))
        return self._run(parsed, params, use_tqdm, adapters=adapters)

    def chat(
        self,
        messages: Any,
        sampling_params: SamplingParams | list[SamplingParams] | None = None,
        use_tqdm: bool = True,
        lora_request: Any = None,
        chat_template: str | None = None,
        add_generation_prompt: bool = True,
        continue_final_message: bool = False,
        tools: list[dict[str, Any]] | None = None,
        chat_template_kwargs: dict[str, Any] | None = None,
        mm_processor_kwargs: dict[str, Any] | None = None,
    ) -> list[RequestOutput]:
        """Generates replies to one conversation (a list of {'role', 'content'} messages) or to
        a list of conversations, formatted with the tokenizer's chat template or chat_template.
        lora_request: a LoRA adapter for every conversation."""
        _refuse("mm_processor_kwargs", mm_processor_kwargs)
        conversations, _ = parse_conversations(messages)
        template = load_chat_template(chat_template)
        texts = [
            apply_chat_template(
                self._tokenizer,
                conv,
                template,
                add_generation_prompt,
                continue_final_message,
                tools,
                chat_template_kwargs,
            )
            for conv in conversations
        ]
        parsed = [ParsedPrompt(text=t, token_ids=None) for t in texts]
        adapters = self._adapters.for_prompts(lora_request, None, len(parsed))
        params = pair_params(sampling_params, len(parsed))
        return self._run(parsed, params, use_tqdm, adapters=adapters)

    def beam_search(
        self, prompts: Sequence[Any], params: BeamSearchParams, use_tqdm: bool = False
    ) -> list[BeamSearchOutput]:
        """vLLM 0.6.3's beam search: the beam_width best sequences of each prompt, best first.
        Each sequence's tokens and text include its prompt."""
        if not isinstance(params, BeamSearchParams):
            raise ValueError(f"params must be a BeamSearchParams, got {params!r}.")
        parsed = parse_prompts(list(prompts))
        width = params.beam_width
        sp = SamplingParams(
            n=width,
            best_of=width,
            use_beam_search=width > 1,
            temperature=0.0,
            max_tokens=params.max_tokens,
            ignore_eos=params.ignore_eos,
            include_stop_str_in_output=params.include_stop_str_in_output,
            logprobs=0,
            skip_special_tokens=False,
        )

        def as_beams(options: Any) -> None:
            # SamplingParams forbids width 1 and temperature with use_beam_search (vLLM 0.6's
            # rules); the engine itself takes any width and scales the scores by temperature.
            options.use_beam_search = True
            options.length_penalty = float(params.length_penalty)
            options.temperature = float(params.temperature)

        outputs = self._run(parsed, [sp] * len(parsed), use_tqdm, as_beams)
        return [self._to_beams(out) for out in outputs]

    def _to_beams(self, out: RequestOutput) -> BeamSearchOutput:
        beams = []
        for c in out.outputs:
            tokens = list(out.prompt_token_ids) + list(c.token_ids)
            text = self._tokenizer.decode(tokens) if self._tokenizer is not None else None
            beams.append(
                BeamSearchSequence(
                    tokens=tokens,
                    logprobs=c.logprobs or [],
                    cum_logprob=c.cumulative_logprob or 0.0,
                    text=text,
                    finish_reason=c.finish_reason,
                    stop_reason=c.stop_reason,
                )
            )
        return BeamSearchOutput(sequences=beams)

    def _run(
        self,
        prompts: list[ParsedPrompt],
        params: list[SamplingParams],
        use_tqdm: bool,
        edit_options: Callable[[Any], None] | None = None,
        adapters: list[Any] | None = None,
    ) -> list[RequestOutput]:
        info = self.model_info
        builder = RequestBuilder(
            self._tokenizer,
            int(info["vocab_size"]),
            int(info["max_model_len"]),
            self.engine_args.max_logprobs,
            self._C.SamplingOptions,
            self._logits_processors,
            self._guide,
        )
        if self._failure is not None:
            raise RuntimeError(self._failure)
        ids = [str(next(self._request_counter)) for _ in prompts]
        requests = []
        outputs = None
        try:
            requests = builder.build(prompts, params, ids, adapters)
            if edit_options is not None:
                for request in requests:
                    edit_options(request.options)
            # As in vLLM, async output processing is for GPUs only: on CPU the step already uses
            # every core, and detokenizing beside it preempts a kernel thread mid-step
            # (single-stream decode measured 35 tok/s async vs 60 sync on 2 cores).
            async_output = (
                not self.engine_args.disable_async_output_proc and info["device"] != "cpu"
            )
            outputs = run_requests(self._engine, requests, use_tqdm, async_output)
            return outputs
        except RuntimeError as e:
            self._check_ranks_after(e)
            raise
        finally:
            self._logits_processors.clear()
            self._guide.clear()
            self._stats.record([r.state for r in requests], outputs)

    def _check_ranks_after(self, error: RuntimeError) -> None:
        """After a failed step of a tensor-parallel engine: when the step's collectives failed
        (a rank died or timed out, or rank 0 failed mid-step while the others wait), the group
        is unusable; release every rank and the engine, and raise what happened, with what the
        ranks recorded. Other errors (a logits processor's, say) leave the engine as it is."""
        if self._ranks is None or "tensor parallel" not in str(error):
            return
        failure = self._ranks.settled_failure()
        self._failure = (
            f"tensor parallelism: {failure or error}. The engine and its ranks have been shut "
            "down; create a new LLM."
        )
        self._closer()
        raise RuntimeError(self._failure) from error

    # ---- adapters (vLLM's engine methods) ----

    def add_lora(self, lora_request: LoRARequest) -> bool:
        """Reads a LoRA adapter into the engine now (requests naming it add it otherwise);
        True when it was not there yet. ValueError for a bad adapter or a clashing id."""
        return self._adapters.add_lora(lora_request)

    def remove_lora(self, lora_id: int) -> bool:
        """Forgets a LoRA adapter; False when unknown."""
        return self._adapters.remove_lora(lora_id)

    def list_loras(self) -> set[int]:
        """The ids of the LoRA adapters the engine holds."""
        return self._adapters.list_loras()

    def add_prompt_adapter(self, prompt_adapter_request: PromptAdapterRequest) -> bool:
        return self._adapters.add_prompt_adapter(prompt_adapter_request)

    def remove_prompt_adapter(self, prompt_adapter_id: int) -> bool:
        return self._adapters.remove_prompt_adapter(prompt_adapter_id)

    def list_prompt_adapters(self) -> list[int]:
        return self._adapters.list_prompt_adapters()

    # ---- engine state ----

    def get_metrics(self) -> list[Metric]:
        """The engine's metrics as current vLLM returns them: a list of Counter / Gauge objects
        (taco_llm.metrics) with vLLM's names where vLLM has the quantity (requests running and
        waiting, KV cache usage, prefix-cache queries and hits, preemptions, prompt and
        generation tokens, finished requests) and `taco:` names for the engine's own (swapping,
        steps, blocks). docs/metrics.md lists them."""
        served = self.engine_args.served_model_name
        if isinstance(served, (list, tuple)):
            served = served[0] if served else None
        name = served or self.engine_args.model
        return build_metrics(dict(self._engine.metrics()), self._stats, str(name))
