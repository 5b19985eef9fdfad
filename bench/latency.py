"""Single-stream latency: decode tok/s and prefill tok/s, printed beside the machine's bounds.

    python bench/latency.py [--model DIR] [--dtype bfloat16] [--prompt-len 32] [--out 128]
                            [--mem-gbs 27] [--gflops 400]

Bounds come from the model config: a decode step reads every weight once (bytes = matmul
parameters x dtype size, the tied lm_head included), so decode tok/s <= bandwidth / bytes; a
prompt token costs 2 x matmul parameters FLOPs plus attention, so prefill tok/s <= FLOP/s / that.
Pass the bandwidth and GEMM rate measured on the machine (defaults: PEERS.md's figures for the
2-core Zen 4 development machine).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPE_BYTES))
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--prefill-len", type=int, default=512)
    ap.add_argument("--out", type=int, default=128)
    ap.add_argument("--mem-gbs", type=float, default=27.0, help="memory bandwidth, GB/s")
    ap.add_argument("--gflops", type=float, default=400.0, help="GEMM rate, GFLOP/s")
    args = ap.parse_args()

    from taco_llm import LLM, SamplingParams, TokensPrompt

    if args.model is None:
        from taco_llm.default_model import default_model_dir

        args.model = default_model_dir()
    with open(os.path.join(args.model, "config.json")) as f:
        cfg = json.load(f)
    params = matmul_params(cfg)
    rng = random.Random(0)
    vocab = cfg["vocab_size"]

    llm = LLM(model=args.model, dtype=args.dtype)
    short = TokensPrompt(
        prompt_token_ids=[rng.randint(100, vocab - 1) for _ in range(args.prompt_len)]
    )
    long_ = TokensPrompt(
        prompt_token_ids=[rng.randint(100, vocab - 1) for _ in range(args.prefill_len)]
    )
    one = SamplingParams(temperature=0.0, max_tokens=1, ignore_eos=True)
    decode = SamplingParams(temperature=0.0, max_tokens=args.out, ignore_eos=True)

    llm.generate([short], decode, use_tqdm=False)  # warm-up
    t0 = time.perf_counter()
    llm.generate([short], one, use_tqdm=False)
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    llm.generate([short], decode, use_tqdm=False)
    t_all = time.perf_counter() - t0
    decode_tok_s = (args.out - 1) / max(1e-9, t_all - t_first)

    llm.generate([long_], one, use_tqdm=False)
    t0 = time.perf_counter()
    llm.generate([long_], one, use_tqdm=False)
    prefill_tok_s = args.prefill_len / (time.perf_counter() - t0)

    step_bytes = params * DTYPE_BYTES[args.dtype]
    decode_bound = args.mem_gbs * 1e9 / step_bytes
    flops_per_prompt_token = 2 * (params - vocab * cfg["hidden_size"])  # logits only at the end
    prefill_bound = args.gflops * 1e9 / flops_per_prompt_token
    print(
        f"model {args.model} dtype {args.dtype}: {params / 1e6:.1f} M matmul parameters, "
        f"{step_bytes / 1e6:.0f} MB read per decode step"
    )
    print(
        f"decode  {decode_tok_s:8.1f} tok/s   bound {decode_bound:8.1f} tok/s "
        f"({100 * decode_tok_s / decode_bound:.0f}% of {args.mem_gbs} GB/s)"
    )
    print(
        f"prefill {prefill_tok_s:8.1f} tok/s   bound {prefill_bound:8.1f} tok/s "
        f"({100 * prefill_tok_s / prefill_bound:.0f}% of {args.gflops} GFLOP/s)"
    )


if __name__ == "__main__":
    main()
