"""Settings of the OpenAI proxy: the upstream, its secret key, its models and what it honours."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from forgeway.core.enums import TASK
from forgeway.core.generation import Task
from forgeway.server.settings import ServiceSettings

from . import base_urls

# Forgeway request features an upstream may take as extra JSON body fields (vLLM, llama.cpp servers).
EXTRA_BODY_FEATURES = ("top_k", "min_p", "repetition_penalty", "grammar")
# What a model behind the proxy can serve: generation, /v1/embeddings, or a Cohere-shaped rerank endpoint.
PROXIED_TASKS = (Task.TEXT_GENERATION, Task.EMBEDDING, Task.RERANK)


def _env(name: str) -> str:
    """The environment variable of an OpenAI-proxy setting: FORGEWAY_OPENAI_<NAME>."""
    return f"FORGEWAY_OPENAI_{name.upper()}"


class UpstreamModel(BaseModel):
    """One model served through the proxy."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="Name callers use.")
    upstream: str = Field("", description="Name at the upstream, when it differs from name.")
    aliases: list[str] = Field(default_factory=list, description="Other names callers may use.")
    chat: bool = Field(True, description="The upstream serves it on /v1/chat/completions (messages).")
    prompt: bool = Field(True, description="The upstream serves it on /v1/completions (raw prompts).")
    context_length: int = Field(
        0, ge=0, validation_alias=AliasChoices("context_length", "max_input_tokens"),
        description="Context length, reported in Capabilities (0: unknown); for an embedding or rerank model its "
        "max input tokens (also spelled max_input_tokens; OpenAI's embedding models: 8191).",
    )
    tokenizer: Path | None = Field(
        None, description="tokenizer.json used to count tokens when the upstream streams no usage."
    )
    task: Task = Field(
        Task.TEXT_GENERATION, description="What the model serves: text-generation, embedding (/v1/embeddings) or "
        "rerank (the rerank_path endpoint).",
    )
    dimensions: int = Field(
        0, ge=0, description="Embedding models: the vector length, reported in Capabilities (0: learned from the "
        "first answer).",
    )
    matryoshka_dimensions: list[int] = Field(
        default_factory=list, description="Embedding models: the shorter lengths a request may ask for with "
        "dimensions (OpenAI's text-embedding-3 models take any; list those you allow).",
    )

    @property
    def upstream_name(self) -> str:
        return self.upstream or self.name

    @field_validator("task", mode="before")
    @classmethod
    def _check_task(cls, value: object) -> object:
        if isinstance(value, str):  # the TASK table's spellings: "embeddings", "reranker", "chat", ...
            known = TASK.get(value)
            task = Task(TASK.name(known)) if known is not None else None
            if task not in PROXIED_TASKS:
                raise ValueError(f"{value!r}: the proxy serves {', '.join(t.value for t in PROXIED_TASKS)}")
            return task
        return value

    @model_validator(mode="after")
    def _check_vectors(self) -> UpstreamModel:
        if self.task != Task.EMBEDDING and (self.dimensions or self.matryoshka_dimensions):
            raise ValueError(f"{self.name}: dimensions and matryoshka_dimensions are for embedding models")
        wrong = [d for d in self.matryoshka_dimensions if d < 1 or (self.dimensions and d >= self.dimensions)]
        if wrong:
            raise ValueError(f"{self.name}: matryoshka_dimensions {wrong[0]} must be at least 1 and shorter than "
                             f"dimensions {self.dimensions}")
        return self


class OpenAIProxySettings(ServiceSettings):
    """Settings of the OpenAI proxy backend. Its own settings read FORGEWAY_OPENAI_<NAME> from the environment."""

    model_config = SettingsConfigDict(**{**ServiceSettings.model_config, "validate_by_name": True})

    base_url: str = Field(
        "https://api.openai.com/v1", validation_alias=_env("base_url"),
        description="Base URL of the OpenAI-compatible API, with its /v1.",
    )
    api_key: SecretStr | None = Field(
        None, validation_alias=_env("api_key"),
        description="API key of the upstream; prefer the environment or api_key_file to a flag. Never logged.",
    )
    api_key_file: Path | None = Field(
        None, validation_alias=_env("api_key_file"),
        description="File holding the API key (a mounted secret); re-read when it changes.",
    )
    organization: str | None = Field(None, validation_alias=_env("organization"), description="OpenAI organization.")
    project: str | None = Field(None, validation_alias=_env("project"), description="OpenAI project.")
    timeout_seconds: float = Field(
        60.0, gt=0, validation_alias=_env("timeout_seconds"),
        description="Upstream timeout per call; a shorter caller deadline wins.",
    )
    max_retries: int = Field(
        1, ge=0, le=10, validation_alias=_env("max_retries"),
        description="Retries of connection errors, 429 and 5xx by the openai client.",
    )
    models: list[UpstreamModel] = Field(
        default_factory=list, validation_alias=_env("models"),
        description="Models to serve (name, upstream, aliases, chat, prompt, context_length, tokenizer, task, "
        "dimensions, matryoshka_dimensions); empty: those the upstream's /v1/models lists, all text-generation.",
    )
    rerank_path: str = Field(
        "/rerank", validation_alias=_env("rerank_path"),
        description="Where rerank models are served, Cohere/Jina-shaped: a path under base_url (vLLM and llama.cpp's "
        "server: /rerank) or an absolute http(s) URL (vLLM's /v2/rerank).",
    )
    health_interval_seconds: float = Field(
        15.0, gt=0, validation_alias=_env("health_interval_seconds"),
        description="How often the upstream's /v1/models is checked.",
    )
    stream_usage: bool = Field(
        True, validation_alias=_env("stream_usage"),
        description="Ask for usage in streams (stream_options.include_usage); off for upstreams that reject it.",
    )
    structured_output: Literal["json_schema", "json_object_schema", "none"] = Field(
        "json_schema", validation_alias=_env("structured_output"),
        description="How the upstream takes a JSON schema: OpenAI's response_format json_schema, "
        "llama-cpp-python's json_object with a schema (chat messages only), or not at all.",
    )
    logprobs: bool = Field(True, validation_alias=_env("logprobs"), description="The upstream returns logprobs.")
    seed: bool = Field(True, validation_alias=_env("seed"), description="The upstream honours seed.")
    multiple_choices: bool = Field(
        True, validation_alias=_env("multiple_choices"), description="The upstream honours n > 1."
    )
    thinking: Literal["chat_template_kwargs", "reasoning_effort", "none"] = Field(
        "chat_template_kwargs", validation_alias=_env("thinking"),
        description="How the thinking switch is sent: chat_template_kwargs.enable_thinking (vLLM, llama.cpp's "
        "server, SGLang), OpenAI's reasoning_effort, or not at all (requests that set it are rejected).",
    )
    thinking_efforts: tuple[str, str] = Field(
        ("none", "medium"), validation_alias=_env("thinking_efforts"),
        description="The reasoning_effort sent for thinking off and on (thinking: reasoning_effort); "
        "gpt-5 takes 'minimal' for off, gpt-5.1 and later 'none'.",
    )
    tool_choice_required: bool = Field(
        True, validation_alias=_env("tool_choice_required"),
        description="The upstream honours tool_choice 'required'. Off (llama-cpp-python): with one tool it is "
        "sent as that function named; with several it is rejected.",
    )
    stream_tool_calls: bool = Field(
        True, validation_alias=_env("stream_tool_calls"),
        description="The upstream streams when the model chooses whether to call tools (tool_choice auto or "
        "required). Off (llama-cpp-python): such a stream is one unary upstream call, sent as one delta.",
    )
    null_tool_call_content: bool = Field(
        True, validation_alias=_env("null_tool_call_content"),
        description="An assistant message with tool calls and no text is sent with content null (OpenAI); "
        "off: an empty string (llama-cpp-python rejects null).",
    )
    allow_runtime_upstreams: bool = Field(
        True, validation_alias=_env("allow_runtime_upstreams"),
        description="ModelService.LoadModel may register upstream models at run time (LlamaForge's add_model with "
        "backend openai: source = upstream model id, options api_key, api_base, organization, ...); off: such a "
        "load is PERMISSION_DENIED.",
    )
    runtime_base_urls: list[str] = Field(
        default_factory=list, validation_alias=_env("runtime_base_urls"),
        description="Where a run-time upstream may point (options.api_base), besides base_url, which is always "
        "allowed: base URLs matched as prefixes of the normalised URL, whole path segments only; '*' allows any "
        "http(s) URL. Empty: base_url only.",
    )
    extra_body_params: dict[str, str] = Field(
        default_factory=dict, validation_alias=_env("extra_body_params"),
        description=f"Features the upstream takes as extra body fields, feature -> field name "
        f"(of {', '.join(EXTRA_BODY_FEATURES)}); e.g. vLLM: top_k, min_p, repetition_penalty.",
    )

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in value.strip()):
            raise ValueError(f"must be an http(s) URL such as https://api.openai.com/v1, not {value!r}")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials; set api_key or api_key_file")
        return value.strip().rstrip("/")

    @field_validator("rerank_path")
    @classmethod
    def _check_rerank_path(cls, value: str) -> str:
        value = value.strip()
        if value.startswith("/"):
            return value
        parts = urlsplit(value)
        if parts.username or parts.password:
            raise ValueError("must not carry credentials; set api_key or api_key_file")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be a path such as /rerank or an http(s) URL, not {value!r}")
        return value

    @field_validator("runtime_base_urls")
    @classmethod
    def _check_runtime_base_urls(cls, value: list[str]) -> list[str]:
        checked = []
        for url in value:
            try:
                checked.append(url.strip() if url.strip() == base_urls.ANY else base_urls.normalise(url))
            except ValueError as exc:
                raise ValueError(f"{url if '@' not in url else 'an entry'}: {exc}") from None
        return checked

    @field_validator("extra_body_params")
    @classmethod
    def _check_extra_body(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(EXTRA_BODY_FEATURES))
        if unknown:
            raise ValueError(f"unknown feature {unknown[0]!r}; known: {', '.join(EXTRA_BODY_FEATURES)}")
        return value

    @model_validator(mode="after")
    def _check(self) -> OpenAIProxySettings:
        if self.api_key is not None and self.api_key_file is not None:
            raise ValueError("set api_key or api_key_file, not both")
        if self.api_key_file is not None and not self.api_key_file.is_file():
            raise ValueError(f"api_key_file: no such file: {self.api_key_file}")
        names = [n for m in self.models for n in (m.name, *m.aliases)]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate:
            raise ValueError(f"models: the name {duplicate!r} is used twice")
        return self

    def runtime_base_url_allowed(self, url: str) -> bool:
        """Whether a normalised base URL may back a model loaded at run time."""
        return base_urls.allowed(url, [base_urls.normalise(self.base_url), *self.runtime_base_urls])

    def read_api_key(self) -> str:
        """The key from the setting or its file; empty when none is configured."""
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        if self.api_key_file is not None:
            return self.api_key_file.read_text().strip()
        return ""
