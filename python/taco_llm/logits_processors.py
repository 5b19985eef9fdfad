"""vLLM's per-request `logits_processors`: Python callables that edit a sequence's next-token
logits before any other processing. The C++ sampler calls the engine's logits hook for the rows
of requests that have them; the hook is this registry, which finds the request's processors by
key and runs them on a float32 tensor sharing memory with the engine's logits row."""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Iterable
from typing import Any

import torch


def _takes_prompt(fn: Callable[..., Any]) -> bool:
    """vLLM's rule: a processor with three parameters gets (prompt ids, output ids, logits)."""
    try:
        return len(inspect.signature(fn).parameters) == 3
    except (TypeError, ValueError):
        return False


class LogitsProcessorRegistry:
    def __init__(self) -> None:
        self._entries: dict[int, tuple[list[tuple[Callable[..., Any], bool]], list[int]]] = {}
        self._keys = itertools.count()

    def register(self, processors: Iterable[Callable[..., Any]], prompt_ids: list[int]) -> int:
        key = next(self._keys)
        self._entries[key] = ([(fn, _takes_prompt(fn)) for fn in processors], list(prompt_ids))
        return key

    def clear(self) -> None:
        """Forgets every request's processors (the LLM calls this when a call ends)."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __call__(self, key: int, output_ids: list[int], row: Any) -> None:
        processors, prompt_ids = self._entries[key]
        logits = torch.from_numpy(row)
        out = logits
        for fn, takes_prompt in processors:
            out = fn(prompt_ids, output_ids, out) if takes_prompt else fn(output_ids, out)
            if not isinstance(out, torch.Tensor) or out.shape != logits.shape:
                raise TypeError(
                    f"logits_processors: {fn!r} must return a tensor of shape "
                    f"{tuple(logits.shape)}, got {type(out).__name__} "
                    f"{tuple(getattr(out, 'shape', ()))}."
                )
        if out.data_ptr() != logits.data_ptr():
            logits.copy_(out)
