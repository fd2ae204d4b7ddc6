"""Tool calling and reasoning through the llama.cpp service on the tiny GGUF: its own chat template renders the tools,
the calls and their results; forced calls hold to the function's schema; streams rebuild unary answers; a thinking
switch puts reasoning apart from the content; a model whose template has no tools refuses them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from forgeway.core.errors import from_rpc_error
from forgeway.core.generation import GenerationRequest
from forgeway.core.tools import ToolCallAssembler, ToolCallDelta, arguments_errors
from forgeway.server.server import RunningServer, start_server
from forgeway.services.llamacpp.engine import LlamaCppEngine
from forgeway.services.llamacpp.settings import LlamaCppSettings
from forgeway.services.runtime.service import serving
from forgeway.testing import build_tiny_gguf, build_tiny_llama
from forgeway.v1 import backend_pb2_grpc, capabilities_pb2, generate_pb2

pytestmark = pytest.mark.llamacpp

FINISH = generate_pb2.FinishReason
MODE = generate_pb2.ToolChoiceMode
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string", "enum": ["Paris", "Oslo", "Tokyo"]},
                   "days": {"type": "integer", "minimum": 1, "maximum": 7}},
    "required": ["city", "days"],
    "additionalProperties": False,
}
# Two limits of llama.cpp's schema grammar: it lets bytes that are not UTF-8 into a free string (a random model writes
# them; each decodes to U+FFFD), so a maxLength alone can be overrun once decoded; and where a string has a pattern,
# the pattern alone holds it (maxLength is not applied). So the pattern here carries the length.
NOTE = {"type": "object", "properties": {"text": {"type": "string", "maxLength": 12, "pattern": "^[a-z ]{0,12}$"}},
        "required": ["text"], "additionalProperties": False}
SCHEMAS = {"get_weather": WEATHER, "take_note": NOTE}
QUESTION = generate_pb2.Message(role="user", content="What is the weather in Paris?")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("llamacpp-tools") / "tiny", seed=0)


@pytest.fixture(scope="module")
async def server(tiny_model: Path) -> AsyncIterator[RunningServer]:
    gguf = build_tiny_gguf(tiny_model, tiny_model / "model.gguf")
    # "plain": the same GGUF under llama.cpp's built-in ChatML template, which has neither tools nor thinking
    settings = LlamaCppSettings(
        host="127.0.0.1", port=0, metrics_port=-1, home=tiny_model.parent,
        models=[{"name": "tiny", "source": str(gguf), "n_ctx": 512, "n_threads": 1},
                {"name": "plain", "source": str(gguf), "n_ctx": 512, "n_threads": 1, "chat_format": "chatml",
                 "instances": 1}],
    )
    running = await start_server(serving(LlamaCppEngine(settings)))
    await running.startup
    assert running.service.ready, running.service.failure
    yield running
    await running.drain(0)


@pytest.fixture
async def backend(server: RunningServer) -> AsyncIterator[backend_pb2_grpc.BackendServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield backend_pb2_grpc.BackendServiceStub(channel)


def tool_request(mode=MODE.TOOL_CHOICE_MODE_AUTO, function: str = "", messages=(QUESTION,), model: str = "tiny",
                 max_tokens: int = 120, **fields) -> generate_pb2.GenerateRequest:
    tools = [generate_pb2.Tool(function=generate_pb2.FunctionDefinition(
        name=name, description=name.replace("_", " "), parameters=json.dumps(schema), strict=True))
        for name, schema in SCHEMAS.items()]
    sampling = generate_pb2.SamplingParams(max_tokens=max_tokens, **fields.pop("sampling", {}))
    return generate_pb2.GenerateRequest(model=model, messages=list(messages), tools=tools, sampling=sampling,
                                        tool_choice=generate_pb2.ToolChoice(mode=mode, function=function), **fields)


def assert_valid_calls(choice: generate_pb2.Choice, allowed: set[str]) -> None:
    assert choice.finish_reason == FINISH.FINISH_REASON_TOOL_CALLS, choice
    assert choice.tool_calls and not choice.text, choice
    for call in choice.tool_calls:
        assert call.name in allowed and call.id.startswith("call_"), call
        assert arguments_errors(SCHEMAS[call.name], call.arguments) == [], call


async def streamed(backend, request) -> tuple[list[generate_pb2.GenerateDelta], generate_pb2.GenerateResponse]:
    messages = [m async for m in backend.GenerateStream(request, timeout=60)]
    return [m.delta for m in messages[:-1]], messages[-1].final


def rebuilt(deltas: list[generate_pb2.GenerateDelta]) -> list[tuple[str, str, str]]:
    assembler = ToolCallAssembler()
    for delta in deltas:
        for piece in delta.tool_calls:
            assembler.add(ToolCallDelta.from_proto(piece))
    return [(c.id, c.name, c.arguments) for c in assembler.calls()]


async def test_capabilities_declare_tools_and_reasoning_and_the_models_that_cannot(backend):
    caps = await backend.Capabilities(capabilities_pb2.CapabilitiesRequest(), timeout=10)
    assert caps.generation.tools and caps.generation.reasoning
    models = {m.name: dict(m.unsupported_features) for m in caps.models}
    assert models["tiny"] == {}
    assert set(models["plain"]) == {"tools", "reasoning"}


@pytest.mark.parametrize("mode", ["required", "named"])
async def test_forced_calls_hold_to_the_schema_for_20_seeds(backend, mode):
    allowed = set(SCHEMAS) if mode == "required" else {"take_note"}
    for seed in range(20):
        request = (tool_request(MODE.TOOL_CHOICE_MODE_REQUIRED, parallel_tool_calls=False) if mode == "required"
                   else tool_request(MODE.TOOL_CHOICE_MODE_FUNCTION, function="take_note"))
        request.sampling.temperature, request.sampling.seed = 1.0, seed
        reply = await backend.Generate(request, timeout=60)
        assert_valid_calls(reply.choices[0], allowed)
        assert len(reply.choices[0].tool_calls) == 1


async def test_parallel_calls_come_as_several_calls_in_one_answer(backend):
    counts = []
    for seed in range(20):
        request = tool_request(MODE.TOOL_CHOICE_MODE_REQUIRED, max_tokens=130, sampling={"temperature": 1.0,
                                                                                          "seed": seed})
        choice = (await backend.Generate(request, timeout=60)).choices[0]
        if choice.finish_reason == FINISH.FINISH_REASON_LENGTH:
            continue  # a random model may list calls until it runs out of tokens
        assert_valid_calls(choice, set(SCHEMAS))
        counts.append(len(choice.tool_calls))
    assert len(counts) >= 10 and max(counts) > 1, counts


@pytest.mark.parametrize("mode", [MODE.TOOL_CHOICE_MODE_REQUIRED, MODE.TOOL_CHOICE_MODE_FUNCTION,
                                  MODE.TOOL_CHOICE_MODE_AUTO])
async def test_stream_pieces_rebuild_the_unary_answer(backend, mode):
    request = tool_request(mode, function="get_weather" if mode == MODE.TOOL_CHOICE_MODE_FUNCTION else "",
                           parallel_tool_calls=False)
    unary = (await backend.Generate(request, timeout=60)).choices[0]
    deltas, final = await streamed(backend, request)
    choice = final.choices[0]
    assert "".join(d.text for d in deltas) == choice.text == unary.text
    assert [(n, a) for _, n, a in rebuilt(deltas)] == [(c.name, c.arguments) for c in unary.tool_calls]
    assert rebuilt(deltas) == [(c.id, c.name, c.arguments) for c in choice.tool_calls]
    assert choice.finish_reason == unary.finish_reason
    if mode != MODE.TOOL_CHOICE_MODE_AUTO:
        assert_valid_calls(choice, set(SCHEMAS))


async def test_an_agent_loop_renders_calls_and_results_and_answers_in_text(backend, tiny_model):
    from transformers import AutoTokenizer

    first = (await backend.Generate(tool_request(MODE.TOOL_CHOICE_MODE_REQUIRED, parallel_tool_calls=False),
                                    timeout=60)).choices[0]
    assert_valid_calls(first, set(SCHEMAS))
    history = [QUESTION, generate_pb2.Message(role="assistant", content=first.text, tool_calls=first.tool_calls)]
    history += [generate_pb2.Message(role="tool", tool_call_id=c.id, content='{"sky": "sunny", "degrees": 21}')
                for c in first.tool_calls]
    answer_request = tool_request(MODE.TOOL_CHOICE_MODE_NONE, messages=history, max_tokens=24)
    reply = await backend.Generate(answer_request, timeout=60)
    answer = reply.choices[0]
    assert not answer.tool_calls and answer.text and answer.finish_reason != FINISH.FINISH_REASON_TOOL_CALLS
    # The GGUF's template, rendered by llama.cpp, gives the prompt transformers renders from the same history
    # (llama.cpp always sets the thinking switch: the service's default is off).
    chat = [{"role": "user", "content": QUESTION.content},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.loads(c.arguments)}}
                for c in first.tool_calls]}]
    chat += [{"role": "tool", "tool_call_id": c.id, "content": '{"sky": "sunny", "degrees": 21}'}
             for c in first.tool_calls]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    # tool_choice none still shows the model its tools (as OpenAI and vLLM do); it only reads no call back
    tools = GenerationRequest.from_proto(answer_request).template_tools
    ids = tokenizer.apply_chat_template(chat, tools=tools, add_generation_prompt=True, enable_thinking=False,
                                        tokenize=True, return_dict=True)["input_ids"]
    assert reply.usage.prompt_tokens == len(ids)


async def test_thinking_puts_reasoning_apart_from_the_content(backend):
    ask = dict(model="tiny", messages=[QUESTION], sampling=generate_pb2.SamplingParams(max_tokens=12))
    thinking = (await backend.Generate(generate_pb2.GenerateRequest(thinking=True, **ask), timeout=60)).choices[0]
    assert thinking.reasoning and not thinking.text and "<think>" not in thinking.reasoning
    plain = (await backend.Generate(generate_pb2.GenerateRequest(thinking=False, **ask), timeout=60)).choices[0]
    assert plain.text and not plain.reasoning
    deltas, final = await streamed(backend, generate_pb2.GenerateRequest(thinking=True, **ask))
    assert "".join(d.reasoning for d in deltas) == final.choices[0].reasoning == thinking.reasoning
    assert not "".join(d.text for d in deltas)


async def test_a_forced_call_with_thinking_on_lets_the_reasoning_come_first(backend):
    # With thinking on, the calls' schema goes as json_schema, whose grammar (llama.cpp's) opens with the reasoning:
    # the random model never closes it, so all of a short answer is reasoning, none of it text or a call.
    request = tool_request(MODE.TOOL_CHOICE_MODE_FUNCTION, function="get_weather", thinking=True, max_tokens=12)
    choice = (await backend.Generate(request, timeout=60)).choices[0]
    assert choice.reasoning and not choice.text and not choice.tool_calls
    assert choice.finish_reason == FINISH.FINISH_REASON_LENGTH


@pytest.mark.parametrize("ask", ["tools", "reasoning"])
async def test_a_template_without_tools_or_thinking_refuses_them(backend, ask):
    request = (tool_request(model="plain") if ask == "tools" else
               generate_pb2.GenerateRequest(model="plain", messages=[QUESTION], thinking=True))
    try:
        await backend.Generate(request, timeout=30)
    except grpc.aio.AioRpcError as exc:
        error = from_rpc_error(exc)
    else:
        raise AssertionError("expected INVALID_ARGUMENT")
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and error.reason == "UNSUPPORTED"
    assert ask in error.message and "template" in error.message
