"""The llama.cpp backend: GGUF models served by llama.cpp's own server engine, one managed child per model."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from forgeway.core.embeddings import EmbeddingRequest, EmbeddingResult, RerankRequest, RerankResult
from forgeway.core.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted, Unavailable, \
    Unsupported
from forgeway.core.generation import Delta, FinishReason, GenerationRequest, GenerationResult, Task, \
    apply_stop, held_back
from forgeway.server import metrics
from forgeway.services.runtime.engine import Features, InferenceEngine, LoadInfo, ModelInfo

from . import embedding, native, tools
from .llama_server import LlamaServer, find_binary, send
from .retrieval import GgufFacts, RetrievalModel, gguf_facts, prepare
from .settings import SERVED_TASKS, LlamaCppSettings, ModelConfig
from .source import locate_gguf

log = logging.getLogger("forgeway.llamacpp")

SAMPLING_PARAMS = frozenset(
    {"temperature", "top_p", "top_k", "min_p", "repetition_penalty", "presence_penalty", "frequency_penalty"}
)
UNLOAD_GRACE_SECONDS = 30.0
CALL_GRAMMARS = 64  # grammars for forced tool calls kept per model, by schema


class ServedModel:
    """One GGUF model and the llama-server child serving it, with the calls in flight to it."""

    def __init__(self, config: ModelConfig, path: Path, server: LlamaServer, facts: GgufFacts | None = None):
        self.config, self.path, self.server, self.facts = config, path, server, facts
        self.retrieval: RetrievalModel | None = None  # an embedding or rerank model's facts (embedding.py)
        self.n_ctx = config.n_ctx
        self.chat = False
        self.unsupported: dict[str, str] = {}
        self.call_grammars: dict[str, str] = {}
        self.requests = 0  # HTTP requests to the child in flight (n > 1 sends n)
        self.idle = asyncio.Event()
        self.idle.set()

    @property
    def name(self) -> str:
        return self.config.name

    async def read_props(self) -> None:
        """The context each slot has, whether the GGUF carries a chat template, and what that template can do (tool
        calls; a thinking switch), as llama-server sees them."""
        client = self.server.client
        if self.facts is not None:
            self.retrieval = await embedding.read_model(client, self.config, self.facts, self.path)
            self.n_ctx = self.retrieval.n_ctx
            return
        props = (await client.get("/props", timeout=10.0)).json()
        self.n_ctx = int(props.get("default_generation_settings", {}).get("n_ctx") or self.n_ctx)
        self.chat = bool(props.get("chat_template"))
        self.unsupported = await tools.template_limits(client, props)

    async def call_grammar(self, request: GenerationRequest) -> str | None:
        """The grammar holding a forced tool choice's answer to its calls (tools.py), llama.cpp's own for the calls'
        schema, kept by schema; None where the JSON schema goes as it is (no forced choice, or thinking on)."""
        if not request.tool_choice.forced or tools.thinks(request, self.config.thinking):
            return None
        schema = tools.forced_schema(request)
        key = json.dumps(schema)  # not sorted: llama.cpp writes properties in the schema's order (the name first)
        if key not in self.call_grammars:
            body = {"prompt": "", "n_predict": 0, "json_schema": schema, "response_fields": ["generation_settings"]}
            reply = await _json(self.server.client, "/completion", body, request)
            if len(self.call_grammars) >= CALL_GRAMMARS:
                del self.call_grammars[next(iter(self.call_grammars))]
            self.call_grammars[key] = tools.compact(reply["generation_settings"]["grammar"])
        return self.call_grammars[key]

    def info(self) -> ModelInfo:
        if self.retrieval is not None:
            return self.retrieval.info(self.name, self.config.aliases)
        return ModelInfo(name=self.name, task=Task.TEXT_GENERATION, context_length=self.n_ctx, quantization="gguf",
                         loaded=True, source=str(self.path), chat=self.chat, aliases=list(self.config.aliases),
                         unsupported=dict(self.unsupported))

    @contextlib.contextmanager
    def request(self):
        self.requests += 1
        self.idle.clear()
        try:
            yield
        finally:
            self.requests -= 1
            if not self.requests:
                self.idle.set()


class LlamaCppEngine(InferenceEngine):
    """Serves several GGUF models, each through its own llama-server with `instances` parallel slots."""

    kind = "llamacpp"
    retrieval_rpcs = ("Embed", "Rerank")
    Settings = LlamaCppSettings
    settings: LlamaCppSettings

    def __init__(self, settings: LlamaCppSettings):
        super().__init__(settings)
        self.loaded: dict[str, ServedModel] = {}
        self.claimed: set[str] = set()  # names and aliases loaded or being loaded
        self.binary: Path | None = None
        self.version = ""
        self.started = False

    async def start(self) -> None:
        self.binary = find_binary(self.settings.server_binary)
        self.version = await asyncio.to_thread(_version, self.binary)
        for config in self.settings.models:
            await self._open(config, confined=False)
        self.started = True

    async def stop(self) -> None:
        served, self.loaded = list(self.loaded.values()), {}
        await asyncio.gather(*(s.server.stop() for s in served))

    def _children_changed(self) -> None:
        """Health follows the children: NOT_SERVING while one is down (it is being restarted)."""
        if not self.started:
            return
        down = [s.server.failure for s in self.loaded.values() if not s.server.available]
        self.ready = not down
        self.failure = "; ".join(down)
        metrics.QUEUE_DEPTH.labels(self.kind).set(self.load().queue_depth)

    def models(self) -> list[ModelInfo]:
        return [s.info() for s in self.loaded.values()]

    def features(self) -> Features:
        return Features(logprobs=True, json_schema=True, grammar=True, stop=True, seed=True, multiple_choices=True,
                        tools=True, reasoning=True, sampling_params=SAMPLING_PARAMS)

    def load(self) -> LoadInfo:
        served = list(self.loaded.values())
        return LoadInfo(
            in_flight=sum(min(s.requests, s.config.instances) for s in served),
            queue_depth=sum(max(0, s.requests - s.config.instances) for s in served),
            max_concurrency=sum(s.config.instances for s in served),
            max_queue=sum(s.config.max_queue for s in served),
        )

    def library_versions(self) -> dict[str, str]:
        return {"llama-server": self.version or "unknown"}

    # -- models ----------------------------------------------------------------------------------------------------

    async def load_model(
        self, name: str, source: str, task: Task | None, quantization: str, base_model: str, options: dict[str, str]
    ) -> ModelInfo:
        if task is not None and task not in SERVED_TASKS:
            raise Unsupported(f"task {task.value}", self.kind, "llama.cpp serves text generation, embedding and rerank")
        if quantization not in ("none", "gguf"):
            raise Unsupported(f"quantization {quantization}", self.kind, "a GGUF file carries its own quantization")
        if base_model:
            raise Unsupported("adapters", self.kind, "merge the adapter and export a GGUF (forgeway export-gguf)")
        served = await self._open(ModelConfig.from_options(name, source, options, task), confined=True)
        return served.info()

    async def unload_model(self, name: str) -> None:
        served = self._served(name)
        del self.loaded[served.name]  # new requests get NOT_FOUND; those in flight finish first
        try:
            await asyncio.wait_for(served.idle.wait(), UNLOAD_GRACE_SECONDS)
        except TimeoutError:
            log.warning("unloading %s with %d requests still in flight", served.name, served.requests)
        await served.server.stop()
        self.claimed -= {served.name, *served.config.aliases}
        log.info("unloaded %s", served.name)

    def _served(self, name: str) -> ServedModel:
        for served in self.loaded.values():
            if name == served.name or name in served.config.aliases:
                return served
        raise NotFound("model", name, list(self.loaded))

    async def _open(self, config: ModelConfig, confined: bool) -> ServedModel:
        names = {config.name, *config.aliases}
        if names & self.claimed:
            raise FailedPrecondition(f"model name {sorted(names & self.claimed)[0]!r} is taken; unload it first")
        self.claimed |= names
        try:
            roots = self.settings.model_roots if confined else None
            path = await asyncio.to_thread(locate_gguf, config.source or config.name, self.settings.home, roots)
            facts = None
            if config.task != Task.TEXT_GENERATION:  # its pooling and context, from the GGUF where unset
                facts = await asyncio.to_thread(gguf_facts, path)
                config = prepare(config, facts, path)
            server = LlamaServer(config, path, self.binary, self.settings.home / "logs", self._children_changed,
                                 warmup=self.settings.warmup, verbose=self.settings.verbose)
            served = ServedModel(config, path, server, facts)
            await server.start()
            try:
                await served.read_props()
            except BaseException:
                await server.stop()
                raise
        except BaseException:
            self.claimed -= names
            raise
        self.loaded[config.name] = served
        log.info("serving %s from %s (n_ctx %d, %d slots)", config.name, path, served.n_ctx, config.instances)
        self._children_changed()
        return served

    # -- generation ------------------------------------------------------------------------------------------------

    def _admitted(self, info: ModelInfo, n: int = 1) -> ServedModel:
        served = self.loaded.get(info.name)
        if served is None:
            raise NotFound("model", info.name, list(self.loaded))
        if not served.server.available:
            raise Unavailable(served.server.failure or f"llama-server for {served.name} is starting", retry_after=1.0)
        limit = served.config.instances + served.config.max_queue
        if served.requests + n > limit:
            raise ResourceExhausted(f"model {served.name!r} has {served.requests} requests in flight or queued "
                                    f"(limit {limit})", retry_after=0.5, reason="QUEUE_FULL")
        return served

    def _result(self, served: ServedModel, states: list[native.ChoiceState], prompt_tokens: int, start: float,
                first_token: float) -> GenerationResult:
        end = time.perf_counter()
        prompt_tokens = prompt_tokens or max(s.prompt_tokens for s in states)
        metrics.TOKENS.labels(self.kind, served.name, "prompt").inc(prompt_tokens)
        return GenerationResult(
            model=served.name, choices=[s.completion() for s in states], prompt_tokens=prompt_tokens,
            queue_ms=0.0, time_to_first_token_ms=(first_token - start) * 1000 if first_token else 0.0,
            total_ms=(end - start) * 1000, served_by=f"{self.kind}/{self.settings.instance_id}",
        )

    async def complete(self, request: GenerationRequest, info: ModelInfo) -> GenerationResult:
        """Unary Generate: one unary call to llama-server per choice, no token stream to parse in Python (the CPU
        it would take is the engine's, on a small machine). Chat with stop sequences streams: the service finds
        those stops itself; so does chat offering tools: llama-server fails a unary answer whose call ran out of
        tokens (its parser wants a whole call), where a stream ends with LENGTH."""
        if request.messages and (request.sampling.stop or request.calls_tools):
            return await super().complete(request, info)
        start = time.perf_counter()
        served = self._admitted(info, request.n)
        prompt, prompt_tokens, max_tokens = await self._plan(served, request)
        states = [native.ChoiceState(i, forced=request.tool_choice.forced) for i in range(request.n)]
        await asyncio.gather(*(self._choice_once(served, request, s, prompt, max_tokens) for s in states))
        metrics.TOKENS.labels(self.kind, served.name, "completion").inc(sum(s.tokens for s in states))
        first_token = time.perf_counter() - max(s.after_first_ms for s in states) / 1000
        return self._result(served, states, prompt_tokens, start, first_token)

    async def _choice_once(self, served: ServedModel, request: GenerationRequest, state: native.ChoiceState,
                           prompt: str | list[int], max_tokens: int) -> None:
        client = served.server.client
        try:
            with served.request():
                if request.messages:
                    body = {**native.chat_body(request, served.config, max_tokens, state.index), "stream": False}
                    body.pop("stream_options")
                    native.read_chat(await _json(client, "/v1/chat/completions", body, request), state,
                                     request.top_logprobs)
                else:
                    body = {**native.completion_body(request, served.config, prompt, max_tokens, state.index),
                            "stream": False}
                    native.read_completion(await _json(client, "/completion", body, request), state,
                                           request.top_logprobs)
        except httpx.TransportError as exc:
            raise Unavailable(f"llama-server for {served.name} went away: {type(exc).__name__}",
                              retry_after=1.0) from None

    async def generate(self, request: GenerationRequest, info: ModelInfo) -> AsyncIterator[Delta | GenerationResult]:
        start = time.perf_counter()
        served = self._admitted(info, request.n)
        prompt, prompt_tokens, max_tokens = await self._plan(served, request)
        queue: asyncio.Queue = asyncio.Queue()
        counter = metrics.TOKENS.labels(self.kind, served.name, "completion")
        counted = [0]

        def on_token() -> None:
            counted[0] += 1
            counter.inc()

        states = [native.ChoiceState(i, on_token=on_token, forced=request.tool_choice.forced)
                  for i in range(request.n)]
        tasks = [asyncio.create_task(self._choice(served, request, state, prompt, max_tokens, queue))
                 for state in states]
        first_token, done = 0.0, 0
        try:
            while done < len(tasks):
                event = await queue.get()
                if event is None:
                    done += 1
                    continue
                if isinstance(event, BaseException):
                    raise event
                first_token = first_token or time.perf_counter()
                yield event
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()  # closing a choice's HTTP stream stops its slot in llama-server
            await asyncio.gather(*tasks, return_exceptions=True)
        tokens = sum(s.tokens for s in states)
        counter.inc(max(0, tokens - counted[0]))  # llama-server's own count, for tokens that came merged
        result = self._result(served, states, prompt_tokens, start, first_token)
        if first_token:
            metrics.TIME_TO_FIRST_TOKEN.labels(self.kind, served.name).observe(first_token - start)
            if tokens > 1:
                per_token = (start + result.total_ms / 1000 - first_token) / (tokens - 1)
                metrics.TIME_PER_OUTPUT_TOKEN.labels(self.kind, served.name).observe(per_token)
        yield result

    # -- embeddings and reranking (embedding.py) ------------------------------------------------------------------

    async def embed(self, request: EmbeddingRequest, info: ModelInfo) -> EmbeddingResult:
        served = self._admitted(info)
        with served.request():
            embeddings = await embedding.embed(served.server.client, served.retrieval, request)
        result = EmbeddingResult(served.name, embeddings, served_by=f"{self.kind}/{self.settings.instance_id}")
        metrics.TOKENS.labels(self.kind, served.name, "prompt").inc(result.prompt_tokens)
        return result

    async def rerank(self, request: RerankRequest, info: ModelInfo) -> RerankResult:
        served = self._admitted(info)
        with served.request():
            scores, tokens = await embedding.rerank(served.server.client, served.retrieval, request)
        metrics.TOKENS.labels(self.kind, served.name, "prompt").inc(tokens)
        return RerankResult(served.name, scores, tokens, served_by=f"{self.kind}/{self.settings.instance_id}",
                            request=request)

    async def _plan(self, served: ServedModel, request: GenerationRequest) -> tuple[str | list[int], int, int]:
        """The prompt to send (tokens, once counted), its length (0: not counted) and the completion's limit.

        A request that sets max_tokens has its prompt counted first, so one that cannot fit the context is refused
        naming max_tokens before any work; one that does not gets the model's default, up to the context's end."""
        s = request.sampling
        if not s.max_tokens:
            return request.prompt or "", 0, served.config.max_tokens
        if request.prompt is not None and len(request.prompt.encode()) + 1 + s.max_tokens <= served.n_ctx:
            return request.prompt, 0, s.max_tokens  # no more tokens than bytes (+ BOS): it fits without counting
        field = "messages" if request.messages else "prompt"
        with served.request():
            client = served.server.client
            try:
                text = request.prompt
                if request.messages:
                    body = native.chat_body(request, served.config, 1, 0)
                    text = (await _json(client, "/apply-template", body, request))["prompt"]
                tokens = (await _json(client, "/tokenize", {"content": text, "add_special": True}, request))["tokens"]
            except httpx.TransportError as exc:
                raise Unavailable(f"llama-server for {served.name} is unreachable: {exc}", retry_after=1.0) from None
        room = served.n_ctx - len(tokens)
        if room < 1:
            raise InvalidArgument(field, f"{len(tokens)} tokens leave no room in the context of {served.n_ctx} tokens")
        if s.max_tokens > room:
            raise InvalidArgument("max_tokens", f"{s.max_tokens} is too large: model {served.name!r} has a context "
                                                f"length of {served.n_ctx} tokens and the {field} takes {len(tokens)} "
                                                f"({len(tokens)} + {s.max_tokens} > {served.n_ctx})")
        return (text if request.messages else tokens), len(tokens), s.max_tokens

    async def _choice(self, served: ServedModel, request: GenerationRequest, state: native.ChoiceState,
                      prompt: str | list[int], max_tokens: int, queue: asyncio.Queue) -> None:
        """Stream one choice from the child into the queue; None when it ends, or the error."""
        try:
            with served.request():
                if request.messages:
                    await self._chat(served, request, state, max_tokens, queue)
                else:
                    await self._complete(served, request, state, prompt, max_tokens, queue)
        except asyncio.CancelledError:
            raise
        except httpx.TransportError as exc:
            queue.put_nowait(Unavailable(f"llama-server for {served.name} went away: {type(exc).__name__}",
                                         retry_after=1.0))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            queue.put_nowait(exc)
        finally:
            queue.put_nowait(None)

    async def _complete(self, served, request, state, prompt, max_tokens, queue) -> None:
        body = native.completion_body(request, served.config, prompt, max_tokens, state.index)
        async with _stream(served.server.client, "/completion", body) as response:
            await _check(response, request)
            async for line in response.aiter_lines():
                data = native.sse_data(line)
                if data is None:
                    continue
                if "error" in data:
                    raise native.error_of(data["error"].get("code", 500), line[5:].encode(), request)
                state.text += data.get("content", "")
                for entry in data.get("completion_probabilities") or ():
                    lp = native.token_logprob(entry, request.top_logprobs)
                    state.logprobs.append(lp)
                    state.pending.append(lp)
                if data.get("stop"):
                    state.reason = native.STOP_TYPES.get(data.get("stop_type"), FinishReason.LENGTH)
                    state.tokens = int(data.get("tokens_predicted") or 0)
                    state.prompt_tokens = int(data.get("tokens_evaluated") or 0)
                elif data.get("content"):
                    state.generated()
                delta = state.delta(len(state.text))
                if delta is not None:
                    queue.put_nowait(delta)

    async def _chat(self, served, request, state, max_tokens, queue) -> None:
        stops = () if state.forced else request.sampling.stop  # a forced answer is calls, not text to cut
        body = native.chat_body(request, served.config, max_tokens, state.index, await served.call_grammar(request))
        async with _stream(served.server.client, "/v1/chat/completions", body) as response:
            await _check(response, request)
            async for line in response.aiter_lines():
                data = native.sse_data(line)
                if data is None:
                    continue
                if "error" in data:
                    if request.calls_tools and native.cut_short(data["error"]):
                        state.finish(FinishReason.LENGTH)  # a call ran out of tokens: the text so far, as it is
                        out = state.delta(len(state.text))
                        if out is not None:
                            queue.put_nowait(out)
                        return
                    raise native.error_of(data["error"].get("code", 500), line[5:].encode(), request)
                if data.get("usage"):
                    state.prompt_tokens = int(data["usage"].get("prompt_tokens") or 0)
                    state.tokens = int(data["usage"].get("completion_tokens") or state.tokens)
                for choice in data.get("choices") or ():
                    delta = choice.get("delta") or {}
                    content = delta.get("content") or ""
                    for entry in (choice.get("logprobs") or {}).get("content") or ():
                        lp = native.token_logprob(entry, request.top_logprobs)
                        state.logprobs.append(lp)
                        state.pending.append(lp)
                    if delta.get("reasoning_content"):
                        state.generated()
                        state.add_reasoning(delta["reasoning_content"])
                    for entry in delta.get("tool_calls") or ():
                        state.add_call_piece(tools.call_delta(entry, state.call_ids))
                    if content:
                        state.generated()
                        state.add_text(content)
                        state.text, stopped = apply_stop(state.text, stops)
                        if stopped:  # the rest is not wanted: leaving closes the stream and frees the slot
                            state.reason = FinishReason.STOP_SEQUENCE
                            out = state.delta(len(state.text))
                            if out is not None:
                                queue.put_nowait(out)
                            return
                    if choice.get("finish_reason"):
                        state.finish(native.finish_reason(choice["finish_reason"]))
                    end = len(state.text) if state.reason else len(state.text) - held_back(state.text, stops)
                    out = state.delta(end)
                    if out is not None:
                        queue.put_nowait(out)


async def _check(response: httpx.Response, request: GenerationRequest) -> None:
    if response.status_code != 200:
        raise native.error_of(response.status_code, await response.aread(), request)


@contextlib.asynccontextmanager
async def _stream(client: httpx.AsyncClient, path: str, body: dict):
    response = await send(client, path, body, stream=True)
    try:
        yield response
    finally:
        await response.aclose()  # closing the stream early stops the slot in llama-server


async def _json(client: httpx.AsyncClient, path: str, body: dict, request: GenerationRequest) -> dict:
    response = await send(client, path, body, stream=False)
    if response.status_code != 200:
        raise native.error_of(response.status_code, response.content, request)
    return response.json()


def _version(binary: Path) -> str:
    done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("version:")]
    return lines[0].removeprefix("version:").strip() if lines else "unknown"
