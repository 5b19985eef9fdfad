"""Offline inference with taco_llm: chat and plain generation on the default model, served
straight from its Q4_1 GGUF file.

Run with `make run`, or `python examples/offline_inference.py [MODEL_DIR_OR_GGUF_FILE]`.
"""

import sys

from taco_llm import LLM, SamplingParams
from taco_llm.default_model import default_gguf


def main() -> None:
    model = sys.argv[1] if len(sys.argv) > 1 else default_gguf()
    llm = LLM(model=model)
    greedy = SamplingParams(temperature=0.0, max_tokens=48)

    questions = [
        "What is the capital of France?",
        "Name three primary colors.",
        "What is 12 times 12?",
    ]
    conversations = [[{"role": "user", "content": q}] for q in questions]
    for question, out in zip(questions, llm.chat(conversations, greedy)):
        print(f"\nQ: {question}\nA: {out.outputs[0].text.strip()}")

    prompts = [
        "The three laws of thermodynamics are",
        "def fibonacci(n):",
        "Once upon a time, in a small village,",
    ]
    sampled = SamplingParams(temperature=0.8, top_p=0.95, max_tokens=48, seed=0)
    for out in llm.generate(prompts, sampled):
        print(f"\nPrompt: {out.prompt!r}\nGenerated: {out.outputs[0].text!r}")


if __name__ == "__main__":
    main()
