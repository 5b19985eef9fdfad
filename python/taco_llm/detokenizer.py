"""Incremental detokenization and stop strings.

Decoding one token at a time must give the same text as decoding the whole sequence, even when a
character spans several byte-level tokens (emoji, CJK) or a tokenizer merges spaces across
tokens. As vLLM does, each step decodes a short window of tokens twice: [prefix_offset,
read_offset) (already emitted) and [prefix_offset, end); the new text is the difference, held
back while it ends in an incomplete UTF-8 sequence (U+FFFD)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Tokens of context before the first new token, so leading-space rules see a real prefix.
_INITIAL_OFFSET = 5
_REPLACEMENT_CHAR = "\ufffd"


@dataclass
class DecodeState:
    """Where incremental decoding of one sequence stands. tokens: the string tokens so far
    (a tail of the prompt, then the output)."""

    tokens: list[str] | None = None  # grows in place as tokens are decoded
    prefix_offset: int = 0
    read_offset: int = 0


def _ids_to_tokens(tokenizer: Any, ids: list[int], skip_special_tokens: bool) -> list[str]:
    vocab_size = len(tokenizer)
    out: list[str] = []
    for tid in ids:
        if not 0 <= tid < vocab_size:
            out.append("")  # out of the tokenizer's range: padding rows of the embedding
            continue
        tok = tokenizer.convert_ids_to_tokens([tid], skip_special_tokens=skip_special_tokens)
        out.extend(tok)
    return out


def _tokens_to_string(
    tokenizer: Any, tokens: list[str], skip_special_tokens: bool, spaces_between_special: bool
) -> str:
    """convert_tokens_to_string, except that a slow tokenizer's added tokens are kept whole
    (its converter would split them) and optionally separated by spaces."""
    if tokenizer.is_fast or not tokenizer.get_added_vocab():
        return tokenizer.convert_tokens_to_string(tokens)
    added = tokenizer.get_added_vocab()
    special = set(tokenizer.all_special_tokens)
    parts: list[str] = []
    current: list[str] = []
    for tok in tokens:
        if skip_special_tokens and tok in special:
            continue
        if tok in added:
            if current:
                parts.append(tokenizer.convert_tokens_to_string(current))
                current = []
            parts.append(tok)
        else:
            current.append(tok)
    if current:
        parts.append(tokenizer.convert_tokens_to_string(current))
    return (" " if spaces_between_special else "").join(parts)


def init_state(tokenizer: Any, prompt_ids: list[int], skip_special_tokens: bool) -> DecodeState:
    """The state before the first output token: the prompt's last tokens as context."""
    tokens = _ids_to_tokens(tokenizer, prompt_ids[-_INITIAL_OFFSET - 2 :], skip_special_tokens)
    read_offset = len(tokens)
    return DecodeState(tokens, max(read_offset - _INITIAL_OFFSET, 0), read_offset)


def _new_text(
    tokenizer: Any,
    state: DecodeState,
    new_tokens: list[str],
    skip_special_tokens: bool,
    spaces_between_special_tokens: bool,
) -> str | None:
    """The text new_tokens add after state's tokens; None while it ends in a partial UTF-8
    sequence. Only the window from prefix_offset is decoded (a few tokens)."""
    assert state.tokens is not None, "init_state first"
    window = state.tokens[state.prefix_offset :] + new_tokens
    prefix_len = state.read_offset - state.prefix_offset
    prefix_text = _tokens_to_string(
        tokenizer, window[:prefix_len], skip_special_tokens, spaces_between_special_tokens
    )
    full_text = _tokens_to_string(
        tokenizer, window, skip_special_tokens, spaces_between_special_tokens
    )
    if len(full_text) <= len(prefix_text) or full_text.endswith(_REPLACEMENT_CHAR):
        return None
    return full_text[len(prefix_text) :]


def peek_next(
    tokenizer: Any,
    state: DecodeState,
    token_id: int,
    skip_special_tokens: bool = True,
    spaces_between_special_tokens: bool = True,
) -> str:
    """The text `token_id` would add after `state`, leaving `state` as it is (used for the
    alternative tokens of logprobs)."""
    new_tokens = _ids_to_tokens(tokenizer, [token_id], skip_special_tokens)
    text = _new_text(
        tokenizer, state, new_tokens, skip_special_tokens, spaces_between_special_tokens
    )
    return text or ""


def decode_next(
    tokenizer: Any,
    state: DecodeState,
    token_id: int,
    skip_special_tokens: bool = True,
    spaces_between_special_tokens: bool = True,
) -> str:
    """Appends `token_id` to `state` (in place) and returns the text it adds: "" while the
    text so far ends in an incomplete character, which a later token completes."""
    new_tokens = _ids_to_tokens(tokenizer, [token_id], skip_special_tokens)
    text = _new_text(
        tokenizer, state, new_tokens, skip_special_tokens, spaces_between_special_tokens
    )
    state.tokens.extend(new_tokens)
    if text is None:
        return ""
    state.prefix_offset = state.read_offset
    state.read_offset = len(state.tokens)
    return text


def find_stop_string(
    text: str, new_char_count: int, stops: list[str], include_in_output: bool
) -> tuple[str, int] | None:
    """The stop string that appears in the last `new_char_count` characters of `text` (or
    straddles them), and the length to truncate `text` to (-1: keep all).

    Only the new characters plus one stop length before them are searched, so each character
    is scanned a bounded number of times. The earliest match wins."""
    if not new_char_count or not stops:
        return None
    best: tuple[int, str] | None = None
    for stop in stops:
        start = max(len(text) - new_char_count - len(stop) + 1, 0)
        idx = text.find(stop, start)
        if idx != -1 and (best is None or idx < best[0]):
            best = (idx, stop)
    if best is None:
        return None
    idx, stop = best
    if include_in_output:
        end = idx + len(stop)
        return stop, (-1 if end >= len(text) else end)
    return stop, idx
