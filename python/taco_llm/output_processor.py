"""Turns the engine's per-step deltas into RequestOutputs: incremental text, stop strings,
logprobs with decoded tokens, finish and stop reasons, metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from taco_llm.detokenizer import (
    DecodeState,
    decode_next,
    find_stop_string,
    init_state,
    peek_next,
)
from taco_llm.outputs import CompletionOutput, Logprob, RequestMetrics, RequestOutput
from taco_llm.sampling_params import SamplingParams


@dataclass
class _Token:
    """One new token of a delta, with what the engine reported about it."""

    token_id: int
    logprob: float | None
    top: list[tuple[int, float]]
    rank: int | None


class SequenceState:
    """One generated sequence: its tokens, text, logprobs and how it ended."""

    def __init__(self, index: int, request: RequestState) -> None:
        self.index = index
        self.req = request
        self.token_ids: list[int] = []
        self.text = ""
        self.cumulative_logprob = 0.0
        self.logprobs: list[dict[int, Logprob]] | None = (
            [] if request.params.logprobs is not None else None
        )
        self.finish_reason: str | None = None
        self.stop_reason: int | str | None = None
        self.decode: DecodeState | None = None
        self.last_token_text = ""  # to drop a stop token's text

    def reset(self) -> None:
        self.__init__(self.index, self.req)

    def apply(self, delta: Any) -> bool:
        """Applies a SeqDelta. Returns True when a stop string ended the sequence here, so the
        caller must tell the engine."""
        if delta.replace:
            self.reset()
        if self.finish_reason is not None:
            return False  # tokens computed before the engine learnt of a stop string: dropped
        stopped_here = self._append_tokens(delta)
        if self.finish_reason is None and delta.finish_reason is not None:
            self._finish_from_engine(delta)
        return stopped_here and delta.finish_reason is None

    def _append_tokens(self, delta: Any) -> bool:
        ranks = getattr(delta, "new_ranks", None)
        tops = delta.new_top
        for i, tid in enumerate(delta.new_token_ids):
            tok = _Token(
                token_id=tid,
                logprob=delta.new_logprobs[i] if i < len(delta.new_logprobs) else None,
                top=list(tops[i]) if i < len(tops) else [],
                rank=ranks[i] if ranks is not None and i < len(ranks) else None,
            )
            if self._append_one(tok):
                return True
        return False

    def _append_one(self, tok: _Token) -> bool:
        req = self.req
        params = req.params
        self.token_ids.append(tok.token_id)
        # Summed here, over the tokens kept: a stop string drops the ones computed after it.
        self.cumulative_logprob += tok.logprob if tok.logprob is not None else 0.0
        new_text = ""
        alternatives: dict[int, str | None] = {}
        if req.tokenizer is not None and params.detokenize:
            if self.decode is None:
                self.decode = init_state(
                    req.tokenizer, req.prompt_token_ids, params.skip_special_tokens
                )
            if self.logprobs is not None:  # decoded before the state moves past this position
                alternatives = req.peek_texts(self.decode, tok.top[: params.logprobs])
            new_text = decode_next(
                req.tokenizer,
                self.decode,
                tok.token_id,
                params.skip_special_tokens,
                params.spaces_between_special_tokens,
            )
            self.text += new_text
            self.last_token_text = new_text
        if self.logprobs is not None:
            decoded = new_text if self.decode is not None else None
            self.logprobs.append(req.logprob_entry(tok, decoded, alternatives))
        if len(self.token_ids) < params.min_tokens:
            return False
        hit = find_stop_string(
            self.text, len(new_text), params.stop, params.include_stop_str_in_output
        )
        if hit is None:
            return False
        stop, cut = hit
        if cut != -1:
            self.text = self.text[:cut]
        self.finish_reason = "stop"
        self.stop_reason = stop
        return True

    def _finish_from_engine(self, delta: Any) -> None:
        params = self.req.params
        self.finish_reason = delta.finish_reason
        stop_token = delta.stop_token
        if delta.finish_reason != "stop" or stop_token is None:
            return
        # EOS or a stop token id: its text is dropped unless include_stop_str_in_output.
        if self.token_ids and self.token_ids[-1] == stop_token and self.decode is not None:
            last = self.last_token_text
            if not params.include_stop_str_in_output and last and self.text.endswith(last):
                self.text = self.text[: -len(last)]
        if stop_token in params.stop_token_ids:
            self.stop_reason = stop_token

    def to_output(self) -> CompletionOutput:
        # As vLLM 0.6 (beam search and best_of included): the cumulative logprob is reported
        # only when logprobs were asked for; it still ranks best_of and beams internally.
        wanted = self.req.params.logprobs is not None
        return CompletionOutput(
            index=self.index,
            text=self.text,
            token_ids=list(self.token_ids),
            cumulative_logprob=self.cumulative_logprob if wanted else None,
            logprobs=self.logprobs,
            finish_reason=self.finish_reason,
            stop_reason=self.stop_reason,
        )


@dataclass
class RequestState:
    """What the LLM tracks for one request while the engine runs it."""

    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    params: SamplingParams
    tokenizer: Any
    arrival_time: float = field(default_factory=time.time)
    seqs: dict[int, SequenceState] = field(default_factory=dict)
    prompt_logprobs: list[dict[int, Logprob] | None] | None = None
    num_cached_tokens: int = 0
    first_token_time: float | None = None
    finished_time: float | None = None
    finished: bool = False
    # A prompt adapter's virtual tokens: the engine's prompt begins with this many placeholders.
    virtual_tokens: int = 0
    lora_request: Any = None

    def engine_prompt_ids(self) -> list[int]:
        return [0] * self.virtual_tokens + self.prompt_token_ids

    def apply(self, delta: Any) -> list[int]:
        """Applies a RequestDelta; returns the indices of sequences a stop string just ended."""
        now = time.time()
        stopped: list[int] = []
        for seq_delta in delta.seqs:
            if self.first_token_time is None and seq_delta.new_token_ids:
                self.first_token_time = now
            seq = self.seqs.get(seq_delta.index)
            if seq is None:
                seq = self.seqs[seq_delta.index] = SequenceState(seq_delta.index, self)
            if seq.apply(seq_delta):
                stopped.append(seq_delta.index)
        cached = int(delta.num_cached_tokens) - self.virtual_tokens
        self.num_cached_tokens = max(self.num_cached_tokens, cached)
        if delta.prompt_logprobs and self.params.prompt_logprobs is not None:
            # Rows predict prompt tokens 1, 2, ...: the first virtual_tokens of them are the
            # virtual tokens and the user's first token, which gets None as without an adapter.
            self.prompt_logprobs = self._prompt_logprobs(
                delta.prompt_logprobs[self.virtual_tokens :]
            )
        if delta.finished:
            self.finish(now)
        return stopped

    def finish(self, now: float | None = None) -> None:
        self.finished = True
        self.finished_time = now if now is not None else time.time()

    def peek_texts(self, state: DecodeState, top: list[tuple[int, float]]) -> dict[int, str | None]:
        """The text each candidate token would add after `state`."""
        p = self.params
        return {
            tid: peek_next(
                self.tokenizer, state, tid, p.skip_special_tokens, p.spaces_between_special_tokens
            )
            for tid, _ in top
        }

    def logprob_entry(
        self, tok: _Token, decoded: str | None, alternatives: dict[int, str | None]
    ) -> dict[int, Logprob]:
        """{sampled token: Logprob, top-k tokens: Logprob}, as vLLM returns them."""
        rank = tok.rank
        if rank is None:
            rank = next((r for r, (t, _) in enumerate(tok.top, 1) if t == tok.token_id), None)
        logprob = tok.logprob if tok.logprob is not None else 0.0
        entry = {tok.token_id: Logprob(logprob, rank, decoded)}
        for r, (tid, lp) in enumerate(tok.top[: self.params.logprobs], start=1):
            if tid not in entry:
                entry[tid] = Logprob(float(lp), r, alternatives.get(tid))
        return entry

    def _prompt_logprobs(
        self, rows: list[list[tuple[int, float]]]
    ) -> list[dict[int, Logprob] | None]:
        """vLLM's shape: None for the first prompt token, then per position the actual token and
        the top-k, each with its text decoded in the context of the prompt before it."""
        k = self.params.prompt_logprobs or 0
        out: list[dict[int, Logprob] | None] = [None]
        skip = self.params.skip_special_tokens
        decode = self.tokenizer is not None and self.params.detokenize
        state = init_state(self.tokenizer, self.prompt_token_ids[:1], skip) if decode else None
        for row in rows:
            actual_id, actual_lp = row[0]
            top = list(row[1 : k + 1])
            alternatives = self.peek_texts(state, top) if state is not None else {}
            text = (
                decode_next(self.tokenizer, state, actual_id, skip) if state is not None else None
            )
            rank = next((r for r, (tid, _) in enumerate(top, start=1) if tid == actual_id), None)
            entry = {actual_id: Logprob(float(actual_lp), rank, text)}
            for r, (tid, lp) in enumerate(top, start=1):
                if tid not in entry:
                    entry[tid] = Logprob(float(lp), r, alternatives.get(tid))
            out.append(entry)
        return out

    def to_output(self) -> RequestOutput:
        p = self.params
        if p.best_of is not None and p.best_of > p.n and not p.use_beam_search:
            # vLLM 0.6: the n best by cumulative logprob, keeping their positions as indices.
            ranked = sorted(self.seqs.values(), key=lambda s: -s.cumulative_logprob)
            seqs = [s.to_output() for s in ranked[: p.n]]
        else:
            seqs = [self.seqs[i].to_output() for i in sorted(self.seqs) if i < p.n]
        now = time.time()
        metrics = RequestMetrics(
            arrival_time=self.arrival_time,
            last_token_time=self.finished_time or now,
            first_scheduled_time=None,
            first_token_time=self.first_token_time,
            time_in_queue=None,
            finished_time=self.finished_time,
        )
        return RequestOutput(
            request_id=self.request_id,
            prompt=self.prompt,
            prompt_token_ids=self.prompt_token_ids,
            prompt_logprobs=self.prompt_logprobs,
            outputs=seqs,
            finished=self.finished,
            metrics=metrics,
            lora_request=self.lora_request,
            num_cached_tokens=self.num_cached_tokens,
        )
