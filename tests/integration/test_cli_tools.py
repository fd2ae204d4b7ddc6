"""`forgeway generate|chat --tool ...` as subprocesses against an hf process serving the tiny Llama: tool calls
printed one per line (and in --json), tools from a file, a tool result continuing the chat, reasoning on stderr with
--thinking, and bad --tool values."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from forgeway.testing import ServiceProcess, one_line_error, run_cli

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}},
                   "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "description": "Get the local time in a city.",
                                         "parameters": {"type": "object", "properties": {}}}}
CALL_LINE = re.compile(r"^\[tool call\] (\w+) (\{.*\}) \(id (\S+)\)$")


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    from forgeway.testing import build_tiny_llama

    tiny = build_tiny_llama(Path(tmp_path_factory.mktemp("cli-tools")) / "tiny")
    with ServiceProcess("hf", "--model", str(tiny), "--model-name", "tiny", "--torch-threads", "1",
                        "--grace-seconds", "1", timeout=180) as process:
        yield process


def cli(hf, *args: str, input: str | None = None):
    return run_cli(*args, "--target", hf.address, "-m", "tiny", "--max-tokens", "128", input=input)


def calls(stdout: str) -> list[tuple[str, dict, str]]:
    return [(m[1], json.loads(m[2]), m[3]) for line in stdout.splitlines() if (m := CALL_LINE.match(line))]


@pytest.mark.hf
@pytest.mark.parametrize("stream", [True, False])
def test_generate_prints_the_forced_call(hf, stream):
    result = cli(hf, "generate", "What is the weather in Paris?", "--tool", json.dumps(WEATHER), "--tool-choice",
                 "get_weather", *(() if stream else ("--no-stream",)))
    assert result.returncode == 0, result.stderr
    ((name, arguments, call_id), *_) = calls(result.stdout)
    assert name == "get_weather" and isinstance(arguments["city"], str) and call_id


@pytest.mark.hf
def test_tools_from_a_file_and_json_output(hf, tmp_path):
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([WEATHER, TIME]))
    result = cli(hf, "generate", "What time is it in Tokyo?", "--tool", str(tools), "--tool-choice", "get_time",
                 "--json")
    assert result.returncode == 0, result.stderr
    (choice,) = json.loads(result.stdout)["choices"]
    assert choice["finish_reason"] == "tool_calls" and choice["tool_calls"][0]["name"] == "get_time"
    assert json.loads(choice["tool_calls"][0]["arguments"]) == {}


@pytest.mark.hf
def test_chat_sends_each_line_after_a_call_as_its_result(hf):
    script = "What is the weather in Paris?\nsunny, 21 C\n/exit\n"
    result = cli(hf, "chat", "--tool", json.dumps(WEATHER), "--tool-choice", "get_weather", "--no-parallel-tool-calls",
                 "--json", input=script)
    assert result.returncode == 0, result.stderr
    history = json.loads(result.stdout[result.stdout.index("\n[\n") + 1:])
    assert [m["role"] for m in history] == ["user", "assistant", "tool", "assistant"]
    call_id = history[1]["tool_calls"][0]["id"]
    assert history[2] == {"role": "tool", "tool_call_id": call_id, "content": "sunny, 21 C"}
    assert calls(result.stdout)[0][2] == call_id


@pytest.mark.hf
@pytest.mark.parametrize("stream", [True, False])
def test_thinking_goes_to_stderr_apart_from_the_answer(hf, stream):
    # the template opens <think> for the model, which (being random) never closes it: all it writes is reasoning
    flags = ("--max-tokens", "8", *(() if stream else ("--no-stream",)))
    thinking = cli(hf, "generate", "Hi", "--thinking", *flags)
    assert thinking.returncode == 0 and thinking.stdout == "\n"
    assert thinking.stderr.startswith("[thinking] ") and len(thinking.stderr.strip()) > len("[thinking]")
    plain = cli(hf, "generate", "Hi", "--no-thinking", *flags)
    assert plain.returncode == 0 and plain.stdout.strip() and "[thinking]" not in plain.stderr


@pytest.mark.parametrize(("value", "why"), [
    ("{not json", "is not valid JSON"), ("/no/such/tools.json", "is neither tool JSON nor a readable file"),
    ("[1, 2]", "a tool is a JSON object"),
])
def test_a_bad_tool_is_one_line_before_any_call(value, why):
    result = run_cli("generate", "hi", "--tool", value, "--target", "127.0.0.1:1")
    assert result.returncode == 2 and why in one_line_error(result)
