"""The plugin contract (Plugin, TextStream, OptionError) and the streams plugins build on."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Protocol

import regex

from forgeway.v1 import generate_pb2


class TextStream(Protocol):
    """The post-processing of one choice's streamed text."""

    def feed(self, text: str) -> str:
        """Take the next delta; return the text that is safe to send now (the rest is held back)."""

    def flush(self) -> str:
        """The stream ended: return whatever was held back, processed."""


class OptionError(ValueError):
    """A plugin option with a bad value; `option` names it."""

    def __init__(self, option: str, description: str):
        super().__init__(f"{option}: {description}")
        self.option, self.description = option, description


class Plugin:
    """Base of every processor. A subclass sets `stage` ("pre" or "post") and takes its options as keywords.

    Pre-processors implement `process(request)`, changing the GenerateRequest in place (it is the gateway's copy).
    Post-processors implement `apply(text) -> str` for whole texts and `stream() -> TextStream` for deltas.
    `kind` is LlamaForge's name for what it does: "preprocessing" or "postprocessing" (the default, from the
    stage) or "tools" (a post-processor that runs a tool on the output).
    """

    stage: ClassVar[str]
    kind: ClassVar[str] = ""

    def process(self, request: generate_pb2.GenerateRequest) -> None:
        raise NotImplementedError

    def apply(self, text: str) -> str:
        raise NotImplementedError

    def stream(self) -> TextStream:
        raise NotImplementedError


def uses_tools(request: generate_pb2.GenerateRequest) -> bool:
    """The request offers tools, or its conversation holds tool calls or tool results."""
    return bool(request.tools) or any(m.tool_calls or m.role == "tool" for m in request.messages)


class PatternStream:
    """Streams text through a regex substitution, holding back only what could still become (or grow) a match."""

    def __init__(self, pattern: regex.Pattern, replacement: str | Callable[[regex.Match], str]):
        self.pattern, self.replacement = pattern, replacement
        self.pending = ""

    def feed(self, text: str) -> str:
        self.pending += text
        out, pos = [], 0
        while True:
            match = self.pattern.search(self.pending, pos, partial=True)
            if match is None:
                out.append(self.pending[pos:])
                pos = len(self.pending)
                break
            if match.partial or match.end() == len(self.pending):  # may still grow: wait for more text
                out.append(self.pending[pos:match.start()])
                pos = match.start()
                break
            replaced = self.replacement(match) if callable(self.replacement) else match.expand(self.replacement)
            out.append(self.pending[pos:match.start()] + replaced)
            pos = match.end()
        self.pending = self.pending[pos:]
        return "".join(out)

    def flush(self) -> str:
        text, self.pending = self.pattern.sub(self.replacement, self.pending), ""
        return text


class Chain:
    """Streams one text through several TextStreams in turn."""

    def __init__(self, streams: list[TextStream]):
        self.streams = streams

    def feed(self, text: str) -> str:
        for stream in self.streams:
            text = stream.feed(text) if text else text
        return text

    def flush(self) -> str:
        text = ""
        for stream in self.streams:
            text = (stream.feed(text) if text else "") + stream.flush()
        return text
