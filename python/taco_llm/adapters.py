"""The LoRA and prompt adapters of one LLM. An adapter is added to the engine the first time a
request names it (or by add_lora / add_prompt_adapter): its directory is read then, before any
request is queued, so a bad adapter raises ValueError and the engine stays as it was."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from taco_llm.lora.request import LoRARequest
from taco_llm.prompt_adapter.request import PromptAdapterRequest


@dataclass(frozen=True)
class PromptAdapters:
    """What one prompt runs with: adapter ids (0: none) and the virtual tokens before it."""

    lora_id: int = 0
    prompt_adapter_id: int = 0
    virtual_tokens: int = 0
    lora_request: LoRARequest | None = None


class AdapterRegistry:
    def __init__(self, engine: Any, enable_lora: bool, enable_prompt_adapter: bool) -> None:
        self._engine = engine
        self._enable_lora = enable_lora
        self._enable_prompt_adapter = enable_prompt_adapter

    # ---- LoRA ----

    def add_lora(self, request: LoRARequest) -> bool:
        """Reads the adapter into the engine; True when it was not there yet."""
        if not isinstance(request, LoRARequest):
            raise TypeError(f"lora_request must be a LoRARequest, got {request!r}.")
        if not self._enable_lora:
            raise ValueError(
                f"LoRA adapter '{request.lora_name}': the LLM was made without enable_lora=True."
            )
        known = request.lora_int_id in self.list_loras()
        self._add("lora", request.lora_int_id, request.lora_name, request.lora_path)
        return not known

    def remove_lora(self, lora_id: int) -> bool:
        """Forgets an adapter; False when unknown. ValueError while a request runs with it."""
        return bool(self._engine.remove_adapter("lora", int(lora_id)))

    def list_loras(self) -> set[int]:
        return {int(a["id"]) for a in self._engine.list_adapters("lora")}

    # ---- prompt adapters ----

    def add_prompt_adapter(self, request: PromptAdapterRequest) -> bool:
        if not isinstance(request, PromptAdapterRequest):
            raise TypeError(
                f"prompt_adapter_request must be a PromptAdapterRequest, got {request!r}."
            )
        name = request.prompt_adapter_name
        if not self._enable_prompt_adapter:
            raise ValueError(
                f"prompt adapter '{name}': the LLM was made without enable_prompt_adapter=True."
            )
        known = request.prompt_adapter_id in self.list_prompt_adapters()
        info = self._add(
            "prompt_adapter", request.prompt_adapter_id, name, request.prompt_adapter_local_path
        )
        if info["num_virtual_tokens"] != request.prompt_adapter_num_virtual_tokens:
            if not known:
                self._engine.remove_adapter("prompt_adapter", request.prompt_adapter_id)
            raise ValueError(
                f"prompt adapter '{name}': prompt_adapter_num_virtual_tokens="
                f"{request.prompt_adapter_num_virtual_tokens} but the adapter has "
                f"{info['num_virtual_tokens']} virtual tokens."
            )
        return not known

    def remove_prompt_adapter(self, prompt_adapter_id: int) -> bool:
        return bool(self._engine.remove_adapter("prompt_adapter", int(prompt_adapter_id)))

    def list_prompt_adapters(self) -> list[int]:
        return [int(a["id"]) for a in self._engine.list_adapters("prompt_adapter")]

    # ---- per request ----

    def for_prompts(
        self, lora_request: Any, prompt_adapter_request: Any, num_prompts: int
    ) -> list[PromptAdapters] | None:
        """Each prompt's adapters (vLLM 0.6: one LoRARequest for all prompts or a list of one
        per prompt, None meaning the base model; one PromptAdapterRequest for all), added to the
        engine; None when no prompt has any."""
        if lora_request is None and prompt_adapter_request is None:
            return None
        if isinstance(lora_request, Sequence) and not isinstance(lora_request, str):
            loras = list(lora_request)
            if len(loras) != num_prompts:
                raise ValueError(
                    f"Lists must be the same length: {num_prompts} prompts and "
                    f"{len(loras)} lora_request entries."
                )
        else:
            loras = [lora_request] * num_prompts
        # Each adapter once, however many request objects name it.
        added: set[tuple[int, str]] = set()
        for r in loras:
            if r is None:
                continue
            key = (r.lora_int_id, r.lora_path) if isinstance(r, LoRARequest) else None
            if key is None or key not in added:
                self.add_lora(r)  # a TypeError for what is not a LoRARequest
                added.add(key)
        pa_id = virtual = 0
        if prompt_adapter_request is not None:
            self.add_prompt_adapter(prompt_adapter_request)
            pa_id = prompt_adapter_request.prompt_adapter_id
            virtual = prompt_adapter_request.prompt_adapter_num_virtual_tokens
        return [
            PromptAdapters(r.lora_int_id if r is not None else 0, pa_id, virtual, r) for r in loras
        ]

    def _add(self, kind: str, adapter_id: int, name: str, path: str) -> dict[str, Any]:
        what = "LoRA adapter" if kind == "lora" else "prompt adapter"
        try:
            return self._engine.add_adapter(kind, adapter_id, name, os.path.realpath(path))
        except ValueError as e:
            raise ValueError(f"{what} '{name}' (id {adapter_id}): {e}") from None
