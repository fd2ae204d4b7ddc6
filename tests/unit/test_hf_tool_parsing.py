"""Reading answers into content, reasoning and tool calls (services/hf/replies.py) with crafted model output."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")

from prometheus_client import REGISTRY  # noqa: E402

from forgeway.core.tools import Tool, ToolCallAssembler  # noqa: E402
from forgeway.demo.chat_template import RESPONSE_TEMPLATE  # noqa: E402
from forgeway.services.hf.families import FAMILIES, ReplyFormat, detect_family, lenient  # noqa: E402
from forgeway.services.hf.replies import CallText, Reply  # noqa: E402

HERMES = ReplyFormat(FAMILIES["hermes"], lenient(RESPONSE_TEMPLATE), True, True, True)
TOOLS = (Tool("get_weather"), Tool("get_time"))
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": [1, 2]}}\n</tool_call>'


def read(text: str, chunk: int = 1, prefix: str = "<|im_start|>assistant\n", form: ReplyFormat = HERMES,
         tools=TOOLS, shaped: bool = False, model: str = "m"):
    """Feed `text` in pieces of `chunk` characters; the reply and every (content, reasoning, calls) piece."""
    reply = Reply(form, prefix, tools, shaped, model)
    pieces = [reply.feed(text[i:i + chunk]) for i in range(0, len(text), chunk)]
    pieces.append(reply.feed("", final=True))
    return reply, [p for p in pieces if any(p)]


def failures(model: str) -> float:
    return REGISTRY.get_sample_value("forgeway_tool_call_parse_failures_total", {"service": "hf", "model": model}) or 0


def test_content_then_a_call_in_any_chunking():
    whole, _ = read("Let me look. " + CALL, chunk=10_000)
    assert whole.content == "Let me look."
    assert [(c.name, json.loads(c.arguments)) for c in whole.calls()] == [("get_weather",
                                                                          {"city": "Paris", "days": [1, 2]})]
    assert whole.calls()[0].arguments == '{"city": "Paris", "days": [1, 2]}'  # the model's own text
    for chunk in (1, 2, 7):
        reply, pieces = read("Let me look. " + CALL, chunk)
        assert reply.content == "".join(p[0] for p in pieces) == whole.content
        assert [(c.name, c.arguments) for c in reply.calls()] == [(c.name, c.arguments) for c in whole.calls()]


def test_half_a_tag_is_never_content():
    reply = Reply(HERMES, "<|im_start|>assistant\n", TOOLS, False, "m")
    content, _, _ = reply.feed("Sure <tool_c")
    assert content == "Sure"
    content, _, calls = reply.feed('all>\n{"name": "get_time", "arguments": {}}\n</tool_call>')
    assert content == "" and [c.name for c in calls if c.name] == ["get_time"]


def test_a_call_that_does_not_parse_comes_back_as_content_and_is_counted():
    before = failures("broken")
    bad = '<tool_call>\n{"name": "get_weather", "arguments": {"city": }\n</tool_call>'
    reply, _ = read("Hello " + bad, chunk=3, model="broken")
    assert reply.calls() == [] and reply.content == "Hello" + bad
    assert failures("broken") == before + 1
    unknown, _ = read(CALL.replace("get_weather", "launch"), model="broken")  # not among the request's tools
    assert unknown.calls() == [] and "launch" in unknown.content
    assert failures("broken") == before + 2


def test_without_callable_tools_a_call_is_plain_content():
    before = failures("quiet")
    reply, _ = read(CALL, tools=(), model="quiet")
    assert reply.calls() == [] and reply.content == CALL
    assert failures("quiet") == before


def test_thinking_prefilled_goes_to_reasoning_until_the_tag_closes():
    reply, pieces = read("The user wants weather.\n</think>\n\nIt is sunny.", chunk=2,
                         prefix="<|im_start|>assistant\n<think>\n")
    assert reply.reasoning == "The user wants weather.\n" and reply.content == "It is sunny."
    first_content = next(i for i, p in enumerate(pieces) if p[0])
    assert all(not p[1] for p in pieces[first_content:]) and all(not p[0] for p in pieces[:first_content])


def test_thinking_switched_off_leaves_no_reasoning():
    reply, _ = read("It is sunny.", prefix="<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert reply.reasoning == "" and reply.content == "It is sunny."


def test_shaped_calls_stream_the_name_first_then_argument_text():
    reply, pieces = read(CALL + "\n" + CALL.replace("get_weather", "get_time"), chunk=3, shaped=True)
    deltas = [d for p in pieces for d in p[2]]
    assert deltas[0].name == "get_weather" and deltas[0].id.startswith("call_") and not deltas[0].arguments
    assert len([d for d in deltas if d.index == 0]) > 3  # the arguments arrive in several pieces
    assembler = ToolCallAssembler()
    for d in deltas:
        assembler.add(d)
    assert assembler.calls() == reply.calls()
    assert [(c.name, c.arguments) for c in reply.calls()] == [
        ("get_weather", '{"city": "Paris", "days": [1, 2]}'), ("get_time", '{"city": "Paris", "days": [1, 2]}')]
    assert reply.content == ""


def test_call_text_finds_the_arguments_object_with_braces_in_strings():
    call = CallText()
    for ch in ' {"name": "a", "arguments":  {"q": "}{\\"", "n": {"m": [1]}}}\n':
        call.add(ch)
    assert call.name == "a" and call.arguments == '{"q": "}{\\"", "n": {"m": [1]}}'


@pytest.mark.parametrize("family, prefix, text, content, calls", [
    ("llama3", "<|start_header_id|>assistant<|end_header_id|>\n\n",
     '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}', "",
     [("get_weather", {"city": "Paris"})]),
    ("llama3", "<|start_header_id|>assistant<|end_header_id|>\n\n",
     'Sure. {"name": "get_weather", "parameters": {"city": "Paris"}}; {"name": "get_time", "parameters": {}}',
     "Sure.", [("get_weather", {"city": "Paris"}), ("get_time", {})]),
    ("mistral", "[INST]Hi[/INST]",
     '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_time", "arguments": {}}]',
     "", [("get_weather", {"city": "Paris"}), ("get_time", {})]),
])
def test_family_fallbacks_read_their_calls(family, prefix, text, content, calls):
    form = ReplyFormat(FAMILIES[family], lenient(FAMILIES[family].response_template()), True)
    reply, _ = read(text, chunk=4, prefix=prefix, form=form)
    assert reply.content == content
    assert [(c.name, json.loads(c.arguments)) for c in reply.calls()] == calls


def test_families_are_told_apart_by_their_templates():
    assert detect_family("{% if tools %}<tool_call>{% endif %}").name == "hermes"
    assert detect_family("{{ '<|python_tag|>' }}{{ tools }}<|eot_id|>").name == "llama3"
    assert detect_family("[AVAILABLE_TOOLS]{{ tools }}[TOOL_CALLS]").name == "mistral"
    assert detect_family("{{ messages }}") is None


def test_a_streamed_call_cut_short_stays_a_call_marked_cut():
    before = failures("cut")
    reply, pieces = read(CALL[:60], chunk=5, shaped=True, model="cut")
    assert [c.name for c in reply.calls()] == ["get_weather"] and reply.cut
    assert reply.calls()[0].arguments == CALL[CALL.index('{"city"'):60]  # what was given out, nothing more
    assert reply.content == "" and failures("cut") == before + 1
    whole, _ = read(CALL, shaped=True, model="cut")
    assert not whole.cut


def test_forced_calls_leave_no_content_even_when_cut_inside_a_tag():
    reply, _ = read(CALL + "\n<tool_c", shaped=True, model="forced")
    assert reply.content == "<tool_c"
    forced = Reply(HERMES, "<|im_start|>assistant\n", TOOLS, True, "forced", forced=True)
    forced.feed(CALL + "\n<tool_c")
    forced.feed("", final=True)
    assert forced.content == "" and [c.name for c in forced.calls()] == ["get_weather"]
