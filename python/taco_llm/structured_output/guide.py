"""The engine's guide hook. The C++ sampler calls it once per step with the guided rows (request
key, sequence index, output so far) and an int32 bitmask [rows, ceil(vocab / 32)] to fill; it
keeps one xgrammar GrammarMatcher per guided sequence, brings it to the sequence's output (the
tokens sampled since the last step; after anything else, such as a beam taking another beam's
history, it starts again from the grammar's start and replays the output) and writes the tokens
the grammar allows next. EOS is among them exactly where the grammar may end."""

from __future__ import annotations

import itertools
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from taco_llm.structured_output.grammars import GrammarCache
from taco_llm.structured_output.params import GuidedDecodingParams, parse_backend


@dataclass
class _Matcher:
    matcher: Any
    tokens: list[int] = field(default_factory=list)


@dataclass
class _Request:
    grammar: Future
    where: str
    beams: bool  # beams take each other's histories: compare whole outputs
    matchers: dict[int, _Matcher] = field(default_factory=dict)


class Guide:
    """One per LLM: its grammar cache, the engine's default backend, and the matchers of the
    guided requests of the running call."""

    def __init__(self, tokenizer: Any, backend: str) -> None:
        self._options = parse_backend(backend, "guided_decoding_backend")[1]
        self.grammars = GrammarCache(tokenizer)
        self._requests: dict[int, _Request] = {}
        self._keys = itertools.count()

    def register(self, params: Any, where: str) -> int:
        """A key for SamplingOptions.guide_key of a request with params.constraint; its grammar
        is checked now (ValueError) and compiled in the background."""
        constraint = params.constraint
        if getattr(params, "guided_by_call", False):
            where = "guided_options_request"
        else:
            field = (
                "guided_decoding" if params.guided_decoding is not None else "structured_outputs"
            )
            where = f"{where}.{field}"
        options = self._options
        if isinstance(constraint, GuidedDecodingParams) and constraint.backend is not None:
            options = parse_backend(constraint.backend, f"{where}.backend")[1]
        grammar = self.grammars.prepare(constraint.spec(options), where)
        key = next(self._keys)
        self._requests[key] = _Request(grammar, where, bool(params.use_beam_search))
        return key

    def clear(self) -> None:
        """Forgets every request's matchers (the LLM calls this when a call ends)."""
        self._requests.clear()

    def _matcher(self, request: _Request, index: int) -> _Matcher:
        m = request.matchers.get(index)
        if m is None:
            import xgrammar

            m = _Matcher(xgrammar.GrammarMatcher(request.grammar.result()))
            request.matchers[index] = m
        return m

    def _sync(self, request: _Request, index: int, output: np.ndarray) -> _Matcher:
        m = self._matcher(request, index)
        n = len(m.tokens)
        if len(output) < n or (
            n
            and (
                output[n - 1] != m.tokens[-1]
                or (request.beams and not np.array_equal(output[:n], m.tokens))
            )
        ):
            m.matcher.reset()
            m.tokens = []
            n = 0
        for t in output[n:].tolist():
            if t in self.grammars.eos_token_ids and m.matcher.is_terminated():
                m.tokens.append(t)  # EOS again, after the grammar's end (see __call__)
                continue
            if not m.matcher.accept_token(t):
                raise RuntimeError(
                    f"{request.where}: token {t} does not follow the grammar after "
                    f"{len(m.tokens)} tokens (the grammar mask was not applied)."
                )
            m.tokens.append(t)
        return m

    def __call__(self, rows: list[tuple[int, int, np.ndarray]], bitmask: np.ndarray, _v: int):
        for i, (key, index, output) in enumerate(rows):
            request = self._requests[key]
            m = self._sync(request, index, output)
            if m.matcher.is_terminated():
                # The grammar has ended and EOS was let through (min_tokens holds the sequence
                # open, or ignore_eos): only EOS may follow.
                words = bitmask.view(np.uint32)
                words[i] = 0
                for t in self.grammars.eos_token_ids:
                    words[i, t >> 5] |= np.uint32(1 << (t & 31))
            else:
                m.matcher.fill_next_token_bitmask(bitmask, i)
