"""SamplingParams: vLLM 0.6.0/0.6.1 fields and validation, plus the fields vLLM added later that
users now expect (min_tokens, output_kind, bad_words, allowed_token_ids, logit_bias, ...).

Every invalid value raises ValueError naming the field and its allowed range. The engine-facing
form is `_C.SamplingOptions`, built by `to_engine_options` once the prompt length is known."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from enum import IntEnum
from typing import Any

from taco_llm.structured_output.params import GuidedDecodingParams, StructuredOutputsParams

_SAMPLING_EPS = 1e-5
# vLLM clamps tiny positive temperatures: below this, logits/temperature overflow to inf.
_MIN_TEMP = 1e-2
_SEED_MOD = 2**64


class SamplingType(IntEnum):
    GREEDY = 0
    RANDOM = 1
    RANDOM_SEED = 2
    BEAM = 3


class RequestOutputKind(IntEnum):
    """What a streaming consumer receives. The offline LLM returns final outputs whatever the
    kind, as vLLM's LLM class does."""

    CUMULATIVE = 0
    DELTA = 1
    FINAL_ONLY = 2


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_range(name: str, value: Any, lo: float, hi: float, lo_open: bool, spec: str) -> None:
    if not _is_number(value):
        raise ValueError(f"{name} must be a number in {spec}, got {value!r}.")
    below = value <= lo if lo_open else value < lo
    if below or value > hi:
        raise ValueError(f"{name} must be in {spec}, got {value}.")


def _int_list(name: str, value: Any) -> list[int]:
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"{name} must be a list of token ids (ints >= 0), got {value!r}.")
    out = list(value)
    for tok in out:
        if not _is_int(tok) or tok < 0:
            raise ValueError(f"{name} must contain token ids (ints >= 0), got {tok!r}.")
    return out


@dataclass
class SamplingParams:
    """Sampling parameters for text generation, with vLLM's names and defaults."""

    n: int = 1
    best_of: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    min_p: float = 0.0
    seed: int | None = None
    use_beam_search: bool = False
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    bad_words: list[str] | None = None
    include_stop_str_in_output: bool = False
    ignore_eos: bool = False
    max_tokens: int | None = 16
    min_tokens: int = 0
    logprobs: int | None = None
    prompt_logprobs: int | None = None
    detokenize: bool = True
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    logits_processors: list[Callable[..., Any]] | None = None
    truncate_prompt_tokens: int | None = None
    output_kind: RequestOutputKind = RequestOutputKind.CUMULATIVE
    allowed_token_ids: list[int] | None = None
    logit_bias: dict[int, float] | None = None
    # Structured output (one constraint; vLLM 0.6.3's name, or current vLLM's).
    guided_decoding: GuidedDecodingParams | None = None
    structured_outputs: StructuredOutputsParams | None = None
    # Characters held back from streamed text so a partial stop string is never shown.
    output_text_buffer_length: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        self._normalize()
        self._verify_args()
        if self.use_beam_search:
            self._verify_beam_search()
        else:
            self._verify_non_beam_search()
            if self.temperature < _SAMPLING_EPS:
                # Zero temperature is greedy: the filters cannot change the argmax.
                self.top_p = 1.0
                self.top_k = -1
                self.min_p = 0.0
                self._verify_greedy_sampling()

    @staticmethod
    def from_optional(**kwargs: Any) -> SamplingParams:
        """Builds SamplingParams from keyword arguments where None means "the default"."""
        return SamplingParams(**{k: v for k, v in kwargs.items() if v is not None})

    def _normalize(self) -> None:
        if self.best_of is None:
            self.best_of = self.n
        if _is_number(self.temperature) and 0 < self.temperature < _MIN_TEMP:
            self.temperature = _MIN_TEMP
        if self.seed == -1:
            self.seed = None
        if self.stop is None:
            self.stop = []
        elif isinstance(self.stop, str):
            self.stop = [self.stop]
        else:
            self.stop = list(self.stop)
        self.stop_token_ids = _int_list("stop_token_ids", self.stop_token_ids)
        self.bad_words = [] if self.bad_words is None else list(self.bad_words)
        if self.allowed_token_ids is not None:
            self.allowed_token_ids = _int_list("allowed_token_ids", self.allowed_token_ids)
        if self.logprobs is True:
            self.logprobs = 1
        if self.prompt_logprobs is True:
            self.prompt_logprobs = 1
        if self.stop and not self.include_stop_str_in_output:
            self.output_text_buffer_length = max(len(s) for s in self.stop if s) - 1
        if self.output_kind in set(RequestOutputKind) and _is_int(self.output_kind):
            self.output_kind = RequestOutputKind(self.output_kind)

    def _verify_args(self) -> None:
        self._verify_counts()
        _check_range("presence_penalty", self.presence_penalty, -2.0, 2.0, False, "[-2, 2]")
        _check_range("frequency_penalty", self.frequency_penalty, -2.0, 2.0, False, "[-2, 2]")
        _check_range(
            "repetition_penalty", self.repetition_penalty, 0.0, float("inf"), True, "(0, inf)"
        )
        _check_range("temperature", self.temperature, 0.0, float("inf"), False, "[0, inf)")
        _check_range("top_p", self.top_p, 0.0, 1.0, True, "(0, 1]")
        if not _is_int(self.top_k) or self.top_k < -1 or self.top_k == 0:
            raise ValueError(f"top_k must be -1 (disable), or at least 1, got {self.top_k!r}.")
        _check_range("min_p", self.min_p, 0.0, 1.0, False, "[0, 1]")
        if self.seed is not None and not _is_int(self.seed):
            raise ValueError(f"seed must be an int or None, got {self.seed!r}.")
        self._verify_lengths()
        self._verify_logprobs()
        self._verify_strings()
        self._verify_biases()
        self._verify_constraint()

    def _verify_counts(self) -> None:
        if not _is_int(self.n) or self.n < 1:
            raise ValueError(f"n must be an int of at least 1, got {self.n!r}.")
        if not _is_int(self.best_of) or self.best_of < self.n:
            raise ValueError(
                f"best_of must be an int greater than or equal to n, got n={self.n} and "
                f"best_of={self.best_of!r}."
            )
        if self.best_of != self.n and self.output_kind == RequestOutputKind.DELTA:
            raise ValueError("best_of must equal n to use output_kind=DELTA.")
        if not isinstance(self.output_kind, RequestOutputKind):
            raise ValueError(
                f"output_kind must be a RequestOutputKind (CUMULATIVE, DELTA, FINAL_ONLY), "
                f"got {self.output_kind!r}."
            )

    def _verify_lengths(self) -> None:
        if self.max_tokens is not None and (not _is_int(self.max_tokens) or self.max_tokens < 1):
            raise ValueError(f"max_tokens must be at least 1 (or None), got {self.max_tokens!r}.")
        if not _is_int(self.min_tokens) or self.min_tokens < 0:
            raise ValueError(
                f"min_tokens must be greater than or equal to 0, got {self.min_tokens!r}."
            )
        if self.max_tokens is not None and self.min_tokens > self.max_tokens:
            raise ValueError(
                f"min_tokens must be less than or equal to max_tokens={self.max_tokens}, "
                f"got {self.min_tokens}."
            )
        if self.truncate_prompt_tokens is not None and (
            not _is_int(self.truncate_prompt_tokens) or self.truncate_prompt_tokens < 1
        ):
            raise ValueError(
                "truncate_prompt_tokens must be >= 1 (or None), "
                f"got {self.truncate_prompt_tokens!r}."
            )

    def _verify_logprobs(self) -> None:
        for name in ("logprobs", "prompt_logprobs"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 0):
                raise ValueError(f"{name} must be a non-negative int (or None), got {value!r}.")

    def _verify_strings(self) -> None:
        for s in self.stop:
            if not isinstance(s, str) or not s:
                raise ValueError(f"stop must contain non-empty strings, got {s!r}.")
        if self.stop and not self.detokenize:
            raise ValueError(
                "stop strings are only supported when detokenize is True. "
                "Set detokenize=True to use stop."
            )
        for w in self.bad_words:
            if not isinstance(w, str) or not w.strip():
                raise ValueError(f"bad_words must contain non-empty strings, got {w!r}.")

    def _verify_biases(self) -> None:
        if self.allowed_token_ids is not None and not self.allowed_token_ids:
            raise ValueError("allowed_token_ids must be a non-empty list of token ids (or None).")
        if self.logit_bias is None:
            return
        if not isinstance(self.logit_bias, dict):
            raise ValueError(
                f"logit_bias must be a dict of token id -> bias, got {self.logit_bias!r}."
            )
        clean: dict[int, float] = {}
        for tok, bias in self.logit_bias.items():
            tok_id = int(tok) if isinstance(tok, str) and tok.isdigit() else tok
            if not _is_int(tok_id) or tok_id < 0:
                raise ValueError(f"logit_bias keys must be token ids (ints >= 0), got {tok!r}.")
            _check_range("logit_bias value", bias, -100.0, 100.0, False, "[-100, 100]")
            clean[tok_id] = float(bias)
        self.logit_bias = clean

    def _verify_constraint(self) -> None:
        if self.guided_decoding is not None and not isinstance(
            self.guided_decoding, GuidedDecodingParams
        ):
            raise ValueError(
                f"guided_decoding must be a GuidedDecodingParams, got {self.guided_decoding!r}."
            )
        if self.structured_outputs is not None and not isinstance(
            self.structured_outputs, StructuredOutputsParams
        ):
            raise ValueError(
                "structured_outputs must be a StructuredOutputsParams, got "
                f"{self.structured_outputs!r}."
            )
        if self.guided_decoding is not None and self.structured_outputs is not None:
            raise ValueError(
                "guided_decoding and structured_outputs are two spellings of one constraint: "
                "give one."
            )

    @property
    def constraint(self) -> GuidedDecodingParams | StructuredOutputsParams | None:
        """The request's structured output constraint, whichever field holds it (None when neither
        gives one)."""
        c = self.guided_decoding or self.structured_outputs
        return None if c is None or c.is_empty() else c

    def _verify_beam_search(self) -> None:
        if self.best_of == 1:
            raise ValueError(
                f"best_of must be greater than 1 when using beam search, got {self.best_of}."
            )
        if self.temperature > _SAMPLING_EPS:
            raise ValueError(
                f"temperature must be 0 when using beam search, got {self.temperature}."
            )
        if self.top_p < 1.0 - _SAMPLING_EPS:
            raise ValueError(f"top_p must be 1 when using beam search, got {self.top_p}.")
        if self.top_k != -1:
            raise ValueError(f"top_k must be -1 when using beam search, got {self.top_k}.")
        if self.early_stopping not in (True, False, "never"):
            raise ValueError(
                f"early_stopping must be True, False, or 'never', got {self.early_stopping!r}."
            )

    def _verify_non_beam_search(self) -> None:
        if self.early_stopping is not False:
            raise ValueError(
                "early_stopping is not effective and must be False when not using beam search, "
                f"got {self.early_stopping!r}."
            )
        if not _is_number(self.length_penalty) or abs(self.length_penalty - 1.0) > _SAMPLING_EPS:
            raise ValueError(
                "length_penalty is not effective and must be the default value of 1.0 when not "
                f"using beam search, got {self.length_penalty!r}."
            )

    def _verify_greedy_sampling(self) -> None:
        if self.best_of > 1:
            raise ValueError(
                "n and best_of must be 1 when using greedy sampling (temperature=0), got "
                f"n={self.n} and best_of={self.best_of}."
            )

    @property
    def sampling_type(self) -> SamplingType:
        if self.use_beam_search:
            return SamplingType.BEAM
        if self.temperature < _SAMPLING_EPS:
            return SamplingType.GREEDY
        if self.seed is not None:
            return SamplingType.RANDOM_SEED
        return SamplingType.RANDOM

    @property
    def all_stop_token_ids(self) -> set[int]:
        return set(self.stop_token_ids)

    def clone(self) -> SamplingParams:
        """A deep copy; logits processors (arbitrary callables) are shared, not copied."""
        memo = {id(p): p for p in self.logits_processors or []}
        return copy.deepcopy(self, memo)

    def __repr__(self) -> str:
        body = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr)
        return f"SamplingParams({body})"


@dataclass
class BeamSearchParams:
    """Parameters of LLM.beam_search (vLLM 0.6.3 style)."""

    beam_width: int
    max_tokens: int
    ignore_eos: bool = False
    temperature: float = 0.0
    length_penalty: float = 1.0
    include_stop_str_in_output: bool = False

    def __post_init__(self) -> None:
        if not _is_int(self.beam_width) or self.beam_width < 1:
            raise ValueError(f"beam_width must be an int of at least 1, got {self.beam_width!r}.")
        if not _is_int(self.max_tokens) or self.max_tokens < 1:
            raise ValueError(f"max_tokens must be an int of at least 1, got {self.max_tokens!r}.")
        if not _is_number(self.temperature) or self.temperature < 0.0:
            raise ValueError(
                f"temperature must be a non-negative number (beams are scored on the "
                f"logprobs of logits / temperature when it is > 0), got {self.temperature!r}."
            )
        if not _is_number(self.length_penalty):
            raise ValueError(f"length_penalty must be a number, got {self.length_penalty!r}.")


_EARLY_STOPPING = {False: 0, True: 1, "never": 2}


def to_engine_options(
    params: SamplingParams,
    options_cls: type,
    max_tokens: int,
    bad_words_token_ids: list[list[int]] | None = None,
) -> Any:
    """Fills a `_C.SamplingOptions` (passed in so this module does not import the extension).
    max_tokens is already resolved against max_model_len and the prompt length."""
    o = options_cls()
    o.n = params.n
    o.best_of = params.best_of
    # Python picks the n best itself, after stop strings have ended each sequence.
    o.stream_best_of = params.best_of > params.n and not params.use_beam_search
    o.repetition_penalty = float(params.repetition_penalty)
    o.presence_penalty = float(params.presence_penalty)
    o.frequency_penalty = float(params.frequency_penalty)
    o.temperature = float(params.temperature)
    o.top_p = float(params.top_p)
    o.top_k = params.top_k
    o.min_p = float(params.min_p)
    o.seed = None if params.seed is None else params.seed % _SEED_MOD
    o.allowed_token_ids = list(params.allowed_token_ids or [])
    o.logit_bias = sorted((params.logit_bias or {}).items())
    o.bad_words_token_ids = [list(ids) for ids in bad_words_token_ids or []]
    o.max_tokens = max_tokens
    o.min_tokens = min(params.min_tokens, max_tokens)
    o.ignore_eos = bool(params.ignore_eos)
    o.stop_token_ids = list(params.stop_token_ids)
    o.logprobs = -1 if params.logprobs is None else params.logprobs
    o.prompt_logprobs = -1 if params.prompt_logprobs is None else params.prompt_logprobs
    o.use_beam_search = bool(params.use_beam_search)
    o.length_penalty = float(params.length_penalty)
    o.early_stopping = _EARLY_STOPPING[params.early_stopping]
    return o
