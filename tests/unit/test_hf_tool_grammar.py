"""The tool-call grammar (families.Family.tool_tag) and what models declare about tools and reasoning."""

from __future__ import annotations

import json

import pytest

xgrammar = pytest.importorskip("xgrammar")

from forgeway.core.generation import ChatMessage, GenerationRequest  # noqa: E402
from forgeway.core.tools import Tool, ToolChoice  # noqa: E402
from forgeway.services.hf.families import FAMILIES, reply_format  # noqa: E402

SCHEMA = {"type": "object", "properties": {"unit": {"enum": ["c", "f"]}}, "required": ["unit"]}
TOOLS = (Tool("get_weather", parameters=SCHEMA), Tool("get_time", strict=True, parameters=SCHEMA))


def request(mode: str, function: str = "", tools=TOOLS, **fields) -> GenerationRequest:
    return GenerationRequest(model="m", messages=(ChatMessage("user", "hi"),), tools=tools,
                             tool_choice=ToolChoice(mode, function), **fields)


def accepts(tag: dict, text: str) -> bool:
    matcher = xgrammar.GrammarMatcher(xgrammar.GrammarCompiler(xgrammar.TokenizerInfo([])).compile_structural_tag(
        json.dumps(tag)))
    return matcher.accept_string(text) and matcher.is_completed()


CALL = '<tool_call>\n{"name": "%s", "arguments": {"unit": "c"}}\n</tool_call>'


def test_required_takes_one_or_more_calls_and_nothing_else():
    hermes = FAMILIES["hermes"]
    tag = hermes.tool_tag(request("required"))
    assert accepts(tag, CALL % "get_weather")
    assert accepts(tag, CALL % "get_weather" + "\n" + CALL % "get_time")
    assert not accepts(tag, "Hello " + CALL % "get_weather")
    assert not accepts(tag, CALL.replace('"c"', '"k"') % "get_weather")  # arguments against the schema
    assert not accepts(tag, "")
    single = hermes.tool_tag(request("required", parallel_tool_calls=False))
    assert not accepts(single, CALL % "get_weather" + "\n" + CALL % "get_time")


def test_a_named_function_is_the_only_call():
    tag = FAMILIES["hermes"].tool_tag(request("function", "get_time"))
    assert accepts(tag, CALL % "get_time") and not accepts(tag, CALL % "get_weather")


def test_auto_constrains_only_when_a_tool_is_strict():
    hermes = FAMILIES["hermes"]
    assert hermes.tool_tag(request("auto", tools=TOOLS[:1])) is None
    tag = hermes.tool_tag(request("auto"))
    assert accepts(tag, "Just text.") and accepts(tag, "Text " + CALL % "get_time")
    assert not accepts(tag, CALL.replace('"c"', '"k"') % "get_time")  # strict: its schema holds
    assert accepts(tag, CALL.replace('{"unit": "c"}', '{"x": 1}') % "get_weather")  # not strict: any object


def test_thinking_comes_before_forced_calls():
    tag = FAMILIES["hermes"].tool_tag(request("required", thinking=True))
    assert accepts(tag, "Let me see.</think>\n\n" + CALL % "get_time")


def test_llama_calls_use_parameters():
    tag = FAMILIES["llama3"].tool_tag(request("function", "get_time"))
    assert accepts(tag, '{"name": "get_time", "parameters": {"unit": "f"}}')


def test_the_tiny_template_renders_tools_and_thinking_and_a_plain_one_neither():
    from forgeway.demo.tokenizer import train_tokenizer

    tokenizer = train_tokenizer()
    form = reply_format(tokenizer)
    assert form.family.name == "hermes" and form.tools and form.thinking and form.unsupported() == {}
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    assert set(reply_format(tokenizer).unsupported()) == {"tools", "reasoning"}
    assert "has no tools" in reply_format(tokenizer).unsupported()["tools"]


def test_forcing_calls_in_a_format_without_a_grammar_is_refused_naming_the_field():
    from types import SimpleNamespace

    from forgeway.core.errors import Unsupported
    from forgeway.services.hf.families import ReplyFormat
    from forgeway.services.hf.intake import tool_tag

    mistral = SimpleNamespace(reply=ReplyFormat(FAMILIES["mistral"]))  # tool_tag reads only the reply format
    with pytest.raises(Unsupported) as info:
        tool_tag(mistral, request("required"))
    assert info.value.feature == "tool_choice" and "mistral" in str(info.value)
    with pytest.raises(Unsupported) as info:
        tool_tag(mistral, request("auto"))  # get_time is strict
    assert info.value.feature == "tools"
    assert tool_tag(mistral, request("auto", tools=TOOLS[:1])) is None  # nothing to force: parsed, not constrained
    bad = (Tool("get_time", parameters={"type": "object", "patternProperties": {"x": {}}}),)
    with pytest.raises(Unsupported) as info:
        tool_tag(SimpleNamespace(reply=ReplyFormat(FAMILIES["hermes"])), request("required", tools=bad))
    assert info.value.feature == "tools" and "patternProperties" in str(info.value)
