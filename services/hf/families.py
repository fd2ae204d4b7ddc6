"""Chat-template families: how a model writes tool calls and reasoning, read from its chat template.

A family gives the response template transformers' ResponseParser reads the model's answer with (when the tokenizer
ships none) and the exact shape of one call, which the tool-call grammar (structured.py) forces the model into.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass

from forgeway.core.generation import GenerationRequest
from forgeway.core.tools import NO_PARAMETERS

TOOLS_VARIABLE = re.compile(r"\btools\b")
THINKING_SWITCH = re.compile(r"\b(?:enable_thinking|thinking)\b")
REASONING_FIELDS = ("reasoning_content", "thinking")

# Llama 3.1-3.3 write a JSON tool call bare or after <|python_tag|>, with its arguments under "parameters", and end
# the turn with <|eom_id|> or <|eot_id|>; several calls are separated by ';'.
LLAMA3_RESPONSE = {
    "defaults": {"role": "assistant"},
    "start_anchor": "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "fields": {
        "tool_calls": {
            "open_pattern": r"\s*(?:<\|python_tag\|>\s*)?(?=\{\s*\"name\"\s*:)",
            "close_pattern": r"\s*(?:;|<\|eom_id\|>|<\|eot_id\|>)",
            "repeats": True,
            "content": "json",
            "content_args": {"allow_non_json": True},
            "transform": {"type": "function", "function": "{content}"},
        },
        "content": {"close_pattern": r"\s*(?:<\|eot_id\|>|<\|end_of_text\|>)", "content": "text"},
    },
}
# Mistral (v3 tokenizers): [TOOL_CALLS] then a JSON list of {"name", "arguments"} objects, up to the end of the turn.
MISTRAL_RESPONSE = {
    "defaults": {"role": "assistant"},
    "start_anchor_pattern": r"\[/INST\]",
    "fields": {
        "tool_calls": {
            "open_pattern": r"\s*\[TOOL_CALLS\]\s*",
            "close_pattern": r"\s*</s>",
            "content": "json",
            "content_args": {"allow_non_json": True},
        },
        "content": {"close_pattern": r"\s*</s>", "content": "text"},
    },
}


def _qwen_response() -> dict | None:
    """transformers' own fallback for the Qwen (Hermes <tool_call>, <think>) family."""
    try:
        from transformers.cli.serving.utils import _RESPONSE_TEMPLATE_FALLBACKS
    except ImportError:  # a transformers without `serve`: such templates need the tokenizer's response_template
        return None
    return next((v for types, v in _RESPONSE_TEMPLATE_FALLBACKS.items() if "qwen3" in types), None)


@dataclass(frozen=True)
class Family:
    """One way of writing tool calls: the literal text around a call, and the delimiters the parser must keep."""

    name: str
    call_open: str  # how a call starts, up to the function's name
    args_key: str  # the key the arguments follow
    call_close: str  # what ends a call after its arguments object
    separator: str  # between parallel calls
    trigger: str  # the text that starts a call in free text
    markers: tuple[str, ...]  # special tokens the parser must see (decoded text keeps them)
    tags: tuple[str, str]  # the delimiters around a call's JSON, to give back a call that does not parse as text
    fallback: Callable[[], dict | None]  # the response template for tokenizers that ship none
    think: tuple[str, str] | None = None  # reasoning delimiters
    constrainable: bool = True  # the grammar can force this shape

    def response_template(self) -> dict | None:
        return self.fallback()

    def call_begin(self, name: str) -> str:
        return f'{self.call_open}{name}", "{self.args_key}": '

    def tool_tag(self, request: GenerationRequest) -> dict | None:
        """An xgrammar structural tag (as JSON) for the request's calls; None when nothing is to be constrained.

        required and function: one call (or several, with parallel_tool_calls) and nothing else, arguments valid
        against each tool's parameters. auto with a strict tool: free text, but once a call starts its arguments are
        constrained (strict tools' to their parameters, the others' to any JSON object).
        """
        if not needs_grammar(request):
            return None
        choice = request.tool_choice
        tools = choice.callable(request.tools)
        tags = [{"type": "tag", "begin": self.call_begin(t.name), "end": self.call_close,
                 "content": {"type": "json_schema",
                             "json_schema": (t.parameters or NO_PARAMETERS) if choice.forced or t.strict
                             else {"type": "object"}, "max_whitespace_cnt": 1}}
                for t in tools]
        single = not request.parallel_tool_calls or choice.mode == "function"
        if choice.forced:
            calls = {"type": "tags_with_separator", "tags": tags, "separator": self.separator, "at_least_one": True,
                     "stop_after_first": single}
        else:
            calls = {"type": "triggered_tags", "triggers": [self.trigger], "tags": tags, "stop_after_first": single}
        if request.thinking and self.think is not None:  # the template opened <think>: reasoning comes first
            reasoning = {"type": "tag", "begin": "", "content": {"type": "any_text", "excludes": list(self.think)},
                         "end": self.think[1]}
            calls = {"type": "sequence", "elements": [reasoning, {"type": "const_string", "value": "\n\n"}, calls]}
        return {"type": "structural_tag", "format": calls}


def needs_grammar(request: GenerationRequest) -> bool:
    """Calls must be constrained: tool_choice required or a named function, or a strict tool among the callable."""
    choice = request.tool_choice
    tools = choice.callable(request.tools)
    return bool(tools) and (choice.forced or any(t.strict for t in tools))


FAMILIES = {
    "hermes": Family("hermes", '<tool_call>\n{"name": "', "arguments", "}\n</tool_call>", "\n", "<tool_call>",
                     ("<tool_call>", "</tool_call>", "<think>", "</think>"), ("<tool_call>", "</tool_call>"),
                     _qwen_response, think=("<think>", "</think>")),
    "llama3": Family("llama3", '{"name": "', "parameters", "}", "; ", '{"name": ', ("<|python_tag|>",), ("", ""),
                     lambda: LLAMA3_RESPONSE),
    "mistral": Family("mistral", '[TOOL_CALLS][{"name": "', "arguments", "}]", ", ", "[TOOL_CALLS]",
                      ("[TOOL_CALLS]",), ("[TOOL_CALLS]", ""), lambda: MISTRAL_RESPONSE, constrainable=False),
}


def template_source(tokenizer) -> str:
    template = getattr(tokenizer, "chat_template", None) or ""
    return "\n".join(template.values()) if isinstance(template, dict) else template


def detect_family(source: str) -> Family | None:
    """The family a chat template writes its tool calls in, from the markers it renders."""
    if "<tool_call>" in source:
        return FAMILIES["hermes"]
    if "[TOOL_CALLS]" in source:
        return FAMILIES["mistral"]
    if "<|python_tag|>" in source or ("<|eot_id|>" in source and TOOLS_VARIABLE.search(source)):
        return FAMILIES["llama3"]
    return None


@dataclass(frozen=True)
class ReplyFormat:
    """What one model's answers can hold beyond text, and how to read them."""

    family: Family | None = None
    response_template: dict | None = None  # for ResponseParser; calls that are not JSON come back as text
    tools: bool = False  # its template renders tools and their calls can be read back
    thinking: bool = False  # its template has a thinking switch
    reasoning: bool = False  # reasoning may appear in its answers (a switch, or <think> in the template)
    keep: frozenset[int] = frozenset()  # special tokens decoded as text, since they delimit calls
    drop: frozenset[int] = frozenset()  # the other special tokens
    no_tools: str = "it has no chat template"

    def unsupported(self) -> dict[str, str]:
        """Why this model refuses tools or reasoning (ModelInfo.unsupported)."""
        refused = {}
        if not self.tools:
            refused["tools"] = self.no_tools
        if not self.thinking:
            refused["reasoning"] = "its chat template has no thinking switch"
        return refused


def reply_format(tokenizer) -> ReplyFormat:
    """The reply format of a chat model: the tokenizer's response_template, else its family's."""
    source = template_source(tokenizer)
    if not source:
        return ReplyFormat()
    family = detect_family(source)
    template = getattr(tokenizer, "response_template", None) or (family.response_template() if family else None)
    if template is not None:
        template = lenient(template)
    no_tools = ("its chat template has no tools" if not TOOLS_VARIABLE.search(source) else
                "no response template reads its tool calls back" if template is None
                or "tool_calls" not in template["fields"] else "")
    keep = {tokenizer.convert_tokens_to_ids(m) for m in family.markers} if family else set()
    special = {i for i, t in tokenizer.added_tokens_decoder.items() if t.special} | set(tokenizer.all_special_ids)
    keep &= special
    return ReplyFormat(family, template, not no_tools, bool(THINKING_SWITCH.search(source)),
                       template is not None and bool(THINKING_SWITCH.search(source) or "<think>" in source),
                       frozenset(keep), frozenset(special - keep) if keep else frozenset(),
                       no_tools or "")


def lenient(template: dict) -> dict:
    """The template with JSON tool calls that do not parse read as text (the caller gives them back as content)."""
    template = copy.deepcopy(template)
    field = template["fields"].get("tool_calls")
    if field is not None and field.get("content") == "json":
        field["content_args"] = {**field.get("content_args", {}), "allow_non_json": True}
    return template
