"""Tool calling and reasoning through the gateway's OpenAI-compatible API with the official `openai` client: forced
calls valid against their schema, streamed pieces that rebuild the call, a tool result continuing the chat, the
thinking switch, and 400s naming OpenAI's parameters. hf serves "tiny" with tools; echo serves it without."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import openai
import pytest
from pydantic import BaseModel, Field
from tools_harness import ASK, TOOLS, WEATHER, ToolsStack, check_call, tools_stack

pytestmark = [pytest.mark.hf, pytest.mark.slow]

NAMED = {"type": "function", "function": {"name": "get_weather"}}


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[ToolsStack]:
    with tools_stack(tmp_path_factory.mktemp("http-tools")) as running:
        yield running


@pytest.fixture(scope="module")
def client(stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.base_url, api_key="unused", max_retries=0)


def test_named_function_answers_a_valid_call_from_the_backend_with_tools(client):
    for _ in range(3):  # echo serves "tiny" too, without tools: the gateway must never pick it
        reply = client.chat.completions.create(model="tiny", messages=ASK, tools=TOOLS, tool_choice=NAMED,
                                               max_tokens=64)
        choice = reply.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        (call,) = choice.message.tool_calls
        assert call.type == "function" and call.id.startswith("call_") and call.function.name == "get_weather"
        check_call(call.function.name, call.function.arguments)
        assert reply.system_fingerprint.startswith("hf/")


def test_required_without_parallel_calls_makes_one_call(client):
    reply = client.chat.completions.create(model="tiny", messages=ASK, tools=TOOLS, tool_choice="required",
                                           parallel_tool_calls=False, max_tokens=64, seed=3, temperature=0.9)
    calls = reply.choices[0].message.tool_calls
    assert reply.choices[0].finish_reason == "tool_calls" and len(calls) == 1
    check_call(calls[0].function.name, calls[0].function.arguments)


def test_streamed_pieces_rebuild_the_unary_call(client):
    unary = client.chat.completions.create(model="tiny", messages=ASK, tools=TOOLS, tool_choice=NAMED,
                                           max_tokens=64).choices[0].message.tool_calls
    calls: dict[int, dict] = {}
    finish = None
    for chunk in client.chat.completions.create(model="tiny", messages=ASK, tools=TOOLS, tool_choice=NAMED,
                                                max_tokens=64, stream=True):
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for piece in choice.delta.tool_calls or ():
                if piece.index not in calls:  # a call's first piece: id, type and name
                    assert piece.id.startswith("call_") and piece.type == "function" and piece.function.name
                    calls[piece.index] = {"id": piece.id, "name": piece.function.name, "arguments": ""}
                else:  # later pieces: arguments only
                    assert piece.id is None and piece.type is None and piece.function.name is None
                calls[piece.index]["arguments"] += piece.function.arguments or ""
    assert finish == "tool_calls"
    assert [(c["name"], c["arguments"]) for _, c in sorted(calls.items())] == [
        (c.function.name, c.function.arguments) for c in unary]


class Forecast(BaseModel):
    """The forecast for a city."""

    city: Literal["Oslo", "Rome", "Lima"]
    days: int = Field(ge=1, le=7)


def test_the_openai_stream_helper_parses_a_strict_tool_call(client):
    """The SDK's own accumulator rebuilds the call from our chunks and parses it into the tool's pydantic model."""
    with client.chat.completions.stream(model="tiny", messages=ASK, tools=[openai.pydantic_function_tool(Forecast)],
                                        tool_choice={"type": "function", "function": {"name": "Forecast"}},
                                        max_tokens=64) as stream:
        final = stream.get_final_completion()
    (call,) = final.choices[0].message.tool_calls
    assert call.function.name == "Forecast" and isinstance(call.function.parsed_arguments, Forecast)


def test_a_tool_result_continues_the_conversation(client):
    first = client.chat.completions.create(model="tiny", messages=ASK, tools=TOOLS, tool_choice=NAMED,
                                           max_tokens=64).choices[0].message
    (call,) = first.tool_calls
    messages = [*ASK, first, {"role": "tool", "tool_call_id": call.id, "content": '{"forecast": "sunny"}'}]
    reply = client.chat.completions.create(model="tiny", messages=messages, tools=TOOLS, tool_choice="none",
                                           max_tokens=8)
    choice = reply.choices[0]
    assert choice.finish_reason in ("stop", "length") and isinstance(choice.message.content, str)
    assert not choice.message.tool_calls
    again = client.chat.completions.create(model="tiny", messages=[*messages, choice.message, *ASK], tools=TOOLS,
                                           tool_choice="required", parallel_tool_calls=False, max_tokens=64)
    assert again.choices[0].finish_reason == "tool_calls", again.choices[0].message
    check_call(again.choices[0].message.tool_calls[0].function.name,
               again.choices[0].message.tool_calls[0].function.arguments)


@pytest.mark.parametrize("effort", ["none", "high"])
def test_reasoning_effort_switches_thinking_and_reasoning_comes_apart(client, effort):
    reply = client.chat.completions.create(model="tiny", messages=ASK, reasoning_effort=effort, max_tokens=8)
    message = reply.choices[0].message
    assert reply.system_fingerprint.startswith("hf/")  # echo serves "tiny" too, without a thinking switch
    reasoning = (message.model_extra or {}).get("reasoning_content")
    assert bool(reasoning) == (effort != "none")
    streamed = ""
    for chunk in client.chat.completions.create(model="tiny", messages=ASK, reasoning_effort=effort, max_tokens=8,
                                                stream=True):
        for choice in chunk.choices:
            streamed += (choice.delta.model_extra or {}).get("reasoning_content") or ""
    assert streamed == (reasoning or "")


def bad_request(client: openai.OpenAI, **params) -> dict:
    params = {"model": "tiny", "messages": ASK, **params}
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(**params)
    assert info.value.status_code == 400 and info.value.body["type"] == "invalid_request_error"
    return info.value.body


def test_a_parameters_object_that_is_no_json_schema_is_named(client):
    broken = {**WEATHER, "function": {**WEATHER["function"], "parameters": {"type": "object", "required": "city"}}}
    body = bad_request(client, tools=[TOOLS[1], broken])
    assert (body["param"], body["code"]) == ("tools[1].function.parameters", "invalid_value")
    assert "JSON Schema" in body["message"]


def test_tool_choice_naming_an_unknown_function_is_named(client):
    body = bad_request(client, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "get_mood"}})
    assert body["param"] == "tool_choice" and "get_mood" in body["message"]


def test_a_tool_result_answering_no_call_is_named(client):
    body = bad_request(client, tools=TOOLS, messages=[*ASK, {"role": "tool", "tool_call_id": "call_x", "content": "r"}])
    assert body["param"] == "messages[1].tool_call_id" and "call_x" in body["message"]


def test_a_backend_without_tools_or_thinking_refuses_by_openai_parameter(client):
    tools = bad_request(client, tools=TOOLS, extra_body={"backend": "echo"})
    assert (tools["param"], tools["code"]) == ("tools", "unsupported_parameter")
    assert "tools is not supported by the echo backend" in tools["message"]
    effort = bad_request(client, reasoning_effort="low", extra_body={"backend": "echo"})
    assert (effort["param"], effort["code"]) == ("reasoning_effort", "unsupported_parameter")
    assert effort["message"].startswith("Unsupported parameter 'reasoning_effort'")
