"""The cost of LoRA: the public workload (bench/throughput.py's) with 4 LoRA adapters spread
over the requests round-robin, against the same workload on the base model, through taco_llm
and (with --vllm-python) vLLM, each run in its own process, one after another.

    python bench/lora.py --vllm-python /path/to/vllm-venv/bin/python

The adapters are made here with PEFT (rank --rank on all seven projections, random non-zero
weights) under --adapter-dir, once. Outputs ignore EOS, so both runs of an engine produce the
same tokens count in the same batch shapes: the ratio of their output tok/s is what the
adapters cost per token.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass

from peers import peer_bench_args, run_engines
from throughput import Workload as Public

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class Workload(Public):
    num_adapters: int = 4
    rank: int = 16
    adapter_dir: str = "/tmp/taco-bench-loras"
    with_adapters: bool = True

    def adapters(self) -> list[str]:
        return [
            os.path.join(self.adapter_dir, f"r{self.rank}-{i}") for i in range(self.num_adapters)
        ]


def make_adapters(w: Workload, model: str) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    for i, path in enumerate(w.adapters()):
        if os.path.exists(os.path.join(path, "adapter_model.safetensors")):
            continue
        base = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
        cfg = LoraConfig(
            r=w.rank, lora_alpha=2 * w.rank, target_modules=TARGETS, task_type="CAUSAL_LM"
        )
        peft_model = get_peft_model(base, cfg)
        gen = torch.Generator().manual_seed(i)
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                if "lora_" in name:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
        peft_model.save_pretrained(path, safe_serialization=True)


def _run(llm, sp_cls, tp_cls, lora_cls, w: Workload) -> dict:
    prompts = [tp_cls(prompt_token_ids=p) for p in w.prompts()]
    params = [
        sp_cls(temperature=w.temperature, top_p=w.top_p, max_tokens=m, ignore_eos=True)
        for m in w.max_tokens()
    ]
    loras = None
    if w.with_adapters:
        reqs = [lora_cls(f"adapter-{i}", i + 1, p) for i, p in enumerate(w.adapters())]
        loras = [reqs[i % len(reqs)] for i in range(len(prompts))]
    warm = loras[: len(reqs)] if loras else None
    llm.generate(
        prompts[: len(warm or [0, 0])],
        params[: len(warm or [0, 0])],
        lora_request=warm,
        use_tqdm=False,
    )  # warm-up (reads every adapter)
    start = time.perf_counter()
    outs = llm.generate(prompts, params, lora_request=loras, use_tqdm=False)
    elapsed = time.perf_counter() - start
    tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    return {"elapsed_s": elapsed, "output_tok_s": tokens / elapsed, "tokens": tokens}


def _engine_kw(w: Workload) -> dict:
    if not w.with_adapters:
        return {}
    return {"enable_lora": True, "max_loras": w.num_adapters, "max_lora_rank": w.rank}


def run_taco(w: Workload, model: str) -> dict:
    from taco_llm import LLM, LoRARequest, SamplingParams, TokensPrompt

    llm = LLM(model=model, dtype=w.dtype, device=w.device, **_engine_kw(w))
    return _run(llm, SamplingParams, TokensPrompt, LoRARequest, w)


def run_vllm(w: Workload, model: str) -> dict:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt
    from vllm.lora.request import LoRARequest

    llm = LLM(model=model, dtype=w.dtype, gpu_memory_utilization=0.5, **_engine_kw(w))
    return _run(llm, SamplingParams, TokensPrompt, LoRARequest, w)


RUNNERS = {"taco": run_taco, "vllm": run_vllm}


def main() -> None:
    parsed = peer_bench_args(__doc__, Workload, RUNNERS)
    if parsed is None:
        return
    args, w = parsed
    make_adapters(w, args.model)
    print(f"workload: {json.dumps(asdict(w))}\nmodel: {args.model}")
    script = os.path.abspath(__file__)
    results = {}
    for with_adapters in (False, True):
        run = json.dumps({**asdict(w), "with_adapters": with_adapters})
        got = run_engines(
            args.engines,
            args.vllm_python,
            lambda e, run=run: [script, "--worker", e, "--workload", run, "--model", args.model],
        )
        for engine, r in got.items():
            results[(engine, with_adapters)] = r
    print(f"\n{'engine':7} {'adapters':>8} {'out tok/s':>10} {'elapsed s':>10}")
    for (engine, adapted), r in results.items():
        label = str(w.num_adapters) if adapted else "0"
        print(f"{engine:7} {label:>8} {r['output_tok_s']:10.1f} {r['elapsed_s']:10.2f}")
    for engine in args.engines.split(","):
        if (engine, True) in results and (engine, False) in results:
            ratio = (
                results[(engine, True)]["output_tok_s"] / results[(engine, False)]["output_tok_s"]
            )
            print(f"{engine} with {w.num_adapters} adapters / without: {ratio:.3f}")
    if ("taco", True) in results and ("vllm", True) in results:
        ratio = results[("taco", True)]["output_tok_s"] / results[("vllm", True)]["output_tok_s"]
        print(f"taco / vllm output tok/s with adapters: {ratio:.2f}x")
    expected = {(e, a) for e in args.engines.split(",") for a in (False, True)}
    if not args.vllm_python:
        expected = {k for k in expected if k[0] != "vllm"}
    if expected - set(results):
        sys.exit(1)


if __name__ == "__main__":
    main()
