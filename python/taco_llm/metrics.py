"""LLM.get_metrics(): the engine's state and counters as a list of metric objects, the shape
current vLLM returns (`vllm.v1.metrics.reader`): `Counter`, `Gauge`, `Vector` and `Histogram`,
each with a name and labels.

Names follow vLLM's where the quantity is the same (`vllm:num_requests_running`,
`vllm:num_preemptions`, `vllm:prefix_cache_hits`, ...): a counter carries the name it is
registered under, without the `_total` that the Prometheus text format appends. Quantities
vLLM does not report (swapping, engine steps, block counts) are named `taco:...`. Every metric
has vLLM's labels, `model_name` and `engine`. docs/metrics.md lists them all."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Metric:
    """A metric: its name and its labels (key -> value). Metrics of one name may repeat with
    different labels, as `vllm:request_success` does per finished_reason."""

    name: str
    labels: dict[str, str]


@dataclass
class Counter(Metric):
    """A count that only goes up over the life of the LLM."""

    value: int


@dataclass
class Vector(Metric):
    """A list of counters indexed by position (vLLM's form for per-position counts)."""

    values: list[int]


@dataclass
class Gauge(Metric):
    """A value that goes up and down: the state at the time of the call."""

    value: float


@dataclass
class Histogram(Metric):
    """Observations counted in buckets keyed by their upper bound (as a string); the "+Inf"
    bucket holds every observation, so it equals count. sum adds the observed values."""

    count: int
    sum: float
    buckets: dict[str, int]


# vLLM's finished_reason label values for vllm:request_success.
FINISH_REASONS = ("stop", "length", "abort")


@dataclass
class FrontendStats:
    """What the Python layer counts, beside the engine's own counters: prompt tokens (vLLM
    counts a request's whole prompt, cached part included, once its first token is out) and
    finished sequences by finish reason."""

    prompt_tokens: int = 0
    finished: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FINISH_REASONS, 0))

    def record(self, states: Iterable[Any], outputs: Iterable[Any] | None) -> None:
        """Counts one call's requests (output_processor.RequestState) and, when the call
        returned, its RequestOutputs. outputs=None: the call raised, and its unfinished
        requests were aborted."""
        states = list(states)
        for state in states:
            if state.first_token_time is not None:
                self.prompt_tokens += len(state.prompt_token_ids)
        if outputs is None:
            outputs = [s.to_output() for s in states if s.finished]
            self.finished["abort"] += sum(s.params.n for s in states if not s.finished)
        for request in outputs:
            for seq in request.outputs:
                reason = seq.finish_reason or "abort"
                self.finished[reason] = self.finished.get(reason, 0) + 1


def _int(engine: Mapping[str, Any], key: str) -> int | None:
    value = engine.get(key)
    return None if value is None else int(value)


def build_metrics(
    engine: Mapping[str, Any], frontend: FrontendStats, model_name: str
) -> list[Metric]:
    """The metric list from the engine's counters (`_C.Engine.metrics()`) and the Python
    layer's. An engine counter that is absent (an older build) leaves its metric out."""
    labels = {"model_name": model_name, "engine": "0"}
    out: list[Metric] = []

    def gauge(name: str, value: float | None) -> None:
        if value is not None:
            out.append(Gauge(name=name, labels=dict(labels), value=float(value)))

    def counter(name: str, value: int | None, **extra: str) -> None:
        if value is not None:
            out.append(Counter(name=name, labels={**labels, **extra}, value=int(value)))

    used, total = _int(engine, "kv_blocks_used"), _int(engine, "kv_blocks_total")
    usage = None if used is None or total is None else (used / total if total > 0 else 0.0)

    gauge("vllm:num_requests_running", _int(engine, "num_running"))
    gauge("vllm:num_requests_waiting", _int(engine, "num_waiting"))
    gauge("vllm:kv_cache_usage_perc", usage)
    counter("vllm:prefix_cache_queries", _int(engine, "prefix_cache_queries"))
    counter("vllm:prefix_cache_hits", _int(engine, "prefix_cache_hits"))
    counter("vllm:num_preemptions", _int(engine, "num_preemptions"))
    counter("vllm:prompt_tokens", frontend.prompt_tokens)
    counter("vllm:generation_tokens", _int(engine, "num_generated_tokens"))
    for reason, count in frontend.finished.items():
        counter("vllm:request_success", count, finished_reason=reason)

    # Speculative decoding: drafts verified, tokens drafted, accepted and emitted (the accepted
    # ones plus the one each verification samples itself), as vLLM names them.
    drafts = _int(engine, "spec_decode_num_drafts")
    drafted = _int(engine, "spec_decode_num_draft_tokens")
    accepted = _int(engine, "spec_decode_num_accepted_tokens")
    counter("vllm:spec_decode_num_drafts", drafts)
    counter("vllm:spec_decode_num_draft_tokens", drafted)
    counter("vllm:spec_decode_num_accepted_tokens", accepted)
    counter("vllm:spec_decode_num_emitted_tokens", _int(engine, "spec_decode_num_emitted_tokens"))
    if drafts is not None and drafted is not None and accepted is not None:
        gauge("vllm:spec_decode_draft_acceptance_rate", accepted / drafted if drafted else 0.0)
        # Tokens per verification step: the accepted drafts and the sampled one.
        gauge("taco:spec_decode_mean_accepted_length", 1 + accepted / drafts if drafts else 0.0)

    gauge("taco:num_requests_swapped", _int(engine, "num_swapped"))
    counter("taco:num_swapped_out", _int(engine, "num_swapped_out"))
    gauge("taco:kv_blocks_used", used)
    gauge("taco:kv_blocks_total", total)
    gauge("taco:cpu_blocks_used", _int(engine, "cpu_blocks_used"))
    counter("taco:num_steps", _int(engine, "num_steps"))
    counter("taco:prompt_tokens_computed", _int(engine, "num_prompt_tokens_computed"))
    return out
