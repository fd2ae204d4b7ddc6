"""`forgeway embed` and `forgeway rerank` as subprocesses against a real gateway and echo backend: output, JSON and
one-line errors with their exit codes."""

from __future__ import annotations

import functools
import json

import pytest

from forgeway.client import Client
from forgeway.testing import ECHO_RETRIEVAL, ServiceProcess, one_line_error, run_cli


@pytest.fixture(scope="module")
def gateway():
    """A gateway in front of an echo backend whose longest embedding or rerank input is 6 words."""
    with ServiceProcess("echo", "--model-name", "echo", *ECHO_RETRIEVAL, "--max-input-words", "6") as echo, \
            ServiceProcess("gateway", "--http-port", "-1",
                           env={"FORGEWAY_BACKENDS": json.dumps({"echo": echo.address})}) as process:
        yield process


@pytest.fixture
def cli(gateway):
    """`forgeway ARGS...` with FORGEWAY_TARGET set to the gateway."""
    return functools.partial(run_cli, env={"FORGEWAY_TARGET": gateway.address})


def test_embed_prints_one_line_per_input(cli, gateway):
    result = cli("embed", "echo-embed", "the cat sat", "dog")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("[0] 3 tokens, 32 dims: ") and lines[1].startswith("[1] 1 tokens")
    with Client(gateway.address) as sdk:
        first = sdk.embed("echo-embed", "the cat sat").vectors[0]
    assert lines[0].split(": ", 1)[1] == " ".join(f"{v:+.4f}" for v in first[:4]) + " ..."
    assert "2 vector(s) of 32, 4 tokens" in result.stderr


def test_embed_json_is_the_whole_result(cli, gateway, tmp_path):
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("second input\n\nthird one here\n")
    result = cli("embed", "echo-embed", "first", "--file", str(inputs), "--dimensions", "8", "--json",
                 "--no-normalize")
    payload = json.loads(result.stdout)
    assert result.returncode == 0 and (payload["model"], payload["dimensions"]) == ("echo-embed", 8)
    assert [(e["index"], e["tokens"], len(e["values"])) for e in payload["embeddings"]] == [(0, 1, 8), (1, 2, 8),
                                                                                            (2, 3, 8)]
    with Client(gateway.address) as sdk:
        expected = sdk.embed("echo-embed", ["first", "second input", "third one here"], dimensions=8, normalize=False)
    assert [e["values"] for e in payload["embeddings"]] == expected.vectors
    assert payload["usage"]["prompt_tokens"] == 6 and payload["served_by"].startswith("echo/")


def test_embed_reads_stdin_and_truncates(cli):
    result = cli("embed", "echo-embed", "--file", "-", "--truncate", "start",
                 input="one two three four five six seven eight\n")
    assert result.returncode == 0 and result.stdout.startswith("[0] 6 tokens truncated, 32 dims: ")
    refused = cli("embed", "echo-embed", "one two three four five six seven eight")
    assert refused.returncode == 1
    assert one_line_error(refused).startswith("forgeway embed: invalid argument: input[0]: 8 tokens")


def test_embed_errors_are_one_line(cli):
    wrong = cli("embed", "echo-embed", "x", "--dimensions", "12")
    assert wrong.returncode == 1 and one_line_error(wrong).startswith("forgeway embed: invalid argument: dimensions: ")
    unknown = cli("embed", "no-such-model", "x")
    assert unknown.returncode == 1 and one_line_error(unknown).startswith("forgeway embed: not found: ")
    empty = cli("embed", "echo-embed")
    assert empty.returncode == 2 and "give at least one TEXT" in one_line_error(empty)
    bad_flag = cli("embed", "echo-embed", "x", "--truncate", "middle")
    assert bad_flag.returncode == 2 and "--truncate" in one_line_error(bad_flag)


def test_rerank_prints_a_ranked_table(cli):
    result = cli("rerank", "echo-rerank", "cat", "a dog runs", "the cat sat", "cat and cat", "--top-n", "2")
    assert result.returncode == 0, result.stderr
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in result.stdout.splitlines() if "│" in line]
    assert [(rank, index, document) for rank, index, _, document in rows] == [("1", "2", "cat and cat"),
                                                                             ("2", "1", "the cat sat")]
    assert "a dog runs" not in result.stdout


def test_rerank_json_and_errors(cli):
    payload = json.loads(cli("rerank", "echo-rerank", "cat", "a dog", "cat cat", "--json").stdout)
    assert [(r["index"], r["document"]) for r in payload["results"]] == [(1, "cat cat"), (0, "a dog")]
    assert payload["results"][0]["relevance_score"] > payload["results"][1]["relevance_score"]
    wrong = cli("rerank", "echo-embed", "cat", "a dog")  # an embedding model does not rerank
    assert wrong.returncode == 1 and one_line_error(wrong).startswith("forgeway rerank: invalid argument: model: ")
    empty = cli("rerank", "echo-rerank", "cat")
    assert empty.returncode == 2 and "give at least one DOC" in one_line_error(empty)


def test_models_list_shows_dimensions_and_generate_skips_retrieval_models(cli):
    listing = cli("models", "list")
    row = next(line for line in listing.stdout.splitlines() if "echo-embed" in line)
    assert "embedding" in row and "32 (8, 16)" in row
    generated = cli("run", "one two")  # echo-embed and echo-rerank do not generate: echo is the only model
    assert (generated.returncode, generated.stdout) == (0, "one two\n")
