"""The BackendService endpoints the conformance suite runs against, one factory per name.

Adding an endpoint takes a few lines: an async generator function that starts the service, yields an
`Endpoint` describing it, and stops it afterwards, registered under a name (the test id) with the
markers that gate it::

    @endpoint("hf", pytest.mark.hf)
    async def hf() -> AsyncIterator[Endpoint]:
        model_dir = build_tiny_llama(tmp_dir)                 # a tiny real model, built offline
        engine = HfEngine(HfSettings(port=0, metrics_port=0, models=...))
        running = await start_server(serving(engine))                  # or a subprocess: `forgeway serve hf --port P`
        try:
            yield Endpoint(name="hf", backend="hf", address=f"127.0.0.1:{running.port}",
                           metrics_url=f"http://127.0.0.1:{running.metrics_port}/metrics", model="tiny", prompt=...)
        finally:
            await running.drain(0)

The suite waits for grpc.health.v1 SERVING before its first test, so a factory may yield as soon as the
port is bound. A factory may build on another (the gateway's enters `ENDPOINTS["echo"].start()`, serves
the gateway in front of it, and yields the gateway's address with the echo's metrics_url and
token_labels, because the tokens are counted where they are decoded). Run one endpoint with
`pytest tests/conformance -k echo`; heavy ones are deselected with their marker (`-m "not hf"`).
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field

import pytest
from prometheus_client.parser import text_string_to_metric_families

from forgeway.services.runtime.service import serving
from forgeway.services.echo.engine import EchoEngine, EchoSettings
from forgeway.server.server import start_server

# Thirty-two distinct words: any backend generates at least ~24 tokens from it when max_tokens allows.
PROMPT = (
    "The river carried the small boat past the old mill, under the stone bridge, and out toward the quiet "
    "harbour where fishermen mended their nets while gulls circled above the grey water"
)


@dataclass(frozen=True)
class Endpoint:
    """A running BackendService and what the suite needs to know to test it."""

    name: str  # registry name, also the test id
    backend: str  # the kind its Capabilities reports ("echo", "hf", "gateway", ...)
    address: str  # host:port of the BackendService
    metrics_url: str  # Prometheus /metrics of the process that decodes the tokens
    model: str  # a model it serves, by name
    prompt: str = PROMPT  # a prompt that yields at least `max_tokens` tokens under greedy decoding
    max_tokens: int = 24  # tokens per generation in the comparisons (stop, stream vs unary)
    long_max_tokens: int = 400  # a generation that takes far longer than `deadline_s` and the cancel test
    deadline_s: float = 0.3  # a deadline that expires while a long_max_tokens generation is running
    cancel_slack: int = 8  # tokens the backend may still count after a cancel before it stops
    # Labels of forgeway_tokens_total that count this endpoint's completion tokens, as they are generated.
    token_labels: Mapping[str, str] = field(default_factory=dict)
    # An embedding and a rerank model it serves: required when its Capabilities list Embed or Rerank, so every
    # backend that declares them is checked (test_embeddings.py).
    embedding_model: str = ""
    rerank_model: str = ""
    # Whether it refuses an input longer than the model's max input length (the proxy's upstream decides there).
    refuses_long_inputs: bool = True

    def tokens_selector(self) -> dict[str, str]:
        return {"service": self.backend, "model": self.model, "kind": "completion", **self.token_labels}


@dataclass(frozen=True)
class Registered:
    start: Callable[[], AbstractAsyncContextManager[Endpoint]]
    marks: tuple[pytest.MarkDecorator, ...] = ()


ENDPOINTS: dict[str, Registered] = {}


def endpoint(name: str, *marks: pytest.MarkDecorator):
    """Register an async generator function yielding one Endpoint under name, gated by marks."""

    def register(factory: Callable[[], AsyncIterator[Endpoint]]):
        ENDPOINTS[name] = Registered(asynccontextmanager(factory), marks)
        return factory

    return register


def _read_counter(url: str, name: str, selector: Mapping[str, str]) -> float:
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in selector.items())
    )


async def tokens_counted(ep: Endpoint) -> float:
    """forgeway_tokens_total of this endpoint's completion tokens, read from its /metrics now."""
    return await asyncio.to_thread(_read_counter, ep.metrics_url, "forgeway_tokens_total", ep.tokens_selector())


async def tokens_settled(ep: Endpoint, interval: float = 0.25, timeout: float = 30.0) -> float:
    """The completion-token counter once it has stopped moving (two equal reads `interval` apart)."""
    last = await tokens_counted(ep)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(interval)
        now = await tokens_counted(ep)
        if now == last:
            return now
        last = now
    return last


@endpoint("echo")
async def echo() -> AsyncIterator[Endpoint]:
    """The model-free echo engine, in-process; a small token delay makes cancellation observable."""
    settings = EchoSettings(host="127.0.0.1", port=0, metrics_port=0, token_delay=0.02, model_name="echo",
                            embedding_model="echo-embed", rerank_model="echo-rerank")
    running = await start_server(serving(EchoEngine(settings)))
    try:
        yield Endpoint(
            name="echo",
            backend="echo",
            address=f"127.0.0.1:{running.port}",
            metrics_url=f"http://127.0.0.1:{running.metrics_port}/metrics",
            model="echo",
            embedding_model=settings.embedding_model,
            rerank_model=settings.rerank_model,
        )
    finally:
        await running.drain(0)


@endpoint("gateway")
async def gateway() -> AsyncIterator[Endpoint]:
    """The gateway, in-process, in front of the echo endpoint. Tokens are counted where they are decoded: the
    echo's /metrics, under its own service label."""
    from forgeway.gateway.service import GatewayService
    from forgeway.gateway.settings import GatewaySettings

    async with ENDPOINTS["echo"].start() as echo_endpoint:
        settings = GatewaySettings(host="127.0.0.1", port=0, metrics_port=-1, http_port=-1,
                                   backends=[{"name": "echo", "address": echo_endpoint.address}])
        running = await start_server(GatewayService(settings))
        try:
            yield Endpoint(
                name="gateway",
                backend="gateway",
                address=f"127.0.0.1:{running.port}",
                metrics_url=echo_endpoint.metrics_url,
                model=echo_endpoint.model,
                token_labels={"service": echo_endpoint.backend},
                embedding_model=echo_endpoint.embedding_model,
                rerank_model=echo_endpoint.rerank_model,
            )
        finally:
            await running.drain(0)


@endpoint("hf", pytest.mark.hf)
async def hf() -> AsyncIterator[Endpoint]:
    """The transformers backend, in-process (one torch thread), on a random 8-layer Llama (~26M parameters) built
    offline: the 2-layer tiny model decodes a 400-token generation before a 0.3 s deadline can land."""
    import tempfile
    from pathlib import Path

    from forgeway.services.hf.engine import HFEngine
    from forgeway.services.hf.settings import HFSettings
    from forgeway.demo.llama import LlamaShape, init_llama, save_model
    from forgeway.demo.tokenizer import train_tokenizer
    from forgeway.testing import build_embedding_model, build_reranker

    with tempfile.TemporaryDirectory(prefix="forgeway-hf-") as tmp:
        shape = LlamaShape(hidden_size=512, intermediate_size=1536, num_hidden_layers=8, num_attention_heads=8,
                           num_key_value_heads=4)
        tokenizer = train_tokenizer()
        model_dir = await asyncio.to_thread(save_model, init_llama(tokenizer, shape, seed=0), tokenizer,
                                            Path(tmp) / "conformance")
        embed = await asyncio.to_thread(build_embedding_model, Path(tmp) / "embed")
        rerank = await asyncio.to_thread(build_reranker, Path(tmp) / "rerank")
        settings = HFSettings(host="127.0.0.1", port=0, metrics_port=0, home=Path(tmp) / "home", torch_threads=1,
                              models=[{"name": "conformance", "path": str(model_dir)},
                                      {"name": "embed", "path": str(embed)}, {"name": "rerank", "path": str(rerank)}])
        running = await start_server(serving(HFEngine(settings)))
        try:
            yield Endpoint(
                name="hf",
                backend="hf",
                address=f"127.0.0.1:{running.port}",
                metrics_url=f"http://127.0.0.1:{running.metrics_port}/metrics",
                model="conformance",
                embedding_model="embed",
                rerank_model="rerank",
            )
        finally:
            await running.drain(0)


@endpoint("llamacpp", pytest.mark.llamacpp)
async def llamacpp() -> AsyncIterator[Endpoint]:
    """`forgeway serve llamacpp` as its own process, on an F32 GGUF of a random 8-layer Llama (~26M parameters):
    the 2-layer tiny model decodes ~10k tokens/s, too fast for a deadline or a cancel to land mid-generation."""
    import json
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from forgeway.testing import build_tiny_bert_gguf, build_tiny_gguf
    from forgeway.demo.llama import LlamaShape, init_llama, save_model
    from forgeway.demo.tokenizer import train_tokenizer
    from forgeway.server.ports import free_port

    with tempfile.TemporaryDirectory(prefix="forgeway-llamacpp-") as tmp:
        shape = LlamaShape(hidden_size=512, intermediate_size=1536, num_hidden_layers=8, num_attention_heads=8,
                           num_key_value_heads=4)
        tokenizer = train_tokenizer()
        model_dir = await asyncio.to_thread(save_model, init_llama(tokenizer, shape, seed=0), tokenizer,
                                            Path(tmp) / "conformance")
        gguf = await asyncio.to_thread(build_tiny_gguf, model_dir, model_dir / "model.gguf")
        embed = await asyncio.to_thread(build_tiny_bert_gguf, Path(tmp) / "embed", "embedding", "mean")
        rerank = await asyncio.to_thread(build_tiny_bert_gguf, Path(tmp) / "rerank", "rerank")
        port, metrics_port = free_port("127.0.0.1"), free_port("127.0.0.1")
        models = [{"name": "conformance", "source": str(gguf), "n_ctx": 512, "n_threads": 1},
                  {"name": "embed", "source": str(embed), "task": "embedding", "n_threads": 1, "instances": 2},
                  {"name": "rerank", "source": str(rerank), "task": "rerank", "n_threads": 1, "instances": 2}]
        log = open(Path(tmp) / "llamacpp.log", "wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "forgeway.cli", "serve", "llamacpp", "--host", "127.0.0.1", "--port", str(port),
             "--metrics-port", str(metrics_port), "--home", tmp, "--models", json.dumps(models)],
            stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            yield Endpoint(
                name="llamacpp",
                backend="llamacpp",
                address=f"127.0.0.1:{port}",
                metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
                model="conformance",
                embedding_model="embed",
                rerank_model="rerank",
            )
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()


@endpoint("openai", pytest.mark.llamacpp)
async def openai_proxy() -> AsyncIterator[Endpoint]:
    """The OpenAI proxy, in-process, in front of llama-cpp-python's OpenAI-compatible server (its own process) on
    the tiny GGUF. That server finishes a stream whose client went away before it answers anyone else, so the long
    generation stays short (200 tokens); a 10 ms deadline still expires before it ends."""
    from forgeway.services.openai_proxy.engine import OpenAIProxyEngine
    from forgeway.testing import LLAMA_CPP_SETTINGS, start_llama_server, tiny_model
    from forgeway.services.openai_proxy.settings import OpenAIProxySettings

    gguf, tokenizer = await asyncio.to_thread(tiny_model)
    upstream = await asyncio.to_thread(start_llama_server, gguf, model="tiny", n_ctx=512)
    settings = OpenAIProxySettings(
        host="127.0.0.1", port=0, metrics_port=0, base_url=upstream.base_url,
        models=[{"name": "tiny", "tokenizer": tokenizer}], **LLAMA_CPP_SETTINGS,
    )  # fmt: skip
    running = await start_server(serving(OpenAIProxyEngine(settings)))
    try:
        yield Endpoint(
            name="openai",
            backend="openai",
            address=f"127.0.0.1:{running.port}",
            metrics_url=f"http://127.0.0.1:{running.metrics_port}/metrics",
            model="tiny",
            long_max_tokens=200,
            deadline_s=0.01,
            # llama-cpp-python's server decodes the tiny model at ~10k tokens/s and a cancel crosses gRPC, the
            # proxy's loop and an HTTP close: under the full suite 9 and 29 tokens came after it. Fewer than the
            # 200 of the whole generation still shows it stopped.
            cancel_slack=48,
        )
    finally:
        await running.drain(0)
        upstream.stop()
