"""`forgeway generate|run|chat|bench` as subprocesses against a real gateway and echo backend: output and exit codes."""

from __future__ import annotations

import json

import pytest

from forgeway.testing import ServiceProcess, one_line_error, run_cli
from forgeway.server.ports import free_port


@pytest.fixture(scope="module")
def gateway():
    with ServiceProcess("echo", "--model-name", "echo") as echo:
        env = {"FORGEWAY_BACKENDS": json.dumps({"echo": echo.address})}
        with ServiceProcess("gateway", "--http-port", "-1", env=env) as process:
            yield process


def cli(gateway, *args: str, input: str | None = None):
    return run_cli(*args, "--target", gateway.address, input=input)


def test_generate_streams_the_completion(gateway):
    result = cli(gateway, "generate", "-m", "echo", "the quick brown fox")
    assert (result.returncode, result.stdout, result.stderr) == (0, "the quick brown fox\n", "")


def test_run_picks_the_only_model_and_reports_usage(gateway):
    result = cli(gateway, "run", "one two three", "--max-tokens", "2", "-v")
    assert result.returncode == 0 and result.stdout == "one two\n"
    assert "3 prompt + 2 completion tokens" in result.stderr and "finish: length" in result.stderr


def test_json_output_is_the_generation(gateway):
    result = cli(gateway, "generate", "alpha beta", "--json", "-n", "2", "--stop", " beta")
    payload = json.loads(result.stdout)
    assert result.returncode == 0 and payload["model"] == "echo"
    assert [(c["index"], c["text"], c["finish_reason"]) for c in payload["choices"]] == [
        (0, "alpha", "stop_sequence"), (1, "alpha", "stop_sequence")]
    assert payload["usage"]["completion_tokens"] > 0 and payload["served_by"].startswith("echo/")


def test_prompt_from_stdin_and_a_system_message(gateway):
    result = cli(gateway, "generate", "-", "--system", "be terse", "--no-stream", input="from stdin\n")
    assert result.returncode == 0 and result.stdout == "from stdin\n"  # echo answers the last message


def test_chat_streams_replies_until_exit(gateway):
    result = cli(gateway, "chat", "-m", "echo", input="hello there\n/reset\n\nsecond turn\n/exit\nnever sent\n")
    assert result.returncode == 0 and result.stdout == "hello there\nsecond turn\n"
    out = cli(gateway, "chat", "--json", "--system", "be brief", input="forgotten\n/reset\nkept turn\n").stdout
    replies, history = out.split("\n", 2)[:2], json.loads(out.split("\n", 2)[2])
    assert replies == ["forgotten", "kept turn"]
    assert history == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "kept turn"},
                       {"role": "assistant", "content": "kept turn"}]  # /reset kept only the system message


@pytest.mark.parametrize("word", ["exit", "quit", "q", "QUIT", "/exit"])
def test_chat_leaves_on_llamaforges_exit_words(gateway, word):
    result = cli(gateway, "chat", "-m", "echo", input=f"first\n{word}\nnever sent\n")
    assert result.returncode == 0 and result.stdout == "first\n"


def test_run_output_writes_the_completion_to_a_file(gateway, tmp_path):
    out = tmp_path / "answer.txt"
    result = cli(gateway, "run", "written not printed", "--output", str(out))
    assert result.returncode == 0 and result.stdout == "" and f"Output written to {out}" in result.stderr
    assert out.read_text() == "written not printed"


def test_llamaforges_benchmark_spelling_writes_its_results(gateway, tmp_path):
    out = tmp_path / "bench.json"
    result = cli(gateway, "benchmark", "--model", "echo", "--prompts", "a b c", "d e", "--iterations", "1",
                 "--max-tokens", "2", "--no-warmup", "--output", str(out))
    assert result.returncode == 0, result.stderr
    written = json.loads(out.read_text())
    assert [p["prompt"] for p in written["prompts"]] == ["a b c", "d e"]
    assert written["overall"]["runs"] == 2 and written["overall"]["total_tokens"] == 4


def test_bench_reports_tokens_per_second(gateway):
    table = cli(gateway, "bench", "-p", "a b c d", "-p", "e f", "-i", "2", "--max-tokens", "3")
    assert table.returncode == 0 and "tokens/s" in table.stdout and "overall" in table.stdout
    result = json.loads(cli(gateway, "bench", "-p", "a b c d", "-i", "2", "--max-tokens", "3", "--json",
                            "--no-warmup").stdout)
    assert (result["model"], result["backend"], result["iterations"], result["max_tokens"]) == ("echo", "echo", 2, 3)
    (prompt,) = result["prompts"]
    assert [r["tokens"] for r in prompt["runs"]] == [3, 3] and prompt["metrics"]["avg_tokens"] == 3
    assert result["overall"]["total_tokens"] == 6 and result["overall"]["avg_tokens_per_second"] > 0


def test_unreachable_gateway_is_one_line(gateway):
    dead = f"127.0.0.1:{free_port('127.0.0.1')}"
    result = run_cli("generate", "hi", "--target", dead, "--timeout", "3")
    assert result.returncode == 1 and one_line_error(result).startswith(f"forgeway generate: cannot reach {dead}")


def test_unknown_model_is_one_line(gateway):
    result = cli(gateway, "generate", "-m", "no-such-model", "hi")
    assert result.returncode == 1
    assert "not found: model 'no-such-model' not found" in one_line_error(result)


@pytest.mark.parametrize(("args", "message"), [
    (("generate", "x", "--temperature", "hot"), "argument --temperature: invalid float value: 'hot'"),
    (("generate",), "the following arguments are required: PROMPT"),
    (("generate", "x", "--bogus"), "unrecognized arguments: --bogus"),
    (("bench", "-i", "0"), "argument -i/--iterations: '0' must be at least 1"),
    (("chat", "--timeout", "-1"), "argument --timeout: '-1' must be positive"),
])
def test_bad_arguments_are_one_line_with_exit_code_2(gateway, args, message):
    result = cli(gateway, *args)
    assert result.returncode == 2 and message in one_line_error(result)


def test_a_rejected_field_names_it(gateway):
    result = cli(gateway, "generate", "x", "--temperature", "9")
    assert result.returncode == 1
    assert one_line_error(result) == "forgeway generate: invalid argument: sampling.temperature: must be in [0, 2]"


def test_llamaforges_list_shows_models_backends_and_plugins(gateway):
    models = cli(gateway, "list", "models", "--json")
    assert models.returncode == 0 and [m["name"] for m in json.loads(models.stdout)] == ["echo"]
    backends = cli(gateway, "list", "backends", "--json")
    assert [r["backend"] for r in json.loads(backends.stdout)] == ["echo"]
    plugins = json.loads(cli(gateway, "list", "plugins", "--json").stdout)
    kinds = {p["name"]: p["kind"] for p in plugins["available"]}
    assert {kinds["text_formatter"], kinds["text_cleaner"], kinds["calculator"]} == {
        "preprocessing", "postprocessing", "tools"}
    table = cli(gateway, "list", "plugins")
    assert table.returncode == 0 and "calculator" in table.stdout and "benchmark" in table.stdout
