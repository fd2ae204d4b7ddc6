"""Request pre-processors and streaming-aware output post-processors, per model, from built-ins and entry points."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import regex

from forgeway.v1 import generate_pb2

from .plugin_base import Chain, OptionError, PatternStream, Plugin, TextStream, uses_tools
from .text_plugins import LLAMAFORGE

ENTRY_POINT_GROUP = "forgeway.plugins"


class SystemPrompt(Plugin):
    """Sets the system message of chat requests: `override` replaces any, `default` adds one only when missing."""

    stage = "pre"

    def __init__(self, prompt: str, mode: str = "override", apply_to_prompt: bool = False):
        if mode not in ("override", "default"):
            raise ValueError("mode must be 'override' or 'default'")
        self.prompt, self.mode, self.apply_to_prompt = prompt, mode, apply_to_prompt

    def process(self, request: generate_pb2.GenerateRequest) -> None:
        if request.HasField("prompt"):
            if self.apply_to_prompt:
                request.prompt = f"{self.prompt}\n\n{request.prompt}"
            return
        if not request.messages:
            return
        has_system = any(m.role == "system" for m in request.messages)
        if has_system and self.mode == "default":
            return
        kept = [m for m in request.messages if m.role != "system"]
        del request.messages[:]
        request.messages.add(role="system", content=self.prompt)
        request.messages.extend(kept)


CHAT_TEMPLATES = {
    "chatml": ("<|im_start|>{role}\n{content}<|im_end|>\n", "<|im_start|>assistant\n"),
    "llama2": ("[{role}] {content}\n", "[assistant] "),
    "plain": ("{role}: {content}\n", "assistant:"),
}


class ChatFormat(Plugin):
    """Turns chat messages into one prompt with a named template, for models served without a chat template.

    A conversation with tools is left as messages: these plain templates cannot render tools, calls or results, so
    the model's own chat template renders it, or the router refuses it naming `tools` where the model has none."""

    stage = "pre"

    def __init__(self, template: str = "chatml"):
        if template not in CHAT_TEMPLATES:
            raise ValueError(f"template must be one of {', '.join(CHAT_TEMPLATES)}")
        self.turn, self.generation_prompt = CHAT_TEMPLATES[template]

    def process(self, request: generate_pb2.GenerateRequest) -> None:
        if not request.messages or uses_tools(request):
            return
        text = "".join(self.turn.format(role=m.role, content=m.content) for m in request.messages)
        del request.messages[:]
        request.prompt = text + self.generation_prompt


class StripPattern(Plugin):
    """Removes (or replaces) every match of a regular expression from the output, deltas included."""

    stage = "post"

    def __init__(self, pattern: str, replacement: str = "", ignore_case: bool = False):
        try:
            self.pattern = regex.compile(pattern, regex.IGNORECASE if ignore_case else 0)
        except regex.error as exc:
            raise ValueError(f"pattern {pattern!r}: {exc}") from None
        if self.pattern.fullmatch(""):
            raise ValueError(f"pattern {pattern!r} matches the empty string")
        self.replacement = replacement

    def apply(self, text: str) -> str:
        return self.pattern.sub(self.replacement, text)

    def stream(self) -> TextStream:
        return PatternStream(self.pattern, self.replacement)


SPECIAL_TOKENS = r"<\|[^|<>\s]{1,40}\|>|</?s>|<unk>|<pad>|\[/?INST\]|<<SYS>>|<</SYS>>"


class StripSpecialTokens(StripPattern):
    """Removes special tokens that leak into text (`<|im_end|>`, `</s>`, `[INST]`, ...), plus any listed."""

    def __init__(self, tokens: list[str] | None = None):
        extra = "".join(f"|{regex.escape(t)}" for t in tokens or ())
        super().__init__(SPECIAL_TOKENS + extra)


BUILTIN: dict[str, type[Plugin]] = {
    "system_prompt": SystemPrompt,
    "chat_format": ChatFormat,
    "strip_pattern": StripPattern,
    "strip_special_tokens": StripSpecialTokens,
    **LLAMAFORGE,  # text_formatter, text_cleaner, calculator
}


@functools.cache
def available() -> dict[str, Any]:
    """Built-ins plus `forgeway.plugins` entry points (name -> class, or the entry point until loaded)."""
    found: dict[str, Any] = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return {**found, **BUILTIN}


def plugin_class(name: str) -> type[Plugin]:
    """The class registered under name (loading its entry point); KeyError when none is."""
    target = available()[name]
    return target if isinstance(target, type) else target.load()


def kind_of(cls: type) -> str:
    """LlamaForge's kind of a plugin class: its own `kind`, else preprocessing or postprocessing by stage."""
    return getattr(cls, "kind", "") or {"pre": "preprocessing", "post": "postprocessing"}.get(
        getattr(cls, "stage", ""), "")


def instantiate(name: str, options: dict[str, Any]) -> Plugin:
    """A plugin built from its registered name and options: KeyError for an unknown name, OptionError naming an
    option it does not take, ValueError (OptionError where the plugin names it) for a bad value."""
    cls = plugin_class(name)
    parameters = inspect.signature(cls).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        for option in options:
            if option not in parameters:
                raise OptionError(option, f"not an option of {name} (options: {', '.join(parameters) or 'none'})")
    try:
        plugin = cls(**options)
    except TypeError as exc:
        raise ValueError(str(exc)) from None
    stage = getattr(plugin, "stage", None)
    if stage not in ("pre", "post"):
        raise ValueError(f"stage must be 'pre' or 'post', not {stage!r}")
    return plugin


@dataclass
class Pipeline:
    """The processors of one model: pre-processors on the request, post-processors on the output."""

    pre: list[Plugin] = field(default_factory=list)
    post: list[Plugin] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.pre or self.post)

    def preprocess(self, request: generate_pb2.GenerateRequest) -> generate_pb2.GenerateRequest:
        if not self.pre:
            return request
        copy = generate_pb2.GenerateRequest()
        copy.CopyFrom(request)
        for plugin in self.pre:
            plugin.process(copy)
        return copy

    def postprocess(self, text: str) -> str:
        for plugin in self.post:
            text = plugin.apply(text)
        return text

    def stream(self) -> TextStream:
        return Chain([p.stream() for p in self.post])


def build_pipeline(configs: Iterable[Any], where: str = "plugins") -> Pipeline:
    """Instantiate processors from PluginConfig entries; ValueError names the bad entry."""
    pipeline = Pipeline()
    known = available()
    for i, config in enumerate(configs):
        if config.name not in known:
            raise ValueError(f"{where}[{i}]: unknown plugin {config.name!r} (known: {', '.join(sorted(known))})")
        try:
            plugin = instantiate(config.name, config.options)
        except ValueError as exc:
            raise ValueError(f"{where}[{i}] ({config.name}): {exc}") from None
        if getattr(config, "enabled", True):  # a disabled entry is still checked, so enabling it cannot fail
            (pipeline.pre if plugin.stage == "pre" else pipeline.post).append(plugin)
    return pipeline


class Plugins:
    """The pipelines configured per model name, "*" applying to every model without its own entry."""

    def __init__(self, configs: dict[str, list[Any]]):
        self.configs = {model: list(entries) for model, entries in configs.items()}
        self.pipelines = {model: build_pipeline(entries, f"plugins.{model}") for model, entries in configs.items()}
        self.empty = Pipeline()

    def for_model(self, requested: str, resolved: str) -> Pipeline:
        for name in (requested, resolved, "*"):
            if name in self.pipelines:
                return self.pipelines[name]
        return self.empty
