"""Perplexity of one fixed English text, in non-overlapping windows of --window tokens, through
taco_llm and its peers (each in its own process): every token of a window but the first is
scored given the ones before it in that window, and perplexity = exp(mean negative logprob).

    python bench/perplexity.py [--model DIR] [--gguf FILE] [--text FILE] [--window 512]
                               [--engines taco-gguf,llamacpp,taco,hf] [--dtype bfloat16]
                               [--quantization fp8]
                               [--llama-python /path/to/venv/bin/python]

Engines: taco-gguf serves the GGUF file --gguf (weights as stored, activations in --dtype),
llamacpp the same file through llama-cpp-python; taco (in --dtype) and hf (float32) serve the
HF directory --model (taco with --quantization when given, e.g. fp8 at load), the reference for
what the quantized weights cost. Every engine scores the same token ids (the HF tokenizer of
--model). The default text is the first part of the "standard
type hierarchy" chapter of the Python 3.11 reference (PSF license), bench/data/python-types.txt.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile

from peers import llamacpp_model, report, run_engines

HERE = os.path.dirname(os.path.abspath(__file__))


def windows(args) -> list[list[int]]:
    """The text's token ids in windows; workers read them from the file the parent wrote (a
    peer's venv may lack transformers)."""
    if args.windows_file:
        with open(args.windows_file) as f:
            return json.load(f)
    from transformers import AutoTokenizer

    with open(args.text) as f:
        text = f.read()
    ids = AutoTokenizer.from_pretrained(args.model)(text)["input_ids"]
    n = len(ids) // args.window
    if n == 0:
        sys.exit(f"{args.text}: {len(ids)} tokens, fewer than one window of {args.window}")
    return [ids[i * args.window : (i + 1) * args.window] for i in range(n)]


def run_taco(args, model: str) -> list[float]:
    from taco_llm import LLM, SamplingParams, TokensPrompt

    llm = LLM(
        model=model,
        dtype=args.dtype,
        max_model_len=args.window + 8,
        quantization=args.quantization if model == args.model else None,
    )
    outs = llm.generate(
        [TokensPrompt(prompt_token_ids=w) for w in windows(args)],
        SamplingParams(max_tokens=1, prompt_logprobs=0),
        use_tqdm=False,
    )
    return [
        d[t].logprob for o in outs for d, t in zip(o.prompt_logprobs[1:], o.prompt_token_ids[1:])
    ]


def run_hf(args) -> list[float]:
    import torch
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    out = []
    for w in windows(args):
        with torch.inference_mode():
            lp = torch.log_softmax(m(torch.tensor([w])).logits[0].double(), -1)
        out += [float(lp[i, w[i + 1]]) for i in range(len(w) - 1)]
    return out


def run_llamacpp(args) -> list[float]:
    import numpy as np

    llm = llamacpp_model(args.gguf, args.window, logits_all=True)
    out = []
    for w in windows(args):
        llm.reset()
        llm.eval(w)
        logits = np.asarray(llm.scores[: len(w)], dtype=np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        lp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        out += [float(lp[i, w[i + 1]]) for i in range(len(w) - 1)]
    return out


RUNNERS = {
    "taco-gguf": lambda a: run_taco(a, a.gguf),
    "taco": lambda a: run_taco(a, a.model),
    "hf": run_hf,
    "llamacpp": run_llamacpp,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--gguf", default=None)
    ap.add_argument("--text", default=os.path.join(HERE, "data", "python-types.txt"))
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--quantization", default=None, help='engine taco only, e.g. "fp8"')
    ap.add_argument("--engines", default="taco-gguf,llamacpp,taco,hf")
    ap.add_argument("--llama-python", default=os.environ.get("LLAMA_PYTHON", ""))
    ap.add_argument("--worker", choices=sorted(RUNNERS), help=argparse.SUPPRESS)
    ap.add_argument("--windows-file", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.model is None or args.gguf is None:
        from taco_llm.default_model import default_gguf, default_model_dir

        args.model = args.model or default_model_dir()
        args.gguf = args.gguf or default_gguf()
    if args.worker:
        lps = RUNNERS[args.worker](args)
        report({"tokens": len(lps), "nll": -sum(lps) / len(lps)})
        return

    ws = windows(args)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(ws, f)
    argv = [*sys.argv[1:], "--model", args.model, "--gguf", args.gguf, "--windows-file", f.name]
    script = os.path.abspath(__file__)
    try:
        results = run_engines(
            args.engines, {"llamacpp": args.llama_python}, lambda e: [script, *argv, "--worker", e]
        )
    finally:
        os.unlink(f.name)
    n_windows = len(ws)
    print(f"text {args.text}: {n_windows} windows of {args.window} tokens")
    print(f"{'engine':10} {'tokens':>7} {'perplexity':>11}")
    ppl = {name: math.exp(r["nll"]) for name, r in results.items()}
    for name, r in results.items():
        print(f"{name:10} {r['tokens']:7d} {ppl[name]:11.4f}")
    for a, b in (("taco-gguf", "llamacpp"), ("taco-gguf", "hf"), ("taco", "hf")):
        if a in ppl and b in ppl:
            r = ppl[a] / ppl[b]
            print(f"{a} / {b} perplexity: {r:.4f} ({100 * (r - 1):+.2f} %)")


if __name__ == "__main__":
    main()
