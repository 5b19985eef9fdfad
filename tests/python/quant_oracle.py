"""What the quantized-checkpoint tests share: our engine on a model in a subprocess (so the CPU
level can be forced), and HF transformers' greedy ids and teacher-forced logprobs on the
dequantized weights, the oracle they are compared with."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

PROMPTS = [[5, 17, 99, 3, 42, 7], [200, 1, 64, 64, 9], list(range(30, 70))]
MAX_TOKENS = 16
# Largest |logprob difference| from HF where activations are rounded to int8.
TOL_INT8 = 0.2

_SCRIPT = r"""
import json, sys
from taco_llm import LLM, SamplingParams, _C
path, prompts, n = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
llm = LLM(model=path, skip_tokenizer_init=True, **{"dtype": "float32", **json.loads(sys.argv[5])})
sp = SamplingParams(temperature=0, max_tokens=n, logprobs=0, detokenize=False, ignore_eos=True)
outs = llm.generate([{"prompt_token_ids": p} for p in prompts], sp)
# Teacher-forced: the logprob of every token of each prompt followed by the reference's tokens.
forced = json.loads(sys.argv[4])
pl = llm.generate([{"prompt_token_ids": p} for p in forced],
                  SamplingParams(max_tokens=1, prompt_logprobs=0, detokenize=False))
print(json.dumps({"isa": _C.cpu_isa(), "ids": [list(o.outputs[0].token_ids) for o in outs],
                  "logprobs": [[lp[t].logprob for lp, t in zip(o.outputs[0].logprobs,
                                o.outputs[0].token_ids)] for o in outs],
                  "forced": [[d[t].logprob for d, t in zip(o.prompt_logprobs[1:],
                              o.prompt_token_ids[1:])] for o in pl]}))
"""


def ours(path: str, isa: str | None, forced: list[list[int]], **llm_kwargs) -> dict:
    """Our engine (dtype float32 unless llm_kwargs say otherwise) at CPU level isa (None: the
    best)."""
    env = dict(os.environ)
    env.pop("TACO_CPU_ISA", None)
    if isa:
        env["TACO_CPU_ISA"] = isa
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, path, json.dumps(PROMPTS), str(MAX_TOKENS)]
        + [json.dumps(forced), json.dumps(llm_kwargs)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def hf_gguf(path: str) -> dict:
    """reference() of HF transformers loading the GGUF file (it dequantizes every weight)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32
    ).eval()
    return reference(model)


def reference(model) -> dict:
    """Greedy ids and logprobs of an HF model (float32) on PROMPTS, and the logprob of every
    token of each prompt followed by those ids."""
    ids, logprobs = [], []
    for p in PROMPTS:
        seq, lps = list(p), []
        with torch.no_grad():
            for _ in range(MAX_TOKENS):
                logits = model(torch.tensor([seq])).logits[0, -1]
                lp = torch.log_softmax(logits.double(), -1)
                tok = int(lp.argmax())
                seq.append(tok)
                lps.append(float(lp[tok]))
        ids.append(seq[len(p) :])
        logprobs.append(lps)
    forced, forced_lps = [p + i for p, i in zip(PROMPTS, ids)], []
    for seq in forced:
        with torch.no_grad():
            lp = torch.log_softmax(model(torch.tensor([seq])).logits[0].double(), -1)
        forced_lps.append([float(lp[n, seq[n + 1]]) for n in range(len(seq) - 1)])
    return {"ids": ids, "logprobs": logprobs, "forced": forced, "forced_lps": forced_lps}


def int8_diffs(ours_result: dict, ref: dict) -> list[float]:
    """|logprob - HF| over every teacher-forced token."""
    return [
        abs(a - b) for x, y in zip(ours_result["forced"], ref["forced_lps"]) for a, b in zip(x, y)
    ]


def assert_matches(got: dict, ref: dict, tol: float) -> None:
    """The float level: the same greedy ids, every teacher-forced logprob within tol of HF's."""
    assert got["ids"] == ref["ids"]
    diffs = int8_diffs(got, ref)
    print(f"{got['isa']}: max |logprob - HF| {max(diffs):.6f}")
    for a, b in zip(got["forced"], ref["forced_lps"]):
        assert a == pytest.approx(b, abs=tol)


def assert_int8_close(got: dict, ref: dict) -> None:
    """Activations rounded to int8 (or bf16): logprobs close to HF's, greedy choices free to
    differ at near-ties."""
    diffs = int8_diffs(got, ref)
    print(f"max |logprob - HF| {max(diffs):.4f}, mean {sum(diffs) / len(diffs):.4f}")
    assert max(diffs) < TOL_INT8
    assert sum(diffs) / len(diffs) < TOL_INT8 / 4
