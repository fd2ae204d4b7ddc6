"""The demo model learns the tool-call format: the README's prompts get a parseable call of the right tool."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from forgeway.demo.build import build_demo_model
from forgeway.demo.tools import PROMPTS, TOOLS

# The build trains 400 steps, about three minutes on two idle cores: more than the suite's default per-test limit
# on a busy machine.
pytestmark = [pytest.mark.hf, pytest.mark.slow, pytest.mark.timeout(1800)]

STEPS = 400  # the default build's step budget, with no time limit: every machine trains the same steps


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    out = build_demo_model(tmp_path_factory.mktemp("tools") / "demo", max_seconds=float("inf"), max_steps=STEPS)
    return AutoTokenizer.from_pretrained(out), AutoModelForCausalLM.from_pretrained(out)


def _reply(demo, messages: list[dict]) -> tuple[dict, str]:
    """The parsed greedy reply (parse_response's message) and its text."""
    tokenizer, model = demo
    prompt = tokenizer.apply_chat_template(messages, tools=TOOLS, tokenize=False, add_generation_prompt=True)
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=48, do_sample=False)
    text = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :])
    return tokenizer.parse_response(text, prefix=prompt), text


@pytest.mark.parametrize(("prompt", "name", "arguments"), PROMPTS)
def test_documented_prompt_calls_its_tool(demo, prompt: str, name: str, arguments: dict) -> None:
    message, text = _reply(demo, [{"role": "user", "content": prompt}])
    calls = [call["function"] for call in message.get("tool_calls", [])]
    assert calls == [{"name": name, "arguments": arguments}], text
    assert text.endswith("</tool_call><|im_end|>"), text


def test_after_the_tool_result_the_answer_is_prose(demo) -> None:
    prompt, name, arguments = PROMPTS[0]
    call = {"type": "function", "function": {"name": name, "arguments": arguments}}
    result = {**arguments, "condition": "sunny", "temperature_c": 21}
    messages = [
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": json.dumps(result)},
    ]
    message, text = _reply(demo, messages)
    assert not message.get("tool_calls") and message["content"].startswith("It is "), text


def test_a_prompt_that_needs_no_tool_gets_prose(demo) -> None:
    message, text = _reply(demo, [{"role": "user", "content": "The smith opens the workshop at dawn."}])
    assert not message.get("tool_calls") and message["content"], text
