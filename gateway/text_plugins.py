"""LlamaForge's plugins in the gateway's pipeline: text_formatter (preprocessing), text_cleaner (postprocessing) and
calculator (tools: `[calc: EXPR]` in the output becomes its value)."""

from __future__ import annotations

import string
from typing import Any

import regex

from forgeway.core.calculator import CalculatorError, evaluate
from forgeway.v1 import generate_pb2

from .plugin_base import Chain, OptionError, PatternStream, Plugin, TextStream, uses_tools


def _flag(option: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise OptionError(option, f"must be true or false, not {value!r}")
    return value


def _text(option: str, value: Any) -> str:
    if not isinstance(value, str):
        raise OptionError(option, f"must be a string, not {value!r}")
    return value


# One turn per (role, content); each format's system turn, user and assistant turns, and the generation prompt.
def _llama2(system: str, turns: list[tuple[str, str]]) -> str:
    out, pending = "", f"<<SYS>>\n{system}\n<</SYS>>\n\n" if system else ""
    for role, content in turns:
        if role == "assistant":
            out += f" {content} </s>"
        else:
            out += f"<s>[INST] {pending}{content} [/INST]"
            pending = ""
    return out


def _chatml(system: str, turns: list[tuple[str, str]]) -> str:
    head = f"<|im_start|>system\n{system}<|im_end|>\n" if system else ""
    body = "".join(f"<|im_start|>{role}\n{content}<|im_end|>\n" for role, content in turns)
    return head + body + "<|im_start|>assistant\n"


def _alpaca(system: str, turns: list[tuple[str, str]]) -> str:
    out = f"{system}\n\n" if system else ""
    for role, content in turns:
        out += f"{content}\n\n" if role == "assistant" else f"### Instruction:\n{content}\n\n### Response:\n"
    return out


CHAT_FORMATS = {"llama2": _llama2, "chatml": _chatml, "alpaca": _alpaca}


class TextFormatter(Plugin):
    """LlamaForge's text_formatter: trims the input, fills a `{text}` template, adds a system instruction and
    formats the prompt (or a conversation without tools) for a chat format: llama2, chatml or alpaca."""

    stage = "pre"

    def __init__(self, trim_whitespace: bool = True, add_system_instruction: bool = False,
                 system_instruction: str = "", format_as_chat: bool = False, chat_format: str = "llama2",
                 template: str = ""):
        self.trim = _flag("trim_whitespace", trim_whitespace)
        self.format_as_chat = _flag("format_as_chat", format_as_chat)
        self.system = _text("system_instruction", system_instruction)
        if _flag("add_system_instruction", add_system_instruction) and not self.system.strip():
            raise OptionError("system_instruction", "required when add_system_instruction is true")
        self.system = self.system if add_system_instruction else ""
        if _text("chat_format", chat_format) not in CHAT_FORMATS:
            raise OptionError("chat_format", f"must be one of {', '.join(CHAT_FORMATS)}, not {chat_format!r}")
        self.render = CHAT_FORMATS[chat_format]
        self.template = _text("template", template)
        if self.template and "{text}" not in self.template:
            raise OptionError("template", "must contain {text}, where the input goes")

    def _content(self, text: str) -> str:
        text = text.strip() if self.trim else text
        return self.template.replace("{text}", text) if self.template else text

    def process(self, request: generate_pb2.GenerateRequest) -> None:
        if request.HasField("prompt"):
            text = self._content(request.prompt)
            if self.format_as_chat:
                request.prompt = self.render(self.system, [("user", text)])
            else:
                request.prompt = f"{self.system}\n\n{text}" if self.system else text
            return
        if not request.messages:
            return
        if self.trim:
            for message in request.messages:
                message.content = message.content.strip()
        users = [m for m in request.messages if m.role == "user"]
        if users and self.template:
            users[-1].content = self._content(users[-1].content)
        system = next((m.content for m in request.messages if m.role == "system"), "") or self.system
        if self.format_as_chat and not uses_tools(request):
            turns = [(m.role, m.content) for m in request.messages if m.role != "system"]
            del request.messages[:]
            request.prompt = self.render(system, turns)
        elif self.system and not any(m.role == "system" for m in request.messages):
            kept = list(request.messages)
            del request.messages[:]
            request.messages.add(role="system", content=self.system)
            request.messages.extend(kept)


# LlamaForge's text_cleaner's tokens (anything after an end of turn goes with it), then the gateway's list.
CLEANED_TOKENS = (r"<\|im_end\|>.*|<\|endoftext\|>.*|<\|im_start\|>assistant\s*|"
                  r"<\|[^|<>\s]{1,40}\|>|</?s>|<unk>|<pad>|\[/?INST\]|<<SYS>>|<</SYS>>")
SENTENCE_END = regex.compile(r"[.!?]+[\"'”’)\]]*(?=\s)")
ENDS_A_SENTENCE = regex.compile(r"[.!?]+[\"'”’)\]]*$")


class _TrimStream:
    """Drops leading whitespace, and holds trailing whitespace back until more text follows it (then sends it);
    whitespace at the end is dropped."""

    def __init__(self) -> None:
        self.started, self.held = False, ""

    def feed(self, text: str) -> str:
        if not self.started:
            text = text.lstrip()
            self.started = bool(text)
        text = self.held + text
        body = text.rstrip()
        self.held = text[len(body):]
        return body

    def flush(self) -> str:
        self.held = ""
        return ""


class _SentenceStream:
    """Holds back the text after the last complete sentence; at the end drops it, unless there was no complete
    sentence at all (then the text stays, as in LlamaForge) or it ends one itself."""

    def __init__(self) -> None:
        self.pending, self.seen = "", False

    def feed(self, text: str) -> str:
        self.pending += text
        ends = list(SENTENCE_END.finditer(self.pending))
        if not ends:
            return ""
        end = ends[-1].end()
        out, self.pending, self.seen = self.pending[:end], self.pending[end:], True
        return out

    def flush(self) -> str:
        text, self.pending = self.pending.rstrip(), ""
        return text if not self.seen or ENDS_A_SENTENCE.search(text) else ""


def _patterns(option: str, value: Any) -> list[regex.Pattern]:
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise OptionError(option, f"must be a list of regular expressions, not {value!r}")
    compiled = []
    for i, pattern in enumerate(value):
        try:
            compiled.append(regex.compile(pattern))
        except regex.error as exc:
            raise OptionError(f"{option}[{i}]", f"{pattern!r}: {exc}") from None
        if compiled[-1].fullmatch(""):
            raise OptionError(f"{option}[{i}]", f"{pattern!r} matches the empty string")
    return compiled


class TextCleaner(Plugin):
    """LlamaForge's text_cleaner: removes special tokens (and whatever follows an end of turn) and custom patterns,
    trims whitespace and drops an incomplete last sentence, deltas included."""

    stage = "post"

    def __init__(self, trim_whitespace: bool = True, remove_special_tokens: bool = True,
                 remove_incomplete_sentences: bool = False, custom_token_patterns: list[str] | None = None):
        self.special = regex.compile(CLEANED_TOKENS, regex.DOTALL) \
            if _flag("remove_special_tokens", remove_special_tokens) else None
        self.custom = _patterns("custom_token_patterns", custom_token_patterns or [])
        self.trim = _flag("trim_whitespace", trim_whitespace)
        self.sentences = _flag("remove_incomplete_sentences", remove_incomplete_sentences)

    def stream(self) -> TextStream:
        streams: list[Any] = [PatternStream(p, "") for p in ([self.special] if self.special else []) + self.custom]
        if self.trim:
            streams.append(_TrimStream())
        if self.sentences:
            streams.append(_SentenceStream())
        return Chain(streams)

    def apply(self, text: str) -> str:
        stream = self.stream()  # the whole text through the same stream, so deltas always add up to it
        return stream.feed(text) + stream.flush()


# `[calc: EXPR]`, EXPR on one line, with lists one level deep (sum([1, 2])).
CALC_MARKER = r"\[(?:calc|calculate|calculator):[ \t]*(?P<expression>(?:[^\[\]\n]|\[[^\[\]\n]*\]){1,500}?)[ \t]*\]"
ON_ERROR = ("message", "keep")


class Calculator(Plugin):
    """LlamaForge's calculator as a tool on the output: each `[calc: EXPR]` the model writes becomes EXPR's value
    (arithmetic and LlamaForge's math functions, never eval); an expression it refuses becomes `[calc error: why]`,
    or stays as written with on_error "keep"."""

    stage = "post"
    kind = "tools"

    def __init__(self, format: str = "{result}", on_error: str = "message"):
        fields = {name for _, name, _, _ in string.Formatter().parse(_text("format", format)) if name is not None}
        if not fields <= {"result", "expression"}:
            raise OptionError("format", f"may use {{result}} and {{expression}}, not {', '.join(sorted(fields))}")
        if on_error not in ON_ERROR:
            raise OptionError("on_error", f"must be one of {', '.join(ON_ERROR)}, not {on_error!r}")
        self.format, self.keep = format, on_error == "keep"
        self.pattern = regex.compile(CALC_MARKER, regex.IGNORECASE)

    def replace(self, match: regex.Match) -> str:
        expression = match.group("expression")
        try:
            return self.format.format(result=evaluate(expression), expression=expression)
        except CalculatorError as error:
            return match.group(0) if self.keep else f"[calc error: {error.reason}]"

    def apply(self, text: str) -> str:
        return self.pattern.sub(self.replace, text)

    def stream(self) -> TextStream:
        return PatternStream(self.pattern, self.replace)


LLAMAFORGE: dict[str, type[Plugin]] = {
    "text_formatter": TextFormatter,
    "text_cleaner": TextCleaner,
    "calculator": Calculator,
}
