"""Loading the HF tokenizer that goes with a model, as vLLM's get_tokenizer does."""

from __future__ import annotations

from typing import Any


def get_tokenizer(
    tokenizer_name: str,
    tokenizer_mode: str = "auto",
    trust_remote_code: bool = False,
    revision: str | None = None,
    **kwargs: Any,
) -> Any:
    """An HF tokenizer: the fast one when available ("auto"), the slow one for "slow". A GGUF
    file's own tokenizer when tokenizer_name is one (built by transformers from its metadata)."""
    import os

    from transformers import AutoTokenizer

    from taco_llm.engine_args import is_gguf

    if tokenizer_mode not in ("auto", "slow"):
        raise ValueError(f"tokenizer_mode must be 'auto' or 'slow', got {tokenizer_mode!r}.")
    if tokenizer_mode == "slow":
        if kwargs.get("use_fast", False):
            raise ValueError("Cannot use the fast tokenizer in slow tokenizer mode.")
        kwargs["use_fast"] = False
    if os.path.isfile(tokenizer_name) and is_gguf(tokenizer_name):
        kwargs["gguf_file"] = os.path.basename(tokenizer_name)
        tokenizer_name = os.path.dirname(os.path.abspath(tokenizer_name))
    try:
        return AutoTokenizer.from_pretrained(
            tokenizer_name, trust_remote_code=trust_remote_code, revision=revision, **kwargs
        )
    except (OSError, ValueError) as e:
        raise ValueError(f"Could not load the tokenizer from {tokenizer_name!r}: {e}") from e
