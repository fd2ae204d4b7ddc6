"""Upstream models registered at run time (ModelService.LoadModel, LlamaForge's add_model with backend openai).

A run-time upstream is a served name backed by an upstream model id, at the proxy's base_url or at an api_base the
operator allows, with its own API key or the proxy's. The key lives in this process's memory only: never persisted,
logged, listed or echoed in an error; a restarted proxy has only its configured models.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import openai
from pydantic import ValidationError

from forgeway.core.errors import (
    FailedPrecondition,
    ForgewayError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unsupported,
)
from forgeway.core.generation import Task

from . import base_urls
from .errors import scrub, upstream_error, upstream_message
from .settings import PROXIED_TASKS, OpenAIProxySettings, UpstreamModel
from .translate import listed_context_length

log = logging.getLogger("forgeway.openai_proxy")

# Options of the connection; the key and organization are LlamaForge's OpenAI backend parameters.
CONNECTION_OPTIONS = ("api_key", "api_base", "organization", "project")
# Options of the served model: what a configured model may say (models[]), except tokenizer, a path on the proxy's
# disk that callers have no business choosing. Lists are comma-separated.
MODEL_OPTIONS = ("aliases", "chat", "prompt", "context_length", "max_input_tokens", "dimensions",
                 "matryoshka_dimensions")
LIST_OPTIONS = ("aliases", "matryoshka_dimensions")
LOAD_CHECK_TIMEOUT = 10.0  # seconds for the upstream's GET /models when a model is loaded
REFUSED_OPTIONS = {"tokenizer": "a path on the proxy's disk is chosen by the operator (models[].tokenizer), not at "
                                "run time"}


@dataclass(eq=False)
class Connection:
    """Where a run-time upstream lives and how to call it. key None: the proxy's own key (only ever sent to the
    proxy's base_url); "": none at all (no Authorization header)."""

    base_url: str
    key: str | None = field(default=None, repr=False)
    organization: str | None = None
    project: str | None = None

    def shares_client(self, settings: OpenAIProxySettings) -> bool:
        """Nothing differs from the proxy's own upstream: its client (and key, rotation included) serves it."""
        return (self.key is None and self.base_url == base_urls.normalise(settings.base_url)
                and self.organization in (None, settings.organization) and self.project in (None, settings.project))


@dataclass(eq=False)
class RuntimeUpstream:
    """A model loaded at run time; client None: the proxy's own client serves it."""

    model: UpstreamModel
    connection: Connection
    client: openai.AsyncOpenAI | None = field(default=None, repr=False)

    def key(self, proxy_key: str) -> str:
        return proxy_key if self.connection.key is None else self.connection.key

    def headers(self, proxy_key: str) -> dict:
        """Per-call headers: with no key, none is sent (the openai client would look for OPENAI_API_KEY)."""
        return {} if self.key(proxy_key) else {"Authorization": openai.Omit()}

    def error(self, exc: openai.OpenAIError, timeout: float) -> ForgewayError:
        """The table's error for a failed call with this model's own key: a rejected key is the loader's to fix,
        not the operator's, and it does not make the proxy unready."""
        secret = self.connection.key or ""
        error = upstream_error(exc, model=self.model.name, secret=secret, timeout=timeout)
        if error.reason == "UPSTREAM_UNAUTHENTICATED":
            return FailedPrecondition(
                f"the upstream at {self.connection.base_url} rejected the API key model {self.model.name!r} was loaded "
                "with (HTTP 401); unload it and load it again with a valid options.api_key",
                reason="UPSTREAM_UNAUTHENTICATED")
        if error.reason == "UPSTREAM_PERMISSION_DENIED":
            error.message = error.message.replace("the proxy's API key", f"the API key of {self.model.name!r}")
            error.args = (error.message,)
        return error


class RuntimeModels:
    """The models loaded at run time, by name: in memory only."""

    def __init__(self, settings: OpenAIProxySettings, kind: str):
        self.settings, self.kind = settings, kind
        self._by_name: dict[str, RuntimeUpstream] = {}

    def __iter__(self) -> Iterator[RuntimeUpstream]:
        return iter(list(self._by_name.values()))

    def get(self, name: str) -> RuntimeUpstream | None:
        """By its name (not an alias: the engine looks up what admit() found)."""
        return self._by_name.get(name)

    def names(self) -> set[str]:
        return {n for u in self._by_name.values() for n in (u.model.name, *u.model.aliases)}

    async def load(self, name: str, source: str, task: Task | None, quantization: str, base_model: str,
                   options: dict[str, str], *, rpcs: tuple[str, ...], configured: list[UpstreamModel],
                   proxy_client: openai.AsyncOpenAI, proxy_key: str,
                   current_key: Callable[[], Awaitable[str]]) -> RuntimeUpstream:
        """Check the request, ask the upstream for its models with the key, and register the model.

        configured: the proxy's own models (their names are taken); proxy_key / current_key: its key now, and the
        function its client reads the key with (so a rotated key file is followed)."""
        check_allowed(self.settings)
        model = upstream_model(name, source, task, quantization, base_model, options, rpcs, self.settings, self.kind)
        link = connection(options, self.settings)
        self._check_free(model, configured)
        upstream = RuntimeUpstream(model, link)
        if not link.shares_client(self.settings):
            s = self.settings
            upstream.client = openai.AsyncOpenAI(
                api_key=current_key if link.key is None else link.key or "none", base_url=link.base_url,
                organization=link.organization or s.organization, project=link.project or s.project,
                timeout=s.timeout_seconds, max_retries=s.max_retries)
        try:
            listed = {m.id: m for m in await listed_models(upstream, upstream.client or proxy_client, proxy_key)}
            if listed and model.upstream_name not in listed:
                raise NotFound("upstream model", model.upstream_name, sorted(listed))
            if listed and not model.context_length:
                model.context_length = listed_context_length(listed[model.upstream_name])
            self._check_free(model, configured)  # another load of the name may have finished meanwhile
        except BaseException:
            if upstream.client is not None:
                await upstream.client.close()
            raise
        self._by_name[model.name] = upstream
        log.info("serving %s from %s at %s (loaded at run time)", model.name, model.upstream_name, link.base_url)
        return upstream

    def unload(self, name: str, configured: list[UpstreamModel]) -> None:
        """Forget a model by name or alias. Calls in flight finish on its client, which the openai package closes
        once the last of them lets go of it."""
        upstream = next((u for u in self._by_name.values() if name in (u.model.name, *u.model.aliases)), None)
        if upstream is None:
            if any(name in (m.name, *m.aliases) for m in configured):
                raise FailedPrecondition(f"model {name!r} is served from the proxy's settings or its upstream's "
                                         "listing, not loaded at run time: it cannot be unloaded")
            raise NotFound("model", name, sorted(self._by_name))
        del self._by_name[upstream.model.name]
        log.info("unloaded %s (loaded at run time from %s)", upstream.model.name, upstream.connection.base_url)

    async def close(self) -> None:
        for upstream in self._by_name.values():
            if upstream.client is not None:
                await upstream.client.close()

    def _check_free(self, model: UpstreamModel, configured: list[UpstreamModel]) -> None:
        names = {model.name, *model.aliases}
        taken = names & (self.names() | {n for m in configured for n in (m.name, *m.aliases)})
        if taken:
            raise FailedPrecondition(f"model name {sorted(taken)[0]!r} is taken; unload it first or pick another name",
                                     reason="MODEL_NAME_TAKEN")


def check_allowed(settings: OpenAIProxySettings) -> None:
    if not settings.allow_runtime_upstreams:
        raise PermissionDenied(
            "loading upstream models at run time is turned off on this proxy (allow_runtime_upstreams: false); "
            "ask its operator, or have the model declared in its models setting")


def connection(options: dict[str, str], settings: OpenAIProxySettings) -> Connection:
    """The connection the options ask for, checked against the operator's allow-list."""
    for name in ("api_key", "organization", "project"):
        value = options.get(name)
        if value is not None and (not value or any(c.isspace() or ord(c) < 32 for c in value)):
            raise InvalidArgument(f"options.{name}", "must be non-empty, without spaces or control characters"
                                  + ("; leave it out to use the proxy's own key" if name == "api_key" else ""))
    base_url = base_urls.normalise(settings.base_url)
    if "api_base" in options:
        try:
            base_url = base_urls.normalise(options["api_base"])
        except ValueError as exc:
            raise InvalidArgument("options.api_base", str(exc)) from None
        if not settings.runtime_base_url_allowed(base_url):
            raise PermissionDenied(
                f"options.api_base: {base_url} is not a base URL this proxy may call; its operator allows "
                f"{', '.join([base_urls.normalise(settings.base_url), *settings.runtime_base_urls])} "
                "(base_url and runtime_base_urls)")
    key = options.get("api_key")
    if key is None and base_url != base_urls.normalise(settings.base_url):
        key = ""  # the proxy's own key goes to its own upstream only
    return Connection(base_url, key, options.get("organization"), options.get("project"))


def upstream_model(name: str, source: str, task: Task | None, quantization: str, base_model: str,
                   options: dict[str, str], engine_rpcs: tuple[str, ...], settings: OpenAIProxySettings,
                   kind: str) -> UpstreamModel:
    """The served model a LoadModel asks for; every field and option checked, naming the one at fault."""
    known = (*CONNECTION_OPTIONS, *MODEL_OPTIONS)
    for option, why in REFUSED_OPTIONS.items():
        if option in options:
            raise InvalidArgument(f"options.{option}", f"not settable at run time: {why}")
    unknown = sorted(set(options) - set(known))
    if unknown:
        hint = f"unknown option; the openai backend takes {', '.join(known)}"
        raise InvalidArgument(f"options.{unknown[0]}", hint, more=[(f"options.{u}", hint) for u in unknown[1:]])
    if quantization != "none":
        raise Unsupported(f"quantization {quantization}", kind, "the upstream decides how it runs its models")
    if base_model:
        raise Unsupported("adapters", kind, "load the upstream's fine-tuned model id as the source instead")
    task = task or Task.TEXT_GENERATION
    served_rpc = {Task.EMBEDDING: "Embed", Task.RERANK: "Rerank"}.get(task)
    if task not in PROXIED_TASKS:
        raise Unsupported(f"task {task.value}", kind, f"the proxy serves {', '.join(t.value for t in PROXIED_TASKS)}")
    if served_rpc and served_rpc not in engine_rpcs:
        raise Unsupported(f"task {task.value}", kind, f"this proxy serves {served_rpc} only when its settings declare "
                          f"a {task.value} model; ask its operator")
    if task == Task.RERANK and not settings.rerank_path.startswith("/"):
        raise Unsupported(f"task {task.value}", kind, "this proxy's rerank_path is an absolute URL: a run-time "
                          "upstream's key would be sent there")
    fields: dict[str, object] = {k: v for k, v in options.items() if k in MODEL_OPTIONS}
    for option in LIST_OPTIONS:
        if option in fields:
            fields[option] = [part.strip() for part in str(fields[option]).split(",") if part.strip()]
    try:
        return UpstreamModel.model_validate({"name": name, "upstream": source, "task": task, **fields})
    except ValidationError as exc:
        first, *rest = exc.errors(include_input=False, include_url=False)
        violations = [(_field(e["loc"]), e["msg"]) for e in (first, *rest)]
        raise InvalidArgument(*violations[0], more=violations[1:]) from None


async def listed_models(upstream: RuntimeUpstream, client: openai.AsyncOpenAI, proxy_key: str) -> list:
    """The upstream's GET /models with this upstream's key: a load's proof that the upstream answers it. A refused
    key, a base URL that is no API root, or an unreachable upstream is the loader's error, naming the option."""
    key, base = upstream.key(proxy_key), upstream.connection.base_url
    try:
        page = await client.models.list(extra_headers=upstream.headers(proxy_key), timeout=LOAD_CHECK_TIMEOUT)
    except openai.APIStatusError as exc:
        if exc.status_code == 401 and upstream.connection.key is not None:
            said = "rejected this key" if key else "requires an API key; pass one as options.api_key"
            raise InvalidArgument("options.api_key", f"the upstream at {base} {said} (HTTP 401)") from None
        if exc.status_code == 404:
            raise InvalidArgument("options.api_base", f"GET {base}/models answered HTTP 404 "
                                  f"({scrub(upstream_message(exc), key)}): not the root of an OpenAI-compatible "
                                  "API; is /v1 missing?") from None
        raise _at(upstream_error(exc, model=upstream.model.name, secret=key, timeout=LOAD_CHECK_TIMEOUT), base)
    except openai.OpenAIError as exc:
        raise _at(upstream_error(exc, model=upstream.model.name, secret=key, timeout=LOAD_CHECK_TIMEOUT), base)
    return list(page.data)


def _at(error: ForgewayError, base: str) -> ForgewayError:
    error.message = f"checking the upstream at {base} (options.api_base): {error.message}"
    error.args = (error.message,)
    return error


def _field(loc: tuple) -> str:
    """A validation error's location as the request field: name, source, or options.<name>."""
    if not loc:
        return "options"
    head = str(loc[0])
    return {"name": "name", "upstream": "source"}.get(head, f"options.{head}")
