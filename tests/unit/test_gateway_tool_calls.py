"""The gateway and tool calling: routing by tool and reasoning support, stream merging that keeps tool-call pieces
whole, pre-processors that leave tool conversations intact, and the features the gateway reports."""

from __future__ import annotations

import json

import pytest

from forgeway.core.errors import Unsupported
from forgeway.core.generation import GenerationRequest
from forgeway.core.tools import ToolCallAssembler, ToolCallDelta
from forgeway.gateway.plugins import build_pipeline
from forgeway.gateway.relay import coalesce
from forgeway.gateway.router import Router
from forgeway.gateway.settings import GatewaySettings, PluginConfig
from forgeway.gateway.status import aggregate
from forgeway.v1 import capabilities_pb2, generate_pb2
from test_gateway_router import caps, endpoint, model

TOOL = generate_pb2.Tool(function=generate_pb2.FunctionDefinition(
    name="get_weather", parameters=json.dumps({"type": "object", "properties": {"city": {"type": "string"}}})))
CONVERSATION = [
    generate_pb2.Message(role="user", content="Weather in Oslo?"),
    generate_pb2.Message(role="assistant", tool_calls=[
        generate_pb2.ToolCall(id="call_1", name="get_weather", arguments='{"city": "Oslo"}')]),
    generate_pb2.Message(role="tool", tool_call_id="call_1", content="sunny"),
]


def with_features(answer: capabilities_pb2.CapabilitiesResponse, **flags: bool):
    for flag, value in flags.items():
        setattr(answer.generation, flag, value)
    return answer


def chat(**fields) -> GenerationRequest:
    return GenerationRequest.from_proto(generate_pb2.GenerateRequest(model="m", messages=CONVERSATION, **fields))


async def test_tool_requests_route_only_to_endpoints_with_tools():
    plain = endpoint("plain", caps("echo", model("m")))
    tools = endpoint("tools", with_features(caps("hf", model("m")), tools=True, reasoning=True))
    router = Router([plain, tools], GatewaySettings())
    for _ in range(10):
        assert [r.endpoint.key for r in router.plan(chat(tools=[TOOL]))] == ["tools"]
        assert [r.endpoint.key for r in router.plan(chat())] == ["tools"]  # tool calls and results in the history
        assert [r.endpoint.key for r in router.plan(chat(thinking=False))] == ["tools"]
    plain_request = GenerationRequest.from_proto(generate_pb2.GenerateRequest(model="m", prompt="hi"))
    assert {r.endpoint.key for r in router.plan(plain_request)} == {"plain", "tools"}
    with pytest.raises(Unsupported) as info:  # the hinted backend's reason, not "served by hf, not echo"
        router.plan(chat(tools=[TOOL], backend="echo"))
    assert info.value.metadata["field"] == "tools" and info.value.message.startswith("tools is not supported by the echo")


async def test_no_endpoint_with_tools_or_reasoning_names_the_feature():
    without = Router([endpoint("a", caps("echo", model("m"))), endpoint("b", caps("llamacpp", model("m")))],
                     GatewaySettings())
    with pytest.raises(Unsupported) as info:
        without.plan(chat(tools=[TOOL]))
    assert info.value.metadata["field"] == "tools"
    assert info.value.message.startswith("tools is not supported by the echo backend")  # a's own reason, once
    assert "(b: tools is not supported by the llamacpp backend)" in info.value.message
    with pytest.raises(Unsupported) as info:
        without.plan(chat(thinking=True))
    assert info.value.metadata["field"] in ("tools", "reasoning")


async def test_a_model_without_a_thinking_switch_is_refused_by_its_own_reason():
    no_switch = model("m")
    no_switch.unsupported_features["reasoning"] = "its chat template has no thinking switch"
    router = Router([endpoint("hf", with_features(caps("hf", no_switch), tools=True, reasoning=True))],
                    GatewaySettings())
    assert router.plan(chat(tools=[TOOL]))
    with pytest.raises(Unsupported, match="no thinking switch") as info:
        router.plan(chat(thinking=True))
    assert info.value.metadata["field"] == "reasoning"


def delta(index: int = 0, text: str = "", reasoning: str = "", *pieces: generate_pb2.ToolCallDelta):
    return generate_pb2.GenerateStreamResponse(delta=generate_pb2.GenerateDelta(
        index=index, text=text, reasoning=reasoning, tool_calls=pieces))


def piece(index: int, arguments: str, id: str = "", name: str = "") -> generate_pb2.ToolCallDelta:
    return generate_pb2.ToolCallDelta(index=index, id=id, name=name, arguments=arguments)


def test_merged_deltas_keep_reasoning_and_one_whole_piece_per_call():
    queued = [
        delta(0, "", "Think"), delta(0, "", " more"),
        delta(0, "", "", piece(0, '{"city"', "call_1", "get_weather")), delta(0, "", "", piece(0, ': "Oslo"}')),
        delta(0, "", "", piece(1, "{", "call_2", "get_time")), delta(0, "Done", "", piece(1, "}")),
    ]
    assembler = ToolCallAssembler()  # what a client rebuilds from the deltas as the backend sent them
    for message in queued:
        for p in message.delta.tool_calls:
            assembler.add(ToolCallDelta.from_proto(p))
    (merged,) = coalesce(queued)
    d = merged.delta
    assert (d.text, d.reasoning) == ("Done", "Think more")
    assert [(p.index, p.id, p.name, p.arguments) for p in d.tool_calls] == [
        (0, "call_1", "get_weather", '{"city": "Oslo"}'), (1, "call_2", "get_time", "{}")]
    assert [(c.id, c.name, c.arguments) for c in assembler.calls()] == [
        (p.id, p.name, p.arguments) for p in d.tool_calls]


def test_deltas_of_other_choices_are_not_merged_into_each_other():
    merged = coalesce([delta(0, "", "", piece(0, "{", "call_1", "f")), delta(1, "", "", piece(0, "{", "call_2", "f"))])
    assert [m.delta.tool_calls[0].id for m in merged] == ["call_1", "call_2"]


def pre(name: str, **options):
    return build_pipeline([PluginConfig(name=name, options=options)])


def test_chat_format_leaves_tool_conversations_as_messages():
    for request in (generate_pb2.GenerateRequest(model="m", messages=CONVERSATION[:1], tools=[TOOL]),
                    generate_pb2.GenerateRequest(model="m", messages=CONVERSATION)):
        out = pre("chat_format", template="chatml").preprocess(request)
        assert out == request and not out.HasField("prompt")


def test_system_prompt_keeps_tool_calls_and_results():
    request = generate_pb2.GenerateRequest(model="m", messages=CONVERSATION, tools=[TOOL])
    out = pre("system_prompt", prompt="Be brief.").preprocess(request)
    assert out.messages[0].content == "Be brief." and list(out.messages[1:]) == list(CONVERSATION)
    assert list(out.tools) == [TOOL]
    assert chat().messages == GenerationRequest.from_proto(out).messages[1:]


async def test_the_gateway_reports_tools_and_reasoning_of_its_endpoints():
    endpoints = [endpoint("plain", caps("echo", model("m"))),
                 endpoint("tools", with_features(caps("hf", model("t")), tools=True, reasoning=True))]
    generation = aggregate(endpoints, GatewaySettings()).generation
    assert generation.tools and generation.reasoning
    assert not aggregate(endpoints[:1], GatewaySettings()).generation.tools
