"""LlamaForge's plugin kinds in a real gateway's pipeline, changed at run time through PluginService: each kind
changes what a real echo backend's generation returns, over gRPC (unary and streamed) and through the HTTP shim with
the official `openai` client; listing, enabling, disabling and reconfiguring need a key that may manage models."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator

import openai
import pytest

from forgeway.client import (
    Client, FailedPreconditionError, InvalidArgumentError, NotFoundError, PermissionDeniedError, UnauthenticatedError,
)
from forgeway.gateway.http.app import create_app
from forgeway.gateway.http.serve import BackgroundServer
from forgeway.gateway.settings import PluginConfig
from forgeway.testing.gateway import gateway_settings, start_gateway, stop_now
from forgeway.testing.stacks import InProcessStack

ADMIN, USER = "plugin-admin-key", "plugin-user-key"
WORD = re.compile(r"\s*\S+")  # the echo backend's tokens
ALIASES = {"formatted": "echo", "cleaned": "echo", "calculated": "echo", "toggled": "echo"}


def key(name: str, secret: str, train: bool) -> dict:
    return {"name": name, "sha256": hashlib.sha256(secret.encode()).hexdigest(), "train": train}


def echo():
    from forgeway.services.echo.engine import EchoSettings
    from forgeway.services.echo.service import EchoService

    return EchoService(EchoSettings(host="127.0.0.1", port=0, metrics_port=-1))


@pytest.fixture(scope="module")
def stack() -> Iterator[dict]:
    with InProcessStack(echo, gateway=False) as services:
        settings = gateway_settings(services.addresses, model_aliases=ALIASES,
                                    api_keys=[key("admin", ADMIN, True), key("user", USER, False)])
        gateway = services.loop.run(start_gateway(settings))
        target = f"127.0.0.1:{gateway.port}"
        admin, user = Client(target, api_key=ADMIN), Client(target, api_key=USER)
        try:
            with BackgroundServer(create_app(target)) as server:
                sdk = openai.OpenAI(base_url=f"{server.url}/v1", api_key=USER, max_retries=0)
                yield {"admin": admin, "user": user, "openai": sdk, "gateway": gateway, "target": target,
                       "loop": services.loop}
        finally:
            admin.close()
            user.close()
            services.loop.run(stop_now(gateway))


def streamed(client: Client, model: str, prompt: str) -> tuple[str, str]:
    """The deltas joined, and the final text."""
    with client.stream(model, prompt) as stream:
        deltas = "".join(delta.text for delta in stream)
        return deltas, stream.final.text


def http_texts(sdk: openai.OpenAI, model: str, prompt: str, echoed: str | None = None) -> tuple[str, str, str]:
    """/v1/completions, /v1/chat/completions, and the chat stream's deltas joined. `echoed` is the prompt the echo
    backend gets (after pre-processing): /v1/completions asks for as many tokens as it has words (OpenAI's default
    of 16 would make echo repeat it)."""
    max_tokens = len(WORD.findall(echoed or prompt))
    completion = sdk.completions.create(model=model, prompt=prompt, max_tokens=max_tokens).choices[0].text
    messages = [{"role": "user", "content": prompt}]
    chat = sdk.chat.completions.create(model=model, messages=messages).choices[0].message.content
    chunks = sdk.chat.completions.create(model=model, messages=messages, stream=True)
    deltas = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return completion, chat, deltas


def test_text_formatter_rewrites_the_prompt_over_grpc_and_http(stack):
    admin, user = stack["admin"], stack["user"]
    assert user.generate("formatted", "  What is Forgeway?  ").text == "  What is Forgeway?"  # echo: no plugin yet
    admin.plugins.register("text_formatter", {"format_as_chat": True, "chat_format": "alpaca",
                                              "template": "Question: {text}"}, model="formatted")
    expected = "### Instruction:\nQuestion: What is Forgeway?\n\n### Response:"  # echo drops trailing whitespace
    assert user.generate("formatted", "  What is Forgeway?  ").text == expected
    assert streamed(user, "formatted", "  What is Forgeway?  ") == (expected, expected)
    completion, chat, deltas = http_texts(stack["openai"], "formatted", "  What is Forgeway?  ", expected)
    assert completion == chat == deltas == expected

    admin.plugins.update("text_formatter", model="formatted", options={
        "format_as_chat": True, "chat_format": "chatml", "add_system_instruction": True,
        "system_instruction": "Answer briefly."})
    chatml = ("<|im_start|>system\nAnswer briefly.<|im_end|>\n<|im_start|>user\nWhat is Forgeway?<|im_end|>\n"
              "<|im_start|>assistant")
    assert user.generate("formatted", "What is Forgeway?").text == chatml
    assert http_texts(stack["openai"], "formatted", "What is Forgeway?", chatml)[0] == chatml


def test_text_cleaner_cleans_the_output_and_its_deltas_over_grpc_and_http(stack):
    admin, user = stack["admin"], stack["user"]
    prompt = "<s>Hello there. The model says [INST] FOO stop</s> and then it goes on without"
    admin.plugins.register("text_cleaner", {"remove_incomplete_sentences": True, "custom_token_patterns": ["FOO "]},
                           model="cleaned")
    expected = "Hello there."  # tokens and FOO gone, then the incomplete last sentence
    assert user.generate("cleaned", prompt).text == expected
    assert streamed(user, "cleaned", prompt) == (expected, expected)
    assert http_texts(stack["openai"], "cleaned", prompt) == (expected, expected, expected)

    admin.plugins.update("text_cleaner", model="cleaned", options={"custom_token_patterns": ["FOO "]})
    kept = "Hello there. The model says  stop and then it goes on without"
    assert user.generate("cleaned", prompt).text == kept
    assert http_texts(stack["openai"], "cleaned", prompt) == (kept, kept, kept)


def test_calculator_answers_calc_markers_over_grpc_and_http(stack):
    admin, user = stack["admin"], stack["user"]
    prompt = "Four plus eight is [calc: sqrt(16) + 2^3], doubled [calc: 2 * (sqrt(16) + 2^3)]; [calc: __import__('os')]"
    admin.plugins.register("calculator", model="calculated")
    refusal = "[calc error: function '__import__' is not allowed (allowed: abs, round, max, min, sum, pow, sqrt, " \
              "sin, cos, tan, log, log10, ceil, floor)]"
    expected = f"Four plus eight is 12, doubled 24; {refusal}"
    assert user.generate("calculated", prompt).text == expected
    assert streamed(user, "calculated", prompt) == (expected, expected)
    assert http_texts(stack["openai"], "calculated", prompt) == (expected, expected, expected)

    admin.plugins.update("calculator", model="calculated", options={"format": "{expression} = {result}",
                                                                     "on_error": "keep"})
    assert user.generate("calculated", "So [calc: 7 // 2] and [calc: x]").text == "So 7 // 2 = 3 and [calc: x]"


def test_enable_disable_list_and_unregister(stack):
    admin, user = stack["admin"], stack["user"]
    admin.plugins.register("calculator", model="toggled", enabled=False)
    assert user.generate("toggled", "[calc: 1+1]").text == "[calc: 1+1]"
    entry = admin.plugins.enable("calculator", model="toggled")
    assert (entry.model, entry.name, entry.kind, entry.enabled) == ("toggled", "calculator", "tools", True)
    assert user.generate("toggled", "[calc: 1+1]").text == "2"
    admin.plugins.register("text_cleaner", {"trim_whitespace": True}, model="toggled")

    listing = user.plugins.list("toggled")
    assert [(e.name, e.kind, e.enabled, e.position) for e in listing.entries] == [
        ("calculator", "tools", True, 0), ("text_cleaner", "postprocessing", True, 1)]
    assert listing.entries[1].options == {"trim_whitespace": True}
    kinds = {info.name: info.kind for info in listing.available}
    assert {"text_formatter": "preprocessing", "text_cleaner": "postprocessing", "calculator": "tools",
            "system_prompt": "preprocessing", "strip_pattern": "postprocessing"}.items() <= kinds.items()
    formatter = next(i for i in listing.available if i.name == "text_formatter")
    assert formatter.source == "builtin" and "chat_format" in formatter.options and formatter.description
    assert {e.model for e in user.plugins.list().entries} >= {"toggled"}

    admin.plugins.disable("calculator", model="toggled")
    assert user.generate("toggled", "[calc: 1+1]").text == "[calc: 1+1]"
    admin.plugins.unregister("calculator", model="toggled")
    admin.plugins.unregister("text_cleaner", model="toggled")
    assert user.plugins.list("toggled").entries == []
    assert user.generate("toggled", "[calc: 1+1]").text == "[calc: 1+1]"


def test_bad_changes_are_refused_naming_the_field_and_change_nothing(stack):
    admin, user = stack["admin"], stack["user"]
    admin.plugins.register("text_formatter", {"template": "Q: {text}"}, model="refusals")
    with pytest.raises(InvalidArgumentError) as bad_format:
        admin.plugins.update("text_formatter", model="refusals", options={"chat_format": "vicuna"})
    assert bad_format.value.field_violations[0][0] == "options.chat_format"
    assert "llama2, chatml, alpaca" in str(bad_format.value)
    with pytest.raises(InvalidArgumentError) as unknown_option:
        admin.plugins.register("calculator", {"colour": "red"}, model="refusals")
    assert unknown_option.value.field_violations[0][0] == "options.colour"
    with pytest.raises(InvalidArgumentError) as bad_pattern:
        admin.plugins.register("text_cleaner", {"custom_token_patterns": ["("]}, model="refusals")
    assert bad_pattern.value.field_violations[0][0] == "options.custom_token_patterns[0]"
    with pytest.raises(NotFoundError, match="plugin 'no_such_plugin' not found"):
        admin.plugins.register("no_such_plugin", model="refusals")
    with pytest.raises(NotFoundError, match="plugin 'calculator' not found"):
        admin.plugins.enable("calculator", model="refusals")
    with pytest.raises(FailedPreconditionError, match="already in the pipeline"):
        admin.plugins.register("text_formatter", model="refusals")
    with pytest.raises(PermissionDeniedError, match="may not manage plugins"):
        user.plugins.register("calculator", model="refusals")
    with pytest.raises(PermissionDeniedError):
        user.plugins.disable("text_formatter", model="refusals")
    with Client(stack["target"]) as anonymous, pytest.raises(UnauthenticatedError):
        anonymous.plugins.list()
    entries = admin.plugins.list("refusals").entries
    assert [(e.name, e.options, e.enabled) for e in entries] == [("text_formatter", {"template": "Q: {text}"}, True)]
    admin.plugins.unregister("text_formatter", model="refusals")


def test_a_config_reload_keeps_run_time_changes_unless_the_files_plugins_changed(stack):
    admin, state = stack["admin"], stack["gateway"].service.state

    async def reload(**changes) -> None:  # as the config watcher applies a changed file, on the gateway's loop
        state.apply(state.settings.model_copy(update=changes))

    admin.plugins.register("calculator", model="reloaded")
    stack["loop"].run(reload(stream_interval_ms=6.0))
    assert [e.name for e in admin.plugins.list("reloaded").entries] == ["calculator"]
    stack["loop"].run(reload(plugins={"*": [PluginConfig(name="strip_pattern", options={"pattern": "secret"})]}))
    assert admin.plugins.list("reloaded").entries == []
    assert [e.name for e in admin.plugins.list("*").entries] == ["strip_pattern"]
    assert stack["user"].generate("echo", "a secret word").text == "a  word"
    stack["loop"].run(reload(plugins={}))
