"""Tool calling through a real gateway over gRPC: tool requests route only to the backend whose model has tools,
output plugins leave tool calls whole (unary and streamed, and the stream still adds up), and a request no endpoint
can serve is refused naming `tools` or `reasoning`."""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import pytest
from tools_harness import ASK, TOOLS, ToolsStack, check_call, tools_stack

from forgeway.core.errors import from_rpc_error
from forgeway.core.tools import ToolCallAssembler, ToolCallDelta
from forgeway.v1 import backend_pb2_grpc, generate_pb2

pytestmark = [pytest.mark.hf, pytest.mark.slow]

# A post-processor that would wreck any JSON it touched: tool-call arguments must come through it untouched.
STRIP = [{"name": "strip_pattern", "options": {"pattern": r"[{}\"]"}}, {"name": "strip_special_tokens"}]


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[ToolsStack]:
    with tools_stack(tmp_path_factory.mktemp("gateway-tools"), model_aliases={"stripped": "tiny"},
                     plugins={"stripped": STRIP}) as running:
        yield running


@pytest.fixture(scope="module")
def stub(stack) -> Iterator[backend_pb2_grpc.BackendServiceStub]:
    with grpc.insecure_channel(stack.target) as channel:
        yield backend_pb2_grpc.BackendServiceStub(channel)


def request(model: str = "tiny", function: str = "get_weather", **fields) -> generate_pb2.GenerateRequest:
    tools = [generate_pb2.Tool(function=generate_pb2.FunctionDefinition(
        name=t["function"]["name"], description=t["function"]["description"],
        parameters=json.dumps(t["function"]["parameters"]))) for t in TOOLS]
    choice = generate_pb2.ToolChoice(mode=generate_pb2.TOOL_CHOICE_MODE_FUNCTION, function=function)
    messages = [generate_pb2.Message(**m) for m in ASK]
    fields.setdefault("sampling", generate_pb2.SamplingParams(max_tokens=64))
    return generate_pb2.GenerateRequest(model=model, messages=messages, tools=tools, tool_choice=choice, **fields)


def test_tool_requests_go_only_to_the_model_with_tools(stub):
    for _ in range(4):
        reply = stub.Generate(request())
        (choice,) = reply.choices
        assert reply.served_by.startswith("hf/") and choice.finish_reason == generate_pb2.FINISH_REASON_TOOL_CALLS
        (call,) = choice.tool_calls
        assert call.name == "get_weather" and call.id.startswith("call_")
        check_call(call.name, call.arguments)
    plain = generate_pb2.GenerateRequest(model="tiny", prompt="one two", sampling=generate_pb2.SamplingParams(
        max_tokens=2))
    served = {stub.Generate(plain).served_by.split("/")[0] for _ in range(20)}
    assert served == {"hf", "echo"}, "without tools either endpoint serves the model"


def test_output_plugins_leave_tool_calls_whole(stub):
    reply = stub.Generate(request("stripped"))
    (call,) = reply.choices[0].tool_calls
    assert reply.choices[0].finish_reason == generate_pb2.FINISH_REASON_TOOL_CALLS
    check_call(call.name, call.arguments)


def test_streamed_through_plugins_pieces_and_text_add_up_to_the_final_choice(stub):
    for model in ("tiny", "stripped"):
        assembler, text, final = ToolCallAssembler(), "", None
        for message in stub.GenerateStream(request(model)):
            if message.HasField("final"):
                final = message.final
                continue
            text += message.delta.text
            for piece in message.delta.tool_calls:
                assembler.add(ToolCallDelta.from_proto(piece))
        (choice,) = final.choices
        assert choice.finish_reason == generate_pb2.FINISH_REASON_TOOL_CALLS and text == choice.text
        assert [(c.id, c.name, c.arguments) for c in assembler.calls()] == [
            (c.id, c.name, c.arguments) for c in choice.tool_calls]
        check_call(choice.tool_calls[0].name, choice.tool_calls[0].arguments)


def refusal(stub, message: generate_pb2.GenerateRequest) -> tuple[str, str, str]:
    with pytest.raises(grpc.RpcError) as info:
        stub.Generate(message)
    error = from_rpc_error(info.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    return error.reason, error.error_info.metadata["field"], error.message


def test_no_endpoint_that_can_is_refused_naming_the_feature(stub):
    reason, field, message = refusal(stub, request(backend="echo"))
    assert (reason, field) == ("UNSUPPORTED", "tools") and "tools is not supported by the echo backend" in message
    thinking = generate_pb2.GenerateRequest(model="tiny", backend="echo", thinking=True,
                                            messages=[generate_pb2.Message(**m) for m in ASK])
    reason, field, message = refusal(stub, thinking)
    assert (reason, field) == ("UNSUPPORTED", "reasoning") and "echo" in message


def test_thinking_routes_to_the_model_with_the_switch(stub):
    for thinking in (True, False):
        reply = stub.Generate(generate_pb2.GenerateRequest(
            model="tiny", thinking=thinking, messages=[generate_pb2.Message(**m) for m in ASK],
            sampling=generate_pb2.SamplingParams(max_tokens=8)))
        assert reply.served_by.startswith("hf/")
        assert bool(reply.choices[0].reasoning) or not thinking
