"""Tool calls and the thinking switch in llama-server's terms (services/llamacpp/tools.py), and its answers back."""

from __future__ import annotations

import json

import pytest

from forgeway.core.errors import InvalidArgument
from forgeway.core.generation import ChatMessage, FinishReason, GenerationRequest
from forgeway.core.tools import Tool, ToolCall, ToolCallAssembler, ToolChoice
from forgeway.services.llamacpp import native, tools
from forgeway.services.llamacpp.settings import ModelConfig

WEATHER = Tool("get_weather", "weather", {"type": "object", "properties": {"city": {"type": "string"}},
                                          "required": ["city"]})
CLOCK = Tool("get_time")
ASK = (ChatMessage("user", "Weather in Paris?"),)


def request(mode: str = "auto", function: str = "", **fields) -> GenerationRequest:
    return GenerationRequest(model="m", messages=ASK, tools=(WEATHER, CLOCK), tool_choice=ToolChoice(mode, function),
                             **fields)


def test_auto_offers_every_tool_to_llama_cpps_own_parser():
    fields = tools.chat_fields(request(parallel_tool_calls=False))
    assert fields == {"tools": [WEATHER.to_template(), CLOCK.to_template()], "tool_choice": "auto",
                      "parallel_tool_calls": False}


def test_none_renders_the_tools_parses_no_call_and_thinking_goes_as_the_templates_switch():
    fields = tools.chat_fields(request("none", thinking=True))
    assert fields["chat_template_kwargs"] == {"enable_thinking": True} and fields["tool_choice"] == "none"
    assert [t["function"]["name"] for t in fields["tools"]] == ["get_weather", "get_time"]


def test_a_named_function_is_one_call_of_it_under_a_grammar_or_a_schema():
    fields = tools.chat_fields(request("function", "get_weather"), call_grammar="root ::= x")
    assert fields["grammar"] == "root ::= x" and fields["tool_choice"] == "none" and len(fields["tools"]) == 2
    schema = tools.chat_fields(request("function", "get_weather"))["json_schema"]
    assert schema == tools.call_schema(WEATHER)
    assert schema["properties"]["name"] == {"const": "get_weather"}
    assert tools.call_schema(CLOCK)["properties"]["arguments"] == {"type": "object", "properties": {}}


def test_required_is_any_tool_once_or_a_list_of_calls_when_parallel():
    assert tools.forced_schema(request("required", parallel_tool_calls=False)) == {
        "anyOf": [tools.call_schema(WEATHER), tools.call_schema(CLOCK)]}
    parallel = tools.forced_schema(request("required"))
    assert parallel["type"] == "array" and parallel["minItems"] == 1


def test_tools_and_a_response_format_cannot_be_held_together():
    with pytest.raises(InvalidArgument) as caught:
        tools.chat_fields(request(json_object=True))
    assert caught.value.field == "structured_output"


def test_forced_answers_become_calls_with_the_models_own_argument_text():
    calls = tools.forced_calls('[{"name": "get_weather", "arguments": {"city": "Paris"}}, '
                               '{"name":"get_time","arguments":{} }]')
    assert [(c.name, c.arguments) for c in calls] == [("get_weather", '{"city": "Paris"}'), ("get_time", "{}")]
    assert all(c.id.startswith("call_") for c in calls) and calls[0].id != calls[1].id
    assert [(c.name, c.arguments) for c in tools.forced_calls('{"name": "get_weather", "arguments": {"city": "Par')
            ] == [("get_weather", '{"city": "Par')]  # cut short: what there is, as OpenAI streams it
    assert tools.forced_calls('{"name": "get_weather"') == []


def test_a_forced_answer_is_read_piece_by_piece_as_it_grows():
    reader, pieces, text = tools.ForcedCalls(), [], ""
    answer = '[{"name": "get_weather", "arguments": {"city": "Pa}ris"}}, {"name": "get_time", "arguments": {}}]'
    for i in range(0, len(answer), 5):
        text += answer[i:i + 5]
        pieces += reader.read(text)
    assembler = ToolCallAssembler()
    for piece in pieces:
        assembler.add(piece)
    assert [(c.name, c.arguments) for c in assembler.calls()] == [("get_weather", '{"city": "Pa}ris"}'),
                                                                  ("get_time", "{}")]
    assert [(c.name, c.arguments) for c in assembler.calls()] == [(c.name, c.arguments)
                                                                  for c in tools.forced_calls(answer)]
    assert len([p for p in pieces if p.index == 0]) > 2  # the arguments came in several pieces


def test_streamed_pieces_keep_llama_servers_id_or_get_one():
    ids: dict[int, str] = {}
    first = tools.call_delta({"index": 0, "id": "abc", "function": {"name": "get_weather", "arguments": ""}}, ids)
    more = tools.call_delta({"index": 0, "function": {"arguments": '{"city": "Paris"}'}}, ids)
    other = tools.call_delta({"index": 1, "function": {"name": "get_time", "arguments": "{}"}}, ids)
    assert (first.id, more.id) == ("abc", "") and other.id.startswith("call_")
    assembler = ToolCallAssembler()
    for piece in (first, more, other):
        assembler.add(piece)
    assert assembler.calls() == [ToolCall("abc", "get_weather", '{"city": "Paris"}'),
                                 ToolCall(other.id, "get_time", "{}")]


def test_a_unary_answer_with_calls_and_reasoning_finishes_with_tool_calls():
    state = native.ChoiceState(0)
    native.read_chat({"choices": [{"finish_reason": "tool_calls", "message": {
        "content": "", "reasoning_content": "It is about weather.",
        "tool_calls": [{"id": "c1", "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]}}]}, state, 0)
    choice = state.completion()
    assert choice.finish_reason == FinishReason.TOOL_CALLS and choice.reasoning == "It is about weather."
    assert choice.tool_calls == [ToolCall("c1", "get_weather", '{"city":"Paris"}')]


def test_a_forced_stream_sends_calls_never_text():
    state = native.ChoiceState(0, forced=True)
    state.add_text('{"name": "get_time", "arguments": ')
    assert state.delta(len(state.text)) is None
    state.add_text('{')
    first = state.delta(len(state.text))
    assert first.text == "" and [(p.name, p.arguments) for p in first.tool_calls] == [("get_time", ""), ("", "{")]
    state.add_text("}}")
    state.finish(FinishReason.STOP)
    last = state.delta(len(state.text))
    assert last.text == "" and [(p.name, p.arguments) for p in last.tool_calls] == [("", "}")]
    assert state.completion().finish_reason == FinishReason.TOOL_CALLS and state.completion().text == ""


def test_a_call_cut_short_finishes_with_length():
    state = native.ChoiceState(0, forced=True)
    state.add_text('{"name": "get_time", "arguments": {"zo')
    state.finish(FinishReason.LENGTH)
    assert state.completion().finish_reason == FinishReason.LENGTH
    assert [(c.name, c.arguments) for c in state.completion().tool_calls] == [("get_time", '{"zo')]


def test_the_compact_grammar_keeps_llama_cpps_rules_but_one_space():
    grammar = 'root ::= "{" space "}"\nspace ::= | " " | "\\n"{1,2} [ \\t]{0,20}\n'
    assert tools.compact(grammar) == 'root ::= "{" space "}"\nspace ::= " "?\n'


def test_thinking_follows_the_request_else_the_models_setting():
    assert tools.thinks(request(thinking=False), "on") is False
    assert tools.thinks(request(), "off") is False and tools.thinks(request(), "auto") is True


def test_llama_servers_refusals_about_tools_name_the_tools():
    error = native.error_of(400, b'{"error": {"message": "Unable to generate parser for this template"}}', request())
    assert isinstance(error, InvalidArgument) and error.field == "tools"
    error = native.error_of(400, b'{"error": {"message": "logprobs is not supported with tools + stream"}}', request())
    assert error.field == "logprobs"


def test_the_thinking_default_reaches_llama_server():
    assert ModelConfig(name="m").thinking == "off"
    assert ModelConfig.from_options("m", "", {"thinking": "auto"}).thinking == "auto"
