"""The real engine core without a model, for the Python API tests: taco_llm._C.testing builds the
C++ engine (scheduler, paged KV blocks, prefix cache, preemption, stops, n / best_of, deltas)
over the scripted executor of the C++ tests (tests/cpp/core/fake_executor.h).

Each sequence's next token is `script(prompt_ids, index)[len(output)]` (the last entry once the
script runs out). The executor gives a sampled token the logprob `sampled_logprob(token, index)`
at rank 1, its top list is the token then token + 1, token + 2, ... (logprobs + 2 entries, each
1.0 lower), and each prompt token after the first gets the logprob PROMPT_LOGPROB.

`module()` stands in for the taco_llm._C module: its EngineOptions and SamplingOptions are _C's,
and its Engine(options, logits_hook) is an `Engine` below, which delegates every call to the real
engine and only adds test instrumentation."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

import taco_llm.llm as llm_module
from taco_llm import _C, LLM

Script = Callable[[list[int], int], list[int]]

PROMPT_LOGPROB = -0.5
_MASK64 = (1 << 64) - 1


def default_script(prompt: list[int], index: int) -> list[int]:
    """Token ids 100 + (last prompt token + step + 7 * index) % 1000: never EOS, distinct per
    sequence index."""
    return [100 + (prompt[-1] + step + 7 * index) % 1000 for step in range(64)]


def _mix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def sampled_logprob(token: int, index: int) -> float:
    """The logprob the executor gives token `token` sampled by sequence `index`: in (-10, 0]."""
    return -(_mix64(token * 31 + index) % 1000) / 100


def cumulative_logprob(tokens: list[int], index: int) -> float:
    return sum(sampled_logprob(t, index) for t in tokens)


class _ScriptSlot:
    """Holds the engine's current script. The core calls it through this object, never through
    the Engine wrapper, so the core holds no reference back to the wrapper (no cycle)."""

    def __init__(self, script: Script) -> None:
        self.script = script

    def __call__(self, prompt: list[int], index: int) -> list[int]:
        return self.script(prompt, index)


class Engine:
    """The real engine (`core`) plus instrumentation: a replaceable `script`, `interrupt_at_step`
    (step() raises KeyboardInterrupt at that step call), `step_delay_s`, the ids given to
    add_request (`added`) and finish_sequence calls (`finish_calls`), `num_step_calls`,
    `peak_running` (the most requests running after any step), and a check that add_request,
    abort and finish_sequence never run while step() runs in another thread."""

    def __init__(
        self,
        options: Any,
        logits_hook: Any = None,
        *,
        script: Script = default_script,
        step_delay_s: float = 0.0,
        **core_kwargs: Any,
    ) -> None:
        self._slot = _ScriptSlot(script)
        self.core = _C.testing.create_engine(options, logits_hook, script=self._slot, **core_kwargs)
        self.step_delay_s = step_delay_s
        self.interrupt_at_step: int | None = None
        self.num_step_calls = 0
        self.peak_running = 0
        self.added: list[str] = []
        self.finish_calls: list[tuple[str, int]] = []
        self._in_step = threading.Lock()

    @property
    def script(self) -> Script:
        return self._slot.script

    @script.setter
    def script(self, fn: Script) -> None:
        self._slot.script = fn

    @property
    def model_info(self) -> dict:
        return self.core.model_info

    def _check_idle(self, what: str) -> None:
        if self._in_step.locked():
            raise AssertionError(f"{what} called while step() runs in another thread")

    def add_request(self, request_id: str, prompt_token_ids: list[int], options: Any) -> None:
        self._check_idle("add_request")
        self.core.add_request(request_id, prompt_token_ids, options)
        self.added.append(request_id)

    def abort(self, request_id: str) -> bool:
        self._check_idle("abort")
        return self.core.abort(request_id)

    def add_adapter(self, kind: str, adapter_id: int, name: str, path: str) -> dict:
        self._check_idle("add_adapter")
        return self.core.add_adapter(kind, adapter_id, name, path)

    def remove_adapter(self, kind: str, adapter_id: int) -> bool:
        self._check_idle("remove_adapter")
        return self.core.remove_adapter(kind, adapter_id)

    def list_adapters(self, kind: str) -> list:
        return self.core.list_adapters(kind)

    def finish_sequence(self, request_id: str, index: int) -> None:
        self._check_idle("finish_sequence")
        self.finish_calls.append((request_id, index))
        self.core.finish_sequence(request_id, index)

    def step(self) -> list:
        with self._in_step:
            self.num_step_calls += 1
            if self.interrupt_at_step is not None and self.num_step_calls >= self.interrupt_at_step:
                self.interrupt_at_step = None
                raise KeyboardInterrupt
            if self.step_delay_s:
                time.sleep(self.step_delay_s)
            deltas = self.core.step()
            self.peak_running = max(self.peak_running, self.core.metrics()["num_running"])
            return deltas

    def has_unfinished(self) -> bool:
        return self.core.has_unfinished()

    def num_unfinished(self) -> int:
        return self.core.num_unfinished()

    def metrics(self) -> dict:
        return self.core.metrics()


def module(**engine_kwargs: Any) -> SimpleNamespace:
    """A stand-in for the taco_llm._C module whose Engine is an `Engine` made with engine_kwargs
    (script, step_delay_s, and create_engine's vocab_size, max_model_len, eos_token_ids,
    num_device_blocks, num_cpu_blocks). `.last` is the most recent Engine made."""
    mod = SimpleNamespace(EngineOptions=_C.EngineOptions, SamplingOptions=_C.SamplingOptions)

    def make(options: Any, logits_hook: Any = None, guide_hook: Any = None) -> Engine:
        # The scripted executor samples nothing: a guided request is refused when added.
        mod.last = Engine(options, logits_hook, **engine_kwargs)
        return mod.last

    mod.Engine = make
    return mod


def make_llm(model_dir: str, engine_kwargs: dict | None = None, **llm_kwargs: Any) -> LLM:
    """An LLM (real tokenizer, real EngineArgs) whose engine is an `Engine` over the core."""
    mod = module(**(engine_kwargs or {}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(llm_module, "_load_engine_module", lambda: mod)
        return LLM(model=model_dir, **llm_kwargs)
