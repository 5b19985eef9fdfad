"""Speculative decoding's arguments: vLLM 0.6's (`speculative_model="[ngram]"`,
`num_speculative_tokens`, `ngram_prompt_lookup_max` / `_min`, ...) and current vLLM's
`speculative_config={"method": "ngram", ...}`, checked and reduced to the engine's options.

Methods built: "ngram" (prompt lookup in the sequence's own tokens) and taco_llm's "lookahead"
(drafts from an engine-wide tree of every prompt's and output's n-grams). Draft models are not
built yet."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

METHODS = ("ngram", "lookahead")
MAX_SPECULATIVE_TOKENS = 32  # the engine's kMaxSpeculativeTokens

# speculative_config keys understood, with the vLLM 0.6 argument each stands for.
_CONFIG_KEYS = {
    "method": None,
    "model": "speculative_model",
    "num_speculative_tokens": "num_speculative_tokens",
    "prompt_lookup_max": "ngram_prompt_lookup_max",
    "prompt_lookup_min": "ngram_prompt_lookup_min",
    "disable_by_batch_size": "speculative_disable_by_batch_size",
    "acceptance_method": "spec_decoding_acceptance_method",
    "disable_logprobs": "disable_logprobs_during_spec_decoding",
}
# Methods of current vLLM that need a second model (refused as not built).
_MODEL_METHODS = ("draft_model", "eagle", "eagle3", "medusa", "mlp_speculator", "mtp")
_ACCEPTANCE_METHODS = ("rejection_sampler", "typical_acceptance_sampler")


@dataclass
class Speculation:
    """What the engine runs: method "" when off."""

    method: str = ""
    num_speculative_tokens: int = 0
    prompt_lookup_max: int = 0
    prompt_lookup_min: int = 0
    disable_by_batch_size: int = 0


def _count(name: str, value: Any, low: int) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}.")
    return value


def _method_of(model: Any) -> str:
    if model in ("[ngram]", "ngram"):
        return "ngram"
    if model in ("[lookahead]", "lookahead"):
        return "lookahead"
    if isinstance(model, str) and model:
        raise NotImplementedError(
            f"speculative_model={model!r}: speculation with a draft model is not supported by "
            "taco_llm yet (use '[ngram]' or '[lookahead]')."
        )
    raise ValueError(
        f"speculative_model must be '[ngram]', '[lookahead]' or a model path, got {model!r}."
    )


def _from_config(config: Any, given: dict[str, Any]) -> dict[str, Any]:
    """speculative_config as vLLM 0.6 arguments; it may not be combined with them."""
    if not isinstance(config, dict):
        raise ValueError(f"speculative_config must be a dict, got {type(config).__name__}.")
    unknown = sorted(set(config) - set(_CONFIG_KEYS))
    if unknown:
        raise ValueError(
            f"speculative_config has unknown key(s) {unknown}; known: {sorted(_CONFIG_KEYS)}."
        )
    both = sorted(name for name, value in given.items() if value is not None)
    if both:
        raise ValueError(f"speculative_config cannot be combined with {', '.join(both)}.")
    method = config.get("method")
    model = config.get("model")
    if method is None and model is None:
        raise ValueError(
            "speculative_config needs a 'method' (one of "
            f"{', '.join(map(repr, METHODS))}) or a 'model'."
        )
    if method in _MODEL_METHODS:
        raise NotImplementedError(
            f"speculative_config method {method!r} is not supported by taco_llm yet "
            f"(only {', '.join(map(repr, METHODS))})."
        )
    if method is not None and method not in METHODS and method != "[ngram]":
        raise ValueError(
            f"speculative_config method must be one of {', '.join(map(repr, METHODS))}, "
            f"got {method!r}."
        )
    out = {arg: config.get(key) for key, arg in _CONFIG_KEYS.items() if arg is not None}
    out["speculative_model"] = f"[{method.strip('[]')}]" if method is not None else model
    lookup_max, lookup_min = config.get("prompt_lookup_max"), config.get("prompt_lookup_min")
    # Current vLLM: both default to 5, and one given stands for both.
    if lookup_max is None and lookup_min is None:
        lookup_max = lookup_min = 5
    out["ngram_prompt_lookup_max"] = lookup_max if lookup_max is not None else lookup_min
    out["ngram_prompt_lookup_min"] = lookup_min if lookup_min is not None else lookup_max
    return out


def parse(args: Any) -> Speculation:
    """The speculation EngineArgs asks for, after vLLM's checks (ValueError naming the
    argument; NotImplementedError for what is not built)."""
    given = {
        "speculative_model": args.speculative_model,
        "num_speculative_tokens": args.num_speculative_tokens,
        "ngram_prompt_lookup_max": args.ngram_prompt_lookup_max,
        "ngram_prompt_lookup_min": args.ngram_prompt_lookup_min,
        "speculative_disable_by_batch_size": args.speculative_disable_by_batch_size,
        "spec_decoding_acceptance_method": None
        if args.spec_decoding_acceptance_method == "rejection_sampler"
        else args.spec_decoding_acceptance_method,
        "disable_logprobs_during_spec_decoding": args.disable_logprobs_during_spec_decoding,
    }
    if args.speculative_config is not None:
        given = _from_config(args.speculative_config, given)
    model = given["speculative_model"]
    if model is None:
        extra = sorted(k for k, v in given.items() if v is not None)
        if extra:
            raise ValueError(
                f"{', '.join(extra)} given without speculative_model (or speculative_config)."
            )
        return Speculation()
    method = _method_of(model)
    for name in ("speculative_max_model_len", "speculative_draft_tensor_parallel_size"):
        if getattr(args, name) is not None:
            raise ValueError(f"{name} applies to a draft model, not to {model!r}.")
    acceptance = given.get("spec_decoding_acceptance_method") or "rejection_sampler"
    if acceptance not in _ACCEPTANCE_METHODS:
        raise ValueError(
            f"spec_decoding_acceptance_method must be one of {_ACCEPTANCE_METHODS}, "
            f"got {acceptance!r}."
        )
    if acceptance != "rejection_sampler":
        raise NotImplementedError(
            f"spec_decoding_acceptance_method={acceptance!r} is not supported by taco_llm "
            "(drafts are verified exactly: 'rejection_sampler')."
        )
    disable_logprobs = given.get("disable_logprobs_during_spec_decoding")
    if disable_logprobs is not None and not isinstance(disable_logprobs, bool):
        raise ValueError(
            "disable_logprobs_during_spec_decoding must be a bool or None, "
            f"got {disable_logprobs!r}."
        )
    k = _count("num_speculative_tokens", given["num_speculative_tokens"], 1)
    if k is None:
        raise ValueError(f"num_speculative_tokens must be given with speculative_model={model!r}.")
    if k > MAX_SPECULATIVE_TOKENS:
        raise ValueError(
            f"num_speculative_tokens must be at most {MAX_SPECULATIVE_TOKENS}, got {k}."
        )
    lookup_max = _count("ngram_prompt_lookup_max", given["ngram_prompt_lookup_max"], 0) or 0
    # vLLM 0.6: an unset minimum is 1; an explicit one must be >= 1.
    lookup_min = _count("ngram_prompt_lookup_min", given["ngram_prompt_lookup_min"], 1) or 1
    if lookup_max < 1 or lookup_max > MAX_SPECULATIVE_TOKENS:
        raise ValueError(
            f"ngram_prompt_lookup_max must be in [1, {MAX_SPECULATIVE_TOKENS}] with "
            f"speculative_model={model!r}, got {lookup_max}."
        )
    if lookup_min > lookup_max:
        raise ValueError(
            f"ngram_prompt_lookup_min ({lookup_min}) cannot be larger than "
            f"ngram_prompt_lookup_max ({lookup_max})."
        )
    batch = _count(
        "speculative_disable_by_batch_size", given["speculative_disable_by_batch_size"], 2
    )
    return Speculation(method, k, lookup_max, lookup_min, batch or 0)
