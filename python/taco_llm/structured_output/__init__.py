"""Structured output: generation constrained to a JSON schema, a regex, a list of choices or an
EBNF grammar, through xgrammar. `params` holds the user-facing request classes, `grammars`
turns them into compiled grammars (validated first, each compiled once), and `guide` is the
engine's guide hook, which keeps one grammar matcher per guided sequence and fills the token
bitmask the C++ sampler applies."""

from taco_llm.structured_output.params import (
    GuidedDecodingParams,
    GuidedDecodingRequest,
    LLMGuidedOptions,
    StructuredOutputsParams,
)

__all__ = [
    "GuidedDecodingParams",
    "GuidedDecodingRequest",
    "LLMGuidedOptions",
    "StructuredOutputsParams",
]
