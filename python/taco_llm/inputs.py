"""Prompt inputs: TextPrompt and TokensPrompt (vLLM's TypedDicts) and the parsing of
LLM.generate's `prompts` and legacy `prompt_token_ids` arguments into one list."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypedDict, Union

from typing_extensions import NotRequired


class TextPrompt(TypedDict):
    """A text prompt, tokenized by the LLM's tokenizer."""

    prompt: str
    multi_modal_data: NotRequired[Any]
    mm_processor_kwargs: NotRequired[dict[str, Any]]


class TokensPrompt(TypedDict):
    """A prompt given as token ids, passed to the model as is."""

    prompt_token_ids: list[int]
    multi_modal_data: NotRequired[Any]
    mm_processor_kwargs: NotRequired[dict[str, Any]]


PromptType = Union[str, TextPrompt, TokensPrompt]
# vLLM 0.6.0's name for the same union.
PromptInputs = PromptType


@dataclass
class ParsedPrompt:
    """One prompt after parsing: its text (None for token prompts) and/or its token ids (None
    until a text prompt is tokenized)."""

    text: str | None
    token_ids: list[int] | None


def _is_token_list(value: Any) -> bool:
    return isinstance(value, list) and len(value) > 0 and all(isinstance(t, int) for t in value)


def _parse_one(item: Any, position: int) -> ParsedPrompt:
    if isinstance(item, str):
        return ParsedPrompt(text=item, token_ids=None)
    if isinstance(item, dict):
        for key in ("multi_modal_data", "mm_processor_kwargs"):
            if item.get(key) is not None:
                raise NotImplementedError(f"{key} (multi-modal inputs) is not supported yet.")
        if "prompt_token_ids" in item:
            ids = item["prompt_token_ids"]
            if not isinstance(ids, list) or not all(isinstance(t, int) for t in ids):
                raise ValueError(
                    f"prompts[{position}]['prompt_token_ids'] must be a list of ints, got {ids!r}."
                )
            return ParsedPrompt(text=None, token_ids=list(ids))
        if "prompt" in item:
            if not isinstance(item["prompt"], str):
                raise ValueError(f"prompts[{position}]['prompt'] must be a str.")
            return ParsedPrompt(text=item["prompt"], token_ids=None)
        raise ValueError(
            f"prompts[{position}] must have a 'prompt' (TextPrompt) or 'prompt_token_ids' "
            f"(TokensPrompt) key, got keys {sorted(item)}."
        )
    if _is_token_list(item):
        return ParsedPrompt(text=None, token_ids=list(item))
    raise ValueError(
        f"prompts[{position}] must be a str, TextPrompt or TokensPrompt, got {type(item).__name__}."
    )


def _batch(value: Any, name: str) -> list[Any]:
    """One prompt or a sequence of prompts -> a list. A flat list of ints is one token prompt."""
    if isinstance(value, (str, dict)) or _is_token_list(value):
        return [value]
    if isinstance(value, Sequence) and not isinstance(value, bytes):
        if len(value) == 0:
            raise ValueError(f"{name} is empty: please provide at least one prompt.")
        return list(value)
    raise ValueError(f"{name} must be a prompt or a list of prompts, got {type(value).__name__}.")


def _parse_legacy(prompts: Any, prompt_token_ids: Any) -> list[ParsedPrompt]:
    """vLLM 0.6's legacy form: prompts (str | list[str]) and/or prompt_token_ids
    (list[int] | list[list[int]]); when both are given, the text is used, as vLLM does."""
    texts = None if prompts is None else _batch(prompts, "prompts")
    ids = _batch(prompt_token_ids, "prompt_token_ids")
    if texts is not None and len(texts) != len(ids):
        raise ValueError(
            f"The lengths of prompts ({len(texts)}) and prompt_token_ids ({len(ids)}) must be "
            "the same."
        )
    out = []
    for i, tokens in enumerate(ids):
        if texts is not None:
            if not isinstance(texts[i], str):
                raise ValueError(f"prompts[{i}] must be a str when prompt_token_ids is given.")
            out.append(ParsedPrompt(text=texts[i], token_ids=None))
        elif isinstance(tokens, list) and all(isinstance(t, int) for t in tokens):
            out.append(ParsedPrompt(text=None, token_ids=list(tokens)))
        else:
            raise ValueError(f"prompt_token_ids[{i}] must be a list of ints, got {tokens!r}.")
    return out


def parse_prompts(prompts: Any, prompt_token_ids: Any = None) -> list[ParsedPrompt]:
    """Parses LLM.generate's inputs, in order. Raises ValueError for malformed input."""
    if prompt_token_ids is not None:
        return _parse_legacy(prompts, prompt_token_ids)
    if prompts is None:
        raise ValueError("Either prompts or prompt_token_ids must be provided.")
    return [_parse_one(item, i) for i, item in enumerate(_batch(prompts, "prompts"))]


def is_single_prompt(prompts: Sequence[Any] | Any) -> bool:
    """True when `prompts` is one prompt rather than a list of them."""
    return isinstance(prompts, (str, dict)) or _is_token_list(prompts)
