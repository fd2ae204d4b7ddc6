"""LlamaForge's plugins in the gateway pipeline: text_formatter's formats, text_cleaner and calculator streamed in any
chunking add up to their whole-text output, and bad options name the option."""

from __future__ import annotations

import random

import pytest

from forgeway.gateway.plugin_base import OptionError
from forgeway.gateway.plugins import build_pipeline, instantiate
from forgeway.gateway.settings import GatewaySettings, PluginConfig
from forgeway.v1 import generate_pb2


def pipeline(*configs: tuple[str, dict]):
    return build_pipeline([PluginConfig(name=n, options=o) for n, o in configs])


def prompt_after(options: dict, prompt: str) -> str:
    request = generate_pb2.GenerateRequest(model="m", prompt=prompt)
    return pipeline(("text_formatter", options)).preprocess(request).prompt


@pytest.mark.parametrize("options, expected", [
    ({}, "hi there"),  # trims by default, as LlamaForge
    ({"trim_whitespace": False}, "  hi there "),
    ({"template": "Q: {text}\nA:"}, "Q: hi there\nA:"),
    ({"add_system_instruction": True, "system_instruction": "Be brief."}, "Be brief.\n\nhi there"),
    ({"format_as_chat": True}, "<s>[INST] hi there [/INST]"),  # llama2 is LlamaForge's default
    ({"format_as_chat": True, "add_system_instruction": True, "system_instruction": "Be brief."},
     "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nhi there [/INST]"),
    ({"format_as_chat": True, "chat_format": "chatml"},
     "<|im_start|>user\nhi there<|im_end|>\n<|im_start|>assistant\n"),
    ({"format_as_chat": True, "chat_format": "alpaca", "template": "Say: {text}"},
     "### Instruction:\nSay: hi there\n\n### Response:\n"),
])
def test_formatter_on_a_prompt(options, expected):
    assert prompt_after(options, "  hi there ") == expected


def test_formatter_renders_a_conversation_and_leaves_one_with_tools_as_messages():
    messages = [generate_pb2.Message(role=role, content=content)
                for role, content in [("system", "Be kind."), ("user", "a "), ("assistant", "b"), ("user", " c")]]
    formatter = pipeline(("text_formatter", {"format_as_chat": True, "template": "<{text}>"}))
    out = formatter.preprocess(generate_pb2.GenerateRequest(model="m", messages=messages))
    assert not out.messages
    assert out.prompt == "<s>[INST] <<SYS>>\nBe kind.\n<</SYS>>\n\na [/INST] b </s><s>[INST] <c> [/INST]"
    with_tools = generate_pb2.GenerateRequest(model="m", messages=messages[1:])
    with_tools.tools.add().function.name = "lookup"
    kept = pipeline(("text_formatter", {"format_as_chat": True, "add_system_instruction": True,
                                        "system_instruction": "Use tools."})).preprocess(with_tools)
    assert [(m.role, m.content) for m in kept.messages] == [("system", "Use tools."), ("user", "a"),
                                                            ("assistant", "b"), ("user", "c")]


def streamed_in_pieces(pipe, text: str, rng: random.Random) -> str:
    stream, out, i = pipe.stream(), [], 0
    while i < len(text):
        size = rng.randint(1, 6)
        out.append(stream.feed(text[i:i + size]))
        i += size
    return "".join(out) + stream.flush()


@pytest.mark.parametrize("configs, text, expected", [
    ([("text_cleaner", {})], "  <s>Hello</s> world  ", "Hello world"),
    ([("text_cleaner", {})], "Answer.<|im_end|>\n<|im_start|>user\nmore", "Answer."),  # the rest of the turn goes
    ([("text_cleaner", {"remove_incomplete_sentences": True})], "One. Two! Three and", "One. Two!"),
    ([("text_cleaner", {"remove_incomplete_sentences": True})], "No sentence ends here", "No sentence ends here"),
    ([("text_cleaner", {"remove_incomplete_sentences": True})], "Pi is 3.14 or so. Done.", "Pi is 3.14 or so. Done."),
    ([("text_cleaner", {"remove_special_tokens": False, "custom_token_patterns": [r"\[\d+\]"]})],
     "Cited[1] twice[22] </s>", "Cited twice </s>"),
    ([("calculator", {})], "It is [calc: sqrt(16) + 2^3] or [CALCULATE: 10/4].", "It is 12 or 2.5."),
    ([("calculator", {})], "[calc: 1/0] [calc: 2+", "[calc error: division by zero] [calc: 2+"),
    ([("calculator", {"format": "{expression} = {result:.2f}"})], "[calc: 1/3]", "1/3 = 0.33"),
    ([("text_cleaner", {"remove_incomplete_sentences": True}), ("calculator", {})],
     "<s>Sum: [calc: sum([1, 2, 3])]. Then", "Sum: 6."),
])
def test_output_plugins_stream_to_their_whole_text_output(configs, text, expected):
    pipe = pipeline(*configs)
    assert pipe.postprocess(text) == expected
    rng = random.Random(7)
    for _ in range(40):
        assert streamed_in_pieces(pipe, text, rng) == expected


@pytest.mark.parametrize("name, options, option", [
    ("text_formatter", {"chat_format": "vicuna"}, "chat_format"),
    ("text_formatter", {"template": "no placeholder"}, "template"),
    ("text_formatter", {"add_system_instruction": True}, "system_instruction"),
    ("text_formatter", {"trim_whitespace": "yes"}, "trim_whitespace"),
    ("text_cleaner", {"custom_token_patterns": "x"}, "custom_token_patterns"),
    ("text_cleaner", {"custom_token_patterns": ["ok", "a*"]}, "custom_token_patterns[1]"),
    ("calculator", {"format": "{result.real}"}, "format"),
    ("calculator", {"on_error": "ignore"}, "on_error"),
    ("calculator", {"precision": 3}, "precision"),
])
def test_bad_options_name_the_option(name, options, option):
    with pytest.raises(OptionError) as refused:
        instantiate(name, options)
    assert refused.value.option == option
    with pytest.raises(ValueError, match=rf"plugins\.m\[0\] \({name}\): {option.replace('[', '.').replace(']', '.')}"):
        GatewaySettings(plugins={"m": [{"name": name, "options": options}]})


def test_a_disabled_entry_is_checked_but_does_not_run():
    pipe = build_pipeline([PluginConfig(name="calculator", enabled=False), PluginConfig(name="text_cleaner")])
    assert pipe.postprocess(" [calc: 1+1] ") == "[calc: 1+1]"
    with pytest.raises(ValueError, match="on_error"):
        build_pipeline([PluginConfig(name="calculator", options={"on_error": "x"}, enabled=False)])
