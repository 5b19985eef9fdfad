"""An AWQ, GPTQ or FP8 checkpoint of an HF model, made by the test suite's round-to-nearest
quantizers (they write exactly AutoAWQ's GEMM, AutoGPTQ's v1, and vLLM's "fp8" / compressed-tensors
FP8 layouts), beside the same model holding the dequantized weights: the float reference for what
the engine does with the quantized file.

    python bench/quantize_checkpoint.py --out /tmp/smol-awq [--dequantized /tmp/smol-awq-ref]
        [--model DIR] [--method awq|gptq|fp8|compressed-tensors] [--bits 4] [--group-size 64]
        [--sym] [--act-order] [--per-channel]

Round-to-nearest is not AWQ's or GPTQ's search, so the perplexity cost of those files is larger
than a calibrated checkpoint's; the comparison that matters is engine against reference on the
same weights. FP8 is round-to-nearest in every tool (one scale per tensor, or per output channel
with --per-channel). Both directories get the model's tokenizer files.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "python"))

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "vocab.json",
    "merges.txt",
)


def copy_tokenizer(src: str, dst: str) -> None:
    for name in TOKENIZER_FILES:
        if os.path.exists(os.path.join(src, name)):
            shutil.copy(os.path.join(src, name), os.path.join(dst, name))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default=None, help="HF directory (default: the default model)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--dequantized", default=None)
    ap.add_argument("--method", choices=("awq", "gptq", "fp8", "compressed-tensors"), default="awq")
    ap.add_argument("--bits", type=int, choices=(4, 8), default=4)
    ap.add_argument("--group-size", type=int, default=64)
    ap.add_argument("--sym", action="store_true")
    ap.add_argument("--act-order", action="store_true")
    ap.add_argument("--per-channel", action="store_true", help="FP8: a scale per output channel")
    args = ap.parse_args()
    if args.method == "awq" and (args.bits != 4 or args.sym or args.act_order):
        sys.exit("AWQ checkpoints are 4-bit with zero points and no act-order")

    import torch
    from group_quant_models import save_quantized
    from transformers import AutoModelForCausalLM

    if args.model is None:
        from taco_llm.default_model import default_model_dir

        args.model = default_model_dir()
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    if args.method in ("fp8", "compressed-tensors"):
        from fp8_models import save_fp8

        save_fp8(args.out, model, fmt=args.method, per_channel=args.per_channel)
    else:
        save_quantized(
            args.out,
            model,
            method=args.method,
            bits=args.bits,
            group_size=args.group_size,
            sym=args.sym,
            act_order=args.act_order,
        )
    copy_tokenizer(args.model, args.out)
    print(f"wrote {args.out}")
    if args.dequantized:
        model.save_pretrained(args.dequantized)
        copy_tokenizer(args.model, args.dequantized)
        print(f"wrote {args.dequantized}")


if __name__ == "__main__":
    main()
