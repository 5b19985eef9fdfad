"""Chat conversations -> text prompts through the tokenizer's chat template (or an override),
as LLM.chat does in vLLM 0.6.2+ (add_generation_prompt, continue_final_message, a list of
conversations)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

ChatCompletionMessageParam = dict[str, Any]
Conversation = list[ChatCompletionMessageParam]


def load_chat_template(chat_template: str | os.PathLike | None) -> str | None:
    """A template string, or the contents of the file it names."""
    if chat_template is None:
        return None
    path = os.fspath(chat_template)
    if len(path) < 4096 and "{" not in path and os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return f.read()
    if "{" not in path:
        raise ValueError(
            f"chat_template must be a Jinja template or a path to a template file; {path!r} is "
            "neither."
        )
    return path


def _content_text(content: Any, position: str) -> str:
    """OpenAI-style content: a string, or a list of parts whose text parts are joined."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, Sequence):
        texts = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                texts.append(part.get("text", ""))
            elif kind in ("image_url", "audio_url", "input_audio", "video_url", "image"):
                raise NotImplementedError(
                    f"{position}: {kind} content (multi-modal chat) is not supported yet."
                )
            else:
                raise ValueError(f"{position}: unknown content part {part!r}.")
        return "\n".join(texts)
    raise ValueError(f"{position}: content must be a str or a list of parts, got {content!r}.")


def _normalize_conversation(conversation: Any, conv_index: int) -> Conversation:
    if not isinstance(conversation, Sequence) or isinstance(conversation, (str, dict)):
        raise ValueError(f"conversation {conv_index} must be a list of messages.")
    if not conversation:
        raise ValueError(f"conversation {conv_index} is empty: give at least one message.")
    out = []
    for i, msg in enumerate(conversation):
        position = f"messages[{conv_index}][{i}]"
        if not isinstance(msg, dict) or "role" not in msg:
            raise ValueError(f"{position} must be a dict with 'role' and 'content' keys.")
        norm = dict(msg)
        norm["content"] = _content_text(msg.get("content"), position)
        out.append(norm)
    return out


def parse_conversations(messages: Any) -> tuple[list[Conversation], bool]:
    """One conversation (a list of messages) or a list of them -> (conversations, is_batch)."""
    if isinstance(messages, Sequence) and messages and not isinstance(messages, (str, dict)):
        first = messages[0]
        if isinstance(first, Sequence) and not isinstance(first, (str, dict)):
            return [_normalize_conversation(c, i) for i, c in enumerate(messages)], True
    return [_normalize_conversation(messages, 0)], False


def apply_chat_template(
    tokenizer: Any,
    conversation: Conversation,
    chat_template: str | None = None,
    add_generation_prompt: bool = True,
    continue_final_message: bool = False,
    tools: list[dict[str, Any]] | None = None,
    chat_template_kwargs: dict[str, Any] | None = None,
) -> str:
    """The prompt text of one conversation."""
    if tokenizer is None:
        raise ValueError(
            "You cannot pass text prompts when `skip_tokenizer_init` is True: chat needs the "
            "tokenizer's chat template."
        )
    if continue_final_message and add_generation_prompt:
        raise ValueError(
            "Cannot set both continue_final_message and add_generation_prompt to True."
        )
    template = chat_template if chat_template is not None else tokenizer.chat_template
    if template is None:
        raise ValueError(
            "The tokenizer has no chat template; pass chat_template= (a Jinja template or a path)."
        )
    prompt = tokenizer.apply_chat_template(
        conversation,
        chat_template=template,
        add_generation_prompt=add_generation_prompt,
        continue_final_message=continue_final_message,
        tools=tools,
        tokenize=False,
        **(chat_template_kwargs or {}),
    )
    if not isinstance(prompt, str):
        raise ValueError(f"The chat template produced {type(prompt).__name__}, not a str.")
    return prompt
