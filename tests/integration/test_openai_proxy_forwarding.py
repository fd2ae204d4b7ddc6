"""The OpenAI proxy against a real upstream (llama-cpp-python's server on the tiny GGUF): what it forwards and how."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc
import openai
import psutil
import pytest

from forgeway.services.runtime.service import serving
from forgeway.services.openai_proxy.engine import OpenAIProxyEngine
from forgeway.testing import (
    LLAMA_CPP_SETTINGS,
    LocalUpstream,
    start_llama_server,
    tiny_model,
)
from forgeway.services.openai_proxy.settings import OpenAIProxySettings
from forgeway.core.errors import RemoteError, from_rpc_error
from forgeway.server.server import start_server
from forgeway.v1 import backend_pb2_grpc, capabilities_pb2, generate_pb2

pytestmark = pytest.mark.llamacpp

PROMPT = "The river carried the small boat past the old mill"
STOP = generate_pb2.FinishReason


@pytest.fixture(scope="module")
def upstream() -> LocalUpstream:
    gguf, _ = tiny_model()
    server = start_llama_server(gguf, model="tiny", n_ctx=1024)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def direct(upstream: LocalUpstream) -> openai.AsyncOpenAI:
    """The upstream called directly with the openai client: what the proxy must reproduce."""
    return openai.AsyncOpenAI(base_url=upstream.base_url, api_key="unused", max_retries=0)


@dataclass
class Proxy:
    engine: OpenAIProxyEngine
    backend: backend_pb2_grpc.BackendServiceStub

    async def capabilities(self) -> capabilities_pb2.CapabilitiesResponse:
        return await self.backend.Capabilities(capabilities_pb2.CapabilitiesRequest(), timeout=10)

    async def stream(self, request: generate_pb2.GenerateRequest) -> list[generate_pb2.GenerateStreamResponse]:
        return [m async for m in self.backend.GenerateStream(request, timeout=60)]

    async def error(self, request: generate_pb2.GenerateRequest) -> RemoteError:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await self.backend.Generate(request, timeout=60)
        return from_rpc_error(caught.value)


@asynccontextmanager
async def proxy(upstream: LocalUpstream, **overrides) -> AsyncIterator[Proxy]:
    """The proxy in-process on a loopback port, configured for llama-cpp-python, ready."""
    values = {**LLAMA_CPP_SETTINGS, "models": [{"name": "tiny"}], "health_interval_seconds": 0.2, **overrides}
    settings = OpenAIProxySettings(host="127.0.0.1", port=0, metrics_port=-1, base_url=upstream.base_url, **values)
    engine = OpenAIProxyEngine(settings)
    running = await start_server(serving(engine))
    deadline = time.monotonic() + 30
    while not engine.ready and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield Proxy(engine, backend_pb2_grpc.BackendServiceStub(channel))
    finally:
        await running.drain(0)


def request(max_tokens: int = 12, **fields) -> generate_pb2.GenerateRequest:
    fields.setdefault("model", "tiny")
    if "messages" not in fields:
        fields.setdefault("prompt", PROMPT)
    sampling = fields.pop("sampling", generate_pb2.SamplingParams())
    sampling.max_tokens = max_tokens
    return generate_pb2.GenerateRequest(sampling=sampling, **fields)


def streamed_text(messages: list[generate_pb2.GenerateStreamResponse]) -> str:
    return "".join(m.delta.text for m in messages if m.WhichOneof("event") == "delta")


async def test_prompts_match_the_upstream_called_directly(upstream, direct):
    expected = await direct.completions.create(model="tiny", prompt=PROMPT, max_tokens=12, temperature=0)
    async with proxy(upstream) as p:
        unary = await p.backend.Generate(request(), timeout=60)
        messages = await p.stream(request())
    assert unary.choices[0].text == expected.choices[0].text
    assert streamed_text(messages) == expected.choices[0].text
    assert messages[-1].final.choices[0].text == expected.choices[0].text
    assert unary.usage.prompt_tokens == expected.usage.prompt_tokens
    assert unary.usage.completion_tokens == expected.usage.completion_tokens
    assert unary.choices[0].finish_reason == STOP.FINISH_REASON_LENGTH
    assert unary.served_by.startswith("openai/")


async def test_chat_messages_match_the_upstream_called_directly(upstream, direct):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is the boat?"}]
    expected = await direct.chat.completions.create(model="tiny", messages=messages, max_tokens=10, temperature=0)
    chat = request(10, messages=[generate_pb2.Message(**m) for m in messages])
    async with proxy(upstream) as p:
        unary = await p.backend.Generate(chat, timeout=60)
        streamed = await p.stream(chat)
    assert unary.choices[0].text == expected.choices[0].message.content
    assert streamed_text(streamed) == expected.choices[0].message.content
    assert unary.usage.prompt_tokens == expected.usage.prompt_tokens


async def test_stream_usage_is_counted_when_the_upstream_sends_none(upstream, direct):
    """llama-cpp-python ignores stream_options.include_usage: completion tokens are counted from the chunks and
    prompt tokens with the model's tokenizer, and they agree with the upstream's unary usage."""
    _, tokenizer = tiny_model()
    expected = await direct.completions.create(model="tiny", prompt=PROMPT, max_tokens=9, temperature=0)
    async with proxy(upstream, models=[{"name": "tiny", "tokenizer": str(tokenizer)}]) as p:
        final = (await p.stream(request(9)))[-1].final
    assert final.usage.completion_tokens == expected.usage.completion_tokens == 9
    assert final.usage.prompt_tokens == expected.usage.prompt_tokens > 0


async def test_logprobs_are_passed_through(upstream, direct):
    expected = await direct.completions.create(model="tiny", prompt=PROMPT, max_tokens=5, temperature=0, logprobs=2)
    async with proxy(upstream) as p:
        unary = await p.backend.Generate(request(5, logprobs=True, top_logprobs=2), timeout=60)
        streamed = await p.stream(request(5, logprobs=True, top_logprobs=2))
    got = unary.choices[0].logprobs
    assert [lp.token for lp in got] == expected.choices[0].logprobs.tokens
    assert [lp.logprob for lp in got] == pytest.approx(expected.choices[0].logprobs.token_logprobs, abs=1e-4)
    for lp in got:
        alternatives = [t.logprob for t in lp.top_logprobs]
        assert len(alternatives) == 2 and alternatives == sorted(alternatives, reverse=True)
    streamed_tokens = [lp.token for m in streamed if m.WhichOneof("event") == "delta" for lp in m.delta.logprobs]
    assert streamed_tokens == expected.choices[0].logprobs.tokens


@pytest.mark.parametrize("top", [0, 2])
async def test_chat_logprobs_are_passed_through(upstream, direct, top):
    messages = [{"role": "user", "content": "Where is the boat?"}]
    expected = await direct.chat.completions.create(model="tiny", messages=messages, max_tokens=4, temperature=0,
                                                    logprobs=True, top_logprobs=2)  # fmt: skip
    chat = request(4, messages=[generate_pb2.Message(**m) for m in messages], logprobs=True, top_logprobs=top)
    async with proxy(upstream) as p:
        unary = await p.backend.Generate(chat, timeout=60)
        streamed = await p.stream(chat)
    tokens = [lp.token for lp in expected.choices[0].logprobs.content]
    assert [lp.token for lp in unary.choices[0].logprobs] == tokens
    assert [lp.token for m in streamed if m.WhichOneof("event") == "delta" for lp in m.delta.logprobs] == tokens
    assert all(len(lp.top_logprobs) == top for lp in unary.choices[0].logprobs)


async def test_extra_body_sampling_params_are_honoured_by_the_upstream(upstream):
    """top_k=1 or min_p=1 at a high temperature keep only the likeliest token: the greedy text, so they arrived."""
    async with proxy(upstream) as p:
        greedy = (await p.backend.Generate(request(16), timeout=60)).choices[0].text
        for params in ({"top_k": 1}, {"min_p": 1.0}):
            sampling = generate_pb2.SamplingParams(temperature=1.9, seed=3, **params)
            got = await p.backend.Generate(request(16, sampling=sampling), timeout=60)
            assert got.choices[0].text == greedy, params
        hot = await p.backend.Generate(request(16, sampling=generate_pb2.SamplingParams(temperature=1.9, seed=3)))
        assert hot.choices[0].text != greedy


async def test_the_same_seed_gives_the_same_text(upstream):
    async with proxy(upstream) as p:
        texts = [
            (await p.backend.Generate(request(16, sampling=generate_pb2.SamplingParams(temperature=1.0, seed=s)),
                                      timeout=60)).choices[0].text
            for s in (11, 11, 12)
        ]  # fmt: skip
    assert texts[0] == texts[1] != texts[2]


async def test_grammar_and_json_schema_constrain_the_output(upstream):
    schema = {"type": "object", "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}},
              "required": ["answer"]}  # fmt: skip
    async with proxy(upstream) as p:
        grammar = request(8, structured_output=generate_pb2.StructuredOutput(grammar='root ::= "yes" | "no"'))
        assert (await p.backend.Generate(grammar, timeout=60)).choices[0].text in {"yes", "no"}
        chat = request(48, messages=[generate_pb2.Message(role="user", content="Is the river wide?")],
                       structured_output=generate_pb2.StructuredOutput(json_schema=json.dumps(schema)))
        answer = await p.backend.Generate(chat, timeout=60)
        assert json.loads(answer.choices[0].text)["answer"] in {"yes", "no"}
        prompt = request(8, structured_output=generate_pb2.StructuredOutput(json_schema=json.dumps(schema)))
        error = await p.error(prompt)  # llama-cpp-python's /v1/completions would ignore it: rejected, not ignored
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and error.reason == "UNSUPPORTED"


async def test_names_aliases_and_upstream_names(upstream):
    models = [{"name": "friendly", "upstream": "tiny", "aliases": ["nick"], "context_length": 1024},
              {"name": "ghost", "upstream": "not-at-the-upstream"}]  # fmt: skip
    async with proxy(upstream, models=models) as p:
        caps = await p.capabilities()
        reply = await p.backend.Generate(request(4, model="nick"), timeout=60)
        unknown = await p.error(request(4, model="tinyy"))
    listed = {m.name: m for m in caps.models}
    assert set(listed) == {"friendly", "ghost"}
    assert listed["friendly"].aliases == ["nick"] and listed["friendly"].context_length == 1024
    assert listed["friendly"].loaded and not listed["ghost"].loaded, "loaded: whether the upstream lists it"
    assert listed["friendly"].backend == "openai"
    assert reply.model == "friendly"
    assert unknown.code == grpc.StatusCode.NOT_FOUND and "tinyy" in unknown.message


async def test_models_are_discovered_from_the_upstream_when_none_are_configured(upstream):
    async with proxy(upstream, models=[]) as p:
        caps = await p.capabilities()
        reply = await p.backend.Generate(request(3), timeout=60)
    assert [m.name for m in caps.models] == ["tiny"]
    assert caps.availability.available and caps.backend == "openai"
    assert "openai" in caps.library_versions
    assert reply.choices[0].text


async def test_features_the_upstream_lacks_are_rejected(upstream):
    async with proxy(upstream, logprobs=False, seed=False, extra_body_params={}) as p:
        caps = await p.capabilities()
        for name, ask in {"logprobs": {"logprobs": True}, "multiple_choices": {"n": 2},
                          "seed": {"sampling": generate_pb2.SamplingParams(seed=1)},
                          "top_k": {"sampling": generate_pb2.SamplingParams(top_k=3)}}.items():  # fmt: skip
            error = await p.error(request(4, **ask))
            assert error.code == grpc.StatusCode.INVALID_ARGUMENT and error.reason == "UNSUPPORTED", name
            assert error.error_info.metadata["feature"] == name
    assert not caps.generation.logprobs and not caps.generation.seed and not caps.generation.multiple_choices
    assert "top_k" not in caps.generation.sampling_params and "temperature" in caps.generation.sampling_params


async def test_a_prompt_too_long_for_the_upstream_is_invalid_argument_with_its_message(upstream):
    async with proxy(upstream) as p:
        error = await p.error(request(16, prompt="word " * 1500))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT, f"{error.code.name}: {error.message}"
    assert "context" in error.message and "rejected by the upstream" in error.message
    assert error.field_violations


async def test_chat_only_models_reject_prompts(upstream):
    async with proxy(upstream, models=[{"name": "tiny", "prompt": False}]) as p:
        error = await p.error(request(4))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in error.field_violations] == ["prompt"]


def connections_to(upstream: LocalUpstream) -> set[int]:
    """Local ports of this process's open TCP connections to the upstream (the proxy runs in this process)."""
    return {c.laddr.port for c in psutil.Process().net_connections("tcp")
            if c.raddr and c.raddr.port == upstream.port and c.status == psutil.CONN_ESTABLISHED}  # fmt: skip


async def test_cancelling_the_stream_closes_the_upstream_stream(upstream):
    """The streaming HTTP connection to the upstream is closed at once; pooled idle ones stay."""
    async with proxy(upstream, health_interval_seconds=3600) as p:
        call = p.backend.GenerateStream(request(200, prompt="A"), timeout=60)
        received = 0
        async for _ in call:
            received += 1
            if received == 3:
                break
        streaming = connections_to(upstream)
        assert streaming and p.engine.in_flight == 1
        call.cancel()
        deadline = time.monotonic() + 10
        while connections_to(upstream) >= streaming:
            assert time.monotonic() < deadline, "the proxy kept its upstream stream open"
            await asyncio.sleep(0.05)
        assert p.engine.in_flight == 0
        assert (await p.backend.Generate(request(3), timeout=60)).choices[0].text, "the upstream serves on"
