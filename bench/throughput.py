"""Offline throughput: taco_llm against HF transformers and (when importable in a given venv)
vLLM, on the same workload, in one run.

    python bench/throughput.py                       # the public workload (defaults), all peers
    python bench/throughput.py --engines taco --num-prompts 8
    python bench/throughput.py --vllm-python /opt/vllm-venv/bin/python
    python bench/throughput.py --engines taco,hf --device cuda   # on a GPU machine
    python bench/throughput.py --engines taco,taco-gguf   # the default model's GGUF beside bf16

taco-gguf serves the GGUF file --gguf (default: the default model's), weights as stored and
activations in --dtype; the others serve the HF directory --model. taco-ngram and
taco-lookahead are taco with speculative decoding (speculative_model "[ngram]" /
"[lookahead]", 5 drafted tokens, n-grams of 1 to 4 tokens).

Each engine runs in its own subprocess (`--worker ENGINE`), so peers can live in other venvs
and one engine's threads or memory never skew another's numbers. The workload: random token-id
prompts (random.Random(seed), lengths uniform in [min_len, max_len], ids in [100, vocab - 1]),
max_tokens uniform in [min_out, max_out], ignore_eos, one `generate` call after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from dataclasses import asdict, dataclass

from peers import add_workload_args, print_ratios, run_engines, serve_worker


@dataclass
class Workload:
    num_prompts: int = 64
    min_len: int = 32
    max_len: int = 512
    min_out: int = 128
    max_out: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    dtype: str = "bfloat16"
    device: str = "cpu"  # cpu | cuda: every engine runs there
    seed: int = 0
    vocab: int = 49152

    def prompts(self) -> list[list[int]]:
        rng = random.Random(self.seed)
        lens = [rng.randint(self.min_len, self.max_len) for _ in range(self.num_prompts)]
        return [[rng.randint(100, self.vocab - 1) for _ in range(n)] for n in lens]

    def max_tokens(self) -> list[int]:
        rng = random.Random(self.seed + 1)
        return [rng.randint(self.min_out, self.max_out) for _ in range(self.num_prompts)]


def run_taco(w: Workload, model: str, speculative_model: str | None = None) -> dict:
    from taco_llm import LLM, SamplingParams, TokensPrompt

    spec = {}
    if speculative_model is not None:
        spec = {
            "speculative_model": speculative_model,
            "num_speculative_tokens": 5,
            "ngram_prompt_lookup_max": 4,
        }
    llm = LLM(model=model, dtype=w.dtype, device=w.device, **spec)
    return _run_llm_api(llm, SamplingParams, TokensPrompt, w)


def run_vllm(w: Workload, model: str) -> dict:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    llm = LLM(model=model, dtype=w.dtype, gpu_memory_utilization=0.5)
    return _run_llm_api(llm, SamplingParams, TokensPrompt, w)


def _run_llm_api(llm, sampling_params_cls, tokens_prompt_cls, w: Workload) -> dict:
    prompts = [tokens_prompt_cls(prompt_token_ids=p) for p in w.prompts()]
    params = [
        sampling_params_cls(temperature=w.temperature, top_p=w.top_p, max_tokens=m, ignore_eos=True)
        for m in w.max_tokens()
    ]
    llm.generate(prompts[:2], params[:2], use_tqdm=False)  # warm-up
    start = time.perf_counter()
    outs = llm.generate(prompts, params, use_tqdm=False)
    elapsed = time.perf_counter() - start
    ttfts = []
    for o in outs:
        m = getattr(o, "metrics", None)
        first = getattr(m, "first_token_time", None) if m else None
        arrival = getattr(m, "arrival_time", None) if m else None
        if first and arrival:
            ttfts.append(first - arrival)
    out_tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    return _summary(w, elapsed, out_tokens, ttfts)


def run_hf(w: Workload, model: str) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    dtype = getattr(torch, w.dtype)
    m = AutoModelForCausalLM.from_pretrained(model, dtype=dtype).eval().to(w.device)
    prompts, max_tokens = w.prompts(), w.max_tokens()
    pad = 0
    longest = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (longest - len(p)) + p for p in prompts], device=w.device)
    mask = torch.tensor([[0] * (longest - len(p)) + [1] * len(p) for p in prompts], device=w.device)
    new = max(max_tokens)  # a static batch runs to its longest request
    with torch.inference_mode():
        m.generate(input_ids=ids[:2], attention_mask=mask[:2], max_new_tokens=4, do_sample=False)
        start = time.perf_counter()
        m.generate(
            input_ids=ids,
            attention_mask=mask,
            min_new_tokens=new,
            max_new_tokens=new,
            do_sample=False,
            pad_token_id=pad,
        ).cpu()  # waits for the device
        elapsed = time.perf_counter() - start
    return _summary(w, elapsed, sum(max_tokens), [])


def _summary(w: Workload, elapsed: float, out_tokens: int, ttfts: list[float]) -> dict:
    in_tokens = sum(len(p) for p in w.prompts())
    res = {
        "elapsed_s": elapsed,
        "output_tok_s": out_tokens / elapsed,
        "total_tok_s": (in_tokens + out_tokens) / elapsed,
        "requests_s": w.num_prompts / elapsed,
    }
    if ttfts:
        ttfts.sort()
        res["ttft_median_s"] = ttfts[len(ttfts) // 2]
        # Per-token latency of a request = (its wall time - TTFT) / (tokens - 1); with one
        # generate call that is bounded by the batch's step time.
        res["tpot_s"] = (elapsed - res["ttft_median_s"]) / max(1, max(w.max_tokens()) - 1)
    return res


RUNNERS = {
    "taco": run_taco,
    "taco-gguf": lambda w, model: run_taco(w, model),
    "taco-ngram": lambda w, model: run_taco(w, model, "[ngram]"),
    "taco-lookahead": lambda w, model: run_taco(w, model, "[lookahead]"),
    "hf": run_hf,
    "vllm": run_vllm,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default=None, help="HF model dir (default: SmolLM2-135M-Instruct)")
    ap.add_argument("--gguf", default=None, help="GGUF file of taco-gguf (default: the default's)")
    ap.add_argument("--engines", default="taco,hf,vllm")
    ap.add_argument(
        "--vllm-python",
        default=os.environ.get("VLLM_PYTHON", ""),
        help="python of a venv with vllm-cpu (skipped when empty or not importable)",
    )
    add_workload_args(ap, Workload, RUNNERS)
    args = ap.parse_args()

    if serve_worker(args, Workload, RUNNERS):
        return
    if args.gguf is None and "taco-gguf" in args.engines.split(","):
        from taco_llm.default_model import default_gguf

        args.gguf = default_gguf()
    w = Workload(**{f: getattr(args, f) for f in asdict(Workload())})
    print(f"workload: {json.dumps(asdict(w))}\nmodel: {args.model}")
    script = os.path.abspath(__file__)
    workload = json.dumps(asdict(w))
    results = run_engines(
        args.engines,
        args.vllm_python,
        lambda e: [
            *(script, "--worker", e, "--workload", workload),
            *("--model", args.gguf if e == "taco-gguf" else args.model),
        ],
    )
    _print_table(results)
    skipped = set() if args.vllm_python else {"vllm"}
    if set(args.engines.split(",")) - skipped - set(results):
        sys.exit(1)  # an engine failed (its error is printed above)


def _print_table(results: dict) -> None:
    print(f"\n{'engine':14} {'out tok/s':>10} {'total tok/s':>12} {'elapsed s':>10} {'ttft s':>8}")
    for name, r in results.items():
        ttft = f"{r['ttft_median_s']:.2f}" if "ttft_median_s" in r else "-"
        print(
            f"{name:14} {r['output_tok_s']:10.1f} {r['total_tok_s']:12.1f} "
            f"{r['elapsed_s']:10.2f} {ttft:>8}"
        )
    print_ratios(results, "output_tok_s", "output tok/s", peers=("hf", "vllm"))
    for ours in ("taco-gguf", "taco-ngram", "taco-lookahead"):
        if ours in results and "taco" in results:
            ratio = results[ours]["output_tok_s"] / results["taco"]["output_tok_s"]
            print(f"{ours} / taco output tok/s: {ratio:.2f}x")


if __name__ == "__main__":
    main()
