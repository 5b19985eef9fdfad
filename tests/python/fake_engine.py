"""A small stand-in for taco_llm._C with the same interface (EngineOptions, SamplingOptions,
Engine, RequestDelta, SeqDelta), so the Python layer's logic is tested without a model.

Each sequence emits one scripted token per step: `script(prompt_ids, index)` returns the tokens
it will produce (repeating the last one if it runs out). EOS, stop ids, min_tokens, max_tokens,
abort and finish_sequence behave as the real engine's do. At most `max_num_seqs` requests run at
once; the rest wait."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace


class EngineOptions:
    def __init__(self) -> None:
        self.model = ""
        self.dtype = "auto"
        self.device = "auto"
        self.seed = 0
        self.block_size = 16
        self.max_num_seqs = 256
        self.max_num_batched_tokens = 0
        self.max_model_len = 0
        self.enable_prefix_caching = False
        self.enable_chunked_prefill = False
        self.swap_space_gib = 4.0
        self.preemption_mode = "recompute"
        self.num_gpu_blocks_override = 0
        self.cpu_kvcache_space_gib = 0.0
        self.gpu_memory_utilization = 0.9
        self.enforce_eager = False
        self.max_seq_len_to_capture = 8192
        self.num_threads = 0
        self.logprobs_mode = "processed_logprobs"


class SamplingOptions:
    def __init__(self) -> None:
        self.n = 1
        self.best_of = 1
        self.stream_best_of = False
        self.repetition_penalty = 1.0
        self.presence_penalty = 0.0
        self.frequency_penalty = 0.0
        self.temperature = 1.0
        self.top_p = 1.0
        self.top_k = -1
        self.min_p = 0.0
        self.seed = None
        self.allowed_token_ids = []
        self.logit_bias = []
        self.bad_words_token_ids = []
        self.logits_hook_key = -1
        self.max_tokens = 16
        self.min_tokens = 0
        self.ignore_eos = False
        self.stop_token_ids = []
        self.logprobs = -1
        self.prompt_logprobs = -1
        self.use_beam_search = False
        self.length_penalty = 1.0
        self.early_stopping = 0


@dataclass
class SeqDelta:
    index: int
    new_token_ids: list[int]
    new_logprobs: list[float]
    new_top: list[list[tuple[int, float]]]
    cumulative_logprob: float
    finish_reason: str | None = None
    stop_token: int | None = None
    replace: bool = False


@dataclass
class RequestDelta:
    request_id: str
    seqs: list[SeqDelta]
    finished: bool = False
    num_cached_tokens: int = 0
    prompt_logprobs: list[list[tuple[int, float]]] = field(default_factory=list)
    first_token_time: float = 0.0


@dataclass
class _Seq:
    index: int
    planned: list[int]
    output: list[int] = field(default_factory=list)
    finish: str | None = None
    stop_token: int | None = None
    reported: bool = False
    cumulative: float = 0.0


@dataclass
class _Request:
    rid: str
    prompt: list[int]
    opts: SamplingOptions
    seqs: list[_Seq]
    started: bool = False


def default_script(prompt: list[int], index: int) -> list[int]:
    """Token ids 100 + (last prompt token + step + 7 * index) % 1000: never EOS, distinct per n."""
    return [100 + (prompt[-1] + step + 7 * index) % 1000 for step in range(64)]


class Engine:
    def __init__(
        self,
        options: EngineOptions,
        vocab_size: int = 49152,
        max_model_len: int = 8192,
        eos_token_ids: tuple[int, ...] = (2,),
        script: Callable[[list[int], int], list[int]] = default_script,
        step_delay_s: float = 0.0,
    ) -> None:
        self.options = options
        self.model_info = {
            "vocab_size": vocab_size,
            "max_model_len": options.max_model_len or max_model_len,
            "eos_token_ids": list(eos_token_ids),
            "dtype": "float32",
            "device": "cpu",
            "architecture": "FakeForCausalLM",
            "num_device_blocks": 1000,
            "num_cpu_blocks": 0,
        }
        self.script = script
        self.step_delay_s = step_delay_s
        self.requests: dict[str, _Request] = {}
        self.added: list[str] = []
        self.finish_calls: list[tuple[str, int]] = []
        self.num_steps = 0
        self.num_generated_tokens = 0
        self.num_prompt_tokens_computed = 0
        # Set by tests: values metrics() reports in place of its own (e.g. num_preemptions).
        self.metric_overrides: dict[str, int] = {}
        self.interrupt_at_step: int | None = None
        self._in_step = threading.Lock()

    def _check_idle(self, what: str) -> None:
        if self._in_step.locked():
            raise AssertionError(f"{what} called while step() runs in another thread")

    def add_request(self, request_id: str, prompt: list[int], opts: SamplingOptions) -> None:
        self._check_idle("add_request")
        vocab = self.model_info["vocab_size"]
        if not prompt:
            raise ValueError("prompt is empty")
        if any(not 0 <= t < vocab for t in prompt):
            raise ValueError("token id out of range")
        if request_id in self.requests:
            raise ValueError(f"duplicate request id {request_id}")
        count = opts.best_of
        seqs = [_Seq(i, self.script(list(prompt), i)) for i in range(count)]
        self.requests[request_id] = _Request(request_id, list(prompt), opts, seqs)
        self.added.append(request_id)

    def abort(self, request_id: str) -> bool:
        self._check_idle("abort")
        return self.requests.pop(request_id, None) is not None

    def finish_sequence(self, request_id: str, index: int) -> None:
        self._check_idle("finish_sequence")
        self.finish_calls.append((request_id, index))
        req = self.requests.get(request_id)
        if req is None:
            raise ValueError(f"unknown request {request_id}")
        for s in req.seqs:
            if s.index == index and s.finish is None:
                s.finish = "stop"

    def has_unfinished(self) -> bool:
        return bool(self.requests)

    def num_unfinished(self) -> int:
        return len(self.requests)

    def metrics(self) -> dict:
        """The real engine's keys. What the fake does not model (preemption, prefix caching,
        blocks) reads 0 unless a test sets it in metric_overrides."""
        running = sum(r.started for r in self.requests.values())
        out = {
            "num_preemptions": 0,
            "prefix_cache_queries": 0,
            "prefix_cache_hits": 0,
            "num_swapped_out": 0,
            "num_running": running,
            "num_waiting": len(self.requests) - running,
            "num_swapped": 0,
            "kv_blocks_used": 0,
            "kv_blocks_total": self.model_info["num_device_blocks"],
            "cpu_blocks_used": 0,
            "num_steps": self.num_steps,
            "num_generated_tokens": self.num_generated_tokens,
            "num_prompt_tokens_computed": self.num_prompt_tokens_computed,
        }
        out.update(self.metric_overrides)
        return out

    def step(self) -> list[RequestDelta]:
        with self._in_step:
            self.num_steps += 1
            if self.interrupt_at_step is not None and self.num_steps >= self.interrupt_at_step:
                self.interrupt_at_step = None
                raise KeyboardInterrupt
            if self.step_delay_s:
                time.sleep(self.step_delay_s)
            running = list(self.requests.values())[: self.options.max_num_seqs]
            deltas = [self._step_request(r) for r in running]
            for d in deltas:
                if d.finished:
                    del self.requests[d.request_id]
            return deltas

    def _step_request(self, req: _Request) -> RequestDelta:
        delta = RequestDelta(req.rid, [])
        if not req.started:
            req.started = True
            self.num_prompt_tokens_computed += len(req.prompt)
            if req.opts.prompt_logprobs >= 0:
                delta.prompt_logprobs = [
                    _top(tok, req.opts.prompt_logprobs, first=tok) for tok in req.prompt[1:]
                ]
        for s in req.seqs:
            if s.reported:
                continue
            if s.finish is None:
                self._emit_token(req, s, delta)
            else:
                delta.seqs.append(SeqDelta(s.index, [], [], [], s.cumulative, s.finish))
            if s.finish is not None:
                delta.seqs[-1].finish_reason = s.finish
                delta.seqs[-1].stop_token = s.stop_token
                s.reported = True
        delta.finished = all(s.reported for s in req.seqs)
        if delta.finished and req.opts.best_of > req.opts.n and not req.opts.stream_best_of:
            delta.seqs = self._best(req)
        return delta

    def _emit_token(self, req: _Request, s: _Seq, delta: RequestDelta) -> None:
        opts = req.opts
        step = len(s.output)
        tok = s.planned[min(step, len(s.planned) - 1)]
        s.output.append(tok)
        self.num_generated_tokens += 1
        lp = -0.5 - 0.1 * s.index
        s.cumulative += lp
        top = [_top(tok, opts.logprobs)] if opts.logprobs >= 0 else []
        delta.seqs.append(SeqDelta(s.index, [tok], [lp], top, s.cumulative))
        may_stop = len(s.output) >= opts.min_tokens
        eos = tok in self.model_info["eos_token_ids"] and not opts.ignore_eos
        if may_stop and (eos or tok in opts.stop_token_ids):
            s.finish, s.stop_token = "stop", tok
        elif len(s.output) >= opts.max_tokens:
            s.finish = "length"

    def _best(self, req: _Request) -> list[SeqDelta]:
        """best_of > n: the n sequences with the highest cumulative logprob, re-indexed."""
        ranked = sorted(req.seqs, key=lambda s: -s.cumulative)[: req.opts.n]
        return [
            SeqDelta(
                i,
                list(s.output),
                [-0.5] * len(s.output),
                [],
                s.cumulative,
                s.finish,
                s.stop_token,
                replace=True,
            )
            for i, s in enumerate(ranked)
        ]


def _top(tok: int, k: int, first: int | None = None) -> list[tuple[int, float]]:
    """Top-k candidates (descending): tok itself then its neighbours; `first` is prepended (the
    prompt-logprobs form: actual token first, then the top-k)."""
    rows = [(tok + j, -0.5 - j) for j in range(k)]
    return ([(first, -1.0)] if first is not None else []) + rows


def fake_module(**engine_kwargs) -> SimpleNamespace:
    """A stand-in for the taco_llm._C module; `.last` is the most recent Engine made."""
    mod = SimpleNamespace(EngineOptions=EngineOptions, SamplingOptions=SamplingOptions)

    def make(options: EngineOptions, logits_hook=None) -> Engine:
        mod.last = Engine(options, **engine_kwargs)
        mod.last.logits_hook = logits_hook
        return mod.last

    mod.Engine = make
    return mod
