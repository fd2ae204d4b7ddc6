"""Tool calling through the OpenAI proxy against a real upstream: llama-cpp-python's server in its
chatml-function-calling format on the tiny GGUF, compared with the same upstream called directly."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import openai
import pytest

from forgeway.core.errors import RemoteError, from_rpc_error
from forgeway.core.tools import ToolCallAssembler, ToolCallDelta, arguments_errors
from forgeway.server.server import start_server
from forgeway.services.openai_proxy.engine import OpenAIProxyEngine
from forgeway.services.openai_proxy.settings import OpenAIProxySettings
from forgeway.services.runtime.service import serving
from forgeway.testing import LLAMA_CPP_SETTINGS, LocalUpstream, start_llama_server, tiny_model
from forgeway.testing.upstream import TOOLS_CHAT_FORMAT
from forgeway.v1 import backend_pb2_grpc, capabilities_pb2, generate_pb2

pytestmark = pytest.mark.llamacpp

FINISH = generate_pb2.FinishReason
MODE = generate_pb2.ToolChoiceMode
# Enums: llama-cpp-python's grammar lets a free string take raw control characters, which a random model may pick
WEATHER = {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Oslo"]}}, "required": ["city"]}
TIME = {"type": "object", "properties": {"zone": {"type": "string", "enum": ["utc", "cet"]}}, "required": ["zone"]}
SCHEMAS = {"get_weather": WEATHER, "get_time": TIME}
QUESTION = [{"role": "system", "content": "Call functions."}, {"role": "user", "content": "Weather in Paris?"}]


@pytest.fixture(scope="module")
def upstream() -> LocalUpstream:
    server = start_llama_server(tiny_model()[0], model="tiny", n_ctx=1024, chat_format=TOOLS_CHAT_FORMAT)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def direct(upstream: LocalUpstream) -> openai.AsyncOpenAI:
    """The upstream called directly: what the proxy must reproduce."""
    return openai.AsyncOpenAI(base_url=upstream.base_url, api_key="unused", max_retries=0)


@asynccontextmanager
async def backend(upstream: LocalUpstream, **overrides) -> AsyncIterator[backend_pb2_grpc.BackendServiceStub]:
    """The proxy in-process on a loopback port, configured for llama-cpp-python, ready."""
    values = {**LLAMA_CPP_SETTINGS, "models": [{"name": "tiny"}], **overrides}
    settings = OpenAIProxySettings(host="127.0.0.1", port=0, metrics_port=-1, base_url=upstream.base_url, **values)
    engine = OpenAIProxyEngine(settings)
    running = await start_server(serving(engine))
    await running.startup  # start() returns once the upstream answers
    assert engine.ready, engine.failure
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield backend_pb2_grpc.BackendServiceStub(channel)
    finally:
        await running.drain(0)


def tool(name: str) -> generate_pb2.Tool:
    return generate_pb2.Tool(function=generate_pb2.FunctionDefinition(name=name, parameters=json.dumps(SCHEMAS[name])))


def openai_tool(name: str) -> dict:
    return {"type": "function", "function": {"name": name, "description": "", "parameters": SCHEMAS[name]}}


def ask(names=("get_weather",), choice: generate_pb2.ToolChoice | None = None, messages=QUESTION,
        **fields) -> generate_pb2.GenerateRequest:
    return generate_pb2.GenerateRequest(
        model="tiny", messages=[m if isinstance(m, generate_pb2.Message) else generate_pb2.Message(**m)
                                for m in messages], tools=[tool(n) for n in names],
        tool_choice=choice, sampling=generate_pb2.SamplingParams(max_tokens=40), **fields,
    )  # fmt: skip


def named(name: str) -> generate_pb2.ToolChoice:
    return generate_pb2.ToolChoice(mode=MODE.TOOL_CHOICE_MODE_FUNCTION, function=name)


def assert_valid(call: generate_pb2.ToolCall) -> None:
    assert call.id and call.name in SCHEMAS
    assert arguments_errors(SCHEMAS[call.name], call.arguments) == [], call.arguments


async def error(stub: backend_pb2_grpc.BackendServiceStub, request: generate_pb2.GenerateRequest) -> RemoteError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Generate(request, timeout=60)
    return from_rpc_error(caught.value)


async def test_a_named_function_comes_back_as_the_upstreams_tool_call(upstream, direct):
    expected = await direct.chat.completions.create(
        model="tiny", messages=QUESTION, tools=[openai_tool("get_weather")], max_tokens=40, temperature=0,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )  # fmt: skip
    async with backend(upstream) as stub:
        reply = await stub.Generate(ask(choice=named("get_weather")), timeout=60)
    choice, wanted = reply.choices[0], expected.choices[0].message.tool_calls[0]
    assert [c.name for c in choice.tool_calls] == ["get_weather"]
    assert choice.tool_calls[0].arguments == wanted.function.arguments
    assert_valid(choice.tool_calls[0])
    assert choice.finish_reason == FINISH.FINISH_REASON_TOOL_CALLS and choice.text == ""


async def test_required_with_one_tool_is_sent_as_that_function_and_with_several_is_rejected(upstream):
    """llama-cpp-python fails tool_choice "required" with HTTP 500; with one tool it means that function."""
    required = generate_pb2.ToolChoice(mode=MODE.TOOL_CHOICE_MODE_REQUIRED)
    async with backend(upstream) as stub:
        reply = await stub.Generate(ask(choice=required), timeout=60)
        rejected = await error(stub, ask(("get_weather", "get_time"), required))
    assert [c.name for c in reply.choices[0].tool_calls] == ["get_weather"]
    assert reply.choices[0].finish_reason == FINISH.FINISH_REASON_TOOL_CALLS
    assert rejected.code == grpc.StatusCode.INVALID_ARGUMENT and rejected.reason == "UNSUPPORTED"
    assert rejected.error_info.metadata["feature"] == "tool_choice"


def assert_answer_or_calls(choice: generate_pb2.Choice) -> None:
    """Under auto the model may answer or call: either way a consistent choice."""
    if choice.tool_calls:
        assert choice.finish_reason == FINISH.FINISH_REASON_TOOL_CALLS
        for call in choice.tool_calls:
            assert_valid(call)
    else:
        assert choice.finish_reason != FINISH.FINISH_REASON_TOOL_CALLS


async def test_auto_lets_the_model_choose_and_a_stream_of_it_is_one_unary_call(upstream):
    """llama-cpp-python answers a streamed auto choice that picks a function with HTTP 500 ("Automatic streaming
    tool choice is not supported", llama_chat_format.chatml_function_calling); with stream_tool_calls off the
    proxy asks unary and streams the answer whole. Which way the tiny model goes depends on the upstream's prompt
    cache, so both are accepted."""
    request = ask(("get_weather", "get_time"))  # no tool_choice: auto
    async with backend(upstream) as stub:
        unary = await stub.Generate(request, timeout=60)
        stream = [m async for m in stub.GenerateStream(request, timeout=60)]
    assert_answer_or_calls(unary.choices[0])
    final = stream[-1].final.choices[0]
    assert_answer_or_calls(final)
    deltas = [m.delta for m in stream if m.WhichOneof("event") == "delta"]
    assert [(p.id, p.name, p.arguments) for d in deltas for p in d.tool_calls] == [
        (c.id, c.name, c.arguments) for c in final.tool_calls]
    assert "".join(d.text for d in deltas) == final.text


async def test_tool_choice_none_answers_in_text(upstream):
    async with backend(upstream) as stub:
        reply = await stub.Generate(ask(choice=generate_pb2.ToolChoice(mode=MODE.TOOL_CHOICE_MODE_NONE)), timeout=60)
    assert not reply.choices[0].tool_calls and reply.choices[0].text
    assert reply.choices[0].finish_reason != FINISH.FINISH_REASON_TOOL_CALLS


async def test_a_history_with_tool_calls_and_their_results_is_accepted_upstream(upstream, direct):
    call = {"id": "call_1", "name": "get_weather", "arguments": json.dumps({"city": "Paris"})}
    history = [generate_pb2.Message(**m) for m in QUESTION] + [
        generate_pb2.Message(role="assistant", tool_calls=[generate_pb2.ToolCall(**call)]),
        generate_pb2.Message(role="tool", tool_call_id="call_1", content="sunny, 21 C"),
    ]
    openai_history = QUESTION + [
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
    ]  # fmt: skip
    expected = await direct.chat.completions.create(model="tiny", messages=openai_history, max_tokens=12,
                                                    temperature=0)  # fmt: skip
    request = generate_pb2.GenerateRequest(model="tiny", messages=history,
                                           sampling=generate_pb2.SamplingParams(max_tokens=12))  # fmt: skip
    async with backend(upstream) as stub:
        reply = await stub.Generate(request, timeout=60)
        again = await stub.Generate(ask(choice=named("get_weather"), messages=history), timeout=60)
    assert reply.choices[0].text == expected.choices[0].message.content
    assert reply.usage.prompt_tokens == expected.usage.prompt_tokens
    assert_valid(again.choices[0].tool_calls[0])


async def test_streamed_pieces_reassemble_to_the_unary_calls(upstream):
    """llama-cpp-python repeats the id and name in every chunk; the proxy sends them on a call's first piece."""
    request = ask(choice=named("get_weather"))
    async with backend(upstream) as stub:
        unary = await stub.Generate(request, timeout=60)
        stream = [m async for m in stub.GenerateStream(request, timeout=60)]
    pieces = [p for m in stream if m.WhichOneof("event") == "delta" for p in m.delta.tool_calls]
    assert len(pieces) > 2, "the arguments arrive in pieces"
    assert pieces[0].id and pieces[0].name == "get_weather"
    assert all(not p.id and not p.name and p.index == 0 for p in pieces[1:])
    assembler = ToolCallAssembler()
    for piece in pieces:
        assembler.add(ToolCallDelta.from_proto(piece))
    calls = assembler.calls()
    final = stream[-1].final.choices[0]
    assert [(c.name, c.arguments) for c in calls] == [(c.name, c.arguments) for c in unary.choices[0].tool_calls]
    assert [(c.id, c.name, c.arguments) for c in final.tool_calls] == [(c.id, c.name, c.arguments) for c in calls]
    assert final.finish_reason == FINISH.FINISH_REASON_TOOL_CALLS
    assert_valid(final.tool_calls[0])


async def test_capabilities_and_the_thinking_switch(upstream):
    """llama-cpp-python takes no per-request thinking switch: a request that sets one is rejected, not ignored."""
    async with backend(upstream) as stub:
        caps = await stub.Capabilities(capabilities_pb2.CapabilitiesRequest(), timeout=10)
        thinking = await error(stub, ask(thinking=False))
    async with backend(upstream, thinking="chat_template_kwargs") as stub:
        switchable = await stub.Capabilities(capabilities_pb2.CapabilitiesRequest(), timeout=10)
    assert caps.generation.tools and not caps.generation.reasoning
    assert switchable.generation.reasoning
    assert thinking.code == grpc.StatusCode.INVALID_ARGUMENT and thinking.reason == "UNSUPPORTED"
    assert thinking.error_info.metadata["feature"] == "reasoning"
