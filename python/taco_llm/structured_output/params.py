"""The request-side classes of structured output, with vLLM's names: per request
`SamplingParams(guided_decoding=GuidedDecodingParams(...))` (vLLM 0.6.3 on) or
`SamplingParams(structured_outputs=StructuredOutputsParams(...))` (current vLLM), and for a whole
`LLM.generate` call `guided_options_request=LLMGuidedOptions(...)` (vLLM 0.6.0; a dict with
its keys works too). Each holds exactly one constraint; `spec()` gives the canonical form the
grammar cache keys on. Shapes are checked here; whether a schema, regex or grammar is valid is
decided when it is compiled (taco_llm.structured_output.grammars), before any request runs."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any

# Backend names: xgrammar serves every constraint; "auto" picks it.
BACKENDS = ("xgrammar", "auto")
# Options after "backend:" that vLLM accepts: whitespace off, and two with nothing to change here
# (xgrammar never falls back to another backend; strict schemas already forbid extra
# properties).
_BACKEND_OPTIONS = ("disable-any-whitespace", "no-fallback", "no-additional-properties")
_KINDS = ("json", "regex", "choice", "grammar", "json_object")


@dataclass(frozen=True)
class GuideSpec:
    """One constraint in canonical form. kind: one of _KINDS; text: the JSON schema (as JSON
    text, properties in the given order), the regex, the EBNF grammar, or the JSON list of
    choices ("" for json_object)."""

    kind: str
    text: str
    any_whitespace: bool = True
    whitespace_pattern: str | None = None


def parse_backend(name: Any, where: str) -> tuple[str, set[str]]:
    """A backend name with optional ':option,option' suffix, checked; returns (name, options)."""
    if not isinstance(name, str):
        raise ValueError(f"{where} must be a string, one of {BACKENDS}, got {name!r}.")
    base, _, opts = name.partition(":")
    options = {o.strip() for o in opts.split(",") if o.strip()}
    if base not in BACKENDS:
        raise ValueError(
            f"{where}={name!r} is not a structured output backend taco_llm serves: use one of "
            f"{BACKENDS} (vLLM's 'outlines', 'lm-format-enforcer' and 'guidance' are not built; "
            "xgrammar accepts the same JSON schemas, regexes, choices and EBNF grammars)."
        )
    unknown = sorted(options - set(_BACKEND_OPTIONS))
    if unknown:
        raise ValueError(
            f"{where}={name!r} has unknown option(s) {unknown}; allowed: {_BACKEND_OPTIONS}."
        )
    return base, options


def _schema_text(value: Any, where: str) -> str:
    """A JSON schema given as a dict, JSON text or a pydantic model class, as JSON text."""
    if isinstance(value, type) and hasattr(value, "model_json_schema"):
        value = value.model_json_schema()
    elif hasattr(value, "model_json_schema") and callable(value.model_json_schema):
        value = type(value).model_json_schema()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where} is not valid JSON: {e}.") from None
    if not isinstance(value, (dict, bool)):
        raise ValueError(
            f"{where} must be a JSON schema: a dict, JSON text or a pydantic model class, "
            f"got {type(value).__name__}."
        )
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where} cannot be written as JSON: {e}.") from None


class _Constraint:
    """What GuidedDecodingParams and StructuredOutputsParams share: the checks and the spec. Each
    declares its fields in its own vLLM order."""

    json: str | dict | type | None
    regex: str | None
    choice: list[str] | None
    grammar: str | None
    json_object: bool | None
    whitespace_pattern: str | None
    disable_any_whitespace: bool

    _name = "guided_decoding"

    def __post_init__(self) -> None:
        given = [k for k in _KINDS if getattr(self, k) not in (None, False)]
        if len(given) > 1:
            raise ValueError(
                f"{self._name}: only one kind of constraint per request, got {given} (choose one "
                f"of {list(_KINDS)})."
            )
        self._check_shapes()

    def is_empty(self) -> bool:
        """No constraint given (allowed, as in vLLM: the request is not guided)."""
        return all(getattr(self, k) in (None, False) for k in _KINDS)

    def _check_shapes(self) -> None:
        n = self._name
        if self.regex is not None and (not isinstance(self.regex, str) or not self.regex):
            raise ValueError(f"{n}.regex must be a non-empty string, got {self.regex!r}.")
        if self.grammar is not None and (not isinstance(self.grammar, str) or not self.grammar):
            raise ValueError(f"{n}.grammar must be a non-empty EBNF string, got {self.grammar!r}.")
        if self.choice is not None:
            if isinstance(self.choice, (str, bytes)) or not hasattr(self.choice, "__iter__"):
                raise ValueError(f"{n}.choice must be a list of strings, got {self.choice!r}.")
            self.choice = list(self.choice)
            if not self.choice:
                raise ValueError(f"{n}.choice must be a non-empty list of strings, got [].")
            for c in self.choice:
                if not isinstance(c, str):
                    raise ValueError(f"{n}.choice must contain strings only, got {c!r}.")
        if self.json_object not in (None, True, False):
            raise ValueError(f"{n}.json_object must be a bool, got {self.json_object!r}.")
        if self.whitespace_pattern is not None and not isinstance(self.whitespace_pattern, str):
            raise ValueError(
                f"{n}.whitespace_pattern must be a regex string, got {self.whitespace_pattern!r}."
            )
        if self.json is not None:
            _schema_text(self.json, f"{n}.json")

    @property
    def kind(self) -> str:
        return next(k for k in _KINDS if getattr(self, k) not in (None, False))

    def spec(self, backend_options: set[str] | frozenset[str] = frozenset()) -> GuideSpec:
        kind = self.kind
        if kind == "json":
            text = _schema_text(self.json, f"{self._name}.json")
        elif kind == "choice":
            text = json.dumps(self.choice, ensure_ascii=False)
        elif kind == "json_object":
            text = ""
        else:
            text = getattr(self, kind)
        any_ws = not (self.disable_any_whitespace or "disable-any-whitespace" in backend_options)
        pattern = self.whitespace_pattern if kind in ("json", "json_object") else None
        return GuideSpec(kind, text, any_ws, pattern)


@dataclass
class GuidedDecodingParams(_Constraint):
    """vLLM's per-request guided decoding (SamplingParams.guided_decoding): at most one of json
    (a schema), regex, choice, grammar (EBNF) or json_object=True; backend 'xgrammar' / 'auto'
    (or None: the engine's guided_decoding_backend). The fields after whitespace_pattern are later
    vLLM's: disable_fallback (xgrammar never falls back: no effect) and
    disable_additional_properties (schemas are strict already: no effect)."""

    json: str | dict | type | None = None
    regex: str | None = None
    choice: list[str] | None = None
    grammar: str | None = None
    json_object: bool | None = None
    backend: str | None = None
    whitespace_pattern: str | None = None
    disable_fallback: bool = False
    disable_any_whitespace: bool = False
    disable_additional_properties: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.backend is not None:
            parse_backend(self.backend, f"{self._name}.backend")

    @staticmethod
    def from_optional(**kwargs: Any) -> GuidedDecodingParams | None:
        """vLLM's helper: None when no constraint is given, else the params."""
        if all(kwargs.get(k) in (None, False) for k in _KINDS):
            return None
        return GuidedDecodingParams(**kwargs)


@dataclass
class StructuredOutputsParams(_Constraint):
    """Current vLLM's spelling (SamplingParams.structured_outputs); the backend is the engine's.
    structural_tag is not built (NotImplementedError)."""

    json: str | dict | type | None = None
    regex: str | None = None
    choice: list[str] | None = None
    grammar: str | None = None
    json_object: bool | None = None
    disable_fallback: bool = False
    disable_any_whitespace: bool = False
    disable_additional_properties: bool = False
    whitespace_pattern: str | None = None
    structural_tag: str | None = None

    _name = "structured_outputs"

    def __post_init__(self) -> None:
        if self.structural_tag is not None:
            raise NotImplementedError(
                "structured_outputs.structural_tag is not supported by taco_llm yet."
            )
        super().__post_init__()

    def all_constraints_none(self) -> bool:
        """vLLM's helper: True when no constraint is given."""
        return self.is_empty()


@dataclass
class LLMGuidedOptions:
    """vLLM 0.6's guided_options_request for a whole LLM.generate call: the same constraint for
    every prompt."""

    guided_json: str | dict | type | None = None
    guided_regex: str | None = None
    guided_choice: list[str] | None = None
    guided_grammar: str | None = None
    guided_decoding_backend: str | None = None
    guided_whitespace_pattern: str | None = None
    guided_json_object: bool | None = None

    @classmethod
    def coerce(cls, value: Any) -> LLMGuidedOptions:
        """An LLMGuidedOptions, or a dict with its keys (TypeError naming unknown keys)."""
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(value) - known)
            if unknown:
                raise TypeError(
                    f"guided_options_request has unknown key(s) {unknown}; allowed: "
                    f"{sorted(known)}."
                )
            return cls(**value)
        raise TypeError(
            "guided_options_request must be an LLMGuidedOptions or a dict of its fields, got "
            f"{type(value).__name__}."
        )

    def to_params(self) -> GuidedDecodingParams:
        """The same constraint as per-request params (empty when no field is given)."""
        kinds = {
            "guided_json": self.guided_json,
            "guided_regex": self.guided_regex,
            "guided_choice": self.guided_choice,
            "guided_grammar": self.guided_grammar,
            "guided_json_object": self.guided_json_object,
        }
        given = [k for k, v in kinds.items() if v not in (None, False)]
        if len(given) > 1:
            raise ValueError(
                f"guided_options_request: only one kind of guided decoding at a time, got {given}."
            )
        return GuidedDecodingParams(
            json=self.guided_json,
            regex=self.guided_regex,
            choice=self.guided_choice,
            grammar=self.guided_grammar,
            json_object=self.guided_json_object,
            backend=self.guided_decoding_backend,
            whitespace_pattern=self.guided_whitespace_pattern,
        )


# vLLM 0.6 names the same class both ways.
GuidedDecodingRequest = LLMGuidedOptions
