"""Validates prompts and sampling parameters against the loaded model and turns them into
engine requests. Everything here runs before any request is queued, so a bad input raises
ValueError and leaves the engine untouched."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from taco_llm.adapters import PromptAdapters
from taco_llm.inputs import ParsedPrompt
from taco_llm.logits_processors import LogitsProcessorRegistry
from taco_llm.output_processor import RequestState
from taco_llm.sampling_params import SamplingParams, to_engine_options

# vLLM's message for a text prompt given to an LLM made with skip_tokenizer_init=True.
SKIP_TOKENIZER_TEXT = "You cannot pass text prompts when `skip_tokenizer_init` is True"


@dataclass
class EngineRequest:
    state: RequestState
    options: Any  # _C.SamplingOptions


def pair_params(
    sampling_params: SamplingParams | list[SamplingParams] | None, num_prompts: int
) -> list[SamplingParams]:
    """One SamplingParams for every prompt, or a list paired one to one with the prompts."""
    if sampling_params is None:
        return [SamplingParams()] * num_prompts
    if isinstance(sampling_params, SamplingParams):
        return [sampling_params] * num_prompts
    if isinstance(sampling_params, (list, tuple)):
        if len(sampling_params) != num_prompts:
            raise ValueError(
                f"The lengths of prompts ({num_prompts}) and sampling_params "
                f"({len(sampling_params)}) must be the same."
            )
        for i, p in enumerate(sampling_params):
            if not isinstance(p, SamplingParams):
                raise ValueError(f"sampling_params[{i}] must be a SamplingParams, got {p!r}.")
        return list(sampling_params)
    raise ValueError(
        f"sampling_params must be a SamplingParams or a list of them, got {sampling_params!r}."
    )


class RequestBuilder:
    """Knows the model's limits (vocabulary, context length) and the tokenizer."""

    def __init__(
        self,
        tokenizer: Any,
        vocab_size: int,
        max_model_len: int,
        max_logprobs: int,
        options_cls: type,
        processors: LogitsProcessorRegistry,
        constraints: Any = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.max_model_len = max_model_len
        self.max_logprobs = max_logprobs
        self.options_cls = options_cls
        self.processors = processors
        # Structured output: the LLM's constraint compiler (prepare) and guide (register).
        self.constraints = constraints

    def build(
        self,
        prompts: list[ParsedPrompt],
        params: list[SamplingParams],
        request_ids: list[str],
        adapters: list[PromptAdapters] | None = None,
    ) -> list[EngineRequest]:
        out = []
        for i, (prompt, p, rid) in enumerate(zip(prompts, params, request_ids)):
            a = adapters[i] if adapters is not None else PromptAdapters()
            token_ids = self._prompt_ids(prompt, p, i, a.virtual_tokens)
            self._check_params(p, i)
            max_tokens = self.max_model_len - len(token_ids) - a.virtual_tokens
            if p.max_tokens is not None:
                max_tokens = min(p.max_tokens, max_tokens)
            options = to_engine_options(p, self.options_cls, max_tokens, self._bad_words(p))
            if p.logits_processors:
                options.logits_hook_key = self.processors.register(p.logits_processors, token_ids)
            if p.constraint is not None:
                options.guide_key = self.constraints.register(p, f"sampling_params[{i}]")
            options.lora_id = a.lora_id
            options.prompt_adapter_id = a.prompt_adapter_id
            state = RequestState(rid, prompt.text, token_ids, p, self.tokenizer)
            state.virtual_tokens = a.virtual_tokens
            state.lora_request = a.lora_request
            out.append(EngineRequest(state, options))
        return out

    def _prompt_ids(
        self, prompt: ParsedPrompt, p: SamplingParams, i: int, virtual_tokens: int
    ) -> list[int]:
        if prompt.token_ids is not None:
            ids = prompt.token_ids
        elif self.tokenizer is None:
            raise ValueError(
                f"{SKIP_TOKENIZER_TEXT}: prompts[{i}] is text; give its token ids "
                "(a TokensPrompt or prompt_token_ids)."
            )
        else:
            ids = self.tokenizer.encode(prompt.text)
        if p.truncate_prompt_tokens is not None:
            ids = ids[-p.truncate_prompt_tokens :]
        if not ids:
            raise ValueError(
                f"Prompt cannot be empty: prompts[{i}] has no tokens (the decoder prompt cannot "
                "be empty; it needs at least one token)."
            )
        if len(ids) + virtual_tokens >= self.max_model_len:
            with_virtual = f" (and {virtual_tokens} virtual tokens)" if virtual_tokens else ""
            raise ValueError(
                f"prompts[{i}] has {len(ids)} tokens{with_virtual}, too long for max_model_len="
                f"{self.max_model_len} (the prompt must leave room for at least one new token)."
            )
        bad = next((t for t in ids if not 0 <= t < self.vocab_size), None)
        if bad is not None:
            raise ValueError(
                f"Token id {bad} is out of vocabulary: prompts[{i}] has it, outside "
                f"[0, {self.vocab_size})."
            )
        return list(ids)

    def _check_ids(self, field: str, ids: Any, i: int) -> None:
        bad = next((t for t in ids if not 0 <= t < self.vocab_size), None)
        if bad is not None:
            raise ValueError(
                f"sampling_params[{i}].{field} contains out-of-vocab token id {bad} (token id "
                f"{bad} is out of vocabulary [0, {self.vocab_size}))."
            )

    def _check_params(self, p: SamplingParams, i: int) -> None:
        self._check_ids("stop_token_ids", p.stop_token_ids, i)
        self._check_ids("allowed_token_ids", p.allowed_token_ids or [], i)
        self._check_ids("logit_bias", (p.logit_bias or {}).keys(), i)
        for name in ("logprobs", "prompt_logprobs"):
            value = getattr(p, name)
            if value is not None and value > self.max_logprobs:
                raise ValueError(
                    f"Cannot request more than {self.max_logprobs} logprobs: "
                    f"sampling_params[{i}].{name}={value} is above max_logprobs="
                    f"{self.max_logprobs} (raise it with LLM(max_logprobs=...))."
                )
        if (p.stop or p.bad_words) and self.tokenizer is None:
            raise ValueError(
                f"sampling_params[{i}]: stop strings and bad_words need a tokenizer "
                "(skip_tokenizer_init=True)."
            )
        for j, fn in enumerate(p.logits_processors or []):
            if not callable(fn):
                raise TypeError(
                    f"sampling_params[{i}].logits_processors[{j}] must be callable "
                    f"(output_ids, logits) or (prompt_ids, output_ids, logits), got {fn!r}."
                )

    def _bad_words(self, p: SamplingParams) -> list[list[int]]:
        """Each bad word as token ids, alone and after a space (how it appears mid-text)."""
        out: list[list[int]] = []
        for word in p.bad_words or []:
            for text in (word.lstrip(), " " + word.lstrip()):
                ids = self.tokenizer.encode(text, add_special_tokens=False)
                if ids and ids not in out:
                    out.append(ids)
        return out
