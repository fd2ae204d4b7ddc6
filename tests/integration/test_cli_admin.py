"""`forgeway backends`, `models` and `jobs` as subprocesses: tables for people, --json for scripts, one-line errors."""

from __future__ import annotations

import json
import time

import pytest

from forgeway.testing import ServiceProcess, one_line_error, run_cli


@pytest.fixture(scope="module")
def stack():
    """A gateway in front of two echo backends, `first` and `second` (the tests may stop `second`)."""
    with ServiceProcess("echo", "--model-name", "first") as first, \
            ServiceProcess("echo", "--model-name", "second") as second:
        env = {"FORGEWAY_BACKENDS": json.dumps({"first": first.address, "second": second.address}),
               "FORGEWAY_CAPABILITIES_REFRESH_SECONDS": "0.5"}
        with ServiceProcess("gateway", "--http-port", "-1", env=env) as gateway:
            yield gateway, first, second


def cli(gateway, *args: str):
    return run_cli(*args, "--target", gateway.address)


def test_backends_table_and_json(stack):
    gateway, first, second = stack
    table = cli(gateway, "backends")
    assert table.returncode == 0, table.stderr
    for text in (first.address, second.address, "SERVING", "closed", "first", "second", "available"):
        assert text in table.stdout
    rows = {r["address"]: r for r in json.loads(cli(gateway, "backends", "--json").stdout)}
    assert set(rows) == {first.address, second.address}
    assert rows[first.address]["models"] == ["first"] and rows[second.address]["models"] == ["second"]
    assert all(r["backend"] == "echo" and r["available"] and r["health"] == "SERVING" and r["breaker"] == "closed"
               and r["load"]["in_flight"] == 0 for r in rows.values())


def test_models_list(stack):
    gateway, _, _ = stack
    listing = cli(gateway, "models", "list")
    assert listing.returncode == 0 and "first" in listing.stdout and "text-generation" in listing.stdout
    models = json.loads(cli(gateway, "models", "list", "--json").stdout)
    assert sorted((m["name"], m["backend"], m["loaded"], m["chat"]) for m in models) == [
        ("first", "echo", True, True), ("second", "echo", True, True)]


def test_generate_without_a_model_asks_for_one_of_the_served(stack):
    gateway, _, _ = stack
    result = cli(gateway, "generate", "which model?")
    assert result.returncode == 1
    assert one_line_error(result).endswith("model: choose one with --model (served: first, second)")
    chosen = run_cli("generate", "which model?", "--target", gateway.address, env={"FORGEWAY_MODEL": "second"})
    assert chosen.returncode == 0 and chosen.stdout == "which model?\n"


def test_management_errors_are_one_line(stack):
    gateway, _, _ = stack
    unload = cli(gateway, "models", "unload", "no-such-model")
    assert unload.returncode == 1 and "not found: model 'no-such-model' not found" in one_line_error(unload)
    jobs = cli(gateway, "jobs", "list")  # no trainer behind this gateway
    assert jobs.returncode == 1 and one_line_error(jobs).startswith(
        "forgeway jobs: unimplemented: no backend serves forgeway.v1.JobService/ListJobs")
    show = run_cli("jobs", "show", "job-x", "--target", stack[1].address)  # a backend that serves no JobService
    assert show.returncode == 1 and "does not serve this call" in one_line_error(show)
    bad = cli(gateway, "models", "load")
    assert bad.returncode == 2 and "required: NAME" in one_line_error(bad)
    option = cli(gateway, "models", "load", "x", "-o", "n_ctx")
    assert option.returncode == 2 and "'n_ctx' is not KEY=VALUE" in one_line_error(option)


def test_a_stopped_backend_shows_in_the_table(stack):
    gateway, first, second = stack
    second.stop()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = {r["address"]: r for r in json.loads(cli(gateway, "backends", "--json").stdout)}
        if rows[second.address]["health"] != "SERVING":
            break
        time.sleep(0.5)
    assert rows[second.address]["health"] != "SERVING" and rows[first.address]["health"] == "SERVING"
    table = cli(gateway, "backends")
    assert table.returncode == 0 and "no:" in table.stdout  # one row says why it is not available
    assert cli(gateway, "generate", "-m", "first", "still served").stdout == "still served\n"
