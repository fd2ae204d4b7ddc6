"""The SDK's tool calling without a server: tools from dicts and Python functions, tool_choice, tool-call messages,
results and stream pieces, and the tool loop's decisions."""

from __future__ import annotations

import enum
import json
from typing import Annotated, Literal

import pytest

from forgeway.client import InvalidArgumentError, function_tool
from forgeway.client.convert import generation
from forgeway.client.requests import generate_request
from forgeway.client.streams import GenerationCursor
from forgeway.client.tool_runs import ToolLoop
from forgeway.client.types import Choice, Generation, ToolCall
from forgeway.core.generation import GenerationRequest
from forgeway.core.tools import check_schema
from forgeway.v1 import generate_pb2

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


class Unit(enum.Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius", days: int | None = None,
                tags: list[str] = (), scale: Unit = Unit.CELSIUS, at: tuple[float, float] | None = None,
                note: Annotated[str, "free text"] = "", **extra) -> str:
    """Get the weather
    in a city.

    Args:
        city: The city's name, e.g.
            Paris or Lyon: a place.
        unit (str): Temperature unit.
        days: How many days ahead.

    Returns:
        A sentence.
    """
    return f"sunny in {city}"


def test_a_function_becomes_a_tool_from_its_signature_and_docstring():
    tool = function_tool(get_weather)
    function = tool["function"]
    assert tool["type"] == "function" and function["name"] == "get_weather"
    assert function["description"] == "Get the weather in a city."
    parameters = function["parameters"]
    assert parameters["required"] == ["city"]
    properties = parameters["properties"]
    assert properties["city"] == {"type": "string", "description": "The city's name, e.g. Paris or Lyon: a place."}
    assert properties["unit"] == {"type": "string", "enum": ["celsius", "fahrenheit"],
                                  "description": "Temperature unit."}
    assert properties["days"] == {"anyOf": [{"type": "integer"}, {"type": "null"}],
                                  "description": "How many days ahead."}
    assert properties["tags"] == {"type": "array", "items": {"type": "string"}}
    assert properties["scale"] == {"type": "string", "enum": ["celsius", "fahrenheit"]}
    assert properties["at"]["anyOf"][0]["prefixItems"] == [{"type": "number"}, {"type": "number"}]
    assert properties["note"] == {"type": "string", "description": "free text"}
    assert "extra" not in properties  # **kwargs are not offered
    check_schema(parameters, "parameters")  # valid JSON Schema, with no "nullable" (transformers' non-standard word)
    assert "nullable" not in json.dumps(parameters)


def test_rest_style_docstrings_and_unannotated_parameters():
    def lookup(key, limit: int = 3):
        """Find a key.

        :param key: what to find
        :param limit: at most this many
        """

    parameters = function_tool(lookup)["function"]["parameters"]
    assert parameters == {"type": "object", "required": ["key"], "properties": {
        "key": {"description": "what to find"}, "limit": {"type": "integer", "description": "at most this many"}}}


def test_tools_from_dicts_and_functions_and_every_tool_choice():
    request = generate_request(
        "m", messages=[{"role": "user", "content": "hi"}], tools=[WEATHER, get_weather, WEATHER["function"]],
        tool_choice="get_weather", parallel_tool_calls=False, thinking=True)
    assert [t.function.name for t in request.tools] == ["get_weather"] * 3
    assert json.loads(request.tools[0].function.parameters) == WEATHER["function"]["parameters"]
    assert json.loads(request.tools[1].function.parameters)["required"] == ["city"]
    assert request.tool_choice == generate_pb2.ToolChoice(mode=generate_pb2.TOOL_CHOICE_MODE_FUNCTION,
                                                          function="get_weather")
    assert request.HasField("parallel_tool_calls") and not request.parallel_tool_calls and request.thinking
    modes = {"none": generate_pb2.TOOL_CHOICE_MODE_NONE, "auto": generate_pb2.TOOL_CHOICE_MODE_AUTO,
             "required": generate_pb2.TOOL_CHOICE_MODE_REQUIRED}
    for name, mode in modes.items():
        assert generate_request("m", messages=[], tool_choice=name).tool_choice.mode == mode
    openai_style = {"type": "function", "function": {"name": "get_weather"}}
    for choice in (openai_style, get_weather):
        assert generate_request("m", messages=[], tool_choice=choice).tool_choice.function == "get_weather"
    plain = generate_request("m", "hi")
    assert not plain.tools and not plain.HasField("tool_choice") and not plain.HasField("thinking")
    assert not plain.HasField("parallel_tool_calls")


def test_bad_tools_are_refused_naming_the_field():
    with pytest.raises(InvalidArgumentError) as error:
        generate_request("m", messages=[], tools=[WEATHER, {"type": "retrieval"}])
    assert dict(error.value.field_violations) == {"tools[1].type": "only function tools are offered, not 'retrieval'"}
    with pytest.raises(InvalidArgumentError):
        generate_request("m", messages=[], tools=[42])


def test_messages_carry_tool_calls_tool_results_and_reasoning_and_the_server_accepts_them():
    call = ToolCall("call_1", "get_weather", '{"city": "Paris"}')
    messages = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "reasoning_content": "look it up", "tool_calls": [
            {"id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Lyon"}}},
            call]},
        {"role": "tool", "tool_call_id": "call_0", "content": "rain"},
        {"role": "tool", "tool_call_id": "call_1", "content": "sun"},
    ]
    request = generate_request("m", messages=messages, tools=[WEATHER])
    assistant = request.messages[1]
    assert assistant.content == "" and assistant.reasoning == "look it up"
    assert [(c.id, c.name, json.loads(c.arguments)) for c in assistant.tool_calls] == [
        ("call_0", "get_weather", {"city": "Lyon"}), ("call_1", "get_weather", {"city": "Paris"})]
    assert [m.tool_call_id for m in request.messages[2:]] == ["call_0", "call_1"]
    parsed = GenerationRequest.from_proto(request)  # what every server does with it first
    assert parsed.tool_choice.mode == "auto" and parsed.messages[1].tool_calls[1].name == "get_weather"


def test_results_expose_tool_calls_their_args_and_reasoning():
    response = generate_pb2.GenerateResponse(model="m", choices=[generate_pb2.Choice(
        index=0, text="", finish_reason=generate_pb2.FINISH_REASON_TOOL_CALLS, reasoning="I should look",
        tool_calls=[generate_pb2.ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}')])])
    result = generation(response)
    assert result.finish_reason == "tool_calls" and result.reasoning == "I should look"
    (call,) = result.tool_calls
    assert (call.id, call.name, call.args) == ("call_1", "get_weather", {"city": "Paris"})
    assert result.message == {"role": "assistant", "content": "", "reasoning": "I should look", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}
    again = generate_request("m", messages=[result.message])  # the message goes back as it came
    assert again.messages[0].tool_calls[0].arguments == '{"city": "Paris"}'
    with pytest.raises(ValueError):
        _ = ToolCall("c", "f", "[1]").args


def test_a_stream_puts_tool_calls_back_together():
    pieces = [
        generate_pb2.GenerateDelta(index=0, reasoning="think"),
        generate_pb2.GenerateDelta(index=0, tool_calls=[generate_pb2.ToolCallDelta(index=0, id="call_a", name="f")]),
        generate_pb2.GenerateDelta(index=0, tool_calls=[generate_pb2.ToolCallDelta(index=0, arguments='{"x":')]),
        generate_pb2.GenerateDelta(index=0, tool_calls=[generate_pb2.ToolCallDelta(index=1, id="call_b", name="g",
                                                                                  arguments="{}")]),
        generate_pb2.GenerateDelta(index=0, reasoning="ing", tool_calls=[
            generate_pb2.ToolCallDelta(index=0, arguments=" 1}")]),
    ]
    cursor = GenerationCursor(None, None)
    deltas = [cursor.accept(generate_pb2.GenerateStreamResponse(delta=p)) for p in pieces]
    assert deltas[1].tool_calls[0].name == "f" and deltas[0].reasoning == "think"
    assert cursor.reasoning == "thinking" and cursor.text == ""
    assert [(c.id, c.name, c.args) for c in cursor.tool_calls()] == [("call_a", "f", {"x": 1}), ("call_b", "g", {})]
    assert cursor.tool_calls(1) == ()


def reply(text: str = "", *calls: ToolCall) -> Generation:
    return Generation("m", (Choice(0, text, "tool_calls" if calls else "stop", tool_calls=calls),))


def test_the_tool_loop_runs_calls_reports_errors_and_forces_an_answer_at_the_end():
    def divide(a: float, b: float) -> float:
        """Divide a by b."""
        return a / b

    loop = ToolLoop([("user", "1/0 and 4/2?")], [divide], max_rounds=1, tool_choice=["divide", "auto"],
                    options={"max_tokens": 8})
    first = loop.request()
    assert first["tool_choice"] == "divide" and first["max_tokens"] == 8
    assert first["tools"][0]["function"]["name"] == "divide"
    calls = loop.answered(reply("", ToolCall("c1", "divide", '{"a": 1, "b": 0}'),
                                ToolCall("c2", "divide", '{"a": 4, "b": 2}'), ToolCall("c3", "multiply", "{}"),
                                ToolCall("c4", "divide", '{"a": 1}')))
    for call in calls:
        loop.finish(call, loop.start(call))
    contents = [m["content"] for m in loop.messages if m["role"] == "tool"]
    assert contents[0] == "Error: ZeroDivisionError: division by zero" and contents[1] == "2.0"
    assert contents[2].startswith("Error: LookupError: no function named 'multiply'")
    assert contents[3].startswith("Error: TypeError:")
    assert isinstance(loop.results[0].error, ZeroDivisionError) and loop.results[1].error is None
    assert loop.request()["tool_choice"] == "none"  # one round allowed: the next call must answer
    assert loop.answered(reply("it is 2")) == ()
    run = loop.done(reply("it is 2"))
    roles = [m["role"] for m in run.messages]
    assert run.rounds == 1 and roles == ["user", "assistant"] + ["tool"] * 4 + ["assistant"]
    assert run.messages[1]["tool_calls"][0]["id"] == "c1"


def test_the_tool_loop_takes_one_tool_choice_of_any_shape_for_every_call():
    class Clock:
        def __call__(self, city: str) -> str:
            """The local time in a city."""
            return "noon"

    forced = {"type": "function", "function": {"name": "Clock"}}
    loop = ToolLoop([], [Clock()], 2, forced, {})
    assert loop.request()["tool_choice"] == forced and loop.tools[0]["function"]["name"] == "Clock"
    loop.finish(call := ToolCall("c", "Clock", '{"city": "Oslo"}'), loop.start(call))
    assert loop.messages[-1]["content"] == "noon"


def test_the_tool_loop_refuses_nothing_to_call_and_no_rounds():
    with pytest.raises(InvalidArgumentError):
        ToolLoop([], [], 3, "auto", {})
    with pytest.raises(InvalidArgumentError):
        ToolLoop([], [get_weather], 0, "auto", {})
