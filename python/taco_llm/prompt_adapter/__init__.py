"""Prompt adapters (vLLM 0.6's vllm.prompt_adapter.request.PromptAdapterRequest)."""

from taco_llm.prompt_adapter.request import PromptAdapterRequest

__all__ = ["PromptAdapterRequest"]
