"""The cost of structured output: the same 64 requests with a JSON schema and without, through
taco_llm and (with --vllm-python) vLLM with xgrammar, each engine in its own process, one after
another.

    python bench/structured_output.py --vllm-python /path/to/vllm-venv/bin/python

Guided requests follow a schema whose documents are longer than max_tokens (an array of at least
--min-items objects), and unguided ones ignore EOS, so both runs produce exactly
num_prompts x max_tokens tokens in the same batch shapes: the ratio of their output tok/s is
the constraint's cost per token (grammar masks filled, applied and advanced every step), not a
difference in output lengths. Each run is one `generate` call after a warm-up that compiles the
schema once; every guided output is checked to be a prefix xgrammar's matcher accepts (the full
check of finished outputs is the test suite's).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass

from peers import peer_bench_args, run_engines

ITEM = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "city": {"enum": ["Paris", "London", "Berlin", "Madrid", "Rome"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3},
    },
    "required": ["name", "age", "city", "tags"],
}


@dataclass
class Workload:
    num_prompts: int = 64
    max_tokens: int = 128
    min_items: int = 40
    temperature: float = 0.0
    dtype: str = "bfloat16"

    def schema(self) -> dict:
        return {"type": "array", "items": ITEM, "minItems": self.min_items}

    def prompts(self) -> list[str]:
        return [
            f"Write a JSON list of {self.min_items} people (name, age, city, tags), set {i}:"
            for i in range(self.num_prompts)
        ]


def _run(llm, sp_cls, guided_kw, w: Workload) -> dict:
    prompts = w.prompts()

    def params(guided: bool):
        if guided:
            return sp_cls(temperature=w.temperature, max_tokens=w.max_tokens, **guided_kw)
        return sp_cls(temperature=w.temperature, max_tokens=w.max_tokens, ignore_eos=True)

    res = {}
    for name, guided in (("free", False), ("guided", True)):
        llm.generate(prompts[:2], params(guided), use_tqdm=False)  # warm-up (and compile)
        start = time.perf_counter()
        outs = llm.generate(prompts, params(guided), use_tqdm=False)
        elapsed = time.perf_counter() - start
        tokens = sum(len(o.outputs[0].token_ids) for o in outs)
        res[name] = {"elapsed_s": elapsed, "output_tok_s": tokens / elapsed, "tokens": tokens}
        if guided:
            res[name]["valid_prefixes"] = _valid_prefixes(llm, outs, w)
    return res


def _valid_prefixes(llm, outs, w: Workload) -> int:
    """How many outputs xgrammar's matcher accepts token by token from the schema's start."""
    import xgrammar as xgr

    tok = llm.get_tokenizer()
    info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=49152)
    grammar = xgr.GrammarCompiler(info).compile_json_schema(json.dumps(w.schema()))
    ok = 0
    for o in outs:
        m = xgr.GrammarMatcher(grammar)
        ok += all(m.accept_token(t) for t in o.outputs[0].token_ids)
    return ok


def run_taco(w: Workload, model: str) -> dict:
    from taco_llm import LLM, GuidedDecodingParams, SamplingParams

    llm = LLM(model=model, dtype=w.dtype)
    return _run(llm, SamplingParams, {"guided_decoding": GuidedDecodingParams(json=w.schema())}, w)


def run_vllm(w: Workload, model: str) -> dict:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")
    from vllm import LLM, SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    llm = LLM(model=model, dtype=w.dtype, gpu_memory_utilization=0.5)
    guided = {"structured_outputs": StructuredOutputsParams(json=w.schema())}
    return _run(llm, SamplingParams, guided, w)


RUNNERS = {"taco": run_taco, "vllm": run_vllm}


def main() -> None:
    parsed = peer_bench_args(__doc__, Workload, RUNNERS)
    if parsed is None:
        return
    args, w = parsed
    print(f"workload: {json.dumps(asdict(w))}\nmodel: {args.model}")
    script = os.path.abspath(__file__)
    results = run_engines(
        args.engines,
        args.vllm_python,
        lambda e: [
            script,
            "--worker",
            e,
            "--workload",
            json.dumps(asdict(w)),
            "--model",
            args.model,
        ],
    )
    print(f"\n{'engine':7} {'run':7} {'out tok/s':>10} {'elapsed s':>10} {'valid':>6}")
    for name, r in results.items():
        for run in ("free", "guided"):
            x = r[run]
            valid = f"{x['valid_prefixes']}/{w.num_prompts}" if "valid_prefixes" in x else "-"
            print(f"{name:7} {run:7} {x['output_tok_s']:10.1f} {x['elapsed_s']:10.2f} {valid:>6}")
    for name, r in results.items():
        ratio = r["guided"]["output_tok_s"] / r["free"]["output_tok_s"]
        print(f"{name} guided / unguided output tok/s: {ratio:.3f}")
    if "taco" in results and "vllm" in results:
        ratio = (
            results["taco"]["guided"]["output_tok_s"] / results["vllm"]["guided"]["output_tok_s"]
        )
        print(f"taco / vllm guided output tok/s: {ratio:.2f}x")
    if set(args.engines.split(",")) - ({"vllm"} if not args.vllm_python else set()) - set(results):
        sys.exit(1)


if __name__ == "__main__":
    main()
