"""PromptAdapterRequest: a PEFT prompt-tuning adapter whose virtual tokens go before a prompt."""

from __future__ import annotations

from dataclasses import dataclass

from taco_llm.lora.request import check_adapter_id


@dataclass
class PromptAdapterRequest:
    """A prompt-tuning adapter: a name, an id (> 0) unique to it in one LLM, its PEFT directory
    and the number of virtual tokens it holds (the directory's num_virtual_tokens)."""

    prompt_adapter_name: str
    prompt_adapter_id: int
    prompt_adapter_local_path: str
    prompt_adapter_num_virtual_tokens: int

    def __post_init__(self) -> None:
        if not isinstance(self.prompt_adapter_name, str) or not self.prompt_adapter_name:
            raise ValueError(
                f"prompt_adapter_name must be a non-empty str, got {self.prompt_adapter_name!r}."
            )
        check_adapter_id("prompt_adapter_id", self.prompt_adapter_id)
        check_adapter_id(
            "prompt_adapter_num_virtual_tokens", self.prompt_adapter_num_virtual_tokens
        )
        path = self.prompt_adapter_local_path
        if not isinstance(path, str) or not path:
            raise ValueError(
                f"prompt adapter '{self.prompt_adapter_name}': prompt_adapter_local_path must be "
                f"the adapter's directory, got {path!r}."
            )

    @property
    def adapter_id(self) -> int:
        return self.prompt_adapter_id

    @property
    def name(self) -> str:
        return self.prompt_adapter_name

    @property
    def local_path(self) -> str:
        return self.prompt_adapter_local_path

    def __hash__(self) -> int:
        return hash(self.prompt_adapter_id)
