"""From a GuideSpec to an xgrammar CompiledGrammar. `prepare` runs in the caller's thread and
rejects what cannot be compiled (an invalid schema, regex or grammar) with a ValueError naming it,
before any request is queued; the compilation itself (the vocabulary's token masks) runs in a
background thread, beside the model's forward, and each distinct constraint is compiled once per
LLM (an LRU cache of futures)."""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from taco_llm.structured_output.params import GuideSpec

_CACHE_ENTRIES = 256
# xgrammar prefixes its messages with a time stamp and a source location.
_XGR_PREFIX = re.compile(r"^\[[0-9:]+\] [^ ]+: ")
# The whitespace xgrammar's JSON grammars allow between tokens when any_whitespace is on.
_ANY_WS = "[ \\n\\r\\t]*"
_EBNF_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|\[(?:\\.|[^\]\\])*\]|[A-Za-z_][A-Za-z0-9_]*|.', re.S)
_RULE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*) ::=", re.M)


def _message(error: Exception) -> str:
    return _XGR_PREFIX.sub("", str(error)).strip()


def _renamed(ebnf: str, prefix: str) -> str:
    """The grammar with each of its rule names prefixed (string literals and classes kept)."""
    names = set(_RULE.findall(ebnf))
    return "".join(prefix + t if t in names else t for t in _EBNF_TOKEN.findall(ebnf))


def _xgr() -> Any:
    import xgrammar

    return xgrammar


def check_json_schema(text: str, where: str) -> None:
    """A JSON schema that is not valid for its own metaschema, with jsonschema's reason."""
    import jsonschema

    schema = json.loads(text)
    if isinstance(schema, bool):
        return
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as e:
        path = "/".join(str(p) for p in e.path)
        at = f" at '{path}'" if path else ""
        raise ValueError(f"{where}: invalid JSON schema{at}: {e.message}.") from None


def build_grammar(spec: GuideSpec, where: str) -> Any:
    """The spec as an xgrammar Grammar, or a ValueError saying which part is invalid and why."""
    xgr = _xgr()
    try:
        if spec.kind == "json":
            check_json_schema(spec.text, f"{where}.json")
            grammar = xgr.Grammar.from_json_schema(spec.text, any_whitespace=spec.any_whitespace)
        elif spec.kind == "json_object":
            grammar = xgr.Grammar.builtin_json_grammar()
        elif spec.kind == "regex":
            grammar = xgr.Grammar.from_regex(spec.text)
        elif spec.kind == "grammar":
            grammar = xgr.Grammar.from_ebnf(spec.text)
        else:  # choice: one EBNF string literal per choice (JSON escapes are EBNF's)
            choices = json.loads(spec.text)
            grammar = xgr.Grammar.from_ebnf(
                "root ::= " + " | ".join(json.dumps(c, ensure_ascii=False) for c in choices)
            )
    except ValueError:
        raise
    except Exception as e:  # xgrammar reports parse errors as RuntimeError
        what = {"json": "JSON schema", "regex": "regex", "grammar": "EBNF grammar"}
        raise ValueError(
            f"{where}.{spec.kind}: invalid {what.get(spec.kind, spec.kind)}: {_message(e)}"
        ) from None
    if spec.whitespace_pattern is not None:
        grammar = _with_whitespace(grammar, spec.whitespace_pattern, where)
    return grammar


def _with_whitespace(grammar: Any, pattern: str, where: str) -> Any:
    """A JSON grammar whose free whitespace is the regex `pattern` (vLLM's whitespace_pattern):
    every any-whitespace run of xgrammar's JSON grammar becomes a reference to the pattern's own
    rules."""
    xgr = _xgr()
    try:
        ws = str(xgr.Grammar.from_regex(pattern))
    except Exception as e:
        raise ValueError(f"{where}.whitespace_pattern: invalid regex: {_message(e)}") from None
    text = str(grammar)
    if _ANY_WS not in text:
        raise ValueError(
            f"{where}.whitespace_pattern needs any whitespace allowed (not with "
            "disable_any_whitespace)."
        )
    combined = text.replace(_ANY_WS, "taco_ws_root") + "\n" + _renamed(ws, "taco_ws_")
    try:
        return xgr.Grammar.from_ebnf(combined)
    except Exception as e:
        raise ValueError(f"{where}.whitespace_pattern: cannot be used: {_message(e)}") from None


class GrammarCache:
    """Compiles guide specs for one tokenizer and vocabulary. Built on first use: LLMs that
    never constrain output never load xgrammar."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._vocab_size = 0
        self.eos_token_ids: list[int] = []  # the grammars' stop tokens: the model's EOS ids
        self._compiler: Any = None
        self._pool: ThreadPoolExecutor | None = None
        self._entries: OrderedDict[GuideSpec, Future] = OrderedDict()
        self.compilations = 0  # grammars compiled so far (cache misses)

    def set_model(self, vocab_size: int, eos_token_ids: list[int]) -> None:
        """The loaded model's vocabulary size and EOS ids."""
        self._vocab_size = vocab_size
        self.eos_token_ids = [int(t) for t in eos_token_ids]
        self._reset()

    def set_tokenizer(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._reset()

    def _reset(self) -> None:
        """New token strings or ids: every compiled grammar is dropped."""
        self._compiler = None
        self._entries.clear()

    def _ensure_compiler(self) -> Any:
        if self._compiler is None:
            xgr = _xgr()
            info = xgr.TokenizerInfo.from_huggingface(
                self._tokenizer, vocab_size=self._vocab_size, stop_token_ids=self.eos_token_ids
            )
            self._compiler = xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="taco-grammar")
        return self._compiler

    def prepare(self, spec: GuideSpec, where: str) -> Future:
        """A future of the spec's CompiledGrammar; raises ValueError now when it is invalid."""
        future = self._entries.get(spec)
        if future is not None:
            self._entries.move_to_end(spec)
            return future
        if self._tokenizer is None:
            raise ValueError(
                f"{where}: structured output needs the tokenizer (skip_tokenizer_init=True)."
            )
        if not self.eos_token_ids:
            raise ValueError(
                f"{where}: structured output needs the model's EOS token (a grammar ends with "
                "it), and this model has none."
            )
        grammar = build_grammar(spec, where)
        compiler = self._ensure_compiler()
        future = self._pool.submit(compiler.compile_grammar, grammar)
        self.compilations += 1
        self._entries[spec] = future
        # A compilation that fails (its error reaches the step that needs it) is not kept.
        future.add_done_callback(lambda f, s=spec: self._forget_failed(s, f))
        while len(self._entries) > _CACHE_ENTRIES:
            self._entries.popitem(last=False)
        return future

    def _forget_failed(self, spec: GuideSpec, future: Future) -> None:
        if not future.cancelled() and future.exception() is not None:
            if self._entries.get(spec) is future:
                self._entries.pop(spec, None)
