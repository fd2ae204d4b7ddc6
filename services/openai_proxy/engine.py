"""The OpenAI proxy engine: forwards generations to an OpenAI-compatible upstream with the official client."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import lru_cache
from pathlib import Path

import openai

from forgeway.server import metrics
from forgeway.services.runtime.engine import Features, InferenceEngine, LoadInfo, ModelInfo
from forgeway.core.embeddings import EmbeddingRequest, EmbeddingResult, RerankRequest, RerankResult
from forgeway.core.errors import ForgewayError, Internal, NotFound, Unavailable, Unsupported
from forgeway.core.generation import Completion, Delta, GenerationRequest, GenerationResult, Task
from forgeway.core.tools import ToolCallDelta

from . import embedding, runtime
from .errors import scrub, upstream_error, upstream_message
from .settings import OpenAIProxySettings, UpstreamModel
from .translate import ChoicePiece, ToolCallRelay, build_call, finish_reason, listed_context_length, pieces

log = logging.getLogger("forgeway.openai_proxy")

NO_KEY = "the upstream requires an API key and none is configured: set FORGEWAY_OPENAI_API_KEY or api_key_file"
HEALTH_TIMEOUT = 10.0
BASE_SAMPLING = frozenset({"temperature", "top_p", "presence_penalty", "frequency_penalty"})


@lru_cache(maxsize=16)
def _tokenizer(path: Path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path))


class OpenAIProxyEngine(InferenceEngine):
    """Serves the models of an OpenAI-compatible upstream; SERVING only while the upstream answers /v1/models."""

    kind = "openai"
    Settings = OpenAIProxySettings
    settings: OpenAIProxySettings

    def __init__(self, settings: OpenAIProxySettings):
        super().__init__(settings)
        self._key = ""
        self._client = openai.AsyncOpenAI(
            api_key=self._current_key, base_url=settings.base_url, organization=settings.organization,
            project=settings.project, timeout=settings.timeout_seconds, max_retries=settings.max_retries,
        )
        self._served: list[UpstreamModel] = list(settings.models)
        self._runtime = runtime.RuntimeModels(settings, self.kind)
        self._listed: set[str] = set()
        self._watcher: asyncio.Task | None = None
        self._recheck = asyncio.Event()
        self.in_flight = 0
        # Per instance: Embed and Rerank only where a configured model serves them (the servicer reads this).
        self.retrieval_rpcs = embedding.retrieval_rpcs(self._served)
        self._dimensions: dict[str, int] = {}  # vector lengths learned from answers, for models that declare none

    async def _current_key(self) -> str:
        return self._key

    def _headers(self) -> dict:
        """Per-call headers: with no key, say so to the client instead of letting it look for OPENAI_API_KEY."""
        return {} if self._key else {"Authorization": openai.Omit()}

    async def start(self) -> None:
        """Wait until the upstream answers (NOT_SERVING with the reason meanwhile), then watch it."""
        while not await self.check():
            await self._pause()
        self._watcher = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        await self._client.close()
        await self._runtime.close()

    async def _pause(self) -> None:
        try:
            await asyncio.wait_for(self._recheck.wait(), self.settings.health_interval_seconds)
        except TimeoutError:
            pass
        self._recheck.clear()

    async def _watch(self) -> None:
        while True:
            await self._pause()
            await self.check()

    async def check(self) -> bool:
        """Ask the upstream for its models; ready when it answers, else NOT ready with the reason."""
        try:
            self._key = await asyncio.to_thread(self.settings.read_api_key)
        except OSError as exc:
            return self._down(f"cannot read api_key_file: {exc.strerror or exc}")
        try:
            page = await self._client.models.list(extra_headers=self._headers(), timeout=HEALTH_TIMEOUT)
        except openai.APIStatusError as exc:
            if exc.status_code == 401:
                return self._down(NO_KEY if not self._key else upstream_error(exc, model="", secret=self._key,
                                                                                 timeout=HEALTH_TIMEOUT).message)
            said = scrub(upstream_message(exc), self._key)
            return self._down(f"the upstream answered GET /models with HTTP {exc.status_code}: {said}")
        except openai.APITimeoutError:
            if self.ready and self.in_flight:  # busy with our calls (llama-cpp-python answers one at a time)
                return True
            return self._down(f"the upstream did not answer GET /models within {HEALTH_TIMEOUT:g}s")
        except openai.OpenAIError as exc:
            return self._down(upstream_error(exc, model="", secret=self._key, timeout=HEALTH_TIMEOUT).message)
        self._listed = {m.id for m in page.data}
        if not self.settings.models:
            self._served = [UpstreamModel(name=m.id, context_length=listed_context_length(m)) for m in page.data]
        if not self.ready:
            log.info("upstream %s answers; models: %s", self.settings.base_url, ", ".join(sorted(self._listed)))
        self.ready, self.failure = True, ""
        return True

    def _down(self, reason: str) -> bool:
        if self.ready or reason != self.failure:
            log.warning("upstream %s not usable: %s", self.settings.base_url, reason)
        self.ready, self.failure = False, reason
        return False

    def _error(self, exc: openai.OpenAIError, model: str, timeout: float) -> ForgewayError:
        upstream = self._runtime.get(model)
        if upstream is not None and upstream.connection.key is not None:  # its own key, not the proxy's
            return upstream.error(exc, timeout)
        error = upstream_error(exc, model=model, secret=self._key, timeout=timeout)
        if isinstance(error, Unavailable):  # the upstream is down or the key is bad: check now, not at the interval
            self._recheck.set()
            if error.reason == "UPSTREAM_UNAUTHENTICATED":
                self._down(NO_KEY if not self._key else error.message)
        return error

    def models(self) -> list[ModelInfo]:
        """The configured (or listed) models, then those loaded at run time, which win a name both have."""
        elsewhere = not self.settings.rerank_path.startswith("/")  # rerank models not in base_url's listing
        taken = self._runtime.names()
        return [
            self._info(m, self.settings.base_url, loaded=not self._listed or m.upstream_name in self._listed
                       or (elsewhere and m.task == Task.RERANK))
            for m in self._served if m.name not in taken
        ] + [self._info(u.model, u.connection.base_url) for u in self._runtime]  # fmt: skip

    def _info(self, m: UpstreamModel, source: str, loaded: bool = True) -> ModelInfo:
        return ModelInfo(name=m.name, aliases=list(m.aliases), chat=m.chat and m.task == Task.TEXT_GENERATION,
                         context_length=m.context_length, loaded=loaded, source=source, task=m.task,
                         matryoshka=list(m.matryoshka_dimensions),
                         dimensions=m.dimensions or self._dimensions.get(m.name, 0))

    async def load_model(self, name: str, source: str, task: Task | None, quantization: str, base_model: str,
                         options: dict[str, str]) -> ModelInfo:
        """Serve `name` from the upstream model `source` (empty: name) at options' api_base or base_url."""
        upstream = await self._runtime.load(
            name, source, task, quantization, base_model, options, rpcs=self.retrieval_rpcs, configured=self._served,
            proxy_client=self._client, proxy_key=self._key, current_key=self._current_key)
        return self._info(upstream.model, upstream.connection.base_url)

    async def unload_model(self, name: str) -> None:
        self._runtime.unload(name, configured=self._served)

    def _link(self, name: str) -> tuple[openai.AsyncOpenAI, dict]:
        """The client and per-call headers for a served model: a run-time upstream's own, or the proxy's."""
        upstream = self._runtime.get(name)
        if upstream is None or upstream.client is None:
            return self._client, self._headers()
        return upstream.client, upstream.headers(self._key)

    def features(self) -> Features:
        s = self.settings
        extra = set(s.extra_body_params)
        return Features(
            streaming=True, stop=True, logprobs=s.logprobs, seed=s.seed, multiple_choices=s.multiple_choices,
            json_schema=s.structured_output != "none", grammar="grammar" in extra,
            sampling_params=BASE_SAMPLING | (extra - {"grammar"}), tools=True, reasoning=s.thinking != "none",
        )

    def load(self) -> LoadInfo:
        return LoadInfo(in_flight=self.in_flight)

    def library_versions(self) -> dict[str, str]:
        return {"openai": openai.__version__}

    def _upstream_model(self, info: ModelInfo) -> UpstreamModel:
        upstream = self._runtime.get(info.name)
        if upstream is not None:
            return upstream.model
        return next(m for m in self._served if m.name == info.name)

    def _timeout(self, deadline: float | None) -> float:
        if deadline is None:
            return self.settings.timeout_seconds
        return max(0.001, min(deadline, self.settings.timeout_seconds))

    async def complete(self, request: GenerationRequest, info: ModelInfo,
                       deadline: float | None = None) -> GenerationResult:
        """One unary upstream call; deadline is the caller's remaining time in seconds."""
        start = time.perf_counter()
        model = self._upstream_model(info)
        client, headers = self._link(model.name)
        call = build_call(request, model, self.settings)
        endpoint = client.chat.completions if call.chat else client.completions
        response = await self._call(model.name, deadline, lambda timeout: endpoint.create(
            **call.kwargs, extra_headers=headers, timeout=timeout))
        choices = pieces(response, call)
        self._check_choices(request, len(choices))
        if request.logprobs and any(p.text and not p.logprobs for p in choices):
            raise Unsupported("logprobs", self.kind, "the upstream returned no logprobs for this input")
        usage = response.usage
        prompt_tokens = usage.prompt_tokens if usage else self._count_prompt(request, model)
        completion_tokens = usage.completion_tokens if usage else 0
        self._count(model.name, prompt_tokens, completion_tokens)
        relay = ToolCallRelay(call.parallel_tool_calls)
        completions = []
        for p in sorted(choices, key=lambda p: p.index):
            relay.relay(p.index, p.tool_calls)
            calls = relay.calls(p.index)
            reason = finish_reason(p.reason, p.source, call.stops, bool(calls))
            completions.append(Completion(p.index, p.text or "", reason, p.logprobs, tool_calls=calls,
                                          reasoning=p.reasoning))
        if completions:  # usage is per request; the contract's result sums it per choice
            completions[0].completion_tokens = completion_tokens
        return GenerationResult(
            model=model.name, choices=completions, prompt_tokens=prompt_tokens,
            total_ms=(time.perf_counter() - start) * 1000, served_by=f"{self.kind}/{self.settings.instance_id}",
        )  # fmt: skip

    async def generate(
        self, request: GenerationRequest, info: ModelInfo, deadline: float | None = None
    ) -> AsyncIterator[Delta | GenerationResult]:
        """Stream from the upstream: a Delta per chunk, then the result. Closing this closes the upstream stream."""
        if request.tool_choice.mode in ("auto", "required") and not self.settings.stream_tool_calls:
            result = await self.complete(request, info, deadline)  # the upstream cannot stream the model's choice
            for c in result.choices:
                calls = [ToolCallDelta(i, t.id, t.name, t.arguments) for i, t in enumerate(c.tool_calls)]
                if c.text or calls or c.reasoning:
                    yield Delta(c.index, c.text, c.logprobs, calls, c.reasoning)
            yield result
            return
        start = time.perf_counter()
        model = self._upstream_model(info)
        client, headers = self._link(model.name)
        call = build_call(request, model, self.settings)
        timeout = self._timeout(deadline)
        if self.settings.stream_usage:
            call.kwargs["stream_options"] = {"include_usage": True}
        endpoint = client.chat.completions if call.chat else client.completions
        texts: dict[int, list[str]] = {i: [] for i in range(request.n)}
        thoughts: dict[int, list[str]] = {i: [] for i in range(request.n)}
        relay = ToolCallRelay(call.parallel_tool_calls)
        logprobs: dict[int, list] = {i: [] for i in range(request.n)}
        reasons: dict[int, ChoicePiece] = {}
        counted, first, usage, stream = 0, 0.0, None, None
        tokens = metrics.TOKENS.labels(self.kind, model.name, "completion")
        self.in_flight += 1
        try:
            stream = await endpoint.create(**call.kwargs, stream=True, extra_headers=headers, timeout=timeout)
            async for chunk in stream:
                # Chunks already buffered are read without suspending, and one that carries no text (a piece of a
                # UTF-8 character) hands over no delta: let a cancel land between chunks, not only at a delta.
                await asyncio.sleep(0)
                usage = chunk.usage or usage
                for piece in pieces(chunk, call):
                    if piece.index >= request.n:
                        self._check_choices(request, piece.index + 1)
                    if piece.is_token:
                        counted += 1
                        tokens.inc()
                    if piece.reason:
                        reasons[piece.index] = piece
                    if piece.text and request.logprobs and not piece.logprobs and not first:
                        raise Unsupported("logprobs", self.kind, "the upstream streams no logprobs for this input")
                    calls = relay.relay(piece.index, piece.tool_calls)
                    if piece.text or piece.logprobs or piece.reasoning or calls:
                        first = first or time.perf_counter()
                        texts[piece.index].append(piece.text or "")
                        thoughts[piece.index].append(piece.reasoning)
                        logprobs[piece.index].extend(piece.logprobs)
                        yield Delta(piece.index, piece.text or "", piece.logprobs, calls, piece.reasoning)
        except openai.OpenAIError as exc:
            raise self._error(exc, model.name, timeout) from None
        finally:
            self.in_flight -= 1
            if stream is not None:
                await stream.close()
        self._check_choices(request, len(reasons) or 1)
        completion_tokens = usage.completion_tokens if usage else counted
        tokens.inc(max(0, completion_tokens - counted))
        prompt_tokens = usage.prompt_tokens if usage else self._count_prompt(request, model)
        metrics.TOKENS.labels(self.kind, model.name, "prompt").inc(prompt_tokens)
        if first:
            metrics.TIME_TO_FIRST_TOKEN.labels(self.kind, model.name).observe(first - start)
        completions = [
            Completion(i, "".join(texts[i]), _finish(reasons.get(i), call.stops, bool(relay.calls(i))), logprobs[i],
                       tool_calls=relay.calls(i), reasoning="".join(thoughts[i]))
            for i in range(request.n)
        ]
        completions[0].completion_tokens = completion_tokens
        yield GenerationResult(
            model=model.name, choices=completions, prompt_tokens=prompt_tokens,
            time_to_first_token_ms=(first - start) * 1000 if first else 0.0,
            total_ms=(time.perf_counter() - start) * 1000, served_by=f"{self.kind}/{self.settings.instance_id}",
        )  # fmt: skip

    async def _call(self, model: str, deadline: float | None, send: Callable[[float], Awaitable]):
        """One unary upstream call, counted in flight, its failure mapped by the table."""
        timeout = self._timeout(deadline)
        self.in_flight += 1
        try:
            return await send(timeout)
        except openai.OpenAIError as exc:
            raise self._error(exc, model, timeout) from None
        finally:
            self.in_flight -= 1

    async def embed(self, request: EmbeddingRequest, info: ModelInfo, deadline: float | None = None) -> EmbeddingResult:
        model = self._upstream_model(info)
        client, headers = self._link(model.name)
        kwargs = embedding.embed_kwargs(request, model)
        response = await self._call(model.name, deadline, lambda timeout: client.embeddings.create(
            **kwargs, extra_headers=headers, timeout=timeout))
        result = embedding.embedding_result(response, request, model, f"{self.kind}/{self.settings.instance_id}")
        if request.dimensions is None and result.embeddings:
            self._dimensions[model.name] = len(result.embeddings[0].values)
        return result

    async def rerank(self, request: RerankRequest, info: ModelInfo, deadline: float | None = None) -> RerankResult:
        model = self._upstream_model(info)
        client, headers = self._link(model.name)
        body = embedding.rerank_body(request, model)
        try:
            answer = await self._call(model.name, deadline, lambda timeout: client.post(
                self.settings.rerank_path, cast_to=object, body=body,
                options={"headers": headers, "timeout": timeout}))
        except NotFound as error:  # an unknown model, or a rerank_path the upstream does not serve
            error.message += f" (POST {self.settings.rerank_path}; check the rerank_path setting)"
            raise
        return embedding.rerank_result(answer, request, model, f"{self.kind}/{self.settings.instance_id}")

    def _check_choices(self, request: GenerationRequest, got: int) -> None:
        if got > request.n or (request.n > 1 and got < request.n):
            log.error("upstream answered %d choices for n=%d; set multiple_choices: false if it ignores n",
                      got, request.n)
            raise Internal(f"the upstream answered {got} choices for n={request.n}")

    def _count(self, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        metrics.TOKENS.labels(self.kind, model, "prompt").inc(prompt_tokens)
        metrics.TOKENS.labels(self.kind, model, "completion").inc(completion_tokens)

    def _count_prompt(self, request: GenerationRequest, model: UpstreamModel) -> int:
        """Prompt tokens by the model's tokenizer when the upstream reports none (0 without a tokenizer).

        For chat messages this counts the contents without the chat template: an estimate.
        """
        if model.tokenizer is None:
            return 0
        texts = [request.prompt] if request.prompt is not None else [m.content for m in request.messages]
        return sum(len(_tokenizer(model.tokenizer).encode(t).ids) for t in texts)


def _finish(piece: ChoicePiece | None, stops: bool, called: bool):
    return finish_reason(piece.reason if piece else None, piece.source if piece else None, stops, called)

