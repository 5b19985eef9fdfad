"""LoRA adapters (vLLM's taco_llm.lora.request.LoRARequest)."""

from taco_llm.lora.request import LoRARequest

__all__ = ["LoRARequest"]
