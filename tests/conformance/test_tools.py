"""Tool calling, for every endpoint whose Capabilities declare `tools` for its model: forced calls carry arguments
valid against the function's schema, a stream rebuilds the unary answer, a tool result continues the chat, and bad
tool input is refused naming the field (that last part holds for every endpoint)."""

from __future__ import annotations

import json

import grpc
import pytest

from forgeway.core.tools import ToolCallAssembler, ToolCallDelta, arguments_errors
from forgeway.v1 import generate_pb2

from .calls import rpc_error, stream, stream_error

WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string", "enum": ["Paris", "Oslo", "Tokyo"]},
                   "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TIME = {"type": "object", "properties": {"zone": {"type": "string", "enum": ["UTC", "CET"]}}, "required": ["zone"],
        "additionalProperties": False}
SCHEMAS = {"get_weather": WEATHER, "get_time": TIME}
QUESTION = "What is the weather in Paris?"
MAX_TOKENS = 120  # a whole call of either tool fits (about 50 tokens) beside the ~360-token prompt in 512


def tool_request(endpoint, *, mode=generate_pb2.TOOL_CHOICE_MODE_AUTO, function: str = "",
                 messages: list[generate_pb2.Message] | None = None, **fields) -> generate_pb2.GenerateRequest:
    tools = [generate_pb2.Tool(function=generate_pb2.FunctionDefinition(
        name=name, description=f"{name.replace('_', ' ')} of a place", parameters=json.dumps(schema), strict=True))
        for name, schema in SCHEMAS.items()]
    return generate_pb2.GenerateRequest(
        model=endpoint.model, messages=messages or [generate_pb2.Message(role="user", content=QUESTION)],
        tools=tools, tool_choice=generate_pb2.ToolChoice(mode=mode, function=function),
        sampling=generate_pb2.SamplingParams(max_tokens=MAX_TOKENS), **fields)


@pytest.fixture
def calls_tools(endpoint, capabilities):
    model = next(m for m in capabilities.models if m.name == endpoint.model)
    if not capabilities.generation.tools or "tools" in model.unsupported_features:
        pytest.skip(f"{endpoint.name} does not declare tools for {endpoint.model}")


def assert_valid_calls(choice, allowed: set[str]) -> None:
    assert choice.finish_reason == generate_pb2.FINISH_REASON_TOOL_CALLS, choice
    assert choice.tool_calls, choice
    for call in choice.tool_calls:
        assert call.name in allowed and call.id, call
        assert arguments_errors(SCHEMAS[call.name], call.arguments) == [], call


async def test_named_tool_choice_calls_that_function_with_valid_arguments(endpoint, backend, calls_tools):
    request = tool_request(endpoint, mode=generate_pb2.TOOL_CHOICE_MODE_FUNCTION, function="get_time")
    reply = await backend.Generate(request, timeout=60)
    assert_valid_calls(reply.choices[0], {"get_time"})


async def test_required_tool_choice_calls_a_tool_for_every_seed(endpoint, backend, calls_tools):
    request = tool_request(endpoint, mode=generate_pb2.TOOL_CHOICE_MODE_REQUIRED)
    try:
        await backend.Generate(request, timeout=60)
    except grpc.aio.AioRpcError:
        # An endpoint may refuse "required" among several tools (an upstream that cannot force a choice), but only
        # the way the error table says: INVALID_ARGUMENT, UNSUPPORTED, naming tool_choice. Never ignored.
        error = await rpc_error(backend.Generate(request, timeout=60))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT and error.reason == "UNSUPPORTED", error.message
        assert error.error_info.metadata["feature"] == "tool_choice", error.error_info
        pytest.skip(f"{endpoint.name} refuses tool_choice required among several tools: {error.message}")
    request.parallel_tool_calls = False  # one call: a random model would otherwise call until max_tokens
    for seed in range(5):
        request.sampling.temperature, request.sampling.seed = 1.0, seed
        reply = await backend.Generate(request, timeout=60)
        assert_valid_calls(reply.choices[0], set(SCHEMAS))


async def test_streamed_tool_call_pieces_rebuild_the_unary_answer(endpoint, backend, calls_tools):
    request = tool_request(endpoint, mode=generate_pb2.TOOL_CHOICE_MODE_FUNCTION, function="get_weather")
    unary = (await backend.Generate(request, timeout=60)).choices[0]
    streamed = await stream(backend, request)
    assembler = ToolCallAssembler()
    for message in streamed.messages:
        if message.WhichOneof("event") == "delta":
            for piece in message.delta.tool_calls:
                assembler.add(ToolCallDelta.from_proto(piece))
    rebuilt = assembler.calls()
    assert [(c.name, c.arguments) for c in rebuilt] == [(c.name, c.arguments) for c in unary.tool_calls]
    assert [c.id for c in rebuilt] == [c.id for c in streamed.final.choices[0].tool_calls]
    assert streamed.final.choices[0].finish_reason == generate_pb2.FINISH_REASON_TOOL_CALLS
    assert streamed.text() == unary.text


async def test_a_tool_result_continues_the_chat(endpoint, backend, calls_tools):
    forced = tool_request(endpoint, mode=generate_pb2.TOOL_CHOICE_MODE_FUNCTION, function="get_weather")
    first = (await backend.Generate(forced, timeout=60)).choices[0]
    history = [generate_pb2.Message(role="user", content=QUESTION),
               generate_pb2.Message(role="assistant", content=first.text, tool_calls=first.tool_calls)]
    history += [generate_pb2.Message(role="tool", tool_call_id=c.id, content='{"sky": "sunny", "degrees": 21}')
                for c in first.tool_calls]
    answer = tool_request(endpoint, mode=generate_pb2.TOOL_CHOICE_MODE_NONE, messages=history)
    answer.sampling.max_tokens = 16  # the tools still render under none: the history takes most of the context
    reply = await backend.Generate(answer, timeout=60)
    answer = reply.choices[0]
    assert not answer.tool_calls and answer.finish_reason != generate_pb2.FINISH_REASON_TOOL_CALLS
    assert reply.usage.completion_tokens > 0


@pytest.mark.parametrize("rpc", ["Generate", "GenerateStream"])
async def test_bad_tool_input_names_the_field(endpoint, backend, rpc):
    call = backend.Generate if rpc == "Generate" else backend.GenerateStream
    read = rpc_error if rpc == "Generate" else stream_error
    bad_schema = tool_request(endpoint)
    bad_schema.tools[1].function.parameters = '{"type": "object", "properties": {"zone": {"type": 7}}}'
    unknown_choice = tool_request(endpoint, mode=generate_pb2.TOOL_CHOICE_MODE_FUNCTION, function="get_news")
    stray_result = tool_request(endpoint, messages=[
        generate_pb2.Message(role="user", content=QUESTION),
        generate_pb2.Message(role="tool", tool_call_id="call_nowhere", content="sunny")])
    for request, field in [(bad_schema, "tools[1].function.parameters"), (unknown_choice, "tool_choice"),
                           (stray_result, "messages[1].tool_call_id")]:
        error = await read(call(request, timeout=10))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT, (field, error.message)
        assert field in {f for f, _ in error.field_violations}, (field, error.field_violations)
