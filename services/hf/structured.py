"""JSON-schema constrained decoding through xgrammar: a schema check, a compiler per model, a matcher per sequence."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict

import torch

from forgeway.core.errors import Unsupported

try:
    import xgrammar
except ImportError:  # the hf extra installs it; without it the service does not offer structured output
    xgrammar = None

FEATURE = "json_schema"
ANNOTATIONS = {"title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly",
               "writeOnly"}
# What xgrammar enforces (0.2.x), close to OpenAI's structured-output subset; anything else is rejected, not ignored.
KEYWORDS = ANNOTATIONS | {
    "type", "enum", "const", "anyOf", "$ref", "$defs", "definitions",
    "minLength", "maxLength", "pattern", "format",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "items", "prefixItems", "minItems", "maxItems",
    "properties", "required", "additionalProperties",
}
FORMATS = {"email", "date", "time", "date-time", "duration", "uuid", "ipv4", "ipv6", "hostname", "uri",
           "uri-reference", "iri", "iri-reference"}
# xgrammar 0.2.8 writes length-limited strings as [^"\\\r\n]{m,n}, which lets raw control characters (invalid
# JSON) through; its unlimited strings exclude them. Narrow the class to JSON's own string characters.
_LOOSE_CHARS = '[^\\"\\\\\\r\\n]'
_JSON_CHARS = '[^\\0-\\x1f\\"\\\\]'


def available() -> bool:
    return xgrammar is not None


def check_schema(schema: object, where: str = "#", feature: str = FEATURE) -> None:
    """Raise Unsupported naming the first keyword this backend cannot enforce."""
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise Unsupported(feature, "hf", f"{where} is not a schema object")
    for key, value in schema.items():
        if key not in KEYWORDS:
            raise Unsupported(feature, "hf", f"keyword {key!r} at {where} is not supported")
        if key == "format" and value not in FORMATS:
            raise Unsupported(feature, "hf", f"format {value!r} at {where} is not supported")
        if key == "$ref" and not str(value).startswith("#"):
            raise Unsupported(feature, "hf", f"only local references (#/...) are supported, got {value!r}")
        if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            for name, sub in value.items():
                check_schema(sub, f"{where}/{key}/{name}", feature)
        elif key in ("anyOf", "prefixItems") and isinstance(value, list):
            for i, sub in enumerate(value):
                check_schema(sub, f"{where}/{key}/{i}", feature)
        elif key in ("items", "additionalProperties") and isinstance(value, dict | bool):
            check_schema(value, f"{where}/{key}", feature)


class GrammarCompiler:
    """Compiles schemas for one tokenizer and caches the results (compiling is the slow part)."""

    def __init__(self, tokenizer, vocab_size: int, stop_ids: list[int], cache_size: int = 64):
        info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=stop_ids)
        self.compiler = xgrammar.GrammarCompiler(info, max_threads=1)
        self.vocab_size = vocab_size
        self.cache: OrderedDict[str, object] = OrderedDict()
        self.cache_size = cache_size
        self.lock = threading.Lock()

    def _cached(self, key: str):
        with self.lock:
            if key in self.cache:
                self.cache.move_to_end(key)
                return self.cache[key]
        return None

    def _compile(self, key: str, grammar):
        text = str(grammar)
        if _LOOSE_CHARS in text:
            grammar = xgrammar.Grammar.from_ebnf(text.replace(_LOOSE_CHARS, _JSON_CHARS))
        compiled = self.compiler.compile_grammar(grammar)
        with self.lock:
            self.cache[key] = compiled
            while len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)
        return compiled

    def compile_tag(self, tag: dict):
        """A compiled grammar for an xgrammar structural tag (tool calls: families.Family.tool_tag)."""
        key = json.dumps(tag, sort_keys=True)
        compiled = self._cached(key)
        if compiled is not None:
            return compiled
        try:
            grammar = xgrammar.Grammar.from_structural_tag(json.dumps(tag))
        except (RuntimeError, ValueError) as exc:
            raise Unsupported("tools", "hf", str(exc).splitlines()[-1][:200]) from None
        return self._compile(key, grammar)

    def compile(self, schema: dict | None, json_object: bool):
        """A compiled grammar for a schema (checked first), or for any JSON object."""
        if schema is not None:
            check_schema(schema)
        key = json.dumps(schema, sort_keys=True) if schema is not None else "<object>"
        compiled = self._cached(key)
        if compiled is not None:
            return compiled
        if schema is None:
            grammar = xgrammar.Grammar.from_json_schema('{"type": "object"}', any_whitespace=False, strict_mode=False)
        else:
            try:
                grammar = xgrammar.Grammar.from_json_schema(json.dumps(schema), any_whitespace=False)
            except RuntimeError as exc:
                raise Unsupported(FEATURE, "hf", str(exc).splitlines()[-1][:200]) from None
        return self._compile(key, grammar)


class JsonConstraint:
    """One sequence's position in its grammar: masks what may come next, follows what came."""

    def __init__(self, compiled, vocab_size: int):
        self.matcher = xgrammar.GrammarMatcher(compiled)
        self.bitmask = xgrammar.allocate_token_bitmask(1, vocab_size)

    def mask(self, logits: torch.Tensor) -> None:
        """Set the logits of forbidden tokens to -inf, in place (one row)."""
        self.matcher.fill_next_token_bitmask(self.bitmask, 0)
        row = logits.view(1, -1)
        if row.device.type == "cpu":
            xgrammar.apply_token_bitmask_inplace(row, self.bitmask)
        else:
            xgrammar.apply_token_bitmask_inplace(row, self.bitmask.to(row.device, non_blocking=True))

    def accept(self, token: int) -> bool:
        return self.matcher.accept_token(token)

    @property
    def done(self) -> bool:
        return self.matcher.is_terminated()
