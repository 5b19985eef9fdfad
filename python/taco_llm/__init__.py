"""taco_llm: offline LLM inference with the vLLM / TACO-LLM offline API over a C++ runtime."""

# torch first: the compiled engine (taco_llm._C, loaded when an LLM is made) links against the
# torch libraries, and `import taco_llm._C` runs this file before loading it.
import torch  # noqa: F401

from taco_llm.engine_args import EngineArgs
from taco_llm.inputs import PromptInputs, PromptType, TextPrompt, TokensPrompt
from taco_llm.llm import LLM
from taco_llm.lora.request import LoRARequest
from taco_llm.outputs import (
    BeamSearchOutput,
    BeamSearchSequence,
    CompletionOutput,
    Logprob,
    RequestMetrics,
    RequestOutput,
)
from taco_llm.prompt_adapter.request import PromptAdapterRequest
from taco_llm.sampling_params import (
    BeamSearchParams,
    RequestOutputKind,
    SamplingParams,
    SamplingType,
)
from taco_llm.structured_output import (
    GuidedDecodingParams,
    GuidedDecodingRequest,
    LLMGuidedOptions,
    StructuredOutputsParams,
)

__version__ = "0.1.0"

__all__ = [
    "LLM",
    "BeamSearchOutput",
    "BeamSearchParams",
    "BeamSearchSequence",
    "CompletionOutput",
    "EngineArgs",
    "GuidedDecodingParams",
    "GuidedDecodingRequest",
    "LLMGuidedOptions",
    "Logprob",
    "LoRARequest",
    "PromptAdapterRequest",
    "PromptInputs",
    "PromptType",
    "RequestMetrics",
    "RequestOutput",
    "RequestOutputKind",
    "SamplingParams",
    "SamplingType",
    "StructuredOutputsParams",
    "TextPrompt",
    "TokensPrompt",
    "__version__",
]
