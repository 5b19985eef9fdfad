"""Runs a batch of requests on the engine to completion.

With async output processing, the engine computes step N+1 in a worker thread (step() releases
the GIL) while this thread detokenizes step N. A stop string found in step N is reported to the
engine after step N+1 returns, so that sequence may get one extra token, which is dropped.

Any exception (KeyboardInterrupt included) waits for the running step, aborts this batch's
unfinished requests and propagates: the engine is left empty and the next call works."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from taco_llm.output_processor import RequestState
from taco_llm.outputs import RequestOutput
from taco_llm.request_builder import EngineRequest

_POSTFIX_INTERVAL_S = 0.2


class _Progress:
    """The "Processed prompts" bar with running input and output tokens/s, like vLLM's."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total,
                desc="Processed prompts",
                dynamic_ncols=True,
                postfix="est. speed input: 0.00 toks/s, output: 0.00 toks/s",
            )
        self.start = time.perf_counter()
        self.in_tokens = 0
        self.out_tokens = 0
        self.last_postfix = 0.0

    def add(self, in_tokens: int, out_tokens: int, finished: int) -> None:
        self.in_tokens += in_tokens
        self.out_tokens += out_tokens
        if self.bar is None:
            return
        now = time.perf_counter()
        if now - self.last_postfix >= _POSTFIX_INTERVAL_S or finished:
            elapsed = max(now - self.start, 1e-9)
            self.bar.set_postfix_str(
                f"est. speed input: {self.in_tokens / elapsed:.2f} toks/s, "
                f"output: {self.out_tokens / elapsed:.2f} toks/s",
                refresh=False,
            )
            self.last_postfix = now
        if finished:
            self.bar.update(finished)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _process(
    deltas: list[Any], states: dict[str, RequestState], progress: _Progress
) -> list[tuple[str, int]]:
    """Applies one step's deltas; returns (request id, index) of sequences a stop string ended.
    Deltas of requests not in this batch (aborted by an earlier call) are ignored."""
    stops: list[tuple[str, int]] = []
    in_tokens = out_tokens = finished = 0
    for delta in deltas:
        state = states.get(delta.request_id)
        if state is None or state.finished:
            continue
        started = state.first_token_time is not None
        stops.extend((delta.request_id, idx) for idx in state.apply(delta))
        out_tokens += sum(len(s.new_token_ids) for s in delta.seqs if not s.replace)
        if not started and state.first_token_time is not None:
            in_tokens += len(state.prompt_token_ids)
        finished += state.finished
    progress.add(in_tokens, out_tokens, finished)
    return stops


def _all_finished(states: dict[str, RequestState], engine: Any) -> bool:
    if all(s.finished for s in states.values()):
        return True
    if engine.has_unfinished():
        return False
    # The engine holds nothing more for us: close what it never reported as finished.
    for s in states.values():
        if not s.finished:
            s.finish()
    return True


def _drive_sync(engine: Any, states: dict[str, RequestState], progress: _Progress) -> None:
    while not _all_finished(states, engine):
        stops = _process(engine.step(), states, progress)
        for rid, idx in stops:
            engine.finish_sequence(rid, idx)


def _drive_async(engine: Any, states: dict[str, RequestState], progress: _Progress) -> None:
    if _all_finished(states, engine):
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="taco-step") as pool:
        deltas = engine.step()
        while True:
            future = pool.submit(engine.step) if engine.has_unfinished() else None
            # Leaving this block on an exception waits for the running step (pool shutdown).
            stops = _process(deltas, states, progress)
            deltas = future.result() if future is not None else []
            # A request the step just finished is gone from the engine: nothing to stop.
            done = {d.request_id for d in deltas if d.finished}
            for rid, idx in stops:
                if rid not in done:
                    engine.finish_sequence(rid, idx)
            if all(s.finished for s in states.values()):
                return
            # Unprocessed deltas may still finish requests: only an empty step can end the loop.
            if not deltas and _all_finished(states, engine):
                return


def run_requests(
    engine: Any, requests: list[EngineRequest], use_tqdm: bool, async_output: bool
) -> list[RequestOutput]:
    """Queues the requests, steps the engine until they finish, returns outputs in order."""
    states = {r.state.request_id: r.state for r in requests}
    added: list[str] = []
    progress = _Progress(len(requests), use_tqdm)
    try:
        for r in requests:
            engine.add_request(r.state.request_id, r.state.engine_prompt_ids(), r.options)
            added.append(r.state.request_id)
        if async_output:
            _drive_async(engine, states, progress)
        else:
            _drive_sync(engine, states, progress)
    except BaseException:
        for rid in added:
            if not states[rid].finished:
                engine.abort(rid)
        raise
    finally:
        progress.close()
    return [r.state.to_output() for r in requests]
