"""LlamaForge's plugin calls (register/enable/disable/list/set_plugin_config, use_tool, run_command) on the facade,
against a real gateway in front of a real echo backend: what they change shows in the facade's own generations."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from forgeway.client import Client
from forgeway.compat.llamaforge import LlamaForge
from forgeway.client.bench import benchmark
from forgeway.testing.stacks import InProcessStack


WORD = re.compile(r"\s*\S+")  # the echo backend's tokens


def say(forge: LlamaForge, prompt: str, echoed: str, stream: bool = False) -> str:
    """The facade's generation, asking for as many tokens as the prompt the echo backend gets (after the
    pre-processors) has words: the facade's default max_tokens would make echo repeat it."""
    tokens = len(WORD.findall(echoed))
    return "".join(forge.generate_stream(prompt, max_tokens=tokens)) if stream else forge.generate(prompt,
                                                                                                   max_tokens=tokens)


def echo():
    from forgeway.services.echo.engine import EchoSettings
    from forgeway.services.echo.service import EchoService

    return EchoService(EchoSettings(host="127.0.0.1", port=0, metrics_port=-1))


@pytest.fixture(scope="module")
def forge(tmp_path_factory) -> Iterator[LlamaForge]:
    with InProcessStack(echo) as stack, Client(stack.target) as client:
        forge = LlamaForge(tmp_path_factory.mktemp("llamaforge") / "config.json", client=client)
        assert forge.load_model("echo"), forge.last_error
        yield forge


def test_register_configure_disable_and_list_change_the_facades_generations(forge):
    prompt = "  Explain [calc: 6 * 7]  "
    assert say(forge, prompt, prompt) == "  Explain [calc: 6 * 7]"
    assert forge.register_plugin("text_formatter", "preprocessing",
                                 {"format_as_chat": True, "chat_format": "chatml"}, model="echo")
    assert forge.register_plugin("calculator", "tools", model="echo")
    chatml = "<|im_start|>user\nExplain [calc: 6 * 7]<|im_end|>\n<|im_start|>assistant\n"
    assert say(forge, prompt, chatml) == "<|im_start|>user\nExplain 42<|im_end|>\n<|im_start|>assistant"
    assert say(forge, prompt, chatml, stream=True) == "<|im_start|>user\nExplain 42<|im_end|>\n<|im_start|>assistant"

    assert forge.set_plugin_config("text_formatter", {"template": "Q: {text}"}, model="echo")
    assert forge.disable_plugin("calculator", model="echo")
    assert say(forge, prompt, "Q: Explain [calc: 6 * 7]") == "Q: Explain [calc: 6 * 7]"
    rows = forge.list_plugins("echo")
    assert [(r["name"], r["type"], r["enabled"], r["config"]) for r in rows] == [
        ("text_formatter", "preprocessing", True, {"template": "Q: {text}"}),
        ("calculator", "tools", False, {}),
        ("benchmark", "commands", True, {}),
    ]
    assert forge.enable_plugin("calculator", model="echo")
    assert say(forge, prompt, "Q: Explain [calc: 6 * 7]") == "Q: Explain 42"

    assert not forge.enable_plugin("text_cleaner", model="echo")  # never registered: False, logged, kept
    assert "plugin 'text_cleaner' not found" in str(forge.last_error)
    assert not forge.set_plugin_config("text_formatter", {"chat_format": "vicuna"}, model="echo")
    assert "options.chat_format" in str(forge.last_error)
    with pytest.raises(ValueError, match="'calculator' is a tools plugin, not postprocessing"):
        forge.register_plugin("calculator", "postprocessing")
    with pytest.raises(TypeError, match="forgeway.plugins"):
        forge.register_plugin(LlamaForge)
    assert forge.unregister_plugin("text_formatter", model="echo") and forge.unregister_plugin("calculator",
                                                                                                 model="echo")
    assert say(forge, prompt, prompt) == "  Explain [calc: 6 * 7]"
    kinds = {p["name"]: p["type"] for p in forge.available_plugins()}
    assert {"text_formatter": "preprocessing", "text_cleaner": "postprocessing", "calculator": "tools",
            "benchmark": "commands"}.items() <= kinds.items()


def test_use_tool_is_the_calculator(forge):
    assert forge.use_tool("calculator", "calculate sqrt(16) + 2^3") == 12
    assert forge.use_tool("calculator", "__import__('os')").startswith(
        "Error evaluating expression: function '__import__' is not allowed")
    with pytest.raises(ValueError, match="Tool 'search' not found"):
        forge.use_tool("search", "x")


def test_benchmark_runs_prompts_times_iterations_through_the_gateway(forge):
    results = forge.run_command("benchmark", {"prompts": ["one two three", "four five"], "iterations": 2,
                                              "max_tokens": 6, "warmup": False})
    assert (results["model"], results["backend"], results["iterations"], results["max_tokens"]) == ("echo", "echo",
                                                                                                     2, 6)
    assert [p["prompt"] for p in results["prompts"]] == ["one two three", "four five"]
    assert all(len(p["runs"]) == 2 and all(r["tokens"] == 6 for r in p["runs"]) for p in results["prompts"])
    assert results["overall"]["runs"] == 4 and results["overall"]["total_tokens"] == 24
    assert results["overall"]["avg_tokens_per_second"] > 0
    first = results["prompts"][0]["metrics"]
    assert first["min_time"] <= first["avg_time"] <= first["max_time"]
    assert 0 < first["avg_time_to_first_token"] <= first["max_time"]
    assert forge.run_command("benchmark", {"model": "missing", "warmup": False})["error"].startswith("model 'missing'")
    assert forge.run_command("benchmark", {"iterations": 0}) == {"error": "iterations: at least 1"}
    with pytest.raises(ValueError, match="Command 'train' not found"):
        forge.run_command("train", {})
    same = benchmark(forge.client, "echo", ["a b"], iterations=1, max_tokens=3, warmup=True)
    assert same["overall"]["total_tokens"] == 3
