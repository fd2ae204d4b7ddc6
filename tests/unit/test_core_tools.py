"""Tool calling in the domain core: what a request may carry, and the error each mistake gets (field named)."""

import json

import pytest

from forgeway.core.errors import InvalidArgument
from forgeway.core.generation import GenerationRequest
from forgeway.core.tools import ToolCallAssembler, ToolCallDelta, arguments_errors
from forgeway.v1 import generate_pb2 as pb

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def request(**kw) -> pb.GenerateRequest:
    kw.setdefault("messages", [pb.Message(role="user", content="Weather in Paris?")])
    kw.setdefault("tools", [tool("get_weather", WEATHER)])
    return pb.GenerateRequest(model="m", **kw)


def tool(name, parameters, strict=False):
    return pb.Tool(function=pb.FunctionDefinition(name=name, description="d", parameters=json.dumps(parameters),
                                                  strict=strict))


def field_of(msg) -> str:
    with pytest.raises(InvalidArgument) as err:
        GenerationRequest.from_proto(msg)
    return err.value.field


def test_tools_default_to_auto_and_render_for_the_template():
    req = GenerationRequest.from_proto(request())
    assert req.tool_choice.mode == "auto" and req.calls_tools and req.parallel_tool_calls
    assert req.template_tools == [{"type": "function", "function": {"name": "get_weather", "description": "d",
                                                                    "parameters": WEATHER}}]
    assert "tools" in req.features() and "reasoning" not in req.features()


def test_tool_choice_none_renders_the_tools_but_calls_none():
    req = GenerationRequest.from_proto(request(tool_choice=pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_NONE)))
    assert not req.calls_tools and [t["function"]["name"] for t in req.template_tools] == ["get_weather"]


def test_invalid_parameters_schema_names_the_field():
    assert field_of(request(tools=[tool("a", {"type": "object"}), tool("b", {"type": 12})])) == \
        "tools[1].function.parameters"
    bad_json = pb.Tool(function=pb.FunctionDefinition(name="a", parameters="{not json"))
    assert field_of(request(tools=[bad_json])) == "tools[0].function.parameters"


def test_bad_names_and_duplicates():
    assert field_of(request(tools=[tool("has space", WEATHER)])) == "tools[0].function.name"
    assert field_of(request(tools=[tool("a", WEATHER), tool("a", WEATHER)])) == "tools[1].function.name"


def test_tool_choice_naming_an_unknown_function():
    msg = request(tool_choice=pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_FUNCTION, function="get_time"))
    with pytest.raises(InvalidArgument) as err:
        GenerationRequest.from_proto(msg)
    assert err.value.field == "tool_choice" and "get_weather" in str(err.value)


def test_required_without_tools_and_forced_with_structured_output():
    assert field_of(request(tools=[], tool_choice=pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_REQUIRED))) == "tool_choice"
    msg = request(tool_choice=pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_REQUIRED),
                  structured_output=pb.StructuredOutput(json_object=True))
    assert field_of(msg) == "tool_choice"


def test_tool_message_must_answer_an_earlier_call():
    call = pb.ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}')
    good = [pb.Message(role="user", content="q"), pb.Message(role="assistant", tool_calls=[call]),
            pb.Message(role="tool", tool_call_id="call_1", content="sunny")]
    req = GenerationRequest.from_proto(request(messages=good))
    assert req.template_messages[1]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    assert req.template_messages[2]["tool_call_id"] == "call_1"
    bad = good[:2] + [pb.Message(role="tool", tool_call_id="call_9", content="sunny")]
    assert field_of(request(messages=bad)) == "messages[2].tool_call_id"
    assert field_of(request(messages=[pb.Message(role="tool", content="x")])) == "messages[0].tool_call_id"
    bad_args = [pb.Message(role="assistant", tool_calls=[pb.ToolCall(id="c", name="f", arguments="[1]")])]
    assert field_of(request(messages=bad_args)) == "messages[0].tool_calls[0].arguments"


def test_thinking_switch_is_a_feature():
    assert "reasoning" in GenerationRequest.from_proto(request(tools=[], thinking=False)).features()


def test_assembler_rebuilds_calls_from_pieces():
    asm = ToolCallAssembler()
    for piece in [ToolCallDelta(0, "call_a", "get_weather"), ToolCallDelta(0, arguments='{"city": '),
                  ToolCallDelta(1, "call_b", "get_time", "{}"), ToolCallDelta(0, arguments='"Oslo"}')]:
        asm.add(piece)
    calls = asm.calls()
    assert [(c.id, c.name, c.arguments) for c in calls] == [("call_a", "get_weather", '{"city": "Oslo"}'),
                                                           ("call_b", "get_time", "{}")]
    assert arguments_errors(WEATHER, calls[0].arguments) == []
    assert arguments_errors(WEATHER, "{}") and arguments_errors(WEATHER, "nope")
