"""Tensor parallelism on one machine: decode and batch throughput at each tensor_parallel_size,
and the time each rank spends in collectives per engine step.

    python bench/tensor_parallel.py [--sizes 1,2] [--model DIR] [--dtype bfloat16]
                                    [--decode-tokens 64] [--batch 32] [--batch-tokens 32]

Without --model, a random-weight Llama shaped like SmolLM2-135M (30 layers, hidden 512, 8 heads
of 64 with 4 KV heads, MLP 1536, vocabulary 49152) is built once under the system's temp
directory: SmolLM2's own 9 heads split in 3 or 9 ranks only. Each size runs in its own process,
one after another, sizes above 1 twice: with the shared-memory collectives (the default on one
machine) and with gloo alone (disable_custom_all_reduce=True). TACO_TP_STATS=1 makes every rank
print its collectives' count and time when it stops, which are summed here per rank and divided
by the engine steps.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

_RUN = r"""
import json, sys, time
from taco_llm import LLM, SamplingParams, TokensPrompt
model, dtype, tp, decode_tokens, batch, batch_tokens, gloo = sys.argv[1:8]
tp, decode_tokens, batch, batch_tokens = map(int, (tp, decode_tokens, batch, batch_tokens))
llm = LLM(model=model, dtype=dtype, tensor_parallel_size=tp, skip_tokenizer_init=True, seed=0,
          disable_custom_all_reduce=gloo == "1")

def run(prompts, n):
    params = SamplingParams(temperature=0.0, max_tokens=n, ignore_eos=True)
    t = time.perf_counter()
    llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
    return time.perf_counter() - t

one = [[(7 * i) % 40000 + 5 for i in range(32)]]
run(one, 4)  # warm-up
t1 = run(one, 1)
tn = run(one, decode_tokens)
decode = (decode_tokens - 1) / (tn - t1)
prompts = [[(13 * i + j) % 40000 + 5 for i in range(32)] for j in range(batch)]
tb = run(prompts, batch_tokens)
steps = next(m.value for m in llm.get_metrics() if m.name == "taco:num_steps")
print(json.dumps({"decode_tok_s": decode, "batch_tok_s": batch * batch_tokens / tb,
                  "steps": steps}))
"""


def tiny_smol(root: Path) -> str:
    path = root / "taco_bench_smol_shaped_tp"
    if (path / "config.json").exists():
        return str(path)
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(
        "llama",
        architectures=["LlamaForCausalLM"],
        vocab_size=49152,
        hidden_size=512,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=8,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        eos_token_id=0,
        bos_token_id=1,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(path, safe_serialization=True)
    return str(path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1,2")
    ap.add_argument("--model", default=None)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--decode-tokens", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batch-tokens", type=int, default=32)
    args = ap.parse_args()
    model = args.model or tiny_smol(Path(tempfile.gettempdir()))
    rows = []
    variants = []
    for size in [int(s) for s in args.sizes.split(",")]:
        variants += [(size, False)] if size == 1 else [(size, False), (size, True)]
    for size, gloo in variants:
        env = dict(os.environ, TACO_TP_STATS="1")
        cmd = [
            sys.executable,
            "-c",
            _RUN,
            model,
            args.dtype,
            str(size),
            str(args.decode_tokens),
            str(args.batch),
            str(args.batch_tokens),
            "1" if gloo else "0",
        ]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"tensor_parallel_size={size} failed:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        comm = {}
        pattern = r"taco tp rank (\d+) \(\w+\): (\d+) collectives, ([\d.]+) MB, ([\d.]+) s"
        for m in re.finditer(pattern, done.stderr):
            calls, seconds = comm.get(int(m.group(1)), (0, 0.0))
            comm[int(m.group(1))] = (calls + int(m.group(2)), seconds + float(m.group(4)))
        steps = max(result["steps"], 1)
        rank0 = comm.get(0, (0, 0.0))
        rows.append(
            (
                f"{size}{' gloo' if gloo else ''}",
                result["decode_tok_s"],
                result["batch_tok_s"],
                rank0[0] / steps,
                1e3 * rank0[1] / steps,
            )
        )
    print(
        f"{'tp':>7} {'decode tok/s':>13} {'batch tok/s':>12} {'colls/step':>11} "
        f"{'comm ms/step (rank 0)':>22}"
    )
    for size, decode, batch, calls, ms in rows:
        print(f"{size:>7} {decode:>13.1f} {batch:>12.1f} {calls:>11.1f} {ms:>22.2f}")


if __name__ == "__main__":
    main()
