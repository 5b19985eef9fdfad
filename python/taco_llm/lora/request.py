"""LoRARequest: which LoRA adapter (a PEFT directory) a request runs with, as vLLM 0.6 names it."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any


def check_adapter_id(kind: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{kind} must be an int > 0, got {value!r}.")


@dataclass(eq=False)
class LoRARequest:
    """A LoRA adapter: a name, an id (> 0) unique to it in one LLM, and its PEFT directory
    (adapter_config.json + adapter_model.safetensors). lora_local_path is vLLM's deprecated
    name of lora_path. Two requests are equal when their names are."""

    lora_name: str
    lora_int_id: int
    lora_path: str = ""
    lora_local_path: str | None = None
    long_lora_max_len: int | None = None
    base_model_name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.lora_name, str) or not self.lora_name:
            raise ValueError(f"lora_name must be a non-empty str, got {self.lora_name!r}.")
        check_adapter_id("lora_int_id", self.lora_int_id)
        if self.lora_local_path is not None:
            warnings.warn(
                "The 'lora_local_path' attribute is deprecated; use 'lora_path' instead.",
                DeprecationWarning,
                stacklevel=3,
            )
            if not self.lora_path:
                self.lora_path = self.lora_local_path
        if not isinstance(self.lora_path, str) or not self.lora_path:
            raise ValueError(
                f"LoRA adapter '{self.lora_name}': lora_path must be the adapter's directory, "
                f"got {self.lora_path!r}."
            )
        if self.long_lora_max_len is not None:
            raise NotImplementedError(
                f"LoRA adapter '{self.lora_name}': long_lora_max_len (long-context LoRA) is not "
                "supported."
            )

    @property
    def adapter_id(self) -> int:
        return self.lora_int_id

    @property
    def name(self) -> str:
        return self.lora_name

    @property
    def path(self) -> str:
        return self.lora_path

    @property
    def local_path(self) -> str:
        warnings.warn(
            "The 'local_path' property is deprecated; use 'path' instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.lora_path

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LoRARequest) and self.lora_name == other.lora_name

    def __hash__(self) -> int:
        return hash(self.lora_name)
