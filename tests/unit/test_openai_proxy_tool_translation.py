"""The OpenAI proxy's tool calling and reasoning, both ways: requests to upstream calls, and the upstreams' JSON
(OpenAI, vLLM, llama.cpp's server, llama-cpp-python) back to tool calls, their pieces and reasoning."""

from __future__ import annotations

import json

import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from forgeway.core.errors import InvalidArgument, Unsupported
from forgeway.core.generation import ChatMessage, FinishReason, GenerationRequest
from forgeway.core.tools import ToolCall, ToolCallDelta
from forgeway.services.openai_proxy.engine import OpenAIProxyEngine
from forgeway.services.openai_proxy.errors import upstream_error
from forgeway.services.openai_proxy.settings import OpenAIProxySettings, UpstreamModel
from forgeway.services.openai_proxy.translate import (
    ToolCallRelay,
    UpstreamCall,
    build_call,
    chat_message,
    finish_reason,
    pieces,
)
from forgeway.v1 import generate_pb2 as pb

MODEL = UpstreamModel(name="m")
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
CHAT = UpstreamCall(chat=True, kwargs={})


def settings(**values) -> OpenAIProxySettings:
    return OpenAIProxySettings(port=0, **values)


def request(*names: str, mode: int = 0, function: str = "", **fields) -> GenerationRequest:
    tools = [pb.Tool(function=pb.FunctionDefinition(name=n, parameters=json.dumps(WEATHER))) for n in names]
    choice = {"tool_choice": pb.ToolChoice(mode=mode, function=function)} if mode else {}
    return GenerationRequest.from_proto(pb.GenerateRequest(
        model="m", messages=[pb.Message(role="user", content="Weather in Paris?")], tools=tools, **choice, **fields))


def test_tools_and_each_tool_choice_are_forwarded():
    kwargs = build_call(request("get_weather"), MODEL, settings()).kwargs
    assert kwargs["tools"] == [{"type": "function", "function": {"name": "get_weather", "description": "",
                                                                 "parameters": WEATHER}}]  # fmt: skip
    assert kwargs["tool_choice"] == "auto" and "parallel_tool_calls" not in kwargs
    for mode, sent in ((pb.TOOL_CHOICE_MODE_NONE, "none"), (pb.TOOL_CHOICE_MODE_REQUIRED, "required")):
        assert build_call(request("get_weather", mode=mode), MODEL, settings()).kwargs["tool_choice"] == sent
    named = build_call(request("a", "b", mode=pb.TOOL_CHOICE_MODE_FUNCTION, function="b"), MODEL, settings())
    assert named.kwargs["tool_choice"] == {"type": "function", "function": {"name": "b"}}
    single = build_call(request("a", parallel_tool_calls=False), MODEL, settings())
    assert single.kwargs["parallel_tool_calls"] is False and not single.parallel_tool_calls
    assert "tools" not in build_call(request(), MODEL, settings()).kwargs


def test_required_where_the_upstream_cannot_is_the_one_function_or_rejected():
    quirky = settings(tool_choice_required=False)
    one = build_call(request("a", mode=pb.TOOL_CHOICE_MODE_REQUIRED), MODEL, quirky)
    assert one.kwargs["tool_choice"] == {"type": "function", "function": {"name": "a"}}
    with pytest.raises(Unsupported) as caught:
        build_call(request("a", "b", mode=pb.TOOL_CHOICE_MODE_REQUIRED), MODEL, quirky)
    assert caught.value.feature == "tool_choice"


def test_the_thinking_switch_in_each_upstream_style():
    on, off = request(thinking=True), request(thinking=False)
    switch = build_call(off, MODEL, settings()).kwargs["extra_body"]
    assert switch == {"chat_template_kwargs": {"enable_thinking": False}}
    effort = settings(thinking="reasoning_effort", thinking_efforts=("minimal", "high"))
    assert build_call(off, MODEL, effort).kwargs["reasoning_effort"] == "minimal"
    assert build_call(on, MODEL, effort).kwargs["reasoning_effort"] == "high"
    assert "reasoning_effort" not in build_call(request(), MODEL, effort).kwargs
    with pytest.raises(Unsupported):
        build_call(on, MODEL, settings(thinking="none"))


def test_the_engine_declares_tools_and_reasoning_unless_the_upstream_has_no_switch():
    assert OpenAIProxyEngine(settings()).features().tools
    assert OpenAIProxyEngine(settings()).features().reasoning
    assert not OpenAIProxyEngine(settings(thinking="none")).features().reasoning


def test_messages_with_tool_calls_results_and_reasoning():
    call = ToolCall("call_1", "get_weather", '{"city": "Paris"}')
    assistant = ChatMessage("assistant", "", (call,), reasoning="The user wants weather.")
    sent = chat_message(assistant, settings())
    assert sent == {"role": "assistant", "content": None, "reasoning_content": "The user wants weather.",
                    "tool_calls": [{"id": "call_1", "type": "function",
                                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}
    assert chat_message(assistant, settings(null_tool_call_content=False))["content"] == ""
    assert "reasoning_content" not in chat_message(assistant, settings(thinking="reasoning_effort"))
    assert chat_message(ChatMessage("tool", "sunny", tool_call_id="call_1"), settings()) == {
        "role": "tool", "content": "sunny", "tool_call_id": "call_1"}


def test_a_vllm_answer_gives_tool_calls_and_reasoning():
    answer = ChatCompletion.model_validate({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "qwen",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": None, "message": {
            "role": "assistant", "content": None, "reasoning_content": "Paris, so get_weather.",
            "tool_calls": [{"id": "chatcmpl-tool-9", "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}}],
    })  # fmt: skip
    [piece] = pieces(answer, CHAT)
    assert piece.reasoning == "Paris, so get_weather."
    assert piece.tool_calls == [ToolCallDelta(0, "chatcmpl-tool-9", "get_weather", '{"city": "Paris"}')]
    assert finish_reason(piece.reason, piece.source, stops=False, called=True) is FinishReason.TOOL_CALLS


def chunk(delta: dict, reason: str | None = None) -> ChatCompletionChunk:
    return ChatCompletionChunk.model_validate({
        "id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": reason}]})  # fmt: skip


def test_streamed_reasoning_under_either_name():
    assert pieces(chunk({"reasoning_content": "Let me"}), CHAT)[0].reasoning == "Let me"
    assert pieces(chunk({"reasoning": " think"}), CHAT)[0].reasoning == " think"
    assert pieces(chunk({"reasoning": " think"}), CHAT)[0].is_token
    assert pieces(chunk({"content": "Hi"}), CHAT)[0].reasoning == ""


def test_relayed_pieces_name_a_call_once_and_reassemble():
    """llama-cpp-python repeats id and name in every chunk; OpenAI sends them once; some servers send no id."""
    relay = ToolCallRelay(parallel=True)
    repeated = [ToolCallDelta(0, "call_x", "get_weather", '{"ci'), ToolCallDelta(0, "call_x", "get_weather", 'ty": 1}')]
    sent = [p for upstream in repeated for p in relay.relay(0, [upstream])]
    assert sent == [ToolCallDelta(0, "call_x", "get_weather", '{"ci'), ToolCallDelta(0, "", "", 'ty": 1}')]
    assert relay.relay(0, [ToolCallDelta(1, "", "get_time", "")])[0].id.startswith("call_")
    assert [(c.id, c.name, c.arguments) for c in relay.calls(0)][0] == ("call_x", "get_weather", '{"city": 1}')
    assert relay.calls(0)[1].arguments == "{}" and relay.calls(1) == []


def test_with_parallel_calls_off_a_second_call_is_dropped():
    relay = ToolCallRelay(parallel=False)
    relay.relay(0, [ToolCallDelta(0, "a", "f", "{}"), ToolCallDelta(1, "b", "g", "{}")])
    assert relay.relay(0, [ToolCallDelta(1, "", "", "more")]) == []
    assert [c.id for c in relay.calls(0)] == ["a"]


def test_finish_reasons_of_tool_calls():
    assert finish_reason("tool_calls", None, stops=False) is FinishReason.TOOL_CALLS
    assert finish_reason("function_call", None, stops=False) is FinishReason.TOOL_CALLS
    assert finish_reason("stop", None, stops=True, called=True) is FinishReason.TOOL_CALLS  # OpenAI, named choice
    assert finish_reason("length", None, stops=False, called=True) is FinishReason.LENGTH


def test_an_upstream_that_rejects_tools_is_invalid_argument_with_its_message():
    body = {"message": "Invalid schema for function 'get_weather'", "param": "tools[0].function.parameters",
            "code": "invalid_function_parameters"}  # fmt: skip
    response = httpx2.Response(400, request=httpx2.Request("POST", "https://upstream.example/v1/chat/completions"))
    error = upstream_error(openai.BadRequestError("Error code: 400", response=response, body=body), model="m",
                           secret="", timeout=1.0)  # fmt: skip
    assert isinstance(error, InvalidArgument) and error.field == "tools[0].function.parameters"
    assert "Invalid schema for function 'get_weather'" in error.message
    effort = upstream_error(openai.BadRequestError("Error code: 400", response=response,
                            body={"message": "reasoning_effort 'none' is not supported", "param": "reasoning_effort"}),
                            model="m", secret="", timeout=1.0)  # fmt: skip
    assert effort.field == "thinking"
