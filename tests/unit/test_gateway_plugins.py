"""Plugins: pre-processors change the request; post-processors stream without leaking a match split over deltas."""

from __future__ import annotations

import pytest

from forgeway.gateway.plugins import Plugins, build_pipeline
from forgeway.gateway.settings import GatewaySettings, PluginConfig
from forgeway.v1 import generate_pb2


def pipeline(*configs: tuple[str, dict]):
    return build_pipeline([PluginConfig(name=n, options=o) for n, o in configs])


def streamed(p, pieces: list[str]) -> str:
    stream = p.stream()
    return "".join(stream.feed(piece) for piece in pieces) + stream.flush()


@pytest.mark.parametrize("text", [
    "Hello<|im_end|> world</s>",
    "a <|eot_id|>b [INST] c <s>d",
    "no special tokens at all < > | here",
    "<|im_start|>assistant\nhi<|im_end|>",
    "ends with a partial <|im_en",
])
def test_strip_special_tokens_streamed_in_any_split_equals_whole_text(text):
    p = pipeline(("strip_special_tokens", {}))
    whole = p.postprocess(text)
    assert "<|im_end|>" not in whole and "</s>" not in whole and "[INST]" not in whole
    for size in (1, 2, 3, 5, len(text)):
        pieces = [text[i:i + size] for i in range(0, len(text), size)]
        assert streamed(p, pieces) == whole, pieces


def test_strip_pattern_holds_back_only_a_possible_match():
    p = pipeline(("strip_pattern", {"pattern": r"SECRET-\d+", "replacement": "[redacted]"}))
    stream = p.stream()
    assert stream.feed("the code is SEC") == "the code is "
    assert stream.feed("RET-12") == ""  # a match that may still grow
    assert stream.feed("3 ok") == "[redacted] ok"
    assert stream.flush() == ""
    assert p.postprocess("SECRET-1 and SECRET-22") == "[redacted] and [redacted]"


def test_post_processors_chain_in_order():
    p = pipeline(("strip_special_tokens", {}), ("strip_pattern", {"pattern": "  +", "replacement": " "}))
    text = "a <|x|> b  </s>  c"
    assert p.postprocess(text) == "a b c"
    assert streamed(p, list(text)) == "a b c"


def test_system_prompt_override_and_default():
    request = generate_pb2.GenerateRequest(model="m", messages=[
        generate_pb2.Message(role="system", content="old"), generate_pb2.Message(role="user", content="hi")])
    changed = pipeline(("system_prompt", {"prompt": "new"})).preprocess(request)
    assert [(m.role, m.content) for m in changed.messages] == [("system", "new"), ("user", "hi")]
    assert request.messages[0].content == "old", "the caller's request is not modified"
    kept = pipeline(("system_prompt", {"prompt": "new", "mode": "default"})).preprocess(request)
    assert kept.messages[0].content == "old"
    added = pipeline(("system_prompt", {"prompt": "new", "mode": "default"})).preprocess(
        generate_pb2.GenerateRequest(model="m", messages=[generate_pb2.Message(role="user", content="hi")]))
    assert [m.role for m in added.messages] == ["system", "user"]


def test_chat_format_turns_messages_into_a_prompt():
    request = generate_pb2.GenerateRequest(model="m", messages=[generate_pb2.Message(role="user", content="hi {x}")])
    out = pipeline(("chat_format", {"template": "chatml"})).preprocess(request)
    assert not out.messages and out.HasField("prompt")
    assert out.prompt == "<|im_start|>user\nhi {x}<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize("configs, named", [
    ({"m": [{"name": "no_such_plugin"}]}, "plugins.m[0]: unknown plugin 'no_such_plugin'"),
    ({"m": [{"name": "strip_pattern", "options": {"pattern": "("}}]}, "plugins.m[0] (strip_pattern): pattern"),
    ({"*": [{"name": "strip_pattern", "options": {"pattern": "x*"}}]}, "matches the empty string"),
    ({"m": [{"name": "system_prompt", "options": {"bogus": 1}}]}, "plugins.m[0] (system_prompt)"),
])
def test_bad_plugin_config_names_the_entry(configs, named):
    with pytest.raises(ValueError, match=named.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        GatewaySettings(plugins=configs)


def test_pipeline_per_model_with_a_default():
    plugins = Plugins(GatewaySettings(plugins={
        "*": [{"name": "strip_special_tokens"}],
        "chat": [{"name": "system_prompt", "options": {"prompt": "x"}}],
    }).plugins)
    assert plugins.for_model("chat", "tiny").pre and not plugins.for_model("chat", "tiny").post
    assert plugins.for_model("alias", "chat").pre
    assert plugins.for_model("other", "other").post
