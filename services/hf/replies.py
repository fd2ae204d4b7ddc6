"""Reading a model's answer as it is decoded: content, reasoning and tool calls, through transformers' ResponseParser.

One Reply per choice, fed the text the choice releases; unary and streamed answers are both built from what it
returns, so a stream's pieces add up to the unary answer. Calls the grammar shapes stream as they are decoded (the
name first, then argument text); other calls are released whole once they parse, and a call that does not parse is
given back as content (and counted), as vLLM does.
"""

from __future__ import annotations

import json
import logging
import re

from transformers.utils.chat_parsing import ResponseParser

from forgeway.core.tools import Tool, ToolCall, ToolCallAssembler, ToolCallDelta, new_call_id
from forgeway.server import metrics

from .families import REASONING_FIELDS, ReplyFormat

log = logging.getLogger("forgeway.hf")

# A call's JSON up to its arguments: {"name": "...", "arguments": (or "parameters":, Llama's key)
HEADER = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"(?:arguments|parameters)"\s*:')


class CallText:
    """One call's JSON as it arrives: its name once known, and the raw text of its arguments object."""

    def __init__(self):
        self.body = ""
        self.name: str | None = None
        self.start = self.pos = self.end = -1  # where the arguments begin, how far scanned, where they end
        self.depth, self.quoted, self.escaped = 0, False, False

    def add(self, text: str) -> None:
        self.body += text
        if self.name is None:
            m = HEADER.match(self.body)
            if m is None:
                return
            self.name = json.loads(f'"{m.group(1)}"')
            self.start = self.pos = m.end()
        while self.end < 0 and self.pos < len(self.body):
            c = self.body[self.pos]
            self.pos += 1
            if self.quoted:
                self.escaped, self.quoted = (False, True) if self.escaped else (c == "\\", c != '"')
            elif self.depth == 0 and self.pos - 1 == self.start and c.isspace():
                self.start = self.pos  # whitespace before the arguments object is not part of it
            elif c == '"':
                self.quoted = True
            elif c in "{[":
                self.depth += 1
            elif c in "}]":
                self.depth -= 1
                if self.depth <= 0:
                    self.end = self.pos

    @property
    def arguments(self) -> str:
        """The arguments text decoded so far (all of it once the object closed)."""
        if self.start < 0:
            return ""
        return self.body[self.start:self.end if self.end >= 0 else self.pos]


class Reply:
    """Turns one choice's released text into content, reasoning and tool-call pieces, and keeps the totals."""

    def __init__(self, form: ReplyFormat, prefix: str, tools: tuple[Tool, ...], shaped: bool, model: str,
                 forced: bool = False):
        self.form, self.tools, self.shaped, self.model = form, {t.name: t for t in tools}, shaped, model
        self.forced = forced  # the grammar allows calls only: text left over is a call cut short, not content
        self.parser = ResponseParser(form.response_template, prefix=prefix)
        self.content = ""
        self.reasoning = ""
        self.assembler = ToolCallAssembler()
        self.count = 0  # calls given out
        self.call: CallText | None = None
        self.sent = 0  # argument characters of the current call given out
        self.announced = False
        self.finished = False
        self.broken = False
        self.cut = False  # a call given out in pieces did not parse in the end (cut by max_tokens or a stop)

    def calls(self) -> list[ToolCall]:
        return self.assembler.calls()

    def feed(self, text: str, final: bool = False) -> tuple[str, str, list[ToolCallDelta]]:
        """Content, reasoning and call pieces that `text` (the choice's next released text) completes."""
        out = ([], [], [])
        if self.finished:
            return "", "", []
        events = []
        try:
            if self.broken:
                self._content(out, text)
            else:
                events = self.parser.feed(text) if text else []
                if final:
                    events += self.parser.finalize()[1]
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:  # a template that cannot read this output
            log.warning("model %s: the response parser gave up (%s); the rest is content", self.model, exc)
            self.broken = True
            self._content(out, text)
        for event in events:
            self._event(out, event)
        if final:
            self.finished = True
        content, reasoning = "".join(out[0]), "".join(out[1])
        self.content += content
        self.reasoning += reasoning
        for piece in out[2]:
            self.assembler.add(piece)
        return content, reasoning, out[2]

    def _content(self, out, text: str) -> None:
        if self.forced:
            return
        if not self.content and not "".join(out[0]):
            text = text.lstrip()  # whitespace after </think> or before the first word is not content
        if text:
            out[0].append(text)

    def _event(self, out, event: dict) -> None:
        kind, field = event["type"], event.get("field")
        if field == "content" and kind == "region_chunk":
            self._content(out, event["text"])
        elif field in REASONING_FIELDS and kind == "region_chunk":
            text = event["text"] if self.reasoning or out[1] else event["text"].lstrip()
            if text:
                out[1].append(text)
        elif field == "tool_calls" and kind == "region_open":
            self.call, self.sent, self.announced = CallText(), 0, False
        elif field == "tool_calls" and kind == "region_chunk" and self.call is not None:
            self.call.add(event["text"])
            if self.shaped:
                self._stream(out)
        elif field == "tool_calls" and kind == "region_close" and self.call is not None:
            self._close(out, event["value"])

    def _stream(self, out) -> None:
        """Give out what the grammar has made certain: the name, then argument text as it comes."""
        call = self.call
        if call.name is None:
            return
        if not self.announced:
            out[2].append(ToolCallDelta(self.count, new_call_id(), call.name))
            self.announced = True
        arguments = call.arguments
        if len(arguments) > self.sent:
            out[2].append(ToolCallDelta(self.count, arguments=arguments[self.sent:]))
            self.sent = len(arguments)

    def _close(self, out, value) -> None:
        call, self.call = self.call, None
        calls = parsed_calls(value)
        good = calls is not None and calls and all(name in self.tools for name, _ in calls)
        if self.announced:  # already given out: it stays a call, whatever the rest of it was
            rest = call.arguments[self.sent:]
            if rest:
                out[2].append(ToolCallDelta(self.count, arguments=rest))
            self.count += 1
            if not good:
                self.cut = True
                self._failed(call)
            return
        if not good:
            if self.tools:
                self._failed(call)
            opening, closing = self.form.family.tags if self.form.family else ("", "")
            self._content(out, opening + call.body + closing)
            return
        for name, arguments in calls:
            text = call.arguments if len(calls) == 1 and _same(call.arguments, arguments) else json.dumps(arguments)
            out[2].extend([ToolCallDelta(self.count, new_call_id(), name), ToolCallDelta(self.count, arguments=text)])
            self.count += 1

    def _failed(self, call: CallText) -> None:
        metrics.TOOL_CALL_PARSE_FAILURES.labels("hf", self.model).inc()
        log.info("model %s: a tool call that does not parse: %r", self.model, call.body[:200])


def parsed_calls(value) -> list[tuple[str, dict]] | None:
    """(name, arguments) of each call in a parsed tool_calls region; None when it is not calls."""
    items = value if isinstance(value, list) else [value]
    calls = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("function"), dict):
            item = item["function"]
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            return None
        arguments = item.get("arguments", item.get("parameters", {}))
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError:
                return None
        if not isinstance(arguments, dict):
            return None
        calls.append((item["name"], arguments))
    return calls


def _same(text: str, arguments: dict) -> bool:
    try:
        return json.loads(text) == arguments
    except json.JSONDecodeError:
        return False
