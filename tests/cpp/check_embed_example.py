"""ctest `embed_example`: the C++ example, built out of tree against the installed taco package,
must print the same greedy token ids as Python's LLM.generate for the same prompts, with and
without a LoRA adapter (made here with PEFT)."""

import argparse
import re
import subprocess
import sys
from pathlib import Path


def run(cmd: list[str]) -> str:
    print("+", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    sys.stderr.write(done.stderr)
    return done.stdout


def example_prompts(source: Path) -> list[list[int]]:
    text = (source / "examples/cpp/generate.cpp").read_text()
    body = text[text.index("kPrompts = {") : text.index("};")]
    return [
        [int(t) for t in re.findall(r"\d+", row)] for row in re.findall(r"\{([\d,\s]+)\}", body)
    ]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", type=Path, required=True)
    ap.add_argument("--source-dir", type=Path, required=True)
    args = ap.parse_args()
    prefix = args.build_dir / "install"
    example_build = args.build_dir / "example"
    cmake = str(Path(sys.executable).parent / "cmake")
    run([cmake, "--install", str(args.build_dir), "--component", "cpp", "--prefix", str(prefix)])
    run(
        [
            cmake,
            "-S",
            str(args.source_dir / "examples/cpp"),
            "-B",
            str(example_build),
            f"-DCMAKE_PREFIX_PATH={prefix}",
            "-DCMAKE_BUILD_TYPE=Release",
        ]
    )
    run([cmake, "--build", str(example_build)])

    from taco_llm import LLM, SamplingParams, TokensPrompt
    from taco_llm.default_model import default_model_dir

    model = default_model_dir()
    sys.path.insert(0, str(args.source_dir / "tests/python"))
    from peft_adapters import make_lora

    adapter = make_lora(model, "mlp-r16", args.build_dir / "adapters")
    lines = run([str(example_build / "generate"), model, adapter]).strip().splitlines()
    cpp_ids = [[int(t) for t in line.split()] for line in lines]

    from taco_llm import LoRARequest

    prompts = example_prompts(args.source_dir)
    llm = LLM(model=model, dtype="float32", enable_lora=True)
    params = SamplingParams(temperature=0.0, max_tokens=24)
    tokens = [TokensPrompt(prompt_token_ids=p) for p in prompts]
    outs = llm.generate(tokens, params)
    py_ids = [list(o.outputs[0].token_ids) for o in outs]
    lora = LoRARequest("example", 1, adapter)
    lora_ids = [
        list(o.outputs[0].token_ids) for o in llm.generate(tokens, params, lora_request=lora)
    ]
    # The example generates for every prompt, then for the first one again after the errors,
    # then for every prompt through the adapter.
    expected = py_ids + py_ids[:1] + lora_ids
    if cpp_ids != expected:
        print(f"C++ ids {cpp_ids}\nPython ids {expected}")
        return 1
    print(f"C++ example matches LLM.generate for {len(prompts)} prompts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
