"""Tool calling and reasoning on the hf service over real gRPC, with the tiny Llama and its Hermes-style template."""

from __future__ import annotations

import json
import shutil

import grpc
import pytest

pytestmark = pytest.mark.hf

from forgeway.core.errors import from_rpc_error  # noqa: E402
from forgeway.core.tools import ToolCall, ToolCallAssembler, ToolCallDelta, arguments_errors  # noqa: E402
from forgeway.server.server import start_server  # noqa: E402
from forgeway.services.runtime.service import serving  # noqa: E402
from forgeway.v1 import backend_pb2_grpc, capabilities_pb2, generate_pb2  # noqa: E402

FINISH = generate_pb2.FinishReason
WEATHER = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 8}, "unit": {"enum": ["c", "f"]},
                                            "days": {"type": "integer", "minimum": 1, "maximum": 7}},
           "required": ["city", "unit"], "additionalProperties": False}
TIME = {"type": "object", "properties": {"zone": {"enum": ["utc", "cet"]}}, "required": ["zone"]}
SCHEMAS = {"get_weather": WEATHER, "get_time": TIME}
CHAT = [generate_pb2.Message(role="user", content="What is the weather in Paris?")]


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    from forgeway.testing import build_tiny_llama

    root = tmp_path_factory.mktemp("hf-tools")
    tiny = build_tiny_llama(root / "tiny")
    plain = shutil.copytree(tiny, root / "plain")  # a chat template with neither tools nor a thinking switch
    config = json.loads((plain / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    config.pop("response_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(config))
    (plain / "chat_template.jinja").write_text(
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    return root, tiny, plain


@pytest.fixture(scope="module")
async def stub(model_dirs):
    from forgeway.services.hf.engine import HFEngine
    from forgeway.services.hf.settings import HFSettings

    root, tiny, plain = model_dirs
    settings = HFSettings(host="127.0.0.1", port=0, metrics_port=-1, home=root / "home", torch_threads=1,
                          models=[{"name": "tiny", "path": str(tiny)}, {"name": "plain", "path": str(plain)}])
    running = await start_server(serving(HFEngine(settings)))
    await running.startup
    assert running.service.ready, running.service.failure
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        yield backend_pb2_grpc.BackendServiceStub(channel)
    await running.drain(0)


def tool(name: str, strict: bool = False) -> generate_pb2.Tool:
    return generate_pb2.Tool(function=generate_pb2.FunctionDefinition(
        name=name, description=f"{name} of a place", parameters=json.dumps(SCHEMAS[name]), strict=strict))


def request(mode: str = "auto", function: str = "", max_tokens: int = 120, seed: int | None = None,
            temperature: float | None = None, **fields) -> generate_pb2.GenerateRequest:
    fields.setdefault("tools", [tool("get_weather"), tool("get_time")])
    sampling = generate_pb2.SamplingParams(max_tokens=max_tokens, seed=seed, temperature=temperature)
    choice = generate_pb2.ToolChoice(mode=getattr(generate_pb2, f"TOOL_CHOICE_MODE_{mode.upper()}"), function=function)
    return generate_pb2.GenerateRequest(model=fields.pop("model", "tiny"), messages=CHAT, sampling=sampling,
                                        tool_choice=choice, **fields)


def calls_of(choice) -> list[ToolCall]:
    return [ToolCall.from_proto(c, "call") for c in choice.tool_calls]


def assert_valid(calls: list[ToolCall], names: set[str]) -> None:
    assert calls
    for call in calls:
        assert call.name in names and call.id.startswith("call_")
        assert arguments_errors(SCHEMAS[call.name], call.arguments) == [], call.arguments


async def reassembled(stub, req) -> tuple[str, str, list[ToolCall], object]:
    """Concatenated text and reasoning, the calls rebuilt from their pieces, and the final message."""
    messages = [m async for m in stub.GenerateStream(req, timeout=120)]
    assembler, text, reasoning = ToolCallAssembler(), "", ""
    for m in messages[:-1]:
        text += m.delta.text
        reasoning += m.delta.reasoning
        for piece in m.delta.tool_calls:
            assembler.add(ToolCallDelta.from_proto(piece))
    return text, reasoning, assembler.calls(), messages[-1].final


async def test_required_and_named_choices_give_valid_calls(stub):
    reply = await stub.Generate(request("required", parallel_tool_calls=False), timeout=120)
    choice = reply.choices[0]
    assert choice.finish_reason == FINISH.FINISH_REASON_TOOL_CALLS
    assert choice.text == "" and len(choice.tool_calls) == 1
    assert_valid(calls_of(choice), {"get_weather", "get_time"})
    named = (await stub.Generate(request("function", "get_time"), timeout=120)).choices[0]
    assert named.finish_reason == FINISH.FINISH_REASON_TOOL_CALLS
    assert [c.name for c in named.tool_calls] == ["get_time"]
    assert_valid(calls_of(named), {"get_time"})


async def test_forced_arguments_are_schema_valid_for_any_seed(stub):
    for seed in range(20):
        mode, function = ("function", "get_weather") if seed % 2 else ("required", "")
        req = request(mode, function, max_tokens=170, seed=seed, temperature=1.0, parallel_tool_calls=seed % 4 == 0)
        choice = (await stub.Generate(req, timeout=120)).choices[0]
        calls = calls_of(choice)
        assert choice.text == "", (seed, choice.text)  # forced: nothing but calls, even when cut short
        if choice.finish_reason == FINISH.FINISH_REASON_LENGTH:  # a parallel run may stop inside a later call
            assert len(calls) > 1, seed
            calls = calls[:-1]
        else:
            assert choice.finish_reason == FINISH.FINISH_REASON_TOOL_CALLS, seed
        assert_valid(calls, {function} if function else set(SCHEMAS))


async def test_parallel_calls_are_allowed_only_when_asked(stub):
    single = [(await stub.Generate(request("required", seed=s, temperature=1.0, parallel_tool_calls=False),
                                   timeout=120)).choices[0] for s in range(4)]
    assert all(len(c.tool_calls) == 1 and c.finish_reason == FINISH.FINISH_REASON_TOOL_CALLS for c in single)
    several = [(await stub.Generate(request("required", max_tokens=170, seed=s, temperature=1.0), timeout=120))
               .choices[0] for s in range(4)]
    assert all(len(c.tool_calls) >= 1 for c in several)
    assert max(len(c.tool_calls) for c in several) >= 2


async def test_streamed_pieces_add_up_to_the_unary_answer(stub):
    for req in (request("required"), request("function", "get_time", seed=5, temperature=1.0),
                request("auto", thinking=True, max_tokens=40), request("auto", tools=[tool("get_weather", True)])):
        unary = (await stub.Generate(req, timeout=120)).choices[0]
        text, reasoning, calls, final = await reassembled(stub, req)
        streamed = final.choices[0]
        assert (text, reasoning) == (unary.text, unary.reasoning) == (streamed.text, streamed.reasoning)
        assert [(c.name, c.arguments) for c in calls] == [(c.name, c.arguments) for c in unary.tool_calls]
        assert [(c.id, c.name, c.arguments) for c in calls] == [(c.id, c.name, c.arguments)
                                                                for c in streamed.tool_calls]
        assert streamed.finish_reason == unary.finish_reason


async def test_a_call_streams_its_name_first_then_argument_text(stub):
    _, _, _, final = await reassembled(stub, request("function", "get_time"))
    messages = [m async for m in stub.GenerateStream(request("function", "get_time"), timeout=120)]
    pieces = [p for m in messages[:-1] for p in m.delta.tool_calls]
    assert pieces[0].name == "get_time" and pieces[0].id.startswith("call_") and not pieces[0].arguments
    assert len(pieces) > 2 and all(not p.name and not p.id and p.index == 0 for p in pieces[1:])
    assert "".join(p.arguments for p in pieces) == final.choices[0].tool_calls[0].arguments


async def test_thinking_on_puts_the_output_in_reasoning(stub):
    req = request("none", max_tokens=30, thinking=True, tools=[])
    text, reasoning, _, final = await reassembled(stub, req)
    choice = final.choices[0]
    assert choice.reasoning and reasoning == choice.reasoning
    assert choice.finish_reason == FINISH.FINISH_REASON_LENGTH  # the random model never writes </think>
    assert text == choice.text == ""


async def test_thinking_off_gives_no_reasoning(stub):
    choice = (await stub.Generate(request("none", max_tokens=30, thinking=False, tools=[]), timeout=120)).choices[0]
    assert choice.reasoning == "" and choice.text


async def test_a_template_without_tools_refuses_them_naming_the_feature(stub):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Generate(request("auto", model="plain"), timeout=30)
    error = from_rpc_error(info.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and error.message.startswith("tools is not supported")
    assert error.reason == "UNSUPPORTED" and "has no tools" in error.message
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Generate(request("none", model="plain", tools=[], thinking=True), timeout=30)
    assert from_rpc_error(info.value).message.startswith("reasoning is not supported")


async def test_capabilities_declare_tools_and_reasoning(stub):
    caps = await stub.Capabilities(capabilities_pb2.CapabilitiesRequest(), timeout=30)
    assert caps.generation.tools and caps.generation.reasoning
