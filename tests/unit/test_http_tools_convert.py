"""The shim's tool calling and reasoning: OpenAI's shapes -> GenerateRequest, and tool calls, reasoning and their
stream pieces -> OpenAI's message, delta and finish reason; errors named by OpenAI's parameters."""

from __future__ import annotations

import json

import grpc
import pytest
from pydantic import ValidationError

from forgeway.core.errors import ForgewayError, InvalidArgument, Unsupported
from forgeway.core.generation import GenerationRequest
from forgeway.gateway.http import convert
from forgeway.gateway.http.errors import from_grpc
from forgeway.gateway.http.schemas import ChatCompletionRequest, CompletionRequest
from forgeway.v1 import generate_pb2

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city.", "strict": True,
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
HISTORY = [
    {"role": "user", "content": "Weather in Oslo?"},
    {"role": "assistant", "content": None, "tool_calls": [CALL], "reasoning_content": "Ask the tool."},
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
]


def chat(**extra) -> ChatCompletionRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}
    return ChatCompletionRequest.model_validate(body)


def validated(body: ChatCompletionRequest) -> GenerationRequest:
    """The converted request as the gateway (or a backend) validates it."""
    return GenerationRequest.from_proto(convert.chat_request(body))


def test_tools_and_choice_map_onto_the_contract():
    request = convert.chat_request(chat(tools=[WEATHER], tool_choice="required", parallel_tool_calls=False))
    (tool,) = request.tools
    assert (tool.function.name, tool.function.description, tool.function.strict) == (
        "get_weather", "Weather in a city.", True)
    assert json.loads(tool.function.parameters) == WEATHER["function"]["parameters"]
    assert request.tool_choice.mode == generate_pb2.TOOL_CHOICE_MODE_REQUIRED
    assert request.HasField("parallel_tool_calls") and not request.parallel_tool_calls
    domain = GenerationRequest.from_proto(request)
    assert domain.tool_choice.forced and domain.features() >= {"tools"}


@pytest.mark.parametrize(("choice", "mode", "function"), [
    ("none", "none", ""), ("auto", "auto", ""), ("required", "required", ""),
    ({"type": "function", "function": {"name": "get_weather"}}, "function", "get_weather"),
])
def test_every_tool_choice_form(choice, mode, function):
    parsed = validated(chat(tools=[WEATHER], tool_choice=choice)).tool_choice
    assert (parsed.mode, parsed.function) == (mode, function)


def test_unset_tool_fields_stay_unset():
    request = convert.chat_request(chat())
    assert not request.tools and not request.HasField("tool_choice")
    assert not request.HasField("parallel_tool_calls") and not request.HasField("thinking")


def test_history_with_tool_calls_results_and_reasoning():
    request = convert.chat_request(chat(messages=HISTORY, tools=[WEATHER]))
    assistant, tool = request.messages[1], request.messages[2]
    assert assistant.content == "" and assistant.reasoning == "Ask the tool."
    assert [(c.id, c.name, json.loads(c.arguments)) for c in assistant.tool_calls] == [
        ("call_1", "get_weather", {"city": "Oslo"})]
    assert (tool.role, tool.tool_call_id, tool.content) == ("tool", "call_1", "sunny")
    assert validated(chat(messages=HISTORY, tools=[WEATHER])).messages[2].tool_call_id == "call_1"


@pytest.mark.parametrize(("effort", "thinking"), [("none", False), ("minimal", True), ("low", True),
                                                  ("medium", True), ("high", True)])
def test_reasoning_effort_is_the_thinking_switch(effort, thinking):
    request = convert.chat_request(chat(reasoning_effort=effort))
    assert request.HasField("thinking") and request.thinking is thinking
    assert "reasoning" in GenerationRequest.from_proto(request).features()


@pytest.mark.parametrize(("extra", "field"), [
    ({"tools": [{**WEATHER, "function": {"name": "f", "parameters": {"type": "object", "properties": 3}}}]},
     "tools[0].function.parameters"),
    ({"tools": [{**WEATHER, "function": {"name": "f", "parameters": {"type": "array"}}}]},
     "tools[0].function.parameters"),
    ({"tools": [{**WEATHER, "function": {"name": "f", "parameters": "an object"}}]}, "tools[0].function.parameters"),
    ({"tools": [WEATHER, {**WEATHER, "function": {"name": "bad name!"}}]}, "tools[1].function.name"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "call_9", "content": "r"}]},
     "messages[1].tool_call_id"),
    ({"messages": [{"role": "user", "content": "x", "tool_call_id": "call_1"}]}, "messages[0].tool_call_id"),
    ({"messages": [{"role": "assistant", "content": None, "tool_calls": [
        {**CALL, "function": {"name": "get_weather", "arguments": "{oops"}}]}]}, "messages[0].tool_calls[0].arguments"),
])
def test_semantic_errors_are_left_to_the_core_and_keep_openai_names(extra, field):
    """The shim's schema lets these through, so the error names the exact field rather than a vaguer pydantic one."""
    body = chat(**extra)
    with pytest.raises(InvalidArgument) as info:
        validated(body)
    assert info.value.field == field
    assert convert.param_mapper(body)(field) == field


@pytest.mark.parametrize(("extra", "param"), [
    ({"tools": [{"type": "custom", "custom": {"name": "f"}}]}, "tools"),
    ({"tool_choice": "sometimes"}, "tool_choice"),
    ({"reasoning_effort": "extreme"}, "reasoning_effort"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function"}]}]}, "messages"),
])
def test_malformed_shapes_are_rejected_by_the_schema(extra, param):
    with pytest.raises(ValidationError) as info:
        chat(**extra)
    assert info.value.errors()[0]["loc"][0] == param


def test_legacy_functions_stay_unsupported_and_completions_take_no_tools():
    with pytest.raises(ValidationError) as info:
        chat(functions=[{"name": "f"}])
    assert info.value.errors()[0]["ctx"]["param"] == "functions"
    for extra in ({"tools": [WEATHER]}, {"reasoning_effort": "low"}):
        with pytest.raises(ValidationError) as info:
            CompletionRequest.model_validate({"model": "m", "prompt": "p", **extra})
        assert info.value.errors()[0]["type"] == "unsupported_parameter"


def rpc_error(error: ForgewayError) -> grpc.aio.AioRpcError:
    """The error as a client receives it: its code, message and rich status in the trailing metadata."""
    trailing = grpc.aio.Metadata(("grpc-status-details-bin", error.to_status().SerializeToString()))
    return grpc.aio.AioRpcError(error.code, grpc.aio.Metadata(), trailing, details=error.message)


def test_unsupported_reasoning_names_reasoning_effort():
    error = from_grpc(rpc_error(Unsupported("reasoning", "echo")), convert.param_mapper(chat(reasoning_effort="low")))
    assert (error.status, error.param, error.code) == (400, "reasoning_effort", "unsupported_parameter")
    assert error.message.startswith("Unsupported parameter 'reasoning_effort': reasoning is not supported")
    tools = from_grpc(rpc_error(Unsupported("tools", "echo")), convert.param_mapper(chat(tools=[WEATHER])))
    assert (tools.param, tools.message) == ("tools", "tools is not supported by the echo backend")


def choice(**fields) -> generate_pb2.Choice:
    return generate_pb2.Choice(index=0, **fields)


def test_tool_calls_answer_null_content_and_finish_reason_tool_calls():
    response = generate_pb2.GenerateResponse(model="m", choices=[choice(
        finish_reason=generate_pb2.FINISH_REASON_TOOL_CALLS, reasoning="Use the tool.",
        tool_calls=[generate_pb2.ToolCall(id="call_1", name="get_weather", arguments='{"city": "Oslo"}')])])
    body = convert.chat_completion(response, "chatcmpl-1", 5)["choices"][0]
    assert (body["finish_reason"], body["forgeway_finish_reason"]) == ("tool_calls", "tool_calls")
    assert body["message"] == {"role": "assistant", "content": None, "refusal": None, "tool_calls": [CALL],
                               "reasoning_content": "Use the tool."}
    plain = convert.chat_completion(generate_pb2.GenerateResponse(model="m", choices=[choice(text="hi")]), "c", 5)
    assert plain["choices"][0]["message"] == {"role": "assistant", "content": "hi", "refusal": None}


def piece(index: int, arguments: str, id: str = "", name: str = "") -> generate_pb2.ToolCallDelta:
    return generate_pb2.ToolCallDelta(index=index, id=id, name=name, arguments=arguments)


def test_stream_pieces_carry_id_type_and_name_only_first():
    sent = convert.StreamedChat()
    first = sent.add(generate_pb2.GenerateDelta(index=0, tool_calls=[piece(0, '{"ci', "call_1", "get_weather")]))
    later = sent.add(generate_pb2.GenerateDelta(index=0, tool_calls=[piece(0, 'ty": "Oslo"}')]))
    assert first == {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                     "function": {"name": "get_weather", "arguments": '{"ci'}}]}
    assert later == {"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Oslo"}'}}]}
    assert sent.add(generate_pb2.GenerateDelta(index=0, reasoning="hm")) == {"reasoning_content": "hm"}
    assert sent.add(generate_pb2.GenerateDelta(index=0, text="")) == {"content": ""}


def test_the_final_message_adds_only_what_the_stream_left_out():
    final = choice(text="Checking.", reasoning="Think first.", finish_reason=generate_pb2.FINISH_REASON_TOOL_CALLS,
                   tool_calls=[generate_pb2.ToolCall(id="call_1", name="get_weather", arguments='{"city": "Oslo"}'),
                               generate_pb2.ToolCall(id="call_2", name="get_weather", arguments='{"city": "Rome"}')])
    sent = convert.StreamedChat()
    sent.add(generate_pb2.GenerateDelta(index=0, text="Checking.", reasoning="Think ",
                                        tool_calls=[piece(0, '{"city": ', "call_1", "get_weather")]))
    assert sent.rest(final) == {"reasoning_content": "first.", "tool_calls": [
        {"index": 0, "function": {"arguments": '"Oslo"}'}},
        {"index": 1, "id": "call_2", "type": "function", "function": {"name": "get_weather",
                                                                      "arguments": '{"city": "Rome"}'}}]}
    everything = convert.StreamedChat()
    everything.add(generate_pb2.GenerateDelta(index=0, text="Checking.", reasoning="Think first.", tool_calls=[
        piece(0, '{"city": "Oslo"}', "call_1", "get_weather"), piece(1, '{"city": "Rome"}', "call_2", "get_weather")]))
    assert everything.rest(final) == {}
